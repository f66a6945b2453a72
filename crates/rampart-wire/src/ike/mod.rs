//! IKEv2 (RFC 7296) message codec.
//!
//! Messages are control traffic, so parsing produces owned values. Every length on the wire is
//! checked against the bytes that remain and against its own minimum; a failure is a typed
//! [`ParseError`], never a panic. Encrypted payloads (SK, SKF) are not decrypted here: `parse`
//! returns the range of their body in the input and the engine calls [`parse_payloads`] on the
//! decrypted inner chain.

pub mod cfg_attr;
pub mod cfg_entry_points;
mod error;
mod header;
pub mod notify;
mod payload;
mod reader;
mod sa;
mod ts;

pub use cfg_attr::{Ask, CfgAttr, CfgError, CfgReply, CfgRequest};
pub use cfg_entry_points::{EntryPointList, EntryPointSelection};
pub use error::ParseError;
pub use header::{
    encode_header, exchange, flags, parse_header, set_length, Header, HEADER_LEN, VERSION_2_0,
};
pub use payload::{
    auth_method, cfg, encode_payloads, id_type, payload_type, ConfigPayload, Delete,
    Identification, Notify, Payload,
};
pub use sa::{protocol, transform_type, Proposal, Transform, ATTR_KEY_LENGTH};
pub use ts::{ts_type, TrafficSelector};

/// A whole IKE message: the header and the top-level payload chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Message {
    pub header: Header,
    pub payloads: Vec<Payload>,
}

impl Message {
    /// Encodes header and payloads, recomputing the header's Next Payload and Length fields
    /// (the values in `self.header` for those two are ignored). Meant for plaintext messages; for an
    /// SK/SKF payload only its header is written (see [`Payload::Sk`]), so the caller appends the
    /// encrypted body and calls [`set_length`] again.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        encode_header(&self.header, &mut out);
        let first = encode_payloads(&self.payloads, &mut out);
        out[16] = first;
        set_length(&mut out);
        out
    }
}

/// Parses a whole datagram (non-ESP marker already removed): the header, whose major version must
/// be 2 and whose Length must equal `msg.len()`, then the payload chain, in which an SK or SKF
/// payload may only come last. SK/SKF bodies are ranges into `msg`.
pub fn parse(msg: &[u8]) -> Result<Message, ParseError> {
    let header = parse_header(msg)?;
    if header.major_version() != 2 {
        return Err(ParseError::UnsupportedMajorVersion(header.major_version()));
    }
    if usize::try_from(header.length).ok() != Some(msg.len()) {
        return Err(ParseError::LengthMismatch {
            header: header.length,
            actual: msg.len(),
        });
    }
    let payloads = payload::parse_chain(header.next_payload, &msg[HEADER_LEN..], HEADER_LEN)?;
    Ok(Message { header, payloads })
}

/// Parses a payload chain that starts with type `first` and must fill `bytes` exactly (the
/// decrypted content of an SK payload, without its padding). Any SK/SKF range indexes `bytes`.
pub fn parse_payloads(first: u8, bytes: &[u8]) -> Result<Vec<Payload>, ParseError> {
    payload::parse_chain(first, bytes, 0)
}

#[cfg(test)]
mod tests;
