//! `[remote_access]`: the template peer remote-access clients connect to, its Office Mode pool,
//! the DNS servers, domains and routes handed to clients, how clients authenticate, and the
//! stream transports (`[remote_access.tcp]`, `[remote_access.visitor]`).

use std::net::SocketAddr;
use std::sync::Arc;

use rampart_cluster::{ClusterConfig, ClusterMode};
use rampart_ike::{ClientAuth, RaGateway, RemoteAccess};
use rampart_lease::{Pool, PoolConfig, PoolError, Share};
use rampart_wire::ike::{EntryPointList, EntryPointSelection};

use super::*;
use crate::raw::{RawRaTcp, RawRaVisitor, RawRemoteAccess};

/// The template peer's name without `name`.
pub(crate) const DEFAULT_RA_NAME: &str = "remote-access";
/// `remote_id = "%any"` (the default): any client identity selects the template.
pub(crate) const ANY_ID: &str = "%any";
pub(crate) const DEFAULT_LEASE_TIME: Duration = Duration::from_secs(3600);
pub(crate) const LEASE_TIME_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(60)..=Duration::from_secs(7 * 86400);
/// Accepted streams: time to the first IKE or ESP frame, and silence after it.
pub(crate) const DEFAULT_STREAM_SETUP_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const STREAM_SETUP_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(5)..=Duration::from_secs(600);
pub(crate) const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
pub(crate) const STREAM_IDLE_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(30)..=Duration::from_secs(86400);
pub(crate) const DEFAULT_RA_TCP_PORT: u16 = 4500;
pub(crate) const DEFAULT_VISITOR_PORT: u16 = 443;
pub(crate) const DEFAULT_ALPN: &str = "rampart-ike";
const ADDRESS_FORM: &str = "an IPv4 address such as 10.99.0.1";
const PREFIX_FORM: &str = "an IPv4 prefix such as 10.99.0.0/24";

/// The identity of a template that any client identity selects (see [`ANY_ID`]).
pub(crate) fn any_identity() -> Identity {
    Identity::Fqdn(ANY_ID.to_string())
}

/// What `[remote_access]` adds to the configuration.
pub(super) struct RemoteAccessParts {
    pub peer: PeerPolicy,
    pub mep: PeerMep,
    pub config: RemoteAccessConfig,
    pub template: RaTemplate,
}

