//! Probe keys: HKDF-SHA256 over a secret the satellite and the entry point share.

use zeroize::{Zeroize, ZeroizeOnDrop};

/// A 32-byte probe MAC key. Debug output never shows it.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct ProbeKey(pub(crate) [u8; 32]);

impl ProbeKey {
    /// The key both sides derive from `secret` (a `probe_key` from the configuration, or the
    /// pair's IKE pre-shared key): HKDF-SHA256 with the salt `rampart-mep-probe-v1` and empty
    /// info (see docs/mep.md).
    pub fn derive(secret: &[u8]) -> ProbeKey {
        let _ = secret;
        todo!("H1")
    }
}

impl std::fmt::Debug for ProbeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProbeKey(<32 bytes redacted>)")
    }
}
