//! Repeated new TCP connections and a running ping: what a failover looks like to new
//! connections.
//!
//! [`WhoServer`] accepts TCP connections in one namespace and answers each with the source
//! address it sees (with IP Pool NAT: the pool address of the entry point that carried the
//! connection), then closes. [`Connector`] opens a fresh connection every interval from another
//! namespace (a new source port each time: a new flow for the satellite to resolve) and records
//! when each attempt started and ended and what the server saw. [`PingLog`] is `ping -D` with its
//! replies' timestamps. All threads run in this test process (`setns`), see [`crate::traffic`].

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::netns::{Netns, Process};
use crate::traffic::spawn_in;

/// A TCP server that tells each client its source address as seen by the server.
#[derive(Debug)]
pub struct WhoServer {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<IpAddr>>>,
    handle: Option<JoinHandle<Result<(), String>>>,
}

impl WhoServer {
    /// Listens on `listen` inside `ns`; returns once it listens.
    #[track_caller]
    pub fn start(ns: &Netns, listen: SocketAddr) -> WhoServer {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let handle = spawn_in(ns, move || {
            let listener = match TcpListener::bind(listen) {
                Ok(l) => l,
                Err(e) => {
                    let msg = format!("bind {listen}: {e}");
                    let _ = tx.send(Err(msg.clone()));
                    return Err(msg);
                }
            };
            listener
                .set_nonblocking(true)
                .map_err(|e| format!("nonblocking: {e}"))?;
            let _ = tx.send(Ok(()));
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, peer)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
                        let _ = s.write_all(format!("{}\n", peer.ip()).as_bytes());
                        if let Ok(mut v) = seen2.lock() {
                            v.push(peer.ip());
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => return Err(format!("accept: {e}")),
                }
            }
            Ok(())
        });
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("who-server: {e}"),
            Err(e) => panic!("who-server did not start: {e}"),
        }
        WhoServer {
            stop,
            seen,
            handle: Some(handle),
        }
    }

    /// Every source address the server answered so far, in order.
    pub fn seen(&self) -> Vec<IpAddr> {
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Drop for WhoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// One connection attempt of a [`Connector`].
#[derive(Debug, Clone)]
pub struct Attempt {
    pub start: Instant,
    pub end: Instant,
    /// The source address the server saw, or why the attempt failed.
    pub seen: Result<IpAddr, String>,
}

impl Attempt {
    pub fn ok(&self) -> bool {
        self.seen.is_ok()
    }
}

/// One new connection to `to` (optionally from `source`), answered by a [`WhoServer`].
pub fn connect_once(
    to: SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
) -> Result<IpAddr, String> {
    let mut s = match source {
        None => TcpStream::connect_timeout(&to, timeout).map_err(|e| format!("connect: {e}"))?,
        Some(src) => connect_from(src, to, timeout)?,
    };
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text)
        .map_err(|e| format!("read: {e}"))?;
    text.trim()
        .parse()
        .map_err(|e| format!("answer {text:?}: {e}"))
}

/// A TCP connection bound to `src` (port chosen by the kernel); the connect gives up after
/// `timeout` (SO_SNDTIMEO bounds connect(2) on Linux).
fn connect_from(src: IpAddr, to: SocketAddr, timeout: Duration) -> Result<TcpStream, String> {
    use std::os::fd::FromRawFd;
    let (IpAddr::V4(src), SocketAddr::V4(to)) = (src, to) else {
        return Err("IPv4 only".into());
    };
    let sin = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor this function owns; every pointer passed
    // points to a live local of the stated size. The descriptor is closed on every error path
    // or handed to TcpStream, which owns it from then on.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(format!("socket: {}", std::io::Error::last_os_error()));
        }
        let stream = TcpStream::from_raw_fd(fd);
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        let rc = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
        if rc != 0 {
            return Err(format!("SO_SNDTIMEO: {}", std::io::Error::last_os_error()));
        }
        let local = sin(src, 0);
        if libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(format!("bind {src}: {}", std::io::Error::last_os_error()));
        }
        let remote = sin(*to.ip(), to.port());
        if libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(format!(
                "connect {to} from {src}: {}",
                std::io::Error::last_os_error()
            ));
        }
        stream.set_write_timeout(None).map_err(|e| e.to_string())?;
        Ok(stream)
    }
}

/// A new connection every interval, until stopped.
#[derive(Debug)]
pub struct Connector {
    stop: Arc<AtomicBool>,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    handle: Option<JoinHandle<Result<(), String>>>,
}

