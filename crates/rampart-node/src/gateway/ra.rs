//! Remote access in the node: what the IKE engine's remote-access events leave behind.
//!
//! Gateway side (a template peer with `RemoteAccess::Gateway`): every leased address with the
//! client that holds it and since when, and per template peer the event counts (allocations,
//! releases, refusals); the pool's size comes from its configuration. Client side (a peer with
//! `RemoteAccess::Client`): the assignment the gateway made and the IKE SA that carries it.
//!
//! Invariants: `clients` holds exactly the addresses reported by `LeaseAssigned` and not yet
//! by `LeaseReleased` (one entry per address: the pool never leases an address twice);
//! `assigned[peer]` is the last `VirtualIp` of `peer` whose IKE SA (or the SA it was rekeyed
//! into) is still up.
//!
//! Load Sharing (see `docs/remote-access.md`): each member hands out fresh addresses from its
//! share of every pool (its position among the configured members sorted by id), and every
//! replica SA (another member's) that holds a lease has that address reserved in this
//! member's pool: reserved when the replica arrives or changes, unreserved when it goes,
//! turned into a lease when this member adopts the SA. Invariant: after every record and
//! full sync, the engine's remote leases are exactly the leases of the stored replicas.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Instant;

use rampart_cluster::{ClusterConfig, ClusterMode, MemberId};
use rampart_ike::{IkeSaId, PeerId, PeerPolicy, RaLeaseState, RemoteAccess, StreamRenewal};
use rampart_lease::Share;
use rampart_wire::ike::CfgReply;

use super::Gateway;
use crate::cluster::Replicas;
use crate::{LogEvent, LogLevel, LogRecord, Output, SaSnapshot};

/// One client holding an Office Mode address.
#[derive(Debug, Clone)]
pub(crate) struct ClientLease {
    pub peer: PeerId,
    pub client: String,
    pub since: Instant,
}

/// A template peer's event counts: the status falls back to them only when the engine holds no pool for the peer.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PoolCounts {
    pub allocations: u64,
    pub releases: u64,
    pub exhausted_refusals: u64,
}

/// A client peer's assignment.
#[derive(Debug, Clone)]
pub(crate) struct Assigned {
    pub ike_sa: IkeSaId,
    pub reply: CfgReply,
    pub since: Instant,
}

#[derive(Debug, Default)]
pub(crate) struct RaNode {
    pub clients: BTreeMap<IpAddr, ClientLease>,
    pub counts: HashMap<PeerId, PoolCounts>,
    pub assigned: HashMap<PeerId, Assigned>,
    /// Client peers: the newest IKE SA that came up (an IKE SA rekey moves the assignment
    /// to it: the engine reports the new SA up before the old one down).
    pub newest: HashMap<PeerId, IkeSaId>,
    /// Load Sharing: IKE SAs of this member deleted because their client reconnected at
    /// another member with INITIAL_CONTACT and took its address along.
    pub moved_to_other_member: u64,
}

/// Whether `p` is a remote-access client peer.
pub(crate) fn is_client(p: &PeerPolicy) -> bool {
    matches!(p.remote_access, RemoteAccess::Client(_))
}

/// Whether `p` is a remote-access gateway template.
pub(crate) fn is_gateway(p: &PeerPolicy) -> bool {
    matches!(p.remote_access, RemoteAccess::Gateway(_))
}

/// What an IKE SA going down means for a client peer's assignment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SaDown {
    /// Not the SA that carries an assignment.
    Unrelated,
    /// Rekeyed: the assignment moved to the new IKE SA.
    Moved,
    /// The assignment is gone.
    Lost,
}

impl RaNode {
    pub fn lease_assigned(&mut self, now: Instant, peer: PeerId, client: String, address: IpAddr) {
        self.counts.entry(peer).or_default().allocations += 1;
        let since = now;
        self.clients.insert(
            address,
            ClientLease {
                peer,
                client,
                since,
            },
        );
    }

    /// The lease of `address` went back to the pool; returns who held it.
    pub fn lease_released(&mut self, peer: PeerId, address: IpAddr) -> Option<ClientLease> {
        self.counts.entry(peer).or_default().releases += 1;
        self.clients.remove(&address)
    }

    pub fn pool_exhausted(&mut self, peer: PeerId) {
        self.counts.entry(peer).or_default().exhausted_refusals += 1;
    }

    /// A client peer's IKE SA came up.
    pub fn ike_sa_up(&mut self, peer: PeerId, ike_sa: IkeSaId) {
        self.newest.insert(peer, ike_sa);
    }

