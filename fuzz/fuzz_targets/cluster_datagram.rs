//! Fuzzes the cluster engine's datagram input: arbitrary bytes (header parsing, replay and
//! authentication checks) and authentic datagrams with arbitrary plaintext (heartbeat, data,
//! ack, lost and handover decoding, and the state machine behind them), interleaved with
//! timeouts, and the Load Sharing update request/answer codec on arbitrary bytes (whatever
//! decodes must re-encode to the same bytes). Nothing may panic, and the engine must keep
//! answering.
//!
//! Input: a sequence of chunks `op u8, len u8, bytes[len]`.

#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rampart_cluster::{
    fuzzing, Cluster, ClusterConfig, ClusterMode, MemberConfig, RecordKind, SyncAuth,
};
use rampart_crypto::Rng;

const SECRET: &[u8] = b"fuzzing cluster secret 32 bytes!";

fn config(id: u8) -> ClusterConfig {
    ClusterConfig {
        name: "fuzz".into(),
        member_id: id,
        mode: ClusterMode::HighAvailability,
        members: (1..=3)
            .map(|m| MemberConfig {
                id: m,
                sync_address: SocketAddr::from(([10, 0, 0, m], 8116)),
                priority: 100,
            })
            .collect(),
        switch_back: true,
        heartbeat_interval: Duration::from_millis(100),
        dead_after: 3,
        monitored_interfaces: vec!["eth0".into()],
        virtual_addresses: vec![],
        auth: SyncAuth {
            secret: zeroize::Zeroizing::new(SECRET.to_vec()),
            tls: None,
        },
        retransmit_queue: 64,
        takeover_margin: 16384,
        esp_sync_interval: Duration::from_millis(100),
    }
}

fuzz_target!(|input: &[u8]| {
    let mut now = Instant::now();
    let mut c = Cluster::new(config(1), now, 7, Rng::from_seed([1; 32]));
    let mut counter = 1u64;
    let mut rest = input;
    while let [op, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (bytes, next) = tail.split_at(n);
        rest = next;
        let from = SocketAddr::from(([10, 0, 0, 2 + (op & 1)], 8116));
        match op % 6 {
            0 => {
                let _ = c.handle_datagram(now, from, &mut bytes.to_vec());
            }
            1 | 2 => {
                let sender = 2 + (op >> 3 & 1);
                counter += u64::from(op >> 4);
                let mut dg = fuzzing::seal_datagram(
                    SECRET,
                    "fuzz",
                    sender,
                    1 + u64::from(op >> 7),
                    counter,
                    op >> 4,
                    bytes,
                );
                let _ = c.handle_datagram(now, from, &mut dg);
            }
            3 => {
                now += Duration::from_millis(u64::from(*len));
                c.handle_timeout(now);
            }
            4 => {
                let key = u64::from(*len) << 40 | counter;
                let kind = RecordKind::from_u8(op % 7 + 1).unwrap_or(RecordKind::ConnUpsert);
                c.push_record(now, kind, key, bytes);
                if op & 0x40 != 0 {
                    c.flush(now);
                }
            }
            _ => match op >> 3 & 7 {
                0 => c.set_interface_state(now, "eth0", op & 0x80 != 0),
                1 => c.set_admin_down(now, op & 0x80 != 0),
                2 => {
                    let _ = c.switchover(now, Some(2 + (op >> 7)));
                }
                3 => c.full_sync_started(now, 2 + (op >> 7)),
                4 => c.full_sync_complete(now, 2 + (op >> 7), u64::from(*len)),
                5 => c.full_sync_failed(now, 2 + (op >> 7), "fuzz"),
                6 => c.full_sync_served(),
                // Load Sharing update request / answer bodies: decode, re-encode to the
                // same bytes (the engine does not accept them yet).
                _ => fuzzing::update_codec(bytes),
            },
        }
        while c.poll_transmit().is_some() {}
        while c.poll_event().is_some() {}
        while c.poll_record().is_some() {}
    }
    let _ = c.status(now);
    let _ = c.stats();
    assert!(c.poll_timeout().is_some());
});
