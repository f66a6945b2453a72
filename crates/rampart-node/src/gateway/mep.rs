//! Multiple Entry Points in the gateway: the satellite's engine ([`rampart_mep::Mep`]) and the
//! entry point's probe responder ([`rampart_mep::Responder`]) behind the gateway's inputs and
//! output stream, plus route injection (`[rim]`) on the entry-point side.
//!
//! Invariants:
//! - `entry_points` maps exactly the configured entry points whose peer exists in the IKE
//!   engine; it is rebuilt whenever peer ids may have changed (start, reload).
//! - Every CHILD SA install or removal names its peer in `changed` (see
//!   [`super::control::IkeControl`]); after the input the gateway updates the engine's tunnel
//!   state and the injected routes of those peers only, so the per-packet paths pay nothing.
//! - `injected` holds exactly the routes this gateway asked the shell to inject and has not
//!   withdrawn.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use ipnet::IpNet;
use rampart_ike::{Ike, PeerId};
use rampart_mep::{
    EntryPointConfig, EntryPointId, FlowKey, GroupConfig, GroupId, Mep, MepConfig, MepEvent,
    MepStatus, ProbeKind, ProbeMode, Responder, ResponderConfig, Transmit, MAX_PROBE_LEN,
};
use rampart_wire::ike::TrafficSelector;
use rampart_wire::ip::{PacketInfo, Transport};

use crate::dataplane::Tunnels;
use crate::{LogEvent, LogLevel, LogRecord, Output};

/// Route injection (`[rim]`): where injected routes go and which peers' domains are injected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInjection {
    /// Kernel routing table.
    pub table: u32,
    /// `rtm_protocol` of the injected routes (what a routing daemon filters on).
    pub protocol: u8,
    pub metric: u32,
    /// Peers whose tunnels inject routes; empty: every peer.
    pub peers: Vec<String>,
}

/// One entry point of the satellite's engine, resolved to its peer.
#[derive(Debug, Clone, Copy)]
struct EntryPoint {
    peer: PeerId,
    group: GroupId,
    id: EntryPointId,
    /// Probed with IKE liveness (mode `ike` or `auto`): report `last_heard` on every timeout.
    ike: bool,
}

/// The gateway's MEP state (all parts optional: a gateway may be a satellite, an entry point,
/// both or neither).
#[derive(Default)]
pub(crate) struct MepNode {
    pub engine: Option<Mep>,
    pub responder: Option<Responder>,
    /// UDP port of the probe protocol (satellite and responder).
    pub port: u16,
    entry_points: Vec<EntryPoint>,
    pub rim: Option<RouteInjection>,
    /// Peer -> the routes injected for it.
    injected: BTreeMap<PeerId, BTreeSet<IpNet>>,
    /// Peers whose CHILD SAs were installed or removed since the last [`MepNode::after_input`].
    pub changed: Vec<PeerId>,
}

/// The flow key of an outbound packet (after the satellite's own NAT): ports for TCP, UDP,
/// SCTP, UDP-Lite; the echo identifier in `src_port` for ICMP and ICMPv6 echo request and
/// reply; zero otherwise (and for non-first fragments).
pub(crate) fn flow_key(info: &PacketInfo, packet: &[u8]) -> FlowKey {
    let (src_port, dst_port) = match info.transport {
        Transport::Ports { src, dst } => (src, dst),
        Transport::Icmp { kind, .. }
            if (info.protocol == 1 && (kind == 0 || kind == 8))
                || (info.protocol == 58 && (kind == 128 || kind == 129)) =>
        {
            let at = info.transport_offset + 4;
            let id = packet
                .get(at..at + 2)
                .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
            (id, 0)
        }
        _ => (0, 0),
    };
    FlowKey {
        src: info.src,
        dst: info.dst,
        protocol: info.protocol,
        src_port,
        dst_port,
    }
}

