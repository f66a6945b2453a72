//! `bench/results/throughput.md` from the samples `bench/run.sh` collects.
//!
//! Sample file: one line per iperf3 run, tab-separated `case test run value`, where `test` is
//! `tcp1` / `tcp4` (bits/s received) or `udp64` (packets/s received) and `value` is `NA` when
//! the run failed. Failed runs are counted and shown, never averaged in.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::stats::{median, min_max};

/// The cases in report order, with their labels.
pub const CASES: &[(&str, &str)] = &[
    ("raw", "raw veth routing (no tunnel)"),
    ("rampart-esp", "Rampart, raw ESP"),
    ("rampart-udp", "Rampart, ESP-in-UDP"),
    (
        "rampart-udp-baseline",
        "Rampart, ESP-in-UDP, baseline build (`--baseline BIN`: the code before a change)",
    ),
    (
        "rampart-udp-ct1",
        "Rampart, ESP-in-UDP, 1 cipher thread (`crypto_threads = 1`)",
    ),
    ("boringtun", "boringtun (WireGuard, userspace)"),
    (
        "strongswan",
        "strongSwan 5.9.8 kernel-libipsec (ESP-in-UDP)",
    ),
];
/// The case every tunnel is compared with ("ratio to Rampart"): ESP-in-UDP, Rampart's fast path
/// (UDP GSO/GRO batch whole TCP super-packets; raw ESP sockets have no segmentation offload).
pub const REFERENCE: &str = "rampart-udp";
const TESTS: &[(&str, &str, Unit)] = &[
    ("tcp1", "One TCP stream", Unit::Bits),
    (
        "cpu1",
        "One TCP stream: CPU cost (busy CPU seconds of the whole machine per GB received: \
         iperf3, kernel and both gateways, steal left out; lower is better, \"vs\" columns are \
         cost ratios)",
        Unit::CpuPerGb,
    ),
    ("tcp4", "Four TCP streams", Unit::Bits),
    (
        "udp64",
        "UDP, 64-byte payloads (received packets/s)",
        Unit::Packets,
    ),
];

#[derive(Clone, Copy)]
enum Unit {
    Bits,
    Packets,
    /// CPU seconds per GB.
    CpuPerGb,
}

impl Unit {
    fn show(self, v: f64) -> String {
        match self {
            Unit::Bits => format!("{:.2} Gbit/s", v / 1e9),
            Unit::Packets => format!("{:.0} kpps", v / 1e3),
            Unit::CpuPerGb => format!("{v:.2} s/GB"),
        }
    }
}

/// The samples of one (case, test): successful values and the number of failed runs.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Samples {
    pub values: Vec<f64>,
    pub failed: usize,
}

/// Parses the sample file; malformed lines are errors naming the line.
pub fn parse_samples(text: &str) -> Result<BTreeMap<(String, String), Samples>, String> {
    let mut map: BTreeMap<(String, String), Samples> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let [case, test, _run, value] = fields[..] else {
            return Err(format!(
                "samples line {}: want 4 tab-separated fields: {line}",
                n + 1
            ));
        };
        let entry = map.entry((case.to_owned(), test.to_owned())).or_default();
        match value.trim().parse::<f64>() {
            Ok(v) if v.is_finite() => entry.values.push(v),
            _ => entry.failed += 1,
        }
    }
    Ok(map)
}

/// Run parameters shown in the report.
pub struct Params {
    pub runs: u32,
    pub seconds: u32,
    pub machine: String,
    pub date: String,
}

