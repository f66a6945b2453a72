//! X.509 for IKEv2 and the `rampart pki` CA.
//!
//! - [`Credentials`]: our end-entity certificate (plus intermediates) and its private key, loaded
//!   from PEM files.
//! - [`TrustStore`]: the CA certificates and CRLs a peer's chain is validated against
//!   ([`TrustStore::verify`], rustls-webpki underneath; the wall-clock time is passed in).
//! - [`check_identity`]: does an IKE identity (IP, FQDN, RFC 822, DN) name the end-entity cert?
//! - [`PrivateKey::sign`] / [`verify_signature`]: ECDSA P-256/P-384 and RSA (PKCS#1 v1.5, PSS)
//!   via aws-lc-rs, with the RFC 7427 AlgorithmIdentifier encodings in [`SignScheme`].
//! - [`ca`]: a small file-based CA (`rampart pki`), layout in `docs/pki.md`.
//!
//! Every rejection is a typed [`PkiError`] whose `Display` is the log line.

pub mod ca;
mod cert;
mod dn;
mod error;
mod identity;
mod key;
mod scheme;
mod verify;

pub use cert::{CertAuth, Credentials, WallClock};
pub use dn::{dn_eq, dn_to_string, parse_dn};
pub use error::PkiError;
pub use identity::{check_identity, IkeId};
pub use key::{verify_signature, KeyKind, PrivateKey};
pub use scheme::{hash_alg, SignScheme};
pub use verify::{CertInfo, TrustStore};

/// Reads all PEM blocks with one of the `tags` from `text`.
pub(crate) fn pem_blocks(text: &[u8], tags: &[&str]) -> Result<Vec<Vec<u8>>, PkiError> {
    let blocks = pem::parse_many(text).map_err(|e| PkiError::Malformed(format!("PEM: {e}")))?;
    Ok(blocks
        .into_iter()
        .filter(|b| tags.contains(&b.tag()))
        .map(|b| b.into_contents())
        .collect())
}
