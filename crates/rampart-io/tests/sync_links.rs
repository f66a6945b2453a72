//! Redundant sync networks and routed Load Sharing in the I/O shell (root only): two event
//! loops as members of a routed Load Sharing cluster with two sync links each, in one private
//! namespace, driven by stand-in nodes. Each link's address gets its own UDP socket and the
//! datagrams of link 1 reach the node with link 1's local address; the carrier of the
//! interfaces holding the sync addresses is reported per link (also for an interface that is
//! monitored too); full sync is served on link 1's address; the virtual addresses are claimed
//! without announcement; the sync-stats and cluster status answers carry the shell's Load
//! Sharing fields.

mod netns;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netns::Netns;
use rampart_cluster::{
    ClusterStatus, Distribution, FlushAckStats, LinkId, LoadSharingStatus, MemberShare,
    MemberState, OwnershipMap, SyncStats,
};
use rampart_config::GatewayConfig;
use rampart_io::cluster_io::ClusterIo;
use rampart_io::routes::Routes;
use rampart_io::runtime::{self, Io};
use rampart_io::status_server::{self, StatusServer};
use rampart_io::tun::Tun;
use rampart_node::{
    ClusterCommand, ConnList, Disposition, FullSyncProgress, GatewayStatus, InspectStats, Node,
    Output,
};

const SNAPSHOT_LEN: usize = 100_000;

/// What a stand-in saw, shared with the test.
#[derive(Default)]
struct Seen {
    /// (local, remote, payload) of every datagram.
    udp: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// Every `handle_sync_link_state` call.
    carriers: Vec<(LinkId, bool)>,
    /// Every `handle_link_state` call.
    links: Vec<(String, bool)>,
    received: Vec<u8>,
    done: bool,
    exports: u32,
    failures: Vec<String>,
}

struct Member {
    id: u8,
    outputs: VecDeque<Output>,
    seen: Arc<Mutex<Seen>>,
}

fn snapshot() -> Vec<u8> {
    (0..SNAPSHOT_LEN).map(|i| (i % 241) as u8).collect()
}

impl Member {
    fn udp(&self, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        self.seen
            .lock()
            .unwrap()
            .udp
            .push((local, remote, data.to_vec()));
    }
}

