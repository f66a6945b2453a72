//! IPv4 as the simulated kernels see it: fragmentation and reassembly, ICMP "fragmentation
//! needed", UDP datagrams, NAT rewriting. Headers are read with [`Ipv4Header`] and checksums
//! computed with `rampart_wire::checksum`. The simulator is IPv4-only.
//!
//! Every function takes untrusted bytes and never panics: malformed input gives `None`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use rampart_wire::checksum::{checksum, finish, pseudo_header_v4, sum, update_word};
use rampart_wire::ip::proto;
pub use rampart_wire::ip::Ipv4Header;

pub const PROTO_ICMP: u8 = proto::ICMP;
pub const PROTO_TCP: u8 = proto::TCP;
pub const PROTO_UDP: u8 = proto::UDP;
pub const PROTO_ESP: u8 = proto::ESP;

/// Recomputes the header checksum of the IPv4 packet in `p` (header assumed valid).
pub fn fix_ip_checksum(p: &mut [u8]) {
    let hl = usize::from(p[0] & 0x0f) * 4;
    p[10] = 0;
    p[11] = 0;
    let c = checksum(&p[..hl]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
}

/// RFC 1624 incremental update of the checksum at `p[at..at+2]` for a 16-bit word changing
/// from `old` to `new`.
pub fn adjust_checksum(p: &mut [u8], at: usize, old: u16, new: u16) {
    let Some(c) = p.get(at..at + 2) else { return };
    let out = update_word(u16::from_be_bytes([c[0], c[1]]), old, new);
    p[at..at + 2].copy_from_slice(&out.to_be_bytes());
}

/// Rewrites the source or destination address and/or port of a TCP/UDP packet (NAT), fixing
/// the IP and L4 checksums incrementally so that first fragments stay correct too.
pub fn rewrite(p: &mut [u8], ip: &Ipv4Header, src: bool, addr: Ipv4Addr, port: Option<u16>) {
    let (addr_at, port_off) = if src { (12, 0) } else { (16, 2) };
    let old_addr = [
        u16::from_be_bytes([p[addr_at], p[addr_at + 1]]),
        u16::from_be_bytes([p[addr_at + 2], p[addr_at + 3]]),
    ];
    let o = addr.octets();
    p[addr_at..addr_at + 4].copy_from_slice(&o);
    let new_addr = [
        u16::from_be_bytes([o[0], o[1]]),
        u16::from_be_bytes([o[2], o[3]]),
    ];
    fix_ip_checksum(p);
    if ip.fragment_offset_bytes() > 0 {
        return;
    }
    let l4 = ip.header_len;
    let csum_at = match ip.protocol {
        PROTO_TCP => l4 + 16,
        PROTO_UDP => l4 + 6,
        _ => return,
    };
    if p.len() < csum_at + 2 {
        return;
    }
    let udp_no_checksum = ip.protocol == PROTO_UDP && p[csum_at] == 0 && p[csum_at + 1] == 0;
    if !udp_no_checksum {
        for i in 0..2 {
            adjust_checksum(p, csum_at, old_addr[i], new_addr[i]);
        }
    }
    if let Some(port) = port {
        let at = l4 + port_off;
        let old = u16::from_be_bytes([p[at], p[at + 1]]);
        p[at..at + 2].copy_from_slice(&port.to_be_bytes());
        if !udp_no_checksum {
            adjust_checksum(p, csum_at, old, port);
        }
    }
}

/// Builds an IPv4 header + payload (DF clear, ident given).
pub fn build_ipv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    ident: u16,
    payload: &[u8],
) -> Vec<u8> {
    let total = 20 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total.min(0xffff) as u16).to_be_bytes());
    p[4..6].copy_from_slice(&ident.to_be_bytes());
    p[8] = 64;
    p[9] = protocol;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    fix_ip_checksum(&mut p);
    p[20..].copy_from_slice(payload);
    p
}

/// Sets the Don't Fragment bit of the IPv4 packet in `p` (header assumed valid).
pub fn set_dont_fragment(p: &mut [u8]) {
    if p.len() >= 20 {
        p[6] |= 0x40;
        fix_ip_checksum(p);
    }
}

/// What an ICMP "fragmentation needed" says about one of our UDP datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragNeeded {
    /// Our address and port (the quoted datagram's source).
    pub local: (Ipv4Addr, u16),
    /// Where it went.
    pub remote: (Ipv4Addr, u16),
    /// The next-hop MTU the router reported.
    pub mtu: u16,
}

