//! The connector against real loopback servers: a small HTTP CONNECT proxy written here (open,
//! Basic, Digest SHA-256 or MD5, refusing), a plain TCP gateway and a TLS gateway (rustls, ALPN
//! `rampart-ike`), each checking that the stream starts with `IKETCP`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rampart_connect::auth::{parse_challenges, DigestChallenge};
use rampart_connect::http::parse_response_head;
use rampart_connect::{connect, ConnectError, ConnectPlan, Credentials, Proxy, Roots, TlsSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A gateway stand-in: reads the prefix, answers `OK`.
async fn tcp_gateway() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut p = [0u8; 6];
                if s.read_exact(&mut p).await.is_ok() && &p == b"IKETCP" {
                    let _ = s.write_all(b"OK").await;
                }
            });
        }
    });
    addr
}

struct Tls {
    addr: SocketAddr,
    ca_pem: String,
}

async fn tls_gateway() -> Tls {
    let ck = rcgen::generate_simple_self_signed(vec!["gw.test".to_owned()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    cfg.alpn_protocols = vec![b"rampart-ike".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(s).await else {
                    return;
                };
                assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"rampart-ike"[..]));
                assert_eq!(s.get_ref().1.server_name(), Some("gw.test"));
                let mut p = [0u8; 6];
                if s.read_exact(&mut p).await.is_ok() && &p == b"IKETCP" {
                    let _ = s.write_all(b"OK").await;
                    let _ = s.flush().await;
                }
            });
        }
    });
    Tls {
        addr,
        ca_pem: ck.cert.pem(),
    }
}

#[derive(Clone)]
enum ProxyMode {
    Open,
    Basic,
    Digest(&'static str),
    Forbidden,
}

const USER: &str = "alice";
const PASSWORD: &str = "s3cret: with spaces";

/// A CONNECT proxy: checks the request, the credentials (per `mode`), then splices.
async fn proxy(mode: ProxyMode) -> SocketAddr {
    proxy_to(mode, None).await
}

/// The same, connecting to `upstream` whatever the request names (a network where only the
/// proxy reaches the gateway).
async fn proxy_to(mode: ProxyMode, upstream: Option<SocketAddr>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let mode = mode.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let text = String::from_utf8(head).unwrap();
                let mut lines = text.split("\r\n");
                let req = lines.next().unwrap().to_owned();
                let mut parts = req.split(' ');
                assert_eq!(parts.next(), Some("CONNECT"));
                let target = parts.next().unwrap().to_owned();
                assert_eq!(parts.next(), Some("HTTP/1.1"));
                let auth = lines
                    .filter_map(|l| l.split_once(": "))
                    .find(|(n, _)| n.eq_ignore_ascii_case("proxy-authorization"))
                    .map(|(_, v)| v.to_owned());
                let ok = match (&mode, &auth) {
                    (ProxyMode::Open, _) => true,
                    (ProxyMode::Forbidden, _) => {
                        let _ = s
                            .write_all(
                                b"HTTP/1.1 403 Forbidden by policy\r\nContent-Length: 0\r\n\r\n",
                            )
                            .await;
                        return;
                    }
                    (ProxyMode::Basic, Some(a)) => {
                        *a == rampart_connect::auth::basic_authorization(USER, PASSWORD)
                    }
                    (ProxyMode::Digest(alg), Some(a)) => digest_ok(alg, a, &target),
                    (_, None) => false,
                };
                if !ok {
                    let challenge = match mode {
                        ProxyMode::Digest(alg) => format!(
                            "Proxy-Authenticate: Basic realm=\"test\"\r\nProxy-Authenticate: Digest realm=\"test\", nonce=\"abc123\", qop=\"auth\", algorithm={alg}, opaque=\"op\"\r\n"
                        ),
                        _ => "Proxy-Authenticate: Basic realm=\"test\"\r\n".to_owned(),
                    };
                    let _ = s
                        .write_all(
                            format!("HTTP/1.1 407 Proxy Authentication Required\r\n{challenge}Content-Length: 0\r\n\r\n")
                                .as_bytes(),
                        )
                        .await;
                    return;
                }
                let dest = upstream.map_or(target.clone(), |u| u.to_string());
                let Ok(mut up) = TcpStream::connect(&dest).await else {
                    let _ = s.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
            });
        }
    });
    addr
}

