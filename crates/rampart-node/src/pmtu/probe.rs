//! The path-MTU probe and its acknowledgement: the payload of an ESP packet with next header
//! [`NEXT_HEADER`] (253, RFC 3692 "use for experimentation and testing") on a CHILD SA.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     magic "RPMT" (0x52504d54)                 |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  kind (1, 2)  |   reserved 0  |     outer size (big endian)   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       probe id (big endian)                   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |            padding (probe only: zeros up to the size)         |
//! ```
//!
//! A probe (kind 1) is padded so that the whole outer IP packet (IP, UDP when encapsulated,
//! ESP) is at most `outer size` bytes; an ack (kind 2) is exactly [`HEADER_LEN`] bytes and
//! echoes the probe's size and id, so an ack never amplifies. Both travel only inside an
//! authenticated ESP packet of the CHILD SA: the receiver looks at them only after the SA
//! opened the packet.
//!
//! Invariant: [`parse`] is bounds-checked; any input gives a [`Message`] or a
//! [`ProbeError`], never a panic.

/// ESP next header of probe and ack payloads (RFC 3692 experimental value).
pub const NEXT_HEADER: u8 = 253;
/// `RPMT`.
pub const MAGIC: [u8; 4] = *b"RPMT";
/// Bytes of the header; also the whole length of an ack.
pub const HEADER_LEN: usize = 12;

const KIND_PROBE: u8 = 1;
const KIND_ACK: u8 = 2;

/// A parsed probe payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// "Does a packet of `size` outer bytes pass?" (the padding is not kept).
    Probe { id: u32, size: u16 },
    /// "Probe `id` of `size` arrived."
    Ack { id: u32, size: u16 },
}

/// Why a probe payload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("probe payload of {0} bytes is shorter than its {HEADER_LEN}-byte header")]
    Short(usize),
    #[error("probe payload without the RPMT magic")]
    Magic,
    #[error("unknown probe kind {0}")]
    Kind(u8),
    #[error("probe ack of {0} bytes (an ack is exactly {HEADER_LEN})")]
    AckLength(usize),
    #[error("probe of {len} payload bytes claims an outer size of only {size}")]
    Size { len: usize, size: u16 },
}

/// Parses the decrypted payload of a next-header-253 ESP packet.
pub fn parse(payload: &[u8]) -> Result<Message, ProbeError> {
    let Some(h) = payload.get(..HEADER_LEN) else {
        return Err(ProbeError::Short(payload.len()));
    };
    if h[..4] != MAGIC {
        return Err(ProbeError::Magic);
    }
    let size = u16::from_be_bytes([h[6], h[7]]);
    let id = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
    match h[4] {
        KIND_PROBE => {
            // The payload is inside the outer packet: a claim smaller than it is a lie.
            if payload.len() > usize::from(size) {
                return Err(ProbeError::Size {
                    len: payload.len(),
                    size,
                });
            }
            Ok(Message::Probe { id, size })
        }
        KIND_ACK if payload.len() == HEADER_LEN => Ok(Message::Ack { id, size }),
        KIND_ACK => Err(ProbeError::AckLength(payload.len())),
        kind => Err(ProbeError::Kind(kind)),
    }
}

fn header(out: &mut [u8], kind: u8, id: u32, size: u16) {
    out[..4].copy_from_slice(&MAGIC);
    out[4] = kind;
    out[5] = 0;
    out[6..8].copy_from_slice(&size.to_be_bytes());
    out[8..12].copy_from_slice(&id.to_be_bytes());
}

/// Writes a probe of outer size `size` into `out` (its whole length: header and zero
/// padding). Returns false when `out` is shorter than the header.
pub fn write_probe(out: &mut [u8], id: u32, size: u16) -> bool {
    if out.len() < HEADER_LEN {
        return false;
    }
    header(out, KIND_PROBE, id, size);
    out[HEADER_LEN..].fill(0);
    true
}

/// Writes the ack of probe `id` of `size` into `out[..HEADER_LEN]`. Returns false when `out`
/// is shorter than that.
pub fn write_ack(out: &mut [u8], id: u32, size: u16) -> bool {
    let Some(out) = out.get_mut(..HEADER_LEN) else {
        return false;
    };
    header(out, KIND_ACK, id, size);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let mut p = vec![0xffu8; 1400];
        assert!(write_probe(&mut p, 7, 1480));
        assert_eq!(parse(&p), Ok(Message::Probe { id: 7, size: 1480 }));
        assert!(p[HEADER_LEN..].iter().all(|b| *b == 0));
        let mut a = [0u8; HEADER_LEN];
        assert!(write_ack(&mut a, 7, 1480));
        assert_eq!(parse(&a), Ok(Message::Ack { id: 7, size: 1480 }));
    }

    #[test]
    fn refusals() {
        assert_eq!(parse(&[1, 2, 3]), Err(ProbeError::Short(3)));
        let mut p = vec![0u8; 100];
        write_probe(&mut p, 1, 1280);
        p[0] = b'X';
        assert_eq!(parse(&p), Err(ProbeError::Magic));
        write_probe(&mut p, 1, 50);
        assert_eq!(parse(&p), Err(ProbeError::Size { len: 100, size: 50 }));
        write_probe(&mut p, 1, 1280);
        p[4] = 9;
        assert_eq!(parse(&p), Err(ProbeError::Kind(9)));
        let mut a = [0u8; 20];
        write_ack(&mut a, 1, 1280);
        assert_eq!(parse(&a), Err(ProbeError::AckLength(20)));
        assert!(!write_ack(&mut [0u8; 4], 1, 1));
        assert!(!write_probe(&mut [0u8; 4], 1, 1));
    }

    proptest! {
        /// Any bytes parse or are refused; nothing panics, and an ack is always the header.
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64), magic in any::<bool>()) {
            let mut data = data;
            if magic && data.len() >= 4 {
                data[..4].copy_from_slice(&MAGIC);
            }
            if let Ok(Message::Ack { .. }) = parse(&data) {
                prop_assert_eq!(data.len(), HEADER_LEN);
            }
        }
    }
}
