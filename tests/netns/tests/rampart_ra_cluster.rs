//! Remote-access clients across a two-member Rampart HA cluster and across Multiple Entry
//! Points (issue 15), with real processes.
//!
//! ```text
//!  client (rhost 10.2.0.10) ── rgw: nft masquerade (and squid for TLS) ── br-wan ── m1 / m2 (WAN VIP 192.0.2.1)
//!                                                                        br-lan ── m1 / m2 (LAN VIP 10.1.0.1) ── lanh 10.1.0.10
//! ```
//! The cluster topology of `rampart_cluster.rs`, with its remote site turned into a client's
//! home network: `rgw` masquerades the client (no route to 10.2.0.0/24 exists on the cluster
//! side), and for Visitor Mode only squid (Basic authentication) on `rgw` reaches out.
//!
//! Per transport (UDP, RFC 9329 TCP, Visitor Mode TLS through squid): `rampart client` connects
//! to the WAN VIP, a transfer to the LAN host runs, the active member is killed with `kill -9`.
//! The transfer completes byte-exact, the client keeps its virtual IP, and the new active member
//! shows the same IKE SA (id) for the client; on TCP and TLS the client re-attached it to a new
//! stream (`stream_reattaches`), and never reconnected. The longest pause of the transfer after
//! the kill is printed (`RA-CLUSTER-GAP`; bench/remote-access.sh collects it).
//!
//! MEP: the two members run as independent gateways (no `[cluster]`, disjoint pools). The client
//! lists both (`primary-backup`); the first is killed, the client moves to the second (a new
//! IKE SA and an address from its pool) and a transfer through it completes.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use serde_json::Value;

use rampart_netns_tests::cluster_topology::{
    member_lan, member_wan, ClusterToml, ClusterTopology, LAN_DOMAIN, LAN_HOST, LAN_VIP,
    REMOTE_GW_LAN, WAN_VIP,
};
use rampart_netns_tests::netns::run;
use rampart_netns_tests::pki::Pki;
use rampart_netns_tests::ra_client::{transport, virtual_ip, ProfileToml, RampartClient};
use rampart_netns_tests::ra_gateway::{
    gateway_toml, write_users_file, ClientAuthToml, RemoteAccessToml, GW_ID,
};
use rampart_netns_tests::ra_services::{Squid, SQUID};
use rampart_netns_tests::rampart::{binary, Gateway};
use rampart_netns_tests::{
    require_tools, skip_unless_root, wait_until, RunningTransfer, TransferSpec,
};

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery staple";
const POOL: &str = "10.99.0.0/24";
const PROXY_PORT: u16 = 3128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Udp,
    Tcp,
    Tls,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Udp => "udp",
            Kind::Tcp => "tcp",
            Kind::Tls => "tls",
        }
    }
}

/// The router in front of the client: masquerade on `wan0`; with `proxy_only`, nothing the
/// client sends is forwarded (only squid on the router reaches out).
#[track_caller]
fn client_router(topo: &ClusterTopology, proxy_only: bool) {
    let filter = if proxy_only {
        "    iifname \"lan0\" drop\n"
    } else {
        ""
    };
    let rules = format!(
        "table ip rampart_ra_home {{\n  chain egress_filter {{\n    type filter hook forward priority filter; policy accept;\n    ct state established,related accept\n{filter}  }}\n  chain masq {{\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname \"wan0\" masquerade\n  }}\n}}\n"
    );
    let file = topo.dir.file("home.nft");
    std::fs::write(&file, rules).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
    topo.remote_gw.exec(&["nft", "-f", &file.to_string_lossy()]);
}

/// CA and the gateway certificate `vpn` (SANs: [`GW_ID`], the WAN VIP and both member
/// addresses: one certificate serves the cluster and the MEP case).
fn pki(topo: &ClusterTopology) -> Pki {
    let pki = Pki::init(&topo.daemon_dir("pki"), "ecdsa-p256");
    pki.issue(
        "vpn",
        &format!(
            "dns:{GW_ID},ip:{WAN_VIP},ip:{},ip:{}",
            member_wan(1),
            member_wan(2)
        ),
        "ecdsa-p256",
        false,
    );
    pki
}

