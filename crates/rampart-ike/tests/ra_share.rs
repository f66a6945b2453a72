//! Load Sharing Office Mode pools in the engine: each member hands out fresh addresses from
//! its share only, reserves the other members' leases (also in pools added later), an
//! adopted SA's import turns its reservation into a lease with the same address, and a
//! client that reconnects with INITIAL_CONTACT takes its reserved address over from another
//! member's SA of the same identity (and only of the same identity).

mod util;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnet::IpNet;
use rampart_crypto::Rng;
use rampart_ike::policy::ClientAuth;
use rampart_ike::Ike;
use rampart_lease::{ReserveError, Share};
use util::ra::*;
use util::*;

/// A remote-access network whose gateway is Load Sharing member `member_id`, member `index`
/// of two.
fn member(member_id: u16, index: u32) -> RaNet {
    let mut net = RaNet::new(gateway_policy(POOL, ClientAuth::Peer));
    let mut cfg = ike_config("10.2.0.0/16", gateway_policy(POOL, ClientAuth::Peer));
    cfg.ike.member_id = member_id;
    let (mut ike, peer) = engine(cfg, 100 + member_id as u8);
    assert!(ike
        .set_lease_share(Some(Share::new(index, 2).unwrap()))
        .is_empty());
    net.nodes[0].ike = ike;
    net.nodes[0].peer = peer;
    net
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn in_half(a: IpAddr, half: &str) -> bool {
    net(half).contains(&a)
}

#[test]
fn members_lease_from_their_shares_and_an_adopted_sa_keeps_its_address() {
    let mut a = member(1, 0);
    let mut b = member(2, 1);
    let ca = a.connect(client_policy("192.0.2.1", None));
    let cb = b.connect(client_policy("192.0.2.2", None));
    a.run(Duration::from_secs(2));
    b.run(Duration::from_secs(2));
    let va = a.virtual_ip(ca).unwrap();
    let vb = b.virtual_ip(cb).unwrap();
    assert!(in_half(va, "10.99.0.0/25"), "{va}");
    assert!(in_half(vb, "10.99.0.128/25"), "{vb}");
    let pa = a.nodes[0].peer;
    assert_eq!(
        a.gw().ra_pool_share(pa),
        Some((Share::new(0, 2).unwrap(), vec![net("10.99.0.0/25")]))
    );
    // Each member learns the other's lease (its replica) and reserves it.
    let sa_a = a.gw().ra_leases()[0].ike_sa;
    let sa_b = b.gw().ra_leases()[0].ike_sa;
    assert_ne!(sa_a, sa_b);
    a.gw()
        .reserve_remote_lease("remote-access", sa_b, vb, "client.example")
        .unwrap();
    b.gw()
        .reserve_remote_lease("remote-access", sa_a, va, "client.example")
        .unwrap();
    let st = b.gw().ra_pools()[0].1;
    assert_eq!(
        (st.size, st.in_use, st.reserved_elsewhere, st.outside_share),
        (127, 1, 1, 1)
    );
    assert_eq!(b.gw().remote_leases(), vec![(sa_a, va)]);
    // A conflicting reservation (an address this member leases) is refused.
    assert_eq!(
        b.gw().reserve_remote_lease(
            "remote-access",
            rampart_ike::IkeSaId(99),
            vb,
            "client.example"
        ),
        Err(ReserveError::LeasedHere(vb))
    );
    b.gw().release_remote_lease(rampart_ike::IkeSaId(99));

    // Member A dies: B adopts A's SA, the reservation becomes the lease, same address.
    let now = a.now.max(b.now);
    let st = a.gw().export_sa(now, sa_a).unwrap();
    let id = b.gw().import_sa(now, st).unwrap();
    assert_eq!(id, sa_a);
    let leases = b.gw().ra_leases();
    assert_eq!(leases.len(), 2);
    assert!(leases.iter().any(|l| (l.ike_sa, l.address) == (sa_a, va)));
    let st = b.gw().ra_pools()[0].1;
    assert_eq!(
        (st.in_use, st.reserved_elsewhere, st.outside_share),
        (2, 0, 1)
    );
    assert!(b.gw().remote_leases().is_empty());
    // The adopted client leaves: the address is forgotten (it is A's share), not reused.
    assert!(b.gw().forget_sa(sa_a));
    let st = b.gw().ra_pools()[0].1;
    assert_eq!((st.in_use, st.outside_share, st.free), (1, 0, 126));
}

#[test]
fn a_reserved_address_is_not_handed_to_a_client_asking_for_it() {
    let mut b = member(2, 1);
    let first = b.connect(client_policy("192.0.2.1", None));
    b.run(Duration::from_secs(2));
    let v1 = b.virtual_ip(first).unwrap();
    let sa = b.gw().ra_leases()[0].ike_sa;
    // The client goes, and another member now leases its old address to a client of
    // another identity (e.g. it adopted an SA): INITIAL_CONTACT does not take that.
    assert!(b.gw().forget_sa(sa));
    b.gw()
        .reserve_remote_lease(
            "remote-access",
            rampart_ike::IkeSaId(7 << 48 | 1),
            v1,
            "someone-else.example",
        )
        .unwrap();
    let mut pc = client_policy("192.0.2.9", None);
    pc.name = "office".into();
    let (mut ike, peer) = engine(ike_config("10.1.0.0/16", pc), 9);
    let IpAddr::V4(v1_4) = v1 else { unreachable!() };
    ike.prefer_virtual_address(peer, v1_4);
    ike.initiate(b.now, peer);
    let c = b.add_node("192.0.2.9".parse().unwrap(), ike, peer);
    b.run(Duration::from_secs(2));
    let v2 = b.virtual_ip(c).unwrap();
    assert_ne!(v2, v1);
    assert!(in_half(v2, "10.99.0.128/25"), "{v2}");
    // Released: the next client asking for it gets it.
    assert_eq!(
        b.gw()
            .release_remote_lease(rampart_ike::IkeSaId(7 << 48 | 1)),
        Some(v1)
    );
    let st = b.gw().ra_pools()[0].1;
    assert_eq!(st.in_use + st.free, st.size);
}

#[test]
fn share_and_reservations_apply_to_pools_added_later() {
    let mut cfg = ike_config("10.2.0.0/16", gateway_policy(POOL, ClientAuth::Peer));
    cfg.ike.member_id = 3;
    let mut ike = Ike::new(cfg.ike, Rng::from_seed([3; 32]));
    assert!(ike
        .set_lease_share(Some(Share::new(1, 3).unwrap()))
        .is_empty());
    let theirs: IpAddr = Ipv4Addr::new(10, 99, 0, 70).into();
    ike.reserve_remote_lease(
        "remote-access",
        rampart_ike::IkeSaId(1 << 48 | 5),
        theirs,
        "client.example",
    )
    .unwrap();
    // The template arrives (a reload): its pool has the share and the reservation.
    let peer = ike.add_peer(cfg.peers.remove(0));
    assert_eq!(
        ike.ra_pool_share(peer).map(|(_, b)| b),
        Some(vec![net("10.99.0.64/26")])
    );
    let st = ike.ra_pools()[0].1;
    assert_eq!(
        (st.size, st.free, st.reserved_elsewhere, st.outside_share),
        (64, 63, 1, 0)
    );
    // Removed and added again: still there.
    let policy = ike.remove_peer(std::time::Instant::now(), peer).unwrap();
    let peer = ike.add_peer(policy);
    assert_eq!(ike.ra_pools()[0].1.reserved_elsewhere, 1);
    // Back to whole pools (high availability): the reservation stays.
    assert!(ike.set_lease_share(None).is_empty());
    assert_eq!(ike.ra_pool_share(peer), None);
    let st = ike.ra_pools()[0].1;
    assert_eq!((st.size, st.free, st.reserved_elsewhere), (254, 253, 1));
}

#[test]
fn a_pool_too_small_for_the_share_is_reported() {
    let (mut ike, peer) = engine(
        ike_config(
            "10.2.0.0/16",
            gateway_policy("10.99.0.0/30", ClientAuth::Peer),
        ),
        5,
    );
    let refused = ike.set_lease_share(Some(Share::new(0, 4).unwrap()));
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].0, peer);
    assert!(
        refused[0].1.to_string().contains("too small"),
        "{}",
        refused[0].1
    );
}

