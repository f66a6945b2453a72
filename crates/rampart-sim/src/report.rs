//! The result of a run: the timeline, the summary tables and the assertions, rendered as text.
//! Only simulated time appears in it, so the same seed renders the same bytes.

use std::fmt::Write as _;
use std::time::Duration;

use crate::scenario::Scenario;
use crate::units::{bitrate, bytes, secs};
use crate::world::{Entry, Kind, World};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass(String),
    Fail(String),
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub label: String,
    pub verdict: Verdict,
}

/// The load sharing table's row of node `i` when it is (or was) a Load Sharing member.
fn load_sharing_row(world: &World, i: usize, n: &crate::world::Node) -> Option<Vec<String>> {
    let Kind::Gateway(g) = &n.kind else {
        return None;
    };
    let ls = g
        .config
        .cluster
        .as_ref()
        .is_some_and(|c| c.mode == rampart_cluster::ClusterMode::LoadSharing);
    if !ls {
        return None;
    }
    let out_of_state = crate::cluster_checks::out_of_state(world, i).to_string();
    let Some((status, sync)) = g.cluster_status(world.base, world.now) else {
        let mut row = vec![n.name.clone(), "crashed".into(), "-".into(), out_of_state];
        row.resize(11, "-".into());
        return Some(row);
    };
    let conns = g
        .engine
        .as_ref()
        .map_or("-".into(), |e| e.conn_stats().active.to_string());
    let us = |v: Option<u64>| {
        v.map_or("-".into(), |v| {
            crate::units::short(Duration::from_micros(v))
        })
    };
    let (held, hold, timeouts) = match &sync.flush_ack {
        Some(f) => (
            f.held.to_string(),
            format!(
                "{}/{}",
                us(f.hold_time.quantile_us(0.5)),
                us(f.hold_time.quantile_us(0.99))
            ),
            f.timeouts.to_string(),
        ),
        None => ("-".into(), "-".into(), "-".into()),
    };
    let upd = sync.update_requests.as_ref().map_or("-".into(), |u| {
        format!("{} ({}/{})", u.queries, u.found, u.unknown)
    });
    let fwd = status.load_sharing.as_ref().map_or("-".into(), |l| {
        format!("{}/{}", l.forwarded_sent, l.forwarded_received)
    });
    let links = sync
        .links
        .iter()
        .enumerate()
        .map(|(k, l)| format!("{k}: {}", l.records_sent))
        .collect::<Vec<_>>()
        .join(", ");
    Some(vec![
        n.name.clone(),
        format!("{:?}", status.state).to_lowercase(),
        conns,
        out_of_state,
        held,
        hold,
        timeouts,
        upd,
        fwd,
        sync.lost.to_string(),
        if links.is_empty() { "-".into() } else { links },
    ])
}

/// The transfers table's row of a group: the count, median and slowest time, the results.
fn group_row(
    g: &crate::world::TransferGroup,
    members: &[crate::host::TransferRecord],
) -> Vec<String> {
    let mut times: Vec<Duration> = members
        .iter()
        .filter(|t| t.failure.is_none())
        .filter_map(|t| Some(t.finished?.saturating_sub(t.started?)))
        .collect();
    times.sort();
    let time = match (times.get(times.len() / 2), times.last()) {
        (Some(m), Some(x)) => format!("{} (max {})", secs(*m), secs(*x)),
        _ => "-".into(),
    };
    let failed = members.iter().filter(|t| t.failure.is_some()).count();
    let open = members.len() - times.len() - failed;
    let mut result = format!("{} SHA-256 ok", times.len());
    if failed > 0 {
        result.push_str(&format!(", {failed} FAILED"));
    }
    if open > 0 {
        result.push_str(&format!(", {open} incomplete"));
    }
    vec![
        g.name.clone(),
        format!("{} -> {}", g.from, g.to),
        format!("{} x {}", members.len(), bytes(g.size)),
        time,
        "-".into(),
        result,
    ]
}

