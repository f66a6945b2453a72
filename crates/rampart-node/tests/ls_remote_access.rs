//! Remote-access clients of a two- or three-member Load Sharing cluster (routed distribution), in
//! virtual time: each client (built from a profile, as the client shell builds it) is behind
//! a NAT and runs NAT-T. The harness plays the NAT, the routers and the sync network:
//! datagrams to the virtual address reach the member the test routes them to (ECMP-like: after
//! a NAT rebinding the client's new source port may hash to the other member), inside traffic
//! enters the TUN device of the member the test names.
//!
//! What is shown: a client's SA belongs to the member that negotiated it (A); its IKE and
//! ESP-in-UDP arriving at the other member (B) from a new NAT mapping reach A, which follows
//! the mapping (RFC 7296 2.23, RFC 3948 section 5) and answers the client there; inside
//! traffic to the client's virtual IP entering B is forwarded to A (found by the destination:
//! the Office Mode lease of A's SA in B's replicas) and sealed there; when A dies, B adopts
//! the SA and the client goes on with the same IKE SA and the same virtual IP.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::{udp, HEADROOM};
use rampart_config::ClientTransport;
use rampart_crypto::Rng;
use rampart_node::{Disposition, Gateway, LoadSharingStats, Output};

const VIP: &str = "192.0.2.1";
const SYNC: [&str; 3] = ["10.255.0.1", "10.255.0.2", "10.255.0.3"];
/// The NAT's public address (every client's datagrams come from it).
const NAT_PUBLIC: &str = "198.51.100.1";
/// The clients' addresses behind the NAT.
const PRIVATE: [&str; 3] = ["192.168.1.10", "192.168.1.11", "192.168.1.12"];
const INSIDE: [u8; 4] = [10, 1, 0, 5];
const PSK: &str = "lab remote-access key, long enough";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Member `id` (1-based) of a cluster of `n`.
fn member(id: u8, n: usize, now: Instant) -> Gateway {
    let members: String = (0..n)
        .map(|i| {
            format!(
                "[[cluster.member]]\nid = {}\naddress = \"{}\"\n\n",
                i + 1,
                SYNC[i]
            )
        })
        .collect();
    let text = format!(
        r#"
[gateway]
name = "m{id}"
status_socket = "/tmp/unused-lsra{id}.sock"
retransmit_timeout = "500ms"
retransmit_tries = 3

[tunnel]
device = "rplsra{id}"

[local]
domain = ["10.1.0.0/24"]

[cluster]
name = "ls"
member_id = {id}
mode = "load-sharing"
distribution = "routed"
flush_ack = true
heartbeat_interval = "100ms"
dead_after = 3
secret = "a long shared cluster secret for the tests"

{members}
[[cluster.vip]]
address = "{VIP}"

[remote_access]
local_address = "{VIP}"
local_id = "@vpn.example"
auth = "psk"
psk = "{PSK}"
client_auth = "psk"
pool = "10.99.0.0/24"
routes = ["10.1.0.0/24"]

[[rule]]
name = "all"
action = "accept"
"#
    );
    let cfg = rampart_config::parse(&text, &format!("lsra{id}.toml")).expect("valid config");
    Gateway::with_boot_id(cfg, now, Rng::from_seed([id; 32]), 1).unwrap()
}

fn client(k: usize, now: Instant) -> Gateway {
    let text = format!(
        r#"
gateway = "{VIP}"
local_id = "email:c{k}@example.com"
remote_id = "@vpn.example"
auth = "psk"
psk = "{PSK}"
transports = ["udp"]
state_dir = "/tmp/unused-lsra-client"
"#
    );
    let profile = rampart_config::parse_profile(&text, "/tmp/lsra-client.toml").expect("profile");
    let config = profile.node_config(ip(PRIVATE[k]), ip(VIP), ClientTransport::Udp);
    Gateway::new(config, now, Rng::from_seed([100 + k as u8; 32])).unwrap()
}

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum To {
    Member(usize),
    Client(usize),
}

/// A datagram on its way: (receiver, its local address, the sender as the receiver sees it).
type Datagram = (To, SocketAddr, SocketAddr, Vec<u8>);

/// The NAT in front of the clients: one public port per private (address, port), new ports
/// after a flush.
#[derive(Default)]
struct Nat {
    out: HashMap<SocketAddr, u16>,
    back: HashMap<u16, SocketAddr>,
    next: u16,
}

