//! The gateway node: the IKE engine and the data plane behind one input/output surface, the
//! way str0m's `Rtc` puts its sub-engines behind `handle_input`/`poll_output`. Cluster and
//! entry-point engines join here later, writing into the same output stream.

mod control;
mod member;
mod mep;
mod ra;
mod reload;
mod share;
mod snapshot;

pub use mep::RouteInjection;
pub use reload::{ReloadError, ReloadReport};

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use rampart_cluster::ForwardKind;
use rampart_config::{GatewayConfig, PeerPolicy, StartAction};
use rampart_crypto::Rng;
use rampart_esp::CryptRunner;
use rampart_ike::{Ike, PeerId};

use crate::dataplane::{DataPlane, DataPlaneConfig, PeerSelector};
use crate::status::GatewayStatus;
use crate::{Disposition, NodeError, Output, RoamOutcome};
use control::IkeControl;
pub use snapshot::{SaSnapshot, SnapshotError, TunnelEspState, DEFAULT_TAKEOVER_MARGIN};

/// A site-to-site gateway (sans-IO). See `docs/design/contracts.md`.
///
/// Invariant: every input is followed by a drain of IKE's events (into the data plane or the
/// output queue), so `poll_output` after an input sees everything that input caused.
pub struct Gateway {
    config: GatewayConfig,
    started: Instant,
    ike: Ike,
    dataplane: DataPlane,
    outputs: VecDeque<Output>,
    /// `[cluster]`: the cluster engine and this member's replicas.
    cluster: Option<Box<crate::cluster::ClusterMember>>,
    /// Multiple Entry Points (satellite engine, probe responder) and route injection.
    mep: mep::MepNode,
    /// Seeds the MEP engine's random choices (one seed per engine built).
    mep_rng: Rng,
    /// Remote access: leases (gateway) and virtual addresses (client).
    ra: ra::RaNode,
}

/// A peer's settings by id. The IKE engine holds the one peer list; `None` for a removed peer
/// whose SAs are still winding down.
pub(crate) fn peer_policy(ike: &Ike, id: PeerId) -> Option<&PeerPolicy> {
    ike.peer(id)
}

/// Every peer with its id.
pub(crate) fn peer_policies(ike: &Ike) -> impl Iterator<Item = (PeerId, &PeerPolicy)> + '_ {
    ike.peers()
}

/// The local address of a peer (probe datagrams to an entry point leave from it).
fn peer_local(ike: &Ike, id: PeerId) -> Option<IpAddr> {
    ike.peer(id).map(|p| p.local_address)
}

/// The Multiple Entry Points parts of a configuration (read before its peers move into the
/// IKE engine): the satellite's engine, the probe responder and route injection.
pub(crate) fn mep_parts(
    config: &GatewayConfig,
) -> (
    Option<rampart_mep::MepConfig>,
    Option<rampart_mep::ResponderConfig>,
    Option<RouteInjection>,
) {
    let rim = config.rim.as_ref().map(|r| RouteInjection {
        table: r.table,
        protocol: r.protocol,
        metric: r.metric,
        peers: r.peers.clone(),
    });
    (config.mep_config(), config.mep_responder(), rim)
}

/// Every (remote prefix, peer) pair of the data plane's policy, in peer order: a prefix shared
/// by several peers (an entry-point group) has them all as candidates.
///
/// A remote-access gateway template's remote domain is its Office Mode pool: each client's
/// tunnel is then found by its virtual address ([`crate::dataplane::Tunnel::per_client`]).
pub(crate) fn remote_domains(ike: &Ike) -> Vec<(ipnet::IpNet, PeerId)> {
    peer_policies(ike)
        .flat_map(|(id, p)| {
            let nets: Vec<ipnet::IpNet> = match &p.remote_access {
                rampart_ike::RemoteAccess::Gateway(g) => vec![g.pool.prefix.trunc()],
                _ => p.remote_domain.clone(),
            };
            nets.into_iter().map(move |n| (n, id))
        })
        .collect()
}

/// The remote prefixes of remote-access client peers that no other peer also protects: the
/// client shell routes what the gateway assigned, so the node adds no route for them.
fn client_only_prefixes(ike: &Ike) -> Vec<ipnet::IpNet> {
    let others: Vec<ipnet::IpNet> = peer_policies(ike)
        .filter(|(_, p)| !ra::is_client(p))
        .flat_map(|(_, p)| p.remote_domain.iter().copied())
        .collect();
    peer_policies(ike)
        .filter(|(_, p)| ra::is_client(p))
        .flat_map(|(_, p)| p.remote_domain.iter().copied())
        .filter(|n| !others.contains(n))
        .collect()
}

