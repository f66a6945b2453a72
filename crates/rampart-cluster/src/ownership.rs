//! Who owns a flow in Load Sharing: rendezvous (highest random weight) hashing of a flow key
//! over the members that are up, keyed with a per-cluster secret.
//!
//! Every member computes the same owner from the same (key, member set): there is no table to
//! sync. For a flow, each member `m` up scores `mix(h ^ seed(m))`, where `h` is SipHash-2-4 of
//! the flow's canonical bytes under the cluster key and `seed(m)` is SipHash of the member id
//! under the same key; the highest score owns the flow (a tie, which needs a 64-bit collision,
//! goes to the higher id). Hence:
//! - a member leaving moves exactly the flows it owned (every other score is unchanged), and
//!   they spread over the remaining members;
//! - a member joining takes, from every other member, only the flows on which it now scores
//!   highest: about `1 / (n + 1)` of each member's share;
//! - without the key an outsider cannot aim flows at one member (the key is derived from the
//!   cluster secret; see [`OwnershipKey::derive`]).
//!
//! Both directions of a connection have one owner: [`FlowKey::conn`] orders the two endpoints.
//! Per packet the cost is one SipHash of at most 38 bytes and one 64-bit mix per member up;
//! nothing allocates.

use std::net::{IpAddr, SocketAddr};

use aws_lc_rs::hkdf;
use serde::{Deserialize, Serialize};

use crate::siphash::SipKey;
use crate::MemberId;

/// Most members a Load Sharing cluster has (the 2 to 5, with room to spare).
pub const MAX_LS_MEMBERS: usize = 16;

/// The per-cluster secret key of the ownership hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnershipKey(SipKey);

struct Len16;

impl hkdf::KeyType for Len16 {
    fn len(&self) -> usize {
        16
    }
}

impl OwnershipKey {
    /// HKDF-SHA256 (salt "rampart cluster v1", ikm the cluster secret, info "ownership" ||
    /// u16 len(name) || name), 16 bytes: every member derives the same key, and two clusters
    /// that share a secret by mistake still hash differently.
    pub fn derive(secret: &[u8], cluster_name: &str) -> OwnershipKey {
        let name_len = (cluster_name.len() as u16).to_be_bytes();
        let info: [&[u8]; 3] = [b"ownership", &name_len, cluster_name.as_bytes()];
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"rampart cluster v1").extract(secret);
        let mut key = [0u8; 16];
        prk.expand(&info, Len16)
            .and_then(|okm| okm.fill(&mut key))
            .expect("16 bytes is a valid HKDF-SHA256 output length");
        OwnershipKey(SipKey::new(key))
    }

    /// A key from raw bytes (tests, benchmarks).
    pub fn from_bytes(key: [u8; 16]) -> OwnershipKey {
        OwnershipKey(SipKey::new(key))
    }
}

/// What is owned: a connection (both directions) or an ESP SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowKey {
    /// A connection by its protocol and endpoints, direction-normalised: `lo <= hi` as
    /// `(address as 16 bytes, port)`, so the reply direction gives the same key.
    Conn {
        protocol: u8,
        lo: SocketAddr,
        hi: SocketAddr,
    },
    /// An ESP SA by its SPI (the inbound SPI this cluster chose).
    Esp { spi: u32 },
}

