//! Engine configuration and the identifiers the engine hands out.

use std::time::Duration;

use ipnet::IpNet;
use rampart_config::{GatewayConfig, PeerConfig};

/// Configuration of one gateway's IKE engine.
#[derive(Debug, Clone, PartialEq)]
pub struct IkeConfig {
    /// Cluster member id: the top 16 bits of every [`IkeSaId`] / [`ChildSaId`] this engine allocates.
    pub member_id: u16,
    pub ike_port: u16,
    pub nat_t_port: u16,
    /// Our protected domain: TSi when we initiate, the bound for narrowing TSr when we respond.
    pub local_domain: Vec<IpNet>,
    pub retransmit_timeout: Duration,
    /// Retransmissions of a request before the peer is declared dead.
    pub retransmit_tries: u32,
    /// Indexed by [`PeerId`].
    pub peers: Vec<PeerConfig>,
}

impl IkeConfig {
    /// The engine part of a gateway configuration (member id 0).
    pub fn from_gateway(cfg: &GatewayConfig) -> IkeConfig {
        IkeConfig {
            member_id: 0,
            ike_port: cfg.gateway.ike_port,
            nat_t_port: cfg.gateway.nat_t_port,
            local_domain: cfg.local.domain.clone(),
            retransmit_timeout: cfg.gateway.retransmit_timeout,
            retransmit_tries: cfg.gateway.retransmit_tries,
            peers: cfg.peers.clone(),
        }
    }
}

/// Index of a peer in [`IkeConfig::peers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub usize);

/// Cluster-wide IKE SA id: `member_id << 48 | counter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IkeSaId(pub u64);

/// Cluster-wide CHILD SA id: `member_id << 48 | counter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChildSaId(pub u64);

/// Allocates ids unique within one member; the counter never repeats within a run.
#[derive(Debug)]
pub(crate) struct IdAlloc {
    member: u64,
    next: u64,
}

impl IdAlloc {
    pub(crate) fn new(member_id: u16) -> IdAlloc {
        IdAlloc {
            member: u64::from(member_id) << 48,
            next: 1,
        }
    }
    pub(crate) fn next(&mut self) -> u64 {
        let v = self.member | (self.next & 0xFFFF_FFFF_FFFF);
        self.next += 1;
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_member() {
        let mut a = IdAlloc::new(3);
        let x = a.next();
        let y = a.next();
        assert_eq!(x >> 48, 3);
        assert_ne!(x, y);
    }
}
