//! Codec round trips, malformed inputs and a no-panic property.

use proptest::prelude::*;
use rampart_eap::mschapv2::{FailureMessage, MsChapV2, SuccessMessage};
use rampart_eap::packet::{Body, Packet};
use rampart_eap::DecodeError;

fn roundtrip(p: Packet) {
    let bytes = p.encode().unwrap();
    assert_eq!(
        usize::from(u16::from_be_bytes([bytes[2], bytes[3]])),
        bytes.len()
    );
    assert_eq!(Packet::decode(&bytes).unwrap(), p);
}

#[test]
fn roundtrips() {
    roundtrip(Packet::Request {
        identifier: 1,
        body: Body::Identity(vec![]),
    });
    roundtrip(Packet::Response {
        identifier: 1,
        body: Body::Identity(b"bob".to_vec()),
    });
    roundtrip(Packet::Response {
        identifier: 2,
        body: Body::Nak(vec![26]),
    });
    roundtrip(Packet::Success { identifier: 3 });
    roundtrip(Packet::Failure { identifier: 4 });
    roundtrip(Packet::Request {
        identifier: 5,
        body: Body::MsChapV2(MsChapV2::Challenge {
            ms_id: 5,
            challenge: [7; 16],
            name: b"gw".to_vec(),
        }),
    });
    roundtrip(Packet::Response {
        identifier: 5,
        body: Body::MsChapV2(MsChapV2::Response {
            ms_id: 5,
            peer_challenge: [1; 16],
            nt_response: [2; 24],
            flags: 0,
            name: b"bob".to_vec(),
        }),
    });
    roundtrip(Packet::Response {
        identifier: 6,
        body: Body::MsChapV2(MsChapV2::SuccessAck),
    });
    roundtrip(Packet::Response {
        identifier: 6,
        body: Body::MsChapV2(MsChapV2::FailureAck),
    });
    roundtrip(Packet::Request {
        identifier: 9,
        body: Body::Other {
            kind: 254,
            data: vec![0; 7],
        },
    });
}

#[test]
fn challenge_layout() {
    let p = Packet::Request {
        identifier: 0x11,
        body: Body::MsChapV2(MsChapV2::Challenge {
            ms_id: 0x11,
            challenge: [0xAA; 16],
            name: b"gw".to_vec(),
        }),
    };
    let b = p.encode().unwrap();
    // Code, Id, Length(28), Type 26, OpCode 1, MS-ID, MS-Length(23), Value-Size 16.
    assert_eq!(&b[..10], &[1, 0x11, 0, 28, 26, 1, 0x11, 0, 23, 16]);
    assert_eq!(&b[10..26], &[0xAA; 16]);
    assert_eq!(&b[26..], b"gw");
}

#[test]
fn response_layout() {
    let p = Packet::Response {
        identifier: 2,
        body: Body::MsChapV2(MsChapV2::Response {
            ms_id: 2,
            peer_challenge: [1; 16],
            nt_response: [2; 24],
            flags: 0,
            name: b"u".to_vec(),
        }),
    };
    let b = p.encode().unwrap();
    assert_eq!(b.len(), 4 + 1 + 4 + 1 + 49 + 1);
    assert_eq!(&b[5..10], &[2, 2, 0, 55, 49]);
    assert_eq!(&b[26..34], &[0; 8], "reserved");
    assert_eq!(&b[34..58], &[2; 24]);
}

#[test]
fn trailing_padding_is_ignored() {
    let mut b = Packet::Success { identifier: 1 }.encode().unwrap();
    b.extend_from_slice(&[0xFF; 6]);
    assert_eq!(
        Packet::decode(&b).unwrap(),
        Packet::Success { identifier: 1 }
    );
}

