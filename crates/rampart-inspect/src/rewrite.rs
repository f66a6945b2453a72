//! In-place rewriting of IPv4 addresses, ports and ICMP identifiers with incremental checksum
//! updates. Callers have checked the header lengths (see [`crate::packet::Parsed`]).

use rampart_wire::checksum::update;
use rampart_wire::ip::proto;

/// Which end of a packet to rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Src,
    Dst,
}

/// Position of the upper-layer checksum, if the protocol has one that covers the pseudo-header
/// or the rewritten field.
fn l4_check_at(protocol: u8) -> Option<usize> {
    match protocol {
        proto::TCP => Some(16),
        proto::UDP => Some(6),
        proto::ICMP => Some(2),
        _ => None,
    }
}

/// Sets the IPv4 address of `end` to `addr` (header checksum and the TCP/UDP pseudo-header
/// checksum updated). `l4` is the transport offset; `has_l4` false for non-first fragments.
pub fn set_addr_v4(pkt: &mut [u8], l4: usize, protocol: u8, has_l4: bool, end: End, addr: [u8; 4]) {
    let at = if end == End::Src { 12 } else { 16 };
    let mut old = [0u8; 4];
    old.copy_from_slice(&pkt[at..at + 4]);
    if old == addr {
        return;
    }
    pkt[at..at + 4].copy_from_slice(&addr);
    let c = update(get16(pkt, 10), &old, &addr);
    put16(pkt, 10, c);
    if has_l4 && matches!(protocol, proto::TCP | proto::UDP) {
        update_l4(pkt, l4, protocol, &old, &addr);
    }
}

fn update_l4(pkt: &mut [u8], l4: usize, protocol: u8, old: &[u8], new: &[u8]) {
    let Some(off) = l4_check_at(protocol) else {
        return;
    };
    let at = l4 + off;
    if pkt.len() < at + 2 {
        return;
    }
    let check = get16(pkt, at);
    if protocol == proto::UDP && check == 0 {
        return; // IPv4 UDP without a checksum stays without one
    }
    let mut c = update(check, old, new);
    if protocol == proto::UDP && c == 0 {
        c = 0xffff;
    }
    put16(pkt, at, c);
}

/// Sets the TCP/UDP port of `end`, or the ICMP echo identifier (either end), to `port`.
pub fn set_port(pkt: &mut [u8], l4: usize, protocol: u8, end: End, port: u16) {
    let at = match protocol {
        proto::ICMP | proto::ICMPV6 => l4 + 4,
        _ if end == End::Src => l4,
        _ => l4 + 2,
    };
    if pkt.len() < at + 2 {
        return;
    }
    let old = get16(pkt, at).to_be_bytes();
    let new = port.to_be_bytes();
    if old == new {
        return;
    }
    pkt[at..at + 2].copy_from_slice(&new);
    update_l4(pkt, l4, protocol, &old, &new);
}

/// The big-endian 16-bit field at `at` (callers have checked the length).
pub fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Stores `v` big-endian at `at` (callers have checked the length).
pub fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}
