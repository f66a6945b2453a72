//! Membership, election and delta sync in a simulated network (see `common`).

mod common;

use std::time::Duration;

use common::{Net, HB};
use rampart_cluster::{ClusterEvent, MemberState, RecordKind, Role};

fn body(i: u64) -> Vec<u8> {
    let mut b = vec![0u8; 40];
    b[..8].copy_from_slice(&i.to_be_bytes());
    b
}

#[test]
fn two_members_elect_one_active_and_sync() {
    let mut net = Net::new(2, &[200, 100], false, 1);
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.states(), [MemberState::Active, MemberState::Standby]);
    assert_eq!(net.cluster(0).role(), Role::Active);
    for i in 0..1000u64 {
        net.write(0, RecordKind::ConnUpsert, 1 << 48 | i, &body(i));
    }
    net.run_for(HB * 3);
    assert_eq!(net.nodes[1].table, net.nodes[0].table);
    let s = net.cluster(1).stats();
    assert_eq!(s.lost, 0);
    assert_eq!(s.records_received, 1000);
    let s0 = net.cluster(0).stats();
    assert_eq!(s0.retransmit_queue, 0, "acked records are freed");
    let per_record = s0.bytes_sent as f64 / 1000.0;
    assert!(
        per_record < 60.0,
        "{per_record} bytes per record incl. heartbeats"
    );
}

fn run_to_steady(net: &mut Net) {
    net.run_for(Duration::from_secs(2));
}

#[test]
fn refusals_are_typed_counted_and_logged_once() {
    use rampart_cluster::{Cluster, ClusterEvent, DropReason};
    use rampart_crypto::Rng;
    let t0 = std::time::Instant::now();
    let mut a = Cluster::new(
        common::config(1, 2, &[], false),
        t0,
        5,
        Rng::from_seed([1; 32]),
    );
    let mut b = Cluster::new(
        common::config(2, 2, &[], false),
        t0,
        5,
        Rng::from_seed([2; 32]),
    );
    let mut wrong_cfg = common::config(2, 2, &[], false);
    wrong_cfg.auth.secret = zeroize::Zeroizing::new(b"another secret, same length!!!!".to_vec());
    let mut wrong = Cluster::new(wrong_cfg, t0, 6, Rng::from_seed([3; 32]));
    let mut other_name_cfg = common::config(2, 2, &[], false);
    other_name_cfg.name = "other".into();
    let mut other_name = Cluster::new(other_name_cfg, t0, 6, Rng::from_seed([4; 32]));
    b.handle_timeout(t0);
    wrong.handle_timeout(t0);
    other_name.handle_timeout(t0);
    let good = b.poll_transmit().unwrap().data;
    let bad = wrong.poll_transmit().unwrap().data;
    let bad_name = other_name.poll_transmit().unwrap().data;
    let from = common::addr(2);
    assert_eq!(
        a.handle_datagram(t0, 0, from, &mut good[..good.len() - 1].to_vec()),
        Err(DropReason::Auth),
        "truncated ciphertext fails authentication"
    );
    let mut flipped = good.clone();
    flipped[30] ^= 1;
    assert_eq!(
        a.handle_datagram(t0, 0, from, &mut flipped),
        Err(DropReason::Auth)
    );
    assert_eq!(a.handle_datagram(t0, 0, from, &mut good.clone()), Ok(()));
    assert_eq!(
        a.handle_datagram(t0, 0, from, &mut good.clone()),
        Err(DropReason::Replay)
    );
    assert_eq!(
        a.handle_datagram(t0, 0, from, &mut bad.clone()),
        Err(DropReason::Auth)
    );
    assert_eq!(
        a.handle_datagram(t0, 0, from, &mut bad_name.clone()),
        Err(DropReason::Auth)
    );
    assert_eq!(
        a.handle_datagram(t0, 0, from, &mut good[..20].to_vec()),
        Err(DropReason::Malformed)
    );
    let mut unknown = good.clone();
    unknown[4] = 9;
    assert_eq!(
        a.handle_datagram(t0, 0, from, &mut unknown),
        Err(DropReason::UnknownMember)
    );
    // An older boot of member 2 after a newer one.
    let mut old = Cluster::new(
        common::config(2, 2, &[], false),
        t0,
        4,
        Rng::from_seed([5; 32]),
    );
    old.handle_timeout(t0);
    let mut old_dg = old.poll_transmit().unwrap().data;
    assert_eq!(
        a.handle_datagram(t0, 0, from, &mut old_dg),
        Err(DropReason::Replay)
    );
    let s = a.stats();
    assert_eq!(
        (
            s.dropped_auth,
            s.dropped_replay,
            s.dropped_malformed,
            s.dropped_unknown_member
        ),
        (4, 2, 1, 1)
    );
    let logs: Vec<String> = std::iter::from_fn(|| a.poll_event())
        .filter_map(|e| match e {
            ClusterEvent::Log { message } => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(
        logs,
        [
            "cluster datagram from 10.0.0.2:8116 refused: authentication failed \
          (wrong cluster secret or name?)"
        ],
        "one line per source, naming the first reason"
    );
}

#[test]
fn highest_priority_wins_and_failover_and_no_switch_back() {
    let mut net = Net::new(3, &[100, 300, 200], false, 2);
    run_to_steady(&mut net);
    assert_eq!(net.actives(), [1]);
    assert_eq!(
        net.states(),
        [
            MemberState::Standby,
            MemberState::Active,
            MemberState::Standby
        ]
    );
    for i in 0..100 {
        net.write(1, RecordKind::ConnUpsert, i, &body(i));
    }
    net.run_for(HB);
    net.crash(1);
    net.run_for(HB * 4 + HB / 2);
    assert_eq!(
        net.actives(),
        [2],
        "the next priority takes over within the dead time"
    );
    assert_eq!(net.nodes[2].table.len(), 100);
    assert!(net.nodes[2]
        .events
        .iter()
        .any(|e| matches!(e, ClusterEvent::BecameActive { .. })));
    // Member 1 followed 2 and must now resync from 3.
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.nodes[0].cluster.state(), MemberState::Standby);
    assert_eq!(net.nodes[0].table, net.nodes[2].table);
    net.restart(1);
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.actives(), [2], "no switch back");
    assert_eq!(net.nodes[1].cluster.state(), MemberState::Standby);
    assert_eq!(net.nodes[1].table, net.nodes[2].table);
}

