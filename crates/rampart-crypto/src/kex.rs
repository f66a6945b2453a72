//! Ephemeral key exchange (IKEv2 KE payload) for X25519 (RFC 8031) and NIST P-256/P-384 (RFC 5903).

use crate::{CryptoError, DhGroup, Rng};
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey};
use zeroize::Zeroize;

/// Largest IKE public value we handle (P-384: 2 * 48) plus the SEC1 0x04 prefix aws-lc wants.
const MAX_SEC1: usize = 1 + 96;
/// Largest shared secret (P-384 x coordinate).
const MAX_SECRET: usize = 48;

fn lc_alg(group: DhGroup) -> &'static agreement::Algorithm {
    match group {
        DhGroup::Ecp256 => &agreement::ECDH_P256,
        DhGroup::Ecp384 => &agreement::ECDH_P384,
        DhGroup::X25519 => &agreement::X25519,
    }
}

fn private_len(group: DhGroup) -> usize {
    match group {
        DhGroup::Ecp256 | DhGroup::X25519 => 32,
        DhGroup::Ecp384 => 48,
    }
}

/// One ephemeral private value and its public value in IKEv2 KE format.
///
/// Public value format: X25519 the 32-byte u-coordinate; ECP the big-endian x || y with no
/// point-format prefix (RFC 5903 section 7). The private value lives inside aws-lc, which frees
/// and cleanses it on drop.
pub struct KeyExchange {
    group: DhGroup,
    private: PrivateKey,
    public: [u8; 96],
}

impl KeyExchange {
    /// A fresh private value drawn from `rng`; scalars aws-lc rejects (zero, >= group order) are
    /// redrawn.
    pub fn generate(group: DhGroup, rng: &mut Rng) -> Result<KeyExchange, CryptoError> {
        let mut bytes = [0u8; 48];
        let len = private_len(group);
        // The probability of a rejected P-256/P-384 scalar is < 2^-32 per draw, so 64 draws
        // failing means the library, not chance.
        for _ in 0..64 {
            rng.fill(&mut bytes[..len]);
            let result = KeyExchange::from_private_bytes(group, &bytes[..len]);
            if let Ok(kx) = result {
                bytes.zeroize();
                return Ok(kx);
            }
        }
        bytes.zeroize();
        Err(CryptoError::Library("private key generation"))
    }

    /// A key exchange from a known private value (test vectors, reproducible runs).
    ///
    /// ECP: the big-endian scalar (32 or 48 bytes); X25519: the 32-byte scalar before clamping.
    pub fn from_private_bytes(group: DhGroup, private: &[u8]) -> Result<KeyExchange, CryptoError> {
        let expected = private_len(group);
        if private.len() != expected {
            return Err(CryptoError::KeyLength {
                what: "key exchange private",
                expected,
                got: private.len(),
            });
        }
        let private = PrivateKey::from_private_key(lc_alg(group), private)
            .map_err(|_| CryptoError::Library("private key rejected"))?;
        let lc_public = private
            .compute_public_key()
            .map_err(|_| CryptoError::Library("public key computation"))?;
        let lc_public = lc_public.as_ref();
        let mut public = [0u8; 96];
        let n = group.public_len();
        let ike = match group {
            DhGroup::X25519 => lc_public,
            // SEC1 uncompressed: 0x04 || x || y.
            DhGroup::Ecp256 | DhGroup::Ecp384 => match lc_public.split_first() {
                Some((0x04, rest)) => rest,
                _ => return Err(CryptoError::Library("unexpected public key encoding")),
            },
        };
        if ike.len() != n {
            return Err(CryptoError::Library("unexpected public key length"));
        }
        public[..n].copy_from_slice(ike);
        Ok(KeyExchange {
            group,
            private,
            public,
        })
    }

    pub fn group(&self) -> DhGroup {
        self.group
    }

    /// The KE payload data (see the type documentation for the format).
    pub fn public_key(&self) -> &[u8] {
        &self.public[..self.group.public_len()]
    }

    /// The shared secret with the peer's KE data: the X25519 output, or the ECP x coordinate.
    ///
    /// Rejects values of the wrong length, points not on the curve, and X25519 results that are
    /// all zero (low-order points, RFC 8031 section 2.2).
    pub fn agree(&self, peer_public: &[u8]) -> Result<SharedSecret, CryptoError> {
        let group = self.group;
        if peer_public.len() != group.public_len() {
            return Err(CryptoError::InvalidPublicKey { group });
        }
        let mut sec1 = [0u8; MAX_SEC1];
        let encoded: &[u8] = match group {
            DhGroup::X25519 => peer_public,
            DhGroup::Ecp256 | DhGroup::Ecp384 => {
                sec1[0] = 0x04;
                sec1[1..1 + peer_public.len()].copy_from_slice(peer_public);
                &sec1[..1 + peer_public.len()]
            }
        };
        let peer = UnparsedPublicKey::new(lc_alg(group), encoded);
        // Parse separately so a bad point and a failed agreement give different errors.
        let parsed: agreement::ParsedPublicKey = (&peer)
            .try_into()
            .map_err(|_| CryptoError::InvalidPublicKey { group })?;
        agreement::agree(
            &self.private,
            parsed,
            CryptoError::AgreementFailed { group },
            |secret| {
                if secret.len() > MAX_SECRET || secret.iter().all(|&b| b == 0) {
                    return Err(CryptoError::AgreementFailed { group });
                }
                let mut out = SharedSecret {
                    bytes: [0u8; MAX_SECRET],
                    len: secret.len(),
                };
                out.bytes[..secret.len()].copy_from_slice(secret);
                Ok(out)
            },
        )
    }
}

