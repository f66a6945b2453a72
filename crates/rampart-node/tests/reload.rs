//! Live reload of a running gateway (sans-IO): what happens to each peer, to the routes and to
//! the connection table, and what is refused.

mod common;

use std::time::Duration;

use common::{config, udp_packet, Pair};
use rampart_node::{Disposition, DropReason, ReloadError};

/// gw a's configuration with `extra` inside its peer section (and any tables after it).
fn a_config(extra: &str) -> rampart_config::GatewayConfig {
    config(
        "a",
        "192.0.2.1",
        "192.0.2.2",
        "10.1.0.0/24",
        "10.2.0.0/24",
        extra,
    )
}

fn up() -> Pair {
    let mut pair = Pair::new("", "start_action = \"none\"");
    let t = pair.now + Duration::from_secs(3);
    pair.run_until(t);
    assert!(pair.established(0) && pair.established(1));
    pair
}

fn spis(pair: &Pair, side: usize) -> Vec<(String, String)> {
    pair.gw[side].status(pair.now).peers[0]
        .tunnels
        .iter()
        .map(|t| (t.spi_in.clone(), t.spi_out.clone()))
        .collect()
}

fn a_to_b(pair: &mut Pair, payload: &[u8]) -> Disposition {
    let p = udp_packet([10, 1, 0, 5], [10, 2, 0, 7], payload);
    pair.send_from_tun(0, &p)
}

#[test]
fn an_unchanged_file_touches_nothing() {
    let mut pair = up();
    let before = spis(&pair, 0);
    let report = pair.gw[0].reload(pair.now, a_config("")).unwrap();
    assert_eq!(report.unchanged, vec!["other".to_string()]);
    assert!(report.added.is_empty() && report.removed.is_empty());
    assert!(report.reestablished.is_empty() && report.updated.is_empty());
    pair.deliver();
    assert_eq!(spis(&pair, 0), before);
    a_to_b(&mut pair, b"still flowing");
    assert_eq!(pair.tun_out[1].len(), 1);
}

#[test]
fn a_setting_outside_the_sas_updates_the_peer_in_place() {
    let mut pair = up();
    let before = spis(&pair, 0);
    let report = pair.gw[0]
        .reload(pair.now, a_config("child_lifetime = \"50m\""))
        .unwrap();
    assert_eq!(report.updated, vec!["other".to_string()]);
    pair.deliver();
    assert_eq!(spis(&pair, 0), before, "the SAs stay");
    a_to_b(&mut pair, b"after the update");
    assert_eq!(pair.tun_out[1].len(), 1);
}

#[test]
fn an_sa_relevant_change_negotiates_again() {
    let mut pair = up();
    let before = spis(&pair, 0);
    let report = pair.gw[0]
        .reload(pair.now, a_config("esp_proposals = [\"chacha20poly1305\"]"))
        .unwrap();
    assert_eq!(report.reestablished, vec!["other".to_string()]);
    let t = pair.now + Duration::from_secs(3);
    pair.run_until(t);
    assert!(pair.established(0) && pair.established(1));
    let after = spis(&pair, 0);
    assert_ne!(after, before, "new SAs");
    assert_eq!(
        pair.gw[0].status(pair.now).peers[0].tunnels[0].algorithms,
        "chacha20poly1305"
    );
    a_to_b(&mut pair, b"on the new tunnel");
    assert_eq!(pair.tun_out[1].len(), 1);
}

#[test]
fn a_removed_peer_is_deleted_on_both_sides_and_its_routes_go() {
    let mut pair = up();
    let mut cfg = a_config("");
    cfg.peers.clear();
    let report = pair.gw[0].reload(pair.now, cfg).unwrap();
    assert_eq!(report.removed, vec!["other".to_string()]);
    let mut withdrawn = Vec::new();
    while let Some(out) = pair.gw[0].poll_output() {
        match out {
            rampart_node::Output::RouteDel { prefix } => withdrawn.push(prefix.to_string()),
            rampart_node::Output::SendUdp {
                local,
                remote,
                data,
            } => pair.wire.push((1, remote, local, data, false)),
            _ => {}
        }
    }
    assert_eq!(withdrawn, vec!["10.2.0.0/24".to_string()]);
    assert!(pair.gw[0].shutdown_routes().is_empty());
    pair.deliver();
    assert!(pair.gw[0].status(pair.now).peers.is_empty());
    let b = pair.gw[1].status(pair.now);
    assert!(
        b.peers[0].state != "established" && b.peers[0].tunnels.is_empty(),
        "the peer processed our Delete: {b:#?}"
    );
    assert_eq!(
        a_to_b(&mut pair, b"nowhere to go"),
        Disposition::Dropped(DropReason::NoPolicy)
    );
}

#[test]
fn keys_that_need_a_restart_refuse_the_whole_reload() {
    let mut pair = up();
    let before = spis(&pair, 0);
    let mut cfg = a_config("esp_proposals = [\"chacha20poly1305\"]");
    cfg.tunnel.mtu = 1300;
    cfg.gateway.ike_port = 5000;
    let err = pair.gw[0].reload(pair.now, cfg).unwrap_err();
    assert_eq!(
        err,
        ReloadError::NeedsRestart {
            keys: "gateway.ike_port, tunnel.mtu".into()
        }
    );
    pair.deliver();
    assert_eq!(spis(&pair, 0), before, "nothing changed");
}

#[test]
fn a_new_rule_base_removes_connections_it_refuses_and_keeps_the_others() {
    let rules = |blocked: bool| {
        let block = if blocked {
            "\n[[rule]]\nname = \"no-7002\"\nservice = [\"side\"]\naction = \"drop\"\n"
        } else {
            ""
        };
        format!(
            "\n[[service]]\nname = \"side\"\nprotocol = \"udp\"\nports = [7002]\n{block}\n[[rule]]\nname = \"all\"\naction = \"accept\"\n"
        )
    };
    let mut pair = Pair::new(&rules(false), "start_action = \"none\"");
    let t = pair.now + Duration::from_secs(3);
    pair.run_until(t);
    // Two UDP flows through a's inspection: to port 7001 and to port 7002.
    let flow = |port: u16, payload: &[u8]| {
        let mut p = udp_packet([10, 1, 0, 5], [10, 2, 0, 7], payload);
        p[22..24].copy_from_slice(&port.to_be_bytes());
        p[26..28].copy_from_slice(&[0, 0]); // no UDP checksum
        p
    };
    assert!(matches!(
        pair.send_from_tun(0, &flow(7001, b"one")),
        Disposition::SendRawEsp { .. } | Disposition::SendUdp { .. }
    ));
    assert!(matches!(
        pair.send_from_tun(0, &flow(7002, b"two")),
        Disposition::SendRawEsp { .. } | Disposition::SendUdp { .. }
    ));
    assert_eq!(pair.gw[0].conn_stats().active, 2);

    let report = pair.gw[0].reload(pair.now, a_config(&rules(true))).unwrap();
    assert_eq!(
        (report.connections_kept, report.connections_dropped),
        (1, 1)
    );
    assert_eq!(report.unchanged, vec!["other".to_string()]);
    assert!(matches!(
        pair.send_from_tun(0, &flow(7001, b"one again")),
        Disposition::SendRawEsp { .. } | Disposition::SendUdp { .. }
    ));
    assert_eq!(
        pair.send_from_tun(0, &flow(7002, b"two again")),
        Disposition::Dropped(DropReason::Firewall)
    );
}