impl Nat {
    fn outbound(&mut self, private: SocketAddr) -> u16 {
        if let Some(p) = self.out.get(&private) {
            return *p;
        }
        self.next += 1;
        let port = 20000 + self.next;
        self.out.insert(private, port);
        self.back.insert(port, private);
        port
    }

    /// Every mapping forgotten (a reboot, a conntrack flush).
    fn flush(&mut self) {
        self.out.clear();
        self.back.clear();
    }
}

struct Lab {
    now: Instant,
    members: Vec<Gateway>,
    up: Vec<bool>,
    clients: Vec<Gateway>,
    nat: Nat,
    /// Per client: the member its datagrams to the virtual address reach (the other one when
    /// that one is down): the routers' hash of its flow.
    route: Vec<usize>,
    member_tun: Vec<Vec<Vec<u8>>>,
    client_tun: Vec<Vec<Vec<u8>>>,
    member_logs: Vec<Vec<String>>,
    client_logs: Vec<Vec<String>>,
    /// Each client's Office Mode address, every time it was assigned.
    assigned: Vec<Vec<IpAddr>>,
    wire: Vec<Datagram>,
}

impl Lab {
    /// Two members carrying traffic; client `k` connected through member `route[k]`.
    fn new(route: &[usize]) -> Lab {
        Lab::with(2, route)
    }

    /// `n` members carrying traffic; client `k` connected through member `route[k]`.
    fn with(n: usize, route: &[usize]) -> Lab {
        let now = Instant::now();
        let clients = route.len();
        let mut lab = Lab {
            now,
            members: (1..=n).map(|id| member(id as u8, n, now)).collect(),
            up: vec![true; n],
            clients: Vec::new(),
            nat: Nat::default(),
            route: route.to_vec(),
            member_tun: vec![Vec::new(); n],
            client_tun: vec![Vec::new(); clients],
            member_logs: vec![Vec::new(); n],
            client_logs: vec![Vec::new(); clients],
            assigned: vec![Vec::new(); clients],
            wire: Vec::new(),
        };
        lab.run_for(Duration::from_secs(3));
        for m in 0..n {
            assert!(
                lab.stats(m).carrying,
                "member {m}: {:?}",
                lab.member_logs[m]
            );
        }
        for k in 0..clients {
            lab.clients.push(client(k, lab.now));
        }
        lab.run_for(Duration::from_secs(5));
        for k in 0..clients {
            assert_eq!(
                lab.assigned[k].len(),
                1,
                "client {k}: {:?}",
                lab.client_logs[k]
            );
        }
        lab
    }

    fn stats(&self, m: usize) -> LoadSharingStats {
        self.members[m].load_sharing_stats().expect("load sharing")
    }

    /// The member client `k`'s datagrams reach: its route, or the next live member.
    fn vip_member(&self, k: usize) -> usize {
        let n = self.members.len();
        (0..n)
            .map(|i| (self.route[k] + i) % n)
            .find(|&m| self.up[m])
            .expect("a live member")
    }

    fn member_output(&mut self, m: usize, out: Output) {
        match out {
            Output::SendUdp {
                local,
                remote,
                data,
            } => self.send_from_member(local, remote, data),
            Output::WriteTun { data } => self.member_tun[m].push(data),
            Output::Log(r) => self.member_logs[m].push(r.message),
            Output::FullSyncConnect { member, .. } => {
                let j = usize::from(member - 1);
                if self.up[j] {
                    let bytes = self.members[j].full_sync_export(self.now);
                    let done = self.members[m].full_sync_input(self.now, member, &bytes);
                    assert_eq!(done, Ok(rampart_node::FullSyncProgress::Done));
                } else {
                    self.members[m].full_sync_failed(self.now, member, "connection refused");
                }
            }
            _ => {}
        }
    }

    /// A datagram a member sends: to the other member's sync address, or through the NAT
    /// to a client (lost when the NAT has no such mapping).
    fn send_from_member(&mut self, local: SocketAddr, remote: SocketAddr, data: Vec<u8>) {
        if let Some(j) = SYNC.iter().position(|s| ip(s) == remote.ip()) {
            self.wire.push((To::Member(j), remote, local, data));
        } else if remote.ip() == ip(NAT_PUBLIC) {
            if let Some(private) = self.nat.back.get(&remote.port()).copied() {
                let k = PRIVATE.iter().position(|p| ip(p) == private.ip()).unwrap();
                self.wire.push((To::Client(k), private, local, data));
            }
        }
    }

