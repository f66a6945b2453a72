//! Internal errors of message processing. They never leave the engine: a failed message is
//! logged and dropped (or answered with an error notify).

use rampart_crypto::CryptoError;
use rampart_wire::ike::ParseError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum IkeError {
    #[error("parse: {0}")]
    Parse(#[from] ParseError),
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    #[error("message too large")]
    TooLarge,
}
