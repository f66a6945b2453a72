//! Typed errors of the ESP engine.

use rampart_crypto::CryptoError;

/// An SA could not be created from its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SaError {
    #[error("replay window of {0} packets: must be 0 (off) or a multiple of 64 up to 65536")]
    ReplayWindow(u32),
    #[error("SA keys: {0}")]
    Crypto(#[from] CryptoError),
}

/// Why `OutboundSa::seal` refused a packet. The buffer may have been partly written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("SA reached its hard lifetime")]
    Expired,
    #[error("sequence number space exhausted; the SA must be rekeyed")]
    SequenceExhausted,
    #[error("payload range {start}..{end} is not inside the {len}-byte buffer")]
    Range {
        start: usize,
        end: usize,
        len: usize,
    },
    #[error("{have} bytes of headroom before the payload, {need} needed")]
    Headroom { need: usize, have: usize },
    #[error("{have} bytes of tailroom after the payload, {need} needed")]
    Tailroom { need: usize, have: usize },
    #[error("encryption failed: {0}")]
    Crypto(#[from] CryptoError),
}

/// Why `InboundSa::open` dropped a packet.
///
/// Only [`OpenError::BadPadding`] happens after the packet was authenticated (and its sequence
/// number recorded); every other error leaves the SA state as it was, apart from the stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("packet range {start}..{end} is not inside the {len}-byte buffer")]
    Range {
        start: usize,
        end: usize,
        len: usize,
    },
    #[error("packet of {len} bytes is shorter than the {min}-byte minimum for this SA")]
    Truncated { len: usize, min: usize },
    #[error("ciphertext of {len} bytes is not a multiple of the {block}-byte block")]
    NotBlockAligned { len: usize, block: usize },
    #[error("packet is for SPI {got:#010x}, this SA is {expected:#010x}")]
    SpiMismatch { expected: u32, got: u32 },
    #[error("SA reached its hard lifetime")]
    Expired,
    #[error("sequence number is zero or outside the 64-bit space")]
    InvalidSequence,
    #[error("sequence number {0} was already received")]
    Replayed(u64),
    #[error("sequence number {0} is older than the replay window")]
    TooOld(u64),
    #[error("integrity check failed")]
    AuthenticationFailed,
    #[error("padding or pad length is invalid")]
    BadPadding,
}
