//! The engine's Load Sharing side (issue #14): Flush-and-Ack holds, update requests (UPD_REQ)
//! both ways, packet forwarding between members, the members up and flow ownership, and the
//! sync-link selector's outputs. The state machines are `crate::flush_ack`,
//! `crate::update_request` and `crate::sync_links`; this module feeds them from the engine
//! (acks, member up/down, restarts, applied stream positions) and turns their outputs into
//! datagrams and into what the node polls.
//!
//! Invariants kept here:
//! - every packet given to [`Cluster::hold`] comes back exactly once: either at once
//!   ([`HoldOutcome::ReleaseNow`]) or through one [`Cluster::poll_release`];
//! - every packet given to [`Cluster::request_update`] comes back exactly once: either at once
//!   ([`UpdateOutcome::Resolved`]) or through one [`Cluster::poll_resolved`];
//! - a `Found` resolution is handed out only after the record that carries the state has been
//!   handed out by [`Cluster::poll_record`];
//! - the queues the node drains ([`Cluster::poll_update_query`], [`Cluster::poll_forwarded`])
//!   are bounded; what does not fit is counted and dropped (the asking member times out, the
//!   forwarded packet is lost like any packet).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Cluster, ClusterEvent, DropReason};
use crate::wire::{self, MsgType, UpdateQuery, FORWARD_OVERHEAD, HEADER_LEN, TAG_LEN};
use crate::{
    AnswerOutcome, FaInput, FaOutput, FlowKey, ForwardKind, LinkId, LinkInput, LinkOutput,
    LoadSharingConfig, MemberId, MemberSet, MemberState, PacketHandle, ReleaseReason, Resolution,
    UpdateAnswerEntry, UrInput, UrOutput, MAX_DATAGRAM_LEN,
};

/// Update requests from other members waiting for the node at most.
const MAX_QUERIES_IN: usize = 4096;
/// Forwarded packets waiting for the node at most.
const MAX_FORWARDED_IN: usize = 4096;
/// Queries one update request datagram carries: the largest query (a connection between two
/// IPv6 endpoints) is 45 bytes, so 28 fit one [`crate::wire::MAX_PLAINTEXT`].
const ASKS_PER_DATAGRAM: usize = 28;
/// Largest packet [`Cluster::forward`] carries: a UDP datagram over IPv6 holds 65,487 bytes of
/// payload after the 48 bytes of IPv6 and UDP headers.
pub const MAX_FORWARD_PACKET: usize =
    MAX_DATAGRAM_LEN - 48 - HEADER_LEN - TAG_LEN - FORWARD_OVERHEAD;

/// What [`Cluster::hold`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldOutcome {
    /// Held: it comes back through [`Cluster::poll_release`].
    Held,
    /// Not held: continue with the packet now (nothing to wait for, or too many held).
    ReleaseNow(ReleaseReason),
}

/// A held packet leaving the hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    pub packet: PacketHandle,
    /// Drop the packet instead of forwarding it (the hold timed out with
    /// `hold_timeout_action = "drop"`).
    pub drop: bool,
    pub reason: ReleaseReason,
    pub held_for: Duration,
}

/// What [`Cluster::request_update`] did with an orphan packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// The other members are asked: the packet comes back through [`Cluster::poll_resolved`].
    Waiting,
    /// Settled at once (nobody to ask: `Unknown`; too many waiting: `Full`).
    Resolved(Resolution),
}

/// Another member asks for the state of `flow`. The node looks it up; if it has it, it pushes
/// a fresh record of it into the delta stream, then calls [`Cluster::answer_update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateQueryIn {
    pub from: MemberId,
    pub id: u32,
    pub flow: FlowKey,
}

/// A packet another member forwarded to this one (it owns the packet's flow or SA).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forwarded {
    pub from: MemberId,
    pub kind: ForwardKind,
    /// The address the packet was received on (or, for inside packets, its source).
    pub local: SocketAddr,
    /// The address it came from (or, for inside packets, its destination).
    pub remote: SocketAddr,
    pub data: Vec<u8>,
}

impl Cluster {
    /// The Load Sharing settings in effect (the defaults when the mode is Load Sharing and the
    /// configuration gave none); `None` in high availability.
    pub fn load_sharing(&self) -> Option<&LoadSharingConfig> {
        self.ls.as_ref()
    }

    /// The members that are up and in sync (announcing Standby or Active, not down), this
    /// member included when it is. Ownership ([`Cluster::owner`]) is computed over them.
    pub fn members_up(&self) -> MemberSet {
        self.up
    }

