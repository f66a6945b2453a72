//! The fixed 28-byte IKE header (RFC 7296 section 3.1).

use super::error::ParseError;
use super::reader::Reader;

/// Size of the IKE header on the wire.
pub const HEADER_LEN: usize = 28;

/// Version byte for IKEv2.0: major version in the high nibble, minor in the low one.
pub const VERSION_2_0: u8 = 0x20;

/// Exchange types (RFC 7296 section 3.1).
pub mod exchange {
    pub const IKE_SA_INIT: u8 = 34;
    pub const IKE_AUTH: u8 = 35;
    pub const CREATE_CHILD_SA: u8 = 36;
    pub const INFORMATIONAL: u8 = 37;
}

/// Header flag bits. All other bits are reserved: sent as zero, ignored on receipt.
pub mod flags {
    pub const INITIATOR: u8 = 0x08;
    pub const VERSION: u8 = 0x10;
    pub const RESPONSE: u8 = 0x20;
}

/// The IKE header as found on the wire. `next_payload` and `length` are whatever the bytes say;
/// [`super::Message::encode`] recomputes both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Header {
    pub spi_i: u64,
    pub spi_r: u64,
    pub next_payload: u8,
    /// Major version in the high nibble (2 for IKEv2), minor version in the low one.
    pub version: u8,
    pub exchange: u8,
    pub flags: u8,
    pub message_id: u32,
    /// Total message length including the header.
    pub length: u32,
}

impl Header {
    pub fn major_version(&self) -> u8 {
        self.version >> 4
    }
    pub fn is_initiator(&self) -> bool {
        self.flags & flags::INITIATOR != 0
    }
    pub fn is_response(&self) -> bool {
        self.flags & flags::RESPONSE != 0
    }
}

/// Decodes the first 28 bytes of `msg`. Checks nothing but the size: the version and the length
/// field are validated by [`super::parse`], so the caller can still answer a wrong major version.
pub fn parse_header(msg: &[u8]) -> Result<Header, ParseError> {
    let short = || ParseError::ShortHeader(msg.len());
    let mut r = Reader::new(msg);
    Ok(Header {
        spi_i: r.u64().ok_or_else(short)?,
        spi_r: r.u64().ok_or_else(short)?,
        next_payload: r.u8().ok_or_else(short)?,
        version: r.u8().ok_or_else(short)?,
        exchange: r.u8().ok_or_else(short)?,
        flags: r.u8().ok_or_else(short)?,
        message_id: r.u32().ok_or_else(short)?,
        length: r.u32().ok_or_else(short)?,
    })
}

/// Appends the 28-byte header exactly as given (no field is recomputed).
pub fn encode_header(h: &Header, out: &mut Vec<u8>) {
    out.extend_from_slice(&h.spi_i.to_be_bytes());
    out.extend_from_slice(&h.spi_r.to_be_bytes());
    out.push(h.next_payload);
    out.push(h.version);
    out.push(h.exchange);
    out.push(h.flags);
    out.extend_from_slice(&h.message_id.to_be_bytes());
    out.extend_from_slice(&h.length.to_be_bytes());
}

/// Writes `msg.len()` into the header's Length field (bytes 24..28). Does nothing if `msg` is
/// shorter than a header.
pub fn set_length(msg: &mut [u8]) {
    let len = u32::try_from(msg.len()).unwrap_or(u32::MAX);
    if let Some(field) = msg.get_mut(24..28) {
        field.copy_from_slice(&len.to_be_bytes());
    }
}
