//! Multiple Entry Points: `[mep]`, the MEP keys of `[[entry_point_group]]` and its
//! `[[entry_point_group.rule]]` tables, the peer keys `probe`, `probe_key` and `backup_of`,
//! implicit groups (overlapping remote domains, primary/backup pairs) and `[rim]`.

use rampart_mep::{ProbeSettings, StickySettings};
use zeroize::Zeroizing;

use super::*;

pub(crate) const PROBE_INTERVAL_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(60);
pub(crate) const PROBE_TIMEOUT_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(10)..=Duration::from_secs(10);
pub(crate) const PROBE_MISSES_RANGE: RangeInclusive<i64> = 1..=100;
pub(crate) const STICKY_CAPACITY_RANGE: RangeInclusive<i64> = 0..=100_000_000;
pub(crate) const STICKY_IDLE_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(7 * 86400);
pub(crate) const MIN_PROBE_KEY_LEN: usize = 16;
pub(crate) const DEFAULT_RIM_TABLE: u32 = 201;
pub(crate) const DEFAULT_RIM_PROTOCOL: u8 = 201;
pub(crate) const DEFAULT_RIM_METRIC: u32 = 100;
pub(crate) const RIM_TABLE_RANGE: RangeInclusive<i64> = 1..=4_294_967_295;
/// 0 to 4 are the kernel's (unspec, redirect, kernel, boot, static).
pub(crate) const RIM_PROTOCOL_RANGE: RangeInclusive<i64> = 5..=255;
pub(crate) const RIM_METRIC_RANGE: RangeInclusive<i64> = 0..=4_294_967_295;
const LEVELS: [&str; 3] = ["primary", "secondary", "tertiary"];
const OVERLAP_RULE: &str = "prefixes that no other peer's remote_domain covers, both peers in \
    one [[entry_point_group]], one peer backup_of the other, or both in no group with a [mep] \
    table whose implicit is not \"off\" (overlapping peers then form an implicit group)";

pub(crate) fn method_word(m: Method) -> &'static str {
    match m {
        Method::FirstToRespond => "first-to-respond",
        Method::ByVpnDomain => "by-vpn-domain",
        Method::Random => "random",
        Method::PriorityList => "priority-list",
        Method::PrimaryBackup => "primary-backup",
        Method::LoadDistribution => "load-distribution",
    }
}

/// The union of prefix lists, in order of appearance, without a prefix another one covers.
pub(crate) fn union<'a>(nets: impl IntoIterator<Item = &'a IpNet>) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = Vec::new();
    for net in nets {
        if out.iter().any(|o| o.contains(net)) {
            continue;
        }
        out.retain(|o| !net.contains(o));
        out.push(*net);
    }
    out
}

