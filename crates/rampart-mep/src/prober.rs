//! The satellite side of probing: one state machine per entry point (schedule, outstanding
//! nonces, timeout, misses, RTT estimate, up/down), owned by [`crate::Mep`].
//!
//! Rules (docs/mep.md): every entry point gets a probe every `interval` while it answers. A
//! probe unanswered after `max(timeout, 3 x srtt)` is a miss and is re-sent at once; after
//! `misses` consecutive misses the entry point is down (and is then probed every `interval`
//! again; one answered probe makes it up). A reply counts only if it carries the nonce of a
//! probe still outstanding to that entry point (at most `misses` outstanding nonces are
//! remembered) and its MAC verifies.
//!
//! Details this module fixes:
//! - A *round* starts every `interval` (measured from the start of the previous round) and
//!   holds the first probe and its re-sends; the next round waits until this one is answered
//!   or the entry point is down. So the time from the last answered probe to the down verdict
//!   is at most `interval + misses x effective timeout`.
//! - The effective timeout is `max(timeout, 3 x srtt)`, capped at `max(timeout, interval)`
//!   (a very late reply must not stretch failure detection without bound).
//! - srtt is smoothed as in RFC 6298: the first sample is taken as is, then
//!   `srtt = 7/8 srtt + 1/8 sample`. Every probe has its own nonce, so every sample is
//!   unambiguous (no Karn problem with re-sends).
//! - An answer retires the answered probe and every older one; newer outstanding probes stay
//!   (their replies are still valid, and only add RTT samples).
//! - Modes: `Rampart` sends datagrams (an entry point configured `Rampart` without a key is
//!   probed as `Ike`: configuration validation refuses that, but the engine never panics on
//!   it); `Ike` asks the node for IKE liveness ([`Transmit::IkeProbe`]) and counts a probe
//!   sent at `t` as answered when the node reports an authenticated IKE message heard after
//!   `t`; `Auto` sends both (datagrams only with a key) until the first valid Rampart reply,
//!   then datagrams only. One probe attempt counts once in `probes_sent` whatever it sends.
//! - A reply is matched on its source address (IP only; the port may be rewritten by NAT)
//!   and then on its MAC and nonce; entry points sharing an address are told apart by the
//!   nonce. Checks and the counter a refusal lands in: no entry point at the address
//!   (`unknown_source`, counted by the prober as a whole), not a well-formed reply
//!   (`malformed`), no key of an entry point there verifies the MAC (`forged`), the nonce is
//!   not outstanding (`replayed`).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use rampart_crypto::Rng;

use crate::config::{EntryPointConfig, EntryPointId, ProbeMode, ProbeSettings};
use crate::engine::Transmit;
use crate::probe::{self, Nonce, ProbeError, ProbeKind, NONCE_LEN, PROBE_LEN};
use crate::responder::count;
use crate::status::{EntryPointStatus, ProbeState, RejectCounters};

/// Smallest timeout and interval the prober works with (a zero would spin).
const MIN_PERIOD: Duration = Duration::from_millis(1);

/// An entry point's probe verdict changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeChange {
    Up {
        entry_point: EntryPointId,
        rtt: Duration,
    },
    Down {
        entry_point: EntryPointId,
        misses: u32,
    },
}

/// One probe sent (datagram, IKE liveness request, or both) and not yet answered or retired.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    sent: Instant,
    /// The datagram's nonce, if a datagram went out.
    nonce: Option<Nonce>,
    /// Whether an IKE liveness request went out.
    ike: bool,
}

/// Probe state of one entry point.
struct Entry {
    id: EntryPointId,
    remote: SocketAddr,
    local: Option<IpAddr>,
    key: Option<hmac::Key>,
    mode: ProbeMode,
    /// Auto: a valid Rampart reply was seen; IKE liveness is no longer asked for.
    known_rampart: bool,
    state: ProbeState,
    since_change: Option<Instant>,
    /// Start of the next round (when no round is in flight).
    next_round: Instant,
    /// Timeout of the newest attempt of the round in flight; `None`: no round in flight.
    deadline: Option<Instant>,
    /// Unanswered attempts, oldest first. Invariant: `len() <= misses`.
    attempts: VecDeque<Attempt>,
    /// Consecutive misses.
    misses: u32,
    last_rtt: Option<Duration>,
    srtt: Option<Duration>,
    probes_sent: u64,
    replies: u64,
    probes_missed: u64,
    rejected: RejectCounters,
    ups: u64,
    downs: u64,
}

impl Entry {
    fn uses_rampart(&self) -> bool {
        self.key.is_some() && self.mode != ProbeMode::Ike
    }

    fn uses_ike(&self) -> bool {
        match self.mode {
            ProbeMode::Ike => true,
            ProbeMode::Rampart => self.key.is_none(),
            ProbeMode::Auto => self.key.is_none() || !self.known_rampart,
        }
    }

