//! The event loop: one task that owns the node and every device, waits on all of them at once,
//! feeds what arrives to the node and carries out what the node decides.
//!
//! Invariants:
//! - Packets live in buffers allocated at start ([`crate::datapath::Buffers`]); a data-plane
//!   packet is received, processed and sent in batches without any allocation.
//! - After every input the node's output queue is drained, so control traffic and route changes
//!   are never left waiting for the next packet.
//! - Routes added through [`Routes`] and virtual addresses claimed through
//!   [`crate::vip::Vips`] are removed when the loop ends, whatever the reason.
//! - RFC 9329 streams ([`crate::stream`]) are a NAT-T path to the node: their frames are
//!   handed over like UDP receives, and a send to a peer address that has a stream becomes a
//!   frame on it; the loop only queues (never waits on a stream), and closes every stream
//!   when it ends.

use std::collections::BTreeSet;
use std::future::{poll_fn, Future};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rampart_config::GatewayConfig;
use rampart_node::{FullSyncProgress, LogLevel, Node, Output, ReloadCounters, ReloadReport};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::Signal;
use tokio::sync::mpsc;

use crate::cluster_io::{ClusterIo, SyncEvent};
use crate::linkmon::{LinkChange, LinkMonitor};

use crate::datapath::{self, Buffers, ReadResult};
use crate::raw_esp::RawEspSocket;
use crate::routes::{Injected, Routes};
use crate::status_server::{StatusQuery, StatusRequests, StatusServer};
use crate::stream::listener::{self, Listening};
use crate::stream::visitor::Router;
use crate::stream::{BoxStream, StreamEvent, StreamInput, Streams, Transport};
use crate::tun::Tun;
use crate::udp::UdpEndpoint;
use crate::IoError;

/// Reads (each a batch) taken from one ready source before the loop looks at the others again.
const READS_PER_WAKE: usize = 16;
/// How often a repeated UDP send failure to one destination is logged again.
const SEND_FAILURE_LOG_EVERY: Duration = Duration::from_secs(10);
/// Most connections one `conn list` answer carries (the document says when it was cut).
const CONN_LIST_LIMIT: usize = 10_000;

/// Everything the gateway does I/O on.
pub struct Io {
    pub tun: Tun,
    /// One socket per distinct (local address, port) for the IKE and NAT-T ports.
    pub udp: Vec<UdpEndpoint>,
    /// One raw ESP socket per distinct local address.
    pub raw: Vec<RawEspSocket>,
    pub routes: Routes,
    pub status: StatusServer,
    pub status_requests: StatusRequests,
    /// The file the gateway was started from: SIGHUP reads it again. `None`: no SIGHUP reload.
    pub config_path: Option<PathBuf>,
    /// SIGHUP, when the shell installed a handler.
    pub hangup: Option<Signal>,
    /// Reloads applied and refused, shown in `rampart status`.
    pub reloads: ReloadCounters,
    /// Virtual addresses, monitored links and full sync of a cluster member
    /// ([`Io::open_cluster`]); `None` without `[cluster]`.
    pub cluster: Option<ClusterIo>,
    /// UDP send failures per (local, remote) being summarised: when the last line was logged
    /// and how many failures since.
    pub send_failures:
        std::sync::Mutex<std::collections::BTreeMap<(SocketAddr, SocketAddr), (Instant, u64)>>,
    /// A remote-access client's shell: where `Output::VirtualAddress` and
    /// `Output::VirtualAddressLost` go (it sets the TUN address, routes and DNS). `None` on a
    /// gateway.
    pub client_outputs: Option<tokio::sync::mpsc::UnboundedSender<Output>>,
    /// RFC 9329 streams (TCP, Visitor Mode, a client's attached stream): the table the sends
    /// consult and the counters of `transports` in `rampart status`.
    pub streams: Streams,
    /// A remote-access client's shell: told when an attached stream ends (it reconnects).
    /// `None` on a gateway.
    pub stream_events: Option<tokio::sync::mpsc::UnboundedSender<StreamEvent>>,
    /// A remote-access client's shell: its requests to this loop (a move to a new address,
    /// see [`crate::client_command`]). `None` on a gateway.
    pub client_commands:
        Option<tokio::sync::mpsc::UnboundedReceiver<crate::client_command::ClientCommand>>,
    /// Set by [`Io::forbid_fragmentation`]: sockets opened later (a MOBIKE move to a new
    /// address) send with DF too.
    pub no_fragmentation: bool,
}

