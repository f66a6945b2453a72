//! Path MTU in the data plane: a remote-access client's probe search, black-hole check and
//! ICMP "too big" reports (per peer, [`crate::pmtu::PeerPmtu`]); every node's answer to
//! probes (an ack of [`probe::HEADER_LEN`] bytes sealed in place on the same tunnel).
//!
//! Invariants:
//! - Probes leave only from the timer (`handle_timeout`), one in flight per peer; the packet
//!   path only parses next-header-253 payloads that an SA authenticated, and answers in the
//!   caller's buffer without allocating.
//! - The MSS clamp of a peer's tunnels follows the peer's current inner MTU.
//! - ICMP never raises the MTU and never lowers it below the floor; only a finished search
//!   raises it, never above the configured MTU.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use rampart_ike::{ChildSaId, PeerId};

use super::{ControlPlane, DataPlane, Tunnel};
use crate::pmtu::{self, probe, Framing, PeerPmtu, PmtuPolicy, PmtuResult, SearchKind};
use crate::{Disposition, DropReason, LogEvent, LogLevel, LogRecord, MtuReason, Output};

/// The framing of `tunnel`'s outbound SA (cipher, encapsulation, outer IP version).
fn framing(tunnel: &Tunnel) -> Framing<impl Fn(usize) -> usize + '_> {
    Framing {
        ip_v6: tunnel.remote.is_ipv6(),
        encap: tunnel.encap,
        headroom: tunnel.outbound.headroom(),
        tailroom: |len| tunnel.outbound.tailroom(len),
    }
}

fn outer_for_inner(tunnel: &Tunnel, inner: u16) -> u16 {
    u16::try_from(framing(tunnel).outer_for_inner(usize::from(inner))).unwrap_or(u16::MAX)
}

fn inner_for_outer(tunnel: &Tunnel, outer: u16) -> u16 {
    pmtu::inner_for_outer(&framing(tunnel), outer)
}

impl DataPlane {
    /// Sets how client tunnels find their path MTU (default [`PmtuPolicy::default`]).
    pub fn set_pmtu_policy(&mut self, policy: PmtuPolicy) {
        self.pmtu_policy = policy;
    }

    /// The path-MTU state of every remote-access client peer, for status.
    pub fn path_mtu_status(&self) -> Vec<pmtu::PathMtuStatus> {
        let mut v: Vec<_> = self.pmtu.values().map(PeerPmtu::status).collect();
        v.sort_by(|a, b| a.peer.cmp(&b.peer));
        v
    }

    /// A client tunnel of `peer` was installed: its path-MTU state starts (a search at once
    /// when probing is on), or carries on across a rekey.
    pub(super) fn pmtu_installed(&mut self, now: Instant, peer: PeerId, name: &str, mtu: u16) {
        if self.pmtu.contains_key(&peer) {
            let limit = self.pmtu.get(&peer).map(|p| p.current);
            if let Some(current) = limit {
                self.set_peer_clamp(peer, current);
            }
            return;
        }
        let first_id = self.rng.next_u64() as u32;
        let mut state = PeerPmtu::new(name.to_string(), mtu, now, first_id);
        state.next_stall_check = now + self.pmtu_policy.stall;
        self.pmtu.insert(peer, state);
    }

    /// Drops the state of peers that have no tunnel left (the next tunnel searches anew).
    pub(super) fn pmtu_forget_gone(&mut self) {
        let tunnels = &self.tunnels;
        self.pmtu.retain(|peer, _| tunnels.has_tunnel(*peer));
    }

    /// When the path-MTU work needs the timer next.
    pub(super) fn pmtu_poll_timeout(&self) -> Option<Instant> {
        self.pmtu
            .values()
            .map(|p| p.poll_timeout(&self.pmtu_policy))
            .min()
    }

    /// Runs every client peer's search, black-hole check and re-probe timer; sends the probes
    /// that are due.
    pub(super) fn pmtu_timeout(&mut self, now: Instant, control: &mut impl ControlPlane) {
        if self.pmtu.is_empty() {
            return;
        }
        let peers: Vec<PeerId> = self.pmtu.keys().copied().collect();
        for peer in peers {
            self.pmtu_peer_timeout(now, peer, control);
        }
    }

