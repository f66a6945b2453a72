//! SA lifetimes by volume (RFC 4301 4.4.2.1); time-based lifetimes belong to the IKE engine.

/// Soft limits ask for a rekey; hard limits stop the SA. `None` = no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lifetime {
    pub soft_bytes: Option<u64>,
    pub hard_bytes: Option<u64>,
    pub soft_packets: Option<u64>,
    pub hard_packets: Option<u64>,
}

/// Where an SA stands against its [`Lifetime`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LifetimeState {
    Ok,
    /// A soft limit was reached: rekey now, traffic still flows.
    Soft,
    /// A hard limit was reached: seal/open refuse with `Expired`.
    Hard,
}

impl Lifetime {
    /// State after `packets` packets carrying `bytes` payload bytes.
    ///
    /// A limit is reached when the counter is >= the limit, so a hard limit of N packets lets
    /// exactly N packets through; the packet that crosses a byte limit is still processed.
    pub fn state(&self, packets: u64, bytes: u64) -> LifetimeState {
        let reached = |limit: Option<u64>, value: u64| limit.is_some_and(|l| value >= l);
        if reached(self.hard_packets, packets) || reached(self.hard_bytes, bytes) {
            LifetimeState::Hard
        } else if reached(self.soft_packets, packets) || reached(self.soft_bytes, bytes) {
            LifetimeState::Soft
        } else {
            LifetimeState::Ok
        }
    }
}
