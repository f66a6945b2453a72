//! The Load Sharing harness shared by the Load Sharing tests: a three-member cluster
//! (routed distribution) and a remote site gateway in virtual time (no sockets). The harness
//! plays the routers: datagrams to the virtual address 192.0.2.1 (the address the remote talks
//! to) go to the member the test picks (`vip_route`, ECMP-like, the next live member when that
//! one is down); packets from the protected site enter the TUN device of the member the test
//! names. Cluster datagrams go between the members' sync addresses, full syncs are carried out
//! by the harness, a crashed member gets nothing and sends nothing.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::common::{config, HEADROOM};
use rampart_cluster::{ClusterMode, LoadSharingConfig};
use rampart_config::StartAction;
use rampart_crypto::Rng;
use rampart_node::{Disposition, Gateway, LoadSharingStats, Output};

pub const VIP: &str = "192.0.2.1";
pub const REMOTE: &str = "192.0.2.2";
pub const SYNC: [&str; 3] = ["10.255.0.1", "10.255.0.2", "10.255.0.3"];
/// The second sync network (link 1).
pub const SYNC2: [&str; 3] = ["10.255.1.1", "10.255.1.2", "10.255.1.3"];
pub const HOST_A: [u8; 4] = [10, 1, 0, 5];
pub const HOST_B: [u8; 4] = [10, 2, 0, 7];
pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
/// The remote gateway's index.
pub const R: usize = 3;

pub fn member_config(id: u8, ls: LoadSharingConfig) -> rampart_config::GatewayConfig {
    let text = format!(
        r#"
[gateway]
name = "m{id}"
status_socket = "/tmp/unused-ls{id}.sock"
retransmit_timeout = "500ms"
retransmit_tries = 3

[tunnel]
device = "rpls{id}"

[local]
domain = ["10.1.0.0/24"]

[cluster]
name = "ls"
member_id = {id}
mode = "high-availability"
heartbeat_interval = "100ms"
dead_after = 3
secret = "a long shared cluster secret for the tests"
monitor = ["eth1"]

[[cluster.member]]
id = 1
address = "{s1}"

[[cluster.member]]
id = 2
address = "{s2}"

[[cluster.member]]
id = 3
address = "{s3}"

[[cluster.vip]]
interface = "eth1"
address = "{VIP}/24"

[[peer]]
name = "remote"
local_address = "{VIP}"
remote_address = "{REMOTE}"
psk = "0123456789abcdef0123456789abcdef"
remote_domain = ["10.2.0.0/24"]
liveness_interval = "2s"
start_action = "none"

[[service]]
name = "nosync"
protocol = "tcp"
ports = [6022]
sync = false

[[service]]
name = "late"
protocol = "tcp"
ports = [6080]
sync_after = "1s"

[[service]]
name = "udp"
protocol = "udp"

[[service]]
name = "tcp"
protocol = "tcp"

[[rule]]
name = "all"
service = ["nosync", "late", "udp", "tcp"]
action = "accept"
"#,
        s1 = SYNC[0],
        s2 = SYNC[1],
        s3 = SYNC[2],
    );
    let mut cfg = rampart_config::parse(&text, &format!("ls{id}.toml")).expect("valid config");
    let cluster = cfg.cluster.as_mut().expect("cluster");
    cluster.mode = ClusterMode::LoadSharing;
    for (m, addr) in cluster.members.iter_mut().zip(SYNC2) {
        m.extra_sync_addresses = vec![SocketAddr::new(addr.parse().unwrap(), 8116)];
    }
    cluster.load_sharing = Some(ls);
    cfg
}

pub type Datagram = (usize, SocketAddr, SocketAddr, Vec<u8>, bool);

/// Members 0, 1, 2 (cluster ids 1, 2, 3) and the remote gateway 3.
pub struct Cluster {
    pub now: Instant,
    pub gw: Vec<Gateway>,
    pub up: [bool; 4],
    /// The member datagrams to the virtual address reach (the next live one if it is down).
    pub vip_route: usize,
    pub tun_out: [Vec<Vec<u8>>; 4],
    pub wire: Vec<Datagram>,
    pub full_syncs: Vec<(usize, u8)>,
    pub logs: [Vec<String>; 4],
    /// ESP packets each node put on the wire.
    pub esp_sent: [usize; 4],
    /// One-way delay of the sync network (everything else arrives at once).
    pub sync_delay: Duration,
    /// Sync datagrams on their way, with their arrival time.
    pub in_flight: Vec<(Instant, Datagram)>,
    /// The first sync network is cut: its datagrams are lost.
    pub link0_cut: bool,
}