    /// A datagram a client sends: through the NAT to the member the route picks.
    fn send_from_client(&mut self, local: SocketAddr, remote: SocketAddr, data: Vec<u8>) {
        if remote.ip() != ip(VIP) {
            return;
        }
        let Some(k) = PRIVATE.iter().position(|p| ip(p) == local.ip()) else {
            return;
        };
        let port = self.nat.outbound(local);
        let to = self.vip_member(k);
        let public = SocketAddr::new(ip(NAT_PUBLIC), port);
        self.wire.push((To::Member(to), remote, public, data));
    }

    fn client_output(&mut self, k: usize, out: Output) {
        match out {
            Output::SendUdp {
                local,
                remote,
                data,
            } => self.send_from_client(local, remote, data),
            Output::WriteTun { data } => self.client_tun[k].push(data),
            Output::Log(r) => self.client_logs[k].push(r.message),
            Output::VirtualAddress { reply, .. } => {
                if let Some(a) = reply.ip4_addresses.first() {
                    self.assigned[k].push(IpAddr::V4(*a));
                }
            }
            _ => {}
        }
    }

    fn collect(&mut self) {
        for m in 0..self.members.len() {
            while let Some(out) = self.members[m].poll_output() {
                if self.up[m] {
                    self.member_output(m, out);
                }
            }
        }
        for k in 0..self.clients.len() {
            while let Some(out) = self.clients[k].poll_output() {
                self.client_output(k, out);
            }
        }
    }

    fn dispose(&mut self, from: To, d: Disposition, buf: &[u8]) {
        match (from, d) {
            (To::Member(m), Disposition::WriteTun { data }) => {
                self.member_tun[m].push(buf[data].to_vec())
            }
            (To::Client(k), Disposition::WriteTun { data }) => {
                self.client_tun[k].push(buf[data].to_vec())
            }
            (
                To::Member(_),
                Disposition::SendUdp {
                    local,
                    remote,
                    data,
                },
            ) => self.send_from_member(local, remote, buf[data].to_vec()),
            (
                To::Client(_),
                Disposition::SendUdp {
                    local,
                    remote,
                    data,
                },
            ) => self.send_from_client(local, remote, buf[data].to_vec()),
            // NAT-T: nothing goes as raw ESP here.
            (_, Disposition::SendRawEsp { .. }) => panic!("raw ESP behind a NAT"),
            (_, Disposition::Consumed | Disposition::Dropped(_)) => {}
        }
    }

    fn deliver(&mut self) {
        for _ in 0..1000 {
            self.collect();
            if self.wire.is_empty() {
                return;
            }
            for (to, local, remote, data) in std::mem::take(&mut self.wire) {
                if let To::Member(m) = to {
                    if !self.up[m] {
                        continue;
                    }
                }
                let mut buf = vec![0u8; data.len() + 2 * HEADROOM];
                buf[HEADROOM..HEADROOM + data.len()].copy_from_slice(&data);
                let range = HEADROOM..HEADROOM + data.len();
                let node = match to {
                    To::Member(m) => &mut self.members[m],
                    To::Client(k) => &mut self.clients[k],
                };
                let d = node.handle_udp(self.now, local, remote, &mut buf, range);
                self.dispose(to, d, &buf);
            }
        }
        panic!("datagram storm");
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.deliver();
        loop {
            let n = self.members.len();
            let next = (0..n)
                .filter(|&m| self.up[m])
                .filter_map(|m| self.members[m].poll_timeout())
                .chain(self.clients.iter().filter_map(|c| c.poll_timeout()))
                .min()
                .filter(|t| *t <= until);
            let Some(t) = next else { break };
            self.now = self.now.max(t);
            for m in 0..n {
                if self.up[m]
                    && self.members[m]
                        .poll_timeout()
                        .is_some_and(|t| t <= self.now)
                {
                    self.members[m].handle_timeout(self.now);
                }
            }
            for c in &mut self.clients {
                if c.poll_timeout().is_some_and(|t| t <= self.now) {
                    c.handle_timeout(self.now);
                }
            }
            self.deliver();
        }
        self.now = until;
    }

    /// `packet` enters the TUN device of `to`; everything it causes is delivered.
    fn enter_tun(&mut self, to: To, packet: &[u8]) -> Disposition {
        let mut buf = vec![0u8; packet.len() + 2 * HEADROOM];
        buf[HEADROOM..HEADROOM + packet.len()].copy_from_slice(packet);
        let range = HEADROOM..HEADROOM + packet.len();
        let d = match to {
            To::Member(m) => self.members[m].handle_tun(self.now, &mut buf, range),
            To::Client(k) => self.clients[k].handle_tun(self.now, &mut buf, range),
        };
        self.dispose(to, d.clone(), &buf);
        self.deliver();
        d
    }

