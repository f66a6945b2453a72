//! One task per stream: the reader decodes RFC 9329 frames into batches for the event loop,
//! the writer writes what the loop queued in the stream's [`Outbox`]. Whichever ends first
//! ends the stream; the loop is told with [`StreamInput::Closed`].
//!
//! Invariants: the reader owns at most [`POOL`] batches, so a peer that sends faster than the
//! loop handles waits in TCP flow control instead of in memory; frames are copied once, from
//! the decoder's buffer into a batch; the task ends when the loop's channel closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rampart_wire::tcp_encap::{Decoder, Frame, Role, MAX_FRAME_LEN, NON_ESP_MARKER_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::counters::Counters;
use super::table::{Entry, Outbox, Transport, QUEUE_LIMIT};
use super::{next_id, Batch, BoxStream, StreamInput, BATCH_BYTES, BATCH_FRAMES};

/// Batches one stream's reader may have in flight.
const POOL: usize = 2;

/// How long an accepted stream may stay silent before this side closes it, so that a
/// connection that never starts IKE, or a peer that stopped talking without closing, does not
/// hold a stream (a table entry, a task, a socket) forever. TCP keepalives only catch peers
/// that vanished; these catch peers that are there but silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleTimeouts {
    /// No IKE or ESP frame since the stream opened (keepalive frames do not count): the peer
    /// connected but never started IKE.
    pub first_frame: Duration,
    /// No frame at all (keepalives included) for this long after the first one. An
    /// established client sends at least its liveness checks while the gateway is silent.
    pub idle: Duration,
}

impl IdleTimeouts {
    /// The defaults of accepted streams: 30 s to the first frame, 5 minutes of silence.
    pub const DEFAULT: IdleTimeouts = IdleTimeouts {
        first_frame: Duration::from_secs(30),
        idle: Duration::from_secs(300),
    };
}

impl Default for IdleTimeouts {
    fn default() -> Self {
        IdleTimeouts::DEFAULT
    }
}

/// What a stream is to the node and the counters.
pub struct Setup {
    /// The address the node sees the frames arrive on.
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub transport: Transport,
    /// `Responder` on accepted streams (they start with `IKETCP`), `Initiator` on streams a
    /// client connected.
    pub role: Role,
    pub counters: Arc<Counters>,
    pub tx: mpsc::Sender<StreamInput>,
    /// Closes the stream when its peer stays silent (`None`: never; a client's own stream,
    /// whose liveness the IKE engine watches).
    pub idle: Option<IdleTimeouts>,
}

/// A stream ready to run.
pub struct Pump {
    id: u64,
    remote: SocketAddr,
    role: Role,
    outbox: Arc<Outbox>,
    counters: Arc<Counters>,
    tx: mpsc::Sender<StreamInput>,
    recycle: mpsc::Receiver<Batch>,
    idle: Option<IdleTimeouts>,
}

/// The loop's table entry of a new stream and the task that runs it. The stream counts as
/// open from here on.
pub fn prepare(setup: Setup) -> (Entry, Pump) {
    let id = next_id();
    let outbox = Arc::new(Outbox::new(QUEUE_LIMIT));
    let (recycle_tx, recycle) = mpsc::channel(POOL);
    setup.counters.opened();
    let entry = Entry {
        id,
        local: setup.local,
        transport: setup.transport,
        outbox: outbox.clone(),
        counters: setup.counters.clone(),
        recycle: recycle_tx,
    };
    let pump = Pump {
        id,
        remote: setup.remote,
        role: setup.role,
        outbox,
        counters: setup.counters,
        tx: setup.tx,
        recycle,
        idle: setup.idle,
    };
    (entry, pump)
}

impl Pump {
    /// Runs the stream until either direction ends or the loop goes away, then reports why.
    pub async fn run(mut self, stream: BoxStream) {
        let (reader, writer) = tokio::io::split(stream);
        let outbox = self.outbox.clone();
        let tx = self.tx.clone();
        let reason = tokio::select! {
            reason = self.read(reader) => reason,
            reason = write(writer, &outbox) => reason,
            () = tx.closed() => "the event loop ended".to_owned(),
        };
        self.outbox.close();
        self.outbox.finish();
        self.counters.ended();
        let _ = self
            .tx
            .send(StreamInput::Closed {
                id: self.id,
                remote: self.remote,
                reason,
            })
            .await;
    }

