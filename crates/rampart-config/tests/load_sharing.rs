//! `[cluster] mode = "load-sharing"` and the redundant sync networks: the examples, the
//! defaults, every key's values and ranges, the keys refused where they do not apply, and the
//! reload refusals, with the exact error lines.

use std::net::SocketAddr;
use std::time::Duration;

use rampart_config::*;

const MEMBER_1: &str = include_str!("../../../examples/cluster-ls/member-1.toml");
const MEMBER_2: &str = include_str!("../../../examples/cluster-ls/member-2.toml");
const MEMBER_3: &str = include_str!("../../../examples/cluster-ls/member-3.toml");

/// The smallest valid Load Sharing member (three members, routed): everything else takes its
/// default. Line 16 is the first line after `mode`.
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
mode = "load-sharing"
name = "ls"
member_id = 1
secret = "0123456789abcdef"

[[cluster.member]]
id = 1
address = "10.255.0.1"

[[cluster.member]]
id = 2
address = "10.255.0.2"

[[cluster.member]]
id = 3
address = "10.255.0.3"

[[cluster.vip]]
address = "192.0.2.1"
"#;

fn ok(text: &str) -> GatewayConfig {
    match parse(text, "gw.toml") {
        Ok(c) => c,
        Err(e) => panic!("unexpected errors:\n{e}\n{text}"),
    }
}

