//! A small pcap reader and the transit-link checker: every packet between the gateways must be
//! IKE, ESP or ESP-in-UDP (RFC 3948), so no inner packet ever crosses the transit link in clear.
//!
//! Parsing never panics: truncated or odd records become violations or errors.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

/// One record of a pcap file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// Captured bytes (possibly cut at the snap length).
    pub data: &'a [u8],
    /// Length of the packet on the wire.
    pub orig_len: u32,
}

/// Link types we decode.
const LINKTYPE_ETHERNET: u32 = 1;
const LINKTYPE_LINUX_SLL: u32 = 113;
const LINKTYPE_LINUX_SLL2: u32 = 276;

/// Parses a classic pcap file (either byte order, micro- or nanosecond timestamps).
/// Returns the link type and the records; a truncated last record is an error.
pub fn parse(file: &[u8]) -> Result<(u32, Vec<Record<'_>>), String> {
    let header = file
        .get(..24)
        .ok_or("pcap: shorter than its 24-byte header")?;
    let magic = [header[0], header[1], header[2], header[3]];
    let le = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => {
            return Err(format!(
                "pcap: bad magic {magic:02x?} (pcapng is not supported)"
            ))
        }
    };
    let u32_at = |b: &[u8], at: usize| -> Option<u32> {
        let v: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(v)
        } else {
            u32::from_be_bytes(v)
        })
    };
    let linktype = u32_at(header, 20).ok_or("pcap: header")? & 0x0fff_ffff;
    let mut records = Vec::new();
    let mut at = 24usize;
    while at < file.len() {
        let rec = file
            .get(at..at + 16)
            .ok_or_else(|| format!("pcap: truncated record header at byte {at}"))?;
        let incl = u32_at(rec, 8).ok_or("pcap: record")? as usize;
        let orig_len = u32_at(rec, 12).ok_or("pcap: record")?;
        let data = file
            .get(at + 16..at + 16 + incl)
            .ok_or_else(|| format!("pcap: truncated record data at byte {at}"))?;
        records.push(Record { data, orig_len });
        at += 16 + incl;
    }
    Ok((linktype, records))
}

/// What one transit-link packet is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// UDP to or from port 500, or on the NAT-T port with the 4-zero-byte non-ESP marker.
    Ike,
    /// IP protocol 50.
    Esp,
    /// UDP on the NAT-T port whose payload starts with a non-zero SPI.
    EspInUdp,
    /// The one-byte 0xFF NAT keepalive on the NAT-T port.
    NatKeepalive,
    /// A non-first IP fragment of a UDP or ESP datagram (its first fragment is classified).
    Fragment,
    /// Link-level address resolution (not IP).
    Arp,
    /// Anything else, described.
    Other(String),
}

/// Counts per class plus the first violations found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureSummary {
    pub ike: u64,
    pub esp: u64,
    pub esp_in_udp: u64,
    pub nat_keepalive: u64,
    pub fragments: u64,
    pub arp: u64,
    /// Packets whose IP endpoints are not the two expected gateway addresses.
    pub foreign_endpoints: u64,
    /// Descriptions of the offending packets (first 20), with their index in the capture.
    pub violations: Vec<String>,
    pub total: u64,
    /// Packet counts per (source, destination).
    pub flows: BTreeMap<(IpAddr, IpAddr), u64>,
}

impl CaptureSummary {
    /// ESP packets seen, raw or UDP-encapsulated.
    pub fn esp_packets(&self) -> u64 {
        self.esp + self.esp_in_udp
    }
}

/// Classifies one captured frame of the given link type. Returns the class and the IP endpoints.
pub fn classify(linktype: u32, frame: &[u8], nat_t_port: u16) -> (Class, Option<(IpAddr, IpAddr)>) {
    let (ethertype, payload) = match link_payload(linktype, frame) {
        Ok(v) => v,
        Err(e) => return (Class::Other(e), None),
    };
    match ethertype {
        0x0806 => (Class::Arp, None),
        0x0800 => classify_ipv4(payload, nat_t_port),
        0x86dd => classify_ipv6(payload, nat_t_port),
        other => (Class::Other(format!("ethertype {other:#06x}")), None),
    }
}

