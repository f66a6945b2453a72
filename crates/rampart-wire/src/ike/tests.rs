//! Codec tests: hand-built vectors following the RFC 7296 layouts, real IKE_SA_INIT messages,
//! malformed input, and property tests (round trips, garbage never panics).

use std::net::IpAddr;

use proptest::prelude::*;

use super::*;

fn h(s: &str) -> Vec<u8> {
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(clean).expect("test hex")
}

/// Encodes `payloads`, compares with `expected` hex, parses the bytes back and compares.
fn check_chain(payloads: &[Payload], expected: &str) {
    let mut out = Vec::new();
    let first = encode_payloads(payloads, &mut out);
    assert_eq!(hex::encode(&out), hex::encode(h(expected)));
    assert_eq!(first, payloads[0].kind());
    assert_eq!(parse_payloads(first, &out).unwrap(), payloads);
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ike_proposal() -> Proposal {
    Proposal {
        num: 1,
        protocol: protocol::IKE,
        spi: vec![],
        transforms: vec![
            Transform {
                kind: transform_type::ENCR,
                id: 20,
                key_bits: Some(256),
            },
            Transform {
                kind: transform_type::PRF,
                id: 5,
                key_bits: None,
            },
            Transform {
                kind: transform_type::KE,
                id: 19,
                key_bits: None,
            },
        ],
    }
}

#[test]
fn header_layout() {
    let hdr = Header {
        spi_i: 0x0102030405060708,
        spi_r: 0x1112131415161718,
        next_payload: payload_type::SA,
        version: VERSION_2_0,
        exchange: exchange::IKE_SA_INIT,
        flags: flags::INITIATOR,
        message_id: 0xa1a2a3a4,
        length: 0x1c,
    };
    let mut out = Vec::new();
    encode_header(&hdr, &mut out);
    assert_eq!(
        out,
        h("0102030405060708 1112131415161718 21 20 22 08 a1a2a3a4 0000001c")
    );
    assert_eq!(parse_header(&out).unwrap(), hdr);
    assert!(hdr.is_initiator() && !hdr.is_response());
    assert_eq!(parse_header(&out[..27]), Err(ParseError::ShortHeader(27)));
    // A header-only message (no payloads) is valid.
    out[16] = 0;
    assert_eq!(parse(&out).unwrap().payloads, vec![]);
}

#[test]
fn sa_payload_layout() {
    let esp = Proposal {
        num: 2,
        protocol: protocol::ESP,
        spi: vec![0xc0, 0xff, 0xee, 0x01],
        transforms: vec![
            Transform {
                kind: transform_type::ENCR,
                id: 12,
                key_bits: Some(128),
            },
            Transform {
                kind: transform_type::INTEG,
                id: 12,
                key_bits: None,
            },
            Transform {
                kind: transform_type::ESN,
                id: 0,
                key_bits: None,
            },
        ],
    };
    check_chain(
        &[Payload::Sa(vec![ike_proposal(), esp])],
        "00 00 0050
         02 00 0024 01 01 00 03
           03 00 000c 01 00 0014 800e 0100
           03 00 0008 02 00 0005
           00 00 0008 04 00 0013
         00 00 0028 02 03 04 03 c0ffee01
           03 00 000c 01 00 000c 800e 0080
           03 00 0008 03 00 000c
           00 00 0008 05 00 0000",
    );
}

#[test]
fn simple_payload_layouts() {
    check_chain(
        &[
            Payload::Ke {
                group: 19,
                data: vec![0xaa, 0xbb, 0xcc, 0xdd],
            },
            Payload::Nonce(vec![1, 2, 3, 4]),
            Payload::Vendor(b"abc".to_vec()),
        ],
        "28 00 000c 0013 0000 aabbccdd
         2b 00 0008 01020304
         00 00 0007 616263",
    );
    check_chain(
        &[
            Payload::IdI(Identification {
                kind: id_type::IPV4_ADDR,
                data: vec![192, 0, 2, 1],
            }),
            Payload::IdR(Identification {
                kind: id_type::FQDN,
                data: b"gw".to_vec(),
            }),
            Payload::Auth {
                method: auth_method::SHARED_KEY_MIC,
                data: vec![0xde, 0xad],
            },
            Payload::Cert {
                encoding: 4,
                data: vec![0x30, 0x00],
            },
            Payload::CertReq {
                encoding: 4,
                data: vec![],
            },
        ],
        "24 00 000c 01 000000 c0000201
         27 00 000a 02 000000 6777
         25 00 000a 02 000000 dead
         26 00 0007 04 3000
         00 00 0005 04",
    );
}

#[test]
fn notify_and_delete_layouts() {
    check_chain(
        &[
            Payload::Notify(Notify {
                protocol: 0,
                spi: vec![],
                kind: notify::NAT_DETECTION_SOURCE_IP,
                data: vec![0x11, 0x22, 0x33, 0x44],
            }),
            Payload::Notify(Notify {
                protocol: protocol::ESP,
                spi: vec![1, 2, 3, 4],
                kind: notify::REKEY_SA,
                data: vec![],
            }),
            Payload::Delete(Delete {
                protocol: protocol::IKE,
                spis: vec![],
            }),
            Payload::Delete(Delete {
                protocol: protocol::ESP,
                spis: vec![1, 0xfffffffe],
            }),
        ],
        "29 00 000c 00 00 4004 11223344
         2a 00 000c 03 04 4009 01020304
         2a 00 0008 01 00 0000
         00 00 0010 03 04 0002 00000001 fffffffe",
    );
}

#[test]
fn ts_and_cp_layouts() {
    let v4 = TrafficSelector {
        ip_protocol: 0,
        start_port: 0,
        end_port: 65535,
        start_addr: ip("10.0.0.0"),
        end_addr: ip("10.0.0.255"),
    };
    let v6 = TrafficSelector {
        ip_protocol: 6,
        start_port: 80,
        end_port: 80,
        start_addr: ip("2001:db8::"),
        end_addr: ip("2001:db8::ffff"),
    };
    check_chain(
        &[
            Payload::TsI(vec![v4]),
            Payload::TsR(vec![v4, v6]),
            Payload::Cp(ConfigPayload {
                cfg_type: cfg::CFG_REQUEST,
                attributes: vec![
                    (cfg::INTERNAL_IP4_ADDRESS, vec![]),
                    (cfg::INTERNAL_IP4_DNS, vec![]),
                ],
            }),
            Payload::Cp(ConfigPayload {
                cfg_type: cfg::CFG_REPLY,
                attributes: vec![(cfg::INTERNAL_IP4_ADDRESS, vec![10, 9, 0, 2])],
            }),
        ],
        "2d 00 0018 01 000000 07 00 0010 0000 ffff 0a000000 0a0000ff
         2f 00 0040 02 000000 07 00 0010 0000 ffff 0a000000 0a0000ff
                              08 06 0028 0050 0050 20010db8000000000000000000000000
                                                   20010db800000000000000000000ffff
         2f 00 0010 01 000000 0001 0000 0003 0000
         00 00 0010 02 000000 0001 0004 0a090002",
    );
}

#[test]
fn sk_payload_is_a_range_into_the_message() {
    let msg = Message {
        header: Header {
            spi_i: 1,
            spi_r: 2,
            version: VERSION_2_0,
            exchange: exchange::IKE_AUTH,
            flags: flags::INITIATOR,
            message_id: 1,
            ..Header::default()
        },
        payloads: vec![Payload::Sk {
            first_inner: payload_type::IDI,
            body: 0..6,
        }],
    };
    let mut bytes = msg.encode();
    assert_eq!(&bytes[28..], h("23 00 000a"));
    bytes.extend_from_slice(&[9, 8, 7, 6, 5, 4]);
    set_length(&mut bytes);
    assert_eq!(hex::encode(&bytes[16..28]), "2e2023080000000100000026");
    let parsed = parse(&bytes).unwrap();
    assert_eq!(
        parsed.payloads,
        vec![Payload::Sk {
            first_inner: payload_type::IDI,
            body: 32..38
        }]
    );
    assert_eq!(&bytes[32..38], &[9, 8, 7, 6, 5, 4]);

    // The inner chain parses on its own; ranges then index the given slice.
    let inner = h("00 00 0008 01020304");
    assert_eq!(
        parse_payloads(payload_type::NONCE, &inner).unwrap(),
        vec![Payload::Nonce(vec![1, 2, 3, 4])]
    );
}

#[test]
fn skf_payload() {
    let mut out = Vec::new();
    let first = encode_payloads(
        &[Payload::Skf {
            first_inner: payload_type::SA,
            number: 1,
            total: 2,
            body: 0..3,
        }],
        &mut out,
    );
    out.extend_from_slice(&[0xa, 0xb, 0xc]);
    assert_eq!(first, payload_type::SKF);
    assert_eq!(out, h("21 00 000b 0001 0002 0a0b0c"));
    assert_eq!(
        parse_payloads(first, &out).unwrap(),
        vec![Payload::Skf {
            first_inner: payload_type::SA,
            number: 1,
            total: 2,
            body: 8..11
        }]
    );
    for bad in ["21 00 000b 0000 0002 0a0b0c", "21 00 000b 0003 0002 0a0b0c"] {
        assert_eq!(
            parse_payloads(payload_type::SKF, &h(bad)),
            Err(ParseError::Malformed {
                kind: payload_type::SKF,
                what: "bad fragment number"
            })
        );
    }
}

#[test]
fn unknown_payloads() {
    let chain = h("2b 00 0006 abcd   00 00 0005 ee");
    assert_eq!(
        parse_payloads(200, &chain).unwrap(),
        vec![
            Payload::Unknown {
                kind: 200,
                critical: false,
                data: vec![0xab, 0xcd]
            },
            Payload::Vendor(vec![0xee]),
        ]
    );
    let critical = h("2b 80 0006 abcd   00 00 0005 ee");
    assert_eq!(
        parse_payloads(200, &critical),
        Err(ParseError::UnsupportedCritical { kind: 200 })
    );
    // The critical bit on a known payload type means nothing.
    assert_eq!(
        parse_payloads(43, &h("00 80 0005 ee")).unwrap(),
        vec![Payload::Vendor(vec![0xee])]
    );
    // EAP has no variant of its own.
    assert_eq!(
        parse_payloads(payload_type::EAP, &h("00 00 0008 01020004")).unwrap(),
        vec![Payload::Unknown {
            kind: payload_type::EAP,
            critical: false,
            data: h("01020004")
        }]
    );
}

/// IKE_SA_INIT request from the test data of AOSP's IKE library (IkeMessageTest): AES-CBC-128,
/// HMAC-SHA1-96, PRF-HMAC-SHA1, MODP-1024, NAT detection notifies and a vendor ID.
const AOSP_IKE_SA_INIT: &str = "8f54bf6d8b48e6e10000000000000000212022080000000000000150
    220000300000002c010100040300000c0100000c800e00800300000803000002030000080400000200000008
    020000022800008800020000b4a2faf4bb54878ae21d638512ece55d9236fc5046ab6cef82220f421f3ce6361faf3656
    4ecb6d28798a94aad7b2b4b603ddeaaa5630adb9ece8ac37534036040610ebdd92f46bef84f0be7db860351843858f8a
    cf87056e272377f70c9f2d81e29c7b0ce4f291a3a72476bb0b278fd4b7b0a4c26bbeb08214c707137607958729000024
    c39b7f368f4681b89fa9b7be6465abd7c5f68b6ed5d3b4c72cb4240eb5c464122900001c00004004e54f73b7d83f6beb
    881eab2051d8663f421d10b02b00001c00004005d915368ca036004cb578ae3e3fb268509aeab1900000002069936922
    8741c6d4ca094c93e242c9de19e7b7c60000000500000500";

/// IKE_SA_INIT request of a strongSwan initiator (from the test data of an open-source TypeScript
/// IKEv2 parser): AES-GCM-16-256, PRF-HMAC-SHA256, ECP-256, vendor IDs, fragmentation,
/// redirect and signature-hash notifies.
const SWAN_IKE_SA_INIT: &str = "89922c915f35570e000000000000000021202208000000000000012c
    2200002800000024010100030300000c01000014800e0100030000080200000500000008040000132800004800130000
    db253178440ce776a794133cb8b69e5eb074733536570c64d7b630549c899c0712d828b37168500885e051024578afc7
    5c101f73b8943cad62d74a30f2be1fca2b00002c09cb538b2c3dbd4d0bb0eec8d318cb801a9b4715b207828d9b5ff1f4
    ec64ed58863707bcf14ccf052b000014eb4c1b788afd4a9cb7730a68d56c53212b000014c61baca1f1a60cc108000000
    000000002b0000184048b7d56ebce88525e7de7f00d6c2d3c0000000290000144048b7d56ebce88525e7de7f00d6c2d3
    290000080000402e2900000800004016000000100000402f0001000200030004";

#[test]
fn real_ike_sa_init_aosp() {
    let bytes = h(AOSP_IKE_SA_INIT);
    let msg = parse(&bytes).unwrap();
    assert_eq!(msg.header.spi_i, 0x8f54bf6d8b48e6e1);
    assert_eq!(msg.header.exchange, exchange::IKE_SA_INIT);
    assert_eq!(msg.header.length as usize, bytes.len());
    let kinds: Vec<u8> = msg.payloads.iter().map(Payload::kind).collect();
    assert_eq!(kinds, [33, 34, 40, 41, 41, 43]);
    let Payload::Sa(props) = &msg.payloads[0] else {
        panic!()
    };
    assert_eq!(props.len(), 1);
    assert_eq!(
        props[0].transforms[0],
        Transform {
            kind: 1,
            id: 12,
            key_bits: Some(128)
        }
    );
    assert_eq!(props[0].transforms.len(), 4);
    let Payload::Ke { group, data } = &msg.payloads[1] else {
        panic!()
    };
    assert_eq!((*group, data.len()), (2, 128));
    let Payload::Notify(n) = &msg.payloads[3] else {
        panic!()
    };
    assert_eq!(
        (n.kind, n.data.len()),
        (notify::NAT_DETECTION_SOURCE_IP, 20)
    );
    // Re-encoding reproduces the capture byte for byte.
    assert_eq!(hex::encode(msg.encode()), hex::encode(&bytes));
}

#[test]
fn real_ike_sa_init_strongswan() {
    let bytes = h(SWAN_IKE_SA_INIT);
    let msg = parse(&bytes).unwrap();
    let Payload::Sa(props) = &msg.payloads[0] else {
        panic!()
    };
    assert_eq!(props, &vec![ike_proposal()]);
    let Payload::Ke { group: 19, data } = &msg.payloads[1] else {
        panic!()
    };
    assert_eq!(data.len(), 64);
    let notifies: Vec<u16> = msg
        .payloads
        .iter()
        .filter_map(|p| match p {
            Payload::Notify(n) => Some(n.kind),
            _ => None,
        })
        .collect();
    assert_eq!(
        notifies,
        [
            notify::IKEV2_FRAGMENTATION_SUPPORTED,
            16406,
            notify::SIGNATURE_HASH_ALGORITHMS
        ]
    );
    assert_eq!(hex::encode(msg.encode()), hex::encode(&bytes));
}

#[test]
fn message_level_errors() {
    let good = h(AOSP_IKE_SA_INIT);
    let mut longer = good.clone();
    longer.extend_from_slice(&[0, 0]);
    assert_eq!(
        parse(&longer),
        Err(ParseError::LengthMismatch {
            header: 336,
            actual: 338
        })
    );
    set_length(&mut longer);
    assert_eq!(parse(&longer), Err(ParseError::TrailingBytes(2)));

    let mut v3 = good.clone();
    v3[17] = 0x30;
    assert_eq!(parse(&v3), Err(ParseError::UnsupportedMajorVersion(3)));
    let mut minor = good.clone();
    minor[17] = 0x21;
    assert!(parse(&minor).is_ok(), "minor version is ignored");

    let mut zero_len = good.clone();
    zero_len[30..32].copy_from_slice(&[0, 0]);
    assert_eq!(
        parse(&zero_len),
        Err(ParseError::PayloadLength {
            kind: 33,
            length: 0,
            remaining: 308
        })
    );
    let mut last_too_long = good.clone();
    let last = 28 + 278 + 1;
    last_too_long[last] += 1;
    assert!(matches!(
        parse(&last_too_long),
        Err(ParseError::PayloadLength { kind: 43, .. })
    ));

    let mut truncated = good[..good.len() - 1].to_vec();
    set_length(&mut truncated);
    assert!(matches!(
        parse(&truncated),
        Err(ParseError::PayloadLength { kind: 43, .. })
    ));
    // An empty SA payload parses as "no acceptable proposal", like one whose proposals all drop.
    let mut empty_sa = good[..28 + 4 + 5].to_vec();
    empty_sa[28..37].copy_from_slice(&h("2b000004 00000005 ee"));
    set_length(&mut empty_sa);
    assert_eq!(
        parse(&empty_sa).unwrap().payloads,
        vec![Payload::Sa(vec![]), Payload::Vendor(vec![0xee])]
    );

    // SK followed by another payload.
    let chain = h("00 00 0008 01020304  00 00 0005 ee");
    assert_eq!(
        parse_payloads(payload_type::SK, &chain),
        Err(ParseError::EncryptedNotLast(46))
    );
    // A chain that ends with bytes left, or a next payload with nothing left.
    assert_eq!(
        parse_payloads(43, &h("00 00 0005 ee ff")),
        Err(ParseError::TrailingBytes(1))
    );
    assert_eq!(
        parse_payloads(43, &h("2b 00 0005 ee ff")),
        Err(ParseError::TruncatedPayloadHeader { kind: 43 })
    );
}

fn sa_err(body: &str) -> ParseError {
    let body = h(body);
    let mut chain = vec![0, 0];
    chain.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
    chain.extend_from_slice(&body);
    parse_payloads(payload_type::SA, &chain).unwrap_err()
}

fn sa_ok(body: &str) -> Vec<Proposal> {
    let body = h(body);
    let mut chain = vec![0, 0];
    chain.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
    chain.extend_from_slice(&body);
    match parse_payloads(payload_type::SA, &chain).unwrap().pop() {
        Some(Payload::Sa(p)) => p,
        other => panic!("{other:?}"),
    }
}

#[test]
fn sa_structure_errors() {
    let malformed = |what| ParseError::Malformed { kind: 33, what };
    // Proposal number 0.
    assert_eq!(
        sa_err("00 00 0008 00 01 00 00"),
        malformed("proposal number 0")
    );
    // Numbers must grow by one.
    assert_eq!(
        sa_err("02 00 0008 01 01 00 00  00 00 0008 03 01 00 00"),
        malformed("proposal numbers not consecutive")
    );
    // A response carries one proposal with the chosen number.
    assert_eq!(sa_ok("00 00 0008 05 03 00 00")[0].num, 5);
    // Last-substructure markers.
    assert_eq!(
        sa_err("02 00 0008 01 01 00 00"),
        malformed("proposal marked not-last ends the SA")
    );
    assert_eq!(
        sa_err("00 00 0008 01 01 00 00  00 00 0008 02 01 00 00"),
        malformed("bytes after the last proposal")
    );
    assert_eq!(
        sa_err("01 00 0008 01 01 00 00"),
        malformed("bad last-substructure value in proposal")
    );
    assert_eq!(
        sa_err("00 00 0010 01 01 00 01  03 00 0008 01 00 0014"),
        malformed("bad last-substructure value in transform")
    );
    // Transform count larger or smaller than the transforms present.
    assert_eq!(
        sa_err("00 00 0010 01 01 00 02  03 00 0008 01 00 0014"),
        malformed("truncated transform header")
    );
    assert_eq!(
        sa_err("00 00 0010 01 01 00 00  00 00 0008 01 00 0014"),
        malformed("bytes after the last transform of a proposal")
    );
    // Lengths.
    assert_eq!(
        sa_err("00 00 0007 01 01 00 00"),
        malformed("proposal length below minimum")
    );
    assert_eq!(
        sa_err("00 00 0009 01 01 00 00"),
        malformed("proposal exceeds SA payload")
    );
    assert_eq!(
        sa_err("00 00 0008 01 01 04 00"),
        malformed("SPI exceeds proposal")
    );
    assert_eq!(
        sa_err("00 00 0010 01 01 00 01  00 00 0007 01 00 0014 00"),
        malformed("transform length below minimum")
    );
    assert_eq!(
        sa_err("00 00 0012 01 01 00 01  00 00 000a 01 00 0014 800e"),
        malformed("truncated transform attribute")
    );
}

#[test]
fn unrecognised_attributes_drop_the_proposal() {
    // Proposal 1 has an unknown TV attribute, proposal 2 a TLV attribute, proposal 3 a repeated key
    // length, proposal 4 is fine.
    let props = sa_ok(
        "02 00 0014 01 01 00 01  00 00 000c 01 00 0014 800f 0100
         02 00 0016 02 01 00 01  00 00 000e 01 00 0014 000e 0002 0100
         02 00 0018 03 01 00 01  00 00 0010 01 00 0014 800e 0100 800e 0080
         00 00 0014 04 01 00 01  00 00 000c 01 00 0014 800e 0080",
    );
    assert_eq!(props.len(), 1);
    assert_eq!(props[0].num, 4);
    assert_eq!(
        props[0].transforms,
        vec![Transform {
            kind: 1,
            id: 20,
            key_bits: Some(128)
        }]
    );
    // Found by fuzzing: when every proposal drops, the empty SA still re-encodes and parses.
    let none = sa_ok("00 00 0014 01 01 00 01  00 00 000c 01 00 0014 8000 0000");
    assert!(none.is_empty());
    let mut out = Vec::new();
    let first = encode_payloads(&[Payload::Sa(none)], &mut out);
    assert_eq!(out, h("00 00 0004"));
    assert_eq!(
        parse_payloads(first, &out).unwrap(),
        vec![Payload::Sa(vec![])]
    );
}

#[test]
fn payload_body_errors() {
    let err = |first: u8, s: &str| parse_payloads(first, &h(s)).unwrap_err();
    // Below the type's minimum length.
    assert_eq!(
        err(34, "00 00 0007 001300"),
        ParseError::PayloadLength {
            kind: 34,
            length: 7,
            remaining: 7
        }
    );
    assert_eq!(
        err(37, "00 00 0004"),
        ParseError::PayloadLength {
            kind: 37,
            length: 4,
            remaining: 4
        }
    );
    // Notify SPI larger than the payload.
    assert_eq!(
        err(41, "00 00 000a 03 04 4009 0102"),
        ParseError::Malformed {
            kind: 41,
            what: "SPI exceeds payload"
        }
    );
    // Delete: odd SPI size, count beyond payload, extra bytes.
    assert_eq!(
        err(42, "00 00 000a 03 02 0001 0102"),
        ParseError::Malformed {
            kind: 42,
            what: "unsupported SPI size"
        }
    );
    assert_eq!(
        err(42, "00 00 000c 03 04 0002 01020304"),
        ParseError::Malformed {
            kind: 42,
            what: "SPIs exceed payload"
        }
    );
    assert_eq!(
        err(42, "00 00 0009 01 00 0000 ff"),
        ParseError::Malformed {
            kind: 42,
            what: "bytes after the SPIs"
        }
    );
    assert_eq!(
        err(42, "00 00 0008 01 00 0001"),
        ParseError::Malformed {
            kind: 42,
            what: "unsupported SPI size"
        }
    );
    // TS: wrong selector length, unknown type, count beyond payload, trailing bytes.
    let what = |w| ParseError::Malformed { kind: 44, what: w };
    assert_eq!(
        err(
            44,
            "00 00 0018 01 000000 07 00 0011 0000 ffff 0a000000 0a0000ff"
        ),
        what("selector length does not match its type")
    );
    assert_eq!(
        err(
            44,
            "00 00 0018 01 000000 09 00 0010 0000 ffff 0a000000 0a0000ff"
        ),
        what("unsupported traffic selector type")
    );
    assert_eq!(
        err(
            44,
            "00 00 0018 02 000000 07 00 0010 0000 ffff 0a000000 0a0000ff"
        ),
        what("truncated traffic selector")
    );
    assert_eq!(
        err(
            44,
            "00 00 0019 01 000000 07 00 0010 0000 ffff 0a000000 0a0000ff 00"
        ),
        what("bytes after the last traffic selector")
    );
    // CP attribute longer than the payload.
    assert_eq!(
        err(47, "00 00 000c 01 000000 0001 0004"),
        ParseError::Malformed {
            kind: 47,
            what: "truncated configuration attribute"
        }
    );
}

#[test]
fn ts_helpers() {
    let net: ipnet::IpNet = "192.168.10.0/23".parse().unwrap();
    let ts = TrafficSelector::from_net(&net);
    assert_eq!(
        (ts.start_addr, ts.end_addr),
        (ip("192.168.10.0"), ip("192.168.11.255"))
    );
    assert_eq!((ts.ip_protocol, ts.start_port, ts.end_port), (0, 0, 65535));
    assert!(ts.contains(ip("192.168.11.7")));
    assert!(!ts.contains(ip("192.168.12.0")));
    assert!(!ts.contains(ip("::ffff:192.168.11.7")));
    assert_eq!(ts.to_nets(), vec![net]);

    let range = TrafficSelector {
        start_addr: ip("10.0.0.1"),
        end_addr: ip("10.0.0.6"),
        ..ts
    };
    let nets: Vec<String> = range.to_nets().iter().map(|n| n.to_string()).collect();
    assert_eq!(
        nets,
        ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]
    );

    let all4 = TrafficSelector {
        start_addr: ip("0.0.0.0"),
        end_addr: ip("255.255.255.255"),
        ..ts
    };
    assert_eq!(
        all4.to_nets(),
        vec!["0.0.0.0/0".parse::<ipnet::IpNet>().unwrap()]
    );
    let all6 = TrafficSelector {
        start_addr: ip("::"),
        end_addr: ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
        ..ts
    };
    assert_eq!(
        all6.to_nets(),
        vec!["::/0".parse::<ipnet::IpNet>().unwrap()]
    );
    let top = TrafficSelector {
        start_addr: ip("255.255.255.254"),
        end_addr: ip("255.255.255.255"),
        ..ts
    };
    assert_eq!(
        top.to_nets(),
        vec!["255.255.255.254/31".parse::<ipnet::IpNet>().unwrap()]
    );
    let empty = TrafficSelector {
        start_addr: ip("10.0.0.2"),
        end_addr: ip("10.0.0.1"),
        ..ts
    };
    assert!(empty.to_nets().is_empty());
    let mixed = TrafficSelector {
        start_addr: ip("10.0.0.2"),
        end_addr: ip("::1"),
        ..ts
    };
    assert!(mixed.to_nets().is_empty() && !mixed.contains(ip("10.0.0.2")));

    // Narrowing.
    let web = TrafficSelector {
        ip_protocol: 6,
        start_port: 80,
        end_port: 443,
        start_addr: ip("192.168.11.0"),
        end_addr: ip("192.168.20.0"),
    };
    assert_eq!(
        ts.intersect(&web),
        Some(TrafficSelector {
            end_addr: ip("192.168.11.255"),
            ..web
        })
    );
    assert_eq!(web.intersect(&ts), ts.intersect(&web));
    assert_eq!(
        web.intersect(&TrafficSelector {
            ip_protocol: 17,
            ..web
        }),
        None
    );
    assert_eq!(
        web.intersect(&TrafficSelector {
            start_port: 444,
            end_port: 500,
            ..web
        }),
        None
    );
    assert_eq!(
        range.intersect(&TrafficSelector::from_net(&"10.0.0.0/8".parse().unwrap())),
        Some(range)
    );
    assert_eq!(range.intersect(&ts), None);
    assert_eq!(
        range.intersect(&TrafficSelector::from_net(&"::/0".parse().unwrap())),
        None
    );
}

