//! Retransmission, liveness, rekeys, collisions, NAT traversal and deletes.

mod util;

use std::time::Duration;

use rampart_ike::policy::{Encapsulation, StartAction};
use rampart_ike::{DownReason, IkeEvent};
use util::*;

fn established() -> Pair {
    let (a, b) = configs(false);
    let mut p = Pair::new(a, b);
    p.initiate();
    p.run(Duration::from_secs(1));
    p.assert_one_matching_child();
    p
}

fn count(ev: &[IkeEvent], f: impl Fn(&IkeEvent) -> bool) -> usize {
    ev.iter().filter(|e| f(e)).count()
}

#[test]
fn lost_requests_are_retransmitted_with_same_bytes() {
    let (a, b) = configs(false);
    let mut p = Pair::new(a, b);
    let mut n = 0;
    // Drop A's first IKE_SA_INIT and first IKE_AUTH request.
    p.drop = Box::new(move |pk| {
        if pk.from == Side::A {
            n += 1;
            n == 1 || n == 3
        } else {
            false
        }
    });
    p.initiate();
    p.run(Duration::from_secs(10));
    p.assert_one_matching_child();
    let a_sent: Vec<&Packet> = p.sent.iter().filter(|x| x.from == Side::A).collect();
    assert_eq!(a_sent.len(), 4);
    assert_eq!(a_sent[0].msg, a_sent[1].msg);
    assert_eq!(a_sent[2].msg, a_sent[3].msg);
    assert_eq!(a_sent[1].at - a_sent[0].at, Duration::from_secs(2));
}

#[test]
fn lost_response_is_resent_from_cache() {
    let (a, b) = configs(false);
    let mut p = Pair::new(a, b);
    let mut dropped = false;
    p.drop = Box::new(move |pk| {
        if pk.from == Side::B && pk.exchange() == 35 && !dropped {
            dropped = true;
            return true;
        }
        false
    });
    p.initiate();
    p.run(Duration::from_secs(10));
    p.assert_one_matching_child();
    assert_eq!(
        p.child_ups(Side::B).len(),
        1,
        "the retransmitted request must not create a second SA"
    );
    let auth_resp: Vec<&Packet> = p
        .sent
        .iter()
        .filter(|x| x.from == Side::B && x.exchange() == 35)
        .collect();
    assert_eq!(auth_resp.len(), 2);
    assert_eq!(auth_resp[0].msg, auth_resp[1].msg);
}

#[test]
fn duplicate_and_old_messages_are_ignored() {
    let mut p = established();
    let old: Vec<Packet> = p.sent.clone();
    for pk in &old {
        match pk.from {
            Side::A => p.b.handle_datagram(p.now, pk.dst, pk.src, &pk.msg),
            Side::B => p.a.handle_datagram(p.now, pk.dst, pk.src, &pk.msg),
        }
    }
    p.run(Duration::from_secs(1));
    p.assert_one_matching_child();
    assert_eq!(
        count(&p.events_a, |e| matches!(e, IkeEvent::IkeSaUp { .. })),
        1
    );
    // Garbage never panics.
    p.a.handle_datagram(p.now, p.sent[0].dst, p.sent[0].src, &[0u8; 3]);
    let mut bad = old[2].msg.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    p.b.handle_datagram(p.now, old[2].dst, old[2].src, &bad);
}

#[test]
fn liveness_check_when_idle_and_inbound_esp_counts() {
    let mut p = established();
    let base = p.sent.len();
    let c = p.only_child(Side::A);
    // Inbound ESP every 10 s: no liveness check from A.
    for _ in 0..6 {
        p.run(Duration::from_secs(10));
        p.a.child_traffic(p.now, c);
    }
    let from_a_info = p.sent[base..]
        .iter()
        .filter(|x| x.from == Side::A && x.exchange() == 37 && !x.is_response())
        .count();
    assert_eq!(from_a_info, 0);
    // B got nothing for 60 s: it checked.
    let from_b_info = p.sent[base..]
        .iter()
        .filter(|x| x.from == Side::B && x.exchange() == 37 && !x.is_response())
        .count();
    assert!(from_b_info >= 1);
}