impl std::fmt::Debug for KeyExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyExchange")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

/// The Diffie-Hellman shared secret g^ir. Zeroized on drop; `Debug` does not print it.
pub struct SharedSecret {
    bytes: [u8; MAX_SECRET],
    len: usize,
}

impl SharedSecret {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl Drop for SharedSecret {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedSecret({} bytes)", self.len)
    }
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

    /// RFC 7748 section 6.1.
    #[test]
    fn x25519_rfc7748() {
        let a_priv = unhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let a_pub = unhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
        let b_priv = unhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
        let b_pub = unhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
        let shared = unhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        let a = KeyExchange::from_private_bytes(DhGroup::X25519, &a_priv).unwrap();
        let b = KeyExchange::from_private_bytes(DhGroup::X25519, &b_priv).unwrap();
        assert_eq!(a.public_key(), &a_pub[..]);
        assert_eq!(b.public_key(), &b_pub[..]);
        assert_eq!(a.agree(&b_pub).unwrap().as_bytes(), &shared[..]);
        assert_eq!(b.agree(&a_pub).unwrap().as_bytes(), &shared[..]);
    }

    #[test]
    fn x25519_rejects_low_order_point() {
        let a = KeyExchange::generate(DhGroup::X25519, &mut Rng::from_seed([1; 32])).unwrap();
        assert!(a.agree(&[0u8; 32]).is_err());
        let mut one = [0u8; 32];
        one[0] = 1;
        assert!(a.agree(&one).is_err());
    }

    /// RFC 5903 section 8.1 (256-bit random ECP group), in IKE format.
    #[test]
    fn ecp256_rfc5903() {
        let i = unhex("C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433");
        let gi = unhex(
            "DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180
             5271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3",
        );
        let r = unhex("C6EF9C5D78AE012A011164ACB397CE2088685D8F06BF9BE0B283AB46476BEE53");
        let gr = unhex(
            "D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63
             56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB",
        );
        let gir = unhex("D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE");
        check_pair(DhGroup::Ecp256, &i, &gi, &r, &gr, &gir);
    }

    /// RFC 5903 section 8.2 (384-bit random ECP group), in IKE format.
    #[test]
    fn ecp384_rfc5903() {
        let i = unhex(
            "099F3C7034D4A2C699884D73A375A67F7624EF7C6B3C0F160647B67414DCE655E35B538041E649EE3FAEF896783AB194",
        );
        let gi = unhex(
            "667842D7D180AC2CDE6F74F37551F55755C7645C20EF73E31634FE72B4C55EE6DE3AC808ACB4BDB4C88732AEE95F41AA
             9482ED1FC0EEB9CAFC4984625CCFC23F65032149E0E144ADA024181535A0F38EEB9FCFF3C2C947DAE69B4C634573A81C",
        );
        let r = unhex(
            "41CB0779B4BDB85D47846725FBEC3C9430FAB46CC8DC5060855CC9BDA0AA2942E0308312916B8ED2960E4BD55A7448FC",
        );
        let gr = unhex(
            "E558DBEF53EECDE3D3FCCFC1AEA08A89A987475D12FD950D83CFA41732BC509D0D1AC43A0336DEF96FDA41D0774A3571
             DCFBEC7AACF3196472169E838430367F66EEBE3C6E70C416DD5F0C68759DD1FFF83FA40142209DFF5EAAD96DB9E6386C",
        );
        let gir = unhex(
            "11187331C279962D93D604243FD592CB9D0A926F422E47187521287E7156C5C4D603135569B9E9D09CF5D4A270F59746",
        );
        check_pair(DhGroup::Ecp384, &i, &gi, &r, &gr, &gir);
    }

    fn check_pair(group: DhGroup, i: &[u8], gi: &[u8], r: &[u8], gr: &[u8], gir: &[u8]) {
        let ki = KeyExchange::from_private_bytes(group, i).unwrap();
        let kr = KeyExchange::from_private_bytes(group, r).unwrap();
        assert_eq!(ki.public_key(), gi);
        assert_eq!(kr.public_key(), gr);
        assert_eq!(ki.agree(gr).unwrap().as_bytes(), gir);
        assert_eq!(kr.agree(gi).unwrap().as_bytes(), gir);
        // Wrong length, and a point that is not on the curve.
        assert_eq!(
            ki.agree(&gr[1..]).unwrap_err(),
            CryptoError::InvalidPublicKey { group }
        );
        let mut off_curve = gr.to_vec();
        let last = off_curve.len() - 1;
        off_curve[last] ^= 1;
        assert_eq!(
            ki.agree(&off_curve).unwrap_err(),
            CryptoError::InvalidPublicKey { group }
        );
    }

    #[test]
    fn generated_pairs_agree() {
        let mut rng = Rng::from_seed([9; 32]);
        for group in DhGroup::ALL {
            let a = KeyExchange::generate(group, &mut rng).unwrap();
            let b = KeyExchange::generate(group, &mut rng).unwrap();
            assert_eq!(a.group(), group);
            assert_eq!(a.public_key().len(), group.public_len());
            assert_eq!(
                a.agree(b.public_key()).unwrap().as_bytes(),
                b.agree(a.public_key()).unwrap().as_bytes()
            );
        }
    }
}
