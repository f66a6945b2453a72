//! `[cluster]`, `[[cluster.member]]` and `[[cluster.vip]]`: the cluster (high availability or
//! load sharing) this gateway is a member of, and the checks that tie it to `[gateway]` and
//! the peers. The Load Sharing keys and the redundant sync networks are in `load_sharing.rs`.

use std::net::SocketAddr;

use rampart_cluster::{
    ClusterConfig, ClusterMode, Distribution, MemberConfig, MemberId, SyncAuth, TlsFiles,
    VirtualAddress, DEFAULT_DEAD_AFTER, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_RETRANSMIT_QUEUE,
    DEFAULT_SYNC_PORT,
};
use zeroize::Zeroizing;

use super::*;
use crate::raw::RawCluster;

pub(crate) const CLUSTER_MEMBER_ID_RANGE: RangeInclusive<i64> = 1..=5;
pub(crate) const CLUSTER_MEMBERS_RANGE: RangeInclusive<usize> = 2..=5;
pub(crate) const DEFAULT_PRIORITY: u16 = 100;
/// The priority `primary = <id>` gives its member (the others keep the default).
pub(crate) const PRIMARY_PRIORITY: u16 = 200;
pub(crate) const PRIORITY_RANGE: RangeInclusive<i64> = 0..=65535;
pub(crate) const HEARTBEAT_INTERVAL_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(10)..=Duration::from_secs(10);
pub(crate) const DEAD_AFTER_RANGE: RangeInclusive<i64> = 2..=100;
pub(crate) const RETRANSMIT_QUEUE_RANGE: RangeInclusive<i64> = 1024..=16_777_216;
pub(crate) const DEFAULT_TAKEOVER_MARGIN: u64 = 16_384;
pub(crate) const TAKEOVER_MARGIN_RANGE: RangeInclusive<i64> = 1..=4_294_967_295;
pub(crate) const DEFAULT_ESP_SYNC_INTERVAL: Duration = Duration::from_millis(100);
pub(crate) const ESP_SYNC_INTERVAL_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(10)..=Duration::from_secs(10);
pub(crate) const MIN_SECRET_LEN: usize = 16;
const IFNAME_RULE: &str = "an interface name: 1 to 15 bytes from A-Z a-z 0-9 . _ - @";

