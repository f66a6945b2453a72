//! Flush-and-Ack: the member that creates a synced connection entry holds the packet that
//! created it until every active member acknowledges the records describing it, so a packet
//! of the same connection arriving at another member (asymmetric routing, ECMP) finds the
//! entry there.
//!
//! Sans-IO: [`FlushAck::handle`] takes inputs, [`FlushAck::poll_output`] yields what to do,
//! [`FlushAck::poll_timeout`] says when to call [`FlushAck::handle_timeout`]. The machine holds
//! only the caller's [`PacketHandle`]; the packet stays in the caller's buffer.
//!
//! The caller's part, per held packet: push the connection's records into the delta stream,
//! note the stream position after them (`upto`), then `handle(Hold { packet, upto, members })`.
//! Acks are the cluster's ordinary cumulative acks ("I have every record of your stream below
//! `next`"), so one flush and one ack cover every hold below them.
//!
//! Invariants:
//! - every packet accepted by `Hold` (or refused with [`ReleaseReason::Full`]) leaves through
//!   exactly one [`FaOutput::Release`] or [`FaOutput::Drop`]; nothing is dropped without an
//!   output and a counter;
//! - a hold waits at most `hold_timeout`; a member that has not acknowledged by then is
//!   declared down ([`FaOutput::DeclareDown`], once until it is seen up again) and no longer
//!   waited for by any hold;
//! - a member reported down counts as having acknowledged every hold;
//! - at most `max_holds` packets are held at once.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::MemberId;

/// Default bound on a hold: well above a LAN sync round trip (pfsync's defer caps at 20 ms)
/// and above the default dead time's heartbeat interval, so a slow member is not declared down
/// for one late ack. Over a WAN raise it to at least 3 round trips plus the tail-probe time.
pub const DEFAULT_HOLD_TIMEOUT: Duration = Duration::from_millis(250);
/// Default bound on packets held at once.
pub const DEFAULT_MAX_HOLDS: usize = 4096;

/// The caller's name for a held packet (an index into its buffer pool, a slab key...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PacketHandle(pub u64);

/// A set of member ids (a 256-bit set: no allocation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MemberSet([u64; 4]);

impl MemberSet {
    pub const EMPTY: MemberSet = MemberSet([0; 4]);

    pub fn insert(&mut self, m: MemberId) {
        self.0[usize::from(m >> 6)] |= 1 << (m & 63);
    }
    pub fn remove(&mut self, m: MemberId) {
        self.0[usize::from(m >> 6)] &= !(1 << (m & 63));
    }
    pub fn contains(&self, m: MemberId) -> bool {
        self.0[usize::from(m >> 6)] & (1 << (m & 63)) != 0
    }
    pub fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }
    /// Members ascending.
    pub fn iter(&self) -> impl Iterator<Item = MemberId> + '_ {
        (0..=255u8).filter(|&m| self.contains(m))
    }
}

impl FromIterator<MemberId> for MemberSet {
    fn from_iter<I: IntoIterator<Item = MemberId>>(iter: I) -> MemberSet {
        let mut s = MemberSet::EMPTY;
        for m in iter {
            s.insert(m);
        }
        s
    }
}

/// What happens to a held packet whose hold times out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimeoutPolicy {
    /// Forward it anyway (the default: the silent member is declared down, so it will not
    /// see this connection's packets).
    Release,
    /// Drop it (the sender retransmits; for operators who prefer a lost SYN to a possible
    /// out-of-state drop elsewhere).
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushAckConfig {
    pub hold_timeout: Duration,
    pub max_holds: usize,
    pub on_timeout: TimeoutPolicy,
}

impl Default for FlushAckConfig {
    fn default() -> Self {
        FlushAckConfig {
            hold_timeout: DEFAULT_HOLD_TIMEOUT,
            max_holds: DEFAULT_MAX_HOLDS,
            on_timeout: TimeoutPolicy::Release,
        }
    }
}

