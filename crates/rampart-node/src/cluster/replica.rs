//! What a standby member keeps of the active member's SAs: each IKE SA as a value
//! ([`SaSnapshot`]) with the instant it arrived, updated by the tunnels' counters.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rampart_esp::{InboundState, OutboundState};
use rampart_ike::{ChildSaId, IkeSaId};

use crate::SaSnapshot;

/// Invariant: `child_to_sa` names exactly the CHILD SAs of the stored snapshots.
#[derive(Default)]
pub(crate) struct Replicas {
    sas: BTreeMap<IkeSaId, (SaSnapshot, Instant)>,
    child_to_sa: HashMap<ChildSaId, IkeSaId>,
}

impl Replicas {
    pub fn len(&self) -> usize {
        self.sas.len()
    }

    pub fn upsert(&mut self, now: Instant, snapshot: SaSnapshot) {
        let id = snapshot.ike.id;
        self.remove(id);
        for c in &snapshot.ike.children {
            self.child_to_sa.insert(c.id, id);
        }
        self.sas.insert(id, (snapshot, now));
    }

    pub fn remove(&mut self, id: IkeSaId) {
        if let Some((old, _)) = self.sas.remove(&id) {
            for c in &old.ike.children {
                self.child_to_sa.remove(&c.id);
            }
        }
    }

    /// A tunnel's counters; ignored for a CHILD SA no stored SA has. Counters never go back.
    pub fn esp(&mut self, child: ChildSaId, outbound: OutboundState, inbound: InboundState) {
        let Some(id) = self.child_to_sa.get(&child) else {
            return;
        };
        let Some((snap, _)) = self.sas.get_mut(id) else {
            return;
        };
        if let Some(t) = snap.esp.iter_mut().find(|t| t.child == child) {
            if outbound.next_sequence >= t.outbound.next_sequence {
                t.outbound = outbound;
            }
            if inbound.highest >= t.inbound.highest {
                t.inbound = inbound;
            }
        }
    }

    pub fn clear(&mut self) {
        self.sas.clear();
        self.child_to_sa.clear();
    }

    /// Every stored SA aged to `now` (its relative times moved by the time since it arrived).
    pub fn take_all(&mut self, now: Instant) -> Vec<SaSnapshot> {
        self.child_to_sa.clear();
        std::mem::take(&mut self.sas)
            .into_values()
            .map(|(mut snap, at)| {
                age(&mut snap, now.saturating_duration_since(at));
                snap
            })
            .collect()
    }
}

/// `snap` as it would have been exported `by` later: durations until something shrink,
/// durations since something grow.
fn age(snap: &mut SaSnapshot, by: Duration) {
    let st = &mut snap.ike;
    let less = |d: &mut Option<Duration>| {
        if let Some(d) = d.as_mut() {
            *d = d.saturating_sub(by);
        }
    };
    less(&mut st.rekey_in);
    less(&mut st.expire_in);
    less(&mut st.retry_in);
    st.established_for = st.established_for.saturating_add(by);
    st.since_rx = st.since_rx.saturating_add(by);
    st.since_tx = st.since_tx.saturating_add(by);
    if let Some(o) = st.outstanding.as_mut() {
        o.retransmit_in = o.retransmit_in.saturating_sub(by);
    }
    for c in &mut st.children {
        c.installed_for = c.installed_for.saturating_add(by);
        less(&mut c.rekey_in);
        less(&mut c.expire_in);
    }
}
