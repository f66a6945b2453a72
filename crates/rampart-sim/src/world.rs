//! The simulated world: nodes, links, one event queue in virtual time and one seeded RNG.
//!
//! Invariants: events run in (time, sequence) order; every random choice comes from `rng` or
//! from generators forked from it at build time; no map with a random iteration order is used.
//! So one seed gives one run, byte for byte.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use rampart_crypto::Rng;

use crate::client::{ClientFx, ClientNode};
use crate::ecmp::{self, Router};
use crate::gateway_node::{GatewayNode, GwEffects};
use crate::host::{Host, TransferRecord};
use crate::middlebox::{Firewall, Nat};
use crate::packet::{self, Ipv4Header, Reassembler};

/// One event in the queue.
#[derive(Debug)]
pub(crate) enum Ev {
    Arrive {
        node: usize,
        iface: usize,
        packet: Vec<u8>,
    },
    Wake {
        node: usize,
    },
    Scheduled(usize),
    TransferStart(usize),
    /// The end of a full-sync stream reaches the member that pulled it.
    FullSync {
        node: usize,
        member: u8,
        data: Result<Vec<u8>, String>,
    },
    Check,
}

pub(crate) struct Iface {
    pub link: usize,
    pub side: usize,
    pub addr: Ipv4Addr,
    pub net: Ipv4Net,
    /// Virtual addresses the machine claimed on this interface (a cluster's active member).
    pub claimed: Vec<Ipv4Addr>,
}

/// A shared segment (see [`Kind::Switch`]).
pub(crate) struct Switch {
    /// `(prefix, next hop)`: packets for `prefix` go to whoever owns the next hop now.
    pub routes: Vec<(Ipv4Net, Ipv4Addr)>,
    /// Claimed addresses and the port (interface index) of the last machine that announced
    /// them: the gratuitous ARP of a claim updates it, a release does not (stale until the
    /// next claim, as a real neighbour cache).
    pub owners: BTreeMap<Ipv4Addr, usize>,
}

pub(crate) struct Route {
    pub net: Ipv4Net,
    pub iface: usize,
    /// Equal-cost next hops of a router (interfaces, two or more, `iface` first); empty for a
    /// route with one next hop.
    pub ecmp: Vec<usize>,
}

pub(crate) enum Kind {
    Host(Box<Host>),
    Gateway(Box<GatewayNode>),
    /// Forwards by its routes; a route with several next hops spreads flows over them
    /// ([`crate::ecmp`]).
    Router(Router),
    /// A shared segment joining several machines: it delivers a packet to the port whose
    /// machine owns the destination address (its own address or a claimed one), or, for other
    /// destinations, the owner of the route's next hop. Nothing is forwarded back out of the
    /// port it came in on; an address nobody owns is dropped ("ARP unanswered").
    Switch(Box<Switch>),
    Nat(Box<Nat>),
    Firewall(Box<Firewall>),
    /// A remote-access client machine: one link, the client shell and engine, an inner host.
    Client(Box<ClientNode>),
}

pub(crate) struct Node {
    pub name: String,
    pub ifaces: Vec<Iface>,
    pub routes: Vec<Route>,
    pub up: bool,
    /// When `up` last changed (a crash or a restart), for routers' next-hop detection.
    pub changed_at: Duration,
    /// Addresses the machine holds on no link (a TUN device, `lo`): local, never announced.
    pub held: Vec<Ipv4Addr>,
    pub kind: Kind,
    pub wake: Option<Duration>,
    pub reasm: Reassembler,
}

/// Properties of a link (both directions alike).
#[derive(Debug, Clone, PartialEq)]
pub struct LinkParams {
    pub mtu: u16,
    pub latency: Duration,
    pub jitter: Duration,
    pub loss: f64,
    /// Probability that a packet may overtake earlier ones (arrives with its own jitter).
    pub reorder: f64,
    pub bandwidth: u64,
    pub queue: u64,
}

#[derive(Debug, Default, Clone)]
pub struct LinkStats {
    pub packets: u64,
    /// Of `packets`, those sent from end `a` and from end `b`.
    pub from_end: [u64; 2],
    pub bytes: u64,
    pub lost: u64,
    pub queue_drops: u64,
    pub down_drops: u64,
}

pub(crate) struct Link {
    pub name: String,
    pub ends: [(usize, usize); 2],
    pub params: LinkParams,
    pub up: bool,
    /// When `up` last changed (a cut or a restore).
    pub changed_at: Duration,
    /// Per direction (from end 0, from end 1): when the transmitter is free, last arrival.
    pub busy_until: [Duration; 2],
    pub last_arrival: [Duration; 2],
    pub stats: LinkStats,
}

