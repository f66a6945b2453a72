//! IKE SA rekey with CREATE_CHILD_SA (RFC 7296 1.3.2, 2.18) and its collision rule (2.8.2).
//!
//! The rekey initiator becomes the original initiator of the new SA. SKEYSEED =
//! prf_old(SK_d(old), g^ir(new) | Ni | Nr). CHILD SAs move to the surviving new SA; the old one is
//! deleted by the rekey initiator (by the winner, after a collision).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rampart_crypto::{DhGroup, KeyExchange};
use rampart_wire::ike::{exchange, notify as n, Payload};

use crate::config::IkeSaId;
use crate::engine::Ike;
use crate::exchange::create_child::min_nonce;
use crate::exchange::init::sa_keys;
use crate::keys;
use crate::msg::{self, notify};
use crate::proposal::{self, IkeAlgs};
use crate::retransmit::Request;
use crate::sa::{IkeCollision, IkeSa, IkeState, Task};

impl Ike {
    pub(crate) fn start_ike_rekey(
        &mut self,
        now: Instant,
        id: IkeSaId,
        group: Option<DhGroup>,
    ) -> bool {
        let spi = self.alloc_ike_spi();
        let ni = self.nonce();
        let Some(sa) = self.sas.get(&id) else {
            return false;
        };
        let Some(pc) = self.peers.get(sa.peer) else {
            return false;
        };
        let Some(group) = group.or_else(|| pc.ike_proposals.first().map(|p| p.dh)) else {
            return false;
        };
        let Ok(ke) = KeyExchange::generate(group, &mut self.rng) else {
            return false;
        };
        let payloads = vec![
            Payload::Sa(proposal::ike_offer(&pc.ike_proposals, &spi.to_be_bytes())),
            Payload::Nonce(ni.clone()),
            Payload::Ke {
                group: group.transform_id(),
                data: ke.public_key().to_vec(),
            },
        ];
        let timeout = self.retransmit_timeout();
        let Some(sa) = self.sas.get_mut(&id) else {
            return false;
        };
        tracing::debug!(ike_sa = id.0, "rekeying IKE SA");
        sa.send_request(
            now,
            timeout,
            &mut self.rng,
            &mut self.events,
            exchange::CREATE_CHILD_SA,
            &payloads,
            Request::RekeyIke { spi, ni, ke },
        )
        .is_ok()
    }

