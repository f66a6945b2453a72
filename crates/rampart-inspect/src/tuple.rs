//! Flow tuples: the normalised 5-tuple a connection is keyed by, and its keyed hash.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// Where a packet comes from, as seen by the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    /// From the protected site (read from the TUN device), about to enter a tunnel.
    Inside,
    /// Decrypted from a tunnel, about to be written to the TUN device.
    Tunnel,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Inside => Side::Tunnel,
            Side::Tunnel => Side::Inside,
        }
    }
}

/// A normalised 5-tuple in a fixed 38-byte form.
///
/// Invariants: IPv4 addresses fill the first 4 bytes of `src`/`dst` and the rest is zero;
/// protocols without ports have `sport == dport == 0`; an ICMP echo request has its identifier
/// in `sport` and `dport == 0`, an echo reply the other way round, so that the reply's tuple is
/// exactly the reverse of the request's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FlowTuple {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub v6: bool,
}

fn addr_bytes(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v4.octets());
            b
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

impl FlowTuple {
    pub fn new(src: IpAddr, dst: IpAddr, proto: u8, sport: u16, dport: u16) -> FlowTuple {
        FlowTuple {
            src: addr_bytes(src),
            dst: addr_bytes(dst),
            sport,
            dport,
            proto,
            v6: src.is_ipv6(),
        }
    }

    pub fn src_ip(&self) -> IpAddr {
        self.ip(&self.src)
    }

    pub fn dst_ip(&self) -> IpAddr {
        self.ip(&self.dst)
    }

    fn ip(&self, b: &[u8; 16]) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from(*b))
        } else {
            IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        }
    }

    /// The tuple of a packet going the other way.
    pub fn reverse(&self) -> FlowTuple {
        FlowTuple {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
            v6: self.v6,
        }
    }

    /// Keyed hash of `(side, tuple)`; the seed comes from the caller's RNG so that remote hosts
    /// cannot aim many tuples at one probe sequence.
    #[inline]
    pub fn hash(&self, side: Side, seed: u64) -> u64 {
        let w = |b: &[u8; 16], i: usize| {
            u64::from_le_bytes([
                b[i],
                b[i + 1],
                b[i + 2],
                b[i + 3],
                b[i + 4],
                b[i + 5],
                b[i + 6],
                b[i + 7],
            ])
        };
        let tail = u64::from(self.sport)
            | u64::from(self.dport) << 16
            | u64::from(self.proto) << 32
            | u64::from(self.v6) << 40
            | (side as u64) << 41;
        let mut h = seed;
        for word in [
            w(&self.src, 0),
            w(&self.src, 8),
            w(&self.dst, 0),
            w(&self.dst, 8),
            tail,
        ] {
            h = (h ^ word).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            h ^= h >> 29;
        }
        // fmix64 (MurmurHash3) for avalanche into the low bits used as the home slot.
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

impl std::fmt::Display for FlowTuple {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (s, d) = (self.src_ip(), self.dst_ip());
        if self.sport == 0 && self.dport == 0 {
            write!(f, "{s} -> {d}")
        } else if self.v6 {
            write!(f, "[{s}]:{} -> [{d}]:{}", self.sport, self.dport)
        } else {
            write!(f, "{s}:{} -> {d}:{}", self.sport, self.dport)
        }
    }
}
