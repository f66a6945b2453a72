//! `bench/results/ike.md` from the load generator's JSON results.

use std::fmt::Write as _;

use crate::ike_load::LoadResult;
use crate::stats::percentile;

/// The Markdown report for the responders measured in one run.
pub fn render(results: &[LoadResult], machine: &str, date: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# IKEv2 setup rate\n");
    let _ = writeln!(
        s,
        "Written by `bench/run.sh` on {date}. `rampart-bench ike-load` (one thread, in its own \
         namespace) runs many IKEv2 initiators at once against one responder in another \
         namespace: IKE_SA_INIT + IKE_AUTH with a PSK, AES-256-GCM, PRF-HMAC-SHA256, X25519, one \
         CHILD SA each, distinct identities, all from one address on distinct ports (so both \
         sides see a NAT and move to port 4500). The responders have the equivalent config; \
         both responders' cookie and per-address half-open limits are lifted. \
         The generator does the same public-key work as the responder, on the same 2 cores, so \
         the figures are a lower bound on the responders' capacity and are comparable with each \
         other, not absolute.\n"
    );
    let _ = writeln!(s, "Machine:\n\n{machine}");
    let _ = writeln!(
        s,
        "| responder | IKE SAs/s | p50 setup | p99 setup | established | failed | in flight |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
    for r in results {
        let p = |q| {
            percentile(&r.latencies_ms, q)
                .map(|v| format!("{v:.1} ms"))
                .unwrap_or_else(|| "-".into())
        };
        let _ = writeln!(
            s,
            "| {} | {:.0} | {} | {} | {}/{} | {} | {} |",
            r.label,
            r.rate(),
            p(50.0),
            p(99.0),
            r.established,
            r.total,
            r.failed,
            r.concurrency
        );
    }
    for r in results.iter().filter(|r| !r.errors.is_empty()) {
        let _ = writeln!(s, "\nFailures against {}: {}", r.label, r.errors.join("; "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rate_and_percentiles() {
        let r = LoadResult {
            label: "rampart".into(),
            total: 100,
            concurrency: 8,
            established: 100,
            failed: 0,
            elapsed_s: 0.5,
            latencies_ms: (1..=100).map(f64::from).collect(),
            errors: vec![],
        };
        let md = render(&[r], "- CPU: x\n", "today");
        assert!(
            md.contains("| rampart | 200 | 50.0 ms | 99.0 ms | 100/100 | 0 | 8 |"),
            "{md}"
        );
    }
}
