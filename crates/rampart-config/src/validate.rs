//! From the raw sections to a [`GatewayConfig`]: defaults, ranges and cross-key checks.
//!
//! Every check reports into the [`Sink`] and carries on with a stand-in value, so a single run
//! finds every error; the config is only returned when the sink stayed empty.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use toml::Spanned;

mod firewall;

use crate::document::{RawDocument, Section};
use crate::error::{ErrorKind, Sink};
use crate::proposal::{parse_esp, parse_ike, ESP_FORM, IKE_FORM};
use crate::raw::{RawGateway, RawLocal, RawPeer, RawTunnel, Scalar, StrList};
use crate::schema::*;
use crate::units::{format_duration, parse_duration, parse_size, DURATION_FORMS, SIZE_FORMS};

pub(crate) const MEMBER_ID_RANGE: RangeInclusive<i64> = 0..=15;
pub(crate) const DEFAULT_IKE_PORT: u16 = 500;
pub(crate) const DEFAULT_NAT_T_PORT: u16 = 4500;
pub(crate) const DEFAULT_RETRANSMIT_TIMEOUT: Duration = Duration::from_secs(2);
pub(crate) const DEFAULT_RETRANSMIT_TRIES: u32 = 5;
pub(crate) const RETRANSMIT_TIMEOUT_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(60);
pub(crate) const RETRANSMIT_TRIES_RANGE: RangeInclusive<i64> = 0..=20;
pub(crate) const DEFAULT_NAT_KEEPALIVE: Duration = Duration::from_secs(20);
pub(crate) const DEFAULT_FRAGMENT_SIZE: u16 = 1280;
pub(crate) const FRAGMENT_SIZE_RANGE: RangeInclusive<i64> = 576..=65535;
pub(crate) const DEFAULT_COOKIE_THRESHOLD: u32 = 100;
pub(crate) const COOKIE_THRESHOLD_RANGE: RangeInclusive<i64> = 0..=1_000_000;
pub(crate) const DEFAULT_HALF_OPEN_PER_SOURCE: u32 = 20;
pub(crate) const HALF_OPEN_PER_SOURCE_RANGE: RangeInclusive<i64> = 1..=1_000_000;
pub(crate) const NAT_KEEPALIVE_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(600);
pub(crate) const DEFAULT_DEVICE: &str = "rampart0";
/// Linux IFNAMSIZ minus the terminating NUL.
pub(crate) const MAX_DEVICE_LEN: usize = 15;
pub(crate) const DEFAULT_MTU: u16 = 1400;
pub(crate) const MTU_RANGE: RangeInclusive<i64> = 576..=9000;
pub(crate) const CRYPTO_THREADS_RANGE: RangeInclusive<i64> = 0..=64;
pub(crate) const MIN_PSK_LEN: usize = 16;
pub(crate) const DEFAULT_IKE_PROPOSALS: &[&str] = &[
    "aes256gcm16-prfsha256-x25519",
    "aes128gcm16-prfsha256-ecp256",
];
pub(crate) const DEFAULT_ESP_PROPOSALS: &[&str] =
    &["aes256gcm16", "chacha20poly1305", "aes128-sha256"];
pub(crate) const DEFAULT_IKE_LIFETIME: Duration = Duration::from_secs(4 * 3600);
pub(crate) const DEFAULT_CHILD_LIFETIME: Duration = Duration::from_secs(3600);
pub(crate) const IKE_LIFETIME_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(10)..=Duration::from_secs(7 * 86400);
pub(crate) const CHILD_LIFETIME_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(10)..=Duration::from_secs(86400);
pub(crate) const MIN_CHILD_LIFETIME_BYTES: u64 = 64 * 1024;
pub(crate) const DEFAULT_LIVENESS: Duration = Duration::from_secs(30);
pub(crate) const LIVENESS_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(3600);
pub(crate) const DEFAULT_REPLAY_WINDOW: u32 = 1024;
pub(crate) const REPLAY_WINDOW_RANGE: RangeInclusive<i64> = 1024..=65536;
const NAME_RULE: &str = "1 to 64 characters from A-Z a-z 0-9 . _ -, not starting with . or -";

/// A remote-domain prefix, where it was written, and the index of its peer.
type DomainEntry = (IpNet, Range<usize>, usize, usize);

/// An ESP proposal, whether it had `-esn`, and where it was written (`None` for defaults).
type ParsedEsp = ((EspProposal, bool), Option<Range<usize>>);

struct Validator<'s, 'a> {
    sink: &'s mut Sink<'a>,
    /// Directory of the config file: relative paths are resolved against it.
    base_dir: PathBuf,
}

/// Validates the raw document; `None` when any error was reported.
pub(crate) fn validate(
    doc: RawDocument,
    base_dir: &Path,
    sink: &mut Sink<'_>,
) -> Option<GatewayConfig> {
    let mut v = Validator {
        sink,
        base_dir: base_dir.to_path_buf(),
    };
    let gateway = v.gateway(&doc.gateway);
    let tunnel = v.tunnel(&doc.tunnel);
    let local = v.local(&doc.local);
    let (peers, domains) = v.peers(&doc, &local);
    let entry_point_groups = v.entry_point_groups(&doc, &peers);
    v.domain_overlaps(&peers, &domains, &entry_point_groups);
    let firewall = v.firewall(&doc);
    if v.sink.is_empty() {
        Some(GatewayConfig {
            gateway,
            tunnel,
            local,
            peers,
            entry_point_groups,
            firewall,
        })
    } else {
        None
    }
}

