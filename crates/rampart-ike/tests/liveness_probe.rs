//! Liveness on request (`Ike::probe_liveness`) and `Ike::last_heard`, as the Multiple Entry
//! Points engine uses them to probe third-party entry points.

mod util;

use std::time::Duration;

use rampart_ike::{IkeEvent, LivenessProbe, PeerId};
use util::*;

const INFORMATIONAL: u8 = 37;

fn established() -> Pair {
    let (a, b) = configs(false);
    let mut p = Pair::new(a, b);
    p.initiate();
    p.run(Duration::from_secs(1));
    p.assert_one_matching_child();
    p
}

fn informational_requests_from(p: &Pair, side: Side, since: usize) -> usize {
    p.sent[since..]
        .iter()
        .filter(|x| x.from == side && x.exchange() == INFORMATIONAL && !x.is_response())
        .count()
}

#[test]
fn a_probe_on_an_established_sa_is_answered_and_moves_last_heard() {
    let mut p = established();
    p.run(Duration::from_secs(5));
    let before = p.a.last_heard(p.peer_a).expect("established");
    let probed_at = p.now;
    assert!(before < probed_at, "nothing heard in the idle 5 s");
    let base = p.sent.len();
    let LivenessProbe::Sent(sa) = p.a.probe_liveness(p.now, p.peer_a) else {
        panic!("expected a check to go out");
    };
    // A second probe while the first is in flight sends nothing more.
    assert_eq!(
        p.a.probe_liveness(p.now, p.peer_a),
        LivenessProbe::InFlight(sa)
    );
    p.run(Duration::from_millis(100));
    assert_eq!(informational_requests_from(&p, Side::A, base), 1);
    let heard = p.a.last_heard(p.peer_a).expect("still established");
    assert!(heard > probed_at, "the answer is newer than the probe");
    // The slot is free again: the next probe goes out.
    assert_eq!(p.a.probe_liveness(p.now, p.peer_a), LivenessProbe::Sent(sa));
    p.run(Duration::from_millis(100));
    assert_eq!(informational_requests_from(&p, Side::A, base), 2);
    p.assert_one_matching_child();
}

#[test]
fn inbound_esp_counts_as_heard() {
    let mut p = established();
    p.run(Duration::from_secs(3));
    let c = p.only_child(Side::A);
    p.a.child_traffic(p.now, c);
    assert_eq!(p.a.last_heard(p.peer_a), Some(p.now));
}

#[test]
fn without_an_sa_the_probe_initiates_one() {
    let (a, mut b) = configs(false);
    b.peers[0].start_action = rampart_ike::StartAction::None;
    let mut a = a;
    a.peers[0].start_action = rampart_ike::StartAction::None;
    let mut p = Pair::new(a, b);
    assert_eq!(p.a.last_heard(p.peer_a), None);
    assert_eq!(
        p.a.probe_liveness(p.now, p.peer_a),
        LivenessProbe::Initiated
    );
    assert_eq!(
        p.a.probe_liveness(p.now, p.peer_a),
        LivenessProbe::Connecting
    );
    p.run(Duration::from_secs(1));
    p.assert_one_matching_child();
    assert!(p.a.last_heard(p.peer_a).is_some());
}

#[test]
fn an_unanswered_probe_fails_the_sa_and_last_heard_stops() {
    let mut p = established();
    p.run(Duration::from_secs(2));
    let heard = p.a.last_heard(p.peer_a).unwrap();
    p.drop = Box::new(|_| true);
    assert!(matches!(
        p.a.probe_liveness(p.now, p.peer_a),
        LivenessProbe::Sent(_)
    ));
    // Retransmitted after 2, 4 and 8 s, given up 16 s later.
    p.run(Duration::from_secs(5));
    assert_eq!(p.a.last_heard(p.peer_a), Some(heard), "nothing heard");
    p.run(Duration::from_secs(26));
    let dead = p
        .events_a
        .iter()
        .filter(|e| matches!(e, IkeEvent::PeerDead { peer } if *peer == p.peer_a))
        .count();
    assert_eq!(dead, 1);
    // Start action "always" re-initiates: the SA is connecting, not established.
    assert_eq!(p.a.last_heard(p.peer_a), None);
    assert_eq!(
        p.a.probe_liveness(p.now, p.peer_a),
        LivenessProbe::Connecting
    );
}

#[test]
fn unknown_peers_and_passive_engines_are_not_probed() {
    let mut p = established();
    let base = p.sent.len();
    assert_eq!(
        p.a.probe_liveness(p.now, PeerId::from_parts(77, 3)),
        LivenessProbe::Unavailable
    );
    p.a.set_passive(true);
    assert_eq!(
        p.a.probe_liveness(p.now, p.peer_a),
        LivenessProbe::Unavailable
    );
    p.run(Duration::from_millis(100));
    assert_eq!(informational_requests_from(&p, Side::A, base), 0);
}
