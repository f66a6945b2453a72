//! A simulated gateway machine: the real `rampart_node::Gateway` engine plus what the kernel
//! and the I/O shell do around it (sockets on the IKE and NAT-T ports, the raw ESP socket, the
//! TUN device and its routes). Crash drops the engine; restart builds a fresh one.
//!
//! Like the I/O shell, the machine hands the engine batches: inputs are queued as they reach the
//! machine ([`GatewayNode::deliver_local`], [`GatewayNode::tun_input`]) and the world flushes
//! the queue at the end of their virtual instant ([`GatewayNode::take_runs`],
//! [`GatewayNode::run_batch`]). A run is a maximal sequence of queued inputs that one batch call
//! of production takes: TUN packets (`Gateway::handle_tun_batch`), datagrams of one UDP
//! socket pair (`handle_udp_batch`), ESP packets of one raw socket (`handle_raw_esp_batch`).
//! The `Disposition` of every packet is carried out in batch order, then the control outputs
//! are drained.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use rampart_config::GatewayConfig;
use rampart_crypto::Rng;
use rampart_node::{
    ClusterCommand, Disposition, DropReason, FullSyncProgress, Gateway, LogLevel, Output,
};

use crate::gateway_stream::StreamListeners;
use crate::packet::{self, Ipv4Header};

/// Room the engine needs around a packet to encrypt in place.
const HEADROOM: usize = 64;
const TAILROOM: usize = 64;

/// What the world must do after the engine ran.
#[derive(Debug, Default)]
pub struct GwEffects {
    /// Whole IPv4 packets to route out (from this machine or decrypted from the tunnel).
    pub send: Vec<Vec<u8>>,
    pub logs: Vec<String>,
    /// Timeline lines that are not engine logs (what the simulator observed).
    pub notes: Vec<String>,
    pub drops: Vec<&'static str>,
    /// Virtual addresses claimed (`true`) or released: (interface = link name, address).
    pub claims: Vec<(String, Ipv4Addr, bool)>,
    /// Full syncs to pull: (member id, its sync address).
    pub full_syncs: Vec<(u8, SocketAddr)>,
}

pub struct GatewayNode {
    pub config: GatewayConfig,
    pub engine: Option<Gateway>,
    /// Prefixes routed into the TUN device (from `Output::RouteAdd`).
    pub tun_routes: Vec<Ipv4Net>,
    /// Ids of the tunnels installed now (from status snapshots).
    pub tunnels: BTreeSet<u64>,
    /// Tunnels seen over the whole run, and how many of them were rekeys.
    pub tunnels_installed: u32,
    pub rekeys: u32,
    pub esp_errors: u64,
    pub restarts: u32,
    /// Simulated times at which tunnels were installed (first ones and rekeys).
    pub installs: Vec<Duration>,
    /// IKE fragments (RFC 7383 SKF payloads) this gateway sent, over the whole run.
    pub ike_fragments_sent: u64,
    /// Batches handed to the engine, and the packets they carried (over the whole run).
    pub batches: u64,
    pub batched_packets: u64,
    ident: u16,
    /// The RFC 9329 TCP and Visitor Mode TLS listeners of `[remote_access]`, while running.
    pub streams: Option<StreamListeners>,
    /// Inputs of the current virtual instant, in arrival order, not yet given to the engine.
    pending: Vec<Input>,
    /// Load Sharing, routed distribution: the kernel table the member injects its routes
    /// into for the routing daemon (`[cluster] announce_table`); `None` otherwise.
    announce_table: Option<u32>,
    /// Prefixes injected into that table now (what the routing daemon announces upstream).
    pub announced: Vec<ipnet::IpNet>,
    /// When the last announced prefix was withdrawn (or the machine crashed with some).
    withdrawn_at: Duration,
    /// What the engines that crashed had counted (the checks add the running engine's).
    pub retired: Retired,
}

/// Counters of the engines a machine lost in crashes, summed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Retired {
    /// Packets stateful inspection dropped as out of state.
    pub out_of_state: u64,
}

