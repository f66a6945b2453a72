//! Load Sharing hooks of the data plane: where a packet leaves the usual path because another
//! member must hear of it first (Flush-and-Ack holds, update requests) or because another
//! member owns it (its tunnel, its flow). The data plane only notices these cases and offers
//! the packet to its control plane ([`ControlPlane::ls_offer`]); the gateway's cluster member
//! keeps it, forwards it, or declines, and resumes a kept packet later through
//! [`DataPlane::resume`].
//!
//! Invariants:
//! - With the hooks off (every node but a Load Sharing member) nothing here runs: one flag test
//!   per packet.
//! - A packet is offered at most once per entry: a resumed or forwarded packet is never parked
//!   or dispatched again ([`Entry`]), so nothing loops between members or the pool.
//! - A declined offer leaves the packet exactly as it was: the usual path continues.

use std::ops::Range;
use std::time::Instant;

use rampart_ike::PeerId;
use rampart_inspect::{FlowTuple, Side, Verdict};

use super::seal::TunStep;
use super::{ControlPlane, DataPlane};
use crate::{Disposition, DropReason};

/// Which Load Sharing checks the data plane makes (all off outside Load Sharing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LsHooks {
    /// Routed distribution with Flush-and-Ack: offer the packet that creates a synced
    /// connection ([`LsOffer::Hold`]).
    pub hold_creates: bool,
    /// With `hold_creates`: also offer the SYN-ACK that moved a synced connection to SYN
    /// received ([`LsOffer::Hold`] with `syn_ack`), so that the member that sees the
    /// handshake-completing ACK has that state (and, with `enhanced_handshake`, the server's
    /// ISN to check it against).
    pub hold_handshake: bool,
    /// Offer a packet of no known connection that cannot open one ([`LsOffer::Orphan`]).
    pub ask_orphans: bool,
    /// Offer inspected cleartext for a peer without a tunnel here ([`LsOffer::Inspected`]).
    pub forward_inspected: bool,
    /// Unicast distribution: offer every TUN packet before inspection ([`LsOffer::Tun`]).
    pub dispatch_tun: bool,
    /// Routed distribution with Flush-and-Ack: from this instant on, a connection of a
    /// `sync_after` service may have reached its age with no packet held for it yet; an
    /// accepted packet of an existing connection is then looked up (one table lookup) and
    /// offered when its connection is at or past that age ([`LsOffer::Synced`]). `None`: no
    /// such connection, nothing is looked up.
    pub sync_due: Option<Instant>,
}

/// What to do with a kept packet when it continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// An inspected packet from the TUN device: policy, peer, seal, send.
    Seal,
    /// An inspected packet decrypted from a tunnel: write it to the TUN device.
    WriteTun,
    /// A packet from the TUN device that was not inspected: inspect (no parking), then seal.
    InspectInside,
    /// A packet decrypted from a tunnel that was not inspected: inspect (no parking), then
    /// write it to the TUN device.
    InspectTunnel,
}

/// A packet the data plane offers the control plane; `true` from
/// [`ControlPlane::ls_offer`] means it took the packet (a copy): the input is `Consumed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LsOffer {
    /// The packet created connection `conn`, which is synced at once, or (`syn_ack`) recorded
    /// its server ISN (enhanced handshake): hold it until the other members have the record,
    /// then `resume`.
    Hold {
        conn: u64,
        resume: Resume,
        syn_ack: bool,
    },
    /// A packet of connection `conn` of a `sync_after` service, at or past that age: the
    /// first such packet is held like a creating one (its connection's record is pushed now
    /// if the timer has not pushed it yet) and then `resume`s; later ones are declined.
    Synced { conn: u64, resume: Resume },
    /// A packet of no connection known here that cannot open one (`tuple` is the connection
    /// it would belong to): ask the other members, then `resume`.
    Orphan { tuple: FlowTuple, resume: Resume },
    /// Inspected cleartext for `peer`, which has no tunnel here: another member's tunnel may
    /// carry it.
    Inspected { peer: PeerId },
    /// A packet read from the TUN device, not inspected yet (unicast: its flow may belong to
    /// another member).
    Tun,
}

/// The inspector's counters before a packet ([`DataPlane::ls_hold_mark`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HoldMark {
    accepted: u64,
    replies: u64,
}

/// How a packet enters the outbound path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// Read from the TUN device: every check.
    Tun,
    /// Handed over by another member (unicast dispatch): not dispatched again.
    Forwarded,
    /// Kept and resumed: neither dispatched nor parked again.
    Resumed,
}

impl DataPlane {
    /// Sets the Load Sharing checks (the gateway of a Load Sharing member).
    pub(crate) fn set_ls_hooks(&mut self, hooks: LsHooks) {
        self.ls = hooks;
    }

    /// Offers `buf[packet]` as an orphan when it is one (before inspection on `side`).
    pub(super) fn ls_orphan(
        &mut self,
        now: Instant,
        side: Side,
        buf: &[u8],
        packet: Range<usize>,
        resume: Resume,
        control: &mut impl ControlPlane,
    ) -> bool {
        let Some(pkt) = buf.get(packet) else {
            return false;
        };
        match self.inspect.orphan(now, side, pkt) {
            Some((tuple, _)) => control.ls_offer(now, pkt, LsOffer::Orphan { tuple, resume }),
            None => false,
        }
    }

