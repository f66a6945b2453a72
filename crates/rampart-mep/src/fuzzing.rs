//! Entry points for the fuzz targets (`fuzz/fuzz_targets/mep_probe.rs`); not a stable API.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use rampart_crypto::Rng;

use crate::config::{EntryPointConfig, EntryPointId, ProbeSettings};
use crate::engine::Transmit;
use crate::probe::{self, ProbeError, ProbeKind, NONCE_LEN, PROBE_LEN};
use crate::prober::{ProbeChange, Prober};
use crate::status::{EntryPointStatus, ProbeState, RejectCounters};
use crate::{ProbeKey, ProbeMode};

/// The satellite's probe state machine, as the engine drives it.
pub struct ProberHarness(Prober);

impl ProberHarness {
    pub fn new(
        settings: &ProbeSettings,
        entry_points: &[EntryPointConfig],
        now: Instant,
        seed: [u8; 32],
    ) -> ProberHarness {
        ProberHarness(Prober::new(
            settings,
            entry_points,
            now,
            Rng::from_seed(seed),
        ))
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.0.handle_timeout(now)
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.0.poll_timeout()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.0.poll_transmit()
    }

    pub fn handle_reply(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
    ) -> Result<EntryPointId, ProbeError> {
        self.0.handle_reply(now, from, data)
    }

    pub fn handle_ike_heard(&mut self, now: Instant, ep: EntryPointId, heard: Option<Instant>) {
        self.0.handle_ike_heard(now, ep, heard)
    }

    /// The next change: `(entry point, up)`.
    pub fn poll_change(&mut self) -> Option<(EntryPointId, bool)> {
        self.0.poll_change().map(|c| match c {
            ProbeChange::Up { entry_point, .. } => (entry_point, true),
            ProbeChange::Down { entry_point, .. } => (entry_point, false),
        })
    }

    pub fn is_up(&self, ep: EntryPointId) -> bool {
        self.0.is_up(ep)
    }

    pub fn srtt(&self, ep: EntryPointId) -> Option<std::time::Duration> {
        self.0.srtt(ep)
    }

    pub fn unmatched_rejects(&self) -> RejectCounters {
        self.0.unmatched_rejects()
    }

    /// The probe fields of an entry point's status (other fields are placeholders).
    pub fn status(&self, now: Instant, ep: EntryPointId) -> EntryPointStatus {
        let mut s = EntryPointStatus {
            name: String::new(),
            address: String::new(),
            probe_mode: ProbeMode::Auto,
            probing_with: String::new(),
            state: ProbeState::Unknown,
            level: String::new(),
            last_rtt_us: None,
            srtt_us: None,
            misses: 0,
            probes_sent: 0,
            replies: 0,
            probes_missed: 0,
            rejected: RejectCounters::default(),
            ups: 0,
            downs: 0,
            since_change_ms: None,
            chosen: 0,
            sticky_flows: 0,
            tunnel_up: false,
        };
        self.0.fill_status(now, ep, &mut s);
        s
    }
}

/// The authentic reply (under `key`) to the request `request`, if it is a well-formed
/// request; the MAC of the request is not checked.
pub fn reply_to(key: &ProbeKey, request: &[u8]) -> Option<[u8; PROBE_LEN]> {
    let nonce = probe::parse(request, ProbeKind::Request).ok()?;
    Some(encode(key, ProbeKind::Reply, &nonce))
}

/// A probe of the given kind (`reply`: true for a reply) with `nonce`, MACed under `key`.
pub fn encode_probe(key: &ProbeKey, reply: bool, nonce: [u8; NONCE_LEN]) -> [u8; PROBE_LEN] {
    let kind = if reply {
        ProbeKind::Reply
    } else {
        ProbeKind::Request
    };
    encode(key, kind, &nonce)
}

fn encode(key: &ProbeKey, kind: ProbeKind, nonce: &[u8; NONCE_LEN]) -> [u8; PROBE_LEN] {
    let mut out = [0u8; PROBE_LEN];
    probe::encode(&key.hmac_key(), kind, nonce, &mut out);
    out
}

