//! Responder defences against IKE_SA_INIT floods: stateless cookies (RFC 7296 2.6) once the
//! half-open IKE SAs reach `cookie_threshold`, and a cap on half-open SAs per source address.
//!
//! Cookie = version (4 bytes, big endian) || SHA-256(Ni | IPi | SPIi | secret). The secret is
//! random, replaced every [`SECRET_LIFETIME`]; the previous one is still accepted for one more
//! lifetime, so a cookie handed out just before a rotation stays valid. Verifying a cookie costs one
//! hash and no state: a spoofed flood that never returns cookies creates no IKE SA and no key
//! exchange. A cookie is only checked while cookies are required.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use rampart_crypto::Rng;
use rampart_wire::ike::{notify as n, Message};

use crate::engine::Ike;
use crate::keys::ct_eq;
use crate::msg::{self, notify};

/// How long one cookie secret is the current one.
pub(crate) const SECRET_LIFETIME: Duration = Duration::from_secs(120);
/// At most one log line per this interval for each kind of drop.
const LOG_INTERVAL: Duration = Duration::from_secs(10);
const COOKIE_LEN: usize = 4 + 32;

/// Counters of the responder's IKE_SA_INIT defences (since the engine started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DosStats {
    /// IKE_SA_INIT requests answered with a COOKIE notify instead of state.
    pub cookies_sent: u64,
    /// Requests that returned a valid cookie and went on.
    pub cookies_accepted: u64,
    /// Requests that returned a cookie that did not verify (answered with a fresh cookie).
    pub cookies_invalid: u64,
    /// Requests dropped because their source already had `half_open_per_source` half-open SAs.
    pub per_source_drops: u64,
}

#[derive(Debug)]
struct Secret {
    version: u32,
    key: [u8; 32],
    created: Instant,
}

/// A log line that is printed at most once per [`LOG_INTERVAL`], with a count of what it stood for.
#[derive(Debug, Default)]
struct RateLimited {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    /// Counts one occurrence; returns how many are due to be reported now (0: stay quiet).
    fn hit(&mut self, now: Instant) -> u64 {
        self.suppressed += 1;
        if self.last.is_some_and(|t| now < t + LOG_INTERVAL) {
            return 0;
        }
        self.last = Some(now);
        std::mem::take(&mut self.suppressed)
    }
}

/// Cookie secrets, counters and log rate limits of one engine.
#[derive(Debug, Default)]
pub(crate) struct DosGuard {
    current: Option<Secret>,
    previous: Option<Secret>,
    pub stats: DosStats,
    cookie_log: RateLimited,
    source_log: RateLimited,
}

impl DosGuard {
    /// Rotates the secret when due (creating the first one on first use).
    fn rotate(&mut self, now: Instant, rng: &mut Rng) {
        if self
            .previous
            .as_ref()
            .is_some_and(|p| now >= p.created + 2 * SECRET_LIFETIME)
        {
            self.previous = None;
        }
        if self
            .current
            .as_ref()
            .is_some_and(|c| now < c.created + SECRET_LIFETIME)
        {
            return;
        }
        let version = self
            .current
            .as_ref()
            .map_or(0, |c| c.version.wrapping_add(1));
        let mut key = [0u8; 32];
        rng.fill(&mut key);
        let old = self.current.replace(Secret {
            version,
            key,
            created: now,
        });
        self.previous = old.filter(|o| now < o.created + 2 * SECRET_LIFETIME);
    }

    /// A fresh cookie for this initiator.
    pub(crate) fn make(
        &mut self,
        now: Instant,
        rng: &mut Rng,
        ni: &[u8],
        ip: IpAddr,
        spi_i: u64,
    ) -> Vec<u8> {
        self.rotate(now, rng);
        let Some(s) = self.current.as_ref() else {
            return Vec::new();
        };
        compute(s, ni, ip, spi_i)
    }

    /// Whether `cookie` was made by us, recently, for this initiator.
    pub(crate) fn verify(
        &mut self,
        now: Instant,
        rng: &mut Rng,
        cookie: &[u8],
        ni: &[u8],
        ip: IpAddr,
        spi_i: u64,
    ) -> bool {
        self.rotate(now, rng);
        let Some(v) = cookie
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        else {
            return false;
        };
        [self.current.as_ref(), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|s| s.version == v)
            .is_some_and(|s| ct_eq(&compute(s, ni, ip, spi_i), cookie))
    }
}

fn compute(s: &Secret, ni: &[u8], ip: IpAddr, spi_i: u64) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(ni);
    match ip {
        IpAddr::V4(a) => ctx.update(&a.octets()),
        IpAddr::V6(a) => ctx.update(&a.octets()),
    }
    ctx.update(&spi_i.to_be_bytes());
    ctx.update(&s.key);
    let mut out = Vec::with_capacity(COOKIE_LEN);
    out.extend_from_slice(&s.version.to_be_bytes());
    out.extend_from_slice(ctx.finish().as_ref());
    out
}

