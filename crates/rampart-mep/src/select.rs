//! Selection methods, priority levels and tie-breaks: pure functions over probe state.
//!
//! The engine asks [`Selector::select`] for a new connection's entry point. Probe state comes
//! through [`ProbeView`] (the engine passes its prober; tests pass synthetic state). The only
//! state selection keeps between calls is the first-to-respond order of each group
//! ([`FtrOrder`]), which the engine updates from [`Choice::adopt`] and prunes when an entry
//! point goes down.
//!
//! Invariants (checked by the unit and property tests):
//! - the choice is always a member of the group allowed by its method and rules (a member in
//!   no priority level is never chosen);
//! - it is responding whenever an allowed candidate responds; otherwise it is the
//!   first-ranked allowed candidate and [`Choice::responding`] is false;
//! - nothing here allocates.

use std::net::IpAddr;
use std::time::Duration;

use crate::config::{EntryPointConfig, EntryPointId, GroupConfig, GroupKind, Method, TieBreak};
use crate::engine::{FlowKey, Level};

/// What selection needs to know of probing.
pub(crate) trait ProbeView {
    /// Whether the entry point answers probes now.
    fn is_up(&self, entry_point: EntryPointId) -> bool;
    /// Smoothed RTT of an entry point that is up.
    fn srtt(&self, entry_point: EntryPointId) -> Option<Duration>;
}

/// The result of a selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Choice {
    pub entry_point: EntryPointId,
    pub level: Level,
    pub responding: bool,
    /// First-to-respond (method or tie-break) picked a member by lowest RTT that the group's
    /// [`FtrOrder`] does not hold yet: the engine must [`FtrOrder::adopt`] it so it is kept
    /// while it is up.
    pub adopt: bool,
}

/// A group's first-to-respond memory: the members first-to-respond picked, in the order they
/// were picked. Among candidates, the earliest one here that is up wins, so a pick is kept
/// while it is up (no flapping on RTT jitter). Members are removed when they go down.
/// Invariant: no duplicates, at most one entry per member, capacity reserved up front (so
/// [`FtrOrder::adopt`] never allocates).
#[derive(Debug, Clone, Default)]
pub(crate) struct FtrOrder {
    kept: Vec<EntryPointId>,
}

impl FtrOrder {
    pub(crate) fn with_members(members: usize) -> FtrOrder {
        FtrOrder {
            kept: Vec::with_capacity(members),
        }
    }

    pub(crate) fn adopt(&mut self, entry_point: EntryPointId) {
        if !self.kept.contains(&entry_point) {
            self.kept.push(entry_point);
        }
    }

    /// Forgets an entry point that went down.
    pub(crate) fn forget(&mut self, entry_point: EntryPointId) {
        self.kept.retain(|&e| e != entry_point);
    }

    pub(crate) fn kept(&self) -> &[EntryPointId] {
        &self.kept
    }
}

/// SipHash-2-4 key pair for the two keyed hashes of selection.
#[derive(Clone)]
pub(crate) struct HashKeys {
    /// Rendezvous hashing per (source, destination) pair (random / load-distribution).
    pub pair: [u64; 2],
    /// Rendezvous hashing per member only (the random tie-break: one choice per satellite).
    pub satellite: [u64; 2],
}

impl std::fmt::Debug for HashKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKeys(<redacted>)")
    }
}

/// Fixed key of the member name fingerprint (not secret: the choices are keyed by
/// [`HashKeys`]; this only makes a member's identity independent of configuration order).
const MEMBER_TAG_KEY: [u64; 2] = [0x6d65_6d62_6572_7461, 0x6761_6d65_7021_7321];

/// Selection over one configuration.
#[derive(Debug)]
pub(crate) struct Selector {
    keys: HashKeys,
    /// Per entry point (by id): a hash of its name, so random choices do not depend on the
    /// order of the configuration.
    member_tag: Vec<u64>,
}

impl Selector {
    pub(crate) fn new(keys: HashKeys, entry_points: &[EntryPointConfig]) -> Selector {
        let member_tag = entry_points
            .iter()
            .map(|ep| siphash24(&MEMBER_TAG_KEY, ep.name.as_bytes()))
            .collect();
        Selector { keys, member_tag }
    }

    fn tag(&self, ep: EntryPointId) -> u64 {
        self.member_tag[ep.0 as usize]
    }

    /// Rendezvous weight of `ep` for the pair (src, dst).
    pub(crate) fn pair_weight(&self, src: IpAddr, dst: IpAddr, ep: EntryPointId) -> u64 {
        let mut buf = [0u8; 2 * 17 + 8];
        let mut n = put_addr(&mut buf, 0, src);
        n = put_addr(&mut buf, n, dst);
        buf[n..n + 8].copy_from_slice(&self.tag(ep).to_le_bytes());
        siphash24(&self.keys.pair, &buf[..n + 8])
    }

    /// Rendezvous weight of `ep` for this satellite (the random tie-break).
    pub(crate) fn satellite_weight(&self, ep: EntryPointId) -> u64 {
        siphash24(&self.keys.satellite, &self.tag(ep).to_le_bytes())
    }

