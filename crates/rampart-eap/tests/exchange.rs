//! Authenticator <-> Peer exchanges.

use rampart_eap::mschapv2::{FailureMessage, MsChapV2, SuccessMessage};
use rampart_eap::packet::{kind, Body, Packet};
use rampart_eap::{
    nt_hash_for_password, users_file_entry, Authenticator, AuthenticatorConfig, AuthenticatorError,
    AuthenticatorStep, CredentialLookup, Credentials, CredentialsError, FailureReason, Peer,
    PeerError, PeerStep,
};

const AUTH_CHALLENGE: [u8; 16] = *b"[]|}{?/><,`!2&&(";
const PEER_CHALLENGE: [u8; 16] = *b"!@#$%^&*()_+:3|~";

fn users() -> Credentials {
    let text = users_file_entry("alice", &nt_hash_for_password("correct horse").unwrap())
        + &users_file_entry("User", &nt_hash_for_password("clientPass").unwrap());
    Credentials::from_toml(&text).unwrap()
}

fn send(step: PeerStep) -> Vec<u8> {
    match step {
        PeerStep::Send(b) => b,
        other => panic!("peer: expected Send, got {other:?}"),
    }
}

fn asend(step: AuthenticatorStep) -> Vec<u8> {
    match step {
        AuthenticatorStep::Send(b) => b,
        other => panic!("authenticator: expected Send, got {other:?}"),
    }
}

/// Runs both machines until the authenticator finishes; returns its last step and the peer's
/// reaction to the final packet.
fn run(
    config: AuthenticatorConfig,
    user: &str,
    password: &str,
) -> (AuthenticatorStep, Result<PeerStep, PeerError>) {
    let mut auth = Authenticator::new(config, users(), AUTH_CHALLENGE, 7);
    let mut peer = Peer::new(user, password, PEER_CHALLENGE).unwrap();
    let mut to_peer = auth.start().unwrap();
    loop {
        let reply = send(peer.handle(&to_peer).unwrap());
        match auth.handle(&reply).unwrap() {
            AuthenticatorStep::Send(b) => to_peer = b,
            done => {
                let packet = match &done {
                    AuthenticatorStep::Success { packet, .. }
                    | AuthenticatorStep::Failure { packet, .. } => packet.clone(),
                    AuthenticatorStep::Send(_) => unreachable!(),
                };
                let p = peer.handle(&packet);
                return (done, p);
            }
        }
    }
}

#[test]
fn full_exchange_with_identity() {
    let (done, peer) = run(AuthenticatorConfig::default(), "alice", "correct horse");
    let AuthenticatorStep::Success { msk, user, packet } = done else {
        panic!("expected success, got {done:?}")
    };
    assert_eq!(user, "alice");
    assert_eq!(
        Packet::decode(&packet).unwrap(),
        Packet::Success { identifier: 9 }
    );
    let PeerStep::Success { msk: peer_msk } = peer.unwrap() else {
        panic!("peer did not succeed")
    };
    assert_eq!(msk, peer_msk);
    assert_eq!(msk.as_bytes()[32..], [0u8; 32]);
}

#[test]
fn full_exchange_without_identity_and_with_domain() {
    let config = AuthenticatorConfig {
        request_identity: false,
        ..AuthenticatorConfig::default()
    };
    let (done, peer) = run(config, "CORP\\alice", "correct horse");
    assert!(matches!(done, AuthenticatorStep::Success { ref user, .. } if user == "CORP\\alice"));
    assert!(matches!(peer, Ok(PeerStep::Success { .. })));
}

