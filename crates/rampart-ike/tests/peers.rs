//! Peers added and removed at runtime, and templates (`RemoteAddress::Any`).

mod util;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rampart_ike::policy::{Identity, RemoteAddress, StartAction};
use rampart_ike::{DownReason, Ike, IkeEvent};
use util::*;

fn established() -> Pair {
    let (a, b) = configs(false);
    let mut p = Pair::new(a, b);
    p.initiate();
    p.run(Duration::from_secs(2));
    p.assert_one_matching_child();
    p
}

#[test]
fn removing_a_peer_deletes_its_sas_at_the_other_side() {
    let mut p = established();
    let child = p.only_child(Side::A);
    p.events_a.clear();
    let removed = p.a.remove_peer(p.now, p.peer_a).expect("a live peer");
    assert_eq!(removed.name, format!("to-{B_IP}"));
    assert!(p.a.peer(p.peer_a).is_none());
    assert!(p.a.peer_by_name(&removed.name).is_none());
    assert!(p.a.remove_peer(p.now, p.peer_a).is_none(), "the id is dead");
    // Down events are reported at once, before the peer answers (1 ms < the link latency).
    p.run(Duration::from_millis(1));
    assert!(p
        .events_b
        .iter()
        .all(|e| !matches!(e, IkeEvent::IkeSaDown { .. })));
    assert!(p
        .events_a
        .iter()
        .any(|e| matches!(e, IkeEvent::ChildSaDown { child: c, .. } if *c == child)));
    assert!(p.events_a.iter().any(|e| matches!(
        e,
        IkeEvent::IkeSaDown {
            reason: DownReason::Deleted,
            ..
        }
    )));
    p.run(Duration::from_secs(1));
    // B processed an INFORMATIONAL Delete of the IKE SA.
    assert!(p.events_b.iter().any(|e| matches!(
        e,
        IkeEvent::IkeSaDown {
            reason: DownReason::DeletedByPeer,
            ..
        }
    )));
    assert!(p.live_children(Side::B).is_empty());
    assert!(p.a.status(p.now).is_empty());
    assert!(p.b.status(p.now).is_empty());
    // Reported once: nothing more when A's Delete was answered.
    let downs = p
        .events_a
        .iter()
        .filter(|e| matches!(e, IkeEvent::IkeSaDown { .. }))
        .count();
    assert_eq!(downs, 1);
    // A removed peer is never initiated to (no panic, nothing sent).
    let sent = p.sent.len();
    p.a.initiate(p.now, p.peer_a);
    p.run(Duration::from_secs(1));
    assert_eq!(p.sent.len(), sent);
}

#[test]
fn removing_a_peer_while_its_child_rekey_is_in_flight() {
    let mut p = established();
    let child = p.only_child(Side::A);
    p.a.rekey_child(p.now, child);
    // The CREATE_CHILD_SA request is out; the peer goes before the response arrives.
    p.a.remove_peer(p.now, p.peer_a).unwrap();
    p.run(Duration::from_secs(5));
    assert!(p.a.status(p.now).is_empty());
    assert!(p.b.status(p.now).is_empty(), "{:#?}", p.b.status(p.now));
    assert!(p.live_children(Side::A).is_empty());
    assert!(p.live_children(Side::B).is_empty());
}

#[test]
fn a_peer_added_at_runtime_can_be_initiated() {
    let (a, b) = configs(false);
    let policy = a.peers[0].clone();
    let mut p = Pair::new(a, b);
    // A starts without peers: the configured one is removed before anything happened.
    let old = p.peer_a;
    assert!(p.a.remove_peer(p.now, old).is_some());
    assert_eq!(p.a.peers().count(), 0);
    let id = p.a.add_peer(policy);
    assert_ne!(id, old, "ids are never reused");
    assert_eq!(p.a.peer_by_name(&format!("to-{B_IP}")), Some(id));
    p.peer_a = id;
    p.initiate();
    p.run(Duration::from_secs(2));
    p.assert_one_matching_child();
    assert!(p
        .events_a
        .iter()
        .any(|e| matches!(e, IkeEvent::IkeSaUp { peer, .. } if *peer == id)));
}

