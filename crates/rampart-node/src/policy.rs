//! The security policy: which peer protects a packet, decided from the configured domains.
//!
//! Routes for every remote domain point into the TUN device from start to exit, so a packet for
//! a remote domain that has no CHILD SA is dropped here ("fail closed") instead of leaving the
//! gateway in clear text.

use std::net::IpAddr;

use ipnet::IpNet;
use rampart_ike::{PeerId, PeerPolicy};

/// Longest-prefix-free policy table: local domain plus each peer's remote domain.
///
/// Invariant (checked by the config): remote domains do not overlap the local domain, so the
/// first peer whose remote domain contains the destination is the only candidate for outbound
/// traffic. Lookups do not allocate.
#[derive(Debug, Clone)]
pub struct Policy {
    local: Vec<IpNet>,
    remote: Vec<(IpNet, PeerId)>,
}

impl Policy {
    /// From our local domain and the IKE engine's peers ([`rampart_ike::Ike::peers`]).
    pub fn new<'a>(
        local: &[IpNet],
        peers: impl Iterator<Item = (PeerId, &'a PeerPolicy)>,
    ) -> Policy {
        let mut remote: Vec<(IpNet, PeerId)> = peers
            .flat_map(|(id, p)| p.remote_domain.iter().map(move |n| (*n, id)))
            .collect();
        // Longest prefix first (stable: equal lengths keep peer order), so a more specific
        // domain wins.
        remote.sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix_len()));
        Policy {
            local: local.to_vec(),
            remote,
        }
    }

    /// The peer that protects traffic from `src` (in our domain) to `dst` (in its domain).
    pub fn outbound_peer(&self, src: IpAddr, dst: IpAddr) -> Option<PeerId> {
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

    const CONFIG: &str = r#"[gateway]
name = "gw"
[local]
domain = ["10.1.0.0/24"]
[[peer]]
name = "wide"
local_address = "192.0.2.1"
remote_address = "192.0.2.2"
psk = "0123456789abcdef"
remote_domain = ["10.2.0.0/16"]
[[peer]]
name = "narrow"
local_address = "192.0.2.1"
remote_address = "192.0.2.3"
psk = "0123456789abcdef"
remote_domain = ["10.2.1.0/24"]
[[entry_point_group]]
name = "site-2"
peers = ["wide", "narrow"]
"#;

    /// The policy and the two peers' ids (wide, narrow).
    fn policy() -> (Policy, PeerId, PeerId) {
        let config = rampart_config::parse(CONFIG, "gw.toml").unwrap();
        let mut ike =
            rampart_ike::Ike::new(config.ike_config(), rampart_crypto::Rng::from_seed([1; 32]));
        let ids: Vec<PeerId> = config.peers.into_iter().map(|p| ike.add_peer(p)).collect();
        (
            Policy::new(&config.local.domain, ike.peers()),
            ids[0],
            ids[1],
        )
    }

    #[test]
    fn picks_the_most_specific_remote_domain() {
        let (p, wide, narrow) = policy();
        let src: IpAddr = "10.1.0.5".parse().unwrap();
        assert_eq!(
            p.outbound_peer(src, "10.2.1.9".parse().unwrap()),
            Some(narrow)
        );
        assert_eq!(
            p.outbound_peer(src, "10.2.7.9".parse().unwrap()),
            Some(wide)
        );
        assert_eq!(p.outbound_peer(src, "10.3.0.1".parse().unwrap()), None);
    }

    #[test]
    fn source_outside_the_local_domain_has_no_policy() {
        let (p, _, _) = policy();
        assert_eq!(
            p.outbound_peer("10.9.0.1".parse().unwrap(), "10.2.1.9".parse().unwrap()),
            None
        );
    }
}