/// Everything `rampart lab run` prints.
#[derive(Debug, Clone)]
pub struct Report {
    pub scenario: String,
    pub description: String,
    pub seed: u64,
    pub timeline: Vec<Entry>,
    /// Simulated time at which the run ended.
    pub ended: Duration,
    pub ended_early: bool,
    pub transfers: Vec<Vec<String>>,
    pub gateways: Vec<Vec<String>>,
    /// Remote-access client machines: transport, Office Mode address, tunnel MTU, moves.
    pub clients: Vec<Vec<String>>,
    /// Load Sharing members: state, connections, out-of-state drops, Flush-and-Ack holds,
    /// update requests, forwarding, sync losses and records per sync link.
    pub load_sharing: Vec<Vec<String>>,
    pub links: Vec<Vec<String>>,
    /// Per link (by name): packets sent from its end `a` and from its end `b` (not printed;
    /// for tests that look at which way flows went).
    pub link_directions: Vec<(String, [u64; 2])>,
    pub drops: Vec<Vec<String>>,
    pub outcomes: Vec<Outcome>,
}

impl Report {
    pub(crate) fn new(
        sc: &Scenario,
        seed: u64,
        world: &World,
        outcomes: Vec<Outcome>,
        ended_early: bool,
    ) -> Report {
        let transfers = world
            .groups
            .iter()
            .map(|g| {
                if g.is_group() {
                    return group_row(g, &world.transfers[g.members.clone()]);
                }
                let i = g.members.start;
                let t = &world.transfers[i];
                let (time, rate) = match (t.started, t.finished) {
                    (Some(s), Some(f)) => {
                        let d = (f - s).as_secs_f64().max(1e-6);
                        (format!("{d:.2}s"), bitrate(t.size as f64 * 8.0 / d))
                    }
                    _ => ("-".into(), "-".into()),
                };
                let result = match (&t.failure, t.finished) {
                    (Some(f), _) => format!("FAILED: {f}"),
                    (None, Some(_)) => "SHA-256 ok".into(),
                    (None, None) if t.started.is_none() => "not started".into(),
                    (None, None) => {
                        let tcp: Vec<String> = world
                            .nodes
                            .iter()
                            .filter_map(|n| match &n.kind {
                                Kind::Host(h) => h.describe(i),
                                Kind::Client(c) => c.inner.describe(i),
                                _ => None,
                            })
                            .collect();
                        format!("incomplete ({}; {})", bytes(t.received), tcp.join(", "))
                    }
                };
                vec![
                    t.name.clone(),
                    format!("{} -> {}", t.from, t.to),
                    bytes(t.size),
                    time,
                    rate,
                    result,
                ]
            })
            .collect();
        let gateways = world
            .nodes
            .iter()
            .filter_map(|n| match &n.kind {
                Kind::Gateway(g) => {
                    let status = g.engine.as_ref().map(|e| e.status(world.base + world.now));
                    let (state, esp_in, esp_out) = match &status {
                        Some(s) => (
                            s.peers
                                .iter()
                                .map(|p| p.state.clone())
                                .collect::<Vec<_>>()
                                .join(","),
                            s.counters.esp_packets_in.to_string(),
                            s.counters.esp_packets_out.to_string(),
                        ),
                        None => ("crashed".into(), "-".into(), "-".into()),
                    };
                    Some(vec![
                        n.name.clone(),
                        state,
                        g.tunnels_installed.to_string(),
                        g.rekeys.to_string(),
                        g.restarts.to_string(),
                        g.ike_fragments_sent.to_string(),
                        esp_in,
                        esp_out,
                    ])
                }
                _ => None,
            })
            .collect();
        let clients = world
            .nodes
            .iter()
            .filter_map(|n| match &n.kind {
                Kind::Client(c) => Some(vec![
                    n.name.clone(),
                    c.transport().unwrap_or("-").to_string(),
                    c.addr.to_string(),
                    c.virtual_addr.map_or("-".into(), |a| a.to_string()),
                    c.connected.len().to_string(),
                    c.tunnel_mtu.map_or("-".into(), |m| m.to_string()),
                    if c.moves.is_empty() {
                        "-".into()
                    } else {
                        c.moves
                            .iter()
                            .map(|(t, how)| format!("{how} at {}", secs(*t)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                ]),
                _ => None,
            })
            .collect();
        let load_sharing = world
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| load_sharing_row(world, i, n))
            .collect();
        let links = world
            .links
            .iter()
            .map(|l| {
                vec![
                    l.name.clone(),
                    l.stats.packets.to_string(),
                    bytes(l.stats.bytes),
                    l.stats.lost.to_string(),
                    l.stats.queue_drops.to_string(),
                    l.stats.down_drops.to_string(),
                ]
            })
            .collect();
        let link_directions = world
            .links
            .iter()
            .map(|l| (l.name.clone(), l.stats.from_end))
            .collect();
        let drops = world
            .drops
            .iter()
            .map(|((at, reason), n)| vec![at.clone(), (*reason).to_string(), n.to_string()])
            .collect();
        Report {
            scenario: sc.name.clone(),
            description: sc.description.trim().to_string(),
            seed,
            timeline: world.timeline.clone(),
            ended: world.now,
            ended_early,
            transfers,
            gateways,
            clients,
            load_sharing,
            links,
            link_directions,
            drops,
            outcomes,
        }
    }

    pub fn passed(&self) -> bool {
        self.outcomes
            .iter()
            .all(|o| matches!(o.verdict, Verdict::Pass(_)))
    }

    /// The timeline, one line per entry.
    pub fn render_timeline(&self) -> String {
        let mut s = String::new();
        for e in &self.timeline {
            let _ = writeln!(s, "{:>9}  {:<8} {}", secs(e.at), e.who, e.text);
        }
        s
    }

    /// The summary tables and the assertions.
    pub fn render_summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\n== summary after {} of simulated time{}",
            secs(self.ended),
            if self.ended_early {
                " (ended once every assertion held)"
            } else {
                ""
            }
        );
        if !self.transfers.is_empty() {
            table(
                &mut s,
                "transfers",
                &["name", "path", "size", "time", "throughput", "result"],
                &self.transfers,
            );
        }
        table(
            &mut s,
            "gateways",
            &[
                "gateway",
                "state",
                "tunnels",
                "rekeys",
                "restarts",
                "IKE frags",
                "esp in",
                "esp out",
            ],
            &self.gateways,
        );
        if !self.clients.is_empty() {
            table(
                &mut s,
                "clients",
                &[
                    "client",
                    "transport",
                    "address",
                    "office mode",
                    "tunnels",
                    "tunnel MTU",
                    "moves",
                ],
                &self.clients,
            );
        }
        if !self.load_sharing.is_empty() {
            table(
                &mut s,
                "load sharing",
                &[
                    "member",
                    "state",
                    "conns",
                    "out of state",
                    "held",
                    "hold p50/p99",
                    "hold timeouts",
                    "upd req (found/unknown)",
                    "fwd out/in",
                    "sync lost",
                    "records per sync link",
                ],
                &self.load_sharing,
            );
        }
        table(
            &mut s,
            "links",
            &[
                "link",
                "packets",
                "bytes",
                "lost",
                "queue drops",
                "while down",
            ],
            &self.links,
        );
        if !self.drops.is_empty() {
            table(&mut s, "drops", &["where", "reason", "count"], &self.drops);
        }
        let _ = writeln!(s, "\nassertions");
        for o in &self.outcomes {
            let (tag, detail) = match &o.verdict {
                Verdict::Pass(d) => ("PASS", d),
                Verdict::Fail(d) => ("FAIL", d),
            };
            let _ = writeln!(s, "  {tag}  {}: {detail}", o.label);
        }
        let failed = self
            .outcomes
            .iter()
            .filter(|o| matches!(o.verdict, Verdict::Fail(_)))
            .count();
        if failed == 0 {
            let _ = writeln!(
                s,
                "\nresult: PASS ({} assertions, seed {})",
                self.outcomes.len(),
                self.seed
            );
        } else {
            let _ = writeln!(
                s,
                "\nresult: FAIL ({failed} of {} assertions failed)\nreproduce with: rampart lab run {} --seed {}",
                self.outcomes.len(),
                self.scenario,
                self.seed
            );
        }
        s
    }

    /// Header, timeline and summary.
    pub fn render(&self) -> String {
        let mut s = format!("== scenario {} (seed {})\n", self.scenario, self.seed);
        if !self.description.is_empty() {
            for line in self.description.lines() {
                let _ = writeln!(s, "   {line}");
            }
        }
        s.push('\n');
        s.push_str(&self.render_timeline());
        s.push_str(&self.render_summary());
        s
    }
}

fn table(out: &mut String, title: &str, head: &[&str], rows: &[Vec<String>]) {
    let mut width: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < width.len() {
                width[i] = width[i].max(c.chars().count());
            }
        }
    }
    let _ = writeln!(out, "\n{title}");
    let line = |cells: Vec<&str>| {
        let mut l = String::from(" ");
        for (i, c) in cells.iter().enumerate() {
            let _ = write!(l, " {:<w$}", c, w = width[i]);
        }
        l.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(head.to_vec()));
    for r in rows {
        let _ = writeln!(out, "{}", line(r.iter().map(|c| c.as_str()).collect()));
    }
}
