//! `[remote_access]` on the gateway and client profiles: the examples parse, the template peer
//! is built as the engine expects, every bad value is reported with file, line, key and what
//! is allowed, and a profile turns into a one-peer node configuration.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use rampart_config::{
    ClientTransport, DnsMode, Encapsulation, Identity, PeerAuth, ProxySetting, RemoteAddress,
    StartAction,
};
use rampart_ike::{ClientAuth, RemoteAccess};
use rampart_pki::ca;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/remote-access");

/// A copy of examples/remote-access in a fresh directory, with the `pki/` the examples' comments
/// tell how to make (`rampart pki` library functions).
fn example_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rampart-ra-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(EXAMPLES).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let pki = dir.join("pki");
    ca::init_ca(&pki, "Example VPN CA", ca::Algorithm::EcdsaP256, 30).unwrap();
    let san = |s: &str| s.parse::<ca::San>().unwrap();
    ca::issue(
        &pki,
        "vpn",
        &[san("dns:vpn.example.com"), san("ip:192.0.2.1")],
        ca::Algorithm::EcdsaP256,
        false,
        30,
    )
    .unwrap();
    ca::issue(
        &pki,
        "alice",
        &[san("email:alice@example.com")],
        ca::Algorithm::EcdsaP256,
        false,
        30,
    )
    .unwrap();
    dir
}

fn errors_of<T: std::fmt::Debug>(r: Result<T, rampart_config::ConfigErrors>) -> Vec<String> {
    r.expect_err("should fail")
        .0
        .iter()
        .map(|e| e.to_string())
        .collect()
}

fn ra_gateway(peer: &rampart_config::PeerPolicy) -> &rampart_ike::RaGateway {
    match &peer.remote_access {
        RemoteAccess::Gateway(g) => g,
        other => panic!("not a gateway template: {other:?}"),
    }
}

#[test]
fn eap_gateway_example_builds_the_template() {
    let dir = example_dir("gw-eap");
    let config = rampart_config::load(&dir.join("gateway-eap.toml")).unwrap();
    let ra = config.remote_access.as_ref().unwrap();
    assert_eq!(ra.peer, "remote-access");
    assert_eq!(config.peers.len(), 1);
    assert_eq!(config.peer_mep.len(), config.peers.len());
    let peer = &config.peers[0];
    assert_eq!(peer.name, "remote-access");
    assert_eq!(peer.remote_address, RemoteAddress::Any);
    assert_eq!(peer.start_action, StartAction::None);
    assert_eq!(peer.remote_id, Identity::Fqdn("%any".into()));
    assert_eq!(peer.local_id, Identity::Fqdn("vpn.example.com".into()));
    assert!(matches!(peer.auth, PeerAuth::Cert(_)));
    assert_eq!(peer.remote_domain, ["10.99.0.0/24".parse().unwrap()]);
    let g = ra_gateway(peer);
    let template = config.remote_access_template.as_ref().unwrap();
    assert!(
        std::ptr::eq(g, &*template.gateway),
        "one Arc shared by the peer and the template"
    );
    assert_eq!(g.pool.prefix, "10.99.0.0/24".parse().unwrap());
    assert_eq!(g.pool.exclude, ["10.99.0.1".parse::<IpAddr>().unwrap()]);
    assert_eq!(g.pool.lease_time, std::time::Duration::from_secs(3600));
    assert_eq!(g.dns, ["10.1.0.53".parse::<IpAddr>().unwrap()]);
    assert_eq!(g.dns_domains, ["corp.example.com"]);
    assert_eq!(g.routes, ["10.1.0.0/16".parse().unwrap()]);
    match &g.client_auth {
        ClientAuth::EapMschapv2(users) => assert_eq!(users.len(), 2),
        other => panic!("{other:?}"),
    }
    assert!(template.users_digest.is_some());
    assert!(ra.mss_clamp);
    assert_eq!(ra.stream_setup_timeout, std::time::Duration::from_secs(30));
    assert_eq!(ra.stream_idle_timeout, std::time::Duration::from_secs(300));
    let tcp = ra.tcp.as_ref().unwrap();
    assert_eq!(tcp.listen, ["0.0.0.0:4500".parse::<SocketAddr>().unwrap()]);
    let v = ra.visitor.as_ref().unwrap();
    assert_eq!(v.listen, ["0.0.0.0:443".parse::<SocketAddr>().unwrap()]);
    assert_eq!(v.certificate, dir.join("pki/certs/vpn.crt"));
    assert_eq!(v.key, dir.join("pki/private/vpn.key"));
    assert_eq!(v.https_backend, Some("127.0.0.1:8443".parse().unwrap()));
    assert_eq!(v.server_names, ["vpn.example.com"]);
    assert_eq!(v.alpn, "rampart-ike");
    // A second load of the same files is no change for a reload.
    let again = rampart_config::load(&dir.join("gateway-eap.toml")).unwrap();
    assert!(config.remote_access_changes(&again).is_empty());
}

