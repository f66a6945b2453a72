//! NAT traversal through a real hide-NAT (nftables masquerade) and the configurable NAT-T port.
//!
//! - gw1 sits behind the NAT with `encapsulation = "auto"`: both ends detect the NAT, IKE floats
//!   to the NAT-T port, ESP goes in UDP, gw1 sends RFC 3948 keepalives, and when the NAT forgets
//!   its mapping (conntrack flush, new port range) gw2 follows gw1 to the new port.
//! - Both gateways on NAT-T port 2746 with forced encapsulation (and ESN): the transit link shows
//!   UDP 2746.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rampart_netns_tests::nat_topology::{udp_datagrams, NatSiteToSite, GW1_PRIVATE, NAT_PUBLIC};
use rampart_netns_tests::rampart::Gateway;
use rampart_netns_tests::topology::{GW2_WAN, H1, H2};
use rampart_netns_tests::{
    check_only_ike_esp, ping, require_tools, skip_unless_root, tcp_transfer, try_wait_until,
    wait_until, SiteToSite, TransferSpec,
};
use serde_json::Value;

const TUNNEL_UP: Duration = Duration::from_secs(20);

fn setup(test: &str, tools: &[&str]) -> bool {
    if skip_unless_root(test) {
        return false;
    }
    require_tools(&["ip", "ping", "tcpdump"]);
    require_tools(tools);
    true
}

fn ike_sa(status: &Value) -> &Value {
    &status["peers"][0]["ike_sa"]
}

/// Datagrams from the NAT's public address to gw2's `port`.
fn from_nat_to(pcap: &std::path::Path, port: u16) -> Vec<(SocketAddr, usize, Option<u8>)> {
    udp_datagrams(pcap)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter(|d| {
            d.src.ip() == IpAddr::V4(NAT_PUBLIC) && d.dst == SocketAddr::new(GW2_WAN.into(), port)
        })
        .map(|d| (d.src, d.payload_len, d.first_byte))
        .collect()
}

#[test]
fn rampart_behind_hide_nat_floats_keeps_alive_and_follows_a_new_mapping() {
    if !setup("rampart NAT test", &["nft", "conntrack"]) {
        return;
    }
    let topo = NatSiteToSite::new("rp-nat", "20000-20999");
    let public = topo.capture_public("public");
    let private =
        rampart_netns_tests::Capture::start(&topo.gw1, "wan0", topo.dir.path(), "private");

    let (mut c1, c2) = topo.rampart_pair();
    c1.nat_keepalive = Some("1s".into());
    let mut g2 = Gateway::start(&topo.gw2, &topo.daemon_dir("gw2"), "gw2", &c2);
    let mut g1 = Gateway::start(&topo.gw1, &topo.daemon_dir("gw1"), "gw1", &c1);
    g1.wait_tunnel(TUNNEL_UP);
    g2.wait_tunnel(TUNNEL_UP);

    // NAT detection: gw1 knows it is behind a NAT, gw2 knows its peer is.
    let s1 = g1.status().unwrap();
    let s2 = g2.status().unwrap();
    assert_eq!(ike_sa(&s1)["nat_local"], true, "{s1}");
    assert_eq!(ike_sa(&s1)["nat_remote"], false, "{s1}");
    assert_eq!(ike_sa(&s2)["nat_local"], false, "{s2}");
    assert_eq!(ike_sa(&s2)["nat_remote"], true, "{s2}");
    for s in [&s1, &s2] {
        assert_eq!(
            s["peers"][0]["tunnels"][0]["encapsulation"], "esp-in-udp",
            "{s}"
        );
    }

    ping(&topo.h1, &H2.to_string(), 3).unwrap();
    ping(&topo.h2, &H1.to_string(), 3).unwrap();
    let there = tcp_transfer(
        &topo.h1,
        &topo.h2,
        IpAddr::V4(H2),
        &TransferSpec::megabytes(5),
    )
    .unwrap_or_else(|e| panic!("h1 -> h2: {e}"));
    assert!(there.intact(), "{there:?}");

    // Keepalives (one 0xFF byte) from the NATed side to gw2's NAT-T port, every second here.
    let public_path = public.path().to_path_buf();
    wait_until(
        Duration::from_secs(10),
        "two NAT keepalives from gw1",
        || {
            from_nat_to(&public_path, 4500)
                .iter()
                .filter(|(_, len, first)| *len == 1 && *first == Some(0xff))
                .count()
                >= 2
        },
    );

    // The NAT forgets its mapping and picks ports from another range: gw2 must follow gw1.
    topo.masquerade("30000-30999");
    topo.flush_conntrack();
    // gw1 -> gw2 traffic creates the new mapping; the replies must reach gw1 through it. IKE
    // liveness (30 s) is too slow to be what repairs the tunnel within this window.
    let followed = try_wait_until(
        Duration::from_secs(10),
        "h1 -> h2 through the new mapping",
        || ping(&topo.h1, &H2.to_string(), 1).is_ok(),
    );
    if let Err(e) = followed {
        panic!(
            "{e}\ngw2 status: {:?}\ncounters gw1: {:?}",
            g2.status(),
            g1.status().map(|s| s["counters"].clone())
        );
    }
    ping(&topo.h2, &H1.to_string(), 3).unwrap();
    let back = tcp_transfer(
        &topo.h2,
        &topo.h1,
        IpAddr::V4(H1),
        &TransferSpec::megabytes(5),
    )
    .unwrap_or_else(|e| panic!("h2 -> h1 after the mapping change: {e}"));
    assert!(back.intact(), "{back:?}");

    let public_pcap = public.stop();
    let private_pcap = private.stop();
    // IKE started on 500 and floated to 4500; nothing but IKE/ESP-in-UDP on the public link.
    let summary = check_only_ike_esp(&public_pcap, NatSiteToSite::public_gateways(), 4500)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary.esp, 0, "no raw ESP through the NAT: {summary:?}");
    // Frames, not packets: a UDP GSO send crosses veth links as one frame of up to 64
    // datagrams, so 10 MB of traffic is hundreds of ESP-in-UDP frames, not thousands.
    assert!(summary.esp_in_udp > 100, "{summary:?}");
    assert!(summary.nat_keepalive >= 2, "{summary:?}");
    assert!(
        !from_nat_to(&public_pcap, 500).is_empty(),
        "IKE_SA_INIT on port 500"
    );
    let nat_t = from_nat_to(&public_pcap, 4500);
    let ports: std::collections::BTreeSet<u16> = nat_t.iter().map(|(s, _, _)| s.port()).collect();
    assert!(
        ports.iter().any(|p| (20000..21000).contains(p)),
        "the first mapping came from the first range: {ports:?}"
    );
    let new_port = ports
        .iter()
        .copied()
        .find(|p| (30000..31000).contains(p))
        .unwrap_or_else(|| panic!("a mapping from the new range: {ports:?}"));
    // gw2 sent ESP-in-UDP to the new mapping.
    let to_new = udp_datagrams(&public_pcap)
        .unwrap()
        .into_iter()
        .filter(|d| d.dst == SocketAddr::new(NAT_PUBLIC.into(), new_port) && d.payload_len > 8)
        .count();
    assert!(to_new > 100, "gw2 -> new mapping: {to_new} datagrams");
    // On the private side gw1 used only its own ports 500 and 4500.
    let private_summary = check_only_ike_esp(
        &private_pcap,
        (IpAddr::V4(GW1_PRIVATE), IpAddr::V4(GW2_WAN)),
        4500,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(private_summary.esp, 0, "{private_summary:?}");
}