    fn pmtu_peer_timeout(&mut self, now: Instant, peer: PeerId, control: &mut impl ControlPlane) {
        let policy = self.pmtu_policy;
        let Some((_, tunnel)) = self.tunnels.active(peer) else {
            return;
        };
        let floor = policy.floor;
        let counts = (
            tunnel.outbound.stats().packets,
            tunnel.inbound.stats().packets,
        );
        let Some(state) = self.pmtu.get_mut(&peer) else {
            return;
        };
        let ceiling = outer_for_inner(tunnel, state.configured).max(floor);
        let current_outer = outer_for_inner(tunnel, state.current).max(floor);
        // Black-hole check: packets left, none came back, and no search runs.
        if now >= state.next_stall_check {
            state.next_stall_check = now + policy.stall;
            let (out0, in0) = state.stall_sample;
            state.stall_sample = counts;
            let stalled = counts.0 > out0 && counts.1 == in0 && out0 != 0;
            if stalled && policy.probe && state.search.is_none() {
                state.start(SearchKind::Confirm, &policy, current_outer, current_outer);
            }
        }
        if policy.probe && state.search.is_none() && now >= state.next_search {
            state.start(SearchKind::Full, &policy, floor, ceiling);
        }
        let Some((kind, search)) = state.search.as_mut() else {
            return;
        };
        let kind = *kind;
        search.handle_timeout(now);
        if let Some(result) = search.result() {
            self.pmtu_search_done(now, peer, kind, result, control);
            return;
        }
        let Some(size) = search.poll_probe(now) else {
            return;
        };
        let id = state.note_probe(size);
        self.send_probe(peer, id, size, control);
    }

    /// A search or confirmation ended.
    fn pmtu_search_done(
        &mut self,
        now: Instant,
        peer: PeerId,
        kind: SearchKind,
        result: PmtuResult,
        control: &mut impl ControlPlane,
    ) {
        let policy = self.pmtu_policy;
        let Some((_, tunnel)) = self.tunnels.active(peer) else {
            return;
        };
        let floor_inner = inner_for_outer(tunnel, policy.floor);
        let found_inner = match result {
            PmtuResult::Found(outer) => Some(inner_for_outer(tunnel, outer)),
            PmtuResult::FloorFailed => None,
        };
        let Some(state) = self.pmtu.get_mut(&peer) else {
            return;
        };
        state.search = None;
        let name = state.peer_name.clone();
        match (kind, found_inner) {
            (SearchKind::Full, Some(inner)) => {
                state.next_search = now + policy.reprobe;
                let inner = inner.min(state.configured);
                control.log(LogRecord::new(
                    LogLevel::Info,
                    LogEvent::Other,
                    format!("peer {name}: path MTU search done: tunnel MTU {inner} passes"),
                ));
                self.apply_mtu(peer, inner, MtuReason::Probed, true, control);
            }
            (SearchKind::Full, None) => {
                state.next_search = now + policy.reprobe;
                let current = state.current;
                control.log(LogRecord::new(
                    LogLevel::Warn,
                    LogEvent::Other,
                    format!(
                        "peer {name}: path MTU search: no probe was acknowledged, not even the floor (the gateway may not answer probes); keeping tunnel MTU {current}"
                    ),
                ));
            }
            (SearchKind::Confirm, Some(_)) => {}
            (SearchKind::Confirm, None) => {
                state.black_holes += 1;
                // Search again from the floor at once.
                state.next_search = now;
                control.log(LogRecord::new(
                    LogLevel::Warn,
                    LogEvent::Other,
                    format!(
                        "peer {name}: traffic stalled and a probe of the current size got no answer (black hole): tunnel MTU down to the floor {floor_inner}"
                    ),
                ));
                self.apply_mtu(peer, floor_inner, MtuReason::BlackHole, false, control);
            }
        }
    }

