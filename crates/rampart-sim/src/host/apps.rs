//! The transfer applications of a host: a bulk sender (optionally through an HTTP CONNECT
//! proxy) and a receiver that checks every byte (length and SHA-256).

use std::net::Ipv4Addr;
use std::time::Duration;

use aws_lc_rs::digest;
use rampart_crypto::Rng;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::wire::IpAddress;

use super::{tcp_socket_with, Host, CHUNK};

/// What happened to one transfer, shared by its sender and its receiver.
#[derive(Debug, Clone)]
pub struct TransferRecord {
    pub name: String,
    pub from: String,
    pub to: String,
    pub size: u64,
    pub started: Option<Duration>,
    pub sent_digest: Option<Vec<u8>>,
    pub received: u64,
    pub finished: Option<Duration>,
    /// Received byte count and SHA-256 equal the sent ones.
    pub intact: bool,
    pub failure: Option<String>,
    /// One of a group of connections (`count` in the scenario): no timeline line of its own.
    pub quiet: bool,
}

pub(super) enum App {
    Sender {
        transfer: usize,
        socket: SocketHandle,
        remote: (Ipv4Addr, u16),
        connected: bool,
        rng: Box<Rng>,
        generated: u64,
        pending: Vec<u8>,
        offset: usize,
        hash: Box<Option<digest::Context>>,
        closed: bool,
        /// Through an HTTP CONNECT proxy: the request still to send, then the reply head
        /// read so far; `None` once the tunnel is open (or without a proxy).
        proxy: Option<Box<ProxyClient>>,
    },
    Receiver {
        transfer: usize,
        socket: SocketHandle,
        hash: Box<Option<digest::Context>>,
        received: u64,
    },
}

/// A sender's side of an HTTP CONNECT handshake.
pub(super) struct ProxyClient {
    request: Option<Vec<u8>>,
    reply: Vec<u8>,
}

/// How a transfer reaches its receiver through an HTTP CONNECT proxy.
#[derive(Debug, Clone)]
pub struct ProxyHop {
    pub proxy: (Ipv4Addr, u16),
    pub credentials: Option<String>,
}

impl Host {
    /// Listens for `transfer` on `port`, with socket buffers of `buffer` bytes.
    pub fn add_receiver(&mut self, transfer: usize, port: u16, buffer: usize) {
        let mut s = tcp_socket_with(buffer);
        let _ = s.listen(port);
        let socket = self.sockets.add(s);
        self.apps.push(App::Receiver {
            transfer,
            socket,
            hash: Box::new(Some(digest::Context::new(&digest::SHA256))),
            received: 0,
        });
    }

    /// Connects to `remote` and sends the transfer's bytes (from `rng`), then closes.
    /// With `via`, it connects to the proxy and asks it for a tunnel to `remote` first.
    pub fn start_sender(
        &mut self,
        transfer: usize,
        remote: (Ipv4Addr, u16),
        via: Option<ProxyHop>,
        rng: Rng,
    ) {
        self.start_sender_with(transfer, remote, via, rng, super::TCP_BUFFER);
    }

    /// [`Host::start_sender`] with `buffer`-byte socket buffers.
    pub fn start_sender_with(
        &mut self,
        transfer: usize,
        remote: (Ipv4Addr, u16),
        via: Option<ProxyHop>,
        rng: Rng,
        buffer: usize,
    ) {
        let socket = self.sockets.add(tcp_socket_with(buffer));
        let port = self.local_port();
        let s = self.sockets.get_mut::<tcp::Socket>(socket);
        let first_hop = via.as_ref().map_or(remote, |v| v.proxy);
        let proxy = via.map(|v| {
            Box::new(ProxyClient {
                request: Some(crate::proxy::request(remote, v.credentials.as_deref())),
                reply: Vec::new(),
            })
        });
        let ep = (IpAddress::Ipv4(first_hop.0), first_hop.1);
        let _ = s.connect(self.iface.context(), ep, port);
        self.apps.push(App::Sender {
            transfer,
            socket,
            remote,
            connected: false,
            rng: Box::new(rng),
            generated: 0,
            pending: Vec::new(),
            offset: 0,
            hash: Box::new(Some(digest::Context::new(&digest::SHA256))),
            closed: false,
            proxy,
        });
    }

    /// The TCP state of this host's end of `transfer`, for reports on incomplete transfers.
    pub fn describe(&self, transfer: usize) -> Option<String> {
        self.apps.iter().find_map(|app| match app {
            App::Sender {
                transfer: t,
                socket,
                generated,
                ..
            } if *t == transfer => {
                let s = self.sockets.get::<tcp::Socket>(*socket);
                Some(format!(
                    "sender {} with {} bytes unacknowledged, {} generated",
                    s.state(),
                    s.send_queue(),
                    generated
                ))
            }
            App::Receiver {
                transfer: t,
                socket,
                ..
            } if *t == transfer => {
                let s = self.sockets.get::<tcp::Socket>(*socket);
                Some(format!(
                    "receiver {} with {} bytes unread",
                    s.state(),
                    s.recv_queue()
                ))
            }
            _ => None,
        })
    }

