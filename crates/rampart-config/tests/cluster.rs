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
                priority: 100,
                extra_sync_addresses: vec![],
            },
            MemberConfig {
                id: 2,
                sync_address: addr("10.255.0.2:8116"),
                priority: 100,
                extra_sync_addresses: vec![],
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

#[test]
fn missing_keys_and_tables() {
    let text = "[gateway]\nname = \"gw\"\n[local]\ndomain = [\"10.1.0.0/24\"]\n[[peer]]\nname = \"b\"\nlocal_address = \"192.0.2.1\"\nremote_address = \"198.51.100.2\"\npsk = \"0123456789abcdef\"\nremote_domain = [\"10.2.0.0/24\"]\n[cluster]\n";
    assert_eq!(
        lines(text),
        [
            "gw.toml:7:17: peer[0].local_address: 192.0.2.1 is not a virtual address of the cluster (peers only ever see the cluster's addresses); allowed: an address of a [[cluster.vip]]",
            "gw.toml:11:1: cluster.name: missing required key; allowed: 1 to 64 characters from A-Z a-z 0-9 . _ -, not starting with . or -",
            "gw.toml:11:1: cluster.member_id: missing required key; allowed: this gateway's id in [[cluster.member]], 1 to 5",
            "gw.toml:11:1: cluster.member: no [[cluster.member]] table; allowed: 2 to 5 [[cluster.member]] tables (this gateway included), each with id and address",
            "gw.toml:11:1: cluster.vip: no [[cluster.vip]] table; allowed: at least one [[cluster.vip]] with interface = \"eth0\" and address = \"192.0.2.1/24\" (the address peers and hosts use)",
            "gw.toml:11:1: cluster.secret: missing cluster secret; allowed: exactly one of secret = \"...\" and secret_file = \"path\" (the same on every member, at least 16 bytes)",
        ]
    );
    let text = MINIMAL
        .replace("id = 2\n", "")
        .replace("address = \"10.255.0.1\"\n", "");
    assert_eq!(
        lines(&text),
        [
            "gw.toml:19:1: cluster.member[0].address: missing required key; allowed: the member's sync address (IPv4 or IPv6)",
            "gw.toml:22:1: cluster.member[1].id: missing required key; allowed: 1 to 5, unique in the cluster",
        ]
    );
}

#[test]
fn unknown_keys_and_wrong_types() {
    let text = with_cluster("members = 2\nmode = \"active-active\"")
        .replace(
            "address = \"10.255.0.2\"",
            "address = \"10.255.0.2\"\nweight = 3",
        )
        .replace(
            "interface = \"eth1\"",
            "interface = \"eth1\"\nlabel = \"wan\"",
        );
    let l = lines(&text);
    assert_eq!(l.len(), 4, "{l:#?}");
    assert!(l[0].starts_with("gw.toml:16:1: cluster.members: unknown key; allowed: name, member_id, mode, priority, primary, switch_back, heartbeat_interval, dead_after, monitor, secret, secret_file, tls_ca, tls_cert, tls_key, retransmit_queue, takeover_margin, esp_sync_interval, sync_link_hold_down, distribution, flush_ack, hold_timeout, max_holds, hold_timeout_action, update_timeout, enhanced_handshake, announce_table, member, vip"), "{}", l[0]);
    assert_eq!(
        l[1],
        "gw.toml:17:8: cluster.mode: unknown value \"active-active\"; allowed: high-availability, load-sharing"
    );
    assert_eq!(
        l[2],
        "gw.toml:28:1: cluster.member[1].weight: unknown key; allowed: id, address, extra_addresses, port, priority"
    );
    assert_eq!(
        l[3],
        "gw.toml:32:1: cluster.vip[0].label: unknown key; allowed: interface, address"
    );
    let text = with_cluster("switch_back = \"yes\"\ndead_after = \"3\"");
    assert_eq!(
        lines(&text),
        [
            "gw.toml:16:15: cluster.switch_back: wrong type: found string \"yes\"; allowed: true or false",
            "gw.toml:17:14: cluster.dead_after: wrong type: found string \"3\"; allowed: an integer",
        ]
    );
    let text = MINIMAL.split("[cluster]").next().unwrap().to_string()
        + "[cluster]\nname = \"hq\"\nmember_id = 1\nsecret = \"0123456789abcdef\"\nmember = 3\nvip = \"x\"\n";
    let l = lines(&text);
    assert!(
        l.iter()
            .any(|l| l
                .contains("cluster.member: expected [[cluster.member]] tables, found an integer")),
        "{l:#?}"
    );
    assert!(
        l.iter()
            .any(|l| l.contains("cluster.vip: expected [[cluster.vip]] tables, found a string")),
        "{l:#?}"
    );
}

#[test]
fn member_ids_and_addresses() {
    let text = with_cluster("").replace("member_id = 1", "member_id = 6");
    assert_eq!(
        lines(&text),
        ["gw.toml:17:13: cluster.member_id: 6 is out of range; allowed: 1 to 5"]
    );
    let text = with_cluster("").replace("member_id = 1", "member_id = 3");
    assert_eq!(
        lines(&text),
        ["gw.toml:17:13: cluster.member_id: no [[cluster.member]] has id 3; allowed: one of the [[cluster.member]] ids: 1, 2"]
    );
    let text = MINIMAL.replace("id = 2\n", "id = 1\n");
    assert_eq!(
        lines(&text),
        ["gw.toml:24:6: cluster.member[1].id: duplicate member id 1 (also cluster.member[0]); allowed: an id 1 to 5 used by no other member"]
    );
    let text = MINIMAL.replace("id = 2\n", "id = 0\n");
    assert_eq!(
        lines(&text),
        ["gw.toml:24:6: cluster.member[1].id: 0 is out of range; allowed: 1 to 5"]
    );
    let text = MINIMAL.replace("\"10.255.0.2\"", "\"10.255.0.1\"");
    assert_eq!(
        lines(&text),
        ["gw.toml:25:11: cluster.member[1].address: sync address 10.255.0.1:8116 is also cluster.member[0]'s; allowed: an address (and port) used by no other member"]
    );
    // The same address with another port is a different member (tests on one host).
    let text = MINIMAL.replace("\"10.255.0.2\"", "\"10.255.0.1\"\nport = 8117");
    let c = ok(&text).cluster.unwrap();
    assert_eq!(
        c.members[1].sync_address,
        "10.255.0.1:8117".parse().unwrap()
    );
    let text = MINIMAL.replace("\"10.255.0.2\"", "\"fd00::2\"");
    assert_eq!(
        lines(&text),
        ["gw.toml:25:11: cluster.member[1].address: fd00::2 is not of the address family of this member's sync address 10.255.0.1; allowed: sync addresses of one family (all IPv4 or all IPv6)"]
    );
    for (bad, message) in [
        (
            "\"10.255.0\"",
            "invalid IP address \"10.255.0\"; allowed: an IPv4 or IPv6 address",
        ),
        (
            "\"224.0.0.1\"",
            "224.0.0.1 is not a unicast address; allowed: a unicast IPv4 or IPv6 address",
        ),
    ] {
        let text = MINIMAL.replace("\"10.255.0.2\"", bad);
        assert_eq!(
            lines(&text),
            [format!(
                "gw.toml:25:11: cluster.member[1].address: {message}"
            )]
        );
    }
    let text = MINIMAL.replace("\"10.255.0.2\"", "\"10.255.0.2\"\nport = 0");
    assert_eq!(
        lines(&text),
        ["gw.toml:26:8: cluster.member[1].port: 0 is out of range; allowed: 1 to 65535"]
    );
}

#[test]
fn two_to_five_members() {
    let one = MINIMAL.replace("[[cluster.member]]\nid = 2\naddress = \"10.255.0.2\"\n", "");
    assert_eq!(
        lines(&one),
        ["gw.toml:14:1: cluster.member: 1 [[cluster.member]] tables; allowed: 2 to 5 [[cluster.member]] tables (this gateway included), each with id and address"]
    );
    let mut six = MINIMAL.to_string();
    for id in 3..=6 {
        six.push_str(&format!(
            "[[cluster.member]]\nid = {}\naddress = \"10.255.0.{id}\"\n",
            if id == 6 { 5 } else { id }
        ));
    }
    let l = lines(&six);
    assert!(
        l[0].starts_with("gw.toml:39:1: cluster.member: 6 [[cluster.member]] tables;"),
        "{l:#?}"
    );
    let mut five = MINIMAL.to_string();
    for id in 3..=5 {
        five.push_str(&format!(
            "[[cluster.member]]\nid = {id}\naddress = \"10.255.0.{id}\"\n"
        ));
    }
    let ids: Vec<u8> = ok(&five)
        .cluster
        .unwrap()
        .members
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, [1, 2, 3, 4, 5]);
    // Members come out ordered by id whatever the file order.
    let swapped = MINIMAL
        .replace("\nid = 1\n", "\nid = X\n")
        .replace("\nid = 2\n", "\nid = 1\n")
        .replace("\nid = X\n", "\nid = 2\n");
    let c = ok(&swapped).cluster.unwrap();
    assert_eq!(c.members[0].id, 1);
    assert_eq!(c.members[0].sync_address.ip().to_string(), "10.255.0.2");
    assert_eq!(c.me().sync_address.ip().to_string(), "10.255.0.2");
}