fn link_payload(linktype: u32, frame: &[u8]) -> Result<(u16, &[u8]), String> {
    let be16 = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?))
    };
    let (ethertype, offset) = match linktype {
        LINKTYPE_ETHERNET => {
            let t = be16(12).ok_or("short ethernet frame")?;
            if t == 0x8100 {
                (be16(16).ok_or("short 802.1Q frame")?, 18)
            } else {
                (t, 14)
            }
        }
        LINKTYPE_LINUX_SLL => (be16(14).ok_or("short SLL frame")?, 16),
        LINKTYPE_LINUX_SLL2 => (be16(0).ok_or("short SLL2 frame")?, 20),
        other => return Err(format!("unsupported link type {other}")),
    };
    let payload = frame.get(offset..).ok_or("short frame")?;
    Ok((ethertype, payload))
}

fn classify_ipv4(ip: &[u8], nat_t_port: u16) -> (Class, Option<(IpAddr, IpAddr)>) {
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return (Class::Other("malformed IPv4 header".into()), None);
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let src = IpAddr::from([ip[12], ip[13], ip[14], ip[15]]);
    let dst = IpAddr::from([ip[16], ip[17], ip[18], ip[19]]);
    let frag_offset = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
    let proto = ip[9];
    let endpoints = Some((src, dst));
    if frag_offset != 0 {
        let class = if proto == 17 || proto == 50 {
            Class::Fragment
        } else {
            Class::Other(format!("fragment of protocol {proto} {src} -> {dst}"))
        };
        return (class, endpoints);
    }
    let Some(l4) = ip.get(ihl..) else {
        return (
            Class::Other("malformed IPv4 header length".into()),
            endpoints,
        );
    };
    (classify_l4(proto, l4, src, dst, nat_t_port), endpoints)
}

fn classify_ipv6(ip: &[u8], nat_t_port: u16) -> (Class, Option<(IpAddr, IpAddr)>) {
    if ip.len() < 40 || ip[0] >> 4 != 6 {
        return (Class::Other("malformed IPv6 header".into()), None);
    }
    let mut s = [0u8; 16];
    let mut d = [0u8; 16];
    s.copy_from_slice(&ip[8..24]);
    d.copy_from_slice(&ip[24..40]);
    let (src, dst) = (IpAddr::from(s), IpAddr::from(d));
    let endpoints = Some((src, dst));
    // Extension headers are not walked: IKE/ESP between our gateways never carries them.
    (
        classify_l4(ip[6], &ip[40..], src, dst, nat_t_port),
        endpoints,
    )
}

fn classify_l4(proto: u8, l4: &[u8], src: IpAddr, dst: IpAddr, nat_t_port: u16) -> Class {
    match proto {
        50 => Class::Esp,
        17 => {
            let Some(udp) = l4.get(..8) else {
                return Class::Other(format!("truncated UDP header {src} -> {dst}"));
            };
            let sport = u16::from_be_bytes([udp[0], udp[1]]);
            let dport = u16::from_be_bytes([udp[2], udp[3]]);
            // The UDP length tells the payload size even when the capture was cut short.
            let payload_len = usize::from(u16::from_be_bytes([udp[4], udp[5]])).saturating_sub(8);
            let payload = &l4[8..];
            if sport == 500 || dport == 500 {
                Class::Ike
            } else if sport == nat_t_port || dport == nat_t_port {
                if payload_len == 1 && payload.first() == Some(&0xff) {
                    Class::NatKeepalive
                } else if payload_len >= 4 && payload.get(..4) == Some(&[0, 0, 0, 0][..]) {
                    Class::Ike
                } else if payload_len >= 8 && payload.len() >= 4 {
                    Class::EspInUdp
                } else {
                    Class::Other(format!(
                        "UDP {src}:{sport} -> {dst}:{dport} with {payload_len} bytes, neither IKE nor ESP"
                    ))
                }
            } else {
                Class::Other(format!("UDP {src}:{sport} -> {dst}:{dport}"))
            }
        }
        1 => Class::Other(format!("ICMP {src} -> {dst}")),
        6 => Class::Other(format!("TCP {src} -> {dst}")),
        other => Class::Other(format!("IP protocol {other} {src} -> {dst}")),
    }
}

