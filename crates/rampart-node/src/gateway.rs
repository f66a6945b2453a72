//! The gateway node: IKE control traffic in, ESP data traffic through, one output stream out.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_config::{GatewayConfig, StartAction};
use rampart_crypto::CryptoError;
use rampart_crypto::Rng;
use rampart_esp::udp_encap::{self, Classified};
use rampart_esp::{
    CryptJob, CryptRunner, InboundSa, Inline, Lifetime, OpenError, OutboundSa, SaConfig,
};
use rampart_ike::{ChildSaId, ChildSaKeys, Ike, IkeEvent, PeerId};
use rampart_inspect::{Inspector, Side, Verdict};
use rampart_wire::ip::PacketInfo;

use crate::policy::Policy;
use crate::status::{DataPlaneCounters, GatewayStatus};
use crate::tunnel::{Tunnel, Tunnels};
use crate::{Disposition, DropReason, LogLevel, LogRecord, NodeError, Output};

mod batch;

/// How often the node looks at ESP lifetimes when nothing else wakes it.
const LIFETIME_CHECK: Duration = Duration::from_secs(1);

/// A site-to-site gateway (sans-IO). See `docs/design/contracts.md`.
pub struct Gateway {
    config: GatewayConfig,
    started: Instant,
    ike: Ike,
    policy: Policy,
    tunnels: Tunnels,
    rng: Rng,
    outputs: VecDeque<Output>,
    counters: DataPlaneCounters,
    next_lifetime_check: Instant,
    /// Stateful inspection of every packet that enters or leaves a tunnel.
    inspect: Inspector,
    /// Runs the cipher jobs of a batch (on other threads if the shell set a pool).
    crypt: Arc<dyn CryptRunner>,
    /// The last (tunnel, instant) reported to IKE as carrying traffic: a batch shares one
    /// `now`, so IKE hears of each tunnel once per batch, not once per packet.
    last_child_traffic: Option<(ChildSaId, Instant)>,
    /// The packets of the current batch whose cipher job is prepared and not yet run; holds at
    /// most [`batch::CRYPT_CHUNK`] (allocated once).
    pending: Vec<batch::Pending>,
}

/// What the first step of [`Gateway::handle_tun`] decided.
enum TunStep {
    Done(Disposition),
    /// Prepared for sealing: `esp` is the ESP packet's range, `disposition` where it goes once
    /// the job ran.
    Seal {
        tunnel: ChildSaId,
        job: CryptJob,
        esp: Range<usize>,
        disposition: Disposition,
    },
}

/// The drop reason for an ESP packet that failed to open.
fn open_drop_reason(e: &OpenError) -> DropReason {
    match e {
        OpenError::Replayed(_) | OpenError::TooOld(_) => DropReason::Replay,
        OpenError::AuthenticationFailed => DropReason::Authentication,
        OpenError::Expired => DropReason::Lifetime,
        _ => DropReason::Malformed,
    }
}

/// What installing a tunnel needs from its peer's policy (copied out of the IKE engine).
struct PeerParams {
    name: String,
    child_lifetime_bytes: Option<u64>,
    replay_window: u32,
}