// ---------------------------------------------------------------------------------------------
// Property tests

fn arb_addr_pair() -> impl Strategy<Value = (IpAddr, IpAddr)> {
    prop_oneof![
        (any::<u32>(), any::<u32>())
            .prop_map(|(a, b)| (IpAddr::from(a.to_be_bytes()), IpAddr::from(b.to_be_bytes()))),
        (any::<u128>(), any::<u128>())
            .prop_map(|(a, b)| (IpAddr::from(a.to_be_bytes()), IpAddr::from(b.to_be_bytes()))),
    ]
}

fn arb_ts() -> impl Strategy<Value = TrafficSelector> {
    (any::<u8>(), any::<u16>(), any::<u16>(), arb_addr_pair()).prop_map(|(p, sp, ep, (sa, ea))| {
        TrafficSelector {
            ip_protocol: p,
            start_port: sp,
            end_port: ep,
            start_addr: sa,
            end_addr: ea,
        }
    })
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max)
}

fn arb_proposals() -> impl Strategy<Value = Vec<Proposal>> {
    let transform = (any::<u8>(), any::<u16>(), any::<Option<u16>>())
        .prop_map(|(kind, id, key_bits)| Transform { kind, id, key_bits });
    let proposal = (
        any::<u8>(),
        bytes(8),
        prop::collection::vec(transform, 0..6),
    );
    (1u8..=250, prop::collection::vec(proposal, 0..4)).prop_map(|(first, ps)| {
        ps.into_iter()
            .enumerate()
            .map(|(i, (protocol, spi, transforms))| Proposal {
                num: first + i as u8,
                protocol,
                spi,
                transforms,
            })
            .collect()
    })
}

