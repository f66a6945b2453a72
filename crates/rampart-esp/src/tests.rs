//! Engine tests: published ESP vectors, round trips, ESN, replay, tamper and lifetimes.

use crate::*;
use rampart_crypto::{Encr, Integ, Rng};

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

pub(crate) fn cfg<'a>(encr: Encr, key: &'a [u8], integ: &'a [u8], esn: bool) -> SaConfig<'a> {
    SaConfig {
        spi: 0x1234_5678,
        encr,
        encr_key: key,
        integ: (!encr.is_aead()).then_some((Integ::HmacSha256_128, integ)),
        esn,
        replay_window: DEFAULT_REPLAY_WINDOW,
        lifetime: Lifetime::default(),
    }
}

pub(crate) fn keys(encr: Encr, rng: &mut Rng) -> (Vec<u8>, Vec<u8>) {
    let mut k = vec![0u8; encr.key_len() + encr.salt_len()];
    rng.fill(&mut k);
    let mut i = vec![0u8; 32];
    rng.fill(&mut i);
    (k, i)
}

/// A buffer with the payload at MAX_HEADROOM and MAX_TAILROOM spare bytes after it.
pub(crate) fn framed(payload: &[u8]) -> (Vec<u8>, std::ops::Range<usize>) {
    let mut buf = vec![0u8; MAX_HEADROOM + payload.len() + MAX_TAILROOM];
    buf[MAX_HEADROOM..MAX_HEADROOM + payload.len()].copy_from_slice(payload);
    (buf, MAX_HEADROOM..MAX_HEADROOM + payload.len())
}

struct Vector {
    encr: Encr,
    key: &'static str, // key || salt
    spi: u32,
    seq: u64,
    esn: bool,
    iv: &'static str,
    plain: &'static str,  // payload || padding || pad length || next header
    sealed: &'static str, // ciphertext || ICV
}

/// draft-mcgrew-gcm-test-01 (AES-GCM ESP packets, 128- and 256-bit keys, with and without ESN)
/// and RFC 7634 appendix A (ChaCha20-Poly1305 ESP example).
const VECTORS: &[Vector] = &[
    Vector {
        encr: Encr::AesGcm16_128,
        key: "4c80cdefbb5d10da906ac73c3613a634 2e443b68",
        spi: 0x0000_4321,
        seq: 0x8765_4321_0000_0000,
        esn: true,
        iv: "4956ed7e3b244cfe",
        plain: "45000048699a000080114db7c0a80102c0a801010a9bf15638d301000001000000000000045f736970045f756470037369700963796265726369747902646b000021000101020201",
        sealed: "fecf537e729d5b07dc30df528dd22b768d1b98736696a6fd348509fa13ceac34cfa2436f14a3f3cf65925bf1f4a13c5d15b21e1884f5ff6247aeabb786b93bce61bc17d768fd9732459018148f6cbe722fd04796562dfdb4",
    },
    Vector {
        encr: Encr::AesGcm16_128,
        key: "3de09874b388e6491988d0c3607eae1f 57690e43",
        spi: 0x42f6_7e3f,
        seq: 0x1010_1010_1010_1010,
        esn: true,
        iv: "4e280000a2fca1a3",
        plain: "4500003c99c300008001cb7c40679318010101010800085c020043006162636465666768696a6b6c6d6e6f707172737475767761626364656667686901020201",
        sealed: "fba2caa4853cf9f0f22cb10d86dd83b0fec75691cf1a04b00d1138ec9c35791765acbd8701ad79845bf9fe3fba487bc91755e6662b4c8d0d1f5e22739530320ae0d731cc978ecafaeae88f00e80d6e48",
    },
    Vector {
        encr: Encr::AesGcm16_256,
        key: "abbccddef00112233445566778899aababbccddef00112233445566778899aab 73616c74",
        spi: 0x1740_5e67,
        seq: 0x156f_3126_dd0d_b99b,
        esn: true,
        iv: "616e640169766563",
        plain: "45080028732c00004006e9f90a0106120a01038f06b88023dd6bafbecb71260250101f646d540001",
        sealed: "f2d69ecdbd5a0d5b8d5ef38bad4da58d1f278fde98ef67549d524a3018d9a57ff4d3a31ce673119e451626c2415771e3b7eebca614c89b35",
    },
    Vector {
        encr: Encr::AesGcm16_256,
        key: "6c6567616c697a656d6172696a75616e61616e64646f69746265666f72656961 7475726e",
        spi: 0x796b_6963,
        seq: 0xffff_ffff_ffff_ffff,
        esn: true,
        iv: "333021696765746d",
        plain: "45000030da3a00008001df3bc0a80005c0a800010800c6cd020007006162636465666768696a6b6c6d6e6f707172737401020201",
        sealed: "f97ab2aa356d8edce17644ac8c78e25dd24dedbb29ebf1b64a274b39b49c3a864cd3d78ca4ae68a32b42458fb57dbe821dcc63b9d0937ba2945f669368661a329fb4c053",
    },
    Vector {
        encr: Encr::ChaCha20Poly1305,
        key: "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f a0a1a2a3",
        spi: 0x0102_0304,
        seq: 5,
        esn: false,
        iv: "1011121314151617",
        plain: "45000054a6f200004001e778c6336405c000020508005b7a3a080000553bec100007362708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363701020204",
        sealed: "24039428b97f417e3c13753a4f05087b67c352e6a7fab1b982d466ef407ae5c614ee8099d52844eb61aa95dfab4c02f72aa71e7c4c4f64c9befe2facc638e8f3cbec163fac469b502773f6fb94e664da9165b82829f641e076aaa8266b7fb0f7b11b369907e1ad43",
    },
];

