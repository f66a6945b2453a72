//! Per-packet and per-connection costs of the Load Sharing pieces: the owner of a flow
//! (one SipHash-2-4 + one mix per member up) and a Flush-and-Ack hold/ack/release cycle.
//!
//! `cargo bench -p rampart-cluster --bench load_sharing`.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use divan::counter::ItemsCount;
use divan::Bencher;
use rampart_cluster::{
    FaInput, FlowKey, FlushAck, FlushAckConfig, OwnershipKey, PacketHandle, Rendezvous,
};

fn main() {
    divan::main();
}

fn flows(n: u32) -> Vec<FlowKey> {
    (0..n)
        .map(|i| {
            FlowKey::conn(
                6,
                SocketAddr::new(
                    Ipv4Addr::from(0x0a00_0000 | i).into(),
                    40_000 + (i % 20_000) as u16,
                ),
                SocketAddr::new(Ipv4Addr::new(192, 0, 2, 10).into(), 443),
            )
        })
        .collect()
}

/// Owner of 1,000 flows among `members` members up.
#[divan::bench(args = [2, 3, 5])]
fn owner(bencher: Bencher, members: u8) {
    let r = Rendezvous::new(
        &OwnershipKey::derive(b"a cluster secret of 32 bytes!!!!", "bench"),
        1..=members,
    );
    let fs = flows(1000);
    bencher.counter(ItemsCount::new(fs.len())).bench_local(|| {
        let mut acc = 0u32;
        for f in &fs {
            acc += u32::from(divan::black_box(r.owner(f)).unwrap_or(0));
        }
        acc
    });
}

/// 1,000 connections: hold each first packet (waiting for 2 members), ack them in steps of
/// 10 connections, drain the releases.
#[divan::bench]
fn flush_ack_cycle(bencher: Bencher) {
    let t0 = Instant::now();
    bencher
        .counter(ItemsCount::new(1000usize))
        .with_inputs(|| FlushAck::new(FlushAckConfig::default()))
        .bench_local_values(|mut fa| {
            let mut released = 0;
            for c in 0..1000u64 {
                let now = t0 + Duration::from_micros(c);
                fa.handle(
                    now,
                    FaInput::Hold {
                        packet: PacketHandle(c),
                        upto: c + 1,
                        members: &[2, 3],
                    },
                )
                .unwrap();
                if c % 10 == 9 {
                    fa.handle(
                        now,
                        FaInput::Ack {
                            member: 2,
                            next: c + 1,
                        },
                    )
                    .unwrap();
                    fa.handle(
                        now,
                        FaInput::Ack {
                            member: 3,
                            next: c + 1,
                        },
                    )
                    .unwrap();
                }
                while fa.poll_output().is_some() {
                    released += 1;
                }
            }
            released
        });
}
