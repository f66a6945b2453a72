//! MOBIKE (RFC 4555): negotiation in IKE_AUTH, UPDATE_SA_ADDRESSES moving the IKE SA and its
//! CHILD SAs (same SPIs), retransmission and failure, refusal without negotiation, old
//! updates, and NAT detection on the new path. A (192.0.2.1) initiates and moves; B
//! (203.0.113.2) responds.

mod util;

use std::net::SocketAddr;
use std::time::Duration;

use rampart_ike::{IkeEvent, IkeSaId, IkeSaStatus, MobikeError};
use util::*;

const NEW_A: &str = "192.0.2.77:4500";
const OTHER_A: &str = "192.0.2.88:4500";
const B_NAT_T: &str = "203.0.113.2:4500";
const INFORMATIONAL: u8 = 37;

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A and B with MOBIKE allowed as given, established.
fn pair(mobike_a: bool, mobike_b: bool) -> Pair {
    let (mut a, mut b) = configs(false);
    a.peers[0].mobike = mobike_a;
    b.peers[0].mobike = mobike_b;
    let mut p = Pair::new(a, b);
    p.initiate();
    p.run(Duration::from_secs(1));
    p.assert_one_matching_child();
    p
}

fn sa(p: &Pair, side: Side) -> IkeSaStatus {
    let st = match side {
        Side::A => p.a.status(p.now),
        Side::B => p.b.status(p.now),
    };
    assert_eq!(st.len(), 1, "{side:?}: {st:?}");
    st.into_iter().next().unwrap()
}

fn sa_id(p: &Pair, side: Side) -> IkeSaId {
    sa(p, side).ike_sa
}

fn moved(events: &[IkeEvent]) -> Vec<(SocketAddr, SocketAddr, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            IkeEvent::MobikeMoved {
                local,
                remote,
                encap,
                ..
            } => Some((*local, *remote, *encap)),
            _ => None,
        })
        .collect()
}

/// The endpoint events of CHILD SA SPIs (local, remote, encap), in order.
fn endpoints(events: &[IkeEvent]) -> Vec<(SocketAddr, SocketAddr, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            IkeEvent::ChildSaEndpoint {
                local,
                remote,
                encap,
                ..
            } => Some((*local, *remote, *encap)),
            _ => None,
        })
        .collect()
}

fn spis(p: &Pair, side: Side) -> (u32, u32) {
    let c = &sa(p, side).children;
    assert_eq!(c.len(), 1);
    (c[0].spi_in, c[0].spi_out)
}

/// Update requests A sent (INFORMATIONAL requests after `from` in `p.sent`).
fn a_requests_since(p: &Pair, from: usize) -> Vec<Packet> {
    p.sent[from..]
        .iter()
        .filter(|x| x.from == Side::A && !x.is_response() && x.exchange() == INFORMATIONAL)
        .cloned()
        .collect()
}

#[test]
fn negotiated_only_when_both_sides_allow_it() {
    let p = pair(true, true);
    assert!(sa(&p, Side::A).mobike && sa(&p, Side::B).mobike);
    assert_eq!(p.a.mobike_stats().negotiated, 1);
    assert_eq!(p.b.mobike_stats().negotiated, 1);
    let id = sa_id(&p, Side::A);
    assert_eq!(p.a.can_update_addresses(id), Ok(()));
    // The responder never decides.
    let id_b = sa_id(&p, Side::B);
    assert_eq!(
        p.b.can_update_addresses(id_b),
        Err(MobikeError::NotInitiator)
    );

    for (a, b) in [(true, false), (false, true), (false, false)] {
        let p = pair(a, b);
        assert!(!sa(&p, Side::A).mobike, "a={a} b={b}");
        assert!(!sa(&p, Side::B).mobike, "a={a} b={b}");
        let id = sa_id(&p, Side::A);
        assert_eq!(
            p.a.can_update_addresses(id),
            Err(MobikeError::NotNegotiated)
        );
    }
}