/// `[remote_access]` of an EAP gateway at `address` handing out `pool`, split tunnel to the
/// LAN, RFC 9329 TCP on 4500 and Visitor Mode on 443.
fn remote_access(
    topo: &ClusterTopology,
    pki: &Pki,
    address: Ipv4Addr,
    pool: &str,
) -> RemoteAccessToml {
    let users = topo.dir.file("users.toml");
    write_users_file(&users, &[(USER, PASSWORD)]);
    let mut ra = RemoteAccessToml::new(pki, ClientAuthToml::Eap(users));
    ra.local_address = address.to_string();
    ra.pool = pool.into();
    ra.routes = vec![LAN_DOMAIN.into()];
    ra.dns = Vec::new();
    ra.dns_domains = Vec::new();
    ra.tcp_port = Some(4500);
    ra.visitor_port = Some(443);
    ra
}

/// Starts member `id` with `ra` and, for a cluster, its `[cluster]` section.
fn start_member(
    topo: &ClusterTopology,
    id: u8,
    ra: &RemoteAccessToml,
    cluster: Option<ClusterToml>,
) -> Gateway {
    let label = format!("m{id}");
    let dir = topo.daemon_dir(&label);
    let mut cfg = gateway_toml(&dir, ra);
    cfg.name = label.clone();
    cfg.status_socket = dir.join(format!("{label}.sock"));
    cfg.domain = vec![LAN_DOMAIN.into()];
    if let Some(c) = cluster {
        cfg.extra.push('\n');
        cfg.extra.push_str(&c.to_toml());
    }
    let mut gw = Gateway::start(topo.member(id), &dir, &label, &cfg);
    wait_until(Duration::from_secs(20), "member status socket", || {
        assert!(gw.is_running(), "{label} exited:\n{}", gw.log());
        gw.status_from_socket().is_ok()
    });
    gw
}

/// `rampart cluster status --json` of a member: its state.
fn state(gw: &Gateway) -> Option<String> {
    let bin = binary().to_string_lossy().into_owned();
    let cfg = gw.config_path().to_string_lossy().into_owned();
    let out = run(&bin, &["cluster", "status", "--config", &cfg, "--json"]).ok()?;
    let v: Value = serde_json::from_str(&out).ok()?;
    v["state"].as_str().map(str::to_string)
}

#[track_caller]
fn wait_state(gw: &mut Gateway, want: &str, timeout: Duration) {
    wait_until(timeout, &format!("member state {want}"), || {
        assert!(gw.is_running(), "member exited:\n{}", gw.log());
        state(gw).as_deref() == Some(want)
    });
}

