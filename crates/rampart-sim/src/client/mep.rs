//! Multiple Entry Points on the simulated client, as the client shell does them: a profile with
//! `gateways = [...]` connects to one of them, chosen by `selection`
//! (`rampart_connect::entry_points`), and moves to another when the one in use dies.
//!
//! - **first-to-respond**: before each connection the client probes every gateway at once with
//!   the cheapest probes that may get through: the transport ladder's UDP probe (a
//!   payload-less IKE_SA_INIT to port 500) and a TCP connect to the gateway's first stream
//!   port. The first answer chooses the gateway; without any answer within
//!   `PROBE_WINDOW` the gateways are tried in the order written.
//! - **primary-backup**: the gateways in the order written, the ones known down last.
//!
//! Each gateway gets the whole transport ladder; when it fails the next gateway is tried at
//! once. A tunnel that dies (its gateway silent: see `rampart_connect::stream_watch`, or the IKE
//! SA lost) marks the gateway down, and the next connection goes to another. Entry points that
//! are not one cluster cannot share an IKE SA: the client negotiates a new one there, and gets
//! an address from that gateway's pool.
//!
//! Learned entry points (`learn_gateways`): the list a gateway sends in its CFG_REPLY is put
//! after the profile's own gateways (replacing the list learned before) and used from the next
//! connection on, as the client shell does with its state file (the lab keeps it in memory).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rampart_config::{ClientSelection, ClientTransport};
use rampart_connect::entry_points::{Selection, PROBE_WINDOW};
use rampart_connect::stream_watch::{StreamWatch, StreamWatchConfig};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;

use super::{probe_request, ClientFx, ClientNode, Phase, IKE_PORT, PROBE_RETRANSMIT};
use crate::packet;

/// One UDP probe of a first-to-respond round.
struct UdpProbe {
    entry: usize,
    spi: u64,
    port: u16,
    request: Vec<u8>,
    next: Duration,
    interval: Duration,
}

/// A first-to-respond probe round.
pub(crate) struct Probe {
    started: Duration,
    udp: Vec<UdpProbe>,
    tcp: Vec<(usize, SocketHandle)>,
}

impl Probe {
    /// When the round needs the client next.
    pub fn poll_at(&self) -> Duration {
        self.udp
            .iter()
            .map(|u| u.next)
            .fold(self.started + PROBE_WINDOW, Duration::min)
    }
}

impl ClientNode {
    /// A new connection round: probe (first-to-respond) or take the order as written.
    pub(super) fn begin_round(&mut self, base: Instant, now: Duration, fx: &mut ClientFx) {
        if !self.entry.wants_probe() {
            self.order = self.entry.order(base + now, &[]);
            self.next_entry(base, now, fx);
            return;
        }
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        let stream_port = self.base.transports.iter().find_map(|t| match t {
            ClientTransport::Udp => None,
            ClientTransport::Tcp => Some(self.base.tcp_port),
            ClientTransport::Tls => Some(0),
        });
        for (i, gw) in self.gateways.clone().into_iter().enumerate() {
            if self.base.transports.contains(&ClientTransport::Udp) {
                let spi = self.rng.next_u64() | 1;
                let port = self.next_probe_port;
                self.next_probe_port = self.next_probe_port.wrapping_add(1).max(33000);
                udp.push(UdpProbe {
                    entry: i,
                    spi,
                    port,
                    request: probe_request(spi, &mut self.rng),
                    next: now,
                    interval: PROBE_RETRANSMIT,
                });
            }
            if let Some(p) = stream_port {
                // TLS: that gateway's own Visitor Mode port.
                let port = if p == 0 {
                    self.base.entry_points[i].visitor_port
                } else {
                    p
                };
                let (socket, _) = self.outer.connect((gw, port));
                tcp.push((i, socket));
            }
        }
        fx.logs.push(format!(
            "client {}: probing {} entry points (first to respond)",
            self.name,
            self.gateways.len()
        ));
        self.phase = Phase::Probing(Box::new(Probe {
            started: now,
            udp,
            tcp,
        }));
        self.step_probe(base, now, fx);
    }

