//! Load Sharing in the engine: three engines wired in memory (`common`), every member pushing
//! its own stream and applying the others', Flush-and-Ack holds driven by the engine's own
//! flush and acks, member death and restart during holds.

mod common;

use std::rc::Rc;
use std::time::Duration;

use common::{Net, Tweak};
use rampart_cluster::{
    ClusterEvent, ClusterMode, HoldOutcome, LoadSharingConfig, MemberId, MemberSet, MemberState,
    PacketHandle, RecordKind, ReleaseReason, Released,
};

fn ls(config: LoadSharingConfig) -> Tweak {
    Rc::new(move |c| {
        c.mode = ClusterMode::LoadSharing;
        c.load_sharing = Some(config);
    })
}

/// Three Load Sharing members after start-up: one pivot (Active), two in sync (Standby).
fn three(config: LoadSharingConfig, seed: u64) -> Net {
    let mut net = Net::with_tweak(3, &[100, 100, 100], false, seed, 3, Some(ls(config)));
    net.run_for(Duration::from_secs(2));
    let mut states = net.states();
    states.sort_by_key(|s| *s as u8);
    assert_eq!(net.actives().len(), 1, "{:?}", net.states());
    for i in 0..3 {
        assert!(
            matches!(
                net.nodes[i].cluster.state(),
                MemberState::Active | MemberState::Standby
            ),
            "{:?}",
            net.states()
        );
        let up = net.nodes[i].cluster.members_up();
        assert_eq!(
            up,
            [1, 2, 3].into_iter().collect::<MemberSet>(),
            "member {i}"
        );
    }
    net
}

fn releases(net: &mut Net, i: usize) -> Vec<Released> {
    std::iter::from_fn(|| net.cluster(i).poll_release()).collect()
}

fn key(member: usize, n: u64) -> u64 {
    (member as u64 + 1) << 48 | n
}

#[test]
fn every_member_pushes_its_stream_and_every_other_applies_it_with_from() {
    let mut net = three(LoadSharingConfig::default(), 1);
    for n in 0..50 {
        for i in 0..3 {
            net.write(i, RecordKind::ConnUpsert, key(i, n), &n.to_be_bytes());
        }
        net.run_for(Duration::from_micros(300));
    }
    net.run_for(Duration::from_millis(50));
    for i in 0..3 {
        for j in (0..3).filter(|&j| j != i) {
            let from_j: Vec<u64> = net.nodes[i]
                .delivered
                .iter()
                .filter(|r| r.from == j as MemberId + 1)
                .map(|r| r.key)
                .collect();
            let want: Vec<u64> = (0..50).map(|n| key(j, n)).collect();
            assert_eq!(
                from_j,
                want,
                "member {} applied member {}'s stream",
                i + 1,
                j + 1
            );
            assert!(
                net.nodes[i]
                    .delivered
                    .iter()
                    .all(|r| r.from != i as MemberId + 1),
                "a member never receives its own records"
            );
        }
        assert_eq!(net.nodes[i].table.len(), 150, "member {}", i + 1);
    }
}

#[test]
fn hold_is_released_after_both_others_acked_within_one_round_trip() {
    let mut net = three(LoadSharingConfig::default(), 2);
    // A non-pivot member creates the connection.
    let a = (0..3).find(|&i| !net.actives().contains(&i)).unwrap();
    let mut held_for = Vec::new();
    for n in 0..20u64 {
        net.write(a, RecordKind::ConnUpsert, key(a, n), b"conn");
        let now = net.now;
        let outcome = net.cluster(a).hold(now, PacketHandle(n));
        assert_eq!(outcome, HoldOutcome::Held);
        net.drain_all();
        // Not released before the others can have acknowledged (one way is 200 us).
        net.run_for(Duration::from_micros(390));
        assert!(
            releases(&mut net, a).is_empty(),
            "released before a round trip"
        );
        for i in (0..3).filter(|&i| i != a) {
            assert!(!net.nodes[i].table.is_empty());
        }
        net.run_for(Duration::from_millis(5));
        let r = releases(&mut net, a);
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].packet, PacketHandle(n));
        assert_eq!(r[0].reason, ReleaseReason::Acked);
        assert!(!r[0].drop);
        for i in (0..3).filter(|&i| i != a) {
            assert!(
                net.nodes[i].table.contains_key(&key(a, n)),
                "member {} has the connection at the release",
                i + 1
            );
        }
        held_for.push(r[0].held_for);
        net.run_for(Duration::from_millis(3));
    }
    let max = held_for.iter().max().unwrap();
    eprintln!("hold over a 200 us one-way link: max {max:?}, all {held_for:?}");
    assert!(*max < Duration::from_millis(1), "hold took {max:?}");
    assert!(
        held_for.iter().all(|d| *d >= Duration::from_micros(400)),
        "one round trip at least"
    );
    let stats = net.cluster(a).stats().flush_ack.unwrap();
    assert_eq!(stats.released_acked, 20);
    assert_eq!(stats.flushes, 20);
    assert_eq!(stats.timeouts, 0);
}

