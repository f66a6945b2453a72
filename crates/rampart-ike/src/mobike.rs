//! MOBIKE (RFC 4555): moving an established IKE SA and its CHILD SAs to new addresses.
//!
//! Negotiation: each side that allows it ([`crate::PeerPolicy::mobike`], never over a stream)
//! sends MOBIKE_SUPPORTED in IKE_AUTH; MOBIKE is in use on the IKE SA when both did. The
//! original initiator of the IKE SA (the remote-access client) decides which addresses are
//! used (RFC 4555 3.1): only it sends UPDATE_SA_ADDRESSES; that role survives IKE rekeys.
//!
//! Initiator ([`Ike::update_addresses`]): the IKE SA switches to the new local address and the
//! NAT-T port at once (retransmissions use them), and an INFORMATIONAL request with
//! UPDATE_SA_ADDRESSES and the NAT_DETECTION hashes of the new addresses goes out when the
//! request window is free. Its answer brings the NAT state (UDP encapsulation) up to date,
//! moves the CHILD SAs (`ChildSaEndpoint`) and raises [`IkeEvent::MobikeMoved`]; an error
//! answer raises [`IkeEvent::MobikeFailed`] and nothing moves; no answer raises
//! `MobikeFailed` and fails the IKE SA like any other unanswered request.
//!
//! Responder: an UPDATE_SA_ADDRESSES is applied only when MOBIKE was negotiated, the peer is
//! the side that decides, the message was authenticated (it reaches us decrypted) and its
//! message id is newer than that of every update applied before (RFC 4555 3.5; with a window
//! of one, an older message never gets this far, the check keeps the invariant explicit).
//! The IKE SA and its CHILD SAs move to the addresses the request came from and went to, the
//! NAT state is computed again from its NAT_DETECTION payloads, and the answer carries ours.
//! Anything else is logged and nothing moves. ADDITIONAL_*_ADDRESS and NO_ADDITIONAL_ADDRESSES
//! are only logged: we never switch to another address of the peer on our own.
//!
//! Invariant: addresses of an IKE SA with MOBIKE change only through an authenticated
//! UPDATE_SA_ADDRESSES (or its answer) or the NAT mapping following of [`crate::nat_follow`];
//! an update request never moves an SA through the latter.

use std::net::SocketAddr;
use std::time::Instant;

use rampart_wire::ike::{exchange, notify as n, Payload};

use crate::config::IkeSaId;
use crate::engine::Ike;
use crate::event::IkeEvent;
use crate::keys::nat_hash;
use crate::msg;
use crate::policy::Encapsulation;
use crate::retransmit::Request;
use crate::sa::{IkeState, Task};

/// Why [`Ike::update_addresses`] cannot move an IKE SA.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MobikeError {
    #[error("no IKE SA {0:?}")]
    UnknownSa(IkeSaId),
    #[error("the IKE SA is not established")]
    NotEstablished,
    #[error("the IKE SA runs over a stream (TCP/TLS): reconnect instead")]
    Stream,
    #[error("the peer did not negotiate MOBIKE")]
    NotNegotiated,
    #[error("only the original initiator of the IKE SA moves it (RFC 4555 3.1)")]
    NotInitiator,
}

/// Gateway-wide MOBIKE counters (names are part of `rampart status --json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MobikeStats {
    /// IKE SAs on which both sides announced MOBIKE_SUPPORTED.
    pub negotiated: u64,
    /// UPDATE_SA_ADDRESSES requests we sent (initiator; retransmissions not counted).
    pub updates_sent: u64,
    /// Our updates the peer answered: the SA moved.
    pub updates_answered: u64,
    /// Our updates that failed (error answer or no answer).
    pub updates_failed: u64,
    /// Updates of the peer we applied (responder).
    pub updates_applied: u64,
    /// Updates of the peer we refused (MOBIKE not negotiated, wrong role, older message).
    pub updates_refused: u64,
}

/// Per-IKE SA MOBIKE state.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MobikeSa {
    /// The peer sent MOBIKE_SUPPORTED in IKE_AUTH.
    pub peer_offered: bool,
    /// Both sides sent MOBIKE_SUPPORTED: updates are accepted (from the deciding side).
    pub negotiated: bool,
    /// We are the original initiator of the IKE SA: we decide (and send the updates).
    pub decides: bool,
    /// Responder: the message id of the newest update applied.
    pub newest_update: Option<u32>,
}

