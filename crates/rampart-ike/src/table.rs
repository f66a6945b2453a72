//! The IKE SAs of an engine and the timer heap over them.
//!
//! [`SaTable`] records every SA that was handed out mutably (or inserted, removed) since the last
//! [`Ike::refresh_timers`]; the refresh recomputes just those SAs' deadlines. [`TimerQueue`] keeps
//! one deadline per SA: a min-heap of `(deadline, SA)` with lazy invalidation, i.e. an entry counts
//! only while it equals the SA's current deadline in `current`; stale entries are skipped and
//! dropped when they reach the top. Invariant after every public entry point of [`Ike`]: the top
//! of the heap is valid, so [`Ike::poll_timeout`] is a peek.

use std::cmp::Reverse;
use std::collections::{btree_map, BTreeMap, BinaryHeap, HashMap};
use std::time::Instant;

use crate::config::IkeSaId;
use crate::engine::Ike;
use crate::sa::IkeSa;

/// The IKE SAs by id, with change tracking for the timer heap.
#[derive(Default)]
pub(crate) struct SaTable {
    map: BTreeMap<IkeSaId, IkeSa>,
    /// Handed out mutably, inserted or removed since the last refresh.
    touched: Vec<IkeSaId>,
    /// `values_mut` was used: every SA may have changed.
    all_touched: bool,
}

impl SaTable {
    pub(crate) fn get(&self, id: &IkeSaId) -> Option<&IkeSa> {
        self.map.get(id)
    }

    pub(crate) fn get_mut(&mut self, id: &IkeSaId) -> Option<&mut IkeSa> {
        let sa = self.map.get_mut(id)?;
        self.touched.push(*id);
        Some(sa)
    }

    pub(crate) fn insert(&mut self, id: IkeSaId, sa: IkeSa) -> Option<IkeSa> {
        self.touched.push(id);
        self.map.insert(id, sa)
    }

    pub(crate) fn remove(&mut self, id: &IkeSaId) -> Option<IkeSa> {
        self.touched.push(*id);
        self.map.remove(id)
    }

    pub(crate) fn contains_key(&self, id: &IkeSaId) -> bool {
        self.map.contains_key(id)
    }

    pub(crate) fn keys(&self) -> btree_map::Keys<'_, IkeSaId, IkeSa> {
        self.map.keys()
    }

    pub(crate) fn values(&self) -> btree_map::Values<'_, IkeSaId, IkeSa> {
        self.map.values()
    }

    /// Marks every SA for a deadline refresh (a setting they all read changed).
    pub(crate) fn touch_all(&mut self) {
        self.all_touched = true;
    }

    pub(crate) fn values_mut(&mut self) -> btree_map::ValuesMut<'_, IkeSaId, IkeSa> {
        self.all_touched = true;
        self.map.values_mut()
    }
}

/// One deadline per IKE SA in a min-heap with lazy invalidation.
#[derive(Default)]
pub(crate) struct TimerQueue {
    heap: BinaryHeap<Reverse<(Instant, IkeSaId)>>,
    /// The deadline each SA currently has; a heap entry that differs is stale.
    current: HashMap<IkeSaId, Instant>,
}

impl TimerQueue {
    /// Records `id`'s deadline (`None`: no timer).
    fn set(&mut self, id: IkeSaId, at: Option<Instant>) {
        match at {
            Some(t) => {
                if self.current.insert(id, t) != Some(t) {
                    self.heap.push(Reverse((t, id)));
                }
            }
            None => {
                self.current.remove(&id);
            }
        }
    }

    fn is_live(&self, t: Instant, id: IkeSaId) -> bool {
        self.current.get(&id) == Some(&t)
    }

    /// Drops stale entries from the top.
    fn prune(&mut self) {
        while let Some(&Reverse((t, id))) = self.heap.peek() {
            if self.is_live(t, id) {
                return;
            }
            self.heap.pop();
        }
        // Rebuild when stale entries dominate, so the heap stays O(SAs).
        // In place: the buffer is reused, so this costs no allocation on the packet path.
        if self.heap.len() > 64 && self.heap.len() > 4 * self.current.len() {
            let mut entries = std::mem::take(&mut self.heap).into_vec();
            entries.clear();
            entries.extend(self.current.iter().map(|(&id, &t)| Reverse((t, id))));
            self.heap = BinaryHeap::from(entries);
        }
    }

    /// Earliest live deadline (valid after `prune`).
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// Removes and returns the SAs whose deadline is at or before `now`, earliest first.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Vec<IkeSaId> {
        let mut due = Vec::new();
        while let Some(&Reverse((t, id))) = self.heap.peek() {
            if t > now {
                break;
            }
            self.heap.pop();
            if self.is_live(t, id) {
                self.current.remove(&id);
                due.push(id);
            }
        }
        due
    }
}

impl Ike {
    /// The deadline of one SA's timers (retransmission, rekey, expiry, liveness, keepalive).
    pub(crate) fn sa_deadline(&self, sa: &IkeSa) -> Option<Instant> {
        let liveness = self
            .peers
            .get(sa.peer)
            .map(|p| p.liveness_interval)
            .unwrap_or_default();
        sa.next_timer(liveness, self.cfg.nat_keepalive)
    }

    /// Recomputes the deadlines of the SAs changed since the last refresh. Every public `&mut`
    /// entry point ends with it.
    pub(crate) fn refresh_timers(&mut self) {
        let mut ids = std::mem::take(&mut self.sas.touched);
        if std::mem::take(&mut self.sas.all_touched) {
            ids.extend(self.sas.map.keys().copied());
        }
        ids.sort_unstable();
        ids.dedup();
        for &id in &ids {
            let at = self.sas.get(&id).and_then(|sa| self.sa_deadline(sa));
            self.timers.set(id, at);
            if self.tracker.enabled {
                self.tracker.observe(id, self.sas.get(&id));
            }
        }
        // Hand the buffer back: data-plane calls (`child_traffic`) refresh on every batch and
        // must not allocate.
        ids.clear();
        self.sas.touched = ids;
        self.timers.prune();
    }

    /// The earliest deadline by scanning every SA (the heap's reference, for checks).
    pub(crate) fn scan_timeout(&self) -> Option<Instant> {
        self.sas
            .values()
            .filter_map(|sa| self.sa_deadline(sa))
            .min()
    }
}
