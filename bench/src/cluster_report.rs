//! `bench/results/cluster.md` from the samples `bench/cluster.sh` collects.
//!
//! Samples are TSV lines `case <TAB> metric <TAB> run <TAB> value` (value `NA` for a failed
//! run). Cases and metrics:
//!
//! - failover (`keepalived-1s`, `keepalived-100ms`, `rampart-kill`, `rampart-switchover`):
//!   `gap_ms`, `lost`, `reordered`, `max_send_interval_ms`; Rampart's also `conns_opened`,
//!   `conns_lost`.
//! - `conntrackd` and `rampart-sync` (10,000 connections through member 1): `conns`,
//!   `open_s`, `sync_s` (from the first connection opened until the backup holds them all),
//!   `sync_after_open_s`, `backup_entries`, `tx_bytes_per_conn`, `rx_bytes_per_conn`;
//!   `conntrackd` also `commit_s` (the backup writing its external cache into its kernel table).
//!   `rampart-sync` also `records_per_conn`, `datagrams_per_conn`, `payload_bytes_per_conn`
//!   (member 1's `rampart cluster sync-stats`).
//! - `rampart-delta`: `updates_per_s`, `bytes_per_conn`; `rampart-fullsync`: `seconds`,
//!   `peak_mib` (not measured by this script: without `--engine`, their rows stay open).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::stats::{median, min_max};

/// (case, metric) -> values of the successful runs, plus the number of failed (NA) runs.
#[derive(Debug, Default)]
pub struct Samples {
    values: BTreeMap<(String, String), Vec<f64>>,
    failed: BTreeMap<(String, String), usize>,
}