/// Whether `pc` allows MOBIKE on its SAs: configured on and not over a stream.
pub(crate) fn allowed(pc: &crate::policy::PeerPolicy) -> bool {
    pc.mobike && pc.encapsulation != Encapsulation::Stream
}

/// The MOBIKE_SUPPORTED notify.
pub(crate) fn supported_notify() -> Payload {
    msg::notify(n::MOBIKE_SUPPORTED, Vec::new())
}

impl Ike {
    /// Gateway-wide MOBIKE counters.
    pub fn mobike_stats(&self) -> MobikeStats {
        self.mobike
    }

    /// Whether MOBIKE is in use on `ike_sa` and we are the side that moves it.
    pub fn can_update_addresses(&self, ike_sa: IkeSaId) -> Result<(), MobikeError> {
        let sa = self
            .sas
            .get(&ike_sa)
            .ok_or(MobikeError::UnknownSa(ike_sa))?;
        if sa.state != IkeState::Established {
            return Err(MobikeError::NotEstablished);
        }
        if self
            .peers
            .get(sa.peer)
            .is_some_and(|p| p.encapsulation == Encapsulation::Stream)
        {
            return Err(MobikeError::Stream);
        }
        if !sa.mobike.negotiated {
            return Err(MobikeError::NotNegotiated);
        }
        if !sa.mobike.decides {
            return Err(MobikeError::NotInitiator);
        }
        Ok(())
    }

    /// Initiator: our address towards the peer is now `new_local` (its port is ours to choose;
    /// the node passes its NAT-T port). The IKE SA sends from there to the peer's NAT-T port
    /// from now on, and an UPDATE_SA_ADDRESSES request follows as soon as no other request of
    /// ours is outstanding (one that is, is re-sent on the new path now). The outcome is
    /// [`IkeEvent::MobikeMoved`] or [`IkeEvent::MobikeFailed`].
    pub fn update_addresses(
        &mut self,
        now: Instant,
        ike_sa: IkeSaId,
        new_local: SocketAddr,
    ) -> Result<(), MobikeError> {
        self.can_update_addresses(ike_sa)?;
        let nat_t = self.cfg.nat_t_port;
        let Some(sa) = self.sas.get_mut(&ike_sa) else {
            return Err(MobikeError::UnknownSa(ike_sa));
        };
        let remote = SocketAddr::new(sa.remote.ip(), nat_t);
        tracing::info!(ike_sa = ike_sa.0, from = %sa.local, to = %new_local, "MOBIKE: moving the IKE SA");
        sa.local = new_local;
        sa.remote = remote;
        sa.follow.probe = None;
        if let Some(p) = &sa.pending {
            for bytes in &p.msgs {
                self.events.push_back(IkeEvent::Transmit {
                    local: new_local,
                    remote,
                    msg: bytes.clone(),
                });
            }
            sa.last_tx = now;
        }
        if !sa.tasks.contains(&Task::UpdateAddresses) {
            sa.tasks.push_front(Task::UpdateAddresses);
        }
        // A TEMPORARY_FAILURE backoff must not hold the move back.
        sa.retry_at = None;
        self.run_tasks(now, ike_sa);
        self.refresh_timers();
        Ok(())
    }

    /// Sends the UPDATE_SA_ADDRESSES request from the SA's current addresses.
    pub(crate) fn start_update_addresses(&mut self, now: Instant, id: IkeSaId) -> bool {
        let timeout = self.retransmit_timeout();
        let forced = self
            .sas
            .get(&id)
            .and_then(|sa| self.peers.get(sa.peer))
            .is_some_and(|p| p.encapsulation.forced());
        let mut fake = [0u8; 20];
        self.rng.fill(&mut fake);
        let Some(sa) = self.sas.get_mut(&id) else {
            return false;
        };
        if !sa.mobike.negotiated || !sa.mobike.decides {
            return false;
        }
        let src = if forced {
            fake.to_vec()
        } else {
            nat_hash(sa.spi_i, sa.spi_r, sa.local)
        };
        let payloads = [
            msg::notify(n::UPDATE_SA_ADDRESSES, Vec::new()),
            msg::notify(n::NAT_DETECTION_SOURCE_IP, src),
            msg::notify(
                n::NAT_DETECTION_DESTINATION_IP,
                nat_hash(sa.spi_i, sa.spi_r, sa.remote),
            ),
            msg::notify(n::NO_ADDITIONAL_ADDRESSES, Vec::new()),
        ];
        tracing::debug!(ike_sa = id.0, local = %sa.local, remote = %sa.remote, "MOBIKE: sending UPDATE_SA_ADDRESSES");
        let sent = sa
            .send_request(
                now,
                timeout,
                &mut self.rng,
                &mut self.events,
                exchange::INFORMATIONAL,
                &payloads,
                Request::UpdateAddresses,
            )
            .is_ok();
        if sent {
            self.mobike.updates_sent += 1;
        }
        sent
    }

