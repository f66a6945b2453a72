//! The requesting side of UPD_REQ: a packet of a connection this member does not know (a race
//! Flush-and-Ack cannot cover) waits, by handle, while the other members are asked for the
//! flow's state; it is handed back once the state is here, once every member said it has
//! none, or at the timeout.
//!
//! Sans-IO like [`crate::FlushAck`]: `handle(now, input)`, `handle_timeout(now)`,
//! `poll_output()`, `poll_timeout()`. The wire messages are [`crate::UpdateQuery`] and
//! [`crate::UpdateAnswerEntry`] (message types 7 and 8); the caller batches the [`UrOutput::Ask`]
//! outputs into request messages of up to [`crate::MAX_UPDATE_ENTRIES`] queries.
//!
//! A `Found { key, upto }` answer means the answering member pushed the state into its
//! ordinary delta stream below `upto`; the state is applied when this member's copy of that
//! stream reaches `upto` ([`UrInput::StreamProgress`]), so the record is applied in order and
//! exactly once, and only then is the packet handed back.
//!
//! Invariants:
//! - every packet given with [`UrInput::Orphan`] comes back in exactly one
//!   [`UrOutput::Resolved`], at the latest `timeout` after it was given;
//! - packets of the same flow share one query (one `Ask`), resolved together;
//! - at most `max_pending` packets wait; beyond, a packet comes back at once (`Full`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{AnswerOutcome, FlowKey, MemberId, MemberSet, PacketHandle, UpdateAnswerEntry};

/// Default wait for answers: like the Flush-and-Ack hold, well above a LAN round trip.
pub const DEFAULT_UPDATE_TIMEOUT: Duration = Duration::from_millis(250);
pub const DEFAULT_MAX_PENDING: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateRequestConfig {
    pub timeout: Duration,
    pub max_pending: usize,
}

impl Default for UpdateRequestConfig {
    fn default() -> Self {
        UpdateRequestConfig {
            timeout: DEFAULT_UPDATE_TIMEOUT,
            max_pending: DEFAULT_MAX_PENDING,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrInput<'a> {
    /// A packet of `flow`, unknown here; ask `members` (the other active members).
    Orphan {
        packet: PacketHandle,
        flow: FlowKey,
        members: &'a [MemberId],
    },
    /// `member` answered one query.
    Answer {
        member: MemberId,
        entry: UpdateAnswerEntry,
    },
    /// This member has received (and applied) `member`'s delta stream below `next`.
    StreamProgress { member: MemberId, next: u64 },
    /// `member` is down or restarted: it will not answer (a `Found` from it will not arrive),
    /// and its stream positions start over.
    MemberDown { member: MemberId },
}

/// How a waiting packet came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resolution {
    /// The state arrived (record `key` of `member`'s stream is applied): process the packet
    /// as part of that connection.
    Found { member: MemberId, key: u64 },
    /// Every member asked said it has no state: the normal rules decide (a new flow, or a
    /// genuine out-of-state packet).
    Unknown,
    /// No answer settled it in time: the normal rules decide.
    Timeout,
    /// Too many packets waiting: not asked, the normal rules decide at once.
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrOutput {
    /// Send query `id` for `flow` to `members` (batched into update requests).
    Ask {
        id: u32,
        flow: FlowKey,
        members: MemberSet,
    },
    Resolved {
        packet: PacketHandle,
        flow: FlowKey,
        resolution: Resolution,
        waited: Duration,
    },
}

/// Counters for `rampart cluster sync-stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateRequestStats {
    pub queries: u64,
    pub packets: u64,
    pub found: u64,
    pub unknown: u64,
    pub timeouts: u64,
    pub full: u64,
    /// Answers to no pending query (late, duplicate or from a member not asked).
    pub stray_answers: u64,
}

struct Query {
    id: u32,
    flow: FlowKey,
    deadline: Instant,
    /// Asked and neither answered `Unknown` nor down.
    open: MemberSet,
    /// A `Found` waiting for the stream: (member, key, upto).
    found: Option<(MemberId, u64, u64)>,
}

struct Waiting {
    id: u32,
    packet: PacketHandle,
    since: Instant,
}

/// See the module documentation.
pub struct UpdateRequests {
    config: UpdateRequestConfig,
    next_id: u32,
    queries: Vec<Query>,
    waiting: Vec<Waiting>,
    /// Our copy of each member's stream is applied below this.
    stream_next: [u64; 256],
    outputs: VecDeque<UrOutput>,
    stats: UpdateRequestStats,
}

impl UpdateRequests {
    pub fn new(config: UpdateRequestConfig) -> UpdateRequests {
        let max = config.max_pending.max(1);
        UpdateRequests {
            config: UpdateRequestConfig {
                max_pending: max,
                ..config
            },
            next_id: 0,
            queries: Vec::with_capacity(max),
            waiting: Vec::with_capacity(max),
            stream_next: [0; 256],
            outputs: VecDeque::with_capacity(64),
            stats: UpdateRequestStats::default(),
        }
    }