impl Gateway {
    /// Builds the gateway. Every configured peer moves into the IKE engine, which then holds the
    /// only copy of the peer list (`config().peers` is empty), and is initiated per its start
    /// action.
    ///
    /// With `[cluster]` the boot id is 0: use [`Gateway::with_boot_id`].
    pub fn new(config: GatewayConfig, now: Instant, rng: Rng) -> Result<Gateway, NodeError> {
        Gateway::with_boot_id(config, now, rng, 0)
    }

    /// [`Gateway::new`] for a cluster member: `boot_id` must grow across restarts of this
    /// member (e.g. Unix time in milliseconds at start; see `rampart_cluster::Cluster::new`).
    /// A member starts standby: it initiates and answers nothing until the cluster makes it
    /// active.
    pub fn with_boot_id(
        mut config: GatewayConfig,
        now: Instant,
        mut rng: Rng,
        boot_id: u64,
    ) -> Result<Gateway, NodeError> {
        let ike_config = config.ike_config();
        let member_id = ike_config.member_id;
        let mut ike = Ike::new(ike_config, rng.fork());
        let cluster = config.cluster.clone().map(|cc| {
            Box::new(crate::cluster::ClusterMember::new(
                cc,
                now,
                boot_id,
                rng.fork(),
            ))
        });
        if cluster.is_some() {
            ike.set_passive(true);
            ike.track_changes();
        }
        let mep = mep_parts(&config);
        for peer in std::mem::take(&mut config.peers) {
            ike.add_peer(peer);
        }
        let remote_domains = remote_domains(&ike);
        let mep_rng = rng.fork();
        let dataplane = DataPlane::new(
            DataPlaneConfig {
                member_id,
                local_domain: config.local.domain.clone(),
                remote_domains,
                nat_t_port: config.gateway.nat_t_port,
            },
            config.firewall.clone(),
            now,
            rng,
        );
        let mut gateway = Gateway {
            config,
            started: now,
            ike,
            dataplane,
            outputs: VecDeque::new(),
            cluster,
            mep: mep::MepNode::default(),
            mep_rng,
            ra: ra::RaNode::default(),
        };
        if gateway.cluster.is_some() {
            let inspector = gateway.dataplane.inspector_mut();
            inspector.enable_change_stream(crate::cluster::CHANGE_STREAM_LIMIT);
            inspector.set_frozen(true);
        }
        // Routes for every remote domain go into the TUN device for the gateway's whole life, so
        // traffic without an SA is dropped here rather than leaking in clear text.
        for prefix in gateway.shutdown_routes() {
            gateway.outputs.push_back(Output::RouteAdd { prefix });
        }
        let always: Vec<PeerId> = peer_policies(&gateway.ike)
            .filter(|(_, p)| p.start_action == StartAction::Always)
            .map(|(id, _)| id)
            .collect();
        for id in always {
            gateway.ike.initiate(now, id);
        }
        let (dataplane, mut control) = gateway.parts(now);
        dataplane.sync(now, &mut control);
        gateway.apply_lease_share();
        let (mep, responder, rim) = mep;
        gateway.set_mep(now, mep, responder, rim);
        gateway.cluster_pump(now);
        Ok(gateway)
    }

    /// The data plane and a control plane over IKE and the output queue, borrowed apart.
    fn parts(&mut self, now: Instant) -> (&mut DataPlane, IkeControl<'_>) {
        let control = IkeControl {
            config: &self.config,
            ike: &mut self.ike,
            outputs: &mut self.outputs,
            mep: &mut self.mep,
            ra: &mut self.ra,
            now,
            cluster: self.cluster.as_deref_mut(),
        };
        (&mut self.dataplane, control)
    }

