//! The TCP state machine of a tracked connection (flags only; sequence numbers are not tracked).

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
