//! RFC 9329 TCP encapsulation of IKE and ESP: the stream prefix, the framing of each message,
//! an incremental stream [`Decoder`] and the frame header encoders.
//!
//! The initiator (the side that opened the TCP connection) starts its byte stream with the six
//! ASCII bytes `IKETCP` ([`PREFIX`]); the responder's stream has no prefix. After it, both
//! streams are a sequence of messages, each a 16-bit big-endian Length that counts itself (2
//! bytes) and the payload, followed by:
//!
//! - an IKE message preceded by the 4-byte non-ESP marker (all zero), or
//! - an ESP packet, whose first 4 bytes are its non-zero SPI, or
//! - the single byte `0xFF` (Length 3): a NAT-keepalive, which RFC 9329 says not to send over
//!   TCP but to discard silently when received.
//!
//! Lengths 0, 1 and 2 carry nothing and RFC 9329 makes 0 and 1 fatal for the stream; this
//! decoder treats every frame that cannot be one of the three forms above as fatal: TCP gives
//! no resynchronisation point, so after one bad Length every later byte is misframed.
//!
//! Nothing here allocates per message: the decoder owns one buffer, sized once to its largest
//! frame, and frames are slices into it.

use thiserror::Error;

use crate::ike::HEADER_LEN as IKE_HEADER_LEN;

/// The magic value at the start of the initiator's stream.
pub const PREFIX: &[u8; 6] = b"IKETCP";
/// Bytes of the Length field.
pub const LENGTH_LEN: usize = 2;
/// Bytes of the non-ESP marker before an IKE message.
pub const NON_ESP_MARKER_LEN: usize = 4;
/// The one-byte payload of a NAT-keepalive.
pub const KEEPALIVE: u8 = 0xff;
/// The largest value of the Length field, and so the largest frame on the wire.
pub const MAX_FRAME_LEN: usize = u16::MAX as usize;
/// The smallest ESP packet a frame may carry: SPI and sequence number.
pub const MIN_ESP_LEN: usize = 8;
/// The smallest frame (Length included) that carries an IKE message: marker and IKE header.
pub const MIN_IKE_FRAME_LEN: usize = LENGTH_LEN + NON_ESP_MARKER_LEN + IKE_HEADER_LEN;
/// The smallest frame (Length included) that carries an ESP packet.
pub const MIN_ESP_FRAME_LEN: usize = LENGTH_LEN + MIN_ESP_LEN;
/// The largest IKE message one frame carries.
pub const MAX_IKE_LEN: usize = MAX_FRAME_LEN - LENGTH_LEN - NON_ESP_MARKER_LEN;
/// The largest ESP packet one frame carries.
pub const MAX_ESP_LEN: usize = MAX_FRAME_LEN - LENGTH_LEN;

/// Which end of the TCP connection reads the stream; it decides whether the stream starts with
/// [`PREFIX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// This side opened the connection and reads the responder's stream: no prefix.
    Initiator,
    /// This side accepted the connection and reads the initiator's stream, which must start
    /// with [`PREFIX`].
    Responder,
}

/// One decoded message. Slices point into the decoder's buffer and stay valid until the next
/// call that takes the decoder mutably.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Frame<'a> {
    /// An IKE message, non-ESP marker removed; at least an IKE header long.
    Ike(&'a [u8]),
    /// An ESP packet starting with its non-zero SPI; at least [`MIN_ESP_LEN`] bytes.
    Esp(&'a [u8]),
    /// A NAT-keepalive (payload `0xFF`), to be discarded.
    Keepalive,
}

/// Why a stream cannot be decoded. Every variant is fatal: the decoder stays failed and the
/// caller closes the TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum StreamError {
    /// The initiator's stream does not start with `IKETCP`; `at` is the first differing byte.
    #[error("stream prefix is not IKETCP (byte {at} differs)")]
    BadPrefix { at: usize },
    /// A Length of 0, 1 or 2: a frame with no payload (RFC 9329 forbids 0 and 1).
    #[error("frame Length {0} carries no payload")]
    ZeroLength(u16),
    /// A Length above the decoder's limit.
    #[error("frame Length {length} exceeds the limit of {max} bytes")]
    Oversize { length: u16, max: usize },
    /// A one-byte payload other than the keepalive `0xFF`.
    #[error("one-byte frame payload {0:#04x} is not a keepalive")]
    BadKeepalive(u8),
    /// A payload too short for the non-ESP marker or an SPI (2 or 3 bytes).
    #[error("frame payload of {0} bytes is too short for a marker or an SPI")]
    ShortFrame(usize),
    /// After the non-ESP marker, fewer bytes than an IKE header.
    #[error("IKE message of {0} bytes is shorter than an IKE header")]
    ShortIke(usize),
    /// An ESP packet shorter than its SPI and sequence number.
    #[error("ESP packet of {0} bytes is shorter than SPI and sequence number")]
    ShortEsp(usize),
}

