//! rampart <-> rampart through the site-to-site topology: bulk transfer, rekeys under load, and
//! dead-peer detection with recovery.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use rampart_netns_tests::rampart::{Gateway, GatewayToml};
use rampart_netns_tests::topology::{H1, H2};
use rampart_netns_tests::{
    check_only_ike_esp, ping, require_tools, skip_unless_root, tcp_transfer, udp_burst, wait_until,
    RunningTransfer, SiteToSite, TransferSpec,
};

const TUNNEL_UP: Duration = Duration::from_secs(20);

/// Configurations of gw1 (`site-a`, initiator: start_action always) and gw2 (`site-b`,
/// responder), with `tweak` applied to both peers.
fn configs(topo: &SiteToSite, tweak: impl Fn(&mut GatewayToml)) -> (GatewayToml, GatewayToml) {
    let (mut c1, mut c2) = topo.rampart_pair();
    tweak(&mut c1);
    tweak(&mut c2);
    (c1, c2)
}

fn start(topo: &SiteToSite, c1: &GatewayToml, c2: &GatewayToml) -> (Gateway, Gateway) {
    let g2 = Gateway::start(&topo.gw2, &topo.daemon_dir("gw2"), "gw2", c2);
    let g1 = Gateway::start(&topo.gw1, &topo.daemon_dir("gw1"), "gw1", c1);
    (g1, g2)
}

fn setup() -> bool {
    if skip_unless_root("rampart netns test") {
        return false;
    }
    require_tools(&["ip", "ping", "tcpdump"]);
    true
}

#[test]
fn rampart_site_to_site_50mb_only_esp_on_transit() {
    if !setup() {
        return;
    }
    let topo = SiteToSite::new("rp-s2s");
    let capture = topo.capture_transit("transit");
    let (c1, c2) = configs(&topo, |_| {});
    let (mut g1, mut g2) = start(&topo, &c1, &c2);
    let s1 = g1.wait_tunnel(TUNNEL_UP);
    let s2 = g2.wait_tunnel(TUNNEL_UP);
    assert_eq!(s1.ike, s2.ike, "both ends name the same IKE SA");

    ping(&topo.h1, &H2.to_string(), 5).unwrap();
    ping(&topo.h2, &H1.to_string(), 5).unwrap();
    let report = tcp_transfer(
        &topo.h1,
        &topo.h2,
        IpAddr::V4(H2),
        &TransferSpec::megabytes(50),
    )
    .unwrap_or_else(|e| panic!("transfer h1 -> h2: {e}"));
    assert!(report.intact(), "{report:?}");
    eprintln!("50 MB through rampart: {:.0} Mbit/s", report.mbps());
    let back = tcp_transfer(
        &topo.h2,
        &topo.h1,
        IpAddr::V4(H1),
        &TransferSpec::megabytes(5),
    )
    .unwrap_or_else(|e| panic!("transfer h2 -> h1: {e}"));
    assert!(back.intact(), "{back:?}");

    let status = g1.status().unwrap();
    let counters = &status["counters"];
    assert_eq!(counters["dropped_auth"], 0, "{status}");
    assert_eq!(counters["dropped_replay"], 0, "{status}");

    let pcap = capture.stop();
    let summary = check_only_ike_esp(&pcap, SiteToSite::gateways(), c1.nat_t_port)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(summary.esp_packets() > 30_000, "{summary:?}");
}

