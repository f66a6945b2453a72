//! End hosts: a real TCP/IP stack (smoltcp) on a simulated device, and the applications that
//! move data through it (a bulk sender, a receiver that checks every byte).

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::Duration;

use aws_lc_rs::digest;
use rampart_crypto::Rng;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::tcp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

/// Socket buffers of every TCP connection: a 64 KiB window, as without window scaling.
const TCP_BUFFER: usize = 64 * 1024;
/// Bytes generated per refill of a sender.
const CHUNK: usize = 16 * 1024;

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
}

/// The simulated network device under smoltcp: packets in, packets out.
struct SimDevice {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
    mtu: usize,
}

struct SimRx(Vec<u8>);
struct SimTx<'a>(&'a mut Vec<Vec<u8>>);

impl RxToken for SimRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for SimTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut p = vec![0u8; len];
        let r = f(&mut p);
        self.0.push(p);
        r
    }
}

impl Device for SimDevice {
    type RxToken<'a> = SimRx;
    type TxToken<'a> = SimTx<'a>;

    fn receive(&mut self, _: SmolInstant) -> Option<(SimRx, SimTx<'_>)> {
        let p = self.rx.pop_front()?;
        Some((SimRx(p), SimTx(&mut self.tx)))
    }

    fn transmit(&mut self, _: SmolInstant) -> Option<SimTx<'_>> {
        Some(SimTx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps
    }
}

enum App {
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
struct ProxyClient {
    request: Option<Vec<u8>>,
    reply: Vec<u8>,
}

/// How a transfer reaches its receiver through an HTTP CONNECT proxy.
#[derive(Debug, Clone)]
pub struct ProxyHop {
    pub proxy: (Ipv4Addr, u16),
    pub credentials: Option<String>,
}

/// The HTTP CONNECT proxy service of a proxy node.
struct ProxyService {
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

/// A host: one smoltcp interface with one address and a default route.
pub struct Host {
    iface: Interface,
    device: SimDevice,
    sockets: SocketSet<'static>,
    apps: Vec<App>,
    next_port: u16,
    proxy: Option<ProxyService>,
    /// Relay buffer of the proxy.
    scratch: Vec<u8>,
}

fn smol(t: Duration) -> SmolInstant {
    SmolInstant::from_micros(t.as_micros() as i64)
}

impl Host {
    pub fn new(
        addr: Ipv4Addr,
        prefix: u8,
        gateway: Option<Ipv4Addr>,
        mtu: usize,
        seed: u64,
    ) -> Host {
        let mut device = SimDevice {
            rx: VecDeque::new(),
            tx: Vec::new(),
            mtu,
        };
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut device, SmolInstant::ZERO);
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(addr), prefix));
        });
        if let Some(gw) = gateway {
            let _ = iface.routes_mut().add_default_ipv4_route(gw);
        }
        Host {
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
            apps: Vec::new(),
            next_port: 40000 + (seed % 1000) as u16,
            proxy: None,
            scratch: Vec::new(),
        }
    }

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

    fn local_port(&mut self) -> u16 {
        let port = self.next_port;
        self.next_port = self.next_port.wrapping_add(1).max(40000);
        port
    }

    fn tcp_socket() -> tcp::Socket<'static> {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0u8; TCP_BUFFER]),
            tcp::SocketBuffer::new(vec![0u8; TCP_BUFFER]),
        );
        s.set_congestion_control(tcp::CongestionControl::Reno);
        s.set_nagle_enabled(false);
        // smoltcp has no persist timer: after a retransmission timeout against a closed window
        // it waits for input, and a lost window update would stall the connection forever. A
        // 1 s keep-alive probes the window the way a persist timer would.
        s.set_keep_alive(Some(smoltcp::time::Duration::from_secs(1)));
        s
    }

    /// Listens for `transfer` on `port`.
    pub fn add_receiver(&mut self, transfer: usize, port: u16) {
        let mut s = Self::tcp_socket();
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
        let socket = self.sockets.add(Self::tcp_socket());
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

    /// A packet arrives from the network.
    pub fn receive(&mut self, packet: Vec<u8>) {
        self.device.rx.push_back(packet);
    }

    /// Runs the stack and the applications at `now`; returns the packets to send.
    pub fn run(
        &mut self,
        now: Duration,
        transfers: &mut [TransferRecord],
        notes: &mut Vec<String>,
    ) -> Vec<Vec<u8>> {
        let ts = smol(now);
        for _ in 0..64 {
            self.iface.poll(ts, &mut self.device, &mut self.sockets);
            let progress = self.step_apps(now, transfers, notes) | self.step_proxy(notes);
            if !progress && self.device.rx.is_empty() {
                self.iface.poll(ts, &mut self.device, &mut self.sockets);
                break;
            }
        }
        std::mem::take(&mut self.device.tx)
    }

    /// When the stack next needs to run.
    pub fn poll_at(&mut self, now: Duration) -> Option<Duration> {
        self.iface
            .poll_at(smol(now), &self.sockets)
            .map(|t| Duration::from_micros(t.total_micros().max(0) as u64))
    }

    /// The HTTP CONNECT proxy: accepts connections, answers requests, relays bytes.
    fn step_proxy(&mut self, notes: &mut Vec<String>) -> bool {
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

    fn step_apps(
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
