//! Our own certificate chain and key, and the per-peer certificate configuration.

use std::path::Path;
use std::time::Instant;

use crate::{PkiError, PrivateKey, TrustStore};

/// Our end-entity certificate, the intermediates to send with it, and its private key.
#[derive(Debug, Clone, PartialEq)]
pub struct Credentials {
    /// DER certificates: the end entity first, then intermediates (sent as CERT payloads).
    pub chain: Vec<Vec<u8>>,
    pub key: PrivateKey,
}

impl Credentials {
    /// Checks that the key belongs to the first certificate.
    pub fn new(chain: Vec<Vec<u8>>, key: PrivateKey) -> Result<Credentials, PkiError> {
        let ee = chain
            .first()
            .ok_or_else(|| PkiError::Malformed("no certificate".into()))?;
        let (_, c) = x509_parser::parse_x509_certificate(ee)
            .map_err(|e| PkiError::Malformed(format!("certificate: {e}")))?;
        if c.public_key().subject_public_key.data.as_ref() != key.public_key() {
            return Err(PkiError::Malformed(format!(
                "the private key does not belong to certificate \"{}\"",
                c.subject()
            )));
        }
        Ok(Credentials { chain, key })
    }

    /// Loads a PEM certificate file (end entity first, optionally followed by intermediates)
    /// and a PEM private key file.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Credentials, PkiError> {
        let text = std::fs::read(cert_file).map_err(|e| PkiError::file(cert_file, e))?;
        let chain =
            crate::pem_blocks(&text, &["CERTIFICATE"]).map_err(|e| PkiError::file(cert_file, e))?;
        let key_text = std::fs::read(key_file).map_err(|e| PkiError::file(key_file, e))?;
        let key = PrivateKey::from_pem(&key_text).map_err(|e| PkiError::file(key_file, e))?;
        Credentials::new(chain, key).map_err(|e| PkiError::file(cert_file, e))
    }

    /// The end-entity certificate.
    pub fn end_entity(&self) -> &[u8] {
        &self.chain[0]
    }

    /// The DER subject of the end-entity certificate.
    pub fn subject_der(&self) -> Vec<u8> {
        x509_parser::parse_x509_certificate(self.end_entity())
            .map(|(_, c)| c.subject().as_raw().to_vec())
            .unwrap_or_default()
    }
}

/// Certificate authentication of one peer: what we prove ourselves with and what the peer's
/// chain must lead to. Not `PartialEq`: the wall-clock anchor is no part of the material, so
/// compare with [`CertAuth::same_material`].
#[derive(Debug, Clone)]
pub struct CertAuth {
    pub credentials: Credentials,
    pub trust: TrustStore,
    /// Sign RSA with RSASSA-PSS (RFC 7427) instead of PKCS#1 v1.5.
    pub rsa_pss: bool,
    /// Maps the engine's `Instant`s to wall-clock time for validity and CRL checks.
    pub clock: WallClock,
}

/// A wall-clock anchor: the monotonic instant `at` was unix time `unix` (seconds). Sans-IO
/// engines only see `Instant`s; certificate validity needs the calendar. The anchor is taken
/// where the material is loaded (configuration loading reads files and the clock anyway); a
/// test sets it to any time it wants to validate at.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    pub at: Instant,
    pub unix: u64,
}

impl CertAuth {
    /// Same certificate chain, private key, CAs and CRLs (by their DER bytes; the key by its
    /// public half) and the same RSA signature scheme. The clock anchor does not count.
    pub fn same_material(&self, other: &CertAuth) -> bool {
        self.credentials == other.credentials
            && self.trust == other.trust
            && self.rsa_pss == other.rsa_pss
    }
}

impl WallClock {
    /// The system clock, now.
    pub fn system() -> WallClock {
        WallClock {
            at: Instant::now(),
            unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        }
    }

    /// Unix seconds at `now`.
    pub fn unix_at(&self, now: Instant) -> u64 {
        if now >= self.at {
            self.unix + now.duration_since(self.at).as_secs()
        } else {
            self.unix
                .saturating_sub(self.at.duration_since(now).as_secs())
        }
    }
}