    /// Reads frames until the stream ends; returns why it ended.
    async fn read(&mut self, mut reader: ReadHalf<BoxStream>) -> String {
        let mut decoder = Decoder::new(self.role, MAX_FRAME_LEN);
        let mut made = 1;
        let mut batch = Batch::new();
        // Until the first IKE or ESP frame: the first-frame deadline; then the idle one from
        // the last frame of any kind.
        let mut deadline = self.idle.map(|t| Instant::now() + t.first_frame);
        let mut started = false;
        loop {
            let read = reader.read(decoder.spare());
            let n = match deadline {
                None => read.await,
                Some(at) => match tokio::time::timeout_at(at, read).await {
                    Ok(r) => r,
                    Err(_) => {
                        Counters::add(&self.counters.idle_closed, 1);
                        let t = self.idle.unwrap_or_default();
                        return if started {
                            format!("idle: no frame for {:?}", t.idle)
                        } else {
                            format!(
                                "idle: no IKE or ESP frame within {:?} of the connection",
                                t.first_frame
                            )
                        };
                    }
                },
            };
            let n = match n {
                Ok(n) => n,
                Err(e) => return format!("read failed: {e}"),
            };
            if n == 0 {
                return if decoder.at_boundary() {
                    "closed by the peer".to_owned()
                } else {
                    format!(
                        "closed by the peer in the middle of a frame ({} bytes pending)",
                        decoder.pending()
                    )
                };
            }
            decoder.commit(n);
            loop {
                let frame = decoder.next_frame();
                if let (Ok(Some(f)), Some(t)) = (&frame, self.idle) {
                    started |= !matches!(f, Frame::Keepalive);
                    if started {
                        deadline = Some(Instant::now() + t.idle);
                    }
                }
                let (marker, body) = match frame {
                    Ok(None) => break,
                    Ok(Some(Frame::Keepalive)) => continue,
                    Ok(Some(Frame::Ike(m))) => (true, m),
                    Ok(Some(Frame::Esp(p))) => (false, p),
                    Err(e) => {
                        if !batch.frames.is_empty() {
                            let _ = self.send(batch).await;
                        }
                        return format!("not an RFC 9329 stream: {e}");
                    }
                };
                let len = body.len() + if marker { NON_ESP_MARKER_LEN } else { 0 };
                if batch.frames.len() == BATCH_FRAMES || batch.data.len() + len > BATCH_BYTES {
                    // Full: hand it over and go on in the next one.
                    if !self.send(batch).await {
                        return "the event loop ended".to_owned();
                    }
                    batch = match self.next_batch(&mut made).await {
                        Some(b) => b,
                        None => return "removed by the event loop".to_owned(),
                    };
                }
                let start = batch.data.len();
                if marker {
                    batch.data.extend_from_slice(&[0; NON_ESP_MARKER_LEN]);
                }
                batch.data.extend_from_slice(body);
                batch.frames.push(start..batch.data.len());
            }
            if !batch.frames.is_empty() {
                if !self.send(batch).await {
                    return "the event loop ended".to_owned();
                }
                batch = match self.next_batch(&mut made).await {
                    Some(b) => b,
                    None => return "removed by the event loop".to_owned(),
                };
            }
        }
    }

    async fn send(&self, batch: Batch) -> bool {
        self.tx
            .send(StreamInput::Frames {
                id: self.id,
                remote: self.remote,
                batch,
            })
            .await
            .is_ok()
    }

    /// A batch to fill: a new one while fewer than [`POOL`] exist, else one the loop gave
    /// back. `None` when the loop dropped this stream.
    async fn next_batch(&mut self, made: &mut usize) -> Option<Batch> {
        if *made < POOL {
            *made += 1;
            return Some(Batch::new());
        }
        self.recycle.recv().await
    }
}

