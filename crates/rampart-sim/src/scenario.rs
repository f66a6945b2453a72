//! Scenario files (TOML): the topology, the nodes' configurations, the timeline of events, the
//! transfers and the assertions. `docs/lab.md` documents every key. Unknown keys are errors.

use serde::Deserialize;

/// A whole scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// One line shown by `rampart lab list`.
    pub summary: String,
    /// Optional longer text printed before the timeline.
    #[serde(default)]
    pub description: String,
    /// Simulated time the scenario runs for (it ends earlier once every assertion is decided).
    pub duration: String,
    /// Seed used when none is given on the command line.
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default, rename = "node")]
    pub nodes: Vec<NodeSpec>,
    #[serde(default, rename = "link")]
    pub links: Vec<LinkSpec>,
    #[serde(default, rename = "event")]
    pub events: Vec<EventSpec>,
    #[serde(default, rename = "transfer")]
    pub transfers: Vec<TransferSpec>,
    #[serde(default, rename = "assert")]
    pub asserts: Vec<AssertSpec>,
}

fn default_seed() -> u64 {
    1
}

/// `host | gateway | router | switch | nat | firewall | proxy | client`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeKind {
    Host,
    Gateway,
    Router,
    /// A shared segment: delivers each packet to the attached machine that owns its destination
    /// (or its route's next hop), as ARP would; virtual addresses follow their last claim.
    Switch,
    Nat,
    Firewall,
    Proxy,
    /// A remote-access client machine: `rampart client up` with `profile` (see `docs/lab.md`).
    Client,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub name: String,
    pub kind: NodeKind,
    /// Static routes: `"0.0.0.0/0 via 10.1.0.1"`. Connected prefixes are implicit.
    #[serde(default)]
    pub routes: Vec<String>,
    /// Gateway: its configuration (the same TOML as `rampart gateway run`), inline...
    pub config: Option<String>,
    /// ...or in a file relative to the scenario file.
    pub config_file: Option<String>,
    /// NAT and firewall: the link on the outside (public) side.
    pub outside: Option<String>,
    /// NAT: idle timeout of UDP mappings (default 30s).
    pub udp_timeout: Option<String>,
    /// NAT: idle timeout of TCP mappings (default 300s).
    pub tcp_timeout: Option<String>,
    /// NAT: drop every IP fragment except the first (a broken but common CGN behaviour).
    #[serde(default)]
    pub drop_fragments: bool,
    /// Firewall: what may leave the inside, `"tcp/443"`, `"udp/53"`, `"tcp/80"`; replies pass.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Proxy: TCP port of the HTTP CONNECT proxy (default 3128).
    pub port: Option<u16>,
    /// Proxy: `"user:password"` required as Basic authentication (none: open proxy).
    pub basic_auth: Option<String>,
    /// Client: its profile (the same TOML as `rampart client up --profile`), inline.
    pub profile: Option<String>,
    /// Router: the seed of its equal-cost multipath hash (default: drawn from the run's
    /// seed, so every seed spreads flows differently).
    pub ecmp_seed: Option<u64>,
    /// Router: how long a dead equal-cost next hop keeps its share of the flows (the routing
    /// protocol's detection time; default 500ms).
    pub next_hop_timeout: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    pub name: String,
    /// `"node address/prefix"`, e.g. `"gw-a 192.0.2.1/24"`.
    pub a: String,
    pub b: String,
    #[serde(flatten)]
    pub impairment: Impairment,
}

/// Link properties; also what an `impair` event changes (missing keys stay as they are).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Impairment {
    /// Default 1500.
    pub mtu: Option<u16>,
    /// One-way latency, default 1ms.
    pub latency: Option<String>,
    /// Extra random delay, uniform in 0..jitter (packets are not reordered).
    pub jitter: Option<String>,
    /// Probability in 0..=1 that a packet is lost, each direction.
    pub loss: Option<f64>,
    /// Probability in 0..=1 that a packet may overtake the ones before it (with `jitter`).
    pub reorder: Option<f64>,
    /// `"100Mbit"`; default 1Gbit.
    pub bandwidth: Option<String>,
    /// Queue limit of each direction, default 256KB.
    pub queue: Option<String>,
}

