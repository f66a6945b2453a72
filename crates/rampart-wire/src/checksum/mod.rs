//! The internet checksum (RFC 1071): the ones'-complement sum of big-endian 16-bit words, its
//! pseudo-header for TCP/UDP/ICMPv6 over IPv4 and IPv6, and its incremental update (RFC 1624).
//!
//! Sums are carried unfolded in a `u64` so that parts (pseudo-header, header, payload) can be
//! added one after another; [`fold`] reduces to 16 bits and [`finish`] gives the value to
//! store in a checksum field. A buffer whose stored checksum is right sums to `0xffff`
//! (`fold(sum(0, buf)) == 0xffff`). Nothing here allocates or panics, whatever the input.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Adds `data` (big-endian 16-bit words, an odd last byte as the high byte of a word) to the
/// unfolded ones'-complement sum `acc`. Exact for any slice shorter than 8 GB when `acc` is
/// below 2^63.
///
/// The bulk is summed as native-endian 32-bit words into a 64-bit accumulator (a loop the
/// compiler vectorizes), folded, and swapped to network order: a ones'-complement sum of
/// byte-swapped words is the byte-swapped sum (RFC 1071 2(B)). The tail starts at an offset
/// that is a multiple of 4, so its words keep their big-endian alignment.
#[inline]
pub fn sum(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(4);
    let mut native: u64 = 0;
    for c in &mut chunks {
        native += u64::from(u32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
    }
    let folded = fold(native);
    acc += u64::from(if cfg!(target_endian = "little") {
        folded.swap_bytes()
    } else {
        folded
    });
    let mut rest = chunks.remainder();
    if rest.len() >= 2 {
        acc += u64::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
    }
    if let Some(&b) = rest.first() {
        acc += u64::from(b) << 8;
    }
    acc
}

/// Folds an unfolded ones'-complement sum to 16 bits (end-around carry), not complemented.
/// The result is 0 only when `acc` is 0.
#[inline]
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum field value for data whose unfolded sum is `acc` (the field itself summed as 0).
#[inline]
pub fn finish(acc: u64) -> u16 {
    !fold(acc)
}

/// The checksum of `data` alone (e.g. an IPv4 header with its checksum field zeroed, or an
/// ICMPv4 message).
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(0, data))
}

/// Sum of the pseudo-header of an upper-layer packet of `len` bytes with protocol (next
/// header) `protocol`, from `addrs`: the source address followed by the destination address,
/// as they lie in the IPv4 header (bytes 12..20) or the IPv6 header (bytes 8..40).
///
/// The IPv4 pseudo-header carries the length in 16 bits and the IPv6 one in 32 bits; both
/// sum to the same ones'-complement value, so one function serves both.
#[inline]
pub fn pseudo_header(addrs: &[u8], protocol: u8, len: usize) -> u64 {
    sum(u64::from(protocol) + len as u64, addrs)
}

/// [`pseudo_header`] for IPv4 addresses.
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: usize) -> u64 {
    let s = sum(u64::from(protocol) + len as u64, &src.octets());
    sum(s, &dst.octets())
}

/// [`pseudo_header`] for IPv6 addresses.
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, protocol: u8, len: usize) -> u64 {
    let s = sum(u64::from(protocol) + len as u64, &src.octets());
    sum(s, &dst.octets())
}

/// RFC 1624 eqn. 3: the checksum field value after the bytes `old` of the covered data became
/// `new`. `old` and `new` are the same words (equal length, starting at an even offset of the
/// covered data); words are paired up to the shorter slice, an odd last byte counts as the
/// high byte of a word, as in [`sum`].
///
/// When the covered data is not all zeros before and after, the result equals recomputing the
/// checksum from scratch; otherwise it may be the other representation of zero (0 for 0xffff).
pub fn update(check: u16, old: &[u8], new: &[u8]) -> u16 {
    let mut acc = u64::from(!check);
    let mut o = old.chunks(2);
    let mut n = new.chunks(2);
    while let (Some(o), Some(n)) = (o.next(), n.next()) {
        acc += u64::from(!word(o));
        acc += u64::from(word(n));
    }
    !fold(acc)
}

/// [`update`] for one 16-bit word that changed from `old` to `new`.
#[inline]
pub fn update_word(check: u16, old: u16, new: u16) -> u16 {
    !fold(u64::from(!check) + u64::from(!old) + u64::from(new))
}

/// A big-endian word from up to two bytes (a lone byte is the high byte).
fn word(b: &[u8]) -> u16 {
    match b {
        [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
        [hi] => u16::from(*hi) << 8,
        [] => 0,
    }
}

#[cfg(test)]
mod tests;
