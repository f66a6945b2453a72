//! Proposal strings in strongSwan's keyword style.
//!
//! IKE: `encr[-integ]-prf-dh`; ESP: `encr[-integ][-dh][-esn]`. An integrity algorithm is present
//! exactly when the cipher is not an AEAD (for both IKE and ESP: CBC without integrity is not
//! offered).

use std::str::FromStr;

use rampart_crypto::{DhGroup, Encr, Integ, Prf, UnknownAlgorithm};

use crate::schema::{EspProposal, IkeProposal};

pub(crate) const IKE_FORM: &str =
    "encr[-integ]-prf-dh, e.g. aes256gcm16-prfsha256-x25519 or aes256-sha256-prfsha256-ecp256";
pub(crate) const ESP_FORM: &str =
    "encr[-integ][-dh][-esn], e.g. aes256gcm16, aes128-sha256, aes256gcm16-x25519-esn";

/// Why a proposal string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProposalError {
    pub message: String,
    pub allowed: String,
}

impl ProposalError {
    fn shape(what: &str, s: &str, problem: String, form: &str) -> ProposalError {
        ProposalError {
            message: format!("invalid {what} proposal \"{s}\": {problem}"),
            allowed: form.to_string(),
        }
    }
}

fn keyword<T: FromStr<Err = UnknownAlgorithm>>(
    what: &str,
    s: &str,
    token: &str,
) -> Result<T, ProposalError> {
    token.parse::<T>().map_err(|e| ProposalError {
        message: format!(
            "invalid {what} proposal \"{s}\": unknown {} \"{}\"",
            e.kind, e.word
        ),
        allowed: e.allowed.to_string(),
    })
}

fn tokens<'s>(what: &str, s: &'s str, form: &str) -> Result<Vec<&'s str>, ProposalError> {
    let tokens: Vec<&str> = s.split('-').collect();
    if tokens.iter().any(|t| t.is_empty()) {
        return Err(ProposalError::shape(
            what,
            s,
            "empty algorithm name".into(),
            form,
        ));
    }
    Ok(tokens)
}

/// Reads the integrity slot after `encr` at `tokens[1]`; returns it and the next index.
fn integ_slot(
    what: &str,
    s: &str,
    form: &str,
    encr: Encr,
    tokens: &[&str],
) -> Result<(Option<Integ>, usize), ProposalError> {
    let next = tokens.get(1).copied();
    let next_is_integ = next.is_some_and(|t| t.parse::<Integ>().is_ok());
    if encr.is_aead() {
        if next_is_integ {
            return Err(ProposalError::shape(
                what,
                s,
                format!("{encr} is an AEAD cipher and takes no integrity algorithm"),
                form,
            ));
        }
        return Ok((None, 1));
    }
    match next {
        Some(t) if next_is_integ => Ok((Some(keyword::<Integ>(what, s, t)?), 2)),
        Some(t) if t.parse::<Prf>().is_err() && t.parse::<DhGroup>().is_err() && t != "esn" => {
            // Neither an integrity algorithm nor what may follow: name it as an unknown integrity.
            Err(keyword::<Integ>(what, s, t).unwrap_err())
        }
        _ => Err(ProposalError::shape(
            what,
            s,
            format!("{encr} is not an AEAD cipher and needs an integrity algorithm (sha256)"),
            form,
        )),
    }
}

pub(crate) fn parse_ike(s: &str) -> Result<IkeProposal, ProposalError> {
    const WHAT: &str = "IKE";
    let tokens = tokens(WHAT, s, IKE_FORM)?;
    let encr: Encr = keyword(WHAT, s, tokens[0])?;
    let (integ, i) = integ_slot(WHAT, s, IKE_FORM, encr, &tokens)?;
    let prf = match tokens.get(i) {
        Some(t) => keyword::<Prf>(WHAT, s, t)?,
        None => {
            return Err(ProposalError::shape(
                WHAT,
                s,
                "missing PRF".into(),
                IKE_FORM,
            ))
        }
    };
    let dh = match tokens.get(i + 1) {
        Some(t) => keyword::<DhGroup>(WHAT, s, t)?,
        None => {
            return Err(ProposalError::shape(
                WHAT,
                s,
                "missing key exchange (dh group)".into(),
                IKE_FORM,
            ))
        }
    };
    if let Some(extra) = tokens.get(i + 2) {
        return Err(ProposalError::shape(
            WHAT,
            s,
            format!("unexpected \"{extra}\" after the key exchange"),
            IKE_FORM,
        ));
    }
    Ok(IkeProposal {
        encr,
        integ,
        prf,
        dh,
    })
}

