//! The gateway as a Load Sharing member: every member up and in sync carries traffic. What the
//! engine decides (holds, update requests, forwarded packets, members up) becomes packets
//! here; what only the node knows (which SA a packet belongs to, which connection a flow is)
//! becomes engine calls.
//!
//! - **Flush-and-Ack**: the data plane offers the packet that creates a synced connection
//!   ([`LsOffer::Hold`]); it is copied into the member's pool, its records are pushed and
//!   flushed, and it continues (sealed and sent, or written to the TUN device) when the engine
//!   releases it, or is dropped on the `drop` timeout policy.
//! - **Update requests**: a packet of a connection this member does not know and that cannot
//!   open one is parked and asked about ([`LsOffer::Orphan`]); when the answer is in (the
//!   record applied, or nobody has it, or the timeout) it is inspected again and the rules
//!   decide. Another member's question is answered from the connection table, with a fresh
//!   record of the connection pushed first.
//! - **SA ownership**: an IKE SA (with its CHILD SAs) belongs to the member that negotiated it
//!   or adopted it; every member keeps the others' SAs as replicas with their owner (the
//!   sender of the last `SaUpsert`). ESP and IKE of an SA owned elsewhere are forwarded there
//!   unchanged; inspected cleartext for a tunnel owned elsewhere is forwarded there and sealed
//!   without inspecting it again (for a remote-access template, whose clients' SAs are on any
//!   member, the owner of the SA whose Office Mode lease is the packet's destination); a new IKE_SA_INIT is answered where it arrives. When a
//!   member goes down, the rendezvous owner of each of its SAs among the survivors imports it
//!   (like a high-availability takeover, `takeover_margin` on the sequence numbers) and
//!   announces it with an `SaUpsert`. A member that leaves the members up alive (admin
//!   down, a monitored interface down) hands its SAs over the same way at once, after its
//!   final ESP counters, and forwards what still reaches it for them (the node derives the
//!   change from [`rampart_cluster::Cluster::members_up`] after each pump).
//! - **`sync_after`**: the first packet of such a connection at or after its age is held like
//!   a creating one ([`LsOffer::Synced`]); the timer pushes the connections idle at their due
//!   time.
//! - **Distribution**: routed, every member in sync announces the protected prefixes and the
//!   virtual addresses (`Output::RouteInject` into `announce_table`) and has the virtual
//!   addresses; unicast, the pivot owns them and hands each TUN packet of a flow another member
//!   owns to it.
//!
//! Invariants: a kept packet continues or is dropped exactly once (the pool hands each handle
//! out once); a forwarded packet is never forwarded again (it is handled as if it arrived
//! here, without the ownership checks); nothing here runs in high availability.

use std::net::SocketAddr;
use std::time::Instant;

use rampart_cluster::{
    FlowKey, ForwardKind, Forwarded, HoldOutcome, MemberId, MemberSet, PacketHandle, RecordKind,
    Resolution, UpdateOutcome,
};
use rampart_config::StartAction;
use rampart_ike::{Ike, PeerId, RemoteAccess};
use rampart_wire::ip::PacketInfo;

use super::{peer_policies, Gateway};
use crate::cluster::share::{
    conn_key, ike_header, ike_spi_home, tuple_of, ANNOUNCE_METRIC, ANNOUNCE_PROTOCOL, NO_ADDRESS,
};
use crate::cluster::{codec, ClusterMember};
use crate::dataplane::LsOffer;
use crate::{Disposition, DropReason, LoadSharingStats, LogEvent, LogLevel, LogRecord, Output};

/// Room before a kept or forwarded packet for the ESP header (and IV) it may be sealed with.
const HEADROOM: usize = 128;
/// Room after it for ESP padding, trailer and ICV.
const TAILROOM: usize = 128;
/// Rounds of Load Sharing work per input at most (each may cause the next: a released packet
/// that creates a connection elsewhere, a forwarded packet that is held).
const MAX_ROUNDS: usize = 16;

