//! A connection table entry: a plain value that a cluster member can ship as is.

use serde::{Deserialize, Serialize};

use crate::tcp::{Handshake, TcpState};
use crate::tuple::{FlowTuple, Side};

/// What every inspector clock reads at its origin (about 35 years in milliseconds), so that an
/// imported connection older than the importing inspector still has a representable age.
pub const CLOCK_BASE_MS: u64 = 1 << 40;

/// `Connection::rule` when no rule base is configured (everything accepted).
pub const NO_RULE: u16 = u16::MAX;
/// `Connection::service` when no service matched (rule with service "any").
pub const NO_SERVICE: u16 = u16::MAX;

/// The protocol state of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnState {
    Tcp(TcpState),
    /// UDP, nothing seen from the responder yet.
    UdpUnreplied,
    /// UDP with traffic both ways.
    UdpReplied,
    /// ICMP echo request seen (replies are accepted).
    IcmpEcho,
    /// Another IP protocol, tracked by addresses only.
    Other,
}

impl ConnState {
    pub fn name(self) -> &'static str {
        match self {
            ConnState::Tcp(s) => match s {
                TcpState::SynSent => "syn-sent",
                TcpState::SynReceived => "syn-received",
                TcpState::Established => "established",
                TcpState::FinOrig | TcpState::FinReply => "fin-wait",
                TcpState::LastAck => "last-ack",
                TcpState::TimeWait => "time-wait",
                TcpState::Closed => "closed",
            },
            ConnState::UdpUnreplied => "unreplied",
            ConnState::UdpReplied => "replied",
            ConnState::IcmpEcho => "echo",
            ConnState::Other => "open",
        }
    }
}

/// What NAT did to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NatKind {
    None,
    Hide,
    Static,
    Pool,
}

/// The NAT state of a connection: which `[[nat]]` rule translated it. The translation itself
/// is `Connection::xlat` against `Connection::orig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatState {
    pub kind: NatKind,
    /// Index of the `[[nat]]` rule (meaningless for `NatKind::None`).
    pub rule: u16,
}

/// One tracked connection.
///
/// Invariants: `orig` is the first packet as it arrived on `init_side`, `xlat` the same packet
/// as it left on the other side (equal to `orig` without NAT). The table finds the entry by
/// `(init_side, orig)` for packets of the originator and by `(init_side.other(),
/// xlat.reverse())` for replies.
///
/// Times are milliseconds on a clock: inside an inspector its own clock, which reads
/// [`CLOCK_BASE_MS`] at the inspector's creation; in values that leave an inspector
/// ([`crate::Inspector::export`], the change stream) a clock that reads [`CLOCK_BASE_MS`] at the
/// instant the value left. So an exported entry is exactly what a fresh inspector created at
/// the export instant would hold, and [`crate::Inspector::apply`] shifts it onto the importing
/// inspector's clock: age, idle time and remaining timeout survive the move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// Cluster-wide id: `member_id << 48 | counter`.
    pub id: u64,
    pub orig: FlowTuple,
    pub xlat: FlowTuple,
    pub init_side: Side,
    pub state: ConnState,
    /// Index of the accepting `[[rule]]`, or [`NO_RULE`].
    pub rule: u16,
    /// Index of the matched `[[service]]`, or [`NO_SERVICE`].
    pub service: u16,
    pub nat: NatState,
    pub created_ms: u64,
    pub last_seen_ms: u64,
    pub expires_ms: u64,
    /// Packets from the originator and from the responder.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    /// TCP: the handshake's initial sequence numbers, when handshake enforcement recorded them
    /// (empty otherwise, and for other protocols).
    #[serde(default)]
    pub handshake: Handshake,
}

/// One element of the change stream a sync protocol ships; [`crate::Inspector::apply`] imports
/// it. `Updated` and `Deleted` name the connection by id and by its originator key
/// `(init_side, orig)`, so the importer finds it without an index by id. Times are relative to
/// the instant of the change (see [`Connection`]). Packet counters and the idle refresh of
/// the expiry by ordinary packets are not streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    Created(Connection),
    /// The state or the timeout class changed.
    Updated {
        id: u64,
        init_side: Side,
        orig: FlowTuple,
        state: ConnState,
        expires_ms: u64,
        /// The ISNs known after the change (empty without handshake enforcement); the importer
        /// adds what it did not know ([`Handshake::merge`]).
        handshake: Handshake,
    },
    Deleted {
        id: u64,
        init_side: Side,
        orig: FlowTuple,
    },
}