    fn vip_of(&self, k: usize) -> [u8; 4] {
        match self.assigned[k].last() {
            Some(IpAddr::V4(a)) => a.octets(),
            other => panic!("client {k} has no IPv4 address: {other:?}"),
        }
    }

    /// The client's IKE SA as the client sees it: (initiator SPI, responder SPI).
    fn client_ike_sa(&self, k: usize) -> (String, String) {
        let s = self.clients[k].status(self.now);
        let sa = s.peers[0]
            .ike_sa
            .as_ref()
            .unwrap_or_else(|| panic!("client {k} has an IKE SA: {s:#?}"));
        (sa.spi_i.clone(), sa.spi_r.clone())
    }

    /// The clients member `m` serves now: (address, where it is reached).
    fn served(&self, m: usize) -> Vec<(String, String)> {
        self.members[m]
            .ra_status(self.now)
            .expect("a remote-access gateway")
            .clients
            .into_iter()
            .map(|c| (c.address, c.remote))
            .collect()
    }

    /// One packet from client `k` to the inside: whether member `m` wrote it to its TUN.
    fn upstream(&mut self, k: usize, m: usize, tag: u8) -> bool {
        let p = udp(self.vip_of(k), 40000, INSIDE, 5000, &[tag; 120]);
        let before = self.member_tun[m].len();
        self.enter_tun(To::Client(k), &p);
        self.member_tun[m][before..].contains(&p)
    }

    /// One packet from the inside to client `k`, entering member `m`'s TUN: whether the
    /// client got it.
    fn downstream(&mut self, m: usize, k: usize, tag: u8) -> bool {
        let p = udp(INSIDE, 5000, self.vip_of(k), 40000, &[tag; 200]);
        let before = self.client_tun[k].len();
        self.enter_tun(To::Member(m), &p);
        self.client_tun[k][before..].contains(&p)
    }
}

/// A client connected through member 0: member 0 owns its SA, member 1 has it as a replica.
fn owned_by_first() -> Lab {
    let lab = Lab::new(&[0]);
    let a = lab.served(0);
    assert_eq!(a.len(), 1, "member 0 serves the client: {a:?}");
    assert!(lab.served(1).is_empty(), "member 1 only has the replica");
    assert_eq!(a[0].1, format!("{NAT_PUBLIC}:20002"), "NAT-T port mapping");
    lab
}

/// After a NAT rebinding that makes the routers pick member 1, the client's first packet is
/// an IKE liveness check (it sends nothing else while idle): member 1 forwards it to member
/// 0, which moves the SA to the new mapping (an authenticated request) and answers there.
#[test]
fn ike_from_a_new_mapping_at_the_other_member_reaches_the_owner_which_follows_it() {
    let mut lab = owned_by_first();
    let sa = lab.client_ike_sa(0);
    assert!(
        lab.upstream(0, 0, 1),
        "traffic before: {:?}",
        lab.member_logs[0]
    );
    lab.nat.flush();
    lab.route[0] = 1;
    let fwd_before = lab.stats(1).forwarded_out.udp;
    let in_before = lab.stats(0).forwarded_in.udp;
    // Idle: the client's liveness check (10 s) comes first (the gateway's is 30 s).
    lab.run_for(Duration::from_secs(12));
    assert!(
        lab.stats(1).forwarded_out.udp > fwd_before,
        "member 1 forwarded the IKE request: {:?}",
        lab.stats(1)
    );
    assert!(lab.stats(0).forwarded_in.udp > in_before);
    let a = lab.served(0);
    assert_eq!(a.len(), 1);
    assert_ne!(a[0].1, format!("{NAT_PUBLIC}:20002"), "the mapping moved");
    assert!(
        lab.member_logs[0]
            .iter()
            .any(|l| l.contains("NAT mapping moved")),
        "{:?}",
        lab.member_logs[0]
    );
    assert_eq!(lab.client_ike_sa(0), sa, "the same IKE SA");
    // The owner answers at the new mapping; the client's traffic goes on through member 1.
    assert!(lab.downstream(0, 0, 2), "{:?}", lab.member_logs[0]);
    assert!(lab.upstream(0, 0, 3), "{:?}", lab.member_logs[1]);
    // No liveness failure on either side after a minute.
    lab.run_for(Duration::from_secs(60));
    assert_eq!(lab.client_ike_sa(0), sa);
    assert_eq!(lab.served(0).len(), 1, "{:?}", lab.member_logs[0]);
    assert_eq!(lab.assigned[0].len(), 1, "no new assignment");
}

