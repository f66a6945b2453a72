//! Sans-IO Multiple Entry Points (MEP) engine.
//!
//! Several gateways ("entry points") protect one VPN domain. A satellite gateway probes every
//! entry point all the time (authenticated UDP probes, or IKEv2 liveness for third-party
//! gateways), knows which are up, and for each new connection towards the domain picks one per
//! the group's method and rules. A connection keeps its entry point while that entry point is
//! up ("sticky"); when it stops responding, new packets of every connection go to the next
//! choice at once.
//!
//! Like the other engines everything is driven by `handle_*(now, ..)` and drained with
//! `poll_*`; nothing here opens a socket or reads a clock. The node maps its peers to
//! [`EntryPointId`]s and asks [`Mep::resolve`] which one carries a packet.
//!
//! The probe wire format, key derivation and methods are documented in `docs/mep.md`.

mod config;
mod engine;
#[doc(hidden)]
pub mod fuzzing;
mod key;
mod probe;
mod prober;
mod responder;
mod select;
mod status;
mod sticky;

pub use config::{
    EntryPointConfig, EntryPointId, GroupConfig, GroupId, GroupKind, MepConfig, Method,
    PriorityLevels, ProbeMode, ProbeSettings, ResponderConfig, SatelliteKey, StickySettings,
    TieBreak, DEFAULT_PROBE_INTERVAL, DEFAULT_PROBE_MISSES, DEFAULT_PROBE_PORT,
    DEFAULT_PROBE_TIMEOUT,
};
pub use engine::{FlowKey, Level, Mep, MepEvent, Resolution, Transmit};
pub use key::ProbeKey;
pub use probe::{peek_kind, ProbeError, ProbeKind, MAX_PROBE_LEN, PROBE_LEN};
pub use responder::Responder;
pub use status::{
    EntryPointStatus, GroupStatus, MepStatus, ProbeState, RejectCounters, ResponderStatus,
};
