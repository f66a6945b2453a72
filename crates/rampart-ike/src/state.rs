//! IKE and CHILD SA state as plain values: export from one engine, import into another (a
//! cluster member taking over), with the peer noticing nothing.
//!
//! Invariants: an [`IkeSaState`] holds no `Instant` (every time is a `Duration` relative to the
//! `now` passed to the export, re-anchored at the `now` passed to the import); it names its peer
//! by configuration name, never by the member-local [`PeerId`]; every key is zeroized on drop.
//! Transient bookkeeping of rekey collisions (RFC 7296 2.8) is not part of the state: an SA is
//! exported between exchanges (see [`Ike::export_sa`]).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rampart_crypto::CipherKey;
use rampart_wire::ike::TrafficSelector;
use serde::{Deserialize, Serialize};

use crate::child::{ChildKeyMat, ChildSa, ChildState};
use crate::config::{ChildSaId, IkeSaId};
use crate::engine::Ike;
use crate::event::{ChildSaKeys, IkeEvent};
use crate::keys::{IkeKeyMaterial, Secret};
use crate::proposal::{EspAlgs, IkeAlgs};
use crate::retransmit::{Pending, Request};
use crate::sa::{IkeSa, IkeState, Task};

/// Everything another member needs to continue an established IKE SA and its CHILD SAs.
#[derive(Clone, Serialize, Deserialize)]
pub struct IkeSaState {
    pub id: IkeSaId,
    /// The peer's configuration name ([`PeerId`]s are member-local).
    pub peer_name: String,
    /// We are the original initiator of this IKE SA (after a rekey: of the rekey).
    pub initiator: bool,
    pub spi_i: u64,
    pub spi_r: u64,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// We are behind a NAT (or pretend to be).
    pub nat_local: bool,
    /// The peer is behind a NAT.
    pub nat_remote: bool,
    /// MOBIKE (RFC 4555) was negotiated on this IKE SA.
    #[serde(default)]
    pub mobike: bool,
    /// With MOBIKE: we are the original initiator (we decide the addresses).
    #[serde(default)]
    pub mobike_decides: bool,
    pub algs: IkeAlgs,
    pub sk_d: Secret,
    pub sk_pi: Secret,
    pub sk_pr: Secret,
    /// Initiator->responder encryption key (AEAD: key || salt).
    pub sk_ei: Secret,
    /// Responder->initiator encryption key (AEAD: key || salt).
    pub sk_er: Secret,
    /// Initiator->responder integrity key (empty with AEAD).
    pub sk_ai: Secret,
    /// Responder->initiator integrity key (empty with AEAD).
    pub sk_ar: Secret,
    /// Nonces of the exchange that created this IKE SA.
    pub ni: Vec<u8>,
    pub nr: Vec<u8>,
    /// Message id of our next request.
    pub next_msg_id: u32,
    /// Message id of the peer's next request.
    pub peer_msg_id: u32,
    /// Our last response, re-sent byte for byte on a retransmitted request.
    pub last_response: Option<CachedResponse>,
    /// Our request in flight, if any.
    pub outstanding: Option<OutstandingRequest>,
    /// Work waiting for our request slot, in order.
    pub tasks: Vec<QueuedTask>,
    /// `Some(largest IP datagram)` when RFC 7383 fragmentation is in use.
    pub fragment_size: Option<u16>,
    pub established_for: Duration,
    pub rekey_in: Option<Duration>,
    pub expire_in: Option<Duration>,
    /// Queued tasks wait this long (after TEMPORARY_FAILURE).
    pub retry_in: Option<Duration>,
    /// Time since the peer was last heard from (liveness).
    pub since_rx: Duration,
    /// Time since we last sent (NAT keepalives).
    pub since_tx: Duration,
    pub children: Vec<ChildSaState>,
    /// Remote-access gateway: the client's Office Mode address (the importing member takes
    /// exactly this address from its own pool of the same peer).
    #[serde(default)]
    pub ra_lease: Option<RaLeaseState>,
}