/// Returns the proposal and whether it ends in `-esn`.
pub(crate) fn parse_esp(s: &str) -> Result<(EspProposal, bool), ProposalError> {
    const WHAT: &str = "ESP";
    let tokens = tokens(WHAT, s, ESP_FORM)?;
    let encr: Encr = keyword(WHAT, s, tokens[0])?;
    let (integ, mut i) = integ_slot(WHAT, s, ESP_FORM, encr, &tokens)?;
    let mut dh = None;
    if let Some(t) = tokens.get(i) {
        if *t != "esn" {
            dh = Some(keyword::<DhGroup>(WHAT, s, t)?);
            i += 1;
        }
    }
    let mut esn = false;
    if tokens.get(i) == Some(&"esn") {
        esn = true;
        i += 1;
    }
    if let Some(extra) = tokens.get(i) {
        return Err(ProposalError::shape(
            WHAT,
            s,
            format!("unexpected \"{extra}\""),
            ESP_FORM,
        ));
    }
    Ok((EspProposal { encr, integ, dh }, esn))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ike_proposals() {
        assert_eq!(
            parse_ike("aes256gcm16-prfsha256-x25519"),
            Ok(IkeProposal {
                encr: Encr::AesGcm16_256,
                integ: None,
                prf: Prf::HmacSha256,
                dh: DhGroup::X25519
            })
        );
        assert_eq!(
            parse_ike("aes128-sha256-prfsha384-ecp256"),
            Ok(IkeProposal {
                encr: Encr::AesCbc128,
                integ: Some(Integ::HmacSha256_128),
                prf: Prf::HmacSha384,
                dh: DhGroup::Ecp256
            })
        );
        assert_eq!(
            parse_ike("chacha20poly1305-prfsha512-ecp384").map(|p| p.dh),
            Ok(DhGroup::Ecp384)
        );
    }

    #[test]
    fn ike_proposal_errors() {
        let err = |s| parse_ike(s).unwrap_err().message;
        assert!(err("aes256-prfsha256-x25519").contains("needs an integrity algorithm"));
        assert!(err("aes256gcm16-sha256-prfsha256-x25519").contains("takes no integrity"));
        assert!(err("aes256gcm16-x25519").contains("unknown PRF \"x25519\""));
        assert!(err("aes256gcm16-prfsha256").contains("missing key exchange"));
        assert!(err("aes256gcm16").contains("missing PRF"));
        assert!(err("aes256gcm16-prfsha256-x25519-esn").contains("unexpected \"esn\""));
        assert!(err("aes512gcm16-prfsha256-x25519").contains("unknown encryption algorithm"));
        assert!(err("aes256gcm16--x25519").contains("empty algorithm name"));
        assert!(err("aes256-md5-prfsha256-x25519").contains("unknown integrity algorithm \"md5\""));
        assert_eq!(
            parse_ike("aes256gcm16-prfsha256-modp2048")
                .unwrap_err()
                .allowed,
            "ecp256, ecp384, x25519"
        );
    }

    #[test]
    fn esp_proposals() {
        let esp = |encr, integ, dh| EspProposal { encr, integ, dh };
        assert_eq!(
            parse_esp("aes256gcm16"),
            Ok((esp(Encr::AesGcm16_256, None, None), false))
        );
        assert_eq!(
            parse_esp("aes128-sha256"),
            Ok((
                esp(Encr::AesCbc128, Some(Integ::HmacSha256_128), None),
                false
            ))
        );
        assert_eq!(
            parse_esp("chacha20poly1305-x25519"),
            Ok((
                esp(Encr::ChaCha20Poly1305, None, Some(DhGroup::X25519)),
                false
            ))
        );
        assert_eq!(
            parse_esp("aes256-sha256-ecp384-esn"),
            Ok((
                esp(
                    Encr::AesCbc256,
                    Some(Integ::HmacSha256_128),
                    Some(DhGroup::Ecp384)
                ),
                true
            ))
        );
        assert_eq!(
            parse_esp("aes128gcm16-esn"),
            Ok((esp(Encr::AesGcm16_128, None, None), true))
        );
    }

    #[test]
    fn esp_proposal_errors() {
        let err = |s| parse_esp(s).unwrap_err().message;
        assert!(err("aes128").contains("needs an integrity algorithm"));
        assert!(err("aes128-esn").contains("needs an integrity algorithm"));
        assert!(err("aes128-x25519").contains("needs an integrity algorithm"));
        assert!(err("aes128gcm16-sha256").contains("takes no integrity"));
        assert!(err("aes128gcm16-prfsha256").contains("unknown key exchange"));
        assert!(err("aes128gcm16-esn-x25519").contains("unexpected \"x25519\""));
        assert!(err("aes128gcm16-x25519-x25519").contains("unexpected \"x25519\""));
        assert!(err("3des-sha256").contains("unknown encryption algorithm"));
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "[a-z0-9-]{0,40}") {
            let _ = parse_ike(&s);
            let _ = parse_esp(&s);
        }

        #[test]
        fn well_formed_proposals_round_trip(
            e in 0usize..5, p in 0usize..3, g in 0usize..3, pfs in proptest::bool::ANY, esn in proptest::bool::ANY
        ) {
            let encr = Encr::ALL[e];
            let integ = if encr.is_aead() { "".to_string() } else { "-sha256".to_string() };
            let ike = format!("{encr}{integ}-{}-{}", Prf::ALL[p], DhGroup::ALL[g]);
            let parsed = parse_ike(&ike).unwrap();
            prop_assert_eq!(parsed.encr, encr);
            prop_assert_eq!(parsed.integ.is_some(), !encr.is_aead());
            prop_assert_eq!(parsed.prf, Prf::ALL[p]);
            prop_assert_eq!(parsed.dh, DhGroup::ALL[g]);
            let mut esp = format!("{encr}{integ}");
            if pfs { esp.push_str(&format!("-{}", DhGroup::ALL[g])); }
            if esn { esp.push_str("-esn"); }
            let (parsed, parsed_esn) = parse_esp(&esp).unwrap();
            prop_assert_eq!(parsed.encr, encr);
            prop_assert_eq!(parsed.dh, pfs.then_some(DhGroup::ALL[g]));
            prop_assert_eq!(parsed_esn, esn);
        }
    }
}
