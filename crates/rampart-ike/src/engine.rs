//! The endpoint: demultiplexing by SPI, the public API, SA teardown.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::policy::StartAction;
use rampart_crypto::Rng;
use rampart_wire::ike::{exchange, parse, Message, Payload};

use crate::config::{ChildSaId, IdAlloc, IkeConfig, IkeSaId};
use crate::event::{DownReason, IkeEvent};
use crate::peers::{PeerId, PeerSlab};
use crate::policy::PeerPolicy;
use crate::sa::{IkeState, Task};
use crate::sk;
use crate::spi::SpiGenerator;
use crate::table::{SaTable, TimerQueue};

/// Why [`Ike::update_peer`] refused a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerUpdateError {
    #[error("no peer {0}")]
    UnknownPeer(PeerId),
    #[error("peer {0}: the change affects its SAs (remove and add the peer instead)")]
    SaRelevantChange(PeerId),
    #[error("another peer is named \"{0}\"")]
    DuplicateName(String),
}

/// How long a responder keeps a half-open SA, or a failed SA to answer retransmissions.
pub(crate) const HALF_OPEN: Duration = Duration::from_secs(30);

/// All IKE SAs of one gateway: the endpoint (demultiplexing by SPI) plus the SAs.
///
/// Sans-IO: feed datagrams and time in, drain [`IkeEvent`]s with [`Ike::poll_event`], and call
/// [`Ike::handle_timeout`] at [`Ike::poll_timeout`].
pub struct Ike {
    pub(crate) cfg: IkeConfig,
    /// The one peer list of the gateway. An SA's `peer` may stop resolving (the peer was removed
    /// while the SA finished its Delete): every lookup copes with `None`.
    pub(crate) peers: PeerSlab,
    pub(crate) rng: Rng,
    pub(crate) ids: IdAlloc,
    /// Draws every SPI we allocate (member id in the top bits).
    pub(crate) spis: SpiGenerator,
    pub(crate) sas: SaTable,
    /// One deadline per SA; see [`crate::table`].
    pub(crate) timers: TimerQueue,
    /// Our IKE SPI -> SA.
    pub(crate) by_spi: HashMap<u64, IkeSaId>,
    /// Responder SAs by (peer address, initiator SPI): answers retransmitted IKE_SA_INIT requests.
    pub(crate) half_open: HashMap<(SocketAddr, u64), IkeSaId>,
    pub(crate) child_index: HashMap<ChildSaId, IkeSaId>,
    pub(crate) events: VecDeque<IkeEvent>,
    /// SAs whose task queue changed while handling another SA's message.
    pub(crate) kick: Vec<IkeSaId>,
    /// `start_action = always` peers waiting to be tried again after a failed negotiation.
    pub(crate) retries: crate::retry::Retries,
    /// Cookie secrets and counters of the IKE_SA_INIT defences.
    pub(crate) dos: crate::cookie::DosGuard,
    /// Counters of NAT mapping following.
    pub(crate) nat: crate::nat_follow::NatFollowStats,
    /// MOBIKE counters.
    pub(crate) mobike: crate::mobike::MobikeStats,
    /// Which SAs changed, for a cluster member's sync (off by default).
    pub(crate) tracker: crate::sync::ChangeTracker,
    /// A standby cluster member: no datagrams, no initiation, no retries.
    pub(crate) passive: bool,
    /// Office Mode pools of the remote-access gateway peers.
    pub(crate) ra: crate::ra::RaPools,
}

impl Ike {
    /// # Panics
    /// When `config.member_id` exceeds [`crate::MAX_MEMBER_ID`] (configuration validation refuses it).
    pub fn new(config: IkeConfig, rng: Rng) -> Ike {
        let ids = IdAlloc::new(config.member_id);
        let spis = SpiGenerator::new(config.member_id).unwrap_or_else(|| {
            panic!(
                "member_id {} out of range 0..={}",
                config.member_id,
                crate::MAX_MEMBER_ID
            )
        });
        Ike {
            cfg: config,
            peers: PeerSlab::default(),
            rng,
            ids,
            spis,
            sas: SaTable::default(),
            timers: TimerQueue::default(),
            by_spi: HashMap::new(),
            half_open: HashMap::new(),
            child_index: HashMap::new(),
            events: VecDeque::new(),
            kick: Vec::new(),
            retries: crate::retry::Retries::default(),
            dos: crate::cookie::DosGuard::default(),
            nat: crate::nat_follow::NatFollowStats::default(),
            mobike: crate::mobike::MobikeStats::default(),
            tracker: crate::sync::ChangeTracker::default(),
            passive: false,
            ra: crate::ra::RaPools::default(),
        }
    }