fn span<T>(v: &Spanned<T>) -> Option<Range<usize>> {
    Some(v.span())
}

impl Validator<'_, '_> {
    fn error(
        &mut self,
        kind: ErrorKind,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
        allowed: impl Into<Option<String>>,
    ) {
        self.sink.push(kind, span, key, message, allowed.into());
    }

    /// Reports a missing required key (once per section: a missing section is reported once).
    fn missing<T>(&mut self, sec: &Section<T>, path: &str, key: &str, allowed: &str) {
        if !sec.present || sec.reported(key) {
            return;
        }
        self.error(
            ErrorKind::Missing,
            sec.span.clone(),
            format!("{path}.{key}"),
            "missing required key",
            Some(allowed.to_string()),
        );
    }

    fn missing_section(&mut self, present: bool, name: &str, example: &str) {
        if !present {
            self.error(
                ErrorKind::Missing,
                None,
                name,
                format!("missing required table [{name}]"),
                Some(example.to_string()),
            );
        }
    }

    fn int(&mut self, key: &str, v: &Spanned<i64>, range: RangeInclusive<i64>) -> Option<i64> {
        let n = *v.get_ref();
        if range.contains(&n) {
            Some(n)
        } else {
            self.error(
                ErrorKind::OutOfRange,
                span(v),
                key,
                format!("{n} is out of range"),
                format!("{} to {}", range.start(), range.end()),
            );
            None
        }
    }

    fn name(&mut self, key: &str, v: &Spanned<String>) -> Option<String> {
        let s = v.get_ref();
        let ok = !s.is_empty()
            && s.len() <= 64
            && !s.starts_with(['.', '-'])
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if ok {
            Some(s.clone())
        } else {
            self.error(
                ErrorKind::InvalidValue,
                span(v),
                key,
                format!("invalid name \"{s}\""),
                NAME_RULE.to_string(),
            );
            None
        }
    }

    /// A duration written as a string or as integer seconds; `zero_ok` admits 0 outside `range`.
    fn duration(
        &mut self,
        key: &str,
        v: &Spanned<Scalar>,
        range: RangeInclusive<Duration>,
        zero_ok: bool,
    ) -> Option<Duration> {
        let d = match v.get_ref() {
            Scalar::Int(n) => match u64::try_from(*n) {
                Ok(n) => Duration::from_secs(n),
                Err(_) => {
                    self.error(
                        ErrorKind::OutOfRange,
                        span(v),
                        key,
                        format!("negative duration {n}"),
                        DURATION_FORMS.to_string(),
                    );
                    return None;
                }
            },
            Scalar::Str(s) => match parse_duration(s) {
                Ok(d) => d,
                Err(msg) => {
                    self.error(
                        ErrorKind::InvalidValue,
                        span(v),
                        key,
                        msg,
                        DURATION_FORMS.to_string(),
                    );
                    return None;
                }
            },
        };
        if range.contains(&d) || (zero_ok && d.is_zero()) {
            return Some(d);
        }
        let zero = if zero_ok { "0 (off) or " } else { "" };
        self.error(
            ErrorKind::OutOfRange,
            span(v),
            key,
            format!("{} is out of range", format_duration(d)),
            format!(
                "{zero}{} to {}",
                format_duration(*range.start()),
                format_duration(*range.end())
            ),
        );
        None
    }

    fn size(&mut self, key: &str, v: &Spanned<Scalar>, min: u64) -> Option<u64> {
        let n = match v.get_ref() {
            Scalar::Int(n) => match u64::try_from(*n) {
                Ok(n) => n,
                Err(_) => {
                    self.error(
                        ErrorKind::OutOfRange,
                        span(v),
                        key,
                        format!("negative size {n}"),
                        SIZE_FORMS.to_string(),
                    );
                    return None;
                }
            },
            Scalar::Str(s) => match parse_size(s) {
                Ok(n) => n,
                Err(msg) => {
                    self.error(
                        ErrorKind::InvalidValue,
                        span(v),
                        key,
                        msg,
                        SIZE_FORMS.to_string(),
                    );
                    return None;
                }
            },
        };
        if n >= min {
            Some(n)
        } else {
            self.error(
                ErrorKind::OutOfRange,
                span(v),
                key,
                format!("{n} bytes is too small"),
                format!("at least {min} bytes"),
            );
            None
        }
    }

    fn keyword<T: Copy>(
        &mut self,
        key: &str,
        v: &Spanned<String>,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let s = v.get_ref();
        if let Some((_, t)) = choices.iter().find(|(word, _)| word == s) {
            return Some(*t);
        }
        let allowed: Vec<&str> = choices.iter().map(|(w, _)| *w).collect();
        self.error(
            ErrorKind::InvalidValue,
            span(v),
            key,
            format!("unknown value \"{s}\""),
            allowed.join(", "),
        );
        None
    }

    fn port(
        &mut self,
        key: &str,
        v: &Option<Spanned<i64>>,
        default: u16,
    ) -> (u16, Option<Range<usize>>) {
        match v {
            None => (default, None),
            Some(p) => (
                self.int(key, p, 1..=65535).map_or(default, |n| n as u16),
                span(p),
            ),
        }
    }

