//! Path MTU of remote-access client tunnels (sans-IO): the RFC 8899-style search
//! ([`search`]), the authenticated probe format ([`probe`]) and the per-peer state a client's
//! data plane keeps ([`PeerPmtu`]). The data plane drives them (`dataplane/path_mtu.rs`).
//!
//! Sizes called *outer* are whole IP packets on the wire (IP, UDP when encapsulated, ESP);
//! *inner* sizes are the tunnelled packets (the TUN MTU). The conversion depends on the SA's
//! cipher, the encapsulation and the outer IP version ([`inner_for_outer`]).

pub mod probe;
pub mod search;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::MtuReason;
pub use search::{PmtuConfig, PmtuResult, PmtuSearch};

/// How a client data plane finds the path MTU of its tunnels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmtuPolicy {
    /// Send probes (false: only ICMP "too big" lowers the MTU).
    pub probe: bool,
    /// The smallest outer size assumed to pass (1280: the IPv6 minimum); a black hole drops
    /// the tunnel to it, ICMP never lowers below it.
    pub floor: u16,
    /// Bisection stops when the bounds are this close (bytes).
    pub granularity: u16,
    /// A probe without an ack after this long is lost.
    pub probe_timeout: Duration,
    /// Losses of one size that prove it does not pass.
    pub max_probes: u8,
    /// A new search this long after the last one ended (the path may have grown or shrunk).
    pub reprobe: Duration,
    /// Black-hole check: when packets left on the tunnel during this long and none came back,
    /// the current size is confirmed with a probe (RFC 8899 5.2); a failed confirmation drops
    /// the tunnel to the floor.
    pub stall: Duration,
}

impl Default for PmtuPolicy {
    fn default() -> Self {
        PmtuPolicy {
            probe: true,
            floor: 1280,
            granularity: 8,
            probe_timeout: Duration::from_millis(500),
            max_probes: 3,
            reprobe: Duration::from_secs(600),
            stall: Duration::from_secs(3),
        }
    }
}

/// What the running search is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SearchKind {
    /// Find the largest size between the floor and the configured MTU.
    Full,
    /// Confirm the current size (black-hole detection).
    Confirm,
}

/// Recent probes: (id, outer size). Acks name both; one that matches none is ignored.
const RECENT: usize = 8;

/// The path-MTU state of one remote-access client peer (gateway).
///
/// Invariants: `floor_inner <= current <= configured`; `current` is the MTU the node last
/// announced (or the configured one before any announcement) and the one the MSS clamp of the
/// peer's tunnels follows; at most one search runs.
#[derive(Debug)]
pub(crate) struct PeerPmtu {
    pub peer_name: String,
    /// The TUN MTU of the profile (the search's ceiling).
    pub configured: u16,
    /// The inner MTU in effect.
    pub current: u16,
    pub search: Option<(SearchKind, PmtuSearch)>,
    /// When the next full search starts (when no search runs).
    pub next_search: Instant,
    /// When the black-hole check samples the tunnel's packet counts next, and the counts
    /// (outbound, inbound) at the last sample.
    pub next_stall_check: Instant,
    pub stall_sample: (u64, u64),
    next_id: u32,
    recent: [Option<(u32, u16)>; RECENT],
    pub last_reason: Option<MtuReason>,
    pub probes_sent: u64,
    pub probes_acked: u64,
    pub searches: u64,
    pub icmp_too_big: u64,
    pub black_holes: u64,
}

impl PeerPmtu {
    pub fn new(peer_name: String, configured: u16, now: Instant, first_id: u32) -> PeerPmtu {
        PeerPmtu {
            peer_name,
            configured,
            current: configured,
            search: None,
            next_search: now,
            next_stall_check: now,
            stall_sample: (0, 0),
            next_id: first_id,
            recent: [None; RECENT],
            last_reason: None,
            probes_sent: 0,
            probes_acked: 0,
            searches: 0,
            icmp_too_big: 0,
            black_holes: 0,
        }
    }

    /// Starts a search of `kind` between `floor` and `ceiling` (outer sizes).
    pub fn start(&mut self, kind: SearchKind, policy: &PmtuPolicy, floor: u16, ceiling: u16) {
        let cfg = PmtuConfig {
            floor,
            ceiling,
            granularity: policy.granularity,
            probe_timeout: policy.probe_timeout,
            max_probes: policy.max_probes,
        };
        if kind == SearchKind::Full {
            self.searches += 1;
        }
        self.search = Some((kind, PmtuSearch::new(cfg)));
    }

