//! `rampart-bench`: the Rust half of `bench/run.sh`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use rampart_bench::{
    cluster_report, cluster_sync, conns, ike_load, ike_report, machine, mep, mep_report, probe,
    throughput,
};

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
    /// Sends the failover probe stream: one UDP datagram every --interval-us with a sequence
    /// number and send timestamp; prints a JSON summary when done.
    ProbeSend {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long, default_value_t = 1000)]
        interval_us: u64,
        /// Seconds to send for.
        #[arg(long)]
        duration: f64,
        /// Datagram size in bytes (at least 24).
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
    /// Receives the probe stream until its end marker (or --duration) and prints the gap,
    /// losses and reordering as JSON.
    ProbeRecv {
        #[arg(long)]
        listen: SocketAddr,
        /// Longest time to wait for the end marker, in seconds.
        #[arg(long)]
        duration: f64,
        /// Also write the JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// TCP echo server for conn-open.
    ConnServe {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Opens --count TCP connections (one round trip each), writes --ready, keeps them idle,
    /// and when --check-when exists does one more round trip on each; prints the JSON result.
    ConnOpen {
        #[arg(long)]
        connect: SocketAddr,
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        #[arg(long)]
        ready: PathBuf,
        #[arg(long)]
        check_when: Option<PathBuf>,
        /// Seconds to wait for --check-when (without it: to hold the connections).
        #[arg(long, default_value_t = 300.0)]
        hold: f64,
        /// Seconds allowed for one connect or round trip.
        #[arg(long, default_value_t = 20.0)]
        timeout: f64,
        /// Also write the JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Delta sync between two cluster members over loopback UDP: updates/s and wire bytes per
    /// new connection (prints the machine and a JSON result).
    ClusterDelta {
        #[arg(long, default_value_t = 1_000_000)]
        conns: u64,
        /// New connections made on the active member between two socket rounds.
        #[arg(long, default_value_t = 1000)]
        batch: u64,
        /// UDP port of both members (on 127.0.0.1 and 127.0.0.2).
        #[arg(long, default_value_t = 18116)]
        port: u16,
    },
    /// Full sync of --conns connections + --sas SAs over loopback TLS into a receiver child
    /// process: time and the receiver's peak memory (prints the machine and a JSON result).
    ClusterFullsync {
        #[arg(long, default_value_t = 1_000_000)]
        conns: u64,
        #[arg(long, default_value_t = 10_000)]
        sas: u64,
        /// TCP port of both members (on 127.0.0.1 and 127.0.0.2).
        #[arg(long, default_value_t = 18117)]
        port: u16,
    },
    /// The receiving member of cluster-fullsync (started by it).
    #[command(hide = true)]
    ClusterFullsyncRecv {
        #[arg(long)]
        port: u16,
    },
    /// Writes bench/results/cluster.md from cluster.sh's samples.
    ClusterReport {
        #[arg(long)]
        samples: PathBuf,
        #[arg(long)]
        runs: u32,
        #[arg(long)]
        quick: bool,
        #[arg(long)]
        out: PathBuf,
        /// Markdown included as the "Rampart sync engine" section (run B rows, kept apart so
        /// that a re-run does not erase them); missing file: the rows stay open.
        #[arg(long)]
        engine: Option<PathBuf>,
    },
    /// TCP server for mep-probe: answers each connection with the source address it sees.
    WhoServe {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Opens a new TCP connection to a who-serve every --interval-ms for --duration seconds;
    /// writes one line per attempt (start ns, end ns, ok|fail, address seen) to --out.
    MepProbe {
        #[arg(long)]
        connect: SocketAddr,
        #[arg(long, default_value_t = 20)]
        interval_ms: u64,
        #[arg(long, default_value_t = 300)]
        timeout_ms: u64,
        #[arg(long)]
        duration: f64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Reads a mep-probe log and prints `first_new_ms conn_gap_ms attempts failed stray` for
    /// a kill at --kill-ns, the backup's path told by --through (a prefix of the addresses the
    /// server sees through it); exits non-zero when nothing went through the backup.
    MepGap {
        #[arg(long)]
        log: PathBuf,
        #[arg(long)]
        kill_ns: u64,
        #[arg(long)]
        through: String,
    },
    /// Writes bench/results/mep.md from mep.sh's samples.
    MepReport {
        #[arg(long)]
        samples: PathBuf,
        #[arg(long)]
        failures: u32,
        #[arg(long)]
        build: String,
        #[arg(long)]
        load_start: String,
        /// The failures ran in one topology with restarts (mep.sh --restart).
        #[arg(long)]
        restart: bool,
        #[arg(long)]
        out: PathBuf,
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
        Command::ProbeSend {
            to,
            interval_us,
            duration,
            size,
        } => {
            let r = probe::send(
                to,
                Duration::from_micros(interval_us.max(1)),
                Duration::from_secs_f64(duration),
                size,
            )
            .map_err(|e| format!("probe-send: {e}"))?;
            println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
            Ok(())
        }
        Command::ProbeRecv {
            listen,
            duration,
            json,
        } => {
            let r = probe::receive(listen, Duration::from_secs_f64(duration))
                .map_err(|e| format!("probe-recv on {listen}: {e}"))?;
            let text = serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?;
            println!("{text}");
            if let Some(p) = json {
                write(&p, &text)?;
            }
            Ok(())
        }
        Command::ConnServe { listen } => runtime()?
            .block_on(conns::serve(listen))
            .map_err(|e| format!("conn-serve on {listen}: {e}")),
        Command::ConnOpen {
            connect,
            count,
            concurrency,
            ready,
            check_when,
            hold,
            timeout,
            json,
        } => {
            let r = runtime()?.block_on(conns::open_and_check(conns::OpenParams {
                connect,
                count,
                concurrency,
                ready,
                check_when,
                hold: Duration::from_secs_f64(hold),
                timeout: Duration::from_secs_f64(timeout),
            }))?;
            let text = serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?;
            println!("{text}");
            if let Some(p) = json {
                write(&p, &text)?;
            }
            Ok(())
        }
        Command::ClusterDelta { conns, batch, port } => {
            print!("{}", machine::describe());
            let r = cluster_sync::delta(conns, batch.max(1), port)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?
            );
            print!("{}", machine::describe());
            Ok(())
        }
        Command::ClusterFullsync { conns, sas, port } => {
            print!("{}", machine::describe());
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let r = cluster_sync::fullsync(conns, sas, port, &exe)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?
            );
            print!("{}", machine::describe());
            Ok(())
        }
        Command::ClusterFullsyncRecv { port } => cluster_sync::fullsync_recv(port),
        Command::ClusterReport {
            samples,
            runs,
            quick,
            out,
            engine,
        } => {
            let engine = match engine {
                Some(path) if path.exists() => Some(read(&path)?),
                _ => None,
            };
            let parsed = cluster_report::Samples::parse(&read(&samples)?)?;
            let params = cluster_report::Params {
                runs,
                quick,
                machine: machine::describe(),
                date: today(),
                engine,
            };
            write(&out, &cluster_report::render(&parsed, &params))
        }
        Command::WhoServe { listen } => {
            mep::who_serve(listen).map_err(|e| format!("who-serve {listen}: {e}"))
        }
        Command::MepProbe {
            connect,
            interval_ms,
            timeout_ms,
            duration,
            out,
        } => {
            let log = mep::conn_probe(
                connect,
                Duration::from_millis(interval_ms),
                Duration::from_millis(timeout_ms),
                Duration::from_secs_f64(duration),
            );
            write(&out, &log)
        }
        Command::MepGap {
            log,
            kill_ns,
            through,
        } => {
            let attempts = mep::parse_log(&read(&log)?)?;
            mep::in_prefix(std::net::Ipv4Addr::UNSPECIFIED.into(), &through)?;
            let g = mep::gap(&attempts, kill_ns, |ip| {
                mep::in_prefix(ip, &through).unwrap_or(false)
            })
            .ok_or_else(|| format!("no new connection through {through} after the kill"))?;
            println!(
                "{:.1} {:.1} {} {} {}",
                g.first_new_ms, g.conn_gap_ms, g.attempts, g.failed, g.stray
            );
            Ok(())
        }
        Command::MepReport {
            samples,
            failures,
            build,
            load_start,
            restart,
            out,
        } => {
            let parsed = cluster_report::Samples::parse(&read(&samples)?)?;
            let params = mep_report::Params {
                failures,
                date: today(),
                build,
                machine: machine::describe(),
                load_start,
                probe_interval: "1 s".into(),
                restart,
            };
            write(&out, &mep_report::render(&parsed, &params))
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))
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
