//! What a standby member keeps of the active member's SAs: each IKE SA as a value
//! ([`SaSnapshot`]) with the instant it arrived, updated by the tunnels' counters.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rampart_esp::{InboundState, OutboundState};
use rampart_ike::{ChildSaId, IkeSaId};

use rampart_cluster::MemberId;

use crate::SaSnapshot;

/// Invariant: `child_to_sa`, `by_esp_spi`, `by_ike_spi`, `by_peer` and `by_lease` name exactly
/// the stored snapshots (their CHILD SAs, their CHILD SAs' inbound SPIs, both IKE SPIs, per
/// peer name one of its SAs, the last stored, and per Office Mode address one SA that carries
/// it as its lease, the last stored); every entry names a stored SA, so the owner found
/// through any index is that SA's owner now.
#[derive(Default)]
pub(crate) struct Replicas {
    sas: BTreeMap<IkeSaId, Replica>,
    child_to_sa: HashMap<ChildSaId, IkeSaId>,
    by_esp_spi: HashMap<u32, IkeSaId>,
    by_ike_spi: HashMap<u64, IkeSaId>,
    by_peer: HashMap<String, IkeSaId>,
    /// A remote-access client's virtual IP (its SA's lease) -> that SA: inside traffic to the
    /// client goes to the member that owns it.
    by_lease: HashMap<IpAddr, IkeSaId>,
}

struct Replica {
    snap: SaSnapshot,
    /// When it arrived (its relative times count from here).
    at: Instant,
    /// Load Sharing: the member that owns it (sender of its last `SaUpsert`, or the
    /// survivor computed to adopt it); 0 in high availability.
    owner: MemberId,
}

impl Replicas {
    pub fn len(&self) -> usize {
        self.sas.len()
    }

    /// High availability: the active member's SA.
    pub fn upsert(&mut self, now: Instant, snapshot: SaSnapshot) {
        self.upsert_owned(now, snapshot, 0);
    }

    /// Load Sharing: an SA `owner` owns.
    pub fn upsert_owned(&mut self, now: Instant, snapshot: SaSnapshot, owner: MemberId) {
        let id = snapshot.ike.id;
        self.remove(id);
        for c in &snapshot.ike.children {
            self.child_to_sa.insert(c.id, id);
            self.by_esp_spi.insert(c.spi_in, id);
        }
        self.by_ike_spi.insert(snapshot.ike.spi_i, id);
        self.by_ike_spi.insert(snapshot.ike.spi_r, id);
        self.by_peer.insert(snapshot.ike.peer_name.clone(), id);
        if let Some(lease) = &snapshot.ike.ra_lease {
            self.by_lease.insert(lease.address, id);
        }
        self.sas.insert(
            id,
            Replica {
                snap: snapshot,
                at: now,
                owner,
            },
        );
    }

    pub fn remove(&mut self, id: IkeSaId) {
        self.unlink(id);
    }

    /// Removes SA `id` and every index entry of it.
    fn unlink(&mut self, id: IkeSaId) -> Option<Replica> {
        let old = self.sas.remove(&id)?;
        for c in &old.snap.ike.children {
            self.child_to_sa.remove(&c.id);
            if self.by_esp_spi.get(&c.spi_in) == Some(&id) {
                self.by_esp_spi.remove(&c.spi_in);
            }
        }
        for spi in [old.snap.ike.spi_i, old.snap.ike.spi_r] {
            if self.by_ike_spi.get(&spi) == Some(&id) {
                self.by_ike_spi.remove(&spi);
            }
        }
        let name = &old.snap.ike.peer_name;
        if self.by_peer.get(name) == Some(&id) {
            // Another SA with the same peer, if any, takes its place (rare: duplicates).
            match self.sas.iter().find(|(_, r)| r.snap.ike.peer_name == *name) {
                Some((other, _)) => {
                    self.by_peer.insert(name.clone(), *other);
                }
                None => {
                    self.by_peer.remove(name);
                }
            }
        }
        if let Some(addr) = old.snap.ike.ra_lease.as_ref().map(|l| l.address) {
            if self.by_lease.get(&addr) == Some(&id) {
                // Another SA with the same address, if any (a client that reconnected before
                // its old SA was removed), takes its place.
                let other = self
                    .sas
                    .iter()
                    .find(|(_, r)| r.snap.ike.ra_lease.as_ref().map(|l| l.address) == Some(addr))
                    .map(|(other, _)| *other);
                match other {
                    Some(other) => self.by_lease.insert(addr, other),
                    None => self.by_lease.remove(&addr),
                };
            }
        }
        Some(old)
    }

