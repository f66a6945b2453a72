//! Path MTU of `rampart client` with real processes: the client behind the masquerading router
//! of [`RaTopology`], whose outside link (`out0` / the gateway's `wan0`) has MTU 1280, the
//! profile's TUN MTU 1400.
//! 1. Black hole: the router sends no ICMP (`destination-unreachable` dropped in its output
//!    hook). Full-size tunnel packets (1400 inner, ~1460 outer with DF) vanish; the client's
//!    authenticated probes find 1280, the TUN MTU is lowered (reason `probed`), and a TCP
//!    upload of a few MB through the tunnel completes. The same upload with `pmtu_probe =
//!    false` first stalls (the control).
//! 2. Passive: ICMP allowed, probing off (`pmtu_probe = false`): a large ping through the
//!    tunnel draws "fragmentation needed" from the router, and the TUN MTU drops from it
//!    (reason `icmp-too-big`).

use std::net::IpAddr;
use std::time::Duration;

use rampart_netns_tests::pki::Pki;
use rampart_netns_tests::ra_client::{transport, ProfileToml, RampartClient};
use rampart_netns_tests::ra_gateway::{
    gateway_toml, issue_gateway_cert, write_users_file, ClientAuthToml, RemoteAccessToml,
};
use rampart_netns_tests::ra_topology::{RaTopology, INNER};
use rampart_netns_tests::rampart::Gateway;
use rampart_netns_tests::{
    ping, require_tools, skip_unless_root, tcp_transfer, wait_until, TransferSpec,
};

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery staple";
/// The outside link's MTU.
const PATH_MTU: u32 = 1280;
/// The largest inner packet of a 1280-byte outer one: IPv4 20, UDP 8 (NAT-T behind the
/// router), ESP header 8 and IV 8, trailer 2, ICV 16 (AES-GCM) = 62; CBC-HMAC costs more.
const MAX_INNER: u64 = 1280 - 62;

/// Gateway with EAP users; the router's outside link at [`PATH_MTU`]; ICMP errors from the
/// router dropped when `drop_icmp`.
fn setup(label: &str, drop_icmp: bool) -> (RaTopology, Pki, Gateway) {
    let topo = RaTopology::new(label);
    let mtu = PATH_MTU.to_string();
    topo.router
        .exec(&["ip", "link", "set", "dev", "out0", "mtu", &mtu]);
    topo.gw
        .exec(&["ip", "link", "set", "dev", "wan0", "mtu", &mtu]);
    if drop_icmp {
        let rules = "table ip rampart_mtu {\n  chain icmp_out {\n    type filter hook output priority filter; policy accept;\n    icmp type destination-unreachable drop\n  }\n  chain icmp_forward {\n    type filter hook forward priority filter; policy accept;\n    icmp type destination-unreachable drop\n  }\n}\n";
        let file = topo.dir.file("router-mtu.nft");
        std::fs::write(&file, rules).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        topo.router.exec(&["nft", "-f", &file.to_string_lossy()]);
    }
    let pki = Pki::init(&topo.daemon_dir("pki"), "ecdsa-p256");
    issue_gateway_cert(&pki);
    let users = topo.dir.file("users.toml");
    write_users_file(&users, &[(USER, PASSWORD)]);
    let ra = RemoteAccessToml::new(&pki, ClientAuthToml::Eap(users));
    let dir = topo.daemon_dir("gw");
    let cfg = gateway_toml(&dir, &ra);
    let mut gw = Gateway::start(&topo.gw, &dir, "gw", &cfg);
    wait_until(Duration::from_secs(20), "gateway status socket", || {
        assert!(gw.is_running(), "gateway exited:\n{}", gw.log());
        gw.status_from_socket().is_ok()
    });
    (topo, pki, gw)
}

/// The client's (TUN MTU, reason) from `rampart client status --json`.
fn tunnel_mtu(client: &RampartClient) -> Option<(u64, String)> {
    let s = client.status().ok()?;
    let mtu = s.get("tunnel_mtu")?.as_u64()?;
    let reason = s.get("tunnel_mtu_reason")?.as_str()?.to_string();
    Some((mtu, reason))
}

/// The MTU of `dev` in `ns` as the kernel has it.
fn link_mtu(ns: &rampart_netns_tests::Netns, dev: &str) -> u64 {
    let out = ns.exec(&["cat", &format!("/sys/class/net/{dev}/mtu")]);
    out.trim()
        .parse()
        .unwrap_or_else(|e| panic!("mtu of {dev}: {out:?}: {e}"))
}