impl Gateway {
    /// Builds the gateway; every configured peer is added to the IKE engine (which then holds
    /// the only copy of the peer list: `config().peers` is empty) and initiated per its start
    /// action.
    pub fn new(
        mut config: GatewayConfig,
        now: Instant,
        mut rng: Rng,
    ) -> Result<Gateway, NodeError> {
        let ike_config = config.ike_config();
        let member_id = ike_config.member_id;
        let mut ike = Ike::new(ike_config, rng.fork());
        for peer in std::mem::take(&mut config.peers) {
            ike.add_peer(peer);
        }
        let policy = Policy::new(&config.local.domain, ike.peers());
        let inspect = Inspector::new(
            config.firewall.clone(),
            member_id,
            rng.fork().next_u64(),
            now,
        );
        let mut gateway = Gateway {
            config,
            started: now,
            ike,
            policy,
            tunnels: Tunnels::default(),
            rng,
            outputs: VecDeque::new(),
            counters: DataPlaneCounters::default(),
            next_lifetime_check: now + LIFETIME_CHECK,
            inspect,
            crypt: Arc::new(Inline),
            pending: Vec::with_capacity(batch::CRYPT_CHUNK),
            last_child_traffic: None,
        };
        // Routes for every remote domain go into the TUN device for the gateway's whole life, so
        // traffic without an SA is dropped here rather than leaking in clear text.
        for prefix in gateway.shutdown_routes() {
            gateway.outputs.push_back(Output::RouteAdd { prefix });
        }
        let always: Vec<PeerId> = gateway
            .ike
            .peers()
            .filter(|(_, p)| p.start_action == StartAction::Always)
            .map(|(id, _)| id)
            .collect();
        for peer in always {
            gateway.ike.initiate(now, peer);
        }
        gateway.drain_ike(now);
        Ok(gateway)
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
        let Some(datagram) = buf.get(packet.clone()) else {
            return self.drop(DropReason::Malformed);
        };
        if local.port() != self.config.gateway.nat_t_port {
            self.ike.handle_datagram(now, local, remote, datagram);
            self.drain_ike(now);
            return Disposition::Consumed;
        }
        match udp_encap::classify(datagram) {
            Classified::Ike(range) => {
                let start = packet.start + range.start;
                let end = packet.start + range.end;
                self.ike
                    .handle_datagram(now, local, remote, &buf[start..end]);
                self.drain_ike(now);
                Disposition::Consumed
            }
            Classified::Keepalive => Disposition::Consumed,
            Classified::Esp(range) => {
                let esp = packet.start + range.start..packet.start + range.end;
                self.handle_esp(now, buf, esp, Some((local, remote)))
            }
            Classified::Invalid => self.drop(DropReason::Malformed),
        }
    }

    /// An ESP packet from the raw protocol-50 socket (IP header removed).
    pub fn handle_raw_esp(
        &mut self,
        now: Instant,
        _local: IpAddr,
        _remote: IpAddr,
        buf: &mut [u8],
        packet: Range<usize>,
    ) -> Disposition {
        self.handle_esp(now, buf, packet, None)
    }

    /// `udp`: the (local, remote) socket addresses when the packet came in UDP. An authenticated
    /// packet from a new remote address moves the peer there (its NAT mapping changed).
    fn handle_esp(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        packet: Range<usize>,
        udp: Option<(SocketAddr, SocketAddr)>,
    ) -> Disposition {
        let (id, job) = match self.esp_prepare(buf, packet.clone()) {
            Ok(prepared) => prepared,
            Err(disposition) => return disposition,
        };
        let crypted = match self.tunnels.get(id) {
            Some(tunnel) => job.run(tunnel.inbound.key(), &mut buf[packet.clone()]),
            None => return self.drop(DropReason::UnknownSpi),
        };
        let bound = 0..buf.len();
        self.esp_finish(now, buf, packet, bound, id, &job, crypted, udp)
    }

    /// The first step of opening `buf[packet]`: counts it, finds its SA by SPI and prepares the
    /// cipher job ([`InboundSa::prepare_open`]); an error is the packet's disposition.
    fn esp_prepare(
        &mut self,
        buf: &[u8],
        packet: Range<usize>,
    ) -> Result<(ChildSaId, CryptJob), Disposition> {
        self.counters.esp_packets_in += 1;
        let Some(spi_bytes) = buf.get(packet.start..packet.start + 4) else {
            return Err(self.drop(DropReason::Malformed));
        };
        let spi = u32::from_be_bytes([spi_bytes[0], spi_bytes[1], spi_bytes[2], spi_bytes[3]]);
        let Some((id, tunnel)) = self.tunnels.by_inbound_spi(spi) else {
            return Err(self.drop(DropReason::UnknownSpi));
        };
        match tunnel.inbound.prepare_open(buf, packet) {
            Ok(job) => Ok((id, job)),
            Err(e) => Err(self.drop(open_drop_reason(&e))),
        }
    }

