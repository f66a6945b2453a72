//! Remote access (RFC 7296 2.19, 3.15; RFC 8598): the gateway's Office Mode pools and the
//! per-IKE-SA lease, the configuration payloads both roles exchange, and the status views.
//!
//! Invariants (gateway): an IKE SA holds at most one lease ([`HeldLease`]), taken from the
//! pool of the template peer that authenticated it; the lease is handed back exactly once,
//! when the SA is removed ([`Ike::remove_sa`]), except when the SA was rekeyed: then it moved
//! to the successor first ([`Ike::move_lease`]). The pool itself guarantees that no address
//! is leased twice, so no two live SAs share an address.
//!
//! Load Sharing: every pool hands out fresh addresses only from this member's share
//! ([`Ike::set_lease_share`]) and reserves the addresses the other members lease
//! ([`Ike::reserve_remote_lease`]); the engine remembers both, so a pool created later (a
//! reload) gets them too. An adopted SA's import turns its reservation into the lease.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rampart_lease::{Lease, Pool, PoolError, PoolStatus, ReserveError, Share};
use rampart_wire::ike::{
    id_type, Ask, CfgReply, CfgRequest, ConfigPayload, Identification, Payload,
};

use crate::config::IkeSaId;
use crate::engine::Ike;
use crate::event::IkeEvent;
use crate::peers::PeerId;
use crate::policy::{PeerPolicy, RaGateway, RemoteAccess};

/// One remote-access client holding an address, for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaLease {
    /// The template peer whose pool the address comes from.
    pub peer: PeerId,
    pub ike_sa: IkeSaId,
    /// The authenticated identity: the EAP user name, or the IKE identity as text.
    pub client: String,
    pub address: IpAddr,
    /// Where the client's IKE SA is reached now.
    pub remote: SocketAddr,
}

/// The lease an IKE SA holds on the gateway.
#[derive(Debug, Clone)]
pub(crate) struct HeldLease {
    /// The pool's peer (the SA's peer when the lease was taken).
    pub pool: PeerId,
    pub lease: Lease<IkeSaId>,
    pub client: String,
    /// When the lease is renewed next (half its lifetime before it would lapse).
    pub renew_at: Instant,
}

/// An address another cluster member leases to a client of the template peer `peer` (by
/// name: the same on every member), under that member's IKE SA id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteLease {
    pub peer: String,
    pub address: IpAddr,
    /// The authenticated identity of that member's client: a client of the same identity
    /// that reconnects here with INITIAL_CONTACT may take the address over.
    pub client: String,
}

/// The Office Mode pools of an engine, one per `RemoteAccess::Gateway` peer.
///
/// Invariant: every pool has `share` as its share and holds a reservation for each entry of
/// `remote` naming its peer, except the entries in `unreserved` (refused: this member leases
/// the address too; or no pool of that name now), which are tried again when a lease here is
/// released and when the pool is added.
#[derive(Debug, Default)]
pub(crate) struct RaPools {
    pub pools: HashMap<PeerId, Pool<IkeSaId>>,
    /// Load Sharing: this member's share of every pool (`None`: whole pools).
    pub share: Option<Share>,
    /// Load Sharing: the other members' leases, by their IKE SA id.
    pub remote: HashMap<IkeSaId, RemoteLease>,
    /// Entries of `remote` that no pool holds as a reservation.
    pub unreserved: BTreeSet<IkeSaId>,
    /// Client side: the last IPv4 address each remote-access peer assigned us, asked for
    /// again on the next connection (the gateway gives it back when it is free).
    pub last_vip: HashMap<PeerId, Ipv4Addr>,
}

/// What a remote-access client asks for in its first IKE_AUTH: an IPv4 address (`prefer`,
/// the one it had, if any), DNS servers, subnets, split-DNS domains and the gateway's entry
/// points (a private-use attribute other gateways ignore).
pub(crate) fn client_request(prefer: Option<Ipv4Addr>) -> Payload {
    let req = CfgRequest {
        ip4_address: prefer.map_or(Ask::Any, Ask::Prefer),
        ip4_dns: true,
        ip4_subnet: true,
        dns_domains: true,
        entry_points: true,
        ..CfgRequest::default()
    };
    Payload::Cp(req.to_payload())
}

