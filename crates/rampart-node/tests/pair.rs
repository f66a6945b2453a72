//! Two gateways back to back in virtual time: establishment, traffic, rekeys, dead peers.

mod common;

use std::time::Duration;

use common::{udp_packet, Pair};
use rampart_node::Disposition;

#[test]
fn tunnel_comes_up_and_carries_traffic_both_ways() {
    let mut pair = Pair::new("", "start_action = \"none\"");
    let t = pair.now + Duration::from_secs(3);
    pair.run_until(t);
    assert!(
        pair.established(0) && pair.established(1),
        "{:#?}",
        pair.gw[0].status(pair.now)
    );

    let ab = udp_packet([10, 1, 0, 5], [10, 2, 0, 7], b"hello from site a");
    pair.send_from_tun(0, &ab);
    assert_eq!(pair.tun_out[1], vec![ab.clone()]);
    let ba = udp_packet([10, 2, 0, 7], [10, 1, 0, 5], b"and back from b");
    pair.send_from_tun(1, &ba);
    assert_eq!(pair.tun_out[0], vec![ba]);

    let s = pair.gw[0].status(pair.now);
    assert_eq!(s.peers[0].tunnels[0].packets_out, 1);
    assert_eq!(s.peers[0].tunnels[0].packets_in, 1);
    assert_eq!(s.peers[0].tunnels[0].encapsulation, "esp");
}

#[test]
fn traffic_outside_the_domains_is_not_tunnelled() {
    let mut pair = Pair::new("", "");
    let t = pair.now + Duration::from_secs(3);
    pair.run_until(t);
    let stray = udp_packet([10, 9, 0, 5], [10, 2, 0, 7], b"not ours");
    assert!(matches!(
        pair.send_from_tun(0, &stray),
        Disposition::Dropped(_)
    ));
    assert!(pair.tun_out[1].is_empty());
}

#[test]
fn forced_encapsulation_uses_esp_in_udp() {
    let mut pair = Pair::new("encapsulation = \"force\"", "");
    let t = pair.now + Duration::from_secs(3);
    pair.run_until(t);
    assert!(pair.established(0));
    let ab = udp_packet([10, 1, 0, 5], [10, 2, 0, 7], b"udp encapsulated");
    let d = pair.send_from_tun(0, &ab);
    assert!(
        matches!(d, Disposition::SendUdp { remote, .. } if remote.port() == 4500),
        "{d:?}"
    );
    assert_eq!(pair.tun_out[1], vec![ab]);
}

#[test]
fn rekeys_keep_traffic_flowing() {
    let mut pair = Pair::new("child_lifetime = \"20s\"\nike_lifetime = \"45s\"", "");
    let mut t = pair.now;
    let mut spis = std::collections::BTreeSet::new();
    for i in 0..120u32 {
        t += Duration::from_millis(500);
        pair.run_until(t);
        if i < 4 {
            continue;
        }
        let p = udp_packet([10, 1, 0, 5], [10, 2, 0, 7], &i.to_be_bytes());
        pair.send_from_tun(0, &p);
        assert_eq!(pair.tun_out[1].last(), Some(&p), "packet {i} lost");
        for tunnel in &pair.gw[0].status(pair.now).peers[0].tunnels {
            spis.insert(tunnel.spi_out.clone());
        }
    }
    assert!(
        spis.len() >= 3,
        "expected CHILD SA rekeys, saw SPIs {spis:?}"
    );
}

#[test]
fn dead_peer_is_detected() {
    let mut pair = Pair::new("", "");
    let t = pair.now + Duration::from_secs(3);
    pair.run_until(t);
    assert!(pair.established(0));
    pair.drop_all = true;
    let t = pair.now + Duration::from_secs(10);
    pair.run_until(t);
    assert_eq!(pair.gw[0].status(pair.now).peers[0].tunnels.len(), 0);
    assert!(
        pair.logs[0].iter().any(|l| l.contains("is dead")),
        "no dead-peer log: {:#?}",
        pair.logs[0]
    );
    // The peer comes back: start_action = always re-initiates and the tunnel returns.
    pair.drop_all = false;
    let t = pair.now + Duration::from_secs(20);
    pair.run_until(t);
    assert!(pair.established(0) && pair.established(1));
}

