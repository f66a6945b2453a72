//! Engine configuration and the identifiers the engine hands out.

use std::time::Duration;

use ipnet::IpNet;

/// Configuration of one gateway's IKE engine. Peers are not part of it: they are added to the
/// running engine ([`crate::Ike::add_peer`]).
#[derive(Debug, Clone, PartialEq)]
pub struct IkeConfig {
    /// Cluster member id, 0..=[`crate::MAX_MEMBER_ID`]: the top 16 bits of every [`IkeSaId`] /
    /// [`ChildSaId`] and IKE SPI this engine allocates, the top 4 bits of its ESP SPIs.
    pub member_id: u16,
    pub ike_port: u16,
    pub nat_t_port: u16,
    /// Our protected domain: TSi when we initiate, the bound for narrowing TSr when we respond.
    pub local_domain: Vec<IpNet>,
    pub retransmit_timeout: Duration,
    /// Retransmissions of a request before the peer is declared dead.
    pub retransmit_tries: u32,
    /// Interval of the NAT keepalives the NATed side sends while it sends nothing else.
    pub nat_keepalive: Duration,
    /// Advertise and use RFC 7383 IKE fragmentation.
    pub fragmentation: bool,
    /// Largest IP datagram of a fragmented IKE message (IP + UDP headers and the non-ESP marker
    /// included); raised to 1280 for IPv6 peers.
    pub fragment_size: u16,
    /// Half-open responder IKE SAs from which on IKE_SA_INIT must carry a cookie (0: always).
    pub cookie_threshold: u32,
    /// Most half-open responder IKE SAs per source IP address; more IKE_SA_INIT are dropped.
    pub half_open_per_source: u32,
}

/// Cluster-wide IKE SA id: `member_id << 48 | counter`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct IkeSaId(pub u64);

/// Cluster-wide CHILD SA id: `member_id << 48 | counter`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
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
    /// Makes sure the counter never hands out `id` (an id imported from a member with our id).
    pub(crate) fn observe(&mut self, id: u64) {
        if id & !0xFFFF_FFFF_FFFF == self.member {
            self.next = self.next.max((id & 0xFFFF_FFFF_FFFF) + 1);
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
