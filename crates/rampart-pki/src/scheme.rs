//! Signature schemes and their RFC 7427 AlgorithmIdentifier encodings.

use rustls_pki_types::alg_id;

use crate::dn::tlv;

/// Hash algorithm ids of the SIGNATURE_HASH_ALGORITHMS notify (RFC 7427 section 4).
pub mod hash_alg {
    pub const SHA1: u16 = 1;
    pub const SHA2_256: u16 = 2;
    pub const SHA2_384: u16 = 3;
    pub const SHA2_512: u16 = 4;
}

/// A signature algorithm over the AUTH octets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignScheme {
    EcdsaSha256,
    EcdsaSha384,
    EcdsaSha512,
    /// RFC 7296 auth method 1: verification only (aws-lc-rs does not sign with SHA-1).
    RsaPkcs1Sha1,
    RsaPkcs1Sha256,
    RsaPkcs1Sha384,
    RsaPkcs1Sha512,
    RsaPssSha256,
    RsaPssSha384,
    RsaPssSha512,
}

const OID_RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
const OID_SHA2_PREFIX: &[u8] = &[0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02];

impl SignScheme {
    /// The hash, as an RFC 7427 hash algorithm id.
    pub fn hash(self) -> u16 {
        use SignScheme::*;
        match self {
            RsaPkcs1Sha1 => hash_alg::SHA1,
            EcdsaSha256 | RsaPkcs1Sha256 | RsaPssSha256 => hash_alg::SHA2_256,
            EcdsaSha384 | RsaPkcs1Sha384 | RsaPssSha384 => hash_alg::SHA2_384,
            EcdsaSha512 | RsaPkcs1Sha512 | RsaPssSha512 => hash_alg::SHA2_512,
        }
    }

    /// The DER `AlgorithmIdentifier` (with its SEQUENCE header), or `None` for SHA-1.
    pub fn algorithm_identifier(self) -> Option<Vec<u8>> {
        use SignScheme::*;
        let body: &[u8] = match self {
            EcdsaSha256 => alg_id::ECDSA_SHA256.as_ref(),
            EcdsaSha384 => alg_id::ECDSA_SHA384.as_ref(),
            EcdsaSha512 => alg_id::ECDSA_SHA512.as_ref(),
            RsaPkcs1Sha1 => return None,
            RsaPkcs1Sha256 => alg_id::RSA_PKCS1_SHA256.as_ref(),
            RsaPkcs1Sha384 => alg_id::RSA_PKCS1_SHA384.as_ref(),
            RsaPkcs1Sha512 => alg_id::RSA_PKCS1_SHA512.as_ref(),
            RsaPssSha256 => alg_id::RSA_PSS_SHA256.as_ref(),
            RsaPssSha384 => alg_id::RSA_PSS_SHA384.as_ref(),
            RsaPssSha512 => alg_id::RSA_PSS_SHA512.as_ref(),
        };
        Some(tlv(0x30, body))
    }

    /// Recognises an `AlgorithmIdentifier` (with its SEQUENCE header). PKCS#1 parameters may be
    /// NULL or absent; for RSASSA-PSS the hash is taken from the parameters (MGF1 with the same
    /// hash and a salt of the hash length are what aws-lc-rs verifies).
    pub fn from_algorithm_identifier(der: &[u8]) -> Option<SignScheme> {
        use SignScheme::*;
        let (tag, body, _) = read_tlv(der)?;
        if tag != 0x30 {
            return None;
        }
        let (oid_tag, oid, params) = read_tlv(body)?;
        if oid_tag != 0x06 {
            return None;
        }
        if oid == OID_RSA_PSS {
            let pos = params
                .windows(OID_SHA2_PREFIX.len())
                .position(|w| w == OID_SHA2_PREFIX)?;
            return match params.get(pos + OID_SHA2_PREFIX.len())? {
                1 => Some(RsaPssSha256),
                2 => Some(RsaPssSha384),
                3 => Some(RsaPssSha512),
                _ => None,
            };
        }
        [
            EcdsaSha256,
            EcdsaSha384,
            EcdsaSha512,
            RsaPkcs1Sha256,
            RsaPkcs1Sha384,
            RsaPkcs1Sha512,
        ]
        .into_iter()
        .find(|s| {
            s.algorithm_identifier()
                .and_then(|a| {
                    read_tlv(&a)
                        .and_then(|(_, b, _)| read_tlv(b))
                        .map(|(_, o, _)| o.to_vec())
                })
                .is_some_and(|o| o == oid)
        })
    }
}

/// One DER TLV: (tag, value, rest). Definite lengths up to 4 bytes.
pub(crate) fn read_tlv(d: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *d.first()?;
    let first = *d.get(1)? as usize;
    let (len, hdr) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *d.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = hdr.checked_add(len)?;
    Some((tag, d.get(hdr..end)?, d.get(end..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_identifiers_round_trip() {
        use SignScheme::*;
        for s in [
            EcdsaSha256,
            EcdsaSha384,
            EcdsaSha512,
            RsaPkcs1Sha256,
            RsaPkcs1Sha384,
            RsaPkcs1Sha512,
            RsaPssSha256,
            RsaPssSha384,
            RsaPssSha512,
        ] {
            let der = s.algorithm_identifier().unwrap();
            assert_eq!(
                SignScheme::from_algorithm_identifier(&der),
                Some(s),
                "{s:?}"
            );
        }
        // sha256WithRSAEncryption without the NULL parameter.
        let absent = [
            0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b,
        ];
        assert_eq!(
            SignScheme::from_algorithm_identifier(&absent),
            Some(RsaPkcs1Sha256)
        );
        assert_eq!(
            SignScheme::from_algorithm_identifier(&[0x30, 0x05, 1]),
            None
        );
        assert_eq!(SignScheme::from_algorithm_identifier(&[]), None);
    }
}