impl Io {
    /// Opens the TUN device, the sockets for every distinct peer `local_address`, the route
    /// handle and the status socket. Must be called inside a tokio runtime.
    pub fn open(config: &GatewayConfig) -> Result<Io, IoError> {
        let tun = Tun::open(
            &config.tunnel.device,
            config.tunnel.mtu,
            config.tunnel.offload,
        )?;
        let routes = Routes::open(tun.name(), tun.index())?;
        let (status, status_requests) = StatusServer::bind(&config.gateway.status_socket)?;
        let mut io = Io {
            tun,
            udp: Vec::new(),
            raw: Vec::new(),
            routes,
            status,
            status_requests,
            config_path: None,
            hangup: None,
            reloads: ReloadCounters::default(),
            cluster: None,
            send_failures: Default::default(),
            client_outputs: None,
            streams: Streams::new(),
            stream_events: None,
            client_commands: None,
            no_fragmentation: false,
        };
        io.open_sockets(config)?;
        Ok(io)
    }

    /// A remote-access client: every UDP and raw ESP socket sends with DF and ignores the
    /// kernel's learned path MTU (the node finds the path MTU itself: `rampart_node::pmtu`).
    /// A socket that refuses is logged and keeps the gateway's setting (DF clear).
    pub fn forbid_fragmentation(&mut self) {
        self.no_fragmentation = true;
        for u in &self.udp {
            if let Err(e) = u.forbid_fragmentation() {
                tracing::warn!("UDP {}: cannot set DF (IP_PMTUDISC_PROBE): {e}", u.local());
            }
        }
        for r in &self.raw {
            if let Err(e) = r.forbid_fragmentation() {
                tracing::warn!(
                    "raw ESP {}: cannot set DF (IP_PMTUDISC_PROBE): {e}",
                    r.local()
                );
            }
        }
    }

    /// Binds the stream listeners of `[remote_access]` (nothing without it): RFC 9329 TCP on
    /// `tcp.listen`, Visitor Mode on `visitor.listen`. An address that cannot be bound is
    /// logged at ERROR (for Visitor Mode exactly `Visitor Mode server failed to bind to
    /// ADDR:PORT (either the port is already taken or the address does not exist)`), counted
    /// in `bind_failures` and listed in the result; the gateway runs on with the rest. Fails
    /// only when the Visitor Mode certificate or key cannot be loaded. Must be called inside
    /// a tokio runtime; the listeners end with this `Io`.
    pub fn open_remote_access(&mut self, config: &GatewayConfig) -> Result<Listening, IoError> {
        let mut listening = Listening::default();
        let Some(ra) = &config.remote_access else {
            return Ok(listening);
        };
        let port = config.gateway.nat_t_port;
        self.streams
            .set_idle_timeouts(Some(crate::stream::IdleTimeouts {
                first_frame: ra.stream_setup_timeout,
                idle: ra.stream_idle_timeout,
            }));
        if let Some(tcp) = &ra.tcp {
            listener::start(
                &self.streams,
                Transport::Tcp,
                &tcp.listen,
                port,
                None,
                &mut listening,
            );
        }
        if let Some(visitor) = &ra.visitor {
            let router = Router::new(visitor).map_err(|e| IoError::Visitor {
                message: e.to_string(),
            })?;
            listener::start(
                &self.streams,
                Transport::Tls,
                &visitor.listen,
                port,
                Some(std::sync::Arc::new(router)),
                &mut listening,
            );
        }
        Ok(listening)
    }

    /// Attaches a stream a remote-access client connected (TCP, TLS, through a proxy; the
    /// connector already wrote `IKETCP`): frames read from it reach the node as datagrams
    /// from `remote` to `local`, and every datagram the node sends to `remote` becomes a
    /// frame on it. When it ends, [`StreamEvent::Closed`] goes to `stream_events`. A stream
    /// attached earlier to `remote` is closed. Must be called inside a tokio runtime.
    pub fn attach_stream(&mut self, local: SocketAddr, remote: SocketAddr, stream: BoxStream) {
        self.streams.attach(local, remote, stream);
    }

