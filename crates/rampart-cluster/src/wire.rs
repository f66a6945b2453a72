//! The datagram format of heartbeats and delta sync (UDP, port 8116 by default).
//!
//! ```text
//! clear header (24 bytes, authenticated as AEAD AAD)
//!   0  magic "RC"
//!   2  version (1)
//!   3  message type (1 heartbeat, 2 data, 3 ack, 4 lost, 5 handover)
//!   4  sender member id
//!   5  3 bytes reserved, zero
//!   8  sender boot id (u64, big endian)
//!  16  datagram counter (u64, big endian; the AEAD nonce is 4 zero bytes || counter)
//! AES-256-GCM ciphertext of the message, then the 16-byte tag
//! ```
//!
//! Integers inside messages are LEB128 varints unless noted. Everything here is pure encoding:
//! no state, no allocation in the decoders except where they return owned records.

use crate::{MemberId, MemberState, RecordKind};

pub(crate) const MAGIC: [u8; 2] = *b"RC";
pub(crate) const VERSION: u8 = 1;
pub(crate) const HEADER_LEN: usize = 24;
pub(crate) const TAG_LEN: usize = 16;
/// Largest datagram the engine builds from small records: fits a 1500-byte MTU over IPv6.
pub(crate) const MAX_DATAGRAM: usize = 1452;
/// Plaintext room in a [`MAX_DATAGRAM`] datagram.
pub(crate) const MAX_PLAINTEXT: usize = MAX_DATAGRAM - HEADER_LEN - TAG_LEN;
/// Largest record body. A record that does not fit [`MAX_PLAINTEXT`] travels alone in a larger
/// datagram (IP fragmentation on the sync link); receivers must accept 65,535-byte datagrams.
pub const MAX_RECORD_BODY: usize = 65_000;
/// NACK ranges one ack entry carries at most.
pub(crate) const MAX_NACKS: usize = 8;
/// Monitored interfaces a heartbeat names at most (and bytes of one name).
pub(crate) const MAX_IFACES: usize = 16;
pub(crate) const MAX_IFACE_NAME: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum MsgType {
    Heartbeat = 1,
    Data = 2,
    Ack = 3,
    Lost = 4,
    Handover = 5,
}

impl MsgType {
    fn from_u8(v: u8) -> Option<MsgType> {
        Some(match v {
            1 => MsgType::Heartbeat,
            2 => MsgType::Data,
            3 => MsgType::Ack,
            4 => MsgType::Lost,
            5 => MsgType::Handover,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub ty: MsgType,
    pub sender: MemberId,
    pub boot_id: u64,
    pub counter: u64,
}

impl Header {
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.ty as u8);
        out.push(self.sender);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&self.boot_id.to_be_bytes());
        out.extend_from_slice(&self.counter.to_be_bytes());
    }

    /// Parses the clear header; `None` if `buf` is too short or not ours.
    pub(crate) fn parse(buf: &[u8]) -> Option<Header> {
        let h: &[u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
        if h[..2] != MAGIC || h[2] != VERSION || h[5..8] != [0, 0, 0] {
            return None;
        }
        Some(Header {
            ty: MsgType::from_u8(h[3])?,
            sender: h[4],
            boot_id: u64::from_be_bytes(h[8..16].try_into().ok()?),
            counter: u64::from_be_bytes(h[16..24].try_into().ok()?),
        })
    }
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

/// A cursor over a message; every read fails (`None`) rather than panics on short input.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    /// Everything left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.buf.split_first()?;
        self.buf = rest;
        Some(b)
    }
    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }
    pub(crate) fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.bytes(2)?.try_into().ok()?))
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.bytes(8)?.try_into().ok()?))
    }
    pub(crate) fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            if i == 9 && b > 1 {
                return None;
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                // Minimal encodings only: one value, one encoding.
                return (i == 0 || b != 0).then_some(v);
            }
        }
        None
    }
}

