//! The Load Sharing keys of `[cluster]` (`distribution`, the Flush-and-Ack and UPD_REQ bounds,
//! `announce_table`), the redundant sync networks (`extra_addresses`, `sync_link_hold_down`),
//! and the checks that say where a key does not apply: a Load Sharing key in high availability,
//! a routed-only key with `distribution = "unicast"`, an election key with `"routed"`.
//!
//! Every key here is parsed (and its range checked) even where it does not apply, so one run
//! reports both mistakes; a key that does not apply is then refused with the reason.

use std::net::SocketAddr;

use rampart_cluster::{
    ClusterConfig, Distribution, LoadSharingConfig, MemberConfig, TimeoutPolicy,
    DEFAULT_ANNOUNCE_TABLE, DEFAULT_HOLD_TIMEOUT, DEFAULT_MAX_HOLDS, DEFAULT_MAX_PENDING,
    DEFAULT_SYNC_LINK_HOLD_DOWN, DEFAULT_UPDATE_TIMEOUT, MAX_SYNC_LINKS,
};

use super::*;
use crate::raw::RawCluster;

pub(crate) const HOLD_TIMEOUT_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(5);
pub(crate) const UPDATE_TIMEOUT_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(5);
pub(crate) const MAX_HOLDS_RANGE: RangeInclusive<i64> = 1..=262_144;
pub(crate) const ANNOUNCE_TABLE_RANGE: RangeInclusive<i64> = 1..=4_294_967_295;
pub(crate) const SYNC_LINK_HOLD_DOWN_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(600);
/// Extra sync addresses a member may list: link 0 is `address`, so at most
/// `MAX_SYNC_LINKS - 1` more.
pub(crate) const MAX_EXTRA_ADDRESSES: usize = MAX_SYNC_LINKS - 1;

/// The keys that only mean something in Load Sharing, as written in `[cluster]`.
const LS_KEYS: &[&str] = &[
    "distribution",
    "flush_ack",
    "hold_timeout",
    "max_holds",
    "hold_timeout_action",
    "update_timeout",
    "enhanced_handshake",
    "announce_table",
];

/// The Load Sharing keys that only mean something with `distribution = "routed"`: in unicast
/// distribution only a flow's owner sees it, so nothing is held, and the pivot owns the
/// addresses, so nothing is announced. (`update_timeout` applies to both: a packet of an
/// unknown connection is asked for in either.)
const ROUTED_KEYS: &[&str] = &[
    "flush_ack",
    "hold_timeout",
    "max_holds",
    "hold_timeout_action",
    "announce_table",
];

/// The election keys that choose the active member of high availability or the pivot of
/// unicast distribution; with routed distribution every member carries traffic alike.
const ELECTION_KEYS: &[&str] = &["primary", "switch_back"];

/// Whether key `key` of `[cluster]` was written (with any value, even a refused one).
fn written(raw: &RawCluster, key: &str) -> Option<Range<usize>> {
    fn sp<T>(v: &Option<Spanned<T>>) -> Option<Range<usize>> {
        v.as_ref().map(|v| v.span())
    }
    match key {
        "distribution" => sp(&raw.distribution),
        "flush_ack" => sp(&raw.flush_ack),
        "hold_timeout" => sp(&raw.hold_timeout),
        "max_holds" => sp(&raw.max_holds),
        "hold_timeout_action" => sp(&raw.hold_timeout_action),
        "update_timeout" => sp(&raw.update_timeout),
        "enhanced_handshake" => sp(&raw.enhanced_handshake),
        "announce_table" => sp(&raw.announce_table),
        "primary" => sp(&raw.primary),
        "switch_back" => sp(&raw.switch_back),
        _ => None,
    }
}

