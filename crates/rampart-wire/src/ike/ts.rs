//! Traffic selectors (RFC 7296 section 3.13.1) and their set operations.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::error::ParseError;
use super::reader::Reader;

/// TS types.
pub mod ts_type {
    pub const IPV4_ADDR_RANGE: u8 = 7;
    pub const IPV6_ADDR_RANGE: u8 = 8;
}

/// An inclusive range of addresses, ports and one IP protocol (0 = any).
///
/// `start_addr` and `end_addr` are expected to share a family; the wire type (7 or 8) follows
/// `start_addr`. A range whose start is above its end (addresses or ports) selects nothing; the
/// codec keeps it as sent. ICMP type/code and the OPAQUE port range (65535..0) use the port
/// fields as RFC 7296 describes; [`TrafficSelector::intersect`] treats ports purely numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TrafficSelector {
    pub ip_protocol: u8,
    pub start_port: u16,
    pub end_port: u16,
    pub start_addr: IpAddr,
    pub end_addr: IpAddr,
}

impl TrafficSelector {
    /// Every address of `net`, any protocol, any port.
    pub fn from_net(net: &IpNet) -> TrafficSelector {
        TrafficSelector {
            ip_protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
            start_addr: net.network(),
            end_addr: net.broadcast(),
        }
    }

    pub fn is_ipv4(&self) -> bool {
        self.start_addr.is_ipv4()
    }

    /// Whether `addr` lies in the address range (protocol and ports are not considered).
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.bounds(), to_u128(addr)) {
            (Some((v4, lo, hi)), (a4, a)) => v4 == a4 && lo <= a && a <= hi,
            (None, _) => false,
        }
    }

    /// Whether the selector matches a packet's address (source or destination, as the caller
    /// picks), protocol and port. `port` None (a protocol without ports, or a non-first fragment)
    /// matches only a selector with the full port range 0..=65535.
    pub fn matches(&self, addr: IpAddr, ip_protocol: u8, port: Option<u16>) -> bool {
        self.contains(addr)
            && (self.ip_protocol == 0 || self.ip_protocol == ip_protocol)
            && match port {
                Some(p) => self.start_port <= p && p <= self.end_port,
                None => self.start_port == 0 && self.end_port == u16::MAX,
            }
    }

    /// The smallest list of prefixes whose union is exactly the address range (empty when the
    /// range is empty or the families differ).
    pub fn to_nets(&self) -> Vec<IpNet> {
        let Some((v4, mut lo, hi)) = self.bounds() else {
            return Vec::new();
        };
        let width: u32 = if v4 { 32 } else { 128 };
        let mut out = Vec::new();
        loop {
            // Largest block aligned at `lo` that does not pass `hi`.
            let align = if lo == 0 {
                width
            } else {
                lo.trailing_zeros().min(width)
            };
            let span = hi - lo; // block size minus one that would reach `hi` exactly
            let fit = if span == u128::MAX {
                128
            } else {
                127 - (span + 1).leading_zeros()
            };
            let bits = align.min(fit);
            out.push(make_net(v4, lo, (width - bits) as u8));
            let size_minus_one = if bits == 128 {
                u128::MAX
            } else {
                (1u128 << bits) - 1
            };
            match lo.checked_add(size_minus_one) {
                Some(end) if end < hi => lo = end + 1,
                _ => return out,
            }
        }
    }

    /// The selector matching what both match, or None when that is nothing.
    pub fn intersect(&self, other: &TrafficSelector) -> Option<TrafficSelector> {
        let ip_protocol = match (self.ip_protocol, other.ip_protocol) {
            (0, p) | (p, 0) => p,
            (a, b) if a == b => a,
            _ => return None,
        };
        let start_port = self.start_port.max(other.start_port);
        let end_port = self.end_port.min(other.end_port);
        if start_port > end_port {
            return None;
        }
        let (v4a, lo_a, hi_a) = self.bounds()?;
        let (v4b, lo_b, hi_b) = other.bounds()?;
        if v4a != v4b {
            return None;
        }
        let (lo, hi) = (lo_a.max(lo_b), hi_a.min(hi_b));
        if lo > hi {
            return None;
        }
        Some(TrafficSelector {
            ip_protocol,
            start_port,
            end_port,
            start_addr: from_u128(v4a, lo),
            end_addr: from_u128(v4a, hi),
        })
    }

    /// (is IPv4, start, end) when the range is non-empty and of one family.
    fn bounds(&self) -> Option<(bool, u128, u128)> {
        let (v4s, lo) = to_u128(self.start_addr);
        let (v4e, hi) = to_u128(self.end_addr);
        (v4s == v4e && lo <= hi).then_some((v4s, lo, hi))
    }
}

