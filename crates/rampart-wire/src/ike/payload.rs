//! The payload enum and the generic payload chain (RFC 7296 sections 3.2 to 3.16, RFC 7383).

use std::ops::Range;

use super::error::ParseError;
use super::reader::Reader;
use super::sa::{encode_sa, parse_sa, Proposal};
use super::ts::{encode_ts, parse_ts, TrafficSelector};

/// Payload types.
pub mod payload_type {
    pub const NONE: u8 = 0;
    pub const SA: u8 = 33;
    pub const KE: u8 = 34;
    pub const IDI: u8 = 35;
    pub const IDR: u8 = 36;
    pub const CERT: u8 = 37;
    pub const CERTREQ: u8 = 38;
    pub const AUTH: u8 = 39;
    pub const NONCE: u8 = 40;
    pub const NOTIFY: u8 = 41;
    pub const DELETE: u8 = 42;
    pub const VENDOR: u8 = 43;
    pub const TSI: u8 = 44;
    pub const TSR: u8 = 45;
    pub const SK: u8 = 46;
    pub const CP: u8 = 47;
    pub const EAP: u8 = 48;
    pub const SKF: u8 = 53;
}

/// Identification types (RFC 7296 section 3.5).
pub mod id_type {
    pub const IPV4_ADDR: u8 = 1;
    pub const FQDN: u8 = 2;
    pub const RFC822_ADDR: u8 = 3;
    pub const IPV6_ADDR: u8 = 5;
    pub const DER_ASN1_DN: u8 = 9;
    pub const DER_ASN1_GN: u8 = 10;
    pub const KEY_ID: u8 = 11;
}

/// Authentication methods (RFC 7296 section 3.8, RFC 7427).
pub mod auth_method {
    pub const RSA_DIGITAL_SIGNATURE: u8 = 1;
    pub const SHARED_KEY_MIC: u8 = 2;
    pub const DSS_DIGITAL_SIGNATURE: u8 = 3;
    pub const DIGITAL_SIGNATURE: u8 = 14;
}

/// Configuration payload types and attribute types (RFC 7296 section 3.15, RFC 8598).
pub mod cfg {
    pub const CFG_REQUEST: u8 = 1;
    pub const CFG_REPLY: u8 = 2;
    pub const CFG_SET: u8 = 3;
    pub const CFG_ACK: u8 = 4;
    pub const INTERNAL_IP4_ADDRESS: u16 = 1;
    pub const INTERNAL_IP4_NETMASK: u16 = 2;
    pub const INTERNAL_IP4_DNS: u16 = 3;
    pub const INTERNAL_IP6_ADDRESS: u16 = 8;
    pub const INTERNAL_IP6_DNS: u16 = 10;
    pub const INTERNAL_IP4_SUBNET: u16 = 13;
    pub const INTERNAL_IP6_SUBNET: u16 = 15;
    pub const INTERNAL_DNS_DOMAIN: u16 = 25;
    /// Rampart's entry points (private use, RFC 7296 3.15.1: 16384..=32767; "RP"): see
    /// `cfg_entry_points`.
    pub const RAMPART_ENTRY_POINTS: u16 = 0x5250;
}

/// One payload of a chain. Known types are decoded; `Unknown` keeps an unrecognised non-critical
/// payload verbatim (EAP, type 48, is also carried as `Unknown`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Payload {
    Sa(Vec<Proposal>),
    Ke {
        group: u16,
        data: Vec<u8>,
    },
    Nonce(Vec<u8>),
    IdI(Identification),
    IdR(Identification),
    Auth {
        method: u8,
        data: Vec<u8>,
    },
    Notify(Notify),
    Delete(Delete),
    Vendor(Vec<u8>),
    TsI(Vec<TrafficSelector>),
    TsR(Vec<TrafficSelector>),
    Cp(ConfigPayload),
    Cert {
        encoding: u8,
        data: Vec<u8>,
    },
    CertReq {
        encoding: u8,
        data: Vec<u8>,
    },
    /// Encrypted payload as it sits in the parsed buffer: IV || ciphertext || ICV, and the type of the
    /// first inner payload. Only produced by `parse`; the engine decrypts and calls `parse_payloads`.
    ///
    /// `body` indexes the slice given to [`super::parse`] (the whole message) or to
    /// [`super::parse_payloads`]. [`super::encode_payloads`] writes only the 4-byte generic header,
    /// with a length covering `body.len()` bytes that the caller appends right after.
    Sk {
        first_inner: u8,
        body: Range<usize>,
    },
    /// Encrypted fragment (RFC 7383), same convention as `Sk` (the 8-byte header is written, the
    /// body is the caller's). `1 <= number <= total` is checked on parse.
    Skf {
        first_inner: u8,
        number: u16,
        total: u16,
        body: Range<usize>,
    },
    Unknown {
        kind: u8,
        critical: bool,
        data: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identification {
    /// One of [`id_type`].
    pub kind: u8,
    pub data: Vec<u8>,
}

/// A notification. `spi` is empty unless it names an SA (4 bytes for ESP, 8 for an IKE SA in some
/// uses); `protocol` is 0 when no SPI is present.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Notify {
    pub protocol: u8,
    pub spi: Vec<u8>,
    pub kind: u16,
    pub data: Vec<u8>,
}

