//! Algorithm identifiers: IKEv2 transform ids (RFC 7296 3.3.2 / IANA) and strongSwan keywords.

use std::fmt;
use std::str::FromStr;

/// Encryption transforms (IKEv2 transform type 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum Encr {
    AesGcm16_128,
    AesGcm16_256,
    ChaCha20Poly1305,
    AesCbc128,
    AesCbc256,
}

impl Encr {
    pub const ALL: [Encr; 5] = [
        Encr::AesGcm16_128,
        Encr::AesGcm16_256,
        Encr::ChaCha20Poly1305,
        Encr::AesCbc128,
        Encr::AesCbc256,
    ];

    /// IKEv2 ENCR transform id.
    pub fn transform_id(self) -> u16 {
        match self {
            Encr::AesGcm16_128 | Encr::AesGcm16_256 => 20,
            Encr::ChaCha20Poly1305 => 28,
            Encr::AesCbc128 | Encr::AesCbc256 => 12,
        }
    }

    /// The Key Length attribute carried with the transform (AES only).
    pub fn key_bits(self) -> Option<u16> {
        match self {
            Encr::AesGcm16_128 | Encr::AesCbc128 => Some(128),
            Encr::AesGcm16_256 | Encr::AesCbc256 => Some(256),
            Encr::ChaCha20Poly1305 => None,
        }
    }

    pub fn from_ike(id: u16, key_bits: Option<u16>) -> Option<Encr> {
        Encr::ALL
            .into_iter()
            .find(|e| e.transform_id() == id && e.key_bits() == key_bits)
    }

    /// Cipher key length in bytes, without the salt.
    pub fn key_len(self) -> usize {
        match self {
            Encr::AesGcm16_128 | Encr::AesCbc128 => 16,
            Encr::AesGcm16_256 | Encr::AesCbc256 | Encr::ChaCha20Poly1305 => 32,
        }
    }

    /// Salt taken from the keying material after the key (RFC 4106, RFC 7634, RFC 5282).
    pub fn salt_len(self) -> usize {
        if self.is_aead() {
            4
        } else {
            0
        }
    }

    /// Explicit IV length on the wire.
    pub fn iv_len(self) -> usize {
        if self.is_aead() {
            8
        } else {
            16
        }
    }

    pub fn is_aead(self) -> bool {
        !matches!(self, Encr::AesCbc128 | Encr::AesCbc256)
    }

    /// Plaintext alignment the cipher needs (before the ESP 4-byte rule).
    pub fn block_len(self) -> usize {
        if self.is_aead() {
            1
        } else {
            16
        }
    }

    /// ICV produced by the cipher itself (AEAD tag); 0 for CBC, whose ICV comes from [`Integ`].
    pub fn icv_len(self) -> usize {
        if self.is_aead() {
            16
        } else {
            0
        }
    }
}

/// Integrity transforms (IKEv2 transform type 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum Integ {
    HmacSha256_128,
}

impl Integ {
    pub fn transform_id(self) -> u16 {
        12
    }
    pub fn from_id(id: u16) -> Option<Integ> {
        (id == 12).then_some(Integ::HmacSha256_128)
    }
    pub fn key_len(self) -> usize {
        32
    }
    pub fn icv_len(self) -> usize {
        16
    }
}

/// Pseudo-random functions (IKEv2 transform type 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prf {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl Prf {
    pub const ALL: [Prf; 3] = [Prf::HmacSha256, Prf::HmacSha384, Prf::HmacSha512];
    pub fn transform_id(self) -> u16 {
        match self {
            Prf::HmacSha256 => 5,
            Prf::HmacSha384 => 6,
            Prf::HmacSha512 => 7,
        }
    }
    pub fn from_id(id: u16) -> Option<Prf> {
        Prf::ALL.into_iter().find(|p| p.transform_id() == id)
    }
    /// Output length, which is also the preferred key length (RFC 4868).
    pub fn output_len(self) -> usize {
        match self {
            Prf::HmacSha256 => 32,
            Prf::HmacSha384 => 48,
            Prf::HmacSha512 => 64,
        }
    }
}

/// Key exchange methods (IKEv2 transform type 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DhGroup {
    Ecp256,
    Ecp384,
    X25519,
}

