//! The streams the event loop knows, keyed by the peer's address, and each stream's bounded
//! write queue.
//!
//! Invariants:
//! - The table is owned by the event loop; stream tasks never touch it. They tell the loop
//!   about themselves over the loop's channel ([`super::StreamInput`]).
//! - A stream's id is unique for the life of the process: a `Closed` for an id that is no
//!   longer (or not yet) in the table changes nothing, so a reconnect from the same address
//!   is never removed by its predecessor's end.
//! - [`Outbox::push`] never blocks and never allocates once the two queue buffers have grown
//!   to their working size: the writer swaps the queued bytes out and writes them while the
//!   loop fills the other buffer. When [`Outbox::limit`] bytes are queued, frames are
//!   dropped and counted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rampart_wire::tcp_encap::{self, Frame};
use tokio::sync::Notify;

use super::counters::Counters;

/// Bytes queued for one stream before frames are dropped.
pub const QUEUE_LIMIT: usize = 256 * 1024;

/// Which transport a stream came over (for counters and log lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// RFC 9329 over TCP (`[remote_access.tcp]`).
    Tcp,
    /// Visitor Mode: RFC 9329 inside TLS (`[remote_access.visitor]`).
    Tls,
    /// A stream a client connected and attached.
    Client,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "TCP",
            Transport::Tls => "Visitor Mode (TLS)",
            Transport::Client => "client stream",
        }
    }
}

/// What [`Outbox::push`] did with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued as one frame.
    Queued,
    /// The queue was full: dropped.
    Full,
    /// A NAT-keepalive: not sent on a stream (RFC 9329 2.2).
    Keepalive,
    /// Not an IKE message with its non-ESP marker or an ESP packet: cannot be framed.
    Unframeable,
    /// The stream is closing.
    Closed,
}

/// One stream's write queue: frames, encoded, waiting for the writer task.
#[derive(Debug)]
pub struct Outbox {
    queue: Mutex<Vec<u8>>,
    limit: usize,
    notify: Notify,
    closed: AtomicBool,
    /// Set once the stream's pump has ended (the writer wrote what was queued at the close,
    /// or failed).
    finished: tokio::sync::watch::Sender<bool>,
}

