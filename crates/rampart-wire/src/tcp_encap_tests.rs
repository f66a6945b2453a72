use proptest::prelude::*;

use super::*;

/// A decoded frame with owned bytes, to compare across calls.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    Ike(Vec<u8>),
    Esp(Vec<u8>),
    Keepalive,
}

impl Owned {
    fn of(f: Frame<'_>) -> Owned {
        match f {
            Frame::Ike(m) => Owned::Ike(m.to_vec()),
            Frame::Esp(p) => Owned::Esp(p.to_vec()),
            Frame::Keepalive => Owned::Keepalive,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let mut buf = vec![0; MAX_FRAME_LEN];
        let n = match self {
            Owned::Ike(m) => encode_frame(Frame::Ike(m), &mut buf),
            Owned::Esp(p) => encode_frame(Frame::Esp(p), &mut buf),
            Owned::Keepalive => encode_frame(Frame::Keepalive, &mut buf),
        }
        .unwrap();
        out.extend_from_slice(&buf[..n]);
    }
}

fn ike(len: usize, fill: u8) -> Vec<u8> {
    let mut m = vec![fill; len];
    m[0] = 0x11; // non-zero SPI byte, irrelevant for framing
    m
}

fn esp(len: usize, spi: u32) -> Vec<u8> {
    let mut p = vec![0xab; len];
    p[..4].copy_from_slice(&spi.to_be_bytes());
    p
}

/// Feeds `chunks` one after another, taking every frame as soon as it is complete.
fn decode_chunks(role: Role, chunks: &[&[u8]]) -> Result<Vec<Owned>, StreamError> {
    let mut d = Decoder::new(role, MAX_FRAME_LEN);
    let mut out = Vec::new();
    for chunk in chunks {
        let mut rest = *chunk;
        loop {
            let n = d.push(rest);
            rest = &rest[n..];
            while let Some(f) = d.next_frame()? {
                out.push(Owned::of(f));
            }
            if rest.is_empty() {
                break;
            }
            assert!(n > 0, "decoder took nothing while frames were drained");
        }
    }
    assert!(d.at_boundary(), "bytes left over: {}", d.pending());
    Ok(out)
}

fn sample_stream() -> (Vec<u8>, Vec<Owned>) {
    let frames = vec![
        Owned::Ike(ike(28, 1)),
        Owned::Esp(esp(8, 1)),
        Owned::Keepalive,
        Owned::Esp(esp(100, 0xdead_beef)),
        Owned::Ike(ike(77, 2)),
    ];
    let mut bytes = PREFIX.to_vec();
    for f in &frames {
        f.encode(&mut bytes);
    }
    (bytes, frames)
}

#[test]
fn encodes_as_rfc9329_says() {
    let mut out = [0u8; 64];
    let m = ike(28, 0);
    assert_eq!(encode_frame(Frame::Ike(&m), &mut out), Ok(34));
    assert_eq!(&out[..6], &[0, 34, 0, 0, 0, 0]);
    assert_eq!(&out[6..34], &m[..]);
    let p = esp(8, 0x0102_0304);
    assert_eq!(encode_frame(Frame::Esp(&p), &mut out), Ok(10));
    assert_eq!(&out[..6], &[0, 10, 1, 2, 3, 4]);
    assert_eq!(encode_frame(Frame::Keepalive, &mut out), Ok(3));
    assert_eq!(&out[..3], &[0, 3, 0xff]);
    assert_eq!(encode_ike_header(1000, &mut out), Ok(6));
    assert_eq!(&out[..6], &[0x03, 0xee, 0, 0, 0, 0]);
    assert_eq!(encode_esp_header(1000, &mut out), Ok(2));
    assert_eq!(&out[..2], &[0x03, 0xea]);
}

#[test]
fn encode_errors() {
    let mut big = vec![0u8; MAX_FRAME_LEN + 8];
    let mut small = [0u8; 5];
    assert_eq!(
        encode_ike_header(27, &mut big),
        Err(EncodeError::ShortIke(27))
    );
    assert_eq!(
        encode_ike_header(MAX_IKE_LEN + 1, &mut big),
        Err(EncodeError::TooLong(MAX_IKE_LEN + 1))
    );
    assert_eq!(encode_ike_header(MAX_IKE_LEN, &mut big), Ok(6));
    assert_eq!(&big[..2], &[0xff, 0xff]);
    assert_eq!(
        encode_ike_header(28, &mut small),
        Err(EncodeError::BufferTooSmall { need: 6, have: 5 })
    );
    assert_eq!(encode_esp_header(7, &mut big), Err(EncodeError::NotEsp));
    assert_eq!(
        encode_esp_header(MAX_ESP_LEN + 1, &mut big),
        Err(EncodeError::TooLong(MAX_ESP_LEN + 1))
    );
    assert_eq!(encode_esp_header(MAX_ESP_LEN, &mut big), Ok(2));
    assert_eq!(
        encode_esp_header(8, &mut small[..1]),
        Err(EncodeError::BufferTooSmall { need: 2, have: 1 })
    );
    let zero_spi = [0u8; 16];
    assert_eq!(
        encode_frame(Frame::Esp(&zero_spi), &mut big),
        Err(EncodeError::NotEsp)
    );
    assert_eq!(
        encode_frame(Frame::Esp(&[1, 2]), &mut big),
        Err(EncodeError::NotEsp)
    );
    let p = esp(MAX_ESP_LEN + 1, 7);
    assert_eq!(
        encode_frame(Frame::Esp(&p), &mut big),
        Err(EncodeError::TooLong(MAX_ESP_LEN + 1))
    );
    let m = ike(100, 3);
    assert_eq!(
        encode_frame(Frame::Ike(&m), &mut big[..105]),
        Err(EncodeError::BufferTooSmall {
            need: 106,
            have: 105
        })
    );
    assert_eq!(
        encode_keepalive(&mut small[..2]),
        Err(EncodeError::BufferTooSmall { need: 3, have: 2 })
    );
}

#[test]
fn whole_stream_in_one_read() {
    let (bytes, frames) = sample_stream();
    assert_eq!(decode_chunks(Role::Responder, &[&bytes]), Ok(frames));
}

#[test]
fn every_split_point_of_a_multi_frame_stream() {
    let (bytes, frames) = sample_stream();
    for i in 0..=bytes.len() {
        let (a, b) = bytes.split_at(i);
        assert_eq!(
            decode_chunks(Role::Responder, &[a, b]),
            Ok(frames.clone()),
            "split at {i}"
        );
        for j in i..=bytes.len() {
            let (b, c) = b.split_at(j - i);
            assert_eq!(
                decode_chunks(Role::Responder, &[a, b, c]),
                Ok(frames.clone()),
                "split at {i} and {j}"
            );
        }
    }
}

#[test]
fn byte_by_byte() {
    let (bytes, frames) = sample_stream();
    let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(decode_chunks(Role::Responder, &chunks), Ok(frames));
}

#[test]
fn initiator_reads_no_prefix() {
    let (bytes, frames) = sample_stream();
    assert_eq!(decode_chunks(Role::Initiator, &[&bytes[6..]]), Ok(frames));
    // The responder's stream starting with the prefix is misframed: "IK" is a Length of 18763,
    // "ET" then "CP" and the zero marker follow, nothing is complete yet.
    let mut d = Decoder::new(Role::Initiator, 1000);
    d.push(&bytes);
    assert_eq!(
        d.next_frame(),
        Err(StreamError::Oversize {
            length: 0x494b,
            max: 1000
        })
    );
}

#[test]
fn bad_prefix_at_each_position() {
    for at in 0..PREFIX.len() {
        let mut bytes = PREFIX.to_vec();
        bytes[at] ^= 0x20;
        let mut d = Decoder::new(Role::Responder, MAX_FRAME_LEN);
        d.push(&bytes);
        assert_eq!(d.next_frame(), Err(StreamError::BadPrefix { at }));
        // Fatal: the same error again, no more bytes taken.
        assert_eq!(d.next_frame(), Err(StreamError::BadPrefix { at }));
        assert_eq!(d.push(&[0, 3, 0xff]), 0);
        assert!(d.spare().is_empty());
        assert_eq!(d.error(), Some(StreamError::BadPrefix { at }));
        assert!(!d.at_boundary());
    }
}

/// Decodes `frame` (after the prefix) and returns the first error or frame.
fn one(frame: &[u8]) -> Result<Option<Owned>, StreamError> {
    let mut d = Decoder::new(Role::Initiator, 2000);
    d.push(frame);
    d.next_frame().map(|f| f.map(Owned::of))
}

#[test]
fn every_stream_error() {
    assert_eq!(one(&[0, 0]), Err(StreamError::ZeroLength(0)));
    assert_eq!(one(&[0, 1]), Err(StreamError::ZeroLength(1)));
    assert_eq!(one(&[0, 2]), Err(StreamError::ZeroLength(2)));
    assert_eq!(one(&[0, 3, 0xff]), Ok(Some(Owned::Keepalive)));
    assert_eq!(one(&[0, 3, 0x00]), Err(StreamError::BadKeepalive(0)));
    assert_eq!(one(&[0, 3, 0xfe]), Err(StreamError::BadKeepalive(0xfe)));
    assert_eq!(one(&[0, 4, 0xff, 0xff]), Err(StreamError::ShortFrame(2)));
    assert_eq!(one(&[0, 5, 0, 0, 0]), Err(StreamError::ShortFrame(3)));
    assert_eq!(one(&[0, 6, 0, 0, 0, 0]), Err(StreamError::ShortIke(0)));
    let mut short_ike = vec![0, 33, 0, 0, 0, 0];
    short_ike.extend_from_slice(&[1; 27]);
    assert_eq!(one(&short_ike), Err(StreamError::ShortIke(27)));
    assert_eq!(one(&[0, 6, 0, 0, 0, 1]), Err(StreamError::ShortEsp(4)));
    assert_eq!(
        one(&[0, 9, 1, 2, 3, 4, 5, 6, 7]),
        Err(StreamError::ShortEsp(7))
    );
    assert_eq!(
        one(&[0, 10, 1, 2, 3, 4, 5, 6, 7, 8]),
        Ok(Some(Owned::Esp(vec![1, 2, 3, 4, 5, 6, 7, 8])))
    );
    assert_eq!(
        one(&[0x07, 0xd1]),
        Err(StreamError::Oversize {
            length: 2001,
            max: 2000
        })
    );
    // Exactly the limit is fine (and needs the whole buffer).
    let mut full = vec![0x07, 0xd0];
    full.extend_from_slice(&esp(1998, 9));
    assert_eq!(one(&full), Ok(Some(Owned::Esp(esp(1998, 9)))));
    // A truncated frame is not an error, only incomplete.
    assert_eq!(one(&full[..1999]), Ok(None));
    assert_eq!(one(&[0]), Ok(None));
}

#[test]
fn a_bad_frame_after_good_ones_fails_the_stream() {
    let mut bytes = Vec::new();
    Owned::Keepalive.encode(&mut bytes);
    bytes.extend_from_slice(&[0, 1]);
    Owned::Keepalive.encode(&mut bytes);
    let mut d = Decoder::new(Role::Initiator, MAX_FRAME_LEN);
    assert_eq!(d.push(&bytes), bytes.len());
    assert_eq!(d.next_frame(), Ok(Some(Frame::Keepalive)));
    assert_eq!(d.next_frame(), Err(StreamError::ZeroLength(1)));
    assert_eq!(d.next_frame(), Err(StreamError::ZeroLength(1)));
}

#[test]
fn backpressure_when_the_buffer_holds_whole_frames() {
    // A 40-byte buffer, two 34-byte IKE frames: the second only fits once the first is taken.
    let mut bytes = Vec::new();
    Owned::Ike(ike(28, 5)).encode(&mut bytes);
    Owned::Ike(ike(28, 6)).encode(&mut bytes);
    let mut d = Decoder::new(Role::Initiator, 40);
    assert_eq!(d.max_frame(), 40);
    assert_eq!(d.push(&bytes), 40);
    assert_eq!(d.next_frame(), Ok(Some(Frame::Ike(&ike(28, 5)))));
    assert_eq!(d.next_frame(), Ok(None));
    assert_eq!(d.pending(), 6);
    assert_eq!(d.push(&bytes[40..]), 28);
    assert_eq!(d.next_frame(), Ok(Some(Frame::Ike(&ike(28, 6)))));
    assert!(d.at_boundary());
    // Clamped to the smallest useful size.
    assert_eq!(
        Decoder::new(Role::Initiator, 0).max_frame(),
        MIN_IKE_FRAME_LEN
    );
    assert_eq!(
        Decoder::new(Role::Initiator, usize::MAX).max_frame(),
        MAX_FRAME_LEN
    );
}

#[test]
fn read_into_spare_then_commit() {
    let (bytes, frames) = sample_stream();
    let mut d = Decoder::new(Role::Responder, 200);
    let mut got = Vec::new();
    let mut off = 0;
    while off < bytes.len() {
        let spare = d.spare();
        let n = spare.len().min(7).min(bytes.len() - off);
        spare[..n].copy_from_slice(&bytes[off..off + n]);
        d.commit(n);
        off += n;
        while let Some(f) = d.next_frame().unwrap() {
            got.push(Owned::of(f));
        }
    }
    assert_eq!(got, frames);
    assert!(d.at_boundary());
}

#[test]
fn at_boundary_inside_the_prefix() {
    let mut d = Decoder::new(Role::Responder, MAX_FRAME_LEN);
    assert!(d.at_boundary());
    d.push(b"IKE");
    assert_eq!(d.next_frame(), Ok(None));
    assert!(!d.at_boundary());
    d.push(b"TCP");
    assert_eq!(d.next_frame(), Ok(None));
    assert!(d.at_boundary());
}

fn arb_frame() -> impl Strategy<Value = Owned> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 28..600).prop_map(Owned::Ike),
        (1u32.., prop::collection::vec(any::<u8>(), 4..600)).prop_map(|(spi, mut rest)| {
            let mut p = spi.to_be_bytes().to_vec();
            p.append(&mut rest);
            Owned::Esp(p)
        }),
        Just(Owned::Keepalive),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_frames_split_anywhere_decode_to_themselves(
        frames in prop::collection::vec(arb_frame(), 0..12),
        role_responder in any::<bool>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..16),
    ) {
        let role = if role_responder { Role::Responder } else { Role::Initiator };
        let mut bytes = if role_responder { PREFIX.to_vec() } else { Vec::new() };
        for f in &frames {
            f.encode(&mut bytes);
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        points.push(0);
        points.push(bytes.len());
        points.sort_unstable();
        let chunks: Vec<&[u8]> = points.windows(2).map(|w| &bytes[w[0]..w[1]]).collect();
        prop_assert_eq!(decode_chunks(role, &chunks), Ok(frames));
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        data in prop::collection::vec(any::<u8>(), 0..400),
        chunk in 1usize..50,
        max in 0usize..300,
    ) {
        let mut d = Decoder::new(Role::Responder, max);
        for c in data.chunks(chunk) {
            let mut rest = c;
            while !rest.is_empty() {
                let n = d.push(rest);
                rest = &rest[n..];
                let mut progressed = n > 0;
                loop {
                    match d.next_frame() {
                        Ok(Some(_)) => progressed = true,
                        Ok(None) => break,
                        Err(_) => return Ok(()),
                    }
                }
                prop_assert!(progressed);
            }
        }
    }
}
