//! Office Mode leases in a two-member Load Sharing cluster, in virtual time: remote-access
//! clients that reach different members get distinct addresses, each from its member's share
//! of the pool; each member reserves the other's leases (`reserved_elsewhere`); when a member
//! dies the survivor adopts its clients' SAs with their addresses, and a member that restarts
//! learns every lease from its full sync before it hands out any. A client that reconnects
//! at the other member (new IKE SA, INITIAL_CONTACT, asking for its address) keeps its address;
//! the member it left deletes its old SA and reserves the address.
//!
//! The harness plays the routers: datagrams from a client to the virtual address reach the
//! member the test routes that client to (the other one while it is down); cluster datagrams
//! go between the sync addresses; full syncs are carried out at once.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::HEADROOM;
use rampart_cluster::{ClusterMode, LoadSharingConfig};
use rampart_crypto::Rng;
use rampart_node::{Disposition, Gateway, Output, RaPoolStatus, RaShareStatus};

const VIP: &str = "192.0.2.1";
const SYNC: [&str; 2] = ["10.255.0.1", "10.255.0.2"];
const POOL: &str = "10.99.0.0/24";

fn member_config(id: u8) -> rampart_config::GatewayConfig {
    let text = format!(
        r#"
[gateway]
name = "m{id}"
status_socket = "/tmp/unused-lsl{id}.sock"
retransmit_timeout = "500ms"
retransmit_tries = 3

[tunnel]
device = "rplsl{id}"

[local]
domain = ["10.1.0.0/24"]

[cluster]
name = "ls-leases"
member_id = {id}
mode = "high-availability"
heartbeat_interval = "100ms"
dead_after = 3
secret = "a long shared cluster secret for the tests"

[[cluster.member]]
id = 1
address = "{s1}"

[[cluster.member]]
id = 2
address = "{s2}"

[[cluster.vip]]
interface = "eth1"
address = "{VIP}/24"

[[peer]]
name = "remote-access"
local_address = "{VIP}"
remote_address = "any"
local_id = "@gw.example"
remote_id = "%any"
psk = "0123456789abcdef0123456789abcdef"
remote_domain = ["{POOL}"]
liveness_interval = "2s"
"#,
        s1 = SYNC[0],
        s2 = SYNC[1],
    );
    let mut c = rampart_config::parse(&text, &format!("lsl{id}.toml")).expect("valid config");
    let cluster = c.cluster.as_mut().expect("cluster");
    cluster.mode = ClusterMode::LoadSharing;
    cluster.load_sharing = Some(LoadSharingConfig::default());
    c.peers[0].remote_access =
        rampart_ike::RemoteAccess::Gateway(Arc::new(rampart_ike::RaGateway {
            pool: rampart_lease::PoolConfig {
                prefix: POOL.parse().unwrap(),
                exclude: vec![],
                lease_time: Duration::from_secs(600),
            },
            dns: vec![],
            dns_domains: vec![],
            routes: vec!["10.1.0.0/24".parse().unwrap()],
            client_auth: rampart_ike::ClientAuth::Peer,
            entry_points: None,
        }));
    c
}

/// A remote-access client at `addr` (full tunnel) authenticating as `id`, connecting at once.
fn client_config_as(name: &str, addr: &str, id: &str) -> rampart_config::GatewayConfig {
    let text = format!(
        r#"
[gateway]
name = "{name}"
status_socket = "/tmp/unused-lsl-{name}.sock"
retransmit_timeout = "500ms"
retransmit_tries = 3

[tunnel]
device = "rp{name}"

[local]
domain = ["10.98.0.0/24"]

[[peer]]
name = "office"
local_address = "{addr}"
remote_address = "{VIP}"
local_id = "{id}"
remote_id = "@gw.example"
psk = "0123456789abcdef0123456789abcdef"
remote_domain = ["10.1.0.0/24"]
liveness_interval = "2s"
"#
    );
    let mut config = rampart_config::parse(&text, &format!("{name}.toml")).unwrap();
    let any: ipnet::IpNet = "0.0.0.0/0".parse().unwrap();
    config.local.domain = vec![any];
    config.peers[0].remote_domain = vec![any];
    config.peers[0].remote_access =
        rampart_ike::RemoteAccess::Client(Arc::new(rampart_ike::RaClient {
            eap: None,
            small_first_proposal: false,
        }));
    config
}

/// (to node, local address at the receiver, remote address, bytes, raw ESP).
type Datagram = (usize, SocketAddr, SocketAddr, Vec<u8>, bool);

