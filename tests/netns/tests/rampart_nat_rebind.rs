//! NAT rebinding with traffic started on the PUBLIC side: gw1 sits behind a real nftables
//! masquerade NAT (NAT-T port 2746, keepalives every 2 s, liveness checks every 30 s). When the
//! NAT forgets its mapping and hands out ports from another range, gw2 hears gw1's next
//! keepalive from a new port, checks gw1 there with an authenticated INFORMATIONAL, and moves
//! the tunnel when the answer comes back: h2 -> h1 traffic flows again within two keepalive
//! intervals. A spoofed keepalive (from the NAT's address, another port) costs one check and
//! moves nothing.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use rampart_netns_tests::nat_topology::{NatSiteToSite, NAT_PUBLIC};
use rampart_netns_tests::rampart::Gateway;
use rampart_netns_tests::topology::{GW2_WAN, H1, H2};
use rampart_netns_tests::{ping, require_tools, skip_unless_root};
use serde_json::Value;

const TUNNEL_UP: Duration = Duration::from_secs(20);
const NAT_T_PORT: u16 = 2746;
/// Two keepalive intervals.
const RECOVERY_LIMIT: Duration = Duration::from_secs(4);

fn setup(test: &str) -> bool {
    if skip_unless_root(test) {
        return false;
    }
    require_tools(&["ip", "ping", "nft", "conntrack", "socat"]);
    true
}

/// The topology with both gateways up (gw1 behind the NAT) and traffic checked both ways.
fn start(test: &str) -> (NatSiteToSite, Gateway, Gateway) {
    let topo = NatSiteToSite::new(test, "20000-20999");
    let (mut c1, mut c2) = topo.rampart_pair();
    c1.peers[0].liveness_interval = "30s".into();
    c2.peers[0].liveness_interval = "30s".into();
    c1.nat_t_port = NAT_T_PORT;
    c1.nat_keepalive = Some("2s".into());
    c2.nat_t_port = NAT_T_PORT;
    let mut g2 = Gateway::start(&topo.gw2, &topo.daemon_dir("gw2"), "gw2", &c2);
    let mut g1 = Gateway::start(&topo.gw1, &topo.daemon_dir("gw1"), "gw1", &c1);
    g1.wait_tunnel(TUNNEL_UP);
    g2.wait_tunnel(TUNNEL_UP);
    ping(&topo.h1, &H2.to_string(), 3).unwrap();
    ping(&topo.h2, &H1.to_string(), 3).unwrap();
    (topo, g1, g2)
}

fn ike_sa(status: &Value) -> &Value {
    &status["peers"][0]["ike_sa"]
}

/// The port gw2 sends to now (its IKE SA's remote endpoint).
fn remote_port(g2: &Gateway) -> u16 {
    let s = g2.status().unwrap();
    let endpoint = ike_sa(&s)["remote_endpoint"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let addr: std::net::SocketAddr = endpoint
        .parse()
        .unwrap_or_else(|e| panic!("remote_endpoint {endpoint:?}: {e}\n{s}"));
    assert_eq!(addr.ip(), IpAddr::V4(NAT_PUBLIC), "{s}");
    addr.port()
}

fn nat_counter(g: &Gateway, key: &str) -> u64 {
    let s = g.status().unwrap();
    s["nat"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("nat.{key} in {s}"))
}

/// Pings `to` from `from` every 100 ms until the first echo comes back; how long that took.
fn first_echo(from: &rampart_netns_tests::Netns, to: &str, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let deadline = limit.as_secs().max(1).to_string();
    let out = from.try_exec(&[
        "ping", "-n", "-q", "-c", "1", "-i", "0.1", "-w", &deadline, to,
    ]);
    let elapsed = started.elapsed();
    out.ok()
        .filter(|o| o.contains(" 1 received"))
        .map(|_| elapsed)
}

#[test]
fn public_side_traffic_follows_a_new_nat_mapping_within_two_keepalives() {
    if !setup("rampart NAT rebinding test") {
        return;
    }
    let (topo, g1, g2) = start("rp-rebind");
    let old_port = remote_port(&g2);
    assert!(
        (20000..21000).contains(&old_port),
        "first mapping: {old_port}"
    );
    assert_eq!(nat_counter(&g2, "mappings_moved"), 0);

    // The NAT forgets the mapping; new mappings come from another range.
    topo.masquerade("30000-30999");
    let flushed = Instant::now();
    topo.flush_conntrack();
    // Traffic starts on the public side: only gw1's keepalives can reveal the new mapping.
    let echo = first_echo(&topo.h2, &H1.to_string(), Duration::from_secs(10));
    let recovered = flushed.elapsed();
    let Some(_) = echo else {
        panic!(
            "h2 -> h1 did not recover within 10 s\ngw2: {:?}\ngw1: {:?}",
            g2.status(),
            g1.status()
        );
    };
    eprintln!("public-side traffic recovered {recovered:?} after the conntrack flush");
    let new_port = remote_port(&g2);
    assert!(
        (30000..31000).contains(&new_port),
        "gw2 follows the new mapping: {new_port}"
    );
    assert!(
        recovered <= RECOVERY_LIMIT,
        "recovery took {recovered:?} (limit {RECOVERY_LIMIT:?})"
    );
    assert!(nat_counter(&g2, "hints") >= 1);
    assert!(nat_counter(&g2, "checks_sent") >= 1);
    assert_eq!(nat_counter(&g2, "mappings_moved"), 1);
    // The NATed side learnt from the check that its public address changed.
    assert_eq!(nat_counter(&g1, "local_mapping_changes"), 1);
    ping(&topo.h2, &H1.to_string(), 3).unwrap();
    ping(&topo.h1, &H2.to_string(), 3).unwrap();
}

#[test]
fn spoofed_keepalive_from_another_port_does_not_move_the_sa() {
    if !setup("rampart NAT rebinding spoof test") {
        return;
    }
    let (topo, _g1, g2) = start("rp-rebind-spoof");
    let old_port = remote_port(&g2);
    // A keepalive (one 0xFF byte) from the NAT box itself, from another source port.
    let send =
        format!("printf '\\377' | socat -u - UDP4-SENDTO:{GW2_WAN}:{NAT_T_PORT},sourceport=40000");
    for _ in 0..3 {
        topo.nat.exec(&["sh", "-c", &send]);
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(nat_counter(&g2, "hints") >= 1, "{:?}", g2.status());
    // Three hints within the second: one check, the rest rate-limited.
    assert_eq!(nat_counter(&g2, "checks_sent"), 1);
    assert!(nat_counter(&g2, "checks_rate_limited") >= 1);
    assert_eq!(nat_counter(&g2, "mappings_moved"), 0);
    assert_eq!(
        remote_port(&g2),
        old_port,
        "the SA stays at the real mapping"
    );
    ping(&topo.h2, &H1.to_string(), 3).unwrap();
    ping(&topo.h1, &H2.to_string(), 3).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(remote_port(&g2), old_port);
    assert_eq!(nat_counter(&g2, "mappings_moved"), 0);
}
