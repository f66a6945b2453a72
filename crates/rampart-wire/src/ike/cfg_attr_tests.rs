use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use proptest::prelude::*;

use super::*;
use crate::ike::{encode_payloads, parse_payloads, Payload};

fn reply(attrs: Vec<(u16, Vec<u8>)>) -> ConfigPayload {
    ConfigPayload {
        cfg_type: cfg::CFG_REPLY,
        attributes: attrs,
    }
}

/// Through the IKE payload codec and back, so the typed layer is checked on real bytes.
fn wire_round_trip(cp: &ConfigPayload) -> ConfigPayload {
    let mut out = Vec::new();
    let first = encode_payloads(&[Payload::Cp(cp.clone())], &mut out);
    match parse_payloads(first, &out).unwrap().pop() {
        Some(Payload::Cp(cp)) => cp,
        other => panic!("not a CP payload: {other:?}"),
    }
}

fn sample_reply() -> CfgReply {
    CfgReply {
        ip4_addresses: vec![Ipv4Addr::new(10, 9, 0, 2)],
        ip4_netmask: Some(Ipv4Addr::new(255, 255, 255, 0)),
        ip4_dns: vec![Ipv4Addr::new(10, 9, 0, 53), Ipv4Addr::new(10, 9, 1, 53)],
        ip4_subnets: vec![
            "10.0.0.0/8".parse().unwrap(),
            "192.168.7.0/24".parse().unwrap(),
        ],
        ip6_addresses: vec!["fd00:9::2/64".parse().unwrap()],
        ip6_dns: vec!["fd00:9::53".parse().unwrap()],
        ip6_subnets: vec!["fd00::/48".parse().unwrap()],
        dns_domains: vec!["corp.example".into(), "xn--bcher-kva.example".into()],
        entry_points: None,
    }
}

#[test]
fn reply_bytes_are_the_rfc_formats() {
    let cp = sample_reply().to_payload().unwrap();
    assert_eq!(cp.cfg_type, cfg::CFG_REPLY);
    let a = &cp.attributes;
    assert_eq!(a[0], (cfg::INTERNAL_IP4_ADDRESS, vec![10, 9, 0, 2]));
    assert_eq!(a[1], (cfg::INTERNAL_IP4_NETMASK, vec![255, 255, 255, 0]));
    assert_eq!(a[2], (cfg::INTERNAL_IP4_DNS, vec![10, 9, 0, 53]));
    assert_eq!(
        a[4],
        (cfg::INTERNAL_IP4_SUBNET, vec![10, 0, 0, 0, 255, 0, 0, 0])
    );
    let mut v6 = "fd00:9::2".parse::<Ipv6Addr>().unwrap().octets().to_vec();
    v6.push(64);
    assert_eq!(a[6], (cfg::INTERNAL_IP6_ADDRESS, v6));
    assert_eq!(a[7].1.len(), 16);
    assert_eq!(a[8].1.len(), 17);
    assert_eq!(a[9], (cfg::INTERNAL_DNS_DOMAIN, b"corp.example".to_vec()));
    assert_eq!(a.len(), 11);
}

#[test]
fn reply_round_trip_through_the_payload_codec() {
    let r = sample_reply();
    let cp = wire_round_trip(&r.to_payload().unwrap());
    assert_eq!(CfgReply::from_payload(&cp), Ok(r));
    let empty = CfgReply::default();
    assert_eq!(
        CfgReply::from_payload(&wire_round_trip(&empty.to_payload().unwrap())),
        Ok(empty)
    );
}

#[test]
fn entry_points_round_trip_and_a_malformed_value_is_left_out() {
    use crate::ike::{EntryPointList, EntryPointSelection};
    let mut r = sample_reply();
    r.entry_points = Some(EntryPointList {
        selection: EntryPointSelection::PrimaryBackup,
        entries: vec!["vpn-eu.example.org".into(), "203.0.113.7:4500".into()],
    });
    let cp = wire_round_trip(&r.to_payload().unwrap());
    assert_eq!(
        cp.attributes.last().unwrap(),
        &(
            cfg::RAMPART_ENTRY_POINTS,
            b"\x02vpn-eu.example.org\n203.0.113.7:4500".to_vec()
        )
    );
    assert_eq!(CfgReply::from_payload(&cp), Ok(r.clone()));
    // A malformed value: the rest of the reply stands, the list is absent, `find` says why.
    for bad in [&b""[..], b"\x09a.example", b"\x00a.example\n", b"\x00\xff"] {
        let mut cp = r.to_payload().unwrap();
        cp.attributes.pop();
        cp.attributes
            .push((cfg::RAMPART_ENTRY_POINTS, bad.to_vec()));
        let got = CfgReply::from_payload(&wire_round_trip(&cp)).unwrap();
        assert_eq!(got.entry_points, None);
        assert_eq!(got.ip4_addresses, r.ip4_addresses);
        assert!(matches!(
            EntryPointList::find(&cp),
            Some(Err(CfgError::EntryPoints(_)))
        ));
    }
    // A list that breaks the invariants is never encoded.
    r.entry_points = Some(EntryPointList {
        selection: EntryPointSelection::Unspecified,
        entries: vec!["not a host".into()],
    });
    assert!(r.to_payload().is_err());
}

