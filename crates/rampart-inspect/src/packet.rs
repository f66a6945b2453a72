//! What the inspector needs to know about one packet, read without allocation.

use std::net::IpAddr;

use rampart_wire::ip::{proto, Ipv4Header, Ipv6Header, PacketInfo, Transport};

use crate::tuple::FlowTuple;

/// The class of a packet for tracking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// TCP with its flags, sequence and acknowledgement numbers.
    Tcp {
        flags: u8,
        seq: u32,
        ack: u32,
    },
    Udp,
    /// ICMP/ICMPv6 echo request (`true`) or reply.
    Echo {
        request: bool,
    },
    /// An ICMP error quoting `quoted` (a packet that went the opposite way); `inner_l3` is the
    /// offset of the quoted IP header, `inner_l4` of its transport header.
    IcmpError {
        quoted: FlowTuple,
        inner_l3: usize,
        inner_l4: usize,
    },
    /// Other ICMP messages: not tracked, decided by the rule base alone.
    IcmpOther,
    /// Another protocol: tracked by addresses.
    Other,
    /// A fragment other than the first: no transport header.
    Fragment,
}

#[derive(Debug, Clone, Copy)]
pub struct Parsed {
    pub tuple: FlowTuple,
    pub kind: Kind,
    pub l4: usize,
    pub len: usize,
    pub protocol: u8,
    /// The ICMP type, for rules on ICMP services.
    pub icmp_type: Option<u8>,
}

fn icmp_is_error(v6: bool, t: u8) -> bool {
    if v6 {
        t < 128
    } else {
        matches!(t, 3 | 4 | 5 | 11 | 12)
    }
}

/// Reads the packet; `None` when it is too short for what its headers say.
pub fn parse(pkt: &[u8]) -> Option<Parsed> {
    let info = PacketInfo::parse(pkt).ok()?;
    let v6 = info.version == 6;
    let l4 = info.transport_offset;
    let body = pkt.get(l4..info.len)?;
    let mut tuple = FlowTuple::new(info.src, info.dst, info.protocol, 0, 0);
    let mut icmp_type = None;
    let icmp = if v6 { proto::ICMPV6 } else { proto::ICMP };
    let kind = if info.is_non_first_fragment() {
        Kind::Fragment
    } else {
        match (info.protocol, info.transport) {
            (proto::TCP, Transport::Ports { src, dst }) => {
                let flags = *body.get(13)?;
                let be32 =
                    |i: usize| u32::from_be_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
                tuple.sport = src;
                tuple.dport = dst;
                // `body` has at least 14 bytes here: seq (4..8) and ack (8..12) are in it.
                Kind::Tcp {
                    flags,
                    seq: be32(4),
                    ack: be32(8),
                }
            }
            (proto::UDP, Transport::Ports { src, dst }) => {
                body.get(..8)?;
                tuple.sport = src;
                tuple.dport = dst;
                Kind::Udp
            }
            (p, Transport::Icmp { kind, .. }) if p == icmp => {
                icmp_type = Some(kind);
                let (req, rep) = if v6 { (128, 129) } else { (8, 0) };
                if kind == req || kind == rep {
                    let id = u16::from_be_bytes([*body.get(4)?, *body.get(5)?]);
                    if kind == req {
                        tuple.sport = id;
                    } else {
                        tuple.dport = id;
                    }
                    Kind::Echo {
                        request: kind == req,
                    }
                } else if icmp_is_error(v6, kind) {
                    let inner_l3 = l4 + 8;
                    let (quoted, inner_l4) = quoted(pkt.get(inner_l3..info.len)?, v6)?;
                    Kind::IcmpError {
                        quoted,
                        inner_l3,
                        inner_l4: inner_l3 + inner_l4,
                    }
                } else {
                    Kind::IcmpOther
                }
            }
            _ => Kind::Other,
        }
    };
    Some(Parsed {
        tuple,
        kind,
        l4,
        len: info.len,
        protocol: info.protocol,
        icmp_type,
    })
}

/// The tuple of a quoted packet (IP header plus at least 8 bytes; lengths not checked against
/// its total length, which ICMP truncates) and its transport offset.
fn quoted(q: &[u8], v6: bool) -> Option<(FlowTuple, usize)> {
    let (src, dst, protocol, ihl) = if v6 {
        let h = Ipv6Header::parse_truncated(q).ok()?;
        (
            IpAddr::V6(h.src),
            IpAddr::V6(h.dst),
            h.next_header,
            Ipv6Header::LEN,
        )
    } else {
        let h = Ipv4Header::parse_truncated(q).ok()?;
        (
            IpAddr::V4(h.src),
            IpAddr::V4(h.dst),
            h.protocol,
            h.header_len,
        )
    };
    let l4 = q.get(ihl..ihl + 8)?;
    let mut t = FlowTuple::new(src, dst, protocol, 0, 0);
    let be = |i: usize| u16::from_be_bytes([l4[i], l4[i + 1]]);
    match protocol {
        proto::TCP | proto::UDP => {
            t.sport = be(0);
            t.dport = be(2);
        }
        p if p == proto::ICMP || p == proto::ICMPV6 => {
            let (req, rep) = if v6 { (128, 129) } else { (8, 0) };
            if l4[0] == req {
                t.sport = be(4);
            } else if l4[0] == rep {
                t.dport = be(4);
            } else {
                return None;
            }
        }
        _ => {}
    }
    Some((t, ihl))
}