impl Samples {
    pub fn parse(text: &str) -> Result<Samples, String> {
        let mut s = Samples::default();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() != 4 {
                return Err(format!(
                    "samples line {}: expected 4 fields: {line:?}",
                    i + 1
                ));
            }
            let key = (f[0].to_owned(), f[1].to_owned());
            match f[3].trim() {
                "NA" | "" | "null" => *s.failed.entry(key).or_default() += 1,
                v => {
                    let v: f64 = v
                        .parse()
                        .map_err(|_| format!("samples line {}: bad value {v:?}", i + 1))?;
                    s.values.entry(key).or_default().push(v);
                }
            }
        }
        Ok(s)
    }

    /// The values of the successful runs of (`case`, `metric`).
    pub fn values(&self, case: &str, metric: &str) -> &[f64] {
        self.get(case, metric)
    }

    fn get(&self, case: &str, metric: &str) -> &[f64] {
        self.values
            .get(&(case.to_owned(), metric.to_owned()))
            .map_or(&[], Vec::as_slice)
    }

    /// How many runs of (`case`, `metric`) failed (`NA`).
    pub fn failed(&self, case: &str, metric: &str) -> usize {
        self.failed
            .get(&(case.to_owned(), metric.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Whether any sample of `case` exists.
    pub fn has_case(&self, case: &str) -> bool {
        self.values
            .keys()
            .chain(self.failed.keys())
            .any(|(c, _)| c == case)
    }

    /// "median (min-max)" with `digits` decimals, or `None` without samples.
    fn summary(&self, case: &str, metric: &str, digits: usize) -> Option<String> {
        let v = self.get(case, metric);
        let m = median(v)?;
        let (lo, hi) = min_max(v)?;
        Some(if v.len() == 1 {
            format!("{m:.digits$}")
        } else {
            format!("{m:.digits$} ({lo:.digits$}-{hi:.digits$})")
        })
    }
}

/// What the report says about the run.
pub struct Params {
    pub runs: u32,
    pub quick: bool,
    pub machine: String,
    pub date: String,
    /// The "Rampart sync engine" section, kept in its own file (`cluster-engine.md`, written by
    /// hand from `rampart-bench cluster-delta` / `cluster-fullsync`, with its own machine and
    /// load) so that re-running `cluster.sh` does not erase it; `None`: the rows stay open.
    pub engine: Option<String>,
}

const NOT_YET: &str = "_to be measured (`rampart-bench cluster-delta` / `cluster-fullsync`)_";

fn cell(s: Option<String>, fallback: &str) -> String {
    s.unwrap_or_else(|| fallback.to_owned())
}

pub fn render(s: &Samples, p: &Params) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Cluster failover and state sync\n");
    let _ = writeln!(
        o,
        "`bench/cluster.sh`{} on {}, {} failover run(s) per case. Figures: median (min-max).\n",
        if p.quick {
            " --quick (rough numbers)"
        } else {
            ""
        },
        p.date,
        p.runs
    );
    let _ = writeln!(
        o,
        "Rows marked *anchor* are the systems we compare with; they and the **Rampart** daemon \
         rows (failover gap, connections, state sync) are measured in the same run, on the machine \
         below (`bench/cluster.sh --cases keepalived-1s,keepalived-100ms,conntrackd,rampart-kill,rampart-switchover`). \
         A row that says \"not run\" was not in this run's `--cases`. The section \"Rampart sync \
         engine\" is included from `bench/results/cluster-engine.md` (in process, no daemon; its own \
         run, machine and load are given there).\n"
    );
    let _ = writeln!(o, "Machine:\n\n{}", p.machine);

    // ------------------------------------------------------------ failover
    let _ = writeln!(o, "## Failover gap\n");
    let _ = writeln!(
        o,
        "Longest interval without a delivered packet in a 1 ms UDP probe stream from the LAN host \
         to the remote host through the active member (`rampart-bench probe-send` / `probe-recv`).\n"
    );
    let _ = writeln!(
        o,
        "| | case | gap ms | probes lost | reordered | sender's longest pause ms | failed runs | goal |"
    );
    let _ = writeln!(o, "|---|---|---:|---:|---:|---:|---:|---|");
    let rows: [(&str, &str, &str, &str); 4] = [
        (
            "anchor",
            "keepalived-1s",
            "keepalived VRRP, advert_int 1 (default), kill -9 + links down",
            "",
        ),
        (
            "anchor",
            "keepalived-100ms",
            "keepalived VRRP, advert_int 0.1, kill -9 + links down",
            "",
        ),
        (
            "**Rampart**",
            "rampart-kill",
            "Rampart, kill -9 the active member + links down",
            "<= 500 ms",
        ),
        (
            "**Rampart**",
            "rampart-switchover",
            "Rampart, `rampart cluster switchover`",
            "<= 50 ms",
        ),
    ];
    for (who, case, label, goal) in rows {
        let fallback = "not run";
        let failed = s.failed(case, "gap_ms");
        let _ = writeln!(
            o,
            "| {who} | {label} | {} | {} | {} | {} | {} | {goal} |",
            cell(s.summary(case, "gap_ms", 0), fallback),
            cell(s.summary(case, "lost", 0), ""),
            cell(s.summary(case, "reordered", 0), ""),
            cell(s.summary(case, "max_send_interval_ms", 1), ""),
            if s.has_case(case) {
                failed.to_string()
            } else {
                String::new()
            },
        );
    }
    let _ = writeln!(
        o,
        "\n| | connections lost in a failover (of those open before) | kill -9 | switchover | goal |"
    );
    let _ = writeln!(o, "|---|---|---:|---:|---|");
    let lost = |case: &str| match (
        s.summary(case, "conns_lost", 0),
        s.summary(case, "conns_opened", 0),
    ) {
        (Some(l), Some(n)) => format!("{l} of {n}"),
        _ if s.has_case(case) => "NA (no run completed)".to_owned(),
        _ => "not run".to_owned(),
    };
    let _ = writeln!(
        o,
        "| **Rampart** | 10,000 TCP connections, each exchanges data after the failover | {} | {} | 0 |",
        lost("rampart-kill"),
        lost("rampart-switchover")
    );

    // ------------------------------------------------------------ sync
    let _ = writeln!(o, "\n## State sync of 10,000 connections\n");
    let _ = writeln!(
        o,
        "10,000 TCP connections opened from the LAN host to the remote host through member 1 \
         (`rampart-bench conn-open`, real connections with one round trip each, then idle). \
         Time until the backup holds all of them, and bytes on the dedicated sync link \
         (interface counters of member 1's end) per connection.\n"
    );
    let _ = writeln!(
        o,
        "| | case | opening took s | backup holds all after s (from first open) | after the last open s | entries on the backup | sync bytes/conn sent | sync bytes/conn received (acks) | commit on takeover s | goal |"
    );
    let _ = writeln!(o, "|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for (who, case, label, goal) in [
        (
            "anchor",
            "conntrackd",
            "conntrackd FT-FW (kernel conntrack)",
            "",
        ),
        (
            "**Rampart**",
            "rampart-sync",
            "Rampart delta sync",
            "<= 48 B/conn",
        ),
    ] {
        let fb = "not run";
        let _ = writeln!(
            o,
            "| {who} | {label} | {} | {} | {} | {} | {} | {} | {} | {goal} |",
            cell(s.summary(case, "open_s", 2), fb),
            cell(s.summary(case, "sync_s", 2), ""),
            cell(s.summary(case, "sync_after_open_s", 3), ""),
            cell(s.summary(case, "backup_entries", 0), ""),
            cell(s.summary(case, "tx_bytes_per_conn", 1), ""),
            cell(s.summary(case, "rx_bytes_per_conn", 1), ""),
            cell(
                s.summary(case, "commit_s", 2),
                if case == "conntrackd" || !s.has_case(case) {
                    ""
                } else {
                    "none (records applied on arrival)"
                }
            ),
        );
    }

    if s.has_case("rampart-sync") {
        let _ = writeln!(
            o,
            "\nRampart delta sync, what member 1's engine sent (`rampart cluster sync-stats --json` \
             after the connections, divided by the connections opened; counted from the daemon's \
             start, so the tunnel's SA records and the heartbeats are in it): {} records, {} \
             datagrams and {} B of UDP payload per connection. The interface bytes above add \
             42 B of Ethernet/IPv4/UDP headers per datagram.",
            cell(s.summary("rampart-sync", "records_per_conn", 2), "NA"),
            cell(s.summary("rampart-sync", "datagrams_per_conn", 3), "NA"),
            cell(s.summary("rampart-sync", "payload_bytes_per_conn", 1), "NA"),
        );
    }

    // ------------------------------------------------------------ rampart-only rows
    let _ = writeln!(o, "\n## Rampart sync engine\n");
    if let Some(engine) = &p.engine {
        let _ = writeln!(o, "{}", engine.trim_end());
        o.push_str(METHOD);
        return o;
    }
    let _ = writeln!(o, "| | measurement | result | goal |");
    let _ = writeln!(o, "|---|---|---:|---|");
    let _ = writeln!(
        o,
        "| **Rampart** | delta sync: updates/s encoded + sent + received + applied, two members over loopback | {} | >= 500,000/s |",
        cell(s.summary("rampart-delta", "updates_per_s", 0), NOT_YET)
    );
    let _ = writeln!(
        o,
        "| **Rampart** | delta sync: wire bytes per new connection, headers amortised | {} | <= 48 B |",
        cell(s.summary("rampart-delta", "bytes_per_conn", 1), NOT_YET)
    );
    let _ = writeln!(
        o,
        "| **Rampart** | full sync: 1,000,000 connections + 10,000 SAs over loopback TLS, transfer + apply | {} | < 2 s |",
        cell(
            s.summary("rampart-fullsync", "seconds", 2).map(|x| format!("{x} s")),
            NOT_YET
        )
    );
    let _ = writeln!(
        o,
        "| **Rampart** | full sync: peak memory of the receiver | {} | |",
        cell(
            s.summary("rampart-fullsync", "peak_mib", 0)
                .map(|x| format!("{x} MiB")),
            NOT_YET
        )
    );
    o.push_str(METHOD);
    o
}

const METHOD: &str = r#"
## How it is measured

Topology (fresh network namespaces with unique names for every run, removed on every exit path):

```
LAN host 10.1.0.10 --[br-lan]-- member 1 lan0 10.1.0.2 | member 2 lan0 10.1.0.3   VIP 10.1.0.1
                                member 1 wan0 192.0.2.2 | member 2 wan0 192.0.2.3  VIP 192.0.2.1
remote gw 192.0.2.10 --[br-wan]--'   sync link: member 1 sync0 172.16.0.1 == 172.16.0.2 member 2
remote host 10.2.0.10 -- remote gw 10.2.0.1
```

The LAN host's default route and the remote gateway's route to 10.1.0.0/24 point at the VIPs.
In the anchor cases the members forward with plain Linux routing and the remote gateway is a
plain router; in the Rampart cases the members run `rampart gateway run` with a `[cluster]`
section and the remote gateway is a Rampart gateway, so the probe stream crosses the tunnel.

- **keepalived** (Debian's 2.2.7): one VRRP instance on lan0 holding both VIPs (`dev lan0`,
  `dev wan0`), member 1 priority 150, member 2 priority 100, adverts on the LAN bridge. Only the
  VRRP process runs (`--vrrp`). The kill: `kill -9` of both keepalived processes of member 1
  (the VRRP child first: killing only the parent makes the child exit *gracefully*, sending a
  priority-0 advert, which is a switchover, not a crash), then member 1's lan0, wan0 and sync0
  are set down in the same instant. A killed keepalived leaves the VIPs configured on its
  interfaces, so the killed box would go on answering ARP for them and forwarding: a dead box
  does neither, and taking its links down is what makes it dead for the network (its addresses
  stay, unreachable). Member 2 takes over after the master-down interval (3 x advert_int + skew,
  skew = (256 - priority) / 256 x advert_int: 3.61 s, or 0.361 s with 100 ms adverts) counted
  from the last advert it heard, and sends gratuitous ARPs for the VIPs: the kill falls at a
  random point between two adverts, so the expected gap lies between 2.61 and 3.61 s (0.261
  and 0.361 s), plus the time to process the takeover.
- **conntrackd** (Debian's 1.4.7): both members run conntrackd in FT-FW mode over the sync link
  (UDP unicast 172.16.0.1 <-> 172.16.0.2, port 3780), VIPs static on member 1, an nftables
  `ct state` rule in each member so that the kernel tracks connections in the namespace. The
  10,000 connections are real TCP connections (not `conntrack -I`): opening them takes about a
  second. The backup's external cache is read with `conntrackd -s` every 50 ms. Bytes are
  member 1's sync0 tx (updates) and rx (acks) counters over the whole run, divided by 10,000;
  FT-FW sends an update for every conntrack event (new, then state changes of the handshake);
  the counters run from just before the first connection until 1 s after the backup holds them
  all (FT-FW's alive messages are in it; they are a few bytes per second). "Commit on takeover"
  is `conntrackd -c` on the backup (what `primary-backup.sh` runs when keepalived makes it
  master) until its kernel table holds all the connections (`conntrack -C`): until then the
  new master forwards without the state, which is how conntrackd + keepalived can reset
  connections after a failover. Rampart's standby applies records as they arrive.
- **Rampart**: two members (`rampart gateway run`, release build) with `heartbeat_interval =
  "100ms"`, `dead_after = 3`, lan0 and wan0 monitored, VIPs on lan0 and wan0, delta sync over
  the sync link; the remote Rampart gateway initiates the tunnel to the WAN VIP (ESP in UDP,
  AES-256-GCM), so the probe stream and the 10,000 connections cross the tunnel. Member 1 is
  started first and becomes active, member 2 joins by full sync and stands by. "Backup holds
  all": member 2's connection table (`rampart conn stats --json`, `.active`, minus what it held
  before, polled every 50 ms) reaches 10,000; the bytes are member 1's sync0 counters as for
  conntrackd (heartbeats every 100 ms both ways included). The sync row has one sample per
  failover run of both Rampart cases. kill -9 as for keepalived (the daemon with SIGKILL, then
  lan0, wan0 and sync0 down); switchover with `rampart cluster switchover` on member 1. After
  the failover `conn-open` sends data on every connection opened before it and counts those
  that get their echo back; "lost" are those that do not.

Compare rows of the same run only; the machine is shared with other work (see the load above).
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_anchors_and_leaves_rampart_rows_open() {
        let s = Samples::parse(
            "keepalived-1s\tgap_ms\t1\t3650\nkeepalived-1s\tgap_ms\t2\t3600\n\
             keepalived-1s\tgap_ms\t3\tNA\nconntrackd\tsync_s\t1\t1.5\n",
        )
        .unwrap();
        let md = render(
            &s,
            &Params {
                runs: 3,
                quick: false,
                machine: "- CPU: x\n".into(),
                date: "2026-01-01".into(),
                engine: None,
            },
        );
        assert!(md.contains("| 3625 (3600-3650) |"), "{md}");
        assert!(md.contains("| 1 |"), "one failed run counted: {md}");
        assert!(md.contains("| 1.50 |"));
        assert!(md.contains("Rampart, kill -9 the active member + links down | not run"));
        assert!(md.contains("transfer + apply | _to be measured"));
    }

    #[test]
    fn includes_the_engine_section_and_rampart_rows() {
        let s = Samples::parse(
            "rampart-kill\tgap_ms\t1\t310\nrampart-kill\tconns_lost\t1\t0\n\
             rampart-kill\tconns_opened\t1\t10000\nrampart-sync\tsync_s\t1\t1.2\n",
        )
        .unwrap();
        let md = render(
            &s,
            &Params {
                runs: 1,
                quick: true,
                machine: "- CPU: x\n".into(),
                date: "2026-01-01".into(),
                engine: Some("| x | run B row | 1 | |\n".into()),
            },
        );
        assert!(md.contains("| 310 |"), "{md}");
        assert!(md.contains("| 0 of 10000 | not run |"), "{md}");
        assert!(
            md.contains("## Rampart sync engine\n\n| x | run B row | 1 | |\n"),
            "{md}"
        );
        assert!(!md.contains("_to be measured"), "{md}");
    }

    #[test]
    fn bad_lines_are_errors() {
        assert!(Samples::parse("a\tb\t1\n").is_err());
        assert!(Samples::parse("a\tb\t1\tx\n").is_err());
    }
}
