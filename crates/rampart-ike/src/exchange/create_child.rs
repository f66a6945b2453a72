//! CREATE_CHILD_SA for CHILD SAs (RFC 7296 1.3.1, 1.3.3): new SAs, rekeys with optional PFS,
//! and the simultaneous-rekey rule of 2.8.1.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rampart_crypto::{DhGroup, KeyExchange};
use rampart_wire::ike::{exchange, notify as n, Notify, Payload, TrafficSelector};

use crate::child::{ChildKeyMat, ChildSa, ChildState, Collision};
use crate::config::{ChildSaId, IkeSaId};
use crate::engine::Ike;
use crate::event::{ChildSaKeys, IkeEvent};
use crate::keys;
use crate::msg::{self, notify};
use crate::proposal::{self, EspAlgs, PROTO_ESP, PROTO_IKE};
use crate::retransmit::{ChildPlan, Request};
use crate::sa::{IkeState, Task};
use crate::ts;

/// Everything needed to install a negotiated CHILD SA.
pub(crate) struct NewChild {
    pub spi_in: u32,
    pub spi_out: u32,
    pub algs: EspAlgs,
    /// g^ir of a PFS exchange.
    pub shared: Option<Vec<u8>>,
    /// Nonces of the exchange that created it (initiator's first).
    pub ni: Vec<u8>,
    pub nr: Vec<u8>,
    /// We were the initiator of that exchange (decides which key is outbound).
    pub we_initiated: bool,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    pub replaces: Option<ChildSaId>,
}

/// Lowest nonce of an exchange, used to pick the redundant SA of a collision.
pub(crate) fn min_nonce(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.min(b).to_vec()
}

impl Ike {
    /// Derives the keys, records the CHILD SA and emits `ChildSaUp`.
    pub(crate) fn install_child(
        &mut self,
        now: Instant,
        id: IkeSaId,
        c: NewChild,
    ) -> Option<ChildSaId> {
        let peer = self.sas.get(&id)?.peer;
        let lifetime = self.peers.get(peer)?.child_lifetime;
        let rekey = self.jittered(lifetime);
        let child_id = ChildSaId(self.ids.next());
        let sa = self.sas.get_mut(&id)?;
        let keys = sa.keys.as_ref()?;
        let (ir, ri) = keys::child_keys(
            keys.prf,
            &keys.sk_d,
            c.shared.as_deref(),
            &c.ni,
            &c.nr,
            c.algs.encr,
            c.algs.integ,
        );
        let (out, inn) = if c.we_initiated { (ir, ri) } else { (ri, ir) };
        let mat = ChildKeyMat {
            key_in: inn.encr,
            integ_key_in: inn.integ,
            key_out: out.encr,
            integ_key_out: out.integ,
        };
        sa.children.push(ChildSa {
            id: child_id,
            spi_in: c.spi_in,
            spi_out: c.spi_out,
            algs: c.algs,
            local_ts: c.local_ts.clone(),
            remote_ts: c.remote_ts.clone(),
            keys: mat.clone(),
            created: now,
            rekey_at: Some(now + rekey),
            expire_at: Some(now + lifetime + lifetime / 10),
            state: ChildState::Installed,
            collision: None,
            own_rekey: None,
        });
        self.child_index.insert(child_id, id);
        tracing::debug!(
            ike_sa = id.0,
            child = child_id.0,
            spi_in = c.spi_in,
            spi_out = c.spi_out,
            "CHILD SA up"
        );
        self.events.push_back(IkeEvent::ChildSaUp(ChildSaKeys {
            peer,
            child: child_id,
            ike_sa: id,
            replaces: c.replaces,
            spi_in: c.spi_in,
            spi_out: c.spi_out,
            encr: c.algs.encr,
            integ: c.algs.integ,
            key_in: mat.key_in.to_vec(),
            integ_key_in: mat.integ_key_in.to_vec(),
            key_out: mat.key_out.to_vec(),
            integ_key_out: mat.integ_key_out.to_vec(),
            esn: c.algs.esn,
            local_ts: c.local_ts,
            remote_ts: c.remote_ts,
            local: sa.local,
            remote: sa.remote,
            encap: sa.encap(),
        }));
        Some(child_id)
    }