pub(crate) fn state_to_u8(s: MemberState) -> u8 {
    match s {
        MemberState::Init => 0,
        MemberState::Syncing => 1,
        MemberState::Standby => 2,
        MemberState::Active => 3,
        MemberState::Down => 4,
    }
}

pub(crate) fn state_from_u8(v: u8) -> Option<MemberState> {
    Some(match v {
        0 => MemberState::Init,
        1 => MemberState::Syncing,
        2 => MemberState::Standby,
        3 => MemberState::Active,
        4 => MemberState::Down,
        _ => return None,
    })
}

/// A receiver's acknowledgement of one sender's delta stream.
///
/// `next` is cumulative: every record below it was received. Each NACK range `(start, len)`
/// lies above `next`, ranges are ascending and disjoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AckEntry {
    /// The sender whose stream this acknowledges.
    pub peer: MemberId,
    /// That sender's boot id: acks of a previous boot are ignored.
    pub boot_id: u64,
    pub next: u64,
    pub nacks: [(u64, u64); MAX_NACKS],
    pub n_nacks: u8,
}

impl AckEntry {
    pub(crate) fn new(peer: MemberId, boot_id: u64, next: u64) -> AckEntry {
        AckEntry {
            peer,
            boot_id,
            next,
            nacks: [(0, 0); MAX_NACKS],
            n_nacks: 0,
        }
    }
    pub(crate) fn nacks(&self) -> &[(u64, u64)] {
        &self.nacks[..usize::from(self.n_nacks)]
    }
    /// Adds a range; false when full.
    pub(crate) fn push_nack(&mut self, start: u64, len: u64) -> bool {
        if usize::from(self.n_nacks) == MAX_NACKS {
            return false;
        }
        self.nacks[usize::from(self.n_nacks)] = (start, len);
        self.n_nacks += 1;
        true
    }

    /// peer u8, boot id u64 BE, next varint, count u8, then per range
    /// (start - previous end) varint and len varint.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.push(self.peer);
        out.extend_from_slice(&self.boot_id.to_be_bytes());
        put_varint(out, self.next);
        out.push(self.n_nacks);
        let mut prev = self.next;
        for &(start, len) in self.nacks() {
            put_varint(out, start - prev);
            put_varint(out, len);
            prev = start + len;
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Option<AckEntry> {
        let mut e = AckEntry::new(r.u8()?, r.u64()?, r.varint()?);
        let n = r.u8()?;
        if usize::from(n) > MAX_NACKS {
            return None;
        }
        let mut prev = e.next;
        for _ in 0..n {
            let start = prev.checked_add(r.varint()?)?;
            let len = r.varint()?;
            if len == 0 {
                return None;
            }
            prev = start.checked_add(len)?;
            e.push_nack(start, len);
        }
        Some(e)
    }
}

/// A heartbeat: the sender's view of itself plus its acks of every other member's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Heartbeat {
    pub state: MemberState,
    pub admin_down: bool,
    pub priority: u16,
    /// The sequence number the sender's next record gets.
    pub next_seq: u64,
    /// The sender's takeover generation (see the engine's election rule).
    pub generation: u64,
    /// Names of the sender's monitored interfaces that are down.
    pub interfaces_down: Vec<String>,
    pub acks: Vec<AckEntry>,
}

