//! Assertions over the members of a cluster taken together (`nodes = [...]`, or one `node`):
//! packets dropped as out of state, whether every member holds every connection, the sync
//! counters. They are decided at the end of the run (a count can still grow before).
//!
//! A member that crashed keeps what its engine counted before the crash (the simulator reads
//! the counters it needs at the crash); a member not running at the end is left out of the
//! table comparison.

use std::collections::BTreeSet;

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
        } else {
            None
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
        }
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
