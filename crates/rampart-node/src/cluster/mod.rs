//! The gateway as a cluster member: the records it syncs (codec), the replicas a standby keeps,
//! takeover and demotion. The cluster engine (`rampart-cluster`) moves the records; this module
//! says what they mean.

/// An administrator's request to the cluster (`rampart cluster switchover|down|up`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterCommand {
    /// Hand the active role to member `to` (or the best eligible one) without losing anything.
    Switchover { to: Option<u8> },
    /// Administrative down: give up the active role, stay out of elections.
    Down,
    /// Back from administrative down.
    Up,
}

/// How far a full-sync stream fed to `Node::full_sync_input` has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullSyncProgress {
    /// Keep reading the stream.
    More,
    /// The snapshot is complete and applied; close the stream.
    Done,
}

pub(crate) const NO_CLUSTER: &str = "no cluster configured";

mod coalesce;
pub mod codec;
mod held;
mod replica;
pub(crate) mod share;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rampart_cluster::{Cluster, ClusterConfig, FullSyncDecoder};
use rampart_ike::{ChildSaId, IkeSaId};
use rampart_inspect::{FlowTuple, Side};

pub(crate) use coalesce::Pending;
pub(crate) use held::HeldPool;
pub(crate) use replica::Replicas;
pub(crate) use share::LoadShare;
pub use share::{ForwardCounts, LoadSharingStats};

/// Undrained connection changes a member keeps before it counts an overflow (a resync).
pub(crate) const CHANGE_STREAM_LIMIT: usize = 1 << 20;

/// The gateway's cluster state: the engine and what the node keeps around it.
pub(crate) struct ClusterMember {
    pub engine: Cluster,
    /// Where cluster datagrams arrive and leave from: this member's address on each sync
    /// link (index = link id; 0 is its `sync_address`).
    pub sync_links: Vec<SocketAddr>,
    /// This member owns the virtual addresses and the traffic.
    pub active: bool,
    /// Standby: the active member's SAs as values, imported on takeover.
    pub replicas: Replicas,
    /// Active: connections not synced (yet): their service has `sync = false`, or
    /// `sync_after` has not passed.
    pub unsynced: HashSet<u64>,
    /// Active: connections to sync once `sync_after` passed, by due time.
    pub delayed: BTreeMap<(Instant, u64), (Side, FlowTuple)>,
    /// Active: connection changes in their hold window, merged per connection id.
    pub pending: Pending,
    /// Active: IKE SAs the other members hold a copy of.
    pub synced_sas: HashSet<IkeSaId>,
    /// Active: the (next outbound sequence, highest inbound) last sent per tunnel.
    pub esp_sent: HashMap<ChildSaId, (u64, u64)>,
    pub next_esp_sync: Instant,
    /// Full-sync streams being read, per member.
    pub incoming: HashMap<u8, Incoming>,
    /// Takeovers of this member (for the log).
    pub takeovers: u64,
    /// Load Sharing: this member's own state; `None` in high availability.
    pub ls: Option<LoadShare>,
}

/// Whether a connection may be synced at all, and after how long (its service's `sync` and
/// `sync_after`).
pub(crate) fn sync_rule(
    inspector: &rampart_inspect::Inspector,
    c: &rampart_inspect::Connection,
) -> (bool, u64) {
    if c.service == rampart_inspect::NO_SERVICE {
        return (true, 0);
    }
    match inspector
        .rules()
        .config()
        .services
        .get(usize::from(c.service))
    {
        Some(s) => (s.sync, s.sync_after.as_millis() as u64),
        None => (true, 0),
    }
}

/// A full-sync stream being read.
#[derive(Default)]
pub(crate) struct Incoming {
    pub decoder: FullSyncDecoder,
    pub snapshot_seq: Option<u64>,
    pub records: u64,
}

impl ClusterMember {
    pub fn new(
        config: ClusterConfig,
        now: Instant,
        boot_id: u64,
        rng: rampart_crypto::Rng,
    ) -> Self {
        let sync_links = std::iter::once(config.me().sync_address)
            .chain(config.me().extra_sync_addresses.iter().copied())
            .collect();
        // With `switch_back` the engine starts a handover on its own, inside a timer: changes
        // held in the window at that instant would miss the handover, so nothing is held.
        // Load Sharing: another member may see the connection's next packet at once (the
        // SYN-ACK of a SYN that came through here): its changes are not held back either.
        let hold = if config.switch_back || config.mode == rampart_cluster::ClusterMode::LoadSharing
        {
            std::time::Duration::ZERO
        } else {
            coalesce::HOLD
        };
        let ls = (config.mode == rampart_cluster::ClusterMode::LoadSharing)
            .then(|| LoadShare::new(config.load_sharing.unwrap_or_default(), config.member_id));
        ClusterMember {
            ls,
            engine: Cluster::new(config, now, boot_id, rng),
            sync_links,
            active: false,
            replicas: Replicas::default(),
            unsynced: HashSet::new(),
            delayed: BTreeMap::new(),
            pending: Pending::new(hold, coalesce::PENDING_LIMIT),
            synced_sas: HashSet::new(),
            esp_sent: HashMap::new(),
            next_esp_sync: now,
            incoming: HashMap::new(),
            takeovers: 0,
        }
    }

    pub fn config(&self) -> &ClusterConfig {
        self.engine.config()
    }

    /// The sync link whose socket is bound to `local`, if any.
    pub fn link_of(&self, local: SocketAddr) -> Option<rampart_cluster::LinkId> {
        let i = self.sync_links.iter().position(|a| *a == local)?;
        rampart_cluster::LinkId::try_from(i).ok()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.engine.poll_timeout();
        let mut fold = |x: Instant| t = Some(t.map_or(x, |t| t.min(x)));
        if self.active {
            fold(self.next_esp_sync);
            if let Some((&(due, _), _)) = self.delayed.first_key_value() {
                fold(due);
            }
            if let Some(due) = self.pending.deadline() {
                fold(due);
            }
        }
        t
    }

    pub fn esp_interval(&self) -> Duration {
        self.config()
            .esp_sync_interval
            .max(Duration::from_millis(1))
    }
}
