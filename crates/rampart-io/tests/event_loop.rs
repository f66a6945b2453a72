//! The whole event loop on real devices in a private namespace, driven with a stand-in node
//! (root only): routes from `poll_output`, UDP echo, TUN -> UDP in place, UDP -> TUN, the node
//! timer, ICMP errors from the socket's error queue as `handle_unreachable`, the status socket,
//! and cleanup on shutdown.

mod netns;

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use netns::Netns;
use rampart_io::raw_esp::RawEspSocket;
use rampart_io::routes::Routes;
use rampart_io::runtime::{self, Io};
use rampart_io::status_server::{self, StatusServer};
use rampart_io::tun::{Tun, HEADROOM, TAILROOM};
use rampart_io::udp::UdpEndpoint;
use rampart_node::{
    ConnList, DataPlaneCounters, Disposition, GatewayStatus, InspectStats, LogEvent, LogLevel,
    LogRecord, Node, Output,
};
use tokio::net::UdpSocket;

const DOMAIN: &str = "10.77.0.0/24";
/// A remote domain the node injects (`[rim]`) into table 201.
const INJECTED: &str = "10.78.0.0/24";
/// An address on `lo` inside the namespace, the source and sink of test traffic.
const HOST: Ipv4Addr = Ipv4Addr::new(10, 76, 0, 1);