/// Injects (`up`) or withdraws `prefix` for peer `name`, with its log line.
fn rim_route(
    outputs: &mut std::collections::VecDeque<Output>,
    rim: &RouteInjection,
    name: &str,
    prefix: IpNet,
    up: bool,
) {
    let (table, protocol, metric) = (rim.table, rim.protocol, rim.metric);
    let (output, message) = if up {
        (
            Output::RouteInject {
                prefix,
                table,
                protocol,
                metric,
            },
            format!("rim: peer {name}: route {prefix} injected into table {table} (proto {protocol}, metric {metric})"),
        )
    } else {
        (
            Output::RouteWithdraw {
                prefix,
                table,
                protocol,
                metric,
            },
            format!("rim: peer {name}: route {prefix} withdrawn from table {table} (no tunnel)"),
        )
    };
    outputs.push_back(output);
    outputs.push_back(Output::Log(LogRecord::new(
        LogLevel::Info,
        LogEvent::RouteInjected {
            peer: name.to_string(),
            prefix: prefix.to_string(),
            up,
        },
        message,
    )));
}

/// Whether `packet` opens a TCP connection (SYN without ACK): its flow is resolved afresh
/// even when an earlier connection with the same addresses and ports left a binding.
pub(crate) fn opens_connection(info: &PacketInfo, packet: &[u8]) -> bool {
    if info.protocol != 6 || !matches!(info.transport, Transport::Ports { .. }) {
        return false;
    }
    // Non-first fragments carry no TCP header.
    if info.fragment.is_some_and(|f| f.offset != 0) {
        return false;
    }
    packet
        .get(info.transport_offset + 13)
        .is_some_and(|flags| flags & 0x12 == 0x02)
}

/// The protocol as the tracking line names it.
fn protocol_name(protocol: u8) -> String {
    match protocol {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        n => format!("proto {n}"),
    }
}

/// Whether two engine configurations describe the same entry points, groups and settings (a
/// reload that changes none of it keeps the engine with its probe state and bindings).
fn same_config(a: &MepConfig, b: &MepConfig) -> bool {
    fn ep_eq(x: &EntryPointConfig, y: &EntryPointConfig) -> bool {
        x.name == y.name
            && x.group == y.group
            && x.address == y.address
            && x.local == y.local
            && x.own_domain == y.own_domain
            && x.probe == y.probe
            && x.key == y.key
    }
    fn group_eq(x: &GroupConfig, y: &GroupConfig) -> bool {
        x.name == y.name
            && x.kind == y.kind
            && x.method == y.method
            && x.tie_break == y.tie_break
            && x.members == y.members
            && x.levels == y.levels
            && x.domain == y.domain
            && x.tracking == y.tracking
    }
    a.local_name == b.local_name
        && a.probe == b.probe
        && a.sticky == b.sticky
        && a.entry_points.len() == b.entry_points.len()
        && a.entry_points
            .iter()
            .zip(&b.entry_points)
            .all(|(x, y)| ep_eq(x, y))
        && a.groups.len() == b.groups.len()
        && a.groups.iter().zip(&b.groups).all(|(x, y)| group_eq(x, y))
}

/// Every prefix a traffic selector's address range covers (a range need not be one CIDR).
fn selector_prefixes(ts: &TrafficSelector, out: &mut BTreeSet<IpNet>) {
    match (ts.start_addr, ts.end_addr) {
        (IpAddr::V4(s), IpAddr::V4(e)) if s <= e => {
            out.extend(ipnet::Ipv4Subnets::new(s, e, 0).map(IpNet::V4))
        }
        (IpAddr::V6(s), IpAddr::V6(e)) if s <= e => {
            out.extend(ipnet::Ipv6Subnets::new(s, e, 0).map(IpNet::V6))
        }
        _ => {}
    }
}

impl MepNode {
    /// Takes new engine and responder configurations (start or reload). An unchanged engine
    /// configuration keeps the running engine (probe state, bindings).
    pub fn configure(
        &mut self,
        now: Instant,
        config: Option<MepConfig>,
        responder: Option<ResponderConfig>,
        seed: [u8; 32],
    ) {
        self.engine = match (self.engine.take(), config) {
            (Some(engine), Some(c)) if same_config(engine.config(), &c) => Some(engine),
            (_, Some(c)) => {
                self.port = c.probe.port;
                Some(Mep::new(c, now, seed))
            }
            (_, None) => None,
        };
        self.responder = match (self.responder.take(), responder) {
            (Some(mut r), Some(c)) => {
                self.port = c.port;
                r.set_config(c);
                Some(r)
            }
            (None, Some(c)) => {
                self.port = c.port;
                Some(Responder::new(c))
            }
            (_, None) => None,
        };
        if let Some(e) = &self.engine {
            self.port = e.config().probe.port;
        }
    }

