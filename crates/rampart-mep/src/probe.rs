//! The probe datagram codec (wire format in docs/mep.md). Requests and replies have the same
//! size, so a reply never amplifies a (spoofed) request.
//!
//! ```text
//!  0      4   5    6        8                24               40
//!  +------+---+----+--------+----------------+----------------+
//!  | RMEP | 1 |kind| 0 0    | nonce (16)     | MAC (16)       |
//!  +------+---+----+--------+----------------+----------------+
//! ```
//!
//! `kind` is 1 (request) or 2 (reply); the MAC is the first 16 bytes of
//! HMAC-SHA256(probe key, bytes 0..24). A reply echoes the request's nonce. Every field,
//! the kind included, is under the MAC, so a request cannot be turned into a reply.

use aws_lc_rs::{constant_time, hmac};
use thiserror::Error;

/// Largest probe datagram (payload of the UDP datagram).
pub const MAX_PROBE_LEN: usize = 64;

/// Length of every version-1 probe datagram, request or reply. Any other length is
/// malformed.
pub const PROBE_LEN: usize = 40;

const MAGIC: &[u8; 4] = b"RMEP";
const VERSION: u8 = 1;
const KIND_REQUEST: u8 = 1;
const KIND_REPLY: u8 = 2;
/// Bytes covered by the MAC (everything before it).
const MACED_LEN: usize = 24;
const NONCE_AT: usize = 8;
pub(crate) const NONCE_LEN: usize = 16;
const MAC_LEN: usize = 16;

const _: () = assert!(MACED_LEN + MAC_LEN == PROBE_LEN && PROBE_LEN <= MAX_PROBE_LEN);

/// A probe nonce: chosen at random by the satellite, echoed by the responder.
pub(crate) type Nonce = [u8; NONCE_LEN];

/// Request (satellite to entry point) or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Request,
    Reply,
}

impl ProbeKind {
    fn byte(self) -> u8 {
        match self {
            ProbeKind::Request => KIND_REQUEST,
            ProbeKind::Reply => KIND_REPLY,
        }
    }
}

/// Why a probe datagram was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ProbeError {
    #[error("malformed probe (length, magic, version or kind)")]
    Malformed,
    #[error("probe authentication failed (wrong probe key, or forged)")]
    Forged,
    #[error("reply to no outstanding probe (replayed or too late)")]
    Replayed,
    #[error("probe from an unknown address")]
    UnknownSource,
    #[error("probe over the rate limit")]
    RateLimited,
}

/// The kind of a probe datagram, without authenticating it: lets one socket serve both the
/// satellite (replies) and the responder (requests). `None` unless the datagram has the
/// length, magic, version, kind and reserved bytes of a version-1 probe.
pub fn peek_kind(data: &[u8]) -> Option<ProbeKind> {
    if data.len() != PROBE_LEN || &data[..4] != MAGIC || data[4] != VERSION || data[6..8] != [0, 0]
    {
        return None;
    }
    match data[5] {
        KIND_REQUEST => Some(ProbeKind::Request),
        KIND_REPLY => Some(ProbeKind::Reply),
        _ => None,
    }
}

/// Writes a probe of `kind` carrying `nonce` into `out[..PROBE_LEN]`, MACed with `key`;
/// returns [`PROBE_LEN`].
///
/// # Panics
/// If `out` is shorter than [`PROBE_LEN`] (a buffer of [`MAX_PROBE_LEN`] always suffices).
pub(crate) fn encode(key: &hmac::Key, kind: ProbeKind, nonce: &Nonce, out: &mut [u8]) -> usize {
    assert!(
        out.len() >= PROBE_LEN,
        "probe buffer of {} bytes, need {PROBE_LEN}",
        out.len()
    );
    let out = &mut out[..PROBE_LEN];
    out[..4].copy_from_slice(MAGIC);
    out[4] = VERSION;
    out[5] = kind.byte();
    out[6..8].fill(0);
    out[NONCE_AT..MACED_LEN].copy_from_slice(nonce);
    let tag = hmac::sign(key, &out[..MACED_LEN]);
    out[MACED_LEN..].copy_from_slice(&tag.as_ref()[..MAC_LEN]);
    PROBE_LEN
}