impl Ike {
    /// Counters of the IKE_SA_INIT defences.
    pub fn dos_stats(&self) -> DosStats {
        self.dos.stats
    }

    /// Number of half-open responder IKE SAs right now.
    pub fn half_open_count(&self) -> usize {
        self.half_open.len()
    }

    /// Decides whether a new (not retransmitted) IKE_SA_INIT request may create state. When
    /// cookies are required and the request has no valid one, it is answered with a COOKIE
    /// notify; when its source is over the per-source limit it is dropped silently.
    pub(crate) fn admit_init(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        m: &Message,
    ) -> bool {
        let p = &m.payloads;
        let spi_i = m.header.spi_i;
        let threshold = usize::try_from(self.cfg.cookie_threshold).unwrap_or(usize::MAX);
        if self.half_open.len() >= threshold {
            // Without a nonce there is nothing to bind a cookie to; the request is invalid anyway.
            let Some(ni) = msg::nonce(p) else {
                return false;
            };
            match msg::find_notify(p, n::COOKIE) {
                Some(c)
                    if self
                        .dos
                        .verify(now, &mut self.rng, &c.data, ni, remote.ip(), spi_i) =>
                {
                    self.dos.stats.cookies_accepted += 1;
                }
                got => {
                    if got.is_some() {
                        self.dos.stats.cookies_invalid += 1;
                    }
                    let cookie = self.dos.make(now, &mut self.rng, ni, remote.ip(), spi_i);
                    self.dos.stats.cookies_sent += 1;
                    let n = self.dos.cookie_log.hit(now);
                    if n > 0 {
                        tracing::info!(
                            half_open = self.half_open.len(),
                            threshold = self.cfg.cookie_threshold,
                            requests = n,
                            "half-open IKE SAs at the cookie threshold: answering IKE_SA_INIT with COOKIE"
                        );
                    }
                    self.stateless_reply(local, remote, spi_i, vec![notify(n::COOKIE, cookie)]);
                    return false;
                }
            }
        }
        let limit = usize::try_from(self.cfg.half_open_per_source).unwrap_or(usize::MAX);
        // Only worth counting when the total could be over the limit.
        if self.half_open.len() >= limit {
            let ip = remote.ip();
            let from_source = self.half_open.keys().filter(|(a, _)| a.ip() == ip).count();
            if from_source >= limit {
                self.dos.stats.per_source_drops += 1;
                let n = self.dos.source_log.hit(now);
                if n > 0 {
                    tracing::warn!(
                        source = %ip,
                        limit,
                        dropped = n,
                        "half-open IKE SA limit per source reached: IKE_SA_INIT dropped"
                    );
                }
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_binds_initiator_and_survives_one_rotation() {
        let mut g = DosGuard::default();
        let mut rng = Rng::from_seed([7; 32]);
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        let ni = [5u8; 32];
        let c = g.make(t0, &mut rng, &ni, ip, 42);
        assert_eq!(c.len(), COOKIE_LEN);
        assert!(g.verify(t0, &mut rng, &c, &ni, ip, 42));
        assert!(!g.verify(t0, &mut rng, &c, &ni, ip, 43));
        assert!(!g.verify(t0, &mut rng, &c, &[6u8; 32], ip, 42));
        assert!(!g.verify(t0, &mut rng, &c, &ni, "192.0.2.10".parse().unwrap(), 42));
        assert!(!g.verify(t0, &mut rng, &c[..10], &ni, ip, 42));
        let mut bad = c.clone();
        bad[20] ^= 1;
        assert!(!g.verify(t0, &mut rng, &bad, &ni, ip, 42));
        // After one rotation the previous secret is still accepted...
        let t1 = t0 + SECRET_LIFETIME;
        assert!(g.verify(t1, &mut rng, &c, &ni, ip, 42));
        let c1 = g.make(t1, &mut rng, &ni, ip, 42);
        assert_ne!(c1, c);
        // ...but not after two.
        let t2 = t1 + SECRET_LIFETIME;
        assert!(!g.verify(t2, &mut rng, &c, &ni, ip, 42));
        assert!(g.verify(t2, &mut rng, &c1, &ni, ip, 42));
        // A long idle gap retires both.
        assert!(!g.verify(t2 + 3 * SECRET_LIFETIME, &mut rng, &c1, &ni, ip, 42));
    }

    #[test]
    fn rate_limited_log() {
        let mut r = RateLimited::default();
        let t0 = Instant::now();
        assert_eq!(r.hit(t0), 1);
        assert_eq!(r.hit(t0), 0);
        assert_eq!(r.hit(t0 + Duration::from_secs(1)), 0);
        assert_eq!(r.hit(t0 + LOG_INTERVAL), 3);
    }
}
