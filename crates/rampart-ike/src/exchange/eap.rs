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

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rampart_eap::{Authenticator, CredentialLookup, Credentials, Msk, NtHash, Peer};
use rampart_wire::ike::{
    auth_method, exchange, notify as n, payload_type, Identification, Payload,
};

use crate::config::IkeSaId;
use crate::engine::Ike;
use crate::event::DownReason;
use crate::exchange::sig;
use crate::keys::{self, ct_eq};
use crate::msg;
use crate::ra;
use crate::retransmit::{ChildPlan, Request};

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

impl Ike {
    /// Responder: a later IKE_AUTH request while EAP runs, or the AUTH over the MSK after it.
    pub(crate) fn auth_eap_request(
        &mut self,
        now: Instant,
        id: IkeSaId,
        mid: u32,
        p: &[Payload],
        to: (SocketAddr, SocketAddr),
        st: EapState,
    ) {
        match st {
            EapState::Server {
                mut auth,
                idi,
                first,
            } => {
                let Some(packet) = find(p) else {
                    tracing::warn!(ike_sa = id.0, "IKE_AUTH: EAP payload missing");
                    return self.auth_reject(now, id, mid, to, Vec::new());
                };
                match auth.handle(packet) {
                    Ok(rampart_eap::AuthenticatorStep::Send(b)) => {
                        if let Some(sa) = self.sas.get_mut(&id) {
                            sa.eap = Some(Box::new(EapState::Server { auth, idi, first }));
                        }
                        self.respond(now, id, exchange::IKE_AUTH, mid, &[payload(b)], to);
                    }
                    Ok(rampart_eap::AuthenticatorStep::Success { packet, msk, user }) => {
                        tracing::info!(
                            ike_sa = id.0,
                            user,
                            "EAP-MSCHAPv2 authentication succeeded"
                        );
                        if let Some(sa) = self.sas.get_mut(&id) {
                            sa.eap = Some(Box::new(EapState::ServerDone {
                                msk,
                                user,
                                idi,
                                first,
                            }));
                        }
                        self.respond(now, id, exchange::IKE_AUTH, mid, &[payload(packet)], to);
                    }
                    Ok(rampart_eap::AuthenticatorStep::Failure { packet, reason }) => {
                        tracing::warn!(ike_sa = id.0, client = %ra::id_text(&idi), "IKE_AUTH: EAP-MSCHAPv2 authentication failed: {reason:?}");
                        self.auth_reject(now, id, mid, to, vec![payload(packet)]);
                    }
                    Err(e) => {
                        tracing::warn!(ike_sa = id.0, "IKE_AUTH: EAP packet refused: {e}");
                        self.auth_reject(now, id, mid, to, Vec::new());
                    }
                }
            }
            EapState::ServerDone {
                msk,
                user,
                idi,
                first,
            } => {
                let Some(sa) = self.sas.get(&id) else { return };
                let Some(pc) = self.peers.get(sa.peer) else {
                    return;
                };
                let (Some(keys), Some(algs)) = (sa.keys.as_ref(), sa.algs) else {
                    return;
                };
                let want = keys::psk_auth(
                    algs.prf,
                    msk.as_bytes(),
                    &sa.init_request,
                    &sa.nr,
                    &keys.sk_pi,
                    &idi,
                );
                let ok = matches!(msg::auth(p), Some((auth_method::SHARED_KEY_MIC, got)) if ct_eq(&want, got));
                if !ok {
                    tracing::warn!(
                        ike_sa = id.0,
                        user,
                        "IKE_AUTH: the AUTH after EAP does not match the MSK"
                    );
                    return self.auth_reject(now, id, mid, to, Vec::new());
                }
                let idr = sig::local_identification(pc);
                let ours = keys::psk_auth(
                    algs.prf,
                    msk.as_bytes(),
                    &sa.init_response,
                    &sa.ni,
                    &keys.sk_pr,
                    &idr,
                );
                let out = vec![Payload::Auth {
                    method: auth_method::SHARED_KEY_MIC,
                    data: ours,
                }];
                self.finish_responder(now, id, mid, &first, to, out, user);
            }
            // Initiator states never sit on a responder SA.
            EapState::Client { .. } | EapState::ClientDone { .. } => {}
        }
    }