    /// Sends due probes, reads TCP answers, ends the round on the first answer or the window.
    pub(super) fn step_probe(&mut self, base: Instant, now: Duration, fx: &mut ClientFx) -> bool {
        let Phase::Probing(p) = &mut self.phase else {
            return false;
        };
        let mut progress = false;
        for u in &mut p.udp {
            if now >= u.next {
                self.ident = self.ident.wrapping_add(1);
                fx.send.push(packet::build_udp(
                    self.addr,
                    u.port,
                    self.gateways[u.entry],
                    IKE_PORT,
                    self.ident,
                    &u.request,
                ));
                u.next = now + u.interval;
                u.interval *= 2;
                progress = true;
            }
        }
        let connected = p.tcp.iter().find(|(_, s)| {
            self.outer.sockets.get::<tcp::Socket>(*s).state() == tcp::State::Established
        });
        if let Some(&(i, _)) = connected {
            self.end_probe(base, now, Some((i, "tcp connect")), fx);
            return true;
        }
        if now >= p.started + PROBE_WINDOW {
            self.end_probe(base, now, None, fx);
            return true;
        }
        progress
    }

    /// A UDP datagram during a probe round: an answer to one of the probes?
    pub(super) fn probe_udp_input(
        &mut self,
        base: Instant,
        now: Duration,
        local: SocketAddr,
        remote: SocketAddr,
        datagram: &[u8],
        fx: &mut ClientFx,
    ) {
        let Phase::Probing(p) = &mut self.phase else {
            return;
        };
        let hit = p.udp.iter().find(|u| {
            u.port == local.port()
                && remote.ip() == IpAddr::V4(self.gateways[u.entry])
                && rampart_connect::udp_probe::is_answer(datagram, u.spi, false)
        });
        match hit {
            Some(u) => {
                let i = u.entry;
                self.end_probe(base, now, Some((i, "udp probe")), fx);
            }
            None => fx.drops.push("client: UDP port not open"),
        }
    }

    /// Ends the probe round: the first answer goes first, then the order as written.
    fn end_probe(
        &mut self,
        base: Instant,
        now: Duration,
        first: Option<(usize, &str)>,
        fx: &mut ClientFx,
    ) {
        let Phase::Probing(p) = std::mem::replace(&mut self.phase, Phase::Waiting { at: now })
        else {
            return;
        };
        for (_, s) in &p.tcp {
            self.outer.sockets.get_mut::<tcp::Socket>(*s).abort();
        }
        let answered: Vec<usize> = first.iter().map(|(i, _)| *i).collect();
        match first {
            Some((i, how)) => fx.logs.push(format!(
                "client {}: entry point {} answered first ({how}, {} ms)",
                self.name,
                self.base.entry_points[i],
                now.saturating_sub(p.started).as_millis()
            )),
            None => fx.logs.push(format!(
                "client {}: no entry point answered the probe within {} ms; trying them in order",
                self.name,
                PROBE_WINDOW.as_millis()
            )),
        }
        self.order = self.entry.order(base + now, &answered);
        self.next_entry(base, now, fx);
    }

    /// Starts the transport ladder towards the next gateway of the round; `false` when the
    /// round is over (every gateway was tried).
    pub(super) fn next_entry(&mut self, base: Instant, now: Duration, fx: &mut ClientFx) -> bool {
        if self.order.is_empty() {
            return false;
        }
        let i = self.order.remove(0);
        self.entry_idx = i;
        self.gateway = self.gateways[i];
        if let Some(p) = self.base.for_entry_point(i) {
            self.profile = p;
        }
        if self.gateways.len() > 1 {
            fx.logs.push(format!(
                "client {}: connecting to entry point {} ({})",
                self.name,
                self.base.entry_points[i],
                self.entry.selection().as_str()
            ));
        }
        self.start_search(base, now, fx);
        true
    }