#[test]
fn dead_peer_then_reinitiate() {
    let mut p = established();
    p.drop = Box::new(|_| true);
    // 30 s liveness + 2 + 4 + 8 + 16 s of retransmissions.
    p.run(Duration::from_secs(70));
    assert_eq!(
        count(&p.events_a, |e| matches!(
            e,
            IkeEvent::PeerDead { peer } if *peer == p.peer_a
        )),
        1
    );
    assert_eq!(
        count(&p.events_a, |e| matches!(
            e,
            IkeEvent::IkeSaDown {
                reason: DownReason::Timeout,
                ..
            }
        )),
        1
    );
    assert!(p.live_children(Side::A).is_empty());
    // Start action "always": A re-initiates; once the link is back, a new SA comes up.
    let inits_after = p
        .sent
        .iter()
        .filter(|x| x.from == Side::A && x.exchange() == 34)
        .count();
    assert!(inits_after >= 2);
    p.drop = Box::new(|_| false);
    p.run(Duration::from_secs(120));
    assert_eq!(p.live_children(Side::A).len(), 1);
    let a = p.live_children(Side::A)[0].clone();
    let b = p
        .live_children(Side::B)
        .into_iter()
        .find(|k| k.spi_in == a.spi_out)
        .expect("matching B child")
        .clone();
    assert_keys_match(&a, &b);
}

#[test]
fn on_traffic_waits_for_acquire() {
    let (mut a, b) = configs(false);
    a.peers[0].start_action = StartAction::OnTraffic;
    let mut p = Pair::new(a, b);
    p.initiate();
    p.run(Duration::from_secs(1));
    p.drop = Box::new(|_| true);
    p.run(Duration::from_secs(70));
    assert_eq!(
        count(&p.events_a, |e| matches!(e, IkeEvent::PeerDead { .. })),
        1
    );
    let n = p.sent.len();
    p.run(Duration::from_secs(60));
    assert_eq!(p.sent.len(), n, "no re-initiation without traffic");
    p.drop = Box::new(|_| false);
    p.a.acquire(p.now, p.peer_a);
    p.run(Duration::from_secs(1));
    assert_eq!(p.live_children(Side::A).len(), 1);
}

#[test]
fn child_rekey_replaces_and_deletes_old() {
    let mut p = established();
    let old_a = p.only_child(Side::A);
    let old_b = p.only_child(Side::B);
    p.a.rekey_child(p.now, old_a);
    p.run(Duration::from_secs(1));
    p.assert_one_matching_child();
    let new_a = p.live_children(Side::A)[0];
    let new_b = p.live_children(Side::B)[0];
    assert_eq!(new_a.replaces, Some(old_a));
    assert_eq!(new_b.replaces, Some(old_b));
    // The new SA came up before the old went down on both sides.
    for ev in [&p.events_a, &p.events_b] {
        let up = ev
            .iter()
            .rposition(|e| matches!(e, IkeEvent::ChildSaUp(_)))
            .unwrap();
        let down = ev
            .iter()
            .rposition(|e| matches!(e, IkeEvent::ChildSaDown { .. }))
            .unwrap();
        assert!(up < down);
    }
}

#[test]
fn child_rekey_from_lifetime() {
    let (mut a, b) = configs(false);
    a.peers[0].child_lifetime = Duration::from_secs(100);
    let mut p = Pair::new(a, b);
    p.initiate();
    p.run(Duration::from_secs(101));
    assert_eq!(p.child_ups(Side::A).len(), 2);
    p.assert_one_matching_child();
    let rekey_in = p.a.status(p.now)[0].children[0].rekey_in.unwrap();
    assert!(rekey_in <= Duration::from_secs(100) && rekey_in >= Duration::from_secs(79));
}