    pub(super) fn step_apps(
        &mut self,
        now: Duration,
        transfers: &mut [TransferRecord],
        notes: &mut Vec<String>,
    ) -> bool {
        let mut progress = false;
        for app in &mut self.apps {
            match app {
                App::Sender {
                    transfer,
                    socket,
                    remote,
                    connected,
                    rng,
                    generated,
                    pending,
                    offset,
                    hash,
                    closed,
                    proxy,
                } => {
                    let rec = &mut transfers[*transfer];
                    let s = self.sockets.get_mut::<tcp::Socket>(*socket);
                    if rec.failure.is_some() || rec.finished.is_some() {
                        continue;
                    }
                    if !*connected && s.may_send() {
                        *connected = true;
                        if rec.quiet {
                            continue;
                        }
                        notes.push(format!(
                            "transfer {}: connected to {}:{}",
                            rec.name, remote.0, remote.1
                        ));
                    }
                    if s.state() == tcp::State::Closed && !*closed {
                        rec.failure = Some("the sender's connection was reset".into());
                        notes.push(format!("transfer {}: connection reset", rec.name));
                        continue;
                    }
                    if let Some(pc) = proxy {
                        if let Some(req) = &pc.request {
                            if s.can_send() && s.send_capacity() - s.send_queue() >= req.len() {
                                let _ = s.send_slice(req);
                                pc.request = None;
                                progress = true;
                            }
                            continue;
                        }
                        while s.can_recv() && pc.reply.len() < crate::proxy::MAX_HEAD {
                            match s.recv(|b| {
                                // Only the head: the proxy sends nothing after it here.
                                let n = b.len().min(crate::proxy::MAX_HEAD - pc.reply.len());
                                pc.reply.extend_from_slice(&b[..n]);
                                (n, n)
                            }) {
                                Ok(0) | Err(_) => break,
                                Ok(_) => progress = true,
                            }
                        }
                        match crate::proxy::head_len(&pc.reply) {
                            Some(n) => {
                                let status = crate::proxy::status_line(&pc.reply[..n]);
                                if status.split(' ').nth(1) == Some("200") {
                                    notes.push(format!(
                                        "transfer {}: the proxy opened a tunnel to {}:{}",
                                        rec.name, remote.0, remote.1
                                    ));
                                    *proxy = None;
                                    progress = true;
                                } else {
                                    rec.failure = Some(format!("the proxy refused: {status}"));
                                    notes.push(format!(
                                        "transfer {}: the proxy refused: {status}",
                                        rec.name
                                    ));
                                    s.close();
                                    continue;
                                }
                            }
                            None if !s.may_recv() && *connected => {
                                rec.failure = Some("the proxy closed the connection".into());
                                continue;
                            }
                            None => continue,
                        }
                    }
                    while s.can_send() && !*closed {
                        if *offset == pending.len() {
                            let left = rec.size - *generated;
                            if left == 0 {
                                s.close();
                                *closed = true;
                                if let Some(h) = hash.take() {
                                    rec.sent_digest = Some(h.finish().as_ref().to_vec());
                                }
                                progress = true;
                                break;
                            }
                            let n = (left as usize).min(CHUNK);
                            pending.resize(n, 0);
                            rng.fill(pending);
                            if let Some(h) = hash.as_mut() {
                                h.update(pending);
                            }
                            *generated += n as u64;
                            *offset = 0;
                        }
                        match s.send_slice(&pending[*offset..]) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                *offset += n;
                                progress = true;
                            }
                        }
                    }
                }
                App::Receiver {
                    transfer,
                    socket,
                    hash,
                    received,
                } => {
                    let rec = &mut transfers[*transfer];
                    let s = self.sockets.get_mut::<tcp::Socket>(*socket);
                    if hash.is_none() {
                        continue;
                    }
                    while s.can_recv() {
                        let got = s.recv(|b| {
                            if let Some(h) = hash.as_mut() {
                                h.update(b);
                            }
                            (b.len(), b.len())
                        });
                        match got {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                *received += n as u64;
                                progress = true;
                            }
                        }
                    }
                    rec.received = *received;
                    // The transfer ends when the announced size has been read (the
                    // application's framing, as iperf's) or when the sender's FIN arrived and
                    // everything before it was read. The size alone is enough: a lost FIN
                    // that the stack is slow to retransmit does not make the bytes less whole.
                    let all_read = *received >= rec.size && rec.sent_digest.is_some();
                    let fin_read =
                        !s.may_recv() && s.state() != tcp::State::Listen && !s.can_recv();
                    if all_read || fin_read {
                        let state = s.state();
                        if all_read
                            || matches!(
                                state,
                                tcp::State::CloseWait
                                    | tcp::State::LastAck
                                    | tcp::State::Closed
                                    | tcp::State::TimeWait
                            )
                        {
                            let digest = hash.take().map(|h| h.finish().as_ref().to_vec());
                            s.close();
                            rec.finished = Some(now);
                            rec.intact = *received == rec.size
                                && digest.is_some()
                                && digest == rec.sent_digest;
                            if !rec.intact {
                                rec.failure = Some(format!(
                                    "received {} of {} bytes, checksum {}",
                                    received,
                                    rec.size,
                                    if digest == rec.sent_digest {
                                        "matches"
                                    } else {
                                        "differs"
                                    }
                                ));
                            }
                            progress = true;
                        }
                    }
                }
            }
        }
        progress
    }
}