fn to_u128(a: IpAddr) -> (bool, u128) {
    match a {
        IpAddr::V4(a) => (true, u128::from(u32::from(a))),
        IpAddr::V6(a) => (false, u128::from(a)),
    }
}

fn from_u128(v4: bool, x: u128) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(x as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(x))
    }
}

fn make_net(v4: bool, addr: u128, prefix: u8) -> IpNet {
    // Prefix lengths computed above never exceed the family width.
    if v4 {
        IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::from(addr as u32), prefix))
    } else {
        IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::from(addr), prefix))
    }
}

fn bad(kind: u8, what: &'static str) -> ParseError {
    ParseError::malformed(kind, what)
}

/// Parses a TSi/TSr payload body (`kind` is the payload type, for error reports).
pub(crate) fn parse_ts(kind: u8, body: &[u8]) -> Result<Vec<TrafficSelector>, ParseError> {
    let mut r = Reader::new(body);
    let count = r.u8().ok_or(bad(kind, "truncated TS header"))?;
    r.bytes(3).ok_or(bad(kind, "truncated TS header"))?;
    let mut out = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let ts_kind = r.u8().ok_or(bad(kind, "truncated traffic selector"))?;
        let ip_protocol = r.u8().ok_or(bad(kind, "truncated traffic selector"))?;
        let len = r.u16().ok_or(bad(kind, "truncated traffic selector"))?;
        let start_port = r.u16().ok_or(bad(kind, "truncated traffic selector"))?;
        let end_port = r.u16().ok_or(bad(kind, "truncated traffic selector"))?;
        let (start_addr, end_addr) = match (ts_kind, len) {
            (ts_type::IPV4_ADDR_RANGE, 16) => {
                let s: [u8; 4] = r.array().ok_or(bad(kind, "truncated traffic selector"))?;
                let e: [u8; 4] = r.array().ok_or(bad(kind, "truncated traffic selector"))?;
                (IpAddr::from(s), IpAddr::from(e))
            }
            (ts_type::IPV6_ADDR_RANGE, 40) => {
                let s: [u8; 16] = r.array().ok_or(bad(kind, "truncated traffic selector"))?;
                let e: [u8; 16] = r.array().ok_or(bad(kind, "truncated traffic selector"))?;
                (IpAddr::from(s), IpAddr::from(e))
            }
            (ts_type::IPV4_ADDR_RANGE | ts_type::IPV6_ADDR_RANGE, _) => {
                return Err(bad(kind, "selector length does not match its type"))
            }
            _ => return Err(bad(kind, "unsupported traffic selector type")),
        };
        out.push(TrafficSelector {
            ip_protocol,
            start_port,
            end_port,
            start_addr,
            end_addr,
        });
    }
    if !r.is_empty() {
        return Err(bad(kind, "bytes after the last traffic selector"));
    }
    Ok(out)
}

/// Appends a TSi/TSr payload body. An end address of the other family than the start is written
/// as the all-ones address of the start's family (a caller bug, but never a panic).
pub(crate) fn encode_ts(selectors: &[TrafficSelector], out: &mut Vec<u8>) {
    out.push(selectors.len() as u8);
    out.extend_from_slice(&[0, 0, 0]);
    for ts in selectors {
        let v4 = ts.start_addr.is_ipv4();
        out.push(if v4 {
            ts_type::IPV4_ADDR_RANGE
        } else {
            ts_type::IPV6_ADDR_RANGE
        });
        out.push(ts.ip_protocol);
        out.extend_from_slice(&(if v4 { 16u16 } else { 40u16 }).to_be_bytes());
        out.extend_from_slice(&ts.start_port.to_be_bytes());
        out.extend_from_slice(&ts.end_port.to_be_bytes());
        for a in [ts.start_addr, ts.end_addr] {
            match (v4, a) {
                (true, IpAddr::V4(a)) => out.extend_from_slice(&a.octets()),
                (false, IpAddr::V6(a)) => out.extend_from_slice(&a.octets()),
                (true, IpAddr::V6(_)) => out.extend_from_slice(&[0xff; 4]),
                (false, IpAddr::V4(_)) => out.extend_from_slice(&[0xff; 16]),
            }
        }
    }
}
