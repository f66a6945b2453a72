//! Anti-replay window (RFC 4303 3.4.3) and ESN reconstruction (RFC 4303 Appendix A).

/// Default window, in packets.
pub const DEFAULT_REPLAY_WINDOW: u32 = 1024;
/// Largest window we accept, in packets.
pub const MAX_REPLAY_WINDOW: u32 = 65536;

/// Window used only to infer the ESN high bits when anti-replay is off: the 64-bit value
/// closest to the highest sequence number seen is chosen.
const INFERENCE_WINDOW_WHEN_OFF: u64 = 1 << 31;

/// One 64-bit word of the bitmap and the block of 64 sequence numbers it currently describes.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    block: u64,
    bits: u64,
}

/// Sliding window over the last `size` sequence numbers, ending at `top`.
///
/// Invariants:
/// - `top` is the highest *authenticated* sequence number (0 before the first packet);
/// - sequence number `s` with `top - size < s <= top` was received iff its bit is set in the
///   slot `(s / 64) % slots.len()` *and* that slot's `block == s / 64`; a slot holding another
///   block is stale and reads as all zeros. With `slots.len() == size / 64 + 1` the blocks that
///   intersect the window map to distinct slots, so a slot is never shared inside the window.
/// - Both `check` and `commit` touch one slot: O(1) per packet, no clearing on a slide.
#[derive(Debug, Clone)]
pub(crate) struct ReplayWindow {
    top: u64,
    /// Window size in packets; 0 = anti-replay off (only `top` is tracked, for ESN).
    size: u64,
    slots: Box<[Slot]>,
}

/// Why `check` refused a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplayVerdict {
    Duplicate,
    TooOld,
}

impl ReplayWindow {
    /// `size` must be 0 or a multiple of 64 up to [`MAX_REPLAY_WINDOW`].
    pub(crate) fn new(size: u32) -> Option<ReplayWindow> {
        if !size.is_multiple_of(64) || size > MAX_REPLAY_WINDOW {
            return None;
        }
        let n = if size == 0 { 0 } else { size as usize / 64 + 1 };
        Some(ReplayWindow {
            top: 0,
            size: u64::from(size),
            slots: vec![Slot::default(); n].into_boxed_slice(),
        })
    }

    pub(crate) fn top(&self) -> u64 {
        self.top
    }

    /// Is `seq` acceptable (not seen, not too old)? Does not change anything.
    pub(crate) fn check(&self, seq: u64) -> Result<(), ReplayVerdict> {
        if self.size == 0 || seq > self.top {
            return Ok(());
        }
        if self.top - seq >= self.size {
            return Err(ReplayVerdict::TooOld);
        }
        let (slot, bit) = self.locate(seq);
        let s = &self.slots[slot];
        if s.block == seq / 64 && s.bits & bit != 0 {
            Err(ReplayVerdict::Duplicate)
        } else {
            Ok(())
        }
    }

    /// Records an authenticated `seq` that passed [`check`](Self::check).
    pub(crate) fn commit(&mut self, seq: u64) {
        if seq > self.top {
            self.top = seq;
        }
        if self.size == 0 {
            return;
        }
        let (slot, bit) = self.locate(seq);
        let s = &mut self.slots[slot];
        if s.block != seq / 64 {
            *s = Slot {
                block: seq / 64,
                bits: 0,
            };
        }
        s.bits |= bit;
    }

    fn locate(&self, seq: u64) -> (usize, u64) {
        // slots.len() > 0 whenever size > 0; the modulo keeps the index in range.
        (
            ((seq / 64) % self.slots.len() as u64) as usize,
            1u64 << (seq % 64),
        )
    }

    /// The full sequence number for the 32 low bits on the wire (RFC 4303 Appendix A3), or
    /// `None` if it would be 0 or fall outside the 64-bit space.
    pub(crate) fn infer(&self, seq_lo: u32, esn: bool) -> Option<u64> {
        let seq = if esn {
            let w = if self.size == 0 {
                INFERENCE_WINDOW_WHEN_OFF
            } else {
                self.size
            };
            infer_esn(self.top, w, seq_lo)?
        } else {
            u64::from(seq_lo)
        };
        (seq != 0).then_some(seq)
    }

    /// Whether `seq` is inside the window and was received.
    fn seen(&self, seq: u64) -> bool {
        self.size != 0
            && seq != 0
            && seq <= self.top
            && self.top - seq < self.size
            && self.check(seq) == Err(ReplayVerdict::Duplicate)
    }

