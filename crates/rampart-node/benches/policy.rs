//! Policy lookup with 10k remote prefixes: the longest-prefix-match table against the linear
//! scan it replaced (kept here, as it was, for the comparison), in the same run.
//! Run: `cargo bench -p rampart-node --bench policy`; results in `bench/results/policy.md`.

use std::net::{IpAddr, Ipv4Addr};

use divan::counter::ItemsCount;
use divan::{black_box, Bencher};
use ipnet::{IpNet, Ipv4Net};
use rampart_node::Policy;

const PREFIXES: usize = 10_000;
/// Lookups per measured iteration.
const LOOKUPS: usize = 1_024;

fn main() {
    divan::main();
}

/// A deterministic generator (xorshift), so every run measures the same table.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// 10k IPv4 prefixes of lengths 8..=32 inside 10.0.0.0/8 and 172.16.0.0/12 (peer = index),
/// and destinations of which about half fall into one of them.
fn workload() -> (Vec<(IpNet, u32)>, Vec<IpAddr>) {
    let mut rng = Xorshift(0x5eed_1234_abcd_0001);
    let mut remote = Vec::with_capacity(PREFIXES);
    while remote.len() < PREFIXES {
        let r = rng.next();
        let len = 8 + (r % 25) as u8;
        let base: u32 = if r & (1 << 40) == 0 {
            0x0a00_0000
        } else {
            0xac10_0000
        };
        let addr = base | ((r >> 8) as u32 & 0x000f_ffff);
        let net = Ipv4Net::new(Ipv4Addr::from(addr), len.max(12))
            .expect("length <= 32")
            .trunc();
        remote.push((IpNet::V4(net), remote.len() as u32));
    }
    let dsts = (0..LOOKUPS)
        .map(|i| {
            let r = rng.next();
            if i % 2 == 0 {
                let (net, _) = remote[(r % PREFIXES as u64) as usize];
                let IpNet::V4(net) = net else { unreachable!() };
                let host = (r >> 32) as u32 & !u32::from(net.netmask());
                IpAddr::V4(Ipv4Addr::from(u32::from(net.network()) | host))
            } else {
                IpAddr::V4(Ipv4Addr::from(r as u32))
            }
        })
        .collect();
    (remote, dsts)
}

fn local() -> Vec<IpNet> {
    vec!["192.168.0.0/16".parse().expect("prefix")]
}

const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 5));

/// The lookup before the longest-prefix table: every prefix sorted longest first, the first
/// that contains the destination wins.
struct LinearScan {
    local: Vec<IpNet>,
    remote: Vec<(IpNet, u32)>,
}

impl LinearScan {
    fn new(local: Vec<IpNet>, remote: &[(IpNet, u32)]) -> LinearScan {
        let mut remote = remote.to_vec();
        remote.sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix_len()));
        LinearScan { local, remote }
    }

    fn outbound_peer(&self, src: IpAddr, dst: IpAddr) -> Option<u32> {
        if !self.local.iter().any(|n| n.contains(&src)) {
            return None;
        }
        self.remote
            .iter()
            .find(|(n, _)| n.contains(&dst))
            .map(|(_, p)| *p)
    }
}

#[divan::bench]
fn prefix_table(bencher: Bencher) {
    let (remote, dsts) = workload();
    let policy = Policy::new(local(), &remote);
    let linear = LinearScan::new(local(), &remote);
    // Both give the same answer on every destination: the table's first candidate of a
    // prefix given several times is the one given first, which the stable sort puts first too.
    for &dst in &dsts {
        let new = policy.outbound_candidates(SRC, dst).map(|c| c[0]);
        assert_eq!(new, linear.outbound_peer(SRC, dst), "{dst}");
    }
    bencher.counter(ItemsCount::new(LOOKUPS)).bench(|| {
        let mut hits = 0usize;
        for &dst in &dsts {
            hits += policy.outbound_candidates(SRC, black_box(dst)).is_some() as usize;
        }
        hits
    });
}

#[divan::bench(sample_count = 20)]
fn linear_scan(bencher: Bencher) {
    let (remote, dsts) = workload();
    let linear = LinearScan::new(local(), &remote);
    bencher.counter(ItemsCount::new(LOOKUPS)).bench(|| {
        let mut hits = 0usize;
        for &dst in &dsts {
            hits += linear.outbound_peer(SRC, black_box(dst)).is_some() as usize;
        }
        hits
    });
}