    /// Sends CREATE_CHILD_SA for a new CHILD SA (`rekey: None`) or to rekey one.
    pub(crate) fn start_create_child(
        &mut self,
        now: Instant,
        id: IkeSaId,
        rekey: Option<ChildSaId>,
        group: Option<DhGroup>,
    ) -> bool {
        let spi_in = self.alloc_child_spi();
        let ni = self.nonce();
        let Some(sa) = self.sas.get(&id) else {
            return false;
        };
        let Some(pc) = self.peers.get(sa.peer) else {
            return false;
        };
        let group = group.or_else(|| pc.esp_proposals.first().and_then(|p| p.dh));
        let (local_ts, remote_ts, old_spi) = match rekey {
            Some(cid) => match sa.child(cid) {
                Some(c) if c.state == ChildState::Installed => {
                    (c.local_ts.clone(), c.remote_ts.clone(), Some(c.spi_in))
                }
                _ => return false,
            },
            None if matches!(pc.remote_access, crate::policy::RemoteAccess::Client(_)) => (
                ts::from_nets(&crate::ra::client_tsi()),
                ts::from_nets(&pc.remote_domain),
                None,
            ),
            None => (
                ts::from_nets(&self.cfg.local_domain),
                ts::from_nets(&pc.remote_domain),
                None,
            ),
        };
        let ke = match group.map(|g| KeyExchange::generate(g, &mut self.rng)) {
            Some(Ok(k)) => Some(k),
            Some(Err(_)) => return false,
            None => None,
        };
        let mut payloads = Vec::new();
        if let Some(spi) = old_spi {
            payloads.push(Payload::Notify(Notify {
                protocol: PROTO_ESP,
                spi: spi.to_be_bytes().to_vec(),
                kind: n::REKEY_SA,
                data: vec![],
            }));
        }
        payloads.push(Payload::Sa(proposal::esp_offer(
            &pc.esp_proposals,
            spi_in,
            pc.esn,
            true,
        )));
        payloads.push(Payload::Nonce(ni.clone()));
        if let Some(k) = &ke {
            payloads.push(Payload::Ke {
                group: k.group().transform_id(),
                data: k.public_key().to_vec(),
            });
        }
        payloads.push(Payload::TsI(local_ts.clone()));
        payloads.push(Payload::TsR(remote_ts.clone()));
        let plan = ChildPlan {
            rekey,
            spi_in,
            ni,
            ke,
            local_ts,
            remote_ts,
        };
        let timeout = self.retransmit_timeout();
        let Some(sa) = self.sas.get_mut(&id) else {
            return false;
        };
        if let Some(c) = rekey.and_then(|cid| sa.child_mut(cid)) {
            c.state = ChildState::Rekeying;
        }
        sa.send_request(
            now,
            timeout,
            &mut self.rng,
            &mut self.events,
            exchange::CREATE_CHILD_SA,
            &payloads,
            Request::CreateChild(plan),
        )
        .is_ok()
    }

    /// Responder of CREATE_CHILD_SA: a CHILD SA (new or rekey) or an IKE SA rekey.
    pub(crate) fn create_child_request(
        &mut self,
        now: Instant,
        id: IkeSaId,
        mid: u32,
        p: &[Payload],
        to: (SocketAddr, SocketAddr),
    ) {
        let Some(sa) = self.sas.get(&id) else { return };
        let rekey_notify = msg::find_notify(p, n::REKEY_SA);
        let is_ike = rekey_notify.is_none()
            && msg::sa(p).is_some_and(|ps| ps.iter().any(|x| x.protocol == PROTO_IKE));
        if is_ike {
            self.ike_rekey_request(now, id, mid, p, to);
            return;
        }
        let ike_rekey_busy = matches!(
            sa.pending.as_ref().map(|x| &x.kind),
            Some(Request::RekeyIke { .. })
        );
        let result = if sa.state != IkeState::Established || ike_rekey_busy {
            Err((n::TEMPORARY_FAILURE, vec![]))
        } else {
            self.child_answer(now, id, p)
        };
        let out = match result {
            Ok(out) => out,
            Err((code, data)) => {
                tracing::debug!(ike_sa = id.0, code, "CREATE_CHILD_SA refused");
                vec![notify(code, data)]
            }
        };
        self.respond(now, id, exchange::CREATE_CHILD_SA, mid, &out, to);
    }