/// One piece of work the engine handed back.
enum Work {
    /// Continue a kept packet.
    Continue(PacketHandle),
    /// Drop a kept packet.
    Discard(PacketHandle),
    /// A packet another member forwarded.
    Forwarded(Forwarded),
}

/// The data plane's offer of a packet (see [`LsOffer`]); `true` when this member took a
/// copy of it.
pub(super) fn offer(
    c: &mut ClusterMember,
    ike: &Ike,
    now: Instant,
    packet: &[u8],
    offer: LsOffer,
) -> bool {
    let Some(ls) = c.ls.as_mut() else {
        return false;
    };
    // A member out of sync keeps nothing; it still hands inspected cleartext to the owner
    // of the tunnel (it may have given its SAs away on leaving).
    if !ls.carrying && !matches!(offer, LsOffer::Inspected { .. }) {
        return false;
    }
    match offer {
        LsOffer::Hold {
            resume, syn_ack, ..
        } => match ls.pool.keep(packet, resume) {
            Some(handle) => {
                ls.new_holds.push(handle);
                ls.stats.held += 1;
                ls.stats.held_syn_ack += u64::from(syn_ack);
                true
            }
            None => {
                ls.stats.hold_pool_full += 1;
                false
            }
        },
        LsOffer::Synced { conn, resume } => {
            // Only the first packet at the connection's age: its record not pushed yet, or
            // pushed by the timer within `hold_timeout`.
            let pending = ls.delayed_due.contains_key(&conn) && c.unsynced.contains(&conn);
            if !pending && !ls.synced_watch.contains_key(&conn) {
                return false;
            }
            let Some(handle) = ls.pool.keep(packet, resume) else {
                ls.stats.hold_pool_full += 1;
                return false;
            };
            if pending {
                ls.sync_now.push(conn);
            } else {
                ls.synced_watch.remove(&conn);
            }
            ls.new_holds.push(handle);
            ls.stats.held += 1;
            true
        }
        LsOffer::Orphan { tuple, resume } => match ls.pool.keep(packet, resume) {
            Some(handle) => {
                ls.new_orphans.push((handle, conn_key(&tuple)));
                ls.stats.orphans += 1;
                true
            }
            None => {
                ls.stats.orphan_pool_full += 1;
                false
            }
        },
        LsOffer::Inspected { peer } => {
            let Some(policy) = ike.peer(peer) else {
                return false;
            };
            // A remote-access template has one SA per client, on any member: the owner is
            // the one of the client whose virtual IP the packet goes to. A site-to-site peer
            // has its SA (and its rekeyed successors) on one member.
            let ra_client = matches!(policy.remote_access, RemoteAccess::Gateway(_));
            let owner = if ra_client {
                let Ok(info) = PacketInfo::parse(packet) else {
                    return false;
                };
                c.replicas.by_lease(info.dst).map(|(_, owner)| owner)
            } else {
                c.replicas.owner_of_peer(&policy.name)
            };
            let Some(owner) = owner else {
                return false;
            };
            if owner == ls.me || !c.engine.members_up().contains(owner) {
                return false;
            }
            c.engine.forward(
                now,
                owner,
                ForwardKind::Inspected,
                NO_ADDRESS,
                NO_ADDRESS,
                packet,
            );
            ls.stats.forwarded_out.inspected += 1;
            ls.stats.forwarded_to_client += u64::from(ra_client);
            // Inspected here: it counts in this member's share.
            ls.count(packet.len());
            true
        }
        LsOffer::Tun => {
            let Ok(info) = PacketInfo::parse(packet) else {
                return false;
            };
            let flow = FlowKey::conn(
                info.protocol,
                SocketAddr::new(info.src, info.src_port.unwrap_or(0)),
                SocketAddr::new(info.dst, info.dst_port.unwrap_or(0)),
            );
            let owner = c.engine.owner(&flow);
            if owner == ls.me || !c.engine.members_up().contains(owner) {
                return false;
            }
            c.engine
                .forward(now, owner, ForwardKind::Tun, NO_ADDRESS, NO_ADDRESS, packet);
            ls.stats.forwarded_out.tun += 1;
            true
        }
    }
}

