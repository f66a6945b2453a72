//! Live policy swap: connections keep their decision unless the new rule base drops them;
//! translated connections keep their translation when their NAT rule goes.

use super::*;

fn web_policy() -> InspectPolicy {
    InspectPolicy {
        services: vec![
            svc("ssh", ServiceProtocol::Tcp, 22),
            svc("web", ServiceProtocol::Tcp, 80),
        ],
        rules: vec![rule("web", vec![1], RuleAction::Accept)],
        ..InspectPolicy::default()
    }
}

fn v4(b: &[u8; 16]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

/// SYN, SYN-ACK, ACK of H1:sport -> H2:dport; returns the entry.
fn open_tcp(i: &mut Inspector, now: Instant, sport: u16, dport: u16) -> Connection {
    let mut p = packet(ip(H1), ip(H2), 6, sport, dport, SYN);
    assert_eq!(i.handle(now, Side::Inside, &mut p), Verdict::Accept);
    let c = *i.connections().find(|c| c.orig.sport == sport).unwrap();
    let x = c.xlat;
    let mut p = packet(ip(H2), v4(&x.src), 6, dport, x.sport, SYN | ACK);
    assert_eq!(i.handle(now, Side::Tunnel, &mut p), Verdict::Accept);
    let mut p = packet(ip(H1), ip(H2), 6, sport, dport, ACK);
    assert_eq!(i.handle(now, Side::Inside, &mut p), Verdict::Accept);
    c
}

#[test]
fn allowed_before_and_after_is_kept_with_the_new_rule_index() {
    let (mut i, now) = inspector(web_policy());
    open_tcp(&mut i, now, 40000, 80);
    let mut new = web_policy();
    new.rules
        .insert(0, rule("no-ssh", vec![0], RuleAction::Drop));
    let swap = i.set_policy(now, new);
    assert_eq!(
        swap,
        PolicySwap {
            kept: 1,
            dropped: 0
        }
    );
    assert_eq!(i.connections().next().unwrap().rule, 1);
    assert_eq!(i.list(now, 1).connections[0].rule, "web");
    let mut p = packet(ip(H2), ip(H1), 6, 80, 40000, ACK);
    assert_eq!(i.handle(now, Side::Tunnel, &mut p), Verdict::Accept);
    // The new rules apply to new connections.
    let mut p = packet(ip(H1), ip(H2), 6, 40001, 22, SYN);
    assert_eq!(
        i.handle(now, Side::Inside, &mut p),
        Verdict::Drop(DropCause::Rule(0))
    );
    assert!(i.poll_log().is_some());
}

#[test]
fn allowed_before_dropped_by_the_new_rules_is_removed() {
    let (mut i, now) = inspector(web_policy());
    i.enable_change_stream(10);
    let web = open_tcp(&mut i, now, 40000, 80);
    while i.poll_change().is_some() {}
    let mut new = web_policy();
    new.rules = vec![rule("ssh-only", vec![0], RuleAction::Accept)];
    let later = now + Duration::from_secs(1);
    assert_eq!(
        i.set_policy(later, new),
        PolicySwap {
            kept: 0,
            dropped: 1
        }
    );
    assert!(i.is_empty());
    assert_eq!(
        i.poll_change(),
        Some(Change::Deleted {
            id: web.id,
            init_side: web.init_side,
            orig: web.orig,
        })
    );
    // Its next packets are dropped in both directions.
    let mut p = packet(ip(H1), ip(H2), 6, 40000, 80, ACK);
    assert_eq!(
        i.handle(later, Side::Inside, &mut p),
        Verdict::Drop(DropCause::OutOfState(OutOfState::FirstPacketNotSyn))
    );
    let mut p = packet(ip(H2), ip(H1), 6, 80, 40000, ACK);
    assert!(matches!(
        i.handle(later, Side::Tunnel, &mut p),
        Verdict::Drop(_)
    ));
    // A rule base removed altogether accepts everything again, and a reject counts as a drop.
    assert_eq!(i.set_policy(later, InspectPolicy::default()).kept, 0);
    open_tcp(&mut i, later, 40002, 80);
    let mut reject = web_policy();
    reject.rules[0].action = RuleAction::Reject;
    assert_eq!(
        i.set_policy(later, reject),
        PolicySwap {
            kept: 0,
            dropped: 1
        }
    );
}

#[test]
fn removed_nat_rule_keeps_existing_translations_until_they_end() {
    let hide = hide_config((2000, 2001));
    let (mut i, now) = inspector(hide.clone());
    let c = open_tcp(&mut i, now, 40000, 80);
    assert_eq!(c.nat.kind, NatKind::Hide);
    let x = c.xlat;

    // Same NAT again: the port stays reserved, a new connection gets the other one.
    assert_eq!(i.set_policy(now, hide.clone()).kept, 1);
    let d = open_tcp(&mut i, now, 40001, 80);
    assert_ne!(d.xlat.sport, x.sport);
    let mut p = packet(ip(H1), ip(H2), 6, 40002, 80, SYN);
    assert_eq!(
        i.handle(now, Side::Inside, &mut p),
        Verdict::Drop(DropCause::NatExhausted)
    );

    // NAT rule removed: both connections keep their translation both ways.
    let swap = i.set_policy(now, accept_all());
    assert_eq!(
        swap,
        PolicySwap {
            kept: 2,
            dropped: 0
        }
    );
    let mut out = packet(ip(H1), ip(H2), 6, 40000, 80, ACK);
    assert_eq!(i.handle(now, Side::Inside, &mut out), Verdict::Accept);
    assert!(checksums_ok(&out));
    assert_eq!(fields(&out), (v4(&x.src), ip(H2), x.sport, 80));
    let mut back = packet(ip(H2), v4(&x.src), 6, 80, x.sport, ACK);
    assert_eq!(i.handle(now, Side::Tunnel, &mut back), Verdict::Accept);
    assert_eq!(fields(&back), (ip(H2), ip(H1), 80, 40000));
    let shown = i.list(now, 5);
    assert_eq!(shown.connections[0].nat.as_deref(), Some("hide (removed)"));
    assert_eq!(i.connections().next().unwrap().nat.rule, NAT_RULE_GONE);
    // New connections are no longer translated.
    let e = open_tcp(&mut i, now, 40003, 80);
    assert_eq!((e.xlat, e.nat.kind), (e.orig, NatKind::None));
    // The old connection ends normally and goes away with its timeout.
    for (side, src, dst, sp, dp) in [
        (Side::Inside, ip(H1), ip(H2), 40000, 80),
        (Side::Tunnel, ip(H2), v4(&x.src), 80, x.sport),
    ] {
        let mut p = packet(src, dst, 6, sp, dp, FIN | ACK);
        assert_eq!(i.handle(now, side, &mut p), Verdict::Accept);
    }
    let later = now + Duration::from_secs(121);
    i.handle_timeout(later);
    assert!(i.connections().all(|c| c.orig.sport != 40000));

    // The NAT rule comes back under its name: the kept connection's port is reserved again.
    let swap = i.set_policy(later, hide);
    assert_eq!(swap.dropped, 0);
    let owner = i.connections().find(|c| c.orig.sport == 40001).unwrap();
    assert_eq!(owner.nat.rule, 0);
    let mut p = packet(ip(H1), ip(H2), 6, 40004, 80, SYN);
    assert_eq!(i.handle(later, Side::Inside, &mut p), Verdict::Accept);
    let mut p = packet(ip(H1), ip(H2), 6, 40005, 80, SYN);
    assert_eq!(
        i.handle(later, Side::Inside, &mut p),
        Verdict::Drop(DropCause::NatExhausted)
    );
}

#[test]
fn smaller_capacity_keeps_the_oldest() {
    let (mut i, now) = inspector(accept_all());
    for (n, sport) in [40000u16, 40001, 40002].into_iter().enumerate() {
        open_tcp(&mut i, now + Duration::from_millis(n as u64), sport, 80);
    }
    let small = InspectPolicy {
        capacity: 2,
        ..accept_all()
    };
    assert_eq!(
        i.set_policy(now, small),
        PolicySwap {
            kept: 2,
            dropped: 1
        }
    );
    assert_eq!(i.stats().capacity, 2);
    assert!(i.connections().all(|c| c.orig.sport != 40002));
    let mut p = packet(ip(H2), ip(H1), 6, 80, 40001, ACK);
    assert_eq!(i.handle(now, Side::Tunnel, &mut p), Verdict::Accept);
}
