//! Stateful inspection through a real tunnel (gw1 inspects, gw2 does not): a rule that blocks
//! one service while another passes, an out-of-state ACK dropped and counted, hide NAT seen from
//! the far side, and a full table refusing the next connection while the others keep working.

use std::time::Duration;

use rampart_netns_tests::inspect::{conn, counter, python, python_prelude, tcp_server};
use rampart_netns_tests::rampart::Gateway;
use rampart_netns_tests::topology::{DOMAIN1, GW1_LAN, H2};
use rampart_netns_tests::{ping, require_tools, skip_unless_root, wait_until, SiteToSite};

const TUNNEL_UP: Duration = Duration::from_secs(20);

fn setup() -> bool {
    if skip_unless_root("rampart inspection netns test") {
        return false;
    }
    require_tools(&["ip", "ss", "socat", "python3"]);
    true
}

/// gw1 (with `extra` configuration) and gw2, tunnel up.
fn start(topo: &SiteToSite, extra: &str) -> (Gateway, Gateway) {
    let (mut c1, c2) = topo.rampart_pair();
    c1.extra = extra.to_string();
    let mut g2 = Gateway::start(&topo.gw2, &topo.daemon_dir("gw2"), "gw2", &c2);
    let mut g1 = Gateway::start(&topo.gw1, &topo.daemon_dir("gw1"), "gw1", &c1);
    g1.wait_tunnel(TUNNEL_UP);
    g2.wait_tunnel(TUNNEL_UP);
    (g1, g2)
}

const ACCEPT_ALL: &str = r#"
[[rule]]
name = "allow-all"
action = "accept"
"#;

#[test]
fn rule_rejects_one_service_while_another_passes() {
    if !setup() {
        return;
    }
    let topo = SiteToSite::new("rp-fw-rule");
    let extra = r#"
[[service]]
name = "echo"
protocol = "tcp"
ports = [7000]

[[service]]
name = "blocked"
protocol = "tcp"
ports = ["7002"]
sync = false
sync_after = "30 s"

[[rule]]
name = "no-blocked"
service = ["blocked"]
action = "reject"
log = true

[[rule]]
name = "echo-ok"
service = ["echo"]
action = "accept"
"#;
    let (g1, _g2) = start(&topo, extra);
    let dir = topo.daemon_dir("servers");
    let _s1 = tcp_server(&topo.h2, &dir, 7000, "EXEC:cat");
    let _s2 = tcp_server(&topo.h2, &dir, 7002, "EXEC:cat");
    let program = python_prelude(&H2.to_string())
        + r#"
s = connect(7000)
assert echo(s, "through") == "through"
try:
    connect(7002)
    print("7002 connected")
    sys.exit(1)
except ConnectionRefusedError:
    print("7002 refused")
assert echo(s, "still") == "still"
print("ok")
"#;
    let out = python(&topo.h1, &program).unwrap_or_else(|e| panic!("client: {e}\n{}", g1.log()));
    assert!(out.contains("7002 refused") && out.contains("ok"), "{out}");
    assert!(counter(&g1, "dropped_by_rule") >= 1);
    assert!(counter(&g1, "rejected") >= 1);
    // Anything else (ICMP here) hits the implicit drop.
    assert!(ping(&topo.h1, &H2.to_string(), 1).is_err());
    let list = conn(&g1, "list").unwrap();
    let conns = list["connections"].as_array().unwrap();
    assert!(
        conns.iter().any(|c| c["rule"] == "echo-ok"
            && c["service"] == "echo"
            // The client has closed by now: the handshake completed and the close was seen.
            && ["established", "fin-wait", "last-ack", "time-wait"].contains(&c["state"].as_str().unwrap())
            && c["original"].as_str().unwrap().ends_with(":7000")),
        "{list}"
    );
    let log = g1.log();
    assert!(log.contains("by rule no-blocked"), "{log}");
    assert!(log.contains("implicit-drop"), "{log}");
}

