//! The engine's configuration: plain data the engine defines (the node builds it from the
//! TOML schema). Defaults are the `DEFAULT_*` constants.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::key::ProbeKey;

/// UDP port of the probe protocol (the port the seed's product uses for its probes).
pub const DEFAULT_PROBE_PORT: u16 = 259;
/// Interval between probes to an entry point that answers.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long a probe waits for its reply before it counts as missed and is sent again at once.
/// The effective timeout is `max(probe timeout, 3 x smoothed RTT)` so a long path does not
/// look dead.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_millis(150);
/// Consecutive missed probes after which an entry point is down.
pub const DEFAULT_PROBE_MISSES: u32 = 3;

/// Index of an entry point in [`MepConfig::entry_points`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct EntryPointId(pub u32);

/// Index of a group in [`MepConfig::groups`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct GroupId(pub u32);

/// Everything a satellite's engine needs.
#[derive(Debug, Clone)]
pub struct MepConfig {
    /// This gateway's name (`gateway.name`): picks the priority-list exception rule that
    /// names it (the node resolves rules into [`GroupConfig::levels`] already).
    pub local_name: String,
    pub probe: ProbeSettings,
    pub sticky: StickySettings,
    /// Every entry point of every group; an entry point is in exactly one group.
    pub entry_points: Vec<EntryPointConfig>,
    pub groups: Vec<GroupConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSettings {
    /// UDP port probes go to (and come from). Default 259.
    pub port: u16,
    /// Default 1 s.
    pub interval: Duration,
    /// Default 150 ms; see [`DEFAULT_PROBE_TIMEOUT`].
    pub timeout: Duration,
    /// Default 3.
    pub misses: u32,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings {
            port: DEFAULT_PROBE_PORT,
            interval: DEFAULT_PROBE_INTERVAL,
            timeout: DEFAULT_PROBE_TIMEOUT,
            misses: DEFAULT_PROBE_MISSES,
        }
    }
}

/// The per-connection binding table ("sticky" resolutions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickySettings {
    /// Most bindings kept; beyond it a new connection is resolved on every packet (stable
    /// for every method except first-to-respond changes) and counted. Default 100,000.
    pub capacity: usize,
    /// A binding unused this long is forgotten. Default 1 h (an idle TCP connection).
    pub idle: Duration,
}

impl Default for StickySettings {
    fn default() -> Self {
        StickySettings {
            capacity: 100_000,
            idle: Duration::from_secs(3600),
        }
    }
}

/// How an entry point is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeMode {
    /// Rampart's authenticated UDP probe (needs a key).
    Rampart,
    /// IKEv2 liveness (empty INFORMATIONAL) on an IKE SA kept up to the entry point: for
    /// third-party gateways.
    Ike,
    /// Rampart probes when a key exists, and IKE liveness as well until the entry point has
    /// answered one Rampart probe (then it is known to be a Rampart gateway and IKE liveness
    /// probing stops). Without a key: IKE. The default.
    Auto,
}

/// One entry point (a `[[peer]]` of the satellite).
#[derive(Debug, Clone)]
pub struct EntryPointConfig {
    /// The peer's name.
    pub name: String,
    pub group: GroupId,
    /// Where probes go (the peer's remote address; port from [`ProbeSettings::port`]).
    pub address: IpAddr,
    /// Source address of probes (the peer's `local_address`); `None`: the shell's choice.
    pub local: Option<IpAddr>,
    /// The entry point's own VPN domain (its peer's `remote_domain` as written): the
    /// by-vpn-domain method's "closest" test and the candidate test of implicit groups.
    pub own_domain: Vec<IpNet>,
    pub probe: ProbeMode,
    /// Probe MAC key (`probe_key`, or derived from the peer's PSK); `None` for certificate
    /// peers without `probe_key`.
    pub key: Option<ProbeKey>,
}

/// Where a group comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupKind {
    /// `[[entry_point_group]]`.
    Explicit,
    /// Peers whose remote domains overlap (fully or partially), with `[mep] implicit`.
    ImplicitOverlap,
    /// A primary peer and the peers that declare `backup_of` it.
    ImplicitPrimaryBackup,
}

/// The selection method of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The entry point that answered the probes first (lowest RTT) carries every new
    /// connection until it stops responding.
    FirstToRespond,
    /// Entry points whose own domain holds the destination are primary, the others backup;
    /// ties among one level broken by [`TieBreak`].
    ByVpnDomain,
    /// A stable random choice per (source, destination) address pair (explicit groups).
    Random,
    /// [`GroupConfig::levels`]: primary, secondary, tertiary; ties broken by [`TieBreak`].
    PriorityList,
    /// Implicit: the first entry point in [`GroupConfig::levels`] primary, the others backup
    /// in order. New connections return to the primary when it recovers; existing ones stay.
    PrimaryBackup,
    /// Implicit: random per (source, destination) pair, like [`Method::Random`].
    LoadDistribution,
}

/// How entry points of equal priority are told apart (by-vpn-domain and priority-list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TieBreak {
    /// Lowest probe RTT, kept while it is up.
    FirstToRespond,
    /// One random choice per satellite (this gateway), kept for all its connections while
    /// it is up; unlike [`Method::Random`] it does not vary per address pair.
    Random,
}

/// Priority levels of entry points (indices into the group's `members`): primary,
/// secondary, tertiary. A level may be empty or hold several; a member in no level is never
/// chosen.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PriorityLevels(pub [Vec<EntryPointId>; 3]);

#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub name: String,
    pub kind: GroupKind,
    pub method: Method,
    pub tie_break: TieBreak,
    /// The group's entry points, in configuration order.
    pub members: Vec<EntryPointId>,
    /// For `PriorityList` (this satellite's rule, or the default rule) and `PrimaryBackup`
    /// (primary in level 0, backups in level 1 in order); empty otherwise.
    pub levels: PriorityLevels,
    /// The unified domain the group protects.
    pub domain: Vec<IpNet>,
    /// Log every resolution (`MepEvent::Resolved`).
    pub tracking: bool,
}

/// A satellite the responder answers: its address and key.
#[derive(Debug, Clone)]
pub struct SatelliteKey {
    pub name: String,
    pub address: IpAddr,
    pub key: ProbeKey,
}

/// The entry-point side: who may probe us.
#[derive(Debug, Clone)]
pub struct ResponderConfig {
    pub port: u16,
    pub satellites: Vec<SatelliteKey>,
    /// Replies per second per source address (token bucket, burst the same). Default 20.
    pub rate_per_source: u32,
    /// Replies per second in total. Default 2000.
    pub rate_total: u32,
}
