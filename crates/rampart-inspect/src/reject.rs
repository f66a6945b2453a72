//! Answers to rejected packets, built in place: a TCP RST for TCP, an ICMP "administratively
//! prohibited" (ICMPv6 "communication prohibited") for everything else.

use std::ops::Range;

use rampart_wire::ip::{proto, PacketInfo};

use rampart_wire::checksum::{checksum, finish, pseudo_header, sum};

use crate::rewrite::{get16, put16};

/// Bytes of the offending packet quoted in an ICMP error: its IP header plus 8 bytes (IPv4),
/// at most this many for IPv6.
const V6_QUOTE: usize = 128;

/// Replaces `buf[packet]` by the reply to it, written from `packet.start`, and returns the
/// reply's range. `None` when the packet cannot be answered (malformed, itself an ICMP error,
/// or the buffer has no room for the quote).
pub fn build(buf: &mut [u8], packet: Range<usize>) -> Option<Range<usize>> {
    let pkt = buf.get(packet.clone())?;
    let info = PacketInfo::parse(pkt).ok()?;
    if info.is_non_first_fragment() {
        return None;
    }
    let v6 = info.version == 6;
    if info.protocol == proto::TCP {
        return tcp_rst(buf, packet.start, &info);
    }
    if matches!(info.protocol, proto::ICMP | proto::ICMPV6) {
        let t = *pkt.get(info.transport_offset)?;
        let error = if v6 {
            t < 128
        } else {
            !matches!(t, 0 | 8 | 13 | 14)
        };
        if error {
            return None; // never answer an error with an error
        }
    }
    let ip_len = if v6 { 40 } else { 20 };
    let quote = if v6 {
        info.len.min(V6_QUOTE)
    } else {
        (info.transport_offset + 8).min(info.len)
    };
    let start = packet.start;
    let total = ip_len + 8 + quote;
    if buf.len() < start + total {
        return None;
    }
    buf.copy_within(start..start + quote, start + ip_len + 8);
    let out = &mut buf[start..start + total];
    let (src, dst) = (info.dst, info.src);
    ip_header(
        out,
        v6,
        &src,
        &dst,
        if v6 { proto::ICMPV6 } else { proto::ICMP },
        total,
    );
    let icmp = &mut out[ip_len..];
    icmp[..8].fill(0);
    if v6 {
        icmp[0] = 1; // destination unreachable
        icmp[1] = 1; // communication administratively prohibited
        let s = pseudo_header(&out[8..40], proto::ICMPV6, total - 40);
        let c = finish(sum(s, &out[40..]));
        put16(out, 42, c);
    } else {
        icmp[0] = 3; // destination unreachable
        icmp[1] = 13; // communication administratively prohibited
        let c = checksum(icmp);
        put16(icmp, 2, c);
    }
    Some(start..start + total)
}

fn ip_header(
    out: &mut [u8],
    v6: bool,
    src: &std::net::IpAddr,
    dst: &std::net::IpAddr,
    protocol: u8,
    total: usize,
) {
    use std::net::IpAddr;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) if !v6 => {
            out[..20].fill(0);
            out[0] = 0x45;
            put16(out, 2, total as u16);
            out[8] = 64;
            out[9] = protocol;
            out[12..16].copy_from_slice(&s.octets());
            out[16..20].copy_from_slice(&d.octets());
            let c = finish(sum(0, &out[..20]));
            put16(out, 10, c);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            out[..40].fill(0);
            out[0] = 0x60;
            put16(out, 4, (total - 40) as u16);
            out[6] = protocol;
            out[7] = 64;
            out[8..24].copy_from_slice(&s.octets());
            out[24..40].copy_from_slice(&d.octets());
        }
        _ => {}
    }
}

fn tcp_rst(buf: &mut [u8], start: usize, info: &PacketInfo) -> Option<Range<usize>> {
    let pkt = &buf[start..start + info.len];
    let l4 = info.transport_offset;
    let tcp = pkt.get(l4..l4 + 20)?;
    let flags = tcp[13];
    if flags & 0x04 != 0 {
        return None; // never answer a RST
    }
    let (sport, dport) = (get16(tcp, 0), get16(tcp, 2));
    let seq = u32::from_be_bytes(tcp[4..8].try_into().ok()?);
    let ack = u32::from_be_bytes(tcp[8..12].try_into().ok()?);
    let data_off = usize::from(tcp[12] >> 4) * 4;
    let payload = info.len.saturating_sub(l4 + data_off) as u32;
    let seg_len = payload + u32::from(flags & 0x02 != 0) + u32::from(flags & 0x01 != 0);
    let (rseq, rack, rflags) = if flags & 0x10 != 0 {
        (ack, 0, 0x04)
    } else {
        (0, seq.wrapping_add(seg_len), 0x14)
    };
    let v6 = info.version == 6;
    let ip_len = if v6 { 40 } else { 20 };
    let total = ip_len + 20;
    if buf.len() < start + total {
        return None;
    }
    let out = &mut buf[start..start + total];
    ip_header(out, v6, &info.dst, &info.src, proto::TCP, total);
    let t = &mut out[ip_len..];
    t.fill(0);
    put16(t, 0, dport);
    put16(t, 2, sport);
    t[4..8].copy_from_slice(&rseq.to_be_bytes());
    t[8..12].copy_from_slice(&rack.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = rflags;
    let s = if v6 {
        pseudo_header(&out[8..40], proto::TCP, 20)
    } else {
        pseudo_header(&out[12..20], proto::TCP, 20)
    };
    let c = finish(sum(s, &out[ip_len..]));
    put16(out, ip_len + 16, c);
    Some(start..start + total)
}