#[test]
fn ike_rekey_moves_children_and_keys_still_agree() {
    let mut p = established();
    let old = p.a.status(p.now)[0].clone();
    p.a.rekey_ike(p.now, old.ike_sa);
    p.run(Duration::from_secs(1));
    let sa = p.a.status(p.now);
    let sb = p.b.status(p.now);
    assert_eq!(sa.len(), 1, "{sa:?}");
    assert_eq!(sb.len(), 1, "{sb:?}");
    assert_ne!(sa[0].spi_i, old.spi_i);
    assert_eq!((sa[0].spi_i, sa[0].spi_r), (sb[0].spi_i, sb[0].spi_r));
    assert_eq!(sa[0].children.len(), 1);
    assert_eq!(sb[0].children.len(), 1);
    assert_eq!(
        count(&p.events_a, |e| matches!(
            e,
            IkeEvent::IkeSaDown {
                reason: DownReason::Rekeyed,
                ..
            }
        )),
        1
    );
    assert_eq!(
        count(&p.events_b, |e| matches!(
            e,
            IkeEvent::IkeSaDown {
                reason: DownReason::Rekeyed,
                ..
            }
        )),
        1
    );
    p.assert_one_matching_child();
    // The new IKE SA works, and derives CHILD keys from its new SK_d (on both sides alike).
    let c = p.only_child(Side::B);
    p.b.rekey_child(p.now, c);
    p.run(Duration::from_secs(1));
    p.assert_one_matching_child();
    // And B (now the responder of the new SA) can rekey the IKE SA too.
    let id = p.b.status(p.now)[0].ike_sa;
    p.b.rekey_ike(p.now, id);
    p.run(Duration::from_secs(1));
    assert_eq!(p.a.status(p.now).len(), 1);
    assert_eq!(p.b.status(p.now)[0].children.len(), 1);
    assert!(!p.b.status(p.now)[0].initiator || p.b.status(p.now)[0].spi_i != sb[0].spi_i);
}

#[test]
fn simultaneous_child_rekey_converges() {
    for seed_shift in 0..6 {
        let mut p = established();
        // Vary nonces between runs by consuming randomness differently.
        for _ in 0..seed_shift {
            let c = p.only_child(Side::A);
            p.a.rekey_child(p.now, c);
            p.run(Duration::from_secs(1));
        }
        let ca = p.only_child(Side::A);
        let cb = p.only_child(Side::B);
        p.a.rekey_child(p.now, ca);
        p.b.rekey_child(p.now, cb);
        p.run(Duration::from_secs(5));
        p.assert_one_matching_child();
        assert!(
            p.a.status(p.now)[0].children.len() == 1 && p.b.status(p.now)[0].children.len() == 1
        );
    }
}

#[test]
fn simultaneous_ike_rekey_converges() {
    let mut winners = Vec::new();
    for round in 0..8 {
        let mut p = established();
        for _ in 0..round {
            let c = p.only_child(Side::A);
            p.a.rekey_child(p.now, c);
            p.run(Duration::from_secs(1));
        }
        let ia = p.a.status(p.now)[0].ike_sa;
        let ib = p.b.status(p.now)[0].ike_sa;
        p.a.rekey_ike(p.now, ia);
        p.b.rekey_ike(p.now, ib);
        p.run(Duration::from_secs(5));
        let sa = p.a.status(p.now);
        let sb = p.b.status(p.now);
        assert_eq!(sa.len(), 1, "round {round}: A {sa:#?}");
        assert_eq!(sb.len(), 1, "round {round}: B {sb:#?}");
        assert_eq!((sa[0].spi_i, sa[0].spi_r), (sb[0].spi_i, sb[0].spi_r));
        assert_eq!(sa[0].children.len(), 1);
        assert_eq!(sb[0].children.len(), 1);
        winners.push(sa[0].initiator);
        // The surviving SA is usable.
        let c = p.only_child(Side::A);
        p.a.rekey_child(p.now, c);
        p.run(Duration::from_secs(1));
        p.assert_one_matching_child();
    }
    assert!(
        winners.contains(&true) && winners.contains(&false),
        "both sides should win some rounds: {winners:?}"
    );
}

