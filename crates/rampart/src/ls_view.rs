//! The Load Sharing parts of `rampart cluster status` and `rampart cluster sync-stats`: the
//! ownership map with the pivot, Flush-and-Ack, update requests, forwarded packets and the
//! sync networks. Each function appends lines to `out`; nothing here fails, a counter the
//! gateway did not send shows as absent, never as zero.

use std::fmt::Write;

use rampart_cluster::{
    Distribution, FlushAckStats, LinkStats, LoadSharingStatus, MemberId, UpdateRequestStats,
};
use rampart_node::{ForwardCounts, LoadSharingStats};
use serde::{Deserialize, Serialize};

use crate::status_view::bytes;

/// Packets moved between members to the owner of their flow or SA: the `forwarded` object the
/// gateway adds to its `cluster sync-stats` answer in Load Sharing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardedStats {
    pub sent: u64,
    pub received: u64,
    pub dropped: u64,
}

pub fn distribution_name(d: Distribution) -> &'static str {
    match d {
        Distribution::Routed => "routed",
        Distribution::Unicast => "unicast",
    }
}

/// The Load Sharing block of `rampart cluster status`: one summary line, then the ownership
/// map (every configured member: up, expected share, the flows, packets and bytes counted).
pub fn load_sharing_status(out: &mut String, ls: &LoadSharingStatus, me: MemberId) {
    let pivot = match ls.pivot {
        None => "none".to_string(),
        Some(id) if id == me => format!("{id} (me)"),
        Some(id) => id.to_string(),
    };
    let _ = writeln!(
        out,
        "  load sharing  distribution {}  pivot {}  ownership epoch {}  forwarded sent {}  received {}  dropped {}",
        distribution_name(ls.distribution),
        pivot,
        ls.ownership.epoch,
        ls.forwarded_sent,
        ls.forwarded_received,
        ls.forwarded_dropped
    );
    let _ = writeln!(
        out,
        "  {:<7} {:<4} {:>6} {:>12} {:>14} {:>12}",
        "MEMBER", "UP", "SHARE", "FLOWS", "PACKETS", "BYTES"
    );
    for m in &ls.ownership.members {
        let id = if m.member == me {
            format!("{} (me)", m.member)
        } else {
            m.member.to_string()
        };
        let _ = writeln!(
            out,
            "  {:<7} {:<4} {:>6} {:>12} {:>14} {:>12}",
            id,
            if m.up { "yes" } else { "no" },
            permille(m.expected_permille),
            m.flows,
            m.packets,
            bytes(m.bytes)
        );
    }
}

/// This member's own Load Sharing counters (the `load_sharing.member` object of the gateway's
/// `cluster status` answer), two lines under the ownership map.
pub fn member_counters(out: &mut String, m: &LoadSharingStats) {
    let yes = |b: bool| if b { "yes" } else { "no" };
    let _ = writeln!(
        out,
        "  this member  carrying {}  pivot {}  held {} (pool full {})  released {} (dropped {})  orphans {} (found {}, not found {}, pool full {})  answered found {} unknown {}  adoptions {}  kept now {}  routes announced {}",
        yes(m.carrying),
        yes(m.pivot),
        m.held,
        m.hold_pool_full,
        m.released,
        m.released_dropped,
        m.orphans,
        m.orphans_found,
        m.orphans_not_found,
        m.orphan_pool_full,
        m.answered_found,
        m.answered_unknown,
        m.adoptions,
        m.kept_now,
        m.routes_announced
    );
    let kinds = |f: &ForwardCounts| {
        format!(
            "udp {}  raw esp {}  inspected {}  tun {}",
            f.udp, f.raw_esp, f.inspected, f.tun
        )
    };
    let _ = writeln!(
        out,
        "  forwarded out  {}  in  {} (dropped {})  inspected out to remote-access clients' owners {}",
        kinds(&m.forwarded_out),
        kinds(&m.forwarded_in),
        m.forwarded_in_dropped,
        m.forwarded_to_client
    );
}