impl Validator<'_, '_> {
    /// `[mep]`, defaults when absent. The probe port may not be an IKE port.
    pub(super) fn mep_section(
        &mut self,
        doc: &RawDocument,
        gateway: &GatewaySection,
    ) -> MepSection {
        let sec = &doc.mep;
        let mut out = MepSection {
            present: sec.present,
            ..MepSection::default()
        };
        let raw = &sec.value;
        let (port, port_span) = self.port(
            "mep.probe_port",
            &raw.probe_port,
            rampart_mep::DEFAULT_PROBE_PORT,
        );
        if port == gateway.ike_port || port == gateway.nat_t_port {
            self.error(
                ErrorKind::Conflict,
                port_span,
                "mep.probe_port",
                format!("{port} is also an IKE port of this gateway"),
                format!(
                    "a port other than gateway.ike_port ({}) and gateway.nat_t_port ({})",
                    gateway.ike_port, gateway.nat_t_port
                ),
            );
        }
        let interval = raw
            .probe_interval
            .as_ref()
            .and_then(|v| self.duration("mep.probe_interval", v, PROBE_INTERVAL_RANGE, false))
            .unwrap_or(rampart_mep::DEFAULT_PROBE_INTERVAL);
        let timeout = raw
            .probe_timeout
            .as_ref()
            .and_then(|v| self.duration("mep.probe_timeout", v, PROBE_TIMEOUT_RANGE, false))
            .unwrap_or(rampart_mep::DEFAULT_PROBE_TIMEOUT);
        if timeout > interval {
            self.error(
                ErrorKind::Conflict,
                raw.probe_timeout
                    .as_ref()
                    .or(raw.probe_interval.as_ref())
                    .and_then(span),
                "mep.probe_timeout",
                format!(
                    "probe_timeout {} is longer than probe_interval {}",
                    format_duration(timeout),
                    format_duration(interval)
                ),
                "a probe_timeout no longer than probe_interval".to_string(),
            );
        }
        let misses = raw
            .probe_misses
            .as_ref()
            .and_then(|v| self.int("mep.probe_misses", v, PROBE_MISSES_RANGE))
            .map_or(rampart_mep::DEFAULT_PROBE_MISSES, |n| n as u32);
        out.probe = ProbeSettings {
            port,
            interval,
            timeout,
            misses,
        };
        if let Some(v) = &raw.implicit {
            out.implicit = self
                .keyword(
                    "mep.implicit",
                    v,
                    &[
                        ("first-to-respond", ImplicitMethod::FirstToRespond),
                        ("load-distribution", ImplicitMethod::LoadDistribution),
                        ("off", ImplicitMethod::Off),
                    ],
                )
                .unwrap_or(out.implicit);
        }
        out.tracking = raw.tracking.as_ref().is_some_and(|b| *b.get_ref());
        out.respond = raw.respond.as_ref().is_none_or(|b| *b.get_ref());
        let defaults = StickySettings::default();
        out.sticky = StickySettings {
            capacity: raw
                .sticky_capacity
                .as_ref()
                .and_then(|v| self.int("mep.sticky_capacity", v, STICKY_CAPACITY_RANGE))
                .map_or(defaults.capacity, |n| n as usize),
            idle: raw
                .sticky_idle
                .as_ref()
                .and_then(|v| self.duration("mep.sticky_idle", v, STICKY_IDLE_RANGE, false))
                .unwrap_or(defaults.idle),
        };
        out
    }

    /// `probe`, `probe_key` and `backup_of` of every peer (`backup_of` is judged by
    /// [`Self::backups`]); `own_domain` is the remote domain as written.
    pub(super) fn peer_mep(&mut self, doc: &RawDocument, peers: &[PeerPolicy]) -> Vec<PeerMep> {
        let mut out = Vec::new();
        for (i, (sec, peer)) in doc.peers.iter().zip(peers).enumerate() {
            let raw = &sec.value;
            let path = format!("peer[{i}]");
            let probe = raw
                .probe
                .as_ref()
                .and_then(|v| {
                    self.keyword(
                        &format!("{path}.probe"),
                        v,
                        &[
                            ("auto", ProbeMode::Auto),
                            ("rampart", ProbeMode::Rampart),
                            ("ike", ProbeMode::Ike),
                        ],
                    )
                })
                .unwrap_or(ProbeMode::Auto);
            let probe_key = raw.probe_key.as_ref().map(|v| {
                let bytes = Zeroizing::new(v.get_ref().as_bytes().to_vec());
                if bytes.len() < MIN_PROBE_KEY_LEN {
                    self.error(
                        ErrorKind::OutOfRange,
                        span(v),
                        format!("{path}.probe_key"),
                        format!("the probe key is {} bytes long", bytes.len()),
                        format!("at least {MIN_PROBE_KEY_LEN} bytes"),
                    );
                }
                bytes
            });
            if probe == ProbeMode::Rampart && probe_key.is_none() && peer.psk.is_empty() {
                self.error(
                    ErrorKind::Conflict,
                    raw.probe.as_ref().and_then(span),
                    format!("{path}.probe"),
                    "probe = \"rampart\" needs a key: this peer has no probe_key and no \
                     pre-shared key",
                    "a probe_key (at least 16 bytes) or psk authentication; or probe = \"auto\" \
                     or \"ike\""
                        .to_string(),
                );
            }
            out.push(PeerMep {
                name: peer.name.clone(),
                probe,
                probe_key,
                backup_of: raw.backup_of.as_ref().map(|v| v.get_ref().clone()),
                own_domain: peer.remote_domain.clone(),
            });
        }
        out
    }