#[test]
fn probes_get_a_transfer_through_an_icmp_black_hole() {
    if skip_unless_root("probes_get_a_transfer_through_an_icmp_black_hole") {
        return;
    }
    require_tools(&["nft", "conntrack"]);
    let (topo, pki, _gw) = setup("ra-mtu-black-hole", true);
    // Without path MTU discovery the upload stalls: full-size packets vanish silently.
    let dir = topo.daemon_dir("client-no-probe");
    let mut profile = ProfileToml::eap(&pki, &dir.join("state"), USER, PASSWORD);
    profile.transports = vec!["udp".into()];
    profile.extra = "mtu = 1400\npmtu_probe = false\n".into();
    let mut client = RampartClient::start(&topo.client, &dir, &profile);
    client.wait_connected(Duration::from_secs(15));
    ping(&topo.client, &INNER.to_string(), 2).unwrap_or_else(|e| panic!("{e}"));
    let mut spec = TransferSpec::megabytes(4);
    spec.timeout = Duration::from_secs(8);
    spec.port = 5002;
    let stalled = tcp_transfer(&topo.client, &topo.inner, IpAddr::V4(INNER), &spec);
    assert!(
        !stalled.as_ref().is_ok_and(|r| r.intact()),
        "the transfer passed without path MTU discovery: {stalled:?}"
    );
    assert_eq!(tunnel_mtu(&client), None);
    client.stop();
    // With probes.
    let dir = topo.daemon_dir("client");
    let mut profile = ProfileToml::eap(&pki, &dir.join("state"), USER, PASSWORD);
    profile.transports = vec!["udp".into()];
    profile.extra = "mtu = 1400\n".into();
    let mut client = RampartClient::start(&topo.client, &dir, &profile);
    let status = client.wait_connected(Duration::from_secs(15));
    assert_eq!(transport(&status).as_deref(), Some("udp"), "{status}");
    // The search: the floor, the ceiling (lost 3 times), then bisection.
    wait_until(Duration::from_secs(30), "the probed tunnel MTU", || {
        tunnel_mtu(&client).is_some_and(|(_, r)| r == "probed")
    });
    let (mtu, _) = tunnel_mtu(&client).expect("tunnel MTU in status");
    assert!(
        mtu <= MAX_INNER && mtu > MAX_INNER - 32,
        "tunnel MTU {mtu}\n{}",
        client.log()
    );
    assert_eq!(link_mtu(&topo.client, &profile.device), mtu);
    assert!(
        client.log().contains(&format!("tunnel MTU {mtu} (probed)")),
        "{}",
        client.log()
    );
    ping(&topo.client, &INNER.to_string(), 2).unwrap_or_else(|e| panic!("{e}"));
    // Upload (client -> inner): every segment is a full-size tunnel packet; with the
    // profile's 1400 they would all vanish.
    let mut spec = TransferSpec::megabytes(4);
    spec.timeout = Duration::from_secs(60);
    let report = tcp_transfer(&topo.client, &topo.inner, IpAddr::V4(INNER), &spec)
        .unwrap_or_else(|e| panic!("{e}\n{}", client.log()));
    assert!(report.intact(), "{report:?}");
    let s = client.status().expect("status");
    assert_eq!(s["tunnel_mtu"].as_u64(), Some(mtu), "{s}");
    client.stop();
}

#[test]
fn icmp_fragmentation_needed_lowers_the_tunnel_mtu() {
    if skip_unless_root("icmp_fragmentation_needed_lowers_the_tunnel_mtu") {
        return;
    }
    require_tools(&["nft", "conntrack"]);
    let (topo, pki, _gw) = setup("ra-mtu-icmp", false);
    let dir = topo.daemon_dir("client");
    let mut profile = ProfileToml::eap(&pki, &dir.join("state"), USER, PASSWORD);
    profile.transports = vec!["udp".into()];
    profile.extra = "mtu = 1400\npmtu_probe = false\n".into();
    let mut client = RampartClient::start(&topo.client, &dir, &profile);
    client.wait_connected(Duration::from_secs(15));
    assert_eq!(tunnel_mtu(&client), None, "no probing: the profile's MTU");
    assert_eq!(link_mtu(&topo.client, &profile.device), 1400);
    // A 1372-byte ICMP payload makes a 1400-byte inner packet: too big for the outside link;
    // the router answers "fragmentation needed" (MTU 1280) to the client's UDP socket.
    let inner = INNER.to_string();
    let _ = topo.client.try_exec(&[
        "ping", "-c", "3", "-i", "0.3", "-W", "1", "-M", "do", "-s", "1372", &inner,
    ]);
    wait_until(Duration::from_secs(10), "the tunnel MTU from ICMP", || {
        if tunnel_mtu(&client).is_none() {
            let _ = topo.client.try_exec(&[
                "ping", "-c", "1", "-W", "1", "-M", "do", "-s", "1372", &inner,
            ]);
        }
        tunnel_mtu(&client).is_some_and(|(_, r)| r == "icmp-too-big")
    });
    let (mtu, _) = tunnel_mtu(&client).expect("tunnel MTU in status");
    assert!(mtu <= MAX_INNER && mtu > MAX_INNER - 32, "tunnel MTU {mtu}");
    assert_eq!(link_mtu(&topo.client, &profile.device), mtu);
    ping(&topo.client, &inner, 2).unwrap_or_else(|e| panic!("{e}"));
    client.stop();
}