/// Checks a Digest answer the way a proxy does: parse its parameters, recompute.
fn digest_ok(alg: &str, header: &str, target: &str) -> bool {
    let cs = parse_challenges(header);
    let Some(c) = cs.first().filter(|c| c.scheme == "Digest") else {
        return false;
    };
    let ours = DigestChallenge::from_challenge(
        &parse_challenges(&format!(
            "Digest realm=\"test\", nonce=\"abc123\", qop=auth, algorithm={alg}"
        ))[0],
    )
    .unwrap();
    assert_eq!(c.param("uri"), Some(target));
    assert_eq!(c.param("opaque"), Some("op"));
    assert_eq!(c.param("qop"), Some("auth"));
    assert_eq!(c.param("algorithm"), Some(alg));
    let want = ours.response(
        c.param("username").unwrap_or(""),
        PASSWORD,
        "CONNECT",
        target,
        c.param("cnonce").unwrap(),
        u32::from_str_radix(c.param("nc").unwrap(), 16).unwrap(),
    );
    c.param("username") == Some(USER) && c.param("response") == Some(want.as_str())
}

fn plan(gw: SocketAddr, proxy: Option<Proxy>, tls: Option<TlsSettings>) -> ConnectPlan {
    ConnectPlan {
        host: gw.ip().to_string(),
        port: gw.port(),
        proxy,
        tls,
        timeout: Duration::from_secs(5),
    }
}

fn via(addr: SocketAddr, creds: Option<(&str, &str)>) -> Proxy {
    Proxy {
        host: addr.ip().to_string(),
        port: addr.port(),
        credentials: creds.map(|(u, p)| Credentials {
            user: u.into(),
            password: p.into(),
        }),
    }
}

async fn expect_ok(plan: &ConnectPlan) -> String {
    let mut c = connect(plan).await.unwrap_or_else(|e| panic!("{e}"));
    let mut ok = [0u8; 2];
    c.stream.read_exact(&mut ok).await.unwrap();
    assert_eq!(&ok, b"OK");
    c.path.to_string()
}

#[tokio::test]
async fn direct_tcp() {
    let gw = tcp_gateway().await;
    assert_eq!(
        expect_ok(&plan(gw, None, None)).await,
        format!("tcp direct to {gw}")
    );
}

#[tokio::test]
async fn proxy_open_basic_and_digest() {
    let gw = tcp_gateway().await;
    let p = proxy(ProxyMode::Open).await;
    assert_eq!(
        expect_ok(&plan(gw, Some(via(p, None)), None)).await,
        format!("tcp via proxy {p} to {gw}")
    );
    let p = proxy(ProxyMode::Basic).await;
    assert_eq!(
        expect_ok(&plan(gw, Some(via(p, Some((USER, PASSWORD)))), None)).await,
        format!("tcp via proxy {p} (basic) to {gw}")
    );
    for alg in ["SHA-256", "MD5"] {
        let p = proxy(ProxyMode::Digest(alg)).await;
        assert_eq!(
            expect_ok(&plan(gw, Some(via(p, Some((USER, PASSWORD)))), None)).await,
            format!("tcp via proxy {p} (digest) to {gw}")
        );
    }
}