    /// Opens the cluster I/O of `[cluster]` (nothing without it): the virtual-address handle,
    /// the link monitor and the full-sync listener. The sync UDP socket is opened with the
    /// others ([`Io::open_sockets`]).
    pub async fn open_cluster(&mut self, config: &GatewayConfig) -> Result<(), IoError> {
        if let Some(cluster) = &config.cluster {
            self.cluster = Some(ClusterIo::open(cluster).await?);
        }
        Ok(())
    }

    /// Opens the IKE, NAT-T and raw ESP sockets of every peer `local_address` that has none
    /// yet (at start, and for peers a reload adds), and the cluster sync sockets (one per sync
    /// link; datagrams from each go to the node with that link's local address). All or nothing:
    /// on error the sockets opened by this call are closed again and the error names the
    /// address. A cluster's virtual addresses are bound with `IP_FREEBIND`: a standby member
    /// opens them before it owns them.
    pub fn open_sockets(&mut self, config: &GatewayConfig) -> Result<(), IoError> {
        let virtual_ips = crate::cluster_io::virtual_ips(config.cluster.as_ref());
        let have: BTreeSet<IpAddr> = self.raw.iter().map(|r| r.local()).collect();
        let locals: BTreeSet<IpAddr> = config
            .peers
            .iter()
            .map(|p| p.local_address)
            .filter(|a| !have.contains(a))
            .collect();
        let mut udp = Vec::new();
        let mut raw = Vec::new();
        for &local in &locals {
            let freebind = virtual_ips.contains(&local);
            for port in [config.gateway.ike_port, config.gateway.nat_t_port] {
                let addr = SocketAddr::new(local, port);
                udp.push(if freebind {
                    UdpEndpoint::bind_freebind(addr)?
                } else {
                    UdpEndpoint::bind(addr)?
                });
            }
            raw.push(if freebind {
                RawEspSocket::open_freebind(local)?
            } else {
                RawEspSocket::open(local)?
            });
        }
        if let Some(cluster) = &config.cluster {
            // One socket per sync link; an extra link's network may come up later.
            let me = cluster.me();
            if self.udp_for(me.sync_address).is_none() {
                udp.push(UdpEndpoint::bind(me.sync_address)?);
            }
            for &extra in &me.extra_sync_addresses {
                if self.udp_for(extra).is_none() {
                    udp.push(UdpEndpoint::bind_freebind(extra)?);
                }
            }
        }
        self.udp.extend(udp);
        self.raw.extend(raw);
        Ok(())
    }

    /// Binds the Multiple Entry Points probe sockets the node names that are not bound yet
    /// (at start and after a reload). A socket that cannot be bound is a warning, not an
    /// error: the gateway runs on without probes on that address.
    pub fn open_probe_sockets(&mut self, wanted: &[SocketAddr]) {
        for &addr in wanted {
            if self.udp_for(addr).is_some() {
                continue;
            }
            match UdpEndpoint::bind(addr) {
                Ok(socket) => {
                    tracing::info!("MEP probe socket bound on {addr}");
                    self.udp.push(socket);
                }
                Err(e) => tracing::warn!(
                    "MEP probe socket {addr} cannot be bound ({e}); no probes are sent or answered on this address"
                ),
            }
        }
    }

    pub(crate) fn udp_for(&self, local: SocketAddr) -> Option<&UdpEndpoint> {
        self.udp.iter().find(|s| s.local() == local)
    }

    /// Sends one datagram from the socket bound to `local`; a failure is logged, not returned
    /// (a lost datagram is what UDP allows, and IKE retransmits).
    /// A remote with a stream ([`crate::stream`]) gets the datagram as one frame instead.
    pub(crate) async fn send_udp(&self, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        if self.streams.send(remote, data) {
            return;
        }
        match self.udp_for(local) {
            Some(socket) => {
                if let Err(e) = socket.send_to(data, remote).await {
                    // A dead neighbour (a cluster member's heartbeats every 100 ms) would log
                    // the same failure ten times a second: once, then a summary every 10 s.
                    let now = Instant::now();
                    let mut seen = self.send_failures.lock().unwrap_or_else(|p| p.into_inner());
                    let entry = seen.entry((local, remote)).or_insert((now, 0));
                    if entry.1 == 0 {
                        tracing::warn!("UDP {local} -> {remote}: send failed: {e}");
                        *entry = (now, 1);
                    } else if now.duration_since(entry.0) >= SEND_FAILURE_LOG_EVERY {
                        tracing::warn!(
                            "UDP {local} -> {remote}: send failed: {e} ({} failures in the last {} s)",
                            entry.1,
                            SEND_FAILURE_LOG_EVERY.as_secs()
                        );
                        *entry = (now, 1);
                    } else {
                        entry.1 += 1;
                    }
                    if seen.len() > 4096 {
                        seen.clear();
                    }
                }
            }
            None => tracing::warn!("no UDP socket is bound to {local}; datagram not sent"),
        }
    }

