//! RFC 9329 streams through the whole event loop (root only, a private namespace each):
//! frames over a real TCP connection into the stand-in node and back, TUN traffic onto a
//! stream and stream frames onto the TUN device; Visitor Mode with a real certificate, ALPN
//! and SNI routing, port sharing with a real local TLS server; the exact bind-failure line;
//! write-queue drops; a client's attached stream and its close event; `transports` in the
//! status document.

mod fake_node;
mod netns;

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_node::{eventually, ipv4_udp, recv, FakeNode};
use netns::Netns;
use rampart_config::{GatewayConfig, RemoteAccessConfig, TcpTransport, VisitorMode};
use rampart_io::routes::Routes;
use rampart_io::runtime::{self, Io};
use rampart_io::status_server::{self, StatusServer};
use rampart_io::stream::{StreamEvent, Transport, TransportsStatus};
use rampart_io::tun::Tun;
use rampart_node::Output;
use rampart_wire::tcp_encap::{encode_frame, Decoder, Frame, Role, PREFIX};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};

const DOMAIN: &str = "10.77.0.0/24";
/// An address on `lo` inside the namespace: the gateway's listeners and the test's clients.
const HOST: Ipv4Addr = Ipv4Addr::new(10, 76, 0, 1);
const NAT_T: u16 = 4500;