impl DhGroup {
    pub const ALL: [DhGroup; 3] = [DhGroup::Ecp256, DhGroup::Ecp384, DhGroup::X25519];
    pub fn transform_id(self) -> u16 {
        match self {
            DhGroup::Ecp256 => 19,
            DhGroup::Ecp384 => 20,
            DhGroup::X25519 => 31,
        }
    }
    pub fn from_id(id: u16) -> Option<DhGroup> {
        DhGroup::ALL.into_iter().find(|g| g.transform_id() == id)
    }
    /// Length of the KE payload data.
    pub fn public_len(self) -> usize {
        match self {
            DhGroup::Ecp256 => 64,
            DhGroup::Ecp384 => 96,
            DhGroup::X25519 => 32,
        }
    }
}

/// Error for an algorithm keyword we do not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{word}`; allowed: {allowed}")]
pub struct UnknownAlgorithm {
    pub kind: &'static str,
    pub word: String,
    pub allowed: &'static str,
}

macro_rules! keywords {
    ($ty:ty, $kind:literal, $allowed:literal, { $($var:path => $word:literal),+ $(,)? }) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $($var => $word),+ })
            }
        }
        impl FromStr for $ty {
            type Err = UnknownAlgorithm;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s { $($word => Ok($var),)+ _ => Err(UnknownAlgorithm { kind: $kind, word: s.to_string(), allowed: $allowed }) }
            }
        }
        /// Serialised as its keyword (the `Display` form).
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let word = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                word.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

keywords!(Encr, "encryption algorithm", "aes128gcm16, aes256gcm16, chacha20poly1305, aes128, aes256", {
    Encr::AesGcm16_128 => "aes128gcm16",
    Encr::AesGcm16_256 => "aes256gcm16",
    Encr::ChaCha20Poly1305 => "chacha20poly1305",
    Encr::AesCbc128 => "aes128",
    Encr::AesCbc256 => "aes256",
});
keywords!(Integ, "integrity algorithm", "sha256", { Integ::HmacSha256_128 => "sha256" });
keywords!(Prf, "PRF", "prfsha256, prfsha384, prfsha512", {
    Prf::HmacSha256 => "prfsha256",
    Prf::HmacSha384 => "prfsha384",
    Prf::HmacSha512 => "prfsha512",
});
keywords!(DhGroup, "key exchange", "ecp256, ecp384, x25519", {
    DhGroup::Ecp256 => "ecp256",
    DhGroup::Ecp384 => "ecp384",
    DhGroup::X25519 => "x25519",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_round_trip() {
        for e in Encr::ALL {
            assert_eq!(e.to_string().parse::<Encr>().unwrap(), e);
            assert_eq!(Encr::from_ike(e.transform_id(), e.key_bits()), Some(e));
        }
        for p in Prf::ALL {
            assert_eq!(p.to_string().parse::<Prf>().unwrap(), p);
            assert_eq!(Prf::from_id(p.transform_id()), Some(p));
        }
        for g in DhGroup::ALL {
            assert_eq!(g.to_string().parse::<DhGroup>().unwrap(), g);
            assert_eq!(DhGroup::from_id(g.transform_id()), Some(g));
        }
        assert!("aes512".parse::<Encr>().is_err());
    }

    #[test]
    fn serde_uses_keywords() {
        for e in Encr::ALL {
            let j = serde_json::to_string(&e).unwrap();
            assert_eq!(j, format!("\"{e}\""));
            assert_eq!(serde_json::from_str::<Encr>(&j).unwrap(), e);
        }
        for g in DhGroup::ALL {
            let j = serde_json::to_string(&g).unwrap();
            assert_eq!(serde_json::from_str::<DhGroup>(&j).unwrap(), g);
        }
        let p: Prf = serde_json::from_str("\"prfsha384\"").unwrap();
        assert_eq!(p, Prf::HmacSha384);
        let i: Integ = serde_json::from_str("\"sha256\"").unwrap();
        assert_eq!(i, Integ::HmacSha256_128);
        let err = serde_json::from_str::<Encr>("\"aes512\"").unwrap_err();
        assert!(err.to_string().contains("aes512"), "{err}");
    }
}
