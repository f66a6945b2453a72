//! Redundant sync networks: which of a member's sync links carries the delta stream to each
//! other member, as a sans-IO selector.
//!
//! Links are configured in preference order. Heartbeats go out on every link (so the state of
//! a backup is always known); the delta stream to a member goes on its *route*: the most
//! preferred link on which that member is alive. A link is alive for a member while datagrams
//! from it arrive on that link within `dead_after`; a local carrier loss kills the link for
//! every member at once.
//!
//! Switching:
//! - the route fails (dead or carrier down): move at once to the next live link and emit
//!   [`LinkOutput::Resend`] from the member's cumulative ack, so the records that were in flight
//!   on the failed link go again on the new one;
//! - a more preferred link comes back: move back once it has been alive for `hold_down` without
//!   interruption (a flapping link does not pull the stream back and forth). The old link still
//!   works, so its in-flight records arrive; nothing is resent.
//!
//! No lost or duplicated update: sequence numbers belong to the sender's stream, not to a link.
//! The receiver's stream (`recv::RecvStream`) delivers each sequence number once, in order,
//! whichever link brought it, drops duplicates of a resend and NACKs gaps; the sender keeps
//! every record until acknowledged. This module only decides where to send and when to resend.
//!
//! Invariants: a member's `route` is `None` or a link with carrier that is alive for it;
//! after every input the route is the most preferred live link unless that link is waiting out
//! its hold-down (then the route is a live link too).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::MemberId;

/// Index of a link in the configured preference order (0 is preferred).
pub type LinkId = u8;

