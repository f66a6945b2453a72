//! The typed configuration. Field docs are the reference for `docs/configuration.md`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
pub use rampart_ike::policy::{
    Encapsulation, EspProposal, Identity, IkeProposal, PeerAuth, PeerPolicy, RemoteAddress,
    StartAction,
};
use rampart_ike::IkeConfig;

/// One gateway's whole configuration (one TOML file). Not `PartialEq`: peers carry
/// certificate material, compared with [`PeerPolicy::sa_relevant_eq`] where it matters.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub gateway: GatewaySection,
    pub tunnel: TunnelSection,
    pub local: LocalSection,
    /// `[[peer]]`, in file order. A peer with `remote_address = "any"` is a template: it has
    /// `start_action = none`, an explicit `remote_id` and a `local_address`.
    pub peers: Vec<PeerPolicy>,
    /// `[[entry_point_group]]`: peers that may share (overlapping) remote domains.
    pub entry_point_groups: Vec<EntryPointGroup>,
    /// `[inspection]`, `[[object]]`, `[[service]]`, `[[rule]]`, `[[nat]]`: the stateful firewall.
    pub firewall: FirewallConfig,
}

impl GatewayConfig {
    /// The IKE engine's part of the configuration (peers are added to the engine one by one).
    pub fn ike_config(&self) -> IkeConfig {
        IkeConfig {
            member_id: self.gateway.member_id,
            ike_port: self.gateway.ike_port,
            nat_t_port: self.gateway.nat_t_port,
            local_domain: self.local.domain.clone(),
            retransmit_timeout: self.gateway.retransmit_timeout,
            retransmit_tries: self.gateway.retransmit_tries,
            nat_keepalive: self.gateway.nat_keepalive,
            fragmentation: self.gateway.fragmentation,
            fragment_size: self.gateway.fragment_size,
            cookie_threshold: self.gateway.cookie_threshold,
            half_open_per_source: self.gateway.half_open_per_source,
        }
    }

    /// The entry-point group `peer` (a peer name) belongs to, if any.
    pub fn entry_point_group_of(&self, peer: &str) -> Option<&EntryPointGroup> {
        self.entry_point_groups
            .iter()
            .find(|g| g.peers.iter().any(|p| p == peer))
    }
}

/// `[[entry_point_group]]`: gateways (peers) that protect the same remote domain, so their
/// `remote_domain`s may overlap. A peer is in at most one group. Which member carries the
/// traffic (selection method, probing) arrives with Multiple Entry Points; until then the
/// first peer with an established tunnel is used, else the first in the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPointGroup {
    pub name: String,
    /// Peer names, each of a `[[peer]]`.
    pub peers: Vec<String>,
}

/// `[gateway]`
#[derive(Debug, Clone, PartialEq)]
pub struct GatewaySection {
    pub name: String,
    /// Cluster member id carried in the top bits of SA ids and SPIs. Default 0; 0..=15.
    pub member_id: u16,
    /// Default `/run/rampart/<name>.sock`.
    pub status_socket: PathBuf,
    /// Default 500.
    pub ike_port: u16,
    /// Default 4500; 2746 accepted for compatibility; any port except `ike_port`.
    pub nat_t_port: u16,
    /// First IKE retransmission timeout; doubles on each try. Default 2s.
    pub retransmit_timeout: Duration,
    /// Retransmissions before a request (and so the peer) is given up. Default 5.
    pub retransmit_tries: u32,
    /// Interval of the RFC 3948 NAT keepalives sent by the NATed side while nothing else was
    /// sent to the peer. Default 20s; 1s..=10m.
    pub nat_keepalive: Duration,
    /// Advertise and use RFC 7383 IKE fragmentation. Default true.
    pub fragmentation: bool,
    /// Largest IP datagram of a fragmented IKE message, IP and UDP headers and the non-ESP
    /// marker included. Default 1280; 576..=65535 (raised to 1280 for IPv6 peers).
    pub fragment_size: u16,
    /// Half-open IKE SAs from which on a responder answers IKE_SA_INIT with a COOKIE first
    /// (RFC 7296 2.6). Default 100; 0 = always.
    pub cookie_threshold: u32,
    /// Most half-open IKE SAs per source IP address; more IKE_SA_INIT from it are dropped.
    /// Default 20; 1..=1000000.
    pub half_open_per_source: u32,
}

/// `[tunnel]`
#[derive(Debug, Clone, PartialEq)]
pub struct TunnelSection {
    /// Default `rampart0`; at most 15 bytes.
    pub device: String,
    /// Default 1400; 576..=9000.
    pub mtu: u16,
    /// Default true: open the device with segmentation offload (IFF_VNET_HDR, TSO/USO), so one
    /// read returns up to 64 KB of one TCP flow and decrypted packets are coalesced on write.
    pub offload: bool,
    /// Default 0; 0..=64. Threads besides the event loop that run the cipher calls of each
    /// batch (ESP encrypt/decrypt) in parallel; 0 keeps them on the event-loop thread. Pays off
    /// only with cores to spare (see bench/README.md).
    pub crypto_threads: u16,
}

/// `[local]`
#[derive(Debug, Clone, PartialEq)]
pub struct LocalSection {
    /// The VPN domain this gateway protects; at least one prefix.
    pub domain: Vec<IpNet>,
}

/// The stateful firewall of a gateway (see `docs/configuration.md`, "Stateful inspection").
///
/// Invariant: names in `rules` and `nat` are resolved (prefixes and service indices), so the
/// engine never looks a name up. No `[[rule]]` at all means every tunnel packet is accepted and
/// still tracked (the behaviour of a gateway without a rule base).
#[derive(Debug, Clone, PartialEq)]
pub struct FirewallConfig {
    /// Most connections tracked at once (`[inspection] capacity`). Default 1000000.
    pub capacity: u32,
    pub timeouts: ConnTimeouts,
    pub objects: Vec<NetworkObject>,
    pub services: Vec<Service>,
    /// In order; the first match decides. Empty: accept all.
    pub rules: Vec<Rule>,
    pub nat: Vec<NatRule>,
}

impl Default for FirewallConfig {
    fn default() -> FirewallConfig {
        FirewallConfig {
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
    /// Indices into [`FirewallConfig::services`]; empty means any service.
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

#[cfg(test)]
mod tests {
    #[test]
    fn debug_output_never_shows_the_psk() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/site-to-site/gw-a.toml"
        ))
        .unwrap();
        let config = crate::parse(&text, "gw-a.toml").unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("horse"), "{shown}");
        assert!(shown.contains("bytes redacted"));
    }
}
