//! The gateway's control plane as the data plane sees it: requests go to the IKE engine, IKE's
//! events become data-plane changes, datagrams and log records in the output queue.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use rampart_config::{GatewayConfig, StartAction};
use rampart_esp::udp_encap;
use rampart_ike::{Ike, IkeEvent, NatSide, PeerId};
use rampart_wire::ip::PacketInfo;

use super::mep::MepNode;
use super::peer_policy;
use crate::dataplane::{ControlPlane, ControlRequest, DataPlaneChange, TunnelSettings};
use crate::{LogEvent, LogLevel, LogRecord, Output};

/// IKE and the output queue, borrowed for one input.
pub(super) struct IkeControl<'a> {
    pub config: &'a GatewayConfig,
    pub ike: &'a mut Ike,
    pub outputs: &'a mut VecDeque<Output>,
    /// Multiple Entry Points: resolves outbound packets towards entry points; notes the peers
    /// whose CHILD SAs change.
    pub mep: &'a mut MepNode,
}

impl IkeControl<'_> {
    fn push_log(&mut self, level: LogLevel, event: LogEvent, message: String) {
        self.outputs
            .push_back(Output::Log(LogRecord::new(level, event, message)));
    }

    /// Turns one IKE event into output, or into the change it asks of the data plane.
    fn on_event(&mut self, event: IkeEvent) -> Option<DataPlaneChange> {
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
                self.push_log(
                    LogLevel::Info,
                    LogEvent::PeerUp {
                        peer: name.clone(),
                        ike_sa: ike_sa.0,
                    },
                    format!("peer {name}: IKE SA {:#x} established", ike_sa.0),
                );
            }
            IkeEvent::IkeSaDown {
                peer,
                ike_sa,
                reason,
            } => {
                let name = self.peer_name(peer);
                self.push_log(
                    LogLevel::Info,
                    LogEvent::PeerDown {
                        peer: name.clone(),
                        ike_sa: ike_sa.0,
                        reason: format!("{reason:?}"),
                    },
                    format!("peer {name}: IKE SA {:#x} down ({reason:?})", ike_sa.0),
                );
            }
            IkeEvent::ChildSaUp(keys) => {
                self.mep.changed.push(keys.peer);
                let Some(p) = peer_policy(self.ike, keys.peer) else {
                    // The peer was removed since: its SAs go with it.
                    return None;
                };
                let settings = TunnelSettings {
                    peer_name: p.name.clone(),
                    replay_window: p.replay_window,
                    lifetime_bytes: p.child_lifetime_bytes,
                };
                return Some(DataPlaneChange::Install(Box::new((keys, settings))));
            }
            IkeEvent::ChildSaDown {
                peer,
                child,
                spi_in,
                spi_out,
            } => {
                self.mep.changed.push(peer);
                return Some(DataPlaneChange::Remove {
                    child,
                    spi_in,
                    spi_out,
                });
            }
            IkeEvent::ChildSaEndpoint {
                child,
                local,
                remote,
                encap,
            } => {
                return Some(DataPlaneChange::Endpoint {
                    child,
                    local,
                    remote,
                    encap,
                })
            }
            IkeEvent::NatMappingMoved {
                peer,
                ike_sa,
                side,
                local,
                remote,
            } => {
                let name = self.peer_name(peer);
                let (side, message) = match side {
                    NatSide::Peer => (
                        "peer",
                        format!("peer {name}: NAT mapping moved, now at {remote} (IKE SA {:#x})", ike_sa.0),
                    ),
                    NatSide::Local => (
                        "local",
                        format!("peer {name}: our NAT mapping moved (the peer checked our new public address; local {local}, IKE SA {:#x})", ike_sa.0),
                    ),
                };
                self.push_log(
                    LogLevel::Info,
                    LogEvent::NatMappingMoved {
                        peer: name,
                        side: side.to_string(),
                        remote: remote.to_string(),
                    },
                    message,
                );
            }
            IkeEvent::PeerDead { peer } => {
                let p = peer_policy(self.ike, peer)?;
                let action = match p.start_action {
                    StartAction::Always => "re-initiating",
                    StartAction::OnTraffic => "waiting for traffic to re-initiate",
                    StartAction::None => "not re-initiating (start_action = none)",
                };
                let (name, remote) = (p.name.clone(), p.remote_address.to_string());
                let message = format!(
                    "peer {name} ({remote}) is dead: no answer to liveness checks; SAs removed, {action}"
                );
                self.push_log(
                    LogLevel::Warn,
                    LogEvent::PeerDead { peer: name, remote },
                    message,
                );
            }
            // Remote access: logged here; status and the client shell's outputs are wired
            // in the remote-access node work.
            IkeEvent::VirtualIp { ike_sa, reply, .. } => {
                let message = format!(
                    "IKE SA {}: the gateway assigned {:?} (DNS {:?}, domains {:?}, routes {:?})",
                    ike_sa.0,
                    reply.ip4_addresses,
                    reply.ip4_dns,
                    reply.dns_domains,
                    reply.ip4_subnets
                );
                self.push_log(LogLevel::Info, LogEvent::Other, message);
            }
            IkeEvent::LeaseAssigned {
                ike_sa,
                client,
                address,
                ..
            } => {
                let message = format!("IKE SA {}: client {client} leased {address}", ike_sa.0);
                self.push_log(LogLevel::Info, LogEvent::Other, message);
            }
            IkeEvent::LeaseReleased {
                ike_sa, address, ..
            } => {
                let message = format!("IKE SA {}: lease {address} released", ike_sa.0);
                self.push_log(LogLevel::Info, LogEvent::Other, message);
            }
            IkeEvent::PoolExhausted { ike_sa, client, .. } => {
                let message = format!(
                    "IKE SA {}: client {client} refused: the Office Mode address pool is exhausted",
                    ike_sa.0
                );
                self.push_log(LogLevel::Warn, LogEvent::Other, message);
            }
        }
        None
    }

    fn peer_name(&self, peer: rampart_ike::PeerId) -> String {
        peer_policy(self.ike, peer).map_or_else(|| format!("{peer:?}"), |p| p.name.clone())
    }
}