#[tokio::test]
async fn proxy_errors_say_what_happened() {
    let gw = tcp_gateway().await;
    let p = proxy(ProxyMode::Basic).await;
    let e = connect(&plan(gw, Some(via(p, None)), None))
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectError::ProxyAuthRequired { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("proxy {p} requires authentication (set proxy_user and proxy_password)")
    );

    let p = proxy(ProxyMode::Digest("SHA-256")).await;
    let e = connect(&plan(gw, Some(via(p, Some((USER, "wrong")))), None))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("proxy {p} refused the credentials for user \"alice\" (digest)")
    );

    let p = proxy(ProxyMode::Forbidden).await;
    let e = connect(&plan(gw, Some(via(p, Some((USER, PASSWORD)))), None))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("proxy {p} refused CONNECT to {gw}: HTTP/1.1 403 Forbidden by policy")
    );

    // A port nobody listens on.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = l.local_addr().unwrap();
    drop(l);
    let e = connect(&plan(gw, Some(via(dead, None)), None))
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectError::ProxyUnreachable { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with(&format!("proxy {dead} is unreachable: ")),
        "{e}"
    );
    let e = connect(&plan(dead, None, None)).await.unwrap_err();
    assert!(matches!(e, ConnectError::Unreachable { .. }), "{e:?}");

    // Not a proxy at all: an HTTP-less server that answers garbage.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let junk = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    });
    let e = connect(&plan(gw, Some(via(junk, None)), None))
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectError::ProxyProtocol { .. }), "{e:?}");
}

#[tokio::test]
async fn silent_proxy_times_out() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let p = l.local_addr().unwrap();
    let _keep = tokio::spawn(async move {
        let (_s, _) = l.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
    });
    let mut pl = plan(p, Some(via(p, None)), None);
    pl.timeout = Duration::from_millis(200);
    let e = connect(&pl).await.unwrap_err();
    assert_eq!(e.to_string(), "proxy CONNECT timed out after 200 ms");
}

fn tls(ca_pem: &str) -> Option<TlsSettings> {
    Some(TlsSettings {
        server_name: "gw.test".into(),
        alpn: vec!["rampart-ike".into()],
        roots: Roots::Pem(ca_pem.as_bytes().to_vec()),
    })
}

#[tokio::test]
async fn tls_direct_and_via_digest_proxy() {
    let gw = tls_gateway().await;
    assert_eq!(
        expect_ok(&plan(gw.addr, None, tls(&gw.ca_pem))).await,
        format!("tls direct to {}", gw.addr)
    );
    let p = proxy(ProxyMode::Digest("SHA-256")).await;
    assert_eq!(
        expect_ok(&plan(
            gw.addr,
            Some(via(p, Some((USER, PASSWORD)))),
            tls(&gw.ca_pem)
        ))
        .await,
        format!("tls via proxy {p} (digest) to {}", gw.addr)
    );
    // The CA from a file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, &gw.ca_pem).unwrap();
    let mut t = tls(&gw.ca_pem).unwrap();
    t.roots = Roots::CaFile(path);
    expect_ok(&plan(gw.addr, None, Some(t))).await;
}

#[tokio::test]
async fn tls_rejects_an_unknown_certificate() {
    let gw = tls_gateway().await;
    let other = rcgen::generate_simple_self_signed(vec!["gw.test".to_owned()]).unwrap();
    let e = connect(&plan(gw.addr, None, tls(&other.cert.pem())))
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectError::Tls { .. }), "{e:?}");
    let mut t = tls(&gw.ca_pem).unwrap();
    t.server_name = "other.test".into();
    let e = connect(&plan(gw.addr, None, Some(t))).await.unwrap_err();
    assert!(matches!(e, ConnectError::Tls { .. }), "{e:?}");
    let mut t = tls(&gw.ca_pem).unwrap();
    t.roots = Roots::Pem(b"not pem".to_vec());
    let e = connect(&plan(gw.addr, None, Some(t))).await.unwrap_err();
    assert!(matches!(e, ConnectError::TlsConfig(_)), "{e:?}");
    // Parsing the proxy's status line is shared with the captive probe; sanity-check here.
    assert_eq!(
        parse_response_head(b"HTTP/1.1 200 OK\r\n\r\n")
            .unwrap()
            .status,
        200
    );
}

mod ladder {
    use super::*;
    use rampart_connect::drive::{run, Targets, Won};
    use rampart_connect::ladder::{LadderConfig, Transport};
    use tokio::net::UdpSocket;