#[test]
fn switch_back_returns_the_role_gracefully() {
    let mut net = Net::new(2, &[200, 100], true, 3);
    run_to_steady(&mut net);
    assert_eq!(net.actives(), [0]);
    net.crash(0);
    net.run_for(Duration::from_millis(500));
    assert_eq!(net.actives(), [1]);
    for i in 0..50 {
        net.write(1, RecordKind::ConnUpsert, i, &body(i));
    }
    net.restart(0);
    net.run_for(Duration::from_secs(2));
    assert_eq!(
        net.actives(),
        [0],
        "the better-ranked member takes the role back"
    );
    assert_eq!(net.nodes[1].cluster.state(), MemberState::Standby);
    assert_eq!(net.nodes[0].table, net.nodes[1].table);
    assert_eq!(net.nodes[0].table.len(), 50);
}

#[test]
fn interface_down_gives_up_the_role_and_admin_down_hands_over() {
    let mut net = Net::new(2, &[200, 100], false, 4);
    run_to_steady(&mut net);
    assert_eq!(net.actives(), [0]);
    let now = net.now;
    net.cluster(0).set_interface_state(now, "eth1", false);
    assert_eq!(net.cluster(0).state(), MemberState::Down);
    net.run_for(HB / 2);
    assert_eq!(
        net.actives(),
        [1],
        "the standby takes over at once (no dead time)"
    );
    let now = net.now;
    let st = net.cluster(1).status(now);
    assert_eq!(st.members[0].interfaces_down, ["eth1"]);
    assert_eq!(st.virtual_addresses[0].owner, Some(2));
    let now = net.now;
    net.cluster(0).set_interface_state(now, "eth1", true);
    net.run_for(HB * 2);
    assert_eq!(net.cluster(0).state(), MemberState::Standby);
    assert_eq!(net.actives(), [1], "no switch back");
    // Admin down on the active hands over gracefully, nothing lost.
    for i in 0..200 {
        net.write(1, RecordKind::ConnUpsert, i, &body(i));
    }
    let now = net.now;
    net.cluster(1).set_admin_down(now, true);
    net.run_for(HB / 2);
    assert_eq!(net.actives(), [0]);
    assert_eq!(net.cluster(1).state(), MemberState::Down);
    assert_eq!(net.nodes[0].table, net.nodes[1].table);
    let now = net.now;
    net.cluster(1).set_admin_down(now, false);
    net.run_for(HB * 2);
    assert_eq!(net.cluster(1).state(), MemberState::Standby);
}

#[test]
fn switchover_is_graceful_and_fast() {
    use rampart_cluster::SwitchoverError;
    let mut net = Net::new(3, &[300, 200, 100], false, 5);
    run_to_steady(&mut net);
    let now = net.now;
    assert_eq!(
        net.cluster(1).switchover(now, None),
        Err(SwitchoverError::NotActive)
    );
    assert_eq!(
        net.cluster(0).switchover(now, Some(9)),
        Err(SwitchoverError::NotEligible(9))
    );
    for i in 0..300 {
        net.write(0, RecordKind::ConnUpsert, i, &body(i));
    }
    let now = net.now;
    net.cluster(0).switchover(now, Some(3)).unwrap();
    net.drain_all();
    net.run_for(Duration::from_millis(5));
    assert_eq!(net.actives(), [2], "target active within a few ms");
    assert_eq!(net.cluster(0).state(), MemberState::Standby);
    assert_eq!(net.nodes[2].table, net.nodes[0].table);
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.actives(), [2]);
    assert_eq!(net.nodes[1].table, net.nodes[2].table);
    assert_eq!(net.cluster(2).stats().lost, 0);
}

