//! The typed configuration. Field docs are the reference for `docs/configuration.md`.

use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
pub use rampart_ike::policy::{
    Encapsulation, EspProposal, Identity, IkeProposal, PeerAuth, PeerPolicy, RemoteAddress,
    StartAction,
};
use rampart_ike::IkeConfig;

/// The cluster engine's configuration types; `[cluster]` builds them.
pub use rampart_cluster::{
    ClusterConfig, ClusterMode, MemberConfig, MemberId, SyncAuth, TlsFiles, VirtualAddress,
};

/// The stateful-inspection policy types live with their engine; the configuration builds them.
pub use rampart_inspect::policy::{
    ConnTimeouts, InspectPolicy, NatRule, NetworkObject, Rule, RuleAction, Service, ServiceProtocol,
};

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
    pub firewall: InspectPolicy,
    /// `[cluster]`: the high-availability cluster this gateway is a member of. With one,
    /// `gateway.member_id` is the cluster member id and every peer's `local_address` is one of
    /// the virtual addresses.
    pub cluster: Option<ClusterConfig>,
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

    /// The `[cluster]` keys that differ between this (running) configuration and `new`. Every
    /// cluster key is restart-only: a reload that changes one must be refused and name it
    /// (`cluster` alone when the table was added or removed).
    pub fn cluster_changes(&self, new: &GatewayConfig) -> Vec<&'static str> {
        let (a, b) = match (&self.cluster, &new.cluster) {
            (None, None) => return Vec::new(),
            (Some(a), Some(b)) => (a, b),
            _ => return vec!["cluster"],
        };
        fn tls<'a>(
            auth: &'a SyncAuth,
            f: impl Fn(&'a TlsFiles) -> &'a std::path::PathBuf,
        ) -> Option<&'a std::path::PathBuf> {
            auth.tls.as_ref().map(f)
        }
        // Destructured so that a new field cannot be forgotten here.
        let ClusterConfig {
            name,
            member_id,
            mode,
            members,
            switch_back,
            heartbeat_interval,
            dead_after,
            monitored_interfaces,
            virtual_addresses,
            auth,
            retransmit_queue,
            takeover_margin,
            esp_sync_interval,
        } = a;
        let checks: [(&'static str, bool); 16] = [
            ("cluster.name", *name != b.name),
            ("cluster.member_id", *member_id != b.member_id),
            ("cluster.mode", *mode != b.mode),
            ("cluster.member", *members != b.members),
            ("cluster.switch_back", *switch_back != b.switch_back),
            (
                "cluster.heartbeat_interval",
                *heartbeat_interval != b.heartbeat_interval,
            ),
            ("cluster.dead_after", *dead_after != b.dead_after),
            (
                "cluster.monitor",
                *monitored_interfaces != b.monitored_interfaces,
            ),
            ("cluster.vip", *virtual_addresses != b.virtual_addresses),
            ("cluster.secret", auth.secret != b.auth.secret),
            (
                "cluster.tls_ca",
                tls(auth, |t| &t.ca) != tls(&b.auth, |t| &t.ca),
            ),
            (
                "cluster.tls_cert",
                tls(auth, |t| &t.cert) != tls(&b.auth, |t| &t.cert),
            ),
            (
                "cluster.tls_key",
                tls(auth, |t| &t.key) != tls(&b.auth, |t| &t.key),
            ),
            (
                "cluster.retransmit_queue",
                *retransmit_queue != b.retransmit_queue,
            ),
            (
                "cluster.takeover_margin",
                *takeover_margin != b.takeover_margin,
            ),
            (
                "cluster.esp_sync_interval",
                *esp_sync_interval != b.esp_sync_interval,
            ),
        ];
        checks
            .into_iter()
            .filter(|(_, differs)| *differs)
            .map(|(key, _)| key)
            .collect()
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
