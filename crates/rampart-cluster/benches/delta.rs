//! Delta-sync throughput between two engines: records pushed on the active member, packed,
//! sealed (AES-256-GCM), "sent", authenticated and decrypted by the standby, delivered in
//! order and polled, with the standby's acks going back. 40-byte bodies with consecutive
//! connection-id keys, like new connections.
//!
//! `cargo bench -p rampart-cluster --bench delta`. Also prints the wire bytes per record
//! (datagram headers, tags and acks included, heartbeats not: they are per interval, not per
//! record).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use divan::counter::ItemsCount;
use divan::Bencher;
use rampart_cluster::{
    Cluster, ClusterConfig, ClusterEvent, ClusterMode, MemberConfig, MemberState, RecordKind,
    SyncAuth, DEFAULT_RETRANSMIT_QUEUE,
};
use rampart_crypto::Rng;

const BATCH: u64 = 10_000;

fn main() {
    let (mut a, mut b, mut now) = pair();
    let before = (a.stats().bytes_sent, b.stats().bytes_sent);
    let mut key = 1 << 48;
    run(&mut a, &mut b, &mut now, &mut key, 100_000);
    let bytes = (a.stats().bytes_sent - before.0) + (b.stats().bytes_sent - before.1);
    println!(
        "wire bytes per record (40-byte body, data + acks, both directions): {:.2}",
        bytes as f64 / 100_000.0
    );
    divan::main();
}

fn addr(id: u8) -> SocketAddr {
    format!("127.0.0.{id}:8116").parse().unwrap()
}

fn config(id: u8) -> ClusterConfig {
    ClusterConfig {
        name: "bench".into(),
        member_id: id,
        mode: ClusterMode::HighAvailability,
        members: (1..=2)
            .map(|m| MemberConfig {
                id: m,
                sync_address: addr(m),
                priority: 300 - u16::from(m) * 100,
                extra_sync_addresses: Vec::new(),
            })
            .collect(),
        switch_back: false,
        heartbeat_interval: Duration::from_millis(100),
        dead_after: 3,
        monitored_interfaces: vec![],
        virtual_addresses: vec![],
        auth: SyncAuth {
            secret: zeroize::Zeroizing::new(b"benchmark secret, 32 bytes long.".to_vec()),
            tls: None,
        },
        retransmit_queue: DEFAULT_RETRANSMIT_QUEUE,
        takeover_margin: 16384,
        esp_sync_interval: Duration::from_millis(100),
        load_sharing: None,
        sync_link_hold_down: rampart_cluster::DEFAULT_SYNC_LINK_HOLD_DOWN,
    }
}

/// Moves every datagram from `from` to `to`.
fn deliver(from: &mut Cluster, to: &mut Cluster, now: Instant) {
    let src = from.config().me().sync_address;
    while let Some(mut t) = from.poll_transmit() {
        let _ = to.handle_datagram(now, t.link, src, &mut t.data);
    }
}

/// Two members in steady state: 1 active, 2 standby.
fn pair() -> (Cluster, Cluster, Instant) {
    let mut now = Instant::now();
    let mut a = Cluster::new(config(1), now, 1, Rng::from_seed([1; 32]));
    let mut b = Cluster::new(config(2), now, 1, Rng::from_seed([2; 32]));
    for _ in 0..200 {
        a.handle_timeout(now);
        b.handle_timeout(now);
        deliver(&mut a, &mut b, now);
        deliver(&mut b, &mut a, now);
        while let Some(e) = b.poll_event() {
            if let ClusterEvent::FullSyncNeeded { member, .. } = e {
                b.full_sync_started(now, member);
                b.full_sync_complete(now, member, a.next_seq());
            }
        }
        while a.poll_event().is_some() {}
        now += Duration::from_millis(10);
    }
    assert_eq!(a.state(), MemberState::Active);
    assert_eq!(b.state(), MemberState::Standby);
    (a, b, now)
}

fn run(a: &mut Cluster, b: &mut Cluster, now: &mut Instant, key: &mut u64, n: u64) -> u64 {
    let body = [0x5au8; 40];
    let mut got = 0;
    for _ in 0..n / 1000 {
        for _ in 0..1000 {
            *key += 1;
            a.push_record(*now, RecordKind::ConnUpsert, *key, &body);
        }
        a.flush(*now);
        deliver(a, b, *now);
        while let Some(r) = b.poll_record() {
            got += r.body.len() as u64 / 40;
        }
        deliver(b, a, *now);
        *now += Duration::from_micros(100);
    }
    got
}

#[divan::bench(sample_count = 20)]
fn push_transmit_receive_apply(bencher: Bencher) {
    let (mut a, mut b, mut now) = pair();
    let mut key = 1 << 48;
    bencher.counter(ItemsCount::new(BATCH)).bench_local(|| {
        let got = run(&mut a, &mut b, &mut now, &mut key, BATCH);
        assert_eq!(got, BATCH);
    });
}