#[test]
fn nat_detected_through_translation() {
    let (a, b) = configs(true);
    let mut p = Pair::with_nat(a, b, true);
    p.initiate();
    p.run(Duration::from_secs(1));
    p.assert_one_matching_child();
    let ka = p.live_children(Side::A)[0];
    let kb = p.live_children(Side::B)[0];
    assert!(ka.encap && kb.encap);
    assert_eq!(ka.local.port(), 4500);
    assert_eq!(ka.remote.port(), 4500);
    assert_eq!(kb.remote, "198.51.100.1:14500".parse().unwrap());
    let sa = &p.a.status(p.now)[0];
    assert!(sa.nat_local && !sa.nat_remote);
    let sb = &p.b.status(p.now)[0];
    assert!(!sb.nat_local && sb.nat_remote);
    // IKE_AUTH went to the NAT-T port.
    assert!(p
        .sent
        .iter()
        .filter(|x| x.exchange() == 35)
        .all(|x| x.src.port() == 4500 || x.dst.port() == 4500));
    // Idle NATed side sends keepalives every 20 s; B does not.
    p.run(Duration::from_secs(25));
    assert!(p.keepalives_a >= 1);
    assert_eq!(p.keepalives_b, 0);
    // The NAT mapping changes: B follows the next authenticated request.
    p.nat_port_offset = 20000;
    let c = p.only_child(Side::A);
    p.a.rekey_child(p.now, c);
    p.run(Duration::from_secs(1));
    let moved = p.events_b.iter().any(|e| matches!(e, IkeEvent::ChildSaEndpoint { remote, encap: true, .. } if *remote == "198.51.100.1:24500".parse().unwrap()));
    assert!(moved, "{:?}", p.events_b);
    p.assert_one_matching_child();
    assert_eq!(
        p.live_children(Side::B)[0].remote,
        "198.51.100.1:24500".parse().unwrap()
    );
}

#[test]
fn forced_encapsulation_without_nat() {
    let (mut a, b) = configs(false);
    a.peers[0].encapsulation = Encapsulation::Force;
    let mut p = Pair::new(a, b);
    p.initiate();
    p.run(Duration::from_secs(1));
    p.assert_one_matching_child();
    assert!(p.live_children(Side::A)[0].encap);
    assert!(p.live_children(Side::B)[0].encap);
    assert_eq!(p.live_children(Side::B)[0].remote.port(), 4500);
}

#[test]
fn delete_child_and_ike_both_ways() {
    let mut p = established();
    let c = p.only_child(Side::B);
    p.b.delete_child_sa(p.now, c);
    p.run(Duration::from_secs(1));
    assert!(p.live_children(Side::A).is_empty() && p.live_children(Side::B).is_empty());
    assert_eq!(
        p.a.status(p.now)[0].state,
        rampart_ike::IkeSaStateKind::Established
    );
    // A new CHILD SA on demand in the existing IKE SA.
    p.a.acquire(p.now, p.peer_a);
    p.run(Duration::from_secs(1));
    p.assert_one_matching_child();
    let id = p.b.status(p.now)[0].ike_sa;
    p.b.delete_ike_sa(p.now, id);
    p.run(Duration::from_secs(1));
    assert!(p.live_children(Side::A).is_empty() && p.live_children(Side::B).is_empty());
    assert!(p.a.status(p.now).is_empty() && p.b.status(p.now).is_empty());
    assert_eq!(
        count(&p.events_a, |e| matches!(
            e,
            IkeEvent::IkeSaDown {
                reason: DownReason::DeletedByPeer,
                ..
            }
        )),
        1
    );
    assert_eq!(
        count(&p.events_b, |e| matches!(
            e,
            IkeEvent::IkeSaDown {
                reason: DownReason::Deleted,
                ..
            }
        )),
        1
    );
}

