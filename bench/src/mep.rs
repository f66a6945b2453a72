//! The MEP failover benchmark's tools (`bench/mep.sh`): a TCP server that tells each client the
//! source address it sees (with IP Pool NAT: which entry point carried the connection), a
//! prober that opens a new connection every interval and logs each attempt, and the analysis of
//! that log around a kill.
//!
//! Attempt log: one line per attempt, `start_ns <TAB> end_ns <TAB> ok|fail <TAB> seen` (Unix
//! nanoseconds; `seen` is the address the server reported, `-` when the attempt failed).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::probe::unix_ns;

/// Serves forever: each connection gets `<source address>\n`, then is closed.
pub fn who_serve(listen: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen)?;
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let Ok(peer) = s.peer_addr() else { continue };
        let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
        let _ = s.write_all(format!("{}\n", peer.ip()).as_bytes());
    }
    Ok(())
}

/// One new connection; the address the server saw.
fn attempt(to: SocketAddr, timeout: Duration) -> Result<IpAddr, String> {
    let mut s = TcpStream::connect_timeout(&to, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    text.trim().parse().map_err(|e| format!("{text:?}: {e}"))
}

/// Starts a new connection every `interval` for `duration`, each on its own thread with
/// `timeout`, so an attempt stuck on a dead entry point does not delay the next ones (the
/// failover is measured to within `interval`); returns the attempt log in start order.
pub fn conn_probe(
    to: SocketAddr,
    interval: Duration,
    timeout: Duration,
    duration: Duration,
) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    let until = Instant::now() + duration;
    let mut next = Instant::now();
    let mut threads = Vec::new();
    while Instant::now() < until {
        let tx = tx.clone();
        threads.push(std::thread::spawn(move || {
            let start_ns = unix_ns();
            let r = attempt(to, timeout);
            let end_ns = unix_ns();
            let _ = tx.send((start_ns, end_ns, r.ok()));
        }));
        next += interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
    }
    drop(tx);
    for t in threads {
        let _ = t.join();
    }
    let mut done: Vec<(u64, u64, Option<IpAddr>)> = rx.into_iter().collect();
    done.sort_by_key(|(start, _, _)| *start);
    let mut log = String::new();
    for (start_ns, end_ns, seen) in done {
        match seen {
            Some(ip) => log.push_str(&format!("{start_ns}\t{end_ns}\tok\t{ip}\n")),
            None => log.push_str(&format!("{start_ns}\t{end_ns}\tfail\t-\n")),
        }
    }
    log
}

/// One line of the attempt log.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub start_ns: u64,
    pub end_ns: u64,
    pub seen: Option<IpAddr>,
}

pub fn parse_log(text: &str) -> Result<Vec<Attempt>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            let f: Vec<&str> = l.split('\t').collect();
            let bad = || format!("attempt log line {}: {l:?}", i + 1);
            if f.len() != 4 {
                return Err(bad());
            }
            Ok(Attempt {
                start_ns: f[0].parse().map_err(|_| bad())?,
                end_ns: f[1].parse().map_err(|_| bad())?,
                seen: match f[2] {
                    "ok" => Some(f[3].parse().map_err(|_| bad())?),
                    _ => None,
                },
            })
        })
        .collect()
}

/// A failover as new connections saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Gap {
    /// From the kill to the end of the first new connection (started after the kill) that went
    /// through the backup.
    pub first_new_ms: f64,
    /// The longest interval after the kill without a completed new connection.
    pub conn_gap_ms: f64,
    /// Attempts started after the kill, and how many failed.
    pub attempts: usize,
    pub failed: usize,
    /// Successful attempts after the first one through the backup that went elsewhere.
    pub stray: usize,
}

/// Analyses the log around `kill_ns`; `through_backup` tells addresses of the backup's path.
/// `None` when no connection went through the backup.
pub fn gap(
    attempts: &[Attempt],
    kill_ns: u64,
    through_backup: impl Fn(IpAddr) -> bool,
) -> Option<Gap> {
    let after: Vec<&Attempt> = attempts.iter().filter(|a| a.start_ns >= kill_ns).collect();
    let first = after.iter().find(|a| a.seen.is_some_and(&through_backup))?;
    let mut last = kill_ns;
    let mut longest = 0u64;
    for a in after.iter().filter(|a| a.seen.is_some()) {
        longest = longest.max(a.end_ns.saturating_sub(last));
        last = last.max(a.end_ns);
    }
    Some(Gap {
        first_new_ms: first.end_ns.saturating_sub(kill_ns) as f64 / 1e6,
        conn_gap_ms: longest as f64 / 1e6,
        attempts: after.len(),
        failed: after.iter().filter(|a| a.seen.is_none()).count(),
        stray: after
            .iter()
            .filter(|a| a.start_ns >= first.end_ns)
            .filter(|a| a.seen.is_some_and(|ip| !through_backup(ip)))
            .count(),
    })
}

/// Whether `ip` lies in the IPv4 prefix `prefix` (`a.b.c.d/len`).
pub fn in_prefix(ip: IpAddr, prefix: &str) -> Result<bool, String> {
    let (net, len) = prefix
        .split_once('/')
        .ok_or_else(|| format!("not a prefix: {prefix}"))?;
    let net: std::net::Ipv4Addr = net.parse().map_err(|e| format!("{prefix}: {e}"))?;
    let len: u32 = len.parse().map_err(|e| format!("{prefix}: {e}"))?;
    if len > 32 {
        return Err(format!("{prefix}: prefix length"));
    }
    let IpAddr::V4(ip) = ip else { return Ok(false) };
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Ok(u32::from(ip) & mask == u32::from(net) & mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_from_the_kill_to_the_first_connection_through_the_backup() {
        let log = "1000\t1500\tok\t10.4.1.1\n\
                   2000\t2300000000\tfail\t-\n\
                   2300000100\t2300000200\tfail\t-\n\
                   2400000000\t2410000000\tok\t10.4.2.1\n\
                   2420000000\t2430000000\tok\t10.4.2.1\n";
        let a = parse_log(log).unwrap();
        assert_eq!(a.len(), 5);
        let g = gap(&a, 1800, |ip| in_prefix(ip, "10.4.2.0/24").unwrap()).unwrap();
        assert!((g.first_new_ms - 2409.9982).abs() < 1e-3, "{g:?}");
        assert!((g.conn_gap_ms - 2409.9982).abs() < 1e-3, "{g:?}");
        assert_eq!((g.attempts, g.failed, g.stray), (4, 2, 0));
        assert!(gap(&a, 1800, |ip| in_prefix(ip, "10.9.0.0/16").unwrap()).is_none());
    }

    #[test]
    fn prefixes_match() {
        let ip: IpAddr = "10.4.2.77".parse().unwrap();
        assert!(in_prefix(ip, "10.4.2.0/24").unwrap());
        assert!(!in_prefix(ip, "10.4.1.0/24").unwrap());
        assert!(in_prefix(ip, "0.0.0.0/0").unwrap());
        assert!(in_prefix(ip, "10.4.2.77/32").unwrap());
        assert!(in_prefix(ip, "10.4.2.0").is_err());
    }
}