    /// Maps every entry point to its peer (by name) in `ike`; entry points whose peer does not
    /// exist are left out (configuration validation makes that impossible).
    pub fn map_peers(&mut self, ike: &Ike, tunnels: &Tunnels) {
        self.entry_points.clear();
        let Some(engine) = self.engine.as_mut() else {
            return;
        };
        for (i, ep) in engine.config().entry_points.iter().enumerate() {
            if let Some(peer) = ike.peer_by_name(&ep.name) {
                self.entry_points.push(EntryPoint {
                    peer,
                    group: ep.group,
                    id: EntryPointId(i as u32),
                    ike: matches!(ep.probe, ProbeMode::Ike | ProbeMode::Auto),
                });
            }
        }
        for ep in &self.entry_points {
            engine.set_tunnel_up(ep.id, tunnels.has_tunnel(ep.peer));
        }
    }

    /// The peer that carries an outbound packet towards `candidates` when one of them is an
    /// entry point: the engine resolves its group. Per packet, allocation-free (a scan over a
    /// handful of entry points per candidate).
    pub fn select(
        &mut self,
        now: Instant,
        flow: &FlowKey,
        opening: bool,
        candidates: &[PeerId],
    ) -> Option<PeerId> {
        let engine = self.engine.as_mut()?;
        let group = candidates.iter().find_map(|c| {
            self.entry_points
                .iter()
                .find(|ep| ep.peer == *c)
                .map(|ep| ep.group)
        })?;
        let resolution = if opening {
            engine.resolve_opening(now, group, flow)
        } else {
            engine.resolve(now, group, flow)
        };
        self.entry_points
            .iter()
            .find(|ep| ep.id == resolution.entry_point)
            .map(|ep| ep.peer)
    }

    fn peer_of(&self, id: EntryPointId) -> Option<PeerId> {
        self.entry_points
            .iter()
            .find(|ep| ep.id == id)
            .map(|ep| ep.peer)
    }

    /// The name of the group of entry point `id`.
    fn group_of(&self, id: EntryPointId) -> String {
        self.engine
            .as_ref()
            .and_then(|e| {
                let group = e.config().entry_points.get(id.0 as usize)?.group;
                e.config().groups.get(group.0 as usize)
            })
            .map_or_else(|| "?".to_string(), |g| g.name.clone())
    }

    fn entry_point_name(&self, id: EntryPointId) -> String {
        self.engine
            .as_ref()
            .and_then(|e| e.config().entry_points.get(id.0 as usize))
            .map_or_else(|| format!("#{}", id.0), |ep| ep.name.clone())
    }

    /// Probe-port addresses the shell binds: the local address of each entry point's peer (a
    /// satellite) and of each peer (a responder). `None` as the address: the wildcard.
    pub fn probe_sockets(&self, ike: &Ike) -> Vec<SocketAddr> {
        let mut addrs: BTreeSet<IpAddr> = BTreeSet::new();
        if let Some(engine) = &self.engine {
            for ep in &engine.config().entry_points {
                let local = ep.local.or_else(|| {
                    ike.peer_by_name(&ep.name)
                        .and_then(|id| ike.peer(id))
                        .map(|p| p.local_address)
                });
                addrs.extend(local);
            }
        }
        if self.responder.is_some() {
            addrs.extend(ike.peers().map(|(_, p)| p.local_address));
        }
        addrs
            .into_iter()
            .map(|ip| SocketAddr::new(ip, self.port))
            .collect()
    }

