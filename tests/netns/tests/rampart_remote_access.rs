//! Remote access (#13) with real processes: a Rampart gateway with `[remote_access]` in the
//! gateway namespace of [`RaTopology`], clients behind the masquerading router:
//! 1. strongSwan's charon as a stock IKEv2 client, EAP-MSCHAPv2 and certificates;
//! 2. `rampart client` over UDP (routes restored on down);
//! 3. the transport ladder when the router drops UDP, then TCP 4500, then everything but a
//!    squid proxy with Basic authentication;
//! 4. Visitor Mode sharing port 443 with nginx;
//! 5. 200 concurrent clients of our load generator, all leases distinct, all released.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rampart_netns_tests::conn_load::read_json;
use rampart_netns_tests::pki::Pki;
use rampart_netns_tests::ra_charon::{nameservers, RaCharon, RaClientAuth};
use rampart_netns_tests::ra_client::{transport, virtual_ip, ProfileToml, RampartClient};
use rampart_netns_tests::ra_gateway::{
    gateway_toml, issue_gateway_cert, pool_counters, ra_clients, write_users_file, ClientAuthToml,
    RemoteAccessToml, GW_ID, RA_PSK,
};
use rampart_netns_tests::ra_load::{eap_user, LoadReport};
use rampart_netns_tests::ra_services::{curl_https, Nginx, Squid, WEB_PAGE};
use rampart_netns_tests::ra_topology::{
    Egress, RaTopology, CLIENT, DNS, GW_WAN, INNER, INTERNAL, PROXY_PORT, ROUTER_IN,
};
use rampart_netns_tests::rampart::Gateway;
use rampart_netns_tests::{
    ping, require_tools, skip_unless_root, tcp_transfer, wait_until, TransferSpec,
};

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery staple";
const LOAD_PASSWORD: &str = "load generator password";

/// Whether `addr` lies in the Office Mode pool 10.99.0.0/24.
fn in_pool(addr: &str) -> bool {
    addr.starts_with("10.99.0.")
}

/// CA + gateway certificate, the users file, and a started gateway with `ra`.
fn start_gateway(topo: &RaTopology, ra: &RemoteAccessToml) -> Gateway {
    start_gateway_half_open(topo, ra, None)
}

/// [`start_gateway`] with `[gateway] half_open_per_source` (clients behind one NAT).
fn start_gateway_half_open(
    topo: &RaTopology,
    ra: &RemoteAccessToml,
    half_open_per_source: Option<u32>,
) -> Gateway {
    let dir = topo.daemon_dir("gw");
    let mut cfg = gateway_toml(&dir, ra);
    cfg.half_open_per_source = half_open_per_source;
    let mut gw = Gateway::start(&topo.gw, &dir, "gw", &cfg);
    wait_until(Duration::from_secs(20), "gateway status socket", || {
        assert!(gw.is_running(), "gateway exited:\n{}", gw.log());
        gw.status_from_socket().is_ok()
    });
    gw
}

fn pki_with_gateway_cert(topo: &RaTopology) -> Pki {
    let pki = Pki::init(&topo.daemon_dir("pki"), "ecdsa-p256");
    issue_gateway_cert(&pki);
    pki
}

fn eap_gateway(topo: &RaTopology, pki: &Pki) -> RemoteAccessToml {
    let users = topo.dir.file("users.toml");
    write_users_file(&users, &[(USER, PASSWORD), ("bob", "another password")]);
    RemoteAccessToml::new(pki, ClientAuthToml::Eap(users))
}

