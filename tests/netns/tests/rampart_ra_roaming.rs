//! MOBIKE (RFC 4555) with real processes, in the remote-access topology
//! ([`RaTopology`]: the client behind the masquerading router): a `rampart client` over UDP
//! moves to a new address in the middle of a TCP transfer. The client's outside interface
//! gets an address in a new subnet, the old one is deleted and the default route moves to
//! the router's new inside address. The transfer completes intact, the client keeps its
//! virtual IP, the gateway keeps the same IKE SA and tunnel (same SPIs) at the client's new
//! outer address, and the client says it moved by MOBIKE (no reconnect).
//!
//! Second case: strongSwan's charon as the MOBIKE client (it announces MOBIKE_SUPPORTED by
//! default and roams by itself when its address changes) moves against our gateway the same
//! way: same IKE SA (SPIs) on both sides, the gateway at its new outer address, traffic on
//! (charon rekeys its CHILD SA after the move: its userspace ESP cannot update it in place).

use std::net::IpAddr;
use std::time::Duration;

use rampart_netns_tests::pki::Pki;
use rampart_netns_tests::ra_charon::{RaCharon, RaClientAuth};
use rampart_netns_tests::ra_client::{transport, virtual_ip, ProfileToml, RampartClient};
use rampart_netns_tests::ra_gateway::GW_ID;
use rampart_netns_tests::ra_gateway::{
    gateway_toml, issue_gateway_cert, write_users_file, ClientAuthToml, RemoteAccessToml,
};
use rampart_netns_tests::ra_topology::{RaTopology, CLIENT, GW_WAN, INNER, INTERNAL};
use rampart_netns_tests::rampart::Gateway;
use rampart_netns_tests::traffic::RunningTransfer;
use rampart_netns_tests::{ping, require_tools, skip_unless_root, wait_until, TransferSpec};
use serde_json::Value;

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery staple";
/// The client's address after the move, and the router's address on that new subnet.
const CLIENT_NEW: &str = "192.168.78.2";
const ROUTER_NEW: &str = "192.168.78.1";

fn start_gateway(topo: &RaTopology, pki: &Pki) -> Gateway {
    issue_gateway_cert(pki);
    let users = topo.dir.file("users.toml");
    write_users_file(&users, &[(USER, PASSWORD)]);
    let ra = RemoteAccessToml::new(pki, ClientAuthToml::Eap(users));
    let dir = topo.daemon_dir("gw");
    let cfg = gateway_toml(&dir, &ra);
    let mut gw = Gateway::start(&topo.gw, &dir, "gw", &cfg);
    wait_until(Duration::from_secs(20), "gateway status socket", || {
        assert!(gw.is_running(), "gateway exited:\n{}", gw.log());
        gw.status_from_socket().is_ok()
    });
    gw
}

/// The gateway's entry for the client: (IKE SA id, outer address `ip:port`, Office Mode
/// address).
fn client_entry(status: &Value) -> Option<(u64, String, String)> {
    let c = status.get("remote_access")?.get("clients")?.get(0)?;
    Some((
        c.get("ike_sa")?.as_u64()?,
        c.get("remote")?.as_str()?.to_string(),
        c.get("address")?.as_str()?.to_string(),
    ))
}

/// Every (spi_in, spi_out) of the gateway's tunnels.
fn tunnel_spis(status: &Value) -> Vec<(String, String)> {
    let mut spis: Vec<(String, String)> = status["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["tunnels"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| {
            Some((
                t["spi_in"].as_str()?.to_string(),
                t["spi_out"].as_str()?.to_string(),
            ))
        })
        .collect();
    spis.sort();
    spis
}

