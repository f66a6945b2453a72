//! The data plane: policy lookup, stateful inspection, ESP open and seal, the batch paths and
//! their counters. It knows nothing of the configuration file or of IKE: it is built from a
//! [`DataPlaneConfig`] and an inspection policy, and talks to whatever negotiates its SAs
//! through the [`ControlPlane`] trait (a gateway's IKE engine today, a client's tomorrow).
//!
//! Invariants:
//! - Every input is answered in the caller's buffer (a [`Disposition`]); anything else the data
//!   plane has to say (logs, requests) goes to the control plane at once, in packet order.
//! - After every request it makes, the data plane applies the changes the control plane has
//!   for it ([`ControlPlane::poll_change`]) before it looks at the next packet, so a tunnel
//!   installed or moved by a request is in place for the packets that follow.
//! - The per-packet paths do not allocate.

mod batch;
mod counters;
mod open;
mod path_mtu;
mod policy;
mod seal;
mod share;
mod transfer;
mod tunnels;

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use rampart_crypto::Rng;
use rampart_esp::udp_encap::{self, Classified};
use rampart_esp::{CryptRunner, InboundSa, Inline, Lifetime, OutboundSa, SaConfig};
use rampart_ike::{ChildSaId, ChildSaKeys, NatHint, PeerId};
use rampart_inspect::Inspector;

pub use counters::{open_drop_reason, seal_drop_reason, DataPlaneCounters};
pub use policy::{FirstEstablished, PeerSelector, Policy, TunnelState};
pub use share::{LsHooks, LsOffer, Resume};
pub(crate) use tunnels::{Tunnel, Tunnels};

use crate::{Disposition, DropReason, LogEvent, LogLevel, LogRecord};

/// How often the data plane looks at ESP lifetimes when nothing else wakes it.
const LIFETIME_CHECK: Duration = Duration::from_secs(1);

/// What a data plane is built from: plain values, no configuration-file types.
#[derive(Debug, Clone)]
pub struct DataPlaneConfig {
    /// This member's id in a cluster (0 alone); part of every connection id.
    pub member_id: u16,
    /// The protected local networks: outbound traffic must come from one of them.
    pub local_domain: Vec<IpNet>,
    /// Every (remote prefix, peer) pair; a prefix given for several peers has them all as
    /// candidates, in this order.
    pub remote_domains: Vec<(IpNet, PeerId)>,
    /// The UDP port of ESP-in-UDP (RFC 3948): datagrams there may be ESP, IKE or keepalives.
    pub nat_t_port: u16,
}

/// The settings of one peer that its tunnels need, handed over with each CHILD SA.
#[derive(Debug, Clone)]
pub struct TunnelSettings {
    pub peer_name: String,
    pub replay_window: u32,
    /// Soft byte lifetime of each direction (the hard one is 10% more).
    pub lifetime_bytes: Option<u64>,
    /// The peer is a remote-access gateway template: each of its tunnels serves one client
    /// and is chosen by the client's virtual address (see `Tunnel::per_client`).
    pub per_client: bool,
    /// MSS clamp for the tunnel's TCP SYN and SYN-ACK (both directions): the largest MSS
    /// over IPv4 (IPv6: 20 less); `None`: off.
    pub mss_limit: Option<u16>,
    /// A remote-access client's tunnel to its gateway over UDP or raw ESP (not a stream),
    /// whose TUN device has this MTU: the data plane keeps the peer's path MTU (probes when
    /// its [`crate::pmtu::PmtuPolicy`] says so, ICMP reports) and announces it with
    /// `Output::TunnelMtu`. `None`: no path-MTU work for this tunnel.
    pub client_mtu: Option<u16>,
}

/// What the data plane asks of its control plane. All are rare except `ChildTraffic`, which is
/// sent at most once per tunnel and instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlRequest {
    /// Outbound traffic for `peer` found no tunnel: negotiate one if the peer wants that.
    Acquire { peer: PeerId },
    /// A soft lifetime of `child` was reached: rekey it.
    RekeyChild { child: ChildSaId },
    /// `child` carried inbound traffic (liveness checks only run on idle SAs).
    ChildTraffic { child: ChildSaId },
    /// An authenticated ESP-in-UDP packet of `child` came from a new address: the peer's NAT
    /// mapping moved.
    NatMappingMoved {
        child: ChildSaId,
        local: SocketAddr,
        remote: SocketAddr,
    },
    /// Something unauthenticated suggests the peer of `child` moved (a NAT keepalive from its IP
    /// on a new port, an ESP packet of the SA from a new port that did not open, an ICMP
    /// unreachable): the control plane may check, it must not move the SA on this alone.
    NatHint { child: ChildSaId, hint: NatHint },
}