impl Connector {
    /// From `ns` to `to`: one attempt every `interval` (or at once after an attempt that took
    /// longer), each allowed `timeout` for the connect and the answer.
    pub fn start(ns: &Netns, to: SocketAddr, interval: Duration, timeout: Duration) -> Connector {
        let stop = Arc::new(AtomicBool::new(false));
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let (stop2, attempts2) = (stop.clone(), attempts.clone());
        let handle = spawn_in(ns, move || {
            while !stop2.load(Ordering::Relaxed) {
                let start = Instant::now();
                let seen = connect_once(to, None, timeout);
                let end = Instant::now();
                if let Ok(mut v) = attempts2.lock() {
                    v.push(Attempt { start, end, seen });
                }
                let next = start + interval;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                }
            }
            Ok(())
        });
        Connector {
            stop,
            attempts,
            handle: Some(handle),
        }
    }

    /// The attempts so far.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.attempts.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Stops after the attempt in progress; returns every attempt.
    pub fn finish(mut self) -> Vec<Attempt> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.attempts()
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The first successful attempt that started at or after `t` and whose seen address satisfies
/// `pred`.
pub fn first_ok_after(
    attempts: &[Attempt],
    t: Instant,
    pred: impl Fn(IpAddr) -> bool,
) -> Option<&Attempt> {
    attempts
        .iter()
        .find(|a| a.start >= t && a.seen.as_ref().is_ok_and(|ip| pred(*ip)))
}

/// The longest time between the completions of two consecutive successful attempts (or from
/// `from` to the first one) among attempts that started at or after `from`.
pub fn longest_gap(attempts: &[Attempt], from: Instant) -> Duration {
    let mut last = from;
    let mut gap = Duration::ZERO;
    for a in attempts.iter().filter(|a| a.start >= from && a.ok()) {
        gap = gap.max(a.end.saturating_duration_since(last));
        last = last.max(a.end);
    }
    gap
}

/// Seconds since the Unix epoch (ping -D timestamps use this clock).
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A running `ping -D` whose replies carry their wall-clock arrival time.
#[derive(Debug)]
pub struct PingLog {
    process: Process,
}

impl PingLog {
    /// `ping -n -D -O -i <interval> <to>` in `ns`, output to `<dir>/<label>.log`.
    #[track_caller]
    pub fn start(ns: &Netns, dir: &Path, label: &str, to: &str, interval: Duration) -> PingLog {
        let i = format!("{:.3}", interval.as_secs_f64());
        let process = ns.spawn(
            dir,
            label,
            &["ping", "-n", "-D", "-O", "-i", &i, "-W", "1", to],
        );
        PingLog { process }
    }

    /// Arrival times (Unix seconds) of the replies so far.
    pub fn replies(&self) -> Vec<f64> {
        parse_ping_replies(&self.process.log())
    }

    /// Stops ping (SIGINT) and returns the arrival times of every reply.
    pub fn finish(mut self) -> Vec<f64> {
        self.process.stop(libc::SIGINT, Duration::from_secs(2));
        self.replies()
    }
}

/// The `[1700000000.123456] 64 bytes from ...` lines of `ping -D` output, as Unix seconds.
pub fn parse_ping_replies(log: &str) -> Vec<f64> {
    log.lines()
        .filter(|l| l.contains(" bytes from "))
        .filter_map(|l| {
            let ts = l.strip_prefix('[')?.split(']').next()?;
            ts.parse().ok()
        })
        .collect()
}

/// The longest interval without a reply from `from` on (Unix seconds), up to the last reply.
pub fn longest_reply_gap(replies: &[f64], from: f64) -> f64 {
    let mut last = from;
    let mut gap: f64 = 0.0;
    for &t in replies.iter().filter(|&&t| t >= from) {
        gap = gap.max(t - last);
        last = t;
    }
    gap
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_lines_parse() {
        let log = "PING 10.3.1.10 (10.3.1.10) 56(84) bytes of data.\n\
                   [1700000000.100000] 64 bytes from 10.3.1.10: icmp_seq=1 ttl=62 time=0.4 ms\n\
                   [1700000000.150000] no answer yet for icmp_seq=2\n\
                   [1700000001.300000] 64 bytes from 10.3.1.10: icmp_seq=3 ttl=62 time=0.4 ms\n";
        let r = parse_ping_replies(log);
        assert_eq!(r, vec![1_700_000_000.1, 1_700_000_001.3]);
        let gap = longest_reply_gap(&r, 1_700_000_000.0);
        assert!((gap - 1.2).abs() < 1e-6, "{gap}");
    }

    #[test]
    fn gaps_count_only_successes_after_the_start() {
        let t0 = Instant::now();
        let at = |ms: u64, ok: bool| Attempt {
            start: t0 + Duration::from_millis(ms),
            end: t0 + Duration::from_millis(ms + 5),
            seen: if ok {
                Ok("10.4.1.1".parse().unwrap())
            } else {
                Err("timeout".into())
            },
        };
        let v = vec![
            at(0, true),
            at(100, false),
            at(400, false),
            at(900, true),
            at(950, true),
        ];
        assert_eq!(
            longest_gap(&v, t0 + Duration::from_millis(50)),
            Duration::from_millis(855)
        );
        let first = first_ok_after(&v, t0 + Duration::from_millis(1), |_| true).unwrap();
        assert_eq!(first.start, t0 + Duration::from_millis(900));
    }
}
