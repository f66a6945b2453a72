//! The Encrypted payload (RFC 7296 3.14, RFC 5282 for AEAD).
//!
//! Layout: IKE header | SK generic header | IV | E(inner payloads | padding | pad length) | ICV.
//! The associated data is everything before the IV: the IKE header (with the final Length) and the
//! SK generic header. For CBC the ICV is HMAC over the same bytes plus IV and ciphertext.

use std::ops::Range;

use rampart_crypto::{CipherKey, Rng};
use rampart_wire::ike::{
    encode_header, encode_payloads, parse_payloads, payload_type, Header, Payload, HEADER_LEN,
};

use crate::error::IkeError;

/// Builds a whole encrypted message: `header` (next payload and length are filled in) with
/// `inner` inside one SK payload.
pub(crate) fn seal(
    header: &Header,
    inner: &[Payload],
    key: &CipherKey,
    rng: &mut Rng,
) -> Result<Vec<u8>, IkeError> {
    let mut plain = Vec::with_capacity(256);
    let first = encode_payloads(inner, &mut plain);
    seal_plain(header, payload_type::SK, first, &[], plain, key, rng)
}

/// Builds one message whose only payload is an encrypted payload of type `kind` (SK or SKF):
/// IKE header | generic header (next payload `first`) | `extra` (SKF: fragment number and total)
/// | IV | E(`plain` | padding | pad length) | ICV. The associated data is everything before the IV.
pub(crate) fn seal_plain(
    header: &Header,
    kind: u8,
    first: u8,
    extra: &[u8],
    mut plain: Vec<u8>,
    key: &CipherKey,
    rng: &mut Rng,
) -> Result<Vec<u8>, IkeError> {
    let block = key.block_len().max(1);
    let pad = (block - (plain.len() + 1) % block) % block;
    plain.resize(plain.len() + pad, 0);
    plain.push(pad as u8);
    let (iv_len, icv_len) = (key.iv_len(), key.icv_len());
    let sk_len = 4 + extra.len() + iv_len + plain.len() + icv_len;
    let total = HEADER_LEN + sk_len;
    let mut h = *header;
    h.next_payload = kind;
    h.length = u32::try_from(total).map_err(|_| IkeError::TooLarge)?;
    let mut out = Vec::with_capacity(total);
    encode_header(&h, &mut out);
    out.push(first);
    out.push(0);
    out.extend_from_slice(
        &u16::try_from(sk_len)
            .map_err(|_| IkeError::TooLarge)?
            .to_be_bytes(),
    );
    out.extend_from_slice(extra);
    let aad_end = out.len();
    out.resize(aad_end + iv_len, 0);
    rng.fill(&mut out[aad_end..]);
    out.extend_from_slice(&plain);
    out.resize(total, 0);
    let (aad, rest) = out.split_at_mut(aad_end);
    let (iv, rest) = rest.split_at_mut(iv_len);
    let (data, icv) = rest.split_at_mut(plain.len());
    key.seal(iv, aad, &[], data, icv)?;
    Ok(out)
}

/// Verifies and decrypts the SK payload whose body is `body` in `msg`, returning the inner payloads.
pub(crate) fn open(
    msg: &[u8],
    first_inner: u8,
    body: Range<usize>,
    key: &CipherKey,
) -> Result<Vec<Payload>, IkeError> {
    let data = decrypt(msg, body, key)?;
    Ok(parse_payloads(first_inner, &data)?)
}

/// Verifies and decrypts the encrypted body `body` (IV || ciphertext || ICV) of the SK or SKF
/// payload that ends `msg`; the associated data is everything before `body`. Returns the
/// plaintext without padding. Nothing is decrypted unless the ICV verifies.
pub(crate) fn decrypt(
    msg: &[u8],
    body: Range<usize>,
    key: &CipherKey,
) -> Result<Vec<u8>, IkeError> {
    let (iv_len, icv_len) = (key.iv_len(), key.icv_len());
    let aad = msg
        .get(..body.start)
        .ok_or(IkeError::Malformed("SK range"))?;
    let b = msg.get(body).ok_or(IkeError::Malformed("SK range"))?;
    if b.len() < iv_len + icv_len + 1 {
        return Err(IkeError::Malformed("SK payload too short"));
    }
    let (iv, rest) = b.split_at(iv_len);
    let (ct, icv) = rest.split_at(rest.len() - icv_len);
    let block = key.block_len().max(1);
    if ct.len() % block != 0 {
        return Err(IkeError::Malformed("SK ciphertext not block aligned"));
    }
    let mut data = ct.to_vec();
    key.open(iv, aad, &[], &mut data, icv)?;
    let pad = usize::from(*data.last().ok_or(IkeError::Malformed("SK empty"))?);
    if pad + 1 > data.len() {
        return Err(IkeError::Malformed("SK pad length"));
    }
    data.truncate(data.len() - pad - 1);
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_crypto::{Encr, Integ};
    use rampart_wire::ike::{exchange, parse, Notify};

    fn roundtrip(key_out: &CipherKey, key_in: &CipherKey) {
        let mut rng = Rng::from_seed([1; 32]);
        let h = Header {
            spi_i: 1,
            spi_r: 2,
            version: 0x20,
            exchange: exchange::INFORMATIONAL,
            message_id: 5,
            ..Default::default()
        };
        let inner = vec![
            Payload::Notify(Notify {
                protocol: 0,
                spi: vec![],
                kind: 16384,
                data: vec![1, 2, 3],
            }),
            Payload::Nonce(vec![9; 17]),
        ];
        let msg = seal(&h, &inner, key_out, &mut rng).unwrap();
        let m = parse(&msg).unwrap();
        let Some(Payload::Sk { first_inner, body }) = m.payloads.last().cloned() else {
            panic!("no SK")
        };
        assert_eq!(
            open(&msg, first_inner, body.clone(), key_in).unwrap(),
            inner
        );
        let mut bad = msg.clone();
        bad[body.end - 1] ^= 1;
        assert!(open(&bad, first_inner, body.clone(), key_in).is_err());
        let mut bad = msg.clone();
        bad[19] ^= 1; // message id is authenticated
        assert!(open(&bad, first_inner, body, key_in).is_err());
    }

    #[test]
    fn aead_and_cbc() {
        let k = CipherKey::new(Encr::AesGcm16_128, &[3u8; 20], None).unwrap();
        let k2 = CipherKey::new(Encr::AesGcm16_128, &[3u8; 20], None).unwrap();
        roundtrip(&k, &k2);
        let k = CipherKey::new(
            Encr::AesCbc256,
            &[4u8; 32],
            Some((Integ::HmacSha256_128, &[5u8; 32])),
        )
        .unwrap();
        let k2 = CipherKey::new(
            Encr::AesCbc256,
            &[4u8; 32],
            Some((Integ::HmacSha256_128, &[5u8; 32])),
        )
        .unwrap();
        roundtrip(&k, &k2);
    }
}
