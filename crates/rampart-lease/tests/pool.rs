//! Pool behaviour and the no-double-lease / no-loss property.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rampart_lease::{LeaseError, Pool, PoolConfig, PoolError, PoolExhausted};

fn pool(prefix: &str, exclude: &[&str]) -> Pool<String> {
    Pool::new(PoolConfig {
        prefix: prefix.parse().unwrap(),
        exclude: exclude.iter().map(|a| a.parse().unwrap()).collect(),
        lease_time: Duration::from_secs(60),
    })
    .unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn excludes_network_broadcast_and_gateway() {
    let mut p = pool("10.9.0.0/29", &["10.9.0.1"]);
    let now = Instant::now();
    assert_eq!(p.status().size, 5);
    let got: Vec<IpAddr> = (0..5)
        .map(|i| p.allocate(format!("c{i}"), now).unwrap().address)
        .collect();
    assert_eq!(
        got,
        ["10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6"].map(ip)
    );
    assert_eq!(
        p.allocate("late".into(), now),
        Err(PoolExhausted { size: 5 })
    );
    let s = p.status();
    assert_eq!((s.in_use, s.free, s.exhausted_refusals), (5, 0, 1));
}

#[test]
fn config_errors() {
    let cfg = |prefix: &str, ex: &[&str], secs| PoolConfig {
        prefix: prefix.parse().unwrap(),
        exclude: ex.iter().map(|a| a.parse().unwrap()).collect(),
        lease_time: Duration::from_secs(secs),
    };
    assert_eq!(
        Pool::<u32>::new(cfg("10.0.0.0/24", &["10.0.1.1"], 5)).unwrap_err(),
        PoolError::ExcludedOutside(ip("10.0.1.1"))
    );
    assert!(matches!(
        Pool::<u32>::new(cfg("10.0.0.0/30", &["10.0.0.1", "10.0.0.2"], 5)),
        Err(PoolError::Empty(_))
    ));
    assert_eq!(
        Pool::<u32>::new(cfg("10.0.0.0/24", &[], 0)).unwrap_err(),
        PoolError::ZeroLeaseTime
    );
    // /32 and /31 have no network/broadcast.
    assert_eq!(
        Pool::<u32>::new(cfg("10.0.0.7/32", &[], 5))
            .unwrap()
            .status()
            .size,
        1
    );
    assert_eq!(
        Pool::<u32>::new(cfg("10.0.0.6/31", &[], 5))
            .unwrap()
            .status()
            .size,
        2
    );
}

#[test]
fn same_client_same_lease_and_sticky_after_release() {
    let mut p = pool("192.168.50.0/24", &[]);
    let t = Instant::now();
    let a = p.allocate("alice".into(), t).unwrap();
    let b = p.allocate("bob".into(), t).unwrap();
    // A second allocate while live returns the same address, renewed.
    let a2 = p
        .allocate("alice".into(), t + Duration::from_secs(10))
        .unwrap();
    assert_eq!(a2.address, a.address);
    assert_eq!(a2.expires, t + Duration::from_secs(70));
    assert_eq!(p.status().in_use, 2);
    p.release(&a2).unwrap();
    assert_eq!(p.release(&a2), Err(LeaseError(a.address)));
    // Others get fresh addresses while fresh ones exist; alice gets hers back.
    let c = p.allocate("carol".into(), t).unwrap();
    assert_ne!(c.address, a.address);
    assert_eq!(p.allocate("alice".into(), t).unwrap().address, a.address);
    assert_ne!(b.address, a.address);
}

#[test]
fn reuse_prefers_the_oldest_release_and_forgets_stickiness() {
    let mut p = pool("10.0.0.0/30", &[]); // .1 and .2
    let t = Instant::now();
    let a = p.allocate("a".into(), t).unwrap();
    let b = p.allocate("b".into(), t).unwrap();
    p.release(&a).unwrap();
    p.release(&b).unwrap();
    // c takes a's (released first); a then does not get it back but b keeps its own.
    assert_eq!(p.allocate("c".into(), t).unwrap().address, a.address);
    assert_eq!(p.allocate("b".into(), t).unwrap().address, b.address);
    assert_eq!(p.allocate("a".into(), t), Err(PoolExhausted { size: 2 }));
}

#[test]
fn expiry_frees_dead_clients_and_renew_keeps_live_ones() {
    let mut p = pool("10.1.0.0/24", &[]);
    let t = Instant::now();
    let live = p.allocate("live".into(), t).unwrap();
    let dead = p.allocate("dead".into(), t).unwrap();
    assert_eq!(p.next_expiry(), Some(t + Duration::from_secs(60)));
    let live = p.renew(&live, t + Duration::from_secs(50)).unwrap();
    let gone = p.expire(t + Duration::from_secs(60));
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].client, "dead");
    assert_eq!(gone[0].address, dead.address);
    assert_eq!(p.renew(&dead, t), Err(LeaseError(dead.address)));
    assert_eq!(p.leases(), vec![live.clone()]);
    let s = p.status();
    assert_eq!((s.in_use, s.expirations, s.allocations), (1, 1, 2));
    assert_eq!(p.lease_of(&"live".to_string()), Some(live));
    // A forged lease (right address, wrong client) is refused.
    let mut forged = p.leases()[0].clone();
    forged.client = "mallory".into();
    assert!(p.release(&forged).is_err());
}

