//! Assertions over the members of a cluster taken together (`nodes = [...]`, or one `node`):
//! packets dropped as out of state, whether every member holds every connection, the
//! Flush-and-Ack, update-request, forwarding and sync-link counters. They are decided at the
//! end of the run (a count can still grow before).
//!
//! A member that crashed keeps the out-of-state drops its engine counted before the crash (the
//! simulator reads them at the crash); for the other counters and the table comparison only
//! the members running at the end count.

use std::collections::BTreeSet;
use std::time::Duration;

use rampart_node::SyncStats;

use crate::report::Verdict;
use crate::scenario::AssertSpec;
use crate::world::{Kind, World};

/// Connections younger than this at the member that has them are not required on the others
/// yet (their records may be on the way).
pub(crate) const SETTLE_SECS: u64 = 1;

/// What a cluster assertion checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClusterCheck {
    OutOfStateAtMost(u64),
    OutOfStateAtLeast(u64),
    ConnectionsSynced,
    /// A sum over the running members compared with a bound.
    Count(Counter, Bound, u64),
    HoldP99AtMost(Duration),
}

/// A counter of the running members' sync statistics or status, summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counter {
    Holds,
    HoldTimeouts,
    UpdateRequests,
    UpdatesFound,
    Forwarded,
    /// Inspected packets for a remote-access client forwarded to its SA's owner.
    ForwardedToClients,
    SyncLost,
    /// Times a stream moved onto the link.
    SwitchedTo(usize),
    /// Records sent on the link.
    LinkRecords(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    AtLeast,
    AtMost,
}

impl Counter {
    fn what(self) -> String {
        match self {
            Counter::Holds => "packet(s) held by Flush-and-Ack".into(),
            Counter::HoldTimeouts => "Flush-and-Ack hold timeout(s)".into(),
            Counter::UpdateRequests => "update request(s) sent".into(),
            Counter::UpdatesFound => "update request(s) answered found".into(),
            Counter::Forwarded => "packet(s) forwarded to their owner".into(),
            Counter::ForwardedToClients => {
                "packet(s) for a remote-access client forwarded to its SA's owner".into()
            }
            Counter::SyncLost => "lost sync record(s)".into(),
            Counter::SwitchedTo(l) => format!("switch(es) of a delta stream onto sync link {l}"),
            Counter::LinkRecords(l) => format!("record(s) sent on sync link {l}"),
        }
    }

    /// The member's value; `None` when it does not count this (not in Load Sharing, no such
    /// link).
    fn read(self, world: &World, m: usize) -> Option<u64> {
        let Kind::Gateway(gw) = &world.nodes[m].kind else {
            return None;
        };
        let (status, sync) = gw.cluster_status(world.base, world.now)?;
        let fa = || sync.flush_ack.as_ref();
        let ur = || sync.update_requests.as_ref();
        let link = |l: usize| sync.links.get(l);
        match self {
            Counter::Holds => fa().map(|f| f.held),
            Counter::HoldTimeouts => fa().map(|f| f.timeouts),
            Counter::UpdateRequests => ur().map(|u| u.queries),
            Counter::UpdatesFound => ur().map(|u| u.found),
            Counter::Forwarded => status.load_sharing.as_ref().map(|l| l.forwarded_sent),
            Counter::ForwardedToClients => gw
                .engine
                .as_ref()
                .and_then(|e| e.load_sharing_stats())
                .map(|l| l.forwarded_to_client),
            Counter::SyncLost => Some(sync.lost),
            Counter::SwitchedTo(l) => link(l).map(|k| k.switched_to),
            Counter::LinkRecords(l) => link(l).map(|k| k.records_sent),
        }
    }
}