impl Gateway {
    fn ls_log(&mut self, level: LogLevel, message: String) {
        self.outputs
            .push_back(Output::Log(LogRecord::new(level, LogEvent::Other, message)));
    }

    /// Load Sharing: this member's Flush-and-Ack, update-request, forwarding and ownership
    /// counters; `None` outside Load Sharing.
    pub fn load_sharing_stats(&self) -> Option<LoadSharingStats> {
        let ls = self.cluster.as_ref()?.ls.as_ref()?;
        let mut stats = ls.stats.clone();
        stats.kept_now = ls.pool.len() as u64;
        stats.routes_announced = ls.announced.len() as u64;
        Some(stats)
    }

    /// Whether this is a Load Sharing member, carrying traffic or not: ESP and IKE of an SA
    /// another member owns are forwarded there (a member that left the members up alive
    /// forwards what still reaches it for the SAs it handed over).
    pub(super) fn ls_member(&self) -> bool {
        self.cluster.as_ref().is_some_and(|c| c.ls.is_some())
    }

    /// Whether this is a Load Sharing member that carries traffic now.
    pub(super) fn ls_carrying(&self) -> bool {
        self.cluster
            .as_ref()
            .and_then(|c| c.ls.as_ref())
            .is_some_and(|ls| ls.carrying)
    }

    /// One pass of the Load Sharing work: what the engine has for the node now, carried out
    /// with the cluster member in place (a continued packet may be offered again). True when
    /// there was work (it may have caused more).
    fn ls_pump(&mut self, now: Instant) -> bool {
        let mut work = Vec::new();
        self.ls_collect(now, &mut work);
        let did = !work.is_empty();
        for w in work {
            match w {
                Work::Continue(handle) => self.ls_continue(now, handle),
                Work::Discard(handle) => {
                    if let Some(ls) = self.cluster.as_mut().and_then(|c| c.ls.as_mut()) {
                        ls.pool.discard(handle);
                    }
                }
                Work::Forwarded(f) => self.ls_forwarded(now, f),
            }
        }
        did
    }

    /// Runs the Load Sharing work and `cluster_round` in turn until nothing is left (at most
    /// [`MAX_ROUNDS`]; what is left then waits for the next input or timer).
    pub(super) fn ls_rounds(&mut self, now: Instant) {
        for _ in 0..MAX_ROUNDS {
            let did = self.ls_pump(now);
            // What the engine was handed (holds flush at once) leaves now.
            self.cluster_round(now);
            if !did {
                return;
            }
        }
    }

