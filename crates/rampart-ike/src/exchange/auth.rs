//! IKE_AUTH (RFC 7296 1.2, 2.15, 2.16, 2.19): identities, PSK / certificate / EAP
//! authentication, the configuration payload of remote access and the first CHILD SA.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use rampart_wire::ike::{exchange, notify as n, Ask, Identification, Payload};

use crate::config::IkeSaId;
use crate::engine::{Ike, HALF_OPEN};
use crate::event::{DownReason, IkeEvent};
use crate::exchange::create_child::NewChild;
use crate::exchange::eap::{self, EapState, SharedCredentials};
use crate::exchange::sig;
use crate::msg::{self, notify};
use crate::peers::PeerId;
use crate::policy::{ClientAuth, PeerPolicy, RemoteAccess};
use crate::proposal::{self, IkeAlgs};
use crate::ra;
use crate::retransmit::{ChildPlan, Request};
use crate::sa::IkeState;
use crate::ts;

/// See [`Ike::initial_contact`].
const FRESH: std::time::Duration = std::time::Duration::from_secs(10);

/// The users file of a gateway whose clients authenticate with EAP-MSCHAPv2.
fn eap_users(pc: &PeerPolicy) -> Option<Arc<rampart_eap::Credentials>> {
    match &ra::gateway(pc)?.client_auth {
        ClientAuth::EapMschapv2(c) => Some(c.clone()),
        ClientAuth::Peer => None,
    }
}

impl Ike {
    /// Initiator: IDi, AUTH (none when we authenticate with EAP), the first CHILD SA's
    /// SA/TSi/TSr and, for a remote-access client, CP(CFG_REQUEST).
    pub(crate) fn send_auth(&mut self, now: Instant, id: IkeSaId) {
        let spi_in = self.alloc_child_spi();
        let timeout = self.retransmit_timeout();
        let mut challenge = [0u8; 16];
        self.rng.fill(&mut challenge);
        let Some(peer) = self.sas.get(&id).map(|s| s.peer) else {
            return;
        };
        let prefer = self.ra.last_vip.get(&peer).copied();
        let first_contact = !self
            .sas
            .values()
            .any(|o| o.peer == peer && o.id != id && o.announced);
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        let Some(pc) = self.peers.get(sa.peer) else {
            return;
        };
        let (Some(keys), Some(algs)) = (sa.keys.as_ref(), sa.algs) else {
            return;
        };
        let client = match &pc.remote_access {
            RemoteAccess::Client(c) => Some(c.clone()),
            _ => None,
        };
        let idi = sig::local_identification(pc);
        let eap_peer = match client.as_ref().and_then(|c| c.eap.as_ref()) {
            Some((user, password)) => match rampart_eap::Peer::new(user, password, challenge) {
                Ok(p) => Some(Box::new(p)),
                Err(e) => {
                    tracing::warn!(ike_sa = id.0, peer = %pc.name, "IKE_AUTH: EAP password unusable: {e}");
                    self.fail_sa(now, id, DownReason::AuthenticationFailed);
                    return;
                }
            },
            None => None,
        };
        let auth = if eap_peer.is_some() {
            None
        } else {
            let signed = sig::Signed {
                prf: algs.prf,
                message: &sa.init_request,
                nonce: &sa.nr,
                sk_p: &keys.sk_pi,
            };
            match sig::our_auth(pc, &signed, &idi, &sig::peer_hashes(&sa.init_response)) {
                Ok(a) => Some(a),
                Err(e) => {
                    tracing::warn!(ike_sa = id.0, peer = %pc.name, "IKE_AUTH: cannot sign our AUTH: {e}");
                    self.fail_sa(now, id, DownReason::AuthenticationFailed);
                    return;
                }
            }
        };
        let local_ts = if client.is_some() {
            ra::client_tsi()
        } else {
            self.cfg.local_domain.clone()
        };
        let plan = ChildPlan {
            rekey: None,
            spi_in,
            ni: Vec::new(),
            ke: None,
            local_ts: ts::from_nets(&local_ts),
            remote_ts: ts::from_nets(&pc.remote_domain),
        };
        let mut payloads = vec![Payload::IdI(idi.clone())];
        if eap_peer.is_none() {
            payloads.extend(sig::cert_payloads(pc));
        }
        payloads.extend(sig::certreq(pc));
        payloads.push(Payload::IdR(msg::identification(&pc.remote_id)));
        payloads.extend(auth);
        if client.is_some() {
            payloads.push(ra::client_request(prefer));
        }
        payloads.extend([
            Payload::Sa(proposal::esp_offer(
                &pc.esp_proposals,
                spi_in,
                pc.esn,
                false,
            )),
            Payload::TsI(plan.local_ts.clone()),
            Payload::TsR(plan.remote_ts.clone()),
        ]);
        if self.peers.get(peer).is_some_and(crate::mobike::allowed) {
            payloads.push(crate::mobike::supported_notify());
        }
        if first_contact {
            // We hold no other SA with this peer: it may drop whatever it still has from us.
            payloads.push(notify(n::INITIAL_CONTACT, vec![]));
        }
        if let Some(peer) = eap_peer {
            sa.eap = Some(Box::new(EapState::Client {
                peer,
                idi,
                idr: None,
            }));
        }
        if let Err(e) = sa.send_request(
            now,
            timeout,
            &mut self.rng,
            &mut self.events,
            exchange::IKE_AUTH,
            &payloads,
            Request::Auth(plan),
        ) {
            tracing::debug!("IKE_AUTH send failed: {e}");
        }
    }

