//! Property: over a network with random loss, duplication and reordering, every standby
//! receives every record of the active member exactly once and in order (after
//! retransmission), with nothing counted lost; and after convergence exactly one member is
//! active.

mod common;

use std::time::Duration;

use common::Net;
use proptest::prelude::*;
use rampart_cluster::{MemberState, RecordKind};

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn lossy_network_delivers_everything_in_order(
        n in 2u8..=5,
        seed in any::<u64>(),
        loss in 0u32..150,
        dup in 0u32..100,
        jitter_us in 0u64..5000,
        batches in proptest::collection::vec(1usize..200, 1..20),
    ) {
        // A generous dead time: this property is about the delta stream, not failure detection.
        let priorities: Vec<u16> = (0..n).map(|i| 100 + u16::from(i) * 10).collect();
        let mut net = Net::with_dead_after(n, &priorities, false, seed, 20);
        net.run_for(Duration::from_secs(3));
        let actives = net.actives();
        prop_assert_eq!(actives.len(), 1);
        let a = actives[0];
        prop_assert_eq!(a, usize::from(n) - 1, "highest priority");
        for (i, s) in net.states().iter().enumerate() {
            if i != a {
                prop_assert_eq!(*s, MemberState::Standby);
            }
        }
        net.loss = loss;
        net.dup = dup;
        net.jitter = Duration::from_micros(jitter_us);
        let mut pushed = Vec::new();
        let mut key = 1u64 << 48;
        for batch in batches {
            for _ in 0..batch {
                key += 1 + (key % 3);
                let body = key.to_be_bytes().repeat(5);
                let seq = net.cluster(a).next_seq();
                net.write(a, RecordKind::ConnUpsert, key, &body);
                pushed.push((seq, key, body));
            }
            net.run_for(Duration::from_millis(7));
        }
        // Heal the network and let retransmission finish.
        net.run_for(Duration::from_secs(1));
        net.loss = 0;
        net.dup = 0;
        net.jitter = Duration::ZERO;
        net.run_for(Duration::from_secs(1));
        prop_assert_eq!(net.actives(), vec![a]);
        for i in (0..usize::from(n)).filter(|&i| i != a) {
            let got: Vec<(u64, u64, Vec<u8>)> = net.nodes[i]
                .delivered
                .iter()
                .map(|r| (r.seq, r.key, r.body.clone()))
                .collect();
            prop_assert_eq!(&got, &pushed, "member {}", i + 1);
            prop_assert_eq!(net.cluster(i).stats().lost, 0);
            prop_assert_eq!(&net.nodes[i].table, &net.nodes[a].table);
        }
        let s = net.cluster(a).stats();
        prop_assert_eq!(s.retransmit_queue, 0, "everything acknowledged and freed");
        prop_assert_eq!(s.lost, 0);
    }

    /// Members start at random times with random priorities and links cut at random; once
    /// every link is healed, exactly one member is active and everybody follows it.
    #[test]
    fn election_converges_to_one_active(
        n in 2u8..=5,
        seed in any::<u64>(),
        priorities in proptest::collection::vec(1u16..4, 5),
        cuts in proptest::collection::vec((0usize..5, 0usize..5), 0..6),
        loss in 0u32..100,
    ) {
        let mut net = Net::with_dead_after(n, &priorities, false, seed, 3);
        net.loss = loss;
        for (x, y) in &cuts {
            let (x, y) = (x % usize::from(n), y % usize::from(n));
            if x != y {
                net.cut_link(x, y, true);
            }
        }
        net.run_for(Duration::from_secs(2));
        net.cut.clear();
        net.loss = 0;
        net.run_for(Duration::from_secs(3));
        let actives = net.actives();
        prop_assert_eq!(actives.len(), 1, "states {:?}", net.states());
        for (i, s) in net.states().iter().enumerate() {
            if i != actives[0] {
                prop_assert_eq!(*s, MemberState::Standby, "member {}", i + 1);
            }
        }
    }
}

#[test]
fn ten_percent_loss_is_repaired_by_retransmission() {
    let mut net = Net::with_dead_after(3, &[300, 200, 100], false, 99, 20);
    // The first member takes the role after the dead time (2 s here).
    net.run_for(Duration::from_secs(3));
    net.loss = 100;
    net.dup = 20;
    net.jitter = Duration::from_millis(2);
    for round in 0..100u64 {
        for j in 0..20 {
            let k = round * 20 + j;
            net.write(0, RecordKind::ConnUpsert, k, &k.to_be_bytes().repeat(5));
        }
        net.run_for(Duration::from_millis(5));
    }
    net.loss = 0;
    net.run_for(Duration::from_secs(1));
    let s = net.cluster(0).stats();
    assert!(s.retransmitted > 0 && s.nacks_received > 0, "{s:?}");
    assert_eq!(s.lost, 0);
    for i in 1..3 {
        let seqs: Vec<u64> = net.nodes[i].delivered.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (0..2000).collect::<Vec<u64>>(), "each once, in order");
        assert_eq!(net.nodes[i].table, net.nodes[0].table);
        assert_eq!(net.cluster(i).stats().lost, 0);
    }
}