/// The batched ESP-in-UDP path (TUN segmentation offload, UDP GSO/GRO, coalesced TUN writes),
/// the same with the cipher calls on two extra threads (`crypto_threads = 2`), and the
/// unbatched fallback (`offload = false`: one packet per TUN read and write) carry the same
/// traffic byte-exact, with no authentication or replay drop on either gateway.
#[test]
fn rampart_esp_in_udp_with_and_without_tun_offload() {
    if !setup() {
        return;
    }
    for (offload, threads) in [(true, 0), (true, 2), (false, 0)] {
        let label = match (offload, threads) {
            (true, 0) => "rp-gso",
            (true, _) => "rp-gso-ct",
            _ => "rp-nogso",
        };
        let topo = SiteToSite::new(label);
        let (c1, c2) = configs(&topo, |c| {
            c.offload = Some(offload);
            c.crypto_threads = Some(threads);
            for p in &mut c.peers {
                p.encapsulation = "force".into();
            }
        });
        let (mut g1, mut g2) = start(&topo, &c1, &c2);
        g1.wait_tunnel(TUNNEL_UP);
        g2.wait_tunnel(TUNNEL_UP);
        let want = format!(
            "segmentation offload {}",
            if offload { "on" } else { "off" }
        );
        assert!(g1.log().contains(&want), "{label}: {}", g1.log());
        if threads > 0 {
            let want = format!("cipher threads {threads} + event loop");
            assert!(g1.log().contains(&want), "{label}: {}", g1.log());
        }
        for (from, to, addr) in [(&topo.h1, &topo.h2, H2), (&topo.h2, &topo.h1, H1)] {
            let report = tcp_transfer(from, to, IpAddr::V4(addr), &TransferSpec::megabytes(20))
                .unwrap_or_else(|e| panic!("{label}: transfer to {addr}: {e}"));
            assert!(report.intact(), "{label}: {report:?}");
            eprintln!("{label}: 20 MB to {addr}: {:.0} Mbit/s", report.mbps());
        }
        // Offload batches: a TUN read carries many packets, so do GSO sends, GRO receives and
        // coalesced TUN writes; without offload every TUN read and write is one packet.
        let batching = |g: &Gateway| g.status().unwrap()["batching"].clone();
        let ratio = |b: &serde_json::Value, packets: &str, calls: &str| {
            b[packets].as_f64().unwrap_or(0.0) / b[calls].as_f64().unwrap_or(0.0).max(1.0)
        };
        let (b1, b2) = (batching(&g1), batching(&g2));
        for (name, b) in [("gw1", &b1), ("gw2", &b2)] {
            let reads = ratio(b, "tun_read_packets", "tun_reads");
            let writes = ratio(b, "tun_write_packets", "tun_writes");
            eprintln!("{label} {name}: {b}");
            if offload {
                assert!(reads > 2.0 && writes > 2.0, "{label} {name}: {b}");
                assert!(
                    ratio(b, "udp_send_datagrams", "udp_sends") > 2.0,
                    "{label} {name}: {b}"
                );
                assert!(
                    ratio(b, "udp_receive_datagrams", "udp_receives") > 2.0,
                    "{label} {name}: {b}"
                );
            } else {
                assert!(reads == 1.0 && writes == 1.0, "{label} {name}: {b}");
            }
        }
        // Bursts of one UDP flow: coalesced into USO writes where the kernel has USO (6.2+).
        let before = batching(&g2);
        let udp = udp_burst(&topo.h1, &topo.h2, IpAddr::V4(H2), 4000, 1200)
            .unwrap_or_else(|e| panic!("{label}: UDP burst: {e}"));
        assert_eq!(
            (udp.received, udp.corrupt, udp.duplicates),
            (udp.sent, 0, 0),
            "{label}: {udp:?}"
        );
        let after = batching(&g2);
        let delta = |k: &str| after[k].as_u64().unwrap_or(0) - before[k].as_u64().unwrap_or(0);
        let (writes, packets) = (delta("tun_writes"), delta("tun_write_packets"));
        eprintln!("{label}: UDP burst: {packets} packets in {writes} TUN writes");
        assert!(
            packets >= u64::from(udp.sent),
            "{label}: {before} -> {after}"
        );
        if offload && kernel_at_least(6, 2) {
            assert!(
                packets > 2 * writes,
                "{label}: UDP not coalesced: {before} -> {after}"
            );
        }
        for g in [&g1, &g2] {
            let status = g.status().unwrap();
            let counters = &status["counters"];
            assert_eq!(counters["dropped_auth"], 0, "{label}: {status}");
            assert_eq!(counters["dropped_replay"], 0, "{label}: {status}");
            assert_eq!(counters["dropped_malformed"], 0, "{label}: {status}");
            let tunnel = &status["peers"][0]["tunnels"][0];
            assert_eq!(tunnel["encapsulation"], "esp-in-udp", "{label}: {status}");
            assert!(
                tunnel["packets_in"].as_u64().unwrap() > 10_000,
                "{label}: {status}"
            );
        }
    }
}

