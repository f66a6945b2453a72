//! Proposals: our configured lists to wire form, and selection.
//!
//! Selection rule (RFC 7296 2.7): the responder walks ITS OWN list in order and takes the first
//! entry that some received proposal offers completely; transform types we do not use (integrity
//! with an AEAD, KE without PFS) must be absent from the received proposal or be NONE (id 0).

use crate::policy::{EspProposal, IkeProposal};
use rampart_crypto::{DhGroup, Encr, Integ, Prf};
use rampart_wire::ike::{Proposal, Transform};

pub(crate) const PROTO_IKE: u8 = 1;
pub(crate) const PROTO_ESP: u8 = 3;

const T_ENCR: u8 = 1;
const T_PRF: u8 = 2;
const T_INTEG: u8 = 3;
const T_KE: u8 = 4;
const T_ESN: u8 = 5;

/// The algorithms of an IKE SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IkeAlgs {
    pub encr: Encr,
    pub integ: Option<Integ>,
    pub prf: Prf,
    pub dh: DhGroup,
}

impl From<&IkeProposal> for IkeAlgs {
    fn from(p: &IkeProposal) -> IkeAlgs {
        IkeAlgs {
            encr: p.encr,
            integ: p.integ,
            prf: p.prf,
            dh: p.dh,
        }
    }
}

/// The algorithms of a CHILD SA. `dh` is the PFS group of CREATE_CHILD_SA (never used in IKE_AUTH).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EspAlgs {
    pub encr: Encr,
    pub integ: Option<Integ>,
    pub dh: Option<DhGroup>,
    pub esn: bool,
}

fn encr_t(e: Encr) -> Transform {
    Transform {
        kind: T_ENCR,
        id: e.transform_id(),
        key_bits: e.key_bits(),
    }
}
fn t(kind: u8, id: u16) -> Transform {
    Transform {
        kind,
        id,
        key_bits: None,
    }
}

/// One wire proposal per configured IKE proposal, numbered from 1.
pub(crate) fn ike_offer(list: &[IkeProposal], spi: &[u8]) -> Vec<Proposal> {
    list.iter()
        .enumerate()
        .map(|(i, p)| ike_proposal((i + 1) as u8, &IkeAlgs::from(p), spi))
        .collect()
}

pub(crate) fn ike_proposal(num: u8, a: &IkeAlgs, spi: &[u8]) -> Proposal {
    let mut transforms = vec![encr_t(a.encr)];
    if let Some(i) = a.integ {
        transforms.push(t(T_INTEG, i.transform_id()));
    }
    transforms.push(t(T_PRF, a.prf.transform_id()));
    transforms.push(t(T_KE, a.dh.transform_id()));
    Proposal {
        num,
        protocol: PROTO_IKE,
        spi: spi.to_vec(),
        transforms,
    }
}

/// ESP offer. `with_ke`: include the PFS group (CREATE_CHILD_SA); IKE_AUTH offers carry none.
/// `esn`: offer ESN first and no-ESN as fallback; otherwise only no-ESN.
pub(crate) fn esp_offer(list: &[EspProposal], spi: u32, esn: bool, with_ke: bool) -> Vec<Proposal> {
    list.iter()
        .enumerate()
        .map(|(i, p)| {
            let mut transforms = vec![encr_t(p.encr)];
            if let Some(ig) = p.integ {
                transforms.push(t(T_INTEG, ig.transform_id()));
            }
            if with_ke {
                if let Some(g) = p.dh {
                    transforms.push(t(T_KE, g.transform_id()));
                }
            }
            if esn {
                transforms.push(t(T_ESN, 1));
            }
            transforms.push(t(T_ESN, 0));
            Proposal {
                num: (i + 1) as u8,
                protocol: PROTO_ESP,
                spi: spi.to_be_bytes().to_vec(),
                transforms,
            }
        })
        .collect()
}

pub(crate) fn esp_proposal(num: u8, a: &EspAlgs, spi: u32) -> Proposal {
    let mut transforms = vec![encr_t(a.encr)];
    if let Some(ig) = a.integ {
        transforms.push(t(T_INTEG, ig.transform_id()));
    }
    if let Some(g) = a.dh {
        transforms.push(t(T_KE, g.transform_id()));
    }
    transforms.push(t(T_ESN, u16::from(a.esn)));
    Proposal {
        num,
        protocol: PROTO_ESP,
        spi: spi.to_be_bytes().to_vec(),
        transforms,
    }
}

fn offers(p: &Proposal, kind: u8, id: u16, key_bits: Option<u16>) -> bool {
    p.transforms
        .iter()
        .any(|x| x.kind == kind && x.id == id && x.key_bits == key_bits)
}