/// A delete: protocol 1 deletes the IKE SA the message travels in (no SPIs on the wire), protocol 3
/// lists ESP SPIs (4 bytes each).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Delete {
    pub protocol: u8,
    pub spis: Vec<u32>,
}

/// A configuration payload. Attribute types are 15 bits (the top bit is reserved and dropped).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConfigPayload {
    /// One of `cfg::CFG_*`.
    pub cfg_type: u8,
    pub attributes: Vec<(u16, Vec<u8>)>,
}

impl Payload {
    /// The payload type written in the previous payload's Next Payload field.
    pub fn kind(&self) -> u8 {
        use payload_type as t;
        match self {
            Payload::Sa(_) => t::SA,
            Payload::Ke { .. } => t::KE,
            Payload::Nonce(_) => t::NONCE,
            Payload::IdI(_) => t::IDI,
            Payload::IdR(_) => t::IDR,
            Payload::Auth { .. } => t::AUTH,
            Payload::Notify(_) => t::NOTIFY,
            Payload::Delete(_) => t::DELETE,
            Payload::Vendor(_) => t::VENDOR,
            Payload::TsI(_) => t::TSI,
            Payload::TsR(_) => t::TSR,
            Payload::Cp(_) => t::CP,
            Payload::Cert { .. } => t::CERT,
            Payload::CertReq { .. } => t::CERTREQ,
            Payload::Sk { .. } => t::SK,
            Payload::Skf { .. } => t::SKF,
            Payload::Unknown { kind, .. } => *kind,
        }
    }
}

const GENERIC_HEADER_LEN: usize = 4;
const CRITICAL: u8 = 0x80;

/// Smallest body (after the generic header) each payload type can have.
fn min_body(kind: u8) -> usize {
    use payload_type as t;
    match kind {
        t::KE | t::IDI | t::IDR | t::AUTH | t::NOTIFY | t::DELETE | t::TSI | t::TSR | t::CP => 4,
        t::SKF => 4,
        t::CERT | t::CERTREQ => 1,
        _ => 0,
    }
}

/// Parses a payload chain starting with type `first`. SK/SKF body ranges are offset by `base`.
pub(crate) fn parse_chain(
    first: u8,
    bytes: &[u8],
    base: usize,
) -> Result<Vec<Payload>, ParseError> {
    let mut out = Vec::new();
    let mut next = first;
    let mut pos = 0usize;
    while next != payload_type::NONE {
        let kind = next;
        let rest = &bytes[pos..];
        let mut r = Reader::new(rest);
        let (Some(n), Some(flags), Some(length)) = (r.u8(), r.u8(), r.u16()) else {
            return Err(ParseError::TruncatedPayloadHeader { kind });
        };
        let len = usize::from(length);
        if len < GENERIC_HEADER_LEN + min_body(kind) || len > rest.len() {
            return Err(ParseError::PayloadLength {
                kind,
                length,
                remaining: rest.len(),
            });
        }
        let body = &rest[GENERIC_HEADER_LEN..len];
        let body_start = base + pos + GENERIC_HEADER_LEN;
        let body_range = body_start..base + pos + len;
        pos += len;
        next = n;
        let payload = match kind {
            payload_type::SK | payload_type::SKF => {
                if pos != bytes.len() {
                    return Err(ParseError::EncryptedNotLast(kind));
                }
                next = payload_type::NONE;
                if kind == payload_type::SK {
                    Payload::Sk {
                        first_inner: n,
                        body: body_range,
                    }
                } else {
                    let mut b = Reader::new(body);
                    let (number, total) = (b.u16().unwrap_or(0), b.u16().unwrap_or(0));
                    if number == 0 || number > total {
                        return Err(ParseError::malformed(kind, "bad fragment number"));
                    }
                    Payload::Skf {
                        first_inner: n,
                        number,
                        total,
                        body: body_start + 4..body_range.end,
                    }
                }
            }
            _ => parse_body(kind, flags & CRITICAL != 0, body)?,
        };
        out.push(payload);
    }
    if pos != bytes.len() {
        return Err(ParseError::TrailingBytes(bytes.len() - pos));
    }
    Ok(out)
}

