//! IKE_AUTH authentication payloads: PSK (method 2) and certificates (RFC 7427 digital
//! signatures, method 14, plus ECDSA methods 9/10 and RSA method 1 for older peers), CERT and
//! CERTREQ payloads, and the SIGNATURE_HASH_ALGORITHMS notify.
//!
//! Every rejection is returned as a sentence that the caller logs.

use std::net::IpAddr;
use std::time::Instant;

use crate::policy::{Identity, PeerAuth, PeerPolicy};
use rampart_crypto::{prf, Prf};
use rampart_pki::{
    check_identity, hash_alg, verify_signature, IkeId, SignScheme, TrustStore, WallClock,
};
use rampart_wire::ike::{auth_method, id_type, notify as n, parse, Identification, Payload};

use crate::keys::{self, ct_eq};
use crate::msg::{self, notify};

/// CERT encoding "X.509 Certificate - Signature" (RFC 7296 3.6).
pub(crate) const CERT_X509_SIGNATURE: u8 = 4;
/// RFC 4754 ECDSA methods.
const ECDSA_SHA256_P256: u8 = 9;
const ECDSA_SHA384_P384: u8 = 10;

/// The octets to authenticate, from the point of view of the side that signs (RFC 7296 2.15).
pub(crate) struct Signed<'a> {
    pub prf: Prf,
    /// The signer's own IKE_SA_INIT message.
    pub message: &'a [u8],
    /// The other side's nonce.
    pub nonce: &'a [u8],
    /// The signer's SK_pi / SK_pr.
    pub sk_p: &'a [u8],
}

impl Signed<'_> {
    fn octets(&self, id: &Identification) -> Vec<u8> {
        let mut maced = vec![0u8; self.prf.output_len()];
        prf(self.prf, self.sk_p, &[&keys::id_body(id)], &mut maced);
        let mut out = Vec::with_capacity(self.message.len() + self.nonce.len() + maced.len());
        out.extend_from_slice(self.message);
        out.extend_from_slice(self.nonce);
        out.extend_from_slice(&maced);
        out
    }
}

/// SIGNATURE_HASH_ALGORITHMS for IKE_SA_INIT: SHA2-256/384/512.
pub(crate) fn hash_notify() -> Payload {
    let mut data = Vec::new();
    for h in [hash_alg::SHA2_256, hash_alg::SHA2_384, hash_alg::SHA2_512] {
        data.extend_from_slice(&h.to_be_bytes());
    }
    notify(n::SIGNATURE_HASH_ALGORITHMS, data)
}

/// The hash algorithms the peer announced in its IKE_SA_INIT message (`init`, as received);
/// empty when it sent none (it then does not do RFC 7427).
pub(crate) fn peer_hashes(init: &[u8]) -> Vec<u16> {
    let Ok(m) = parse(init) else {
        return Vec::new();
    };
    msg::find_notify(&m.payloads, n::SIGNATURE_HASH_ALGORITHMS)
        .map(|nt| {
            nt.data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect()
        })
        .unwrap_or_default()
}

/// CERTREQ naming our CAs (SHA-1 of each SubjectPublicKeyInfo), for certificate peers.
pub(crate) fn certreq(pc: &PeerPolicy) -> Option<Payload> {
    match &pc.auth {
        PeerAuth::Cert(c) => Some(Payload::CertReq {
            encoding: CERT_X509_SIGNATURE,
            data: c.trust.certreq_hashes(),
        }),
        PeerAuth::Verify(v) => Some(Payload::CertReq {
            encoding: CERT_X509_SIGNATURE,
            data: v.trust.certreq_hashes(),
        }),
        PeerAuth::Psk => None,
    }
}

/// Our ID payload. With certificates and a DN identity equal to our certificate's subject, the
/// subject's exact DER is sent (peers that compare DNs bytewise then agree).
pub(crate) fn local_identification(pc: &PeerPolicy) -> Identification {
    let id = msg::identification(&pc.local_id);
    if let (PeerAuth::Cert(c), Identity::Dn(want)) = (&pc.auth, &pc.local_id) {
        let subject = c.credentials.subject_der();
        if rampart_pki::dn_eq(&subject, want) {
            return Identification {
                kind: id_type::DER_ASN1_DN,
                data: subject,
            };
        }
    }
    id
}

/// CERT payloads (end entity first, then intermediates) for certificate peers.
pub(crate) fn cert_payloads(pc: &PeerPolicy) -> Vec<Payload> {
    match &pc.auth {
        PeerAuth::Cert(c) => c
            .credentials
            .chain
            .iter()
            .map(|der| Payload::Cert {
                encoding: CERT_X509_SIGNATURE,
                data: der.clone(),
            })
            .collect(),
        PeerAuth::Psk | PeerAuth::Verify(_) => Vec::new(),
    }
}