#[test]
fn ike_rekey_from_lifetime() {
    let (mut a, mut b) = configs(false);
    a.peers[0].ike_lifetime = Duration::from_secs(200);
    b.peers[0].ike_lifetime = Duration::from_secs(3600);
    a.peers[0].child_lifetime = Duration::from_secs(3600);
    let mut p = Pair::new(a, b);
    p.initiate();
    p.run(Duration::from_secs(201));
    assert_eq!(
        count(&p.events_a, |e| matches!(
            e,
            IkeEvent::IkeSaDown {
                reason: DownReason::Rekeyed,
                ..
            }
        )),
        1
    );
    p.assert_one_matching_child();
    let st = &p.a.status(p.now)[0];
    assert!(st.rekey_in.unwrap() > Duration::from_secs(150));
}

#[test]
fn rekeys_crossing_get_temporary_failure_then_retry() {
    let mut p = established();
    let c = p.only_child(Side::A);
    let ib = p.b.status(p.now)[0].ike_sa;
    p.a.rekey_child(p.now, c);
    p.b.rekey_ike(p.now, ib);
    p.run(Duration::from_secs(10));
    let tf = p
        .sent
        .iter()
        .filter(|x| x.exchange() == 36 && x.is_response())
        .count();
    assert!(tf >= 2);
    let sa = p.a.status(p.now);
    let sb = p.b.status(p.now);
    assert_eq!(sa.len(), 1, "{sa:#?}");
    assert_eq!(sb.len(), 1);
    assert_eq!((sa[0].spi_i, sa[0].spi_r), (sb[0].spi_i, sb[0].spi_r));
    assert_ne!(sb[0].ike_sa, ib);
    p.assert_one_matching_child();
    assert_eq!(
        count(
            &p.events_a,
            |e| matches!(e, IkeEvent::ChildSaUp(k) if k.replaces == Some(c))
        ),
        1
    );
}

#[test]
fn child_hard_expiry_when_rekey_fails() {
    // IKE_AUTH ignores PFS groups, CREATE_CHILD_SA does not: every rekey fails.
    let (mut a, mut b) = configs(false);
    a.peers[0].esp_proposals = vec![esp_prop("aes256gcm16-x25519")];
    a.peers[0].child_lifetime = Duration::from_secs(100);
    a.peers[0].liveness_interval = Duration::ZERO;
    b.peers[0].esp_proposals = vec![esp_prop("aes256gcm16-ecp256")];
    b.peers[0].liveness_interval = Duration::ZERO;
    let mut p = Pair::new(a, b);
    p.initiate();
    p.run(Duration::from_secs(105));
    assert_eq!(
        p.live_children(Side::A).len(),
        1,
        "still alive after a failed rekey"
    );
    p.run(Duration::from_secs(6));
    assert!(p.live_children(Side::A).is_empty());
    assert!(p.live_children(Side::B).is_empty());
    assert_eq!(
        p.a.status(p.now)[0].state,
        rampart_ike::IkeSaStateKind::Established
    );
}

#[test]
fn initial_contact_after_restart_drops_stale_sas() {
    let mut p = established();
    let old_b = p.b.status(p.now)[0].ike_sa;
    p.run(Duration::from_secs(15));
    // A restarts: a fresh engine with no state initiates again.
    let (a, _) = configs(false);
    (p.a, p.peer_a) = engine(a, 9);
    p.events_a.clear();
    p.initiate();
    p.run(Duration::from_secs(1));
    let sb = p.b.status(p.now);
    assert_eq!(sb.len(), 1, "{sb:#?}");
    assert_ne!(sb[0].ike_sa, old_b);
    assert!(p.events_b.iter().any(|e| matches!(e, IkeEvent::IkeSaDown { ike_sa, reason: DownReason::DeletedByPeer, .. } if *ike_sa == old_b)));
    p.assert_one_matching_child();
}
