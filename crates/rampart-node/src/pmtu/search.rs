//! Active path-MTU search, sans-IO, in the spirit of RFC 8899 (DPLPMTUD): after the tunnel is
//! up the client sends padded probe packets of chosen sizes through it; a probe that the peer
//! acknowledges proves its size passes, a probe lost `max_probes` times proves it does not.
//!
//! The search first confirms the floor (1280 by default: the IPv6 minimum, what every path
//! must carry), then tries the ceiling (the local interface MTU: often the whole path carries
//! it), then bisects between the largest size known to pass and the smallest known to fail,
//! until they are within `granularity` bytes. A Packet Too Big report lowers the ceiling at
//! once. Sizes are whole outer IP packet sizes; the caller pads probes to that size.
//!
//! Invariants: `floor <= passed <= limit <= ceiling` at all times, where `passed` is the
//! largest size acknowledged and `limit` the largest size not yet proven to fail; one probe is
//! in flight at a time; every probe ends (ack or timeout), and each size is tried at most
//! `max_probes` times, so the search ends after at most
//! `max_probes * (2 + log2((ceiling - floor) / granularity) + 1)` probes.

use std::time::{Duration, Instant};

/// Search settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmtuConfig {
    /// The smallest size to use (assumed by the tunnel before the search ends).
    pub floor: u16,
    /// The largest size worth trying.
    pub ceiling: u16,
    /// Stop when the bounds are this close (bytes, at least 1).
    pub granularity: u16,
    /// A probe without an ack after this long is lost.
    pub probe_timeout: Duration,
    /// Losses of one size that prove it does not pass.
    pub max_probes: u8,
}

impl Default for PmtuConfig {
    fn default() -> Self {
        PmtuConfig {
            floor: 1280,
            ceiling: 1500,
            granularity: 8,
            probe_timeout: Duration::from_millis(500),
            max_probes: 3,
        }
    }
}

/// How a search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmtuResult {
    /// The largest size found to pass (within `granularity` of the true path MTU).
    Found(u16),
    /// Not even the floor passed: the tunnel does not carry probes (or the path is broken).
    FloorFailed,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    size: u16,
    sent: Instant,
}

/// One search.
#[derive(Debug)]
pub struct PmtuSearch {
    cfg: PmtuConfig,
    /// Largest size acknowledged (`None` until the floor is confirmed).
    passed: Option<u16>,
    /// Largest size not proven to fail.
    limit: u16,
    in_flight: Option<InFlight>,
    /// Losses of the size currently being tried.
    losses: u8,
    /// The size currently being tried (kept across its retries).
    trying: Option<u16>,
    result: Option<PmtuResult>,
    probes_sent: u32,
    /// The MTU a Packet Too Big named: tried next, before bisecting.
    hint: Option<u16>,
}

impl PmtuSearch {
    /// A new search. `ceiling` below `floor` is raised to `floor`; `granularity` 0 counts as 1.
    pub fn new(mut cfg: PmtuConfig) -> PmtuSearch {
        cfg.ceiling = cfg.ceiling.max(cfg.floor);
        cfg.granularity = cfg.granularity.max(1);
        cfg.max_probes = cfg.max_probes.max(1);
        PmtuSearch {
            cfg,
            passed: None,
            limit: cfg.ceiling,
            in_flight: None,
            losses: 0,
            trying: None,
            result: None,
            probes_sent: 0,
            hint: None,
        }
    }

    /// The size to send a probe of now, if one is due (at most one probe is in flight). The
    /// caller sends it and later reports [`PmtuSearch::on_ack`] or lets it time out.
    pub fn poll_probe(&mut self, now: Instant) -> Option<u16> {
        if self.result.is_some() || self.in_flight.is_some() {
            return None;
        }
        let size = match self.trying {
            Some(s) => s,
            None => {
                let s = self.next_size()?;
                self.trying = Some(s);
                self.losses = 0;
                s
            }
        };
        self.in_flight = Some(InFlight { size, sent: now });
        self.probes_sent += 1;
        Some(size)
    }

