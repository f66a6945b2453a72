//! The connection table: a slab of entries and an open-addressing index over both keys of
//! every entry.
//!
//! Invariants:
//! - `slots.len()` is a power of two at least four times `capacity`, so with two keys per entry
//!   the load factor stays at or below one half and every probe sequence ends at an empty slot.
//! - A slot is 0 (empty) or `hash_low32 << 32 | (entry << 1 | which) + 1`; `which` 0 is the
//!   originator's key, 1 the responder's. Linear probing with backward-shift deletion: no
//!   tombstones, so lookups never slow down with churn.
//! - `entries` and `free` are allocated once at `capacity`: inserts never allocate.

use crate::conn::Connection;
use crate::tuple::{FlowTuple, Side};

/// Which key of an entry matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// `(init_side, orig)`: a packet from the originator.
    Orig,
    /// `(other side, xlat.reverse())`: a packet from the responder.
    Reply,
}

pub struct Table {
    seed: u64,
    capacity: usize,
    mask: usize,
    slots: Vec<u64>,
    entries: Vec<Option<Connection>>,
    free: Vec<u32>,
    len: usize,
}

/// The key of an entry for `which`.
#[inline]
pub fn key_of(c: &Connection, which: Which) -> (Side, FlowTuple) {
    match which {
        Which::Orig => (c.init_side, c.orig),
        Which::Reply => (c.init_side.other(), c.xlat.reverse()),
    }
}

impl Table {
    /// A table for at most `capacity` connections (at least 1, at most 2^30).
    pub fn new(capacity: usize, seed: u64) -> Table {
        let capacity = capacity.clamp(1, 1 << 30);
        let slots = (capacity * 4).next_power_of_two().max(16);
        Table {
            seed,
            capacity,
            mask: slots - 1,
            // Zeroed memory: the kernel hands out untouched pages lazily.
            slots: vec![0; slots],
            entries: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
            len: 0,
        }
    }

    /// The hash seed (a rebuilt table keeps it).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn is_full(&self) -> bool {
        self.len >= self.capacity
    }

    /// Bytes of memory the table reserves per connection of capacity.
    pub fn bytes_per_entry(&self) -> usize {
        (self.slots.len() * 8
            + self.entries.capacity() * std::mem::size_of::<Option<Connection>>()
            + self.free.capacity() * 4)
            / self.capacity
    }

    #[inline]
    fn hash(&self, side: Side, t: &FlowTuple) -> u64 {
        t.hash(side, self.seed)
    }

    /// The entry `(side, tuple)` belongs to.
    #[inline]
    pub fn find(&self, side: Side, t: &FlowTuple) -> Option<(u32, Which)> {
        let h = self.hash(side, t);
        let tag = h & 0xffff_ffff;
        let mut i = (h as usize) & self.mask;
        loop {
            let s = self.slots[i];
            if s == 0 {
                return None;
            }
            if s >> 32 == tag {
                let v = (s & 0xffff_ffff) as u32 - 1;
                let (idx, which) = (
                    v >> 1,
                    if v & 1 == 0 {
                        Which::Orig
                    } else {
                        Which::Reply
                    },
                );
                if let Some(Some(c)) = self.entries.get(idx as usize) {
                    let (ks, kt) = key_of(c, which);
                    if ks == side && kt == *t {
                        return Some((idx, which));
                    }
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    pub fn get(&self, idx: u32) -> Option<&Connection> {
        self.entries.get(idx as usize)?.as_ref()
    }

    pub fn get_mut(&mut self, idx: u32) -> Option<&mut Connection> {
        self.entries.get_mut(idx as usize)?.as_mut()
    }

    /// Whether either key of `c` is taken.
    pub fn conflicts(&self, c: &Connection) -> bool {
        let (s, t) = key_of(c, Which::Orig);
        let (rs, rt) = key_of(c, Which::Reply);
        self.find(s, &t).is_some() || self.find(rs, &rt).is_some()
    }

    /// Inserts `c`; `None` when full or when one of its keys is taken.
    pub fn insert(&mut self, c: Connection) -> Option<u32> {
        if self.is_full() || self.conflicts(&c) {
            return None;
        }
        let idx = match self.free.pop() {
            Some(i) => {
                self.entries[i as usize] = Some(c);
                i
            }
            None => {
                self.entries.push(Some(c));
                (self.entries.len() - 1) as u32
            }
        };
        self.len += 1;
        for which in [Which::Orig, Which::Reply] {
            let (s, t) = key_of(&c, which);
            let h = self.hash(s, &t);
            let v = u64::from(idx) << 1 | u64::from(which == Which::Reply);
            let slot = (h & 0xffff_ffff) << 32 | (v + 1);
            let mut i = (h as usize) & self.mask;
            while self.slots[i] != 0 {
                i = (i + 1) & self.mask;
            }
            self.slots[i] = slot;
        }
        Some(idx)
    }

    /// Removes entry `idx` and returns it.
    pub fn remove(&mut self, idx: u32) -> Option<Connection> {
        let c = self.entries.get_mut(idx as usize)?.take()?;
        for which in [Which::Orig, Which::Reply] {
            let (s, t) = key_of(&c, which);
            let h = self.hash(s, &t);
            let v = u64::from(idx) << 1 | u64::from(which == Which::Reply);
            let want = (h & 0xffff_ffff) << 32 | (v + 1);
            let mut i = (h as usize) & self.mask;
            while self.slots[i] != want {
                if self.slots[i] == 0 {
                    break; // not indexed (cannot happen); nothing to remove
                }
                i = (i + 1) & self.mask;
            }
            if self.slots[i] == want {
                self.delete_slot(i);
            }
        }
        self.free.push(idx);
        self.len -= 1;
        Some(c)
    }

    /// Backward-shift deletion of slot `hole`.
    fn delete_slot(&mut self, mut hole: usize) {
        let mut j = hole;
        loop {
            j = (j + 1) & self.mask;
            let s = self.slots[j];
            if s == 0 {
                break;
            }
            let home = (s >> 32) as usize & self.mask;
            // Move `s` into the hole unless its home lies cyclically in (hole, j].
            if (j.wrapping_sub(home) & self.mask) >= (j.wrapping_sub(hole) & self.mask) {
                self.slots[hole] = s;
                hole = j;
            }
        }
        self.slots[hole] = 0;
    }

    /// Slab positions (including free ones) for sweeping: `0..slab_len()`.
    pub fn slab_len(&self) -> usize {
        self.entries.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &Connection)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i as u32, c)))
    }
}
