//! Re-attaching the client's IKE SA to a new stream (RFC 9329 TCP or Visitor Mode TLS), as
//! the client shell does: a stream cannot survive a change of the machine behind the gateway's
//! address (a cluster failover) or a proxy that drops it, but the IKE SA can.
//!
//! When the stream of a connected session is reset, closed, or silent while the engine writes
//! to it (`rampart_connect::stream_watch`: frames out, none back, then an IKE check that goes
//! unanswered), the client opens a new stream on the same path
//! (the same gateway address and port, through the same proxy, TLS or not) and, once it is
//! connected, hands it to the engine as the same NAT-T path and asks the engine to speak on
//! it at once (`Gateway::stream_renewed`: the outstanding request again, or an empty
//! INFORMATIONAL). The gateway that holds the SA (the new active member, from sync) moves the
//! SA's path to the new stream on that authenticated message. No IKE_SA_INIT, no
//! re-authentication, the same virtual address.
//!
//! An attempt that has not connected after `REATTACH_ATTEMPT_TIMEOUT` is replaced by a fresh
//! one (its SYN may have gone to the member that died, before the address moved); a refused
//! one is retried after `REATTACH_RETRY_PAUSE`. After `REATTACH_TIMEOUT` without a stream the
//! session ends and the tunnel is rebuilt with a new ladder run (all three from
//! `rampart_connect::stream_watch`, as the client shell uses them).
//!
//! Invariant: while a re-attach runs the session has no stream, and nothing the engine sends
//! to the gateway leaves the machine (no fallback to UDP: the transport stays what the ladder
//! chose).

use std::time::{Duration, Instant};

use rampart_connect::stream_watch::{StreamWatch, StreamWatchConfig};
use rampart_ike::StreamRenewal;

use super::conn::{Event, StreamConn};
use super::outer::Outer;
use super::{transport_name, ClientFx, ClientNode, End, Phase, Session};

// The real client's timings.
use rampart_connect::stream_watch::{
    REATTACH_ATTEMPT_TIMEOUT as ATTEMPT_TIMEOUT, REATTACH_RETRY_PAUSE as RETRY_PAUSE,
    REATTACH_TIMEOUT,
};

/// A lost stream being replaced.
pub(crate) struct Reattach {
    /// The attempt under way (`None`: pausing after a failure until `next_at`).
    conn: Option<Box<StreamConn>>,
    /// The lost stream, kept to open the new ones on its path.
    template: Box<StreamConn>,
    /// When the old stream was found lost, and why.
    lost_at: Duration,
    why: String,
    /// When the current attempt started, or when the next one starts.
    next_at: Duration,
    attempts: u32,
    last_failure: Option<String>,
}

impl Reattach {
    pub fn abort(&mut self, outer: &mut Outer) {
        if let Some(c) = self.conn.as_mut() {
            c.abort(outer);
        }
    }
}

impl Session {
    /// The next time a re-attach needs the client to run.
    pub(super) fn reattach_deadline(&self) -> Option<Duration> {
        let r = self.reattach.as_ref()?;
        let attempt = match r.conn {
            Some(_) => r.next_at + ATTEMPT_TIMEOUT,
            None => r.next_at,
        };
        Some(attempt.min(r.lost_at + REATTACH_TIMEOUT))
    }
}

impl ClientNode {
    /// The session's stream is gone (`why`): start making a new one on its path.
    pub(super) fn stream_lost(&mut self, now: Duration, why: String, fx: &mut ClientFx) {
        let Phase::Running(s) = &mut self.phase else {
            return;
        };
        let Some(mut old) = s.stream.take() else {
            return;
        };
        old.abort(&mut self.outer);
        let name = transport_name(s.transport);
        fx.logs.push(format!(
            "client {}: {why}; re-attaching the IKE SA on a new {name} stream ({})",
            self.name, old.path
        ));
        let conn = old.reopen(&mut self.outer);
        s.watch = None;
        s.reattach = Some(Reattach {
            conn: Some(Box::new(conn)),
            template: old,
            lost_at: now,
            why,
            next_at: now,
            attempts: 1,
            last_failure: None,
        });
    }

    /// Advances a re-attach: steps the attempt; on success the engine gets the new stream.
    pub(super) fn step_reattach(
        &mut self,
        base: Instant,
        now: Duration,
        fx: &mut ClientFx,
    ) -> bool {
        let Phase::Running(s) = &mut self.phase else {
            return false;
        };
        let Some(r) = s.reattach.as_mut() else {
            return false;
        };
        if now >= r.lost_at + REATTACH_TIMEOUT {
            let why = format!(
                "{}; no new stream within {} s ({} attempts{})",
                r.why,
                REATTACH_TIMEOUT.as_secs(),
                r.attempts,
                r.last_failure
                    .as_ref()
                    .map_or(String::new(), |f| format!(", last: {f}"))
            );
            self.entry_failed(base, now);
            self.end_session(base, now, End::Reconnect(why), fx);
            return true;
        }
        let Some(conn) = r.conn.as_mut() else {
            if now < r.next_at {
                return false;
            }
            r.conn = Some(Box::new(r.template.reopen(&mut self.outer)));
            r.next_at = now;
            r.attempts += 1;
            return true;
        };
        let mut ignored = Vec::new();
        match conn.step(&mut self.outer, &mut self.scratch, &mut ignored) {
            Event::Nothing => {
                if now >= r.next_at + ATTEMPT_TIMEOUT {
                    // No answer (a SYN lost to the member that died): a fresh attempt.
                    conn.abort(&mut self.outer);
                    r.conn = Some(Box::new(r.template.reopen(&mut self.outer)));
                    r.next_at = now;
                    r.attempts += 1;
                    r.last_failure = Some("no answer".into());
                    return true;
                }
                false
            }
            Event::Failed(why) => {
                r.conn = None;
                r.next_at = now + RETRY_PAUSE;
                r.last_failure = Some(why);
                true
            }
            Event::Connected => {
                let Some(r) = s.reattach.take() else {
                    return false;
                };
                let Some(conn) = r.conn else { return false };
                let name = transport_name(s.transport);
                let path = conn.path.to_string();
                s.stream = Some(conn);
                s.watch = Some(StreamWatch::new(StreamWatchConfig::default(), base + now));
                let renewed = s.engine.stream_renewed(base + now);
                let what: Vec<String> = renewed
                    .iter()
                    .map(|(peer, r)| match r {
                        StreamRenewal::Resent(id) => {
                            format!("{peer}: IKE SA {:#x}, outstanding request resent", id.0)
                        }
                        StreamRenewal::Probed(id) => {
                            format!("{peer}: IKE SA {:#x}, liveness check sent", id.0)
                        }
                        StreamRenewal::Nothing => format!("{peer}: no IKE SA"),
                    })
                    .collect();
                fx.logs.push(format!(
                    "client {}: IKE SA re-attached on a new {name} stream in {} ms after {} attempt(s) ({path}; {})",
                    self.name,
                    now.saturating_sub(r.lost_at).as_millis(),
                    r.attempts,
                    what.join(", ")
                ));
                self.reattaches.push((r.lost_at, now, name));
                self.moves.push((now, "reattached".into()));
                self.drain(base, now, fx);
                true
            }
        }
    }
}
