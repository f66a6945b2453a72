//! Membership, election and delta sync in a simulated network (see `common`).

mod common;

use std::time::Duration;

use common::{Net, HB};
use rampart_cluster::{MemberState, RecordKind, Role};

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
    eprintln!("{s0:#?}");
    let per_record = s0.bytes_sent as f64 / 1000.0;
    assert!(
        per_record < 60.0,
        "{per_record} bytes per record incl. heartbeats"
    );
}
