//! RFC 9329 stream re-attach in the client shell: when the stream to the gateway is lost (a
//! reset or an end, or [`rampart_connect::stream_watch`] says it went silent), a new stream is
//! connected on the same path (the plan of the ladder rung that won: the same address and
//! port, the same proxy, TLS for Visitor Mode) and handed to the event loop, which attaches it
//! in place of the old one and makes the node send its next IKE message on it
//! (`ClientCommand::Reattach`, `Node::stream_renewed`). The gateway that holds the IKE SA (after
//! a cluster failover: the new active member, from sync) moves the SA's path to the new
//! stream; the IKE SA, its CHILD SAs and the virtual address stay.
//!
//! Invariants: attempts run one at a time, each within `REATTACH_ATTEMPT_TIMEOUT`, with
//! `REATTACH_RETRY_PAUSE` between failures, and all of them within `REATTACH_TIMEOUT` of the
//! loss; after that the caller rebuilds the tunnel.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use rampart_connect::stream_watch::{
    StreamWatch, StreamWatchConfig, Verdict, REATTACH_ATTEMPT_TIMEOUT, REATTACH_RETRY_PAUSE,
    REATTACH_TIMEOUT,
};
use rampart_connect::{ConnectPlan, Connected};
use rampart_io::stream::counters::Counters;

/// Connects a new stream on `plan`'s path, retrying until [`REATTACH_TIMEOUT`] from `lost_at`.
/// Returns the stream and the attempts it took, or why none connected.
pub async fn connect_again(
    plan: &ConnectPlan,
    lost_at: Instant,
) -> Result<(Connected, u32), String> {
    let deadline = lost_at + REATTACH_TIMEOUT;
    let mut attempts = 0u32;
    let mut last = String::from("no attempt");
    while Instant::now() < deadline {
        attempts += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let plan = ConnectPlan {
            timeout: REATTACH_ATTEMPT_TIMEOUT.min(left),
            ..plan.clone()
        };
        match rampart_connect::connect(&plan).await {
            Ok(c) => return Ok((c, attempts)),
            Err(e) => {
                tracing::debug!("re-attach attempt {attempts}: {e}");
                last = e.to_string();
            }
        }
        tokio::time::sleep(REATTACH_RETRY_PAUSE).await;
    }
    Err(format!(
        "no new stream within {} s ({attempts} attempts, last: {last})",
        REATTACH_TIMEOUT.as_secs()
    ))
}

/// A [`StreamWatch`] fed from the I/O layer's frame counters of attached client streams (the
/// client has one stream at a time, so the totals move with it).
pub struct FrameWatch {
    counters: Arc<Counters>,
    frames_in: u64,
    frames_out: u64,
    pub watch: StreamWatch,
}

impl FrameWatch {
    pub fn new(counters: Arc<Counters>, now: Instant) -> FrameWatch {
        FrameWatch {
            frames_in: counters.frames_in.load(Relaxed),
            frames_out: counters.frames_out.load(Relaxed),
            counters,
            watch: StreamWatch::new(StreamWatchConfig::default(), now),
        }
    }

    /// A new stream replaced the old one at `now`: a fresh watch, same counters.
    pub fn restart(&mut self, now: Instant) {
        *self = FrameWatch::new(self.counters.clone(), now);
    }

    /// Reads the counters and returns the watch's verdict at `now`.
    pub fn tick(&mut self, now: Instant) -> Verdict {
        let fin = self.counters.frames_in.load(Relaxed);
        let fout = self.counters.frames_out.load(Relaxed);
        if fout != self.frames_out {
            self.frames_out = fout;
            self.watch.on_tx(now);
        }
        if fin != self.frames_in {
            self.frames_in = fin;
            self.watch.on_rx(now);
        }
        self.watch.poll(now)
    }
}

/// A [`StreamWatch`] (with [`StreamWatchConfig::datagrams`]) over a UDP tunnel, fed from the
/// node's view (`Node::client_traffic`): ESP packets and IKE messages sent count as writes
/// (so the engine's own liveness checks of an idle tunnel do too), a newer "last heard"
/// (authenticated IKE or inbound ESP) as an answer. Used when the profile has other
/// entry points to move to.
pub struct TrafficWatch {
    sent: Option<u64>,
    ike_sent: Option<Instant>,
    heard: Option<Instant>,
    pub watch: StreamWatch,
}

impl TrafficWatch {
    pub fn new(now: Instant) -> TrafficWatch {
        TrafficWatch {
            sent: None,
            ike_sent: None,
            heard: None,
            watch: StreamWatch::new(StreamWatchConfig::datagrams(), now),
        }
    }

    /// Takes the node's `(last heard, ESP packets sent, last IKE message sent)` and returns
    /// the verdict at `now`.
    pub fn tick(&mut self, now: Instant, traffic: Option<rampart_node::ClientTraffic>) -> Verdict {
        if let Some((heard, sent, ike_sent)) = traffic {
            let wrote = self.sent.is_some_and(|s| s != sent)
                || (ike_sent.is_some() && self.ike_sent.is_some() && ike_sent != self.ike_sent);
            if wrote {
                self.watch.on_tx(now);
            }
            self.sent = Some(sent);
            self.ike_sent = ike_sent;
            if heard.is_some() && heard != self.heard {
                if self.heard.is_some() {
                    self.watch.on_rx(now);
                }
                self.heard = heard;
            }
        }
        self.watch.poll(now)
    }
}