impl Heartbeat {
    /// state u8, flags u8 (bit 0 admin down), priority u16 BE, next_seq varint,
    /// generation varint, interface count u8 + (len u8, name) each, ack count u8 + [`AckEntry`] each.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.push(state_to_u8(self.state));
        out.push(u8::from(self.admin_down));
        out.extend_from_slice(&self.priority.to_be_bytes());
        put_varint(out, self.next_seq);
        put_varint(out, self.generation);
        let ifaces = &self.interfaces_down[..self.interfaces_down.len().min(MAX_IFACES)];
        out.push(ifaces.len() as u8);
        for name in ifaces {
            let name = &name.as_bytes()[..name.len().min(MAX_IFACE_NAME)];
            out.push(name.len() as u8);
            out.extend_from_slice(name);
        }
        out.push(self.acks.len() as u8);
        for a in &self.acks {
            a.write(out);
        }
    }

    pub(crate) fn read(buf: &[u8]) -> Option<Heartbeat> {
        let mut r = Reader::new(buf);
        let state = state_from_u8(r.u8()?)?;
        let flags = r.u8()?;
        let priority = r.u16()?;
        let next_seq = r.varint()?;
        let generation = r.varint()?;
        let n_if = usize::from(r.u8()?);
        if n_if > MAX_IFACES {
            return None;
        }
        let mut interfaces_down = Vec::with_capacity(n_if);
        for _ in 0..n_if {
            let len = usize::from(r.u8()?);
            if len > MAX_IFACE_NAME {
                return None;
            }
            interfaces_down.push(String::from_utf8_lossy(r.bytes(len)?).into_owned());
        }
        let n_acks = usize::from(r.u8()?);
        if n_acks > 8 {
            return None;
        }
        let mut acks = Vec::with_capacity(n_acks);
        for _ in 0..n_acks {
            acks.push(AckEntry::read(&mut r)?);
        }
        if !r.is_empty() {
            return None;
        }
        Some(Heartbeat {
            state,
            admin_down: flags & 1 != 0,
            priority,
            next_seq,
            generation,
            interfaces_down,
            acks,
        })
    }
}

/// Ack message: one [`AckEntry`] for the recipient's stream, nothing else.
pub(crate) fn read_ack(buf: &[u8]) -> Option<AckEntry> {
    let mut r = Reader::new(buf);
    let e = AckEntry::read(&mut r)?;
    r.is_empty().then_some(e)
}

/// Lost message: recipient u8, resume_at varint. "Records of my stream below `resume_at` that
/// you have not acknowledged are gone; continue from `resume_at`."
pub(crate) fn write_lost(out: &mut Vec<u8>, recipient: MemberId, resume_at: u64) {
    out.push(recipient);
    put_varint(out, resume_at);
}

pub(crate) fn read_lost(buf: &[u8]) -> Option<(MemberId, u64)> {
    let mut r = Reader::new(buf);
    let v = (r.u8()?, r.varint()?);
    r.is_empty().then_some(v)
}

/// Handover message: target u8, seq varint. "Take the active role once you have every record
/// of my stream below `seq`."
pub(crate) fn write_handover(out: &mut Vec<u8>, target: MemberId, seq: u64) {
    out.push(target);
    put_varint(out, seq);
}

pub(crate) fn read_handover(buf: &[u8]) -> Option<(MemberId, u64)> {
    read_lost(buf)
}

/// Bytes one record takes in a data message after a record with key `prev_key`.
pub(crate) fn record_len(prev_key: u64, key: u64, body_len: usize) -> usize {
    1 + varint_len(zigzag(key.wrapping_sub(prev_key) as i64))
        + varint_len(body_len as u64)
        + body_len
}

/// Data message: first_seq varint, then records with consecutive sequence numbers, each:
/// kind u8, key as zigzag varint of the difference to the previous record's key in this
/// datagram (the first: to 0), body length varint, body.
pub(crate) fn write_record(
    out: &mut Vec<u8>,
    prev_key: u64,
    kind: RecordKind,
    key: u64,
    body: &[u8],
) {
    out.push(kind as u8);
    put_varint(out, zigzag(key.wrapping_sub(prev_key) as i64));
    put_varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

/// Iterates the records of a data message.
pub(crate) struct DataReader<'a> {
    r: Reader<'a>,
    pub next_seq: u64,
    prev_key: u64,
}

