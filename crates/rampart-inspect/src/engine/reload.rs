//! Live policy swap: [`Inspector::set_policy`] replaces the rule base, objects, services, NAT
//! rules, timeouts and capacity at once and decides what happens to existing connections.

use std::time::Instant;

use crate::conn::{Change, NO_RULE, NO_SERVICE};
use crate::log::LogRecord;
use crate::nat::Nat;
use crate::policy::{InspectPolicy, RuleAction};
use crate::rules::RuleBase;
use crate::table::Table;

use super::{timeouts_ms, Inspector};

/// What [`Inspector::set_policy`] did to the connection table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicySwap {
    /// Connections that continue under the new policy.
    pub kept: usize,
    /// Connections removed: the new rule base drops or rejects their first packet, or (rare)
    /// they no longer fit (smaller capacity, or a hide port claimed twice by the new NAT rules).
    pub dropped: usize,
}

/// The name the node and the plan use for the same report.
pub type ReloadOutcome = PolicySwap;

impl Inspector {
    /// Swaps the whole policy atomically (between two packets: there is no moment with half
    /// of it). Existing connections keep their decision unless the new rule base would drop
    /// or reject their first packet now: each entry's original tuple is decided again, kept
    /// entries take the index of the rule (and service) that accepts them now, the others
    /// are removed (a `Deleted` change each) and counted.
    ///
    /// NAT: kept connections keep their translation until they end, whatever the new `[[nat]]`
    /// rules say; their hide ports stay reserved under the new hide rule with the same address
    /// (looked up by name first) so they are not handed out twice, and a connection whose rule
    /// is gone shows it as removed. New connections are translated by the new rules only.
    /// Timeouts apply from each connection's next packet on; a smaller capacity keeps the
    /// oldest connections. Connections already expired at `now` are removed as expired (not
    /// counted in the report).
    pub fn set_policy(&mut self, now: Instant, policy: InspectPolicy) -> PolicySwap {
        let now_ms = self.now_ms(now);
        let mut swap = PolicySwap::default();
        let timeouts = timeouts_ms(&policy.timeouts);
        let capacity = policy.capacity as usize;
        let nat_rules = policy.nat.clone();
        let rules = RuleBase::new(policy);

        // 1. Decide every connection again under the new rule base.
        let mut gone = Vec::new();
        let mut expired = Vec::new();
        let mut keep = Vec::new();
        for (idx, c) in self.table.iter() {
            if c.expires_ms <= now_ms {
                expired.push(idx);
                continue;
            }
            let d = rules.decide_tuple(&c.orig);
            if d.action == RuleAction::Accept {
                keep.push((idx, d.rule, d.service));
            } else {
                gone.push(idx);
            }
        }
        for idx in expired {
            self.remove(idx);
            self.stats.expired += 1;
        }
        for idx in gone {
            self.remove(idx);
            swap.dropped += 1;
        }
        for (idx, rule, service) in keep {
            if let Some(c) = self.table.get_mut(idx) {
                (c.rule, c.service) = if rules.is_empty() {
                    (NO_RULE, NO_SERVICE)
                } else {
                    (rule, service)
                };
            }
        }

        // 2. The new NAT takes over the allocations of the kept connections.
        let old_nat = std::mem::replace(&mut self.nat, Nat::new(nat_rules));
        let mut clash = Vec::new();
        let indices: Vec<u32> = self.table.iter().map(|(idx, _)| idx).collect();
        for idx in indices {
            let Some(c) = self.table.get_mut(idx) else {
                continue;
            };
            let name = old_nat.name_of(c.nat.rule);
            if self.nat.adopt(&mut c.nat, &c.xlat, name).is_err() {
                clash.push(idx);
            }
        }
        for idx in clash {
            // The port belongs to the connection that reserved it first: remove without release.
            if let Some(c) = self.table.remove(idx) {
                self.deleted(&c);
                swap.dropped += 1;
            }
        }
        self.rules = rules;
        self.timeouts_ms = timeouts;

        // 3. Another capacity: a new table, oldest connections first.
        if capacity.clamp(1, 1 << 30) != self.table.capacity() {
            let fresh = Table::new(capacity, self.table.seed());
            let old = std::mem::replace(&mut self.table, fresh);
            let mut all: Vec<_> = old.iter().map(|(_, c)| *c).collect();
            all.sort_unstable_by_key(|c| (c.created_ms, c.id));
            for c in all {
                if self.table.insert(c).is_none() {
                    self.nat.release(c.nat, &c.xlat);
                    self.deleted(&c);
                    swap.dropped += 1;
                }
            }
            self.sweep_cursor = 0;
        }
        swap.kept = self.table.len();
        self.logs.push_back(LogRecord {
            warn: false,
            message: format!(
                "inspection policy replaced: {} connections kept, {} removed",
                swap.kept, swap.dropped
            ),
        });
        swap
    }

    fn deleted(&mut self, c: &crate::Connection) {
        self.push_change(Change::Deleted {
            id: c.id,
            init_side: c.init_side,
            orig: c.orig,
        });
    }
}