    /// Hands new holds and orphans to the engine; collects what it released, resolved and
    /// forwarded; answers other members' update requests; reports the shares.
    fn ls_collect(&mut self, now: Instant, work: &mut Vec<Work>) {
        let Some(c) = self.cluster.as_deref_mut() else {
            return;
        };
        let Some(ls) = c.ls.as_mut() else {
            return;
        };
        let holds = std::mem::take(&mut ls.new_holds);
        let orphans = std::mem::take(&mut ls.new_orphans);
        if !holds.is_empty() {
            // The held connections' records leave now, not after the coalescing window.
            Gateway::flush_pending(now, c);
        }
        for handle in holds {
            match c.engine.hold(now, handle) {
                HoldOutcome::Held => {}
                HoldOutcome::ReleaseNow(_) => work.push(Work::Continue(handle)),
            }
        }
        let ls = c.ls.as_mut().expect("checked");
        for (handle, flow) in orphans {
            match c.engine.request_update(now, handle, flow) {
                UpdateOutcome::Waiting => {}
                UpdateOutcome::Resolved(resolution) => {
                    count_resolution(&mut ls.stats, resolution);
                    work.push(Work::Continue(handle));
                }
            }
        }
        while let Some(r) = c.engine.poll_release() {
            if r.drop {
                ls.stats.released_dropped += 1;
                work.push(Work::Discard(r.packet));
            } else {
                ls.stats.released += 1;
                work.push(Work::Continue(r.packet));
            }
        }
        while let Some((handle, _flow, resolution)) = c.engine.poll_resolved() {
            count_resolution(&mut ls.stats, resolution);
            work.push(Work::Continue(handle));
        }
        let mut body = Vec::new();
        while let Some(query) = c.engine.poll_update_query() {
            // A connection this member keeps unsynced (`sync = false`, or before its
            // `sync_after`) is not handed out on request either.
            let conn = tuple_of(&query.flow)
                .and_then(|t| self.dataplane.inspector().find_flow(now, &t))
                .filter(|conn| !c.unsynced.contains(&conn.id));
            let found = conn.is_some();
            if let Some(conn) = conn {
                body.clear();
                codec::encode_conn(&conn, &mut body);
                c.engine
                    .push_record(now, RecordKind::ConnUpsert, conn.id, &body);
                ls.stats.answered_found += 1;
            } else {
                ls.stats.answered_unknown += 1;
            }
            c.engine.answer_update(now, query, found);
        }
        while let Some(f) = c.engine.poll_forwarded() {
            work.push(Work::Forwarded(f));
        }
        let flows_now = self.dataplane.inspector().stats().connections_accepted;
        let flows = flows_now.saturating_sub(ls.flows_reported);
        if flows + ls.share_packets + ls.share_bytes > 0 {
            c.engine
                .count_share(flows, ls.share_packets, ls.share_bytes);
            ls.flows_reported = flows_now;
            ls.share_packets = 0;
            ls.share_bytes = 0;
        }
    }

    /// A kept packet continues where it was kept.
    fn ls_continue(&mut self, now: Instant, handle: PacketHandle) {
        let Some(ls) = self.cluster.as_mut().and_then(|c| c.ls.as_mut()) else {
            return;
        };
        let mut buf = std::mem::take(&mut ls.scratch);
        let Some((resume, range)) = ls.pool.take_into(handle, &mut buf, HEADROOM, TAILROOM) else {
            ls.scratch = buf;
            return;
        };
        let (dataplane, mut control) = self.parts(now);
        let d = dataplane.resume(now, &mut buf, range, resume, &mut control);
        self.ls_emit(&d, &buf);
        if let Some(ls) = self.cluster.as_mut().and_then(|c| c.ls.as_mut()) {
            ls.scratch = buf;
        }
    }

    /// A packet another member forwarded: handled as if it had arrived here, without the
    /// ownership checks (it is not forwarded again).
    fn ls_forwarded(&mut self, now: Instant, f: Forwarded) {
        let Some(ls) = self.cluster.as_mut().and_then(|c| c.ls.as_mut()) else {
            return;
        };
        let counter = match f.kind {
            ForwardKind::Udp => &mut ls.stats.forwarded_in.udp,
            ForwardKind::RawEsp => &mut ls.stats.forwarded_in.raw_esp,
            ForwardKind::Inspected => &mut ls.stats.forwarded_in.inspected,
            ForwardKind::Tun => &mut ls.stats.forwarded_in.tun,
        };
        *counter += 1;
        let mut buf = std::mem::take(&mut ls.scratch);
        buf.clear();
        buf.resize(HEADROOM + f.data.len() + TAILROOM, 0);
        buf[HEADROOM..HEADROOM + f.data.len()].copy_from_slice(&f.data);
        let range = HEADROOM..HEADROOM + f.data.len();
        let (dataplane, mut control) = self.parts(now);
        let d = match f.kind {
            ForwardKind::Udp => {
                dataplane.handle_udp(now, f.local, f.remote, &mut buf, range, &mut control)
            }
            ForwardKind::RawEsp => dataplane.handle_raw_esp(
                now,
                f.local.ip(),
                f.remote.ip(),
                &mut buf,
                range,
                &mut control,
            ),
            ForwardKind::Inspected => dataplane.seal_inspected(now, &mut buf, range, &mut control),
            ForwardKind::Tun => dataplane.handle_forwarded_tun(now, &mut buf, range, &mut control),
        };
        if let Some(ls) = self.cluster.as_mut().and_then(|c| c.ls.as_mut()) {
            match d {
                Disposition::Dropped(_) => ls.stats.forwarded_in_dropped += 1,
                // Unicast: this member owns the flow and inspected the packet, which went on
                // to the tunnel's owner: it counts in this member's share (`ls_emit` counts
                // the packets that leave here).
                Disposition::Consumed if f.kind == ForwardKind::Tun => ls.count(f.data.len()),
                _ => {}
            }
        }
        self.ls_emit(&d, &buf);
        if let Some(ls) = self.cluster.as_mut().and_then(|c| c.ls.as_mut()) {
            ls.scratch = buf;
        }
    }