/// The CFG_REQUEST in `p`, if any (a malformed one counts as absent and is logged).
pub(crate) fn find_request(p: &[Payload]) -> Option<CfgRequest> {
    p.iter().find_map(|x| match x {
        Payload::Cp(cp) if cp.cfg_type == rampart_wire::ike::cfg::CFG_REQUEST => {
            CfgRequest::from_payload(cp)
                .map_err(|e| tracing::debug!("ignoring malformed CFG_REQUEST: {e}"))
                .ok()
        }
        _ => None,
    })
}

/// The CFG_REPLY in `p`, if any. A malformed entry-point list is logged and left out (the
/// rest of the reply stands).
pub(crate) fn find_reply(p: &[Payload]) -> Option<Result<CfgReply, rampart_wire::ike::CfgError>> {
    p.iter().find_map(|x| match x {
        Payload::Cp(cp) if cp.cfg_type == rampart_wire::ike::cfg::CFG_REPLY => {
            if let Some(Err(e)) = rampart_wire::ike::EntryPointList::find(cp) {
                tracing::warn!("remote access: ignoring the gateway's malformed entry points: {e}");
            }
            Some(CfgReply::from_payload(cp))
        }
        _ => None,
    })
}

/// The gateway's CFG_REPLY for `address`: the address (and the pool's netmask for IPv4), DNS
/// servers, split-tunnel subnets (the routes) and, when asked, the DNS domains (RFC 8598 4)
/// and the entry points.
pub(crate) fn reply_for(gw: &RaGateway, address: IpAddr, req: &CfgRequest) -> ConfigPayload {
    let mut r = CfgReply::default();
    match (address, gw.pool.prefix) {
        (IpAddr::V4(a), IpNet::V4(p)) => {
            r.ip4_addresses.push(a);
            r.ip4_netmask = Some(p.netmask());
        }
        (IpAddr::V6(a), IpNet::V6(p)) => {
            if let Ok(n) = Ipv6Net::new(a, p.prefix_len()) {
                r.ip6_addresses.push(n);
            }
        }
        _ => {}
    }
    for d in &gw.dns {
        match d {
            IpAddr::V4(a) => r.ip4_dns.push(*a),
            IpAddr::V6(a) => r.ip6_dns.push(*a),
        }
    }
    for n in &gw.routes {
        match n {
            IpNet::V4(n) => r.ip4_subnets.push(*n),
            IpNet::V6(n) => r.ip6_subnets.push(*n),
        }
    }
    if req.dns_domains {
        r.dns_domains = gw
            .dns_domains
            .iter()
            .filter(|d| rampart_wire::ike::cfg_attr::validate_domain(d).is_ok())
            .cloned()
            .collect();
    }
    if req.entry_points {
        r.entry_points = gw.entry_points.clone();
    }
    r.to_payload().unwrap_or(ConfigPayload {
        cfg_type: rampart_wire::ike::cfg::CFG_REPLY,
        attributes: Vec::new(),
    })
}

/// The traffic selectors the gateway narrows a client's CHILD SA to: TSi the client's address
/// alone, TSr the routes (or everything, full tunnel).
pub(crate) fn narrowing(gw: &RaGateway, address: IpAddr) -> (Vec<IpNet>, Vec<IpNet>) {
    let host = IpNet::from(address);
    let remote = if gw.routes.is_empty() {
        match address {
            IpAddr::V4(_) => vec![IpNet::V4(Ipv4Net::default())],
            IpAddr::V6(_) => vec![IpNet::V6(Ipv6Net::default())],
        }
    } else {
        gw.routes.clone()
    };
    (vec![host], remote)
}

