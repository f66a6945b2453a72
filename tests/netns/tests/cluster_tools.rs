//! Self-test of the cluster test tools without a cluster: the cluster topology, the connection
//! load generator, the UDP probe stream, and the member helpers (kill -9, restart, netem on the
//! sync link). A "failover" here is the test-only shortcut of plain Linux forwarding: member 1
//! forwards in clear with both VIPs, stops, and 300 ms later member 2 takes the VIPs over. What it
//! proves is that the tools see a clean failover as clean (every connection, every byte) and
//! measure its gap, so that in `rampart_cluster.rs` a failure is the cluster's, not the tools'.
//!
//! Cheap on purpose (a few seconds): 1,000 connections, a 12 MB transfer, a 2-3 s probe stream;
//! `RAMPART_HEAVY=1` runs 10,000 connections.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use rampart_netns_tests::cluster_topology::{
    member_sync, ClusterTopology, Restartable, LAN_HOST_SOURCES, REMOTE_HOST,
};
use rampart_netns_tests::conn_load::{LoadClient, LoadServer, LoadSpec};
use rampart_netns_tests::probe::ProbeStream;
use rampart_netns_tests::{
    heavy, ping, require_tools, skip_unless_root, wait_until, RunningTransfer, TransferSpec,
};

const SERVER_PORTS: [u16; 4] = [7000, 7001, 7002, 7003];
const PROBE_PORT: u16 = 5400;
/// How long neither member forwards in the simulated failover.
const OUTAGE: Duration = Duration::from_millis(300);

fn load_spec(count: u32) -> LoadSpec {
    LoadSpec::new(
        count,
        SERVER_PORTS
            .iter()
            .map(|&p| SocketAddr::new(IpAddr::V4(REMOTE_HOST), p))
            .collect(),
        LAN_HOST_SOURCES.iter().map(|&a| IpAddr::V4(a)).collect(),
    )
}

#[test]
fn cluster_tools_see_a_plain_forwarding_failover_through() {
    if skip_unless_root("cluster_tools_see_a_plain_forwarding_failover_through") {
        return;
    }
    require_tools(&["ip", "ping"]);
    let topo = ClusterTopology::new("cl-tools", 2);
    topo.plain_forwarding(1);
    ping(&topo.lan_host, &REMOTE_HOST.to_string(), 1).unwrap();
    let dir = topo.dir.path();

    let _server = LoadServer::start(
        &topo.remote_host,
        dir,
        "load-server",
        IpAddr::V4(REMOTE_HOST),
        &SERVER_PORTS,
    );
    let count = if heavy() { 10_000 } else { 1000 };
    let mut client = LoadClient::start(&topo.lan_host, dir, "load-client", &load_spec(count));
    let phase1 = client.wait_phase1(Duration::from_secs(60)).unwrap();
    assert_eq!(phase1.phase1_ok, count, "{phase1:?}");

    let probe = ProbeStream::start(
        &topo.lan_host,
        &topo.remote_host,
        SocketAddr::new(IpAddr::V4(REMOTE_HOST), PROBE_PORT),
        Duration::from_millis(1),
        dir,
        "probe",
    );
    let mut bulk = TransferSpec::megabytes(12);
    bulk.rate = Some(8 * 1024 * 1024);
    bulk.timeout = Duration::from_secs(30);
    let transfer =
        RunningTransfer::start(&topo.lan_host, &topo.remote_host, REMOTE_HOST.into(), &bulk)
            .unwrap();
    wait_until(Duration::from_secs(10), "the bulk transfer flowing", || {
        transfer.received() > 2 * 1024 * 1024
    });

    // The "failover": member 1 stops forwarding, member 2 takes the VIPs over after OUTAGE.
    topo.blackhole(1);
    std::thread::sleep(OUTAGE);
    topo.plain_forwarding(2);
    client.release();

    let report = client.finish(Duration::from_secs(60)).unwrap();
    assert!(report.all_ok(), "{report:#?}");
    let bulk_report = transfer.finish().unwrap();
    assert!(bulk_report.intact(), "{bulk_report:?}");
    assert!(
        bulk_report.received > 0 && bulk_report.received == bulk.bytes,
        "{bulk_report:?}"
    );
    let (sent, probed) = probe.finish().unwrap();
    eprintln!(
        "conn-load: {} connections, phase 1 {} ms, phase 2 {} ms; probe: {sent:?} {probed:?}",
        report.count, report.phase1_ms, report.phase2_ms
    );
    // The measured gap is the outage (plus scheduling noise), and the sender kept its schedule.
    // Lower bound with room for a datagram still in flight at the blackhole; the sender's
    // lateness bound is generous for the shared 2-core machines.
    assert!(
        probed.max_gap() >= OUTAGE * 9 / 10 && probed.max_gap() < OUTAGE + Duration::from_secs(2),
        "{probed:?}"
    );
    assert!(probed.longest_missing_run >= 250, "{probed:?}");
    assert!(sent.max_late_us < 250_000, "{sent:?}");
    assert!(
        probed.received + probed.longest_missing_run <= sent.sent && probed.received > 500,
        "{sent:?} {probed:?}"
    );
}

