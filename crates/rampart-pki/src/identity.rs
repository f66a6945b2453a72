//! Does an IKE identity name an end-entity certificate?

use std::net::IpAddr;

use x509_parser::extensions::GeneralName;

use crate::dn::{dn_eq, dn_to_string};
use crate::PkiError;

/// An IKE identity as the peer sent it (or as configured), by RFC 7296 ID type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IkeId<'a> {
    Ip(IpAddr),
    Fqdn(&'a str),
    /// ID_RFC822_ADDR
    Email(&'a str),
    /// ID_DER_ASN1_DN: the DER `Name`.
    Dn(&'a [u8]),
}

impl std::fmt::Display for IkeId<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IkeId::Ip(a) => write!(f, "ip:{a}"),
            IkeId::Fqdn(s) => write!(f, "fqdn:{s}"),
            IkeId::Email(s) => write!(f, "email:{s}"),
            IkeId::Dn(d) => write!(f, "dn:{}", dn_to_string(d)),
        }
    }
}

/// Checks that `id` names the DER end-entity certificate `cert`: an IP address must be an
/// iPAddress SAN, an FQDN a dNSName SAN and an RFC 822 address an rfc822Name SAN (both
/// case-insensitive, no wildcards); a DN must equal the subject (or a directoryName SAN).
pub fn check_identity(cert: &[u8], id: IkeId<'_>) -> Result<(), PkiError> {
    let (_, c) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| PkiError::Malformed(format!("certificate: {e}")))?;
    let sans: Vec<GeneralName<'_>> = c
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|e| e.value.general_names.clone())
        .unwrap_or_default();
    let ok = match id {
        IkeId::Dn(d) => {
            dn_eq(c.subject().as_raw(), d)
                || sans
                    .iter()
                    .any(|g| matches!(g, GeneralName::DirectoryName(n) if dn_eq(n.as_raw(), d)))
        }
        IkeId::Ip(a) => sans.iter().any(|g| match (g, a) {
            (GeneralName::IPAddress(b), IpAddr::V4(v4)) => *b == v4.octets(),
            (GeneralName::IPAddress(b), IpAddr::V6(v6)) => *b == v6.octets(),
            _ => false,
        }),
        IkeId::Fqdn(s) => sans
            .iter()
            .any(|g| matches!(g, GeneralName::DNSName(n) if n.eq_ignore_ascii_case(s))),
        IkeId::Email(s) => sans
            .iter()
            .any(|g| matches!(g, GeneralName::RFC822Name(n) if n.eq_ignore_ascii_case(s))),
    };
    if ok {
        return Ok(());
    }
    let sans = san_strings(&sans);
    Err(PkiError::IdentityMismatch {
        id: id.to_string(),
        subject: c.subject().to_string(),
        sans: if sans.is_empty() {
            "none".into()
        } else {
            sans.join(", ")
        },
    })
}

/// SANs as `ip:..`, `dns:..`, `email:..` (others in x509-parser's notation).
pub(crate) fn san_strings(sans: &[GeneralName<'_>]) -> Vec<String> {
    sans.iter()
        .map(|g| match g {
            GeneralName::IPAddress(b) if b.len() == 4 => {
                format!(
                    "ip:{}",
                    IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default())
                )
            }
            GeneralName::IPAddress(b) if b.len() == 16 => {
                format!(
                    "ip:{}",
                    IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default())
                )
            }
            GeneralName::DNSName(n) => format!("dns:{n}"),
            GeneralName::RFC822Name(n) => format!("email:{n}"),
            other => format!("{other}"),
        })
        .collect()
}