#[test]
fn hold_with_a_burst_covers_every_connection_with_one_flush_per_hold() {
    let mut net = three(LoadSharingConfig::default(), 3);
    let a = 0;
    let now = net.now;
    for n in 0..100u64 {
        net.write(a, RecordKind::ConnUpsert, key(a, n), &[7; 60]);
        assert_eq!(net.cluster(a).hold(now, PacketHandle(n)), HoldOutcome::Held);
    }
    net.drain_all();
    net.run_for(Duration::from_millis(10));
    let r = releases(&mut net, a);
    assert_eq!(r.len(), 100);
    let mut packets: Vec<u64> = r.iter().map(|r| r.packet.0).collect();
    packets.sort_unstable();
    assert_eq!(packets, (0..100).collect::<Vec<_>>(), "each exactly once");
    for i in 1..3 {
        assert_eq!(net.nodes[i].table.len(), 100);
    }
}

#[test]
fn high_availability_never_holds() {
    let mut net = Net::new(3, &[100, 100, 100], false, 4);
    net.run_for(Duration::from_secs(2));
    let a = net.actives()[0];
    net.write(a, RecordKind::ConnUpsert, 1, b"x");
    let now = net.now;
    assert_eq!(
        net.cluster(a).hold(now, PacketHandle(1)),
        HoldOutcome::ReleaseNow(ReleaseReason::NothingToWaitFor)
    );
    assert!(net.cluster(a).load_sharing().is_none());
    assert!(net.cluster(a).stats().flush_ack.is_none());
}

#[test]
fn a_member_killed_mid_hold_releases_the_hold_when_it_is_declared_dead() {
    // A hold timeout above the dead time (300 ms), so the member's death settles it.
    let config = LoadSharingConfig {
        hold_timeout: Duration::from_secs(1),
        ..LoadSharingConfig::default()
    };
    let mut net = three(config, 5);
    let (a, dead) = (0, 2);
    net.crash(dead);
    let t0 = net.now;
    net.write(a, RecordKind::ConnUpsert, key(a, 1), b"conn");
    assert_eq!(net.cluster(a).hold(t0, PacketHandle(9)), HoldOutcome::Held);
    net.drain_all();
    net.run_for(Duration::from_millis(100));
    assert!(
        releases(&mut net, a).is_empty(),
        "waits for the silent member"
    );
    net.run_for(Duration::from_millis(400));
    let r = releases(&mut net, a);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(
        r[0].reason,
        ReleaseReason::Acked,
        "down counts as acknowledged"
    );
    assert!(r[0].held_for >= Duration::from_millis(200));
    assert!(r[0].held_for <= Duration::from_millis(400));
    assert!(net.nodes[a]
        .events
        .contains(&ClusterEvent::MemberDown { member: 3 }));
    assert!(!net.cluster(a).members_up().contains(3));
    // With the member gone, a new hold waits for the survivor only.
    net.write(a, RecordKind::ConnUpsert, key(a, 2), b"conn");
    let now = net.now;
    assert_eq!(
        net.cluster(a).hold(now, PacketHandle(10)),
        HoldOutcome::Held
    );
    net.drain_all();
    net.run_for(Duration::from_millis(2));
    let r = releases(&mut net, a);
    assert_eq!(r.len(), 1);
    assert!(
        r[0].held_for < Duration::from_millis(1),
        "{:?}",
        r[0].held_for
    );
}