    /// A datagram from one of our UDP sockets: IKE on the IKE port; IKE, ESP-in-UDP or a NAT
    /// keepalive on the NAT-T port.
    pub fn handle_udp(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        buf: &mut [u8],
        packet: Range<usize>,
    ) -> Disposition {
        if let Some(c) = self.cluster.as_mut() {
            if let Some(link) = c.link_of(local) {
                let r = c
                    .engine
                    .handle_datagram(now, link, remote, &mut buf[packet]);
                self.after_input(now);
                return match r {
                    Ok(()) => Disposition::Consumed,
                    Err(_) => Disposition::Dropped(crate::DropReason::Malformed),
                };
            }
        }
        if self.is_probe_socket(local) {
            let data = buf.get(packet).unwrap_or_default();
            let answered = self
                .mep
                .handle_datagram(now, local, remote, data, &mut self.outputs);
            self.after_input(now);
            return if answered {
                Disposition::Consumed
            } else {
                Disposition::Dropped(crate::DropReason::Malformed)
            };
        }
        if self.ls_member() {
            let datagram = buf.get(packet.clone()).unwrap_or_default();
            if self.ls_forward_ike(now, local, remote, datagram) {
                self.after_input(now);
                return Disposition::Consumed;
            }
        }
        let (dataplane, mut control) = self.parts(now);
        let mut d = dataplane.handle_udp(now, local, remote, buf, packet.clone(), &mut control);
        if self.ls_member() {
            d = self.ls_after(now, d, ForwardKind::Udp, local, remote, &buf[packet]);
        }
        self.after_input(now);
        d
    }

    /// Load Sharing, after the data plane: an ESP packet of an SA another member owns goes
    /// there (`Consumed`); anything else handled here counts in this member's share.
    fn ls_after(
        &mut self,
        now: Instant,
        d: Disposition,
        kind: ForwardKind,
        local: SocketAddr,
        remote: SocketAddr,
        packet: &[u8],
    ) -> Disposition {
        if d == Disposition::Dropped(crate::DropReason::UnknownSpi)
            && self.ls_forward_esp(now, kind, local, remote, packet)
        {
            return Disposition::Consumed;
        }
        self.ls_count(&d);
        d
    }

    /// Whether `local` is the probe port of Multiple Entry Points (and not an IKE port).
    fn is_probe_socket(&self, local: SocketAddr) -> bool {
        (self.mep.engine.is_some() || self.mep.responder.is_some())
            && local.port() == self.mep.port
            && local.port() != self.config.gateway.ike_port
            && local.port() != self.config.gateway.nat_t_port
    }

    /// An ESP packet from the raw protocol-50 socket (IP header removed).
    pub fn handle_raw_esp(
        &mut self,
        now: Instant,
        local: IpAddr,
        remote: IpAddr,
        buf: &mut [u8],
        packet: Range<usize>,
    ) -> Disposition {
        let (dataplane, mut control) = self.parts(now);
        let mut d = dataplane.handle_raw_esp(now, local, remote, buf, packet.clone(), &mut control);
        if self.ls_member() {
            let (l, r) = (SocketAddr::new(local, 0), SocketAddr::new(remote, 0));
            d = self.ls_after(now, d, ForwardKind::RawEsp, l, r, &buf[packet]);
        }
        self.after_input(now);
        d
    }

    /// An ICMP port or host unreachable answered our UDP datagram from `local` to `remote` (the
    /// shell read it from the socket's error queue): a hint that the peer's NAT mapping is gone;
    /// IKE checks the peer (rate-limited), nothing moves.
    pub fn handle_unreachable(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr) {
        let (dataplane, mut control) = self.parts(now);
        dataplane.handle_unreachable(now, local, remote, &mut control);
        self.after_input(now);
    }

    /// See [`crate::Node::handle_path_mtu`]: an ICMP "fragmentation needed" / "packet too
    /// big" (or a local `EMSGSIZE`) for our datagram from `local` to `remote` named `mtu`. A
    /// remote-access client lowers the tunnel MTU of the gateway there (never below the
    /// floor, never up; `Output::TunnelMtu` with `IcmpTooBig`); any node lowers the MSS clamp
    /// of its tunnels to that address and counts the report.
    pub fn handle_path_mtu(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        mtu: u16,
    ) {
        let (dataplane, mut control) = self.parts(now);
        dataplane.handle_path_mtu(now, local, remote, mtu, &mut control);
        self.after_input(now);
    }