/// `link-down | link-up | cut | restore | impair | crash | restart | switchover | admin-down |
/// admin-up | readdress | nat-flush`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    LinkDown,
    LinkUp,
    /// Cuts `link`, or every link of `node` (a switch: the whole segment).
    Cut,
    /// Restores what `cut` cut (`link`, or every link of `node`).
    Restore,
    Impair,
    Crash,
    Restart,
    /// `rampart cluster switchover` on `node` (optionally `to` a member id).
    Switchover,
    /// `rampart cluster down` / `up` on `node`.
    AdminDown,
    AdminUp,
    /// The machine `node` (a client) moves to another network: its address on `link` becomes
    /// `address` (`"a.b.c.d/prefix"`), its default router `via`.
    Readdress,
    /// The NAT `node` forgets every mapping (a reboot, a conntrack flush): the next packet of
    /// each flow gets a new public port.
    NatFlush,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    pub at: String,
    pub action: Action,
    pub link: Option<String>,
    pub node: Option<String>,
    /// Switchover: the member id to hand the active role to (default: the best one).
    pub to: Option<u8>,
    /// Readdress: the new address and prefix, `"192.0.2.77/24"`.
    pub address: Option<String>,
    /// Readdress: the new default router.
    pub via: Option<String>,
    #[serde(flatten)]
    pub impairment: Impairment,
}

/// A TCP transfer between two hosts' real TCP stacks, checked byte for byte.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferSpec {
    pub name: String,
    pub from: String,
    pub to: String,
    /// `"4MB"`.
    pub size: String,
    /// When the sender connects.
    pub at: String,
    /// Listening port on `to` (default 5001, 5002, ... by position).
    pub port: Option<u16>,
    /// A group of this many connections (default 1), each with `size` bytes: the k-th
    /// (from 0) starts at `at + k * every` and connects to `port + k` (`port` is required).
    /// The timeline and the tables show the group as one line; an assertion on `name`
    /// holds when every connection of the group completes.
    pub count: Option<u32>,
    /// Spacing of the starts in a group (default 1ms).
    pub every: Option<String>,
    /// Connect through this HTTP CONNECT proxy node (`to` must be reachable from it).
    pub via_proxy: Option<String>,
    /// `"user:password"` sent to the proxy.
    pub proxy_auth: Option<String>,
}

