//! Per-SA counters.

/// Counters of one SA direction. `packets`/`bytes` count successfully sealed or opened packets
/// and their inner payload bytes (the IP packet, without ESP overhead); they drive lifetimes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SaStats {
    pub packets: u64,
    pub bytes: u64,
    /// Inbound: duplicates and packets older than the window.
    pub replay_drops: u64,
    /// Inbound: ICV mismatches.
    pub auth_failures: u64,
    /// Inbound: truncated, misaligned, wrong SPI, bad sequence number or bad padding.
    pub malformed: u64,
    /// Packets refused because the hard lifetime was reached.
    pub expired_drops: u64,
    /// Outbound: packets refused because the sequence space is used up.
    pub exhausted_drops: u64,
}