    async fn refused_port() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    }

    /// Accepts TCP and never says a word: a TLS handshake to it hangs.
    async fn mute_listener() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut keep = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                keep.push(s);
            }
        });
        port
    }

    fn targets(
        udp: SocketAddr,
        tcp_port: u16,
        tls_port: u16,
        ca: &str,
        proxies: Vec<Proxy>,
    ) -> Targets {
        Targets {
            host: "127.0.0.1".into(),
            udp: Some(udp),
            udp_nat_t: false,
            tcp_port,
            tls_port,
            tls: tls(ca).unwrap(),
            proxies,
        }
    }

    /// Hotel Wi-Fi: UDP silently dropped, TCP 4500 refused, TLS 443 direct hangs, only the
    /// proxy (Digest) reaches the gateway. The ladder picks TLS via the proxy well within 3 s.
    #[tokio::test]
    async fn hotel_wifi_tls_via_proxy_under_3s() {
        let gw = tls_gateway().await;
        let udp_sink = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let p = proxy_to(ProxyMode::Digest("SHA-256"), Some(gw.addr)).await;
        let t = targets(
            udp_sink.local_addr().unwrap(),
            refused_port().await,
            mute_listener().await,
            &gw.ca_pem,
            vec![via(p, Some((USER, PASSWORD)))],
        );
        let config =
            LadderConfig::standard(&[Transport::Udp, Transport::Tcp, Transport::Tls], 1).unwrap();
        let start = std::time::Instant::now();
        let choice = run(config, &t).await.unwrap();
        let took = start.elapsed();
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert_eq!(choice.rung.to_string(), "tls via proxy #1");
        assert!(choice.why.contains("udp: no answer yet"), "{}", choice.why);
        assert!(
            choice.why.contains("tcp: cannot connect to 127.0.0.1:"),
            "{}",
            choice.why
        );
        let Won::Stream(mut c) = choice.won else {
            panic!("not a stream")
        };
        assert_eq!(
            c.path.to_string(),
            format!("tls via proxy {p} (digest) to 127.0.0.1:{}", t.tls_port)
        );
        let mut ok = [0u8; 2];
        c.stream.read_exact(&mut ok).await.unwrap();
        assert_eq!(&ok, b"OK");
    }

    /// UDP answers (a stand-in answering the probe like the gateway's stateless reply): UDP
    /// wins even though TCP connects too.
    #[tokio::test]
    async fn udp_wins_when_it_answers() {
        let gw = tcp_gateway().await;
        let u = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let ua = u.local_addr().unwrap();
        tokio::spawn(async move {
            let mut b = [0u8; 64];
            let (n, from) = u.recv_from(&mut b).await.unwrap();
            let mut h = rampart_wire::ike::parse_header(&b[..n]).unwrap();
            h.flags = rampart_wire::ike::flags::RESPONSE;
            let mut out = Vec::new();
            rampart_wire::ike::encode_header(&h, &mut out);
            u.send_to(&out, from).await.unwrap();
        });
        let t = targets(ua, gw.port(), refused_port().await, "", vec![]);
        let config = LadderConfig::standard(&[Transport::Udp, Transport::Tcp], 0).unwrap();
        let choice = run(config, &t).await.unwrap();
        assert!(matches!(choice.won, Won::Udp(_)), "{choice:?}");
        assert_eq!(choice.rung.to_string(), "udp");
    }

    /// Nothing works: every rung's reason is reported.
    #[tokio::test]
    async fn all_failed_reports_every_rung() {
        let refused_udp = {
            let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            s.local_addr().unwrap()
        };
        let dead = refused_port().await;
        let t = targets(
            refused_udp,
            dead,
            dead,
            "",
            vec![via(SocketAddr::from(([127, 0, 0, 1], dead)), None)],
        );
        let mut config = LadderConfig::standard(&[Transport::Udp, Transport::Tcp], 1).unwrap();
        for r in &mut config.rungs {
            r.timeout = Duration::from_millis(500);
        }
        let e = run(config, &t).await.unwrap_err();
        assert_eq!(e.reasons.len(), 3);
        assert!(e.summary.starts_with("udp: "), "{}", e.summary);
        assert!(
            e.summary.contains("; tcp: cannot connect to 127.0.0.1:"),
            "{}",
            e.summary
        );
        assert!(
            e.summary.contains("; tcp via proxy #1: proxy 127.0.0.1:"),
            "{}",
            e.summary
        );
    }
}
