//! What `rampart mep status` and `rampart status --json` show: plain counters and gauges with
//! stable names (serde field names are the JSON keys; do not rename them).

use serde::Serialize;

use crate::config::{GroupKind, Method, ProbeMode, TieBreak};

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MepStatus {
    pub groups: Vec<GroupStatus>,
    /// `None` on a gateway that does not answer probes.
    pub responder: Option<ResponderStatus>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GroupStatus {
    pub name: String,
    pub kind: GroupKind,
    pub method: Method,
    pub tie_break: TieBreak,
    /// First-to-respond (method or tie-break): the entry point currently chosen.
    pub current: Option<String>,
    /// Connections resolved (new bindings) in this group.
    pub resolutions: u64,
    /// Live bindings of connections to entry points.
    pub sticky_flows: u64,
    /// Resolutions that found no responding entry point (the packet went to the best
    /// non-responding one).
    pub resolutions_none_responding: u64,
    /// Packets of new connections resolved without a binding because the sticky table was
    /// full (each such packet is resolved again).
    pub sticky_full: u64,
    pub entry_points: Vec<EntryPointStatus>,
}

/// Probe state of an entry point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeState {
    /// No probe answered or missed yet.
    Unknown,
    Up,
    Down,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EntryPointStatus {
    pub name: String,
    pub address: String,
    /// Configured mode.
    pub probe_mode: ProbeMode,
    /// What probes it now: `rampart`, `ike` or `rampart+ike` (auto before the first answer).
    pub probing_with: String,
    pub state: ProbeState,
    /// Priority level for this satellite under the group's method (`primary`, `secondary`,
    /// `tertiary`, `backup`, or `none` when the rules leave it out).
    pub level: String,
    pub last_rtt_us: Option<u64>,
    pub srtt_us: Option<u64>,
    /// Consecutive missed probes now.
    pub misses: u32,
    pub probes_sent: u64,
    pub replies: u64,
    pub probes_missed: u64,
    pub rejected: RejectCounters,
    /// Times it went up / down.
    pub ups: u64,
    pub downs: u64,
    /// Milliseconds since the last state change (gauge), `None` while unknown.
    pub since_change_ms: Option<u64>,
    /// Connections resolved to it.
    pub chosen: u64,
    /// Live sticky bindings to it.
    pub sticky_flows: u64,
    /// Whether the node has an established tunnel to it (set by the node).
    pub tunnel_up: bool,
}

/// Probe replies (satellite side) or requests (responder side) refused, by reason.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct RejectCounters {
    /// Shorter than a probe, wrong magic/version/kind or length.
    pub malformed: u64,
    /// MAC did not verify (wrong key or forged).
    pub forged: u64,
    /// A reply to no outstanding probe (replayed or very late).
    pub replayed: u64,
    /// From an address that is no known entry point / satellite.
    pub unknown_source: u64,
    /// Over the rate limit (responder only).
    pub rate_limited: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ResponderStatus {
    pub port: u16,
    pub satellites: u64,
    pub requests: u64,
    pub replies: u64,
    pub rejected: RejectCounters,
}
