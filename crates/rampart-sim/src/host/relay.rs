//! The HTTP CONNECT proxy relay of a proxy host: accepts client connections, answers their
//! request (decided by `crate::proxy`), opens the upstream connection and copies bytes both ways.

use std::net::Ipv4Addr;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::wire::IpAddress;

use super::{Host, CHUNK};

/// The HTTP CONNECT proxy service of a proxy node.
pub(super) struct ProxyService {
    port: u16,
    credentials: Option<String>,
    listener: SocketHandle,
    sessions: Vec<ProxySession>,
}

#[derive(PartialEq, Eq)]
enum SessionState {
    Request,
    Connecting,
    Relay,
    Done,
}

struct ProxySession {
    client: SocketHandle,
    upstream: Option<SocketHandle>,
    state: SessionState,
    /// Request head, then bytes the client sent after it, still to forward.
    buf: Vec<u8>,
    target: (Ipv4Addr, u16),
}

impl Host {
    /// Makes this host an HTTP CONNECT proxy on `port`, requiring `credentials`
    /// (`user:password`, Basic authentication) when given.
    pub fn enable_proxy(&mut self, port: u16, credentials: Option<String>) {
        let mut s = Self::tcp_socket();
        let _ = s.listen(port);
        let listener = self.sockets.add(s);
        self.scratch = vec![0u8; CHUNK];
        self.proxy = Some(ProxyService {
            port,
            credentials,
            listener,
            sessions: Vec::new(),
        });
    }

    /// The port of its proxy service, when it is a proxy.
    pub fn proxy_port(&self) -> Option<u16> {
        self.proxy.as_ref().map(|p| p.port)
    }

    /// The HTTP CONNECT proxy: accepts connections, answers requests, relays bytes.
    pub(super) fn step_proxy(&mut self, notes: &mut Vec<String>) -> bool {
        let Some(svc) = self.proxy.as_mut() else {
            return false;
        };
        let mut progress = false;
        // A listener that got a connection becomes a session; a fresh one listens.
        if self.sockets.get::<tcp::Socket>(svc.listener).state() != tcp::State::Listen {
            let mut l = Self::tcp_socket();
            let _ = l.listen(svc.port);
            let fresh = self.sockets.add(l);
            let client = std::mem::replace(&mut svc.listener, fresh);
            svc.sessions.push(ProxySession {
                client,
                upstream: None,
                state: SessionState::Request,
                buf: Vec::new(),
                target: (Ipv4Addr::UNSPECIFIED, 0),
            });
            progress = true;
        }
        let credentials = svc.credentials.clone();
        let mut sessions = std::mem::take(&mut svc.sessions);
        for sess in &mut sessions {
            progress |= self.step_session(sess, credentials.as_deref(), notes);
        }
        sessions.retain(|s| s.state != SessionState::Done);
        if let Some(svc) = self.proxy.as_mut() {
            svc.sessions = sessions;
        }
        progress
    }