/// Charon connects, gets an address from the pool and the DNS server, and pings the inner
/// host from it; the gateway lists the client and releases the lease on disconnect.
fn charon_case(test: &str, cert: bool) {
    if skip_unless_root(test) {
        return;
    }
    require_tools(&["nft", "swanctl", rampart_netns_tests::strongswan::CHARON]);
    let topo = RaTopology::new(test);
    let pki = pki_with_gateway_cert(&topo);
    let (ra, auth, client_name) = if cert {
        pki.issue("laptop", "dns:laptop.example", "ecdsa-p256", false);
        let ra = RemoteAccessToml::new(&pki, ClientAuthToml::Cert);
        (
            ra,
            RaClientAuth::Cert {
                name: "laptop".into(),
                id: "laptop.example".into(),
            },
            "laptop.example",
        )
    } else {
        (
            eap_gateway(&topo, &pki),
            RaClientAuth::EapMschapv2 {
                user: USER.into(),
                password: PASSWORD.into(),
            },
            USER,
        )
    };
    let gw = start_gateway(&topo, &ra);
    let client = RaCharon {
        gateway: GW_WAN.to_string(),
        gateway_id: GW_ID.into(),
        auth,
        remote_ts: INTERNAL.into(),
    };
    let charon_dir = topo.daemon_dir("charon");
    let charon = client.start(&topo.client, &charon_dir, &CLIENT.to_string(), &pki);
    let started = Instant::now();
    charon
        .initiate()
        .unwrap_or_else(|e| panic!("swanctl --initiate: {e}\n{}", charon.log()));
    let took = started.elapsed();
    let sa = charon.ike_sa().expect("established IKE SA");
    let vip = sa.local_vips.first().cloned().expect("a virtual IP");
    assert!(in_pool(&vip), "virtual IP {vip} from the pool");
    assert_eq!(nameservers(&charon_dir), vec![DNS.to_string()], "DNS");
    ping(&topo.client, &INNER.to_string(), 3).unwrap_or_else(|e| panic!("{e}"));
    let status = gw.status_from_socket().expect("gateway status");
    let clients = ra_clients(&status);
    assert!(
        clients.iter().any(|(c, a)| c == client_name && *a == vip),
        "gateway lists {client_name} at {vip}: {clients:?}"
    );
    let (in_use, ..) = pool_counters(&status).expect("pool counters");
    assert_eq!(in_use, 1);

    charon
        .swanctl(&["--terminate", "--ike", "ra", "--timeout", "10"])
        .unwrap_or_else(|e| panic!("terminate: {e}"));
    wait_until(Duration::from_secs(10), "lease released", || {
        gw.status_from_socket()
            .ok()
            .and_then(|s| pool_counters(&s))
            .is_some_and(|(in_use, _, _, releases)| in_use == 0 && releases == 1)
    });
    eprintln!("{test}: charon tunnel up in {took:?}, virtual IP {vip}");
}

#[test]
fn strongswan_eap_mschapv2_client() {
    charon_case("ra-charon-eap", false);
}

#[test]
fn strongswan_certificate_client() {
    charon_case("ra-charon-cert", true);
}

/// Routes of the client namespace, for comparing before and after.
fn routes(ns: &rampart_netns_tests::Netns) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for table in ["main", "all"] {
        let out = ns.exec(&["ip", "-4", "route", "show", "table", table]);
        all.extend(out.lines().map(|l| format!("{table}: {}", l.trim())));
    }
    all
}

