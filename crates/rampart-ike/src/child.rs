//! CHILD SA state kept by the engine, keys included (they also go to the node in `ChildSaUp`).

use std::time::Instant;

use crate::keys::Secret;

use rampart_wire::ike::TrafficSelector;

use crate::config::ChildSaId;
use crate::proposal::EspAlgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChildState {
    Installed,
    /// Our CREATE_CHILD_SA rekeying it is in flight.
    Rekeying,
    /// A successor exists; waiting for the Delete (ours or the peer's).
    Rekeyed,
    /// Our Delete is in flight.
    Deleting,
}

/// The peer rekeyed this SA while our own rekey of it was in flight (RFC 7296 2.8.1).
#[derive(Debug, Clone)]
pub(crate) struct Collision {
    /// The SA we created as responder of the peer's exchange.
    pub new: ChildSaId,
    /// Lowest nonce of the peer's exchange.
    pub nonce: Vec<u8>,
}

/// Both directions' ESP keys of a CHILD SA (AEAD: key || 4-byte salt), zeroized on drop.
#[derive(Clone)]
pub(crate) struct ChildKeyMat {
    pub key_in: Secret,
    pub integ_key_in: Secret,
    pub key_out: Secret,
    pub integ_key_out: Secret,
}

impl std::fmt::Debug for ChildKeyMat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChildKeyMat(..)")
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ChildSa {
    pub id: ChildSaId,
    pub spi_in: u32,
    pub spi_out: u32,
    pub algs: EspAlgs,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    pub keys: ChildKeyMat,
    pub created: Instant,
    pub rekey_at: Option<Instant>,
    /// Hard expiry: 110% of the lifetime; `None` once its deletion is queued.
    pub expire_at: Option<Instant>,
    pub state: ChildState,
    pub collision: Option<Collision>,
    /// Our completed rekey of this SA: successor and the lowest nonce of that exchange.
    pub own_rekey: Option<(ChildSaId, Vec<u8>)>,
}
