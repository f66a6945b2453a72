//! Two `Ike` instances back to back in virtual time (in the style of quinn-proto's test pair).
//!
//! Side A is 192.0.2.1 protecting 10.1.0.0/16, side B is 203.0.113.2 protecting 10.2.0.0/16.
//! Optionally A sits behind a NAT that maps it to 198.51.100.1 with translated ports.

#![allow(dead_code)]

pub mod ra;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use rampart_crypto::{Encr, Rng};
use rampart_ike::policy::{
    Encapsulation, EspProposal, Identity, IkeProposal, PeerAuth, PeerPolicy, RemoteAddress,
    StartAction,
};
use rampart_ike::{ChildSaId, ChildSaKeys, Ike, IkeConfig, IkeEvent, NatHint, PeerId};

pub const A_IP: &str = "192.0.2.1";
pub const B_IP: &str = "203.0.113.2";
pub const NAT_IP: &str = "198.51.100.1";
pub const LATENCY: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

#[derive(Debug, Clone)]
pub struct Packet {
    pub from: Side,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub msg: Vec<u8>,
    pub at: Instant,
}

impl Packet {
    pub fn exchange(&self) -> u8 {
        self.msg.get(18).copied().unwrap_or(0)
    }
    pub fn is_response(&self) -> bool {
        self.msg.get(19).is_some_and(|f| f & 0x20 != 0)
    }
    pub fn message_id(&self) -> u32 {
        self.msg
            .get(20..24)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn ike_prop(s: &str) -> IkeProposal {
    let parts: Vec<&str> = s.split('-').collect();
    let encr: Encr = parts[0].parse().unwrap();
    let (integ, rest) = if encr.is_aead() {
        (None, &parts[1..])
    } else {
        (Some(parts[1].parse().unwrap()), &parts[2..])
    };
    IkeProposal {
        encr,
        integ,
        prf: rest[0].parse().unwrap(),
        dh: rest[1].parse().unwrap(),
    }
}

pub fn esp_prop(s: &str) -> EspProposal {
    let parts: Vec<&str> = s.split('-').collect();
    let encr: Encr = parts[0].parse().unwrap();
    let mut i = 1;
    let integ = if encr.is_aead() {
        None
    } else {
        i = 2;
        Some(parts[1].parse().unwrap())
    };
    let dh = parts.get(i).map(|g| g.parse().unwrap());
    EspProposal { encr, integ, dh }
}

pub fn peer_config(local: &str, remote: &str, remote_domain: &str) -> PeerPolicy {
    PeerPolicy {
        name: format!("to-{remote}"),
        local_address: ip(local),
        remote_address: RemoteAddress::Ip(ip(remote)),
        local_id: Identity::Ip(ip(local)),
        remote_id: Identity::Ip(ip(remote)),
        psk: b"a-very-secret-psk-0123".to_vec().into(),
        remote_domain: vec![remote_domain.parse().unwrap()],
        ike_proposals: vec![
            ike_prop("aes256gcm16-prfsha256-x25519"),
            ike_prop("aes128gcm16-prfsha256-ecp256"),
        ],
        esp_proposals: vec![
            esp_prop("aes256gcm16"),
            esp_prop("chacha20poly1305"),
            esp_prop("aes128-sha256"),
        ],
        esn: false,
        start_action: StartAction::Always,
        ike_lifetime: Duration::from_secs(4 * 3600),
        child_lifetime: Duration::from_secs(3600),
        child_lifetime_bytes: None,
        liveness_interval: Duration::from_secs(30),
        encapsulation: Encapsulation::Auto,
        replay_window: 1024,
        auth: PeerAuth::Psk,
        remote_access: rampart_ike::RemoteAccess::None,
        mobike: false,
    }
}

/// One side's engine configuration and the peers added to it (in order) when it is built.
#[derive(Debug, Clone)]
pub struct SideConfig {
    pub ike: IkeConfig,
    pub peers: Vec<PeerPolicy>,
}

impl Deref for SideConfig {
    type Target = IkeConfig;
    fn deref(&self) -> &IkeConfig {
        &self.ike
    }
}

impl DerefMut for SideConfig {
    fn deref_mut(&mut self) -> &mut IkeConfig {
        &mut self.ike
    }
}

/// An engine with the side's peers added; returns it and the first peer's id.
pub fn engine(cfg: SideConfig, seed: u8) -> (Ike, PeerId) {
    let mut ike = Ike::new(cfg.ike, Rng::from_seed([seed; 32]));
    let ids: Vec<PeerId> = cfg.peers.into_iter().map(|p| ike.add_peer(p)).collect();
    (ike, ids[0])
}

pub fn ike_config(local_domain: &str, peer: PeerPolicy) -> SideConfig {
    let ike = IkeConfig {
        member_id: 0,
        ike_port: 500,
        nat_t_port: 4500,
        local_domain: vec![local_domain.parse().unwrap()],
        retransmit_timeout: Duration::from_secs(2),
        retransmit_tries: 3,
        nat_keepalive: Duration::from_secs(20),
        fragmentation: true,
        fragment_size: 1280,
        cookie_threshold: 100,
        half_open_per_source: 20,
    };
    SideConfig {
        ike,
        peers: vec![peer],
    }
}

/// Default configurations; `nat`: A is behind the NAT, so B knows it by the public address.
pub fn configs(nat: bool) -> (SideConfig, SideConfig) {
    let a = ike_config("10.1.0.0/16", peer_config(A_IP, B_IP, "10.2.0.0/16"));
    let mut pb = peer_config(B_IP, if nat { NAT_IP } else { A_IP }, "10.1.0.0/16");
    pb.remote_id = Identity::Ip(ip(A_IP));
    pb.start_action = StartAction::None;
    let b = ike_config("10.2.0.0/16", pb);
    (a, b)
}

pub struct Pair {
    pub a: Ike,
    pub b: Ike,
    /// A's first peer (B), and B's first peer (A).
    pub peer_a: PeerId,
    pub peer_b: PeerId,
    pub now: Instant,
    pub start: Instant,
    pub in_flight: VecDeque<Packet>,
    /// Every packet put on the wire (before loss).
    pub sent: Vec<Packet>,
    /// Non-transmit events of each side, in order.
    pub events_a: Vec<IkeEvent>,
    pub events_b: Vec<IkeEvent>,
    /// Return true to drop the packet.
    pub drop: Box<dyn FnMut(&Packet) -> bool>,
    pub nat: bool,
    /// Added to A's source ports by the NAT (change it to simulate a new mapping).
    pub nat_port_offset: u16,
    /// A's address behind the NAT (answers to the public address go there); default A_IP.
    pub nat_inside: IpAddr,
    pub keepalives_a: usize,
    pub keepalives_b: usize,
    /// Hand A's NAT keepalives (translated) to B as NAT hints for B's first live CHILD SA, as
    /// the node's data plane does when one comes from a new port.
    pub keepalive_hints: bool,
}

impl Pair {
    pub fn new(a: SideConfig, b: SideConfig) -> Pair {
        Pair::with_nat(a, b, false)
    }

    pub fn with_nat(a: SideConfig, b: SideConfig, nat: bool) -> Pair {
        let now = Instant::now();
        let (a, peer_a) = engine(a, 1);
        let (b, peer_b) = engine(b, 2);
        Pair {
            a,
            b,
            peer_a,
            peer_b,
            now,
            start: now,
            in_flight: VecDeque::new(),
            sent: Vec::new(),
            events_a: Vec::new(),
            events_b: Vec::new(),
            drop: Box::new(|_| false),
            nat,
            nat_port_offset: 10000,
            nat_inside: ip(A_IP),
            keepalives_a: 0,
            keepalives_b: 0,
            keepalive_hints: false,
        }
    }

    fn collect(&mut self) {
        for side in [Side::A, Side::B] {
            loop {
                let ev = match side {
                    Side::A => self.a.poll_event(),
                    Side::B => self.b.poll_event(),
                };
                let Some(ev) = ev else { break };
                match ev {
                    IkeEvent::Transmit { local, remote, msg } => {
                        let (src, dst) = self.translate(side, local, remote);
                        let p = Packet {
                            from: side,
                            src,
                            dst,
                            msg,
                            at: self.now + LATENCY,
                        };
                        self.sent.push(p.clone());
                        if !(self.drop)(&p) {
                            self.in_flight.push_back(p);
                        }
                    }
                    IkeEvent::NatKeepalive { local, remote } => match side {
                        Side::A => {
                            self.keepalives_a += 1;
                            if self.keepalive_hints {
                                let (src, dst) = self.translate(side, local, remote);
                                self.keepalive_hint_to_b(dst, src);
                            }
                        }
                        Side::B => self.keepalives_b += 1,
                    },
                    other => match side {
                        Side::A => self.events_a.push(other),
                        Side::B => self.events_b.push(other),
                    },
                }
            }
        }
    }

    /// A keepalive from `src` reached B's `dst`: a hint when `src` is not where B's tunnel is.
    fn keepalive_hint_to_b(&mut self, dst: SocketAddr, src: SocketAddr) {
        let Some((child, remote)) = self
            .live_children(Side::B)
            .first()
            .map(|k| (k.child, current_remote(&self.events_b, k)))
        else {
            return;
        };
        if remote != src {
            let hint = NatHint::NewAddress {
                local: dst,
                remote: src,
            };
            self.b.nat_hint(self.now, child, hint);
        }
    }

    /// NAT in front of A: A's private source becomes the public address with an offset port.
    fn translate(
        &self,
        side: Side,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> (SocketAddr, SocketAddr) {
        if !self.nat {
            return (local, remote);
        }
        match side {
            Side::A => (
                SocketAddr::new(ip(NAT_IP), local.port() + self.nat_port_offset),
                remote,
            ),
            Side::B => (local, remote),
        }
    }

    fn deliver(&mut self, p: Packet) {
        match p.from {
            Side::A => self.b.handle_datagram(self.now, p.dst, p.src, &p.msg),
            Side::B => {
                let dst = if self.nat && p.dst.ip() == ip(NAT_IP) {
                    SocketAddr::new(
                        self.nat_inside,
                        p.dst.port().wrapping_sub(self.nat_port_offset),
                    )
                } else {
                    p.dst
                };
                self.a.handle_datagram(self.now, dst, p.src, &p.msg)
            }
        }
    }

    /// Runs until `dur` of virtual time has passed.
    pub fn run(&mut self, dur: Duration) {
        let end = self.now + dur;
        loop {
            self.collect();
            let next_packet = self.in_flight.iter().map(|p| p.at).min();
            let next_timer = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let next = [next_packet, next_timer].into_iter().flatten().min();
            let Some(next) = next.filter(|t| *t <= end) else {
                self.now = end;
                return;
            };
            self.now = self.now.max(next);
            // Deliver due packets in order.
            let mut due = Vec::new();
            self.in_flight.retain(|p| {
                if p.at <= next {
                    due.push(p.clone());
                    false
                } else {
                    true
                }
            });
            for p in due {
                self.deliver(p);
            }
            let now = self.now;
            if self.a.poll_timeout().is_some_and(|t| t <= now) {
                self.a.handle_timeout(now);
            }
            if self.b.poll_timeout().is_some_and(|t| t <= now) {
                self.b.handle_timeout(now);
            }
        }
    }

    pub fn initiate(&mut self) {
        self.a.initiate(self.now, self.peer_a);
    }

    pub fn events(&self, side: Side) -> &[IkeEvent] {
        match side {
            Side::A => &self.events_a,
            Side::B => &self.events_b,
        }
    }

    /// The CHILD SAs of a side that are currently installed (up and not yet down).
    pub fn live_children(&self, side: Side) -> Vec<&ChildSaKeys> {
        let ev = self.events(side);
        ev.iter()
            .filter_map(|e| match e {
                IkeEvent::ChildSaUp(k) => Some(k),
                _ => None,
            })
            .filter(|k| {
                !ev.iter()
                    .any(|e| matches!(e, IkeEvent::ChildSaDown { child, .. } if *child == k.child))
            })
            .collect()
    }

    pub fn child_ups(&self, side: Side) -> Vec<&ChildSaKeys> {
        self.events(side)
            .iter()
            .filter_map(|e| match e {
                IkeEvent::ChildSaUp(k) => Some(k),
                _ => None,
            })
            .collect()
    }

    pub fn only_child(&self, side: Side) -> ChildSaId {
        let live = self.live_children(side);
        assert_eq!(live.len(), 1, "{side:?} live children: {live:?}");
        live[0].child
    }

    /// Exactly one CHILD SA per side and both directions' keys agree.
    pub fn assert_one_matching_child(&self) {
        let a = self.live_children(Side::A);
        let b = self.live_children(Side::B);
        assert_eq!(a.len(), 1, "A live children: {a:?}");
        assert_eq!(b.len(), 1, "B live children: {b:?}");
        assert_keys_match(a[0], b[0]);
    }
}

pub fn assert_keys_match(a: &ChildSaKeys, b: &ChildSaKeys) {
    assert_eq!(a.spi_out, b.spi_in);
    assert_eq!(a.spi_in, b.spi_out);
    assert_eq!(a.encr, b.encr);
    assert_eq!(a.integ, b.integ);
    assert_eq!(a.key_out, b.key_in);
    assert_eq!(a.key_in, b.key_out);
    assert_eq!(a.integ_key_out, b.integ_key_in);
    assert_eq!(a.integ_key_in, b.integ_key_out);
    assert_ne!(a.key_in, a.key_out);
    assert_eq!(a.key_in.len(), a.encr.key_len() + a.encr.salt_len());
    assert_eq!(a.encap, b.encap);
    assert_eq!(a.local_ts, b.remote_ts);
    assert_eq!(a.remote_ts, b.local_ts);
}

/// Where a CHILD SA's peer is now: its install address, moved by any later endpoint event.
pub fn current_remote(events: &[IkeEvent], keys: &ChildSaKeys) -> SocketAddr {
    events
        .iter()
        .rev()
        .find_map(|e| match e {
            IkeEvent::ChildSaEndpoint { child, remote, .. } if *child == keys.child => {
                Some(*remote)
            }
            _ => None,
        })
        .unwrap_or(keys.remote)
}