/// Whether a service's connections are synced, which decides which packet is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceSync {
    /// `sync = true` (the default): the packet that creates the entry is held.
    Always,
    /// `sync = false`: never synced, never held.
    Never,
    /// `sync_after = <d>`: synced once the connection is `d` old; the packet that makes it
    /// synced (the first one at or past `d`) is held, none before.
    After(Duration),
}

impl ServiceSync {
    /// Whether this packet of a connection is the one to hold: `creates` when it creates the
    /// entry, `age` the connection's age at this packet, `already_synced` once an earlier
    /// packet made it synced.
    pub fn holds(self, creates: bool, age: Duration, already_synced: bool) -> bool {
        match self {
            ServiceSync::Always => creates,
            ServiceSync::Never => false,
            ServiceSync::After(d) => !already_synced && age >= d,
        }
    }
}

/// Why a packet left the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReleaseReason {
    /// Every member acknowledged (or went down).
    Acked,
    /// No other active member to wait for, or every one had acknowledged already.
    NothingToWaitFor,
    /// The hold timed out; the silent members were declared down.
    Timeout,
    /// Too many packets held already: released at once, not held.
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaInput<'a> {
    /// Hold `packet` until `members` (the other active members, not this one) have every
    /// record below `upto` of our stream.
    Hold {
        packet: PacketHandle,
        upto: u64,
        members: &'a [MemberId],
    },
    /// `member`'s cumulative ack of our stream: it has every record below `next`.
    Ack { member: MemberId, next: u64 },
    /// The cluster declared `member` down, or saw it restart (a new boot): it no longer holds
    /// anything up, and its earlier acks no longer count.
    MemberDown { member: MemberId },
    /// `member` is up again: later holds wait for it again.
    MemberUp { member: MemberId },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaOutput {
    /// Send our stream's records below `upto` to `members` now (do not wait for the batching
    /// delay) and ask them to acknowledge at once.
    Flush { upto: u64, members: MemberSet },
    /// Forward the packet.
    Release {
        packet: PacketHandle,
        reason: ReleaseReason,
        held_for: Duration,
    },
    /// Drop the packet ([`TimeoutPolicy::Drop`] after a timeout).
    Drop {
        packet: PacketHandle,
        held_for: Duration,
    },
    /// `member` did not acknowledge within the hold timeout: declare it down in the cluster.
    DeclareDown { member: MemberId },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlushAckError {
    #[error("packet handle {0:?} is already held")]
    DuplicateHandle(PacketHandle),
}

/// Upper bounds of the hold-time buckets in microseconds (a last bucket takes the rest):
/// fine around the LAN goal (p99 < 1 ms) and the WAN round trip (100 ms).
pub const HOLD_BUCKETS_US: [u64; 20] = [
    25, 50, 100, 200, 350, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 10_000, 20_000, 50_000,
    100_000, 150_000, 200_000, 500_000, 1_000_000,
];

/// Hold-time histogram (acked and timed-out holds).
///
/// Invariant: `buckets[i]` counts holds with time in `(HOLD_BUCKETS_US[i-1], HOLD_BUCKETS_US[i]]`
/// µs, `buckets[20]` those above the last bound; `count` is their sum.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldHistogram {
    pub buckets: [u64; 21],
    pub count: u64,
    pub sum_us: u64,
    pub max_us: u64,
}

impl HoldHistogram {
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = HOLD_BUCKETS_US.partition_point(|&b| b < us);
        self.buckets[i] += 1;
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.max_us = self.max_us.max(us);
    }

    /// The upper bound (µs) of the bucket holding quantile `q` (0..=1); above the last bound,
    /// the maximum seen. `None` when empty.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(
                    HOLD_BUCKETS_US
                        .get(i)
                        .copied()
                        .unwrap_or(self.max_us)
                        .min(self.max_us),
                );
            }
        }
        Some(self.max_us)
    }
}

