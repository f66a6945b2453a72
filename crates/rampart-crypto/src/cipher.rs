//! `CipherKey`: one direction of a protected channel (ESP SA or IKE SA), AEAD or AES-CBC + HMAC.

use crate::{CryptoError, Encr, Integ};
use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{
    self, DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext, UnboundCipherKey,
};
use aws_lc_rs::constant_time;
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;

const SALT_LEN: usize = 4;
const AEAD_IV_LEN: usize = 8;
const CBC_IV_LEN: usize = 16;

enum Inner {
    Aead {
        key: LessSafeKey,
        salt: [u8; SALT_LEN],
    },
    /// Boxed: the AES key schedules make this variant several times larger than the AEAD one.
    Cbc(Box<CbcKeys>),
}

struct CbcKeys {
    enc: EncryptingKey,
    dec: DecryptingKey,
    mac: hmac::Key,
    icv_len: usize,
}

/// Keys for one direction: encryption and integrity together.
///
/// Invariants: the algorithm objects are built once in [`CipherKey::new`], so `seal`/`open`
/// allocate nothing; key bytes are held only inside aws-lc objects (which cleanse on drop),
/// except the 4-byte AEAD salt, which is zeroized on drop.
pub struct CipherKey {
    encr: Encr,
    inner: Inner,
}

impl CipherKey {
    /// AEAD: `encr_key` = key || salt (`key_len + salt_len` bytes), `integ` must be `None`.
    /// CBC: `encr_key` = the AES key, `integ` = `Some((Integ, integ_key))`.
    pub fn new(
        encr: Encr,
        encr_key: &[u8],
        integ: Option<(Integ, &[u8])>,
    ) -> Result<CipherKey, CryptoError> {
        let expected = encr.key_len() + encr.salt_len();
        if encr_key.len() != expected {
            return Err(CryptoError::KeyLength {
                what: "encryption",
                expected,
                got: encr_key.len(),
            });
        }
        let inner = if encr.is_aead() {
            if let Some((_, k)) = integ {
                // An AEAD must not be combined with a separate integrity transform (RFC 7296 3.3).
                return Err(CryptoError::KeyLength {
                    what: "integrity (none with AEAD)",
                    expected: 0,
                    got: k.len(),
                });
            }
            let alg = match encr {
                Encr::AesGcm16_128 => &aead::AES_128_GCM,
                Encr::AesGcm16_256 => &aead::AES_256_GCM,
                _ => &aead::CHACHA20_POLY1305,
            };
            let (key, salt_bytes) = encr_key.split_at(encr.key_len());
            let unbound =
                UnboundKey::new(alg, key).map_err(|_| CryptoError::Library("AEAD key"))?;
            let mut salt = [0u8; SALT_LEN];
            salt.copy_from_slice(salt_bytes);
            Inner::Aead {
                key: LessSafeKey::new(unbound),
                salt,
            }
        } else {
            let Some((integ, integ_key)) = integ else {
                return Err(CryptoError::KeyLength {
                    what: "integrity",
                    expected: Integ::HmacSha256_128.key_len(),
                    got: 0,
                });
            };
            if integ_key.len() != integ.key_len() {
                return Err(CryptoError::KeyLength {
                    what: "integrity",
                    expected: integ.key_len(),
                    got: integ_key.len(),
                });
            }
            let alg = if encr.key_len() == 16 {
                &cipher::AES_128
            } else {
                &cipher::AES_256
            };
            let unbound = || {
                UnboundCipherKey::new(alg, encr_key).map_err(|_| CryptoError::Library("AES key"))
            };
            let enc =
                EncryptingKey::cbc(unbound()?).map_err(|_| CryptoError::Library("AES-CBC key"))?;
            let dec =
                DecryptingKey::cbc(unbound()?).map_err(|_| CryptoError::Library("AES-CBC key"))?;
            let mac = match integ {
                Integ::HmacSha256_128 => hmac::Key::new(hmac::HMAC_SHA256, integ_key),
            };
            Inner::Cbc(Box::new(CbcKeys {
                enc,
                dec,
                mac,
                icv_len: integ.icv_len(),
            }))
        };
        Ok(CipherKey { encr, inner })
    }