#[test]
fn priorities_and_primary() {
    let prio = |text: &str| -> Vec<u16> {
        ok(text)
            .cluster
            .unwrap()
            .members
            .iter()
            .map(|m| m.priority)
            .collect()
    };
    assert_eq!(prio(&with_cluster("priority = 150")), [150, 100]);
    assert_eq!(prio(&with_cluster("primary = 2")), [100, 200]);
    let per_member = MINIMAL.replace("\"10.255.0.2\"", "\"10.255.0.2\"\npriority = 50");
    assert_eq!(prio(&per_member), [100, 50]);
    let own = MINIMAL.replace("\"10.255.0.1\"", "\"10.255.0.1\"\npriority = 7");
    assert_eq!(prio(&own), [7, 100]);
    assert_eq!(
        prio(&own.replace("name = \"hq\"\n", "name = \"hq\"\npriority = 7\n")),
        [7, 100]
    );
    assert_eq!(
        lines(&own.replace("name = \"hq\"\n", "name = \"hq\"\npriority = 8\n")),
        ["gw.toml:16:12: cluster.priority: 8 differs from cluster.member[0].priority 7 (this member); allowed: one of cluster.priority and this member's cluster.member[].priority, or equal values"]
    );
    assert_eq!(
        lines(&with_cluster("primary = 1\npriority = 150")),
        ["gw.toml:16:11: cluster.primary: primary and priority are both set; allowed: either primary = <member id> or priorities, not both"]
    );
    assert_eq!(
        lines(&per_member.replace("name = \"hq\"\n", "name = \"hq\"\nprimary = 1\n")),
        ["gw.toml:16:11: cluster.primary: primary and priority are both set; allowed: either primary = <member id> or priorities, not both"]
    );
    assert_eq!(
        lines(&with_cluster("primary = 4")),
        ["gw.toml:16:11: cluster.primary: no [[cluster.member]] has id 4; allowed: one of the [[cluster.member]] ids: 1, 2"]
    );
    assert_eq!(
        lines(&with_cluster("priority = 65536")),
        ["gw.toml:16:12: cluster.priority: 65536 is out of range; allowed: 0 to 65535"]
    );
}

