//! A virtual network of cluster engines in virtual time: seeded loss, duplication, reordering
//! (random delay) and cut links; full syncs are carried out by copying the source's table.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rampart_cluster::{
    Cluster, ClusterConfig, ClusterEvent, ClusterMode, DeltaRecord, LinkId, MemberConfig, MemberId,
    MemberState, RecordKind, SyncAuth, VirtualAddress,
};
use rampart_crypto::Rng;

pub const HB: Duration = Duration::from_millis(100);

thread_local! {
    /// `retransmit_queue` of the configs this thread builds.
    pub static QUEUE: std::cell::Cell<usize> = const { std::cell::Cell::new(100_000) };
}

pub fn addr(id: MemberId) -> SocketAddr {
    format!("10.0.0.{id}:8116").parse().unwrap()
}

/// Member `id`'s address on sync link `link` (link 0 is [`addr`]).
pub fn link_addr(id: MemberId, link: LinkId) -> SocketAddr {
    format!("10.0.{link}.{id}:8116").parse().unwrap()
}

/// Changes every member's configuration before the engines are built (and rebuilt).
pub type Tweak = std::rc::Rc<dyn Fn(&mut ClusterConfig)>;

pub fn config(id: MemberId, n: u8, priorities: &[u16], switch_back: bool) -> ClusterConfig {
    config_dead(id, n, priorities, switch_back, 3)
}

pub fn config_dead(
    id: MemberId,
    n: u8,
    priorities: &[u16],
    switch_back: bool,
    dead_after: u32,
) -> ClusterConfig {
    ClusterConfig {
        name: "test".into(),
        member_id: id,
        mode: ClusterMode::HighAvailability,
        members: (1..=n)
            .map(|m| MemberConfig {
                id: m,
                sync_address: addr(m),
                priority: priorities.get(usize::from(m - 1)).copied().unwrap_or(100),
                extra_sync_addresses: Vec::new(),
            })
            .collect(),
        switch_back,
        heartbeat_interval: HB,
        dead_after,
        monitored_interfaces: vec!["eth0".into(), "eth1".into()],
        virtual_addresses: vec![VirtualAddress {
            interface: "eth0".into(),
            address: "192.0.2.1/24".parse().unwrap(),
        }],
        auth: SyncAuth {
            secret: zeroize::Zeroizing::new(b"a cluster secret of some length".to_vec()),
            tls: None,
        },
        retransmit_queue: QUEUE.with(|q| q.get()),
        takeover_margin: 16384,
        esp_sync_interval: Duration::from_millis(100),
        load_sharing: None,
        sync_link_hold_down: rampart_cluster::DEFAULT_SYNC_LINK_HOLD_DOWN,
    }
}

pub struct Node {
    pub cluster: Cluster,
    pub up: bool,
    /// The replicated table (key -> body) this member holds.
    pub table: BTreeMap<u64, Vec<u8>>,
    pub delivered: Vec<DeltaRecord>,
    pub events: Vec<ClusterEvent>,
    /// A full sync in progress: (source, when the snapshot is taken).
    pub full_sync: Option<(MemberId, Instant)>,
    pub boot: u64,
}

pub struct Packet {
    at: Instant,
    n: u64,
    from: usize,
    to: usize,
    link: LinkId,
    data: Vec<u8>,
}

pub struct Net {
    pub start: Instant,
    pub now: Instant,
    pub nodes: Vec<Node>,
    pub in_flight: Vec<Packet>,
    sent: u64,
    pub rng: Rng,
    /// Per mille.
    pub loss: u32,
    pub dup: u32,
    /// Extra random delay up to this (reorders).
    pub jitter: Duration,
    pub latency: Duration,
    pub cut: HashSet<(usize, usize)>,
    /// Sync links cut for everyone.
    pub cut_links: HashSet<LinkId>,
    /// Per sync link: extra one-way latency (added to `latency`).
    pub link_latency: BTreeMap<LinkId, Duration>,
    pub tweak: Option<Tweak>,
    /// How long a full sync takes.
    pub full_sync_time: Duration,
    pub priorities: Vec<u16>,
    pub switch_back: bool,
    pub dead_after: u32,
}