    /// The last step of opening `buf[packet]` after its cipher job ran (`crypted`): replay
    /// window, inner policy check, NAT mapping moves, inspection. `bound` is the part of `buf`
    /// this packet may use for a reject built in place (its own bytes in a batch, whose
    /// neighbours hold other packets).
    #[allow(clippy::too_many_arguments)]
    fn esp_finish(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        packet: Range<usize>,
        bound: Range<usize>,
        id: ChildSaId,
        job: &CryptJob,
        crypted: Result<(), CryptoError>,
        udp: Option<(SocketAddr, SocketAddr)>,
    ) -> Disposition {
        // Ids are never reused, so a tunnel removed since the prepare step is simply gone.
        let Some(tunnel) = self.tunnels.get_mut(id) else {
            return self.drop(DropReason::UnknownSpi);
        };
        let opened = match tunnel.inbound.finish_open(buf, packet, job, crypted) {
            Ok(opened) => opened,
            Err(e) => return self.drop(open_drop_reason(&e)),
        };
        let rekey_due = tunnel.take_rekey_due();
        // Dummy packets (RFC 4303 2.6, next header 59) carry nothing for the TUN device.
        if opened.next_header == rampart_esp::next_header::NO_NEXT_HEADER {
            self.note_child_traffic(now, id);
            if rekey_due {
                self.ike.rekey_child(now, id);
                self.drain_ike(now);
            }
            return Disposition::Consumed;
        }
        // The decrypted packet must be one the SA was negotiated for (RFC 4301 5.2, step 4).
        let inner = &buf[opened.payload.clone()];
        let allowed = match PacketInfo::parse(inner) {
            Ok(info) => {
                let (proto, sport, dport) = (info.protocol, info.src_port, info.dst_port);
                tunnel
                    .remote_ts
                    .iter()
                    .any(|ts| ts.matches(info.src, proto, sport))
                    && tunnel
                        .local_ts
                        .iter()
                        .any(|ts| ts.matches(info.dst, proto, dport))
            }
            Err(_) => false,
        };
        if !allowed {
            return self.drop(DropReason::PolicyMismatch);
        }
        let moved = udp.filter(|&(local, remote)| {
            tunnel.encap && (tunnel.remote != remote || tunnel.local.ip() != local.ip())
        });
        if let Some((local, remote)) = moved {
            // Rare (a NAT mapping changed): the events update every tunnel of the IKE SA.
            if self.ike.esp_peer_address(id, local, remote) {
                self.drain_ike(now);
            }
        }
        self.note_child_traffic(now, id);
        if rekey_due {
            self.ike.rekey_child(now, id);
            self.drain_ike(now);
        }
        let verdict = self
            .inspect
            .handle(now, Side::Tunnel, &mut buf[opened.payload.clone()]);
        self.drain_inspect_logs();
        match verdict {
            Verdict::Accept => {}
            Verdict::Drop(_) => return self.drop(DropReason::Firewall),
            Verdict::Reject => {
                self.counters.dropped_firewall += 1;
                let Some(peer) = self.tunnels.get_mut(id).map(|t| t.peer) else {
                    return Disposition::Dropped(DropReason::Firewall);
                };
                return self.reject_into_tunnel(peer, buf, opened.payload, bound);
            }
        }
        self.counters.tun_packets_out += 1;
        Disposition::WriteTun {
            data: opened.payload,
        }
    }