#[test]
fn timings_and_queues() {
    let c = ok(&with_cluster(
        "heartbeat_interval = \"50ms\"\ndead_after = 5\nesp_sync_interval = \"1s\"\nretransmit_queue = 4096\ntakeover_margin = 100000\nswitch_back = true",
    ))
    .cluster
    .unwrap();
    assert_eq!(c.heartbeat_interval, Duration::from_millis(50));
    assert_eq!(c.dead_after, 5);
    assert_eq!(c.esp_sync_interval, Duration::from_secs(1));
    assert_eq!(c.retransmit_queue, 4096);
    assert_eq!(c.takeover_margin, 100_000);
    assert!(c.switch_back);
    for (line, error) in [
        ("heartbeat_interval = \"5ms\"", "gw.toml:16:22: cluster.heartbeat_interval: 5ms is out of range; allowed: 10ms to 10s"),
        ("heartbeat_interval = 11", "gw.toml:16:22: cluster.heartbeat_interval: 11s is out of range; allowed: 10ms to 10s"),
        ("heartbeat_interval = \"fast\"", "gw.toml:16:22: cluster.heartbeat_interval: invalid duration \"fast\": expected a number at \"fast\"; allowed: a number with a unit ms, s, m, h or d, possibly combined (\"500ms\", \"30s\", \"1h30m\"), or an integer number of seconds"),
        ("dead_after = 1", "gw.toml:16:14: cluster.dead_after: 1 is out of range; allowed: 2 to 100"),
        ("dead_after = 101", "gw.toml:16:14: cluster.dead_after: 101 is out of range; allowed: 2 to 100"),
        ("esp_sync_interval = \"1m\"", "gw.toml:16:21: cluster.esp_sync_interval: 1m is out of range; allowed: 10ms to 10s"),
        ("retransmit_queue = 10", "gw.toml:16:20: cluster.retransmit_queue: 10 is out of range; allowed: 1024 to 16777216"),
        ("takeover_margin = 0", "gw.toml:16:19: cluster.takeover_margin: 0 is out of range; allowed: 1 to 4294967295"),
    ] {
        assert_eq!(lines(&with_cluster(line)), [error], "{line}");
    }
}

