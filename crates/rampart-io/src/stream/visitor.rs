//! Visitor Mode connections: peek the TLS ClientHello, then either terminate TLS (rustls,
//! the configured certificate) and run the RFC 9329 stream inside it, or hand the connection,
//! bytes untouched, to the HTTPS server that shares the port, or close it.
//!
//! Routing: Visitor Mode when the ALPN list offers `alpn`, or the server name is one of
//! `server_names`; otherwise `https_backend` when set; otherwise the connection is closed.
//!
//! Invariants: a client gets [`HELLO_TIMEOUT`] to send its ClientHello and finish the TLS
//! handshake; at most [`MAX_PEEK`] bytes are buffered before routing; forwarded
//! connections see exactly the bytes the client sent, the ClientHello included.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rampart_config::VisitorMode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::hello::{self, ClientHello, MAX_HELLO_LEN};

/// How long a client has for its ClientHello and for the TLS handshake (each).
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to the HTTPS backend may take.
pub const BACKEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes read before routing: a hello of [`MAX_HELLO_LEN`] in records of any size.
pub const MAX_PEEK: usize = 4 * MAX_HELLO_LEN;

/// Where a connection goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Visitor Mode, negotiating the ALPN (the client offered it).
    VisitorAlpn,
    /// Visitor Mode by server name, without ALPN.
    VisitorName,
    /// Forwarded to the HTTPS backend.
    Backend(SocketAddr),
    /// Neither: closed.
    Close,
}

/// The Visitor Mode TLS configurations and routing rules of one `[remote_access.visitor]`.
pub struct Router {
    alpn: Vec<u8>,
    server_names: Vec<String>,
    backend: Option<SocketAddr>,
    with_alpn: TlsAcceptor,
    without_alpn: TlsAcceptor,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("alpn", &String::from_utf8_lossy(&self.alpn))
            .field("server_names", &self.server_names)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// The Visitor Mode certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("Visitor Mode TLS: {0}")]
pub struct VisitorTlsError(pub String);

impl Router {
    /// Reads the certificate chain and key and builds the TLS server configurations.
    pub fn new(config: &VisitorMode) -> Result<Router, VisitorTlsError> {
        let chain = crate::sync_tls::load_chain(&config.certificate).map_err(VisitorTlsError)?;
        let key = crate::sync_tls::load_key(&config.key).map_err(VisitorTlsError)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let build = |alpn: Option<&[u8]>| {
            let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| VisitorTlsError(e.to_string()))?
                .with_no_client_auth()
                .with_single_cert(chain.clone(), key.clone_key())
                .map_err(|e| {
                    VisitorTlsError(format!(
                        "certificate {} with key {}: {e}",
                        config.certificate.display(),
                        config.key.display()
                    ))
                })?;
            server.alpn_protocols = alpn.map(|a| vec![a.to_vec()]).unwrap_or_default();
            Ok::<_, VisitorTlsError>(TlsAcceptor::from(Arc::new(server)))
        };
        Ok(Router {
            alpn: config.alpn.as_bytes().to_vec(),
            server_names: config.server_names.clone(),
            backend: config.https_backend,
            with_alpn: build(Some(config.alpn.as_bytes()))?,
            without_alpn: build(None)?,
        })
    }

    /// Where a connection with this ClientHello goes.
    pub fn route(&self, hello: &ClientHello) -> Route {
        if hello.offers(&self.alpn) {
            Route::VisitorAlpn
        } else if hello.names_one_of(&self.server_names) {
            Route::VisitorName
        } else if let Some(backend) = self.backend {
            Route::Backend(backend)
        } else {
            Route::Close
        }
    }

    /// Terminates TLS on `tcp`, whose first bytes were already read into `peeked`.
    pub async fn accept(
        &self,
        route: Route,
        tcp: TcpStream,
        peeked: Vec<u8>,
    ) -> io::Result<tokio_rustls::server::TlsStream<Rewind<TcpStream>>> {
        let acceptor = match route {
            Route::VisitorAlpn => &self.with_alpn,
            _ => &self.without_alpn,
        };
        match tokio::time::timeout(HELLO_TIMEOUT, acceptor.accept(Rewind::new(peeked, tcp))).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            )),
        }
    }
}