/// Decodes one payload body of a non-encrypted type. `body` is at least `min_body(kind)` long.
fn parse_body(kind: u8, critical: bool, body: &[u8]) -> Result<Payload, ParseError> {
    use payload_type as t;
    let mut r = Reader::new(body);
    let short = || ParseError::malformed(kind, "truncated body");
    Ok(match kind {
        t::SA => Payload::Sa(parse_sa(body)?),
        t::KE => {
            let group = r.u16().ok_or_else(short)?;
            r.u16().ok_or_else(short)?;
            Payload::Ke {
                group,
                data: r.rest().to_vec(),
            }
        }
        t::IDI | t::IDR => {
            let id_kind = r.u8().ok_or_else(short)?;
            r.bytes(3).ok_or_else(short)?;
            let id = Identification {
                kind: id_kind,
                data: r.rest().to_vec(),
            };
            if kind == t::IDI {
                Payload::IdI(id)
            } else {
                Payload::IdR(id)
            }
        }
        t::CERT | t::CERTREQ => {
            let encoding = r.u8().ok_or_else(short)?;
            let data = r.rest().to_vec();
            if kind == t::CERT {
                Payload::Cert { encoding, data }
            } else {
                Payload::CertReq { encoding, data }
            }
        }
        t::AUTH => {
            let method = r.u8().ok_or_else(short)?;
            r.bytes(3).ok_or_else(short)?;
            Payload::Auth {
                method,
                data: r.rest().to_vec(),
            }
        }
        t::NONCE => Payload::Nonce(body.to_vec()),
        t::NOTIFY => {
            let protocol = r.u8().ok_or_else(short)?;
            let spi_size = r.u8().ok_or_else(short)?;
            let n_kind = r.u16().ok_or_else(short)?;
            let spi = r
                .bytes(usize::from(spi_size))
                .ok_or(ParseError::malformed(kind, "SPI exceeds payload"))?
                .to_vec();
            Payload::Notify(Notify {
                protocol,
                spi,
                kind: n_kind,
                data: r.rest().to_vec(),
            })
        }
        t::DELETE => {
            let protocol = r.u8().ok_or_else(short)?;
            let spi_size = r.u8().ok_or_else(short)?;
            let count = usize::from(r.u16().ok_or_else(short)?);
            let spis = match spi_size {
                0 if count == 0 => Vec::new(),
                4 => {
                    let mut spis = Vec::with_capacity(count.min(r.remaining() / 4));
                    for _ in 0..count {
                        spis.push(
                            r.u32()
                                .ok_or(ParseError::malformed(kind, "SPIs exceed payload"))?,
                        );
                    }
                    spis
                }
                _ => return Err(ParseError::malformed(kind, "unsupported SPI size")),
            };
            if !r.is_empty() {
                return Err(ParseError::malformed(kind, "bytes after the SPIs"));
            }
            Payload::Delete(Delete { protocol, spis })
        }
        t::VENDOR => Payload::Vendor(body.to_vec()),
        t::TSI => Payload::TsI(parse_ts(kind, body)?),
        t::TSR => Payload::TsR(parse_ts(kind, body)?),
        t::CP => {
            let cfg_type = r.u8().ok_or_else(short)?;
            r.bytes(3).ok_or_else(short)?;
            let mut attributes = Vec::new();
            while !r.is_empty() {
                let bad = || ParseError::malformed(kind, "truncated configuration attribute");
                let attr = r.u16().ok_or_else(bad)? & 0x7fff;
                let len = r.u16().ok_or_else(bad)?;
                let value = r.bytes(usize::from(len)).ok_or_else(bad)?;
                attributes.push((attr, value.to_vec()));
            }
            Payload::Cp(ConfigPayload {
                cfg_type,
                attributes,
            })
        }
        _ if critical => return Err(ParseError::UnsupportedCritical { kind }),
        _ => Payload::Unknown {
            kind,
            critical,
            data: body.to_vec(),
        },
    })
}

