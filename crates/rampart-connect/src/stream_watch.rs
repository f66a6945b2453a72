//! Sans-IO liveness of a client's RFC 9329 stream (TCP or Visitor Mode TLS), and of its UDP
//! tunnel when it has several entry points to move between ([`StreamWatchConfig::datagrams`]).
//!
//! A stream can die without a reset or an end reaching the client: the gateway machine behind
//! the address crashed (a cluster failover), or a proxy keeps its side of the connection open
//! while the gateway's side is gone. TCP itself notices late or never (the proxy acknowledges
//! everything). What the client can see is that frames go out and none come back.
//!
//! [`StreamWatch`] turns that into a decision, with a check in between so that one-way inner
//! traffic (a pure ACK, a UDP stream that gets no answers) does not cost the stream:
//!
//! 1. Frames were written and nothing was read for [`StreamWatchConfig::stall`] since the
//!    first of them: [`Verdict::Check`]. The caller makes the IKE engine send an authenticated
//!    request on the stream (a liveness check, or its outstanding request again), which any
//!    live gateway answers.
//! 2. Nothing was read for [`StreamWatchConfig::answer`] after the check: [`Verdict::Lost`]. The
//!    caller opens a new stream on the same path and re-attaches the IKE SA to it.
//!
//! A check that was answered holds the next one back for [`StreamWatchConfig::holdoff`], so a
//! stream that carries one-way traffic costs at most one IKE exchange per hold-off. Anything
//! read from the stream (a frame of any kind) counts as an answer.
//!
//! Invariants: at most one check is outstanding; `Lost` is returned once per watch (the caller
//! starts a new watch with the new stream); times only move forward (an earlier `now` is
//! treated as the latest seen).

use std::time::{Duration, Instant};

/// Re-attaching after a loss: an attempt (TCP, proxy, TLS, prefix) that has not connected
/// after this long is replaced by a fresh one (its SYN may have gone to the machine that died,
/// before the address moved).
pub const REATTACH_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// Re-attaching: the pause after a refused or failed attempt before the next one.
pub const REATTACH_RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Re-attaching: how long the client keeps trying on the same path before it rebuilds the
/// tunnel (a new transport ladder run, a new IKE SA).
pub const REATTACH_TIMEOUT: Duration = Duration::from_secs(10);

/// Timings of a [`StreamWatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamWatchConfig {
    /// Written but nothing read for this long: check the stream.
    pub stall: Duration,
    /// No frame read this long after a check: the stream is lost.
    pub answer: Duration,
    /// After an answered check, the next one waits at least this long.
    pub holdoff: Duration,
}

impl Default for StreamWatchConfig {
    /// 300 ms, 300 ms, 2 s: a stream through a dead member is replaced well within a second of
    /// the failure on a LAN or a nearby proxy, and one-way traffic costs at most one IKE
    /// exchange every 2 s.
    fn default() -> Self {
        StreamWatchConfig {
            stall: Duration::from_millis(300),
            answer: Duration::from_millis(300),
            holdoff: Duration::from_secs(2),
        }
    }
}

impl StreamWatchConfig {
    /// For a UDP tunnel to one of several entry points (a client with `gateways`), where a
    /// silent gateway means moving to another one: 1 s of unanswered writes, then an IKE
    /// check that may take 3 s (one retransmission, and a cluster's own failover, fit in);
    /// one-way traffic costs at most one check every 2 s. A dead gateway is left 4 to 6 s
    /// after the tunnel last heard from it while the client sends.
    pub fn datagrams() -> StreamWatchConfig {
        StreamWatchConfig {
            stall: Duration::from_secs(1),
            answer: Duration::from_secs(3),
            holdoff: Duration::from_secs(2),
        }
    }

    /// Timings for a path with round-trip time `rtt`: each wait is at least three round
    /// trips, never below the defaults.
    pub fn for_rtt(rtt: Duration) -> StreamWatchConfig {
        let d = StreamWatchConfig::default();
        let three = rtt.saturating_mul(3);
        StreamWatchConfig {
            stall: d.stall.max(three),
            answer: d.answer.max(three),
            holdoff: d.holdoff,
        }
    }
}

/// What the watch asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to do.
    Fine,
    /// Send an authenticated request on the stream now (and report it with
    /// [`StreamWatch::checked`]).
    Check,
    /// The stream is lost: `silent` is how long nothing was read.
    Lost { silent: Duration },
}

/// The liveness state of one stream (see the module documentation).
#[derive(Debug, Clone)]
pub struct StreamWatch {
    cfg: StreamWatchConfig,
    last_rx: Instant,
    /// The first write after `last_rx`.
    tx_since_rx: Option<Instant>,
    /// The outstanding check.
    check_at: Option<Instant>,
    /// When the last answered check was sent.
    last_check: Option<Instant>,
    lost: bool,
    checks: u64,
}