    /// A tunnel's counters; ignored for a CHILD SA no stored SA has. Counters never go back.
    pub fn esp(&mut self, child: ChildSaId, outbound: OutboundState, inbound: InboundState) {
        let Some(id) = self.child_to_sa.get(&child) else {
            return;
        };
        let Some(r) = self.sas.get_mut(id) else {
            return;
        };
        if let Some(t) = r.snap.esp.iter_mut().find(|t| t.child == child) {
            if outbound.next_sequence >= t.outbound.next_sequence {
                t.outbound = outbound;
            }
            if inbound.highest >= t.inbound.highest {
                t.inbound = inbound;
            }
        }
    }

    pub fn clear(&mut self) {
        self.sas.clear();
        self.child_to_sa.clear();
        self.by_esp_spi.clear();
        self.by_ike_spi.clear();
        self.by_peer.clear();
        self.by_lease.clear();
    }

    /// Every stored SA aged to `now` (its relative times moved by the time since it arrived).
    pub fn take_all(&mut self, now: Instant) -> Vec<SaSnapshot> {
        let ids: Vec<IkeSaId> = self.sas.keys().copied().collect();
        ids.into_iter()
            .filter_map(|id| self.take(now, id))
            .collect()
    }

    /// SA `id` aged to `now`, removed.
    pub fn take(&mut self, now: Instant, id: IkeSaId) -> Option<SaSnapshot> {
        let Replica { mut snap, at, .. } = self.unlink(id)?;
        age(&mut snap, now.saturating_duration_since(at));
        Some(snap)
    }

    /// Every stored SA aged to `now`, with its owner (a copy: a Load Sharing full sync).
    pub fn snapshots(&self, now: Instant) -> Vec<(SaSnapshot, MemberId)> {
        self.sas
            .values()
            .map(|r| {
                let mut snap = r.snap.clone();
                age(&mut snap, now.saturating_duration_since(r.at));
                (snap, r.owner)
            })
            .collect()
    }

    /// The IKE SA and owner of the CHILD SA whose inbound SPI is `spi`.
    pub fn by_esp_spi(&self, spi: u32) -> Option<(IkeSaId, MemberId)> {
        let id = *self.by_esp_spi.get(&spi)?;
        Some((id, self.sas.get(&id)?.owner))
    }

    /// The IKE SA and owner of the IKE SA with `spi` as one of its SPIs.
    pub fn by_ike_spi(&self, spi: u64) -> Option<(IkeSaId, MemberId)> {
        let id = *self.by_ike_spi.get(&spi)?;
        Some((id, self.sas.get(&id)?.owner))
    }

    /// The owner of an SA with the peer named `peer`.
    pub fn owner_of_peer(&self, peer: &str) -> Option<MemberId> {
        let id = self.by_peer.get(peer)?;
        Some(self.sas.get(id)?.owner)
    }

    /// Whether SA `id` is stored.
    pub fn contains(&self, id: IkeSaId) -> bool {
        self.sas.contains_key(&id)
    }

    /// The IKE SA and owner of the remote-access client whose virtual IP (Office Mode lease)
    /// is `addr`.
    pub fn by_lease(&self, addr: IpAddr) -> Option<(IkeSaId, MemberId)> {
        let id = *self.by_lease.get(&addr)?;
        Some((id, self.sas.get(&id)?.owner))
    }

    /// The SAs `owner` owns.
    pub fn owned_by(&self, owner: MemberId) -> Vec<IkeSaId> {
        self.sas
            .iter()
            .filter(|(_, r)| r.owner == owner)
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn set_owner(&mut self, id: IkeSaId, owner: MemberId) {
        if let Some(r) = self.sas.get_mut(&id) {
            r.owner = owner;
        }
    }

    /// The SPI whose rendezvous owner adopts SA `id` when its owner is gone: the inbound SPI
    /// of its first CHILD SA, or the low bits of the IKE SA id without one. Every member
    /// computes it from the same replica.
    pub fn adoption_spi(&self, id: IkeSaId) -> Option<u32> {
        let r = self.sas.get(&id)?;
        Some(
            r.snap
                .ike
                .children
                .first()
                .map_or(id.0 as u32, |c| c.spi_in),
        )
    }
}

/// `snap` as it would have been exported `by` later: durations until something shrink,
/// durations since something grow.
fn age(snap: &mut SaSnapshot, by: Duration) {
    let st = &mut snap.ike;
    let less = |d: &mut Option<Duration>| {
        if let Some(d) = d.as_mut() {
            *d = d.saturating_sub(by);
        }
    };
    less(&mut st.rekey_in);
    less(&mut st.expire_in);
    less(&mut st.retry_in);
    st.established_for = st.established_for.saturating_add(by);
    st.since_rx = st.since_rx.saturating_add(by);
    st.since_tx = st.since_tx.saturating_add(by);
    if let Some(o) = st.outstanding.as_mut() {
        o.retransmit_in = o.retransmit_in.saturating_sub(by);
    }
    for c in &mut st.children {
        c.installed_for = c.installed_for.saturating_add(by);
        less(&mut c.rekey_in);
        less(&mut c.expire_in);
    }
}
