//! INFORMATIONAL (RFC 7296 1.4, 1.5): Delete of CHILD and IKE SAs, liveness checks, and the
//! MOBIKE address updates (RFC 4555, see [`crate::mobike`]).

use std::net::SocketAddr;
use std::time::Instant;

use rampart_wire::ike::{exchange, Delete, Payload};

use crate::child::ChildState;
use crate::config::{ChildSaId, IkeSaId};
use crate::engine::Ike;
use crate::event::DownReason;
use crate::proposal::{PROTO_ESP, PROTO_IKE};
use crate::retransmit::Request;
use crate::sa::IkeState;

impl Ike {
    pub(crate) fn start_delete_children(
        &mut self,
        now: Instant,
        id: IkeSaId,
        ids: Vec<ChildSaId>,
    ) -> bool {
        let timeout = self.retransmit_timeout();
        let Some(sa) = self.sas.get_mut(&id) else {
            return false;
        };
        let mut spis = Vec::new();
        let mut live = Vec::new();
        for c in sa
            .children
            .iter_mut()
            .filter(|c| ids.contains(&c.id) && c.state != ChildState::Deleting)
        {
            c.state = ChildState::Deleting;
            c.rekey_at = None;
            spis.push(c.spi_in);
            live.push(c.id);
        }
        if live.is_empty() {
            return false;
        }
        tracing::debug!(ike_sa = id.0, ?spis, "deleting CHILD SAs");
        let d = Payload::Delete(Delete {
            protocol: PROTO_ESP,
            spis,
        });
        sa.send_request(
            now,
            timeout,
            &mut self.rng,
            &mut self.events,
            exchange::INFORMATIONAL,
            &[d],
            Request::Delete(live),
        )
        .is_ok()
    }

    pub(crate) fn start_delete_ike(&mut self, now: Instant, id: IkeSaId) -> bool {
        let timeout = self.retransmit_timeout();
        let Some(sa) = self.sas.get_mut(&id) else {
            return false;
        };
        if sa.state != IkeState::Rekeyed {
            sa.state = IkeState::Deleting;
        }
        tracing::debug!(ike_sa = id.0, "deleting IKE SA");
        let d = Payload::Delete(Delete {
            protocol: PROTO_IKE,
            spis: vec![],
        });
        sa.send_request(
            now,
            timeout,
            &mut self.rng,
            &mut self.events,
            exchange::INFORMATIONAL,
            &[d],
            Request::DeleteIke,
        )
        .is_ok()
    }

    pub(crate) fn start_liveness(&mut self, now: Instant, id: IkeSaId) -> bool {
        let timeout = self.retransmit_timeout();
        let Some(sa) = self.sas.get_mut(&id) else {
            return false;
        };
        tracing::debug!(ike_sa = id.0, "liveness check");
        sa.send_request(
            now,
            timeout,
            &mut self.rng,
            &mut self.events,
            exchange::INFORMATIONAL,
            &[],
            Request::Liveness,
        )
        .is_ok()
    }

    pub(crate) fn info_request(
        &mut self,
        now: Instant,
        id: IkeSaId,
        mid: u32,
        p: &[Payload],
        to: (SocketAddr, SocketAddr),
    ) {
        let mut delete_ike = false;
        let mut esp_spis = Vec::new();
        for d in p.iter().filter_map(|x| match x {
            Payload::Delete(d) => Some(d),
            _ => None,
        }) {
            match d.protocol {
                PROTO_IKE => delete_ike = true,
                PROTO_ESP => esp_spis.extend_from_slice(&d.spis),
                _ => {}
            }
        }
        if let Some(hash) = Ike::nat_check_notify(p) {
            self.nat_public_hash(id, hash);
        }
        let mobike = self.mobike_request(id, mid, p, to);
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        if delete_ike {
            let _ = sa.send_response(
                now,
                &mut self.rng,
                &mut self.events,
                exchange::INFORMATIONAL,
                mid,
                &mobike,
                to,
            );
            let reason = if sa.state == IkeState::Rekeyed {
                DownReason::Rekeyed
            } else {
                DownReason::DeletedByPeer
            };
            tracing::debug!(ike_sa = id.0, ?reason, "peer deleted IKE SA");
            self.remove_sa(id, Some(reason));
            return;
        }
        let mut ours = Vec::new();
        let mut gone = Vec::new();
        for c in sa.children.iter().filter(|c| esp_spis.contains(&c.spi_out)) {
            ours.push(c.spi_in);
            gone.push(c.id);
        }
        let mut out = if ours.is_empty() {
            vec![]
        } else {
            vec![Payload::Delete(Delete {
                protocol: PROTO_ESP,
                spis: ours,
            })]
        };
        out.extend(mobike);
        let _ = sa.send_response(
            now,
            &mut self.rng,
            &mut self.events,
            exchange::INFORMATIONAL,
            mid,
            &out,
            to,
        );
        for cid in gone {
            self.drop_child(id, cid);
        }
    }

    pub(crate) fn info_response(
        &mut self,
        _now: Instant,
        id: IkeSaId,
        kind: Request,
        p: &[Payload],
        from: (SocketAddr, SocketAddr),
    ) {
        match kind {
            Request::UpdateAddresses => self.update_answered(id, p, from.0, from.1),
            Request::Delete(ids) => {
                for cid in ids {
                    self.drop_child(id, cid);
                }
            }
            Request::DeleteIke => {
                let Some(sa) = self.sas.get(&id) else { return };
                let reason = if sa.state == IkeState::Rekeyed {
                    DownReason::Rekeyed
                } else {
                    DownReason::Deleted
                };
                self.remove_sa(id, Some(reason));
            }
            _ => {}
        }
    }
}