enum Hop {
    Iface(usize),
    /// A route with equal-cost next hops (its index in the node's routes).
    Ecmp(usize),
    Tun,
}

/// The transfers one `[[transfer]]` declared: one, or a group of `count` connections.
#[derive(Debug, Clone)]
pub struct TransferGroup {
    pub name: String,
    pub from: String,
    pub to: String,
    pub size: u64,
    /// Spacing of the starts.
    pub every: Duration,
    /// Indices into the world's transfers.
    pub members: std::ops::Range<usize>,
    /// The group's end (every member finished or failed) is on the timeline.
    pub reported: bool,
}

impl TransferGroup {
    pub fn is_group(&self) -> bool {
        self.members.len() > 1
    }
}

/// A line of the timeline.
#[derive(Debug, Clone)]
pub struct Entry {
    pub at: Duration,
    pub who: String,
    pub text: String,
}

pub(crate) struct World {
    pub base: Instant,
    pub now: Duration,
    seq: u64,
    queue: BTreeMap<(Duration, u64), Ev>,
    pub rng: Rng,
    pub nodes: Vec<Node>,
    pub links: Vec<Link>,
    pub transfers: Vec<TransferRecord>,
    pub transfer_reported: Vec<bool>,
    pub groups: Vec<TransferGroup>,
    pub timeline: Vec<Entry>,
    pub drops: BTreeMap<(String, &'static str), u64>,
    /// Engine log lines: (time, node, message), for assertions.
    pub logs: Vec<(Duration, usize, String)>,
    /// Cap on events handled per simulated instant, against livelock in a node.
    pub events_run: u64,
}

/// Failed members of a transfer group that get a timeline line of their own.
const QUIET_FAILURES_SHOWN: usize = 3;

/// One line about a finished group: how many completed and how long they took.
pub(crate) fn group_summary(g: &TransferGroup, members: &[TransferRecord]) -> String {
    let mut times: Vec<Duration> = members
        .iter()
        .filter(|t| t.failure.is_none())
        .filter_map(|t| Some(t.finished?.saturating_sub(t.started?)))
        .collect();
    times.sort();
    let failed = members.iter().filter(|t| t.failure.is_some()).count();
    let mut text = format!(
        "transfer group {}: {} of {} connections of {} from {} to {} complete, SHA-256 matches",
        g.name,
        times.len(),
        members.len(),
        crate::units::bytes(g.size),
        g.from,
        g.to
    );
    if let (Some(median), Some(max)) = (times.get(times.len() / 2), times.last()) {
        text.push_str(&format!(
            " (median {}, slowest {})",
            crate::units::secs(*median),
            crate::units::secs(*max)
        ));
    }
    if failed > 0 {
        text.push_str(&format!("; {failed} FAILED"));
    }
    text
}

/// Bound on packets generated by one gateway input chain (guards against routing loops).
const MAX_CHAIN: usize = 64;

impl World {
    pub fn new(seed: u64) -> World {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(b"rampart!");
        World {
            // A fixed anchor: the engines only ever see `base + simulated offset`.
            base: Instant::now(),
            now: Duration::ZERO,
            seq: 0,
            queue: BTreeMap::new(),
            rng: Rng::from_seed(key),
            nodes: Vec::new(),
            links: Vec::new(),
            transfers: Vec::new(),
            transfer_reported: Vec::new(),
            groups: Vec::new(),
            timeline: Vec::new(),
            drops: BTreeMap::new(),
            logs: Vec::new(),
            events_run: 0,
        }
    }

