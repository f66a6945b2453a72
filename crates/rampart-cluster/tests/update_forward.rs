//! Load Sharing's update requests (UPD_REQ, message types 7 and 8) and packet forwarding
//! (type 9) between three engines wired in memory (`common`). The test plays the node: it
//! answers queries from its table (a connection's key is its flow's client port) and pushes a
//! fresh record of what it has before answering `found`.

mod common;

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use common::Net;
use rampart_cluster::{
    ClusterMode, FlowKey, ForwardKind, Forwarded, LoadSharingConfig, MemberSet, PacketHandle,
    RecordKind, Resolution, UpdateOutcome,
};

fn three(seed: u64) -> Net {
    let tweak: common::Tweak = Rc::new(|c| {
        c.mode = ClusterMode::LoadSharing;
        c.load_sharing = Some(LoadSharingConfig::default());
    });
    let mut net = Net::with_tweak(3, &[100, 100, 100], false, seed, 3, Some(tweak));
    net.run_for(Duration::from_secs(2));
    for i in 0..3 {
        assert_eq!(
            net.nodes[i].cluster.members_up(),
            [1, 2, 3].into_iter().collect::<MemberSet>()
        );
    }
    net
}

fn flow(port: u16) -> FlowKey {
    FlowKey::conn(
        6,
        format!("10.1.0.1:{port}").parse().unwrap(),
        "192.0.2.9:443".parse().unwrap(),
    )
}

fn key_of(flow: &FlowKey) -> u64 {
    match flow {
        FlowKey::Conn { lo, .. } => u64::from(lo.port()),
        FlowKey::Esp { spi } => u64::from(*spi),
    }
}

/// Plays the node of every member that `answers`: each query is answered from its table.
fn serve(net: &mut Net, answers: &[usize]) -> usize {
    let mut served = 0;
    for &i in answers {
        while let Some(q) = net.cluster(i).poll_update_query() {
            served += 1;
            let key = key_of(&q.flow);
            let found = net.nodes[i].table.get(&key).cloned();
            if let Some(body) = &found {
                net.write(i, RecordKind::ConnUpsert, key, body);
            }
            let now = net.now;
            net.cluster(i).answer_update(now, q, found.is_some());
        }
    }
    net.drain_all();
    served
}

fn resolved(net: &mut Net, i: usize) -> Vec<(PacketHandle, FlowKey, Resolution)> {
    std::iter::from_fn(|| net.cluster(i).poll_resolved()).collect()
}

#[test]
fn found_waits_for_the_record_and_comes_back_after_it_is_applied() {
    let mut net = three(1);
    let (a, b) = (0, 1);
    // Member 2 has the connection (e.g. created before member 1 was in sync); 1 does not.
    net.nodes[b].table.insert(5000, b"conn 5000".to_vec());
    let now = net.now;
    let f = flow(5000);
    assert_eq!(
        net.cluster(a).request_update(now, PacketHandle(1), f),
        UpdateOutcome::Waiting
    );
    // A second packet of the same flow shares the query.
    assert_eq!(
        net.cluster(a).request_update(now, PacketHandle(2), f),
        UpdateOutcome::Waiting
    );
    net.drain_all();
    let t0 = net.now;
    let mut got = Vec::new();
    while got.len() < 2 && net.now < t0 + Duration::from_millis(50) {
        net.run_for(Duration::from_micros(50));
        serve(&mut net, &[1, 2]);
        for r in resolved(&mut net, a) {
            // The record was applied before the packet came back.
            assert_eq!(
                net.nodes[a].table.get(&5000).map(Vec::as_slice),
                Some(&b"conn 5000"[..])
            );
            got.push(r);
        }
    }
    let waited = net.now - t0;
    got.sort_by_key(|r| r.0);
    assert_eq!(
        got,
        [
            (
                PacketHandle(1),
                f,
                Resolution::Found {
                    member: 2,
                    key: 5000
                }
            ),
            (
                PacketHandle(2),
                f,
                Resolution::Found {
                    member: 2,
                    key: 5000
                }
            ),
        ]
    );
    assert!(waited < Duration::from_millis(2), "{waited:?}");
    let stats = net.cluster(a).stats();
    let ur = stats.update_requests.unwrap();
    assert_eq!((ur.queries, ur.packets, ur.found), (1, 2, 1));
    let answered: u64 = (1..3)
        .map(|i| net.cluster(i).stats().update_queries_answered)
        .sum();
    assert_eq!(answered, 2, "each other member answered once");
}

#[test]
fn unknown_when_every_member_says_so() {
    let mut net = three(2);
    let now = net.now;
    assert_eq!(
        net.cluster(2)
            .request_update(now, PacketHandle(7), flow(6000)),
        UpdateOutcome::Waiting
    );
    net.drain_all();
    let mut got = Vec::new();
    for _ in 0..40 {
        net.run_for(Duration::from_micros(50));
        serve(&mut net, &[0, 1]);
        got.extend(resolved(&mut net, 2));
    }
    assert_eq!(got, [(PacketHandle(7), flow(6000), Resolution::Unknown)]);
    assert_eq!(net.cluster(2).stats().update_requests.unwrap().unknown, 1);
}