#[test]
fn monitored_interfaces() {
    let c = ok(&with_cluster(
        "monitor = [\"eth0\", \"eth1.100\", \"br-lan\"]",
    ))
    .cluster
    .unwrap();
    assert_eq!(c.monitored_interfaces, ["eth0", "eth1.100", "br-lan"]);
    assert_eq!(
        lines(&with_cluster("monitor = [\"eth0\", \"eth 1\", \"eth0\", \"a-very-long-interface\"]")),
        [
            "gw.toml:16:20: cluster.monitor[1]: invalid interface name \"eth 1\"; allowed: an interface name: 1 to 15 bytes from A-Z a-z 0-9 . _ - @",
            "gw.toml:16:29: cluster.monitor[2]: interface \"eth0\" is listed twice; allowed: each interface once",
            "gw.toml:16:37: cluster.monitor[3]: invalid interface name \"a-very-long-interface\"; allowed: an interface name: 1 to 15 bytes from A-Z a-z 0-9 . _ - @",
        ]
    );
}

#[test]
fn virtual_addresses() {
    let more = |extra: &str| format!("{MINIMAL}[[cluster.vip]]\n{extra}\n");
    let c = ok(&more("interface = \"eth0\"\naddress = \"2001:db8::1\""))
        .cluster
        .unwrap();
    assert_eq!(
        c.virtual_addresses[1].address,
        "2001:db8::1/128".parse::<ipnet::IpNet>().unwrap()
    );
    assert_eq!(
        lines(&more("interface = \"eth0\"\naddress = \"192.0.2.1/25\"")),
        ["gw.toml:32:11: cluster.vip[1].address: virtual address 192.0.2.1 is also cluster.vip[0]; allowed: each virtual address once"]
    );
    assert_eq!(
        lines(&more("interface = \"eth0\"\naddress = \"10.255.0.2/24\"")),
        ["gw.toml:32:11: cluster.vip[1].address: 10.255.0.2 is the sync address of member 2; allowed: an address no member has of its own"]
    );
    assert_eq!(
        lines(&more("interface = \"eth0\"\naddress = \"10.1.0.1/33\"")),
        ["gw.toml:32:11: cluster.vip[1].address: invalid address \"10.1.0.1/33\"; allowed: an address with its prefix length, e.g. \"192.0.2.1/24\" or \"2001:db8::1/64\" (a bare address is a host prefix)"]
    );
    assert_eq!(
        lines(&more("interface = \"eth0\"\naddress = \"0.0.0.0/0\"")),
        ["gw.toml:32:11: cluster.vip[1].address: 0.0.0.0 is not a unicast address; allowed: an address with its prefix length, e.g. \"192.0.2.1/24\" or \"2001:db8::1/64\" (a bare address is a host prefix)"]
    );
    assert_eq!(
        lines(&more("interface = \"eth/0\"\naddress = \"10.1.0.1/24\"")),
        ["gw.toml:31:13: cluster.vip[1].interface: invalid interface name \"eth/0\"; allowed: an interface name: 1 to 15 bytes from A-Z a-z 0-9 . _ - @"]
    );
    assert_eq!(
        lines(&more("address = \"10.1.0.1/24\"")),
        ["gw.toml:30:1: cluster.vip[1].interface: missing required key; allowed: an interface name: 1 to 15 bytes from A-Z a-z 0-9 . _ - @"]
    );
}