    /// Builds the successor of `old` (not yet holding any CHILD SA) and registers it.
    #[allow(clippy::too_many_arguments)]
    fn successor(
        &mut self,
        now: Instant,
        old: IkeSaId,
        initiator: bool,
        algs: IkeAlgs,
        shared: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> Option<IkeSaId> {
        let o = self.sas.get(&old)?;
        let ok = o.keys.as_ref()?;
        let seed = keys::rekey_skeyseed(ok.prf, &ok.sk_d, shared, ni, nr);
        let k = keys::derive_ike_keys(&algs, &seed, ni, nr, spi_i, spi_r);
        let sk = sa_keys(&algs, k, initiator).ok()?;
        let id = IkeSaId(self.ids.next());
        let mut sa = IkeSa::new(id, o.peer, initiator, now, o.local, o.remote);
        sa.spi_i = spi_i;
        sa.spi_r = spi_r;
        sa.nat_local = o.nat_local;
        sa.nat_remote = o.nat_remote;
        // MOBIKE and who decides stay with the IKE SA across rekeys (RFC 4555 3.1).
        sa.mobike = o.mobike;
        // RFC 7383 2.5: fragmentation support carries over to the rekeyed IKE SA.
        sa.frag.size = o.frag.size;
        sa.algs = Some(algs);
        sa.ni = ni.to_vec();
        sa.nr = nr.to_vec();
        sa.keys = Some(sk);
        sa.last_rx = now;
        // Not adopted (a collision's redundant SA) => dropped unless the peer deletes it first.
        sa.expire_at = Some(now + Duration::from_secs(30));
        self.by_spi.insert(sa.our_spi(), id);
        self.sas.insert(id, sa);
        Some(id)
    }

    /// Moves the CHILD SAs of `old` to `new`, announces `new`, and marks `old` rekeyed.
    fn adopt(&mut self, now: Instant, old: IkeSaId, new: IkeSaId) {
        let (children, tasks) = match self.sas.get_mut(&old) {
            Some(o) => {
                o.state = IkeState::Rekeyed;
                o.rekey_at = None;
                o.expire_at = Some(now + Duration::from_secs(30));
                // CHILD SA work follows the CHILD SAs.
                let (keep, moved): (Vec<Task>, Vec<Task>) = o
                    .tasks
                    .drain(..)
                    .partition(|t| matches!(t, Task::DeleteIke));
                o.tasks.extend(keep);
                (std::mem::take(&mut o.children), moved)
            }
            None => return,
        };
        for c in &children {
            self.child_index.insert(c.id, new);
        }
        self.move_lease(old, new);
        if let Some(client) = self.sas.get(&old).and_then(|o| o.ra_client.clone()) {
            if let Some(n) = self.sas.get_mut(&new) {
                n.ra_client = Some(client);
            }
        }
        self.established(now, new);
        if let Some(n) = self.sas.get_mut(&new) {
            n.children.extend(children);
            n.tasks.extend(
                tasks
                    .into_iter()
                    .filter(|t| *t != Task::RekeyIke && *t != Task::Liveness),
            );
        }
        self.kick.push(new);
    }

    /// Responder of an IKE rekey.
    pub(crate) fn ike_rekey_request(
        &mut self,
        now: Instant,
        id: IkeSaId,
        mid: u32,
        p: &[Payload],
        to: (SocketAddr, SocketAddr),
    ) {
        let Some(sa) = self.sas.get(&id) else { return };
        let busy_child = matches!(
            sa.pending.as_ref().map(|x| &x.kind),
            Some(Request::CreateChild(_))
        );
        let own_rekey = matches!(
            sa.pending.as_ref().map(|x| &x.kind),
            Some(Request::RekeyIke { .. })
        );
        let answer = if sa.state != IkeState::Established || busy_child {
            Err((n::TEMPORARY_FAILURE, vec![]))
        } else {
            self.ike_rekey_answer(now, id, p)
        };
        let (out, new) = match answer {
            Ok(x) => x,
            Err((code, data)) => {
                tracing::debug!(ike_sa = id.0, code, "IKE rekey refused");
                (vec![notify(code, data)], None)
            }
        };
        self.respond(now, id, exchange::CREATE_CHILD_SA, mid, &out, to);
        let Some((new, nonce)) = new else { return };
        if own_rekey {
            tracing::debug!(ike_sa = id.0, "IKE rekey collision");
            if let Some(sa) = self.sas.get_mut(&id) {
                sa.collision = Some(IkeCollision { new_sa: new, nonce });
            }
        } else {
            self.adopt(now, id, new);
        }
    }

    #[allow(clippy::type_complexity)]
    fn ike_rekey_answer(
        &mut self,
        now: Instant,
        id: IkeSaId,
        p: &[Payload],
    ) -> Result<(Vec<Payload>, Option<(IkeSaId, Vec<u8>)>), (u16, Vec<u8>)> {
        let syntax = (n::INVALID_SYNTAX, vec![]);
        let sa = self.sas.get(&id).ok_or(syntax.clone())?;
        let pc = self
            .peers
            .get(sa.peer)
            .ok_or((n::TEMPORARY_FAILURE, vec![]))?;
        let (props, ni, (group, ke_data)) = match (msg::sa(p), msg::nonce(p), msg::ke(p)) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => return Err(syntax),
        };
        let (algs, idx) = proposal::select_ike(&pc.ike_proposals, props)
            .ok_or((n::NO_PROPOSAL_CHOSEN, vec![]))?;
        if group != algs.dh.transform_id() {
            return Err((
                n::INVALID_KE_PAYLOAD,
                algs.dh.transform_id().to_be_bytes().to_vec(),
            ));
        }
        let peer_spi = proposal::ike_spi(&props[idx])
            .filter(|s| *s != 0)
            .ok_or(syntax.clone())?;
        let num = props[idx].num;
        let ke = KeyExchange::generate(algs.dh, &mut self.rng)
            .map_err(|_| (n::TEMPORARY_FAILURE, vec![]))?;
        let shared = ke.agree(ke_data).map_err(|_| syntax.clone())?;
        let nr = self.nonce();
        let spi_r = self.alloc_ike_spi();
        let new = self
            .successor(
                now,
                id,
                false,
                algs,
                shared.as_bytes(),
                ni,
                &nr,
                peer_spi,
                spi_r,
            )
            .ok_or(syntax)?;
        let out = vec![
            Payload::Sa(vec![proposal::ike_proposal(
                num,
                &algs,
                &spi_r.to_be_bytes(),
            )]),
            Payload::Nonce(nr.clone()),
            Payload::Ke {
                group,
                data: ke.public_key().to_vec(),
            },
        ];
        Ok((out, Some((new, min_nonce(ni, &nr)))))
    }