/// The lease of an [`IkeSaState`] (remote-access gateway).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaLeaseState {
    /// The authenticated client identity.
    pub client: String,
    pub address: std::net::IpAddr,
}

/// One CHILD SA of an [`IkeSaState`].
#[derive(Clone, Serialize, Deserialize)]
pub struct ChildSaState {
    pub id: ChildSaId,
    pub spi_in: u32,
    pub spi_out: u32,
    pub algs: EspAlgs,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    /// AEAD: key || 4-byte salt.
    pub key_in: Secret,
    pub integ_key_in: Secret,
    pub key_out: Secret,
    pub integ_key_out: Secret,
    pub phase: ChildPhase,
    pub installed_for: Duration,
    pub rekey_in: Option<Duration>,
    pub expire_in: Option<Duration>,
}

/// Where an exported CHILD SA is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChildPhase {
    Installed,
    /// A successor exists; waiting for the Delete.
    Rekeyed,
    /// Our Delete of it is in flight.
    Deleting,
}

/// Our last response: its message id and datagrams (one, or its fragments).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedResponse {
    pub msg_id: u32,
    pub datagrams: Vec<Vec<u8>>,
}

/// Our request in flight and its retransmission schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutstandingRequest {
    pub msg_id: u32,
    pub datagrams: Vec<Vec<u8>>,
    pub kind: OutstandingKind,
    /// Retransmissions so far.
    pub tries: u32,
    /// Current retransmission timeout (doubles per try).
    pub timeout: Duration,
    pub retransmit_in: Duration,
}

/// The requests that can be in flight at export (those carrying no ephemeral key exchange).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutstandingKind {
    Liveness,
    DeleteChildren(Vec<ChildSaId>),
    DeleteIke,
}

/// Work an IKE SA has queued for its request slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueuedTask {
    NewChild,
    RekeyChild(ChildSaId),
    RekeyIke,
    DeleteChildren(Vec<ChildSaId>),
    DeleteIke,
    Liveness,
    /// MOBIKE UPDATE_SA_ADDRESSES (initiator).
    UpdateAddresses,
}

/// Why [`Ike::import_sa`] refused a state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("no peer named `{0}`")]
    UnknownPeer(String),
    #[error("IKE SA id {0:#x} already in use")]
    IkeSaIdInUse(u64),
    #[error("CHILD SA id {0:#x} already in use")]
    ChildSaIdInUse(u64),
    #[error("IKE SPI {0:016x} already in use or invalid")]
    IkeSpiInUse(u64),
    #[error("ESP SPI {0:08x} already in use or invalid")]
    EspSpiInUse(u32),
    #[error("invalid algorithms: {0}")]
    InvalidAlgorithms(&'static str),
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
}

impl std::fmt::Debug for IkeSaState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IkeSaState")
            .field("id", &self.id)
            .field("peer_name", &self.peer_name)
            .field("initiator", &self.initiator)
            .field("spi_i", &format_args!("{:016x}", self.spi_i))
            .field("spi_r", &format_args!("{:016x}", self.spi_r))
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("algs", &self.algs)
            .field("next_msg_id", &self.next_msg_id)
            .field("peer_msg_id", &self.peer_msg_id)
            .field("children", &self.children)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ChildSaState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSaState")
            .field("id", &self.id)
            .field("spi_in", &format_args!("{:08x}", self.spi_in))
            .field("spi_out", &format_args!("{:08x}", self.spi_out))
            .field("algs", &self.algs)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl From<&Task> for QueuedTask {
    fn from(t: &Task) -> QueuedTask {
        match t {
            Task::NewChild => QueuedTask::NewChild,
            Task::RekeyChild(c) => QueuedTask::RekeyChild(*c),
            Task::RekeyIke => QueuedTask::RekeyIke,
            Task::DeleteChild(v) => QueuedTask::DeleteChildren(v.clone()),
            Task::DeleteIke => QueuedTask::DeleteIke,
            Task::Liveness => QueuedTask::Liveness,
            Task::UpdateAddresses => QueuedTask::UpdateAddresses,
        }
    }
}