/// An input waiting for the end of its virtual instant.
#[derive(Debug)]
enum Input {
    /// An IP packet routed into the TUN device; `depth` counts passes through the tunnel.
    Tun { packet: Vec<u8>, depth: usize },
    /// The payload of a UDP datagram that arrived on `local` from `remote`.
    Udp {
        local: SocketAddr,
        remote: SocketAddr,
        datagram: Vec<u8>,
    },
    /// An ESP packet (IP protocol 50) that arrived for `local` from `remote`.
    RawEsp {
        local: IpAddr,
        remote: IpAddr,
        packet: Vec<u8>,
    },
}

impl Input {
    /// Whether `next` may join a batch that starts with `self`.
    fn same_batch(&self, next: &Input) -> bool {
        match (self, next) {
            (Input::Tun { .. }, Input::Tun { .. }) => true,
            (
                Input::Udp { local, remote, .. },
                Input::Udp {
                    local: l,
                    remote: r,
                    ..
                },
            ) => local == l && remote == r,
            (Input::RawEsp { local, .. }, Input::RawEsp { local: l, .. }) => local == l,
            _ => false,
        }
    }
}

/// Queued inputs that go to the engine in one batch call (see the module documentation).
#[derive(Debug)]
pub struct Run(Vec<Input>);

/// IKEv2 payload type of an encrypted fragment (SKF, RFC 7383).
const PAYLOAD_SKF: u8 = 53;

pub fn drop_name(r: DropReason) -> &'static str {
    match r {
        DropReason::Malformed => "gateway: malformed",
        DropReason::NoPolicy => "gateway: no policy",
        DropReason::NoSa => "gateway: no SA yet",
        DropReason::UnknownSpi => "gateway: unknown SPI",
        DropReason::Authentication => "gateway: ESP authentication failed",
        DropReason::Replay => "gateway: ESP replay",
        DropReason::PolicyMismatch => "gateway: inner packet outside the SA's selectors",
        DropReason::Lifetime => "gateway: SA lifetime",
        DropReason::Firewall => "gateway: stateful inspection",
    }
}

/// The announce table of a Load Sharing member in routed distribution (`None` otherwise).
fn announce_table(config: &GatewayConfig) -> Option<u32> {
    let c = config.cluster.as_ref()?;
    if c.mode != rampart_cluster::ClusterMode::LoadSharing {
        return None;
    }
    let ls = c.load_sharing.unwrap_or_default();
    (ls.distribution == rampart_cluster::Distribution::Routed).then_some(ls.announce_table)
}

impl GatewayNode {
    pub fn new(config: GatewayConfig) -> GatewayNode {
        let announce_table = announce_table(&config);
        GatewayNode {
            config,
            engine: None,
            tun_routes: Vec::new(),
            tunnels: BTreeSet::new(),
            tunnels_installed: 0,
            rekeys: 0,
            esp_errors: 0,
            restarts: 0,
            installs: Vec::new(),
            ike_fragments_sent: 0,
            batches: 0,
            batched_packets: 0,
            ident: 1,
            streams: None,
            pending: Vec::new(),
            announce_table,
            announced: Vec::new(),
            withdrawn_at: Duration::ZERO,
            retired: Retired::default(),
        }
    }

    /// For the routers next to a Load Sharing member in routed mode: since when it announces
    /// nothing (its routing daemon withdrew its routes; counted from time zero when it never
    /// announced). `None` while it announces, and always for other gateways, which are next
    /// hops by static configuration.
    pub fn announcements_down_since(&self) -> Option<Duration> {
        match self.announce_table {
            Some(_) if self.announced.is_empty() => Some(self.withdrawn_at),
            _ => None,
        }
    }

    /// (Re)starts the engine: a fresh `Gateway::new`, as a process restart would.
    pub fn start(&mut self, base: Instant, now: Duration, rng: Rng, fx: &mut GwEffects) {
        // A cluster member's boot id must grow across restarts (production uses the Unix time
        // in ms at start): simulated milliseconds since the start of the run, plus one.
        let boot_id = now.as_millis() as u64 + 1;
        self.retire();
        match Gateway::with_boot_id(self.config.clone(), base + now, rng, boot_id) {
            Ok(g) => self.engine = Some(g),
            Err(e) => fx.logs.push(format!("cannot start: {e}")),
        }
        self.drain(base, now, fx);
    }

