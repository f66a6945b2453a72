//! A two-member cluster and a remote site gateway in virtual time (no sockets): the members
//! share the virtual address 192.0.2.1 the remote talks to; whoever claimed it last receives
//! its datagrams. Cluster datagrams go between the members' sync addresses, full syncs are
//! carried out by the harness (`full_sync_export` into `full_sync_input`), a crashed member
//! gets nothing and sends nothing (quinn's tests/util.rs style).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::{config, tcp, udp, HEADROOM};
use rampart_crypto::Rng;
use rampart_node::{ClusterCommand, Disposition, Gateway, Output};

const VIP: &str = "192.0.2.1";
const REMOTE: &str = "192.0.2.2";
const SYNC: [&str; 2] = ["10.255.0.1", "10.255.0.2"];
const HOST_A: [u8; 4] = [10, 1, 0, 5];
const HOST_B: [u8; 4] = [10, 2, 0, 7];
const IKE_SA_INIT: u8 = 34;

fn member_config(id: u8) -> rampart_config::GatewayConfig {
    let text = format!(
        r#"
[gateway]
name = "m{id}"
status_socket = "/tmp/unused-m{id}.sock"
retransmit_timeout = "500ms"
retransmit_tries = 3

[tunnel]
device = "rpm{id}"

[local]
domain = ["10.1.0.0/24"]

[cluster]
name = "hq"
member_id = {id}
mode = "high-availability"
primary = 1
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
name = "remote"
local_address = "{VIP}"
remote_address = "{REMOTE}"
psk = "0123456789abcdef0123456789abcdef"
remote_domain = ["10.2.0.0/24"]
liveness_interval = "2s"
start_action = "none"

[[service]]
name = "nosync"
protocol = "udp"
ports = [6000]
sync = false

[[service]]
name = "late"
protocol = "udp"
ports = [6001]
sync_after = "5s"

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
    );
    rampart_config::parse(&text, &format!("m{id}.toml")).expect("valid member config")
}

/// Members 0 and 1 (cluster ids 1 and 2), the remote gateway 2.
struct Trio {
    now: Instant,
    gw: Vec<Gateway>,
    up: [bool; 3],
    vip_owner: Option<usize>,
    tun_out: [Vec<Vec<u8>>; 3],
    wire: Vec<(usize, SocketAddr, SocketAddr, Vec<u8>, bool)>,
    full_syncs: Vec<(usize, u8)>,
    logs: [Vec<String>; 3],
    /// IKE_SA_INIT requests seen on the wire.
    ike_inits: usize,
    /// (SPI, sequence number) of the last ESP packet each node sent.
    last_esp: [Option<(u32, u32)>; 3],
    full_syncs_done: usize,
}

impl Trio {
    fn new(remote_extra: &str) -> Trio {
        let now = Instant::now();
        let remote = config("r", REMOTE, VIP, "10.2.0.0/24", "10.1.0.0/24", remote_extra);
        Trio {
            now,
            gw: vec![
                Gateway::with_boot_id(member_config(1), now, Rng::from_seed([1; 32]), 1).unwrap(),
                Gateway::with_boot_id(member_config(2), now, Rng::from_seed([2; 32]), 1).unwrap(),
                Gateway::new(remote, now, Rng::from_seed([3; 32])).unwrap(),
            ],
            up: [true; 3],
            vip_owner: None,
            tun_out: Default::default(),
            wire: Vec::new(),
            full_syncs: Vec::new(),
            logs: Default::default(),
            ike_inits: 0,
            last_esp: [None; 3],
            full_syncs_done: 0,
        }
    }

    /// A running trio: member 1 active, member 2 standby, the tunnel up.
    fn established(remote_extra: &str) -> Trio {
        let mut t = Trio::new(remote_extra);
        t.run_for(Duration::from_secs(10));
        assert!(t.gw[0].is_active() && !t.gw[1].is_active(), "{:?}", t.logs);
        assert_eq!(t.vip_owner, Some(0));
        assert!(t.remote_established(), "{:#?}", t.gw[2].status(t.now));
        t.ike_inits = 0;
        t
    }

    fn node_of(&self, ip: IpAddr) -> Option<usize> {
        let ip = ip.to_string();
        if ip == VIP {
            self.vip_owner
        } else if ip == REMOTE {
            Some(2)
        } else {
            SYNC.iter().position(|s| *s == ip)
        }
    }

