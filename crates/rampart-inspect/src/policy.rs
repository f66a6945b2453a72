//! The inspector's policy: plain data the engine defines and the configuration builds
//! (`rampart-config` validates the TOML tables into these types and resolves every name).

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

/// The stateful-inspection policy of a gateway (see `docs/configuration.md`, "Stateful
/// inspection"): what the `[inspection]`, `[[object]]`, `[[service]]`, `[[rule]]` and `[[nat]]`
/// tables of the configuration become.
///
/// Invariant: names in `rules` and `nat` are resolved (prefixes and service indices), so the
/// engine never looks a name up. No `[[rule]]` at all means every tunnel packet is accepted and
/// still tracked (the behaviour of a gateway without a rule base).
#[derive(Debug, Clone, PartialEq)]
pub struct InspectPolicy {
    /// Most connections tracked at once (`[inspection] capacity`). Default 1000000.
    pub capacity: u32,
    pub timeouts: ConnTimeouts,
    pub objects: Vec<NetworkObject>,
    pub services: Vec<Service>,
    /// In order; the first match decides. Empty: accept all.
    pub rules: Vec<Rule>,
    pub nat: Vec<NatRule>,
}

impl Default for InspectPolicy {
    fn default() -> InspectPolicy {
        InspectPolicy {
            capacity: 1_000_000,
            timeouts: ConnTimeouts::default(),
            objects: Vec::new(),
            services: Vec::new(),
            rules: Vec::new(),
            nat: Vec::new(),
        }
    }
}

/// Idle timeouts per connection state (`[inspection]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnTimeouts {
    /// Handshake (SYN seen, SYN-ACK seen). Default 30s.
    pub tcp_handshake: Duration,
    /// Established TCP. Default 1h.
    pub tcp_established: Duration,
    /// FIN seen in one or both directions. Default 2m.
    pub tcp_closing: Duration,
    /// After the last ACK of a closed connection, or after a RST. Default 10s.
    pub tcp_closed: Duration,
    /// UDP pseudo-connection idle timeout. Default 60s.
    pub udp: Duration,
    /// ICMP echo idle timeout. Default 30s.
    pub icmp: Duration,
}

impl Default for ConnTimeouts {
    fn default() -> ConnTimeouts {
        ConnTimeouts {
            tcp_handshake: Duration::from_secs(30),
            tcp_established: Duration::from_secs(3600),
            tcp_closing: Duration::from_secs(120),
            tcp_closed: Duration::from_secs(10),
            udp: Duration::from_secs(60),
            icmp: Duration::from_secs(30),
        }
    }
}

/// `[[object]]`: a named set of prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkObject {
    pub name: String,
    pub networks: Vec<IpNet>,
}

/// Protocol of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceProtocol {
    Tcp,
    Udp,
    /// ICMP (IPv4); `ports` are not used.
    Icmp,
    /// ICMPv6; `ports` are not used.
    Icmpv6,
}

/// `[[service]]`: a protocol and destination port ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub protocol: ServiceProtocol,
    /// Inclusive destination port ranges; empty means every port.
    pub ports: Vec<(u16, u16)>,
    /// Whether connections of this service are synchronised to cluster members. Default true.
    pub sync: bool,
    /// Delayed sync: a connection is synchronised only once it lived this long. Default 0s.
    pub sync_after: Duration,
}

/// `accept | drop | reject`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    Accept,
    Drop,
    /// Drop and answer: TCP RST for TCP, ICMP administratively prohibited otherwise.
    Reject,
}

/// `[[rule]]`, with object and service names resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `name`, or `rule-N` (1-based position) when not given.
    pub name: String,
    /// Empty means any source.
    pub source: Vec<IpNet>,
    /// Empty means any destination.
    pub destination: Vec<IpNet>,
    /// Indices into [`InspectPolicy::services`]; empty means any service.
    pub services: Vec<usize>,
    pub action: RuleAction,
    pub log: bool,
}

/// `[[nat]]`, IPv4 only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatRule {
    /// Many-to-one: connections from `source` leaving through a tunnel get `address` and a port
    /// from `ports` (ICMP echo: an identifier from `ports`).
    Hide {
        name: String,
        source: Vec<IpNet>,
        address: IpAddr,
        ports: (u16, u16),
    },
    /// One-to-one: `original` leaves as `translated` (same prefix length) and connections to
    /// `translated` arriving from a tunnel go to `original`.
    Static {
        name: String,
        original: IpNet,
        translated: IpNet,
    },
    /// IP Pool NAT: connections arriving from a tunnel from `source` (empty: any remote
    /// domain) get a source address from `pool`; replies are restored.
    Pool {
        name: String,
        pool: IpNet,
        source: Vec<IpNet>,
    },
}

impl NatRule {
    pub fn name(&self) -> &str {
        match self {
            NatRule::Hide { name, .. }
            | NatRule::Static { name, .. }
            | NatRule::Pool { name, .. } => name,
        }
    }
}
