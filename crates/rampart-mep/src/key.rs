//! Probe keys: HKDF-SHA256 over a secret the satellite and the entry point share.

use aws_lc_rs::{hkdf, hmac};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// HKDF salt of probe keys: names the protocol and its version, so a probe key never equals
/// a key derived from the same secret for another purpose.
const SALT: &[u8] = b"rampart-mep-probe-v1";

/// A 32-byte probe MAC key. Debug output never shows it.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct ProbeKey(pub(crate) [u8; 32]);

impl ProbeKey {
    /// The key both sides derive from `secret` (a `probe_key` from the configuration, or the
    /// pair's IKE pre-shared key): HKDF-SHA256 with the salt `rampart-mep-probe-v1` and empty
    /// info (see docs/mep.md).
    pub fn derive(secret: &[u8]) -> ProbeKey {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(secret);
        let mut key = [0u8; 32];
        prk.expand(&[], hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut key))
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        ProbeKey(key)
    }

    /// The HMAC-SHA256 key probes are authenticated with.
    pub(crate) fn hmac_key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &self.0)
    }
}

impl std::fmt::Debug for ProbeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProbeKey(<32 bytes redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HKDF (RFC 5869) spelled out with plain HMAC: PRK = HMAC(salt, ikm), OKM = first 32
    /// bytes of HMAC(PRK, info || 0x01) with empty info.
    fn hkdf_by_hand(secret: &[u8]) -> [u8; 32] {
        let prk = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, SALT), secret);
        let t1 = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, prk.as_ref()), &[1]);
        t1.as_ref().try_into().unwrap()
    }

    #[test]
    fn derive_is_hkdf_sha256_with_the_documented_salt() {
        for secret in [&b"a pre-shared key of the pair"[..], b"", &[0xff; 100]] {
            assert_eq!(ProbeKey::derive(secret).0, hkdf_by_hand(secret));
        }
        assert_eq!(ProbeKey::derive(b"same"), ProbeKey::derive(b"same"));
        assert_ne!(ProbeKey::derive(b"same"), ProbeKey::derive(b"Same"));
    }

    #[test]
    fn debug_hides_the_key() {
        let k = ProbeKey([0xab; 32]);
        let s = format!("{k:?}");
        assert!(!s.to_lowercase().contains("ab"), "{s}");
        assert!(s.contains("redacted"));
    }
}
