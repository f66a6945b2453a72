//! Fuzzes the cluster engine's datagram input: arbitrary bytes (header parsing, replay and
//! authentication checks) and authentic datagrams with arbitrary plaintext (heartbeat, data,
//! ack, lost, handover, and Load Sharing's flush, update request, update answer and forward
//! decoding, and the state machine behind them), interleaved with timeouts, Load Sharing calls
//! (holds, update requests and answers, forwarding, link carrier) and the Load Sharing codecs
//! on arbitrary bytes (whatever decodes must re-encode to the same bytes). Nothing may panic,
//! and the engine must keep answering.
//!
//! Input: a mode byte (bit 0: Load Sharing, else high availability), then a sequence of chunks
//! `op u8, len u8, bytes[len]`.

#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rampart_cluster::{
    fuzzing, Cluster, ClusterConfig, ClusterMode, FlowKey, ForwardKind, MemberConfig,
    PacketHandle, RecordKind, SyncAuth,
};
use rampart_crypto::Rng;

const SECRET: &[u8] = b"fuzzing cluster secret 32 bytes!";

fn config(id: u8, ls: bool) -> ClusterConfig {
    ClusterConfig {
        name: "fuzz".into(),
        member_id: id,
        mode: if ls {
            ClusterMode::LoadSharing
        } else {
            ClusterMode::HighAvailability
        },
        members: (1..=3)
            .map(|m| MemberConfig {
                id: m,
                sync_address: SocketAddr::from(([10, 0, 0, m], 8116)),
                priority: 100,
                extra_sync_addresses: vec![SocketAddr::from(([10, 0, 1, m], 8116))],
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
        load_sharing: None,
        sync_link_hold_down: rampart_cluster::DEFAULT_SYNC_LINK_HOLD_DOWN,
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, mut rest)) = input.split_first() else {
        return;
    };
    let mut now = Instant::now();
    let mut c = Cluster::new(config(1, mode & 1 == 1), now, 7, Rng::from_seed([1; 32]));
    let mut counter = 1u64;
    let mut handle = 0u64;
    while let [op, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (bytes, next) = tail.split_at(n);
        rest = next;
        let from = SocketAddr::from(([10, 0, 0, 2 + (op & 1)], 8116));
        match op % 6 {
            0 => {
                let _ = c.handle_datagram(now, op >> 6 & 1, from, &mut bytes.to_vec());
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
                let _ = c.handle_datagram(now, op >> 6 & 1, from, &mut dg);
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
                // Load Sharing update request / answer / forward bodies: decode, re-encode to
                // the same bytes.
                _ => fuzzing::update_codec(bytes),
            },
        }
        // Load Sharing calls, driven by the chunk's bytes (harmless in high availability).
        if let [a, b, ..] = bytes {
            handle += 1;
            let flow = FlowKey::conn(
                6,
                SocketAddr::from(([10, 1, 0, *a], 1000)),
                SocketAddr::from(([192, 0, 2, *b], 443)),
            );
            match a % 5 {
                0 => {
                    let _ = c.hold(now, PacketHandle(handle));
                }
                1 => {
                    let _ = c.request_update(now, PacketHandle(handle), flow);
                }
                2 => c.forward(
                    now,
                    2 + (b & 1),
                    ForwardKind::Udp,
                    SocketAddr::from(([10, 1, 0, 1], 4500)),
                    SocketAddr::from(([192, 0, 2, 1], 4500)),
                    bytes,
                ),
                3 => c.set_link_carrier(now, b & 3, b & 4 != 0),
                _ => {
                    let _ = c.owner(&flow);
                }
            }
        }
        while let Some(q) = c.poll_update_query() {
            let found = q.id & 1 == 0;
            if found {
                c.push_record(now, RecordKind::ConnUpsert, u64::from(q.id), b"fuzz");
            }
            c.answer_update(now, q, found);
        }
        while c.poll_transmit().is_some() {}
        while c.poll_event().is_some() {}
        while c.poll_record().is_some() {}
        while c.poll_release().is_some() {}
        while c.poll_resolved().is_some() {}
        while c.poll_forwarded().is_some() {}
    }
    let _ = c.status(now);
    let _ = c.stats();
    assert!(c.poll_timeout().is_some());
});
