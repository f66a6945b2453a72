//! The cluster engine's own configuration. `rampart-config` builds it from `[cluster]`; the
//! engine never sees TOML.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{
    TimeoutPolicy, DEFAULT_HOLD_DOWN, DEFAULT_HOLD_TIMEOUT, DEFAULT_MAX_HOLDS, DEFAULT_MAX_PENDING,
    DEFAULT_UPDATE_TIMEOUT,
};

/// A member's id inside its cluster: 1..=5. It also goes into the top bits of every SPI and
/// connection id the member allocates, so members never collide.
pub type MemberId = u8;

/// Default UDP port of heartbeats and delta sync, and TCP port of full sync.
pub const DEFAULT_SYNC_PORT: u16 = 8116;
/// Default interval between heartbeats (and the longest a delta record waits to be sent).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);
/// Default number of heartbeat intervals without a valid datagram before a member is dead.
pub const DEFAULT_DEAD_AFTER: u32 = 3;
/// Default bound of the retransmit queue, in records.
pub const DEFAULT_RETRANSMIT_QUEUE: usize = 131_072;
/// Default kernel routing table a Load Sharing member (routed distribution) injects its
/// protected prefixes and virtual addresses into while it is in sync.
pub const DEFAULT_ANNOUNCE_TABLE: u32 = 202;
/// Default time a recovered, more preferred sync link must stay alive before the delta stream
/// moves back to it.
pub const DEFAULT_SYNC_LINK_HOLD_DOWN: Duration = DEFAULT_HOLD_DOWN;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClusterMode {
    /// One active member owns every virtual address; the others are standby.
    HighAvailability,
    /// Every member that is up and in sync carries traffic: each pushes its own delta stream
    /// and applies every other member's. The member the election picks is the *pivot* (it owns
    /// the virtual addresses in unicast distribution and serves full syncs).
    LoadSharing,
}

/// How traffic reaches the members of a Load Sharing cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Distribution {
    /// Every member announces the protected prefixes and virtual addresses as routes (ECMP
    /// upstream): any member may receive any packet (non-sticky connections; Flush-and-Ack).
    Routed,
    /// The pivot owns the virtual addresses and hands each flow it does not own to the
    /// rendezvous owner over the sync link.
    Unicast,
}

/// Load Sharing settings (`[cluster] mode = "load-sharing"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSharingConfig {
    pub distribution: Distribution,
    /// Hold the packet that creates a synced connection until every other member up has its
    /// records (routed distribution only: in unicast only the owner sees a flow).
    pub flush_ack: bool,
    /// Longest a packet is held; members that have not acknowledged by then are declared down.
    pub hold_timeout: Duration,
    /// Most packets held at once; beyond, packets are released at once (counted).
    pub max_holds: usize,
    /// What happens to a packet whose hold times out.
    pub hold_timeout_action: TimeoutPolicy,
    /// Longest an orphan packet waits for the answers to its update request.
    pub update_timeout: Duration,
    /// Most orphan packets waiting at once.
    pub max_pending_updates: usize,
    /// The node checks TCP handshake sequence numbers across members.
    pub enhanced_handshake: bool,
    /// Kernel routing table of the routes announced in routed distribution.
    pub announce_table: u32,
}

impl Default for LoadSharingConfig {
    fn default() -> Self {
        LoadSharingConfig {
            distribution: Distribution::Routed,
            flush_ack: true,
            hold_timeout: DEFAULT_HOLD_TIMEOUT,
            max_holds: DEFAULT_MAX_HOLDS,
            hold_timeout_action: TimeoutPolicy::Release,
            update_timeout: DEFAULT_UPDATE_TIMEOUT,
            max_pending_updates: DEFAULT_MAX_PENDING,
            enhanced_handshake: false,
            announce_table: DEFAULT_ANNOUNCE_TABLE,
        }
    }
}

impl LoadSharingConfig {
    /// Whether first packets are held (Flush-and-Ack on and routed distribution).
    pub fn holds(&self) -> bool {
        self.flush_ack && self.distribution == Distribution::Routed
    }
}

/// One member as every member knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberConfig {
    pub id: MemberId,
    /// Where its heartbeats and delta sync are sent (UDP) and its full sync is served (TCP).
    pub sync_address: SocketAddr,
    /// Higher wins the active role; equal priorities are ordered by lower member id.
    pub priority: u16,
    /// Its addresses on the redundant sync networks: links 1.. in preference order (link 0 is
    /// `sync_address`). Every member lists the same number.
    pub extra_sync_addresses: Vec<SocketAddr>,
}

impl MemberConfig {
    /// Its address on sync link `link` (0 is `sync_address`); `None` beyond its links.
    pub fn link_address(&self, link: usize) -> Option<SocketAddr> {
        match link {
            0 => Some(self.sync_address),
            l => self.extra_sync_addresses.get(l - 1).copied(),
        }
    }
}

/// An address the active member owns on one of its interfaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualAddress {
    pub interface: String,
    /// The address with the prefix length it is added with.
    pub address: IpNet,
}

impl VirtualAddress {
    pub fn ip(&self) -> IpAddr {
        self.address.addr()
    }
}

/// How members authenticate each other.
///
/// The heartbeat/delta channel is always keyed from `secret` (HKDF, see `crypto.rs`); full sync
/// runs over TLS and authenticates either with certificates signed by the cluster CA, or, with
/// no certificates configured, by proving knowledge of the secret bound to the TLS session
/// (an HMAC over the TLS exporter value).
#[derive(Clone, PartialEq, Eq)]
pub struct SyncAuth {
    pub secret: Zeroizing<Vec<u8>>,
    pub tls: Option<TlsFiles>,
}

impl std::fmt::Debug for SyncAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncAuth")
            .field("secret", &"<redacted>")
            .field("tls", &self.tls)
            .finish()
    }
}

/// PEM files for mutually authenticated full sync (`rampart pki` issues them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsFiles {
    pub ca: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Goes into the key derivation: members of different clusters cannot talk even with the
    /// same secret.
    pub name: String,
    pub member_id: MemberId,
    pub mode: ClusterMode,
    /// Every member, this one included, ordered by id; ids are unique.
    pub members: Vec<MemberConfig>,
    /// Whether a recovered member with a better rank takes the active role back.
    pub switch_back: bool,
    pub heartbeat_interval: Duration,
    /// Heartbeat intervals without a valid datagram until a member counts as down.
    pub dead_after: u32,
    /// Interfaces whose link state is monitored: a member with one of them down is not eligible
    /// for the active role and gives it up.
    pub monitored_interfaces: Vec<String>,
    pub virtual_addresses: Vec<VirtualAddress>,
    pub auth: SyncAuth,
    /// Records kept for retransmission; a receiver that falls further behind is resynced.
    pub retransmit_queue: usize,
    /// How far outbound ESP sequence numbers jump on takeover.
    pub takeover_margin: u64,
    /// How often the active member sends the ESP counters and replay windows of its tunnels.
    pub esp_sync_interval: Duration,
    /// Load Sharing settings; `None` in high availability (in Load Sharing `None` means the
    /// defaults).
    pub load_sharing: Option<LoadSharingConfig>,
    /// How long a recovered, more preferred sync link must stay alive before the delta stream
    /// moves back to it.
    pub sync_link_hold_down: Duration,
}

impl ClusterConfig {
    pub fn me(&self) -> &MemberConfig {
        self.members
            .iter()
            .find(|m| m.id == self.member_id)
            .expect("validated: member_id is one of members")
    }
    pub fn member(&self, id: MemberId) -> Option<&MemberConfig> {
        self.members.iter().find(|m| m.id == id)
    }
}