#[test]
fn ipv6_pool_is_lazy() {
    let mut p = pool("fd00:1::/64", &["fd00:1::1"]);
    let t = Instant::now();
    assert_eq!(p.status().size, (1u128 << 64) - 2);
    let a = p.allocate("a".into(), t).unwrap();
    assert_eq!(a.address, ip("fd00:1::2"));
    let s = p.status();
    assert_eq!(s.in_use + s.free, s.size);
}

#[derive(Debug, Clone)]
enum Op {
    Allocate(u8),
    Release(u8),
    Renew(u8),
    Advance(u8),
    Expire,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..24).prop_map(Op::Allocate),
        2 => (0u8..24).prop_map(Op::Release),
        1 => (0u8..24).prop_map(Op::Renew),
        1 => (0u8..30).prop_map(Op::Advance),
        1 => Just(Op::Expire),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random allocate/release/renew/expire sequences on a pool smaller than the client
    /// population: no address is ever held by two live leases, no client holds two, no
    /// excluded address is handed out, and in_use + free == size throughout.
    #[test]
    fn never_two_clients_one_address(ops in proptest::collection::vec(op(), 1..200)) {
        let mut p: Pool<u8> = Pool::new(PoolConfig {
            prefix: "10.0.0.0/28".parse().unwrap(),
            exclude: vec![ip("10.0.0.1"), ip("10.0.0.9")],
            lease_time: Duration::from_secs(20),
        }).unwrap();
        let excluded: HashSet<IpAddr> = ["10.0.0.0", "10.0.0.1", "10.0.0.9", "10.0.0.15"].map(ip).into();
        let t0 = Instant::now();
        let mut now = t0;
        // Our model: the leases we were handed and not yet given back or expired.
        let mut held: HashMap<u8, rampart_lease::Lease<u8>> = HashMap::new();
        for op in ops {
            match op {
                Op::Allocate(c) => match p.allocate(c, now) {
                    Ok(lease) => {
                        prop_assert!(!excluded.contains(&lease.address));
                        if let Some(old) = held.get(&c) {
                            prop_assert_eq!(old.address, lease.address);
                        }
                        held.insert(c, lease);
                    }
                    Err(_) => prop_assert_eq!(p.status().free, 0),
                },
                Op::Release(c) => {
                    let r = held.remove(&c).map(|l| p.release(&l));
                    if let Some(r) = r { prop_assert!(r.is_ok()); }
                }
                Op::Renew(c) => {
                    if let Some(l) = held.get(&c).cloned() {
                        let renewed = p.renew(&l, now);
                        prop_assert!(renewed.is_ok());
                        held.insert(c, renewed.unwrap());
                    }
                }
                Op::Advance(s) => now += Duration::from_secs(u64::from(s)),
                Op::Expire => {
                    for gone in p.expire(now) {
                        let mine = held.remove(&gone.client);
                        prop_assert!(mine.is_some());
                        prop_assert!(gone.expires <= now);
                    }
                }
            }
            let live = p.leases();
            let addrs: HashSet<IpAddr> = live.iter().map(|l| l.address).collect();
            let clients: HashSet<u8> = live.iter().map(|l| l.client).collect();
            prop_assert_eq!(addrs.len(), live.len(), "one address, two leases");
            prop_assert_eq!(clients.len(), live.len(), "one client, two leases");
            prop_assert_eq!(live.len(), held.len());
            for l in &live {
                prop_assert_eq!(Some(l), held.get(&l.client));
            }
            let s = p.status();
            prop_assert_eq!(s.size, 12);
            prop_assert_eq!(s.in_use + s.free, s.size, "an address was lost");
        }
    }
}