    pub fn config(&self) -> &IkeConfig {
        &self.cfg
    }

    /// Replaces the engine settings (live reload): retransmission, keepalive, fragmentation,
    /// cookie and half-open limits and the local domain apply from now on. SAs keep their ids,
    /// so the member id must stay; the node refuses a reload that changes it or the ports.
    pub fn set_config(&mut self, config: IkeConfig) {
        debug_assert_eq!(config.member_id, self.cfg.member_id, "member id is fixed");
        self.cfg = config;
        self.sas.touch_all();
        self.refresh_timers();
    }

    /// Adds a peer. Nothing is initiated: the caller applies the start action.
    pub fn add_peer(&mut self, policy: PeerPolicy) -> PeerId {
        let id = self.peers.insert(policy);
        self.ra_peer_added(id);
        id
    }

    /// Removes a peer; its id is dead from now on. Every IKE SA of the peer is deleted: an
    /// established one sends an INFORMATIONAL Delete (retransmitted as usual, after a request
    /// still in flight), one still connecting is dropped. `ChildSaDown` for each CHILD SA and
    /// `IkeSaDown { reason: Deleted }` are reported now, not when the peer answers.
    pub fn remove_peer(&mut self, now: Instant, id: PeerId) -> Option<PeerPolicy> {
        let policy = self.peers.remove(id)?;
        self.retries.clear(id);
        self.ra.pools.remove(&id);
        self.ra.last_vip.remove(&id);
        let ids: Vec<IkeSaId> = self
            .sas
            .values()
            .filter(|s| s.peer == id)
            .map(|s| s.id)
            .collect();
        for sa_id in ids {
            self.orphan_sa(now, sa_id);
        }
        self.refresh_timers();
        Some(policy)
    }

    /// Replaces a peer's policy in place. Refused with [`PeerUpdateError`] unless the new policy
    /// is [`PeerPolicy::sa_relevant_eq`] to the old one (then existing SAs stay valid as they
    /// are); anything else is a remove and an add.
    pub fn update_peer(&mut self, id: PeerId, policy: PeerPolicy) -> Result<(), PeerUpdateError> {
        let name_taken = self
            .peers
            .iter()
            .any(|(other, p)| other != id && p.name == policy.name);
        let Some(current) = self.peers.get_mut(id) else {
            return Err(PeerUpdateError::UnknownPeer(id));
        };
        if !current.sa_relevant_eq(&policy) {
            return Err(PeerUpdateError::SaRelevantChange(id));
        }
        if name_taken {
            return Err(PeerUpdateError::DuplicateName(policy.name));
        }
        *current = policy;
        // The liveness interval may have changed: every SA of the peer gets a new deadline.
        self.sas.touch_all();
        self.refresh_timers();
        Ok(())
    }

    pub fn peer(&self, id: PeerId) -> Option<&PeerPolicy> {
        self.peers.get(id)
    }

    /// The live peer named `name` (names are unique among live peers).
    pub fn peer_by_name(&self, name: &str) -> Option<PeerId> {
        self.peers
            .iter()
            .find(|(_, p)| p.name == name)
            .map(|(id, _)| id)
    }

    /// Live peers in a stable order (by slot; a new peer may take the slot of a removed one).
    pub fn peers(&self) -> impl Iterator<Item = (PeerId, &PeerPolicy)> {
        self.peers.iter()
    }