/// Our AUTH payload. `peer_hashes` are the peer's SIGNATURE_HASH_ALGORITHMS (empty: it does
/// not support RFC 7427, so ECDSA keys use methods 9/10).
pub(crate) fn our_auth(
    pc: &PeerPolicy,
    s: &Signed<'_>,
    id: &Identification,
    peer_hashes: &[u16],
) -> Result<Payload, String> {
    let c = match &pc.auth {
        PeerAuth::Psk => {
            return Ok(Payload::Auth {
                method: auth_method::SHARED_KEY_MIC,
                data: keys::psk_auth(s.prf, &pc.psk, s.message, s.nonce, s.sk_p, id),
            })
        }
        PeerAuth::Cert(c) => c,
        PeerAuth::Verify(_) => {
            return Err("no certificate of our own (CA only): usable only with EAP".into())
        }
    };
    let key = &c.credentials.key;
    let scheme = key.preferred_scheme(c.rsa_pss, peer_hashes);
    let octets = s.octets(id);
    let legacy = match scheme {
        _ if !peer_hashes.is_empty() => None,
        SignScheme::EcdsaSha256 => Some(ECDSA_SHA256_P256),
        SignScheme::EcdsaSha384 => Some(ECDSA_SHA384_P384),
        _ => None,
    };
    if let Some(method) = legacy {
        let sig = key.sign(scheme, true, &octets).map_err(|e| e.to_string())?;
        return Ok(Payload::Auth { method, data: sig });
    }
    let alg = scheme
        .algorithm_identifier()
        .ok_or_else(|| format!("{scheme:?} has no RFC 7427 encoding"))?;
    let sig = key
        .sign(scheme, false, &octets)
        .map_err(|e| e.to_string())?;
    let mut data = Vec::with_capacity(1 + alg.len() + sig.len());
    data.push(alg.len() as u8);
    data.extend_from_slice(&alg);
    data.extend_from_slice(&sig);
    Ok(Payload::Auth {
        method: auth_method::DIGITAL_SIGNATURE,
        data,
    })
}

/// An ID payload as an identity the certificate must carry.
fn ike_id(id: &Identification) -> Option<IkeId<'_>> {
    Some(match id.kind {
        id_type::IPV4_ADDR => {
            IkeId::Ip(IpAddr::from(<[u8; 4]>::try_from(id.data.as_slice()).ok()?))
        }
        id_type::IPV6_ADDR => {
            IkeId::Ip(IpAddr::from(<[u8; 16]>::try_from(id.data.as_slice()).ok()?))
        }
        id_type::FQDN => IkeId::Fqdn(std::str::from_utf8(&id.data).ok()?),
        id_type::RFC822_ADDR => IkeId::Email(std::str::from_utf8(&id.data).ok()?),
        id_type::DER_ASN1_DN => IkeId::Dn(&id.data),
        _ => return None,
    })
}

/// Authenticates the peer: its ID must be the configured remote identity, then either the PSK
/// MAC or (certificates) a chain valid at `now` to one of our CAs, not revoked, naming the ID,
/// whose key verifies the AUTH signature. `Err` is the reason, for the log.
pub(crate) fn verify_peer(
    pc: &PeerPolicy,
    s: &Signed<'_>,
    id: &Identification,
    p: &[Payload],
    now: Instant,
) -> Result<(), String> {
    if !msg::id_matches(&pc.remote_id, id) {
        return Err(format!(
            "peer identity (type {}) is not the configured remote_id {}",
            id.kind,
            msg::identity_string(&pc.remote_id)
        ));
    }
    let Some((method, data)) = msg::auth(p) else {
        return Err("no AUTH payload".into());
    };
    match &pc.auth {
        PeerAuth::Psk => {
            if method != auth_method::SHARED_KEY_MIC {
                return Err(format!(
                    "peer used authentication method {method}, but auth = \"psk\""
                ));
            }
            let want = keys::psk_auth(s.prf, &pc.psk, s.message, s.nonce, s.sk_p, id);
            if ct_eq(&want, data) {
                Ok(())
            } else {
                Err("pre-shared key mismatch".into())
            }
        }
        PeerAuth::Cert(c) => verify_cert_auth(&c.trust, &c.clock, s, id, p, method, data, now),
        PeerAuth::Verify(v) => verify_cert_auth(&v.trust, &v.clock, s, id, p, method, data, now),
    }
}

#[allow(clippy::too_many_arguments)]
fn verify_cert_auth(
    trust: &TrustStore,
    clock: &WallClock,
    s: &Signed<'_>,
    id: &Identification,
    p: &[Payload],
    method: u8,
    data: &[u8],
    now: Instant,
) -> Result<(), String> {
    let chain: Vec<&[u8]> = p
        .iter()
        .filter_map(|x| match x {
            Payload::Cert {
                encoding: CERT_X509_SIGNATURE,
                data,
            } => Some(data.as_slice()),
            _ => None,
        })
        .collect();
    if chain.is_empty() {
        return Err("peer sent no X.509 certificate (CERT payload)".into());
    }
    let info = trust
        .verify(&chain, clock.unix_at(now))
        .map_err(|e| e.to_string())?;
    let ike = ike_id(id).ok_or_else(|| format!("unsupported peer ID type {}", id.kind))?;
    check_identity(chain[0], ike).map_err(|e| e.to_string())?;
    let (scheme, fixed, sig) = match method {
        auth_method::DIGITAL_SIGNATURE => {
            let len = *data.first().ok_or("empty AUTH data")? as usize;
            let alg = data
                .get(1..1 + len)
                .ok_or("truncated AUTH AlgorithmIdentifier")?;
            let scheme = SignScheme::from_algorithm_identifier(alg)
                .ok_or("unsupported signature algorithm in AUTH (RFC 7427)")?;
            (scheme, false, &data[1 + len..])
        }
        ECDSA_SHA256_P256 => (SignScheme::EcdsaSha256, true, data),
        ECDSA_SHA384_P384 => (SignScheme::EcdsaSha384, true, data),
        auth_method::RSA_DIGITAL_SIGNATURE => (SignScheme::RsaPkcs1Sha1, false, data),
        auth_method::SHARED_KEY_MIC => {
            return Err("peer used a pre-shared key, but auth = \"cert\"".into())
        }
        m => return Err(format!("unsupported authentication method {m}")),
    };
    verify_signature(chain[0], scheme, fixed, &s.octets(id), sig).map_err(|e| e.to_string())?;
    tracing::info!(subject = %info.subject, issuer = %info.issuer, ?scheme, "peer certificate accepted");
    Ok(())
}