    /// Responder: an IKE_AUTH request (the first, or a later one while EAP runs).
    pub(crate) fn auth_request(
        &mut self,
        now: Instant,
        id: IkeSaId,
        mid: u32,
        p: &[Payload],
        to: (SocketAddr, SocketAddr),
    ) {
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        if sa.initiator || sa.state != IkeState::Connecting {
            return;
        }
        match sa.eap.take() {
            None if mid == 1 => self.auth_first_request(now, id, mid, p, to),
            None => {}
            Some(st) => self.auth_eap_request(now, id, mid, p, to, *st),
        }
    }

    /// Refuses the initiator: AUTHENTICATION_FAILED (after `extra`), the SA is kept briefly
    /// to answer retransmissions.
    pub(crate) fn auth_reject(
        &mut self,
        now: Instant,
        id: IkeSaId,
        mid: u32,
        to: (SocketAddr, SocketAddr),
        mut extra: Vec<Payload>,
    ) {
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        extra.push(notify(n::AUTHENTICATION_FAILED, vec![]));
        let _ = sa.send_response(
            now,
            &mut self.rng,
            &mut self.events,
            exchange::IKE_AUTH,
            mid,
            &extra,
            to,
        );
        sa.state = IkeState::Deleting;
        sa.eap = None;
        sa.expire_at = Some(now + HALF_OPEN);
        self.events.push_back(IkeEvent::IkeSaDown {
            peer: sa.peer,
            ike_sa: id,
            reason: DownReason::AuthenticationFailed,
        });
    }

