//! The one error type of this crate.

/// Why a cryptographic operation was refused or failed.
///
/// Variants carry no secret material; `AuthenticationFailed` is deliberately uninformative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// A key had the wrong length for its algorithm.
    #[error("{what} key is {got} bytes, expected {expected}")]
    KeyLength {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    /// An IV, ICV or data length does not fit the algorithm.
    #[error("{what} is {got} bytes, expected {expected}")]
    Length {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    /// CBC data that is not a whole number of cipher blocks.
    #[error("data of {len} bytes is not a multiple of the {block}-byte block")]
    NotBlockAligned { len: usize, block: usize },
    /// The integrity check (AEAD tag or HMAC) did not match.
    #[error("integrity check failed")]
    AuthenticationFailed,
    /// The peer's key-exchange value is malformed or not on the curve.
    #[error("invalid peer public value for {group}")]
    InvalidPublicKey { group: crate::DhGroup },
    /// The key agreement produced no usable secret (e.g. an X25519 low-order point).
    #[error("key agreement failed for {group}")]
    AgreementFailed { group: crate::DhGroup },
    /// The requested output length is out of range (prf+ is limited to 255 blocks).
    #[error("requested {requested} bytes, at most {max} allowed")]
    OutputTooLong { requested: usize, max: usize },
    /// The crypto library refused an operation it should have accepted.
    #[error("crypto library failure in {0}")]
    Library(&'static str),
}
