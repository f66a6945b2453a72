//! The EAP-MSCHAPv2 authenticator (the gateway side), sans-IO.
//!
//! ```text
//! gateway (Authenticator)                          client (Peer)
//!   Request/Identity              ->  (optional)
//!                                 <-  Response/Identity
//!   Request/MSCHAPv2 Challenge    ->
//!                                 <-  Response/MSCHAPv2 Response (NT-Response)
//!   Request/MSCHAPv2 Success "S=" ->  or Failure "E=691 R=0 C=.. V=3 M=.."
//!                                 <-  Response/MSCHAPv2 Success (or Failure) ack
//!   EAP-Success (MSK ready)       ->  or EAP-Failure
//! ```
//!
//! The caller supplies the randomness (the authenticator challenge and the first EAP
//! Identifier) so the machine is deterministic. Invariants: a response whose Identifier is not
//! the outstanding request's is refused with [`AuthenticatorError::UnexpectedIdentifier`];
//! every error leaves the state unchanged (the caller may drop the packet and wait); the MSK is
//! released only after the peer acknowledged the Success request, together with the
//! EAP-Success to send; an unknown user and a wrong password look the same to the peer
//! (Failure 691).

use subtle::ConstantTimeEq;

use crate::credentials::CredentialLookup;
use crate::error::{DecodeError, TooLong};
use crate::mschapv2::algo::{
    generate_authenticator_response, generate_nt_response, user_name_for_hash, CHALLENGE_LEN,
};
use crate::mschapv2::{msk, FailureMessage, MsChapV2, SuccessMessage};
use crate::packet::{Body, Packet};
use crate::secret::Msk;

/// Settings of one authenticator.
#[derive(Debug, Clone)]
pub struct AuthenticatorConfig {
    /// The Name sent in the Challenge (the gateway's name; informational).
    pub server_name: Vec<u8>,
    /// Ask for the EAP identity first. IKEv2 already carries the client's IDi, so this is
    /// optional; Windows and strongSwan answer either way.
    pub request_identity: bool,
    /// `M=` text of the Success request.
    pub success_message: String,
    /// `M=` text of the Failure request.
    pub failure_message: String,
}

impl Default for AuthenticatorConfig {
    fn default() -> Self {
        Self {
            server_name: b"rampart".to_vec(),
            request_identity: true,
            success_message: "Welcome".to_owned(),
            failure_message: "Authentication failed".to_owned(),
        }
    }
}

/// Why authentication failed (for the log; the peer only ever sees error 691).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureReason {
    /// The name in the Response is not in the users file (or is not UTF-8).
    UnknownUser(String),
    /// The NT-Response does not match the stored hash.
    WrongPassword(String),
    /// The peer refused EAP-MSCHAPv2 (a Nak listing these types instead).
    Nak(Vec<u8>),
    /// The peer answered the Success request with a Failure acknowledgement.
    PeerRejectedSuccess(String),
}

/// What the caller does next.
#[derive(Debug)]
pub enum AuthenticatorStep {
    /// Send this EAP Request and wait for the response.
    Send(Vec<u8>),
    /// Authentication succeeded: send `packet` (EAP-Success) and use `msk` for the IKEv2 AUTH
    /// payloads. `user` is the name the peer authenticated as.
    Success {
        packet: Vec<u8>,
        msk: Msk,
        user: String,
    },
    /// Authentication failed: send `packet` (EAP-Failure).
    Failure {
        packet: Vec<u8>,
        reason: FailureReason,
    },
}

/// Errors that refuse a packet; the state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthenticatorError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("expected an EAP Response with Identifier {expected}, got {got}")]
    UnexpectedIdentifier { expected: u8, got: u8 },
    #[error("unexpected packet in state {state}: {what}")]
    Unexpected {
        state: &'static str,
        what: &'static str,
    },
    #[error("MS-CHAPv2-ID {got} does not match the challenge's {expected}")]
    UnexpectedMsChapId { expected: u8, got: u8 },
    #[error("start() was already called")]
    AlreadyStarted,
    #[error("the exchange is finished")]
    Finished,
    #[error(transparent)]
    TooLong(#[from] TooLong),
}

