//! The remote-access test topology and its third-party daemons on their own, without Rampart:
//! the router's egress filters really block what they claim to block (a remote-access test
//! that "falls back to TLS" must not pass because UDP was open all along), squid really demands
//! Basic authentication for CONNECT, and nginx serves HTTPS with a `rampart pki` certificate.

use std::time::Duration;

use rampart_netns_tests::pki::Pki;
use rampart_netns_tests::ra_gateway::{issue_gateway_cert, GW_ID};
use rampart_netns_tests::ra_services::{curl_https, Nginx, Squid, WEB_PAGE};
use rampart_netns_tests::ra_topology::{Egress, RaTopology, GW_WAN, PROXY_PORT, ROUTER_IN};
use rampart_netns_tests::{require_tools, skip_unless_root, wait_until, Netns};

/// Sends one UDP datagram from `from` to `to_ip:port` and reports whether `to` received it.
fn udp_passes(from: &Netns, to: &Netns, to_ip: &str, port: u16, dir: &std::path::Path) -> bool {
    let out = dir.join(format!("udp-{port}.bin"));
    let _ = std::fs::remove_file(&out);
    let out_s = out.to_string_lossy().into_owned();
    let mut rx = to.spawn(
        dir,
        &format!("udp-rx-{port}"),
        &[
            "socat",
            "-u",
            &format!("UDP-RECV:{port}"),
            &format!("OPEN:{out_s},creat"),
        ],
    );
    wait_until(Duration::from_secs(5), "socat bound", || {
        to.try_exec(&["ss", "-Hlun"])
            .is_ok_and(|s| s.contains(&format!(":{port} ")))
    });
    for _ in 0..3 {
        let _ = from.try_exec(&[
            "sh",
            "-c",
            &format!("echo probe | socat -u - UDP:{to_ip}:{port}"),
        ]);
    }
    // Arrived: as soon as the file has it; blocked: nothing within half a second.
    let arrived = rampart_netns_tests::try_wait_until(Duration::from_millis(500), "probe", || {
        std::fs::read(&out).is_ok_and(|b| !b.is_empty())
    })
    .is_ok();
    rx.kill9();
    arrived
}

#[test]
fn egress_filters_squid_basic_auth_and_nginx() {
    if skip_unless_root("egress_filters_squid_basic_auth_and_nginx") {
        return;
    }
    require_tools(&["nft", "conntrack", "socat", "curl", "openssl", "ss"]);
    require_tools(&[
        rampart_netns_tests::ra_services::SQUID,
        rampart_netns_tests::ra_services::SQUID_NCSA,
        rampart_netns_tests::ra_services::NGINX,
    ]);
    let topo = RaTopology::new("ra-tools");
    let pki = Pki::init(&topo.daemon_dir("pki"), "ecdsa-p256");
    issue_gateway_cert(&pki);
    let web = Nginx::start(
        &topo.gw,
        &topo.daemon_dir("nginx"),
        &format!("{GW_WAN}:443"),
        &pki.cert("vpn"),
        &pki.key("vpn"),
    );
    let url = format!("https://{GW_ID}/");
    let resolve = Some((GW_ID, 443, "203.0.113.2"));
    let gw_ip = GW_WAN.to_string();

    // Open: direct HTTPS and UDP both pass, and the gateway sees the router's address.
    let body = curl_https(&topo.client, &url, &pki.ca_cert(), resolve).expect("direct HTTPS");
    assert_eq!(body, WEB_PAGE);
    assert!(
        web.access_log().contains("203.0.113.1 "),
        "masqueraded: {}",
        web.access_log()
    );
    let udp_dir = topo.daemon_dir("udp");
    assert!(udp_passes(&topo.client, &topo.gw, &gw_ip, 4500, &udp_dir));

    // No UDP: TCP still passes, UDP does not.
    topo.set_egress(Egress::NoUdp);
    assert!(!udp_passes(&topo.client, &topo.gw, &gw_ip, 4500, &udp_dir));
    assert!(!udp_passes(&topo.client, &topo.gw, &gw_ip, 500, &udp_dir));
    curl_https(&topo.client, &url, &pki.ca_cert(), resolve).expect("TCP 443 without UDP");

    // Only TCP 443: another TCP port is dropped.
    topo.set_egress(Egress::Tcp443Only);
    let _sink = topo.gw.spawn(
        &udp_dir,
        "tcp-4500",
        &["socat", "TCP-LISTEN:4500,fork,reuseaddr", "OPEN:/dev/null"],
    );
    wait_until(Duration::from_secs(5), "socat listening", || {
        rampart_netns_tests::ra_services::listening(&topo.gw, 4500)
    });
    let tcp4500 = topo.client.try_exec(&[
        "socat",
        "-u",
        "OPEN:/dev/null",
        &format!("TCP:{gw_ip}:4500,connect-timeout=2"),
    ]);
    assert!(tcp4500.is_err(), "TCP 4500 must be dropped: {tcp4500:?}");
    curl_https(&topo.client, &url, &pki.ca_cert(), resolve).expect("TCP 443 allowed");

    // Proxy only: direct fails; squid without credentials answers 407; with them it tunnels.
    topo.set_egress(Egress::ProxyOnly);
    let squid = Squid::start(
        &topo.router,
        &topo.daemon_dir("squid"),
        &ROUTER_IN.to_string(),
        PROXY_PORT,
        Some(("alice", "proxy-pass")),
        &[("203.0.113.2", GW_ID)],
    );
    let direct = topo.client.try_exec(&[
        "curl",
        "--silent",
        "--show-error",
        "--connect-timeout",
        "2",
        "--cacert",
        &pki.ca_cert().to_string_lossy(),
        "--resolve",
        &format!("{GW_ID}:443:{gw_ip}"),
        &url,
    ]);
    assert!(direct.is_err(), "direct HTTPS must be blocked: {direct:?}");
    let ca = pki.ca_cert().to_string_lossy().into_owned();
    let resolve_arg = format!("{GW_ID}:443:{gw_ip}");
    let via = |proxy: &str| {
        topo.client.try_exec(&[
            "curl",
            "--silent",
            "--show-error",
            "--max-time",
            "10",
            "--cacert",
            &ca,
            "--resolve",
            &resolve_arg,
            "--proxy",
            proxy,
            &url,
        ])
    };
    let no_auth = via(&squid.url()).expect_err("proxy without credentials");
    assert!(no_auth.to_string().contains("407"), "{no_auth}");
    let wrong = via(&format!("http://alice:wrong@{ROUTER_IN}:{PROXY_PORT}"))
        .expect_err("proxy with a wrong password");
    assert!(wrong.to_string().contains("407"), "{wrong}");
    let body = via(&format!("http://alice:proxy-pass@{ROUTER_IN}:{PROXY_PORT}"))
        .expect("through the proxy with credentials");
    assert_eq!(body, WEB_PAGE);
    let log = squid.access_log();
    assert!(log.contains("TCP_DENIED/407"), "{log}");
    assert!(log.contains("TCP_TUNNEL/200"), "{log}");
    assert!(log.contains(&format!("CONNECT {GW_ID}:443 alice")), "{log}");
}