impl Validator<'_, '_> {
    /// `[cluster]`, or `None` without one. With a cluster, `gateway.member_id` becomes the
    /// cluster's member id (it must be unset or equal), so SPIs and connection ids carry it.
    pub(super) fn cluster(
        &mut self,
        doc: &RawDocument,
        gateway: &mut GatewaySection,
        tunnel_device: &str,
    ) -> Option<ClusterConfig> {
        let sec = &doc.cluster;
        if !sec.present {
            return None;
        }
        let raw = &sec.value;
        let name = match &raw.name {
            Some(n) => self.name("cluster.name", n),
            None => {
                self.missing(sec, "cluster", "name", NAME_RULE);
                None
            }
        }
        .unwrap_or_default();
        let mode = raw
            .mode
            .as_ref()
            .and_then(|v| {
                self.keyword(
                    "cluster.mode",
                    v,
                    &[
                        ("high-availability", ClusterMode::HighAvailability),
                        ("load-sharing", ClusterMode::LoadSharing),
                    ],
                )
            })
            .unwrap_or(ClusterMode::HighAvailability);
        let load_sharing = self.load_sharing(sec, mode == ClusterMode::LoadSharing);
        // Routed distribution puts the virtual addresses on every member, on the tunnel device
        // unless an interface is named.
        let routed_device = load_sharing
            .as_ref()
            .filter(|ls| ls.distribution == Distribution::Routed)
            .map(|_| tunnel_device);
        let member_id = match &raw.member_id {
            Some(v) => self
                .int("cluster.member_id", v, CLUSTER_MEMBER_ID_RANGE)
                .map(|n| n as MemberId),
            None => {
                self.missing(
                    sec,
                    "cluster",
                    "member_id",
                    "this gateway's id in [[cluster.member]], 1 to 5",
                );
                None
            }
        };
        let mut members = self.cluster_members(doc, member_id);
        self.priorities(doc, &mut members, member_id);
        if let Some(id) = member_id {
            self.gateway_member_id(doc, gateway, id);
        }
        let switch_back = raw.switch_back.as_ref().is_some_and(|b| *b.get_ref());
        let heartbeat_interval = raw
            .heartbeat_interval
            .as_ref()
            .and_then(|v| {
                self.duration(
                    "cluster.heartbeat_interval",
                    v,
                    HEARTBEAT_INTERVAL_RANGE,
                    false,
                )
            })
            .unwrap_or(DEFAULT_HEARTBEAT_INTERVAL);
        let dead_after = raw
            .dead_after
            .as_ref()
            .and_then(|v| self.int("cluster.dead_after", v, DEAD_AFTER_RANGE))
            .map_or(DEFAULT_DEAD_AFTER, |n| n as u32);
        let monitored_interfaces = match &raw.monitor {
            None => Vec::new(),
            Some(list) => self.interfaces("cluster.monitor", list),
        };
        let virtual_addresses = self.vips(doc, &members, routed_device);
        let vip_ips: Vec<IpAddr> = virtual_addresses.iter().map(|v| v.ip()).collect();
        self.extra_sync_addresses(doc, &mut members, &vip_ips);
        let sync_link_hold_down = self.sync_link_hold_down(raw);
        let auth = self.sync_auth(sec);
        let retransmit_queue = raw
            .retransmit_queue
            .as_ref()
            .and_then(|v| self.int("cluster.retransmit_queue", v, RETRANSMIT_QUEUE_RANGE))
            .map_or(DEFAULT_RETRANSMIT_QUEUE, |n| n as usize);
        let takeover_margin = raw
            .takeover_margin
            .as_ref()
            .and_then(|v| self.int("cluster.takeover_margin", v, TAKEOVER_MARGIN_RANGE))
            .map_or(DEFAULT_TAKEOVER_MARGIN, |n| n as u64);
        let esp_sync_interval = raw
            .esp_sync_interval
            .as_ref()
            .and_then(|v| {
                self.duration(
                    "cluster.esp_sync_interval",
                    v,
                    ESP_SYNC_INTERVAL_RANGE,
                    false,
                )
            })
            .unwrap_or(DEFAULT_ESP_SYNC_INTERVAL);
        members.sort_by_key(|m| m.0.id);
        Some(ClusterConfig {
            name,
            member_id: member_id.unwrap_or(0),
            mode,
            members: members.into_iter().map(|(m, _)| m).collect(),
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
        })
    }