#[test]
fn a_lease_both_members_hold_is_reserved_once_the_one_here_ends() {
    let mut b = member(2, 1);
    let c = b.connect(client_policy("192.0.2.1", None));
    b.run(Duration::from_secs(2));
    let v = b.virtual_ip(c).unwrap();
    let sa = b.gw().ra_leases()[0].ike_sa;
    // Another member claims to lease the same address (a conflict): refused while it lives.
    let theirs = rampart_ike::IkeSaId(1 << 48 | 9);
    assert_eq!(
        b.gw()
            .reserve_remote_lease("remote-access", theirs, v, "client.example"),
        Err(ReserveError::LeasedHere(v))
    );
    assert_eq!(b.gw().ra_pools()[0].1.reserved_elsewhere, 0);
    // The client here goes: the other member's lease is reserved at once.
    assert!(b.gw().forget_sa(sa));
    let st = b.gw().ra_pools()[0].1;
    assert_eq!((st.in_use, st.reserved_elsewhere), (0, 1));
    assert_eq!(b.gw().release_remote_lease(theirs), Some(v));
    assert_eq!(b.gw().ra_pools()[0].1.reserved_elsewhere, 0);
}

/// A fresh client engine (INITIAL_CONTACT) asking for `prefer`, connected to `net`'s gateway.
fn reconnect(net: &mut RaNet, from: &str, prefer: IpAddr, seed: u8) -> usize {
    let (mut ike, peer) = engine(ike_config("10.1.0.0/16", client_policy(from, None)), seed);
    let IpAddr::V4(v4) = prefer else {
        panic!("IPv4 pool")
    };
    ike.prefer_virtual_address(peer, v4);
    ike.initiate(net.now, peer);
    net.add_node(from.parse().unwrap(), ike, peer)
}

