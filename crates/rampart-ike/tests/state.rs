//! SA state as values: export an established IKE SA, import it into a fresh engine (same
//! configuration, different randomness) and let the peer carry on with the importer.

mod util;

use std::time::{Duration, Instant};

use proptest::prelude::*;
use rampart_crypto::Rng;
use rampart_ike::{
    ChildSaId, DownReason, Ike, IkeEvent, IkeSaId, IkeSaState, IkeSaStateKind, ImportError,
};
use util::*;

fn established() -> Pair {
    let (a, b) = configs(false);
    let mut p = Pair::new(a, b);
    p.initiate();
    p.run(Duration::from_secs(1));
    p.assert_one_matching_child();
    p
}

/// Exports every SA of `side`, passes the states through JSON, imports them into a fresh engine
/// and puts that engine in the side's place. Returns the CHILD SAs (id, spi_in, key_in, key_out)
/// that were live before, for comparison.
/// Gives `fresh` the peers of `old` (a member configured like the one it replaces).
fn same_peers(old: &Ike, fresh: &mut Ike) {
    for (_, peer) in old.peers() {
        fresh.add_peer(peer.clone());
    }
}

fn fail_over(p: &mut Pair, side: Side, seed: u8) {
    let old = match side {
        Side::A => &p.a,
        Side::B => &p.b,
    };
    let states = old.export_all(p.now);
    assert_eq!(states.len(), old.status(p.now).len(), "every SA exportable");
    let json = serde_json::to_string(&states).unwrap();
    let states: Vec<IkeSaState> = serde_json::from_str(&json).unwrap();
    let mut fresh = Ike::new(old.config().clone(), Rng::from_seed([seed; 32]));
    same_peers(old, &mut fresh);
    for st in states {
        fresh.import_sa(p.now, st).unwrap();
    }
    let before: Vec<_> = p
        .live_children(side)
        .iter()
        .map(|k| {
            (
                k.child,
                k.spi_in,
                k.spi_out,
                k.key_in.clone(),
                k.key_out.clone(),
            )
        })
        .collect();
    match side {
        Side::A => {
            p.a = fresh;
            p.events_a.clear();
        }
        Side::B => {
            p.b = fresh;
            p.events_b.clear();
        }
    }
    p.run(Duration::ZERO);
    // The node installs the tunnels from these events exactly as after a negotiation.
    let ev = p.events(side);
    assert!(
        matches!(ev.first(), Some(IkeEvent::IkeSaUp { .. })),
        "{ev:?}"
    );
    let after: Vec<_> = p
        .live_children(side)
        .iter()
        .map(|k| {
            (
                k.child,
                k.spi_in,
                k.spi_out,
                k.key_in.clone(),
                k.key_out.clone(),
            )
        })
        .collect();
    assert_eq!(before, after);
}

fn downs(ev: &[IkeEvent]) -> usize {
    ev.iter()
        .filter(|e| {
            matches!(e, IkeEvent::PeerDead { .. })
                || matches!(e, IkeEvent::IkeSaDown { reason, .. } if *reason != DownReason::Rekeyed)
        })
        .count()
}

/// The peer notices nothing: liveness, CHILD rekey both ways, IKE rekey both ways, delete.
fn carry_on(p: &mut Pair) {
    p.assert_one_matching_child();
    // Liveness, each way: the side that sees ESP stays quiet, the other checks and is answered.
    for quiet in [Side::A, Side::B] {
        let base = p.sent.len();
        for _ in 0..5 {
            p.run(Duration::from_secs(10));
            let c = p.only_child(quiet);
            match quiet {
                Side::A => p.a.child_traffic(p.now, c),
                Side::B => p.b.child_traffic(p.now, c),
            }
        }
        let count = |from: Side, response: bool| {
            p.sent[base..]
                .iter()
                .filter(|x| x.from == from && x.exchange() == 37 && x.is_response() == response)
                .count()
        };
        let checker = if quiet == Side::A { Side::B } else { Side::A };
        assert!(count(checker, false) >= 1, "{checker:?} checked");
        assert_eq!(
            count(checker, false),
            count(quiet, true),
            "every check answered"
        );
    }
    assert_eq!(downs(&p.events_a) + downs(&p.events_b), 0);
    // CHILD rekey, each side initiating.
    let c = p.only_child(Side::A);
    p.a.rekey_child(p.now, c);
    p.run(Duration::from_secs(1));
    p.assert_one_matching_child();
    assert_eq!(p.live_children(Side::A)[0].replaces, Some(c));
    let c = p.only_child(Side::B);
    p.b.rekey_child(p.now, c);
    p.run(Duration::from_secs(1));
    p.assert_one_matching_child();
    // IKE rekey, each side initiating; the CHILD SA moves along and later rekeys still agree.
    for side in [Side::A, Side::B] {
        let id = match side {
            Side::A => p.a.status(p.now)[0].ike_sa,
            Side::B => p.b.status(p.now)[0].ike_sa,
        };
        match side {
            Side::A => p.a.rekey_ike(p.now, id),
            Side::B => p.b.rekey_ike(p.now, id),
        }
        p.run(Duration::from_secs(1));
        let (sa, sb) = (p.a.status(p.now), p.b.status(p.now));
        assert_eq!((sa.len(), sb.len()), (1, 1), "{sa:?} {sb:?}");
        assert_ne!(sa[0].ike_sa, id);
        assert_eq!((sa[0].spi_i, sa[0].spi_r), (sb[0].spi_i, sb[0].spi_r));
        assert_eq!(sa[0].state, IkeSaStateKind::Established);
        let c = p.only_child(Side::A);
        p.a.rekey_child(p.now, c);
        p.run(Duration::from_secs(1));
        p.assert_one_matching_child();
    }
    // Delete from B: both sides clean.
    let id = p.b.status(p.now)[0].ike_sa;
    p.b.delete_ike_sa(p.now, id);
    p.run(Duration::from_secs(1));
    assert!(p.a.status(p.now).is_empty() && p.b.status(p.now).is_empty());
    assert!(p.live_children(Side::A).is_empty() && p.live_children(Side::B).is_empty());
    assert!(p.events_a.iter().any(|e| matches!(
        e,
        IkeEvent::IkeSaDown {
            reason: DownReason::DeletedByPeer,
            ..
        }
    )));
}

