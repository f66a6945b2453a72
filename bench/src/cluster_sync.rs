//! In-process measurements of Rampart's state sync with the real node (`rampart_node::Gateway`
//! cluster members), no daemon and no root:
//!
//! - [`delta`] (`rampart-bench cluster-delta`): member 1 active, member 2 standby, their cluster
//!   datagrams over two loopback UDP sockets. New connections are made on member 1 by UDP
//!   packets through `handle_tun` (inspection creates each connection; the member turns the
//!   change into a `ConnUpsert` record with the node's codec, the engine packs and seals it);
//!   member 2 receives, opens, delivers and applies each record to its connection table
//!   (`handle_udp` on its sync socket); its acks go back the same way. One thread runs both
//!   members, so the rate is what one core does for both ends.
//! - [`fullsync`] (`rampart-bench cluster-fullsync`): an active member with 1,000,000
//!   connections and one real IKE SA (negotiated in memory with a remote gateway), its
//!   `full_sync_export`, the SA record cloned to 10,000 distinct SAs, the stream sent over
//!   `rampart_io::sync_tls::SyncTls` (secret mode, loopback TCP) to a child process
//!   ([`fullsync_recv`]) that feeds it to a fresh member's `full_sync_input` and reports the
//!   time and its peak memory (VmHWM).

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rampart_cluster::{FullSyncDecoder, FullSyncEncoder, FullSyncFrame, RecordKind};
use rampart_crypto::Rng;
use rampart_node::{Disposition, FullSyncProgress, Gateway, Output, SaSnapshot};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HEADROOM: usize = 64;
const VIP: &str = "192.0.2.1";
const REMOTE: &str = "192.0.2.2";
/// IPv4 + UDP headers of one datagram on the wire (not in the socket byte counts).
const IP_UDP_HEADERS: u64 = 28;

fn member_config(id: u8, sync: [SocketAddr; 2]) -> rampart_config::GatewayConfig {
    let text = format!(
        r#"
[gateway]
name = "bench-m{id}"
status_socket = "/tmp/unused-bench-m{id}.sock"

[tunnel]
device = "rpb{id}"

[local]
domain = ["10.1.0.0/16"]

[inspection]
capacity = 1048576

[cluster]
name = "bench"
member_id = {id}
mode = "high-availability"
primary = 1
heartbeat_interval = "100ms"
dead_after = 3
secret = "a long shared cluster secret for the benchmark"

[[cluster.member]]
id = 1
address = "{s1}"

[[cluster.member]]
id = 2
address = "{s2}"

[[cluster.vip]]
interface = "eth1"
address = "{VIP}/24"

[[peer]]
name = "remote"
local_address = "{VIP}"
remote_address = "{REMOTE}"
psk = "0123456789abcdef0123456789abcdef"
remote_domain = ["10.2.0.0/16"]
start_action = "none"

[[service]]
name = "udp"
protocol = "udp"

[[rule]]
name = "all"
service = ["udp"]
action = "accept"
"#,
        s1 = sync[0].ip(),
        s2 = sync[1].ip(),
    );
    let mut config =
        rampart_config::parse(&text, &format!("bench-m{id}.toml")).expect("valid member config");
    // The sync port is not configurable (8116); the benchmark uses its own.
    if let Some(c) = config.cluster.as_mut() {
        for (m, addr) in c.members.iter_mut().zip(sync) {
            m.sync_address = addr;
        }
    }
    config
}

fn remote_config() -> rampart_config::GatewayConfig {
    let text = format!(
        r#"
[gateway]
name = "bench-r"
status_socket = "/tmp/unused-bench-r.sock"

[tunnel]
device = "rpbr"

[local]
domain = ["10.2.0.0/16"]

[[peer]]
name = "m"
local_address = "{REMOTE}"
remote_address = "{VIP}"
psk = "0123456789abcdef0123456789abcdef"
remote_domain = ["10.1.0.0/16"]
"#
    );
    rampart_config::parse(&text, "bench-r.toml").expect("valid remote config")
}

