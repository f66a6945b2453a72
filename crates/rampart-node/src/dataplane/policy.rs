//! The security policy: which peers may protect a packet, decided from the configured domains.
//!
//! Routes for every remote domain point into the TUN device from start to exit, so a packet for
//! a remote domain that has no CHILD SA is dropped here ("fail closed") instead of leaving the
//! gateway in clear text.
//!
//! A remote prefix maps to a *set* of candidate peers (several gateways protecting one domain:
//! an entry-point group); a [`PeerSelector`] picks one of them per packet.

use std::net::IpAddr;
use std::ops::Range;

use ipnet::IpNet;
use rampart_ike::PeerId;

/// Longest-prefix-match policy table: the local domain plus every remote prefix with its
/// candidate peers (`K`: [`PeerId`] in a node).
///
/// Invariants: each family's table holds every distinct remote prefix once (host bits cleared),
/// sorted by prefix length (longest first), then by network; `levels` names each length present
/// with its slice of the table; each entry's candidates lie in `candidates`, in the order the
/// prefixes were given. A lookup is one binary search per prefix length present, and does not
/// allocate.
#[derive(Debug, Clone)]
pub struct Policy<K = PeerId> {
    local: Vec<IpNet>,
    v4: Table,
    v6: Table,
    candidates: Vec<K>,
    /// Every distinct remote prefix, longest first (the order routes are added in).
    prefixes: Vec<IpNet>,
}

/// The prefixes of one address family, addresses widened to `u128`.
#[derive(Debug, Clone, Default)]
struct Table {
    /// Address width: 32 or 128.
    bits: u8,
    /// (prefix length, range of `entries`), longest first.
    levels: Vec<(u8, Range<usize>)>,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    network: u128,
    candidates: Range<u32>,
}

fn mask(len: u8, bits: u8) -> u128 {
    if len == 0 {
        return 0;
    }
    let full = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    (u128::MAX << (bits - len)) & full
}

fn widen(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl Table {
    fn lookup(&self, addr: u128) -> Option<Range<u32>> {
        for (len, range) in &self.levels {
            let network = addr & mask(*len, self.bits);
            let level = &self.entries[range.clone()];
            if let Ok(i) = level.binary_search_by(|e| e.network.cmp(&network)) {
                return Some(level[i].candidates.clone());
            }
        }
        None
    }
}

impl<K: Copy> Policy<K> {
    /// `remote`: every (prefix, peer) pair; a prefix given for several peers gets them all as
    /// candidates, in the order given.
    pub fn new(local: Vec<IpNet>, remote: &[(IpNet, K)]) -> Policy<K> {
        // (family is v6, length descending, network, position given) -> stable candidate order.
        let mut sorted: Vec<(IpNet, usize)> = remote
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.trunc(), i))
            .collect();
        sorted.sort_by_key(|(n, i)| {
            (
                matches!(n, IpNet::V6(_)),
                std::cmp::Reverse(n.prefix_len()),
                widen(n.network()),
                *i,
            )
        });
        let mut candidates = Vec::with_capacity(sorted.len());
        let mut v4 = Table {
            bits: 32,
            ..Table::default()
        };
        let mut v6 = Table {
            bits: 128,
            ..Table::default()
        };
        for (net, i) in &sorted {
            let table = if matches!(net, IpNet::V4(_)) {
                &mut v4
            } else {
                &mut v6
            };
            let at = candidates.len() as u32;
            candidates.push(remote[*i].1);
            let network = widen(net.network());
            match table.entries.last_mut() {
                Some(last)
                    if last.network == network
                        && table.levels.last().map(|l| l.0) == Some(net.prefix_len()) =>
                {
                    last.candidates.end = at + 1;
                }
                _ => {
                    let index = table.entries.len();
                    match table.levels.last_mut() {
                        Some((len, range)) if *len == net.prefix_len() => range.end = index + 1,
                        _ => table.levels.push((net.prefix_len(), index..index + 1)),
                    }
                    table.entries.push(Entry {
                        network,
                        candidates: at..at + 1,
                    });
                }
            }
        }
        // Routes: longest first over both families, as given otherwise; each prefix once.
        let mut prefixes: Vec<IpNet> = Vec::new();
        let mut by_len: Vec<IpNet> = remote.iter().map(|(n, _)| *n).collect();
        by_len.sort_by_key(|n| std::cmp::Reverse(n.prefix_len()));
        for n in by_len {
            if !prefixes.contains(&n) {
                prefixes.push(n);
            }
        }
        Policy {
            local,
            v4,
            v6,
            candidates,
            prefixes,
        }
    }

    /// The candidate peers for traffic from `src` (in our domain) to `dst` (in a remote
    /// domain): those of the longest remote prefix containing `dst`, never empty.
    pub fn outbound_candidates(&self, src: IpAddr, dst: IpAddr) -> Option<&[K]> {
        if !self.is_local(src) {
            return None;
        }
        let range = match dst {
            IpAddr::V4(_) => self.v4.lookup(widen(dst)),
            IpAddr::V6(_) => self.v6.lookup(widen(dst)),
        }?;
        self.candidates
            .get(range.start as usize..range.end as usize)
    }

    pub fn is_local(&self, addr: IpAddr) -> bool {
        self.local.iter().any(|n| n.contains(&addr))
    }

    /// Every remote prefix, once, for the routes into the TUN device.
    pub fn remote_prefixes(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.prefixes.iter().copied()
    }
}

/// What a [`PeerSelector`] may ask about the data plane's tunnels.
pub trait TunnelState {
    /// Whether `peer` has an established tunnel that outbound traffic can use.
    fn has_tunnel(&self, peer: PeerId) -> bool;
}

