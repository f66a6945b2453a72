//! Counters and the serialisable views `rampart conn list` and `rampart conn stats` print.

use serde::{Deserialize, Serialize};

use crate::conn::{NatKind, NO_RULE};
use crate::engine::{proto_name, side_name};
use crate::Inspector;

/// Inspection counters (`rampart conn stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectStats {
    /// Packets inspected.
    pub packets: u64,
    /// New connections accepted.
    pub connections_accepted: u64,
    /// New connections dropped or rejected by a rule (the implicit drop included).
    pub dropped_by_rule: u64,
    /// Of `dropped_by_rule`, those answered with a RST or an ICMP error.
    pub rejected: u64,
    /// Packets that belong to no connection and cannot open one, or break its state.
    pub dropped_out_of_state: u64,
    /// New connections refused because the table was full.
    pub table_full: u64,
    /// New connections refused because hide NAT had no port (or the pool no address) left.
    pub nat_exhausted: u64,
    pub dropped_malformed: u64,
    /// Without a rule base: packets passed that could not be tracked.
    pub untracked: u64,
    /// Connections removed by their timeout.
    pub expired: u64,
    /// Handshake enforcement: SYN-ACKs and handshake-completing ACKs dropped because their
    /// sequence or acknowledgement number did not match the ISNs (also in
    /// `dropped_out_of_state`).
    #[serde(default)]
    pub handshake_mismatch: u64,
    /// Handshake enforcement: SYN-ACKs and handshake-completing ACKs whose numbers matched.
    #[serde(default)]
    pub handshake_verified: u64,
    /// Handshake enforcement: SYN-ACKs and handshake-completing ACKs passed unverified because
    /// an ISN was not known (the connection was created or answered without enforcement).
    #[serde(default)]
    pub handshake_unverified: u64,
    /// Answers that moved a handshake from SYN sent to SYN received (the first SYN-ACK of a
    /// connection; with enforcement, the packet that recorded the server's ISN). A Load
    /// Sharing member holds such a packet until the others have the new state, so the
    /// originator's next packet is not out of state at a member that saw only the SYN.
    #[serde(default)]
    pub handshake_replies: u64,
    /// Connections in the table now.
    pub active: u64,
    pub capacity: u64,
}

/// One connection as `rampart conn list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnView {
    /// Cluster-wide id in hex.
    pub id: String,
    pub protocol: String,
    pub state: String,
    /// Side of the first packet: `inside` (from the protected site) or `tunnel`.
    pub from: String,
    /// The first packet as it arrived.
    pub original: String,
    /// The first packet as it left, when NAT changed it.
    pub translated: Option<String>,
    /// `hide <rule>`, `static <rule>`, `pool <rule>`.
    pub nat: Option<String>,
    pub rule: String,
    pub service: String,
    pub age_secs: u64,
    pub idle_secs: u64,
    pub expires_in_secs: u64,
    /// Packets and bytes from the originator and from the responder.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
}

/// The answer to `conn list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnList {
    pub connections: Vec<ConnView>,
    /// Connections in the table (more than listed when `truncated`).
    pub total: u64,
    pub truncated: bool,
}

impl Inspector {
    /// Up to `limit` connections as views, oldest first.
    pub fn list(&self, now: std::time::Instant, limit: usize) -> ConnList {
        let now_ms = self.now_ms(now);
        let mut all: Vec<_> = self.connections().collect();
        all.sort_by_key(|c| (c.created_ms, c.id));
        let total = all.len() as u64;
        let connections = all
            .into_iter()
            .take(limit)
            .map(|c| ConnView {
                id: format!("{:#x}", c.id),
                protocol: proto_name(c.orig.proto).to_string(),
                state: c.state.name().to_string(),
                from: side_name(c.init_side).to_string(),
                original: c.orig.to_string(),
                translated: (c.xlat != c.orig).then(|| c.xlat.to_string()),
                nat: match c.nat.kind {
                    NatKind::None => None,
                    k => Some(format!(
                        "{} {}",
                        match k {
                            NatKind::Hide => "hide",
                            NatKind::Static => "static",
                            _ => "pool",
                        },
                        self.nat_rule_name(c.nat.rule)
                    )),
                },
                rule: if c.rule == NO_RULE {
                    "none (no rule base)".to_string()
                } else {
                    self.rules().rule_name(c.rule).to_string()
                },
                service: self.rules().service_name(c.service).to_string(),
                age_secs: now_ms.saturating_sub(c.created_ms) / 1000,
                idle_secs: now_ms.saturating_sub(c.last_seen_ms) / 1000,
                expires_in_secs: c.expires_ms.saturating_sub(now_ms) / 1000,
                packets: c.packets,
                bytes: c.bytes,
            })
            .collect::<Vec<_>>();
        ConnList {
            truncated: (connections.len() as u64) < total,
            connections,
            total,
        }
    }
}