    pub fn virtual_ip(&mut self, now: Instant, peer: PeerId, ike_sa: IkeSaId, reply: CfgReply) {
        self.assigned.insert(
            peer,
            Assigned {
                ike_sa,
                reply,
                since: now,
            },
        );
    }

    /// `ike_sa` of client peer `peer` went down (`rekeyed`: replaced by a new IKE SA).
    pub fn ike_sa_down(&mut self, peer: PeerId, ike_sa: IkeSaId, rekeyed: bool) -> SaDown {
        if self.newest.get(&peer) == Some(&ike_sa) {
            self.newest.remove(&peer);
        }
        let Some(a) = self.assigned.get_mut(&peer) else {
            return SaDown::Unrelated;
        };
        if a.ike_sa != ike_sa {
            return SaDown::Unrelated;
        }
        match self.newest.get(&peer) {
            Some(&next) if rekeyed => {
                a.ike_sa = next;
                SaDown::Moved
            }
            _ => {
                self.assigned.remove(&peer);
                SaDown::Lost
            }
        }
    }

    /// A peer was removed (reload): its state goes.
    pub fn forget(&mut self, peer: PeerId) {
        self.assigned.remove(&peer);
        self.newest.remove(&peer);
        self.counts.remove(&peer);
        self.clients.retain(|_, c| c.peer != peer);
    }
}

/// Load Sharing: this member's share of the Office Mode pools, member `index` (its position
/// among the configured members sorted by id) of all of them; `None` in high availability.
pub(crate) fn lease_share(cc: &ClusterConfig) -> Option<Share> {
    if cc.mode != ClusterMode::LoadSharing {
        return None;
    }
    let mut ids: Vec<_> = cc.members.iter().map(|m| m.id).collect();
    ids.sort_unstable();
    let index = ids.iter().position(|&id| id == cc.member_id)?;
    Share::new(u32::try_from(index).ok()?, u32::try_from(ids.len()).ok()?).ok()
}

impl Gateway {
    fn ra_log(&mut self, level: LogLevel, message: String) {
        self.outputs
            .push_back(Output::Log(LogRecord::new(level, LogEvent::Other, message)));
    }

    /// Load Sharing: the pools hand out fresh addresses from this member's share only (set
    /// once at start: cluster membership changes need a restart).
    pub(super) fn apply_lease_share(&mut self) {
        let Some(share) = self.config.cluster.as_ref().and_then(lease_share) else {
            return;
        };
        for (peer, e) in self.ike.set_lease_share(Some(share)) {
            let name = self
                .ike
                .peer(peer)
                .map_or_else(String::new, |p| p.name.clone());
            self.ra_log(
                LogLevel::Error,
                format!(
                    "remote access: the pool of peer {name} hands out from the whole prefix: {e}"
                ),
            );
        }
    }

    /// Load Sharing: replica `snap` (an SA of member `owner`) arrived or changed: its
    /// client's address is reserved here; without a lease, a reservation it had goes. Its ids
    /// are never handed out here either (they may carry this member's id from before a
    /// restart). When one of this member's own SAs leases that address to the same client
    /// identity, the client has moved to `owner` (INITIAL_CONTACT there): the SA here is
    /// deleted and the address becomes the reservation (see `Ike::ra_client_moved`).
    pub(super) fn replica_stored(&mut self, snap: &SaSnapshot, owner: MemberId) {
        let st = &snap.ike;
        self.ike.observe_ids(st);
        // The move first: the address is then reserved below, not refused as a conflict.
        if let Some(l) = &st.ra_lease {
            if let Some(mine) = self
                .ike
                .ra_client_moved(&st.peer_name, st.id, l.address, &l.client)
            {
                self.ra.moved_to_other_member += 1;
                self.ra_log(
                    LogLevel::Info,
                    format!(
                        "remote access: {} moved to member {owner} with {}; IKE SA {:#x} deleted here",
                        l.client, l.address, mine.0
                    ),
                );
            }
        }
        self.reserve_lease_of(&st.peer_name, st.id, st.ra_lease.as_ref());
    }

    /// Load Sharing: IKE SA `id` of template peer `peer` is another member's; `lease` its
    /// client's address, reserved here (`None`: a reservation it had goes).
    pub(super) fn reserve_lease_of(
        &mut self,
        peer: &str,
        id: IkeSaId,
        lease: Option<&RaLeaseState>,
    ) {
        let Some(l) = lease else {
            self.ike.release_remote_lease(id);
            return;
        };
        if let Err(e) = self
            .ike
            .reserve_remote_lease(peer, id, l.address, &l.client)
        {
            self.ra_log(
                LogLevel::Warn,
                format!(
                    "remote access: {} (client {}, IKE SA {:#x} of another member) not reserved: {e}",
                    l.address, l.client, id.0
                ),
            );
        }
    }

