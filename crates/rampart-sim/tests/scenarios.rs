//! Every shipped scenario passes with its default seed.

fn run_builtin(name: &str) -> rampart_sim::Report {
    let (sc, dir) = rampart_sim::load(name).expect("scenario loads");
    let report = rampart_sim::run(&sc, dir.as_deref(), None).expect("scenario runs");
    let text = report.render();
    assert!(report.passed(), "{name} failed:\n{text}");
    if std::env::var_os("SIM_PRINT").is_some() {
        println!("{text}");
    }
    report
}

#[test]
fn site_to_site() {
    run_builtin("site-to-site");
}

#[test]
fn rekey_under_load() {
    run_builtin("rekey-under-load");
}

#[test]
fn dead_peer() {
    run_builtin("dead-peer");
}

#[test]
fn lossy_wan() {
    run_builtin("lossy-wan");
}

#[test]
fn showcase() {
    run_builtin("showcase");
}

#[test]
fn cert_behind_nat() {
    let report = run_builtin("cert-behind-nat");
    let text = report.render();
    assert!(
        text.contains("IKE fragmentation: an IKE message leaves as encrypted fragments"),
        "the timeline does not show IKE fragmentation:\n{text}"
    );
}

/// The same network with IKE fragmentation off on both gateways: IKE_AUTH is IP-fragmented,
/// the NAT drops the non-first fragments, and no tunnel comes up. This proves that IKE
/// fragmentation is what makes `cert-behind-nat` work.
#[test]
fn cert_behind_nat_without_ike_fragmentation_fails() {
    let builtin = rampart_sim::catalogue()
        .into_iter()
        .find(|b| b.name == "cert-behind-nat")
        .unwrap();
    let marker = "# -- assertions";
    let head = &builtin.text[..builtin.text.find(marker).expect("assertion marker")];
    assert_eq!(head.matches("fragmentation = true").count(), 2);
    let text = head.replace("fragmentation = true", "fragmentation = false")
        + r#"
[[assert]]
no_tunnel = "gw-a"

[[assert]]
no_tunnel = "gw-b"

[[assert]]
node = "nat"
no_drops = "never dropped"
"#;
    let sc = rampart_sim::scenario::parse(&text, "cert-behind-nat-nofrag").unwrap();
    let dir = rampart_sim::builtin_dir().unwrap();
    let report = rampart_sim::run(&sc, Some(&dir), None).unwrap();
    let out = report.render();
    assert!(
        report.passed(),
        "a tunnel came up without IKE fragmentation:\n{out}"
    );
    assert!(
        out.contains("nat: non-first fragment dropped"),
        "the NAT dropped no fragment:\n{out}"
    );
    assert!(
        !out.contains("IKE fragmentation: an IKE message leaves"),
        "{out}"
    );
}

#[test]
fn ha_failover() {
    run_builtin("ha-failover");
}

#[test]
fn ha_rejoin() {
    run_builtin("ha-rejoin");
}

#[test]
fn ha_sync_loss() {
    run_builtin("ha-sync-loss");
}

#[test]
fn ha_split_brain() {
    run_builtin("ha-split-brain");
}

#[test]
fn mep_first_to_respond() {
    run_builtin("mep-first-to-respond");
}

#[test]
fn mep_primary_backup() {
    run_builtin("mep-primary-backup");
}

#[test]
fn mep_load_distribution() {
    run_builtin("mep-load-distribution");
}

#[test]
fn mep_priority_rules() {
    run_builtin("mep-priority-rules");
}

#[test]
fn hotel_wifi() {
    let report = run_builtin("hotel-wifi");
    let text = report.render();
    assert!(
        text.contains("transport tls chosen"),
        "the client did not choose Visitor Mode:\n{text}"
    );
}

#[test]
fn proxy_only() {
    run_builtin("proxy-only");
}