#[test]
fn a_silent_member_times_the_hold_out_and_is_not_waited_for_again() {
    let mut net = three(LoadSharingConfig::default(), 6);
    let (a, silent) = (0, 1);
    // Member 2 stops hearing anything from member 1 but still talks: it never acks.
    net.cut.insert((a, silent));
    net.write(a, RecordKind::ConnUpsert, key(a, 1), b"conn");
    let t0 = net.now;
    assert_eq!(net.cluster(a).hold(t0, PacketHandle(1)), HoldOutcome::Held);
    net.drain_all();
    net.run_for(Duration::from_millis(260));
    let r = releases(&mut net, a);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].reason, ReleaseReason::Timeout);
    assert!(!r[0].drop);
    let stats = net.cluster(a).stats().flush_ack.unwrap();
    assert_eq!(stats.timeouts, 1);
    assert_eq!(stats.members_declared_down, 1);
    // A second hold does not wait for it (it is declared down until it catches up).
    net.write(a, RecordKind::ConnUpsert, key(a, 2), b"conn");
    let now = net.now;
    assert_eq!(net.cluster(a).hold(now, PacketHandle(2)), HoldOutcome::Held);
    net.drain_all();
    net.run_for(Duration::from_millis(2));
    let r = releases(&mut net, a);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].reason, ReleaseReason::Acked);
    // The link heals: the member catches up and is waited for again.
    net.cut.clear();
    net.run_for(Duration::from_millis(300));
    assert!(net.nodes[silent].table.contains_key(&key(a, 2)));
    net.write(a, RecordKind::ConnUpsert, key(a, 3), b"conn");
    let now = net.now;
    assert_eq!(net.cluster(a).hold(now, PacketHandle(3)), HoldOutcome::Held);
    net.drain_all();
    net.run_for(Duration::from_millis(2));
    assert_eq!(releases(&mut net, a).len(), 1);
    assert_eq!(
        net.cluster(a).stats().flush_ack.unwrap().timeouts,
        1,
        "no second timeout"
    );
}

#[test]
fn hold_timeout_with_drop_policy_drops() {
    let config = LoadSharingConfig {
        hold_timeout_action: rampart_cluster::TimeoutPolicy::Drop,
        ..LoadSharingConfig::default()
    };
    let mut net = three(config, 7);
    net.cut.insert((0, 2));
    net.write(0, RecordKind::ConnUpsert, key(0, 1), b"conn");
    let now = net.now;
    assert_eq!(net.cluster(0).hold(now, PacketHandle(4)), HoldOutcome::Held);
    net.drain_all();
    net.run_for(Duration::from_millis(300));
    let r = releases(&mut net, 0);
    assert_eq!(r.len(), 1);
    assert!(r[0].drop);
    assert_eq!(r[0].reason, ReleaseReason::Timeout);
}

#[test]
fn a_restart_raises_member_down_then_member_up_and_releases_holds_waiting_for_it() {
    let config = LoadSharingConfig {
        hold_timeout: Duration::from_secs(1),
        ..LoadSharingConfig::default()
    };
    let mut net = three(config, 8);
    let (a, r) = (0, 2);
    net.crash(r);
    net.write(a, RecordKind::ConnUpsert, key(a, 1), b"conn");
    let now = net.now;
    assert_eq!(net.cluster(a).hold(now, PacketHandle(1)), HoldOutcome::Held);
    net.drain_all();
    net.run_for(Duration::from_millis(50));
    assert!(releases(&mut net, a).is_empty());
    // Back within the dead time with a new boot: the others never saw it die.
    net.nodes[a].events.clear();
    net.restart(r);
    net.run_for(Duration::from_millis(150));
    let events: Vec<&ClusterEvent> = net.nodes[a]
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                ClusterEvent::MemberDown { member: 3 } | ClusterEvent::MemberUp { member: 3 }
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            &ClusterEvent::MemberDown { member: 3 },
            &ClusterEvent::MemberUp { member: 3 }
        ]
    );
    let rel = releases(&mut net, a);
    assert_eq!(
        rel.len(),
        1,
        "its old acks no longer count; its death settles the hold"
    );
    assert!(rel[0].held_for < Duration::from_millis(250));
    // It pulls a full sync from the pivot and is up again.
    net.run_for(Duration::from_secs(1));
    assert!(
        net.cluster(a).members_up().contains(3),
        "{:?}",
        net.states()
    );
}

