//! One task per stream: the reader decodes RFC 9329 frames into batches for the event loop,
//! the writer writes what the loop queued in the stream's [`Outbox`]. Whichever ends first
//! ends the stream; the loop is told with [`StreamInput::Closed`].
//!
//! Invariants: the reader owns at most [`POOL`] batches, so a peer that sends faster than the
//! loop handles waits in TCP flow control instead of in memory; frames are copied once, from
//! the decoder's buffer into a batch; the task ends when the loop's channel closes.

use std::net::SocketAddr;
use std::sync::Arc;

use rampart_wire::tcp_encap::{Decoder, Frame, Role, MAX_FRAME_LEN, NON_ESP_MARKER_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;

use super::counters::Counters;
use super::table::{Entry, Outbox, Transport, QUEUE_LIMIT};
use super::{next_id, Batch, BoxStream, StreamInput, BATCH_BYTES, BATCH_FRAMES};

/// Batches one stream's reader may have in flight.
const POOL: usize = 2;

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
        loop {
            let n = match reader.read(decoder.spare()).await {
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
                let (marker, body) = match decoder.next_frame() {
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