/// The same network without the proxy credentials: the proxy answers 407, no transport
/// reaches the gateway, the client says so in its log and no tunnel comes up.
#[test]
fn proxy_only_without_credentials_fails_clearly() {
    let builtin = rampart_sim::catalogue()
        .into_iter()
        .find(|b| b.name == "proxy-only")
        .unwrap();
    let marker = "# -- assertions";
    let head = &builtin.text[..builtin.text.find(marker).expect("assertion marker")];
    assert_eq!(head.matches("proxy_user = ").count(), 1);
    let text = head
        .replace("proxy_user = \"alice\"\n", "")
        .replace("proxy_password = \"s3cret\"\n", "")
        .replace("duration = \"20s\"", "duration = \"8s\"")
        + r#"
[[assert]]
node = "laptop"
log = "proxy 203.0.113.10:3128 requires authentication (set proxy_user and proxy_password)"

[[assert]]
node = "laptop"
log = "no transport reached the gateway"

[[assert]]
no_tunnel = "vpn"
"#;
    let sc = rampart_sim::scenario::parse(&text, "proxy-only-no-credentials").unwrap();
    let dir = rampart_sim::builtin_dir().unwrap();
    let report = rampart_sim::run(&sc, Some(&dir), None).unwrap();
    let out = report.render();
    assert!(report.passed(), "{out}");
}

#[test]
fn nat_rebinding() {
    run_builtin("nat-rebinding");
}

#[test]
fn roaming() {
    run_builtin("roaming");
}

#[test]
fn mtu_black_hole() {
    run_builtin("mtu-black-hole");
}

/// The mtu-black-hole network with the client's path-MTU probe off: every full-sized segment
/// of the upload, once encrypted, is above the 1280-byte path with DF set; r1's ICMP
/// "fragmentation needed" is dropped by the firewall; the upload stalls. This proves that the
/// probe is what makes `mtu-black-hole` work.
#[test]
fn mtu_black_hole_without_the_probe_stalls() {
    let text = include_str!("../../../scenarios/mtu-black-hole.toml");
    let marker = "# -- assertions";
    let head = &text[..text.find(marker).expect("assertion marker")];
    assert_eq!(head.matches("mtu = 1400\n\"\"\"").count(), 1);
    let text = head
        .replacen(
            "mtu = 1400\n\"\"\"",
            "mtu = 1400\npmtu_probe = false\n\"\"\"",
            1,
        )
        .replace("duration = \"25s\"", "duration = \"10s\"")
        + r#"
[[assert]]
node = "laptop"
no_log = "tunnel MTU"
"#;
    let sc = rampart_sim::scenario::parse(&text, "mtu-black-hole-no-probe").unwrap();
    let dir = rampart_sim::builtin_dir().unwrap();
    let report = rampart_sim::run(&sc, Some(&dir), None).unwrap();
    let out = report.render();
    assert!(report.passed(), "{out}");
    assert!(
        report.transfers[0][5].starts_with("incomplete"),
        "the upload got through without the probe:\n{out}"
    );
    assert!(
        out.contains("packet too big with DF set (ICMP fragmentation needed sent)"),
        "r1 did not refuse the large packets:\n{out}"
    );
    assert!(
        out.contains("firewall: unsolicited inbound packet"),
        "the firewall let the ICMP through:\n{out}"
    );
}

/// hotel-wifi with a firewall that lets TCP 4500 out instead of 443: the ladder picks RFC 9329
/// TCP, IKE and ESP run framed over plain TCP, and the upload completes.
#[test]
fn hotel_wifi_over_rfc9329_tcp() {
    let builtin = rampart_sim::catalogue()
        .into_iter()
        .find(|b| b.name == "hotel-wifi")
        .unwrap();
    assert_eq!(builtin.text.matches("allow = [\"tcp/443\"]").count(), 1);
    let text = builtin
        .text
        .replace("allow = [\"tcp/443\"]", "allow = [\"tcp/4500\"]")
        .replace("transport = \"tls\"", "transport = \"tcp\"")
        .replace(
            "log = \"tls stream from 10.9.0.10\"",
            "log = \"tcp stream from 10.9.0.10\"",
        );
    let sc = rampart_sim::scenario::parse(&text, "hotel-wifi-tcp").unwrap();
    let dir = rampart_sim::builtin_dir().unwrap();
    let report = rampart_sim::run(&sc, Some(&dir), None).unwrap();
    let out = report.render();
    assert!(report.passed(), "{out}");
    assert!(out.contains("transport tcp chosen"), "{out}");
}