#[test]
fn peers_use_virtual_addresses() {
    let text = MINIMAL.replace(
        "local_address = \"192.0.2.1\"",
        "local_address = \"192.0.2.7\"",
    );
    assert_eq!(
        lines(&text),
        ["gw.toml:9:17: peer[0].local_address: 192.0.2.7 is not a virtual address of the cluster (peers only ever see the cluster's addresses); allowed: one of the [[cluster.vip]] addresses: 192.0.2.1"]
    );
    // The peer's identity defaults to its local address: the VIP.
    let config = ok(MINIMAL);
    assert_eq!(
        config.peers[0].local_id,
        Identity::Ip("192.0.2.1".parse().unwrap())
    );
    // A bad address is reported once, not also as "not a VIP".
    let text = MINIMAL.replace("local_address = \"192.0.2.1\"", "local_address = \"nope\"");
    assert_eq!(lines(&text).len(), 1, "{:#?}", lines(&text));
}

#[test]
fn gateway_member_id_must_match() {
    let text = MINIMAL.replace("name = \"gw\"\n", "name = \"gw\"\nmember_id = 1\n");
    assert_eq!(ok(&text).gateway.member_id, 1);
    let text = MINIMAL.replace("name = \"gw\"\n", "name = \"gw\"\nmember_id = 2\n");
    assert_eq!(
        lines(&text),
        ["gw.toml:3:13: gateway.member_id: 2 differs from cluster.member_id 1; allowed: the cluster member id (1), or no gateway.member_id (a cluster member uses its cluster member id)"]
    );
    let text = MINIMAL.replace("member_id = 1", "member_id = 2");
    let config = ok(&text);
    assert_eq!(config.gateway.member_id, 2);
    assert_eq!(config.ike_config().member_id, 2);
}

#[test]
fn secret_and_secret_file() {
    let dir = std::env::temp_dir().join(format!("rampart-config-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("secret"), "  0123456789abcdefXYZ\n").unwrap();
    std::fs::write(dir.join("short"), "0123\n").unwrap();
    let file = dir.join("gw.toml");
    let with_file = |name: &str| {
        MINIMAL.replace(
            "secret = \"0123456789abcdef\"",
            &format!("secret_file = \"{name}\""),
        )
    };
    let load = |text: &str| {
        std::fs::write(&file, text).unwrap();
        load(&file)
    };
    let c = load(&with_file("secret")).unwrap().cluster.unwrap();
    assert_eq!(c.auth.secret.as_slice(), b"0123456789abcdefXYZ");
    let e = load(&with_file("short")).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:17:15: cluster.secret_file: the cluster secret is 4 bytes long; allowed: at least 16 bytes",
            file.display()
        )
    );
    let e = load(&with_file("absent")).unwrap_err();
    assert!(
        e.to_string()
            .contains(":17:15: cluster.secret_file: cannot read "),
        "{e}"
    );
    assert_eq!(e.0[0].kind, ErrorKind::Io);
    std::fs::remove_dir_all(&dir).unwrap();

    assert_eq!(
        lines(&MINIMAL.replace("\"0123456789abcdef\"\n\n[[cluster", "\"0123456789abcde\"\n\n[[cluster")),
        ["gw.toml:17:10: cluster.secret: the cluster secret is 15 bytes long; allowed: at least 16 bytes"]
    );
    assert_eq!(
        lines(&with_cluster("secret_file = \"/etc/x\"")),
        ["gw.toml:16:15: cluster.secret_file: both secret and secret_file are set; allowed: exactly one of secret and secret_file"]
    );
    assert_eq!(
        kinds(&with_cluster("secret_file = \"/etc/x\"")),
        [ErrorKind::Conflict]
    );
    // Neither Debug output shows the secret.
    let config = ok(MINIMAL);
    let shown = format!("{config:?}");
    assert!(!shown.contains("0123456789abcdef\""), "{shown}");
}

