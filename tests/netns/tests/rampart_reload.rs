//! Live reload of a running gateway (`rampart reload`, SIGHUP), the way strongSwan users run
//! `swanctl --load-all`: peers added and removed and a rule changed while a transfer runs through
//! an unchanged peer, and a file with errors refused without touching the running gateway.
//!
//! Each gateway gets three transit addresses and protects three /24s, so that gw1 can hold three
//! independent peers towards gw2 (one address pair and one remote /24 each):
//!
//! ```text
//!  gw1 192.0.2.1  / .11 / .21   ==  gw2 192.0.2.2  / .12 / .22
//!      site-b (A, unchanged)  10.1.0.0/24 <-> 10.2.0.0/24   (the transfer runs here)
//!      site-c (C, removed)    10.1.1.0/24 <-> 10.2.1.0/24
//!      site-d (B, added)      10.1.2.0/24 <-> 10.2.2.0/24
//! ```

use std::net::IpAddr;
use std::time::Duration;

use rampart_netns_tests::inspect::{python, python_prelude, tcp_server};
use rampart_netns_tests::rampart::{Gateway, GatewayToml, PeerToml};
use rampart_netns_tests::topology::{DOMAIN1, DOMAIN2, GW1_WAN, GW2_WAN, H2, PSK, WAN_IF};
use rampart_netns_tests::{
    require_tools, skip_unless_root, wait_until, RunningTransfer, SiteToSite, TransferSpec,
};

const TUNNEL_UP: Duration = Duration::from_secs(20);

/// gw1's extra transit addresses and gw2's, for peers C and B.
const GW1_C: &str = "192.0.2.11";
const GW2_C: &str = "192.0.2.12";
const GW1_B: &str = "192.0.2.21";
const GW2_B: &str = "192.0.2.22";

/// The services both rule bases name.
const SERVICES: &str = r#"
[[service]]
name = "bulk"
protocol = "tcp"
ports = [5001]

[[service]]
name = "side"
protocol = "tcp"
ports = [7002]
"#;

const ACCEPT_ALL: &str = r#"
[[rule]]
name = "allow-all"
action = "accept"
"#;

/// The changed rule: port 7002 is now rejected, everything else still accepted.
const REJECT_SIDE: &str = r#"
[[rule]]
name = "no-side"
service = ["side"]
action = "reject"
"#;

fn setup() -> bool {
    if skip_unless_root("rampart reload netns test") {
        return false;
    }
    require_tools(&["ip", "socat", "python3"]);
    true
}

/// Adds the extra transit addresses and the extra site prefixes to the topology.
fn widen(topo: &SiteToSite) {
    for a in [GW1_C, GW1_B] {
        topo.gw1.add_addr(WAN_IF, &format!("{a}/24"));
    }
    for a in [GW2_C, GW2_B] {
        topo.gw2.add_addr(WAN_IF, &format!("{a}/24"));
    }
}

fn peer(name: &str, local: &str, remote: &str, remote_domain: &str, start: &str) -> PeerToml {
    let mut p = PeerToml::new(name, local, remote, remote_domain, PSK);
    p.start_action = start.into();
    p
}

/// gw1 with peers A and C (before) or A and B (after), and gw2 answering all three.
fn configs(topo: &SiteToSite) -> (GatewayToml, GatewayToml, GatewayToml) {
    let (gw1, gw2) = (GW1_WAN.to_string(), GW2_WAN.to_string());
    let a = peer("site-b", &gw1, &gw2, DOMAIN2, "always");
    let c = peer("site-c", GW1_C, GW2_C, "10.2.1.0/24", "always");
    let b = peer("site-d", GW1_B, GW2_B, "10.2.2.0/24", "always");
    let domains1 = vec![DOMAIN1.into(), "10.1.1.0/24".into(), "10.1.2.0/24".into()];
    let domains2 = vec![DOMAIN2.into(), "10.2.1.0/24".into(), "10.2.2.0/24".into()];

    let mut before = GatewayToml::new("gw-a", &topo.daemon_dir("gw1"), DOMAIN1, a.clone());
    before.domain = domains1.clone();
    before.peers.push(c);
    before.extra = format!("{SERVICES}{ACCEPT_ALL}");

    let mut after = before.clone();
    after.peers = vec![a, b];
    after.extra = format!("{SERVICES}{REJECT_SIDE}{ACCEPT_ALL}");

    let mut responder = GatewayToml::new(
        "gw-b",
        &topo.daemon_dir("gw2"),
        DOMAIN2,
        peer("site-a", &gw2, &gw1, DOMAIN1, "none"),
    );
    responder.domain = domains2;
    responder
        .peers
        .push(peer("site-a-c", GW2_C, GW1_C, "10.1.1.0/24", "none"));
    responder
        .peers
        .push(peer("site-a-d", GW2_B, GW1_B, "10.1.2.0/24", "none"));
    (before, after, responder)
}

fn established(gw: &Gateway, name: &str) -> bool {
    gw.peer(name).is_some_and(|p| {
        p["state"] == "established" && p["tunnels"].as_array().is_some_and(|t| !t.is_empty())
    })
}

