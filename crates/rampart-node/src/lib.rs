//! The Rampart gateway node: a sans-IO state machine that ties the IKEv2 engine, the ESP engine
//! and the security policy together. The I/O shell (`rampart-io`) feeds it datagrams, TUN
//! packets and time, and carries out what it returns. See `docs/design/contracts.md`.
//!
//! Parts: [`DataPlane`] (policy, inspection, ESP, batches; shared by every kind of node),
//! [`Gateway`] (IKE plus a data plane behind one output stream), and the [`Node`] trait the
//! shell drives them through.

mod cluster;
pub mod dataplane;
mod gateway;
mod node;
mod output;
pub mod pmtu;
mod status;

pub use cluster::{ClusterCommand, ForwardCounts, FullSyncProgress, LoadSharingStats};
pub use dataplane::{
    ControlPlane, ControlRequest, DataPlane, DataPlaneChange, DataPlaneConfig, DataPlaneCounters,
    FirstEstablished, PeerSelector, Policy, TunnelSettings, TunnelState,
};
pub use gateway::{
    Gateway, ReloadError, ReloadReport, RouteInjection, SaSnapshot, SnapshotError, TunnelEspState,
    DEFAULT_TAKEOVER_MARGIN,
};
pub use node::{ClientTraffic, Node};
pub use output::{LogEvent, LogLevel, LogRecord, MtuReason, Output, RoamOutcome};
pub use rampart_cluster::{ClusterStatus, SyncStats};
pub use rampart_ike::StreamRenewal;
pub use rampart_inspect::{ConnList, ConnView, InspectStats};
pub use rampart_mep::MepStatus;
pub use status::{
    BatchCounters, GatewayStatus, IcmpCounters, IkeDefenceCounters, IkeSaInfo, PeerStatus,
    RaClientStatus, RaPoolStatus, RaShareStatus, RaStatus, RaVirtualAddress, ReloadCounters,
    TunnelStatus,
};

/// Errors of the gateway's fallible operations.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// An SA snapshot was not imported ([`Gateway::import_sa`]).
    #[error("SA import: {0}")]
    Snapshot(#[from] SnapshotError),
}

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

/// What the I/O shell does with a data-plane input, in the caller's own buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Send `buf[data]` from `local` to `remote` over UDP.
    SendUdp {
        local: SocketAddr,
        remote: SocketAddr,
        data: Range<usize>,
    },
    /// Send `buf[data]` (an ESP packet) as IP protocol 50 from `local` to `remote`.
    SendRawEsp {
        local: IpAddr,
        remote: IpAddr,
        data: Range<usize>,
    },
    /// Write `buf[data]` (a decrypted inner IP packet) to the TUN device.
    WriteTun { data: Range<usize> },
    /// The input was control traffic; look at `poll_output`.
    Consumed,
    /// The packet was dropped; the reason is counted.
    Dropped(DropReason),
}

/// Why a data-plane packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    Malformed,
    NoPolicy,
    NoSa,
    UnknownSpi,
    Authentication,
    Replay,
    PolicyMismatch,
    /// The SA reached its hard lifetime or sequence space (inbound or outbound).
    Lifetime,
    /// Stateful inspection dropped or rejected it (rule, out of state, table full, NAT).
    Firewall,
}
