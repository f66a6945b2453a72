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
mod crypto;
mod engine;
mod flush_ack;
mod fullsync;
mod ownership;
mod record;
mod recv;
mod replay;
mod send;
mod siphash;
mod status;
mod sync_links;
mod update_request;
mod wire;

pub use config::{
    ClusterConfig, ClusterMode, Distribution, LoadSharingConfig, MemberConfig, MemberId, SyncAuth,
    TlsFiles, VirtualAddress, DEFAULT_ANNOUNCE_TABLE, DEFAULT_DEAD_AFTER,
    DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_RETRANSMIT_QUEUE, DEFAULT_SYNC_LINK_HOLD_DOWN,
    DEFAULT_SYNC_PORT,
};
pub use crypto::{full_sync_proof, verify_full_sync_proof};
pub use engine::{
    Cluster, ClusterEvent, DropReason, Forwarded, HoldOutcome, Released, SwitchoverError, Transmit,
    UpdateOutcome, UpdateQueryIn, FLUSH_DELAY, MAX_FORWARD_PACKET,
};
pub use flush_ack::{
    FaInput, FaOutput, FlushAck, FlushAckConfig, FlushAckError, FlushAckStats, HoldHistogram,
    MemberSet, PacketHandle, ReleaseReason, ServiceSync, TimeoutPolicy, DEFAULT_HOLD_TIMEOUT,
    DEFAULT_MAX_HOLDS, HOLD_BUCKETS_US,
};
pub use fullsync::{FullSyncDecoder, FullSyncEncoder, FullSyncFrame, StreamError, MAX_FRAME};
pub use ownership::{FlowKey, MemberShare, OwnershipKey, OwnershipMap, Rendezvous, MAX_LS_MEMBERS};
pub use record::{DeltaRecord, RecordKind};
pub use status::{
    ClusterStatus, LoadSharingStatus, MemberState, MemberStatus, PeerSyncStats, Role, SyncStats,
    VipStatus,
};
pub use sync_links::{
    LinkId, LinkInput, LinkOutput, LinkStats, SwitchReason, SyncLinks, SyncLinksConfig,
    SyncLinksError, DEFAULT_HOLD_DOWN, MAX_SYNC_LINKS,
};
pub use update_request::{
    Resolution, UpdateRequestConfig, UpdateRequestStats, UpdateRequests, UrInput, UrOutput,
    DEFAULT_MAX_PENDING, DEFAULT_UPDATE_TIMEOUT,
};
pub use wire::{
    read_update_answer, read_update_request, write_update_answer, write_update_request,
    AnswerOutcome, DecodeError, ForwardKind, UpdateAnswerEntry, UpdateQuery, MAX_RECORD_BODY,
    MAX_UPDATE_ENTRIES, MSG_FLUSH, MSG_FORWARD, MSG_UPDATE_ANSWER, MSG_UPDATE_REQUEST,
};

/// Largest datagram the engine sends (a record bigger than fits 1,452 bytes travels alone):
/// size the sync socket's receive buffer for it.
pub const MAX_DATAGRAM_LEN: usize = 65_535;

/// For fuzz targets only: builds authentic datagrams from arbitrary plaintext so the code
/// behind authentication is reached. Not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    use crate::crypto::DatagramKey;
    use crate::wire::{Header, MsgType, HEADER_LEN};

    /// A datagram of message type `ty` (1..=9, others become 1) from `sender`, sealed with
    /// the key of (`secret`, `name`, `sender`, `boot_id`).
    pub fn seal_datagram(
        secret: &[u8],
        name: &str,
        sender: u8,
        boot_id: u64,
        counter: u64,
        ty: u8,
        plaintext: &[u8],
    ) -> Vec<u8> {
        let ty = MsgType::from_u8(ty).unwrap_or(MsgType::Heartbeat);
        let mut buf = Vec::new();
        Header {
            ty,
            sender,
            boot_id,
            counter,
        }
        .write(&mut buf);
        buf.extend_from_slice(plaintext);
        DatagramKey::derive(secret, name, sender, boot_id).seal(counter, &mut buf, HEADER_LEN);
        buf
    }

    /// Decodes `data` as a Load Sharing update request, update answer and forward message;
    /// whatever decodes must re-encode to exactly `data` (panics otherwise).
    pub fn update_codec(data: &[u8]) {
        crate::wire::check_update_codec(data)
    }
}