    /// The window as bitmap words relative to the top: bit `b` of word `w` set means
    /// `top - (64 * w + b)` was received. `size / 64` words (none with anti-replay off).
    pub(crate) fn export_bits(&self) -> Vec<u64> {
        let words = (self.size / 64) as usize;
        let mut out = vec![0u64; words];
        for (w, word) in out.iter_mut().enumerate() {
            for b in 0..64u64 {
                let off = w as u64 * 64 + b;
                if off <= self.top && self.seen(self.top - off) {
                    *word |= 1 << b;
                }
            }
        }
        out
    }

    /// Merges a window exported by [`Self::export_bits`] with top `top`: the top becomes the
    /// larger one and every number either window saw (and that is still inside this window)
    /// counts as seen, so a merge never makes a replay acceptable.
    pub(crate) fn import_bits(&mut self, top: u64, bits: &[u64]) {
        self.top = self.top.max(top);
        if self.size == 0 {
            return;
        }
        for (w, &word) in bits.iter().enumerate() {
            if word == 0 {
                continue;
            }
            for b in 0..64u64 {
                let Some(seq) = top.checked_sub(w as u64 * 64 + b) else {
                    break;
                };
                if word & (1 << b) != 0 && seq != 0 && self.top - seq < self.size {
                    self.commit(seq);
                }
            }
        }
        // The exporter's top was authenticated there: it counts as seen.
        if top != 0 && self.top - top < self.size {
            self.commit(top);
        }
    }

    #[cfg(test)]
    pub(crate) fn set_top(&mut self, top: u64) {
        self.top = top;
    }
}