#[test]
fn out_of_state_ack_is_dropped_and_counted() {
    if !setup() {
        return;
    }
    require_tools(&["hping3"]);
    let topo = SiteToSite::new("rp-fw-oos");
    let (g1, _g2) = start(&topo, ACCEPT_ALL);
    let before = counter(&g1, "dropped_out_of_state");
    // Three bare ACKs with no connection behind them ("first packet isn't SYN").
    let _ = topo.h1.try_exec(&[
        "hping3",
        "-A",
        "-c",
        "3",
        "-i",
        "u200000",
        "-p",
        "7000",
        &H2.to_string(),
    ]);
    wait_until(
        Duration::from_secs(5),
        "3 out-of-state drops counted",
        || counter(&g1, "dropped_out_of_state") >= before + 3,
    );
    assert!(g1.log().contains("first packet isn't SYN"), "{}", g1.log());
    // Legitimate traffic still passes.
    ping(&topo.h1, &H2.to_string(), 2).unwrap();
}

#[test]
fn hide_nat_is_what_the_far_host_sees() {
    if !setup() {
        return;
    }
    let topo = SiteToSite::new("rp-fw-hide");
    // No [[rule]]: the default accepts everything, NAT still applies.
    let extra = format!(
        r#"
[[nat]]
name = "hide-site-a"
type = "hide"
source = ["{DOMAIN1}"]
address = "{GW1_LAN}"
ports = "20000-20100"
"#
    );
    let (g1, _g2) = start(&topo, &extra);
    let dir = topo.daemon_dir("servers");
    let _s = tcp_server(
        &topo.h2,
        &dir,
        7001,
        "SYSTEM:'echo $SOCAT_PEERADDR:$SOCAT_PEERPORT'",
    );
    let program = python_prelude(&H2.to_string())
        + r#"
s = connect(7001)
print(s.makefile().readline().strip())
"#;
    let out = python(&topo.h1, &program).unwrap_or_else(|e| panic!("client: {e}\n{}", g1.log()));
    let seen = out.trim();
    let (addr, port) = seen.rsplit_once(':').unwrap_or_else(|| panic!("{seen}"));
    assert_eq!(addr, GW1_LAN.to_string(), "h2 saw {seen}");
    let port: u16 = port.parse().unwrap();
    assert!((20000..=20100).contains(&port), "h2 saw {seen}");
    ping(&topo.h1, &H2.to_string(), 2).unwrap();
    let list = conn(&g1, "list").unwrap();
    assert!(
        list["connections"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["nat"] == "hide hide-site-a"
                && c["translated"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{GW1_LAN}:"))),
        "{list}"
    );
}

#[test]
fn full_table_refuses_the_next_connection_existing_ones_work() {
    if !setup() {
        return;
    }
    let topo = SiteToSite::new("rp-fw-full");
    let extra = format!("[inspection]\ncapacity = 3\n{ACCEPT_ALL}");
    let (g1, _g2) = start(&topo, &extra);
    let dir = topo.daemon_dir("servers");
    let _s = tcp_server(&topo.h2, &dir, 7000, "EXEC:cat");
    let program = python_prelude(&H2.to_string())
        + r#"
conns = [connect(7000) for _ in range(3)]
for i, s in enumerate(conns):
    assert echo(s, "hello %d" % i) == "hello %d" % i
try:
    connect(7000, timeout=2.0)
    print("fourth connected")
    sys.exit(1)
except (socket.timeout, TimeoutError):
    print("fourth refused")
for i, s in enumerate(conns):
    assert echo(s, "again %d" % i) == "again %d" % i
print("ok")
"#;
    let out = python(&topo.h1, &program).unwrap_or_else(|e| panic!("client: {e}\n{}", g1.log()));
    assert!(
        out.contains("fourth refused") && out.contains("ok"),
        "{out}"
    );
    assert!(counter(&g1, "table_full") >= 1);
    assert_eq!(counter(&g1, "active"), 3);
    assert!(g1.log().contains("connection table full"), "{}", g1.log());
}
