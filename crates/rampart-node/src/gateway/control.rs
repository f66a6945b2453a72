//! The gateway's control plane as the data plane sees it: requests go to the IKE engine, IKE's
//! events become data-plane changes, datagrams and log records in the output queue.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use rampart_config::{GatewayConfig, StartAction};
use rampart_esp::udp_encap;
use rampart_ike::{DownReason, Ike, IkeEvent, IkeSaId, NatSide, PeerId};
use rampart_wire::ip::PacketInfo;

use super::mep::MepNode;
use super::peer_policy;
use super::ra::{self, RaNode, SaDown};
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
    /// Remote access: leases (gateway) and assignments (client) from IKE's events.
    pub ra: &'a mut RaNode,
    /// The input's instant.
    pub now: Instant,
    /// The cluster member, when there is one (Load Sharing offers go to it).
    pub cluster: Option<&'a mut crate::cluster::ClusterMember>,
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
                if peer_policy(self.ike, peer).is_some_and(ra::is_client) {
                    self.ra.ike_sa_up(peer, ike_sa);
                }
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
                self.client_sa_down(peer, ike_sa, reason);
            }
            IkeEvent::ChildSaUp(keys) => {
                self.mep.changed.push(keys.peer);
                let Some(p) = peer_policy(self.ike, keys.peer) else {
                    // The peer was removed since: its SAs go with it.
                    return None;
                };
                let remote_access = ra::is_gateway(p) || ra::is_client(p);
                // `[remote_access] mss_clamp` (default on); a client without the section clamps.
                let clamp = self
                    .config
                    .remote_access
                    .as_ref()
                    .is_none_or(|r| r.mss_clamp);
                let settings = TunnelSettings {
                    peer_name: p.name.clone(),
                    replay_window: p.replay_window,
                    lifetime_bytes: p.child_lifetime_bytes,
                    per_client: ra::is_gateway(p),
                    mss_limit: (remote_access && clamp)
                        .then(|| crate::dataplane::mss_limit_for(self.config.tunnel.mtu)),
                    // A stream (RFC 9329) has no path MTU of its own: TCP takes care of it.
                    client_mtu: (ra::is_client(p)
                        && p.encapsulation != rampart_ike::Encapsulation::Stream)
                        .then_some(self.config.tunnel.mtu),
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
            IkeEvent::VirtualIp {
                peer,
                ike_sa,
                reply,
            } => {
                let name = self.peer_name(peer);
                let address = reply
                    .ip4_addresses
                    .first()
                    .map(|a| a.to_string())
                    .or_else(|| reply.ip6_addresses.first().map(|a| a.addr().to_string()))
                    .unwrap_or_else(|| "no address".to_string());
                let routes = if reply.ip4_subnets.is_empty() && reply.ip6_subnets.is_empty() {
                    "everything (full tunnel)".to_string()
                } else {
                    let mut r: Vec<String> =
                        reply.ip4_subnets.iter().map(|n| n.to_string()).collect();
                    r.extend(reply.ip6_subnets.iter().map(|n| n.to_string()));
                    r.join(", ")
                };
                let dns: Vec<String> = reply
                    .ip4_dns
                    .iter()
                    .map(|a| a.to_string())
                    .chain(reply.ip6_dns.iter().map(|a| a.to_string()))
                    .collect();
                let message = format!(
                    "peer {name}: the gateway assigned virtual address {address} (IKE SA {:#x}); DNS [{}], domains [{}], routes: {routes}",
                    ike_sa.0,
                    dns.join(", "),
                    reply.dns_domains.join(", "),
                );
                self.push_log(
                    LogLevel::Info,
                    LogEvent::VirtualAddress {
                        peer: name.clone(),
                        address: Some(address),
                    },
                    message,
                );
                self.ra.virtual_ip(self.now, peer, ike_sa, reply.clone());
                self.outputs
                    .push_back(Output::VirtualAddress { peer: name, reply });
            }
            IkeEvent::LeaseAssigned {
                peer,
                ike_sa,
                client,
                address,
            } => {
                let name = self.peer_name(peer);
                let remote = self.sa_remote(ike_sa);
                let message = format!(
                    "remote access {name}: client {client} from {remote} got {address} (IKE SA {:#x})",
                    ike_sa.0
                );
                self.push_log(
                    LogLevel::Info,
                    LogEvent::LeaseAssigned {
                        peer: name,
                        client: client.clone(),
                        address: address.to_string(),
                        remote,
                    },
                    message,
                );
                self.ra.lease_assigned(self.now, peer, client, address);
            }
            IkeEvent::LeaseReleased {
                peer,
                ike_sa,
                address,
            } => {
                let name = self.peer_name(peer);
                let held = self.ra.lease_released(peer, address);
                let client = held.map_or_else(|| "?".to_string(), |c| c.client);
                let message = format!(
                    "remote access {name}: client {client} released {address} (IKE SA {:#x} ended)",
                    ike_sa.0
                );
                self.push_log(
                    LogLevel::Info,
                    LogEvent::LeaseReleased {
                        peer: name,
                        client,
                        address: address.to_string(),
                    },
                    message,
                );
            }
            IkeEvent::MobikeMoved {
                peer,
                ike_sa,
                local,
                remote,
                encap,
            } => {
                self.mep.changed.push(peer);
                let name = self.peer_name(peer);
                let by_us = peer_policy(self.ike, peer).is_some_and(|p| !p.is_template());
                let message = if by_us {
                    format!("peer {name}: moved to {local} (MOBIKE): IKE SA {:#x} and its tunnels now run {local} -> {remote}{}", ike_sa.0, if encap { ", ESP in UDP" } else { "" })
                } else {
                    format!("peer {name}: the peer moved to {remote} (MOBIKE): IKE SA {:#x} and its tunnels follow{}", ike_sa.0, if encap { ", ESP in UDP" } else { "" })
                };
                self.push_log(
                    LogLevel::Info,
                    LogEvent::PeerMoved {
                        peer: name.clone(),
                        local: local.to_string(),
                        remote: remote.to_string(),
                        encap,
                        by_us,
                    },
                    message,
                );
                if peer_policy(self.ike, peer).is_some_and(ra::is_client) {
                    self.outputs.push_back(Output::Roamed {
                        peer: name,
                        local,
                        remote,
                    });
                }
            }
            IkeEvent::MobikeFailed { peer, ike_sa, why } => {
                let name = self.peer_name(peer);
                self.push_log(
                    LogLevel::Warn,
                    LogEvent::MoveFailed {
                        peer: name.clone(),
                        why: why.clone(),
                    },
                    format!(
                        "peer {name}: MOBIKE move of IKE SA {:#x} failed: {why}",
                        ike_sa.0
                    ),
                );
                if peer_policy(self.ike, peer).is_some_and(ra::is_client) {
                    self.outputs
                        .push_back(Output::RoamFailed { peer: name, why });
                }
            }
            IkeEvent::PoolExhausted {
                peer,
                ike_sa,
                client,
            } => {
                let name = self.peer_name(peer);
                let remote = self.sa_remote(ike_sa);
                self.ra.pool_exhausted(peer);
                let message = format!(
                    "remote access {name}: client {client} from {remote} refused: the Office Mode address pool is exhausted (INTERNAL_ADDRESS_FAILURE sent, IKE SA {:#x})",
                    ike_sa.0
                );
                self.push_log(
                    LogLevel::Warn,
                    LogEvent::PoolExhausted {
                        peer: name,
                        client,
                        remote,
                    },
                    message,
                );
            }
        }
        None
    }

    /// Where IKE SA `ike_sa` reaches its peer now (`?` once it is gone). Rare: lease events.
    fn sa_remote(&self, ike_sa: IkeSaId) -> String {
        self.ike
            .status(self.now)
            .into_iter()
            .find(|s| s.ike_sa == ike_sa)
            .map_or_else(|| "?".to_string(), |s| s.remote.to_string())
    }

    /// A remote-access client's IKE SA went down: when it carried the assignment (and was
    /// not rekeyed into another), the client shell hears that the address is lost.
    fn client_sa_down(&mut self, peer: PeerId, ike_sa: IkeSaId, reason: DownReason) {
        if !peer_policy(self.ike, peer).is_some_and(ra::is_client) {
            return;
        }
        let rekeyed = reason == DownReason::Rekeyed;
        if self.ra.ike_sa_down(peer, ike_sa, rekeyed) != SaDown::Lost {
            return;
        }
        let name = self.peer_name(peer);
        self.push_log(
            LogLevel::Info,
            LogEvent::VirtualAddress {
                peer: name.clone(),
                address: None,
            },
            format!(
                "peer {name}: virtual address lost (IKE SA {:#x} down: {reason:?})",
                ike_sa.0
            ),
        );
        self.outputs
            .push_back(Output::VirtualAddressLost { peer: name });
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

    fn emit(&mut self, output: Output) {
        self.outputs.push_back(output);
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

    fn ls_offer(&mut self, now: Instant, packet: &[u8], offer: crate::dataplane::LsOffer) -> bool {
        match self.cluster.as_deref_mut() {
            Some(c) => super::share::offer(c, self.ike, now, packet, offer),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rampart_crypto::Rng;
    use rampart_ike::{DownReason, IkeSaId, RaClient, RemoteAccess};
    use rampart_wire::ike::CfgReply;

    use super::*;

    const CLIENT: &str = r#"
[gateway]
name = "laptop"

[local]
domain = ["10.99.0.0/24"]

[[peer]]
name = "office"
local_address = "192.0.2.10"
remote_address = "198.51.100.1"
psk = "0123456789abcdef0123456789abcdef"
remote_domain = ["10.1.0.0/24"]
"#;

    #[test]
    fn a_virtual_ip_goes_to_the_shell_survives_an_ike_rekey_and_is_lost_with_its_sa() {
        let mut config = rampart_config::parse(CLIENT, "laptop.toml").unwrap();
        let mut policy = config.peers.remove(0);
        policy.remote_access = RemoteAccess::Client(Arc::new(RaClient {
            eap: None,
            small_first_proposal: false,
        }));
        let mut ike = Ike::new(config.ike_config(), Rng::from_seed([7; 32]));
        let peer = ike.add_peer(policy);
        let (mut outputs, mut mep, mut ra) =
            (VecDeque::new(), MepNode::default(), RaNode::default());
        let now = Instant::now();
        let mut control = IkeControl {
            config: &config,
            ike: &mut ike,
            outputs: &mut outputs,
            mep: &mut mep,
            ra: &mut ra,
            now,
            cluster: None,
        };
        let reply = CfgReply {
            ip4_addresses: vec!["10.99.0.7".parse().unwrap()],
            ip4_dns: vec!["10.1.0.53".parse().unwrap()],
            dns_domains: vec!["corp.example".into()],
            ..CfgReply::default()
        };
        let (first, second) = (IkeSaId(5), IkeSaId(6));
        control.on_event(IkeEvent::IkeSaUp {
            peer,
            ike_sa: first,
        });
        control.on_event(IkeEvent::VirtualIp {
            peer,
            ike_sa: first,
            reply: reply.clone(),
        });
        // An IKE SA rekey: the new SA comes up, the old goes; the address stays.
        control.on_event(IkeEvent::IkeSaUp {
            peer,
            ike_sa: second,
        });
        control.on_event(IkeEvent::IkeSaDown {
            peer,
            ike_sa: first,
            reason: DownReason::Rekeyed,
        });
        assert_eq!(ra.assigned[&peer].ike_sa, second);
        let mut control = IkeControl {
            config: &config,
            ike: &mut ike,
            outputs: &mut outputs,
            mep: &mut mep,
            ra: &mut ra,
            now,
            cluster: None,
        };
        control.on_event(IkeEvent::IkeSaDown {
            peer,
            ike_sa: second,
            reason: DownReason::DeletedByPeer,
        });
        let shell: Vec<Output> = outputs
            .iter()
            .filter(|o| !matches!(o, Output::Log(_)))
            .cloned()
            .collect();
        assert_eq!(
            shell,
            [
                Output::VirtualAddress {
                    peer: "office".into(),
                    reply
                },
                Output::VirtualAddressLost {
                    peer: "office".into()
                }
            ]
        );
        let logs: Vec<&str> = outputs
            .iter()
            .filter_map(|o| match o {
                Output::Log(r) => Some(r.message.as_str()),
                _ => None,
            })
            .collect();
        assert!(
            logs.iter()
                .any(|l| l.contains("assigned virtual address 10.99.0.7")
                    && l.contains("corp.example")
                    && l.contains("full tunnel")),
            "{logs:#?}"
        );
        assert!(logs.iter().any(|l| l.contains("virtual address lost")));
        assert!(ra.assigned.is_empty());
    }
}
