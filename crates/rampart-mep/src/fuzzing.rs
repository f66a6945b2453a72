//! Entry points for the fuzz targets (`fuzz/fuzz_targets/mep_probe.rs`); not a stable API.

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