/// hotel-wifi where the laptop moves to another network after the tunnel is up: the Visitor
/// Mode stream was bound to the old address, so the client rebuilds the tunnel over a new TLS
/// stream from the new address, and an upload started after the move completes.
#[test]
fn hotel_wifi_move_rebuilds_the_tls_tunnel() {
    let builtin = rampart_sim::catalogue()
        .into_iter()
        .find(|b| b.name == "hotel-wifi")
        .unwrap();
    let marker = "[[assert]]";
    let head = &builtin.text[..builtin.text.find(marker).expect("assertions")];
    assert_eq!(
        head.matches("routes = [\"0.0.0.0/0 via 192.0.2.254\"]")
            .count(),
        1
    );
    assert_eq!(
        head.matches("routes = [\"10.9.0.0/24 via 192.0.2.1\"]")
            .count(),
        1
    );
    let text = head
        .replace(
            "routes = [\"0.0.0.0/0 via 192.0.2.254\"]",
            "routes = [\"0.0.0.0/0 via 192.0.2.254\", \"10.9.1.0/24 via 10.9.0.10\"]",
        )
        .replace(
            "routes = [\"10.9.0.0/24 via 192.0.2.1\"]",
            "routes = [\"10.9.0.0/24 via 192.0.2.1\", \"10.9.1.0/24 via 192.0.2.1\"]",
        )
        .replace("at = \"2s\"", "at = \"4s\"")
        + r#"
[[event]]
at = "2s"
action = "readdress"
node = "laptop"
address = "10.9.1.10/24"
via = "10.9.1.1"

[[assert]]
node = "laptop"
log = "the stream was bound to 10.9.0.10"

[[assert]]
node = "laptop"
moved = "reconnect"
after = "2s"
within = "3s"

[[assert]]
node = "laptop"
transport = "tls"
after = "2s"
up_within = "3s"

[[assert]]
node = "vpn"
log = "tls stream from 10.9.1.10"

[[assert]]
transfer = "upload"
within = "8s"
"#;
    let sc = rampart_sim::scenario::parse(&text, "hotel-wifi-move").unwrap();
    let dir = rampart_sim::builtin_dir().unwrap();
    let report = rampart_sim::run(&sc, Some(&dir), None).unwrap();
    if std::env::var_os("SIM_PRINT").is_some() {
        println!("{}", report.render());
    }
    let out = report.render();
    assert!(report.passed(), "{out}");
}

/// hotel-wifi where the client expects another name on the gateway's TLS certificate: the
/// Visitor Mode handshake fails certificate verification, the client says so, no tunnel.
#[test]
fn hotel_wifi_with_the_wrong_server_name_fails_verification() {
    let builtin = rampart_sim::catalogue()
        .into_iter()
        .find(|b| b.name == "hotel-wifi")
        .unwrap();
    let marker = "[[assert]]";
    let head = &builtin.text[..builtin.text.find(marker).expect("assertions")];
    assert_eq!(
        head.matches("tls_server_name = \"gw-b.example\"").count(),
        1
    );
    let text = head
        .replace(
            "tls_server_name = \"gw-b.example\"",
            "tls_server_name = \"vpn.example\"",
        )
        .replace("duration = \"15s\"", "duration = \"8s\"")
        + r#"
[[assert]]
node = "laptop"
log = "tls: TLS handshake with vpn.example failed"

[[assert]]
node = "vpn"
log = "ended in the TLS handshake"

[[assert]]
no_tunnel = "vpn"
"#;
    let sc = rampart_sim::scenario::parse(&text, "hotel-wifi-wrong-name").unwrap();
    let dir = rampart_sim::builtin_dir().unwrap();
    let report = rampart_sim::run(&sc, Some(&dir), None).unwrap();
    let out = report.render();
    assert!(report.passed(), "{out}");
}