    /// Adds what the running engine counted to [`GatewayNode::retired`] (it is about to go).
    fn retire(&mut self) {
        if let Some(g) = &self.engine {
            self.retired.out_of_state += g.conn_stats().dropped_out_of_state;
        }
    }

    /// Opens the stream listeners of `[remote_access]` (none without it) on a machine with
    /// `addrs`, as the I/O shell does at start.
    pub fn open_streams(
        &mut self,
        addrs: &[(Ipv4Addr, u8)],
        mtu: usize,
        seed: u64,
        fx: &mut GwEffects,
    ) {
        if self.engine.is_none() {
            return;
        }
        match StreamListeners::new(&self.config, addrs, mtu, seed) {
            Ok(s) => self.streams = s,
            Err(e) => fx.logs.push(format!("remote access streams: {e}")),
        }
    }

    /// Runs the stream listeners: frames read become NAT-T inputs of this instant, TCP
    /// packets and log lines go to `fx`.
    pub fn poll_streams(&mut self, now: Duration, fx: &mut GwEffects) {
        let Some(s) = self.streams.as_mut() else {
            return;
        };
        let polled = s.poll(now);
        fx.send.extend(polled.packets);
        fx.logs.extend(polled.logs);
        if self.engine.is_some() {
            for (local, remote, datagram) in polled.frames {
                self.pending.push(Input::Udp {
                    local,
                    remote,
                    datagram,
                });
            }
        }
    }

    /// Sends `data` from `local` to `remote`: one frame on the stream to `remote` when there
    /// is one, else a UDP datagram.
    fn send_udp(&mut self, local: SocketAddr, remote: SocketAddr, data: &[u8], fx: &mut GwEffects) {
        if let Some(s) = self.streams.as_mut() {
            if s.send(&remote, data) {
                return;
            }
        }
        if let (IpAddr::V4(l), IpAddr::V4(r)) = (local.ip(), remote.ip()) {
            let id = self.next_ident();
            fx.send.push(packet::build_udp(
                l,
                local.port(),
                r,
                remote.port(),
                id,
                data,
            ));
        }
    }

    /// Serves a full sync to another member (the frames of this engine's state now); `None`
    /// when the engine is not running.
    pub fn full_sync_export(&mut self, base: Instant, now: Duration) -> Option<Vec<u8>> {
        Some(self.engine.as_mut()?.full_sync_export(base + now))
    }

    /// The full-sync stream from `member` delivered `data` (`Ok`) or broke (`Err`).
    pub fn full_sync_arrived(
        &mut self,
        base: Instant,
        now: Duration,
        member: u8,
        data: Result<Vec<u8>, String>,
        fx: &mut GwEffects,
    ) {
        let Some(g) = self.engine.as_mut() else {
            return;
        };
        match data {
            Ok(bytes) => match g.full_sync_input(base + now, member, &bytes) {
                Ok(FullSyncProgress::Done) => fx.notes.push(format!(
                    "full sync from member {member}: {} bytes applied",
                    bytes.len()
                )),
                Ok(FullSyncProgress::More) => {
                    g.full_sync_failed(base + now, member, "stream ended early");
                    fx.notes.push(format!(
                        "full sync from member {member}: stream ended early"
                    ));
                }
                Err(e) => {
                    g.full_sync_failed(base + now, member, &e);
                    fx.notes
                        .push(format!("full sync from member {member} refused: {e}"));
                }
            },
            Err(why) => {
                g.full_sync_failed(base + now, member, &why);
                fx.notes
                    .push(format!("full sync from member {member} failed: {why}"));
            }
        }
        self.drain(base, now, fx);
    }

