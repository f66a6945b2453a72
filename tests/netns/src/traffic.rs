//! Traffic between namespaces: ping, and TCP transfers checked end to end with SHA-256.
//!
//! The TCP sender and receiver run in this test process, on threads that entered the namespace
//! with `setns(2)` (a socket belongs to the namespace of the thread that created it), so no
//! external tool is needed and progress is visible while a transfer runs.

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aws_lc_rs::digest;

use crate::netns::Netns;

/// Moves the calling thread into the named namespace.
fn enter_netns(name: &str) -> std::io::Result<()> {
    let file = std::fs::File::open(format!("/run/netns/{name}"))?;
    // SAFETY: the descriptor is valid while `file` lives; setns only changes this thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Runs `f` on a new thread inside the namespace.
pub fn spawn_in<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> JoinHandle<Result<T, String>> {
    let name = ns.name().to_string();
    std::thread::spawn(move || {
        enter_netns(&name).map_err(|e| format!("setns {name}: {e}"))?;
        f()
    })
}

/// `ping -c <count>` from `from` to `to`; Ok when every echo was answered.
pub fn ping(from: &Netns, to: &str, count: u32) -> Result<(), String> {
    let count = count.to_string();
    let out = from
        .try_exec(&["ping", "-n", "-q", "-c", &count, "-i", "0.2", "-W", "2", to])
        .map_err(|e| format!("ping {to} from {}: {e}", from.name()))?;
    if out.contains(" 0% packet loss") {
        Ok(())
    } else {
        Err(format!(
            "ping {to} from {}: echoes lost:\n{out}",
            from.name()
        ))
    }
}

/// What to send.
#[derive(Debug, Clone)]
pub struct TransferSpec {
    pub bytes: u64,
    pub port: u16,
    /// Bytes per second; `None` is as fast as possible.
    pub rate: Option<u64>,
    /// For the whole transfer, connection included.
    pub timeout: Duration,
    /// Seed of the pseudo-random payload.
    pub seed: u64,
}

impl TransferSpec {
    pub fn megabytes(mb: u64) -> TransferSpec {
        TransferSpec {
            bytes: mb * 1024 * 1024,
            port: 5001,
            rate: None,
            timeout: Duration::from_secs(90),
            seed: 0x5eed_0f7e_5700,
        }
    }
}

/// The outcome of a transfer: both sides' byte counts and digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferReport {
    pub sent: u64,
    pub received: u64,
    pub sent_sha256: String,
    pub received_sha256: String,
    pub elapsed: Duration,
}

impl TransferReport {
    /// True when every byte arrived unchanged.
    pub fn intact(&self) -> bool {
        self.sent == self.received && self.sent_sha256 == self.received_sha256
    }

    /// Megabits per second.
    pub fn mbps(&self) -> f64 {
        self.received as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }
}

/// A transfer in progress; [`RunningTransfer::finish`] waits for it.
pub struct RunningTransfer {
    received: Arc<AtomicU64>,
    abort: Arc<AtomicBool>,
    started: Instant,
    sender: JoinHandle<Result<(u64, String), String>>,
    receiver: JoinHandle<Result<(u64, String), String>>,
}

impl RunningTransfer {
    /// Starts a receiver listening on `to_addr:port` in `to` and a sender in `from`.
    pub fn start(
        from: &Netns,
        to: &Netns,
        to_addr: IpAddr,
        spec: &TransferSpec,
    ) -> Result<RunningTransfer, String> {
        let started = Instant::now();
        let deadline = started + spec.timeout;
        let received = Arc::new(AtomicU64::new(0));
        let abort = Arc::new(AtomicBool::new(false));
        let addr = SocketAddr::new(to_addr, spec.port);

        let (ready_tx, ready_rx) = mpsc::channel();
        let counter = received.clone();
        let stop = abort.clone();
        let receiver = spawn_in(to, move || {
            let listener = TcpListener::bind(addr);
            let listener = match listener {
                Ok(l) => {
                    let _ = ready_tx.send(Ok(()));
                    l
                }
                Err(e) => {
                    let msg = format!("bind {addr}: {e}");
                    let _ = ready_tx.send(Err(msg.clone()));
                    return Err(msg);
                }
            };
            receive(listener, deadline, &counter, &stop)
        });
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("receiver did not start".into()),
        }