impl ClusterCheck {
    /// The check `a` names, if it is one of these.
    pub fn of(a: &AssertSpec) -> Option<ClusterCheck> {
        if let Some(n) = a.out_of_state_at_most {
            Some(ClusterCheck::OutOfStateAtMost(n))
        } else if let Some(n) = a.out_of_state_at_least {
            Some(ClusterCheck::OutOfStateAtLeast(n))
        } else if a.connections_synced {
            Some(ClusterCheck::ConnectionsSynced)
        } else if let Some(n) = a.holds_at_least {
            Some(ClusterCheck::Count(Counter::Holds, Bound::AtLeast, n))
        } else if let Some(n) = a.hold_timeouts_at_most {
            Some(ClusterCheck::Count(Counter::HoldTimeouts, Bound::AtMost, n))
        } else if let Some(n) = a.update_requests_at_least {
            Some(ClusterCheck::Count(
                Counter::UpdateRequests,
                Bound::AtLeast,
                n,
            ))
        } else if let Some(n) = a.update_requests_at_most {
            Some(ClusterCheck::Count(
                Counter::UpdateRequests,
                Bound::AtMost,
                n,
            ))
        } else if let Some(n) = a.updates_found_at_least {
            Some(ClusterCheck::Count(
                Counter::UpdatesFound,
                Bound::AtLeast,
                n,
            ))
        } else if let Some(n) = a.forwarded_at_least {
            Some(ClusterCheck::Count(Counter::Forwarded, Bound::AtLeast, n))
        } else if let Some(n) = a.forwarded_to_clients_at_least {
            Some(ClusterCheck::Count(
                Counter::ForwardedToClients,
                Bound::AtLeast,
                n,
            ))
        } else if let (Some(n), false) = (a.sync_lost_at_most, a.nodes.is_empty()) {
            Some(ClusterCheck::Count(Counter::SyncLost, Bound::AtMost, n))
        } else if let Some(n) = a.sync_link_switched_to_at_least {
            let l = a.sync_link.unwrap_or_default();
            Some(ClusterCheck::Count(
                Counter::SwitchedTo(l),
                Bound::AtLeast,
                n,
            ))
        } else if let Some(n) = a.sync_link_records_at_least {
            let l = a.sync_link.unwrap_or_default();
            Some(ClusterCheck::Count(
                Counter::LinkRecords(l),
                Bound::AtLeast,
                n,
            ))
        } else {
            a.hold_p99_at_most.as_ref().map(|d| {
                ClusterCheck::HoldP99AtMost(crate::units::duration(d).unwrap_or(Duration::ZERO))
            })
        }
    }

    /// The assertion's line in the report, for the members named `who`.
    pub fn label(self, who: &str) -> String {
        match self {
            ClusterCheck::OutOfStateAtMost(n) => {
                format!("{who} drop at most {n} packet(s) as out of state")
            }
            ClusterCheck::OutOfStateAtLeast(n) => {
                format!("{who} drop at least {n} packet(s) as out of state")
            }
            ClusterCheck::ConnectionsSynced => format!(
                "{who} each hold every connection the others hold (older than {SETTLE_SECS}s)"
            ),
            ClusterCheck::Count(c, Bound::AtLeast, n) => {
                format!("{who}: at least {n} {}", c.what())
            }
            ClusterCheck::Count(c, Bound::AtMost, n) => {
                format!("{who}: at most {n} {}", c.what())
            }
            ClusterCheck::HoldP99AtMost(d) => format!(
                "{who} hold first packets (Flush-and-Ack) {} or less at the 99th percentile",
                crate::units::secs(d)
            ),
        }
    }