    pub fn encr(&self) -> Encr {
        self.encr
    }

    /// Explicit IV bytes on the wire.
    pub fn iv_len(&self) -> usize {
        self.encr.iv_len()
    }

    /// ICV bytes after the ciphertext (AEAD tag or truncated HMAC).
    pub fn icv_len(&self) -> usize {
        match &self.inner {
            Inner::Aead { .. } => self.encr.icv_len(),
            Inner::Cbc(cbc) => cbc.icv_len,
        }
    }

    /// Required alignment of `data` (16 for CBC, 1 for AEAD).
    pub fn block_len(&self) -> usize {
        self.encr.block_len()
    }

    /// Encrypts `data` in place and writes the ICV into `icv` (exactly `icv_len()` bytes).
    ///
    /// AEAD: nonce = salt || `iv`, AAD = `aad`; `trailer` is ignored.
    /// CBC: `data.len()` must be a multiple of 16; ICV = HMAC(aad || iv || ciphertext || trailer)
    /// truncated. The caller guarantees `iv` uniqueness (AEAD) or unpredictability (CBC).
    pub fn seal(
        &self,
        iv: &[u8],
        aad: &[u8],
        trailer: &[u8],
        data: &mut [u8],
        icv: &mut [u8],
    ) -> Result<(), CryptoError> {
        self.check_lengths(iv, data, icv.len())?;
        match &self.inner {
            Inner::Aead { key, salt } => {
                let tag = key
                    .seal_in_place_separate_tag(nonce(salt, iv)?, Aad::from(aad), data)
                    .map_err(|_| CryptoError::Library("AEAD seal"))?;
                icv.copy_from_slice(tag.as_ref());
                Ok(())
            }
            Inner::Cbc(cbc) => {
                let CbcKeys { enc, mac, .. } = &**cbc;
                enc.less_safe_encrypt(
                    data,
                    EncryptionContext::Iv128(FixedLength::from(cbc_iv(iv)?)),
                )
                .map_err(|_| CryptoError::Library("AES-CBC encrypt"))?;
                let tag = cbc_mac(mac, aad, iv, data, trailer);
                icv.copy_from_slice(&tag.as_ref()[..icv.len()]);
                Ok(())
            }
        }
    }

    /// Verifies the ICV, then decrypts `data` in place.
    ///
    /// No unauthenticated plaintext is ever visible on error:
    /// - length errors (IV, ICV, block alignment) are checked first and leave `data` untouched;
    /// - CBC checks the HMAC in constant time before decrypting, so on
    ///   [`CryptoError::AuthenticationFailed`] `data` is untouched;
    /// - AEAD (GCM, ChaCha20-Poly1305) decrypts while computing the tag (aws-lc), so on
    ///   `AuthenticationFailed` `data` is overwritten with zeros. Callers drop the packet either way.
    pub fn open(
        &self,
        iv: &[u8],
        aad: &[u8],
        trailer: &[u8],
        data: &mut [u8],
        icv: &[u8],
    ) -> Result<(), CryptoError> {
        self.check_lengths(iv, data, icv.len())?;
        match &self.inner {
            Inner::Aead { key, salt } => {
                let n = nonce(salt, iv)?;
                if key
                    .open_in_place_separate_tag(n, Aad::from(aad), icv, data)
                    .is_ok()
                {
                    return Ok(());
                }
                // aws-lc already wipes the output on a tag mismatch; do it here too so the
                // documented behaviour does not depend on the library version.
                data.fill(0);
                Err(CryptoError::AuthenticationFailed)
            }
            Inner::Cbc(cbc) => {
                let CbcKeys { dec, mac, .. } = &**cbc;
                let tag = cbc_mac(mac, aad, iv, data, trailer);
                constant_time::verify_slices_are_equal(&tag.as_ref()[..icv.len()], icv)
                    .map_err(|_| CryptoError::AuthenticationFailed)?;
                dec.decrypt(
                    data,
                    DecryptionContext::Iv128(FixedLength::from(cbc_iv(iv)?)),
                )
                .map_err(|_| CryptoError::Library("AES-CBC decrypt"))?;
                Ok(())
            }
        }
    }