    /// Picks the entry point of a new connection `flow` of `group`.
    ///
    /// # Panics
    /// If the group has no member (the configuration never builds one).
    pub(crate) fn select(
        &self,
        group: &GroupConfig,
        entry_points: &[EntryPointConfig],
        ftr: &FtrOrder,
        probes: &impl ProbeView,
        flow: &FlowKey,
    ) -> Choice {
        assert!(
            !group.members.is_empty(),
            "entry point group without members"
        );
        let cand = Candidates::new(group, entry_points, flow.dst);
        let is_cand = |ep: EntryPointId| cand.holds(ep, entry_points);
        match group.method {
            Method::FirstToRespond => {
                let members = || group.members.iter().copied().filter(|&e| is_cand(e));
                match pick_ftr(members, ftr, probes) {
                    Some((ep, adopt)) => Choice {
                        entry_point: ep,
                        level: Level::Primary,
                        responding: true,
                        adopt,
                    },
                    None => fallback(members().next(), group, Level::Backup),
                }
            }
            Method::Random | Method::LoadDistribution => {
                let members = || group.members.iter().copied().filter(|&e| is_cand(e));
                let weight = |e| self.pair_weight(flow.src, flow.dst, e);
                match max_by_weight(members().filter(|&e| probes.is_up(e)), weight) {
                    Some(ep) => Choice {
                        entry_point: ep,
                        level: Level::Primary,
                        responding: true,
                        adopt: false,
                    },
                    None => fallback(max_by_weight(members(), weight), group, Level::Primary),
                }
            }
            Method::ByVpnDomain => {
                let holds = |e: EntryPointId| domain_holds(&entry_points[e.0 as usize], flow.dst);
                let primary = || {
                    group
                        .members
                        .iter()
                        .copied()
                        .filter(move |&e| is_cand(e) && holds(e))
                };
                let backup = || {
                    group
                        .members
                        .iter()
                        .copied()
                        .filter(move |&e| is_cand(e) && !holds(e))
                };
                if let Some(c) = self.tie_break(group.tie_break, primary, ftr, probes) {
                    return c.at(Level::Primary);
                }
                if let Some(c) = self.tie_break(group.tie_break, backup, ftr, probes) {
                    return c.at(Level::Backup);
                }
                match primary().next() {
                    Some(ep) => fallback(Some(ep), group, Level::Primary),
                    None => fallback(backup().next(), group, Level::Backup),
                }
            }
            Method::PriorityList | Method::PrimaryBackup => {
                let levels = &group.levels.0;
                let all_empty = levels.iter().all(|l| l.is_empty());
                let level_members = |i: usize| {
                    // No rule at all (all levels empty): every member is primary.
                    let list: &[EntryPointId] = if all_empty {
                        if i == 0 {
                            &group.members
                        } else {
                            &[]
                        }
                    } else {
                        &levels[i]
                    };
                    list.iter().copied().filter(move |&e| is_cand(e))
                };
                let pb = group.method == Method::PrimaryBackup;
                for i in 0..3 {
                    let members = || level_members(i);
                    let found = if pb {
                        // Primary, then backups in their order.
                        members().find(|&e| probes.is_up(e)).map(|e| Choice {
                            entry_point: e,
                            level: Level::Primary,
                            responding: true,
                            adopt: false,
                        })
                    } else {
                        self.tie_break(group.tie_break, members, ftr, probes)
                    };
                    if let Some(c) = found {
                        return c.at(level_name(group.method, i));
                    }
                }
                for i in 0..3 {
                    if let Some(ep) = level_members(i).next() {
                        return fallback(Some(ep), group, level_name(group.method, i));
                    }
                }
                // Every level's members were filtered out as candidates: the rules win over
                // the implicit candidate test.
                let first = levels.iter().position(|l| !l.is_empty()).unwrap_or(0);
                let ep = if all_empty {
                    group.members[0]
                } else {
                    levels[first][0]
                };
                fallback(Some(ep), group, level_name(group.method, first))
            }
        }
    }

    /// The tie-break among the responding members of one level; `None` when none responds.
    fn tie_break<I: Iterator<Item = EntryPointId>>(
        &self,
        tie_break: TieBreak,
        members: impl Fn() -> I,
        ftr: &FtrOrder,
        probes: &impl ProbeView,
    ) -> Option<Choice> {
        let (ep, adopt) = match tie_break {
            TieBreak::FirstToRespond => pick_ftr(members, ftr, probes)?,
            TieBreak::Random => (
                max_by_weight(members().filter(|&e| probes.is_up(e)), |e| {
                    self.satellite_weight(e)
                })?,
                false,
            ),
        };
        Some(Choice {
            entry_point: ep,
            level: Level::Primary,
            responding: true,
            adopt,
        })
    }

