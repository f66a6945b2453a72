//! One stream attempt of the client's transport ladder, as `rampart_connect::connect` makes
//! it, on the client machine's simulated TCP stack: TCP to the gateway, or to an HTTP CONNECT
//! proxy (the first request without credentials; on `407` a fresh connection answering the
//! strongest offered scheme, as browsers do), then optionally TLS (rustls in memory, the real
//! client's configuration), then the RFC 9329 `IKETCP` prefix. Failures carry the real
//! connector's messages ([`ConnectError`]).

use std::net::Ipv4Addr;
use std::sync::Arc;

use rampart_connect::auth::{self, Chosen};
use rampart_connect::http;
use rampart_connect::{ConnectError, PathInfo, Proxy, ProxyAuth};
use rampart_wire::tcp_encap::{Role, PREFIX};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;

use super::outer::Outer;
use crate::stream::Pipe;

/// Where a stream attempt is.
enum Stage {
    /// TCP connecting (to the gateway or the proxy).
    Connecting,
    /// The CONNECT request is sent; reading the proxy's answer head.
    ProxyHead,
    /// TLS handshake (the prefix waits inside rustls until it is done).
    Handshake,
    /// `IKETCP` written: frames flow.
    Open,
}

/// What a step of the attempt came to.
pub enum Event {
    Nothing,
    /// The stream is ready (the ladder's success).
    Connected,
    /// The attempt or the stream ended.
    Failed(String),
}

/// A stream to the gateway, being made or made.
pub struct StreamConn {
    socket: SocketHandle,
    /// The gateway's address and stream port (the proxy's CONNECT target, or direct).
    target: (Ipv4Addr, u16),
    stage: Stage,
    proxy: Option<(Proxy, Ipv4Addr)>,
    /// The authentication of the CONNECT in flight (`None`: the first, without credentials).
    auth: Option<ProxyAuth>,
    head: Vec<u8>,
    tls: Option<(Arc<rustls::ClientConfig>, String)>,
    pub pipe: Option<Pipe>,
    pub path: PathInfo,
    /// Our TCP port.
    pub local_port: u16,
}

impl StreamConn {
    /// Starts the attempt: the TCP connection to the proxy, or to `target` directly.
    pub fn start(
        outer: &mut Outer,
        target: (Ipv4Addr, u16),
        proxy: Option<(Proxy, Ipv4Addr)>,
        tls: Option<(Arc<rustls::ClientConfig>, String)>,
    ) -> StreamConn {
        let first = proxy.as_ref().map_or(target, |(p, a)| (*a, p.port));
        let (socket, local_port) = outer.connect(first);
        StreamConn {
            socket,
            target,
            stage: Stage::Connecting,
            path: PathInfo {
                tls: tls.is_some(),
                target: http::authority(&target.0.to_string(), target.1),
                proxy: proxy
                    .as_ref()
                    .map(|(p, _)| (p.authority(), ProxyAuth::None)),
            },
            proxy,
            auth: None,
            head: Vec::new(),
            tls,
            pipe: None,
            local_port,
        }
    }

    /// A new attempt on the same path: the same gateway port, through the same proxy, with
    /// or without TLS (re-attaching the IKE SA after the stream was lost, RFC 9329). When the
    /// proxy took Basic credentials on this path, the first CONNECT carries them at once
    /// instead of waiting for the 407.
    pub fn reopen(&self, outer: &mut Outer) -> StreamConn {
        let mut c = StreamConn::start(outer, self.target, self.proxy.clone(), self.tls.clone());
        if matches!(self.path.proxy, Some((_, ProxyAuth::Basic))) {
            c.auth = Some(ProxyAuth::Basic);
        }
        c
    }

    /// Closes the connection at once (a losing attempt, or the end of the session).
    pub fn abort(&mut self, outer: &mut Outer) {
        outer.sockets.get_mut::<tcp::Socket>(self.socket).abort();
    }

    /// Ends the stream at the end of a session: what was queued (the engine's Deletes) still
    /// goes out before the FIN, as the I/O layer's close does; a stream whose address the
    /// machine no longer has can send nothing and is dropped at once.
    pub fn finish(&mut self, outer: &mut Outer, scratch: &mut [u8], machine: Ipv4Addr) {
        let s = outer.sockets.get_mut::<tcp::Socket>(self.socket);
        let bound = s.local_endpoint().map(|e| e.addr);
        if bound != Some(smoltcp::wire::IpAddress::Ipv4(machine)) {
            s.abort();
            return;
        }
        if let Some(pipe) = self.pipe.as_mut() {
            let mut ignored = Vec::new();
            pipe.pump_in(s, scratch, &mut ignored);
            pipe.pump_out(s);
        }
        // Whatever the send buffer cannot take now is lost with the stream.
        s.close();
    }

