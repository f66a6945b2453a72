//! One sender's delta stream as this member receives it: in-order delivery, the out-of-order
//! buffer, gap detection for NACKs, and records held back during a full sync.

use std::collections::{BTreeMap, VecDeque};

use crate::wire::AckEntry;
use crate::{DeltaRecord, MemberId, RecordKind};

/// Records further than this above the next expected one are dropped (the sender retransmits
/// them when asked): bounds the out-of-order buffer.
pub(crate) const REORDER_LIMIT: u64 = 65_536;

/// Invariants: every key of `ooo` is > `next`; `hold`, when set, holds exactly the records
/// `hold_from..next` in order.
#[derive(Default)]
pub(crate) struct RecvStream {
    /// The member whose stream this is (goes into every delivered record's `from`).
    pub sender: MemberId,
    /// Set once we know where in the sender's stream we start (its heartbeat's `next_seq`
    /// or the first record we saw).
    pub anchored: bool,
    /// Every record below this was delivered (or held).
    pub next: u64,
    /// The sender's announced `next_seq` (from heartbeats) or one past the highest seen.
    pub known_end: u64,
    ooo: BTreeMap<u64, (RecordKind, u64, Vec<u8>)>,
    /// During a full sync from this sender: delivered records waiting for the snapshot.
    pub hold: Option<(u64, Vec<DeltaRecord>)>,
    /// Most records `hold` keeps; beyond, it restarts from the newest (the full sync then
    /// finds it too recent and starts over).
    hold_cap: usize,
    /// Data datagrams since our last ack to this sender.
    pub unacked_datagrams: u32,
    /// A gap was seen and not yet NACKed by a prompt ack.
    pub gap_pending: bool,
}

/// What accepting one record did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Accept {
    /// Delivered (plus `n` more drained from the reorder buffer).
    Delivered(usize),
    Buffered,
    Duplicate,
    TooFar,
}

impl RecvStream {
    pub(crate) fn new(sender: MemberId) -> RecvStream {
        RecvStream {
            sender,
            ..RecvStream::default()
        }
    }

    pub(crate) fn reset(&mut self) {
        *self = RecvStream::new(self.sender);
    }

    pub(crate) fn anchor(&mut self, at: u64) {
        if !self.anchored {
            self.anchored = true;
            self.next = at;
            self.known_end = self.known_end.max(at);
            if let Some((from, _)) = &mut self.hold {
                *from = at;
            }
        }
    }

    /// Holds delivered records from now on (a full sync from this sender is wanted).
    pub(crate) fn start_hold(&mut self, cap: usize) {
        self.hold = Some((self.next, Vec::new()));
        self.hold_cap = cap;
    }

    pub(crate) fn reorder_len(&self) -> usize {
        self.ooo.len()
    }

    fn deliver(&mut self, out: &mut VecDeque<DeltaRecord>, rec: DeltaRecord) {
        self.next = rec.seq + 1;
        match &mut self.hold {
            Some((from, held)) => {
                if held.len() >= self.hold_cap {
                    held.clear();
                    *from = self.next;
                } else {
                    held.push(rec);
                }
            }
            None => out.push_back(rec),
        }
    }

    pub(crate) fn accept(
        &mut self,
        out: &mut VecDeque<DeltaRecord>,
        seq: u64,
        kind: RecordKind,
        key: u64,
        body: &[u8],
    ) -> Accept {
        self.anchor(seq);
        self.known_end = self.known_end.max(seq + 1);
        if seq < self.next {
            return Accept::Duplicate;
        }
        if seq > self.next {
            if seq - self.next > REORDER_LIMIT {
                return Accept::TooFar;
            }
            if self.ooo.contains_key(&seq) {
                return Accept::Duplicate;
            }
            self.ooo.insert(seq, (kind, key, body.to_vec()));
            self.gap_pending = true;
            return Accept::Buffered;
        }
        let body = body.to_vec();
        self.deliver(
            out,
            DeltaRecord {
                from: self.sender,
                seq,
                kind,
                key,
                body,
            },
        );
        Accept::Delivered(self.drain_in_order(out))
    }

    /// Delivers the buffered records that are now next in order; returns how many.
    fn drain_in_order(&mut self, out: &mut VecDeque<DeltaRecord>) -> usize {
        let mut n = 0;
        while let Some(entry) = self.ooo.first_entry() {
            if *entry.key() != self.next {
                break;
            }
            let (seq, (kind, key, body)) = entry.remove_entry();
            let from = self.sender;
            self.deliver(
                out,
                DeltaRecord {
                    from,
                    seq,
                    kind,
                    key,
                    body,
                },
            );
            n += 1;
        }
        n
    }

    /// Skips to `resume_at` (the sender no longer has what lies below). Returns how many
    /// records were skipped that we had not received.
    pub(crate) fn skip_to(&mut self, out: &mut VecDeque<DeltaRecord>, resume_at: u64) -> u64 {
        if resume_at <= self.next {
            return 0;
        }
        let mut missing = resume_at - self.next;
        let below: Vec<u64> = self.ooo.range(..resume_at).map(|(s, _)| *s).collect();
        missing -= below.len() as u64;
        for s in below {
            self.ooo.remove(&s);
        }
        self.next = resume_at;
        if let Some((from, held)) = &mut self.hold {
            held.clear();
            *from = resume_at;
        }
        self.drain_in_order(out);
        missing
    }

    pub(crate) fn has_gap(&self) -> bool {
        self.anchored && self.known_end > self.next
    }

    /// Our cumulative ack and the first missing ranges of this stream.
    pub(crate) fn ack_entry(&self, sender: MemberId, boot_id: u64) -> AckEntry {
        let mut e = AckEntry::new(sender, boot_id, self.next);
        let mut at = self.next;
        for &seq in self.ooo.keys() {
            if seq > at && !e.push_nack(at, seq - at) {
                return e;
            }
            at = seq + 1;
        }
        if self.known_end > at {
            e.push_nack(at, self.known_end - at);
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reorder_gap_and_drain() {
        let mut q = VecDeque::new();
        let mut r = RecvStream::default();
        r.anchor(10);
        let k = RecordKind::ConnUpsert;
        assert_eq!(r.accept(&mut q, 12, k, 1, b"c"), Accept::Buffered);
        assert_eq!(r.accept(&mut q, 14, k, 1, b"e"), Accept::Buffered);
        r.known_end = 20;
        let e = r.ack_entry(1, 0);
        assert_eq!(e.next, 10);
        assert_eq!(e.nacks(), &[(10, 2), (13, 1), (15, 5)]);
        assert_eq!(r.accept(&mut q, 10, k, 1, b"a"), Accept::Delivered(0));
        assert_eq!(r.accept(&mut q, 11, k, 1, b"b"), Accept::Delivered(1));
        assert_eq!(r.accept(&mut q, 11, k, 1, b"b"), Accept::Duplicate);
        assert_eq!(q.iter().map(|d| d.seq).collect::<Vec<_>>(), [10, 11, 12]);
        assert_eq!(r.skip_to(&mut q, 16), 2, "13 and 15 missing, 14 had");
        assert_eq!(r.next, 16);
    }
}
