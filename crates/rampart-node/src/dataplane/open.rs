//! Inbound: an ESP packet opened in place, checked against its SA's selectors, inspected, and
//! written to the TUN device (or answered with a reject sealed back into the tunnel).

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use rampart_crypto::CryptoError;
use rampart_esp::CryptJob;
use rampart_ike::{ChildSaId, NatHint, PeerId};
use rampart_inspect::{Side, Verdict};
use rampart_wire::ip::PacketInfo;

use super::counters::open_drop_reason;
use super::share::{LsOffer, Resume};
use super::{ControlPlane, ControlRequest, DataPlane};
use crate::{Disposition, DropReason};

impl DataPlane {
    /// `udp`: the (local, remote) socket addresses when the packet came in UDP. An authenticated
    /// packet from a new remote address moves the peer there (its NAT mapping changed).
    pub(super) fn handle_esp(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        packet: Range<usize>,
        udp: Option<(SocketAddr, SocketAddr)>,
        control: &mut impl ControlPlane,
    ) -> Disposition {
        let (id, job) = match self.esp_prepare(now, buf, packet.clone()) {
            Ok(prepared) => prepared,
            Err(disposition) => return disposition,
        };
        let crypted = match self.tunnels.get(id) {
            Some(tunnel) => job.run(tunnel.inbound.key(), &mut buf[packet.clone()]),
            None => return self.drop(DropReason::UnknownSpi),
        };
        let bound = 0..buf.len();
        self.esp_finish(now, buf, packet, bound, id, &job, crypted, udp, control)
    }

    /// The first step of opening `buf[packet]`: counts it, finds its SA by SPI and prepares the
    /// cipher job ([`rampart_esp::InboundSa::prepare_open`]); an error is the packet's
    /// disposition. A retired SA whose grace ended by `now` is unknown even before the timer
    /// removed it.
    pub(super) fn esp_prepare(
        &mut self,
        now: Instant,
        buf: &[u8],
        packet: Range<usize>,
    ) -> Result<(ChildSaId, CryptJob), Disposition> {
        self.counters.esp_packets_in += 1;
        let Some(spi_bytes) = buf.get(packet.start..packet.start + 4) else {
            return Err(self.drop(DropReason::Malformed));
        };
        let spi = u32::from_be_bytes([spi_bytes[0], spi_bytes[1], spi_bytes[2], spi_bytes[3]]);
        let Some((id, tunnel)) = self
            .tunnels
            .by_inbound_spi(spi)
            .filter(|(_, t)| t.retired_until.is_none_or(|until| now < until))
        else {
            return Err(self.drop(DropReason::UnknownSpi));
        };
        match tunnel.inbound.prepare_open(buf, packet) {
            Ok(job) => Ok((id, job)),
            Err(e) => Err(self.drop(open_drop_reason(&e))),
        }
    }