    pub fn stats(&self) -> &UpdateRequestStats {
        &self.stats
    }

    /// Packets waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn handle(&mut self, now: Instant, input: UrInput<'_>) {
        match input {
            UrInput::Orphan {
                packet,
                flow,
                members,
            } => self.orphan(now, packet, flow, members),
            UrInput::Answer { member, entry } => {
                let Some(qi) = self
                    .queries
                    .iter()
                    .position(|q| q.id == entry.id && q.open.contains(member))
                else {
                    self.stats.stray_answers += 1;
                    return;
                };
                let q = &mut self.queries[qi];
                match entry.outcome {
                    AnswerOutcome::Found { key, upto } => {
                        if q.found.is_none() {
                            q.found = Some((member, key, upto));
                        }
                    }
                    AnswerOutcome::Unknown => q.open.remove(member),
                }
                self.settle(now, qi);
            }
            UrInput::StreamProgress { member, next } => {
                let n = &mut self.stream_next[usize::from(member)];
                *n = (*n).max(next);
                self.settle_all(now);
            }
            UrInput::MemberDown { member } => {
                // A member that comes back starts a new stream.
                self.stream_next[usize::from(member)] = 0;
                for q in &mut self.queries {
                    q.open.remove(member);
                    if q.found.is_some_and(|(m, _, _)| m == member) {
                        q.found = None;
                    }
                }
                self.settle_all(now);
            }
        }
    }

