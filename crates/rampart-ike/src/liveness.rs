//! Liveness on request: the Multiple Entry Points engine probes third-party entry points with
//! IKEv2 liveness checks (an empty INFORMATIONAL, RFC 7296 1.4) on an IKE SA kept to each of
//! them, at its own interval rather than the peer's `liveness_interval`, and reads back when the
//! peer was last heard.

use std::time::Instant;

use crate::config::IkeSaId;
use crate::engine::Ike;
use crate::peers::PeerId;
use crate::sa::IkeState;

/// What [`Ike::probe_liveness`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LivenessProbe {
    /// An empty INFORMATIONAL request went out on this established IKE SA; its response (or
    /// any other authenticated message) moves [`Ike::last_heard`].
    Sent(IkeSaId),
    /// A request of ours is already outstanding on this established IKE SA: its response
    /// answers the probe just as well (and its timeout fails the SA), so nothing more is sent.
    InFlight(IkeSaId),
    /// The peer had no established IKE SA: a negotiation (IKE SA plus CHILD SA) was started now.
    Initiated,
    /// The peer had no established IKE SA and one is already being negotiated.
    Connecting,
    /// The peer's last negotiation failed (authentication, proposals): its retry backoff runs,
    /// so nothing is initiated before it ends.
    BackingOff,
    /// Nothing can be done: the peer is unknown, a template (no remote address), or this
    /// engine is passive (a standby cluster member).
    Unavailable,
}

impl Ike {
    /// Checks that `peer` is alive now: on its established IKE SA an empty INFORMATIONAL is
    /// sent unless a request of ours is in flight there; without an established IKE SA one is
    /// initiated (unless one is connecting or the peer's retry backoff runs). Independent of
    /// the peer's `liveness_interval`; a lost check is retransmitted and, after the last try,
    /// fails the SA like any other request (`PeerDead`).
    pub fn probe_liveness(&mut self, now: Instant, peer: PeerId) -> LivenessProbe {
        if self.passive || self.peers.get(peer).is_none_or(|p| p.is_template()) {
            return LivenessProbe::Unavailable;
        }
        let established: Vec<(IkeSaId, bool)> = self
            .sas
            .values()
            .filter(|s| s.peer == peer && s.state == IkeState::Established)
            .map(|s| (s.id, s.pending.is_some()))
            .collect();
        if let Some(&(id, _)) = established.iter().find(|(_, busy)| *busy) {
            return LivenessProbe::InFlight(id);
        }
        if let Some(&(id, _)) = established.first() {
            let sent = self.start_liveness(now, id);
            self.refresh_timers();
            return if sent {
                LivenessProbe::Sent(id)
            } else {
                // Sealing failed (it is logged): the next probe tries again.
                LivenessProbe::Unavailable
            };
        }
        let connecting = self
            .sas
            .values()
            .any(|s| s.peer == peer && s.state == IkeState::Connecting);
        if connecting {
            return LivenessProbe::Connecting;
        }
        if self.retries.waiting(peer) {
            return LivenessProbe::BackingOff;
        }
        self.initiate(now, peer);
        LivenessProbe::Initiated
    }

    /// When `peer` was last heard on an established IKE SA: the newest authenticated IKE
    /// message, or inbound ESP on one of its CHILD SAs (reported with
    /// [`Ike::child_traffic`]), over its established IKE SAs. `None` without one.
    pub fn last_heard(&self, peer: PeerId) -> Option<Instant> {
        self.sas
            .values()
            .filter(|s| s.peer == peer && s.state == IkeState::Established)
            .map(|s| s.last_rx)
            .max()
    }
}
