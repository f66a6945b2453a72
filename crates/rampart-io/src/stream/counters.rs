//! What the stream transports did, per transport, for `rampart status` (`transports`).
//!
//! Counters are atomics shared by the listener and stream tasks and the event loop; they
//! only ever grow, except `open`, which is the number of streams running now.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

/// The counters of one transport, as they appear in the status document. Names are stable.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TransportCounters {
    /// TCP connections accepted on this transport's listeners.
    pub accepted: u64,
    /// RFC 9329 streams running now.
    pub open: u64,
    /// Streams that ended (either side, any reason).
    pub closed: u64,
    /// Visitor Mode port sharing: connections handed, bytes untouched, to `https_backend`.
    pub forwarded_to_backend: u64,
    /// Frames (IKE or ESP) read from streams and given to the node.
    pub frames_in: u64,
    /// Frames queued for writing to streams.
    pub frames_out: u64,
    /// Frames dropped because the stream's write queue was full.
    pub queue_drops: u64,
    /// Listen addresses that could not be bound.
    pub bind_failures: u64,
    /// Streams this side closed because the peer stayed silent (no IKE or ESP frame after
    /// connecting, or no frame at all for the idle time).
    #[serde(default)]
    pub idle_closed: u64,
}

/// `transports` in the status document.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TransportsStatus {
    /// `[remote_access.tcp]`: RFC 9329 over plain TCP.
    pub tcp: TransportCounters,
    /// `[remote_access.visitor]`: RFC 9329 inside TLS (Visitor Mode), and port sharing.
    pub tls: TransportCounters,
    /// Streams a client attached ([`crate::runtime::Io::attach_stream`]).
    pub client: TransportCounters,
}

/// The live counters of one transport.
#[derive(Debug, Default)]
pub struct Counters {
    pub accepted: AtomicU64,
    pub open: AtomicU64,
    pub closed: AtomicU64,
    pub forwarded_to_backend: AtomicU64,
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub queue_drops: AtomicU64,
    pub bind_failures: AtomicU64,
    pub idle_closed: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// A stream started.
    pub fn opened(&self) {
        self.open.fetch_add(1, Relaxed);
    }

    /// A stream ended.
    pub fn ended(&self) {
        self.closed.fetch_add(1, Relaxed);
        // `open` was raised by the same stream's `opened`: it cannot go below zero.
        let _ = self
            .open
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
    }

    /// A copy for the status document.
    pub fn snapshot(&self) -> TransportCounters {
        TransportCounters {
            accepted: self.accepted.load(Relaxed),
            open: self.open.load(Relaxed),
            closed: self.closed.load(Relaxed),
            forwarded_to_backend: self.forwarded_to_backend.load(Relaxed),
            frames_in: self.frames_in.load(Relaxed),
            frames_out: self.frames_out.load(Relaxed),
            queue_drops: self.queue_drops.load(Relaxed),
            bind_failures: self.bind_failures.load(Relaxed),
            idle_closed: self.idle_closed.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_follows_streams_and_names_are_stable() {
        let c = Counters::default();
        c.opened();
        c.opened();
        c.ended();
        Counters::add(&c.frames_in, 3);
        let s = c.snapshot();
        assert_eq!((s.open, s.closed, s.frames_in), (1, 1, 3));
        let doc = serde_json::to_value(TransportsStatus {
            tcp: s,
            ..Default::default()
        })
        .unwrap();
        for key in [
            "accepted",
            "open",
            "closed",
            "forwarded_to_backend",
            "frames_in",
            "frames_out",
            "queue_drops",
            "bind_failures",
            "idle_closed",
        ] {
            assert!(doc["tcp"][key].is_u64(), "{key}");
            assert!(doc["tls"][key].is_u64(), "{key}");
        }
    }
}