impl Net {
    pub fn new(n: u8, priorities: &[u16], switch_back: bool, seed: u64) -> Net {
        Net::with_dead_after(n, priorities, switch_back, seed, 3)
    }

    pub fn with_dead_after(
        n: u8,
        priorities: &[u16],
        switch_back: bool,
        seed: u64,
        dead_after: u32,
    ) -> Net {
        Net::with_tweak(n, priorities, switch_back, seed, dead_after, None)
    }

    /// A network whose members' configurations `tweak` changes first.
    pub fn with_tweak(
        n: u8,
        priorities: &[u16],
        switch_back: bool,
        seed: u64,
        dead_after: u32,
        tweak: Option<Tweak>,
    ) -> Net {
        let start = Instant::now();
        let build = |id: MemberId| {
            let mut c = config_dead(id, n, priorities, switch_back, dead_after);
            if let Some(t) = &tweak {
                t(&mut c);
            }
            c
        };
        let mut seed_bytes = [0u8; 32];
        seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
        let nodes = (1..=n)
            .map(|id| Node {
                cluster: Cluster::new(build(id), start, 1000, Rng::from_seed([id; 32])),
                up: true,
                table: BTreeMap::new(),
                delivered: Vec::new(),
                events: Vec::new(),
                full_sync: None,
                boot: 1000,
            })
            .collect();
        Net {
            start,
            now: start,
            nodes,
            in_flight: Vec::new(),
            sent: 0,
            rng: Rng::from_seed(seed_bytes),
            loss: 0,
            dup: 0,
            jitter: Duration::ZERO,
            latency: Duration::from_micros(200),
            cut: HashSet::new(),
            cut_links: HashSet::new(),
            link_latency: BTreeMap::new(),
            tweak,
            full_sync_time: Duration::from_millis(20),
            priorities: priorities.to_vec(),
            switch_back,
            dead_after,
        }
    }

    pub fn cluster(&mut self, i: usize) -> &mut Cluster {
        &mut self.nodes[i].cluster
    }

    pub fn states(&self) -> Vec<MemberState> {
        self.nodes.iter().map(|n| n.cluster.state()).collect()
    }

