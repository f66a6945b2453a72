//! The probe datagram codec (wire format in docs/mep.md). Requests and replies have the same
//! size, so a reply never amplifies a (spoofed) request.

use thiserror::Error;

/// Largest probe datagram (payload of the UDP datagram).
pub const MAX_PROBE_LEN: usize = 64;

/// Request (satellite to entry point) or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Request,
    Reply,
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
/// satellite (replies) and the responder (requests).
pub fn peek_kind(data: &[u8]) -> Option<ProbeKind> {
    let _ = data;
    todo!("H1")
}
