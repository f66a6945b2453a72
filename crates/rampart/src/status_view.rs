//! The human-readable form of a [`GatewayStatus`].

use std::fmt::Write;

use rampart_cluster::{ClusterStatus, MemberState, SyncStats};

use crate::ls_view;
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
        "    ids {} <-> {}  NAT {nat}{}  established {} ago  rekey in {}",
        sa.local_id,
        sa.remote_id,
        if sa.mobike { "  MOBIKE" } else { "" },
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
pub(crate) fn duration(secs: u64) -> String {
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
pub(crate) fn bytes(n: u64) -> String {
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

/// The cluster section of `rampart status`: the `cluster` and `sync` members of the status
/// document, read from the JSON so that this works whatever fields `GatewayStatus` has.
pub fn cluster_section(document: &serde_json::Value) -> String {
    let mut out = String::new();
    let cluster = document
        .get("cluster")
        .and_then(|v| serde_json::from_value::<ClusterStatus>(v.clone()).ok());
    let sync = document
        .get("sync")
        .and_then(|v| serde_json::from_value::<SyncStats>(v.clone()).ok());
    if let Some(c) = &cluster {
        out.push('\n');
        cluster_status(&mut out, c);
        let member = document
            .get("cluster")
            .and_then(ls_view::member_counters_of);
        if let Some(m) = &member {
            ls_view::member_counters(&mut out, m);
        }
        if let Some(n) = document.get("replicated_sas").and_then(|v| v.as_u64()) {
            let _ = write!(out, "\nreplicated IKE SAs {n}");
        }
    }
    if let Some(s) = &sync {
        out.push('\n');
        sync_summary(&mut out, s);
    }
    out
}

/// The `forwarded` object of a sync-stats document (Load Sharing), if it has a readable one.
pub fn forwarded_of(sync: &serde_json::Value) -> Option<ls_view::ForwardedStats> {
    sync.get("forwarded")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

pub fn state_name(s: MemberState) -> &'static str {
    match s {
        MemberState::Init => "init",
        MemberState::Syncing => "syncing",
        MemberState::Standby => "standby",
        MemberState::Active => "active",
        MemberState::Down => "down",
    }
}

/// `rampart cluster status`: this member, the members table and the virtual addresses.
pub fn cluster_status(out: &mut String, c: &ClusterStatus) {
    let _ = writeln!(
        out,
        "cluster {}  {}  member {}  {}{}  failovers {}",
        c.name,
        c.mode,
        c.member_id,
        state_name(c.state),
        if c.reason.is_empty() {
            String::new()
        } else {
            format!(" ({})", c.reason)
        },
        c.failovers
    );
    let _ = writeln!(
        out,
        "  {:<7} {:<40} {:>8}  {:<8} {:<5}  {:<14}  INTERFACES DOWN",
        "MEMBER", "SYNC ADDRESS", "PRIORITY", "STATE", "ALIVE", "LAST HEARTBEAT"
    );
    for m in &c.members {
        let id = if m.local {
            format!("{} (me)", m.id)
        } else {
            m.id.to_string()
        };
        let heard = if m.local {
            "-".to_string()
        } else {
            m.last_heartbeat_ms
                .map_or_else(|| "never".to_string(), |ms| format!("{} ago", millis(ms)))
        };
        let down = if m.interfaces_down.is_empty() {
            "-".to_string()
        } else {
            m.interfaces_down.join(", ")
        };
        let _ = writeln!(
            out,
            "  {:<7} {:<40} {:>8}  {:<8} {:<5}  {:<14}  {}",
            id,
            m.sync_address,
            m.priority,
            state_name(m.state),
            if m.alive { "yes" } else { "no" },
            heard,
            down
        );
    }
    if c.virtual_addresses.is_empty() {
        out.push_str("  no virtual addresses\n");
    } else {
        let _ = writeln!(out, "  {:<43} {:<15} OWNER", "VIRTUAL ADDRESS", "INTERFACE");
        for v in &c.virtual_addresses {
            let owner = match v.owner {
                None => "none".to_string(),
                Some(id) if id == c.member_id => format!("{id} (me)"),
                Some(id) => id.to_string(),
            };
            let _ = writeln!(out, "  {:<43} {:<15} {}", v.address, v.interface, owner);
        }
    }
    if let Some(ls) = &c.load_sharing {
        ls_view::load_sharing_status(out, ls, c.member_id);
    }
}

/// `rampart cluster sync-stats`: every counter on its own line, one row per peer member, then
/// the Load Sharing parts the gateway sent (Flush-and-Ack, update requests, `forwarded`, the
/// sync networks).
pub fn sync_stats(out: &mut String, s: &SyncStats, forwarded: Option<&ls_view::ForwardedStats>) {
    sync_counters(out, s);
    if let Some(fa) = &s.flush_ack {
        ls_view::flush_ack(out, fa);
    }
    if let Some(u) = &s.update_requests {
        ls_view::update_requests(out, u, s.update_queries_answered, s.update_queries_dropped);
    }
    if let Some(f) = forwarded {
        ls_view::forwarded(out, f);
    }
    ls_view::links(out, &s.links);
}

/// The counters and the peer table of [`sync_stats`].
fn sync_counters(out: &mut String, s: &SyncStats) {
    let _ = writeln!(out, "sync  member {}", s.member_id);
    let rows: [(&str, String); 20] = [
        ("records sent", s.records_sent.to_string()),
        ("records received", s.records_received.to_string()),
        ("records applied", s.records_applied.to_string()),
        ("datagrams sent", s.datagrams_sent.to_string()),
        ("datagrams received", s.datagrams_received.to_string()),
        ("bytes sent", bytes(s.bytes_sent)),
        ("bytes received", bytes(s.bytes_received)),
        ("send queue", s.send_queue.to_string()),
        ("retransmit queue", s.retransmit_queue.to_string()),
        ("retransmitted", s.retransmitted.to_string()),
        ("NACKs sent", s.nacks_sent.to_string()),
        ("NACKs received", s.nacks_received.to_string()),
        ("lost (resynced)", s.lost.to_string()),
        ("resyncs", s.resyncs.to_string()),
        ("full syncs served", s.full_syncs_served.to_string()),
        ("full syncs received", s.full_syncs_received.to_string()),
        ("dropped, auth failed", s.dropped_auth.to_string()),
        ("dropped, replayed", s.dropped_replay.to_string()),
        ("dropped, malformed", s.dropped_malformed.to_string()),
        (
            "dropped, unknown member",
            s.dropped_unknown_member.to_string(),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(out, "  {k:<24} {v}");
    }
    if s.peers.is_empty() {
        out.push_str("  no peer members\n");
        return;
    }
    let _ = writeln!(
        out,
        "  {:<6} {:>12} {:>12} {:>8} {:>10} {:>10} {:>13} {:>6} {:>7}",
        "PEER",
        "ACKED SEQ",
        "RECEIVED SEQ",
        "REORDER",
        "NACKS SENT",
        "NACKS RECV",
        "RETRANSMITTED",
        "LOST",
        "RESYNCS"
    );
    for p in &s.peers {
        let _ = writeln!(
            out,
            "  {:<6} {:>12} {:>12} {:>8} {:>10} {:>10} {:>13} {:>6} {:>7}",
            p.id,
            p.acked_seq,
            p.received_seq,
            p.reorder_queue,
            p.nacks_sent,
            p.nacks_received,
            p.retransmitted,
            p.lost,
            p.resyncs
        );
    }
}

/// The sync part of `rampart status`: one line (`rampart cluster sync-stats` has the rest).
fn sync_summary(out: &mut String, s: &SyncStats) {
    let dropped =
        s.dropped_auth + s.dropped_replay + s.dropped_malformed + s.dropped_unknown_member;
    let _ = writeln!(
        out,
        "sync  records sent {}  received {}  applied {}  queues {}/{}  retransmitted {}  lost {}  resyncs {}  full syncs {}/{}  refused datagrams {}",
        s.records_sent,
        s.records_received,
        s.records_applied,
        s.send_queue,
        s.retransmit_queue,
        s.retransmitted,
        s.lost,
        s.resyncs,
        s.full_syncs_served,
        s.full_syncs_received,
        dropped
    );
    if let Some(fa) = &s.flush_ack {
        let p99 = fa
            .hold_time
            .quantile_us(0.99)
            .map_or_else(|| "-".to_string(), ls_view::micros);
        let _ = writeln!(
            out,
            "flush-and-ack  held {}  holding {}  timeouts {}  members declared down {}  hold p99 {}",
            fa.held, fa.holding, fa.timeouts, fa.members_declared_down, p99
        );
    }
}

/// `40ms`, `2.3s`, `1m5s`.
fn millis(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => duration(ms / 1000),
    }
}

/// The MEP section of `rampart status`: the `mep` member of the status document, when the
/// gateway has one (`null` or absent: nothing).
pub fn mep_section(document: &serde_json::Value) -> String {
    match document.get("mep") {
        Some(mep) if mep.get("groups").is_some_and(|g| g.is_array()) => {
            let mut out = String::from("\n");
            mep_status(&mut out, mep);
            out
        }
        _ => String::new(),
    }
}

/// `rampart mep status`: one block per group, a table row per entry point, then the probe
/// responder. Reads the JSON of `rampart_mep::MepStatus`; a missing field shows as `-`.
pub fn mep_status(out: &mut String, mep: &serde_json::Value) {
    use serde_json::Value;
    let text = |v: &Value, k: &str| match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => "-".to_owned(),
    };
    let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64);
    let rtt = |us: Option<u64>| match us {
        None => "-".to_owned(),
        Some(us) if us < 10_000 => format!("{:.2}ms", us as f64 / 1000.0),
        Some(us) => format!("{}ms", us / 1000),
    };
    let rejected = |v: &Value| -> u64 {
        v.get("rejected")
            .and_then(Value::as_object)
            .map_or(0, |o| o.values().filter_map(Value::as_u64).sum())
    };
    let groups = mep
        .get("groups")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if groups.is_empty() {
        let _ = writeln!(out, "mep  no entry-point group");
    }
    for (i, g) in groups.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "group {}  {}  method {}  tie-break {}  current {}  resolutions {} (none responding {})  sticky flows {} (table full {})",
            text(g, "name"),
            text(g, "kind"),
            text(g, "method"),
            text(g, "tie_break"),
            text(g, "current"),
            text(g, "resolutions"),
            text(g, "resolutions_none_responding"),
            text(g, "sticky_flows"),
            text(g, "sticky_full"),
        );
        let _ = writeln!(
            out,
            "  {:<16} {:<40} {:<12} {:<7} {:<9} {:>9} {:>9} {:>6} {:>8} {:>7} {:>8} {:>6}",
            "ENTRY POINT",
            "ADDRESS",
            "PROBING",
            "STATE",
            "LEVEL",
            "LAST RTT",
            "SRTT",
            "MISSES",
            "CHOSEN",
            "STICKY",
            "REJECTED",
            "TUNNEL"
        );
        let eps = g
            .get("entry_points")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for ep in eps {
            let tunnel = match ep.get("tunnel_up").and_then(Value::as_bool) {
                Some(true) => "up",
                Some(false) => "down",
                None => "-",
            };
            let _ = writeln!(
                out,
                "  {:<16} {:<40} {:<12} {:<7} {:<9} {:>9} {:>9} {:>6} {:>8} {:>7} {:>8} {:>6}",
                text(ep, "name"),
                text(ep, "address"),
                text(ep, "probing_with"),
                text(ep, "state"),
                text(ep, "level"),
                rtt(num(ep, "last_rtt_us")),
                rtt(num(ep, "srtt_us")),
                text(ep, "misses"),
                text(ep, "chosen"),
                text(ep, "sticky_flows"),
                rejected(ep),
                tunnel,
            );
        }
    }
    if let Some(r) = mep.get("responder").filter(|r| r.is_object()) {
        let _ = writeln!(
            out,
            "probe responder  port {}  satellites {}  requests {}  replies {}  rejected {}",
            text(r, "port"),
            text(r, "satellites"),
            text(r, "requests"),
            text(r, "replies"),
            rejected(r),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_cluster::{MemberStatus, PeerSyncStats, VipStatus};

    fn two_members() -> ClusterStatus {
        let member = |id, local, state, alive, heard, down: &[&str]| MemberStatus {
            id,
            sync_address: format!("10.255.0.{id}:8116"),
            priority: if id == 1 { 200 } else { 100 },
            state,
            alive,
            last_heartbeat_ms: heard,
            interfaces_down: down.iter().map(|s| s.to_string()).collect(),
            local,
        };
        ClusterStatus {
            name: "hq".into(),
            mode: "high-availability".into(),
            member_id: 2,
            state: MemberState::Active,
            reason: "member 1 dead".into(),
            members: vec![
                member(1, false, MemberState::Down, false, Some(1_500), &["eth1"]),
                member(2, true, MemberState::Active, true, None, &[]),
                member(3, false, MemberState::Init, false, None, &[]),
            ],
            virtual_addresses: vec![
                VipStatus {
                    interface: "eth0".into(),
                    address: "10.1.0.1/24".into(),
                    owner: Some(2),
                },
                VipStatus {
                    interface: "eth1".into(),
                    address: "192.0.2.1/24".into(),
                    owner: None,
                },
            ],
            failovers: 1,
            load_sharing: None,
        }
    }

    #[test]
    fn cluster_table() {
        let mut out = String::new();
        cluster_status(&mut out, &two_members());
        let expected = "\
cluster hq  high-availability  member 2  active (member 1 dead)  failovers 1
  MEMBER  SYNC ADDRESS                             PRIORITY  STATE    ALIVE  LAST HEARTBEAT  INTERFACES DOWN
  1       10.255.0.1:8116                               200  down     no     1.5s ago        eth1
  2 (me)  10.255.0.2:8116                               100  active   yes    -               -
  3       10.255.0.3:8116                               100  init     no     never           -
  VIRTUAL ADDRESS                             INTERFACE       OWNER
  10.1.0.1/24                                 eth0            2 (me)
  192.0.2.1/24                                eth1            none
";
        assert_eq!(out, expected, "\n{out}");
    }

    #[test]
    fn sync_table() {
        let stats = SyncStats {
            member_id: 1,
            records_sent: 1000,
            bytes_sent: 2048,
            lost: 3,
            dropped_auth: 5,
            peers: vec![
                PeerSyncStats {
                    id: 2,
                    acked_seq: 1000,
                    received_seq: 7,
                    retransmitted: 12,
                    ..Default::default()
                },
                PeerSyncStats {
                    id: 3,
                    lost: 3,
                    resyncs: 1,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let mut out = String::new();
        sync_stats(&mut out, &stats, None);
        assert!(
            out.starts_with("sync  member 1\n  records sent             1000\n"),
            "{out}"
        );
        assert!(
            out.contains("\n  bytes sent               2.0 KiB\n"),
            "{out}"
        );
        assert!(out.contains("\n  lost (resynced)          3\n"), "{out}");
        assert!(out.contains("\n  dropped, auth failed     5\n"), "{out}");
        assert!(
            out.ends_with(
                "  PEER      ACKED SEQ RECEIVED SEQ  REORDER NACKS SENT NACKS RECV RETRANSMITTED   LOST RESYNCS
  2              1000            7        0          0          0            12      0       0
  3                 0            0        0          0          0             0      3       1
"
            ),
            "{out}"
        );
        let mut out = String::new();
        sync_stats(&mut out, &SyncStats::default(), None);
        assert!(out.ends_with("  no peer members\n"), "{out}");
    }

    #[test]
    fn status_document_with_and_without_a_cluster() {
        assert_eq!(cluster_section(&serde_json::json!({ "name": "gw" })), "");
        assert_eq!(
            cluster_section(&serde_json::json!({ "cluster": null, "sync": null })),
            ""
        );
        let doc = serde_json::json!({
            "name": "gw",
            "cluster": two_members(),
            "sync": SyncStats { records_sent: 9, ..Default::default() },
            "replicated_sas": 4,
        });
        let text = cluster_section(&doc);
        assert!(text.contains("\nreplicated IKE SAs 4"), "{text}");
        assert!(
            text.starts_with("\ncluster hq  high-availability  member 2"),
            "{text}"
        );
        assert!(
            text.contains("\nsync  records sent 9  received 0"),
            "{text}"
        );
        // A garbled cluster member is left out rather than failing `rampart status`.
        let text = cluster_section(&serde_json::json!({ "cluster": { "name": 3 } }));
        assert_eq!(text, "");
        assert_eq!(millis(40), "40ms");
        assert_eq!(millis(65_000), "1m5s");
    }

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
            mep: None,
            remote_access: None,
            sync: None,
            replicated_sas: None,
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
    fn mep() -> rampart_mep::MepStatus {
        use rampart_mep::*;
        let ep = |name: &str, state, level: &str, rtt: Option<u64>, tunnel_up| EntryPointStatus {
            name: name.into(),
            address: format!("192.0.2.{}", name.len() + 10),
            probe_mode: ProbeMode::Auto,
            probing_with: "rampart".into(),
            state,
            level: level.into(),
            last_rtt_us: rtt,
            srtt_us: rtt,
            misses: if state == ProbeState::Down { 3 } else { 0 },
            probes_sent: 10,
            replies: 7,
            probes_missed: 3,
            rejected: RejectCounters {
                forged: 2,
                replayed: 1,
                ..RejectCounters::default()
            },
            ups: 1,
            downs: 0,
            since_change_ms: Some(1000),
            chosen: 4,
            sticky_flows: 2,
            tunnel_up,
        };
        MepStatus {
            groups: vec![GroupStatus {
                name: "hq".into(),
                kind: GroupKind::Explicit,
                method: Method::PriorityList,
                tie_break: TieBreak::Random,
                current: Some("m1".into()),
                resolutions: 8,
                sticky_flows: 4,
                resolutions_none_responding: 1,
                sticky_full: 0,
                entry_points: vec![
                    ep("m1", ProbeState::Up, "primary", Some(1250), true),
                    ep("m22", ProbeState::Down, "secondary", None, false),
                ],
            }],
            responder: Some(ResponderStatus {
                port: 259,
                satellites: 2,
                requests: 30,
                replies: 29,
                rejected: RejectCounters {
                    rate_limited: 1,
                    ..RejectCounters::default()
                },
            }),
        }
    }

    #[test]
    fn mep_table() {
        let mut out = String::new();
        mep_status(&mut out, &serde_json::to_value(mep()).unwrap());
        let expected = "\
group hq  explicit  method priority-list  tie-break random  current m1  resolutions 8 (none responding 1)  sticky flows 4 (table full 0)
  ENTRY POINT      ADDRESS                                  PROBING      STATE   LEVEL      LAST RTT      SRTT MISSES   CHOSEN  STICKY REJECTED TUNNEL
  m1               192.0.2.12                               rampart      up      primary      1.25ms    1.25ms      0        4       2        3     up
  m22              192.0.2.13                               rampart      down    secondary         -         -      3        4       2        3   down
probe responder  port 259  satellites 2  requests 30  replies 29  rejected 1
";
        assert_eq!(out, expected, "\n{out}");
    }

    #[test]
    fn status_document_with_and_without_mep() {
        assert_eq!(mep_section(&serde_json::json!({ "name": "gw" })), "");
        assert_eq!(mep_section(&serde_json::json!({ "mep": null })), "");
        let text = mep_section(&serde_json::json!({ "mep": mep() }));
        assert!(text.starts_with("\ngroup hq  explicit"), "{text}");
        assert!(text.contains("probe responder  port 259"), "{text}");
    }
}