/// A UDP packet 10.1.a.b:sport -> 10.2.0.7:5000 for connection number `i` (distinct tuples),
/// in a buffer with head- and tailroom; returns the buffer and the packet's range.
fn conn_packet(i: u64, buf: &mut Vec<u8>) -> std::ops::Range<usize> {
    let payload = b"bench";
    let host = (i / 50_000) as u32;
    let sport = 10_000 + (i % 50_000) as u16;
    let src = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 1, 0, 1)) + host).octets();
    let dst = [10, 2, 0, 7];
    let len = 28 + payload.len();
    buf.clear();
    buf.resize(len + 2 * HEADROOM, 0);
    let p = &mut buf[HEADROOM..HEADROOM + len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    let mut sum = 0u32;
    for c in p[..20].chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&5000u16.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    // UDP checksum 0: none (IPv4).
    p[28..].copy_from_slice(payload);
    HEADROOM..HEADROOM + len
}

// ---------------------------------------------------------------------------------------------
// Delta sync over loopback UDP.

/// Bytes and datagrams one member put on its sync socket.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct WireCount {
    pub datagrams: u64,
    pub bytes: u64,
}

struct Member {
    gw: Gateway,
    sock: UdpSocket,
    local: SocketAddr,
    sent: WireCount,
    full_sync_from: Vec<u8>,
}

