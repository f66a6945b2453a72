//! The EAP-MSCHAPv2 peer (the client side), sans-IO.
//!
//! Invariants: the MSK is released only after the server proved knowledge of the password
//! hash (its `S=` authenticator response matched) *and* EAP-Success arrived; a wrong
//! authenticator response is refused and ends the exchange for good
//! ([`PeerError::AuthenticatorMismatch`]); an EAP-Success before that is refused
//! ([`PeerError::PrematureSuccess`]). A request that repeats the Identifier of the last one
//! answered gets the same response again (RFC 3748 section 4.1 retransmission). Other errors
//! leave the state unchanged.

use subtle::ConstantTimeEq;

use crate::error::{DecodeError, TooLong};
use crate::mschapv2::algo::{
    generate_authenticator_response, generate_nt_response, nt_password_hash, user_name_for_hash,
    PasswordTooLong, AUTH_RESPONSE_LEN, CHALLENGE_LEN,
};
use crate::mschapv2::{msk, FailureMessage, MsChapV2, SuccessMessage};
use crate::packet::{kind, Body, Packet};
use crate::secret::{Msk, NtHash};

/// What the caller does next.
#[derive(Debug)]
pub enum PeerStep {
    /// Send this EAP Response.
    Send(Vec<u8>),
    /// EAP-Success after mutual authentication: use `msk` for the IKEv2 AUTH payloads.
    Success { msk: Msk },
    /// EAP-Failure; `failure` is the MS-CHAPv2 Failure request's content if one came first.
    Failure { failure: Option<FailureMessage> },
}

/// Errors that refuse a packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("unexpected packet in state {state}: {what}")]
    Unexpected {
        state: &'static str,
        what: &'static str,
    },
    #[error("the server's authenticator response is wrong: it does not know the password")]
    AuthenticatorMismatch,
    #[error("EAP-Success before the server authenticated itself")]
    PrematureSuccess,
    #[error("the exchange is finished")]
    Finished,
    #[error(transparent)]
    TooLong(#[from] TooLong),
}

enum State {
    /// Waiting for Identity or Challenge.
    Start,
    /// Response sent; waiting for the Success or Failure request.
    WaitResult {
        expected: [u8; AUTH_RESPONSE_LEN],
        msk: Msk,
    },
    /// Server verified; waiting for EAP-Success.
    WaitEapSuccess {
        msk: Msk,
    },
    /// Failure request acknowledged; waiting for EAP-Failure.
    WaitEapFailure {
        failure: Option<FailureMessage>,
    },
    Done,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Start => "start",
            State::WaitResult { .. } => "wait-result",
            State::WaitEapSuccess { .. } => "wait-eap-success",
            State::WaitEapFailure { .. } => "wait-eap-failure",
            State::Done => "done",
        }
    }
}

/// The client side of EAP-MSCHAPv2.
pub struct Peer {
    identity: Vec<u8>,
    hash: NtHash,
    peer_challenge: [u8; CHALLENGE_LEN],
    state: State,
    /// Identifier and bytes of the last response, for retransmitted requests.
    last: Option<(u8, Vec<u8>)>,
}

impl Peer {
    /// `identity` is the user name sent as EAP identity and MS-CHAPv2 Name (`DOMAIN\user`
    /// allowed); `peer_challenge` must be 16 fresh random octets from the caller's CSPRNG.
    pub fn new(
        identity: &str,
        password: &str,
        peer_challenge: [u8; CHALLENGE_LEN],
    ) -> Result<Self, PasswordTooLong> {
        Ok(Self::with_nt_hash(
            identity,
            nt_password_hash(password)?,
            peer_challenge,
        ))
    }

    /// Same, from the NT hash instead of the password.
    pub fn with_nt_hash(identity: &str, hash: NtHash, peer_challenge: [u8; CHALLENGE_LEN]) -> Self {
        Self {
            identity: identity.as_bytes().to_vec(),
            hash,
            peer_challenge,
            state: State::Start,
            last: None,
        }
    }

