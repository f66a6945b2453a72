//! Lookups in payload lists and small payload builders.

use std::net::IpAddr;

use crate::policy::Identity;
use rampart_wire::ike::{
    id_type, notify, Identification, Notify, Payload, Proposal, TrafficSelector,
};

pub(crate) fn notify(kind: u16, data: Vec<u8>) -> Payload {
    Payload::Notify(Notify {
        protocol: 0,
        spi: Vec::new(),
        kind,
        data,
    })
}

pub(crate) fn find_notify(p: &[Payload], kind: u16) -> Option<&Notify> {
    p.iter().find_map(|x| match x {
        Payload::Notify(n) if n.kind == kind => Some(n),
        _ => None,
    })
}

pub(crate) fn notifies(p: &[Payload], kind: u16) -> impl Iterator<Item = &Notify> {
    p.iter().filter_map(move |x| match x {
        Payload::Notify(n) if n.kind == kind => Some(n),
        _ => None,
    })
}

/// The first error notify (type below 16384), ignoring every status notify.
pub(crate) fn first_error(p: &[Payload]) -> Option<&Notify> {
    p.iter().find_map(|x| match x {
        Payload::Notify(n) if notify::is_error(n.kind) => Some(n),
        _ => None,
    })
}

pub(crate) fn sa(p: &[Payload]) -> Option<&[Proposal]> {
    p.iter().find_map(|x| match x {
        Payload::Sa(v) => Some(v.as_slice()),
        _ => None,
    })
}

pub(crate) fn nonce(p: &[Payload]) -> Option<&[u8]> {
    p.iter()
        .find_map(|x| match x {
            Payload::Nonce(v) => Some(v.as_slice()),
            _ => None,
        })
        .filter(|n| (16..=256).contains(&n.len()))
}

pub(crate) fn ke(p: &[Payload]) -> Option<(u16, &[u8])> {
    p.iter().find_map(|x| match x {
        Payload::Ke { group, data } => Some((*group, data.as_slice())),
        _ => None,
    })
}

pub(crate) fn id_i(p: &[Payload]) -> Option<&Identification> {
    p.iter().find_map(|x| match x {
        Payload::IdI(v) => Some(v),
        _ => None,
    })
}

pub(crate) fn id_r(p: &[Payload]) -> Option<&Identification> {
    p.iter().find_map(|x| match x {
        Payload::IdR(v) => Some(v),
        _ => None,
    })
}

pub(crate) fn auth(p: &[Payload]) -> Option<(u8, &[u8])> {
    p.iter().find_map(|x| match x {
        Payload::Auth { method, data } => Some((*method, data.as_slice())),
        _ => None,
    })
}

pub(crate) fn ts_i(p: &[Payload]) -> Option<&[TrafficSelector]> {
    p.iter().find_map(|x| match x {
        Payload::TsI(v) => Some(v.as_slice()),
        _ => None,
    })
}

pub(crate) fn ts_r(p: &[Payload]) -> Option<&[TrafficSelector]> {
    p.iter().find_map(|x| match x {
        Payload::TsR(v) => Some(v.as_slice()),
        _ => None,
    })
}

/// Our configured identity as an ID payload body.
pub(crate) fn identification(id: &Identity) -> Identification {
    match id {
        Identity::Ip(IpAddr::V4(a)) => Identification {
            kind: id_type::IPV4_ADDR,
            data: a.octets().to_vec(),
        },
        Identity::Ip(IpAddr::V6(a)) => Identification {
            kind: id_type::IPV6_ADDR,
            data: a.octets().to_vec(),
        },
        Identity::Fqdn(s) => Identification {
            kind: id_type::FQDN,
            data: s.as_bytes().to_vec(),
        },
        Identity::Email(s) => Identification {
            kind: id_type::RFC822_ADDR,
            data: s.as_bytes().to_vec(),
        },
        Identity::Dn(der) => Identification {
            kind: id_type::DER_ASN1_DN,
            data: der.clone(),
        },
    }
}

/// Whether a received ID names the configured identity (FQDN and RFC 822 compared without
/// case, DNs attribute by attribute).
pub(crate) fn id_matches(expected: &Identity, got: &Identification) -> bool {
    if expected.is_any() {
        // `%any` (a remote-access template): the chain or EAP decides who the client is.
        return true;
    }
    let want = identification(expected);
    if want.kind != got.kind {
        return false;
    }
    match expected {
        Identity::Fqdn(_) | Identity::Email(_) => want.data.eq_ignore_ascii_case(&got.data),
        Identity::Ip(_) => want.data == got.data,
        Identity::Dn(der) => rampart_pki::dn_eq(der, &got.data),
    }
}

pub(crate) fn identity_string(id: &Identity) -> String {
    match id {
        Identity::Ip(a) => a.to_string(),
        Identity::Fqdn(s) => s.clone(),
        Identity::Email(s) => format!("email:{s}"),
        Identity::Dn(der) => format!("dn:{}", rampart_pki::dn_to_string(der)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities() {
        let f = Identity::Fqdn("GW.example.org".into());
        assert!(id_matches(
            &f,
            &Identification {
                kind: 2,
                data: b"gw.example.org".to_vec()
            }
        ));
        assert!(!id_matches(
            &f,
            &Identification {
                kind: 3,
                data: b"gw.example.org".to_vec()
            }
        ));
        let ip = Identity::Ip("192.0.2.1".parse().unwrap());
        assert!(id_matches(
            &ip,
            &Identification {
                kind: 1,
                data: vec![192, 0, 2, 1]
            }
        ));
        assert!(!id_matches(
            &ip,
            &Identification {
                kind: 1,
                data: vec![192, 0, 2, 2]
            }
        ));
        let ip6 = Identity::Ip("2001:db8::1".parse().unwrap());
        assert_eq!(identification(&ip6).kind, 5);
    }
}
