//! The remote-access client profile (`rampart client up --profile FILE`): where the gateway
//! is, how to authenticate, which transports to try and what to do with the host's routes and
//! DNS. Like the gateway file, every table denies unknown keys and errors name file, line,
//! key and what is allowed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use rampart_ike::{EspProposal, Identity, IkeProposal, PeerAuth, RaClient, RemoteAccess};
use zeroize::Zeroizing;

use crate::error::{ConfigError, ConfigErrors, ErrorKind, Sink};
use crate::schema::*;
use crate::validate::{defaults, profile::validate_profile};

/// Reads and validates a client profile. Relative paths inside it (`psk_file`,
/// `password_file`, certificates, `state_dir`, ...) start at the file's directory; the default
/// `name` is the file name's stem.
pub fn load_profile(path: &Path) -> Result<ClientProfile, ConfigErrors> {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse_profile(&text, &name),
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            kind: ErrorKind::Io,
            file: name,
            position: None,
            key: String::new(),
            message: format!("cannot read the profile: {e}"),
            allowed: None,
        }])),
    }
}

/// Validates profile text. `file_name` names the file in errors; its directory is where
/// relative paths start and its stem is the default `name`.
pub fn parse_profile(text: &str, file_name: &str) -> Result<ClientProfile, ConfigErrors> {
    let mut sink = Sink::new(file_name, text);
    let path = Path::new(file_name);
    let base_dir = path.parent().unwrap_or(Path::new(""));
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let profile = crate::document::read_profile(text, &mut sink)
        .and_then(|sec| validate_profile(&sec, base_dir, &stem, &mut sink));
    match profile {
        Some(p) if sink.is_empty() => Ok(p),
        _ => Err(ConfigErrors(sink.finish())),
    }
}

impl ClientProfile {
    /// This profile aimed at entry point `i` (`gateway`, `gateway_port` and, when that entry
    /// names a port, `visitor_port`); `None` when there is no such entry point.
    pub fn for_entry_point(&self, i: usize) -> Option<ClientProfile> {
        let e = self.entry_points.get(i)?;
        let mut p = self.clone();
        p.gateway = e.host.clone();
        p.gateway_port = e.port;
        p.visitor_port = e.visitor_port;
        Some(p)
    }

    /// This profile with learned entry points: `extra` (each `host`, `host:port` or
    /// `[v6]:port`, the port being the Visitor Mode port as in `gateways`) appended after its
    /// own, skipping any that do not parse or are listed already; `selection`, when given,
    /// replaces the profile's.
    pub fn with_learned_entry_points(
        &self,
        extra: &[String],
        selection: Option<ClientSelection>,
    ) -> ClientProfile {
        let mut p = self.clone();
        for e in extra {
            let Ok((host, port)) = crate::validate::profile::split_gateway(e) else {
                continue;
            };
            if p.entry_points
                .iter()
                .any(|x| x.host == host && x.port == port)
            {
                continue;
            }
            p.entry_points.push(EntryPoint {
                host,
                port,
                visitor_port: port.unwrap_or(self.visitor_port),
            });
        }
        if let Some(s) = selection {
            p.selection = s;
        }
        p
    }

