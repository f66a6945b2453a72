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
    },
    Receiver {
        transfer: usize,
        socket: SocketHandle,
        hash: Box<Option<digest::Context>>,
        received: u64,
    },
}

/// A host: one smoltcp interface with one address and a default route.
pub struct Host {
    iface: Interface,
    device: SimDevice,
    sockets: SocketSet<'static>,
    apps: Vec<App>,
    next_port: u16,
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
        }
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
    pub fn start_sender(&mut self, transfer: usize, remote: (Ipv4Addr, u16), rng: Rng) {
        let socket = self.sockets.add(Self::tcp_socket());
        let port = self.next_port;
        self.next_port = self.next_port.wrapping_add(1).max(40000);
        let s = self.sockets.get_mut::<tcp::Socket>(socket);
        let ep = (IpAddress::Ipv4(remote.0), remote.1);
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
            let progress = self.step_apps(now, transfers, notes);
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
                    // The sender's FIN arrived and everything before it was read.
                    if !s.may_recv() && s.state() != tcp::State::Listen && !s.can_recv() {
                        let state = s.state();
                        if matches!(
                            state,
                            tcp::State::CloseWait
                                | tcp::State::LastAck
                                | tcp::State::Closed
                                | tcp::State::TimeWait
                        ) {
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
