//! Security Association payload body: proposals and transforms (RFC 7296 section 3.3).

use super::error::ParseError;
use super::payload_type;
use super::reader::Reader;

/// Protocol IDs used in proposals, notifications and deletes.
pub mod protocol {
    pub const IKE: u8 = 1;
    pub const AH: u8 = 2;
    pub const ESP: u8 = 3;
}

/// Transform types (RFC 7296 section 3.3.2).
pub mod transform_type {
    pub const ENCR: u8 = 1;
    pub const PRF: u8 = 2;
    pub const INTEG: u8 = 3;
    /// Key exchange method (formerly "Diffie-Hellman group").
    pub const KE: u8 = 4;
    pub const ESN: u8 = 5;
}

/// Transform attribute type of the Key Length attribute; always sent in TV format (AF bit set).
pub const ATTR_KEY_LENGTH: u16 = 14;
const ATTR_FORMAT_TV: u16 = 0x8000;

const LAST: u8 = 0;
const MORE_PROPOSALS: u8 = 2;
const MORE_TRANSFORMS: u8 = 3;
const PROPOSAL_HEADER_LEN: usize = 8;
const TRANSFORM_HEADER_LEN: usize = 8;

/// One proposal: a protocol, the sender's SPI for it (empty for an initial IKE SA, 8 bytes in an
/// IKE rekey, 4 bytes for ESP) and its transforms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Proposal {
    pub num: u8,
    pub protocol: u8,
    pub spi: Vec<u8>,
    pub transforms: Vec<Transform>,
}

/// One transform. `key_bits` is the Key Length attribute (type 14), the only attribute IKEv2 defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transform {
    pub kind: u8,
    pub id: u16,
    pub key_bits: Option<u16>,
}

fn bad(what: &'static str) -> ParseError {
    ParseError::malformed(payload_type::SA, what)
}

/// Parses an SA payload body.
///
/// Checks: every proposal and transform length fits its container and its
/// minimum; last-substructure markers are 2/3 on all but the last proposal/transform and 0 on the
/// last; the transform count matches; proposal numbers start at a non-zero value and grow by one.
/// A proposal carrying an unrecognised or repeated transform attribute is dropped from the result
/// (RFC 7296 section 3.3.6: such a proposal must be rejected), so the returned list may be shorter
/// than the wire list. An empty body (RFC 7296 requires a proposal) is accepted as an empty list,
/// the same outcome as "every proposal dropped": nothing acceptable was offered. This keeps every
/// parse result encodable.
pub(crate) fn parse_sa(body: &[u8]) -> Result<Vec<Proposal>, ParseError> {
    let mut r = Reader::new(body);
    let mut out = Vec::new();
    if body.is_empty() {
        return Ok(out);
    }
    let mut prev_num: Option<u8> = None;
    loop {
        let last = r.u8().ok_or(bad("truncated proposal header"))?;
        let _reserved = r.u8().ok_or(bad("truncated proposal header"))?;
        let len = usize::from(r.u16().ok_or(bad("truncated proposal header"))?);
        let rest_len = len
            .checked_sub(4)
            .filter(|_| len >= PROPOSAL_HEADER_LEN)
            .ok_or(bad("proposal length below minimum"))?;
        let mut p = Reader::new(
            r.bytes(rest_len)
                .ok_or(bad("proposal exceeds SA payload"))?,
        );
        let num = p.u8().ok_or(bad("truncated proposal"))?;
        let protocol = p.u8().ok_or(bad("truncated proposal"))?;
        let spi_size = usize::from(p.u8().ok_or(bad("truncated proposal"))?);
        let num_transforms = p.u8().ok_or(bad("truncated proposal"))?;
        let spi = p
            .bytes(spi_size)
            .ok_or(bad("SPI exceeds proposal"))?
            .to_vec();
        match prev_num {
            None if num == 0 => return Err(bad("proposal number 0")),
            Some(prev) if Some(num) != prev.checked_add(1) => {
                return Err(bad("proposal numbers not consecutive"))
            }
            _ => {}
        }
        prev_num = Some(num);

        let mut transforms = Vec::with_capacity(usize::from(num_transforms));
        let mut acceptable = true;
        for i in 0..num_transforms {
            let (t, ok) = parse_transform(&mut p, i + 1 == num_transforms)?;
            transforms.push(t);
            acceptable &= ok;
        }
        if !p.is_empty() {
            return Err(bad("bytes after the last transform of a proposal"));
        }
        if acceptable {
            out.push(Proposal {
                num,
                protocol,
                spi,
                transforms,
            });
        }
        match (last, r.is_empty()) {
            (LAST, true) => return Ok(out),
            (MORE_PROPOSALS, false) => {}
            (LAST, false) => return Err(bad("bytes after the last proposal")),
            (MORE_PROPOSALS, true) => return Err(bad("proposal marked not-last ends the SA")),
            _ => return Err(bad("bad last-substructure value in proposal")),
        }
    }
}

