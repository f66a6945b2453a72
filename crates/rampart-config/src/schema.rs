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
    ClusterConfig, ClusterMode, Distribution, LoadSharingConfig, MemberConfig, MemberId, SyncAuth,
    TimeoutPolicy, TlsFiles, VirtualAddress,
};

/// The Multiple Entry Points engine's types that the configuration names.
pub use rampart_mep::{GroupKind, Method, ProbeMode, TieBreak};

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
    /// `[mep]` as written (defaults when absent; [`MepSection::present`] tells).
    pub mep: MepSection,
    /// The MEP keys of each peer: `peer_mep[i]` belongs to `peers[i]` (same length, same order).
    pub peer_mep: Vec<PeerMep>,
    /// Groups formed without `[[entry_point_group]]`: overlapping remote domains (with `[mep]`
    /// and `implicit` not `off`) and primary/backup pairs (`backup_of`). Ordered by their first
    /// member's position in the file; members in file order (a primary first).
    pub implicit_groups: Vec<ImplicitGroup>,
    /// `[rim]`: route injection; `None` (off) without the table.
    pub rim: Option<RimConfig>,
    /// `[remote_access]`: the gateway serves remote-access clients. Its template peer (with
    /// [`rampart_ike::RemoteAccess::Gateway`]) is in `peers` under
    /// [`RemoteAccessConfig::peer`], so the engine and node treat it like any peer.
    pub remote_access: Option<RemoteAccessConfig>,
    /// Present exactly when `remote_access` is.
    pub remote_access_template: Option<RaTemplate>,
}

/// `[remote_access]` beyond the template peer: the stream transports clients may use when UDP
/// does not get through. UDP 500 and `gateway.nat_t_port` always serve clients too.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteAccessConfig {
    /// Name of the template peer in [`GatewayConfig::peers`] built from this section.
    pub peer: String,
    /// RFC 9329 IKE and ESP over TCP; `None` when off.
    pub tcp: Option<TcpTransport>,
    /// Visitor Mode: the RFC 9329 stream inside TLS (default port 443); `None` when off.
    pub visitor: Option<VisitorMode>,
    /// Clamp the MSS of TCP SYN and SYN-ACK through client tunnels to fit the tunnel MTU.
    /// Default true.
    pub mss_clamp: bool,
    /// An accepted TCP/TLS stream that carries no IKE or ESP frame within this time of
    /// connecting is closed (default 30 s).
    pub stream_setup_timeout: std::time::Duration,
    /// A stream with no frame at all (keepalives included) for this long is closed
    /// (default 5 min; a connected client sends at least its liveness checks).
    pub stream_idle_timeout: std::time::Duration,
}

/// The `[remote_access]` template as a running configuration keeps it (its peers moved into
/// the engine), so that a reload can be compared with it.
#[derive(Debug, Clone, PartialEq)]
pub struct RaTemplate {
    /// What the template hands out: the same `Arc` as the template peer's
    /// [`rampart_ike::RemoteAccess::Gateway`].
    pub gateway: std::sync::Arc<rampart_ike::RaGateway>,
    /// A digest of the users file (`client_auth = "eap-mschapv2"`).
    pub users_digest: Option<[u8; 32]>,
}

/// `[remote_access.tcp]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpTransport {
    /// Where to listen: `bind` addresses (default: every address, `0.0.0.0`, or `::` when the
    /// template's `local_address` is IPv6) with `port` (default 4500). On by default.
    pub listen: Vec<std::net::SocketAddr>,
}