#[test]
fn an_update_moves_the_ike_sa_and_its_child_sas_with_the_same_spis() {
    let mut p = pair(true, true);
    let spis_a = spis(&p, Side::A);
    let spis_b = spis(&p, Side::B);
    let id = sa_id(&p, Side::A);
    let before = p.sent.len();
    p.a.update_addresses(p.now, id, sock(NEW_A)).unwrap();
    p.run(Duration::from_secs(1));

    // One request from the new address to B's NAT-T port, answered.
    let reqs = a_requests_since(&p, before);
    assert_eq!(reqs.len(), 1);
    assert_eq!((reqs[0].src, reqs[0].dst), (sock(NEW_A), sock(B_NAT_T)));
    assert_eq!(
        moved(&p.events_a),
        vec![(sock(NEW_A), sock(B_NAT_T), false)]
    );
    assert_eq!(
        moved(&p.events_b),
        vec![(sock(B_NAT_T), sock(NEW_A), false)]
    );
    // Both sides' CHILD SA follows; same SPIs, same IKE SA.
    assert_eq!(
        endpoints(&p.events_a),
        vec![(sock(NEW_A), sock(B_NAT_T), false)]
    );
    assert_eq!(
        endpoints(&p.events_b),
        vec![(sock(B_NAT_T), sock(NEW_A), false)]
    );
    assert_eq!(spis(&p, Side::A), spis_a);
    assert_eq!(spis(&p, Side::B), spis_b);
    assert_eq!(sa_id(&p, Side::A), id);
    let (a, b) = (sa(&p, Side::A), sa(&p, Side::B));
    assert_eq!((a.local, a.remote), (sock(NEW_A), sock(B_NAT_T)));
    assert_eq!((b.local, b.remote), (sock(B_NAT_T), sock(NEW_A)));
    assert_eq!(p.a.mobike_stats().updates_answered, 1);
    assert_eq!(p.b.mobike_stats().updates_applied, 1);

    // B's own requests now go to the new address.
    let before = p.sent.len();
    let b_id = sa_id(&p, Side::B);
    p.b.rekey_ike(p.now, b_id);
    p.run(Duration::from_secs(2));
    let from_b: Vec<_> = p.sent[before..]
        .iter()
        .filter(|x| x.from == Side::B)
        .collect();
    assert!(!from_b.is_empty());
    assert!(from_b.iter().all(|x| x.dst == sock(NEW_A)), "{from_b:?}");
    // MOBIKE and the deciding role survive the IKE rekey (rekeyed by B).
    let a = sa(&p, Side::A);
    assert!(a.mobike);
    assert_eq!(p.a.can_update_addresses(a.ike_sa), Ok(()));
    assert_eq!(spis(&p, Side::A), spis_a);
}

#[test]
fn a_lost_update_is_retransmitted_from_the_new_address() {
    let mut p = pair(true, true);
    let id = sa_id(&p, Side::A);
    let before = p.sent.len();
    let mut dropped = false;
    p.drop = Box::new(move |x: &Packet| {
        let first_update = x.from == Side::A && !x.is_response() && x.exchange() == INFORMATIONAL;
        if first_update && !dropped {
            dropped = true;
            return true;
        }
        false
    });
    p.a.update_addresses(p.now, id, sock(NEW_A)).unwrap();
    p.run(Duration::from_secs(1));
    assert!(moved(&p.events_a).is_empty(), "nothing answered yet");
    p.run(Duration::from_secs(3));
    let reqs = a_requests_since(&p, before);
    assert_eq!(reqs.len(), 2, "the request and one retransmission");
    assert_eq!(reqs[0].msg, reqs[1].msg, "retransmitted byte for byte");
    assert!(reqs.iter().all(|x| x.src == sock(NEW_A)));
    assert_eq!(moved(&p.events_a).len(), 1);
    assert_eq!(sa(&p, Side::B).remote, sock(NEW_A));
}

#[test]
fn an_unanswered_update_fails_and_reports_it() {
    let mut p = pair(true, true);
    let id = sa_id(&p, Side::A);
    p.drop = Box::new(|x: &Packet| x.from == Side::A);
    p.a.update_addresses(p.now, id, sock(NEW_A)).unwrap();
    p.run(Duration::from_secs(40));
    assert!(p
        .events_a
        .iter()
        .any(|e| matches!(e, IkeEvent::MobikeFailed { ike_sa, .. } if *ike_sa == id)));
    assert!(p.events_a.iter().any(|e| matches!(
        e,
        IkeEvent::IkeSaDown { ike_sa, reason: rampart_ike::DownReason::Timeout, .. } if *ike_sa == id
    )));
    assert_eq!(p.a.mobike_stats().updates_failed, 1);
    assert!(moved(&p.events_b).is_empty());
}