    fn gateway(&mut self, sec: &Section<RawGateway>) -> GatewaySection {
        self.missing_section(
            sec.present,
            "gateway",
            "[gateway] with at least name = \"...\"",
        );
        let raw = &sec.value;
        let name = match &raw.name {
            Some(n) => self.name("gateway.name", n),
            None => {
                self.missing(sec, "gateway", "name", NAME_RULE);
                None
            }
        }
        .unwrap_or_default();
        let status_socket = match &raw.status_socket {
            Some(p) if p.get_ref().is_empty() => {
                self.error(
                    ErrorKind::InvalidValue,
                    span(p),
                    "gateway.status_socket",
                    "empty path",
                    "a path to a Unix socket".to_string(),
                );
                PathBuf::new()
            }
            Some(p) => self.base_dir.join(p.get_ref()),
            None => PathBuf::from(format!("/run/rampart/{name}.sock")),
        };
        let (ike_port, _) = self.port("gateway.ike_port", &raw.ike_port, DEFAULT_IKE_PORT);
        let (nat_t_port, nat_span) =
            self.port("gateway.nat_t_port", &raw.nat_t_port, DEFAULT_NAT_T_PORT);
        if ike_port == nat_t_port {
            self.error(
                ErrorKind::Conflict,
                nat_span.or_else(|| raw.ike_port.as_ref().map(|p| p.span())),
                "gateway.nat_t_port",
                format!("the NAT-T port equals the IKE port ({ike_port})"),
                "a port other than ike_port, usually 4500 (2746 for compatibility)".to_string(),
            );
        }
        let retransmit_timeout = raw
            .retransmit_timeout
            .as_ref()
            .and_then(|v| {
                self.duration(
                    "gateway.retransmit_timeout",
                    v,
                    RETRANSMIT_TIMEOUT_RANGE,
                    false,
                )
            })
            .unwrap_or(DEFAULT_RETRANSMIT_TIMEOUT);
        let retransmit_tries = raw
            .retransmit_tries
            .as_ref()
            .and_then(|v| self.int("gateway.retransmit_tries", v, RETRANSMIT_TRIES_RANGE))
            .map_or(DEFAULT_RETRANSMIT_TRIES, |n| n as u32);
        let nat_keepalive = raw
            .nat_keepalive
            .as_ref()
            .and_then(|v| self.duration("gateway.nat_keepalive", v, NAT_KEEPALIVE_RANGE, false))
            .unwrap_or(DEFAULT_NAT_KEEPALIVE);
        let fragmentation = raw.fragmentation.as_ref().is_none_or(|b| *b.get_ref());
        let fragment_size = raw
            .fragment_size
            .as_ref()
            .and_then(|v| self.int("gateway.fragment_size", v, FRAGMENT_SIZE_RANGE))
            .map_or(DEFAULT_FRAGMENT_SIZE, |n| n as u16);
        let cookie_threshold = raw
            .cookie_threshold
            .as_ref()
            .and_then(|v| self.int("gateway.cookie_threshold", v, COOKIE_THRESHOLD_RANGE))
            .map_or(DEFAULT_COOKIE_THRESHOLD, |n| n as u32);
        let half_open_per_source = raw
            .half_open_per_source
            .as_ref()
            .and_then(|v| {
                self.int(
                    "gateway.half_open_per_source",
                    v,
                    HALF_OPEN_PER_SOURCE_RANGE,
                )
            })
            .map_or(DEFAULT_HALF_OPEN_PER_SOURCE, |n| n as u32);
        let member_id = raw
            .member_id
            .as_ref()
            .and_then(|v| self.int("gateway.member_id", v, MEMBER_ID_RANGE))
            .map_or(0, |n| n as u16);
        GatewaySection {
            name,
            member_id,
            status_socket,
            ike_port,
            nat_t_port,
            retransmit_timeout,
            retransmit_tries,
            nat_keepalive,
            fragmentation,
            fragment_size,
            cookie_threshold,
            half_open_per_source,
        }
    }

    fn tunnel(&mut self, sec: &Section<RawTunnel>) -> TunnelSection {
        let raw = &sec.value;
        let device = match &raw.device {
            None => DEFAULT_DEVICE.to_string(),
            Some(d) => {
                let s = d.get_ref();
                let ok = !s.is_empty()
                    && s.len() <= MAX_DEVICE_LEN
                    && s != "."
                    && s != ".."
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
                if !ok {
                    self.error(
                        ErrorKind::InvalidValue,
                        span(d),
                        "tunnel.device",
                        format!("invalid device name \"{s}\""),
                        format!("1 to {MAX_DEVICE_LEN} bytes from A-Z a-z 0-9 . _ -"),
                    );
                }
                s.clone()
            }
        };
        let mtu = raw
            .mtu
            .as_ref()
            .and_then(|v| self.int("tunnel.mtu", v, MTU_RANGE))
            .map_or(DEFAULT_MTU, |n| n as u16);
        let offload = raw.offload.as_ref().is_none_or(|b| *b.get_ref());
        let crypto_threads = raw
            .crypto_threads
            .as_ref()
            .and_then(|v| self.int("tunnel.crypto_threads", v, CRYPTO_THREADS_RANGE))
            .map_or(0, |n| n as u16);
        TunnelSection {
            device,
            mtu,
            offload,
            crypto_threads,
        }
    }