/// Reads an ICMP "fragmentation needed" (type 3 code 4; `icmp` is the ICMP message) about a
/// UDP datagram. `None` for anything else or a quote too short to tell.
pub fn frag_needed_udp(icmp: &[u8]) -> Option<FragNeeded> {
    if icmp.len() < 8 || icmp[0] != 3 || icmp[1] != 4 {
        return None;
    }
    let mtu = u16::from_be_bytes([icmp[6], icmp[7]]);
    let q = &icmp[8..];
    let hl = usize::from(*q.first()? & 0x0f) * 4;
    if hl < 20 || q.len() < hl + 4 || q[9] != PROTO_UDP {
        return None;
    }
    let src = Ipv4Addr::new(q[12], q[13], q[14], q[15]);
    let dst = Ipv4Addr::new(q[16], q[17], q[18], q[19]);
    let sport = u16::from_be_bytes([q[hl], q[hl + 1]]);
    let dport = u16::from_be_bytes([q[hl + 2], q[hl + 3]]);
    Some(FragNeeded {
        local: (src, sport),
        remote: (dst, dport),
        mtu,
    })
}

/// Builds an IPv4/UDP datagram with a correct UDP checksum.
pub fn build_udp(
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    ident: u16,
    data: &[u8],
) -> Vec<u8> {
    let len = 8 + data.len();
    let mut udp = vec![0u8; len];
    udp[0..2].copy_from_slice(&sport.to_be_bytes());
    udp[2..4].copy_from_slice(&dport.to_be_bytes());
    udp[4..6].copy_from_slice(&(len.min(0xffff) as u16).to_be_bytes());
    udp[8..].copy_from_slice(data);
    let mut c = finish(sum(pseudo_header_v4(src, dst, PROTO_UDP, len), &udp));
    if c == 0 {
        c = 0xffff;
    }
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    build_ipv4(src, dst, PROTO_UDP, ident, &udp)
}

/// ICMP destination unreachable / fragmentation needed (type 3 code 4) about `offending`.
pub fn icmp_frag_needed(src: Ipv4Addr, offending: &[u8], ip: &Ipv4Header, mtu: u16) -> Vec<u8> {
    let quoted = &offending[..(ip.header_len + 8).min(offending.len())];
    let mut icmp = vec![0u8; 8 + quoted.len()];
    icmp[0] = 3;
    icmp[1] = 4;
    icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
    icmp[8..].copy_from_slice(quoted);
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    build_ipv4(src, ip.src, PROTO_ICMP, 0, &icmp)
}

/// Splits `p` into fragments that fit `mtu` (offsets in multiples of 8 bytes).
pub fn fragment(p: &[u8], ip: &Ipv4Header, mtu: usize) -> Vec<Vec<u8>> {
    let hl = ip.header_len;
    let payload = &p[hl..ip.total_len];
    let step = ((mtu.saturating_sub(hl)) / 8 * 8).max(8);
    let mut out = Vec::new();
    let mut off = 0;
    while off < payload.len() {
        let end = (off + step).min(payload.len());
        let last = end == payload.len();
        let mut f = Vec::with_capacity(hl + end - off);
        f.extend_from_slice(&p[..hl]);
        f.extend_from_slice(&payload[off..end]);
        let total = f.len() as u16;
        f[2..4].copy_from_slice(&total.to_be_bytes());
        let abs = (ip.fragment_offset_bytes() + off) / 8;
        let mf = !last || ip.more_fragments;
        let flags = (abs as u16 & 0x1fff) | if mf { 0x2000 } else { 0 };
        f[6..8].copy_from_slice(&flags.to_be_bytes());
        fix_ip_checksum(&mut f);
        out.push(f);
        off = end;
    }
    out
}

/// Reassembles fragmented IPv4 datagrams (RFC 791), as a receiving kernel does.
#[derive(Debug, Default)]
pub struct Reassembler {
    pending: BTreeMap<(Ipv4Addr, Ipv4Addr, u8, u16), Pending>,
}

#[derive(Debug)]
struct Pending {
    started: Duration,
    header: Vec<u8>,
    parts: BTreeMap<usize, Vec<u8>>,
    total: Option<usize>,
}

/// How long an incomplete datagram is kept (Linux: 30 s).
pub const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(30);