    /// The rendezvous owner of `flow` among [`Cluster::members_up`]; this member when none is
    /// up (it is alone, so whatever it receives is its own).
    pub fn owner(&self, flow: &FlowKey) -> MemberId {
        self.rendezvous.owner(flow).unwrap_or(self.me)
    }

    /// The local interface of sync link `link` lost or regained carrier: the delta stream
    /// moves off a link without carrier at once (resending what may have been in flight).
    pub fn set_link_carrier(&mut self, now: Instant, link: LinkId, up: bool) {
        self.last_now = now;
        self.links.handle(now, LinkInput::Carrier { link, up });
        self.drain_links(now);
        self.after_input(now);
    }

    /// Flush-and-Ack: the caller has pushed the records of the connection `packet` creates;
    /// this sends every unsent record now as a flush (message type 6, receivers acknowledge at
    /// once) and holds the packet until every other member up has acknowledged them. Without
    /// Flush-and-Ack (high availability, unicast, `flush_ack = false`) or with nobody to wait
    /// for, the packet is released at once. A handle already held stays held once (logged).
    pub fn hold(&mut self, now: Instant, packet: PacketHandle) -> HoldOutcome {
        self.last_now = now;
        let upto = self.send.next_seq;
        let mut members = [0 as MemberId; 256];
        let n = self.others_up(&mut members);
        let Some(fa) = self.fa.as_mut() else {
            return HoldOutcome::ReleaseNow(ReleaseReason::NothingToWaitFor);
        };
        let r = fa.handle(
            now,
            FaInput::Hold {
                packet,
                upto,
                members: &members[..n],
            },
        );
        if let Err(e) = r {
            self.log(format!("Flush-and-Ack: {e}: the earlier hold stands"));
            return HoldOutcome::Held;
        }
        match self.drain_fa(now, Some(packet)) {
            Some(reason) => HoldOutcome::ReleaseNow(reason),
            None => HoldOutcome::Held,
        }
    }

    /// The next held packet that leaves its hold (acknowledged, timed out, or its members
    /// went down).
    pub fn poll_release(&mut self) -> Option<Released> {
        self.released.pop_front()
    }

    /// UPD_REQ, asking side: `packet` belongs to `flow`, which this member does not know. The
    /// other members up are asked (message type 7, batched per call); the packet comes back
    /// through [`Cluster::poll_resolved`] once the state is applied here (`Found`), every
    /// member said `Unknown`, or at `update_timeout`.
    pub fn request_update(
        &mut self,
        now: Instant,
        packet: PacketHandle,
        flow: FlowKey,
    ) -> UpdateOutcome {
        self.last_now = now;
        let mut members = [0 as MemberId; 256];
        let n = self.others_up(&mut members);
        let Some(ur) = self.ur.as_mut() else {
            return UpdateOutcome::Resolved(Resolution::Unknown);
        };
        ur.handle(
            now,
            UrInput::Orphan {
                packet,
                flow,
                members: &members[..n],
            },
        );
        let r = self.drain_ur(now, Some(packet));
        self.flush_asks(now);
        match r {
            Some(res) => UpdateOutcome::Resolved(res),
            None => UpdateOutcome::Waiting,
        }
    }

    /// The next orphan packet whose update request is settled. Drain [`Cluster::poll_record`]
    /// first: a `Found` comes after the record carrying the state.
    pub fn poll_resolved(&mut self) -> Option<(PacketHandle, FlowKey, Resolution)> {
        self.resolved.pop_front()
    }

    /// UPD_REQ, answering side: the next query from another member.
    pub fn poll_update_query(&mut self) -> Option<UpdateQueryIn> {
        self.queries_in.pop_front()
    }

    /// Answers `query` (message type 8). `found`: the node has the state and has just pushed a
    /// fresh record of it; the answer names that record (the last one pushed) and the stream
    /// position after it, and the record is sent now. The asker applies it in stream order.
    pub fn answer_update(&mut self, now: Instant, query: UpdateQueryIn, found: bool) {
        self.last_now = now;
        let Some(pi) = self.peers.iter().position(|p| p.id == query.from) else {
            return;
        };
        let outcome = if found {
            self.flush(now);
            AnswerOutcome::Found {
                key: self.last_pushed_key,
                upto: self.send.next_seq,
            }
        } else {
            AnswerOutcome::Unknown
        };
        self.c.update_queries_answered += 1;
        let entry = [UpdateAnswerEntry {
            id: query.id,
            outcome,
        }];
        self.send_control(now, MsgType::UpdateAnswer, pi, |out| {
            wire::write_update_answer(out, &entry);
        });
    }

