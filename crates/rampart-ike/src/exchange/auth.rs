//! IKE_AUTH (RFC 7296 1.2, 2.15): identities, PSK authentication and the first CHILD SA.

use std::net::SocketAddr;
use std::time::Instant;

use rampart_wire::ike::{exchange, notify as n, Identification, Payload};

use crate::config::IkeSaId;
use crate::engine::{Ike, HALF_OPEN};
use crate::event::{DownReason, IkeEvent};
use crate::exchange::create_child::NewChild;
use crate::exchange::sig;
use crate::msg::{self, notify};
use crate::peers::PeerId;
use crate::policy::PeerPolicy;
use crate::proposal::{self, IkeAlgs};
use crate::retransmit::{ChildPlan, Request};
use crate::sa::IkeState;
use crate::ts;

/// See [`Ike::initial_contact`].
const FRESH: std::time::Duration = std::time::Duration::from_secs(10);

impl Ike {
    /// Initiator: IDi, AUTH, the first CHILD SA's SA/TSi/TSr.
    pub(crate) fn send_auth(&mut self, now: Instant, id: IkeSaId) {
        let spi_in = self.alloc_child_spi();
        let timeout = self.retransmit_timeout();
        let Some(peer) = self.sas.get(&id).map(|s| s.peer) else {
            return;
        };
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
        let idi = sig::local_identification(pc);
        let signed = sig::Signed {
            prf: algs.prf,
            message: &sa.init_request,
            nonce: &sa.nr,
            sk_p: &keys.sk_pi,
        };
        let auth = match sig::our_auth(pc, &signed, &idi, &sig::peer_hashes(&sa.init_response)) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(ike_sa = id.0, peer = %pc.name, "IKE_AUTH: cannot sign our AUTH: {e}");
                self.fail_sa(now, id, DownReason::AuthenticationFailed);
                return;
            }
        };
        let plan = ChildPlan {
            rekey: None,
            spi_in,
            ni: Vec::new(),
            ke: None,
            local_ts: ts::from_nets(&self.cfg.local_domain),
            remote_ts: ts::from_nets(&pc.remote_domain),
        };
        let mut payloads = vec![Payload::IdI(idi)];
        payloads.extend(sig::cert_payloads(pc));
        payloads.extend(sig::certreq(pc));
        payloads.extend([
            Payload::IdR(msg::identification(&pc.remote_id)),
            auth,
            Payload::Sa(proposal::esp_offer(
                &pc.esp_proposals,
                spi_in,
                pc.esn,
                false,
            )),
            Payload::TsI(plan.local_ts.clone()),
            Payload::TsR(plan.remote_ts.clone()),
        ]);
        if first_contact {
            // We hold no other SA with this peer: it may drop whatever it still has from us.
            payloads.push(notify(n::INITIAL_CONTACT, vec![]));
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

    /// Responder: authenticate the initiator, answer with our AUTH and the narrowed CHILD SA.
    pub(crate) fn auth_request(
        &mut self,
        now: Instant,
        id: IkeSaId,
        mid: u32,
        p: &[Payload],
        to: (SocketAddr, SocketAddr),
    ) {
        let Some(sa) = self.sas.get(&id) else { return };
        if sa.initiator || sa.state != IkeState::Connecting || mid != 1 {
            return;
        }
        // Peer choice: by address (done in IKE_SA_INIT), or by ID when no address matched.
        let idi = msg::id_i(p).cloned();
        let algs = sa.algs;
        if sa.peer_by_id {
            let found = idi
                .as_ref()
                .and_then(|idi| self.match_peer_by_id(idi, algs));
            if let (Some(peer), Some(sa)) = (found, self.sas.get_mut(&id)) {
                sa.peer = peer;
            }
        }
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        let Some(pc) = self.peers.get(sa.peer) else {
            return;
        };
        let (Some(keys), Some(algs)) = (sa.keys.as_ref(), sa.algs) else {
            return;
        };
        let signed = sig::Signed {
            prf: algs.prf,
            message: &sa.init_request,
            nonce: &sa.nr,
            sk_p: &keys.sk_pi,
        };
        let verdict = match idi.as_ref() {
            Some(idi) => sig::verify_peer(pc, &signed, idi, p, now),
            None => Err("no IDi payload".to_string()),
        };
        let ours = verdict.as_ref().ok().map(|_| {
            let idr = sig::local_identification(pc);
            let signed = sig::Signed {
                prf: algs.prf,
                message: &sa.init_response,
                nonce: &sa.ni,
                sk_p: &keys.sk_pr,
            };
            let auth = sig::our_auth(pc, &signed, &idr, &sig::peer_hashes(&sa.init_request));
            (idr, auth)
        });
        let (idr, auth) = match (verdict, ours) {
            (Ok(()), Some((idr, Ok(auth)))) => (idr, auth),
            (verdict, ours) => {
                match (verdict, ours) {
                    (Err(reason), _) => tracing::warn!(
                        ike_sa = id.0,
                        peer = %pc.name,
                        "IKE_AUTH: authentication of the peer failed: {reason}"
                    ),
                    (_, Some((_, Err(e)))) => tracing::warn!(
                        ike_sa = id.0,
                        peer = %pc.name,
                        "IKE_AUTH: cannot sign our AUTH: {e}"
                    ),
                    _ => {}
                }
                let _ = sa.send_response(
                    now,
                    &mut self.rng,
                    &mut self.events,
                    exchange::IKE_AUTH,
                    mid,
                    &[notify(n::AUTHENTICATION_FAILED, vec![])],
                    to,
                );
                sa.state = IkeState::Deleting;
                sa.expire_at = Some(now + HALF_OPEN);
                self.events.push_back(IkeEvent::IkeSaDown {
                    peer: sa.peer,
                    ike_sa: id,
                    reason: DownReason::AuthenticationFailed,
                });
                return;
            }
        };
        let mut out = vec![Payload::IdR(idr)];
        out.extend(sig::cert_payloads(pc));
        out.push(auth);
        // First CHILD SA.
        let child = match (msg::sa(p), msg::ts_i(p), msg::ts_r(p)) {
            (Some(props), Some(tsi), Some(tsr)) => {
                let sel = proposal::select_esp(&pc.esp_proposals, pc.esn, false, props);
                let tsi_n = ts::narrow(tsi, &ts::from_nets(&pc.remote_domain));
                let tsr_n = ts::narrow(tsr, &ts::from_nets(&self.cfg.local_domain));
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
        if msg::find_notify(p, n::INITIAL_CONTACT).is_some() {
            self.initial_contact(now, id);
        }
        self.established(now, id);
        if let Some(c) = new_child {
            self.install_child(now, id, c);
        }
        self.resolve_duplicate(now, id);
    }

    /// Whether two SAs are with the same remote gateway: the same peer and, for a template
    /// (which serves many remotes), the same remote IP address as well.
    fn same_remote(&self, a: &crate::sa::IkeSa, b: &crate::sa::IkeSa) -> bool {
        a.peer == b.peer
            && (a.remote.ip() == b.remote.ip()
                || self.peers.get(a.peer).is_some_and(|p| !p.is_template()))
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

    /// Initiator: verify the responder, install the first CHILD SA.
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
        let (ni, nr) = (sa.ni.clone(), sa.nr.clone());
        self.established(now, id);
        match child {
            Some((esp, spi_out, tsi, tsr)) => {
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
            None => {
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
