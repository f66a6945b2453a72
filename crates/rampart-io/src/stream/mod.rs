//! RFC 9329 streams: IKE and ESP over TCP (`[remote_access.tcp]`), the same inside TLS
//! (Visitor Mode, `[remote_access.visitor]`, with port sharing to an HTTPS server), and
//! streams a remote-access client connected itself ([`crate::runtime::Io::attach_stream`]).
//!
//! To the node a stream is a NAT-T path: each frame is handed to it as a datagram from the
//! stream's peer address to `(local address, gateway.nat_t_port)`, and every datagram the
//! node sends to a peer address that has a stream becomes one frame on it.
//!
//! Structure:
//! - [`listener`]: binds the listeners and accepts (its bind-failure lines are exact).
//! - [`visitor`]: peeks the TLS ClientHello ([`hello`]) and routes: Visitor Mode (rustls),
//!   raw forwarding to the HTTPS backend, or close.
//! - [`pump`]: one task per stream: reads and decodes frames into batches for the loop,
//!   writes what the loop queued.
//! - [`table`]: the loop's streams by peer address, and each one's bounded write queue.
//! - [`counters`]: the `transports` section of `rampart status`.
//!
//! Invariants: the event loop never waits on a stream (it only queues, and drops when a
//! queue is full); stream tasks end when the loop's [`Streams`] is dropped; a batch of frames
//! is allocated once per stream and passed back and forth, not per frame.

pub mod counters;
pub mod hello;
pub mod listener;
mod pump;
pub mod table;
pub mod visitor;

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

pub use counters::{TransportCounters, TransportsStatus};
pub use pump::IdleTimeouts;
pub use table::Transport;

use counters::Counters;
use table::{Entry, Pushed, Table};

/// Any connected byte stream: a `TcpStream`, a TLS stream over one, a stream through a proxy.
pub trait AsyncStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + ?Sized> AsyncStream for T {}

/// A connected stream, boxed. Any `Box<dyn ...>` of another crate's trait with the same
/// bounds is itself an [`AsyncStream`] and converts with `Box::new(it)`.
pub type BoxStream = Box<dyn AsyncStream>;

/// What the client shell hears about its attached streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// The stream to `remote` ended (the peer closed it, it failed, or it was replaced); the
    /// shell reconnects.
    Closed { remote: SocketAddr, reason: String },
}

/// Frames of one stream on their way to the loop: `data[frames[i]]` is one datagram
/// (non-ESP marker and IKE message, or ESP packet). Sent back to the reader once handled.
#[derive(Debug)]
pub struct Batch {
    pub data: Vec<u8>,
    pub frames: Vec<Range<usize>>,
}

/// Most frames in one batch (the loop's per-batch disposition slots).
pub const BATCH_FRAMES: usize = crate::datapath::TUN_BATCH;
/// Bytes of datagrams in one batch (a batch is sent when the next frame does not fit): one
/// largest frame always fits.
pub const BATCH_BYTES: usize = rampart_wire::tcp_encap::MAX_FRAME_LEN + 64;

impl Batch {
    /// An empty batch. Its buffers grow to their working size with the first frames and keep
    /// it: an idle stream costs little, a busy one allocates nothing per frame.
    fn new() -> Batch {
        Batch {
            data: Vec::new(),
            frames: Vec::with_capacity(BATCH_FRAMES),
        }
    }
}

/// What stream tasks tell the event loop.
#[derive(Debug)]
pub enum StreamInput {
    /// An accepted stream is ready (prefix and TLS are handled by its task).
    Opened { remote: SocketAddr, entry: Entry },
    /// Frames read from stream `id`.
    Frames {
        id: u64,
        remote: SocketAddr,
        batch: Batch,
    },
    /// Stream `id` ended.
    Closed {
        id: u64,
        remote: SocketAddr,
        reason: String,
    },
}

/// Ids of streams, unique in the process.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// How many inputs from stream tasks may wait for the loop; a reader waits beyond that (TCP
/// flow control then slows its peer).
const INPUT_QUEUE: usize = 1024;

