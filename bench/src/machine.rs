//! Facts about the machine a benchmark ran on, for the result files.

use std::fmt::Write as _;

/// CPU model, core count, kernel and memory, as Markdown list lines.
pub fn describe() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']))
        })
        .unwrap_or("unknown")
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let mut s = String::new();
    let _ = writeln!(s, "- CPU: {model}, {cores} cores available");
    let _ = writeln!(s, "- memory: {:.1} GiB", mem_kib as f64 / 1024.0 / 1024.0);
    let _ = writeln!(s, "- kernel: {kernel}");
    let _ = writeln!(s, "- load average when the report was written: {load}");
    s
}
