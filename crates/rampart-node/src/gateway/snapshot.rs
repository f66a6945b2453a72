//! The gateway's SA and connection state as values: what another member needs to continue the
//! tunnels and connections of this one without the peers noticing (a cluster takeover).
//!
//! An [`SaSnapshot`] is one IKE SA (`rampart_ike::IkeSaState`, with every CHILD SA's keys) plus
//! each CHILD SA's ESP counters from the data plane ([`TunnelEspState`]). Importing it installs
//! the IKE SA, lets the data plane install the tunnels from the `ChildSaUp` events exactly as
//! after a negotiation, and then continues each tunnel's counters: outbound sequence numbers
//! jump forward by a margin, the inbound replay window is restored.
//!
//! Invariants: a snapshot names exactly the CHILD SAs of its IKE state, each once; an import
//! that is refused before the IKE engine accepted it changes nothing.

use std::time::Instant;

use rampart_esp::{InboundState, OutboundState};
use rampart_ike::{ChildPhase, ChildSaId, IkeSaId, IkeSaState, ImportError};
use rampart_inspect::{ApplyError, Change, Connection};
use serde::{Deserialize, Serialize};

use super::Gateway;
use crate::NodeError;

/// How far the outbound sequence number of an imported tunnel jumps past the exported one.
///
/// State is exported periodically, so the member that is taken over may have sent packets
/// after the snapshot left. Their sequence numbers must not be used again: the peer would drop
/// the repeats as replays, and with AEAD the sequence number is the IV, so a repeat under the
/// same key is a nonce reuse. The margin must exceed the packets one tunnel can send between
/// two exports. 16384 is the value OpenBSD's pfsync applies on takeover; at 1500-byte packets
/// it covers about 200 ms of a 1 Gbit/s tunnel, so export at least that often or use more.
pub const DEFAULT_TAKEOVER_MARGIN: u64 = 16384;

/// One IKE SA of a gateway with its tunnels' ESP state (serde; keys zeroized on drop).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SaSnapshot {
    pub ike: IkeSaState,
    /// One entry per CHILD SA of `ike`, in any order.
    pub esp: Vec<TunnelEspState>,
}

/// Both directions' ESP state of one tunnel (CHILD SA) at the export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelEspState {
    pub child: ChildSaId,
    pub outbound: OutboundState,
    pub inbound: InboundState,
}

/// Why an [`SaSnapshot`] was not imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The IKE engine refused the IKE state; nothing changed.
    #[error("IKE state refused: {0}")]
    Ike(#[from] ImportError),
    /// A CHILD SA of the IKE state has no ESP state; nothing changed.
    #[error("CHILD SA {:#x} has no ESP state in the snapshot", .0 .0)]
    MissingEspState(ChildSaId),
    /// ESP state for a CHILD SA the IKE state does not have (or twice); nothing changed.
    #[error("ESP state for CHILD SA {:#x}, which the IKE state does not list once", .0 .0)]
    StrayEspState(ChildSaId),
    /// The IKE SA was imported but the data plane did not install this tunnel (its log record
    /// says why); the IKE SA stays, the tunnel is renegotiated by the next rekey.
    #[error("IKE SA {:#x} imported, but tunnel {:#x} was not installed", .ike_sa.0, .child.0)]
    TunnelNotInstalled { ike_sa: IkeSaId, child: ChildSaId },
}

impl Gateway {
    /// IKE SA `id` with its tunnels' ESP state at `now`. `None` when the IKE engine cannot
    /// export it (see `Ike::export_sa`: not established, or our CREATE_CHILD_SA in flight) or
    /// a CHILD SA has no tunnel in the data plane.
    pub fn export_sa(&self, now: Instant, id: IkeSaId) -> Option<SaSnapshot> {
        let ike = self.ike.export_sa(now, id)?;
        snapshot_of(self, ike)
    }

    /// [`Gateway::export_sa`] of every exportable IKE SA.
    pub fn export_all(&self, now: Instant) -> Vec<SaSnapshot> {
        self.ike
            .export_all(now)
            .into_iter()
            .filter_map(|ike| snapshot_of(self, ike))
            .collect()
    }

    /// Continues an IKE SA and its tunnels exported by another member.
    ///
    /// The IKE engine installs the SA under its ids and SPIs (the peer is resolved by name) and
    /// the data plane installs each tunnel from the keys, as after a negotiation; then each
    /// tunnel continues from its [`TunnelEspState`]: the next outbound sequence number is the
    /// exported one plus `outbound_margin` (see [`DEFAULT_TAKEOVER_MARGIN`]), the replay window
    /// refuses whatever the exporter had received, the volume counters continue. The newest
    /// installed CHILD SA of the peer carries its outbound traffic.
    pub fn import_sa(
        &mut self,
        now: Instant,
        snapshot: SaSnapshot,
        outbound_margin: u64,
    ) -> Result<IkeSaId, NodeError> {
        let SaSnapshot { ike, esp } = snapshot;
        for (n, t) in esp.iter().enumerate() {
            let listed = ike.children.iter().any(|c| c.id == t.child);
            if !listed || esp[..n].iter().any(|o| o.child == t.child) {
                return Err(SnapshotError::StrayEspState(t.child).into());
            }
        }
        if let Some(c) = ike
            .children
            .iter()
            .find(|c| !esp.iter().any(|t| t.child == c.id))
        {
            return Err(SnapshotError::MissingEspState(c.id).into());
        }
        // Installed CHILD SAs last, so the newest of them ends up carrying outbound traffic.
        let mut order: Vec<(ChildSaId, bool)> = ike
            .children
            .iter()
            .map(|c| (c.id, c.phase == ChildPhase::Installed))
            .collect();
        order.sort_by_key(|&(_, installed)| installed);

        let ike_sa = self.ike.import_sa(now, ike).map_err(SnapshotError::Ike)?;
        let (dataplane, mut control) = self.parts(now);
        dataplane.sync(now, &mut control);
        let mut missing = None;
        for (child, installed) in order {
            let Some(t) = esp.iter().find(|t| t.child == child) else {
                continue;
            };
            let restored = dataplane.restore_tunnel_esp_state(
                child,
                &t.outbound,
                &t.inbound,
                outbound_margin,
                installed,
            );
            if !restored {
                missing.get_or_insert(child);
            }
        }
        match missing {
            Some(child) => Err(SnapshotError::TunnelNotInstalled { ike_sa, child }.into()),
            None => Ok(ike_sa),
        }
    }

    /// The connection table as values (times relative to `now`), ordered by id; each entry
    /// applied as `Change::Created` continues the connection in another gateway.
    pub fn export_connections(&self, now: Instant) -> Vec<Connection> {
        self.dataplane.export_connections(now)
    }

    /// Applies one entry of another member's connection table (`Change::Created` of an
    /// exported [`Connection`]) or of its change stream. On error nothing changed.
    pub fn apply_connection(&mut self, now: Instant, change: Change) -> Result<(), ApplyError> {
        self.dataplane.apply_connection(now, change)
    }
}

/// `ike` with the ESP state of each of its CHILD SAs; `None` when one has no tunnel.
fn snapshot_of(gateway: &Gateway, ike: IkeSaState) -> Option<SaSnapshot> {
    let esp = ike
        .children
        .iter()
        .map(|c| {
            let (outbound, inbound) = gateway.dataplane.tunnel_esp_state(c.id)?;
            Some(TunnelEspState {
                child: c.id,
                outbound,
                inbound,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(SaSnapshot { ike, esp })
}