    /// Makes `inner` the current MTU of `peer`: the clamp follows, and the shell hears of a
    /// change (`always`: also of an unchanged result, e.g. a finished search).
    fn apply_mtu(
        &mut self,
        peer: PeerId,
        inner: u16,
        reason: MtuReason,
        always: bool,
        control: &mut impl ControlPlane,
    ) {
        let Some(state) = self.pmtu.get_mut(&peer) else {
            return;
        };
        let changed = state.current != inner;
        state.current = inner;
        if changed {
            state.last_reason = Some(reason);
        }
        let name = state.peer_name.clone();
        self.set_peer_clamp(peer, inner);
        if changed || always {
            control.log(LogRecord::new(
                LogLevel::Info,
                LogEvent::Other,
                format!(
                    "peer {name}: tunnel MTU {inner} ({})",
                    pmtu::reason_name(reason)
                ),
            ));
            control.emit(Output::TunnelMtu {
                peer: name,
                mtu: inner,
                reason,
            });
        }
    }

    /// The MSS clamp of every tunnel of `peer` that clamps: what fills an inner MTU of `mtu`.
    fn set_peer_clamp(&mut self, peer: PeerId, mtu: u16) {
        let limit = rampart_wire::ip::mss::mss_for_mtu(mtu, false);
        for (_, t) in self.tunnels.iter_mut() {
            if t.peer == peer && t.mss_limit.is_some() {
                t.mss_limit = Some(limit);
            }
        }
    }

    /// Seals a probe of outer size `size` on `peer`'s active tunnel and hands it to the shell.
    /// Allocates (one buffer per probe: probes come from the timer, a few per search).
    fn send_probe(&mut self, peer: PeerId, id: u32, size: u16, control: &mut impl ControlPlane) {
        let Some(active) = self.tunnels.active(peer).map(|(id, _)| id) else {
            return;
        };
        let Some(tunnel) = self.tunnels.get_mut(active) else {
            return;
        };
        let inner = usize::from(inner_for_outer(tunnel, size));
        if inner < probe::HEADER_LEN {
            return;
        }
        let head = tunnel.outbound.headroom();
        let mut buf = vec![0u8; head + inner + tunnel.outbound.tailroom(inner)];
        probe::write_probe(&mut buf[head..head + inner], id, size);
        let (local, remote, encap) = (tunnel.local, tunnel.remote, tunnel.encap);
        let esp = match tunnel
            .outbound
            .seal(&mut buf, head..head + inner, probe::NEXT_HEADER)
        {
            Ok(esp) => esp,
            Err(e) => {
                self.counters.seal_failed(&e);
                return;
            }
        };
        self.counters.esp_packets_out += 1;
        buf.truncate(esp.end);
        buf.drain(..esp.start);
        control.emit(if encap {
            Output::SendUdp {
                local: SocketAddr::new(local.ip(), self.config.nat_t_port),
                remote,
                data: buf,
            }
        } else {
            Output::SendRawEsp {
                local: local.ip(),
                remote: remote.ip(),
                data: buf,
            }
        });
    }

    /// An authenticated next-header-253 payload `buf[payload]` of tunnel `id`: a probe is
    /// answered in place (an ack sealed on the same tunnel, inside `buf[bound]`), an ack feeds
    /// the peer's search. Anything else is dropped and counted.
    pub(super) fn pmtu_payload(
        &mut self,
        now: Instant,
        id: ChildSaId,
        buf: &mut [u8],
        payload: Range<usize>,
        bound: Range<usize>,
        control: &mut impl ControlPlane,
    ) -> Disposition {
        let message = match probe::parse(&buf[payload.clone()]) {
            Ok(m) => m,
            Err(e) => {
                self.counters.pmtu_probes_refused += 1;
                tracing::debug!("tunnel {:#x}: path MTU probe refused: {e}", id.0);
                return self.drop(DropReason::Malformed);
            }
        };
        match message {
            probe::Message::Probe { id: probe_id, size } => {
                self.answer_probe(id, buf, payload, bound, probe_id, size)
            }
            probe::Message::Ack { id: probe_id, size } => {
                self.pmtu_ack(now, id, probe_id, size, control);
                Disposition::Consumed
            }
        }
    }

