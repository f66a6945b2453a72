//! Outbound: an IP packet from the TUN device inspected, matched to a peer by the policy and
//! the control plane (Multiple Entry Points) or else the selector, and sealed in place by that
//! peer's newest tunnel.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use rampart_esp::{CryptJob, SealError};
use rampart_ike::ChildSaId;
use rampart_inspect::{Side, Verdict};
use rampart_wire::ip::PacketInfo;

use super::share::{Entry, LsOffer, Resume};
use super::{ControlPlane, ControlRequest, DataPlane};
use crate::{Disposition, DropReason};

/// What the first step of [`DataPlane::handle_tun`] decided.
pub(super) enum TunStep {
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

impl DataPlane {
    /// An IP packet from the TUN device, to be encrypted in place for its peer.
    pub fn handle_tun(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        packet: Range<usize>,
        control: &mut impl ControlPlane,
    ) -> Disposition {
        let step = self.tun_prepare(now, buf, packet, control);
        self.run_tun_step(buf, step)
    }

    /// Everything of [`Self::handle_tun`] but the cipher call: inspection, policy, peer and SA
    /// choice and [`rampart_esp::OutboundSa::prepare_seal`].
    pub(super) fn tun_prepare(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        packet: Range<usize>,
        control: &mut impl ControlPlane,
    ) -> TunStep {
        self.tun_prepare_from(now, buf, packet, Entry::Tun, control)
    }

    /// [`Self::tun_prepare`] for a packet that entered as `entry` (Load Sharing: a resumed
    /// packet is not inspected for parking again, a forwarded one is not dispatched again).
    pub(super) fn tun_prepare_from(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        packet: Range<usize>,
        entry: Entry,
        control: &mut impl ControlPlane,
    ) -> TunStep {
        if entry != Entry::Resumed {
            self.counters.tun_packets_in += 1;
        }
        let Some(inner) = buf.get(packet.clone()) else {
            return TunStep::Done(self.drop(DropReason::Malformed));
        };
        if PacketInfo::parse(inner).is_err() {
            return TunStep::Done(self.drop(DropReason::Malformed));
        }
        if entry == Entry::Tun && self.ls.dispatch_tun && control.ls_offer(now, inner, LsOffer::Tun)
        {
            return TunStep::Done(Disposition::Consumed);
        }
        if entry != Entry::Resumed
            && self.ls.ask_orphans
            && self.ls_orphan(
                now,
                Side::Inside,
                buf,
                packet.clone(),
                Resume::InspectInside,
                control,
            )
        {
            return TunStep::Done(Disposition::Consumed);
        }
        let hold_mark = self.ls_hold_mark(entry);
        // Inspection first: NAT may change the addresses the policy looks at.
        let verdict = self
            .inspect
            .handle(now, Side::Inside, &mut buf[packet.clone()]);
        self.drain_inspect_logs(control);
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
        if let Some(offer) = hold_mark.and_then(|m| self.ls_to_hold(now, m, Resume::Seal)) {
            if control.ls_offer(now, &buf[packet.clone()], offer) {
                return TunStep::Done(Disposition::Consumed);
            }
        } else if let Some(conn) = (entry != Entry::Resumed)
            .then(|| self.ls_sync_due(now, &buf[packet.clone()]))
            .flatten()
        {
            let offer = LsOffer::Synced {
                conn,
                resume: Resume::Seal,
            };
            if control.ls_offer(now, &buf[packet.clone()], offer) {
                return TunStep::Done(Disposition::Consumed);
            }
        }
        self.route_prepare(now, buf, packet, control)
    }

    /// The outbound path after inspection: policy, peer and SA choice and
    /// [`rampart_esp::OutboundSa::prepare_seal`]. A peer without a tunnel here is offered to
    /// the control plane (Load Sharing: another member's tunnel) before one is acquired.
    pub(super) fn route_prepare(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        packet: Range<usize>,
        control: &mut impl ControlPlane,
    ) -> TunStep {
        let info = match PacketInfo::parse(&buf[packet.clone()]) {
            Ok(info) => info,
            Err(_) => return TunStep::Done(self.drop(DropReason::Malformed)),
        };
        let Some(candidates) = self.policy.outbound_candidates(info.src, info.dst) else {
            return TunStep::Done(self.drop(DropReason::NoPolicy));
        };
        let peer = match control.select_peer(now, &info, &buf[packet.clone()], candidates) {
            Some(peer) => peer,
            None => self.selector.select(info.dst, candidates, &self.tunnels),
        };
        if self.ls.forward_inspected
            && self.tunnels.outbound_for(peer, info.dst).is_none()
            && control.ls_offer(now, &buf[packet.clone()], LsOffer::Inspected { peer })
        {
            return TunStep::Done(Disposition::Consumed);
        }
        let Some((id, tunnel)) = self.tunnels.outbound_for(peer, info.dst) else {
            self.request(now, control, ControlRequest::Acquire { peer });
            return TunStep::Done(self.drop(DropReason::NoSa));
        };
        if let Some(limit) = tunnel.mss_limit {
            if info.protocol == rampart_wire::ip::proto::TCP
                && super::clamp(&mut buf[packet.clone()], limit)
            {
                self.counters.mss_clamped += 1;
            }
        }
        let next_header = if info.src.is_ipv4() {
            rampart_esp::next_header::IPV4
        } else {
            rampart_esp::next_header::IPV6
        };
        let (local, remote, encap) = (tunnel.local, tunnel.remote, tunnel.encap);
        let prepared = tunnel.outbound.prepare_seal(buf, packet, next_header);
        if tunnel.take_rekey_due() {
            self.request(now, control, ControlRequest::RekeyChild { child: id });
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

    /// A cipher job that failed although its SA prepared it (a bug, not an attack): the packet
    /// is dropped and counted as malformed.
    pub(super) fn crypt_failed(&mut self) -> Disposition {
        tracing::error!("ESP cipher call failed on a prepared packet; packet dropped");
        self.drop(DropReason::Malformed)
    }

    /// Where a sealed ESP packet goes: ESP-in-UDP from our NAT-T port, or raw ESP. A packet the
    /// SA refused is counted by the refusal's reason.
    pub(super) fn sealed(
        &mut self,
        sealed: Result<Range<usize>, SealError>,
        local: SocketAddr,
        remote: SocketAddr,
        encap: bool,
    ) -> Disposition {
        let data = match sealed {
            Ok(data) => data,
            Err(e) => return Disposition::Dropped(self.counters.seal_failed(&e)),
        };
        self.counters.esp_packets_out += 1;
        if encap {
            Disposition::SendUdp {
                local: SocketAddr::new(local.ip(), self.config.nat_t_port),
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
}