#[test]
fn rampart_child_and_ike_rekey_during_transfer_lose_no_bytes() {
    if !setup() {
        return;
    }
    let topo = SiteToSite::new("rp-rekey");
    let (c1, c2) = configs(&topo, |c| {
        c.peers[0].child_lifetime = "10s".into();
        c.peers[0].ike_lifetime = "20s".into();
    });
    let (mut g1, mut g2) = start(&topo, &c1, &c2);
    let first = g1.wait_tunnel(TUNNEL_UP);
    g2.wait_tunnel(TUNNEL_UP);

    let mut spec = TransferSpec::megabytes(45);
    spec.rate = Some(3 * 1024 * 1024 / 2);
    spec.timeout = Duration::from_secs(80);
    let transfer = RunningTransfer::start(&topo.h1, &topo.h2, IpAddr::V4(H2), &spec).unwrap();

    wait_until(
        Duration::from_secs(20),
        "a CHILD SA rekey (new SPIs)",
        || {
            g1.spis()
                .is_some_and(|s| s.children.iter().all(|c| !first.children.contains(c)))
        },
    );
    wait_until(
        Duration::from_secs(30),
        "an IKE SA rekey (new SPIs)",
        || g1.spis().is_some_and(|s| s.ike != first.ike),
    );
    assert!(
        transfer.received() < spec.bytes,
        "the rekeys happened while data was flowing"
    );
    let report = transfer
        .finish()
        .unwrap_or_else(|e| panic!("transfer: {e}"));
    assert!(report.intact(), "{report:?}");
    // Both ends agree on the current SAs.
    let a = g1.spis().expect("gw1 established");
    let b = g2.spis().expect("gw2 established");
    assert_eq!(a.ike, b.ike);
    ping(&topo.h2, &H1.to_string(), 3).unwrap();
    // TCP would hide a lost packet by retransmitting it: the gateways must not have dropped any
    // ESP packet around the rekeys for authentication, replay or a missing SA.
    //
    // Unknown SPI too: a replaced inbound SA keeps decrypting for a grace period after the
    // rekey's Delete, so ESP the peer sealed with it just before is not lost.
    for g in [&mut g1, &mut g2] {
        let status = g.status().unwrap();
        let counters = &status["counters"];
        for counter in [
            "dropped_unknown_spi",
            "dropped_auth",
            "dropped_replay",
            "dropped_no_sa",
        ] {
            assert_eq!(counters[counter], 0, "{counter}: {status}");
        }
    }
}

#[test]
fn rampart_detects_a_killed_peer_and_recovers_after_restart() {
    if !setup() {
        return;
    }
    let topo = SiteToSite::new("rp-dpd");
    let (c1, c2) = configs(&topo, |c| {
        c.retransmit_timeout = "500ms".into();
        c.retransmit_tries = 3;
        c.peers[0].liveness_interval = "2s".into();
    });
    let (mut g1, mut g2) = start(&topo, &c1, &c2);
    g1.wait_tunnel(TUNNEL_UP);
    g2.wait_tunnel(TUNNEL_UP);
    ping(&topo.h1, &H2.to_string(), 2).unwrap();

    let logged_before = g1.log().len();
    let killed = Instant::now();
    g2.kill9();
    // liveness 2s + retransmissions 0.5 + 1 + 2 + 4 s, with margin.
    let window = Duration::from_secs(15);
    wait_until(window, "gw1 to log the dead peer", || {
        g1.log()
            .get(logged_before..)
            .is_some_and(|new| new.to_ascii_lowercase().contains("dead"))
    });
    eprintln!("dead peer detected after {:?}", killed.elapsed());
    assert!(
        g1.spis().is_none(),
        "gw1 dropped the tunnel: {:?}",
        g1.status()
    );
    assert!(ping(&topo.h1, &H2.to_string(), 1).is_err());

    g2.restart(&topo.gw2);
    g1.wait_tunnel(Duration::from_secs(30));
    g2.wait_tunnel(Duration::from_secs(10));
    ping(&topo.h1, &H2.to_string(), 3).unwrap();
    ping(&topo.h2, &H1.to_string(), 3).unwrap();
}

/// Whether the running kernel is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}
