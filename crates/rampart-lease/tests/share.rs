//! Load Sharing: shares of a pool, reservations of other members' leases, and the property
//! that two members never lease one address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use proptest::prelude::*;
use rampart_lease::{Lease, Pool, PoolConfig, PoolError, PoolStatus, ReserveError, Share};

fn pool(prefix: &str, exclude: &[&str], share: Option<(u32, u32)>) -> Pool<String> {
    let mut p = Pool::new(PoolConfig {
        prefix: prefix.parse().unwrap(),
        exclude: exclude.iter().map(|a| a.parse().unwrap()).collect(),
        lease_time: Duration::from_secs(60),
    })
    .unwrap();
    if let Some((i, n)) = share {
        p.set_share(Some(Share::new(i, n).unwrap())).unwrap();
    }
    p
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// The status invariant: nothing lost, nothing counted twice.
fn balanced(s: PoolStatus) -> bool {
    s.in_use + s.reserved_elsewhere + s.free == s.size + s.outside_share
}

#[test]
fn fresh_addresses_come_from_the_share_only() {
    let now = Instant::now();
    let mut a = pool("10.99.0.0/24", &["10.99.0.1"], Some((0, 2)));
    let mut b = pool("10.99.0.0/24", &["10.99.0.1"], Some((1, 2)));
    assert_eq!(a.share_blocks(), vec![net("10.99.0.0/25")]);
    assert_eq!(b.share_blocks(), vec![net("10.99.0.128/25")]);
    // Member 0 loses the network address and the gateway's, member 1 the broadcast.
    assert_eq!((a.status().size, b.status().size), (126, 127));
    let got: Vec<IpAddr> = (0..126)
        .map(|i| a.allocate(format!("a{i}"), now).unwrap().address)
        .collect();
    assert!(got.iter().all(|x| a.in_share(*x) && !b.in_share(*x)));
    assert_eq!(got[0], ip("10.99.0.2"));
    assert_eq!(got[125], ip("10.99.0.127"));
    assert!(a.allocate("late".into(), now).is_err());
    assert_eq!(
        b.allocate("b0".into(), now).unwrap().address,
        ip("10.99.0.128")
    );
    let s = a.status();
    assert_eq!((s.in_use, s.free, s.exhausted_refusals), (126, 0, 1));
    assert!(balanced(s) && balanced(b.status()));
}

#[test]
fn three_members_own_blocks_i_and_i_plus_n() {
    let now = Instant::now();
    let mut m0 = pool("10.99.0.0/24", &[], Some((0, 3)));
    assert_eq!(
        m0.share_blocks(),
        vec![net("10.99.0.0/26"), net("10.99.0.192/26")]
    );
    assert_eq!(m0.status().size, 63 + 63);
    for i in 0..63 {
        m0.allocate(format!("c{i}"), now).unwrap();
    }
    // The first block is used up: the next address comes from the fourth.
    assert_eq!(
        m0.allocate("next".into(), now).unwrap().address,
        ip("10.99.0.192")
    );
}

#[test]
fn a_pool_too_small_to_split_is_refused() {
    let mut p = pool("10.0.0.0/30", &["10.0.0.1"], None);
    // Two members of a /30: member 0 would get .0 and .1 (network, excluded).
    assert_eq!(
        p.set_share(Some(Share::new(0, 2).unwrap())),
        Err(PoolError::ShareEmpty {
            prefix: net("10.0.0.0/30"),
            index: 0,
            of: 2
        })
    );
    assert_eq!(p.share(), None);
    assert!(p.set_share(Some(Share::new(1, 2).unwrap())).is_ok());
    // More blocks than addresses.
    let mut q = pool("10.0.0.4/31", &[], None);
    assert!(q.set_share(Some(Share::new(2, 3).unwrap())).is_err());
    assert!(Share::new(3, 3).is_err());
}

#[test]
fn reservations_are_never_handed_out_and_a_claim_converts_them() {
    let now = Instant::now();
    let mut a = pool("10.9.0.0/29", &[], Some((0, 2))); // .1 .2 .3
                                                        // Another member leases .2 (inside our share, e.g. an SA it adopted) and .5 (its own).
    a.reserve("b-1".into(), ip("10.9.0.2")).unwrap();
    a.reserve("b-2".into(), ip("10.9.0.5")).unwrap();
    let s = a.status();
    assert_eq!(
        (s.size, s.free, s.reserved_elsewhere, s.outside_share),
        (3, 2, 2, 1)
    );
    assert!(balanced(s));
    let got: Vec<IpAddr> = (0..2)
        .map(|i| a.allocate(format!("a{i}"), now).unwrap().address)
        .collect();
    assert_eq!(got, vec![ip("10.9.0.1"), ip("10.9.0.3")]);
    assert!(a.allocate("late".into(), now).is_err());
    // Preferred, claimed under another key: refused while reserved.
    assert_ne!(
        a.allocate_preferred("p".into(), ip("10.9.0.2"), now)
            .map(|l| l.address),
        Ok(ip("10.9.0.2"))
    );
    assert!(a.claim("x".into(), ip("10.9.0.2"), now).is_err());
    // The same key (the SA adopted here) turns the reservation into a lease.
    let adopted = a.claim("b-2".into(), ip("10.9.0.5"), now).unwrap();
    assert_eq!(adopted.address, ip("10.9.0.5"));
    assert_eq!(a.reservation_of(&"b-2".to_string()), None);
    let s = a.status();
    assert_eq!((s.in_use, s.reserved_elsewhere, s.outside_share), (3, 1, 1));
    assert!(balanced(s));
    // Released outside the share: forgotten, never handed out fresh.
    a.release(&adopted).unwrap();
    assert_eq!(a.status().outside_share, 0);
    // Unreserved inside the share: free again.
    assert_eq!(a.unreserve(ip("10.9.0.2")), Some("b-1".to_string()));
    assert_eq!(a.allocate("c".into(), now).unwrap().address, ip("10.9.0.2"));
    assert!(balanced(a.status()));
}

#[test]
fn reserve_refusals_and_moves() {
    let now = Instant::now();
    let mut a = pool("10.9.0.0/29", &["10.9.0.6"], Some((0, 2)));
    let mine = a.allocate("mine".into(), now).unwrap();
    assert_eq!(
        a.reserve("other".into(), mine.address),
        Err(ReserveError::LeasedHere(mine.address))
    );
    assert_eq!(
        a.reserve("mine".into(), ip("10.9.0.5")),
        Err(ReserveError::LeasedHere(mine.address))
    );
    for bad in ["10.9.0.6", "10.9.0.0", "10.9.0.7", "10.9.1.1"] {
        assert_eq!(
            a.reserve("k".into(), ip(bad)),
            Err(ReserveError::NotInPool(ip(bad)))
        );
    }
    // The other member rekeyed its SA: the new key takes the reservation over.
    a.reserve("old".into(), ip("10.9.0.3")).unwrap();
    a.reserve("new".into(), ip("10.9.0.3")).unwrap();
    assert_eq!(a.unreserve_key(&"old".to_string()), None);
    assert_eq!(a.reservations(), vec![("new".to_string(), ip("10.9.0.3"))]);
    // A key's reservation moves with its address (the old one is free again).
    a.reserve("new".into(), ip("10.9.0.2")).unwrap();
    a.reserve("new".into(), ip("10.9.0.2")).unwrap();
    assert_eq!(a.reservations(), vec![("new".to_string(), ip("10.9.0.2"))]);
    let s = a.status();
    assert_eq!((s.in_use, s.reserved_elsewhere, s.free), (1, 1, 1));
    assert_eq!(a.allocate("x".into(), now).unwrap().address, ip("10.9.0.3"));
    assert_eq!(a.unreserve_key(&"new".to_string()), Some(ip("10.9.0.2")));
    assert!(balanced(a.status()));
}

#[test]
fn a_new_share_keeps_leases_and_reservations() {
    let now = Instant::now();
    let mut a = pool("10.9.0.0/28", &[], None);
    let l1 = a.allocate("one".into(), now).unwrap(); // .1
    let l2 = a.claim("two".into(), ip("10.9.0.12"), now).unwrap();
    a.reserve("far".into(), ip("10.9.0.13")).unwrap();
    a.set_share(Some(Share::new(1, 2).unwrap())).unwrap();
    let s = a.status();
    // .8 ... .14: 7 usable, .12 leased and .13 reserved; .1 is outside the share now.
    assert_eq!(
        (
            s.size,
            s.in_use,
            s.reserved_elsewhere,
            s.free,
            s.outside_share
        ),
        (7, 2, 1, 5, 1)
    );
    assert!(balanced(s));
    let got: Vec<IpAddr> = (0..5)
        .map(|i| a.allocate(format!("n{i}"), now).unwrap().address)
        .collect();
    assert_eq!(
        got,
        [
            "10.9.0.8",
            "10.9.0.9",
            "10.9.0.10",
            "10.9.0.11",
            "10.9.0.14"
        ]
        .map(ip)
    );
    assert!(a.allocate("late".into(), now).is_err());
    a.release(&l1).unwrap();
    a.release(&l2).unwrap();
    assert_eq!(a.allocate("late".into(), now).unwrap().address, l2.address);
    assert!(balanced(a.status()));
}

#[test]
fn ipv6_shares_stay_lazy() {
    let now = Instant::now();
    let mut a = pool("fd00:1::/64", &["fd00:1::1"], Some((0, 2)));
    let mut b = pool("fd00:1::/64", &["fd00:1::1"], Some((1, 2)));
    assert_eq!(a.status().size, (1u128 << 63) - 2);
    assert_eq!(b.status().size, 1u128 << 63);
    assert_eq!(b.share_blocks(), vec![net("fd00:1::8000:0:0:0/65")]);
    let x = b.allocate("x".into(), now).unwrap();
    assert_eq!(x.address, ip("fd00:1::8000:0:0:0"));
    a.reserve("x".into(), x.address).unwrap();
    a.reserve("y".into(), ip("fd00:1::5")).unwrap();
    assert_eq!(
        a.allocate("a".into(), now).unwrap().address,
        ip("fd00:1::2")
    );
    let s = a.status();
    assert!(balanced(s));
    assert_eq!((s.reserved_elsewhere, s.outside_share), (2, 1));
}

#[derive(Debug, Clone)]
enum Op {
    /// Member `m` leases an address to client `c` (preferring the address offset `p`).
    Allocate {
        m: usize,
        c: u8,
        prefer: Option<u8>,
    },
    Release(u8),
    /// Member `m` adopts client `c` from the other member (which forgets it).
    Adopt {
        m: usize,
        c: u8,
    },
    /// Member `m` restarts: the other adopts every client of `m`, then `m` comes back with
    /// an empty pool and reserves what the full sync tells it.
    Restart(usize),
    Advance(u8),
    Expire,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0usize..2, 0u8..24, proptest::option::of(0u8..16))
            .prop_map(|(m, c, prefer)| Op::Allocate { m, c, prefer }),
        2 => (0u8..24).prop_map(Op::Release),
        2 => (0usize..2, 0u8..24).prop_map(|(m, c)| Op::Adopt { m, c }),
        1 => (0usize..2).prop_map(Op::Restart),
        1 => (0u8..30).prop_map(Op::Advance),
        1 => Just(Op::Expire),
    ]
}

