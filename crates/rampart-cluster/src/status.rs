//! What `rampart cluster status` and `rampart cluster sync-stats` show. Plain counters and
//! gauges with stable names (these structs are the JSON document).

use serde::{Deserialize, Serialize};

use crate::{Distribution, FlushAckStats, LinkStats, MemberId, OwnershipMap, UpdateRequestStats};

/// A member's state as it announces it in its heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemberState {
    /// Started, has not heard the cluster yet.
    Init,
    /// Pulling the full sync and catching up with the delta stream; not eligible.
    Syncing,
    /// In sync and eligible to take over.
    Standby,
    /// Owns the virtual addresses and the traffic.
    Active,
    /// Not eligible: a monitored interface is down or an administrator set it down.
    Down,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Active,
    Standby,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub name: String,
    pub mode: String,
    pub member_id: MemberId,
    pub state: MemberState,
    /// Why this member is in its state (e.g. "interface eth1 down", "admin down").
    pub reason: String,
    pub members: Vec<MemberStatus>,
    /// Every virtual address with the member that owns it (as this member believes).
    pub virtual_addresses: Vec<VipStatus>,
    pub failovers: u64,
    /// Load Sharing only (`mode` "load-sharing").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_sharing: Option<LoadSharingStatus>,
}

/// The Load Sharing part of `rampart cluster status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadSharingStatus {
    pub distribution: Distribution,
    /// The member the election picked (owns the virtual addresses in unicast distribution and
    /// serves full syncs), as this member sees it.
    pub pivot: Option<MemberId>,
    /// Every configured member, up or not, its expected share and what this member counted
    /// for itself (the other members' counts are in their own status).
    pub ownership: OwnershipMap,
    /// Packets this member forwarded to the owner of their flow or SA, and received so.
    pub forwarded_sent: u64,
    pub forwarded_received: u64,
    /// Forwarded packets refused: no live owner to send to, too large, or the receive queue
    /// full.
    pub forwarded_dropped: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipStatus {
    pub interface: String,
    pub address: String,
    pub owner: Option<MemberId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    pub id: MemberId,
    pub sync_address: String,
    pub priority: u16,
    /// Its announced state; `Down` when it has not been heard for the dead time.
    pub state: MemberState,
    pub alive: bool,
    /// Milliseconds since its last valid datagram; `None` if never heard.
    pub last_heartbeat_ms: Option<u64>,
    /// Monitored interfaces it reports down.
    pub interfaces_down: Vec<String>,
    pub local: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStats {
    pub member_id: MemberId,
    pub records_sent: u64,
    pub records_received: u64,
    pub records_applied: u64,
    pub datagrams_sent: u64,
    pub datagrams_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Records waiting to be packed into a datagram.
    pub send_queue: usize,
    /// Records sent and not yet acknowledged by every live receiver.
    pub retransmit_queue: usize,
    pub retransmitted: u64,
    /// NACK ranges this member sent (it missed records) and received (others missed ours).
    pub nacks_sent: u64,
    pub nacks_received: u64,
    /// Records that could not be recovered (the sender no longer had them): each caused a
    /// resync, never silence.
    pub lost: u64,
    pub resyncs: u64,
    pub full_syncs_served: u64,
    pub full_syncs_received: u64,
    /// Datagrams refused: failed authentication, replayed, truncated, unknown sender, wrong
    /// cluster.
    pub dropped_auth: u64,
    pub dropped_replay: u64,
    pub dropped_malformed: u64,
    pub dropped_unknown_member: u64,
    pub peers: Vec<PeerSyncStats>,
    /// Flush-and-Ack (Load Sharing, routed distribution with `flush_ack`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush_ack: Option<FlushAckStats>,
    /// Update requests this member sent (Load Sharing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_requests: Option<UpdateRequestStats>,
    /// Update requests other members sent us and we answered (Load Sharing).
    #[serde(default)]
    pub update_queries_answered: u64,
    /// Update requests from other members refused because too many were waiting for the node.
    #[serde(default)]
    pub update_queries_dropped: u64,
    /// Per sync link, in preference order (link 0 is the member's `sync_address`).
    #[serde(default)]
    pub links: Vec<LinkStats>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerSyncStats {
    pub id: MemberId,
    /// Our records it has acknowledged (its cumulative ack).
    pub acked_seq: u64,
    /// Its records we have received in order.
    pub received_seq: u64,
    /// Its records received out of order, waiting for a gap to be filled.
    pub reorder_queue: usize,
    pub nacks_sent: u64,
    pub nacks_received: u64,
    pub retransmitted: u64,
    pub lost: u64,
    pub resyncs: u64,
}
