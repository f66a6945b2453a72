//! Sans-IO EAP for IKEv2 remote access: the EAP packet codec (RFC 3748), EAP-MSCHAPv2
//! (draft-kamath-pppext-eap-mschapv2, RFC 2759) with its MSK (RFC 3079), the
//! [`Authenticator`] the gateway runs and the [`Peer`] a client runs, and the gateway's users
//! file ([`Credentials`]).
//!
//! Nothing here does I/O or draws random numbers: the caller passes the challenges in and
//! moves the returned bytes. Secrets ([`NtHash`], [`Msk`]) are zeroized on drop.

mod authenticator;
mod credentials;
mod error;
pub mod mschapv2;
pub mod packet;
mod peer;
mod secret;

pub use authenticator::{
    Authenticator, AuthenticatorConfig, AuthenticatorError, AuthenticatorStep, FailureReason,
};
pub use credentials::{
    nt_hash_for_password, users_file_entry, CredentialLookup, Credentials, MAX_USER_NAME_LEN,
};
pub use error::{CredentialsError, DecodeError, TooLong};
pub use packet::{Body, Packet};
pub use peer::{Peer, PeerError, PeerStep};
pub use secret::{Msk, NtHash, MSK_LEN, NT_HASH_LEN};
