//! Two event loops as cluster members in one private namespace, driven by stand-in nodes
//! (root only): full sync pulled on `FullSyncConnect` and served from `full_sync_export`, a
//! virtual address claimed and released on the node's word and removed at shutdown, link
//! changes of a monitored interface, and the `cluster` status requests.

mod netns;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netns::Netns;
use rampart_cluster::{
    ClusterConfig, ClusterMode, ClusterStatus, MemberConfig, MemberId, MemberState, SyncAuth,
    SyncStats,
};
use rampart_io::cluster_io::ClusterIo;
use rampart_io::routes::Routes;
use rampart_io::runtime::{self, Io};
use rampart_io::status_server::{self, StatusServer};
use rampart_io::tun::Tun;
use rampart_node::{
    ClusterCommand, ConnList, Disposition, FullSyncProgress, GatewayStatus, InspectStats, Node,
    Output,
};
use zeroize::Zeroizing;

const SNAPSHOT_LEN: usize = 300_000;
const VIP: &str = "10.88.0.10/24";

/// What the stand-ins saw, shared with the test.
#[derive(Default)]
struct Seen {
    received: Vec<u8>,
    done: bool,
    exports: u32,
    links: Vec<(String, bool)>,
    commands: Vec<ClusterCommand>,
    failures: Vec<String>,
}

struct MemberNode {
    id: MemberId,
    outputs: VecDeque<Output>,
    seen: Arc<Mutex<Seen>>,
}

fn snapshot() -> Vec<u8> {
    (0..SNAPSHOT_LEN).map(|i| (i % 251) as u8).collect()
}

