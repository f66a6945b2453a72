//! A simulated remote-access client machine (`kind = "client"`): what `rampart client up` does,
//! in virtual time.
//!
//! - The transport ladder is `rampart_connect::ladder::Ladder` (the sans-IO state machine the
//!   real client drives): a payload-less IKE_SA_INIT probe on UDP, RFC 9329 TCP and Visitor
//!   Mode TLS directly a little later, then the same through the profile's HTTP CONNECT proxy.
//!   Stream attempts run on the machine's own TCP stack ([`outer`], [`conn`]).
//! - The engine is a `rampart_node::Gateway` built from the profile
//!   (`ClientProfile::node_config`) for the chosen transport; a chosen stream is its NAT-T path
//!   (frames as datagrams from the gateway's NAT-T address), as `rampart_io` attaches it.
//! - The inner host (a smoltcp stack like every other host) takes the Office Mode address from
//!   `Output::VirtualAddress`; everything it sends goes into the tunnel (the client's TUN device),
//!   so `[[transfer]] from = "<client>"` runs through the tunnel.
//! - Supervision as `rampart/src/client/session.rs`: no address within 30 s, a tunnel lost for
//!   10 s or a move of the outside address rebuild the tunnel (a new ladder run); a failure
//!   before the first tunnel ends the client, later ones are retried with a doubling back-off.
//!   A move first tries `Node::roam` (MOBIKE) and reconnects when the engine cannot move the
//!   SAs. A stream that closes (or goes silent) once the tunnel is up is replaced by a new one
//!   on the same path and the IKE SA re-attached to it ([`reattach`]); only when that fails is
//!   the tunnel rebuilt.
//! - A profile with several `gateways` connects to one of them and moves to another when it
//!   dies ([`mep`]).
//! - The machine's kernel does path-MTU discovery as Linux does for UDP sockets by default: its
//!   UDP and ESP packets carry DF, and an ICMP "fragmentation needed" about one of the engine's
//!   datagrams goes to `Node::handle_path_mtu`. A path that loses that ICMP is a black hole for
//!   larger packets, which only the engine's own path-MTU search gets around.

pub mod conn;
mod mep;
pub mod outer;
mod reattach;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_config::{ClientProfile, ClientSelection, ClientTransport, ProxySetting};
use rampart_connect::entry_points::{EntryPoints, Selection};
use rampart_connect::ladder::{Action, Ladder, LadderConfig, Outcome, Rung, Transport};
use rampart_connect::stream_watch::{StreamWatch, StreamWatchConfig, Verdict};
use rampart_connect::{Credentials, Proxy, Roots, TlsSettings};
use rampart_crypto::Rng;
use rampart_node::{Disposition, Gateway, LogLevel, Output, RoamOutcome};

use crate::host::{Host, ProxyHop, TransferRecord};
use crate::packet::{self, Ipv4Header};
use conn::{Event, StreamConn};
use outer::Outer;

/// IKE's UDP port.
pub(crate) const IKE_PORT: u16 = 500;
/// From the transport being chosen to the address being assigned (session.rs `ASSIGN_TIMEOUT`).
pub const ASSIGN_TIMEOUT: Duration = Duration::from_secs(30);
/// After the tunnel was lost, how long the engine may take to bring it back (`LOST_GRACE`).
pub const LOST_GRACE: Duration = Duration::from_secs(10);
/// How long a MOBIKE move may take before the client reconnects instead (session.rs).
pub const ROAM_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest pause between reconnection attempts (`MAX_BACKOFF`).
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// First retransmission interval of the UDP probe (`udp_probe::FIRST_RETRANSMIT`).
pub(crate) const PROBE_RETRANSMIT: Duration = Duration::from_millis(250);
/// Room the engine needs around a packet to encrypt in place.
const HEADROOM: usize = 64;
const TAILROOM: usize = 64;
/// Bytes read from a stream socket at a time.
const SCRATCH: usize = 16 * 1024;

/// What the world must do after the client ran.
#[derive(Debug, Default)]
pub struct ClientFx {
    /// IP packets to send on the machine's link.
    pub send: Vec<Vec<u8>>,
    /// Log lines of the client (the engine's and the shell's).
    pub logs: Vec<String>,
    /// Timeline lines that are not log lines.
    pub notes: Vec<String>,
    pub drops: Vec<&'static str>,
}

/// One attempt of a ladder run.
enum Attempt {
    Udp {
        spi: u64,
        port: u16,
        request: Vec<u8>,
        next: Duration,
        interval: Duration,
    },
    Stream(Box<StreamConn>),
}

/// A ladder run.
struct Search {
    ladder: Ladder,
    rungs: Vec<Rung>,
    attempts: Vec<Option<Attempt>>,
    proxies: Vec<(Proxy, Ipv4Addr)>,
    started: Duration,
}

/// A tunnel over a chosen transport.
struct Session {
    transport: ClientTransport,
    engine: Gateway,
    stream: Option<Box<StreamConn>>,
    local: SocketAddr,
    remote: SocketAddr,
    started: Duration,
    assigned: bool,
    lost_at: Option<Duration>,
    /// The engine's NAT-T port (UDP 500 and this one are its sockets).
    nat_t_port: u16,
    /// A MOBIKE move under way: its deadline and why it started.
    roaming: Option<(Duration, String)>,
    /// The stream was lost and a new one is being made for the same IKE SA.
    reattach: Option<reattach::Reattach>,
    /// The liveness of the current stream (frames out, none back, a check unanswered).
    watch: Option<StreamWatch>,
}

enum Phase {
    /// Looks for a transport at `at`.
    Waiting {
        at: Duration,
    },
    /// First-to-respond: probing every entry point.
    Probing(Box<mep::Probe>),
    Searching(Box<Search>),
    Running(Box<Session>),
    /// The first attempt failed: the client stopped, as `rampart client up` exits.
    Stopped,
}

/// How a session ended.
enum End {
    Reconnect(String),
    Failed(String),
}