/// The event loop's side of every stream: the table, the channel from the tasks, counters.
#[derive(Debug)]
pub struct Streams {
    table: Table,
    tx: mpsc::Sender<StreamInput>,
    rx: mpsc::Receiver<StreamInput>,
    tcp: Arc<Counters>,
    tls: Arc<Counters>,
    client: Arc<Counters>,
    /// Applied to the streams the listeners accept from then on.
    idle: Option<IdleTimeouts>,
    /// Remotes a client attached a stream to: while such a stream is being replaced
    /// (re-attach), datagrams to the remote are dropped rather than sent over UDP, so a
    /// stream client never leaks its tunnel to another transport.
    client_remotes: Vec<SocketAddr>,
}

impl Default for Streams {
    fn default() -> Self {
        Streams::new()
    }
}

impl Streams {
    pub fn new() -> Streams {
        let (tx, rx) = mpsc::channel(INPUT_QUEUE);
        Streams {
            table: Table::default(),
            tx,
            rx,
            tcp: Arc::default(),
            tls: Arc::default(),
            client: Arc::default(),
            idle: Some(IdleTimeouts::DEFAULT),
            client_remotes: Vec::new(),
        }
    }

    /// When accepted streams whose peer stays silent are closed ([`IdleTimeouts::DEFAULT`]
    /// unless changed; `None`: never). Takes effect for listeners started afterwards.
    pub fn set_idle_timeouts(&mut self, idle: Option<IdleTimeouts>) {
        self.idle = idle;
    }

    pub fn idle_timeouts(&self) -> Option<IdleTimeouts> {
        self.idle
    }

    /// The live counters of `transport`.
    pub fn counters(&self, transport: Transport) -> &Arc<Counters> {
        match transport {
            Transport::Tcp => &self.tcp,
            Transport::Tls => &self.tls,
            Transport::Client => &self.client,
        }
    }

    /// The `transports` section of the status document.
    pub fn status(&self) -> TransportsStatus {
        TransportsStatus {
            tcp: self.tcp.snapshot(),
            tls: self.tls.snapshot(),
            client: self.client.snapshot(),
        }
    }

    /// The sender stream tasks report on.
    pub(crate) fn sender(&self) -> mpsc::Sender<StreamInput> {
        self.tx.clone()
    }

    /// The next input from a stream task.
    pub async fn recv(&mut self) -> Option<StreamInput> {
        self.rx.recv().await
    }

    /// An input that is already waiting.
    pub fn try_recv(&mut self) -> Option<StreamInput> {
        self.rx.try_recv().ok()
    }

    /// Whether datagrams to `remote` go over a stream.
    pub fn has(&self, remote: &SocketAddr) -> bool {
        self.table.contains(remote)
    }

    /// Streams in the table.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The local address the node sees frames of `remote`'s stream arrive on.
    pub fn local_of(&self, remote: &SocketAddr, id: u64) -> Option<SocketAddr> {
        self.table
            .get(remote)
            .filter(|e| e.id == id)
            .map(|e| e.local)
    }

    /// Queues `datagram` as one frame on the stream to `remote`. Returns `false` when there
    /// is no stream to `remote` (the caller sends over UDP), except for a remote a client
    /// attached a stream to before: its datagrams are dropped until a new stream is attached.
    /// Never waits.
    pub fn send(&self, remote: SocketAddr, datagram: &[u8]) -> bool {
        let Some(entry) = self.table.get(&remote) else {
            if self.client_remotes.contains(&remote) {
                // A client's stream between loss and re-attach: nothing leaves (counted).
                Counters::add(&self.client.queue_drops, 1);
                return true;
            }
            return false;
        };
        match entry.outbox.push(datagram) {
            Pushed::Queued => Counters::add(&entry.counters.frames_out, 1),
            Pushed::Full => {
                Counters::add(&entry.counters.queue_drops, 1);
                tracing::trace!("{} stream {remote}: write queue full, frame dropped", entry.transport.name());
            }
            Pushed::Keepalive | Pushed::Closed => {}
            Pushed::Unframeable => tracing::debug!(
                "{} stream {remote}: datagram of {} bytes is neither IKE with a non-ESP marker nor ESP; not sent",
                entry.transport.name(),
                datagram.len()
            ),
        }
        true
    }

