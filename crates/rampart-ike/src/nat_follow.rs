//! Following a NAT mapping that moved.
//!
//! A NAT in front of the peer may forget its mapping (timeout, reboot, conntrack flush) and give
//! the peer's next datagram a new public port. Three things move an IKE SA (RFC 7296 2.23: the
//! addresses change only on authenticated messages):
//! - an authenticated IKE request from a new address (see `handle_protected`);
//! - an authenticated, non-replayed ESP-in-UDP packet from a new address
//!   ([`Ike::esp_peer_address`]; RFC 3948 section 5 lets its receiver update the peer's address,
//!   as the Linux kernel does);
//! - the authenticated answer to a *mapping check*, when it comes back from the address the
//!   check was sent to.
//!
//! A mapping check is started by a hint ([`Ike::nat_hint`]): something unauthenticated suggests
//! the peer moved (a NAT keepalive or an ESP packet that did not open, from the peer's IP on a new
//! port), or that its current mapping is gone (an ICMP unreachable). The check is an empty
//! INFORMATIONAL request sent TO THE CANDIDATE address (for an unreachable: to the current one);
//! when a request of ours is already outstanding, that request is re-sent to the candidate
//! instead (window of one). Checks are rate-limited per IKE SA to one per
//! [`NAT_CHECK_INTERVAL`]; a spoofed hint costs at most that one check and never moves the SA,
//! because nobody at the spoofed address can answer it authentically, and the request's
//! retransmissions go to the current address as before.
//!
//! The check also tells the peer which public address it was seen at: it carries a
//! NAT_DETECTION_DESTINATION_IP notify with the hash of the candidate. A NATed receiver that
//! sees a hash other than the last one it was told learns that its own mapping moved (it cannot
//! see its public address itself); it reports that once per change.
//!
//! Invariant: only an IKE SA that uses UDP encapsulation moves, and only to the address of a
//! message or packet that was authenticated; its CHILD SAs move with it (one `ChildSaEndpoint`
//! event each).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rampart_wire::ike::{exchange, notify as n, Payload};

use crate::config::{ChildSaId, IkeSaId};
use crate::engine::Ike;
use crate::event::{IkeEvent, NatSide};
use crate::keys::nat_hash;
use crate::msg;
use crate::retransmit::Request;
use crate::sa::IkeState;

/// At most one mapping check per IKE SA in this interval.
pub const NAT_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What suggests that the NAT mapping of a CHILD SA's peer moved. None of it is authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatHint {
    /// A NAT keepalive, or an ESP-in-UDP packet of the SA that did not open (or was not opened
    /// yet), came from `remote` (the peer's IP, another port) to our `local` socket.
    NewAddress {
        local: SocketAddr,
        remote: SocketAddr,
    },
    /// An ICMP port or host unreachable answered our datagram to the SA's current address.
    Unreachable,
}

/// Gateway-wide counters of NAT mapping following (names are part of `rampart status --json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NatFollowStats {
    /// Hints that named an established, UDP-encapsulated IKE SA and another address.
    pub hints: u64,
    /// Mapping checks sent (a new INFORMATIONAL request, or the outstanding one re-sent).
    pub checks_sent: u64,
    /// Hints that found a check of the same IKE SA less than a second old.
    pub checks_rate_limited: u64,
    /// IKE SAs moved to a new peer address (by any authenticated message or packet).
    pub mappings_moved: u64,
    /// Times a peer told us (in a mapping check) that it sees us at a new public address.
    pub local_mapping_changes: u64,
}

/// A mapping check in flight: the request `msg_id` went to `(local, remote)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Probe {
    pub msg_id: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// Per-IKE SA state of mapping checks (transient: not exported with the SA).
#[derive(Debug, Default)]
pub(crate) struct NatFollow {
    pub probe: Option<Probe>,
    pub last_check: Option<Instant>,
    /// The last NAT_DETECTION_DESTINATION_IP hash a peer's mapping check named us by.
    pub public_hash: Option<Vec<u8>>,
}

impl Ike {
    /// Gateway-wide mapping-following counters.
    pub fn nat_stats(&self) -> NatFollowStats {
        self.nat
    }

    /// Something unauthenticated suggests that the peer of `child` moved (see [`NatHint`]).
    /// Starts a rate-limited mapping check; never moves anything by itself.
    pub fn nat_hint(&mut self, now: Instant, child: ChildSaId, hint: NatHint) {
        if let Some(id) = self.child_index.get(&child).copied() {
            self.sa_nat_hint(now, id, hint);
            self.refresh_timers();
        }
    }

