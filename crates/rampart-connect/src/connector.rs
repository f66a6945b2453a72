//! The stream connector: TCP to the gateway, directly or through an HTTP CONNECT proxy
//! (Basic or Digest authentication), then optionally TLS (Visitor Mode), then the RFC 9329
//! `IKETCP` prefix. What comes back is ready for RFC 9329 framing.
//!
//! Proxy authentication follows what users expect from browsers: the first CONNECT goes
//! without credentials; on `407` the strongest offered scheme we speak is answered (Digest
//! SHA-256, Digest MD5, Basic) on a fresh connection. A second `407` means the proxy refused
//! the credentials; any other non-2xx answer is reported with the proxy's status line.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use crate::auth::{self, Chosen};
use crate::error::ConnectError;
use crate::http::{self, read_head, ReadHeadError};
use crate::proxy::Proxy;

/// A byte stream the connector hands out: TCP or TLS, directly or through a proxy.
pub trait AsyncStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + ?Sized> AsyncStream for T {}

/// The boxed stream (`Box<dyn AsyncRead + AsyncWrite + Send + Unpin>` in spirit; Rust needs the
/// helper trait [`AsyncStream`] to name it). A `BoxStream` itself implements `AsyncRead +
/// AsyncWrite + Send + Unpin`, so it boxes into any other crate's equivalent type.
pub type BoxStream = Box<dyn AsyncStream>;

/// Where the certificates that verify the gateway's TLS certificate come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// A PEM file with one or more CA certificates.
    CaFile(PathBuf),
    /// PEM text (tests, or CAs already loaded by the caller).
    Pem(Vec<u8>),
    /// The system's CA bundle: `SSL_CERT_FILE`, else the first of [`SYSTEM_CA_FILES`] that
    /// exists.
    System,
}

/// Where Linux distributions keep the CA bundle, in the order they are tried.
pub const SYSTEM_CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// TLS (Visitor Mode) settings. There is deliberately no way to skip verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// Sent as SNI and checked against the certificate.
    pub server_name: String,
    /// ALPN protocols offered, in preference order (e.g. `["rampart-ike"]`).
    pub alpn: Vec<String>,
    pub roots: Roots,
}

/// What to connect to and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectPlan {
    /// The gateway's host name or address.
    pub host: String,
    /// The gateway's TCP port (RFC 9329 port, or the Visitor Mode port).
    pub port: u16,
    /// Go through this HTTP CONNECT proxy.
    pub proxy: Option<Proxy>,
    /// Wrap the stream in TLS (Visitor Mode).
    pub tls: Option<TlsSettings>,
    /// Budget for the whole connection (TCP, proxy, TLS, prefix).
    pub timeout: Duration,
}

/// Which proxy authentication was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyAuth {
    None,
    Basic,
    Digest,
}

/// The path a connection took, for status and logs. `Display` gives e.g.
/// `tls via proxy 10.0.0.1:3128 (digest) to vpn.example:443` or `tcp direct to 192.0.2.1:4500`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathInfo {
    pub tls: bool,
    /// `host:port` of the gateway as connected to (or as asked of the proxy).
    pub target: String,
    /// `host:port` of the proxy and the authentication used.
    pub proxy: Option<(String, ProxyAuth)>,
}

impl fmt::Display for PathInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.tls { "tls" } else { "tcp" })?;
        match &self.proxy {
            None => write!(f, " direct")?,
            Some((p, ProxyAuth::None)) => write!(f, " via proxy {p}")?,
            Some((p, ProxyAuth::Basic)) => write!(f, " via proxy {p} (basic)")?,
            Some((p, ProxyAuth::Digest)) => write!(f, " via proxy {p} (digest)")?,
        }
        write!(f, " to {}", self.target)
    }
}

/// A connected stream, `IKETCP` already written.
pub struct Connected {
    pub stream: BoxStream,
    pub path: PathInfo,
    /// Our end of the TCP connection.
    pub local_addr: SocketAddr,
    /// The other end of the TCP connection: the gateway, or the proxy.
    pub tcp_peer: SocketAddr,
}