#[test]
fn owner_is_one_member_for_both_directions_and_follows_the_members_up() {
    use rampart_cluster::FlowKey;
    let mut net = three(LoadSharingConfig::default(), 9);
    let flows: Vec<FlowKey> = (0..300u16)
        .map(|p| {
            FlowKey::conn(
                6,
                format!("10.1.0.1:{}", 1000 + p).parse().unwrap(),
                "192.0.2.9:443".parse().unwrap(),
            )
        })
        .collect();
    let owners: Vec<MemberId> = flows.iter().map(|f| net.cluster(0).owner(f)).collect();
    for i in 1..3 {
        let theirs: Vec<MemberId> = flows.iter().map(|f| net.cluster(i).owner(f)).collect();
        assert_eq!(owners, theirs, "every member computes the same owner");
    }
    for m in 1..=3 {
        let n = owners.iter().filter(|&&o| o == m).count();
        assert!((60..=140).contains(&n), "member {m} owns {n} of 300");
    }
    net.crash(2);
    net.run_for(Duration::from_millis(500));
    for (f, &before) in flows.iter().zip(&owners) {
        let now = net.cluster(0).owner(f);
        assert_ne!(now, 3);
        if before != 3 {
            assert_eq!(now, before, "only the dead member's flows move");
        }
    }
    let status = net.nodes[0].cluster.status(net.now);
    assert_eq!(status.mode, "load-sharing");
    let ls = status.load_sharing.unwrap();
    assert!(!ls.ownership.share(3).unwrap().up);
    assert_eq!(ls.ownership.share(1).unwrap().expected_permille, 500);
    assert!(ls.pivot.is_some());
}

#[test]
fn a_joiner_pulls_one_full_sync_from_the_pivot_and_then_follows_every_stream() {
    let mut net = three(LoadSharingConfig::default(), 10);
    for n in 0..30 {
        for i in 0..3 {
            net.write(i, RecordKind::ConnUpsert, key(i, n), b"before");
        }
        net.run_for(Duration::from_micros(500));
    }
    // Member 3 dies (its records live on in the others) and comes back empty.
    net.crash(2);
    net.run_for(Duration::from_millis(500));
    net.restart(2);
    net.nodes[2].events.clear();
    let mut syncing_seen = false;
    for n in 30..230 {
        for i in 0..2 {
            net.write(i, RecordKind::ConnUpsert, key(i, n), b"during");
        }
        // Not up (not carrying traffic) before it is in sync.
        if net.nodes[2].cluster.state() == MemberState::Syncing {
            syncing_seen = true;
            assert!(!net.cluster(0).members_up().contains(3));
        }
        net.run_for(Duration::from_millis(1));
    }
    net.run_for(Duration::from_millis(100));
    assert!(syncing_seen);
    let pulls: Vec<&ClusterEvent> = net.nodes[2]
        .events
        .iter()
        .filter(|e| matches!(e, ClusterEvent::FullSyncNeeded { .. }))
        .collect();
    assert_eq!(pulls.len(), 1, "one full sync: {:?}", net.nodes[2].events);
    let pivot = net.actives()[0] as MemberId + 1;
    assert!(
        matches!(pulls[0], ClusterEvent::FullSyncNeeded { member, .. } if *member == pivot),
        "from the pivot"
    );
    assert_eq!(net.nodes[2].cluster.state(), MemberState::Standby);
    assert!(net.cluster(0).members_up().contains(3));
    let missing: Vec<String> = net.nodes[0]
        .table
        .keys()
        .filter(|k| !net.nodes[2].table.contains_key(k))
        .map(|k| format!("{}:{}", k >> 48, k & 0xffff))
        .collect();
    assert!(missing.is_empty(), "the joiner misses {missing:?}");
    for i in 0..2 {
        for n in 0..230 {
            assert!(net.nodes[2].table.contains_key(&key(i, n)), "{i} {n}");
        }
    }
    // Member 3's own records from before its crash, except what was still in its send queue.
    let own = (0..30)
        .filter(|&n| net.nodes[2].table.contains_key(&key(2, n)))
        .count();
    assert!(own >= 28, "{own}");
    assert_eq!(net.nodes[2].table, net.nodes[0].table);
    assert_eq!(net.nodes[1].table, net.nodes[0].table);
    // And its own new stream reaches the others.
    net.write(2, RecordKind::ConnUpsert, key(2, 1000), b"after");
    net.run_for(Duration::from_millis(5));
    assert!(net.nodes[0].table.contains_key(&key(2, 1000)));
    assert!(net.nodes[1].table.contains_key(&key(2, 1000)));
}
