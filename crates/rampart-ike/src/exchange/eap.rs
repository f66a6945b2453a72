//! EAP inside IKE_AUTH (RFC 7296 2.16): the per-SA state of both roles and the EAP payload.
//!
//! ```text
//! initiator                                    responder
//! HDR, SK {IDi, [CERTREQ,] [IDr,] SA, TSi, TSr, [CP]}        (no AUTH: "I use EAP")
//!                        <- HDR, SK {IDr, [CERT,] AUTH, EAP(Request)}
//! HDR, SK {EAP(Response)} ->            ... as many rounds as the method needs
//!                        <- HDR, SK {EAP(Success)}
//! HDR, SK {AUTH(MSK)}     ->
//!                        <- HDR, SK {AUTH(MSK), [CP,] SA, TSi, TSr}
//! ```
//!
//! Both AUTH payloads after EAP are the shared-key MAC of RFC 7296 2.15 with the EAP MSK (all
//! 64 octets for EAP-MSCHAPv2, as strongSwan and Windows use it) as the shared secret.
//! Invariant: the responder answers the first AUTH only after the initiator's MSK-based AUTH
//! verified; the initiator installs nothing before the responder's MSK-based AUTH verified.

use std::sync::Arc;

use rampart_eap::{Authenticator, CredentialLookup, Credentials, Msk, NtHash, Peer};
use rampart_wire::ike::{payload_type, Identification, Payload};

/// The gateway's users, shared with the policy.
pub(crate) struct SharedCredentials(pub Arc<Credentials>);

impl CredentialLookup for SharedCredentials {
    fn nt_hash(&self, user: &str) -> Option<NtHash> {
        self.0.nt_hash(user)
    }
}

/// Where EAP stands on one IKE SA.
pub(crate) enum EapState {
    /// Responder: the method runs. `first` is the initiator's first IKE_AUTH request (SA,
    /// TSi, TSr, CP and notifies are answered at the end); `idi` its identity.
    Server {
        auth: Box<Authenticator<SharedCredentials>>,
        idi: Identification,
        first: Vec<Payload>,
    },
    /// Responder: EAP succeeded; waiting for the initiator's AUTH over the MSK.
    ServerDone {
        msk: Msk,
        user: String,
        idi: Identification,
        first: Vec<Payload>,
    },
    /// Initiator: the method runs. `idr` is the responder's identity once its first AUTH
    /// verified (`None` until then).
    Client {
        peer: Box<Peer>,
        idi: Identification,
        idr: Option<Identification>,
    },
    /// Initiator: our AUTH over the MSK is sent; waiting for the responder's.
    ClientDone { msk: Msk, idr: Identification },
}

/// An EAP payload (type 48) carrying `packet`.
pub(crate) fn payload(packet: Vec<u8>) -> Payload {
    Payload::Unknown {
        kind: payload_type::EAP,
        critical: false,
        data: packet,
    }
}

/// The EAP packet in a payload list.
pub(crate) fn find(p: &[Payload]) -> Option<&[u8]> {
    p.iter().find_map(|x| match x {
        Payload::Unknown {
            kind: payload_type::EAP,
            data,
            ..
        } => Some(data.as_slice()),
        _ => None,
    })
}