/// Echoes UDP, forwards TUN packets to `sink` with a 4-byte marker written into the headroom,
/// writes datagrams that start with `T` to the TUN device, and sends datagrams that start with
/// `X` on to `closed` (a port nobody listens on).
struct FakeNode {
    outputs: VecDeque<Output>,
    udp_local: SocketAddr,
    sink: SocketAddr,
    closed: SocketAddr,
    /// The `(local, remote)` of every `handle_unreachable` call.
    unreachable: Vec<(SocketAddr, SocketAddr)>,
    tun_packets: u64,
    timer: Option<Instant>,
    timeouts: u64,
    /// The probe sockets it names (the loop binds them; datagrams there are echoed too).
    probe: Vec<SocketAddr>,
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
fn ipv4_udp(dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
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

async fn recv(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 2048];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .expect("datagram did not arrive")
        .unwrap();
    buf.truncate(n);
    (buf, from)
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..100 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn loop_drives_node_on_real_devices() {
    if !netns::can_run("event loop") {
        return;
    }
    let ns = Netns::new("loop");
    ns.ip(&format!("addr add {HOST}/32 dev lo"));
    let dir = std::env::temp_dir().join(format!("rampart-io-test-{}-loop", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let status_path: PathBuf = dir.join("run").join("fake.sock");

    ns.run(|| {
        netns::runtime().block_on(async {
            let tun = Tun::open("rio1", 1400, true).unwrap();
            let udp = UdpEndpoint::bind(SocketAddr::new(HOST.into(), 0)).unwrap();
            let udp_local = udp.local();
            let routes = Routes::open(tun.name(), tun.index()).unwrap();
            let (status, status_requests) = StatusServer::bind(&status_path).unwrap();
            let raw = RawEspSocket::open(HOST.into()).unwrap();
            let mut io = Io {
                tun,
                udp: vec![udp],
                raw: vec![raw],
                routes,
                status,
                status_requests,
                config_path: None,
                hangup: None,
                reloads: Default::default(),
                cluster: None,
                send_failures: Default::default(),
                client_outputs: None,
            };
            let sink = UdpSocket::bind((HOST, 0)).await.unwrap();
            // A port that was free a moment ago: the node's probe socket.
            let probe = std::net::UdpSocket::bind((HOST, 0))
                .unwrap()
                .local_addr()
                .unwrap();
            // A port that was free a moment ago: nothing listens there.
            let closed = std::net::UdpSocket::bind((HOST, 0))
                .unwrap()
                .local_addr()
                .unwrap();
            let mut node = FakeNode {
                closed,
                unreachable: Vec::new(),
                outputs: VecDeque::from([
                    Output::RouteAdd {
                        prefix: DOMAIN.parse().unwrap(),
                    },
                    Output::RouteInject {
                        prefix: INJECTED.parse().unwrap(),
                        table: 201,
                        protocol: 201,
                        metric: 100,
                    },
                ]),
                udp_local,
                sink: sink.local_addr().unwrap(),
                tun_packets: 0,
                timer: Some(Instant::now() + Duration::from_millis(50)),
                timeouts: 0,
                // The second address is on no interface: a warning, and the loop runs on.
                probe: vec![probe, "192.0.2.99:259".parse().unwrap()],
            };
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();

            let client = async {
                // The route from the node's first output.
                eventually("route", || {
                    ns.ip(&format!("route show {DOMAIN}")).contains("dev rio1")
                })
                .await;

                // The injected route, in its table with its protocol and metric.
                eventually("injected route", || {
                    let table = ns.ip("route show table 201");
                    table.contains(&format!("{INJECTED} dev rio1 proto 201"))
                        && table.contains("metric 100")
                })
                .await;

                // UDP in, same buffer back out.
                let peer = UdpSocket::bind((HOST, 0)).await.unwrap();
                peer.send_to(b"hello", udp_local).await.unwrap();
                assert_eq!(recv(&peer).await, (b"hello".to_vec(), udp_local));

                // The probe socket the node named is bound and fed to the node.
                peer.send_to(b"probe", probe).await.unwrap();
                assert_eq!(recv(&peer).await, (b"probe".to_vec(), probe));

                // TUN in (routed into rio1), marker written into the headroom, out over UDP.
                let app = UdpSocket::bind((HOST, 0)).await.unwrap();
                app.send_to(b"inner payload", "10.77.0.5:9999")
                    .await
                    .unwrap();
                // The kernel may also send its own IPv6 packets (router solicitations) into rio1.
                loop {
                    let (got, from) = recv(&sink).await;
                    assert_eq!(from, udp_local);
                    assert_eq!(&got[..4], b"HDR!");
                    if got[4] >> 4 == 4 {
                        assert!(got.ends_with(b"inner payload"));
                        break;
                    }
                }

                // UDP in, written to the TUN device, delivered by the kernel to a local socket.
                let mut msg = b"T".to_vec();
                msg.extend(ipv4_udp(app.local_addr().unwrap(), b"from the tunnel"));
                peer.send_to(&msg, udp_local).await.unwrap();
                let (got, from) = recv(&app).await;
                assert_eq!(got, b"from the tunnel");
                assert_eq!(from, "10.77.0.5:7000".parse().unwrap());

                // Sent on to a closed port: the ICMP port unreachable reaches the node, and the
                // socket still echoes afterwards.
                peer.send_to(b"X to nowhere", udp_local).await.unwrap();
                let mut hinted = None;
                for _ in 0..100 {
                    let path = status_path.clone();
                    let doc =
                        tokio::task::spawn_blocking(move || status_server::query(&path, "status"))
                            .await
                            .unwrap()
                            .unwrap();
                    let s: GatewayStatus = serde_json::from_str(&doc).unwrap();
                    if s.nat.hints > 0 {
                        hinted = Some(s);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let hinted = hinted.expect("the ICMP error never reached the node");
                assert_eq!(hinted.nat.hints, 1);
                assert_eq!(hinted.icmp.icmp_errors_received, 1);
                assert_eq!(hinted.icmp.icmp_hints, 1);
                peer.send_to(b"still there", udp_local).await.unwrap();
                assert_eq!(recv(&peer).await, (b"still there".to_vec(), udp_local));

                // Status socket: the node's document, and an error for anything else.
                let mut status = None;
                for _ in 0..100 {
                    let path = status_path.clone();
                    let doc =
                        tokio::task::spawn_blocking(move || status_server::query(&path, "status"))
                            .await
                            .unwrap()
                            .unwrap();
                    let s: GatewayStatus = serde_json::from_str(&doc).unwrap();
                    if s.uptime_secs > 0 {
                        status = Some(s);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let status = status.expect("node timer never fired");
                assert_eq!(status.name, "fake");
                assert!(status.counters.tun_packets_in >= 1);
                assert_eq!(status.uptime_secs, 1, "node timer fired once");
                let path = status_path.clone();
                let doc =
                    tokio::task::spawn_blocking(move || status_server::query(&path, "nonsense"))
                        .await
                        .unwrap()
                        .unwrap();
                let err: serde_json::Value = serde_json::from_str(&doc).unwrap();
                assert!(err["error"].as_str().unwrap().contains("nonsense"), "{doc}");
                // `mep status` on a node without MEP: an error that says so.
                let path = status_path.clone();
                let doc =
                    tokio::task::spawn_blocking(move || status_server::query(&path, "mep status"))
                        .await
                        .unwrap()
                        .unwrap();
                let err: serde_json::Value = serde_json::from_str(&doc).unwrap();
                assert!(
                    err["error"]
                        .as_str()
                        .unwrap()
                        .contains("multiple entry points"),
                    "{doc}"
                );

                let _ = stop.send(());
            };
            let shutdown = async {
                let _ = stopped.await;
            };
            let (result, ()) = tokio::join!(runtime::run(&mut node, &mut io, shutdown), client);
            result.unwrap();
            assert_eq!(node.unreachable, vec![(udp_local, closed)]);

            // Routes are gone; the socket file goes with the server.
            assert_eq!(ns.ip(&format!("route show {DOMAIN}")).trim(), "");
            assert_eq!(ns.ip("route show table 201").trim(), "");
            assert!(status_path.exists());
            drop(io);
            assert!(!status_path.exists());
        })
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn udp_port_in_use_names_address_and_fix() {
    if !netns::can_run("UDP bind") {
        return;
    }
    let ns = Netns::new("udpbind");
    ns.run(|| {
        netns::runtime().block_on(async {
            let first = UdpEndpoint::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let err = match UdpEndpoint::bind(first.local()) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("bound the same port twice"),
            };
            assert!(
                err.starts_with(&format!("cannot bind UDP {}: ", first.local())),
                "{err}"
            );
            assert!(err.ends_with("(is another IKE daemon running?)"), "{err}");
            // IPv6 sockets are IPv6-only: the same port on :: and 0.0.0.0 coexist.
            let v4 = UdpEndpoint::bind("0.0.0.0:0".parse().unwrap()).unwrap();
            let port = v4.local().port();
            UdpEndpoint::bind(SocketAddr::new("::".parse().unwrap(), port)).unwrap();
        })
    });
}
