//! The active member's hold window: connection changes wait a short while (default
//! [`HOLD`], 20 ms) per connection id before they become records, the way pfsync compresses
//! its updates, so a TCP connection's SYN, SYN-ACK and ACK leave as one upsert.
//!
//! | pending  | new      | pending afterwards                                        |
//! |----------|----------|-----------------------------------------------------------|
//! | —        | any      | the new change                                            |
//! | Created  | Updated  | Created with the update's state and expiry                |
//! | Updated  | Updated  | the newer Updated                                         |
//! | Created  | Deleted  | nothing: the connection never reaches the wire            |
//! | Updated  | Deleted  | Deleted                                                   |
//! | any      | Created  | the new Created (a full upsert replaces anything)         |
//! | Deleted  | any      | both, in order (ids are not reused; kept for safety)      |
//!
//! There is at most one pending change per id (save the last row), so no record of an id can
//! overtake another of the same id; changes leave in the order their id first became pending.
//! The window starts with the first pending change; at most [`PENDING_LIMIT`] are held, then
//! all are flushed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rampart_inspect::Change;

/// Default hold window.
pub(crate) const HOLD: Duration = Duration::from_millis(20);
/// Pending changes held at most before they are all flushed.
pub(crate) const PENDING_LIMIT: usize = 4096;

/// Connection changes waiting for the hold window, in arrival order of their ids.
pub(crate) struct Pending {
    hold: Duration,
    limit: usize,
    /// The changes, each with the instant its times are relative to (`None`: merged away).
    slots: Vec<Option<(Instant, Change)>>,
    /// Connection id -> its slot.
    index: HashMap<u64, usize>,
    /// When the window of the oldest pending change closes.
    deadline: Option<Instant>,
}

fn change_id(c: &Change) -> u64 {
    match c {
        Change::Created(conn) => conn.id,
        Change::Updated { id, .. } | Change::Deleted { id, .. } => *id,
    }
}

/// Moves a change's times (relative to the export clock at `from`) to `to`: ages grow,
/// expiries shrink by the time in between.
fn age(change: &mut Change, from: Instant, to: Instant) {
    let ms = to.saturating_duration_since(from).as_millis() as u64;
    if ms == 0 {
        return;
    }
    match change {
        Change::Created(c) => {
            c.created_ms = c.created_ms.saturating_sub(ms);
            c.last_seen_ms = c.last_seen_ms.saturating_sub(ms);
            c.expires_ms = c.expires_ms.saturating_sub(ms);
        }
        Change::Updated { expires_ms, .. } => *expires_ms = expires_ms.saturating_sub(ms),
        Change::Deleted { .. } => {}
    }
}

impl Pending {
    pub fn new(hold: Duration, limit: usize) -> Pending {
        Pending {
            hold,
            limit: limit.max(1),
            slots: Vec::new(),
            index: HashMap::new(),
            deadline: None,
        }
    }

