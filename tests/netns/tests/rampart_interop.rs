//! rampart <-> strongSwan (charon 5.9.8 with kernel-libipsec): rampart as initiator and as
//! responder, traffic both ways, rekeys started from either side. libipsec only speaks
//! ESP-in-UDP, so rampart forces UDP encapsulation.

use std::net::IpAddr;
use std::time::Duration;

use rampart_netns_tests::rampart::{parse_spi, Gateway, GatewayToml, PeerToml};
use rampart_netns_tests::strongswan::{Charon, CharonConfig, CHARON};
use rampart_netns_tests::topology::{DOMAIN1, DOMAIN2, GW1_WAN, GW2_WAN, H1, H2, PSK};
use rampart_netns_tests::{
    check_only_ike_esp, ping, require_tools, skip_unless_root, tcp_transfer, wait_until, Netns,
    RunningTransfer, SiteToSite, TransferSpec,
};

fn spi32(hex: &str) -> u32 {
    parse_spi(hex)
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or_else(|| panic!("bad SPI {hex:?}"))
}

/// rampart on gw1 and strongSwan on gw2 when `rampart_initiates`, the other way round otherwise.
fn interop(test: &str, rampart_initiates: bool) {
    if skip_unless_root(test) {
        return;
    }
    require_tools(&["ip", "ping", "tcpdump", "swanctl", "unshare", CHARON]);
    let topo = SiteToSite::new(test);
    let capture = topo.capture_transit("transit");

    // Roles: the rampart side and the strongSwan side of the topology.
    let (rp_ns, rp_host, sw_ns, sw_host): (&Netns, &Netns, &Netns, &Netns);
    let (rp_wan, sw_wan, rp_domain, sw_domain, sw_ip);
    if rampart_initiates {
        (rp_ns, rp_host, sw_ns, sw_host) = (&topo.gw1, &topo.h1, &topo.gw2, &topo.h2);
        (rp_wan, sw_wan, rp_domain, sw_domain, sw_ip) = (GW1_WAN, GW2_WAN, DOMAIN1, DOMAIN2, H2);
    } else {
        (rp_ns, rp_host, sw_ns, sw_host) = (&topo.gw2, &topo.h2, &topo.gw1, &topo.h1);
        (rp_wan, sw_wan, rp_domain, sw_domain, sw_ip) = (GW2_WAN, GW1_WAN, DOMAIN2, DOMAIN1, H1);
    }
    let rp_ip = if rampart_initiates { H1 } else { H2 };

    let sw_config = CharonConfig::site_to_site(
        &sw_wan.to_string(),
        &rp_wan.to_string(),
        sw_domain,
        rp_domain,
        PSK,
    );
    let charon = Charon::start(sw_ns, &topo.daemon_dir("strongswan"), sw_config);

    let mut peer = PeerToml::new(
        "strongswan",
        &rp_wan.to_string(),
        &sw_wan.to_string(),
        sw_domain,
        PSK,
    );
    peer.encapsulation = "force".into();
    peer.start_action = if rampart_initiates { "always" } else { "none" }.into();
    // rampart starts CHILD and IKE SA rekeys on its own; strongSwan's are started by hand below.
    peer.child_lifetime = "15s".into();
    peer.ike_lifetime = "20s".into();
    let rp_dir = topo.daemon_dir("rampart");
    let config = GatewayToml::new("rampart", &rp_dir, rp_domain, peer);
    let mut gw = Gateway::start(rp_ns, &rp_dir, "rampart", &config);

    if !rampart_initiates {
        charon
            .initiate()
            .unwrap_or_else(|e| panic!("strongSwan initiate: {e}"));
    }
    let first = gw.wait_tunnel(Duration::from_secs(20));
    let sw_child = charon.wait_child(Duration::from_secs(10));
    assert!(sw_child.encap, "{sw_child:?}");
    let sw_pair = (spi32(&sw_child.spi_out), spi32(&sw_child.spi_in));
    assert!(
        first.children.contains(&sw_pair),
        "rampart {first:?} and strongSwan {sw_child:?} agree on the SPIs"
    );

    ping(rp_host, &sw_ip.to_string(), 5).unwrap();
    ping(sw_host, &rp_ip.to_string(), 5).unwrap();
    let there = tcp_transfer(
        rp_host,
        sw_host,
        IpAddr::V4(sw_ip),
        &TransferSpec::megabytes(10),
    )
    .unwrap_or_else(|e| panic!("rampart side -> strongSwan side: {e}"));
    assert!(there.intact(), "{there:?}");
    let back = tcp_transfer(
        sw_host,
        rp_host,
        IpAddr::V4(rp_ip),
        &TransferSpec::megabytes(10),
    )
    .unwrap_or_else(|e| panic!("strongSwan side -> rampart side: {e}"));
    assert!(back.intact(), "{back:?}");

    // Rekeys under load: strongSwan rekeys the CHILD SA and the IKE SA, then rampart rekeys the
    // CHILD SA when its 15 s lifetime runs out and the IKE SA when its 20 s lifetime does.
    let mut spec = TransferSpec::megabytes(30);
    spec.rate = Some(1024 * 1024);
    spec.timeout = Duration::from_secs(70);
    let transfer = RunningTransfer::start(sw_host, rp_host, IpAddr::V4(rp_ip), &spec).unwrap();
    let before = gw.spis().expect("established");
    charon.rekey_child().unwrap_or_else(|e| panic!("{e}"));
    wait_until(
        Duration::from_secs(10),
        "rampart to take strongSwan's CHILD SA rekey",
        || {
            gw.spis()
                .is_some_and(|s| s.children.iter().all(|c| !before.children.contains(c)))
        },
    );
    charon.rekey_ike().unwrap_or_else(|e| panic!("{e}"));
    wait_until(
        Duration::from_secs(10),
        "rampart to take strongSwan's IKE SA rekey",
        || gw.spis().is_some_and(|s| s.ike != before.ike),
    );
    let after_sw = charon.child_sa().expect("child installed");
    let after_sw_ike = charon.ike_sa().expect("IKE SA established");
    wait_until(
        Duration::from_secs(25),
        "rampart's own CHILD SA rekey",
        || {
            charon
                .child_sa()
                .is_some_and(|c| c.spi_in != after_sw.spi_in)
        },
    );
    wait_until(
        Duration::from_secs(30),
        "rampart's own IKE SA rekey",
        || {
            charon
                .ike_sa()
                .is_some_and(|sa| sa.spi_i != after_sw_ike.spi_i)
        },
    );
    let report = transfer
        .finish()
        .unwrap_or_else(|e| panic!("transfer during rekeys: {e}"));
    assert!(report.intact(), "{report:?}");
    ping(rp_host, &sw_ip.to_string(), 3).unwrap();

    let pcap = capture.stop();
    let summary = check_only_ike_esp(&pcap, SiteToSite::gateways(), config.nat_t_port)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary.esp, 0, "encapsulation is forced: {summary:?}");
    assert!(summary.esp_in_udp > 10_000, "{summary:?}");
}

#[test]
fn rampart_initiator_strongswan_responder() {
    interop("rp-sw-init", true);
}

#[test]
fn strongswan_initiator_rampart_responder() {
    interop("sw-rp-init", false);
}
