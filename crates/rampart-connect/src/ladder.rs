//! The transport ladder, sans-IO: which transports to try, when, and which one wins.
//!
//! A ladder is a list of [`Rung`]s in preference order (best first), each with a start delay.
//! Happy eyeballs: a rung starts at `start + start_after`, or earlier as soon as every rung with
//! a smaller `start_after` has failed (a hard UDP failure starts the streams at once; direct
//! streams failing fast start the proxy rungs at once). The first success does not win
//! outright: the most preferred rung that has succeeded is chosen once every better rung has
//! failed, or when [`LadderConfig::prefer_window`] has passed since the first success, so UDP
//! that answers just after a TCP connect still wins. Once something has succeeded, no new rung
//! starts.
//!
//! The ladder never does I/O. The caller starts an attempt on [`Action::Start`] (UDP: send
//! IKE_SA_INIT and report [`Ladder::on_success`] when an IKE answer arrives; TCP/TLS: run
//! [`crate::connect`] and report the result), drops it on [`Action::Cancel`], and calls
//! [`Ladder::handle_timeout`] at [`Ladder::poll_timeout`].
//!
//! Invariants: each rung is started at most once and gets at most one result (late or
//! duplicate results are ignored); a rung that does not answer fails after its timeout; so
//! every run ends, at the latest at `max(start_after) + max(timeout) + prefer_window`, in
//! exactly one [`Outcome`]: one chosen rung, or all failed with every rung's reason. After
//! [`Ladder::handle_timeout`]`(now)`, [`Ladder::poll_timeout`] is `None` or later than `now`.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

/// A transport kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// IKE on UDP (500, then the NAT-T port).
    Udp,
    /// RFC 9329 over TCP.
    Tcp,
    /// RFC 9329 inside TLS (Visitor Mode).
    Tls,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        })
    }
}

/// One way to reach the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rung {
    pub transport: Transport,
    /// Index into the caller's proxy list when this rung goes through a proxy.
    pub proxy: Option<usize>,
    /// Start this long after [`Ladder::start`] (or earlier, see the module docs).
    pub start_after: Duration,
    /// Fail the attempt when it has no result this long after it started.
    pub timeout: Duration,
}

impl fmt::Display for Rung {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.proxy {
            None => write!(f, "{}", self.transport),
            Some(p) => write!(f, "{} via proxy #{}", self.transport, p + 1),
        }
    }
}

/// Index of a rung in [`LadderConfig::rungs`].
pub type RungId = usize;

/// The ladder's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LadderConfig {
    /// Preference order, best first. Must not be empty.
    pub rungs: Vec<Rung>,
    /// How long a success waits for a better rung that is still running.
    pub prefer_window: Duration,
}

/// Default delay before the direct stream rungs start.
pub const STREAM_DELAY: Duration = Duration::from_millis(300);
/// Default delay before the proxy rungs start.
pub const PROXY_DELAY: Duration = Duration::from_millis(900);
/// Default time a success waits for a better rung.
pub const PREFER_WINDOW: Duration = Duration::from_millis(200);
/// Default UDP attempt timeout (no IKE answer).
pub const UDP_TIMEOUT: Duration = Duration::from_millis(2500);
/// Default stream attempt timeout (TCP connect, proxy, TLS).
pub const STREAM_TIMEOUT: Duration = Duration::from_secs(5);

impl LadderConfig {
    /// The usual ladder for `transports` (preference order, duplicates ignored) and `proxies`
    /// proxies: UDP at 0; direct TCP and TLS at [`STREAM_DELAY`]; then, for each proxy in
    /// order, TLS and TCP through it at [`PROXY_DELAY`] (TLS first: proxies usually allow
    /// CONNECT to 443 only). Returns `None` when no rung results.
    pub fn standard(transports: &[Transport], proxies: usize) -> Option<LadderConfig> {
        let mut rungs: Vec<Rung> = Vec::new();
        let mut seen = Vec::new();
        for t in transports {
            if seen.contains(t) {
                continue;
            }
            seen.push(*t);
            let (start_after, timeout) = match t {
                Transport::Udp => (Duration::ZERO, UDP_TIMEOUT),
                _ => (STREAM_DELAY, STREAM_TIMEOUT),
            };
            rungs.push(Rung {
                transport: *t,
                proxy: None,
                start_after,
                timeout,
            });
        }
        for p in 0..proxies {
            for t in [Transport::Tls, Transport::Tcp] {
                if seen.contains(&t) {
                    rungs.push(Rung {
                        transport: t,
                        proxy: Some(p),
                        start_after: PROXY_DELAY,
                        timeout: STREAM_TIMEOUT,
                    });
                }
            }
        }
        (!rungs.is_empty()).then_some(LadderConfig {
            rungs,
            prefer_window: PREFER_WINDOW,
        })
    }
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start an attempt on this rung.
    Start(RungId),
    /// Stop this attempt (or close its connection if it succeeded but lost).
    Cancel(RungId),
    /// The run is over; see [`Ladder::outcome`].
    Done(Outcome),
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Chosen {
        rung: RungId,
        /// Human-readable: what answered when, and why better rungs were not used.
        why: String,
    },
    /// Every rung failed; the reason of each, in rung order.
    AllFailed(Vec<(RungId, String)>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Waiting,
    Running { deadline: Instant },
    Succeeded { at: Instant },
    Failed { reason: String },
    Cancelled,
}

/// One run of the ladder.
#[derive(Debug)]
pub struct Ladder {
    config: LadderConfig,
    states: Vec<State>,
    started: Option<Instant>,
    first_success: Option<Instant>,
    outcome: Option<Outcome>,
    actions: VecDeque<Action>,
}

impl Ladder {
    /// A ladder that has not started. Panics if `config.rungs` is empty (a configuration
    /// error the caller checks: [`LadderConfig::standard`] returns `None` instead).
    pub fn new(config: LadderConfig) -> Ladder {
        assert!(!config.rungs.is_empty(), "a ladder needs at least one rung");
        let n = config.rungs.len();
        Ladder {
            config,
            states: vec![State::Waiting; n],
            started: None,
            first_success: None,
            outcome: None,
            actions: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LadderConfig {
        &self.config
    }

    /// Starts the run at `now`. A second call does nothing.
    pub fn start(&mut self, now: Instant) {
        if self.started.is_none() {
            self.started = Some(now);
            self.step(now);
        }
    }

    /// The attempt on `rung` succeeded (UDP: an IKE answer arrived; streams: connected).
    pub fn on_success(&mut self, now: Instant, rung: RungId) {
        if let Some(State::Running { .. }) = self.states.get(rung) {
            self.states[rung] = State::Succeeded { at: now };
            self.first_success.get_or_insert(now);
            self.step(now);
        }
    }

    /// The attempt on `rung` failed.
    pub fn on_failure(&mut self, now: Instant, rung: RungId, reason: impl Into<String>) {
        if let Some(State::Running { .. }) = self.states.get(rung) {
            self.states[rung] = State::Failed {
                reason: reason.into(),
            };
            self.step(now);
        }
    }

    /// Runs timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.step(now);
    }

    /// When [`Ladder::handle_timeout`] must run next; `None` when the run is over or not started.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t0 = self.started?;
        if self.outcome.is_some() {
            return None;
        }
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        for (r, s) in self.config.rungs.iter().zip(&self.states) {
            match s {
                State::Running { deadline } => at(*deadline),
                State::Waiting if self.first_success.is_none() => at(t0 + r.start_after),
                _ => {}
            }
        }
        if let Some(f) = self.first_success {
            at(f + self.config.prefer_window);
        }
        next
    }