    fn step_session(
        &mut self,
        sess: &mut ProxySession,
        credentials: Option<&str>,
        notes: &mut Vec<String>,
    ) -> bool {
        use crate::proxy::{self, Decision};
        let mut progress = false;
        let peer = |s: &tcp::Socket| {
            s.remote_endpoint()
                .map_or_else(|| "?".to_string(), |e| e.addr.to_string())
        };
        match sess.state {
            SessionState::Request => {
                let c = self.sockets.get_mut::<tcp::Socket>(sess.client);
                while c.can_recv() && sess.buf.len() < proxy::MAX_HEAD {
                    let room = proxy::MAX_HEAD - sess.buf.len();
                    let buf = &mut sess.buf;
                    match c.recv(|b| {
                        let n = b.len().min(room);
                        buf.extend_from_slice(&b[..n]);
                        (n, n)
                    }) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => progress = true,
                    }
                }
                let decision = match proxy::head_len(&sess.buf) {
                    Some(n) => {
                        let d = proxy::decide(&sess.buf[..n], credentials);
                        sess.buf.drain(..n);
                        d
                    }
                    None if sess.buf.len() >= proxy::MAX_HEAD => {
                        Decision::Refuse(proxy::RESPONSE_400)
                    }
                    None if !c.may_recv() && c.state() != tcp::State::SynReceived => {
                        c.close();
                        sess.state = SessionState::Done;
                        return true;
                    }
                    None => return progress,
                };
                let from = peer(c);
                match decision {
                    Decision::Refuse(response) => {
                        let _ = c.send_slice(response.as_bytes());
                        c.close();
                        notes.push(format!(
                            "proxy: request from {from} refused: {}",
                            proxy::status_line(response.as_bytes())
                        ));
                        sess.state = SessionState::Done;
                    }
                    Decision::Connect(addr, port) => {
                        let up = self.sockets.add(Self::tcp_socket());
                        let local = self.local_port();
                        let u = self.sockets.get_mut::<tcp::Socket>(up);
                        let _ =
                            u.connect(self.iface.context(), (IpAddress::Ipv4(addr), port), local);
                        notes.push(format!("proxy: CONNECT {addr}:{port} from {from}"));
                        sess.upstream = Some(up);
                        sess.target = (addr, port);
                        sess.state = SessionState::Connecting;
                    }
                }
                true
            }
            SessionState::Connecting => {
                let Some(up) = sess.upstream else {
                    sess.state = SessionState::Done;
                    return true;
                };
                let u = self.sockets.get::<tcp::Socket>(up);
                let (open, failed) = (u.may_send(), u.state() == tcp::State::Closed);
                let c = self.sockets.get_mut::<tcp::Socket>(sess.client);
                if open {
                    let _ = c.send_slice(proxy::RESPONSE_OK);
                    sess.state = SessionState::Relay;
                    true
                } else if failed {
                    let _ = c.send_slice(proxy::RESPONSE_502.as_bytes());
                    c.close();
                    notes.push(format!(
                        "proxy: {}:{} unreachable (502)",
                        sess.target.0, sess.target.1
                    ));
                    sess.state = SessionState::Done;
                    true
                } else {
                    false
                }
            }
            SessionState::Relay => {
                let Some(up) = sess.upstream else {
                    sess.state = SessionState::Done;
                    return true;
                };
                // Bytes the client sent right behind its request head.
                if !sess.buf.is_empty() {
                    let u = self.sockets.get_mut::<tcp::Socket>(up);
                    if let Ok(n) = u.send_slice(&sess.buf) {
                        sess.buf.drain(..n);
                        progress |= n > 0;
                    }
                }
                if sess.buf.is_empty() {
                    progress |= self.pump(sess.client, up);
                }
                progress |= self.pump(up, sess.client);
                let done = |s: &tcp::Socket| {
                    matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait)
                };
                if done(self.sockets.get::<tcp::Socket>(sess.client))
                    && done(self.sockets.get::<tcp::Socket>(up))
                {
                    self.sockets.remove(sess.client);
                    self.sockets.remove(up);
                    sess.state = SessionState::Done;
                    progress = true;
                }
                progress
            }
            SessionState::Done => false,
        }
    }

    /// Moves what `from` received into `to`'s send buffer; passes the end of the stream on.
    fn pump(&mut self, from: SocketHandle, to: SocketHandle) -> bool {
        let mut progress = false;
        loop {
            let t = self.sockets.get::<tcp::Socket>(to);
            if !t.may_send() {
                break;
            }
            let room = (t.send_capacity() - t.send_queue()).min(self.scratch.len());
            let f = self.sockets.get_mut::<tcp::Socket>(from);
            if room == 0 || !f.can_recv() {
                break;
            }
            let n = f.recv_slice(&mut self.scratch[..room]).unwrap_or(0);
            if n == 0 {
                break;
            }
            let t = self.sockets.get_mut::<tcp::Socket>(to);
            let _ = t.send_slice(&self.scratch[..n]);
            progress = true;
        }
        let f = self.sockets.get::<tcp::Socket>(from);
        let eof = !f.may_recv() && !f.can_recv() && f.state() != tcp::State::SynReceived;
        let t = self.sockets.get_mut::<tcp::Socket>(to);
        if eof && t.may_send() {
            t.close();
            progress = true;
        }
        progress
    }
}