#[test]
fn request_round_trip_and_empty_attributes() {
    let r = CfgRequest {
        ip4_address: Ask::Any,
        ip6_address: Ask::Prefer("fd00::7/64".parse().unwrap()),
        ip4_netmask: true,
        ip4_dns: true,
        ip6_dns: false,
        ip4_subnet: true,
        ip6_subnet: false,
        dns_domains: true,
        entry_points: true,
    };
    let cp = r.to_payload();
    assert_eq!(cp.cfg_type, cfg::CFG_REQUEST);
    assert_eq!(cp.attributes[0], (cfg::INTERNAL_IP4_ADDRESS, vec![]));
    assert_eq!(cp.attributes[1].1.len(), 17);
    assert!(cp.attributes[2..].iter().all(|(_, v)| v.is_empty()));
    assert_eq!(CfgRequest::from_payload(&wire_round_trip(&cp)), Ok(r));
    assert_eq!(
        CfgRequest::from_payload(&CfgRequest::default().to_payload()),
        Ok(CfgRequest::default())
    );
}

#[test]
fn request_with_a_preferred_address_and_unknown_attributes() {
    let cp = ConfigPayload {
        cfg_type: cfg::CFG_REQUEST,
        attributes: vec![
            (cfg::INTERNAL_IP4_ADDRESS, vec![10, 9, 0, 7]),
            (cfg::INTERNAL_IP4_ADDRESS, vec![]),
            (cfg::INTERNAL_IP4_DNS, vec![10, 9, 0, 53]),
            (7, b"Rampart 1.0".to_vec()), // APPLICATION_VERSION
            (0x4000, vec![1, 2, 3]),
        ],
    };
    let r = CfgRequest::from_payload(&cp).unwrap();
    assert_eq!(r.ip4_address, Ask::Prefer(Ipv4Addr::new(10, 9, 0, 7)));
    assert!(r.ip4_dns);
    assert!(!r.ip6_dns && !r.dns_domains && !r.ip6_address.is_asked());
    let attrs: Vec<_> = attributes(&cp).collect::<Result<_, _>>().unwrap();
    assert_eq!(
        attrs[3],
        CfgAttr::Other {
            kind: 7,
            value: b"Rampart 1.0"
        }
    );
    assert_eq!(attrs[1], CfgAttr::Empty(cfg::INTERNAL_IP4_ADDRESS));
}

#[test]
fn wrong_cfg_type() {
    assert_eq!(
        CfgReply::from_payload(&CfgRequest::default().to_payload()),
        Err(CfgError::CfgType {
            got: cfg::CFG_REQUEST,
            expected: cfg::CFG_REPLY
        })
    );
    assert_eq!(
        CfgRequest::from_payload(&reply(vec![])),
        Err(CfgError::CfgType {
            got: cfg::CFG_REPLY,
            expected: cfg::CFG_REQUEST
        })
    );
}

#[test]
fn empty_values_only_in_request_and_ack() {
    for kind in [
        cfg::INTERNAL_IP4_ADDRESS,
        cfg::INTERNAL_IP4_NETMASK,
        cfg::INTERNAL_IP4_DNS,
        cfg::INTERNAL_IP4_SUBNET,
        cfg::INTERNAL_IP6_ADDRESS,
        cfg::INTERNAL_IP6_DNS,
        cfg::INTERNAL_IP6_SUBNET,
        cfg::INTERNAL_DNS_DOMAIN,
    ] {
        assert!(is_known(kind));
        for t in [cfg::CFG_REQUEST, cfg::CFG_ACK] {
            assert_eq!(CfgAttr::decode(t, kind, &[]), Ok(CfgAttr::Empty(kind)));
        }
        for t in [cfg::CFG_REPLY, cfg::CFG_SET] {
            assert_eq!(CfgAttr::decode(t, kind, &[]), Err(CfgError::Empty { kind }));
        }
        assert_eq!(
            CfgReply::from_payload(&reply(vec![(kind, vec![])])),
            Err(CfgError::Empty { kind })
        );
    }
    // Unknown types may be empty anywhere.
    assert_eq!(
        CfgAttr::decode(cfg::CFG_REPLY, 99, &[]),
        Ok(CfgAttr::Other {
            kind: 99,
            value: &[]
        })
    );
}