#[test]
fn rampart_nat_t_port_2746_forced_encapsulation() {
    if !setup("rampart NAT-T port test", &[]) {
        return;
    }
    let topo = SiteToSite::new("rp-2746");
    let capture = topo.capture_transit("transit");
    let (mut c1, mut c2) = topo.rampart_pair();
    for c in [&mut c1, &mut c2] {
        c.nat_t_port = 2746;
        c.peers[0].encapsulation = "force".into();
        // ESN between two rampart gateways (strongSwan's libipsec cannot do ESN).
        c.peers[0].esn = true;
    }
    let mut g2 = Gateway::start(&topo.gw2, &topo.daemon_dir("gw2"), "gw2", &c2);
    let mut g1 = Gateway::start(&topo.gw1, &topo.daemon_dir("gw1"), "gw1", &c1);
    g1.wait_tunnel(TUNNEL_UP);
    g2.wait_tunnel(TUNNEL_UP);
    ping(&topo.h1, &H2.to_string(), 3).unwrap();
    ping(&topo.h2, &H1.to_string(), 3).unwrap();
    let report = tcp_transfer(
        &topo.h1,
        &topo.h2,
        IpAddr::V4(H2),
        &TransferSpec::megabytes(5),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.intact(), "{report:?}");
    let s1 = g1.status().unwrap();
    assert_eq!(
        s1["peers"][0]["tunnels"][0]["encapsulation"], "esp-in-udp",
        "{s1}"
    );
    assert_eq!(
        s1["peers"][0]["tunnels"][0]["algorithms"], "aes256gcm16-esn",
        "{s1}"
    );

    let pcap = capture.stop();
    let summary =
        check_only_ike_esp(&pcap, SiteToSite::gateways(), 2746).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary.esp, 0, "{summary:?}");
    // Frames, not packets (UDP GSO): see above.
    assert!(summary.esp_in_udp > 100, "{summary:?}");
    let datagrams = udp_datagrams(&pcap).unwrap();
    let on_2746 = datagrams
        .iter()
        .filter(|d| d.src.port() == 2746 && d.dst.port() == 2746)
        .count();
    assert!(
        on_2746 > 100,
        "ESP-in-UDP frames between ports 2746: {on_2746}"
    );
    assert!(
        datagrams
            .iter()
            .all(|d| d.src.port() != 4500 && d.dst.port() != 4500),
        "nothing on 4500"
    );
    // IKE floated from 500 to 2746 (forced encapsulation counts as NAT).
    assert!(datagrams.iter().any(|d| d.dst.port() == 500));
    assert!(datagrams
        .iter()
        .any(|d| d.dst.port() == 2746 && d.first_byte == Some(0) && d.payload_len > 100));
}
