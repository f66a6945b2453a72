//! NAT rebinding: hints start an authenticated mapping check to the candidate address; only its
//! authenticated answer from there moves the SA (RFC 7296 2.23).

mod util;

use std::net::SocketAddr;
use std::time::Duration;

use rampart_ike::{IkeEvent, NatHint, NatSide};
use util::*;

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A behind the NAT with 2 s keepalives, established; returns the pair.
fn natted_pair() -> Pair {
    let (mut a, b) = configs(true);
    a.nat_keepalive = Duration::from_secs(2);
    let mut p = Pair::with_nat(a, b, true);
    p.keepalive_hints = true;
    p.initiate();
    p.run(Duration::from_secs(1));
    p.assert_one_matching_child();
    assert_eq!(
        p.live_children(Side::B)[0].remote,
        sock("198.51.100.1:14500")
    );
    p
}

fn b_remote(p: &Pair) -> SocketAddr {
    let k = p.live_children(Side::B)[0];
    current_remote(&p.events_b, k)
}

#[test]
fn keepalive_from_new_port_checks_then_moves() {
    let mut p = natted_pair();
    p.run(Duration::from_secs(3));
    // Keepalives from the known mapping are no hints.
    assert!(p.keepalives_a >= 1);
    assert_eq!(p.b.nat_stats().hints, 0);
    // The NAT forgets the mapping; A's next datagram leaves from a new public port.
    p.nat_port_offset = 20000;
    let changed_at = p.now;
    let sent_before = p.sent.len();
    p.run(Duration::from_millis(2100));
    assert_eq!(b_remote(&p), sock("198.51.100.1:24500"));
    let st = p.b.nat_stats();
    assert_eq!(
        (st.hints, st.checks_sent, st.mappings_moved),
        (1, 1, 1),
        "{st:?}"
    );
    // The move came from B's check (to the new port) and A's answer, not from a request of A.
    let after = &p.sent[sent_before..];
    assert!(after.iter().any(|x| x.from == Side::B
        && !x.is_response()
        && x.exchange() == 37
        && x.dst == sock("198.51.100.1:24500")));
    assert!(!after.iter().any(|x| x.from == Side::A && !x.is_response()));
    assert!(p.now - changed_at <= Duration::from_millis(2100));
    assert!(p.events_b.iter().any(|e| matches!(
        e,
        IkeEvent::NatMappingMoved { side: NatSide::Peer, remote, .. } if *remote == sock("198.51.100.1:24500")
    )));
    // The NATed side learns from the check that its public address changed.
    assert_eq!(p.a.nat_stats().local_mapping_changes, 1);
    assert!(p.events_a.iter().any(|e| matches!(
        e,
        IkeEvent::NatMappingMoved {
            side: NatSide::Local,
            ..
        }
    )));
    // Later keepalives come from the new, known mapping: no more hints; the SA still works.
    p.run(Duration::from_secs(10));
    assert_eq!(p.b.nat_stats().hints, 1);
    let c = p.only_child(Side::A);
    p.a.rekey_child(p.now, c);
    p.run(Duration::from_secs(1));
    p.assert_one_matching_child();
    assert_eq!(b_remote(&p), sock("198.51.100.1:24500"));
}

#[test]
fn spoofed_hint_never_moves_the_sa() {
    let mut p = natted_pair();
    let spoof = sock("198.51.100.1:31337");
    // Nobody lives at the spoofed address: what B sends there is lost.
    p.drop = Box::new(move |x| x.dst == spoof);
    let child = p.live_children(Side::B)[0].child;
    let hint = NatHint::NewAddress {
        local: sock("203.0.113.2:4500"),
        remote: spoof,
    };
    p.b.nat_hint(p.now, child, hint);
    p.run(Duration::from_secs(20));
    let st = p.b.nat_stats();
    assert_eq!(
        (st.hints, st.checks_sent, st.mappings_moved),
        (1, 1, 0),
        "{st:?}"
    );
    assert!(p.sent.iter().any(|x| x.from == Side::B && x.dst == spoof));
    // The check's retransmission went to the real mapping and was answered there.
    assert_eq!(b_remote(&p), sock("198.51.100.1:14500"));
    assert_eq!(p.b.status(p.now)[0].remote, sock("198.51.100.1:14500"));
    assert!(!p.events_b.iter().any(|e| matches!(
        e,
        IkeEvent::PeerDead { .. } | IkeEvent::IkeSaDown { .. } | IkeEvent::NatMappingMoved { .. }
    )));
    p.assert_one_matching_child();
}