#[test]
fn cert_gateway_example_uses_defaults() {
    let dir = example_dir("gw-cert");
    let config = rampart_config::load(&dir.join("gateway-cert.toml")).unwrap();
    let ra = config.remote_access.as_ref().unwrap();
    let g = ra_gateway(&config.peers[0]);
    assert_eq!(g.client_auth, ClientAuth::Peer);
    assert!(g.routes.is_empty(), "full tunnel");
    assert!(g.dns_domains.is_empty());
    assert_eq!(config.remote_access_template.unwrap().users_digest, None);
    // TCP is on without its table; Visitor Mode is off without its table.
    assert_eq!(
        ra.tcp.as_ref().unwrap().listen,
        ["0.0.0.0:4500".parse::<SocketAddr>().unwrap()]
    );
    assert!(ra.visitor.is_none());
}

#[test]
fn users_file_entries_match_the_documented_hash_recipe() {
    // users.toml's alice is "password": the NT hash the docs' openssl pipeline prints.
    let hash = rampart_eap::nt_hash_for_password("password").unwrap();
    assert_eq!(hash.to_hex(), "8846f7eaee8fb117ad06bdd830b7586c");
    let hash = rampart_eap::nt_hash_for_password("correct horse battery staple").unwrap();
    assert_eq!(hash.to_hex(), "1b9d5effd34ac283c8efe2eacaea8bbc");
    let text = std::fs::read_to_string(Path::new(EXAMPLES).join("users.toml")).unwrap();
    assert_eq!(rampart_eap::Credentials::from_toml(&text).unwrap().len(), 2);
}

