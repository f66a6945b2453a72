//! MS-CHAPv2 authentication functions (RFC 2759 section 8).
//!
//! Names follow the RFC's pseudocode so each function can be checked against it. Inputs of
//! fixed length are arrays; the user name is the one *without* a `DOMAIN\` prefix (see
//! [`user_name_for_hash`]).

use des::cipher::{BlockCipherEncrypt, KeyInit};
use des::Des;
use md4::{Digest, Md4};
use sha1::Sha1;
use zeroize::Zeroizing;

use crate::secret::{NtHash, NT_HASH_LEN};

/// Length of the authenticator and peer challenges.
pub const CHALLENGE_LEN: usize = 16;
/// Length of the NT-Response.
pub const NT_RESPONSE_LEN: usize = 24;
/// Length of the binary authenticator response (SHA-1 output).
pub const AUTH_RESPONSE_LEN: usize = 20;
/// RFC 2759 limits passwords to 256 Unicode characters.
pub const MAX_PASSWORD_CHARS: usize = 256;

/// "Magic server to client signing constant" (RFC 2759 section 8.7).
const AUTH_MAGIC1: &[u8; 39] = b"Magic server to client signing constant";
/// "Pad to make it do more than one iteration" (RFC 2759 section 8.7).
const AUTH_MAGIC2: &[u8; 41] = b"Pad to make it do more than one iteration";

/// The password is longer than RFC 2759 allows (256 UTF-16 code units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password longer than {MAX_PASSWORD_CHARS} UTF-16 code units")]
pub struct PasswordTooLong;

/// `NtPasswordHash` (section 8.3): MD4 over the password in UTF-16LE, without a terminator.
pub fn nt_password_hash(password: &str) -> Result<NtHash, PasswordTooLong> {
    let mut unicode = Zeroizing::new(Vec::with_capacity(password.len() * 2));
    for unit in password.encode_utf16() {
        unicode.extend_from_slice(&unit.to_le_bytes());
    }
    if unicode.len() > MAX_PASSWORD_CHARS * 2 {
        return Err(PasswordTooLong);
    }
    let mut out = [0u8; NT_HASH_LEN];
    out.copy_from_slice(&Md4::digest(unicode.as_slice()));
    let hash = NtHash::from_bytes(out);
    zeroize::Zeroize::zeroize(&mut out);
    Ok(hash)
}

/// `HashNtPasswordHash` (section 8.4): MD4 of the NT hash.
pub fn hash_nt_password_hash(hash: &NtHash) -> Zeroizing<[u8; NT_HASH_LEN]> {
    let mut out = Zeroizing::new([0u8; NT_HASH_LEN]);
    out.copy_from_slice(&Md4::digest(hash.as_bytes()));
    out
}

/// The user name MS-CHAPv2 hashes: everything after the first `\` (a Windows client may send
/// `DOMAIN\user`; RFC 2759 section 8.2 excludes the domain).
pub fn user_name_for_hash(name: &[u8]) -> &[u8] {
    match name.iter().position(|&b| b == b'\\') {
        Some(i) => &name[i + 1..],
        None => name,
    }
}

/// `ChallengeHash` (section 8.2): the first 8 octets of
/// SHA-1(PeerChallenge | AuthenticatorChallenge | UserName).
pub fn challenge_hash(
    peer_challenge: &[u8; CHALLENGE_LEN],
    authenticator_challenge: &[u8; CHALLENGE_LEN],
    user_name: &[u8],
) -> [u8; 8] {
    let digest = Sha1::new()
        .chain_update(peer_challenge)
        .chain_update(authenticator_challenge)
        .chain_update(user_name)
        .finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

/// Spreads 56 key bits over 8 octets (7 bits each, high bits first) and sets odd parity in
/// the low bit, as `DesEncrypt` (section 8.6) expects.
fn expand_des_key(key7: &[u8]) -> Zeroizing<[u8; 8]> {
    debug_assert_eq!(key7.len(), 7);
    let mut bits: u64 = 0;
    for &b in key7 {
        bits = (bits << 8) | u64::from(b);
    }
    let mut out = Zeroizing::new([0u8; 8]);
    for (i, o) in out.iter_mut().enumerate() {
        let seven = ((bits >> (49 - 7 * i)) & 0x7f) as u8;
        let byte = seven << 1;
        *o = if byte.count_ones().is_multiple_of(2) {
            byte | 1
        } else {
            byte
        };
    }
    zeroize::Zeroize::zeroize(&mut bits);
    out
}

/// `DesEncrypt` (section 8.6): one DES-ECB block under a 7-octet key.
fn des_encrypt(clear: &[u8; 8], key7: &[u8]) -> [u8; 8] {
    let key = expand_des_key(key7);
    let cipher = Des::new_from_slice(key.as_slice()).expect("DES takes an 8-octet key");
    let mut block = (*clear).into();
    cipher.encrypt_block(&mut block);
    block.into()
}

/// `ChallengeResponse` (section 8.5): the NT hash, zero-padded to 21 octets, gives three DES
/// keys; each encrypts the challenge; the 24-octet result is their concatenation.
pub fn challenge_response(challenge: &[u8; 8], hash: &NtHash) -> [u8; NT_RESPONSE_LEN] {
    let mut padded = Zeroizing::new([0u8; 21]);
    padded[..NT_HASH_LEN].copy_from_slice(hash.as_bytes());
    let mut out = [0u8; NT_RESPONSE_LEN];
    for (i, chunk) in out.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&des_encrypt(challenge, &padded[7 * i..7 * i + 7]));
    }
    out
}

/// `GenerateNTResponse` (section 8.1) from the NT hash.
pub fn generate_nt_response(
    authenticator_challenge: &[u8; CHALLENGE_LEN],
    peer_challenge: &[u8; CHALLENGE_LEN],
    user_name: &[u8],
    hash: &NtHash,
) -> [u8; NT_RESPONSE_LEN] {
    let challenge = challenge_hash(peer_challenge, authenticator_challenge, user_name);
    challenge_response(&challenge, hash)
}

/// `GenerateAuthenticatorResponse` (section 8.7), binary form (the 20 octets the `S=` string
/// encodes).
pub fn generate_authenticator_response(
    hash: &NtHash,
    nt_response: &[u8; NT_RESPONSE_LEN],
    peer_challenge: &[u8; CHALLENGE_LEN],
    authenticator_challenge: &[u8; CHALLENGE_LEN],
    user_name: &[u8],
) -> [u8; AUTH_RESPONSE_LEN] {
    let hash_hash = hash_nt_password_hash(hash);
    let digest = Sha1::new()
        .chain_update(hash_hash.as_slice())
        .chain_update(nt_response)
        .chain_update(AUTH_MAGIC1)
        .finalize();
    let challenge = challenge_hash(peer_challenge, authenticator_challenge, user_name);
    let digest = Sha1::new()
        .chain_update(digest)
        .chain_update(challenge)
        .chain_update(AUTH_MAGIC2)
        .finalize();
    let mut out = [0u8; AUTH_RESPONSE_LEN];
    out.copy_from_slice(&digest);
    out
}

/// The authenticator response as it travels: `S=` and 40 upper-case hex digits.
pub fn authenticator_response_string(response: &[u8; AUTH_RESPONSE_LEN]) -> String {
    format!("S={}", hex::encode_upper(response))
}
