//! `rampart-bench`: the Rust half of `bench/run.sh`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use rampart_bench::{ike_load, ike_report, machine, throughput};

#[derive(Parser)]
#[command(about = "Rampart benchmark harness helpers (driven by bench/run.sh)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes the throughput report from run.sh's iperf3 samples.
    ThroughputReport {
        #[arg(long)]
        samples: PathBuf,
        #[arg(long)]
        runs: u32,
        #[arg(long)]
        seconds: u32,
        #[arg(long)]
        out: PathBuf,
    },
    /// Runs many concurrent IKEv2 initiators against one responder; prints a summary line.
    IkeLoad {
        #[arg(long)]
        local: IpAddr,
        #[arg(long)]
        remote: IpAddr,
        #[arg(long, default_value_t = 1000)]
        total: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Name of the responder, for the report.
        #[arg(long)]
        label: String,
        /// Seconds one client may take before it counts as failed.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Where the full result goes (JSON, read by ike-report).
        #[arg(long)]
        json: PathBuf,
    },
    /// Writes the IKE report from ike-load JSON results.
    IkeReport {
        #[arg(long)]
        out: PathBuf,
        results: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), String> {
    let read =
        |p: &PathBuf| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let write = |p: &PathBuf, text: &str| {
        std::fs::write(p, text).map_err(|e| format!("{}: {e}", p.display()))
    };
    match command {
        Command::ThroughputReport {
            samples,
            runs,
            seconds,
            out,
        } => {
            let parsed = throughput::parse_samples(&read(&samples)?)?;
            let params = throughput::Params {
                runs,
                seconds,
                machine: machine::describe(),
                date: today(),
            };
            write(&out, &throughput::render(&parsed, &params))
        }
        Command::IkeLoad {
            local,
            remote,
            total,
            concurrency,
            label,
            timeout,
            json,
        } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("tokio runtime: {e}"))?;
            let result = rt.block_on(ike_load::run(ike_load::LoadParams {
                label,
                local,
                remote,
                total,
                concurrency,
                timeout: Duration::from_secs(timeout),
            }));
            let p50 = rampart_bench::stats::percentile(&result.latencies_ms, 50.0).unwrap_or(0.0);
            let p99 = rampart_bench::stats::percentile(&result.latencies_ms, 99.0).unwrap_or(0.0);
            println!(
                "{}: {}/{} IKE SAs in {:.2} s = {:.0}/s, p50 {p50:.1} ms, p99 {p99:.1} ms, {} failed {:?}",
                result.label,
                result.established,
                result.total,
                result.elapsed_s,
                result.rate(),
                result.failed,
                result.errors
            );
            let text = serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?;
            write(&json, &text)
        }
        Command::IkeReport { out, results } => {
            let mut all = Vec::new();
            for p in &results {
                // A responder whose run failed entirely leaves no file: report what exists.
                let Ok(text) = read(p) else {
                    eprintln!("warning: {} missing; left out of the report", p.display());
                    continue;
                };
                all.push(serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?);
            }
            write(
                &out,
                &ike_report::render(&all, &machine::describe(), &today()),
            )
        }
    }
}

/// Today's date (UTC) as YYYY-MM-DD, from the system clock.
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    // Civil-from-days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