impl From<QueuedTask> for Task {
    fn from(t: QueuedTask) -> Task {
        match t {
            QueuedTask::NewChild => Task::NewChild,
            QueuedTask::RekeyChild(c) => Task::RekeyChild(c),
            QueuedTask::RekeyIke => Task::RekeyIke,
            QueuedTask::DeleteChildren(v) => Task::DeleteChild(v),
            QueuedTask::DeleteIke => Task::DeleteIke,
            QueuedTask::Liveness => Task::Liveness,
            QueuedTask::UpdateAddresses => Task::UpdateAddresses,
        }
    }
}

fn until(now: Instant, t: Option<Instant>) -> Option<Duration> {
    t.map(|t| t.saturating_duration_since(now))
}

/// `now - d`, or `now` when the clock cannot go back that far.
fn ago(now: Instant, d: Duration) -> Instant {
    now.checked_sub(d).unwrap_or(now)
}

fn child_state(now: Instant, c: &ChildSa) -> ChildSaState {
    ChildSaState {
        id: c.id,
        spi_in: c.spi_in,
        spi_out: c.spi_out,
        algs: c.algs,
        local_ts: c.local_ts.clone(),
        remote_ts: c.remote_ts.clone(),
        key_in: c.keys.key_in.clone(),
        integ_key_in: c.keys.integ_key_in.clone(),
        key_out: c.keys.key_out.clone(),
        integ_key_out: c.keys.integ_key_out.clone(),
        // `Rekeying` only exists while our CREATE_CHILD_SA is in flight, which export refuses.
        phase: match c.state {
            ChildState::Installed | ChildState::Rekeying => ChildPhase::Installed,
            ChildState::Rekeyed => ChildPhase::Rekeyed,
            ChildState::Deleting => ChildPhase::Deleting,
        },
        installed_for: now.saturating_duration_since(c.created),
        rekey_in: until(now, c.rekey_at),
        expire_in: until(now, c.expire_at),
    }
}

/// Checks that the algorithms fit together and the keys have their lengths.
fn check_keys(st: &IkeSaState) -> Result<(), ImportError> {
    let a = &st.algs;
    if a.encr.is_aead() != a.integ.is_none() {
        return Err(ImportError::InvalidAlgorithms(
            "IKE integrity must be absent exactly with an AEAD cipher",
        ));
    }
    let p = a.prf.output_len();
    if [&st.sk_d, &st.sk_pi, &st.sk_pr]
        .iter()
        .any(|k| k.len() != p)
    {
        return Err(ImportError::InvalidKey(
            "SK_d/SK_pi/SK_pr length differs from the PRF output",
        ));
    }
    let e = a.encr.key_len() + a.encr.salt_len();
    let i = a.integ.map_or(0, |g| g.key_len());
    if st.sk_ei.len() != e || st.sk_er.len() != e || st.sk_ai.len() != i || st.sk_ar.len() != i {
        return Err(ImportError::InvalidKey(
            "IKE encryption/integrity key length",
        ));
    }
    for c in &st.children {
        let g = &c.algs;
        if g.encr.is_aead() != g.integ.is_none() {
            return Err(ImportError::InvalidAlgorithms(
                "ESP integrity must be absent exactly with an AEAD cipher",
            ));
        }
        let e = g.encr.key_len() + g.encr.salt_len();
        let i = g.integ.map_or(0, |x| x.key_len());
        if c.key_in.len() != e
            || c.key_out.len() != e
            || c.integ_key_in.len() != i
            || c.integ_key_out.len() != i
        {
            return Err(ImportError::InvalidKey("ESP key length"));
        }
    }
    Ok(())
}