/// The client's TSi: every IPv4 address (the gateway narrows it to the one it assigns).
pub(crate) fn client_tsi() -> Vec<IpNet> {
    vec![IpNet::V4(
        Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0).unwrap_or_default(),
    )]
}

/// An identity as text for logs and status (`fqdn`, `user@example`, `192.0.2.1`, a DN).
pub(crate) fn id_text(id: &Identification) -> String {
    let text = || String::from_utf8_lossy(&id.data).into_owned();
    match id.kind {
        id_type::IPV4_ADDR => <[u8; 4]>::try_from(id.data.as_slice())
            .map(|b| IpAddr::from(b).to_string())
            .unwrap_or_else(|_| text()),
        id_type::IPV6_ADDR => <[u8; 16]>::try_from(id.data.as_slice())
            .map(|b| IpAddr::from(b).to_string())
            .unwrap_or_else(|_| text()),
        id_type::DER_ASN1_DN => rampart_pki::dn_to_string(&id.data),
        _ => text(),
    }
}

/// The gateway settings of a peer, if it is a remote-access gateway template.
pub(crate) fn gateway(pc: &PeerPolicy) -> Option<&RaGateway> {
    match &pc.remote_access {
        RemoteAccess::Gateway(g) => Some(g),
        _ => None,
    }
}

impl Ike {
    /// Client side: ask `peer` for `address` in the next IKE_AUTH (what a client shell that
    /// rebuilt its engine remembers from its last connection; the gateway gives it back when it
    /// is free, which INITIAL_CONTACT makes it). Ignored for a peer that is not a
    /// remote-access client.
    pub fn prefer_virtual_address(&mut self, peer: PeerId, address: Ipv4Addr) {
        if self
            .peers
            .get(peer)
            .is_some_and(|p| matches!(p.remote_access, RemoteAccess::Client(_)))
        {
            self.ra.last_vip.insert(peer, address);
        }
    }

    /// Address pools of the remote-access gateway peers, with their counters.
    pub fn ra_pools(&self) -> Vec<(PeerId, PoolStatus)> {
        let mut v: Vec<(PeerId, PoolStatus)> = self
            .ra
            .pools
            .iter()
            .map(|(id, p)| (*id, p.status()))
            .collect();
        v.sort_by_key(|(id, _)| *id);
        v
    }

    /// Every client that holds an address, in IKE SA order.
    pub fn ra_leases(&self) -> Vec<RaLease> {
        self.sas
            .values()
            .filter_map(|sa| {
                let h = sa.lease.as_ref()?;
                Some(RaLease {
                    peer: h.pool,
                    ike_sa: sa.id,
                    client: h.client.clone(),
                    address: h.lease.address,
                    remote: sa.remote,
                })
            })
            .collect()
    }