    fn orphan(&mut self, now: Instant, packet: PacketHandle, flow: FlowKey, members: &[MemberId]) {
        if self.waiting.len() >= self.config.max_pending {
            self.stats.full += 1;
            self.outputs.push_back(UrOutput::Resolved {
                packet,
                flow,
                resolution: Resolution::Full,
                waited: Duration::ZERO,
            });
            return;
        }
        self.stats.packets += 1;
        if let Some(q) = self.queries.iter().find(|q| q.flow == flow) {
            // Asked already: wait with the others.
            self.waiting.push(Waiting {
                id: q.id,
                packet,
                since: now,
            });
            return;
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let open: MemberSet = members.iter().copied().collect();
        self.stats.queries += 1;
        self.queries.push(Query {
            id,
            flow,
            deadline: now + self.config.timeout,
            open,
            found: None,
        });
        self.waiting.push(Waiting {
            id,
            packet,
            since: now,
        });
        if open.is_empty() {
            // Nobody to ask.
            let qi = self.queries.len() - 1;
            self.settle(now, qi);
        } else {
            self.outputs.push_back(UrOutput::Ask {
                id,
                flow,
                members: open,
            });
        }
    }

    fn settle_all(&mut self, now: Instant) {
        let mut qi = 0;
        while qi < self.queries.len() {
            if !self.settle(now, qi) {
                qi += 1;
            }
        }
    }

    /// Resolves query `qi` if it is settled; returns whether it was removed.
    fn settle(&mut self, now: Instant, qi: usize) -> bool {
        let q = &self.queries[qi];
        let resolution = match q.found {
            Some((member, key, upto)) if self.stream_next[usize::from(member)] >= upto => {
                Resolution::Found { member, key }
            }
            Some(_) => return false,
            None if q.open.is_empty() => Resolution::Unknown,
            None => return false,
        };
        self.resolve(now, qi, resolution);
        true
    }

    fn resolve(&mut self, now: Instant, qi: usize, resolution: Resolution) {
        let q = self.queries.swap_remove(qi);
        match resolution {
            Resolution::Found { .. } => self.stats.found += 1,
            Resolution::Unknown => self.stats.unknown += 1,
            Resolution::Timeout => self.stats.timeouts += 1,
            Resolution::Full => {}
        }
        let mut i = 0;
        while i < self.waiting.len() {
            if self.waiting[i].id == q.id {
                let w = self.waiting.remove(i);
                self.outputs.push_back(UrOutput::Resolved {
                    packet: w.packet,
                    flow: q.flow,
                    resolution,
                    waited: now.saturating_duration_since(w.since),
                });
            } else {
                i += 1;
            }
        }
    }

    /// Queries past their deadline come back as `Timeout`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(qi) = self.queries.iter().position(|q| q.deadline <= now) {
            self.resolve(now, qi, Resolution::Timeout);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.queries.iter().map(|q| q.deadline).min()
    }