    /// Queues a datagram of the engine as one frame; `false` when dropped.
    pub fn send(&mut self, datagram: &[u8]) -> bool {
        match (&self.stage, self.pipe.as_mut()) {
            (Stage::Open, Some(p)) => p.send_datagram(datagram),
            _ => false,
        }
    }

    /// Advances the attempt; frames read once open are appended to `datagrams`.
    pub fn step(
        &mut self,
        outer: &mut Outer,
        scratch: &mut [u8],
        datagrams: &mut Vec<Vec<u8>>,
    ) -> Event {
        for _ in 0..8 {
            match self.step_once(outer, scratch, datagrams) {
                Ok(true) => continue,
                Ok(false) => return Event::Nothing,
                Err(Done::Connected) => return Event::Connected,
                Err(Done::Failed(why)) => {
                    outer.sockets.get_mut::<tcp::Socket>(self.socket).abort();
                    return Event::Failed(why);
                }
            }
        }
        Event::Nothing
    }

    /// One transition; `Ok(true)` when it made progress.
    fn step_once(
        &mut self,
        outer: &mut Outer,
        scratch: &mut [u8],
        datagrams: &mut Vec<Vec<u8>>,
    ) -> Result<bool, Done> {
        let s = outer.sockets.get_mut::<tcp::Socket>(self.socket);
        match self.stage {
            Stage::Connecting => {
                if s.state() == tcp::State::Closed {
                    let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
                    return Err(Done::Failed(
                        match &self.proxy {
                            Some((p, _)) => ConnectError::ProxyUnreachable {
                                proxy: p.authority(),
                                source: refused,
                            },
                            None => ConnectError::Unreachable {
                                target: self.path.target.clone(),
                                source: refused,
                            },
                        }
                        .to_string(),
                    ));
                }
                if !s.may_send() {
                    return Ok(false);
                }
                match &self.proxy {
                    Some(_) => {
                        let req = self.connect_request();
                        let _ = s.send_slice(&req);
                        self.stage = Stage::ProxyHead;
                        Ok(true)
                    }
                    None => self.begin_stream(),
                }
            }
            Stage::ProxyHead => {
                let mut buf = [0u8; 1024];
                while s.can_recv() && self.head.len() < http::MAX_HEAD {
                    let n = s.peek_slice(&mut buf).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    // Only up to the end of the head: what follows belongs to the tunnel.
                    let before = self.head.len();
                    self.head.extend_from_slice(&buf[..n]);
                    let take = crate::proxy::head_len(&self.head).map_or(n, |end| end - before);
                    self.head.truncate(before + take);
                    let _ = s.recv_slice(&mut buf[..take]);
                    if crate::proxy::head_len(&self.head).is_some() {
                        break;
                    }
                }
                let Some(end) = crate::proxy::head_len(&self.head) else {
                    if !s.may_recv() || s.state() == tcp::State::Closed {
                        let proxy = self.proxy.as_ref().map(|(p, _)| p.authority());
                        return Err(Done::Failed(
                            ConnectError::ProxyUnreachable {
                                proxy: proxy.unwrap_or_default(),
                                source: std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                            }
                            .to_string(),
                        ));
                    }
                    return Ok(false);
                };
                let head = self.head[..end].to_vec();
                self.head.clear();
                self.proxy_answer(outer, &head)
            }
            Stage::Handshake => {
                let Some(pipe) = self.pipe.as_mut() else {
                    return Ok(false);
                };
                let progress = pipe.pump_in(s, scratch, datagrams) | pipe.pump_out(s);
                if let Some(f) = pipe.failure() {
                    let name = self.tls.as_ref().map_or(String::new(), |t| t.1.clone());
                    return Err(Done::Failed(
                        ConnectError::Tls {
                            server_name: name,
                            source: std::io::Error::other(
                                f.trim_start_matches("TLS: ").to_string(),
                            ),
                        }
                        .to_string(),
                    ));
                }
                if !pipe.handshaking() {
                    self.stage = Stage::Open;
                    return Err(Done::Connected);
                }
                if s.state() == tcp::State::Closed || !s.may_recv() {
                    return Err(Done::Failed(
                        "TLS handshake: the connection was closed".into(),
                    ));
                }
                Ok(progress)
            }
            Stage::Open => {
                let Some(pipe) = self.pipe.as_mut() else {
                    return Ok(false);
                };
                let progress = pipe.pump_in(s, scratch, datagrams) | pipe.pump_out(s);
                if let Some(f) = pipe.failure() {
                    return Err(Done::Failed(f.to_string()));
                }
                if s.state() == tcp::State::Closed {
                    return Err(Done::Failed("reset".into()));
                }
                if !s.may_recv() && !s.can_recv() {
                    return Err(Done::Failed("closed by the peer".into()));
                }
                Ok(progress)
            }
        }
    }