impl Member {
    /// Sends the member's cluster datagrams; drops everything else (IKE to the absent remote,
    /// logs, address claims).
    fn pump(&mut self) -> Result<(), String> {
        while let Some(out) = self.gw.poll_output() {
            match out {
                Output::SendUdp {
                    local,
                    remote,
                    data,
                } if local == self.local => loop {
                    match self.sock.send_to(&data, remote) {
                        Ok(n) => {
                            self.sent.datagrams += 1;
                            self.sent.bytes += n as u64;
                            break;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
                        Err(e) => return Err(format!("send to {remote}: {e}")),
                    }
                },
                Output::FullSyncConnect { member, .. } => self.full_sync_from.push(member),
                _ => {}
            }
        }
        Ok(())
    }

    /// Hands every waiting datagram to the member; returns how many.
    fn receive(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        let mut n = 0;
        loop {
            match self.sock.recv_from(&mut buf[HEADROOM..]) {
                Ok((len, from)) => {
                    let now = Instant::now();
                    let _ =
                        self.gw
                            .handle_udp(now, self.local, from, buf, HEADROOM..HEADROOM + len);
                    n += 1;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(n),
                Err(e) => return Err(format!("receive: {e}")),
            }
        }
    }

    fn timers(&mut self) {
        let now = Instant::now();
        if self.gw.poll_timeout().is_some_and(|t| t <= now) {
            self.gw.handle_timeout(now);
        }
    }

    fn applied(&self) -> u64 {
        self.gw
            .cluster_status(Instant::now())
            .map_or(0, |(_, s)| s.records_applied)
    }
}

fn bind(addr: SocketAddr) -> Result<UdpSocket, String> {
    let s = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .map_err(|e| e.to_string())?;
    let _ = s.set_recv_buffer_size(8 << 20);
    let _ = s.set_send_buffer_size(8 << 20);
    s.bind(&addr.into())
        .map_err(|e| format!("bind {addr}: {e}"))?;
    s.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(s.into())
}

/// Result of [`delta`].
#[derive(Debug, Serialize)]
pub struct DeltaResult {
    pub connections: u64,
    pub seconds: f64,
    pub updates_per_s: f64,
    /// Seconds spent in member 1's `handle_tun` (connection creation + record encoding).
    pub sender_tun_seconds: f64,
    /// The same packets through a gateway without a cluster: connection creation alone.
    pub baseline_tun_seconds: f64,
    /// Updates/s with the connection creation (baseline) taken out.
    pub sync_only_updates_per_s: f64,
    pub active_to_standby: WireCount,
    pub standby_to_active: WireCount,
    /// Socket payload bytes (cluster headers, AEAD tags, acks, heartbeats) per connection.
    pub payload_bytes_per_conn: f64,
    /// The same plus 28 bytes of IPv4 + UDP headers per datagram.
    pub wire_bytes_per_conn: f64,
    pub standby_connections: usize,
    pub retransmitted: u64,
    pub lost: u64,
}

/// Two members, `conns` new connections on the active one, until the standby applied them all.
pub fn delta(conns: u64, batch: u64, port: u16) -> Result<DeltaResult, String> {
    let sync: [SocketAddr; 2] = [
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), port),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), port),
    ];
    // Connection creation alone: the same packets through a gateway without a cluster.
    let baseline_tun_seconds = {
        let mut cfg = member_config(1, sync);
        cfg.cluster = None;
        let now = Instant::now();
        let mut gw = Gateway::new(cfg, now, Rng::from_seed([9; 32])).map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        let t = Instant::now();
        for i in 0..conns {
            let range = conn_packet(i, &mut buf);
            let _ = gw.handle_tun(Instant::now(), &mut buf, range);
            if i % batch == 0 {
                while gw.poll_output().is_some() {}
            }
        }
        t.elapsed().as_secs_f64()
    };

    let start = Instant::now();
    let mut m: Vec<Member> = (1..=2u8)
        .map(|id| {
            Ok(Member {
                gw: Gateway::with_boot_id(
                    member_config(id, sync),
                    start,
                    Rng::from_seed([id; 32]),
                    1,
                )
                .map_err(|e| e.to_string())?,
                sock: bind(sync[usize::from(id - 1)])?,
                local: sync[usize::from(id - 1)],
                sent: WireCount::default(),
                full_sync_from: Vec::new(),
            })
        })
        .collect::<Result<_, String>>()?;
    let mut rx = vec![0u8; 65536 + 2 * HEADROOM];
    // Member 1 is started first and becomes active; member 2 joins by a full sync (in memory).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for i in 0..2 {
            m[i].timers();
            m[i].pump()?;
            m[i].receive(&mut rx)?;
            m[i].pump()?;
            for member in std::mem::take(&mut m[i].full_sync_from) {
                let now = Instant::now();
                let j = usize::from(member - 1);
                let bytes = m[j].gw.full_sync_export(now);
                let r = m[i].gw.full_sync_input(now, member, &bytes);
                if r != Ok(FullSyncProgress::Done) {
                    return Err(format!("setup full sync: {r:?}"));
                }
                m[j].pump()?;
            }
        }
        let standby = m[1]
            .gw
            .cluster_status(Instant::now())
            .is_some_and(|(s, _)| s.state == rampart_cluster::MemberState::Standby);
        if m[0].gw.is_active() && standby {
            break;
        }
        if Instant::now() > deadline {
            return Err("the two members did not reach active/standby in 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // Let the heartbeats settle.
    let settle = Instant::now() + Duration::from_millis(300);
    while Instant::now() < settle {
        for x in m.iter_mut() {
            x.timers();
            x.pump()?;
            x.receive(&mut rx)?;
        }
        std::thread::sleep(Duration::from_millis(1));
    }

    let applied0 = m[1].applied();
    let sent0 = (m[0].sent, m[1].sent);
    let stats0 = m[0].gw.cluster_status(Instant::now()).map(|(_, s)| s);
    let mut buf = Vec::new();
    let mut tun = Duration::ZERO;
    let t0 = Instant::now();
    let mut next = 0u64;
    while next < conns {
        let t = Instant::now();
        let end = (next + batch).min(conns);
        for i in next..end {
            let range = conn_packet(i, &mut buf);
            let d = m[0].gw.handle_tun(Instant::now(), &mut buf, range);
            debug_assert!(!matches!(d, Disposition::WriteTun { .. }));
        }
        tun += t.elapsed();
        next = end;
        m[0].timers();
        m[0].pump()?;
        m[1].receive(&mut rx)?;
        m[1].timers();
        m[1].pump()?;
        m[0].receive(&mut rx)?;
        m[0].pump()?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while m[1].applied() - applied0 < conns {
        for x in m.iter_mut() {
            x.timers();
            x.pump()?;
            x.receive(&mut rx)?;
            x.pump()?;
        }
        if Instant::now() > deadline {
            let now = Instant::now();
            return Err(format!(
                "standby applied {} of {conns} records in 30 s; active {:?}; standby {:?}; active's connections {}",
                m[1].applied() - applied0,
                m[0].gw.cluster_status(now).map(|x| x.1),
                m[1].gw.cluster_status(now),
                m[0].gw.export_connections(now).len(),
            ));
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    // The last acks.
    let settle = Instant::now() + Duration::from_millis(20);
    while Instant::now() < settle {
        for x in m.iter_mut() {
            x.timers();
            x.pump()?;
            x.receive(&mut rx)?;
        }
    }
    let a = WireCount {
        datagrams: m[0].sent.datagrams - sent0.0.datagrams,
        bytes: m[0].sent.bytes - sent0.0.bytes,
    };
    let b = WireCount {
        datagrams: m[1].sent.datagrams - sent0.1.datagrams,
        bytes: m[1].sent.bytes - sent0.1.bytes,
    };
    let stats1 = m[0].gw.cluster_status(Instant::now()).map(|(_, s)| s);
    let (retransmitted, lost) = match (stats0, stats1) {
        (Some(s0), Some(s1)) => (s1.retransmitted - s0.retransmitted, s1.lost - s0.lost),
        _ => (0, 0),
    };
    let payload = (a.bytes + b.bytes) as f64 / conns as f64;
    let wire =
        (a.bytes + b.bytes + IP_UDP_HEADERS * (a.datagrams + b.datagrams)) as f64 / conns as f64;
    let sync_only = seconds - baseline_tun_seconds;
    Ok(DeltaResult {
        connections: conns,
        seconds,
        updates_per_s: conns as f64 / seconds,
        sender_tun_seconds: tun.as_secs_f64(),
        baseline_tun_seconds,
        sync_only_updates_per_s: if sync_only > 0.0 {
            conns as f64 / sync_only
        } else {
            f64::NAN
        },
        active_to_standby: a,
        standby_to_active: b,
        payload_bytes_per_conn: payload,
        wire_bytes_per_conn: wire,
        standby_connections: m[1].gw.export_connections(Instant::now()).len(),
        retransmitted,
        lost,
    })
}

// ---------------------------------------------------------------------------------------------
// Full sync over loopback TLS.

/// Member 1 (active, alone) and the remote gateway in memory, virtual time, until the remote's
/// IKE SA with member 1 is up.
fn established_member(sync: [SocketAddr; 2]) -> Result<(Gateway, Instant), String> {
    let mut now = Instant::now();
    let mut gw = [
        Gateway::with_boot_id(member_config(1, sync), now, Rng::from_seed([1; 32]), 1)
            .map_err(|e| e.to_string())?,
        Gateway::new(remote_config(), now, Rng::from_seed([3; 32])).map_err(|e| e.to_string())?,
    ];
    let end = now + Duration::from_secs(30);
    while now < end {
        let mut wire: Vec<(usize, SocketAddr, SocketAddr, Vec<u8>)> = Vec::new();
        for _ in 0..100 {
            for (i, g) in gw.iter_mut().enumerate() {
                while let Some(out) = g.poll_output() {
                    if let Output::SendUdp {
                        local,
                        remote,
                        data,
                    } = out
                    {
                        let ip = remote.ip().to_string();
                        let to = if ip == VIP && i == 1 {
                            0
                        } else if ip == REMOTE && i == 0 {
                            1
                        } else {
                            continue;
                        };
                        wire.push((to, remote, local, data));
                    }
                }
            }
            if wire.is_empty() {
                break;
            }
            for (to, local, remote, data) in std::mem::take(&mut wire) {
                let mut buf = vec![0u8; data.len() + 2 * HEADROOM];
                buf[HEADROOM..HEADROOM + data.len()].copy_from_slice(&data);
                let d = gw[to].handle_udp(
                    now,
                    local,
                    remote,
                    &mut buf,
                    HEADROOM..HEADROOM + data.len(),
                );
                if let Disposition::SendUdp {
                    local,
                    remote,
                    data,
                    ..
                } = d
                {
                    wire.push((1 - to, remote, local, buf[data].to_vec()));
                }
            }
        }
        let s = gw[1].status(now);
        if gw[0].is_active() && s.peers[0].state == "established" && !s.peers[0].tunnels.is_empty()
        {
            let [m1, _] = gw;
            return Ok((m1, now));
        }
        let next = gw
            .iter()
            .filter_map(|g| g.poll_timeout())
            .min()
            .unwrap_or(end);
        now = now.max(next).min(end);
        for g in gw.iter_mut() {
            if g.poll_timeout().is_some_and(|t| t <= now) {
                g.handle_timeout(now);
            }
        }
    }
    Err("member 1 and the remote gateway did not establish an IKE SA in 30 s (virtual)".into())
}

/// What the receiving child process reports.
#[derive(Debug, Serialize, Deserialize)]
pub struct RecvResult {
    /// TLS handshake and Hello exchange.
    pub handshake_s: f64,
    /// From the end of the handshake until `full_sync_input` returned `Done`.
    pub transfer_apply_s: f64,
    pub bytes: u64,
    pub connections: usize,
    pub sa_replicas: usize,
    /// VmRSS after the gateway was built, before connecting, KiB.
    pub rss_before_kib: u64,
    /// VmHWM at the end, KiB.
    pub peak_kib: u64,
}

/// Result of [`fullsync`].
#[derive(Debug, Serialize)]
pub struct FullSyncResult {
    pub connections: u64,
    pub sas: u64,
    /// Creating the connections on member 1 (packets through `handle_tun`).
    pub create_s: f64,
    /// Member 1's `full_sync_export` (1 real SA).
    pub export_s: f64,
    pub stream_bytes: u64,
    pub sa_record_bytes: usize,
    pub receiver: RecvResult,
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn cluster_config(id: u8, sync: [SocketAddr; 2]) -> rampart_cluster::ClusterConfig {
    member_config(id, sync).cluster.expect("cluster section")
}

/// Builds the stream and serves it to a child process running `cluster-fullsync-recv`.
pub fn fullsync(
    conns: u64,
    sas: u64,
    port: u16,
    exe: &std::path::Path,
) -> Result<FullSyncResult, String> {
    let sync: [SocketAddr; 2] = [
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), port),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), port),
    ];
    let (mut m1, now) = established_member(sync)?;
    let mut buf = Vec::new();
    let t = Instant::now();
    for i in 0..conns {
        let range = conn_packet(i, &mut buf);
        let _ = m1.handle_tun(now, &mut buf, range);
        if i % 4096 == 0 {
            while m1.poll_output().is_some() {}
        }
    }
    while m1.poll_output().is_some() {}
    let create_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let exported = m1.full_sync_export(now);
    let export_s = t.elapsed().as_secs_f64();
    drop(m1);

    // The SA record cloned to `sas` distinct SAs (ids, SPIs, CHILD SA ids).
    let mut dec = FullSyncDecoder::default();
    dec.push(&exported);
    drop(exported);
    let mut enc = FullSyncEncoder::default();
    let mut stream = Vec::new();
    let mut records = 0u64;
    let mut sa: Option<SaSnapshot> = None;
    let mut sa_record_bytes = 0;
    while let Some(frame) = dec.next_frame().map_err(|e| e.to_string())? {
        match &frame {
            FullSyncFrame::Record {
                kind: RecordKind::SaUpsert,
                body,
                ..
            } => {
                sa_record_bytes = body.len();
                sa = Some(postcard::from_bytes(body).map_err(|e| e.to_string())?);
            }
            FullSyncFrame::Record { .. } => {
                records += 1;
                enc.encode(&frame, &mut stream);
            }
            FullSyncFrame::Begin { .. } => enc.encode(&frame, &mut stream),
            FullSyncFrame::End { .. } | FullSyncFrame::Hello { .. } => {}
        }
    }
    if records != conns {
        return Err(format!(
            "member 1 exported {records} connections, not {conns}"
        ));
    }
    let sa = sa.ok_or("member 1 exported no SA")?;
    for n in 0..sas {
        let mut s = sa.clone();
        s.ike.id = rampart_ike::IkeSaId(0x5a00_0000_0000 + n);
        s.ike.spi_i ^= n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        s.ike.spi_r ^= n.wrapping_mul(0xc2b2_ae3d_27d4_eb4f) | 1;
        for (k, c) in s.ike.children.iter_mut().enumerate() {
            let old = c.id;
            c.id = rampart_ike::ChildSaId(0x5b00_0000_0000 + n * 16 + k as u64);
            c.spi_in = 0x1000_0000 + (n as u32) * 16 + k as u32;
            c.spi_out = 0x2000_0000 + (n as u32) * 16 + k as u32;
            for e in s.esp.iter_mut().filter(|e| e.child == old) {
                e.child = c.id;
            }
        }
        let body = postcard::to_allocvec(&s).map_err(|e| e.to_string())?;
        enc.encode_record(RecordKind::SaUpsert, s.ike.id.0, &body, &mut stream);
        records += 1;
    }
    enc.encode(&FullSyncFrame::End { records }, &mut stream);
    let stream_bytes = stream.len() as u64;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let receiver = rt.block_on(async {
        let tls = rampart_io::sync_tls::SyncTls::new(&cluster_config(1, sync))
            .map_err(|e| e.to_string())?;
        let listener = tls
            .listen()
            .map_err(|e| format!("listen {}: {e}", sync[0]))?;
        let mut child = tokio::process::Command::new(exe)
            .args(["cluster-fullsync-recv", "--port", &port.to_string()])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("{}: {e}", exe.display()))?;
        let (tcp, peer) = tokio::time::timeout(Duration::from_secs(30), listener.accept())
            .await
            .map_err(|_| "the receiver did not connect in 30 s".to_string())?
            .map_err(|e| e.to_string())?;
        let (_, mut s) = tls.accept(tcp, peer).await.map_err(|e| e.to_string())?;
        s.write_all(&stream).await.map_err(|e| e.to_string())?;
        s.flush().await.map_err(|e| e.to_string())?;
        let mut out = String::new();
        if let Some(mut o) = child.stdout.take() {
            o.read_to_string(&mut out)
                .await
                .map_err(|e| e.to_string())?;
        }
        let _ = s.shutdown().await;
        let status = child.wait().await.map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("receiver failed ({status}): {out}"));
        }
        serde_json::from_str::<RecvResult>(out.trim()).map_err(|e| format!("{e}: {out}"))
    })?;
    if receiver.connections as u64 != conns || receiver.sa_replicas as u64 != sas {
        return Err(format!(
            "receiver holds {} connections and {} SAs, expected {conns} and {sas}",
            receiver.connections, receiver.sa_replicas
        ));
    }
    Ok(FullSyncResult {
        connections: conns,
        sas,
        create_s,
        export_s,
        stream_bytes,
        sa_record_bytes,
        receiver,
    })
}