    /// Responder, first IKE_AUTH: authenticate the initiator (or start EAP), answer with our
    /// AUTH and the narrowed CHILD SA.
    fn auth_first_request(
        &mut self,
        now: Instant,
        id: IkeSaId,
        mid: u32,
        p: &[Payload],
        to: (SocketAddr, SocketAddr),
    ) {
        let Some(sa) = self.sas.get(&id) else { return };
        // Peer choice: by address (done in IKE_SA_INIT), or by ID when no address matched.
        let idi = msg::id_i(p).cloned();
        let algs = sa.algs;
        if sa.peer_by_id {
            // No AUTH payload: the initiator wants EAP, which only an EAP gateway template
            // offers (its IDi names nobody the configuration knows).
            let found = idi
                .as_ref()
                .and_then(|idi| self.match_peer_by_id(idi, algs))
                .or_else(|| {
                    msg::auth(p)
                        .is_none()
                        .then(|| self.eap_template(algs))
                        .flatten()
                });
            if let (Some(peer), Some(sa)) = (found, self.sas.get_mut(&id)) {
                sa.peer = peer;
            }
        }
        let mut first_id = [0u8; 1];
        let mut challenge = [0u8; 16];
        self.rng.fill(&mut first_id);
        self.rng.fill(&mut challenge);
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        let Some(pc) = self.peers.get(sa.peer) else {
            return;
        };
        let (Some(keys), Some(algs)) = (sa.keys.as_ref(), sa.algs) else {
            return;
        };
        let users = eap_users(pc);
        let verdict = match (idi.as_ref(), &users) {
            (None, _) => Err("no IDi payload".to_string()),
            (Some(_), Some(_)) if msg::auth(p).is_some() => Err(
                "the client sent an AUTH payload, but clients authenticate with EAP-MSCHAPv2"
                    .to_string(),
            ),
            // EAP authenticates the client; its IDi only names it until then.
            (Some(_), Some(_)) => Ok(()),
            (Some(idi), None) => {
                let signed = sig::Signed {
                    prf: algs.prf,
                    message: &sa.init_request,
                    nonce: &sa.nr,
                    sk_p: &keys.sk_pi,
                };
                sig::verify_peer(pc, &signed, idi, p, now)
            }
        };
        let idr = sig::local_identification(pc);
        let signed = sig::Signed {
            prf: algs.prf,
            message: &sa.init_response,
            nonce: &sa.ni,
            sk_p: &keys.sk_pr,
        };
        let ours = sig::our_auth(pc, &signed, &idr, &sig::peer_hashes(&sa.init_request));
        let (auth, idi) = match (verdict, ours, idi) {
            (Ok(()), Ok(auth), Some(idi)) => (auth, idi),
            (Err(reason), _, _) => {
                tracing::warn!(ike_sa = id.0, peer = %pc.name, "IKE_AUTH: authentication of the peer failed: {reason}");
                return self.auth_reject(now, id, mid, to, Vec::new());
            }
            (_, Err(e), _) => {
                tracing::warn!(ike_sa = id.0, peer = %pc.name, "IKE_AUTH: cannot sign our AUTH: {e}");
                return self.auth_reject(now, id, mid, to, Vec::new());
            }
            _ => return self.auth_reject(now, id, mid, to, Vec::new()),
        };
        let mut out = vec![Payload::IdR(idr)];
        out.extend(sig::cert_payloads(pc));
        out.push(auth);
        let Some(users) = users else {
            let client = ra::id_text(&idi);
            return self.finish_responder(now, id, mid, p, to, out, client);
        };
        let config = rampart_eap::AuthenticatorConfig::default();
        let mut auth = Box::new(rampart_eap::Authenticator::new(
            config,
            SharedCredentials(users),
            challenge,
            first_id[0],
        ));
        let packet = match auth.start() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(ike_sa = id.0, "IKE_AUTH: EAP start failed: {e}");
                return self.auth_reject(now, id, mid, to, Vec::new());
            }
        };
        tracing::debug!(ike_sa = id.0, client = %ra::id_text(&idi), "IKE_AUTH: starting EAP-MSCHAPv2");
        out.push(eap::payload(packet));
        sa.eap = Some(Box::new(EapState::Server {
            auth,
            idi,
            first: p.to_vec(),
        }));
        self.respond(now, id, exchange::IKE_AUTH, mid, &out, to);
    }

    /// Responder, the initiator is authenticated (`client` names it): Office Mode address and
    /// CFG_REPLY for a remote-access client, the first CHILD SA, the response, and the SA up.
    /// `p` is the request that carried SA/TSi/TSr/CP (the first IKE_AUTH); `out` starts with
    /// our IDr/CERT/AUTH.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn finish_responder(
        &mut self,
        now: Instant,
        id: IkeSaId,
        mid: u32,
        p: &[Payload],
        to: (SocketAddr, SocketAddr),
        mut out: Vec<Payload>,
        client: String,
    ) {
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        let peer = sa.peer;
        let Some(pc) = self.peers.get(peer) else {
            return;
        };
        let gw = match &pc.remote_access {
            RemoteAccess::Gateway(g) => Some(g.clone()),
            _ => None,
        };
        let initial_contact = msg::find_notify(p, n::INITIAL_CONTACT).is_some();
        if gw.is_some() {
            sa.ra_client = Some(client.clone());
            // A reconnecting client: its stale SAs (and their addresses) go first.
            if initial_contact {
                self.initial_contact(now, id);
            }
        }
        let request = gw.as_ref().and_then(|_| ra::find_request(p));
        let mut address = None;
        let mut refused = false;
        if let Some(req) = &request {
            if req.ip4_address.is_asked() || req.ip6_address.is_asked() {
                let prefer = match (req.ip4_address, req.ip6_address) {
                    (Ask::Prefer(a), _) => Some(IpAddr::V4(a)),
                    (_, Ask::Prefer(n)) => Some(IpAddr::V6(n.addr())),
                    _ => None,
                };
                match self.lease_address(now, id, peer, &client, prefer, initial_contact) {
                    Some(a) => address = Some(a),
                    None => refused = true,
                }
            }
        }
        let Some(sa) = self.sas.get(&id) else { return };
        let Some(pc) = self.peers.get(peer) else {
            return;
        };
        let (allowed_i, allowed_r) = match (&gw, address) {
            (Some(gw), Some(a)) => ra::narrowing(gw, a),
            _ => (pc.remote_domain.clone(), self.cfg.local_domain.clone()),
        };
        if let (Some(gw), Some(a), Some(req)) = (&gw, address, &request) {
            out.push(Payload::Cp(ra::reply_for(gw, a, req)));
        }
        // First CHILD SA.
        let child = match (msg::sa(p), msg::ts_i(p), msg::ts_r(p)) {
            _ if refused => Err(n::INTERNAL_ADDRESS_FAILURE),
            (Some(props), Some(tsi), Some(tsr)) => {
                let sel = proposal::select_esp(&pc.esp_proposals, pc.esn, false, props);
                let tsi_n = ts::narrow(tsi, &ts::from_nets(&allowed_i));
                let tsr_n = ts::narrow(tsr, &ts::from_nets(&allowed_r));
                match sel {
                    None => Err(n::NO_PROPOSAL_CHOSEN),
                    Some(_) if tsi_n.is_empty() || tsr_n.is_empty() => Err(n::TS_UNACCEPTABLE),
                    Some((esp, idx)) => match proposal::esp_spi(&props[idx]) {
                        Some(spi_out) => Ok((esp, props[idx].num, spi_out, tsi_n, tsr_n)),
                        None => Err(n::INVALID_SYNTAX),
                    },
                }
            }
            _ => Err(0),
        };
        let (ni, nr) = (sa.ni.clone(), sa.nr.clone());
        let mut new_child = None;
        match child {
            Ok((esp, num, spi_out, tsi_n, tsr_n)) => {
                let spi_in = self.alloc_child_spi();
                out.push(Payload::Sa(vec![proposal::esp_proposal(num, &esp, spi_in)]));
                out.push(Payload::TsI(tsi_n.clone()));
                out.push(Payload::TsR(tsr_n.clone()));
                new_child = Some(NewChild {
                    spi_in,
                    spi_out,
                    algs: esp,
                    shared: None,
                    ni,
                    nr,
                    we_initiated: false,
                    local_ts: tsr_n,
                    remote_ts: tsi_n,
                    replaces: None,
                });
            }
            Err(0) => {}
            Err(code) => {
                tracing::debug!(ike_sa = id.0, code, "IKE_AUTH: first CHILD SA refused");
                out.push(notify(code, vec![]));
            }
        }
        out.extend(self.mobike_answer(id));
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        if let Err(e) = sa.send_response(
            now,
            &mut self.rng,
            &mut self.events,
            exchange::IKE_AUTH,
            mid,
            &out,
            to,
        ) {
            tracing::debug!("IKE_AUTH response failed: {e}");
            return;
        }
        if gw.is_none() && initial_contact {
            self.initial_contact(now, id);
        }
        self.established(now, id);
        if refused {
            // RFC 7296 3.15.4: the client cannot work without an address; end the IKE SA.
            self.delete_ike_sa(now, id);
            return;
        }
        self.announce_lease(id);
        if let Some(c) = new_child {
            self.install_child(now, id, c);
        }
        self.resolve_duplicate(now, id);
    }

    /// Whether two SAs are with the same remote gateway: the same peer and, for a template
    /// (which serves many remotes), the same remote IP address as well; for a remote-access
    /// template also the same authenticated client (many clients share one NAT address).
    fn same_remote(&self, a: &crate::sa::IkeSa, b: &crate::sa::IkeSa) -> bool {
        let Some(pc) = self.peers.get(a.peer) else {
            return a.peer == b.peer && a.remote.ip() == b.remote.ip();
        };
        if ra::gateway(pc).is_some() {
            return a.peer == b.peer
                && a.remote.ip() == b.remote.ip()
                && a.ra_client == b.ra_client;
        }
        a.peer == b.peer && (a.remote.ip() == b.remote.ip() || !pc.is_template())
    }

    /// Both gateways initiated at the same moment and two IKE SAs came up for one peer. Both
    /// sides compute the same verdict: of two SAs, the one whose lowest nonce is lower is
    /// redundant (the rule RFC 7296 2.8.1 uses for rekey collisions), and only the side that
    /// initiated it deletes it, so exactly one Delete is sent and exactly one SA remains.
    fn resolve_duplicate(&mut self, now: Instant, id: IkeSaId) {
        let Some(this) = self.sas.get(&id) else {
            return;
        };
        let peer = this.peer;
        let lowest = |s: &crate::sa::IkeSa| std::cmp::min(s.ni.clone(), s.nr.clone());
        let this_nonce = lowest(this);
        let mut doomed = Vec::new();
        for other in self.sas.values() {
            if other.id == id
                || !self.same_remote(other, this)
                || other.state != IkeState::Established
            {
                continue;
            }
            let loser = if lowest(other) < this_nonce {
                other
            } else {
                this
            };
            if loser.initiator && !doomed.contains(&loser.id) {
                doomed.push(loser.id);
            }
        }
        for loser in doomed {
            tracing::debug!(
                ike_sa = loser.0,
                %peer,
                "duplicate IKE SA: deleting ours"
            );
            self.delete_ike_sa(now, loser);
        }
    }

    /// The peer lost all its state: every other SA with it is stale (RFC 7296 2.4). SAs that
    /// came up in the last [`FRESH`] are kept: both sides may have initiated at once, each
    /// sending INITIAL_CONTACT, and neither lost anything.
    fn initial_contact(&mut self, now: Instant, id: IkeSaId) {
        let Some(this) = self.sas.get(&id) else {
            return;
        };
        let stale: Vec<IkeSaId> = self
            .sas
            .values()
            .filter(|s| self.same_remote(s, this) && s.id != id && s.announced)
            .filter(|s| {
                s.established_at
                    .is_none_or(|t| now.saturating_duration_since(t) >= FRESH)
            })
            .map(|s| s.id)
            .collect();
        for old in stale {
            tracing::debug!(ike_sa = old.0, "INITIAL_CONTACT: dropping stale IKE SA");
            self.remove_sa(old, Some(DownReason::DeletedByPeer));
        }
    }
    /// Initiator: an IKE_AUTH response. Without EAP: verify the responder, install the first
    /// CHILD SA. With EAP: verify the responder's first AUTH, run the method round by round,
    /// send our AUTH over the MSK, then verify the responder's.
    pub(crate) fn auth_response(
        &mut self,
        now: Instant,
        id: IkeSaId,
        kind: Request,
        p: &[Payload],
    ) {
        let Request::Auth(plan) = kind else { return };
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        if let Some(st) = sa.eap.take() {
            return self.auth_eap_response(now, id, plan, p, *st);
        }
        let Some(pc) = self.peers.get(sa.peer) else {
            return;
        };
        let (Some(keys), Some(algs)) = (sa.keys.as_ref(), sa.algs) else {
            return;
        };
        let signed = sig::Signed {
            prf: algs.prf,
            message: &sa.init_response,
            nonce: &sa.ni,
            sk_p: &keys.sk_pr,
        };
        let verdict = match msg::id_r(p) {
            Some(idr) => sig::verify_peer(pc, &signed, idr, p, now),
            None => Err("no IDr payload".to_string()),
        };
        if let Err(reason) = verdict {
            if msg::find_notify(p, n::AUTHENTICATION_FAILED).is_some() {
                tracing::warn!(ike_sa = id.0, peer = %pc.name, "IKE_AUTH: the peer rejected our authentication (AUTHENTICATION_FAILED)");
            } else {
                tracing::warn!(ike_sa = id.0, peer = %pc.name, "IKE_AUTH: authentication of the peer failed: {reason}");
            }
            self.fail_sa(now, id, DownReason::AuthenticationFailed);
            return;
        }
        self.finish_initiator(now, id, plan, p);
    }

    /// Initiator, the responder is authenticated: the SA is up, the CFG_REPLY reported
    /// (remote-access client), the first CHILD SA installed.
    pub(crate) fn finish_initiator(
        &mut self,
        now: Instant,
        id: IkeSaId,
        plan: ChildPlan,
        p: &[Payload],
    ) {
        let Some(sa) = self.sas.get(&id) else { return };
        let peer = sa.peer;
        let Some(pc) = self.peers.get(peer) else {
            return;
        };
        let client = matches!(pc.remote_access, RemoteAccess::Client(_));
        let child = (|| {
            if msg::first_error(p).is_some() {
                return None;
            }
            let [prop] = msg::sa(p)? else { return None };
            let esp = proposal::accept_esp(&pc.esp_proposals, pc.esn, false, prop)?;
            let spi_out = proposal::esp_spi(prop)?;
            let (tsi, tsr) = (msg::ts_i(p)?, msg::ts_r(p)?);
            (ts::is_subset(tsi, &plan.local_ts) && ts::is_subset(tsr, &plan.remote_ts))
                .then(|| (esp, spi_out, tsi.to_vec(), tsr.to_vec()))
        })();
        let reply = if client { ra::find_reply(p) } else { None };
        let name = pc.name.clone();
        let (ni, nr) = (sa.ni.clone(), sa.nr.clone());
        self.established(now, id);
        let mut have_address = !client;
        if client {
            match reply {
                Some(Ok(reply)) => {
                    if let Some(a) = reply.ip4_addresses.first() {
                        self.ra.last_vip.insert(peer, *a);
                    }
                    have_address =
                        !reply.ip4_addresses.is_empty() || !reply.ip6_addresses.is_empty();
                    tracing::info!(ike_sa = id.0, peer = %name, ?reply, "remote access: configuration received");
                    self.events.push_back(IkeEvent::VirtualIp {
                        peer,
                        ike_sa: id,
                        reply,
                    });
                }
                Some(Err(e)) => {
                    tracing::warn!(ike_sa = id.0, peer = %name, "remote access: malformed CFG_REPLY: {e}")
                }
                None if msg::find_notify(p, n::INTERNAL_ADDRESS_FAILURE).is_some() => {
                    tracing::warn!(ike_sa = id.0, peer = %name, "remote access: the gateway has no address for us (INTERNAL_ADDRESS_FAILURE: its pool is exhausted)")
                }
                None => {
                    tracing::warn!(ike_sa = id.0, peer = %name, "remote access: the gateway sent no configuration (CFG_REPLY)")
                }
            }
        }
        match child {
            Some((esp, spi_out, tsi, tsr)) if have_address => {
                let c = NewChild {
                    spi_in: plan.spi_in,
                    spi_out,
                    algs: esp,
                    shared: None,
                    ni,
                    nr,
                    we_initiated: true,
                    local_ts: tsi,
                    remote_ts: tsr,
                    replaces: None,
                };
                self.install_child(now, id, c);
            }
            _ => {
                let code = msg::first_error(p).map(|e| e.kind);
                tracing::debug!(ike_sa = id.0, ?code, "IKE_AUTH: no CHILD SA");
            }
        }
        self.resolve_duplicate(now, id);
    }

    /// The peer of an initiator no fixed address matched: by its IDi (and the IKE algorithms
    /// chosen), fixed-address peers first (a peer behind a NAT), then templates.
    fn match_peer_by_id(&self, idi: &Identification, algs: Option<IkeAlgs>) -> Option<PeerId> {
        let fits = |pc: &PeerPolicy| {
            msg::id_matches(&pc.remote_id, idi)
                && algs.is_some_and(|a| pc.ike_proposals.iter().any(|x| IkeAlgs::from(x) == a))
        };
        let fixed = self
            .peers
            .iter()
            .find(|(_, pc)| !pc.is_template() && fits(pc));
        fixed
            .or_else(|| {
                self.peers
                    .iter()
                    .find(|(_, pc)| pc.is_template() && fits(pc))
            })
            .map(|(id, _)| id)
    }

    /// The first template whose clients authenticate with EAP and that accepts `algs`.
    fn eap_template(&self, algs: Option<IkeAlgs>) -> Option<PeerId> {
        self.peers
            .iter()
            .find(|(_, pc)| {
                pc.is_template()
                    && eap_users(pc).is_some()
                    && algs.is_some_and(|a| pc.ike_proposals.iter().any(|x| IkeAlgs::from(x) == a))
            })
            .map(|(id, _)| id)
    }

    /// The IKE SA is up: timers, IkeSaUp.
    pub(crate) fn established(&mut self, now: Instant, id: IkeSaId) {
        let Some(peer) = self.sas.get(&id).map(|s| s.peer) else {
            return;
        };
        let Some(lifetime) = self.peers.get(peer).map(|p| p.ike_lifetime) else {
            return;
        };
        let rekey = self.jittered(lifetime);
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        sa.state = IkeState::Established;
        sa.established_at = Some(now);
        sa.rekey_at = Some(now + rekey);
        sa.expire_at = Some(now + lifetime + lifetime / 10);
        sa.announced = true;
        sa.init_request = Vec::new();
        sa.init_response = Vec::new();
        let spi_i = sa.spi_i;
        let remote = sa.remote;
        self.half_open.remove(&(remote, spi_i));
        self.half_open.retain(|_, v| *v != id);
        self.retries.clear(peer);
        tracing::debug!(ike_sa = id.0, %peer, "IKE SA established");
        self.events
            .push_back(IkeEvent::IkeSaUp { peer, ike_sa: id });
    }
}