#[test]
fn update_peer_only_in_place() {
    let mut p = established();
    let mut same = p.a.peer(p.peer_a).unwrap().clone();
    same.liveness_interval = Duration::from_secs(5);
    same.start_action = StartAction::OnTraffic;
    p.a.update_peer(p.peer_a, same).unwrap();
    assert_eq!(
        p.a.peer(p.peer_a).unwrap().liveness_interval,
        Duration::from_secs(5)
    );
    let mut changed = p.a.peer(p.peer_a).unwrap().clone();
    changed.remote_domain = vec!["10.9.0.0/16".parse().unwrap()];
    assert!(p.a.update_peer(p.peer_a, changed).is_err());
    assert_eq!(
        p.a.peer(p.peer_a).unwrap().remote_domain,
        vec!["10.2.0.0/16".parse::<ipnet::IpNet>().unwrap()]
    );
    // The SA is untouched.
    p.run(Duration::from_secs(1));
    p.assert_one_matching_child();
}

/// Several engines on one wire, routed by destination address; no loss.
struct Net {
    nodes: Vec<(IpAddr, Ike, Vec<IkeEvent>)>,
    now: Instant,
}

impl Net {
    fn run(&mut self, rounds: usize) {
        for _ in 0..rounds {
            self.now += LATENCY;
            let mut wire: Vec<(SocketAddr, SocketAddr, Vec<u8>)> = Vec::new();
            for (_, ike, events) in &mut self.nodes {
                while let Some(ev) = ike.poll_event() {
                    match ev {
                        IkeEvent::Transmit { local, remote, msg } => {
                            wire.push((local, remote, msg))
                        }
                        other => events.push(other),
                    }
                }
            }
            for (src, dst, msg) in wire {
                if let Some((_, ike, _)) = self.nodes.iter_mut().find(|n| n.0 == dst.ip()) {
                    ike.handle_datagram(self.now, dst, src, &msg);
                }
            }
        }
    }
}

#[test]
fn one_template_serves_initiators_from_two_addresses() {
    const A2_IP: &str = "192.0.2.7";
    let client = |addr: &str, domain: &str| {
        let mut pc = peer_config(addr, B_IP, "10.2.0.0/16");
        pc.local_id = Identity::Fqdn("client.example".into());
        pc.remote_id = Identity::Fqdn("gw.example".into());
        engine(ike_config(domain, pc), addr.len() as u8)
    };
    let (a1, a1_peer) = client(A_IP, "10.1.0.0/16");
    let (a2, a2_peer) = client(A2_IP, "10.3.0.0/16");
    // B: a fixed-address peer first (not matching either client), then the template.
    let mut fixed = peer_config(B_IP, "198.51.100.77", "10.7.0.0/16");
    fixed.start_action = StartAction::None;
    let mut template = peer_config(B_IP, A_IP, "10.0.0.0/8");
    template.name = "clients".into();
    template.remote_address = RemoteAddress::Any;
    template.remote_id = Identity::Fqdn("client.example".into());
    template.local_id = Identity::Fqdn("gw.example".into());
    template.start_action = StartAction::None;
    let mut bc = ike_config("10.2.0.0/16", fixed);
    bc.peers.push(template);
    let (b, _) = engine(bc, 3);
    let template_id = b.peer_by_name("clients").unwrap();
    assert!(b.peer(template_id).unwrap().is_template());

    let mut net = Net {
        nodes: vec![
            (ip(A_IP), a1, Vec::new()),
            (ip(A2_IP), a2, Vec::new()),
            (ip(B_IP), b, Vec::new()),
        ],
        now: Instant::now(),
    };
    let now = net.now;
    net.nodes[0].1.initiate(now, a1_peer);
    net.nodes[1].1.initiate(now, a2_peer);
    net.run(20);

    let b_status = net.nodes[2].1.status(net.now);
    assert_eq!(b_status.len(), 2, "{b_status:#?}");
    for s in &b_status {
        assert_eq!(s.peer, template_id);
        assert_eq!(s.peer_name, "clients");
        assert_eq!(s.state, rampart_ike::IkeSaStateKind::Established);
        assert_eq!(s.children.len(), 1);
    }
    let remotes: Vec<IpAddr> = b_status.iter().map(|s| s.remote.ip()).collect();
    assert!(remotes.contains(&ip(A_IP)) && remotes.contains(&ip(A2_IP)));
    // Each client's CHILD SA is narrowed to its own domain, inside the template's.
    for (i, want) in [(0, "10.1.0.0"), (1, "10.3.0.0")] {
        let ups: Vec<_> = net.nodes[i]
            .2
            .iter()
            .filter(|e| matches!(e, IkeEvent::ChildSaUp(_)))
            .collect();
        assert_eq!(ups.len(), 1, "client {i}: {:#?}", net.nodes[i].2);
        assert!(format!("{:?}", ups[0]).contains(want));
    }
    // Neither SA took the other down (no INITIAL_CONTACT or duplicate confusion).
    assert!(!net.nodes[2]
        .2
        .iter()
        .any(|e| matches!(e, IkeEvent::IkeSaDown { .. })));
    // A template is never initiated.
    let now = net.now;
    net.nodes[2].1.initiate(now, template_id);
    assert!(net.nodes[2].1.poll_event().is_none());
}