#[test]
fn wrong_password_gets_failure_691() {
    let mut auth = Authenticator::new(AuthenticatorConfig::default(), users(), AUTH_CHALLENGE, 1);
    let mut peer = Peer::new("alice", "wrong", PEER_CHALLENGE).unwrap();
    let id_req = auth.start().unwrap();
    let id_resp = send(peer.handle(&id_req).unwrap());
    let challenge = asend(auth.handle(&id_resp).unwrap());
    let response = send(peer.handle(&challenge).unwrap());
    let failure_req = asend(auth.handle(&response).unwrap());
    let Packet::Request {
        body: Body::MsChapV2(MsChapV2::Failure { message, .. }),
        ..
    } = Packet::decode(&failure_req).unwrap()
    else {
        panic!("expected an MS-CHAPv2 Failure request")
    };
    let text = String::from_utf8(message.clone()).unwrap();
    assert!(text.starts_with("E=691 R=0 C="), "{text}");
    assert!(text.contains(" V=3 M="), "{text}");
    let parsed = FailureMessage::parse(&message).unwrap();
    assert_eq!(parsed.error, 691);
    assert!(!parsed.retry);

    let ack = send(peer.handle(&failure_req).unwrap());
    let AuthenticatorStep::Failure { packet, reason } = auth.handle(&ack).unwrap() else {
        panic!("expected failure")
    };
    assert_eq!(reason, FailureReason::WrongPassword("alice".into()));
    let PeerStep::Failure { failure } = peer.handle(&packet).unwrap() else {
        panic!("peer should see failure")
    };
    assert_eq!(failure.unwrap().error, 691);
    assert_eq!(auth.handle(&ack).unwrap_err(), AuthenticatorError::Finished);
}

#[test]
fn unknown_user_looks_like_a_wrong_password() {
    let (done, peer) = run(AuthenticatorConfig::default(), "mallory", "x");
    let AuthenticatorStep::Failure { reason, .. } = done else {
        panic!("expected failure")
    };
    assert_eq!(reason, FailureReason::UnknownUser("mallory".into()));
    assert!(matches!(peer, Ok(PeerStep::Failure { failure: Some(f) }) if f.error == 691));
}

/// A server that does not know the password cannot forge the authenticator response; the
/// peer refuses it and never releases an MSK.
#[test]
fn peer_refuses_wrong_authenticator_response() {
    let mut peer = Peer::new("alice", "correct horse", PEER_CHALLENGE).unwrap();
    let challenge = Packet::Request {
        identifier: 3,
        body: Body::MsChapV2(MsChapV2::Challenge {
            ms_id: 3,
            challenge: AUTH_CHALLENGE,
            name: b"evil".to_vec(),
        }),
    };
    send(peer.handle(&challenge.encode().unwrap()).unwrap());
    let forged = Packet::Request {
        identifier: 4,
        body: Body::MsChapV2(MsChapV2::Success {
            ms_id: 3,
            message: SuccessMessage {
                authenticator_response: [0x41; 20],
                message: None,
            }
            .format(),
        }),
    };
    assert_eq!(
        peer.handle(&forged.encode().unwrap()).unwrap_err(),
        PeerError::AuthenticatorMismatch
    );
    let success = Packet::Success { identifier: 4 }.encode().unwrap();
    assert_eq!(peer.handle(&success).unwrap_err(), PeerError::Finished);
}

#[test]
fn peer_refuses_success_before_mutual_auth() {
    let mut peer = Peer::new("alice", "correct horse", PEER_CHALLENGE).unwrap();
    let success = Packet::Success { identifier: 1 }.encode().unwrap();
    assert_eq!(
        peer.handle(&success).unwrap_err(),
        PeerError::PrematureSuccess
    );
}

#[test]
fn peer_naks_other_methods_and_repeats_on_retransmit() {
    let mut peer = Peer::new("alice", "pw", PEER_CHALLENGE).unwrap();
    let md5 = Packet::Request {
        identifier: 5,
        body: Body::Other {
            kind: 4,
            data: vec![1, 2, 3],
        },
    }
    .encode()
    .unwrap();
    let nak = send(peer.handle(&md5).unwrap());
    assert_eq!(
        Packet::decode(&nak).unwrap(),
        Packet::Response {
            identifier: 5,
            body: Body::Nak(vec![kind::MSCHAPV2])
        }
    );
    assert_eq!(send(peer.handle(&md5).unwrap()), nak);
}