/// Why a frame header could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// The message does not fit one frame (see [`MAX_IKE_LEN`], [`MAX_ESP_LEN`]).
    #[error("a message of {0} bytes does not fit one frame")]
    TooLong(usize),
    /// The output buffer is smaller than what must be written.
    #[error("output buffer of {have} bytes, {need} needed")]
    BufferTooSmall { need: usize, have: usize },
    /// An ESP packet whose SPI is zero (it would read as an IKE message) or that is shorter
    /// than [`MIN_ESP_LEN`].
    #[error("not an ESP packet: zero SPI or shorter than 8 bytes")]
    NotEsp,
    /// An IKE message shorter than an IKE header.
    #[error("IKE message of {0} bytes is shorter than an IKE header")]
    ShortIke(usize),
}

/// Classifies one complete frame payload (the bytes after the Length field).
pub fn classify(payload: &[u8]) -> Result<Frame<'_>, StreamError> {
    match payload {
        [] => Err(StreamError::ZeroLength(LENGTH_LEN as u16)),
        [KEEPALIVE] => Ok(Frame::Keepalive),
        [b] => Err(StreamError::BadKeepalive(*b)),
        [0, 0, 0, 0, ike @ ..] if ike.len() >= IKE_HEADER_LEN => Ok(Frame::Ike(ike)),
        [0, 0, 0, 0, ike @ ..] => Err(StreamError::ShortIke(ike.len())),
        p if p.len() < NON_ESP_MARKER_LEN => Err(StreamError::ShortFrame(p.len())),
        p if p.len() < MIN_ESP_LEN => Err(StreamError::ShortEsp(p.len())),
        p => Ok(Frame::Esp(p)),
    }
}

/// Incremental decoder of one direction of a TCP-encapsulated stream.
///
/// Feed it bytes as TCP delivers them, with [`push`](Decoder::push) or by reading straight
/// into [`spare`](Decoder::spare) and calling [`commit`](Decoder::commit); take the frames
/// with [`next_frame`](Decoder::next_frame) until it returns `Ok(None)`, then feed more.
/// Reads may split frames (and the prefix) anywhere and carry several frames.
///
/// Invariants: `start <= end <= buf.len() == max_frame`; `buf[start..end]` holds received,
/// not yet decoded bytes; while bytes are pending, `buf[start..end]` begins at a frame
/// boundary (or inside the prefix while `prefix_seen < 6`). The buffer is allocated once in
/// [`new`](Decoder::new); compaction moves the unread tail to the front with `copy_within`, so
/// a frame of up to `max_frame` bytes always fits once the frames before it are taken. Once an
/// error was returned the decoder is failed: it returns that error again and accepts no bytes.
#[derive(Debug, Clone)]
pub struct Decoder {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Prefix bytes matched so far; 6 (`PREFIX.len()`) once done or when none is expected.
    prefix_seen: usize,
    failed: Option<StreamError>,
}

impl Decoder {
    /// A decoder for the stream that `role` reads, accepting frames of up to `max_frame`
    /// bytes (Length field included; clamped to `MIN_IKE_FRAME_LEN..=MAX_FRAME_LEN`).
    pub fn new(role: Role, max_frame: usize) -> Decoder {
        let max = max_frame.clamp(MIN_IKE_FRAME_LEN, MAX_FRAME_LEN);
        Decoder {
            buf: vec![0; max].into_boxed_slice(),
            start: 0,
            end: 0,
            prefix_seen: match role {
                Role::Initiator => PREFIX.len(),
                Role::Responder => 0,
            },
            failed: None,
        }
    }

    /// The largest frame (Length included) this decoder accepts.
    pub fn max_frame(&self) -> usize {
        self.buf.len()
    }

    /// Bytes received and not yet decoded.
    pub fn pending(&self) -> usize {
        self.end - self.start
    }

    /// Whether the stream ended cleanly if the peer closed it now: nothing pending, prefix
    /// complete (a responder that got no byte at all also counts as clean).
    pub fn at_boundary(&self) -> bool {
        self.failed.is_none()
            && self.pending() == 0
            && (self.prefix_seen == 0 || self.prefix_seen == PREFIX.len())
    }

    /// The fatal error, if one occurred.
    pub fn error(&self) -> Option<StreamError> {
        self.failed
    }

    /// Copies as much of `data` as fits into the buffer and returns how many bytes it took.
    /// It takes fewer than `data.len()` only when the buffer holds complete frames that were
    /// not taken yet (then take them and push the rest), and none once failed.
    pub fn push(&mut self, data: &[u8]) -> usize {
        let spare = self.spare();
        let n = spare.len().min(data.len());
        spare[..n].copy_from_slice(&data[..n]);
        self.commit(n);
        n
    }