    fn answer_probe(
        &mut self,
        id: ChildSaId,
        buf: &mut [u8],
        payload: Range<usize>,
        bound: Range<usize>,
        probe_id: u32,
        size: u16,
    ) -> Disposition {
        let Some(tunnel) = self
            .tunnels
            .get_mut(id)
            .filter(|t| t.retired_until.is_none())
        else {
            return self.drop(DropReason::NoSa);
        };
        let ack = payload.start..payload.start + probe::HEADER_LEN;
        // The room the outbound SA needs around the ack, inside `bound`.
        if ack.start < bound.start + tunnel.outbound.headroom()
            || bound.end.min(buf.len()) < ack.end + tunnel.outbound.tailroom(ack.len())
        {
            self.counters.pmtu_probes_refused += 1;
            return self.drop(DropReason::Malformed);
        }
        probe::write_ack(&mut buf[ack.clone()], probe_id, size);
        let (local, remote, encap) = (tunnel.local, tunnel.remote, tunnel.encap);
        let sealed = tunnel.outbound.seal(buf, ack, probe::NEXT_HEADER);
        self.counters.pmtu_probes_answered += 1;
        self.sealed(sealed, local, remote, encap)
    }

    fn pmtu_ack(
        &mut self,
        now: Instant,
        tunnel: ChildSaId,
        probe_id: u32,
        size: u16,
        control: &mut impl ControlPlane,
    ) {
        let Some(peer) = self.tunnels.get(tunnel).map(|t| t.peer) else {
            return;
        };
        let Some(state) = self.pmtu.get_mut(&peer) else {
            return;
        };
        if !state.take_probe(probe_id, size) {
            return;
        }
        let Some((kind, search)) = state.search.as_mut() else {
            return;
        };
        let kind = *kind;
        search.on_ack(now, size);
        if let Some(result) = search.result() {
            self.pmtu_search_done(now, peer, kind, result, control);
        } else if let Some(next) = search.poll_probe(now) {
            // The next probe at once, not at the next tick.
            let id = state.note_probe(next);
            self.send_probe(peer, id, next, control);
        }
    }

    /// An ICMP "fragmentation needed" / "packet too big" (or a local `EMSGSIZE`) says the path
    /// from `local` to `remote` carries at most `mtu` outer bytes. A client lowers the tunnel
    /// MTU of the peer there (never below the floor, never up); any node lowers the MSS clamp
    /// of its tunnels there (a gateway: the clients behind that address).
    pub fn handle_path_mtu(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        mtu: u16,
        control: &mut impl ControlPlane,
    ) {
        let _ = now;
        let mtu = mtu.max(self.pmtu_policy.floor);
        let nat_t = self.config.nat_t_port;
        // Rare (an ICMP error): the matching tunnels are collected.
        let hits: Vec<(ChildSaId, PeerId, u16)> = self
            .tunnels
            .at_remote(remote)
            .filter(|(_, t)| {
                if t.encap {
                    t.remote == remote && (local.port() == nat_t || local.port() == t.local.port())
                } else {
                    true
                }
            })
            .map(|(id, t)| (id, t.peer, inner_for_outer(t, mtu)))
            .collect();
        if hits.is_empty() {
            return;
        }
        self.counters.pmtu_icmp_too_big += 1;
        for (id, peer, inner) in hits {
            if let Some(state) = self.pmtu.get_mut(&peer) {
                state.icmp_too_big += 1;
                if let Some((_, s)) = state.search.as_mut() {
                    s.on_packet_too_big(now, mtu);
                }
                if inner < state.current {
                    self.apply_mtu(peer, inner, MtuReason::IcmpTooBig, false, control);
                }
                continue;
            }
            // Not a probing client: lower this tunnel's clamp (never raise it).
            let limit = rampart_wire::ip::mss::mss_for_mtu(inner, false);
            if let Some(t) = self.tunnels.get_mut(id) {
                if let Some(old) = t.mss_limit.filter(|old| limit < *old) {
                    t.mss_limit = Some(limit);
                    let name = t.peer_name.clone();
                    control.log(LogRecord::new(
                        LogLevel::Info,
                        LogEvent::Other,
                        format!(
                            "peer {name}: path to {remote} carries {mtu} bytes (ICMP): MSS clamp of tunnel {:#x} {old} -> {limit}",
                            id.0
                        ),
                    ));
                }
            }
        }
    }
}