    /// Negotiates the CHILD SA of a request; installs it and returns the response payloads.
    fn child_answer(
        &mut self,
        now: Instant,
        id: IkeSaId,
        p: &[Payload],
    ) -> Result<Vec<Payload>, (u16, Vec<u8>)> {
        let sa = self.sas.get(&id).ok_or((n::TEMPORARY_FAILURE, vec![]))?;
        let pc = self
            .peers
            .get(sa.peer)
            .ok_or((n::TEMPORARY_FAILURE, vec![]))?;
        let old = match msg::find_notify(p, n::REKEY_SA) {
            Some(rn) if rn.protocol == PROTO_ESP => {
                let spi = rn
                    .spi
                    .as_slice()
                    .try_into()
                    .map(u32::from_be_bytes)
                    .map_err(|_| (n::INVALID_SYNTAX, vec![]))?;
                let c = sa
                    .children
                    .iter()
                    .find(|c| c.spi_out == spi && c.state != ChildState::Deleting);
                Some(c.ok_or((n::CHILD_SA_NOT_FOUND, vec![]))?.id)
            }
            Some(_) => return Err((n::INVALID_SYNTAX, vec![])),
            None => None,
        };
        let (props, ni, tsi, tsr) = match (msg::sa(p), msg::nonce(p), msg::ts_i(p), msg::ts_r(p)) {
            (Some(a), Some(b), Some(c), Some(d)) => (a, b, c, d),
            _ => return Err((n::INVALID_SYNTAX, vec![])),
        };
        let (esp, idx) = proposal::select_esp(&pc.esp_proposals, pc.esn, true, props)
            .ok_or((n::NO_PROPOSAL_CHOSEN, vec![]))?;
        let spi_out = proposal::esp_spi(&props[idx]).ok_or((n::INVALID_SYNTAX, vec![]))?;
        let mut ke_out = None;
        let mut shared = None;
        if let Some(g) = esp.dh {
            let want = (
                n::INVALID_KE_PAYLOAD,
                g.transform_id().to_be_bytes().to_vec(),
            );
            let (group, data) = msg::ke(p).ok_or(want.clone())?;
            if group != g.transform_id() {
                return Err(want);
            }
            let k = KeyExchange::generate(g, &mut self.rng)
                .map_err(|_| (n::TEMPORARY_FAILURE, vec![]))?;
            let s = k.agree(data).map_err(|_| (n::INVALID_SYNTAX, vec![]))?;
            shared = Some(s.as_bytes().to_vec());
            ke_out = Some(Payload::Ke {
                group,
                data: k.public_key().to_vec(),
            });
        }
        let sa = self.sas.get(&id).ok_or((n::TEMPORARY_FAILURE, vec![]))?;
        let pc = self
            .peers
            .get(sa.peer)
            .ok_or((n::TEMPORARY_FAILURE, vec![]))?;
        // A remote-access client's CHILD SAs stay on its address and the routes, like its first.
        let (allowed_i, allowed_r) = match (crate::ra::gateway(pc), &sa.lease) {
            (Some(gw), Some(held)) => crate::ra::narrowing(gw, held.lease.address),
            // The client's side is its Office Mode address, whatever its local domain says.
            _ if matches!(pc.remote_access, crate::policy::RemoteAccess::Client(_)) => {
                (pc.remote_domain.clone(), crate::ra::client_tsi())
            }
            _ => (pc.remote_domain.clone(), self.cfg.local_domain.clone()),
        };
        let tsi_n = ts::narrow(tsi, &ts::from_nets(&allowed_i));
        let tsr_n = ts::narrow(tsr, &ts::from_nets(&allowed_r));
        if tsi_n.is_empty() || tsr_n.is_empty() {
            return Err((n::TS_UNACCEPTABLE, vec![]));
        }
        let num = props[idx].num;
        let nr = self.nonce();
        let spi_in = self.alloc_child_spi();
        let mut out = vec![
            Payload::Sa(vec![proposal::esp_proposal(num, &esp, spi_in)]),
            Payload::Nonce(nr.clone()),
        ];
        out.extend(ke_out);
        out.push(Payload::TsI(tsi_n.clone()));
        out.push(Payload::TsR(tsr_n.clone()));
        let nonce = min_nonce(ni, &nr);
        let c = NewChild {
            spi_in,
            spi_out,
            algs: esp,
            shared,
            ni: ni.to_vec(),
            nr,
            we_initiated: false,
            local_ts: tsr_n,
            remote_ts: tsi_n,
            replaces: old,
        };
        let new = self
            .install_child(now, id, c)
            .ok_or((n::TEMPORARY_FAILURE, vec![]))?;
        if let Some(old) = old {
            self.peer_rekeyed_child(id, old, new, nonce);
        }
        Ok(out)
    }