#[test]
fn an_update_without_negotiation_is_refused_and_nothing_moves() {
    // B does not allow MOBIKE; A's SA is made to believe it was negotiated (an exported
    // state edited and imported again), so an authenticated update reaches B.
    let mut p = pair(true, false);
    let id = sa_id(&p, Side::A);
    let mut st = p.a.export_sa(p.now, id).expect("exportable");
    assert!(!st.mobike);
    st.mobike = true;
    st.mobike_decides = true;
    assert!(p.a.forget_sa(id));
    let id = p.a.import_sa(p.now, st).expect("importable");
    let b_before = sa(&p, Side::B);
    p.a.update_addresses(p.now, id, sock(NEW_A)).unwrap();
    p.run(Duration::from_secs(1));
    // B answered (the request is valid IKE) but moved nothing.
    let b = sa(&p, Side::B);
    assert_eq!((b.local, b.remote), (b_before.local, b_before.remote));
    assert!(moved(&p.events_b).is_empty());
    assert!(endpoints(&p.events_b).is_empty());
    assert_eq!(p.b.mobike_stats().updates_refused, 1);
    assert_eq!(p.b.mobike_stats().updates_applied, 0);
}

#[test]
fn old_and_replayed_updates_do_not_move_the_sa_back() {
    let mut p = pair(true, true);
    let id = sa_id(&p, Side::A);
    let before = p.sent.len();
    p.a.update_addresses(p.now, id, sock(OTHER_A)).unwrap();
    p.run(Duration::from_secs(1));
    p.a.update_addresses(p.now, id, sock(NEW_A)).unwrap();
    p.run(Duration::from_secs(1));
    let reqs = a_requests_since(&p, before);
    assert_eq!(reqs.len(), 2);
    assert!(reqs[0].message_id() < reqs[1].message_id());
    assert_eq!(sa(&p, Side::B).remote, sock(NEW_A));
    let applied = p.b.mobike_stats().updates_applied;
    assert_eq!(applied, 2);

    // The first update again, from its old address: older than the newest, dropped.
    let b_local = sa(&p, Side::B).local;
    p.b.handle_datagram(p.now, b_local, sock(OTHER_A), &reqs[0].msg);
    // The newest one replayed from elsewhere: a retransmission, answered from the cache.
    let sent_before = p.sent.len();
    p.b.handle_datagram(p.now, b_local, sock(OTHER_A), &reqs[1].msg);
    p.run(Duration::from_millis(100));
    let replies: Vec<_> = p.sent[sent_before..]
        .iter()
        .filter(|x| x.from == Side::B && x.is_response())
        .collect();
    assert_eq!(replies.len(), 1, "one cached answer");
    assert_eq!(sa(&p, Side::B).remote, sock(NEW_A));
    assert_eq!(p.b.mobike_stats().updates_applied, applied);
    assert_eq!(moved(&p.events_b).len(), 2);
}

#[test]
fn a_nat_on_the_new_path_turns_udp_encapsulation_on() {
    let mut p = pair(true, true);
    assert!(!sa(&p, Side::A).nat_local && !sa(&p, Side::B).nat_remote);
    assert!(!p.live_children(Side::A)[0].encap);
    let id = sa_id(&p, Side::A);
    // A moves into a network behind a NAT (public 198.51.100.1, port + 10000).
    p.nat = true;
    p.nat_inside = ip("192.0.2.77");
    p.a.update_addresses(p.now, id, sock(NEW_A)).unwrap();
    p.run(Duration::from_secs(1));
    let public = sock("198.51.100.1:14500");
    assert_eq!(moved(&p.events_a), vec![(sock(NEW_A), sock(B_NAT_T), true)]);
    assert_eq!(moved(&p.events_b), vec![(sock(B_NAT_T), public, true)]);
    assert_eq!(endpoints(&p.events_b), vec![(sock(B_NAT_T), public, true)]);
    let (a, b) = (sa(&p, Side::A), sa(&p, Side::B));
    assert!(a.nat_local && !a.nat_remote);
    assert!(b.nat_remote && !b.nat_local);
    // Behind the NAT A now keeps the mapping open.
    let keepalives = p.keepalives_a;
    p.run(Duration::from_secs(25));
    assert!(p.keepalives_a > keepalives);
}
