//! IKEv2 pseudo-random functions: `prf` and `prf+` (RFC 7296 section 2.13).

use crate::{CryptoError, Prf};
use aws_lc_rs::hmac;

fn hmac_alg(alg: Prf) -> hmac::Algorithm {
    match alg {
        Prf::HmacSha256 => hmac::HMAC_SHA256,
        Prf::HmacSha384 => hmac::HMAC_SHA384,
        Prf::HmacSha512 => hmac::HMAC_SHA512,
    }
}

/// `prf(key, data[0] | data[1] | ...)` written to the front of `out`.
///
/// Returns `alg.output_len()`. If `out` is shorter than that, only `out.len()` bytes are written
/// (the output is truncated); the return value still states the full length.
pub fn prf(alg: Prf, key: &[u8], data: &[&[u8]], out: &mut [u8]) -> usize {
    let key = hmac::Key::new(hmac_alg(alg), key);
    let mut ctx = hmac::Context::with_key(&key);
    for part in data {
        ctx.update(part);
    }
    let tag = ctx.sign();
    let tag = tag.as_ref();
    let n = tag.len().min(out.len());
    out[..n].copy_from_slice(&tag[..n]);
    tag.len()
}

/// `prf+(key, seed)` filling all of `out`: T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n).
///
/// `seed` is the concatenation of its parts.
///
/// # Panics
/// If `out.len()` exceeds 255 blocks of the PRF output; use [`try_prf_plus`] for a typed error.
/// Callers size `out` from negotiated algorithms, so this is a programming error, not bad input.
pub fn prf_plus(alg: Prf, key: &[u8], seed: &[&[u8]], out: &mut [u8]) {
    if let Err(e) = try_prf_plus(alg, key, seed, out) {
        panic!("prf_plus: {e}");
    }
}

/// [`prf_plus`] that reports an over-long request instead of panicking.
pub fn try_prf_plus(
    alg: Prf,
    key: &[u8],
    seed: &[&[u8]],
    out: &mut [u8],
) -> Result<(), CryptoError> {
    let hlen = alg.output_len();
    let max = 255 * hlen;
    if out.len() > max {
        return Err(CryptoError::OutputTooLong {
            requested: out.len(),
            max,
        });
    }
    let key = hmac::Key::new(hmac_alg(alg), key);
    let mut prev = [0u8; 64];
    let mut have_prev = false;
    for (i, chunk) in out.chunks_mut(hlen).enumerate() {
        let mut ctx = hmac::Context::with_key(&key);
        if have_prev {
            ctx.update(&prev[..hlen]);
        }
        for part in seed {
            ctx.update(part);
        }
        // i < 255 because out.len() <= 255 * hlen.
        ctx.update(&[(i + 1) as u8]);
        let tag = ctx.sign();
        prev[..hlen].copy_from_slice(tag.as_ref());
        have_prev = true;
        let n = chunk.len();
        chunk.copy_from_slice(&prev[..n]);
    }
    zeroize::Zeroize::zeroize(&mut prev);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 4231 test cases 1, 2, 3, 4, 6 and 7 (case 5 is about truncation) for SHA-256/384/512.
    #[test]
    fn rfc4231_vectors() {
        let big_key = vec![0xaa; 131];
        let cases: Vec<(Vec<u8>, Vec<u8>, [&str; 3])> = vec![
            (vec![0x0b; 20], b"Hi There".to_vec(), [
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
                "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6",
                "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
            ]),
            (b"Jefe".to_vec(), b"what do ya want for nothing?".to_vec(), [
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649",
                "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
            ]),
            (vec![0xaa; 20], vec![0xdd; 50], [
                "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
                "88062608d3e6ad8a0aa2ace014c8a86f0aa635d947ac9febe83ef4e55966144b2a5ab39dc13814b94e3ab6e101a34f27",
                "fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb",
            ]),
            ((1u8..=25).collect(), vec![0xcd; 50], [
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
                "3e8a69b7783c25851933ab6290af6ca77a9981480850009cc5577c6e1f573b4e6801dd23c4a7d679ccf8a386c674cffb",
                "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3dba91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd",
            ]),
            (big_key.clone(), b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(), [
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
                "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c60c2ef6ab4030fe8296248df163f44952",
                "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f3526b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598",
            ]),
            (big_key, b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.".to_vec(), [
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
                "6617178e941f020d351e2f254e8fd32c602420feb0b8fb9adccebb82461e99c5a678cc31e799176d3860e6110c46523e",
                "e37b6a775dc87dbaa4dfa9f96e5e3ffddebd71f8867289865df5a32d20cdc944b6022cac3c4982b10d5eeb55c3e4de15134676fb6de0446065c97440fa8c6a58",
            ]),
        ];
        for (key, data, expected) in cases {
            for (alg, want) in Prf::ALL.into_iter().zip(expected) {
                let mut out = [0u8; 64];
                // Split the data to check that the parts are concatenated.
                let (a, b) = data.split_at(data.len() / 2);
                let n = prf(alg, &key, &[a, b], &mut out);
                assert_eq!(n, alg.output_len());
                assert_eq!(out[..n], unhex(want)[..], "{alg}");
            }
        }
    }

    #[test]
    fn prf_plus_matches_definition() {
        let key = b"key material";
        let seed: &[&[u8]] = &[b"Ni", b"Nr", b"SPIs"];
        for alg in Prf::ALL {
            let h = alg.output_len();
            let mut out = vec![0u8; 3 * h + 5];
            prf_plus(alg, key, seed, &mut out);
            let mut t = vec![0u8; h];
            let mut expected = Vec::new();
            for n in 1u8..=4 {
                let mut next = vec![0u8; h];
                let prev: &[u8] = if n == 1 { &[] } else { &t };
                prf(alg, key, &[prev, b"Ni", b"Nr", b"SPIs", &[n]], &mut next);
                expected.extend_from_slice(&next);
                t = next;
            }
            assert_eq!(out[..], expected[..out.len()]);
            // A shorter request is a prefix of a longer one.
            let mut short = vec![0u8; h + 1];
            prf_plus(alg, key, seed, &mut short);
            assert_eq!(short[..], out[..h + 1]);
        }
    }

    #[test]
    fn prf_plus_limit() {
        let mut ok = vec![0u8; 255 * 32];
        assert!(try_prf_plus(Prf::HmacSha256, b"k", &[b"s"], &mut ok).is_ok());
        let mut too_long = vec![0u8; 255 * 32 + 1];
        assert_eq!(
            try_prf_plus(Prf::HmacSha256, b"k", &[b"s"], &mut too_long),
            Err(CryptoError::OutputTooLong {
                requested: 255 * 32 + 1,
                max: 255 * 32
            })
        );
    }
}