/// Members 0 and 1 (cluster ids 1 and 2), then clients.
struct Net {
    now: Instant,
    nodes: Vec<Gateway>,
    /// Each node's own address (a member's sync address).
    addrs: Vec<IpAddr>,
    up: Vec<bool>,
    /// Which member a client's datagrams to the virtual address reach.
    route: HashMap<IpAddr, usize>,
    wire: Vec<Datagram>,
    full_syncs: Vec<(usize, u8)>,
    logs: Vec<Vec<String>>,
}

impl Net {
    fn new() -> Net {
        let now = Instant::now();
        let member = |id: u8| {
            Gateway::with_boot_id(member_config(id), now, Rng::from_seed([id; 32]), 1).unwrap()
        };
        let mut net = Net {
            now,
            nodes: vec![member(1), member(2)],
            addrs: SYNC.iter().map(|a| a.parse().unwrap()).collect(),
            up: vec![true, true],
            route: HashMap::new(),
            wire: Vec::new(),
            full_syncs: Vec::new(),
            logs: vec![Vec::new(), Vec::new()],
        };
        net.run_for(Duration::from_secs(10));
        for m in 0..2 {
            assert!(net.carrying(m), "member {m} carries: {:?}", net.logs[m]);
        }
        net
    }

    fn carrying(&self, m: usize) -> bool {
        self.nodes[m]
            .load_sharing_stats()
            .is_some_and(|s| s.carrying)
    }

    /// A client at `addr` whose datagrams to the virtual address reach member `via`.
    fn add_client(&mut self, name: &str, addr: &str, via: usize) -> usize {
        self.add_client_as(name, addr, via, "@clients.example")
    }

    /// [`Net::add_client`] authenticating as `id`.
    fn add_client_as(&mut self, name: &str, addr: &str, via: usize, id: &str) -> usize {
        let seed = 40 + self.nodes.len() as u8;
        let gw = Gateway::new(
            client_config_as(name, addr, id),
            self.now,
            Rng::from_seed([seed; 32]),
        )
        .unwrap();
        let ip: IpAddr = addr.parse().unwrap();
        self.nodes.push(gw);
        self.addrs.push(ip);
        self.up.push(true);
        self.logs.push(Vec::new());
        self.route.insert(ip, via);
        self.nodes.len() - 1
    }

    fn node_of(&self, to: IpAddr, from: IpAddr) -> Option<usize> {
        if to == VIP.parse::<IpAddr>().unwrap() {
            let m = *self.route.get(&from)?;
            return [m, 1 - m].into_iter().find(|&m| self.up[m]);
        }
        self.addrs.iter().position(|a| *a == to)
    }

    fn collect(&mut self) {
        for i in 0..self.nodes.len() {
            while let Some(out) = self.nodes[i].poll_output() {
                if !self.up[i] {
                    continue;
                }
                match out {
                    Output::SendUdp {
                        local,
                        remote,
                        data,
                    } => {
                        if let Some(to) = self.node_of(remote.ip(), local.ip()) {
                            self.wire.push((to, remote, local, data, false));
                        }
                    }
                    Output::SendRawEsp {
                        local,
                        remote,
                        data,
                    } => {
                        if let Some(to) = self.node_of(remote, local) {
                            let (l, r) = (SocketAddr::new(remote, 0), SocketAddr::new(local, 0));
                            self.wire.push((to, l, r, data, true));
                        }
                    }
                    Output::Log(r) => self.logs[i].push(r.message),
                    Output::FullSyncConnect { member, .. } => self.full_syncs.push((i, member)),
                    _ => {}
                }
            }
        }
    }

    fn deliver(&mut self) {
        for _ in 0..1000 {
            self.collect();
            for (i, member) in std::mem::take(&mut self.full_syncs) {
                let j = usize::from(member - 1);
                if self.up[j] {
                    let bytes = self.nodes[j].full_sync_export(self.now);
                    let done = self.nodes[i].full_sync_input(self.now, member, &bytes);
                    assert_eq!(done, Ok(rampart_node::FullSyncProgress::Done));
                } else {
                    self.nodes[i].full_sync_failed(self.now, member, "connection refused");
                }
                self.collect();
            }
            if self.wire.is_empty() {
                return;
            }
            for (to, local, remote, data, raw) in std::mem::take(&mut self.wire) {
                if !self.up[to] {
                    continue;
                }
                let mut buf = vec![0u8; data.len() + 2 * HEADROOM];
                buf[HEADROOM..HEADROOM + data.len()].copy_from_slice(&data);
                let range = HEADROOM..HEADROOM + data.len();
                let d = if raw {
                    self.nodes[to].handle_raw_esp(
                        self.now,
                        local.ip(),
                        remote.ip(),
                        &mut buf,
                        range,
                    )
                } else {
                    self.nodes[to].handle_udp(self.now, local, remote, &mut buf, range)
                };
                self.dispose(d, &buf);
            }
        }
        panic!("datagram storm");
    }