/// Reads from `tcp` until the bytes hold a whole ClientHello; returns it with every byte
/// read. Errors: not TLS, too long, timed out, or the connection ended first.
pub async fn peek_hello(tcp: &mut TcpStream) -> io::Result<(ClientHello, Vec<u8>)> {
    let mut buf = Vec::with_capacity(2048);
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            match hello::parse(&buf) {
                Ok(Some(h)) => return Ok(h),
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
            if buf.len() >= MAX_PEEK {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "no complete ClientHello in the first 128 KB",
                ));
            }
            let want = chunk.len().min(MAX_PEEK - buf.len());
            let n = tcp.read(&mut chunk[..want]).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed before the ClientHello was complete",
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    match tokio::time::timeout(HELLO_TIMEOUT, read).await {
        Ok(Ok(h)) => Ok((h, buf)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no ClientHello within 10 s",
        )),
    }
}

/// Forwards `client` to `backend` both ways, the `peeked` bytes first. Returns the byte
/// counts (client to backend including `peeked`, backend to client).
pub async fn forward(
    mut client: TcpStream,
    peeked: &[u8],
    backend: SocketAddr,
) -> io::Result<(u64, u64)> {
    let mut server = match tokio::time::timeout(BACKEND_TIMEOUT, TcpStream::connect(backend)).await
    {
        Ok(r) => r?,
        Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
    };
    let _ = server.set_nodelay(true);
    server.write_all(peeked).await?;
    let (up, down) = tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok((up + peeked.len() as u64, down))
}

/// A stream whose first bytes were already read: they are read again first.
#[derive(Debug)]
pub struct Rewind<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Rewind<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Rewind<S> {
        Rewind {
            prefix,
            at: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.prefix.len() {
            let n = (this.prefix.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            if this.at == this.prefix.len() {
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visitor(dir: &std::path::Path, backend: Option<SocketAddr>) -> VisitorMode {
        let made = rcgen::generate_simple_self_signed(vec!["vpn.example.test".into()]).unwrap();
        let (certificate, key) = (dir.join("gw.crt"), dir.join("gw.key"));
        std::fs::write(&certificate, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        VisitorMode {
            listen: vec![],
            certificate,
            key,
            https_backend: backend,
            server_names: vec!["vpn.example.test".into()],
            alpn: "rampart-ike".into(),
        }
    }

    #[test]
    fn routes_by_alpn_then_name_then_backend() {
        let dir = tempfile::tempdir().unwrap();
        let backend: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let router = Router::new(&visitor(dir.path(), Some(backend))).unwrap();
        let hello = |name: Option<&str>, alpn: &[&str]| ClientHello {
            server_name: name.map(str::to_owned),
            alpn: alpn.iter().map(|a| a.as_bytes().to_vec()).collect(),
        };
        let ike = hello(Some("www.example.test"), &["h2", "rampart-ike"]);
        assert_eq!(router.route(&ike), Route::VisitorAlpn);
        let by_name = hello(Some("VPN.example.test."), &["h2"]);
        assert_eq!(router.route(&by_name), Route::VisitorName);
        let browser = hello(Some("www.example.test"), &["h2", "http/1.1"]);
        assert_eq!(router.route(&browser), Route::Backend(backend));
        assert_eq!(router.route(&hello(None, &[])), Route::Backend(backend));
        let closing = Router::new(&visitor(dir.path(), None)).unwrap();
        assert_eq!(closing.route(&browser), Route::Close);
    }

    #[test]
    fn a_missing_key_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = visitor(dir.path(), None);
        config.key = dir.path().join("absent.key");
        let err = Router::new(&config).unwrap_err().to_string();
        assert!(err.starts_with("Visitor Mode TLS: key "), "{err}");
        assert!(err.contains("absent.key"), "{err}");
    }

    #[tokio::test]
    async fn rewind_reads_the_prefix_then_the_stream() {
        let (a, mut b) = tokio::io::duplex(64);
        b.write_all(b" world").await.unwrap();
        drop(b);
        let mut r = Rewind::new(b"hello".to_vec(), a);
        let mut out = String::new();
        r.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }
}
