//! Parsing and validation through the public API: the examples, defaults, and one test per
//! error kind with the exact error lines.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rampart_config::*;
use rampart_crypto::{DhGroup, Encr, Integ, Prf};

const GW_A: &str = include_str!("../../../examples/site-to-site/gw-a.toml");
const GW_B: &str = include_str!("../../../examples/site-to-site/gw-b.toml");

/// The smallest valid file: everything else takes its default.
const MINIMAL: &str = r#"[gateway]
name = "gw"

[local]
domain = ["10.1.0.0/24"]

[[peer]]
name = "b"
local_address = "192.0.2.1"
remote_address = "192.0.2.2"
psk = "0123456789abcdef"
remote_domain = ["10.2.0.0/24"]
"#;

fn ok(text: &str) -> GatewayConfig {
    match parse(text, "gw.toml") {
        Ok(c) => c,
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

fn errors(text: &str) -> Vec<ConfigError> {
    match parse(text, "gw.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.0,
    }
}

fn lines(text: &str) -> Vec<String> {
    errors(text).iter().map(|e| e.to_string()).collect()
}

/// MINIMAL with `extra` appended to the first peer (last table of the file).
fn with_peer(extra: &str) -> String {
    format!("{MINIMAL}{extra}\n")
}

/// MINIMAL with `line` inserted into the [gateway] table.
fn with_gateway(line: &str) -> String {
    MINIMAL.replacen("name = \"gw\"\n", &format!("name = \"gw\"\n{line}\n"), 1)
}

fn only_kind(text: &str, kind: ErrorKind) -> Vec<String> {
    let errs = errors(text);
    assert!(errs.iter().all(|e| e.kind == kind), "{errs:#?}");
    errs.iter().map(|e| e.to_string()).collect()
}

#[test]
fn example_gateways_parse_and_mirror_each_other() {
    let a = ok(GW_A);
    let b = ok(GW_B);
    assert_eq!(a.gateway.name, "gw-a");
    assert_eq!(
        a.gateway.status_socket,
        PathBuf::from("/run/rampart/gw-a.sock")
    );
    assert_eq!((a.gateway.ike_port, a.gateway.nat_t_port), (500, 4500));
    assert_eq!(a.tunnel.device, "rampart0");
    assert_eq!(a.tunnel.mtu, 1400);
    let pa = &a.peers[0];
    let pb = &b.peers[0];
    assert_eq!(pa.name, "site-b");
    assert_eq!(RemoteAddress::Ip(pa.local_address), pb.remote_address);
    assert_eq!(pa.remote_address, RemoteAddress::Ip(pb.local_address));
    assert_eq!(pa.local_id, pb.remote_id);
    assert_eq!(pa.psk, pb.psk);
    assert_eq!(a.local.domain, pb.remote_domain);
    assert_eq!(b.local.domain, pa.remote_domain);
    assert_eq!(pa.ike_proposals, pb.ike_proposals);
    assert_eq!(pa.esp_proposals, pb.esp_proposals);
    assert_eq!(pa.child_lifetime_bytes, Some(100_000_000_000));
    assert_eq!(pa.ike_lifetime, Duration::from_secs(4 * 3600));
    assert_eq!(pa.child_lifetime, Duration::from_secs(3600));
    assert_eq!(pa.liveness_interval, Duration::from_secs(30));
    assert_eq!(pa.start_action, StartAction::Always);
    assert_eq!(pa.encapsulation, Encapsulation::Auto);
    assert_eq!(pa.replay_window, 1024);
    assert!(!pa.esn);
}

#[test]
fn examples_load_from_disk() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/site-to-site");
    // Debug shows every field (the PSK as its length); psk_file and psk give the same bytes.
    let same = |a: &GatewayConfig, b: &GatewayConfig| {
        format!("{a:?}") == format!("{b:?}")
            && a.peers
                .iter()
                .zip(&b.peers)
                .all(|(x, y)| x.sa_relevant_eq(y))
    };
    assert!(same(&load(&dir.join("gw-a.toml")).unwrap(), &ok(GW_A)));
    assert!(same(&load(&dir.join("gw-b.toml")).unwrap(), &ok(GW_B)));
}

#[test]
fn defaults_match_the_documentation() {
    let c = ok(MINIMAL);
    assert_eq!(
        c.gateway.status_socket,
        PathBuf::from("/run/rampart/gw.sock")
    );
    assert_eq!(c.gateway.ike_port, 500);
    assert_eq!(c.gateway.nat_t_port, 4500);
    assert_eq!(c.gateway.retransmit_timeout, Duration::from_secs(2));
    assert_eq!(c.gateway.retransmit_tries, 5);
    assert_eq!(c.gateway.nat_keepalive, Duration::from_secs(20));
    assert!(c.gateway.fragmentation);
    assert_eq!(c.gateway.fragment_size, 1280);
    assert_eq!(c.gateway.cookie_threshold, 100);
    assert_eq!(c.gateway.half_open_per_source, 20);
    assert_eq!(c.tunnel.device, "rampart0");
    assert_eq!(c.tunnel.mtu, 1400);
    let p = &c.peers[0];
    assert_eq!(p.local_id, Identity::Ip("192.0.2.1".parse().unwrap()));
    assert_eq!(p.remote_id, Identity::Ip("192.0.2.2".parse().unwrap()));
    assert_eq!(*p.psk, b"0123456789abcdef");
    assert_eq!(
        p.ike_proposals,
        vec![
            IkeProposal {
                encr: Encr::AesGcm16_256,
                integ: None,
                prf: Prf::HmacSha256,
                dh: DhGroup::X25519
            },
            IkeProposal {
                encr: Encr::AesGcm16_128,
                integ: None,
                prf: Prf::HmacSha256,
                dh: DhGroup::Ecp256
            },
        ]
    );
    assert_eq!(
        p.esp_proposals,
        vec![
            EspProposal {
                encr: Encr::AesGcm16_256,
                integ: None,
                dh: None
            },
            EspProposal {
                encr: Encr::ChaCha20Poly1305,
                integ: None,
                dh: None
            },
            EspProposal {
                encr: Encr::AesCbc128,
                integ: Some(Integ::HmacSha256_128),
                dh: None
            },
        ]
    );
    assert!(!p.esn);
    assert_eq!(p.start_action, StartAction::Always);
    assert_eq!(p.ike_lifetime, Duration::from_secs(4 * 3600));
    assert_eq!(p.child_lifetime, Duration::from_secs(3600));
    assert_eq!(p.child_lifetime_bytes, None);
    assert_eq!(p.liveness_interval, Duration::from_secs(30));
    assert_eq!(p.encapsulation, Encapsulation::Auto);
    assert_eq!(p.replay_window, 1024);
}

#[test]
fn values_in_all_their_forms() {
    let c = ok(&with_peer(
        r#"local_id = "@gw-a.example.com"
remote_id = "gw-b.example.com"
esp_proposals = ["aes256-sha256-x25519-esn", "aes128gcm16-esn"]
ike_proposals = ["aes128-sha256-prfsha384-ecp384"]
start_action = "on-traffic"
encapsulation = "force"
ike_lifetime = "1h30m"
child_lifetime = 600
child_lifetime_bytes = 1000000
liveness_interval = 0
replay_window = 65536"#,
    ));
    let p = &c.peers[0];
    assert_eq!(p.local_id, Identity::Fqdn("gw-a.example.com".into()));
    assert_eq!(p.remote_id, Identity::Fqdn("gw-b.example.com".into()));
    assert!(p.esn, "-esn on every proposal turns ESN on");
    assert_eq!(p.esp_proposals[0].dh, Some(DhGroup::X25519));
    assert_eq!(p.ike_proposals[0].integ, Some(Integ::HmacSha256_128));
    assert_eq!(p.start_action, StartAction::OnTraffic);
    assert_eq!(p.encapsulation, Encapsulation::Force);
    assert_eq!(p.ike_lifetime, Duration::from_secs(5400));
    assert_eq!(p.child_lifetime, Duration::from_secs(600));
    assert_eq!(p.child_lifetime_bytes, Some(1_000_000));
    assert_eq!(p.liveness_interval, Duration::ZERO);
    assert_eq!(p.replay_window, 65536);

    let c = ok(&with_gateway(
        "status_socket = \"/tmp/x.sock\"\nnat_t_port = 2746\nretransmit_timeout = \"500ms\"\nretransmit_tries = 0\nnat_keepalive = \"2s\"",
    ));
    assert_eq!(c.gateway.nat_keepalive, Duration::from_secs(2));
    let f = ok(&with_gateway(
        "fragmentation = false\nfragment_size = 576\ncookie_threshold = 0\nhalf_open_per_source = 1",
    ));
    assert!(!f.gateway.fragmentation);
    assert_eq!(f.gateway.fragment_size, 576);
    assert_eq!(f.gateway.cookie_threshold, 0);
    assert_eq!(f.gateway.half_open_per_source, 1);
    assert_eq!(c.gateway.status_socket, PathBuf::from("/tmp/x.sock"));
    assert_eq!(c.gateway.nat_t_port, 2746);
    assert_eq!(c.gateway.retransmit_timeout, Duration::from_millis(500));
    assert_eq!(c.gateway.retransmit_tries, 0);

    // A bare address is a host prefix; IPv6 works end to end.
    let v6 = MINIMAL
        .replace("192.0.2.1", "2001:db8::1")
        .replace("192.0.2.2", "2001:db8::2")
        .replace("10.2.0.0/24", "fd00:2::7");
    let c = ok(&v6);
    assert_eq!(
        c.peers[0].remote_domain,
        vec!["fd00:2::7/128".parse().unwrap()]
    );
    assert_eq!(
        c.peers[0].remote_address,
        RemoteAddress::Ip("2001:db8::2".parse::<IpAddr>().unwrap())
    );
}

#[test]
fn io_error_names_the_file() {
    let e = load(Path::new("/nonexistent/gw.toml")).unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(e.0[0].kind, ErrorKind::Io);
    assert!(
        e.to_string()
            .starts_with("/nonexistent/gw.toml: cannot read the configuration: "),
        "{e}"
    );
}

#[test]
fn syntax_errors_have_positions() {
    let errs = errors("[gateway]\nname = \n");
    assert_eq!(errs[0].kind, ErrorKind::Syntax);
    assert_eq!(errs[0].position.map(|p| p.0), Some(2));
    assert!(errs[0].to_string().starts_with("gw.toml:2:"), "{}", errs[0]);
}

#[test]
fn unknown_keys_are_all_reported() {
    let text = format!("colour = 1\n{}", with_gateway("ike_prot = 500\nfoo = 1"));
    assert_eq!(
        only_kind(&text, ErrorKind::UnknownKey),
        [
            "gw.toml:1:1: colour: unknown key; allowed: gateway, tunnel, local, peer, inspection, object, service, rule, nat, entry_point_group, cluster, mep, rim, remote_access",
            "gw.toml:4:1: gateway.ike_prot: unknown key; allowed: name, member_id, status_socket, ike_port, nat_t_port, retransmit_timeout, retransmit_tries, nat_keepalive, fragmentation, fragment_size, cookie_threshold, half_open_per_source",
            "gw.toml:5:1: gateway.foo: unknown key; allowed: name, member_id, status_socket, ike_port, nat_t_port, retransmit_timeout, retransmit_tries, nat_keepalive, fragmentation, fragment_size, cookie_threshold, half_open_per_source",
        ]
    );
    let errs = errors(&with_peer("psk_fle = \"x\""));
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].key, "peer[0].psk_fle");
}