    fn probing_with(&self) -> &'static str {
        match (self.uses_rampart(), self.uses_ike()) {
            (true, true) => "rampart+ike",
            (true, false) => "rampart",
            _ => "ike",
        }
    }
}

pub(crate) struct Prober {
    interval: Duration,
    timeout: Duration,
    /// At least 1.
    misses: u32,
    entries: Vec<Entry>,
    /// Canonical IP address to the entry points there (indices into `entries`).
    by_address: HashMap<IpAddr, Vec<usize>>,
    rng: Rng,
    transmits: VecDeque<Transmit>,
    changes: VecDeque<ProbeChange>,
    /// Replies from addresses of no entry point.
    unmatched: RejectCounters,
}

impl Prober {
    /// Schedules the first probe of every entry point at `now`. Entry point `i` of
    /// `entry_points` is `EntryPointId(i)`.
    pub(crate) fn new(
        settings: &ProbeSettings,
        entry_points: &[EntryPointConfig],
        now: Instant,
        rng: Rng,
    ) -> Prober {
        let misses = settings.misses.max(1);
        let mut by_address: HashMap<IpAddr, Vec<usize>> = HashMap::new();
        let entries = entry_points
            .iter()
            .enumerate()
            .map(|(i, ep)| {
                by_address
                    .entry(ep.address.to_canonical())
                    .or_default()
                    .push(i);
                Entry {
                    id: EntryPointId(i as u32),
                    remote: SocketAddr::new(ep.address, settings.port),
                    local: ep.local,
                    key: ep.key.as_ref().map(|k| k.hmac_key()),
                    mode: ep.probe,
                    known_rampart: false,
                    state: ProbeState::Unknown,
                    since_change: None,
                    next_round: now,
                    deadline: None,
                    attempts: VecDeque::with_capacity(misses as usize),
                    misses: 0,
                    last_rtt: None,
                    srtt: None,
                    probes_sent: 0,
                    replies: 0,
                    probes_missed: 0,
                    rejected: RejectCounters::default(),
                    ups: 0,
                    downs: 0,
                }
            })
            .collect();
        Prober {
            interval: settings.interval.max(MIN_PERIOD),
            timeout: settings.timeout.max(MIN_PERIOD),
            misses,
            entries,
            by_address,
            rng,
            transmits: VecDeque::new(),
            changes: VecDeque::new(),
            unmatched: RejectCounters::default(),
        }
    }

    /// `max(timeout, 3 x srtt)`, at most `max(timeout, interval)`.
    fn effective_timeout(&self, e: &Entry) -> Duration {
        let grown = e.srtt.map_or(self.timeout, |s| self.timeout.max(s * 3));
        grown.min(self.timeout.max(self.interval))
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        for i in 0..self.entries.len() {
            loop {
                let e = &self.entries[i];
                match e.deadline {
                    Some(d) if now >= d => self.miss(i, now),
                    Some(_) => break,
                    None if now >= e.next_round => {
                        self.entries[i].next_round = now + self.interval;
                        self.send_attempt(i, now);
                    }
                    None => break,
                }
            }
        }
    }

    /// The newest attempt of entry `i` timed out.
    fn miss(&mut self, i: usize, now: Instant) {
        let limit = self.misses;
        let e = &mut self.entries[i];
        e.deadline = None;
        e.misses = e.misses.saturating_add(1);
        e.probes_missed += 1;
        if e.state != ProbeState::Down && e.misses >= limit {
            e.state = ProbeState::Down;
            e.since_change = Some(now);
            e.downs += 1;
            self.changes.push_back(ProbeChange::Down {
                entry_point: e.id,
                misses: e.misses,
            });
        }
        if e.state != ProbeState::Down {
            self.send_attempt(i, now);
        }
    }

    /// Sends one probe attempt to entry `i` (datagram and/or IKE request) and arms its timeout.
    fn send_attempt(&mut self, i: usize, now: Instant) {
        let timeout = self.effective_timeout(&self.entries[i]);
        let e = &mut self.entries[i];
        let mut attempt = Attempt {
            sent: now,
            nonce: None,
            ike: false,
        };
        if let (true, Some(key)) = (e.uses_rampart(), &e.key) {
            let mut nonce = [0u8; NONCE_LEN];
            self.rng.fill(&mut nonce);
            let mut data = vec![0u8; PROBE_LEN];
            probe::encode(key, ProbeKind::Request, &nonce, &mut data);
            attempt.nonce = Some(nonce);
            self.transmits.push_back(Transmit::Probe {
                entry_point: e.id,
                local: e.local,
                remote: e.remote,
                data,
            });
        }
        if e.uses_ike() {
            attempt.ike = true;
            self.transmits
                .push_back(Transmit::IkeProbe { entry_point: e.id });
        }
        if e.attempts.len() >= self.misses as usize {
            e.attempts.pop_front();
        }
        e.attempts.push_back(attempt);
        e.probes_sent += 1;
        e.deadline = Some(now + timeout);
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.entries
            .iter()
            .map(|e| e.deadline.unwrap_or(e.next_round))
            .min()
    }

