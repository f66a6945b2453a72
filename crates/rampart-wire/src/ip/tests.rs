use std::net::IpAddr;

use proptest::prelude::*;

use super::*;

fn h(s: &str) -> Vec<u8> {
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(clean).expect("test hex")
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// IPv4 header (no options) + `l4`, with the given protocol and flags/fragment-offset field.
fn v4(protocol: u8, frag: u16, l4: &[u8]) -> Vec<u8> {
    let mut p = h("45 00 0000 1234 0000 40 00 0000 c0000201 c6336405");
    let len = (20 + l4.len()) as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    p[6..8].copy_from_slice(&frag.to_be_bytes());
    p[9] = protocol;
    p.extend_from_slice(l4);
    p
}

/// IPv6 header + extension bytes + `l4`.
fn v6(next: u8, ext: &[u8], l4: &[u8]) -> Vec<u8> {
    let mut p =
        h("60000000 0000 00 40 20010db8000000000000000000000001 20010db8000000000000000000000002");
    let len = (ext.len() + l4.len()) as u16;
    p[4..6].copy_from_slice(&len.to_be_bytes());
    p[6] = next;
    p.extend_from_slice(ext);
    p.extend_from_slice(l4);
    p
}

#[test]
fn ipv4_udp() {
    let pkt = v4(proto::UDP, 0x4000, &h("1194 01f4 0008 0000"));
    let info = PacketInfo::parse(&pkt).unwrap();
    assert_eq!(info.version, 4);
    assert_eq!((info.src, info.dst), (ip("192.0.2.1"), ip("198.51.100.5")));
    assert_eq!(
        (info.protocol, info.ttl, info.len, info.transport_offset),
        (17, 64, 28, 20)
    );
    assert_eq!(info.ports(), Some((4500, 500)));
    assert_eq!((info.src_port, info.dst_port), (Some(4500), Some(500)));
    assert_eq!(info.fragment, None);
}

#[test]
fn ipv4_options_and_trailing_bytes() {
    // IHL 6 (one 4-byte option: NOP NOP NOP EOL), TCP ports 1234 -> 80; two bytes of link padding.
    let mut pkt = h(
        "46 00 0020 0001 0000 40 06 0000 0a000001 0a000002 01010100 04d2 0050 00000000 00000000",
    );
    pkt.extend_from_slice(&[0xee, 0xee]);
    let info = PacketInfo::parse(&pkt).unwrap();
    assert_eq!((info.transport_offset, info.len), (24, 32));
    assert_eq!(info.transport, Transport::Ports { src: 1234, dst: 80 });
}

#[test]
fn ipv4_icmp_and_other() {
    let info = PacketInfo::parse(&v4(proto::ICMP, 0, &h("0800 0000 0001 0001"))).unwrap();
    assert_eq!(info.transport, Transport::Icmp { kind: 8, code: 0 });
    let info = PacketInfo::parse(&v4(proto::ESP, 0, &h("00000001 00000001"))).unwrap();
    assert_eq!((info.protocol, info.transport), (50, Transport::None));
    // ICMPv6's number means nothing special inside IPv4.
    let info = PacketInfo::parse(&v4(proto::ICMPV6, 0, &[])).unwrap();
    assert_eq!(info.transport, Transport::None);
}

#[test]
fn ipv4_fragments() {
    // First fragment (MF set, offset 0): ports present.
    let info = PacketInfo::parse(&v4(proto::UDP, 0x2000, &h("0035 0035 0100 0000"))).unwrap();
    assert_eq!(
        info.fragment,
        Some(Fragment {
            offset: 0,
            more: true,
            id: 0x1234
        })
    );
    assert_eq!(info.ports(), Some((53, 53)));
    assert!(!info.is_non_first_fragment());
    // Non-first fragment: the bytes after the header are payload, not ports.
    let info = PacketInfo::parse(&v4(proto::UDP, 0x0005, &h("0035 0035"))).unwrap();
    assert_eq!(
        info.fragment,
        Some(Fragment {
            offset: 5,
            more: false,
            id: 0x1234
        })
    );
    assert_eq!((info.ports(), info.transport), (None, Transport::None));
    assert!(info.is_non_first_fragment());
    // Even an empty non-first fragment is fine.
    assert!(PacketInfo::parse(&v4(proto::TCP, 0x2001, &[])).is_ok());
}

#[test]
fn ipv4_errors() {
    assert_eq!(PacketInfo::parse(&[]), Err(ParseError::Empty));
    assert_eq!(PacketInfo::parse(&[0x55; 40]), Err(ParseError::Version(5)));
    let good = v4(proto::UDP, 0, &h("1194 01f4 0008 0000"));
    assert_eq!(PacketInfo::parse(&good[..19]), Err(ParseError::ShortHeader));
    assert_eq!(
        PacketInfo::parse(&good[..27]),
        Err(ParseError::TotalLength {
            claimed: 28,
            available: 27
        })
    );
    let mut ihl4 = good.clone();
    ihl4[0] = 0x44;
    assert_eq!(PacketInfo::parse(&ihl4), Err(ParseError::HeaderLength));
    let mut ihl15 = good.clone();
    ihl15[0] = 0x4f;
    assert_eq!(PacketInfo::parse(&ihl15), Err(ParseError::HeaderLength));
    let mut small_total = good.clone();
    small_total[2..4].copy_from_slice(&[0, 19]);
    assert_eq!(
        PacketInfo::parse(&small_total),
        Err(ParseError::TotalLength {
            claimed: 19,
            available: 28
        })
    );
    // Unfragmented UDP with 3 bytes of header.
    assert_eq!(
        PacketInfo::parse(&v4(proto::UDP, 0, &[0, 1, 2])),
        Err(ParseError::Transport(17))
    );
    assert_eq!(
        PacketInfo::parse(&v4(proto::ICMP, 0, &[8])),
        Err(ParseError::Transport(1))
    );
}

#[test]
fn ipv6_tcp_and_icmpv6() {
    let info = PacketInfo::parse(&v6(
        proto::TCP,
        &[],
        &h("c000 01bb 00000000 00000000 5002 0000 0000 0000"),
    ))
    .unwrap();
    assert_eq!(info.version, 6);
    assert_eq!((info.src, info.dst), (ip("2001:db8::1"), ip("2001:db8::2")));
    assert_eq!(
        (info.protocol, info.ttl, info.transport_offset, info.len),
        (6, 64, 40, 60)
    );
    assert_eq!(info.ports(), Some((0xc000, 443)));
    let info = PacketInfo::parse(&v6(proto::ICMPV6, &[], &h("8000 0000"))).unwrap();
    assert_eq!(info.transport, Transport::Icmp { kind: 128, code: 0 });
    let info = PacketInfo::parse(&v6(proto::NO_NEXT_HEADER, &[], &[])).unwrap();
    assert_eq!(
        (info.protocol, info.transport, info.len),
        (59, Transport::None, 40)
    );
}

#[test]
fn ipv6_extension_headers_are_skipped() {
    // Hop-by-hop (8 bytes) -> routing (16 bytes, len 1) -> destination options (8) -> UDP.
    let ext = h("2b 00 010400000000
                 3c 01 00 00 00000000 0000000000000000
                 11 00 010400000000");
    let info = PacketInfo::parse(&v6(proto::HOP_BY_HOP, &ext, &h("0044 0043 0008 0000"))).unwrap();
    assert_eq!((info.protocol, info.transport_offset), (17, 72));
    assert_eq!(info.ports(), Some((68, 67)));

    // Atomic/first fragment: the chain continues after the fragment header.
    let frag_first = h("06 00 0001 deadbeef");
    let info = PacketInfo::parse(&v6(proto::FRAGMENT, &frag_first, &h("04d2 0050 0000"))).unwrap();
    assert_eq!(
        info.fragment,
        Some(Fragment {
            offset: 0,
            more: true,
            id: 0xdeadbeef
        })
    );
    assert_eq!((info.protocol, info.ports()), (6, Some((1234, 80))));

    // Non-first fragment: protocol from the fragment header, no ports, even with bytes that look
    // like them.
    let frag_later = h("11 00 00a8 00000007");
    let info = PacketInfo::parse(&v6(proto::FRAGMENT, &frag_later, &h("0035 0035"))).unwrap();
    assert_eq!(
        info.fragment,
        Some(Fragment {
            offset: 21,
            more: false,
            id: 7
        })
    );
    assert_eq!(
        (info.protocol, info.transport, info.transport_offset),
        (17, Transport::None, 48)
    );
}

#[test]
fn ipv6_errors() {
    let good = v6(proto::UDP, &[], &h("0044 0043 0008 0000"));
    assert_eq!(PacketInfo::parse(&good[..39]), Err(ParseError::ShortHeader));
    assert_eq!(
        PacketInfo::parse(&good[..47]),
        Err(ParseError::TotalLength {
            claimed: 48,
            available: 47
        })
    );
    // Extension header whose length runs past the payload length.
    let ext = h("11 01 000000000000");
    assert_eq!(
        PacketInfo::parse(&v6(proto::DEST_OPTS, &ext, &h("0044 0043"))),
        Err(ParseError::ExtensionHeader(60))
    );
    // Bytes exist in the buffer beyond the payload length, but they do not count.
    let mut hidden = v6(proto::HOP_BY_HOP, &[], &[]);
    hidden.extend_from_slice(&h("11 00 000000000000 0044 0043"));
    assert_eq!(
        PacketInfo::parse(&hidden),
        Err(ParseError::ExtensionHeader(0))
    );
    assert_eq!(
        PacketInfo::parse(&v6(proto::FRAGMENT, &h("11 00 0000 0000"), &[])),
        Err(ParseError::ExtensionHeader(44))
    );
    assert_eq!(
        PacketInfo::parse(&v6(proto::TCP, &[], &[0, 1])),
        Err(ParseError::Transport(6))
    );
    assert_eq!(
        PacketInfo::parse(&v6(proto::ICMPV6, &[], &[])),
        Err(ParseError::Transport(58))
    );
}

#[test]
fn ipv4_header_fields() {
    // TOS 0xb8, DF, ident 0x1234, ttl 64, UDP, header checksum 0xabcd.
    let mut pkt = v4(proto::UDP, 0x4000, &h("1194 01f4 0008 0000"));
    pkt[1] = 0xb8;
    pkt[10..12].copy_from_slice(&[0xab, 0xcd]);
    let hdr = Ipv4Header::parse(&pkt).unwrap();
    assert_eq!(
        hdr,
        Ipv4Header {
            header_len: 20,
            total_len: 28,
            tos: 0xb8,
            ident: 0x1234,
            dont_fragment: true,
            more_fragments: false,
            fragment_offset: 0,
            ttl: 64,
            protocol: proto::UDP,
            checksum: 0xabcd,
            src: "192.0.2.1".parse().unwrap(),
            dst: "198.51.100.5".parse().unwrap(),
        }
    );
    assert!(!hdr.is_fragment());
    assert_eq!(hdr.ports(&pkt), Some((4500, 500)));

    // A later fragment: offset in 8-byte units and in bytes, no ports.
    let frag = v4(proto::UDP, 0x2000 | 185, &[0u8; 16]);
    let hdr = Ipv4Header::parse(&frag).unwrap();
    assert!(hdr.is_fragment() && hdr.more_fragments);
    assert_eq!(
        (hdr.fragment_offset, hdr.fragment_offset_bytes()),
        (185, 1480)
    );
    assert_eq!(hdr.ports(&frag), None);
}

#[test]
fn ipv4_header_truncated_as_quoted_by_icmp() {
    // A 1500-byte packet quoted as its header and 8 bytes.
    let mut pkt = v4(proto::TCP, 0, &[0u8; 1480]);
    pkt.truncate(28);
    assert_eq!(
        Ipv4Header::parse(&pkt),
        Err(ParseError::TotalLength {
            claimed: 1500,
            available: 28
        })
    );
    let hdr = Ipv4Header::parse_truncated(&pkt).unwrap();
    assert_eq!((hdr.total_len, hdr.protocol), (1500, proto::TCP));
    // Options beyond the quoted bytes, or an IHL below 5, are errors.
    pkt[0] = 0x4f;
    assert_eq!(
        Ipv4Header::parse_truncated(&pkt),
        Err(ParseError::ShortHeader)
    );
    pkt[0] = 0x44;
    assert_eq!(
        Ipv4Header::parse_truncated(&pkt),
        Err(ParseError::HeaderLength)
    );
    assert_eq!(
        Ipv4Header::parse_truncated(&[0x60; 20]),
        Err(ParseError::Version(6))
    );
    assert_eq!(Ipv4Header::parse_truncated(&[]), Err(ParseError::Empty));
}

#[test]
fn ipv6_header_fields() {
    let mut pkt = v6(proto::TCP, &[], &[0u8; 20]);
    // Traffic class 0xb8, flow label 0x12345.
    pkt[0..4].copy_from_slice(&[0x6b, 0x81, 0x23, 0x45]);
    let hdr = Ipv6Header::parse(&pkt).unwrap();
    assert_eq!((hdr.traffic_class, hdr.flow_label), (0xb8, 0x12345));
    assert_eq!((hdr.payload_len, hdr.total_len()), (20, 60));
    assert_eq!((hdr.next_header, hdr.hop_limit), (proto::TCP, 64));
    assert_eq!(IpAddr::V6(hdr.src), ip("2001:db8::1"));
    assert_eq!(IpAddr::V6(hdr.dst), ip("2001:db8::2"));
    assert!(matches!(
        Ipv6Header::parse(&pkt[..59]),
        Err(ParseError::TotalLength {
            claimed: 60,
            available: 59
        })
    ));
    assert_eq!(Ipv6Header::parse_truncated(&pkt[..40]), Ok(hdr));
    assert_eq!(
        Ipv6Header::parse_truncated(&pkt[..39]),
        Err(ParseError::ShortHeader)
    );
}

proptest! {
    #[test]
    fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..200), version in 0u8..16) {
        let _ = PacketInfo::parse(&data);
        let mut d = data.clone();
        if let Some(b) = d.first_mut() {
            *b = (version << 4) | (*b & 0x0f);
        }
        if let Ok(info) = PacketInfo::parse(&d) {
            prop_assert!(info.transport_offset <= info.len && info.len <= d.len());
        }
        for buf in [&data[..], &d[..]] {
            if let Ok(h) = Ipv4Header::parse(buf) {
                prop_assert!(20 <= h.header_len && h.header_len <= h.total_len && h.total_len <= buf.len());
                let _ = h.ports(buf);
            }
            if let Ok(h) = Ipv4Header::parse_truncated(buf) {
                prop_assert!(20 <= h.header_len && h.header_len <= buf.len());
                let _ = h.ports(buf);
            }
            if let Ok(h) = Ipv6Header::parse(buf) {
                prop_assert!(h.total_len() <= buf.len());
            }
            let _ = Ipv6Header::parse_truncated(buf);
        }
    }

    #[test]
    fn generated_packets_parse(
        v6_packet in any::<bool>(),
        protocol in prop::sample::select(vec![proto::TCP, proto::UDP, proto::SCTP, proto::ESP]),
        sport in any::<u16>(),
        dport in any::<u16>(),
        payload in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut l4 = Vec::new();
        l4.extend_from_slice(&sport.to_be_bytes());
        l4.extend_from_slice(&dport.to_be_bytes());
        l4.extend_from_slice(&payload);
        let pkt = if v6_packet { v6(protocol, &[], &l4) } else { v4(protocol, 0, &l4) };
        let info = PacketInfo::parse(&pkt).unwrap();
        prop_assert_eq!(info.len, pkt.len());
        prop_assert_eq!(info.protocol, protocol);
        let expect = (protocol != proto::ESP).then_some((sport, dport));
        prop_assert_eq!(info.ports(), expect);
        prop_assert_eq!(info.src_port.zip(info.dst_port), expect);
        // Every strict prefix is an error: the claimed length no longer fits.
        for n in 0..pkt.len() {
            prop_assert!(PacketInfo::parse(&pkt[..n]).is_err());
        }
    }
}