/// roaming with `mobike = false` in the profile: the engine cannot move the SAs, so the client
/// rebuilds the tunnel from the new address: a new IKE SA (a full IKE_SA_INIT and IKE_AUTH)
/// where `roaming` keeps the old one. The new engine asks for the Office Mode address the old
/// one had and gets it back, so the upload in flight survives the gap (TCP retransmits).
#[test]
fn roaming_without_mobike_reconnects() {
    let builtin = rampart_sim::catalogue()
        .into_iter()
        .find(|b| b.name == "roaming")
        .unwrap();
    let marker = "# -- assertions";
    let head = &builtin.text[..builtin.text.find(marker).expect("assertion marker")];
    assert_eq!(head.matches("transports = [\"udp\"]\n").count(), 1);
    let text = head.replace(
        "transports = [\"udp\"]\n",
        "transports = [\"udp\"]\nmobike = false\n",
    ) + r#"
[[assert]]
node = "laptop"
log = "cannot move the SAs"

[[assert]]
node = "laptop"
moved = "reconnect"
after = "2.5s"
within = "1s"

[[assert]]
node = "laptop"
transport = "udp"
after = "2.5s"
up_within = "1s"

[[assert]]
node = "vpn"
log = "IKE SA 0x1 down (DeletedByPeer)"
after = "2.5s"
within = "1s"

[[assert]]
node = "vpn"
log = "got 10.99.0.1 (IKE SA 0x3)"
after = "2.5s"
within = "1s"

[[assert]]
transfer = "upload"
within = "10s"

[[assert]]
transfer = "after-move"
within = "5s"
"#;
    let sc = rampart_sim::scenario::parse(&text, "roaming-without-mobike").unwrap();
    let dir = rampart_sim::builtin_dir().unwrap();
    let report = rampart_sim::run(&sc, Some(&dir), None).unwrap();
    let out = report.render();
    assert!(report.passed(), "{out}");
}

#[test]
fn ls_asymmetric() {
    run_builtin("ls-asymmetric");
}

#[test]
fn ls_asymmetric_no_fa() {
    run_builtin("ls-asymmetric-no-fa");
}

#[test]
fn ls_member_dies() {
    run_builtin("ls-member-dies");
}

#[test]
fn ls_unicast() {
    run_builtin("ls-unicast");
}

#[test]
fn sync_over_wan() {
    run_builtin("sync-over-wan");
}

#[test]
fn sync_link_fails() {
    run_builtin("sync-link-fails");
}

/// `ls-asymmetric` with connections the other way as well (h1 to h2): their SYN is created
/// by the member r-in picks, their SYN-ACK inspected by the SA owner, and h1's next segment
/// is back at the creator 40 us later, while the owner's record of the SYN-ACK needs 500 us.
/// The owner holds the SYN-ACK (Flush-and-Ack covers the handshake's state change as well as
/// the creating packet), so the creator has the new state when that segment arrives: without
/// it, 1566 packets of the 1000 outbound connections were dropped as "unexpected packet
/// during the TCP handshake" with seed 1.
#[test]
fn ls_asymmetric_both_directions() {
    let builtin = rampart_sim::catalogue()
        .into_iter()
        .find(|b| b.name == "ls-asymmetric")
        .unwrap();
    let at = builtin
        .text
        .find("# -- assertions")
        .expect("assertion marker");
    let text = format!(
        "{}{}{}",
        &builtin.text[..at],
        r#"
[[transfer]]
name = "outbound"
from = "h1"
to = "h2"
size = "2KB"
at = "3002500us"
count = 1000
every = "5ms"
port = 7000

[[assert]]
transfer = "outbound"
within = "2s"

"#,
        &builtin.text[at..]
    )
    .replace(
        "update_requests_at_most = 0",
        "update_requests_at_most = 1000000",
    );
    let sc = rampart_sim::scenario::parse(&text, "ls-asymmetric-both-directions").unwrap();
    let dir = rampart_sim::builtin_dir().unwrap();
    let report = rampart_sim::run(&sc, Some(&dir), None).unwrap();
    assert!(report.passed(), "{}", report.render());
}

#[test]
fn ra_cluster_failover_udp() {
    run_builtin("ra-cluster-failover-udp");
}