    /// The peer acknowledged a probe of `size` (possibly an older one).
    pub fn on_ack(&mut self, _now: Instant, size: u16) {
        if self.result.is_some() || size < self.cfg.floor || size > self.cfg.ceiling {
            return;
        }
        self.passed = Some(self.passed.map_or(size, |p| p.max(size)));
        // A late ack of a size deemed failed proves it passes after all.
        self.limit = self.limit.max(size);
        if self.in_flight.is_some_and(|f| f.size <= size) {
            self.in_flight = None;
        }
        if self.trying.is_some_and(|t| t <= size) {
            self.trying = None;
        }
        self.check_done();
    }

    /// A Packet Too Big / fragmentation-needed report naming `mtu`.
    pub fn on_packet_too_big(&mut self, _now: Instant, mtu: u16) {
        if self.result.is_some() {
            return;
        }
        let mtu = mtu.max(self.cfg.floor);
        let floor_ok = self.passed.unwrap_or(self.cfg.floor);
        self.limit = self.limit.min(mtu).max(floor_ok);
        self.hint = Some(self.limit);
        if self.trying.is_some_and(|t| t > self.limit) {
            self.trying = None;
            self.in_flight = None;
        }
        self.check_done();
    }

    /// Runs the probe timer.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(f) = self.in_flight else { return };
        if now < f.sent + self.cfg.probe_timeout {
            return;
        }
        self.in_flight = None;
        self.losses += 1;
        if self.losses < self.cfg.max_probes {
            return;
        }
        self.trying = None;
        if self.hint == Some(f.size) {
            self.hint = None;
        }
        if self.passed.is_none() && f.size == self.cfg.floor {
            self.result = Some(PmtuResult::FloorFailed);
            return;
        }
        let floor_ok = self.passed.unwrap_or(self.cfg.floor);
        self.limit = f.size.saturating_sub(1).max(floor_ok);
        self.check_done();
    }

    /// When [`PmtuSearch::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.in_flight.map(|f| f.sent + self.cfg.probe_timeout)
    }

    /// The result, once the search is over.
    pub fn result(&self) -> Option<PmtuResult> {
        self.result
    }

    /// The largest size known to pass so far (the floor before anything was acknowledged).
    pub fn current(&self) -> u16 {
        self.passed.unwrap_or(self.cfg.floor)
    }

    /// Probes sent so far (retries included).
    pub fn probes_sent(&self) -> u32 {
        self.probes_sent
    }

    fn check_done(&mut self) {
        if let Some(p) = self.passed {
            if self.limit.saturating_sub(p) < self.cfg.granularity || p >= self.limit {
                self.result = Some(PmtuResult::Found(p));
                self.in_flight = None;
                self.trying = None;
            }
        }
    }

    fn next_size(&self) -> Option<u16> {
        let Some(p) = self.passed else {
            return Some(self.cfg.floor);
        };
        if self.limit == self.cfg.ceiling && p < self.cfg.ceiling {
            // Nothing failed yet: the ceiling first.
            return Some(self.cfg.ceiling);
        }
        if self.limit.saturating_sub(p) < self.cfg.granularity {
            return None;
        }
        if let Some(h) = self.hint.filter(|h| *h > p && *h <= self.limit) {
            return Some(h);
        }
        // Bisect; round so the probe is strictly between the bounds' granularity.
        let mid = p + (self.limit - p).div_ceil(2);
        Some(mid.min(self.limit).max(p + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Runs a search against a path carrying sizes up to `path` that loses probes where
    /// `lose(n)` says (n = probe number), answering after `rtt`. Returns the result and probes.
    fn simulate(
        cfg: PmtuConfig,
        path: u16,
        rtt: Duration,
        mut lose: impl FnMut(u32) -> bool,
        ptb: Option<u16>,
    ) -> (PmtuResult, u32) {
        let mut s = PmtuSearch::new(cfg);
        let mut now = Instant::now();
        let mut pending_ack: Option<(Instant, u16)> = None;
        let mut n = 0;
        for _ in 0..10_000 {
            if let Some(r) = s.result() {
                return (r, s.probes_sent());
            }
            if let Some(size) = s.poll_probe(now) {
                n += 1;
                if size <= path && !lose(n) {
                    pending_ack = Some((now + rtt, size));
                } else if size > path {
                    if let Some(mtu) = ptb {
                        s.on_packet_too_big(now, mtu);
                        continue;
                    }
                }
            }
            let t = s.poll_timeout();
            match (pending_ack, t) {
                (Some((at, size)), t) if t.is_none_or(|t| at <= t) => {
                    now = at;
                    pending_ack = None;
                    s.on_ack(now, size);
                }
                (_, Some(t)) => {
                    now = t;
                    s.handle_timeout(now);
                }
                _ => {}
            }
        }
        panic!("search did not end");
    }

    #[test]
    fn finds_the_path_mtu() {
        let cfg = PmtuConfig::default();
        let rtt = Duration::from_millis(30);
        assert_eq!(
            simulate(cfg, 1500, rtt, |_| false, None),
            (PmtuResult::Found(1500), 2)
        );
        let (r, probes) = simulate(cfg, 1400, rtt, |_| false, None);
        let PmtuResult::Found(m) = r else {
            panic!("{r:?}")
        };
        assert!(m <= 1400 && m > 1400 - 8, "{m}");
        assert!(probes <= 3 + 3 * 6, "{probes}");
        assert_eq!(
            simulate(cfg, 1280, rtt, |_| false, None).0,
            PmtuResult::Found(1280)
        );
        assert_eq!(
            simulate(cfg, 1000, rtt, |_| false, None).0,
            PmtuResult::FloorFailed
        );
    }

    #[test]
    fn packet_too_big_shortcuts() {
        let cfg = PmtuConfig::default();
        let (r, probes) = simulate(cfg, 1420, Duration::from_millis(30), |_| false, Some(1420));
        assert_eq!(r, PmtuResult::Found(1420));
        // The floor, the ceiling (answered by the report), the reported size.
        assert_eq!(probes, 3);
    }

    #[test]
    fn one_loss_is_not_a_failure() {
        let cfg = PmtuConfig::default();
        let (r, _) = simulate(cfg, 1500, Duration::from_millis(30), |n| n == 2, None);
        assert_eq!(r, PmtuResult::Found(1500));
    }

    #[test]
    fn late_ack_raises_the_result() {
        let mut s = PmtuSearch::new(PmtuConfig::default());
        let t = Instant::now();
        assert_eq!(s.poll_probe(t), Some(1280));
        s.on_ack(t, 1280);
        assert_eq!(s.poll_probe(t), Some(1500));
        assert_eq!(s.poll_probe(t), None, "one in flight");
        s.on_ack(t, 1500);
        assert_eq!(s.result(), Some(PmtuResult::Found(1500)));
        assert_eq!(s.poll_timeout(), None);
    }

    proptest! {
        /// Without loss the search ends within granularity below the path MTU, never above it,
        /// in a bounded number of probes.
        #[test]
        fn converges(path in 1280u16..=9000, ceiling in 1280u16..=9000, gran in 1u16..64) {
            let cfg = PmtuConfig { ceiling, granularity: gran, ..PmtuConfig::default() };
            let (r, probes) = simulate(cfg, path, Duration::from_millis(10), |_| false, None);
            let PmtuResult::Found(m) = r else { panic!("{r:?}") };
            let truth = path.min(ceiling);
            prop_assert!(m <= truth && truth - m < gran, "found {m}, truth {truth}");
            let steps = 32 - u32::from((ceiling - 1280) / gran).leading_zeros();
            prop_assert!(probes <= 3 * (steps + 3), "{probes} probes");
        }

        /// With random loss (never `max_probes` in a row for a size that passes) the result
        /// never exceeds the path MTU.
        #[test]
        fn loss_never_overshoots(path in 1280u16..=1500, seed in any::<u64>()) {
            let mut x = seed | 1;
            let mut streak = 0;
            let lose = move |_| {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                let l = x % 4 == 0 && streak < 2;
                streak = if l { streak + 1 } else { 0 };
                l
            };
            let (r, _) = simulate(PmtuConfig::default(), path, Duration::from_millis(10), lose, None);
            match r {
                PmtuResult::Found(m) => prop_assert!(m <= path),
                PmtuResult::FloorFailed => prop_assert!(false, "floor failed"),
            }
        }
    }
}