/// Summarises a capture of the transit link between `gateways` (their transit addresses).
/// The caller asserts `violations.is_empty()` and that ESP was seen.
pub fn summarize(
    file: &[u8],
    gateways: (IpAddr, IpAddr),
    nat_t_port: u16,
) -> Result<CaptureSummary, String> {
    let (linktype, records) = parse(file)?;
    let mut s = CaptureSummary::default();
    for (index, rec) in records.iter().enumerate() {
        s.total += 1;
        let (class, endpoints) = classify(linktype, rec.data, nat_t_port);
        if let Some((src, dst)) = endpoints {
            *s.flows.entry((src, dst)).or_default() += 1;
            let expected = (src, dst) == gateways || (dst, src) == gateways;
            if !expected {
                s.foreign_endpoints += 1;
                if s.violations.len() < 20 {
                    s.violations
                        .push(format!("#{index}: unexpected endpoints {src} -> {dst}"));
                }
            }
        }
        match class {
            Class::Ike => s.ike += 1,
            Class::Esp => s.esp += 1,
            Class::EspInUdp => s.esp_in_udp += 1,
            Class::NatKeepalive => s.nat_keepalive += 1,
            Class::Fragment => s.fragments += 1,
            Class::Arp => s.arp += 1,
            Class::Other(what) => {
                if s.violations.len() < 20 {
                    s.violations.push(format!("#{index}: {what}"));
                }
            }
        }
    }
    Ok(s)
}