fn lines(text: &str) -> Vec<String> {
    match parse(text, "gw.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

/// MINIMAL with `line` inserted after `mode` (so it starts on line 16).
fn with(line: &str) -> String {
    MINIMAL.replacen(
        "mode = \"load-sharing\"\n",
        &format!("mode = \"load-sharing\"\n{line}\n"),
        1,
    )
}

fn ls(text: &str) -> LoadSharingConfig {
    ok(text)
        .cluster
        .expect("a cluster")
        .load_sharing
        .expect("load sharing")
}

/// `text` with the `[[cluster.vip]]` table replaced by one with these lines.
fn vip(text: &str, lines: &str) -> String {
    text.replacen(
        "[[cluster.vip]]\naddress = \"192.0.2.1\"\n",
        &format!("[[cluster.vip]]\n{lines}\n"),
        1,
    )
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn the_examples_are_valid_and_agree() {
    let configs: Vec<ClusterConfig> = [MEMBER_1, MEMBER_2, MEMBER_3]
        .iter()
        .map(|t| ok(t).cluster.expect("a cluster"))
        .collect();
    for (i, c) in configs.iter().enumerate() {
        assert_eq!(c.member_id as usize, i + 1);
        assert_eq!(c.mode, ClusterMode::LoadSharing);
        assert_eq!(c.members, configs[0].members);
        assert_eq!(c.virtual_addresses, configs[0].virtual_addresses);
        assert_eq!(c.load_sharing, configs[0].load_sharing);
        assert_eq!(c.auth, configs[0].auth);
    }
    let c = &configs[0];
    let l = c.load_sharing.as_ref().unwrap();
    assert_eq!(l.distribution, Distribution::Routed);
    assert!(l.flush_ack);
    assert_eq!(l.announce_table, 202);
    assert_eq!(c.members.len(), 3);
    // Two sync networks: every member has one extra address.
    assert!(c.members.iter().all(|m| m.extra_sync_addresses.len() == 1));
    // Routed: the addresses are host addresses on the tunnel device.
    assert!(c
        .virtual_addresses
        .iter()
        .all(|v| v.interface == "rampart0" && v.address.prefix_len() == 32));
}

#[test]
fn defaults() {
    let config = ok(MINIMAL);
    let c = config.cluster.as_ref().unwrap();
    assert_eq!(c.mode, ClusterMode::LoadSharing);
    assert_eq!(
        c.load_sharing,
        Some(LoadSharingConfig {
            distribution: Distribution::Routed,
            flush_ack: true,
            hold_timeout: Duration::from_millis(250),
            max_holds: 4096,
            hold_timeout_action: TimeoutPolicy::Release,
            update_timeout: Duration::from_millis(250),
            max_pending_updates: rampart_cluster::DEFAULT_MAX_PENDING,
            enhanced_handshake: false,
            announce_table: 202,
        })
    );
    assert_eq!(c.sync_link_hold_down, Duration::from_secs(5));
    assert!(c.members.iter().all(|m| m.extra_sync_addresses.is_empty()));
    // Routed distribution: no interface written means the tunnel device.
    assert_eq!(
        c.virtual_addresses,
        [VirtualAddress {
            interface: "rampart0".into(),
            address: "192.0.2.1/32".parse().unwrap()
        }]
    );
    let other_device = MINIMAL.replace("[local]", "[tunnel]\ndevice = \"vpn7\"\n\n[local]");
    assert_eq!(
        ok(&other_device).cluster.unwrap().virtual_addresses[0].interface,
        "vpn7"
    );
    // High availability has no Load Sharing part, and the sync network keys still apply.
    let ha = ok(&MINIMAL
        .replace("mode = \"load-sharing\"", "mode = \"high-availability\"")
        .replace(
            "[[cluster.vip]]\n",
            "[[cluster.vip]]\ninterface = \"eth1\"\n",
        ))
    .cluster
    .unwrap();
    assert_eq!(ha.mode, ClusterMode::HighAvailability);
    assert_eq!(ha.load_sharing, None);
    assert_eq!(ha.sync_link_hold_down, Duration::from_secs(5));
}

#[test]
fn every_key_is_read() {
    let l = ls(&with(
        "distribution = \"routed\"\nflush_ack = false\nhold_timeout = \"400ms\"\nmax_holds = 100\nhold_timeout_action = \"drop\"\nupdate_timeout = \"1s\"\nenhanced_handshake = true\nannounce_table = 1000",
    ));
    assert_eq!(l.distribution, Distribution::Routed);
    assert!(!l.flush_ack);
    assert_eq!(l.hold_timeout, Duration::from_millis(400));
    assert_eq!(l.max_holds, 100);
    assert_eq!(l.hold_timeout_action, TimeoutPolicy::Drop);
    assert_eq!(l.update_timeout, Duration::from_secs(1));
    assert!(l.enhanced_handshake);
    assert_eq!(l.announce_table, 1000);
    let unicast = with("distribution = \"unicast\"\nenhanced_handshake = true");
    let unicast = vip(&unicast, "interface = \"eth1\"\naddress = \"192.0.2.1/24\"");
    let c = ok(&unicast).cluster.unwrap();
    let l = c.load_sharing.unwrap();
    assert_eq!(l.distribution, Distribution::Unicast);
    assert!(l.enhanced_handshake);
    // Unicast: the pivot owns the addresses like the active member of high availability.
    assert_eq!(
        c.virtual_addresses,
        [VirtualAddress {
            interface: "eth1".into(),
            address: "192.0.2.1/24".parse().unwrap()
        }]
    );
    let c = ok(&with("sync_link_hold_down = \"30s\"")).cluster.unwrap();
    assert_eq!(c.sync_link_hold_down, Duration::from_secs(30));
    // Integer seconds are durations too.
    assert_eq!(
        ls(&with("hold_timeout = 1")).hold_timeout,
        Duration::from_secs(1)
    );
}

#[test]
fn values_and_ranges() {
    for (line, error) in [
        ("distribution = \"anycast\"", "gw.toml:16:16: cluster.distribution: unknown value \"anycast\"; allowed: routed, unicast"),
        ("hold_timeout = \"0ms\"", "gw.toml:16:16: cluster.hold_timeout: 0s is out of range; allowed: 1ms to 5s"),
        ("hold_timeout = \"6s\"", "gw.toml:16:16: cluster.hold_timeout: 6s is out of range; allowed: 1ms to 5s"),
        ("hold_timeout = \"soon\"", "gw.toml:16:16: cluster.hold_timeout: invalid duration \"soon\": expected a number at \"soon\"; allowed: a number with a unit ms, s, m, h or d, possibly combined (\"500ms\", \"30s\", \"1h30m\"), or an integer number of seconds"),
        ("hold_timeout = -1", "gw.toml:16:16: cluster.hold_timeout: negative duration -1; allowed: a number with a unit ms, s, m, h or d, possibly combined (\"500ms\", \"30s\", \"1h30m\"), or an integer number of seconds"),
        ("max_holds = 0", "gw.toml:16:13: cluster.max_holds: 0 is out of range; allowed: 1 to 262144"),
        ("max_holds = 262145", "gw.toml:16:13: cluster.max_holds: 262145 is out of range; allowed: 1 to 262144"),
        ("hold_timeout_action = \"wait\"", "gw.toml:16:23: cluster.hold_timeout_action: unknown value \"wait\"; allowed: release, drop"),
        ("update_timeout = \"10s\"", "gw.toml:16:18: cluster.update_timeout: 10s is out of range; allowed: 1ms to 5s"),
        ("announce_table = 0", "gw.toml:16:18: cluster.announce_table: 0 is out of range; allowed: 1 to 4294967295"),
        ("announce_table = 4294967296", "gw.toml:16:18: cluster.announce_table: 4294967296 is out of range; allowed: 1 to 4294967295"),
        ("announce_table = 254", "gw.toml:16:18: cluster.announce_table: 254 is a table of the kernel (253 default, 254 main, 255 local); allowed: a table of its own: 1 to 252 or 256 to 4294967295"),
        ("sync_link_hold_down = \"10ms\"", "gw.toml:16:23: cluster.sync_link_hold_down: 10ms is out of range; allowed: 100ms to 10m"),
        ("sync_link_hold_down = \"1h\"", "gw.toml:16:23: cluster.sync_link_hold_down: 1h is out of range; allowed: 100ms to 10m"),
        ("flush_ack = \"yes\"", "gw.toml:16:13: cluster.flush_ack: wrong type: found string \"yes\"; allowed: true or false"),
        ("enhanced_handshake = 1", "gw.toml:16:22: cluster.enhanced_handshake: wrong type: found integer `1`; allowed: true or false"),
    ] {
        assert_eq!(lines(&with(line)), [error], "{line}");
    }
    // Every range end is accepted.
    for line in [
        "hold_timeout = \"1ms\"",
        "hold_timeout = \"5s\"",
        "max_holds = 1",
        "max_holds = 262144",
        "update_timeout = \"1ms\"",
        "update_timeout = \"5s\"",
        "announce_table = 1",
        "announce_table = 4294967295",
        "sync_link_hold_down = \"100ms\"",
        "sync_link_hold_down = \"10m\"",
    ] {
        ok(&with(line));
    }
    let l = lines(&with("mode2 = 1"));
    assert!(
        l[0].starts_with("gw.toml:16:1: cluster.mode2: unknown key; allowed: name, member_id, mode, priority, primary, switch_back, heartbeat_interval, dead_after, monitor, secret, secret_file, tls_ca, tls_cert, tls_key, retransmit_queue, takeover_margin, esp_sync_interval, sync_link_hold_down, distribution, flush_ack, hold_timeout, max_holds, hold_timeout_action, update_timeout, enhanced_handshake, announce_table, member, vip"),
        "{l:#?}"
    );
}

#[test]
fn load_sharing_keys_are_refused_in_high_availability() {
    let ha = |line: &str| {
        with(line)
            .replace("mode = \"load-sharing\"", "mode = \"high-availability\"")
            .replace(
                "[[cluster.vip]]\n",
                "[[cluster.vip]]\ninterface = \"eth1\"\n",
            )
    };
    for (line, key, col) in [
        ("distribution = \"routed\"", "distribution", 16),
        ("flush_ack = true", "flush_ack", 13),
        ("hold_timeout = \"1s\"", "hold_timeout", 16),
        ("max_holds = 10", "max_holds", 13),
        ("hold_timeout_action = \"drop\"", "hold_timeout_action", 23),
        ("update_timeout = \"1s\"", "update_timeout", 18),
        ("enhanced_handshake = true", "enhanced_handshake", 22),
        ("announce_table = 300", "announce_table", 18),
    ] {
        assert_eq!(
            lines(&ha(line)),
            [format!("gw.toml:16:{col}: cluster.{key}: {key} applies to load sharing only (the mode is high-availability); allowed: mode = \"load-sharing\", or no {key}")],
            "{line}"
        );
    }
    // Without a mode the cluster is high availability too.
    let text = ha("max_holds = 10").replace("mode = \"high-availability\"\n", "");
    assert_eq!(
        lines(&text),
        ["gw.toml:15:13: cluster.max_holds: max_holds applies to load sharing only (the mode is high-availability); allowed: mode = \"load-sharing\", or no max_holds"]
    );
    // A value out of range is reported as well as the key's place.
    assert_eq!(
        lines(&ha("max_holds = 0")),
        [
            "gw.toml:16:13: cluster.max_holds: 0 is out of range; allowed: 1 to 262144",
            "gw.toml:16:13: cluster.max_holds: max_holds applies to load sharing only (the mode is high-availability); allowed: mode = \"load-sharing\", or no max_holds",
        ]
    );
}

#[test]
fn routed_keys_are_refused_in_unicast() {
    let unicast = |line: &str| {
        with(&format!("distribution = \"unicast\"\n{line}")).replace(
            "[[cluster.vip]]\n",
            "[[cluster.vip]]\ninterface = \"eth1\"\n",
        )
    };
    for (line, key, col) in [
        ("flush_ack = true", "flush_ack", 13),
        ("hold_timeout = \"1s\"", "hold_timeout", 16),
        ("max_holds = 10", "max_holds", 13),
        ("hold_timeout_action = \"drop\"", "hold_timeout_action", 23),
        ("announce_table = 300", "announce_table", 18),
    ] {
        assert_eq!(
            lines(&unicast(line)),
            [format!("gw.toml:17:{col}: cluster.{key}: {key} applies to distribution = \"routed\" only (in unicast distribution the pivot hands each flow to its owner, which alone sees it: nothing is held or announced); allowed: distribution = \"routed\", or no {key}")],
            "{line}"
        );
    }
    // A packet of an unknown connection is asked for in unicast distribution too.
    let l = ok(&unicast("update_timeout = \"1s\""))
        .cluster
        .unwrap()
        .load_sharing
        .unwrap();
    assert_eq!(l.update_timeout, Duration::from_secs(1));
    // The election keys choose the pivot in unicast distribution.
    let c = ok(&unicast("primary = 2\nswitch_back = true"))
        .cluster
        .unwrap();
    assert!(c.switch_back);
    assert_eq!(c.member(2).unwrap().priority, 200);
}

#[test]
fn election_keys_are_refused_in_routed() {
    assert_eq!(
        lines(&with("primary = 2\nswitch_back = true")),
        [
            "gw.toml:16:11: cluster.primary: primary chooses the active member of high availability or the pivot of unicast distribution; with distribution = \"routed\" every member carries traffic alike; allowed: no primary, or distribution = \"unicast\"",
            "gw.toml:17:15: cluster.switch_back: switch_back chooses the active member of high availability or the pivot of unicast distribution; with distribution = \"routed\" every member carries traffic alike; allowed: no switch_back, or distribution = \"unicast\"",
        ]
    );
    // Priorities still order the pivot election (shown in status); they are accepted.
    let c = ok(&with("priority = 150")).cluster.unwrap();
    assert_eq!(c.me().priority, 150);
}

#[test]
fn routed_virtual_addresses_are_host_addresses() {
    let text = vip(MINIMAL, "address = \"192.0.2.1/24\"");
    assert_eq!(
        lines(&text),
        ["gw.toml:33:11: cluster.vip[0].address: 192.0.2.1/24 is not a host address: with distribution = \"routed\" every member holds it, and a subnet on it would also route the subnet there; allowed: a host address (\"192.0.2.1\" or \"192.0.2.1/32\"); the routers reach it by the routes the members announce"]
    );
    let text = vip(MINIMAL, "address = \"2001:db8::1/64\"");
    let l = lines(&text);
    assert!(
        l.iter().any(|l| l.starts_with(
            "gw.toml:33:11: cluster.vip[0].address: 2001:db8::1/64 is not a host address"
        ) && l.contains("\"2001:db8::1/128\"")),
        "{l:#?}"
    );
    // An interface may be named (lo, a dummy device); the address stays a host address.
    let c = ok(&MINIMAL.replace("[[cluster.vip]]\n", "[[cluster.vip]]\ninterface = \"lo\"\n"))
        .cluster
        .unwrap();
    assert_eq!(c.virtual_addresses[0].interface, "lo");
    // Unicast distribution needs the interface, like high availability.
    let text = with("distribution = \"unicast\"");
    assert_eq!(
        lines(&text),
        ["gw.toml:33:1: cluster.vip[0].interface: missing required key; allowed: an interface name: 1 to 15 bytes from A-Z a-z 0-9 . _ - @"]
    );
}

/// MINIMAL with `extra_addresses` lists for members 1, 2, 3 (`None`: no key).
fn with_extra(lists: [Option<&str>; 3]) -> String {
    let mut text = MINIMAL.to_string();
    for (i, list) in lists.iter().enumerate() {
        if let Some(list) = list {
            let line = format!("address = \"10.255.0.{}\"\n", i + 1);
            text = text.replacen(&line, &format!("{line}extra_addresses = {list}\n"), 1);
        }
    }
    text
}

#[test]
fn extra_sync_addresses() {
    let c = ok(&with_extra([
        Some("[\"10.9.1.1\", \"10.9.2.1\"]"),
        Some("[\"10.9.1.2\", \"10.9.2.2\"]"),
        Some("[\"10.9.1.3\", \"10.9.2.3\"]"),
    ]))
    .cluster
    .unwrap();
    assert_eq!(
        c.me().extra_sync_addresses,
        [addr("10.9.1.1:8116"), addr("10.9.2.1:8116")]
    );
    assert_eq!(
        c.member(3).unwrap().extra_sync_addresses,
        [addr("10.9.1.3:8116"), addr("10.9.2.3:8116")]
    );
    // The member's port goes with each of its addresses.
    let text = with_extra([
        Some("[\"10.9.1.1\"]"),
        Some("[\"10.9.1.2\"]"),
        Some("[\"10.9.1.3\"]"),
    ])
    .replace(
        "address = \"10.255.0.2\"\n",
        "address = \"10.255.0.2\"\nport = 9000\n",
    );
    let c = ok(&text).cluster.unwrap();
    assert_eq!(
        c.member(2).unwrap().extra_sync_addresses,
        [addr("10.9.1.2:9000")]
    );
    // An empty list is no extra link, on every member.
    let c = ok(&with_extra([Some("[]"), Some("[]"), None]))
        .cluster
        .unwrap();
    assert!(c.members.iter().all(|m| m.extra_sync_addresses.is_empty()));
    // High availability has redundant sync networks too.
    let ha = with_extra([
        Some("[\"10.9.1.1\"]"),
        Some("[\"10.9.1.2\"]"),
        Some("[\"10.9.1.3\"]"),
    ])
    .replace("mode = \"load-sharing\"", "mode = \"high-availability\"")
    .replace(
        "[[cluster.vip]]\n",
        "[[cluster.vip]]\ninterface = \"eth1\"\n",
    );
    assert_eq!(
        ok(&ha).cluster.unwrap().me().extra_sync_addresses,
        [addr("10.9.1.1:8116")]
    );
}

#[test]
fn extra_sync_address_errors() {
    // Member 2 (file line 25) has one address fewer.
    assert_eq!(
        lines(&with_extra([
            Some("[\"10.9.1.1\", \"10.9.2.1\"]"),
            Some("[\"10.9.1.2\"]"),
            Some("[\"10.9.1.3\", \"10.9.2.3\"]"),
        ])),
        ["gw.toml:28:19: cluster.member[1].extra_addresses: 1 extra addresses, but cluster.member[0] has 2; allowed: the same number of extra addresses on every member (link i of one member talks to link i of the others)"]
    );
    // No key at all counts as none.
    assert_eq!(
        lines(&with_extra([Some("[\"10.9.1.1\"]"), Some("[\"10.9.1.2\"]"), None])),
        ["gw.toml:30:1: cluster.member[2].extra_addresses: 0 extra addresses, but cluster.member[0] has 1; allowed: the same number of extra addresses on every member (link i of one member talks to link i of the others)"]
    );
    let four = "[\"10.9.1.1\", \"10.9.2.1\", \"10.9.3.1\", \"10.9.4.1\"]";
    let l = lines(&with_extra([Some(four), None, None]));
    assert_eq!(
        l[0],
        "gw.toml:23:19: cluster.member[0].extra_addresses: 4 extra addresses; allowed: at most 3 (with address, 4 sync networks)"
    );
    // The same address twice: the member's own address, another member's extra address.
    assert_eq!(
        lines(&with_extra([Some("[\"10.255.0.1\"]"), Some("[\"10.9.1.2\"]"), Some("[\"10.9.1.3\"]")])),
        ["gw.toml:23:20: cluster.member[0].extra_addresses[0]: sync address 10.255.0.1:8116 is also cluster.member[0].address (this member's); allowed: an address (and port) used by no other sync link"]
    );
    assert_eq!(
        lines(&with_extra([Some("[\"10.9.1.1\"]"), Some("[\"10.9.1.1\"]"), Some("[\"10.9.1.3\"]")])),
        ["gw.toml:28:20: cluster.member[1].extra_addresses[0]: sync address 10.9.1.1:8116 is also cluster.member[0].extra_addresses[0]; allowed: an address (and port) used by no other sync link"]
    );
    // A virtual address, an invalid one, a multicast one.
    assert_eq!(
        lines(&with_extra([Some("[\"192.0.2.1\"]"), Some("[\"10.9.1.2\"]"), Some("[\"10.9.1.3\"]")])),
        ["gw.toml:23:20: cluster.member[0].extra_addresses[0]: 192.0.2.1 is a virtual address of the cluster; allowed: an address of this member's own on the sync network"]
    );
    assert_eq!(
        lines(&with_extra([Some("[\"10.9.1\"]"), Some("[\"10.9.1.2\"]"), Some("[\"10.9.1.3\"]")])),
        ["gw.toml:23:20: cluster.member[0].extra_addresses[0]: invalid IP address \"10.9.1\"; allowed: an IPv4 or IPv6 address"]
    );
    assert_eq!(
        lines(&with_extra([Some("[\"224.0.0.9\"]"), Some("[\"10.9.1.2\"]"), Some("[\"10.9.1.3\"]")])),
        ["gw.toml:23:20: cluster.member[0].extra_addresses[0]: 224.0.0.9 is not a unicast address; allowed: a unicast IPv4 or IPv6 address"]
    );
    // One family per link: link 1 may be IPv6 while link 0 is IPv4, but on every member.
    let c = ok(&with_extra([
        Some("[\"fd09::1\"]"),
        Some("[\"fd09::2\"]"),
        Some("[\"fd09::3\"]"),
    ]))
    .cluster
    .unwrap();
    assert_eq!(c.me().extra_sync_addresses, [addr("[fd09::1]:8116")]);
    assert_eq!(
        lines(&with_extra([Some("[\"fd09::1\"]"), Some("[\"fd09::2\"]"), Some("[\"10.9.1.3\"]")])),
        ["gw.toml:33:20: cluster.member[2].extra_addresses[0]: 10.9.1.3 is not of the address family of cluster.member[0].extra_addresses[0] fd09::1; allowed: one family per sync network (all IPv4 or all IPv6)"]
    );
    assert_eq!(
        lines(&with_extra([Some("\"10.9.1.1\""), Some("[\"10.9.1.2\"]"), Some("[\"10.9.1.3\"]")]))
            [0],
        "gw.toml:23:19: cluster.member[0].extra_addresses: wrong type: found string \"10.9.1.1\"; allowed: an array"
    );
}

#[test]
fn announce_table_and_rim_do_not_share_a_table() {
    let rim =
        |cluster_line: &str, rim_line: &str| with(cluster_line) + &format!("\n[rim]\n{rim_line}\n");
    let l = lines(&rim("announce_table = 201", ""));
    assert_eq!(
        l,
        ["gw.toml:16:18: cluster.announce_table: table 201 is both [rim] table and cluster.announce_table; allowed: two different tables (defaults: rim.table 201, cluster.announce_table 202)"]
    );
    let l = lines(&rim("", "table = 202"));
    assert_eq!(
        l,
        ["gw.toml:37:9: rim.table: table 202 is both [rim] table and cluster.announce_table; allowed: two different tables (defaults: rim.table 201, cluster.announce_table 202)"]
    );
    // The defaults differ; unicast distribution announces nothing.
    ok(&rim("", ""));
    ok(&(with("distribution = \"unicast\"").replace(
        "[[cluster.vip]]\n",
        "[[cluster.vip]]\ninterface = \"eth1\"\n",
    ) + "\n[rim]\ntable = 202\n"));
}

#[test]
fn two_to_five_members() {
    let one = MINIMAL
        .replace(
            "[[cluster.member]]\nid = 2\naddress = \"10.255.0.2\"\n\n",
            "",
        )
        .replace(
            "[[cluster.member]]\nid = 3\naddress = \"10.255.0.3\"\n\n",
            "",
        );
    assert_eq!(
        lines(&one),
        ["gw.toml:14:1: cluster.member: 1 [[cluster.member]] tables; allowed: 2 to 5 [[cluster.member]] tables (this gateway included), each with id and address"]
    );
    let mut six = MINIMAL.to_string();
    for id in 4..=6 {
        six.push_str(&format!(
            "[[cluster.member]]\nid = {}\naddress = \"10.255.0.{id}\"\n",
            if id == 6 { 5 } else { id }
        ));
    }
    let l = lines(&six);
    assert!(
        l[0].starts_with("gw.toml:40:1: cluster.member: 6 [[cluster.member]] tables;"),
        "{l:#?}"
    );
    let mut five = MINIMAL.to_string();
    for id in 4..=5 {
        five.push_str(&format!(
            "[[cluster.member]]\nid = {id}\naddress = \"10.255.0.{id}\"\n"
        ));
    }
    assert_eq!(ok(&five).cluster.unwrap().members.len(), 5);
    let two = MINIMAL.replace(
        "[[cluster.member]]\nid = 3\naddress = \"10.255.0.3\"\n\n",
        "",
    );
    assert_eq!(ok(&two).cluster.unwrap().members.len(), 2);
}

#[test]
fn every_new_key_is_restart_only() {
    let base = ok(MINIMAL);
    assert!(base.cluster_changes(&ok(MINIMAL)).is_empty());
    for (line, key) in [
        ("distribution = \"routed\"", None),
        ("flush_ack = true", None),
        ("flush_ack = false", Some("cluster.flush_ack")),
        ("hold_timeout = \"300ms\"", Some("cluster.hold_timeout")),
        ("max_holds = 5", Some("cluster.max_holds")),
        (
            "hold_timeout_action = \"drop\"",
            Some("cluster.hold_timeout_action"),
        ),
        ("update_timeout = \"1s\"", Some("cluster.update_timeout")),
        (
            "enhanced_handshake = true",
            Some("cluster.enhanced_handshake"),
        ),
        ("announce_table = 7", Some("cluster.announce_table")),
        (
            "sync_link_hold_down = \"1s\"",
            Some("cluster.sync_link_hold_down"),
        ),
    ] {
        let changes = base.cluster_changes(&ok(&with(line)));
        assert_eq!(changes, key.into_iter().collect::<Vec<_>>(), "{line}");
    }
    let unicast = ok(&vip(
        &with("distribution = \"unicast\""),
        "interface = \"rampart0\"\naddress = \"192.0.2.1/32\"",
    ));
    assert_eq!(base.cluster_changes(&unicast), ["cluster.distribution"]);
    let ha = ok(&MINIMAL
        .replace("mode = \"load-sharing\"", "mode = \"high-availability\"")
        .replace(
            "[[cluster.vip]]\n",
            "[[cluster.vip]]\ninterface = \"rampart0\"\n",
        ));
    assert_eq!(base.cluster_changes(&ha), ["cluster.mode"]);
    assert_eq!(ha.cluster_changes(&base), ["cluster.mode"]);
    let extra = ok(&with_extra([
        Some("[\"10.9.1.1\"]"),
        Some("[\"10.9.1.2\"]"),
        Some("[\"10.9.1.3\"]"),
    ]));
    assert_eq!(
        base.cluster_changes(&extra),
        ["cluster.member.extra_addresses"]
    );
    let moved = ok(&MINIMAL.replace("\"10.255.0.3\"", "\"10.255.0.4\""));
    assert_eq!(base.cluster_changes(&moved), ["cluster.member"]);
}