impl Reassembler {
    /// Adds a fragment; returns the whole datagram once all parts are there.
    pub fn add(&mut self, now: Duration, p: &[u8], ip: &Ipv4Header) -> Option<Vec<u8>> {
        self.pending
            .retain(|_, v| now.saturating_sub(v.started) < REASSEMBLY_TIMEOUT);
        let key = (ip.src, ip.dst, ip.protocol, ip.ident);
        let entry = self.pending.entry(key).or_insert_with(|| Pending {
            started: now,
            header: Vec::new(),
            parts: BTreeMap::new(),
            total: None,
        });
        let data = &p[ip.header_len..ip.total_len];
        if ip.fragment_offset_bytes() == 0 {
            entry.header = p[..ip.header_len].to_vec();
        }
        if !ip.more_fragments {
            entry.total = Some(ip.fragment_offset_bytes() + data.len());
        }
        entry
            .parts
            .insert(ip.fragment_offset_bytes(), data.to_vec());
        let total = entry.total?;
        if entry.header.is_empty() {
            return None;
        }
        let mut covered = 0;
        for (off, d) in &entry.parts {
            if *off > covered {
                return None;
            }
            covered = covered.max(off + d.len());
        }
        if covered < total || entry.header.len() + total > 0xffff {
            return None;
        }
        let entry = self.pending.remove(&key)?;
        let hl = entry.header.len();
        let mut out = vec![0u8; hl + total];
        out[..hl].copy_from_slice(&entry.header);
        for (off, d) in &entry.parts {
            let end = (off + d.len()).min(total);
            out[hl + off..hl + end].copy_from_slice(&d[..end - off]);
        }
        out[2..4].copy_from_slice(&((hl + total) as u16).to_be_bytes());
        out[6..8].copy_from_slice(&0u16.to_be_bytes());
        fix_ip_checksum(&mut out);
        Some(out)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn frag_needed_names_the_udp_flow_and_mtu() {
        let a = Ipv4Addr::new(10, 9, 0, 10);
        let b = Ipv4Addr::new(198, 51, 100, 1);
        let mut p = build_udp(a, 4500, b, 4500, 7, &[0u8; 1400]);
        set_dont_fragment(&mut p);
        let ip = Ipv4Header::parse(&p).unwrap();
        assert!(ip.dont_fragment);
        let icmp = icmp_frag_needed(Ipv4Addr::new(192, 0, 2, 254), &p, &ip, 1280);
        let outer = Ipv4Header::parse(&icmp).unwrap();
        let f = frag_needed_udp(&icmp[outer.header_len..]).unwrap();
        assert_eq!(
            f,
            FragNeeded {
                local: (a, 4500),
                remote: (b, 4500),
                mtu: 1280
            }
        );
        assert_eq!(frag_needed_udp(&[3, 3, 0, 0, 0, 0, 5, 0]), None);
        assert_eq!(frag_needed_udp(&[3, 4]), None);
    }

    use super::*;

    #[test]
    fn fragments_reassemble_to_the_original() {
        let data: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let p = build_udp(
            Ipv4Addr::new(1, 1, 1, 1),
            500,
            Ipv4Addr::new(2, 2, 2, 2),
            500,
            7,
            &data,
        );
        let ip = Ipv4Header::parse(&p).unwrap();
        let frags = fragment(&p, &ip, 1280);
        assert_eq!(frags.len(), 3);
        let mut r = Reassembler::default();
        let mut out = None;
        for f in frags.iter().rev() {
            let fi = Ipv4Header::parse(f).unwrap();
            assert!(f.len() <= 1280);
            out = r.add(Duration::ZERO, f, &fi);
        }
        assert_eq!(out.unwrap(), p);
    }

    #[test]
    fn nat_rewrite_keeps_udp_checksum_valid() {
        let p0 = build_udp(
            Ipv4Addr::new(10, 0, 0, 2),
            4500,
            Ipv4Addr::new(2, 2, 2, 2),
            4500,
            1,
            b"hello",
        );
        let mut p = p0.clone();
        let ip = Ipv4Header::parse(&p).unwrap();
        rewrite(
            &mut p,
            &ip,
            true,
            Ipv4Addr::new(198, 51, 100, 1),
            Some(40000),
        );
        let expect = build_udp(
            Ipv4Addr::new(198, 51, 100, 1),
            40000,
            Ipv4Addr::new(2, 2, 2, 2),
            4500,
            1,
            b"hello",
        );
        assert_eq!(p, expect);
    }

    #[test]
    fn garbage_does_not_parse() {
        assert!(Ipv4Header::parse(&[0x45, 0, 0xff, 0xff]).is_err());
        assert!(Ipv4Header::parse(&[0u8; 40]).is_err());
    }
}
