//! The tools of the Load Sharing tests, proven without Rampart: the routed topology with plain
//! Linux forwarding in the members, BIRD 2 OSPF with ECMP on both routers, each member's BIRD
//! exporting its announce table (filled by hand here, by Rampart in the real cases).
//!
//! Shown: BIRD converges to one multipath route per side with a next hop per member; the routers
//! spread flows over every member in both directions, and the two directions of a flow cross
//! different members (asymmetric return paths); a member's routes vanish from the routers when
//! its device goes away, and when the box dies (BIRD killed, links down), by the dead interval.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_netns_tests::bird::{BIRD, BIRDC};
use rampart_netns_tests::conn_load::{LoadClient, LoadServer, LoadSpec};
use rampart_netns_tests::ls_topology::{
    member_sync, FlowPath, FlowTrace, LsTopology, HOST, HOST_SOURCES, LOCAL_DOMAIN, REMOTE_DOMAIN,
    REMOTE_HOST, WAN_VIP,
};
use rampart_netns_tests::traffic::spawn_in;
use rampart_netns_tests::{
    ping, require_tools, skip_unless_root, tcp_transfer, wait_until, Netns, TransferSpec,
};

const ECHO_PORT: u16 = 9000;
const FLOW_BASE: u16 = 41000;
const FLOWS: u16 = 48;
const TCP_PORTS: [u16; 2] = [7000, 7001];

/// A UDP echo server on the remote host until dropped.
struct Echo {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<u64, String>>>,
}

