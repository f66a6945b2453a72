//! EAP packet codec (RFC 3748 section 4).
//!
//! ```text
//! Code(1) Identifier(1) Length(2) [Type(1) Type-Data...]
//! ```
//!
//! Invariants: [`Packet::decode`] never panics and reads only the `Length` octets (anything
//! after them is link-layer padding, RFC 3748 section 4.1); [`Packet::encode`] writes a
//! `Length` equal to the octets it returns.

use crate::error::{DecodeError, TooLong};
use crate::mschapv2::MsChapV2;

/// EAP Code values.
pub mod code {
    pub const REQUEST: u8 = 1;
    pub const RESPONSE: u8 = 2;
    pub const SUCCESS: u8 = 3;
    pub const FAILURE: u8 = 4;
}

/// EAP Type values this crate understands.
pub mod kind {
    pub const IDENTITY: u8 = 1;
    pub const NOTIFICATION: u8 = 2;
    pub const NAK: u8 = 3;
    pub const MSCHAPV2: u8 = 26;
}

/// EAP header length (Code, Identifier, Length).
pub const HEADER_LEN: usize = 4;

/// One EAP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Request {
        identifier: u8,
        body: Body,
    },
    Response {
        identifier: u8,
        body: Body,
    },
    /// Carries no data; any octets inside `Length` after the header are ignored on decode.
    Success {
        identifier: u8,
    },
    Failure {
        identifier: u8,
    },
}

/// The Type and Type-Data of a Request or Response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Type 1: the identity (UTF-8 by convention, not enforced here). Empty in a Request
    /// unless a prompt is displayed.
    Identity(Vec<u8>),
    /// Type 2: a displayable message.
    Notification(Vec<u8>),
    /// Type 3 (Responses only): the types the peer would accept instead.
    Nak(Vec<u8>),
    /// Type 26.
    MsChapV2(MsChapV2),
    /// Any other type, kept opaque.
    Other { kind: u8, data: Vec<u8> },
}

impl Body {
    /// The EAP Type value.
    pub fn kind(&self) -> u8 {
        match self {
            Body::Identity(_) => kind::IDENTITY,
            Body::Notification(_) => kind::NOTIFICATION,
            Body::Nak(_) => kind::NAK,
            Body::MsChapV2(_) => kind::MSCHAPV2,
            Body::Other { kind, .. } => *kind,
        }
    }

    fn decode(data: &[u8], request: bool) -> Result<Self, DecodeError> {
        let (&kind, rest) = data.split_first().ok_or(DecodeError::MissingType)?;
        Ok(match kind {
            kind::IDENTITY => Body::Identity(rest.to_vec()),
            kind::NOTIFICATION => Body::Notification(rest.to_vec()),
            kind::NAK => Body::Nak(rest.to_vec()),
            kind::MSCHAPV2 => Body::MsChapV2(MsChapV2::decode(rest, request)?),
            other => Body::Other {
                kind: other,
                data: rest.to_vec(),
            },
        })
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(self.kind());
        match self {
            Body::Identity(d) | Body::Notification(d) | Body::Nak(d) => out.extend_from_slice(d),
            Body::Other { data, .. } => out.extend_from_slice(data),
            Body::MsChapV2(m) => m.encode_into(out),
        }
    }
}

impl Packet {
    /// The Identifier field.
    pub fn identifier(&self) -> u8 {
        match self {
            Packet::Request { identifier, .. }
            | Packet::Response { identifier, .. }
            | Packet::Success { identifier }
            | Packet::Failure { identifier } => *identifier,
        }
    }

    /// Decodes one packet from `buf`.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        if buf.len() < HEADER_LEN {
            return Err(DecodeError::Truncated {
                need: HEADER_LEN,
                have: buf.len(),
            });
        }
        let declared = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if declared < HEADER_LEN || declared > buf.len() {
            return Err(DecodeError::BadLength {
                declared,
                available: buf.len(),
            });
        }
        let identifier = buf[1];
        let data = &buf[HEADER_LEN..declared];
        match buf[0] {
            code::REQUEST => Ok(Packet::Request {
                identifier,
                body: Body::decode(data, true)?,
            }),
            code::RESPONSE => Ok(Packet::Response {
                identifier,
                body: Body::decode(data, false)?,
            }),
            code::SUCCESS => Ok(Packet::Success { identifier }),
            code::FAILURE => Ok(Packet::Failure { identifier }),
            other => Err(DecodeError::UnknownCode(other)),
        }
    }

    /// Encodes the packet; fails only if it would exceed 65,535 octets.
    pub fn encode(&self) -> Result<Vec<u8>, TooLong> {
        let (code, body) = match self {
            Packet::Request { body, .. } => (code::REQUEST, Some(body)),
            Packet::Response { body, .. } => (code::RESPONSE, Some(body)),
            Packet::Success { .. } => (code::SUCCESS, None),
            Packet::Failure { .. } => (code::FAILURE, None),
        };
        let mut out = vec![code, self.identifier(), 0, 0];
        if let Some(body) = body {
            body.encode_into(&mut out);
        }
        let len = u16::try_from(out.len()).map_err(|_| TooLong(out.len()))?;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        Ok(out)
    }
}
