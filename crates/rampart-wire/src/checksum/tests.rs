use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

/// The textbook RFC 1071 sum, one big-endian word at a time: the reference the fast loop is
/// checked against.
fn textbook(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.concat();
    let mut acc: u64 = 0;
    for pair in bytes.chunks(2) {
        acc += (u64::from(pair[0]) << 8) | u64::from(*pair.get(1).unwrap_or(&0));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

#[test]
fn rfc1071_example() {
    // RFC 1071 section 3: the sum of 0001 f203 f4f5 f6f7 is ddf2.
    let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
    assert_eq!(fold(sum(0, &data)), 0xddf2);
    assert_eq!(checksum(&data), !0xddf2);
}

#[test]
fn ipv4_header_checksum() {
    let mut hdr = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];
    let c = checksum(&hdr);
    assert_eq!(c, 0xb861);
    hdr[10..12].copy_from_slice(&c.to_be_bytes());
    assert_eq!(fold(sum(0, &hdr)), 0xffff);
}

#[test]
fn odd_lengths_and_empty() {
    assert_eq!(sum(0, &[]), 0);
    assert_eq!(fold(sum(0, &[0xab])), 0xab00);
    assert_eq!(fold(sum(7, &[0x01, 0x02, 0x03])), 0x0102 + 0x0300 + 7);
}

#[test]
fn pseudo_headers_match_their_bytes() {
    let (s4, d4) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 7));
    let mut p4 = [s4.octets(), d4.octets()].concat();
    p4.extend_from_slice(&[0, 17, 0x05, 0xdc]);
    assert_eq!(fold(pseudo_header_v4(s4, d4, 17, 1500)), textbook(&[&p4]));
    assert_eq!(fold(pseudo_header(&p4[..8], 17, 1500)), textbook(&[&p4]));

    let s6: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let d6: Ipv6Addr = "2001:db8:ffff::2".parse().unwrap();
    let len = 70_000usize; // a jumbogram length needs the 32-bit field
    let mut p6 = [s6.octets(), d6.octets()].concat();
    p6.extend_from_slice(&(len as u32).to_be_bytes());
    p6.extend_from_slice(&[0, 0, 0, 6]);
    assert_eq!(fold(pseudo_header_v6(s6, d6, 6, len)), textbook(&[&p6]));
    assert_eq!(fold(pseudo_header(&p6[..32], 6, len)), textbook(&[&p6]));
}

#[test]
fn update_word_is_update_of_two_bytes() {
    let c = update_word(0x1234, 0xc0a8, 0x0a00);
    assert_eq!(c, update(0x1234, &[0xc0, 0xa8], &[0x0a, 0x00]));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The word-at-a-time sum equals the textbook sum for any length (odd ones included),
    /// any starting accumulator, and any split of the data into parts.
    #[test]
    fn sum_matches_the_textbook_sum(
        data in proptest::collection::vec(any::<u8>(), 0..3000),
        start in 0u64..0x1_0000,
        split in any::<prop::sample::Index>(),
    ) {
        let want = fold(u64::from(textbook(&[&data])) + start);
        prop_assert_eq!(fold(sum(start, &data)), want);
        // Parts summed one after another, the first of even length.
        let at = split.index(data.len() + 1) & !1;
        prop_assert_eq!(fold(sum(sum(start, &data[..at]), &data[at..])), want);
    }

    /// Changing some words and updating the checksum incrementally gives the checksum
    /// computed from scratch (up to the two representations of zero).
    #[test]
    fn incremental_update_equals_recompute(
        data in proptest::collection::vec(any::<u8>(), 2..600),
        at in any::<prop::sample::Index>(),
        new in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let at = at.index(data.len()) & !1;
        let end = (at + new.len()).min(data.len());
        let new = &new[..end - at];
        let before = checksum(&data);
        let mut changed = data.clone();
        changed[at..end].copy_from_slice(new);
        let incremental = update(before, &data[at..end], new);
        let recomputed = checksum(&changed);
        prop_assert!(
            incremental == recomputed || (incremental | recomputed == 0xffff && incremental & recomputed == 0),
            "incremental {:04x} recomputed {:04x}", incremental, recomputed
        );
        if data.iter().any(|&b| b != 0) && changed.iter().any(|&b| b != 0) {
            prop_assert_eq!(incremental, recomputed);
            // The updated field verifies.
            if changed.len() % 2 == 0 {
                let mut with = changed.clone();
                with.extend_from_slice(&incremental.to_be_bytes());
                prop_assert_eq!(fold(sum(0, &with)), 0xffff);
            }
        }
    }
}
