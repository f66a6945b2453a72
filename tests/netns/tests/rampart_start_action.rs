//! Start actions: `on-traffic` brings the tunnel up on the first packet, and again after the peer
//! died and came back; `none` never initiates and waits for the peer.

use std::time::Duration;

use rampart_netns_tests::rampart::{Gateway, GatewayToml};
use rampart_netns_tests::topology::{H1, H2};
use rampart_netns_tests::{
    ping, require_tools, skip_unless_root, try_wait_until, wait_until, SiteToSite,
};

fn setup(test: &str) -> bool {
    if skip_unless_root(test) {
        return false;
    }
    require_tools(&["ip", "ping"]);
    true
}

/// gw1 with `start1`, gw2 with `start2`; short liveness so a dead peer shows quickly.
fn configs(topo: &SiteToSite, start1: &str, start2: &str) -> (GatewayToml, GatewayToml) {
    let (mut c1, mut c2) = topo.rampart_pair();
    c1.peers[0].start_action = start1.into();
    c2.peers[0].start_action = start2.into();
    for c in [&mut c1, &mut c2] {
        c.peers[0].liveness_interval = "2s".into();
        c.retransmit_timeout = "500ms".into();
        c.retransmit_tries = 3;
    }
    (c1, c2)
}

#[test]
fn on_traffic_starts_on_the_first_packet_and_after_a_dead_peer() {
    if !setup("rampart start_action on-traffic") {
        return;
    }
    let topo = SiteToSite::new("rp-on-traffic");
    let (c1, c2) = configs(&topo, "on-traffic", "none");
    let mut g2 = Gateway::start(&topo.gw2, &topo.daemon_dir("gw2"), "gw2", &c2);
    let mut g1 = Gateway::start(&topo.gw1, &topo.daemon_dir("gw1"), "gw1", &c1);

    // Nothing happens without traffic.
    wait_until(Duration::from_secs(10), "both status sockets", || {
        g1.status().is_ok() && g2.status().is_ok()
    });
    let idle = try_wait_until(Duration::from_secs(3), "an unrequested tunnel", || {
        g1.spis().is_some() || g2.spis().is_some()
    });
    assert!(idle.is_err(), "on-traffic started without traffic");
    assert_eq!(g1.peer_state().unwrap(), "down");

    // The first packet (dropped: no SA yet) starts the tunnel; a later one gets through.
    let _ = ping(&topo.h1, &H2.to_string(), 1);
    g1.wait_tunnel(Duration::from_secs(15));
    g2.wait_tunnel(Duration::from_secs(5));
    wait_until(
        Duration::from_secs(10),
        "h1 -> h2 through the tunnel",
        || ping(&topo.h1, &H2.to_string(), 1).is_ok(),
    );
    ping(&topo.h2, &H1.to_string(), 2).unwrap();

    // The peer dies: gw1 removes its SAs and waits for traffic rather than re-initiating.
    let logged = g1.log().len();
    g2.kill9();
    wait_until(Duration::from_secs(15), "gw1 to log the dead peer", || {
        g1.log()
            .get(logged..)
            .is_some_and(|l| l.to_ascii_lowercase().contains("dead"))
    });
    assert!(g1.spis().is_none(), "{:?}", g1.status());
    g2.restart(&topo.gw2);
    wait_until(Duration::from_secs(10), "gw2 status after restart", || {
        g2.status().is_ok()
    });
    let idle = try_wait_until(Duration::from_secs(3), "an unrequested tunnel", || {
        g1.spis().is_some()
    });
    assert!(idle.is_err(), "on-traffic re-initiated without traffic");
    // Traffic brings it back.
    wait_until(
        Duration::from_secs(20),
        "h1 -> h2 after the restart",
        || ping(&topo.h1, &H2.to_string(), 1).is_ok(),
    );
    g2.wait_tunnel(Duration::from_secs(5));
    ping(&topo.h2, &H1.to_string(), 2).unwrap();
}

#[test]
fn none_waits_for_the_peer() {
    if !setup("rampart start_action none") {
        return;
    }
    let topo = SiteToSite::new("rp-start-none");
    let (c1, c2) = configs(&topo, "none", "on-traffic");
    let mut g1 = Gateway::start(&topo.gw1, &topo.daemon_dir("gw1"), "gw1", &c1);
    let mut g2 = Gateway::start(&topo.gw2, &topo.daemon_dir("gw2"), "gw2", &c2);
    wait_until(Duration::from_secs(10), "both status sockets", || {
        g1.status().is_ok() && g2.status().is_ok()
    });
    // Traffic from gw1's side does not start anything: its start action is none.
    assert!(ping(&topo.h1, &H2.to_string(), 1).is_err());
    let idle = try_wait_until(Duration::from_secs(4), "an unrequested tunnel", || {
        g1.spis().is_some() || g2.spis().is_some()
    });
    assert!(idle.is_err(), "start_action none initiated");
    assert_eq!(g1.peer_state().unwrap(), "down");
    assert_eq!(g2.peer_state().unwrap(), "down");
    // The peer initiates (its own first packet) and gw1 answers.
    let _ = ping(&topo.h2, &H1.to_string(), 1);
    g2.wait_tunnel(Duration::from_secs(15));
    let s1 = g1.wait_tunnel(Duration::from_secs(5));
    let _ = s1;
    let status = g1.status().unwrap();
    assert_eq!(
        status["peers"][0]["ike_sa"]["initiator"], false,
        "gw1 responded: {status}"
    );
    wait_until(Duration::from_secs(10), "h1 -> h2", || {
        ping(&topo.h1, &H2.to_string(), 1).is_ok()
    });
}