#[test]
fn checks_are_rate_limited_per_sa() {
    let mut p = natted_pair();
    p.drop = Box::new(|x| x.dst.port() >= 30000);
    let child = p.live_children(Side::B)[0].child;
    for i in 0..5u16 {
        let hint = NatHint::NewAddress {
            local: sock("203.0.113.2:4500"),
            remote: SocketAddr::new(ip(NAT_IP), 30000 + i),
        };
        p.b.nat_hint(p.now, child, hint);
        p.run(Duration::from_millis(100));
    }
    let st = p.b.nat_stats();
    assert_eq!(
        (st.hints, st.checks_sent, st.checks_rate_limited),
        (5, 1, 4),
        "{st:?}"
    );
    // A second later the next hint is checked again (re-sending the outstanding request).
    p.run(Duration::from_millis(600));
    p.b.nat_hint(
        p.now,
        child,
        NatHint::NewAddress {
            local: sock("203.0.113.2:4500"),
            remote: sock("198.51.100.1:30009"),
        },
    );
    let st = p.b.nat_stats();
    assert_eq!(
        (st.hints, st.checks_sent, st.checks_rate_limited),
        (6, 2, 4),
        "{st:?}"
    );
    p.run(Duration::from_secs(20));
    assert_eq!(p.b.nat_stats().mappings_moved, 0);
    assert_eq!(b_remote(&p), sock("198.51.100.1:14500"));
    p.assert_one_matching_child();
}

#[test]
fn unreachable_checks_the_current_address() {
    let mut p = natted_pair();
    let child = p.live_children(Side::B)[0].child;
    let before = p.sent.len();
    p.b.nat_hint(p.now, child, NatHint::Unreachable);
    p.run(Duration::from_secs(1));
    let st = p.b.nat_stats();
    assert_eq!(
        (st.hints, st.checks_sent, st.mappings_moved),
        (1, 1, 0),
        "{st:?}"
    );
    let after = &p.sent[before..];
    assert!(after
        .iter()
        .any(|x| x.from == Side::B && !x.is_response() && x.dst == sock("198.51.100.1:14500")));
    assert!(after.iter().any(|x| x.from == Side::A && x.is_response()));
    // No candidate: the NATed side hears of no new address.
    assert_eq!(p.a.nat_stats().local_mapping_changes, 0);
}

#[test]
fn hint_for_the_current_address_is_ignored() {
    let mut p = natted_pair();
    let child = p.live_children(Side::B)[0].child;
    let hint = NatHint::NewAddress {
        local: sock("203.0.113.2:4500"),
        remote: sock("198.51.100.1:14500"),
    };
    p.b.nat_hint(p.now, child, hint);
    assert_eq!(p.b.nat_stats(), Default::default());
}

#[test]
fn an_icmp_check_still_out_is_resealed_for_the_new_port() {
    // The usual order in the field: the public side's traffic hits the dead mapping, the NAT
    // answers with ICMP (a check goes to the old, dead address), then A's keepalive shows up
    // from the new port while that check is still outstanding.
    let mut p = natted_pair();
    p.run(Duration::from_secs(3));
    p.nat_port_offset = 20000;
    // The old mapping is gone: whatever B sends there is lost.
    let dead = sock("198.51.100.1:14500");
    p.drop = Box::new(move |x| x.from == Side::B && x.dst == dead);
    let child = p.only_child(Side::B);
    p.b.nat_hint(p.now, child, NatHint::Unreachable);
    p.run(Duration::from_millis(2100));
    assert_eq!(b_remote(&p), sock("198.51.100.1:24500"));
    let st = p.b.nat_stats();
    assert_eq!((st.checks_sent, st.mappings_moved), (2, 1), "{st:?}");
    // The re-sent check carried the new address's hash, so A learns its mapping moved.
    assert_eq!(p.a.nat_stats().local_mapping_changes, 1);
    p.run(Duration::from_secs(5));
    p.assert_one_matching_child();
}
