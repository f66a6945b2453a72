//! strongSwan <-> strongSwan through the site-to-site topology: proves the harness and the
//! strongSwan side (kernel-libipsec, PSK, ESP-in-UDP) before rampart is measured against them.

use std::net::IpAddr;
use std::time::Duration;

use rampart_netns_tests::strongswan::{Charon, CharonConfig, CHARON};
use rampart_netns_tests::topology::{self, DOMAIN1, DOMAIN2, GW1_WAN, GW2_WAN, H1, H2, PSK};
use rampart_netns_tests::{
    check_only_ike_esp, ping, require_tools, skip_unless_root, tcp_transfer, wait_until,
    RunningTransfer, SiteToSite, TransferSpec,
};

const TOOLS: &[&str] = &["ip", "ping", "tcpdump", "swanctl", "unshare", CHARON];

fn start_pair(topo: &SiteToSite, tweak: impl Fn(&mut CharonConfig)) -> (Charon, Charon) {
    let mut c1 = CharonConfig::site_to_site(
        &GW1_WAN.to_string(),
        &GW2_WAN.to_string(),
        DOMAIN1,
        DOMAIN2,
        PSK,
    );
    let mut c2 = CharonConfig::site_to_site(
        &GW2_WAN.to_string(),
        &GW1_WAN.to_string(),
        DOMAIN2,
        DOMAIN1,
        PSK,
    );
    tweak(&mut c1);
    tweak(&mut c2);
    let gw1 = Charon::start(&topo.gw1, &topo.daemon_dir("gw1"), c1);
    let gw2 = Charon::start(&topo.gw2, &topo.daemon_dir("gw2"), c2);
    (gw1, gw2)
}

#[test]
fn strongswan_site_to_site_carries_traffic_only_inside_esp() {
    if skip_unless_root("strongswan_site_to_site_carries_traffic_only_inside_esp") {
        return;
    }
    require_tools(TOOLS);
    let topo = SiteToSite::new("sw-s2s");
    let capture = topo.capture_transit("transit");
    let (gw1, gw2) = start_pair(&topo, |_| {});

    // No tunnel yet: the domains cannot reach each other (and nothing leaks in clear).
    assert!(ping(&topo.h1, &H2.to_string(), 1).is_err());

    gw1.initiate().unwrap_or_else(|e| panic!("initiate: {e}"));
    let c1 = gw1.wait_child(Duration::from_secs(10));
    let c2 = gw2.wait_child(Duration::from_secs(10));
    assert!(
        c1.encap && c2.encap,
        "kernel-libipsec tunnels are UDP-encapsulated"
    );
    assert_eq!(
        (c1.spi_in.as_str(), c1.spi_out.as_str()),
        (c2.spi_out.as_str(), c2.spi_in.as_str())
    );

    ping(&topo.h1, &H2.to_string(), 5).unwrap();
    ping(&topo.h2, &H1.to_string(), 5).unwrap();

    let report = tcp_transfer(
        &topo.h1,
        &topo.h2,
        IpAddr::V4(H2),
        &TransferSpec::megabytes(20),
    )
    .unwrap_or_else(|e| panic!("transfer h1 -> h2: {e}"));
    assert!(report.intact(), "{report:?}");
    eprintln!(
        "20 MB h1 -> h2 through strongSwan: {:.0} Mbit/s",
        report.mbps()
    );

    let c1_after = gw1.child_sa().expect("child still installed");
    assert!(c1_after.bytes_out >= 20 * 1024 * 1024, "{c1_after:?}");

    let pcap = capture.stop();
    let summary =
        check_only_ike_esp(&pcap, SiteToSite::gateways(), 4500).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        summary.ike >= 4,
        "IKE_SA_INIT and IKE_AUTH both ways: {summary:?}"
    );
    assert!(summary.esp_in_udp > 10_000, "{summary:?}");
    assert_eq!(summary.esp, 0, "libipsec never sends raw ESP: {summary:?}");
    drop((gw1, gw2));
}

#[test]
fn strongswan_rekeys_during_a_transfer_without_losing_bytes() {
    if skip_unless_root("strongswan_rekeys_during_a_transfer_without_losing_bytes") {
        return;
    }
    require_tools(TOOLS);
    let topo = SiteToSite::new("sw-rekey");
    let (gw1, gw2) = start_pair(&topo, |_| {});
    gw1.initiate().unwrap_or_else(|e| panic!("initiate: {e}"));
    let before = gw1.wait_child(Duration::from_secs(10));
    let ike_before = gw1.ike_sa().expect("IKE SA up");

    let mut spec = TransferSpec::megabytes(12);
    spec.rate = Some(3 * 1024 * 1024);
    let transfer = RunningTransfer::start(&topo.h1, &topo.h2, IpAddr::V4(H2), &spec).unwrap();
    wait_until(
        Duration::from_secs(10),
        "the transfer to be flowing",
        || transfer.received() > 1024 * 1024,
    );

    // CHILD SA rekey from the initiator, IKE SA rekey from the responder.
    gw1.rekey_child().unwrap_or_else(|e| panic!("{e}"));
    wait_until(Duration::from_secs(10), "new CHILD SA SPIs", || {
        gw1.child_sa().is_some_and(|c| c.spi_in != before.spi_in)
    });
    gw2.rekey_ike().unwrap_or_else(|e| panic!("{e}"));
    wait_until(Duration::from_secs(10), "new IKE SA SPIs", || {
        gw1.ike_sa().is_some_and(|sa| sa.spi_i != ike_before.spi_i)
    });
    let report = transfer
        .finish()
        .unwrap_or_else(|e| panic!("transfer: {e}"));
    assert!(report.intact(), "{report:?}");
    ping(&topo.h2, &H1.to_string(), 3).unwrap();
    drop((gw1, gw2));
}

/// The topology module's constants are what the tests above rely on.
#[test]
fn topology_addresses_are_test_only() {
    assert!(topology::GW1_WAN.is_documentation() && topology::GW2_WAN.is_documentation());
    assert!(topology::H1.is_private() && topology::H2.is_private());
}
