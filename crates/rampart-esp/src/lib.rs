//! Sans-IO ESP engine (RFC 4303, tunnel mode): [`OutboundSa::seal`] and [`InboundSa::open`]
//! work in place in caller-owned buffers, allocate nothing per packet and never panic on input.
//!
//! Packet layout (`seal` output, `open` input):
//! ```text
//! SPI(4) | seq low(4) | IV(8 AEAD, 16 CBC) | payload | padding 1,2,3.. | pad len | next hdr | ICV(16)
//! ```
//! ESN (RFC 4303 2.2.1): 64-bit counters; the high half is never on the wire but is covered by
//! the ICV (AEAD AAD, or the CBC integrity trailer), and the receiver infers it (Appendix A).

mod crypt;
mod error;
mod inbound;
mod lifetime;
mod outbound;
mod replay;
mod sa;
mod state;
mod stats;
pub mod udp_encap;

#[cfg(test)]
mod tests;

pub use crypt::{CryptJob, CryptRunner, CryptTask, Direction, Inline};
pub use error::{OpenError, SaError, SealError};
pub use inbound::{InboundSa, Opened};
pub use lifetime::{Lifetime, LifetimeState};
pub use outbound::OutboundSa;
pub use replay::{DEFAULT_REPLAY_WINDOW, MAX_REPLAY_WINDOW};
pub use sa::SaConfig;
pub use state::{InboundState, OutboundState};
pub use stats::SaStats;

/// Largest headroom `seal` needs before the payload: ESP header + largest IV.
pub const MAX_HEADROOM: usize = 8 + 16;
/// Largest tailroom `seal` needs after the payload: padding + pad length/next header + ICV.
pub const MAX_TAILROOM: usize = 15 + 2 + 16;

/// Next Header values for tunnel mode.
pub mod next_header {
    pub const IPV4: u8 = 4;
    pub const IPV6: u8 = 41;
    /// Dummy packet (RFC 4303 2.6): the receiver discards it.
    pub const NO_NEXT_HEADER: u8 = 59;
}