/// `(client, address, IKE SA id)` of every remote-access client a member lists.
fn clients(gw: &Gateway) -> Vec<(String, String, u64)> {
    let Ok(status) = gw.status_from_socket() else {
        return Vec::new();
    };
    status["remote_access"]["clients"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|c| {
                    Some((
                        c["client"].as_str()?.to_string(),
                        c["address"].as_str()?.to_string(),
                        c["ike_sa"].as_u64()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The client profile for `kind` towards `gateway` (one entry) or several `gateways`.
fn profile(topo: &ClusterTopology, pki: &Pki, kind: Kind, label: &str) -> ProfileToml {
    let mut p = ProfileToml::eap(pki, &topo.daemon_dir(label).join("state"), USER, PASSWORD);
    p.gateway = WAN_VIP.to_string();
    p.transports = vec![kind.name().into()];
    p
}

fn cluster_case(test: &str, kind: Kind) {
    if skip_unless_root(test) {
        return;
    }
    let mut tools = vec!["nft", "conntrack", "ip"];
    if kind == Kind::Tls {
        tools.push(SQUID);
        tools.push("openssl");
    }
    require_tools(&tools);
    let topo = ClusterTopology::new(test, 2);
    client_router(&topo, kind == Kind::Tls);
    topo.lan_host.route(&format!("{POOL} via {LAN_VIP}"));
    let pki = pki(&topo);
    let ra = remote_access(&topo, &pki, WAN_VIP, POOL);
    let mut m1 = start_member(&topo, 1, &ra, Some(ClusterToml::new(2, 1)));
    wait_state(&mut m1, "active", Duration::from_secs(20));
    let mut m2 = start_member(&topo, 2, &ra, Some(ClusterToml::new(2, 2)));
    wait_state(&mut m2, "standby", Duration::from_secs(20));

    let mut p = profile(&topo, &pki, kind, "client");
    let _squid = (kind == Kind::Tls).then(|| {
        let squid = Squid::start(
            &topo.remote_gw,
            &topo.daemon_dir("squid"),
            &REMOTE_GW_LAN.to_string(),
            PROXY_PORT,
            Some(("proxyuser", "proxy-pass")),
            &[(&WAN_VIP.to_string(), GW_ID)],
        );
        p.proxy = squid.url();
        p.proxy_credentials = Some(("proxyuser".into(), "proxy-pass".into()));
        squid
    });
    let mut client = RampartClient::start(&topo.remote_host, &topo.daemon_dir("client"), &p);
    let before = client.wait_connected(Duration::from_secs(30));
    assert_eq!(transport(&before).as_deref(), Some(kind.name()), "{before}");
    let vip = virtual_ip(&before).expect("virtual IP in the status");
    wait_until(Duration::from_secs(10), "m1 lists the client", || {
        clients(&m1).iter().any(|(c, a, _)| c == USER && *a == vip)
    });
    let (_, _, ike_sa) = clients(&m1)
        .into_iter()
        .find(|(c, _, _)| c == USER)
        .expect("the client on m1");
    // The SA (with its lease) reaches the standby by the delta stream.
    wait_until(Duration::from_secs(10), "m2 holds the client's SA", || {
        m2.status_from_socket()
            .ok()
            .and_then(|s| s["replicated_sas"].as_u64())
            .unwrap_or(0)
            >= 1
    });

    let mut spec = TransferSpec::megabytes(24);
    spec.rate = Some(4 * 1024 * 1024);
    spec.timeout = Duration::from_secs(120);
    let transfer = RunningTransfer::start(
        &topo.remote_host,
        &topo.lan_host,
        IpAddr::V4(LAN_HOST),
        &spec,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", client.log()));
    wait_until(Duration::from_secs(20), "transfer under way", || {
        transfer.received() > 2 * 1024 * 1024
    });
    let killed = Instant::now();
    m1.kill9();
    let pause = transfer.longest_pause(spec.bytes, killed, Duration::from_secs(4));
    eprintln!(
        "RA-CLUSTER-GAP transport={} gap_ms={}",
        kind.name(),
        pause.as_millis()
    );
    wait_state(&mut m2, "active", Duration::from_secs(10));
    let report = transfer
        .finish()
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", client.log(), m2.log()));
    assert!(report.intact(), "{report:?}");

    let after = client.status().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(virtual_ip(&after).as_deref(), Some(vip.as_str()), "{after}");
    assert_eq!(
        after["reconnects"].as_u64(),
        Some(0),
        "{after}\n{}",
        client.log()
    );
    if kind != Kind::Udp {
        assert!(
            after["stream_reattaches"].as_u64().unwrap_or(0) >= 1,
            "no stream re-attach: {after}\n{}",
            client.log()
        );
    }
    let on_m2 = clients(&m2);
    assert!(
        on_m2
            .iter()
            .any(|(c, a, id)| c == USER && *a == vip && *id == ike_sa),
        "m2 does not show the client's IKE SA {ike_sa:#x} with {vip}: {on_m2:?}\n{}",
        m2.log()
    );
    client.stop();
}

#[test]
fn ra_cluster_kill9_udp_keeps_the_ike_sa() {
    cluster_case("ra-cluster-udp", Kind::Udp);
}

#[test]
fn ra_cluster_kill9_tcp_reattaches_the_ike_sa() {
    cluster_case("ra-cluster-tcp", Kind::Tcp);
}

#[test]
fn ra_cluster_kill9_tls_via_squid_reattaches_the_ike_sa() {
    cluster_case("ra-cluster-tls", Kind::Tls);
}

/// Two gateways that are not a cluster (members 1 and 2 of the topology, each with its own pool:
/// 10.99.1.0/24 and 10.99.2.0/24, routed from the LAN host); `m1_extra` is appended to member
/// 1's `[remote_access]`.
fn two_entry_points(test: &str, m1_extra: &str) -> (ClusterTopology, Pki, Gateway, Gateway) {
    require_tools(&["nft", "conntrack", "ip"]);
    let topo = ClusterTopology::new(test, 2);
    client_router(&topo, false);
    let pki = pki(&topo);
    let pools = ["10.99.1.0/24", "10.99.2.0/24"];
    for (id, pool) in [(1u8, pools[0]), (2, pools[1])] {
        topo.lan_host
            .route(&format!("{pool} via {}", member_lan(id)));
    }
    let mut ra1 = remote_access(&topo, &pki, member_wan(1), pools[0]);
    ra1.extra.push_str(m1_extra);
    let m1 = start_member(&topo, 1, &ra1, None);
    let m2 = start_member(
        &topo,
        2,
        &remote_access(&topo, &pki, member_wan(2), pools[1]),
        None,
    );
    (topo, pki, m1, m2)
}

/// A 4 MB transfer through the client's tunnel after it moved: byte-exact.
fn transfer_after_the_move(topo: &ClusterTopology, client: &mut RampartClient) {
    let report = rampart_netns_tests::tcp_transfer(
        &topo.remote_host,
        &topo.lan_host,
        IpAddr::V4(LAN_HOST),
        &TransferSpec::megabytes(4),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", client.log()));
    assert!(report.intact(), "{report:?}");
    client.stop();
}

/// Two entry points that are not a cluster: the first dies, the client moves to the second.
#[test]
fn ra_mep_client_moves_to_the_live_entry_point() {
    let test = "ra-mep-move";
    if skip_unless_root(test) {
        return;
    }
    let (topo, pki, mut m1, m2) = two_entry_points(test, "");
    let mut p = profile(&topo, &pki, Kind::Udp, "client");
    p.gateway = String::new();
    p.extra = format!(
        "gateways = [\"{}\", \"{}\"]\nselection = \"primary-backup\"\nliveness = \"2s\"\n",
        member_wan(1),
        member_wan(2)
    );
    let mut client = RampartClient::start(&topo.remote_host, &topo.daemon_dir("client"), &p);
    let first = client.wait_connected(Duration::from_secs(30));
    let vip1 = virtual_ip(&first).expect("virtual IP");
    assert!(vip1.starts_with("10.99.1."), "{first}");
    assert_eq!(
        first["entry_point"].as_str(),
        Some(member_wan(1).to_string().as_str())
    );
    m1.kill9();
    let moved = Instant::now();
    wait_until(
        Duration::from_secs(30),
        "client on the second entry point",
        || {
            client.status().is_ok_and(|s| {
                s["state"].as_str() == Some("connected")
                    && virtual_ip(&s).is_some_and(|v| v.starts_with("10.99.2."))
            })
        },
    );
    eprintln!("RA-MEP-MOVE took_ms={}", moved.elapsed().as_millis());
    let status = client.status().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        status["entry_point"].as_str(),
        Some(member_wan(2).to_string().as_str()),
        "{status}"
    );
    assert_eq!(status["entry_point_changes"].as_u64(), Some(1), "{status}");
    assert_eq!(
        status["selection"].as_str(),
        Some("primary-backup"),
        "{status}"
    );
    let vip2 = virtual_ip(&status).expect("virtual IP");
    assert!(clients(&m2).iter().any(|(c, a, _)| c == USER && *a == vip2));
    transfer_after_the_move(&topo, &mut client);
}

/// Entry points learned from the gateway: the profile names only member 1, whose
/// `[remote_access] entry_points` lists both; the client stores the list at the first connect,
/// and when member 1 dies it moves to member 2, which its profile never named.
#[test]
fn ra_mep_client_learns_the_entry_points_and_moves() {
    let test = "ra-mep-learn";
    if skip_unless_root(test) {
        return;
    }
    let entry_points = format!(
        "entry_points = [\"{}\", \"{}\"]\nentry_point_selection = \"primary-backup\"\n",
        member_wan(1),
        member_wan(2)
    );
    let (topo, pki, mut m1, m2) = two_entry_points(test, &entry_points);
    let mut p = profile(&topo, &pki, Kind::Udp, "client");
    p.gateway = member_wan(1).to_string();
    p.extra = "liveness = \"2s\"\n".into();
    let mut client = RampartClient::start(&topo.remote_host, &topo.daemon_dir("client"), &p);
    let first = client.wait_connected(Duration::from_secs(30));
    let vip1 = virtual_ip(&first).expect("virtual IP");
    assert!(vip1.starts_with("10.99.1."), "{first}");
    wait_until(
        Duration::from_secs(10),
        "the client learned the list",
        || {
            client.status().is_ok_and(|s| {
                s["learned_gateways"]["entries"]
                    .as_array()
                    .is_some_and(|e| e.len() == 2)
            })
        },
    );
    let learned = client.status().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        learned["learned_gateways"]["selection"].as_str(),
        Some("primary-backup"),
        "{learned}"
    );
    m1.kill9();
    let moved = Instant::now();
    wait_until(
        Duration::from_secs(40),
        "client on the learned entry point",
        || {
            client.status().is_ok_and(|s| {
                s["state"].as_str() == Some("connected")
                    && virtual_ip(&s).is_some_and(|v| v.starts_with("10.99.2."))
            })
        },
    );
    eprintln!(
        "RA-MEP-LEARNED-MOVE took_ms={}",
        moved.elapsed().as_millis()
    );
    let status = client.status().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        status["entry_point"].as_str(),
        Some(member_wan(2).to_string().as_str()),
        "{status}"
    );
    let vip2 = virtual_ip(&status).expect("virtual IP");
    assert!(clients(&m2).iter().any(|(c, a, _)| c == USER && *a == vip2));
    transfer_after_the_move(&topo, &mut client);
}