    /// What the data plane decided for a packet that is not in the caller's buffer any more,
    /// as outputs with their own bytes.
    fn ls_emit(&mut self, d: &Disposition, buf: &[u8]) {
        let bytes = |r: &std::ops::Range<usize>| buf.get(r.clone()).map(<[u8]>::to_vec);
        let out = match d {
            Disposition::SendUdp {
                local,
                remote,
                data,
            } => bytes(data).map(|data| Output::SendUdp {
                local: *local,
                remote: *remote,
                data,
            }),
            Disposition::SendRawEsp {
                local,
                remote,
                data,
            } => bytes(data).map(|data| Output::SendRawEsp {
                local: *local,
                remote: *remote,
                data,
            }),
            Disposition::WriteTun { data } => bytes(data).map(|data| Output::WriteTun { data }),
            Disposition::Consumed | Disposition::Dropped(_) => None,
        };
        if let Some(out) = out {
            self.ls_count(d);
            self.outputs.push_back(out);
        }
    }

    /// Counts a packet handled here (not dropped, not handed elsewhere) in this member's share.
    pub(super) fn ls_count(&mut self, d: &Disposition) {
        let Some(ls) = self.cluster.as_mut().and_then(|c| c.ls.as_mut()) else {
            return;
        };
        let len = match d {
            Disposition::SendUdp { data, .. }
            | Disposition::SendRawEsp { data, .. }
            | Disposition::WriteTun { data } => data.len(),
            Disposition::Consumed | Disposition::Dropped(_) => return,
        };
        ls.count(len);
    }

    /// An IKE datagram of an IKE SA another member owns (by its replica, or by the member in
    /// our SPI for an SA being negotiated there) is forwarded to it unchanged; true when it
    /// was. A new IKE_SA_INIT stays here.
    pub(super) fn ls_forward_ike(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        datagram: &[u8],
    ) -> bool {
        let nat_t = local.port() == self.config.gateway.nat_t_port;
        if !nat_t && local.port() != self.config.gateway.ike_port {
            return false;
        }
        let Some(c) = self.cluster.as_deref_mut() else {
            return false;
        };
        // Out of sync too: a member that left forwards what still reaches it.
        let Some(ls) = c.ls.as_mut() else {
            return false;
        };
        let Some(header) = ike_header(datagram, nat_t) else {
            return false;
        };
        if header.new_sa {
            return false;
        }
        let owner = match c.replicas.by_ike_spi(header.ours) {
            Some((_, owner)) => owner,
            // Not replicated (yet: being negotiated): the member that chose our SPI, unless
            // this member continues it (adopted).
            None if !ls.adopted_ike_spis.contains(&header.ours) => ike_spi_home(header.ours),
            None => return false,
        };
        if owner == ls.me || !c.engine.members_up().contains(owner) {
            return false;
        }
        c.engine
            .forward(now, owner, ForwardKind::Udp, local, remote, datagram);
        ls.stats.forwarded_out.udp += 1;
        true
    }