/// `rampart client` over UDP behind the NAT: virtual IP, ping, a byte-exact TCP transfer to the
/// inner host, and every route restored after `down` (SIGTERM).
#[test]
fn rampart_client_udp() {
    if skip_unless_root("rampart_client_udp") {
        return;
    }
    require_tools(&["nft", "conntrack"]);
    let topo = RaTopology::new("ra-client-udp");
    let pki = pki_with_gateway_cert(&topo);
    let gw = start_gateway(&topo, &eap_gateway(&topo, &pki));
    let before = routes(&topo.client);
    let dir = topo.daemon_dir("client");
    let profile = ProfileToml::eap(&pki, &dir.join("state"), USER, PASSWORD);
    let mut client = RampartClient::start(&topo.client, &dir, &profile);
    let status = client.wait_connected(Duration::from_secs(15));
    assert_eq!(transport(&status).as_deref(), Some("udp"), "{status}");
    let vip = virtual_ip(&status).expect("virtual IP in the status");
    assert!(in_pool(&vip), "{vip}");
    ping(&topo.client, &INNER.to_string(), 3).unwrap_or_else(|e| panic!("{e}"));
    let report = tcp_transfer(
        &topo.client,
        &topo.inner,
        IpAddr::V4(INNER),
        &TransferSpec::megabytes(8),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", client.log()));
    assert!(report.intact(), "{report:?}");
    assert!(ra_clients(&gw.status_from_socket().expect("status"))
        .iter()
        .any(|(c, a)| c == USER && *a == vip));
    client.stop();
    assert_eq!(routes(&topo.client), before, "routes restored after down");
    wait_until(Duration::from_secs(10), "lease released", || {
        gw.status_from_socket()
            .ok()
            .and_then(|s| pool_counters(&s))
            .is_some_and(|(in_use, ..)| in_use == 0)
    });
}

/// Connects with `egress` in force and returns (transport, time to connected).
fn ladder_run(
    topo: &RaTopology,
    profile: &ProfileToml,
    label: &str,
) -> (String, Duration, RampartClient) {
    let dir = topo.daemon_dir(label);
    let started = Instant::now();
    let mut client = RampartClient::start(&topo.client, &dir, profile);
    let status = client.wait_connected(Duration::from_secs(20));
    let took = started.elapsed();
    let t = transport(&status).unwrap_or_default();
    ping(&topo.client, &INNER.to_string(), 2).unwrap_or_else(|e| panic!("{label}: {e}"));
    (t, took, client)
}

/// The ladder: UDP dropped -> TCP; TCP 4500 dropped too -> TLS 443; nothing but squid with
/// Basic auth -> TLS through the proxy. Each blocked case connects in < 3 s.
#[test]
fn rampart_client_transport_ladder() {
    if skip_unless_root("rampart_client_transport_ladder") {
        return;
    }
    require_tools(&["nft", "conntrack", rampart_netns_tests::ra_services::SQUID]);
    let topo = RaTopology::new("ra-ladder");
    let pki = pki_with_gateway_cert(&topo);
    let mut ra = eap_gateway(&topo, &pki);
    ra.tcp_port = Some(4500);
    ra.visitor_port = Some(443);
    let _gw = start_gateway(&topo, &ra);
    let base =
        |label: &str| ProfileToml::eap(&pki, &topo.daemon_dir(label).join("state"), USER, PASSWORD);

    topo.set_egress(Egress::NoUdp);
    let (t, took, mut c) = ladder_run(&topo, &base("no-udp"), "no-udp");
    assert_eq!(t, "tcp", "UDP dropped");
    assert!(took < Duration::from_secs(3), "UDP dropped: {took:?}");
    c.stop();
    drop(c);

    topo.set_egress(Egress::Tcp443Only);
    let (t, took, mut c) = ladder_run(&topo, &base("tcp443"), "tcp443");
    assert_eq!(t, "tls", "only TCP 443");
    assert!(took < Duration::from_secs(3), "only TCP 443: {took:?}");
    c.stop();
    drop(c);

    topo.set_egress(Egress::ProxyOnly);
    let squid = Squid::start(
        &topo.router,
        &topo.daemon_dir("squid"),
        &ROUTER_IN.to_string(),
        PROXY_PORT,
        Some(("proxyuser", "proxy-pass")),
        &[("203.0.113.2", GW_ID)],
    );
    let mut p = base("proxy");
    p.proxy = squid.url();
    p.proxy_credentials = Some(("proxyuser".into(), "proxy-pass".into()));
    let (t, took, mut c) = ladder_run(&topo, &p, "proxy");
    assert_eq!(t, "tls", "through the proxy");
    assert!(took < Duration::from_secs(3), "proxy only: {took:?}");
    c.stop();
    // squid logs a CONNECT tunnel when it closes.
    let logged = rampart_netns_tests::try_wait_until(
        Duration::from_secs(5),
        "squid logged the tunnel",
        || {
            squid
                .access_log()
                .contains(&format!("CONNECT {GW_WAN}:443 proxyuser"))
        },
    );
    assert!(logged.is_ok(), "{logged:?}\n{}", squid.access_log());
}

/// The topology `label` with nginx serving HTTPS on the gateway's 127.0.0.1:8443 (the gateway's
/// certificate) and an EAP gateway whose Visitor Mode listener on 443 forwards to it.
fn nginx_behind_443(label: &str) -> (RaTopology, Pki, Nginx, RemoteAccessToml) {
    require_tools(&["nft", "curl", rampart_netns_tests::ra_services::NGINX]);
    let topo = RaTopology::new(label);
    let pki = pki_with_gateway_cert(&topo);
    let web = Nginx::start(
        &topo.gw,
        &topo.daemon_dir("nginx"),
        "127.0.0.1:8443",
        &pki.cert("vpn"),
        &pki.key("vpn"),
    );
    let mut ra = eap_gateway(&topo, &pki);
    ra.visitor_port = Some(443);
    ra.https_backend = Some("127.0.0.1:8443".into());
    (topo, pki, web, ra)
}

/// Port sharing without a client: the gateway's Visitor Mode listener on 443 forwards a TLS
/// connection that does not ask for Visitor Mode (curl: ALPN h2/http1.1) to nginx on
/// 127.0.0.1:8443, byte for byte, many times in a row; a TCP 4500 listener runs alongside.
#[test]
fn visitor_port_shared_with_nginx() {
    if skip_unless_root("visitor_port_shared_with_nginx") {
        return;
    }
    let (topo, pki, web, mut ra) = nginx_behind_443("ra-share");
    ra.tcp_port = Some(4500);
    let gw = start_gateway(&topo, &ra);
    wait_until(Duration::from_secs(10), "gateway listening on 443", || {
        rampart_netns_tests::ra_services::listening(&topo.gw, 443)
    });
    topo.set_egress(Egress::Tcp443Only);
    for _ in 0..5 {
        let body = curl_https(
            &topo.client,
            &format!("https://{GW_ID}/"),
            &pki.ca_cert(),
            Some((GW_ID, 443, &GW_WAN.to_string())),
        )
        .unwrap_or_else(|e| panic!("web page through the shared port: {e}\n{}", gw.log()));
        assert_eq!(body, WEB_PAGE);
    }
    assert_eq!(
        web.access_log().lines().count(),
        5,
        "nginx served every request"
    );
}

/// Visitor Mode on 443 with nginx behind it: curl gets the web page through the gateway's
/// listener (forwarded by ALPN/SNI), and a client gets a tunnel on the same port.
#[test]
fn visitor_mode_shares_443_with_nginx() {
    if skip_unless_root("visitor_mode_shares_443_with_nginx") {
        return;
    }
    let (topo, pki, web, ra) = nginx_behind_443("ra-visitor");
    let _gw = start_gateway(&topo, &ra);
    topo.set_egress(Egress::Tcp443Only);
    let body = curl_https(
        &topo.client,
        &format!("https://{GW_ID}/"),
        &pki.ca_cert(),
        Some((GW_ID, 443, &GW_WAN.to_string())),
    )
    .expect("web page through the shared port");
    assert_eq!(body, WEB_PAGE);
    assert!(!web.access_log().is_empty(), "nginx served the request");
    let mut p = ProfileToml::eap(
        &pki,
        &topo.daemon_dir("client").join("state"),
        USER,
        PASSWORD,
    );
    p.transports = vec!["tls".into()];
    let (t, _, mut c) = ladder_run(&topo, &p, "client");
    assert_eq!(t, "tls");
    // The web server still answers while the tunnel is up.
    let again = curl_https(
        &topo.client,
        &format!("https://{GW_ID}/"),
        &pki.ca_cert(),
        Some((GW_ID, 443, &GW_WAN.to_string())),
    )
    .expect("web page with a tunnel up");
    assert_eq!(again, WEB_PAGE);
    c.stop();
}

/// 200 (2000 with RAMPART_HEAVY=1) engines of ours connect at once through the NAT: every one
/// gets an address, no address twice, the gateway lists them all; after the deletes the pool is
/// empty again.
#[test]
fn two_hundred_concurrent_clients() {
    if skip_unless_root("two_hundred_concurrent_clients") {
        return;
    }
    require_tools(&["nft", "conntrack"]);
    let n = if rampart_netns_tests::heavy() {
        1000
    } else {
        200
    };
    let topo = RaTopology::new("ra-load");
    let pki = pki_with_gateway_cert(&topo);
    // EAP-MSCHAPv2 users load-0.. (the gateway proves itself with the PSK).
    let users = topo.dir.file("users.toml");
    let names: Vec<String> = (0..n).map(eap_user).collect();
    let entries: Vec<(&str, &str)> = names.iter().map(|u| (u.as_str(), LOAD_PASSWORD)).collect();
    write_users_file(&users, &entries);
    let mut ra = RemoteAccessToml::new(&pki, ClientAuthToml::Eap(users));
    ra.gateway_cert = None;
    ra.pool = if n > 250 {
        "10.99.0.0/20"
    } else {
        "10.99.0.0/24"
    }
    .into();
    // Every client comes from the router's one public address (a carrier NAT): the default
    // of 20 half-open IKE SAs per source drops most of a burst of 200 (measured: 40 of 200
    // never got through their retransmissions).
    let gw = start_gateway_half_open(&topo, &ra, Some(2 * n as u32));
    let addrs = topo.add_load_addresses(n);
    let dir = topo.daemon_dir("load");
    let (up, barrier, done) = (
        dir.join("up.json"),
        dir.join("barrier"),
        dir.join("done.json"),
    );
    let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    let bin = rampart_netns_tests::conn_load::binary().with_file_name("ra-load");
    let mut load = topo.client.spawn(
        &dir,
        "ra-load",
        &[
            &bin.to_string_lossy(),
            "--gateway",
            &GW_WAN.to_string(),
            "--gateway-id",
            GW_ID,
            "--psk",
            RA_PSK,
            "--addrs",
            &list.join(","),
            "--up",
            &up.to_string_lossy(),
            "--barrier",
            &barrier.to_string_lossy(),
            "--done",
            &done.to_string_lossy(),
            "--timeout-secs",
            "90",
            "--eap-password",
            LOAD_PASSWORD,
        ],
    );
    wait_until(Duration::from_secs(120), "load generator phase 1", || {
        assert!(
            load.is_running() || up.exists(),
            "ra-load exited:\n{}",
            load.log()
        );
        up.exists()
    });
    let report: LoadReport = read_json(&up).unwrap_or_else(|e| panic!("{e}"));
    let failed: Vec<_> = report
        .clients
        .iter()
        .filter(|c| c.up_ms.is_none())
        .collect();
    assert!(
        failed.is_empty(),
        "{} clients not up: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        report.duplicate_addresses().is_empty(),
        "{:?}",
        report.duplicate_addresses()
    );
    assert!(report
        .clients
        .iter()
        .all(|c| c.virtual_ip.as_deref().is_some_and(in_pool)));
    let mut times: Vec<u64> = report.clients.iter().filter_map(|c| c.up_ms).collect();
    times.sort_unstable();
    let status = gw.status_from_socket().expect("gateway status");
    let listed = ra_clients(&status);
    assert_eq!(listed.len(), n, "gateway lists every client");
    let distinct: BTreeSet<&String> = listed.iter().map(|(_, a)| a).collect();
    assert_eq!(distinct.len(), n, "gateway: no address twice");
    assert_eq!(pool_counters(&status).map(|p| p.0), Some(n as u64));

    std::fs::write(&barrier, b"go").expect("barrier");
    wait_until(Duration::from_secs(120), "load generator phase 2", || {
        assert!(
            load.is_running() || done.exists(),
            "ra-load exited:\n{}",
            load.log()
        );
        done.exists()
    });
    let _ = load.stop(libc::SIGTERM, Duration::from_secs(5));
    wait_until(Duration::from_secs(30), "every lease released", || {
        gw.status_from_socket()
            .ok()
            .and_then(|s| pool_counters(&s))
            .is_some_and(|(in_use, _, alloc, rel)| {
                in_use == 0 && alloc == n as u64 && rel == n as u64
            })
    });
    eprintln!(
        "{n} clients up in {} ms (per client: median {} ms, p95 {} ms, max {} ms)",
        report.elapsed_ms,
        times[times.len() / 2],
        times[times.len() * 95 / 100],
        times[times.len() - 1]
    );
}