/// True when the proposal has no transform of `kind` other than NONE.
fn none_or_absent(p: &Proposal, kind: u8) -> bool {
    p.transforms
        .iter()
        .filter(|x| x.kind == kind)
        .all(|x| x.id == 0)
}

fn offers_opt(p: &Proposal, kind: u8, id: Option<u16>) -> bool {
    match id {
        Some(id) => offers(p, kind, id, None),
        None => none_or_absent(p, kind),
    }
}

/// Responder: first of `ours` offered by any of `theirs`. Returns the algorithms and the index of the
/// received proposal (its number and SPI are echoed in the answer).
pub(crate) fn select_ike(ours: &[IkeProposal], theirs: &[Proposal]) -> Option<(IkeAlgs, usize)> {
    for o in ours {
        let a = IkeAlgs::from(o);
        for (i, p) in theirs.iter().enumerate() {
            if p.protocol == PROTO_IKE
                && offers(p, T_ENCR, a.encr.transform_id(), a.encr.key_bits())
                && offers_opt(p, T_INTEG, a.integ.map(|x| x.transform_id()))
                && offers(p, T_PRF, a.prf.transform_id(), None)
                && offers(p, T_KE, a.dh.transform_id(), None)
            {
                return Some((a, i));
            }
        }
    }
    None
}

/// Responder: first of `ours` offered by any of `theirs`. `pfs`: honour KE transforms
/// (CREATE_CHILD_SA); in IKE_AUTH they are ignored and the result has `dh: None`.
pub(crate) fn select_esp(
    ours: &[EspProposal],
    esn: bool,
    pfs: bool,
    theirs: &[Proposal],
) -> Option<(EspAlgs, usize)> {
    for o in ours {
        for (i, p) in theirs.iter().enumerate() {
            if p.protocol != PROTO_ESP
                || !offers(p, T_ENCR, o.encr.transform_id(), o.encr.key_bits())
                || !offers_opt(p, T_INTEG, o.integ.map(|x| x.transform_id()))
            {
                continue;
            }
            let dh = if pfs {
                if !offers_opt(p, T_KE, o.dh.map(|g| g.transform_id())) {
                    continue;
                }
                o.dh
            } else {
                None
            };
            let peer_esn = offers(p, T_ESN, 1, None);
            let peer_no_esn =
                offers(p, T_ESN, 0, None) || !p.transforms.iter().any(|x| x.kind == T_ESN);
            let use_esn = if esn && peer_esn {
                true
            } else if peer_no_esn {
                false
            } else {
                continue;
            };
            return Some((
                EspAlgs {
                    encr: o.encr,
                    integ: o.integ,
                    dh,
                    esn: use_esn,
                },
                i,
            ));
        }
    }
    None
}

/// Exactly one transform of `kind` (or none when `allow_absent`), returned as (id, key_bits).
fn single(p: &Proposal, kind: u8) -> Result<Option<(u16, Option<u16>)>, ()> {
    let mut it = p.transforms.iter().filter(|x| x.kind == kind);
    let first = it.next().map(|x| (x.id, x.key_bits));
    if it.next().is_some() {
        return Err(());
    }
    Ok(first.filter(|(id, _)| *id != 0))
}

/// Initiator: the single proposal of a response as IKE algorithms, if it is one we offered.
pub(crate) fn accept_ike(ours: &[IkeProposal], chosen: &Proposal) -> Option<IkeAlgs> {
    if chosen.protocol != PROTO_IKE {
        return None;
    }
    let (eid, ebits) = single(chosen, T_ENCR).ok()??;
    let encr = Encr::from_ike(eid, ebits)?;
    let integ = match single(chosen, T_INTEG).ok()? {
        Some((id, _)) => Some(Integ::from_id(id)?),
        None => None,
    };
    let prf = Prf::from_id(single(chosen, T_PRF).ok()??.0)?;
    let dh = DhGroup::from_id(single(chosen, T_KE).ok()??.0)?;
    let a = IkeAlgs {
        encr,
        integ,
        prf,
        dh,
    };
    ours.iter().any(|o| IkeAlgs::from(o) == a).then_some(a)
}

