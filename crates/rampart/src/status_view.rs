//! The human-readable form of a [`GatewayStatus`].

use std::fmt::Write;

use rampart_node::{DataPlaneCounters, GatewayStatus, IkeSaInfo, PeerStatus, TunnelStatus};

/// Renders the status as indented blocks: the gateway, then per peer its IKE SA and tunnels.
pub fn render(status: &GatewayStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "gateway {}  up {}  peers {}",
        status.name,
        duration(status.uptime_secs),
        status.peers.len()
    );
    counters(&mut out, &status.counters);
    let d = &status.ike_defence;
    let _ = writeln!(
        out,
        "  IKE_SA_INIT  half-open {}  cookies sent {}  accepted {}  invalid {}  per-source drops {}",
        d.half_open, d.cookies_sent, d.cookies_accepted, d.cookies_invalid, d.per_source_drops
    );
    let b = &status.batching;
    let per = |packets: u64, calls: u64| {
        if calls == 0 {
            "-".to_owned()
        } else {
            format!("{:.1}", packets as f64 / calls as f64)
        }
    };
    let _ = writeln!(
        out,
        "  batching  TUN reads {} ({} packets each)  TUN writes {} ({} each)  UDP sends {} ({} each)  UDP receives {} ({} each)  raw ESP skipped {}",
        b.tun_reads,
        per(b.tun_read_packets, b.tun_reads),
        b.tun_writes,
        per(b.tun_write_packets, b.tun_writes),
        b.udp_sends,
        per(b.udp_send_datagrams, b.udp_sends),
        b.udp_receives,
        per(b.udp_receive_datagrams, b.udp_receives),
        b.raw_esp_skipped
    );
    let (n, i) = (&status.nat, &status.icmp);
    if n.hints + n.mappings_moved + n.local_mapping_changes + i.icmp_errors_received > 0 {
        let _ = writeln!(
            out,
            "  NAT mappings  hints {}  checks {} (rate-limited {})  peers moved {}  ours moved {}  ICMP errors {} (hints {})",
            n.hints,
            n.checks_sent,
            n.checks_rate_limited,
            n.mappings_moved,
            n.local_mapping_changes,
            i.icmp_errors_received,
            i.icmp_hints
        );
    }
    let r = &status.reloads;
    if r.applied + r.refused > 0 {
        let _ = writeln!(
            out,
            "  reloads  applied {}  refused {}{}",
            r.applied,
            r.refused,
            r.last_error
                .as_deref()
                .map(|e| format!("  last refused: {}", e.lines().next().unwrap_or_default()))
                .unwrap_or_default()
        );
    }
    for peer in &status.peers {
        out.push('\n');
        peer_block(&mut out, peer);
    }
    out
}

fn counters(out: &mut String, c: &DataPlaneCounters) {
    let _ = writeln!(
        out,
        "  packets  tun in {}  tun out {}  esp in {}  esp out {}",
        c.tun_packets_in, c.tun_packets_out, c.esp_packets_in, c.esp_packets_out
    );
    let _ = writeln!(
        out,
        "  dropped  no policy {}  no SA {}  unknown SPI {}  auth {}  replay {}  malformed {}  policy mismatch {}  firewall {}",
        c.dropped_no_policy,
        c.dropped_no_sa,
        c.dropped_unknown_spi,
        c.dropped_auth,
        c.dropped_replay,
        c.dropped_malformed,
        c.dropped_policy_mismatch,
        c.dropped_firewall
    );
    // Seal refusals are part of the drops above; their reasons only when there are any.
    let seal = [
        c.seal_expired,
        c.seal_sequence_exhausted,
        c.seal_no_room,
        c.seal_crypto,
    ];
    if seal.iter().any(|&n| n > 0) {
        let _ = writeln!(
            out,
            "  seal refused  expired {}  sequence exhausted {}  no room {}  cipher {}",
            seal[0], seal[1], seal[2], seal[3]
        );
    }
}

fn peer_block(out: &mut String, peer: &PeerStatus) {
    let _ = writeln!(
        out,
        "peer {}  {}  {} -> {}",
        peer.name, peer.state, peer.local, peer.remote
    );
    match &peer.ike_sa {
        Some(sa) => ike_sa(out, sa),
        None => out.push_str("  no IKE SA\n"),
    }
    if peer.tunnels.is_empty() {
        out.push_str("  no tunnels\n");
    }
    for t in &peer.tunnels {
        tunnel(out, t);
    }
}