impl Echo {
    fn start(ns: &Netns, addr: SocketAddr) -> Echo {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = spawn_in(ns, move || {
            let sock = UdpSocket::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
            sock.set_read_timeout(Some(Duration::from_millis(100)))
                .map_err(|e| e.to_string())?;
            let _ = ready_tx.send(());
            let mut buf = [0u8; 2048];
            let mut answered = 0;
            while !flag.load(Ordering::Relaxed) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    if sock.send_to(&buf[..n], from).is_ok() {
                        answered += 1;
                    }
                }
            }
            Ok(answered)
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the echo server did not start");
        Echo {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs the traced UDP flows from the inside host: each flow sends `rounds` datagrams from its
/// own source port and waits for each echo (three tries of 1 s). Returns the flows that never
/// got an answer.
fn run_flows(host: &Netns, rounds: u32) -> Vec<u16> {
    let to = SocketAddr::new(IpAddr::V4(REMOTE_HOST), ECHO_PORT);
    spawn_in(host, move || {
        let mut unanswered = Vec::new();
        for i in 0..FLOWS {
            let port = FLOW_BASE + i;
            let sock = UdpSocket::bind(SocketAddr::new(IpAddr::V4(HOST), port))
                .map_err(|e| format!("bind {port}: {e}"))?;
            sock.set_read_timeout(Some(Duration::from_secs(1)))
                .map_err(|e| e.to_string())?;
            let mut ok = 0;
            for round in 0..rounds {
                let msg = format!("flow {port} round {round}");
                let mut buf = [0u8; 256];
                for _try in 0..3 {
                    sock.send_to(msg.as_bytes(), to)
                        .map_err(|e| format!("send {port}: {e}"))?;
                    if let Ok((n, _)) = sock.recv_from(&mut buf) {
                        if &buf[..n] == msg.as_bytes() {
                            ok += 1;
                            break;
                        }
                    }
                }
            }
            if ok < rounds {
                unanswered.push(port);
            }
        }
        Ok(unanswered)
    })
    .join()
    .expect("flow thread")
    .unwrap_or_else(|e| panic!("{e}"))
}

fn setup(test: &str) -> bool {
    if skip_unless_root(test) {
        return false;
    }
    require_tools(&["ip", "ping", "nft", "tc", BIRD, BIRDC]);
    true
}

/// Three members forwarding in clear, BIRD everywhere: one multipath route per side, every
/// member carries flows both ways, the directions of a flow take different members.
#[test]
fn ls_tools_ecmp_spreads_flows_over_members_with_asymmetric_return_paths() {
    let test = "ls_tools_ecmp_spreads_flows_over_members_with_asymmetric_return_paths";
    if !setup(test) {
        return;
    }
    let topo = LsTopology::new("ls-tools-ecmp", 3, 1);
    topo.plain_forwarding(true);
    let started = Instant::now();
    let _birds: Vec<_> = topo
        .ids()
        .into_iter()
        .map(|id| topo.start_member_bird(id, None))
        .collect();
    let adj = topo.wait_adjacencies(&[1, 2, 3], Duration::from_secs(30));
    let routes = topo.wait_routes_via(&[1, 2, 3], Duration::from_secs(30));
    eprintln!(
        "BIRD: adjacencies after {adj:?}, ECMP routes via 3 members {routes:?} after the start ({:?} total)",
        started.elapsed()
    );
    // The local domain is announced upstream; the inside router gets only the remote domain.
    assert_eq!(topo.outside_members(LOCAL_DOMAIN), vec![1, 2, 3]);
    assert!(
        LsTopology::next_hops(&topo.rin, LOCAL_DOMAIN).is_empty(),
        "{}",
        topo.rin.ip("route show")
    );
    assert!(
        LsTopology::next_hops(&topo.rout, REMOTE_DOMAIN) == vec![Ipv4Addr::new(203, 0, 113, 2)],
        "{}",
        topo.rout.ip("route show")
    );
    // The VIP answers from outside (every member has it).
    ping(&topo.peer, &WAN_VIP.to_string(), 2).unwrap();
    ping(&topo.host, &REMOTE_HOST.to_string(), 2).unwrap();

    let trace = FlowTrace {
        base_port: FLOW_BASE,
        flows: FLOWS,
    };
    trace.install(&topo).unwrap_or_else(|e| panic!("{e}"));
    let _echo = Echo::start(
        &topo.remote_host,
        SocketAddr::new(IpAddr::V4(REMOTE_HOST), ECHO_PORT),
    );
    let unanswered = run_flows(&topo.host, 3);
    assert!(
        unanswered.is_empty(),
        "flows without an answer: {unanswered:?}"
    );
    let paths = trace.paths(&topo).unwrap_or_else(|e| panic!("{e}"));
    let asymmetric: Vec<&FlowPath> = paths.iter().filter(|p| p.asymmetric()).collect();
    for id in topo.ids() {
        let fwd = paths.iter().filter(|p| p.forward == [id]).count();
        let rev = paths.iter().filter(|p| p.reverse == [id]).count();
        eprintln!("member {id}: {fwd} flows out, {rev} flows back");
        assert!(
            fwd > 0 && rev > 0,
            "member {id} idle in a direction: {paths:?}"
        );
    }
    eprintln!(
        "{} of {FLOWS} flows asymmetric (one member out, another back)",
        asymmetric.len()
    );
    // Every flow sticks to one member per direction (per-flow hashing, no per-packet spraying).
    assert!(
        paths
            .iter()
            .all(|p| p.forward.len() == 1 && p.reverse.len() == 1),
        "{paths:?}"
    );
    assert!(
        asymmetric.len() >= usize::from(FLOWS) / 4,
        "too few asymmetric flows: {paths:?}"
    );

    // TCP: connections spread too, SYNs and SYN-ACKs through every member.
    let dir = topo.dir.path().to_path_buf();
    let _server = LoadServer::start(
        &topo.remote_host,
        &dir,
        "load-server",
        IpAddr::V4(REMOTE_HOST),
        &TCP_PORTS,
    );
    let spec = LoadSpec::new(
        300,
        TCP_PORTS
            .iter()
            .map(|&p| SocketAddr::new(IpAddr::V4(REMOTE_HOST), p))
            .collect(),
        HOST_SOURCES.iter().map(|&a| IpAddr::V4(a)).collect(),
    );
    let mut client = LoadClient::start(&topo.host, &dir, "load-client", &spec);
    let phase1 = client.wait_phase1(Duration::from_secs(60)).unwrap();
    assert_eq!(phase1.phase1_ok, 300, "{phase1:#?}");
    client.release();
    let report = client.finish(Duration::from_secs(60)).unwrap();
    assert!(report.all_ok(), "{report:#?}");
    let counters = trace.read(&topo).unwrap_or_else(|e| panic!("{e}"));
    let (mut syns, mut synacks) = (0, 0);
    for (id, c) in &counters {
        let (s, a) = (c["syn"], c["synack"]);
        eprintln!("member {id}: {s} SYNs out, {a} SYN-ACKs back");
        assert!(s > 0 && a > 0, "member {id}: {c:?}");
        syns += s;
        synacks += a;
    }
    assert!(syns >= 300 && synacks >= 300, "{counters:?}");
}

/// A member's routes leave both routers when its (stand-in) device goes away, within BIRD's
/// kernel and device scans and OSPF's flooding (the announce table's routes and the static
/// device route to the remote domain); a box that dies (BIRD killed, links down) leaves them by the
/// dead interval. Traffic goes on through the remaining members.
#[test]
fn ls_tools_member_routes_vanish_when_its_device_or_box_goes() {
    let test = "ls_tools_member_routes_vanish_when_its_device_or_box_goes";
    if !setup(test) {
        return;
    }
    let topo = LsTopology::new("ls-tools-gone", 3, 1);
    // The remote domain by BIRD's static device route via the stand-in (as with Rampart).
    topo.plain_forwarding(false);
    let mut birds: Vec<_> = topo
        .ids()
        .into_iter()
        .map(|id| topo.start_member_bird(id, Some("rp0")))
        .collect();
    topo.wait_adjacencies(&[1, 2, 3], Duration::from_secs(30));
    topo.wait_routes_via(&[1, 2, 3], Duration::from_secs(30));
    let _echo = Echo::start(
        &topo.remote_host,
        SocketAddr::new(IpAddr::V4(REMOTE_HOST), ECHO_PORT),
    );

    // Member 2's device goes (what a killed Rampart does to its TUN device).
    topo.remove_stand_in(2);
    let took = topo.wait_routes_via(&[1, 3], Duration::from_secs(15));
    eprintln!("member 2's device removed: routers route via 1 and 3 after {took:?}");
    let unanswered = run_flows(&topo.host, 1);
    assert!(unanswered.is_empty(), "{unanswered:?}");

    // Member 3's box dies: BIRD killed, links down; nobody withdraws anything.
    let died = Instant::now();
    birds[2].kill9();
    topo.links_down(3);
    let took = topo.wait_routes_via(&[1], Duration::from_secs(20));
    eprintln!("member 3's box died: routers route via member 1 only after {took:?}");
    assert!(
        took >= Duration::from_millis(1500),
        "withdrawn before the dead interval: {took:?}"
    );
    let unanswered = run_flows(&topo.host, 1);
    assert!(unanswered.is_empty(), "{unanswered:?}");
    eprintln!(
        "flows answered via member 1 alone, {:?} after the death",
        died.elapsed()
    );
    wait_until(
        Duration::from_secs(5),
        "member 2 and 3 gone from OSPF",
        || topo.rin_bird().full_neighbors() == 2,
    );
}

/// The sync network's delay hub (what the WAN case uses where the kernel has no netem): 50 ms
/// each way and 5 % loss between members; pings take the round trip and some are lost, a TCP
/// transfer between two members arrives intact (the hub recomputes checksums, no GSO frames).
#[test]
fn ls_tools_sync_delay_hub_delays_and_drops() {
    let test = "ls_tools_sync_delay_hub_delays_and_drops";
    if !setup(test) {
        return;
    }
    let topo = LsTopology::new("ls-tools-hub", 3, 1);
    let m2 = member_sync(2, 0).to_string();
    ping(topo.member(1), &m2, 2).unwrap();
    let hub = topo
        .sync_delay_hub(0, Duration::from_millis(50), 0.05)
        .unwrap_or_else(|e| panic!("{e}"));
    let out = topo
        .member(1)
        .try_exec(&[
            "ping", "-n", "-q", "-c", "100", "-i", "0.02", "-W", "1", &m2,
        ])
        .unwrap_or_else(|e| match e {
            rampart_netns_tests::CommandError::Failed { stdout, .. } => stdout,
            other => panic!("{other}"),
        });
    eprintln!("{out}");
    let rtt_min: f64 = out
        .split("= ")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rtt in {out}"));
    assert!(
        (100.0..180.0).contains(&rtt_min),
        "round trip {rtt_min} ms, want about 100"
    );
    let received: u32 = out
        .split(", ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no count in {out}"));
    // Each echo crosses the hub twice: about 10 % lost.
    assert!(
        (70..100).contains(&received),
        "{received} of 100 echoes back"
    );
    let spec = TransferSpec::megabytes(2);
    let report = tcp_transfer(
        topo.member(1),
        topo.member(3),
        member_sync(3, 0).into(),
        &spec,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.intact(), "{report:?}");
    let stats = hub.finish().unwrap_or_else(|e| panic!("{e}"));
    eprintln!("hub: {stats:?}; transfer {:.1} Mbit/s", report.mbps());
    assert!(stats.dropped > 0 && stats.send_errors == 0, "{stats:?}");
}