impl Validator<'_, '_> {
    /// The Load Sharing keys: `Some` exactly when `load_sharing` (the mode) is set. In high
    /// availability every Load Sharing key that is written is refused; with unicast
    /// distribution the routed-only keys are, and with routed distribution `primary` and
    /// `switch_back`.
    pub(super) fn load_sharing(
        &mut self,
        sec: &Section<RawCluster>,
        load_sharing: bool,
    ) -> Option<LoadSharingConfig> {
        let raw = &sec.value;
        let distribution = raw
            .distribution
            .as_ref()
            .and_then(|v| {
                self.keyword(
                    "cluster.distribution",
                    v,
                    &[
                        ("routed", Distribution::Routed),
                        ("unicast", Distribution::Unicast),
                    ],
                )
            })
            .unwrap_or(Distribution::Routed);
        let flush_ack = raw.flush_ack.as_ref().is_none_or(|b| *b.get_ref());
        let hold_timeout = raw
            .hold_timeout
            .as_ref()
            .and_then(|v| self.duration("cluster.hold_timeout", v, HOLD_TIMEOUT_RANGE, false))
            .unwrap_or(DEFAULT_HOLD_TIMEOUT);
        let max_holds = raw
            .max_holds
            .as_ref()
            .and_then(|v| self.int("cluster.max_holds", v, MAX_HOLDS_RANGE))
            .map_or(DEFAULT_MAX_HOLDS, |n| n as usize);
        let hold_timeout_action = raw
            .hold_timeout_action
            .as_ref()
            .and_then(|v| {
                self.keyword(
                    "cluster.hold_timeout_action",
                    v,
                    &[
                        ("release", TimeoutPolicy::Release),
                        ("drop", TimeoutPolicy::Drop),
                    ],
                )
            })
            .unwrap_or(TimeoutPolicy::Release);
        let update_timeout = raw
            .update_timeout
            .as_ref()
            .and_then(|v| self.duration("cluster.update_timeout", v, UPDATE_TIMEOUT_RANGE, false))
            .unwrap_or(DEFAULT_UPDATE_TIMEOUT);
        let enhanced_handshake = raw
            .enhanced_handshake
            .as_ref()
            .is_some_and(|b| *b.get_ref());
        let announce_table = raw
            .announce_table
            .as_ref()
            .and_then(|v| self.announce_table(v))
            .unwrap_or(DEFAULT_ANNOUNCE_TABLE);

        if !load_sharing {
            for key in LS_KEYS {
                if let Some(sp) = written(raw, key) {
                    self.error(
                        ErrorKind::Conflict,
                        Some(sp),
                        format!("cluster.{key}"),
                        format!(
                            "{key} applies to load sharing only (the mode is high-availability)"
                        ),
                        format!("mode = \"load-sharing\", or no {key}"),
                    );
                }
            }
            return None;
        }
        match distribution {
            Distribution::Unicast => {
                for key in ROUTED_KEYS {
                    if let Some(sp) = written(raw, key) {
                        self.error(
                            ErrorKind::Conflict,
                            Some(sp),
                            format!("cluster.{key}"),
                            format!(
                                "{key} applies to distribution = \"routed\" only (in unicast \
                                 distribution the pivot hands each flow to its owner, which alone \
                                 sees it: nothing is held or announced)"
                            ),
                            format!("distribution = \"routed\", or no {key}"),
                        );
                    }
                }
            }
            Distribution::Routed => {
                for key in ELECTION_KEYS {
                    if let Some(sp) = written(raw, key) {
                        self.error(
                            ErrorKind::Conflict,
                            Some(sp),
                            format!("cluster.{key}"),
                            format!(
                                "{key} chooses the active member of high availability or the \
                                 pivot of unicast distribution; with distribution = \"routed\" \
                                 every member carries traffic alike"
                            ),
                            format!("no {key}, or distribution = \"unicast\""),
                        );
                    }
                }
            }
        }
        Some(LoadSharingConfig {
            distribution,
            flush_ack,
            hold_timeout,
            max_holds,
            hold_timeout_action,
            update_timeout,
            max_pending_updates: DEFAULT_MAX_PENDING,
            enhanced_handshake,
            announce_table,
        })
    }