    /// Initiator: response to our IKE rekey.
    pub(crate) fn ike_rekey_response(
        &mut self,
        now: Instant,
        id: IkeSaId,
        kind: Request,
        p: &[Payload],
    ) {
        let Request::RekeyIke { spi, ni, ke } = kind else {
            return;
        };
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        if let Some(e) = msg::first_error(p) {
            tracing::debug!(ike_sa = id.0, code = e.kind, "IKE rekey failed");
            if let Some(col) = sa.collision.take() {
                // Only the peer's rekey happened: it stands.
                self.adopt(now, id, col.new_sa);
                return;
            }
            let retry_group = (e.kind == n::INVALID_KE_PAYLOAD)
                .then(|| {
                    e.data
                        .get(..2)
                        .and_then(|b| DhGroup::from_id(u16::from_be_bytes([b[0], b[1]])))
                })
                .flatten()
                .filter(|g| *g != ke.group());
            if let Some(g) = retry_group {
                self.start_ike_rekey(now, id, Some(g));
            } else if e.kind == n::TEMPORARY_FAILURE {
                let delay = Duration::from_millis(500 + self.rng.next_u64() % 1500);
                if let Some(sa) = self.sas.get_mut(&id) {
                    sa.retry_at = Some(now + delay);
                    sa.tasks.push_back(Task::RekeyIke);
                }
            }
            return;
        }
        let Some(pc) = self.peers.get(sa.peer) else {
            return;
        };
        let negotiated = (|| {
            let [prop] = msg::sa(p)? else { return None };
            let algs = proposal::accept_ike(&pc.ike_proposals, prop)?;
            let spi_r = proposal::ike_spi(prop).filter(|s| *s != 0)?;
            let nr = msg::nonce(p)?;
            let (group, data) = msg::ke(p)?;
            (group == algs.dh.transform_id() && ke.group() == algs.dh).then_some(())?;
            let shared = ke.agree(data).ok()?;
            Some((algs, spi_r, nr.to_vec(), shared))
        })();
        let Some((algs, spi_r, nr, shared)) = negotiated else {
            tracing::debug!(ike_sa = id.0, "invalid IKE rekey response");
            return;
        };
        let collision = sa.collision.take();
        let Some(new) =
            self.successor(now, id, true, algs, shared.as_bytes(), &ni, &nr, spi, spi_r)
        else {
            return;
        };
        let nonce = min_nonce(&ni, &nr);
        match collision {
            Some(col) if nonce < col.nonce => {
                // Ours is redundant: delete it; the peer's SA takes the CHILD SAs, the peer deletes the old one.
                tracing::debug!(ike_sa = id.0, "IKE rekey collision lost");
                self.adopt(now, id, col.new_sa);
                if let Some(s) = self.sas.get_mut(&new) {
                    s.state = IkeState::Established;
                    s.tasks.push_back(Task::DeleteIke);
                }
                self.kick.push(new);
            }
            _ => {
                self.adopt(now, id, new);
                if let Some(o) = self.sas.get_mut(&id) {
                    o.own_rekey = Some((new, nonce));
                    o.tasks.push_back(Task::DeleteIke);
                }
            }
        }
    }
}
