//! SipHash-2-4 (Aumasson and Bernstein), the keyed hash behind flow ownership: with a secret
//! key, an outsider cannot craft flows that all land on one member.
//!
//! Hand-written (30 lines) rather than the deprecated `std::hash::SipHasher`; the tests check
//! it against the reference vectors and against std.

/// A SipHash-2-4 key (128 bits).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct SipKey {
    k0: u64,
    k1: u64,
}

impl std::fmt::Debug for SipKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SipKey(..)")
    }
}

#[inline]
fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

impl SipKey {
    pub(crate) fn new(key: [u8; 16]) -> SipKey {
        SipKey {
            k0: u64::from_le_bytes(key[..8].try_into().expect("8 bytes")),
            k1: u64::from_le_bytes(key[8..].try_into().expect("8 bytes")),
        }
    }

    /// SipHash-2-4 of `msg`.
    pub(crate) fn hash(&self, msg: &[u8]) -> u64 {
        let mut v = [
            self.k0 ^ 0x736f_6d65_7073_6575,
            self.k1 ^ 0x646f_7261_6e64_6f6d,
            self.k0 ^ 0x6c79_6765_6e65_7261,
            self.k1 ^ 0x7465_6462_7974_6573,
        ];
        let mut chunks = msg.chunks_exact(8);
        for c in &mut chunks {
            let m = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            v[3] ^= m;
            round(&mut v);
            round(&mut v);
            v[0] ^= m;
        }
        let tail = chunks.remainder();
        let mut last = [0u8; 8];
        last[..tail.len()].copy_from_slice(tail);
        let m = u64::from_le_bytes(last) | (msg.len() as u64) << 56;
        v[3] ^= m;
        round(&mut v);
        round(&mut v);
        v[0] ^= m;
        v[2] ^= 0xff;
        for _ in 0..4 {
            round(&mut v);
        }
        v[0] ^ v[1] ^ v[2] ^ v[3]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference_key() -> SipKey {
        let mut k = [0u8; 16];
        for (i, b) in k.iter_mut().enumerate() {
            *b = i as u8;
        }
        SipKey::new(k)
    }

    #[test]
    fn reference_vectors() {
        // From the SipHash paper (appendix A) and the reference implementation's vectors.h.
        let k = reference_key();
        let msg: Vec<u8> = (0u8..15).collect();
        assert_eq!(k.hash(&msg), 0xa129_ca61_49be_45e5);
        assert_eq!(k.hash(&[]), 0x726f_db47_dd0e_0e31);
        assert_eq!(k.hash(&[0]), 0x74f8_39c5_93dc_67fd);
    }

    #[test]
    #[allow(deprecated)]
    fn agrees_with_std_siphasher() {
        use std::hash::Hasher;
        let k = reference_key();
        for len in 0..40usize {
            let msg: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let mut h = std::hash::SipHasher::new_with_keys(k.k0, k.k1);
            h.write(&msg);
            assert_eq!(k.hash(&msg), h.finish(), "len {len}");
        }
    }
}
