//! RFC 3948 demultiplexing of datagrams on the NAT-T port: IKE (non-ESP marker), ESP, keepalive.

use std::ops::Range;

/// The NAT keepalive datagram (RFC 3948 2.3).
pub const KEEPALIVE: [u8; 1] = [0xff];
/// Non-ESP marker that precedes IKE messages on the NAT-T port (RFC 3948 2.2).
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// What a datagram received on the NAT-T port holds. Ranges index the classified slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    /// An IKE message, without the 4-byte non-ESP marker.
    Ike(Range<usize>),
    /// An ESP packet (starting at the SPI).
    Esp(Range<usize>),
    Keepalive,
    Invalid,
}

/// Classifies one UDP payload. Never panics.
///
/// A zero first word is the non-ESP marker (no ESP SA has SPI 0); anything else long enough to
/// hold an ESP header (SPI + sequence number) is ESP.
pub fn classify(datagram: &[u8]) -> Classified {
    match datagram {
        [0xff] => Classified::Keepalive,
        [0, 0, 0, 0, rest @ ..] if !rest.is_empty() => Classified::Ike(4..datagram.len()),
        [0, 0, 0, 0, ..] => Classified::Invalid,
        _ if datagram.len() >= 8 => Classified::Esp(0..datagram.len()),
        _ => Classified::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(classify(&KEEPALIVE), Classified::Keepalive);
        assert_eq!(classify(&[0, 0, 0, 0, 1, 2, 3]), Classified::Ike(4..7));
        assert_eq!(classify(&[0, 0, 0, 0]), Classified::Invalid);
        assert_eq!(classify(&[0, 0, 0, 1, 0, 0, 0, 1]), Classified::Esp(0..8));
        assert_eq!(classify(&[1, 2, 3, 4, 5, 6, 7]), Classified::Invalid);
        assert_eq!(classify(&[]), Classified::Invalid);
        assert_eq!(classify(&[0xfe]), Classified::Invalid);
        assert_eq!(classify(&[0xff, 0xff]), Classified::Invalid);
    }
}