#[test]
fn tls_files() {
    let dir = std::env::temp_dir().join(format!("rampart-config-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ca = rampart_pki::ca::init_ca(
        &dir.join("pki"),
        "cluster CA",
        rampart_pki::ca::Algorithm::EcdsaP256,
        30,
    )
    .unwrap();
    let cert = rampart_pki::ca::issue(
        &dir.join("pki"),
        "member1",
        &[],
        rampart_pki::ca::Algorithm::EcdsaP256,
        false,
        30,
    )
    .unwrap();
    let key = dir.join("pki/private/member1.key");
    let file = dir.join("gw.toml");
    let load = |tls: &str| {
        std::fs::write(&file, with_cluster(tls)).unwrap();
        load(&file)
    };
    let all = format!(
        "tls_ca = \"{}\"\ntls_cert = \"pki/certs/member1.crt\"\ntls_key = \"{}\"",
        ca.display(),
        key.display()
    );
    let c = load(&all).unwrap().cluster.unwrap();
    let tls = c.auth.tls.unwrap();
    assert_eq!(tls.ca, ca);
    // Relative paths start at the configuration file's directory.
    assert_eq!(tls.cert, cert);
    assert_eq!(tls.key, key);

    let e = load("tls_cert = \"pki/certs/member1.crt\"").unwrap_err();
    let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["cluster.tls_ca", "cluster.tls_key"], "{e}");
    assert!(e.0[0].to_string().ends_with(
        "cluster.tls_ca: tls_ca is missing; the TLS files come as a set; allowed: all of tls_ca, tls_cert and tls_key (PEM files issued by `rampart pki`), or none"
    ), "{e}");

    // The CA's key is not member1's key; the certificate is not a CA file.
    let swapped = "tls_ca = \"pki/private/ca.key\"\ntls_cert = \"pki/certs/member1.crt\"\ntls_key = \"pki/private/ca.key\"";
    let e = load(swapped).unwrap_err();
    let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["cluster.tls_ca", "cluster.tls_cert"], "{e}");
    assert!(e.0[1].message.contains("does not belong"), "{e}");
    let e = load(&all.replace("member1.key", "absent.key")).unwrap_err();
    assert_eq!(e.0[0].key, "cluster.tls_key", "{e}");
    assert_eq!(e.0[0].kind, ErrorKind::Io);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_cluster_key_is_restart_only() {
    let base = ok(MINIMAL);
    assert!(base.cluster_changes(&ok(MINIMAL)).is_empty());
    let without = ok(MINIMAL.split("[cluster]").next().unwrap());
    assert_eq!(base.cluster_changes(&without), ["cluster"]);
    assert_eq!(without.cluster_changes(&base), ["cluster"]);
    assert!(without.cluster_changes(&without).is_empty());
    for (line, key) in [
        (
            "heartbeat_interval = \"200ms\"",
            "cluster.heartbeat_interval",
        ),
        ("dead_after = 4", "cluster.dead_after"),
        ("switch_back = true", "cluster.switch_back"),
        ("monitor = [\"eth0\"]", "cluster.monitor"),
        ("primary = 2", "cluster.member"),
        ("retransmit_queue = 2048", "cluster.retransmit_queue"),
        ("takeover_margin = 5", "cluster.takeover_margin"),
        ("esp_sync_interval = \"1s\"", "cluster.esp_sync_interval"),
    ] {
        assert_eq!(
            base.cluster_changes(&ok(&with_cluster(line))),
            [key],
            "{line}"
        );
    }
    let renamed = ok(&MINIMAL.replace("name = \"hq\"", "name = \"dc\""));
    assert_eq!(base.cluster_changes(&renamed), ["cluster.name"]);
    let other_secret = ok(&MINIMAL.replace(
        "secret = \"0123456789abcdef\"",
        "secret = \"0123456789abcdefg\"",
    ));
    assert_eq!(base.cluster_changes(&other_secret), ["cluster.secret"]);
    let other_vip = ok(&MINIMAL.replace("\"192.0.2.1/24\"", "\"192.0.2.1/25\""));
    assert_eq!(base.cluster_changes(&other_vip), ["cluster.vip"]);
    let other_id = ok(&MINIMAL.replace("member_id = 1", "member_id = 2"));
    assert_eq!(base.cluster_changes(&other_id), ["cluster.member_id"]);
}