    /// Sends one ESP packet from the raw socket bound to `local`; a failure is logged.
    pub(crate) async fn send_raw_esp(&self, local: IpAddr, remote: IpAddr, packet: &[u8]) {
        match self.raw_for(local) {
            Some(socket) => {
                if let Err(e) = socket.send_to(packet, remote).await {
                    tracing::debug!("ESP {local} -> {remote}: send failed: {e}");
                }
            }
            None => tracing::warn!("no raw ESP socket is bound to {local}; packet not sent"),
        }
    }

    pub(crate) fn raw_for(&self, local: IpAddr) -> Option<&RawEspSocket> {
        self.raw.iter().find(|s| s.local() == local)
    }
}

/// A socket that is ready: its index (UDP sockets first, then raw) and whether its error
/// queue (UDP only) has entries.
#[derive(Debug, Clone, Copy)]
struct ReadySocket {
    index: usize,
    errors: bool,
}

/// Polls every UDP and raw socket for readability, and every UDP socket's error queue,
/// starting at `start` so that a busy socket cannot starve the others.
fn poll_sockets(
    udp: &[UdpEndpoint],
    raw: &[RawEspSocket],
    cx: &mut Context<'_>,
    start: usize,
) -> Poll<ReadySocket> {
    let count = udp.len() + raw.len();
    for k in 0..count {
        let index = (start + k) % count;
        let (readable, errors) = match udp.get(index) {
            Some(s) => (
                s.poll_recv_ready(cx).is_ready(),
                s.poll_error_ready(cx).is_ready(),
            ),
            None => (
                raw.get(index - udp.len())
                    .is_some_and(|s| s.poll_recv_ready(cx).is_ready()),
                false,
            ),
        };
        if readable || errors {
            return Poll::Ready(ReadySocket { index, errors });
        }
    }
    Poll::Pending
}

enum Event {
    Shutdown,
    Hangup,
    Timer,
    Tun(io::Result<()>),
    Socket(ReadySocket),
    StatusQuery(StatusQuery),
    StatusClient(io::Result<()>),
    Sync(SyncEvent),
    SyncClient(io::Result<(TcpStream, SocketAddr)>),
    Link(LinkChange),
    Stream(StreamInput),
    Client(crate::client_command::ClientCommand),
}

/// Drives `node` with `io` until `shutdown` completes or a device fails, then removes the routes
/// this loop installed.
pub async fn run<N: Node>(
    node: &mut N,
    io: &mut Io,
    shutdown: impl Future<Output = ()>,
) -> Result<(), IoError> {
    let result = event_loop(node, io, shutdown).await;
    io.streams.close_all(STREAM_FLUSH).await;
    io.routes.remove_all().await;
    if let Some(cluster) = io.cluster.as_mut() {
        cluster.shutdown().await;
    }
    result
}

/// How long closing the streams at the end waits for their writers to put out what was
/// queued (a client's goodbye Deletes); bounds a peer that stopped reading.
const STREAM_FLUSH: Duration = Duration::from_millis(500);

