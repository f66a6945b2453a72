//! The engine's peers: a generational slab handing out stable [`PeerId`]s.

use crate::policy::PeerPolicy;

/// A peer of one engine. Opaque and stable: it stays valid while other peers are added and
/// removed, dies when its own peer is removed, and is never handed out again for another peer
/// (a reused slot carries a higher generation). Ids are member-local: SA state carried to
/// another cluster member names the peer, not its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId {
    slot: u32,
    generation: u32,
}

impl PeerId {
    /// An id from its parts, for tables and tests outside the engine that need ids without an
    /// engine. Safe by construction: an id this engine never handed out resolves to no peer.
    pub fn from_parts(slot: u32, generation: u32) -> PeerId {
        PeerId { slot, generation }
    }
}

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.slot, self.generation)
    }
}

struct Entry {
    generation: u32,
    policy: Option<PeerPolicy>,
}

/// Invariants: a live entry's id is `(index, entry.generation)`; `free` holds exactly the empty
/// slots whose generation can still grow (a slot at `u32::MAX` is retired, never reused).
#[derive(Default)]
pub(crate) struct PeerSlab {
    entries: Vec<Entry>,
    free: Vec<u32>,
}

impl PeerSlab {
    pub(crate) fn insert(&mut self, policy: PeerPolicy) -> PeerId {
        if let Some(slot) = self.free.pop() {
            let e = &mut self.entries[slot as usize];
            e.policy = Some(policy);
            return PeerId {
                slot,
                generation: e.generation,
            };
        }
        let slot = u32::try_from(self.entries.len()).expect("fewer than 2^32 peer slots");
        self.entries.push(Entry {
            generation: 0,
            policy: Some(policy),
        });
        PeerId {
            slot,
            generation: 0,
        }
    }

    pub(crate) fn remove(&mut self, id: PeerId) -> Option<PeerPolicy> {
        let e = self.entries.get_mut(id.slot as usize)?;
        if e.generation != id.generation {
            return None;
        }
        let policy = e.policy.take()?;
        if let Some(g) = e.generation.checked_add(1) {
            e.generation = g;
            self.free.push(id.slot);
        }
        Some(policy)
    }

    pub(crate) fn get(&self, id: PeerId) -> Option<&PeerPolicy> {
        let e = self.entries.get(id.slot as usize)?;
        (e.generation == id.generation)
            .then_some(e.policy.as_ref())
            .flatten()
    }

    pub(crate) fn get_mut(&mut self, id: PeerId) -> Option<&mut PeerPolicy> {
        let e = self.entries.get_mut(id.slot as usize)?;
        (e.generation == id.generation)
            .then_some(e.policy.as_mut())
            .flatten()
    }

    /// Live peers in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (PeerId, &PeerPolicy)> {
        self.entries.iter().enumerate().filter_map(|(i, e)| {
            e.policy.as_ref().map(|p| {
                (
                    PeerId {
                        slot: i as u32,
                        generation: e.generation,
                    },
                    p,
                )
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::*;
    use std::time::Duration;

    fn policy(name: &str) -> PeerPolicy {
        PeerPolicy {
            name: name.into(),
            local_address: "192.0.2.1".parse().unwrap(),
            remote_address: RemoteAddress::Any,
            local_id: Identity::Fqdn("a".into()),
            remote_id: Identity::Fqdn(name.into()),
            psk: zeroize::Zeroizing::new(b"0123456789abcdef".to_vec()),
            remote_domain: vec![],
            ike_proposals: vec![],
            esp_proposals: vec![],
            esn: false,
            start_action: StartAction::None,
            ike_lifetime: Duration::from_secs(3600),
            child_lifetime: Duration::from_secs(600),
            child_lifetime_bytes: None,
            liveness_interval: Duration::ZERO,
            encapsulation: Encapsulation::Auto,
            replay_window: 1024,
            auth: PeerAuth::Psk,
            remote_access: crate::RemoteAccess::None,
            mobike: false,
        }
    }

    #[test]
    fn ids_survive_adding_and_removing_others() {
        let mut s = PeerSlab::default();
        let a = s.insert(policy("a"));
        let b = s.insert(policy("b"));
        let c = s.insert(policy("c"));
        assert_eq!(s.remove(b).unwrap().name, "b");
        let d = s.insert(policy("d"));
        assert_eq!(s.get(a).unwrap().name, "a");
        assert_eq!(s.get(c).unwrap().name, "c");
        assert_eq!(s.get(d).unwrap().name, "d");
        let names: Vec<_> = s.iter().map(|(_, p)| p.name.as_str()).collect();
        assert_eq!(names, ["a", "d", "c"]);
    }

    #[test]
    fn a_removed_id_is_dead_and_never_reused() {
        let mut s = PeerSlab::default();
        let a = s.insert(policy("a"));
        assert!(s.remove(a).is_some());
        assert!(s.get(a).is_none());
        assert!(s.remove(a).is_none());
        let b = s.insert(policy("b"));
        // Same slot, next generation: the old id does not resolve to the new peer.
        assert_eq!(b.slot, a.slot);
        assert_eq!(b.generation, a.generation + 1);
        assert_ne!(a, b);
        assert!(s.get(a).is_none());
        assert_eq!(s.get(b).unwrap().name, "b");
        assert_eq!(b.to_string(), "0.1");
    }

    #[test]
    fn a_slot_at_the_last_generation_is_retired() {
        let mut s = PeerSlab::default();
        let a = s.insert(policy("a"));
        s.entries[0].generation = u32::MAX;
        let a = PeerId {
            generation: u32::MAX,
            ..a
        };
        assert!(s.remove(a).is_some());
        let b = s.insert(policy("b"));
        assert_eq!(b.slot, 1);
        assert!(s.get(a).is_none());
        assert_eq!(s.iter().count(), 1);
    }
}
