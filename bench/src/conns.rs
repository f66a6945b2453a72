//! Many idle TCP connections through the cluster: `conn-serve` (an echo server on the remote
//! host) and `conn-open` (opens N connections from the LAN host, one round trip on each, keeps
//! them idle, and when told to, checks that every one still exchanges data: after a failover,
//! a connection whose state the new active member lacks gets a RST or never answers).
//!
//! Each round trip writes 16 bytes (connection index and round, big-endian) and expects the
//! same 16 bytes back.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;

use crate::probe::unix_ns;

/// Echo server: every accepted connection gets back what it sends, until it closes.
pub async fn serve(listen: SocketAddr) -> std::io::Result<()> {
    let sock = if listen.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(listen)?;
    let listener: TcpListener = sock.listen(4096)?;
    loop {
        let (mut s, _) = listener.accept().await?;
        tokio::spawn(async move {
            let mut buf = [0u8; 256];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
}

/// Parameters of `conn-open`.
#[derive(Debug, Clone)]
pub struct OpenParams {
    pub connect: SocketAddr,
    pub count: usize,
    /// Connections being opened at once.
    pub concurrency: usize,
    /// Written (atomically) once every connection is open: an [`OpenReport`] as JSON.
    pub ready: PathBuf,
    /// When this file appears, every connection does another round trip; `None`: hold the
    /// connections until `hold` has passed, then close them.
    pub check_when: Option<PathBuf>,
    /// Longest wait for `check_when` (and without it, how long the connections are held).
    pub hold: Duration,
    /// Time allowed for one round trip (and one connect).
    pub timeout: Duration,
}

/// Written to `ready` when the connections are open.
#[derive(Debug, Clone, Serialize)]
pub struct OpenReport {
    pub requested: usize,
    pub opened: usize,
    pub open_failed: usize,
    pub open_errors: Vec<String>,
    pub open_start_unix_ns: u64,
    pub open_end_unix_ns: u64,
    pub open_seconds: f64,
}

/// The final result of `conn-open`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub open: OpenReport,
    /// Whether the check ran (the trigger file appeared in time).
    pub checked: bool,
    pub check_ok: usize,
    /// Connections open before that failed their round trip after (reset, timed out, wrong
    /// bytes): the connections lost.
    pub check_failed: usize,
    pub check_errors: Vec<String>,
    pub check_seconds: f64,
}

/// Keeps the first few distinct error messages with counts.
fn note_error(errors: &mut Vec<String>, counts: &mut Vec<usize>, msg: String) {
    if let Some(i) = errors.iter().position(|e| *e == msg) {
        counts[i] += 1;
    } else if errors.len() < 8 {
        errors.push(msg);
        counts.push(1);
    }
}

fn summarize(errors: Vec<String>, counts: Vec<usize>) -> Vec<String> {
    errors
        .into_iter()
        .zip(counts)
        .map(|(e, n)| format!("{n} x {e}"))
        .collect()
}

async fn round_trip(
    s: &mut TcpStream,
    index: u64,
    round: u64,
    timeout: Duration,
) -> Result<(), String> {
    let mut msg = [0u8; 16];
    msg[..8].copy_from_slice(&index.to_be_bytes());
    msg[8..].copy_from_slice(&round.to_be_bytes());
    let io = async {
        s.write_all(&msg).await?;
        let mut back = [0u8; 16];
        s.read_exact(&mut back).await?;
        Ok::<_, std::io::Error>(back)
    };
    match tokio::time::timeout(timeout, io).await {
        Err(_) => Err("round trip timed out".into()),
        Ok(Err(e)) => Err(format!("{:?}", e.kind())),
        Ok(Ok(back)) if back == msg => Ok(()),
        Ok(Ok(_)) => Err("echo differs".into()),
    }
}

fn write_atomic(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Opens the connections, reports them open, waits, checks them.
pub async fn open_and_check(p: OpenParams) -> Result<CheckReport, String> {
    let sem = Arc::new(Semaphore::new(p.concurrency.max(1)));
    let start = unix_ns();
    let mut tasks = Vec::with_capacity(p.count);
    for i in 0..p.count {
        let sem = sem.clone();
        let (to, timeout) = (p.connect, p.timeout);
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.expect("never closed");
            let mut s = tokio::time::timeout(timeout, TcpStream::connect(to))
                .await
                .map_err(|_| "connect timed out".to_string())?
                .map_err(|e| format!("connect: {:?}", e.kind()))?;
            let _ = s.set_nodelay(true);
            round_trip(&mut s, i as u64, 0, timeout).await?;
            Ok::<_, String>(s)
        }));
    }
    let mut streams = Vec::with_capacity(p.count);
    let (mut errors, mut counts) = (Vec::new(), Vec::new());
    for t in tasks {
        match t.await.map_err(|e| e.to_string())? {
            Ok(s) => streams.push(s),
            Err(e) => note_error(&mut errors, &mut counts, e),
        }
    }
    let end = unix_ns();
    let open = OpenReport {
        requested: p.count,
        opened: streams.len(),
        open_failed: p.count - streams.len(),
        open_errors: summarize(errors, counts),
        open_start_unix_ns: start,
        open_end_unix_ns: end,
        open_seconds: (end - start) as f64 / 1e9,
    };
    write_atomic(
        &p.ready,
        &serde_json::to_string_pretty(&open).map_err(|e| e.to_string())?,
    )?;

    let Some(trigger) = p.check_when else {
        tokio::time::sleep(p.hold).await;
        return Ok(CheckReport {
            open,
            checked: false,
            check_ok: 0,
            check_failed: 0,
            check_errors: Vec::new(),
            check_seconds: 0.0,
        });
    };
    let deadline = tokio::time::Instant::now() + p.hold;
    while !trigger.exists() {
        if tokio::time::Instant::now() >= deadline {
            return Ok(CheckReport {
                open,
                checked: false,
                check_ok: 0,
                check_failed: 0,
                check_errors: vec![format!("{} did not appear", trigger.display())],
                check_seconds: 0.0,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let check_start = unix_ns();
    let mut tasks = Vec::with_capacity(streams.len());
    for (i, mut s) in streams.into_iter().enumerate() {
        let sem = sem.clone();
        let timeout = p.timeout;
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.expect("never closed");
            round_trip(&mut s, i as u64, 1, timeout).await
        }));
    }
    let (mut ok, mut failed) = (0, 0);
    let (mut errors, mut counts) = (Vec::new(), Vec::new());
    for t in tasks {
        match t.await.map_err(|e| e.to_string())? {
            Ok(()) => ok += 1,
            Err(e) => {
                failed += 1;
                note_error(&mut errors, &mut counts, e);
            }
        }
    }
    Ok(CheckReport {
        open,
        checked: true,
        check_ok: ok,
        check_failed: failed,
        check_errors: summarize(errors, counts),
        check_seconds: (unix_ns() - check_start) as f64 / 1e9,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn open_hold_and_check_over_loopback() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        tokio::spawn(serve(addr));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let dir = std::env::temp_dir().join(format!("rpb-conns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ready = dir.join("ready.json");
        let trigger = dir.join("go");
        let t2 = trigger.clone();
        let r2 = ready.clone();
        tokio::spawn(async move {
            while !r2.exists() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            std::fs::write(&t2, "").unwrap();
        });
        let report = open_and_check(OpenParams {
            connect: addr,
            count: 50,
            concurrency: 8,
            ready: ready.clone(),
            check_when: Some(trigger),
            hold: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
        })
        .await
        .unwrap();
        assert_eq!(report.open.opened, 50, "{:?}", report.open.open_errors);
        assert!(report.checked);
        assert_eq!(report.check_ok, 50, "{:?}", report.check_errors);
        assert_eq!(report.check_failed, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