    /// The node configuration of one connection attempt: a single peer named after the
    /// profile with [`RemoteAccess::Client`], at `gateway` (already resolved by the caller)
    /// from `local`, started at once; IKE starts on the NAT-T format (`Encapsulation::Stream`)
    /// on the stream transports. The local and remote domains are 0.0.0.0/0 (the gateway
    /// narrows the traffic selectors to the virtual address and its routes), the firewall
    /// passes everything (the client is not a firewall), and the status socket is
    /// `state_dir/<name>.sock`. No cluster, MEP, route injection or `[remote_access]`.
    pub fn node_config(
        &self,
        local: IpAddr,
        gateway: IpAddr,
        transport: ClientTransport,
    ) -> GatewayConfig {
        let everything = IpNet::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0).expect("/0 is valid");
        let encapsulation = match transport {
            ClientTransport::Udp => Encapsulation::Auto,
            ClientTransport::Tcp | ClientTransport::Tls => Encapsulation::Stream,
        };
        let peer = PeerPolicy {
            name: self.name.clone(),
            local_address: local,
            remote_address: RemoteAddress::Ip(gateway),
            local_id: self.local_id.clone(),
            remote_id: self.remote_id.clone(),
            psk: self.psk.clone(),
            remote_domain: vec![everything],
            ike_proposals: self.ike_proposals.clone(),
            esp_proposals: self.esp_proposals.clone(),
            esn: self.esn,
            start_action: StartAction::Always,
            ike_lifetime: defaults::DEFAULT_IKE_LIFETIME,
            child_lifetime: defaults::DEFAULT_CHILD_LIFETIME,
            child_lifetime_bytes: None,
            liveness_interval: self.liveness,
            encapsulation,
            replay_window: defaults::DEFAULT_REPLAY_WINDOW,
            auth: self.auth.clone(),
            remote_access: RemoteAccess::Client(Arc::new(RaClient {
                eap: self.eap.clone(),
                small_first_proposal: self.small_first_proposal,
            })),
            // MOBIKE moves the IKE SA on UDP; a stream reconnects instead.
            mobike: self.mobike && transport == ClientTransport::Udp,
        };
        let peer_mep = PeerMep {
            name: self.name.clone(),
            probe: ProbeMode::Auto,
            probe_key: None,
            backup_of: None,
            own_domain: vec![everything],
        };
        GatewayConfig {
            gateway: GatewaySection {
                name: self.name.clone(),
                member_id: 0,
                status_socket: self.status_socket(),
                ike_port: defaults::DEFAULT_IKE_PORT,
                nat_t_port: defaults::DEFAULT_NAT_T_PORT,
                retransmit_timeout: defaults::DEFAULT_RETRANSMIT_TIMEOUT,
                retransmit_tries: defaults::DEFAULT_RETRANSMIT_TRIES,
                nat_keepalive: self.keepalive,
                fragmentation: true,
                fragment_size: defaults::DEFAULT_FRAGMENT_SIZE,
                cookie_threshold: defaults::DEFAULT_COOKIE_THRESHOLD,
                half_open_per_source: defaults::DEFAULT_HALF_OPEN_PER_SOURCE,
            },
            tunnel: TunnelSection {
                device: self.device.clone(),
                mtu: self.mtu,
                offload: false,
                crypto_threads: 0,
            },
            local: LocalSection {
                domain: vec![everything],
            },
            peers: vec![peer],
            entry_point_groups: Vec::new(),
            firewall: InspectPolicy {
                capacity: CLIENT_CONNECTIONS,
                ..InspectPolicy::default()
            },
            cluster: None,
            mep: MepSection::default(),
            peer_mep: vec![peer_mep],
            implicit_groups: Vec::new(),
            rim: None,
            remote_access: None,
            remote_access_template: None,
        }
    }

    /// The client's control socket: `state_dir/<name>.sock`.
    pub fn status_socket(&self) -> PathBuf {
        self.state_dir.join(format!("{}.sock", self.name))
    }
}

/// Connections the client's (rule-less, accept-all) inspector tracks at most; past that it
/// still accepts, untracked.
pub const CLIENT_CONNECTIONS: u32 = 65_536;

