//! Connection table benchmarks: lookups and inserts at 10k and 1M entries, and the memory the
//! table reserves per entry (printed once). Run: `cargo bench -p rampart-inspect`.

use std::net::{IpAddr, Ipv4Addr};

use divan::{black_box, Bencher};
use rampart_inspect::{
    ConnState, Connection, FlowTuple, NatKind, NatState, Side, Table, NO_SERVICE,
};

const SIZES: &[usize] = &[10_000, 1_000_000];

fn conn(n: usize) -> Connection {
    let src = IpAddr::V4(Ipv4Addr::from(0x0a01_0000 | (n as u32 >> 16)));
    let dst = IpAddr::V4(Ipv4Addr::new(10, 2, 0, 10));
    let t = FlowTuple::new(src, dst, 6, n as u16, 443);
    Connection {
        id: n as u64,
        orig: t,
        xlat: t,
        init_side: Side::Inside,
        state: ConnState::UdpUnreplied,
        rule: 0,
        service: NO_SERVICE,
        nat: NatState {
            kind: NatKind::None,
            rule: 0,
        },
        created_ms: 0,
        last_seen_ms: 0,
        expires_ms: u64::MAX,
        packets: [0; 2],
        bytes: [0; 2],
        handshake: Default::default(),
    }
}

fn filled(n: usize) -> Table {
    let mut t = Table::new(n, 0x5eed);
    for i in 0..n {
        t.insert(conn(i)).expect("room");
    }
    t
}

fn main() {
    for &n in SIZES {
        let t = filled(n);
        println!(
            "table of {n} entries: {} bytes reserved per entry (entry {} B, Option<entry> {} B)",
            t.bytes_per_entry(),
            std::mem::size_of::<Connection>(),
            std::mem::size_of::<Option<Connection>>()
        );
    }
    divan::main();
}

/// 1000 lookups of existing keys (both directions) per iteration, in a pseudo-random order.
#[divan::bench(args = SIZES, sample_count = 30)]
fn lookup(bencher: Bencher, n: usize) {
    let t = filled(n);
    // 65 536 keys spread over the whole table: with a handful of keys the working set would sit in
    // the CPU cache and hide the misses a busy gateway with a million connections takes.
    let keys: Vec<(Side, FlowTuple)> = (0..65_536)
        .map(|k| {
            let c = conn((k * 7919 + 13) % n);
            if k % 2 == 0 {
                (Side::Inside, c.orig)
            } else {
                (Side::Tunnel, c.orig.reverse())
            }
        })
        .collect();
    bencher
        .counter(divan::counter::ItemsCount::new(keys.len()))
        .bench_local(|| {
            let mut hits = 0;
            for (s, k) in &keys {
                hits += usize::from(t.find(*s, black_box(k)).is_some());
            }
            assert_eq!(hits, keys.len());
        });
}

/// Inserting 1000 entries into a table already holding `n - 1000`, then removing them.
#[divan::bench(args = SIZES, sample_count = 30)]
fn insert_remove(bencher: Bencher, n: usize) {
    let mut t = Table::new(n, 0x5eed);
    for i in 0..n - 1000 {
        t.insert(conn(i)).expect("room");
    }
    let fresh: Vec<Connection> = (n - 1000..n).map(conn).collect();
    let mut idx = Vec::with_capacity(1000);
    bencher
        .counter(divan::counter::ItemsCount::new(fresh.len()))
        .bench_local(|| {
            for c in &fresh {
                idx.push(t.insert(*c).expect("room"));
            }
            for i in idx.drain(..) {
                t.remove(i);
            }
        });
}