impl Node for MemberNode {
    fn handle_udp(
        &mut self,
        _: Instant,
        _: SocketAddr,
        _: SocketAddr,
        _: &mut [u8],
        _: Range<usize>,
    ) -> Disposition {
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
        _: SocketAddr,
        _: SocketAddr,
        _: &mut [u8],
        _: &[Range<usize>],
        out: &mut [Disposition],
    ) {
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
    fn roam(&mut self, _: Instant, _: std::net::IpAddr) -> rampart_node::RoamOutcome {
        rampart_node::RoamOutcome::Nothing
    }
    // No remote-access client in this node: nothing to re-attach, no traffic to watch.
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
    // No IKE SAs in this test node: nothing to delete.
    fn close_sas(&mut self, _now: std::time::Instant) {}

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
        _: rampart_config::GatewayConfig,
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
    fn cluster_command(&mut self, _: Instant, command: ClusterCommand) -> Result<String, String> {
        self.seen.lock().unwrap().commands.push(command);
        match command {
            ClusterCommand::Switchover { to: Some(9) } => Err("member 9 is unknown".into()),
            ClusterCommand::Down => {
                // Giving up the active role: the address goes.
                self.outputs.push_back(Output::ReleaseAddress {
                    interface: "lan0".into(),
                    addr: VIP.parse().unwrap(),
                });
                Ok("member 2 is down".into())
            }
            ClusterCommand::Up => {
                // Eligible again and (here) active at once: the address comes back.
                self.outputs.push_back(Output::ClaimAddress {
                    interface: "lan0".into(),
                    addr: VIP.parse().unwrap(),
                });
                Ok("member 2 is up".into())
            }
            _ => Ok(format!("{command:?} done")),
        }
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
            // Synced: now this member takes the address (as on BecameActive).
            self.outputs.push_back(Output::ClaimAddress {
                interface: "lan0".into(),
                addr: VIP.parse().unwrap(),
            });
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

    fn cluster_status(&self, _: Instant) -> Option<(ClusterStatus, SyncStats)> {
        Some((
            ClusterStatus {
                name: "test".into(),
                mode: "high-availability".into(),
                member_id: self.id,
                state: MemberState::Standby,
                reason: String::new(),
                members: vec![],
                virtual_addresses: vec![],
                failovers: 0,
                load_sharing: None,
            },
            SyncStats {
                member_id: self.id,
                full_syncs_received: 1,
                ..SyncStats::default()
            },
        ))
    }
}

fn cluster(me: MemberId, monitor: &[&str]) -> ClusterConfig {
    let member = |id: u8| MemberConfig {
        id,
        sync_address: SocketAddr::new(IpAddr::from([10, 76, 1, id]), 8116),
        priority: 100,
        extra_sync_addresses: Vec::new(),
    };
    ClusterConfig {
        name: "test".into(),
        member_id: me,
        mode: ClusterMode::HighAvailability,
        members: vec![member(1), member(2)],
        switch_back: false,
        heartbeat_interval: Duration::from_millis(100),
        dead_after: 3,
        monitored_interfaces: monitor.iter().map(|s| s.to_string()).collect(),
        virtual_addresses: vec![],
        auth: SyncAuth {
            secret: Zeroizing::new(b"cluster-secret-0123456789".to_vec()),
            tls: None,
        },
        retransmit_queue: 1024,
        takeover_margin: 16384,
        esp_sync_interval: Duration::from_millis(100),
        load_sharing: None,
        sync_link_hold_down: rampart_cluster::DEFAULT_SYNC_LINK_HOLD_DOWN,
    }
}

async fn io(tun: &str, status: &Path, cluster: &ClusterConfig) -> Io {
    let tun = Tun::open(tun, 1400, false).unwrap();
    let routes = Routes::open(tun.name(), tun.index()).unwrap();
    let (status, status_requests) = StatusServer::bind(status).unwrap();
    Io {
        tun,
        udp: vec![],
        raw: vec![],
        routes,
        status,
        status_requests,
        config_path: None,
        hangup: None,
        reloads: Default::default(),
        cluster: Some(ClusterIo::open(cluster).await.unwrap()),
        send_failures: Default::default(),
        client_outputs: None,
        streams: Default::default(),
        stream_events: None,
        client_commands: None,
        no_fragmentation: false,
    }
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

#[test]
fn members_pull_and_serve_full_sync_claim_addresses_and_watch_links() {
    if !netns::can_run("cluster loop") {
        return;
    }
    let ns = Netns::new("clusterloop");
    ns.ip("addr add 10.76.1.1/32 dev lo");
    ns.ip("addr add 10.76.1.2/32 dev lo");
    ns.ip("link add lan0 type veth peer name lan1");
    ns.ip("link set lan0 up");
    ns.ip("link set lan1 up");
    let dir = std::env::temp_dir().join(format!(
        "rampart-io-test-{}-clusterloop",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let sock_a: PathBuf = dir.join("a.sock");
    let sock_b: PathBuf = dir.join("b.sock");

    ns.run(|| {
        netns::runtime().block_on(async {
            let seen_a = Arc::new(Mutex::new(Seen::default()));
            let seen_b = Arc::new(Mutex::new(Seen::default()));
            let mut io_a = io("rc1", &sock_a, &cluster(1, &[])).await;
            let mut io_b = io("rc2", &sock_b, &cluster(2, &["lan0"])).await;
            let mut node_a = MemberNode {
                id: 1,
                outputs: VecDeque::new(),
                seen: seen_a.clone(),
            };
            let mut node_b = MemberNode {
                id: 2,
                outputs: VecDeque::from([Output::FullSyncConnect {
                    member: 1,
                    address: "10.76.1.1:8116".parse().unwrap(),
                }]),
                seen: seen_b.clone(),
            };
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let stop_a = {
                let mut s = stopped.clone();
                async move {
                    let _ = s.wait_for(|v| *v).await;
                }
            };
            let stop_b = {
                let mut s = stopped.clone();
                async move {
                    let _ = s.wait_for(|v| *v).await;
                }
            };

            let test = async {
                // Member 2 pulls member 1's snapshot, byte for byte, then claims the address.
                eventually("full sync", || seen_b.lock().unwrap().done).await;
                assert_eq!(seen_b.lock().unwrap().received, snapshot());
                assert_eq!(seen_a.lock().unwrap().exports, 1);
                assert!(seen_b.lock().unwrap().failures.is_empty());
                eventually("address claimed", || {
                    ns.ip("-4 addr show dev lan0")
                        .contains("inet 10.88.0.10/24")
                })
                .await;

                // The monitored interface: initial state, then carrier loss.
                eventually("initial link state", || {
                    seen_b.lock().unwrap().links == [("lan0".to_string(), true)]
                })
                .await;
                ns.ip("link set lan1 down");
                eventually("link down", || {
                    seen_b.lock().unwrap().links.last() == Some(&("lan0".to_string(), false))
                })
                .await;
                ns.ip("link set lan1 up");

                // Status requests.
                let status = query(&sock_b, "cluster status").await;
                assert_eq!(status["member_id"], 2, "{status}");
                assert_eq!(status["state"], "standby", "{status}");
                let stats = query(&sock_b, "cluster sync-stats").await;
                assert_eq!(stats["full_syncs_received"], 1, "{stats}");
                let refused = query(&sock_b, "cluster switchover 9").await;
                assert_eq!(refused["error"], "member 9 is unknown");
                let ok = query(&sock_b, "cluster switchover").await;
                assert_eq!(ok["message"], "Switchover { to: None } done");
                // Down: the node releases the address before the answer comes back.
                let down = query(&sock_b, "cluster down").await;
                assert_eq!(down["message"], "member 2 is down");
                assert!(!ns.ip("-4 addr show dev lan0").contains("10.88.0.10"));
                // Up: claimed again; shutdown will remove it.
                assert_eq!(
                    query(&sock_b, "cluster up").await["message"],
                    "member 2 is up"
                );
                assert!(ns
                    .ip("-4 addr show dev lan0")
                    .contains("inet 10.88.0.10/24"));
                assert_eq!(
                    seen_b.lock().unwrap().commands,
                    [
                        ClusterCommand::Switchover { to: Some(9) },
                        ClusterCommand::Switchover { to: None },
                        ClusterCommand::Down,
                        ClusterCommand::Up,
                    ]
                );

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
    assert!(!ns.ip("-4 addr show dev lan0").contains("10.88.0.10"));
    let _ = std::fs::remove_dir_all(&dir);
}