/// Counters for `rampart cluster sync-stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlushAckStats {
    /// Packets held (not counting those refused with `Full` or released with nothing to wait for).
    pub held: u64,
    /// Packets currently held (gauge).
    pub holding: u64,
    pub released_acked: u64,
    pub released_nothing_to_wait_for: u64,
    pub released_timeout: u64,
    pub released_full: u64,
    pub dropped_timeout: u64,
    /// Holds that timed out (released or dropped).
    pub timeouts: u64,
    pub members_declared_down: u64,
    pub flushes: u64,
    pub hold_time: HoldHistogram,
}

struct Hold {
    packet: PacketHandle,
    upto: u64,
    since: Instant,
    deadline: Instant,
    waiting: MemberSet,
}

/// See the module documentation.
pub struct FlushAck {
    config: FlushAckConfig,
    /// In arrival order, deadlines non-decreasing (a new hold's deadline is at least the
    /// previous one's, even if the caller's `now` stepped back): the front expires first.
    holds: VecDeque<Hold>,
    /// Highest cumulative ack per member (index: member id).
    acked: [u64; 256],
    /// Members reported or declared down and not seen up since.
    down: MemberSet,
    /// Highest `upto` asked to be flushed, per the last Flush output.
    flushed_upto: u64,
    outputs: VecDeque<FaOutput>,
    stats: FlushAckStats,
}

impl FlushAck {
    pub fn new(config: FlushAckConfig) -> FlushAck {
        let max = config.max_holds.max(1);
        FlushAck {
            config: FlushAckConfig {
                max_holds: max,
                ..config
            },
            holds: VecDeque::with_capacity(max),
            acked: [0; 256],
            down: MemberSet::EMPTY,
            flushed_upto: 0,
            outputs: VecDeque::with_capacity(64),
            stats: FlushAckStats::default(),
        }
    }

    pub fn config(&self) -> &FlushAckConfig {
        &self.config
    }

    pub fn stats(&self) -> &FlushAckStats {
        &self.stats
    }

    /// Packets held now.
    pub fn holding(&self) -> usize {
        self.holds.len()
    }

    pub fn handle(&mut self, now: Instant, input: FaInput<'_>) -> Result<(), FlushAckError> {
        match input {
            FaInput::Hold {
                packet,
                upto,
                members,
            } => self.hold(now, packet, upto, members)?,
            FaInput::Ack { member, next } => {
                let a = &mut self.acked[usize::from(member)];
                *a = (*a).max(next);
                let next = *a;
                self.settle(now, member, |h| h.upto <= next);
            }
            FaInput::MemberDown { member } => {
                self.down.insert(member);
                // Whatever it acknowledged belongs to its previous life.
                self.acked[usize::from(member)] = 0;
                self.settle(now, member, |_| true);
            }
            FaInput::MemberUp { member } => self.down.remove(member),
        }
        Ok(())
    }

    fn hold(
        &mut self,
        now: Instant,
        packet: PacketHandle,
        upto: u64,
        members: &[MemberId],
    ) -> Result<(), FlushAckError> {
        if self.holds.iter().any(|h| h.packet == packet) {
            return Err(FlushAckError::DuplicateHandle(packet));
        }
        let waiting: MemberSet = members
            .iter()
            .copied()
            .filter(|&m| !self.down.contains(m) && self.acked[usize::from(m)] < upto)
            .collect();
        if waiting.is_empty() {
            self.stats.released_nothing_to_wait_for += 1;
            self.outputs.push_back(FaOutput::Release {
                packet,
                reason: ReleaseReason::NothingToWaitFor,
                held_for: Duration::ZERO,
            });
            return Ok(());
        }
        if self.holds.len() >= self.config.max_holds {
            self.stats.released_full += 1;
            self.outputs.push_back(FaOutput::Release {
                packet,
                reason: ReleaseReason::Full,
                held_for: Duration::ZERO,
            });
            return Ok(());
        }
        if upto > self.flushed_upto {
            self.flushed_upto = upto;
            self.stats.flushes += 1;
            self.outputs.push_back(FaOutput::Flush {
                upto,
                members: waiting,
            });
        }
        self.stats.held += 1;
        let deadline =
            (now + self.config.hold_timeout).max(self.holds.back().map_or(now, |h| h.deadline));
        self.holds.push_back(Hold {
            packet,
            upto,
            since: now,
            deadline,
            waiting,
        });
        self.stats.holding = self.holds.len() as u64;
        Ok(())
    }