impl fmt::Debug for Connected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connected")
            .field("path", &self.path)
            .field("local_addr", &self.local_addr)
            .field("tcp_peer", &self.tcp_peer)
            .finish_non_exhaustive()
    }
}

/// Connects as `plan` says and writes the RFC 9329 prefix. Cancel-safe: dropping the future
/// closes whatever was opened.
pub async fn connect(plan: &ConnectPlan) -> Result<Connected, ConnectError> {
    let deadline = Instant::now() + plan.timeout;
    let target = http::authority(&plan.host, plan.port);
    let tls_config = plan.tls.as_ref().map(client_config).transpose()?;
    let (tcp, proxy) = match &plan.proxy {
        None => {
            let s = staged(deadline, plan.timeout, "TCP connect", async {
                TcpStream::connect((plan.host.as_str(), plan.port))
                    .await
                    .map_err(|source| ConnectError::Unreachable {
                        target: target.clone(),
                        source,
                    })
            })
            .await?;
            (s, None)
        }
        Some(p) => {
            let (s, a) = staged(deadline, plan.timeout, "proxy CONNECT", async {
                via_proxy(p, &plan.host, plan.port).await
            })
            .await?;
            (s, Some((p.authority(), a)))
        }
    };
    let _ = tcp.set_nodelay(true);
    let io = |stage| move |source| ConnectError::Io { stage, source };
    let local_addr = tcp.local_addr().map_err(io("local address"))?;
    let tcp_peer = tcp.peer_addr().map_err(io("peer address"))?;
    let mut stream: BoxStream = match (&plan.tls, tls_config) {
        (Some(t), Some(cfg)) => {
            let name = ServerName::try_from(t.server_name.clone()).map_err(|e| {
                ConnectError::TlsConfig(format!("server name {:?}: {e}", t.server_name))
            })?;
            let tls = staged(deadline, plan.timeout, "TLS handshake", async {
                tokio_rustls::TlsConnector::from(cfg)
                    .connect(name, tcp)
                    .await
                    .map_err(|source| ConnectError::Tls {
                        server_name: t.server_name.clone(),
                        source,
                    })
            })
            .await?;
            Box::new(tls)
        }
        _ => Box::new(tcp),
    };
    staged(deadline, plan.timeout, "writing IKETCP", async {
        stream
            .write_all(rampart_wire::tcp_encap::PREFIX)
            .await
            .map_err(io("writing IKETCP"))?;
        stream.flush().await.map_err(io("writing IKETCP"))
    })
    .await?;
    Ok(Connected {
        stream,
        path: PathInfo {
            tls: plan.tls.is_some(),
            target,
            proxy,
        },
        local_addr,
        tcp_peer,
    })
}

async fn staged<T>(
    deadline: Instant,
    budget: Duration,
    stage: &'static str,
    f: impl std::future::Future<Output = Result<T, ConnectError>>,
) -> Result<T, ConnectError> {
    match timeout_at(deadline, f).await {
        Ok(r) => r,
        Err(_) => Err(ConnectError::Timeout {
            stage,
            millis: budget.as_millis(),
        }),
    }
}