    /// The frame counters of the streams a client attached (`frames_in`, `frames_out`): the
    /// client shell watches them to tell a stream that went silent (see
    /// `rampart_connect::stream_watch`).
    pub fn client_counters(&self) -> Arc<Counters> {
        self.client.clone()
    }

    /// Attaches a connected stream (client side; the connector already wrote `IKETCP`): its
    /// frames reach the node as datagrams from `remote` to `local`, and datagrams the node
    /// sends to `remote` go over it. A stream already attached to `remote` is closed. Must be
    /// called inside a tokio runtime.
    pub fn attach(&mut self, local: SocketAddr, remote: SocketAddr, stream: BoxStream) {
        let (entry, pump) = pump::prepare(pump::Setup {
            local,
            remote,
            transport: Transport::Client,
            role: rampart_wire::tcp_encap::Role::Initiator,
            counters: self.client.clone(),
            tx: self.sender(),
            idle: None,
        });
        tokio::spawn(pump.run(stream));
        tracing::info!("client stream to {remote} attached (frames as from {local})");
        if !self.client_remotes.contains(&remote) {
            self.client_remotes.push(remote);
        }
        if let Some(old) = self.table.insert(remote, entry) {
            tracing::info!(
                "client stream to {remote}: the previous stream (id {}) is replaced",
                old.id
            );
        }
    }

    /// Takes in what a stream task reported; a stream that ended is reported on `events`.
    /// Frames are returned to the caller (the loop hands them to the node, then gives the
    /// batch back with [`Streams::recycle`]).
    pub fn handle(
        &mut self,
        input: StreamInput,
        events: Option<&mpsc::UnboundedSender<StreamEvent>>,
    ) -> Option<(u64, SocketAddr, Batch)> {
        match input {
            StreamInput::Opened { remote, entry } => {
                tracing::info!("{} stream from {remote} open", entry.transport.name());
                if let Some(old) = self.table.insert(remote, entry) {
                    tracing::info!(
                        "{} stream from {remote}: the previous stream (id {}) is replaced",
                        old.transport.name(),
                        old.id
                    );
                }
                None
            }
            StreamInput::Frames { id, remote, batch } => match self.table.get(&remote) {
                Some(e) if e.id == id => {
                    Counters::add(&e.counters.frames_in, batch.frames.len() as u64);
                    Some((id, remote, batch))
                }
                // A stream that was replaced: its frames are not handed on.
                _ => None,
            },
            StreamInput::Closed { id, remote, reason } => {
                if let Some(e) = self.table.remove(&remote, id) {
                    tracing::info!("{} stream {remote} closed: {reason}", e.transport.name());
                    if let Some(events) = events {
                        let _ = events.send(StreamEvent::Closed { remote, reason });
                    }
                }
                None
            }
        }
    }

    /// Gives a handled batch back to its stream's reader.
    pub fn recycle(&self, id: u64, remote: SocketAddr, mut batch: Batch) {
        if let Some(e) = self.table.get(&remote).filter(|e| e.id == id) {
            batch.data.clear();
            batch.frames.clear();
            let _ = e.recycle.try_send(batch);
        }
    }

    /// Closes every stream (the loop ends).
    pub async fn close_all(&mut self, grace: std::time::Duration) {
        let outboxes = self.table.close_all();
        let flushed = async {
            for outbox in &outboxes {
                outbox.finished().await;
            }
        };
        if tokio::time::timeout(grace, flushed).await.is_err() {
            tracing::debug!("streams closed before every queued frame was written");
        }
    }
}