fn member(m: u32) -> Pool<u8> {
    let mut p = Pool::new(PoolConfig {
        prefix: "10.0.0.0/28".parse().unwrap(),
        exclude: vec!["10.0.0.1".parse().unwrap(), "10.0.0.9".parse().unwrap()],
        lease_time: Duration::from_secs(20),
    })
    .unwrap();
    p.set_share(Some(Share::new(m, 2).unwrap())).unwrap();
    p
}

/// What the other member learns of a lease (its sync): reserve it; a refusal would mean both
/// members lease the address.
fn mirror(other: &mut Pool<u8>, lease: &Lease<u8>) -> Result<(), TestCaseError> {
    let r = other.reserve(lease.client, lease.address);
    prop_assert_eq!(r, Ok(()), "the other member refused to reserve {:?}", lease);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Two members with shares 0/2 and 1/2 of one pool, each reserving the other's leases as
    /// its sync reports them: no address is ever leased by both, fresh addresses come from
    /// the allocating member's share, adoption keeps the address, and every pool's status
    /// balances throughout.
    #[test]
    fn two_members_never_lease_one_address(ops in proptest::collection::vec(op(), 1..200)) {
        let mut pools = [member(0), member(1)];
        let t0 = Instant::now();
        let mut now = t0;
        // The model: which member holds each client's lease.
        let mut held: HashMap<u8, (usize, Lease<u8>)> = HashMap::new();
        for op in ops {
            match op {
                Op::Allocate { m, c, prefer } => {
                    if held.contains_key(&c) {
                        continue;
                    }
                    let got = match prefer {
                        Some(p) => pools[m].allocate_preferred(
                            c, IpAddr::from([10, 0, 0, p]), now),
                        None => pools[m].allocate(c, now),
                    };
                    match got {
                        Ok(lease) => {
                            prop_assert!(pools[m].in_share(lease.address), "{:?} outside the share", lease);
                            mirror(&mut pools[1 - m], &lease)?;
                            held.insert(c, (m, lease));
                        }
                        Err(_) => prop_assert_eq!(pools[m].status().free, 0),
                    }
                }
                Op::Release(c) => {
                    if let Some((m, lease)) = held.remove(&c) {
                        prop_assert!(pools[m].release(&lease).is_ok());
                        prop_assert_eq!(pools[1 - m].unreserve_key(&c), Some(lease.address));
                    }
                }
                Op::Adopt { m, c } => {
                    let Some((o, lease)) = held.get(&c).cloned() else { continue };
                    if o == m {
                        continue;
                    }
                    prop_assert!(pools[o].release(&lease).is_ok());
                    let adopted = pools[m].claim(c, lease.address, now);
                    prop_assert_eq!(adopted.as_ref().map(|l| l.address), Ok(lease.address));
                    let adopted = adopted.unwrap();
                    mirror(&mut pools[o], &adopted)?;
                    held.insert(c, (m, adopted));
                }
                Op::Restart(m) => {
                    let o = 1 - m;
                    let mine: Vec<(u8, Lease<u8>)> = held
                        .iter()
                        .filter(|(_, (h, _))| *h == m)
                        .map(|(c, (_, l))| (*c, l.clone()))
                        .collect();
                    for (c, lease) in mine {
                        let adopted = pools[o].claim(c, lease.address, now);
                        prop_assert_eq!(adopted.as_ref().map(|l| l.address), Ok(lease.address));
                        held.insert(c, (o, adopted.unwrap()));
                    }
                    pools[m] = member(m as u32);
                    for (_, lease) in held.values() {
                        mirror(&mut pools[m], lease)?;
                    }
                }
                Op::Advance(s) => now += Duration::from_secs(u64::from(s)),
                Op::Expire => {
                    for m in 0..2 {
                        for gone in pools[m].expire(now) {
                            let mine = held.remove(&gone.client);
                            prop_assert_eq!(mine.map(|(h, l)| (h, l.address)), Some((m, gone.address)));
                            prop_assert_eq!(pools[1 - m].unreserve_key(&gone.client), Some(gone.address));
                        }
                    }
                }
            }
            let leased: Vec<Vec<IpAddr>> = pools
                .iter()
                .map(|p| p.leases().iter().map(|l| l.address).collect())
                .collect();
            for a in &leased[0] {
                prop_assert!(!leased[1].contains(a), "{} leased by both members", a);
            }
            prop_assert_eq!(leased[0].len() + leased[1].len(), held.len());
            for (m, p) in pools.iter().enumerate() {
                let s = p.status();
                prop_assert!(balanced(s), "member {}: {:?}", m, s);
                prop_assert_eq!(s.size, [6, 6][m]);
                // Every lease of the other member is reserved here, and nothing else.
                let theirs: Vec<(u8, IpAddr)> = {
                    let mut v: Vec<(u8, IpAddr)> = held
                        .iter()
                        .filter(|(_, (h, _))| *h != m)
                        .map(|(c, (_, l))| (*c, l.address))
                        .collect();
                    v.sort_by_key(|(_, a)| *a);
                    v
                };
                prop_assert_eq!(p.reservations(), theirs);
            }
        }
    }
}