    fn dispose(&mut self, d: Disposition, buf: &[u8]) {
        let (local, remote, data, raw) = match d {
            Disposition::SendUdp {
                local,
                remote,
                data,
            } => (local, remote, data, false),
            Disposition::SendRawEsp {
                local,
                remote,
                data,
            } => (
                SocketAddr::new(local, 0),
                SocketAddr::new(remote, 0),
                data,
                true,
            ),
            _ => return,
        };
        if let Some(to) = self.node_of(remote.ip(), local.ip()) {
            self.wire.push((to, remote, local, buf[data].to_vec(), raw));
        }
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.deliver();
        loop {
            let next = (0..self.nodes.len())
                .filter(|&i| self.up[i])
                .filter_map(|i| self.nodes[i].poll_timeout())
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    for i in 0..self.nodes.len() {
                        if self.up[i] && self.nodes[i].poll_timeout().is_some_and(|t| t <= self.now)
                        {
                            self.nodes[i].handle_timeout(self.now);
                        }
                    }
                    self.deliver();
                }
                _ => break,
            }
        }
        self.now = until;
    }

    /// Member `m`'s pool.
    fn pool(&self, m: usize) -> RaPoolStatus {
        let ra = self.nodes[m].ra_status(self.now).expect("remote access");
        ra.pools[0].clone()
    }

    /// The address member `m` leases to a client, with its IKE SA id.
    fn leases(&self, m: usize) -> Vec<(IpAddr, u64)> {
        let ra = self.nodes[m].ra_status(self.now).expect("remote access");
        ra.clients
            .iter()
            .map(|c| (c.address.parse().unwrap(), c.ike_sa))
            .collect()
    }

    /// The virtual address client `c` holds.
    fn virtual_ip(&self, c: usize) -> Option<IpAddr> {
        let ra = self.nodes[c].ra_status(self.now)?;
        ra.virtual_addresses
            .first()
            .and_then(|v| v.address.as_ref())
            .map(|a| a.parse().unwrap())
    }

    /// Client `c`'s IKE SA id, when established.
    fn client_sa(&self, c: usize) -> Option<u64> {
        let st = self.nodes[c].status(self.now);
        let p = &st.peers[0];
        (p.state == "established")
            .then(|| p.ike_sa.as_ref().map(|s| s.id))
            .flatten()
    }
}

fn in_blocks(a: IpAddr, share: &RaShareStatus) -> bool {
    share
        .blocks
        .iter()
        .any(|b| b.parse::<ipnet::IpNet>().unwrap().contains(&a))
}