    /// The MEP keys of `[[entry_point_group]]` and its rules, into `groups` (built by
    /// [`Self::entry_point_groups`], one per table).
    pub(super) fn group_settings(
        &mut self,
        doc: &RawDocument,
        groups: &mut [EntryPointGroup],
        peers: &[PeerPolicy],
        local: &LocalSection,
        mep: &MepSection,
    ) {
        for (i, (sec, g)) in doc.entry_point_groups.iter().zip(groups).enumerate() {
            let raw = &sec.value;
            let path = format!("entry_point_group[{i}]");
            g.method = raw
                .method
                .as_ref()
                .and_then(|v| {
                    self.keyword(
                        &format!("{path}.method"),
                        v,
                        &[
                            ("first-to-respond", Method::FirstToRespond),
                            ("by-vpn-domain", Method::ByVpnDomain),
                            ("random", Method::Random),
                            ("priority-list", Method::PriorityList),
                        ],
                    )
                })
                .unwrap_or(Method::FirstToRespond);
            if let Some(v) = &raw.tie_break {
                let key = format!("{path}.tie_break");
                if let Some(t) = self.keyword(
                    &key,
                    v,
                    &[
                        ("first-to-respond", TieBreak::FirstToRespond),
                        ("random", TieBreak::Random),
                    ],
                ) {
                    if matches!(g.method, Method::ByVpnDomain | Method::PriorityList) {
                        g.tie_break = t;
                    } else {
                        self.error(
                            ErrorKind::Conflict,
                            span(v),
                            key,
                            format!("method \"{}\" has no tie-break", method_word(g.method)),
                            "tie_break only with method = \"by-vpn-domain\" or \"priority-list\""
                                .to_string(),
                        );
                    }
                }
            }
            let own: Vec<&IpNet> = g
                .peers
                .iter()
                .filter_map(|name| peers.iter().find(|p| p.name == *name))
                .flat_map(|p| &p.remote_domain)
                .collect();
            g.domain = match &raw.domain {
                None => union(own),
                Some(list) => {
                    let key = format!("{path}.domain");
                    let nets = self.prefixes(&key, list);
                    for (j, (net, sp)) in nets.iter().enumerate() {
                        if let Some(l) = local.domain.iter().find(|l| overlaps(l, net)) {
                            self.error(
                                ErrorKind::Conflict,
                                Some(sp.clone()),
                                format!("{key}[{j}]"),
                                format!("{net} overlaps the local domain prefix {l}"),
                                "prefixes outside local.domain".to_string(),
                            );
                        }
                    }
                    nets.into_iter().map(|(n, _)| n).collect()
                }
            };
            g.tracking = raw.tracking.as_ref().map_or(mep.tracking, |b| *b.get_ref());
            g.preconnect = raw.preconnect.as_ref().is_some_and(|b| *b.get_ref());
            let rules = doc.entry_point_rules.get(i).map_or(&[][..], |r| &r[..]);
            g.rules = self.mep_rules(&path, rules, g);
        }
    }

