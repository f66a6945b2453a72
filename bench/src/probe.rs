//! The failover probe: a paced UDP stream with sequence numbers and send timestamps
//! (`probe-send`) and a receiver (`probe-recv`) that reports the longest interval without a
//! delivered packet (the failover gap), packets lost, duplicated and reordered, as JSON.
//!
//! Datagram (all integers big-endian), padded with zeros to `--size`:
//!
//! ```text
//! 0      4        8          16             24
//! "RPRB" | kind u32 | seq u64 | send time u64 (Unix ns, sender's clock) | padding
//! ```
//!
//! `kind` 0 is a probe, 1 the end marker (sent three times after the last probe; its `seq` is
//! the number of probes sent). Sender and receiver run on one machine (in different network
//! namespaces), so the send timestamps and the receive times come from the same clock.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

const MAGIC: &[u8; 4] = b"RPRB";
const HEADER: usize = 24;
const KIND_PROBE: u32 = 0;
const KIND_END: u32 = 1;

/// Unix time in nanoseconds.
pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Encodes one datagram of `size` bytes (at least the header).
pub fn encode(kind: u32, seq: u64, sent_ns: u64, size: usize) -> Vec<u8> {
    let mut b = vec![0u8; size.max(HEADER)];
    b[0..4].copy_from_slice(MAGIC);
    b[4..8].copy_from_slice(&kind.to_be_bytes());
    b[8..16].copy_from_slice(&seq.to_be_bytes());
    b[16..24].copy_from_slice(&sent_ns.to_be_bytes());
    b
}

/// Decodes a datagram: `(kind, seq, sent_ns)`; `None` for anything that is not a probe.
pub fn decode(b: &[u8]) -> Option<(u32, u64, u64)> {
    if b.len() < HEADER || &b[0..4] != MAGIC {
        return None;
    }
    let kind = u32::from_be_bytes(b[4..8].try_into().ok()?);
    let seq = u64::from_be_bytes(b[8..16].try_into().ok()?);
    let sent = u64::from_be_bytes(b[16..24].try_into().ok()?);
    Some((kind, seq, sent))
}

/// What the sender reports when it is done.
#[derive(Debug, Clone, Serialize)]
pub struct SendReport {
    pub sent: u64,
    pub send_errors: u64,
    /// The longest interval between two consecutive sends, in ms: a gap the receiver sees that
    /// is not much longer than this was the sender's (scheduling) fault, not the network's.
    pub max_send_interval_ms: f64,
    pub interval_us: u64,
}

/// Sends probes to `to` every `interval` for `duration`, then the end marker.
///
/// Pacing is by absolute deadlines; when the sender falls behind (the thread was not scheduled)
/// it does not burst to catch up: the next probe goes out at once and the schedule restarts
/// from there, so the sequence stays contiguous and a stall shows in `max_send_interval_ms`.
pub fn send(
    to: SocketAddr,
    interval: Duration,
    duration: Duration,
    size: usize,
) -> std::io::Result<SendReport> {
    let bind: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().expect("valid")
    } else {
        "[::]:0".parse().expect("valid")
    };
    let sock = UdpSocket::bind(bind)?;
    let start = Instant::now();
    let end = start + duration;
    let mut next = start;
    let mut seq = 0u64;
    let mut errors = 0u64;
    let mut last_send: Option<Instant> = None;
    let mut max_interval = Duration::ZERO;
    while next < end {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        let now = Instant::now();
        if let Some(prev) = last_send {
            max_interval = max_interval.max(now - prev);
        }
        last_send = Some(now);
        // Errors (EHOSTUNREACH after failed ARP, ENETUNREACH while routes change) are part of
        // a failover: count them and keep the schedule.
        if sock
            .send_to(&encode(KIND_PROBE, seq, unix_ns(), size), to)
            .is_err()
        {
            errors += 1;
        }
        seq += 1;
        next += interval;
        if next + interval < now {
            next = now + interval;
        }
    }
    for _ in 0..3 {
        let _ = sock.send_to(&encode(KIND_END, seq, unix_ns(), size), to);
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(SendReport {
        sent: seq,
        send_errors: errors,
        max_send_interval_ms: max_interval.as_secs_f64() * 1e3,
        interval_us: interval.as_micros() as u64,
    })
}

/// One received probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub seq: u64,
    /// Send time (Unix ns, from the datagram).
    pub sent_ns: u64,
    /// Receive time (Unix ns).
    pub at_ns: u64,
}