    /// `member` no longer holds up the holds for which `done` is true; releases those that
    /// wait for nobody now.
    fn settle(&mut self, now: Instant, member: MemberId, done: impl Fn(&Hold) -> bool) {
        let mut i = 0;
        while i < self.holds.len() {
            let h = &mut self.holds[i];
            if h.waiting.contains(member) && done(h) {
                h.waiting.remove(member);
                if h.waiting.is_empty() {
                    let h = self.holds.remove(i).expect("index in range");
                    let held_for = now.saturating_duration_since(h.since);
                    self.stats.released_acked += 1;
                    self.stats.hold_time.record(held_for);
                    self.outputs.push_back(FaOutput::Release {
                        packet: h.packet,
                        reason: ReleaseReason::Acked,
                        held_for,
                    });
                    continue;
                }
            }
            i += 1;
        }
        self.stats.holding = self.holds.len() as u64;
    }

    /// Times out the holds whose deadline passed: their silent members are declared down
    /// (and stop holding up every other hold), the packets released or dropped per policy.
    pub fn handle_timeout(&mut self, now: Instant) {
        while self.holds.front().is_some_and(|h| h.deadline <= now) {
            let h = self.holds.pop_front().expect("front exists");
            let held_for = now.saturating_duration_since(h.since);
            self.stats.timeouts += 1;
            self.stats.hold_time.record(held_for);
            self.outputs.push_back(match self.config.on_timeout {
                TimeoutPolicy::Release => {
                    self.stats.released_timeout += 1;
                    FaOutput::Release {
                        packet: h.packet,
                        reason: ReleaseReason::Timeout,
                        held_for,
                    }
                }
                TimeoutPolicy::Drop => {
                    self.stats.dropped_timeout += 1;
                    FaOutput::Drop {
                        packet: h.packet,
                        held_for,
                    }
                }
            });
            for m in h.waiting.iter() {
                if !self.down.contains(m) {
                    self.down.insert(m);
                    self.stats.members_declared_down += 1;
                    self.outputs.push_back(FaOutput::DeclareDown { member: m });
                }
                self.settle(now, m, |_| true);
            }
        }
        self.stats.holding = self.holds.len() as u64;
    }