#[test]
fn timeout_when_nobody_answers() {
    let mut net = three(3);
    let now = net.now;
    let t0 = now;
    assert_eq!(
        net.cluster(0)
            .request_update(now, PacketHandle(3), flow(7000)),
        UpdateOutcome::Waiting
    );
    net.drain_all();
    // The queries arrive but the nodes never answer.
    net.run_for(Duration::from_millis(200));
    assert!(resolved(&mut net, 0).is_empty());
    assert_eq!(serve(&mut net, &[]), 0);
    net.run_for(Duration::from_millis(100));
    let got = resolved(&mut net, 0);
    assert_eq!(got, [(PacketHandle(3), flow(7000), Resolution::Timeout)]);
    assert!(net.now - t0 >= Duration::from_millis(250));
    assert_eq!(net.cluster(0).stats().update_requests.unwrap().timeouts, 1);
    // The queries were delivered: the other members' nodes could have answered.
    assert!(net.cluster(1).poll_update_query().is_some());
    assert!(net.cluster(2).poll_update_query().is_some());
}

#[test]
fn alone_or_in_high_availability_an_orphan_is_unknown_at_once() {
    let mut net = three(4);
    net.crash(1);
    net.crash(2);
    net.run_for(Duration::from_millis(500));
    let now = net.now;
    assert_eq!(
        net.cluster(0).request_update(now, PacketHandle(1), flow(1)),
        UpdateOutcome::Resolved(Resolution::Unknown)
    );
    let mut ha = Net::new(2, &[100, 100], false, 5);
    ha.run_for(Duration::from_secs(1));
    let now = ha.now;
    assert_eq!(
        ha.cluster(0).request_update(now, PacketHandle(1), flow(1)),
        UpdateOutcome::Resolved(Resolution::Unknown)
    );
}

#[test]
fn forward_round_trip_between_members() {
    let mut net = three(6);
    let local: SocketAddr = "198.51.100.1:4500".parse().unwrap();
    let remote: SocketAddr = "203.0.113.7:61000".parse().unwrap();
    let esp: Vec<u8> = (0..1400u16).map(|i| i as u8).collect();
    let now = net.now;
    net.cluster(0)
        .forward(now, 3, ForwardKind::Udp, local, remote, &esp);
    net.drain_all();
    net.run_for(Duration::from_millis(1));
    let got: Vec<Forwarded> = std::iter::from_fn(|| net.cluster(2).poll_forwarded()).collect();
    assert_eq!(
        got,
        [Forwarded {
            from: 1,
            kind: ForwardKind::Udp,
            local,
            remote,
            data: esp.clone(),
        }]
    );
    assert!(
        net.cluster(1).poll_forwarded().is_none(),
        "only the addressee"
    );
    // The owner hands an inspected packet back (IPv6 addresses this time).
    let (l6, r6): (SocketAddr, SocketAddr) = (
        "[2001:db8::1]:0".parse().unwrap(),
        "[2001:db8:1::9]:0".parse().unwrap(),
    );
    let now = net.now;
    net.cluster(2)
        .forward(now, 1, ForwardKind::Inspected, l6, r6, b"cleartext");
    net.drain_all();
    net.run_for(Duration::from_millis(1));
    let back = net.cluster(0).poll_forwarded().unwrap();
    assert_eq!(
        (
            back.from,
            back.kind,
            back.local,
            back.remote,
            &back.data[..]
        ),
        (3, ForwardKind::Inspected, l6, r6, &b"cleartext"[..])
    );
    let s1 = net.nodes[0].cluster.status(net.now).load_sharing.unwrap();
    let s3 = net.nodes[2].cluster.status(net.now).load_sharing.unwrap();
    assert_eq!((s1.forwarded_sent, s1.forwarded_received), (1, 1));
    assert_eq!((s3.forwarded_sent, s3.forwarded_received), (1, 1));
    // To a dead member: refused and counted, never sent.
    net.crash(1);
    net.run_for(Duration::from_millis(500));
    let now = net.now;
    net.cluster(0)
        .forward(now, 2, ForwardKind::RawEsp, local, remote, &esp);
    assert!(net.cluster(0).poll_transmit().is_none());
    let s1 = net.nodes[0].cluster.status(net.now).load_sharing.unwrap();
    assert_eq!((s1.forwarded_sent, s1.forwarded_dropped), (1, 1));
}

#[test]
fn forward_is_refused_in_high_availability() {
    // A member in high availability refuses message type 9 as malformed.
    let tweak: common::Tweak = Rc::new(|c| {
        if c.member_id == 1 {
            c.mode = ClusterMode::LoadSharing;
        }
    });
    let mut net = Net::with_tweak(2, &[100, 100], false, 7, 3, Some(tweak));
    net.run_for(Duration::from_secs(1));
    let before = net.cluster(1).stats().dropped_malformed;
    let now = net.now;
    let a: SocketAddr = "192.0.2.1:500".parse().unwrap();
    net.cluster(0)
        .forward(now, 2, ForwardKind::Udp, a, a, b"ike");
    net.drain_all();
    net.run_for(Duration::from_millis(1));
    assert!(net.cluster(1).poll_forwarded().is_none());
    assert_eq!(net.cluster(1).stats().dropped_malformed, before + 1);
}