/// Parses one transform; the flag is false when it carries an attribute we must not ignore.
fn parse_transform(p: &mut Reader<'_>, is_last: bool) -> Result<(Transform, bool), ParseError> {
    let last = p.u8().ok_or(bad("truncated transform header"))?;
    let expected = if is_last { LAST } else { MORE_TRANSFORMS };
    if last != expected {
        return Err(bad("bad last-substructure value in transform"));
    }
    let _reserved = p.u8().ok_or(bad("truncated transform header"))?;
    let len = usize::from(p.u16().ok_or(bad("truncated transform header"))?);
    let rest_len = len
        .checked_sub(4)
        .filter(|_| len >= TRANSFORM_HEADER_LEN)
        .ok_or(bad("transform length below minimum"))?;
    let mut t = Reader::new(p.bytes(rest_len).ok_or(bad("transform exceeds proposal"))?);
    let kind = t.u8().ok_or(bad("truncated transform"))?;
    let _reserved = t.u8().ok_or(bad("truncated transform"))?;
    let id = t.u16().ok_or(bad("truncated transform"))?;
    let mut key_bits = None;
    let mut acceptable = true;
    while !t.is_empty() {
        let af_type = t.u16().ok_or(bad("truncated transform attribute"))?;
        let len_or_value = t.u16().ok_or(bad("truncated transform attribute"))?;
        if af_type & ATTR_FORMAT_TV != 0 {
            if af_type & !ATTR_FORMAT_TV == ATTR_KEY_LENGTH && key_bits.is_none() {
                key_bits = Some(len_or_value);
            } else {
                acceptable = false;
            }
        } else {
            // TLV attribute: none is defined for IKEv2; skip its value and reject the proposal.
            t.bytes(usize::from(len_or_value))
                .ok_or(bad("attribute exceeds transform"))?;
            acceptable = false;
        }
    }
    Ok((Transform { kind, id, key_bits }, acceptable))
}

/// Appends an SA payload body; proposal/transform lengths, counts and last-substructure markers are
/// computed here, the proposal numbers are written as given.
pub(crate) fn encode_sa(proposals: &[Proposal], out: &mut Vec<u8>) {
    for (i, p) in proposals.iter().enumerate() {
        let start = out.len();
        out.push(if i + 1 == proposals.len() {
            LAST
        } else {
            MORE_PROPOSALS
        });
        out.push(0);
        out.extend_from_slice(&[0, 0]); // length, patched below
        out.push(p.num);
        out.push(p.protocol);
        out.push(p.spi.len() as u8);
        out.push(p.transforms.len() as u8);
        out.extend_from_slice(&p.spi);
        for (j, t) in p.transforms.iter().enumerate() {
            out.push(if j + 1 == p.transforms.len() {
                LAST
            } else {
                MORE_TRANSFORMS
            });
            out.push(0);
            let len: u16 = if t.key_bits.is_some() { 12 } else { 8 };
            out.extend_from_slice(&len.to_be_bytes());
            out.push(t.kind);
            out.push(0);
            out.extend_from_slice(&t.id.to_be_bytes());
            if let Some(bits) = t.key_bits {
                out.extend_from_slice(&(ATTR_FORMAT_TV | ATTR_KEY_LENGTH).to_be_bytes());
                out.extend_from_slice(&bits.to_be_bytes());
            }
        }
        let len = (out.len() - start) as u16;
        out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
    }
}
