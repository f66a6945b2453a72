//! The full-sync stream (inside TLS): length-prefixed frames.
//!
//! ```text
//! frame  = length (LEB128 varint: bytes after it, 1..=MAX_FRAME) type (u8) payload
//! Hello  (1) member u8, proof [32]
//! Begin  (2) snapshot_seq u64 BE
//! Record (3) kind u8, key varint, body (the rest of the frame)
//! End    (4) records varint
//! ```
//!
//! The decoder accepts the bytes in any split and refuses frames over [`MAX_FRAME`] as soon as
//! their length is read, so a peer cannot make it buffer more than that.

use crate::wire::{put_varint, Reader};
use crate::{MemberId, RecordKind};

/// Largest frame (type + payload) either side accepts.
pub const MAX_FRAME: usize = 1 << 20;

const HELLO: u8 = 1;
const BEGIN: u8 = 2;
const RECORD: u8 = 3;
const END: u8 = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FullSyncFrame {
    /// First frame each way: who speaks, and the proof of the cluster secret bound to this TLS
    /// session ([`crate::full_sync_proof`]).
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
    /// Appends `frame` to `out`.
    ///
    /// # Panics
    /// If a record body makes the frame larger than [`MAX_FRAME`] (the node's records are far
    /// smaller; the decoder would refuse it).
    pub fn encode(&mut self, frame: &FullSyncFrame, out: &mut Vec<u8>) {
        match frame {
            FullSyncFrame::Hello { member, proof } => {
                put_varint(out, 34);
                out.push(HELLO);
                out.push(*member);
                out.extend_from_slice(proof);
            }
            FullSyncFrame::Begin { snapshot_seq } => {
                put_varint(out, 9);
                out.push(BEGIN);
                out.extend_from_slice(&snapshot_seq.to_be_bytes());
            }
            FullSyncFrame::Record { kind, key, body } => self.encode_record(*kind, *key, body, out),
            FullSyncFrame::End { records } => {
                put_varint(out, 1 + crate::wire::varint_len(*records) as u64);
                out.push(END);
                put_varint(out, *records);
            }
        }
    }

    /// Appends a `Record` frame without building a [`FullSyncFrame`] (no copy of `body`).
    pub fn encode_record(&mut self, kind: RecordKind, key: u64, body: &[u8], out: &mut Vec<u8>) {
        let len = 2 + crate::wire::varint_len(key) + body.len();
        assert!(len <= MAX_FRAME, "full-sync record of {len} bytes");
        put_varint(out, len as u64);
        out.push(RECORD);
        out.push(kind as u8);
        put_varint(out, key);
        out.extend_from_slice(body);
    }
}

/// Decodes frames from bytes as they arrive, in any split.
///
/// Invariant: `buf[pos..]` holds the bytes not yet decoded; an error is sticky (the stream
/// is broken and must be closed).
#[derive(Debug, Default)]
pub struct FullSyncDecoder {
    buf: Vec<u8>,
    pos: usize,
    error: Option<StreamError>,
}

impl FullSyncDecoder {
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<FullSyncFrame>, StreamError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        match self.decode() {
            Ok(f) => Ok(f),
            Err(e) => {
                self.error = Some(e.clone());
                Err(e)
            }
        }
    }

    fn decode(&mut self) -> Result<Option<FullSyncFrame>, StreamError> {
        let rest = &self.buf[self.pos..];
        // The length: at most 3 varint bytes for MAX_FRAME.
        let mut len = 0usize;
        let mut header = 0;
        loop {
            let Some(&b) = rest.get(header) else {
                return Ok(None);
            };
            len |= usize::from(b & 0x7f) << (7 * header);
            header += 1;
            if len > MAX_FRAME {
                return Err(StreamError::TooLarge(len));
            }
            if b & 0x80 == 0 {
                if header > 1 && b == 0 {
                    return Err(StreamError::Malformed("non-minimal length"));
                }
                break;
            }
            if header == 3 {
                return Err(StreamError::TooLarge(len | 1 << 21));
            }
        }
        if len == 0 {
            return Err(StreamError::Malformed("empty frame"));
        }
        let Some(frame) = rest.get(header..header + len) else {
            return Ok(None);
        };
        let (ty, payload) = (frame[0], &frame[1..]);
        let mut r = Reader::new(payload);
        let f = match ty {
            HELLO => {
                let member = r.u8().ok_or(StreamError::Malformed("short hello"))?;
                let proof = r
                    .bytes(32)
                    .ok_or(StreamError::Malformed("short hello"))?
                    .try_into()
                    .expect("32 bytes");
                FullSyncFrame::Hello { member, proof }
            }
            BEGIN => FullSyncFrame::Begin {
                snapshot_seq: r.u64().ok_or(StreamError::Malformed("short begin"))?,
            },
            RECORD => {
                let kind = r
                    .u8()
                    .and_then(RecordKind::from_u8)
                    .ok_or(StreamError::Malformed("unknown record kind"))?;
                let key = r.varint().ok_or(StreamError::Malformed("bad record key"))?;
                let body = r.rest().to_vec();
                FullSyncFrame::Record { kind, key, body }
            }
            END => FullSyncFrame::End {
                records: r.varint().ok_or(StreamError::Malformed("short end"))?,
            },
            _ => return Err(StreamError::Malformed("unknown frame type")),
        };
        if !r.is_empty() {
            return Err(StreamError::Malformed("trailing bytes in frame"));
        }
        self.pos += header + len;
        Ok(Some(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames() -> Vec<FullSyncFrame> {
        vec![
            FullSyncFrame::Hello {
                member: 2,
                proof: [7; 32],
            },
            FullSyncFrame::Begin {
                snapshot_seq: 1 << 40,
            },
            FullSyncFrame::Record {
                kind: RecordKind::ConnUpsert,
                key: 5 << 48 | 1,
                body: vec![1; 40],
            },
            FullSyncFrame::Record {
                kind: RecordKind::SaDelete,
                key: 0,
                body: vec![],
            },
            FullSyncFrame::Record {
                kind: RecordKind::SaUpsert,
                key: u64::MAX,
                body: vec![3; 300],
            },
            FullSyncFrame::End { records: 3 },
        ]
    }

    #[test]
    fn round_trip_in_every_split() {
        let mut enc = FullSyncEncoder::default();
        let mut bytes = Vec::new();
        for f in frames() {
            enc.encode(&f, &mut bytes);
        }
        for chunk in [1, 2, 3, 7, 64, bytes.len()] {
            let mut dec = FullSyncDecoder::default();
            let mut got = Vec::new();
            for part in bytes.chunks(chunk) {
                dec.push(part);
                while let Some(f) = dec.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got, frames(), "chunk {chunk}");
            assert_eq!(dec.buffered(), 0);
        }
    }

    #[test]
    fn limits_and_garbage() {
        let mut dec = FullSyncDecoder::default();
        dec.push(&[0xff, 0xff, 0x7f]);
        assert!(matches!(dec.next_frame(), Err(StreamError::TooLarge(_))));
        assert!(dec.next_frame().is_err(), "errors are sticky");
        let mut dec = FullSyncDecoder::default();
        dec.push(&[2, 9, 0]);
        assert_eq!(
            dec.next_frame(),
            Err(StreamError::Malformed("unknown frame type"))
        );
        let mut dec = FullSyncDecoder::default();
        dec.push(&[0]);
        assert!(dec.next_frame().is_err());
        let mut dec = FullSyncDecoder::default();
        dec.push(&[3, 2, 0, 0]);
        assert_eq!(dec.next_frame(), Err(StreamError::Malformed("short begin")));
    }
}
