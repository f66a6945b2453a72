//! The data plane's state as values, for another member to continue it: each tunnel's ESP
//! counters (sequence number, replay window, volume totals) and the connection table. The
//! keys travel with the IKE state (`rampart_ike::IkeSaState`); the node ties both together.

use std::time::Instant;

use rampart_esp::{InboundState, OutboundState};
use rampart_ike::ChildSaId;
use rampart_inspect::{ApplyError, Change, Connection};

use super::DataPlane;

impl DataPlane {
    /// Both directions' ESP state of tunnel `child`, `None` when it is not installed.
    pub fn tunnel_esp_state(&self, child: ChildSaId) -> Option<(OutboundState, InboundState)> {
        let t = self.tunnels.get(child)?;
        Some((t.outbound.export_state(), t.inbound.export_state()))
    }

    /// Continues tunnel `child` (installed from the same keys) where another member left it:
    /// the outbound counter jumps to `outbound.next_sequence + margin` (never backwards), the
    /// replay window is merged, the volume counters are replaced. With `active`, the tunnel
    /// becomes the one its peer's outbound traffic uses. False when `child` is not installed.
    pub fn restore_tunnel_esp_state(
        &mut self,
        child: ChildSaId,
        outbound: &OutboundState,
        inbound: &InboundState,
        margin: u64,
        active: bool,
    ) -> bool {
        let Some(t) = self.tunnels.get_mut(child) else {
            return false;
        };
        t.outbound.import_state(outbound, margin);
        t.inbound.import_state(inbound);
        // The imported totals may be past a soft limit: ask for the rekey afresh.
        t.rekey_requested = false;
        if active {
            self.tunnels.make_active(child);
        }
        true
    }

    /// The connection table as values (times relative to `now`), ordered by id.
    pub fn export_connections(&self, now: Instant) -> Vec<Connection> {
        self.inspect.export(now)
    }

    /// Applies one entry of another member's connection table or change stream.
    pub fn apply_connection(&mut self, now: Instant, change: Change) -> Result<(), ApplyError> {
        self.inspect.apply(now, change)
    }

    pub(crate) fn inspector(&self) -> &rampart_inspect::Inspector {
        &self.inspect
    }

    pub(crate) fn inspector_mut(&mut self) -> &mut rampart_inspect::Inspector {
        &mut self.inspect
    }

    /// Every installed tunnel's id.
    pub(crate) fn tunnel_ids(&self) -> Vec<ChildSaId> {
        self.tunnels.iter().map(|(id, _)| *id).collect()
    }
}
