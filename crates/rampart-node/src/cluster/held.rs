//! The packets a Load Sharing member keeps while the cluster decides about them: a first
//! packet held for Flush-and-Ack, an orphan waiting for an update request's answer. The
//! cluster engine names them by [`PacketHandle`]; this pool owns the bytes and what to do
//! with them when they continue.
//!
//! Invariants:
//! - At most `capacity` packets are kept; the slot table is allocated once. A slot's buffer
//!   grows to the largest packet it kept and keeps that capacity when freed, so after warm-up
//!   keeping a packet copies it and allocates nothing.
//! - A handle names one keeping of one slot: the slot index in the low 32 bits, the slot's
//!   generation in the high 32. A stale or unknown handle finds nothing; every kept packet is
//!   taken out at most once.

use std::ops::Range;

use rampart_cluster::PacketHandle;

use crate::dataplane::Resume;

/// Largest packet a slot reserves room for on first use (a TUN MTU of 1500 plus headers
/// fits; a larger packet grows the slot once).
const SLOT_RESERVE: usize = 2048;

struct Slot {
    generation: u32,
    /// `Some` while the slot keeps a packet.
    resume: Option<Resume>,
    bytes: Vec<u8>,
}

/// See the module documentation.
pub(crate) struct HeldPool {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

impl HeldPool {
    pub fn new(capacity: usize) -> HeldPool {
        let capacity = capacity.min(u32::MAX as usize);
        HeldPool {
            slots: (0..capacity)
                .map(|_| Slot {
                    generation: 0,
                    resume: None,
                    bytes: Vec::new(),
                })
                .collect(),
            // Popped from the end: slot 0 first.
            free: (0..capacity as u32).rev().collect(),
        }
    }

    /// Packets kept now.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Keeps a copy of `packet`; `None` when every slot is in use.
    pub fn keep(&mut self, packet: &[u8], resume: Resume) -> Option<PacketHandle> {
        let index = self.free.pop()?;
        let slot = &mut self.slots[index as usize];
        if slot.bytes.capacity() == 0 {
            slot.bytes.reserve(SLOT_RESERVE.max(packet.len()));
        }
        slot.bytes.clear();
        slot.bytes.extend_from_slice(packet);
        slot.resume = Some(resume);
        Some(PacketHandle(
            u64::from(slot.generation) << 32 | u64::from(index),
        ))
    }

    /// Takes the packet of `handle` out: copies it into `buf` at `headroom` with `tailroom`
    /// bytes after it (resizing `buf`, which the caller reuses) and frees the slot. Returns
    /// what to do with it and where it lies in `buf`; `None` for a stale or unknown handle.
    pub fn take_into(
        &mut self,
        handle: PacketHandle,
        buf: &mut Vec<u8>,
        headroom: usize,
        tailroom: usize,
    ) -> Option<(Resume, Range<usize>)> {
        let (index, slot) = self.slot_of(handle)?;
        let resume = slot.resume.take()?;
        let len = slot.bytes.len();
        buf.clear();
        buf.resize(headroom + len + tailroom, 0);
        buf[headroom..headroom + len].copy_from_slice(&slot.bytes);
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index);
        Some((resume, headroom..headroom + len))
    }

    /// Frees the slot of `handle` without looking at the packet (dropped); false for a stale
    /// or unknown handle.
    pub fn discard(&mut self, handle: PacketHandle) -> bool {
        let Some((index, slot)) = self.slot_of(handle) else {
            return false;
        };
        if slot.resume.take().is_none() {
            return false;
        }
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index);
        true
    }

    fn slot_of(&mut self, handle: PacketHandle) -> Option<(u32, &mut Slot)> {
        let index = (handle.0 & u64::from(u32::MAX)) as u32;
        let generation = (handle.0 >> 32) as u32;
        let slot = self.slots.get_mut(index as usize)?;
        (slot.generation == generation && slot.resume.is_some()).then_some((index, slot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_takes_once_and_refuses_when_full_or_stale() {
        let mut pool = HeldPool::new(2);
        let a = pool.keep(b"first", Resume::Seal).unwrap();
        let b = pool.keep(b"second", Resume::WriteTun).unwrap();
        assert_eq!(pool.len(), 2);
        assert!(pool.keep(b"third", Resume::Seal).is_none(), "full");

        let mut buf = Vec::new();
        let (resume, range) = pool.take_into(a, &mut buf, 8, 4).unwrap();
        assert_eq!(resume, Resume::Seal);
        assert_eq!(&buf[range.clone()], b"first");
        assert_eq!(buf.len(), 8 + 5 + 4);
        assert!(pool.take_into(a, &mut buf, 8, 4).is_none(), "taken once");

        // The freed slot is reused under a new generation: the old handle stays stale.
        let c = pool.keep(b"fourth", Resume::InspectInside).unwrap();
        assert_ne!(c, a);
        assert!(!pool.discard(a));
        assert!(pool.discard(c));
        let (resume, range) = pool.take_into(b, &mut buf, 0, 0).unwrap();
        assert_eq!((resume, &buf[range]), (Resume::WriteTun, &b"second"[..]));
        assert_eq!(pool.len(), 0);
        assert!(pool.take_into(PacketHandle(99), &mut buf, 0, 0).is_none());
    }

    #[test]
    fn a_warm_slot_keeps_its_buffer() {
        let mut pool = HeldPool::new(1);
        let h = pool.keep(&[7u8; 100], Resume::Seal).unwrap();
        let cap = pool.slots[0].bytes.capacity();
        assert!(cap >= SLOT_RESERVE);
        assert!(pool.discard(h));
        pool.keep(&[9u8; 1400], Resume::Seal).unwrap();
        assert_eq!(pool.slots[0].bytes.capacity(), cap);
    }
}