impl Outbox {
    pub fn new(limit: usize) -> Outbox {
        Outbox {
            queue: Mutex::new(Vec::new()),
            limit,
            notify: Notify::new(),
            closed: AtomicBool::new(false),
            finished: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Bytes that may wait in the queue.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Queues `datagram` (exactly what a NAT-T datagram would carry: non-ESP marker and an
    /// IKE message, or an ESP packet) as one frame.
    pub fn push(&self, datagram: &[u8]) -> Pushed {
        if self.closed.load(Ordering::Relaxed) {
            return Pushed::Closed;
        }
        let frame = match tcp_encap::classify(datagram) {
            Ok(Frame::Keepalive) => return Pushed::Keepalive,
            Ok(frame) => frame,
            Err(_) => return Pushed::Unframeable,
        };
        let len = tcp_encap::LENGTH_LEN + datagram.len();
        if len > tcp_encap::MAX_FRAME_LEN {
            return Pushed::Unframeable;
        }
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let at = queue.len();
        if at + len > self.limit {
            return Pushed::Full;
        }
        queue.resize(at + len, 0);
        match tcp_encap::encode_frame(frame, &mut queue[at..]) {
            Ok(n) => debug_assert_eq!(n, len),
            Err(_) => {
                queue.truncate(at);
                return Pushed::Unframeable;
            }
        }
        drop(queue);
        self.notify.notify_one();
        Pushed::Queued
    }

    /// Swaps the queued bytes into `out` (which must be empty) for writing.
    pub fn take(&self, out: &mut Vec<u8>) {
        debug_assert!(out.is_empty());
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::swap(&mut *queue, out);
    }

    /// Waits until something was queued or the outbox was closed since the last wake.
    pub async fn wait(&self) {
        self.notify.notified().await;
    }

    /// Asks the writer to stop once it wrote what is queued now; nothing queued later is.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.notify.notify_one();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// The stream's pump has ended: nothing more will be written.
    pub fn finish(&self) {
        self.finished.send_replace(true);
    }

    /// Waits until [`Outbox::finish`].
    pub async fn finished(&self) {
        let mut rx = self.finished.subscribe();
        let _ = rx.wait_for(|done| *done).await;
    }
}

/// A stream the loop sends to.
#[derive(Debug)]
pub struct Entry {
    pub id: u64,
    /// The address the node sees the stream's frames arrive on.
    pub local: SocketAddr,
    pub transport: Transport,
    pub outbox: Arc<Outbox>,
    pub counters: Arc<Counters>,
    /// Where the loop returns frame batches to the stream's reader.
    pub recycle: tokio::sync::mpsc::Sender<super::Batch>,
}

/// The streams by peer address.
#[derive(Debug, Default)]
pub struct Table {
    streams: HashMap<SocketAddr, Entry>,
}

impl Table {
    pub fn get(&self, remote: &SocketAddr) -> Option<&Entry> {
        if self.streams.is_empty() {
            return None;
        }
        self.streams.get(remote)
    }

    pub fn contains(&self, remote: &SocketAddr) -> bool {
        self.get(remote).is_some()
    }

    /// Adds a stream; a stream that was registered for the same remote is closed and returned.
    pub fn insert(&mut self, remote: SocketAddr, entry: Entry) -> Option<Entry> {
        let old = self.streams.insert(remote, entry);
        if let Some(old) = &old {
            old.outbox.close();
        }
        old
    }

    /// Removes the stream `id` at `remote`, if it is the one registered there.
    pub fn remove(&mut self, remote: &SocketAddr, id: u64) -> Option<Entry> {
        match self.streams.get(remote) {
            Some(e) if e.id == id => self.streams.remove(remote),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Closes every stream (the loop is ending); returns their outboxes, to wait for the
    /// writers to put out what was queued.
    pub fn close_all(&mut self) -> Vec<Arc<Outbox>> {
        self.streams
            .drain()
            .map(|(_, e)| {
                e.outbox.close();
                e.outbox
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ike() -> Vec<u8> {
        let mut d = vec![0u8; 4 + 28];
        d[4] = 1;
        d
    }

    #[test]
    fn frames_are_queued_until_the_limit_then_dropped() {
        let esp = [0xaau8; 100];
        let frame = tcp_encap::LENGTH_LEN + esp.len();
        let outbox = Outbox::new(frame * 3 + 1);
        assert_eq!(outbox.push(&esp), Pushed::Queued);
        assert_eq!(outbox.push(&ike()), Pushed::Queued);
        assert_eq!(outbox.push(&esp), Pushed::Queued);
        assert_eq!(outbox.push(&esp), Pushed::Full);
        assert_eq!(outbox.push(&[0xff]), Pushed::Keepalive);
        assert_eq!(outbox.push(&[0, 0, 0, 0, 1]), Pushed::Unframeable);
        let mut out = Vec::new();
        outbox.take(&mut out);
        assert_eq!(out.len(), frame * 2 + 2 + ike().len());
        // The bytes decode back to the datagrams (the IKE frame without its marker).
        let mut d = tcp_encap::Decoder::new(tcp_encap::Role::Initiator, 70000);
        assert_eq!(d.push(&out), out.len());
        assert_eq!(d.next_frame().unwrap(), Some(Frame::Esp(&esp)));
        assert_eq!(d.next_frame().unwrap(), Some(Frame::Ike(&ike()[4..])));
        assert_eq!(d.next_frame().unwrap(), Some(Frame::Esp(&esp)));
        assert_eq!(d.next_frame().unwrap(), None);
        // Taken: room again.
        out.clear();
        assert_eq!(outbox.push(&esp), Pushed::Queued);
        outbox.close();
        assert_eq!(outbox.push(&esp), Pushed::Closed);
    }

    #[test]
    fn a_closed_predecessor_does_not_remove_its_successor() {
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let entry = |id| Entry {
            id,
            local: "192.0.2.1:4500".parse().unwrap(),
            transport: Transport::Tcp,
            outbox: Arc::new(Outbox::new(10)),
            counters: Arc::default(),
            recycle: tx.clone(),
        };
        let remote: SocketAddr = "198.51.100.7:40000".parse().unwrap();
        let mut t = Table::default();
        assert!(t.insert(remote, entry(1)).is_none());
        let old = t.insert(remote, entry(2)).unwrap();
        assert!(old.outbox.is_closed());
        assert!(t.remove(&remote, 1).is_none());
        assert_eq!(t.get(&remote).unwrap().id, 2);
        assert!(t.remove(&remote, 2).is_some());
        assert!(t.is_empty());
    }
}
