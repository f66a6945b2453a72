//! IPv6 with rampart on both ends: IPv4 domains over an IPv6 transit (raw ESP and ESP-in-UDP
//! over IPv6), and IPv6 domains over an IPv4 transit.

use std::net::IpAddr;
use std::time::Duration;

use rampart_netns_tests::rampart::{Gateway, GatewayToml, PeerToml};
use rampart_netns_tests::topology::{DOMAIN1, DOMAIN2, GW1_WAN, GW2_WAN, H1, H2, PSK};
use rampart_netns_tests::v6_topology::{
    check_transit, DualStackSiteToSite, DOMAIN1_V6, DOMAIN2_V6, GW1_WAN_V6, GW2_WAN_V6, H1_V6,
    H2_V6,
};
use rampart_netns_tests::{ping, require_tools, skip_unless_root, tcp_transfer, TransferSpec};

const TUNNEL_UP: Duration = Duration::from_secs(20);

struct Plan<'a> {
    outer: (IpAddr, IpAddr),
    domains: (&'a str, &'a str),
    encapsulation: &'a str,
}

fn start(topo: &DualStackSiteToSite, plan: &Plan<'_>) -> (Gateway, Gateway) {
    let (a, b) = (plan.outer.0.to_string(), plan.outer.1.to_string());
    let mut p1 = PeerToml::new("site-b", &a, &b, plan.domains.1, PSK);
    let mut p2 = PeerToml::new("site-a", &b, &a, plan.domains.0, PSK);
    p2.start_action = "none".into();
    p1.encapsulation = plan.encapsulation.into();
    p2.encapsulation = plan.encapsulation.into();
    let c1 = GatewayToml::new("gw-a", &topo.daemon_dir("gw1"), plan.domains.0, p1);
    let c2 = GatewayToml::new("gw-b", &topo.daemon_dir("gw2"), plan.domains.1, p2);
    let mut g2 = Gateway::start(&topo.gw2, &topo.daemon_dir("gw2"), "gw2", &c2);
    let mut g1 = Gateway::start(&topo.gw1, &topo.daemon_dir("gw1"), "gw1", &c1);
    g1.wait_tunnel(TUNNEL_UP);
    g2.wait_tunnel(TUNNEL_UP);
    (g1, g2)
}

fn traffic(topo: &DualStackSiteToSite, h1: IpAddr, h2: IpAddr) {
    ping(&topo.h1, &h2.to_string(), 3).unwrap();
    ping(&topo.h2, &h1.to_string(), 3).unwrap();
    let there = tcp_transfer(&topo.h1, &topo.h2, h2, &TransferSpec::megabytes(5))
        .unwrap_or_else(|e| panic!("h1 -> h2: {e}"));
    assert!(there.intact(), "{there:?}");
    let back = tcp_transfer(&topo.h2, &topo.h1, h1, &TransferSpec::megabytes(5))
        .unwrap_or_else(|e| panic!("h2 -> h1: {e}"));
    assert!(back.intact(), "{back:?}");
}

fn setup(test: &str) -> bool {
    if skip_unless_root(test) {
        return false;
    }
    require_tools(&["ip", "ping", "tcpdump"]);
    true
}

#[test]
fn ipv4_domains_over_ipv6_transit_raw_esp_and_esp_in_udp() {
    if !setup("rampart IPv6 outer") {
        return;
    }
    for (label, encapsulation) in [("rp-v6-outer-esp", "auto"), ("rp-v6-outer-udp", "force")] {
        let topo = DualStackSiteToSite::new(label);
        let capture = topo.capture_transit("transit");
        let plan = Plan {
            outer: (GW1_WAN_V6.into(), GW2_WAN_V6.into()),
            domains: (DOMAIN1, DOMAIN2),
            encapsulation,
        };
        let (g1, _g2) = start(&topo, &plan);
        let started = std::time::Instant::now();
        traffic(&topo, H1.into(), H2.into());
        eprintln!("{label}: traffic took {:?}", started.elapsed());
        let status = g1.status().unwrap();
        let tunnel = &status["peers"][0]["tunnels"][0];
        let want = if encapsulation == "auto" {
            "esp"
        } else {
            "esp-in-udp"
        };
        assert_eq!(tunnel["encapsulation"], want, "{status}");
        // Forced encapsulation is negotiated by claiming a NAT (RFC 7296 2.23), like strongSwan.
        let no_nat = encapsulation == "auto";
        assert_eq!(
            status["peers"][0]["ike_sa"]["nat_local"], !no_nat,
            "{status}"
        );
        let pcap = capture.stop();
        let counts = check_transit(&pcap, DualStackSiteToSite::gateways_v6(), 4500)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(counts.ike >= 4, "{counts:?}");
        // 10 MB went through: the gateway's counters see every ESP packet. The capture sees
        // fewer ESP-in-UDP frames than packets: a UDP GSO send crosses the veth link as one
        // frame of up to 64 datagrams (it is only split where a device needs it).
        assert!(tunnel["packets_out"].as_u64().unwrap() > 1000, "{status}");
        if encapsulation == "auto" {
            assert!(counts.esp > 1000 && counts.esp_in_udp == 0, "{counts:?}");
        } else {
            assert!(counts.esp_in_udp > 100 && counts.esp == 0, "{counts:?}");
        }
    }
}

#[test]
fn ipv6_domains_over_ipv4_transit() {
    if !setup("rampart IPv6 inner") {
        return;
    }
    let topo = DualStackSiteToSite::new("rp-v6-inner");
    let capture = topo.capture_transit("transit");
    let plan = Plan {
        outer: (GW1_WAN.into(), GW2_WAN.into()),
        domains: (DOMAIN1_V6, DOMAIN2_V6),
        encapsulation: "auto",
    };
    let (g1, g2) = start(&topo, &plan);
    for (g, local, remote) in [(&g1, DOMAIN1_V6, DOMAIN2_V6), (&g2, DOMAIN2_V6, DOMAIN1_V6)] {
        let status = g.status().unwrap();
        let tunnel = &status["peers"][0]["tunnels"][0];
        assert_eq!(tunnel["local_ts"][0], local, "{status}");
        assert_eq!(tunnel["remote_ts"][0], remote, "{status}");
    }
    traffic(&topo, H1_V6.into(), H2_V6.into());
    // The IPv4 hosts have no tunnel: their traffic goes nowhere (no cleartext on the transit).
    assert!(ping(&topo.h1, &H2.to_string(), 1).is_err());
    let pcap = capture.stop();
    let counts = check_transit(&pcap, (IpAddr::V4(GW1_WAN), IpAddr::V4(GW2_WAN)), 4500)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(counts.esp > 1000, "{counts:?}");
}
