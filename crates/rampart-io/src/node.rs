//! The sans-IO node the event loop drives, as a trait, so the loop can be exercised with a stand-in
//! node in tests. `rampart_node::Gateway` is the real implementation.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::Instant;

use rampart_node::{ConnList, Disposition, GatewayStatus, InspectStats, Output};

/// The calls of `rampart_node::Gateway` that the event loop makes (see `docs/design/contracts.md`).
///
/// Data-plane calls return their result in the caller's buffer; everything else comes out of
/// [`Node::poll_output`], which the loop drains after every input.
pub trait Node {
    /// A datagram that arrived on the UDP socket bound to `local`; `buf[packet]` is its payload.
    fn handle_udp(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        buf: &mut [u8],
        packet: Range<usize>,
    ) -> Disposition;
    /// An ESP packet (IP header removed) from the raw socket bound to `local`.
    fn handle_raw_esp(
        &mut self,
        now: Instant,
        local: IpAddr,
        remote: IpAddr,
        buf: &mut [u8],
        packet: Range<usize>,
    ) -> Disposition;
    /// An IP packet read from the TUN device, with at least `HEADROOM` bytes before `packet`
    /// and `TAILROOM` bytes after it.
    fn handle_tun(&mut self, now: Instant, buf: &mut [u8], packet: Range<usize>) -> Disposition;
    /// A batch of TUN packets: `bufs[i][packets[i]]`, each with head- and tailroom; `out[i]`
    /// receives what to do with each. The default handles them one by one.
    fn handle_tun_batch<B: AsMut<[u8]>>(
        &mut self,
        now: Instant,
        bufs: &mut [B],
        packets: &[Range<usize>],
        out: &mut [Disposition],
    ) {
        for ((buf, packet), slot) in bufs.iter_mut().zip(packets).zip(out.iter_mut()) {
            *slot = self.handle_tun(now, buf.as_mut(), packet.clone());
        }
    }
    /// Datagrams from one peer received together (one GRO read), all in `buf` at `packets[i]`.
    fn handle_udp_batch(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        buf: &mut [u8],
        packets: &[Range<usize>],
        out: &mut [Disposition],
    ) {
        for (packet, slot) in packets.iter().zip(out.iter_mut()) {
            *slot = self.handle_udp(now, local, remote, buf, packet.clone());
        }
    }
    /// ESP packets from one `recvmmsg` on the raw socket bound to `local`, all in `buf`.
    fn handle_raw_esp_batch(
        &mut self,
        now: Instant,
        local: IpAddr,
        buf: &mut [u8],
        packets: &[(IpAddr, Range<usize>)],
        out: &mut [Disposition],
    ) {
        for ((remote, packet), slot) in packets.iter().zip(out.iter_mut()) {
            *slot = self.handle_raw_esp(now, local, *remote, buf, packet.clone());
        }
    }
    fn handle_timeout(&mut self, now: Instant);
    fn poll_timeout(&self) -> Option<Instant>;
    fn poll_output(&mut self) -> Option<Output>;
    fn status(&self, now: Instant) -> GatewayStatus;
    /// The connection table, at most `limit` entries (`rampart conn list`).
    fn conn_list(&self, _now: Instant, _limit: usize) -> ConnList {
        ConnList {
            connections: Vec::new(),
            total: 0,
            truncated: false,
        }
    }
    /// Inspection counters (`rampart conn stats`).
    fn conn_stats(&self) -> InspectStats {
        InspectStats::default()
    }
}

impl Node for rampart_node::Gateway {
    fn handle_udp(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        buf: &mut [u8],
        packet: Range<usize>,
    ) -> Disposition {
        rampart_node::Gateway::handle_udp(self, now, local, remote, buf, packet)
    }

    fn handle_raw_esp(
        &mut self,
        now: Instant,
        local: IpAddr,
        remote: IpAddr,
        buf: &mut [u8],
        packet: Range<usize>,
    ) -> Disposition {
        rampart_node::Gateway::handle_raw_esp(self, now, local, remote, buf, packet)
    }

    fn handle_tun(&mut self, now: Instant, buf: &mut [u8], packet: Range<usize>) -> Disposition {
        rampart_node::Gateway::handle_tun(self, now, buf, packet)
    }

    fn handle_tun_batch<B: AsMut<[u8]>>(
        &mut self,
        now: Instant,
        bufs: &mut [B],
        packets: &[Range<usize>],
        out: &mut [Disposition],
    ) {
        rampart_node::Gateway::handle_tun_batch(self, now, bufs, packets, out)
    }

    fn handle_udp_batch(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        buf: &mut [u8],
        packets: &[Range<usize>],
        out: &mut [Disposition],
    ) {
        rampart_node::Gateway::handle_udp_batch(self, now, local, remote, buf, packets, out)
    }

    fn handle_raw_esp_batch(
        &mut self,
        now: Instant,
        local: IpAddr,
        buf: &mut [u8],
        packets: &[(IpAddr, Range<usize>)],
        out: &mut [Disposition],
    ) {
        rampart_node::Gateway::handle_raw_esp_batch(self, now, local, buf, packets, out)
    }

    fn handle_timeout(&mut self, now: Instant) {
        rampart_node::Gateway::handle_timeout(self, now)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        rampart_node::Gateway::poll_timeout(self)
    }

    fn poll_output(&mut self) -> Option<Output> {
        rampart_node::Gateway::poll_output(self)
    }

    fn status(&self, now: Instant) -> GatewayStatus {
        rampart_node::Gateway::status(self, now)
    }

    fn conn_list(&self, now: Instant, limit: usize) -> ConnList {
        rampart_node::Gateway::conn_list(self, now, limit)
    }

    fn conn_stats(&self) -> InspectStats {
        rampart_node::Gateway::conn_stats(self)
    }
}
