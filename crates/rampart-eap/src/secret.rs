//! Secret values: the NT password hash and the MSK. Both are zeroized on drop and never
//! printed by `Debug`.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// Length of an NT password hash (MD4 output).
pub const NT_HASH_LEN: usize = 16;

/// Length of the MSK that EAP-MSCHAPv2 exports to IKEv2 (RFC 3748 requires at least 64 octets).
pub const MSK_LEN: usize = 64;

/// The NT password hash, `MD4(UTF-16LE(password))` (RFC 2759 section 8.3).
///
/// This is a password equivalent: anyone who holds it can answer an MS-CHAPv2 challenge as the
/// user, so it is kept like a password (zeroized on drop, redacted in `Debug`, compared in
/// constant time).
#[derive(Clone)]
pub struct NtHash([u8; NT_HASH_LEN]);

impl Drop for NtHash {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl NtHash {
    /// Wraps raw hash bytes.
    pub fn from_bytes(bytes: [u8; NT_HASH_LEN]) -> Self {
        Self(bytes)
    }

    /// Parses 32 hexadecimal digits (either case).
    pub fn from_hex(text: &str) -> Result<Self, crate::CredentialsError> {
        let mut bytes = [0u8; NT_HASH_LEN];
        hex::decode_to_slice(text.trim(), &mut bytes)
            .map_err(|_| crate::CredentialsError::BadHash)?;
        Ok(Self(bytes))
    }

    /// Lower-case hex, as the users file stores it.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The hash bytes.
    pub fn as_bytes(&self) -> &[u8; NT_HASH_LEN] {
        &self.0
    }
}

impl PartialEq for NtHash {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for NtHash {}

impl fmt::Debug for NtHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NtHash(<redacted>)")
    }
}

/// The Master Session Key EAP-MSCHAPv2 exports, 64 octets (layout: `mschapv2::msk`).
///
/// IKEv2 uses it as the shared secret of the AUTH payloads that follow a successful EAP
/// exchange (RFC 7296 section 2.16).
#[derive(Clone)]
pub struct Msk([u8; MSK_LEN]);

impl Drop for Msk {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl Msk {
    pub(crate) fn from_bytes(bytes: [u8; MSK_LEN]) -> Self {
        Self(bytes)
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; MSK_LEN] {
        &self.0
    }
}

impl PartialEq for Msk {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Msk {}

impl fmt::Debug for Msk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Msk(<redacted>)")
    }
}