/// The receiving end of [`fullsync`], in its own process: member 2 pulls the full sync from
/// member 1 over TLS and applies it; prints a [`RecvResult`] as JSON.
pub fn fullsync_recv(port: u16) -> Result<(), String> {
    let sync: [SocketAddr; 2] = [
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), port),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), port),
    ];
    let mut gw = Gateway::with_boot_id(
        member_config(2, sync),
        Instant::now(),
        Rng::from_seed([2; 32]),
        1,
    )
    .map_err(|e| e.to_string())?;
    while gw.poll_output().is_some() {}
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let rss_before_kib = status_kib("VmRSS:");
    let result = rt.block_on(async {
        let tls = rampart_io::sync_tls::SyncTls::new(&cluster_config(2, sync))
            .map_err(|e| e.to_string())?;
        let t = Instant::now();
        let mut s = tls.connect(1, sync[0]).await.map_err(|e| e.to_string())?;
        let handshake_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut buf = vec![0u8; 256 * 1024];
        let mut bytes = 0u64;
        loop {
            let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("stream ended before End".to_string());
            }
            bytes += n as u64;
            match gw.full_sync_input(Instant::now(), 1, &buf[..n])? {
                FullSyncProgress::More => {}
                FullSyncProgress::Done => break,
            }
            while gw.poll_output().is_some() {}
        }
        let transfer_apply_s = t.elapsed().as_secs_f64();
        Ok::<_, String>((handshake_s, transfer_apply_s, bytes))
    })?;
    let peak_kib = status_kib("VmHWM:");
    let r = RecvResult {
        handshake_s: result.0,
        transfer_apply_s: result.1,
        bytes: result.2,
        connections: gw.export_connections(Instant::now()).len(),
        sa_replicas: gw.replica_count(),
        rss_before_kib,
        peak_kib,
    };
    let line = serde_json::to_string(&r).map_err(|e| e.to_string())?;
    println!("{line}");
    Ok(())
}