    /// Load Sharing: replica `id` is gone (deleted, or this member failed to adopt it).
    pub(super) fn release_replica_lease(&mut self, id: IkeSaId) {
        self.ike.release_remote_lease(id);
    }

    /// Load Sharing, after a full sync: reservations of SAs the snapshot no longer has go.
    pub(super) fn sweep_replica_leases(&mut self, replicas: &Replicas) {
        for (id, _) in self.ike.remote_leases() {
            if !replicas.contains(id) {
                self.ike.release_remote_lease(id);
            }
        }
    }

    /// Remote-access client on a stream transport (RFC 9329 TCP or Visitor Mode TLS): the
    /// shell replaced the stream to the gateway with a new one (the old one was reset or went
    /// silent, e.g. after a cluster failover). Each client peer's established IKE SA sends an
    /// authenticated message on the new stream at once (its outstanding request again, or a
    /// liveness check; see `Ike::stream_renewed`), which makes the gateway move the SA's path
    /// to it. Nothing is renegotiated: same IKE SA, same CHILD SAs, same virtual address.
    /// Returns, per client peer, what was sent.
    pub fn stream_renewed(&mut self, now: Instant) -> Vec<(String, StreamRenewal)> {
        let peers: Vec<(PeerId, String)> = self
            .ike
            .peers()
            .filter(|(_, p)| is_client(p))
            .map(|(id, p)| (id, p.name.clone()))
            .collect();
        let mut done = Vec::with_capacity(peers.len());
        for (id, name) in peers {
            done.push((name, self.ike.stream_renewed(now, id)));
        }
        let (dataplane, mut control) = self.parts(now);
        dataplane.sync(now, &mut control);
        self.after_input(now);
        done
    }

    /// Remote-access client: what the shell's tunnel watch needs (see
    /// `rampart_connect::stream_watch`): `(heard, esp_sent, ike_sent)`: when a client peer's
    /// gateway was last heard (an authenticated IKE message or inbound ESP on an established
    /// IKE SA), how many ESP packets the tunnels sent so far, and when an IKE message last
    /// went out (a liveness check and its retransmissions count as writes too). `None`
    /// without a client peer.
    pub fn client_traffic(&self) -> Option<crate::ClientTraffic> {
        let mut found = false;
        let (mut heard, mut ike_sent) = (None, None);
        for (id, p) in self.ike.peers() {
            if is_client(p) {
                found = true;
                heard = heard.max(self.ike.last_heard(id));
                ike_sent = ike_sent.max(self.ike.last_sent(id));
            }
        }
        if !found {
            return None;
        }
        let esp_sent = self
            .dataplane()
            .tunnels()
            .iter()
            .map(|(_, t)| t.outbound.stats().packets)
            .sum();
        Some((heard, esp_sent, ike_sent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        PeerId::from_parts(1, 0)
    }

    #[test]
    fn an_ike_rekey_moves_the_assignment_and_a_delete_loses_it() {
        let now = Instant::now();
        let mut ra = RaNode::default();
        ra.ike_sa_up(peer(), IkeSaId(1));
        ra.virtual_ip(now, peer(), IkeSaId(1), CfgReply::default());
        ra.ike_sa_up(peer(), IkeSaId(2));
        assert_eq!(ra.ike_sa_down(peer(), IkeSaId(1), true), SaDown::Moved);
        assert_eq!(ra.assigned[&peer()].ike_sa, IkeSaId(2));
        assert_eq!(ra.ike_sa_down(peer(), IkeSaId(7), false), SaDown::Unrelated);
        assert_eq!(ra.ike_sa_down(peer(), IkeSaId(2), false), SaDown::Lost);
        assert!(ra.assigned.is_empty());
    }

    #[test]
    fn leases_are_counted_and_released_by_address() {
        let now = Instant::now();
        let mut ra = RaNode::default();
        let a: IpAddr = "10.99.0.2".parse().unwrap();
        let b: IpAddr = "10.99.0.3".parse().unwrap();
        ra.lease_assigned(now, peer(), "alice".into(), a);
        ra.lease_assigned(now, peer(), "bob".into(), b);
        ra.pool_exhausted(peer());
        let gone = ra.lease_released(peer(), a).unwrap();
        assert_eq!(gone.client, "alice");
        assert_eq!(ra.clients.len(), 1);
        let c = ra.counts[&peer()];
        assert_eq!((c.allocations, c.releases, c.exhausted_refusals), (2, 1, 1));
    }
}