#[test]
fn members_lease_from_their_shares_reserve_each_others_and_adoption_keeps_the_address() {
    let mut t = Net::new();
    let share = |t: &Net, m: usize| t.pool(m).share.expect("a share in load sharing");
    assert_eq!(
        share(&t, 0),
        RaShareStatus {
            index: 0,
            of: 2,
            blocks: vec!["10.99.0.0/25".into()]
        }
    );
    assert_eq!(share(&t, 1).blocks, vec!["10.99.0.128/25".to_string()]);
    assert_eq!((t.pool(0).size, t.pool(1).size), (127, 127));

    let a = t.add_client("alice", "192.0.2.11", 0);
    let b = t.add_client("bob", "192.0.2.12", 1);
    t.run_for(Duration::from_secs(5));
    let va = t.virtual_ip(a).expect("alice has an address");
    let vb = t.virtual_ip(b).expect("bob has an address");
    assert_ne!(va, vb);
    assert!(in_blocks(va, &share(&t, 0)), "{va} in member 0's share");
    assert!(in_blocks(vb, &share(&t, 1)), "{vb} in member 1's share");
    let sa_b = t.client_sa(b).expect("bob's SA up");
    let lease_a = t.leases(0);
    let lease_b = t.leases(1);
    assert_eq!(lease_a.iter().map(|l| l.0).collect::<Vec<_>>(), vec![va]);
    assert_eq!(lease_b.iter().map(|l| l.0).collect::<Vec<_>>(), vec![vb]);
    // Each member reserves the other's lease.
    for m in 0..2 {
        let p = t.pool(m);
        assert_eq!(
            (p.in_use, p.reserved_elsewhere, p.outside_share, p.free),
            (1, 1, 1, 126),
            "member {m}: {p:?}"
        );
    }

    // Member 1 dies: member 0 adopts bob's SA, same address, same IKE SA.
    t.up[1] = false;
    t.run_for(Duration::from_secs(3));
    assert_eq!(
        t.leases(0),
        vec![lease_a[0], lease_b[0]],
        "the same IKE SA ids: {:?}",
        t.logs[0]
    );
    let p = t.pool(0);
    assert_eq!(
        (p.in_use, p.reserved_elsewhere, p.outside_share, p.free),
        (2, 0, 1, 126),
        "{p:?}"
    );
    // Bob's client keeps talking to the survivor on the same IKE SA with the same address.
    t.run_for(Duration::from_secs(10));
    assert_eq!(t.client_sa(b), Some(sa_b), "{:?}", t.logs[b]);
    assert_eq!(t.virtual_ip(b), Some(vb));

    // Member 1 restarts: its full sync tells it both leases before it hands out any; a new
    // client reaching it gets a fresh address of its share, not bob's.
    t.nodes[1] =
        Gateway::with_boot_id(member_config(2), t.now, Rng::from_seed([22; 32]), 2).unwrap();
    t.up[1] = true;
    t.run_for(Duration::from_secs(5));
    assert!(t.carrying(1), "{:?}", t.logs[1]);
    let p = t.pool(1);
    assert_eq!(
        (p.in_use, p.reserved_elsewhere, p.outside_share, p.free),
        (0, 2, 1, 126),
        "{p:?}"
    );
    let c = t.add_client("carol", "192.0.2.13", 1);
    t.run_for(Duration::from_secs(5));
    let vc = t.virtual_ip(c).expect("carol has an address");
    assert!(in_blocks(vc, &share(&t, 1)), "{vc}");
    assert!(vc != va && vc != vb);
    assert_eq!(
        t.pool(0).reserved_elsewhere,
        1,
        "{:?}\n{:?}\n{:?}",
        t.pool(0),
        t.logs[0],
        t.logs[1]
    );
}

/// A member that leaves alive (`rampart cluster down`) hands its clients' SAs to the other,
/// which leases their addresses now; the member that left keeps them reserved, and back up
/// it hands out only free addresses of its share.
#[test]
fn a_member_that_leaves_alive_hands_its_leases_over_and_keeps_them_reserved() {
    let mut t = Net::new();
    let a = t.add_client("alice", "192.0.2.11", 0);
    let b = t.add_client("bob", "192.0.2.12", 1);
    t.run_for(Duration::from_secs(5));
    let vb = t.virtual_ip(b).expect("bob has an address");
    let sa_b = t.client_sa(b).expect("bob's SA up");
    let lease_a = t.leases(0);
    let lease_b = t.leases(1);
    assert_eq!(lease_b.len(), 1);

    let now = t.now;
    assert!(t.nodes[1]
        .cluster_command(now, rampart_node::ClusterCommand::Down)
        .is_ok());
    t.run_for(Duration::from_secs(3));
    assert_eq!(
        t.leases(0),
        vec![lease_a[0], lease_b[0]],
        "member 0 leases bob's address under the same IKE SA: {:?}",
        t.logs[0]
    );
    assert!(t.leases(1).is_empty());
    let p = t.pool(1);
    assert_eq!(
        (p.in_use, p.reserved_elsewhere, p.outside_share, p.free),
        (0, 2, 1, 126),
        "member 1 reserves both: {p:?}"
    );
    t.run_for(Duration::from_secs(5));
    assert_eq!(t.client_sa(b), Some(sa_b), "{:?}", t.logs[b]);
    assert_eq!(t.virtual_ip(b), Some(vb));
    assert!(t.client_sa(a).is_some());

    // Back up: a new client reaching member 1 gets a free address of its share, not bob's.
    let now = t.now;
    assert!(t.nodes[1]
        .cluster_command(now, rampart_node::ClusterCommand::Up)
        .is_ok());
    t.run_for(Duration::from_secs(3));
    let c = t.add_client("carol", "192.0.2.13", 1);
    t.run_for(Duration::from_secs(5));
    let vc = t.virtual_ip(c).expect("carol has an address");
    assert_ne!(vc, vb);
    assert!(
        in_blocks(vc, t.pool(1).share.as_ref().unwrap()),
        "{vc} in member 1's share"
    );
    assert_eq!(t.pool(0).reserved_elsewhere, 1);
}

