//! `bench/results/mep.md` from the samples `bench/mep.sh` collects.
//!
//! Samples are TSV lines `case <TAB> metric <TAB> run <TAB> value` (`NA`: the run failed):
//!
//! - failover cases `preconnect` (tunnels to both entry points kept up) and `on-demand` (the
//!   tunnel to the backup is negotiated by the failover's first packet): `first_new_ms` (kill
//!   until the first new TCP connection through the backup completed), `conn_gap_ms` (longest
//!   time without a completed new connection after the kill), `failed_attempts`, `stray` (new
//!   connections after the failover that still went to the dead entry point: must be 0).
//! - probe cost cases `probe-rampart` (entry point probed with Rampart's UDP probe) and
//!   `probe-ike` (probed with IKEv2 liveness on its IKE SA): `out_pps`, `out_bytes_per_s`,
//!   `in_pps`, `in_bytes_per_s` (the satellite's packets to / from that entry point on the
//!   probe's port(s), IP bytes), `seconds` (the measuring window).

use std::fmt::Write as _;

use crate::cluster_report::Samples;
use crate::stats::{median, min_max, percentile};

/// What the report says about the run.
#[derive(Debug, Clone)]
pub struct Params {
    pub failures: u32,
    pub date: String,
    pub build: String,
    pub machine: String,
    pub load_start: String,
    pub probe_interval: String,
    /// The failures ran in one topology, the killed entry point restarted after each
    /// (`--restart`); otherwise each failure had a fresh topology.
    pub restart: bool,
}

const FAILOVER_CASES: [(&str, &str); 2] = [
    (
        "preconnect",
        "kill -9 of the chosen entry point, tunnels to both kept up (`preconnect = true`)",
    ),
    (
        "on-demand",
        "kill -9 of the chosen entry point, tunnel to the backup negotiated on demand",
    ),
];

fn ms(v: f64) -> String {
    format!("{v:.0}")
}

fn distribution(s: &Samples, case: &str, metric: &str) -> Option<[String; 4]> {
    let v = s.values(case, metric);
    let (lo, hi) = min_max(v)?;
    Some([ms(lo), ms(median(v)?), ms(percentile(v, 95.0)?), ms(hi)])
}