enum State {
    Idle,
    WaitIdentity,
    WaitResponse,
    WaitSuccessAck { msk: Msk, user: String },
    WaitFailureAck { reason: FailureReason },
    Done,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::WaitIdentity => "wait-identity",
            State::WaitResponse => "wait-response",
            State::WaitSuccessAck { .. } => "wait-success-ack",
            State::WaitFailureAck { .. } => "wait-failure-ack",
            State::Done => "done",
        }
    }
}

/// The server side of EAP-MSCHAPv2.
pub struct Authenticator<C> {
    config: AuthenticatorConfig,
    credentials: C,
    challenge: [u8; CHALLENGE_LEN],
    /// Identifier of the outstanding request.
    identifier: u8,
    /// MS-CHAPv2-ID of the Challenge.
    ms_id: u8,
    identity: Option<Vec<u8>>,
    state: State,
}

impl<C: CredentialLookup> Authenticator<C> {
    /// `challenge` must be 16 fresh random octets and `first_identifier` a random octet;
    /// both come from the caller's CSPRNG.
    pub fn new(
        config: AuthenticatorConfig,
        credentials: C,
        challenge: [u8; CHALLENGE_LEN],
        first_identifier: u8,
    ) -> Self {
        Self {
            config,
            credentials,
            challenge,
            identifier: first_identifier,
            ms_id: first_identifier,
            identity: None,
            state: State::Idle,
        }
    }

    /// The EAP identity the peer gave, if it was asked for.
    pub fn identity(&self) -> Option<&[u8]> {
        self.identity.as_deref()
    }

    /// The first request: Identity or, without it, the Challenge.
    pub fn start(&mut self) -> Result<Vec<u8>, AuthenticatorError> {
        if !matches!(self.state, State::Idle) {
            return Err(AuthenticatorError::AlreadyStarted);
        }
        if self.config.request_identity {
            let packet = Packet::Request {
                identifier: self.identifier,
                body: Body::Identity(Vec::new()),
            }
            .encode()?;
            self.state = State::WaitIdentity;
            Ok(packet)
        } else {
            let packet = self.challenge_request()?;
            self.state = State::WaitResponse;
            Ok(packet)
        }
    }

    fn challenge_request(&mut self) -> Result<Vec<u8>, TooLong> {
        self.ms_id = self.identifier;
        Packet::Request {
            identifier: self.identifier,
            body: Body::MsChapV2(MsChapV2::Challenge {
                ms_id: self.ms_id,
                challenge: self.challenge,
                name: self.config.server_name.clone(),
            }),
        }
        .encode()
    }

    fn next_request(&mut self, m: MsChapV2) -> Result<Vec<u8>, TooLong> {
        Packet::Request {
            identifier: self.identifier.wrapping_add(1),
            body: Body::MsChapV2(m),
        }
        .encode()
    }