fn wire(v: &Vector) -> Vec<u8> {
    let mut w = v.spi.to_be_bytes().to_vec();
    w.extend_from_slice(&(v.seq as u32).to_be_bytes());
    w.extend(unhex(v.iv));
    w.extend(unhex(v.sealed));
    w
}

fn vector_cfg(v: &Vector, key: &[u8]) -> SaConfig<'static> {
    let key: &'static [u8] = Box::leak(key.to_vec().into_boxed_slice());
    SaConfig {
        spi: v.spi,
        encr: v.encr,
        encr_key: key,
        integ: None,
        esn: v.esn,
        replay_window: 64,
        lifetime: Lifetime::default(),
    }
}

#[test]
fn published_vectors_open_byte_for_byte() {
    for v in VECTORS {
        let key = unhex(v.key);
        let mut sa = InboundSa::new(&vector_cfg(v, &key)).unwrap();
        // Put the receiver where the sender was, so the ESN high bits are inferred correctly.
        sa.set_highest_for_test(v.seq - 1);
        let mut buf = wire(v);
        let len = buf.len();
        let opened = sa.open(&mut buf, 0..len).unwrap();
        let plain = unhex(v.plain);
        let pad_len = plain[plain.len() - 2] as usize;
        let payload = &plain[..plain.len() - 2 - pad_len];
        assert_eq!(
            &buf[opened.payload.clone()],
            payload,
            "{:?} {:#x}",
            v.encr,
            v.spi
        );
        assert_eq!(opened.next_header, plain[plain.len() - 1]);
        assert_eq!(opened.seq, v.seq);
        // The same packet again is a replay.
        let mut again = wire(v);
        assert_eq!(sa.open(&mut again, 0..len), Err(OpenError::Replayed(v.seq)));
    }
}

#[test]
fn published_vectors_seal_byte_for_byte() {
    for v in VECTORS {
        let key = unhex(v.key);
        let mut sa = OutboundSa::new(&vector_cfg(v, &key), Rng::from_seed([0; 32])).unwrap();
        sa.skip_to(v.seq - 1);
        let mut iv = [0u8; 8];
        iv.copy_from_slice(&unhex(v.iv));
        sa.test_iv = Some(iv);
        let plain = unhex(v.plain);
        let pad_len = plain[plain.len() - 2] as usize;
        let payload = &plain[..plain.len() - 2 - pad_len];
        let (mut buf, range) = framed(payload);
        let out = sa.seal(&mut buf, range, plain[plain.len() - 1]).unwrap();
        assert_eq!(buf[out].to_vec(), wire(v), "{:?} {:#x}", v.encr, v.spi);
    }
}

