//! Typed parse errors of the IKEv2 codec.

use thiserror::Error;

/// Why an IKEv2 message or payload chain was rejected.
///
/// Every variant corresponds to input that violates RFC 7296 framing; the codec never panics on
/// untrusted bytes. [`ParseError::UnsupportedCritical`] is kept apart so the engine can answer it
/// with an `UNSUPPORTED_CRITICAL_PAYLOAD` notification carrying `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// Fewer than 28 bytes: no complete IKE header.
    #[error("message too short for an IKE header: {0} bytes")]
    ShortHeader(usize),
    /// The major version is not 2 (the header itself parsed; answer with INVALID_MAJOR_VERSION).
    #[error("unsupported IKE major version {0}")]
    UnsupportedMajorVersion(u8),
    /// The header's Length field differs from the datagram length.
    #[error("header length {header} does not match the datagram length {actual}")]
    LengthMismatch { header: u32, actual: usize },
    /// A generic payload header does not fit in what remains of the chain.
    #[error("truncated payload header for payload type {kind}")]
    TruncatedPayloadHeader { kind: u8 },
    /// A payload's length is below its type's minimum or beyond the remaining bytes.
    #[error("payload type {kind} has bad length {length} ({remaining} bytes remaining)")]
    PayloadLength {
        kind: u8,
        length: u16,
        remaining: usize,
    },
    /// Bytes follow the last payload of the chain (next payload 0).
    #[error("{0} trailing bytes after the last payload")]
    TrailingBytes(usize),
    /// An SK or SKF payload is followed by another payload in the chain.
    #[error("encrypted payload (type {0}) is not the last payload")]
    EncryptedNotLast(u8),
    /// An unrecognised payload type with the critical bit set.
    #[error("unsupported critical payload type {kind}")]
    UnsupportedCritical { kind: u8 },
    /// A payload body is inconsistent with its own format (substructure lengths, counts, flags...).
    #[error("malformed payload type {kind}: {what}")]
    Malformed { kind: u8, what: &'static str },
}

impl ParseError {
    pub(crate) fn malformed(kind: u8, what: &'static str) -> ParseError {
        ParseError::Malformed { kind, what }
    }
}