/// Initiator: the single ESP proposal of a response, if it is one we offered.
pub(crate) fn accept_esp(
    ours: &[EspProposal],
    esn: bool,
    pfs: bool,
    chosen: &Proposal,
) -> Option<EspAlgs> {
    if chosen.protocol != PROTO_ESP {
        return None;
    }
    let (eid, ebits) = single(chosen, T_ENCR).ok()??;
    let encr = Encr::from_ike(eid, ebits)?;
    let integ = match single(chosen, T_INTEG).ok()? {
        Some((id, _)) => Some(Integ::from_id(id)?),
        None => None,
    };
    let dh = match single(chosen, T_KE).ok()? {
        Some((id, _)) => Some(DhGroup::from_id(id)?),
        None => None,
    };
    let esn_on = match single(chosen, T_ESN) {
        Ok(Some((1, _))) => true,
        Ok(None) => false,
        _ => return None,
    };
    if esn_on && !esn {
        return None;
    }
    let ok = ours
        .iter()
        .any(|o| o.encr == encr && o.integ == integ && (if pfs { o.dh == dh } else { true }));
    ok.then_some(EspAlgs {
        encr,
        integ,
        dh: if pfs { dh } else { None },
        esn: esn_on,
    })
}

/// The 4-byte SPI of an ESP proposal.
pub(crate) fn esp_spi(p: &Proposal) -> Option<u32> {
    let b: [u8; 4] = p.spi.as_slice().try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// The 8-byte SPI of an IKE proposal (IKE rekey).
pub(crate) fn ike_spi(p: &Proposal) -> Option<u64> {
    let b: [u8; 8] = p.spi.as_slice().try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ikep(s: &str) -> IkeProposal {
        let parts: Vec<&str> = s.split('-').collect();
        let encr: Encr = parts[0].parse().unwrap();
        let (integ, rest) = if encr.is_aead() {
            (None, &parts[1..])
        } else {
            (Some(parts[1].parse().unwrap()), &parts[2..])
        };
        IkeProposal {
            encr,
            integ,
            prf: rest[0].parse().unwrap(),
            dh: rest[1].parse().unwrap(),
        }
    }
    fn espp(encr: Encr, integ: Option<Integ>, dh: Option<DhGroup>) -> EspProposal {
        EspProposal { encr, integ, dh }
    }

    #[test]
    fn responder_order_wins() {
        let init = vec![
            ikep("aes128gcm16-prfsha256-ecp256"),
            ikep("aes256gcm16-prfsha256-x25519"),
        ];
        let resp = vec![
            ikep("aes256gcm16-prfsha256-x25519"),
            ikep("aes128gcm16-prfsha256-ecp256"),
        ];
        let (a, i) = select_ike(&resp, &ike_offer(&init, &[])).unwrap();
        assert_eq!(a, IkeAlgs::from(&resp[0]));
        assert_eq!(i, 1);
        let answer = ike_proposal(2, &a, &[]);
        assert_eq!(accept_ike(&init, &answer), Some(a));
    }

    #[test]
    fn no_common_ike() {
        let init = vec![ikep("aes128-sha256-prfsha256-ecp256")];
        let resp = vec![
            ikep("aes128gcm16-prfsha256-ecp256"),
            ikep("aes128-sha256-prfsha384-ecp256"),
        ];
        assert!(select_ike(&resp, &ike_offer(&init, &[])).is_none());
        let cbc = vec![ikep("aes128-sha256-prfsha256-ecp256")];
        assert!(select_ike(&cbc, &ike_offer(&init, &[])).is_some());
    }

    #[test]
    fn accept_rejects_unoffered() {
        let init = vec![ikep("aes128gcm16-prfsha256-ecp256")];
        let other = IkeAlgs::from(&ikep("aes256gcm16-prfsha256-ecp256"));
        assert_eq!(accept_ike(&init, &ike_proposal(1, &other, &[])), None);
    }

    #[test]
    fn esp_pfs_and_esn() {
        let ours = vec![
            espp(Encr::AesGcm16_256, None, Some(DhGroup::X25519)),
            espp(Encr::AesCbc128, Some(Integ::HmacSha256_128), None),
        ];
        // IKE_AUTH: KE ignored.
        let offer = esp_offer(&ours, 0x1234, true, false);
        let (a, i) = select_esp(&ours, false, false, &offer).unwrap();
        assert_eq!(
            (a.encr, a.dh, a.esn, i),
            (Encr::AesGcm16_256, None, false, 0)
        );
        let (a, _) = select_esp(&ours, true, false, &offer).unwrap();
        assert!(a.esn);
        // CREATE_CHILD_SA with PFS: the group must match.
        let offer = esp_offer(&ours, 0x1234, false, true);
        let (a, _) = select_esp(&ours, false, true, &offer).unwrap();
        assert_eq!(a.dh, Some(DhGroup::X25519));
        let answer = esp_proposal(1, &a, 0x99);
        assert_eq!(accept_esp(&ours, false, true, &answer), Some(a));
        assert_eq!(esp_spi(&answer), Some(0x99));
        let other = vec![espp(Encr::AesGcm16_256, None, Some(DhGroup::Ecp384))];
        assert!(select_esp(&other, false, true, &offer).is_none());
    }
}
