//! Batches whose cipher jobs run on other threads, out of order: sequence numbers still follow
//! the batch order, every packet opens to what was sent, and replay and forgery are caught
//! exactly as one by one.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{framed_batch, sealed_datagrams, udp_packet, Pair};
use rampart_esp::{CryptRunner, CryptTask};
use rampart_node::{Disposition, DropReason};

/// Runs a batch's tasks on three scoped threads, the last chunk first.
struct Threads {
    batches: AtomicUsize,
}

impl CryptRunner for Threads {
    fn run_all(&self, tasks: &mut [CryptTask<'_>]) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        let chunk = tasks.len().div_ceil(3).max(1);
        std::thread::scope(|s| {
            for part in tasks.chunks_mut(chunk).rev() {
                s.spawn(move || part.iter_mut().rev().for_each(CryptTask::run));
            }
        });
    }
}

#[test]
fn threaded_batches_keep_order_replay_and_authentication() {
    const N: usize = 100; // more than one runner chunk (64)
    let mut pair = Pair::new("encapsulation = \"force\"", "start_action = \"none\"");
    let t = pair.now + Duration::from_secs(3);
    pair.run_until(t);
    assert!(pair.established(0) && pair.established(1));
    let runner = Arc::new(Threads {
        batches: AtomicUsize::new(0),
    });
    pair.gw[0].set_crypt_runner(runner.clone());
    pair.gw[1].set_crypt_runner(runner.clone());

    let packets: Vec<Vec<u8>> = (0..N)
        .map(|i| udp_packet([10, 1, 0, 5], [10, 2, 0, 7], &vec![i as u8; 200 + i]))
        .collect();
    let (mut bufs, ranges) = framed_batch(&packets);
    let mut out = vec![Disposition::Consumed; N];
    let now = pair.now;
    pair.gw[0].handle_tun_batch(now, &mut bufs, &ranges, &mut out);

    // One arena as a receive batch: every datagram, a replayed copy of packet 10 right after
    // it, and a forged copy of packet 20 in place of the original.
    let mut arena = Vec::new();
    let mut arena_ranges = Vec::new();
    let mut seqs = Vec::new();
    let mut addrs = None;
    for (i, (local, remote, esp)) in sealed_datagrams(&out, &bufs).enumerate() {
        addrs = Some((local, remote));
        seqs.push(u32::from_be_bytes([esp[4], esp[5], esp[6], esp[7]]));
        let copies = if i == 10 { 2 } else { 1 };
        for _ in 0..copies {
            let start = arena.len();
            arena.extend_from_slice(esp);
            if i == 20 {
                let last = arena.len() - 1;
                arena[last] ^= 1;
            }
            arena_ranges.push(start..arena.len());
        }
    }
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "sequence numbers follow the batch order: {seqs:?}"
    );
    let (local, remote) = addrs.unwrap();
    let mut in_out = vec![Disposition::Consumed; arena_ranges.len()];
    let before = pair.gw[1].status(now).counters;
    pair.gw[1].handle_udp_batch(now, remote, local, &mut arena, &arena_ranges, &mut in_out);
    let after = pair.gw[1].status(now).counters;

    for (k, d) in in_out.iter().enumerate() {
        let sent = if k <= 10 { k } else { k - 1 };
        match (k, d) {
            (11, Disposition::Dropped(DropReason::Replay)) => {}
            (21, Disposition::Dropped(DropReason::Authentication)) => {}
            (11 | 21, other) => panic!("datagram {k}: {other:?}"),
            (_, Disposition::WriteTun { data }) => {
                assert_eq!(&arena[data.clone()], &packets[sent][..], "datagram {k}")
            }
            (_, other) => panic!("datagram {k}: {other:?}"),
        }
    }
    assert_eq!(after.dropped_replay - before.dropped_replay, 1);
    assert_eq!(after.dropped_auth - before.dropped_auth, 1);
    assert_eq!(after.tun_packets_out - before.tun_packets_out, N as u64 - 1);
    assert!(
        runner.batches.load(Ordering::Relaxed) >= 4,
        "both sides ran chunks"
    );
}

/// A reject answered from inside a receive batch is built in its own packet's bytes only: one
/// with room goes back through the tunnel as an ICMP administratively-prohibited error, one
/// without room is dropped unanswered, and the packets around both arrive intact.
#[test]
fn rejects_inside_a_batch_leave_their_neighbours_alone() {
    let rules = r#"
[[service]]
name = "blocked"
protocol = "udp"
ports = [5000]

[[rule]]
name = "no-blocked"
service = ["blocked"]
action = "reject"

[[rule]]
name = "rest"
action = "accept"
"#;
    let mut pair = Pair::new(
        "encapsulation = \"force\"",
        &format!("start_action = \"none\"\n{rules}"),
    );
    let t = pair.now + Duration::from_secs(3);
    pair.run_until(t);
    assert!(pair.established(0) && pair.established(1));

    // Packets 2 (10 bytes, no room for the error and its ESP framing) and 5 (200 bytes) go to
    // the blocked port; the rest to port 6000.
    let packets: Vec<Vec<u8>> = (0..8u8)
        .map(|i| {
            let len = if i == 2 { 10 } else { 200 + usize::from(i) };
            let mut p = udp_packet([10, 1, 0, 5], [10, 2, 0, 7], &vec![i; len]);
            let port: u16 = if i == 2 || i == 5 { 5000 } else { 6000 };
            p[22..24].copy_from_slice(&port.to_be_bytes());
            p
        })
        .collect();
    let (mut bufs, ranges) = framed_batch(&packets);
    let mut out = vec![Disposition::Consumed; packets.len()];
    let now = pair.now;
    pair.gw[0].handle_tun_batch(now, &mut bufs, &ranges, &mut out);
    let mut arena = Vec::new();
    let mut arena_ranges = Vec::new();
    let mut addrs = None;
    for (local, remote, esp) in sealed_datagrams(&out, &bufs) {
        addrs = Some((local, remote));
        let start = arena.len();
        arena.extend_from_slice(esp);
        arena_ranges.push(start..arena.len());
    }
    let (local, remote) = addrs.unwrap();
    let mut in_out = vec![Disposition::Consumed; arena_ranges.len()];
    pair.gw[1].handle_udp_batch(now, remote, local, &mut arena, &arena_ranges, &mut in_out);

    for (i, d) in in_out.iter().enumerate() {
        match (i, d) {
            (2, Disposition::Dropped(DropReason::Firewall)) => {}
            (5, Disposition::SendUdp { data, .. }) => {
                assert!(arena_ranges[5].start <= data.start && data.end <= arena_ranges[5].end);
            }
            (2 | 5, other) => panic!("packet {i}: {other:?}"),
            (_, Disposition::WriteTun { data }) => {
                assert_eq!(&arena[data.clone()], &packets[i][..], "packet {i}")
            }
            (_, other) => panic!("packet {i}: {other:?}"),
        }
    }
    // The error goes back through the tunnel to the sender's side.
    pair.tun_out[0].clear();
    pair.dispose(1, in_out[5].clone(), &arena);
    pair.deliver();
    let icmp = pair.tun_out[0]
        .iter()
        .find(|p| p.len() > 20 && p[9] == 1)
        .unwrap_or_else(|| panic!("no ICMP error came back: {:?}", pair.tun_out[0]));
    assert_eq!(&icmp[16..20], &[10, 1, 0, 5], "to the original sender");
    assert_eq!((icmp[20], icmp[21]), (3, 13), "administratively prohibited");
}
