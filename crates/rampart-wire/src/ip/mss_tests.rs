use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;
use crate::checksum::{fold, pseudo_header, sum};

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

/// A TCP header with `options` (padded with EOL to a multiple of 4), `flags` and a payload.
fn tcp(flags: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut opts = options.to_vec();
    while !opts.len().is_multiple_of(4) {
        opts.push(0);
    }
    let mut t = vec![0u8; 20];
    t[..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&443u16.to_be_bytes());
    t[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    t[12] = (((20 + opts.len()) / 4) << 4) as u8;
    t[13] = flags;
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    t.extend_from_slice(&opts);
    t.extend_from_slice(payload);
    t
}

fn v4(tcp: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&((20 + tcp.len()) as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&Ipv4Addr::new(192, 0, 2, 1).octets());
    p[16..20].copy_from_slice(&Ipv4Addr::new(198, 51, 100, 7).octets());
    let c = checksum::checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(tcp);
    set_tcp_checksum(&mut p, 20);
    p
}

/// IPv6 with a hop-by-hop extension header (8 bytes) before TCP when `ext`.
fn v6(tcp: &[u8], ext: bool) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    let ext_len = if ext { 8 } else { 0 };
    p[4..6].copy_from_slice(&((ext_len + tcp.len()) as u16).to_be_bytes());
    p[6] = if ext { 0 } else { 6 };
    p[7] = 64;
    p[8..24].copy_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
    p[24..40].copy_from_slice(&"2001:db8:9::2".parse::<Ipv6Addr>().unwrap().octets());
    if ext {
        p.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]); // next TCP, PadN
    }
    p.extend_from_slice(tcp);
    set_tcp_checksum(&mut p, 40 + ext_len);
    p
}

fn addrs(p: &[u8]) -> &[u8] {
    if p[0] >> 4 == 4 {
        &p[12..20]
    } else {
        &p[8..40]
    }
}

fn set_tcp_checksum(p: &mut [u8], off: usize) {
    p[off + 16..off + 18].fill(0);
    let s = sum(pseudo_header(addrs(p), 6, p.len() - off), &p[off..]);
    let c = checksum::finish(s);
    p[off + 16..off + 18].copy_from_slice(&c.to_be_bytes());
}

fn tcp_checksum_ok(p: &[u8], off: usize) -> bool {
    fold(sum(pseudo_header(addrs(p), 6, p.len() - off), &p[off..])) == 0xffff
}

/// Offset of the MSS value in the packet (the option walk over the header's options only).
fn mss_at(p: &[u8], off: usize) -> usize {
    let doff = usize::from(p[off + 12] >> 4) * 4;
    find_mss(&p[off + 20..off + doff]).unwrap().unwrap() + off + 22
}

fn mss_opt(mss: u16) -> [u8; 4] {
    let [hi, lo] = mss.to_be_bytes();
    [2, 4, hi, lo]
}

/// A Linux-like SYN option list: MSS, SACK permitted, timestamps, NOP, window scale.
fn linux_opts(mss: u16) -> Vec<u8> {
    let mut o = mss_opt(mss).to_vec();
    o.extend_from_slice(&[4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 7]);
    o
}

/// Clamps and checks: the outcome, the checksum, and that only the MSS value and checksum moved.
fn check(mut p: Vec<u8>, off: usize, limit: u16, want: MssOutcome) {
    let before = p.clone();
    assert_eq!(clamp_mss(&mut p, limit), Ok(want));
    assert!(tcp_checksum_ok(&p, off), "checksum after {want:?}");
    let changed: Vec<usize> = (0..p.len()).filter(|&i| p[i] != before[i]).collect();
    match want {
        MssOutcome::Clamped { to, .. } => {
            let mss_at = mss_at(&p, off);
            assert_eq!(u16::from_be_bytes([p[mss_at], p[mss_at + 1]]), to);
            assert!(changed
                .iter()
                .all(|&i| i == mss_at || i == mss_at + 1 || i == off + 16 || i == off + 17));
        }
        _ => assert!(changed.is_empty(), "untouched"),
    }
}

#[test]
fn ipv4_syn_and_syn_ack() {
    for flags in [SYN, SYN | ACK] {
        let clamped = MssOutcome::Clamped {
            from: 1460,
            to: 1360,
        };
        check(v4(&tcp(flags, &mss_opt(1460), &[])), 20, 1360, clamped);
        check(v4(&tcp(flags, &linux_opts(1460), &[])), 20, 1360, clamped);
        check(
            v4(&tcp(flags, &linux_opts(1460), b"tfo data")),
            20,
            1360,
            clamped,
        );
        check(
            v4(&tcp(flags, &linux_opts(1360), &[])),
            20,
            1360,
            MssOutcome::Within { mss: 1360 },
        );
        check(
            v4(&tcp(flags, &linux_opts(536), &[])),
            20,
            1360,
            MssOutcome::Within { mss: 536 },
        );
        check(v4(&tcp(flags, &[], &[])), 20, 1360, MssOutcome::NoMss);
        check(
            v4(&tcp(flags, &[1, 1, 4, 2, 1, 3, 3, 7], &[])),
            20,
            1360,
            MssOutcome::NoMss,
        );
    }
}

