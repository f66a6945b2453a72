//! The built `rampart` binary: --help, check-config on good and bad files, status against a
//! stand-in gateway that serves a fixed status document on a Unix socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;

use rampart_node::{DataPlaneCounters, GatewayStatus, IkeSaInfo, PeerStatus, TunnelStatus};

fn rampart(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .env_remove("RAMPART_LOG")
        .output()
        .expect("run rampart")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/site-to-site")
}

/// A fresh directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rampart-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn help_lists_the_commands() {
    let o = rampart(&["--help"]);
    assert!(o.status.success());
    let text = stdout(&o);
    for cmd in ["gateway", "check-config", "status"] {
        assert!(text.contains(cmd), "{text}");
    }
    let o = rampart(&["gateway", "run", "--help"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("--log-format"));
    let o = rampart(&["status", "--help"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("--json"));
}

#[test]
fn check_config_accepts_the_examples() {
    let a = examples().join("gw-a.toml");
    let b = examples().join("gw-b.toml");
    let o = rampart(&["check-config", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!(
            "{}: ok (1 peer)\n{}: ok (1 peer)\n",
            a.display(),
            b.display()
        )
    );
}

#[test]
fn check_config_accepts_the_cluster_examples() {
    let dir = examples().join("../cluster");
    let a = dir.join("cluster-a.toml");
    let b = dir.join("cluster-b.toml");
    let o = rampart(&["check-config", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!(
            "{}: ok (1 peer, cluster hq member 1 of 2)\n{}: ok (1 peer, cluster hq member 2 of 2)\n",
            a.display(),
            b.display()
        )
    );
}

#[test]
fn check_config_accepts_the_load_sharing_examples() {
    let dir = examples().join("../cluster-ls");
    let files: Vec<PathBuf> = (1..=3)
        .map(|i| dir.join(format!("member-{i}.toml")))
        .collect();
    let args: Vec<&str> = std::iter::once("check-config")
        .chain(files.iter().map(|f| f.to_str().unwrap()))
        .collect();
    let o = rampart(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let expected: String = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            format!(
                "{}: ok (1 peer, cluster dc member {} of 3, load sharing (routed))\n",
                f.display(),
                i + 1
            )
        })
        .collect();
    assert_eq!(stdout(&o), expected);
}

const BAD: &str = r#"[gateway]
name = "gw"
nat_t_port = 500

[local]
domain = ["10.1.0.0/24"]

[[peer]]
name = "b"
local_address = "192.0.2.1"
remote_address = "192.0.2.2"
psk = "short"
remote_domain = ["10.2.0.0/24"]
start_action = "sometimes"
esp_proposals = ["aes256gcm16", "aes128"]
colour = "blue"
"#;

#[test]
fn check_config_prints_every_error_and_exits_2() {
    let dir = temp_dir("bad");
    let bad = dir.join("gw.toml");
    std::fs::write(&bad, BAD).unwrap();
    let good = examples().join("gw-a.toml");
    let o = rampart(&[
        "check-config",
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stdout(&o), format!("{}: ok (1 peer)\n", good.display()));
    let f = bad.display();
    assert_eq!(
        stderr(&o),
        format!(
            "{f}:3:14: gateway.nat_t_port: the NAT-T port equals the IKE port (500); allowed: a port other than ike_port, usually 4500 (2746 for compatibility)
{f}:12:7: peer[0].psk: the pre-shared key is 5 bytes long; allowed: at least 16 bytes
{f}:14:16: peer[0].start_action: unknown value \"sometimes\"; allowed: none, on-traffic, always
{f}:15:33: peer[0].esp_proposals[1]: invalid ESP proposal \"aes128\": aes128 is not an AEAD cipher and needs an integrity algorithm (sha256); allowed: encr[-integ][-dh][-esn], e.g. aes256gcm16, aes128-sha256, aes256gcm16-x25519-esn
{f}:16:1: peer[0].colour: unknown key; allowed: name, local_address, remote_address, local_id, remote_id, psk, psk_file, remote_domain, ike_proposals, esp_proposals, esn, start_action, ike_lifetime, child_lifetime, child_lifetime_bytes, liveness_interval, mobike, encapsulation, replay_window, auth, certificate, private_key, ca_certificates, crl, rsa_signature, probe, probe_key, backup_of
"
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_config_on_a_missing_file() {
    let o = rampart(&["check-config", "/nonexistent/gw.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("/nonexistent/gw.toml: cannot read the configuration: "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn gateway_run_refuses_an_invalid_config_with_exit_2() {
    let dir = temp_dir("run-bad");
    let bad = dir.join("gw.toml");
    std::fs::write(&bad, BAD).unwrap();
    let o = rampart(&["gateway", "run", "--config", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o).lines().count(), 5, "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gateway_run_refuses_a_bad_log_filter() {
    let a = examples().join("gw-a.toml");
    let o = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["gateway", "run", "--config", a.to_str().unwrap()])
        .env("RAMPART_LOG", "rampart=loud")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("rampart: invalid RAMPART_LOG filter \"rampart=loud\""),
        "{}",
        stderr(&o)
    );
}

fn sample_status() -> GatewayStatus {
    GatewayStatus {
        name: "gw-a".into(),
        uptime_secs: 3723,
        peers: vec![
            PeerStatus {
                name: "site-b".into(),
                local: "192.0.2.1".into(),
                remote: "192.0.2.2".into(),
                state: "established".into(),
                ike_sa: Some(IkeSaInfo {
                    id: 1,
                    spi_i: "0123456789abcdef".into(),
                    spi_r: "fedcba9876543210".into(),
                    initiator: true,
                    algorithms: "aes256gcm16-prfsha256-x25519".into(),
                    local_id: "192.0.2.1".into(),
                    remote_id: "192.0.2.2".into(),
                    nat_local: false,
                    nat_remote: true,
                    mobike: false,
                    local_endpoint: "192.0.2.1:4500".into(),
                    remote_endpoint: "198.51.100.7:31000".into(),
                    established_secs: 300,
                    rekey_in_secs: Some(14_100),
                }),
                tunnels: vec![TunnelStatus {
                    id: 2,
                    spi_in: "c0ffee01".into(),
                    spi_out: "c0ffee02".into(),
                    algorithms: "aes256gcm16-esn".into(),
                    encapsulation: "esp-in-udp".into(),
                    local_ts: vec!["10.1.0.0/24".into()],
                    remote_ts: vec!["10.2.0.0/24".into()],
                    bytes_in: 1536,
                    packets_in: 12,
                    bytes_out: 5 << 20,
                    packets_out: 4000,
                    replay_drops: 1,
                    auth_failures: 0,
                    established_secs: 300,
                    rekey_in_secs: None,
                }],
            },
            PeerStatus {
                name: "site-c".into(),
                local: "192.0.2.1".into(),
                remote: "192.0.2.3".into(),
                state: "down".into(),
                ike_sa: None,
                tunnels: vec![],
            },
        ],
        counters: DataPlaneCounters {
            tun_packets_in: 4000,
            esp_packets_in: 12,
            dropped_replay: 1,
            ..DataPlaneCounters::default()
        },
        ike_defence: Default::default(),
        batching: rampart_node::BatchCounters {
            tun_reads: 10,
            tun_read_packets: 450,
            tun_writes: 4,
            tun_write_packets: 10,
            ..Default::default()
        },
        reloads: Default::default(),
        nat: Default::default(),
        icmp: Default::default(),
        cluster: None,
        mep: None,
        remote_access: None,
        sync: None,
        replicated_sas: None,
    }
}

/// A stand-in for the gateway's status socket: accepts one connection, checks the request
/// line, answers with `status` as JSON and closes. Returns the request it saw.
fn serve_once(path: &Path, status: &GatewayStatus) -> thread::JoinHandle<String> {
    let listener = UnixListener::bind(path).unwrap();
    let body = serde_json::to_vec(status).unwrap();
    thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let mut stream = reader.into_inner();
        stream.write_all(&body).unwrap();
        line
    })
}

#[test]
fn status_prints_a_table() {
    let dir = temp_dir("status-table");
    let socket = dir.join("gw-a.sock");
    let server = serve_once(&socket, &sample_status());
    let o = rampart(&["status", "--socket", socket.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(server.join().unwrap(), "status\n");
    assert_eq!(
        stdout(&o),
        "gateway gw-a  up 1h2m3s  peers 2
  packets  tun in 4000  tun out 0  esp in 12  esp out 0
  dropped  no policy 0  no SA 0  unknown SPI 0  auth 0  replay 1  malformed 0  policy mismatch 0  firewall 0
  IKE_SA_INIT  half-open 0  cookies sent 0  accepted 0  invalid 0  per-source drops 0
  batching  TUN reads 10 (45.0 packets each)  TUN writes 4 (2.5 each)  UDP sends 0 (- each)  UDP receives 0 (- each)  raw ESP skipped 0

peer site-b  established  192.0.2.1 -> 192.0.2.2
  IKE SA #1  initiator  aes256gcm16-prfsha256-x25519  spi_i 0123456789abcdef  spi_r fedcba9876543210
    ids 192.0.2.1 <-> 192.0.2.2  NAT remote side  established 5m ago  rekey in 3h55m
  tunnel #2  aes256gcm16-esn  esp-in-udp  spi in c0ffee01  out c0ffee02
    10.1.0.0/24 === 10.2.0.0/24
    in 1.5 KiB / 12 packets  out 5.0 MiB / 4000 packets  replay drops 1  auth failures 0
    established 5m ago  rekey in -

peer site-c  down  192.0.2.1 -> 192.0.2.3
  no IKE SA
  no tunnels
"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn status_json_round_trips() {
    let dir = temp_dir("status-json");
    let socket = dir.join("gw-a.sock");
    let status = sample_status();
    let server = serve_once(&socket, &status);
    let o = rampart(&["status", "--socket", socket.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    server.join().unwrap();
    let parsed: GatewayStatus = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(parsed, status);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn status_finds_the_socket_through_the_config() {
    let dir = temp_dir("status-config");
    // A relative status_socket starts at the config file's directory.
    let text = std::fs::read_to_string(examples().join("gw-a.toml"))
        .unwrap()
        .replace("/run/rampart/gw-a.sock", "gw-a.sock");
    std::fs::write(dir.join("gw-a.toml"), text).unwrap();
    let server = serve_once(&dir.join("gw-a.sock"), &sample_status());
    let config = dir.join("gw-a.toml");
    let o = rampart(&["status", "--config", config.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    server.join().unwrap();
    assert!(stdout(&o).starts_with("gateway gw-a  up 1h2m3s"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn status_without_a_gateway_says_so() {
    let dir = temp_dir("status-none");
    let socket = dir.join("gone.sock");
    let o = rampart(&["status", "--socket", socket.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "rampart: is the gateway running? no socket at {}\n",
            socket.display()
        )
    );
    // A socket file with nobody listening (a gateway that died).
    drop(UnixListener::bind(&socket).unwrap());
    let o = rampart(&["status", "--socket", socket.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "rampart: is the gateway running? nothing is listening on {}\n",
            socket.display()
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn status_rejects_a_garbled_answer() {
    let dir = temp_dir("status-garbled");
    let socket = dir.join("gw.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let server = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream);
        reader.read_line(&mut String::new()).unwrap();
        reader.into_inner().write_all(b"{\"name\": 5}").unwrap();
    });
    let o = rampart(&["status", "--socket", socket.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    server.join().unwrap();
    assert!(
        stderr(&o).starts_with(&format!(
            "rampart: invalid status document from {}: ",
            socket.display()
        )),
        "{}",
        stderr(&o)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