#[test]
fn eap_client_example_parses_and_builds_a_node_config() {
    let dir = example_dir("cl-eap");
    let p = rampart_config::load_profile(&dir.join("client-eap.toml")).unwrap();
    assert_eq!(p.name, "corp");
    assert_eq!(p.gateway, "vpn.example.com");
    assert_eq!(p.gateway_port, None);
    assert_eq!(p.remote_id, Identity::Fqdn("vpn.example.com".into()));
    assert_eq!(p.local_id, Identity::Fqdn("alice".into()));
    let (user, password) = p.eap.clone().unwrap();
    assert_eq!((user.as_str(), password.as_str()), ("alice", "password"));
    // Gateway verified by CA only: an unused local credential stands in.
    assert!(matches!(p.auth, PeerAuth::Cert(_)));
    assert_eq!(
        p.transports,
        [
            ClientTransport::Udp,
            ClientTransport::Tcp,
            ClientTransport::Tls
        ]
    );
    assert_eq!((p.tcp_port, p.visitor_port), (4500, 443));
    assert_eq!(p.proxy, ProxySetting::Environment);
    assert_eq!(p.dns, DnsMode::Auto);
    assert_eq!(
        p.captive_portal.as_deref(),
        Some("http://connectivity-check.example.com/generate_204")
    );
    assert!(p.small_first_proposal && p.pmtu_probe && p.mss_clamp && !p.kill_switch);
    assert_eq!(p.keepalive, std::time::Duration::from_secs(20));
    assert_eq!(p.liveness, std::time::Duration::from_secs(10));
    assert_eq!(p.state_dir, Path::new("/run/rampart/client"));

    let local: IpAddr = "198.51.100.7".parse().unwrap();
    let gw: IpAddr = "192.0.2.1".parse().unwrap();
    let c = p.node_config(local, gw, ClientTransport::Udp);
    assert_eq!(c.peers.len(), 1);
    assert_eq!(c.peer_mep.len(), 1);
    let peer = &c.peers[0];
    assert_eq!(peer.name, "corp");
    assert_eq!(peer.local_address, local);
    assert_eq!(peer.remote_address, RemoteAddress::Ip(gw));
    assert_eq!(peer.start_action, StartAction::Always);
    assert_eq!(peer.encapsulation, Encapsulation::Auto);
    assert_eq!(peer.remote_domain, ["0.0.0.0/0".parse().unwrap()]);
    assert_eq!(peer.liveness_interval, p.liveness);
    match &peer.remote_access {
        RemoteAccess::Client(c) => {
            assert_eq!(c.eap.as_ref().unwrap().0, "alice");
            assert!(c.small_first_proposal);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.local.domain, ["0.0.0.0/0".parse().unwrap()]);
    assert_eq!(
        c.gateway.status_socket,
        Path::new("/run/rampart/client/corp.sock")
    );
    assert_eq!(c.gateway.nat_keepalive, p.keepalive);
    assert_eq!(c.tunnel.device, "rampart-c0");
    assert!(!c.tunnel.offload);
    assert!(c.firewall.rules.is_empty(), "the client passes everything");
    assert!(c.cluster.is_none() && c.rim.is_none() && c.remote_access.is_none());
    for t in [ClientTransport::Tcp, ClientTransport::Tls] {
        assert_eq!(
            p.node_config(local, gw, t).peers[0].encapsulation,
            Encapsulation::Stream
        );
    }
}

#[test]
fn cert_client_example_parses() {
    let dir = example_dir("cl-cert");
    let p = rampart_config::load_profile(&dir.join("client-cert.toml")).unwrap();
    // The default name is the file's stem.
    assert_eq!(p.name, "client-cert");
    assert_eq!(p.gateway, "192.0.2.1");
    assert_eq!(p.local_id, Identity::Email("alice@example.com".into()));
    assert!(p.eap.is_none());
    assert!(p.kill_switch);
    match &p.proxy {
        ProxySetting::Url { url, credentials } => {
            assert_eq!(url, "http://proxy.example.com:3128");
            assert_eq!(credentials.as_ref().unwrap().0, "alice");
        }
        other => panic!("{other:?}"),
    }
    let gw: IpAddr = "192.0.2.1".parse().unwrap();
    let c = p.node_config("198.51.100.7".parse().unwrap(), gw, ClientTransport::Tls);
    match &c.peers[0].remote_access {
        RemoteAccess::Client(c) => assert!(c.eap.is_none()),
        other => panic!("{other:?}"),
    }
}

// ---- gateway errors ----

const BASE: &str = r#"
[gateway]
name = "vpn"
[local]
domain = ["10.1.0.0/16"]
[[peer]]
name = "site-b"
local_address = "192.0.2.1"
remote_address = "192.0.2.2"
psk = "a pre-shared key of some length"
remote_domain = ["10.2.0.0/24"]
[remote_access]
local_address = "192.0.2.1"
psk = "another pre-shared key, long enough"
"#;

fn gw(extra: &str) -> Result<rampart_config::GatewayConfig, rampart_config::ConfigErrors> {
    rampart_config::parse(&format!("{BASE}{extra}"), "gw.toml")
}

fn gw_in(dir: &Path, text: &str) -> Result<rampart_config::GatewayConfig, Vec<String>> {
    rampart_config::parse(text, dir.join("gw.toml").to_str().unwrap())
        .map_err(|e| e.0.iter().map(|x| x.to_string()).collect())
}

#[test]
fn psk_template_next_to_a_site_peer() {
    let c = gw("pool = \"10.99.0.0/24\"\n").unwrap();
    assert_eq!(c.peers.len(), 2);
    assert_eq!(c.peer_mep.len(), 2);
    assert_eq!(c.peers[1].name, "remote-access");
    assert_eq!(c.peer_mep[1].name, "remote-access");
    assert_eq!(c.peer_mep[1].own_domain, ["10.99.0.0/24".parse().unwrap()]);
    assert_eq!(ra_gateway(&c.peers[1]).client_auth, ClientAuth::Peer);
    assert_eq!(
        c.peers[1].psk.as_slice(),
        b"another pre-shared key, long enough"
    );
}

#[test]
fn a_gateway_may_have_no_site_peer() {
    let text = r#"
[gateway]
name = "vpn"
[local]
domain = ["10.1.0.0/16"]
[remote_access]
name = "clients"
local_address = "192.0.2.1"
remote_id = "@laptop.example.com"
psk = "another pre-shared key, long enough"
pool = "10.99.0.0/28"
"#;
    let c = rampart_config::parse(text, "gw.toml").unwrap();
    assert_eq!(c.peers.len(), 1);
    assert_eq!(c.peers[0].name, "clients");
    assert_eq!(
        c.peers[0].remote_id,
        Identity::Fqdn("laptop.example.com".into())
    );
}

#[test]
fn pool_errors() {
    assert_eq!(
        errors_of(gw("")),
        ["gw.toml:12:1: remote_access.pool: missing required key; allowed: an IPv4 prefix such as 10.99.0.0/24"]
    );
    let cases: &[(&str, &str)] = &[
        (
            "pool = \"10.1.5.0/24\"",
            "gw.toml:15:8: remote_access.pool: 10.1.5.0/24 overlaps the local domain prefix 10.1.0.0/16; allowed: a prefix outside local.domain and every peer's remote_domain",
        ),
        (
            "pool = \"10.2.0.0/16\"",
            "gw.toml:15:8: remote_access.pool: 10.2.0.0/16 overlaps 10.2.0.0/24, the remote domain of peer[0]; allowed: a prefix outside local.domain and every peer's remote_domain",
        ),
        (
            "pool = \"10.99.0.1/24\"",
            "gw.toml:15:8: remote_access.pool: prefix \"10.99.0.1/24\" has host bits set (did you mean 10.99.0.0/24?); allowed: an IPv4 prefix such as 10.99.0.0/24",
        ),
        (
            "pool = \"fd00::/64\"",
            "gw.toml:15:8: remote_access.pool: \"fd00::/64\" is IPv6; remote access hands out IPv4 only; allowed: an IPv4 prefix such as 10.99.0.0/24",
        ),
        (
            "pool = \"pool\"",
            "gw.toml:15:8: remote_access.pool: invalid prefix \"pool\"; allowed: an IPv4 prefix such as 10.99.0.0/24",
        ),
        (
            "pool = \"10.99.0.0/30\"\npool_exclude = [\"10.99.0.1\", \"10.99.0.2\"]",
            "gw.toml:15:8: remote_access.pool: the pool 10.99.0.0/30 has no usable address; allowed: a prefix with at least one address left after the network, broadcast and pool_exclude addresses",
        ),
        (
            "pool = \"10.99.0.0/24\"\npool_exclude = [\"10.98.0.1\"]",
            "gw.toml:16:17: remote_access.pool_exclude[0]: 10.98.0.1 is not inside the pool 10.99.0.0/24; allowed: addresses inside 10.99.0.0/24",
        ),
        (
            "pool = \"10.99.0.0/24\"\nlease_time = \"5s\"",
            "gw.toml:16:14: remote_access.lease_time: 5s is out of range; allowed: 1m to 7d",
        ),
        (
            "pool = \"10.99.0.0/24\"\nstream_setup_timeout = \"1s\"",
            "gw.toml:16:24: remote_access.stream_setup_timeout: 1s is out of range; allowed: 5s to 10m",
        ),
        (
            "pool = \"10.99.0.0/24\"\nstream_idle_timeout = \"2d\"",
            "gw.toml:16:23: remote_access.stream_idle_timeout: 2d is out of range; allowed: 30s to 1d",
        ),
    ];
    for (extra, want) in cases {
        assert_eq!(errors_of(gw(&format!("{extra}\n"))), [*want], "{extra}");
    }
}

#[test]
fn dns_routes_and_names() {
    let cases: &[(&str, &str)] = &[
        (
            "dns = [\"fd00::53\"]",
            "gw.toml:16:8: remote_access.dns[0]: fd00::53 is not an IPv4 unicast address; allowed: an IPv4 address such as 10.99.0.1",
        ),
        (
            "dns = [\"dns.example.com\"]",
            "gw.toml:16:8: remote_access.dns[0]: invalid IP address \"dns.example.com\"; allowed: an IPv4 address such as 10.99.0.1",
        ),
        (
            "dns_domains = [\"corp..example\"]",
            "gw.toml:16:16: remote_access.dns_domains[0]: invalid domain name \"corp..example\"; allowed: a DNS domain such as corp.example.com",
        ),
        (
            "routes = [\"10.1.0.0/16\", \"2001:db8::/32\"]",
            "gw.toml:16:26: remote_access.routes[1]: \"2001:db8::/32\" is IPv6; remote access hands out IPv4 only; allowed: an IPv4 prefix such as 10.99.0.0/24",
        ),
        (
            "name = \"site-b\"",
            "gw.toml:16:8: remote_access.name: the name \"site-b\" is also the name of peer[0]; allowed: a name used by no [[peer]] (default \"remote-access\")",
        ),
        (
            "remote_address = \"any\"",
            "gw.toml:16:1: remote_access.remote_address: unknown key; allowed: name, local_address, local_id, remote_id, auth, psk, psk_file, certificate, private_key, ca_certificates, crl, rsa_signature, client_auth, users_file, pool, pool_exclude, lease_time, dns, dns_domains, routes, entry_points, entry_point_selection, ike_proposals, esp_proposals, esn, ike_lifetime, child_lifetime, child_lifetime_bytes, liveness_interval, mobike, replay_window, mss_clamp, stream_setup_timeout, stream_idle_timeout, tcp, visitor",
        ),
    ];
    for (extra, want) in cases {
        assert_eq!(
            errors_of(gw(&format!("pool = \"10.99.0.0/24\"\n{extra}\n"))),
            [*want],
            "{extra}"
        );
    }
    let c = gw("pool = \"10.99.0.0/24\"\ndns_domains = [\"Corp.Example.COM.\"]\nroutes = []\n")
        .unwrap();
    let g = ra_gateway(&c.peers[1]);
    assert_eq!(g.dns_domains, ["corp.example.com"]);
    assert!(g.routes.is_empty());
}

#[test]
fn client_auth_errors() {
    let dir = example_dir("gw-auth");
    let text = |extra: &str| format!("{BASE}pool = \"10.99.0.0/24\"\n{extra}\n");
    let cases: &[(&str, &str)] = &[
        (
            "client_auth = \"eap-mschapv2\"",
            "remote_access.users_file: client_auth = \"eap-mschapv2\" needs a users file; allowed: users_file = \"users.toml\" with [[user]] tables (name, nt_hash)",
        ),
        (
            "client_auth = \"cert\"",
            "remote_access.client_auth: client_auth = \"cert\" but the gateway's auth is \"psk\"; allowed: \"psk\" (the same method as auth) or \"eap-mschapv2\"",
        ),
        (
            "client_auth = \"password\"",
            "remote_access.client_auth: unknown value \"password\"; allowed: psk, cert, eap-mschapv2",
        ),
        (
            "users_file = \"users.toml\"",
            "remote_access.users_file: users_file is set but client_auth is not \"eap-mschapv2\"; allowed: client_auth = \"eap-mschapv2\" with a users_file, or no users_file",
        ),
    ];
    for (extra, want) in cases {
        let errs = gw_in(&dir, &text(extra)).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].ends_with(want), "{}\n  wanted ...{want}", errs[0]);
        assert!(errs[0].contains("gw.toml:16:"), "{}", errs[0]);
    }
    // Unreadable, malformed and empty users files.
    std::fs::write(
        dir.join("bad-users.toml"),
        "[[user]]\nname = \"x\"\nnt_hash = \"abc\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("empty-users.toml"), "# nobody\n").unwrap();
    let eap = |file: &str| {
        text(&format!(
            "client_auth = \"eap-mschapv2\"\nusers_file = \"{file}\""
        ))
    };
    let errs = gw_in(&dir, &eap("missing.toml")).unwrap_err();
    assert!(
        errs[0].contains("remote_access.users_file: cannot read"),
        "{errs:?}"
    );
    let errs = gw_in(&dir, &eap("bad-users.toml")).unwrap_err();
    assert!(
        errs[0].contains("bad-users.toml: nt_hash must be 32 hexadecimal digits"),
        "{errs:?}"
    );
    let errs = gw_in(&dir, &eap("empty-users.toml")).unwrap_err();
    assert!(errs[0].contains("no [[user]] table"), "{errs:?}");
    let c = gw_in(&dir, &eap("users.toml")).unwrap();
    assert!(matches!(
        ra_gateway(&c.peers[1]).client_auth,
        ClientAuth::EapMschapv2(_)
    ));
}