pub fn render(s: &Samples, p: &Params) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Multiple Entry Points: failover and probe cost\n");
    let _ = writeln!(
        o,
        "`bench/mep.sh` on {} (build {}), {} failure(s) per failover case, probes every {}. \
         Every figure below comes from this run on this machine:\n",
        p.date, p.build, p.failures, p.probe_interval
    );
    let _ = writeln!(o, "{}", p.machine.trim_end());
    let _ = writeln!(o, "- load average when the run started: {}\n", p.load_start);
    let _ = writeln!(
        o,
        "Topology (network namespaces, release build): site host -- satellite (Rampart) -- \
         internet bridge -- entry points m1, m2 (Rampart, IP Pool NAT each to its own pool) -- \
         internal router -- server. Group `hq` = [m1, m2], `first-to-respond`, default probe \
         settings (interval 1 s, timeout 150 ms, 3 misses).\n"
    );
    let _ = writeln!(o, "## Failover time for new connections\n");
    let _ = writeln!(
        o,
        "A new TCP connection from the site host to the server every 20 ms, each on its own \
         thread and allowed 300 ms, so an attempt stuck on the dead entry point does not delay \
         the next ones (the server answers with the source address it sees, so each connection tells \
         which entry point's pool carried it). Each failure: `kill -9` of the entry point the \
         satellite has chosen (after one connection resolved through it, at a random moment \
         of the probe interval), then the time from \
         the kill until the first new connection through the other one completed. {}\n",
        if p.restart {
            "All failures ran in one topology: the killed entry point was restarted and had to \
             be seen up again before the next failure (so the failures alternate between m1 \
             and m2)."
        } else {
            "Each failure ran in a fresh topology (the gateways started anew)."
        }
    );
    let _ = writeln!(
        o,
        "| | case | failures measured | min ms | median ms | p95 ms | max ms | no failover | goal |"
    );
    let _ = writeln!(o, "|---|---|---:|---:|---:|---:|---:|---:|---|");
    let _ = writeln!(
        o,
        "| anchor | strongSwan 5.9.8 dead-peer detection with charon's documented default \
         retransmission settings (`retransmit_timeout` 4 s, `retransmit_base` 1.8, \
         `retransmit_tries` 5: retransmits after 4, 11, 24, 47, 89 s, gives up at 165 s, \
         strongswan.conf(5) \"IKEv2 RETRANSMISSION\"); `dpd_delay` (default off) comes on top | \
         | | | | dpd_delay + 165,000 | | |"
    );
    for (case, what) in FAILOVER_CASES {
        if !s.has_case(case) {
            let _ = writeln!(
                o,
                "| **Rampart** | {what} | not run | | | | | | < 1,500 ms |"
            );
            continue;
        }
        let n = s.values(case, "first_new_ms").len();
        let failed = s.failed(case, "first_new_ms");
        let [lo, med, p95, hi] = distribution(s, case, "first_new_ms")
            .unwrap_or_else(|| ["-".into(), "-".into(), "-".into(), "-".into()]);
        let _ = writeln!(
            o,
            "| **Rampart** | {what} | {n} | {lo} | {med} | {p95} | {hi} | {failed} | < 1,500 ms |"
        );
    }
    let _ = writeln!(
        o,
        "\nResolution: attempts start every 20 ms whatever the earlier ones do, so a figure is \
         within 20 ms (plus one TCP handshake) of the moment new connections could pass.\n"
    );
    let _ = writeln!(
        o,
        "| case | longest time without a completed new connection, ms: median (min-max) | \
         failed attempts per failure: median (max) | connections to the dead entry point after \
         the failover |"
    );
    let _ = writeln!(o, "|---|---:|---:|---:|");
    for (case, _) in FAILOVER_CASES {
        if !s.has_case(case) {
            continue;
        }
        let gap = s.values(case, "conn_gap_ms");
        let failed = s.values(case, "failed_attempts");
        let stray: f64 = s.values(case, "stray").iter().sum();
        let _ = writeln!(
            o,
            "| {case} | {} ({}-{}) | {} ({}) | {stray:.0} |",
            median(gap).map_or("-".into(), ms),
            min_max(gap).map_or("-".into(), |m| ms(m.0)),
            min_max(gap).map_or("-".into(), |m| ms(m.1)),
            median(failed).map_or("-".into(), ms),
            min_max(failed).map_or("-".into(), |m| ms(m.1)),
        );
    }
    let _ = writeln!(o, "\n## Probe cost\n");
    let _ = writeln!(
        o,
        "Both tunnels up and idle; the satellite probes m1 with Rampart's probe (`probe = \
         \"rampart\"`, UDP 259) and m2 with IKEv2 liveness (`probe = \"ike\"`, empty \
         INFORMATIONAL exchanges on the IKE SA: UDP 500, or 4500 with the non-ESP marker). nftables counters on the \
         satellite count its packets to and from each entry point on those ports; bytes are IP \
         bytes (IP + UDP headers + payload).\n"
    );
    let _ = writeln!(
        o,
        "| entry point probed with | window s | packets/s sent | bytes/s sent | packets/s received | bytes/s received |"
    );
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|");
    for (case, what) in [
        ("probe-rampart", "Rampart probe (m1)"),
        ("probe-ike", "IKEv2 liveness (m2)"),
    ] {
        let one = |m: &str, d: usize| {
            s.values(case, m)
                .first()
                .map_or("not run".to_string(), |v| format!("{v:.d$}"))
        };
        let _ = writeln!(
            o,
            "| {what} | {} | {} | {} | {} | {} |",
            one("seconds", 0),
            one("out_pps", 2),
            one("out_bytes_per_s", 1),
            one("in_pps", 2),
            one("in_bytes_per_s", 1),
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_has_the_distribution_and_the_anchor() {
        let text = "preconnect\tfirst_new_ms\t1\t1200\n\
                    preconnect\tfirst_new_ms\t2\t1400\n\
                    preconnect\tfirst_new_ms\t3\tNA\n\
                    preconnect\tconn_gap_ms\t1\t1250\n\
                    preconnect\tfailed_attempts\t1\t4\n\
                    preconnect\tstray\t1\t0\n\
                    probe-rampart\tout_pps\t1\t1.0\n\
                    probe-rampart\tseconds\t1\t30\n";
        let s = Samples::parse(text).unwrap();
        let p = Params {
            failures: 3,
            date: "2026-12-06".into(),
            build: "abc1234".into(),
            machine: "- CPU: test, 2 cores available\n".into(),
            load_start: "1.00 1.00 1.00".into(),
            probe_interval: "1 s".into(),
            restart: false,
        };
        let r = render(&s, &p);
        assert!(
            r.contains("| 2 | 1200 | 1300 | 1400 | 1400 | 1 | < 1,500 ms |"),
            "{r}"
        );
        assert!(r.contains("gives up at 165 s"), "{r}");
        assert!(r.contains("| on-demand") || r.contains("not run"), "{r}");
        assert!(r.contains("| Rampart probe (m1) | 30 | 1.00 |"), "{r}");
        assert!(r.contains("- CPU: test"), "{r}");
    }
}