/// Opens a tunnel through `proxy` to `host:port`; returns the stream positioned after the
/// proxy's 2xx head and the authentication used.
async fn via_proxy(
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> Result<(TcpStream, ProxyAuth), ConnectError> {
    let name = proxy.authority();
    let target = http::authority(host, port);
    let (mut s, head) = connect_request(proxy, &target, None).await?;
    match head.status {
        200..=299 => return Ok((s, ProxyAuth::None)),
        407 => {}
        _ => {
            return Err(ConnectError::ProxyRefused {
                proxy: name,
                target,
                status_line: head.status_line,
            })
        }
    }
    let Some(creds) = &proxy.credentials else {
        return Err(ConnectError::ProxyAuthRequired { proxy: name });
    };
    let Some(chosen) = auth::choose(head.headers("proxy-authenticate")) else {
        let offered: Vec<String> = head
            .headers("proxy-authenticate")
            .flat_map(auth::parse_challenges)
            .map(|c| c.scheme)
            .collect();
        return Err(ConnectError::ProxyAuthUnsupported {
            proxy: name,
            offered: if offered.is_empty() {
                "nothing".to_owned()
            } else {
                offered.join(", ")
            },
        });
    };
    // The proxy may keep the connection open; a fresh one is always correct.
    let _ = s.shutdown().await;
    drop(s);
    let (value, used, scheme) = match &chosen {
        Chosen::Basic => (
            auth::basic_authorization(&creds.user, &creds.password),
            ProxyAuth::Basic,
            "basic",
        ),
        Chosen::Digest(d) => (
            d.authorization(
                &creds.user,
                &creds.password,
                "CONNECT",
                &target,
                &auth::new_cnonce(),
                1,
            ),
            ProxyAuth::Digest,
            "digest",
        ),
    };
    let (s, head) = connect_request(proxy, &target, Some(&value)).await?;
    match head.status {
        200..=299 => Ok((s, used)),
        407 => Err(ConnectError::ProxyAuthRejected {
            proxy: name,
            user: creds.user.clone(),
            scheme,
        }),
        _ => Err(ConnectError::ProxyRefused {
            proxy: name,
            target,
            status_line: head.status_line,
        }),
    }
}

/// One TCP connection to the proxy and one CONNECT request on it.
async fn connect_request(
    proxy: &Proxy,
    target: &str,
    authorization: Option<&str>,
) -> Result<(TcpStream, http::ResponseHead), ConnectError> {
    let name = proxy.authority();
    let mut s = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(|source| ConnectError::ProxyUnreachable {
            proxy: name.clone(),
            source,
        })?;
    let _ = s.set_nodelay(true);
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(a) = authorization {
        req.push_str("Proxy-Authorization: ");
        req.push_str(a);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let unreachable = |source| ConnectError::ProxyUnreachable {
        proxy: name.clone(),
        source,
    };
    s.write_all(req.as_bytes()).await.map_err(unreachable)?;
    let head = read_head(&mut s).await.map_err(|e| match e {
        ReadHeadError::Io(source) => ConnectError::ProxyUnreachable {
            proxy: name.clone(),
            source,
        },
        ReadHeadError::Http(h) => ConnectError::ProxyProtocol {
            proxy: name.clone(),
            why: h.to_string(),
        },
    })?;
    Ok((s, head))
}

/// Builds the rustls client configuration for `t` (aws-lc-rs provider, TLS 1.2 and 1.3).
pub fn client_config(t: &TlsSettings) -> Result<Arc<rustls::ClientConfig>, ConnectError> {
    let roots = load_roots(&t.roots)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::TlsConfig(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = t.alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// Loads the trust anchors. Errors when the source yields no usable certificate.
pub fn load_roots(roots: &Roots) -> Result<rustls::RootCertStore, ConnectError> {
    let (pem, origin) = match roots {
        Roots::Pem(p) => (p.clone(), "the given PEM".to_owned()),
        Roots::CaFile(path) => (
            std::fs::read(path).map_err(|e| {
                ConnectError::TlsConfig(format!("cannot read CA file {}: {e}", path.display()))
            })?,
            path.display().to_string(),
        ),
        Roots::System => {
            let env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
            let path = env
                .into_iter()
                .chain(SYSTEM_CA_FILES.iter().map(PathBuf::from))
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    ConnectError::TlsConfig(
                        "no system CA bundle found (install ca-certificates or set tls_ca)"
                            .to_owned(),
                    )
                })?;
            (
                std::fs::read(&path).map_err(|e| {
                    ConnectError::TlsConfig(format!("cannot read {}: {e}", path.display()))
                })?,
                path.display().to_string(),
            )
        }
    };
    let mut store = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert =
            cert.map_err(|e| ConnectError::TlsConfig(format!("bad PEM in {origin}: {e}")))?;
        // Bundles carry the odd certificate webpki cannot parse; skip those.
        let _ = store.add(cert);
    }
    if store.is_empty() {
        return Err(ConnectError::TlsConfig(format!(
            "no CA certificate in {origin}"
        )));
    }
    Ok(store)
}