/// The `load_sharing.member` object of a `cluster status` document, if it has a readable one.
pub fn member_counters_of(cluster: &serde_json::Value) -> Option<LoadSharingStats> {
    cluster
        .get("load_sharing")
        .and_then(|ls| ls.get("member"))
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// `333` per mille as `33.3%`.
fn permille(p: u32) -> String {
    format!("{}.{}%", p / 10, p % 10)
}

/// A hold time in microseconds: `350us`, `1.5ms`, `214ms`, `1.20s`.
pub fn micros(us: u64) -> String {
    match us {
        0..=999 => format!("{us}us"),
        1_000..=9_999 => format!("{:.1}ms", us as f64 / 1000.0),
        10_000..=999_999 => format!("{}ms", us / 1000),
        _ => format!("{:.2}s", us as f64 / 1_000_000.0),
    }
}

/// Flush-and-Ack counters, with the hold time's p50 and p99 read from the histogram (the upper
/// bound of the bucket that holds the quantile).
pub fn flush_ack(out: &mut String, fa: &FlushAckStats) {
    out.push_str("  flush-and-ack\n");
    let rows: [(&str, u64); 10] = [
        ("held", fa.held),
        ("holding", fa.holding),
        ("released, acked", fa.released_acked),
        (
            "released, nothing to wait for",
            fa.released_nothing_to_wait_for,
        ),
        ("released, timeout", fa.released_timeout),
        ("released, table full", fa.released_full),
        ("dropped, timeout", fa.dropped_timeout),
        ("timeouts", fa.timeouts),
        ("members declared down", fa.members_declared_down),
        ("flushes", fa.flushes),
    ];
    for (k, v) in rows {
        let _ = writeln!(out, "    {k:<30} {v}");
    }
    let h = &fa.hold_time;
    let quantile = |q: f64| h.quantile_us(q).map_or_else(|| "-".to_string(), micros);
    let max = if h.count == 0 {
        "-".to_string()
    } else {
        micros(h.max_us)
    };
    let _ = writeln!(
        out,
        "    {:<30} p50 {}  p99 {}  max {}  ({} holds)",
        "hold time",
        quantile(0.5),
        quantile(0.99),
        max,
        h.count
    );
}

/// Update request counters: what this member asked, and what it answered for the others.
pub fn update_requests(
    out: &mut String,
    u: &UpdateRequestStats,
    answered_for_others: u64,
    dropped_from_others: u64,
) {
    out.push_str("  update requests\n");
    let rows: [(&str, u64); 9] = [
        ("queries", u.queries),
        ("packets waiting (total)", u.packets),
        ("found", u.found),
        ("unknown", u.unknown),
        ("timeouts", u.timeouts),
        ("full", u.full),
        ("stray answers", u.stray_answers),
        ("answered for others", answered_for_others),
        ("dropped from others", dropped_from_others),
    ];
    for (k, v) in rows {
        let _ = writeln!(out, "    {k:<30} {v}");
    }
}

pub fn forwarded(out: &mut String, f: &ForwardedStats) {
    let _ = writeln!(
        out,
        "  forwarded packets  sent {}  received {}  dropped {}",
        f.sent, f.received, f.dropped
    );
}

/// One row per sync network, in preference order (link 0 is `address`).
pub fn links(out: &mut String, links: &[LinkStats]) {
    if links.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "  {:<4} {:<24} {:<7} {:>5} {:>6} {:>12} {:>10} {:>12} {:>12} {:>10} {:>8} {:>8} {:>8}",
        "LINK",
        "NAME",
        "CARRIER",
        "ALIVE",
        "ROUTES",
        "DGRAMS SENT",
        "BYTES SENT",
        "RECORDS SENT",
        "DGRAMS RECV",
        "BYTES RECV",
        "FAILURES",
        "MOVED TO",
        "MOVED OFF"
    );
    for (i, l) in links.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {:<4} {:<24} {:<7} {:>5} {:>6} {:>12} {:>10} {:>12} {:>12} {:>10} {:>8} {:>8} {:>8}",
            i,
            l.name,
            if l.carrier { "yes" } else { "no" },
            l.members_alive,
            l.routes,
            l.datagrams_sent,
            bytes(l.bytes_sent),
            l.records_sent,
            l.datagrams_received,
            bytes(l.bytes_received),
            l.failures,
            l.switched_to,
            l.switched_away
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rampart_cluster::{
        ClusterStatus, HoldHistogram, MemberShare, MemberState, OwnershipMap, SyncStats,
    };

    use super::*;
    use crate::status_view::{cluster_section, cluster_status, sync_stats};

    fn load_sharing() -> LoadSharingStatus {
        let share = |member, up, expected_permille, flows, packets, bytes| MemberShare {
            member,
            up,
            expected_permille,
            flows,
            packets,
            bytes,
        };
        LoadSharingStatus {
            distribution: Distribution::Routed,
            pivot: Some(1),
            ownership: OwnershipMap {
                epoch: 4,
                members: vec![
                    share(1, true, 500, 1200, 50_000, 3 << 20),
                    share(2, true, 500, 1100, 48_000, 3_000_000),
                    share(3, false, 0, 40, 900, 700),
                ],
            },
            forwarded_sent: 10,
            forwarded_received: 3,
            forwarded_dropped: 1,
        }
    }

    fn cluster(ls: Option<LoadSharingStatus>) -> ClusterStatus {
        ClusterStatus {
            name: "dc".into(),
            mode: "load-sharing".into(),
            member_id: 2,
            state: MemberState::Standby,
            reason: String::new(),
            members: vec![],
            virtual_addresses: vec![],
            failovers: 0,
            load_sharing: ls,
        }
    }

    #[test]
    fn ownership_map_and_pivot() {
        let mut out = String::new();
        cluster_status(&mut out, &cluster(Some(load_sharing())));
        let expected = "\
cluster dc  load-sharing  member 2  standby  failovers 0
  MEMBER  SYNC ADDRESS                             PRIORITY  STATE    ALIVE  LAST HEARTBEAT  INTERFACES DOWN
  no virtual addresses
  load sharing  distribution routed  pivot 1  ownership epoch 4  forwarded sent 10  received 3  dropped 1
  MEMBER  UP    SHARE        FLOWS        PACKETS        BYTES
  1       yes   50.0%         1200          50000      3.0 MiB
  2 (me)  yes   50.0%         1100          48000      2.9 MiB
  3       no     0.0%           40            900        700 B
";
        assert_eq!(out, expected, "\n{out}");
        // High availability has no such block.
        let mut out = String::new();
        cluster_status(&mut out, &cluster(None));
        assert!(!out.contains("load sharing"), "{out}");
        // The pivot may be this member, or nobody yet.
        let mut ls = load_sharing();
        ls.pivot = Some(2);
        let mut out = String::new();
        load_sharing_status(&mut out, &ls, 2);
        assert!(out.contains("  pivot 2 (me)  "), "{out}");
        ls.pivot = None;
        ls.distribution = Distribution::Unicast;
        let mut out = String::new();
        load_sharing_status(&mut out, &ls, 2);
        assert!(
            out.starts_with("  load sharing  distribution unicast  pivot none  "),
            "{out}"
        );
    }

    fn sync_with_load_sharing() -> SyncStats {
        let mut hold_time = HoldHistogram::default();
        // 98 holds of 300 us, 2 of 40 ms: p50 is the 350 us bucket's bound, p99 the 50 ms
        // bucket's capped at the longest hold seen.
        for _ in 0..98 {
            hold_time.record(Duration::from_micros(300));
        }
        for _ in 0..2 {
            hold_time.record(Duration::from_millis(40));
        }
        SyncStats {
            member_id: 1,
            flush_ack: Some(FlushAckStats {
                held: 100,
                holding: 2,
                released_acked: 97,
                released_nothing_to_wait_for: 5,
                released_timeout: 1,
                released_full: 4,
                dropped_timeout: 0,
                timeouts: 1,
                members_declared_down: 1,
                flushes: 90,
                hold_time,
            }),
            update_requests: Some(UpdateRequestStats {
                queries: 6,
                packets: 7,
                found: 4,
                unknown: 1,
                timeouts: 1,
                full: 0,
                stray_answers: 2,
            }),
            update_queries_answered: 9,
            update_queries_dropped: 0,
            links: vec![
                LinkStats {
                    name: "10.255.0.1".into(),
                    carrier: true,
                    members_alive: 2,
                    routes: 2,
                    datagrams_sent: 500,
                    bytes_sent: 2048,
                    records_sent: 1500,
                    datagrams_received: 480,
                    bytes_received: 1024,
                    failures: 1,
                    switched_to: 1,
                    switched_away: 1,
                },
                LinkStats {
                    name: "10.255.1.1".into(),
                    carrier: false,
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn flush_ack_update_requests_forwarded_and_links() {
        let stats = sync_with_load_sharing();
        let forwarded = ForwardedStats {
            sent: 10,
            received: 3,
            dropped: 1,
        };
        let mut out = String::new();
        sync_stats(&mut out, &stats, Some(&forwarded));
        let tail = "\
  flush-and-ack
    held                           100
    holding                        2
    released, acked                97
    released, nothing to wait for  5
    released, timeout              1
    released, table full           4
    dropped, timeout               0
    timeouts                       1
    members declared down          1
    flushes                        90
    hold time                      p50 350us  p99 40ms  max 40ms  (100 holds)
  update requests
    queries                        6
    packets waiting (total)        7
    found                          4
    unknown                        1
    timeouts                       1
    full                           0
    stray answers                  2
    answered for others            9
    dropped from others            0
  forwarded packets  sent 10  received 3  dropped 1
  LINK NAME                     CARRIER ALIVE ROUTES  DGRAMS SENT BYTES SENT RECORDS SENT  DGRAMS RECV BYTES RECV FAILURES MOVED TO MOVED OFF
  0    10.255.0.1               yes         2      2          500    2.0 KiB         1500          480    1.0 KiB        1        1        1
  1    10.255.1.1               no          0      0            0        0 B            0            0        0 B        0        0        0
";
        assert!(out.ends_with(tail), "\n{out}");
        // High availability: none of it.
        let mut out = String::new();
        sync_stats(&mut out, &SyncStats::default(), None);
        assert!(!out.contains("flush-and-ack"), "{out}");
        assert!(!out.contains("LINK"), "{out}");
    }

    #[test]
    fn hold_times_before_the_first_hold_and_units() {
        let mut out = String::new();
        flush_ack(&mut out, &FlushAckStats::default());
        assert!(
            out.ends_with("    hold time                      p50 -  p99 -  max -  (0 holds)\n"),
            "{out}"
        );
        assert_eq!(micros(25), "25us");
        assert_eq!(micros(1_500), "1.5ms");
        assert_eq!(micros(214_000), "214ms");
        assert_eq!(micros(1_200_000), "1.20s");
        assert_eq!(permille(333), "33.3%");
        assert_eq!(permille(1000), "100.0%");
    }

    #[test]
    fn this_members_counters() {
        let m = LoadSharingStats {
            carrying: true,
            held: 12,
            released: 11,
            released_dropped: 1,
            orphans: 3,
            orphans_found: 2,
            orphans_not_found: 1,
            answered_found: 4,
            forwarded_out: ForwardCounts {
                udp: 1,
                raw_esp: 2,
                inspected: 3,
                tun: 0,
            },
            forwarded_to_client: 2,
            forwarded_in: ForwardCounts {
                udp: 5,
                ..Default::default()
            },
            forwarded_in_dropped: 1,
            adoptions: 2,
            routes_announced: 2,
            ..Default::default()
        };
        // As the gateway answers `cluster status`: the engine's document with
        // `load_sharing.member` added by the shell.
        let mut answer = serde_json::to_value(cluster(Some(load_sharing()))).unwrap();
        answer["load_sharing"]["member"] = serde_json::to_value(&m).unwrap();
        assert_eq!(member_counters_of(&answer), Some(m.clone()));
        let text = crate::cluster_cmd::render(
            crate::cli::ClusterCommand::Status,
            false,
            &answer.to_string(),
        )
        .unwrap();
        assert!(
            text.ends_with(
                "  this member  carrying yes  pivot no  held 12 (pool full 0)  released 11 (dropped 1)  orphans 3 (found 2, not found 1, pool full 0)  answered found 4 unknown 0  adoptions 2  kept now 0  routes announced 2
  forwarded out  udp 1  raw esp 2  inspected 3  tun 0  in  udp 5  raw esp 0  inspected 0  tun 0 (dropped 1)  inspected out to remote-access clients' owners 2
"
            ),
            "{text}"
        );
        // High availability: no such object, no such lines.
        let ha = serde_json::to_value(cluster(None)).unwrap();
        assert_eq!(member_counters_of(&ha), None);
        let text =
            crate::cluster_cmd::render(crate::cli::ClusterCommand::Status, false, &ha.to_string())
                .unwrap();
        assert!(!text.contains("this member"), "{text}");
        // `rampart status` shows them under the cluster block too.
        let doc = serde_json::json!({ "cluster": answer });
        assert!(
            cluster_section(&doc).contains("\n  this member  carrying yes  pivot no  held 12"),
            "{}",
            cluster_section(&doc)
        );
    }

    #[test]
    fn status_document_carries_the_load_sharing_parts() {
        let doc = serde_json::json!({
            "name": "gw",
            "cluster": cluster(Some(load_sharing())),
            "sync": sync_with_load_sharing(),
        });
        // The JSON names the CLI and scripts rely on.
        assert_eq!(doc["cluster"]["load_sharing"]["distribution"], "routed");
        assert_eq!(doc["cluster"]["load_sharing"]["pivot"], 1);
        assert_eq!(
            doc["cluster"]["load_sharing"]["ownership"]["members"][0]["expected_permille"],
            500
        );
        assert_eq!(doc["sync"]["flush_ack"]["members_declared_down"], 1);
        assert_eq!(doc["sync"]["update_requests"]["found"], 4);
        assert_eq!(doc["sync"]["links"][1]["carrier"], false);
        let text = cluster_section(&doc);
        assert!(
            text.contains("\n  load sharing  distribution routed  pivot 1  ownership epoch 4"),
            "{text}"
        );
        assert!(
            text.contains(
                "\nflush-and-ack  held 100  holding 2  timeouts 1  members declared down 1  hold p99 40ms\n"
            ),
            "{text}"
        );
    }
}