#[test]
fn ipv6_syn_and_syn_ack_with_and_without_extension_header() {
    for ext in [false, true] {
        let off = if ext { 48 } else { 40 };
        for flags in [SYN, SYN | ACK] {
            let clamped = MssOutcome::Clamped {
                from: 1440,
                to: 1220,
            };
            check(
                v6(&tcp(flags, &mss_opt(1440), &[]), ext),
                off,
                1220,
                clamped,
            );
            check(
                v6(&tcp(flags, &linux_opts(1440), &[]), ext),
                off,
                1220,
                clamped,
            );
            check(v6(&tcp(flags, &[], &[]), ext), off, 1220, MssOutcome::NoMss);
            check(
                v6(&tcp(flags, &linux_opts(1200), &[]), ext),
                off,
                1220,
                MssOutcome::Within { mss: 1200 },
            );
        }
    }
}

#[test]
fn mss_after_other_options_at_odd_and_even_offsets() {
    // One NOP first: the MSS value sits at an odd offset and straddles two checksum words.
    for lead in 0..8usize {
        let mut opts = vec![1u8; lead];
        opts.extend_from_slice(&mss_opt(0xfff1));
        opts.extend_from_slice(&[4, 2]);
        for p in [
            v4(&tcp(SYN, &opts, b"x")),
            v6(&tcp(SYN, &opts, b"xy"), false),
        ] {
            let off = if p[0] >> 4 == 4 { 20 } else { 40 };
            check(
                p,
                off,
                1300,
                MssOutcome::Clamped {
                    from: 0xfff1,
                    to: 1300,
                },
            );
        }
    }
    // Window scale and timestamps before the MSS.
    let mut opts = vec![1, 3, 3, 7, 8, 10, 9, 9, 9, 9, 0, 0, 0, 0, 1];
    opts.extend_from_slice(&mss_opt(9000));
    check(
        v4(&tcp(SYN, &opts, &[])),
        20,
        1400,
        MssOutcome::Clamped {
            from: 9000,
            to: 1400,
        },
    );
}

#[test]
fn checksum_values_that_wrap() {
    // Sweep old MSS values and limits so the incremental update crosses carries and the
    // 0x0000/0xffff representations.
    for from in [0xffffu16, 0x8000, 1461, 1000] {
        for limit in [0u16, 1, 999, 0x7fff] {
            if from <= limit {
                continue;
            }
            for payload in [&b""[..], b"\xff\xff", b"\x00\x01\x02"] {
                let p = v4(&tcp(SYN | ACK, &linux_opts(from), payload));
                check(p, 20, limit, MssOutcome::Clamped { from, to: limit });
            }
        }
    }
}

#[test]
fn not_syn_not_tcp_and_fragments() {
    for flags in [ACK, 0x18, 0x11, 0x04] {
        check(
            v4(&tcp(flags, &linux_opts(1460), &[])),
            20,
            1000,
            MssOutcome::NotSyn,
        );
        check(
            v6(&tcp(flags, &linux_opts(1460), &[]), true),
            48,
            1000,
            MssOutcome::NotSyn,
        );
    }
    // UDP.
    let mut udp = v4(&tcp(SYN, &mss_opt(1460), &[]));
    udp[9] = 17;
    let before = udp.clone();
    assert_eq!(clamp_mss(&mut udp, 1000), Ok(MssOutcome::NotTcp));
    assert_eq!(udp, before);
    // A non-first IPv4 fragment carries no TCP header.
    let mut frag = v4(&tcp(SYN, &mss_opt(1460), &[]));
    frag[6..8].copy_from_slice(&0x0003u16.to_be_bytes());
    let before = frag.clone();
    assert_eq!(clamp_mss(&mut frag, 1000), Ok(MssOutcome::NotTcp));
    assert_eq!(frag, before);
    // A first fragment (more fragments) is clamped: the header and checksum field are in it.
    let mut first = v4(&tcp(SYN, &mss_opt(1460), &[]));
    first[6] = 0x20;
    assert!(matches!(
        clamp_mss(&mut first, 1000),
        Ok(MssOutcome::Clamped { .. })
    ));
}