    /// The peer created `new` to replace `old`: detect a collision with our own rekey.
    fn peer_rekeyed_child(&mut self, id: IkeSaId, old: ChildSaId, new: ChildSaId, nonce: Vec<u8>) {
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        let Some(c) = sa.child_mut(old) else { return };
        match c.state {
            ChildState::Rekeying => {
                tracing::debug!(child = old.0, "CHILD rekey collision");
                c.collision = Some(Collision { new, nonce });
            }
            ChildState::Rekeyed => {
                // Our rekey already finished: if ours is the redundant one, we delete it.
                if let Some((ours, our_nonce)) = c.own_rekey.clone() {
                    if our_nonce < nonce {
                        sa.tasks.push_back(Task::DeleteChild(vec![ours]));
                    }
                }
            }
            _ => {
                c.state = ChildState::Rekeyed;
                c.rekey_at = None;
                sa.tasks.retain(|t| *t != Task::RekeyChild(old));
            }
        }
    }

    /// Initiator: the response to our CREATE_CHILD_SA for a CHILD SA.
    pub(crate) fn create_child_response(
        &mut self,
        now: Instant,
        id: IkeSaId,
        kind: Request,
        p: &[Payload],
    ) {
        let plan = match kind {
            Request::CreateChild(plan) => plan,
            k @ Request::RekeyIke { .. } => return self.ike_rekey_response(now, id, k, p),
            _ => return,
        };
        if let Some(e) = msg::first_error(p) {
            return self.child_failed(now, id, plan, e.kind, &e.data);
        }
        let Some(sa) = self.sas.get(&id) else { return };
        let Some(pc) = self.peers.get(sa.peer) else {
            return;
        };
        let pfs = plan.ke.is_some();
        let negotiated = (|| {
            let [prop] = msg::sa(p)? else { return None };
            let esp = proposal::accept_esp(&pc.esp_proposals, pc.esn, pfs, prop)?;
            let spi_out = proposal::esp_spi(prop)?;
            let nr = msg::nonce(p)?;
            let shared = match (&plan.ke, esp.dh) {
                (Some(k), Some(g)) if k.group() == g => {
                    let (group, data) = msg::ke(p)?;
                    (group == g.transform_id()).then_some(())?;
                    Some(k.agree(data).ok()?.as_bytes().to_vec())
                }
                (_, None) => None,
                _ => return None,
            };
            let (tsi, tsr) = (msg::ts_i(p)?, msg::ts_r(p)?);
            (ts::is_subset(tsi, &plan.local_ts) && ts::is_subset(tsr, &plan.remote_ts))
                .then_some(())?;
            Some((
                esp,
                spi_out,
                nr.to_vec(),
                shared,
                tsi.to_vec(),
                tsr.to_vec(),
            ))
        })();
        let Some((esp, spi_out, nr, shared, tsi, tsr)) = negotiated else {
            tracing::debug!(ike_sa = id.0, "invalid CREATE_CHILD_SA response");
            return self.child_failed(now, id, plan, n::NO_PROPOSAL_CHOSEN, &[]);
        };
        let nonce = min_nonce(&plan.ni, &nr);
        let c = NewChild {
            spi_in: plan.spi_in,
            spi_out,
            algs: esp,
            shared,
            ni: plan.ni,
            nr,
            we_initiated: true,
            local_ts: tsi,
            remote_ts: tsr,
            replaces: plan.rekey,
        };
        let Some(new) = self.install_child(now, id, c) else {
            return;
        };
        let Some(old) = plan.rekey else { return };
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        let Some(c) = sa.child_mut(old) else { return };
        c.state = ChildState::Rekeyed;
        c.rekey_at = None;
        c.own_rekey = Some((new, nonce.clone()));
        match c.collision.take() {
            Some(col) if nonce < col.nonce => {
                // Ours has the lowest nonce: it is redundant and we delete it; the peer deletes the old one.
                tracing::debug!(child = old.0, "CHILD rekey collision lost");
                sa.tasks.push_back(Task::DeleteChild(vec![new]));
            }
            _ => sa.tasks.push_back(Task::DeleteChild(vec![old])),
        }
    }

