//! The whole event loop on real devices in a private namespace, driven with a stand-in node
//! (root only): routes from `poll_output`, UDP echo, TUN -> UDP in place, UDP -> TUN, the node
//! timer, ICMP errors from the socket's error queue as `handle_unreachable`, the status socket,
//! and cleanup on shutdown.

mod fake_node;
mod netns;

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use fake_node::{eventually, ipv4_udp, recv, FakeNode};
use netns::Netns;
use rampart_io::raw_esp::RawEspSocket;
use rampart_io::routes::Routes;
use rampart_io::runtime::{self, Io};
use rampart_io::status_server::{self, StatusServer};
use rampart_io::tun::Tun;
use rampart_io::udp::UdpEndpoint;
use rampart_node::{GatewayStatus, Output};
use tokio::net::UdpSocket;

const DOMAIN: &str = "10.77.0.0/24";
/// A remote domain the node injects (`[rim]`) into table 201.
const INJECTED: &str = "10.78.0.0/24";
/// An address on `lo` inside the namespace, the source and sink of test traffic.
const HOST: Ipv4Addr = Ipv4Addr::new(10, 76, 0, 1);

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
                streams: Default::default(),
                stream_events: None,
                client_commands: None,
                no_fragmentation: false,
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
                path_mtu: Vec::new(),
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
                udp_from: Vec::new(),
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