    /// `[[cluster.member]]`: 2 to 5, unique ids and sync addresses, this member among them,
    /// every address of the same family. The priority is filled in by [`Self::priorities`].
    fn cluster_members(
        &mut self,
        doc: &RawDocument,
        member_id: Option<MemberId>,
    ) -> Vec<(MemberConfig, usize)> {
        let mut out: Vec<(MemberConfig, usize)> = Vec::new();
        let count = doc.cluster_members.len();
        if !CLUSTER_MEMBERS_RANGE.contains(&count) {
            let (kind, message) = if count == 0 {
                (
                    ErrorKind::Missing,
                    "no [[cluster.member]] table".to_string(),
                )
            } else {
                (
                    ErrorKind::OutOfRange,
                    format!("{count} [[cluster.member]] tables"),
                )
            };
            let sp = doc
                .cluster_members
                .get(5)
                .and_then(|s| s.span.clone())
                .or_else(|| doc.cluster.span.clone());
            self.error(
                kind,
                sp,
                "cluster.member",
                message,
                "2 to 5 [[cluster.member]] tables (this gateway included), each with id and \
                 address"
                    .to_string(),
            );
        }
        for (i, sec) in doc.cluster_members.iter().enumerate() {
            let path = format!("cluster.member[{i}]");
            let raw = &sec.value;
            let id = match &raw.id {
                Some(v) => {
                    let id = self.int(&format!("{path}.id"), v, CLUSTER_MEMBER_ID_RANGE);
                    if let Some((_, first)) =
                        id.and_then(|id| out.iter().find(|(m, _)| i64::from(m.id) == id))
                    {
                        self.error(
                            ErrorKind::Duplicate,
                            span(v),
                            format!("{path}.id"),
                            format!(
                                "duplicate member id {} (also cluster.member[{first}])",
                                v.get_ref()
                            ),
                            "an id 1 to 5 used by no other member".to_string(),
                        );
                        None
                    } else {
                        id
                    }
                }
                None => {
                    self.missing(sec, &path, "id", "1 to 5, unique in the cluster");
                    None
                }
            };
            let address = match &raw.address {
                Some(v) => self.unicast(&format!("{path}.address"), v),
                None => {
                    self.missing(
                        sec,
                        &path,
                        "address",
                        "the member's sync address (IPv4 or IPv6)",
                    );
                    None
                }
            };
            let (port, _) = self.port(&format!("{path}.port"), &raw.port, DEFAULT_SYNC_PORT);
            let (Some(id), Some(ip)) = (id, address) else {
                continue;
            };
            let sync_address = SocketAddr::new(ip, port);
            if let Some((_, first)) = out.iter().find(|(m, _)| m.sync_address == sync_address) {
                self.error(
                    ErrorKind::Duplicate,
                    raw.address.as_ref().and_then(span),
                    format!("{path}.address"),
                    format!("sync address {sync_address} is also cluster.member[{first}]'s"),
                    "an address (and port) used by no other member".to_string(),
                );
                continue;
            }
            out.push((
                MemberConfig {
                    id: id as MemberId,
                    sync_address,
                    priority: DEFAULT_PRIORITY,
                    extra_sync_addresses: Vec::new(),
                },
                i,
            ));
        }
        // Only judged when every member was read, so one mistake is not reported twice.
        if let (Some(me), true) = (member_id, out.len() == count) {
            match out.iter().find(|(m, _)| m.id == me) {
                None if count > 0 => {
                    let ids: Vec<String> = out.iter().map(|(m, _)| m.id.to_string()).collect();
                    self.error(
                        ErrorKind::InvalidValue,
                        doc.cluster.value.member_id.as_ref().and_then(span),
                        "cluster.member_id",
                        format!("no [[cluster.member]] has id {me}"),
                        format!("one of the [[cluster.member]] ids: {}", ids.join(", ")),
                    );
                }
                None => {}
                Some((mine, _)) => {
                    let family = mine.sync_address.is_ipv4();
                    for (m, i) in &out {
                        if m.sync_address.is_ipv4() != family {
                            let raw = &doc.cluster_members[*i].value;
                            self.error(
                                ErrorKind::Conflict,
                                raw.address.as_ref().and_then(span),
                                format!("cluster.member[{i}].address"),
                                format!(
                                    "{} is not of the address family of this member's sync \
                                     address {}",
                                    m.sync_address.ip(),
                                    mine.sync_address.ip()
                                ),
                                "sync addresses of one family (all IPv4 or all IPv6)".to_string(),
                            );
                        }
                    }
                }
            }
        }
        out
    }

    /// `priority` (this member's), per-member `priority`, or `primary = <id>`.
    fn priorities(
        &mut self,
        doc: &RawDocument,
        members: &mut [(MemberConfig, usize)],
        me: Option<MemberId>,
    ) {
        let raw = &doc.cluster.value;
        let mut explicit: Option<Range<usize>> = None;
        for (m, i) in members.iter_mut() {
            if let Some(v) = &doc.cluster_members[*i].value.priority {
                explicit.get_or_insert(v.span());
                if let Some(p) =
                    self.int(&format!("cluster.member[{i}].priority"), v, PRIORITY_RANGE)
                {
                    m.priority = p as u16;
                }
            }
        }
        if let Some(v) = &raw.priority {
            explicit.get_or_insert(v.span());
            if let Some(p) = self.int("cluster.priority", v, PRIORITY_RANGE) {
                let p = p as u16;
                if let Some((m, i)) = members.iter_mut().find(|(m, _)| Some(m.id) == me) {
                    let own = &doc.cluster_members[*i].value.priority;
                    match own {
                        Some(o) if *o.get_ref() != i64::from(p) => self.error(
                            ErrorKind::Conflict,
                            span(v),
                            "cluster.priority",
                            format!(
                                "{p} differs from cluster.member[{i}].priority {} (this member)",
                                o.get_ref()
                            ),
                            "one of cluster.priority and this member's \
                             cluster.member[].priority, or equal values"
                                .to_string(),
                        ),
                        _ => m.priority = p,
                    }
                }
            }
        }
        if let Some(v) = &raw.primary {
            if explicit.is_some() {
                self.error(
                    ErrorKind::Conflict,
                    span(v),
                    "cluster.primary",
                    "primary and priority are both set",
                    "either primary = <member id> or priorities, not both".to_string(),
                );
                return;
            }
            let id = *v.get_ref();
            match members.iter_mut().find(|(m, _)| i64::from(m.id) == id) {
                Some((m, _)) => m.priority = PRIMARY_PRIORITY,
                None => {
                    let ids: Vec<String> = members.iter().map(|(m, _)| m.id.to_string()).collect();
                    self.error(
                        ErrorKind::InvalidValue,
                        span(v),
                        "cluster.primary",
                        format!("no [[cluster.member]] has id {id}"),
                        format!("one of the [[cluster.member]] ids: {}", ids.join(", ")),
                    );
                }
            }
        }
    }

