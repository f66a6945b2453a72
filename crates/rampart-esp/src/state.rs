//! The per-direction state of an SA as plain values, for handing an SA to another cluster
//! member: the keys travel with the IKE state; these carry the counters and the replay window.

use serde::{Deserialize, Serialize};

/// What an [`crate::OutboundSa`] needs besides its keys to continue sending.
///
/// Invariant: `next_sequence` is the sequence number the exporter would have used next (last
/// used + 1); `packets`/`bytes` are the lifetime counters (inner payload bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundState {
    pub next_sequence: u64,
    pub packets: u64,
    pub bytes: u64,
}

/// What an [`crate::InboundSa`] needs besides its keys to continue receiving.
///
/// `highest` is the highest authenticated sequence number (0: none yet). `window` is the
/// replay bitmap relative to it: bit `b` of word `w` set means `highest - (64 * w + b)` was
/// received (`replay_window / 64` words; empty with anti-replay off).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundState {
    pub highest: u64,
    pub window: Vec<u64>,
    pub packets: u64,
    pub bytes: u64,
    pub replay_drops: u64,
    pub auth_failures: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{cfg, framed, keys};
    use crate::*;
    use rampart_crypto::{Encr, Rng};

    /// Seals `n` packets of 10 bytes; returns them (buffer, ESP range, sequence number).
    fn send(out: &mut OutboundSa, n: usize) -> Vec<(Vec<u8>, std::ops::Range<usize>)> {
        (0..n)
            .map(|_| {
                let (mut buf, range) = framed(b"0123456789");
                let esp = out.seal(&mut buf, range, 4).unwrap();
                (buf, esp)
            })
            .collect()
    }

    #[test]
    fn outbound_continues_above_the_margin_and_the_peer_accepts() {
        let mut rng = Rng::from_seed([11; 32]);
        for esn in [false, true] {
            let (k, i) = keys(Encr::AesGcm16_256, &mut rng);
            let c = cfg(Encr::AesGcm16_256, &k, &i, esn);
            let mut old = OutboundSa::new(&c, rng.fork()).unwrap();
            let mut peer = InboundSa::new(&c).unwrap();
            if esn {
                old.skip_to(0xFFFF_FF00);
                peer.import_state(&InboundState {
                    highest: 0xFFFF_FF00,
                    ..InboundState::default()
                });
            }
            for (mut buf, esp) in send(&mut old, 5) {
                peer.open(&mut buf, esp).unwrap();
            }
            let exported = old.export_state();
            assert_eq!(exported.next_sequence, old.sequence() + 1);
            assert_eq!((exported.packets, exported.bytes), (5, 50));
            let json = serde_json::to_string(&exported).unwrap();
            let exported: OutboundState = serde_json::from_str(&json).unwrap();

            let margin = if esn { 0x200 } else { 1000 };
            let mut new = OutboundSa::new(&c, rng.fork()).unwrap();
            new.import_state(&exported, margin);
            assert_eq!(new.stats().packets, 5);
            let (mut buf, esp) = send(&mut new, 1).pop().unwrap();
            let opened = peer.open(&mut buf, esp).unwrap();
            assert_eq!(opened.seq, exported.next_sequence + margin);
            if esn {
                assert!(opened.seq > u64::from(u32::MAX), "crossed the 32-bit wrap");
            }
            // Importing an older state never moves the counter back.
            let before = new.sequence();
            new.import_state(&OutboundState::default(), 0);
            assert_eq!(new.sequence(), before);
        }
    }

    #[test]
    fn inbound_import_keeps_the_replay_window() {
        let mut rng = Rng::from_seed([12; 32]);
        for esn in [false, true] {
            let (k, i) = keys(Encr::ChaCha20Poly1305, &mut rng);
            let c = cfg(Encr::ChaCha20Poly1305, &k, &i, esn);
            let mut out = OutboundSa::new(&c, rng.fork()).unwrap();
            let mut old = InboundSa::new(&c).unwrap();
            if esn {
                out.skip_to(0xFFFF_FFF0);
                old.import_state(&InboundState {
                    highest: 0xFFFF_FFF0,
                    ..InboundState::default()
                });
            }
            // 40 packets; deliver all but the 10th and the 30th (still in flight).
            let mut packets = send(&mut out, 40);
            let late_a = packets.remove(29);
            let late_b = packets.remove(9);
            let replays: Vec<_> = packets.iter().take(3).cloned().collect();
            for (mut buf, esp) in packets {
                old.open(&mut buf, esp).unwrap();
            }
            let (mut fbuf, fesp) = send(&mut out, 1).pop().unwrap();
            fbuf[fesp.end - 1] ^= 1;
            assert_eq!(
                old.open(&mut fbuf, fesp),
                Err(OpenError::AuthenticationFailed)
            );

            let exported = old.export_state();
            assert_eq!(exported.highest, old.highest_sequence());
            assert_eq!(exported.window.len(), (DEFAULT_REPLAY_WINDOW / 64) as usize);
            let json = serde_json::to_string(&exported).unwrap();
            let exported: InboundState = serde_json::from_str(&json).unwrap();

            let mut new = InboundSa::new(&c).unwrap();
            new.import_state(&exported);
            assert_eq!(new.highest_sequence(), old.highest_sequence());
            assert_eq!(new.stats().auth_failures, 1);
            assert_eq!(new.export_state(), exported, "export(import(x)) == x");
            for (mut buf, esp) in replays {
                assert!(matches!(
                    new.open(&mut buf, esp),
                    Err(OpenError::Replayed(_))
                ));
            }
            for (mut buf, esp) in [late_a, late_b] {
                new.open(&mut buf, esp).unwrap();
            }
            // New traffic continues (with ESN across the 32-bit wrap).
            let (mut buf, esp) = send(&mut out, 1).pop().unwrap();
            let opened = new.open(&mut buf, esp).unwrap();
            if esn {
                assert!(opened.seq > u64::from(u32::MAX));
            }
            assert_eq!(new.stats().packets, 38 + 2 + 1);
        }
    }

    #[test]
    fn lifetimes_trigger_at_the_original_totals() {
        let mut rng = Rng::from_seed([13; 32]);
        let (k, i) = keys(Encr::AesGcm16_128, &mut rng);
        let mut c = cfg(Encr::AesGcm16_128, &k, &i, false);
        c.lifetime = Lifetime {
            soft_packets: Some(4),
            hard_packets: Some(6),
            soft_bytes: None,
            hard_bytes: None,
        };
        let mut out = OutboundSa::new(&c, rng.fork()).unwrap();
        let mut inb = InboundSa::new(&c).unwrap();
        for (mut buf, esp) in send(&mut out, 3) {
            inb.open(&mut buf, esp).unwrap();
        }
        let mut out2 = OutboundSa::new(&c, rng.fork()).unwrap();
        out2.import_state(&out.export_state(), 16);
        let mut inb2 = InboundSa::new(&c).unwrap();
        inb2.import_state(&inb.export_state());
        use LifetimeState::*;
        let mut states = Vec::new();
        for _ in 0..3 {
            let (mut buf, esp) = send(&mut out2, 1).pop().unwrap();
            inb2.open(&mut buf, esp).unwrap();
            states.push((out2.lifetime_state(), inb2.lifetime_state()));
        }
        // Packets 4, 5 and 6 in all: soft at 4, hard at 6, as without the move.
        assert_eq!(states, [(Soft, Soft), (Soft, Soft), (Hard, Hard)]);
        let (mut buf, range) = framed(b"x");
        assert_eq!(out2.seal(&mut buf, range, 4), Err(SealError::Expired));
    }
}