    /// Processes one EAP packet from the peer.
    pub fn handle(&mut self, bytes: &[u8]) -> Result<AuthenticatorStep, AuthenticatorError> {
        let state = self.state.name();
        if matches!(self.state, State::Done) {
            return Err(AuthenticatorError::Finished);
        }
        if matches!(self.state, State::Idle) {
            return Err(AuthenticatorError::Unexpected {
                state,
                what: "packet before start()",
            });
        }
        let Packet::Response { identifier, body } = Packet::decode(bytes)? else {
            return Err(AuthenticatorError::Unexpected {
                state,
                what: "not an EAP Response",
            });
        };
        if identifier != self.identifier {
            return Err(AuthenticatorError::UnexpectedIdentifier {
                expected: self.identifier,
                got: identifier,
            });
        }
        if let Body::Nak(types) = body {
            return self.fail_now(FailureReason::Nak(types));
        }
        match (&self.state, body) {
            (State::WaitIdentity, Body::Identity(id)) => {
                self.identity = Some(id);
                self.identifier = self.identifier.wrapping_add(1);
                let packet = self.challenge_request()?;
                self.state = State::WaitResponse;
                Ok(AuthenticatorStep::Send(packet))
            }
            (
                State::WaitResponse,
                Body::MsChapV2(MsChapV2::Response {
                    ms_id,
                    peer_challenge,
                    nt_response,
                    name,
                    ..
                }),
            ) => {
                if ms_id != self.ms_id {
                    return Err(AuthenticatorError::UnexpectedMsChapId {
                        expected: self.ms_id,
                        got: ms_id,
                    });
                }
                self.verify(&peer_challenge, &nt_response, &name)
            }
            (State::WaitSuccessAck { .. }, Body::MsChapV2(MsChapV2::SuccessAck)) => {
                let State::WaitSuccessAck { msk, user } =
                    std::mem::replace(&mut self.state, State::Done)
                else {
                    unreachable!("matched above")
                };
                Ok(AuthenticatorStep::Success {
                    packet: Packet::Success { identifier }.encode()?,
                    msk,
                    user,
                })
            }
            (State::WaitSuccessAck { user, .. }, Body::MsChapV2(MsChapV2::FailureAck)) => {
                let user = user.clone();
                self.fail_now(FailureReason::PeerRejectedSuccess(user))
            }
            (State::WaitFailureAck { .. }, Body::MsChapV2(MsChapV2::FailureAck)) => {
                let State::WaitFailureAck { reason } =
                    std::mem::replace(&mut self.state, State::Done)
                else {
                    unreachable!("matched above")
                };
                Ok(AuthenticatorStep::Failure {
                    packet: Packet::Failure { identifier }.encode()?,
                    reason,
                })
            }
            _ => Err(AuthenticatorError::Unexpected {
                state,
                what: "response of the wrong type",
            }),
        }
    }

    /// Checks the NT-Response and answers with Success or Failure.
    fn verify(
        &mut self,
        peer_challenge: &[u8; CHALLENGE_LEN],
        nt_response: &[u8; 24],
        name: &[u8],
    ) -> Result<AuthenticatorStep, AuthenticatorError> {
        let user = String::from_utf8_lossy(name).into_owned();
        let hash = std::str::from_utf8(name)
            .ok()
            .and_then(|n| self.credentials.nt_hash(n));
        let hash_name = user_name_for_hash(name);
        let verdict = match hash {
            None => Err(FailureReason::UnknownUser(user.clone())),
            Some(hash) => {
                let expected =
                    generate_nt_response(&self.challenge, peer_challenge, hash_name, &hash);
                if bool::from(expected.ct_eq(nt_response)) {
                    Ok(hash)
                } else {
                    Err(FailureReason::WrongPassword(user.clone()))
                }
            }
        };
        match verdict {
            Ok(hash) => {
                let auth = generate_authenticator_response(
                    &hash,
                    nt_response,
                    peer_challenge,
                    &self.challenge,
                    hash_name,
                );
                let message = SuccessMessage {
                    authenticator_response: auth,
                    message: Some(self.config.success_message.clone()),
                };
                let packet = self.next_request(MsChapV2::Success {
                    ms_id: self.ms_id,
                    message: message.format(),
                })?;
                self.identifier = self.identifier.wrapping_add(1);
                self.state = State::WaitSuccessAck {
                    msk: msk(&hash, nt_response),
                    user,
                };
                Ok(AuthenticatorStep::Send(packet))
            }
            Err(reason) => {
                let message = FailureMessage::authentication_failure(&self.config.failure_message);
                let packet = self.next_request(MsChapV2::Failure {
                    ms_id: self.ms_id,
                    message: message.format(),
                })?;
                self.identifier = self.identifier.wrapping_add(1);
                self.state = State::WaitFailureAck { reason };
                Ok(AuthenticatorStep::Send(packet))
            }
        }
    }

    /// Ends at once with EAP-Failure (no MS-CHAPv2 Failure round trip).
    fn fail_now(&mut self, reason: FailureReason) -> Result<AuthenticatorStep, AuthenticatorError> {
        let packet = Packet::Failure {
            identifier: self.identifier,
        }
        .encode()?;
        self.state = State::Done;
        Ok(AuthenticatorStep::Failure { packet, reason })
    }
}