#[test]
fn wrong_types_are_all_reported_with_element_paths() {
    let text = with_peer(
        "replay_window = \"big\"\nesn = 1\nremote_id = 7\nesp_proposals = [\"aes256gcm16\", 5]",
    );
    assert_eq!(
        only_kind(&text, ErrorKind::WrongType),
        [
            "gw.toml:13:17: peer[0].replay_window: wrong type: found string \"big\"; allowed: an integer",
            "gw.toml:14:7: peer[0].esn: wrong type: found integer `1`; allowed: true or false",
            "gw.toml:15:13: peer[0].remote_id: wrong type: found integer `7`; allowed: a string",
            "gw.toml:16:33: peer[0].esp_proposals[1]: wrong type: found integer `5`; allowed: a string",
        ]
    );
    let errs = errors("gateway = 5\n[local]\ndomain = [\"10.1.0.0/24\"]\n[peer]\nname = \"x\"\n");
    let keys: Vec<_> = errs.iter().map(|e| (e.kind, e.key.as_str())).collect();
    assert_eq!(
        keys,
        [
            (ErrorKind::WrongType, "gateway"),
            (ErrorKind::WrongType, "peer")
        ]
    );
}

#[test]
fn missing_keys_and_tables() {
    let text = MINIMAL
        .replace("name = \"b\"\n", "")
        .replace("psk = \"0123456789abcdef\"\n", "");
    assert_eq!(
        only_kind(&text, ErrorKind::Missing),
        [
            "gw.toml:7:1: peer[0].name: missing required key; allowed: 1 to 64 characters from A-Z a-z 0-9 . _ -, not starting with . or -",
            "gw.toml:7:1: peer[0].psk: missing pre-shared key; allowed: exactly one of psk = \"...\" and psk_file = \"path\"",
        ]
    );
    let lines = only_kind("", ErrorKind::Missing);
    assert_eq!(
        lines,
        [
            "gw.toml: gateway: missing required table [gateway]; allowed: [gateway] with at least name = \"...\"",
            "gw.toml: local: missing required table [local]; allowed: [local] with domain = [\"10.1.0.0/24\"]",
            "gw.toml: peer: no [[peer]] table; allowed: at least one [[peer]], or a [remote_access] table",
        ]
    );
    // A key with the wrong type is reported once, not also as missing.
    let errs = errors(&MINIMAL.replace("name = \"b\"", "name = 5"));
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].kind, ErrorKind::WrongType);
}