/// A validated client profile.
#[derive(Debug, Clone)]
pub struct ClientProfile {
    /// Names the connection in status and state files (default: the file name's stem).
    pub name: String,
    /// `gateway = "vpn.example.org"` or `"192.0.2.1:8443"` (`"[2001:db8::1]:8443"`): the host
    /// (an address or a name to resolve, without brackets or port) and, when written, the
    /// port that replaces `visitor_port` (the seed's `host:PORT` form for Visitor Mode).
    pub gateway: String,
    pub gateway_port: Option<u16>,
    /// Multiple Entry Points: every gateway of `gateways = [...]` in the order written (one
    /// entry, `gateway` and `gateway_port`, without it). `gateway`/`gateway_port` are the
    /// first; [`ClientProfile::for_entry_point`] gives the profile aimed at another one. All
    /// of them authenticate as `remote_id` (its default: the first's host).
    pub entry_points: Vec<EntryPoint>,
    /// How the gateway of a connection is chosen among `entry_points`. Default
    /// first-to-respond.
    pub selection: ClientSelection,
    /// Learned entry points: keep the list of entry points the gateway sends at connect
    /// (`<state_dir>/<name>.gateways`) and try them after `entry_points` from the next
    /// connection on. Default true.
    pub learn_gateways: bool,
    /// Default: with `user`, the user name (`email:` form when it has an `@`, else a host
    /// name identity); with a certificate, its subject DN; with a PSK it must be written.
    /// Default `remote_id`: the gateway host (an address or a host name identity).
    pub local_id: Identity,
    pub remote_id: Identity,
    /// How the gateway authenticates (and, without `eap`, how we do): PSK or certificates
    /// (with `eap`, the certificate part may hold only the CAs that verify the gateway).
    pub auth: PeerAuth,
    /// Empty unless `auth` is PSK.
    pub psk: Zeroizing<Vec<u8>>,
    /// EAP-MSCHAPv2 user name and password (`user`, `password` or `password_file`).
    pub eap: Option<(String, Zeroizing<String>)>,
    /// The transports the ladder may use, in the order it prefers them. Default all three.
    pub transports: Vec<ClientTransport>,
    /// RFC 9329 TCP port. Default 4500.
    pub tcp_port: u16,
    /// Visitor Mode (TLS) port. Default 443, or the gateway's `:PORT`.
    pub visitor_port: u16,
    /// ALPN offered in Visitor Mode. Default `"rampart-ike"`.
    pub alpn: String,
    /// CA (PEM) that verifies the gateway's TLS certificate; default: the IKE CAs of `auth`,
    /// else the system roots.
    pub tls_ca: Option<PathBuf>,
    /// The SNI sent and checked in Visitor Mode. Default: `gateway`'s host.
    pub tls_server_name: Option<String>,
    pub proxy: ProxySetting,
    pub ike_proposals: Vec<IkeProposal>,
    pub esp_proposals: Vec<EspProposal>,
    /// Extended sequence numbers: `-esn` on every ESP proposal. Default false.
    pub esn: bool,
    /// Offer only the first IKE proposal first; default true.
    pub small_first_proposal: bool,
    /// RFC 3948 NAT keepalive interval. Default 20 s.
    pub keepalive: Duration,
    /// Liveness check interval (a dead gateway is noticed within about 3 of these). Default 10 s.
    pub liveness: Duration,
    /// MOBIKE (RFC 4555) on UDP: when the host's address changes, the IKE SA moves to it
    /// instead of being rebuilt. Default true.
    pub mobike: bool,
    pub dns: DnsMode,
    /// nftables: nothing leaves outside the tunnel except to the gateway (and the captive
    /// portal while logging in). Default false.
    pub kill_switch: bool,
    /// Captive-portal probe URL (plain HTTP, expects `204`); `None` turns the probe off.
    pub captive_portal: Option<String>,
    /// Proxy replacement: write a PAC file here while connected, and serve it on `pac_listen`.
    pub pac_file: Option<PathBuf>,
    pub pac_listen: Option<SocketAddr>,
    /// TUN device. Default `rampart-c0`.
    pub device: String,
    /// Starting tunnel MTU. Default 1400 (576..=9000); the active PMTU probe may lower it.
    pub mtu: u16,
    /// Active path-MTU probing after the CHILD SA is up. Default true.
    pub pmtu_probe: bool,
    /// Clamp TCP MSS on SYN and SYN-ACK through the tunnel. Default true.
    pub mss_clamp: bool,
    /// Where the client keeps what it changed (for cleanup after a crash) and its control
    /// socket. Default `/run/rampart/client`.
    pub state_dir: PathBuf,
}

/// One gateway of a profile: the host (an address or a name), the `:PORT` written with it, and
/// its Visitor Mode port (that `:PORT`, else the profile's `visitor_port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPoint {
    pub host: String,
    pub port: Option<u16>,
    pub visitor_port: u16,
}

impl std::fmt::Display for EntryPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.port, self.host.contains(':')) {
            (Some(p), true) => write!(f, "[{}]:{p}", self.host),
            (Some(p), false) => write!(f, "{}:{p}", self.host),
            (None, _) => f.write_str(&self.host),
        }
    }
}

/// `selection` of a profile with several `gateways`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientSelection {
    /// Probe every gateway, connect to the first that answers.
    #[default]
    FirstToRespond,
    /// The first gateway that is up, in the order written; the others are backups.
    PrimaryBackup,
}

impl ClientSelection {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientSelection::FirstToRespond => "first-to-respond",
            ClientSelection::PrimaryBackup => "primary-backup",
        }
    }
}

/// One rung of the transport ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientTransport {
    /// IKE on UDP 500, NAT-T on the NAT-T port when a NAT is seen.
    Udp,
    /// RFC 9329 over TCP (`tcp_port`).
    Tcp,
    /// Visitor Mode: RFC 9329 inside TLS (`visitor_port`).
    Tls,
}