#[test]
fn round_trip_every_algorithm_and_length() {
    let mut rng = Rng::from_seed([1; 32]);
    for encr in Encr::ALL {
        for esn in [false, true] {
            let (k, i) = keys(encr, &mut rng);
            let c = cfg(encr, &k, &i, esn);
            let mut out = OutboundSa::new(&c, rng.fork()).unwrap();
            let mut inb = InboundSa::new(&c).unwrap();
            for len in 0..70usize {
                let payload: Vec<u8> = (0..len).map(|b| b as u8 ^ 0x5a).collect();
                let (mut buf, range) = framed(&payload);
                let nh = if len % 2 == 0 {
                    next_header::IPV4
                } else {
                    next_header::IPV6
                };
                let esp = out.seal(&mut buf, range.clone(), nh).unwrap();
                assert_eq!(esp.start, range.start - out.headroom());
                assert_eq!(esp.end, range.end + out.tailroom(len));
                let ct_len = esp.len() - out.headroom() - 16;
                assert_eq!(
                    ct_len % encr.block_len().max(4),
                    0,
                    "{encr} {len}: alignment"
                );
                assert_eq!(
                    u32::from_be_bytes(buf[esp.start..esp.start + 4].try_into().unwrap()),
                    c.spi
                );
                let opened = inb.open(&mut buf, esp).unwrap();
                assert_eq!(opened.payload, range);
                assert_eq!(&buf[opened.payload], &payload[..]);
                assert_eq!(opened.next_header, nh);
            }
            assert_eq!(out.stats().packets, 70);
            assert_eq!(inb.stats().packets, 70);
            assert_eq!(inb.stats().bytes, (0..70).sum::<u64>());
            assert_eq!(inb.highest_sequence(), 70);
        }
    }
}

#[test]
fn aead_iv_is_the_sequence_number_and_cbc_iv_is_random() {
    let mut rng = Rng::from_seed([2; 32]);
    for encr in [Encr::AesGcm16_128, Encr::AesCbc128] {
        let (k, i) = keys(encr, &mut rng);
        let mut out = OutboundSa::new(&cfg(encr, &k, &i, true), rng.fork()).unwrap();
        out.skip_to(0x1_0000_0000);
        let (mut buf, range) = framed(b"x");
        let esp = out.seal(&mut buf, range, 4).unwrap();
        let iv = &buf[esp.start + 8..esp.start + 8 + out.headroom() - 8];
        if encr.is_aead() {
            assert_eq!(iv, &0x1_0000_0001u64.to_be_bytes());
        } else {
            assert_ne!(iv, &[0u8; 16]);
        }
        assert_eq!(&buf[esp.start + 4..esp.start + 8], &[0, 0, 0, 1]); // low bits only
    }
}

#[test]
fn esn_across_the_32_bit_wrap_in_and_out_of_order() {
    let mut rng = Rng::from_seed([3; 32]);
    for encr in Encr::ALL {
        let (k, i) = keys(encr, &mut rng);
        let c = cfg(encr, &k, &i, true);
        let mut out = OutboundSa::new(&c, rng.fork()).unwrap();
        let mut inb = InboundSa::new(&c).unwrap();
        out.skip_to(0xFFFF_FFF0);
        inb.set_highest_for_test(0xFFFF_FFF0);
        let mut packets = Vec::new();
        for n in 0..32u8 {
            let (mut buf, range) = framed(&[n; 20]);
            let esp = out.seal(&mut buf, range, 4).unwrap();
            packets.push((buf, esp));
        }
        // Deliver the wrapped half first, then the pre-wrap half (previous subspace).
        let (before, after) = packets.split_at_mut(15);
        for (buf, esp) in after.iter_mut().chain(before.iter_mut()) {
            let opened = inb.open(buf, esp.clone()).unwrap();
            assert_eq!(
                buf[opened.payload.start],
                (opened.seq - 0xFFFF_FFF1) as u8,
                "{encr}"
            );
        }
        assert_eq!(inb.highest_sequence(), 0x1_0000_0010);
        // A receiver that does not use ESN cannot authenticate these packets.
        let mut plain = InboundSa::new(&cfg(encr, &k, &i, false)).unwrap();
        let (mut buf, range) = framed(b"after wrap");
        let esp = out.seal(&mut buf, range, 4).unwrap();
        assert_eq!(
            plain.open(&mut buf, esp),
            Err(OpenError::AuthenticationFailed)
        );
    }
}