    /// Initiator: the answer to our UPDATE_SA_ADDRESSES came from `remote` to our `local`.
    pub(crate) fn update_answered(
        &mut self,
        id: IkeSaId,
        p: &[Payload],
        local: SocketAddr,
        remote: SocketAddr,
    ) {
        let forced = self
            .sas
            .get(&id)
            .and_then(|sa| self.peers.get(sa.peer))
            .is_some_and(|pc| pc.encapsulation.forced());
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        if let Some(e) = msg::first_error(p) {
            let why = format!(
                "the peer refused the new addresses (error notify {})",
                e.kind
            );
            tracing::warn!(ike_sa = id.0, %local, "MOBIKE: {why}");
            self.mobike.updates_failed += 1;
            self.events.push_back(IkeEvent::MobikeFailed {
                peer: sa.peer,
                ike_sa: id,
                why,
            });
            return;
        }
        crate::exchange::init::detect_nat(sa, p, sa.spi_i, sa.spi_r, local, remote);
        sa.nat_local |= forced;
        self.mobike.updates_answered += 1;
        self.moved(id, local, remote);
    }

    /// Initiator: our UPDATE_SA_ADDRESSES got no answer (the SA fails next).
    pub(crate) fn update_timed_out(&mut self, id: IkeSaId) {
        let Some(sa) = self.sas.get(&id) else { return };
        tracing::warn!(ike_sa = id.0, local = %sa.local, "MOBIKE: no answer to UPDATE_SA_ADDRESSES");
        self.mobike.updates_failed += 1;
        self.events.push_back(IkeEvent::MobikeFailed {
            peer: sa.peer,
            ike_sa: id,
            why: "no answer to UPDATE_SA_ADDRESSES from the new address".to_string(),
        });
    }

    /// The IKE SA now uses `(local, remote)` with its current NAT state: its CHILD SAs follow
    /// (one `ChildSaEndpoint` each), then `MobikeMoved`.
    fn moved(&mut self, id: IkeSaId, local: SocketAddr, remote: SocketAddr) {
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        sa.local = local;
        sa.remote = remote;
        sa.follow.probe = None;
        let encap = sa.encap();
        tracing::info!(ike_sa = id.0, %local, %remote, encap, "MOBIKE: IKE SA moved");
        for c in &sa.children {
            self.events.push_back(IkeEvent::ChildSaEndpoint {
                child: c.id,
                local,
                remote,
                encap,
            });
        }
        self.events.push_back(IkeEvent::MobikeMoved {
            peer: sa.peer,
            ike_sa: id,
            local,
            remote,
            encap,
        });
    }

    /// Whether request payloads `p` ask for an address update (such a request never moves the
    /// SA by NAT mapping following).
    pub(crate) fn is_update_request(p: &[Payload]) -> bool {
        msg::find_notify(p, n::UPDATE_SA_ADDRESSES).is_some()
    }