    fn collect_outputs(&mut self) {
        for i in 0..3 {
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
                        if remote.port() != 8116 {
                            let ike = if remote.port() == 4500 {
                                &data[4..]
                            } else {
                                &data[..]
                            };
                            if ike.len() > 19 && ike[18] == IKE_SA_INIT && ike[19] & 0x20 == 0 {
                                self.ike_inits += 1;
                            }
                        }
                        if let Some(to) = self.node_of(remote.ip()) {
                            self.wire.push((to, remote, local, data, false));
                        }
                    }
                    Output::Log(r) => self.logs[i].push(r.message),
                    Output::ClaimAddress { .. } => self.vip_owner = Some(i),
                    Output::ReleaseAddress { .. } => {
                        if self.vip_owner == Some(i) {
                            self.vip_owner = None;
                        }
                    }
                    Output::FullSyncConnect { member, .. } => self.full_syncs.push((i, member)),
                    // Site-to-site members: raw-ESP outputs are remote-access client probes.
                    Output::SendRawEsp { .. }
                    | Output::RouteAdd { .. }
                    | Output::WriteTun { .. }
                    | Output::RouteDel { .. }
                    | Output::RouteInject { .. }
                    | Output::RouteWithdraw { .. }
                    | Output::VirtualAddress { .. }
                    | Output::VirtualAddressLost { .. }
                    | Output::TunnelMtu { .. }
                    | Output::Roamed { .. }
                    | Output::RoamFailed { .. } => {}
                }
            }
        }
    }

    fn deliver(&mut self) {
        let mut rounds = 0;
        loop {
            self.collect_outputs();
            for (i, member) in std::mem::take(&mut self.full_syncs) {
                let j = usize::from(member - 1);
                if self.up[j] {
                    let bytes = self.gw[j].full_sync_export(self.now);
                    let (a, b) = bytes.split_at(bytes.len() / 2);
                    let first = self.gw[i].full_sync_input(self.now, member, a);
                    assert!(first.is_ok(), "{first:?}");
                    let done = self.gw[i].full_sync_input(self.now, member, b);
                    assert_eq!(done, Ok(rampart_node::FullSyncProgress::Done));
                    self.full_syncs_done += 1;
                } else {
                    self.gw[i].full_sync_failed(self.now, member, "connection refused");
                }
                self.collect_outputs();
            }
            if self.wire.is_empty() {
                return;
            }
            rounds += 1;
            assert!(rounds < 1000, "datagram storm");
            for (to, local, remote, data, raw) in std::mem::take(&mut self.wire) {
                if !self.up[to] {
                    continue;
                }
                let mut buf = vec![0u8; data.len() + 2 * HEADROOM];
                buf[HEADROOM..HEADROOM + data.len()].copy_from_slice(&data);
                let range = HEADROOM..HEADROOM + data.len();
                let d = if raw {
                    self.gw[to].handle_raw_esp(self.now, local.ip(), remote.ip(), &mut buf, range)
                } else {
                    self.gw[to].handle_udp(self.now, local, remote, &mut buf, range)
                };
                self.dispose(to, d, &buf);
            }
        }
    }

    fn dispose(&mut self, side: usize, d: Disposition, buf: &[u8]) {
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
        let bytes = buf[data].to_vec();
        let esp = &bytes[..];
        if esp.len() >= 8 {
            let spi = u32::from_be_bytes(esp[0..4].try_into().unwrap());
            let seq = u32::from_be_bytes(esp[4..8].try_into().unwrap());
            self.last_esp[side] = Some((spi, seq));
        }
        if let Some(to) = self.node_of(remote.ip()) {
            self.wire.push((to, remote, local, bytes, raw));
        }
    }

    fn run_until(&mut self, until: Instant) {
        self.deliver();
        loop {
            let next = (0..3)
                .filter(|&i| self.up[i])
                .filter_map(|i| self.gw[i].poll_timeout())
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    for i in 0..3 {
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

    fn run_for(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_until(t);
    }

    /// A packet from node `side`'s site; delivered to the other site's TUN device or not.
    fn send_from_tun(&mut self, side: usize, packet: &[u8]) -> bool {
        let to = if side == 2 { self.vip_owner } else { Some(2) };
        let before = to.map(|t| self.tun_out[t].len());
        let mut buf = vec![0u8; packet.len() + 2 * HEADROOM];
        buf[HEADROOM..HEADROOM + packet.len()].copy_from_slice(packet);
        let d = self.gw[side].handle_tun(self.now, &mut buf, HEADROOM..HEADROOM + packet.len());
        self.dispose(side, d, &buf);
        self.deliver();
        match (to, before) {
            (Some(t), Some(n)) => self.tun_out[t].len() == n + 1 && self.tun_out[t][n] == packet,
            _ => false,
        }
    }

    /// One packet each way between the sites through the active member `m`.
    fn ping(&mut self, m: usize, sport: u16, dport: u16, tag: &[u8]) {
        let out = udp(HOST_A, sport, HOST_B, dport, tag);
        assert!(self.send_from_tun(m, &out), "site A -> B via {m} lost");
        let back = udp(HOST_B, dport, HOST_A, sport, tag);
        assert!(self.send_from_tun(2, &back), "site B -> A via {m} lost");
    }

    fn remote_established(&self) -> bool {
        let s = self.gw[2].status(self.now);
        s.peers[0].state == "established" && !s.peers[0].tunnels.is_empty()
    }

    /// The remote's IKE SPIs and (inbound, outbound) CHILD SPIs.
    fn remote_spis(&self) -> (String, String, Vec<(String, String)>) {
        let s = self.gw[2].status(self.now);
        let ike = s.peers[0].ike_sa.clone().expect("IKE SA");
        let children = s.peers[0]
            .tunnels
            .iter()
            .map(|t| (t.spi_in.clone(), t.spi_out.clone()))
            .collect();
        (ike.spi_i, ike.spi_r, children)
    }

    fn crash(&mut self, i: usize) {
        self.up[i] = false;
        if self.vip_owner == Some(i) {
            self.vip_owner = None;
        }
    }

    fn restart(&mut self, i: usize, boot_id: u64) {
        self.gw[i] = Gateway::with_boot_id(
            member_config(i as u8 + 1),
            self.now,
            Rng::from_seed([10 + i as u8; 32]),
            boot_id,
        )
        .unwrap();
        self.up[i] = true;
    }

    fn has_conn(&self, i: usize, dport: u16) -> bool {
        self.gw[i]
            .conn_list(self.now, 1000)
            .connections
            .iter()
            .any(|c| c.original.contains(&format!(":{dport}")))
    }
}

#[test]
fn failover_keeps_spis_connections_and_rekeys_work() {
    let mut t = Trio::established("child_lifetime = \"20s\"\nike_lifetime = \"45s\"");
    t.ping(0, 4000, 5000, b"before");
    t.run_for(Duration::from_millis(500));
    let spis = t.remote_spis();
    assert!(t.has_conn(1, 5000), "the standby has the connection");
    assert_eq!(t.gw[1].replica_count(), 1);
    let (_, seq_before) = t.last_esp[0].expect("member 1 sent ESP");

    t.crash(0);
    t.run_for(Duration::from_secs(1));
    assert!(t.gw[1].is_active(), "{:?}", t.logs[1]);
    assert_eq!(t.vip_owner, Some(1));
    assert_eq!(t.remote_spis(), spis, "the remote sees the same SAs");
    // The remote's ESP continues into member 2; member 2's outbound sequence numbers jumped.
    t.ping(1, 4000, 5000, b"after");
    let (_, seq_after) = t.last_esp[1].expect("member 2 sent ESP");
    assert!(
        u64::from(seq_after) > u64::from(seq_before) + 16384,
        "{seq_before} -> {seq_after}"
    );
    assert!(t.has_conn(1, 5000));
    assert_eq!(t.ike_inits, 0, "no new IKE_SA_INIT");

    // CHILD and IKE rekeys after the failover (lifetimes 20 s and 45 s): traffic never stops.
    let ike_before = t.gw[2].status(t.now).peers[0].ike_sa.clone().unwrap().id;
    for i in 0..120u32 {
        t.run_for(Duration::from_millis(500));
        t.ping(1, 4000, 5000, &i.to_be_bytes());
    }
    let s = t.gw[2].status(t.now);
    assert_ne!(
        s.peers[0].ike_sa.clone().unwrap().id,
        ike_before,
        "IKE SA rekeyed"
    );
    assert_ne!(t.remote_spis().2, spis.2, "CHILD SAs rekeyed");
    assert_eq!(t.ike_inits, 0, "no new IKE_SA_INIT: {:?}", t.logs[2]);
    assert!(
        !t.logs[2].iter().any(|l| l.contains("is dead")),
        "{:?}",
        t.logs[2]
    );
}

#[test]
fn rejoin_by_full_sync_then_fail_back() {
    let mut t = Trio::established("");
    t.ping(0, 4000, 5000, b"one");
    let spis = t.remote_spis();
    t.crash(0);
    t.run_for(Duration::from_secs(1));
    assert!(t.gw[1].is_active());
    t.ping(1, 4000, 5000, b"two");

    t.restart(0, 2);
    let synced = t.full_syncs_done;
    t.run_for(Duration::from_secs(3));
    assert!(t.full_syncs_done > synced, "member 1 pulled a full sync");
    assert!(!t.gw[0].is_active(), "no switch back");
    assert_eq!(t.gw[0].replica_count(), 1);
    assert!(t.has_conn(0, 5000));
    t.ping(1, 4000, 5000, b"three");
    t.run_for(Duration::from_millis(500));

    t.crash(1);
    t.run_for(Duration::from_secs(1));
    assert!(t.gw[0].is_active(), "{:?}", t.logs[0]);
    t.ping(0, 4000, 5000, b"four");
    assert_eq!(t.remote_spis(), spis);
    assert_eq!(t.ike_inits, 0);
}

#[test]
fn graceful_switchover_loses_nothing() {
    let mut t = Trio::established("");
    t.ping(0, 4000, 5000, b"before");
    t.run_for(Duration::from_millis(300));
    let spis = t.remote_spis();
    let answer = t.gw[0].cluster_command(t.now, ClusterCommand::Switchover { to: Some(2) });
    assert!(answer.is_ok(), "{answer:?}");
    let mut lost = 0;
    for i in 0..100u32 {
        t.run_for(Duration::from_millis(10));
        let p = udp(HOST_B, 5000, HOST_A, 4000, &i.to_be_bytes());
        if !t.send_from_tun(2, &p) {
            lost += 1;
        }
    }
    assert!(t.gw[1].is_active() && !t.gw[0].is_active(), "{:?}", t.logs);
    assert_eq!(t.vip_owner, Some(1));
    assert!(lost <= 5, "{lost} packets lost during the switchover");
    t.ping(1, 4000, 5000, b"after");
    assert_eq!(t.remote_spis(), spis);
    assert_eq!(t.ike_inits, 0);
}

#[test]
fn sync_false_is_not_synced_and_sync_after_delays() {
    let mut t = Trio::established("");
    t.ping(0, 4000, 5000, b"plain");
    t.ping(0, 4001, 6000, b"never synced");
    t.ping(0, 4002, 6001, b"synced after 5 s");
    t.run_for(Duration::from_secs(1));
    assert!(t.has_conn(1, 5000));
    assert!(!t.has_conn(1, 6000));
    assert!(!t.has_conn(1, 6001), "sync_after not yet passed");
    for i in 0..5u32 {
        t.run_for(Duration::from_secs(1));
        t.ping(0, 4002, 6001, &i.to_be_bytes());
    }
    assert!(t.has_conn(1, 6001), "synced once 5 s old");
    assert!(!t.has_conn(1, 6000));
}

#[test]
fn tcp_handshake_inside_the_hold_window_is_one_record() {
    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    let mut t = Trio::established("");
    let sent = |t: &Trio| t.gw[0].cluster_status(t.now).unwrap().1.records_sent;
    // Line up with the ESP counter sync: traffic on a known connection moves only the
    // counters, whose record leaves at the next `esp_sync_interval` tick.
    t.ping(0, 4000, 5000, b"first");
    t.run_for(Duration::from_millis(300));
    t.ping(0, 4000, 5000, b"counters only");
    let before = sent(&t);
    for _ in 0..200 {
        t.run_for(Duration::from_millis(1));
        if sent(&t) != before {
            break;
        }
    }
    assert_eq!(sent(&t), before + 1, "one ESP counters record");
    let before = sent(&t);
    // SYN, SYN-ACK, ACK: Created and two Updated within the window.
    assert!(t.send_from_tun(0, &tcp(HOST_A, 40000, HOST_B, 443, SYN)));
    assert!(t.send_from_tun(2, &tcp(HOST_B, 443, HOST_A, 40000, SYN | ACK)));
    assert!(t.send_from_tun(0, &tcp(HOST_A, 40000, HOST_B, 443, ACK)));
    assert_eq!(sent(&t), before, "held in the window");
    t.run_for(Duration::from_millis(30));
    assert_eq!(
        sent(&t),
        before + 1,
        "Created + Updated + Updated is one record"
    );
    let standby = t.gw[1].conn_list(t.now, 1000);
    let c = standby
        .connections
        .iter()
        .find(|c| c.original.contains(":443"))
        .expect("synced to the standby");
    assert_eq!(c.protocol, "tcp");
    let active = t.gw[0].conn_list(t.now, 1000);
    let a = active
        .connections
        .iter()
        .find(|c| c.original.contains(":443"))
        .unwrap();
    assert_eq!(c.state, a.state, "the standby has the latest state");
}

#[test]
fn reload_refuses_cluster_changes_and_names_the_keys() {
    let mut t = Trio::established("");
    let mut cfg = member_config(1);
    let cluster = cfg.cluster.as_mut().expect("cluster");
    cluster.heartbeat_interval = Duration::from_millis(200);
    cluster.switch_back = true;
    let err = t.gw[0].reload(t.now, cfg).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("cluster.heartbeat_interval") && text.contains("cluster.switch_back"),
        "{text}"
    );
    let mut cfg = member_config(1);
    cfg.cluster = None;
    let err = t.gw[0].reload(t.now, cfg).unwrap_err();
    assert!(err.to_string().contains("cluster"), "{err}");
}
