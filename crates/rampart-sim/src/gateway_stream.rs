//! The stream listeners of a remote-access gateway machine: RFC 9329 TCP
//! (`[remote_access.tcp]`) and Visitor Mode TLS (`[remote_access.visitor]`) on a smoltcp TCP
//! stack that shares the machine's addresses, as rampart-io's stream module does with tokio.
//!
//! To the engine a stream is a NAT-T path: each frame is handed to it as a datagram from the
//! stream's peer (`address:port` of the TCP connection: the client, its NAT or its proxy) to
//! `(local address, gateway.nat_t_port)`, and every datagram the engine sends to a peer address
//! that has a stream becomes one frame on it ([`StreamListeners::send`]).
//!
//! Visitor Mode routing: a TLS connection is Visitor Mode when the handshake settled on the
//! configured ALPN or its SNI is one of `server_names`; anything else is closed (the simulator
//! has no HTTPS server behind the port).
//!
//! Invariants: one listening socket per port at any time (a new one replaces it as soon as it
//! accepted); one stream per peer address (a newer one replaces the older, which is closed);
//! every stream that ends is logged once with its reason.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rampart_config::GatewayConfig;
use rampart_wire::tcp_encap::Role;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint};

use crate::host::{smol, tcp_socket, SimDevice};
use crate::stream::Pipe;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tcp,
    Tls,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Tls => "tls",
        }
    }
}

struct Listener {
    port: u16,
    kind: Kind,
    socket: SocketHandle,
}

struct GwStream {
    socket: SocketHandle,
    kind: Kind,
    remote: SocketAddr,
    /// What the engine sees the frames arrive on: (the address connected to, NAT-T port).
    local: SocketAddr,
    pipe: Pipe,
    /// Visitor Mode decided (always for TCP): frames flow.
    open: bool,
}

/// Visitor Mode's TLS settings.
struct Visitor {
    config: Arc<rustls::ServerConfig>,
    alpn: Vec<u8>,
    server_names: Vec<String>,
}

/// What a poll of the listeners produced.
#[derive(Debug, Default)]
pub struct Polled {
    /// IP packets the TCP stack sends.
    pub packets: Vec<Vec<u8>>,
    /// Frames read: (local, remote, datagram), in order.
    pub frames: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// Lines for the gateway's log.
    pub logs: Vec<String>,
}

pub struct StreamListeners {
    iface: Interface,
    device: SimDevice,
    sockets: SocketSet<'static>,
    listeners: Vec<Listener>,
    streams: Vec<GwStream>,
    visitor: Option<Visitor>,
    nat_t_port: u16,
    scratch: Vec<u8>,
}

/// Bytes read from a socket at a time.
const SCRATCH: usize = 16 * 1024;

impl StreamListeners {
    /// The listeners `config` asks for on a machine with `addrs`; `None` without
    /// `[remote_access]` stream transports. `Err` when the Visitor Mode certificate or key
    /// cannot be used.
    pub fn new(
        config: &GatewayConfig,
        addrs: &[(Ipv4Addr, u8)],
        mtu: usize,
        seed: u64,
    ) -> Result<Option<StreamListeners>, String> {
        let Some(ra) = &config.remote_access else {
            return Ok(None);
        };
        let mut ports = Vec::new();
        if let Some(t) = &ra.tcp {
            if let Some(a) = t.listen.first() {
                ports.push((a.port(), Kind::Tcp));
            }
        }
        let visitor = match &ra.visitor {
            Some(v) => {
                if let Some(a) = v.listen.first() {
                    ports.push((a.port(), Kind::Tls));
                }
                Some(Visitor {
                    config: server_config(&v.certificate, &v.key, &v.alpn)?,
                    alpn: v.alpn.as_bytes().to_vec(),
                    server_names: v.server_names.clone(),
                })
            }
            None => None,
        };
        if ports.is_empty() {
            return Ok(None);
        }
        let mut device = SimDevice::new(mtu);
        let mut cfg = Config::new(HardwareAddress::Ip);
        cfg.random_seed = seed;
        let mut iface = Interface::new(cfg, &mut device, smoltcp::time::Instant::ZERO);
        iface.update_ip_addrs(|a| {
            for (addr, prefix) in addrs {
                let _ = a.push(IpCidr::new(IpAddress::Ipv4(*addr), *prefix));
            }
        });
        // The medium is IP: the next hop is never resolved, the machine's routing table decides
        // where the packets go. Any default route makes every destination reachable.
        if let Some((first, _)) = addrs.first() {
            let _ = iface.routes_mut().add_default_ipv4_route(*first);
        }
        let mut l = StreamListeners {
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
            listeners: Vec::new(),
            streams: Vec::new(),
            visitor,
            nat_t_port: config.gateway.nat_t_port,
            scratch: vec![0u8; SCRATCH],
        };
        for (port, kind) in ports {
            let socket = l.listen(port);
            l.listeners.push(Listener { port, kind, socket });
        }
        Ok(Some(l))
    }

