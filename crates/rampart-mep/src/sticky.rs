//! Connection -> entry point bindings ("sticky" resolutions): bounded, idle-expiring.
//!
//! Bindings live in a slab (`slots`) indexed by a hash map from [`FlowKey`]; freed slots are
//! reused. Expiry is swept incrementally: each [`StickyTable::sweep`] examines a bounded
//! number of slots from a cursor, sized so one full pass takes at most half the idle time.
//! A binding idle longer than `idle` is also treated as gone by [`StickyTable::lookup`], so
//! expiry is exact whatever the sweep's progress.
//!
//! Invariants: `map.len() <= capacity`; `map` and the live slots hold the same keys; the
//! per-entry-point and per-group counts equal the live bindings of each; looking up and
//! refreshing a binding never allocates.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::config::{EntryPointId, GroupId, StickySettings};
use crate::engine::{FlowKey, Level};

/// Longest pause between two sweep steps.
const MAX_SWEEP_TICK: Duration = Duration::from_secs(1);
/// Shortest pause between two sweep steps.
const MIN_SWEEP_TICK: Duration = Duration::from_millis(10);
/// Fewest slots a sweep step examines.
const MIN_SWEEP_BUDGET: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Slot {
    key: FlowKey,
    group: GroupId,
    entry_point: EntryPointId,
    level: Level,
    last_used: Instant,
    live: bool,
}

/// A live binding, as [`StickyTable::lookup`] returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Binding {
    pub group: GroupId,
    pub entry_point: EntryPointId,
    /// The level the entry point had when the binding was made.
    pub level: Level,
}

/// What [`StickyTable::bind`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    /// A new binding.
    Created,
    /// The flow's binding now points elsewhere.
    Moved,
    /// The table is full: not bound.
    Full,
}

#[derive(Debug)]
pub(crate) struct StickyTable {
    map: HashMap<FlowKey, u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    capacity: usize,
    idle: Duration,
    tick: Duration,
    cursor: usize,
    next_sweep: Option<Instant>,
    per_entry_point: Vec<u64>,
    per_group: Vec<u64>,
}

impl StickyTable {
    pub(crate) fn new(settings: &StickySettings, entry_points: usize, groups: usize) -> Self {
        let tick = (settings.idle / 16).clamp(MIN_SWEEP_TICK, MAX_SWEEP_TICK);
        StickyTable {
            map: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            capacity: settings.capacity,
            idle: settings.idle,
            tick,
            cursor: 0,
            next_sweep: None,
            per_entry_point: vec![0; entry_points],
            per_group: vec![0; groups],
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }

    /// The live binding of `key`, refreshed to `now`; `None` when there is none or it was
    /// idle too long (then it is removed). Never allocates.
    pub(crate) fn lookup(&mut self, now: Instant, key: &FlowKey) -> Option<Binding> {
        let &i = self.map.get(key)?;
        let slot = &mut self.slots[i as usize];
        if now.saturating_duration_since(slot.last_used) >= self.idle {
            self.remove(i);
            return None;
        }
        slot.last_used = now;
        Some(Binding {
            group: slot.group,
            entry_point: slot.entry_point,
            level: slot.level,
        })
    }

    /// Binds `key` to `entry_point` (replacing its binding if it has one).
    pub(crate) fn bind(
        &mut self,
        now: Instant,
        key: &FlowKey,
        group: GroupId,
        entry_point: EntryPointId,
        level: Level,
    ) -> Bound {
        if let Some(&i) = self.map.get(key) {
            let slot = &mut self.slots[i as usize];
            self.per_entry_point[slot.entry_point.0 as usize] -= 1;
            self.per_group[slot.group.0 as usize] -= 1;
            slot.group = group;
            slot.entry_point = entry_point;
            slot.level = level;
            slot.last_used = now;
            self.per_entry_point[entry_point.0 as usize] += 1;
            self.per_group[group.0 as usize] += 1;
            return Bound::Moved;
        }
        if self.map.len() >= self.capacity {
            return Bound::Full;
        }
        let slot = Slot {
            key: *key,
            group,
            entry_point,
            level,
            last_used: now,
            live: true,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.map.insert(*key, i);
        self.per_entry_point[entry_point.0 as usize] += 1;
        self.per_group[group.0 as usize] += 1;
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now + self.tick);
        }
        Bound::Created
    }

    /// Refreshes the binding of `key` (it exists) to `now`.
    #[cfg(test)]
    fn touch(&mut self, now: Instant, key: &FlowKey) {
        if let Some(&i) = self.map.get(key) {
            self.slots[i as usize].last_used = now;
        }
    }

    fn remove(&mut self, i: u32) {
        let slot = &mut self.slots[i as usize];
        debug_assert!(slot.live);
        slot.live = false;
        self.map.remove(&slot.key);
        self.per_entry_point[slot.entry_point.0 as usize] -= 1;
        self.per_group[slot.group.0 as usize] -= 1;
        self.free.push(i);
    }