/// Chooses the peer that protects an outbound packet among a prefix's candidates.
///
/// Invariant for implementers: the result is one of `candidates` (which is never empty, in
/// configuration order); choosing one without a tunnel makes the data plane ask the control
/// plane to acquire it and drop the packet. Called once per outbound packet: must not allocate.
pub trait PeerSelector: Send {
    fn select(&mut self, dst: IpAddr, candidates: &[PeerId], tunnels: &dyn TunnelState) -> PeerId;
}

/// The default selector: the first candidate with an established tunnel, else the first
/// candidate (so traffic triggers its acquire).
#[derive(Debug, Clone, Copy, Default)]
pub struct FirstEstablished;

impl PeerSelector for FirstEstablished {
    fn select(&mut self, _dst: IpAddr, candidates: &[PeerId], tunnels: &dyn TunnelState) -> PeerId {
        if let [only] = candidates {
            return *only;
        }
        candidates
            .iter()
            .copied()
            .find(|&p| tunnels.has_tunnel(p))
            .unwrap_or(candidates[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn policy() -> Policy<u32> {
        Policy::new(
            vec![net("10.1.0.0/24"), net("fd01::/64")],
            &[
                (net("10.2.0.0/16"), 0),
                (net("10.2.1.0/24"), 1),
                (net("10.2.1.128/25"), 2),
                (net("10.2.0.0/16"), 3),
                (net("0.0.0.0/0"), 4),
                (net("fd02::/48"), 5),
                (net("fd02:0:0:7::/64"), 6),
                (net("fd02::/48"), 7),
            ],
        )
    }

    #[test]
    fn picks_the_most_specific_remote_domain() {
        let p = policy();
        let src = ip("10.1.0.5");
        assert_eq!(p.outbound_candidates(src, ip("10.2.1.9")), Some(&[1][..]));
        assert_eq!(p.outbound_candidates(src, ip("10.2.1.200")), Some(&[2][..]));
        assert_eq!(p.outbound_candidates(src, ip("10.3.0.1")), Some(&[4][..]));
    }

    #[test]
    fn a_prefix_keeps_its_candidates_in_the_order_given() {
        let p = policy();
        assert_eq!(
            p.outbound_candidates(ip("10.1.0.5"), ip("10.2.7.9")),
            Some(&[0, 3][..])
        );
        assert_eq!(
            p.outbound_candidates(ip("fd01::5"), ip("fd02::1")),
            Some(&[5, 7][..])
        );
    }

    #[test]
    fn ipv6_longest_prefix_wins_and_misses_are_none() {
        let p = policy();
        let src = ip("fd01::5");
        assert_eq!(
            p.outbound_candidates(src, ip("fd02:0:0:7::9")),
            Some(&[6][..])
        );
        assert_eq!(p.outbound_candidates(src, ip("fd03::1")), None);
        // An IPv4 default route does not cover IPv6.
        assert_eq!(p.outbound_candidates(src, ip("2001:db8::1")), None);
    }

    #[test]
    fn source_outside_the_local_domain_has_no_policy() {
        let p = policy();
        assert_eq!(p.outbound_candidates(ip("10.9.0.1"), ip("10.2.1.9")), None);
        assert_eq!(p.outbound_candidates(ip("fd09::1"), ip("fd02::1")), None);
    }

    #[test]
    fn host_bits_in_a_configured_prefix_are_ignored() {
        let p = Policy::new(vec![net("10.1.0.0/24")], &[(net("10.2.0.9/16"), 7u32)]);
        assert_eq!(
            p.outbound_candidates(ip("10.1.0.5"), ip("10.2.200.1")),
            Some(&[7][..])
        );
    }

    #[test]
    fn a_full_tunnel_client_sends_everything_of_its_family() {
        // A remote-access client: local and remote domain both 0.0.0.0/0.
        let any = net("0.0.0.0/0");
        let p = Policy::new(vec![any], &[(any, 1u32)]);
        assert_eq!(
            p.outbound_candidates(ip("10.99.0.7"), ip("198.51.100.1")),
            Some(&[1][..])
        );
        assert_eq!(
            p.outbound_candidates(ip("0.0.0.0"), ip("255.255.255.255")),
            Some(&[1][..])
        );
        assert_eq!(p.outbound_candidates(ip("fd00::1"), ip("fd00::2")), None);
    }

    #[test]
    fn routes_list_each_prefix_once_longest_first() {
        let p = policy();
        let routes: Vec<IpNet> = p.remote_prefixes().collect();
        assert_eq!(routes.len(), 6);
        assert_eq!(routes[0], net("fd02:0:0:7::/64"));
        assert_eq!(routes.last(), Some(&net("0.0.0.0/0")));
    }

    /// The one place these tests make peer ids (the engine hands them out in a node).
    fn peer(n: u32) -> PeerId {
        PeerId::from_parts(n, 0)
    }

    struct Established(&'static [u32]);

    impl TunnelState for Established {
        fn has_tunnel(&self, id: PeerId) -> bool {
            self.0.iter().any(|&p| peer(p) == id)
        }
    }

    #[test]
    fn first_established_prefers_a_candidate_with_a_tunnel() {
        let candidates = [peer(3), peer(5), peer(8)];
        let dst = ip("10.2.0.1");
        let mut s = FirstEstablished;
        assert_eq!(s.select(dst, &candidates, &Established(&[])), peer(3));
        assert_eq!(s.select(dst, &candidates, &Established(&[8])), peer(8));
        assert_eq!(s.select(dst, &candidates, &Established(&[8, 5])), peer(5));
        assert_eq!(s.select(dst, &candidates[1..2], &Established(&[])), peer(5));
    }
}
