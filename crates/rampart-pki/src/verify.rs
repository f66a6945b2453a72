//! Chain validation against configured CAs and CRLs (rustls-webpki).

use std::path::Path;

use aws_lc_rs::digest;
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, KeyPurposeIdIter, OwnedCertRevocationList,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};

use crate::PkiError;

/// Signature algorithms accepted inside certificate chains.
static ALGS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::aws_lc_rs::ECDSA_P256_SHA256,
    webpki::aws_lc_rs::ECDSA_P256_SHA384,
    webpki::aws_lc_rs::ECDSA_P384_SHA256,
    webpki::aws_lc_rs::ECDSA_P384_SHA384,
    webpki::aws_lc_rs::ECDSA_P384_SHA512,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA384,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA512,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// IKE does not require any extended key usage: every EKU (or none) is accepted.
struct AnyEku;

impl webpki::ExtendedKeyUsageValidator for AnyEku {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        for eku in iter {
            eku?;
        }
        Ok(())
    }
}

/// The CAs a peer's chain must lead to, and the CRLs consulted on the way.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    cas: Vec<Vec<u8>>,
    crls: Vec<Vec<u8>>,
    parsed_crls: Vec<OwnedCertRevocationList>,
}

impl PartialEq for TrustStore {
    fn eq(&self, other: &Self) -> bool {
        self.cas == other.cas && self.crls == other.crls
    }
}

/// What validation learnt about the end-entity certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub serial: String,
}

impl TrustStore {
    /// A store from DER CA certificates and DER CRLs. Fails on a malformed CA or CRL.
    pub fn new(cas: Vec<Vec<u8>>, crls: Vec<Vec<u8>>) -> Result<TrustStore, PkiError> {
        for ca in &cas {
            let der = CertificateDer::from(ca.as_slice());
            webpki::anchor_from_trusted_cert(&der)
                .map_err(|e| PkiError::Malformed(format!("CA certificate: {e}")))?;
        }
        let parsed_crls = crls
            .iter()
            .map(|c| {
                OwnedCertRevocationList::from_der(c)
                    .map_err(|e| PkiError::Malformed(format!("CRL: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustStore {
            cas,
            crls,
            parsed_crls,
        })
    }

    /// Loads CA certificate files (PEM, any number of certificates each) and an optional CRL
    /// file (PEM `X509 CRL` blocks, or one DER CRL).
    pub fn load(ca_files: &[&Path], crl_file: Option<&Path>) -> Result<TrustStore, PkiError> {
        let mut cas = Vec::new();
        for f in ca_files {
            let text = std::fs::read(f).map_err(|e| PkiError::file(f, e))?;
            let certs =
                crate::pem_blocks(&text, &["CERTIFICATE"]).map_err(|e| PkiError::file(f, e))?;
            if certs.is_empty() {
                return Err(PkiError::file(f, "no CERTIFICATE in the file"));
            }
            cas.extend(certs);
        }
        let mut crls = Vec::new();
        if let Some(f) = crl_file {
            let data = std::fs::read(f).map_err(|e| PkiError::file(f, e))?;
            if data.first() == Some(&0x30) {
                crls.push(data);
            } else {
                crls = crate::pem_blocks(&data, &["X509 CRL"]).map_err(|e| PkiError::file(f, e))?;
            }
        }
        let n = (cas.len(), crls.len());
        let store = TrustStore::new(cas, crls)
            .map_err(|e| PkiError::file(ca_files.first().copied().unwrap_or(Path::new("")), e))?;
        debug_assert_eq!((store.cas.len(), store.crls.len()), n);
        Ok(store)
    }

    /// The DER CA certificates.
    pub fn cas(&self) -> &[Vec<u8>] {
        &self.cas
    }

    /// CERTREQ contents (encoding 4): SHA-1 of each CA's SubjectPublicKeyInfo, concatenated.
    pub fn certreq_hashes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(20 * self.cas.len());
        for ca in &self.cas {
            if let Ok((_, c)) = x509_parser::parse_x509_certificate(ca) {
                let h = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, c.public_key().raw);
                out.extend_from_slice(h.as_ref());
            }
        }
        out
    }

    /// Validates `chain` (end entity first, then intermediates in any order) at `now_unix`
    /// (seconds since the epoch): a path to one of our CAs, every certificate valid at that
    /// time, signatures, basic constraints, the digitalSignature key usage when the
    /// certificate restricts usage, and revocation by the CRLs of the issuers that have one.
    pub fn verify(&self, chain: &[&[u8]], now_unix: u64) -> Result<CertInfo, PkiError> {
        let Some(ee) = chain.first() else {
            return Err(PkiError::Malformed("no certificate".into()));
        };
        let (_, parsed) = x509_parser::parse_x509_certificate(ee)
            .map_err(|e| PkiError::Malformed(format!("certificate: {e}")))?;
        let info = CertInfo {
            subject: parsed.subject().to_string(),
            issuer: parsed.issuer().to_string(),
            serial: parsed.raw_serial_as_string(),
        };
        let ee_der = CertificateDer::from(*ee);
        let cert = EndEntityCert::try_from(&ee_der).map_err(|e| PkiError::Invalid {
            subject: info.subject.clone(),
            reason: e.to_string(),
        })?;
        let cas: Vec<CertificateDer<'_>> = self
            .cas
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        let anchors = cas
            .iter()
            .filter_map(|c| webpki::anchor_from_trusted_cert(c).ok())
            .collect::<Vec<_>>();
        let intermediates: Vec<CertificateDer<'_>> = chain[1..]
            .iter()
            .map(|c| CertificateDer::from(*c))
            .collect();
        let crls: Vec<CertRevocationList<'_>> = self
            .parsed_crls
            .iter()
            .map(|c| CertRevocationList::from(c.clone()))
            .collect();
        let crl_refs: Vec<&CertRevocationList<'_>> = crls.iter().collect();
        let revocation = RevocationOptionsBuilder::new(&crl_refs).ok().map(|b| {
            b.with_depth(RevocationCheckDepth::Chain)
                .with_status_policy(UnknownStatusPolicy::Allow)
                .with_expiration_policy(ExpirationPolicy::Ignore)
                .build()
        });
        let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(now_unix));
        let result = cert.verify_for_usage(
            ALGS,
            &anchors,
            &intermediates,
            time,
            AnyEku,
            revocation,
            None,
        );
        if let Err(e) = result {
            return Err(match e {
                webpki::Error::CertExpired { not_after, .. } => PkiError::Expired {
                    subject: info.subject,
                    not_after: not_after.as_secs(),
                },
                webpki::Error::CertNotValidYet { not_before, .. } => PkiError::NotYetValid {
                    subject: info.subject,
                    not_before: not_before.as_secs(),
                },
                webpki::Error::UnknownIssuer => PkiError::UnknownCa {
                    subject: info.subject,
                    issuer: info.issuer,
                },
                webpki::Error::CertRevoked => PkiError::Revoked {
                    subject: info.subject,
                    serial: info.serial,
                },
                webpki::Error::InvalidSignatureForPublicKey => PkiError::BadSignature(format!(
                    "certificate \"{}\" is not signed by its issuer's key",
                    info.subject
                )),
                other => PkiError::Invalid {
                    subject: info.subject,
                    reason: other.to_string(),
                },
            });
        }
        if let Ok(Some(ku)) = parsed.key_usage() {
            if !ku.value.digital_signature() && !ku.value.non_repudiation() {
                return Err(PkiError::Invalid {
                    subject: info.subject,
                    reason: "key usage does not allow digitalSignature".into(),
                });
            }
        }
        Ok(info)
    }
}