#[test]
fn invalid_values() {
    // Where the example puts start_action: line 33, value at column 18.
    let mut text = GW_A.replace(
        "start_action = \"always\"",
        "start_action =   \"sometimes\"",
    );
    assert_eq!(
        lines(&text),
        ["gw.toml:33:18: peer[0].start_action: unknown value \"sometimes\"; allowed: none, on-traffic, always"]
    );
    text = with_peer(
        r#"local_id = "@"
encapsulation = "Auto"
ike_proposals = ["aes256gcm16-prfsha256-x25519", "aes256-prfsha256-x25519", "aes256gcm16-prfmd5-x25519"]
esp_proposals = ["aes256gcm16", "aes256gcm16-sha256"]
ike_lifetime = "4 hours"
child_lifetime_bytes = "lots""#,
    );
    let replace_net = text
        .replace("\"10.2.0.0/24\"", "\"10.2.0.1/24\", \"10.3.0.0/33\"")
        .replace("\"192.0.2.2\"", "\"224.0.0.1\"");
    assert_eq!(
        only_kind(&replace_net, ErrorKind::InvalidValue),
        [
            "gw.toml:10:18: peer[0].remote_address: 224.0.0.1 is not a unicast address; allowed: a unicast IPv4 or IPv6 address",
            "gw.toml:12:18: peer[0].remote_domain[0]: prefix \"10.2.0.1/24\" has host bits set (did you mean 10.2.0.0/24?); allowed: a network prefix such as 10.1.0.0/24 or 2001:db8::/48",
            "gw.toml:12:33: peer[0].remote_domain[1]: invalid prefix \"10.3.0.0/33\"; allowed: a network prefix such as 10.1.0.0/24 or 2001:db8::/48",
            "gw.toml:13:12: peer[0].local_id: invalid identity \"@\"; allowed: an IP address, a host name such as vpn.example.com (optionally @-prefixed), email:user@domain or dn:CN=...",
            "gw.toml:14:17: peer[0].encapsulation: unknown value \"Auto\"; allowed: auto, force",
            "gw.toml:15:50: peer[0].ike_proposals[1]: invalid IKE proposal \"aes256-prfsha256-x25519\": aes256 is not an AEAD cipher and needs an integrity algorithm (sha256); allowed: encr[-integ]-prf-dh, e.g. aes256gcm16-prfsha256-x25519 or aes256-sha256-prfsha256-ecp256",
            "gw.toml:15:77: peer[0].ike_proposals[2]: invalid IKE proposal \"aes256gcm16-prfmd5-x25519\": unknown PRF \"prfmd5\"; allowed: prfsha256, prfsha384, prfsha512",
            "gw.toml:16:33: peer[0].esp_proposals[1]: invalid ESP proposal \"aes256gcm16-sha256\": aes256gcm16 is an AEAD cipher and takes no integrity algorithm; allowed: encr[-integ][-dh][-esn], e.g. aes256gcm16, aes128-sha256, aes256gcm16-x25519-esn",
            "gw.toml:17:16: peer[0].ike_lifetime: invalid duration \"4 hours\": a number without a unit; allowed: a number with a unit ms, s, m, h or d, possibly combined (\"500ms\", \"30s\", \"1h30m\"), or an integer number of seconds",
            "gw.toml:18:24: peer[0].child_lifetime_bytes: invalid size \"lots\": expected a number; allowed: an integer number of bytes, or a number with a unit B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), e.g. \"100GB\"",
        ]
    );
    let errs = errors(&with_gateway("name = \"-x\"").replace("name = \"gw\"\n", ""));
    assert_eq!(errs[0].key, "gateway.name");
    let errs = errors(&format!(
        "{MINIMAL}[tunnel]\ndevice = \"rampart-tunnel-01\"\n"
    ));
    assert_eq!(
        errs[0].to_string(),
        "gw.toml:14:10: tunnel.device: invalid device name \"rampart-tunnel-01\"; allowed: 1 to 15 bytes from A-Z a-z 0-9 . _ -"
    );
    assert!(
        ok(&format!(
            "{MINIMAL}[tunnel]\ndevice = \"rampart-tunnel0\"\n"
        ))
        .tunnel
        .device
        .len()
            == 15
    );
}