    pub fn schedule(&mut self, at: Duration, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at.max(self.now), self.seq), ev);
    }

    pub fn pop(&mut self, until: Duration) -> Option<Ev> {
        let (&(at, _), _) = self.queue.first_key_value()?;
        if at > until {
            return None;
        }
        let ((at, _), ev) = self.queue.pop_first()?;
        self.now = at;
        self.events_run += 1;
        Some(ev)
    }

    /// The next event if it is a packet arriving at `node` at the current instant.
    fn pop_arrival_now(&mut self, node: usize) -> Option<(usize, Vec<u8>)> {
        let (&(at, _), ev) = self.queue.first_key_value()?;
        if at != self.now || !matches!(ev, Ev::Arrive { node: n, .. } if *n == node) {
            return None;
        }
        match self.pop(at)? {
            Ev::Arrive { iface, packet, .. } => Some((iface, packet)),
            _ => None,
        }
    }

    /// Hands the inputs a gateway queued to its engine, one batch per run, applying each
    /// batch's effects before the next batch (so what a batch sends back into the same
    /// gateway is handled first, as the per-packet chain did).
    fn flush_gateway(&mut self, node: usize) {
        // The stream listeners first: their frames join this instant's inputs, and what the
        // engine queued on streams goes out.
        let mut fx = GwEffects::default();
        let runs = match &mut self.nodes[node].kind {
            Kind::Gateway(gw) => {
                gw.poll_streams(self.now, &mut fx);
                gw.take_runs()
            }
            _ => return,
        };
        self.apply_effects(node, fx, 0);
        for run in runs {
            let mut fx = GwEffects::default();
            let depth = match &mut self.nodes[node].kind {
                Kind::Gateway(gw) => gw.run_batch(self.base, self.now, run, &mut fx),
                _ => return,
            };
            self.apply_depth(node, fx, depth);
        }
    }

    pub fn note(&mut self, who: &str, text: String) {
        self.timeline.push(Entry {
            at: self.now,
            who: who.to_string(),
            text,
        });
    }

    pub fn drop_packet(&mut self, at: &str, reason: &'static str) {
        let count = self.drops.entry((at.to_string(), reason)).or_insert(0);
        *count += 1;
        if *count == 1 {
            self.note(at, format!("drop: {reason} (first; all are counted below)"));
        }
    }

    pub fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Arrive {
                node,
                iface,
                packet,
            } => {
                self.arrive(node, iface, packet);
                if matches!(self.nodes[node].kind, Kind::Gateway(_)) {
                    // What reaches a gateway at one instant goes to its engine as a batch.
                    while let Some((iface, packet)) = self.pop_arrival_now(node) {
                        self.arrive(node, iface, packet);
                    }
                    self.flush_gateway(node);
                }
            }
            Ev::Wake { node } => {
                if self.nodes[node].wake == Some(self.now) {
                    self.nodes[node].wake = None;
                    self.wake(node);
                }
            }
            Ev::FullSync { node, member, data } => {
                let (base, now) = (self.base, self.now);
                if !self.nodes[node].up {
                    return;
                }
                let mut fx = GwEffects::default();
                if let Kind::Gateway(gw) = &mut self.nodes[node].kind {
                    gw.full_sync_arrived(base, now, member, data, &mut fx);
                }
                self.apply(node, fx);
            }
            // The scenario layer handles these.
            Ev::Scheduled(_) | Ev::TransferStart(_) | Ev::Check => {}
        }
    }

    /// Runs the node's timers at once (after a command changed what it wants to do).
    pub fn wake_now(&mut self, node: usize) {
        self.wake(node);
    }

    fn wake(&mut self, node: usize) {
        if !self.nodes[node].up {
            return;
        }
        match &mut self.nodes[node].kind {
            Kind::Host(_) => self.run_host(node),
            Kind::Client(_) => self.run_client(node),
            Kind::Gateway(gw) => {
                let mut fx = GwEffects::default();
                gw.handle_timeout(self.base, self.now, &mut fx);
                self.apply(node, fx);
            }
            _ => {}
        }
    }

    /// Puts the node's next timer into the queue.
    pub fn reschedule(&mut self, node: usize) {
        let now = self.now;
        let base = self.base;
        let n = &mut self.nodes[node];
        if !n.up {
            return;
        }
        let next = match &mut n.kind {
            Kind::Host(h) => h.poll_at(now),
            Kind::Gateway(g) => g.poll_timeout(base, now),
            Kind::Client(c) => c.poll_at(base, now),
            _ => None,
        };
        let Some(mut next) = next else { return };
        // A timer in the past runs now, but never twice in the same instant.
        if next <= now {
            next = now + Duration::from_micros(100);
        }
        if n.wake.is_some_and(|w| w <= next && w > now) {
            return;
        }
        n.wake = Some(next);
        self.schedule(next, Ev::Wake { node });
    }

    pub fn run_host(&mut self, node: usize) {
        let now = self.now;
        let mut notes = Vec::new();
        let out = match &mut self.nodes[node].kind {
            Kind::Host(h) => h.run(now, &mut self.transfers, &mut notes),
            _ => return,
        };
        let name = self.nodes[node].name.clone();
        for n in notes {
            self.note(&name, n);
        }
        for p in out {
            self.send_local(node, p, 0);
        }
        self.report_transfers();
        self.reschedule(node);
    }

    /// Runs a client machine at the current instant and sends what it produced.
    pub fn run_client(&mut self, node: usize) {
        let (base, now) = (self.base, self.now);
        let fx = match &mut self.nodes[node].kind {
            Kind::Client(c) => c.run(base, now, &mut self.transfers),
            _ => return,
        };
        self.apply_client(node, fx);
    }

    /// Logs, notes, drops and packets of a client machine; then its next timer.
    pub fn apply_client(&mut self, node: usize, fx: ClientFx) {
        let name = self.nodes[node].name.clone();
        for l in fx.logs {
            self.logs.push((self.now, node, l.clone()));
            self.note(&name, l);
        }
        for n in fx.notes {
            self.note(&name, n);
        }
        for d in fx.drops {
            self.drop_packet(&name, d);
        }
        for p in fx.send {
            if let Ok(ip) = Ipv4Header::parse(&p) {
                self.output(node, 0, p, &ip);
            }
        }
        self.report_transfers();
        self.reschedule(node);
    }

    fn report_transfers(&mut self) {
        for i in 0..self.transfers.len() {
            let t = &self.transfers[i];
            if self.transfer_reported[i] || (t.finished.is_none() && t.failure.is_none()) {
                continue;
            }
            self.transfer_reported[i] = true;
            let t = t.clone();
            let text = match (t.finished, t.started, &t.failure) {
                (Some(end), Some(start), None) => {
                    let secs = end.saturating_sub(start).as_secs_f64().max(1e-6);
                    format!(
                        "transfer {}: {} from {} to {} in {:.2}s ({}), SHA-256 matches",
                        t.name,
                        crate::units::bytes(t.size),
                        t.from,
                        t.to,
                        secs,
                        crate::units::bitrate(t.size as f64 * 8.0 / secs)
                    )
                }
                (_, _, Some(f)) => format!("transfer {} FAILED: {f}", t.name),
                _ => continue,
            };
            // A group's members appear one by one only when they fail, and only the first
            // few of them (all are in the group's line and the tables).
            if t.quiet {
                let failed_before =
                    self.groups
                        .iter()
                        .find(|g| g.members.contains(&i))
                        .map_or(0, |g| {
                            g.members
                                .clone()
                                .filter(|&j| j < i && self.transfers[j].failure.is_some())
                                .count()
                        });
                if t.failure.is_none() || failed_before >= QUIET_FAILURES_SHOWN {
                    continue;
                }
            }
            self.note(&t.to, text);
        }
        for g in 0..self.groups.len() {
            let group = &self.groups[g];
            if group.reported || !group.is_group() {
                continue;
            }
            let members = &self.transfers[group.members.clone()];
            if members
                .iter()
                .any(|t| t.finished.is_none() && t.failure.is_none())
            {
                continue;
            }
            let text = group_summary(group, members);
            let to = group.to.clone();
            self.groups[g].reported = true;
            self.note(&to, text);
        }
    }

    /// Applies what a gateway engine asked for.
    pub fn apply(&mut self, node: usize, fx: GwEffects) {
        self.apply_depth(node, fx, 0);
    }

    fn apply_depth(&mut self, node: usize, fx: GwEffects, depth: usize) {
        self.apply_effects(node, fx, depth);
        // What the sends routed back into this gateway.
        self.flush_gateway(node);
        self.reschedule(node);
    }

    /// Logs, notes, drops, claims, full syncs and packets of `fx`, without running the engine
    /// again.
    fn apply_effects(&mut self, node: usize, fx: GwEffects, depth: usize) {
        let name = self.nodes[node].name.clone();
        for l in fx.logs {
            self.logs.push((self.now, node, l.clone()));
            self.note(&name, l);
        }
        for n in fx.notes {
            self.note(&name, n);
        }
        for d in fx.drops {
            self.drop_packet(&name, d);
        }
        for (interface, addr, claim) in fx.claims {
            self.claim(node, &interface, addr, claim);
        }
        for (member, address) in fx.full_syncs {
            self.start_full_sync(node, member, address);
        }
        for p in fx.send {
            self.send_local(node, p, depth);
        }
    }

    fn arrive(&mut self, node: usize, iface: usize, packet: Vec<u8>) {
        if !self.nodes[node].up {
            let name = self.nodes[node].name.clone();
            self.drop_packet(&name, "node is down");
            return;
        }
        let name = self.nodes[node].name.clone();
        let Some(ip) = Ipv4Header::parse(&packet).ok() else {
            self.drop_packet(&name, "malformed IP packet");
            return;
        };
        if let Kind::Switch(_) = &self.nodes[node].kind {
            self.switch_forward(node, iface, packet, ip.dst);
            return;
        }
        if let Kind::Client(_) = &self.nodes[node].kind {
            let mut p = packet;
            if ip.is_fragment() {
                // The client machine's kernel reassembles.
                match self.nodes[node].reasm.add(self.now, &p, &ip) {
                    Some(whole) => p = whole,
                    None => return,
                }
            }
            if let Kind::Client(c) = &mut self.nodes[node].kind {
                c.receive(p);
            }
            self.run_client(node);
            return;
        }
        if let Kind::Host(h) = &mut self.nodes[node].kind {
            if ip.is_fragment() {
                self.drop_packet(&name, "host: IP fragment (hosts do not reassemble)");
                return;
            }
            h.receive(packet);
            self.run_host(node);
            return;
        }
        self.kernel_input(node, Some(iface), packet, ip, 0);
    }

    /// IP input of a machine that forwards (router, gateway, NAT, firewall).
    fn kernel_input(
        &mut self,
        node: usize,
        in_iface: Option<usize>,
        mut p: Vec<u8>,
        mut ip: Ipv4Header,
        depth: usize,
    ) {
        let name = self.nodes[node].name.clone();
        let now = self.now;
        // Hide NAT: packets for the public address are translated back first.
        if let Kind::Nat(nat) = &mut self.nodes[node].kind {
            if in_iface == Some(nat.outside_iface) && ip.dst == nat.public {
                if ip.is_fragment() && !nat.drop_fragments {
                    match self.nodes[node].reasm.add(now, &p, &ip) {
                        Some(whole) => {
                            p = whole;
                            ip = match Ipv4Header::parse(&p).ok() {
                                Some(ip) => ip,
                                None => return,
                            };
                        }
                        None => return,
                    }
                }
                let Kind::Nat(nat) = &mut self.nodes[node].kind else {
                    return;
                };
                if let Err(reason) = nat.inbound(now, &mut p, &ip) {
                    self.drop_packet(&name, reason);
                    return;
                }
                ip = match Ipv4Header::parse(&p).ok() {
                    Some(ip) => ip,
                    None => return,
                };
            }
        }
        let local = self.nodes[node]
            .ifaces
            .iter()
            .any(|i| i.addr == ip.dst || i.claimed.contains(&ip.dst))
            || self.nodes[node].held.contains(&ip.dst);
        if local {
            if ip.is_fragment() {
                match self.nodes[node].reasm.add(now, &p, &ip) {
                    Some(whole) => {
                        p = whole;
                        ip = match Ipv4Header::parse(&p).ok() {
                            Some(ip) => ip,
                            None => return,
                        };
                    }
                    None => return,
                }
            }
            match &mut self.nodes[node].kind {
                Kind::Gateway(gw) => {
                    if let Err(reason) = gw.deliver_local(&p, &ip) {
                        self.drop_packet(&name, reason);
                    }
                }
                _ => {
                    if ip.protocol != packet::PROTO_ICMP {
                        self.drop_packet(&name, "no service on this address");
                    }
                }
            }
            return;
        }
        // Forwarding.
        if in_iface.is_some() {
            if ip.ttl <= 1 {
                self.drop_packet(&name, "TTL expired");
                return;
            }
            p[8] -= 1;
            packet::fix_ip_checksum(&mut p);
            ip.ttl -= 1;
        }
        match self.route(node, ip.dst) {
            None => self.drop_packet(&name, "no route"),
            Some(Hop::Tun) => self.route_into_tun(node, in_iface, p, ip, depth),
            Some(Hop::Iface(out)) => self.forward_on(node, in_iface, out, p, ip),
            Some(Hop::Ecmp(ri)) => match self.ecmp_next_hop(node, ri, &p, &ip) {
                Some(out) => self.forward_on(node, in_iface, out, p, ip),
                None => self.drop_packet(&name, "router: every equal-cost next hop is down"),
            },
        }
    }

    /// Forwards a routed packet out of interface `out`: the firewall's and the NAT's checks
    /// and translations, then the link.
    fn forward_on(
        &mut self,
        node: usize,
        in_iface: Option<usize>,
        out: usize,
        mut p: Vec<u8>,
        mut ip: Ipv4Header,
    ) {
        let name = self.nodes[node].name.clone();
        let now = self.now;
        if let Kind::Firewall(fw) = &mut self.nodes[node].kind {
            let outbound = out == fw.outside_iface && in_iface != Some(out);
            let inbound = in_iface == Some(fw.outside_iface);
            if outbound || inbound {
                if let Err(reason) = fw.check(now, &p, &ip, outbound) {
                    self.drop_packet(&name, reason);
                    return;
                }
            }
        }
        if let Kind::Nat(nat) = &self.nodes[node].kind {
            if out == nat.outside_iface && in_iface != Some(out) {
                if ip.is_fragment() && !nat.drop_fragments {
                    match self.nodes[node].reasm.add(now, &p, &ip) {
                        Some(whole) => {
                            p = whole;
                            ip = match Ipv4Header::parse(&p).ok() {
                                Some(ip) => ip,
                                None => return,
                            };
                        }
                        None => return,
                    }
                }
                let Kind::Nat(nat) = &mut self.nodes[node].kind else {
                    return;
                };
                if let Err(reason) = nat.outbound(now, &mut p, &ip, &mut self.rng) {
                    self.drop_packet(&name, reason);
                    return;
                }
                ip = match Ipv4Header::parse(&p).ok() {
                    Some(ip) => ip,
                    None => return,
                };
            }
        }
        self.output(node, out, p, &ip);
    }

    /// A packet routed into a gateway's TUN device: MTU check, then the engine.
    fn route_into_tun(
        &mut self,
        node: usize,
        in_iface: Option<usize>,
        p: Vec<u8>,
        ip: Ipv4Header,
        depth: usize,
    ) {
        let name = self.nodes[node].name.clone();
        if depth > MAX_CHAIN {
            self.drop_packet(&name, "routing loop through the tunnel");
            return;
        }
        let Kind::Gateway(gw) = &mut self.nodes[node].kind else {
            return;
        };
        let mtu = usize::from(gw.config.tunnel.mtu);
        if ip.total_len > mtu {
            if ip.dont_fragment {
                self.icmp_too_big(node, in_iface, &p, &ip, mtu as u16);
                return;
            }
            for f in packet::fragment(&p, &ip, mtu) {
                if let Kind::Gateway(gw) = &mut self.nodes[node].kind {
                    gw.tun_input(f, depth);
                }
            }
            return;
        }
        gw.tun_input(p, depth);
    }

    fn icmp_too_big(
        &mut self,
        node: usize,
        in_iface: Option<usize>,
        p: &[u8],
        ip: &Ipv4Header,
        mtu: u16,
    ) {
        let src = in_iface
            .and_then(|i| self.nodes[node].ifaces.get(i))
            .or_else(|| self.nodes[node].ifaces.first())
            .map(|i| i.addr);
        let name = self.nodes[node].name.clone();
        self.drop_packet(
            &name,
            "packet too big with DF set (ICMP fragmentation needed sent)",
        );
        if ip.protocol == packet::PROTO_ICMP {
            return;
        }
        if let Some(src) = src {
            let icmp = packet::icmp_frag_needed(src, p, ip, mtu);
            self.send_local(node, icmp, MAX_CHAIN);
        }
    }

    /// A packet this machine originates (or its TUN device wrote): route and send.
    pub fn send_local(&mut self, node: usize, p: Vec<u8>, depth: usize) {
        let Some(ip) = Ipv4Header::parse(&p).ok() else {
            return;
        };
        if let Kind::Host(_) | Kind::Client(_) = self.nodes[node].kind {
            self.output(node, 0, p, &ip);
            return;
        }
        self.kernel_input(node, None, p, ip, depth);
    }

    fn route(&self, node: usize, dst: Ipv4Addr) -> Option<Hop> {
        let n = &self.nodes[node];
        let best = n
            .routes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.net.contains(&dst))
            .max_by_key(|(_, r)| r.net.prefix_len());
        let tun = match &n.kind {
            Kind::Gateway(g) => g.routes_to_tun(dst),
            _ => None,
        };
        match (best, tun) {
            (Some((_, r)), Some(t)) if t > r.net.prefix_len() => Some(Hop::Tun),
            (None, Some(_)) => Some(Hop::Tun),
            (Some((i, r)), _) if r.ecmp.len() > 1 => Some(Hop::Ecmp(i)),
            (Some((_, r)), _) => Some(Hop::Iface(r.iface)),
            (None, None) => None,
        }
    }

    /// Since when the next hop behind `iface` of `node` is dead (`None`: alive): the link is
    /// cut or the machine at its other end is down. The earliest of the failing conditions.
    fn next_hop_down_since(&self, node: usize, iface: usize) -> Option<Duration> {
        let i = &self.nodes[node].ifaces[iface];
        let link = &self.links[i.link];
        let (peer, _) = link.ends[1 - i.side];
        let peer = &self.nodes[peer];
        let mut since: Option<Duration> = None;
        let mut fail = |t: Duration| since = Some(since.map_or(t, |s| s.min(t)));
        if !link.up {
            fail(link.changed_at);
        }
        if !peer.up {
            fail(peer.changed_at);
        }
        if let Kind::Gateway(gw) = &peer.kind {
            if let Some(t) = gw.announcements_down_since() {
                fail(t);
            }
        }
        since
    }

    /// The next hop (interface) an ECMP route `ri` of router `node` gives the packet: the
    /// flow hash over the next hops that are alive or died less than the router's
    /// `next_hop_timeout` ago. `None` when every one is dead.
    fn ecmp_next_hop(&self, node: usize, ri: usize, p: &[u8], ip: &Ipv4Header) -> Option<usize> {
        let n = &self.nodes[node];
        let route = &n.routes[ri];
        let Kind::Router(router) = &n.kind else {
            return Some(route.iface);
        };
        let usable = |&&hop: &&usize| {
            self.next_hop_down_since(node, hop)
                .is_none_or(|t| self.now < t + router.next_hop_timeout)
        };
        let live = route.ecmp.iter().filter(usable).count();
        if live == 0 {
            return None;
        }
        let k = ecmp::pick(ecmp::flow_hash(router.seed, p, ip), live);
        route.ecmp.iter().filter(usable).nth(k).copied()
    }

    /// Sends on an interface: ICMP "fragmentation needed" or fragmentation above the MTU.
    fn output(&mut self, node: usize, iface: usize, p: Vec<u8>, ip: &Ipv4Header) {
        let Some(i) = self.nodes[node].ifaces.get(iface) else {
            return;
        };
        let link = i.link;
        let side = i.side;
        let mtu = usize::from(self.links[link].params.mtu);
        if p.len() <= mtu {
            self.link_send(link, side, p);
            return;
        }
        if ip.dont_fragment {
            self.icmp_too_big(node, None, &p, ip, mtu as u16);
            return;
        }
        for f in packet::fragment(&p, ip, mtu) {
            self.link_send(link, side, f);
        }
    }

    /// Puts a packet on a link: down, loss, queue limit, serialisation and latency.
    fn link_send(&mut self, link: usize, from_side: usize, p: Vec<u8>) {
        let now = self.now;
        let l = &mut self.links[link];
        if !l.up {
            l.stats.down_drops += 1;
            let name = l.name.clone();
            self.drop_packet(&name, "link is down");
            return;
        }
        if l.params.loss > 0.0 {
            let r = f64::from(self.rng.next_u32()) / 4_294_967_296.0;
            if r < l.params.loss {
                l.stats.lost += 1;
                let name = l.name.clone();
                self.drop_packet(&name, "lost on the link");
                return;
            }
        }
        let len = p.len() as u64;
        let start = l.busy_until[from_side].max(now);
        let backlog = start - now;
        let queued = backlog.as_nanos() as u64 * l.params.bandwidth / 8 / 1_000_000_000;
        if queued + len > l.params.queue {
            l.stats.queue_drops += 1;
            let name = l.name.clone();
            self.drop_packet(&name, "queue full");
            return;
        }
        let tx = Duration::from_nanos(len * 8 * 1_000_000_000 / l.params.bandwidth);
        l.busy_until[from_side] = start + tx;
        let jitter = if l.params.jitter.is_zero() {
            Duration::ZERO
        } else {
            let j = l.params.jitter.as_nanos() as u64;
            Duration::from_nanos(self.rng.next_u64() % j)
        };
        let overtake = l.params.reorder > 0.0
            && f64::from(self.rng.next_u32()) / 4_294_967_296.0 < l.params.reorder;
        let l = &mut self.links[link];
        let own = start + tx + l.params.latency + jitter;
        let arrival = if overtake {
            own
        } else {
            let a = own.max(l.last_arrival[from_side]);
            l.last_arrival[from_side] = a;
            a
        };
        l.stats.packets += 1;
        l.stats.from_end[from_side] += 1;
        l.stats.bytes += len;
        let (node, iface) = l.ends[1 - from_side];
        self.schedule(
            arrival,
            Ev::Arrive {
                node,
                iface,
                packet: p,
            },
        );
    }

    /// A machine claims (`claim`) or releases a virtual address on the interface attached to
    /// the link named `interface`; a switch at the other end learns the claim (gratuitous ARP).
    /// An interface that is none of its links (a Load Sharing member in routed distribution
    /// puts the virtual addresses on its TUN device or `lo`) makes the machine hold the address
    /// itself, announced to nobody: routes bring packets for it.
    fn claim(&mut self, node: usize, interface: &str, addr: Ipv4Addr, claim: bool) {
        let name = self.nodes[node].name.clone();
        let Some(k) = self.nodes[node]
            .ifaces
            .iter()
            .position(|i| self.links[i.link].name == interface)
        else {
            let held = &mut self.nodes[node].held;
            let had = held.contains(&addr);
            held.retain(|a| *a != addr);
            if claim {
                held.push(addr);
            }
            let dev = if interface.is_empty() {
                "its TUN device".to_string()
            } else {
                format!("{interface} (no link of that name)")
            };
            match (claim, had) {
                (true, false) => self.note(&name, format!("holds {addr} on {dev}, no ARP")),
                (false, true) => self.note(&name, format!("drops {addr} from {dev}")),
                _ => {}
            }
            return;
        };
        let iface = &mut self.nodes[node].ifaces[k];
        iface.claimed.retain(|a| *a != addr);
        if claim {
            iface.claimed.push(addr);
        }
        let (link, side) = (iface.link, iface.side);
        let (peer, port) = self.links[link].ends[1 - side];
        if claim {
            if let Kind::Switch(sw) = &mut self.nodes[peer].kind {
                sw.owners.insert(addr, port);
            }
        }
        let verb = if claim { "claims" } else { "releases" };
        self.note(&name, format!("{verb} {addr} on {interface}"));
    }

    /// Every address this machine lost with a crash (its claims die with it; neighbours keep
    /// their stale entries until someone else claims).
    pub fn forget_claims(&mut self, node: usize) {
        for i in &mut self.nodes[node].ifaces {
            i.claimed.clear();
        }
        self.nodes[node].held.clear();
    }

    /// A switch forwards `p`, which came in on port `in_port`, to the owner of `dst` or of its
    /// route's next hop.
    fn switch_forward(&mut self, node: usize, in_port: usize, p: Vec<u8>, dst: Ipv4Addr) {
        let name = self.nodes[node].name.clone();
        let Kind::Switch(sw) = &self.nodes[node].kind else {
            return;
        };
        let target = sw
            .routes
            .iter()
            .filter(|(net, _)| net.contains(&dst))
            .max_by_key(|(net, _)| net.prefix_len())
            .map_or(dst, |&(_, via)| via);
        let claimed = sw.owners.get(&target).copied();
        let port = claimed.or_else(|| {
            self.nodes[node].ifaces.iter().position(|i| {
                let (peer, pi) = self.links[i.link].ends[1 - i.side];
                self.nodes[peer].ifaces[pi].addr == target
            })
        });
        match port {
            Some(port) if port != in_port => {
                let (link, side) = (
                    self.nodes[node].ifaces[port].link,
                    self.nodes[node].ifaces[port].side,
                );
                self.link_send(link, side, p);
            }
            Some(_) => self.drop_packet(&name, "switch: would go back out of its port"),
            None => self.drop_packet(&name, "switch: nobody owns the next hop (ARP unanswered)"),
        }
    }

    /// The path from `node` to the interface that has `ip` on machine `source`: that
    /// interface's link when it ends at `node`, or that link and `node`'s link to the switch
    /// at its other end. Its one-way latency and its bottleneck bandwidth; `None` when there
    /// is no such path or a piece of it is down.
    fn segment_path(&self, node: usize, source: usize, ip: Ipv4Addr) -> Option<(Duration, u64)> {
        let iface = self.nodes[source].ifaces.iter().find(|i| i.addr == ip)?;
        let l = &self.links[iface.link];
        let (far, _) = l.ends[1 - iface.side];
        if !l.up {
            return None;
        }
        if far == node {
            return Some((l.params.latency, l.params.bandwidth));
        }
        if !matches!(self.nodes[far].kind, Kind::Switch(_)) || !self.nodes[far].up {
            return None;
        }
        let hop = self.links.iter().find(|k| {
            k.up && k.ends.iter().any(|e| e.0 == node) && k.ends.iter().any(|e| e.0 == far)
        })?;
        Some((
            l.params.latency + hop.params.latency,
            l.params.bandwidth.min(hop.params.bandwidth),
        ))
    }

    /// `node` opens the full-sync stream to `address` (a TCP connection in production): it
    /// needs an up path (a shared link, or both links to a shared switch) to the machine that
    /// has the address and a running engine there. The whole snapshot arrives after the
    /// path's latency plus its serialisation time.
    fn start_full_sync(&mut self, node: usize, member: u8, address: std::net::SocketAddr) {
        let std::net::IpAddr::V4(ip) = address.ip() else {
            return;
        };
        let source = (0..self.nodes.len())
            .find(|&n| n != node && self.nodes[n].ifaces.iter().any(|i| i.addr == ip));
        let path = source.and_then(|s| self.segment_path(node, s, ip));
        let (base, now) = (self.base, self.now);
        let (data, delay) = match (source, path) {
            (Some(s), Some((latency, bandwidth))) if self.nodes[s].up => {
                let bandwidth = bandwidth.max(1);
                let exported = match &mut self.nodes[s].kind {
                    Kind::Gateway(gw) => gw.full_sync_export(base, now),
                    _ => None,
                };
                match exported {
                    Some(bytes) => {
                        let tx = Duration::from_nanos(
                            (bytes.len() as u64 * 8).saturating_mul(1_000_000_000) / bandwidth,
                        );
                        // TCP and TLS handshakes: two round trips before the first byte.
                        (Ok(bytes), latency * 5 + tx)
                    }
                    None => (Err("connection refused".to_string()), latency * 2),
                }
            }
            _ => (
                Err(format!("{address} unreachable")),
                Duration::from_secs(3),
            ),
        };
        let name = self.nodes[node].name.clone();
        self.note(
            &name,
            format!("pulls a full sync from member {member} at {address}"),
        );
        self.schedule(now + delay, Ev::FullSync { node, member, data });
    }
}