#[test]
fn simultaneous_start_converges_to_one_tunnel() {
    let mut pair = Pair::new("", "");
    let t = pair.now + Duration::from_secs(5);
    pair.run_until(t);
    for side in 0..2 {
        let s = pair.gw[side].status(pair.now);
        assert_eq!(s.peers[0].tunnels.len(), 1, "side {side}: {s:#?}");
    }
    let ab = udp_packet([10, 1, 0, 5], [10, 2, 0, 7], b"one tunnel");
    pair.send_from_tun(0, &ab);
    assert_eq!(pair.tun_out[1], vec![ab]);
}

#[test]
fn byte_lifetime_rekeys_at_the_soft_limit_without_drops() {
    // 64 KiB soft limit, hard 10% above: the rekey must start at the packet that crosses the soft
    // limit, not at the next timer tick, or a fast sender runs into the hard limit.
    let mut pair = Pair::new(
        "child_lifetime_bytes = \"64KiB\"",
        "start_action = \"none\"",
    );
    let t = pair.now + Duration::from_secs(3);
    pair.run_until(t);
    assert!(pair.established(0));
    let first = pair.gw[0].status(pair.now).peers[0].tunnels[0]
        .spi_out
        .clone();
    let payload = vec![0x5a; 1000];
    // 200 packets of ~1 KB in the same instant: no timer runs in between.
    for _ in 0..200 {
        let p = udp_packet([10, 1, 0, 5], [10, 2, 0, 7], &payload);
        assert!(
            !matches!(pair.send_from_tun(0, &p), Disposition::Dropped(_)),
            "a packet was dropped around the byte-lifetime rekey"
        );
    }
    assert_eq!(pair.tun_out[1].len(), 200);
    let now_spi = pair.gw[0].status(pair.now).peers[0]
        .tunnels
        .iter()
        .map(|t| t.spi_out.clone())
        .collect::<Vec<_>>();
    assert!(
        !now_spi.contains(&first) || now_spi.len() > 1,
        "no rekey happened: {now_spi:?}"
    );
}

#[test]
fn keepalive_from_a_new_port_is_only_a_hint() {
    let mut pair = Pair::new("encapsulation = \"force\"", "");
    let t = pair.now + Duration::from_secs(3);
    pair.run_until(t);
    assert!(pair.established(1));
    let before = pair.gw[1].status(pair.now);
    let sa = before.peers[0].ike_sa.clone().unwrap();
    assert_eq!(sa.remote_endpoint, "192.0.2.1:4500");
    // A keepalive from A's IP on another port (nothing of A listens there).
    let spoof: std::net::SocketAddr = "192.0.2.1:31000".parse().unwrap();
    let local: std::net::SocketAddr = "192.0.2.2:4500".parse().unwrap();
    for _ in 0..3 {
        let mut buf = vec![0xffu8; 1];
        let d = pair.gw[1].handle_udp(pair.now, local, spoof, &mut buf, 0..1);
        assert_eq!(d, Disposition::Consumed);
    }
    // The check goes to the candidate, once (rate limit).
    let mut to_spoof = 0;
    while let Some(out) = pair.gw[1].poll_output() {
        if let rampart_node::Output::SendUdp { remote, data, .. } = &out {
            assert_eq!(*remote, spoof, "only the check leaves: {data:?}");
            to_spoof += 1;
        }
    }
    assert_eq!(to_spoof, 1);
    // Keepalives from the known address are no hints.
    let known: std::net::SocketAddr = "192.0.2.1:4500".parse().unwrap();
    let mut buf = vec![0xffu8; 1];
    pair.gw[1].handle_udp(pair.now, local, known, &mut buf, 0..1);
    let t = pair.now + Duration::from_secs(5);
    pair.run_until(t);
    let after = pair.gw[1].status(pair.now);
    let nat = after.nat;
    assert_eq!(
        (
            nat.hints,
            nat.checks_sent,
            nat.checks_rate_limited,
            nat.mappings_moved
        ),
        (3, 1, 2, 0)
    );
    assert_eq!(
        after.peers[0].ike_sa.as_ref().unwrap().remote_endpoint,
        "192.0.2.1:4500"
    );
    assert!(pair.established(0) && pair.established(1));
    let ab = udp_packet([10, 1, 0, 5], [10, 2, 0, 7], b"still flowing");
    pair.send_from_tun(0, &ab);
    assert_eq!(pair.tun_out[1], vec![ab]);
    let json = serde_json::to_value(&after).unwrap();
    for key in [
        "hints",
        "checks_sent",
        "checks_rate_limited",
        "mappings_moved",
        "local_mapping_changes",
    ] {
        assert!(json["nat"][key].is_u64(), "nat.{key} in {json}");
    }
}