/// Appends the payloads as a chain, setting every Next Payload, critical bit and length field.
/// Returns the type of the first payload (0 for an empty list), for the header or the enclosing SK
/// payload. See [`Payload::Sk`] for how encrypted payloads are written. Bodies longer than 65531
/// bytes cannot be represented and are a caller bug (the length field would wrap).
pub fn encode_payloads(payloads: &[Payload], out: &mut Vec<u8>) -> u8 {
    for (i, p) in payloads.iter().enumerate() {
        let next = payloads
            .get(i + 1)
            .map_or(payload_type::NONE, Payload::kind);
        let start = out.len();
        let (next, flags) = match p {
            Payload::Sk { first_inner, .. } | Payload::Skf { first_inner, .. } => (*first_inner, 0),
            Payload::Unknown { critical: true, .. } => (next, CRITICAL),
            _ => (next, 0),
        };
        out.extend_from_slice(&[next, flags, 0, 0]);
        let extra = encode_body(p, out);
        let len = out.len() - start + extra;
        debug_assert!(len <= usize::from(u16::MAX), "payload too long to encode");
        out[start + 2..start + 4].copy_from_slice(&(len as u16).to_be_bytes());
    }
    payloads.first().map_or(payload_type::NONE, Payload::kind)
}

/// Writes a payload body; returns how many body bytes the caller still appends (SK/SKF).
fn encode_body(p: &Payload, out: &mut Vec<u8>) -> usize {
    match p {
        Payload::Sa(proposals) => encode_sa(proposals, out),
        Payload::Ke { group, data } => {
            out.extend_from_slice(&group.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(data);
        }
        Payload::Nonce(data) | Payload::Vendor(data) | Payload::Unknown { data, .. } => {
            out.extend_from_slice(data)
        }
        Payload::IdI(id) | Payload::IdR(id) => {
            out.extend_from_slice(&[id.kind, 0, 0, 0]);
            out.extend_from_slice(&id.data);
        }
        Payload::Auth { method, data } => {
            out.extend_from_slice(&[*method, 0, 0, 0]);
            out.extend_from_slice(data);
        }
        Payload::Notify(n) => {
            out.extend_from_slice(&[n.protocol, n.spi.len() as u8]);
            out.extend_from_slice(&n.kind.to_be_bytes());
            out.extend_from_slice(&n.spi);
            out.extend_from_slice(&n.data);
        }
        Payload::Delete(d) => {
            let spi_size = if d.spis.is_empty() && d.protocol == super::sa::protocol::IKE {
                0
            } else {
                4
            };
            out.extend_from_slice(&[d.protocol, spi_size]);
            out.extend_from_slice(&(d.spis.len() as u16).to_be_bytes());
            for spi in &d.spis {
                out.extend_from_slice(&spi.to_be_bytes());
            }
        }
        Payload::TsI(ts) | Payload::TsR(ts) => encode_ts(ts, out),
        Payload::Cp(cp) => {
            out.extend_from_slice(&[cp.cfg_type, 0, 0, 0]);
            for (attr, value) in &cp.attributes {
                out.extend_from_slice(&(attr & 0x7fff).to_be_bytes());
                out.extend_from_slice(&(value.len() as u16).to_be_bytes());
                out.extend_from_slice(value);
            }
        }
        Payload::Cert { encoding, data } | Payload::CertReq { encoding, data } => {
            out.push(*encoding);
            out.extend_from_slice(data);
        }
        Payload::Sk { body, .. } => return body.len(),
        Payload::Skf {
            number,
            total,
            body,
            ..
        } => {
            out.extend_from_slice(&number.to_be_bytes());
            out.extend_from_slice(&total.to_be_bytes());
            return body.len();
        }
    }
    0
}
