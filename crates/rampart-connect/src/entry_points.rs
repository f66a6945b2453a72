//! Multiple Entry Points for a remote-access client (sans-IO): a profile lists several gateways
//! (`gateways = [...]`) and a `selection`; this decides which one the next connection goes to.
//!
//! - **primary-backup**: the gateways in the order written; the first one that is not known to
//!   be down is tried first, the others follow in order when its transport ladder fails.
//! - **first-to-respond**: the client probes every gateway at once (the transport ladder's UDP
//!   probe, and a TCP connect to the stream port: whatever gets through the network it is on)
//!   and takes the first that answers; the ones that answered later follow in the order they
//!   answered, then the silent ones in the order written.
//!
//! A gateway whose connection failed (no transport reached it, or the tunnel to it died) is
//! *down* for [`DOWN_HOLD`]: it goes to the end of the order until then, so the client moves to
//! the next one at once instead of retrying a dead one, and comes back to it later (a
//! primary that recovered is preferred again on the next connection).
//!
//! Invariants: [`EntryPoints::order`] is a permutation of all gateway indexes (every gateway is
//! always tried eventually, also when all are down); `changes` counts switches of the gateway in
//! use, never the first connection.

use std::time::{Duration, Instant};

/// How long a gateway that failed is tried only after the others.
pub const DOWN_HOLD: Duration = Duration::from_secs(60);
/// How long a first-to-respond probe waits for answers before the gateways are tried in the
/// order written.
pub const PROBE_WINDOW: Duration = Duration::from_millis(1500);

/// How the gateway of the next connection is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Selection {
    /// Probe all, take the first that answers (the default).
    #[default]
    FirstToRespond,
    /// The first of the list that is up; the others are backups in order.
    PrimaryBackup,
}

impl Selection {
    pub fn as_str(self) -> &'static str {
        match self {
            Selection::FirstToRespond => "first-to-respond",
            Selection::PrimaryBackup => "primary-backup",
        }
    }
}

/// The entry points of one client profile and what the client learned about them.
#[derive(Debug, Clone)]
pub struct EntryPoints {
    selection: Selection,
    count: usize,
    down_until: Vec<Option<Instant>>,
    current: Option<usize>,
    changes: u64,
}

impl EntryPoints {
    /// `count` gateways (at least one is assumed; zero gives an empty order).
    pub fn new(count: usize, selection: Selection) -> EntryPoints {
        EntryPoints {
            selection,
            count,
            down_until: vec![None; count],
            current: None,
            changes: 0,
        }
    }

    pub fn selection(&self) -> Selection {
        self.selection
    }

    /// Whether the client must probe before it connects (first-to-respond with more than one
    /// gateway).
    pub fn wants_probe(&self) -> bool {
        self.selection == Selection::FirstToRespond && self.count > 1
    }

    /// The order to try the gateways in for the next connection at `now`. `answered`: for
    /// first-to-respond, the gateways that answered the probe, first answer first (ignored
    /// for primary-backup).
    pub fn order(&self, now: Instant, answered: &[usize]) -> Vec<usize> {
        let mut first: Vec<usize> = Vec::with_capacity(self.count);
        if self.selection == Selection::FirstToRespond {
            for &i in answered {
                if i < self.count && !first.contains(&i) {
                    first.push(i);
                }
            }
        }
        for i in 0..self.count {
            if !first.contains(&i) {
                first.push(i);
            }
        }
        // Those down (and not answering now) go last, in the same relative order.
        let down = |i: usize| {
            !answered.contains(&i) && self.down_until[i].is_some_and(|until| now < until)
        };
        let (mut up, downs): (Vec<usize>, Vec<usize>) = first.into_iter().partition(|&i| !down(i));
        up.extend(downs);
        up
    }

    /// A tunnel to gateway `i` got its address. Returns whether the client moved to another
    /// gateway than the one it used before.
    pub fn connected(&mut self, i: usize) -> bool {
        if i >= self.count {
            return false;
        }
        self.down_until[i] = None;
        let moved = self.current.is_some_and(|c| c != i);
        if moved {
            self.changes += 1;
        }
        self.current = Some(i);
        moved
    }