/// The receiver's result.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProbeReport {
    /// Probes sent, from the end marker; `None` when no end marker arrived.
    pub sent: Option<u64>,
    /// Datagrams received (duplicates included).
    pub received: u64,
    /// Distinct sequence numbers received.
    pub unique: u64,
    /// Sequence numbers never received (up to `sent`, or up to the highest one seen).
    pub lost: u64,
    pub duplicates: u64,
    /// Probes that arrived after one with a higher sequence number.
    pub reordered: u64,
    /// The longest run of consecutive sequence numbers never received.
    pub max_loss_run: u64,
    /// The failover gap: the longest interval without a delivered probe, in ms, from the first
    /// delivered probe to the end of the stream (the end marker's arrival, or the receiver's
    /// deadline when the stream never came back, so a failover that never completes shows as
    /// a gap reaching the end).
    pub gap_ms: f64,
    /// Unix ns of the last delivery before the gap and of the first after it (or the end).
    pub gap_start_unix_ns: u64,
    pub gap_end_unix_ns: u64,
    /// Sequence number delivered last before the gap, and first after it (`None`: the gap
    /// runs to the end of the stream).
    pub gap_after_seq: Option<u64>,
    pub gap_before_seq: Option<u64>,
    /// Whether any probe was delivered after the gap.
    pub resumed: bool,
    /// One-way latency (receive time - send time) median and maximum, in ms.
    pub latency_median_ms: f64,
    pub latency_max_ms: f64,
}

/// Computes the report from arrivals in arrival order. `end_ns` is when the stream ended for
/// the receiver: the end marker's arrival time, or the deadline if it never came.
pub fn analyze(arrivals: &[Arrival], sent: Option<u64>, end_ns: u64) -> ProbeReport {
    let mut seen = std::collections::HashSet::with_capacity(arrivals.len());
    let mut duplicates = 0u64;
    let mut reordered = 0u64;
    let mut highest: Option<u64> = None;
    let mut gap = 0u64;
    let mut gap_start = 0u64;
    let mut gap_end = 0u64;
    let mut gap_after = None;
    let mut gap_before = None;
    let mut prev: Option<&Arrival> = None;
    for a in arrivals {
        if !seen.insert(a.seq) {
            duplicates += 1;
        } else if highest.is_some_and(|h| a.seq < h) {
            reordered += 1;
        }
        highest = Some(highest.map_or(a.seq, |h| h.max(a.seq)));
        if let Some(p) = prev {
            let d = a.at_ns.saturating_sub(p.at_ns);
            if d > gap {
                gap = d;
                gap_start = p.at_ns;
                gap_end = a.at_ns;
                gap_after = Some(p.seq);
                gap_before = Some(a.seq);
            }
        }
        prev = Some(a);
    }
    let mut resumed = true;
    if let Some(last) = prev {
        let tail = end_ns.saturating_sub(last.at_ns);
        if tail > gap {
            gap = tail;
            gap_start = last.at_ns;
            gap_end = end_ns;
            gap_after = Some(last.seq);
            gap_before = None;
            resumed = false;
        }
    } else {
        resumed = false;
    }
    let unique = seen.len() as u64;
    let expected = sent.unwrap_or_else(|| highest.map_or(0, |h| h + 1));
    let in_range = seen.iter().filter(|&&s| s < expected).count() as u64;
    let lost = expected - in_range;
    // Longest run of missing sequence numbers in 0..expected.
    let mut sorted: Vec<u64> = seen.iter().copied().filter(|&s| s < expected).collect();
    sorted.sort_unstable();
    let mut max_run = 0u64;
    let mut next_expected = 0u64;
    for s in sorted {
        max_run = max_run.max(s - next_expected);
        next_expected = s + 1;
    }
    max_run = max_run.max(expected - next_expected);
    let mut lat: Vec<f64> = arrivals
        .iter()
        .map(|a| a.at_ns.saturating_sub(a.sent_ns) as f64 / 1e6)
        .collect();
    lat.sort_by(f64::total_cmp);
    ProbeReport {
        sent,
        received: arrivals.len() as u64,
        unique,
        lost,
        duplicates,
        reordered,
        max_loss_run: max_run,
        gap_ms: gap as f64 / 1e6,
        gap_start_unix_ns: gap_start,
        gap_end_unix_ns: gap_end,
        gap_after_seq: gap_after,
        gap_before_seq: gap_before,
        resumed,
        latency_median_ms: crate::stats::median(&lat).unwrap_or(0.0),
        latency_max_ms: lat.last().copied().unwrap_or(0.0),
    }
}

