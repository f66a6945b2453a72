//! Typed PKI errors. Their `Display` texts are the log lines an operator reads.

/// Why a certificate, key, signature or identity was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PkiError {
    #[error("certificate \"{subject}\" expired at {not_after} (unix time)")]
    Expired { subject: String, not_after: u64 },
    #[error("certificate \"{subject}\" is not valid before {not_before} (unix time)")]
    NotYetValid { subject: String, not_before: u64 },
    #[error("certificate \"{subject}\" was issued by \"{issuer}\", which no configured CA vouches for (unknown CA)")]
    UnknownCa { subject: String, issuer: String },
    #[error("certificate \"{subject}\" (serial {serial}) is revoked by a CRL")]
    Revoked { subject: String, serial: String },
    #[error("identity {id} does not match certificate \"{subject}\" (subject alternative names: {sans})")]
    IdentityMismatch {
        id: String,
        subject: String,
        sans: String,
    },
    #[error("bad signature: {0}")]
    BadSignature(String),
    #[error("certificate \"{subject}\" rejected: {reason}")]
    Invalid { subject: String, reason: String },
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("{path}: {message}")]
    File { path: String, message: String },
}

impl PkiError {
    pub(crate) fn file(path: &std::path::Path, message: impl std::fmt::Display) -> PkiError {
        PkiError::File {
            path: path.display().to_string(),
            message: message.to_string(),
        }
    }
}