    /// Gateway `i` failed at `now` (no transport, or its tunnel died).
    pub fn failed(&mut self, now: Instant, i: usize) {
        if let Some(d) = self.down_until.get_mut(i) {
            *d = Some(now + DOWN_HOLD);
        }
    }

    /// The same knowledge for a new list of `count` gateways (learned entry points added or
    /// replaced): `map[i]` is the new index of old gateway `i` (`None`: no longer listed).
    /// Down marks and the current gateway follow their gateway; `changes` is kept.
    pub fn remapped(
        &self,
        count: usize,
        selection: Selection,
        map: &[Option<usize>],
    ) -> EntryPoints {
        let mut e = EntryPoints::new(count, selection);
        e.changes = self.changes;
        for (old, new) in map.iter().enumerate() {
            let Some(new) = new.filter(|&n| n < count) else {
                continue;
            };
            if let Some(d) = self.down_until.get(old) {
                e.down_until[new] = *d;
            }
            if self.current == Some(old) {
                e.current = Some(new);
            }
        }
        e
    }

    /// The gateway of the current (or last) tunnel.
    pub fn current(&self) -> Option<usize> {
        self.current
    }

    /// How often the client moved from one gateway to another.
    pub fn changes(&self) -> u64 {
        self.changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primary_backup_prefers_the_first_that_is_up() {
        let t0 = Instant::now();
        let mut e = EntryPoints::new(3, Selection::PrimaryBackup);
        assert!(!e.wants_probe());
        assert_eq!(e.order(t0, &[2]), [0, 1, 2]);
        assert!(!e.connected(0));
        e.failed(t0, 0);
        assert_eq!(e.order(t0, &[]), [1, 2, 0]);
        assert!(e.connected(1));
        assert_eq!(e.changes(), 1);
        // The primary comes back first once the hold is over.
        assert_eq!(e.order(t0 + DOWN_HOLD, &[]), [0, 1, 2]);
    }

    #[test]
    fn first_to_respond_takes_answers_in_order_then_the_rest() {
        let t0 = Instant::now();
        let mut e = EntryPoints::new(3, Selection::FirstToRespond);
        assert!(e.wants_probe());
        assert_eq!(e.order(t0, &[2, 0]), [2, 0, 1]);
        assert_eq!(e.order(t0, &[]), [0, 1, 2]);
        e.failed(t0, 2);
        // Down, but it answers now: the answer counts.
        assert_eq!(e.order(t0, &[2]), [2, 0, 1]);
        assert_eq!(e.order(t0, &[]), [0, 1, 2]);
        e.failed(t0, 0);
        assert_eq!(e.order(t0, &[]), [1, 0, 2]);
        // Out-of-range answers are ignored; the order is always every gateway once.
        assert_eq!(e.order(t0, &[7, 1, 1]), [1, 0, 2]);
    }

    #[test]
    fn remapped_keeps_down_marks_and_the_current_gateway() {
        let t0 = Instant::now();
        let mut e = EntryPoints::new(2, Selection::PrimaryBackup);
        e.connected(0);
        e.failed(t0, 0);
        assert!(e.connected(1));
        // A learned gateway is added after the two; the old ones keep their places.
        let r = e.remapped(3, Selection::PrimaryBackup, &[Some(0), Some(1)]);
        assert_eq!(r.order(t0, &[]), [1, 2, 0]);
        assert_eq!((r.current(), r.changes()), (Some(1), 1));
        // Old gateway 1 is gone, old 0 is now the second.
        let r = e.remapped(2, Selection::FirstToRespond, &[Some(1), None]);
        assert_eq!(r.order(t0, &[]), [0, 1]);
        assert_eq!(r.current(), None);
        assert!(r.wants_probe());
    }

    #[test]
    fn every_gateway_is_tried_even_when_all_are_down() {
        let t0 = Instant::now();
        let mut e = EntryPoints::new(2, Selection::PrimaryBackup);
        e.failed(t0, 0);
        e.failed(t0, 1);
        let mut o = e.order(t0, &[]);
        o.sort_unstable();
        assert_eq!(o, [0, 1]);
        assert_eq!(
            EntryPoints::new(0, Selection::PrimaryBackup).order(t0, &[]),
            Vec::<usize>::new()
        );
    }
}
