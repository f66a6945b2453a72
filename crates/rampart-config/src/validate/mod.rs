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

mod auth;
mod cluster;
mod firewall;
mod load_sharing;
pub(crate) mod mep;
mod peers;
pub(crate) mod profile;
pub(crate) mod remote_access;
mod scalars;
mod sections;

use crate::document::{RawDocument, Section};
use crate::error::{ErrorKind, Sink};
use crate::proposal::{parse_esp, parse_ike, ESP_FORM, IKE_FORM};
use crate::raw::{RawGateway, RawLocal, RawMepRule, RawPeer, RawTunnel, Scalar, Str, StrList};
use crate::schema::*;
use crate::units::{format_duration, parse_duration, parse_size, DURATION_FORMS, SIZE_FORMS};
use remote_access::{any_identity, ANY_ID, DEFAULT_RA_NAME};

/// The defaults a client profile's node configuration shares with gateway files.
pub(crate) mod defaults {
    pub(crate) use super::{
        DEFAULT_CHILD_LIFETIME, DEFAULT_COOKIE_THRESHOLD, DEFAULT_FRAGMENT_SIZE,
        DEFAULT_HALF_OPEN_PER_SOURCE, DEFAULT_IKE_LIFETIME, DEFAULT_IKE_PORT, DEFAULT_NAT_T_PORT,
        DEFAULT_REPLAY_WINDOW, DEFAULT_RETRANSMIT_TIMEOUT, DEFAULT_RETRANSMIT_TRIES,
    };
}

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
    let mut gateway = v.gateway(&doc.gateway);
    let tunnel = v.tunnel(&doc.tunnel);
    let local = v.local(&doc.local);
    let (mut peers, domains) = v.peers(&doc, &local);
    let remote_access = v.remote_access(&doc, &local, &peers);
    let mep = v.mep_section(&doc, &gateway);
    let peer_mep = v.peer_mep(&doc, &peers);
    let mut entry_point_groups = v.entry_point_groups(&doc, &peers);
    v.group_settings(&doc, &mut entry_point_groups, &peers, &local, &mep);
    let backups = v.backups(&doc, &peers, &peer_mep, &entry_point_groups);
    let overlap_groups = v.domain_overlaps(&peers, &domains, &entry_point_groups, &backups, &mep);
    v.preconnect(&doc, &mut peers, &entry_point_groups);
    mep::apply_domains(&mut peers, &peer_mep, &entry_point_groups, &backups);
    // The template goes last, after everything that pairs `doc.peers` with `peers`.
    let mut peer_mep = peer_mep;
    let (remote_access, remote_access_template) = match remote_access {
        Some(ra) => {
            peers.push(ra.peer);
            peer_mep.push(ra.mep);
            (Some(ra.config), Some(ra.template))
        }
        None => (None, None),
    };
    let mut implicit_groups = overlap_groups;
    implicit_groups.extend(backups);
    let position = |name: &str| peers.iter().position(|p| p.name == name);
    implicit_groups.sort_by_key(|g| position(&g.peers[0]));
    let rim = v.rim(&doc, &peers);
    let firewall = v.firewall(&doc);
    let cluster = v.cluster(&doc, &mut gateway, &tunnel.device);
    if let Some(cluster) = &cluster {
        v.cluster_peers(&doc, cluster, &peers);
        v.ra_pool_shares(&doc, cluster, &peers);
        v.announce_table_vs_rim(&doc, cluster, rim.as_ref());
    }
    if v.sink.is_empty() {
        Some(GatewayConfig {
            gateway,
            tunnel,
            local,
            peers,
            entry_point_groups,
            firewall,
            cluster,
            mep,
            peer_mep,
            implicit_groups,
            rim,
            remote_access,
            remote_access_template,
        })
    } else {
        None
    }
}

/// `path.key`, or `key` at the top level of a flat file (a client profile).
fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn span<T>(v: &Spanned<T>) -> Option<Range<usize>> {
    Some(v.span())
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
