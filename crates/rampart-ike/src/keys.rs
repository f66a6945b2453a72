//! Key derivation (RFC 7296 2.13-2.18), the PSK AUTH value (2.15) and NAT detection hashes (2.23).

use std::net::{IpAddr, SocketAddr};

use rampart_crypto::{prf, prf_plus, CipherKey, CryptoError, Encr, Integ, Prf};
use rampart_wire::ike::Identification;
use zeroize::Zeroizing;

use crate::proposal::IkeAlgs;

pub(crate) type Secret = Zeroizing<Vec<u8>>;

/// Nonce length we send (RFC 7296: at least half the PRF key size, at least 16 bytes).
pub(crate) const NONCE_LEN: usize = 32;

/// `{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}` of one IKE SA.
/// For AEAD ciphers SK_ai/SK_ar are empty and SK_ei/SK_er are key || 4-byte salt.
pub(crate) struct IkeKeyMaterial {
    pub sk_d: Secret,
    pub sk_ai: Secret,
    pub sk_ar: Secret,
    pub sk_ei: Secret,
    pub sk_er: Secret,
    pub sk_pi: Secret,
    pub sk_pr: Secret,
}

fn secret(len: usize) -> Secret {
    Zeroizing::new(vec![0u8; len])
}

/// SKEYSEED = prf(Ni | Nr, g^ir) for a new IKE SA.
pub(crate) fn skeyseed(alg: Prf, ni: &[u8], nr: &[u8], shared: &[u8]) -> Secret {
    let mut key = Zeroizing::new(Vec::with_capacity(ni.len() + nr.len()));
    key.extend_from_slice(ni);
    key.extend_from_slice(nr);
    let mut out = secret(alg.output_len());
    prf(alg, &key, &[shared], &mut out);
    out
}

/// SKEYSEED = prf(SK_d(old), g^ir(new) | Ni | Nr) for a rekeyed IKE SA, with the OLD SA's PRF.
pub(crate) fn rekey_skeyseed(
    old_prf: Prf,
    old_sk_d: &[u8],
    shared: &[u8],
    ni: &[u8],
    nr: &[u8],
) -> Secret {
    let mut out = secret(old_prf.output_len());
    prf(old_prf, old_sk_d, &[shared, ni, nr], &mut out);
    out
}

/// The seven SK_* keys: prf+(SKEYSEED, Ni | Nr | SPIi | SPIr), sliced in RFC order.
pub(crate) fn derive_ike_keys(
    a: &IkeAlgs,
    skeyseed: &[u8],
    ni: &[u8],
    nr: &[u8],
    spi_i: u64,
    spi_r: u64,
) -> IkeKeyMaterial {
    let p = a.prf.output_len();
    let ia = a.integ.map_or(0, |i| i.key_len());
    let e = a.encr.key_len() + a.encr.salt_len();
    let lens = [p, ia, ia, e, e, p, p];
    let total: usize = lens.iter().sum();
    let mut buf = secret(total);
    prf_plus(
        a.prf,
        skeyseed,
        &[ni, nr, &spi_i.to_be_bytes(), &spi_r.to_be_bytes()],
        &mut buf,
    );
    let mut parts = lens.iter().scan(0usize, |off, &l| {
        let s = Zeroizing::new(buf[*off..*off + l].to_vec());
        *off += l;
        Some(s)
    });
    let mut next = || parts.next().unwrap_or_else(|| secret(0));
    IkeKeyMaterial {
        sk_d: next(),
        sk_ai: next(),
        sk_ar: next(),
        sk_ei: next(),
        sk_er: next(),
        sk_pi: next(),
        sk_pr: next(),
    }
}

/// The two directional ciphers of an IKE SA: (outbound, inbound) for the given role.
pub(crate) fn ike_ciphers(
    a: &IkeAlgs,
    k: &IkeKeyMaterial,
    initiator: bool,
) -> Result<(CipherKey, CipherKey), CryptoError> {
    let i = CipherKey::new(a.encr, &k.sk_ei, a.integ.map(|g| (g, k.sk_ai.as_slice())))?;
    let r = CipherKey::new(a.encr, &k.sk_er, a.integ.map(|g| (g, k.sk_ar.as_slice())))?;
    Ok(if initiator { (i, r) } else { (r, i) })
}

/// CHILD SA keys of one direction.
pub(crate) struct DirKeys {
    pub encr: Secret,
    pub integ: Secret,
}

