//! The datagram format of heartbeats and delta sync (UDP, port 8116 by default).
//!
//! ```text
//! clear header (24 bytes, authenticated as AEAD AAD)
//!   0  magic "RC"
//!   2  version (1)
//!   3  message type (1 heartbeat, 2 data, 3 ack, 4 lost, 5 handover; 6 flush, 7 update
//!      request, 8 update answer, 9 forward are Load Sharing's, see below)
//!   4  sender member id
//!   5  3 bytes reserved, zero
//!   8  sender boot id (u64, big endian)
//!  16  datagram counter (u64, big endian; the AEAD nonce is 4 zero bytes || counter)
//! AES-256-GCM ciphertext of the message, then the 16-byte tag
//! ```
//!
//! Integers inside messages are LEB128 varints unless noted. Everything here is pure encoding:
//! no state, no allocation in the decoders except where they return owned records.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::{FlowKey, MemberId, MemberState, RecordKind};

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
    Flush = 6,
    UpdateRequest = 7,
    UpdateAnswer = 8,
    Forward = 9,
}

impl MsgType {
    pub(crate) fn from_u8(v: u8) -> Option<MsgType> {
        Some(match v {
            1 => MsgType::Heartbeat,
            2 => MsgType::Data,
            3 => MsgType::Ack,
            4 => MsgType::Lost,
            5 => MsgType::Handover,
            6 => MsgType::Flush,
            7 => MsgType::UpdateRequest,
            8 => MsgType::UpdateAnswer,
            9 => MsgType::Forward,
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

/// Rewrites the message type of a header written by [`Header::write`] (before sealing).
pub(crate) fn set_msg_type(buf: &mut [u8], ty: MsgType) {
    buf[3] = ty as u8;
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

// ---------------------------------------------------------------------------------------------
// Load Sharing messages (issue #14). Message types 6 to 9 of the clear header:
//
//   6 flush: the body of a data message (2). The receiver handles it as data and acknowledges
//     the sender's stream at once with an ordinary ack message (3) instead of waiting for the
//     end of the burst: the cumulative ack `next` is what Flush-and-Ack waits for, so no
//     separate "flush ack" exists.
//   7 update request (pfsync's UPD_REQ): "send me the state of these flows / SAs".
//   8 update answer: per request entry, "my stream carries it below sequence number `upto`"
//     (the answering member pushes a fresh record of it into its ordinary, reliable delta
//     stream, so the requester applies it in order and nothing is applied twice or out of
//     order) or "I do not know it".
//   9 forward: a packet handed to the member that owns its flow or SA, unchanged (see
//     `write_forward`).
//
// A flush is accepted in either mode (it is data); 7 to 9 only in Load Sharing (a member in
// high availability refuses them as malformed).

/// Entries one update request or answer carries at most.
pub const MAX_UPDATE_ENTRIES: usize = 64;

/// Why a Load Sharing message did not decode (the datagram is then counted as malformed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated")]
    Truncated,
    #[error("unknown entry tag {0}")]
    UnknownTag(u8),
    #[error("entry count {0} is zero or above the limit")]
    BadCount(usize),
    #[error("connection endpoints not in canonical order")]
    NotCanonical,
    #[error("bytes after the last entry")]
    Trailing,
}

/// One thing asked for in an update request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateQuery {
    /// The requester's id for matching the answer.
    pub id: u32,
    pub flow: FlowKey,
}

/// The answer to one [`UpdateQuery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerOutcome {
    /// The state is record `key` of the answering member's stream, carried by a record below
    /// `upto`: apply it once that member's stream is received up to `upto`.
    Found { key: u64, upto: u64 },
    /// The answering member has no state for it.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateAnswerEntry {
    pub id: u32,
    pub outcome: AnswerOutcome,
}

/// Message type numbers of the Load Sharing messages (see above).
pub const MSG_FLUSH: u8 = 6;
pub const MSG_UPDATE_REQUEST: u8 = 7;
pub const MSG_UPDATE_ANSWER: u8 = 8;
pub const MSG_FORWARD: u8 = 9;

fn put_endpoint(out: &mut Vec<u8>, a: SocketAddr) {
    match a.ip() {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(6);
            out.extend_from_slice(&v6.octets());
        }
    }
    out.extend_from_slice(&a.port().to_be_bytes());
}

fn read_endpoint(r: &mut Reader<'_>) -> Result<SocketAddr, DecodeError> {
    let ip: IpAddr = match r.u8().ok_or(DecodeError::Truncated)? {
        4 => {
            let b: [u8; 4] = r
                .bytes(4)
                .ok_or(DecodeError::Truncated)?
                .try_into()
                .map_err(|_| DecodeError::Truncated)?;
            Ipv4Addr::from(b).into()
        }
        6 => {
            let b: [u8; 16] = r
                .bytes(16)
                .ok_or(DecodeError::Truncated)?
                .try_into()
                .map_err(|_| DecodeError::Truncated)?;
            Ipv6Addr::from(b).into()
        }
        t => return Err(DecodeError::UnknownTag(t)),
    };
    Ok(SocketAddr::new(ip, r.u16().ok_or(DecodeError::Truncated)?))
}

/// Flow key: tag u8 (1 connection, 2 ESP SA); connection: protocol u8, then both endpoints
/// (family u8 4 or 6, address, port u16 BE) in canonical order; ESP: SPI u32 BE.
fn put_flow(out: &mut Vec<u8>, flow: &FlowKey) {
    match *flow {
        FlowKey::Conn { protocol, lo, hi } => {
            out.push(1);
            out.push(protocol);
            put_endpoint(out, lo);
            put_endpoint(out, hi);
        }
        FlowKey::Esp { spi } => {
            out.push(2);
            out.extend_from_slice(&spi.to_be_bytes());
        }
    }
}

fn read_flow(r: &mut Reader<'_>) -> Result<FlowKey, DecodeError> {
    match r.u8().ok_or(DecodeError::Truncated)? {
        1 => {
            let protocol = r.u8().ok_or(DecodeError::Truncated)?;
            let lo = read_endpoint(r)?;
            let hi = read_endpoint(r)?;
            let key = FlowKey::conn(protocol, lo, hi);
            // One flow, one encoding: the sender wrote the canonical order.
            if key != (FlowKey::Conn { protocol, lo, hi }) {
                return Err(DecodeError::NotCanonical);
            }
            Ok(key)
        }
        2 => Ok(FlowKey::Esp {
            spi: u32::from_be_bytes(
                r.bytes(4)
                    .ok_or(DecodeError::Truncated)?
                    .try_into()
                    .map_err(|_| DecodeError::Truncated)?,
            ),
        }),
        t => Err(DecodeError::UnknownTag(t)),
    }
}

fn read_count(r: &mut Reader<'_>) -> Result<usize, DecodeError> {
    let n = usize::from(r.u8().ok_or(DecodeError::Truncated)?);
    if n == 0 || n > MAX_UPDATE_ENTRIES {
        return Err(DecodeError::BadCount(n));
    }
    Ok(n)
}

fn read_id(r: &mut Reader<'_>) -> Result<u32, DecodeError> {
    let v = r.varint().ok_or(DecodeError::Truncated)?;
    u32::try_from(v).map_err(|_| DecodeError::Truncated)
}

/// Update request body: count u8 (1..=[`MAX_UPDATE_ENTRIES`]), then per query: id varint,
/// flow key. Writes at most [`MAX_UPDATE_ENTRIES`] queries; returns how many.
pub fn write_update_request(out: &mut Vec<u8>, queries: &[UpdateQuery]) -> usize {
    let qs = &queries[..queries.len().min(MAX_UPDATE_ENTRIES)];
    out.push(qs.len() as u8);
    for q in qs {
        put_varint(out, u64::from(q.id));
        put_flow(out, &q.flow);
    }
    qs.len()
}

/// Decodes an update request body into `out` (cleared first; caller-owned, reused).
pub fn read_update_request(buf: &[u8], out: &mut Vec<UpdateQuery>) -> Result<(), DecodeError> {
    out.clear();
    let mut r = Reader::new(buf);
    let n = read_count(&mut r)?;
    for _ in 0..n {
        let id = read_id(&mut r)?;
        let flow = read_flow(&mut r)?;
        out.push(UpdateQuery { id, flow });
    }
    if !r.is_empty() {
        return Err(DecodeError::Trailing);
    }
    Ok(())
}

/// Update answer body: count u8 (1..=[`MAX_UPDATE_ENTRIES`]), then per entry: id varint,
/// outcome u8 (1 found: key varint, upto varint; 2 unknown). Writes at most
/// [`MAX_UPDATE_ENTRIES`] entries; returns how many.
pub fn write_update_answer(out: &mut Vec<u8>, entries: &[UpdateAnswerEntry]) -> usize {
    let es = &entries[..entries.len().min(MAX_UPDATE_ENTRIES)];
    out.push(es.len() as u8);
    for e in es {
        put_varint(out, u64::from(e.id));
        match e.outcome {
            AnswerOutcome::Found { key, upto } => {
                out.push(1);
                put_varint(out, key);
                put_varint(out, upto);
            }
            AnswerOutcome::Unknown => out.push(2),
        }
    }
    es.len()
}

/// Decodes an update answer body into `out` (cleared first; caller-owned, reused).
pub fn read_update_answer(buf: &[u8], out: &mut Vec<UpdateAnswerEntry>) -> Result<(), DecodeError> {
    out.clear();
    let mut r = Reader::new(buf);
    let n = read_count(&mut r)?;
    for _ in 0..n {
        let id = read_id(&mut r)?;
        let outcome = match r.u8().ok_or(DecodeError::Truncated)? {
            1 => AnswerOutcome::Found {
                key: r.varint().ok_or(DecodeError::Truncated)?,
                upto: r.varint().ok_or(DecodeError::Truncated)?,
            },
            2 => AnswerOutcome::Unknown,
            t => return Err(DecodeError::UnknownTag(t)),
        };
        out.push(UpdateAnswerEntry { id, outcome });
    }
    if !r.is_empty() {
        return Err(DecodeError::Trailing);
    }
    Ok(())
}

/// What a forwarded packet is, so the receiving member knows where it enters its pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardKind {
    /// A UDP datagram (IKE or ESP-in-UDP) received on `local` from `remote`.
    Udp = 1,
    /// A raw ESP packet (IP protocol 50) received on `local` from `remote` (ports 0).
    RawEsp = 2,
    /// A cleartext packet the sender already inspected (its rules let it through): the owner of
    /// the tunnel encrypts it without inspecting again.
    Inspected = 3,
    /// A packet from the inside (TUN side) for the owner of its flow to process from the start.
    Tun = 4,
}