fn ike_sa(out: &mut String, sa: &IkeSaInfo) {
    let role = if sa.initiator {
        "initiator"
    } else {
        "responder"
    };
    let _ = writeln!(
        out,
        "  IKE SA #{}  {role}  {}  spi_i {}  spi_r {}",
        sa.id, sa.algorithms, sa.spi_i, sa.spi_r
    );
    let nat = match (sa.nat_local, sa.nat_remote) {
        (false, false) => "none",
        (true, false) => "local side",
        (false, true) => "remote side",
        (true, true) => "both sides",
    };
    let _ = writeln!(
        out,
        "    ids {} <-> {}  NAT {nat}  established {} ago  rekey in {}",
        sa.local_id,
        sa.remote_id,
        duration(sa.established_secs),
        rekey(sa.rekey_in_secs)
    );
}

fn tunnel(out: &mut String, t: &TunnelStatus) {
    let _ = writeln!(
        out,
        "  tunnel #{}  {}  {}  spi in {}  out {}",
        t.id, t.algorithms, t.encapsulation, t.spi_in, t.spi_out
    );
    let _ = writeln!(
        out,
        "    {} === {}",
        selectors(&t.local_ts),
        selectors(&t.remote_ts)
    );
    let _ = writeln!(
        out,
        "    in {} / {} packets  out {} / {} packets  replay drops {}  auth failures {}",
        bytes(t.bytes_in),
        t.packets_in,
        bytes(t.bytes_out),
        t.packets_out,
        t.replay_drops,
        t.auth_failures
    );
    let _ = writeln!(
        out,
        "    established {} ago  rekey in {}",
        duration(t.established_secs),
        rekey(t.rekey_in_secs)
    );
}

fn selectors(ts: &[String]) -> String {
    if ts.is_empty() {
        "(none)".into()
    } else {
        ts.join(", ")
    }
}

fn rekey(secs: Option<u64>) -> String {
    secs.map_or_else(|| "-".into(), duration)
}

/// `3d4h`, `1h2m3s`, `45s`: the non-zero units, largest first.
fn duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = secs;
    for (unit, len) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if rest >= len {
            let _ = write!(out, "{}{unit}", rest / len);
            rest %= len;
        }
    }
    out
}

/// Bytes with a binary unit and one decimal above 1 KiB: `512 B`, `1.5 KiB`, `3.2 GiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(3723), "1h2m3s");
        assert_eq!(duration(90_000), "1d1h");
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 << 30), "5.0 GiB");
        assert_eq!(bytes(u64::MAX), "16384.0 PiB");
    }

    #[test]
    fn peer_without_sas() {
        let status = GatewayStatus {
            name: "gw".into(),
            uptime_secs: 5,
            peers: vec![PeerStatus {
                name: "b".into(),
                local: "192.0.2.1".into(),
                remote: "192.0.2.2".into(),
                state: "connecting".into(),
                ike_sa: None,
                tunnels: vec![],
            }],
            counters: DataPlaneCounters::default(),
            ike_defence: rampart_node::IkeDefenceCounters {
                cookies_sent: 7,
                ..Default::default()
            },
            batching: Default::default(),
            reloads: Default::default(),
            nat: Default::default(),
            icmp: Default::default(),
            cluster: None,
            sync: None,
        };
        let text = render(&status);
        assert!(text.starts_with("gateway gw  up 5s  peers 1\n"), "{text}");
        assert!(
            text.contains("  IKE_SA_INIT  half-open 0  cookies sent 7  accepted 0  invalid 0"),
            "{text}"
        );
        assert!(
            text.contains(
                "\npeer b  connecting  192.0.2.1 -> 192.0.2.2\n  no IKE SA\n  no tunnels\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn seal_refusals_show_by_reason_only_when_there_are_any() {
        let mut out = String::new();
        counters(&mut out, &DataPlaneCounters::default());
        assert!(!out.contains("seal refused"), "{out}");
        let c = DataPlaneCounters {
            seal_sequence_exhausted: 2,
            seal_no_room: 1,
            ..Default::default()
        };
        out.clear();
        counters(&mut out, &c);
        assert!(
            out.contains("  seal refused  expired 0  sequence exhausted 2  no room 1  cipher 0\n"),
            "{out}"
        );
    }
}