/// INITIAL_CONTACT across members: alice's client loses its state and reconnects with a new
/// IKE SA through member 1 (another entry point), asking for the address member 0 leased it.
/// Member 1 grants it (same identity as member 0's lease), member 0 deletes its old SA and
/// reserves the address; no member ever leases it twice, and another identity asking for it
/// gets a fresh address.
#[test]
fn a_client_that_reconnects_at_the_other_member_keeps_its_address() {
    let mut t = Net::new();
    let a = t.add_client("alice", "192.0.2.11", 0);
    t.run_for(Duration::from_secs(5));
    let x = t.virtual_ip(a).expect("alice has an address");
    let old = t.leases(0);
    assert_eq!(old.iter().map(|l| l.0).collect::<Vec<_>>(), vec![x]);
    assert_eq!(t.pool(1).reserved_elsewhere, 1);
    // How many members lease x now, each at most once.
    let holders = |t: &Net| -> usize {
        (0..2)
            .map(|m| {
                let n = t.leases(m).iter().filter(|l| l.0 == x).count();
                assert!(n <= 1, "member {m} leases {x} {n} times");
                n
            })
            .sum()
    };
    assert_eq!(holders(&t), 1);
    let tunnels = |t: &Net, m: usize| t.nodes[m].status(t.now).peers[0].tunnels.len();
    assert_eq!(tunnels(&t, 0), 1);

    // The laptop crashes (its engine goes silent) and comes back through member 1.
    t.up[a] = false;
    let a2 = t.add_client("alice-again", "192.0.2.21", 1);
    let std::net::IpAddr::V4(x4) = x else {
        panic!("IPv4 pool")
    };
    t.nodes[a2].prefer_virtual_address(x4);
    for _ in 0..50 {
        t.run_for(Duration::from_millis(100));
        assert!(holders(&t) <= 1, "{:?}\n{:?}", t.leases(0), t.leases(1));
    }
    assert_eq!(
        t.virtual_ip(a2),
        Some(x),
        "{:?}\n{:?}",
        t.logs[1],
        t.logs[a2]
    );
    assert!(t.client_sa(a2).is_some());
    assert_eq!(holders(&t), 1);
    let new = t.leases(1);
    assert_eq!(new.iter().map(|l| l.0).collect::<Vec<_>>(), vec![x]);
    assert_ne!(new[0].1, old[0].1);
    // Member 0 deleted its SA, said so, counted it, and reserves x for member 1.
    assert!(t.leases(0).is_empty(), "{:?}", t.leases(0));
    assert_eq!(
        tunnels(&t, 0),
        0,
        "the old SA's CHILD SA is gone from member 0's data plane"
    );
    assert_eq!(tunnels(&t, 1), 1);
    let line = format!(
        "remote access: clients.example moved to member 2 with {x}; IKE SA {:#x} deleted here",
        old[0].1
    );
    assert!(t.logs[0].contains(&line), "{line} in {:?}", t.logs[0]);
    let ra0 = t.nodes[0].ra_status(t.now).unwrap();
    assert_eq!(ra0.moved_to_other_member, 1);
    let json = serde_json::to_value(&ra0).unwrap();
    assert_eq!(json["moved_to_other_member"], 1);
    let p = t.pool(0);
    assert_eq!(
        (p.in_use, p.reserved_elsewhere, p.outside_share, p.free),
        (0, 1, 0, 126),
        "{p:?}"
    );
    // Member 1 leases it (outside its share) and reserves nothing: the old SA's replica went.
    let p = t.pool(1);
    assert_eq!(
        (p.in_use, p.reserved_elsewhere, p.outside_share, p.free),
        (1, 0, 1, 127),
        "{p:?}"
    );
    assert_eq!(
        t.nodes[1].ra_status(t.now).unwrap().moved_to_other_member,
        0
    );

    // Another identity asking for x through member 0 (which reserves it) gets a fresh one.
    let m = t.add_client_as("mallory", "192.0.2.31", 0, "@other.example");
    t.nodes[m].prefer_virtual_address(x4);
    t.run_for(Duration::from_secs(5));
    let vm = t.virtual_ip(m).expect("mallory has an address");
    assert_ne!(vm, x);
    assert!(in_blocks(vm, t.pool(0).share.as_ref().unwrap()), "{vm}");
    assert_eq!(holders(&t), 1);
    assert_eq!(t.leases(1).iter().map(|l| l.0).collect::<Vec<_>>(), vec![x]);
    assert_eq!(t.virtual_ip(a2), Some(x));
    assert_eq!(
        t.nodes[0].ra_status(t.now).unwrap().moved_to_other_member,
        1
    );
}
