//! IPv4/IPv6 header walking.

use std::net::IpAddr;

use super::error::ParseError;
use super::header::{has_ports, Ipv4Header, Ipv6Header};

/// IP protocol numbers that the parser looks into.
pub mod proto {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const ESP: u8 = 50;
    pub const ICMPV6: u8 = 58;
    pub const NO_NEXT_HEADER: u8 = 59;
    pub const DEST_OPTS: u8 = 60;
    pub const SCTP: u8 = 132;
    pub const UDP_LITE: u8 = 136;
}

/// What the upper-layer header says, when it is present (unfragmented packets and first fragments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// TCP, UDP, SCTP, UDP-Lite.
    Ports { src: u16, dst: u16 },
    /// ICMP (IPv4) or ICMPv6 (IPv6).
    Icmp { kind: u8, code: u8 },
    /// Another protocol, or a non-first fragment (whose transport header is elsewhere).
    None,
}

/// Fragmentation fields of a packet that is a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fragment {
    /// Offset of this fragment in 8-byte units; 0 for the first fragment.
    pub offset: u16,
    pub more: bool,
    /// Identification (16 bits for IPv4, 32 for IPv6).
    pub id: u32,
}

/// A description of one IP packet.
///
/// Invariants: `transport_offset <= len <= buffer length`; `len` is the packet length claimed by
/// the IP header (the buffer may carry bytes after it); `transport` is `None` for non-first fragments;
/// `src_port`/`dst_port` are `Some` exactly when `transport` is `Ports`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PacketInfo {
    /// 4 or 6.
    pub version: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Upper-layer protocol: after IPv6 extension headers (hop-by-hop, routing, destination
    /// options, fragment); for a non-first IPv6 fragment, the fragment header's next header.
    pub protocol: u8,
    /// TTL (IPv4) or hop limit (IPv6).
    pub ttl: u8,
    pub len: usize,
    /// Offset of the upper-layer header from the start of the packet.
    pub transport_offset: usize,
    pub fragment: Option<Fragment>,
    pub transport: Transport,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
}

impl PacketInfo {
    /// Describes the IP packet at the start of `buf`.
    pub fn parse(buf: &[u8]) -> Result<PacketInfo, ParseError> {
        match buf.first().map(|b| b >> 4) {
            None => Err(ParseError::Empty),
            Some(4) => parse_v4(buf),
            Some(6) => parse_v6(buf),
            Some(v) => Err(ParseError::Version(v)),
        }
    }

    /// (source, destination) ports, for protocols that have them.
    pub fn ports(&self) -> Option<(u16, u16)> {
        match self.transport {
            Transport::Ports { src, dst } => Some((src, dst)),
            _ => None,
        }
    }

    /// Whether this packet is a fragment other than the first (it carries no transport header).
    pub fn is_non_first_fragment(&self) -> bool {
        self.fragment.is_some_and(|f| f.offset != 0)
    }
}

fn with_ports(mut info: PacketInfo) -> PacketInfo {
    if let Transport::Ports { src, dst } = info.transport {
        info.src_port = Some(src);
        info.dst_port = Some(dst);
    }
    info
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn parse_v4(buf: &[u8]) -> Result<PacketInfo, ParseError> {
    let h = Ipv4Header::parse(buf)?;
    let (ihl, len) = (h.header_len, h.total_len);
    let fragment = h.is_fragment().then_some(Fragment {
        offset: h.fragment_offset,
        more: h.more_fragments,
        id: u32::from(h.ident),
    });
    let transport = if h.fragment_offset == 0 {
        transport(h.protocol, proto::ICMP, &buf[ihl..len])?
    } else {
        Transport::None
    };
    Ok(with_ports(PacketInfo {
        version: 4,
        src: IpAddr::V4(h.src),
        dst: IpAddr::V4(h.dst),
        protocol: h.protocol,
        ttl: h.ttl,
        len,
        transport_offset: ihl,
        fragment,
        transport,
        src_port: None,
        dst_port: None,
    }))
}

fn parse_v6(buf: &[u8]) -> Result<PacketInfo, ParseError> {
    let h = Ipv6Header::parse(buf)?;
    let len = h.total_len();
    let pkt = &buf[..len];

    let mut next = h.next_header;
    let mut off = 40usize;
    let mut fragment = None;
    let mut non_first = false;
    loop {
        match next {
            proto::HOP_BY_HOP | proto::ROUTING | proto::DEST_OPTS => {
                let ext_len = pkt.get(off + 1).ok_or(ParseError::ExtensionHeader(next))?;
                let size = (usize::from(*ext_len) + 1) * 8;
                if off + size > len {
                    return Err(ParseError::ExtensionHeader(next));
                }
                next = pkt[off];
                off += size;
            }
            proto::FRAGMENT => {
                let (Some(fo), Some(id)) = (be16(pkt, off + 2), be32(pkt, off + 4)) else {
                    return Err(ParseError::ExtensionHeader(next));
                };
                let f = Fragment {
                    offset: fo >> 3,
                    more: fo & 1 != 0,
                    id,
                };
                fragment = Some(f);
                next = pkt[off];
                off += 8;
                if f.offset != 0 {
                    // The rest of the chain lives in the first fragment.
                    non_first = true;
                    break;
                }
            }
            _ => break,
        }
    }
    let transport = if non_first {
        Transport::None
    } else {
        transport(next, proto::ICMPV6, &pkt[off..])?
    };
    Ok(with_ports(PacketInfo {
        version: 6,
        src: IpAddr::V6(h.src),
        dst: IpAddr::V6(h.dst),
        protocol: next,
        ttl: h.hop_limit,
        len,
        transport_offset: off,
        fragment,
        transport,
        src_port: None,
        dst_port: None,
    }))
}

/// Reads ports or ICMP type/code from the start of the upper-layer header.
fn transport(protocol: u8, icmp: u8, l4: &[u8]) -> Result<Transport, ParseError> {
    match protocol {
        p if has_ports(p) => match (be16(l4, 0), be16(l4, 2)) {
            (Some(src), Some(dst)) => Ok(Transport::Ports { src, dst }),
            _ => Err(ParseError::Transport(protocol)),
        },
        p if p == icmp => match l4 {
            [kind, code, ..] => Ok(Transport::Icmp {
                kind: *kind,
                code: *code,
            }),
            _ => Err(ParseError::Transport(protocol)),
        },
        _ => Ok(Transport::None),
    }
}