#[test]
fn sequence_exhaustion() {
    let mut rng = Rng::from_seed([4; 32]);
    let (k, i) = keys(Encr::AesGcm16_128, &mut rng);
    let mut out = OutboundSa::new(&cfg(Encr::AesGcm16_128, &k, &i, false), rng.fork()).unwrap();
    out.skip_to(u64::from(u32::MAX) - 1);
    let (mut buf, range) = framed(b"last");
    out.seal(&mut buf, range.clone(), 4).unwrap();
    assert_eq!(out.sequence(), u64::from(u32::MAX));
    assert_eq!(
        out.seal(&mut buf, range.clone(), 4),
        Err(SealError::SequenceExhausted)
    );
    assert_eq!(out.stats().exhausted_drops, 1);
    let mut esn = OutboundSa::new(&cfg(Encr::AesGcm16_128, &k, &i, true), rng.fork()).unwrap();
    esn.skip_to(u64::MAX);
    assert_eq!(
        esn.seal(&mut buf, range.clone(), 4),
        Err(SealError::SequenceExhausted)
    );
    // skip_to never goes back.
    esn.skip_to(3);
    assert_eq!(esn.sequence(), u64::MAX);
}

#[test]
fn replay_and_forgery_do_not_move_the_window() {
    let mut rng = Rng::from_seed([5; 32]);
    for encr in Encr::ALL {
        let (k, i) = keys(encr, &mut rng);
        let mut c = cfg(encr, &k, &i, false);
        c.replay_window = 64;
        let mut out = OutboundSa::new(&c, rng.fork()).unwrap();
        let mut inb = InboundSa::new(&c).unwrap();
        let mut sealed = Vec::new();
        for _ in 0..200 {
            let (mut buf, range) = framed(b"payload");
            let esp = out.seal(&mut buf, range, 4).unwrap();
            sealed.push((buf, esp));
        }
        let deliver = |inb: &mut InboundSa, n: usize| {
            let (buf, esp) = &sealed[n - 1];
            let mut copy = buf.clone();
            inb.open(&mut copy, esp.clone())
        };
        assert!(deliver(&mut inb, 100).is_ok());
        assert_eq!(deliver(&mut inb, 100), Err(OpenError::Replayed(100)));
        assert!(deliver(&mut inb, 40).is_ok()); // inside the window (100 - 64, 100]
        assert_eq!(deliver(&mut inb, 36), Err(OpenError::TooOld(36)));
        // A forged packet with a huge sequence number fails authentication and leaves the
        // window where it was, so 101 is still accepted and 40 still a replay.
        let (buf, esp) = &sealed[150];
        let mut forged = buf.clone();
        forged[esp.start + 4..esp.start + 8].copy_from_slice(&5000u32.to_be_bytes());
        assert_eq!(
            inb.open(&mut forged, esp.clone()),
            Err(OpenError::AuthenticationFailed)
        );
        assert_eq!(inb.highest_sequence(), 100);
        assert!(deliver(&mut inb, 101).is_ok());
        assert_eq!(deliver(&mut inb, 40), Err(OpenError::Replayed(40)));
        assert_eq!(deliver(&mut inb, 37), Err(OpenError::TooOld(37)));
        let s = inb.stats();
        assert_eq!((s.packets, s.replay_drops, s.auth_failures), (3, 4, 1));
    }
}

#[test]
fn tampering_anywhere_is_detected() {
    let mut rng = Rng::from_seed([6; 32]);
    for encr in Encr::ALL {
        let (k, i) = keys(encr, &mut rng);
        let c = cfg(encr, &k, &i, true);
        let mut out = OutboundSa::new(&c, rng.fork()).unwrap();
        let (mut buf, range) = framed(&[7u8; 45]);
        let esp = out.seal(&mut buf, range, 4).unwrap();
        // Flip one bit in every byte position after the SPI (SPI changes are SpiMismatch).
        for pos in esp.start + 4..esp.end {
            let mut inb = InboundSa::new(&c).unwrap();
            let mut copy = buf.clone();
            copy[pos] ^= 0x10;
            let err = inb.open(&mut copy, esp.clone()).unwrap_err();
            assert!(
                matches!(
                    err,
                    OpenError::AuthenticationFailed | OpenError::InvalidSequence
                ),
                "{encr} pos {pos}: {err:?}"
            );
            assert_eq!(inb.highest_sequence(), 0);
        }
        let mut inb = InboundSa::new(&c).unwrap();
        let mut copy = buf.clone();
        copy[esp.start] ^= 1;
        assert!(matches!(
            inb.open(&mut copy, esp.clone()),
            Err(OpenError::SpiMismatch { .. })
        ));
        // Truncation and misalignment are rejected before any crypto.
        let mut copy = buf.clone();
        assert!(matches!(
            inb.open(&mut copy, esp.start..esp.start + 20),
            Err(OpenError::Truncated { .. })
        ));
        if !encr.is_aead() {
            assert!(matches!(
                inb.open(&mut copy, esp.start..esp.end - 1),
                Err(OpenError::NotBlockAligned { .. })
            ));
        }
        let past_end = copy.len() + 1;
        assert!(matches!(
            inb.open(&mut copy, esp.start..past_end),
            Err(OpenError::Range { .. })
        ));
        assert_eq!(inb.stats().packets, 0);
        let mut copy = buf.clone();
        assert!(inb.open(&mut copy, esp.clone()).is_ok());
    }
}