    /// Answers a rejected packet that came out of `peer`'s tunnel: the RST or ICMP error is
    /// built in place and sealed for the same peer.
    ///
    /// The reply and its ESP framing stay inside `buf[bound]`; a reply that does not fit is not
    /// sent (the packet stays dropped).
    fn reject_into_tunnel(
        &mut self,
        peer: PeerId,
        buf: &mut [u8],
        packet: Range<usize>,
        bound: Range<usize>,
    ) -> Disposition {
        let Some(buf) = buf.get_mut(..bound.end) else {
            return Disposition::Dropped(DropReason::Firewall);
        };
        let Some(reply) = rampart_inspect::reject::build(buf, packet) else {
            return Disposition::Dropped(DropReason::Firewall);
        };
        let Some((_, tunnel)) = self.tunnels.active_for(peer) else {
            return self.drop(DropReason::NoSa);
        };
        // The room the SA that seals the reply needs, inside `bound`.
        if reply.start < bound.start + tunnel.outbound.headroom()
            || buf.len() < reply.end + tunnel.outbound.tailroom(reply.len())
        {
            return Disposition::Dropped(DropReason::Firewall);
        }
        let next_header = if buf[reply.start] >> 4 == 6 {
            rampart_esp::next_header::IPV6
        } else {
            rampart_esp::next_header::IPV4
        };
        let (local, remote, encap) = (tunnel.local, tunnel.remote, tunnel.encap);
        let sealed = tunnel.outbound.seal(buf, reply, next_header);
        self.sealed(sealed, local, remote, encap)
    }

    fn drain_inspect_logs(&mut self) {
        while let Some(record) = self.inspect.poll_log() {
            let level = if record.warn {
                LogLevel::Warn
            } else {
                LogLevel::Info
            };
            self.log(level, record.message);
        }
    }

    /// An IP packet from the TUN device, to be encrypted in place for its peer.
    pub fn handle_tun(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        packet: Range<usize>,
    ) -> Disposition {
        match self.tun_prepare(now, buf, packet) {
            TunStep::Done(disposition) => disposition,
            TunStep::Seal {
                tunnel,
                job,
                esp,
                disposition,
            } => {
                let crypted = self
                    .tunnels
                    .get(tunnel)
                    .map(|t| job.run(t.outbound.key(), &mut buf[esp]));
                match crypted {
                    Some(Ok(())) => disposition,
                    _ => self.crypt_failed(),
                }
            }
        }
    }

    /// Everything of [`Self::handle_tun`] but the cipher call: inspection, policy, SA choice
    /// and [`OutboundSa::prepare_seal`](rampart_esp::OutboundSa::prepare_seal).
    fn tun_prepare(&mut self, now: Instant, buf: &mut [u8], packet: Range<usize>) -> TunStep {
        self.counters.tun_packets_in += 1;
        let Some(inner) = buf.get(packet.clone()) else {
            return TunStep::Done(self.drop(DropReason::Malformed));
        };
        if PacketInfo::parse(inner).is_err() {
            return TunStep::Done(self.drop(DropReason::Malformed));
        }
        // Inspection first: NAT may change the addresses the policy looks at.
        let verdict = self
            .inspect
            .handle(now, Side::Inside, &mut buf[packet.clone()]);
        self.drain_inspect_logs();
        match verdict {
            Verdict::Accept => {}
            Verdict::Drop(_) => return TunStep::Done(self.drop(DropReason::Firewall)),
            Verdict::Reject => {
                self.counters.dropped_firewall += 1;
                return TunStep::Done(match rampart_inspect::reject::build(buf, packet) {
                    Some(data) => Disposition::WriteTun { data },
                    None => Disposition::Dropped(DropReason::Firewall),
                });
            }
        }
        let info = match PacketInfo::parse(&buf[packet.clone()]) {
            Ok(info) => info,
            Err(_) => return TunStep::Done(self.drop(DropReason::Malformed)),
        };
        let Some(peer) = self.policy.outbound_peer(info.src, info.dst) else {
            return TunStep::Done(self.drop(DropReason::NoPolicy));
        };
        let Some((id, tunnel)) = self.tunnels.active_for(peer) else {
            let on_traffic = self
                .ike
                .peer(peer)
                .is_some_and(|p| p.start_action == StartAction::OnTraffic);
            if on_traffic {
                self.ike.acquire(now, peer);
                self.drain_ike(now);
            }
            return TunStep::Done(self.drop(DropReason::NoSa));
        };
        let next_header = if info.src.is_ipv4() {
            rampart_esp::next_header::IPV4
        } else {
            rampart_esp::next_header::IPV6
        };
        let (local, remote, encap) = (tunnel.local, tunnel.remote, tunnel.encap);
        let prepared = tunnel.outbound.prepare_seal(buf, packet, next_header);
        if tunnel.take_rekey_due() {
            self.ike.rekey_child(now, id);
            self.drain_ike(now);
        }
        match prepared {
            Ok((esp, job)) => TunStep::Seal {
                tunnel: id,
                job,
                disposition: self.sealed(Ok(esp.clone()), local, remote, encap),
                esp,
            },
            Err(e) => TunStep::Done(self.sealed(Err(e), local, remote, encap)),
        }
    }

