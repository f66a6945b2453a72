//! Sans-IO IKEv2 engine (RFC 7296): PSK and certificate authentication, EAP-MSCHAPv2 inside
//! IKE_AUTH (RFC 7296 2.16), and remote access (configuration payload, Office Mode address
//! pools per gateway template, see the `ra` module and [`Ike::ra_leases`]).
//!
//! [`Ike`] holds every IKE SA of a gateway. The caller feeds it datagrams ([`Ike::handle_datagram`])
//! and time ([`Ike::handle_timeout`] at [`Ike::poll_timeout`]) and drains [`IkeEvent`]s: messages to
//! send, CHILD SA keys to install or remove, NAT keepalives, peer liveness. Nothing here reads a
//! clock, a socket or the OS RNG.
//!
//! Invariants: at most one request of ours is outstanding per IKE SA and we answer the peer's
//! requests strictly in message-id order (window size 1); a retransmitted request gets the cached
//! response byte for byte; every message after IKE_SA_INIT is integrity-checked before any state
//! changes.

mod child;
mod config;
mod cookie;
mod engine;
mod error;
mod event;
mod exchange;
mod fragment;
mod keys;
mod liveness;
mod mobike;
mod msg;
pub mod nat_follow;
mod peers;
pub mod policy;
mod proposal;
mod ra;
mod reattach;
mod retransmit;
mod retry;
mod sa;
mod sk;
mod spi;
mod state;
mod status;
mod sync;
mod table;
mod timers;
mod ts;

pub use config::{ChildSaId, IkeConfig, IkeSaId};
pub use cookie::DosStats;
pub use engine::{Ike, PeerUpdateError};
pub use event::{ChildSaKeys, ChildSaStatus, DownReason, IkeEvent, IkeSaStatus, NatSide};
pub use liveness::LivenessProbe;
pub use mobike::{MobikeError, MobikeStats};
pub use nat_follow::{NatFollowStats, NatHint, NAT_CHECK_INTERVAL};
pub use peers::PeerId;
pub use policy::{
    CertVerify, ClientAuth, Encapsulation, EspProposal, Identity, IkeProposal, PeerAuth,
    PeerPolicy, RaClient, RaGateway, RemoteAccess, RemoteAddress, StartAction, ANY_IDENTITY,
};
pub use proposal::{EspAlgs, IkeAlgs};
pub use ra::RaLease;
pub use reattach::StreamRenewal;
pub use sa::IkeSaStateKind;
pub use spi::{SpiGenerator, MAX_MEMBER_ID};
pub use state::{
    CachedResponse, ChildPhase, ChildSaState, IkeSaState, ImportError, OutstandingKind,
    OutstandingRequest, QueuedTask, RaLeaseState,
};