        let (bytes, rate, seed) = (spec.bytes, spec.rate, spec.seed);
        let stop = abort.clone();
        let sender = spawn_in(from, move || send(addr, bytes, rate, seed, deadline, &stop));
        Ok(RunningTransfer {
            received,
            abort,
            started,
            sender,
            receiver,
        })
    }

    /// Bytes the receiver got so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Watches the transfer (of `total` bytes) from `since` for at most `limit`: the longest
    /// time without a received byte after `since` (the receiver's time without traffic), a
    /// pause still open at the end included unless every byte arrived. Polls every 5 ms.
    pub fn longest_pause(&self, total: u64, since: Instant, limit: Duration) -> Duration {
        let mut last = self.received();
        let mut last_change = since;
        let mut longest = Duration::ZERO;
        while since.elapsed() < limit && last < total {
            std::thread::sleep(Duration::from_millis(5));
            let now = self.received();
            if now != last {
                longest = longest.max(last_change.elapsed());
                last = now;
                last_change = Instant::now();
            }
        }
        if last < total {
            longest = longest.max(last_change.elapsed());
        }
        longest
    }

    /// Waits for both sides and reports; an error says which side failed and why.
    pub fn finish(self) -> Result<TransferReport, String> {
        let sent = join(self.sender, "sender");
        if sent.is_err() {
            // Unblock the receiver: it would otherwise wait for the deadline.
            self.abort.store(true, Ordering::Relaxed);
        }
        let received = join(self.receiver, "receiver");
        let (sent, sent_sha256) = sent?;
        let (received, received_sha256) = received?;
        Ok(TransferReport {
            sent,
            received,
            sent_sha256,
            received_sha256,
            elapsed: self.started.elapsed(),
        })
    }
}

fn join<T>(handle: JoinHandle<Result<T, String>>, side: &str) -> Result<T, String> {
    match handle.join() {
        Ok(r) => r.map_err(|e| format!("{side}: {e}")),
        Err(_) => Err(format!("{side} thread panicked")),
    }
}

/// Sends `spec.bytes` from `from` to `to_addr` in `to` and waits for the end.
pub fn tcp_transfer(
    from: &Netns,
    to: &Netns,
    to_addr: IpAddr,
    spec: &TransferSpec,
) -> Result<TransferReport, String> {
    RunningTransfer::start(from, to, to_addr, spec)?.finish()
}

const CHUNK: usize = 64 * 1024;

fn remaining(deadline: Instant) -> Result<Duration, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err("transfer timed out".into())
    } else {
        Ok(left)
    }
}

fn receive(
    listener: TcpListener,
    deadline: Instant,
    counter: &AtomicU64,
    abort: &AtomicBool,
) -> Result<(u64, String), String> {
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("nonblocking: {e}"))?;
    let mut stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if abort.load(Ordering::Relaxed) {
                    return Err("aborted before a connection arrived".into());
                }
                remaining(deadline)?;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    };
    stream
        .set_nonblocking(false)
        .map_err(|e| format!("blocking: {e}"))?;
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        if abort.load(Ordering::Relaxed) {
            return Err(format!("aborted after {total} bytes"));
        }
        let wait = remaining(deadline)
            .map_err(|e| format!("{e} after {total} bytes"))?
            .min(Duration::from_millis(500));
        stream
            .set_read_timeout(Some(wait))
            .map_err(|e| format!("timeout: {e}"))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                ctx.update(&buf[..n]);
                total += n as u64;
                counter.store(total, Ordering::Relaxed);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(format!("read after {total} bytes: {e}")),
        }
    }
    Ok((total, hex(ctx.finish().as_ref())))
}

