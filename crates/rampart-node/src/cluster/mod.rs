//! The gateway as a cluster member: the records it syncs (codec), the replicas a standby keeps,
//! takeover and demotion. The cluster engine (`rampart-cluster`) moves the records; this module
//! says what they mean.

/// An administrator's request to the cluster (`rampart cluster switchover|down|up`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterCommand {
    /// Hand the active role to member `to` (or the best eligible one) without losing anything.
    Switchover { to: Option<u8> },
    /// Administrative down: give up the active role, stay out of elections.
    Down,
    /// Back from administrative down.
    Up,
}

/// How far a full-sync stream fed to `Node::full_sync_input` has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullSyncProgress {
    /// Keep reading the stream.
    More,
    /// The snapshot is complete and applied; close the stream.
    Done,
}

pub(crate) const NO_CLUSTER: &str = "no cluster configured";
