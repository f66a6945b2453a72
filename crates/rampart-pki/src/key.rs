//! Private keys (sign) and certificate public keys (verify) via aws-lc-rs.

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, KeyPair, RsaKeyPair};
use x509_parser::prelude::SubjectPublicKeyInfo;

use crate::{PkiError, SignScheme};

/// What kind of key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    EcdsaP256,
    EcdsaP384,
    /// Modulus length in bits.
    Rsa(usize),
}

enum Inner {
    Ec {
        kind: KeyKind,
        der: EcdsaKeyPair,
        fixed: EcdsaKeyPair,
    },
    Rsa(RsaKeyPair),
}

/// A signing key (PKCS#8, SEC1 or PKCS#1). Cheap to clone; `Debug` never shows key material.
#[derive(Clone)]
pub struct PrivateKey {
    inner: Arc<Inner>,
    public: Vec<u8>,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({:?}, <redacted>)", self.kind())
    }
}

impl PartialEq for PrivateKey {
    fn eq(&self, other: &Self) -> bool {
        self.public == other.public
    }
}

impl PrivateKey {
    /// Parses a DER private key: PKCS#8 (any of the kinds), SEC1 EC or PKCS#1 RSA.
    pub fn from_der(der: &[u8]) -> Result<PrivateKey, PkiError> {
        for (kind, a, f) in [
            (
                KeyKind::EcdsaP256,
                &sig::ECDSA_P256_SHA256_ASN1_SIGNING,
                &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            ),
            (
                KeyKind::EcdsaP384,
                &sig::ECDSA_P384_SHA384_ASN1_SIGNING,
                &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
            ),
        ] {
            let pair = |alg| {
                EcdsaKeyPair::from_pkcs8(alg, der)
                    .or_else(|_| EcdsaKeyPair::from_private_key_der(alg, der))
            };
            if let (Ok(d), Ok(x)) = (pair(a), pair(f)) {
                let public = d.public_key().as_ref().to_vec();
                return Ok(PrivateKey {
                    inner: Arc::new(Inner::Ec {
                        kind,
                        der: d,
                        fixed: x,
                    }),
                    public,
                });
            }
        }
        let rsa = RsaKeyPair::from_pkcs8(der)
            .or_else(|_| RsaKeyPair::from_der(der))
            .map_err(|e| {
                PkiError::Unsupported(format!("private key is not ECDSA P-256/P-384 or RSA ({e})"))
            })?;
        let public = rsa.public_key().as_ref().to_vec();
        Ok(PrivateKey {
            inner: Arc::new(Inner::Rsa(rsa)),
            public,
        })
    }

    /// Parses the first private key of a PEM text.
    pub fn from_pem(text: &[u8]) -> Result<PrivateKey, PkiError> {
        let blocks =
            crate::pem_blocks(text, &["PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"])?;
        let der = blocks
            .first()
            .ok_or_else(|| PkiError::Malformed("no PRIVATE KEY block".into()))?;
        PrivateKey::from_der(der)
    }

    pub fn kind(&self) -> KeyKind {
        match &*self.inner {
            Inner::Ec { kind, .. } => *kind,
            Inner::Rsa(k) => KeyKind::Rsa(k.public_modulus_len() * 8),
        }
    }

    /// The public key as in a certificate's subjectPublicKey BIT STRING (EC point or PKCS#1
    /// RSAPublicKey).
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// The scheme RFC 7427 signing uses with this key when the peer accepts `hashes`
    /// (SIGNATURE_HASH_ALGORITHMS ids; empty = unknown): ECDSA with the curve's hash, RSA with
    /// SHA-256 and PSS or PKCS#1 v1.5 padding.
    pub fn preferred_scheme(&self, rsa_pss: bool, hashes: &[u16]) -> SignScheme {
        use crate::hash_alg::*;
        let ok = |h| hashes.is_empty() || hashes.contains(&h);
        match self.kind() {
            KeyKind::EcdsaP256 => SignScheme::EcdsaSha256,
            KeyKind::EcdsaP384 => SignScheme::EcdsaSha384,
            KeyKind::Rsa(_) => {
                let h = [SHA2_256, SHA2_384, SHA2_512]
                    .into_iter()
                    .find(|h| ok(*h))
                    .unwrap_or(SHA2_256);
                match (rsa_pss, h) {
                    (true, SHA2_384) => SignScheme::RsaPssSha384,
                    (true, SHA2_512) => SignScheme::RsaPssSha512,
                    (true, _) => SignScheme::RsaPssSha256,
                    (false, SHA2_384) => SignScheme::RsaPkcs1Sha384,
                    (false, SHA2_512) => SignScheme::RsaPkcs1Sha512,
                    (false, _) => SignScheme::RsaPkcs1Sha256,
                }
            }
        }
    }

