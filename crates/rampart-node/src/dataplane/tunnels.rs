//! The installed CHILD SAs ("tunnels") and their ESP state.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::time::Instant;

use rampart_esp::{InboundSa, OutboundSa};
use rampart_ike::ChildSaId;
use rampart_wire::ike::TrafficSelector;

use rampart_ike::PeerId;

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
/// Invariants: `by_spi` maps exactly the inbound SPIs of `tunnels`; `active_out[peer]` is the
/// newest tunnel of that peer, the one outbound traffic uses. During a rekey the old tunnel stays
/// in `tunnels` (and keeps decrypting) until IKE reports it down, so no packet in flight is lost.
#[derive(Default)]
pub struct Tunnels {
    tunnels: IdMap<ChildSaId, Tunnel>,
    by_spi: IdMap<u32, ChildSaId>,
    active_out: IdMap<PeerId, ChildSaId>,
}

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
    pub fn insert(&mut self, id: ChildSaId, tunnel: Tunnel) {
        self.by_spi.insert(tunnel.inbound.spi(), id);
        self.active_out.insert(tunnel.peer, id);
        self.tunnels.insert(id, tunnel);
    }

    pub fn remove(&mut self, id: ChildSaId) -> Option<Tunnel> {
        let tunnel = self.tunnels.remove(&id)?;
        self.by_spi.remove(&tunnel.inbound.spi());
        if self.active_out.get(&tunnel.peer) == Some(&id) {
            // Fall back to the newest remaining tunnel of the same peer.
            let next = self
                .tunnels
                .iter()
                .filter(|(_, t)| t.peer == tunnel.peer)
                .max_by_key(|(_, t)| t.established)
                .map(|(id, _)| *id);
            match next {
                Some(n) => self.active_out.insert(tunnel.peer, n),
                None => self.active_out.remove(&tunnel.peer),
            };
        }
        Some(tunnel)
    }

    pub fn get(&self, id: ChildSaId) -> Option<&Tunnel> {
        self.tunnels.get(&id)
    }

    pub fn get_mut(&mut self, id: ChildSaId) -> Option<&mut Tunnel> {
        self.tunnels.get_mut(&id)
    }

    pub fn by_inbound_spi(&mut self, spi: u32) -> Option<(ChildSaId, &mut Tunnel)> {
        let id = *self.by_spi.get(&spi)?;
        self.tunnels.get_mut(&id).map(|t| (id, t))
    }

    /// Whether `peer` has a tunnel outbound traffic can use.
    pub fn has_tunnel(&self, peer: PeerId) -> bool {
        self.active_out.contains_key(&peer)
    }

    /// Makes `id` the tunnel its peer's outbound traffic uses (after an import, whose tunnels
    /// were all installed at one instant in the exporter's order).
    pub fn make_active(&mut self, id: ChildSaId) {
        if let Some(t) = self.tunnels.get(&id) {
            self.active_out.insert(t.peer, id);
        }
    }

    pub fn active_for(&mut self, peer: PeerId) -> Option<(ChildSaId, &mut Tunnel)> {
        let id = *self.active_out.get(&peer)?;
        self.tunnels.get_mut(&id).map(|t| (id, t))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ChildSaId, &Tunnel)> {
        self.tunnels.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&ChildSaId, &mut Tunnel)> {
        self.tunnels.iter_mut()
    }
}