#[test]
fn imported_initiator_continues_the_tunnel() {
    let mut p = established();
    p.run(Duration::from_secs(5));
    fail_over(&mut p, Side::A, 9);
    carry_on(&mut p);
}

#[test]
fn imported_responder_continues_the_tunnel() {
    let mut p = established();
    fail_over(&mut p, Side::B, 11);
    carry_on(&mut p);
}

#[test]
fn imported_lifetimes_keep_running() {
    // The CHILD SA rekeys at the time it would have without the move.
    let (mut a, b) = configs(false);
    a.peers[0].child_lifetime = Duration::from_secs(100);
    let mut p = Pair::new(a, b);
    p.initiate();
    p.run(Duration::from_secs(1));
    let rekey_in = p.a.status(p.now)[0].children[0].rekey_in.unwrap();
    p.run(Duration::from_secs(30));
    fail_over(&mut p, Side::A, 5);
    let after = p.a.status(p.now)[0].children[0].rekey_in.unwrap();
    assert_eq!(after, rekey_in - Duration::from_secs(30));
    p.run(after + Duration::from_secs(1));
    assert_eq!(p.child_ups(Side::A).len(), 2, "{:?}", p.events_a);
    p.assert_one_matching_child();
}

#[test]
fn serde_round_trip_is_lossless() {
    let p = established();
    let st = p.a.export_all(p.now);
    assert_eq!(st.len(), 1);
    let json = serde_json::to_string(&st[0]).unwrap();
    let back: IkeSaState = serde_json::from_str(&json).unwrap();
    assert_eq!(serde_json::to_string(&back).unwrap(), json);
    // Algorithms travel as their keywords, the state as a lower-case word.
    assert!(json.contains("\"aes256gcm16\""), "{json}");
    assert!(
        !format!("{back:?}").contains("sk_d"),
        "Debug must not print keys"
    );
    let status = serde_json::to_string(&IkeSaStateKind::Established).unwrap();
    assert_eq!(status, "\"established\"");
}

#[test]
fn only_established_sas_export() {
    let (a, b) = configs(false);
    let mut p = Pair::new(a, b);
    p.initiate();
    // IKE_SA_INIT sent, nothing answered yet.
    p.run(Duration::ZERO);
    assert_eq!(p.a.status(p.now).len(), 1);
    assert!(p.a.export_all(p.now).is_empty());
    assert!(p.a.export_sa(p.now, IkeSaId(12345)).is_none());
    // While our CHILD rekey is in flight its key exchange cannot move: no export.
    let mut p = established();
    let id = p.a.status(p.now)[0].ike_sa;
    let c = p.only_child(Side::A);
    p.a.rekey_child(p.now, c);
    assert!(p.a.export_sa(p.now, id).is_none());
    p.run(Duration::from_secs(1));
    assert!(p.a.export_sa(p.now, id).is_some());
}