    /// An ESP packet whose SPI no tunnel here has: forwarded unchanged to the member that
    /// owns its SA; true when it was (the data plane's drop count is taken back).
    pub(super) fn ls_forward_esp(
        &mut self,
        now: Instant,
        kind: ForwardKind,
        local: SocketAddr,
        remote: SocketAddr,
        packet: &[u8],
    ) -> bool {
        let Some(c) = self.cluster.as_deref_mut() else {
            return false;
        };
        // Out of sync too: a member that left forwards what still reaches it.
        let Some(ls) = c.ls.as_mut() else {
            return false;
        };
        let Some(spi) = packet
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        else {
            return false;
        };
        let Some((_, owner)) = c.replicas.by_esp_spi(spi) else {
            return false;
        };
        if owner == ls.me || !c.engine.members_up().contains(owner) {
            return false;
        }
        c.engine.forward(now, owner, kind, local, remote, packet);
        match kind {
            ForwardKind::RawEsp => ls.stats.forwarded_out.raw_esp += 1,
            _ => ls.stats.forwarded_out.udp += 1,
        }
        self.dataplane.undo_drop(DropReason::UnknownSpi);
        true
    }

    /// Follows the engine's view of this member: up and in sync, it carries traffic (pushes
    /// its records, answers IKE, inspects) and, in routed distribution, announces its routes
    /// and has the virtual addresses; out of sync, it withdraws them.
    pub(super) fn ls_role(&mut self, now: Instant, c: &mut ClusterMember) {
        let Some(ls) = c.ls.as_mut() else {
            return;
        };
        let up = c.engine.members_up();
        let left = MemberSet::from_iter(ls.up_seen.iter().filter(|&m| !up.contains(m)));
        ls.up_seen = up;
        let me = ls.me;
        // A member that left the members up, dead or alive (admin down, a monitored
        // interface down): its SAs go to their owners among the rest. One that died is
        // also reported by `MemberDown`; adopting twice finds nothing the second time.
        for m in left.iter().filter(|&m| m != me) {
            self.ls_adopt(now, c, m);
        }
        let Some(ls) = c.ls.as_mut() else {
            return;
        };
        let carrying = up.contains(ls.me);
        if ls.carrying && !carrying && left.contains(me) {
            self.ls_hand_over(now, c);
        }
        let Some(ls) = c.ls.as_mut() else {
            return;
        };
        if carrying == ls.carrying {
            let first = c.delayed.first_key_value().map(|(&(due, _), _)| due);
            let due = ls.sync_due(now, first);
            let mut hooks = ls.hooks();
            hooks.sync_due = due;
            self.dataplane.set_ls_hooks(hooks);
            return;
        }
        ls.carrying = carrying;
        ls.stats.carrying = carrying;
        let routed = ls.routed();
        let table = ls.config.announce_table;
        let vips = c.config().virtual_addresses.clone();
        if carrying {
            // Back after leaving: it may negotiate again.
            self.ike.set_passive(false);
            if !c.active {
                c.active = true;
                c.pending.clear();
                self.ike.set_passive(false);
                let inspector = self.dataplane.inspector_mut();
                inspector.set_frozen(false);
                inspector.refresh_all(now);
                c.esp_sent.clear();
                c.next_esp_sync = now;
            }
            if routed {
                let ls = c.ls.as_mut().expect("checked");
                // The VIPs and the local domain for the upstream side, the remote domains
                // behind the tunnels (and Office Mode pools) for the inside: a member draws
                // traffic only while it is in sync, and a kill -9 takes the routes with the
                // TUN device.
                let mut prefixes = self.config.local.domain.clone();
                prefixes.extend(self.dataplane.routes());
                prefixes.extend(vips.iter().map(|v| ipnet::IpNet::from(v.ip())));
                for prefix in prefixes {
                    if ls.announced.contains(&prefix) {
                        continue;
                    }
                    ls.announced.push(prefix);
                    self.outputs.push_back(Output::RouteInject {
                        prefix,
                        table,
                        protocol: ANNOUNCE_PROTOCOL,
                        metric: ANNOUNCE_METRIC,
                    });
                }
                for v in vips {
                    self.outputs.push_back(Output::ClaimAddress {
                        interface: v.interface,
                        addr: v.address,
                    });
                }
            }
            self.ls_log(
                LogLevel::Warn,
                "cluster: this member is in sync and carries traffic (load sharing)".into(),
            );
        } else {
            let ls = c.ls.as_mut().expect("checked");
            for prefix in std::mem::take(&mut ls.announced) {
                self.outputs.push_back(Output::RouteWithdraw {
                    prefix,
                    table,
                    protocol: ANNOUNCE_PROTOCOL,
                    metric: ANNOUNCE_METRIC,
                });
            }
            if routed {
                for v in vips {
                    self.outputs.push_back(Output::ReleaseAddress {
                        interface: v.interface,
                        addr: v.address,
                    });
                }
            }
            self.ls_log(
                LogLevel::Warn,
                "cluster: this member is out of sync: routes withdrawn (load sharing)".into(),
            );
        }
        let first = c.delayed.first_key_value().map(|(&(due, _), _)| due);
        let ls = c.ls.as_mut().expect("checked");
        let mut hooks = ls.hooks();
        hooks.sync_due = ls.sync_due(now, first);
        self.dataplane.set_ls_hooks(hooks);
        // Enhanced handshake: ISNs recorded and checked on every member (routed or unicast).
        let enforce = ls.config.enhanced_handshake;
        self.dataplane
            .inspector_mut()
            .set_handshake_enforcement(enforce);
    }

