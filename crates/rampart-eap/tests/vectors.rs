//! Published test vectors: RFC 2759 section 9.2 and RFC 3079 section 3.5.

use rampart_eap::mschapv2::algo::{
    authenticator_response_string, challenge_hash, challenge_response,
    generate_authenticator_response, generate_nt_response, hash_nt_password_hash, nt_password_hash,
    user_name_for_hash, PasswordTooLong,
};
use rampart_eap::mschapv2::keys::{get_asymmetric_start_key, get_master_key, Direction, Side};
use rampart_eap::mschapv2::msk;
use rampart_eap::NtHash;

fn h<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    hex::decode_to_slice(s.replace(' ', ""), &mut out).unwrap();
    out
}

const USER: &[u8] = b"User";
const PASSWORD: &str = "clientPass";
const AUTH_CHALLENGE: &str = "5B 5D 7C 7D 7B 3F 2F 3E 3C 2C 60 21 32 26 26 28";
const PEER_CHALLENGE: &str = "21 40 23 24 25 5E 26 2A 28 29 5F 2B 3A 33 7C 7E";
const CHALLENGE: &str = "D0 2E 43 86 BC E9 12 26";
const PASSWORD_HASH: &str = "44 EB BA 8D 53 12 B8 D6 11 47 44 11 F5 69 89 AE";
const NT_RESPONSE: &str = "82 30 9E CD 8D 70 8B 5E A0 8F AA 39 81 CD 83 54 42 33 11 4A 3D 85 D6 DF";
const PASSWORD_HASH_HASH: &str = "41 C0 0C 58 4B D2 D9 1C 40 17 A2 A1 2F A5 9F 3F";
const AUTH_RESPONSE: &str = "S=407A5589115FD0D6209F510FE9C04566932CDA56";

#[test]
fn rfc2759_nt_password_hash() {
    let hash = nt_password_hash(PASSWORD).unwrap();
    assert_eq!(hash.as_bytes(), &h::<16>(PASSWORD_HASH));
}

#[test]
fn rfc2759_password_hash_hash() {
    let hash = NtHash::from_bytes(h(PASSWORD_HASH));
    assert_eq!(*hash_nt_password_hash(&hash), h::<16>(PASSWORD_HASH_HASH));
}

#[test]
fn rfc2759_challenge_hash() {
    let got = challenge_hash(&h(PEER_CHALLENGE), &h(AUTH_CHALLENGE), USER);
    assert_eq!(got, h::<8>(CHALLENGE));
}

#[test]
fn rfc2759_challenge_response() {
    let hash = NtHash::from_bytes(h(PASSWORD_HASH));
    assert_eq!(
        challenge_response(&h(CHALLENGE), &hash),
        h::<24>(NT_RESPONSE)
    );
}

#[test]
fn rfc2759_nt_response() {
    let hash = nt_password_hash(PASSWORD).unwrap();
    let got = generate_nt_response(&h(AUTH_CHALLENGE), &h(PEER_CHALLENGE), USER, &hash);
    assert_eq!(got, h::<24>(NT_RESPONSE));
}

#[test]
fn rfc2759_authenticator_response() {
    let hash = nt_password_hash(PASSWORD).unwrap();
    let got = generate_authenticator_response(
        &hash,
        &h(NT_RESPONSE),
        &h(PEER_CHALLENGE),
        &h(AUTH_CHALLENGE),
        USER,
    );
    assert_eq!(authenticator_response_string(&got), AUTH_RESPONSE);
}

#[test]
fn domain_prefix_is_not_hashed() {
    assert_eq!(user_name_for_hash(b"CORP\\User"), USER);
    assert_eq!(user_name_for_hash(USER), USER);
    let hash = nt_password_hash(PASSWORD).unwrap();
    let got = generate_nt_response(
        &h(AUTH_CHALLENGE),
        &h(PEER_CHALLENGE),
        user_name_for_hash(b"CORP\\User"),
        &hash,
    );
    assert_eq!(got, h::<24>(NT_RESPONSE));
}

#[test]
fn password_length_limit() {
    assert!(nt_password_hash(&"x".repeat(256)).is_ok());
    assert_eq!(
        nt_password_hash(&"x".repeat(257)).unwrap_err(),
        PasswordTooLong
    );
    // Non-ASCII goes through UTF-16LE: "é" is E9 00.
    let a = nt_password_hash("\u{e9}").unwrap();
    let b = nt_password_hash("e").unwrap();
    assert_ne!(a, b);
}

/// RFC 3079 section 3.5.1 (Step 3) and 3.5.3 (Step 4): the master key and the
/// server's send key (IsSend = IsServer = TRUE, i.e. Magic3), 64- and 128-bit.
#[test]
fn rfc3079_master_and_start_keys() {
    let master = get_master_key(&h(PASSWORD_HASH_HASH), &h(NT_RESPONSE));
    assert_eq!(
        *master,
        h::<16>("FD EC E3 71 7A 8C 83 8C B3 88 E5 27 AE 3C DD 31")
    );
    let send40 = get_asymmetric_start_key::<8>(&master, Direction::Send, Side::Server);
    assert_eq!(*send40, h::<8>("8B 7C DC 14 9B 99 3A 1B"));
    let send128 = get_asymmetric_start_key::<16>(&master, Direction::Send, Side::Server);
    assert_eq!(
        *send128,
        h::<16>("8B 7C DC 14 9B 99 3A 1B A1 18 CB 15 3F 56 DC CB")
    );
    // The client's receive key is the server's send key, and vice versa.
    let client_recv = get_asymmetric_start_key::<16>(&master, Direction::Receive, Side::Client);
    assert_eq!(*client_recv, *send128);
    let server_recv = get_asymmetric_start_key::<16>(&master, Direction::Receive, Side::Server);
    let client_send = get_asymmetric_start_key::<16>(&master, Direction::Send, Side::Client);
    assert_eq!(*server_recv, *client_send);
    assert_ne!(*server_recv, *send128);
}

/// MSK = server receive key (Magic2) | server send key (Magic3) | 32 zeros.
#[test]
fn msk_layout() {
    let hash = nt_password_hash(PASSWORD).unwrap();
    let key = msk(&hash, &h(NT_RESPONSE));
    let bytes = key.as_bytes();
    // SHA-1(MasterKey | pad1 | Magic2 | pad2), computed independently.
    assert_eq!(bytes[..16], h::<16>("D5F0E9521E3EA9589645E86051C82226"));
    assert_eq!(bytes[16..32], h::<16>("8B7CDC149B993A1BA118CB153F56DCCB"));
    assert_eq!(bytes[32..], [0u8; 32]);
}

#[test]
fn secrets_are_redacted() {
    let hash = nt_password_hash(PASSWORD).unwrap();
    assert_eq!(format!("{hash:?}"), "NtHash(<redacted>)");
    let key = msk(&hash, &h(NT_RESPONSE));
    assert_eq!(format!("{key:?}"), "Msk(<redacted>)");
}