async fn event_loop<N: Node>(
    node: &mut N,
    io: &mut Io,
    shutdown: impl Future<Output = ()>,
) -> Result<(), IoError> {
    let mut buffers = Buffers::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let timer = tokio::time::sleep(Duration::from_secs(3600));
    let mut timer = std::pin::pin!(timer);
    let mut next_socket = 0usize;

    io.open_probe_sockets(&node.probe_sockets());
    // The node may have queued work at creation (routes, first IKE messages).
    drain_outputs(node, io).await;
    loop {
        let deadline = node.poll_timeout();
        if let Some(deadline) = deadline {
            timer
                .as_mut()
                .reset(tokio::time::Instant::from_std(deadline));
        }
        let (sync_events, sync_listener, links) = match io.cluster.as_mut() {
            Some(c) => (Some(&mut c.events), Some(&c.listener), c.links.as_mut()),
            None => (None, None, None),
        };
        let event = tokio::select! {
            () = &mut shutdown => Event::Shutdown,
            () = &mut timer, if deadline.is_some() => Event::Timer,
            r = io.tun.readable() => Event::Tun(r),
            i = poll_fn(|cx| poll_sockets(&io.udp, &io.raw, cx, next_socket)) => Event::Socket(i),
            Some(q) = io.status_requests.recv() => Event::StatusQuery(q),
            r = io.status.accept() => Event::StatusClient(r),
            Some(()) = hangup(&mut io.hangup) => Event::Hangup,
            Some(e) = recv_opt(sync_events) => Event::Sync(e),
            r = accept_opt(sync_listener) => Event::SyncClient(r),
            Some(c) = link_opt(links) => Event::Link(c),
            Some(s) = io.streams.recv() => Event::Stream(s),
            Some(c) = client_command_opt(io.client_commands.as_mut()) => Event::Client(c),
        };
        match event {
            Event::Shutdown => {
                tracing::info!("shutting down");
                if io.client_outputs.is_some() {
                    // A remote-access client says goodbye: its gateway frees the lease now.
                    // The Deletes are sent on UDP here and written to streams when `run`
                    // closes them.
                    node.close_sas(Instant::now());
                    drain_outputs(node, io).await;
                }
                return Ok(());
            }
            Event::Hangup => {
                if let Some(path) = io.config_path.clone() {
                    tracing::info!("SIGHUP: reloading {}", path.display());
                    let _ = reload(node, io, &path).await;
                }
            }
            Event::Timer => {
                // Heartbeats that already arrived count before the timers run: a member whose
                // loop was busy for longer than the dead time must not declare a peer dead
                // whose heartbeats are waiting in the socket buffer.
                let sync: Vec<usize> = io.cluster.as_ref().map_or_else(Vec::new, |c| {
                    c.sync_addresses
                        .iter()
                        .filter_map(|&a| io.udp.iter().position(|s| s.local() == a))
                        .collect()
                });
                for i in sync {
                    for _ in 0..READS_PER_WAKE {
                        if let ReadResult::Empty =
                            datapath::udp_once(node, io, i, &mut buffers).await
                        {
                            break;
                        }
                    }
                }
                node.handle_timeout(Instant::now());
                drain_outputs(node, io).await;
            }
            Event::Tun(r) => {
                r.map_err(|source| IoError::Runtime {
                    what: "waiting on the TUN device",
                    source,
                })?;
                for _ in 0..READS_PER_WAKE {
                    match datapath::tun_once(node, io, &mut buffers).await {
                        Ok(ReadResult::More) => {}
                        Ok(ReadResult::Empty) => break,
                        Err(source) => {
                            return Err(IoError::Runtime {
                                what: "reading from the TUN device",
                                source,
                            })
                        }
                    }
                }
            }
            Event::Socket(ReadySocket { index: i, errors }) => {
                next_socket = i + 1;
                if errors && i < io.udp.len() {
                    datapath::udp_errors(node, io, i, &mut buffers).await;
                }
                for _ in 0..READS_PER_WAKE {
                    let read = if i < io.udp.len() {
                        datapath::udp_once(node, io, i, &mut buffers).await
                    } else {
                        datapath::raw_once(node, io, i - io.udp.len(), &mut buffers).await
                    };
                    if let ReadResult::Empty = read {
                        break;
                    }
                }
            }
            Event::StatusQuery(q) => {
                use crate::status_server::StatusRequest;
                let now = Instant::now();
                let document = match q.request {
                    StatusRequest::Status => {
                        let mut status = node.status(now);
                        status.batching = buffers.counters.clone();
                        status.batching.raw_esp_skipped = io.raw.iter().map(|r| r.skipped()).sum();
                        status.reloads = io.reloads.clone();
                        status.icmp = buffers.icmp.clone();
                        status_document(&status, node.load_sharing_stats(), &io.streams)
                    }
                    StatusRequest::Reload(path) => match reload(node, io, &path).await {
                        Ok(report) => serde_json::to_string(&report),
                        Err(message) => Ok(crate::status_server::error_document(&message)),
                    },
                    StatusRequest::ConnList => {
                        serde_json::to_string(&node.conn_list(now, CONN_LIST_LIMIT))
                    }
                    StatusRequest::ConnStats => serde_json::to_string(&node.conn_stats()),
                    StatusRequest::ClusterStatus => match node.cluster_status(now) {
                        Some((status, _)) => crate::cluster_io::cluster_status_document(
                            &status,
                            node.load_sharing_stats().as_ref(),
                        )
                        .map(|d| d.to_string()),
                        None => Ok(crate::status_server::error_document(NO_CLUSTER)),
                    },
                    StatusRequest::MepStatus => match node.mep_status(now) {
                        Some(status) => serde_json::to_string(&status),
                        None => Ok(crate::status_server::error_document(NO_MEP)),
                    },
                    StatusRequest::ClusterSyncStats => match node.cluster_status(now) {
                        Some((status, stats)) => crate::cluster_io::sync_stats_document(
                            &stats,
                            status.load_sharing.as_ref(),
                        )
                        .map(|d| d.to_string()),
                        None => Ok(crate::status_server::error_document(NO_CLUSTER)),
                    },
                    StatusRequest::Cluster(command) => {
                        let answer = node.cluster_command(now, command);
                        drain_outputs(node, io).await;
                        match answer {
                            Ok(message) => {
                                tracing::info!("cluster command {command:?}: {message}");
                                Ok(serde_json::json!({ "message": message }).to_string())
                            }
                            Err(e) => Ok(crate::status_server::error_document(&e)),
                        }
                    }
                };
                let document = document.unwrap_or_else(|e| {
                    crate::status_server::error_document(&format!("cannot encode status: {e}"))
                });
                let _ = q.reply.send(document);
            }
            Event::Sync(event) => {
                full_sync_event(node, io, event);
                drain_outputs(node, io).await;
            }
            Event::SyncClient(r) => match (r, io.cluster.as_ref()) {
                (Ok((tcp, peer)), Some(cluster)) => cluster.serve(tcp, peer),
                (Ok(_), None) => {}
                (Err(e), _) => {
                    tracing::warn!("full sync listener: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Event::Stream(input) => {
                let mut input = Some(input);
                for _ in 0..READS_PER_WAKE {
                    let Some(next) = input.take().or_else(|| io.streams.try_recv()) else {
                        break;
                    };
                    if let Some((id, remote, batch)) =
                        io.streams.handle(next, io.stream_events.as_ref())
                    {
                        datapath::stream_frames(node, io, &mut buffers, id, remote, batch).await;
                    }
                }
            }
            Event::Client(command) => {
                crate::client_command::handle(node, io, command);
                drain_outputs(node, io).await;
            }
            Event::Link(change) => {
                let state = if change.up { "up" } else { "down" };
                let (monitored, links) = match io.cluster.as_ref() {
                    Some(c) => (
                        c.monitored.contains(&change.interface),
                        c.links_on(&change.interface).collect(),
                    ),
                    None => (false, Vec::new()),
                };
                if monitored {
                    tracing::info!("monitored interface {} is {state}", change.interface);
                    node.handle_link_state(Instant::now(), &change.interface, change.up);
                }
                for link in links {
                    tracing::info!("sync link {link}: carrier {state} on {}", change.interface);
                    node.handle_sync_link_state(Instant::now(), link, change.up);
                }
                drain_outputs(node, io).await;
            }
            Event::StatusClient(r) => {
                if let Err(e) = r {
                    tracing::warn!(
                        "status socket {}: accept failed: {e}",
                        io.status.path().display()
                    );
                    // Typically out of file descriptors: give the system a moment.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// The status document: the node's status with what the shell adds that the node does not
/// carry (`transports`: the stream counters; in `sync`, the hold-time quantiles and the
/// forwarded packets of [`crate::cluster_io::sync_stats_document`]; in Load Sharing,
/// `cluster.load_sharing.member`, see [`crate::cluster_io::cluster_status_document`]).
fn status_document(
    status: &rampart_node::GatewayStatus,
    member: Option<rampart_node::LoadSharingStats>,
    streams: &Streams,
) -> serde_json::Result<String> {
    let mut document = serde_json::to_value(status)?;
    if let (Some(member), Some(cluster)) = (&member, document.get_mut("cluster")) {
        crate::cluster_io::add_member_counters(cluster, member)?;
    }
    if let (Some(stats), Some(sync)) = (&status.sync, document.get_mut("sync")) {
        let load_sharing = status
            .cluster
            .as_ref()
            .and_then(|c| c.load_sharing.as_ref());
        crate::cluster_io::add_sync_extras(sync, stats, load_sharing);
    }
    if let Some(fields) = document.as_object_mut() {
        fields.insert("transports".into(), serde_json::to_value(streams.status())?);
    }
    serde_json::to_string(&document)
}

/// The answer to the cluster requests of a gateway without `[cluster]`.
const NO_CLUSTER: &str = "no cluster configured";
/// The answer to `mep status` on a gateway that neither probes entry points nor answers probes.
const NO_MEP: &str =
    "no multiple entry points configured (no entry-point group, and probes are not answered)";

/// Feeds what a full-sync task reported to the node.
fn full_sync_event<N: Node>(node: &mut N, io: &mut Io, event: SyncEvent) {
    let Some(cluster) = io.cluster.as_mut() else {
        return;
    };
    let now = Instant::now();
    match event {
        SyncEvent::Data {
            member,
            pull,
            bytes,
        } => {
            if !cluster.is_current(member, pull) {
                return;
            }
            match node.full_sync_input(now, member, &bytes) {
                Ok(FullSyncProgress::More) => {}
                Ok(FullSyncProgress::Done) => {
                    cluster.end_pull(member);
                }
                Err(why) => {
                    // The node has already counted it and scheduled the retry.
                    if let Some(address) = cluster.end_pull(member) {
                        tracing::warn!("full sync from member {member} at {address} failed: {why}");
                    }
                }
            }
        }
        SyncEvent::PullFailed { member, pull, line } => {
            if cluster.is_current(member, pull) {
                cluster.end_pull(member);
                tracing::warn!("{line}");
                node.full_sync_failed(now, member, &line);
            }
        }
        SyncEvent::Export { member, reply } => {
            let bytes = node.full_sync_export(now);
            tracing::info!(
                "full sync to member {member}: {} bytes of state",
                bytes.len()
            );
            let _ = reply.send(bytes);
        }
    }
}

async fn recv_opt<T>(rx: Option<&mut mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn client_command_opt<T>(rx: Option<&mut mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn accept_opt(listener: Option<&TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

async fn link_opt(links: Option<&mut LinkMonitor>) -> Option<LinkChange> {
    match links {
        Some(l) => l.next().await,
        None => std::future::pending().await,
    }
}

/// SIGHUP, if a handler is installed; pending forever otherwise.
async fn hangup(signal: &mut Option<Signal>) -> Option<()> {
    match signal {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// Reads `path`, validates it (the same messages as `rampart check-config`), opens the sockets
/// of new local addresses and has the node apply it. Any error leaves the gateway as it was and
/// is logged, counted and returned as one text.
async fn reload<N: Node>(node: &mut N, io: &mut Io, path: &Path) -> Result<ReloadReport, String> {
    let result = match rampart_config::load(path) {
        Err(errors) => Err(errors.to_string()),
        Ok(config) => {
            let (udp, raw) = (io.udp.len(), io.raw.len());
            match io.open_sockets(&config) {
                Err(e) => Err(format!("{}: {e}", path.display())),
                Ok(()) => node.reload(Instant::now(), config).map_err(|e| {
                    // Refused: close what this reload opened, so nothing is left changed.
                    io.udp.truncate(udp);
                    io.raw.truncate(raw);
                    format!("{}: {e}", path.display())
                }),
            }
        }
    };
    match &result {
        Ok(_) => {
            io.reloads.applied += 1;
            io.open_probe_sockets(&node.probe_sockets());
            drain_outputs(node, io).await;
        }
        Err(message) => {
            io.reloads.refused += 1;
            io.reloads.last_error = Some(message.clone());
            tracing::error!(
                "reload of {} refused, gateway unchanged:\n{message}",
                path.display()
            );
        }
    }
    result
}

/// Injects (`add`) or withdraws a route-injection route, logging the outcome.
async fn rim_route(io: &mut Io, route: Injected, add: bool) {
    let (prefix, table, protocol, metric) =
        (route.prefix, route.table, route.protocol, route.metric);
    let result = if add {
        io.routes.inject(route).await
    } else {
        io.routes.withdraw(route).await
    };
    match result {
        Ok(()) => tracing::info!(
            "route {prefix} dev {} table {table} proto {protocol} metric {metric} {}",
            io.tun.name(),
            if add { "injected" } else { "withdrawn" }
        ),
        Err(e) => tracing::error!("{e}"),
    }
}

/// Writes one inner packet the node lets through late (Load Sharing: a packet held for
/// Flush-and-Ack or parked for an update request) to the TUN device; with offload behind a
/// zero virtio-net header (no offload asked for).
async fn write_tun(io: &Io, data: &[u8]) {
    const NO_OFFLOAD: [u8; tun_rs::VIRTIO_NET_HDR_LEN] = [0; tun_rs::VIRTIO_NET_HDR_LEN];
    let result = if io.tun.offload() {
        let iov = [io::IoSlice::new(&NO_OFFLOAD), io::IoSlice::new(data)];
        io.tun.write_vectored(&iov).await
    } else {
        io.tun.write_vectored(&[io::IoSlice::new(data)]).await
    };
    if let Err(e) = result {
        tracing::warn!(
            "TUN write of a released packet ({} bytes) failed: {e}",
            data.len()
        );
    }
}

/// Carries out every queued control output of the node.
pub(crate) async fn drain_outputs<N: Node>(node: &mut N, io: &mut Io) {
    while let Some(output) = node.poll_output() {
        match output {
            Output::SendUdp {
                local,
                remote,
                data,
            } => io.send_udp(local, remote, &data).await,
            Output::SendRawEsp {
                local,
                remote,
                data,
            } => io.send_raw_esp(local, remote, &data).await,
            Output::WriteTun { data } => write_tun(io, &data).await,
            Output::RouteAdd { prefix } => match io.routes.add(prefix).await {
                Ok(()) => tracing::info!("route {prefix} dev {} added", io.tun.name()),
                Err(e) => tracing::error!("{e}"),
            },
            Output::RouteDel { prefix } => match io.routes.del(prefix).await {
                Ok(()) => tracing::info!("route {prefix} dev {} removed", io.tun.name()),
                Err(e) => tracing::error!("{e}"),
            },
            Output::RouteInject {
                prefix,
                table,
                protocol,
                metric,
            } => {
                let route = Injected {
                    prefix,
                    table,
                    protocol,
                    metric,
                };
                rim_route(io, route, true).await;
            }
            Output::RouteWithdraw {
                prefix,
                table,
                protocol,
                metric,
            } => {
                let route = Injected {
                    prefix,
                    table,
                    protocol,
                    metric,
                };
                rim_route(io, route, false).await;
            }
            Output::ClaimAddress { interface, addr } => match io.cluster.as_mut() {
                Some(c) => match c.vips.claim(&interface, addr).await {
                    Ok(()) => tracing::info!("virtual address {addr} claimed on {interface}"),
                    Err(e) => tracing::error!("{e}"),
                },
                None => tracing::warn!(
                    "node asked to claim {addr} on {interface} but this gateway has no [cluster]; ignored"
                ),
            },
            Output::ReleaseAddress { interface, addr } => match io.cluster.as_mut() {
                Some(c) => match c.vips.release(&interface, addr).await {
                    Ok(()) => tracing::info!("virtual address {addr} released from {interface}"),
                    Err(e) => tracing::error!("{e}"),
                },
                None => tracing::warn!(
                    "node asked to release {addr} on {interface} but this gateway has no [cluster]; ignored"
                ),
            },
            Output::FullSyncConnect { member, address } => match io.cluster.as_mut() {
                Some(c) => {
                    tracing::info!("full sync from member {member} at {address}: connecting");
                    c.pull(member, address);
                }
                None => tracing::warn!(
                    "node asked for a full sync from member {member} at {address} but this gateway has no [cluster]; ignored"
                ),
            },
            out @ (Output::VirtualAddress { .. }
            | Output::VirtualAddressLost { .. }
            | Output::TunnelMtu { .. }
            | Output::Roamed { .. }
            | Output::RoamFailed { .. }) => {
                match io.client_outputs.as_ref() {
                    Some(tx) => {
                        if let Err(lost) = tx.send(out) {
                            tracing::error!("client shell gone: {:?} not applied", lost.0);
                        }
                    }
                    None => tracing::warn!(
                        "node reported a remote-access client event, but this is not a client; ignored"
                    ),
                }
            }
            Output::Log(record) => match record.level {
                LogLevel::Error => tracing::error!(target: "rampart_node", "{}", record.message),
                LogLevel::Warn => tracing::warn!(target: "rampart_node", "{}", record.message),
                LogLevel::Info => tracing::info!(target: "rampart_node", "{}", record.message),
                LogLevel::Debug => tracing::debug!(target: "rampart_node", "{}", record.message),
            },
        }
    }
}