    /// The election made this member the pivot (`true`) or another one: in unicast
    /// distribution the pivot owns the virtual addresses. The pivot brings up the peers that
    /// should always be up and have an SA on no member.
    pub(super) fn ls_pivot(&mut self, now: Instant, c: &mut ClusterMember, pivot: bool) {
        let Some(ls) = c.ls.as_mut() else {
            return;
        };
        ls.pivot = pivot;
        ls.stats.pivot = pivot;
        if !ls.routed() {
            for v in c.config().virtual_addresses.clone() {
                self.outputs.push_back(if pivot {
                    Output::ClaimAddress {
                        interface: v.interface,
                        addr: v.address,
                    }
                } else {
                    Output::ReleaseAddress {
                        interface: v.interface,
                        addr: v.address,
                    }
                });
            }
        }
        if !pivot {
            return;
        }
        let with_sa: Vec<String> = self
            .ike
            .status(now)
            .into_iter()
            .map(|s| s.peer_name)
            .collect();
        let always: Vec<PeerId> = peer_policies(&self.ike)
            .filter(|(_, p)| p.start_action == StartAction::Always)
            .filter(|(_, p)| {
                !with_sa.contains(&p.name) && c.replicas.owner_of_peer(&p.name).is_none()
            })
            .map(|(id, _)| id)
            .collect();
        self.ike.set_passive(false);
        for id in always {
            self.ike.initiate(now, id);
        }
        let (dataplane, mut control) = self.parts(now);
        dataplane.sync(now, &mut control);
        self.ls_log(
            LogLevel::Warn,
            "cluster: this member is the pivot (load sharing)".into(),
        );
    }

    /// This member left the members up while alive (admin down, a monitored interface
    /// down): like a graceful switchover, each SA it owns goes to its rendezvous owner among
    /// the members up. Its final ESP counters went out before it left
    /// ([`Self::ls_final_counters`]); the SAs become replicas with their new owners (who
    /// import them with `takeover_margin` and announce them with `SaUpsert`), they are
    /// forgotten here without telling the peers, and what still reaches this member for them
    /// is forwarded. It negotiates nothing until it is back.
    fn ls_hand_over(&mut self, now: Instant, c: &mut ClusterMember) {
        let mut handed = 0;
        let mut leased = Vec::new();
        for snap in self.export_all(now) {
            let id = snap.ike.id;
            if let Some(l) = &snap.ike.ra_lease {
                leased.push((snap.ike.peer_name.clone(), id, l.clone()));
            }
            c.replicas.upsert(now, snap);
            let Some(spi) = c.replicas.adoption_spi(id) else {
                continue;
            };
            let owner = c.engine.owner(&FlowKey::Esp { spi });
            c.replicas.set_owner(id, owner);
            handed += 1;
        }
        for id in self.ike.sa_ids() {
            self.ike.forget_sa(id);
        }
        // Their clients' addresses are the new owners' leases now.
        for (peer, id, lease) in &leased {
            self.reserve_lease_of(peer, *id, Some(lease));
        }
        self.ike.set_passive(true);
        let (dataplane, mut control) = self.parts(now);
        dataplane.sync(now, &mut control);
        // Forgetting is not deleting: nothing of it goes to the others.
        while self.ike.poll_changed_sa().is_some() {}
        c.synced_sas.clear();
        c.esp_sent.clear();
        if let Some(ls) = c.ls.as_mut() {
            ls.adopted_ike_spis.clear();
        }
        self.ls_log(
            LogLevel::Warn,
            format!("cluster: this member left the members up: {handed} IKE SAs handed to their owners (load sharing)"),
        );
    }

