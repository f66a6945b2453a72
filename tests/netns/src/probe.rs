//! A UDP probe stream (one datagram per millisecond by default) and the longest gap without a
//! delivered datagram: the failover-gap measure of the cluster benchmark.
//!
//! Sender and receiver are the `probe-send` and `probe-recv` modes of the `conn-load` binary,
//! started in their namespaces by [`ProbeStream::start`]. Each datagram carries a magic, a
//! sequence number, the sender's CLOCK_MONOTONIC time (namespaces share the clock) and a flag;
//! the sender ends with a few end markers carrying the number of datagrams sent. The receiver
//! measures the gaps between consecutive arrivals with its own clock.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::conn_load::{binary, read_json, write_atomic, write_json, Args};
use crate::netns::{Netns, Process};
use crate::wait::try_wait_until;

const MAGIC: [u8; 4] = *b"PRB1";
const LEN: usize = 64;
const END: u8 = 1;

/// CLOCK_MONOTONIC in nanoseconds.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the struct we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn datagram(seq: u64, flags: u8) -> [u8; LEN] {
    let mut d = [0u8; LEN];
    d[..4].copy_from_slice(&MAGIC);
    d[4..12].copy_from_slice(&seq.to_be_bytes());
    d[12..20].copy_from_slice(&monotonic_ns().to_be_bytes());
    d[20] = flags;
    d
}

/// (sequence number, send time ns, flags) of a probe datagram.
fn parse(d: &[u8]) -> Option<(u64, u64, u8)> {
    if d.len() != LEN || d[..4] != MAGIC {
        return None;
    }
    let seq = u64::from_be_bytes(d[4..12].try_into().ok()?);
    let sent = u64::from_be_bytes(d[12..20].try_into().ok()?);
    Some((seq, sent, d[20]))
}

/// The sender's side.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendReport {
    pub sent: u64,
    pub send_errors: u64,
    /// The latest the sender woke up after a datagram's due time: a large value means the
    /// sender, not the network, caused a gap.
    pub max_late_us: u64,
    pub elapsed_ms: u64,
}

/// The receiver's side.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// Datagrams the sender says it sent (from an end marker), if one arrived.
    pub sent: Option<u64>,
    /// Distinct datagrams received.
    pub received: u64,
    pub duplicates: u64,
    /// Datagrams that arrived after a higher sequence number.
    pub reordered: u64,
    /// The longest interval between two consecutive arrivals, in microseconds.
    pub max_gap_us: u64,
    /// Sequence numbers of the arrivals before and after that interval.
    pub max_gap_after_seq: u64,
    pub max_gap_before_seq: u64,
    /// The longest run of consecutive sequence numbers never received.
    pub longest_missing_run: u64,
    /// Intervals between arrivals longer than 10 ms.
    pub gaps_over_10ms: u64,
    /// Highest one-way delay seen (sender and receiver share CLOCK_MONOTONIC), microseconds.
    pub max_delay_us: u64,
}

impl ProbeReport {
    /// Datagrams never received (needs the sender's count).
    pub fn lost(&self) -> Option<u64> {
        self.sent.map(|s| s.saturating_sub(self.received))
    }

    pub fn max_gap(&self) -> Duration {
        Duration::from_micros(self.max_gap_us)
    }
}

/// `conn-load probe-send --to IP:PORT [--interval-us 1000] --stop FILE --report FILE`.
pub fn send_main(args: &Args) -> Result<(), String> {
    let to: std::net::SocketAddr = args.parse("to")?;
    let interval = Duration::from_micros(args.parse_or("interval-us", 1000)?);
    let stop = PathBuf::from(args.get("stop")?);
    let report_path = PathBuf::from(args.get("report")?);
    let bind: std::net::SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().map_err(|e| format!("{e}"))?
    } else {
        "[::]:0".parse().map_err(|e| format!("{e}"))?
    };
    let socket = std::net::UdpSocket::bind(bind).map_err(|e| format!("bind: {e}"))?;
    socket
        .connect(to)
        .map_err(|e| format!("connect {to}: {e}"))?;
    let start = Instant::now();
    let mut report = SendReport::default();
    let mut seq = 0u64;
    loop {
        // Absolute schedule: a late wake-up is caught up, not accumulated.
        let due = start + interval * u32::try_from(seq).unwrap_or(u32::MAX);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        } else {
            report.max_late_us = report.max_late_us.max((now - due).as_micros() as u64);
        }
        if socket.send(&datagram(seq, 0)).is_err() {
            // Unreachable during a failover (ICMP errors on a connected socket): keep going.
            report.send_errors += 1;
        }
        seq += 1;
        if seq.is_multiple_of(50) && stop.exists() {
            break;
        }
    }
    report.sent = seq;
    for _ in 0..5 {
        let _ = socket.send(&datagram(seq, END));
        std::thread::sleep(Duration::from_millis(2));
    }
    report.elapsed_ms = start.elapsed().as_millis() as u64;
    write_json(&report_path, &report)
}