#[test]
fn initial_contact_takes_over_another_members_reservation_of_the_same_identity() {
    let mut b = member(2, 1);
    // Member A (index 0) leases 10.99.0.5 to `client.example` under its SA `theirs`.
    let x: IpAddr = Ipv4Addr::new(10, 99, 0, 5).into();
    let theirs = rampart_ike::IkeSaId(1 << 48 | 3);
    b.gw()
        .reserve_remote_lease("remote-access", theirs, x, "client.example")
        .unwrap();
    let st = b.gw().ra_pools()[0].1;
    assert_eq!((st.reserved_elsewhere, st.outside_share), (1, 1));

    // The client reconnects at B with a new engine (INITIAL_CONTACT), asking for x: it gets
    // it, though it lies in A's share.
    let c = reconnect(&mut b, "192.0.2.1", x, 31);
    b.run(Duration::from_secs(2));
    assert_eq!(b.virtual_ip(c), Some(x));
    let leases = b.gw().ra_leases();
    assert_eq!(leases.len(), 1);
    assert_eq!(
        (leases[0].address, leases[0].client.as_str()),
        (x, "client.example")
    );
    let st = b.gw().ra_pools()[0].1;
    assert_eq!(
        (st.in_use, st.reserved_elsewhere, st.outside_share, st.free),
        (1, 0, 1, 127)
    );
    assert_eq!(
        st.in_use + st.reserved_elsewhere + st.free,
        st.size + st.outside_share
    );
    // A's SA is still known until its replica goes, holding no reservation here.
    assert_eq!(b.gw().remote_leases(), vec![(theirs, x)]);
    // A deletes its SA (it saw the move): nothing changes for the lease here.
    assert_eq!(b.gw().release_remote_lease(theirs), Some(x));
    assert_eq!(b.gw().ra_leases()[0].address, x);
    assert_eq!(b.gw().ra_pools()[0].1.in_use, 1);
}

#[test]
fn a_moved_client_is_removed_from_the_member_it_left_and_its_address_reserved() {
    let mut a = member(1, 0);
    let c = a.connect(client_policy("192.0.2.1", None));
    a.run(Duration::from_secs(2));
    let x = a.virtual_ip(c).unwrap();
    let mine = a.gw().ra_leases()[0].ike_sa;
    // B's replica: the same identity leases x there now (it reconnected at B).
    let theirs = rampart_ike::IkeSaId(2 << 48 | 4);
    assert_eq!(
        a.gw()
            .reserve_remote_lease("remote-access", theirs, x, "client.example"),
        Err(ReserveError::LeasedHere(x))
    );
    // Another identity's claim on x is a conflict: nothing is removed.
    assert_eq!(
        a.gw()
            .ra_client_moved("remote-access", theirs, x, "someone-else.example"),
        None
    );
    assert_eq!(a.gw().ra_leases().len(), 1);
    // The same identity: the client moved; the SA here goes, x is B's reservation now.
    assert_eq!(
        a.gw()
            .ra_client_moved("remote-access", theirs, x, "client.example"),
        Some(mine)
    );
    assert!(a.gw().ra_leases().is_empty());
    let st = a.gw().ra_pools()[0].1;
    assert_eq!((st.in_use, st.reserved_elsewhere, st.free), (0, 1, 126));
    assert_eq!(a.gw().remote_leases(), vec![(theirs, x)]);
    // Not handed out while reserved.
    let d = a.connect(client_policy("192.0.2.2", None));
    a.run(Duration::from_secs(2));
    assert_ne!(a.virtual_ip(d), Some(x));
}