impl Ike {
    /// The state of IKE SA `id` and its CHILD SAs at `now`.
    ///
    /// Only an Established IKE SA is exportable: `None` for an unknown id, for one still
    /// connecting, rekeyed away or being deleted, and while our own CREATE_CHILD_SA (new CHILD
    /// SA, CHILD or IKE rekey) is in flight, since its ephemeral key exchange cannot leave this
    /// member; export again once that exchange has completed. A liveness check or Delete in flight
    /// is exported with its retransmission schedule.
    pub fn export_sa(&self, now: Instant, id: IkeSaId) -> Option<IkeSaState> {
        let sa = self.sas.get(&id)?;
        if sa.state != IkeState::Established {
            return None;
        }
        let (keys, algs) = (sa.keys.as_ref()?, sa.algs?);
        let peer_name = self.peers.get(sa.peer)?.name.clone();
        let outstanding = match &sa.pending {
            None => None,
            Some(p) => Some(OutstandingRequest {
                msg_id: p.msg_id,
                datagrams: p.msgs.clone(),
                kind: match &p.kind {
                    Request::Liveness => OutstandingKind::Liveness,
                    Request::Delete(v) => OutstandingKind::DeleteChildren(v.clone()),
                    Request::DeleteIke => OutstandingKind::DeleteIke,
                    Request::Init
                    | Request::Auth(_)
                    | Request::CreateChild(_)
                    | Request::RekeyIke { .. }
                    | Request::UpdateAddresses => return None,
                },
                tries: p.tries,
                timeout: p.timeout,
                retransmit_in: p.next_at.saturating_duration_since(now),
            }),
        };
        Some(IkeSaState {
            id,
            peer_name,
            initiator: sa.initiator,
            spi_i: sa.spi_i,
            spi_r: sa.spi_r,
            local: sa.local,
            remote: sa.remote,
            nat_local: sa.nat_local,
            nat_remote: sa.nat_remote,
            mobike: sa.mobike.negotiated,
            mobike_decides: sa.mobike.decides,
            algs,
            sk_d: keys.sk_d.clone(),
            sk_pi: keys.sk_pi.clone(),
            sk_pr: keys.sk_pr.clone(),
            sk_ei: keys.sk_ei.clone(),
            sk_er: keys.sk_er.clone(),
            sk_ai: keys.sk_ai.clone(),
            sk_ar: keys.sk_ar.clone(),
            ni: sa.ni.clone(),
            nr: sa.nr.clone(),
            next_msg_id: sa.next_msg_id,
            peer_msg_id: sa.peer_msg_id,
            last_response: sa.last_response.as_ref().map(|(m, d)| CachedResponse {
                msg_id: *m,
                datagrams: d.clone(),
            }),
            outstanding,
            tasks: sa.tasks.iter().map(QueuedTask::from).collect(),
            fragment_size: sa.frag.size,
            established_for: sa
                .established_at
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t)),
            rekey_in: until(now, sa.rekey_at),
            expire_in: until(now, sa.expire_at),
            retry_in: until(now, sa.retry_at),
            since_rx: now.saturating_duration_since(sa.last_rx),
            since_tx: now.saturating_duration_since(sa.last_tx),
            children: sa.children.iter().map(|c| child_state(now, c)).collect(),
            ra_lease: sa.lease.as_ref().map(|h| RaLeaseState {
                client: h.client.clone(),
                address: h.lease.address,
            }),
        })
    }

    /// [`Ike::export_sa`] of every exportable IKE SA.
    pub fn export_all(&self, now: Instant) -> Vec<IkeSaState> {
        self.sas
            .keys()
            .filter_map(|&id| self.export_sa(now, id))
            .collect()
    }

    /// Another cluster member's SA `st` is kept here as a replica: the engine never hands out
    /// its IKE or CHILD SA ids (a member that restarted counts from 1 again, while SAs it
    /// created before, adopted by the others since, still carry its member id).
    pub fn observe_ids(&mut self, st: &IkeSaState) {
        self.ids.observe(st.id.0);
        for c in &st.children {
            self.ids.observe(c.id.0);
        }
    }

    /// Installs an exported IKE SA under its ids and SPIs, re-arms its timers from the durations
    /// and emits `IkeSaUp` plus one `ChildSaUp` per CHILD SA (`replaces: None`), as after a
    /// negotiation. The peer is resolved by name. Nothing changes when an error is returned.
    pub fn import_sa(&mut self, now: Instant, st: IkeSaState) -> Result<IkeSaId, ImportError> {
        let peer = self
            .peer_by_name(&st.peer_name)
            .ok_or_else(|| ImportError::UnknownPeer(st.peer_name.clone()))?;
        let our_spi = if st.initiator { st.spi_i } else { st.spi_r };
        if self.sas.contains_key(&st.id) {
            return Err(ImportError::IkeSaIdInUse(st.id.0));
        }
        if our_spi == 0 || st.spi_i == 0 || st.spi_r == 0 || self.by_spi.contains_key(&our_spi) {
            return Err(ImportError::IkeSpiInUse(our_spi));
        }
        for (n, c) in st.children.iter().enumerate() {
            if self.child_index.contains_key(&c.id) || st.children[..n].iter().any(|o| o.id == c.id)
            {
                return Err(ImportError::ChildSaIdInUse(c.id.0));
            }
            let taken = self
                .sas
                .values()
                .any(|sa| sa.children.iter().any(|o| o.spi_in == c.spi_in))
                || st.children[..n].iter().any(|o| o.spi_in == c.spi_in);
            if c.spi_in < 0x100 || taken {
                return Err(ImportError::EspSpiInUse(c.spi_in));
            }
        }
        check_keys(&st)?;
        let material = IkeKeyMaterial {
            sk_d: st.sk_d.clone(),
            sk_ai: st.sk_ai.clone(),
            sk_ar: st.sk_ar.clone(),
            sk_ei: st.sk_ei.clone(),
            sk_er: st.sk_er.clone(),
            sk_pi: st.sk_pi.clone(),
            sk_pr: st.sk_pr.clone(),
        };
        let keys = crate::exchange::init::sa_keys(&st.algs, material, st.initiator)
            .map_err(|_| ImportError::InvalidKey("IKE cipher rejected the key"))?;
        for c in &st.children {
            // The data plane builds these ciphers from ChildSaUp: refuse what it would refuse.
            let (ii, io) = (c.integ_key_in.as_slice(), c.integ_key_out.as_slice());
            CipherKey::new(c.algs.encr, &c.key_in, c.algs.integ.map(|g| (g, ii)))
                .and_then(|_| {
                    CipherKey::new(c.algs.encr, &c.key_out, c.algs.integ.map(|g| (g, io)))
                })
                .map_err(|_| ImportError::InvalidKey("ESP cipher rejected the key"))?;
        }

        let id = st.id;
        let mut sa = IkeSa::new(id, peer, st.initiator, now, st.local, st.remote);
        sa.state = IkeState::Established;
        sa.announced = true;
        sa.spi_i = st.spi_i;
        sa.spi_r = st.spi_r;
        sa.nat_local = st.nat_local;
        sa.nat_remote = st.nat_remote;
        sa.mobike = crate::mobike::MobikeSa {
            peer_offered: st.mobike,
            negotiated: st.mobike,
            decides: st.mobike_decides,
            newest_update: None,
        };
        sa.algs = Some(st.algs);
        sa.keys = Some(keys);
        sa.ni = st.ni.clone();
        sa.nr = st.nr.clone();
        sa.next_msg_id = st.next_msg_id;
        sa.peer_msg_id = st.peer_msg_id;
        sa.last_response = st
            .last_response
            .as_ref()
            .map(|r| (r.msg_id, r.datagrams.clone()));
        sa.pending = st.outstanding.as_ref().map(|o| Pending {
            msg_id: o.msg_id,
            msgs: o.datagrams.clone(),
            next_at: now + o.retransmit_in,
            timeout: o.timeout,
            tries: o.tries,
            kind: match &o.kind {
                OutstandingKind::Liveness => Request::Liveness,
                OutstandingKind::DeleteChildren(v) => Request::Delete(v.clone()),
                OutstandingKind::DeleteIke => Request::DeleteIke,
            },
        });
        sa.tasks = st.tasks.iter().cloned().map(Task::from).collect();
        sa.frag.size = st.fragment_size;
        sa.established_at = Some(ago(now, st.established_for));
        sa.rekey_at = st.rekey_in.map(|d| now + d);
        sa.expire_at = st.expire_in.map(|d| now + d);
        sa.retry_at = st.retry_in.map(|d| now + d);
        sa.last_rx = ago(now, st.since_rx);
        sa.last_tx = ago(now, st.since_tx);
        self.ids.observe(id.0);
        let mut ups = Vec::with_capacity(st.children.len());
        for c in &st.children {
            self.ids.observe(c.id.0);
            let keys = ChildKeyMat {
                key_in: c.key_in.clone(),
                integ_key_in: c.integ_key_in.clone(),
                key_out: c.key_out.clone(),
                integ_key_out: c.integ_key_out.clone(),
            };
            ups.push(ChildSaKeys {
                peer,
                child: c.id,
                ike_sa: id,
                replaces: None,
                spi_in: c.spi_in,
                spi_out: c.spi_out,
                encr: c.algs.encr,
                integ: c.algs.integ,
                key_in: keys.key_in.to_vec(),
                integ_key_in: keys.integ_key_in.to_vec(),
                key_out: keys.key_out.to_vec(),
                integ_key_out: keys.integ_key_out.to_vec(),
                esn: c.algs.esn,
                local_ts: c.local_ts.clone(),
                remote_ts: c.remote_ts.clone(),
                local: st.local,
                remote: st.remote,
                encap: st.nat_local || st.nat_remote,
            });
            sa.children.push(ChildSa {
                id: c.id,
                spi_in: c.spi_in,
                spi_out: c.spi_out,
                algs: c.algs,
                local_ts: c.local_ts.clone(),
                remote_ts: c.remote_ts.clone(),
                keys,
                created: ago(now, c.installed_for),
                rekey_at: c.rekey_in.map(|d| now + d),
                expire_at: c.expire_in.map(|d| now + d),
                state: match c.phase {
                    ChildPhase::Installed => ChildState::Installed,
                    ChildPhase::Rekeyed => ChildState::Rekeyed,
                    ChildPhase::Deleting => ChildState::Deleting,
                },
                collision: None,
                own_rekey: None,
            });
            self.child_index.insert(c.id, id);
        }
        self.by_spi.insert(our_spi, id);
        self.sas.insert(id, sa);
        if let Some(l) = &st.ra_lease {
            self.claim_lease(now, id, peer, l);
        }
        tracing::debug!(ike_sa = id.0, peer = %st.peer_name, "IKE SA imported");
        self.events
            .push_back(IkeEvent::IkeSaUp { peer, ike_sa: id });
        self.events.extend(ups.into_iter().map(IkeEvent::ChildSaUp));
        self.run_tasks(now, id);
        self.refresh_timers();
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_tasks_round_trip() {
        let all = [
            Task::NewChild,
            Task::RekeyChild(ChildSaId(7)),
            Task::RekeyIke,
            Task::DeleteChild(vec![ChildSaId(1), ChildSaId(2)]),
            Task::DeleteIke,
            Task::Liveness,
        ];
        for t in all {
            assert_eq!(Task::from(QueuedTask::from(&t)), t);
        }
    }

    #[test]
    fn ago_saturates() {
        let now = Instant::now();
        assert_eq!(
            ago(now, Duration::from_secs(1)) + Duration::from_secs(1),
            now
        );
        let _ = ago(now, Duration::MAX);
    }
}