    fn listen(&mut self, port: u16) -> SocketHandle {
        let mut s = tcp_socket();
        let _ = s.listen(port);
        self.sockets.add(s)
    }

    /// A virtual address the machine claimed (`present`) or released: the listeners accept
    /// connections to it while it is claimed (a cluster's VIP on the active member).
    pub fn set_address(&mut self, addr: Ipv4Addr, prefix: u8, present: bool) {
        let cidr = IpCidr::new(IpAddress::Ipv4(addr), prefix);
        self.iface.update_ip_addrs(|a| {
            a.retain(|c| c.address() != cidr.address());
            if present {
                let _ = a.push(cidr);
            }
        });
    }

    /// A TCP packet for this machine.
    pub fn receive(&mut self, packet: Vec<u8>) {
        self.device.rx.push_back(packet);
    }

    /// Queues `datagram` as a frame on the stream to `remote`; `false` when there is none.
    pub fn send(&mut self, remote: &SocketAddr, datagram: &[u8]) -> bool {
        match self
            .streams
            .iter_mut()
            .find(|s| s.open && s.remote == *remote)
        {
            Some(s) => {
                s.pipe.send_datagram(datagram);
                true
            }
            None => false,
        }
    }

    /// When the TCP stack needs to run next.
    pub fn poll_at(&mut self, now: Duration) -> Option<Duration> {
        self.iface
            .poll_at(smol(now), &self.sockets)
            .map(|t| Duration::from_micros(t.total_micros().max(0) as u64))
    }

    /// Runs the stack: accepts, reads frames, writes what was queued, ends what ended.
    pub fn poll(&mut self, now: Duration) -> Polled {
        let mut out = Polled::default();
        let ts = smol(now);
        for _ in 0..64 {
            self.iface.poll(ts, &mut self.device, &mut self.sockets);
            let progress = self.accept(&mut out) | self.step_streams(&mut out);
            if !progress && self.device.rx.is_empty() {
                self.iface.poll(ts, &mut self.device, &mut self.sockets);
                break;
            }
        }
        out.packets = std::mem::take(&mut self.device.tx);
        out
    }

    fn accept(&mut self, out: &mut Polled) -> bool {
        let mut progress = false;
        for i in 0..self.listeners.len() {
            let handle = self.listeners[i].socket;
            let s = self.sockets.get::<tcp::Socket>(handle);
            if s.state() == tcp::State::Listen {
                continue;
            }
            let (Some(remote), Some(local)) = (s.remote_endpoint(), s.local_endpoint()) else {
                continue;
            };
            let port = self.listeners[i].port;
            let kind = self.listeners[i].kind;
            self.listeners[i].socket = self.listen(port);
            let (remote, local) = (v4(remote), v4(local));
            let tls = match (kind, &self.visitor) {
                (Kind::Tls, Some(v)) => match rustls::ServerConnection::new(v.config.clone()) {
                    Ok(c) => Some(rustls::Connection::Server(c)),
                    Err(e) => {
                        out.logs.push(format!("tls stream from {remote}: TLS: {e}"));
                        self.sockets.get_mut::<tcp::Socket>(handle).abort();
                        continue;
                    }
                },
                _ => None,
            };
            let open = kind == Kind::Tcp;
            if open {
                self.opened(remote, out);
            }
            self.streams.push(GwStream {
                socket: handle,
                kind,
                remote,
                local: SocketAddr::new(local.ip(), self.nat_t_port),
                pipe: Pipe::new(tls, Role::Responder),
                open,
            });
            if open {
                out.logs
                    .push(format!("{} stream from {remote} open", kind.name()));
            }
            progress = true;
        }
        progress
    }

    /// A stream from `remote` opens: an older one from the same address is replaced.
    fn opened(&mut self, remote: SocketAddr, out: &mut Polled) {
        for s in self
            .streams
            .iter_mut()
            .filter(|s| s.open && s.remote == remote)
        {
            s.open = false;
            self.sockets.get_mut::<tcp::Socket>(s.socket).abort();
            out.logs.push(format!(
                "{} stream from {remote}: the previous stream is replaced",
                s.kind.name()
            ));
        }
    }