    /// Probe datagrams and IKE probe requests due.
    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// A reply from `from`: which entry point answered, or why it was refused (counted).
    pub(crate) fn handle_reply(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
    ) -> Result<EntryPointId, ProbeError> {
        let Some(candidates) = self.by_address.get(&from.ip().to_canonical()) else {
            count(&mut self.unmatched, ProbeError::UnknownSource);
            return Err(ProbeError::UnknownSource);
        };
        let first = candidates[0];
        let nonce = match probe::parse(data, ProbeKind::Reply) {
            Ok(n) => n,
            Err(e) => {
                count(&mut self.entries[first].rejected, e);
                return Err(e);
            }
        };
        let mut authentic = None;
        for &i in candidates {
            let e = &self.entries[i];
            if !e.key.as_ref().is_some_and(|k| probe::verify(k, data)) {
                continue;
            }
            match e.attempts.iter().position(|a| a.nonce == Some(nonce)) {
                Some(pos) => {
                    Self::answered(&mut self.entries[i], &mut self.changes, pos, now, now, true);
                    return Ok(EntryPointId(i as u32));
                }
                None => {
                    authentic.get_or_insert(i);
                }
            }
        }
        let (i, err) = match authentic {
            Some(i) => (i, ProbeError::Replayed),
            None => (first, ProbeError::Forged),
        };
        count(&mut self.entries[i].rejected, err);
        Err(err)
    }

    /// Attempt `pos` of `e` was answered at `at` (noticed at `now`): retire it and every
    /// older attempt, end the round, take the RTT sample, and make the entry point up.
    fn answered(
        e: &mut Entry,
        changes: &mut VecDeque<ProbeChange>,
        pos: usize,
        at: Instant,
        now: Instant,
        rampart: bool,
    ) {
        let sent = e.attempts[pos].sent;
        e.attempts.drain(..=pos);
        let rtt = at.saturating_duration_since(sent);
        e.last_rtt = Some(rtt);
        e.srtt = Some(match e.srtt {
            None => rtt,
            Some(s) => s - s / 8 + rtt / 8,
        });
        e.misses = 0;
        e.replies += 1;
        e.deadline = None;
        if rampart {
            e.known_rampart = true;
        }
        if e.state != ProbeState::Up {
            e.state = ProbeState::Up;
            e.since_change = Some(now);
            e.ups += 1;
            changes.push_back(ProbeChange::Up {
                entry_point: e.id,
                rtt,
            });
        }
    }

    /// IKE probing: the last authenticated message from the entry point (`None`: no IKE SA).
    /// Answers the newest outstanding IKE attempt sent before `last_heard` (a time after
    /// `now` is taken as `now`).
    pub(crate) fn handle_ike_heard(
        &mut self,
        now: Instant,
        entry_point: EntryPointId,
        last_heard: Option<Instant>,
    ) {
        let (Some(e), Some(heard)) = (self.entries.get_mut(entry_point.0 as usize), last_heard)
        else {
            return;
        };
        let heard = heard.min(now);
        if let Some(pos) = e.attempts.iter().rposition(|a| a.ike && a.sent < heard) {
            Self::answered(e, &mut self.changes, pos, heard, now, false);
        }
    }

    pub(crate) fn poll_change(&mut self) -> Option<ProbeChange> {
        self.changes.pop_front()
    }

    pub(crate) fn is_up(&self, entry_point: EntryPointId) -> bool {
        self.entries
            .get(entry_point.0 as usize)
            .is_some_and(|e| e.state == ProbeState::Up)
    }

    /// Smoothed RTT of an entry point that is up (first-to-respond orders by it).
    pub(crate) fn srtt(&self, entry_point: EntryPointId) -> Option<Duration> {
        self.entries
            .get(entry_point.0 as usize)
            .filter(|e| e.state == ProbeState::Up)
            .and_then(|e| e.srtt)
    }

    /// Replies refused because no entry point has their source address (only
    /// `unknown_source` is ever set; per-entry-point refusals are in [`Self::fill_status`]).
    pub(crate) fn unmatched_rejects(&self) -> RejectCounters {
        self.unmatched
    }