    /// Sets how remote-access client tunnels find their path MTU (probing on by default;
    /// the client shell turns it off for `pmtu_probe = false`).
    /// Remote-access client: ask every gateway peer for `address` in the next IKE_AUTH (the
    /// client shell builds a new node per connection and passes the address the last one had,
    /// so a reconnect keeps the Office Mode address when the gateway still has it free).
    pub fn prefer_virtual_address(&mut self, address: std::net::Ipv4Addr) {
        let clients: Vec<PeerId> = self
            .ike
            .peers()
            .filter(|(_, p)| ra::is_client(p))
            .map(|(id, _)| id)
            .collect();
        for id in clients {
            self.ike.prefer_virtual_address(id, address);
        }
    }

    pub fn set_pmtu_policy(&mut self, policy: crate::pmtu::PmtuPolicy) {
        self.dataplane.set_pmtu_policy(policy);
    }

    /// See [`crate::Node::roam`]. Every established IKE SA whose addresses we decide (we
    /// initiated it originally; MOBIKE, RFC 4555 3.1) towards a peer of `new_local`'s address
    /// family moves there (UPDATE_SA_ADDRESSES from `new_local` and our NAT-T port);
    /// `Output::Roamed` or `Output::RoamFailed` follows for each. All or nothing: when one of
    /// them cannot move (a stream transport, a peer without MOBIKE) none is touched and the
    /// reason comes back in `Unsupported`. SAs the peer decides for are left alone.
    pub fn roam(&mut self, now: Instant, new_local: IpAddr) -> RoamOutcome {
        let sas: Vec<(rampart_ike::IkeSaId, String)> = self
            .ike
            .status(now)
            .into_iter()
            .filter(|s| {
                s.state == rampart_ike::IkeSaStateKind::Established
                    && s.local.is_ipv4() == new_local.is_ipv4()
            })
            .map(|s| (s.ike_sa, s.peer_name))
            .collect();
        let mut movable = Vec::new();
        for (id, peer) in sas {
            match self.ike.can_update_addresses(id) {
                Ok(()) => movable.push((id, peer)),
                Err(rampart_ike::MobikeError::NotInitiator) => {}
                Err(e) => {
                    let why = format!("peer {peer}: cannot move the IKE SA: {e}");
                    tracing::info!("roam to {new_local}: {why}");
                    return RoamOutcome::Unsupported(why);
                }
            }
        }
        if movable.is_empty() {
            return RoamOutcome::Nothing;
        }
        let local = SocketAddr::new(new_local, self.config.gateway.nat_t_port);
        let mut moving = Vec::new();
        for (id, peer) in movable {
            match self.ike.update_addresses(now, id, local) {
                Ok(()) => moving.push(peer),
                // Checked above; the engine logs its own reasons.
                Err(e) => tracing::warn!("roam to {new_local}: peer {peer}: {e}"),
            }
        }
        let (dataplane, mut control) = self.parts(now);
        dataplane.sync(now, &mut control);
        self.after_input(now);
        if moving.is_empty() {
            RoamOutcome::Unsupported(format!("no IKE SA could move to {new_local}"))
        } else {
            RoamOutcome::Moving(moving)
        }
    }

    /// An IP packet from the TUN device, to be encrypted in place for its peer.
    pub fn handle_tun(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        packet: Range<usize>,
    ) -> Disposition {
        let (dataplane, mut control) = self.parts(now);
        let d = dataplane.handle_tun(now, buf, packet, &mut control);
        self.ls_count(&d);
        self.after_input(now);
        d
    }

    /// A batch of packets read from the TUN device: `bufs[i][packets[i]]` is one IP packet with
    /// head- and tailroom around it, as for [`Self::handle_tun`]; `out[i]` receives what to do
    /// with it (ranges into `bufs[i]`). All packets see the same `now`.
    ///
    /// Invariant: `out[i]` is written for every `i < packets.len()`; a batch whose slices have
    /// different lengths is handled up to the shortest, and the rest of `out` is `Dropped`.
    pub fn handle_tun_batch<B: AsMut<[u8]>>(
        &mut self,
        now: Instant,
        bufs: &mut [B],
        packets: &[Range<usize>],
        out: &mut [Disposition],
    ) {
        let (dataplane, mut control) = self.parts(now);
        dataplane.handle_tun_batch(now, bufs, packets, out, &mut control);
        if self.ls_carrying() {
            for d in out.iter().take(packets.len()) {
                self.ls_count(d);
            }
        }
        self.after_input(now);
    }