/// Receives probes on `listen` until the end marker arrives or `duration` has passed.
pub fn receive(listen: SocketAddr, duration: Duration) -> std::io::Result<ProbeReport> {
    let sock = UdpSocket::bind(listen)?;
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    let deadline = Instant::now() + duration;
    let mut arrivals = Vec::with_capacity(duration.as_millis() as usize + 16);
    let mut buf = [0u8; 2048];
    let mut sent = None;
    let mut end_ns = None;
    while Instant::now() < deadline {
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                let at_ns = unix_ns();
                match decode(&buf[..n]) {
                    Some((KIND_PROBE, seq, sent_ns)) => arrivals.push(Arrival {
                        seq,
                        sent_ns,
                        at_ns,
                    }),
                    Some((KIND_END, seq, _)) => {
                        sent = Some(seq);
                        end_ns = Some(at_ns);
                        break;
                    }
                    _ => {}
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(analyze(&arrivals, sent, end_ns.unwrap_or_else(unix_ns)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Probes `seqs` arriving 1 ms apart by sequence number, sent 0.1 ms before.
    fn stream(seqs: impl IntoIterator<Item = u64>) -> Vec<Arrival> {
        seqs.into_iter()
            .map(|s| Arrival {
                seq: s,
                sent_ns: s * MS,
                at_ns: s * MS + MS / 10,
            })
            .collect()
    }

    #[test]
    fn codec_round_trip_and_garbage() {
        let b = encode(KIND_PROBE, 42, 7, 64);
        assert_eq!(b.len(), 64);
        assert_eq!(decode(&b), Some((KIND_PROBE, 42, 7)));
        assert_eq!(decode(&b[..10]), None);
        assert_eq!(decode(b"XXXXxxxxxxxxxxxxxxxxxxxxxxxx"), None);
    }

    #[test]
    fn steady_stream_has_one_interval_gap() {
        let a = stream(0..1000);
        let r = analyze(&a, Some(1000), 999 * MS + MS / 10 + MS);
        assert_eq!(r.lost, 0);
        assert_eq!(r.reordered, 0);
        assert_eq!(r.duplicates, 0);
        assert_eq!(r.max_loss_run, 0);
        assert!((r.gap_ms - 1.0).abs() < 1e-9, "{}", r.gap_ms);
        assert!(r.resumed);
        assert!((r.latency_median_ms - 0.1).abs() < 1e-9);
    }

    #[test]
    fn failover_gap_is_the_longest_silence() {
        // 0..500 delivered, 500..1850 lost (1.35 s), then 1850..2000 delivered.
        let a = stream((0..500).chain(1850..2000));
        let r = analyze(&a, Some(2000), 2000 * MS);
        assert_eq!(r.lost, 1350);
        assert_eq!(r.max_loss_run, 1350);
        assert!((r.gap_ms - 1351.0).abs() < 1e-9, "{}", r.gap_ms);
        assert_eq!(r.gap_after_seq, Some(499));
        assert_eq!(r.gap_before_seq, Some(1850));
        assert_eq!(r.gap_start_unix_ns, 499 * MS + MS / 10);
        assert_eq!(r.gap_end_unix_ns, 1850 * MS + MS / 10);
        assert!(r.resumed);
    }

    #[test]
    fn gap_counts_delivery_time_not_sequence_numbers() {
        // Nothing is lost, but packets 100..200 were queued and arrive in one burst 300 ms
        // late: the receiver saw 300 ms without a delivery even though nothing was lost.
        let mut a = stream(0..100);
        for s in 100..200 {
            a.push(Arrival {
                seq: s,
                sent_ns: s * MS,
                at_ns: 400 * MS + s,
            });
        }
        let r = analyze(&a, Some(200), 401 * MS);
        assert_eq!(r.lost, 0);
        assert_eq!(r.max_loss_run, 0);
        assert!(
            (r.gap_ms - (400.0 - 99.1 + 100e-6)).abs() < 1e-6,
            "{}",
            r.gap_ms
        );
    }

    #[test]
    fn stream_that_never_resumes_gaps_to_the_end() {
        let a = stream(0..100);
        // No end marker: the receiver's deadline at 5 s is the end.
        let r = analyze(&a, None, 5000 * MS);
        assert!(!r.resumed);
        assert_eq!(r.gap_before_seq, None);
        assert!((r.gap_ms - (5000.0 - 99.1)).abs() < 1e-9);
        // Without an end marker losses are counted up to the highest seen only.
        assert_eq!(r.lost, 0);
        assert_eq!(r.sent, None);
    }

    #[test]
    fn reorder_duplicates_and_trailing_loss() {
        let mut a = stream([0, 1, 3, 2, 4, 4, 5]);
        a[5].at_ns += 1; // the duplicate arrives just after the original
        let r = analyze(&a, Some(10), 7 * MS);
        assert_eq!(r.received, 7);
        assert_eq!(r.unique, 6);
        assert_eq!(r.duplicates, 1);
        assert_eq!(r.reordered, 1);
        // 6..10 never arrived.
        assert_eq!(r.lost, 4);
        assert_eq!(r.max_loss_run, 4);
    }

    #[test]
    fn nothing_received() {
        let r = analyze(&[], Some(100), 1000);
        assert_eq!(r.lost, 100);
        assert_eq!(r.max_loss_run, 100);
        assert!(!r.resumed);
        assert_eq!(r.gap_ms, 0.0);
    }
}
