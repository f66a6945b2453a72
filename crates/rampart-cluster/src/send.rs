//! This member's outgoing delta stream: sequence numbers and the bounded retransmit queue.

use std::collections::VecDeque;

use crate::RecordKind;

/// A record kept for retransmission.
pub(crate) struct Stored {
    pub kind: RecordKind,
    pub key: u64,
    pub body: Vec<u8>,
}

/// Invariants: `queue` holds exactly the records `base..next_seq` in order;
/// `base <= sent_upto <= next_seq`; `queue.len() <= limit`.
pub(crate) struct SendStream {
    pub next_seq: u64,
    pub base: u64,
    pub sent_upto: u64,
    queue: VecDeque<Stored>,
    limit: usize,
}

impl SendStream {
    pub(crate) fn new(limit: usize) -> SendStream {
        SendStream {
            next_seq: 0,
            base: 0,
            sent_upto: 0,
            queue: VecDeque::new(),
            limit: limit.max(1),
        }
    }

    /// Appends a record; when the queue is full the oldest record is dropped (a receiver that
    /// still needs it is told with a Lost message and resyncs).
    pub(crate) fn push(&mut self, kind: RecordKind, key: u64, body: &[u8]) {
        if self.queue.len() == self.limit {
            self.queue.pop_front();
            self.base += 1;
            self.sent_upto = self.sent_upto.max(self.base);
        }
        self.queue.push_back(Stored {
            kind,
            key,
            body: body.to_vec(),
        });
        self.next_seq += 1;
    }

    /// Consumes a sequence number without keeping the record (nobody to send it to).
    pub(crate) fn skip(&mut self) {
        debug_assert!(self.queue.is_empty());
        self.next_seq += 1;
        self.base = self.next_seq;
        self.sent_upto = self.next_seq;
    }

    /// Drops every queued record (no live receiver left).
    pub(crate) fn clear(&mut self) {
        self.queue.clear();
        self.base = self.next_seq;
        self.sent_upto = self.next_seq;
    }

    /// Frees records below `upto` (acknowledged by every live receiver).
    pub(crate) fn release(&mut self, upto: u64) {
        let upto = upto.min(self.next_seq);
        while self.base < upto {
            self.queue.pop_front();
            self.base += 1;
        }
        self.sent_upto = self.sent_upto.max(self.base);
    }

    pub(crate) fn get(&self, seq: u64) -> Option<&Stored> {
        let i = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        self.queue.get(i)
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn unsent(&self) -> usize {
        (self.next_seq - self.sent_upto) as usize
    }
}