impl Cluster {
    pub fn new(flush_ack: bool) -> Cluster {
        Cluster::with(LoadSharingConfig {
            flush_ack,
            ..LoadSharingConfig::default()
        })
    }

    pub fn with(ls: LoadSharingConfig) -> Cluster {
        Cluster::with_remote(ls, "")
    }

    /// `remote_extra`: more settings of the remote's peer section.
    pub fn with_remote(ls: LoadSharingConfig, remote_extra: &str) -> Cluster {
        Cluster::build(ls, remote_extra, StartAction::None)
    }

    /// `members_start`: the members' start action for the remote.
    pub fn build(ls: LoadSharingConfig, remote_extra: &str, members_start: StartAction) -> Cluster {
        let now = Instant::now();
        let remote = config("r", REMOTE, VIP, "10.2.0.0/24", "10.1.0.0/24", remote_extra);
        let member = |i: u8| {
            let mut cfg = member_config(i, ls);
            cfg.peers[0].start_action = members_start;
            Gateway::with_boot_id(cfg, now, Rng::from_seed([i; 32]), 1).unwrap()
        };
        Cluster {
            now,
            gw: vec![
                member(1),
                member(2),
                member(3),
                Gateway::new(remote, now, Rng::from_seed([9; 32])).unwrap(),
            ],
            up: [true; 4],
            vip_route: 1,
            tun_out: Default::default(),
            wire: Vec::new(),
            full_syncs: Vec::new(),
            logs: Default::default(),
            esp_sent: [0; 4],
            sync_delay: Duration::ZERO,
            in_flight: Vec::new(),
            link0_cut: false,
        }
    }

    /// Every member carrying traffic, the tunnel up with its SA owned by member 1 (index 1):
    /// the remote's IKE reached it.
    pub fn established(flush_ack: bool) -> Cluster {
        Cluster::running(Cluster::new(flush_ack))
    }

    pub fn running(mut t: Cluster) -> Cluster {
        t.run_for(Duration::from_secs(10));
        for m in 0..3 {
            let s = t.stats(m);
            assert!(s.carrying, "member {m} carries: {:?}", t.logs[m]);
        }
        assert!(t.remote_established(), "{:#?}", t.gw[R].status(t.now));
        let owner = t.vip_route;
        assert_eq!(t.gw[owner].status(t.now).peers[0].state, "established");
        t
    }

    pub fn stats(&self, m: usize) -> LoadSharingStats {
        self.gw[m]
            .load_sharing_stats()
            .expect("load sharing member")
    }

    pub fn node_of(&self, ip: IpAddr) -> Option<usize> {
        let ip = ip.to_string();
        if ip == VIP {
            (0..3)
                .map(|k| (self.vip_route + k) % 3)
                .find(|&m| self.up[m])
        } else if ip == REMOTE {
            Some(R)
        } else if self.link0_cut && SYNC.contains(&ip.as_str()) {
            None
        } else {
            SYNC.iter()
                .position(|s| *s == ip)
                .or_else(|| SYNC2.iter().position(|s| *s == ip))
        }
    }

    pub fn collect_outputs(&mut self) {
        for i in 0..4 {
            if !self.up[i] {
                continue;
            }
            while let Some(out) = self.gw[i].poll_output() {
                match out {
                    Output::SendUdp {
                        local,
                        remote,
                        data,
                    } => {
                        if remote.port() == 4500 && data.get(..4) != Some(&[0; 4][..]) {
                            self.esp_sent[i] += 1;
                        }
                        if let Some(to) = self.node_of(remote.ip()) {
                            self.wire.push((to, remote, local, data, false));
                        }
                    }
                    Output::SendRawEsp {
                        local,
                        remote,
                        data,
                    } => {
                        self.esp_sent[i] += 1;
                        if let Some(to) = self.node_of(remote) {
                            let (l, r) = (SocketAddr::new(remote, 0), SocketAddr::new(local, 0));
                            self.wire.push((to, l, r, data, true));
                        }
                    }
                    Output::WriteTun { data } => self.tun_out[i].push(data),
                    Output::Log(r) => self.logs[i].push(r.message),
                    Output::FullSyncConnect { member, .. } => self.full_syncs.push((i, member)),
                    _ => {}
                }
            }
        }
    }