/// 16-byte form of an address (IPv4 as IPv4-mapped IPv6), for ordering and hashing.
fn addr16(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

impl FlowKey {
    /// The key of a connection seen from either direction: `conn(p, a, b) == conn(p, b, a)`.
    /// Ports are those of TCP, UDP and SCTP; pass 0 (or the ICMP identifier on both sides)
    /// for protocols without ports.
    pub fn conn(protocol: u8, a: SocketAddr, b: SocketAddr) -> FlowKey {
        let ka = (addr16(a.ip()), a.port());
        let kb = (addr16(b.ip()), b.port());
        let (lo, hi) = if ka <= kb { (a, b) } else { (b, a) };
        FlowKey::Conn { protocol, lo, hi }
    }

    /// The canonical bytes hashed: tag, then the fields in a fixed layout. Returns the length.
    fn canonical(&self, out: &mut [u8; 38]) -> usize {
        match *self {
            FlowKey::Conn { protocol, lo, hi } => {
                out[0] = 1;
                out[1] = protocol;
                out[2..18].copy_from_slice(&addr16(lo.ip()));
                out[18..20].copy_from_slice(&lo.port().to_be_bytes());
                out[20..36].copy_from_slice(&addr16(hi.ip()));
                out[36..38].copy_from_slice(&hi.port().to_be_bytes());
                38
            }
            FlowKey::Esp { spi } => {
                out[0] = 2;
                out[1..5].copy_from_slice(&spi.to_be_bytes());
                5
            }
        }
    }
}

/// Murmur3's 64-bit finaliser: a bijection with full avalanche.
#[inline]
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Rendezvous hashing over the members that are up.
///
/// Invariant: `up` is sorted by member id, without duplicates, at most [`MAX_LS_MEMBERS`]
/// long, and `up[i].1` is the seed of `up[i].0` under `key`.
#[derive(Debug, Clone)]
pub struct Rendezvous {
    key: SipKey,
    up: Vec<(MemberId, u64)>,
}

impl Rendezvous {
    /// A hash over `up` (duplicates ignored; members beyond [`MAX_LS_MEMBERS`] ignored, the
    /// lowest ids kept).
    pub fn new(key: &OwnershipKey, up: impl IntoIterator<Item = MemberId>) -> Rendezvous {
        let mut r = Rendezvous {
            key: key.0,
            up: Vec::with_capacity(MAX_LS_MEMBERS),
        };
        r.set_up(up);
        r
    }

    fn seed(&self, member: MemberId) -> u64 {
        self.key.hash(&[b'm', member])
    }

    /// Replaces the set of members that are up. Returns whether it changed.
    pub fn set_up(&mut self, up: impl IntoIterator<Item = MemberId>) -> bool {
        let mut ids: Vec<MemberId> = up.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        ids.truncate(MAX_LS_MEMBERS);
        if ids.iter().copied().eq(self.up.iter().map(|(m, _)| *m)) {
            return false;
        }
        self.up = ids.into_iter().map(|m| (m, self.seed(m))).collect();
        true
    }

    /// Marks one member up or down. Returns whether the set changed.
    pub fn set_member(&mut self, member: MemberId, up: bool) -> bool {
        match (self.up.binary_search_by_key(&member, |(m, _)| *m), up) {
            (Ok(i), false) => {
                self.up.remove(i);
                true
            }
            (Err(i), true) if self.up.len() < MAX_LS_MEMBERS => {
                let seed = self.seed(member);
                self.up.insert(i, (member, seed));
                true
            }
            _ => false,
        }
    }

    /// The members up, ascending.
    pub fn members(&self) -> impl Iterator<Item = MemberId> + '_ {
        self.up.iter().map(|(m, _)| *m)
    }

    pub fn is_up(&self, member: MemberId) -> bool {
        self.up.binary_search_by_key(&member, |(m, _)| *m).is_ok()
    }

    /// The keyed hash of a flow (what the member scores are derived from).
    pub fn flow_hash(&self, flow: &FlowKey) -> u64 {
        let mut buf = [0u8; 38];
        let n = flow.canonical(&mut buf);
        self.key.hash(&buf[..n])
    }

    /// The owner of `flow`; `None` only when no member is up.
    pub fn owner(&self, flow: &FlowKey) -> Option<MemberId> {
        self.owner_of_hash(self.flow_hash(flow))
    }

    /// The owner of something with a *home* member, e.g. an SA whose SPI or id carries the
    /// member that allocated it: the home while it is up, else the rendezvous owner of `flow`
    /// among the members up (so a dead member's SAs spread over the survivors, and go home
    /// when it is back). `None` only when no member is up.
    pub fn owner_with_home(&self, home: MemberId, flow: &FlowKey) -> Option<MemberId> {
        if self.is_up(home) {
            Some(home)
        } else {
            self.owner(flow)
        }
    }

    /// The owner of a flow by its [`Rendezvous::flow_hash`] (hash once, ask many times).
    pub fn owner_of_hash(&self, h: u64) -> Option<MemberId> {
        self.up
            .iter()
            .map(|&(m, seed)| (mix(h ^ seed), m))
            .max()
            .map(|(_, m)| m)
    }
}