/// `conn-load probe-recv --listen IP:PORT --ready FILE --stop FILE --report FILE`: runs until an
/// end marker arrives or the stop file exists.
pub fn recv_main(args: &Args) -> Result<(), String> {
    let listen: std::net::SocketAddr = args.parse("listen")?;
    let ready = PathBuf::from(args.get("ready")?);
    let stop = PathBuf::from(args.get("stop")?);
    let report_path = PathBuf::from(args.get("report")?);
    let socket = std::net::UdpSocket::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(|e| format!("timeout: {e}"))?;
    write_atomic(&ready, b"listening\n")?;
    let mut rx = Receiver::default();
    let mut buf = [0u8; 2048];
    let mut polls = 0u32;
    loop {
        match socket.recv(&mut buf) {
            Ok(n) => {
                if rx.datagram(&buf[..n], Instant::now(), monotonic_ns()) {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("recv: {e}")),
        }
        polls += 1;
        if polls.is_multiple_of(50) && stop.exists() {
            break;
        }
    }
    write_json(&report_path, &rx.report())
}

/// The receiver's bookkeeping, separate from the socket so it can be unit-tested.
#[derive(Debug, Default)]
struct Receiver {
    seen: Vec<bool>,
    highest: Option<u64>,
    last_arrival: Option<(Instant, u64)>,
    report: ProbeReport,
}

impl Receiver {
    /// Accounts one datagram; true when it is an end marker.
    fn datagram(&mut self, d: &[u8], now: Instant, now_ns: u64) -> bool {
        let Some((seq, sent_ns, flags)) = parse(d) else {
            return false;
        };
        if flags & END != 0 {
            self.report.sent = Some(seq);
            return true;
        }
        let Ok(index) = usize::try_from(seq) else {
            return false;
        };
        if index >= 100_000_000 {
            return false;
        }
        if index >= self.seen.len() {
            self.seen.resize(index + 1, false);
        }
        if std::mem::replace(&mut self.seen[index], true) {
            self.report.duplicates += 1;
            return false;
        }
        self.report.received += 1;
        self.report.max_delay_us = self
            .report
            .max_delay_us
            .max(now_ns.saturating_sub(sent_ns) / 1000);
        if self.highest.is_some_and(|h| seq < h) {
            self.report.reordered += 1;
        }
        self.highest = Some(self.highest.map_or(seq, |h| h.max(seq)));
        if let Some((last, last_seq)) = self.last_arrival {
            let gap = now.duration_since(last).as_micros() as u64;
            if gap > 10_000 {
                self.report.gaps_over_10ms += 1;
            }
            if gap > self.report.max_gap_us {
                self.report.max_gap_us = gap;
                self.report.max_gap_after_seq = last_seq;
                self.report.max_gap_before_seq = seq;
            }
        }
        self.last_arrival = Some((now, seq));
        false
    }

    fn report(mut self) -> ProbeReport {
        let until = self
            .report
            .sent
            .map_or(self.seen.len(), |s| s as usize)
            .max(self.seen.len());
        self.seen.resize(until, false);
        let (mut run, mut longest) = (0u64, 0u64);
        for &s in &self.seen {
            run = if s { 0 } else { run + 1 };
            longest = longest.max(run);
        }
        self.report.longest_missing_run = longest;
        self.report
    }
}

/// A running probe stream between two namespaces; both processes are killed on drop.
#[derive(Debug)]
pub struct ProbeStream {
    sender: Process,
    receiver: Process,
    stop_send: PathBuf,
    stop_recv: PathBuf,
    send_report: PathBuf,
    recv_report: PathBuf,
}

impl ProbeStream {
    /// Starts the receiver on `to_addr` in `to`, waits until it listens, then starts the sender
    /// in `from`, one datagram every `interval`.
    #[track_caller]
    pub fn start(
        from: &Netns,
        to: &Netns,
        to_addr: std::net::SocketAddr,
        interval: Duration,
        dir: &Path,
        label: &str,
    ) -> ProbeStream {
        let file = |ext: &str| dir.join(format!("{label}.{ext}"));
        let (ready, stop_send, stop_recv) = (file("ready"), file("stop-send"), file("stop-recv"));
        let (send_report, recv_report) = (file("send.json"), file("recv.json"));
        for f in [&ready, &stop_send, &stop_recv, &send_report, &recv_report] {
            let _ = std::fs::remove_file(f);
        }
        let bin = binary().to_string_lossy().into_owned();
        let s = |p: &Path| p.to_string_lossy().into_owned();
        let (to_s, ready_s, stop_r, report_r) = (
            to_addr.to_string(),
            s(&ready),
            s(&stop_recv),
            s(&recv_report),
        );
        let mut receiver = to.spawn(
            dir,
            &format!("{label}-recv"),
            &[
                &bin,
                "probe-recv",
                "--listen",
                &to_s,
                "--ready",
                &ready_s,
                "--stop",
                &stop_r,
                "--report",
                &report_r,
            ],
        );
        let waited = try_wait_until(Duration::from_secs(10), "probe receiver", || {
            ready.exists() || !receiver.is_running()
        });
        assert!(
            waited.is_ok() && receiver.is_running(),
            "probe receiver did not start: {}",
            receiver.log()
        );
        let (interval_s, stop_s, report_s) = (
            interval.as_micros().to_string(),
            s(&stop_send),
            s(&send_report),
        );
        let sender = from.spawn(
            dir,
            &format!("{label}-send"),
            &[
                &bin,
                "probe-send",
                "--to",
                &to_s,
                "--interval-us",
                &interval_s,
                "--stop",
                &stop_s,
                "--report",
                &report_s,
            ],
        );
        ProbeStream {
            sender,
            receiver,
            stop_send,
            stop_recv,
            send_report,
            recv_report,
        }
    }

    /// Stops the sender, lets the receiver see the end markers (or stops it), and returns both
    /// reports.
    pub fn finish(mut self) -> Result<(SendReport, ProbeReport), String> {
        write_atomic(&self.stop_send, b"stop\n")?;
        let sender = &mut self.sender;
        try_wait_until(Duration::from_secs(5), "probe sender to stop", || {
            !sender.is_running()
        })
        .map_err(|e| format!("{e}: {}", self.sender.log()))?;
        let receiver = &mut self.receiver;
        if try_wait_until(Duration::from_secs(2), "probe end marker", || {
            !receiver.is_running()
        })
        .is_err()
        {
            write_atomic(&self.stop_recv, b"stop\n")?;
            let receiver = &mut self.receiver;
            try_wait_until(Duration::from_secs(5), "probe receiver to stop", || {
                !receiver.is_running()
            })
            .map_err(|e| format!("{e}: {}", self.receiver.log()))?;
        }
        let sent: SendReport =
            read_json(&self.send_report).map_err(|e| format!("{e}: {}", self.sender.log()))?;
        let mut received: ProbeReport =
            read_json(&self.recv_report).map_err(|e| format!("{e}: {}", self.receiver.log()))?;
        received.sent = Some(sent.sent);
        Ok((sent, received))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_measures_gaps_losses_and_order() {
        let mut rx = Receiver::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut feed = |seq: u64, at: Duration| {
            let mut d = datagram(seq, 0);
            d[12..20].copy_from_slice(&0u64.to_be_bytes());
            rx.datagram(&d, t0 + at, 5_000_000)
        };
        for seq in 0..10 {
            assert!(!feed(seq, ms(seq)));
        }
        // 10..=309 lost: a 300 ms outage.
        feed(310, ms(310));
        feed(311, ms(311));
        feed(311, ms(312)); // duplicate
        feed(313, ms(313));
        feed(312, ms(314)); // late
        let mut end = datagram(400, END);
        end[12..20].copy_from_slice(&0u64.to_be_bytes());
        assert!(rx.datagram(&end, t0 + ms(400), 0));
        let r = rx.report();
        assert_eq!(r.sent, Some(400));
        assert_eq!(r.received, 14);
        assert_eq!(r.lost(), Some(386));
        assert_eq!(r.duplicates, 1);
        assert_eq!(r.reordered, 1);
        assert_eq!(r.max_gap_us, 301_000);
        assert_eq!((r.max_gap_after_seq, r.max_gap_before_seq), (9, 310));
        assert_eq!(r.gaps_over_10ms, 1);
        assert_eq!(r.longest_missing_run, 300);
        assert_eq!(r.max_delay_us, 5_000);
    }

    #[test]
    fn foreign_datagrams_are_ignored() {
        let mut rx = Receiver::default();
        assert!(!rx.datagram(b"hello", Instant::now(), 0));
        assert_eq!(rx.report().received, 0);
    }
}