    /// When the pending changes are due (`None`: nothing pending).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Pending changes (merged-away slots not counted).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the changes are due: the window closed, the bound is reached, or there is no
    /// window at all.
    pub fn due(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| d <= now) || self.slots.len() >= self.limit
    }

    /// Adds a change made at `now`, merged with the pending one of its id.
    pub fn push(&mut self, now: Instant, change: Change) {
        let id = change_id(&change);
        if let Some(&i) = self.index.get(&id) {
            let slot = &mut self.slots[i];
            let (at, pending) = slot.as_mut().expect("indexed slots are full");
            match (&mut *pending, change) {
                (Change::Deleted { .. }, change) => {
                    // Not expected (ids are unique); keep both, in order.
                    self.append(now, id, change);
                }
                (
                    Change::Created(_),
                    Change::Updated {
                        state,
                        expires_ms,
                        handshake,
                        ..
                    },
                ) => {
                    // The update's expiry is relative to `now`: move the rest there too.
                    age(pending, *at, now);
                    if let Change::Created(conn) = pending {
                        conn.state = state;
                        conn.expires_ms = expires_ms;
                        conn.handshake = conn.handshake.merge(handshake);
                    }
                    *at = now;
                }
                (Change::Created(_), Change::Deleted { .. }) => {
                    *slot = None;
                    self.index.remove(&id);
                }
                (_, change) => {
                    // Updated + Updated, Updated + Deleted, anything + Created: the newer.
                    *pending = change;
                    *at = now;
                }
            }
        } else {
            self.append(now, id, change);
        }
        if self.index.is_empty() {
            // Everything merged away: nothing to send, no timer.
            self.slots.clear();
            self.deadline = None;
        }
    }

    fn append(&mut self, now: Instant, id: u64, change: Change) {
        if self.slots.is_empty() {
            self.deadline = Some(now + self.hold);
        }
        self.index.insert(id, self.slots.len());
        self.slots.push(Some((now, change)));
    }

    /// Every pending change, oldest id first, its times moved to `now`.
    pub fn drain(&mut self, now: Instant) -> impl Iterator<Item = Change> + '_ {
        self.index.clear();
        self.deadline = None;
        self.slots.drain(..).flatten().map(move |(at, mut c)| {
            age(&mut c, at, now);
            c
        })
    }

    /// Forgets everything pending (demotion after a flush, takeover).
    pub fn clear(&mut self) {
        self.slots.clear();
        self.index.clear();
        self.deadline = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_inspect::tcp::TcpState;
    use rampart_inspect::{ConnState, Connection, FlowTuple, NatKind, NatState, Side};
    use rampart_inspect::{CLOCK_BASE_MS, NO_RULE, NO_SERVICE};

    fn conn(id: u64) -> Connection {
        let orig = FlowTuple::new(
            "10.1.0.5".parse().unwrap(),
            "10.2.0.7".parse().unwrap(),
            6,
            40000,
            443,
        );
        Connection {
            id,
            orig,
            xlat: orig,
            init_side: Side::Inside,
            state: ConnState::Tcp(TcpState::SynSent),
            rule: NO_RULE,
            service: NO_SERVICE,
            nat: NatState {
                kind: NatKind::None,
                rule: 0,
            },
            created_ms: CLOCK_BASE_MS,
            last_seen_ms: CLOCK_BASE_MS,
            expires_ms: CLOCK_BASE_MS + 30_000,
            packets: [0; 2],
            bytes: [0; 2],
            handshake: Default::default(),
        }
    }

    fn created(id: u64) -> Change {
        Change::Created(conn(id))
    }

    fn updated(id: u64, s: TcpState, expires_in: u64) -> Change {
        let c = conn(id);
        Change::Updated {
            id,
            init_side: c.init_side,
            orig: c.orig,
            state: ConnState::Tcp(s),
            expires_ms: CLOCK_BASE_MS + expires_in,
            handshake: Default::default(),
        }
    }

    fn deleted(id: u64) -> Change {
        let c = conn(id);
        Change::Deleted {
            id,
            init_side: c.init_side,
            orig: c.orig,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn pending() -> Pending {
        Pending::new(HOLD, PENDING_LIMIT)
    }

    #[test]
    fn created_then_updates_is_one_created_with_the_latest_state_and_expiry() {
        let t = Instant::now();
        let mut p = pending();
        p.push(t, created(1));
        p.push(t + ms(1), updated(1, TcpState::SynReceived, 30_000));
        p.push(t + ms(1), updated(1, TcpState::Established, 3_600_000));
        assert_eq!(p.len(), 1);
        assert_eq!(
            p.deadline(),
            Some(t + HOLD),
            "the window starts at the first change"
        );
        let out: Vec<_> = p.drain(t + ms(2)).collect();
        let mut want = conn(1);
        want.state = ConnState::Tcp(TcpState::Established);
        // Times are moved to the flush: 2 ms old, the update's expiry 1 ms closer.
        want.created_ms -= 2;
        want.last_seen_ms -= 2;
        want.expires_ms = CLOCK_BASE_MS + 3_600_000 - 1;
        assert_eq!(out, vec![Change::Created(want)]);
        assert_eq!(p.deadline(), None);
    }

    #[test]
    fn updated_then_updated_is_the_latest() {
        let t = Instant::now();
        let mut p = pending();
        p.push(t, updated(1, TcpState::FinOrig, 120_000));
        p.push(t, updated(1, TcpState::LastAck, 30_000));
        let out: Vec<_> = p.drain(t).collect();
        assert_eq!(out, vec![updated(1, TcpState::LastAck, 30_000)]);
    }

    #[test]
    fn created_then_deleted_sends_nothing_and_stops_the_timer() {
        let t = Instant::now();
        let mut p = pending();
        p.push(t, created(1));
        p.push(t, updated(1, TcpState::SynReceived, 30_000));
        p.push(t + ms(1), deleted(1));
        assert_eq!(p.len(), 0);
        assert_eq!(p.deadline(), None);
        assert!(!p.due(t + ms(10)));
        assert_eq!(p.drain(t + ms(10)).count(), 0);
    }

    #[test]
    fn updated_then_deleted_is_deleted() {
        let t = Instant::now();
        let mut p = pending();
        p.push(t, updated(1, TcpState::FinOrig, 120_000));
        p.push(t, deleted(1));
        let out: Vec<_> = p.drain(t).collect();
        assert_eq!(out, vec![deleted(1)]);
    }

    #[test]
    fn a_delete_after_a_flushed_upsert_comes_after_it_and_order_is_first_arrival() {
        let t = Instant::now();
        let mut p = pending();
        p.push(t, created(1));
        p.push(t, created(2));
        p.push(t, updated(1, TcpState::Established, 1000));
        p.push(t, created(3));
        let ids: Vec<_> = p.drain(t).map(|c| change_id(&c)).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        // Id 1 was flushed as an upsert: its delete is a change of its own, never merged
        // away and never before the upsert.
        p.push(t + ms(1), deleted(1));
        p.push(t + ms(1), created(4));
        p.push(t + ms(1), deleted(4));
        let out: Vec<_> = p.drain(t + ms(3)).collect();
        assert_eq!(out, vec![deleted(1)]);
        // A (never expected) change after a pending delete keeps both, in order.
        p.push(t, deleted(5));
        p.push(t, updated(5, TcpState::Established, 1000));
        let out: Vec<_> = p.drain(t).collect();
        assert_eq!(
            out,
            vec![deleted(5), updated(5, TcpState::Established, 1000)]
        );
    }

    #[test]
    fn due_at_the_window_or_the_bound() {
        let t = Instant::now();
        let mut p = Pending::new(HOLD, 3);
        assert!(!p.due(t));
        p.push(t, created(1));
        assert!(!p.due(t + ms(1)));
        assert!(p.due(t + HOLD));
        p.push(t, created(2));
        p.push(t, updated(2, TcpState::Established, 1)); // merged: no new slot
        assert!(!p.due(t));
        p.push(t, created(3));
        assert!(p.due(t), "three held: full");
        assert_eq!(p.drain(t).count(), 3);
        assert!(!p.due(t + ms(100)));
        // Without a window every change is due at once.
        let mut p = Pending::new(Duration::ZERO, PENDING_LIMIT);
        p.push(t, created(1));
        assert!(p.due(t));
    }
}