fn send(
    addr: SocketAddr,
    bytes: u64,
    rate: Option<u64>,
    seed: u64,
    deadline: Instant,
    abort: &AtomicBool,
) -> Result<(u64, String), String> {
    // The path may still be coming up: retry refused/unreachable connects until the deadline.
    let mut stream = loop {
        let left = remaining(deadline)?.min(Duration::from_secs(3));
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => break s,
            Err(e) => {
                if abort.load(Ordering::Relaxed) {
                    return Err(format!("connect {addr}: {e}"));
                }
                if remaining(deadline).is_err() {
                    return Err(format!("connect {addr}: {e}"));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; CHUNK];
    let mut state = seed | 1;
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < bytes {
        let n = CHUNK.min((bytes - sent) as usize);
        fill_pseudo_random(&mut state, &mut buf[..n]);
        stream
            .set_write_timeout(Some(remaining(deadline)?))
            .map_err(|e| format!("timeout: {e}"))?;
        stream
            .write_all(&buf[..n])
            .map_err(|e| format!("write after {sent} bytes: {e}"))?;
        ctx.update(&buf[..n]);
        sent += n as u64;
        if let Some(rate) = rate {
            // Pace to the requested rate: the payload must still be flowing when a rekey happens.
            let due = Duration::from_secs_f64(sent as f64 / rate.max(1) as f64);
            if let Some(ahead) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
    }
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| format!("shutdown: {e}"))?;
    // Wait for the receiver to close: then every byte was delivered (or the receiver failed).
    stream
        .set_read_timeout(Some(remaining(deadline)?))
        .map_err(|e| format!("timeout: {e}"))?;
    let mut end = [0u8; 1];
    let _ = stream.read(&mut end);
    Ok((sent, hex(ctx.finish().as_ref())))
}

/// xorshift64*: fast, deterministic, incompressible enough for a transfer test.
fn fill_pseudo_random(state: &mut u64, out: &mut [u8]) {
    for chunk in out.chunks_mut(8) {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        let v = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_deterministic_and_varied() {
        let (mut a, mut b) = (7u64, 7u64);
        let mut x = [0u8; 1000];
        let mut y = [0u8; 1000];
        fill_pseudo_random(&mut a, &mut x);
        fill_pseudo_random(&mut b, &mut y);
        assert_eq!(x, y);
        let distinct: std::collections::HashSet<u8> = x.iter().copied().collect();
        assert!(distinct.len() > 200);
    }

    #[test]
    fn sha256_hex_matches_known_vector() {
        let d = digest::digest(&digest::SHA256, b"abc");
        assert_eq!(
            hex(d.as_ref()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

/// What a UDP burst delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpReport {
    pub sent: u32,
    /// Distinct datagrams received whole, with the right length and content.
    pub received: u32,
    /// Datagrams with a wrong length, index or content.
    pub corrupt: u32,
    /// Datagrams received more than once.
    pub duplicates: u32,
}

/// The length of datagram `i` of a burst of `size`-byte datagrams: every 16th is 100 bytes
/// shorter, so runs of equal size end in a shorter one (what UDP segmentation offload allows).
fn burst_len(i: u32, size: usize) -> usize {
    if i % 16 == 15 {
        size.saturating_sub(100).max(8)
    } else {
        size
    }
}

fn burst_byte(i: u32, at: usize) -> u8 {
    (i.wrapping_mul(7) as usize + at) as u8
}

/// Sends `count` UDP datagrams from `from` to `to_addr`:5301 in `to`, in back-to-back bursts of
/// 32 with 2 ms between bursts, each carrying its index and a pattern; the receiver checks each.
pub fn udp_burst(
    from: &Netns,
    to: &Netns,
    to_addr: IpAddr,
    count: u32,
    size: usize,
) -> Result<UdpReport, String> {
    const PORT: u16 = 5301;
    let size = size.max(8);
    let (ready_tx, ready_rx) = mpsc::channel();
    let receiver = spawn_in(to, move || {
        let any: IpAddr = if to_addr.is_ipv4() {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        };
        let socket = std::net::UdpSocket::bind(SocketAddr::new(any, PORT))
            .map_err(|e| format!("bind: {e}"))?;
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| format!("timeout: {e}"))?;
        // The test measures the gateways, not this thread: on a busy machine it can be off
        // the CPU for tens of milliseconds, and the default receive buffer (~90 datagrams of
        // this size) would drop the burst's tail here. 8 MB holds a whole burst; FORCE (root)
        // ignores the namespace's rmem_max.
        let rcvbuf: libc::c_int = 8 << 20;
        // SAFETY: a valid socket and a c_int option value of the right size.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&rcvbuf as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        let _ = ready_tx.send(());
        let mut seen = vec![false; count as usize];
        let mut report = UdpReport {
            sent: count,
            received: 0,
            corrupt: 0,
            duplicates: 0,
        };
        let mut buf = vec![0u8; 65_536];
        while report.received < count {
            let n = match socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => return Err(format!("recv: {e}")),
            };
            let d = &buf[..n];
            let index = d
                .get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .filter(|&i| i < count);
            let Some(i) = index else {
                report.corrupt += 1;
                continue;
            };
            let whole = n == burst_len(i, size)
                && d[4..]
                    .iter()
                    .enumerate()
                    .all(|(at, &b)| b == burst_byte(i, at + 4));
            if !whole {
                report.corrupt += 1;
            } else if std::mem::replace(&mut seen[i as usize], true) {
                report.duplicates += 1;
            } else {
                report.received += 1;
            }
        }
        Ok(report)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .map_err(|_| "the UDP receiver did not start".to_string())?;
    let sender = spawn_in(from, move || {
        let any: IpAddr = if to_addr.is_ipv4() {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        };
        let socket =
            std::net::UdpSocket::bind(SocketAddr::new(any, 0)).map_err(|e| format!("bind: {e}"))?;
        socket
            .connect(SocketAddr::new(to_addr, PORT))
            .map_err(|e| format!("connect: {e}"))?;
        let mut d = vec![0u8; size];
        for i in 0..count {
            let len = burst_len(i, size);
            d[..4].copy_from_slice(&i.to_be_bytes());
            for (at, b) in d[4..len].iter_mut().enumerate() {
                *b = burst_byte(i, at + 4);
            }
            socket
                .send(&d[..len])
                .map_err(|e| format!("send {i}: {e}"))?;
            if i % 32 == 31 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        Ok(())
    });
    join(sender, "UDP sender")?;
    join(receiver, "UDP receiver")
}
