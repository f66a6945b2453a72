//! The entry-point side: answers authenticated probes from known satellites, rate-limited.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use aws_lc_rs::hmac;

use crate::config::ResponderConfig;
use crate::probe::{self, ProbeError, ProbeKind};
use crate::status::{RejectCounters, ResponderStatus};

/// Token bucket in micro-tokens (one reply costs [`TOKEN`]); burst = one second's rate.
/// Invariant: `level <= rate * TOKEN`.
#[derive(Debug, Clone)]
struct Bucket {
    level: u64,
    last: Option<Instant>,
}

const TOKEN: u64 = 1_000_000;

impl Bucket {
    fn full(rate: u32) -> Bucket {
        Bucket {
            level: u64::from(rate) * TOKEN,
            last: None,
        }
    }

    /// Adds what `rate` tokens per second earned since the last refill, up to one second's
    /// worth. Time never runs backwards here (an older `now` refills nothing).
    fn refill(&mut self, now: Instant, rate: u32) {
        let cap = u64::from(rate) * TOKEN;
        if let Some(last) = self.last {
            let ns = now.saturating_duration_since(last).as_nanos();
            // rate tokens/s = rate * TOKEN micro-tokens per 1e9 ns.
            let earned = ns.saturating_mul(u128::from(rate)) / 1000;
            self.level = u64::try_from(u128::from(self.level).saturating_add(earned))
                .unwrap_or(u64::MAX)
                .min(cap);
        } else {
            self.level = self.level.min(cap);
        }
        if self.last.is_none_or(|l| now > l) {
            self.last = Some(now);
        }
    }

    fn has_token(&self) -> bool {
        self.level >= TOKEN
    }

    fn take(&mut self) {
        self.level -= TOKEN;
    }
}

/// One satellite allowed to probe from an address.
struct Satellite {
    key: hmac::Key,
}

/// Answers probes. Invariant: a reply is written only for a request whose MAC verified under
/// the key of the satellite at the request's source address, within that source's and the
/// global rate limit; it is exactly as long as the request.
///
/// Per-source buckets exist only for configured satellite addresses, so the state is bounded
/// by the configuration whatever arrives. A request is rate-limited only after its MAC
/// verified: a spoofer without the key cannot use up a satellite's tokens.
pub struct Responder {
    config: ResponderConfig,
    /// Source address to the satellites configured there (usually one; several may share an
    /// address, then any of their keys is accepted).
    satellites: HashMap<IpAddr, Vec<Satellite>>,
    buckets: HashMap<IpAddr, Bucket>,
    total: Bucket,
    requests: u64,
    replies: u64,
    rejected: RejectCounters,
}

impl Responder {
    pub fn new(config: ResponderConfig) -> Responder {
        let mut r = Responder {
            total: Bucket::full(config.rate_total),
            config: config.clone(),
            satellites: HashMap::new(),
            buckets: HashMap::new(),
            requests: 0,
            replies: 0,
            rejected: RejectCounters::default(),
        };
        r.set_config(config);
        r
    }

    /// Replaces who may probe us (configuration reload); counters stay, and so do the
    /// buckets of addresses still configured (capped to the new rates).
    pub fn set_config(&mut self, config: ResponderConfig) {
        let mut satellites: HashMap<IpAddr, Vec<Satellite>> = HashMap::new();
        for s in &config.satellites {
            satellites
                .entry(s.address.to_canonical())
                .or_default()
                .push(Satellite {
                    key: s.key.hmac_key(),
                });
        }
        let mut buckets = HashMap::with_capacity(satellites.len());
        for addr in satellites.keys() {
            let mut b = self
                .buckets
                .remove(addr)
                .unwrap_or_else(|| Bucket::full(config.rate_per_source));
            b.level = b.level.min(u64::from(config.rate_per_source) * TOKEN);
            buckets.insert(*addr, b);
        }
        self.total.level = self.total.level.min(u64::from(config.rate_total) * TOKEN);
        self.satellites = satellites;
        self.buckets = buckets;
        self.config = config;
    }

    /// A request from `from`: on success the reply is in `out[..n]` (send it back to `from`
    /// from the socket it came in on). Every refusal is counted. Checks, in order: source
    /// address is a configured satellite ([`ProbeError::UnknownSource`]), datagram is a
    /// well-formed request ([`ProbeError::Malformed`]), MAC verifies under that satellite's
    /// key ([`ProbeError::Forged`]), a token in the source's and the total bucket
    /// ([`ProbeError::RateLimited`]).
    ///
    /// # Panics
    /// If `out` is shorter than the request would be answered with ([`crate::MAX_PROBE_LEN`]
    /// bytes always suffice).
    pub fn handle_request(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
        out: &mut [u8],
    ) -> Result<usize, ProbeError> {
        self.requests += 1;
        let result = self.answer(now, from.ip().to_canonical(), data, out);
        match result {
            Ok(_) => self.replies += 1,
            Err(e) => count(&mut self.rejected, e),
        }
        result
    }