    /// A batch of datagrams that arrived together on the UDP socket bound to `local` from
    /// `remote` (one segmentation-offload read): all of them live in `buf`, at `packets[i]`,
    /// without overlapping. `out[i]` receives what to do with each (ranges into `buf`).
    pub fn handle_udp_batch(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        buf: &mut [u8],
        packets: &[Range<usize>],
        out: &mut [Disposition],
    ) {
        // Load Sharing: an IKE datagram in the batch may belong to another member; one at a
        // time then (rare: IKE among ESP of one flow).
        let ike_inside = self.ls_member()
            && local.port() == self.config.gateway.nat_t_port
            && packets.iter().any(|p| {
                buf.get(p.clone())
                    .is_some_and(|d| d.get(..4) == Some(&[0, 0, 0, 0][..]))
            });
        if self
            .cluster
            .as_ref()
            .is_some_and(|c| c.link_of(local).is_some())
            || self.is_probe_socket(local)
            || ike_inside
            || (self.ls_member() && local.port() == self.config.gateway.ike_port)
        {
            for (packet, slot) in packets.iter().zip(out.iter_mut()) {
                *slot = self.handle_udp(now, local, remote, buf, packet.clone());
            }
            return;
        }
        let (dataplane, mut control) = self.parts(now);
        dataplane.handle_udp_batch(now, local, remote, buf, packets, out, &mut control);
        if self.ls_member() {
            for (packet, d) in packets.iter().zip(out.iter_mut()) {
                let bytes = buf.get(packet.clone()).unwrap_or_default();
                *d = self.ls_after(now, d.clone(), ForwardKind::Udp, local, remote, bytes);
            }
        }
        self.after_input(now);
    }

    /// A batch of ESP packets from the raw socket bound to `local` (one `recvmmsg`): packet `i`
    /// came from `packets[i].0` and lives at `buf[packets[i].1]`.
    pub fn handle_raw_esp_batch(
        &mut self,
        now: Instant,
        local: IpAddr,
        buf: &mut [u8],
        packets: &[(IpAddr, Range<usize>)],
        out: &mut [Disposition],
    ) {
        let (dataplane, mut control) = self.parts(now);
        dataplane.handle_raw_esp_batch(now, local, buf, packets, out, &mut control);
        if self.ls_member() {
            for ((remote, packet), d) in packets.iter().zip(out.iter_mut()) {
                let bytes = buf.get(packet.clone()).unwrap_or_default();
                let (l, r) = (SocketAddr::new(local, 0), SocketAddr::new(*remote, 0));
                *d = self.ls_after(now, d.clone(), ForwardKind::RawEsp, l, r, bytes);
            }
        }
        self.after_input(now);
    }

    /// Sets who runs the cipher jobs of a batch; the default runs them on the calling thread.
    pub fn set_crypt_runner(&mut self, runner: Arc<dyn CryptRunner>) {
        self.dataplane.set_crypt_runner(runner);
    }