    /// An SA whose peer was removed: report it down now; an established one still deletes
    /// itself at the peer (no CHILD SAs, no IkeSaDown left to report when that finishes).
    fn orphan_sa(&mut self, now: Instant, id: IkeSaId) {
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        let can_delete =
            sa.keys.is_some() && matches!(sa.state, IkeState::Established | IkeState::Rekeyed);
        if !can_delete {
            self.remove_sa(id, Some(DownReason::Deleted));
            return;
        }
        for c in sa.children.drain(..) {
            self.child_index.remove(&c.id);
            self.events.push_back(IkeEvent::ChildSaDown {
                peer: sa.peer,
                child: c.id,
                spi_in: c.spi_in,
                spi_out: c.spi_out,
            });
        }
        if sa.announced {
            self.events.push_back(IkeEvent::IkeSaDown {
                peer: sa.peer,
                ike_sa: id,
                reason: DownReason::Deleted,
            });
        }
        // The state stays: run_tasks starts the Delete from Established or Rekeyed.
        sa.announced = false;
        sa.rekey_at = None;
        sa.expire_at = Some(now + HALF_OPEN);
        sa.collision = None;
        sa.tasks.clear();
        sa.tasks.push_back(Task::DeleteIke);
        self.run_tasks(now, id);
    }