    /// `[gateway] member_id`, when written, must be the cluster member id; the cluster member
    /// id then goes into SPIs and connection ids.
    fn gateway_member_id(&mut self, doc: &RawDocument, gateway: &mut GatewaySection, id: MemberId) {
        if let Some(v) = &doc.gateway.value.member_id {
            if *v.get_ref() != i64::from(id) {
                self.error(
                    ErrorKind::Conflict,
                    span(v),
                    "gateway.member_id",
                    format!("{} differs from cluster.member_id {id}", v.get_ref()),
                    format!(
                        "the cluster member id ({id}), or no gateway.member_id (a cluster member \
                         uses its cluster member id)"
                    ),
                );
            }
        }
        gateway.member_id = u16::from(id);
    }

    /// `[[cluster.vip]]`: at least one, unique addresses, none a member's sync address. With
    /// routed distribution (`routed_device` is the tunnel device) every member holds every
    /// address: each must be a host prefix, and `interface` defaults to the tunnel device.
    fn vips(
        &mut self,
        doc: &RawDocument,
        members: &[(MemberConfig, usize)],
        routed_device: Option<&str>,
    ) -> Vec<VirtualAddress> {
        if doc.cluster_vips.is_empty() {
            self.error(
                ErrorKind::Missing,
                doc.cluster.span.clone(),
                "cluster.vip",
                "no [[cluster.vip]] table",
                "at least one [[cluster.vip]] with interface = \"eth0\" and address = \
                 \"192.0.2.1/24\" (the address peers and hosts use)"
                    .to_string(),
            );
        }
        let mut out = Vec::new();
        let mut seen: Vec<(IpAddr, usize)> = Vec::new();
        for (i, sec) in doc.cluster_vips.iter().enumerate() {
            let path = format!("cluster.vip[{i}]");
            let raw = &sec.value;
            let interface = match (&raw.interface, routed_device) {
                (Some(v), _) => self.interface(&format!("{path}.interface"), v),
                (None, Some(device)) => Some(device.to_string()),
                (None, None) => {
                    self.missing(sec, &path, "interface", IFNAME_RULE);
                    None
                }
            };
            let address = match &raw.address {
                Some(v) => self.vip_address(&format!("{path}.address"), v),
                None => {
                    self.missing(
                        sec,
                        &path,
                        "address",
                        "an address with its prefix length, e.g. \"192.0.2.1/24\"",
                    );
                    None
                }
            };
            let Some(address) = address else { continue };
            let ip = address.addr();
            let sp = raw.address.as_ref().map(|v| v.span()).unwrap_or_default();
            if routed_device.is_some() && address.prefix_len() != address.max_prefix_len() {
                self.error(
                    ErrorKind::InvalidValue,
                    Some(sp.clone()),
                    format!("{path}.address"),
                    format!(
                        "{address} is not a host address: with distribution = \"routed\" \
                         every member holds it, and a subnet on it would also route the \
                         subnet there"
                    ),
                    format!(
                        "a host address (\"{ip}\" or \"{ip}/{}\"); the routers reach it by \
                         the routes the members announce",
                        address.max_prefix_len()
                    ),
                );
            }
            if let Some((_, first)) = seen.iter().find(|(a, _)| *a == ip) {
                self.error(
                    ErrorKind::Duplicate,
                    Some(sp),
                    format!("{path}.address"),
                    format!("virtual address {ip} is also cluster.vip[{first}]"),
                    "each virtual address once".to_string(),
                );
                continue;
            }
            if let Some((m, _)) = members.iter().find(|(m, _)| m.sync_address.ip() == ip) {
                self.error(
                    ErrorKind::Conflict,
                    Some(sp),
                    format!("{path}.address"),
                    format!("{ip} is the sync address of member {}", m.id),
                    "an address no member has of its own".to_string(),
                );
            }
            seen.push((ip, i));
            // A refused interface (reported) stands in as "", so the peers' check still sees
            // the address and does not add a second, misleading error.
            out.push(VirtualAddress {
                interface: interface.unwrap_or_default(),
                address,
            });
        }
        out
    }