    /// A list of prefixes, at least one. `IpNet`s with host bits set are rejected (almost always
    /// a typo); a bare address is a host prefix.
    fn prefixes(
        &mut self,
        key: &str,
        list: &Spanned<Vec<Spanned<String>>>,
    ) -> Vec<(IpNet, Range<usize>)> {
        if list.get_ref().is_empty() {
            self.error(
                ErrorKind::OutOfRange,
                span(list),
                key,
                "empty list",
                "at least one prefix, e.g. [\"10.1.0.0/24\"]".to_string(),
            );
        }
        let mut out = Vec::new();
        for (i, item) in list.get_ref().iter().enumerate() {
            let s = item.get_ref().trim();
            let key = format!("{key}[{i}]");
            let net = s
                .parse::<IpNet>()
                .ok()
                .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from));
            match net {
                Some(net) if net.trunc() != net => self.error(
                    ErrorKind::InvalidValue,
                    span(item),
                    key,
                    format!(
                        "prefix \"{s}\" has host bits set (did you mean {}?)",
                        net.trunc()
                    ),
                    "a network prefix such as 10.1.0.0/24 or 2001:db8::/48".to_string(),
                ),
                Some(net) => out.push((net, item.span())),
                None => self.error(
                    ErrorKind::InvalidValue,
                    span(item),
                    key,
                    format!("invalid prefix \"{s}\""),
                    "a network prefix such as 10.1.0.0/24 or 2001:db8::/48".to_string(),
                ),
            }
        }
        out
    }

    fn local(&mut self, sec: &Section<RawLocal>) -> LocalSection {
        self.missing_section(
            sec.present,
            "local",
            "[local] with domain = [\"10.1.0.0/24\"]",
        );
        let domain = match &sec.value.domain {
            Some(list) => self.prefixes("local.domain", list),
            None => {
                self.missing(
                    sec,
                    "local",
                    "domain",
                    "a list of prefixes, e.g. [\"10.1.0.0/24\"]",
                );
                Vec::new()
            }
        };
        LocalSection {
            domain: domain.into_iter().map(|(n, _)| n).collect(),
        }
    }

    /// The peers, and every remote-domain prefix with its span and owning peer index.
    fn peers(
        &mut self,
        doc: &RawDocument,
        local: &LocalSection,
    ) -> (Vec<PeerPolicy>, Vec<DomainEntry>) {
        if doc.peers.is_empty() && !doc.peers_reported {
            self.error(
                ErrorKind::Missing,
                doc.peers_span.clone(),
                "peer",
                "no [[peer]] table",
                "at least one [[peer]]".to_string(),
            );
        }
        let mut peers = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut remote_ids: Vec<(Identity, usize)> = Vec::new();
        let mut domains: Vec<DomainEntry> = Vec::new();
        for (i, sec) in doc.peers.iter().enumerate() {
            let path = format!("peer[{i}]");
            let peer = self.peer(&path, sec, local, &mut domains, i);
            if let Some(n) = &sec.value.name {
                if let Some(first) = names.get(n.get_ref()) {
                    self.error(
                        ErrorKind::Duplicate,
                        span(n),
                        format!("{path}.name"),
                        format!(
                            "duplicate peer name \"{}\" (also peer[{first}])",
                            n.get_ref()
                        ),
                        "a name used by no other peer".to_string(),
                    );
                } else {
                    names.insert(n.get_ref().clone(), i);
                }
            }
            if let Some((_, first)) = remote_ids.iter().find(|(id, _)| *id == peer.remote_id) {
                let (key, sp) = match &sec.value.remote_id {
                    Some(r) => ("remote_id", span(r)),
                    None => (
                        "remote_address",
                        sec.value.remote_address.as_ref().and_then(span),
                    ),
                };
                self.error(
                    ErrorKind::Duplicate,
                    sp,
                    format!("{path}.{key}"),
                    format!(
                        "remote identity {} is also the remote identity of peer[{first}]",
                        show_identity(&peer.remote_id)
                    ),
                    "a remote identity (remote_id, default remote_address) used by no other peer"
                        .to_string(),
                );
            } else if sec.value.remote_address.is_some() {
                remote_ids.push((peer.remote_id.clone(), i));
            }
            peers.push(peer);
        }
        (peers, domains)
    }

    /// `[[entry_point_group]]`: a name and the names of existing peers, each peer in at most
    /// one group.
    fn entry_point_groups(
        &mut self,
        doc: &RawDocument,
        peers: &[PeerPolicy],
    ) -> Vec<EntryPointGroup> {
        let mut groups: Vec<EntryPointGroup> = Vec::new();
        // Peer name -> index of the group that took it.
        let mut member_of: HashMap<String, usize> = HashMap::new();
        for (i, sec) in doc.entry_point_groups.iter().enumerate() {
            let path = format!("entry_point_group[{i}]");
            let raw = &sec.value;
            let name = match &raw.name {
                Some(n) => {
                    let name = self.name(&format!("{path}.name"), n);
                    if let Some(first) = name
                        .as_ref()
                        .and_then(|name| groups.iter().position(|g| g.name == *name))
                    {
                        self.error(
                            ErrorKind::Duplicate,
                            span(n),
                            format!("{path}.name"),
                            format!(
                                "duplicate group name \"{}\" (also entry_point_group[{first}])",
                                n.get_ref()
                            ),
                            "a name used by no other entry_point_group".to_string(),
                        );
                    }
                    name.unwrap_or_default()
                }
                None => {
                    self.missing(sec, &path, "name", NAME_RULE);
                    String::new()
                }
            };
            let mut members = Vec::new();
            match &raw.peers {
                None => self.missing(sec, &path, "peers", "a list of peer names, e.g. [\"gw-b\"]"),
                Some(list) => {
                    if list.get_ref().len() < 2 {
                        self.error(
                            ErrorKind::OutOfRange,
                            span(list),
                            format!("{path}.peers"),
                            format!("{} peer(s) in a group", list.get_ref().len()),
                            "at least two peer names".to_string(),
                        );
                    }
                    for (j, p) in list.get_ref().iter().enumerate() {
                        let key = format!("{path}.peers[{j}]");
                        let peer = p.get_ref();
                        if !peers.iter().any(|pc| pc.name == *peer) {
                            let known: Vec<&str> = peers.iter().map(|p| p.name.as_str()).collect();
                            self.error(
                                ErrorKind::InvalidValue,
                                span(p),
                                key,
                                format!("unknown peer \"{peer}\""),
                                format!("names of [[peer]] tables: {}", known.join(", ")),
                            );
                        } else if let Some(g) = member_of.get(peer) {
                            let other = if *g == i {
                                "this group already".to_string()
                            } else {
                                format!("entry_point_group[{g}] already")
                            };
                            self.error(
                                ErrorKind::Duplicate,
                                span(p),
                                key,
                                format!("peer \"{peer}\" is in {other}"),
                                "each peer in at most one entry_point_group".to_string(),
                            );
                        } else {
                            member_of.insert(peer.clone(), i);
                            members.push(peer.clone());
                        }
                    }
                }
            }
            groups.push(EntryPointGroup {
                name,
                peers: members,
            });
        }
        groups
    }

    /// Remote domains of two peers may overlap only when both peers are in one entry-point
    /// group (they protect the same network); otherwise the later prefix is reported.
    fn domain_overlaps(
        &mut self,
        peers: &[PeerPolicy],
        domains: &[DomainEntry],
        groups: &[EntryPointGroup],
    ) {
        let group_of = |i: usize| {
            let name = &peers.get(i)?.name;
            groups.iter().position(|g| g.peers.contains(name))
        };
        for (k, (net, sp, owner, j)) in domains.iter().enumerate() {
            let clash = domains[..k].iter().find(|(d, _, o, _)| {
                o != owner
                    && overlaps(d, net)
                    && (group_of(*o).is_none() || group_of(*o) != group_of(*owner))
            });
            if let Some((other, _, o, _)) = clash {
                self.error(
                    ErrorKind::Conflict,
                    Some(sp.clone()),
                    format!("peer[{owner}].remote_domain[{j}]"),
                    format!("{net} overlaps {other} in the remote_domain of peer[{o}]"),
                    "prefixes that no other peer's remote_domain covers, or both peers in one \
                     [[entry_point_group]]"
                        .to_string(),
                );
            }
        }
    }

    fn address(
        &mut self,
        sec: &Section<RawPeer>,
        path: &str,
        key: &str,
        v: &Option<Spanned<String>>,
    ) -> Option<IpAddr> {
        let any = if key == "remote_address" {
            ", or \"any\" (a template)"
        } else {
            ""
        };
        let Some(v) = v else {
            self.missing(sec, path, key, &format!("an IPv4 or IPv6 address{any}"));
            return None;
        };
        let s = v.get_ref().trim();
        match s.parse::<IpAddr>() {
            Ok(a) if a.is_unspecified() || a.is_multicast() => {
                self.error(
                    ErrorKind::InvalidValue,
                    span(v),
                    format!("{path}.{key}"),
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
                    format!("{path}.{key}"),
                    format!("invalid IP address \"{s}\""),
                    format!("an IPv4 or IPv6 address{any}"),
                );
                None
            }
        }
    }

    fn identity(&mut self, key: &str, v: &Spanned<String>) -> Option<Identity> {
        let s = v.get_ref().trim();
        if let Some(dn) = s.strip_prefix("dn:") {
            return match rampart_pki::parse_dn(dn) {
                Ok(der) => Some(Identity::Dn(der)),
                Err(e) => {
                    self.error(
                        ErrorKind::InvalidValue,
                        span(v),
                        key,
                        format!("invalid identity \"{s}\": {e}"),
                        "dn:KEY=value, ... with keys C, ST, L, O, OU, CN, SN, E, DC".to_string(),
                    );
                    None
                }
            };
        }
        if let Some(mail) = s.strip_prefix("email:") {
            if mail.contains('@') && !mail.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Some(Identity::Email(mail.to_string()));
            }
            self.error(
                ErrorKind::InvalidValue,
                span(v),
                key,
                format!("invalid identity \"{s}\""),
                "email:user@domain".to_string(),
            );
            return None;
        }
        let s = s
            .strip_prefix("fqdn:")
            .map(|f| f.strip_prefix('@').unwrap_or(f))
            .map(|f| format!("@{f}"))
            .unwrap_or_else(|| s.strip_prefix("ip:").unwrap_or(s).to_string());
        let s = s.as_str();
        let id = if let Some(fqdn) = s.strip_prefix('@') {
            Identity::Fqdn(fqdn.to_string())
        } else if let Ok(a) = s.parse::<IpAddr>() {
            Identity::Ip(a)
        } else {
            Identity::Fqdn(s.to_string())
        };
        match &id {
            Identity::Fqdn(f)
                if f.is_empty() || f.chars().any(|c| c.is_whitespace() || c.is_control()) =>
            {
                self.error(
                    ErrorKind::InvalidValue,
                    span(v),
                    key,
                    format!("invalid identity \"{s}\""),
                    "an IP address, a host name such as vpn.example.com (optionally @-prefixed), email:user@domain or dn:CN=..."
                        .to_string(),
                );
                None
            }
            _ => Some(id),
        }
    }

    fn psk(&mut self, sec: &Section<RawPeer>, path: &str) -> Vec<u8> {
        let raw = &sec.value;
        let too_short = |this: &mut Self, key: &str, sp, len: usize| {
            this.error(
                ErrorKind::OutOfRange,
                sp,
                format!("{path}.{key}"),
                format!("the pre-shared key is {len} bytes long"),
                format!("at least {MIN_PSK_LEN} bytes"),
            );
        };
        match (&raw.psk, &raw.psk_file) {
            (Some(_), Some(file)) => {
                self.error(
                    ErrorKind::Conflict,
                    span(file),
                    format!("{path}.psk_file"),
                    "both psk and psk_file are set",
                    "exactly one of psk and psk_file".to_string(),
                );
                Vec::new()
            }
            (None, None) => {
                if sec.present && !sec.reported("psk") && !sec.reported("psk_file") {
                    self.error(
                        ErrorKind::Missing,
                        sec.span.clone(),
                        format!("{path}.psk"),
                        "missing pre-shared key",
                        "exactly one of psk = \"...\" and psk_file = \"path\"".to_string(),
                    );
                }
                Vec::new()
            }
            (Some(psk), None) => {
                let bytes = psk.get_ref().as_bytes().to_vec();
                if bytes.len() < MIN_PSK_LEN {
                    too_short(self, "psk", span(psk), bytes.len());
                }
                bytes
            }
            (None, Some(file)) => {
                let path_buf = self.base_dir.join(file.get_ref());
                match std::fs::read(&path_buf) {
                    Ok(bytes) => {
                        let bytes = bytes.trim_ascii().to_vec();
                        if bytes.len() < MIN_PSK_LEN {
                            too_short(self, "psk_file", span(file), bytes.len());
                        }
                        bytes
                    }
                    Err(e) => {
                        self.error(
                            ErrorKind::Io,
                            span(file),
                            format!("{path}.psk_file"),
                            format!("cannot read {}: {e}", path_buf.display()),
                            "a readable file (relative paths start at the config file's directory)"
                                .to_string(),
                        );
                        Vec::new()
                    }
                }
            }
        }
    }

    fn proposal_list<T>(
        &mut self,
        key: &str,
        list: &StrList,
        defaults: &[&str],
        form: &str,
        parse: impl Fn(&str) -> Result<T, crate::proposal::ProposalError>,
    ) -> Vec<(T, Option<Range<usize>>)> {
        let Some(list) = list else {
            return defaults
                .iter()
                .map(|s| (parse(s).expect("default proposals parse"), None))
                .collect();
        };
        if list.get_ref().is_empty() {
            self.error(
                ErrorKind::OutOfRange,
                span(list),
                key,
                "empty list",
                format!("at least one proposal: {form}"),
            );
        }
        let mut out = Vec::new();
        for (i, item) in list.get_ref().iter().enumerate() {
            match parse(item.get_ref().trim()) {
                Ok(p) => out.push((p, span(item))),
                Err(e) => self.error(
                    ErrorKind::InvalidValue,
                    span(item),
                    format!("{key}[{i}]"),
                    e.message,
                    e.allowed,
                ),
            }
        }
        out
    }

    fn peer(
        &mut self,
        path: &str,
        sec: &Section<RawPeer>,
        local: &LocalSection,
        domains: &mut Vec<DomainEntry>,
        index: usize,
    ) -> PeerPolicy {
        let raw = &sec.value;
        let k = |key: &str| format!("{path}.{key}");
        let name = match &raw.name {
            Some(n) => self.name(&k("name"), n).unwrap_or_default(),
            None => {
                self.missing(sec, path, "name", NAME_RULE);
                String::new()
            }
        };
        let local_address = self.address(sec, path, "local_address", &raw.local_address);
        let template = raw
            .remote_address
            .as_ref()
            .is_some_and(|v| v.get_ref().trim() == "any");
        let remote_address = if template {
            None
        } else {
            self.address(sec, path, "remote_address", &raw.remote_address)
        };
        if let (Some(l), Some(r)) = (local_address, remote_address) {
            if l.is_ipv4() != r.is_ipv4() {
                self.error(
                    ErrorKind::Conflict,
                    raw.remote_address.as_ref().and_then(span),
                    k("remote_address"),
                    format!("{r} and local_address {l} are of different address families"),
                    "addresses of the same family (both IPv4 or both IPv6)".to_string(),
                );
            }
        }
        let unspecified = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let local_address = local_address.unwrap_or(unspecified);
        let remote_ip = remote_address.unwrap_or(unspecified);
        let remote_address = if template {
            RemoteAddress::Any
        } else {
            RemoteAddress::Ip(remote_ip)
        };
        let local_id = match &raw.local_id {
            Some(v) => self.identity(&k("local_id"), v),
            None => None,
        }
        .unwrap_or(Identity::Ip(local_address));
        if template && raw.remote_id.is_none() {
            self.missing(
                sec,
                path,
                "remote_id",
                "with remote_address = \"any\" (a template), the identity that selects this \
                 peer: an address, a host name, email:... or dn:...",
            );
        }
        let remote_id = match &raw.remote_id {
            Some(v) => self.identity(&k("remote_id"), v),
            None => None,
        }
        .unwrap_or(Identity::Ip(remote_ip));
        let auth = self.auth(sec, path);
        let wants_cert = raw.auth.as_ref().is_some_and(|v| v.get_ref() == "cert");
        let psk = if matches!(auth, PeerAuth::Psk) && !wants_cert {
            self.psk(sec, path)
        } else {
            Vec::new()
        };

        let remote_domain = match &raw.remote_domain {
            Some(list) => self.prefixes(&k("remote_domain"), list),
            None => {
                self.missing(
                    sec,
                    path,
                    "remote_domain",
                    "a list of prefixes, e.g. [\"10.2.0.0/24\"]",
                );
                Vec::new()
            }
        };
        for (j, (net, sp)) in remote_domain.iter().enumerate() {
            let key = format!("{path}.remote_domain[{j}]");
            if let Some(l) = local.domain.iter().find(|l| overlaps(l, net)) {
                self.error(
                    ErrorKind::Conflict,
                    Some(sp.clone()),
                    key,
                    format!("{net} overlaps the local domain prefix {l}"),
                    "prefixes outside local.domain".to_string(),
                );
            } else {
                domains.push((*net, sp.clone(), index, j));
            }
        }

        let ike_proposals = self
            .proposal_list(
                &k("ike_proposals"),
                &raw.ike_proposals,
                DEFAULT_IKE_PROPOSALS,
                IKE_FORM,
                parse_ike,
            )
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        let esp = self.proposal_list(
            &k("esp_proposals"),
            &raw.esp_proposals,
            DEFAULT_ESP_PROPOSALS,
            ESP_FORM,
            parse_esp,
        );
        let esn = self.esn(path, raw, &esp);
        let esp_proposals = esp.into_iter().map(|((p, _), _)| p).collect();

        let start_action = raw
            .start_action
            .as_ref()
            .and_then(|v| {
                self.keyword(
                    &k("start_action"),
                    v,
                    &[
                        ("none", StartAction::None),
                        ("on-traffic", StartAction::OnTraffic),
                        ("always", StartAction::Always),
                    ],
                )
            })
            .unwrap_or(if template {
                StartAction::None
            } else {
                StartAction::Always
            });
        if template && start_action != StartAction::None {
            self.error(
                ErrorKind::Conflict,
                raw.start_action.as_ref().and_then(span),
                k("start_action"),
                "a template (remote_address = \"any\") cannot initiate",
                "none (the default for templates)".to_string(),
            );
        }
        let encapsulation = raw
            .encapsulation
            .as_ref()
            .and_then(|v| {
                self.keyword(
                    &k("encapsulation"),
                    v,
                    &[
                        ("auto", Encapsulation::Auto),
                        ("force", Encapsulation::Force),
                    ],
                )
            })
            .unwrap_or(Encapsulation::Auto);
        let ike_lifetime = raw
            .ike_lifetime
            .as_ref()
            .and_then(|v| self.duration(&k("ike_lifetime"), v, IKE_LIFETIME_RANGE, false))
            .unwrap_or(DEFAULT_IKE_LIFETIME);
        let child_lifetime = raw
            .child_lifetime
            .as_ref()
            .and_then(|v| self.duration(&k("child_lifetime"), v, CHILD_LIFETIME_RANGE, false))
            .unwrap_or(DEFAULT_CHILD_LIFETIME);
        let child_lifetime_bytes = raw
            .child_lifetime_bytes
            .as_ref()
            .and_then(|v| self.size(&k("child_lifetime_bytes"), v, MIN_CHILD_LIFETIME_BYTES));
        let liveness_interval = raw
            .liveness_interval
            .as_ref()
            .and_then(|v| self.duration(&k("liveness_interval"), v, LIVENESS_RANGE, true))
            .unwrap_or(DEFAULT_LIVENESS);
        let replay_window = raw
            .replay_window
            .as_ref()
            .and_then(|v| self.int(&k("replay_window"), v, REPLAY_WINDOW_RANGE))
            .map_or(DEFAULT_REPLAY_WINDOW, |n| n as u32);

        PeerPolicy {
            name,
            local_address,
            remote_address,
            local_id,
            remote_id,
            psk: psk.into(),
            remote_domain: remote_domain.into_iter().map(|(n, _)| n).collect(),
            ike_proposals,
            esp_proposals,
            esn,
            start_action,
            ike_lifetime,
            child_lifetime,
            child_lifetime_bytes,
            liveness_interval,
            encapsulation,
            replay_window,
            auth,
        }
    }

    /// `auth = "psk" | "cert"` and, for `cert`, the certificate material (paths relative to
    /// the configuration file), loaded here so that the engine never reads files.
    fn auth(&mut self, sec: &Section<RawPeer>, path: &str) -> PeerAuth {
        let raw = &sec.value;
        let k = |key: &str| format!("{path}.{key}");
        let cert = match &raw.auth {
            None => false,
            Some(v) => match v.get_ref().as_str() {
                "psk" => false,
                "cert" => true,
                other => {
                    self.error(
                        ErrorKind::InvalidValue,
                        span(v),
                        k("auth"),
                        format!("unknown value \"{other}\""),
                        "psk, cert".to_string(),
                    );
                    false
                }
            },
        };
        let cert_keys: [(&str, Option<Option<std::ops::Range<usize>>>); 5] = [
            ("certificate", raw.certificate.as_ref().map(span)),
            ("private_key", raw.private_key.as_ref().map(span)),
            ("ca_certificates", raw.ca_certificates.as_ref().map(span)),
            ("crl", raw.crl.as_ref().map(span)),
            ("rsa_signature", raw.rsa_signature.as_ref().map(span)),
        ];
        if !cert {
            for (key, sp) in cert_keys {
                if let Some(sp) = sp {
                    self.error(
                        ErrorKind::Conflict,
                        sp,
                        k(key),
                        format!("{key} is set but auth is not \"cert\""),
                        "auth = \"cert\" with certificate keys, or no certificate keys".to_string(),
                    );
                }
            }
            return PeerAuth::Psk;
        }
        for (key, v) in [("psk", &raw.psk), ("psk_file", &raw.psk_file)] {
            if let Some(v) = v {
                self.error(
                    ErrorKind::Conflict,
                    span(v),
                    k(key),
                    format!("{key} is set but auth = \"cert\""),
                    "no pre-shared key with certificate authentication".to_string(),
                );
            }
        }
        let rsa_pss = match &raw.rsa_signature {
            None => false,
            Some(v) => match v.get_ref().as_str() {
                "pkcs1" => false,
                "pss" => true,
                other => {
                    self.error(
                        ErrorKind::InvalidValue,
                        span(v),
                        k("rsa_signature"),
                        format!("unknown value \"{other}\""),
                        "pkcs1, pss".to_string(),
                    );
                    false
                }
            },
        };
        let mut missing = false;
        for (key, present) in [
            ("certificate", raw.certificate.is_some()),
            ("private_key", raw.private_key.is_some()),
            ("ca_certificates", raw.ca_certificates.is_some()),
        ] {
            if !present {
                missing = true;
                self.error(
                    ErrorKind::Missing,
                    sec.span.clone(),
                    k(key),
                    format!("auth = \"cert\" needs {key}"),
                    "certificate = \"file.crt\", private_key = \"file.key\", ca_certificates = [\"ca.crt\"]"
                        .to_string(),
                );
            }
        }
        if missing {
            return PeerAuth::Psk;
        }
        let (Some(c), Some(kf), Some(cas)) =
            (&raw.certificate, &raw.private_key, &raw.ca_certificates)
        else {
            return PeerAuth::Psk;
        };
        let base = self.base_dir.to_path_buf();
        let credentials =
            rampart_pki::Credentials::load(&base.join(c.get_ref()), &base.join(kf.get_ref()));
        let ca_paths: Vec<std::path::PathBuf> = cas
            .get_ref()
            .iter()
            .map(|p| base.join(p.get_ref()))
            .collect();
        let crl_path = raw.crl.as_ref().map(|p| base.join(p.get_ref()));
        if ca_paths.is_empty() {
            self.error(
                ErrorKind::Missing,
                span(cas),
                k("ca_certificates"),
                "no CA certificate file",
                "at least one CA certificate file".to_string(),
            );
            return PeerAuth::Psk;
        }
        let refs: Vec<&std::path::Path> = ca_paths.iter().map(|p| p.as_path()).collect();
        let trust = rampart_pki::TrustStore::load(&refs, crl_path.as_deref());
        match (credentials, trust) {
            (Ok(credentials), Ok(trust)) => PeerAuth::Cert(Box::new(rampart_pki::CertAuth {
                credentials,
                trust,
                rsa_pss,
                clock: rampart_pki::WallClock::system(),
            })),
            (creds, trust) => {
                if let Err(e) = creds {
                    self.error(
                        ErrorKind::Io,
                        span(c),
                        k("certificate"),
                        e.to_string(),
                        "a PEM certificate (then intermediates) and its PEM private key (ECDSA P-256/P-384 or RSA)".to_string(),
                    );
                }
                if let Err(e) = trust {
                    let sp = match (&e, &raw.crl) {
                        (rampart_pki::PkiError::File { path, .. }, Some(crl))
                            if crl_path
                                .as_ref()
                                .is_some_and(|p| p.display().to_string() == *path) =>
                        {
                            span(crl)
                        }
                        _ => span(cas),
                    };
                    self.error(
                        ErrorKind::Io,
                        sp,
                        k("ca_certificates"),
                        e.to_string(),
                        "PEM CA certificate files and an optional PEM or DER CRL file".to_string(),
                    );
                }
                PeerAuth::Psk
            }
        }
    }

    /// ESN is per peer: `esn = true`, or `-esn` on every ESP proposal. A `-esn` on only some
    /// proposals, or together with an explicit `esn = false`, is a conflict.
    fn esn(&mut self, path: &str, raw: &RawPeer, esp: &[ParsedEsp]) -> bool {
        let with = esp.iter().filter(|((_, e), _)| *e).count();
        let all = !esp.is_empty() && with == esp.len();
        if with > 0 && !all {
            let (idx, (_, sp)) = esp
                .iter()
                .enumerate()
                .find(|(_, ((_, e), _))| !*e)
                .expect("some proposal lacks -esn");
            self.error(
                ErrorKind::Conflict,
                sp.clone(),
                format!("{path}.esp_proposals[{idx}]"),
                "-esn is on some ESP proposals but not on this one (ESN is negotiated per peer)",
                "-esn on every ESP proposal or on none; or esn = true".to_string(),
            );
        }
        match &raw.esn {
            Some(flag) if !*flag.get_ref() && with > 0 => {
                self.error(
                    ErrorKind::Conflict,
                    span(flag),
                    format!("{path}.esn"),
                    "esn = false, but ESP proposals end in -esn",
                    "esn = true, or no -esn suffix".to_string(),
                );
                false
            }
            Some(flag) => *flag.get_ref() || all,
            None => all,
        }
    }
}

/// Whether two prefixes share an address (one contains the other's network address).
pub(crate) fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn show_identity(id: &Identity) -> String {
    match id {
        Identity::Ip(a) => a.to_string(),
        Identity::Fqdn(f) => format!("@{f}"),
        Identity::Email(m) => format!("email:{m}"),
        Identity::Dn(d) => format!("dn:{}", rampart_pki::dn_to_string(d)),
    }
}