    /// `[[entry_point_group.rule]]` of group `g` (its method and members already known).
    fn mep_rules(
        &mut self,
        path: &str,
        rules: &[Section<RawMepRule>],
        g: &EntryPointGroup,
    ) -> Vec<MepRule> {
        if let (Some(first), false) = (rules.first(), g.method == Method::PriorityList) {
            self.error(
                ErrorKind::Conflict,
                first.span.clone(),
                format!("{path}.rule"),
                format!(
                    "rules are for method \"priority-list\" (this group's method is \"{}\")",
                    method_word(g.method)
                ),
                "[[entry_point_group.rule]] only in a group with method = \"priority-list\""
                    .to_string(),
            );
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut default_rule: Option<usize> = None;
        for (j, sec) in rules.iter().enumerate() {
            let raw = &sec.value;
            let rpath = format!("{path}.rule[{j}]");
            let mut rule = MepRule::default();
            match &raw.satellites {
                None => {
                    if let Some(first) = default_rule {
                        self.error(
                            ErrorKind::Duplicate,
                            sec.span.clone(),
                            format!("{rpath}.satellites"),
                            format!(
                                "a second default rule (no satellites; the first is rule[{first}])"
                            ),
                            "at most one rule without satellites (the default rule); name the \
                             satellites of the others"
                                .to_string(),
                        );
                    }
                    default_rule.get_or_insert(j);
                }
                Some(list) => {
                    let key = format!("{rpath}.satellites");
                    if list.get_ref().is_empty() {
                        self.error(
                            ErrorKind::OutOfRange,
                            span(list),
                            key.clone(),
                            "empty list",
                            "gateway names of satellites (their gateway.name), or no satellites \
                             key for the default rule"
                                .to_string(),
                        );
                    }
                    for (k, item) in list.get_ref().iter().enumerate() {
                        if let Some(n) = self.name(&format!("{key}[{k}]"), item) {
                            rule.satellites.push(n);
                        }
                    }
                }
            }
            let lists = [&raw.primary, &raw.secondary, &raw.tertiary];
            let mut placed: Vec<(String, usize)> = Vec::new();
            for (level, list) in lists.into_iter().enumerate() {
                let Some(list) = list else { continue };
                for (k, item) in list.get_ref().iter().enumerate() {
                    let key = format!("{rpath}.{}[{k}]", LEVELS[level]);
                    let name = item.get_ref();
                    if !g.peers.contains(name) {
                        self.error(
                            ErrorKind::InvalidValue,
                            span(item),
                            key,
                            format!(
                                "\"{name}\" is not a member of entry_point_group \"{}\"",
                                g.name
                            ),
                            format!("members of the group: {}", g.peers.join(", ")),
                        );
                    } else if let Some((_, l)) = placed.iter().find(|(n, _)| n == name) {
                        self.error(
                            ErrorKind::Duplicate,
                            span(item),
                            key,
                            format!("\"{name}\" is already in {} of this rule", LEVELS[*l]),
                            "each member in at most one level of a rule".to_string(),
                        );
                    } else {
                        placed.push((name.clone(), level));
                        rule.levels[level].push(name.clone());
                    }
                }
            }
            if lists
                .iter()
                .all(|l| l.as_ref().is_none_or(|l| l.get_ref().is_empty()))
            {
                self.error(
                    ErrorKind::Missing,
                    sec.span.clone(),
                    format!("{rpath}.primary"),
                    "the rule names no member",
                    "members in primary, secondary or tertiary (members in no level are \
                     never chosen)"
                        .to_string(),
                );
            }
            out.push(rule);
        }
        out
    }

    /// `backup_of`: primary/backup groups, ordered by the primary's position.
    pub(super) fn backups(
        &mut self,
        doc: &RawDocument,
        peers: &[PeerPolicy],
        peer_mep: &[PeerMep],
        groups: &[EntryPointGroup],
    ) -> Vec<ImplicitGroup> {
        let mut backups_of: Vec<Vec<usize>> = vec![Vec::new(); peers.len()];
        let explicit = |name: &str| groups.iter().find(|g| g.peers.iter().any(|p| p == name));
        for (i, sec) in doc.peers.iter().enumerate() {
            let Some(v) = &sec.value.backup_of else {
                continue;
            };
            let key = format!("peer[{i}].backup_of");
            let me = &peers[i].name;
            let target = v.get_ref();
            let others: Vec<&str> = peers
                .iter()
                .filter(|p| p.name != *me)
                .map(|p| p.name.as_str())
                .collect();
            let Some(j) = peers.iter().position(|p| p.name == *target) else {
                self.error(
                    ErrorKind::InvalidValue,
                    span(v),
                    key,
                    format!("unknown peer \"{target}\""),
                    format!("the name of another [[peer]]: {}", others.join(", ")),
                );
                continue;
            };
            let problem = if j == i {
                Some(("a peer cannot be its own backup".to_string(), None))
            } else if let Some(p) = peer_mep[j]
                .backup_of
                .as_ref()
                .filter(|p| **p != peers[j].name && peers.iter().any(|q| q.name == **p))
            {
                Some((
                    format!("peer \"{target}\" is itself a backup (of \"{p}\")"),
                    Some("a peer that is no backup (no chains of backups)"),
                ))
            } else if let Some(g) = explicit(me) {
                Some((
                    format!("this peer is in entry_point_group \"{}\"", g.name),
                    Some("backup_of only between peers in no [[entry_point_group]]"),
                ))
            } else if let Some(g) = explicit(target) {
                Some((
                    format!("peer \"{target}\" is in entry_point_group \"{}\"", g.name),
                    Some("backup_of only between peers in no [[entry_point_group]]"),
                ))
            } else if peers[i].is_template() || peers[j].is_template() {
                Some((
                    "a template (remote_address = \"any\") cannot be an entry point".to_string(),
                    Some("backup_of between peers with a remote address"),
                ))
            } else {
                None
            };
            match problem {
                Some((message, allowed)) => self.error(
                    ErrorKind::Conflict,
                    span(v),
                    key,
                    message,
                    allowed
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("another [[peer]]: {}", others.join(", "))),
                ),
                None => backups_of[j].push(i),
            }
        }
        backups_of
            .into_iter()
            .enumerate()
            .filter(|(_, b)| !b.is_empty())
            .map(|(j, b)| ImplicitGroup {
                name: format!("backup:{}", peers[j].name),
                kind: GroupKind::ImplicitPrimaryBackup,
                peers: std::iter::once(j)
                    .chain(b)
                    .map(|k| peers[k].name.clone())
                    .collect(),
            })
            .collect()
    }

