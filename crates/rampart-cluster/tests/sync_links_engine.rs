//! Redundant sync networks in the engine: three members with two sync links each, wired in
//! memory (`common`). Heartbeats go on both links, the delta stream on the preferred live
//! one; a cut of link 0 with records in flight moves the stream to link 1 without a lost or
//! duplicated record, and it moves back after the hold-down once link 0 heals.

mod common;

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use common::{link_addr, Net};
use rampart_cluster::{ClusterEvent, ClusterMode, LoadSharingConfig, MemberId, RecordKind};

fn tweak(ls: bool) -> common::Tweak {
    Rc::new(move |c| {
        for m in &mut c.members {
            m.extra_sync_addresses = vec![link_addr(m.id, 1)];
        }
        c.sync_link_hold_down = Duration::from_millis(500);
        if ls {
            c.mode = ClusterMode::LoadSharing;
            c.load_sharing = Some(LoadSharingConfig::default());
        }
    })
}

fn key(member: usize, n: u64) -> u64 {
    (member as u64 + 1) << 48 | n
}

/// Every member writes one record every `gap` for `d`; returns how many each wrote.
fn write_for(net: &mut Net, writers: &[usize], start: u64, d: Duration, gap: Duration) -> u64 {
    let end = net.now + d;
    let mut n = start;
    while net.now < end {
        for &i in writers {
            net.write(i, RecordKind::ConnUpsert, key(i, n), &n.to_be_bytes());
        }
        n += 1;
        net.run_for(gap);
    }
    n
}

/// What member `i` received from member `from`, in order: sequence numbers and keys.
fn received(net: &Net, i: usize, from: usize) -> Vec<(u64, u64)> {
    net.nodes[i]
        .delivered
        .iter()
        .filter(|r| r.from == from as MemberId + 1)
        .map(|r| (r.seq, r.key))
        .collect()
}

fn assert_exactly_once(net: &Net, writers: &[usize], count: u64) {
    for &w in writers {
        for i in (0..net.nodes.len()).filter(|&i| i != w) {
            let got = received(net, i, w);
            let keys: Vec<u64> = got.iter().map(|&(_, k)| k).collect();
            let want: Vec<u64> = (0..count).map(|n| key(w, n)).collect();
            assert_eq!(
                keys,
                want,
                "member {} got member {}'s records once each, in order",
                i + 1,
                w + 1
            );
            assert!(
                got.windows(2).all(|p| p[1].0 == p[0].0 + 1),
                "consecutive sequence numbers"
            );
        }
    }
}

#[test]
fn heartbeats_on_both_links_stream_on_link_0() {
    let mut net = Net::with_tweak(3, &[100, 100, 100], false, 1, 3, Some(tweak(false)));
    net.run_for(Duration::from_secs(2));
    let a = net.actives()[0];
    let n = write_for(
        &mut net,
        &[a],
        0,
        Duration::from_millis(50),
        Duration::from_millis(1),
    );
    net.run_for(Duration::from_millis(20));
    assert_exactly_once(&net, &[a], n);
    let links = net.cluster(a).stats().links;
    assert_eq!(links.len(), 2);
    assert_eq!(links[0].name, format!("10.0.0.{}:8116", a + 1));
    assert_eq!(links[1].name, format!("10.0.1.{}:8116", a + 1));
    assert_eq!((links[0].routes, links[1].routes), (2, 0));
    assert_eq!((links[0].members_alive, links[1].members_alive), (2, 2));
    assert!(links[0].records_sent >= 2 * n);
    assert_eq!(links[1].records_sent, 0, "only heartbeats on the backup");
    assert!(links[1].datagrams_sent > 0 && links[1].datagrams_received > 0);
}

#[test]
fn cut_of_link_0_moves_every_stream_to_link_1_without_loss_or_duplicates() {
    for ls in [false, true] {
        let mut net = Net::with_tweak(3, &[100, 100, 100], false, 2, 3, Some(tweak(ls)));
        net.run_for(Duration::from_secs(2));
        let writers: Vec<usize> = if ls { vec![0, 1, 2] } else { net.actives() };
        let n = write_for(
            &mut net,
            &writers,
            0,
            Duration::from_millis(100),
            Duration::from_micros(300),
        );
        // Cut with records in flight: written and flushed, not yet arrived.
        for &w in &writers {
            net.write(w, RecordKind::ConnUpsert, key(w, n), b"in flight");
            let now = net.now;
            net.cluster(w).flush(now);
        }
        net.drain_all();
        let n = n + 1;
        net.cut_sync_link(0, true);
        let n = write_for(
            &mut net,
            &writers,
            n,
            Duration::from_millis(600),
            Duration::from_micros(300),
        );
        net.run_for(Duration::from_millis(500));
        assert_exactly_once(&net, &writers, n);
        for i in 0..3 {
            assert!(
                !net.nodes[i]
                    .events
                    .iter()
                    .any(|e| matches!(e, ClusterEvent::MemberDown { .. })),
                "ls {ls}: members stay alive over link 1"
            );
            let links = net.cluster(i).stats().links;
            assert_eq!((links[0].routes, links[1].routes), (0, 2), "ls {ls}");
            assert_eq!(links[0].failures, 2);
            if writers.contains(&i) {
                assert!(links[1].records_sent > 0, "ls {ls}: member {}", i + 1);
            }
        }
        assert_eq!(net.actives().len(), 1, "no failover");
        for &w in &writers {
            assert!(
                net.cluster(w).stats().retransmitted > 0,
                "ls {ls}: what was lost in flight was sent again"
            );
        }
        // Link 0 heals: the streams move back after the hold-down, nothing resent twice.
        net.cut_sync_link(0, false);
        let n = write_for(
            &mut net,
            &writers,
            n,
            Duration::from_millis(1500),
            Duration::from_millis(1),
        );
        net.run_for(Duration::from_millis(100));
        assert_exactly_once(&net, &writers, n);
        for i in 0..3 {
            let links = net.cluster(i).stats().links;
            assert_eq!((links[0].routes, links[1].routes), (2, 0), "ls {ls}: back");
        }
    }
}

#[test]
fn carrier_loss_moves_the_stream_at_once() {
    let mut net = Net::with_tweak(3, &[100, 100, 100], false, 3, 3, Some(tweak(true)));
    net.run_for(Duration::from_secs(2));
    let now = net.now;
    // Member 1's link-0 interface loses carrier: its streams move at once; nothing goes out
    // on link 0 any more.
    net.cluster(0).set_link_carrier(now, 0, false);
    let n = write_for(
        &mut net,
        &[0],
        0,
        Duration::from_millis(20),
        Duration::from_millis(1),
    );
    net.run_for(Duration::from_millis(20));
    assert_exactly_once(&net, &[0], n);
    let links = net.cluster(0).stats().links;
    assert!(!links[0].carrier);
    assert_eq!((links[0].routes, links[1].routes), (0, 2));
    let by_link: BTreeMap<bool, u64> = [
        (false, links[0].records_sent),
        (true, links[1].records_sent),
    ]
    .into();
    assert_eq!(by_link[&false], 0);
    assert_eq!(by_link[&true], 2 * n);
}
