//! The full-sync stream (inside TLS): length-prefixed frames. API skeleton.

use crate::{MemberId, RecordKind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FullSyncFrame {
    /// First frame each way: who speaks, and (secret mode) the proof of the cluster secret
    /// bound to this TLS session: HMAC-SHA256(sync key, "rampart full sync" || exporter).
    Hello { member: MemberId, proof: [u8; 32] },
    /// The snapshot starts; it holds every record up to the sender's sequence `snapshot_seq`.
    Begin { snapshot_seq: u64 },
    Record {
        kind: RecordKind,
        key: u64,
        body: Vec<u8>,
    },
    /// The snapshot ends with `records` records.
    End { records: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
}

/// Encodes frames into a caller-owned output buffer.
#[derive(Debug, Default)]
pub struct FullSyncEncoder {
    _private: (),
}

impl FullSyncEncoder {
    pub fn encode(&mut self, _frame: &FullSyncFrame, _out: &mut Vec<u8>) {
        todo!()
    }
}

/// Decodes frames from bytes as they arrive, in any split.
#[derive(Debug, Default)]
pub struct FullSyncDecoder {
    _private: (),
}

impl FullSyncDecoder {
    pub fn push(&mut self, _bytes: &[u8]) {
        todo!()
    }
    pub fn next_frame(&mut self) -> Result<Option<FullSyncFrame>, StreamError> {
        todo!()
    }
}