    /// A datagram on the probe port: a reply for the engine or a request for the responder.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        outputs: &mut std::collections::VecDeque<Output>,
    ) -> bool {
        match rampart_mep::peek_kind(data) {
            Some(ProbeKind::Reply) => match self.engine.as_mut() {
                // Refusals are counted and the first per source comes back as an event.
                Some(engine) => engine.handle_reply(now, remote, data).is_ok(),
                None => false,
            },
            Some(ProbeKind::Request) => {
                let Some(responder) = self.responder.as_mut() else {
                    return false;
                };
                let mut out = [0u8; MAX_PROBE_LEN];
                match responder.handle_request(now, remote, data, &mut out) {
                    Ok(n) => {
                        outputs.push_back(Output::SendUdp {
                            local,
                            remote,
                            data: out[..n].to_vec(),
                        });
                        true
                    }
                    Err(_) => false,
                }
            }
            None => false,
        }
    }

    /// The engine's due work after an input: datagrams to send, IKE probes to start (and their
    /// `last_heard` to report), events to log. Returns whether IKE was asked to do something
    /// (its events must then be drained).
    pub fn pump(
        &mut self,
        now: Instant,
        ike: &mut Ike,
        local_of: impl Fn(&Ike, PeerId) -> Option<IpAddr>,
        outputs: &mut std::collections::VecDeque<Output>,
    ) -> bool {
        let mut ike_used = false;
        while let Some(t) = self.engine.as_mut().and_then(|e| e.poll_transmit()) {
            match t {
                Transmit::Probe {
                    entry_point,
                    local,
                    remote,
                    data,
                } => {
                    let ip = local.or_else(|| {
                        self.peer_of(entry_point)
                            .and_then(|peer| local_of(ike, peer))
                    });
                    let Some(ip) = ip else { continue };
                    outputs.push_back(Output::SendUdp {
                        local: SocketAddr::new(ip, self.port),
                        remote,
                        data,
                    });
                }
                Transmit::IkeProbe { entry_point } => {
                    let Some(peer) = self.peer_of(entry_point) else {
                        continue;
                    };
                    let _ = ike.probe_liveness(now, peer);
                    ike_used = true;
                    let heard = ike.last_heard(peer);
                    if let Some(e) = self.engine.as_mut() {
                        e.handle_ike_heard(now, entry_point, heard);
                    }
                }
            }
        }
        while let Some(event) = self.engine.as_mut().and_then(|e| e.poll_event()) {
            // A dead entry point's SAs are useless (its connections move to another entry
            // point at once) and, if it restarted, stale: drop them now, as IKE liveness would
            // after its retransmissions, so a connection resolved to it once it is back gets a
            // fresh SA (and `start_action = always` re-initiates).
            if let MepEvent::EntryPointDown { entry_point, .. } = event {
                if let Some(peer) = self.peer_of(entry_point) {
                    if ike.peer_dead(now, peer) > 0 {
                        ike_used = true;
                    }
                }
            }
            let record = self.event_record(event);
            outputs.push_back(Output::Log(record));
        }
        ike_used
    }

    /// On every timeout: tell the engine when each IKE-probed entry point was last heard.
    pub fn report_heard(&mut self, now: Instant, ike: &Ike) {
        let Some(engine) = self.engine.as_mut() else {
            return;
        };
        for ep in self.entry_points.iter().filter(|ep| ep.ike) {
            engine.handle_ike_heard(now, ep.id, ike.last_heard(ep.peer));
        }
    }

    fn event_record(&self, event: MepEvent) -> LogRecord {
        match event {
            MepEvent::EntryPointUp { entry_point, rtt } => {
                let name = self.entry_point_name(entry_point);
                LogRecord::new(
                    LogLevel::Info,
                    LogEvent::EntryPoint {
                        entry_point: name.clone(),
                        up: true,
                        rtt_us: Some(rtt.as_micros() as u64),
                        misses: None,
                    },
                    format!(
                        "MEP {}: entry point {name} up (rtt {:.1} ms)",
                        self.group_of(entry_point),
                        rtt.as_secs_f64() * 1e3
                    ),
                )
            }
            MepEvent::EntryPointDown {
                entry_point,
                misses,
            } => {
                let name = self.entry_point_name(entry_point);
                LogRecord::new(
                    LogLevel::Warn,
                    LogEvent::EntryPoint {
                        entry_point: name.clone(),
                        up: false,
                        rtt_us: None,
                        misses: Some(misses),
                    },
                    format!(
                        "MEP {}: entry point {name} down ({misses} probes missed)",
                        self.group_of(entry_point)
                    ),
                )
            }
            MepEvent::Resolved {
                group,
                flow,
                resolution,
            } => {
                let group = self
                    .engine
                    .as_ref()
                    .and_then(|e| e.config().groups.get(group.0 as usize))
                    .map_or_else(|| format!("#{}", group.0), |g| g.name.clone());
                let name = self.entry_point_name(resolution.entry_point);
                let level = resolution.level.as_str();
                let responding = if resolution.responding {
                    "responding"
                } else {
                    "not responding"
                };
                let message = format!(
                    "MEP {group}: resolved {name} ({level}, {responding}) for {} -> {} {}",
                    flow.src,
                    flow.dst,
                    protocol_name(flow.protocol)
                );
                LogRecord::new(
                    LogLevel::Info,
                    LogEvent::MepResolved {
                        group,
                        entry_point: name,
                        level: level.to_string(),
                        responding: resolution.responding,
                        src: flow.src.to_string(),
                        dst: flow.dst.to_string(),
                        protocol: flow.protocol,
                        src_port: flow.src_port,
                        dst_port: flow.dst_port,
                    },
                    message,
                )
            }
            MepEvent::ProbeRejected { from, error } => LogRecord::new(
                LogLevel::Warn,
                LogEvent::ProbeRejected {
                    from: from.to_string(),
                    reason: error.to_string(),
                },
                format!("MEP: probe reply from {from} refused: {error} (further refusals from there are only counted)"),
            ),
        }
    }

    /// After an input: for each peer whose CHILD SAs changed, the engine's tunnel state and
    /// the injected routes.
    pub fn after_input(
        &mut self,
        ike: &Ike,
        tunnels: &Tunnels,
        outputs: &mut std::collections::VecDeque<Output>,
    ) {
        if self.changed.is_empty() {
            return;
        }
        let mut changed = std::mem::take(&mut self.changed);
        changed.sort_unstable();
        changed.dedup();
        for &peer in &changed {
            let up = tunnels.has_tunnel(peer);
            if let Some(engine) = self.engine.as_mut() {
                for ep in self.entry_points.iter().filter(|ep| ep.peer == peer) {
                    engine.set_tunnel_up(ep.id, up);
                }
            }
            self.inject(peer, ike, tunnels, outputs);
        }
        changed.clear();
        self.changed = changed;
    }

    /// Brings the injected routes of `peer` in line with its installed tunnels.
    fn inject(
        &mut self,
        peer: PeerId,
        ike: &Ike,
        tunnels: &Tunnels,
        outputs: &mut std::collections::VecDeque<Output>,
    ) {
        let Some(rim) = self.rim.as_ref() else {
            return;
        };
        let policy = ike.peer(peer);
        let name = policy.map_or_else(|| peer.to_string(), |p| p.name.clone());
        let wanted_peer = rim.peers.is_empty() || rim.peers.contains(&name);
        let mut want = BTreeSet::new();
        if wanted_peer && policy.is_some() {
            for (_, t) in tunnels.iter().filter(|(_, t)| t.peer == peer) {
                for ts in &t.remote_ts {
                    selector_prefixes(ts, &mut want);
                }
            }
        }
        let have = self.injected.remove(&peer).unwrap_or_default();
        for prefix in have.difference(&want) {
            rim_route(outputs, rim, &name, *prefix, false);
        }
        for prefix in want.difference(&have) {
            rim_route(outputs, rim, &name, *prefix, true);
        }
        if !want.is_empty() {
            self.injected.insert(peer, want);
        }
    }

    /// Takes new route injection settings: every peer's routes are recomputed (withdrawn
    /// where the settings no longer cover them, moved when table, protocol or metric changed).
    pub fn set_rim(
        &mut self,
        rim: Option<RouteInjection>,
        ike: &Ike,
        tunnels: &Tunnels,
        outputs: &mut std::collections::VecDeque<Output>,
    ) {
        if self.rim == rim {
            return;
        }
        // Withdraw everything under the old settings, then inject under the new ones.
        if let Some(old) = self.rim.as_ref() {
            for prefix in std::mem::take(&mut self.injected).into_values().flatten() {
                outputs.push_back(Output::RouteWithdraw {
                    prefix,
                    table: old.table,
                    protocol: old.protocol,
                    metric: old.metric,
                });
            }
        }
        self.injected.clear();
        self.rim = rim;
        let peers: BTreeSet<PeerId> = tunnels.iter().map(|(_, t)| t.peer).collect();
        for peer in peers {
            self.inject(peer, ike, tunnels, outputs);
        }
    }

    /// Peers whose routes are injected now, withdrawn where the peer is gone (reload).
    pub fn forget_removed_peers(
        &mut self,
        ike: &Ike,
        tunnels: &Tunnels,
        outputs: &mut std::collections::VecDeque<Output>,
    ) {
        let stale: Vec<PeerId> = self
            .injected
            .keys()
            .copied()
            .filter(|p| ike.peer(*p).is_none() || !tunnels.has_tunnel(*p))
            .collect();
        for peer in stale {
            self.inject(peer, ike, tunnels, outputs);
        }
    }

    /// Routes injected now (the shell withdraws them on exit; for tests and status).
    pub fn injected(&self) -> impl Iterator<Item = &IpNet> {
        self.injected.values().flatten()
    }

    pub fn status(&self, now: Instant) -> Option<MepStatus> {
        if self.engine.is_none() && self.responder.is_none() {
            return None;
        }
        let mut status = self
            .engine
            .as_ref()
            .map(|e| e.status(now))
            .unwrap_or_default();
        status.responder = self.responder.as_ref().map(|r| r.status());
        Some(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4(protocol: u8, transport: &[u8]) -> Vec<u8> {
        let total = 20 + transport.len();
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[8] = 64;
        p[9] = protocol;
        p[12..16].copy_from_slice(&[10, 1, 0, 5]);
        p[16..20].copy_from_slice(&[10, 2, 0, 7]);
        p[20..].copy_from_slice(transport);
        p
    }

    fn key(packet: &[u8]) -> FlowKey {
        flow_key(&PacketInfo::parse(packet).unwrap(), packet)
    }

    #[test]
    fn only_a_syn_without_ack_opens_a_connection() {
        let tcp = |flags: u8| {
            let mut t = [0u8; 20];
            t[0..2].copy_from_slice(&40000u16.to_be_bytes());
            t[2..4].copy_from_slice(&443u16.to_be_bytes());
            t[12] = 5 << 4;
            t[13] = flags;
            ipv4(6, &t)
        };
        let opens = |p: &[u8]| opens_connection(&PacketInfo::parse(p).unwrap(), p);
        assert!(opens(&tcp(0x02)), "SYN");
        assert!(!opens(&tcp(0x12)), "SYN-ACK");
        assert!(!opens(&tcp(0x10)), "ACK");
        assert!(!opens(&tcp(0x04)), "RST");
        assert!(
            !opens(&ipv4(17, &[0x0f, 0xa0, 0x13, 0x88, 0, 8, 0, 0x02])),
            "UDP"
        );
    }

    #[test]
    fn flow_keys_carry_ports_or_the_echo_identifier() {
        let udp = ipv4(17, &[0x0f, 0xa0, 0x13, 0x88, 0, 8, 0, 0]);
        let k = key(&udp);
        assert_eq!(
            (k.protocol, k.src_port, k.dst_port),
            (17, 4000, 5000),
            "{k:?}"
        );
        assert_eq!(k.src, "10.1.0.5".parse::<IpAddr>().unwrap());
        assert_eq!(k.dst, "10.2.0.7".parse::<IpAddr>().unwrap());
        // Echo request, identifier 0x1234, sequence 7.
        let echo = ipv4(1, &[8, 0, 0, 0, 0x12, 0x34, 0, 7]);
        let k = key(&echo);
        assert_eq!((k.protocol, k.src_port, k.dst_port), (1, 0x1234, 0));
        // Destination unreachable has no identifier.
        let unreachable = ipv4(1, &[3, 1, 0, 0, 0x12, 0x34, 0, 7]);
        let k = key(&unreachable);
        assert_eq!((k.src_port, k.dst_port), (0, 0));
        // GRE: no ports.
        let gre = ipv4(47, &[0, 0, 0x08, 0]);
        let k = key(&gre);
        assert_eq!((k.protocol, k.src_port, k.dst_port), (47, 0, 0));
    }

    #[test]
    fn selector_ranges_become_prefixes() {
        let mut out = BTreeSet::new();
        let ts = TrafficSelector::from_net(&"10.2.0.0/24".parse().unwrap());
        selector_prefixes(&ts, &mut out);
        assert_eq!(
            out.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            ["10.2.0.0/24"]
        );
        out.clear();
        let ts = TrafficSelector {
            ip_protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
            start_addr: "10.0.0.1".parse().unwrap(),
            end_addr: "10.0.0.6".parse().unwrap(),
        };
        selector_prefixes(&ts, &mut out);
        let got: Vec<String> = out.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            got,
            ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]
        );
    }
}
