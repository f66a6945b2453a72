//! The fixed IPv4 and IPv6 headers, decoded field by field from the buffer in place.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::error::ParseError;
use super::packet::proto;

/// The fields of an IPv4 header (RFC 791), read from the start of a buffer.
///
/// Invariants: `20 <= header_len <= total_len`, `header_len` a multiple of 4; after
/// [`parse`](Ipv4Header::parse) also `total_len <= ` the buffer length (the buffer may carry
/// bytes after the packet, e.g. link padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Header {
    /// IHL in bytes (options included).
    pub header_len: usize,
    /// Total length field: header and payload.
    pub total_len: usize,
    pub tos: u8,
    pub ident: u16,
    pub dont_fragment: bool,
    pub more_fragments: bool,
    /// Fragment offset in 8-byte units.
    pub fragment_offset: u16,
    pub ttl: u8,
    pub protocol: u8,
    pub checksum: u16,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

impl Ipv4Header {
    /// Bytes of a header without options.
    pub const MIN_LEN: usize = 20;

    /// Reads the header of the complete IPv4 packet at the start of `buf`: version 4, the
    /// header within the total length, the total length within `buf`.
    pub fn parse(buf: &[u8]) -> Result<Ipv4Header, ParseError> {
        let h = Self::fields(buf)?;
        if h.total_len > buf.len() || h.total_len < Self::MIN_LEN {
            return Err(ParseError::TotalLength {
                claimed: h.total_len,
                available: buf.len(),
            });
        }
        if h.header_len < Self::MIN_LEN || h.header_len > h.total_len {
            return Err(ParseError::HeaderLength);
        }
        Ok(h)
    }

    /// Reads a header whose packet may be cut short, as ICMP errors quote it: version 4 and
    /// the whole header (options included) within `buf`; the total length is not compared
    /// with `buf`.
    pub fn parse_truncated(buf: &[u8]) -> Result<Ipv4Header, ParseError> {
        let h = Self::fields(buf)?;
        if h.header_len < Self::MIN_LEN {
            return Err(ParseError::HeaderLength);
        }
        if h.header_len > buf.len() {
            return Err(ParseError::ShortHeader);
        }
        Ok(h)
    }

    fn fields(buf: &[u8]) -> Result<Ipv4Header, ParseError> {
        let version = buf.first().ok_or(ParseError::Empty)? >> 4;
        if version != 4 {
            return Err(ParseError::Version(version));
        }
        let h: &[u8; 20] = buf
            .get(..20)
            .and_then(|h| h.try_into().ok())
            .ok_or(ParseError::ShortHeader)?;
        let flags = u16::from_be_bytes([h[6], h[7]]);
        Ok(Ipv4Header {
            header_len: usize::from(h[0] & 0x0f) * 4,
            total_len: usize::from(u16::from_be_bytes([h[2], h[3]])),
            tos: h[1],
            ident: u16::from_be_bytes([h[4], h[5]]),
            dont_fragment: flags & 0x4000 != 0,
            more_fragments: flags & 0x2000 != 0,
            fragment_offset: flags & 0x1fff,
            ttl: h[8],
            protocol: h[9],
            checksum: u16::from_be_bytes([h[10], h[11]]),
            src: Ipv4Addr::new(h[12], h[13], h[14], h[15]),
            dst: Ipv4Addr::new(h[16], h[17], h[18], h[19]),
        })
    }

    /// Whether the packet is a fragment (more fragments follow, or it is not the first).
    pub fn is_fragment(&self) -> bool {
        self.more_fragments || self.fragment_offset != 0
    }

    /// The fragment offset in bytes.
    pub fn fragment_offset_bytes(&self) -> usize {
        usize::from(self.fragment_offset) * 8
    }

    /// (source, destination) ports of a TCP, UDP, SCTP or UDP-Lite packet that carries its
    /// transport header (not a non-first fragment); `packet` is the buffer this header was
    /// read from.
    pub fn ports(&self, packet: &[u8]) -> Option<(u16, u16)> {
        if !has_ports(self.protocol) || self.fragment_offset != 0 {
            return None;
        }
        let l4 = packet.get(self.header_len..self.header_len + 4)?;
        Some((
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        ))
    }
}

/// The fields of the fixed IPv6 header (RFC 8200), read from the start of a buffer.
///
/// Invariant: after [`parse`](Ipv6Header::parse), `total_len() <=` the buffer length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Header {
    pub traffic_class: u8,
    /// 20 bits.
    pub flow_label: u32,
    /// Payload length field: everything after the fixed header, extension headers included.
    pub payload_len: u16,
    /// The header after the fixed one (an extension header or the upper-layer protocol).
    pub next_header: u8,
    pub hop_limit: u8,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
}

impl Ipv6Header {
    /// Bytes of the fixed header.
    pub const LEN: usize = 40;

    /// Reads the fixed header of the complete IPv6 packet at the start of `buf`: version 6,
    /// the payload length within `buf`.
    pub fn parse(buf: &[u8]) -> Result<Ipv6Header, ParseError> {
        let h = Self::parse_truncated(buf)?;
        if h.total_len() > buf.len() {
            return Err(ParseError::TotalLength {
                claimed: h.total_len(),
                available: buf.len(),
            });
        }
        Ok(h)
    }

    /// Reads a fixed header whose packet may be cut short, as ICMPv6 errors quote it: version
    /// 6 and 40 bytes; the payload length is not compared with `buf`.
    pub fn parse_truncated(buf: &[u8]) -> Result<Ipv6Header, ParseError> {
        let version = buf.first().ok_or(ParseError::Empty)? >> 4;
        if version != 6 {
            return Err(ParseError::Version(version));
        }
        let h: &[u8; 40] = buf
            .get(..40)
            .and_then(|h| h.try_into().ok())
            .ok_or(ParseError::ShortHeader)?;
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(&h[8..24]);
        dst.copy_from_slice(&h[24..40]);
        let first = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        Ok(Ipv6Header {
            traffic_class: (first >> 20) as u8,
            flow_label: first & 0x000f_ffff,
            payload_len: u16::from_be_bytes([h[4], h[5]]),
            next_header: h[6],
            hop_limit: h[7],
            src: Ipv6Addr::from(src),
            dst: Ipv6Addr::from(dst),
        })
    }

    /// Fixed header plus payload length.
    pub fn total_len(&self) -> usize {
        Self::LEN + usize::from(self.payload_len)
    }
}

/// Whether the upper-layer protocol starts with 16-bit source and destination ports.
pub fn has_ports(protocol: u8) -> bool {
    matches!(
        protocol,
        proto::TCP | proto::UDP | proto::SCTP | proto::UDP_LITE
    )
}