    /// The machine's interface with address `addr` lost (`up = false`) or regained carrier.
    /// When it is one of the member's sync links (`address` is link 0, `extra_addresses`
    /// 1..), the engine learns it, as the I/O shell's link monitor tells it; returns that
    /// link.
    pub fn link_carrier(
        &mut self,
        base: Instant,
        now: Duration,
        addr: Ipv4Addr,
        up: bool,
        fx: &mut GwEffects,
    ) -> Option<u8> {
        let cluster = self.config.cluster.as_ref()?;
        let me = cluster.me();
        let link = std::iter::once(me.sync_address)
            .chain(me.extra_sync_addresses.iter().copied())
            .position(|a| a.ip() == IpAddr::V4(addr))?;
        let link = u8::try_from(link).ok()?;
        self.engine
            .as_mut()?
            .handle_sync_link_state(base + now, link, up);
        self.drain(base, now, fx);
        Some(link)
    }

    /// `rampart cluster switchover|down|up`.
    pub fn cluster_command(
        &mut self,
        base: Instant,
        now: Duration,
        command: ClusterCommand,
    ) -> Result<String, String> {
        match self.engine.as_mut() {
            Some(g) => g.cluster_command(base + now, command),
            None => Err("not running".into()),
        }
    }

    /// The member's cluster status and sync counters; `None` when not running or no cluster.
    pub fn cluster_status(
        &self,
        base: Instant,
        now: Duration,
    ) -> Option<(rampart_node::ClusterStatus, rampart_node::SyncStats)> {
        self.engine.as_ref()?.cluster_status(base + now)
    }

    /// The satellite's view of entry point `name` (`None`: not running, or no such entry
    /// point).
    pub fn mep_entry_point(
        &self,
        base: Instant,
        now: Duration,
        name: &str,
    ) -> Option<rampart_mep::EntryPointStatus> {
        let status = self.engine.as_ref()?.status(base + now).mep?;
        status
            .groups
            .into_iter()
            .flat_map(|g| g.entry_points)
            .find(|e| e.name == name)
    }

    /// The machine stops at `now`: engine state, routes and tunnels are gone (the TUN device
    /// and the routes injected on it with it).
    pub fn crash(&mut self, now: Duration) {
        self.retire();
        if !self.announced.is_empty() {
            self.announced.clear();
            self.withdrawn_at = now;
        }
        self.engine = None;
        self.streams = None;
        self.pending.clear();
        self.tun_routes.clear();
        self.tunnels.clear();
    }

    pub fn poll_timeout(&mut self, base: Instant, now: Duration) -> Option<Duration> {
        let engine = self
            .engine
            .as_ref()?
            .poll_timeout()
            .map(|t| t.saturating_duration_since(base));
        let streams = self.streams.as_mut().and_then(|s| s.poll_at(now));
        match (engine, streams) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn handle_timeout(&mut self, base: Instant, now: Duration, fx: &mut GwEffects) {
        if let Some(g) = self.engine.as_mut() {
            g.handle_timeout(base + now);
        }
        self.drain(base, now, fx);
    }

    /// Whether `dst` is routed into the TUN device.
    pub fn routes_to_tun(&self, dst: Ipv4Addr) -> Option<u8> {
        self.tun_routes
            .iter()
            .filter(|n| n.contains(&dst))
            .map(|n| n.prefix_len())
            .max()
    }

    /// A packet addressed to this machine (already reassembled): IKE, NAT-T or raw ESP. Queued
    /// for the batch of its instant; `Err` names why the machine drops it at once.
    pub fn deliver_local(&mut self, p: &[u8], ip: &Ipv4Header) -> Result<(), &'static str> {
        if self.engine.is_none() {
            return Ok(());
        }
        let payload = &p[ip.header_len..ip.total_len];
        let input = match ip.protocol {
            packet::PROTO_UDP if payload.len() >= 8 => {
                let sport = u16::from_be_bytes([payload[0], payload[1]]);
                let dport = u16::from_be_bytes([payload[2], payload[3]]);
                let gw = &self.config.gateway;
                // The sync sockets: one per sync link (`address`, `extra_addresses`).
                let sync_port = self.config.cluster.as_ref().is_some_and(|c| {
                    let me = c.me();
                    me.sync_address.port() == dport
                        || me.extra_sync_addresses.iter().any(|a| a.port() == dport)
                });
                let probe_port = self.config.mep.probe.port;
                if dport != gw.ike_port
                    && dport != gw.nat_t_port
                    && !sync_port
                    && dport != probe_port
                {
                    return Err("gateway: UDP port not open");
                }
                Input::Udp {
                    local: SocketAddr::new(IpAddr::V4(ip.dst), dport),
                    remote: SocketAddr::new(IpAddr::V4(ip.src), sport),
                    datagram: payload[8..].to_vec(),
                }
            }
            packet::PROTO_ESP => Input::RawEsp {
                local: IpAddr::V4(ip.dst),
                remote: IpAddr::V4(ip.src),
                packet: payload.to_vec(),
            },
            packet::PROTO_TCP => {
                return match self.streams.as_mut() {
                    Some(s) => {
                        s.receive(p[..ip.total_len].to_vec());
                        Ok(())
                    }
                    None => Err("gateway: TCP port not open"),
                }
            }
            packet::PROTO_ICMP => return Err("gateway: ICMP ignored"),
            _ => return Err("gateway: protocol not handled"),
        };
        self.pending.push(input);
        Ok(())
    }