    /// The free space after the pending bytes, for reading from the socket directly; call
    /// [`commit`](Decoder::commit) with the count read. Compacts first, so it is empty only
    /// when a whole frame (or a failed decoder) is waiting. Empty once failed.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.failed.is_some() {
            return &mut [];
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// Marks `n` bytes written into [`spare`](Decoder::spare) as received. `n` beyond the
    /// spare space is a caller bug; it is clamped.
    pub fn commit(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed, or the stream's fatal
    /// error (returned again on every later call).
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, StreamError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        match self.step() {
            Ok(Some((from, to))) => classify(&self.buf[from..to]).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Consumes the prefix and one frame if complete; returns the payload range. Validates
    /// the payload before consuming it, so a failed decoder keeps its position.
    fn step(&mut self) -> Result<Option<(usize, usize)>, StreamError> {
        while self.prefix_seen < PREFIX.len() {
            let Some(&b) = self.buf[self.start..self.end].first() else {
                return Ok(None);
            };
            if b != PREFIX[self.prefix_seen] {
                return self.fail(StreamError::BadPrefix {
                    at: self.prefix_seen,
                });
            }
            self.prefix_seen += 1;
            self.start += 1;
        }
        let pending = &self.buf[self.start..self.end];
        let Some(&[hi, lo]) = pending.get(..LENGTH_LEN) else {
            return Ok(None);
        };
        let length = u16::from_be_bytes([hi, lo]);
        let len = usize::from(length);
        if len <= LENGTH_LEN {
            return self.fail(StreamError::ZeroLength(length));
        }
        if len > self.buf.len() {
            return self.fail(StreamError::Oversize {
                length,
                max: self.buf.len(),
            });
        }
        if pending.len() < len {
            return Ok(None);
        }
        let range = (self.start + LENGTH_LEN, self.start + len);
        if let Err(e) = classify(&self.buf[range.0..range.1]) {
            return self.fail(e);
        }
        self.start += len;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(Some(range))
    }

    fn fail<T>(&mut self, e: StreamError) -> Result<T, StreamError> {
        self.failed = Some(e);
        Err(e)
    }
}

/// Writes the header of a frame carrying an IKE message of `ike_len` bytes (Length and
/// non-ESP marker, 6 bytes) at the start of `out`; the caller puts the message right after.
/// Returns the header length.
pub fn encode_ike_header(ike_len: usize, out: &mut [u8]) -> Result<usize, EncodeError> {
    if ike_len < IKE_HEADER_LEN {
        return Err(EncodeError::ShortIke(ike_len));
    }
    if ike_len > MAX_IKE_LEN {
        return Err(EncodeError::TooLong(ike_len));
    }
    let hdr = LENGTH_LEN + NON_ESP_MARKER_LEN;
    let out = room(out, hdr)?;
    out[..2].copy_from_slice(&((hdr + ike_len) as u16).to_be_bytes());
    out[2..6].fill(0);
    Ok(hdr)
}

/// Writes the Length field (2 bytes) of a frame carrying an ESP packet of `esp_len` bytes at
/// the start of `out`; the caller puts the packet right after. Returns the header length.
pub fn encode_esp_header(esp_len: usize, out: &mut [u8]) -> Result<usize, EncodeError> {
    if esp_len < MIN_ESP_LEN {
        return Err(EncodeError::NotEsp);
    }
    if esp_len > MAX_ESP_LEN {
        return Err(EncodeError::TooLong(esp_len));
    }
    let out = room(out, LENGTH_LEN)?;
    out[..2].copy_from_slice(&((LENGTH_LEN + esp_len) as u16).to_be_bytes());
    Ok(LENGTH_LEN)
}

/// Writes a whole frame (header and message) at the start of `out` and returns its length.
/// An ESP packet must start with a non-zero SPI. Nothing is written on error.
pub fn encode_frame(frame: Frame<'_>, out: &mut [u8]) -> Result<usize, EncodeError> {
    let (hdr, body): (usize, &[u8]) = match frame {
        Frame::Ike(m) => (LENGTH_LEN + NON_ESP_MARKER_LEN, m),
        Frame::Esp(p) => {
            if p.get(..4).is_none_or(|spi| spi == [0; 4]) {
                return Err(EncodeError::NotEsp);
            }
            (LENGTH_LEN, p)
        }
        Frame::Keepalive => return encode_keepalive(out),
    };
    if hdr + body.len() > MAX_FRAME_LEN {
        return Err(EncodeError::TooLong(body.len()));
    }
    room(out, hdr + body.len())?;
    match frame {
        Frame::Ike(_) => encode_ike_header(body.len(), out)?,
        _ => encode_esp_header(body.len(), out)?,
    };
    out[hdr..hdr + body.len()].copy_from_slice(body);
    Ok(hdr + body.len())
}

/// Writes a NAT-keepalive frame (`00 03 FF`) and returns 3. RFC 9329 says not to send them
/// over TCP; this exists for tests and peers that need one.
pub fn encode_keepalive(out: &mut [u8]) -> Result<usize, EncodeError> {
    let out = room(out, 3)?;
    out[..3].copy_from_slice(&[0, 3, KEEPALIVE]);
    Ok(3)
}

fn room(out: &mut [u8], need: usize) -> Result<&mut [u8], EncodeError> {
    let have = out.len();
    out.get_mut(..need)
        .ok_or(EncodeError::BufferTooSmall { need, have })
}

#[cfg(test)]
#[path = "tcp_encap_tests.rs"]
mod tests;
