//! `status()`: a snapshot of every IKE SA and its CHILD SAs.

use std::time::Instant;

use crate::engine::Ike;
use crate::event::{ChildSaStatus, IkeSaStatus};
use crate::msg::identity_string;
use crate::policy::{Identity, PeerPolicy};

impl Ike {
    pub fn status(&self, now: Instant) -> Vec<IkeSaStatus> {
        self.sas
            .values()
            .map(|sa| {
                let pc = self.peers.get(sa.peer);
                let id_string = |f: fn(&PeerPolicy) -> &Identity| {
                    pc.map(|pc| identity_string(f(pc))).unwrap_or_default()
                };
                IkeSaStatus {
                    ike_sa: sa.id,
                    peer: sa.peer,
                    peer_name: pc.map(|pc| pc.name.clone()).unwrap_or_default(),
                    state: sa.state,
                    initiator: sa.initiator,
                    spi_i: sa.spi_i,
                    spi_r: sa.spi_r,
                    local: sa.local,
                    remote: sa.remote,
                    local_id: id_string(|pc| &pc.local_id),
                    remote_id: id_string(|pc| &pc.remote_id),
                    encr: sa.algs.map(|a| a.encr),
                    integ: sa.algs.and_then(|a| a.integ),
                    prf: sa.algs.map(|a| a.prf),
                    dh: sa.algs.map(|a| a.dh),
                    nat_local: sa.nat_local,
                    nat_remote: sa.nat_remote,
                    mobike: sa.mobike.negotiated,
                    established_for: sa.established_at.map(|t| now.saturating_duration_since(t)),
                    rekey_in: sa.rekey_at.map(|t| t.saturating_duration_since(now)),
                    children: sa
                        .children
                        .iter()
                        .map(|c| ChildSaStatus {
                            child: c.id,
                            spi_in: c.spi_in,
                            spi_out: c.spi_out,
                            encr: c.algs.encr,
                            integ: c.algs.integ,
                            dh: c.algs.dh,
                            esn: c.algs.esn,
                            encap: sa.encap(),
                            local_ts: c.local_ts.clone(),
                            remote_ts: c.remote_ts.clone(),
                            installed_for: now.saturating_duration_since(c.created),
                            rekey_in: c.rekey_at.map(|t| t.saturating_duration_since(now)),
                        })
                        .collect(),
                }
            })
            .collect()
    }
}