    /// Fills the probe fields of `status` (state, probing_with, RTTs, misses, counters,
    /// ups/downs, since_change_ms); the engine fills the rest. An unknown id leaves it as is.
    pub(crate) fn fill_status(
        &self,
        now: Instant,
        entry_point: EntryPointId,
        status: &mut EntryPointStatus,
    ) {
        let Some(e) = self.entries.get(entry_point.0 as usize) else {
            return;
        };
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        status.state = e.state;
        status.probing_with = e.probing_with().to_string();
        status.last_rtt_us = e.last_rtt.map(us);
        status.srtt_us = e.srtt.map(us);
        status.misses = e.misses;
        status.probes_sent = e.probes_sent;
        status.replies = e.replies;
        status.probes_missed = e.probes_missed;
        status.rejected = e.rejected;
        status.ups = e.ups;
        status.downs = e.downs;
        status.since_change_ms = e.since_change.map(|t| {
            u64::try_from(now.saturating_duration_since(t).as_millis()).unwrap_or(u64::MAX)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProbeKey;
    use proptest::prelude::*;
    use rampart_crypto::Rng;

    const MS: Duration = Duration::from_millis(1);
    const A: [u8; 4] = [198, 51, 100, 1];
    const B: [u8; 4] = [198, 51, 100, 2];

    fn settings() -> ProbeSettings {
        ProbeSettings {
            port: 259,
            interval: Duration::from_secs(1),
            timeout: 150 * MS,
            misses: 3,
        }
    }

    fn ep(name: &str, addr: [u8; 4], mode: ProbeMode, secret: Option<&[u8]>) -> EntryPointConfig {
        EntryPointConfig {
            name: name.into(),
            group: crate::GroupId(0),
            address: addr.into(),
            local: None,
            own_domain: vec![],
            probe: mode,
            key: secret.map(ProbeKey::derive),
        }
    }

    fn from(a: [u8; 4]) -> SocketAddr {
        SocketAddr::from((a, 259))
    }

    const E0: EntryPointId = EntryPointId(0);

    fn one(mode: ProbeMode, secret: Option<&[u8]>, t0: Instant) -> Prober {
        Prober::new(
            &settings(),
            &[ep("m1", A, mode, secret)],
            t0,
            Rng::from_seed([5; 32]),
        )
    }

    /// Drains transmits: the datagrams sent, and how many IKE probes were asked for.
    fn drain(p: &mut Prober) -> (Vec<Vec<u8>>, usize) {
        let (mut dgs, mut ike) = (vec![], 0);
        while let Some(t) = p.poll_transmit() {
            match t {
                Transmit::Probe { data, remote, .. } => {
                    assert_eq!(remote.port(), 259);
                    assert_eq!(data.len(), PROBE_LEN);
                    dgs.push(data);
                }
                Transmit::IkeProbe { .. } => ike += 1,
            }
        }
        (dgs, ike)
    }

    fn reply(secret: &[u8], request: &[u8]) -> Vec<u8> {
        crate::fuzzing::reply_to(&ProbeKey::derive(secret), request)
            .unwrap()
            .to_vec()
    }

    fn status(p: &Prober, now: Instant) -> EntryPointStatus {
        let mut h =
            crate::fuzzing::ProberHarness::new(&settings(), &[], now, [0; 32]).status(now, E0);
        p.fill_status(now, E0, &mut h);
        h
    }

    /// Runs timeouts up to and including `until`, in order; returns the datagrams sent with
    /// their send times, and the time of every change.
    fn run(p: &mut Prober, until: Instant) -> Vec<(Instant, Vec<u8>)> {
        let mut sent = vec![];
        while let Some(t) = p.poll_timeout().filter(|t| *t <= until) {
            p.handle_timeout(t);
            for d in drain(p).0 {
                sent.push((t, d));
            }
        }
        sent
    }

    #[test]
    fn up_after_the_first_reply() {
        let t0 = Instant::now();
        let mut p = one(ProbeMode::Rampart, Some(b"k1"), t0);
        assert_eq!(p.poll_timeout(), Some(t0));
        assert!(!p.is_up(E0));
        assert_eq!(status(&p, t0).state, ProbeState::Unknown);
        p.handle_timeout(t0);
        let (dgs, ike) = drain(&mut p);
        assert_eq!((dgs.len(), ike), (1, 0));
        assert_eq!(peek_kind_of(&dgs[0]), Some(ProbeKind::Request));
        assert_eq!(p.poll_timeout(), Some(t0 + 150 * MS));
        let r = reply(b"k1", &dgs[0]);
        assert_eq!(p.handle_reply(t0 + 20 * MS, from(A), &r), Ok(E0));
        assert_eq!(
            p.poll_change(),
            Some(ProbeChange::Up {
                entry_point: E0,
                rtt: 20 * MS
            })
        );
        assert_eq!(p.poll_change(), None);
        assert!(p.is_up(E0));
        assert_eq!(p.srtt(E0), Some(20 * MS));
        assert_eq!(p.poll_timeout(), Some(t0 + Duration::from_secs(1)));
        let st = status(&p, t0 + 520 * MS);
        assert_eq!(st.state, ProbeState::Up);
        assert_eq!(st.probing_with, "rampart");
        assert_eq!((st.last_rtt_us, st.srtt_us), (Some(20_000), Some(20_000)));
        assert_eq!((st.probes_sent, st.replies, st.ups, st.downs), (1, 1, 1, 0));
        assert_eq!(st.since_change_ms, Some(500));
        // The same reply again is a replay.
        assert_eq!(
            p.handle_reply(t0 + 21 * MS, from(A), &r),
            Err(ProbeError::Replayed)
        );
        assert_eq!(status(&p, t0).rejected.replayed, 1);
    }

    fn peek_kind_of(d: &[u8]) -> Option<ProbeKind> {
        crate::peek_kind(d)
    }

    #[test]
    fn down_after_exactly_misses_misses_then_probed_every_interval_and_up_again() {
        let t0 = Instant::now();
        let s = settings();
        let mut p = one(ProbeMode::Rampart, Some(b"k1"), t0);
        p.handle_timeout(t0);
        let (dgs, _) = drain(&mut p);
        let answered = t0 + 40 * MS;
        p.handle_reply(answered, from(A), &reply(b"k1", &dgs[0]))
            .unwrap();
        p.poll_change();
        // Nothing answers from now on.
        let sent = run(&mut p, t0 + Duration::from_millis(1449));
        let times: Vec<_> = sent.iter().map(|(t, _)| *t - t0).collect();
        // Next round at 1 s, a miss re-sends at once (timeout max(150, 3 x 40) = 150 ms).
        assert_eq!(times, [1000 * MS, 1150 * MS, 1300 * MS]);
        assert!(p.is_up(E0), "two misses are not enough");
        assert_eq!(status(&p, t0).misses, 2);
        let down_at = p.poll_timeout().unwrap();
        assert_eq!(down_at, t0 + 1450 * MS);
        assert!(down_at - answered <= s.interval + s.timeout * s.misses);
        p.handle_timeout(down_at);
        assert_eq!(
            p.poll_change(),
            Some(ProbeChange::Down {
                entry_point: E0,
                misses: 3
            })
        );
        assert!(!p.is_up(E0));
        assert_eq!(p.srtt(E0), None, "srtt is only given while up");
        assert_eq!(drain(&mut p).0.len(), 0, "no re-send once down");
        // Down: one probe per interval, counted as missed, no re-send.
        let sent = run(&mut p, t0 + Duration::from_millis(3100));
        let times: Vec<_> = sent.iter().map(|(t, _)| *t - t0).collect();
        assert_eq!(times, [2000 * MS, 3000 * MS]);
        let st = status(&p, t0 + Duration::from_millis(3100));
        assert_eq!(st.state, ProbeState::Down);
        assert_eq!((st.misses, st.probes_missed, st.probes_sent), (4, 4, 6));
        assert_eq!((st.ups, st.downs), (1, 1));
        assert_eq!(st.since_change_ms, Some(1650));
        assert_eq!(p.poll_change(), None, "down is reported once");
        // The entry point comes back: one answer makes it up.
        let r = reply(b"k1", &sent[1].1);
        assert_eq!(
            p.handle_reply(t0 + Duration::from_millis(3110), from(A), &r),
            Ok(E0)
        );
        assert!(matches!(p.poll_change(), Some(ProbeChange::Up { .. })));
        let st = status(&p, t0 + Duration::from_millis(3110));
        assert_eq!((st.misses, st.ups, st.downs, st.replies), (0, 2, 1, 2));
    }

    #[test]
    fn a_late_reply_to_an_outstanding_resend_still_counts() {
        let t0 = Instant::now();
        let mut p = one(ProbeMode::Rampart, Some(b"k1"), t0);
        let sent = run(&mut p, t0 + 200 * MS);
        assert_eq!(sent.len(), 2, "first probe and its re-send");
        // The reply to the first probe arrives after its timeout: still outstanding.
        let r = reply(b"k1", &sent[0].1);
        assert_eq!(p.handle_reply(t0 + 210 * MS, from(A), &r), Ok(E0));
        assert_eq!(p.srtt(E0), Some(210 * MS));
        // The reply to the re-send is newer, so still valid (another RTT sample).
        let r2 = reply(b"k1", &sent[1].1);
        assert_eq!(p.handle_reply(t0 + 220 * MS, from(A), &r2), Ok(E0));
        assert_eq!(status(&p, t0).last_rtt_us, Some(70_000));
        assert_eq!(status(&p, t0).replies, 2);
    }

    #[test]
    fn timeout_grows_with_srtt_and_is_capped_at_the_interval() {
        let t0 = Instant::now();
        let mut p = one(ProbeMode::Rampart, Some(b"k1"), t0);
        p.handle_timeout(t0);
        let (dgs, _) = drain(&mut p);
        p.handle_reply(t0 + 100 * MS, from(A), &reply(b"k1", &dgs[0]))
            .unwrap();
        let t1 = t0 + Duration::from_secs(1);
        p.handle_timeout(t1);
        let (dgs, _) = drain(&mut p);
        assert_eq!(p.poll_timeout(), Some(t1 + 300 * MS), "3 x srtt of 100 ms");
        // A 200 ms reply: srtt = 7/8 x 100 + 1/8 x 200 = 112.5 ms.
        p.handle_reply(t1 + 200 * MS, from(A), &reply(b"k1", &dgs[0]))
            .unwrap();
        assert_eq!(p.srtt(E0), Some(112_500 * Duration::from_micros(1)));
        let t2 = t0 + Duration::from_secs(2);
        p.handle_timeout(t2);
        drain(&mut p);
        assert_eq!(
            p.poll_timeout(),
            Some(t2 + 337_500 * Duration::from_micros(1))
        );

        let mut p = one(ProbeMode::Rampart, Some(b"k1"), t0);
        p.handle_timeout(t0);
        let (dgs, _) = drain(&mut p);
        // Answered by a late reply to the first probe (after its re-sends): 800 ms RTT.
        run(&mut p, t0 + 400 * MS);
        p.handle_reply(t0 + 800 * MS, from(A), &reply(b"k1", &dgs[0]))
            .unwrap();
        assert_eq!(p.srtt(E0), Some(800 * MS));
        p.handle_timeout(t1);
        drain(&mut p);
        assert_eq!(
            p.poll_timeout(),
            Some(t1 + Duration::from_secs(1)),
            "3 x 800 ms is capped at the interval"
        );
    }

    #[test]
    fn forged_malformed_and_unknown_replies_are_refused_and_counted() {
        let t0 = Instant::now();
        let mut p = one(ProbeMode::Rampart, Some(b"k1"), t0);
        p.handle_timeout(t0);
        let (dgs, _) = drain(&mut p);
        let good = reply(b"k1", &dgs[0]);
        let now = t0 + 10 * MS;
        let wrong_key = reply(b"k2", &dgs[0]);
        assert_eq!(
            p.handle_reply(now, from(A), &wrong_key),
            Err(ProbeError::Forged)
        );
        for bit in [70, 8 * 8 + 3, 8 * 30, 8 * 39 + 7] {
            let mut bad = good.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(
                p.handle_reply(now, from(A), &bad),
                Err(ProbeError::Forged),
                "{bit}"
            );
        }
        assert_eq!(
            p.handle_reply(now, from(A), &good[..39]),
            Err(ProbeError::Malformed)
        );
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(
            p.handle_reply(now, from(A), &longer),
            Err(ProbeError::Malformed)
        );
        // Our own request reflected back is not a reply.
        assert_eq!(
            p.handle_reply(now, from(A), &dgs[0]),
            Err(ProbeError::Malformed)
        );
        assert_eq!(
            p.handle_reply(now, from(B), &good),
            Err(ProbeError::UnknownSource)
        );
        assert!(!p.is_up(E0));
        let st = status(&p, now);
        assert_eq!(
            st.rejected,
            RejectCounters {
                malformed: 3,
                forged: 5,
                replayed: 0,
                unknown_source: 0,
                rate_limited: 0
            }
        );
        assert_eq!(p.unmatched_rejects().unknown_source, 1);
        // The genuine reply (a different port is fine) still works after all that.
        assert_eq!(
            p.handle_reply(now, SocketAddr::from((A, 40000)), &good),
            Ok(E0)
        );
    }

    #[test]
    fn outstanding_nonces_are_bounded_and_the_oldest_retired() {
        let t0 = Instant::now();
        let mut p = one(ProbeMode::Rampart, Some(b"k1"), t0);
        // Never answered: 3 misses (down), then a probe per second.
        let sent = run(&mut p, t0 + Duration::from_secs(10));
        assert!(sent.len() >= 10);
        assert!(p.entries[0].attempts.len() <= 3);
        let n = sent.len();
        for (_, old) in &sent[..n - 3] {
            assert_eq!(
                p.handle_reply(t0 + Duration::from_secs(10), from(A), &reply(b"k1", old)),
                Err(ProbeError::Replayed)
            );
        }
        assert!(!p.is_up(E0));
        assert_eq!(status(&p, t0).rejected.replayed as usize, n - 3);
        // The newest three are remembered; answering the oldest of them retires the others
        // that are older (none) and keeps the newer ones.
        let now = t0 + Duration::from_secs(10);
        assert_eq!(
            p.handle_reply(now, from(A), &reply(b"k1", &sent[n - 3].1)),
            Ok(E0)
        );
        assert_eq!(p.entries[0].attempts.len(), 2);
        assert_eq!(
            p.handle_reply(now, from(A), &reply(b"k1", &sent[n - 1].1)),
            Ok(E0)
        );
        assert_eq!(
            p.handle_reply(now, from(A), &reply(b"k1", &sent[n - 2].1)),
            Err(ProbeError::Replayed),
            "retired by the answer to a newer probe"
        );
    }

    #[test]
    fn ike_mode_asks_the_node_and_counts_messages_heard_after_the_probe() {
        let t0 = Instant::now() + Duration::from_secs(5);
        for (mode, secret) in [
            (ProbeMode::Ike, Some(&b"k1"[..])),
            (ProbeMode::Ike, None),
            (ProbeMode::Rampart, None),
            (ProbeMode::Auto, None),
        ] {
            let mut p = one(mode, secret, t0);
            p.handle_timeout(t0);
            assert_eq!(drain(&mut p), (vec![], 1), "{mode:?}");
            assert_eq!(status(&p, t0).probing_with, "ike");
            p.handle_ike_heard(t0 + 5 * MS, E0, None);
            p.handle_ike_heard(t0 + 5 * MS, E0, Some(t0 - Duration::from_secs(1)));
            p.handle_ike_heard(t0 + 5 * MS, E0, Some(t0));
            assert!(
                !p.is_up(E0),
                "heard before (or at) the probe: not an answer"
            );
            p.handle_ike_heard(t0 + 40 * MS, E0, Some(t0 + 30 * MS));
            assert!(p.is_up(E0));
            assert_eq!(
                p.poll_change(),
                Some(ProbeChange::Up {
                    entry_point: E0,
                    rtt: 30 * MS
                })
            );
            // Nothing heard after the next probes: down after three misses.
            let t1 = t0 + Duration::from_secs(1);
            p.handle_timeout(t1);
            assert_eq!(drain(&mut p), (vec![], 1));
            p.handle_ike_heard(t1 + 10 * MS, E0, Some(t0 + 30 * MS));
            for k in 1..=3u32 {
                p.handle_timeout(t1 + 150 * MS * k);
            }
            assert!(!p.is_up(E0));
            assert!(matches!(p.poll_change(), Some(ProbeChange::Down { .. })));
            // A message heard after a probe still outstanding brings it back.
            p.handle_ike_heard(t1 + 460 * MS, E0, Some(t1 + 455 * MS));
            assert!(p.is_up(E0));
            // A Rampart reply at an IKE-probed entry point is never accepted.
            let fake = crate::fuzzing::encode_probe(&ProbeKey::derive(b"k1"), true, [0; 16]);
            assert!(p.handle_reply(t1, from(A), &fake).is_err());
        }
    }

    #[test]
    fn auto_mode_stops_ike_after_the_first_rampart_reply() {
        let t0 = Instant::now();
        let mut p = one(ProbeMode::Auto, Some(b"k1"), t0);
        p.handle_timeout(t0);
        let (dgs, ike) = drain(&mut p);
        assert_eq!((dgs.len(), ike), (1, 1));
        assert_eq!(status(&p, t0).probing_with, "rampart+ike");
        // IKE answers first: up, but still not known as a Rampart gateway.
        p.handle_ike_heard(t0 + 10 * MS, E0, Some(t0 + 10 * MS));
        assert!(p.is_up(E0));
        let t1 = t0 + Duration::from_secs(1);
        p.handle_timeout(t1);
        let (dgs, ike) = drain(&mut p);
        assert_eq!((dgs.len(), ike), (1, 1));
        assert_eq!(status(&p, t1).probes_sent, 2, "one attempt, two messages");
        p.handle_reply(t1 + 5 * MS, from(A), &reply(b"k1", &dgs[0]))
            .unwrap();
        assert_eq!(status(&p, t1).probing_with, "rampart");
        let t2 = t0 + Duration::from_secs(2);
        p.handle_timeout(t2);
        assert_eq!(drain(&mut p).1, 0, "no more IKE probes");
        // Without Rampart answers it goes down even though IKE traffic is heard.
        run(&mut p, t2 + 500 * MS);
        p.handle_ike_heard(t2 + 500 * MS, E0, Some(t2 + 400 * MS));
        assert!(!p.is_up(E0));
        assert_eq!(status(&p, t2).probing_with, "rampart");
    }

    #[test]
    fn entry_points_sharing_an_address_are_told_apart_by_nonce() {
        let t0 = Instant::now();
        let mut p = Prober::new(
            &settings(),
            &[
                ep("m1", A, ProbeMode::Rampart, Some(b"k1")),
                ep("m2", A, ProbeMode::Rampart, Some(b"k1")),
                ep("m3", B, ProbeMode::Rampart, Some(b"k3")),
            ],
            t0,
            Rng::from_seed([1; 32]),
        );
        p.handle_timeout(t0);
        let mut by_ep = vec![];
        while let Some(Transmit::Probe {
            entry_point, data, ..
        }) = p.poll_transmit()
        {
            by_ep.push((entry_point, data));
        }
        assert_eq!(by_ep.len(), 3);
        assert_ne!(by_ep[0].1, by_ep[1].1, "fresh nonces");
        let (id, data) = &by_ep[1];
        assert_eq!(p.handle_reply(t0, from(A), &reply(b"k1", data)), Ok(*id));
        assert!(p.is_up(EntryPointId(1)) && !p.is_up(EntryPointId(0)));
        // m3's key does not work for m1/m2's address.
        let (_, data) = &by_ep[0];
        assert_eq!(
            p.handle_reply(t0, from(A), &reply(b"k3", data)),
            Err(ProbeError::Forged)
        );
    }

    #[test]
    fn ipv4_mapped_sources_match() {
        let t0 = Instant::now();
        let mut p = one(ProbeMode::Rampart, Some(b"k1"), t0);
        p.handle_timeout(t0);
        let (dgs, _) = drain(&mut p);
        let mapped = SocketAddr::new(
            IpAddr::V6(std::net::Ipv4Addr::from(A).to_ipv6_mapped()),
            259,
        );
        assert_eq!(p.handle_reply(t0, mapped, &reply(b"k1", &dgs[0])), Ok(E0));
    }

    proptest! {
        /// Arbitrary datagrams (random bytes, and well-formed replies with random nonce and
        /// MAC) from entry point and other addresses, at arbitrary times: no panic, and no
        /// entry point ever comes up.
        #[test]
        fn random_datagrams_never_make_an_entry_point_up(
            inputs in proptest::collection::vec(
                (0u8..4, 0u16..400, proptest::collection::vec(any::<u8>(), 0..70)),
                1..60,
            )
        ) {
            let t0 = Instant::now();
            let mut p = Prober::new(
                &settings(),
                &[
                    ep("m1", A, ProbeMode::Auto, Some(b"k1")),
                    ep("m2", B, ProbeMode::Rampart, Some(b"k2")),
                ],
                t0,
                Rng::from_seed([9; 32]),
            );
            let mut now = t0;
            for (sel, step, bytes) in inputs {
                now += Duration::from_millis(u64::from(step));
                p.handle_timeout(now);
                drain(&mut p);
                let mut data = bytes.clone();
                if sel & 1 == 1 && data.len() >= PROBE_LEN {
                    data.truncate(PROBE_LEN);
                    data[..8].copy_from_slice(&[b'R', b'M', b'E', b'P', 1, 2, 0, 0]);
                }
                let src = match sel >> 1 { 0 => A, _ => B };
                let _ = p.handle_reply(now, from(src), &data);
                let _ = p.handle_reply(now, from([10, 9, 8, 7]), &data);
                prop_assert!(!p.is_up(EntryPointId(0)) && !p.is_up(EntryPointId(1)));
                prop_assert!(p.entries.iter().all(|e| e.attempts.len() <= 3));
            }
        }

        /// The timing rule: with the entry point answering with some RTT and then going
        /// silent at an arbitrary moment, the down verdict comes at most
        /// `interval + misses x effective timeout` after the last answer, and after exactly
        /// `misses` misses.
        #[test]
        fn down_within_interval_plus_misses_timeouts_of_the_last_answer(
            interval_ms in 50u64..3000,
            timeout_ms in 10u64..500,
            misses in 1u32..6,
            rtt_ms in 0u64..400,
            answered_probes in 1usize..6,
        ) {
            let s = ProbeSettings {
                port: 259,
                interval: Duration::from_millis(interval_ms),
                timeout: Duration::from_millis(timeout_ms),
                misses,
            };
            let t0 = Instant::now();
            let mut p = Prober::new(&s, &[ep("m1", A, ProbeMode::Rampart, Some(b"k1"))], t0,
                Rng::from_seed([2; 32]));
            let rtt = Duration::from_millis(rtt_ms);
            let mut last_answer = None;
            let mut pending: Vec<(Instant, Vec<u8>)> = vec![];
            let mut answered = 0;
            let mut down_at = None;
            let mut misses_seen = 0;
            while down_at.is_none() {
                let next_timer = p.poll_timeout().unwrap();
                let next_reply = pending.iter().map(|(t, _)| *t).min();
                if let Some(tr) = next_reply.filter(|tr| *tr <= next_timer) {
                    let i = pending.iter().position(|(t, _)| *t == tr).unwrap();
                    let (_, req) = pending.remove(i);
                    if p.handle_reply(tr, from(A), &reply(b"k1", &req)).is_ok() {
                        last_answer = Some(tr);
                    }
                    continue;
                }
                let before = p.entries[0].misses;
                p.handle_timeout(next_timer);
                if p.entries[0].misses > before {
                    misses_seen = p.entries[0].misses;
                }
                for d in drain(&mut p).0 {
                    if answered < answered_probes {
                        answered += 1;
                        pending.push((next_timer + rtt, d));
                    }
                }
                while let Some(c) = p.poll_change() {
                    if let ProbeChange::Down { misses: m, .. } = c {
                        prop_assert_eq!(m, misses);
                        down_at = Some(next_timer);
                    }
                }
            }
            prop_assert_eq!(misses_seen, misses);
            let eff = p.effective_timeout(&p.entries[0]);
            if let Some(last) = last_answer {
                prop_assert!(down_at.unwrap() - last <= s.interval + eff * misses,
                    "down {:?} after the last answer; eff timeout {:?}", down_at.unwrap() - last, eff);
            }
        }
    }
}
