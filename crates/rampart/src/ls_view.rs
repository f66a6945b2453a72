//! The Load Sharing parts of `rampart cluster status` and `rampart cluster sync-stats`: the
//! ownership map with the pivot, Flush-and-Ack, update requests, forwarded packets and the
//! sync networks. Each function appends lines to `out`; nothing here fails, a counter the
//! gateway did not send shows as absent, never as zero.

use std::fmt::Write;

use rampart_cluster::{
    Distribution, FlushAckStats, LinkStats, LoadSharingStatus, MemberId, UpdateRequestStats,
};
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