/// The op interpreter of the `mep_probe` fuzz target (also run on fixed inputs by a unit
/// test). A responder (satellite 10.0.0.1 with key "k1") and a prober with three entry
/// points (10.0.1.1 auto with key "k1", 10.0.1.2 IKE, 10.0.1.3 "rampart" without a key)
/// get arbitrary and genuine datagrams, IKE reports and time steps.
///
/// Input: chunks `op u8, len u8, bytes[len]`. Invariants (a violation panics):
/// - a reply is exactly as long as its request and is a well-formed reply;
/// - after `handle_timeout(now)`, `poll_timeout()` is strictly later than `now`;
/// - an entry point that never got a genuine answer (reply under its key to one of its
///   own requests, or an IKE report) is never up;
/// - what `status` shows adds up: `replies <= probes_sent`, fewer than `misses` misses while
///   up, at least that many while down.
///
/// Returns how many replies the prober accepted.
pub fn probe_ops(input: &[u8]) -> usize {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use crate::config::{ResponderConfig, SatelliteKey};
    use crate::responder::Responder;
    use crate::{GroupId, MAX_PROBE_LEN};

    let k1 = ProbeKey::derive(b"k1");
    let k2 = ProbeKey::derive(b"k2");
    let sat: IpAddr = Ipv4Addr::new(10, 0, 0, 1).into();
    let eps: Vec<EntryPointConfig> = [
        (1, ProbeMode::Auto, Some(k1.clone())),
        (2, ProbeMode::Ike, None),
        (3, ProbeMode::Rampart, None),
    ]
    .into_iter()
    .map(|(n, probe, key)| EntryPointConfig {
        name: format!("m{n}"),
        group: GroupId(0),
        address: Ipv4Addr::new(10, 0, 1, n).into(),
        local: None,
        own_domain: vec![],
        probe,
        key,
    })
    .collect();
    let settings = ProbeSettings {
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(50),
        ..ProbeSettings::default()
    };
    let mut now = Instant::now();
    let mut responder = Responder::new(ResponderConfig {
        port: 259,
        satellites: vec![SatelliteKey {
            name: "s".into(),
            address: sat,
            key: k1.clone(),
        }],
        rate_per_source: 5,
        rate_total: 8,
    });
    let mut prober = ProberHarness::new(&settings, &eps, now, [3; 32]);
    // The last requests sent to entry point 0, oldest first (genuine material to answer or mangle).
    let mut sent: VecDeque<Vec<u8>> = VecDeque::new();
    let mut genuine = [false; 3];
    let mut accepted = 0;
    let mut out = [0u8; MAX_PROBE_LEN];
    let mut rest = input;
    while let [op, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (bytes, next) = tail.split_at(n);
        rest = next;
        let ep_addr = |i: u8| SocketAddr::new(Ipv4Addr::new(10, 0, 1, 1 + i % 4).into(), 259);
        match op % 8 {
            0 => {
                let from = if op & 0x80 != 0 {
                    SocketAddr::new(sat, 259)
                } else {
                    ep_addr(op >> 3)
                };
                if let Ok(n) = responder.handle_request(now, from, bytes, &mut out) {
                    assert_eq!(n, bytes.len());
                    assert_eq!(crate::peek_kind(&out[..n]), Some(ProbeKind::Reply));
                }
            }
            1 => {
                // A genuine request (right or wrong key), maybe mangled, to the responder.
                let mut nonce = [0u8; NONCE_LEN];
                for (d, s) in nonce.iter_mut().zip(bytes) {
                    *d = *s;
                }
                let key = if op & 0x10 != 0 { &k2 } else { &k1 };
                let mut req = encode_probe(key, op & 0x20 != 0, nonce);
                if op & 0x40 != 0 {
                    req[usize::from(*len) % PROBE_LEN] ^= 1 << (op >> 5);
                }
                if let Ok(n) =
                    responder.handle_request(now, SocketAddr::new(sat, 259), &req, &mut out)
                {
                    assert_eq!(n, PROBE_LEN);
                }
            }
            2 => {
                if prober.handle_reply(now, ep_addr(op >> 3), bytes).is_ok() {
                    accepted += 1;
                }
            }
            3 => {
                // Answer a request the prober sent (`len` counts back from the newest), through the real responder (as the entry
                // point would), with the right key or the wrong one, maybe mangled or late.
                let Some(req) = sent
                    .iter()
                    .rev()
                    .nth(usize::from(*len) % sent.len().max(1))
                    .cloned()
                else {
                    continue;
                };
                let key = if op & 0x10 != 0 { &k2 } else { &k1 };
                let Some(mut reply) = reply_to(key, &req) else {
                    continue;
                };
                let mangled = op & 0x20 != 0;
                if mangled {
                    reply[usize::from(op >> 2) % PROBE_LEN] ^= 0x41;
                }
                let from = ep_addr(op >> 6);
                if prober.handle_reply(now, from, &reply).is_ok() {
                    accepted += 1;
                    assert!(!mangled && op & 0x10 == 0 && from == ep_addr(0));
                    genuine[0] = true;
                }
            }
            4 | 5 => {
                now += Duration::from_millis(u64::from(*len) * u64::from(op >> 3 | 1));
                prober.handle_timeout(now);
                if let Some(t) = prober.poll_timeout() {
                    assert!(t > now, "timer loop without time passing");
                }
            }
            6 => {
                let ep = EntryPointId(u32::from(op >> 3) % 4);
                let heard = match op >> 5 {
                    0 => None,
                    k => now.checked_sub(Duration::from_millis(u64::from(*len) * u64::from(k))),
                };
                let before = prober.is_up(ep);
                prober.handle_ike_heard(now, ep, heard);
                if !before && prober.is_up(ep) {
                    genuine[ep.0 as usize] = true;
                }
            }
            _ => {
                let s = prober.status(now, EntryPointId(u32::from(op >> 3) % 3));
                assert!(s.replies <= s.probes_sent);
                match s.state {
                    ProbeState::Up => assert!(s.misses < settings.misses),
                    ProbeState::Down => assert!(s.misses >= settings.misses),
                    ProbeState::Unknown => assert_eq!(s.ups + s.downs, 0),
                }
            }
        }
        while let Some(t) = prober.poll_transmit() {
            if let Transmit::Probe {
                entry_point, data, ..
            } = t
            {
                assert_eq!(entry_point, EntryPointId(0), "only m1 has a key");
                if sent.len() == 8 {
                    sent.pop_front();
                }
                sent.push_back(data);
            }
        }
        while prober.poll_change().is_some() {}
        for (i, g) in genuine.iter().enumerate() {
            assert!(*g || !prober.is_up(EntryPointId(i as u32)), "m{} up", i + 1);
        }
    }
    let _ = responder.status();
    assert!(prober.poll_timeout().is_some());
    accepted
}

#[cfg(test)]
mod tests {
    #[test]
    fn probe_ops_on_fixed_pseudo_random_inputs() {
        let mut rng = rampart_crypto::Rng::from_seed([4; 32]);
        for len in (0..3000).step_by(7) {
            let mut input = vec![0u8; len];
            rng.fill(&mut input);
            // Short chunks, so that inputs hold many ops.
            for (i, b) in input.iter_mut().enumerate() {
                if i % 5 == 1 {
                    *b %= 4;
                }
            }
            super::probe_ops(&input);
        }
        // A run that answers: 250 ms pass, then the first remembered request is answered.
        let mut input = vec![];
        for _ in 0..20 {
            input.extend_from_slice(&[4 + 8 * 24, 10]);
            input.extend_from_slice(&[0; 10]);
            input.extend_from_slice(&[3, 0, 7, 0]);
        }
        assert!(super::probe_ops(&input) >= 10);
    }
}
