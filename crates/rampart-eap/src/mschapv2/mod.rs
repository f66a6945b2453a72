//! MS-CHAPv2 (RFC 2759) as carried in EAP Type 26, and the MPPE/MSK keys (RFC 3079).

pub mod algo;
pub mod keys;
mod wire;

pub use keys::msk;
pub use wire::{
    opcode, FailureMessage, MsChapV2, SuccessMessage, ERROR_AUTHENTICATION_FAILURE,
    RESPONSE_VALUE_LEN,
};