impl ControlPlane for IkeControl<'_> {
    fn control_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        datagram: &[u8],
    ) {
        self.ike.handle_datagram(now, local, remote, datagram);
    }

    fn request(&mut self, now: Instant, request: ControlRequest) {
        match request {
            ControlRequest::Acquire { peer } => {
                let on_traffic = peer_policy(self.ike, peer)
                    .is_some_and(|p| p.start_action == StartAction::OnTraffic);
                if on_traffic {
                    self.ike.acquire(now, peer);
                }
            }
            ControlRequest::RekeyChild { child } => self.ike.rekey_child(now, child),
            ControlRequest::ChildTraffic { child } => self.ike.child_traffic(now, child),
            ControlRequest::NatMappingMoved {
                child,
                local,
                remote,
            } => {
                // Whether it moved shows in the events (one endpoint change per CHILD SA).
                let _moved = self.ike.esp_peer_address(child, local, remote);
            }
            ControlRequest::NatHint { child, hint } => self.ike.nat_hint(now, child, hint),
        }
    }

    fn poll_change(&mut self) -> Option<DataPlaneChange> {
        while let Some(event) = self.ike.poll_event() {
            if let Some(change) = self.on_event(event) {
                return Some(change);
            }
        }
        None
    }

    fn log(&mut self, record: LogRecord) {
        self.outputs.push_back(Output::Log(record));
    }

    fn select_peer(
        &mut self,
        now: Instant,
        info: &PacketInfo,
        packet: &[u8],
        candidates: &[PeerId],
    ) -> Option<PeerId> {
        self.mep.engine.as_ref()?;
        let flow = super::mep::flow_key(info, packet);
        let opening = super::mep::opens_connection(info, packet);
        self.mep.select(now, &flow, opening, candidates)
    }
}
