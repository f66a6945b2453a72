//! Typed errors of the codec, the users file and the two state machines.

use thiserror::Error;

/// A packet that cannot be decoded. Decoding never panics; every malformed input maps here.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("packet truncated: need {need} octets, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("EAP length field {declared} is below 4 or beyond the {available} octets received")]
    BadLength { declared: usize, available: usize },
    #[error("unknown EAP code {0}")]
    UnknownCode(u8),
    #[error("EAP Request/Response without a Type")]
    MissingType,
    #[error("MS-Length {declared} does not match the {actual} octets of MS-CHAPv2 data")]
    MsLengthMismatch { declared: usize, actual: usize },
    #[error("MS-CHAPv2 Value-Size {got}, expected {expected}")]
    BadValueSize { expected: u8, got: u8 },
    #[error("unknown or unsupported MS-CHAPv2 OpCode {0}")]
    UnknownOpCode(u8),
    #[error("MS-CHAPv2 OpCode {opcode} is not valid in an EAP {code}")]
    WrongDirection { opcode: u8, code: &'static str },
    #[error("malformed MS-CHAPv2 {0} message")]
    BadMessage(&'static str),
}

/// A packet too large for the 16-bit EAP length field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("EAP packet of {0} octets exceeds 65535")]
pub struct TooLong(pub usize);

/// Problems with the users file.
#[derive(Debug, Error)]
pub enum CredentialsError {
    #[error("users file: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("nt_hash must be 32 hexadecimal digits")]
    BadHash,
    #[error("user {0:?} is listed twice")]
    Duplicate(String),
    #[error("user name must be 1..=255 octets, got {0}")]
    BadName(usize),
}