/// A sender waiting for the tunnel.
struct PendingSender {
    transfer: usize,
    remote: (Ipv4Addr, u16),
    via: Option<ProxyHop>,
    rng: Rng,
}

pub struct ClientNode {
    name: String,
    /// The profile aimed at the entry point in use (`base.for_entry_point`).
    profile: ClientProfile,
    /// The profile as written, then with the learned entry points after its own
    /// (`learn_gateways`; the first `own_entries` are the profile's).
    base: ClientProfile,
    own_entries: usize,
    /// The entry point in use, its address; every entry point's address.
    gateway: Ipv4Addr,
    gateways: Vec<Ipv4Addr>,
    entry: EntryPoints,
    entry_idx: usize,
    /// The entry points still to try in this connection round, in order.
    order: Vec<usize>,
    /// The machine's outside address (the link's), its prefix and default router.
    pub addr: Ipv4Addr,
    prefix: u8,
    router: Option<Ipv4Addr>,
    outer: Outer,
    pub inner: Host,
    tls: Option<(Arc<rustls::ClientConfig>, String)>,
    phase: Phase,
    rng: Rng,
    inbox: Vec<Vec<u8>>,
    scratch: Vec<u8>,
    pending: Vec<PendingSender>,
    next_probe_port: u16,
    ident: u16,
    connected_once: bool,
    backoff: Duration,
    /// The Office Mode address the inner host has.
    pub virtual_addr: Option<Ipv4Addr>,
    /// Every tunnel that got its address: when, and over which transport.
    pub connected: Vec<(Duration, &'static str)>,
    /// Every Office Mode address the inner host was given, in order, with when.
    pub addresses: Vec<(Duration, Ipv4Addr)>,
    /// The IKE SA (initiator and responder SPIs, hex) of every tunnel that got its address,
    /// in the order of `connected`.
    pub ike_sas: Vec<(String, String)>,
    /// Moves of the outside address, and how each ended: (when, "roamed" or "reconnect").
    pub moves: Vec<(Duration, String)>,
    /// The tunnel MTU the engine reported last (`Output::TunnelMtu`).
    pub tunnel_mtu: Option<u16>,
    /// Streams replaced for the running IKE SA: (when the old one was found lost, when the new
    /// one carried the re-attach, the transport).
    pub reattaches: Vec<(Duration, Duration, &'static str)>,
    /// The time of the current `run` and its base (for bookkeeping in calls not given them).
    now_hint: Duration,
    base_hint: Instant,
}

impl ClientNode {
    /// A client machine at `addr/prefix` (default router `router`) with `profile`. `Err` names
    /// what the lab cannot simulate in the profile.
    pub fn new(
        name: &str,
        profile: ClientProfile,
        (addr, prefix, router): (Ipv4Addr, u8, Option<Ipv4Addr>),
        link_mtu: usize,
        seed: u64,
        rng: Rng,
    ) -> Result<ClientNode, String> {
        let gateways = ClientNode::entry_addresses(&profile)?;
        let gateway = *gateways
            .first()
            .ok_or_else(|| "the profile has no gateway".to_string())?;
        let entry = EntryPoints::new(
            gateways.len(),
            match profile.selection {
                ClientSelection::FirstToRespond => Selection::FirstToRespond,
                ClientSelection::PrimaryBackup => Selection::PrimaryBackup,
            },
        );
        let uses_tls = profile.transports.contains(&ClientTransport::Tls);
        let tls = if uses_tls {
            let settings = TlsSettings {
                server_name: profile
                    .tls_server_name
                    .clone()
                    .unwrap_or_else(|| profile.gateway.clone()),
                alpn: vec![profile.alpn.clone()],
                roots: match &profile.tls_ca {
                    Some(p) => Roots::CaFile(p.clone()),
                    None => {
                        return Err(
                            "transports has tls but no tls_ca: the lab has no system CA bundle"
                                .into(),
                        )
                    }
                },
            };
            let cfg = rampart_connect::client_config(&settings).map_err(|e| e.to_string())?;
            Some((cfg, settings.server_name))
        } else {
            None
        };
        let mut inner = Host::new(
            Ipv4Addr::UNSPECIFIED,
            0,
            None,
            usize::from(profile.mtu),
            seed ^ 0x1,
        );
        inner.set_address(None);
        Ok(ClientNode {
            name: name.to_string(),
            gateway,
            gateways,
            entry,
            entry_idx: 0,
            order: Vec::new(),
            own_entries: profile.entry_points.len(),
            base: profile.clone(),
            addr,
            prefix,
            router,
            outer: Outer::new(addr, prefix, router, link_mtu, seed),
            inner,
            tls,
            phase: Phase::Waiting { at: Duration::ZERO },
            rng,
            inbox: Vec::new(),
            scratch: vec![0u8; SCRATCH],
            pending: Vec::new(),
            next_probe_port: 33000 + (seed % 1000) as u16,
            ident: 1,
            connected_once: false,
            backoff: Duration::from_secs(1),
            virtual_addr: None,
            connected: Vec::new(),
            addresses: Vec::new(),
            ike_sas: Vec::new(),
            moves: Vec::new(),
            tunnel_mtu: None,
            reattaches: Vec::new(),
            now_hint: Duration::ZERO,
            base_hint: Instant::now(),
            profile,
        })
    }

    /// A packet for this machine (reassembled).
    pub fn receive(&mut self, packet: Vec<u8>) {
        self.inbox.push(packet);
    }

    /// The IKE SA of the running session (initiator and responder SPIs, hex), if it has one.
    pub fn ike_sa(&self) -> Option<(String, String)> {
        match &self.phase {
            Phase::Running(s) => ike_sa_of(&s.engine, self.base_hint + self.now_hint),
            _ => None,
        }
    }

    /// The transport of the running session, if any.
    pub fn transport(&self) -> Option<&'static str> {
        match &self.phase {
            Phase::Running(s) => Some(transport_name(s.transport)),
            _ => None,
        }
    }

    /// A transfer's sender on the inner host; it waits for the tunnel's address.
    pub fn start_sender(
        &mut self,
        transfer: usize,
        remote: (Ipv4Addr, u16),
        via: Option<ProxyHop>,
        rng: Rng,
    ) -> Option<String> {
        if self.virtual_addr.is_some() {
            self.inner.start_sender(transfer, remote, via, rng);
            None
        } else {
            self.pending.push(PendingSender {
                transfer,
                remote,
                via,
                rng,
            });
            Some("waits for the tunnel's address".into())
        }
    }

    /// The outside address moves to `addr/prefix` via `router` (another network): the
    /// machine's connections on the old address are gone; the engine is asked to move its SAs
    /// (MOBIKE), else the tunnel is rebuilt.
    pub fn readdress(
        &mut self,
        base: Instant,
        now: Duration,
        addr: Ipv4Addr,
        prefix: u8,
        router: Option<Ipv4Addr>,
        fx: &mut ClientFx,
    ) {
        let old = self.addr;
        self.addr = addr;
        self.prefix = prefix;
        self.router = router;
        self.outer.readdress(addr, prefix, router);
        fx.logs.push(format!(
            "client {}: network changed: address {old} -> {addr}",
            self.name
        ));
        let Phase::Running(s) = &mut self.phase else {
            // A search in progress starts over from the new address.
            if let Phase::Searching(_) = self.phase {
                self.abort_search();
                self.phase = Phase::Waiting { at: now };
            }
            return;
        };
        if s.transport != ClientTransport::Udp {
            // A stream is bound to the old address: it is gone with it.
            let why = format!("network changed: {old} -> {addr} (the stream was bound to {old})");
            self.moves.push((now, "reconnect".into()));
            self.end_session(base, now, End::Reconnect(why), fx);
            return;
        }
        match s.engine.roam(base + now, IpAddr::V4(addr)) {
            RoamOutcome::Moving(peers) => {
                s.roaming = Some((
                    now + ROAM_TIMEOUT,
                    format!("network changed: {old} -> {addr}"),
                ));
                fx.logs.push(format!(
                    "client {}: moving the IKE SA of {} to {addr} (MOBIKE)",
                    self.name,
                    peers.join(", ")
                ));
                self.drain(base, now, fx);
            }
            RoamOutcome::Unsupported(why) => {
                self.moves.push((now, "reconnect".into()));
                let why = format!("network changed: {old} -> {addr}; cannot move the SAs ({why})");
                self.end_session(base, now, End::Reconnect(why), fx);
            }
            RoamOutcome::Nothing => {
                self.moves.push((now, "reconnect".into()));
                let why = format!("network changed: {old} -> {addr}; no tunnel to move");
                self.end_session(base, now, End::Reconnect(why), fx);
            }
        }
    }

    /// When the machine needs to run next.
    pub fn poll_at(&mut self, base: Instant, now: Duration) -> Option<Duration> {
        let mut next: Option<Duration> = None;
        let mut at = |t: Duration| next = Some(next.map_or(t, |n: Duration| n.min(t)));
        if let Some(t) = self.outer.poll_at(now) {
            at(t);
        }
        if let Some(t) = self.inner.poll_at(now) {
            at(t);
        }
        match &self.phase {
            Phase::Waiting { at: t } => at(*t),
            Phase::Probing(p) => at(p.poll_at()),
            Phase::Searching(s) => {
                if let Some(t) = s.ladder.poll_timeout() {
                    at(t.saturating_duration_since(base));
                }
                for a in s.attempts.iter().flatten() {
                    if let Attempt::Udp { next, .. } = a {
                        at(*next);
                    }
                }
            }
            Phase::Running(s) => {
                if let Some(t) = s.engine.poll_timeout() {
                    at(t.saturating_duration_since(base));
                }
                if !s.assigned {
                    at(s.started + ASSIGN_TIMEOUT);
                }
                if let Some(l) = s.lost_at {
                    at(l + LOST_GRACE);
                }
                if let Some((d, _)) = &s.roaming {
                    at(*d);
                }
                if let Some(t) = s.reattach_deadline() {
                    at(t);
                }
                if let Some(t) = s.watch.as_ref().and_then(StreamWatch::poll_timeout) {
                    at(t.saturating_duration_since(base));
                }
            }
            Phase::Stopped => {}
        }
        next
    }

    /// Runs everything due at `now`: packets that arrived, timers, the inner host.
    pub fn run(
        &mut self,
        base: Instant,
        now: Duration,
        transfers: &mut [TransferRecord],
    ) -> ClientFx {
        let mut fx = ClientFx::default();
        self.now_hint = now;
        self.base_hint = base;
        for _ in 0..64 {
            let mut progress = self.take_inbox(base, now, &mut fx);
            progress |= self.outer.poll(now);
            progress |= self.step(base, now, &mut fx);
            let mut notes = Vec::new();
            let tun = self.inner.run(now, transfers, &mut notes);
            fx.notes.extend(notes);
            for p in tun {
                progress = true;
                self.tun_input(base, now, p, &mut fx);
            }
            if !progress && self.inbox.is_empty() {
                break;
            }
        }
        self.outer.poll(now);
        fx.send.append(&mut self.outer.device.tx);
        fx
    }

    /// Packets that arrived: TCP to the machine's stack, UDP and ESP to the probe or the engine.
    fn take_inbox(&mut self, base: Instant, now: Duration, fx: &mut ClientFx) -> bool {
        if self.inbox.is_empty() {
            return false;
        }
        for p in std::mem::take(&mut self.inbox) {
            let Ok(ip) = Ipv4Header::parse(&p) else {
                fx.drops.push("client: malformed IP packet");
                continue;
            };
            if ip.dst != self.addr {
                fx.drops.push("client: not for this machine's address");
                continue;
            }
            let payload = &p[ip.header_len..ip.total_len.min(p.len())];
            match ip.protocol {
                packet::PROTO_TCP => self.outer.device.rx.push_back(p[..ip.total_len].to_vec()),
                packet::PROTO_UDP if payload.len() >= 8 => {
                    let sport = u16::from_be_bytes([payload[0], payload[1]]);
                    let dport = u16::from_be_bytes([payload[2], payload[3]]);
                    let local = SocketAddr::new(IpAddr::V4(ip.dst), dport);
                    let remote = SocketAddr::new(IpAddr::V4(ip.src), sport);
                    self.udp_input(base, now, local, remote, &payload[8..], fx);
                }
                packet::PROTO_ESP => {
                    let remote = IpAddr::V4(ip.src);
                    let local = IpAddr::V4(ip.dst);
                    if let Phase::Running(s) = &mut self.phase {
                        if let Some(w) = s.watch.as_mut() {
                            w.on_rx(base + now);
                        }
                        let mut buf = payload.to_vec();
                        let ranges = [(remote, 0..buf.len())];
                        let mut out = [Disposition::Consumed];
                        s.engine.handle_raw_esp_batch(
                            base + now,
                            local,
                            &mut buf,
                            &ranges,
                            &mut out,
                        );
                        let [d] = out;
                        self.dispose(d, &buf, fx);
                        self.drain(base, now, fx);
                    } else {
                        fx.drops.push("client: ESP without a tunnel");
                    }
                }
                packet::PROTO_ICMP => {
                    // Passive path MTU: what the I/O layer's error queue reports.
                    let Some(f) = packet::frag_needed_udp(payload) else {
                        continue;
                    };
                    if let Phase::Running(s) = &mut self.phase {
                        let local = SocketAddr::new(IpAddr::V4(f.local.0), f.local.1);
                        let remote = SocketAddr::new(IpAddr::V4(f.remote.0), f.remote.1);
                        s.engine.handle_path_mtu(base + now, local, remote, f.mtu);
                        self.drain(base, now, fx);
                    }
                }
                _ => fx.drops.push("client: protocol not handled"),
            }
        }
        true
    }

    fn udp_input(
        &mut self,
        base: Instant,
        now: Duration,
        local: SocketAddr,
        remote: SocketAddr,
        datagram: &[u8],
        fx: &mut ClientFx,
    ) {
        match &mut self.phase {
            Phase::Searching(search) => {
                let t = base + now;
                let hit = search.attempts.iter().position(|a| {
                    matches!(a, Some(Attempt::Udp { spi, port, .. })
                        if *port == local.port()
                            && rampart_connect::udp_probe::is_answer(datagram, *spi, false))
                });
                match hit {
                    Some(i) => {
                        search.attempts[i] = None;
                        search.ladder.on_success(t, i);
                    }
                    None => fx.drops.push("client: UDP port not open"),
                }
            }
            Phase::Probing(_) => {
                self.probe_udp_input(base, now, local, remote, datagram, fx);
            }
            Phase::Running(s) => {
                if remote.ip() == s.remote.ip() {
                    if let Some(w) = s.watch.as_mut() {
                        w.on_rx(base + now);
                    }
                }
                let nat_t = s.engine_ports();
                if !nat_t.contains(&local.port()) {
                    fx.drops.push("client: UDP port not open");
                    return;
                }
                let mut buf = datagram.to_vec();
                let range = 0..buf.len();
                let ranges = std::slice::from_ref(&range);
                let mut out = [Disposition::Consumed];
                s.engine
                    .handle_udp_batch(base + now, local, remote, &mut buf, ranges, &mut out);
                let [d] = out;
                self.dispose(d, &buf, fx);
                self.drain(base, now, fx);
            }
            _ => fx.drops.push("client: UDP port not open"),
        }
    }

    /// A packet from the inner host: into the tunnel.
    fn tun_input(&mut self, base: Instant, now: Duration, p: Vec<u8>, fx: &mut ClientFx) {
        let Phase::Running(s) = &mut self.phase else {
            fx.drops.push("client: no tunnel (inner packet)");
            return;
        };
        let mut buf = vec![0u8; HEADROOM + p.len() + TAILROOM];
        buf[HEADROOM..HEADROOM + p.len()].copy_from_slice(&p);
        let mut bufs = [buf];
        let range = HEADROOM..HEADROOM + p.len();
        let ranges = std::slice::from_ref(&range);
        let mut out = [Disposition::Consumed];
        s.engine
            .handle_tun_batch(base + now, &mut bufs[..], ranges, &mut out);
        let [d] = out;
        let [buf] = bufs;
        self.dispose(d, &buf, fx);
        self.drain(base, now, fx);
    }

    fn next_ident(&mut self) -> u16 {
        self.ident = self.ident.wrapping_add(1);
        self.ident
    }

    /// Sends a datagram of the engine: on the stream when it goes to the stream's peer, else
    /// as UDP from the engine's local address.
    fn send_udp(&mut self, local: SocketAddr, remote: SocketAddr, data: &[u8], fx: &mut ClientFx) {
        if let Phase::Running(s) = &mut self.phase {
            if remote == s.remote && s.transport != ClientTransport::Udp {
                match s.stream.as_mut() {
                    Some(st) => {
                        st.send(data);
                        if let Some(w) = s.watch.as_mut() {
                            w.on_tx(self.base_hint + self.now_hint);
                        }
                    }
                    // Between a lost stream and its replacement nothing can go out.
                    None => fx.drops.push("client: stream being re-attached"),
                }
                return;
            }
        }
        if let Phase::Running(s) = &mut self.phase {
            if remote.ip() == s.remote.ip() {
                if let Some(w) = s.watch.as_mut() {
                    w.on_tx(self.base_hint + self.now_hint);
                }
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

    fn dispose(&mut self, d: Disposition, buf: &[u8], fx: &mut ClientFx) {
        match d {
            Disposition::SendUdp {
                local,
                remote,
                data,
            } => self.send_udp(local, remote, &buf[data], fx),
            Disposition::SendRawEsp {
                local,
                remote,
                data,
            } => {
                if let Phase::Running(s) = &mut self.phase {
                    if let Some(w) = s.watch.as_mut() {
                        w.on_tx(self.base_hint + self.now_hint);
                    }
                }
                if let (IpAddr::V4(l), IpAddr::V4(r)) = (local, remote) {
                    let id = self.next_ident();
                    let mut p = packet::build_ipv4(l, r, packet::PROTO_ESP, id, &buf[data]);
                    packet::set_dont_fragment(&mut p);
                    fx.send.push(p);
                }
            }
            Disposition::WriteTun { data } => self.inner.receive(buf[data].to_vec()),
            Disposition::Consumed => {}
            Disposition::Dropped(r) => fx.drops.push(crate::gateway_node::drop_name(r)),
        }
    }

    /// The engine's control outputs.
    fn drain(&mut self, base: Instant, now: Duration, fx: &mut ClientFx) {
        loop {
            let out = match &mut self.phase {
                Phase::Running(s) => s.engine.poll_output(),
                _ => None,
            };
            let Some(out) = out else { return };
            match out {
                Output::SendUdp {
                    local,
                    remote,
                    data,
                } => self.send_udp(local, remote, &data, fx),
                Output::SendRawEsp {
                    local,
                    remote,
                    data,
                } => {
                    // A path-MTU probe of a tunnel without UDP encapsulation.
                    if let (IpAddr::V4(l), IpAddr::V4(r)) = (local, remote) {
                        let id = self.next_ident();
                        let mut p = packet::build_ipv4(l, r, packet::PROTO_ESP, id, &data);
                        packet::set_dont_fragment(&mut p);
                        fx.send.push(p);
                    }
                }
                Output::VirtualAddress { reply, .. } => self.assigned(now, &reply, fx),
                Output::VirtualAddressLost { .. } => {
                    fx.logs.push(format!(
                        "client {}: the tunnel's IKE SA is gone; address, routes and DNS removed",
                        self.name
                    ));
                    if self.gateways.len() > 1 {
                        // Another entry point may be up: move now rather than wait for this one.
                        self.entry_failed(base, now);
                        let why = "the IKE SA with the entry point is gone".to_string();
                        self.end_session(base, now, End::Reconnect(why), fx);
                        return;
                    }
                    if let Phase::Running(s) = &mut self.phase {
                        s.lost_at = Some(now);
                    }
                }
                Output::TunnelMtu { mtu, reason, .. } => {
                    fx.logs.push(format!(
                        "client {}: tunnel MTU {mtu} ({reason:?})",
                        self.name
                    ));
                    self.tunnel_mtu = Some(mtu);
                    self.inner.set_mtu(usize::from(mtu), now);
                }
                Output::Roamed { local, .. } => {
                    let mut reason = "the node moved".to_string();
                    if let Phase::Running(s) = &mut self.phase {
                        s.local = local;
                        if let Some((_, r)) = s.roaming.take() {
                            reason = r;
                        }
                    }
                    fx.logs.push(format!(
                        "client {}: moved to {} (MOBIKE): {reason}",
                        self.name,
                        local.ip()
                    ));
                    self.moves.push((now, "roamed".into()));
                }
                Output::RoamFailed { why, .. } => {
                    self.moves.push((now, "reconnect".into()));
                    let why = format!("the MOBIKE move failed ({why})");
                    self.end_session(base, now, End::Reconnect(why), fx);
                    return;
                }
                Output::Log(record) => {
                    if record.level != LogLevel::Debug {
                        fx.logs.push(record.message);
                    }
                }
                // A client has no routes to inject, no cluster, no virtual addresses to claim,
                // no Load Sharing releases.
                Output::WriteTun { .. }
                | Output::RouteAdd { .. }
                | Output::RouteDel { .. }
                | Output::RouteInject { .. }
                | Output::RouteWithdraw { .. }
                | Output::ClaimAddress { .. }
                | Output::ReleaseAddress { .. }
                | Output::FullSyncConnect { .. } => {}
            }
        }
    }

    fn assigned(&mut self, now: Duration, reply: &rampart_wire::ike::CfgReply, fx: &mut ClientFx) {
        let Phase::Running(s) = &mut self.phase else {
            return;
        };
        s.lost_at = None;
        let Some(&addr) = reply.ip4_addresses.first() else {
            fx.logs.push(format!(
                "client {}: the gateway assigned no IPv4 address",
                self.name
            ));
            return;
        };
        let transport = transport_name(s.transport);
        let first = !s.assigned;
        s.assigned = true;
        if first {
            fx.logs.push(format!(
                "client {}: connected over {transport} in {} ms: address {addr}",
                self.name,
                now.saturating_sub(s.started).as_millis()
            ));
            self.connected.push((now, transport));
            let sa = ike_sa_of(&s.engine, self.base_hint + now);
            self.ike_sas.push(sa.unwrap_or_default());
            self.entry_connected(now, fx);
            if let Some(list) = &reply.entry_points {
                self.learn(self.base_hint + now, list, fx);
            }
        }
        self.connected_once = true;
        self.backoff = Duration::from_secs(1);
        if self.virtual_addr != Some(addr) {
            self.inner.set_address(Some(addr));
            self.virtual_addr = Some(addr);
            self.addresses.push((now, addr));
        }
        for p in std::mem::take(&mut self.pending) {
            self.inner.start_sender(p.transfer, p.remote, p.via, p.rng);
        }
    }

    /// Phase work: the ladder, the session's stream and timers.
    fn step(&mut self, base: Instant, now: Duration, fx: &mut ClientFx) -> bool {
        match &mut self.phase {
            Phase::Stopped => false,
            Phase::Waiting { at } => {
                if now < *at {
                    return false;
                }
                self.begin_round(base, now, fx);
                true
            }
            Phase::Probing(_) => self.step_probe(base, now, fx),
            Phase::Searching(_) => self.step_search(base, now, fx),
            Phase::Running(_) => self.step_session(base, now, fx),
        }
    }

    fn start_search(&mut self, base: Instant, now: Duration, fx: &mut ClientFx) {
        let mut proxies = Vec::new();
        match &self.profile.proxy {
            ProxySetting::None | ProxySetting::Environment => {}
            ProxySetting::Url { url, credentials } => match Proxy::from_url(url) {
                Ok(mut p) => match p.host.parse::<Ipv4Addr>() {
                    Ok(a) => {
                        if let Some((user, password)) = credentials {
                            p.credentials = Some(Credentials {
                                user: user.clone(),
                                password: password.to_string(),
                            });
                        }
                        proxies.push((p, a));
                    }
                    Err(_) => fx.logs.push(format!(
                        "client {}: proxy {url}: the lab has no DNS; connecting directly",
                        self.name
                    )),
                },
                Err(e) => fx.logs.push(format!(
                    "client {}: proxy {url} is not usable ({e}); connecting directly",
                    self.name
                )),
            },
            ProxySetting::Pac { location, .. } => {
                fx.logs.push(format!(
                    "client {}: PAC {location}: not simulated; connecting directly",
                    self.name
                ));
            }
        }
        let ts: Vec<Transport> = self
            .profile
            .transports
            .iter()
            .map(|t| match t {
                ClientTransport::Udp => Transport::Udp,
                ClientTransport::Tcp => Transport::Tcp,
                ClientTransport::Tls => Transport::Tls,
            })
            .collect();
        // The proxy list always ends in DIRECT here (a profile's `proxy` URL): the direct
        // stream rungs stay.
        let Some(config) = LadderConfig::standard(&ts, proxies.len()) else {
            self.fail_search(now, "the profile allows no transport".into(), fx);
            return;
        };
        let rungs = config.rungs.clone();
        let mut ladder = Ladder::new(config);
        ladder.start(base + now);
        self.phase = Phase::Searching(Box::new(Search {
            ladder,
            attempts: rungs.iter().map(|_| None).collect(),
            rungs,
            proxies,
            started: now,
        }));
        self.step_search(base, now, fx);
    }

    fn step_search(&mut self, base: Instant, now: Duration, fx: &mut ClientFx) -> bool {
        let t = base + now;
        let mut progress = false;
        for _ in 0..16 {
            let Phase::Searching(search) = &mut self.phase else {
                return progress;
            };
            if search.ladder.poll_timeout().is_some_and(|d| d <= t) {
                search.ladder.handle_timeout(t);
            }
            let mut acted = false;
            while let Some(a) = search.ladder.poll_action() {
                acted = true;
                match a {
                    Action::Start(i) => {
                        let rung = search.rungs[i].clone();
                        let attempt = match rung.transport {
                            Transport::Udp => {
                                let spi = self.rng.next_u64() | 1;
                                let port = self.next_probe_port;
                                self.next_probe_port =
                                    self.next_probe_port.wrapping_add(1).max(33000);
                                Attempt::Udp {
                                    spi,
                                    port,
                                    request: probe_request(spi, &mut self.rng),
                                    next: now,
                                    interval: PROBE_RETRANSMIT,
                                }
                            }
                            Transport::Tcp | Transport::Tls => {
                                let tls = rung.transport == Transport::Tls;
                                let port = if tls {
                                    self.profile.visitor_port
                                } else {
                                    self.profile.tcp_port
                                };
                                let proxy = rung.proxy.and_then(|p| search.proxies.get(p).cloned());
                                Attempt::Stream(Box::new(StreamConn::start(
                                    &mut self.outer,
                                    (self.gateway, port),
                                    proxy,
                                    if tls { self.tls.clone() } else { None },
                                )))
                            }
                        };
                        search.attempts[i] = Some(attempt);
                    }
                    Action::Cancel(i) => {
                        if let Some(Attempt::Stream(mut c)) = search.attempts[i].take() {
                            c.abort(&mut self.outer);
                        }
                    }
                    Action::Done(Outcome::Chosen { rung, why }) => {
                        let attempt = search.attempts[rung].take();
                        let r = search.rungs[rung].clone();
                        let started = search.started;
                        for a in search.attempts.iter_mut() {
                            if let Some(Attempt::Stream(mut c)) = a.take() {
                                c.abort(&mut self.outer);
                            }
                        }
                        self.chosen(base, now, started, &r, attempt, why, fx);
                        return true;
                    }
                    Action::Done(Outcome::AllFailed(v)) => {
                        let summary = v
                            .iter()
                            .map(|(i, why)| format!("{}: {why}", search.rungs[*i]))
                            .collect::<Vec<_>>()
                            .join("; ");
                        self.abort_search();
                        let why = format!("no transport reached the gateway: {summary}");
                        self.entry_failed(base, now);
                        if !self.order.is_empty() {
                            fx.logs.push(format!(
                                "client {}: entry point {}: {why}",
                                self.name, self.base.entry_points[self.entry_idx]
                            ));
                            self.next_entry(base, now, fx);
                            return true;
                        }
                        self.fail_search(now, why, fx);
                        return true;
                    }
                }
            }
            // The attempts.
            let Phase::Searching(search) = &mut self.phase else {
                return progress;
            };
            for i in 0..search.attempts.len() {
                match &mut search.attempts[i] {
                    Some(Attempt::Udp {
                        port,
                        request,
                        next,
                        interval,
                        ..
                    }) if now >= *next => {
                        self.ident = self.ident.wrapping_add(1);
                        fx.send.push(packet::build_udp(
                            self.addr,
                            *port,
                            self.gateway,
                            IKE_PORT,
                            self.ident,
                            request,
                        ));
                        *next = now + *interval;
                        *interval *= 2;
                        acted = true;
                    }
                    Some(Attempt::Stream(c)) => {
                        let mut ignored = Vec::new();
                        match c.step(&mut self.outer, &mut self.scratch, &mut ignored) {
                            Event::Nothing => {}
                            Event::Connected => {
                                search.ladder.on_success(t, i);
                                acted = true;
                            }
                            Event::Failed(why) => {
                                search.attempts[i] = None;
                                search.ladder.on_failure(t, i, why);
                                acted = true;
                            }
                        }
                    }
                    Some(Attempt::Udp { .. }) | None => {}
                }
            }
            progress |= acted;
            if !acted {
                break;
            }
        }
        progress
    }

    fn abort_search(&mut self) {
        if let Phase::Searching(search) = &mut self.phase {
            for a in search.attempts.iter_mut() {
                if let Some(Attempt::Stream(mut c)) = a.take() {
                    c.abort(&mut self.outer);
                }
            }
        }
    }

    /// An attempt failed before a tunnel: the first ends the client, later ones are retried.
    fn fail_search(&mut self, now: Duration, why: String, fx: &mut ClientFx) {
        if self.connected_once {
            fx.logs.push(format!(
                "client: attempt failed: {why}; next try in {} s",
                self.backoff.as_secs()
            ));
            self.phase = Phase::Waiting {
                at: now + self.backoff,
            };
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        } else {
            fx.logs.push(format!("client {}: {why}", self.name));
            self.phase = Phase::Stopped;
        }
    }

    /// The ladder chose `rung`: the engine for its transport.
    #[allow(clippy::too_many_arguments)]
    fn chosen(
        &mut self,
        base: Instant,
        now: Duration,
        started: Duration,
        rung: &Rung,
        attempt: Option<Attempt>,
        why: String,
        fx: &mut ClientFx,
    ) {
        let (transport, stream) = match (rung.transport, attempt) {
            (Transport::Udp, _) => (ClientTransport::Udp, None),
            (t, Some(Attempt::Stream(c))) => (
                if t == Transport::Tls {
                    ClientTransport::Tls
                } else {
                    ClientTransport::Tcp
                },
                Some(c),
            ),
            (_, _) => {
                self.fail_search(now, "the chosen stream is gone".into(), fx);
                return;
            }
        };
        let reason = match &stream {
            Some(c) => format!("{why}; {}", c.path),
            None => why,
        };
        let name = transport_name(transport);
        fx.logs.push(format!(
            "client {}: transport {name} chosen in {} ms ({reason})",
            self.name,
            now.saturating_sub(started).as_millis()
        ));
        let gw = IpAddr::V4(self.gateway);
        let local_ip = IpAddr::V4(self.addr);
        let config = self.profile.node_config(local_ip, gw, transport);
        let nat_t_port = config.gateway.nat_t_port;
        let (local, remote) = match &stream {
            Some(_) => (
                SocketAddr::new(local_ip, config.gateway.nat_t_port),
                SocketAddr::new(gw, config.gateway.nat_t_port),
            ),
            None => (
                SocketAddr::new(local_ip, IKE_PORT),
                SocketAddr::new(gw, IKE_PORT),
            ),
        };
        let engine = match Gateway::new(config, base + now, self.rng.fork()) {
            Ok(mut g) => {
                // As the client shell does: `pmtu_probe = false` leaves only ICMP.
                g.set_pmtu_policy(rampart_node::pmtu::PmtuPolicy {
                    probe: self.profile.pmtu_probe,
                    ..rampart_node::pmtu::PmtuPolicy::default()
                });
                // As the client shell does: a reconnect asks for the address it had.
                if let Some(a) = self.virtual_addr {
                    g.prefer_virtual_address(a);
                }
                g
            }
            Err(e) => {
                self.fail_search(now, format!("cannot start the IKE engine: {e}"), fx);
                return;
            }
        };
        // As the shell logs it: the stream's TCP ends for a stream, the IKE sockets for UDP.
        let (shown_remote, shown_local) = match &stream {
            Some(c) => (
                SocketAddr::new(
                    gw,
                    if transport == ClientTransport::Tls {
                        self.profile.visitor_port
                    } else {
                        self.profile.tcp_port
                    },
                ),
                SocketAddr::new(local_ip, c.local_port),
            ),
            None => (remote, local),
        };
        fx.logs.push(format!(
            "client {}: {name} to {shown_remote} from {shown_local}",
            self.name
        ));
        let is_stream = stream.is_some();
        self.phase = Phase::Running(Box::new(Session {
            transport,
            engine,
            stream,
            local,
            remote,
            started,
            assigned: false,
            lost_at: None,
            nat_t_port,
            roaming: None,
            reattach: None,
            // A UDP tunnel is watched only when there is another entry point to move to.
            watch: (is_stream || self.gateways.len() > 1).then(|| {
                let cfg = if is_stream {
                    StreamWatchConfig::default()
                } else {
                    StreamWatchConfig::datagrams()
                };
                StreamWatch::new(cfg, base + now)
            }),
        }));
        if let Phase::Running(s) = &mut self.phase {
            s.engine.handle_timeout(base + now);
        }
        self.drain(base, now, fx);
    }

    fn step_session(&mut self, base: Instant, now: Duration, fx: &mut ClientFx) -> bool {
        if !matches!(self.phase, Phase::Running(_)) {
            return false;
        }
        let mut progress = self.step_reattach(base, now, fx);
        let mut closed = None;
        // Read frames, hand them to the engine, write what it queued; until quiet.
        for _ in 0..64 {
            let Phase::Running(s) = &mut self.phase else {
                return progress;
            };
            let Some(st) = s.stream.as_mut() else { break };
            let mut frames = Vec::new();
            if let Event::Failed(why) = st.step(&mut self.outer, &mut self.scratch, &mut frames) {
                closed = Some(why);
            }
            if frames.is_empty() {
                break;
            }
            progress = true;
            if let Some(w) = s.watch.as_mut() {
                w.on_rx(base + now);
            }
            let (local, remote) = (s.local, s.remote);
            for f in frames {
                let Phase::Running(s) = &mut self.phase else {
                    return progress;
                };
                let mut buf = f;
                let range = 0..buf.len();
                let ranges = std::slice::from_ref(&range);
                let mut out = [Disposition::Consumed];
                s.engine
                    .handle_udp_batch(base + now, local, remote, &mut buf, ranges, &mut out);
                let [d] = out;
                self.dispose(d, &buf, fx);
                self.drain(base, now, fx);
            }
            if closed.is_some() {
                break;
            }
        }
        let Phase::Running(s) = &mut self.phase else {
            return progress;
        };
        if s.engine.poll_timeout().is_some_and(|t| t <= base + now) {
            s.engine.handle_timeout(base + now);
            self.drain(base, now, fx);
            progress = true;
        }
        let Phase::Running(s) = &mut self.phase else {
            return progress;
        };
        let name = transport_name(s.transport);
        let watched = s.assigned && (s.stream.is_some() || s.transport == ClientTransport::Udp);
        let verdict = match (s.watch.as_mut(), watched) {
            (Some(w), true) => w.poll(base + now),
            _ => Verdict::Fine,
        };
        let silent = match verdict {
            Verdict::Fine => None,
            Verdict::Check => {
                // Frames went out and none came back: make the engine ask the gateway.
                s.engine.stream_renewed(base + now);
                if let Some(w) = s.watch.as_mut() {
                    w.checked(base + now);
                }
                self.drain(base, now, fx);
                return true;
            }
            Verdict::Lost { silent } => Some(silent),
        };
        if let (Some(silent), ClientTransport::Udp) = (silent, s.transport) {
            // Several entry points: this one went silent; the next connection goes elsewhere.
            let why = format!(
                "entry point {} silent for {} ms (a check went unanswered)",
                self.base.entry_points[self.entry_idx],
                silent.as_millis()
            );
            self.entry_failed(base, now);
            self.end_session(base, now, End::Reconnect(why), fx);
            return true;
        }
        if s.assigned && (closed.is_some() || silent.is_some()) {
            // RFC 9329: a new stream for the same IKE SA.
            let why = match closed {
                Some(why) => format!("{name} stream closed: {why}"),
                None => format!(
                    "{name} stream silent for {} ms (a check went unanswered)",
                    silent.unwrap_or_default().as_millis()
                ),
            };
            self.stream_lost(now, why, fx);
            return true;
        }
        let end = if let Some(why) = closed {
            Some(End::Failed(format!("{name} stream closed: {why}")))
        } else if !s.assigned && now >= s.started + ASSIGN_TIMEOUT {
            Some(End::Failed(format!(
                "no address from the gateway within {} s over {name} (authentication refused or no answer: see the log above)",
                ASSIGN_TIMEOUT.as_secs()
            )))
        } else if s.roaming.as_ref().is_some_and(|(d, _)| now >= *d) {
            self.moves.push((now, "reconnect".into()));
            Some(End::Reconnect(format!(
                "the MOBIKE move got no answer within {} s",
                ROAM_TIMEOUT.as_secs()
            )))
        } else if s.lost_at.is_some_and(|l| now >= l + LOST_GRACE) {
            self.entry.failed(base + now, self.entry_idx);
            Some(End::Reconnect(format!(
                "the tunnel was not re-established within {} s",
                LOST_GRACE.as_secs()
            )))
        } else {
            None
        };
        if let Some(end) = end {
            self.end_session(base, now, end, fx);
            return true;
        }
        progress
    }

    /// Ends the session: the engine says goodbye (its Deletes go out while the path still
    /// works), the stream closes; then a new search, a back-off or the end of the client.
    fn end_session(&mut self, base: Instant, now: Duration, end: End, fx: &mut ClientFx) {
        if let Phase::Running(s) = &mut self.phase {
            s.engine.close_sas(base + now);
        }
        self.drain(base, now, fx);
        let assigned = match std::mem::replace(&mut self.phase, Phase::Waiting { at: now }) {
            Phase::Running(mut s) => {
                if let Some(st) = s.stream.as_mut() {
                    st.finish(&mut self.outer, &mut self.scratch, self.addr);
                }
                if let Some(r) = s.reattach.as_mut() {
                    r.abort(&mut self.outer);
                }
                s.assigned
            }
            _ => false,
        };
        match end {
            End::Reconnect(why) => {
                fx.logs
                    .push(format!("client {}: reconnecting: {why}", self.name));
                self.connected_once |= assigned;
                self.backoff = Duration::from_secs(1);
                self.phase = Phase::Waiting { at: now };
            }
            End::Failed(why) => self.fail_search(now, why, fx),
        }
    }
}

impl Session {
    /// The UDP ports the engine listens on.
    fn engine_ports(&self) -> [u16; 2] {
        [IKE_PORT, self.nat_t_port]
    }
}

fn transport_name(t: ClientTransport) -> &'static str {
    match t {
        ClientTransport::Udp => "udp",
        ClientTransport::Tcp => "tcp",
        ClientTransport::Tls => "tls",
    }
}

/// The UDP probe's IKE_SA_INIT (`rampart_connect::udp_probe::request`, with the nonce from the
/// simulation's RNG so that runs repeat).
fn probe_request(spi: u64, rng: &mut Rng) -> Vec<u8> {
    let mut r = rampart_connect::udp_probe::request(spi, false);
    // The nonce is the last 32 bytes.
    let n = r.len();
    if n >= 32 {
        rng.fill(&mut r[n - 32..]);
    }
    r
}

/// The IKE SA of the client engine's gateway peer: (initiator SPI, responder SPI) in hex.
fn ike_sa_of(engine: &Gateway, now: Instant) -> Option<(String, String)> {
    let status = engine.status(now);
    let sa = status.peers.iter().find_map(|p| p.ike_sa.as_ref())?;
    Some((sa.spi_i.clone(), sa.spi_r.clone()))
}