/// Writes what the loop queues until the outbox is closed or a write fails.
async fn write(mut writer: WriteHalf<BoxStream>, outbox: &Outbox) -> String {
    let mut buf = Vec::new();
    loop {
        if outbox.is_closed() {
            // What was queued before the close still goes out (a client's goodbye Deletes).
            outbox.take(&mut buf);
            if !buf.is_empty() {
                let _ = writer.write_all(&buf).await;
            }
            let _ = writer.shutdown().await;
            return "closed by this side".to_owned();
        }
        outbox.take(&mut buf);
        if buf.is_empty() {
            outbox.wait().await;
            continue;
        }
        if let Err(e) = writer.write_all(&buf).await {
            return format!("write failed: {e}");
        }
        if let Err(e) = writer.flush().await {
            return format!("write failed: {e}");
        }
        buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;
    use tokio::io::{AsyncWriteExt, DuplexStream};

    const SHORT: IdleTimeouts = IdleTimeouts {
        first_frame: Duration::from_millis(150),
        idle: Duration::from_millis(300),
    };

    struct Running {
        _entry: Entry,
        counters: Arc<Counters>,
        rx: mpsc::Receiver<StreamInput>,
        peer: DuplexStream,
    }

    /// An accepted stream with `idle`, its task running; the test plays the peer.
    fn accepted(idle: Option<IdleTimeouts>) -> Running {
        let (tx, rx) = mpsc::channel(16);
        let counters = Arc::new(Counters::default());
        let (entry, pump) = prepare(Setup {
            local: "192.0.2.1:4500".parse().unwrap(),
            remote: "198.51.100.7:40000".parse().unwrap(),
            transport: Transport::Tcp,
            role: Role::Responder,
            counters: counters.clone(),
            tx,
            idle,
        });
        let (ours, peer) = tokio::io::duplex(4096);
        tokio::spawn(pump.run(Box::new(ours)));
        Running {
            _entry: entry,
            counters,
            rx,
            peer,
        }
    }

    /// An IKE frame: length, non-ESP marker, a 28-byte header.
    fn ike_frame() -> Vec<u8> {
        let mut f = vec![0, 34, 0, 0, 0, 0];
        f.extend_from_slice(&[1; 28]);
        f
    }

    async fn closed_reason(r: &mut Running, within: Duration) -> Option<String> {
        let until = Instant::now() + within;
        loop {
            match tokio::time::timeout_at(until, r.rx.recv()).await {
                Ok(Some(StreamInput::Closed { reason, .. })) => return Some(reason),
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return None,
            }
        }
    }

    #[tokio::test]
    async fn a_connection_that_never_starts_ike_is_closed() {
        let mut r = accepted(Some(SHORT));
        // The prefix and keepalives are not IKE: they do not keep the stream.
        r.peer.write_all(b"IKETCP").await.unwrap();
        r.peer.write_all(&[0, 3, 0xff]).await.unwrap();
        let started = Instant::now();
        let reason = closed_reason(&mut r, Duration::from_secs(2)).await;
        assert_eq!(
            reason.as_deref(),
            Some("idle: no IKE or ESP frame within 150ms of the connection")
        );
        assert!(started.elapsed() < Duration::from_millis(1000));
        let c = r.counters.snapshot();
        assert_eq!((c.idle_closed, c.open, c.closed), (1, 0, 1));
    }

    #[tokio::test]
    async fn a_silent_peer_is_closed_after_the_idle_time_and_keepalives_keep_it() {
        let mut r = accepted(Some(SHORT));
        r.peer.write_all(b"IKETCP").await.unwrap();
        r.peer.write_all(&ike_frame()).await.unwrap();
        match r.rx.recv().await {
            Some(StreamInput::Frames { batch, .. }) => assert_eq!(batch.frames.len(), 1),
            other => panic!("{other:?}"),
        }
        // Keepalives every 100 ms for 600 ms (twice the idle time) keep it open.
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            r.peer.write_all(&[0, 3, 0xff]).await.unwrap();
        }
        assert_eq!(r.counters.open.load(Relaxed), 1, "still open");
        assert!(r.rx.try_recv().is_err(), "nothing reported yet");
        let reason = closed_reason(&mut r, Duration::from_secs(2)).await;
        assert_eq!(reason.as_deref(), Some("idle: no frame for 300ms"));
        assert_eq!(r.counters.idle_closed.load(Relaxed), 1);
    }

    #[tokio::test]
    async fn without_timeouts_a_silent_stream_stays() {
        let mut r = accepted(None);
        r.peer.write_all(b"IKETCP").await.unwrap();
        assert_eq!(
            closed_reason(&mut r, Duration::from_millis(500)).await,
            None
        );
        assert_eq!(r.counters.open.load(Relaxed), 1);
        // The peer closing still ends it.
        drop(r.peer);
        let reason = tokio::time::timeout(Duration::from_secs(2), r.rx.recv()).await;
        assert!(
            matches!(reason, Ok(Some(StreamInput::Closed { ref reason, .. })) if reason == "closed by the peer"),
            "{reason:?}"
        );
        assert_eq!(r.counters.idle_closed.load(Relaxed), 0);
    }
}