/// Reads a pcap file and checks that it holds only IKE and ESP between the two gateways and at
/// least one ESP packet; returns the summary, or an error listing the violations.
pub fn check_only_ike_esp(
    path: &Path,
    gateways: (IpAddr, IpAddr),
    nat_t_port: u16,
) -> Result<CaptureSummary, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let summary = summarize(&bytes, gateways, nat_t_port)?;
    if !summary.violations.is_empty() {
        return Err(format!(
            "{} holds packets that are not IKE/ESP between {} and {}:\n{}\nsummary: {summary:?}",
            path.display(),
            gateways.0,
            gateways.1,
            summary.violations.join("\n")
        ));
    }
    if summary.esp_packets() == 0 {
        return Err(format!(
            "{} holds no ESP packet: summary {summary:?}",
            path.display()
        ));
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW1: [u8; 4] = [192, 0, 2, 1];
    const GW2: [u8; 4] = [192, 0, 2, 2];

    fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, frag: u16, l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0];
        let total = (20 + l4.len()) as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p[6..8].copy_from_slice(&frag.to_be_bytes());
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(l4);
        p
    }

    fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = Vec::new();
        u.extend_from_slice(&sport.to_be_bytes());
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        u
    }

    fn ether(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// A little-endian microsecond pcap with the given Ethernet frames.
    fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        f.extend_from_slice(&2u16.to_le_bytes());
        f.extend_from_slice(&4u16.to_le_bytes());
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&65535u32.to_le_bytes());
        f.extend_from_slice(&1u32.to_le_bytes());
        for frame in frames {
            f.extend_from_slice(&[0; 8]);
            f.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            f.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            f.extend_from_slice(frame);
        }
        f
    }

    fn gateways() -> (IpAddr, IpAddr) {
        (IpAddr::from(GW1), IpAddr::from(GW2))
    }

    #[test]
    fn accepts_ike_esp_and_keepalives() {
        let ike_init = udp(500, 500, &[0x11; 40]);
        let ike_natt = udp(4500, 4500, &[0, 0, 0, 0, 0x22, 0x33, 0x44, 0x55, 9, 9]);
        let esp_udp = udp(
            4500,
            4500,
            &[0xc1, 0x23, 0x45, 0x67, 0, 0, 0, 1, 0xaa, 0xbb],
        );
        let keepalive = udp(4500, 4500, &[0xff]);
        let esp = [0xc1, 0x23, 0x45, 0x67, 0, 0, 0, 1, 0xaa];
        let file = pcap(&[
            ether(0x0806, &[0; 28]),
            ether(0x0800, &ipv4(GW1, GW2, 17, 0, &ike_init)),
            ether(0x0800, &ipv4(GW2, GW1, 17, 0, &ike_natt)),
            ether(0x0800, &ipv4(GW1, GW2, 17, 0, &esp_udp)),
            ether(0x0800, &ipv4(GW1, GW2, 17, 0, &keepalive)),
            ether(0x0800, &ipv4(GW2, GW1, 50, 0, &esp)),
            ether(0x0800, &ipv4(GW2, GW1, 17, 185, &[1, 2, 3])),
        ]);
        let s = summarize(&file, gateways(), 4500).unwrap();
        assert!(s.violations.is_empty(), "{:?}", s.violations);
        assert_eq!(
            (
                s.ike,
                s.esp,
                s.esp_in_udp,
                s.nat_keepalive,
                s.fragments,
                s.arp
            ),
            (2, 1, 1, 1, 1, 1)
        );
        assert_eq!(s.total, 7);
        assert_eq!(s.esp_packets(), 2);
    }

    #[test]
    fn flags_cleartext_and_foreign_packets() {
        let inner_icmp = ipv4([10, 1, 0, 10], [10, 2, 0, 10], 1, 0, &[8, 0, 0, 0]);
        let tcp = ipv4(GW1, GW2, 6, 0, &[0; 20]);
        let other_udp = ipv4(GW1, GW2, 17, 0, &udp(53, 53, &[0; 12]));
        let short_natt = ipv4(GW1, GW2, 17, 0, &udp(4500, 4500, &[1, 2]));
        let file = pcap(&[
            ether(0x0800, &inner_icmp),
            ether(0x0800, &tcp),
            ether(0x0800, &other_udp),
            ether(0x0800, &short_natt),
            ether(0x88cc, &[0; 10]),
        ]);
        let s = summarize(&file, gateways(), 4500).unwrap();
        // The inner ICMP packet counts twice: foreign endpoints and not IKE/ESP.
        assert_eq!(s.violations.len(), 6, "{:?}", s.violations);
        assert_eq!(s.foreign_endpoints, 1);
        assert!(s.violations[0].contains("10.1.0.10"));
    }

    #[test]
    fn honours_a_custom_nat_t_port() {
        let esp_udp = ipv4(
            GW1,
            GW2,
            17,
            0,
            &udp(2746, 2746, &[0xc1, 0, 0, 1, 0, 0, 0, 1]),
        );
        let file = pcap(&[ether(0x0800, &esp_udp)]);
        assert_eq!(summarize(&file, gateways(), 2746).unwrap().esp_in_udp, 1);
        assert_eq!(
            summarize(&file, gateways(), 4500).unwrap().violations.len(),
            1
        );
    }

    #[test]
    fn reads_big_endian_and_rejects_garbage() {
        let mut be = Vec::new();
        be.extend_from_slice(&0xa1b2_c3d4u32.to_be_bytes());
        be.extend_from_slice(&[0, 2, 0, 4]);
        be.extend_from_slice(&[0; 12]);
        be.extend_from_slice(&1u32.to_be_bytes());
        let (lt, recs) = parse(&be).unwrap();
        assert_eq!((lt, recs.len()), (1, 0));

        assert!(parse(b"short").is_err());
        assert!(parse(&[0u8; 24]).is_err());
        let mut truncated = pcap(&[ether(0x0806, &[0; 28])]);
        truncated.pop();
        assert!(parse(&truncated).is_err());
    }

    #[test]
    fn never_panics_on_truncated_frames() {
        let full = ether(
            0x0800,
            &ipv4(GW1, GW2, 17, 0, &udp(4500, 4500, &[0, 0, 0, 0, 1])),
        );
        for cut in 0..full.len() {
            for lt in [
                LINKTYPE_ETHERNET,
                LINKTYPE_LINUX_SLL,
                LINKTYPE_LINUX_SLL2,
                99,
            ] {
                let _ = classify(lt, &full[..cut], 4500);
            }
        }
    }
}