    /// Signs `msg`. ECDSA signatures are DER (RFC 7427) unless `fixed` (r||s, RFC 4754 for
    /// auth methods 9-11); the ECDSA hash is the curve's. The ECDSA nonce comes from aws-lc's
    /// own generator.
    pub fn sign(&self, scheme: SignScheme, fixed: bool, msg: &[u8]) -> Result<Vec<u8>, PkiError> {
        let rng = SystemRandom::new();
        let err = |what: &str| PkiError::Unsupported(format!("signing with {scheme:?}: {what}"));
        match &*self.inner {
            Inner::Ec {
                kind,
                der,
                fixed: x,
                ..
            } => {
                let want = match kind {
                    KeyKind::EcdsaP256 => SignScheme::EcdsaSha256,
                    _ => SignScheme::EcdsaSha384,
                };
                if scheme != want {
                    return Err(err("an ECDSA key signs with its curve's hash"));
                }
                let k = if fixed { x } else { der };
                k.sign(&rng, msg)
                    .map(|s| s.as_ref().to_vec())
                    .map_err(|_| err("failed"))
            }
            Inner::Rsa(k) => {
                let enc: &'static dyn sig::RsaEncoding = match scheme {
                    SignScheme::RsaPkcs1Sha256 => &sig::RSA_PKCS1_SHA256,
                    SignScheme::RsaPkcs1Sha384 => &sig::RSA_PKCS1_SHA384,
                    SignScheme::RsaPkcs1Sha512 => &sig::RSA_PKCS1_SHA512,
                    SignScheme::RsaPssSha256 => &sig::RSA_PSS_SHA256,
                    SignScheme::RsaPssSha384 => &sig::RSA_PSS_SHA384,
                    SignScheme::RsaPssSha512 => &sig::RSA_PSS_SHA512,
                    _ => return Err(err("not an RSA scheme this key can sign with")),
                };
                let mut out = vec![0; k.public_modulus_len()];
                k.sign(enc, &rng, msg, &mut out)
                    .map_err(|_| err("failed"))?;
                Ok(out)
            }
        }
    }
}

/// Verifies `signature` over `msg` with the public key of the DER certificate `cert`.
/// ECDSA signatures are DER unless `fixed` (r||s).
pub fn verify_signature(
    cert: &[u8],
    scheme: SignScheme,
    fixed: bool,
    msg: &[u8],
    signature: &[u8],
) -> Result<(), PkiError> {
    let (_, c) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| PkiError::Malformed(format!("certificate: {e}")))?;
    verify_with_spki(c.public_key(), scheme, fixed, msg, signature)
}

/// The curve of an EC SubjectPublicKeyInfo, from its parameters OID.
fn ec_curve(spki: &SubjectPublicKeyInfo<'_>) -> Option<KeyKind> {
    let p = spki.algorithm.parameters.as_ref()?;
    let oid = p.as_oid().ok()?;
    match oid.to_id_string().as_str() {
        "1.2.840.10045.3.1.7" => Some(KeyKind::EcdsaP256),
        "1.3.132.0.34" => Some(KeyKind::EcdsaP384),
        _ => None,
    }
}

pub(crate) fn verify_with_spki(
    spki: &SubjectPublicKeyInfo<'_>,
    scheme: SignScheme,
    fixed: bool,
    msg: &[u8],
    signature: &[u8],
) -> Result<(), PkiError> {
    use SignScheme::*;
    let key = &spki.subject_public_key.data;
    let alg = spki.algorithm.algorithm.to_id_string();
    let alg: &'static dyn sig::VerificationAlgorithm = match (alg.as_str(), scheme) {
        ("1.2.840.10045.2.1", s) => {
            let curve = ec_curve(spki)
                .ok_or_else(|| PkiError::Unsupported("EC curve other than P-256/P-384".into()))?;
            match (curve, s, fixed) {
                (KeyKind::EcdsaP256, EcdsaSha256, false) => &sig::ECDSA_P256_SHA256_ASN1,
                (KeyKind::EcdsaP256, EcdsaSha384, false) => &sig::ECDSA_P256_SHA384_ASN1,
                (KeyKind::EcdsaP256, EcdsaSha512, false) => &sig::ECDSA_P256_SHA512_ASN1,
                (KeyKind::EcdsaP384, EcdsaSha256, false) => &sig::ECDSA_P384_SHA256_ASN1,
                (KeyKind::EcdsaP384, EcdsaSha384, false) => &sig::ECDSA_P384_SHA384_ASN1,
                (KeyKind::EcdsaP384, EcdsaSha512, false) => &sig::ECDSA_P384_SHA512_ASN1,
                (KeyKind::EcdsaP256, EcdsaSha256, true) => &sig::ECDSA_P256_SHA256_FIXED,
                (KeyKind::EcdsaP384, EcdsaSha384, true) => &sig::ECDSA_P384_SHA384_FIXED,
                _ => {
                    return Err(PkiError::BadSignature(format!(
                        "scheme {scheme:?} does not fit the peer's {curve:?} key"
                    )))
                }
            }
        }
        ("1.2.840.113549.1.1.1", RsaPkcs1Sha1) => {
            &sig::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY
        }
        ("1.2.840.113549.1.1.1", RsaPkcs1Sha256) => &sig::RSA_PKCS1_2048_8192_SHA256,
        ("1.2.840.113549.1.1.1", RsaPkcs1Sha384) => &sig::RSA_PKCS1_2048_8192_SHA384,
        ("1.2.840.113549.1.1.1", RsaPkcs1Sha512) => &sig::RSA_PKCS1_2048_8192_SHA512,
        ("1.2.840.113549.1.1.1", RsaPssSha256) => &sig::RSA_PSS_2048_8192_SHA256,
        ("1.2.840.113549.1.1.1", RsaPssSha384) => &sig::RSA_PSS_2048_8192_SHA384,
        ("1.2.840.113549.1.1.1", RsaPssSha512) => &sig::RSA_PSS_2048_8192_SHA512,
        (a, s) => {
            return Err(PkiError::BadSignature(format!(
                "scheme {s:?} does not fit the peer's key (algorithm {a})"
            )))
        }
    };
    sig::UnparsedPublicKey::new(alg, key)
        .verify(msg, signature)
        .map_err(|_| {
            PkiError::BadSignature(format!(
                "{scheme:?} signature does not verify with the peer's certificate key"
            ))
        })
}