    /// Hands `packet` to member `to`, unchanged, as message type 9 (sealed like every
    /// datagram) on the sync link that carries our stream to it. Refused (counted, logged
    /// once) when `to` is not a live member or the packet is larger than
    /// [`MAX_FORWARD_PACKET`].
    pub fn forward(
        &mut self,
        now: Instant,
        to: MemberId,
        kind: ForwardKind,
        local: SocketAddr,
        remote: SocketAddr,
        packet: &[u8],
    ) {
        self.last_now = now;
        let Some(pi) = self.peers.iter().position(|p| p.id == to && p.alive) else {
            self.forward_refused(format!("member {to} is not a live member"));
            return;
        };
        if packet.len() > MAX_FORWARD_PACKET {
            self.forward_refused(format!(
                "a {}-byte packet exceeds {MAX_FORWARD_PACKET}",
                packet.len()
            ));
            return;
        }
        let (mut buf, counter) = self.begin(MsgType::Forward, FORWARD_OVERHEAD + packet.len());
        wire::write_forward(&mut buf, kind, local, remote, packet);
        self.tx_key.seal(counter, &mut buf, HEADER_LEN);
        self.emit_routed(pi, buf, 0);
        self.c.forwarded_sent += 1;
        self.logged_forward_drop = false;
    }

    fn forward_refused(&mut self, why: String) {
        self.c.forwarded_dropped += 1;
        if !self.logged_forward_drop {
            self.logged_forward_drop = true;
            self.log(format!("packet not forwarded: {why}"));
        }
    }

    /// The next packet another member forwarded to this one.
    pub fn poll_forwarded(&mut self) -> Option<Forwarded> {
        self.forwarded.pop_front()
    }

    /// Adds to this member's own share in the ownership map (what it handled as owner).
    pub fn count_share(&mut self, flows: u64, packets: u64, bytes: u64) {
        let me = self.me;
        if let Some(s) = self.ownership.members.iter_mut().find(|s| s.member == me) {
            s.flows += flows;
            s.packets += packets;
            s.bytes += bytes;
        }
    }

    /// Fills `out` with the other members up; returns how many.
    fn others_up(&self, out: &mut [MemberId; 256]) -> usize {
        let mut n = 0;
        for p in &self.peers {
            if self.up.contains(p.id) {
                out[n] = p.id;
                n += 1;
            }
        }
        n
    }

    /// At the end of every input: recompute the members up (and the ownership that follows
    /// them) and send the update requests the input produced.
    pub(super) fn after_input(&mut self, now: Instant) {
        let mut set = MemberSet::EMPTY;
        if matches!(self.state, MemberState::Standby | MemberState::Active) {
            set.insert(self.me);
        }
        for p in &self.peers {
            if p.eligible() {
                set.insert(p.id);
            }
        }
        if set != self.up {
            self.up = set;
            let ids: Vec<MemberId> = self
                .config
                .members
                .iter()
                .map(|m| m.id)
                .filter(|&m| set.contains(m))
                .collect();
            self.rendezvous.set_up(ids);
            self.ownership.update(&self.rendezvous);
        }
        self.flush_asks(now);
    }

    /// `member` went down or restarted: holds stop waiting for it, its answers and stream
    /// positions no longer count.
    pub(super) fn member_down_ls(&mut self, member: MemberId) {
        let now = self.last_now;
        if let Some(fa) = self.fa.as_mut() {
            // `MemberDown` never fails.
            let _ = fa.handle(now, FaInput::MemberDown { member });
            self.drain_fa(now, None);
        }
        if let Some(ur) = self.ur.as_mut() {
            ur.handle(now, UrInput::MemberDown { member });
            self.drain_ur(now, None);
        }
    }

    /// `member` is up (again): later holds wait for it.
    pub(super) fn member_up_ls(&mut self, member: MemberId) {
        if let Some(fa) = self.fa.as_mut() {
            let _ = fa.handle(self.last_now, FaInput::MemberUp { member });
        }
    }

    /// A cumulative ack of our stream from peer `pi`.
    pub(super) fn ack_ls(&mut self, now: Instant, pi: usize, member: MemberId, next: u64) {
        let Some(fa) = self.fa.as_mut() else { return };
        let _ = fa.handle(now, FaInput::Ack { member, next });
        if self.peers[pi].fa_declared && next >= self.send.next_seq {
            // It has everything we sent: holds wait for it again.
            self.peers[pi].fa_declared = false;
            let _ = fa.handle(now, FaInput::MemberUp { member });
            self.log(format!(
                "member {member} acknowledges our stream again: Flush-and-Ack waits for it"
            ));
        }
        self.drain_fa(now, None);
    }