#[test]
fn rampart_client_moves_by_mobike_during_a_transfer() {
    if skip_unless_root("rampart_client_moves_by_mobike_during_a_transfer") {
        return;
    }
    require_tools(&["nft", "conntrack"]);
    let topo = RaTopology::new("ra-roaming");
    let pki = Pki::init(&topo.daemon_dir("pki"), "ecdsa-p256");
    let gw = start_gateway(&topo, &pki);
    // The router's second inside subnet, where the client moves to.
    topo.router.exec(&[
        "ip",
        "addr",
        "add",
        &format!("{ROUTER_NEW}/24"),
        "dev",
        "in0",
    ]);

    let dir = topo.daemon_dir("client");
    let profile = ProfileToml::eap(&pki, &dir.join("state"), USER, PASSWORD);
    let mut client = RampartClient::start(&topo.client, &dir, &profile);
    let status = client.wait_connected(Duration::from_secs(15));
    assert_eq!(transport(&status).as_deref(), Some("udp"), "{status}");
    let vip = virtual_ip(&status).expect("virtual IP in the status");
    ping(&topo.client, &INNER.to_string(), 2).unwrap_or_else(|e| panic!("{e}"));
    let gw_before = gw.status_from_socket().expect("gateway status");
    let (ike_sa, remote_before, address) =
        client_entry(&gw_before).unwrap_or_else(|| panic!("no client entry: {gw_before}"));
    assert_eq!(address, vip);
    let spis_before = tunnel_spis(&gw_before);
    assert!(!spis_before.is_empty(), "{gw_before}");

    // 6 MB at 1.5 MB/s: about 4 s, the move happens in the middle.
    let spec = TransferSpec {
        rate: Some(1_500_000),
        ..TransferSpec::megabytes(6)
    };
    let transfer = RunningTransfer::start(&topo.client, &topo.inner, IpAddr::V4(INNER), &spec)
        .unwrap_or_else(|e| panic!("{e}\n{}", client.log()));
    wait_until(Duration::from_secs(10), "transfer under way", || {
        transfer.received() > 1_000_000
    });
    topo.client.exec(&[
        "ip",
        "addr",
        "add",
        &format!("{CLIENT_NEW}/24"),
        "dev",
        "eth0",
    ]);
    topo.client
        .exec(&["ip", "addr", "del", &format!("{CLIENT}/24"), "dev", "eth0"]);
    // Deleting the address took its subnet's routes, the default route with them.
    let _ = topo.client.try_exec(&["ip", "route", "del", "default"]);
    topo.client
        .exec(&["ip", "route", "add", "default", "via", ROUTER_NEW]);

    let report = transfer
        .finish()
        .unwrap_or_else(|e| panic!("transfer: {e}\n{}", client.log()));
    assert!(report.intact(), "{report:?}\n{}", client.log());

    let status = client.status().expect("client status");
    let log = client.log();
    assert_eq!(status["moves"].as_u64(), Some(1), "{status}\n{log}");
    assert_eq!(status["reconnects"].as_u64(), Some(0), "{status}\n{log}");
    assert_eq!(status["state"].as_str(), Some("connected"), "{status}");
    assert_eq!(virtual_ip(&status).as_deref(), Some(vip.as_str()));
    assert!(
        status["last_move"]["to"]
            .as_str()
            .is_some_and(|t| t.starts_with(CLIENT_NEW)),
        "{status}"
    );
    assert!(
        status["local_address"]
            .as_str()
            .is_some_and(|t| t.starts_with(CLIENT_NEW)),
        "{status}"
    );
    assert!(
        log.contains(&format!("moved to {CLIENT_NEW} (MOBIKE)")),
        "{log}"
    );
    assert!(!log.contains("reconnecting:"), "{log}");

    // The gateway: the same IKE SA and tunnel, at the client's new outer address (the router
    // masquerades the new source to a new port: the old mapping is still in its table).
    let gw_after = gw.status_from_socket().expect("gateway status");
    let (ike_sa_after, remote_after, address_after) =
        client_entry(&gw_after).unwrap_or_else(|| panic!("no client entry: {gw_after}"));
    assert_eq!(ike_sa_after, ike_sa, "same IKE SA\n{gw_after}");
    assert_eq!(address_after, vip);
    assert_eq!(tunnel_spis(&gw_after), spis_before, "same SPIs\n{gw_after}");
    assert_ne!(
        remote_after, remote_before,
        "the gateway follows\n{gw_after}"
    );
    assert!(gw.log().contains("the peer moved to"), "{}", gw.log());
    ping(&topo.client, &INNER.to_string(), 2).unwrap_or_else(|e| panic!("{e}"));
    client.stop();
}

