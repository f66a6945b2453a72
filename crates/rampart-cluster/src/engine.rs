//! The cluster engine: heartbeats, membership and role election, the delta-sync sender and
//! receivers. API skeleton; see /work/plan/PLAN.md for the behaviour each call must have.

use std::net::SocketAddr;
use std::time::Instant;

use rampart_crypto::Rng;

use crate::{ClusterConfig, ClusterStatus, DeltaRecord, MemberId, RecordKind, Role, SyncStats};

/// A datagram to send from the member's sync address (UDP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub remote: SocketAddr,
    pub data: Vec<u8>,
}

/// What the node must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterEvent {
    /// This member takes the active role: import the replicated SAs, claim the virtual
    /// addresses, start sending.
    BecameActive {
        reason: String,
    },
    /// This member gives up the active role (another member ranks higher, an interface went
    /// down, admin down, switchover): release the virtual addresses, stop initiating.
    BecameStandby {
        reason: String,
    },
    /// Pull a full sync from `member` at `address` (TCP, TLS). The node calls
    /// [`Cluster::full_sync_started`] when the stream is open and
    /// [`Cluster::full_sync_complete`] / [`Cluster::full_sync_failed`] when it ends.
    FullSyncNeeded {
        member: MemberId,
        address: SocketAddr,
    },
    /// A member came up or went down (for logs).
    MemberUp {
        member: MemberId,
    },
    MemberDown {
        member: MemberId,
    },
    /// One line for the log (level: warn), e.g. why a datagram was refused the first time.
    Log {
        message: String,
    },
}

/// Why a datagram was refused (each also counted in [`SyncStats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    #[error("truncated or malformed")]
    Malformed,
    #[error("authentication failed (wrong cluster secret or name?)")]
    Auth,
    #[error("replayed")]
    Replay,
    #[error("sender is not a configured member")]
    UnknownMember,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwitchoverError {
    #[error("this member is not active")]
    NotActive,
    #[error("no other member is in sync and eligible to take over")]
    NoEligibleMember,
    #[error("member {0} is not eligible (not in sync, down or unknown)")]
    NotEligible(MemberId),
}

/// See the module documentation.
pub struct Cluster {
    _private: (),
}

impl Cluster {
    /// `boot_id` must grow across restarts of this member (e.g. Unix time in ms at start): it
    /// keys this boot's datagrams, so counters restart at zero without ever reusing a nonce,
    /// and receivers refuse datagrams of an older boot.
    pub fn new(_config: ClusterConfig, _now: Instant, _boot_id: u64, _rng: Rng) -> Cluster {
        todo!()
    }

    pub fn config(&self) -> &ClusterConfig {
        todo!()
    }

    /// A datagram received on the sync socket; decrypted in place in `buf`.
    pub fn handle_datagram(
        &mut self,
        _now: Instant,
        _from: SocketAddr,
        _buf: &mut [u8],
    ) -> Result<(), DropReason> {
        todo!()
    }

    pub fn handle_timeout(&mut self, _now: Instant) {
        todo!()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }

    /// Link state of a monitored interface (ignored for others).
    pub fn set_interface_state(&mut self, _now: Instant, _interface: &str, _up: bool) {
        todo!()
    }

    /// Administrative down (`rampart cluster down`) or back up.
    pub fn set_admin_down(&mut self, _now: Instant, _down: bool) {
        todo!()
    }

    /// Graceful switchover: hand the active role to `to` (or the best eligible member) after
    /// every queued record has been acknowledged by it.
    pub fn switchover(
        &mut self,
        _now: Instant,
        _to: Option<MemberId>,
    ) -> Result<(), SwitchoverError> {
        todo!()
    }

    pub fn role(&self) -> Role {
        todo!()
    }

    /// Queues a record for every other live member. Sent with the next datagram (at once when
    /// a datagram fills up, at the latest at the next heartbeat).
    pub fn push_record(&mut self, _now: Instant, _kind: RecordKind, _key: u64, _body: &[u8]) {
        todo!()
    }

    /// Packs everything queued into datagrams now.
    pub fn flush(&mut self, _now: Instant) {
        todo!()
    }

    /// The sequence number the next pushed record will get (a full sync names it so the
    /// receiver knows which delta records the snapshot already contains).
    pub fn next_seq(&self) -> u64 {
        todo!()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        todo!()
    }

    pub fn poll_event(&mut self) -> Option<ClusterEvent> {
        todo!()
    }

    /// Records from the active member, in its order, to apply.
    pub fn poll_record(&mut self) -> Option<DeltaRecord> {
        todo!()
    }

    /// The full-sync stream from `member` is open; delta records from it are held back until
    /// [`Cluster::full_sync_complete`].
    pub fn full_sync_started(&mut self, _now: Instant, _member: MemberId) {
        todo!()
    }

    /// The snapshot, taken when the sender's next sequence number was `snapshot_seq`, is
    /// applied: held records from `snapshot_seq` on are released to [`Cluster::poll_record`]
    /// and the member becomes standby once the delta stream has caught up.
    pub fn full_sync_complete(&mut self, _now: Instant, _member: MemberId, _snapshot_seq: u64) {
        todo!()
    }

    /// The full-sync stream broke; retried after a back-off.
    pub fn full_sync_failed(&mut self, _now: Instant, _member: MemberId, _why: &str) {
        todo!()
    }

    /// A full sync was served to another member (counted).
    pub fn full_sync_served(&mut self) {
        todo!()
    }

    pub fn status(&self, _now: Instant) -> ClusterStatus {
        todo!()
    }

    pub fn stats(&self) -> SyncStats {
        todo!()
    }
}