#[test]
fn bad_padding_is_rejected_after_authentication() {
    // Build a packet whose (authenticated) padding is not 1, 2, 3... using the crypto layer.
    let key = [9u8; 20];
    let c = SaConfig {
        spi: 77,
        encr: Encr::AesGcm16_128,
        encr_key: &key,
        integ: None,
        esn: false,
        replay_window: 64,
        lifetime: Lifetime::default(),
    };
    let ck = rampart_crypto::CipherKey::new(Encr::AesGcm16_128, &key, None).unwrap();
    for (trailer, expect_ok) in [
        (&[1u8, 2, 2, 4][..], true),
        (&[1, 3, 2, 4], false),
        (&[9, 4], false),
    ] {
        let mut pkt = Vec::new();
        pkt.extend_from_slice(&77u32.to_be_bytes());
        pkt.extend_from_slice(&1u32.to_be_bytes());
        pkt.extend_from_slice(&1u64.to_be_bytes());
        let mut data = b"ab".to_vec();
        data.extend_from_slice(trailer);
        let mut icv = [0u8; 16];
        ck.seal(&1u64.to_be_bytes(), &pkt[..8], &[], &mut data, &mut icv)
            .unwrap();
        pkt.extend_from_slice(&data);
        pkt.extend_from_slice(&icv);
        let mut inb = InboundSa::new(&c).unwrap();
        let len = pkt.len();
        let r = inb.open(&mut pkt, 0..len);
        assert_eq!(r.is_ok(), expect_ok, "{trailer:?}: {r:?}");
        if !expect_ok {
            assert_eq!(r, Err(OpenError::BadPadding));
            // It was authentic, so the sequence number is consumed.
            assert_eq!(inb.highest_sequence(), 1);
        }
    }
}

#[test]
fn lifetimes_soft_then_hard() {
    let mut rng = Rng::from_seed([7; 32]);
    let (k, i) = keys(Encr::ChaCha20Poly1305, &mut rng);
    let mut c = cfg(Encr::ChaCha20Poly1305, &k, &i, false);
    c.lifetime = Lifetime {
        soft_packets: Some(2),
        hard_packets: Some(3),
        soft_bytes: None,
        hard_bytes: None,
    };
    let mut out = OutboundSa::new(&c, rng.fork()).unwrap();
    let mut inb = InboundSa::new(&c).unwrap();
    let mut states = Vec::new();
    for _ in 0..3 {
        let (mut buf, range) = framed(b"0123456789");
        let esp = out.seal(&mut buf, range, 4).unwrap();
        inb.open(&mut buf, esp).unwrap();
        states.push((out.lifetime_state(), inb.lifetime_state()));
    }
    use LifetimeState::*;
    assert_eq!(states, [(Ok, Ok), (Soft, Soft), (Hard, Hard)]);
    let (mut buf, range) = framed(b"0123456789");
    assert_eq!(out.seal(&mut buf, range, 4), Err(SealError::Expired));
    assert_eq!(out.stats().expired_drops, 1);
    // A packet from a still-valid sender is refused by the expired receiver.
    let mut other = OutboundSa::new(&c, rng.fork()).unwrap();
    other.skip_to(10);
    let (mut buf, range) = framed(b"x");
    let esp = other.seal(&mut buf, range, 4).unwrap();
    assert_eq!(inb.open(&mut buf, esp), Err(OpenError::Expired));

    // Bytes: 10-byte payloads, soft at 15, hard at 25.
    c.lifetime = Lifetime {
        soft_bytes: Some(15),
        hard_bytes: Some(25),
        soft_packets: None,
        hard_packets: None,
    };
    let mut out = OutboundSa::new(&c, rng.fork()).unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (mut buf, range) = framed(b"0123456789");
        seen.push(out.seal(&mut buf, range, 4).map(|_| out.lifetime_state()));
    }
    assert_eq!(
        seen,
        [
            Result::Ok(Ok),
            Result::Ok(Soft),
            Result::Ok(Hard),
            Err(SealError::Expired)
        ]
    );
}