/// Which HTTP CONNECT proxy the stream transports go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxySetting {
    /// Direct connections only.
    None,
    /// `https_proxy` / `HTTPS_PROXY` / `all_proxy` from the environment, honouring `no_proxy`.
    /// The default.
    Environment,
    /// `proxy = "http://proxy.example:3128"`.
    Url {
        url: String,
        /// `proxy_user` / `proxy_password` for Basic or Digest (whichever the proxy asks).
        credentials: Option<(String, Zeroizing<String>)>,
    },
    /// `proxy_pac = "http://wpad/wpad.dat"` or a file path: evaluated for the gateway's URL.
    Pac {
        location: String,
        credentials: Option<(String, Zeroizing<String>)>,
    },
}

/// Where split DNS goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsMode {
    /// systemd-resolved when it runs, else resolv.conf. The default.
    Auto,
    /// systemd-resolved routing domains on the TUN device (resolvectl).
    Resolved,
    /// Rewrite /etc/resolv.conf (saved and restored).
    ResolvConf,
    /// Leave DNS alone.
    Off,
}

/// Two remote-access gateways whose Office Mode pools overlap although they are not one
/// cluster (see [`pool_conflicts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConflict {
    /// The two gateway files and their pools.
    pub a: (String, IpNet),
    pub b: (String, IpNet),
    /// The profile that lists both as entry points (then the overlap is an error); `None`
    /// when no profile checked with them does (a warning: they may serve other clients).
    pub profile: Option<String>,
}

impl std::fmt::Display for PoolConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ((fa, pa), (fb, pb)) = (&self.a, &self.b);
        match &self.profile {
            Some(p) => write!(
                f,
                "{p}: gateways {fa} and {fb} are entry points of this profile but not one cluster, and their Office Mode pools overlap ({pa}, {pb}): a client moving between them could be given an address the other gateway leased to another client; give each gateway its own pool"
            ),
            None => write!(
                f,
                "warning: {fa} and {fb} are not one cluster but their Office Mode pools overlap ({pa}, {pb}); if clients use both as entry points, give each its own pool"
            ),
        }
    }
}

/// Office Mode pools that must not overlap: gateways that are not members of one cluster
/// (same `[cluster] name`) hand out addresses independently, so a client that moves between
/// them (Multiple Entry Points) must find disjoint pools, or two clients may end up with one
/// address. `gateways`: (file, configuration) of every gateway file checked together;
/// `profiles`: (file, profile). A pair listed by a profile (an entry point's host is the
/// gateway's `[remote_access] local_address`) is reported with that profile; other
/// overlapping pairs without one. Members of one cluster share one pool by design.
pub fn pool_conflicts(
    gateways: &[(String, &crate::GatewayConfig)],
    profiles: &[(String, &ClientProfile)],
) -> Vec<PoolConflict> {
    // (file, pool, its remote-access address, cluster name)
    let ra: Vec<(&str, IpNet, Option<IpAddr>, Option<&str>)> = gateways
        .iter()
        .filter_map(|(file, g)| {
            let t = g.remote_access_template.as_ref()?;
            let local = g.remote_access.as_ref().and_then(|r| {
                g.peers
                    .iter()
                    .find(|p| p.name == r.peer)
                    .map(|p| p.local_address)
            });
            let cluster = g.cluster.as_ref().map(|c| c.name.as_str());
            Some((file.as_str(), t.gateway.pool.prefix, local, cluster))
        })
        .collect();
    let overlap = |a: &IpNet, b: &IpNet| a.contains(&b.network()) || b.contains(&a.network());
    let mut out = Vec::new();
    for (i, x) in ra.iter().enumerate() {
        for y in &ra[i + 1..] {
            let one_cluster = matches!((x.3, y.3), (Some(a), Some(b)) if a == b);
            if one_cluster || !overlap(&x.1, &y.1) {
                continue;
            }
            let lists = |p: &ClientProfile, addr: Option<IpAddr>| {
                addr.is_some_and(|a| {
                    p.entry_points
                        .iter()
                        .any(|e| e.host.parse::<IpAddr>().ok() == Some(a))
                })
            };
            let profile = profiles
                .iter()
                .find(|(_, p)| lists(p, x.2) && lists(p, y.2))
                .map(|(f, _)| f.clone());
            out.push(PoolConflict {
                a: (x.0.to_owned(), x.1),
                b: (y.0.to_owned(), y.1),
                profile,
            });
        }
    }
    out
}