    fn check_lengths(&self, iv: &[u8], data: &[u8], icv_len: usize) -> Result<(), CryptoError> {
        if iv.len() != self.iv_len() {
            return Err(CryptoError::Length {
                what: "IV",
                expected: self.iv_len(),
                got: iv.len(),
            });
        }
        if icv_len != self.icv_len() {
            return Err(CryptoError::Length {
                what: "ICV",
                expected: self.icv_len(),
                got: icv_len,
            });
        }
        let block = self.block_len();
        if !data.len().is_multiple_of(block) {
            return Err(CryptoError::NotBlockAligned {
                len: data.len(),
                block,
            });
        }
        Ok(())
    }
}

fn nonce(salt: &[u8; SALT_LEN], iv: &[u8]) -> Result<Nonce, CryptoError> {
    let mut n = [0u8; SALT_LEN + AEAD_IV_LEN];
    n[..SALT_LEN].copy_from_slice(salt);
    n.get_mut(SALT_LEN..)
        .filter(|rest| rest.len() == iv.len())
        .ok_or(CryptoError::Length {
            what: "IV",
            expected: AEAD_IV_LEN,
            got: iv.len(),
        })?
        .copy_from_slice(iv);
    Ok(Nonce::assume_unique_for_key(n))
}

fn cbc_iv(iv: &[u8]) -> Result<[u8; CBC_IV_LEN], CryptoError> {
    iv.try_into().map_err(|_| CryptoError::Length {
        what: "IV",
        expected: CBC_IV_LEN,
        got: iv.len(),
    })
}

fn cbc_mac(mac: &hmac::Key, aad: &[u8], iv: &[u8], ciphertext: &[u8], trailer: &[u8]) -> hmac::Tag {
    let mut ctx = hmac::Context::with_key(mac);
    ctx.update(aad);
    ctx.update(iv);
    ctx.update(ciphertext);
    ctx.update(trailer);
    ctx.sign()
}

impl Drop for CipherKey {
    fn drop(&mut self) {
        if let Inner::Aead { salt, .. } = &mut self.inner {
            zeroize::Zeroize::zeroize(salt);
        }
    }
}