#[test]
fn buffer_space_errors() {
    let mut rng = Rng::from_seed([8; 32]);
    for encr in Encr::ALL {
        let (k, i) = keys(encr, &mut rng);
        let mut out = OutboundSa::new(&cfg(encr, &k, &i, false), rng.fork()).unwrap();
        let need_head = out.headroom();
        assert!(need_head <= MAX_HEADROOM);
        for len in 0..40 {
            assert!(out.tailroom(len) <= MAX_TAILROOM);
        }
        let mut buf = vec![0u8; 100];
        assert_eq!(
            out.seal(&mut buf, need_head - 1..50, 4),
            Err(SealError::Headroom {
                need: need_head,
                have: need_head - 1
            })
        );
        assert!(matches!(
            out.seal(&mut buf, need_head..99, 4),
            Err(SealError::Tailroom { .. })
        ));
        assert!(matches!(
            out.seal(&mut buf, need_head..101, 4),
            Err(SealError::Range { .. })
        ));
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 50..40;
        assert!(matches!(
            out.seal(&mut buf, reversed, 4),
            Err(SealError::Range { .. })
        ));
        assert_eq!(
            out.sequence(),
            0,
            "failed seals must not use sequence numbers"
        );
    }
}

#[test]
fn config_errors() {
    let key = [0u8; 20];
    let mut c = cfg(Encr::AesGcm16_128, &key, &[], false);
    c.replay_window = 1000;
    assert_eq!(InboundSa::new(&c).unwrap_err(), SaError::ReplayWindow(1000));
    c.replay_window = 0;
    assert!(InboundSa::new(&c).is_ok());
    c.encr_key = &key[..16];
    assert!(matches!(InboundSa::new(&c), Err(SaError::Crypto(_))));
    assert!(matches!(
        OutboundSa::new(&c, Rng::from_seed([0; 32])),
        Err(SaError::Crypto(_))
    ));
}

#[test]
fn replay_off_accepts_duplicates() {
    let mut rng = Rng::from_seed([10; 32]);
    let (k, i) = keys(Encr::AesGcm16_256, &mut rng);
    let mut c = cfg(Encr::AesGcm16_256, &k, &i, true);
    c.replay_window = 0;
    let mut out = OutboundSa::new(&c, rng.fork()).unwrap();
    let mut inb = InboundSa::new(&c).unwrap();
    let (buf, range) = framed(b"dup");
    let mut first = buf.clone();
    let esp = out.seal(&mut first, range, 4).unwrap();
    for _ in 0..3 {
        let mut copy = first.clone();
        assert!(inb.open(&mut copy, esp.clone()).is_ok());
    }
}