impl ForwardKind {
    pub fn from_u8(v: u8) -> Option<ForwardKind> {
        Some(match v {
            1 => ForwardKind::Udp,
            2 => ForwardKind::RawEsp,
            3 => ForwardKind::Inspected,
            4 => ForwardKind::Tun,
            _ => return None,
        })
    }
}

/// Forward message body: kind u8, local endpoint, remote endpoint (family u8 4 or 6, address,
/// port u16 BE each), then the packet to the end of the message.
pub(crate) fn write_forward(
    out: &mut Vec<u8>,
    kind: ForwardKind,
    local: SocketAddr,
    remote: SocketAddr,
    packet: &[u8],
) {
    out.push(kind as u8);
    put_endpoint(out, local);
    put_endpoint(out, remote);
    out.extend_from_slice(packet);
}

/// Bytes of a forward message body before the packet, at most (two IPv6 endpoints).
pub(crate) const FORWARD_OVERHEAD: usize = 1 + 2 * (1 + 16 + 2);

/// Decodes a forward message body: (kind, local, remote, packet).
pub(crate) fn read_forward(
    buf: &[u8],
) -> Result<(ForwardKind, SocketAddr, SocketAddr, &[u8]), DecodeError> {
    let mut r = Reader::new(buf);
    let tag = r.u8().ok_or(DecodeError::Truncated)?;
    let kind = ForwardKind::from_u8(tag).ok_or(DecodeError::UnknownTag(tag))?;
    let local = read_endpoint(&mut r)?;
    let remote = read_endpoint(&mut r)?;
    Ok((kind, local, remote, r.rest()))
}