/// RFC 4303 Appendix A3 with window `w` (1 <= w <= 2^31) and highest received `top`.
fn infer_esn(top: u64, w: u64, seq_lo: u32) -> Option<u64> {
    let tl = top as u32;
    let th = (top >> 32) as u32;
    let lo = u64::from(seq_lo);
    let hi = if u64::from(tl) >= w - 1 {
        // Case A: the window lies within one 2^32 subspace.
        if lo >= u64::from(tl) - (w - 1) {
            th
        } else {
            th.checked_add(1)?
        }
    } else {
        // Case B: the window straddles a subspace boundary.
        let bottom = tl.wrapping_sub((w - 1) as u32);
        if seq_lo >= bottom {
            th.checked_sub(1)?
        } else {
            th
        }
    };
    Some(u64::from(hi) << 32 | lo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn accept(w: &mut ReplayWindow, seq: u64) -> Result<(), ReplayVerdict> {
        w.check(seq)?;
        w.commit(seq);
        Ok(())
    }

    #[test]
    fn sizes() {
        assert!(ReplayWindow::new(0).is_some());
        assert!(ReplayWindow::new(64).is_some());
        assert!(ReplayWindow::new(65536).is_some());
        assert!(ReplayWindow::new(65536 + 64).is_none());
        assert!(ReplayWindow::new(100).is_none());
    }

    #[test]
    fn duplicate_too_old_and_exact_slide() {
        let mut w = ReplayWindow::new(64).unwrap();
        assert_eq!(accept(&mut w, 1), Ok(()));
        assert_eq!(accept(&mut w, 1), Err(ReplayVerdict::Duplicate));
        assert_eq!(accept(&mut w, 64), Ok(()));
        // Window is (0, 64]: 1 is still inside and seen, 2 inside and unseen.
        assert_eq!(accept(&mut w, 1), Err(ReplayVerdict::Duplicate));
        assert_eq!(accept(&mut w, 2), Ok(()));
        // Slide by exactly the window size: 64 stays (top - 64 < 64 <= top), 65..127 unseen.
        assert_eq!(accept(&mut w, 128), Ok(()));
        assert_eq!(w.check(64), Err(ReplayVerdict::TooOld));
        assert_eq!(w.check(65), Ok(()));
        assert_eq!(w.check(128), Err(ReplayVerdict::Duplicate));
        // A bit from an old block that shares a slot with 65..127 must not leak in.
        assert_eq!(w.check(66), Ok(()));
        assert_eq!(w.check(2 + 128), Ok(()));
    }

    #[test]
    fn huge_jump_forgets_everything() {
        let mut w = ReplayWindow::new(1024).unwrap();
        for s in 1..=2000 {
            accept(&mut w, s).unwrap();
        }
        let far = 1 << 40;
        accept(&mut w, far).unwrap();
        assert_eq!(w.check(2000), Err(ReplayVerdict::TooOld));
        for s in far - 1023..far {
            assert_eq!(w.check(s), Ok(()), "{s}");
        }
        assert_eq!(w.check(far - 1024), Err(ReplayVerdict::TooOld));
        assert_eq!(w.check(far), Err(ReplayVerdict::Duplicate));
    }

    #[test]
    fn off_accepts_everything_but_tracks_top() {
        let mut w = ReplayWindow::new(0).unwrap();
        accept(&mut w, 5).unwrap();
        accept(&mut w, 5).unwrap();
        accept(&mut w, 1).unwrap();
        assert_eq!(w.top(), 5);
    }

    #[test]
    fn esn_inference_appendix_a() {
        let mut w = ReplayWindow::new(64).unwrap();
        // Start: top = 0, subspace 0. Values just below 2^32 would need subspace -1.
        assert_eq!(w.infer(1, true), Some(1));
        assert_eq!(w.infer(0, true), None);
        assert_eq!(w.infer(u32::MAX, true), None);
        // Case A: top inside subspace 0 far from the edge.
        w.set_top(0xFFFF_FFF0);
        assert_eq!(w.infer(0xFFFF_FFF5, true), Some(0xFFFF_FFF5));
        assert_eq!(w.infer(0xFFFF_FFF0 - 63, true), Some(0xFFFF_FFF0 - 63));
        assert_eq!(w.infer(3, true), Some(0x1_0000_0003)); // next subspace
                                                           // Case B: top just past the wrap; window reaches back into subspace 0.
        w.set_top(0x1_0000_0005);
        assert_eq!(w.infer(0xFFFF_FFFF, true), Some(0xFFFF_FFFF));
        assert_eq!(w.infer(7, true), Some(0x1_0000_0007));
        // The window reaches back to 0x1_0000_0005 - 63 = 0xFFFF_FFC6; below that the value
        // is taken to be in the next subspace (and will fail authentication if it was not).
        assert_eq!(w.infer(0xFFFF_FFC6, true), Some(0xFFFF_FFC6));
        assert_eq!(w.infer(0xFFFF_FFC5, true), Some(0x1_FFFF_FFC5));
        // Top of the 64-bit space: no next subspace.
        w.set_top(u64::MAX - 1);
        assert_eq!(w.infer(u32::MAX, true), Some(u64::MAX));
        assert_eq!(w.infer(2, true), None);
        // Non-ESN: the wire value is the sequence number.
        assert_eq!(w.infer(9, false), Some(9));
        assert_eq!(w.infer(0, false), None);
    }

    /// Reference model: the set of accepted numbers and the RFC rule, with no bitmap tricks.
    struct Model {
        size: u64,
        top: u64,
        seen: BTreeSet<u64>,
    }

    impl Model {
        fn accept(&mut self, seq: u64) -> Result<(), ReplayVerdict> {
            if seq <= self.top {
                if self.top - seq >= self.size {
                    return Err(ReplayVerdict::TooOld);
                }
                if self.seen.contains(&seq) {
                    return Err(ReplayVerdict::Duplicate);
                }
            }
            self.seen.insert(seq);
            self.top = self.top.max(seq);
            Ok(())
        }
    }

    proptest! {
        #[test]
        fn exported_window_imports_to_the_same_verdicts(
            words in 1u32..=4,
            seqs in proptest::collection::vec(1u64..2000, 1..300),
        ) {
            let mut w = ReplayWindow::new(words * 64).unwrap();
            for s in seqs {
                let _ = accept(&mut w, s);
            }
            let mut fresh = ReplayWindow::new(words * 64).unwrap();
            fresh.import_bits(w.top(), &w.export_bits());
            prop_assert_eq!(fresh.top(), w.top());
            for s in 1..=w.top() + 70 {
                prop_assert_eq!(fresh.check(s), w.check(s), "seq {}", s);
            }
            prop_assert_eq!(fresh.export_bits(), w.export_bits());
        }
    }

    proptest! {
        #[test]
        fn window_matches_model(
            words in 1u32..=8,
            steps in proptest::collection::vec((0u8..4, 0u64..600), 1..400),
        ) {
            let size = u64::from(words) * 64;
            let mut w = ReplayWindow::new(words * 64).unwrap();
            let mut m = Model { size, top: 0, seen: BTreeSet::new() };
            for (kind, delta) in steps {
                // Mix forward moves, small and huge jumps, and replays around the top.
                let seq = match kind {
                    0 => m.top + 1 + delta % 8,
                    1 => m.top + 1 + delta,
                    2 => m.top.saturating_sub(delta).max(1),
                    _ => m.top + delta * 1000 + 1,
                };
                prop_assert_eq!(accept(&mut w, seq), m.accept(seq), "seq {}", seq);
                prop_assert_eq!(w.top(), m.top);
            }
        }
    }
}
