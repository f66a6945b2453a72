//! What `rampart status` shows: a serialisable snapshot of the gateway's peers and tunnels.

use serde::{Deserialize, Serialize};

/// A snapshot of one gateway, produced by [`crate::Gateway::status`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GatewayStatus {
    pub name: String,
    /// Seconds since the gateway started.
    pub uptime_secs: u64,
    pub peers: Vec<PeerStatus>,
    pub counters: DataPlaneCounters,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerStatus {
    pub name: String,
    pub local: String,
    pub remote: String,
    /// `down`, `connecting`, `established`, `rekeying`, `deleting`.
    pub state: String,
    pub ike_sa: Option<IkeSaInfo>,
    pub tunnels: Vec<TunnelStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IkeSaInfo {
    pub id: u64,
    /// Initiator and responder SPIs in hex.
    pub spi_i: String,
    pub spi_r: String,
    pub initiator: bool,
    /// e.g. `aes256gcm16-prfsha256-x25519`.
    pub algorithms: String,
    pub local_id: String,
    pub remote_id: String,
    pub nat_local: bool,
    pub nat_remote: bool,
    pub established_secs: u64,
    pub rekey_in_secs: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TunnelStatus {
    pub id: u64,
    /// Inbound and outbound SPIs in hex.
    pub spi_in: String,
    pub spi_out: String,
    /// e.g. `aes256gcm16` or `aes128-sha256`, with `-esn` when extended sequence numbers are on.
    pub algorithms: String,
    /// `esp` (raw IP protocol 50) or `esp-in-udp`.
    pub encapsulation: String,
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
    pub bytes_in: u64,
    pub packets_in: u64,
    pub bytes_out: u64,
    pub packets_out: u64,
    pub replay_drops: u64,
    pub auth_failures: u64,
    pub established_secs: u64,
    pub rekey_in_secs: Option<u64>,
}

/// Gateway-wide data-plane counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DataPlaneCounters {
    pub tun_packets_in: u64,
    pub tun_packets_out: u64,
    pub esp_packets_in: u64,
    pub esp_packets_out: u64,
    pub dropped_no_policy: u64,
    pub dropped_no_sa: u64,
    pub dropped_unknown_spi: u64,
    pub dropped_auth: u64,
    pub dropped_replay: u64,
    pub dropped_malformed: u64,
    pub dropped_policy_mismatch: u64,
}