    fn step_streams(&mut self, out: &mut Polled) -> bool {
        let mut progress = false;
        let mut ended = Vec::new();
        for i in 0..self.streams.len() {
            let st = &mut self.streams[i];
            let s = self.sockets.get_mut::<tcp::Socket>(st.socket);
            let mut datagrams = Vec::new();
            progress |= st.pipe.pump_in(s, &mut self.scratch, &mut datagrams);
            if !st.open && !st.pipe.handshaking() && st.pipe.failure().is_none() {
                if let (Some(v), Some(c)) = (&self.visitor, st.pipe.tls()) {
                    let alpn_ok = c.alpn_protocol() == Some(&v.alpn[..]);
                    let sni = match c {
                        rustls::Connection::Server(sc) => sc.server_name(),
                        rustls::Connection::Client(_) => None,
                    };
                    let name_ok = sni.is_some_and(|n| {
                        let n = n.strip_suffix('.').unwrap_or(n);
                        v.server_names
                            .iter()
                            .any(|m| m.strip_suffix('.').unwrap_or(m).eq_ignore_ascii_case(n))
                    });
                    if alpn_ok || name_ok {
                        let remote = st.remote;
                        let kind = st.kind;
                        self.opened(remote, out);
                        let st = &mut self.streams[i];
                        st.open = true;
                        out.logs.push(format!(
                            "{} stream from {remote} open (Visitor Mode by {})",
                            kind.name(),
                            if alpn_ok { "ALPN" } else { "server name" }
                        ));
                        progress = true;
                    } else {
                        out.logs.push(format!(
                            "tls stream from {}: neither the Visitor Mode ALPN nor one of its server names, and no HTTPS server behind the port: closed",
                            st.remote
                        ));
                        s.abort();
                        ended.push(i);
                        continue;
                    }
                }
            }
            let st = &mut self.streams[i];
            let s = self.sockets.get_mut::<tcp::Socket>(st.socket);
            if st.open {
                for d in datagrams {
                    out.frames.push((st.local, st.remote, d));
                }
            }
            progress |= st.pipe.pump_out(s);
            let reason = if let Some(f) = st.pipe.failure() {
                s.abort();
                Some(f.to_string())
            } else if !s.may_recv() && !s.can_recv() && s.state() != tcp::State::SynReceived {
                s.close();
                Some("closed by the peer".to_string())
            } else if s.state() == tcp::State::Closed {
                Some("reset".to_string())
            } else {
                None
            };
            if let Some(reason) = reason {
                if st.open {
                    out.logs.push(format!(
                        "{} stream {} closed: {reason}",
                        st.kind.name(),
                        st.remote
                    ));
                } else {
                    // A Visitor Mode handshake that failed here (ALPN, not TLS) or that the
                    // client gave up (it did not accept our certificate).
                    out.logs.push(format!(
                        "{} stream from {} ended in the TLS handshake: {reason}",
                        st.kind.name(),
                        st.remote
                    ));
                }
                ended.push(i);
            }
        }
        for i in ended.into_iter().rev() {
            let st = self.streams.remove(i);
            // A closed socket is freed now; one still closing keeps its handle until the stack
            // is dropped (a handful per run).
            if self.sockets.get::<tcp::Socket>(st.socket).state() == tcp::State::Closed {
                self.sockets.remove(st.socket);
            }
            progress = true;
        }
        progress
    }
}

fn v4(ep: IpEndpoint) -> SocketAddr {
    let ip = match ep.addr {
        IpAddress::Ipv4(a) => IpAddr::V4(a),
    };
    SocketAddr::new(ip, ep.port)
}

/// The Visitor Mode TLS server configuration, as rampart-io builds it: the certificate chain
/// and key from PEM files, TLS 1.2 and 1.3, the ALPN offered.
fn server_config(
    certificate: &std::path::Path,
    key: &std::path::Path,
    alpn: &str,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate)
        .map_err(|e| format!("Visitor Mode TLS: {}: {e}", certificate.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("Visitor Mode TLS: {}: {e}", certificate.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("Visitor Mode TLS: {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("Visitor Mode TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("Visitor Mode TLS: {e}"))?;
    server.alpn_protocols = vec![alpn.as_bytes().to_vec()];
    // No session tickets: nothing resumes in the lab, and fewer records keep runs short.
    server.send_tls13_tickets = 0;
    Ok(Arc::new(server))
}