/// A temporary directory for one test's status socket and certificate files.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let dir =
            std::env::temp_dir().join(format!("rampart-io-streams-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn status(&self) -> PathBuf {
        self.0.join("gw.sock")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A gateway configuration with `[remote_access]` set to `ra` (the stream code reads only
/// `remote_access` and `gateway.nat_t_port`).
fn config(status: &Path, ra: RemoteAccessConfig) -> GatewayConfig {
    let text = format!(
        r#"
[gateway]
name = "streams"
status_socket = "{}"
nat_t_port = {NAT_T}

[tunnel]
device = "rst0"
mtu = 1400

[local]
domain = ["10.79.0.0/24"]

[[peer]]
name = "p"
local_address = "{HOST}"
remote_address = "192.0.2.2"
local_id = "{HOST}"
remote_id = "192.0.2.2"
psk = "correct horse battery staple, but longer"
remote_domain = ["10.78.0.0/24"]
"#,
        status.display()
    );
    let mut c = rampart_config::parse(&text, "streams.toml").unwrap();
    c.remote_access = Some(ra);
    c
}

fn ra(tcp: Option<Vec<SocketAddr>>, visitor: Option<VisitorMode>) -> RemoteAccessConfig {
    RemoteAccessConfig {
        peer: "p".into(),
        tcp: tcp.map(|listen| TcpTransport { listen }),
        visitor,
        mss_clamp: true,
        stream_setup_timeout: std::time::Duration::from_secs(30),
        stream_idle_timeout: std::time::Duration::from_secs(300),
    }
}

/// The loop's devices: a TUN device, routes, the status socket; no UDP socket (everything
/// the node sends here goes to streams).
fn io(status: &Path) -> Io {
    let tun = Tun::open("rst0", 1400, false).unwrap();
    let routes = Routes::open(tun.name(), tun.index()).unwrap();
    let (status, status_requests) = StatusServer::bind(status).unwrap();
    Io {
        tun,
        udp: Vec::new(),
        raw: Vec::new(),
        routes,
        status,
        status_requests,
        config_path: None,
        hangup: None,
        reloads: Default::default(),
        cluster: None,
        send_failures: Default::default(),
        client_outputs: None,
        streams: Default::default(),
        stream_events: None,
        client_commands: None,
        no_fragmentation: false,
    }
}

/// The stand-in node: echoes datagrams, sends TUN packets to `sink`, routes `DOMAIN` into
/// the TUN device at start.
fn node(sink: SocketAddr) -> FakeNode {
    FakeNode {
        outputs: VecDeque::from([Output::RouteAdd {
            prefix: DOMAIN.parse().unwrap(),
        }]),
        udp_local: SocketAddr::new(HOST.into(), NAT_T),
        sink,
        closed: "192.0.2.99:9".parse().unwrap(),
        unreachable: Vec::new(),
        path_mtu: Vec::new(),
        tun_packets: 0,
        timer: None,
        timeouts: 0,
        probe: Vec::new(),
        udp_from: Vec::new(),
    }
}

/// An IKE message of 40 bytes tagged with `tag` (the framing looks only at its length).
fn ike(tag: u8) -> Vec<u8> {
    let mut m = vec![tag; 40];
    m[0] = 0x11;
    m
}

fn frame(f: Frame<'_>) -> Vec<u8> {
    let mut out = vec![0u8; 70000];
    let n = encode_frame(f, &mut out).unwrap();
    out.truncate(n);
    out
}

/// A decoded frame with owned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Ike(Vec<u8>),
    Esp(Vec<u8>),
}

/// Reads the next frame of a responder's stream (no prefix) within 5 s.
async fn next_frame(stream: &mut (impl AsyncRead + Unpin), dec: &mut Decoder) -> Got {
    let read = async {
        loop {
            match dec.next_frame().unwrap() {
                Some(Frame::Ike(m)) => return Got::Ike(m.to_vec()),
                Some(Frame::Esp(p)) => return Got::Esp(p.to_vec()),
                Some(Frame::Keepalive) => continue,
                None => {}
            }
            let n = stream.read(dec.spare()).await.unwrap();
            assert!(n > 0, "stream closed");
            dec.commit(n);
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("no frame within 5 s")
}

/// `transports` of the status document.
async fn transports(status: &Path) -> TransportsStatus {
    let path = status.to_path_buf();
    let doc = tokio::task::spawn_blocking(move || status_server::query(&path, "status"))
        .await
        .unwrap()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
    serde_json::from_value(v["transports"].clone()).unwrap()
}

/// Waits until `check` holds for the transports counters.
async fn counters_until(
    status: &Path,
    what: &str,
    check: impl Fn(&TransportsStatus) -> bool,
) -> TransportsStatus {
    for _ in 0..250 {
        let t = transports(status).await;
        if check(&t) {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "timed out waiting for {what}: {:?}",
        transports(status).await
    );
}

#[test]
fn tcp_stream_carries_ike_and_esp_both_ways() {
    if !netns::can_run("TCP stream") {
        return;
    }
    let ns = Netns::new("tcpstream");
    ns.ip(&format!("addr add {HOST}/32 dev lo"));
    let dir = Dir::new("tcp");
    let listen = SocketAddr::new(HOST.into(), 14500);
    ns.run(|| {
        netns::runtime().block_on(async {
            let mut io = io(&dir.status());
            let cfg = config(&dir.status(), ra(Some(vec![listen]), None));
            let opened = io.open_remote_access(&cfg).unwrap();
            assert_eq!(opened.bound, vec![(Transport::Tcp, listen)]);
            assert!(opened.failures.is_empty());
            // The client's address is known before it connects: the node sends TUN traffic there.
            let socket = TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::new(HOST.into(), 0)).unwrap();
            let client_addr = socket.local_addr().unwrap();
            let mut node = node(client_addr);
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let status = dir.status();

            let client = async {
                eventually("route", || {
                    ns.ip(&format!("route show {DOMAIN}")).contains("dev rst0")
                })
                .await;
                let mut tcp = socket.connect(listen).await.unwrap();
                // The prefix and the first frame split across writes.
                let mut bytes = PREFIX.to_vec();
                bytes.extend(frame(Frame::Ike(&ike(1))));
                let esp = b"\x00\x00\x10\x01sequence and payload".to_vec();
                bytes.extend(frame(Frame::Esp(&esp)));
                bytes.extend([0, 3, 0xff]); // a keepalive: discarded
                for part in bytes.chunks(5) {
                    tcp.write_all(part).await.unwrap();
                    tcp.flush().await.unwrap();
                }
                // Echoed by the node: the same frames come back, no prefix.
                let mut dec = Decoder::new(Role::Initiator, 70000);
                assert_eq!(next_frame(&mut tcp, &mut dec).await, Got::Ike(ike(1)));
                assert_eq!(next_frame(&mut tcp, &mut dec).await, Got::Esp(esp.clone()));

                // A frame the node writes to the TUN device reaches a local socket.
                let app = UdpSocket::bind((HOST, 0)).await.unwrap();
                let mut to_tun = b"T".to_vec();
                to_tun.extend(ipv4_udp(app.local_addr().unwrap(), b"from the stream"));
                tcp.write_all(&frame(Frame::Esp(&to_tun))).await.unwrap();
                let (got, from) = recv(&app).await;
                assert_eq!(got, b"from the stream");
                assert_eq!(from, "10.77.0.5:7000".parse().unwrap());

                // A TUN packet the node sends to the client's address leaves as a frame.
                app.send_to(b"inner payload", "10.77.0.5:9999")
                    .await
                    .unwrap();
                loop {
                    // The kernel may also send its own IPv6 packets into the device.
                    let Got::Esp(p) = next_frame(&mut tcp, &mut dec).await else {
                        panic!("expected the TUN packet as ESP");
                    };
                    assert_eq!(&p[..4], b"HDR!");
                    if p[4] >> 4 == 4 {
                        assert!(p.ends_with(b"inner payload"));
                        break;
                    }
                }

                let t = transports(&status).await;
                assert_eq!(t.tcp.accepted, 1);
                assert_eq!(t.tcp.open, 1);
                assert_eq!(t.tcp.frames_in, 3);
                assert!(t.tcp.frames_out >= 3, "{t:?}");
                assert_eq!(t.tcp.queue_drops, 0);
                assert_eq!(t.tls, Default::default());

                // A second connection that does not start with IKETCP is closed.
                let mut bad = TcpStream::connect(listen).await.unwrap();
                bad.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
                let mut buf = [0u8; 16];
                let n = tokio::time::timeout(Duration::from_secs(5), bad.read(&mut buf))
                    .await
                    .unwrap()
                    .unwrap_or(0);
                assert_eq!(n, 0, "a stream with a bad prefix is closed");

                drop(tcp);
                let t = counters_until(&status, "both streams closed", |t| t.tcp.closed == 2).await;
                assert_eq!((t.tcp.accepted, t.tcp.open), (2, 0));
                let _ = stop.send(());
            };
            let shutdown = async {
                let _ = stopped.await;
            };
            let (result, ()) = tokio::join!(runtime::run(&mut node, &mut io, shutdown), client);
            result.unwrap();
            // Every frame reached the node as a NAT-T datagram from the client's TCP address.
            let expected = (SocketAddr::new(HOST.into(), NAT_T), client_addr);
            assert_eq!(node.udp_from.len(), 3);
            assert!(
                node.udp_from.iter().all(|&f| f == expected),
                "{:?}",
                node.udp_from
            );
        })
    });
}

/// A CA and a server certificate it issued for `names`, written as PEM files in `dir`
/// (`<tag>.crt`, `<tag>.key`); returns the paths and the CA certificate.
fn certificate(
    dir: &Path,
    tag: &str,
    names: &[&str],
) -> (PathBuf, PathBuf, CertificateDer<'static>) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{tag} test CA"));
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = rcgen::CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let (crt, key_path) = (
        dir.join(format!("{tag}.crt")),
        dir.join(format!("{tag}.key")),
    );
    std::fs::write(&crt, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (crt, key_path, ca.der().clone())
}

fn tls_client(ca: &CertificateDer<'static>, alpn: &[&str]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A real HTTPS server (rustls): answers every request with one page naming itself.
async fn https_backend(listener: TcpListener, crt: PathBuf, key: PathBuf) {
    let chain = vec![CertificateDer::from_pem_file(&crt).unwrap()];
    let key = PrivateKeyDer::from_pem_file(&key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    loop {
        let (tcp, _) = listener.accept().await.unwrap();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let n = tls.read(&mut buf).await.unwrap();
                if n == 0 {
                    return;
                }
                request.extend_from_slice(&buf[..n]);
            }
            let body = "the backend's page";
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            tls.write_all(answer.as_bytes()).await.unwrap();
            tls.shutdown().await.unwrap();
        });
    }
}

#[test]
fn visitor_mode_routes_by_alpn_and_name_and_shares_the_port() {
    if !netns::can_run("Visitor Mode") {
        return;
    }
    let ns = Netns::new("visitor");
    ns.ip(&format!("addr add {HOST}/32 dev lo"));
    let dir = Dir::new("visitor");
    let listen = SocketAddr::new(HOST.into(), 443);
    let backend_addr = SocketAddr::new(HOST.into(), 8443);
    let (gw_crt, gw_key, gw_ca) = certificate(
        &dir.0,
        "gateway",
        &["vpn.example.test", "other.example.test"],
    );
    let (web_crt, web_key, web_ca) = certificate(&dir.0, "web", &["www.example.test"]);
    ns.run(|| {
        netns::runtime().block_on(async {
            let backend = TcpListener::bind(backend_addr).await.unwrap();
            tokio::spawn(https_backend(backend, web_crt.clone(), web_key.clone()));
            let mut io = io(&dir.status());
            let visitor = VisitorMode {
                listen: vec![listen],
                certificate: gw_crt.clone(),
                key: gw_key.clone(),
                https_backend: Some(backend_addr),
                server_names: vec!["VPN.example.test".into()],
                alpn: "rampart-ike".into(),
            };
            let cfg = config(&dir.status(), ra(None, Some(visitor)));
            let opened = io.open_remote_access(&cfg).unwrap();
            assert_eq!(opened.bound, vec![(Transport::Tls, listen)]);
            let mut node = node("192.0.2.98:9".parse().unwrap());
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let status = dir.status();

            let client = async {
                // 1. The ALPN offered (with another one), a name that is not in server_names.
                let tcp = TcpStream::connect(listen).await.unwrap();
                let name = ServerName::try_from("other.example.test").unwrap();
                let mut tls = tls_client(&gw_ca, &["h2", "rampart-ike"])
                    .connect(name, tcp)
                    .await
                    .unwrap();
                assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"rampart-ike"[..]));
                let mut bytes = PREFIX.to_vec();
                bytes.extend(frame(Frame::Ike(&ike(7))));
                tls.write_all(&bytes).await.unwrap();
                tls.flush().await.unwrap();
                let mut dec = Decoder::new(Role::Initiator, 70000);
                assert_eq!(next_frame(&mut tls, &mut dec).await, Got::Ike(ike(7)));

                // 2. No ALPN, the server name in server_names (case differs): Visitor Mode too.
                let tcp = TcpStream::connect(listen).await.unwrap();
                let name = ServerName::try_from("vpn.example.test").unwrap();
                let mut tls2 = tls_client(&gw_ca, &[]).connect(name, tcp).await.unwrap();
                assert_eq!(tls2.get_ref().1.alpn_protocol(), None);
                let esp = b"\x00\x00\x20\x02an ESP packet".to_vec();
                let mut bytes = PREFIX.to_vec();
                bytes.extend(frame(Frame::Esp(&esp)));
                tls2.write_all(&bytes).await.unwrap();
                tls2.flush().await.unwrap();
                let mut dec2 = Decoder::new(Role::Initiator, 70000);
                assert_eq!(next_frame(&mut tls2, &mut dec2).await, Got::Esp(esp));

                // 3. A browser: other ALPN, other name -> the HTTPS backend, whose own
                // certificate the client verifies (the hello reached it untouched).
                let tcp = TcpStream::connect(listen).await.unwrap();
                let name = ServerName::try_from("www.example.test").unwrap();
                let mut web = tls_client(&web_ca, &["h2", "http/1.1"])
                    .connect(name, tcp)
                    .await
                    .unwrap();
                web.write_all(b"GET / HTTP/1.1\r\nhost: www.example.test\r\n\r\n")
                    .await
                    .unwrap();
                web.flush().await.unwrap();
                let mut page = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(5), web.read_to_end(&mut page))
                    .await
                    .unwrap();
                let page = String::from_utf8_lossy(&page);
                assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
                assert!(page.ends_with("the backend's page"), "{page}");

                let t = transports(&status).await;
                assert_eq!(t.tls.accepted, 3);
                assert_eq!(t.tls.open, 2);
                assert_eq!(t.tls.forwarded_to_backend, 1);
                assert_eq!(t.tls.frames_in, 2);
                assert_eq!(t.tls.frames_out, 2);
                assert_eq!(t.tcp, Default::default());

                // 4. Not TLS at all on the Visitor Mode port: closed.
                let mut plain = TcpStream::connect(listen).await.unwrap();
                plain.write_all(b"IKETCP\x00\x20").await.unwrap();
                let mut buf = [0u8; 8];
                let n = tokio::time::timeout(Duration::from_secs(5), plain.read(&mut buf))
                    .await
                    .unwrap()
                    .unwrap_or(0);
                assert_eq!(n, 0);

                drop((tls, tls2));
                let t = counters_until(&status, "Visitor Mode streams closed", |t| {
                    t.tls.closed == 2
                })
                .await;
                assert_eq!((t.tls.open, t.tls.accepted), (0, 4));
                let _ = stop.send(());
            };
            let shutdown = async {
                let _ = stopped.await;
            };
            let (result, ()) = tokio::join!(runtime::run(&mut node, &mut io, shutdown), client);
            result.unwrap();
        })
    });
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn taken_ports_are_logged_exactly_and_the_rest_keeps_running() {
    if !netns::can_run("bind failure") {
        return;
    }
    let ns = Netns::new("bindfail");
    ns.ip(&format!("addr add {HOST}/32 dev lo"));
    let dir = Dir::new("bindfail");
    let (crt, key, ca) = certificate(&dir.0, "gateway", &["vpn.example.test"]);
    ns.run(|| {
        netns::runtime().block_on(async {
            // Someone else has 443 and 4500 on HOST already.
            let _web = std::net::TcpListener::bind((HOST, 443)).unwrap();
            let _other = std::net::TcpListener::bind((HOST, 4500)).unwrap();
            let mut io = io(&dir.status());
            let visitor = VisitorMode {
                listen: vec![SocketAddr::new(HOST.into(), 443), SocketAddr::new(HOST.into(), 10443)],
                certificate: crt.clone(),
                key: key.clone(),
                https_backend: None,
                server_names: vec![],
                alpn: "rampart-ike".into(),
            };
            // An address that is on no interface of this host.
            let missing = SocketAddr::new("192.0.2.77".parse().unwrap(), 443);
            let mut cfg = config(&dir.status(), ra(Some(vec![SocketAddr::new(HOST.into(), 4500), SocketAddr::new(HOST.into(), 14500)]), Some(visitor)));
            if let Some(v) = cfg.remote_access.as_mut().and_then(|r| r.visitor.as_mut()) {
                v.listen.push(missing);
            }
            let log = Captured::default();
            let subscriber = tracing_subscriber::fmt()
                .with_writer({
                    let log = log.clone();
                    move || log.clone()
                })
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .finish();
            let opened = tracing::subscriber::with_default(subscriber, || io.open_remote_access(&cfg)).unwrap();
            let expected = [
                "TCP encapsulation server failed to bind to 10.76.0.1:4500 (either the port is already taken or the address does not exist)",
                "Visitor Mode server failed to bind to 10.76.0.1:443 (either the port is already taken or the address does not exist)",
                "Visitor Mode server failed to bind to 192.0.2.77:443 (either the port is already taken or the address does not exist)",
            ];
            assert_eq!(opened.failures, expected);
            assert_eq!(
                opened.bound,
                vec![
                    (Transport::Tcp, SocketAddr::new(HOST.into(), 14500)),
                    (Transport::Tls, SocketAddr::new(HOST.into(), 10443)),
                ]
            );
            let log = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
            for line in expected {
                assert!(
                    log.lines().any(|l| l.contains(" ERROR ") && l.ends_with(line)),
                    "missing ERROR line {line:?} in:\n{log}"
                );
            }

            // The addresses that were free serve: a Visitor Mode client gets its frame echoed.
            let mut node = node("192.0.2.98:9".parse().unwrap());
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let status = dir.status();
            let client = async {
                let t = transports(&status).await;
                assert_eq!((t.tcp.bind_failures, t.tls.bind_failures), (1, 2));
                let tcp = TcpStream::connect((HOST, 10443)).await.unwrap();
                let name = ServerName::try_from("vpn.example.test").unwrap();
                let mut tls = tls_client(&ca, &["rampart-ike"]).connect(name, tcp).await.unwrap();
                let mut bytes = PREFIX.to_vec();
                bytes.extend(frame(Frame::Ike(&ike(3))));
                tls.write_all(&bytes).await.unwrap();
                tls.flush().await.unwrap();
                let mut dec = Decoder::new(Role::Initiator, 70000);
                assert_eq!(next_frame(&mut tls, &mut dec).await, Got::Ike(ike(3)));
                // Without https_backend, a hello that is not Visitor Mode is closed.
                let tcp = TcpStream::connect((HOST, 10443)).await.unwrap();
                let name = ServerName::try_from("vpn.example.test").unwrap();
                let refused = tls_client(&ca, &["http/1.1"]).connect(name, tcp).await;
                assert!(refused.is_err());
                let _ = stop.send(());
            };
            let shutdown = async {
                let _ = stopped.await;
            };
            let (result, ()) = tokio::join!(runtime::run(&mut node, &mut io, shutdown), client);
            result.unwrap();
        })
    });
}

#[test]
fn a_stream_that_does_not_read_loses_frames_and_counts_them() {
    if !netns::can_run("write queue") {
        return;
    }
    let ns = Netns::new("queue");
    ns.ip(&format!("addr add {HOST}/32 dev lo"));
    let dir = Dir::new("queue");
    let listen = SocketAddr::new(HOST.into(), 14500);
    ns.run(|| {
        netns::runtime().block_on(async {
            let mut io = io(&dir.status());
            io.open_remote_access(&config(&dir.status(), ra(Some(vec![listen]), None)))
                .unwrap();
            let mut node = node("192.0.2.98:9".parse().unwrap());
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let status = dir.status();
            let client = async {
                let socket = TcpSocket::new_v4().unwrap();
                socket.set_recv_buffer_size(4096).unwrap();
                let mut tcp = socket.connect(listen).await.unwrap();
                // 60 MB of ESP frames, each echoed by the node; the client never reads.
                let mut esp = vec![0x5au8; 30_000];
                esp[..4].copy_from_slice(&[0, 0, 0x30, 1]);
                let one = frame(Frame::Esp(&esp));
                tcp.write_all(PREFIX).await.unwrap();
                let sent = 2000u64;
                for _ in 0..sent {
                    tcp.write_all(&one).await.unwrap();
                }
                let t =
                    counters_until(&status, "every frame in", |t| t.tcp.frames_in == sent).await;
                assert!(t.tcp.queue_drops > 0, "{t:?}");
                assert_eq!(t.tcp.frames_out + t.tcp.queue_drops, sent, "{t:?}");
                // The loop was never blocked: the status socket answered throughout, and the
                // stream is still open.
                assert_eq!(t.tcp.open, 1);
                let _ = stop.send(());
            };
            let shutdown = async {
                let _ = stopped.await;
            };
            let (result, ()) = tokio::join!(runtime::run(&mut node, &mut io, shutdown), client);
            result.unwrap();
        })
    });
}

#[test]
fn an_attached_client_stream_carries_frames_and_reports_its_end() {
    if !netns::can_run("client stream") {
        return;
    }
    let ns = Netns::new("attach");
    ns.ip(&format!("addr add {HOST}/32 dev lo"));
    let dir = Dir::new("attach");
    ns.run(|| {
        netns::runtime().block_on(async {
            // The "gateway": a TCP listener that reads the prefix the connector wrote.
            let gateway = TcpListener::bind((HOST, 0)).await.unwrap();
            let gateway_addr = gateway.local_addr().unwrap();
            let mut connector = TcpStream::connect(gateway_addr).await.unwrap();
            connector.write_all(PREFIX).await.unwrap();
            let (mut far, _) = gateway.accept().await.unwrap();

            let mut io = io(&dir.status());
            let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
            io.stream_events = Some(events_tx);
            // The client engine sends to (gateway, NAT-T port) from its local address.
            let local = SocketAddr::new(HOST.into(), 40000);
            let remote = SocketAddr::new(HOST.into(), NAT_T);
            io.attach_stream(local, remote, Box::new(connector));
            let mut node = node("192.0.2.98:9".parse().unwrap());
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let status = dir.status();
            let client = async {
                let mut dec = Decoder::new(Role::Initiator, 70000);
                let mut first = [0u8; 6];
                far.read_exact(&mut first).await.unwrap();
                assert_eq!(&first, PREFIX);
                far.write_all(&frame(Frame::Ike(&ike(9)))).await.unwrap();
                // Echoed by the node onto the same stream, without a prefix.
                assert_eq!(next_frame(&mut far, &mut dec).await, Got::Ike(ike(9)));
                let t = transports(&status).await;
                assert_eq!(
                    (t.client.open, t.client.frames_in, t.client.frames_out),
                    (1, 1, 1)
                );
                drop(far);
                let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
                    .await
                    .unwrap()
                    .unwrap();
                let StreamEvent::Closed {
                    remote: closed,
                    reason,
                } = event;
                assert_eq!(closed, remote);
                assert_eq!(reason, "closed by the peer");
                let t = transports(&status).await;
                assert_eq!((t.client.open, t.client.closed), (0, 1));
                let _ = stop.send(());
            };
            let shutdown = async {
                let _ = stopped.await;
            };
            let (result, ()) = tokio::join!(runtime::run(&mut node, &mut io, shutdown), client);
            result.unwrap();
            assert_eq!(node.udp_from, vec![(local, remote)]);
        })
    });
}