/// RTT of `count` pings in milliseconds (the average), from `ping -q`'s summary.
fn ping_rtt_ms(topo: &ClusterTopology, from: u8, to: u8) -> f64 {
    let to = member_sync(to).to_string();
    let out = topo
        .run_in(
            topo.member(from),
            &["ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "2", &to],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let summary = out
        .lines()
        .find(|l| l.contains("min/avg/max"))
        .unwrap_or_else(|| panic!("no rtt summary in {out}"));
    let values = summary.split('=').nth(1).unwrap_or_default().trim();
    values
        .split('/')
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no average in {summary}"))
}

#[test]
fn cluster_topology_member_helpers_and_sync_link_netem() {
    if skip_unless_root("cluster_topology_member_helpers_and_sync_link_netem") {
        return;
    }
    require_tools(&["ip", "ping", "tc", "sleep"]);
    let topo = ClusterTopology::new("cl-helpers", 2);

    // The sync link, then with 20 ms each way, then clean again; cut and restored.
    assert!(ping_rtt_ms(&topo, 1, 2) < 20.0);
    if topo.netem_available() {
        topo.sync_netem("delay 20ms");
        let slow = ping_rtt_ms(&topo, 1, 2);
        assert!(slow >= 39.0, "rtt with netem: {slow} ms");
        topo.clear_sync_netem();
        assert!(ping_rtt_ms(&topo, 2, 1) < 20.0);
    } else {
        eprintln!("note: this kernel has no netem (sch_netem): sync link netem not checked");
        assert!(topo.try_sync_netem("delay 20ms").is_err());
    }
    topo.set_sync_link(false);
    assert!(ping(topo.member(1), &member_sync(2).to_string(), 1).is_err());
    topo.set_sync_link(true);
    wait_until(Duration::from_secs(5), "the sync link back", || {
        ping(topo.member(1), &member_sync(2).to_string(), 1).is_ok()
    });

    // No VIP until someone claims it: the LAN host cannot reach the remote site.
    assert!(ping(&topo.lan_host, &REMOTE_HOST.to_string(), 1).is_err());

    // kill -9 and restart of a member's process.
    let m1 = topo.member(1);
    let mut daemon = Restartable::spawn(m1, topo.dir.path(), "daemon", &["sleep", "600"], &[]);
    let first = daemon.process().pid();
    wait_until(Duration::from_secs(5), "the daemon in m1", || {
        m1.pids().contains(&first)
    });
    let status = daemon.kill9().expect("reaped");
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    daemon.restart(m1);
    let second = daemon.process().pid();
    assert_ne!(first, second);
    assert!(daemon.process().is_running());
    assert_eq!(daemon.restarts(), 1);
    assert!(daemon.process().log_path().ends_with("daemon-restart1.log"));
    wait_until(Duration::from_secs(5), "the restarted daemon in m1", || {
        m1.pids() == vec![second]
    });
}