#[test]
fn an_unknown_identity_does_not_match_a_template() {
    let mut pc = peer_config(A_IP, B_IP, "10.2.0.0/16");
    pc.local_id = Identity::Fqdn("stranger.example".into());
    let (a, a_peer) = engine(ike_config("10.1.0.0/16", pc), 1);
    let mut template = peer_config(B_IP, A_IP, "10.0.0.0/8");
    template.remote_address = RemoteAddress::Any;
    template.remote_id = Identity::Fqdn("client.example".into());
    template.start_action = StartAction::None;
    let (b, _) = engine(ike_config("10.2.0.0/16", template), 2);
    let mut net = Net {
        nodes: vec![(ip(A_IP), a, Vec::new()), (ip(B_IP), b, Vec::new())],
        now: Instant::now(),
    };
    let now = net.now;
    net.nodes[0].1.initiate(now, a_peer);
    net.run(20);
    assert!(net.nodes[1]
        .1
        .status(net.now)
        .iter()
        .all(|s| s.state != rampart_ike::IkeSaStateKind::Established));
    assert!(!net.nodes[0]
        .2
        .iter()
        .any(|e| matches!(e, IkeEvent::ChildSaUp(_))));
}

#[test]
fn an_always_peer_that_failed_authentication_is_tried_again_with_backoff() {
    let (a, mut b) = configs(false);
    let good_psk = b.peers[0].psk.clone();
    b.peers[0].psk = zeroize::Zeroizing::new(b"a different key, also long enough".to_vec());
    let mut p = Pair::new(a, b);
    p.initiate();
    p.run(Duration::from_secs(2));
    assert!(p.live_children(Side::A).is_empty(), "wrong key: no tunnel");
    assert!(p.events_a.iter().any(|e| matches!(
        e,
        IkeEvent::IkeSaDown {
            reason: DownReason::AuthenticationFailed,
            ..
        }
    )));
    // The first retry comes 5 s after the failure (at about 0.05 s); it fails again (still the
    // wrong key).
    let sent_before = p.sent.len();
    p.run(Duration::from_secs(2));
    let early: Vec<_> = p.sent[sent_before..]
        .iter()
        .map(|x| (x.from, x.exchange(), x.at - p.start))
        .collect();
    assert_eq!(
        p.sent.len(),
        sent_before,
        "no retry before the backoff: {early:?}"
    );
    p.run(Duration::from_secs(2));
    assert!(p.sent.len() > sent_before, "retried after 5 s");
    assert!(p.live_children(Side::A).is_empty());
    // B's operator fixes the key; A's next retry (10 s after the second failure) succeeds.
    let mut fixed = p.b.peer(p.peer_b).unwrap().clone();
    fixed.psk = good_psk;
    p.b.remove_peer(p.now, p.peer_b);
    p.peer_b = p.b.add_peer(fixed);
    p.run(Duration::from_secs(11));
    p.assert_one_matching_child();
}