    fn respond(&mut self, identifier: u8, body: Body) -> Result<PeerStep, PeerError> {
        let bytes = Packet::Response { identifier, body }.encode()?;
        self.last = Some((identifier, bytes.clone()));
        Ok(PeerStep::Send(bytes))
    }

    /// Processes one EAP packet from the authenticator.
    pub fn handle(&mut self, bytes: &[u8]) -> Result<PeerStep, PeerError> {
        let state = self.state.name();
        if matches!(self.state, State::Done) {
            return Err(PeerError::Finished);
        }
        match Packet::decode(bytes)? {
            Packet::Request { identifier, body } => {
                if let Some((last_id, last)) = &self.last {
                    if *last_id == identifier {
                        return Ok(PeerStep::Send(last.clone()));
                    }
                }
                self.request(identifier, body)
            }
            Packet::Success { .. } => match std::mem::replace(&mut self.state, State::Done) {
                State::WaitEapSuccess { msk } => Ok(PeerStep::Success { msk }),
                other => {
                    self.state = other;
                    Err(PeerError::PrematureSuccess)
                }
            },
            Packet::Failure { .. } => {
                let failure = match std::mem::replace(&mut self.state, State::Done) {
                    State::WaitEapFailure { failure } => failure,
                    _ => None,
                };
                Ok(PeerStep::Failure { failure })
            }
            Packet::Response { .. } => Err(PeerError::Unexpected {
                state,
                what: "an EAP Response",
            }),
        }
    }

    fn request(&mut self, identifier: u8, body: Body) -> Result<PeerStep, PeerError> {
        let state = self.state.name();
        match (&self.state, body) {
            (_, Body::Identity(_)) => {
                let identity = self.identity.clone();
                self.respond(identifier, Body::Identity(identity))
            }
            // RFC 3748 section 5.2: a Notification is acknowledged with an empty one.
            (_, Body::Notification(_)) => self.respond(identifier, Body::Notification(Vec::new())),
            (
                State::Start,
                Body::MsChapV2(MsChapV2::Challenge {
                    ms_id, challenge, ..
                }),
            ) => {
                let name = user_name_for_hash(&self.identity);
                let nt_response =
                    generate_nt_response(&challenge, &self.peer_challenge, name, &self.hash);
                let expected = generate_authenticator_response(
                    &self.hash,
                    &nt_response,
                    &self.peer_challenge,
                    &challenge,
                    name,
                );
                self.state = State::WaitResult {
                    expected,
                    msk: msk(&self.hash, &nt_response),
                };
                let body = Body::MsChapV2(MsChapV2::Response {
                    ms_id,
                    peer_challenge: self.peer_challenge,
                    nt_response,
                    flags: 0,
                    name: self.identity.clone(),
                });
                self.respond(identifier, body)
            }
            (
                State::WaitResult { expected, .. },
                Body::MsChapV2(MsChapV2::Success { message, .. }),
            ) => {
                let parsed = SuccessMessage::parse(&message)?;
                if !bool::from(parsed.authenticator_response.ct_eq(expected)) {
                    self.state = State::Done;
                    return Err(PeerError::AuthenticatorMismatch);
                }
                let State::WaitResult { msk, .. } = std::mem::replace(&mut self.state, State::Done)
                else {
                    unreachable!("matched above")
                };
                self.state = State::WaitEapSuccess { msk };
                self.respond(identifier, Body::MsChapV2(MsChapV2::SuccessAck))
            }
            (State::WaitResult { .. }, Body::MsChapV2(MsChapV2::Failure { message, .. })) => {
                self.state = State::WaitEapFailure {
                    failure: FailureMessage::parse(&message).ok(),
                };
                self.respond(identifier, Body::MsChapV2(MsChapV2::FailureAck))
            }
            (_, Body::MsChapV2(_)) => Err(PeerError::Unexpected {
                state,
                what: "MS-CHAPv2 request out of order",
            }),
            // Any other method: a legacy Nak proposing MS-CHAPv2 (RFC 3748 section 5.3.1).
            (_, _) => self.respond(identifier, Body::Nak(vec![kind::MSCHAPV2])),
        }
    }
}