#[test]
fn out_of_range_values() {
    let text = format!(
        "{}[tunnel]\nmtu = 575\n",
        with_peer("replay_window = 1023\nliveness_interval = \"2h\"\nchild_lifetime = \"9s\"\nike_lifetime = -5\nchild_lifetime_bytes = \"1KiB\"\nesp_proposals = []")
            .replace("0123456789abcdef", "0123456789abcde")
    ).replace("name = \"gw\"", "name = \"gw\"\nike_port = 0\nretransmit_tries = 21\nretransmit_timeout = \"50ms\"");
    assert_eq!(
        only_kind(&text, ErrorKind::OutOfRange),
        [
            "gw.toml:3:12: gateway.ike_port: 0 is out of range; allowed: 1 to 65535",
            "gw.toml:4:20: gateway.retransmit_tries: 21 is out of range; allowed: 0 to 20",
            "gw.toml:5:22: gateway.retransmit_timeout: 50ms is out of range; allowed: 100ms to 1m",
            "gw.toml:14:7: peer[0].psk: the pre-shared key is 15 bytes long; allowed: at least 16 bytes",
            "gw.toml:16:17: peer[0].replay_window: 1023 is out of range; allowed: 1024 to 65536",
            "gw.toml:17:21: peer[0].liveness_interval: 2h is out of range; allowed: 0 (off) or 1s to 1h",
            "gw.toml:18:18: peer[0].child_lifetime: 9s is out of range; allowed: 10s to 1d",
            "gw.toml:19:16: peer[0].ike_lifetime: negative duration -5; allowed: a number with a unit ms, s, m, h or d, possibly combined (\"500ms\", \"30s\", \"1h30m\"), or an integer number of seconds",
            "gw.toml:20:24: peer[0].child_lifetime_bytes: 1024 bytes is too small; allowed: at least 65536 bytes",
            "gw.toml:21:17: peer[0].esp_proposals: empty list; allowed: at least one proposal: encr[-integ][-dh][-esn], e.g. aes256gcm16, aes128-sha256, aes256gcm16-x25519-esn",
            "gw.toml:23:7: tunnel.mtu: 575 is out of range; allowed: 576 to 9000",
        ]
    );
    assert_eq!(
        errors(&with_peer("replay_window = 65537"))[0].kind,
        ErrorKind::OutOfRange
    );
    assert_eq!(
        errors(&MINIMAL.replace("[\"10.1.0.0/24\"]", "[]"))[0].key,
        "local.domain"
    );
    assert_eq!(
        ok(&format!("{MINIMAL}[tunnel]\nmtu = 9000\n")).tunnel.mtu,
        9000
    );
    assert_eq!(ok(MINIMAL).tunnel.crypto_threads, 0);
    assert_eq!(
        ok(&format!("{MINIMAL}[tunnel]\ncrypto_threads = 3\n"))
            .tunnel
            .crypto_threads,
        3
    );
    assert_eq!(
        errors(&format!("{MINIMAL}[tunnel]\ncrypto_threads = 65\n"))[0].kind,
        ErrorKind::OutOfRange
    );
}

