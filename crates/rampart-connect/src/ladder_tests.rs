use super::*;
use proptest::prelude::*;

/// What an attempt on a rung does once started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    SucceedAfter(u64),
    FailAfter(u64),
    Silent,
}

#[derive(Debug)]
struct Run {
    outcome: Outcome,
    /// When the outcome was reached, in ms from the start.
    done_ms: u64,
    started_ms: Vec<Option<u64>>,
    cancelled: Vec<RungId>,
}

/// Drives a ladder with simulated attempts until it is done, checking the invariants on the way.
fn run(config: LadderConfig, behaviour: &[Behaviour]) -> Run {
    let t0 = Instant::now();
    let ms = |t: Instant| t.duration_since(t0).as_millis() as u64;
    let bound = config
        .rungs
        .iter()
        .map(|r| r.start_after + r.timeout)
        .max()
        .unwrap()
        + config.prefer_window;
    let mut l = Ladder::new(config);
    let mut now = t0;
    let mut started_ms = vec![None; behaviour.len()];
    let mut pending: Vec<(Instant, RungId, Behaviour)> = Vec::new();
    let mut cancelled = Vec::new();
    l.start(now);
    for _ in 0..10_000 {
        while let Some(a) = l.poll_action() {
            match a {
                Action::Start(i) => {
                    assert!(started_ms[i].is_none(), "rung {i} started twice");
                    started_ms[i] = Some(ms(now));
                    let at = match behaviour[i] {
                        Behaviour::SucceedAfter(d) | Behaviour::FailAfter(d) => {
                            now + Duration::from_millis(d)
                        }
                        Behaviour::Silent => continue,
                    };
                    pending.push((at, i, behaviour[i]));
                }
                Action::Cancel(i) => {
                    assert!(started_ms[i].is_some(), "cancel of a rung never started");
                    cancelled.push(i);
                    pending.retain(|p| p.1 != i);
                }
                Action::Done(o) => {
                    assert_eq!(l.outcome(), Some(&o));
                    assert_eq!(l.poll_timeout(), None);
                    assert!(l.poll_action().is_none());
                    assert!(now <= t0 + bound, "ended late: {} ms", ms(now));
                    return Run {
                        outcome: o,
                        done_ms: ms(now),
                        started_ms,
                        cancelled,
                    };
                }
            }
        }
        let next_timer = l.poll_timeout();
        let next_event = pending.iter().map(|p| p.0).min();
        let next = match (next_timer, next_event) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).expect("a running ladder always has a timer"),
        };
        assert!(next >= now, "time goes forward");
        now = next;
        pending.sort_by_key(|p| p.0);
        while pending.first().is_some_and(|p| p.0 <= now) {
            let (_, i, b) = pending.remove(0);
            match b {
                Behaviour::SucceedAfter(_) => l.on_success(now, i),
                Behaviour::FailAfter(d) => l.on_failure(now, i, format!("failed after {d} ms")),
                Behaviour::Silent => unreachable!(),
            }
        }
        l.handle_timeout(now);
        if let Some(t) = l.poll_timeout() {
            assert!(t > now, "timer not in the future after handle_timeout");
        }
    }
    panic!("the ladder did not finish");
}

fn standard() -> LadderConfig {
    LadderConfig::standard(&[Transport::Udp, Transport::Tcp, Transport::Tls], 1).unwrap()
}

#[test]
fn standard_shape() {
    let c = standard();
    let names: Vec<String> = c.rungs.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        names,
        ["udp", "tcp", "tls", "tls via proxy #1", "tcp via proxy #1"]
    );
    assert!(LadderConfig::standard(&[], 3).is_none());
    let tls_only = LadderConfig::standard(&[Transport::Tls, Transport::Tls], 0).unwrap();
    assert_eq!(tls_only.rungs.len(), 1);
}

#[test]
fn udp_answers_first() {
    use Behaviour::*;
    let r = run(
        standard(),
        &[
            SucceedAfter(40),
            SucceedAfter(5),
            SucceedAfter(10),
            Silent,
            Silent,
        ],
    );
    assert_eq!(
        r.outcome,
        Outcome::Chosen {
            rung: 0,
            why: "udp answered after 40 ms".into()
        }
    );
    assert_eq!(r.done_ms, 40);
    assert_eq!(r.started_ms, [Some(0), None, None, None, None]);
}

/// The hotel: UDP silently dropped, direct TCP and TLS silently dropped, only TLS through the
/// proxy works (each step a 50 ms round trip: TCP, CONNECT, TLS 1.3). Goal: chosen well under
/// 3 s, leaving the rest of the budget to IKE.
#[test]
fn hotel_wifi_proxy_only() {
    use Behaviour::*;
    let r = run(
        standard(),
        &[Silent, Silent, Silent, SucceedAfter(150), Silent],
    );
    match &r.outcome {
        Outcome::Chosen { rung: 3, why } => {
            assert!(
                why.starts_with("tls via proxy #1 answered after 1050 ms"),
                "{why}"
            );
            assert!(why.contains("udp: no answer yet"), "{why}");
        }
        o => panic!("{o:?}"),
    }
    assert!(r.done_ms <= 1300, "{} ms", r.done_ms);
    assert_eq!(r.cancelled.len(), 4);
}

/// UDP fails hard (ICMP unreachable) at once, the direct streams are refused at once: the
/// proxy rungs start without waiting for their delay.
#[test]
fn hard_failures_skip_the_delays() {
    use Behaviour::*;
    let r = run(
        standard(),
        &[
            FailAfter(5),
            FailAfter(3),
            FailAfter(4),
            SucceedAfter(100),
            Silent,
        ],
    );
    assert_eq!(r.started_ms, [Some(0), Some(5), Some(5), Some(9), Some(9)]);
    match r.outcome {
        Outcome::Chosen { rung: 3, why } => assert_eq!(
            why,
            "tls via proxy #1 answered after 109 ms; udp: failed after 5 ms; tcp: failed after 3 ms; tls: failed after 4 ms"
        ),
        o => panic!("{o:?}"),
    }
}