    /// An inner packet routed into the TUN device, after `depth` passes through the tunnel in
    /// this chain of events. Queued for the batch of its instant.
    pub fn tun_input(&mut self, p: Vec<u8>, depth: usize) {
        if self.engine.is_some() {
            self.pending.push(Input::Tun { packet: p, depth });
        }
    }

    /// Takes the queued inputs, cut into the runs that go to the engine one batch call each.
    pub fn take_runs(&mut self) -> Vec<Run> {
        let mut runs: Vec<Run> = Vec::new();
        for input in self.pending.drain(..) {
            match runs.last_mut() {
                Some(Run(run)) if run[0].same_batch(&input) => run.push(input),
                _ => runs.push(Run(vec![input])),
            }
        }
        runs
    }

    /// Hands `run` to the engine's batch entry point, carries out each packet's disposition in
    /// order, then drains the control outputs. Returns the chain depth of what the batch emits
    /// (one more than its deepest TUN packet; 0 for what came from the network).
    pub fn run_batch(
        &mut self,
        base: Instant,
        now: Duration,
        run: Run,
        fx: &mut GwEffects,
    ) -> usize {
        let Run(inputs) = run;
        let Some(g) = self.engine.as_mut() else {
            return 0;
        };
        let n = inputs.len();
        self.batches += 1;
        self.batched_packets += n as u64;
        let mut out = vec![Disposition::Consumed; n];
        let mut depth = 0;
        match inputs.first() {
            Some(Input::Tun { .. }) => {
                let mut bufs = Vec::with_capacity(n);
                let mut ranges = Vec::with_capacity(n);
                for input in &inputs {
                    if let Input::Tun { packet, depth: d } = input {
                        let (buf, range) = framed(packet);
                        bufs.push(buf);
                        ranges.push(range);
                        depth = depth.max(d + 1);
                    }
                }
                g.handle_tun_batch(base + now, &mut bufs, &ranges, &mut out);
                for (d, buf) in out.into_iter().zip(&bufs) {
                    self.dispose(d, buf, fx);
                }
            }
            Some(&Input::Udp { local, remote, .. }) => {
                let (mut buf, ranges) = concatenated(inputs.iter().map(|i| match i {
                    Input::Udp { datagram, .. } => &datagram[..],
                    _ => &[],
                }));
                g.handle_udp_batch(base + now, local, remote, &mut buf, &ranges, &mut out);
                for d in out {
                    self.dispose(d, &buf, fx);
                }
            }
            Some(&Input::RawEsp { local, .. }) => {
                let (mut buf, ranges) = concatenated(inputs.iter().map(|i| match i {
                    Input::RawEsp { packet, .. } => &packet[..],
                    _ => &[],
                }));
                let packets: Vec<(IpAddr, Range<usize>)> = inputs
                    .iter()
                    .zip(ranges)
                    .map(|(i, r)| match i {
                        Input::RawEsp { remote, .. } => (*remote, r),
                        _ => (local, r),
                    })
                    .collect();
                g.handle_raw_esp_batch(base + now, local, &mut buf, &packets, &mut out);
                for d in out {
                    self.dispose(d, &buf, fx);
                }
            }
            None => {}
        }
        self.drain(base, now, fx);
        depth
    }

