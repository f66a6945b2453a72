//! The one interface between a sans-IO node and the I/O shell that drives it.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::Instant;

use rampart_config::GatewayConfig;
use rampart_mep::MepStatus;

use crate::{
    ClusterCommand, ClusterStatus, ConnList, Disposition, FullSyncProgress, Gateway, GatewayStatus,
    InspectStats, Output, RaStatus, ReloadError, ReloadReport, RoamOutcome, SyncStats,
};

/// A remote-access client's traffic as its shell's tunnel watch sees it
/// ([`Node::client_traffic`]): when the gateway was last heard, how many ESP packets the
/// tunnels sent, and when an IKE message last went out.
pub type ClientTraffic = (Option<Instant>, u64, Option<Instant>);

/// A node the I/O shell drives: a gateway today, a client or a cluster member later.
///
/// Every method is required (no defaults that could behave differently from a real node, the
/// way smoltcp's `phy::Device` leaves each call to the device). Data-plane calls answer in the
/// caller's buffer; everything else comes out of [`Node::poll_output`], which the shell drains
/// after every input. See `docs/design/contracts.md`.
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
    /// receives what to do with each. Must give the same answers, in the same order, as
    /// [`Node::handle_tun`] on each packet.
    fn handle_tun_batch<B: AsMut<[u8]>>(
        &mut self,
        now: Instant,
        bufs: &mut [B],
        packets: &[Range<usize>],
        out: &mut [Disposition],
    );
    /// Datagrams from one peer received together (one GRO read), all in `buf` at `packets[i]`,
    /// not overlapping; each is changed only inside its own range.
    fn handle_udp_batch(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        buf: &mut [u8],
        packets: &[Range<usize>],
        out: &mut [Disposition],
    );
    /// ESP packets from one `recvmmsg` on the raw socket bound to `local`, all in `buf`.
    fn handle_raw_esp_batch(
        &mut self,
        now: Instant,
        local: IpAddr,
        buf: &mut [u8],
        packets: &[(IpAddr, Range<usize>)],
        out: &mut [Disposition],
    );
    /// An ICMP port or host unreachable answered our datagram from `local` to `remote` (read
    /// by the shell from the socket's error queue). Only a hint: a real node may send an
    /// authenticated, rate-limited check, and moves nothing on it.
    fn handle_unreachable(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr);
    /// An ICMP "fragmentation needed" (or ICMPv6 "packet too big") answered our outer datagram
    /// from `local` to `remote`, reporting `mtu` as the next hop's MTU (read by the shell from the
    /// socket's error queue). A client node lowers its tunnel MTU from it (`Output::TunnelMtu`);
    /// unauthenticated, so it never raises the MTU and never goes below the configured floor.
    fn handle_path_mtu(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, mtu: u16);
    /// Remote-access client: the host's address towards the gateway is now `new_local` (the
    /// shell saw an address or route change, or a resume). Moves every IKE SA with MOBIKE
    /// (RFC 4555) where it can; see [`RoamOutcome`].
    fn roam(&mut self, now: Instant, new_local: IpAddr) -> RoamOutcome;
    /// Remote-access client on a stream transport: the shell attached a new stream to the
    /// gateway in place of a lost one, or wants the current one checked. Each client peer's
    /// established IKE SA sends an authenticated message on it at once (RFC 9329 re-attach:
    /// its outstanding request again, or a liveness check). Returns per peer what was sent;
    /// a node without remote-access clients has nothing to do (an empty list).
    fn stream_renewed(&mut self, now: Instant) -> Vec<(String, crate::StreamRenewal)>;
    /// Remote-access client: when the gateway was last heard, how many ESP packets the
    /// tunnels sent and when an IKE message last went out (`Gateway::client_traffic`); `None`
    /// on other nodes.
    fn client_traffic(&self) -> Option<ClientTraffic>;
    fn handle_timeout(&mut self, now: Instant);
    /// When [`Node::handle_timeout`] wants to run next.
    fn poll_timeout(&self) -> Option<Instant>;
    fn poll_output(&mut self) -> Option<Output>;
    fn status(&self, now: Instant) -> GatewayStatus;
    /// The connection table, at most `limit` entries (`rampart conn list`).
    fn conn_list(&self, now: Instant, limit: usize) -> ConnList;
    /// Inspection counters (`rampart conn stats`).
    fn conn_stats(&self) -> InspectStats;
    /// Applies a new, already validated configuration (`rampart reload`, SIGHUP). On error the
    /// node is unchanged.
    fn reload(&mut self, now: Instant, config: GatewayConfig) -> Result<ReloadReport, ReloadError>;
    /// Link state of a network interface (the shell reports the initial state of every
    /// monitored interface, then each change). A cluster member gives up the active role while
    /// a monitored interface is down; other nodes ignore it.
    fn handle_link_state(&mut self, now: Instant, interface: &str, up: bool);
    /// `rampart cluster switchover|down|up`: `Ok` with a line for the operator, `Err` with why
    /// not (e.g. "no cluster configured").
    fn cluster_command(&mut self, now: Instant, command: ClusterCommand) -> Result<String, String>;
    /// A full sync served to another member: the encoded frames (`Begin`, one `Record` per
    /// piece of state, `End`) of this member's state at `now`, after the shell's `Hello`
    /// exchange. Empty without a cluster.
    fn full_sync_export(&mut self, now: Instant) -> Vec<u8>;
    /// Bytes read from the full-sync stream to `member` (opened on
    /// [`Output::FullSyncConnect`]), after the `Hello` exchange, in any split.
    fn full_sync_input(
        &mut self,
        now: Instant,
        member: u8,
        bytes: &[u8],
    ) -> Result<FullSyncProgress, String>;
    /// The full-sync stream to `member` broke (connect, TLS, proof, timeout, decode error).
    fn full_sync_failed(&mut self, now: Instant, member: u8, why: &str);
    /// `rampart cluster status` and `rampart cluster sync-stats`; `None` without a cluster.
    fn cluster_status(&self, now: Instant) -> Option<(ClusterStatus, SyncStats)>;
    /// Load Sharing: this member's own counters (held packets, update requests, packets
    /// forwarded in and out by kind, adoptions, routes announced) beside the engine's
    /// `ClusterStatus::load_sharing`; `None` outside Load Sharing.
    fn load_sharing_stats(&self) -> Option<crate::LoadSharingStats> {
        None
    }
    /// The local interface of cluster sync link `link` (0: the sync address, then the
    /// member's `extra_addresses` in order) lost or regained carrier.
    fn handle_sync_link_state(&mut self, now: Instant, link: u8, up: bool) {
        let _ = (now, link, up);
    }
    /// The UDP sockets (address and probe port) the shell binds for Multiple Entry Points
    /// probes; datagrams that arrive there go to [`Node::handle_udp`] with that `local`. Asked
    /// at start and after every reload.
    fn probe_sockets(&self) -> Vec<SocketAddr>;
    /// `rampart mep status`; `None` when the node neither probes nor answers probes.
    fn mep_status(&self, now: Instant) -> Option<MepStatus>;
    /// Deletes every IKE SA with an INFORMATIONAL Delete (a remote-access client going down:
    /// its gateway frees the Office Mode lease at once instead of after its liveness checks).
    /// The Deletes come out of [`Node::poll_output`]; their responses are not awaited.
    fn close_sas(&mut self, now: Instant);
    /// `rampart ra status` (the `ra status` request): Office Mode pools and clients, virtual
    /// addresses; `None` without remote-access peers. Provided: it is the `remote_access`
    /// part of [`Node::status`], which every node fills in (the gateway answers it without
    /// building the rest).
    fn ra_status(&self, now: Instant) -> Option<RaStatus> {
        self.status(now).remote_access
    }
}