const KNOWN: [u8; 16] = [
    33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 53,
];

/// Any payload that can appear before the end of a chain (everything but SK/SKF).
fn arb_plain_payload() -> impl Strategy<Value = Payload> {
    let id = || (any::<u8>(), bytes(32)).prop_map(|(kind, data)| Identification { kind, data });
    prop_oneof![
        arb_proposals().prop_map(Payload::Sa),
        (any::<u16>(), bytes(64)).prop_map(|(group, data)| Payload::Ke { group, data }),
        bytes(64).prop_map(Payload::Nonce),
        id().prop_map(Payload::IdI),
        id().prop_map(Payload::IdR),
        (any::<u8>(), bytes(32)).prop_map(|(method, data)| Payload::Auth { method, data }),
        (any::<u8>(), bytes(8), any::<u16>(), bytes(32)).prop_map(|(protocol, spi, kind, data)| {
            Payload::Notify(Notify {
                protocol,
                spi,
                kind,
                data,
            })
        }),
        (any::<u8>(), prop::collection::vec(any::<u32>(), 0..5))
            .prop_map(|(protocol, spis)| Payload::Delete(Delete { protocol, spis })),
        bytes(32).prop_map(Payload::Vendor),
        prop::collection::vec(arb_ts(), 0..4).prop_map(Payload::TsI),
        prop::collection::vec(arb_ts(), 0..4).prop_map(Payload::TsR),
        (
            any::<u8>(),
            prop::collection::vec((0u16..0x8000, bytes(16)), 0..4)
        )
            .prop_map(|(cfg_type, attributes)| Payload::Cp(ConfigPayload {
                cfg_type,
                attributes
            })),
        (any::<u8>(), bytes(32)).prop_map(|(encoding, data)| Payload::Cert { encoding, data }),
        (any::<u8>(), bytes(32)).prop_map(|(encoding, data)| Payload::CertReq { encoding, data }),
        (1u8..=255, bytes(32))
            .prop_filter("unknown types only", |(k, _)| !KNOWN.contains(k))
            .prop_map(|(kind, data)| Payload::Unknown {
                kind,
                critical: false,
                data
            }),
    ]
}