/// One member's line in `rampart cluster status`: whether it is up, its expected share of the
/// hash space and what it actually owned since the counters started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberShare {
    pub member: MemberId,
    pub up: bool,
    /// Expected share of new flows in per mille (1000 / members up; 0 when down).
    pub expected_permille: u32,
    /// Flows this member was the owner of when they were created.
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
}

/// The ownership map for status: every configured member and its share.
///
/// Invariant: `members` is sorted by id and holds every configured member exactly once;
/// `epoch` grows by one each time the set of members up changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnershipMap {
    pub epoch: u64,
    pub members: Vec<MemberShare>,
}

impl OwnershipMap {
    pub fn new(configured: impl IntoIterator<Item = MemberId>) -> OwnershipMap {
        let mut ids: Vec<MemberId> = configured.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        OwnershipMap {
            epoch: 0,
            members: ids
                .into_iter()
                .map(|member| MemberShare {
                    member,
                    up: false,
                    expected_permille: 0,
                    flows: 0,
                    packets: 0,
                    bytes: 0,
                })
                .collect(),
        }
    }

    /// Follows the member set of `r` (members not configured here are ignored).
    pub fn update(&mut self, r: &Rendezvous) {
        let n = self.members.iter().filter(|s| r.is_up(s.member)).count() as u32;
        let mut changed = false;
        for s in &mut self.members {
            let up = r.is_up(s.member);
            changed |= up != s.up;
            s.up = up;
            s.expected_permille = if up { 1000 / n } else { 0 };
        }
        if changed {
            self.epoch += 1;
        }
    }

    /// Counts a packet of `bytes` for `owner`; `new_flow` when it created the flow. Unknown
    /// members are ignored.
    pub fn count(&mut self, owner: MemberId, new_flow: bool, bytes: u64) {
        if let Ok(i) = self.members.binary_search_by_key(&owner, |s| s.member) {
            let s = &mut self.members[i];
            s.flows += u64::from(new_flow);
            s.packets += 1;
            s.bytes += bytes;
        }
    }

