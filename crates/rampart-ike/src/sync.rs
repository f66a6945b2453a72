//! What a cluster member needs from the engine beyond export and import: which IKE SAs changed
//! since they were last looked at (so the active member re-exports only those), a passive mode
//! for a standby member (it holds no SAs, initiates nothing, answers nothing), and removal of an
//! SA without telling the peer (a demoted member hands its SAs over as values).

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

use crate::config::IkeSaId;
use crate::engine::Ike;
use crate::sa::{IkeSa, IkeSaStateKind};

/// The change tracking of [`Ike::poll_changed_sa`]: a fingerprint of what another member's copy
/// depends on, per SA, and the SAs whose fingerprint moved.
#[derive(Default)]
pub(crate) struct ChangeTracker {
    pub(crate) enabled: bool,
    fingerprints: HashMap<IkeSaId, u64>,
    changed: BTreeSet<IkeSaId>,
}

/// Everything an exported copy of the SA would show differently: state, message ids, the
/// request in flight, the cached response, the endpoints, the CHILD SAs and queued tasks.
fn fingerprint(sa: &IkeSa) -> u64 {
    let mut h = DefaultHasher::new();
    sa.state.hash(&mut h);
    sa.next_msg_id.hash(&mut h);
    sa.peer_msg_id.hash(&mut h);
    sa.pending.as_ref().map(|p| p.msg_id).hash(&mut h);
    sa.last_response.as_ref().map(|r| r.0).hash(&mut h);
    sa.local.hash(&mut h);
    sa.remote.hash(&mut h);
    sa.nat_local.hash(&mut h);
    sa.nat_remote.hash(&mut h);
    sa.tasks.len().hash(&mut h);
    sa.rekey_at.hash(&mut h);
    for c in &sa.children {
        c.id.0.hash(&mut h);
        (c.state as u8).hash(&mut h);
        c.rekey_at.hash(&mut h);
    }
    h.finish()
}

impl ChangeTracker {
    /// `id` was touched; `sa` is its current value (`None`: removed).
    pub(crate) fn observe(&mut self, id: IkeSaId, sa: Option<&IkeSa>) {
        match sa {
            Some(sa) => {
                let f = fingerprint(sa);
                if self.fingerprints.insert(id, f) != Some(f) {
                    self.changed.insert(id);
                }
            }
            None => {
                if self.fingerprints.remove(&id).is_some() {
                    self.changed.insert(id);
                }
            }
        }
    }
}

impl Ike {
    /// Starts recording which IKE SAs change (for [`Ike::poll_changed_sa`]); every SA present
    /// now counts as changed.
    pub fn track_changes(&mut self) {
        self.tracker.enabled = true;
        self.sas.touch_all();
        self.refresh_timers();
    }

    /// An IKE SA that changed since it was last returned, with its state now (`None`: it is
    /// gone). Only while [`Ike::track_changes`] is on. An SA that changes several times between
    /// two polls is returned once.
    pub fn poll_changed_sa(&mut self) -> Option<(IkeSaId, Option<IkeSaStateKind>)> {
        let id = self.tracker.changed.pop_first()?;
        Some((id, self.sas.get(&id).map(|sa| sa.state)))
    }

    /// Passive (a standby cluster member): datagrams are ignored, nothing is initiated, failed
    /// negotiations are not retried. The engine should hold no SAs while passive.
    pub fn set_passive(&mut self, passive: bool) {
        self.passive = passive;
        if passive {
            self.retries = crate::retry::Retries::default();
        }
    }

    pub fn is_passive(&self) -> bool {
        self.passive
    }

    /// Removes IKE SA `id` without telling the peer (another member continues it): its CHILD
    /// SAs are reported down (`ChildSaDown`) so the data plane removes them, no `IkeSaDown`, no
    /// Delete. Returns whether it existed.
    pub fn forget_sa(&mut self, id: IkeSaId) -> bool {
        let existed = self.sas.contains_key(&id);
        self.remove_sa(id, None);
        self.refresh_timers();
        existed
    }

    /// Every IKE SA id, in any state.
    pub fn sa_ids(&self) -> Vec<IkeSaId> {
        self.sas.keys().copied().collect()
    }
}