    /// A peer was added: a gateway template gets its pool, with this member's share and
    /// the other members' leases of it reserved.
    pub(crate) fn ra_peer_added(&mut self, id: PeerId) {
        let Some((gw, name)) = self
            .peers
            .get(id)
            .and_then(|p| Some((gateway(p)?, p.name.clone())))
        else {
            return;
        };
        let mut pool = match Pool::new(gw.pool.clone()) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(peer = %id, "remote access: no address pool: {e}");
                return;
            }
        };
        if let Err(e) = pool.set_share(self.ra.share) {
            tracing::error!(peer = %name, "remote access: the pool keeps no share: {e}");
        }
        // Oldest SA first: of two SAs with one address (a rekey in flight) the newer wins.
        let mut remote: Vec<(&IkeSaId, &RemoteLease)> = self
            .ra
            .remote
            .iter()
            .filter(|(_, r)| r.peer == name)
            .collect();
        remote.sort_unstable_by_key(|(sa, _)| **sa);
        for (sa, r) in remote {
            match pool.reserve(*sa, r.address) {
                Ok(()) => {
                    self.ra.unreserved.remove(sa);
                }
                Err(e) => {
                    self.ra.unreserved.insert(*sa);
                    tracing::warn!(ike_sa = sa.0, peer = %name, "remote access: another member's lease not reserved: {e}");
                }
            }
        }
        self.ra.pools.insert(id, pool);
    }

    /// Load Sharing: every Office Mode pool (and every pool added later) hands out fresh
    /// addresses only from `share` of its prefix, this member's (`None`: the whole prefix, as
    /// in high availability and standalone). Leases and reservations stay. Returns the pools
    /// that refused it (too small to split; configuration validation refuses those), which
    /// keep their previous share.
    pub fn set_lease_share(&mut self, share: Option<Share>) -> Vec<(PeerId, PoolError)> {
        self.ra.share = share;
        let mut refused = Vec::new();
        for (id, pool) in &mut self.ra.pools {
            if let Err(e) = pool.set_share(share) {
                tracing::error!(peer = %id, "remote access: the pool keeps its share: {e}");
                refused.push((*id, e));
            }
        }
        refused.sort_by_key(|(id, _)| *id);
        refused
    }

    /// This member's share of the pools (`None`: whole pools).
    pub fn lease_share(&self) -> Option<Share> {
        self.ra.share
    }

    /// The share of `peer`'s pool as CIDR blocks, when it has a pool with a share.
    pub fn ra_pool_share(&self, peer: PeerId) -> Option<(Share, Vec<IpNet>)> {
        let pool = self.ra.pools.get(&peer)?;
        Some((pool.share()?, pool.share_blocks()))
    }

    /// Load Sharing: another member leases `address` to `client` (the authenticated identity)
    /// of its IKE SA `ike_sa` (a replica) from the pool of template peer `peer` (by name):
    /// this member never hands it out, except to a client of the same identity that
    /// reconnects here with INITIAL_CONTACT asking for it (the client moved). Remembered for
    /// a pool added later; a second call for the same SA moves the reservation. Refused by
    /// the pool when this member leases the address itself (the lease here stays, both
    /// members hold it: logged; see [`Ike::ra_client_moved`]) or it is not in the pool.
    pub fn reserve_remote_lease(
        &mut self,
        peer: &str,
        ike_sa: IkeSaId,
        address: IpAddr,
        client: &str,
    ) -> Result<(), ReserveError> {
        if let Some(old) = self.ra.remote.get(&ike_sa).filter(|r| r.peer != peer) {
            let old_peer = old.peer.clone();
            self.unreserve_in(&old_peer, ike_sa);
        }
        self.ra.remote.insert(
            ike_sa,
            RemoteLease {
                peer: peer.to_owned(),
                address,
                client: client.to_owned(),
            },
        );
        let Some(pool) = self
            .peer_by_name(peer)
            .and_then(|id| self.ra.pools.get_mut(&id))
        else {
            self.ra.unreserved.insert(ike_sa);
            return Ok(());
        };
        match pool.reserve(ike_sa, address) {
            Ok(()) => {
                self.ra.unreserved.remove(&ike_sa);
                Ok(())
            }
            Err(e) => {
                self.ra.unreserved.insert(ike_sa);
                tracing::warn!(
                    ike_sa = ike_sa.0,
                    peer,
                    "remote access: another member's lease not reserved: {e}"
                );
                Err(e)
            }
        }
    }

    /// Load Sharing: another member's IKE SA `ike_sa` is gone (or this member took it over
    /// without a lease): its reservation goes. Returns the address it reserved.
    pub fn release_remote_lease(&mut self, ike_sa: IkeSaId) -> Option<IpAddr> {
        let r = self.ra.remote.remove(&ike_sa)?;
        self.ra.unreserved.remove(&ike_sa);
        self.unreserve_in(&r.peer, ike_sa);
        Some(r.address)
    }

    /// A lease of `pool` here ended: another member's lease of the same address, refused
    /// while this one lived, is reserved now.
    fn retry_unreserved(&mut self, pool: PeerId, address: IpAddr) {
        if self.ra.unreserved.is_empty() {
            return;
        }
        let Some(name) = self.peers.get(pool).map(|p| p.name.clone()) else {
            return;
        };
        let due: Vec<IkeSaId> = self
            .ra
            .unreserved
            .iter()
            .copied()
            .filter(|sa| {
                self.ra
                    .remote
                    .get(sa)
                    .is_some_and(|r| r.peer == name && r.address == address)
            })
            .collect();
        for sa in due {
            let reserved = self.ra.pools.get_mut(&pool).map(|p| p.reserve(sa, address));
            if let Some(Ok(())) = reserved {
                self.ra.unreserved.remove(&sa);
                tracing::info!(ike_sa = sa.0, %address, "remote access: another member's lease reserved now");
            }
        }
    }

    /// The other members' leases this engine knows, by IKE SA id (ascending).
    pub fn remote_leases(&self) -> Vec<(IkeSaId, IpAddr)> {
        let mut v: Vec<(IkeSaId, IpAddr)> = self
            .ra
            .remote
            .iter()
            .map(|(id, r)| (*id, r.address))
            .collect();
        v.sort_unstable();
        v
    }

    fn unreserve_in(&mut self, peer: &str, ike_sa: IkeSaId) {
        if let Some(pool) = self
            .peer_by_name(peer)
            .and_then(|id| self.ra.pools.get_mut(&id))
        {
            pool.unreserve_key(&ike_sa);
        }
    }

    /// Leases an address to IKE SA `id` of `peer` for `client` (`prefer`: the one it asks
    /// for, granted when free; `initial_contact`: the IKE_AUTH carried INITIAL_CONTACT, so
    /// another member's reservation of `prefer` for the same client identity is granted too,
    /// see [`Ike::take_moved_reservation`]). `None`: the pool is exhausted (or missing);
    /// `PoolExhausted` was reported.
    pub(crate) fn lease_address(
        &mut self,
        now: Instant,
        id: IkeSaId,
        peer: PeerId,
        client: &str,
        prefer: Option<IpAddr>,
        initial_contact: bool,
    ) -> Option<IpAddr> {
        let moved = match prefer {
            Some(a) if initial_contact => self.take_moved_reservation(now, id, peer, client, a),
            _ => None,
        };
        let got = match moved {
            Some(l) => Some(Ok(l)),
            None => self.ra.pools.get_mut(&peer).map(|p| match prefer {
                Some(a) => p.allocate_preferred(id, a, now),
                None => p.allocate(id, now),
            }),
        };
        let lease = match got {
            Some(Ok(l)) => l,
            Some(Err(e)) => {
                tracing::warn!(ike_sa = id.0, %peer, client, "remote access: {e}; client refused (INTERNAL_ADDRESS_FAILURE)");
                self.events.push_back(IkeEvent::PoolExhausted {
                    peer,
                    ike_sa: id,
                    client: client.to_owned(),
                });
                return None;
            }
            None => {
                tracing::warn!(ike_sa = id.0, %peer, client, "remote access: the peer has no address pool; client refused (INTERNAL_ADDRESS_FAILURE)");
                self.events.push_back(IkeEvent::PoolExhausted {
                    peer,
                    ike_sa: id,
                    client: client.to_owned(),
                });
                return None;
            }
        };
        let address = lease.address;
        let half = lease.expires.saturating_duration_since(now) / 2;
        let sa = self.sas.get_mut(&id)?;
        sa.lease = Some(HeldLease {
            pool: peer,
            lease,
            client: client.to_owned(),
            renew_at: now + half,
        });
        Some(address)
    }

    /// Load Sharing, INITIAL_CONTACT across members: `client` reconnected here (new IKE SA
    /// `id`, INITIAL_CONTACT, asking for `address`) while `address` is reserved for another
    /// member's SA of the same identity and the same template `peer`: the client moved, it
    /// gave that SA up. The reservation becomes this SA's lease. The other member's entry
    /// stays among the remote leases, unreserved (as when both members lease one address),
    /// until its replica goes: that member deletes its SA when it sees this one's replica
    /// ([`Ike::ra_client_moved`]). `None` (nothing changed) when no such reservation exists,
    /// e.g. another identity's: that is never taken.
    fn take_moved_reservation(
        &mut self,
        now: Instant,
        id: IkeSaId,
        peer: PeerId,
        client: &str,
        address: IpAddr,
    ) -> Option<Lease<IkeSaId>> {
        let name = self.peers.get(peer)?.name.clone();
        let pool = self.ra.pools.get_mut(&peer)?;
        if pool.lease_of(&id).is_some() {
            return None;
        }
        let (theirs, _) = self.ra.remote.iter().find(|(sa, r)| {
            r.peer == name
                && r.address == address
                && r.client == client
                && !self.ra.unreserved.contains(sa)
                && pool.reservation_of(sa) == Some(address)
        })?;
        let theirs = *theirs;
        pool.unreserve_key(&theirs);
        match pool.claim(id, address, now) {
            Ok(lease) => {
                self.ra.unreserved.insert(theirs);
                tracing::info!(ike_sa = id.0, client, %address, other_sa = theirs.0, "remote access: INITIAL_CONTACT: the client moved here from another member; its address follows it");
                Some(lease)
            }
            Err(e) => {
                // Not expected (the address was reserved, so neither leased nor excluded):
                // put the reservation back and allocate as usual.
                if let Err(re) = pool.reserve(theirs, address) {
                    self.ra.unreserved.insert(theirs);
                    tracing::warn!(
                        other_sa = theirs.0,
                        "remote access: reservation not restored: {re}"
                    );
                }
                tracing::warn!(
                    ike_sa = id.0,
                    client,
                    "remote access: moved client's address not taken: {e}"
                );
                None
            }
        }
    }

    /// Load Sharing, INITIAL_CONTACT across members: another member's SA `theirs` (a replica
    /// just stored) leases `address` of template `peer` (by name) to `client`. When one of
    /// this member's own SAs leases that address to the same identity, the client has moved
    /// to the other member (it reconnected there with INITIAL_CONTACT and got its address
    /// back): that SA is removed here without a Delete (the client abandoned it; `IkeSaDown`
    /// with `DeletedByPeer`, as for INITIAL_CONTACT on one gateway). Call it before
    /// [`Ike::reserve_remote_lease`] of `theirs`, which then reserves the address (called
    /// after, the refused reservation is retried at once when the lease here goes). Returns
    /// the removed SA's id. A different identity leasing the address here is a conflict:
    /// nothing is removed (`None`).
    pub fn ra_client_moved(
        &mut self,
        peer: &str,
        theirs: IkeSaId,
        address: IpAddr,
        client: &str,
    ) -> Option<IkeSaId> {
        let pool = self.peer_by_name(peer)?;
        let mine = self
            .sas
            .values()
            .find(|sa| {
                sa.id != theirs
                    && sa.lease.as_ref().is_some_and(|h| {
                        h.pool == pool && h.lease.address == address && h.client == client
                    })
            })?
            .id;
        tracing::info!(ike_sa = mine.0, client, %address, other_sa = theirs.0, "remote access: the client moved to another member; IKE SA deleted here");
        self.remove_sa(mine, Some(crate::event::DownReason::DeletedByPeer));
        self.refresh_timers();
        Some(mine)
    }

    /// An imported SA (another member's) continues with its client's address: taken from our
    /// pool exactly (its reservation, if any, becomes the lease) and reported
    /// (`LeaseAssigned`, so the node's client list and log show it on this member too); a
    /// conflict is logged and the SA then holds no lease here.
    pub(crate) fn claim_lease(
        &mut self,
        now: Instant,
        id: IkeSaId,
        peer: PeerId,
        l: &crate::state::RaLeaseState,
    ) {
        // The SA is this member's now, not another's: its reservation in this pool becomes
        // the lease (`Pool::claim`), one in another pool goes.
        if let Some(r) = self.ra.remote.remove(&id) {
            self.ra.unreserved.remove(&id);
            if self.peer_by_name(&r.peer) != Some(peer) {
                self.unreserve_in(&r.peer, id);
            }
        }
        let claimed = self
            .ra
            .pools
            .get_mut(&peer)
            .map(|p| p.claim(id, l.address, now));
        match claimed {
            Some(Ok(lease)) => {
                let half = lease.expires.saturating_duration_since(now) / 2;
                if let Some(sa) = self.sas.get_mut(&id) {
                    sa.ra_client = Some(l.client.clone());
                    sa.lease = Some(HeldLease {
                        pool: peer,
                        lease,
                        client: l.client.clone(),
                        renew_at: now + half,
                    });
                    tracing::info!(ike_sa = id.0, %peer, client = %l.client, address = %l.address, "remote access: imported lease taken");
                    self.events.push_back(IkeEvent::LeaseAssigned {
                        peer,
                        ike_sa: id,
                        client: l.client.clone(),
                        address: l.address,
                    });
                }
            }
            Some(Err(e)) => {
                tracing::warn!(ike_sa = id.0, client = %l.client, "remote access: imported lease not taken: {e}")
            }
            None => {
                tracing::warn!(ike_sa = id.0, client = %l.client, "remote access: imported lease, but the peer has no pool")
            }
        }
    }

    /// Reports a lease that was just taken (after `IkeSaUp`, before the CHILD SA).
    pub(crate) fn announce_lease(&mut self, id: IkeSaId) {
        let Some(h) = self.sas.get(&id).and_then(|s| s.lease.as_ref()) else {
            return;
        };
        tracing::info!(ike_sa = id.0, peer = %h.pool, client = %h.client, address = %h.lease.address, "remote access: address leased");
        self.events.push_back(IkeEvent::LeaseAssigned {
            peer: h.pool,
            ike_sa: id,
            client: h.client.clone(),
            address: h.lease.address,
        });
    }

    /// Gives a removed SA's lease back to its pool.
    pub(crate) fn release_lease(&mut self, id: IkeSaId, held: HeldLease) {
        if let Some(p) = self.ra.pools.get_mut(&held.pool) {
            if let Err(e) = p.release(&held.lease) {
                tracing::debug!(ike_sa = id.0, "lease already gone: {e}");
            }
        }
        self.retry_unreserved(held.pool, held.lease.address);
        tracing::info!(ike_sa = id.0, peer = %held.pool, client = %held.client, address = %held.lease.address, "remote access: address released");
        self.events.push_back(IkeEvent::LeaseReleased {
            peer: held.pool,
            ike_sa: id,
            address: held.lease.address,
        });
    }

    /// An IKE rekey: the lease of `old` continues under `new`, same address.
    pub(crate) fn move_lease(&mut self, old: IkeSaId, new: IkeSaId) {
        let Some(held) = self.sas.get_mut(&old).and_then(|s| s.lease.take()) else {
            return;
        };
        let moved = self
            .ra
            .pools
            .get_mut(&held.pool)
            .map(|p| p.transfer(&held.lease, new));
        let lease = match moved {
            Some(Ok(l)) => l,
            // The pool is gone (peer removed) or lost the lease: keep the record as it was.
            _ => Lease {
                client: new,
                ..held.lease.clone()
            },
        };
        if let Some(n) = self.sas.get_mut(&new) {
            n.lease = Some(HeldLease { lease, ..held });
        }
    }

    /// Renews the lease of SA `id` when due (called from its timer).
    pub(crate) fn renew_lease(&mut self, now: Instant, id: IkeSaId) {
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        let Some(h) = sa.lease.as_mut() else { return };
        if h.renew_at > now {
            return;
        }
        let renewed = self
            .ra
            .pools
            .get_mut(&h.pool)
            .map(|p| p.renew(&h.lease, now));
        match renewed {
            Some(Ok(l)) => {
                h.renew_at = now + l.expires.saturating_duration_since(now) / 2;
                h.lease = l;
            }
            _ => {
                // Nothing to renew against: stop asking until the SA ends.
                h.renew_at = now + std::time::Duration::from_secs(24 * 3600);
            }
        }
    }
}