#[test]
fn a_rekeyed_inbound_sa_decrypts_for_a_grace_period_after_its_delete() {
    // RFC 7296 2.8: packets the peer sealed with the old SA just before the rekey may arrive
    // after the Delete exchange (the rekey initiator reads the Delete response first).
    let mut pair = Pair::new(
        "child_lifetime_bytes = \"64KiB\"",
        "start_action = \"none\"",
    );
    let t = pair.now + Duration::from_secs(3);
    pair.run_until(t);
    assert!(pair.established(0) && pair.established(1));
    let old_in = pair.gw[0].status(pair.now).peers[0].tunnels[0]
        .spi_in
        .clone();
    // B seals two packets with the old SA; they are held on the wire.
    let early = udp_packet([10, 2, 0, 7], [10, 1, 0, 5], b"sealed before the rekey");
    let late = udp_packet([10, 2, 0, 7], [10, 1, 0, 5], b"arrives after the grace");
    let held_early = pair.seal_held(1, &early);
    let held_late = pair.seal_held(1, &late);
    // A crosses its soft byte limit: rekey, then the Delete exchange, all delivered at once.
    let payload = vec![0x5a; 1000];
    for _ in 0..80 {
        let p = udp_packet([10, 1, 0, 5], [10, 2, 0, 7], &payload);
        pair.send_from_tun(0, &p);
    }
    let tunnels = pair.gw[0].status(pair.now).peers[0].tunnels.clone();
    assert_eq!(
        tunnels.len(),
        1,
        "one live tunnel after the rekey: {tunnels:#?}"
    );
    assert_ne!(tunnels[0].spi_in, old_in, "no rekey happened");
    assert!(
        pair.logs[0]
            .iter()
            .any(|l| l.contains(&format!("in {old_in}")) && l.contains("removed")),
        "the old SA was not deleted: {:#?}",
        pair.logs[0]
    );
    // After the Delete response: the old inbound SA still opens B's packet.
    assert!(matches!(
        pair.deliver_held(held_early),
        Disposition::WriteTun { .. }
    ));
    assert_eq!(pair.tun_out[0], vec![early]);
    // Past the grace period the old SA is gone: unknown SPI.
    let t = pair.now + Duration::from_millis(1100);
    pair.run_until(t);
    assert_eq!(
        pair.deliver_held(held_late),
        Disposition::Dropped(rampart_node::DropReason::UnknownSpi)
    );
    assert_eq!(pair.tun_out[0].len(), 1);
    let counters = pair.gw[0].status(pair.now).counters;
    assert_eq!(counters.dropped_unknown_spi, 1);
    // Traffic on the new SA flows both ways.
    let ba = udp_packet([10, 2, 0, 7], [10, 1, 0, 5], b"on the new SA");
    pair.send_from_tun(1, &ba);
    assert_eq!(pair.tun_out[0].last(), Some(&ba));
}

#[test]
fn a_retired_sa_is_unknown_at_its_deadline_even_before_the_timer_runs() {
    let mut pair = Pair::new(
        "child_lifetime_bytes = \"64KiB\"",
        "start_action = \"none\"",
    );
    let t = pair.now + Duration::from_secs(3);
    pair.run_until(t);
    let p = udp_packet([10, 2, 0, 7], [10, 1, 0, 5], b"old SA");
    let held = pair.seal_held(1, &p);
    let payload = vec![0x5a; 1000];
    for _ in 0..80 {
        let p = udp_packet([10, 1, 0, 5], [10, 2, 0, 7], &payload);
        pair.send_from_tun(0, &p);
    }
    // No timer runs: the packet comes exactly at the deadline.
    pair.now += Duration::from_secs(1);
    assert_eq!(
        pair.deliver_held(held),
        Disposition::Dropped(rampart_node::DropReason::UnknownSpi)
    );
}