    /// The last step of opening `buf[packet]` after its cipher job ran (`crypted`): replay
    /// window, inner policy check, NAT mapping moves, inspection. `bound` is the part of `buf`
    /// this packet may use for a reject built in place (its own bytes in a batch, whose
    /// neighbours hold other packets).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn esp_finish(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        packet: Range<usize>,
        bound: Range<usize>,
        id: ChildSaId,
        job: &CryptJob,
        crypted: Result<(), CryptoError>,
        udp: Option<(SocketAddr, SocketAddr)>,
        control: &mut impl ControlPlane,
    ) -> Disposition {
        // Ids are never reused, so a tunnel removed since the prepare step is simply gone.
        let Some(tunnel) = self.tunnels.get_mut(id) else {
            return self.drop(DropReason::UnknownSpi);
        };
        // A retired SA (rekeyed, deleted by IKE, in its grace period) only decrypts: IKE no
        // longer knows it, so it asks IKE for nothing.
        let live = tunnel.retired_until.is_none();
        let opened = match tunnel.inbound.finish_open(buf, packet, job, crypted) {
            Ok(opened) => opened,
            Err(e) => {
                // Not authenticated (or replayed) from a new port: at most a hint.
                let hint =
                    udp.filter(|&(_, remote)| live && tunnel.encap && tunnel.remote != remote);
                if let Some((local, remote)) = hint {
                    let hint = NatHint::NewAddress { local, remote };
                    self.request(now, control, ControlRequest::NatHint { child: id, hint });
                }
                return self.drop(open_drop_reason(&e));
            }
        };
        let rekey_due = tunnel.take_rekey_due();
        // Dummy packets (RFC 4303 2.6, next header 59) carry nothing for the TUN device.
        if opened.next_header == rampart_esp::next_header::NO_NEXT_HEADER {
            if live {
                self.note_child_traffic(now, id, control);
            }
            if rekey_due {
                self.request(now, control, ControlRequest::RekeyChild { child: id });
            }
            return Disposition::Consumed;
        }
        if opened.next_header == crate::pmtu::probe::NEXT_HEADER {
            if live {
                self.note_child_traffic(now, id, control);
            }
            if rekey_due {
                self.request(now, control, ControlRequest::RekeyChild { child: id });
            }
            return self.pmtu_payload(now, id, buf, opened.payload, bound, control);
        }
        // The decrypted packet must be one the SA was negotiated for (RFC 4301 5.2, step 4).
        let inner = &buf[opened.payload.clone()];
        let allowed = match PacketInfo::parse(inner) {
            Ok(info) => {
                let (proto, sport, dport) = (info.protocol, info.src_port, info.dst_port);
                tunnel
                    .remote_ts
                    .iter()
                    .any(|ts| ts.matches(info.src, proto, sport))
                    && tunnel
                        .local_ts
                        .iter()
                        .any(|ts| ts.matches(info.dst, proto, dport))
            }
            Err(_) => false,
        };
        if !allowed {
            return self.drop(DropReason::PolicyMismatch);
        }
        let moved = udp.filter(|&(local, remote)| {
            live && tunnel.encap && (tunnel.remote != remote || tunnel.local.ip() != local.ip())
        });
        if let Some((local, remote)) = moved {
            // Rare (a NAT mapping changed): the changes move every tunnel of the IKE SA.
            let request = ControlRequest::NatMappingMoved {
                child: id,
                local,
                remote,
            };
            self.request(now, control, request);
        }
        if live {
            self.note_child_traffic(now, id, control);
        }
        if rekey_due {
            self.request(now, control, ControlRequest::RekeyChild { child: id });
        }
        if let Some(limit) = self.tunnels.get(id).and_then(|t| t.mss_limit) {
            if super::clamp(&mut buf[opened.payload.clone()], limit) {
                self.counters.mss_clamped += 1;
            }
        }
        if self.ls.ask_orphans
            && self.ls_orphan(
                now,
                Side::Tunnel,
                buf,
                opened.payload.clone(),
                Resume::InspectTunnel,
                control,
            )
        {
            return Disposition::Consumed;
        }
        let hold_mark = self.ls_hold_mark(super::share::Entry::Tun);
        let verdict = self
            .inspect
            .handle(now, Side::Tunnel, &mut buf[opened.payload.clone()]);
        self.drain_inspect_logs(control);
        match verdict {
            Verdict::Accept => {
                let offer = hold_mark
                    .and_then(|m| self.ls_to_hold(now, m, Resume::WriteTun))
                    .or_else(|| {
                        self.ls_sync_due(now, &buf[opened.payload.clone()])
                            .map(|conn| LsOffer::Synced {
                                conn,
                                resume: Resume::WriteTun,
                            })
                    });
                if let Some(offer) = offer {
                    if control.ls_offer(now, &buf[opened.payload.clone()], offer) {
                        return Disposition::Consumed;
                    }
                }
            }
            Verdict::Drop(_) => return self.drop(DropReason::Firewall),
            Verdict::Reject => {
                self.counters.dropped_firewall += 1;
                let Some(peer) = self.tunnels.get_mut(id).map(|t| t.peer) else {
                    return Disposition::Dropped(DropReason::Firewall);
                };
                return self.reject_into_tunnel(peer, buf, opened.payload, bound);
            }
        }
        self.counters.tun_packets_out += 1;
        Disposition::WriteTun {
            data: opened.payload,
        }
    }

    /// Answers a rejected packet that came out of `peer`'s tunnel: the RST or ICMP error is
    /// built in place and sealed for the same peer.
    ///
    /// The reply and its ESP framing stay inside `buf[bound]`; a reply that does not fit is not
    /// sent (the packet stays dropped).
    fn reject_into_tunnel(
        &mut self,
        peer: PeerId,
        buf: &mut [u8],
        packet: Range<usize>,
        bound: Range<usize>,
    ) -> Disposition {
        let Some(buf) = buf.get_mut(..bound.end) else {
            return Disposition::Dropped(DropReason::Firewall);
        };
        let Some(reply) = rampart_inspect::reject::build(buf, packet) else {
            return Disposition::Dropped(DropReason::Firewall);
        };
        let Ok(info) = PacketInfo::parse(&buf[reply.clone()]) else {
            return Disposition::Dropped(DropReason::Firewall);
        };
        let Some((_, tunnel)) = self.tunnels.outbound_for(peer, info.dst) else {
            return self.drop(DropReason::NoSa);
        };
        // The room the SA that seals the reply needs, inside `bound`.
        if reply.start < bound.start + tunnel.outbound.headroom()
            || buf.len() < reply.end + tunnel.outbound.tailroom(reply.len())
        {
            return Disposition::Dropped(DropReason::Firewall);
        }
        let next_header = if buf[reply.start] >> 4 == 6 {
            rampart_esp::next_header::IPV6
        } else {
            rampart_esp::next_header::IPV4
        };
        let (local, remote, encap) = (tunnel.local, tunnel.remote, tunnel.encap);
        let sealed = tunnel.outbound.seal(buf, reply, next_header);
        self.sealed(sealed, local, remote, encap)
    }
}
