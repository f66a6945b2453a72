//! The entry-point side: answers authenticated probes from known satellites, rate-limited.

use std::net::SocketAddr;
use std::time::Instant;

use crate::config::ResponderConfig;
use crate::probe::ProbeError;
use crate::status::ResponderStatus;

/// Answers probes. Invariant: a reply is written only for a request whose MAC verified under
/// the key of the satellite at the request's source address, within that source's and the
/// global rate limit; it is exactly as long as the request.
pub struct Responder {
    _config: ResponderConfig,
}

impl Responder {
    pub fn new(config: ResponderConfig) -> Responder {
        let _ = config;
        todo!("H1")
    }

    /// Replaces who may probe us (configuration reload); counters stay.
    pub fn set_config(&mut self, config: ResponderConfig) {
        let _ = config;
        todo!("H1")
    }

    /// A request from `from`: on success the reply is in `out[..n]` (send it back to `from`
    /// from the socket it came in on). Every refusal is counted.
    pub fn handle_request(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
        out: &mut [u8],
    ) -> Result<usize, ProbeError> {
        let _ = (now, from, data, out);
        todo!("H1")
    }

    pub fn status(&self) -> ResponderStatus {
        todo!("H1")
    }
}