#[test]
fn wrong_lengths() {
    let cases: &[(u16, &[usize])] = &[
        (cfg::INTERNAL_IP4_ADDRESS, &[1, 3, 5, 16]),
        (cfg::INTERNAL_IP4_NETMASK, &[3, 5]),
        (cfg::INTERNAL_IP4_DNS, &[2, 8]),
        (cfg::INTERNAL_IP4_SUBNET, &[4, 7, 9]),
        (cfg::INTERNAL_IP6_ADDRESS, &[1, 16, 18]),
        (cfg::INTERNAL_IP6_DNS, &[4, 15, 17]),
        (cfg::INTERNAL_IP6_SUBNET, &[16, 32]),
    ];
    for &(kind, lens) in cases {
        for &len in lens {
            assert_eq!(
                CfgAttr::decode(cfg::CFG_REPLY, kind, &vec![0; len]),
                Err(CfgError::Length { kind, len }),
                "kind {kind} len {len}"
            );
        }
    }
}

#[test]
fn netmasks_and_prefixes() {
    let k = cfg::INTERNAL_IP4_NETMASK;
    assert_eq!(
        CfgAttr::decode(cfg::CFG_REPLY, k, &[255, 0, 255, 0]),
        Err(CfgError::Netmask { kind: k })
    );
    assert_eq!(
        CfgAttr::decode(cfg::CFG_REPLY, k, &[0, 0, 0, 0]),
        Ok(CfgAttr::Ip4Netmask(Ipv4Addr::UNSPECIFIED))
    );
    let k = cfg::INTERNAL_IP4_SUBNET;
    assert_eq!(
        CfgAttr::decode(cfg::CFG_REPLY, k, &[10, 0, 0, 0, 255, 1, 0, 0]),
        Err(CfgError::Netmask { kind: k })
    );
    assert_eq!(
        CfgAttr::decode(cfg::CFG_REPLY, k, &[10, 1, 2, 3, 255, 255, 0, 0]),
        Ok(CfgAttr::Ip4Subnet(
            Ipv4Net::new(Ipv4Addr::new(10, 1, 2, 3), 16).unwrap()
        ))
    );
    for k in [cfg::INTERNAL_IP6_ADDRESS, cfg::INTERNAL_IP6_SUBNET] {
        let mut v = vec![0xfd; 17];
        v[16] = 129;
        assert_eq!(
            CfgAttr::decode(cfg::CFG_REPLY, k, &v),
            Err(CfgError::PrefixLength {
                kind: k,
                prefix: 129
            })
        );
        v[16] = 128;
        assert!(CfgAttr::decode(cfg::CFG_REPLY, k, &v).is_ok());
    }
}

#[test]
fn dns_domains() {
    fn ok(v: &[u8]) -> Result<CfgAttr<'_>, CfgError> {
        CfgAttr::decode(cfg::CFG_REPLY, cfg::INTERNAL_DNS_DOMAIN, v)
    }
    assert_eq!(ok(b"example.com"), Ok(CfgAttr::DnsDomain("example.com")));
    assert_eq!(ok(b"example.com."), Ok(CfgAttr::DnsDomain("example.com")));
    assert_eq!(
        ok(b"_srv.x-1.EXAMPLE"),
        Ok(CfgAttr::DnsDomain("_srv.x-1.EXAMPLE"))
    );
    assert_eq!(ok(b"localdomain"), Ok(CfgAttr::DnsDomain("localdomain")));
    let bad: &[&[u8]] = &[
        b".",
        b"..",
        b"a..b",
        b".a",
        b"a b",
        b"a\\.b",
        b"a\0",
        "bücher.example".as_bytes(),
        b"a.b..",
    ];
    for v in bad {
        assert!(
            matches!(ok(v), Err(CfgError::DomainName(_))),
            "{:?} accepted",
            String::from_utf8_lossy(v)
        );
    }
    let label63 = "a".repeat(63);
    assert!(validate_domain(&label63).is_ok());
    assert!(validate_domain(&"a".repeat(64)).is_err());
    let long = [label63.as_str(); 4].join("."); // 255 bytes
    assert!(validate_domain(&long).is_err());
    assert!(validate_domain(&long[..253]).is_ok());
    // A reply with an invalid domain cannot be built.
    let r = CfgReply {
        dns_domains: vec!["bad domain".into()],
        ..CfgReply::default()
    };
    assert!(matches!(r.to_payload(), Err(CfgError::DomainName(_))));
}