    fn answer(
        &mut self,
        now: Instant,
        from: IpAddr,
        data: &[u8],
        out: &mut [u8],
    ) -> Result<usize, ProbeError> {
        let Some(sats) = self.satellites.get(&from) else {
            return Err(ProbeError::UnknownSource);
        };
        let nonce = probe::parse(data, ProbeKind::Request)?;
        let Some(sat) = sats.iter().find(|s| probe::verify(&s.key, data)) else {
            return Err(ProbeError::Forged);
        };
        let bucket = self
            .buckets
            .get_mut(&from)
            .expect("every satellite address has a bucket");
        bucket.refill(now, self.config.rate_per_source);
        self.total.refill(now, self.config.rate_total);
        if !bucket.has_token() || !self.total.has_token() {
            return Err(ProbeError::RateLimited);
        }
        bucket.take();
        self.total.take();
        let n = probe::encode(&sat.key, ProbeKind::Reply, &nonce, out);
        debug_assert_eq!(n, data.len());
        Ok(n)
    }

    pub fn status(&self) -> ResponderStatus {
        ResponderStatus {
            port: self.config.port,
            satellites: self.config.satellites.len() as u64,
            requests: self.requests,
            replies: self.replies,
            rejected: self.rejected,
        }
    }
}

/// Adds one refusal of kind `e` to `c`.
pub(crate) fn count(c: &mut RejectCounters, e: ProbeError) {
    let n = match e {
        ProbeError::Malformed => &mut c.malformed,
        ProbeError::Forged => &mut c.forged,
        ProbeError::Replayed => &mut c.replayed,
        ProbeError::UnknownSource => &mut c.unknown_source,
        ProbeError::RateLimited => &mut c.rate_limited,
    };
    *n += 1;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::SatelliteKey;
    use crate::probe::{MAX_PROBE_LEN, PROBE_LEN};
    use crate::ProbeKey;

    const S1: [u8; 4] = [192, 0, 2, 1];
    const S2: [u8; 4] = [192, 0, 2, 2];

    fn config(per_source: u32, total: u32) -> ResponderConfig {
        ResponderConfig {
            port: 259,
            satellites: vec![
                SatelliteKey {
                    name: "s1".into(),
                    address: S1.into(),
                    key: ProbeKey::derive(b"s1 secret"),
                },
                SatelliteKey {
                    name: "s2".into(),
                    address: S2.into(),
                    key: ProbeKey::derive(b"s2 secret"),
                },
            ],
            rate_per_source: per_source,
            rate_total: total,
        }
    }

    fn request(secret: &[u8], nonce: u8) -> [u8; PROBE_LEN] {
        let mut buf = [0u8; PROBE_LEN];
        probe::encode(
            &ProbeKey::derive(secret).hmac_key(),
            ProbeKind::Request,
            &[nonce; 16],
            &mut buf,
        );
        buf
    }

    fn from(a: [u8; 4]) -> SocketAddr {
        SocketAddr::from((a, 259))
    }

    #[test]
    fn answers_known_satellites_with_a_same_length_authentic_reply() {
        let mut r = Responder::new(config(20, 2000));
        let now = Instant::now();
        let mut out = [0u8; MAX_PROBE_LEN];
        let req = request(b"s1 secret", 5);
        let n = r.handle_request(now, from(S1), &req, &mut out).unwrap();
        assert_eq!(n, req.len());
        let reply = &out[..n];
        assert_eq!(probe::parse(reply, ProbeKind::Reply), Ok([5; 16]));
        assert!(probe::verify(
            &ProbeKey::derive(b"s1 secret").hmac_key(),
            reply
        ));
        assert!(!probe::verify(
            &ProbeKey::derive(b"s2 secret").hmac_key(),
            reply
        ));
        // An IPv4-mapped IPv6 source is the same satellite.
        let mapped = SocketAddr::new(
            IpAddr::V6(std::net::Ipv4Addr::from(S1).to_ipv6_mapped()),
            259,
        );
        assert!(r.handle_request(now, mapped, &req, &mut out).is_ok());
        let st = r.status();
        assert_eq!(
            (st.port, st.satellites, st.requests, st.replies),
            (259, 2, 2, 2)
        );
        assert_eq!(st.rejected, RejectCounters::default());
    }

    #[test]
    fn refusals_are_typed_and_counted() {
        let mut r = Responder::new(config(20, 2000));
        let now = Instant::now();
        let mut out = [0u8; MAX_PROBE_LEN];
        let good = request(b"s1 secret", 1);
        let e = |r: &mut Responder, a, d: &[u8]| r.handle_request(now, from(a), d, &mut [0u8; 64]);
        assert_eq!(
            e(&mut r, [203, 0, 113, 9], &good),
            Err(ProbeError::UnknownSource)
        );
        assert_eq!(
            e(&mut r, S1, &request(b"s2 secret", 1)),
            Err(ProbeError::Forged)
        );
        let mut flipped = good;
        flipped[30] ^= 4;
        assert_eq!(e(&mut r, S1, &flipped), Err(ProbeError::Forged));
        assert_eq!(e(&mut r, S1, &good[..39]), Err(ProbeError::Malformed));
        let mut longer = good.to_vec();
        longer.push(0);
        assert_eq!(e(&mut r, S1, &longer), Err(ProbeError::Malformed));
        // A reply sent back at us is not a request.
        let n = r.handle_request(now, from(S1), &good, &mut out).unwrap();
        let reply = out[..n].to_vec();
        assert_eq!(e(&mut r, S1, &reply), Err(ProbeError::Malformed));
        let st = r.status();
        assert_eq!(st.requests, 7);
        assert_eq!(st.replies, 1);
        assert_eq!(
            st.rejected,
            RejectCounters {
                malformed: 3,
                forged: 2,
                replayed: 0,
                unknown_source: 1,
                rate_limited: 0,
            }
        );
    }

    #[test]
    fn per_source_bucket_refills_over_time() {
        let mut r = Responder::new(config(5, 2000));
        let t0 = Instant::now();
        let mut out = [0u8; MAX_PROBE_LEN];
        let req = request(b"s1 secret", 1);
        for i in 0..5 {
            assert!(
                r.handle_request(t0, from(S1), &req, &mut out).is_ok(),
                "{i}"
            );
        }
        assert_eq!(
            r.handle_request(t0, from(S1), &req, &mut out),
            Err(ProbeError::RateLimited)
        );
        // The other satellite has its own bucket.
        assert!(r
            .handle_request(t0, from(S2), &request(b"s2 secret", 1), &mut out)
            .is_ok());
        // 5/s: one token per 200 ms.
        let t1 = t0 + Duration::from_millis(199);
        assert_eq!(
            r.handle_request(t1, from(S1), &req, &mut out),
            Err(ProbeError::RateLimited)
        );
        let t2 = t0 + Duration::from_millis(200);
        assert!(r.handle_request(t2, from(S1), &req, &mut out).is_ok());
        assert_eq!(
            r.handle_request(t2, from(S1), &req, &mut out),
            Err(ProbeError::RateLimited)
        );
        // Refill stops at one second's worth.
        let t3 = t2 + Duration::from_secs(60);
        let ok = (0..10)
            .filter(|_| r.handle_request(t3, from(S1), &req, &mut out).is_ok())
            .count();
        assert_eq!(ok, 5);
        assert_eq!(r.status().rejected.rate_limited, 8);
    }

    #[test]
    fn total_bucket_caps_all_sources() {
        let mut r = Responder::new(config(20, 3));
        let t0 = Instant::now();
        let mut out = [0u8; MAX_PROBE_LEN];
        let r1 = request(b"s1 secret", 1);
        let r2 = request(b"s2 secret", 2);
        assert!(r.handle_request(t0, from(S1), &r1, &mut out).is_ok());
        assert!(r.handle_request(t0, from(S2), &r2, &mut out).is_ok());
        assert!(r.handle_request(t0, from(S1), &r1, &mut out).is_ok());
        assert_eq!(
            r.handle_request(t0, from(S2), &r2, &mut out),
            Err(ProbeError::RateLimited)
        );
        // Forged requests never reach the buckets.
        let later = t0 + Duration::from_millis(334);
        assert_eq!(
            r.handle_request(later, from(S2), &r1, &mut out),
            Err(ProbeError::Forged)
        );
        assert!(r.handle_request(later, from(S2), &r2, &mut out).is_ok());
        assert_eq!(
            r.handle_request(later, from(S1), &r1, &mut out),
            Err(ProbeError::RateLimited)
        );
    }

    #[test]
    fn set_config_keeps_counters_and_changes_who_may_probe() {
        let mut r = Responder::new(config(20, 2000));
        let now = Instant::now();
        let mut out = [0u8; MAX_PROBE_LEN];
        assert!(r
            .handle_request(now, from(S2), &request(b"s2 secret", 1), &mut out)
            .is_ok());
        let mut c = config(20, 2000);
        c.satellites.truncate(1);
        r.set_config(c);
        assert_eq!(
            r.handle_request(now, from(S2), &request(b"s2 secret", 1), &mut out),
            Err(ProbeError::UnknownSource)
        );
        assert!(r
            .handle_request(now, from(S1), &request(b"s1 secret", 1), &mut out)
            .is_ok());
        let st = r.status();
        assert_eq!((st.satellites, st.requests, st.replies), (1, 3, 2));
        assert_eq!(st.rejected.unknown_source, 1);
    }

    #[test]
    fn zero_rate_answers_nothing() {
        let mut r = Responder::new(config(0, 2000));
        let now = Instant::now();
        assert_eq!(
            r.handle_request(now, from(S1), &request(b"s1 secret", 1), &mut [0u8; 64]),
            Err(ProbeError::RateLimited)
        );
    }
}