/// The nonce of a datagram that is a well-formed probe of kind `want` ([`ProbeError::Malformed`]
/// otherwise). Does not authenticate: follow with [`verify`].
pub(crate) fn parse(data: &[u8], want: ProbeKind) -> Result<Nonce, ProbeError> {
    if peek_kind(data) != Some(want) {
        return Err(ProbeError::Malformed);
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&data[NONCE_AT..MACED_LEN]);
    Ok(nonce)
}

/// Whether the MAC of a probe that [`parse`] accepted verifies under `key` (compared in
/// constant time).
pub(crate) fn verify(key: &hmac::Key, data: &[u8]) -> bool {
    if data.len() != PROBE_LEN {
        return false;
    }
    let tag = hmac::sign(key, &data[..MACED_LEN]);
    constant_time::verify_slices_are_equal(&tag.as_ref()[..MAC_LEN], &data[MACED_LEN..]).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProbeKey;

    fn key(s: &[u8]) -> hmac::Key {
        ProbeKey::derive(s).hmac_key()
    }

    #[test]
    fn round_trip() {
        let k = key(b"probe secret one");
        let nonce = [7u8; NONCE_LEN];
        for kind in [ProbeKind::Request, ProbeKind::Reply] {
            let mut buf = [0u8; MAX_PROBE_LEN];
            let n = encode(&k, kind, &nonce, &mut buf);
            assert_eq!(n, PROBE_LEN);
            let dg = &buf[..n];
            assert_eq!(&dg[..8], &[b'R', b'M', b'E', b'P', 1, kind.byte(), 0, 0]);
            assert_eq!(peek_kind(dg), Some(kind));
            assert_eq!(parse(dg, kind), Ok(nonce));
            assert!(verify(&k, dg));
            let other = match kind {
                ProbeKind::Request => ProbeKind::Reply,
                ProbeKind::Reply => ProbeKind::Request,
            };
            assert_eq!(parse(dg, other), Err(ProbeError::Malformed));
        }
    }

    #[test]
    fn wrong_key_and_every_flipped_bit_fail() {
        let k = key(b"probe secret one");
        let mut buf = [0u8; PROBE_LEN];
        encode(&k, ProbeKind::Reply, &[1; NONCE_LEN], &mut buf);
        assert!(!verify(&key(b"probe secret two"), &buf));
        for bit in 0..PROBE_LEN * 8 {
            let mut bad = buf;
            bad[bit / 8] ^= 1 << (bit % 8);
            let parsed = parse(&bad, ProbeKind::Reply);
            // Header bits make it malformed; nonce and MAC bits make it forged.
            assert!(parsed.is_err() || !verify(&k, &bad), "bit {bit}");
            if bit >= NONCE_AT * 8 {
                assert!(parsed.is_ok() && !verify(&k, &bad), "bit {bit}");
            }
        }
    }

    #[test]
    fn request_cannot_be_reflected_as_reply() {
        let k = key(b"probe secret one");
        let mut buf = [0u8; PROBE_LEN];
        encode(&k, ProbeKind::Request, &[3; NONCE_LEN], &mut buf);
        buf[5] = KIND_REPLY;
        assert_eq!(parse(&buf, ProbeKind::Reply), Ok([3; NONCE_LEN]));
        assert!(!verify(&k, &buf), "the kind byte is under the MAC");
    }

    #[test]
    fn lengths_other_than_probe_len_are_malformed() {
        let k = key(b"probe secret one");
        let mut buf = [0u8; MAX_PROBE_LEN];
        encode(&k, ProbeKind::Request, &[9; NONCE_LEN], &mut buf);
        for len in (0..PROBE_LEN).chain(PROBE_LEN + 1..=MAX_PROBE_LEN) {
            assert_eq!(peek_kind(&buf[..len]), None, "{len}");
            assert_eq!(
                parse(&buf[..len], ProbeKind::Request),
                Err(ProbeError::Malformed)
            );
            assert!(!verify(&k, &buf[..len]));
        }
        for (at, v) in [(0, b'X'), (4, 2), (5, 0), (5, 3), (6, 1), (7, 0x80)] {
            let mut bad = buf;
            bad[at] = v;
            assert_eq!(peek_kind(&bad[..PROBE_LEN]), None, "byte {at} = {v}");
        }
    }

    #[test]
    #[should_panic(expected = "probe buffer")]
    fn short_output_buffer_is_a_caller_bug() {
        encode(
            &key(b"k"),
            ProbeKind::Request,
            &[0; NONCE_LEN],
            &mut [0u8; 39],
        );
    }
}