#[test]
fn authenticator_fails_on_nak_and_checks_identifiers() {
    let mut auth = Authenticator::new(AuthenticatorConfig::default(), users(), AUTH_CHALLENGE, 250);
    auth.start().unwrap();
    let wrong_id = Packet::Response {
        identifier: 9,
        body: Body::Identity(b"alice".to_vec()),
    };
    assert_eq!(
        auth.handle(&wrong_id.encode().unwrap()).unwrap_err(),
        AuthenticatorError::UnexpectedIdentifier {
            expected: 250,
            got: 9
        }
    );
    let nak = Packet::Response {
        identifier: 250,
        body: Body::Nak(vec![13]),
    };
    let AuthenticatorStep::Failure { reason, packet } =
        auth.handle(&nak.encode().unwrap()).unwrap()
    else {
        panic!("expected failure")
    };
    assert_eq!(reason, FailureReason::Nak(vec![13]));
    assert_eq!(
        Packet::decode(&packet).unwrap(),
        Packet::Failure { identifier: 250 }
    );
}

#[test]
fn malformed_packets_are_typed_errors_and_keep_state() {
    let mut auth = Authenticator::new(AuthenticatorConfig::default(), users(), AUTH_CHALLENGE, 1);
    let mut peer = Peer::new("User", "clientPass", PEER_CHALLENGE).unwrap();
    let id_req = auth.start().unwrap();
    assert!(matches!(
        auth.handle(&[2, 1, 0]),
        Err(AuthenticatorError::Decode(_))
    ));
    assert!(matches!(
        peer.handle(&[9, 1, 0, 4]),
        Err(PeerError::Decode(_))
    ));
    // Still works afterwards.
    let id_resp = send(peer.handle(&id_req).unwrap());
    let challenge = asend(auth.handle(&id_resp).unwrap());
    let response = send(peer.handle(&challenge).unwrap());
    let mut bad = response.clone();
    bad[7] ^= 1; // MS-Length
    assert!(matches!(
        auth.handle(&bad),
        Err(AuthenticatorError::Decode(_))
    ));
    assert!(matches!(
        auth.handle(&response).unwrap(),
        AuthenticatorStep::Send(_)
    ));
}

#[test]
fn users_file() {
    let creds = Credentials::from_toml(
        "[[user]]\nname = \"User\"\nnt_hash = \"44EBBA8D5312B8D611474411F56989AE\"\n",
    )
    .unwrap();
    assert_eq!(creds.len(), 1);
    assert_eq!(
        creds.nt_hash("User").unwrap(),
        nt_hash_for_password("clientPass").unwrap()
    );
    assert!(creds.nt_hash("DOMAIN\\User").is_some());
    assert!(creds.nt_hash("user").is_none());
    assert!(matches!(
        Credentials::from_toml("[[user]]\nname = \"a\"\nnt_hash = \"xyz\"\n"),
        Err(CredentialsError::BadHash)
    ));
    assert!(matches!(
        Credentials::from_toml(
            "[[user]]\nname = \"a\"\nnt_hash = \"44EBBA8D5312B8D611474411F56989AE\"\n\
             [[user]]\nname = \"a\"\nnt_hash = \"44EBBA8D5312B8D611474411F56989AE\"\n"
        ),
        Err(CredentialsError::Duplicate(_))
    ));
    assert!(matches!(
        Credentials::from_toml("[[user]]\nname = \"a\"\npassword = \"x\"\n"),
        Err(CredentialsError::Toml(_))
    ));
    let odd = users_file_entry("we\"ird\\name", &nt_hash_for_password("p").unwrap());
    let creds = Credentials::from_toml(&odd).unwrap();
    assert!(creds.nt_hash("we\"ird\\name").is_some());
}
