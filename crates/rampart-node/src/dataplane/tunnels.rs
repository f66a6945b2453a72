//! The installed CHILD SAs ("tunnels") and their ESP state.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use rampart_esp::{InboundSa, OutboundSa};
use rampart_ike::ChildSaId;
use rampart_wire::ike::TrafficSelector;

use rampart_ike::PeerId;

/// How long a rekeyed inbound SA keeps decrypting after IKE deleted it (RFC 7296 2.8: the
/// peer may still send on the old SA until it has processed the exchange, and packets it
/// sealed just before are in flight or queued behind the Delete response).
pub const RETIRE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// One CHILD SA pair as the data plane holds it.
pub struct Tunnel {
    pub peer: PeerId,
    /// The peer's name, for log records.
    pub peer_name: String,
    pub inbound: InboundSa,
    pub outbound: OutboundSa,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// ESP-in-UDP (RFC 3948) when true, raw IP protocol 50 otherwise.
    pub encap: bool,
    pub algorithms: String,
    pub established: Instant,
    /// Set once the soft lifetime was reported to IKE, so a rekey is asked for only once.
    pub rekey_requested: bool,
    /// A newer tunnel was installed as this one's rekey (`ChildSaKeys::replaces`): when IKE
    /// reports it down, its inbound SA is retired, not removed at once.
    pub replaced: bool,
    /// One tunnel per remote-access client of a gateway template: outbound traffic finds it
    /// by destination (its single-host remote selector, the client's virtual address), never
    /// as its peer's active tunnel (that would hand one client's traffic to another).
    pub per_client: bool,
    /// MSS clamp (remote-access tunnels): the largest TCP MSS of a SYN or SYN-ACK over IPv4
    /// entering or leaving this tunnel (IPv6: 20 less); `None`: no clamping.
    pub mss_limit: Option<u16>,
    /// Retired (IKE deleted it after a rekey): it only decrypts what the peer sealed before
    /// it switched, until this instant ([`RETIRE_GRACE`] after its `ChildSaDown`), and is
    /// then removed. A retired tunnel seals nothing, is no peer's active tunnel, is not in
    /// the address index and is left out of [`Tunnels::iter`].
    pub retired_until: Option<Instant>,
}

impl Tunnel {
    /// True exactly once: when either direction first reaches a soft byte/packet limit. Cheap
    /// enough to ask after every packet, so a rekey starts at the limit, not up to a timer tick
    /// later (at high rates the hard limit, 10% further, comes within milliseconds).
    pub fn take_rekey_due(&mut self) -> bool {
        if self.rekey_requested {
            return false;
        }
        let due = self.outbound.lifetime_state() != rampart_esp::LifetimeState::Ok
            || self.inbound.lifetime_state() != rampart_esp::LifetimeState::Ok;
        self.rekey_requested = due;
        due
    }
}

/// All tunnels, indexed by id, inbound SPI and peer.
///
/// Invariants: `by_spi` maps exactly the inbound SPIs of `tunnels` (live and retired);
/// `active_out[peer]` is the newest live tunnel of that peer, the one outbound traffic uses.
/// During a rekey the old tunnel stays in `tunnels` (and keeps decrypting) until IKE reports it
/// down, and then, retired, for [`RETIRE_GRACE`] more, so no packet in flight is lost;
/// `retiring` holds the (deadline, id) of every retired tunnel, and only those.
#[derive(Default)]
pub struct Tunnels {
    tunnels: IdMap<ChildSaId, Tunnel>,
    by_spi: IdMap<u32, ChildSaId>,
    active_out: IdMap<PeerId, ChildSaId>,
    /// Peer IP -> the live tunnels that send there (for NAT keepalives and ICMP errors, which
    /// name an address, not an SA). Keys come from peers' datagrams: the default (keyed) hasher.
    by_ip: HashMap<IpAddr, Vec<ChildSaId>>,
    /// Retired tunnels and when each goes (rare: one per rekey, for a second).
    retiring: Vec<(Instant, ChildSaId)>,
    /// Per-client tunnels by their single remote host (a remote-access client's virtual
    /// address): the newest live one of each address. Keys are addresses we assigned.
    by_host: IdMap<IpAddr, ChildSaId>,
}

/// The one address a tunnel's remote selectors cover, if they name a single host.
fn single_host(ts: &[TrafficSelector]) -> Option<IpAddr> {
    match ts {
        [one] if one.start_addr == one.end_addr => Some(one.start_addr),
        _ => None,
    }
}

/// What [`Tunnels::delete`] did.
pub enum Deleted {
    /// Removed at once (it was not replaced by a rekey); the peer's name.
    Removed(String),
    /// Retired for [`RETIRE_GRACE`]: a rekey replaced it.
    Retired,
    /// No live tunnel has that id.
    Unknown,
}

/// At most this many hints per NAT keepalive from a new port (distinct old peer addresses of
/// one IP, e.g. several clients behind one NAT).
pub const MAX_HINTS_PER_KEEPALIVE: usize = 4;

