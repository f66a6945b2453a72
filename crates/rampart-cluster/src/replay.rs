//! Anti-replay state of one sender boot: highest counter seen and a 64-counter bitmap below it.

/// Invariant: bit `i` of `bitmap` is set iff counter `highest - i` was accepted (bit 0 is
/// `highest` itself once anything was accepted).
#[derive(Debug, Default, Clone)]
pub(crate) struct ReplayWindow {
    highest: u64,
    bitmap: u64,
}

impl ReplayWindow {
    /// Whether `counter` may be accepted (checked before decryption; commit after).
    pub(crate) fn check(&self, counter: u64) -> bool {
        if counter == 0 {
            return false;
        }
        if counter > self.highest {
            return true;
        }
        let age = self.highest - counter;
        age < 64 && self.bitmap & (1 << age) == 0
    }

    /// Records `counter` as accepted; `check(counter)` must have been true.
    pub(crate) fn commit(&mut self, counter: u64) {
        if counter > self.highest {
            let shift = counter - self.highest;
            self.bitmap = if shift >= 64 { 0 } else { self.bitmap << shift };
            self.bitmap |= 1;
            self.highest = counter;
        } else {
            self.bitmap |= 1 << (self.highest - counter);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window() {
        let mut w = ReplayWindow::default();
        assert!(!w.check(0));
        for c in [5, 3, 4, 100, 40, 37] {
            assert!(w.check(c), "{c}");
            w.commit(c);
            assert!(!w.check(c), "{c} again");
        }
        assert!(!w.check(36), "older than the window");
        assert!(w.check(38));
        assert!(w.check(101));
    }
}