    fn child_failed(&mut self, now: Instant, id: IkeSaId, plan: ChildPlan, code: u16, data: &[u8]) {
        tracing::debug!(ike_sa = id.0, code, "CREATE_CHILD_SA failed");
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        let Some(pc) = self.peers.get(sa.peer) else {
            return;
        };
        let rekey = plan.rekey;
        if let Some(c) = rekey.and_then(|cid| sa.child_mut(cid)) {
            if let Some(col) = c.collision.take() {
                // The peer's rekey stands alone; the peer deletes the old SA.
                tracing::debug!(child = col.new.0, "peer's rekey wins");
                c.state = ChildState::Rekeyed;
                return;
            }
            c.state = ChildState::Installed;
        }
        match code {
            n::INVALID_KE_PAYLOAD => {
                let g = data
                    .get(..2)
                    .and_then(|b| DhGroup::from_id(u16::from_be_bytes([b[0], b[1]])));
                let tried = plan.ke.as_ref().map(|k| k.group());
                if let Some(g) = g.filter(|g| {
                    Some(*g) != tried && pc.esp_proposals.iter().any(|e| e.dh == Some(*g))
                }) {
                    self.start_create_child(now, id, rekey, Some(g));
                }
            }
            n::TEMPORARY_FAILURE => {
                let delay = Duration::from_millis(500 + self.rng.next_u64() % 1500);
                let Some(sa) = self.sas.get_mut(&id) else {
                    return;
                };
                sa.retry_at = Some(now + delay);
                sa.tasks
                    .push_back(rekey.map_or(Task::NewChild, Task::RekeyChild));
            }
            n::CHILD_SA_NOT_FOUND => {
                if let Some(cid) = rekey {
                    self.drop_child(id, cid);
                }
            }
            _ => {}
        }
    }

    /// Forgets a CHILD SA and reports it down.
    pub(crate) fn drop_child(&mut self, id: IkeSaId, cid: ChildSaId) {
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        let Some(pos) = sa.children.iter().position(|c| c.id == cid) else {
            return;
        };
        let c = sa.children.remove(pos);
        self.child_index.remove(&cid);
        self.events.push_back(IkeEvent::ChildSaDown {
            peer: sa.peer,
            child: cid,
            spi_in: c.spi_in,
            spi_out: c.spi_out,
        });
    }
}