/// KEYMAT = prf+(SK_d, [g^ir |] Ni | Nr) sliced as: encr i->r, integ i->r, encr r->i, integ r->i.
/// Returns (initiator->responder, responder->initiator). AEAD keys include the salt.
pub(crate) fn child_keys(
    alg: Prf,
    sk_d: &[u8],
    shared: Option<&[u8]>,
    ni: &[u8],
    nr: &[u8],
    encr: Encr,
    integ: Option<Integ>,
) -> (DirKeys, DirKeys) {
    let e = encr.key_len() + encr.salt_len();
    let a = integ.map_or(0, |i| i.key_len());
    let mut buf = secret(2 * (e + a));
    let g: &[u8] = shared.unwrap_or(&[]);
    prf_plus(alg, sk_d, &[g, ni, nr], &mut buf);
    let take = |off: usize, len: usize| Zeroizing::new(buf[off..off + len].to_vec());
    let ir = DirKeys {
        encr: take(0, e),
        integ: take(e, a),
    };
    let ri = DirKeys {
        encr: take(e + a, e),
        integ: take(2 * e + a, a),
    };
    (ir, ri)
}

/// The ID payload body as it is MACed: type, 3 reserved bytes, data.
pub(crate) fn id_body(id: &Identification) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + id.data.len());
    v.extend_from_slice(&[id.kind, 0, 0, 0]);
    v.extend_from_slice(&id.data);
    v
}

const KEY_PAD: &[u8] = b"Key Pad for IKEv2";

/// PSK AUTH = prf(prf(PSK, "Key Pad for IKEv2"), message | peer nonce | prf(SK_p, ID body)).
///
/// `message` is the sender's own IKE_SA_INIT message, `nonce` the other side's nonce and `sk_p`
/// the sender's SK_pi / SK_pr.
pub(crate) fn psk_auth(
    alg: Prf,
    psk: &[u8],
    message: &[u8],
    nonce: &[u8],
    sk_p: &[u8],
    id: &Identification,
) -> Vec<u8> {
    let n = alg.output_len();
    let mut maced_id = secret(n);
    prf(alg, sk_p, &[&id_body(id)], &mut maced_id);
    let mut key = secret(n);
    prf(alg, psk, &[KEY_PAD], &mut key);
    let mut out = vec![0u8; n];
    prf(alg, &key, &[message, nonce, &maced_id], &mut out);
    out
}

/// NAT detection hash: SHA-1(SPIi | SPIr | IP | port).
pub(crate) fn nat_hash(spi_i: u64, spi_r: u64, addr: SocketAddr) -> Vec<u8> {
    use aws_lc_rs::digest;
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&spi_i.to_be_bytes());
    ctx.update(&spi_r.to_be_bytes());
    match addr.ip() {
        IpAddr::V4(a) => ctx.update(&a.octets()),
        IpAddr::V6(a) => ctx.update(&a.octets()),
    }
    ctx.update(&addr.port().to_be_bytes());
    ctx.finish().as_ref().to_vec()
}