#[test]
fn import_refuses_conflicts_and_bad_keys() {
    let p = established();
    let st = p.a.export_all(p.now).remove(0);
    let cfg = p.a.config().clone();
    let mut fresh = Ike::new(cfg.clone(), Rng::from_seed([3; 32]));
    same_peers(&p.a, &mut fresh);
    fresh.import_sa(p.now, st.clone()).unwrap();
    assert_eq!(
        fresh.import_sa(p.now, st.clone()),
        Err(ImportError::IkeSaIdInUse(st.id.0))
    );
    let mut other = st.clone();
    other.id = IkeSaId(st.id.0 + 1000);
    assert!(matches!(
        fresh.import_sa(p.now, other.clone()),
        Err(ImportError::IkeSpiInUse(_))
    ));
    other.spi_i ^= 1;
    other.spi_r ^= 1;
    assert!(matches!(
        fresh.import_sa(p.now, other.clone()),
        Err(ImportError::ChildSaIdInUse(_))
    ));
    other.children[0].id = ChildSaId(other.children[0].id.0 + 1000);
    assert!(matches!(
        fresh.import_sa(p.now, other.clone()),
        Err(ImportError::EspSpiInUse(_))
    ));

    let mut empty = Ike::new(cfg, Rng::from_seed([4; 32]));
    same_peers(&p.a, &mut empty);
    let mut bad = st.clone();
    bad.peer_name = "nobody".into();
    assert_eq!(
        empty.import_sa(p.now, bad),
        Err(ImportError::UnknownPeer("nobody".into()))
    );
    let mut bad = st.clone();
    bad.sk_d.pop();
    assert!(matches!(
        empty.import_sa(p.now, bad),
        Err(ImportError::InvalidKey(_))
    ));
    let mut bad = st.clone();
    bad.children[0].key_out.push(0);
    assert!(matches!(
        empty.import_sa(p.now, bad),
        Err(ImportError::InvalidKey(_))
    ));
    let mut bad = st.clone();
    bad.algs.integ = Some(rampart_crypto::Integ::HmacSha256_128);
    assert!(matches!(
        empty.import_sa(p.now, bad),
        Err(ImportError::InvalidAlgorithms(_))
    ));
    // A refused import changed nothing and emitted nothing.
    assert!(empty.status(p.now).is_empty());
    assert!(empty.poll_event().is_none());
    assert!(empty.poll_timeout().is_none());
}

#[test]
fn many_sas_timers_fire_for_the_right_sa() {
    // 60 copies of one SA with distinct ids/SPIs and IKE rekeys due in shuffled order: the
    // engine rekeys exactly the due SA at each deadline.
    let p = established();
    let base = p.a.export_all(p.now).remove(0);
    let mut cfg = p.a.config().clone();
    // No peer answers here: keep retransmissions out of the picture.
    cfg.retransmit_timeout = Duration::from_secs(3600);
    let mut ike = Ike::new(cfg, Rng::from_seed([8; 32]));
    same_peers(&p.a, &mut ike);
    let t0 = p.now;
    let n = 60u64;
    let mut due = Vec::new();
    for i in 0..n {
        let mut st = base.clone();
        st.id = IkeSaId(0x7_0000_0000_0000 + i);
        st.spi_i = 0x1000 + i;
        st.spi_r = 0x2000 + i;
        st.children[0].id = ChildSaId(0x7_0000_0001_0000 + i);
        st.children[0].spi_in = 0x10_0000 + i as u32;
        // Deadlines in an order unrelated to the ids.
        let at = Duration::from_millis(1000 + (i * 37 % n) * 100);
        st.rekey_in = Some(at);
        due.push((at, st.spi_i));
        ike.import_sa(t0, st).unwrap();
    }
    while ike.poll_event().is_some() {}
    due.sort();
    let mut now: Instant;
    for (at, spi_i) in due {
        now = ike.poll_timeout().unwrap();
        assert_eq!(now, t0 + at);
        ike.handle_timeout(now);
        let sent: Vec<u64> = std::iter::from_fn(|| ike.poll_event())
            .filter_map(|e| match e {
                IkeEvent::Transmit { msg, .. } => {
                    Some(u64::from_be_bytes(msg[0..8].try_into().unwrap()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(sent, vec![spi_i], "at {at:?}");
    }
}

#[derive(Debug, Clone, Copy)]
enum Step {
    ChildA,
    ChildB,
    IkeA,
    IkeB,
    Idle(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        Just(Step::ChildA),
        Just(Step::ChildB),
        Just(Step::IkeA),
        Just(Step::IkeB),
        (1u64..120).prop_map(Step::Idle),
    ]
}

fn apply(p: &mut Pair, s: Step) {
    match s {
        Step::ChildA => {
            let c = p.only_child(Side::A);
            p.a.rekey_child(p.now, c);
        }
        Step::ChildB => {
            let c = p.only_child(Side::B);
            p.b.rekey_child(p.now, c);
        }
        Step::IkeA => {
            let id = p.a.status(p.now)[0].ike_sa;
            p.a.rekey_ike(p.now, id);
        }
        Step::IkeB => {
            let id = p.b.status(p.now)[0].ike_sa;
            p.b.rekey_ike(p.now, id);
        }
        Step::Idle(s) => p.run(Duration::from_secs(s)),
    }
    p.run(Duration::from_secs(1));
    p.assert_one_matching_child();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Export after a random prefix of a scripted lifecycle, import on either side, continue.
    #[test]
    fn export_anywhere_and_continue(
        before in proptest::collection::vec(step(), 0..5),
        after in proptest::collection::vec(step(), 0..4),
        importer_is_a in any::<bool>(),
        seed in 20u8..200,
    ) {
        let mut p = established();
        for s in before {
            apply(&mut p, s);
        }
        let side = if importer_is_a { Side::A } else { Side::B };
        fail_over(&mut p, side, seed);
        for s in after {
            apply(&mut p, s);
        }
        carry_on(&mut p);
    }
}