/// `[remote_access.visitor]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitorMode {
    /// `bind` addresses with `port` (default 443); the default is every address (`0.0.0.0`,
    /// or `::` when the template's `local_address` is IPv6). A bind failure is logged and the
    /// other transports keep running.
    pub listen: Vec<std::net::SocketAddr>,
    /// The gateway's TLS certificate chain and key (PEM).
    pub certificate: PathBuf,
    pub key: PathBuf,
    /// Port sharing: a TLS connection that is not Visitor Mode (its ClientHello does not
    /// offer the ALPN `alpn`, and its SNI is not in `server_names`) is forwarded, bytes
    /// untouched, to this HTTPS server. `None`: such connections are closed.
    pub https_backend: Option<std::net::SocketAddr>,
    /// SNI names that mean Visitor Mode even without the ALPN (empty: the ALPN decides).
    pub server_names: Vec<String>,
    /// The ALPN protocol id of Visitor Mode. Default `"rampart-ike"`.
    pub alpn: String,
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
    /// (`cluster` alone when the table was added or removed; `cluster.mode` when Load Sharing
    /// was switched on or off).
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
            load_sharing,
            sync_link_hold_down,
        } = a;
        // Members without their extra sync addresses, and the extra addresses alone, so a
        // refusal names what changed.
        let without_extra = |ms: &[MemberConfig]| -> Vec<MemberConfig> {
            ms.iter()
                .map(|m| MemberConfig {
                    extra_sync_addresses: Vec::new(),
                    ..m.clone()
                })
                .collect()
        };
        let extra = |ms: &[MemberConfig]| -> Vec<Vec<std::net::SocketAddr>> {
            ms.iter().map(|m| m.extra_sync_addresses.clone()).collect()
        };
        let checks: [(&'static str, bool); 18] = [
            ("cluster.name", *name != b.name),
            ("cluster.member_id", *member_id != b.member_id),
            ("cluster.mode", *mode != b.mode),
            (
                "cluster.member",
                without_extra(members) != without_extra(&b.members),
            ),
            (
                "cluster.member.extra_addresses",
                extra(members) != extra(&b.members),
            ),
            (
                "cluster.sync_link_hold_down",
                *sync_link_hold_down != b.sync_link_hold_down,
            ),
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
        let mut changed: Vec<&'static str> = checks
            .into_iter()
            .filter(|(_, differs)| *differs)
            .map(|(key, _)| key)
            .collect();
        // Load Sharing added or removed shows as `cluster.mode`.
        if let (Some(x), Some(y)) = (load_sharing, &b.load_sharing) {
            let LoadSharingConfig {
                distribution,
                flush_ack,
                hold_timeout,
                max_holds,
                hold_timeout_action,
                update_timeout,
                // Not a key: the engine's default on every member.
                max_pending_updates: _,
                enhanced_handshake,
                announce_table,
            } = x;
            let ls_checks: [(&'static str, bool); 8] = [
                ("cluster.distribution", *distribution != y.distribution),
                ("cluster.flush_ack", *flush_ack != y.flush_ack),
                ("cluster.hold_timeout", *hold_timeout != y.hold_timeout),
                ("cluster.max_holds", *max_holds != y.max_holds),
                (
                    "cluster.hold_timeout_action",
                    *hold_timeout_action != y.hold_timeout_action,
                ),
                (
                    "cluster.update_timeout",
                    *update_timeout != y.update_timeout,
                ),
                (
                    "cluster.enhanced_handshake",
                    *enhanced_handshake != y.enhanced_handshake,
                ),
                (
                    "cluster.announce_table",
                    *announce_table != y.announce_table,
                ),
            ];
            changed.extend(
                ls_checks
                    .into_iter()
                    .filter(|(_, differs)| *differs)
                    .map(|(key, _)| key),
            );
        }
        changed
    }

    /// The `[remote_access]` keys that differ between this (running) configuration and `new`.
    /// They are restart-only: the listeners are opened, and the template's address pool built,
    /// once at start (and a changed template would drop every client), so a reload that
    /// changes one must be refused and name it (`remote_access` alone when the table was added
    /// or removed). The template's other keys (identities, keys, proposals, lifetimes) follow
    /// the peer rules of a reload.
    pub fn remote_access_changes(&self, new: &GatewayConfig) -> Vec<&'static str> {
        let sides = (
            self.remote_access
                .as_ref()
                .zip(self.remote_access_template.as_ref()),
            new.remote_access
                .as_ref()
                .zip(new.remote_access_template.as_ref()),
        );
        let ((a, at), (b, bt)) = match sides {
            (None, None) => return Vec::new(),
            (Some(a), Some(b)) => (a, b),
            _ => return vec!["remote_access"],
        };
        let (g, h) = (&*at.gateway, &*bt.gateway);
        let eap =
            |c: &rampart_ike::ClientAuth| matches!(c, rampart_ike::ClientAuth::EapMschapv2(_));
        let checks: [(&'static str, bool); 15] = [
            ("remote_access.name", a.peer != b.peer),
            ("remote_access.pool", g.pool.prefix != h.pool.prefix),
            (
                "remote_access.pool_exclude",
                g.pool.exclude != h.pool.exclude,
            ),
            (
                "remote_access.lease_time",
                g.pool.lease_time != h.pool.lease_time,
            ),
            ("remote_access.dns", g.dns != h.dns),
            ("remote_access.dns_domains", g.dns_domains != h.dns_domains),
            ("remote_access.routes", g.routes != h.routes),
            (
                "remote_access.entry_points",
                g.entry_points != h.entry_points,
            ),
            (
                "remote_access.client_auth",
                eap(&g.client_auth) != eap(&h.client_auth),
            ),
            (
                "remote_access.users_file",
                at.users_digest != bt.users_digest,
            ),
            ("remote_access.mss_clamp", a.mss_clamp != b.mss_clamp),
            (
                "remote_access.stream_setup_timeout",
                a.stream_setup_timeout != b.stream_setup_timeout,
            ),
            (
                "remote_access.stream_idle_timeout",
                a.stream_idle_timeout != b.stream_idle_timeout,
            ),
            ("remote_access.tcp", a.tcp != b.tcp),
            ("remote_access.visitor", a.visitor != b.visitor),
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

/// `[[entry_point_group]]`: gateways (peers, "entry points") that protect the same remote
/// domain, so their `remote_domain`s may overlap. A peer is in at most one group, and no
/// template (`remote_address = "any"`) is in one. The Multiple Entry Points engine picks the
/// member that carries each new connection (see `docs/configuration.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPointGroup {
    pub name: String,
    /// Peer names, each of a `[[peer]]`, at least two.
    pub peers: Vec<String>,
    /// Default first-to-respond; one of FirstToRespond, ByVpnDomain, Random, PriorityList.
    pub method: Method,
    /// Default first-to-respond; only written with by-vpn-domain and priority-list.
    pub tie_break: TieBreak,
    /// The unified domain: `domain` as written, else the union of the members' own remote
    /// domains (prefixes covered by another one dropped). Every member's
    /// [`PeerPolicy::remote_domain`] is this domain; its own is in [`PeerMep::own_domain`].
    pub domain: Vec<IpNet>,
    /// Log every resolution. Default `[mep] tracking`.
    pub tracking: bool,
    /// Every member keeps its tunnel up (`start_action = always`). Default false: members
    /// without a `start_action` get `on-traffic` (the tunnel comes up when a connection is
    /// resolved to the member).
    pub preconnect: bool,
    /// `[[entry_point_group.rule]]` (priority-list only), in file order; at most one without
    /// satellites (the default rule).
    pub rules: Vec<MepRule>,
}

/// A priority-list rule: for the satellites it names (none: the default rule), the members at
/// each level. A member is in at most one level; members in no level are never chosen.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MepRule {
    /// Gateway names (`gateway.name` of satellites); empty for the default rule.
    pub satellites: Vec<String>,
    /// Primary, secondary, tertiary: member peer names.
    pub levels: [Vec<String>; 3],
}

/// A group formed from the peers alone (see [`GatewayConfig::implicit_groups`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImplicitGroup {
    /// `implicit:<first member>` or `backup:<primary>` (no configured group name has a colon).
    pub name: String,
    /// `ImplicitOverlap` or `ImplicitPrimaryBackup`.
    pub kind: GroupKind,
    /// Peer names; for primary/backup the primary first, then its backups in file order.
    pub peers: Vec<String>,
}

/// What `[mep] implicit` makes of peers whose remote domains overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImplicitMethod {
    /// A group with [`Method::FirstToRespond`] (the default).
    FirstToRespond,
    /// A group with [`Method::LoadDistribution`].
    LoadDistribution,
    /// Overlaps are an error, as without `[mep]`.
    Off,
}

