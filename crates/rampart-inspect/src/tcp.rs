//! The TCP state machine of a tracked connection: flags, and optionally the sequence numbers of
//! the three-way handshake ([`Handshake`], [`check_handshake`]). Sequence numbers after the
//! handshake are not tracked.

use serde::{Deserialize, Serialize};

use crate::OutOfState;

pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

/// Direction of a packet relative to the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Dir {
    /// From the host that opened the connection.
    Orig,
    /// From the host that answered.
    Reply,
}

/// TCP connection states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TcpState {
    /// SYN seen from the originator.
    SynSent,
    /// SYN-ACK (or a simultaneous SYN) seen from the responder.
    SynReceived,
    Established,
    /// FIN seen from the originator only.
    FinOrig,
    /// FIN seen from the responder only.
    FinReply,
    /// FIN seen from both sides, waiting for the last ACK.
    LastAck,
    /// Closed normally; kept briefly for retransmissions.
    TimeWait,
    /// Reset.
    Closed,
}

/// Timeout class of a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpPhase {
    Handshake,
    Established,
    Closing,
    Closed,
}

impl TcpState {
    pub fn phase(self) -> TcpPhase {
        match self {
            TcpState::SynSent | TcpState::SynReceived => TcpPhase::Handshake,
            TcpState::Established => TcpPhase::Established,
            TcpState::FinOrig | TcpState::FinReply | TcpState::LastAck => TcpPhase::Closing,
            TcpState::TimeWait | TcpState::Closed => TcpPhase::Closed,
        }
    }

    /// Whether a new SYN from the originator may replace this connection (port reuse).
    pub fn reusable(self) -> bool {
        matches!(self, TcpState::TimeWait | TcpState::Closed)
    }
}

fn check_flags(f: u8) -> Result<(), OutOfState> {
    let syn = f & flags::SYN != 0;
    if (syn && f & (flags::FIN | flags::RST) != 0)
        || f & (flags::SYN | flags::ACK | flags::RST | flags::FIN) == 0
    {
        return Err(OutOfState::InvalidTcpFlags);
    }
    Ok(())
}

/// The state of a connection opened by a packet with `f`, or why it cannot open one.
pub fn start(f: u8) -> Result<TcpState, OutOfState> {
    check_flags(f)?;
    if f & flags::RST != 0 {
        return Err(OutOfState::RstWithoutConnection);
    }
    if f & flags::SYN == 0 || f & flags::ACK != 0 {
        return Err(OutOfState::FirstPacketNotSyn);
    }
    Ok(TcpState::SynSent)
}

/// The next state after a packet with flags `f` in direction `dir`, or why it is out of state.
pub fn next(state: TcpState, dir: Dir, f: u8) -> Result<TcpState, OutOfState> {
    use TcpState::*;
    check_flags(f)?;
    let syn = f & flags::SYN != 0;
    let ack = f & flags::ACK != 0;
    let fin = f & flags::FIN != 0;
    if f & flags::RST != 0 {
        return Ok(Closed);
    }
    match state {
        SynSent => match (dir, syn, ack) {
            (Dir::Orig, true, false) => Ok(SynSent),
            (Dir::Reply, true, _) => Ok(SynReceived),
            _ => Err(OutOfState::UnexpectedInHandshake),
        },
        SynReceived => match (dir, syn, ack) {
            (Dir::Orig, true, false) | (Dir::Reply, true, true) => Ok(SynReceived),
            (_, false, true) if fin => Ok(if dir == Dir::Orig { FinOrig } else { FinReply }),
            (_, false, true) => Ok(Established),
            _ => Err(OutOfState::UnexpectedInHandshake),
        },
        _ if syn => Err(OutOfState::SynOnOpenConnection),
        Established if fin => Ok(if dir == Dir::Orig { FinOrig } else { FinReply }),
        FinOrig if fin && dir == Dir::Reply => Ok(LastAck),
        FinReply if fin && dir == Dir::Orig => Ok(LastAck),
        LastAck if ack && !fin => Ok(TimeWait),
        s => Ok(s),
    }
}