/// For the fuzz target and its stable twin in the tests: decodes `data` as a request and as
/// an answer; whatever decodes must re-encode to exactly `data`. Panics on a violation.
pub(crate) fn check_update_codec(data: &[u8]) {
    if let Ok((kind, local, remote, packet)) = read_forward(data) {
        let mut out = Vec::new();
        write_forward(&mut out, kind, local, remote, packet);
        assert_eq!(out, data, "forward re-encodes differently");
    }
    let mut qs = Vec::new();
    if read_update_request(data, &mut qs).is_ok() {
        let mut out = Vec::new();
        write_update_request(&mut out, &qs);
        assert_eq!(out, data, "update request re-encodes differently");
    }
    let mut es = Vec::new();
    if read_update_answer(data, &mut es).is_ok() {
        let mut out = Vec::new();
        write_update_answer(&mut out, &es);
        assert_eq!(out, data, "update answer re-encodes differently");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_queries() -> Vec<UpdateQuery> {
        vec![
            UpdateQuery {
                id: 0,
                flow: FlowKey::conn(
                    6,
                    "192.0.2.1:443".parse().unwrap(),
                    "10.0.0.9:51000".parse().unwrap(),
                ),
            },
            UpdateQuery {
                id: u32::MAX,
                flow: FlowKey::conn(
                    17,
                    "[2001:db8::1]:53".parse().unwrap(),
                    "[2001:db8::2]:5353".parse().unwrap(),
                ),
            },
            UpdateQuery {
                id: 77,
                flow: FlowKey::Esp { spi: 0xc0ff_ee01 },
            },
        ]
    }

    #[test]
    fn update_request_and_answer_round_trip() {
        let qs = sample_queries();
        let mut out = Vec::new();
        assert_eq!(write_update_request(&mut out, &qs), 3);
        let mut back = vec![UpdateQuery {
            id: 9,
            flow: FlowKey::Esp { spi: 1 },
        }];
        read_update_request(&out, &mut back).unwrap();
        assert_eq!(back, qs);
        check_update_codec(&out);
        for cut in 0..out.len() {
            assert!(
                read_update_request(&out[..cut], &mut back).is_err(),
                "cut at {cut}"
            );
        }
        let es = vec![
            UpdateAnswerEntry {
                id: 0,
                outcome: AnswerOutcome::Found {
                    key: 5 << 48 | 7,
                    upto: 1_000_000,
                },
            },
            UpdateAnswerEntry {
                id: 77,
                outcome: AnswerOutcome::Unknown,
            },
            UpdateAnswerEntry {
                id: 3,
                outcome: AnswerOutcome::Found {
                    key: u64::MAX,
                    upto: 0,
                },
            },
        ];
        let mut out = Vec::new();
        assert_eq!(write_update_answer(&mut out, &es), 3);
        let mut back = Vec::new();
        read_update_answer(&out, &mut back).unwrap();
        assert_eq!(back, es);
        check_update_codec(&out);
        for cut in 0..out.len() {
            assert!(
                read_update_answer(&out[..cut], &mut back).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn update_codec_refusals() {
        let mut qs = Vec::new();
        let mut es = Vec::new();
        assert_eq!(
            read_update_request(&[], &mut qs),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            read_update_request(&[0], &mut qs),
            Err(DecodeError::BadCount(0))
        );
        assert_eq!(
            read_update_request(&[65], &mut qs),
            Err(DecodeError::BadCount(65))
        );
        assert_eq!(
            read_update_request(&[1, 0, 3], &mut qs),
            Err(DecodeError::UnknownTag(3))
        );
        assert_eq!(
            read_update_request(&[1, 0, 2, 0, 0, 0, 1, 0], &mut qs),
            Err(DecodeError::Trailing)
        );
        assert_eq!(read_update_request(&[1, 0, 2, 0, 0, 0, 1], &mut qs), Ok(()));
        assert_eq!(
            read_update_answer(&[1, 0, 3], &mut es),
            Err(DecodeError::UnknownTag(3))
        );
        // Endpoints in the wrong order.
        let mut out = vec![1, 0, 1, 6];
        put_endpoint(&mut out, "10.0.0.9:1".parse().unwrap());
        put_endpoint(&mut out, "10.0.0.1:1".parse().unwrap());
        assert_eq!(
            read_update_request(&out, &mut qs),
            Err(DecodeError::NotCanonical)
        );
        // Bad address family.
        assert_eq!(
            read_update_request(&[1, 0, 1, 6, 5], &mut qs),
            Err(DecodeError::UnknownTag(5))
        );
        // An id above u32.
        let mut out = vec![1];
        put_varint(&mut out, 1 << 32);
        out.push(2);
        assert_eq!(
            read_update_answer(&out, &mut es),
            Err(DecodeError::Truncated)
        );
        // Writers cap the count.
        let many = vec![sample_queries()[2]; 100];
        let mut out = Vec::new();
        assert_eq!(write_update_request(&mut out, &many), MAX_UPDATE_ENTRIES);
        read_update_request(&out, &mut qs).unwrap();
        assert_eq!(qs.len(), MAX_UPDATE_ENTRIES);
    }

    fn arb_flow() -> impl proptest::strategy::Strategy<Value = FlowKey> {
        use proptest::prelude::*;
        let ep = prop_oneof![
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(a, p)| SocketAddr::new(Ipv4Addr::from(a).into(), p)),
            (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(a, p)| SocketAddr::new(Ipv6Addr::from(a).into(), p)),
        ];
        prop_oneof![
            (any::<u8>(), ep.clone(), ep).prop_map(|(p, a, b)| FlowKey::conn(p, a, b)),
            any::<u32>().prop_map(|spi| FlowKey::Esp { spi }),
        ]
    }

    proptest::proptest! {
        #[test]
        fn update_messages_round_trip(
            qs in proptest::collection::vec((proptest::prelude::any::<u32>(), arb_flow()), 1..=MAX_UPDATE_ENTRIES),
            found in proptest::collection::vec(proptest::prelude::any::<(u32, bool, u64, u64)>(), 1..=MAX_UPDATE_ENTRIES),
        ) {
            let qs: Vec<UpdateQuery> = qs.into_iter().map(|(id, flow)| UpdateQuery { id, flow }).collect();
            let mut out = Vec::new();
            write_update_request(&mut out, &qs);
            let mut back = Vec::new();
            proptest::prop_assert_eq!(read_update_request(&out, &mut back), Ok(()));
            proptest::prop_assert_eq!(&back, &qs);
            let es: Vec<UpdateAnswerEntry> = found
                .into_iter()
                .map(|(id, f, key, upto)| UpdateAnswerEntry {
                    id,
                    outcome: if f { AnswerOutcome::Found { key, upto } } else { AnswerOutcome::Unknown },
                })
                .collect();
            let mut out = Vec::new();
            write_update_answer(&mut out, &es);
            let mut back = Vec::new();
            proptest::prop_assert_eq!(read_update_answer(&out, &mut back), Ok(()));
            proptest::prop_assert_eq!(&back, &es);
        }
    }

    /// The fuzz target's check on fixed pseudo-random inputs, and on mutations of valid ones.
    #[test]
    fn update_codec_survives_garbage() {
        let mut valid = Vec::new();
        write_update_request(&mut valid, &sample_queries());
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..20_000 {
            let data: Vec<u8> = if i % 2 == 0 {
                let len = (next() % 80) as usize;
                (0..len).map(|_| next() as u8).collect()
            } else {
                let mut d = valid.clone();
                let at = (next() as usize) % d.len();
                d[at] = next() as u8;
                d.truncate(d.len() - (next() % 3) as usize);
                d
            };
            check_update_codec(&data);
        }
    }

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
        bad[3] = 10;
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