/// A change the control plane makes to the data plane's tunnels.
#[derive(Debug)]
pub enum DataPlaneChange {
    /// Install a CHILD SA (boxed: keys are large and installs rare).
    Install(Box<(ChildSaKeys, TunnelSettings)>),
    /// Remove a CHILD SA (its SPIs for the log).
    Remove {
        child: ChildSaId,
        spi_in: u32,
        spi_out: u32,
    },
    /// The addresses (and encapsulation) of a CHILD SA changed.
    Endpoint {
        child: ChildSaId,
        local: SocketAddr,
        remote: SocketAddr,
        encap: bool,
    },
}

/// The data plane's view of the node that owns it.
pub trait ControlPlane {
    /// A control datagram (IKE) that arrived on `local` from `remote`.
    fn control_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        datagram: &[u8],
    );
    fn request(&mut self, now: Instant, request: ControlRequest);
    /// The next change to apply to the data plane, once the control plane has one.
    fn poll_change(&mut self) -> Option<DataPlaneChange>;
    /// A record for the node's output stream.
    fn log(&mut self, record: LogRecord);
    /// Any other output of the data plane (path-MTU probes, `TunnelMtu`): rare, timer-driven.
    fn emit(&mut self, output: crate::Output);
    /// The peer of an outbound packet (`info` describes `packet`, after inspection and NAT)
    /// when the control plane decides among these `candidates` (Multiple Entry Points: one of
    /// them is an entry point); `None` leaves the choice to the data plane's [`PeerSelector`].
    /// Called once per outbound packet: must not allocate once the packet's connection is
    /// known.
    fn select_peer(
        &mut self,
        now: Instant,
        info: &rampart_wire::ip::PacketInfo,
        packet: &[u8],
        candidates: &[PeerId],
    ) -> Option<PeerId>;
    /// Load Sharing: `packet` is offered (see [`LsOffer`]); `true` when the control plane
    /// took a copy of it (the data plane answers `Consumed`), `false` to continue as usual.
    /// Only called for the checks enabled by the data plane's [`LsHooks`].
    fn ls_offer(&mut self, now: Instant, packet: &[u8], offer: LsOffer) -> bool {
        let _ = (now, packet, offer);
        false
    }
}

/// The per-packet engine shared by every kind of node (sans-IO).
pub struct DataPlane {
    config: DataPlaneConfig,
    policy: Policy,
    selector: Box<dyn PeerSelector>,
    tunnels: Tunnels,
    rng: Rng,
    counters: DataPlaneCounters,
    next_lifetime_check: Instant,
    /// Stateful inspection of every packet that enters or leaves a tunnel.
    inspect: Inspector,
    /// The IP Pool NAT pools (local hosts answer pool addresses through the TUN device).
    pools: Vec<IpNet>,
    /// Runs the cipher jobs of a batch (on other threads if the shell set a pool).
    crypt: Arc<dyn CryptRunner>,
    /// The last (tunnel, instant) reported as carrying traffic: a batch shares one `now`, so the
    /// control plane hears of each tunnel once per batch, not once per packet.
    last_child_traffic: Option<(ChildSaId, Instant)>,
    /// The packets of the current batch whose cipher job is prepared and not yet run; holds at
    /// most [`batch::CRYPT_CHUNK`] (allocated once).
    pending: Vec<batch::Pending>,
    /// How remote-access client tunnels find their path MTU.
    pmtu_policy: crate::pmtu::PmtuPolicy,
    /// Path-MTU state per remote-access client peer with a tunnel.
    pmtu: std::collections::HashMap<PeerId, crate::pmtu::PeerPmtu>,
    /// Load Sharing checks (all off outside Load Sharing).
    ls: LsHooks,
}

