//! Anti-DoS cookies (RFC 7296 2.6) on a real rampart responder: a flood of IKE_SA_INIT requests
//! from many source ports of one address is answered with cookies once `cookie_threshold`
//! half-open IKE SAs exist, and a real rampart peer at that same address still connects (it
//! returns the cookie).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rampart_netns_tests::ike_flood::{flood, FloodReport};
use rampart_netns_tests::nat_topology::udp_datagrams;
use rampart_netns_tests::rampart::Gateway;
use rampart_netns_tests::topology::{GW1_WAN, GW2_WAN, H1, H2};
use rampart_netns_tests::traffic::spawn_in;
use rampart_netns_tests::{ping, require_tools, skip_unless_root, wait_until, SiteToSite};

/// Half-open SAs before the responder wants cookies.
const THRESHOLD: u32 = 5;
/// Flood sockets (source ports) on gw1's address.
const SOCKETS: u16 = 40;
/// An IKE_SA_INIT response that is only a COOKIE notify: IKE header (28), notify header (8) and
/// rampart's 36-byte cookie.
const COOKIE_REPLY_LEN: usize = 28 + 8 + 36;

#[test]
fn half_open_flood_gets_cookies_and_real_peer_connects() {
    if skip_unless_root("rampart_cookies") {
        return;
    }
    require_tools(&["ip", "ping", "tcpdump"]);
    let topo = SiteToSite::new("rp-cookies");
    let capture = topo.capture_transit("transit");

    let (c1, mut c2) = topo.rampart_pair();
    c2.cookie_threshold = Some(THRESHOLD);
    c2.half_open_per_source = Some(20);
    let mut g2 = Gateway::start(&topo.gw2, &topo.daemon_dir("gw2"), "gw2", &c2);
    wait_until(Duration::from_secs(10), "gw2 to answer status", || {
        assert!(g2.is_running(), "gw2 exited:\n{}", g2.log());
        g2.status().is_ok()
    });

    // The flood: fresh requests from 40 ports of gw1's own address, never continued.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let flooder = spawn_in(&topo.gw1, move || {
        flood(
            IpAddr::V4(GW1_WAN),
            20000,
            SOCKETS,
            SocketAddr::new(IpAddr::V4(GW2_WAN), 500),
            Duration::from_millis(20),
            flag,
        )
    });
    wait_until(
        Duration::from_secs(10),
        "gw2 to answer with cookies",
        || g2.log().contains("answering IKE_SA_INIT with COOKIE"),
    );

    // The real peer connects while the flood goes on.
    let mut g1 = Gateway::start(&topo.gw1, &topo.daemon_dir("gw1"), "gw1", &c1);
    let a = g1.wait_tunnel(Duration::from_secs(30));
    let b = g2.wait_tunnel(Duration::from_secs(10));
    assert_eq!(a.ike, b.ike);
    ping(&topo.h1, &H2.to_string(), 3).unwrap();
    ping(&topo.h2, &H1.to_string(), 3).unwrap();

    stop.store(true, Ordering::Relaxed);
    let report: FloodReport = flooder
        .join()
        .expect("flood thread")
        .unwrap_or_else(|e| panic!("flood: {e}"));
    eprintln!("flood: {report:?}");
    // Only the first THRESHOLD requests created state (they expire after 30 s, longer than this
    // test waits for the tunnel); everything after that got a cookie.
    assert!(
        (1..=u64::from(THRESHOLD)).contains(&report.proceeds),
        "{report:?}"
    );
    assert!(report.cookies >= 10 * u64::from(SOCKETS), "{report:?}");
    assert_eq!(report.others, 0, "{report:?}");
    // The responder's own account (`rampart status`) agrees with what the flooder saw.
    let status = g2.status().unwrap();
    let defence = &status["ike_defence"];
    let sent = defence["cookies_sent"].as_u64().unwrap();
    assert!(sent >= report.cookies, "{defence} vs {report:?}");
    assert!(
        defence["cookies_accepted"].as_u64().unwrap() >= 1,
        "{defence}"
    );
    assert!(defence["half_open"].as_u64().unwrap() >= 1, "{defence}");

    // On the wire, the real peer was asked for a cookie too: gw2's first answer to gw1:500 is a
    // bare COOKIE notify, and gw1 sent IKE_SA_INIT twice.
    let pcap = capture.stop();
    let dgrams = udp_datagrams(&pcap).unwrap_or_else(|e| panic!("{e}"));
    let ike = |a: std::net::Ipv4Addr| SocketAddr::new(IpAddr::V4(a), 500);
    let to_peer: Vec<usize> = dgrams
        .iter()
        .filter(|d| d.src == ike(GW2_WAN) && d.dst == ike(GW1_WAN))
        .map(|d| d.payload_len)
        .collect();
    assert_eq!(to_peer.first(), Some(&COOKIE_REPLY_LEN), "{to_peer:?}");
    let from_peer: Vec<usize> = dgrams
        .iter()
        .filter(|d| d.src == ike(GW1_WAN) && d.dst == ike(GW2_WAN))
        .map(|d| d.payload_len)
        .collect();
    assert!(from_peer.len() >= 2, "{from_peer:?}");
    // The retry carries the cookie notify in addition to everything else.
    assert_eq!(
        from_peer[1],
        from_peer[0] + COOKIE_REPLY_LEN - 28,
        "{from_peer:?}"
    );
}