/// Moves the client namespace from [`CLIENT`] to [`CLIENT_NEW`] (new subnet, new default
/// route via the router's [`ROUTER_NEW`], which must exist).
fn move_client(topo: &RaTopology) {
    topo.client.exec(&[
        "ip",
        "addr",
        "add",
        &format!("{CLIENT_NEW}/24"),
        "dev",
        "eth0",
    ]);
    topo.client
        .exec(&["ip", "addr", "del", &format!("{CLIENT}/24"), "dev", "eth0"]);
    let _ = topo.client.try_exec(&["ip", "route", "del", "default"]);
    topo.client
        .exec(&["ip", "route", "add", "default", "via", ROUTER_NEW]);
}

#[test]
fn strongswan_client_moves_by_mobike() {
    if skip_unless_root("strongswan_client_moves_by_mobike") {
        return;
    }
    require_tools(&["nft", "swanctl", rampart_netns_tests::strongswan::CHARON]);
    let topo = RaTopology::new("ra-roaming-charon");
    let pki = Pki::init(&topo.daemon_dir("pki"), "ecdsa-p256");
    let gw = start_gateway(&topo, &pki);
    topo.router.exec(&[
        "ip",
        "addr",
        "add",
        &format!("{ROUTER_NEW}/24"),
        "dev",
        "in0",
    ]);
    let client = RaCharon {
        gateway: GW_WAN.to_string(),
        gateway_id: GW_ID.into(),
        auth: RaClientAuth::EapMschapv2 {
            user: USER.into(),
            password: PASSWORD.into(),
        },
        remote_ts: INTERNAL.into(),
    };
    let charon_dir = topo.daemon_dir("charon");
    let charon = client.start(&topo.client, &charon_dir, &CLIENT.to_string(), &pki);
    charon
        .initiate()
        .unwrap_or_else(|e| panic!("swanctl --initiate: {e}\n{}", charon.log()));
    let sa = charon.ike_sa().expect("established IKE SA");
    let vip = sa.local_vips.first().cloned().expect("a virtual IP");
    ping(&topo.client, &INNER.to_string(), 2).unwrap_or_else(|e| panic!("{e}"));
    let gw_before = gw.status_from_socket().expect("gateway status");
    let (ike_sa, remote_before, address) =
        client_entry(&gw_before).unwrap_or_else(|| panic!("no client entry: {gw_before}"));
    assert_eq!(address, vip);
    let spis_before = tunnel_spis(&gw_before);

    move_client(&topo);
    wait_until(
        Duration::from_secs(20),
        "the gateway follows charon",
        || {
            gw.status_from_socket()
                .ok()
                .and_then(|s| client_entry(&s))
                .is_some_and(|(_, remote, _)| remote != remote_before)
        },
    );
    let gw_after = gw.status_from_socket().expect("gateway status");
    let (ike_sa_after, _, address_after) = client_entry(&gw_after).expect("client entry");
    assert_eq!(ike_sa_after, ike_sa, "same IKE SA\n{gw_after}");
    assert_eq!(address_after, vip);
    // charon (kernel-libipsec here) cannot move an installed CHILD SA in place: after the
    // update it rekeys it (CREATE_CHILD_SA on the moved IKE SA). One tunnel either way.
    let spis_after = tunnel_spis(&gw_after);
    assert_eq!(
        spis_after.len(),
        spis_before.len(),
        "one tunnel\n{gw_after}"
    );
    assert!(gw.log().contains("the peer moved to"), "{}", gw.log());
    let sa_after = charon.ike_sa().expect("established IKE SA after the move");
    assert_eq!(
        (sa_after.spi_i, sa_after.spi_r),
        (sa.spi_i, sa.spi_r),
        "charon kept its SA"
    );
    ping(&topo.client, &INNER.to_string(), 3)
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", charon.log(), gw.log()));
}