    /// Routed distribution and `[rim]` may not share a table: each withdraws what it injected,
    /// and a prefix injected by both would vanish with the first withdrawal.
    pub(super) fn announce_table_vs_rim(
        &mut self,
        doc: &RawDocument,
        cluster: &ClusterConfig,
        rim: Option<&RimConfig>,
    ) {
        let (Some(ls), Some(rim)) = (&cluster.load_sharing, rim) else {
            return;
        };
        if ls.distribution != Distribution::Routed || ls.announce_table != rim.table {
            return;
        }
        let (sp, key) = match &doc.cluster.value.announce_table {
            Some(v) => (span(v), "cluster.announce_table"),
            None => (doc.rim.value.table.as_ref().and_then(span), "rim.table"),
        };
        self.error(
            ErrorKind::Conflict,
            sp,
            key,
            format!(
                "table {} is both [rim] table and cluster.announce_table",
                ls.announce_table
            ),
            "two different tables (defaults: rim.table 201, cluster.announce_table 202)"
                .to_string(),
        );
    }

    /// `announce_table`: a kernel routing table of its own (not 253, 254, 255).
    fn announce_table(&mut self, v: &Spanned<i64>) -> Option<u32> {
        let n = self.int("cluster.announce_table", v, ANNOUNCE_TABLE_RANGE)?;
        if (253..=255).contains(&n) {
            self.error(
                ErrorKind::InvalidValue,
                span(v),
                "cluster.announce_table",
                format!("{n} is a table of the kernel (253 default, 254 main, 255 local)"),
                "a table of its own: 1 to 252 or 256 to 4294967295".to_string(),
            );
            return None;
        }
        Some(n as u32)
    }

    /// `sync_link_hold_down`: how long a recovered, more preferred sync link must stay alive
    /// before the delta stream moves back to it.
    pub(super) fn sync_link_hold_down(&mut self, raw: &RawCluster) -> Duration {
        raw.sync_link_hold_down
            .as_ref()
            .and_then(|v| {
                self.duration(
                    "cluster.sync_link_hold_down",
                    v,
                    SYNC_LINK_HOLD_DOWN_RANGE,
                    false,
                )
            })
            .unwrap_or(DEFAULT_SYNC_LINK_HOLD_DOWN)
    }

    /// `[[cluster.member]] extra_addresses`: the member's addresses on the redundant sync
    /// networks (links 1.., in preference order), each with the member's `port`. Fills
    /// `extra_sync_addresses` of every member read.
    ///
    /// Invariants after it (when nothing was reported): every member lists the same number of
    /// extra addresses, at most [`MAX_EXTRA_ADDRESSES`]; every sync address (any link, any
    /// member) is unique and none is a virtual address; link `i` of every member is of one
    /// address family.
    pub(super) fn extra_sync_addresses(
        &mut self,
        doc: &RawDocument,
        members: &mut [(MemberConfig, usize)],
        vips: &[IpAddr],
    ) {
        // (address, member index in the file, link) of every sync address read so far.
        let mut seen: Vec<(SocketAddr, usize, usize)> = members
            .iter()
            .map(|(m, i)| (m.sync_address, *i, 0))
            .collect();
        let mut reference: Option<(usize, usize)> = None; // (count, member index)
                                                          // Per member (file order), per link 1..: the address read, `None` where refused.
        let mut links: Vec<(usize, Vec<Option<SocketAddr>>)> = Vec::new();
        for (m, i) in members.iter_mut() {
            let path = format!("cluster.member[{i}].extra_addresses");
            let raw = &doc.cluster_members[*i].value;
            let list: &[Spanned<String>] = raw
                .extra_addresses
                .as_ref()
                .map_or(&[], |l| l.get_ref().as_slice());
            let list_span = raw.extra_addresses.as_ref().map(|l| l.span());
            if list.len() > MAX_EXTRA_ADDRESSES {
                self.error(
                    ErrorKind::OutOfRange,
                    list_span.clone(),
                    path.clone(),
                    format!("{} extra addresses", list.len()),
                    format!(
                        "at most {MAX_EXTRA_ADDRESSES} (with address, {MAX_SYNC_LINKS} sync \
                         networks)"
                    ),
                );
            }
            match reference {
                None => reference = Some((list.len(), *i)),
                Some((count, first)) if count != list.len() => self.error(
                    ErrorKind::Conflict,
                    list_span.or_else(|| doc.cluster_members[*i].span.clone()),
                    path.clone(),
                    format!(
                        "{} extra addresses, but cluster.member[{first}] has {count}",
                        list.len()
                    ),
                    "the same number of extra addresses on every member (link i of one \
                     member talks to link i of the others)"
                        .to_string(),
                ),
                Some(_) => {}
            }
            let port = m.sync_address.port();
            let mut read = Vec::new();
            for (k, item) in list.iter().enumerate().take(MAX_EXTRA_ADDRESSES) {
                read.push(self.extra_address(&path, k, item, port, *i, &seen, vips));
                if let Some(address) = read[k] {
                    seen.push((address, *i, k + 1));
                }
            }
            m.extra_sync_addresses = read.iter().flatten().copied().collect();
            links.push((*i, read));
        }
        self.sync_link_families(doc, &links);
    }

