//! The satellite side of probing: one state machine per entry point (schedule, outstanding
//! nonces, timeout, misses, RTT estimate, up/down), owned by [`crate::Mep`].
//!
//! Rules (docs/mep.md): every entry point gets a probe every `interval` while it answers. A
//! probe unanswered after `max(timeout, 3 x srtt)` is a miss and is re-sent at once; after
//! `misses` consecutive misses the entry point is down (and is then probed every `interval`
//! again; one answered probe makes it up). A reply counts only if it carries the nonce of a
//! probe still outstanding to that entry point (at most `misses` outstanding nonces are
//! remembered) and its MAC verifies.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rampart_crypto::Rng;

use crate::config::{EntryPointConfig, EntryPointId, ProbeSettings};
use crate::engine::Transmit;
use crate::probe::ProbeError;
use crate::status::EntryPointStatus;

/// An entry point's probe verdict changed.
#[allow(dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeChange {
    Up {
        entry_point: EntryPointId,
        rtt: Duration,
    },
    Down {
        entry_point: EntryPointId,
        misses: u32,
    },
}

pub(crate) struct Prober {
    _private: (),
}

#[allow(dead_code, unused_variables)]
impl Prober {
    /// Schedules the first probe of every entry point at `now`.
    pub(crate) fn new(
        settings: &ProbeSettings,
        entry_points: &[EntryPointConfig],
        now: Instant,
        rng: Rng,
    ) -> Prober {
        todo!("H1")
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        todo!("H1")
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        todo!("H1")
    }

    /// Probe datagrams and IKE probe requests due.
    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        todo!("H1")
    }

    /// A reply from `from`: which entry point answered, or why it was refused (counted).
    pub(crate) fn handle_reply(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
    ) -> Result<EntryPointId, ProbeError> {
        todo!("H1")
    }

    /// IKE probing: the last authenticated message from the entry point (`None`: no IKE SA).
    pub(crate) fn handle_ike_heard(
        &mut self,
        now: Instant,
        entry_point: EntryPointId,
        last_heard: Option<Instant>,
    ) {
        todo!("H1")
    }

    pub(crate) fn poll_change(&mut self) -> Option<ProbeChange> {
        todo!("H1")
    }

    pub(crate) fn is_up(&self, entry_point: EntryPointId) -> bool {
        todo!("H1")
    }

    /// Smoothed RTT of an entry point that is up (first-to-respond orders by it).
    pub(crate) fn srtt(&self, entry_point: EntryPointId) -> Option<Duration> {
        todo!("H1")
    }

    /// Fills the probe fields of `status` (state, probing_with, RTTs, misses, counters,
    /// ups/downs, since_change_ms); the engine fills the rest.
    pub(crate) fn fill_status(
        &self,
        now: Instant,
        entry_point: EntryPointId,
        status: &mut EntryPointStatus,
    ) {
        todo!("H1")
    }
}