impl DataPlane {
    /// `rng` seeds the connection table (one fork, taken first) and then every outbound SA.
    pub fn new(
        config: DataPlaneConfig,
        inspect_policy: rampart_inspect::InspectPolicy,
        now: Instant,
        mut rng: Rng,
    ) -> DataPlane {
        let pools = pools_of(&inspect_policy);
        let inspect = Inspector::new(inspect_policy, config.member_id, rng.fork().next_u64(), now);
        DataPlane {
            policy: Policy::new(config.local_domain.clone(), &config.remote_domains),
            config,
            selector: Box::new(FirstEstablished),
            tunnels: Tunnels::default(),
            rng,
            counters: DataPlaneCounters::default(),
            next_lifetime_check: now + LIFETIME_CHECK,
            inspect,
            pools,
            crypt: Arc::new(Inline),
            last_child_traffic: None,
            pending: Vec::with_capacity(batch::CRYPT_CHUNK),
            pmtu_policy: crate::pmtu::PmtuPolicy::default(),
            pmtu: std::collections::HashMap::new(),
            ls: LsHooks::default(),
        }
    }

    /// Sets who runs the cipher jobs of a batch; the default runs them on the calling thread.
    pub fn set_crypt_runner(&mut self, runner: Arc<dyn CryptRunner>) {
        self.crypt = runner;
    }

    /// Sets how a peer is chosen among a prefix's candidates (default [`FirstEstablished`]).
    pub fn set_peer_selector(&mut self, selector: Box<dyn PeerSelector>) {
        self.selector = selector;
    }

    /// Takes a new local domain, remote prefixes and inspection policy (live reload). Tunnels
    /// stay installed; the policy table and the IP Pool NAT pools are rebuilt and the
    /// inspection policy is swapped in one step ([`Inspector::set_policy`]).
    pub fn reconfigure(
        &mut self,
        now: Instant,
        local_domain: Vec<IpNet>,
        remote_domains: Vec<(IpNet, PeerId)>,
        inspect_policy: rampart_inspect::InspectPolicy,
    ) -> rampart_inspect::PolicySwap {
        self.pools = pools_of(&inspect_policy);
        self.policy = Policy::new(local_domain.clone(), &remote_domains);
        self.config.local_domain = local_domain;
        self.config.remote_domains = remote_domains;
        self.inspect.set_policy(now, inspect_policy)
    }

    /// The routes into the TUN device for the node's whole life: every remote prefix, then
    /// every IP Pool NAT pool.
    pub fn routes(&self) -> Vec<IpNet> {
        self.policy
            .remote_prefixes()
            .chain(self.pools.iter().copied())
            .collect()
    }

    /// A datagram from one of our UDP sockets: control traffic on any port but the NAT-T port;
    /// there IKE, ESP-in-UDP or a NAT keepalive.
    pub fn handle_udp(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        buf: &mut [u8],
        packet: Range<usize>,
        control: &mut impl ControlPlane,
    ) -> Disposition {
        let Some(datagram) = buf.get(packet.clone()) else {
            return self.drop(DropReason::Malformed);
        };
        if local.port() != self.config.nat_t_port {
            control.control_datagram(now, local, remote, datagram);
            self.sync(now, control);
            return Disposition::Consumed;
        }
        match udp_encap::classify(datagram) {
            Classified::Ike(range) => {
                let start = packet.start + range.start;
                let end = packet.start + range.end;
                control.control_datagram(now, local, remote, &buf[start..end]);
                self.sync(now, control);
                Disposition::Consumed
            }
            Classified::Keepalive => {
                self.keepalive(now, local, remote, control);
                Disposition::Consumed
            }
            Classified::Esp(range) => {
                let esp = packet.start + range.start..packet.start + range.end;
                self.handle_esp(now, buf, esp, Some((local, remote)), control)
            }
            Classified::Invalid => self.drop(DropReason::Malformed),
        }
    }

    /// A NAT keepalive from `remote`: nothing when a tunnel's peer is there; when only its IP
    /// is known (a NAT in front of the peer gave it a new port), a hint per peer address there.
    fn keepalive(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        control: &mut impl ControlPlane,
    ) {
        let Some(moved) = self.tunnels.moved_from(remote) else {
            return;
        };
        // Rare: at most one tunnel per distinct old address of this IP (bounded, no allocation).
        for child in moved.into_iter().flatten() {
            let hint = NatHint::NewAddress { local, remote };
            self.request(now, control, ControlRequest::NatHint { child, hint });
        }
    }