    fn sa_nat_hint(&mut self, now: Instant, id: IkeSaId, hint: NatHint) {
        let timeout = self.retransmit_timeout();
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        if !sa.encap() || sa.state != IkeState::Established {
            return;
        }
        let (local, remote) = match hint {
            NatHint::NewAddress { local, remote } => (local, remote),
            NatHint::Unreachable => (sa.local, sa.remote),
        };
        let candidate = (local, remote) != (sa.local, sa.remote);
        if matches!(hint, NatHint::NewAddress { .. }) && !candidate {
            return;
        }
        self.nat.hints += 1;
        if sa
            .follow
            .last_check
            .is_some_and(|t| now < t + NAT_CHECK_INTERVAL)
        {
            self.nat.checks_rate_limited += 1;
            return;
        }
        // Our own liveness check (an empty INFORMATIONAL, often sent on an ICMP hint to the
        // mapping that just died) is sealed again under the same message id with the
        // candidate's NAT_DETECTION hash, so the NATed side learns its new address. A peer that
        // already saw the first copy takes this one as a retransmission and answers from its
        // cache; any other outstanding request is re-sent as it is.
        let resealed = match (&sa.pending, sa.keys.as_ref()) {
            (Some(p), Some(keys)) if candidate && matches!(p.kind, Request::Liveness) => {
                let hash = nat_hash(sa.spi_i, sa.spi_r, remote);
                crate::fragment::seal_message(
                    &sa.header(exchange::INFORMATIONAL, p.msg_id, false),
                    &[msg::notify(n::NAT_DETECTION_DESTINATION_IP, hash)],
                    &keys.out,
                    &mut self.rng,
                    sa.frag.limit(remote),
                )
                .ok()
            }
            _ => None,
        };
        let msg_id = if let Some(p) = &mut sa.pending {
            if !candidate {
                // An unreachable while a request is out: its retransmissions are the check.
                return;
            }
            if let Some(msgs) = resealed {
                p.msgs = msgs;
            }
            for bytes in &p.msgs {
                self.events.push_back(IkeEvent::Transmit {
                    local,
                    remote,
                    msg: bytes.clone(),
                });
            }
            p.msg_id
        } else {
            let msg_id = sa.next_msg_id;
            let payloads = if candidate {
                let hash = nat_hash(sa.spi_i, sa.spi_r, remote);
                vec![msg::notify(n::NAT_DETECTION_DESTINATION_IP, hash)]
            } else {
                vec![]
            };
            let sent = sa.send_request_via(
                now,
                timeout,
                &mut self.rng,
                &mut self.events,
                exchange::INFORMATIONAL,
                &payloads,
                Request::Liveness,
                (local, remote),
            );
            if sent.is_err() {
                return;
            }
            msg_id
        };
        tracing::debug!(ike_sa = id.0, %remote, ?hint, "NAT mapping check");
        sa.last_tx = now;
        sa.follow.last_check = Some(now);
        sa.follow.probe = candidate.then_some(Probe {
            msg_id,
            local,
            remote,
        });
        self.nat.checks_sent += 1;
    }

    /// The authenticated response `msg_id` of IKE SA `id` came from `remote` on `local`: when
    /// that is where a mapping check went, the SA moves there.
    pub(crate) fn nat_check_answered(
        &mut self,
        id: IkeSaId,
        msg_id: u32,
        local: SocketAddr,
        remote: SocketAddr,
    ) {
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        let Some(probe) = sa.follow.probe.take() else {
            return;
        };
        if probe.msg_id == msg_id && probe.local == local && probe.remote == remote {
            self.move_sa(id, local, remote);
        }
    }

    /// An INFORMATIONAL request of the peer named us by `hash` (NAT_DETECTION_DESTINATION_IP):
    /// when that differs from what we were last told, our own NAT mapping moved.
    pub(crate) fn nat_public_hash(&mut self, id: IkeSaId, hash: &[u8]) {
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        if !sa.nat_local || sa.follow.public_hash.as_deref() == Some(hash) {
            return;
        }
        sa.follow.public_hash = Some(hash.to_vec());
        self.nat.local_mapping_changes += 1;
        tracing::info!(
            ike_sa = id.0,
            "our NAT mapping moved (the peer checked our new address)"
        );
        self.events.push_back(IkeEvent::NatMappingMoved {
            peer: sa.peer,
            ike_sa: id,
            side: NatSide::Local,
            local: sa.local,
            remote: sa.remote,
        });
    }

    /// Moves IKE SA `id` and its CHILD SAs to `(local, remote)` (the caller authenticated
    /// something from there).
    pub(crate) fn move_sa(&mut self, id: IkeSaId, local: SocketAddr, remote: SocketAddr) {
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        if (sa.local, sa.remote) == (local, remote) {
            return;
        }
        tracing::info!(ike_sa = id.0, from = %sa.remote, to = %remote, "peer NAT mapping moved");
        sa.remote = remote;
        sa.local = local;
        sa.follow.probe = None;
        self.nat.mappings_moved += 1;
        for c in &sa.children {
            self.events.push_back(IkeEvent::ChildSaEndpoint {
                child: c.id,
                local,
                remote,
                encap: true,
            });
        }
        self.events.push_back(IkeEvent::NatMappingMoved {
            peer: sa.peer,
            ike_sa: id,
            side: NatSide::Peer,
            local,
            remote,
        });
    }

    /// An authenticated ESP-in-UDP packet of `child` arrived from `remote` on our `local` socket.
    /// When that is not the IKE SA's current peer address, the IKE SA and all its CHILD SAs move
    /// there. Returns whether anything moved.
    pub fn esp_peer_address(
        &mut self,
        child: ChildSaId,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> bool {
        let Some(id) = self.child_index.get(&child).copied() else {
            return false;
        };
        let Some(sa) = self.sas.get_mut(&id) else {
            return false;
        };
        if !sa.encap()
            || !matches!(sa.state, IkeState::Established | IkeState::Rekeyed)
            || (sa.remote == remote && sa.local == local)
        {
            return false;
        }
        self.move_sa(id, local, remote);
        true
    }

    /// The NAT_DETECTION_DESTINATION_IP of an INFORMATIONAL request, if it has one.
    pub(crate) fn nat_check_notify(p: &[Payload]) -> Option<&[u8]> {
        msg::find_notify(p, n::NAT_DETECTION_DESTINATION_IP).map(|x| x.data.as_slice())
    }
}