/// A map over the integer keys of the data plane, hashed with [`IdHasher`].
type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Hashes integer keys with one multiply and a fold: every packet looks up its tunnel, and the
/// keys (our own inbound SPIs, sequential CHILD SA ids, peer ids) are never chosen by a
/// peer, so a keyed hash has nothing to defend against here. A peer can choose the SPI it
/// *asks* for, but only entries we inserted are ever probed.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(GOLDEN);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(GOLDEN);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

impl Tunnels {
    /// Installs `tunnel` as its peer's active one. `replaces`: the tunnel it rekeys, which is
    /// then retired rather than removed when IKE reports it down.
    pub fn insert(&mut self, id: ChildSaId, tunnel: Tunnel, replaces: Option<ChildSaId>) {
        if let Some(old) = replaces.and_then(|old| self.tunnels.get_mut(&old)) {
            old.replaced = true;
        }
        self.by_ip.entry(tunnel.remote.ip()).or_default().push(id);
        self.by_spi.insert(tunnel.inbound.spi(), id);
        if tunnel.per_client {
            if let Some(host) = single_host(&tunnel.remote_ts) {
                self.by_host.insert(host, id);
            }
        } else {
            self.active_out.insert(tunnel.peer, id);
        }
        self.tunnels.insert(id, tunnel);
    }

    /// Removes tunnel `id` at once (live or retired).
    pub fn remove(&mut self, id: ChildSaId) -> Option<Tunnel> {
        let tunnel = self.tunnels.remove(&id)?;
        if tunnel.retired_until.is_some() {
            self.retiring.retain(|(_, r)| *r != id);
        } else {
            self.unindex_ip(id, tunnel.remote.ip());
        }
        // A new SA may have been given the same SPI since (IKE freed it with the old one).
        if self.by_spi.get(&tunnel.inbound.spi()) == Some(&id) {
            self.by_spi.remove(&tunnel.inbound.spi());
        }
        self.unset_active(id, tunnel.peer);
        self.unset_host(id, &tunnel.remote_ts);
        Some(tunnel)
    }

    /// IKE deleted tunnel `id`: a replaced tunnel is retired until `now` + [`RETIRE_GRACE`]
    /// (its inbound SA keeps decrypting, nothing is sealed with it); any other is removed.
    pub fn delete(&mut self, now: Instant, id: ChildSaId) -> Deleted {
        let Some(tunnel) = self.tunnels.get_mut(&id) else {
            return Deleted::Unknown;
        };
        if tunnel.retired_until.is_some() {
            return Deleted::Unknown;
        }
        if !tunnel.replaced {
            return self
                .remove(id)
                .map_or(Deleted::Unknown, |t| Deleted::Removed(t.peer_name));
        }
        let until = now + RETIRE_GRACE;
        tunnel.retired_until = Some(until);
        // Soft limits of a retired SA ask for nothing.
        tunnel.rekey_requested = true;
        let (peer, ip) = (tunnel.peer, tunnel.remote.ip());
        let host = tunnel
            .per_client
            .then(|| single_host(&tunnel.remote_ts))
            .flatten();
        self.unindex_ip(id, ip);
        self.unset_active(id, peer);
        if let Some(host) = host {
            self.unset_host_of(id, host);
        }
        self.retiring.push((until, id));
        Deleted::Retired
    }

    /// Removes every retired tunnel whose grace ended by `now`; returns how many.
    pub fn expire_retired(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Some(i) = self.retiring.iter().position(|(t, _)| *t <= now) {
            let (_, id) = self.retiring.swap_remove(i);
            if self.remove(id).is_some() {
                n += 1;
            }
        }
        n
    }