/// Constant-time equality for AUTH values.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::hmac;
    use rampart_crypto::DhGroup;

    fn hmac256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let k = hmac::Key::new(hmac::HMAC_SHA256, key);
        let mut c = hmac::Context::with_key(&k);
        for p in parts {
            c.update(p);
        }
        c.sign().as_ref().to_vec()
    }

    /// prf+ written out from RFC 7296 2.13 independently of the crate under test.
    fn prf_plus_ref(key: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut t = Vec::new();
        let mut i = 1u8;
        while out.len() < len {
            t = hmac256(key, &[&t, seed, &[i]]);
            out.extend_from_slice(&t);
            i += 1;
        }
        out.truncate(len);
        out
    }

    #[test]
    fn ike_key_derivation_known_answer() {
        let ni = [0x11u8; 32];
        let nr = [0x22u8; 32];
        let g = [0x33u8; 32];
        let (spi_i, spi_r) = (0x0102030405060708u64, 0x1112131415161718u64);
        let seed_ref = hmac256(&[ni, nr].concat(), &[&g]);
        let a = IkeAlgs {
            encr: Encr::AesCbc128,
            integ: Some(Integ::HmacSha256_128),
            prf: Prf::HmacSha256,
            dh: DhGroup::Ecp256,
        };
        let seed = skeyseed(Prf::HmacSha256, &ni, &nr, &g);
        assert_eq!(seed.as_slice(), seed_ref.as_slice());
        let k = derive_ike_keys(&a, &seed, &ni, &nr, spi_i, spi_r);
        let s = [&ni[..], &nr[..], &spi_i.to_be_bytes(), &spi_r.to_be_bytes()].concat();
        let all = prf_plus_ref(&seed_ref, &s, 32 * 3 + 32 * 2 + 16 * 2);
        assert_eq!(k.sk_d.as_slice(), &all[0..32]);
        assert_eq!(k.sk_ai.as_slice(), &all[32..64]);
        assert_eq!(k.sk_ar.as_slice(), &all[64..96]);
        assert_eq!(k.sk_ei.as_slice(), &all[96..112]);
        assert_eq!(k.sk_er.as_slice(), &all[112..128]);
        assert_eq!(k.sk_pi.as_slice(), &all[128..160]);
        assert_eq!(k.sk_pr.as_slice(), &all[160..192]);

        // AEAD: no integrity keys, encryption keys carry the salt.
        let a = IkeAlgs {
            encr: Encr::AesGcm16_256,
            integ: None,
            prf: Prf::HmacSha256,
            dh: DhGroup::X25519,
        };
        let k = derive_ike_keys(&a, &seed, &ni, &nr, spi_i, spi_r);
        let all = prf_plus_ref(&seed_ref, &s, 32 + 36 * 2 + 64);
        assert!(k.sk_ai.is_empty() && k.sk_ar.is_empty());
        assert_eq!(k.sk_ei.as_slice(), &all[32..68]);
        assert_eq!(k.sk_er.as_slice(), &all[68..104]);
        assert_eq!(k.sk_pr.as_slice(), &all[136..168]);

        // Rekey: prf(SK_d(old), g^ir | Ni | Nr).
        let r = rekey_skeyseed(Prf::HmacSha256, &k.sk_d, &g, &ni, &nr);
        assert_eq!(r.as_slice(), hmac256(&k.sk_d, &[&g, &ni, &nr]).as_slice());
    }

    #[test]
    fn child_keymat_order() {
        let sk_d = [7u8; 32];
        let (ni, nr) = ([1u8; 32], [2u8; 32]);
        let (ir, ri) = child_keys(
            Prf::HmacSha256,
            &sk_d,
            None,
            &ni,
            &nr,
            Encr::AesCbc128,
            Some(Integ::HmacSha256_128),
        );
        let all = prf_plus_ref(&sk_d, &[ni, nr].concat(), 2 * (16 + 32));
        assert_eq!(ir.encr.as_slice(), &all[0..16]);
        assert_eq!(ir.integ.as_slice(), &all[16..48]);
        assert_eq!(ri.encr.as_slice(), &all[48..64]);
        assert_eq!(ri.integ.as_slice(), &all[64..96]);
        let g = [9u8; 32];
        let (ir, ri) = child_keys(
            Prf::HmacSha256,
            &sk_d,
            Some(&g),
            &ni,
            &nr,
            Encr::AesGcm16_128,
            None,
        );
        let all = prf_plus_ref(&sk_d, &[&g[..], &ni, &nr].concat(), 40);
        assert_eq!(ir.encr.as_slice(), &all[0..20]);
        assert_eq!(ri.encr.as_slice(), &all[20..40]);
        assert!(ir.integ.is_empty());
    }

    #[test]
    fn psk_auth_formula() {
        let id = Identification {
            kind: 2,
            data: b"gw.example".to_vec(),
        };
        let got = psk_auth(Prf::HmacSha256, b"secret", b"msg", b"nonce", b"skp", &id);
        let inner = hmac256(b"secret", &[b"Key Pad for IKEv2"]);
        let maced = hmac256(b"skp", &[&[2, 0, 0, 0], b"gw.example"]);
        assert_eq!(got, hmac256(&inner, &[b"msg", b"nonce", &maced]));
    }

    #[test]
    fn nat_hash_depends_on_port() {
        let a: SocketAddr = "192.0.2.1:500".parse().unwrap();
        let b: SocketAddr = "192.0.2.1:4500".parse().unwrap();
        assert_eq!(nat_hash(1, 2, a).len(), 20);
        assert_ne!(nat_hash(1, 2, a), nat_hash(1, 2, b));
        assert!(ct_eq(&nat_hash(1, 2, a), &nat_hash(1, 2, a)));
    }
}
