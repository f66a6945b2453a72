//! The security policy: which peer protects a packet, decided from the configured domains.
//!
//! Routes for every remote domain point into the TUN device from start to exit, so a packet for
//! a remote domain that has no CHILD SA is dropped here ("fail closed") instead of leaving the
//! gateway in clear text.

use std::net::IpAddr;

use ipnet::IpNet;
use rampart_config::GatewayConfig;

/// Index of a peer in the configuration (and in the IKE engine).
pub type PeerIndex = usize;

/// Longest-prefix-free policy table: local domain plus each peer's remote domain.
///
/// Invariant (checked by the config): remote domains do not overlap the local domain, so the
/// first peer whose remote domain contains the destination is the only candidate for outbound
/// traffic. Lookups do not allocate.
#[derive(Debug, Clone)]
pub struct Policy {
    local: Vec<IpNet>,
    remote: Vec<(IpNet, PeerIndex)>,
}

impl Policy {
    pub fn new(config: &GatewayConfig) -> Policy {
        let mut remote: Vec<(IpNet, PeerIndex)> = config
            .peers
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.remote_domain.iter().map(move |n| (*n, i)))
            .collect();
        // Longest prefix first, so a more specific domain wins.
        remote.sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix_len()));
        Policy {
            local: config.local.domain.clone(),
            remote,
        }
    }

    /// The peer that protects traffic from `src` (in our domain) to `dst` (in its domain).
    pub fn outbound_peer(&self, src: IpAddr, dst: IpAddr) -> Option<PeerIndex> {
        if !self.is_local(src) {
            return None;
        }
        self.remote
            .iter()
            .find(|(n, _)| n.contains(&dst))
            .map(|(_, p)| *p)
    }

    pub fn is_local(&self, addr: IpAddr) -> bool {
        self.local.iter().any(|n| n.contains(&addr))
    }

    /// Every remote prefix, for the routes into the TUN device.
    pub fn remote_prefixes(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.remote.iter().map(|(n, _)| *n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            local: vec!["10.1.0.0/24".parse().unwrap()],
            remote: vec![
                ("10.2.1.0/24".parse().unwrap(), 1),
                ("10.2.0.0/16".parse().unwrap(), 0),
            ],
        }
    }

    #[test]
    fn picks_the_most_specific_remote_domain() {
        let p = policy();
        let src: IpAddr = "10.1.0.5".parse().unwrap();
        assert_eq!(p.outbound_peer(src, "10.2.1.9".parse().unwrap()), Some(1));
        assert_eq!(p.outbound_peer(src, "10.2.7.9".parse().unwrap()), Some(0));
        assert_eq!(p.outbound_peer(src, "10.3.0.1".parse().unwrap()), None);
    }

    #[test]
    fn source_outside_the_local_domain_has_no_policy() {
        let p = policy();
        assert_eq!(
            p.outbound_peer("10.9.0.1".parse().unwrap(), "10.2.1.9".parse().unwrap()),
            None
        );
    }
}