    /// Responder side of an INFORMATIONAL request `mid` that came from `to.1` to our `to.0`:
    /// applies an UPDATE_SA_ADDRESSES (see the module documentation) and returns the payloads
    /// the answer carries for MOBIKE (NAT detection, COOKIE2).
    pub(crate) fn mobike_request(
        &mut self,
        id: IkeSaId,
        mid: u32,
        p: &[Payload],
        to: (SocketAddr, SocketAddr),
    ) -> Vec<Payload> {
        let (local, remote) = to;
        let forced = self
            .sas
            .get(&id)
            .and_then(|sa| self.peers.get(sa.peer))
            .is_some_and(|pc| pc.encapsulation.forced());
        let mut fake = [0u8; 20];
        self.rng.fill(&mut fake);
        let Some(sa) = self.sas.get_mut(&id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for kind in [
            n::ADDITIONAL_IP4_ADDRESS,
            n::ADDITIONAL_IP6_ADDRESS,
            n::NO_ADDITIONAL_ADDRESSES,
        ] {
            if msg::find_notify(p, kind).is_some() {
                tracing::debug!(
                    ike_sa = id.0,
                    kind,
                    "MOBIKE: peer address list noted (not used)"
                );
            }
        }
        if let Some(c) = msg::find_notify(p, n::COOKIE2) {
            out.push(msg::notify(n::COOKIE2, c.data.clone()));
        }
        let update = Ike::is_update_request(p);
        let nat_d = msg::find_notify(p, n::NAT_DETECTION_SOURCE_IP).is_some();
        if update {
            let refusal = if !sa.mobike.negotiated {
                Some("MOBIKE was not negotiated on this IKE SA")
            } else if sa.mobike.decides {
                Some("we are the original initiator: only we move this IKE SA")
            } else if sa.mobike.newest_update.is_some_and(|n| mid <= n) {
                Some("older than an update already applied")
            } else if !matches!(sa.state, IkeState::Established) {
                Some("the IKE SA is not established")
            } else {
                None
            };
            if let Some(why) = refusal {
                tracing::warn!(ike_sa = id.0, mid, %remote, "MOBIKE: UPDATE_SA_ADDRESSES refused: {why}; nothing moves");
                self.mobike.updates_refused += 1;
                return out;
            }
            sa.mobike.newest_update = Some(mid);
            if nat_d {
                crate::exchange::init::detect_nat(sa, p, sa.spi_i, sa.spi_r, local, remote);
                sa.nat_local |= forced;
            }
            tracing::info!(ike_sa = id.0, from = %sa.remote, to = %remote, "MOBIKE: peer moved (UPDATE_SA_ADDRESSES)");
            self.mobike.updates_applied += 1;
            self.moved(id, local, remote);
        }
        let Some(sa) = self.sas.get(&id) else {
            return out;
        };
        if sa.mobike.negotiated && (update || nat_d) {
            let src = if forced {
                fake.to_vec()
            } else {
                nat_hash(sa.spi_i, sa.spi_r, local)
            };
            out.push(msg::notify(n::NAT_DETECTION_SOURCE_IP, src));
            out.push(msg::notify(
                n::NAT_DETECTION_DESTINATION_IP,
                nat_hash(sa.spi_i, sa.spi_r, remote),
            ));
        }
        out
    }

    /// An IKE_AUTH message of the peer (request or response) carried `p`: note its
    /// MOBIKE_SUPPORTED. As initiator, a response with it completes the negotiation.
    pub(crate) fn mobike_auth_seen(&mut self, id: IkeSaId, p: &[Payload], response: bool) {
        if msg::find_notify(p, n::MOBIKE_SUPPORTED).is_none() {
            return;
        }
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        sa.mobike.peer_offered = true;
        if response && sa.initiator && !sa.mobike.negotiated {
            let ours = self.peers.get(sa.peer).is_some_and(allowed);
            if ours {
                sa.mobike.negotiated = true;
                sa.mobike.decides = true;
                self.mobike.negotiated += 1;
                tracing::debug!(ike_sa = id.0, "MOBIKE negotiated (we decide)");
            }
        }
    }

    /// Responder: whether our IKE_AUTH answer carries MOBIKE_SUPPORTED (the peer offered it
    /// and its policy allows it); if so, MOBIKE is negotiated.
    pub(crate) fn mobike_answer(&mut self, id: IkeSaId) -> Option<Payload> {
        let sa = self.sas.get_mut(&id)?;
        let ours = self.peers.get(sa.peer).is_some_and(allowed);
        if sa.initiator || !sa.mobike.peer_offered || !ours {
            return None;
        }
        if !sa.mobike.negotiated {
            sa.mobike.negotiated = true;
            sa.mobike.decides = false;
            self.mobike.negotiated += 1;
            tracing::debug!(ike_sa = id.0, "MOBIKE negotiated (the peer decides)");
        }
        Some(supported_notify())
    }
}
