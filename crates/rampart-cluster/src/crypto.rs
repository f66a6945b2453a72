//! Keys of the cluster channels, all derived from the cluster secret with HKDF-SHA256.
//!
//! - Datagram key of one sender boot: HKDF(salt "rampart cluster v1", ikm secret, info
//!   "datagram" || u16 len(name) || name || sender id || boot id), 32 bytes, AES-256-GCM.
//!   A member's datagram counter restarts at 1 every boot; the boot id in the key makes every
//!   (key, nonce) pair unique as long as boot ids never repeat.
//! - Full-sync proof key: the same with info "full sync" || u16 len(name) || name, HMAC-SHA256.
//!
//! The cluster name is bound into both: clusters sharing a secret by mistake cannot talk.

use aws_lc_rs::{aead, hkdf, hmac};

use crate::wire::TAG_LEN;
use crate::MemberId;

const SALT: &[u8] = b"rampart cluster v1";

fn prk(secret: &[u8]) -> hkdf::Prk {
    hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(secret)
}

/// The AES-256-GCM key of one sender's boot.
pub(crate) struct DatagramKey(aead::LessSafeKey);

impl DatagramKey {
    pub(crate) fn derive(secret: &[u8], name: &str, sender: MemberId, boot_id: u64) -> DatagramKey {
        let name_len = (name.len() as u16).to_be_bytes();
        let boot = boot_id.to_be_bytes();
        let info: [&[u8]; 5] = [b"datagram", &name_len, name.as_bytes(), &[sender], &boot];
        let prk = prk(secret);
        let okm = prk
            .expand(&info, &aead::AES_256_GCM)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        DatagramKey(aead::LessSafeKey::new(aead::UnboundKey::from(okm)))
    }

    fn nonce(counter: u64) -> aead::Nonce {
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&counter.to_be_bytes());
        aead::Nonce::assume_unique_for_key(n)
    }

    /// Encrypts `buf[aad_len..]` in place with `buf[..aad_len]` as AAD and appends the tag.
    pub(crate) fn seal(&self, counter: u64, buf: &mut Vec<u8>, aad_len: usize) {
        let (aad, data) = buf.split_at_mut(aad_len);
        let tag = self
            .0
            .seal_in_place_separate_tag(Self::nonce(counter), aead::Aad::from(&*aad), data)
            .expect("datagrams are far below the AES-GCM length limit");
        buf.extend_from_slice(tag.as_ref());
    }

    /// Decrypts `buf[aad_len..]` (ciphertext || tag) in place; returns the plaintext length.
    pub(crate) fn open(&self, counter: u64, buf: &mut [u8], aad_len: usize) -> Result<usize, ()> {
        if buf.len() < aad_len + TAG_LEN {
            return Err(());
        }
        let (aad, data) = buf.split_at_mut(aad_len);
        self.0
            .open_in_place(Self::nonce(counter), aead::Aad::from(&*aad), data)
            .map(|p| p.len())
            .map_err(|_| ())
    }
}

fn proof_key(secret: &[u8], name: &str) -> hmac::Key {
    let name_len = (name.len() as u16).to_be_bytes();
    let info: [&[u8]; 3] = [b"full sync", &name_len, name.as_bytes()];
    let prk = prk(secret);
    let okm = prk
        .expand(&info, hmac::HMAC_SHA256)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    hmac::Key::from(okm)
}

fn proof_input(member: MemberId, exporter: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(18 + exporter.len());
    m.extend_from_slice(b"rampart full sync");
    m.push(member);
    m.extend_from_slice(exporter);
    m
}

/// The proof `member` sends in its full-sync `Hello`: HMAC-SHA256(full-sync key,
/// "rampart full sync" || member id || TLS exporter value). The member id makes the two
/// directions differ, so a peer without the secret cannot reflect the other side's proof.
pub fn full_sync_proof(secret: &[u8], name: &str, member: MemberId, exporter: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&proof_key(secret, name), &proof_input(member, exporter));
    tag.as_ref().try_into().expect("HMAC-SHA256 is 32 bytes")
}

/// Checks a `Hello` proof of `member` in constant time.
pub fn verify_full_sync_proof(
    secret: &[u8],
    name: &str,
    member: MemberId,
    exporter: &[u8],
    proof: &[u8; 32],
) -> bool {
    hmac::verify(
        &proof_key(secret, name),
        &proof_input(member, exporter),
        proof,
    )
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_key_separation() {
        let k = DatagramKey::derive(b"0123456789abcdef", "c1", 1, 5);
        let mut buf = b"headerXXplaintext".to_vec();
        k.seal(1, &mut buf, 8);
        let mut ok = buf.clone();
        assert_eq!(k.open(1, &mut ok, 8), Ok(9));
        assert_eq!(&ok[8..17], b"plaintext");
        for other in [
            DatagramKey::derive(b"0123456789abcdeX", "c1", 1, 5),
            DatagramKey::derive(b"0123456789abcdef", "c2", 1, 5),
            DatagramKey::derive(b"0123456789abcdef", "c1", 2, 5),
            DatagramKey::derive(b"0123456789abcdef", "c1", 1, 6),
        ] {
            assert!(other.open(1, &mut buf.clone(), 8).is_err());
        }
        assert!(k.open(2, &mut buf.clone(), 8).is_err(), "wrong counter");
        let mut aad = buf.clone();
        aad[0] ^= 1;
        assert!(k.open(1, &mut aad, 8).is_err(), "AAD is authenticated");
    }

    #[test]
    fn proofs_bind_member_secret_and_session() {
        let p = full_sync_proof(b"secret-secret-16", "c", 1, &[7; 32]);
        assert!(verify_full_sync_proof(
            b"secret-secret-16",
            "c",
            1,
            &[7; 32],
            &p
        ));
        assert!(!verify_full_sync_proof(
            b"secret-secret-16",
            "c",
            2,
            &[7; 32],
            &p
        ));
        assert!(!verify_full_sync_proof(
            b"secret-secret-17",
            "c",
            1,
            &[7; 32],
            &p
        ));
        assert!(!verify_full_sync_proof(
            b"secret-secret-16",
            "d",
            1,
            &[7; 32],
            &p
        ));
        assert!(!verify_full_sync_proof(
            b"secret-secret-16",
            "c",
            1,
            &[8; 32],
            &p
        ));
    }
}