    /// The next action, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// How the run ended, once it has.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    fn step(&mut self, now: Instant) {
        let Some(t0) = self.started else { return };
        if self.outcome.is_some() {
            return;
        }
        for (r, s) in self.config.rungs.iter().zip(self.states.iter_mut()) {
            if let State::Running { deadline } = s {
                if now >= *deadline {
                    *s = State::Failed {
                        reason: format!("no answer within {} ms", r.timeout.as_millis()),
                    };
                }
            }
        }
        // Start what is due, repeating: a start can make no one else due, but a rung whose
        // predecessors all failed is due at once.
        if self.first_success.is_none() {
            for i in 0..self.states.len() {
                if self.states[i] != State::Waiting {
                    continue;
                }
                let r = &self.config.rungs[i];
                let earlier_all_failed =
                    self.config.rungs.iter().zip(&self.states).all(|(o, s)| {
                        o.start_after >= r.start_after || matches!(s, State::Failed { .. })
                    });
                if now >= t0 + r.start_after || earlier_all_failed {
                    self.states[i] = State::Running {
                        deadline: now + r.timeout,
                    };
                    self.actions.push_back(Action::Start(i));
                }
            }
        }
        // Choose.
        let best = self
            .states
            .iter()
            .position(|s| matches!(s, State::Succeeded { .. }));
        if let Some(best) = best {
            let better_pending = self.states[..best]
                .iter()
                .any(|s| matches!(s, State::Running { .. }));
            let window_over = self
                .first_success
                .is_some_and(|f| now >= f + self.config.prefer_window);
            if !better_pending || window_over {
                self.choose(best, t0);
            }
            return;
        }
        if self
            .states
            .iter()
            .all(|s| matches!(s, State::Failed { .. }))
        {
            let reasons: Vec<(RungId, String)> = self
                .states
                .iter()
                .enumerate()
                .map(|(i, s)| match s {
                    State::Failed { reason } => (i, reason.clone()),
                    _ => unreachable!("all failed"),
                })
                .collect();
            self.finish(Outcome::AllFailed(reasons));
        }
    }

    fn choose(&mut self, rung: RungId, t0: Instant) {
        let State::Succeeded { at } = self.states[rung] else {
            unreachable!("chosen rung succeeded")
        };
        let mut why = format!(
            "{} answered after {} ms",
            self.config.rungs[rung],
            at.duration_since(t0).as_millis()
        );
        for (i, s) in self.states[..rung].iter().enumerate() {
            let r = &self.config.rungs[i];
            match s {
                State::Failed { reason } => why.push_str(&format!("; {r}: {reason}")),
                State::Running { .. } => why.push_str(&format!("; {r}: no answer yet")),
                State::Waiting => why.push_str(&format!("; {r}: not tried")),
                State::Succeeded { .. } | State::Cancelled => {}
            }
        }
        for i in 0..self.states.len() {
            if i != rung
                && matches!(
                    self.states[i],
                    State::Running { .. } | State::Succeeded { .. }
                )
            {
                self.states[i] = State::Cancelled;
                self.actions.push_back(Action::Cancel(i));
            }
        }
        self.finish(Outcome::Chosen { rung, why });
    }

    fn finish(&mut self, o: Outcome) {
        self.outcome = Some(o.clone());
        self.actions.push_back(Action::Done(o));
    }
}

#[cfg(test)]
#[path = "ladder_tests.rs"]
mod tests;