    /// The inspector's counters before a packet, when packets may have to be held (`None`
    /// otherwise, and for a resumed packet, which is never held twice).
    pub(super) fn ls_hold_mark(&self, entry: Entry) -> Option<HoldMark> {
        if !self.ls.hold_creates || entry == Entry::Resumed {
            return None;
        }
        let s = self.inspect.stats();
        Some(HoldMark {
            accepted: s.connections_accepted,
            replies: s.handshake_replies,
        })
    }

    /// Whether the packet just inspected (accepted) must be held, and the offer: it created a
    /// connection that is synced at once (its service has `sync = true` and no `sync_after`),
    /// or, with `hold_handshake`, it was the SYN-ACK that recorded such a connection's server
    /// ISN. `mark` is [`Self::ls_hold_mark`] before the packet.
    pub(super) fn ls_to_hold(
        &self,
        now: Instant,
        mark: HoldMark,
        resume: Resume,
    ) -> Option<LsOffer> {
        let s = self.inspect.stats();
        let created = s.connections_accepted > mark.accepted;
        let syn_ack = self.ls.hold_handshake && s.handshake_replies > mark.replies;
        if !created && !syn_ack {
            return None;
        }
        let conn = match *self.inspect.last_change()? {
            rampart_inspect::Change::Created(c) if created => c,
            rampart_inspect::Change::Updated {
                id,
                init_side,
                ref orig,
                ..
            } if syn_ack => self.inspect.lookup(now, id, init_side, orig)?,
            _ => return None,
        };
        let (sync, after_ms) = crate::cluster::sync_rule(&self.inspect, &conn);
        (sync && after_ms == 0).then_some(LsOffer::Hold {
            conn: conn.id,
            resume,
            syn_ack: !created,
        })
    }

    /// The id of the connection `pkt` (just accepted, not creating) belongs to when the
    /// [`LsHooks::sync_due`] instant has passed and that connection is of a `sync_after`
    /// service at or past that age. Nothing is looked up before that instant.
    pub(super) fn ls_sync_due(&self, now: Instant, pkt: &[u8]) -> Option<u64> {
        if self.ls.sync_due.is_none_or(|due| now < due) {
            return None;
        }
        let info = rampart_wire::ip::PacketInfo::parse(pkt).ok()?;
        let tuple = FlowTuple::new(
            info.src,
            info.dst,
            info.protocol,
            info.src_port.unwrap_or(0),
            info.dst_port.unwrap_or(0),
        );
        let c = self.inspect.find_flow(now, &tuple)?;
        let (sync, after_ms) = crate::cluster::sync_rule(&self.inspect, &c);
        let age = rampart_inspect::CLOCK_BASE_MS.saturating_sub(c.created_ms);
        (sync && after_ms > 0 && age >= after_ms).then_some(c.id)
    }

    /// Continues a packet the control plane kept, now in `buf[packet]` (with head- and
    /// tailroom for ESP around it).
    pub(crate) fn resume(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        packet: Range<usize>,
        resume: Resume,
        control: &mut impl ControlPlane,
    ) -> Disposition {
        match resume {
            Resume::Seal => self.seal_inspected(now, buf, packet, control),
            Resume::WriteTun => {
                self.counters.tun_packets_out += 1;
                Disposition::WriteTun { data: packet }
            }
            Resume::InspectInside => {
                let step = self.tun_prepare_from(now, buf, packet, Entry::Resumed, control);
                self.run_tun_step(buf, step)
            }
            Resume::InspectTunnel => {
                let Some(pkt) = buf.get_mut(packet.clone()) else {
                    return self.drop(DropReason::Malformed);
                };
                let verdict = self.inspect.handle(now, Side::Tunnel, pkt);
                self.drain_inspect_logs(control);
                match verdict {
                    Verdict::Accept => {
                        self.counters.tun_packets_out += 1;
                        Disposition::WriteTun { data: packet }
                    }
                    // A reject would be sealed back into the tunnel; a resumed packet is
                    // only dropped (counted).
                    Verdict::Drop(_) | Verdict::Reject => self.drop(DropReason::Firewall),
                }
            }
        }
    }

    /// An inspected packet from the TUN device (held here, or forwarded by a member that
    /// inspected it for a tunnel this member owns): policy, peer, seal, without inspecting
    /// again.
    pub(crate) fn seal_inspected(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        packet: Range<usize>,
        control: &mut impl ControlPlane,
    ) -> Disposition {
        let step = self.route_prepare(now, buf, packet, control);
        self.run_tun_step(buf, step)
    }

    /// A packet another member read from its TUN device and handed to this one (unicast:
    /// this member owns its flow): the whole outbound path but the dispatch.
    pub(crate) fn handle_forwarded_tun(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        packet: Range<usize>,
        control: &mut impl ControlPlane,
    ) -> Disposition {
        let step = self.tun_prepare_from(now, buf, packet, Entry::Forwarded, control);
        self.run_tun_step(buf, step)
    }

    /// Runs the cipher job of a prepared outbound packet.
    pub(super) fn run_tun_step(&mut self, buf: &mut [u8], step: TunStep) -> Disposition {
        match step {
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

    /// A packet counted as dropped that the node handled after all (an ESP packet of an SA
    /// another member owns, forwarded there): the count is taken back.
    pub(crate) fn undo_drop(&mut self, reason: DropReason) {
        self.counters.undo_drop(reason);
    }
}