    /// The level of `ep` in `group` for status: `None` when the rules leave it out.
    /// First-to-respond names the current pick primary and the others backup; by-vpn-domain,
    /// random and load-distribution name every member primary (by-vpn-domain: each is primary
    /// for the destinations in its own domain).
    pub(crate) fn level_of(
        group: &GroupConfig,
        ep: EntryPointId,
        current: Option<EntryPointId>,
    ) -> Option<Level> {
        match group.method {
            Method::FirstToRespond => Some(if current == Some(ep) {
                Level::Primary
            } else {
                Level::Backup
            }),
            Method::ByVpnDomain | Method::Random | Method::LoadDistribution => Some(Level::Primary),
            Method::PriorityList | Method::PrimaryBackup => {
                let levels = &group.levels.0;
                if levels.iter().all(|l| l.is_empty()) {
                    return Some(Level::Primary);
                }
                levels
                    .iter()
                    .position(|l| l.contains(&ep))
                    .map(|i| level_name(group.method, i))
            }
        }
    }
}

impl Choice {
    fn at(self, level: Level) -> Choice {
        Choice { level, ..self }
    }
}

fn level_name(method: Method, index: usize) -> Level {
    match (method, index) {
        (_, 0) => Level::Primary,
        (Method::PrimaryBackup, _) => Level::Backup,
        (_, 1) => Level::Secondary,
        _ => Level::Tertiary,
    }
}

/// No allowed candidate responds: `first` (the first-ranked allowed one), not responding.
fn fallback(first: Option<EntryPointId>, group: &GroupConfig, level: Level) -> Choice {
    Choice {
        entry_point: first.unwrap_or(group.members[0]),
        level,
        responding: false,
        adopt: false,
    }
}

/// First-to-respond among `members`: the earliest kept one that is up, else the up one with
/// the lowest smoothed RTT (ties: configuration order), to be adopted.
fn pick_ftr<I: Iterator<Item = EntryPointId>>(
    members: impl Fn() -> I,
    ftr: &FtrOrder,
    probes: &impl ProbeView,
) -> Option<(EntryPointId, bool)> {
    for &k in ftr.kept() {
        if probes.is_up(k) && members().any(|m| m == k) {
            return Some((k, false));
        }
    }
    members()
        .filter(|&e| probes.is_up(e))
        .min_by_key(|&e| probes.srtt(e).unwrap_or(Duration::MAX))
        .map(|e| (e, true))
}

/// Highest weight; ties (practically impossible) to the first.
fn max_by_weight(
    members: impl Iterator<Item = EntryPointId>,
    weight: impl Fn(EntryPointId) -> u64,
) -> Option<EntryPointId> {
    let mut best: Option<(EntryPointId, u64)> = None;
    for e in members {
        let w = weight(e);
        if best.is_none_or(|(_, bw)| w > bw) {
            best = Some((e, w));
        }
    }
    best.map(|(e, _)| e)
}

fn domain_holds(ep: &EntryPointConfig, dst: IpAddr) -> bool {
    ep.own_domain.iter().any(|n| n.contains(&dst))
}

/// Which members may carry a destination: every member, except in an implicit overlap group
/// where only members whose own domain holds the destination may (all, when none does).
struct Candidates {
    restrict: Option<IpAddr>,
}

impl Candidates {
    fn new(group: &GroupConfig, entry_points: &[EntryPointConfig], dst: IpAddr) -> Candidates {
        let restrict = group.kind == GroupKind::ImplicitOverlap
            && group
                .members
                .iter()
                .any(|&e| domain_holds(&entry_points[e.0 as usize], dst));
        Candidates {
            restrict: restrict.then_some(dst),
        }
    }

    fn holds(&self, ep: EntryPointId, entry_points: &[EntryPointConfig]) -> bool {
        match self.restrict {
            None => true,
            Some(dst) => domain_holds(&entry_points[ep.0 as usize], dst),
        }
    }
}

/// Writes a family byte and the 16-byte (v4-mapped for IPv4) address at `at`.
fn put_addr(buf: &mut [u8], at: usize, addr: IpAddr) -> usize {
    let (family, octets) = match addr {
        IpAddr::V4(a) => (4u8, a.to_ipv6_mapped().octets()),
        IpAddr::V6(a) => (6u8, a.octets()),
    };
    buf[at] = family;
    buf[at + 1..at + 17].copy_from_slice(&octets);
    at + 17
}

/// SipHash-2-4 (Aumasson and Bernstein) of `data` under the 128-bit key `k`.
pub(crate) fn siphash24(k: &[u64; 2], data: &[u8]) -> u64 {
    let mut v = [
        k[0] ^ 0x736f_6d65_7073_6575,
        k[1] ^ 0x646f_7261_6e64_6f6d,
        k[0] ^ 0x6c79_6765_6e65_7261,
        k[1] ^ 0x7465_6462_7974_6573,
    ];
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    let compress = |v: &mut [u64; 4], m: u64| {
        v[3] ^= m;
        round(v);
        round(v);
        v[0] ^= m;
    };
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        compress(&mut v, u64::from_le_bytes(c.try_into().expect("8 bytes")));
    }
    let rest = chunks.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    last[7] = data.len() as u8;
    compress(&mut v, u64::from_le_bytes(last));
    v[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[cfg(test)]
mod tests;