    /// The earliest hold deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.holds.front().map(|h| h.deadline)
    }

    pub fn poll_output(&mut self) -> Option<FaOutput> {
        self.outputs.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn drain(fa: &mut FlushAck) -> Vec<FaOutput> {
        std::iter::from_fn(|| fa.poll_output()).collect()
    }

    fn hold(fa: &mut FlushAck, now: Instant, p: u64, upto: u64, members: &[MemberId]) {
        fa.handle(
            now,
            FaInput::Hold {
                packet: PacketHandle(p),
                upto,
                members,
            },
        )
        .unwrap();
    }

    #[test]
    fn hold_flush_ack_release() {
        let t0 = Instant::now();
        let mut fa = FlushAck::new(FlushAckConfig::default());
        hold(&mut fa, t0, 7, 100, &[2, 3]);
        assert_eq!(
            drain(&mut fa),
            [FaOutput::Flush {
                upto: 100,
                members: [2, 3].into_iter().collect()
            }]
        );
        assert_eq!(fa.poll_timeout(), Some(t0 + DEFAULT_HOLD_TIMEOUT));
        fa.handle(
            t0 + ms(1),
            FaInput::Ack {
                member: 2,
                next: 100,
            },
        )
        .unwrap();
        fa.handle(
            t0 + ms(1),
            FaInput::Ack {
                member: 3,
                next: 99,
            },
        )
        .unwrap();
        assert_eq!(drain(&mut fa), [], "member 3 lacks record 99");
        fa.handle(
            t0 + ms(2),
            FaInput::Ack {
                member: 3,
                next: 100,
            },
        )
        .unwrap();
        assert_eq!(
            drain(&mut fa),
            [FaOutput::Release {
                packet: PacketHandle(7),
                reason: ReleaseReason::Acked,
                held_for: ms(2)
            }]
        );
        assert_eq!(fa.poll_timeout(), None);
        let s = fa.stats();
        assert_eq!(
            (s.held, s.released_acked, s.holding, s.timeouts),
            (1, 1, 0, 0)
        );
        assert_eq!(s.hold_time.quantile_us(0.5), Some(2_000));
        // An ack already covering the next hold: released at once, nothing flushed.
        hold(&mut fa, t0 + ms(3), 8, 100, &[2, 3]);
        assert_eq!(
            drain(&mut fa),
            [FaOutput::Release {
                packet: PacketHandle(8),
                reason: ReleaseReason::NothingToWaitFor,
                held_for: Duration::ZERO
            }]
        );
        // Alone in the cluster: nothing to wait for either.
        hold(&mut fa, t0 + ms(3), 9, 200, &[]);
        assert!(matches!(
            drain(&mut fa)[..],
            [FaOutput::Release {
                reason: ReleaseReason::NothingToWaitFor,
                ..
            }]
        ));
        assert_eq!(
            fa.handle(
                t0,
                FaInput::Hold {
                    packet: PacketHandle(9),
                    upto: 300,
                    members: &[2]
                }
            ),
            Ok(())
        );
        assert_eq!(
            fa.handle(
                t0,
                FaInput::Hold {
                    packet: PacketHandle(9),
                    upto: 301,
                    members: &[2]
                }
            ),
            Err(FlushAckError::DuplicateHandle(PacketHandle(9)))
        );
    }

    #[test]
    fn timeout_releases_and_declares_the_silent_member_down_once() {
        let t0 = Instant::now();
        let mut fa = FlushAck::new(FlushAckConfig {
            hold_timeout: ms(50),
            ..FlushAckConfig::default()
        });
        hold(&mut fa, t0, 1, 10, &[2, 3]);
        hold(&mut fa, t0 + ms(10), 2, 11, &[2, 3]);
        drain(&mut fa);
        fa.handle(
            t0 + ms(1),
            FaInput::Ack {
                member: 2,
                next: 11,
            },
        )
        .unwrap();
        assert_eq!(drain(&mut fa), []);
        fa.handle_timeout(t0 + ms(49));
        assert_eq!(drain(&mut fa), [], "not yet due");
        fa.handle_timeout(t0 + ms(50));
        // Both holds waited only for 3: the first times out, 3 is declared down, which
        // releases the second as acked (it no longer waits for anybody).
        assert_eq!(
            drain(&mut fa),
            [
                FaOutput::Release {
                    packet: PacketHandle(1),
                    reason: ReleaseReason::Timeout,
                    held_for: ms(50)
                },
                FaOutput::DeclareDown { member: 3 },
                FaOutput::Release {
                    packet: PacketHandle(2),
                    reason: ReleaseReason::Acked,
                    held_for: ms(40)
                },
            ]
        );
        // While 3 is down (not seen up), later holds do not wait for it.
        hold(&mut fa, t0 + ms(60), 3, 12, &[2, 3]);
        assert_eq!(
            drain(&mut fa),
            [FaOutput::Flush {
                upto: 12,
                members: [2].into_iter().collect()
            }]
        );
        fa.handle(
            t0 + ms(61),
            FaInput::Ack {
                member: 2,
                next: 12,
            },
        )
        .unwrap();
        assert!(matches!(
            drain(&mut fa)[..],
            [FaOutput::Release {
                reason: ReleaseReason::Acked,
                ..
            }]
        ));
        // Back up, silent again: declared down again.
        fa.handle(t0 + ms(70), FaInput::MemberUp { member: 3 })
            .unwrap();
        hold(&mut fa, t0 + ms(70), 4, 13, &[3]);
        fa.handle_timeout(t0 + ms(120));
        let out = drain(&mut fa);
        assert!(out.contains(&FaOutput::DeclareDown { member: 3 }));
        let s = fa.stats();
        assert_eq!(
            (s.timeouts, s.members_declared_down, s.released_timeout),
            (2, 2, 2)
        );
        // Holds 1 and 4 timed out, 2 and 3 were acked: all four in the histogram.
        assert_eq!(s.hold_time.count, 4);
    }

    #[test]
    fn drop_policy_drops_with_an_output() {
        let t0 = Instant::now();
        let mut fa = FlushAck::new(FlushAckConfig {
            hold_timeout: ms(5),
            on_timeout: TimeoutPolicy::Drop,
            ..FlushAckConfig::default()
        });
        hold(&mut fa, t0, 1, 10, &[2]);
        fa.handle_timeout(t0 + ms(5));
        let out = drain(&mut fa);
        assert!(out.contains(&FaOutput::Drop {
            packet: PacketHandle(1),
            held_for: ms(5)
        }));
        assert!(out.contains(&FaOutput::DeclareDown { member: 2 }));
        assert_eq!(fa.stats().dropped_timeout, 1);
    }

    #[test]
    fn member_death_mid_hold_counts_as_acked() {
        let t0 = Instant::now();
        let mut fa = FlushAck::new(FlushAckConfig::default());
        hold(&mut fa, t0, 1, 10, &[2, 3, 4]);
        fa.handle(
            t0 + ms(1),
            FaInput::Ack {
                member: 2,
                next: 10,
            },
        )
        .unwrap();
        fa.handle(t0 + ms(1), FaInput::MemberDown { member: 3 })
            .unwrap();
        drain(&mut fa);
        assert_eq!(fa.holding(), 1, "4 has not acked");
        fa.handle(t0 + ms(2), FaInput::MemberDown { member: 4 })
            .unwrap();
        assert_eq!(
            drain(&mut fa),
            [FaOutput::Release {
                packet: PacketHandle(1),
                reason: ReleaseReason::Acked,
                held_for: ms(2)
            }]
        );
        assert_eq!(
            fa.stats().members_declared_down,
            0,
            "reported down, not declared by us"
        );
        // Back (restarted): its acks from before do not count.
        fa.handle(t0 + ms(3), FaInput::MemberUp { member: 2 })
            .unwrap();
        fa.handle(t0 + ms(3), FaInput::MemberDown { member: 2 })
            .unwrap();
        fa.handle(t0 + ms(3), FaInput::MemberUp { member: 2 })
            .unwrap();
        hold(&mut fa, t0 + ms(4), 2, 10, &[2]);
        assert_eq!(
            fa.holding(),
            1,
            "waits for a fresh ack from the restarted member"
        );
    }

    #[test]
    fn full_releases_at_once_and_counts() {
        let t0 = Instant::now();
        let mut fa = FlushAck::new(FlushAckConfig {
            max_holds: 2,
            ..FlushAckConfig::default()
        });
        for p in 0..4 {
            hold(&mut fa, t0, p, 10 + p, &[2]);
        }
        let out = drain(&mut fa);
        let full: Vec<_> = out
            .iter()
            .filter(|o| {
                matches!(
                    o,
                    FaOutput::Release {
                        reason: ReleaseReason::Full,
                        ..
                    }
                )
            })
            .collect();
        assert_eq!(full.len(), 2);
        assert_eq!(fa.holding(), 2);
        assert_eq!(fa.stats().released_full, 2);
        // An ack frees room.
        fa.handle(
            t0,
            FaInput::Ack {
                member: 2,
                next: 11,
            },
        )
        .unwrap();
        assert_eq!(fa.holding(), 0);
        hold(&mut fa, t0, 9, 20, &[2]);
        assert_eq!(fa.holding(), 1);
    }

    #[test]
    fn many_interleaved_holds_release_in_ack_order_with_one_flush_per_new_position() {
        let t0 = Instant::now();
        let mut fa = FlushAck::new(FlushAckConfig::default());
        // 100 connections, 3 records each, held as they come; members 2 and 3 ack in steps.
        for c in 0..100u64 {
            hold(
                &mut fa,
                t0 + Duration::from_micros(c * 10),
                c,
                3 * c + 3,
                &[2, 3],
            );
        }
        let flushes = drain(&mut fa)
            .iter()
            .filter(|o| matches!(o, FaOutput::Flush { .. }))
            .count();
        assert_eq!(flushes, 100);
        let mut released = Vec::new();
        for step in (0..=300u64).step_by(30) {
            let now = t0 + ms(1) + Duration::from_micros(step);
            fa.handle(
                now,
                FaInput::Ack {
                    member: 3,
                    next: step,
                },
            )
            .unwrap();
            fa.handle(
                now,
                FaInput::Ack {
                    member: 2,
                    next: step + 15,
                },
            )
            .unwrap();
            for o in drain(&mut fa) {
                if let FaOutput::Release { packet, reason, .. } = o {
                    assert_eq!(reason, ReleaseReason::Acked);
                    released.push(packet.0);
                }
            }
            assert_eq!(
                released.len() as u64,
                step / 3,
                "released exactly those below both acks"
            );
        }
        assert_eq!(released, (0..100).collect::<Vec<_>>());
        assert!(fa.stats().hold_time.quantile_us(0.99).unwrap() <= 1_500);
    }

    #[test]
    fn histogram_quantiles() {
        let mut h = HoldHistogram::default();
        assert_eq!(h.quantile_us(0.5), None);
        for _ in 0..98 {
            h.record(Duration::from_micros(300));
        }
        h.record(ms(30));
        h.record(ms(3000));
        assert_eq!(h.quantile_us(0.5), Some(350));
        assert_eq!(h.quantile_us(0.99), Some(50_000));
        assert_eq!(h.quantile_us(1.0), Some(3_000_000));
        assert_eq!(h.buckets[20], 1);
        assert_eq!(h.count, 100);
    }

    #[test]
    fn service_sync_rules() {
        assert!(ServiceSync::Always.holds(true, Duration::ZERO, false));
        assert!(!ServiceSync::Always.holds(false, ms(10), true));
        assert!(!ServiceSync::Never.holds(true, Duration::ZERO, false));
        let after = ServiceSync::After(ms(500));
        assert!(!after.holds(true, Duration::ZERO, false));
        assert!(!after.holds(false, ms(499), false));
        assert!(after.holds(false, ms(500), false));
        assert!(!after.holds(false, ms(900), true));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Hold { members: Vec<MemberId>, recs: u8 },
        Ack { member: MemberId, back: u8 },
        Down(MemberId),
        Up(MemberId),
        Advance(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (proptest::collection::vec(1u8..6, 0..5), 0u8..4).prop_map(|(members, recs)| Op::Hold { members, recs }),
            4 => (1u8..6, 0u8..8).prop_map(|(member, back)| Op::Ack { member, back }),
            1 => (1u8..6).prop_map(Op::Down),
            1 => (1u8..6).prop_map(Op::Up),
            2 => (0u16..80).prop_map(Op::Advance),
        ]
    }

    /// Drains the outputs, checking each against what was held.
    fn check(
        fa: &mut FlushAck,
        now: Instant,
        seq: u64,
        timeout: Duration,
        held_at: &BTreeMap<u64, Instant>,
        left: &mut BTreeMap<u64, u32>,
    ) -> Result<(), TestCaseError> {
        while let Some(o) = fa.poll_output() {
            match o {
                FaOutput::Release {
                    packet, held_for, ..
                }
                | FaOutput::Drop { packet, held_for } => {
                    let at = held_at.get(&packet.0).copied();
                    prop_assert!(at.is_some(), "unknown packet {:?}", packet);
                    prop_assert_eq!(held_for, now - at.unwrap());
                    prop_assert!(held_for <= timeout);
                    *left.entry(packet.0).or_insert(0) += 1;
                }
                FaOutput::Flush { upto, members } => {
                    prop_assert!(upto <= seq && !members.is_empty())
                }
                FaOutput::DeclareDown { .. } => {}
            }
        }
        Ok(())
    }

    /// Moves time to `target`, running timers as they fall due (as the I/O shell does).
    fn advance(
        fa: &mut FlushAck,
        mut now: Instant,
        target: Instant,
        seq: u64,
        timeout: Duration,
        held_at: &BTreeMap<u64, Instant>,
        left: &mut BTreeMap<u64, u32>,
    ) -> Result<Instant, TestCaseError> {
        while let Some(t) = fa.poll_timeout().filter(|&t| t <= target) {
            prop_assert!(t >= now, "timer in the past");
            now = t;
            fa.handle_timeout(now);
            check(fa, now, seq, timeout, held_at, left)?;
        }
        Ok(target)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Every held packet leaves exactly once (release or drop), whatever the acks, member
        /// changes and timing; nothing stays held past its timeout; outputs name only packets
        /// that were held; the counters add up.
        #[test]
        fn every_held_packet_leaves_exactly_once(
            ops in proptest::collection::vec(op(), 1..200),
            max_holds in 1usize..12,
            drop_policy in any::<bool>(),
        ) {
            let timeout = ms(40);
            let mut fa = FlushAck::new(FlushAckConfig {
                hold_timeout: timeout,
                max_holds,
                on_timeout: if drop_policy { TimeoutPolicy::Drop } else { TimeoutPolicy::Release },
            });
            let mut now = Instant::now();
            let mut seq = 0u64;
            let mut next_packet = 0u64;
            let mut held_at: BTreeMap<u64, Instant> = BTreeMap::new();
            let mut left: BTreeMap<u64, u32> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Hold { members, recs } => {
                        seq += u64::from(recs);
                        let p = next_packet;
                        next_packet += 1;
                        held_at.insert(p, now);
                        hold(&mut fa, now, p, seq, &members);
                    }
                    Op::Ack { member, back } => {
                        let next = seq.saturating_sub(u64::from(back));
                        fa.handle(now, FaInput::Ack { member, next }).unwrap();
                    }
                    Op::Down(member) => fa.handle(now, FaInput::MemberDown { member }).unwrap(),
                    Op::Up(member) => fa.handle(now, FaInput::MemberUp { member }).unwrap(),
                    Op::Advance(d) => {
                        now = advance(&mut fa, now, now + ms(u64::from(d)), seq, timeout, &held_at, &mut left)?;
                    }
                }
                check(&mut fa, now, seq, timeout, &held_at, &mut left)?;
                prop_assert!(fa.holding() <= max_holds);
            }
            advance(&mut fa, now, now + timeout, seq, timeout, &held_at, &mut left)?;
            prop_assert_eq!(fa.holding(), 0);
            prop_assert_eq!(fa.poll_timeout(), None);
            prop_assert_eq!(left.len(), held_at.len(), "every packet left");
            prop_assert!(left.values().all(|&n| n == 1), "exactly once");
            let s = fa.stats();
            prop_assert_eq!(
                s.released_acked + s.released_nothing_to_wait_for + s.released_timeout + s.released_full + s.dropped_timeout,
                held_at.len() as u64
            );
            prop_assert_eq!(s.held, s.released_acked + s.released_timeout + s.dropped_timeout);
            prop_assert_eq!(s.timeouts, s.released_timeout + s.dropped_timeout);
        }
    }
}