    /// An ICMP port or host unreachable answered our datagram from `local` to `remote`: when a
    /// UDP-encapsulated tunnel sends there, IKE checks whether the peer is still there.
    pub fn handle_unreachable(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        control: &mut impl ControlPlane,
    ) {
        let child = self
            .tunnels
            .at_remote(remote)
            .find(|(_, t)| t.encap && t.local.port() == local.port())
            .map(|(id, _)| id);
        if let Some(child) = child {
            let hint = NatHint::Unreachable;
            self.request(now, control, ControlRequest::NatHint { child, hint });
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
        control: &mut impl ControlPlane,
    ) -> Disposition {
        self.handle_esp(now, buf, packet, None, control)
    }

    /// Connection timeouts now, soft lifetimes once a second (each asks for a rekey once; hard
    /// limits are enforced by the SA), then the control plane's changes.
    pub fn handle_timeout(&mut self, now: Instant, control: &mut impl ControlPlane) {
        self.inspect.handle_timeout(now);
        self.drain_inspect_logs(control);
        self.tunnels.expire_retired(now);
        if now >= self.next_lifetime_check {
            self.next_lifetime_check = now + LIFETIME_CHECK;
            for (id, tunnel) in self.tunnels.iter_mut() {
                if tunnel.take_rekey_due() {
                    control.request(now, ControlRequest::RekeyChild { child: *id });
                }
            }
        }
        self.sync(now, control);
        self.pmtu_timeout(now, control);
    }

    pub fn poll_timeout(&self) -> Instant {
        let t = self.next_lifetime_check.min(self.inspect.poll_timeout());
        let t = self.pmtu_poll_timeout().map_or(t, |p| p.min(t));
        self.tunnels.next_expiry().map_or(t, |r| r.min(t))
    }

    /// Applies every change the control plane has for the data plane.
    pub fn sync(&mut self, now: Instant, control: &mut impl ControlPlane) {
        while let Some(change) = control.poll_change() {
            match change {
                DataPlaneChange::Install(install) => {
                    let (keys, settings) = *install;
                    self.install(now, keys, settings, control);
                }
                DataPlaneChange::Remove {
                    child,
                    spi_in,
                    spi_out,
                } => {
                    let (peer, grace) = match self.tunnels.delete(now, child) {
                        tunnels::Deleted::Removed(name) => (name, ""),
                        tunnels::Deleted::Retired => {
                            let name = self.tunnels.get(child).map(|t| t.peer_name.clone());
                            (
                                name.unwrap_or_default(),
                                "; its inbound SA decrypts for 1 s more (rekeyed)",
                            )
                        }
                        tunnels::Deleted::Unknown => continue,
                    };
                    self.pmtu_forget_gone();
                    control.log(LogRecord::new(
                        LogLevel::Info,
                        LogEvent::TunnelDown {
                            peer: peer.clone(),
                            child: child.0,
                            spi_in,
                            spi_out,
                        },
                        format!(
                            "peer {peer}: tunnel {:#x} removed (SPIs in {spi_in:08x}, out {spi_out:08x}){grace}",
                            child.0
                        ),
                    ));
                }
                DataPlaneChange::Endpoint {
                    child,
                    local,
                    remote,
                    encap,
                } => {
                    self.tunnels.set_endpoint(child, local, remote, encap);
                }
            }
        }
    }

    /// The connection table for `rampart conn list` (at most `limit` entries).
    pub fn conn_list(&self, now: Instant, limit: usize) -> rampart_inspect::ConnList {
        self.inspect.list(now, limit)
    }

    /// Inspection counters for `rampart conn stats`.
    pub fn conn_stats(&self) -> rampart_inspect::InspectStats {
        self.inspect.stats()
    }

    pub fn counters(&self) -> &DataPlaneCounters {
        &self.counters
    }

    pub(crate) fn tunnels(&self) -> &Tunnels {
        &self.tunnels
    }

    /// Makes a request of the control plane and applies what it changed.
    fn request(&mut self, now: Instant, control: &mut impl ControlPlane, request: ControlRequest) {
        control.request(now, request);
        self.sync(now, control);
    }

    /// Tells the control plane that tunnel `id` carried inbound traffic at `now`, once per
    /// tunnel and instant.
    fn note_child_traffic(&mut self, now: Instant, id: ChildSaId, control: &mut impl ControlPlane) {
        if self.last_child_traffic != Some((id, now)) {
            self.last_child_traffic = Some((id, now));
            control.request(now, ControlRequest::ChildTraffic { child: id });
        }
    }

    fn drain_inspect_logs(&mut self, control: &mut impl ControlPlane) {
        while let Some(record) = self.inspect.poll_log() {
            let level = if record.warn {
                LogLevel::Warn
            } else {
                LogLevel::Info
            };
            control.log(LogRecord::new(level, LogEvent::Firewall, record.message));
        }
    }

    fn install(
        &mut self,
        now: Instant,
        keys: ChildSaKeys,
        settings: TunnelSettings,
        control: &mut impl ControlPlane,
    ) {
        let lifetime = Lifetime {
            soft_bytes: settings.lifetime_bytes,
            hard_bytes: settings.lifetime_bytes.map(|b| b.saturating_add(b / 10)),
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
            replay_window: settings.replay_window,
            lifetime,
        });
        let outbound = OutboundSa::new(
            &SaConfig {
                spi: keys.spi_out,
                encr: keys.encr,
                encr_key: &keys.key_out,
                integ: integ_out,
                esn: keys.esn,
                replay_window: settings.replay_window,
                lifetime,
            },
            self.rng.fork(),
        );
        let name = settings.peer_name;
        let client_mtu = settings.client_mtu;
        let (inbound, outbound) = match (inbound, outbound) {
            (Ok(i), Ok(o)) => (i, o),
            (Err(e), _) | (_, Err(e)) => {
                control.log(LogRecord::new(
                    LogLevel::Error,
                    LogEvent::TunnelFailed {
                        peer: name.clone(),
                        child: keys.child.0,
                    },
                    format!(
                        "peer {name}: cannot install tunnel {:#x}: {e}",
                        keys.child.0
                    ),
                ));
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
            name,
            keys.child.0,
            keys.spi_in,
            keys.spi_out,
            if keys.encap { "esp-in-udp" } else { "esp" },
            match keys.replaces {
                Some(old) => format!(", replaces {:#x}", old.0),
                None => String::new(),
            }
        );
        let event = LogEvent::TunnelUp {
            peer: name.clone(),
            child: keys.child.0,
            spi_in: keys.spi_in,
            spi_out: keys.spi_out,
            encap: keys.encap,
            replaces: keys.replaces.map(|c| c.0),
        };
        self.tunnels.insert(
            keys.child,
            Tunnel {
                peer: keys.peer,
                peer_name: name,
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
                replaced: false,
                per_client: settings.per_client,
                mss_limit: settings.mss_limit,
                retired_until: None,
            },
            keys.replaces,
        );
        control.log(LogRecord::new(LogLevel::Info, event, message));
        if let Some(mtu) = client_mtu {
            let name = self.tunnels.get(keys.child).map(|t| t.peer_name.clone());
            self.pmtu_installed(now, keys.peer, &name.unwrap_or_default(), mtu);
        }
    }

    fn drop(&mut self, reason: DropReason) -> Disposition {
        self.counters.drop(reason);
        Disposition::Dropped(reason)
    }
}

impl TunnelState for Tunnels {
    fn has_tunnel(&self, peer: PeerId) -> bool {
        Tunnels::has_tunnel(self, peer)
    }
}

/// How many packets of a batch can be handled: as many as every slice has room for.
/// The IP Pool NAT pools of a policy.
fn pools_of(policy: &rampart_inspect::InspectPolicy) -> Vec<IpNet> {
    policy
        .nat
        .iter()
        .filter_map(|n| match n {
            rampart_inspect::policy::NatRule::Pool { pool, .. } => Some(*pool),
            _ => None,
        })
        .collect()
}

/// The ESP overhead the MSS clamp leaves room for besides the tunnel MTU's own: outer IPv4
/// and UDP headers (28), ESP header and IV (8 + 16), padding and trailer (up to 17), ICV (16).
pub const ESP_OVERHEAD: u16 = 85;

/// The MSS limit (over IPv4) of a remote-access tunnel on a TUN device of `mtu` bytes: the
/// MSS that fills `mtu`, and never more than what fits a 1500-byte outer path after ESP.
pub fn mss_limit_for(mtu: u16) -> u16 {
    rampart_wire::ip::mss::mss_for_mtu(mtu.min(1500 - ESP_OVERHEAD), false)
}

/// Clamps the MSS of the TCP SYN or SYN-ACK `packet` (IPv4 limit `limit`, IPv6 20 less); true
/// when it was lowered. Anything else, and packets that do not parse, are left alone.
fn clamp(packet: &mut [u8], limit: u16) -> bool {
    let limit = if packet.first().is_some_and(|b| b >> 4 == 6) {
        limit.saturating_sub(20)
    } else {
        limit
    };
    matches!(
        rampart_wire::ip::mss::clamp_mss(packet, limit),
        Ok(rampart_wire::ip::mss::MssOutcome::Clamped { .. })
    )
}

fn batch_len(bufs: usize, packets: usize, out: usize) -> usize {
    bufs.min(packets).min(out)
}