#[test]
fn records_missed_during_a_cut_are_retransmitted_after_it() {
    let mut net = Net::with_dead_after(2, &[200, 100], false, 5, 20);
    net.run_for(Duration::from_secs(3));
    net.cut_link(0, 1, true);
    for k in 0..10u64 {
        net.write(0, RecordKind::ConnUpsert, k, &[1; 40]);
    }
    net.run_for(Duration::from_millis(50));
    net.cut_link(0, 1, false);
    // The next heartbeat announces the sender's next_seq: the receiver NACKs the tail.
    net.run_for(Duration::from_millis(250));
    assert_eq!(net.cluster(1).stats().lost, 0);
    assert_eq!(net.nodes[1].table, net.nodes[0].table);
    assert!(net.cluster(0).stats().retransmitted >= 10);
}

#[test]
fn a_gap_the_sender_cannot_fill_is_counted_and_resynced() {
    common::QUEUE.with(|q| q.set(16));
    let mut net = Net::with_dead_after(2, &[200, 100], false, 5, 20);
    net.run_for(Duration::from_secs(3));
    net.cut_link(0, 1, true);
    for k in 0..100u64 {
        net.write(0, RecordKind::ConnUpsert, k, &[1; 40]);
    }
    net.run_for(Duration::from_millis(50));
    net.cut_link(0, 1, false);
    net.run_for(Duration::from_millis(500));
    let s = net.cluster(1).stats();
    assert_eq!(s.lost, 84, "the 84 records that left the 16-record queue");
    assert_eq!(s.resyncs, 1);
    assert_eq!(s.full_syncs_received, 2);
    assert_eq!(net.cluster(1).state(), MemberState::Standby);
    assert_eq!(net.nodes[1].table, net.nodes[0].table);
    assert!(net.nodes[1].events.iter().any(|e| matches!(
        e,
        rampart_cluster::ClusterEvent::Log { message } if message.contains("lost 84")
    )));
}

/// Runs until just after member `i` sent a heartbeat (idle stream: only heartbeats go out),
/// so the next one is about a heartbeat interval away.
fn just_after_heartbeat(net: &mut Net, i: usize) {
    let before = net.cluster(i).stats().datagrams_sent;
    for _ in 0..200 {
        net.run_for(Duration::from_millis(1));
        if net.cluster(i).stats().datagrams_sent != before {
            return;
        }
    }
    panic!("no heartbeat");
}

#[test]
fn a_lost_tail_is_resent_without_waiting_for_a_heartbeat() {
    let mut net = Net::with_dead_after(2, &[200, 100], false, 11, 20);
    net.run_for(Duration::from_secs(3));
    // A first burst measures the round trip; nothing is resent when nothing is lost.
    for k in 0..10u64 {
        net.write(0, RecordKind::ConnUpsert, k, &[1; 40]);
    }
    net.run_for(Duration::from_millis(10));
    let s = net.cluster(0).stats();
    assert_eq!(s.retransmitted, 0, "no spurious probe");
    assert_eq!(
        s.retransmit_queue, 0,
        "the end of a burst is acknowledged at once"
    );
    // The last (here: only) datagram of a burst is lost.
    just_after_heartbeat(&mut net, 0);
    net.cut_link(0, 1, true);
    for k in 10..20u64 {
        net.write(0, RecordKind::ConnUpsert, k, &[2; 40]);
    }
    // Sent after `FLUSH_DELAY` (1 ms), into the cut.
    net.run_for(Duration::from_millis(2));
    net.cut_link(0, 1, false);
    net.run_for(Duration::from_millis(15));
    assert_eq!(
        net.nodes[1].table, net.nodes[0].table,
        "repaired well before the next heartbeat"
    );
    let s = net.cluster(0).stats();
    assert_eq!(s.retransmitted, 10);
    assert_eq!(s.retransmit_queue, 0);
    assert_eq!(net.cluster(1).stats().lost, 0);

    // Two bursts, both lost: the probe resends the newest, the receiver NACKs the older one.
    just_after_heartbeat(&mut net, 0);
    net.cut_link(0, 1, true);
    for k in 20..30u64 {
        net.write(0, RecordKind::ConnUpsert, k, &[3; 40]);
    }
    net.run_for(Duration::from_millis(2));
    for k in 30..40u64 {
        net.write(0, RecordKind::ConnUpsert, k, &[4; 40]);
    }
    // Sent after `FLUSH_DELAY` (1 ms), into the cut.
    net.run_for(Duration::from_millis(2));
    net.cut_link(0, 1, false);
    net.run_for(Duration::from_millis(25));
    assert_eq!(net.nodes[1].table, net.nodes[0].table);
    let seqs: Vec<u64> = net.nodes[1].delivered.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..40).collect::<Vec<u64>>(), "each once, in order");
    assert_eq!(net.cluster(0).stats().retransmit_queue, 0);
}
