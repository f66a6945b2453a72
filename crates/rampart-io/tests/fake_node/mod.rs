//! A stand-in node for the event-loop tests (root only): it echoes UDP, forwards TUN
//! packets to `sink` with a 4-byte marker written into the headroom, writes datagrams that
//! start with `T` to the TUN device, and sends datagrams that start with `X` on to `closed`.
//! Shared by `event_loop.rs` and `streams.rs`.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::{Duration, Instant};

use rampart_io::tun::{HEADROOM, TAILROOM};
use rampart_node::{
    ConnList, DataPlaneCounters, Disposition, GatewayStatus, InspectStats, LogEvent, LogLevel,
    LogRecord, Node, Output,
};
use tokio::net::UdpSocket;

/// Echoes UDP, forwards TUN packets to `sink` with a 4-byte marker written into the headroom,
/// writes datagrams that start with `T` to the TUN device, and sends datagrams that start with
/// `X` on to `closed` (a port nobody listens on).
pub struct FakeNode {
    pub outputs: VecDeque<Output>,
    pub udp_local: SocketAddr,
    pub sink: SocketAddr,
    pub closed: SocketAddr,
    /// The `(local, remote)` of every `handle_unreachable` call.
    pub unreachable: Vec<(SocketAddr, SocketAddr)>,
    /// The `(local, remote, mtu)` of every `handle_path_mtu` call.
    pub path_mtu: Vec<(SocketAddr, SocketAddr, u16)>,
    pub tun_packets: u64,
    pub timer: Option<Instant>,
    pub timeouts: u64,
    /// The probe sockets it names (the loop binds them; datagrams there are echoed too).
    pub probe: Vec<SocketAddr>,
    /// The `(local, remote)` of every datagram handed to `handle_udp`.
    pub udp_from: Vec<(SocketAddr, SocketAddr)>,
}

impl Node for FakeNode {
    fn handle_udp(
        &mut self,
        _now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        buf: &mut [u8],
        packet: Range<usize>,
    ) -> Disposition {
        self.udp_from.push((local, remote));
        if buf[packet.clone()].first() == Some(&b'T') {
            Disposition::WriteTun {
                data: packet.start + 1..packet.end,
            }
        } else if buf[packet.clone()].first() == Some(&b'X') {
            Disposition::SendUdp {
                local,
                remote: self.closed,
                data: packet,
            }
        } else {
            Disposition::SendUdp {
                local,
                remote,
                data: packet,
            }
        }
    }

    fn handle_raw_esp(
        &mut self,
        _now: Instant,
        _local: IpAddr,
        _remote: IpAddr,
        _buf: &mut [u8],
        _packet: Range<usize>,
    ) -> Disposition {
        Disposition::Consumed
    }

    fn handle_tun(&mut self, _now: Instant, buf: &mut [u8], packet: Range<usize>) -> Disposition {
        assert!(packet.start >= HEADROOM);
        assert!(buf.len() - packet.end >= TAILROOM);
        self.tun_packets += 1;
        buf[packet.start - 4..packet.start].copy_from_slice(b"HDR!");
        Disposition::SendUdp {
            local: self.udp_local,
            remote: self.sink,
            data: packet.start - 4..packet.end,
        }
    }

    /// The stand-in handles a batch packet by packet (a real node must answer the same).
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

    fn handle_unreachable(&mut self, _now: Instant, local: SocketAddr, remote: SocketAddr) {
        self.unreachable.push((local, remote));
    }

    fn handle_path_mtu(&mut self, _now: Instant, local: SocketAddr, remote: SocketAddr, mtu: u16) {
        self.path_mtu.push((local, remote, mtu));
    }