    /// Before this member may leave the members up (admin down, a monitored interface down):
    /// the ESP counters of every tunnel it has go out now, ahead of the heartbeat that says
    /// it left, so the members that adopt its SAs start from them.
    pub(super) fn ls_final_counters(&mut self, now: Instant) {
        let Some(c) = self.cluster.as_deref_mut() else {
            return;
        };
        if !c.ls.as_ref().is_some_and(|ls| ls.carrying) {
            return;
        }
        for child in self.dataplane.tunnel_ids() {
            let Some((out, inb)) = self.dataplane.tunnel_esp_state(child) else {
                continue;
            };
            c.esp_sent.insert(child, (out.next_sequence, inb.highest));
            c.engine.push_record(
                now,
                RecordKind::EspCounters,
                child.0,
                &codec::encode_esp(&out, &inb),
            );
        }
        c.engine.flush(now);
    }

    /// Member `down` is gone: each of its SAs goes to its rendezvous owner among the members
    /// up. This member imports the ones it gets (`takeover_margin` on the outbound sequence
    /// numbers) and announces them; the others' owners are noted until their own
    /// announcement arrives.
    pub(super) fn ls_adopt(&mut self, now: Instant, c: &mut ClusterMember, down: MemberId) {
        let Some(me) = c.ls.as_ref().map(|ls| ls.me) else {
            return;
        };
        let margin = c.config().takeover_margin;
        let mut adopted = 0;
        for id in c.replicas.owned_by(down) {
            let Some(spi) = c.replicas.adoption_spi(id) else {
                continue;
            };
            let owner = c.engine.owner(&FlowKey::Esp { spi });
            if owner != me {
                c.replicas.set_owner(id, owner);
                continue;
            }
            let Some(snap) = c.replicas.take(now, id) else {
                continue;
            };
            let spis = [snap.ike.spi_i, snap.ike.spi_r];
            let peer = snap.ike.peer_name.clone();
            match self.import_sa(now, snap, margin) {
                Ok(new) => {
                    adopted += 1;
                    let ls = c.ls.as_mut().expect("checked");
                    ls.adopted_ike_spis.extend(spis);
                    ls.stats.adoptions += 1;
                    if let Some(snap) = self.export_sa(now, new) {
                        c.engine.push_record(
                            now,
                            RecordKind::SaUpsert,
                            new.0,
                            &codec::encode_sa(&snap),
                        );
                        c.synced_sas.insert(new);
                    }
                }
                Err(e) => {
                    // Gone here too: its address is nobody's now.
                    self.release_replica_lease(id);
                    self.ls_log(
                        LogLevel::Warn,
                        format!(
                            "cluster: adoption of IKE SA {:#x} (peer {peer}) of member {down} failed: {e}",
                            id.0
                        ),
                    )
                }
            }
        }
        if adopted > 0 {
            self.ls_log(
                LogLevel::Warn,
                format!("cluster: {adopted} IKE SAs of member {down} adopted (load sharing)"),
            );
        }
    }
}

fn count_resolution(stats: &mut LoadSharingStats, resolution: Resolution) {
    match resolution {
        Resolution::Found { .. } => stats.orphans_found += 1,
        Resolution::Unknown | Resolution::Timeout | Resolution::Full => {
            stats.orphans_not_found += 1
        }
    }
}
