//! Re-initiation of `start_action = always` peers after a failed negotiation.
//!
//! A peer that does not answer is handled by the liveness/timeout path (re-initiated at once).
//! Any other failure (authentication, no proposal chosen, an error notify, a malformed answer)
//! would otherwise leave the tunnel down until an operator acts. Such a peer is tried again
//! after a backoff that doubles from [`FIRST_RETRY`] to [`MAX_RETRY`], so a configuration
//! mismatch costs one exchange every few minutes, not a loop; an established IKE SA resets it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::peers::PeerId;

/// Wait before the first retry after a failure.
pub(crate) const FIRST_RETRY: Duration = Duration::from_secs(5);
/// Longest wait between retries.
pub(crate) const MAX_RETRY: Duration = Duration::from_secs(300);

/// Per-peer retry deadlines and backoff. Invariant: `due` holds at most one entry per peer.
#[derive(Debug, Default)]
pub(crate) struct Retries {
    due: BTreeMap<PeerId, (Instant, Duration)>,
    /// The backoff the next failure of a peer starts from (kept across retries, reset on success).
    backoff: BTreeMap<PeerId, Duration>,
}

impl Retries {
    /// A negotiation with `peer` failed: schedules a retry; returns the wait.
    pub(crate) fn failed(&mut self, now: Instant, peer: PeerId) -> Duration {
        let wait = *self.backoff.get(&peer).unwrap_or(&FIRST_RETRY);
        self.backoff.insert(peer, (wait * 2).min(MAX_RETRY));
        self.due.insert(peer, (now + wait, wait));
        wait
    }

    /// An IKE SA with `peer` is up (or the peer is gone): no retry, backoff from the start.
    pub(crate) fn clear(&mut self, peer: PeerId) {
        self.due.remove(&peer);
        self.backoff.remove(&peer);
    }

    /// Whether `peer` waits for a retry after a failed negotiation.
    pub(crate) fn waiting(&self, peer: PeerId) -> bool {
        self.due.contains_key(&peer)
    }

    pub(crate) fn next(&self) -> Option<Instant> {
        self.due.values().map(|(at, _)| *at).min()
    }

    /// Removes and returns the peers whose retry is due.
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<PeerId> {
        let due: Vec<PeerId> = self
            .due
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in &due {
            self.due.remove(p);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets_on_success() {
        let t0 = Instant::now();
        let p = PeerId::from_parts(0, 0);
        let mut r = Retries::default();
        let waits: Vec<u64> = (0..9).map(|_| r.failed(t0, p).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(r.next(), Some(t0 + Duration::from_secs(300)));
        assert!(r.take_due(t0 + Duration::from_secs(299)).is_empty());
        assert_eq!(r.take_due(t0 + Duration::from_secs(300)), vec![p]);
        assert_eq!(r.next(), None);
        r.clear(p);
        assert_eq!(r.failed(t0, p), FIRST_RETRY);
    }
}