    /// Remote domains of two peers may overlap only inside an explicit group, inside a
    /// primary/backup group, or (with `[mep]` and `implicit` not `off`) between peers in
    /// neither and no template: those form implicit groups, the connected components of
    /// "overlaps". Otherwise the later prefix is reported. Returns the implicit overlap groups
    /// ordered by their first member.
    pub(super) fn domain_overlaps(
        &mut self,
        peers: &[PeerPolicy],
        domains: &[DomainEntry],
        groups: &[EntryPointGroup],
        backups: &[ImplicitGroup],
        mep: &MepSection,
    ) -> Vec<ImplicitGroup> {
        let implicit_on = mep.present && mep.implicit != ImplicitMethod::Off;
        let in_group =
            |i: usize, names: &[String]| peers.get(i).is_some_and(|p| names.contains(&p.name));
        let explicit = |i: usize| groups.iter().position(|g| in_group(i, &g.peers));
        let backup = |i: usize| backups.iter().position(|g| in_group(i, &g.peers));
        let free = |i: usize| {
            explicit(i).is_none()
                && backup(i).is_none()
                && peers.get(i).is_some_and(|p| !p.is_template())
        };
        let mut parent: Vec<usize> = (0..peers.len()).collect();
        fn root(parent: &mut [usize], mut i: usize) -> usize {
            while parent[i] != i {
                parent[i] = parent[parent[i]];
                i = parent[i];
            }
            i
        }
        for (k, (net, sp, owner, j)) in domains.iter().enumerate() {
            let mut clash = None;
            for (d, _, o, _) in &domains[..k] {
                if o == owner || !overlaps(d, net) {
                    continue;
                }
                let same_explicit = explicit(*o).is_some() && explicit(*o) == explicit(*owner);
                let same_backup = backup(*o).is_some() && backup(*o) == backup(*owner);
                if same_explicit || same_backup {
                    continue;
                }
                if implicit_on && free(*o) && free(*owner) {
                    let (a, b) = (root(&mut parent, *o), root(&mut parent, *owner));
                    parent[a.max(b)] = a.min(b);
                    continue;
                }
                clash.get_or_insert((d, o));
            }
            if let Some((other, o)) = clash {
                self.error(
                    ErrorKind::Conflict,
                    Some(sp.clone()),
                    format!("peer[{owner}].remote_domain[{j}]"),
                    format!("{net} overlaps {other} in the remote_domain of peer[{o}]"),
                    OVERLAP_RULE.to_string(),
                );
            }
        }
        let mut components: Vec<(usize, Vec<usize>)> = Vec::new();
        for i in 0..peers.len() {
            let r = root(&mut parent, i);
            match components.iter_mut().find(|(root, _)| *root == r) {
                Some((_, members)) => members.push(i),
                None => components.push((r, vec![i])),
            }
        }
        components
            .into_iter()
            .filter(|(_, m)| m.len() > 1)
            .map(|(_, m)| ImplicitGroup {
                name: format!("implicit:{}", peers[m[0]].name),
                kind: GroupKind::ImplicitOverlap,
                peers: m.iter().map(|&i| peers[i].name.clone()).collect(),
            })
            .collect()
    }