impl Node for Gateway {
    fn handle_udp(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        buf: &mut [u8],
        packet: Range<usize>,
    ) -> Disposition {
        Gateway::handle_udp(self, now, local, remote, buf, packet)
    }

    fn handle_raw_esp(
        &mut self,
        now: Instant,
        local: IpAddr,
        remote: IpAddr,
        buf: &mut [u8],
        packet: Range<usize>,
    ) -> Disposition {
        Gateway::handle_raw_esp(self, now, local, remote, buf, packet)
    }

    fn handle_tun(&mut self, now: Instant, buf: &mut [u8], packet: Range<usize>) -> Disposition {
        Gateway::handle_tun(self, now, buf, packet)
    }

    fn handle_tun_batch<B: AsMut<[u8]>>(
        &mut self,
        now: Instant,
        bufs: &mut [B],
        packets: &[Range<usize>],
        out: &mut [Disposition],
    ) {
        Gateway::handle_tun_batch(self, now, bufs, packets, out)
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
        Gateway::handle_udp_batch(self, now, local, remote, buf, packets, out)
    }

    fn handle_raw_esp_batch(
        &mut self,
        now: Instant,
        local: IpAddr,
        buf: &mut [u8],
        packets: &[(IpAddr, Range<usize>)],
        out: &mut [Disposition],
    ) {
        Gateway::handle_raw_esp_batch(self, now, local, buf, packets, out)
    }