    /// Timers of the Load Sharing machines and of the sync links.
    pub(super) fn timeout_ls(&mut self, now: Instant) {
        self.links.handle_timeout(now);
        self.drain_links(now);
        if let Some(fa) = self.fa.as_mut() {
            if fa.poll_timeout().is_some_and(|t| t <= now) {
                fa.handle_timeout(now);
                self.drain_fa(now, None);
            }
        }
        if let Some(ur) = self.ur.as_mut() {
            if ur.poll_timeout().is_some_and(|t| t <= now) {
                ur.handle_timeout(now);
                self.drain_ur(now, None);
            }
        }
    }

    /// The node was handed `from`'s records below `next` (see [`Cluster::poll_record`]).
    pub(super) fn applied_ls(&mut self, from: MemberId, next: u64) {
        let now = self.last_now;
        if let Some(ur) = self.ur.as_mut() {
            ur.handle(now, UrInput::StreamProgress { member: from, next });
            self.drain_ur(now, None);
        }
    }

    /// Acts on the Flush-and-Ack outputs. Returns the reason when `target` was released at
    /// once (not queued for [`Cluster::poll_release`]).
    fn drain_fa(&mut self, now: Instant, target: Option<PacketHandle>) -> Option<ReleaseReason> {
        let mut immediate = None;
        while let Some(o) = self.fa.as_mut().and_then(|f| f.poll_output()) {
            match o {
                FaOutput::Flush { upto, members } => self.send_flush(now, upto, members),
                FaOutput::Release {
                    packet,
                    reason,
                    held_for,
                } => {
                    if Some(packet) == target
                        && matches!(
                            reason,
                            ReleaseReason::NothingToWaitFor | ReleaseReason::Full
                        )
                    {
                        immediate = Some(reason);
                    } else {
                        self.released.push_back(Released {
                            packet,
                            drop: false,
                            reason,
                            held_for,
                        });
                    }
                }
                FaOutput::Drop { packet, held_for } => self.released.push_back(Released {
                    packet,
                    drop: true,
                    reason: ReleaseReason::Timeout,
                    held_for,
                }),
                FaOutput::DeclareDown { member } => {
                    if let Some(p) = self.peers.iter_mut().find(|p| p.id == member) {
                        p.fa_declared = true;
                    }
                    let timeout = self.ls.map(|l| l.hold_timeout).unwrap_or_default();
                    self.log(format!(
                        "member {member} did not acknowledge a Flush-and-Ack hold within {} ms: \
                         holds no longer wait for it until it catches up",
                        timeout.as_millis()
                    ));
                }
            }
        }
        immediate
    }

    /// Sends our stream's records below `upto` now as a flush. Records not sent yet go in
    /// data datagrams whose last is a flush; when everything below `upto` was sent already, an
    /// empty flush asks each member of `members` that has not acknowledged it for its ack now.
    fn send_flush(&mut self, now: Instant, upto: u64, members: MemberSet) {
        if self.send.sent_upto < upto {
            let (from, to) = (self.send.sent_upto, self.send.next_seq);
            self.pack_as(now, from, to, None, true);
            self.send.sent_upto = to;
            self.open_len = 0;
            self.flush_at = None;
            return;
        }
        let at = self.send.sent_upto;
        for pi in 0..self.peers.len() {
            let p = &self.peers[pi];
            if p.alive && members.contains(p.id) && p.acked.is_none_or(|a| a < upto) {
                self.send_control(now, MsgType::Flush, pi, |out| wire::put_varint(out, at));
            }
        }
    }

    /// Acts on the update-request outputs. Returns the resolution when `target` was resolved
    /// at once (not queued for [`Cluster::poll_resolved`]).
    fn drain_ur(&mut self, _now: Instant, target: Option<PacketHandle>) -> Option<Resolution> {
        let mut immediate = None;
        while let Some(o) = self.ur.as_mut().and_then(|u| u.poll_output()) {
            match o {
                UrOutput::Ask { id, flow, members } => {
                    self.asks.push((UpdateQuery { id, flow }, members))
                }
                UrOutput::Resolved {
                    packet,
                    flow,
                    resolution,
                    ..
                } => {
                    if Some(packet) == target && immediate.is_none() {
                        immediate = Some(resolution);
                    } else {
                        self.resolved.push_back((packet, flow, resolution));
                    }
                }
            }
        }
        immediate
    }

