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