#[test]
fn transport_errors() {
    let dir = example_dir("gw-transports");
    let text = |extra: &str| format!("{BASE}pool = \"10.99.0.0/24\"\n{extra}\n");
    let cases: &[(&str, &str)] = &[
        (
            "[remote_access.tcp]\nport = 0",
            "gw.toml:17:8: remote_access.tcp.port: 0 is out of range; allowed: 1 to 65535",
        ),
        (
            "[remote_access.tcp]\nbind = [\"eth0\"]",
            "gw.toml:17:9: remote_access.tcp.bind[0]: invalid bind address \"eth0\"; allowed: an IPv4 or IPv6 address of this host, or 0.0.0.0 / :: (every address)",
        ),
        (
            "[remote_access.visitor]\nport = 70000\ncertificate = \"pki/certs/vpn.crt\"\nkey = \"pki/private/vpn.key\"",
            "gw.toml:17:8: remote_access.visitor.port: 70000 is out of range; allowed: 1 to 65535",
        ),
        (
            "[remote_access.visitor]\nkey = \"pki/private/vpn.key\"",
            "gw.toml:16:1: remote_access.visitor.certificate: missing required key; allowed: a PEM certificate chain (the server certificate first)",
        ),
        (
            "[remote_access.visitor]\ncertificate = \"nope.crt\"\nkey = \"pki/private/vpn.key\"",
            "remote_access.visitor.certificate: cannot read",
        ),
        (
            "[remote_access.visitor]\ncertificate = \"pki/private/vpn.key\"\nkey = \"pki/private/vpn.key\"",
            "remote_access.visitor.certificate: ",
        ),
        (
            "[remote_access.visitor]\ncertificate = \"pki/certs/vpn.crt\"\nkey = \"pki/certs/vpn.crt\"",
            "remote_access.visitor.key: ",
        ),
        (
            "[remote_access.visitor]\ncertificate = \"pki/certs/vpn.crt\"\nkey = \"pki/private/vpn.key\"\nhttps_backend = \"localhost\"",
            "gw.toml:19:17: remote_access.visitor.https_backend: invalid backend address \"localhost\"; allowed: ADDRESS:PORT of the HTTPS server, e.g. 127.0.0.1:8443 or [::1]:8443",
        ),
        (
            "[remote_access.visitor]\ncertificate = \"pki/certs/vpn.crt\"\nkey = \"pki/private/vpn.key\"\nalpn = \"\"",
            "gw.toml:19:8: remote_access.visitor.alpn: the ALPN id is 0 bytes long; allowed: 1 to 255 bytes (default \"rampart-ike\")",
        ),
        (
            "[remote_access.visitor]\ncertificate = \"pki/certs/vpn.crt\"\nkey = \"pki/private/vpn.key\"\nport = 4500",
            "gw.toml:19:8: remote_access.visitor.port: Visitor Mode and [remote_access.tcp] both listen on TCP 0.0.0.0:4500; allowed: another port (or disjoint bind addresses)",
        ),
        (
            "[remote_access.visitor]\ncertificate = \"pki/certs/vpn.crt\"\nkey = \"pki/private/vpn.key\"\nserver_names = [\"*.example.com\"]",
            "remote_access.visitor.server_names[0]: invalid server name \"*.example.com\"; allowed: a DNS name such as vpn.example.com",
        ),
    ];
    for (extra, want) in cases {
        let errs = gw_in(&dir, &text(extra)).unwrap_err();
        assert_eq!(errs.len(), 1, "{extra}: {errs:?}");
        assert!(
            errs[0].ends_with(want) || errs[0].contains(want),
            "{}\n  wanted {want}",
            errs[0]
        );
    }
    // Off: no listener, and the keys of a disabled visitor table need no files.
    let c = gw_in(
        &dir,
        &text("[remote_access.tcp]\nenabled = false\n[remote_access.visitor]\nenabled = false"),
    )
    .unwrap();
    let ra = c.remote_access.unwrap();
    assert!(ra.tcp.is_none() && ra.visitor.is_none());
    // Bind lists with ports; same port on disjoint addresses is fine.
    let c = gw_in(
        &dir,
        &text(
            "[remote_access.tcp]\nport = 443\nbind = [\"192.0.2.1\"]\n[remote_access.visitor]\nbind = [\"192.0.2.9\"]\ncertificate = \"pki/certs/vpn.crt\"\nkey = \"pki/private/vpn.key\"",
        ),
    )
    .unwrap();
    let ra = c.remote_access.unwrap();
    assert_eq!(
        ra.tcp.unwrap().listen,
        ["192.0.2.1:443".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(
        ra.visitor.unwrap().listen,
        ["192.0.2.9:443".parse::<SocketAddr>().unwrap()]
    );
}

#[test]
fn entry_points_and_their_errors() {
    use rampart_wire::ike::{EntryPointList, EntryPointSelection};
    let c = gw("pool = \"10.99.0.0/24\"\nentry_points = [\"vpn-eu.example.org\", \" 203.0.113.7:4500 \", \"[2001:db8::7]:443\"]\nentry_point_selection = \"primary-backup\"\n")
        .unwrap();
    assert_eq!(
        ra_gateway(&c.peers[1]).entry_points,
        Some(EntryPointList {
            selection: EntryPointSelection::PrimaryBackup,
            entries: vec![
                "vpn-eu.example.org".into(),
                "203.0.113.7:4500".into(),
                "[2001:db8::7]:443".into()
            ],
        })
    );
    let c = gw("pool = \"10.99.0.0/24\"\nentry_points = [\"vpn.example.org\"]\n").unwrap();
    assert_eq!(
        ra_gateway(&c.peers[1])
            .entry_points
            .as_ref()
            .unwrap()
            .selection,
        EntryPointSelection::Unspecified
    );
    let c = gw("pool = \"10.99.0.0/24\"\nentry_points = []\n").unwrap();
    assert_eq!(ra_gateway(&c.peers[1]).entry_points, None);
    let form = "allowed: a host name or address, optionally with :port (\"vpn-eu.example.org\", \"203.0.113.7:4500\", \"[2001:db8::7]:443\")";
    let cases: Vec<(String, String)> = vec![
        (
            "entry_points = [\"vpn..example\"]".into(),
            format!("gw.toml:16:17: remote_access.entry_points[0]: invalid entry point \"vpn..example\": host is neither an IP address nor a domain name; {form}"),
        ),
        (
            "entry_points = [\"a.example\", \"a.example:0\"]".into(),
            format!("gw.toml:16:30: remote_access.entry_points[1]: invalid entry point \"a.example:0\": port is not a number in 1..=65535; {form}"),
        ),
        (
            "entry_points = [\"a.example\", \"a.example\"]".into(),
            "gw.toml:16:30: remote_access.entry_points[1]: \"a.example\" is listed twice; allowed: each entry point once".into(),
        ),
        (
            format!(
                "entry_points = [{}]",
                (0..17).map(|i| format!("\"h{i}.example\"")).collect::<Vec<_>>().join(", ")
            ),
            "gw.toml:16:16: remote_access.entry_points: 17 entry points; allowed: at most 16".into(),
        ),
        (
            "entry_point_selection = \"primary-backup\"".into(),
            "gw.toml:16:25: remote_access.entry_point_selection: entry_point_selection without entry_points; allowed: it tells clients how to choose among entry_points = [...]".into(),
        ),
        (
            "entry_points = [\"a.example\"]\nentry_point_selection = \"round-robin\"".into(),
            "gw.toml:17:25: remote_access.entry_point_selection: unknown value \"round-robin\"; allowed: first-to-respond, primary-backup".into(),
        ),
    ];
    for (extra, want) in cases {
        assert_eq!(
            errors_of(gw(&format!("pool = \"10.99.0.0/24\"\n{extra}\n"))),
            [want],
            "{extra}"
        );
    }
}

#[test]
fn remote_access_changes_name_the_keys() {
    let a = gw("pool = \"10.99.0.0/24\"\n").unwrap();
    assert!(a.remote_access_changes(&a.clone()).is_empty());
    let b =
        gw("pool = \"10.98.0.0/24\"\ndns = [\"10.1.0.53\"]\n[remote_access.tcp]\nport = 8443\n")
            .unwrap();
    assert_eq!(
        a.remote_access_changes(&b),
        [
            "remote_access.pool",
            "remote_access.dns",
            "remote_access.tcp"
        ]
    );
    let none = rampart_config::parse(
        &BASE.replace("[remote_access]", "[x]").replace(
            "[x]\nlocal_address = \"192.0.2.1\"\npsk = \"another pre-shared key, long enough\"\n",
            "",
        ),
        "gw.toml",
    )
    .unwrap();
    assert_eq!(a.remote_access_changes(&none), ["remote_access"]);
    assert!(none.remote_access_changes(&none).is_empty());
}

// ---- profile errors ----

fn profile(text: &str) -> Result<rampart_config::ClientProfile, rampart_config::ConfigErrors> {
    rampart_config::parse_profile(text, "corp.toml")
}

const PSK_PROFILE: &str = "gateway = \"vpn.example.com:8443\"\nlocal_id = \"laptop.example.com\"\npsk = \"another pre-shared key, long enough\"\n";

#[test]
fn psk_profile_defaults() {
    let p = profile(PSK_PROFILE).unwrap();
    assert_eq!(p.name, "corp");
    assert_eq!(p.gateway, "vpn.example.com");
    assert_eq!(p.gateway_port, Some(8443));
    assert_eq!(p.visitor_port, 8443, "host:PORT sets the Visitor Mode port");
    assert_eq!(p.remote_id, Identity::Fqdn("vpn.example.com".into()));
    assert_eq!(p.psk.as_slice(), b"another pre-shared key, long enough");
    assert!(matches!(p.auth, PeerAuth::Psk));
    assert_eq!(p.alpn, "rampart-ike");
    assert_eq!(p.device, "rampart-c0");
    assert_eq!(p.mtu, 1400);
    assert!(p.captive_portal.is_none() && p.pac_file.is_none() && p.tls_ca.is_none());
    let p = profile(&PSK_PROFILE.replace("vpn.example.com:8443", "[2001:db8::1]")).unwrap();
    assert_eq!(p.gateway, "2001:db8::1");
    assert_eq!(p.remote_id, Identity::Ip("2001:db8::1".parse().unwrap()));
}

#[test]
fn profile_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "transports = [\"udp\", \"quic\"]",
            "corp.toml:4:22: transports[1]: unknown value \"quic\"; allowed: udp, tcp, tls",
        ),
        (
            "transports = [\"tls\", \"tls\"]",
            "corp.toml:4:22: transports[1]: \"tls\" is listed twice; allowed: each transport once",
        ),
        (
            "visitor_port = 443",
            "corp.toml:4:16: visitor_port: visitor_port = 443 but gateway names port 8443; allowed: the port in one place: gateway = \"host:PORT\" or visitor_port",
        ),
        (
            "tcp_port = 0",
            "corp.toml:4:12: tcp_port: 0 is out of range; allowed: 1 to 65535",
        ),
        (
            "proxy = \"socks5://proxy:1080\"",
            "corp.toml:4:9: proxy: invalid proxy \"socks5://proxy:1080\"; allowed: \"none\", \"environment\" (the default) or an http:// URL such as http://proxy.example.com:3128",
        ),
        (
            "proxy_user = \"alice\"\nproxy_password = \"x\"",
            "corp.toml:4:14: proxy_user: proxy_user is set but no proxy URL or PAC is; allowed: proxy = \"http://...\" or proxy_pac with the credentials (the environment's proxy takes them in its URL)",
        ),
        (
            "proxy = \"none\"\nproxy_pac = \"http://wpad/wpad.dat\"",
            "corp.toml:5:13: proxy_pac: both proxy and proxy_pac are set; allowed: one of proxy and proxy_pac",
        ),
        (
            "user = \"alice\"",
            "corp.toml:4:8: password: user is set but no password; allowed: password = \"...\" or password_file = \"path\"",
        ),
        (
            "dns = \"dnsmasq\"",
            "corp.toml:4:7: dns: unknown value \"dnsmasq\"; allowed: auto, resolved, resolv-conf, off",
        ),
        (
            "keepalive = \"0s\"",
            "corp.toml:4:13: keepalive: 0s is out of range; allowed: 1s to 10m",
        ),
        (
            "captive_portal = \"https://example.com\"",
            "corp.toml:4:18: captive_portal: invalid probe URL \"https://example.com\"; allowed: a plain http:// URL that answers 204 (no https: a portal cannot intercept it), or \"off\"",
        ),
        (
            "pac_file = \"proxy.pac\"\npac_listen = \"0.0.0.0:8089\"",
            "corp.toml:5:14: pac_listen: invalid PAC listen address \"0.0.0.0:8089\"; allowed: a loopback ADDRESS:PORT such as 127.0.0.1:8089",
        ),
        (
            "mtu = 100",
            "corp.toml:4:7: mtu: 100 is out of range; allowed: 576 to 9000",
        ),
        (
            "device = \"a-very-long-device-name\"",
            "corp.toml:4:10: device: invalid device name \"a-very-long-device-name\"; allowed: 1 to 15 bytes from A-Z a-z 0-9 . _ -",
        ),
        (
            "esp_proposals = [\"aes256gcm16-esn\", \"aes128gcm16\"]",
            "corp.toml:4:37: esp_proposals[1]: -esn is on some ESP proposals but not on this one (ESN is negotiated per peer); allowed: -esn on every ESP proposal or on none; or esn = true",
        ),
        (
            "gatway = \"typo\"",
            "corp.toml:4:1: gatway: unknown key; allowed: name, gateway, gateways, selection, learn_gateways, local_id, remote_id, auth, psk, psk_file, certificate, private_key, ca_certificates, crl, rsa_signature, user, password, password_file, transports, tcp_port, visitor_port, alpn, tls_ca, tls_server_name, proxy, proxy_pac, proxy_user, proxy_password, ike_proposals, esp_proposals, small_first_proposal, keepalive, liveness, mobike, dns, kill_switch, captive_portal, pac_file, pac_listen, device, mtu, pmtu_probe, mss_clamp, state_dir",
        ),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(extra, want)| {
            let errs = errors_of(profile(&format!("{PSK_PROFILE}{extra}\n")));
            (errs != [*want]).then(|| format!("{extra}: got {errs:?}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert_eq!(
        errors_of(profile("local_id = \"x\"\npsk = \"another pre-shared key, long enough\"\n")),
        ["corp.toml:1:1: gateway: missing required key; allowed: a host name or address, optionally with :PORT (Visitor Mode port): vpn.example.com, 192.0.2.1:8443, [2001:db8::1]:443"]
    );
    assert_eq!(
        errors_of(profile("gateway = \"vpn.example.com:http\"\nlocal_id = \"x\"\npsk = \"another pre-shared key, long enough\"\n")),
        ["corp.toml:1:11: gateway: invalid port \"http\" (1 to 65535); allowed: a host name or address, optionally with :PORT (Visitor Mode port): vpn.example.com, 192.0.2.1:8443, [2001:db8::1]:443"]
    );
    assert_eq!(
        errors_of(profile("gateway = \"vpn\"\npsk = \"another pre-shared key, long enough\"\n")),
        ["corp.toml:1:1: local_id: missing required key; allowed: with a pre-shared key and no user, our identity: a host name, email:... or an address"]
    );
    let errs = errors_of(profile(
        "gateway = \"vpn\"\nuser = \"alice\"\npassword = \"pw\"\n",
    ));
    assert_eq!(
        errs,
        ["corp.toml:1:1: psk: missing pre-shared key; allowed: exactly one of psk = \"...\" and psk_file = \"path\""]
    );
    let errs = errors_of(profile(
        "gateway = \"vpn\"\nuser = \"alice\"\npassword = \"pw\"\nauth = \"cert\"\n",
    ));
    assert_eq!(
        errs,
        ["corp.toml:4:8: ca_certificates: auth = \"cert\" needs ca_certificates (the CAs that verify the gateway); allowed: ca_certificates = [\"ca.crt\"]"]
    );
    // Syntax errors carry a position too.
    let errs = errors_of(profile("gateway = \n"));
    assert!(errs[0].starts_with("corp.toml:1:"), "{errs:?}");
    assert!(rampart_config::load_profile(Path::new("/nonexistent/p.toml")).is_err());
}

#[test]
fn profile_with_eap_over_psk_and_a_pac() {
    let dir = example_dir("cl-pac");
    std::fs::write(
        dir.join("proxy.pac"),
        "function FindProxyForURL(u, h) { return \"DIRECT\"; }",
    )
    .unwrap();
    std::fs::write(dir.join("alice.password"), "s3cret\n").unwrap();
    let text = "gateway = \"192.0.2.1\"\npsk = \"another pre-shared key, long enough\"\nuser = \"bob@example.com\"\npassword_file = \"alice.password\"\nproxy_pac = \"proxy.pac\"\nproxy_user = \"bob\"\nproxy_password = \"pw\"\ntransports = [\"tls\"]\nstate_dir = \"state\"\n";
    let p = rampart_config::parse_profile(text, dir.join("p.toml").to_str().unwrap()).unwrap();
    assert_eq!(p.local_id, Identity::Email("bob@example.com".into()));
    assert_eq!(p.eap.as_ref().unwrap().1.as_str(), "s3cret");
    assert_eq!(p.transports, [ClientTransport::Tls]);
    assert_eq!(p.state_dir, dir.join("state"));
    match &p.proxy {
        ProxySetting::Pac {
            location,
            credentials,
        } => {
            assert_eq!(Path::new(location), dir.join("proxy.pac"));
            assert_eq!(credentials.as_ref().unwrap().0, "bob");
        }
        other => panic!("{other:?}"),
    }
    let errs = rampart_config::parse_profile(
        &text.replace("proxy.pac", "missing.pac"),
        dir.join("p.toml").to_str().unwrap(),
    )
    .unwrap_err();
    assert!(
        errs.to_string().contains("proxy_pac: cannot read"),
        "{errs}"
    );
}