/// After the rebinding the client's next packet is ESP-in-UDP: it reaches member 1, is
/// forwarded unchanged to member 0, which decrypts it, follows the mapping (an authenticated
/// ESP packet) and seals the answer to the client's new port.
#[test]
fn esp_from_a_new_mapping_at_the_other_member_reaches_the_owner_which_answers_there() {
    let mut lab = owned_by_first();
    let sa = lab.client_ike_sa(0);
    lab.nat.flush();
    lab.route[0] = 1;
    let spi_drops = lab.members[1].status(lab.now).counters.dropped_unknown_spi;
    assert!(
        lab.upstream(0, 0, 1),
        "decrypted by the owner: {:?} {:?}",
        lab.member_logs[0],
        lab.member_logs[1]
    );
    let b = lab.stats(1);
    assert_eq!(b.forwarded_out.udp, 1, "{b:?}");
    assert_eq!(lab.stats(0).forwarded_in.udp, 1);
    assert_eq!(
        lab.members[1].status(lab.now).counters.dropped_unknown_spi,
        spi_drops,
        "a forwarded packet is not a drop"
    );
    let a = lab.served(0);
    assert_eq!(a[0].1, format!("{NAT_PUBLIC}:20003"), "the mapping moved");
    assert!(lab.downstream(0, 0, 2), "answered at the new mapping");
    assert_eq!(lab.client_ike_sa(0), sa);
}

/// Inside traffic to a client's virtual IP that the inside router hands to the member
/// without the client's tunnel is inspected there and forwarded to the owner, found by the
/// destination (the template peer has clients on both members).
#[test]
fn inside_traffic_to_a_client_at_the_other_member_is_sealed_by_the_owner() {
    let mut lab = Lab::new(&[0, 0]);
    let k0 = lab.vip_of(0);
    let d = lab.enter_tun(To::Member(1), &udp(INSIDE, 5000, k0, 40000, &[7; 200]));
    assert_eq!(d, Disposition::Consumed, "{:?}", lab.member_logs[1]);
    assert!(
        lab.client_tun[0]
            .iter()
            .any(|p| p == &udp(INSIDE, 5000, k0, 40000, &[7; 200])),
        "sealed by member 0: {:?}",
        lab.member_logs[0]
    );
    let b = lab.stats(1);
    assert_eq!((b.forwarded_out.inspected, b.forwarded_to_client), (1, 1));
    assert_eq!(lab.stats(0).forwarded_in.inspected, 1);
    // And the second client, too.
    assert!(lab.downstream(1, 1, 8), "{:?}", lab.member_logs[0]);
    assert_eq!(lab.stats(1).forwarded_to_client, 2);
}

/// The member that owns the client's SA dies in the middle of traffic (the client's flow had
/// moved to the other member by a NAT rebinding): the survivor adopts the SA and the client
/// goes on with the same IKE SA, at the same virtual IP, at its new mapping.
#[test]
fn owner_dies_the_survivor_adopts_the_client_with_its_ike_sa_and_address() {
    let mut lab = owned_by_first();
    let sa = lab.client_ike_sa(0);
    let vip = lab.vip_of(0);
    lab.nat.flush();
    lab.route[0] = 1;
    for tag in 0..5 {
        assert!(lab.upstream(0, 0, tag));
        assert!(lab.downstream(1, 0, tag), "{:?}", lab.member_logs[1]);
    }
    assert!(lab.stats(1).forwarded_to_client >= 5);
    lab.up[0] = false;
    lab.run_for(Duration::from_secs(2));
    assert_eq!(lab.stats(1).adoptions, 1, "{:?}", lab.member_logs[1]);
    let b = lab.served(1);
    assert_eq!(b.len(), 1, "{:?}", lab.member_logs[1]);
    assert_eq!(b[0].0, IpAddr::from(vip).to_string(), "the same address");
    assert_eq!(b[0].1, format!("{NAT_PUBLIC}:20003"), "at the new mapping");
    for tag in 10..15 {
        assert!(lab.upstream(0, 1, tag), "{:?}", lab.member_logs[1]);
        assert!(lab.downstream(1, 0, tag), "{:?}", lab.member_logs[1]);
    }
    lab.run_for(Duration::from_secs(60));
    assert_eq!(lab.client_ike_sa(0), sa, "the same IKE SA");
    assert_eq!(lab.assigned[0].len(), 1, "no new assignment");
    assert!(lab.upstream(0, 1, 20));
    assert!(lab.downstream(1, 0, 20));
}
