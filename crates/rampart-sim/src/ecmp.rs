//! Equal-cost multipath on a `router` node: a route with several next hops spreads flows over
//! them by a per-flow hash, as Linux does with `fib_multipath_hash_policy = 1` (layer 4).
//!
//! Invariants: the hash is a pure function of (the router's seed, the packet's flow), so
//! every packet of one flow in one direction takes the same next hop while the set of live
//! next hops stays the same; two routers with different seeds spread the same flows
//! differently, so the two directions of one connection, seen by two routers, land on
//! independent next hops. A next hop that dies keeps its share for `next_hop_timeout` (the
//! routing protocol's detection time), then its flows are spread over the others.

use std::time::Duration;

use crate::packet::{self, Ipv4Header};

/// What a `router` node adds to plain forwarding: its ECMP hash seed and how long a dead
/// next hop still gets traffic.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Router {
    pub seed: u64,
    pub next_hop_timeout: Duration,
}

/// Default detection time of a dead next hop (a routing protocol's dead interval, or BIRD's
/// kernel scan after a member's routes vanished).
pub(crate) const DEFAULT_NEXT_HOP_TIMEOUT: Duration = Duration::from_millis(500);

/// MurmurHash3's 64-bit finaliser: every input bit affects every output bit.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// The flow hash of `p` under `seed`: addresses, protocol and, for TCP and UDP packets that
/// carry their header (not a non-first fragment), the ports. Other protocols (ESP, ICMP) hash
/// on layer 3 only, as Linux does.
pub(crate) fn flow_hash(seed: u64, p: &[u8], ip: &Ipv4Header) -> u64 {
    let mut h = fmix64(seed ^ 0x9e37_79b9_7f4a_7c15);
    h = fmix64(h ^ (u64::from(u32::from(ip.src)) << 32 | u64::from(u32::from(ip.dst))));
    let mut l4 = u64::from(ip.protocol) << 32;
    let first_fragment = ip.fragment_offset == 0;
    if matches!(ip.protocol, packet::PROTO_TCP | packet::PROTO_UDP) && first_fragment {
        let at = ip.header_len;
        if let Some(ports) = p.get(at..at + 4) {
            l4 |= u64::from(u32::from_be_bytes([ports[0], ports[1], ports[2], ports[3]]));
        }
    }
    fmix64(h ^ l4)
}

/// Picks one of `live` next hops (indices into the route's hop list, all usable) for a flow
/// with hash `hash`: hash-threshold, like Linux (the hash space is cut into equal ranges).
pub(crate) fn pick(hash: u64, live: usize) -> usize {
    // The high bits decide: (hash * live) >> 64 is in 0..live.
    ((u128::from(hash) * live as u128) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        let payload = [sport.to_be_bytes(), dport.to_be_bytes()].concat();
        packet::build_ipv4(
            Ipv4Addr::from(src),
            Ipv4Addr::from(dst),
            packet::PROTO_TCP,
            1,
            &[payload, vec![0; 16]].concat(),
        )
    }

    fn hash(seed: u64, p: &[u8]) -> u64 {
        flow_hash(seed, p, &Ipv4Header::parse(p).unwrap())
    }

    #[test]
    fn one_flow_one_hop_and_ports_count() {
        let a = tcp([10, 1, 0, 10], 40000, [10, 2, 0, 10], 5001);
        assert_eq!(hash(7, &a), hash(7, &a.clone()));
        let b = tcp([10, 1, 0, 10], 40001, [10, 2, 0, 10], 5001);
        assert_ne!(hash(7, &a), hash(7, &b));
        assert_ne!(hash(7, &a), hash(8, &a));
    }

    /// Over many flows each of three next hops gets about a third, and two routers with
    /// different seeds agree on a flow's hop only about a third of the time (independent).
    #[test]
    fn spreads_evenly_and_seeds_are_independent() {
        let mut counts = [0u32; 3];
        let mut same = 0u32;
        let n = 3000u16;
        for port in 0..n {
            let out = tcp([10, 1, 0, 10], 30000 + port, [10, 2, 0, 10], 5001);
            let back = tcp([10, 2, 0, 10], 5001, [10, 1, 0, 10], 30000 + port);
            let a = pick(hash(11, &out), 3);
            let b = pick(hash(12, &back), 3);
            counts[a] += 1;
            same += u32::from(a == b);
        }
        for c in counts {
            assert!((900..1100).contains(&c), "{counts:?}");
        }
        assert!((850..1150).contains(&same), "{same} of {n} on the same hop");
    }

    #[test]
    fn pick_stays_in_range() {
        for live in 1..6 {
            for h in [0, 1, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
                assert!(pick(h, live) < live);
            }
        }
    }
}