impl StreamWatch {
    /// A watch for a stream that just connected at `now`.
    pub fn new(cfg: StreamWatchConfig, now: Instant) -> StreamWatch {
        StreamWatch {
            cfg,
            last_rx: now,
            tx_since_rx: None,
            check_at: None,
            last_check: None,
            lost: false,
            checks: 0,
        }
    }

    /// A frame was written to the stream.
    pub fn on_tx(&mut self, now: Instant) {
        if self.tx_since_rx.is_none() {
            self.tx_since_rx = Some(now.max(self.last_rx));
        }
    }

    /// A frame was read from the stream.
    pub fn on_rx(&mut self, now: Instant) {
        self.last_rx = now.max(self.last_rx);
        self.tx_since_rx = None;
        if let Some(c) = self.check_at.take() {
            self.last_check = Some(c);
        }
    }

    /// The caller sent the check [`Verdict::Check`] asked for.
    pub fn checked(&mut self, now: Instant) {
        self.check_at = Some(now);
        self.checks += 1;
    }

    /// How many checks were sent on this stream.
    pub fn checks(&self) -> u64 {
        self.checks
    }

    /// When nothing was read since.
    pub fn last_rx(&self) -> Instant {
        self.last_rx
    }

    /// The decision at `now`.
    pub fn poll(&mut self, now: Instant) -> Verdict {
        if self.lost {
            return Verdict::Fine;
        }
        if let Some(c) = self.check_at {
            if now >= c + self.cfg.answer {
                self.lost = true;
                return Verdict::Lost {
                    silent: now.saturating_duration_since(self.last_rx),
                };
            }
            return Verdict::Fine;
        }
        match self.next_check() {
            Some(at) if now >= at => Verdict::Check,
            _ => Verdict::Fine,
        }
    }

    /// When [`StreamWatch::poll`] may next return something other than `Fine`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.lost {
            return None;
        }
        match self.check_at {
            Some(c) => Some(c + self.cfg.answer),
            None => self.next_check(),
        }
    }

    fn next_check(&self) -> Option<Instant> {
        let stalled = self.tx_since_rx? + self.cfg.stall;
        Some(match self.last_check {
            Some(l) => stalled.max(l + self.cfg.holdoff),
            None => stalled,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_silent_stream_is_checked_then_lost() {
        let t0 = Instant::now();
        let mut w = StreamWatch::new(StreamWatchConfig::default(), t0);
        assert_eq!(w.poll_timeout(), None);
        w.on_tx(t0 + ms(100));
        w.on_tx(t0 + ms(200));
        assert_eq!(w.poll_timeout(), Some(t0 + ms(400)));
        assert_eq!(w.poll(t0 + ms(399)), Verdict::Fine);
        assert_eq!(w.poll(t0 + ms(400)), Verdict::Check);
        w.checked(t0 + ms(400));
        assert_eq!(w.poll(t0 + ms(650)), Verdict::Fine);
        assert_eq!(w.poll(t0 + ms(700)), Verdict::Lost { silent: ms(700) });
        // Once.
        assert_eq!(w.poll(t0 + ms(800)), Verdict::Fine);
        assert_eq!(w.poll_timeout(), None);
    }

    #[test]
    fn an_answered_check_holds_the_next_one_back() {
        let t0 = Instant::now();
        let mut w = StreamWatch::new(StreamWatchConfig::default(), t0);
        w.on_tx(t0);
        assert_eq!(w.poll(t0 + ms(300)), Verdict::Check);
        w.checked(t0 + ms(300));
        w.on_rx(t0 + ms(320));
        assert_eq!(w.poll(t0 + ms(1000)), Verdict::Fine);
        // One-way traffic again: the next check waits for the hold-off.
        w.on_tx(t0 + ms(400));
        assert_eq!(w.poll_timeout(), Some(t0 + ms(2300)));
        assert_eq!(w.poll(t0 + ms(2299)), Verdict::Fine);
        assert_eq!(w.poll(t0 + ms(2300)), Verdict::Check);
        assert_eq!(w.checks(), 1);
    }

    #[test]
    fn traffic_both_ways_never_checks() {
        let t0 = Instant::now();
        let mut w = StreamWatch::new(StreamWatchConfig::default(), t0);
        for i in 0..100u64 {
            w.on_tx(t0 + ms(i * 100));
            w.on_rx(t0 + ms(i * 100 + 50));
            assert_eq!(w.poll(t0 + ms(i * 100 + 60)), Verdict::Fine);
        }
        assert_eq!(w.checks(), 0);
    }

    #[test]
    fn long_paths_wait_longer() {
        let c = StreamWatchConfig::for_rtt(ms(250));
        assert_eq!((c.stall, c.answer), (ms(750), ms(750)));
        assert_eq!(
            StreamWatchConfig::for_rtt(ms(5)),
            StreamWatchConfig::default()
        );
    }
}
