//! Sans-IO cluster engine: membership and role election over heartbeats, a reliable,
//! authenticated delta-sync channel, and the full-sync stream a joining member reads.
//!
//! The engine moves *records* (`kind`, `key`, opaque body); it does not know what a
//! connection or an SA is. The node encodes its state into records and applies the records
//! it receives (see `rampart-node`'s `cluster` module). Everything here is driven by
//! `handle_*(now, ..)` and drained with `poll_*`, like the other engines.
//!
//! Wire format, election rule and recovery rules: `docs/cluster.md`.

mod config;
mod engine;
mod fullsync;
mod record;
mod status;

pub use config::{
    ClusterConfig, ClusterMode, MemberConfig, MemberId, SyncAuth, TlsFiles, VirtualAddress,
    DEFAULT_DEAD_AFTER, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_RETRANSMIT_QUEUE, DEFAULT_SYNC_PORT,
};
pub use engine::{Cluster, ClusterEvent, DropReason, SwitchoverError, Transmit};
pub use fullsync::{FullSyncDecoder, FullSyncEncoder, FullSyncFrame, StreamError};
pub use record::{DeltaRecord, RecordKind};
pub use status::{
    ClusterStatus, MemberState, MemberStatus, PeerSyncStats, Role, SyncStats, VipStatus,
};
