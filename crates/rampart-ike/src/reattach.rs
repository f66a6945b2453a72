//! Re-attaching an IKE SA to a new stream (RFC 9329 TCP or Visitor Mode TLS).
//!
//! A stream cannot survive a change of the machine behind the gateway's address (a cluster
//! failover) or a proxy that drops it. RFC 9329 lets the TCP originator open a new connection
//! for an existing IKE SA and go on sending on it. To the engine a stream is a NAT-T path, so
//! nothing in the SA changes on our side; what matters is that the responder hears an
//! authenticated message on the new connection soon: it then moves the SA's path to the new
//! stream (an authenticated request from a new address moves an encapsulated SA, see
//! [`crate::nat_follow`]), and its replies and ESP go there.
//!
//! [`Ike::stream_renewed`] sends that message: the request we have outstanding, resent at once
//! (the old stream may have swallowed it; a responder that already answered it resends its
//! cached response), or else an empty INFORMATIONAL (a liveness check). Its answer proves that
//! the new stream reaches an engine that holds the SA.
//!
//! Invariant: the SA keeps its SPIs, keys, message ids and CHILD SAs; no IKE_SA_INIT is sent.
//! The outstanding request keeps its retransmission count, so a dead gateway still fails the
//! SA on the usual schedule.

use std::time::Instant;

use crate::config::IkeSaId;
use crate::engine::Ike;
use crate::event::IkeEvent;
use crate::peers::PeerId;
use crate::sa::IkeState;

/// What [`Ike::stream_renewed`] did for a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamRenewal {
    /// The outstanding request of this IKE SA was sent again on the new path.
    Resent(IkeSaId),
    /// An empty INFORMATIONAL went out on this IKE SA.
    Probed(IkeSaId),
    /// The peer has no established IKE SA to re-attach (or the engine is passive).
    Nothing,
}

impl Ike {
    /// The stream that carried `peer`'s IKE SAs was replaced by a new one to the same gateway:
    /// on each established IKE SA of the peer, resend the outstanding request now or, without
    /// one, send an empty INFORMATIONAL. Returns what was done for the newest such SA.
    pub fn stream_renewed(&mut self, now: Instant, peer: PeerId) -> StreamRenewal {
        if self.passive {
            return StreamRenewal::Nothing;
        }
        let ids: Vec<IkeSaId> = self
            .sas
            .values()
            .filter(|s| s.peer == peer && s.state == IkeState::Established)
            .map(|s| s.id)
            .collect();
        let mut done = StreamRenewal::Nothing;
        for id in ids {
            // `get_mut` marks the SA for the timer refresh below.
            let Some(sa) = self.sas.get_mut(&id) else {
                continue;
            };
            if let Some(p) = sa.pending.as_mut() {
                tracing::debug!(
                    ike_sa = id.0,
                    msg_id = p.msg_id,
                    "new stream: resending the outstanding request"
                );
                for bytes in &p.msgs {
                    self.events.push_back(IkeEvent::Transmit {
                        local: sa.local,
                        remote: sa.remote,
                        msg: bytes.clone(),
                    });
                }
                // The next retransmission counts from now; the tries already made stay.
                p.next_at = now + p.timeout;
                sa.last_tx = now;
                done = StreamRenewal::Resent(id);
            } else if self.start_liveness(now, id) {
                tracing::debug!(ike_sa = id.0, "new stream: liveness check sent");
                done = StreamRenewal::Probed(id);
            }
        }
        self.refresh_timers();
        done
    }
}

impl Ike {
    /// When an IKE message last went to `peer` on an established IKE SA (a request, its
    /// retransmission, a response): with [`Ike::last_heard`], what a client's tunnel watch
    /// needs to tell a gateway that stopped answering. `None` without an established IKE SA.
    pub fn last_sent(&self, peer: PeerId) -> Option<Instant> {
        self.sas
            .values()
            .filter(|s| s.peer == peer && s.state == IkeState::Established)
            .map(|s| s.last_tx)
            .max()
    }
}