#[test]
fn duplicates() {
    let second = "\n[[peer]]\nname = \"b\"\nlocal_address = \"192.0.2.1\"\nremote_address = \"192.0.2.2\"\npsk = \"0123456789abcdef\"\nremote_domain = [\"10.3.0.0/24\"]\n";
    assert_eq!(
        only_kind(&format!("{MINIMAL}{second}"), ErrorKind::Duplicate),
        [
            "gw.toml:15:8: peer[1].name: duplicate peer name \"b\" (also peer[0]); allowed: a name used by no other peer",
            "gw.toml:17:18: peer[1].remote_address: remote identity 192.0.2.2 is also the remote identity of peer[0]; allowed: a remote identity (remote_id, default remote_address) used by no other peer",
        ]
    );
    // Distinct remote identities on the same address are fine.
    let fixed = second.replace("name = \"b\"", "name = \"c\"\nremote_id = \"@c.example\"");
    assert_eq!(ok(&format!("{MINIMAL}{fixed}")).peers.len(), 2);
}

#[test]
fn conflicts() {
    let text = with_gateway("ike_port = 4500")
        .replace("\"10.2.0.0/24\"", "\"10.1.0.128/25\"")
        .replace("\"192.0.2.2\"", "\"2001:db8::2\"");
    let text = format!(
        "{text}psk_file = \"psk.txt\"\nesp_proposals = [\"aes256gcm16-esn\", \"aes128-sha256\"]\n"
    );
    assert_eq!(
        only_kind(&text, ErrorKind::Conflict),
        [
            "gw.toml:3:12: gateway.nat_t_port: the NAT-T port equals the IKE port (4500); allowed: a port other than ike_port, usually 4500 (2746 for compatibility)",
            "gw.toml:11:18: peer[0].remote_address: 2001:db8::2 and local_address 192.0.2.1 are of different address families; allowed: addresses of the same family (both IPv4 or both IPv6)",
            "gw.toml:13:18: peer[0].remote_domain[0]: 10.1.0.128/25 overlaps the local domain prefix 10.1.0.0/24; allowed: prefixes outside local.domain",
            "gw.toml:14:12: peer[0].psk_file: both psk and psk_file are set; allowed: exactly one of psk and psk_file",
            "gw.toml:15:37: peer[0].esp_proposals[1]: -esn is on some ESP proposals but not on this one (ESN is negotiated per peer); allowed: -esn on every ESP proposal or on none; or esn = true",
        ]
    );
    let second = "\n[[peer]]\nname = \"c\"\nlocal_address = \"192.0.2.1\"\nremote_address = \"192.0.2.3\"\npsk = \"0123456789abcdef\"\nremote_domain = [\"10.0.0.0/8\"]\n";
    assert_eq!(
        lines(&format!("{MINIMAL}{second}")),
        ["gw.toml:19:18: peer[1].remote_domain[0]: 10.0.0.0/8 overlaps the local domain prefix 10.1.0.0/24; allowed: prefixes outside local.domain"]
    );
    let second = second.replace("10.0.0.0/8", "10.2.0.0/16");
    assert_eq!(
        lines(&format!("{MINIMAL}{second}")),
        ["gw.toml:19:18: peer[1].remote_domain[0]: 10.2.0.0/16 overlaps 10.2.0.0/24 in the remote_domain of peer[0]; allowed: prefixes that no other peer's remote_domain covers, both peers in one [[entry_point_group]], one peer backup_of the other, or both in no group with a [mep] table whose implicit is not \"off\" (overlapping peers then form an implicit group)"]
    );
    assert_eq!(
        lines(&with_peer("esn = false\nesp_proposals = [\"aes256gcm16-esn\"]")),
        ["gw.toml:13:7: peer[0].esn: esn = false, but ESP proposals end in -esn; allowed: esn = true, or no -esn suffix"]
    );
    assert!(ok(&with_peer("esn = true")).peers[0].esn);
}