    /// When the next retired tunnel goes.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.retiring.iter().map(|(t, _)| *t).min()
    }

    fn unset_host(&mut self, id: ChildSaId, remote_ts: &[TrafficSelector]) {
        if let Some(host) = single_host(remote_ts) {
            self.unset_host_of(id, host);
        }
    }

    /// If `id` is the tunnel of `host`: the newest other live per-client tunnel of that host
    /// takes over, or none.
    fn unset_host_of(&mut self, id: ChildSaId, host: IpAddr) {
        if self.by_host.get(&host) != Some(&id) {
            return;
        }
        let next = self
            .tunnels
            .iter()
            .filter(|(other, t)| {
                **other != id
                    && t.per_client
                    && t.retired_until.is_none()
                    && single_host(&t.remote_ts) == Some(host)
            })
            .max_by_key(|(_, t)| t.established)
            .map(|(id, _)| *id);
        match next {
            Some(n) => self.by_host.insert(host, n),
            None => self.by_host.remove(&host),
        };
    }

    /// If `id` is its peer's active tunnel: the newest other live tunnel of the peer takes
    /// over, or none.
    fn unset_active(&mut self, id: ChildSaId, peer: PeerId) {
        if self.active_out.get(&peer) != Some(&id) {
            return;
        }
        let next = self
            .tunnels
            .iter()
            .filter(|(other, t)| {
                **other != id && t.peer == peer && !t.per_client && t.retired_until.is_none()
            })
            .max_by_key(|(_, t)| t.established)
            .map(|(id, _)| *id);
        match next {
            Some(n) => self.active_out.insert(peer, n),
            None => self.active_out.remove(&peer),
        };
    }

    fn unindex_ip(&mut self, id: ChildSaId, ip: IpAddr) {
        if let Some(ids) = self.by_ip.get_mut(&ip) {
            ids.retain(|c| *c != id);
            if ids.is_empty() {
                self.by_ip.remove(&ip);
            }
        }
    }

    /// Moves tunnel `id` to new addresses (a NAT mapping moved, or encapsulation changed).
    pub fn set_endpoint(
        &mut self,
        id: ChildSaId,
        local: SocketAddr,
        remote: SocketAddr,
        encap: bool,
    ) {
        let Some(t) = self.tunnels.get_mut(&id) else {
            return;
        };
        if t.retired_until.is_some() {
            return;
        }
        let old_ip = t.remote.ip();
        t.local = local;
        t.remote = remote;
        t.encap = encap;
        if old_ip != remote.ip() {
            self.unindex_ip(id, old_ip);
            self.by_ip.entry(remote.ip()).or_default().push(id);
        }
    }

    /// The tunnels whose peer has `remote`'s IP.
    pub fn at_remote(&self, remote: SocketAddr) -> impl Iterator<Item = (ChildSaId, &Tunnel)> {
        self.by_ip
            .get(&remote.ip())
            .into_iter()
            .flatten()
            .filter_map(|id| self.tunnels.get(id).map(|t| (*id, t)))
    }

    /// For a NAT keepalive from `remote`: `None` when no UDP-encapsulated tunnel's peer has its
    /// IP or one is exactly there (nothing moved); else one tunnel per distinct old address of
    /// that IP (at most [`MAX_HINTS_PER_KEEPALIVE`]).
    pub fn moved_from(
        &self,
        remote: SocketAddr,
    ) -> Option<[Option<ChildSaId>; MAX_HINTS_PER_KEEPALIVE]> {
        let mut out = [None; MAX_HINTS_PER_KEEPALIVE];
        let mut olds = [None; MAX_HINTS_PER_KEEPALIVE];
        let mut n = 0;
        for (id, t) in self.at_remote(remote).filter(|(_, t)| t.encap) {
            if t.remote == remote {
                return None;
            }
            if n < MAX_HINTS_PER_KEEPALIVE && !olds.contains(&Some(t.remote)) {
                olds[n] = Some(t.remote);
                out[n] = Some(id);
                n += 1;
            }
        }
        (n > 0).then_some(out)
    }

    /// Tunnel `id`, live or retired.
    pub fn get(&self, id: ChildSaId) -> Option<&Tunnel> {
        self.tunnels.get(&id)
    }

    /// Tunnel `id`, live or retired.
    pub fn get_mut(&mut self, id: ChildSaId) -> Option<&mut Tunnel> {
        self.tunnels.get_mut(&id)
    }

    pub fn by_inbound_spi(&mut self, spi: u32) -> Option<(ChildSaId, &mut Tunnel)> {
        let id = *self.by_spi.get(&spi)?;
        self.tunnels.get_mut(&id).map(|t| (id, t))
    }

    /// The tunnel outbound traffic of `peer` uses (not for per-client tunnels).
    pub fn active(&self, peer: PeerId) -> Option<(ChildSaId, &Tunnel)> {
        let id = *self.active_out.get(&peer)?;
        self.tunnels.get(&id).map(|t| (id, t))
    }

    /// Whether `peer` has a tunnel outbound traffic can use.
    pub fn has_tunnel(&self, peer: PeerId) -> bool {
        self.active_out.contains_key(&peer)
    }

    /// Makes `id` the tunnel its peer's outbound traffic uses (after an import, whose tunnels
    /// were all installed at one instant in the exporter's order).
    pub fn make_active(&mut self, id: ChildSaId) {
        let usable = |t: &&Tunnel| t.retired_until.is_none() && !t.per_client;
        if let Some(t) = self.tunnels.get(&id).filter(usable) {
            self.active_out.insert(t.peer, id);
        }
    }

    /// The tunnel that seals a packet for `peer` to `dst`: the peer's active tunnel, or for a
    /// remote-access gateway template (no active tunnel) the client tunnel of `dst`. One hash
    /// lookup more only when the peer has no active tunnel; no allocation.
    pub fn outbound_for(&mut self, peer: PeerId, dst: IpAddr) -> Option<(ChildSaId, &mut Tunnel)> {
        let id = match self.active_out.get(&peer) {
            Some(id) => *id,
            None => *self.by_host.get(&dst)?,
        };
        self.tunnels
            .get_mut(&id)
            .filter(|t| t.peer == peer)
            .map(|t| (id, t))
    }

    /// Every live tunnel (retired ones are left out).
    pub fn iter(&self) -> impl Iterator<Item = (&ChildSaId, &Tunnel)> {
        self.tunnels
            .iter()
            .filter(|(_, t)| t.retired_until.is_none())
    }

    /// Every live tunnel (retired ones are left out).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&ChildSaId, &mut Tunnel)> {
        self.tunnels
            .iter_mut()
            .filter(|(_, t)| t.retired_until.is_none())
    }
}