    /// Initiator, EAP running: one response of the responder.
    pub(crate) fn auth_eap_response(
        &mut self,
        now: Instant,
        id: IkeSaId,
        plan: ChildPlan,
        p: &[Payload],
        st: EapState,
    ) {
        let Some(sa) = self.sas.get(&id) else { return };
        let Some(pc) = self.peers.get(sa.peer) else {
            return;
        };
        if msg::find_notify(p, n::AUTHENTICATION_FAILED).is_some() {
            let how = if find(p).is_some() {
                " with EAP-Failure (wrong user name or password?)"
            } else {
                ""
            };
            tracing::warn!(ike_sa = id.0, peer = %pc.name, "IKE_AUTH: the gateway rejected our authentication (AUTHENTICATION_FAILED){how}");
            return self.fail_sa(now, id, DownReason::AuthenticationFailed);
        }
        let (Some(keys), Some(algs)) = (sa.keys.as_ref(), sa.algs) else {
            return;
        };
        match st {
            EapState::Client { peer, idi, idr } => {
                let idr = match idr {
                    Some(idr) => idr,
                    None => {
                        // The first response: the responder's own AUTH, checked as usual.
                        let signed = sig::Signed {
                            prf: algs.prf,
                            message: &sa.init_response,
                            nonce: &sa.ni,
                            sk_p: &keys.sk_pr,
                        };
                        let verdict = match msg::id_r(p) {
                            Some(idr) => {
                                sig::verify_peer(pc, &signed, idr, p, now).map(|()| idr.clone())
                            }
                            None => Err("no IDr payload".to_string()),
                        };
                        match verdict {
                            Ok(idr) => idr,
                            Err(reason) => {
                                tracing::warn!(ike_sa = id.0, peer = %pc.name, "IKE_AUTH: authentication of the gateway failed: {reason}");
                                return self.fail_sa(now, id, DownReason::AuthenticationFailed);
                            }
                        }
                    }
                };
                self.eap_client_step(now, id, plan, p, peer, idi, idr);
            }
            EapState::ClientDone { msk, idr } => {
                let want = keys::psk_auth(
                    algs.prf,
                    msk.as_bytes(),
                    &sa.init_response,
                    &sa.ni,
                    &keys.sk_pr,
                    &idr,
                );
                let ok = matches!(msg::auth(p), Some((auth_method::SHARED_KEY_MIC, got)) if ct_eq(&want, got));
                if !ok {
                    tracing::warn!(ike_sa = id.0, peer = %pc.name, "IKE_AUTH: the gateway's AUTH after EAP does not match the MSK");
                    return self.fail_sa(now, id, DownReason::AuthenticationFailed);
                }
                self.finish_initiator(now, id, plan, p);
            }
            EapState::Server { .. } | EapState::ServerDone { .. } => {}
        }
    }

    /// Initiator: hands the responder's EAP request to the method and sends what it answers
    /// (an EAP response, or our AUTH over the MSK after EAP-Success).
    #[allow(clippy::too_many_arguments)]
    fn eap_client_step(
        &mut self,
        now: Instant,
        id: IkeSaId,
        plan: ChildPlan,
        p: &[Payload],
        mut peer: Box<rampart_eap::Peer>,
        idi: Identification,
        idr: Identification,
    ) {
        let timeout = self.retransmit_timeout();
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        let (Some(keys), Some(algs)) = (sa.keys.as_ref(), sa.algs) else {
            return;
        };
        let Some(packet) = find(p) else {
            tracing::warn!(ike_sa = id.0, "IKE_AUTH: the gateway sent no EAP payload");
            return self.fail_sa(now, id, DownReason::AuthenticationFailed);
        };
        let (payload, next) = match peer.handle(packet) {
            Ok(rampart_eap::PeerStep::Send(b)) => (
                payload(b),
                EapState::Client {
                    peer,
                    idi,
                    idr: Some(idr),
                },
            ),
            Ok(rampart_eap::PeerStep::Success { msk }) => {
                let auth = keys::psk_auth(
                    algs.prf,
                    msk.as_bytes(),
                    &sa.init_request,
                    &sa.nr,
                    &keys.sk_pi,
                    &idi,
                );
                tracing::debug!(
                    ike_sa = id.0,
                    "EAP-MSCHAPv2 succeeded; sending AUTH over the MSK"
                );
                (
                    Payload::Auth {
                        method: auth_method::SHARED_KEY_MIC,
                        data: auth,
                    },
                    EapState::ClientDone { msk, idr },
                )
            }
            Ok(rampart_eap::PeerStep::Failure { failure }) => {
                tracing::warn!(
                    ike_sa = id.0,
                    ?failure,
                    "IKE_AUTH: EAP-MSCHAPv2 failed (wrong user name or password?)"
                );
                return self.fail_sa(now, id, DownReason::AuthenticationFailed);
            }
            Err(e) => {
                tracing::warn!(ike_sa = id.0, "IKE_AUTH: EAP: {e}");
                return self.fail_sa(now, id, DownReason::AuthenticationFailed);
            }
        };
        sa.eap = Some(Box::new(next));
        if let Err(e) = sa.send_request(
            now,
            timeout,
            &mut self.rng,
            &mut self.events,
            exchange::IKE_AUTH,
            &[payload],
            Request::Auth(plan),
        ) {
            tracing::debug!("IKE_AUTH send failed: {e}");
        }
    }
}
