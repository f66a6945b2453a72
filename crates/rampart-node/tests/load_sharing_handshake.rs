//! Enhanced 3-way handshake enforcement across Load Sharing members (`[cluster]
//! enhanced_handshake`): the SYN enters member A, the SYN-ACK arrives (as ESP) at member B, the
//! handshake-completing ACK enters member C. With enforcement B holds the SYN-ACK until the
//! others have the server's ISN, and C refuses an ACK whose seq/ack do not match the ISNs;
//! without it only the flags are checked. Harness: `ls` (shared with `load_sharing.rs`).

mod common;
mod ls;

use std::time::Duration;

use common::tcp;
use ls::{Cluster, ACK, HOST_A, HOST_B, R, SYN};
use rampart_cluster::LoadSharingConfig;
use rampart_node::Disposition;

const A: usize = 0;
/// The tunnel's SA owner: the remote's ESP reaches it.
const B: usize = 1;
const C: usize = 2;
const CLIENT_ISN: u32 = 0xffff_fffe;
const SERVER_ISN: u32 = 0x1234_5678;

/// `tcp(..)` with sequence number `seq` and acknowledgement number `ack` (checksum redone).
fn seg(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
) -> Vec<u8> {
    let mut p = tcp(src, sport, dst, dport, flags);
    p[24..28].copy_from_slice(&seq.to_be_bytes());
    p[28..32].copy_from_slice(&ack.to_be_bytes());
    p[36..38].fill(0);
    let pseudo = rampart_wire::checksum::pseudo_header(&p[12..20], 6, 20);
    let sum = rampart_wire::checksum::finish(rampart_wire::checksum::sum(pseudo, &p[20..]));
    p[36..38].copy_from_slice(&sum.to_be_bytes());
    p
}

/// Every member carrying traffic, the tunnel owned by B, the sync network 2 ms one way.
fn cluster(enhanced_handshake: bool) -> Cluster {
    let mut t = Cluster::running(Cluster::with(LoadSharingConfig {
        enhanced_handshake,
        ..LoadSharingConfig::default()
    }));
    assert_eq!(t.vip_route, B);
    t.sync_delay = Duration::from_millis(2);
    t
}

/// SYN via A (held by Flush-and-Ack, then through B's tunnel to the remote), SYN-ACK from the
/// remote via B. Returns whether the SYN-ACK was written to B's TUN device at once (not held).
fn syn_and_syn_ack(t: &mut Cluster, sport: u16) -> bool {
    let syn = seg(HOST_A, sport, HOST_B, 443, SYN, CLIENT_ISN, 0);
    let before = t.tun_out[R].len();
    assert_eq!(
        t.enter_tun(A, &syn),
        Disposition::Consumed,
        "the SYN is held"
    );
    t.run_for(Duration::from_millis(20));
    assert!(t.arrived(R, before, &syn), "{:?}", t.logs[A]);
    let syn_ack = seg(
        HOST_B,
        443,
        HOST_A,
        sport,
        SYN | ACK,
        SERVER_ISN,
        CLIENT_ISN.wrapping_add(1),
    );
    let before = t.tun_out[B].len();
    t.enter_tun(R, &syn_ack);
    let at_once = t.arrived(B, before, &syn_ack);
    t.run_for(Duration::from_millis(20));
    assert!(t.arrived(B, before, &syn_ack), "{:?}", t.logs[B]);
    at_once
}

/// The ACK enters C's TUN device; whether it reached the remote.
fn ack_via_c(t: &mut Cluster, sport: u16, seq: u32, ack: u32) -> bool {
    let packet = seg(HOST_A, sport, HOST_B, 443, ACK, seq, ack);
    let before = t.tun_out[R].len();
    t.enter_tun(C, &packet);
    t.run_for(Duration::from_millis(20));
    t.arrived(R, before, &packet)
}

#[test]
fn with_enhanced_handshake_the_syn_ack_is_held_and_a_forged_ack_is_dropped_on_c() {
    let mut t = cluster(true);
    let at_once = syn_and_syn_ack(&mut t, 40100);
    assert!(
        !at_once,
        "B holds the SYN-ACK until A and C have the server's ISN"
    );
    let b = t.stats(B);
    assert_eq!((b.held_syn_ack, b.released), (1, 1), "{b:?}");
    assert_eq!(
        t.gw[B].conn_stats().handshake_verified,
        1,
        "B checked the SYN-ACK"
    );

    let (seq, ack) = (CLIENT_ISN.wrapping_add(1), SERVER_ISN.wrapping_add(1));
    for (fseq, fack) in [(seq, ack + 1), (seq.wrapping_add(5), ack), (0, 0)] {
        assert!(
            !ack_via_c(&mut t, 40100, fseq, fack),
            "forged {fseq} {fack}"
        );
    }
    let c = t.gw[C].conn_stats();
    assert_eq!(
        (c.handshake_mismatch, c.handshake_verified),
        (3, 0),
        "{c:?}"
    );
    assert!(
        t.logs[C].iter().any(|l| l.contains("handshake mismatch")),
        "{:?}",
        t.logs[C]
    );
    // The genuine ACK passes: C knows both ISNs (A's record and B's, before the SYN-ACK left).
    assert!(ack_via_c(&mut t, 40100, seq, ack), "{:?}", t.logs[C]);
    let c = t.gw[C].conn_stats();
    assert_eq!(
        (c.handshake_verified, c.handshake_unverified),
        (1, 0),
        "{c:?}"
    );
    assert_eq!(c.handshake_mismatch, 3);
    for m in [A, B] {
        assert_eq!(t.gw[m].conn_stats().handshake_mismatch, 0);
    }
}

#[test]
fn a_correct_handshake_across_three_members_passes_with_enhanced_handshake() {
    let mut t = cluster(true);
    syn_and_syn_ack(&mut t, 40200);
    let oos: u64 = (0..3)
        .map(|m| t.gw[m].conn_stats().dropped_out_of_state)
        .sum();
    assert!(ack_via_c(
        &mut t,
        40200,
        CLIENT_ISN.wrapping_add(1),
        SERVER_ISN.wrapping_add(1)
    ));
    let after: u64 = (0..3)
        .map(|m| t.gw[m].conn_stats().dropped_out_of_state)
        .sum();
    assert_eq!((oos, after), (0, 0), "zero out-of-state drops");
    assert_eq!(t.gw[C].conn_stats().handshake_verified, 1);
}

#[test]
fn without_enhanced_handshake_the_syn_ack_is_held_and_a_forged_ack_passes() {
    let mut t = cluster(false);
    // The SYN-ACK's state change is held all the same (the ACK may reach a member that saw
    // only the SYN), but no ISN is recorded or checked.
    let at_once = syn_and_syn_ack(&mut t, 40300);
    assert!(!at_once, "the SYN-ACK is held: {:?}", t.stats(B));
    assert_eq!(t.stats(B).held_syn_ack, 1);
    // Flags only: an ACK with any numbers completes the handshake.
    assert!(ack_via_c(&mut t, 40300, 7, 7), "{:?}", t.logs[C]);
    let c = t.gw[C].conn_stats();
    assert_eq!(
        (
            c.handshake_mismatch,
            c.handshake_verified,
            c.dropped_out_of_state
        ),
        (0, 0, 0)
    );
}