    /// Tells IKE that tunnel `id` carried inbound traffic at `now` (liveness checks only run on
    /// idle SAs), once per tunnel and instant.
    fn note_child_traffic(&mut self, now: Instant, id: ChildSaId) {
        if self.last_child_traffic != Some((id, now)) {
            self.last_child_traffic = Some((id, now));
            self.ike.child_traffic(now, id);
        }
    }

    /// A cipher job that failed although its SA prepared it (a bug, not an attack): the packet
    /// is dropped and counted as malformed.
    fn crypt_failed(&mut self) -> Disposition {
        tracing::error!("ESP cipher call failed on a prepared packet; packet dropped");
        self.drop(DropReason::Malformed)
    }

    /// Where a sealed ESP packet goes: ESP-in-UDP from our NAT-T port, or raw ESP.
    fn sealed(
        &mut self,
        sealed: Result<Range<usize>, rampart_esp::SealError>,
        local: SocketAddr,
        remote: SocketAddr,
        encap: bool,
    ) -> Disposition {
        let Ok(data) = sealed else {
            return self.drop(DropReason::Lifetime);
        };
        self.counters.esp_packets_out += 1;
        if encap {
            Disposition::SendUdp {
                local: SocketAddr::new(local.ip(), self.config.gateway.nat_t_port),
                remote,
                data,
            }
        } else {
            Disposition::SendRawEsp {
                local: local.ip(),
                remote: remote.ip(),
                data,
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.ike.handle_timeout(now);
        self.inspect.handle_timeout(now);
        self.drain_inspect_logs();
        if now >= self.next_lifetime_check {
            self.next_lifetime_check = now + LIFETIME_CHECK;
            self.check_lifetimes(now);
        }
        self.drain_ike(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = match self.ike.poll_timeout() {
            Some(t) => t.min(self.next_lifetime_check),
            None => self.next_lifetime_check,
        };
        Some(t.min(self.inspect.poll_timeout()))
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Routes to withdraw when the gateway stops: every remote domain, and the IP Pool NAT
    /// pools (local hosts answer pool addresses through the TUN device).
    pub fn shutdown_routes(&self) -> Vec<ipnet::IpNet> {
        let pools = self.config.firewall.nat.iter().filter_map(|n| match n {
            rampart_config::NatRule::Pool { pool, .. } => Some(*pool),
            _ => None,
        });
        self.policy.remote_prefixes().chain(pools).collect()
    }

    /// The connection table for `rampart conn list` (at most `limit` entries).
    pub fn conn_list(&self, now: Instant, limit: usize) -> rampart_inspect::ConnList {
        self.inspect.list(now, limit)
    }

    /// Inspection counters for `rampart conn stats`.
    pub fn conn_stats(&self) -> rampart_inspect::InspectStats {
        self.inspect.stats()
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
    pub(crate) fn tunnels(&self) -> &Tunnels {
        &self.tunnels
    }
    pub(crate) fn counters(&self) -> &DataPlaneCounters {
        &self.counters
    }
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// Soft byte/packet limits ask IKE for a rekey (once); hard limits are enforced by the SA.
    fn check_lifetimes(&mut self, now: Instant) {
        let mut rekey = Vec::new();
        for (id, tunnel) in self.tunnels.iter_mut() {
            if tunnel.take_rekey_due() {
                rekey.push(*id);
            }
        }
        for id in rekey {
            self.ike.rekey_child(now, id);
        }
    }

    fn drain_ike(&mut self, now: Instant) {
        while let Some(event) = self.ike.poll_event() {
            self.on_ike_event(now, event);
        }
    }

    fn on_ike_event(&mut self, now: Instant, event: IkeEvent) {
        match event {
            IkeEvent::Transmit { local, remote, msg } => {
                let data = if local.port() == self.config.gateway.nat_t_port {
                    let mut framed = Vec::with_capacity(msg.len() + 4);
                    framed.extend_from_slice(&udp_encap::NON_ESP_MARKER);
                    framed.extend_from_slice(&msg);
                    framed
                } else {
                    msg
                };
                self.outputs.push_back(Output::SendUdp {
                    local,
                    remote,
                    data,
                });
            }
            IkeEvent::NatKeepalive { local, remote } => {
                self.outputs.push_back(Output::SendUdp {
                    local,
                    remote,
                    data: udp_encap::KEEPALIVE.to_vec(),
                });
            }
            IkeEvent::IkeSaUp { peer, ike_sa } => {
                let name = self.peer_name(peer);
                self.log(
                    LogLevel::Info,
                    format!("peer {name}: IKE SA {:#x} established", ike_sa.0),
                );
            }
            IkeEvent::IkeSaDown {
                peer,
                ike_sa,
                reason,
            } => {
                let name = self.peer_name(peer);
                self.log(
                    LogLevel::Info,
                    format!("peer {name}: IKE SA {:#x} down ({reason:?})", ike_sa.0),
                );
            }
            IkeEvent::ChildSaUp(keys) => self.install(now, keys),
            IkeEvent::ChildSaDown {
                peer,
                child,
                spi_in,
                spi_out,
            } => {
                if self.tunnels.remove(child).is_some() {
                    let name = self.peer_name(peer);
                    self.log(
                        LogLevel::Info,
                        format!(
                            "peer {name}: tunnel {:#x} removed (SPIs in {spi_in:08x}, out {spi_out:08x})",
                            child.0
                        ),
                    );
                }
            }
            IkeEvent::ChildSaEndpoint {
                child,
                local,
                remote,
                encap,
            } => {
                if let Some(t) = self.tunnels.get_mut(child) {
                    t.local = local;
                    t.remote = remote;
                    t.encap = encap;
                }
            }
            IkeEvent::PeerDead { peer } => {
                let Some(p) = self.ike.peer(peer) else {
                    return;
                };
                let action = match p.start_action {
                    StartAction::Always => "re-initiating",
                    StartAction::OnTraffic => "waiting for traffic to re-initiate",
                    StartAction::None => "not re-initiating (start_action = none)",
                };
                let message = format!(
                    "peer {} ({}) is dead: no answer to liveness checks; SAs removed, {action}",
                    p.name, p.remote_address
                );
                self.log(LogLevel::Warn, message);
            }
        }
    }

    /// A peer's name for logs; a removed peer (its SAs still winding down) by its id.
    fn peer_name(&self, peer: PeerId) -> String {
        self.ike
            .peer(peer)
            .map_or_else(|| format!("#{peer} (removed)"), |p| p.name.clone())
    }

    fn install(&mut self, now: Instant, keys: ChildSaKeys) {
        let Some(peer) = self.ike.peer(keys.peer) else {
            return;
        };
        let peer = PeerParams {
            name: peer.name.clone(),
            child_lifetime_bytes: peer.child_lifetime_bytes,
            replay_window: peer.replay_window,
        };
        let lifetime = Lifetime {
            soft_bytes: peer.child_lifetime_bytes,
            hard_bytes: peer.child_lifetime_bytes.map(|b| b.saturating_add(b / 10)),
            soft_packets: None,
            hard_packets: None,
        };
        let integ_in = keys.integ.map(|i| (i, keys.integ_key_in.as_slice()));
        let integ_out = keys.integ.map(|i| (i, keys.integ_key_out.as_slice()));
        let inbound = InboundSa::new(&SaConfig {
            spi: keys.spi_in,
            encr: keys.encr,
            encr_key: &keys.key_in,
            integ: integ_in,
            esn: keys.esn,
            replay_window: peer.replay_window,
            lifetime,
        });
        let outbound = OutboundSa::new(
            &SaConfig {
                spi: keys.spi_out,
                encr: keys.encr,
                encr_key: &keys.key_out,
                integ: integ_out,
                esn: keys.esn,
                replay_window: peer.replay_window,
                lifetime,
            },
            self.rng.fork(),
        );
        let (inbound, outbound) = match (inbound, outbound) {
            (Ok(i), Ok(o)) => (i, o),
            (Err(e), _) | (_, Err(e)) => {
                let name = peer.name.clone();
                self.log(
                    LogLevel::Error,
                    format!(
                        "peer {name}: cannot install tunnel {:#x}: {e}",
                        keys.child.0
                    ),
                );
                return;
            }
        };
        let mut algorithms = keys.encr.to_string();
        if let Some(i) = keys.integ {
            algorithms.push('-');
            algorithms.push_str(&i.to_string());
        }
        if keys.esn {
            algorithms.push_str("-esn");
        }
        let message = format!(
            "peer {}: tunnel {:#x} up, SPIs in {:08x} out {:08x}, {algorithms}, {}{}",
            peer.name,
            keys.child.0,
            keys.spi_in,
            keys.spi_out,
            if keys.encap { "esp-in-udp" } else { "esp" },
            match keys.replaces {
                Some(old) => format!(", replaces {:#x}", old.0),
                None => String::new(),
            }
        );
        self.tunnels.insert(
            keys.child,
            Tunnel {
                peer: keys.peer,
                inbound,
                outbound,
                local_ts: keys.local_ts.clone(),
                remote_ts: keys.remote_ts.clone(),
                local: keys.local,
                remote: keys.remote,
                encap: keys.encap,
                algorithms,
                established: now,
                rekey_requested: false,
            },
        );
        self.log(LogLevel::Info, message);
    }

    fn drop(&mut self, reason: DropReason) -> Disposition {
        let c = &mut self.counters;
        match reason {
            DropReason::Malformed => c.dropped_malformed += 1,
            DropReason::NoPolicy => c.dropped_no_policy += 1,
            DropReason::NoSa | DropReason::Lifetime => c.dropped_no_sa += 1,
            DropReason::UnknownSpi => c.dropped_unknown_spi += 1,
            DropReason::Authentication => c.dropped_auth += 1,
            DropReason::Replay => c.dropped_replay += 1,
            DropReason::PolicyMismatch => c.dropped_policy_mismatch += 1,
            DropReason::Firewall => c.dropped_firewall += 1,
        }
        Disposition::Dropped(reason)
    }

    fn log(&mut self, level: LogLevel, message: String) {
        self.outputs
            .push_back(Output::Log(LogRecord { level, message }));
    }
}

/// How many packets of a batch can be handled: as many as every slice has room for.
fn batch_len(bufs: usize, packets: usize, out: usize) -> usize {
    bufs.min(packets).min(out)
}