    pub fn poll_output(&mut self) -> Option<UrOutput> {
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

    fn flow(n: u16) -> FlowKey {
        FlowKey::conn(
            6,
            format!("10.0.0.1:{n}").parse().unwrap(),
            "192.0.2.1:443".parse().unwrap(),
        )
    }

    fn drain(u: &mut UpdateRequests) -> Vec<UrOutput> {
        std::iter::from_fn(|| u.poll_output()).collect()
    }

    fn orphan(u: &mut UpdateRequests, now: Instant, p: u64, f: FlowKey, members: &[MemberId]) {
        u.handle(
            now,
            UrInput::Orphan {
                packet: PacketHandle(p),
                flow: f,
                members,
            },
        );
    }

    fn answer(
        u: &mut UpdateRequests,
        now: Instant,
        member: MemberId,
        id: u32,
        outcome: AnswerOutcome,
    ) {
        u.handle(
            now,
            UrInput::Answer {
                member,
                entry: UpdateAnswerEntry { id, outcome },
            },
        );
    }

    #[test]
    fn found_waits_for_the_stream_then_releases_every_packet_of_the_flow() {
        let t0 = Instant::now();
        let mut u = UpdateRequests::new(UpdateRequestConfig::default());
        orphan(&mut u, t0, 1, flow(1), &[2, 3]);
        orphan(&mut u, t0 + ms(1), 2, flow(1), &[2, 3]);
        assert_eq!(
            drain(&mut u),
            [UrOutput::Ask {
                id: 0,
                flow: flow(1),
                members: [2, 3].into_iter().collect()
            }],
            "one query for both packets"
        );
        answer(&mut u, t0 + ms(2), 3, 0, AnswerOutcome::Unknown);
        answer(
            &mut u,
            t0 + ms(2),
            2,
            0,
            AnswerOutcome::Found { key: 77, upto: 50 },
        );
        u.handle(
            t0 + ms(3),
            UrInput::StreamProgress {
                member: 2,
                next: 49,
            },
        );
        assert_eq!(drain(&mut u), [], "record 49 not applied yet");
        u.handle(
            t0 + ms(4),
            UrInput::StreamProgress {
                member: 2,
                next: 50,
            },
        );
        let found = Resolution::Found { member: 2, key: 77 };
        assert_eq!(
            drain(&mut u),
            [
                UrOutput::Resolved {
                    packet: PacketHandle(1),
                    flow: flow(1),
                    resolution: found,
                    waited: ms(4)
                },
                UrOutput::Resolved {
                    packet: PacketHandle(2),
                    flow: flow(1),
                    resolution: found,
                    waited: ms(3)
                },
            ]
        );
        assert_eq!(u.poll_timeout(), None);
        // Stream already past `upto` when the answer comes: at once.
        orphan(&mut u, t0 + ms(5), 3, flow(2), &[2]);
        drain(&mut u);
        answer(
            &mut u,
            t0 + ms(6),
            2,
            1,
            AnswerOutcome::Found { key: 78, upto: 10 },
        );
        assert!(matches!(
            drain(&mut u)[..],
            [UrOutput::Resolved {
                resolution: Resolution::Found { key: 78, .. },
                ..
            }]
        ));
        let s = u.stats();
        assert_eq!((s.queries, s.packets, s.found), (2, 3, 2));
    }

    #[test]
    fn all_unknown_timeout_member_down_nobody_to_ask_and_full() {
        let t0 = Instant::now();
        let mut u = UpdateRequests::new(UpdateRequestConfig {
            timeout: ms(100),
            max_pending: 3,
        });
        orphan(&mut u, t0, 1, flow(1), &[2, 3]);
        orphan(&mut u, t0, 2, flow(2), &[2, 3]);
        orphan(&mut u, t0, 3, flow(3), &[2, 3]);
        orphan(&mut u, t0, 4, flow(4), &[2, 3]);
        let out = drain(&mut u);
        assert_eq!(
            out.iter()
                .filter(|o| matches!(o, UrOutput::Ask { .. }))
                .count(),
            3
        );
        assert!(out.contains(&UrOutput::Resolved {
            packet: PacketHandle(4),
            flow: flow(4),
            resolution: Resolution::Full,
            waited: Duration::ZERO
        }));
        // flow 1: both unknown.
        answer(&mut u, t0 + ms(1), 2, 0, AnswerOutcome::Unknown);
        answer(&mut u, t0 + ms(1), 2, 0, AnswerOutcome::Unknown);
        answer(&mut u, t0 + ms(1), 9, 0, AnswerOutcome::Unknown);
        answer(&mut u, t0 + ms(2), 3, 0, AnswerOutcome::Unknown);
        assert!(matches!(
            drain(&mut u)[..],
            [UrOutput::Resolved {
                packet: PacketHandle(1),
                resolution: Resolution::Unknown,
                ..
            }]
        ));
        assert_eq!(
            u.stats().stray_answers,
            2,
            "a duplicate and a member not asked"
        );
        // flow 2: 3 said Found, then died before its stream delivered; 2 unknown.
        answer(
            &mut u,
            t0 + ms(3),
            3,
            1,
            AnswerOutcome::Found { key: 5, upto: 1000 },
        );
        answer(&mut u, t0 + ms(3), 2, 1, AnswerOutcome::Unknown);
        assert_eq!(drain(&mut u), []);
        u.handle(t0 + ms(4), UrInput::MemberDown { member: 3 });
        let out = drain(&mut u);
        assert!(
            matches!(
                out[..],
                [UrOutput::Resolved {
                    packet: PacketHandle(2),
                    resolution: Resolution::Unknown,
                    ..
                }]
            ),
            "{out:?}"
        );
        // flow 3: 3 is down already (it was removed from every query); 2 never answers.
        assert_eq!(u.poll_timeout(), Some(t0 + ms(100)));
        u.handle_timeout(t0 + ms(100));
        assert!(
            matches!(drain(&mut u)[..], [UrOutput::Resolved { packet: PacketHandle(3), resolution: Resolution::Timeout, waited, .. }] if waited == ms(100))
        );
        // Alone: resolved at once.
        orphan(&mut u, t0 + ms(200), 5, flow(5), &[]);
        assert!(matches!(
            drain(&mut u)[..],
            [UrOutput::Resolved {
                packet: PacketHandle(5),
                resolution: Resolution::Unknown,
                ..
            }]
        ));
        let s = u.stats();
        assert_eq!((s.unknown, s.timeouts, s.full), (3, 1, 1));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Orphan {
            flow: u16,
            members: Vec<MemberId>,
        },
        Answer {
            member: MemberId,
            id: u8,
            found: Option<u8>,
        },
        Progress {
            member: MemberId,
            next: u8,
        },
        Down(MemberId),
        Advance(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u16..6, proptest::collection::vec(1u8..5, 0..4)).prop_map(|(flow, members)| Op::Orphan { flow, members }),
            4 => (1u8..5, 0u8..12, proptest::option::of(0u8..40)).prop_map(|(member, id, found)| Op::Answer { member, id, found }),
            2 => (1u8..5, 0u8..40).prop_map(|(member, next)| Op::Progress { member, next }),
            1 => (1u8..5).prop_map(Op::Down),
            2 => (0u8..60).prop_map(Op::Advance),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Every orphan packet comes back exactly once, within the timeout, with the flow it
        /// was given; only flows asked about come back `Found`.
        #[test]
        fn every_orphan_comes_back_exactly_once(
            ops in proptest::collection::vec(op(), 1..150),
            max_pending in 1usize..8,
        ) {
            let timeout = ms(50);
            let mut u = UpdateRequests::new(UpdateRequestConfig { timeout, max_pending });
            let mut now = Instant::now();
            let mut given: BTreeMap<u64, (Instant, FlowKey)> = BTreeMap::new();
            let mut back: BTreeMap<u64, u32> = BTreeMap::new();
            let mut next_packet = 0u64;
            for op in ops {
                match op {
                    Op::Orphan { flow: f, members } => {
                        given.insert(next_packet, (now, flow(f)));
                        orphan(&mut u, now, next_packet, flow(f), &members);
                        next_packet += 1;
                    }
                    Op::Answer { member, id, found } => {
                        let outcome = match found {
                            Some(upto) => AnswerOutcome::Found { key: u64::from(id), upto: u64::from(upto) },
                            None => AnswerOutcome::Unknown,
                        };
                        answer(&mut u, now, member, u32::from(id), outcome);
                    }
                    Op::Progress { member, next } => u.handle(now, UrInput::StreamProgress { member, next: u64::from(next) }),
                    Op::Down(member) => u.handle(now, UrInput::MemberDown { member }),
                    Op::Advance(d) => {
                        let target = now + ms(u64::from(d));
                        while let Some(t) = u.poll_timeout().filter(|&t| t <= target) {
                            now = t;
                            u.handle_timeout(now);
                            check(&mut u, now, timeout, &given, &mut back)?;
                        }
                        now = target;
                    }
                }
                check(&mut u, now, timeout, &given, &mut back)?;
                prop_assert!(u.waiting() <= max_pending);
            }
            while let Some(t) = u.poll_timeout() {
                now = t;
                u.handle_timeout(now);
                check(&mut u, now, timeout, &given, &mut back)?;
            }
            prop_assert_eq!(u.waiting(), 0);
            prop_assert_eq!(back.len(), given.len());
            prop_assert!(back.values().all(|&n| n == 1));
        }
    }

    fn check(
        u: &mut UpdateRequests,
        now: Instant,
        timeout: Duration,
        given: &BTreeMap<u64, (Instant, FlowKey)>,
        back: &mut BTreeMap<u64, u32>,
    ) -> Result<(), TestCaseError> {
        while let Some(o) = u.poll_output() {
            if let UrOutput::Resolved {
                packet,
                flow,
                waited,
                ..
            } = o
            {
                let g = given.get(&packet.0);
                prop_assert!(g.is_some());
                let (at, f) = *g.unwrap();
                prop_assert_eq!(f, flow);
                prop_assert_eq!(waited, now - at);
                prop_assert!(waited <= timeout);
                *back.entry(packet.0).or_insert(0) += 1;
            }
        }
        Ok(())
    }
}