/// The whole Markdown report.
pub fn render(samples: &BTreeMap<(String, String), Samples>, p: &Params) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Tunnel throughput, side by side\n");
    let _ = writeln!(
        s,
        "Written by `bench/run.sh` on {}: {} run(s) of {} s per case and test, iperf3 from h1 to h2 \
         through `h1 - gw1 - gw2 - h2` (veth links, network namespaces, one machine). Figures are \
         medians with min-max; \"vs raw\" is the share of the raw-veth median, \"vs Rampart\" the \
         ratio to Rampart ESP-in-UDP (its batched fast path). All tunnels use AES-256-GCM (boringtun: ChaCha20-Poly1305, \
         WireGuard has no choice).\n",
        p.date, p.runs, p.seconds
    );
    let _ = writeln!(s, "Machine:\n\n{}", p.machine);
    for &(test, title, unit) in TESTS {
        let _ = writeln!(s, "## {title}\n");
        let _ = writeln!(
            s,
            "| tunnel | median | min - max | vs raw | vs Rampart | failed runs |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
        let med = |case: &str| {
            samples
                .get(&(case.to_owned(), test.to_owned()))
                .and_then(|x| median(&x.values))
        };
        let raw = med("raw");
        let reference = med(REFERENCE);
        for &(case, label) in CASES {
            let Some(x) = samples.get(&(case.to_owned(), test.to_owned())) else {
                continue;
            };
            let m = median(&x.values);
            let range = min_max(&x.values)
                .map(|(lo, hi)| format!("{} - {}", unit.show(lo), unit.show(hi)))
                .unwrap_or_else(|| "-".into());
            let ratio = |base: Option<f64>, pct: bool| match (m, base) {
                (Some(m), Some(b)) if b > 0.0 => {
                    if pct {
                        format!("{:.0}%", 100.0 * m / b)
                    } else {
                        format!("{:.2}x", m / b)
                    }
                }
                _ => "-".into(),
            };
            let _ = writeln!(
                s,
                "| {label} | {} | {range} | {} | {} | {} |",
                m.map(|m| unit.show(m)).unwrap_or_else(|| "failed".into()),
                ratio(raw, true),
                ratio(reference, false),
                x.failed
            );
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "## Targets (issue 6)\n");
    let get = |case: &str| {
        samples
            .get(&(case.to_owned(), "tcp1".to_owned()))
            .and_then(|x| median(&x.values))
    };
    let (raw, bt) = (get("raw"), get("boringtun"));
    for case in ["rampart-esp", "rampart-udp", "rampart-udp-ct1"] {
        let Some(r) = get(case) else { continue };
        if let Some(raw) = raw.filter(|v| *v > 0.0) {
            let share = 100.0 * r / raw;
            let _ = writeln!(
                s,
                "- {case}, one TCP stream >= 25% of raw veth: {share:.0}% ({})",
                if share >= 25.0 { "met" } else { "missed" }
            );
        }
        if let Some(bt) = bt.filter(|v| *v > 0.0) {
            let x = r / bt;
            let _ = writeln!(
                s,
                "- {case}, one TCP stream >= 10x boringtun: {x:.1}x ({})",
                if x >= 10.0 { "met" } else { "missed" }
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders() {
        let text = "raw\ttcp1\t1\t10e9\nraw\ttcp1\t2\t12e9\nraw\ttcp1\t3\tNA\n\
                    rampart-udp\ttcp1\t1\t3e9\nboringtun\ttcp1\t1\t0.25e9\n\
                    rampart-udp\tudp64\t1\t400000\n\
                    raw\tcpu1\t1\t0.5\nrampart-udp\tcpu1\t1\t4.25\n";
        let m = parse_samples(text).unwrap();
        let raw = &m[&("raw".into(), "tcp1".into())];
        assert_eq!(raw.values, vec![10e9, 12e9]);
        assert_eq!(raw.failed, 1);
        let p = Params {
            runs: 3,
            seconds: 10,
            machine: "- CPU: test\n".into(),
            date: "today".into(),
        };
        let md = render(&m, &p);
        assert!(md.contains("| raw veth routing (no tunnel) | 11.00 Gbit/s | 10.00 Gbit/s - 12.00 Gbit/s | 100% | 3.67x | 1 |"), "{md}");
        assert!(
            md.contains(
                "| Rampart, ESP-in-UDP | 3.00 Gbit/s | 3.00 Gbit/s - 3.00 Gbit/s | 27% | 1.00x | 0 |"
            ),
            "{md}"
        );
        assert!(
            md.contains("one TCP stream >= 25% of raw veth: 27% (met)"),
            "{md}"
        );
        assert!(
            md.contains("one TCP stream >= 10x boringtun: 12.0x (met)"),
            "{md}"
        );
        assert!(md.contains("| Rampart, ESP-in-UDP | 400 kpps |"), "{md}");
        assert!(
            md.contains(
                "| Rampart, ESP-in-UDP | 4.25 s/GB | 4.25 s/GB - 4.25 s/GB | 850% | 1.00x | 0 |"
            ),
            "{md}"
        );
    }

    #[test]
    fn rejects_malformed_lines() {
        assert!(parse_samples("raw\ttcp1\t1\n").is_err());
        assert!(parse_samples("\n").unwrap().is_empty());
    }
}
