//! Remote-access test fixtures: a gateway template with an Office Mode pool, client policies,
//! and a small network of many engines in virtual time (one gateway, any number of clients,
//! each at its own address).

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_ike::policy::{
    ClientAuth, Identity, PeerPolicy, RaClient, RaGateway, RemoteAccess, RemoteAddress, StartAction,
};
use rampart_ike::{Ike, IkeEvent, PeerId};

use super::{engine, ike_config, ip, peer_config, LATENCY};

pub const GW_IP: &str = "203.0.113.2";
pub const POOL: &str = "10.99.0.0/24";

/// The gateway's template: any client address, identities `client.example`, PSK, the pool
/// `prefix`, DNS 10.2.0.53, domain `corp.example`, split tunnel 10.2.0.0/16.
pub fn gateway_policy(prefix: &str, client_auth: ClientAuth) -> PeerPolicy {
    let mut pc = peer_config(GW_IP, "192.0.2.1", prefix);
    pc.name = "remote-access".into();
    pc.remote_address = RemoteAddress::Any;
    pc.start_action = StartAction::None;
    pc.local_id = Identity::Fqdn("gw.example".into());
    pc.remote_id = Identity::Fqdn("client.example".into());
    pc.remote_access = RemoteAccess::Gateway(Arc::new(RaGateway {
        pool: rampart_lease::PoolConfig {
            prefix: prefix.parse().unwrap(),
            exclude: Vec::new(),
            lease_time: Duration::from_secs(600),
        },
        dns: vec![ip("10.2.0.53")],
        dns_domains: vec!["corp.example".into()],
        routes: vec!["10.2.0.0/16".parse().unwrap()],
        client_auth,
        entry_points: None,
    }));
    pc.mobike = true;
    pc
}

/// A client at `addr` of the gateway, full tunnel asked (remote domain 0.0.0.0/0).
pub fn client_policy(addr: &str, eap: Option<(&str, &str)>) -> PeerPolicy {
    let mut pc = peer_config(addr, GW_IP, "0.0.0.0/0");
    pc.name = "office".into();
    pc.local_id = Identity::Fqdn("client.example".into());
    pc.remote_id = Identity::Fqdn("gw.example".into());
    pc.remote_access = RemoteAccess::Client(Arc::new(RaClient {
        eap: eap.map(|(u, p)| (u.to_owned(), p.to_owned().into())),
        small_first_proposal: false,
    }));
    pc.mobike = true;
    pc
}

/// A users file with `alice` / `wonderland`.
pub fn users() -> Arc<rampart_eap::Credentials> {
    let mut c = rampart_eap::Credentials::default();
    c.insert(
        "alice".into(),
        rampart_eap::nt_hash_for_password("wonderland").unwrap(),
    )
    .unwrap();
    Arc::new(c)
}

pub struct Node {
    pub ip: IpAddr,
    pub ike: Ike,
    pub peer: PeerId,
    pub events: Vec<IkeEvent>,
    /// Unplugged: receives nothing, sends nothing (a client that vanished).
    pub dead: bool,
}

/// One gateway (node 0) and clients, with a fixed link latency, in virtual time.
pub struct RaNet {
    pub nodes: Vec<Node>,
    pub now: Instant,
    wire: VecDeque<(Instant, SocketAddr, SocketAddr, Vec<u8>)>,
    seed: u8,
}

impl RaNet {
    pub fn new(gateway: PeerPolicy) -> RaNet {
        let (ike, peer) = engine(ike_config("10.2.0.0/16", gateway), 200);
        RaNet {
            nodes: vec![Node {
                ip: ip(GW_IP),
                ike,
                peer,
                events: Vec::new(),
                dead: false,
            }],
            now: Instant::now(),
            wire: VecDeque::new(),
            seed: 0,
        }
    }

    pub fn gw(&mut self) -> &mut Ike {
        &mut self.nodes[0].ike
    }

    /// Adds a client engine and starts it; returns its node index.
    pub fn connect(&mut self, policy: PeerPolicy) -> usize {
        self.seed = self.seed.wrapping_add(1);
        let addr = policy.local_address;
        let (mut ike, peer) = engine(ike_config("10.1.0.0/16", policy), self.seed);
        ike.initiate(self.now, peer);
        self.nodes.push(Node {
            ip: addr,
            ike,
            peer,
            events: Vec::new(),
            dead: false,
        });
        self.nodes.len() - 1
    }

    /// Adds a node whose engine the test built (already initiating, or not).
    pub fn add_node(&mut self, ip: std::net::IpAddr, ike: Ike, peer: PeerId) -> usize {
        self.nodes.push(Node {
            ip,
            ike,
            peer,
            events: Vec::new(),
            dead: false,
        });
        self.nodes.len() - 1
    }

    fn collect(&mut self) {
        for n in &mut self.nodes {
            while let Some(ev) = n.ike.poll_event() {
                match ev {
                    IkeEvent::Transmit { local, remote, msg } if !n.dead => {
                        self.wire
                            .push_back((self.now + LATENCY, local, remote, msg))
                    }
                    IkeEvent::Transmit { .. } | IkeEvent::NatKeepalive { .. } => {}
                    other => n.events.push(other),
                }
            }
        }
    }

    /// Runs `dur` of virtual time.
    pub fn run(&mut self, dur: Duration) {
        let end = self.now + dur;
        loop {
            self.collect();
            let next_packet = self.wire.iter().map(|w| w.0).min();
            let next_timer = self
                .nodes
                .iter()
                .filter(|n| !n.dead)
                .filter_map(|n| n.ike.poll_timeout())
                .min();
            let Some(next) = [next_packet, next_timer]
                .into_iter()
                .flatten()
                .min()
                .filter(|t| *t <= end)
            else {
                self.now = end;
                return;
            };
            self.now = self.now.max(next);
            let now = self.now;
            let mut due = Vec::new();
            self.wire.retain(|w| {
                if w.0 <= now {
                    due.push(w.clone());
                    false
                } else {
                    true
                }
            });
            for (_, src, dst, msg) in due {
                if let Some(n) = self.nodes.iter_mut().find(|n| n.ip == dst.ip() && !n.dead) {
                    n.ike.handle_datagram(now, dst, src, &msg);
                }
            }
            for n in self.nodes.iter_mut().filter(|n| !n.dead) {
                if n.ike.poll_timeout().is_some_and(|t| t <= now) {
                    n.ike.handle_timeout(now);
                }
            }
        }
    }

    /// The address the gateway gave node `i` (its last `VirtualIp`).
    pub fn virtual_ip(&self, i: usize) -> Option<IpAddr> {
        self.nodes[i].events.iter().rev().find_map(|e| match e {
            IkeEvent::VirtualIp { reply, .. } => reply.ip4_addresses.first().map(|a| (*a).into()),
            _ => None,
        })
    }

    /// Node `i`'s live CHILD SA count.
    pub fn live_children(&self, i: usize) -> usize {
        let ev = &self.nodes[i].events;
        ev.iter()
            .filter(|e| match e {
                IkeEvent::ChildSaUp(k) => !ev
                    .iter()
                    .any(|d| matches!(d, IkeEvent::ChildSaDown { child, .. } if *child == k.child)),
                _ => false,
            })
            .count()
    }
}