#[test]
fn malformed_is_untouched_and_typed() {
    let cases: &[(&[u8], usize)] = &[
        (&[1, 1, 2, 4], 2),                   // MSS cut by the header end
        (&[2, 3, 5, 0xb4], 0),                // MSS length 3
        (&[2, 6, 5, 0xb4, 0, 0], 0),          // MSS length 6
        (&[1, 4, 0], 1),                      // option length 0
        (&[1, 1, 8, 1], 2),                   // option length 1
        (&[1, 1, 1, 8, 10, 0, 0, 0], 3),      // timestamps running past the header
        (&[2, 4, 5, 0xb4, 2, 4, 5, 0xb4], 4), // two MSS options
        (&[1, 1, 1, 3], 3),                   // length byte missing at the very end
    ];
    for &(opts, at) in cases {
        for mut p in [v4(&tcp(SYN, opts, &[])), v6(&tcp(SYN, opts, &[]), true)] {
            let before = p.clone();
            assert_eq!(
                clamp_mss(&mut p, 1000),
                Err(MssError::Options { at }),
                "options {opts:?}"
            );
            assert_eq!(p, before);
        }
    }
    // EOL ends the walk: garbage after it is not read.
    check(
        v4(&tcp(SYN, &[0, 2, 9, 9], &[])),
        20,
        1000,
        MssOutcome::NoMss,
    );
    check(
        v4(&tcp(SYN, &[2, 4, 5, 0xb4, 0, 0xee, 0, 0], &[])),
        20,
        1000,
        MssOutcome::Clamped {
            from: 1460,
            to: 1000,
        },
    );
}

#[test]
fn bad_tcp_headers_and_ip() {
    // Data offset below 5 words.
    let mut p = v4(&tcp(SYN, &mss_opt(1460), &[]));
    p[20 + 12] = 0x40;
    assert_eq!(clamp_mss(&mut p, 1000), Err(MssError::TcpHeader));
    // Data offset past the packet.
    let mut p = v4(&tcp(SYN, &mss_opt(1460), &[]));
    p[20 + 12] = 0xf0;
    assert_eq!(clamp_mss(&mut p, 1000), Err(MssError::TcpHeader));
    // A TCP header cut short: IP length says 20 + 19.
    let mut p = v4(&tcp(SYN, &[], &[]));
    p.truncate(39);
    p[2..4].copy_from_slice(&39u16.to_be_bytes());
    assert_eq!(clamp_mss(&mut p, 1000), Err(MssError::TcpHeader));
    // Not IP at all.
    assert_eq!(
        clamp_mss(&mut [], 1000),
        Err(MssError::Ip(ParseError::Empty))
    );
    assert_eq!(
        clamp_mss(&mut [0x50; 40], 1000),
        Err(MssError::Ip(ParseError::Version(5)))
    );
}

#[test]
fn trailing_bytes_after_the_packet_are_ignored() {
    let mut p = v4(&tcp(SYN, &linux_opts(1460), &[]));
    let len = p.len();
    p.extend_from_slice(&[0xaa; 6]);
    assert_eq!(
        clamp_mss(&mut p, 1000),
        Ok(MssOutcome::Clamped {
            from: 1460,
            to: 1000
        })
    );
    assert!(tcp_checksum_ok(&p[..len], 20));
    assert_eq!(&p[len..], &[0xaa; 6]);
}

#[test]
fn mss_for_mtu_values() {
    assert_eq!(mss_for_mtu(1500, false), 1460);
    assert_eq!(mss_for_mtu(1500, true), 1440);
    assert_eq!(mss_for_mtu(1280, true), 1220);
    assert_eq!(mss_for_mtu(30, false), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary well-formed option lists around an MSS, any values, any payload: the result
    /// always has a valid checksum and the MSS is `min(old, limit)`.
    #[test]
    fn clamp_keeps_the_checksum_valid(
        before in prop::collection::vec(prop_oneof![Just(vec![1u8]), Just(vec![4, 2]), Just(vec![1, 3, 3, 7])], 0..4),
        mss in any::<u16>(),
        limit in any::<u16>(),
        payload in prop::collection::vec(any::<u8>(), 0..64),
        ipv6 in any::<bool>(),
        ack in any::<bool>(),
    ) {
        let mut opts: Vec<u8> = before.concat();
        opts.extend_from_slice(&mss_opt(mss));
        let t = tcp(if ack { SYN | ACK } else { SYN }, &opts, &payload);
        let (mut p, off) = if ipv6 { (v6(&t, false), 40) } else { (v4(&t), 20) };
        let out = clamp_mss(&mut p, limit).unwrap();
        prop_assert!(tcp_checksum_ok(&p, off));
        let at = mss_at(&p, off);
        prop_assert_eq!(u16::from_be_bytes([p[at], p[at + 1]]), mss.min(limit));
        if mss > limit {
            prop_assert_eq!(out, MssOutcome::Clamped { from: mss, to: limit });
        } else {
            prop_assert_eq!(out, MssOutcome::Within { mss });
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(mut data in prop::collection::vec(any::<u8>(), 0..120)) {
        let before = data.clone();
        if !matches!(clamp_mss(&mut data, 1000), Ok(MssOutcome::Clamped { .. })) {
            prop_assert_eq!(data, before);
        }
    }
}