    fn roam(&mut self, _now: Instant, _new_local: std::net::IpAddr) -> rampart_node::RoamOutcome {
        rampart_node::RoamOutcome::Nothing
    }
    // No remote-access client in this node: nothing to re-attach, no traffic to watch.
    fn stream_renewed(&mut self, _: Instant) -> Vec<(String, rampart_node::StreamRenewal)> {
        Vec::new()
    }
    fn client_traffic(&self) -> Option<rampart_node::ClientTraffic> {
        None
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.timer.is_some_and(|t| t <= now) {
            self.timer = None;
            self.timeouts += 1;
            self.outputs.push_back(Output::Log(LogRecord::new(
                LogLevel::Info,
                LogEvent::Other,
                "timer fired".into(),
            )));
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.timer
    }

    // No IKE SAs in this test node: nothing to delete.
    fn close_sas(&mut self, _now: std::time::Instant) {}

    fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    fn status(&self, _now: Instant) -> GatewayStatus {
        let mut status = GatewayStatus {
            name: "fake".into(),
            // The stand-in reports its timer count here.
            uptime_secs: self.timeouts,
            peers: vec![],
            counters: DataPlaneCounters {
                tun_packets_in: self.tun_packets,
                ..DataPlaneCounters::default()
            },
            ike_defence: Default::default(),
            batching: Default::default(),
            reloads: Default::default(),
            nat: Default::default(),
            icmp: Default::default(),
            cluster: None,
            sync: None,
            replicated_sas: None,
            mep: None,
            remote_access: None,
        };
        // The stand-in reports its `handle_unreachable` calls as NAT hints.
        status.nat.hints = self.unreachable.len() as u64;
        status
    }

    fn reload(
        &mut self,
        _now: Instant,
        _config: rampart_config::GatewayConfig,
    ) -> Result<rampart_node::ReloadReport, rampart_node::ReloadError> {
        // The stand-in has no peers: a reload changes nothing.
        Ok(rampart_node::ReloadReport::default())
    }

    /// The stand-in inspects nothing: an empty table.
    fn conn_list(&self, _now: Instant, _limit: usize) -> ConnList {
        ConnList {
            connections: Vec::new(),
            total: 0,
            truncated: false,
        }
    }

    fn conn_stats(&self) -> InspectStats {
        InspectStats::default()
    }

    // The stand-in is no cluster member.
    fn handle_link_state(&mut self, _now: Instant, _interface: &str, _up: bool) {}

    fn cluster_command(
        &mut self,
        _now: Instant,
        _command: rampart_node::ClusterCommand,
    ) -> Result<String, String> {
        Err("no cluster configured".into())
    }

    fn full_sync_export(&mut self, _now: Instant) -> Vec<u8> {
        Vec::new()
    }

    fn full_sync_input(
        &mut self,
        _now: Instant,
        _member: u8,
        _bytes: &[u8],
    ) -> Result<rampart_node::FullSyncProgress, String> {
        Err("no cluster configured".into())
    }

    fn full_sync_failed(&mut self, _now: Instant, _member: u8, _why: &str) {}

    fn cluster_status(
        &self,
        _now: Instant,
    ) -> Option<(rampart_node::ClusterStatus, rampart_node::SyncStats)> {
        None
    }

    fn probe_sockets(&self) -> Vec<SocketAddr> {
        self.probe.clone()
    }

    fn mep_status(&self, _now: Instant) -> Option<rampart_node::MepStatus> {
        None
    }
}

/// An IPv4/UDP packet from 10.77.0.5:7000 to `dst` carrying `payload` (UDP checksum 0).
pub fn ipv4_udp(dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let IpAddr::V4(dst_ip) = dst.ip() else {
        panic!("v4 only")
    };
    let total = 28 + payload.len();
    let mut p = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        64,
        17,
        0,
        0,
    ];
    p.extend_from_slice(&[10, 77, 0, 5]);
    p.extend_from_slice(&dst_ip.octets());
    let sum = p
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum::<u32>();
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    let udp_len = 8 + payload.len();
    p.extend_from_slice(&7000u16.to_be_bytes());
    p.extend_from_slice(&dst.port().to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

pub async fn recv(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 2048];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .expect("datagram did not arrive")
        .unwrap();
    buf.truncate(n);
    (buf, from)
}

pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..100 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}