    /// The gateway in use failed at `now` (no transport, or its tunnel died): it goes to the
    /// end of the order for a while.
    pub(super) fn entry_failed(&mut self, base: Instant, now: Duration) {
        self.entry.failed(base + now, self.entry_idx);
    }

    /// A tunnel got its address: was it another gateway than before?
    pub(super) fn entry_connected(&mut self, now: Duration, fx: &mut ClientFx) {
        let before = self.entry.current();
        if self.entry.connected(self.entry_idx) {
            let from = before.map_or_else(String::new, |b| self.base.entry_points[b].to_string());
            fx.logs.push(format!(
                "client {}: moved from entry point {from} to {} (a new IKE SA there)",
                self.name, self.base.entry_points[self.entry_idx]
            ));
            self.moves.push((now, "entry-point".into()));
        }
    }

    /// The gateway sent its entry points: the profile's own gateways, then the learned ones
    /// not among them; what is known about each gateway (down, in use) follows it.
    /// A UDP tunnel up now gets the watch a tunnel with somewhere else to go has.
    pub(super) fn learn(
        &mut self,
        at: Instant,
        list: &rampart_wire::ike::EntryPointList,
        fx: &mut ClientFx,
    ) {
        if !self.base.learn_gateways {
            return;
        }
        let mut own = self.base.clone();
        own.entry_points.truncate(self.own_entries);
        let names: Vec<String> = own.entry_points.iter().map(|e| e.to_string()).collect();
        let extra = rampart_connect::learned::extra(&names, &list.entries);
        let own_selection = (self.own_entries > 1).then_some(match own.selection {
            ClientSelection::FirstToRespond => Selection::FirstToRespond,
            ClientSelection::PrimaryBackup => Selection::PrimaryBackup,
        });
        let selection = rampart_connect::learned::selection(
            own_selection,
            list.selection,
            Selection::default(),
        );
        let next = own.with_learned_entry_points(
            &extra,
            Some(match selection {
                Selection::FirstToRespond => ClientSelection::FirstToRespond,
                Selection::PrimaryBackup => ClientSelection::PrimaryBackup,
            }),
        );
        let gateways = match ClientNode::entry_addresses(&next) {
            Ok(g) => g,
            Err(e) => {
                fx.logs.push(format!(
                    "client {}: ignoring the learned entry points: {e}",
                    self.name
                ));
                return;
            }
        };
        let from = self
            .base
            .entry_points
            .get(self.entry_idx)
            .map_or_else(String::new, ToString::to_string);
        let map: Vec<Option<usize>> = self
            .base
            .entry_points
            .iter()
            .map(|e| next.entry_points.iter().position(|n| n == e))
            .collect();
        self.entry = self
            .entry
            .remapped(next.entry_points.len(), selection, &map);
        self.entry_idx = map.get(self.entry_idx).copied().flatten().unwrap_or(0);
        self.order = self
            .order
            .iter()
            .filter_map(|&i| map.get(i).copied().flatten())
            .collect();
        fx.logs.push(format!(
            "client {}: learned {} entry point(s) from {from}: {}",
            self.name,
            list.entries.len(),
            list.entries.join(" ")
        ));
        self.base = next;
        self.gateways = gateways;
        if let Phase::Running(s) = &mut self.phase {
            if s.watch.is_none() && self.gateways.len() > 1 {
                s.watch = Some(StreamWatch::new(StreamWatchConfig::datagrams(), at));
            }
        }
    }

    /// The gateways of the profile as addresses (the lab has no DNS).
    pub(super) fn entry_addresses(
        profile: &rampart_config::ClientProfile,
    ) -> Result<Vec<Ipv4Addr>, String> {
        profile
            .entry_points
            .iter()
            .map(|e| {
                e.host.parse::<Ipv4Addr>().map_err(|_| {
                    format!(
                        "gateway {:?}: the lab has no DNS, give an IPv4 address",
                        e.host
                    )
                })
            })
            .collect()
    }
}
