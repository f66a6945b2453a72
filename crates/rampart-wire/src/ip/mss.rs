//! TCP MSS clamping in place: lower the Maximum Segment Size option of a SYN or SYN-ACK so that
//! the segments of the connection fit the tunnel, fixing the TCP checksum incrementally
//! (RFC 1624) instead of recomputing it over the whole segment.
//!
//! Only the two MSS value bytes and the checksum field are ever written, and only when the
//! outcome is [`MssOutcome::Clamped`]; every other outcome and every error leaves the packet
//! untouched.
//!
//! A SYN without an MSS option is left alone. Adding one is not done in place: it would grow
//! the segment by 4 bytes (shift the payload, rewrite the data offset, the IP length fields
//! and the IPv4 header checksum), which needs room the caller's buffer may not have. It is also
//! unnecessary: without the option the peer assumes the default MSS, 536 bytes over IPv4
//! (RFC 9293 section 3.7.1) and 1220 bytes over IPv6 (RFC 8200 section 8.3), both below any
//! limit a tunnel sets.

use thiserror::Error;

use super::error::ParseError;
use super::packet::{proto, PacketInfo};
use crate::checksum;

/// TCP option kinds the walk knows.
const OPT_EOL: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;
/// TCP flag bit SYN (byte 13 of the header).
const FLAG_SYN: u8 = 0x02;
/// TCP header without options.
const TCP_MIN_LEN: usize = 20;

/// What [`clamp_mss`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MssOutcome {
    /// Not TCP, or a fragment without the TCP header (not the first): untouched.
    NotTcp,
    /// TCP without the SYN flag: untouched.
    NotSyn,
    /// A SYN or SYN-ACK without an MSS option: untouched (see the module documentation).
    NoMss,
    /// The MSS was already at or below the limit: untouched.
    Within { mss: u16 },
    /// The MSS was lowered from `from` to `to` (the limit) and the checksum fixed.
    Clamped { from: u16, to: u16 },
}

/// Why a packet could not be examined; the packet is left untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum MssError {
    /// The IP header (or IPv6 extension headers) did not parse.
    #[error("IP packet: {0}")]
    Ip(#[from] ParseError),
    /// The TCP header is shorter than 20 bytes, or its data offset is below 5 words or runs
    /// past the packet.
    #[error("truncated TCP header or bad data offset")]
    TcpHeader,
    /// The option list of a SYN is malformed: an option length below 2 or past the header,
    /// an MSS option whose length is not 4, or two MSS options.
    #[error("malformed TCP options at option byte {at}")]
    Options { at: usize },
}

/// Lowers the MSS option of the TCP SYN or SYN-ACK at the start of `packet` (IPv4 or IPv6,
/// extension headers walked) to `limit` when it is larger, fixing the TCP checksum by RFC 1624.
/// Bytes after the IP packet's own length are ignored. See [`MssOutcome`] for what is left
/// alone; on error nothing is written.
pub fn clamp_mss(packet: &mut [u8], limit: u16) -> Result<MssOutcome, MssError> {
    let info = PacketInfo::parse(packet)?;
    if info.protocol != proto::TCP || info.is_non_first_fragment() {
        return Ok(MssOutcome::NotTcp);
    }
    let tcp = &packet[info.transport_offset..info.len];
    if tcp.len() < TCP_MIN_LEN {
        return Err(MssError::TcpHeader);
    }
    if tcp[13] & FLAG_SYN == 0 {
        return Ok(MssOutcome::NotSyn);
    }
    let data_offset = usize::from(tcp[12] >> 4) * 4;
    if data_offset < TCP_MIN_LEN || data_offset > tcp.len() {
        return Err(MssError::TcpHeader);
    }
    let Some(at) = find_mss(&tcp[TCP_MIN_LEN..data_offset])? else {
        return Ok(MssOutcome::NoMss);
    };
    // Offset of the MSS value in the TCP header.
    let value = TCP_MIN_LEN + at + 2;
    let mss = u16::from_be_bytes([tcp[value], tcp[value + 1]]);
    if mss <= limit {
        return Ok(MssOutcome::Within { mss });
    }

    // The checksum words covering the value: the TCP header starts at an even offset of the
    // covered data, so an odd `value` straddles two words. `value + 2 <= data_offset` and
    // `data_offset` is a multiple of 4, so the words stay within the header.
    let (start, words) = if value.is_multiple_of(2) {
        (value, 2)
    } else {
        (value - 1, 4)
    };
    let tcp = &mut packet[info.transport_offset..info.len];
    let mut old = [0u8; 4];
    old[..words].copy_from_slice(&tcp[start..start + words]);
    tcp[value..value + 2].copy_from_slice(&limit.to_be_bytes());
    let check = u16::from_be_bytes([tcp[16], tcp[17]]);
    let check = checksum::update(check, &old[..words], &tcp[start..start + words]);
    tcp[16..18].copy_from_slice(&check.to_be_bytes());
    Ok(MssOutcome::Clamped {
        from: mss,
        to: limit,
    })
}

/// The offset of the MSS option (its kind byte) in `options` (the bytes after the fixed TCP
/// header), `None` without one. The walk stops at End of Option List.
fn find_mss(options: &[u8]) -> Result<Option<usize>, MssError> {
    let mut found = None;
    let mut i = 0;
    while let Some(&kind) = options.get(i) {
        match kind {
            OPT_EOL => break,
            OPT_NOP => i += 1,
            _ => {
                let len = options.get(i + 1).map_or(0, |&l| usize::from(l));
                if len < 2 || i + len > options.len() {
                    return Err(MssError::Options { at: i });
                }
                if kind == OPT_MSS {
                    if len != 4 || found.is_some() {
                        return Err(MssError::Options { at: i });
                    }
                    found = Some(i);
                }
                i += len;
            }
        }
    }
    Ok(found)
}

/// The MSS that fills an IP packet of `mtu` bytes: the MTU less the IP and TCP headers without
/// options (40 bytes over IPv4, 60 over IPv6), 0 below that.
pub fn mss_for_mtu(mtu: u16, ipv6: bool) -> u16 {
    mtu.saturating_sub(if ipv6 { 60 } else { 40 })
}

#[cfg(test)]
#[path = "mss_tests.rs"]
mod tests;