    /// Carries out what the engine decided for one packet (ranges into `buf`).
    fn dispose(&mut self, d: Disposition, buf: &[u8], fx: &mut GwEffects) {
        match d {
            Disposition::SendUdp {
                local,
                remote,
                data,
            } => {
                let port = self.config.gateway.nat_t_port;
                observe_ike(
                    port,
                    &mut self.ike_fragments_sent,
                    local.port(),
                    &buf[data.clone()],
                    fx,
                );
                self.send_udp(local, remote, &buf[data], fx);
            }
            Disposition::SendRawEsp {
                local,
                remote,
                data,
            } => {
                if let (IpAddr::V4(l), IpAddr::V4(r)) = (local, remote) {
                    let id = self.next_ident();
                    fx.send
                        .push(packet::build_ipv4(l, r, packet::PROTO_ESP, id, &buf[data]));
                }
            }
            Disposition::WriteTun { data } => fx.send.push(buf[data].to_vec()),
            Disposition::Consumed => {}
            Disposition::Dropped(r) => {
                if matches!(r, DropReason::Authentication | DropReason::Replay) {
                    self.esp_errors += 1;
                }
                fx.drops.push(drop_name(r));
            }
        }
    }

    fn next_ident(&mut self) -> u16 {
        self.ident = self.ident.wrapping_add(1);
        self.ident
    }

    /// Control outputs: datagrams, routes, logs; then the tunnel table is re-read when
    /// something was logged (every tunnel change is logged by the engine).
    fn drain(&mut self, base: Instant, now: Duration, fx: &mut GwEffects) {
        let mut changed = false;
        while let Some(out) = self.engine.as_mut().and_then(|g| g.poll_output()) {
            match out {
                Output::SendUdp {
                    local,
                    remote,
                    data,
                } => {
                    let port = self.config.gateway.nat_t_port;
                    observe_ike(port, &mut self.ike_fragments_sent, local.port(), &data, fx);
                    self.send_udp(local, remote, &data, fx);
                }
                Output::RouteAdd { prefix } => {
                    if let ipnet::IpNet::V4(n) = prefix {
                        if !self.tun_routes.contains(&n) {
                            self.tun_routes.push(n);
                        }
                    }
                }
                Output::RouteDel { prefix } => {
                    if let ipnet::IpNet::V4(n) = prefix {
                        self.tun_routes.retain(|r| *r != n);
                    }
                }
                Output::ClaimAddress { interface, addr } => {
                    if let IpAddr::V4(a) = addr.addr() {
                        fx.claims.push((interface, a, true));
                        // The stream listeners bind every address, as rampart-io's do.
                        if let Some(s) = self.streams.as_mut() {
                            s.set_address(a, addr.prefix_len(), true);
                        }
                    }
                }
                Output::ReleaseAddress { interface, addr } => {
                    if let IpAddr::V4(a) = addr.addr() {
                        fx.claims.push((interface, a, false));
                        if let Some(s) = self.streams.as_mut() {
                            s.set_address(a, addr.prefix_len(), false);
                        }
                    }
                }
                Output::FullSyncConnect { member, address } => {
                    fx.full_syncs.push((member, address));
                }
                // Routes injected into the announce table of Load Sharing are what the
                // routing daemon announces: the routers next to the member use it as a next
                // hop while it announces something. Other route injection (`[rim]`) feeds a
                // daemon the simulator does not model.
                Output::RouteInject { prefix, table, .. } if Some(table) == self.announce_table => {
                    if !self.announced.contains(&prefix) {
                        self.announced.push(prefix);
                        if self.announced.len() == 1 {
                            fx.notes
                                .push(format!("announces {prefix} (routing daemon)"));
                        }
                    }
                }
                Output::RouteWithdraw { prefix, table, .. }
                    if Some(table) == self.announce_table =>
                {
                    let before = self.announced.len();
                    self.announced.retain(|p| *p != prefix);
                    if before > 0 && self.announced.is_empty() {
                        self.withdrawn_at = now;
                        fx.notes
                            .push("withdraws its last announced route (routing daemon)".into());
                    }
                }
                Output::RouteInject { .. } | Output::RouteWithdraw { .. } => {}
                // ESP the engine makes outside a batch: a Load Sharing member encrypting a
                // packet another member inspected and forwarded, a path-MTU probe.
                Output::SendRawEsp {
                    local: IpAddr::V4(l),
                    remote: IpAddr::V4(r),
                    data,
                } => {
                    let id = self.next_ident();
                    fx.send
                        .push(packet::build_ipv4(l, r, packet::PROTO_ESP, id, &data));
                }
                Output::SendRawEsp { .. } => {}
                // A packet a Load Sharing member held (Flush-and-Ack) or parked (update
                // request) and releases now: out to the inside like a `Disposition::WriteTun`.
                Output::WriteTun { data } => fx.send.push(data),
                // The simulator has no remote-access client nodes yet.
                Output::VirtualAddress { .. }
                | Output::VirtualAddressLost { .. }
                | Output::TunnelMtu { .. }
                | Output::Roamed { .. }
                | Output::RoamFailed { .. } => {}
                Output::Log(record) => {
                    changed = true;
                    // The engine names the SA a new tunnel replaces: that is a rekey (a
                    // duplicate from simultaneous initiation is not).
                    if record.message.contains(", replaces ") {
                        self.rekeys += 1;
                    }
                    if record.level != LogLevel::Debug {
                        fx.logs.push(record.message);
                    }
                }
            }
        }
        if changed {
            self.track(base, now);
        }
    }