    /// An IKE message (non-ESP marker already stripped) from `remote` to our `local` address.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        msg: &[u8],
    ) {
        if self.passive {
            return;
        }
        self.datagram(now, local, remote, msg);
        self.refresh_timers();
    }

    fn datagram(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, msg: &[u8]) {
        let m = match parse(msg) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(%remote, "dropping unparsable IKE message: {e}");
                return;
            }
        };
        let h = m.header;
        if h.exchange == exchange::IKE_SA_INIT {
            if !h.is_response() {
                if h.spi_r == 0 && h.message_id == 0 {
                    self.init_request(now, local, remote, msg, m);
                }
            } else if let Some(&id) = self.by_spi.get(&h.spi_i) {
                self.init_response(now, id, msg, m);
            }
            self.run_all_tasks(now);
            return;
        }
        let our_spi = if h.is_initiator() { h.spi_r } else { h.spi_i };
        let Some(&id) = self.by_spi.get(&our_spi) else {
            tracing::debug!(%remote, "no IKE SA for SPI {our_spi:016x}");
            return;
        };
        self.handle_protected(now, id, local, remote, msg, m);
        self.run_tasks(now, id);
        while let Some(k) = self.kick.pop() {
            self.run_tasks(now, k);
        }
    }

    fn handle_protected(
        &mut self,
        now: Instant,
        id: IkeSaId,
        local: SocketAddr,
        remote: SocketAddr,
        msg: &[u8],
        m: Message,
    ) {
        let h = m.header;
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        // The peer's idea of who initiated must be the opposite of ours, and both SPIs must match.
        if h.is_initiator() == sa.initiator || h.spi_i != sa.spi_i || h.spi_r != sa.spi_r {
            return;
        }
        let Some(keys) = sa.keys.as_ref() else { return };
        let response = h.is_response();
        if response {
            match &sa.pending {
                Some(p) if p.msg_id == h.message_id => {}
                _ => return,
            }
        } else if h.message_id != sa.peer_msg_id {
            // RFC 7383 2.6.1: of a fragmented retransmission only fragment 1 triggers the resend.
            let first_fragment = !matches!(
                m.payloads.last(),
                Some(Payload::Skf { number, .. }) if *number != 1
            );
            if let Some((mid, msgs)) = &sa.last_response {
                if *mid == h.message_id && first_fragment {
                    tracing::debug!(ike_sa = id.0, mid, "retransmitting cached response");
                    for bytes in msgs {
                        self.events.push_back(IkeEvent::Transmit {
                            local,
                            remote,
                            msg: bytes.clone(),
                        });
                    }
                    sa.last_tx = now;
                }
            }
            return;
        }
        let inner = match m.payloads.last().cloned() {
            Some(Payload::Sk { first_inner, body }) => {
                match sk::open(msg, first_inner, body, &keys.inn) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::debug!(ike_sa = id.0, "dropping message: {e}");
                        return;
                    }
                }
            }
            Some(Payload::Skf {
                first_inner,
                number,
                total,
                body,
            }) if sa.frag.size.is_some() => {
                let f = crate::fragment::Fragment {
                    msg,
                    header: h,
                    first_inner,
                    number,
                    total,
                    body,
                };
                match sa.frag.accept(now, f, &keys.inn) {
                    Ok(Some(p)) => p,
                    Ok(None) => return,
                    Err(e) => {
                        tracing::debug!(ike_sa = id.0, number, total, "dropping fragment: {e}");
                        return;
                    }
                }
            }
            _ => {
                tracing::debug!(
                    ike_sa = id.0,
                    "unprotected or unexpected message after IKE_SA_INIT dropped"
                );
                return;
            }
        };
        if inner
            .iter()
            .any(|p| matches!(p, Payload::Unknown { critical: true, .. }))
            && !response
        {
            let kind = inner.iter().find_map(|p| match p {
                Payload::Unknown {
                    kind,
                    critical: true,
                    ..
                } => Some(*kind),
                _ => None,
            });
            let n = crate::msg::notify(
                rampart_wire::ike::notify::UNSUPPORTED_CRITICAL_PAYLOAD,
                vec![kind.unwrap_or(0)],
            );
            let _ = sa.send_response(
                now,
                &mut self.rng,
                &mut self.events,
                h.exchange,
                h.message_id,
                &[n],
                (local, remote),
            );
            return;
        }
        sa.last_rx = now;
        // An address update moves the SA itself (see `mobike`), never by mapping following.
        let update = !response && Ike::is_update_request(&inner);
        if !response
            && !update
            && sa.encap()
            && (sa.remote != remote || sa.local != local)
            && sa.state != IkeState::Connecting
        {
            // An authenticated request from a new address: the peer's NAT mapping moved.
            self.move_sa(id, local, remote);
        } else if !response && sa.state == IkeState::Connecting && sa.encap() {
            sa.remote = remote;
            sa.local = local;
        } else if response {
            self.nat_check_answered(id, h.message_id, local, remote);
        }
        if h.exchange == exchange::IKE_AUTH {
            self.mobike_auth_seen(id, &inner, response);
        }
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        let to = (local, remote);
        if response {
            let Some(p) = sa.pending.take() else { return };
            match h.exchange {
                exchange::IKE_AUTH => self.auth_response(now, id, p.kind, &inner),
                exchange::CREATE_CHILD_SA => self.create_child_response(now, id, p.kind, &inner),
                exchange::INFORMATIONAL => self.info_response(now, id, p.kind, &inner, to),
                _ => {}
            }
        } else {
            let mid = h.message_id;
            match h.exchange {
                exchange::IKE_AUTH => self.auth_request(now, id, mid, &inner, to),
                exchange::CREATE_CHILD_SA => self.create_child_request(now, id, mid, &inner, to),
                exchange::INFORMATIONAL => self.info_request(now, id, mid, &inner, to),
                _ => {}
            }
        }
    }

    pub fn poll_event(&mut self) -> Option<IkeEvent> {
        self.events.pop_front()
    }

    /// Start action "always", or after a dead peer: bring up an IKE SA with a CHILD SA.
    pub fn initiate(&mut self, now: Instant, peer: PeerId) {
        self.initiate_sa(now, peer);
        self.refresh_timers();
    }

    fn initiate_sa(&mut self, now: Instant, peer: PeerId) {
        if self.passive || self.peers.get(peer).is_none_or(|p| p.is_template()) {
            return;
        }
        let existing = self.sas.values_mut().find(|s| {
            s.peer == peer && matches!(s.state, IkeState::Connecting | IkeState::Established)
        });
        match existing {
            Some(sa) if sa.state == IkeState::Established => {
                let busy = sa
                    .children
                    .iter()
                    .any(|c| c.state != crate::child::ChildState::Deleting)
                    || sa.tasks.contains(&Task::NewChild)
                    || matches!(
                        sa.pending.as_ref().map(|p| &p.kind),
                        Some(crate::retransmit::Request::CreateChild(_))
                    );
                if !busy {
                    sa.tasks.push_back(Task::NewChild);
                    let id = sa.id;
                    self.run_tasks(now, id);
                }
            }
            Some(_) => {}
            None => self.start_ike_sa(now, peer),
        }
    }

    /// Traffic hit a peer with no CHILD SA ("on traffic").
    pub fn acquire(&mut self, now: Instant, peer: PeerId) {
        self.initiate(now, peer);
    }

    /// The data plane hit a soft byte/packet limit of this CHILD SA.
    pub fn rekey_child(&mut self, now: Instant, child: ChildSaId) {
        let Some(&id) = self.child_index.get(&child) else {
            return;
        };
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        let queued = sa.tasks.contains(&Task::RekeyChild(child));
        if let Some(c) = sa.child_mut(child) {
            if c.state == crate::child::ChildState::Installed && !queued {
                c.rekey_at = None;
                sa.tasks.push_back(Task::RekeyChild(child));
            }
        }
        self.run_tasks(now, id);
        self.refresh_timers();
    }

    /// Rekeys an IKE SA now (operator request; normally driven by `ike_lifetime`).
    pub fn rekey_ike(&mut self, now: Instant, ike_sa: IkeSaId) {
        let Some(sa) = self.sas.get_mut(&ike_sa) else {
            return;
        };
        if sa.state == IkeState::Established && !sa.tasks.contains(&Task::RekeyIke) {
            sa.rekey_at = None;
            sa.tasks.push_back(Task::RekeyIke);
        }
        self.run_tasks(now, ike_sa);
        self.refresh_timers();
    }

    /// Something outside IKE (Multiple Entry Points probing) found `peer` dead: every IKE SA
    /// with it is removed as if liveness had timed out (`IkeSaDown` with `Timeout`,
    /// `PeerDead`, and the start action `always` initiates again), without waiting for
    /// retransmissions and without a Delete. Returns how many SAs were removed.
    pub fn peer_dead(&mut self, now: Instant, peer: PeerId) -> usize {
        let ids: Vec<IkeSaId> = self
            .sas
            .values()
            .filter(|s| s.peer == peer)
            .map(|s| s.id)
            .collect();
        for &id in &ids {
            self.fail_sa(now, id, DownReason::Timeout);
        }
        self.refresh_timers();
        ids.len()
    }

    /// Deletes an IKE SA with its CHILD SAs (INFORMATIONAL Delete); events follow on the response.
    pub fn delete_ike_sa(&mut self, now: Instant, ike_sa: IkeSaId) {
        let Some(sa) = self.sas.get_mut(&ike_sa) else {
            return;
        };
        if sa.state == IkeState::Established {
            sa.tasks.clear();
            sa.tasks.push_back(Task::DeleteIke);
        }
        self.run_tasks(now, ike_sa);
        self.refresh_timers();
    }

    /// Deletes one CHILD SA (INFORMATIONAL Delete); `ChildSaDown` follows on the response.
    pub fn delete_child_sa(&mut self, now: Instant, child: ChildSaId) {
        let Some(&id) = self.child_index.get(&child) else {
            return;
        };
        if let Some(sa) = self.sas.get_mut(&id) {
            sa.tasks.push_back(Task::DeleteChild(vec![child]));
        }
        self.run_tasks(now, id);
        self.refresh_timers();
    }

    /// Inbound ESP seen on this CHILD SA: the peer is alive.
    pub fn child_traffic(&mut self, now: Instant, child: ChildSaId) {
        if let Some(sa) = self
            .child_index
            .get(&child)
            .and_then(|id| self.sas.get_mut(id))
        {
            if sa.last_rx < now {
                sa.last_rx = now;
            }
        }
        self.refresh_timers();
    }

    /// Sends a response on IKE SA `id` if it still exists. A failure to seal is logged at debug
    /// level: the peer retransmits its request and gets another try.
    pub(crate) fn respond(
        &mut self,
        now: Instant,
        id: IkeSaId,
        exchange: u8,
        message_id: u32,
        payloads: &[rampart_wire::ike::Payload],
        to: (std::net::SocketAddr, std::net::SocketAddr),
    ) {
        if let Some(sa) = self.sas.get_mut(&id) {
            if let Err(e) = sa.send_response(
                now,
                &mut self.rng,
                &mut self.events,
                exchange,
                message_id,
                payloads,
                to,
            ) {
                tracing::debug!(ike_sa = id.0, "response not sent: {e}");
            }
        }
    }

    /// Removes an IKE SA with everything in it. `reason: None` removes silently (an SA that was
    /// replaced, or a half-open responder SA).
    pub(crate) fn remove_sa(&mut self, id: IkeSaId, reason: Option<DownReason>) {
        let Some(mut sa) = self.sas.remove(&id) else {
            return;
        };
        if let Some(held) = sa.lease.take() {
            self.release_lease(id, held);
        }
        self.by_spi.remove(&sa.our_spi());
        self.half_open.retain(|_, v| *v != id);
        for c in &sa.children {
            self.child_index.remove(&c.id);
            self.events.push_back(IkeEvent::ChildSaDown {
                peer: sa.peer,
                child: c.id,
                spi_in: c.spi_in,
                spi_out: c.spi_out,
            });
        }
        if let Some(reason) = reason {
            if sa.announced || sa.state == IkeState::Connecting {
                self.events.push_back(IkeEvent::IkeSaDown {
                    peer: sa.peer,
                    ike_sa: id,
                    reason,
                });
            }
        }
    }

    /// The SA failed (timeout, error): report it, and for a dead peer apply the start action.
    pub(crate) fn fail_sa(&mut self, now: Instant, id: IkeSaId, reason: DownReason) {
        let Some(sa) = self.sas.get(&id) else { return };
        let peer = sa.peer;
        let quiet = matches!(sa.state, IkeState::Rekeyed | IkeState::Deleting);
        let quiet_reason = if sa.state == IkeState::Rekeyed {
            DownReason::Rekeyed
        } else {
            DownReason::Deleted
        };
        tracing::debug!(ike_sa = id.0, ?reason, "IKE SA failed");
        self.remove_sa(id, Some(if quiet { quiet_reason } else { reason }));
        if quiet || matches!(reason, DownReason::Deleted | DownReason::DeletedByPeer) {
            return;
        }
        let others = self.sas.values().any(|s| {
            s.peer == peer && matches!(s.state, IkeState::Connecting | IkeState::Established)
        });
        let always = self
            .peers
            .get(peer)
            .is_some_and(|p| p.start_action == StartAction::Always);
        if reason == DownReason::Timeout {
            self.events.push_back(IkeEvent::PeerDead { peer });
            if !others && always {
                self.start_ike_sa(now, peer);
            }
        } else if !others && always {
            // Authentication, proposals, an error notify: trying again at once would loop
            // against a misconfiguration, never trying again would leave the tunnel down.
            let wait = self.retries.failed(now, peer);
            tracing::info!(%peer, ?reason, "negotiation failed; retrying in {}s", wait.as_secs());
        }
    }

    pub(crate) fn run_all_tasks(&mut self, now: Instant) {
        let ids: Vec<IkeSaId> = self.sas.keys().copied().collect();
        for id in ids {
            self.run_tasks(now, id);
        }
    }

    pub(crate) fn alloc_ike_spi(&mut self) -> u64 {
        loop {
            let s = self.spis.ike_spi(&mut self.rng);
            if !self.by_spi.contains_key(&s) {
                return s;
            }
        }
    }

    pub(crate) fn alloc_child_spi(&mut self) -> u32 {
        loop {
            let s = self.spis.esp_spi(&mut self.rng);
            if !self
                .sas
                .values()
                .any(|sa| sa.children.iter().any(|c| c.spi_in == s))
            {
                return s;
            }
        }
    }

    pub(crate) fn nonce(&mut self) -> Vec<u8> {
        let mut n = vec![0u8; crate::keys::NONCE_LEN];
        self.rng.fill(&mut n);
        n
    }

    /// `lifetime` minus up to 10% random jitter.
    pub(crate) fn jittered(&mut self, lifetime: Duration) -> Duration {
        let max = lifetime.as_millis() as u64 / 10;
        let j = if max == 0 {
            0
        } else {
            self.rng.next_u64() % max
        };
        lifetime.saturating_sub(Duration::from_millis(j))
    }

    pub(crate) fn retransmit_timeout(&self) -> Duration {
        self.cfg.retransmit_timeout
    }
}