    pub fn actives(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].up && self.nodes[i].cluster.state() == MemberState::Active)
            .collect()
    }

    pub fn cut_link(&mut self, a: usize, b: usize, cut: bool) {
        for l in [(a, b), (b, a)] {
            if cut {
                self.cut.insert(l);
            } else {
                self.cut.remove(&l);
            }
        }
    }

    /// Cuts (or heals) sync link `link` for every member; a cut also loses what is in flight
    /// on it.
    pub fn cut_sync_link(&mut self, link: LinkId, cut: bool) {
        if cut {
            self.cut_links.insert(link);
            self.in_flight.retain(|p| p.link != link);
        } else {
            self.cut_links.remove(&link);
        }
    }

    /// Kills member `i` (stops delivering to and from it).
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].up = false;
        self.in_flight.retain(|p| p.from != i && p.to != i);
    }

    /// Restarts member `i` with an empty table and a newer boot id.
    pub fn restart(&mut self, i: usize) {
        let n = self.nodes.len() as u8;
        let id = i as u8 + 1;
        let node = &mut self.nodes[i];
        node.boot += 1;
        let mut config = config_dead(id, n, &self.priorities, self.switch_back, self.dead_after);
        if let Some(t) = &self.tweak {
            t(&mut config);
        }
        node.cluster = Cluster::new(config, self.now, node.boot, Rng::from_seed([id + 100; 32]));
        node.up = true;
        node.table.clear();
        node.full_sync = None;
    }

    /// The active member writes a record to its table and pushes it.
    pub fn write(&mut self, i: usize, kind: RecordKind, key: u64, body: &[u8]) {
        let now = self.now;
        let node = &mut self.nodes[i];
        match kind {
            RecordKind::ConnDelete => {
                node.table.remove(&key);
            }
            _ => {
                node.table.insert(key, body.to_vec());
            }
        }
        node.cluster.push_record(now, kind, key, body);
        self.drain(i);
    }

    pub fn drain_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.drain(i);
        }
    }

    fn chance(&mut self, per_mille: u32) -> bool {
        per_mille > 0 && self.rng.next_u32() % 1000 < per_mille
    }

    fn drain(&mut self, i: usize) {
        let now = self.now;
        while let Some(t) = self.nodes[i].cluster.poll_transmit() {
            if !self.nodes[i].up {
                continue;
            }
            let to = self
                .nodes
                .iter()
                .position(|n| {
                    n.cluster.config().me().link_address(usize::from(t.link)) == Some(t.remote)
                })
                .unwrap();
            if self.cut.contains(&(i, to))
                || self.cut_links.contains(&t.link)
                || self.chance(self.loss)
            {
                continue;
            }
            let link_latency = self.link_latency.get(&t.link).copied().unwrap_or_default();
            let copies = if self.chance(self.dup) { 2 } else { 1 };
            for _ in 0..copies {
                let jitter = if self.jitter.is_zero() {
                    Duration::ZERO
                } else {
                    Duration::from_micros(self.rng.next_u64() % self.jitter.as_micros() as u64)
                };
                self.sent += 1;
                self.in_flight.push(Packet {
                    n: self.sent,
                    at: now + self.latency + link_latency + jitter,
                    from: i,
                    to,
                    link: t.link,
                    data: t.data.clone(),
                });
            }
        }
        while let Some(e) = self.nodes[i].cluster.poll_event() {
            if let ClusterEvent::FullSyncNeeded { member, .. } = &e {
                self.nodes[i].full_sync = Some((*member, now + self.full_sync_time));
                let m = *member;
                self.nodes[i].cluster.full_sync_started(now, m);
            }
            self.nodes[i].events.push(e);
        }
        while let Some(r) = self.nodes[i].cluster.poll_record() {
            let node = &mut self.nodes[i];
            match r.kind {
                RecordKind::ConnDelete => {
                    node.table.remove(&r.key);
                }
                _ => {
                    node.table.insert(r.key, r.body.clone());
                }
            }
            node.delivered.push(r);
        }
    }

    /// Runs until `until`, processing every timer and packet in order.
    pub fn run_until(&mut self, until: Instant) {
        loop {
            // Next thing to happen.
            let mut next = until;
            for n in self.nodes.iter().filter(|n| n.up) {
                if let Some(t) = n.cluster.poll_timeout() {
                    next = next.min(t);
                }
                if let Some((_, t)) = n.full_sync {
                    next = next.min(t);
                }
            }
            for p in &self.in_flight {
                next = next.min(p.at);
            }
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            let now = self.now;
            // Packets due.
            let mut due = Vec::new();
            let mut i = 0;
            while i < self.in_flight.len() {
                if self.in_flight[i].at <= now {
                    due.push(self.in_flight.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            due.sort_by_key(|p| (p.at, p.n));
            for mut p in due {
                if !self.nodes[p.to].up {
                    continue;
                }
                let from = addr(p.from as u8 + 1);
                let _ = self.nodes[p.to]
                    .cluster
                    .handle_datagram(now, p.link, from, &mut p.data);
                self.drain(p.to);
            }
            for i in 0..self.nodes.len() {
                if !self.nodes[i].up {
                    continue;
                }
                if let Some((src, at)) = self.nodes[i].full_sync {
                    if at <= now {
                        self.nodes[i].full_sync = None;
                        let s = usize::from(src - 1);
                        if self.nodes[s].up && !self.cut.contains(&(i, s)) {
                            let seq = self.nodes[s].cluster.next_seq();
                            self.nodes[i].table = self.nodes[s].table.clone();
                            self.nodes[s].cluster.full_sync_served();
                            self.nodes[i].cluster.full_sync_complete(now, src, seq);
                        } else {
                            self.nodes[i]
                                .cluster
                                .full_sync_failed(now, src, "unreachable");
                        }
                        self.drain(i);
                    }
                }
                if self.nodes[i]
                    .cluster
                    .poll_timeout()
                    .is_some_and(|t| t <= now)
                {
                    self.nodes[i].cluster.handle_timeout(now);
                }
                self.drain(i);
            }
            if next == until && self.in_flight.iter().all(|p| p.at > until) {
                let pending = self
                    .nodes
                    .iter()
                    .any(|n| n.up && n.cluster.poll_timeout().is_some_and(|t| t <= until));
                if !pending {
                    break;
                }
            }
        }
        self.now = until;
    }

    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }
}
