//! Stateful inspection for the gateway (sans-IO): a connection table, the rule base and NAT.
//!
//! The node calls [`Inspector::handle`] for every packet that crosses a tunnel: on packets
//! read from the TUN device before encryption ([`Side::Inside`]) and on decrypted packets
//! before the TUN write ([`Side::Tunnel`]). A packet of a known connection advances its state
//! and is translated as the connection says; a packet that opens a connection goes through the
//! rule base (first match, implicit logged drop at the end) and NAT; anything else is dropped
//! as out of state, counted and logged (rate-limited) with the reason.
//!
//! Without any `[[rule]]` the inspector is permissive: everything is accepted, connections are
//! still tracked (and translated) while the table has room, and packets that cannot be tracked
//! pass untracked. Entries are plain serde values with cluster-wide ids; with
//! [`Inspector::enable_change_stream`] every create/update/delete is queued for a sync protocol,
//! and [`Inspector::export`] / [`Inspector::apply`] move the table to another inspector.
//! [`Inspector::set_policy`] swaps the [`InspectPolicy`] live (reload).
//! NAT is IPv4 only; non-first fragments are not reassembled (dropped under a rule base).

mod conn;
mod engine;
mod log;
mod nat;
mod packet;
pub mod policy;
pub mod reject;
mod rewrite;
mod rules;
mod stats;
mod table;
pub mod tcp;
mod tuple;

pub use conn::{
    Change, ConnState, Connection, NatKind, NatState, CLOCK_BASE_MS, NO_RULE, NO_SERVICE,
};
pub use engine::{ApplyError, Inspector, PolicySwap, ReloadOutcome};
pub use log::LogRecord;
pub use nat::NAT_RULE_GONE;
pub use policy::InspectPolicy;
pub use rules::IMPLICIT_DROP;
pub use stats::{ConnList, ConnView, InspectStats};
pub use table::{Table, Which};
pub use tuple::{FlowTuple, Side};

/// What to do with an inspected packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it (possibly translated in place).
    Accept,
    Drop(DropCause),
    /// Drop it and answer with a TCP RST or an ICMP error ([`reject::build`]).
    Reject,
}

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropCause {
    /// A rule (index), or [`IMPLICIT_DROP`].
    Rule(u16),
    OutOfState(OutOfState),
    TableFull,
    NatExhausted,
    Malformed,
}

/// Why a packet is out of state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OutOfState {
    #[error("first packet isn't SYN")]
    FirstPacketNotSyn,
    #[error("RST for no known connection")]
    RstWithoutConnection,
    #[error("invalid TCP flag combination")]
    InvalidTcpFlags,
    #[error("unexpected packet during the TCP handshake")]
    UnexpectedInHandshake,
    #[error("SYN on an open connection")]
    SynOnOpenConnection,
    #[error("echo reply without a request")]
    EchoReplyWithoutRequest,
    #[error("ICMP error for no known connection")]
    IcmpErrorWithoutConnection,
    #[error("non-first fragment (fragments are not reassembled)")]
    NonFirstFragment,
    #[error("the translated tuple is in use by another connection")]
    TupleInUse,
    /// Handshake enforcement: a SYN-ACK or the handshake-completing ACK whose sequence or
    /// acknowledgement number does not match the recorded ISNs ([`tcp::check_handshake`]).
    #[error("TCP handshake sequence numbers do not match")]
    HandshakeMismatch,
}

#[cfg(test)]
mod tests;