    pub fn share(&self, member: MemberId) -> Option<&MemberShare> {
        self.members
            .binary_search_by_key(&member, |s| s.member)
            .ok()
            .map(|i| &self.members[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn key() -> OwnershipKey {
        OwnershipKey::derive(b"a cluster secret of 32 bytes!!!!", "lab")
    }

    /// Flow `i` of a deterministic population (v4 and v6, TCP and UDP, ESP).
    fn flow(seed: u64, i: u64) -> FlowKey {
        let x = mix(seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        match i % 8 {
            0 => FlowKey::Esp { spi: x as u32 },
            1 => FlowKey::conn(
                17,
                SocketAddr::new(Ipv6Addr::from(u128::from(x) << 64 | 1).into(), x as u16),
                SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 443),
            ),
            _ => FlowKey::conn(
                6,
                SocketAddr::new(Ipv4Addr::from(x as u32).into(), (x >> 32) as u16),
                SocketAddr::new(Ipv4Addr::new(192, 0, 2, 10).into(), 443),
            ),
        }
    }

    #[test]
    fn both_directions_have_one_key_and_one_owner() {
        let a: SocketAddr = "10.1.2.3:40000".parse().unwrap();
        let b: SocketAddr = "192.0.2.7:443".parse().unwrap();
        assert_eq!(FlowKey::conn(6, a, b), FlowKey::conn(6, b, a));
        assert_ne!(FlowKey::conn(6, a, b), FlowKey::conn(17, a, b));
        // Same address, ports decide the order.
        let c: SocketAddr = "10.1.2.3:50000".parse().unwrap();
        assert_eq!(FlowKey::conn(17, a, c), FlowKey::conn(17, c, a));
        let r = Rendezvous::new(&key(), [1, 2, 3]);
        assert_eq!(
            r.owner(&FlowKey::conn(6, a, b)),
            r.owner(&FlowKey::conn(6, b, a))
        );
        assert_eq!(
            Rendezvous::new(&key(), []).owner(&FlowKey::conn(6, a, b)),
            None
        );
    }

    #[test]
    fn key_and_cluster_name_change_the_assignment() {
        let r1 = Rendezvous::new(&key(), [1, 2, 3]);
        let r2 = Rendezvous::new(
            &OwnershipKey::derive(b"a cluster secret of 32 bytes!!!!", "lab2"),
            [1, 2, 3],
        );
        let r3 = Rendezvous::new(&OwnershipKey::derive(b"another secret", "lab"), [1, 2, 3]);
        let differ = |r: &Rendezvous| {
            (0..3000)
                .filter(|&i| r.owner(&flow(1, i)) != r1.owner(&flow(1, i)))
                .count()
        };
        // Independent assignments agree on about a third of the flows.
        assert!((1700..2300).contains(&differ(&r2)), "{}", differ(&r2));
        assert!((1700..2300).contains(&differ(&r3)), "{}", differ(&r3));
    }

    #[test]
    fn home_owns_while_up_then_the_survivors_share() {
        let mut r = Rendezvous::new(&key(), [1, 2, 3]);
        // ESP SPIs carry their allocating member in the top 4 bits.
        let spis: Vec<u32> = (0..3000u32)
            .map(|i| 2 << 28 | i.wrapping_mul(2_654_435_761) >> 4)
            .collect();
        for &spi in &spis {
            assert_eq!(
                r.owner_with_home((spi >> 28) as u8, &FlowKey::Esp { spi }),
                Some(2)
            );
        }
        r.set_member(2, false);
        let on1 = spis
            .iter()
            .filter(|&&spi| r.owner_with_home(2, &FlowKey::Esp { spi }) == Some(1))
            .count();
        assert!(
            (1300..1700).contains(&on1),
            "{on1} of 3000 adopted by member 1"
        );
        assert!(spis
            .iter()
            .all(|&spi| r.owner_with_home(2, &FlowKey::Esp { spi }) != Some(2)));
        r.set_member(2, true);
        assert_eq!(
            r.owner_with_home(2, &FlowKey::Esp { spi: spis[0] }),
            Some(2)
        );
        assert_eq!(
            Rendezvous::new(&key(), []).owner_with_home(2, &FlowKey::Esp { spi: 1 }),
            None
        );
    }

    #[test]
    fn set_member_matches_set_up() {
        let mut r = Rendezvous::new(&key(), [3, 1]);
        assert!(r.set_member(2, true));
        assert!(!r.set_member(2, true));
        assert_eq!(r.members().collect::<Vec<_>>(), [1, 2, 3]);
        let fresh = Rendezvous::new(&key(), [1, 2, 3]);
        for i in 0..500 {
            assert_eq!(r.owner(&flow(9, i)), fresh.owner(&flow(9, i)));
        }
        assert!(r.set_member(1, false));
        assert!(!r.set_member(1, false));
        assert!(!r.set_up([2, 3, 3]));
    }

    /// Balance: over 100k flows each member up owns its fair share `N / n` within 5 % of
    /// that share (the binomial standard deviation is under 0.7 % for n <= 5).
    const BALANCE_TOLERANCE: f64 = 0.05;

    fn counts(
        r: &Rendezvous,
        seed: u64,
        n_flows: u64,
    ) -> std::collections::BTreeMap<MemberId, u64> {
        let mut c = std::collections::BTreeMap::new();
        for i in 0..n_flows {
            *c.entry(r.owner(&flow(seed, i)).unwrap()).or_insert(0) += 1;
        }
        c
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        #[test]
        fn balance_over_100k_flows(
            members in proptest::collection::btree_set(1u8..=32, 2..=5),
            secret in proptest::collection::vec(any::<u8>(), 16..40),
            seed in any::<u64>(),
        ) {
            let r = Rendezvous::new(&OwnershipKey::derive(&secret, "bal"), members.iter().copied());
            let n_flows = 100_000u64;
            let c = counts(&r, seed, n_flows);
            let fair = n_flows as f64 / members.len() as f64;
            prop_assert_eq!(c.len(), members.len());
            for (m, n) in &c {
                let dev = (*n as f64 - fair).abs() / fair;
                prop_assert!(dev <= BALANCE_TOLERANCE, "member {} owns {} of {} (fair {})", m, n, n_flows, fair);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn deterministic_for_a_key_and_member_set(
            members in proptest::collection::vec(1u8..=32, 1..=6),
            k in any::<[u8; 16]>(),
            seed in any::<u64>(),
        ) {
            let key = OwnershipKey::from_bytes(k);
            let a = Rendezvous::new(&key, members.iter().copied());
            let mut rev = members.clone();
            rev.reverse();
            let b = Rendezvous::new(&key, rev);
            for i in 0..200 {
                let o = a.owner(&flow(seed, i));
                prop_assert_eq!(o, b.owner(&flow(seed, i)));
                prop_assert!(o.is_some_and(|o| members.contains(&o)));
            }
        }

        #[test]
        fn a_member_leaving_moves_only_its_flows(
            members in proptest::collection::btree_set(1u8..=32, 2..=5),
            pick in any::<prop::sample::Index>(),
            k in any::<[u8; 16]>(),
            seed in any::<u64>(),
        ) {
            let key = OwnershipKey::from_bytes(k);
            let all: Vec<u8> = members.iter().copied().collect();
            let gone = all[pick.index(all.len())];
            let before = Rendezvous::new(&key, all.iter().copied());
            let after = Rendezvous::new(&key, all.iter().copied().filter(|&m| m != gone));
            let mut moved_to = std::collections::BTreeMap::new();
            for i in 0..4000 {
                let f = flow(seed, i);
                let (b, a) = (before.owner(&f).unwrap(), after.owner(&f).unwrap());
                if b == gone {
                    prop_assert_ne!(a, gone);
                    *moved_to.entry(a).or_insert(0u32) += 1;
                } else {
                    prop_assert_eq!(a, b, "flow {} moved though its owner stayed", i);
                }
            }
            // Its flows spread over every remaining member, not onto one.
            prop_assert_eq!(moved_to.len(), all.len() - 1);
        }

        #[test]
        fn a_member_joining_takes_only_its_proportion(
            members in proptest::collection::btree_set(1u8..=32, 1..=4),
            joiner in 33u8..=64,
            k in any::<[u8; 16]>(),
            seed in any::<u64>(),
        ) {
            let key = OwnershipKey::from_bytes(k);
            let before = Rendezvous::new(&key, members.iter().copied());
            let mut after = before.clone();
            after.set_member(joiner, true);
            let n_flows = 20_000u64;
            let mut taken = std::collections::BTreeMap::new();
            let mut owned = std::collections::BTreeMap::new();
            for i in 0..n_flows {
                let f = flow(seed, i);
                let (b, a) = (before.owner(&f).unwrap(), after.owner(&f).unwrap());
                *owned.entry(b).or_insert(0u64) += 1;
                if a != b {
                    prop_assert_eq!(a, joiner, "a flow moved between old members");
                    *taken.entry(b).or_insert(0u64) += 1;
                }
            }
            // From each old member it takes about 1/(n+1) of that member's flows.
            let frac = 1.0 / (members.len() + 1) as f64;
            for (m, n) in &owned {
                let t = *taken.get(m).unwrap_or(&0) as f64;
                let expect = *n as f64 * frac;
                prop_assert!((t - expect).abs() <= 0.15 * expect, "took {} of member {}'s {} (expected {})", t, m, n, expect);
            }
        }
    }

    #[test]
    fn ownership_map_follows_members_and_counts() {
        let mut map = OwnershipMap::new([3, 1, 2]);
        let mut r = Rendezvous::new(&key(), [1, 2]);
        map.update(&r);
        assert_eq!(map.epoch, 1);
        assert_eq!(map.share(1).unwrap().expected_permille, 500);
        assert_eq!(map.share(3).unwrap().expected_permille, 0);
        map.update(&r);
        assert_eq!(map.epoch, 1, "no change, no new epoch");
        r.set_member(3, true);
        map.update(&r);
        assert_eq!(map.epoch, 2);
        assert!(map
            .members
            .iter()
            .all(|s| s.up && s.expected_permille == 333));
        for i in 0..3000 {
            let o = r.owner(&flow(5, i)).unwrap();
            map.count(o, true, 100);
            map.count(o, false, 60);
        }
        map.count(99, true, 1);
        let flows: u64 = map.members.iter().map(|s| s.flows).sum();
        let bytes: u64 = map.members.iter().map(|s| s.bytes).sum();
        assert_eq!((flows, bytes), (3000, 3000 * 160));
        assert!(
            map.members.iter().all(|s| (850..1150).contains(&s.flows)),
            "{map:?}"
        );
        let json = serde_json::to_string(&map).unwrap();
        assert_eq!(serde_json::from_str::<OwnershipMap>(&json).unwrap(), map);
    }
}