impl<'a> DataReader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Option<DataReader<'a>> {
        let mut r = Reader::new(buf);
        let next_seq = r.varint()?;
        Some(DataReader {
            r,
            next_seq,
            prev_key: 0,
        })
    }

    /// The next record, `Ok(None)` at the end, `Err(())` if malformed.
    #[allow(clippy::type_complexity)]
    pub(crate) fn next_record(&mut self) -> Result<Option<(u64, RecordKind, u64, &'a [u8])>, ()> {
        if self.r.is_empty() {
            return Ok(None);
        }
        let kind = self.r.u8().and_then(RecordKind::from_u8).ok_or(())?;
        let delta = self.r.varint().ok_or(())?;
        let key = self.prev_key.wrapping_add(unzigzag(delta) as u64);
        let len = self.r.varint().ok_or(())?;
        if len > MAX_RECORD_BODY as u64 {
            return Err(());
        }
        let body = self.r.bytes(len as usize).ok_or(())?;
        let seq = self.next_seq;
        self.next_seq = seq.checked_add(1).ok_or(())?;
        self.prev_key = key;
        Ok(Some((seq, kind, key, body)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX - 1, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v));
            assert_eq!(Reader::new(&out).varint(), Some(v));
        }
        for v in [0i64, 1, -1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        // 10 bytes with a too-large last byte.
        assert_eq!(
            Reader::new(&[0xff; 9].iter().chain(&[2]).copied().collect::<Vec<_>>()).varint(),
            None
        );
    }

    #[test]
    fn header_round_trip_and_refusals() {
        let h = Header {
            ty: MsgType::Data,
            sender: 3,
            boot_id: 0x0102_0304_0506_0708,
            counter: 99,
        };
        let mut out = Vec::new();
        h.write(&mut out);
        assert_eq!(out.len(), HEADER_LEN);
        assert_eq!(Header::parse(&out), Some(h));
        let mut bad = out.clone();
        bad[0] = b'X';
        assert_eq!(Header::parse(&bad), None);
        let mut bad = out.clone();
        bad[3] = 9;
        assert_eq!(Header::parse(&bad), None);
        assert_eq!(Header::parse(&out[..HEADER_LEN - 1]), None);
    }

    #[test]
    fn heartbeat_round_trip() {
        let mut ack = AckEntry::new(2, 77, 1000);
        ack.push_nack(1005, 3);
        ack.push_nack(1100, 1);
        let hb = Heartbeat {
            state: MemberState::Standby,
            admin_down: true,
            priority: 200,
            next_seq: 123_456,
            generation: 300,
            interfaces_down: vec!["eth1".into()],
            acks: vec![ack, AckEntry::new(4, 1, 0)],
        };
        let mut out = Vec::new();
        hb.write(&mut out);
        assert_eq!(Heartbeat::read(&out), Some(hb));
        for cut in 0..out.len() {
            assert_eq!(Heartbeat::read(&out[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn data_round_trip_with_key_deltas() {
        let recs = [
            (RecordKind::ConnUpsert, 5u64 << 48 | 7, vec![1u8; 40]),
            (RecordKind::ConnUpsert, 5u64 << 48 | 8, vec![2u8; 40]),
            (RecordKind::ConnDelete, 3, vec![]),
            (RecordKind::SaUpsert, u64::MAX, vec![9; 300]),
        ];
        let mut out = Vec::new();
        put_varint(&mut out, 42);
        let mut prev = 0;
        for (kind, key, body) in &recs {
            let before = out.len();
            write_record(&mut out, prev, *kind, *key, body);
            assert_eq!(out.len() - before, record_len(prev, *key, body.len()));
            prev = *key;
        }
        let mut d = DataReader::new(&out).unwrap();
        for (i, (kind, key, body)) in recs.iter().enumerate() {
            let (seq, k, kk, b) = d.next_record().unwrap().unwrap();
            assert_eq!((seq, k, kk, b), (42 + i as u64, *kind, *key, &body[..]));
        }
        assert_eq!(d.next_record(), Ok(None));
        // The second consecutive connection costs 1 (kind) + 1 (key delta) + 1 (len) + 40.
        assert_eq!(record_len(5 << 48 | 7, 5 << 48 | 8, 40), 43);
    }
}