    /// A fresh id for a probe of `size`, remembered for its ack.
    pub fn note_probe(&mut self, size: u16) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.recent[(id as usize) % RECENT] = Some((id, size));
        self.probes_sent += 1;
        id
    }

    /// Whether (`id`, `size`) is a probe we sent recently (and not acked before).
    pub fn take_probe(&mut self, id: u32, size: u16) -> bool {
        let slot = &mut self.recent[(id as usize) % RECENT];
        if *slot == Some((id, size)) {
            *slot = None;
            self.probes_acked += 1;
            true
        } else {
            false
        }
    }

    /// When this peer's state needs the timer next.
    pub fn poll_timeout(&self, policy: &PmtuPolicy) -> Instant {
        let t = match &self.search {
            Some((_, s)) => s.poll_timeout().unwrap_or(self.next_stall_check),
            None if policy.probe => self.next_search.min(self.next_stall_check),
            None => self.next_stall_check,
        };
        t.min(self.next_stall_check)
    }

    pub fn status(&self) -> PathMtuStatus {
        PathMtuStatus {
            peer: self.peer_name.clone(),
            configured: self.configured,
            current: self.current,
            searching: self.search.is_some(),
            reason: self.last_reason.map(|r| reason_name(r).to_string()),
            probes_sent: self.probes_sent,
            probes_acked: self.probes_acked,
            searches: self.searches,
            icmp_too_big: self.icmp_too_big,
            black_holes: self.black_holes,
        }
    }
}

/// The word status and logs use for a reason.
pub fn reason_name(r: MtuReason) -> &'static str {
    match r {
        MtuReason::Probed => "probed",
        MtuReason::IcmpTooBig => "icmp-too-big",
        MtuReason::BlackHole => "black-hole",
    }
}

/// Path MTU of one remote-access client tunnel's peer, in `rampart status --json` (the names
/// are stable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathMtuStatus {
    pub peer: String,
    /// The profile's TUN MTU.
    pub configured: u16,
    /// The tunnel (TUN) MTU in effect.
    pub current: u16,
    /// A search or a black-hole confirmation is running.
    pub searching: bool,
    /// Why `current` last changed (`probed`, `icmp-too-big`, `black-hole`); `None`: never.
    pub reason: Option<String>,
    pub probes_sent: u64,
    pub probes_acked: u64,
    /// Full searches started.
    pub searches: u64,
    /// ICMP "fragmentation needed" / "packet too big" reports for this peer's path.
    pub icmp_too_big: u64,
    /// Confirmations of the current size that failed (the tunnel went to the floor).
    pub black_holes: u64,
}

/// The outer bytes around an inner packet of an SA: `headroom` (ESP header and IV) and
/// `tailroom(len)` (padding, trailer, ICV), plus IP (20 or 40) and UDP (8) when encapsulated.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Framing<F: Fn(usize) -> usize> {
    pub ip_v6: bool,
    pub encap: bool,
    pub headroom: usize,
    pub tailroom: F,
}

impl<F: Fn(usize) -> usize> Framing<F> {
    fn fixed(&self) -> usize {
        (if self.ip_v6 { 40 } else { 20 }) + if self.encap { 8 } else { 0 } + self.headroom
    }

    /// The outer size of an inner packet of `inner` bytes.
    pub fn outer_for_inner(&self, inner: usize) -> usize {
        self.fixed() + inner + (self.tailroom)(inner)
    }
}

/// The largest inner size whose outer packet fits `outer` bytes (0 when none does).
pub(crate) fn inner_for_outer<F: Fn(usize) -> usize>(f: &Framing<F>, outer: u16) -> u16 {
    let outer = usize::from(outer);
    let mut inner = outer.saturating_sub(f.fixed() + 2);
    while inner > 0 && f.outer_for_inner(inner) > outer {
        inner -= 1;
    }
    u16::try_from(inner).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gcm(encap: bool) -> Framing<impl Fn(usize) -> usize> {
        // AES-GCM: 8-byte IV, 4-byte alignment, 16-byte ICV.
        Framing {
            ip_v6: false,
            encap,
            headroom: 16,
            tailroom: |len: usize| (4 - (len + 2) % 4) % 4 + 2 + 16,
        }
    }

    #[test]
    fn inner_and_outer_agree() {
        let f = gcm(true);
        for outer in 200u16..=9000 {
            let inner = inner_for_outer(&f, outer);
            assert!(f.outer_for_inner(usize::from(inner)) <= usize::from(outer));
            assert!(f.outer_for_inner(usize::from(inner) + 1) > usize::from(outer));
        }
        // 1280 outer, IPv4 + UDP + GCM: 20 + 8 + 16 + 1218 + 2 + 16 = 1280.
        assert_eq!(inner_for_outer(&f, 1280), 1218);
        assert_eq!(inner_for_outer(&gcm(false), 1280), 1226);
    }

    #[test]
    fn acks_match_recent_probes_once() {
        let mut p = PeerPmtu::new("gw".into(), 1400, Instant::now(), 5);
        let a = p.note_probe(1300);
        let b = p.note_probe(1400);
        assert!(!p.take_probe(a, 1400), "wrong size");
        assert!(p.take_probe(b, 1400));
        assert!(!p.take_probe(b, 1400), "acked once");
        assert!(p.take_probe(a, 1300));
        assert!(!p.take_probe(a.wrapping_add(100), 1300), "never sent");
        assert_eq!((p.probes_sent, p.probes_acked), (2, 2));
    }
}
