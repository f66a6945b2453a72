//! MPPE key derivation (RFC 3079 section 3) and the MSK EAP-MSCHAPv2 exports.
//!
//! # MSK layout
//!
//! draft-kamath-pppext-eap-mschapv2 defines no MSK; the one every IKEv2 implementation uses
//! (Windows, strongSwan's `eap-mschapv2`, hostapd/wpa_supplicant, RADIUS MS-MPPE keys) is
//!
//! ```text
//! MSK[0..16]  = GetAsymmetricStartKey(MasterKey, 16, Magic2)   // the authenticator's receive key
//! MSK[16..32] = GetAsymmetricStartKey(MasterKey, 16, Magic3)   // the authenticator's send key
//! MSK[32..64] = 32 zero octets
//! ```
//!
//! seen from the authenticator it is `MasterReceiveKey | MasterSendKey | zeros`; seen from the
//! peer the same bytes are `MasterSendKey | MasterReceiveKey | zeros`. Both sides therefore
//! compute the identical 64 octets: [`msk`] takes no role argument on purpose.

use sha1::{Digest, Sha1};
use zeroize::Zeroizing;

use super::algo::{hash_nt_password_hash, NT_RESPONSE_LEN};
use crate::secret::{Msk, NtHash, MSK_LEN};

/// Length of the master key and of a 128-bit start key.
pub const MASTER_KEY_LEN: usize = 16;

/// "This is the MPPE Master Key" (RFC 3079 section 3.4).
const MAGIC1: &[u8; 27] = b"This is the MPPE Master Key";
/// Client send key, server receive key.
const MAGIC2: &[u8; 84] =
    b"On the client side, this is the send key; on the server side, it is the receive key.";
/// Client receive key, server send key.
const MAGIC3: &[u8; 84] =
    b"On the client side, this is the receive key; on the server side, it is the send key.";
const SHS_PAD1: [u8; 40] = [0x00; 40];
const SHS_PAD2: [u8; 40] = [0xf2; 40];

/// Which side computes a key (RFC 3079's `IsServer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The PPP client / EAP peer.
    Client,
    /// The PPP server / EAP authenticator.
    Server,
}

/// Which direction the key protects (RFC 3079's `IsSend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Send,
    Receive,
}

/// `GetMasterKey` (section 3.4): the first 16 octets of
/// SHA-1(PasswordHashHash | NTResponse | Magic1).
pub fn get_master_key(
    password_hash_hash: &[u8; 16],
    nt_response: &[u8; NT_RESPONSE_LEN],
) -> Zeroizing<[u8; MASTER_KEY_LEN]> {
    let digest = Sha1::new()
        .chain_update(password_hash_hash)
        .chain_update(nt_response)
        .chain_update(MAGIC1)
        .finalize();
    let mut out = Zeroizing::new([0u8; MASTER_KEY_LEN]);
    out.copy_from_slice(&digest[..MASTER_KEY_LEN]);
    out
}

/// `GetAsymmetricStartKey` (section 3.4): the first `N` octets (8 or 16 for 40/56- or 128-bit
/// MPPE) of SHA-1(MasterKey | SHSpad1 | Magic | SHSpad2), with Magic2 for the client's send
/// and the server's receive key, Magic3 for the other two.
pub fn get_asymmetric_start_key<const N: usize>(
    master_key: &[u8; MASTER_KEY_LEN],
    direction: Direction,
    side: Side,
) -> Zeroizing<[u8; N]> {
    const { assert!(N <= 20, "SHA-1 yields 20 octets") };
    let magic: &[u8] = match (direction, side) {
        (Direction::Send, Side::Client) | (Direction::Receive, Side::Server) => MAGIC2,
        (Direction::Receive, Side::Client) | (Direction::Send, Side::Server) => MAGIC3,
    };
    let digest = Sha1::new()
        .chain_update(master_key)
        .chain_update(SHS_PAD1)
        .chain_update(magic)
        .chain_update(SHS_PAD2)
        .finalize();
    let mut out = Zeroizing::new([0u8; N]);
    out.copy_from_slice(&digest[..N]);
    out
}

/// The 64-octet EAP-MSCHAPv2 MSK (layout in the module documentation); identical on both
/// sides.
pub fn msk(hash: &NtHash, nt_response: &[u8; NT_RESPONSE_LEN]) -> Msk {
    let hash_hash = hash_nt_password_hash(hash);
    let master = get_master_key(&hash_hash, nt_response);
    let receive = get_asymmetric_start_key::<16>(&master, Direction::Receive, Side::Server);
    let send = get_asymmetric_start_key::<16>(&master, Direction::Send, Side::Server);
    let mut out = Zeroizing::new([0u8; MSK_LEN]);
    out[..16].copy_from_slice(receive.as_slice());
    out[16..32].copy_from_slice(send.as_slice());
    Msk::from_bytes(*out)
}