    /// Start actions of explicit group members: a member without `start_action` gets
    /// `always` with `preconnect = true` and `on-traffic` (its tunnel comes up when a
    /// connection is resolved to it) otherwise. With `preconnect = true`, a member that sets
    /// another `start_action` is a conflict.
    pub(super) fn preconnect(
        &mut self,
        doc: &RawDocument,
        peers: &mut [PeerPolicy],
        groups: &[EntryPointGroup],
    ) {
        for (gi, g) in groups.iter().enumerate() {
            for (i, peer) in peers.iter_mut().enumerate() {
                if !g.peers.contains(&peer.name) {
                    continue;
                }
                match &doc.peers[i].value.start_action {
                    Some(v) if g.preconnect && v.get_ref() != "always" => self.error(
                        ErrorKind::Conflict,
                        span(v),
                        format!("peer[{i}].start_action"),
                        format!(
                            "\"{}\", but entry_point_group[{gi}] (\"{}\") has preconnect = true",
                            v.get_ref(),
                            g.name
                        ),
                        "always (or no start_action) in a group with preconnect".to_string(),
                    ),
                    Some(_) => {}
                    None if g.preconnect => peer.start_action = StartAction::Always,
                    None => peer.start_action = StartAction::OnTraffic,
                }
            }
        }
    }

    /// `[rim]`: `None` without the table.
    pub(super) fn rim(&mut self, doc: &RawDocument, peers: &[PeerPolicy]) -> Option<RimConfig> {
        let sec = &doc.rim;
        if !sec.present {
            return None;
        }
        let raw = &sec.value;
        let table = raw.table.as_ref().and_then(|v| {
            let n = self.int("rim.table", v, RIM_TABLE_RANGE)?;
            if (253..=255).contains(&n) {
                self.error(
                    ErrorKind::InvalidValue,
                    span(v),
                    "rim.table",
                    format!("{n} is a table of the kernel (253 default, 254 main, 255 local)"),
                    "a table of its own: 1 to 252 or 256 to 4294967295".to_string(),
                );
                return None;
            }
            Some(n as u32)
        });
        let protocol = raw
            .protocol
            .as_ref()
            .and_then(|v| self.int("rim.protocol", v, RIM_PROTOCOL_RANGE))
            .map_or(DEFAULT_RIM_PROTOCOL, |n| n as u8);
        let metric = raw
            .metric
            .as_ref()
            .and_then(|v| self.int("rim.metric", v, RIM_METRIC_RANGE))
            .map_or(DEFAULT_RIM_METRIC, |n| n as u32);
        let mut names = Vec::new();
        if let Some(list) = &raw.peers {
            for (k, item) in list.get_ref().iter().enumerate() {
                let name = item.get_ref();
                if peers.iter().any(|p| p.name == *name) {
                    names.push(name.clone());
                } else {
                    let known: Vec<&str> = peers.iter().map(|p| p.name.as_str()).collect();
                    self.error(
                        ErrorKind::InvalidValue,
                        span(item),
                        format!("rim.peers[{k}]"),
                        format!("unknown peer \"{name}\""),
                        format!("names of [[peer]] tables: {}", known.join(", ")),
                    );
                }
            }
        }
        Some(RimConfig {
            table: table.unwrap_or(DEFAULT_RIM_TABLE),
            protocol,
            metric,
            peers: names,
        })
    }
}

/// The IKE traffic selectors of entry points: explicit members get the group's unified
/// domain, a backup its own domain plus its primary's.
pub(super) fn apply_domains(
    peers: &mut [PeerPolicy],
    peer_mep: &[PeerMep],
    groups: &[EntryPointGroup],
    backups: &[ImplicitGroup],
) {
    let index = |peers: &[PeerPolicy], name: &str| peers.iter().position(|p| p.name == name);
    for g in groups {
        for name in &g.peers {
            if let Some(i) = index(peers, name) {
                peers[i].remote_domain = g.domain.clone();
            }
        }
    }
    for b in backups {
        let Some(primary) = index(peers, &b.peers[0]) else {
            continue;
        };
        for name in &b.peers[1..] {
            if let Some(i) = index(peers, name) {
                peers[i].remote_domain = union(
                    peer_mep[i]
                        .own_domain
                        .iter()
                        .chain(&peer_mep[primary].own_domain),
                );
            }
        }
    }
}