/// The (inbound, outbound) SPIs of `name`'s tunnels.
fn tunnel_spis(gw: &Gateway, name: &str) -> Vec<(String, String)> {
    gw.peer(name)
        .and_then(|p| {
            p["tunnels"].as_array().map(|ts| {
                ts.iter()
                    .map(|t| {
                        (
                            t["spi_in"].as_str().unwrap_or_default().to_string(),
                            t["spi_out"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
        })
        .unwrap_or_default()
}

fn routes(topo: &SiteToSite) -> String {
    topo.gw1.ip("route show dev rampart0")
}

#[test]
fn reload_adds_and_removes_peers_and_changes_a_rule_during_a_transfer() {
    if !setup() {
        return;
    }
    let topo = SiteToSite::new("rp-reload");
    widen(&topo);
    let (before, after, responder) = configs(&topo);
    let g2 = Gateway::start(&topo.gw2, &topo.daemon_dir("gw2"), "gw2", &responder);
    let mut g1 = Gateway::start(&topo.gw1, &topo.daemon_dir("gw1"), "gw1", &before);
    g1.wait_tunnel(TUNNEL_UP);
    wait_until(TUNNEL_UP, "site-b and site-c established", || {
        established(&g1, "site-b") && established(&g1, "site-c")
    });
    assert!(routes(&topo).contains("10.2.1.0/24"), "{}", routes(&topo));
    let spis_a = tunnel_spis(&g1, "site-b");

    // A paced transfer through A that is still running when the reload happens.
    let mut spec = TransferSpec::megabytes(24);
    spec.rate = Some(3 * 1024 * 1024);
    let transfer = RunningTransfer::start(&topo.h1, &topo.h2, IpAddr::V4(H2), &spec)
        .unwrap_or_else(|e| panic!("start transfer: {e}"));
    wait_until(Duration::from_secs(10), "transfer under way", || {
        transfer.received() > 2 * 1024 * 1024
    });

    let out = g1
        .reload(&after)
        .unwrap_or_else(|e| panic!("reload refused: {e}\n{}", g1.log()));
    assert!(
        out.contains("site-d") && out.contains("site-c"),
        "reload summary names the added and removed peers: {out}"
    );
    let mid_transfer = transfer.received();
    assert!(
        mid_transfer < spec.bytes,
        "the transfer finished before the reload; nothing was tested"
    );

    // B comes up, C goes away on both sides, its route is withdrawn.
    wait_until(TUNNEL_UP, "site-d established after reload", || {
        established(&g1, "site-d")
    });
    wait_until(Duration::from_secs(10), "site-c deleted on gw2", || {
        g2.peer("site-a-c")
            .is_some_and(|p| p["state"] != "established")
    });
    let names = g1.peer_names();
    assert!(
        names.contains(&"site-b".to_string())
            && names.contains(&"site-d".to_string())
            && !names.contains(&"site-c".to_string()),
        "status lists the new peer set: {names:?}"
    );
    let table = routes(&topo);
    assert!(
        !table.contains("10.2.1.0/24"),
        "C's route withdrawn: {table}"
    );
    assert!(table.contains("10.2.2.0/24"), "B's route added: {table}");

    // The changed rule applies to new connections ...
    let dir = topo.daemon_dir("servers");
    let _side = tcp_server(&topo.h2, &dir, 7002, "EXEC:cat");
    let program = python_prelude(&H2.to_string())
        + r#"
try:
    connect(7002)
    print("7002 connected")
except (ConnectionRefusedError, ConnectionResetError):
    print("7002 refused")
"#;
    let out = python(&topo.h1, &program).unwrap_or_else(|e| panic!("client: {e}\n{}", g1.log()));
    assert!(out.contains("7002 refused"), "{out}\n{}", g1.log());

    // ... while the transfer through the unchanged peer completes byte for byte on the same SA.
    let report = transfer
        .finish()
        .unwrap_or_else(|e| panic!("transfer: {e}\n{}", g1.log()));
    assert!(report.intact(), "transfer damaged: {report:?}");
    assert_eq!(
        tunnel_spis(&g1, "site-b"),
        spis_a,
        "the unchanged peer kept its tunnel"
    );
}

#[test]
fn a_file_with_errors_is_refused_and_sighup_reloads() {
    if !setup() {
        return;
    }
    let topo = SiteToSite::new("rp-reload-bad");
    widen(&topo);
    let (before, _, responder) = configs(&topo);
    let mut first = before.clone();
    first.peers.truncate(1);
    let _g2 = Gateway::start(&topo.gw2, &topo.daemon_dir("gw2"), "gw2", &responder);
    let mut g1 = Gateway::start(&topo.gw1, &topo.daemon_dir("gw1"), "gw1", &first);
    g1.wait_tunnel(TUNNEL_UP);
    let spis = tunnel_spis(&g1, "site-b");

    // A wrong value: refused with check-config's file:line:col message, nothing changes.
    let mut bad = before.clone();
    bad.peers[1].start_action = "sometimes".into();
    let err = g1
        .reload(&bad)
        .expect_err("a file with errors must be refused");
    assert!(
        err.contains("peer[1].start_action") && err.contains("allowed: none, on-traffic, always"),
        "{err}"
    );
    assert_eq!(g1.peer_names(), vec!["site-b".to_string()]);
    assert_eq!(tunnel_spis(&g1, "site-b"), spis);
    // The gateway checks the file itself too (it may have changed since the CLI read it).
    let path = std::fs::canonicalize(g1.config_path()).unwrap();
    let answer = g1
        .socket_request(&format!("reload {}", path.display()))
        .unwrap();
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("peer[1].start_action")),
        "{answer}"
    );
    assert_eq!(g1.peer_names(), vec!["site-b".to_string()]);

    // SIGHUP re-reads the file the gateway was started from.
    g1.write_config_text(&before.to_toml());
    g1.signal(libc::SIGHUP);
    wait_until(TUNNEL_UP, "site-c established after SIGHUP", || {
        established(&g1, "site-c")
    });
    assert_eq!(tunnel_spis(&g1, "site-b"), spis, "site-b untouched");
    let status = g1.status_from_socket().unwrap();
    let reloads = &status["reloads"];
    assert_eq!(reloads["applied"], 1, "{status}");
    assert_eq!(reloads["refused"], 1, "{status}");
    assert!(
        reloads["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("start_action")),
        "{status}"
    );
}