    fn track(&mut self, base: Instant, now: Duration) {
        let Some(g) = self.engine.as_ref() else {
            return;
        };
        let status = g.status(base + now);
        let seen: BTreeSet<u64> = status
            .peers
            .iter()
            .flat_map(|p| p.tunnels.iter().map(|t| t.id))
            .collect();
        for _ in seen.difference(&self.tunnels) {
            self.tunnels_installed += 1;
            self.installs.push(now);
        }
        self.tunnels = seen;
    }
}

/// Looks at an outgoing IKE datagram sent from `local_port`: counts IKE fragments in `count`
/// (the first one is noted on the timeline). Never fails: what is not an IKE header is ignored.
fn observe_ike(
    nat_t_port: u16,
    count: &mut u64,
    local_port: u16,
    datagram: &[u8],
    fx: &mut GwEffects,
) {
    let ike = if local_port == nat_t_port {
        match datagram {
            [0, 0, 0, 0, rest @ ..] => rest,
            _ => return,
        }
    } else {
        datagram
    };
    // IKE header: the two SPIs (16 bytes), then the first payload's type.
    if ike.len() >= 28 && ike[16] == PAYLOAD_SKF {
        *count += 1;
        if *count == 1 {
            fx.notes.push(
                "IKE fragmentation: an IKE message leaves as encrypted fragments (RFC 7383)".into(),
            );
        }
    }
}

/// Lays `parts` end to end in one buffer, as one batched socket read does; returns it and the
/// range of each part.
fn concatenated<'a>(parts: impl Iterator<Item = &'a [u8]>) -> (Vec<u8>, Vec<Range<usize>>) {
    let mut buf = Vec::new();
    let mut ranges = Vec::new();
    for p in parts {
        let start = buf.len();
        buf.extend_from_slice(p);
        ranges.push(start..buf.len());
    }
    (buf, ranges)
}

/// Copies `p` into a buffer with the head and tail room the engine needs.
fn framed(p: &[u8]) -> (Vec<u8>, Range<usize>) {
    let mut buf = vec![0u8; HEADROOM + p.len() + TAILROOM];
    buf[HEADROOM..HEADROOM + p.len()].copy_from_slice(p);
    (buf, HEADROOM..HEADROOM + p.len())
}