/// The initial sequence numbers of a connection's handshake, as far as they are known: seen by
/// this inspector or learnt from another cluster member's record.
///
/// Invariants: recorded only while handshake enforcement is on ([`crate::Inspector::
/// set_handshake_enforcement`]); `client_isn` is the sequence number of the SYN that created the
/// connection, `server_isn` that of the first SYN-ACK (or simultaneous SYN) from the responder
/// that passed the check. A known value is never overwritten by a later packet (a forged or
/// different SYN-ACK cannot move it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Handshake {
    pub client_isn: Option<u32>,
    pub server_isn: Option<u32>,
}

impl Handshake {
    /// `self` with the values `other` knows added (a value already known here stays).
    pub fn merge(self, other: Handshake) -> Handshake {
        Handshake {
            client_isn: self.client_isn.or(other.client_isn),
            server_isn: self.server_isn.or(other.server_isn),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.client_isn.is_none() && self.server_isn.is_none()
    }
}

/// Why a handshake packet was refused by [`check_handshake`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeMismatch {
    #[error("SYN-ACK acknowledges {ack}, the client's ISN + 1 is {expected}")]
    SynAck { ack: u32, expected: u32 },
    #[error("handshake ACK has seq {seq} ack {ack}, expected seq {want_seq} ack {want_ack}")]
    Ack {
        seq: u32,
        ack: u32,
        want_seq: u32,
        want_ack: u32,
    },
}

/// What [`check_handshake`] found for a packet it let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeCheck {
    /// Not a packet the handshake check looks at (past the handshake, or a retransmitted SYN).
    NotChecked,
    /// Its sequence numbers match the recorded ISNs.
    Verified,
    /// A packet the check looks at, but an ISN it needs is not known (the connection was
    /// created or answered where enforcement was off): let through unverified.
    Unknown,
}

/// The handshake check of a TCP packet with flags `f`, sequence number `seq` and
/// acknowledgement number `ack` in direction `dir`, on a connection in `state` whose ISNs are
/// `hs`; the flags were already accepted by [`next`]. Returns the ISNs to record (the server's
/// from a first SYN-ACK) and what was checked, or the mismatch:
///
/// - a SYN-ACK from the responder must acknowledge `client_isn + 1`;
/// - the originator's ACK that completes the handshake (state `SynReceived`, no SYN) must have
///   `seq = client_isn + 1` and `ack = server_isn + 1`.
///
/// Arithmetic is modulo 2^32. Pure and allocation-free.
pub fn check_handshake(
    hs: Handshake,
    state: TcpState,
    dir: Dir,
    f: u8,
    seq: u32,
    ack: u32,
) -> Result<(Handshake, HandshakeCheck), HandshakeMismatch> {
    let syn = f & flags::SYN != 0;
    let has_ack = f & flags::ACK != 0;
    if f & flags::RST != 0 {
        return Ok((hs, HandshakeCheck::NotChecked));
    }
    match (state, dir) {
        (TcpState::SynSent | TcpState::SynReceived, Dir::Reply) if syn => {
            let mut out = hs;
            out.server_isn = hs.server_isn.or(Some(seq));
            if !has_ack {
                // A simultaneous open: nothing of ours to acknowledge yet.
                return Ok((out, HandshakeCheck::NotChecked));
            }
            let Some(client) = hs.client_isn else {
                return Ok((out, HandshakeCheck::Unknown));
            };
            let expected = client.wrapping_add(1);
            if ack != expected {
                return Err(HandshakeMismatch::SynAck { ack, expected });
            }
            Ok((out, HandshakeCheck::Verified))
        }
        (TcpState::SynReceived, Dir::Orig) if !syn && has_ack => {
            let (Some(client), Some(server)) = (hs.client_isn, hs.server_isn) else {
                return Ok((hs, HandshakeCheck::Unknown));
            };
            let (want_seq, want_ack) = (client.wrapping_add(1), server.wrapping_add(1));
            if seq != want_seq || ack != want_ack {
                return Err(HandshakeMismatch::Ack {
                    seq,
                    ack,
                    want_seq,
                    want_ack,
                });
            }
            Ok((hs, HandshakeCheck::Verified))
        }
        _ => Ok((hs, HandshakeCheck::NotChecked)),
    }
}