    fn vip_address(&mut self, key: &str, v: &Spanned<String>) -> Option<IpNet> {
        let s = v.get_ref().trim();
        let net = s
            .parse::<IpNet>()
            .ok()
            .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from));
        let allowed = "an address with its prefix length, e.g. \"192.0.2.1/24\" or \
                       \"2001:db8::1/64\" (a bare address is a host prefix)";
        match net {
            None => {
                self.error(
                    ErrorKind::InvalidValue,
                    span(v),
                    key,
                    format!("invalid address \"{s}\""),
                    allowed.to_string(),
                );
                None
            }
            Some(n) if n.addr().is_unspecified() || n.addr().is_multicast() => {
                self.error(
                    ErrorKind::InvalidValue,
                    span(v),
                    key,
                    format!("{} is not a unicast address", n.addr()),
                    allowed.to_string(),
                );
                None
            }
            Some(n) => Some(n),
        }
    }

    pub(super) fn unicast(&mut self, key: &str, v: &Spanned<String>) -> Option<IpAddr> {
        let s = v.get_ref().trim();
        match s.parse::<IpAddr>() {
            Ok(a) if a.is_unspecified() || a.is_multicast() => {
                self.error(
                    ErrorKind::InvalidValue,
                    span(v),
                    key,
                    format!("{a} is not a unicast address"),
                    "a unicast IPv4 or IPv6 address".to_string(),
                );
                None
            }
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    ErrorKind::InvalidValue,
                    span(v),
                    key,
                    format!("invalid IP address \"{s}\""),
                    "an IPv4 or IPv6 address".to_string(),
                );
                None
            }
        }
    }

    fn interface(&mut self, key: &str, v: &Spanned<String>) -> Option<String> {
        let s = v.get_ref();
        let ok = !s.is_empty()
            && s.len() <= MAX_DEVICE_LEN
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
        if ok {
            Some(s.clone())
        } else {
            self.error(
                ErrorKind::InvalidValue,
                span(v),
                key,
                format!("invalid interface name \"{s}\""),
                IFNAME_RULE.to_string(),
            );
            None
        }
    }

    fn interfaces(&mut self, key: &str, list: &Spanned<Vec<Spanned<String>>>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (i, item) in list.get_ref().iter().enumerate() {
            let key = format!("{key}[{i}]");
            let Some(name) = self.interface(&key, item) else {
                continue;
            };
            if out.contains(&name) {
                self.error(
                    ErrorKind::Duplicate,
                    span(item),
                    key,
                    format!("interface \"{name}\" is listed twice"),
                    "each interface once".to_string(),
                );
            } else {
                out.push(name);
            }
        }
        out
    }

    /// `secret` or `secret_file` (exactly one, at least 16 bytes) and the optional TLS files.
    fn sync_auth(&mut self, sec: &Section<RawCluster>) -> SyncAuth {
        let raw = &sec.value;
        let short = |this: &mut Self, key: &str, sp, len: usize| {
            this.error(
                ErrorKind::OutOfRange,
                sp,
                format!("cluster.{key}"),
                format!("the cluster secret is {len} bytes long"),
                format!("at least {MIN_SECRET_LEN} bytes"),
            );
        };
        let secret: Zeroizing<Vec<u8>> = match (&raw.secret, &raw.secret_file) {
            (Some(_), Some(file)) => {
                self.error(
                    ErrorKind::Conflict,
                    span(file),
                    "cluster.secret_file",
                    "both secret and secret_file are set",
                    "exactly one of secret and secret_file".to_string(),
                );
                Zeroizing::new(Vec::new())
            }
            (None, None) => {
                if !sec.reported("secret") && !sec.reported("secret_file") {
                    self.error(
                        ErrorKind::Missing,
                        sec.span.clone(),
                        "cluster.secret",
                        "missing cluster secret",
                        "exactly one of secret = \"...\" and secret_file = \"path\" (the same \
                         on every member, at least 16 bytes)"
                            .to_string(),
                    );
                }
                Zeroizing::new(Vec::new())
            }
            (Some(s), None) => {
                let bytes = Zeroizing::new(s.get_ref().as_bytes().to_vec());
                if bytes.len() < MIN_SECRET_LEN {
                    short(self, "secret", span(s), bytes.len());
                }
                bytes
            }
            (None, Some(file)) => {
                let path = self.base_dir.join(file.get_ref());
                match std::fs::read(&path) {
                    Ok(bytes) => {
                        let bytes = Zeroizing::new(bytes);
                        let trimmed = Zeroizing::new(bytes.trim_ascii().to_vec());
                        if trimmed.len() < MIN_SECRET_LEN {
                            short(self, "secret_file", span(file), trimmed.len());
                        }
                        trimmed
                    }
                    Err(e) => {
                        self.error(
                            ErrorKind::Io,
                            span(file),
                            "cluster.secret_file",
                            format!("cannot read {}: {e}", path.display()),
                            "a readable file (relative paths start at the config file's \
                             directory)"
                                .to_string(),
                        );
                        Zeroizing::new(Vec::new())
                    }
                }
            }
        };
        SyncAuth {
            secret,
            tls: self.tls_files(sec),
        }
    }

    /// `tls_ca`, `tls_cert`, `tls_key`: all three or none; loaded here to report bad files
    /// early (the I/O shell loads them again for rustls).
    fn tls_files(&mut self, sec: &Section<RawCluster>) -> Option<TlsFiles> {
        let raw = &sec.value;
        let keys = [
            ("tls_ca", &raw.tls_ca),
            ("tls_cert", &raw.tls_cert),
            ("tls_key", &raw.tls_key),
        ];
        let given = keys.iter().filter(|(_, v)| v.is_some()).count();
        if given == 0 {
            return None;
        }
        if given < keys.len() {
            for (key, v) in keys {
                if v.is_none() && !sec.reported(key) {
                    self.error(
                        ErrorKind::Missing,
                        sec.span.clone(),
                        format!("cluster.{key}"),
                        format!("{key} is missing; the TLS files come as a set"),
                        "all of tls_ca, tls_cert and tls_key (PEM files issued by \
                         `rampart pki`), or none"
                            .to_string(),
                    );
                }
            }
            return None;
        }
        let (Some(ca), Some(cert), Some(key)) = (&raw.tls_ca, &raw.tls_cert, &raw.tls_key) else {
            return None;
        };
        let files = TlsFiles {
            ca: self.base_dir.join(ca.get_ref()),
            cert: self.base_dir.join(cert.get_ref()),
            key: self.base_dir.join(key.get_ref()),
        };
        if let Err(e) = rampart_pki::TrustStore::load(&[files.ca.as_path()], None) {
            self.error(
                ErrorKind::Io,
                span(ca),
                "cluster.tls_ca",
                e.to_string(),
                "a PEM file with the cluster CA certificate".to_string(),
            );
        }
        if let Err(e) = rampart_pki::Credentials::load(&files.cert, &files.key) {
            let (sp, key) = match &e {
                rampart_pki::PkiError::File { path, .. }
                    if *path == files.key.display().to_string() =>
                {
                    (span(key), "cluster.tls_key")
                }
                _ => (span(cert), "cluster.tls_cert"),
            };
            self.error(
                ErrorKind::Io,
                sp,
                key,
                e.to_string(),
                "this member's PEM certificate and its PEM private key (`rampart pki issue`)"
                    .to_string(),
            );
        }
        Some(files)
    }

    /// With a cluster, every peer's `local_address` must be a virtual address: the peers only
    /// ever see the cluster's addresses.
    pub(super) fn cluster_peers(
        &mut self,
        doc: &RawDocument,
        cluster: &ClusterConfig,
        peers: &[PeerPolicy],
    ) {
        let vips: Vec<IpAddr> = cluster.virtual_addresses.iter().map(|v| v.ip()).collect();
        let shown: Vec<String> = vips.iter().map(|a| a.to_string()).collect();
        for (i, (sec, peer)) in doc.peers.iter().zip(peers).enumerate() {
            let Some(v) = &sec.value.local_address else {
                continue;
            };
            // An unparsable address is reported already (and stands in as 0.0.0.0).
            if v.get_ref().trim().parse::<IpAddr>().is_err() || peer.local_address.is_unspecified()
            {
                continue;
            }
            if !vips.contains(&peer.local_address) {
                self.error(
                    ErrorKind::Conflict,
                    span(v),
                    format!("peer[{i}].local_address"),
                    format!(
                        "{} is not a virtual address of the cluster (peers only ever see the \
                         cluster's addresses)",
                        peer.local_address
                    ),
                    if shown.is_empty() {
                        "an address of a [[cluster.vip]]".to_string()
                    } else {
                        format!("one of the [[cluster.vip]] addresses: {}", shown.join(", "))
                    },
                );
            }
        }
    }
}