#[test]
fn udp_just_after_tcp_still_wins() {
    use Behaviour::*;
    let r = run(
        standard(),
        &[SucceedAfter(400), SucceedAfter(50), Silent, Silent, Silent],
    );
    assert!(matches!(r.outcome, Outcome::Chosen { rung: 0, .. }));
    assert_eq!(r.done_ms, 400);
    // TCP succeeded at 350; UDP answering at 600 would come too late.
    let r = run(
        standard(),
        &[SucceedAfter(600), SucceedAfter(50), Silent, Silent, Silent],
    );
    assert!(matches!(r.outcome, Outcome::Chosen { rung: 1, .. }));
    assert_eq!(r.done_ms, 550);
}

#[test]
fn all_failed_lists_every_reason() {
    use Behaviour::*;
    let r = run(
        standard(),
        &[Silent, FailAfter(10), Silent, FailAfter(20), Silent],
    );
    assert_eq!(
        r.outcome,
        Outcome::AllFailed(vec![
            (0, "no answer within 2500 ms".into()),
            (1, "failed after 10 ms".into()),
            (2, "no answer within 5000 ms".into()),
            (3, "failed after 20 ms".into()),
            (4, "no answer within 5000 ms".into()),
        ])
    );
    assert_eq!(r.done_ms, 5900);
}

#[test]
fn results_for_idle_rungs_are_ignored() {
    let mut l = Ladder::new(standard());
    let t0 = Instant::now();
    l.on_success(t0, 0); // not started
    assert_eq!(l.poll_action(), None);
    l.start(t0);
    assert_eq!(l.poll_action(), Some(Action::Start(0)));
    l.on_success(t0, 1); // not running yet
    l.on_failure(t0, 7, "no such rung");
    assert_eq!(l.poll_action(), None);
    l.on_success(t0, 0);
    assert!(matches!(
        l.poll_action(),
        Some(Action::Done(Outcome::Chosen { rung: 0, .. }))
    ));
    l.on_failure(t0, 0, "late");
    assert!(matches!(l.outcome(), Some(Outcome::Chosen { rung: 0, .. })));
}

fn behaviour() -> impl Strategy<Value = Behaviour> {
    prop_oneof![
        (0u64..4000).prop_map(Behaviour::SucceedAfter),
        (0u64..4000).prop_map(Behaviour::FailAfter),
        Just(Behaviour::Silent),
    ]
}

fn rung() -> impl Strategy<Value = Rung> {
    (
        prop_oneof![
            Just(Transport::Udp),
            Just(Transport::Tcp),
            Just(Transport::Tls)
        ],
        proptest::option::of(0usize..3),
        0u64..2000,
        1u64..5000,
    )
        .prop_map(|(transport, proxy, s, t)| Rung {
            transport,
            proxy,
            start_after: Duration::from_millis(s),
            timeout: Duration::from_millis(t),
        })
}

proptest! {
    /// Any ladder with any attempt behaviour ends in time with a choice of a rung that
    /// succeeded, or with all rungs failed and a reason for each.
    #[test]
    fn always_terminates(
        (rungs, behaviours) in proptest::collection::vec((rung(), behaviour()), 1..7)
            .prop_map(|v| v.into_iter().unzip::<_, _, Vec<_>, Vec<_>>()),
        window in 0u64..1000,
    ) {
        let timeouts: Vec<Duration> = rungs.iter().map(|r| r.timeout).collect();
        let config = LadderConfig { rungs, prefer_window: Duration::from_millis(window) };
        let r = run(config, &behaviours);
        match r.outcome {
            Outcome::Chosen { rung, .. } => {
                prop_assert!(matches!(behaviours[rung], Behaviour::SucceedAfter(_)));
                prop_assert!(r.started_ms[rung].is_some());
                prop_assert!(!r.cancelled.contains(&rung));
            }
            Outcome::AllFailed(reasons) => {
                prop_assert_eq!(reasons.len(), behaviours.len());
                prop_assert!(reasons.iter().enumerate().all(|(i, (r, why))| *r == i && !why.is_empty()));
                // Every rung ran, and a rung that would have succeeded only did so too late.
                prop_assert!(r.started_ms.iter().all(Option::is_some));
                for (b, rung) in behaviours.iter().zip(&timeouts) {
                    if let Behaviour::SucceedAfter(d) = b {
                        prop_assert!(Duration::from_millis(*d) >= *rung);
                    }
                }
            }
        }
    }

    /// On the standard ladder, UDP wins whenever it answers before its timeout and no later
    /// than the prefer window after the first stream success.
    #[test]
    fn udp_preferred_when_in_time(
        udp in 0u64..2500,
        others in proptest::collection::vec(behaviour(), 4),
    ) {
        let mut b = vec![Behaviour::SucceedAfter(udp)];
        b.extend(others.iter().copied());
        let config = standard();
        let first_other = config.rungs[1..]
            .iter()
            .zip(&others)
            .filter_map(|(r, b)| match b {
                Behaviour::SucceedAfter(d) => Some(r.start_after.as_millis() as u64 + d),
                _ => None,
            })
            .min();
        let r = run(config, &b);
        let in_time = first_other.is_none_or(|f| udp <= f + PREFER_WINDOW.as_millis() as u64);
        if in_time {
            prop_assert!(matches!(r.outcome, Outcome::Chosen { rung: 0, .. }), "{:?}", r);
        }
    }
}