#[test]
fn attribute_round_trip_and_reserved_bit() {
    let attrs = [
        CfgAttr::Ip4Address(Ipv4Addr::new(1, 2, 3, 4)),
        CfgAttr::Ip4Netmask(Ipv4Addr::new(255, 255, 255, 252)),
        CfgAttr::Ip6Dns(Ipv6Addr::LOCALHOST),
        CfgAttr::Ip6Subnet(Ipv6Net::new(Ipv6Addr::UNSPECIFIED, 0).unwrap()),
        CfgAttr::DnsDomain("a.b"),
        CfgAttr::Other {
            kind: 0x7fff,
            value: b"x",
        },
    ];
    for a in attrs {
        let (kind, value) = a.to_raw();
        assert_eq!(CfgAttr::decode(cfg::CFG_REPLY, kind, &value), Ok(a));
        // The reserved top bit of the type is ignored.
        assert_eq!(
            CfgAttr::decode(cfg::CFG_REPLY, kind | 0x8000, &value),
            Ok(a)
        );
    }
}

fn arb_v4net() -> impl Strategy<Value = Ipv4Net> {
    (any::<u32>(), 0u8..=32).prop_map(|(a, p)| Ipv4Net::new(Ipv4Addr::from(a), p).unwrap())
}

fn arb_v6net() -> impl Strategy<Value = Ipv6Net> {
    (any::<u128>(), 0u8..=128).prop_map(|(a, p)| Ipv6Net::new(Ipv6Addr::from(a), p).unwrap())
}

fn arb_domain() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-z0-9_-]{1,20}", 1..5).prop_map(|l| l.join("."))
}

fn arb_reply() -> impl Strategy<Value = CfgReply> {
    (
        prop::collection::vec(any::<u32>().prop_map(Ipv4Addr::from), 0..3),
        prop::option::of(
            (0u8..=32).prop_map(|p| Ipv4Net::new(Ipv4Addr::UNSPECIFIED, p).unwrap().netmask()),
        ),
        prop::collection::vec(any::<u32>().prop_map(Ipv4Addr::from), 0..3),
        prop::collection::vec(arb_v4net(), 0..4),
        prop::collection::vec(arb_v6net(), 0..3),
        prop::collection::vec(any::<u128>().prop_map(Ipv6Addr::from), 0..3),
        prop::collection::vec(arb_v6net(), 0..4),
        prop::collection::vec(arb_domain(), 0..4),
    )
        .prop_map(|(a4, m4, d4, s4, a6, d6, s6, dom)| CfgReply {
            ip4_addresses: a4,
            ip4_netmask: m4,
            ip4_dns: d4,
            ip4_subnets: s4,
            ip6_addresses: a6,
            ip6_dns: d6,
            ip6_subnets: s6,
            dns_domains: dom,
            entry_points: None,
        })
}

fn arb_ask<T: std::fmt::Debug + Clone>(
    t: impl Strategy<Value = T>,
) -> impl Strategy<Value = Ask<T>> {
    prop_oneof![Just(Ask::No), Just(Ask::Any), t.prop_map(Ask::Prefer)]
}

fn arb_request() -> impl Strategy<Value = CfgRequest> {
    (
        arb_ask(any::<u32>().prop_map(Ipv4Addr::from)),
        arb_ask(arb_v6net()),
        any::<[bool; 7]>(),
    )
        .prop_map(|(a4, a6, b)| CfgRequest {
            ip4_address: a4,
            ip6_address: a6,
            ip4_netmask: b[0],
            ip4_dns: b[1],
            ip6_dns: b[2],
            ip4_subnet: b[3],
            ip6_subnet: b[4],
            dns_domains: b[5],
            entry_points: b[6],
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn reply_round_trip(r in arb_reply()) {
        let cp = wire_round_trip(&r.to_payload().unwrap());
        prop_assert_eq!(CfgReply::from_payload(&cp), Ok(r));
    }

    #[test]
    fn request_round_trip(r in arb_request()) {
        let cp = wire_round_trip(&r.to_payload());
        prop_assert_eq!(CfgRequest::from_payload(&cp), Ok(r));
    }

    #[test]
    fn arbitrary_attributes_never_panic_and_re_encode(
        cfg_type in 0u8..6,
        kind in any::<u16>(),
        value in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        if let Ok(a) = CfgAttr::decode(cfg_type, kind, &value) {
            let (k, v) = a.to_raw();
            prop_assert_eq!(k, kind & 0x7fff);
            prop_assert_eq!(CfgAttr::decode(cfg_type, k, &v), Ok(a));
        }
    }
}