    pub fn deliver(&mut self) {
        let mut rounds = 0;
        loop {
            self.collect_outputs();
            for (i, member) in std::mem::take(&mut self.full_syncs) {
                let j = usize::from(member - 1);
                if self.up[j] {
                    let bytes = self.gw[j].full_sync_export(self.now);
                    let done = self.gw[i].full_sync_input(self.now, member, &bytes);
                    assert_eq!(done, Ok(rampart_node::FullSyncProgress::Done));
                } else {
                    self.gw[i].full_sync_failed(self.now, member, "connection refused");
                }
                self.collect_outputs();
            }
            let now = self.now;
            let delay = self.sync_delay;
            for d in std::mem::take(&mut self.wire) {
                if d.1.port() == 8116 && !delay.is_zero() {
                    self.in_flight.push((now + delay, d));
                } else {
                    self.in_flight.push((now, d));
                }
            }
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.in_flight)
                .into_iter()
                .partition(|(at, _)| *at <= now);
            self.in_flight = later;
            if due.is_empty() {
                return;
            }
            rounds += 1;
            assert!(rounds < 1000, "datagram storm");
            for (_, d) in due {
                self.deliver_one(d);
            }
        }
    }

    pub fn deliver_one(&mut self, (to, local, remote, data, raw): Datagram) -> Option<Disposition> {
        if !self.up[to] {
            return None;
        }
        let mut buf = vec![0u8; data.len() + 2 * HEADROOM];
        buf[HEADROOM..HEADROOM + data.len()].copy_from_slice(&data);
        let range = HEADROOM..HEADROOM + data.len();
        let d = if raw {
            self.gw[to].handle_raw_esp(self.now, local.ip(), remote.ip(), &mut buf, range)
        } else {
            self.gw[to].handle_udp(self.now, local, remote, &mut buf, range)
        };
        self.dispose(to, d.clone(), &buf);
        Some(d)
    }

    pub fn dispose(&mut self, side: usize, d: Disposition, buf: &[u8]) {
        let (local, remote, data, raw) = match d {
            Disposition::WriteTun { data } => {
                self.tun_out[side].push(buf[data].to_vec());
                return;
            }
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
            Disposition::Consumed | Disposition::Dropped(_) => return,
        };
        self.esp_sent[side] += 1;
        if let Some(to) = self.node_of(remote.ip()) {
            self.wire.push((to, remote, local, buf[data].to_vec(), raw));
        }
    }

    pub fn run_until(&mut self, until: Instant) {
        self.deliver();
        loop {
            let next = (0..4)
                .filter(|&i| self.up[i])
                .filter_map(|i| self.gw[i].poll_timeout())
                .chain(self.in_flight.iter().map(|(at, _)| *at))
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    for i in 0..4 {
                        if self.up[i] && self.gw[i].poll_timeout().is_some_and(|t| t <= self.now) {
                            self.gw[i].handle_timeout(self.now);
                        }
                    }
                    self.deliver();
                }
                _ => break,
            }
        }
        self.now = until;
    }

    pub fn run_for(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_until(t);
    }

    /// `packet` enters node `side`'s TUN device; everything it causes is delivered (in the
    /// same instant). Returns what the node answered for it.
    pub fn enter_tun(&mut self, side: usize, packet: &[u8]) -> Disposition {
        let mut buf = vec![0u8; packet.len() + 2 * HEADROOM];
        buf[HEADROOM..HEADROOM + packet.len()].copy_from_slice(packet);
        let d = self.gw[side].handle_tun(self.now, &mut buf, HEADROOM..HEADROOM + packet.len());
        self.dispose(side, d.clone(), &buf);
        self.deliver();
        d
    }

    /// Whether node `at` wrote `packet` to its TUN device since `before` packets.
    pub fn arrived(&self, at: usize, before: usize, packet: &[u8]) -> bool {
        self.tun_out[at][before..].iter().any(|p| p == packet)
    }

    pub fn remote_established(&self) -> bool {
        let s = self.gw[R].status(self.now);
        s.peers[0].state == "established" && !s.peers[0].tunnels.is_empty()
    }

    pub fn out_of_state(&self, m: usize) -> u64 {
        self.gw[m].conn_stats().dropped_out_of_state
    }

    pub fn has_conn(&self, m: usize, port: u16) -> bool {
        self.gw[m]
            .conn_list(self.now, 1000)
            .connections
            .iter()
            .any(|c| c.original.contains(&format!(":{port}")))
    }

    pub fn crash(&mut self, i: usize) {
        self.up[i] = false;
    }

    /// Member `i` starts again (a new boot id): it pulls a full sync.
    pub fn restart(&mut self, i: usize, boot_id: u64, ls: LoadSharingConfig) {
        let id = i as u8 + 1;
        self.gw[i] = Gateway::with_boot_id(
            member_config(id, ls),
            self.now,
            Rng::from_seed([20 + id; 32]),
            boot_id,
        )
        .unwrap();
        self.up[i] = true;
    }
}
