//! The cluster engine's own configuration. `rampart-config` builds it from `[cluster]`; the
//! engine never sees TOML.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClusterMode {
    /// One active member owns every virtual address; the others are standby.
    HighAvailability,
}

/// One member as every member knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberConfig {
    pub id: MemberId,
    /// Where its heartbeats and delta sync are sent (UDP) and its full sync is served (TCP).
    pub sync_address: SocketAddr,
    /// Higher wins the active role; equal priorities are ordered by lower member id.
    pub priority: u16,
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