    /// Sends the queued queries: per live peer, the queries addressed to it, in datagrams of
    /// at most [`ASKS_PER_DATAGRAM`].
    fn flush_asks(&mut self, now: Instant) {
        if self.asks.is_empty() {
            return;
        }
        let asks = std::mem::take(&mut self.asks);
        let mut batch = std::mem::take(&mut self.scratch_queries);
        for pi in 0..self.peers.len() {
            if !self.peers[pi].alive {
                continue;
            }
            let id = self.peers[pi].id;
            batch.clear();
            batch.extend(asks.iter().filter(|(_, m)| m.contains(id)).map(|(q, _)| *q));
            for chunk in batch.chunks(ASKS_PER_DATAGRAM) {
                self.send_control(now, MsgType::UpdateRequest, pi, |out| {
                    wire::write_update_request(out, chunk);
                });
            }
        }
        batch.clear();
        self.scratch_queries = batch;
        let mut asks = asks;
        asks.clear();
        self.asks = asks;
    }

    /// Message type 7 from peer `pi`: queue its queries for the node.
    pub(super) fn on_update_request(
        &mut self,
        _now: Instant,
        pi: usize,
        msg: &[u8],
    ) -> Result<(), DropReason> {
        let mut qs = std::mem::take(&mut self.scratch_queries);
        let r = wire::read_update_request(msg, &mut qs);
        if r.is_ok() {
            let from = self.peers[pi].id;
            for q in &qs {
                if self.queries_in.len() < MAX_QUERIES_IN {
                    self.queries_in.push_back(UpdateQueryIn {
                        from,
                        id: q.id,
                        flow: q.flow,
                    });
                } else {
                    self.c.update_queries_dropped += 1;
                }
            }
        }
        qs.clear();
        self.scratch_queries = qs;
        r.map_err(|_| DropReason::Malformed)
    }

    /// Message type 8 from peer `pi`: answers to our queries.
    pub(super) fn on_update_answer(
        &mut self,
        now: Instant,
        pi: usize,
        msg: &[u8],
    ) -> Result<(), DropReason> {
        let mut es = std::mem::take(&mut self.scratch_answers);
        let r = wire::read_update_answer(msg, &mut es);
        if r.is_ok() {
            let member = self.peers[pi].id;
            if let Some(ur) = self.ur.as_mut() {
                for &entry in &es {
                    ur.handle(now, UrInput::Answer { member, entry });
                }
            }
            self.drain_ur(now, None);
        }
        es.clear();
        self.scratch_answers = es;
        r.map_err(|_| DropReason::Malformed)
    }

    /// Message type 9 from peer `pi`: a packet for the node.
    pub(super) fn on_forward(&mut self, pi: usize, msg: &[u8]) -> Result<(), DropReason> {
        let (kind, local, remote, packet) =
            wire::read_forward(msg).map_err(|_| DropReason::Malformed)?;
        if self.forwarded.len() >= MAX_FORWARDED_IN {
            self.c.forwarded_dropped += 1;
            return Ok(());
        }
        self.c.forwarded_received += 1;
        self.forwarded.push_back(Forwarded {
            from: self.peers[pi].id,
            kind,
            local,
            remote,
            data: packet.to_vec(),
        });
        Ok(())
    }

    /// Acts on the sync-link selector's outputs: a route that failed is replaced and what was
    /// in flight on it is resent on the new one, from the peer's cumulative ack of this boot
    /// (the selector's own ack may predate a restart of the peer).
    pub(super) fn drain_links(&mut self, now: Instant) {
        while let Some(o) = self.links.poll_output() {
            match o {
                LinkOutput::Switched {
                    member,
                    from: Some(from),
                    to,
                    reason,
                } => {
                    let to = to.map_or_else(|| "none (no live link)".into(), |t| t.to_string());
                    self.events.push_back(ClusterEvent::Log {
                        message: format!(
                            "sync stream to member {member} moved from link {from} to {to} ({reason:?})"
                        ),
                    });
                }
                LinkOutput::Switched { from: None, .. } => {}
                LinkOutput::Resend { member, .. } => {
                    let Some(pi) = self.peers.iter().position(|p| p.id == member) else {
                        continue;
                    };
                    let p = &self.peers[pi];
                    if !p.alive {
                        continue;
                    }
                    let start = p.acked.unwrap_or(self.send.base).max(self.send.base);
                    let end = self.send.sent_upto;
                    if start < end {
                        self.pack(now, start, end, Some(pi));
                    }
                }
            }
        }
    }
}