/// `[mep]`: probe, implicit-group and sticky-table settings (defaults when the table is absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MepSection {
    /// Whether `[mep]` is in the file (implicit overlap groups need it).
    pub present: bool,
    /// Port, interval, timeout and misses of the probes.
    pub probe: rampart_mep::ProbeSettings,
    /// Default first-to-respond.
    pub implicit: ImplicitMethod,
    /// Default of every group's `tracking`. Default false.
    pub tracking: bool,
    /// Answer probes from the peers (entry-point side). Default true.
    pub respond: bool,
    /// Sticky bindings kept and their idle time. Default 100000 and 1h.
    pub sticky: rampart_mep::StickySettings,
}

impl Default for MepSection {
    fn default() -> Self {
        MepSection {
            present: false,
            probe: rampart_mep::ProbeSettings::default(),
            implicit: ImplicitMethod::FirstToRespond,
            tracking: false,
            respond: true,
            sticky: rampart_mep::StickySettings::default(),
        }
    }
}

/// The MEP keys of one `[[peer]]`. Debug output never shows `probe_key`.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerMep {
    /// The peer's name (the running configuration keeps these after its peers moved into the
    /// IKE engine).
    pub name: String,
    /// `probe`: default auto.
    pub probe: ProbeMode,
    /// `probe_key` (at least 16 bytes), the probe MAC secret; `None`: the PSK is used.
    pub probe_key: Option<zeroize::Zeroizing<Vec<u8>>>,
    /// `backup_of`: the primary peer this one backs up.
    pub backup_of: Option<String>,
    /// The peer's `remote_domain` as written (its [`PeerPolicy::remote_domain`] may be a
    /// group's unified domain, or own ∪ primary's for a backup).
    pub own_domain: Vec<IpNet>,
}

impl std::fmt::Debug for PeerMep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerMep")
            .field("name", &self.name)
            .field("probe", &self.probe)
            .field(
                "probe_key",
                &self
                    .probe_key
                    .as_ref()
                    .map(|k| format!("<{} bytes redacted>", k.len())),
            )
            .field("backup_of", &self.backup_of)
            .field("own_domain", &self.own_domain)
            .finish()
    }
}

/// `[rim]`: route injection. While a peer has an installed CHILD SA, its remote domain is
/// installed as routes `prefix dev <tunnel> table T proto P metric M`, and withdrawn when the
/// last CHILD SA goes; a routing daemon redistributes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RimConfig {
    /// Kernel routing table. Default 201; 1..=4294967295 except 253, 254, 255.
    pub table: u32,
    /// `rtm_protocol` of the routes. Default 201; 5..=255 (0-4 belong to the kernel).
    pub protocol: u8,
    /// Route metric (priority). Default 100.
    pub metric: u32,
    /// Peer names whose domains are injected; empty: every peer.
    pub peers: Vec<String>,
}

impl RimConfig {
    /// Whether routes of `peer` (a peer name) are injected.
    pub fn covers(&self, peer: &str) -> bool {
        self.peers.is_empty() || self.peers.iter().any(|p| p == peer)
    }
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