impl Node for Member {
    fn handle_udp(
        &mut self,
        _: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        buf: &mut [u8],
        packet: Range<usize>,
    ) -> Disposition {
        self.udp(local, remote, &buf[packet]);
        Disposition::Consumed
    }
    fn handle_raw_esp(
        &mut self,
        _: Instant,
        _: IpAddr,
        _: IpAddr,
        _: &mut [u8],
        _: Range<usize>,
    ) -> Disposition {
        Disposition::Consumed
    }
    fn handle_tun(&mut self, _: Instant, _: &mut [u8], _: Range<usize>) -> Disposition {
        Disposition::Consumed
    }
    fn handle_tun_batch<B: AsMut<[u8]>>(
        &mut self,
        _: Instant,
        _: &mut [B],
        _: &[Range<usize>],
        out: &mut [Disposition],
    ) {
        out.fill(Disposition::Consumed);
    }
    fn handle_udp_batch(
        &mut self,
        _: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        buf: &mut [u8],
        packets: &[Range<usize>],
        out: &mut [Disposition],
    ) {
        for p in packets {
            self.udp(local, remote, &buf[p.clone()]);
        }
        out.fill(Disposition::Consumed);
    }
    fn handle_raw_esp_batch(
        &mut self,
        _: Instant,
        _: IpAddr,
        _: &mut [u8],
        _: &[(IpAddr, Range<usize>)],
        out: &mut [Disposition],
    ) {
        out.fill(Disposition::Consumed);
    }
    fn handle_unreachable(&mut self, _: Instant, _: SocketAddr, _: SocketAddr) {}
    fn handle_path_mtu(&mut self, _: Instant, _: SocketAddr, _: SocketAddr, _: u16) {}
    fn roam(&mut self, _: Instant, _: IpAddr) -> rampart_node::RoamOutcome {
        rampart_node::RoamOutcome::Nothing
    }
    fn stream_renewed(&mut self, _: Instant) -> Vec<(String, rampart_node::StreamRenewal)> {
        Vec::new()
    }
    fn client_traffic(&self) -> Option<rampart_node::ClientTraffic> {
        None
    }
    fn handle_timeout(&mut self, _: Instant) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    // No IKE SAs in this stand-in: nothing to delete.
    fn close_sas(&mut self, _: Instant) {}
    fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }
    fn status(&self, _: Instant) -> GatewayStatus {
        unreachable!("not asked")
    }
    fn conn_list(&self, _: Instant, _: usize) -> ConnList {
        unreachable!("not asked")
    }
    fn conn_stats(&self) -> InspectStats {
        InspectStats::default()
    }
    fn reload(
        &mut self,
        _: Instant,
        _: GatewayConfig,
    ) -> Result<rampart_node::ReloadReport, rampart_node::ReloadError> {
        unreachable!("not asked")
    }
    fn handle_link_state(&mut self, _: Instant, interface: &str, up: bool) {
        self.seen
            .lock()
            .unwrap()
            .links
            .push((interface.to_owned(), up));
    }
    fn handle_sync_link_state(&mut self, _: Instant, link: LinkId, up: bool) {
        self.seen.lock().unwrap().carriers.push((link, up));
    }
    fn cluster_command(&mut self, _: Instant, command: ClusterCommand) -> Result<String, String> {
        Err(format!("{command:?}: not in this test"))
    }
    fn full_sync_export(&mut self, _: Instant) -> Vec<u8> {
        self.seen.lock().unwrap().exports += 1;
        snapshot()
    }
    fn full_sync_input(
        &mut self,
        _: Instant,
        _: u8,
        bytes: &[u8],
    ) -> Result<FullSyncProgress, String> {
        let mut seen = self.seen.lock().unwrap();
        seen.received.extend_from_slice(bytes);
        if seen.received.len() == SNAPSHOT_LEN {
            seen.done = true;
            return Ok(FullSyncProgress::Done);
        }
        Ok(FullSyncProgress::More)
    }
    fn full_sync_failed(&mut self, _: Instant, _: u8, why: &str) {
        self.seen.lock().unwrap().failures.push(why.to_owned());
    }
    fn probe_sockets(&self) -> Vec<SocketAddr> {
        Vec::new()
    }
    fn mep_status(&self, _: Instant) -> Option<rampart_node::MepStatus> {
        None
    }
    fn load_sharing_stats(&self) -> Option<rampart_node::LoadSharingStats> {
        Some(rampart_node::LoadSharingStats {
            carrying: true,
            held: 4,
            ..Default::default()
        })
    }
    fn cluster_status(&self, _: Instant) -> Option<(ClusterStatus, SyncStats)> {
        let mut flush_ack = FlushAckStats {
            held: 2,
            ..Default::default()
        };
        flush_ack.hold_time.record(Duration::from_micros(300));
        flush_ack.hold_time.record(Duration::from_micros(700));
        Some((
            ClusterStatus {
                name: "ls".into(),
                mode: "load-sharing".into(),
                member_id: self.id,
                state: MemberState::Standby,
                reason: String::new(),
                members: vec![],
                virtual_addresses: vec![],
                failovers: 0,
                load_sharing: Some(LoadSharingStatus {
                    distribution: Distribution::Routed,
                    pivot: Some(1),
                    ownership: OwnershipMap {
                        epoch: 1,
                        members: vec![MemberShare {
                            member: self.id,
                            up: true,
                            expected_permille: 500,
                            flows: 0,
                            packets: 0,
                            bytes: 0,
                        }],
                    },
                    forwarded_sent: 7,
                    forwarded_received: 5,
                    forwarded_dropped: 1,
                }),
            },
            SyncStats {
                member_id: self.id,
                flush_ack: Some(flush_ack),
                ..SyncStats::default()
            },
        ))
    }
}

/// Member `me`'s configuration: routed Load Sharing, two sync links (10.77.0.x on veth `sa0`,
/// 10.77.1.x on veth `sa1`), `sa0` also monitored. Each member has a virtual address of its own
/// here (both run in one namespace, and a stand-in node does not care).
fn config(me: u8) -> GatewayConfig {
    let text = format!(
        r#"[gateway]
name = "m{me}"
[tunnel]
device = "rsl{me}"
[local]
domain = ["10.1.0.0/24"]
[[peer]]
name = "remote"
local_address = "192.0.2.{me}"
remote_address = "198.51.100.2"
psk = "0123456789abcdef"
remote_domain = ["10.2.0.0/24"]
[cluster]
name = "ls"
member_id = {me}
mode = "load-sharing"
monitor = ["sa0"]
secret = "cluster-secret-0123456789"
[[cluster.member]]
id = 1
address = "10.77.0.1"
extra_addresses = ["10.77.1.1"]
[[cluster.member]]
id = 2
address = "10.77.0.2"
extra_addresses = ["10.77.1.2"]
[[cluster.vip]]
address = "192.0.2.{me}"
"#
    );
    rampart_config::parse(&text, "member.toml").unwrap_or_else(|e| panic!("{e}"))
}

