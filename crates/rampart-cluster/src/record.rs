//! What the sync channels carry: records the node defines the meaning of.

use serde::{Deserialize, Serialize};

use crate::MemberId;

/// What a record's body holds. The engine treats every kind alike except for ordering: records
/// are delivered in the sender's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum RecordKind {
    /// A new or changed connection-table entry (key: connection id).
    ConnUpsert = 1,
    /// A connection removed (key: connection id; body: its originator key).
    ConnDelete = 2,
    /// An IKE SA with its CHILD SAs and ESP state (key: IKE SA id).
    SaUpsert = 3,
    /// An IKE SA removed (key: IKE SA id).
    SaDelete = 4,
    /// ESP counters and replay windows of one CHILD SA (key: CHILD SA id).
    EspCounters = 5,
    /// IKE message ids of one IKE SA after an exchange (key: IKE SA id).
    IkeMessageIds = 6,
    /// A NAT allocation (key: connection id).
    NatAllocation = 7,
}

impl RecordKind {
    pub fn from_u8(v: u8) -> Option<RecordKind> {
        Some(match v {
            1 => RecordKind::ConnUpsert,
            2 => RecordKind::ConnDelete,
            3 => RecordKind::SaUpsert,
            4 => RecordKind::SaDelete,
            5 => RecordKind::EspCounters,
            6 => RecordKind::IkeMessageIds,
            7 => RecordKind::NatAllocation,
            _ => return None,
        })
    }
}

/// One record as delivered to the receiving node, in the sender's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaRecord {
    /// The member whose stream carried it (in a full sync: the member that served it).
    pub from: MemberId,
    /// The sender's sequence number of this record (one sequence space per sending member).
    pub seq: u64,
    pub kind: RecordKind,
    pub key: u64,
    pub body: Vec<u8>,
}