    /// The stream to the gateway is there (directly, or through the proxy): TLS, then the
    /// prefix. Without TLS the attempt succeeded (the prefix is queued and goes out with the
    /// next step, as the connector's write of `IKETCP` ends its work).
    fn begin_stream(&mut self) -> Result<bool, Done> {
        let tls = self.tls.as_ref().and_then(|(cfg, name)| {
            let name = rustls_pki_types::ServerName::try_from(name.clone()).ok()?;
            rustls::ClientConnection::new(cfg.clone(), name).ok()
        });
        let is_tls = tls.is_some();
        let mut pipe = Pipe::new(tls.map(rustls::Connection::Client), Role::Initiator);
        pipe.send_plain(PREFIX);
        self.pipe = Some(pipe);
        if is_tls {
            self.stage = Stage::Handshake;
            Ok(true)
        } else {
            self.stage = Stage::Open;
            Err(Done::Connected)
        }
    }

    fn connect_request(&self) -> Vec<u8> {
        let target = &self.path.target;
        let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let (Some(a), Some((p, _))) = (self.auth, &self.proxy) {
            if let Some(c) = &p.credentials {
                // Only Basic reaches here with credentials (see `proxy_answer`).
                if a == ProxyAuth::Basic {
                    req.push_str("Proxy-Authorization: ");
                    req.push_str(&auth::basic_authorization(&c.user, &c.password));
                    req.push_str("\r\n");
                }
            }
        }
        req.push_str("\r\n");
        req.into_bytes()
    }

    /// The proxy's answer to our CONNECT.
    fn proxy_answer(&mut self, outer: &mut Outer, head: &[u8]) -> Result<bool, Done> {
        let Some((proxy, proxy_addr)) = self.proxy.clone() else {
            return Ok(false);
        };
        let name = proxy.authority();
        let target = self.path.target.clone();
        let parsed = http::parse_response_head(head).map_err(|e| {
            Done::Failed(
                ConnectError::ProxyProtocol {
                    proxy: name.clone(),
                    why: e.to_string(),
                }
                .to_string(),
            )
        })?;
        match (parsed.status, self.auth) {
            (200..=299, used) => {
                self.path.proxy = Some((name, used.unwrap_or(ProxyAuth::None)));
                self.begin_stream()
            }
            (407, None) => {
                if proxy.credentials.is_none() {
                    return Err(Done::Failed(
                        ConnectError::ProxyAuthRequired { proxy: name }.to_string(),
                    ));
                }
                match auth::choose(parsed.headers("proxy-authenticate")) {
                    Some(Chosen::Basic) => {}
                    Some(Chosen::Digest(_)) => {
                        // The lab's proxy offers Basic only; a Digest challenge is refused
                        // rather than answered with a nonce the run could not reproduce.
                        return Err(Done::Failed(
                            ConnectError::ProxyAuthUnsupported {
                                proxy: name,
                                offered: "Digest (not simulated)".into(),
                            }
                            .to_string(),
                        ));
                    }
                    None => {
                        let offered: Vec<String> = parsed
                            .headers("proxy-authenticate")
                            .flat_map(auth::parse_challenges)
                            .map(|c| c.scheme)
                            .collect();
                        return Err(Done::Failed(
                            ConnectError::ProxyAuthUnsupported {
                                proxy: name,
                                offered: if offered.is_empty() {
                                    "nothing".to_owned()
                                } else {
                                    offered.join(", ")
                                },
                            }
                            .to_string(),
                        ));
                    }
                }
                // A fresh connection is always correct.
                outer.sockets.get_mut::<tcp::Socket>(self.socket).close();
                outer.release(self.socket);
                let (socket, port) = outer.connect((proxy_addr, proxy.port));
                self.socket = socket;
                self.local_port = port;
                self.auth = Some(ProxyAuth::Basic);
                self.stage = Stage::Connecting;
                Ok(true)
            }
            (407, Some(_)) => Err(Done::Failed(
                ConnectError::ProxyAuthRejected {
                    proxy: name,
                    user: proxy
                        .credentials
                        .as_ref()
                        .map(|c| c.user.clone())
                        .unwrap_or_default(),
                    scheme: "basic",
                }
                .to_string(),
            )),
            _ => Err(Done::Failed(
                ConnectError::ProxyRefused {
                    proxy: name,
                    target,
                    status_line: parsed.status_line,
                }
                .to_string(),
            )),
        }
    }
}

enum Done {
    Connected,
    Failed(String),
}