    /// The verdict at the end of the run over `members` (gateway node indices).
    pub fn decide(self, world: &World, members: &[usize]) -> Verdict {
        match self {
            ClusterCheck::OutOfStateAtMost(n) | ClusterCheck::OutOfStateAtLeast(n) => {
                let per: Vec<(String, u64)> = members
                    .iter()
                    .map(|&m| (world.nodes[m].name.clone(), out_of_state(world, m)))
                    .collect();
                let total: u64 = per.iter().map(|(_, c)| c).sum();
                let text = format!(
                    "{total} dropped ({})",
                    per.iter()
                        .map(|(name, c)| format!("{name} {c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let ok = match self {
                    ClusterCheck::OutOfStateAtMost(_) => total <= n,
                    _ => total >= n,
                };
                if ok {
                    Verdict::Pass(text)
                } else {
                    Verdict::Fail(text)
                }
            }
            ClusterCheck::ConnectionsSynced => connections_synced(world, members),
            ClusterCheck::Count(counter, bound, n) => {
                let per: Vec<(String, Option<u64>)> = members
                    .iter()
                    .map(|&m| (world.nodes[m].name.clone(), counter.read(world, m)))
                    .collect();
                let total: u64 = per.iter().filter_map(|(_, c)| *c).sum();
                let text = format!(
                    "{total} ({})",
                    per.iter()
                        .map(|(name, c)| match c {
                            Some(c) => format!("{name} {c}"),
                            None => format!("{name} -"),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let counted = per.iter().any(|(_, c)| c.is_some());
                let ok = counted
                    && match bound {
                        Bound::AtLeast => total >= n,
                        Bound::AtMost => total <= n,
                    };
                if ok {
                    Verdict::Pass(text)
                } else {
                    Verdict::Fail(text)
                }
            }
            ClusterCheck::HoldP99AtMost(limit) => hold_p99(world, members, limit),
        }
    }
}

/// The largest of the members' 99th-percentile hold times against `limit` (each member's
/// p50 and p99 in the verdict).
fn hold_p99(world: &World, members: &[usize], limit: Duration) -> Verdict {
    let mut worst = None;
    let mut parts = Vec::new();
    for &m in members {
        let name = &world.nodes[m].name;
        let Some(h) = sync_stats(world, m)
            .and_then(|s| s.flush_ack)
            .map(|f| f.hold_time)
        else {
            parts.push(format!("{name} -"));
            continue;
        };
        match (h.quantile_us(0.5), h.quantile_us(0.99)) {
            (Some(p50), Some(p99)) => {
                let p99 = Duration::from_micros(p99);
                worst = Some(worst.map_or(p99, |w: Duration| w.max(p99)));
                parts.push(format!(
                    "{name} p50 {} p99 {} of {}",
                    crate::units::short(Duration::from_micros(p50)),
                    crate::units::short(p99),
                    h.count
                ));
            }
            _ => parts.push(format!("{name} none held")),
        }
    }
    let text = parts.join(", ");
    match worst {
        Some(w) if w <= limit => Verdict::Pass(text),
        Some(_) => Verdict::Fail(text),
        None => Verdict::Fail(format!("no hold measured: {text}")),
    }
}

fn sync_stats(world: &World, m: usize) -> Option<SyncStats> {
    match &world.nodes[m].kind {
        Kind::Gateway(gw) => gw.cluster_status(world.base, world.now).map(|(_, s)| s),
        _ => None,
    }
}

/// Packets member `m` dropped as out of state over the whole run (before a crash included).
pub(crate) fn out_of_state(world: &World, m: usize) -> u64 {
    match &world.nodes[m].kind {
        Kind::Gateway(gw) => {
            gw.retired.out_of_state
                + gw.engine
                    .as_ref()
                    .map_or(0, |e| e.conn_stats().dropped_out_of_state)
        }
        _ => 0,
    }
}

/// Every running member's connection ids, and those old enough to be required elsewhere.
fn tables(world: &World, members: &[usize]) -> Vec<(String, BTreeSet<String>, BTreeSet<String>)> {
    let now = world.base + world.now;
    members
        .iter()
        .filter_map(|&m| {
            let Kind::Gateway(gw) = &world.nodes[m].kind else {
                return None;
            };
            let list = gw.engine.as_ref()?.conn_list(now, usize::MAX);
            let all = list.connections.iter().map(|c| c.id.clone()).collect();
            let settled = list
                .connections
                .iter()
                .filter(|c| c.age_secs >= SETTLE_SECS)
                .map(|c| c.id.clone())
                .collect();
            Some((world.nodes[m].name.clone(), all, settled))
        })
        .collect()
}

fn connections_synced(world: &World, members: &[usize]) -> Verdict {
    let tables = tables(world, members);
    if tables.len() < 2 {
        return Verdict::Fail(format!(
            "{} member(s) running: nothing to compare",
            tables.len()
        ));
    }
    let mut missing = Vec::new();
    for (have, _, settled) in &tables {
        for (lacks, all, _) in &tables {
            if have == lacks {
                continue;
            }
            let gone: Vec<&String> = settled.difference(all).collect();
            if let Some(first) = gone.first() {
                missing.push(format!(
                    "{lacks} lacks {} of {have}'s connections (first {first})",
                    gone.len()
                ));
            }
        }
    }
    if missing.is_empty() {
        let sizes: Vec<String> = tables
            .iter()
            .map(|(name, all, _)| format!("{name} {}", all.len()))
            .collect();
        Verdict::Pass(format!("connections: {}", sizes.join(", ")))
    } else {
        Verdict::Fail(missing.join("; "))
    }
}