#[test]
fn malformed() {
    assert_eq!(
        Packet::decode(&[1, 2]),
        Err(DecodeError::Truncated { need: 4, have: 2 })
    );
    assert_eq!(
        Packet::decode(&[1, 2, 0, 3]),
        Err(DecodeError::BadLength {
            declared: 3,
            available: 4
        })
    );
    assert_eq!(
        Packet::decode(&[1, 2, 0, 9, 1]),
        Err(DecodeError::BadLength {
            declared: 9,
            available: 5
        })
    );
    assert_eq!(
        Packet::decode(&[7, 2, 0, 4]),
        Err(DecodeError::UnknownCode(7))
    );
    assert_eq!(Packet::decode(&[1, 2, 0, 4]), Err(DecodeError::MissingType));
    // Challenge with a wrong Value-Size.
    let mut c = vec![1, 1, 0, 0, 26, 1, 1, 0, 0, 15];
    c.extend_from_slice(&[0; 16]);
    let n = c.len() as u16;
    c[2..4].copy_from_slice(&n.to_be_bytes());
    c[7..9].copy_from_slice(&(n - 5).to_be_bytes());
    assert_eq!(
        Packet::decode(&c),
        Err(DecodeError::BadValueSize {
            expected: 16,
            got: 15
        })
    );
    // Challenge too short.
    assert!(matches!(
        Packet::decode(&[1, 1, 0, 10, 26, 1, 1, 0, 5, 16]),
        Err(DecodeError::Truncated { .. })
    ));
    // MS-Length mismatch.
    assert_eq!(
        Packet::decode(&[1, 1, 0, 10, 26, 3, 1, 0, 9, b'x']),
        Err(DecodeError::MsLengthMismatch {
            declared: 9,
            actual: 5
        })
    );
    // Challenge inside a Response, Response inside a Request.
    assert!(matches!(
        Packet::decode(&[2, 1, 0, 6, 26, 1]),
        Err(DecodeError::WrongDirection { opcode: 1, .. })
    ));
    assert!(matches!(
        Packet::decode(&[1, 1, 0, 6, 26, 2]),
        Err(DecodeError::WrongDirection { opcode: 2, .. })
    ));
    assert_eq!(
        Packet::decode(&[1, 1, 0, 6, 26, 7]),
        Err(DecodeError::UnknownOpCode(7))
    );
    assert_eq!(
        Packet::decode(&[1, 1, 0, 5, 26]),
        Err(DecodeError::Truncated { need: 1, have: 0 })
    );
}

#[test]
fn success_message() {
    let m = SuccessMessage::parse(b"S=407A5589115FD0D6209F510FE9C04566932CDA56 M=Welcome home\0")
        .unwrap();
    assert_eq!(m.authenticator_response[0], 0x40);
    assert_eq!(m.message.as_deref(), Some("Welcome home"));
    let bare = SuccessMessage::parse(b"S=407a5589115fd0d6209f510fe9c04566932cda56").unwrap();
    assert_eq!(bare.authenticator_response, m.authenticator_response);
    assert_eq!(bare.message, None);
    assert_eq!(SuccessMessage::parse(&bare.format()).unwrap(), bare);
    for bad in [
        &b"S=407A"[..],
        b"X=407A5589115FD0D6209F510FE9C04566932CDA56",
        b"S=407A5589115FD0D6209F510FE9C04566932CDAZZ",
        b"S=407A5589115FD0D6209F510FE9C04566932CDA56junk",
        b"\xff\xfe",
    ] {
        assert_eq!(
            SuccessMessage::parse(bad),
            Err(DecodeError::BadMessage("Success")),
            "{bad:?}"
        );
    }
}

#[test]
fn failure_message() {
    let m = FailureMessage::parse(
        b"E=691 R=1 C=0102030405060708090A0B0C0D0E0F10 V=3 M=bad password, try again",
    )
    .unwrap();
    assert_eq!(m.error, 691);
    assert!(m.retry);
    assert_eq!(m.challenge.unwrap()[15], 0x10);
    assert_eq!(m.version, Some(3));
    assert_eq!(m.message.as_deref(), Some("bad password, try again"));
    let ours = FailureMessage::authentication_failure("no");
    assert_eq!(
        String::from_utf8(ours.format()).unwrap(),
        "E=691 R=0 C=00000000000000000000000000000000 V=3 M=no"
    );
    assert_eq!(FailureMessage::parse(&ours.format()).unwrap(), ours);
    assert!(FailureMessage::parse(b"R=0 V=3").is_err());
    assert!(FailureMessage::parse(b"E=abc").is_err());
    assert!(FailureMessage::parse(b"E=691 C=12").is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        if let Ok(p) = Packet::decode(&bytes) {
            // Whatever decodes re-encodes to something that decodes to the same packet.
            let again = p.encode().unwrap();
            prop_assert_eq!(Packet::decode(&again).unwrap(), p);
        }
        let _ = SuccessMessage::parse(&bytes);
        let _ = FailureMessage::parse(&bytes);
    }

    /// Random bytes behind a valid EAP/MSCHAPv2 header reach the MS-CHAPv2 decoder.
    #[test]
    fn random_mschapv2_never_panics(code in 1u8..=2, tail in proptest::collection::vec(any::<u8>(), 0..96)) {
        let mut b = vec![code, 0, 0, 0, 26];
        b.extend_from_slice(&tail);
        let n = b.len() as u16;
        b[2..4].copy_from_slice(&n.to_be_bytes());
        if b.len() >= 9 {
            b[7..9].copy_from_slice(&(n - 5).to_be_bytes());
        }
        if let Ok(p) = Packet::decode(&b) {
            prop_assert_eq!(Packet::decode(&p.encode().unwrap()).unwrap(), p);
        }
    }
}