#[test]
fn transfer_keeps_the_address_under_a_new_client() {
    let mut p = pool("10.9.0.0/29", &[]);
    let now = Instant::now();
    let a = p.allocate("old".into(), now).unwrap();
    let b = p.allocate("other".into(), now).unwrap();
    let moved = p.transfer(&a, "new".into()).unwrap();
    assert_eq!(moved.address, a.address);
    assert_eq!(moved.expires, a.expires);
    assert_eq!(p.lease_of(&"new".to_string()), Some(moved.clone()));
    assert_eq!(p.lease_of(&"old".to_string()), None);
    // The old handle is gone; a taken target is refused.
    assert!(p.transfer(&a, "x".into()).is_err());
    assert!(p.transfer(&moved, "other".into()).is_err());
    let st = p.status();
    assert_eq!((st.in_use, st.allocations, st.releases), (2, 2, 0));
    p.release(&moved).unwrap();
    p.release(&b).unwrap();
    assert_eq!(p.status().in_use, 0);
}

#[test]
fn a_preferred_address_is_taken_only_when_released_and_free() {
    let mut p = pool("10.9.0.0/29", &["10.9.0.6"]);
    let now = Instant::now();
    let a = p.allocate("a".into(), now).unwrap();
    let b = p.allocate("b".into(), now).unwrap();
    // Leased to someone else: not taken.
    let c = p.allocate_preferred("c".into(), a.address, now).unwrap();
    assert_ne!(c.address, a.address);
    // Never handed out, or excluded: the usual order.
    let d = p
        .allocate_preferred("d".into(), ip("10.9.0.6"), now)
        .unwrap();
    assert_eq!(d.address, ip("10.9.0.4"));
    p.release(&a).unwrap();
    p.release(&b).unwrap();
    // Released: a returning client gets it back, even under another key.
    let a2 = p
        .allocate_preferred("a-again".into(), b.address, now)
        .unwrap();
    assert_eq!(a2.address, b.address);
    let st = p.status();
    assert_eq!((st.in_use, st.in_use + st.free), (3, st.size));
}

#[test]
fn claim_takes_exactly_that_address_and_the_cursor_skips_it() {
    let mut p = pool("10.9.0.0/29", &["10.9.0.6"]);
    let now = Instant::now();
    let c = p.claim("c".into(), ip("10.9.0.3"), now).unwrap();
    assert_eq!(c.address, ip("10.9.0.3"));
    // Taken, excluded, outside, network: refused.
    assert!(p.claim("x".into(), ip("10.9.0.3"), now).is_err());
    assert!(p.claim("x".into(), ip("10.9.0.6"), now).is_err());
    assert!(p.claim("x".into(), ip("10.9.1.1"), now).is_err());
    assert!(p.claim("x".into(), ip("10.9.0.0"), now).is_err());
    let st = p.status();
    assert_eq!((st.in_use, st.free), (1, 4));
    let got: Vec<IpAddr> = (0..4)
        .map(|i| p.allocate(format!("n{i}"), now).unwrap().address)
        .collect();
    assert_eq!(
        got,
        ["10.9.0.1", "10.9.0.2", "10.9.0.4", "10.9.0.5"].map(ip)
    );
    assert!(p.allocate("late".into(), now).is_err());
    p.release(&c).unwrap();
    let st = p.status();
    assert_eq!((st.in_use, st.free), (4, 1));
    assert_eq!(
        p.allocate("late".into(), now).unwrap().address,
        ip("10.9.0.3")
    );
    // A released address is claimed back from the free list.
    let mut q = pool("10.9.0.0/29", &[]);
    let a = q.allocate("a".into(), now).unwrap();
    q.release(&a).unwrap();
    assert_eq!(
        q.claim("a2".into(), a.address, now).unwrap().address,
        a.address
    );
    let st = q.status();
    assert_eq!(st.in_use + st.free, st.size);
}