/// One check. Exactly one of `transfer`, `tunnel`, `no_tunnel`, `log`, `no_log`,
/// `rekeys_at_least`, `ike_fragments_at_least`, `no_esp_errors`, `no_drops`, `cluster_state`,
/// `sync_lost_at_most`, `full_syncs_at_least`, `mep_state`, `mep_chosen_at_least`,
/// `mep_chosen_at_most`, `keeps_tunnel`, `distinct_addresses` or a cluster check names what
/// is checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssertSpec {
    /// The transfer completes with every byte and a matching SHA-256...
    pub transfer: Option<String>,
    /// ...within this time of its start (default: before the scenario ends).
    pub within: Option<String>,
    /// A gateway has an established tunnel installed at or after `after`...
    pub tunnel: Option<String>,
    /// ...no later than `after` + `up_within` (default: before the scenario ends).
    pub up_within: Option<String>,
    /// The expected failure: this gateway installs no tunnel at or after `after`, up to
    /// `after` + `within` (default: the end of the scenario).
    pub no_tunnel: Option<String>,
    /// With `transfer`: the transfer must fail, with a reason containing this text (for
    /// example `"407"` for a proxy that wants credentials).
    pub fails_with: Option<String>,
    /// The gateway `node` sent at least this many IKE fragments (RFC 7383).
    pub ike_fragments_at_least: Option<u64>,
    /// Start of the window for `tunnel`, `log` and `rekeys` (default 0).
    pub after: Option<String>,
    /// The gateway `node` logs a line containing this text, within `within` of `after`.
    pub log: Option<String>,
    pub node: Option<String>,
    /// The gateway `node` logs no line containing this text within `within` of `after`.
    pub no_log: Option<String>,
    /// The cluster member `node` is in this state (`active`, `standby`, `syncing`, `down`) at
    /// a check in the window `after` .. `after + within` (checks run every 0.5 s), or, with
    /// `until_end = true`, at every check from `after` to the end.
    pub cluster_state: Option<String>,
    #[serde(default)]
    pub until_end: bool,
    /// The cluster member `node` counted at most this many lost sync records (the end of run).
    pub sync_lost_at_most: Option<u64>,
    /// The cluster member `node` applied at least this many full syncs.
    pub full_syncs_at_least: Option<u64>,
    /// With `mep_state`, `mep_chosen_at_least` and `mep_chosen_at_most`: the entry point (peer
    /// name) of the satellite `node` that is checked.
    pub mep_entry_point: Option<String>,
    /// The satellite `node` sees `mep_entry_point` in this probe state (`up`, `down`,
    /// `unknown`) at a check in the window `after` .. `after + within` (checks run every
    /// 0.5 s and at every timeline event).
    pub mep_state: Option<String>,
    /// At the end of the run, the satellite `node` resolved at least / at most this many
    /// connections to `mep_entry_point`.
    pub mep_chosen_at_least: Option<u64>,
    pub mep_chosen_at_most: Option<u64>,
    /// The client `node` got its address over this transport (`udp`, `tcp`, `tls`), at or
    /// after `after` and, with `up_within`, no later than `after + up_within`.
    pub transport: Option<String>,
    /// The client `node`'s outside address moved and the tunnel went on: `roamed` (MOBIKE
    /// moved the SAs) or `reconnect` (a new tunnel), in the window of `after` and `within`;
    /// or `reattached`: its stream was replaced and the IKE SA re-attached to the new one
    /// (RFC 9329), done in that window; or `entry-point`: it moved to another of its
    /// `gateways` (a new tunnel there) in that window.
    pub moved: Option<String>,
    /// The gateway `node` rekeyed its tunnels at least this many times.
    pub rekeys_at_least: Option<u32>,
    /// The gateway `node` dropped no ESP packet for authentication or replay reasons.
    #[serde(default)]
    pub no_esp_errors: bool,
    /// `node` dropped no packet whose drop reason contains this text (see the drops table),
    /// e.g. `"SA lifetime"`.
    pub no_drops: Option<String>,
    /// The cluster members a cluster check looks at together (instead of `node`).
    #[serde(default)]
    pub nodes: Vec<String>,
    /// The members' stateful inspection dropped at most / at least this many packets as out
    /// of state (summed over `nodes`, the whole run, before crashes included).
    pub out_of_state_at_most: Option<u64>,
    pub out_of_state_at_least: Option<u64>,
    /// At the end, every running member of `nodes` holds every connection that another one
    /// has held for a second or more (no lost update).
    #[serde(default)]
    pub connections_synced: bool,
    /// Flush-and-Ack: packets the members held, summed, at least this many.
    pub holds_at_least: Option<u64>,
    /// Flush-and-Ack: the 99th percentile of the hold time (each member's histogram; the
    /// largest), at most this long.
    pub hold_p99_at_most: Option<String>,
    /// Flush-and-Ack: holds that timed out, summed, at most this many.
    pub hold_timeouts_at_most: Option<u64>,
    /// Update requests (UPD_REQ): queries the members sent (at least, at most), and queries
    /// answered `Found` (at least), summed.
    pub update_requests_at_least: Option<u64>,
    pub update_requests_at_most: Option<u64>,
    pub updates_found_at_least: Option<u64>,
    /// Packets the members forwarded to the owner of their flow or SA, summed, at least.
    pub forwarded_at_least: Option<u64>,
    /// Of those, inspected packets for a remote-access client's virtual IP, forwarded to the
    /// member that owns the client's SA (`forwarded_to_client`), summed, at least.
    pub forwarded_to_clients_at_least: Option<u64>,
    /// The client `node` kept its first tunnel to the end: one address assignment, one
    /// virtual IP, and the IKE SA it runs at the end is the one it got the address on (no
    /// reconnect, no new IKE SA). Decided at the end of the run.
    #[serde(default)]
    pub keeps_tunnel: bool,
    /// The client machines `nodes` each hold a virtual IP at the end, all different (the
    /// cluster's members never handed one address to two clients).
    #[serde(default)]
    pub distinct_addresses: bool,
    /// With `sync_link_switched_to_at_least` / `sync_link_records_at_least`: the sync link
    /// (0 is `address`, 1 the first of `extra_addresses`).
    pub sync_link: Option<usize>,
    /// Times a member's delta stream moved onto `sync_link`, summed, at least.
    pub sync_link_switched_to_at_least: Option<u64>,
    /// Records the members sent on `sync_link`, summed, at least.
    pub sync_link_records_at_least: Option<u64>,
}

/// Parses scenario text; `name` is used in error messages.
pub fn parse(text: &str, name: &str) -> Result<Scenario, crate::SimError> {
    toml::from_str(text).map_err(|e| crate::SimError::Scenario(format!("{name}: {e}")))
}