impl std::fmt::Debug for CipherKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CipherKey")
            .field("encr", &self.encr)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;

    fn key_for(encr: Encr, rng: &mut Rng) -> (Vec<u8>, Vec<u8>) {
        let mut k = vec![0u8; encr.key_len() + encr.salt_len()];
        rng.fill(&mut k);
        let mut i = vec![0u8; 32];
        rng.fill(&mut i);
        (k, i)
    }

    fn make(encr: Encr, k: &[u8], i: &[u8]) -> CipherKey {
        let integ = (!encr.is_aead()).then_some((Integ::HmacSha256_128, i));
        CipherKey::new(encr, k, integ).unwrap()
    }

    #[test]
    fn round_trip_every_encr_and_tamper_leaves_buffer_untouched() {
        let mut rng = Rng::from_seed([3; 32]);
        for encr in Encr::ALL {
            let (k, i) = key_for(encr, &mut rng);
            let key = make(encr, &k, &i);
            assert_eq!(key.encr(), encr);
            assert_eq!(key.icv_len(), 16);
            let mut iv = vec![0u8; key.iv_len()];
            rng.fill(&mut iv);
            let aad = b"spi+seq";
            let trailer: &[u8] = if encr.is_aead() { b"" } else { &[0, 0, 0, 1] };
            let plain: Vec<u8> = (0..64u8).collect();
            let mut data = plain.clone();
            let mut icv = [0u8; 16];
            key.seal(&iv, aad, trailer, &mut data, &mut icv).unwrap();
            assert_ne!(data, plain);
            let sealed = data.clone();

            // Every single-bit tamper (data, ICV, IV, AAD, trailer for CBC) is rejected; the
            // buffer is then untouched (CBC) or zeroed (AEAD), never plaintext.
            let after_failure = |d: &[u8]| {
                if encr.is_aead() {
                    assert!(
                        d.iter().all(|&b| b == 0),
                        "{encr}: AEAD failure must zero the data"
                    );
                } else {
                    assert_eq!(
                        d,
                        &sealed[..],
                        "{encr}: CBC failure must leave the data untouched"
                    );
                }
            };
            let mut bad_icv = icv;
            bad_icv[0] ^= 1;
            assert_eq!(
                key.open(&iv, aad, trailer, &mut data, &bad_icv),
                Err(CryptoError::AuthenticationFailed)
            );
            after_failure(&data);
            data.copy_from_slice(&sealed);
            data[10] ^= 0x80;
            assert_eq!(
                key.open(&iv, aad, trailer, &mut data, &icv),
                Err(CryptoError::AuthenticationFailed)
            );
            let mut bad_iv = iv.clone();
            bad_iv[1] ^= 4;
            data.copy_from_slice(&sealed);
            assert!(key.open(&bad_iv, aad, trailer, &mut data, &icv).is_err());
            after_failure(&data);
            data.copy_from_slice(&sealed);
            assert!(key.open(&iv, b"spi+sex", trailer, &mut data, &icv).is_err());
            after_failure(&data);
            if !encr.is_aead() {
                assert!(key.open(&iv, aad, &[0, 0, 0, 2], &mut data, &icv).is_err());
                after_failure(&data);
            }
            // Length errors never touch the data.
            data.copy_from_slice(&sealed);
            assert!(key.open(&iv[1..], aad, trailer, &mut data, &icv).is_err());
            assert!(key.open(&iv, aad, trailer, &mut data, &icv[1..]).is_err());
            assert_eq!(data, sealed);

            // A different key of the same algorithm cannot open it.
            let (k2, i2) = key_for(encr, &mut rng);
            assert!(make(encr, &k2, &i2)
                .open(&iv, aad, trailer, &mut data, &icv)
                .is_err());
            after_failure(&data);
            data.copy_from_slice(&sealed);

            key.open(&iv, aad, trailer, &mut data, &icv).unwrap();
            assert_eq!(data, plain);
        }
    }

    #[test]
    fn length_checks() {
        let mut rng = Rng::from_seed([4; 32]);
        let (k, i) = key_for(Encr::AesCbc128, &mut rng);
        let key = make(Encr::AesCbc128, &k, &i);
        let mut icv = [0u8; 16];
        let mut data = [0u8; 15];
        assert_eq!(
            key.seal(&[0; 16], b"", b"", &mut data, &mut icv),
            Err(CryptoError::NotBlockAligned { len: 15, block: 16 })
        );
        assert!(matches!(
            key.seal(&[0; 8], b"", b"", &mut [0; 16], &mut icv),
            Err(CryptoError::Length { what: "IV", .. })
        ));
        assert!(matches!(
            key.seal(&[0; 16], b"", b"", &mut [0; 16], &mut [0; 12]),
            Err(CryptoError::Length { what: "ICV", .. })
        ));
        assert!(CipherKey::new(Encr::AesCbc128, &k, None).is_err());
        assert!(
            CipherKey::new(Encr::AesCbc128, &k, Some((Integ::HmacSha256_128, &i[..20]))).is_err()
        );
        assert!(CipherKey::new(Encr::AesGcm16_128, &[0; 16], None).is_err()); // salt missing
        assert!(CipherKey::new(
            Encr::AesGcm16_128,
            &[0; 20],
            Some((Integ::HmacSha256_128, &[0; 32]))
        )
        .is_err());
        // AEAD accepts any data length, including empty.
        let g = CipherKey::new(Encr::ChaCha20Poly1305, &[1; 36], None).unwrap();
        let mut empty: [u8; 0] = [];
        g.seal(&[0; 8], b"a", b"", &mut empty, &mut icv).unwrap();
        g.open(&[0; 8], b"a", b"", &mut empty, &icv).unwrap();
    }

    /// RFC 3602 section 4 case 2 (AES-128-CBC, two blocks) checks our CBC wiring and IV use.
    #[test]
    fn aes_cbc_rfc3602_case2() {
        let unhex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let key = make(
            Encr::AesCbc128,
            &unhex("c286696d887c9aa0611bbb3e2025a45a"),
            &[0; 32],
        );
        let iv = unhex("562e17996d093d28ddb3ba695a2e6f58");
        let mut data = unhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
        let mut icv = [0u8; 16];
        key.seal(&iv, b"", b"", &mut data, &mut icv).unwrap();
        assert_eq!(
            data,
            unhex("d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1")
        );
    }
}