    /// Sets how a peer is chosen among the candidates of a remote prefix.
    pub fn set_peer_selector(&mut self, selector: Box<dyn PeerSelector>) {
        self.dataplane.set_peer_selector(selector);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(c) = self.cluster.as_mut() {
            if c.engine.poll_timeout().is_some_and(|t| t <= now) {
                c.engine.handle_timeout(now);
            }
        }
        if self.mep.engine.is_some() {
            self.mep.report_heard(now, &self.ike);
            if let Some(e) = self.mep.engine.as_mut() {
                if e.poll_timeout().is_some_and(|t| t <= now) {
                    e.handle_timeout(now);
                }
            }
        }
        self.ike.handle_timeout(now);
        let (dataplane, mut control) = self.parts(now);
        dataplane.handle_timeout(now, &mut control);
        self.after_input(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let data = self.dataplane.poll_timeout();
        let mut t = self.ike.poll_timeout().map_or(data, |t| t.min(data));
        if let Some(c) = self.cluster.as_ref().and_then(|c| c.poll_timeout()) {
            t = t.min(c);
        }
        if let Some(m) = self.mep.engine.as_ref().and_then(|m| m.poll_timeout()) {
            t = t.min(m);
        }
        Some(t)
    }

    /// After every input: the cluster's work, then the MEP engine's (probes, IKE probes,
    /// events) and the tunnel changes it and route injection follow.
    fn after_input(&mut self, now: Instant) {
        self.cluster_pump(now);
        if self.mep.engine.is_some() {
            let ike_used = self
                .mep
                .pump(now, &mut self.ike, peer_local, &mut self.outputs);
            if ike_used {
                let (dataplane, mut control) = self.parts(now);
                dataplane.sync(now, &mut control);
            }
        }
        self.mep
            .after_input(&self.ike, self.dataplane.tunnels(), &mut self.outputs);
    }

    /// Multiple Entry Points: the satellite's engine (`mep`, `None`: no entry-point group),
    /// the probe responder (`responder`, `None`: do not answer probes) and route injection
    /// (`rim`). Called at start and on every reload with the configuration's builders; an
    /// unchanged engine configuration keeps the running engine (probe state, connection
    /// bindings). Probe sockets may change: the shell asks [`Gateway::probe_sockets`] again.
    pub fn set_mep(
        &mut self,
        now: Instant,
        mep: Option<rampart_mep::MepConfig>,
        responder: Option<rampart_mep::ResponderConfig>,
        rim: Option<RouteInjection>,
    ) {
        let mut seed = [0u8; 32];
        self.mep_rng.fill(&mut seed);
        self.mep.configure(now, mep, responder, seed);
        self.mep.map_peers(&self.ike, self.dataplane.tunnels());
        self.mep
            .set_rim(rim, &self.ike, self.dataplane.tunnels(), &mut self.outputs);
        self.after_input(now);
    }

    /// The UDP sockets of the probe protocol the shell binds: the local address of every
    /// entry point's peer (satellite) and of every peer (responder), at the probe port. Empty
    /// without Multiple Entry Points.
    pub fn probe_sockets(&self) -> Vec<SocketAddr> {
        self.mep.probe_sockets(&self.ike)
    }

    /// `rampart ra status`: Office Mode pools and clients (gateway), virtual addresses
    /// (client); `None` without remote-access peers.
    pub fn ra_status(&self, now: Instant) -> Option<crate::status::RaStatus> {
        crate::status::ra_status(self, now)
    }

    /// `rampart mep status`: the groups, entry points and responder; `None` when the gateway
    /// neither probes nor answers probes.
    pub fn mep_status(&self, now: Instant) -> Option<rampart_mep::MepStatus> {
        self.mep.status(now)
    }

    /// Routes injected now (`[rim]`), for tests and the shell's bookkeeping.
    pub fn injected_routes(&self) -> Vec<ipnet::IpNet> {
        self.mep.injected().copied().collect()
    }

    /// See [`crate::Node::close_sas`].
    pub fn close_sas(&mut self, now: Instant) {
        let ids: Vec<rampart_ike::IkeSaId> =
            self.ike.status(now).into_iter().map(|s| s.ike_sa).collect();
        for id in ids {
            self.ike.delete_ike_sa(now, id);
        }
        // The engine's Transmit events become outputs.
        let (dataplane, mut control) = self.parts(now);
        dataplane.sync(now, &mut control);
        self.after_input(now);
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Routes to withdraw when the gateway stops: every remote domain, and the IP Pool NAT
    /// pools (local hosts answer pool addresses through the TUN device). A remote-access
    /// gateway's Office Mode pools are among the remote domains; a remote-access client's
    /// remote domain is not (the client shell routes what the gateway assigned).
    pub fn shutdown_routes(&self) -> Vec<ipnet::IpNet> {
        let client_only = client_only_prefixes(&self.ike);
        let mut routes = self.dataplane.routes();
        routes.retain(|n| !client_only.contains(n));
        routes
    }

    /// The connection table for `rampart conn list` (at most `limit` entries).
    pub fn conn_list(&self, now: Instant, limit: usize) -> rampart_inspect::ConnList {
        self.dataplane.conn_list(now, limit)
    }

    /// Inspection counters for `rampart conn stats`.
    pub fn conn_stats(&self) -> rampart_inspect::InspectStats {
        self.dataplane.conn_stats()
    }

    pub fn status(&self, now: Instant) -> GatewayStatus {
        crate::status::build(self, now)
    }

    pub(crate) fn config(&self) -> &GatewayConfig {
        &self.config
    }
    pub(crate) fn ike(&self) -> &Ike {
        &self.ike
    }
    pub(crate) fn dataplane(&self) -> &DataPlane {
        &self.dataplane
    }
    pub(crate) fn mep(&self) -> &mep::MepNode {
        &self.mep
    }
    pub(crate) fn ra(&self) -> &ra::RaNode {
        &self.ra
    }
    pub(crate) fn started(&self) -> Instant {
        self.started
    }
}