/// A batch sealed through prepare / crypt (in reverse order, as another thread might) / nothing,
/// then opened through prepare / crypt (shuffled) / finish, gives the same bytes as `seal` and
/// the same payloads as `open`; a duplicate in the batch is caught at finish, a forged packet
/// fails alone and moves nothing.
#[test]
fn split_batches_match_seal_and_open_and_keep_replay_exact() {
    fn assert_send<T: Send>() {}
    assert_send::<CryptTask<'static>>();
    for encr in [Encr::AesGcm16_256, Encr::ChaCha20Poly1305, Encr::AesCbc128] {
        let mut rng = Rng::from_seed([7; 32]);
        let (k, i) = keys(encr, &mut rng);
        let mut split_out =
            OutboundSa::new(&cfg(encr, &k, &i, false), Rng::from_seed([1; 32])).unwrap();
        let mut plain_out =
            OutboundSa::new(&cfg(encr, &k, &i, false), Rng::from_seed([1; 32])).unwrap();
        let payloads: Vec<Vec<u8>> = (0..8).map(|n| vec![n as u8 + 1; 40 + n * 17]).collect();

        // Outbound: prepare all, crypt in reverse through the runner, compare with `seal`.
        let mut bufs: Vec<(Vec<u8>, std::ops::Range<usize>)> =
            payloads.iter().map(|p| framed(p)).collect();
        let mut jobs = Vec::new();
        for (buf, payload) in bufs.iter_mut() {
            jobs.push(split_out.prepare_seal(buf, payload.clone(), 4).unwrap());
        }
        {
            let key = split_out.key();
            let mut tasks: Vec<CryptTask<'_>> = bufs
                .iter_mut()
                .zip(&jobs)
                .rev()
                .map(|((buf, _), (range, job))| CryptTask::new(key, &mut buf[range.clone()], *job))
                .collect();
            Inline.run_all(&mut tasks);
            assert!(tasks.iter().all(|t| t.result.is_ok()));
            let mut idle = CryptTask::idle();
            idle.run();
            assert!(idle.result.is_err());
        }
        for (n, p) in payloads.iter().enumerate() {
            let (mut buf, payload) = framed(p);
            let range = plain_out.seal(&mut buf, payload, 4).unwrap();
            assert_eq!(
                &buf[range.clone()],
                &bufs[n].0[jobs[n].0.clone()],
                "{encr:?} packet {n}"
            );
        }

        // Inbound: one arena holding every packet twice (a replayed copy) and one forged packet.
        let mut inbound = InboundSa::new(&cfg(encr, &k, &i, false)).unwrap();
        let mut arena = Vec::new();
        let mut ranges = Vec::new();
        for (n, ((buf, _), (range, _))) in bufs.iter().zip(&jobs).enumerate() {
            for _ in 0..if n == 3 { 2 } else { 1 } {
                let start = arena.len();
                arena.extend_from_slice(&buf[range.clone()]);
                ranges.push(start..arena.len());
            }
        }
        let forged = ranges[5].clone();
        arena[forged.end - 1] ^= 0x40;
        let prepared: Vec<_> = ranges
            .iter()
            .map(|r| inbound.prepare_open(&arena, r.clone()))
            .collect();
        assert!(
            prepared.iter().all(|p| p.is_ok()),
            "{encr:?}: pre-check passes all"
        );
        let mut results = vec![Err(rampart_crypto::CryptoError::Library("not run")); ranges.len()];
        {
            let mut rest: &mut [u8] = &mut arena;
            let mut consumed = 0;
            let mut tasks = Vec::new();
            for (r, job) in ranges.iter().zip(&prepared) {
                let (_, tail) = std::mem::take(&mut rest).split_at_mut(r.start - consumed);
                let (packet, tail) = tail.split_at_mut(r.len());
                consumed = r.end;
                rest = tail;
                tasks.push(CryptTask::new(
                    inbound.key(),
                    packet,
                    *job.as_ref().unwrap(),
                ));
            }
            tasks.reverse();
            Inline.run_all(&mut tasks);
            tasks.reverse();
            for (slot, task) in results.iter_mut().zip(&tasks) {
                *slot = task.result;
            }
        }
        let mut opened = 0;
        for (n, (r, job)) in ranges.iter().zip(&prepared).enumerate() {
            let got = inbound.finish_open(&arena, r.clone(), job.as_ref().unwrap(), results[n]);
            match n {
                4 => assert!(
                    matches!(got, Err(OpenError::Replayed(4))),
                    "{encr:?}: {got:?}"
                ),
                5 => assert_eq!(got, Err(OpenError::AuthenticationFailed)),
                _ => {
                    let o = got.unwrap();
                    let index = if n < 4 { n } else { n - 1 };
                    assert_eq!(&arena[o.payload], &payloads[index][..]);
                    opened += 1;
                }
            }
        }
        assert_eq!(opened, 7);
        let stats = inbound.stats();
        assert_eq!(
            (stats.packets, stats.replay_drops, stats.auth_failures),
            (7, 1, 1)
        );
        // The forged packet's number was never recorded: its genuine copy still opens.
        let (buf, range) = (&bufs[4].0, jobs[4].0.clone());
        let mut again = buf[range.clone()].to_vec();
        let len = again.len();
        assert!(inbound.open(&mut again, 0..len).is_ok(), "{encr:?}");
    }
}