/// Whether `s` is a DNS name (an optional trailing dot; labels of letters, digits, `-`, `_`).
pub(crate) fn is_dns_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A digest of the users file (for reload comparisons without keeping a second copy of the
/// hashes).
fn digest(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    rampart_crypto::prf(
        rampart_crypto::Prf::HmacSha256,
        b"rampart users file",
        &[bytes],
        &mut out,
    );
    out
}

impl Validator<'_, '_> {
    /// `[remote_access]`, or `None` without the table (or with errors, which are reported).
    /// `peers` are the `[[peer]]`s with their remote domains as written.
    pub(super) fn remote_access(
        &mut self,
        doc: &RawDocument,
        local: &LocalSection,
        peers: &[PeerPolicy],
    ) -> Option<RemoteAccessParts> {
        let sec = &doc.remote_access;
        if !sec.present {
            return None;
        }
        let raw = &sec.value;
        let as_peer = Section {
            value: raw.as_peer(),
            present: sec.present,
            span: sec.span.clone(),
            reported: sec.reported.clone(),
        };
        let mut unused = Vec::new();
        let mut peer = self.peer("remote_access", &as_peer, local, &mut unused, 0, true);
        if let Some(p) = peers.iter().position(|p| p.name == peer.name) {
            let sp = raw.name.as_ref().and_then(span).or(sec.span.clone());
            self.error(
                ErrorKind::Duplicate,
                sp,
                "remote_access.name",
                format!("the name \"{}\" is also the name of peer[{p}]", peer.name),
                "a name used by no [[peer]] (default \"remote-access\")".to_string(),
            );
        }

        let pool = self.ra_pool(sec, local, peers);
        let gateway = self.ra_gateway(sec, &peer, pool);
        let mss_clamp = raw.mss_clamp.as_ref().is_none_or(|b| *b.get_ref());
        let stream_setup_timeout = match &raw.stream_setup_timeout {
            Some(v) => self.duration(
                "remote_access.stream_setup_timeout",
                v,
                STREAM_SETUP_RANGE,
                false,
            ),
            None => Some(DEFAULT_STREAM_SETUP_TIMEOUT),
        };
        let stream_idle_timeout = match &raw.stream_idle_timeout {
            Some(v) => self.duration(
                "remote_access.stream_idle_timeout",
                v,
                STREAM_IDLE_RANGE,
                false,
            ),
            None => Some(DEFAULT_STREAM_IDLE_TIMEOUT),
        };
        let family_v6 = peer.local_address.is_ipv6();
        let tcp = self.ra_tcp(&doc.remote_access_tcp, family_v6);
        let visitor = self.ra_visitor(&doc.remote_access_visitor, family_v6);
        if let (Some((tcp, _)), Some((visitor, port_span))) = (&tcp, &visitor) {
            let clash = tcp.listen.iter().find(|t| {
                visitor.listen.iter().any(|v| {
                    t.port() == v.port()
                        && t.is_ipv4() == v.is_ipv4()
                        && (t.ip() == v.ip() || t.ip().is_unspecified() || v.ip().is_unspecified())
                })
            });
            if let Some(addr) = clash {
                self.error(
                    ErrorKind::Conflict,
                    port_span.clone().or(doc.remote_access_visitor.span.clone()),
                    "remote_access.visitor.port",
                    format!("Visitor Mode and [remote_access.tcp] both listen on TCP {addr}"),
                    "another port (or disjoint bind addresses)".to_string(),
                );
            }
        }
        let (gateway, users_digest) = gateway?;
        let stream_setup_timeout = stream_setup_timeout?;
        let stream_idle_timeout = stream_idle_timeout?;
        let pool = gateway.pool.prefix;
        peer.remote_domain = vec![pool];
        let gateway = Arc::new(gateway);
        peer.remote_access = RemoteAccess::Gateway(gateway.clone());
        let mep = PeerMep {
            name: peer.name.clone(),
            probe: ProbeMode::Auto,
            probe_key: None,
            backup_of: None,
            own_domain: vec![pool],
        };
        let config = RemoteAccessConfig {
            peer: peer.name.clone(),
            tcp: tcp.map(|(t, _)| t),
            visitor: visitor.map(|(v, _)| v),
            mss_clamp,
            stream_setup_timeout,
            stream_idle_timeout,
        };
        let template = RaTemplate {
            gateway,
            users_digest,
        };
        Some(RemoteAccessParts {
            peer,
            mep,
            config,
            template,
        })
    }

    /// One IPv4 prefix without host bits.
    fn ra_prefix(&mut self, key: &str, v: &Spanned<String>) -> Option<IpNet> {
        let s = v.get_ref().trim();
        let net = s
            .parse::<IpNet>()
            .ok()
            .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from));
        match net {
            None => self.error(
                ErrorKind::InvalidValue,
                span(v),
                key,
                format!("invalid prefix \"{s}\""),
                PREFIX_FORM.to_string(),
            ),
            Some(IpNet::V6(_)) => self.error(
                ErrorKind::InvalidValue,
                span(v),
                key,
                format!("\"{s}\" is IPv6; remote access hands out IPv4 only"),
                PREFIX_FORM.to_string(),
            ),
            Some(net) if net.trunc() != net => self.error(
                ErrorKind::InvalidValue,
                span(v),
                key,
                format!(
                    "prefix \"{s}\" has host bits set (did you mean {}?)",
                    net.trunc()
                ),
                PREFIX_FORM.to_string(),
            ),
            Some(net) => return Some(net),
        }
        None
    }

    /// One IPv4 unicast address.
    fn ra_address(&mut self, key: &str, v: &Spanned<String>) -> Option<IpAddr> {
        let s = v.get_ref().trim();
        match s.parse::<IpAddr>() {
            Ok(a @ IpAddr::V4(v4))
                if !v4.is_unspecified() && !v4.is_multicast() && !v4.is_broadcast() =>
            {
                Some(a)
            }
            Ok(a) => {
                self.error(
                    ErrorKind::InvalidValue,
                    span(v),
                    key,
                    format!("{a} is not an IPv4 unicast address"),
                    ADDRESS_FORM.to_string(),
                );
                None
            }
            Err(_) => {
                self.error(
                    ErrorKind::InvalidValue,
                    span(v),
                    key,
                    format!("invalid IP address \"{s}\""),
                    ADDRESS_FORM.to_string(),
                );
                None
            }
        }
    }

    /// Load Sharing: the Office Mode pool is split among the members (each hands out fresh
    /// addresses only from its share: `B` = the member count rounded up to a power of two
    /// equal blocks, member `i` of the members sorted by id owning blocks `i`, `i + n`, ...);
    /// every member's share must hold a usable address.
    pub(super) fn ra_pool_shares(
        &mut self,
        doc: &RawDocument,
        cluster: &ClusterConfig,
        peers: &[PeerPolicy],
    ) {
        if cluster.mode != ClusterMode::LoadSharing {
            return;
        }
        let Ok(n) = u32::try_from(cluster.members.len()) else {
            return;
        };
        for p in peers {
            let RemoteAccess::Gateway(g) = &p.remote_access else {
                continue;
            };
            let refused = (0..n).find_map(|i| {
                Pool::<u8>::new(g.pool.clone())
                    .and_then(|mut pool| pool.set_share(Some(Share::new(i, n)?)))
                    .err()
            });
            if let Some(e) = refused {
                let blocks = n.next_power_of_two();
                self.error(
                    ErrorKind::OutOfRange,
                    doc.remote_access.value.pool.as_ref().and_then(span),
                    "remote_access.pool",
                    e.to_string(),
                    format!(
                        "a prefix whose {blocks} equal blocks (for the {n} load-sharing members) each hold at least one usable address (outside the network, broadcast and pool_exclude addresses)"
                    ),
                );
            }
        }
    }

    /// `pool`, `pool_exclude`, `lease_time`: a pool that can hand out at least one address,
    /// outside the local domain and every peer's remote domain.
    fn ra_pool(
        &mut self,
        sec: &Section<RawRemoteAccess>,
        local: &LocalSection,
        peers: &[PeerPolicy],
    ) -> Option<PoolConfig> {
        let raw = &sec.value;
        let Some(v) = &raw.pool else {
            self.missing(sec, "remote_access", "pool", PREFIX_FORM);
            return None;
        };
        let prefix = self.ra_prefix("remote_access.pool", v)?;
        let mut ok = true;
        if let Some(l) = local.domain.iter().find(|l| overlaps(l, &prefix)) {
            ok = false;
            self.error(
                ErrorKind::Conflict,
                span(v),
                "remote_access.pool",
                format!("{prefix} overlaps the local domain prefix {l}"),
                "a prefix outside local.domain and every peer's remote_domain".to_string(),
            );
        }
        for (i, p) in peers.iter().enumerate() {
            if let Some(r) = p.remote_domain.iter().find(|r| overlaps(r, &prefix)) {
                ok = false;
                self.error(
                    ErrorKind::Conflict,
                    span(v),
                    "remote_access.pool",
                    format!("{prefix} overlaps {r}, the remote domain of peer[{i}]"),
                    "a prefix outside local.domain and every peer's remote_domain".to_string(),
                );
            }
        }
        let mut exclude = Vec::new();
        if let Some(list) = &raw.pool_exclude {
            for (i, item) in list.get_ref().iter().enumerate() {
                let key = format!("remote_access.pool_exclude[{i}]");
                let Some(a) = self.ra_address(&key, item) else {
                    ok = false;
                    continue;
                };
                if !prefix.contains(&a) {
                    ok = false;
                    self.error(
                        ErrorKind::Conflict,
                        span(item),
                        key,
                        format!("{a} is not inside the pool {prefix}"),
                        format!("addresses inside {prefix}"),
                    );
                } else {
                    exclude.push(a);
                }
            }
        }
        let lease_time = match &raw.lease_time {
            Some(v) => self.duration("remote_access.lease_time", v, LEASE_TIME_RANGE, false)?,
            None => DEFAULT_LEASE_TIME,
        };
        let config = PoolConfig {
            prefix,
            exclude,
            lease_time,
        };
        if !ok {
            return None;
        }
        match Pool::<u8>::new(config.clone()) {
            Ok(_) => Some(config),
            Err(e) => {
                let allowed = match e {
                    PoolError::Empty(_) => "a prefix with at least one address left after the network, broadcast and pool_exclude addresses",
                    _ => PREFIX_FORM,
                };
                self.error(
                    ErrorKind::OutOfRange,
                    span(v),
                    "remote_access.pool",
                    e.to_string(),
                    allowed.to_string(),
                );
                None
            }
        }
    }

    /// `dns`, `dns_domains`, `routes`, `client_auth`, `users_file`: what the template hands
    /// out and how clients authenticate. `None` on any error.
    fn ra_gateway(
        &mut self,
        sec: &Section<RawRemoteAccess>,
        peer: &PeerPolicy,
        pool: Option<PoolConfig>,
    ) -> Option<(RaGateway, Option<[u8; 32]>)> {
        let raw = &sec.value;
        let mut ok = true;
        let mut dns = Vec::new();
        for (i, item) in raw.dns.iter().flat_map(|l| l.get_ref().iter().enumerate()) {
            match self.ra_address(&format!("remote_access.dns[{i}]"), item) {
                Some(a) => dns.push(a),
                None => ok = false,
            }
        }
        let mut dns_domains = Vec::new();
        for (i, item) in raw
            .dns_domains
            .iter()
            .flat_map(|l| l.get_ref().iter().enumerate())
        {
            let s = item.get_ref().trim();
            if is_dns_name(s) {
                dns_domains.push(s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase());
            } else {
                ok = false;
                self.error(
                    ErrorKind::InvalidValue,
                    span(item),
                    format!("remote_access.dns_domains[{i}]"),
                    format!("invalid domain name \"{s}\""),
                    "a DNS domain such as corp.example.com".to_string(),
                );
            }
        }
        let mut routes = Vec::new();
        for (i, item) in raw
            .routes
            .iter()
            .flat_map(|l| l.get_ref().iter().enumerate())
        {
            match self.ra_prefix(&format!("remote_access.routes[{i}]"), item) {
                Some(n) => routes.push(n),
                None => ok = false,
            }
        }
        let entry_points = self.ra_entry_points(raw);
        let (client_auth, users_digest) = self.ra_client_auth(sec, peer)?;
        let pool = pool?;
        let entry_points = entry_points?;
        ok.then_some((
            RaGateway {
                pool,
                dns,
                dns_domains,
                routes,
                client_auth,
                entry_points,
            },
            users_digest,
        ))
    }

    /// `entry_points` (each `host` or `host:port`, `[v6]:port`; at most 16, none twice) and
    /// `entry_point_selection`: what clients learn at connect. `Some(None)` when there are
    /// none; `None` on an error (reported).
    fn ra_entry_points(&mut self, raw: &RawRemoteAccess) -> Option<Option<EntryPointList>> {
        use rampart_wire::ike::cfg_entry_points::{validate_entry_point, MAX_ENTRY_POINTS};
        let mut ok = true;
        let selection = match &raw.entry_point_selection {
            None => EntryPointSelection::Unspecified,
            Some(v) => {
                if raw.entry_points.is_none() {
                    ok = false;
                    self.error(
                        ErrorKind::Conflict,
                        span(v),
                        "remote_access.entry_point_selection",
                        "entry_point_selection without entry_points",
                        "it tells clients how to choose among entry_points = [...]".to_string(),
                    );
                }
                let s = self.keyword(
                    "remote_access.entry_point_selection",
                    v,
                    &[
                        ("first-to-respond", EntryPointSelection::FirstToRespond),
                        ("primary-backup", EntryPointSelection::PrimaryBackup),
                    ],
                );
                ok &= s.is_some();
                s.unwrap_or_default()
            }
        };
        let Some(list) = &raw.entry_points else {
            return ok.then_some(None);
        };
        if list.get_ref().len() > MAX_ENTRY_POINTS {
            self.error(
                ErrorKind::OutOfRange,
                span(list),
                "remote_access.entry_points",
                format!("{} entry points", list.get_ref().len()),
                format!("at most {MAX_ENTRY_POINTS}"),
            );
            return None;
        }
        let mut entries: Vec<String> = Vec::new();
        for (i, item) in list.get_ref().iter().enumerate() {
            let key = format!("remote_access.entry_points[{i}]");
            let e = item.get_ref().trim();
            if let Err(why) = validate_entry_point(e) {
                ok = false;
                let why = why.to_string();
                let why = why.strip_prefix("RAMPART_ENTRY_POINTS: ").unwrap_or(&why);
                self.error(
                    ErrorKind::InvalidValue,
                    span(item),
                    key,
                    format!("invalid entry point \"{e}\": {why}"),
                    "a host name or address, optionally with :port (\"vpn-eu.example.org\", \"203.0.113.7:4500\", \"[2001:db8::7]:443\")".to_string(),
                );
            } else if entries.iter().any(|x| x == e) {
                ok = false;
                self.error(
                    ErrorKind::Duplicate,
                    span(item),
                    key,
                    format!("\"{e}\" is listed twice"),
                    "each entry point once".to_string(),
                );
            } else {
                entries.push(e.to_owned());
            }
        }
        if !ok {
            return None;
        }
        Some((!entries.is_empty()).then_some(EntryPointList { selection, entries }))
    }

    fn ra_client_auth(
        &mut self,
        sec: &Section<RawRemoteAccess>,
        peer: &PeerPolicy,
    ) -> Option<(ClientAuth, Option<[u8; 32]>)> {
        #[derive(Clone, Copy, PartialEq)]
        enum Kind {
            Psk,
            Cert,
            Eap,
        }
        let raw = &sec.value;
        let own = if matches!(peer.auth, PeerAuth::Cert(_))
            || raw.auth.as_ref().is_some_and(|a| a.get_ref() == "cert")
        {
            Kind::Cert
        } else {
            Kind::Psk
        };
        let kind = match &raw.client_auth {
            None => own,
            Some(v) => {
                let kind = self.keyword(
                    "remote_access.client_auth",
                    v,
                    &[
                        ("psk", Kind::Psk),
                        ("cert", Kind::Cert),
                        ("eap-mschapv2", Kind::Eap),
                    ],
                )?;
                if kind != Kind::Eap && kind != own {
                    let (this, that) = match own {
                        Kind::Cert => ("cert", "psk"),
                        _ => ("psk", "cert"),
                    };
                    self.error(
                        ErrorKind::Conflict,
                        span(v),
                        "remote_access.client_auth",
                        format!("client_auth = \"{that}\" but the gateway's auth is \"{this}\""),
                        format!("\"{this}\" (the same method as auth) or \"eap-mschapv2\""),
                    );
                    return None;
                }
                kind
            }
        };
        if kind != Kind::Eap {
            if let Some(f) = &raw.users_file {
                self.error(
                    ErrorKind::Conflict,
                    span(f),
                    "remote_access.users_file",
                    "users_file is set but client_auth is not \"eap-mschapv2\"",
                    "client_auth = \"eap-mschapv2\" with a users_file, or no users_file"
                        .to_string(),
                );
                return None;
            }
            return Some((ClientAuth::Peer, None));
        }
        let Some(file) = &raw.users_file else {
            self.error(
                ErrorKind::Missing,
                raw.client_auth.as_ref().and_then(span),
                "remote_access.users_file",
                "client_auth = \"eap-mschapv2\" needs a users file",
                "users_file = \"users.toml\" with [[user]] tables (name, nt_hash)".to_string(),
            );
            return None;
        };
        let path = self.base_dir.join(file.get_ref());
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => zeroize::Zeroizing::new(t),
            Err(e) => {
                self.error(
                    ErrorKind::Io,
                    span(file),
                    "remote_access.users_file",
                    format!("cannot read {}: {e}", path.display()),
                    "a readable file (relative paths start at the config file's directory)"
                        .to_string(),
                );
                return None;
            }
        };
        match rampart_eap::Credentials::from_toml(&text) {
            Ok(c) if c.is_empty() => {
                self.error(
                    ErrorKind::OutOfRange,
                    span(file),
                    "remote_access.users_file",
                    format!("{}: no [[user]] table", path.display()),
                    "at least one [[user]] with name and nt_hash".to_string(),
                );
                None
            }
            Ok(c) => Some((
                ClientAuth::EapMschapv2(Arc::new(c)),
                Some(digest(text.as_bytes())),
            )),
            Err(e) => {
                let msg = e.to_string();
                let msg = msg.strip_prefix("users file: ").unwrap_or(&msg);
                self.error(
                    ErrorKind::InvalidValue,
                    span(file),
                    "remote_access.users_file",
                    format!("{}: {}", path.display(), msg.trim_end().replace('\n', " ")),
                    "[[user]] tables with name = \"...\" and nt_hash = \"<32 hex digits>\""
                        .to_string(),
                );
                None
            }
        }
    }

    /// `bind` (addresses, unspecified allowed) with `port`; default the unspecified address of
    /// the template's family.
    fn ra_listen(&mut self, path: &str, bind: &StrList, port: u16, v6: bool) -> Vec<SocketAddr> {
        let Some(list) = bind else {
            let any = if v6 {
                IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
            } else {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            };
            return vec![SocketAddr::new(any, port)];
        };
        if list.get_ref().is_empty() {
            self.error(
                ErrorKind::OutOfRange,
                span(list),
                format!("{path}.bind"),
                "empty list",
                "at least one address, e.g. [\"0.0.0.0\"] (every address)".to_string(),
            );
        }
        let mut out: Vec<SocketAddr> = Vec::new();
        for (i, item) in list.get_ref().iter().enumerate() {
            let s = item.get_ref().trim();
            match s.parse::<IpAddr>() {
                Ok(a) if !a.is_multicast() => {
                    let addr = SocketAddr::new(a, port);
                    if out.contains(&addr) {
                        self.error(
                            ErrorKind::Duplicate,
                            span(item),
                            format!("{path}.bind[{i}]"),
                            format!("{a} is listed twice"),
                            "each address once".to_string(),
                        );
                    } else {
                        out.push(addr);
                    }
                }
                _ => self.error(
                    ErrorKind::InvalidValue,
                    span(item),
                    format!("{path}.bind[{i}]"),
                    format!("invalid bind address \"{s}\""),
                    "an IPv4 or IPv6 address of this host, or 0.0.0.0 / :: (every address)"
                        .to_string(),
                ),
            }
        }
        out
    }

    /// `[remote_access.tcp]`: on by default (also without the table), off with
    /// `enabled = false`. Also returns the span of `port`.
    fn ra_tcp(
        &mut self,
        sec: &Section<RawRaTcp>,
        v6: bool,
    ) -> Option<(TcpTransport, Option<Range<usize>>)> {
        let raw = &sec.value;
        let (port, port_span) = self.port("remote_access.tcp.port", &raw.port, DEFAULT_RA_TCP_PORT);
        let listen = self.ra_listen("remote_access.tcp", &raw.bind, port, v6);
        if raw.enabled.as_ref().is_some_and(|e| !*e.get_ref()) {
            return None;
        }
        Some((TcpTransport { listen }, port_span))
    }

    /// `[remote_access.visitor]`: off without the table; `enabled` defaults to true with it.
    fn ra_visitor(
        &mut self,
        sec: &Section<RawRaVisitor>,
        v6: bool,
    ) -> Option<(VisitorMode, Option<Range<usize>>)> {
        if !sec.present {
            return None;
        }
        let raw = &sec.value;
        let path = "remote_access.visitor";
        let enabled = raw.enabled.as_ref().is_none_or(|e| *e.get_ref());
        let (port, port_span) = self.port(
            "remote_access.visitor.port",
            &raw.port,
            DEFAULT_VISITOR_PORT,
        );
        let listen = self.ra_listen(path, &raw.bind, port, v6);
        let pem = |this: &mut Self, key: &str, v: &Str, tag: &str, what: &str| {
            let Some(v) = v else {
                if enabled {
                    this.missing(sec, path, key, what);
                }
                return PathBuf::new();
            };
            let file = this.base_dir.join(v.get_ref());
            match std::fs::read_to_string(&file) {
                Ok(text) if text.contains(tag) => {}
                Ok(_) => this.error(
                    ErrorKind::InvalidValue,
                    span(v),
                    format!("{path}.{key}"),
                    format!("{} has no {tag}", file.display()),
                    what.to_string(),
                ),
                Err(e) => this.error(
                    ErrorKind::Io,
                    span(v),
                    format!("{path}.{key}"),
                    format!("cannot read {}: {e}", file.display()),
                    format!("{what} (relative paths start at the config file's directory)"),
                ),
            }
            file
        };
        let certificate = pem(
            self,
            "certificate",
            &raw.certificate,
            "-----BEGIN CERTIFICATE-----",
            "a PEM certificate chain (the server certificate first)",
        );
        let key = pem(
            self,
            "key",
            &raw.key,
            "PRIVATE KEY-----",
            "the PEM private key of the certificate",
        );
        let https_backend = raw.https_backend.as_ref().and_then(|v| {
            let s = v.get_ref().trim();
            match s.parse::<SocketAddr>() {
                Ok(a) if !a.ip().is_unspecified() && a.port() != 0 => Some(a),
                _ => {
                    self.error(
                        ErrorKind::InvalidValue,
                        span(v),
                        format!("{path}.https_backend"),
                        format!("invalid backend address \"{s}\""),
                        "ADDRESS:PORT of the HTTPS server, e.g. 127.0.0.1:8443 or [::1]:8443"
                            .to_string(),
                    );
                    None
                }
            }
        });
        let mut server_names = Vec::new();
        for (i, item) in raw
            .server_names
            .iter()
            .flat_map(|l| l.get_ref().iter().enumerate())
        {
            let s = item.get_ref().trim();
            if is_dns_name(s) && !s.ends_with('.') {
                server_names.push(s.to_ascii_lowercase());
            } else {
                self.error(
                    ErrorKind::InvalidValue,
                    span(item),
                    format!("{path}.server_names[{i}]"),
                    format!("invalid server name \"{s}\""),
                    "a DNS name such as vpn.example.com".to_string(),
                );
            }
        }
        let alpn = match &raw.alpn {
            None => DEFAULT_ALPN.to_string(),
            Some(v) => {
                let s = v.get_ref();
                if s.is_empty() || s.len() > 255 {
                    self.error(
                        ErrorKind::OutOfRange,
                        span(v),
                        format!("{path}.alpn"),
                        format!("the ALPN id is {} bytes long", s.len()),
                        "1 to 255 bytes (default \"rampart-ike\")".to_string(),
                    );
                }
                s.clone()
            }
        };
        if !enabled {
            return None;
        }
        Some((
            VisitorMode {
                listen,
                certificate,
                key,
                https_backend,
                server_names,
                alpn,
            },
            port_span,
        ))
    }
}