/// A fresh directory under the system temp dir for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rampart-config-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn psk_file_is_relative_to_the_config_and_trimmed() {
    let dir = temp_dir("psk");
    std::fs::write(dir.join("peer.psk"), "  0123456789abcdef-long \n").unwrap();
    std::fs::write(dir.join("short.psk"), "0123456789abcde\n\n").unwrap();
    let text = MINIMAL.replace("psk = \"0123456789abcdef\"", "psk_file = \"peer.psk\"");
    let path = dir.join("gw.toml");
    std::fs::write(&path, &text).unwrap();
    let c = load(&path).unwrap();
    assert_eq!(*c.peers[0].psk, b"0123456789abcdef-long");

    std::fs::write(&path, text.replace("peer.psk", "short.psk")).unwrap();
    let e = load(&path).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}:11:12: peer[0].psk_file: the pre-shared key is 15 bytes long; allowed: at least 16 bytes", path.display())
    );

    std::fs::write(&path, text.replace("peer.psk", "absent.psk")).unwrap();
    let e = load(&path).unwrap_err();
    assert_eq!(e.0[0].kind, ErrorKind::Io);
    assert!(
        e.0[0]
            .message
            .contains(&dir.join("absent.psk").display().to_string()),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn all_errors_come_back_in_file_order() {
    let text = with_peer("start_action = \"x\"\nencapsulation = \"y\"")
        .replace("name = \"gw\"", "name = \"gw\"\nike_port = 99999");
    let errs = errors(&text);
    assert_eq!(errs.len(), 3);
    let positions: Vec<_> = errs.iter().map(|e| e.position.unwrap()).collect();
    let mut sorted = positions.clone();
    sorted.sort();
    assert_eq!(positions, sorted);
    // Display joins them one per line.
    let joined = ConfigErrors(errs).to_string();
    assert_eq!(joined.lines().count(), 3);
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn on_arbitrary_text(text in "\\PC{0,200}") {
            let _ = parse(&text, "gw.toml");
        }

        /// Every line of the example, replaced by `key = <junk>`: an error or a config, never a
        /// panic, and every error has a position inside the file.
        #[test]
        fn on_mangled_values(line in 0usize..45, junk in "[\\[\\]{}\"'=a-z0-9 .,/-]{0,16}") {
            let mangled: Vec<String> = GW_A
                .lines()
                .enumerate()
                .map(|(i, l)| match (i == line, l.split_once(" = ")) {
                    (true, Some((k, _))) => format!("{k} = {junk}"),
                    _ => l.to_string(),
                })
                .collect();
            let text = mangled.join("\n");
            if let Err(errs) = parse(&text, "gw.toml") {
                prop_assert!(!errs.is_empty());
                for e in errs.iter() {
                    if let Some((l, _)) = e.position {
                        prop_assert!(l >= 1 && l <= text.lines().count() + 1, "{e}");
                    }
                }
            }
        }
    }
}

#[test]
fn fragmentation_and_cookie_ranges() {
    let text = with_gateway("fragment_size = 575\ncookie_threshold = -1\nhalf_open_per_source = 0");
    assert_eq!(
        only_kind(&text, ErrorKind::OutOfRange),
        [
            "gw.toml:3:17: gateway.fragment_size: 575 is out of range; allowed: 576 to 65535",
            "gw.toml:4:20: gateway.cookie_threshold: -1 is out of range; allowed: 0 to 1000000",
            "gw.toml:5:24: gateway.half_open_per_source: 0 is out of range; allowed: 1 to 1000000",
        ]
    );
    assert_eq!(errors(&with_gateway("fragmentation = 1")).len(), 1);
    assert_eq!(
        ok(&with_gateway("fragment_size = 65535"))
            .gateway
            .fragment_size,
        65535
    );
}