#[test]
fn sync_link_cut_gives_two_actives_and_healing_keeps_the_most_recent_taker() {
    let mut net = Net::new(2, &[100, 100], false, 6);
    run_to_steady(&mut net);
    assert_eq!(net.actives(), [0], "equal priority: lower id");
    assert_eq!(net.cluster(0).generation(), 1);
    for i in 0..10 {
        net.write(0, RecordKind::ConnUpsert, i, &body(i));
    }
    net.run_for(HB);
    net.cut_link(0, 1, true);
    net.run_for(Duration::from_secs(1));
    assert_eq!(
        net.actives(),
        [0, 1],
        "each side sees the other dead and takes the role"
    );
    assert_eq!(
        net.cluster(1).generation(),
        2,
        "the taker's generation is above every generation it saw"
    );
    // Member 2 carries the traffic now (its gratuitous ARP moved the addresses); member 1's
    // state is stale.
    net.write(0, RecordKind::ConnUpsert, 100, &body(100));
    net.write(1, RecordKind::ConnUpsert, 200, &body(200));
    net.write(1, RecordKind::ConnUpsert, 5, &body(500));
    net.cut_link(0, 1, false);
    net.run_for(Duration::from_secs(1));
    assert_eq!(
        net.actives(),
        [1],
        "the most recent taker stays active although it ranks lower"
    );
    assert_eq!(net.cluster(0).state(), MemberState::Standby);
    assert!(net.nodes[0].events.iter().any(|e| matches!(
        e,
        ClusterEvent::BecameStandby { reason }
            if reason.contains("split brain") && reason.contains("more recently")
    )));
    let reannounced = net.nodes[1]
        .events
        .iter()
        .filter(|e| matches!(e, ClusterEvent::ReannounceAddresses { .. }))
        .count();
    assert_eq!(reannounced, 1, "the winner re-announces its addresses once");
    assert!(!net.nodes[0]
        .events
        .iter()
        .any(|e| matches!(e, ClusterEvent::ReannounceAddresses { .. })));
    assert_eq!(
        net.nodes[0].table, net.nodes[1].table,
        "the loser's state is replaced by the winner's"
    );
    assert!(!net.nodes[0].table.contains_key(&100));
    assert_eq!(net.nodes[0].table[&5], body(500));
    // The generation survives: a later failover goes above it.
    net.crash(1);
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.actives(), [0]);
    assert_eq!(net.cluster(0).generation(), 3);
}

#[test]
fn simultaneous_actives_with_equal_generations_fall_back_to_rank() {
    // The sync link is cut from the start: both members start the cluster alone.
    let mut net = Net::new(2, &[100, 200], false, 8);
    net.cut_link(0, 1, true);
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.actives(), [0, 1]);
    assert_eq!(net.cluster(0).generation(), 1);
    assert_eq!(net.cluster(1).generation(), 1);
    net.write(0, RecordKind::ConnUpsert, 1, &body(1));
    net.write(1, RecordKind::ConnUpsert, 2, &body(2));
    net.cut_link(0, 1, false);
    net.run_for(Duration::from_secs(1));
    assert_eq!(
        net.actives(),
        [1],
        "same generation: the higher priority stays"
    );
    assert_eq!(net.cluster(0).state(), MemberState::Standby);
    assert!(net.nodes[0].events.iter().any(|e| matches!(
        e,
        ClusterEvent::BecameStandby { reason } if reason.contains("ranks higher")
    )));
    assert!(net.nodes[1]
        .events
        .iter()
        .any(|e| matches!(e, ClusterEvent::ReannounceAddresses { .. })));
    assert_eq!(net.nodes[0].table, net.nodes[1].table);
    assert!(net.nodes[0].table.contains_key(&2) && !net.nodes[0].table.contains_key(&1));
}

#[test]
fn snapshot_with_concurrent_deltas_converges() {
    let mut net = Net::new(2, &[200, 100], false, 7);
    run_to_steady(&mut net);
    for i in 0..500 {
        net.write(0, RecordKind::ConnUpsert, i, &body(i));
    }
    net.crash(1);
    net.run_for(Duration::from_millis(500));
    net.restart(1);
    net.full_sync_time = Duration::from_millis(150);
    // Keep writing while member 2 joins and pulls its snapshot.
    for round in 0..60u64 {
        for j in 0..20 {
            let k = round * 20 + j;
            if k % 7 == 0 {
                net.write(0, RecordKind::ConnDelete, k / 2, &[]);
            } else {
                net.write(0, RecordKind::ConnUpsert, k, &body(k + round));
            }
        }
        net.run_for(Duration::from_millis(10));
    }
    net.run_for(Duration::from_millis(500));
    assert_eq!(net.cluster(1).state(), MemberState::Standby);
    assert_eq!(net.nodes[1].table, net.nodes[0].table);
    assert_eq!(net.cluster(1).stats().full_syncs_received, 1);
}