    fn handle_unreachable(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr) {
        Gateway::handle_unreachable(self, now, local, remote)
    }

    fn handle_path_mtu(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, mtu: u16) {
        Gateway::handle_path_mtu(self, now, local, remote, mtu)
    }

    fn roam(&mut self, now: Instant, new_local: IpAddr) -> RoamOutcome {
        Gateway::roam(self, now, new_local)
    }

    fn stream_renewed(&mut self, now: Instant) -> Vec<(String, crate::StreamRenewal)> {
        Gateway::stream_renewed(self, now)
    }

    fn client_traffic(&self) -> Option<ClientTraffic> {
        Gateway::client_traffic(self)
    }

    fn handle_timeout(&mut self, now: Instant) {
        Gateway::handle_timeout(self, now)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Gateway::poll_timeout(self)
    }

    fn poll_output(&mut self) -> Option<Output> {
        Gateway::poll_output(self)
    }

    fn close_sas(&mut self, now: Instant) {
        Gateway::close_sas(self, now);
    }

    fn status(&self, now: Instant) -> GatewayStatus {
        Gateway::status(self, now)
    }

    fn conn_list(&self, now: Instant, limit: usize) -> ConnList {
        Gateway::conn_list(self, now, limit)
    }

    fn conn_stats(&self) -> InspectStats {
        Gateway::conn_stats(self)
    }
    fn reload(&mut self, now: Instant, config: GatewayConfig) -> Result<ReloadReport, ReloadError> {
        Gateway::reload(self, now, config)
    }

    fn handle_link_state(&mut self, now: Instant, interface: &str, up: bool) {
        Gateway::handle_link_state(self, now, interface, up)
    }

    fn cluster_command(&mut self, now: Instant, command: ClusterCommand) -> Result<String, String> {
        Gateway::cluster_command(self, now, command)
    }

    fn full_sync_export(&mut self, now: Instant) -> Vec<u8> {
        Gateway::full_sync_export(self, now)
    }

    fn full_sync_input(
        &mut self,
        now: Instant,
        member: u8,
        bytes: &[u8],
    ) -> Result<FullSyncProgress, String> {
        Gateway::full_sync_input(self, now, member, bytes)
    }

    fn full_sync_failed(&mut self, now: Instant, member: u8, why: &str) {
        Gateway::full_sync_failed(self, now, member, why)
    }

    fn cluster_status(&self, now: Instant) -> Option<(ClusterStatus, SyncStats)> {
        Gateway::cluster_status(self, now)
    }

    fn load_sharing_stats(&self) -> Option<crate::LoadSharingStats> {
        Gateway::load_sharing_stats(self)
    }

    fn handle_sync_link_state(&mut self, now: Instant, link: u8, up: bool) {
        Gateway::handle_sync_link_state(self, now, link, up)
    }

    fn probe_sockets(&self) -> Vec<SocketAddr> {
        Gateway::probe_sockets(self)
    }

    fn mep_status(&self, now: Instant) -> Option<MepStatus> {
        Gateway::mep_status(self, now)
    }

    fn ra_status(&self, now: Instant) -> Option<RaStatus> {
        Gateway::ra_status(self, now)
    }
}