#[test]
fn ra_cluster_failover_tls() {
    let report = run_builtin("ra-cluster-failover-tls");
    let text = report.render();
    assert!(
        text.contains("IKE SA re-attached on a new tls stream"),
        "the client did not re-attach its IKE SA:\n{text}"
    );
}

/// ra-cluster-failover-tls with RFC 9329 TCP through the proxy instead of Visitor Mode: the
/// client re-attaches its IKE SA on a new TCP stream the same way.
#[test]
fn ra_cluster_failover_over_rfc9329_tcp() {
    let builtin = rampart_sim::catalogue()
        .into_iter()
        .find(|b| b.name == "ra-cluster-failover-tls")
        .unwrap();
    assert_eq!(
        builtin
            .text
            .matches("transports = [\"udp\", \"tls\"]")
            .count(),
        1
    );
    let text = builtin
        .text
        .replace(
            "transports = [\"udp\", \"tls\"]",
            "transports = [\"udp\", \"tcp\"]",
        )
        .replace("transport = \"tls\"", "transport = \"tcp\"")
        .replace("log = \"tls stream from", "log = \"tcp stream from");
    let sc = rampart_sim::scenario::parse(&text, "ra-cluster-failover-tcp").unwrap();
    let dir = rampart_sim::builtin_dir().unwrap();
    let report = rampart_sim::run(&sc, Some(&dir), None).unwrap();
    let out = report.render();
    assert!(report.passed(), "{out}");
    assert!(
        out.contains("IKE SA re-attached on a new tcp stream"),
        "the client did not re-attach its IKE SA:\n{out}"
    );
}

#[test]
fn ra_mep_failover() {
    let report = run_builtin("ra-mep-failover");
    let text = report.render();
    assert!(
        text.contains("moved from entry point 198.51.100.1 to 203.0.113.1"),
        "the client did not move to the second entry point:\n{text}"
    );
}

/// The profile names gw1 only; the client learns gw2 from gw1's CFG_REPLY and moves there
/// when gw1 dies.
#[test]
fn ra_mep_learned() {
    let report = run_builtin("ra-mep-learned");
    let text = report.render();
    assert!(
        text.contains("learned 2 entry point(s) from 198.51.100.1"),
        "the client did not learn the entry points:\n{text}"
    );
    assert!(
        text.contains("moved from entry point 198.51.100.1 to 203.0.113.1"),
        "the client did not move to the learned entry point:\n{text}"
    );
}

/// ra-mep-failover with `selection = "first-to-respond"`: the client probes both entry points,
/// the nearer one (gw1) answers first; when it dies the client moves to gw2 the same way.
#[test]
fn ra_mep_failover_first_to_respond() {
    let builtin = rampart_sim::catalogue()
        .into_iter()
        .find(|b| b.name == "ra-mep-failover")
        .unwrap();
    let key = "\nselection = \"primary-backup\"\n";
    assert_eq!(builtin.text.matches(key).count(), 1);
    let text = builtin
        .text
        .replace(key, "\nselection = \"first-to-respond\"\n");
    let sc = rampart_sim::scenario::parse(&text, "ra-mep-failover-ftr").unwrap();
    let dir = rampart_sim::builtin_dir().unwrap();
    let report = rampart_sim::run(&sc, Some(&dir), None).unwrap();
    let out = report.render();
    assert!(report.passed(), "{out}");
    assert!(
        out.contains("entry point 198.51.100.1 answered first"),
        "no probe round chose gw1:\n{out}"
    );
    assert!(
        out.contains("entry point 203.0.113.1 answered first"),
        "the probe after gw1 died did not choose gw2:\n{out}"
    );
}

/// Remote-access clients of a Load Sharing cluster: the NAT rebinding moves their flows, the
/// owner of their SAs crashes; the owner (then the survivor) follows each client's new NAT
/// mapping, whichever member the client's packets reached.
#[test]
fn ra_ls() {
    let report = run_builtin("ra-ls");
    let text = report.render();
    assert!(
        text.contains("NAT mapping moved"),
        "no member followed a client's new NAT mapping:\n{text}"
    );
}