/// Most sync links a member has.
pub const MAX_SYNC_LINKS: usize = 4;
/// Default time a recovered preferred link must stay alive before the stream moves back.
pub const DEFAULT_HOLD_DOWN: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncLinksConfig {
    /// Link names (interfaces or labels) in preference order; at most [`MAX_SYNC_LINKS`].
    pub links: Vec<String>,
    /// A link is dead for a member after this long without a datagram from it on that link
    /// (the cluster's dead time: heartbeat interval x dead_after).
    pub dead_after: Duration,
    pub hold_down: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkInput {
    /// A valid (authenticated) datagram from `member` arrived on `link`; `ack` when it carried
    /// the member's cumulative ack of our stream.
    Received {
        member: MemberId,
        link: LinkId,
        bytes: usize,
        ack: Option<u64>,
    },
    /// We sent a datagram to `member` on `link` carrying `records` delta records.
    Sent {
        member: MemberId,
        link: LinkId,
        bytes: usize,
        records: u64,
    },
    /// The local interface of `link` lost or regained carrier.
    Carrier { link: LinkId, up: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SwitchReason {
    /// The first live link for a member.
    Initial,
    /// The route died (no datagram within the dead time, or carrier lost).
    Failed,
    /// A more preferred link has been alive for the hold-down time.
    Preferred,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkOutput {
    /// The delta stream to `member` now goes on `to` (`None`: no live link to it).
    Switched {
        member: MemberId,
        from: Option<LinkId>,
        to: Option<LinkId>,
        reason: SwitchReason,
    },
    /// Resend to `member`, on `link`, every record of our stream from `from` (its cumulative
    /// ack) up to what was sent: it may have been lost in flight on the failed link.
    Resend {
        member: MemberId,
        link: LinkId,
        from: u64,
    },
}

/// Counters of one link for `rampart cluster sync-stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStats {
    pub name: String,
    pub carrier: bool,
    /// Members alive on this link now.
    pub members_alive: u32,
    /// Members whose stream this link carries now.
    pub routes: u32,
    pub datagrams_sent: u64,
    pub bytes_sent: u64,
    pub records_sent: u64,
    pub datagrams_received: u64,
    pub bytes_received: u64,
    /// Times the link died for a member (dead time or carrier).
    pub failures: u64,
    /// Times a member's stream moved onto / off this link.
    pub switched_to: u64,
    pub switched_away: u64,
}

#[derive(Clone, Copy, Default)]
struct PathState {
    last_heard: Option<Instant>,
    alive: bool,
    /// Alive without interruption since then.
    alive_since: Option<Instant>,
}

struct PeerLinks {
    member: MemberId,
    paths: [PathState; MAX_SYNC_LINKS],
    route: Option<LinkId>,
    /// Its cumulative ack of our stream.
    acked: u64,
}

/// See the module documentation.
pub struct SyncLinks {
    config: SyncLinksConfig,
    carrier: [bool; MAX_SYNC_LINKS],
    peers: Vec<PeerLinks>,
    stats: Vec<LinkStats>,
    outputs: VecDeque<LinkOutput>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncLinksError {
    #[error("a member needs 1 to {MAX_SYNC_LINKS} sync links, {0} configured")]
    LinkCount(usize),
}

impl SyncLinks {
    /// A selector for the links of `config` towards `members` (the other members).
    pub fn new(config: SyncLinksConfig, members: &[MemberId]) -> Result<SyncLinks, SyncLinksError> {
        let n = config.links.len();
        if n == 0 || n > MAX_SYNC_LINKS {
            return Err(SyncLinksError::LinkCount(n));
        }
        let stats = config
            .links
            .iter()
            .map(|name| LinkStats {
                name: name.clone(),
                carrier: true,
                ..LinkStats::default()
            })
            .collect();
        Ok(SyncLinks {
            carrier: [true; MAX_SYNC_LINKS],
            peers: members
                .iter()
                .map(|&member| PeerLinks {
                    member,
                    paths: [PathState::default(); MAX_SYNC_LINKS],
                    route: None,
                    acked: 0,
                })
                .collect(),
            stats,
            outputs: VecDeque::new(),
            config,
        })
    }

    fn n_links(&self) -> usize {
        self.config.links.len()
    }

    /// The link that carries the delta stream to `member`. Before any link is known alive
    /// (or when none is), the most preferred link with carrier, so nothing is stranded; `None`
    /// for an unknown member or when every link lost carrier.
    pub fn route(&self, member: MemberId) -> Option<LinkId> {
        let p = self.peers.iter().find(|p| p.member == member)?;
        p.route.or_else(|| {
            (0..self.n_links())
                .find(|&l| self.carrier[l])
                .map(|l| l as LinkId)
        })
    }

    /// Whether the local interface of `link` has carrier (unknown links: false).
    pub fn has_carrier(&self, link: LinkId) -> bool {
        usize::from(link) < self.n_links() && self.carrier[usize::from(link)]
    }

    /// Every link with carrier (heartbeats go on each).
    pub fn heartbeat_links(&self) -> impl Iterator<Item = LinkId> + '_ {
        (0..self.n_links())
            .filter(|&l| self.carrier[l])
            .map(|l| l as LinkId)
    }

    pub fn handle(&mut self, now: Instant, input: LinkInput) {
        match input {
            LinkInput::Received {
                member,
                link,
                bytes,
                ack,
            } => {
                let l = usize::from(link);
                if l >= self.n_links() {
                    return;
                }
                let s = &mut self.stats[l];
                s.datagrams_received += 1;
                s.bytes_received += bytes as u64;
                let carrier = self.carrier[l];
                let Some(pi) = self.peers.iter().position(|p| p.member == member) else {
                    return;
                };
                let p = &mut self.peers[pi];
                if let Some(a) = ack {
                    p.acked = p.acked.max(a);
                }
                let path = &mut p.paths[l];
                path.last_heard = Some(now);
                if carrier && !path.alive {
                    path.alive = true;
                    path.alive_since = Some(now);
                }
                self.evaluate(now, pi);
            }
            LinkInput::Sent {
                link,
                bytes,
                records,
                ..
            } => {
                if let Some(s) = self.stats.get_mut(usize::from(link)) {
                    s.datagrams_sent += 1;
                    s.bytes_sent += bytes as u64;
                    s.records_sent += records;
                }
            }
            LinkInput::Carrier { link, up } => {
                let l = usize::from(link);
                if l >= self.n_links() || self.carrier[l] == up {
                    return;
                }
                self.carrier[l] = up;
                if !up {
                    for pi in 0..self.peers.len() {
                        self.kill(pi, l);
                    }
                }
                // Carrier back: the link is alive again for a member once it is heard on it.
                for pi in 0..self.peers.len() {
                    self.evaluate(now, pi);
                }
            }
        }
    }

    fn kill(&mut self, pi: usize, l: usize) {
        let path = &mut self.peers[pi].paths[l];
        if path.alive {
            path.alive = false;
            path.alive_since = None;
            self.stats[l].failures += 1;
        }
    }

    /// Links whose member went silent for the dead time die; routes follow.
    pub fn handle_timeout(&mut self, now: Instant) {
        for pi in 0..self.peers.len() {
            for l in 0..self.n_links() {
                let path = self.peers[pi].paths[l];
                if path.alive
                    && path
                        .last_heard
                        .is_some_and(|t| now >= t + self.config.dead_after)
                {
                    self.kill(pi, l);
                }
            }
            self.evaluate(now, pi);
        }
    }

    /// Re-chooses the route of peer `pi` (see the module documentation).
    fn evaluate(&mut self, now: Instant, pi: usize) {
        let n = self.n_links();
        let p = &self.peers[pi];
        let best = (0..n).find(|&l| p.paths[l].alive);
        let current = p.route.map(usize::from);
        let current_alive = current.is_some_and(|c| p.paths[c].alive);
        let (to, reason) = match (current, best) {
            (c, b) if c == b => return,
            (None, b) => (b, SwitchReason::Initial),
            (Some(_), b) if !current_alive => (b, SwitchReason::Failed),
            (Some(c), Some(b)) if b < c => {
                let since = p.paths[b].alive_since.unwrap_or(now);
                if now < since + self.config.hold_down {
                    return;
                }
                (Some(b), SwitchReason::Preferred)
            }
            // The route is alive and nothing better: stay.
            _ => return,
        };
        let member = p.member;
        let acked = p.acked;
        let from = current.map(|c| c as LinkId);
        let to = to.map(|t| t as LinkId);
        self.peers[pi].route = to;
        if let Some(c) = current {
            self.stats[c].switched_away += 1;
        }
        if let Some(t) = to {
            self.stats[usize::from(t)].switched_to += 1;
        }
        self.outputs.push_back(LinkOutput::Switched {
            member,
            from,
            to,
            reason,
        });
        if let (SwitchReason::Failed, Some(link)) = (reason, to) {
            self.outputs.push_back(LinkOutput::Resend {
                member,
                link,
                from: acked,
            });
        }
    }

    /// The next dead-time expiry or hold-down end.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut consider = |x: Instant| t = Some(t.map_or(x, |t| t.min(x)));
        for p in &self.peers {
            for path in &p.paths[..self.n_links()] {
                if path.alive {
                    if let Some(h) = path.last_heard {
                        consider(h + self.config.dead_after);
                    }
                }
            }
            if let Some(r) = p.route {
                let better = (0..usize::from(r)).find(|&l| p.paths[l].alive);
                if let Some(since) = better.and_then(|b| p.paths[b].alive_since) {
                    consider(since + self.config.hold_down);
                }
            }
        }
        t
    }

    pub fn poll_output(&mut self) -> Option<LinkOutput> {
        self.outputs.pop_front()
    }

    /// Per-link counters and gauges.
    pub fn stats(&self) -> Vec<LinkStats> {
        let mut out = self.stats.clone();
        for (l, s) in out.iter_mut().enumerate() {
            s.carrier = self.carrier[l];
            s.members_alive = self.peers.iter().filter(|p| p.paths[l].alive).count() as u32;
            s.routes = self
                .peers
                .iter()
                .filter(|p| p.route == Some(l as LinkId))
                .count() as u32;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recv::{Accept, RecvStream};
    use crate::RecordKind;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn config() -> SyncLinksConfig {
        SyncLinksConfig {
            links: vec!["sync0".into(), "sync1".into()],
            dead_after: ms(300),
            hold_down: ms(1000),
        }
    }

    fn drain(s: &mut SyncLinks) -> Vec<LinkOutput> {
        std::iter::from_fn(|| s.poll_output()).collect()
    }

    fn heard(s: &mut SyncLinks, now: Instant, member: MemberId, link: LinkId) {
        s.handle(
            now,
            LinkInput::Received {
                member,
                link,
                bytes: 100,
                ack: None,
            },
        );
    }

    #[test]
    fn config_limits() {
        let mut c = config();
        c.links.clear();
        assert_eq!(
            SyncLinks::new(c, &[2]).err(),
            Some(SyncLinksError::LinkCount(0))
        );
        let mut c = config();
        c.links = vec!["a".into(); 5];
        assert_eq!(
            SyncLinks::new(c, &[2]).err(),
            Some(SyncLinksError::LinkCount(5))
        );
    }

    #[test]
    fn initial_route_failover_and_hold_down_back() {
        let t0 = Instant::now();
        let mut s = SyncLinks::new(config(), &[2, 3]).unwrap();
        assert_eq!(s.route(2), Some(0), "optimistic before anything is heard");
        assert_eq!(s.route(9), None);
        // Member 2 is heard on the backup first, then on the primary.
        heard(&mut s, t0, 2, 1);
        heard(&mut s, t0 + ms(10), 2, 0);
        assert_eq!(
            drain(&mut s),
            [LinkOutput::Switched {
                member: 2,
                from: None,
                to: Some(1),
                reason: SwitchReason::Initial
            }]
        );
        assert_eq!(
            s.route(2),
            Some(1),
            "the primary must first outlive the hold-down"
        );
        assert_eq!(
            s.poll_timeout(),
            Some(t0 + ms(300)),
            "dead time of the backup comes first"
        );
        // Keep both alive; at 1010 ms the primary has been up for the hold-down.
        for i in 1..=10 {
            heard(&mut s, t0 + ms(100 * i), 2, 0);
            heard(&mut s, t0 + ms(100 * i), 2, 1);
            s.handle_timeout(t0 + ms(100 * i));
        }
        assert_eq!(drain(&mut s), []);
        s.handle_timeout(t0 + ms(1010));
        assert_eq!(
            drain(&mut s),
            [LinkOutput::Switched {
                member: 2,
                from: Some(1),
                to: Some(0),
                reason: SwitchReason::Preferred
            }]
        );
        // The primary goes silent: dead 300 ms after it was last heard (1000), the stream
        // moves to the backup at once and resends from member 2's ack.
        s.handle(
            t0 + ms(1050),
            LinkInput::Received {
                member: 2,
                link: 1,
                bytes: 60,
                ack: Some(500),
            },
        );
        for i in 11..=13 {
            heard(&mut s, t0 + ms(100 * i), 2, 1);
            s.handle_timeout(t0 + ms(100 * i));
        }
        assert_eq!(
            drain(&mut s),
            [
                LinkOutput::Switched {
                    member: 2,
                    from: Some(0),
                    to: Some(1),
                    reason: SwitchReason::Failed
                },
                LinkOutput::Resend {
                    member: 2,
                    link: 1,
                    from: 500
                },
            ]
        );
        let st = s.stats();
        assert_eq!(
            (st[0].failures, st[0].switched_to, st[0].switched_away),
            (1, 1, 1)
        );
        assert_eq!(
            (st[1].routes, st[1].members_alive, st[0].members_alive),
            (1, 1, 0)
        );
        assert_eq!(
            s.route(3),
            Some(0),
            "member 3 never heard: optimistic default"
        );
    }

    #[test]
    fn flapping_primary_restarts_the_hold_down_and_carrier_loss_is_immediate() {
        let t0 = Instant::now();
        let mut s = SyncLinks::new(config(), &[2]).unwrap();
        heard(&mut s, t0, 2, 1);
        drain(&mut s);
        // The primary comes and goes every 400 ms: never alive for 1 s, never the route.
        let mut t = t0;
        for cycle in 0..5u64 {
            heard(&mut s, t0 + ms(cycle * 400), 2, 0);
            while t < t0 + ms(cycle * 400 + 399) {
                t += ms(50);
                heard(&mut s, t, 2, 1);
                s.handle_timeout(t);
            }
        }
        assert_eq!(s.route(2), Some(1));
        assert!(drain(&mut s).is_empty());
        assert!(s.stats()[0].failures >= 4);
        // Carrier loss on the backup: no live link is left.
        s.handle(t, LinkInput::Carrier { link: 1, up: false });
        assert_eq!(
            drain(&mut s),
            [LinkOutput::Switched {
                member: 2,
                from: Some(1),
                to: None,
                reason: SwitchReason::Failed
            }]
        );
        assert_eq!(s.route(2), Some(0), "fallback: the first link with carrier");
        heard(&mut s, t + ms(1), 2, 1);
        assert!(
            drain(&mut s).is_empty(),
            "no carrier: heard on it does not revive it"
        );
        s.handle(t + ms(2), LinkInput::Carrier { link: 1, up: true });
        heard(&mut s, t + ms(3), 2, 1);
        assert!(matches!(
            drain(&mut s)[..],
            [LinkOutput::Switched {
                to: Some(1),
                reason: SwitchReason::Initial,
                ..
            }]
        ));
    }

    /// A simulated link: datagrams in flight with their arrival time; `cut` drops everything
    /// in flight and everything sent while cut.
    struct Wire {
        latency: Duration,
        cut: bool,
        flight: VecDeque<(Instant, Msg)>,
    }

    #[derive(Clone)]
    enum Msg {
        /// Records `from..to` (the body of record `s` is `s` as bytes).
        Data { from: u64, to: u64 },
        /// The receiver's heartbeat with its cumulative ack.
        Heartbeat { ack: u64 },
    }

    impl Wire {
        fn send(&mut self, now: Instant, m: Msg) {
            if !self.cut {
                self.flight.push_back((now + self.latency, m));
            }
        }
        fn arrived(&mut self, now: Instant) -> Vec<Msg> {
            let mut out = Vec::new();
            while self.flight.front().is_some_and(|(t, _)| *t <= now) {
                out.push(self.flight.pop_front().unwrap().1);
            }
            out
        }
    }

    struct Sim {
        seqs: Vec<u64>,
        bodies_ok: bool,
        duplicates: u64,
        outputs: Vec<(u64, LinkOutput)>,
        stats: Vec<LinkStats>,
        route: Option<LinkId>,
    }

    /// One sender, one receiver, two links with one-way `latency` ms; the sender writes one
    /// record per ms for `total` ms and the run lasts `steps` ms. `cuts` are (link, from, to)
    /// ms: the link drops everything in flight at `from` and everything sent until `to`.
    /// `loss` per mille of datagrams are lost on both links in both directions. The receiver
    /// sends a heartbeat with its cumulative ack every 100 ms on every link; the sender
    /// resends from the ack when a heartbeat shows the ack stalled (the engine's NACK and
    /// tail-probe path) and on the selector's `Resend`.
    fn simulate(
        total: u64,
        steps: u64,
        latency: [u64; 2],
        cuts: &[(usize, u64, u64)],
        loss: u32,
        seed: u64,
    ) -> Sim {
        let t0 = Instant::now();
        let mut links = SyncLinks::new(config(), &[2]).unwrap();
        let wire = |l: u64| Wire {
            latency: ms(l),
            cut: false,
            flight: VecDeque::new(),
        };
        let mut wires = [wire(latency[0]), wire(latency[1])];
        let mut back = [wire(latency[0]), wire(latency[1])];
        let mut x = seed | 1;
        let mut lost = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 1000) < u64::from(loss)
        };
        let mut rx = RecvStream::default();
        rx.anchor(0);
        let mut delivered = VecDeque::new();
        let mut duplicates = 0u64;
        let mut next_seq = 0u64;
        let mut last_ack = [u64::MAX; 2];
        let mut outputs = Vec::new();
        for step in 0..steps {
            let now = t0 + ms(step);
            for &(l, from, to) in cuts {
                if step == from {
                    for w in [&mut wires[l], &mut back[l]] {
                        w.cut = true;
                        w.flight.clear();
                    }
                }
                if step == to {
                    wires[l].cut = false;
                    back[l].cut = false;
                }
            }
            if step < total {
                let link = links.route(2).unwrap();
                if !lost() {
                    wires[usize::from(link)].send(
                        now,
                        Msg::Data {
                            from: next_seq,
                            to: next_seq + 1,
                        },
                    );
                }
                links.handle(
                    now,
                    LinkInput::Sent {
                        member: 2,
                        link,
                        bytes: 60,
                        records: 1,
                    },
                );
                next_seq += 1;
            }
            for w in &mut wires {
                for m in w.arrived(now) {
                    if let Msg::Data { from, to } = m {
                        for seq in from..to {
                            match rx.accept(
                                &mut delivered,
                                seq,
                                RecordKind::ConnUpsert,
                                seq,
                                &seq.to_be_bytes(),
                            ) {
                                Accept::Duplicate => duplicates += 1,
                                Accept::TooFar => panic!("reorder limit"),
                                _ => {}
                            }
                        }
                    }
                }
            }
            if step % 100 == 0 {
                for b in &mut back {
                    if !lost() {
                        b.send(now, Msg::Heartbeat { ack: rx.next });
                    }
                }
            }
            for l in 0..2 {
                for m in back[l].arrived(now) {
                    if let Msg::Heartbeat { ack } = m {
                        links.handle(
                            now,
                            LinkInput::Received {
                                member: 2,
                                link: l as LinkId,
                                bytes: 80,
                                ack: Some(ack),
                            },
                        );
                        let stalled = ack == last_ack[l];
                        last_ack[l] = ack;
                        let route = links.route(2).unwrap();
                        if stalled && ack < next_seq && !lost() {
                            wires[usize::from(route)].send(
                                now,
                                Msg::Data {
                                    from: ack,
                                    to: next_seq.min(ack + 200),
                                },
                            );
                        }
                    }
                }
            }
            links.handle_timeout(now);
            while let Some(o) = links.poll_output() {
                if let LinkOutput::Resend { link, from, .. } = o {
                    wires[usize::from(link)].send(now, Msg::Data { from, to: next_seq });
                }
                outputs.push((step, o));
            }
        }
        Sim {
            seqs: delivered.iter().map(|d| d.seq).collect(),
            bodies_ok: delivered.iter().all(|d| d.body == d.seq.to_be_bytes()),
            duplicates,
            outputs,
            stats: links.stats(),
            route: links.route(2),
        }
    }

    /// The primary is cut at 700 ms with records in flight and restored at 1500 ms, while
    /// the sender writes one record per millisecond for 3 s. The receiver must deliver every
    /// record exactly once, in order; the stream moves to the backup on the failure (resending
    /// what was in flight) and back after the hold-down (with records in flight on the backup).
    #[test]
    fn switch_over_with_in_flight_updates_loses_and_duplicates_nothing() {
        let total = 3000u64;
        let sim = simulate(total, 6000, [1, 7], &[(0, 700, 1500)], 0, 1);
        assert_eq!(
            sim.seqs,
            (0..total).collect::<Vec<_>>(),
            "every update once, in order"
        );
        assert!(sim.bodies_ok);
        assert!(
            sim.duplicates > 0,
            "the resend overlapped what had arrived: duplicates were dropped"
        );
        // The failover: about the dead time after the last heartbeat heard on the primary.
        let fail = sim
            .outputs
            .iter()
            .find(|(_, o)| {
                matches!(
                    o,
                    LinkOutput::Switched {
                        reason: SwitchReason::Failed,
                        ..
                    }
                )
            })
            .expect("failed over");
        assert!((900..=1100).contains(&fail.0), "failover at {} ms", fail.0);
        assert!(sim
            .outputs
            .iter()
            .any(|(_, o)| matches!(o, LinkOutput::Resend { link: 1, .. })));
        // Back to the primary no earlier than the hold-down after it was heard again.
        let back_at = sim
            .outputs
            .iter()
            .find(|(_, o)| {
                matches!(
                    o,
                    LinkOutput::Switched {
                        reason: SwitchReason::Preferred,
                        ..
                    }
                )
            })
            .expect("moved back")
            .0;
        assert!(
            (2500..=2700).contains(&back_at),
            "moved back at {back_at} ms"
        );
        assert_eq!(sim.route, Some(0));
        let st = &sim.stats;
        assert!(
            st[1].records_sent > 1000,
            "the backup carried the outage: {st:?}"
        );
        assert_eq!(
            (st[0].failures, st[1].switched_to, st[1].switched_away),
            (1, 1, 1)
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Any schedule of cuts on either link (both at once included), any latencies, up to
        /// 5 % loss: once the links are back, every record arrives exactly once, in order.
        #[test]
        fn any_cut_schedule_delivers_every_record_once_in_order(
            latency in (1u64..60, 1u64..60),
            cuts in proptest::collection::vec((0usize..2, 0u64..2500, 1u64..1500), 0..4),
            loss in 0u32..=50,
            seed in proptest::prelude::any::<u64>(),
        ) {
            let cuts: Vec<(usize, u64, u64)> = cuts.into_iter().map(|(l, from, len)| (l, from, from + len)).collect();
            let total = 2000u64;
            let sim = simulate(total, 9000, [latency.0, latency.1], &cuts, loss, seed);
            proptest::prop_assert_eq!(sim.seqs, (0..total).collect::<Vec<_>>());
            proptest::prop_assert!(sim.bodies_ok);
        }
    }
}