async fn io(config: &GatewayConfig, status: &Path) -> Io {
    let tun = Tun::open(&config.tunnel.device, 1400, false).unwrap();
    let routes = Routes::open(tun.name(), tun.index()).unwrap();
    let (status, status_requests) = StatusServer::bind(status).unwrap();
    let mut io = Io {
        tun,
        udp: vec![],
        raw: vec![],
        routes,
        status,
        status_requests,
        config_path: None,
        hangup: None,
        reloads: Default::default(),
        cluster: Some(
            ClusterIo::open(config.cluster.as_ref().unwrap())
                .await
                .unwrap(),
        ),
        send_failures: Default::default(),
        client_outputs: None,
        streams: Default::default(),
        stream_events: None,
        client_commands: None,
        no_fragmentation: false,
    };
    io.open_sockets(config).unwrap();
    io
}

async fn query(path: &Path, request: &str) -> serde_json::Value {
    let path = path.to_owned();
    let request = request.to_owned();
    let doc = tokio::task::spawn_blocking(move || status_server::query(&path, &request))
        .await
        .unwrap()
        .unwrap();
    serde_json::from_str(&doc).unwrap()
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..250 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within 5 s");
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn one_socket_per_sync_link_carrier_per_link_and_full_sync_on_link_1() {
    if !netns::can_run("sync links") {
        return;
    }
    let ns = Netns::new("synclinks");
    // Each sync network is a veth pair: taking the peer end down takes the carrier away.
    for (dev, net) in [("sa0", 0), ("sa1", 1)] {
        ns.ip(&format!("link add {dev} type veth peer name {dev}p"));
        ns.ip(&format!("link set {dev}p up"));
        ns.ip(&format!("link set {dev} up"));
        for id in [1, 2] {
            ns.ip(&format!("addr add 10.77.{net}.{id}/24 dev {dev}"));
        }
    }
    let dir =
        std::env::temp_dir().join(format!("rampart-io-test-{}-synclinks", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sock_a: PathBuf = dir.join("a.sock");
    let sock_b: PathBuf = dir.join("b.sock");

    ns.run(|| {
        netns::runtime().block_on(async {
            let (config_a, config_b) = (config(1), config(2));
            let mut io_a = io(&config_a, &sock_a).await;
            let mut io_b = io(&config_b, &sock_b).await;
            // One UDP socket per sync link (next to the peer's IKE and NAT-T sockets).
            for (io, me) in [(&io_a, 1), (&io_b, 2)] {
                let locals: Vec<SocketAddr> = io.udp.iter().map(|s| s.local()).collect();
                for link in 0..2 {
                    let a = addr(&format!("10.77.{link}.{me}:8116"));
                    assert!(locals.contains(&a), "{a} not bound: {locals:?}");
                }
                let c = io.cluster.as_ref().unwrap();
                assert_eq!(
                    c.sync_addresses,
                    [
                        addr(&format!("10.77.0.{me}:8116")),
                        addr(&format!("10.77.1.{me}:8116"))
                    ]
                );
                assert_eq!(
                    c.sync_link_interfaces,
                    [("sa0".to_string(), 0), ("sa1".to_string(), 1)]
                );
                // Routed Load Sharing: the virtual addresses are claimed without ARP/ND.
                assert!(!c.vips.announces());
            }
            let seen_a = Arc::new(Mutex::new(Seen::default()));
            let seen_b = Arc::new(Mutex::new(Seen::default()));
            // Member 1 sends on link 1 (from its link 1 address), member 2 pulls its full
            // sync from member 1's link 1 address.
            let mut node_a = Member {
                id: 1,
                outputs: VecDeque::from([Output::SendUdp {
                    local: addr("10.77.1.1:8116"),
                    remote: addr("10.77.1.2:8116"),
                    data: b"on link 1".to_vec(),
                }]),
                seen: seen_a.clone(),
            };
            let mut node_b = Member {
                id: 2,
                outputs: VecDeque::from([Output::FullSyncConnect {
                    member: 1,
                    address: addr("10.77.1.1:8116"),
                }]),
                seen: seen_b.clone(),
            };
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let stopper = || {
                let mut s = stopped.clone();
                async move {
                    let _ = s.wait_for(|v| *v).await;
                }
            };
            let (stop_a, stop_b) = (stopper(), stopper());

            let test = async {
                // Link 1's datagram reaches member 2's node with link 1's local address.
                eventually("datagram on link 1", || {
                    seen_b.lock().unwrap().udp.iter().any(|(l, r, d)| {
                        *l == addr("10.77.1.2:8116")
                            && *r == addr("10.77.1.1:8116")
                            && d == b"on link 1"
                    })
                })
                .await;
                // Full sync served on link 1's address (its listener runs in a task).
                eventually("full sync on link 1", || seen_b.lock().unwrap().done).await;
                assert_eq!(seen_b.lock().unwrap().received, snapshot());
                assert_eq!(seen_a.lock().unwrap().exports, 1);
                assert!(seen_b.lock().unwrap().failures.is_empty());

                // The carrier of both links, first as it is, then sa1 losing it and back.
                eventually("initial carrier", || {
                    let c = &seen_b.lock().unwrap().carriers;
                    c.contains(&(0, true)) && c.contains(&(1, true))
                })
                .await;
                ns.ip("link set sa1p down");
                eventually("link 1 down", || {
                    seen_b.lock().unwrap().carriers.last() == Some(&(1, false))
                })
                .await;
                ns.ip("link set sa1p up");
                eventually("link 1 up", || {
                    seen_b.lock().unwrap().carriers.last() == Some(&(1, true))
                })
                .await;
                {
                    let seen = seen_b.lock().unwrap();
                    // sa0 is monitored as well: its state also went to handle_link_state;
                    // sa1 is not monitored, so it never did.
                    assert_eq!(seen.links, [("sa0".to_string(), true)]);
                    assert!(!seen.carriers.iter().any(|&(l, up)| l == 0 && !up));
                }

                // The sync-stats answer: the engine's counters plus the shell's fields.
                let stats = query(&sock_b, "cluster sync-stats").await;
                assert_eq!(stats["member_id"], 2, "{stats}");
                assert_eq!(stats["forwarded"]["sent"], 7, "{stats}");
                assert_eq!(stats["forwarded"]["received"], 5, "{stats}");
                assert_eq!(stats["forwarded"]["dropped"], 1, "{stats}");
                assert_eq!(stats["flush_ack"]["held"], 2, "{stats}");
                assert_eq!(stats["flush_ack"]["hold_time_p50_us"], 350, "{stats}");
                assert_eq!(stats["flush_ack"]["hold_time_p99_us"], 700, "{stats}");
                let status = query(&sock_b, "cluster status").await;
                assert_eq!(status["load_sharing"]["pivot"], 1, "{status}");
                // This member's own counters from the node, beside the engine's.
                assert_eq!(
                    status["load_sharing"]["member"]["carrying"], true,
                    "{status}"
                );
                assert_eq!(status["load_sharing"]["member"]["held"], 4, "{status}");

                let _ = stop.send(true);
            };
            let (a, b, ()) = tokio::join!(
                runtime::run(&mut node_a, &mut io_a, stop_a),
                runtime::run(&mut node_b, &mut io_b, stop_b),
                test
            );
            a.unwrap();
            b.unwrap();
        })
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sync_stats_document_without_load_sharing_adds_nothing() {
    let stats = SyncStats {
        member_id: 1,
        records_sent: 3,
        ..Default::default()
    };
    let doc = rampart_io::cluster_io::sync_stats_document(&stats, None).unwrap();
    assert_eq!(doc, serde_json::to_value(&stats).unwrap());
    assert!(doc.get("forwarded").is_none());
    // Flush-and-Ack without a hold yet: the quantiles are null, not zero.
    let stats = SyncStats {
        flush_ack: Some(FlushAckStats::default()),
        ..Default::default()
    };
    let doc = rampart_io::cluster_io::sync_stats_document(&stats, None).unwrap();
    assert!(doc["flush_ack"]["hold_time_p50_us"].is_null(), "{doc}");
    assert!(doc["flush_ack"]["hold_time_p99_us"].is_null(), "{doc}");
}
