//! The gateway's cluster surface (the `Node` calls a cluster member needs).

use std::time::Instant;

use super::Gateway;
use crate::cluster::NO_CLUSTER;
use crate::{ClusterCommand, ClusterStatus, FullSyncProgress, SyncStats};

impl Gateway {
    /// Link state of an interface; only monitored interfaces of a cluster matter.
    pub fn handle_link_state(&mut self, _now: Instant, _interface: &str, _up: bool) {}

    /// `rampart cluster switchover|down|up`.
    pub fn cluster_command(
        &mut self,
        _now: Instant,
        _command: ClusterCommand,
    ) -> Result<String, String> {
        Err(NO_CLUSTER.to_string())
    }

    /// This member's state as full-sync frames (empty without a cluster).
    pub fn full_sync_export(&mut self, _now: Instant) -> Vec<u8> {
        Vec::new()
    }

    /// Bytes of the full-sync stream from `member`.
    pub fn full_sync_input(
        &mut self,
        _now: Instant,
        _member: u8,
        _bytes: &[u8],
    ) -> Result<FullSyncProgress, String> {
        Err(NO_CLUSTER.to_string())
    }

    /// The full-sync stream from `member` broke.
    pub fn full_sync_failed(&mut self, _now: Instant, _member: u8, _why: &str) {}

    /// `rampart cluster status` / `sync-stats`.
    pub fn cluster_status(&self, _now: Instant) -> Option<(ClusterStatus, SyncStats)> {
        None
    }
}