/// An optional encrypted last payload, as (payload with body 0..len, body bytes).
fn arb_encrypted() -> impl Strategy<Value = Option<(Payload, Vec<u8>)>> {
    prop::option::of(prop_oneof![
        (any::<u8>(), bytes(48)).prop_map(|(first_inner, body)| {
            (
                Payload::Sk {
                    first_inner,
                    body: 0..body.len(),
                },
                body,
            )
        }),
        (any::<u8>(), 1u16..=u16::MAX, any::<u16>(), bytes(48)).prop_map(
            |(first_inner, total, n, body)| {
                let number = 1 + n % total;
                (
                    Payload::Skf {
                        first_inner,
                        number,
                        total,
                        body: 0..body.len(),
                    },
                    body,
                )
            }
        ),
    ])
}

fn arb_header() -> impl Strategy<Value = Header> {
    (
        any::<u64>(),
        any::<u64>(),
        0u8..16,
        any::<u8>(),
        any::<u8>(),
        any::<u32>(),
    )
        .prop_map(
            |(spi_i, spi_r, minor, exchange, flags, message_id)| Header {
                spi_i,
                spi_r,
                next_payload: 0,
                version: 0x20 | minor,
                exchange,
                flags,
                message_id,
                length: 0,
            },
        )
}

/// Re-encodes a parsed message, copying SK/SKF bodies from the original bytes.
fn reencode(msg: &Message, src: &[u8]) -> Vec<u8> {
    let mut out = msg.encode();
    if let Some(Payload::Sk { body, .. } | Payload::Skf { body, .. }) = msg.payloads.last() {
        out.extend_from_slice(&src[body.clone()]);
        set_length(&mut out);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn message_round_trip(
        header in arb_header(),
        plain in prop::collection::vec(arb_plain_payload(), 0..6),
        encrypted in arb_encrypted(),
    ) {
        let mut msg = Message { header, payloads: plain };
        let mut body = Vec::new();
        if let Some((p, b)) = encrypted {
            msg.payloads.push(p);
            body = b;
        }
        let mut bytes = msg.encode();
        let body_start = bytes.len();
        bytes.extend_from_slice(&body);
        set_length(&mut bytes);

        // What parse must return: header fields recomputed, body ranges pointing into `bytes`.
        let mut expected = msg.clone();
        expected.header.length = bytes.len() as u32;
        expected.header.next_payload = msg.payloads.first().map_or(0, Payload::kind);
        match expected.payloads.last_mut() {
            Some(Payload::Sk { body: r, .. }) => *r = body_start..bytes.len(),
            Some(Payload::Skf { body: r, .. }) => *r = body_start..bytes.len(),
            _ => {}
        }
        let parsed = parse(&bytes).unwrap();
        prop_assert_eq!(&parsed, &expected);
        prop_assert_eq!(reencode(&parsed, &bytes), bytes);
    }

    #[test]
    fn garbage_never_panics(data in bytes(600), first in any::<u8>()) {
        if let Ok(msg) = parse(&data) {
            // Whatever parsed re-encodes to something that parses to the same message.
            let again = reencode(&msg, &data);
            let reparsed = parse(&again).unwrap();
            prop_assert_eq!(reparsed.payloads.len(), msg.payloads.len());
        }
        let _ = parse_payloads(first, &data);
        let _ = parse_header(&data);
    }

    #[test]
    fn mutated_messages_never_panic(
        plain in prop::collection::vec(arb_plain_payload(), 1..6),
        header in arb_header(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let good = Message { header, payloads: plain }.encode();
        let mut bad = good.clone();
        for (i, v) in flips {
            let len = bad.len();
            bad[i.index(len)] = v;
        }
        let _ = parse(&bad);
        set_length(&mut bad);
        let _ = parse(&bad);
        // Any strict truncation is an error.
        let n = cut.index(good.len());
        let mut short = good[..n].to_vec();
        prop_assert!(parse(&short).is_err());
        set_length(&mut short);
        prop_assert!(parse(&short).is_err() || n == HEADER_LEN);
    }

    #[test]
    fn to_nets_is_exact((a, b) in arb_addr_pair(), probe in any::<u128>()) {
        let ts = TrafficSelector { ip_protocol: 0, start_port: 0, end_port: 65535, start_addr: a, end_addr: b };
        let nets = ts.to_nets();
        if a.is_ipv4() != b.is_ipv4() || a > b {
            prop_assert!(nets.is_empty());
            return Ok(());
        }
        // Contiguous, ordered, covering exactly [a, b]; each prefix maximal: no two adjacent
        // prefixes of equal length merge into an aligned one (minimality).
        prop_assert_eq!(nets.first().unwrap().network(), a);
        prop_assert_eq!(nets.last().unwrap().broadcast(), b);
        for w in nets.windows(2) {
            let next = match w[0].broadcast() {
                IpAddr::V4(x) => IpAddr::from((u32::from(x) + 1).to_be_bytes()),
                IpAddr::V6(x) => IpAddr::from((u128::from(x) + 1).to_be_bytes()),
            };
            prop_assert_eq!(w[1].network(), next);
            if w[0].prefix_len() == w[1].prefix_len() {
                prop_assert_ne!(w[0].supernet(), w[1].supernet());
            }
        }
        let bound = if a.is_ipv4() { 62 } else { 254 };
        prop_assert!(nets.len() <= bound);
        // A probe inside the range is inside exactly one prefix.
        let probe = match a {
            IpAddr::V4(_) => IpAddr::from((probe as u32).to_be_bytes()),
            IpAddr::V6(_) => IpAddr::from(probe.to_be_bytes()),
        };
        let hits = nets.iter().filter(|n| n.contains(&probe)).count();
        prop_assert_eq!(hits, usize::from(ts.contains(probe)));
    }

    #[test]
    fn intersect_is_the_set_intersection(x in arb_ts(), y in arb_ts(), probe in any::<u128>()) {
        let probe = match x.start_addr {
            IpAddr::V4(_) => IpAddr::from((probe as u32).to_be_bytes()),
            IpAddr::V6(_) => IpAddr::from(probe.to_be_bytes()),
        };
        let both = x.contains(probe) && y.contains(probe);
        match x.intersect(&y) {
            Some(i) => {
                prop_assert_eq!(i.contains(probe), both);
                prop_assert_eq!(Some(i), y.intersect(&x));
            }
            None => {
                let ports_meet = x.start_port.max(y.start_port) <= x.end_port.min(y.end_port);
                let protos_meet = x.ip_protocol == 0 || y.ip_protocol == 0 || x.ip_protocol == y.ip_protocol;
                prop_assert!(!both || !ports_meet || !protos_meet);
            }
        }
    }
}

#[test]
fn traffic_selector_serde_round_trip() {
    let v6 = TrafficSelector::from_net(&"2001:db8::/32".parse().unwrap());
    let v4 = TrafficSelector {
        ip_protocol: 6,
        start_port: 80,
        end_port: 443,
        start_addr: "10.0.0.1".parse().unwrap(),
        end_addr: "10.0.0.9".parse().unwrap(),
    };
    let j = serde_json::to_string(&vec![v4, v6]).unwrap();
    let back: Vec<TrafficSelector> = serde_json::from_str(&j).unwrap();
    assert_eq!(back, vec![v4, v6]);
}