    /// One entry of `extra_addresses`: a unicast address, with the member's port not used by
    /// any sync address in `seen`, and not a virtual address.
    #[allow(clippy::too_many_arguments)]
    fn extra_address(
        &mut self,
        path: &str,
        k: usize,
        item: &Spanned<String>,
        port: u16,
        member: usize,
        seen: &[(SocketAddr, usize, usize)],
        vips: &[IpAddr],
    ) -> Option<SocketAddr> {
        let key = format!("{path}[{k}]");
        let ip = self.unicast(&key, item)?;
        let address = SocketAddr::new(ip, port);
        if let Some((_, first, link)) = seen.iter().find(|(a, _, _)| *a == address) {
            let whose = if *link == 0 {
                format!("cluster.member[{first}].address")
            } else {
                format!("cluster.member[{first}].extra_addresses[{}]", link - 1)
            };
            let whose = if *first == member {
                format!("{whose} (this member's)")
            } else {
                whose
            };
            self.error(
                ErrorKind::Duplicate,
                span(item),
                key,
                format!("sync address {address} is also {whose}"),
                "an address (and port) used by no other sync link".to_string(),
            );
            return None;
        }
        if vips.contains(&ip) {
            self.error(
                ErrorKind::Conflict,
                span(item),
                key,
                format!("{ip} is a virtual address of the cluster"),
                "an address of this member's own on the sync network".to_string(),
            );
            return None;
        }
        Some(address)
    }

    /// Link `k` of every member is of the family of the first member's link `k` (entries
    /// refused already are skipped).
    fn sync_link_families(
        &mut self,
        doc: &RawDocument,
        links: &[(usize, Vec<Option<SocketAddr>>)],
    ) {
        let Some((first_i, first)) = links.first() else {
            return;
        };
        for (i, read) in &links[1..] {
            for (k, pair) in first.iter().zip(read).enumerate() {
                let (Some(a), Some(b)) = pair else { continue };
                if a.is_ipv4() != b.is_ipv4() {
                    let item = doc.cluster_members[*i]
                        .value
                        .extra_addresses
                        .as_ref()
                        .and_then(|l| l.get_ref().get(k).map(|v| v.span()));
                    self.error(
                        ErrorKind::Conflict,
                        item,
                        format!("cluster.member[{i}].extra_addresses[{k}]"),
                        format!(
                            "{} is not of the address family of \
                             cluster.member[{first_i}].extra_addresses[{k}] {}",
                            b.ip(),
                            a.ip()
                        ),
                        "one family per sync network (all IPv4 or all IPv6)".to_string(),
                    );
                }
            }
        }
    }
}