    /// When the next sweep step is due (`None`: the table is empty).
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.next_sweep
    }

    /// One incremental sweep step if due: examines a bounded number of slots and drops the
    /// bindings idle for `idle` or longer.
    pub(crate) fn sweep(&mut self, now: Instant) {
        match self.next_sweep {
            Some(t) if t <= now => {}
            _ => return,
        }
        let ticks_per_pass = ((self.idle / 2).as_nanos() / self.tick.as_nanos()).max(1) as usize;
        let budget = self
            .slots
            .len()
            .div_ceil(ticks_per_pass)
            .max(MIN_SWEEP_BUDGET);
        for _ in 0..budget.min(self.slots.len()) {
            if self.cursor >= self.slots.len() {
                self.cursor = 0;
            }
            let i = self.cursor;
            self.cursor += 1;
            let slot = &self.slots[i];
            if slot.live && now.saturating_duration_since(slot.last_used) >= self.idle {
                self.remove(i as u32);
            }
        }
        self.next_sweep = if self.map.is_empty() {
            None
        } else {
            Some(now + self.tick)
        };
    }

    pub(crate) fn count_entry_point(&self, entry_point: EntryPointId) -> u64 {
        self.per_entry_point[entry_point.0 as usize]
    }

    pub(crate) fn count_group(&self, group: GroupId) -> u64 {
        self.per_group[group.0 as usize]
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    fn flow(n: u32) -> FlowKey {
        FlowKey {
            src: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1)),
            protocol: 6,
            src_port: 40000,
            dst_port: 443,
        }
    }

    fn table(capacity: usize, idle_s: u64) -> StickyTable {
        StickyTable::new(
            &StickySettings {
                capacity,
                idle: Duration::from_secs(idle_s),
            },
            3,
            2,
        )
    }

    const G: GroupId = GroupId(0);
    const A: EntryPointId = EntryPointId(0);
    const B: EntryPointId = EntryPointId(1);
    const P: Level = Level::Primary;

    #[test]
    fn bind_lookup_move_and_counts() {
        let t0 = Instant::now();
        let mut t = table(10, 60);
        assert_eq!(t.lookup(t0, &flow(1)), None);
        assert_eq!(t.bind(t0, &flow(1), G, A, P), Bound::Created);
        assert_eq!(t.bind(t0, &flow(2), G, A, P), Bound::Created);
        assert_eq!(
            t.lookup(t0, &flow(1)),
            Some(Binding {
                group: G,
                entry_point: A,
                level: P,
            })
        );
        assert_eq!(t.count_entry_point(A), 2);
        assert_eq!(t.count_group(G), 2);
        assert_eq!(t.bind(t0, &flow(1), G, B, P), Bound::Moved);
        assert_eq!(t.count_entry_point(A), 1);
        assert_eq!(t.count_entry_point(B), 1);
        assert_eq!(t.count_group(G), 2);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn capacity_refuses_new_bindings_but_moves_existing() {
        let t0 = Instant::now();
        let mut t = table(2, 60);
        assert_eq!(t.bind(t0, &flow(1), G, A, P), Bound::Created);
        assert_eq!(t.bind(t0, &flow(2), G, A, P), Bound::Created);
        assert_eq!(t.bind(t0, &flow(3), G, A, P), Bound::Full);
        assert_eq!(t.lookup(t0, &flow(3)), None);
        assert_eq!(t.bind(t0, &flow(2), G, B, P), Bound::Moved);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn idle_binding_is_gone_on_lookup_and_frees_room() {
        let t0 = Instant::now();
        let mut t = table(1, 10);
        t.bind(t0, &flow(1), G, A, P);
        // Used at 9 s: refreshed, lives until 19 s.
        assert!(t.lookup(t0 + Duration::from_secs(9), &flow(1)).is_some());
        assert!(t.lookup(t0 + Duration::from_secs(18), &flow(1)).is_some());
        assert_eq!(t.lookup(t0 + Duration::from_secs(28), &flow(1)), None);
        assert_eq!(t.len(), 0);
        assert_eq!(t.count_entry_point(A), 0);
        assert_eq!(
            t.bind(t0 + Duration::from_secs(28), &flow(2), G, B, P),
            Bound::Created
        );
    }

    #[test]
    fn incremental_sweep_expires_everything_within_idle_and_keeps_used_ones() {
        let t0 = Instant::now();
        let mut t = table(10_000, 16);
        for n in 0..5000 {
            t.bind(t0, &flow(n), G, A, P);
        }
        // Flow 0 keeps being used; run the sweep as the engine does (at poll_timeout).
        let mut now = t0;
        let end = t0 + Duration::from_secs(16 + 8 + 1);
        let mut steps = 0;
        while let Some(next) = t.poll_timeout() {
            if next > end {
                break;
            }
            now = next;
            t.touch(now, &flow(0));
            let before = t.len();
            t.sweep(now);
            // Bounded work per step.
            assert!(before - t.len() <= 5000usize.div_ceil(8).max(MIN_SWEEP_BUDGET));
            steps += 1;
        }
        assert!(steps > 0);
        assert!(now <= end);
        assert_eq!(t.len(), 1, "only the used flow is left");
        assert!(t.lookup(now, &flow(0)).is_some());
        assert_eq!(t.count_entry_point(A), 1);
        assert_eq!(t.count_group(G), 1);
    }

    #[test]
    fn sweep_stops_when_empty_and_restarts_on_bind() {
        let t0 = Instant::now();
        let mut t = table(10, 1);
        assert_eq!(t.poll_timeout(), None);
        t.bind(t0, &flow(1), G, A, P);
        let mut now = t0;
        while let Some(next) = t.poll_timeout() {
            now = next;
            t.sweep(now);
            assert!(now < t0 + Duration::from_secs(3));
        }
        assert_eq!(t.len(), 0);
        t.bind(now, &flow(2), G, A, P);
        assert!(t.poll_timeout().is_some());
        // Slot reused: no growth.
        assert_eq!(t.slots.len(), 1);
    }
}
