//! `[cluster]`: the examples, the defaults, and one test per check with the exact error lines.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rampart_config::*;

const CLUSTER_A: &str = include_str!("../../../examples/cluster/cluster-a.toml");
const CLUSTER_B: &str = include_str!("../../../examples/cluster/cluster-b.toml");

/// The smallest valid cluster member: everything else takes its default.
const MINIMAL: &str = r#"[gateway]
name = "gw"

[local]
domain = ["10.1.0.0/24"]

[[peer]]
name = "b"
local_address = "192.0.2.1"
remote_address = "198.51.100.2"
psk = "0123456789abcdef"
remote_domain = ["10.2.0.0/24"]

[cluster]
name = "hq"
member_id = 1
secret = "0123456789abcdef"

[[cluster.member]]
id = 1
address = "10.255.0.1"

[[cluster.member]]
id = 2
address = "10.255.0.2"

[[cluster.vip]]
interface = "eth1"
address = "192.0.2.1/24"
"#;

fn ok(text: &str) -> GatewayConfig {
    match parse(text, "gw.toml") {
        Ok(c) => c,
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

fn lines(text: &str) -> Vec<String> {
    match parse(text, "gw.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

fn kinds(text: &str) -> Vec<ErrorKind> {
    match parse(text, "gw.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.0.iter().map(|e| e.kind).collect(),
    }
}

/// MINIMAL with `line` inserted at the top of [cluster].
fn with_cluster(line: &str) -> String {
    MINIMAL.replacen(
        "[cluster]\nname = \"hq\"\n",
        &format!("[cluster]\nname = \"hq\"\n{line}\n"),
        1,
    )
}

#[test]
fn the_examples_are_valid_and_agree() {
    let a = ok(CLUSTER_A).cluster.expect("a cluster");
    let b = ok(CLUSTER_B).cluster.expect("a cluster");
    assert_eq!((a.member_id, b.member_id), (1, 2));
    assert_eq!(a.members, b.members);
    assert_eq!(a.virtual_addresses, b.virtual_addresses);
    assert_eq!(a.auth, b.auth);
    assert_eq!(a.name, "hq");
    assert_eq!(a.monitored_interfaces, ["eth0", "eth1"]);
    assert_eq!(a.members[0].priority, 200, "primary = 1");
    assert_eq!(a.members[1].priority, 100);
    assert_eq!(ok(CLUSTER_B).gateway.member_id, 2);
}

#[test]
fn no_cluster_table_means_no_cluster() {
    let text = MINIMAL.split("[cluster]").next().unwrap();
    assert!(ok(text).cluster.is_none());
}

#[test]
fn defaults() {
    let config = ok(MINIMAL);
    let c = config.cluster.as_ref().unwrap();
    assert_eq!(c.name, "hq");
    assert_eq!(c.member_id, 1);
    assert_eq!(c.mode, ClusterMode::HighAvailability);
    let addr = |s: &str| -> SocketAddr { s.parse().unwrap() };
    assert_eq!(
        c.members,
        [
            MemberConfig {
                id: 1,
                sync_address: addr("10.255.0.1:8116"),
                priority: 100
            },
            MemberConfig {
                id: 2,
                sync_address: addr("10.255.0.2:8116"),
                priority: 100
            },
        ]
    );
    assert!(!c.switch_back);
    assert_eq!(c.heartbeat_interval, Duration::from_millis(100));
    assert_eq!(c.dead_after, 3);
    assert!(c.monitored_interfaces.is_empty());
    assert_eq!(
        c.virtual_addresses,
        [VirtualAddress {
            interface: "eth1".into(),
            address: "192.0.2.1/24".parse().unwrap()
        }]
    );
    assert_eq!(c.auth.secret.as_slice(), b"0123456789abcdef");
    assert_eq!(c.auth.tls, None);
    assert_eq!(c.retransmit_queue, 131_072);
    assert_eq!(c.takeover_margin, 16_384);
    assert_eq!(c.esp_sync_interval, Duration::from_millis(100));
    // The cluster member id flows into [gateway] and so into the IKE engine.
    assert_eq!(config.gateway.member_id, 1);
    assert_eq!(config.ike_config().member_id, 1);
    let vip: IpAddr = "192.0.2.1".parse().unwrap();
    assert_eq!(c.virtual_addresses[0].ip(), vip);
}
