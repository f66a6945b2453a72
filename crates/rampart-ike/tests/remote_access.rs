//! Remote access between engines: the configuration payload (Office Mode address, DNS, split
//! tunnel) with PSK and certificates, EAP-MSCHAPv2 inside IKE_AUTH, pool exhaustion, lease
//! release on delete and dead peer, no lease leak over many clients, small first proposal.

mod util;

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rampart_ike::policy::{ClientAuth, PeerAuth, PeerPolicy};
use rampart_ike::{DownReason, IkeEvent};
use rampart_pki::ca::{Algorithm, Ca, San, Validity};
use rampart_pki::{CertAuth, Credentials, PrivateKey, TrustStore, WallClock};
use rampart_wire::ike::{exchange, parse, Payload};
use util::ra::*;
use util::*;

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn position(events: &[IkeEvent], f: impl Fn(&IkeEvent) -> bool) -> Option<usize> {
    events.iter().position(f)
}

fn leases_assigned(events: &[IkeEvent]) -> Vec<(String, IpAddr)> {
    events
        .iter()
        .filter_map(|e| match e {
            IkeEvent::LeaseAssigned {
                client, address, ..
            } => Some((client.clone(), *address)),
            _ => None,
        })
        .collect()
}

fn released(events: &[IkeEvent]) -> Vec<IpAddr> {
    events
        .iter()
        .filter_map(|e| match e {
            IkeEvent::LeaseReleased { address, .. } => Some(*address),
            _ => None,
        })
        .collect()
}

/// The client gets its address, DNS, domain and routes before its CHILD SA, whose selectors
/// are the address and the routes; the gateway reports the lease and releases it on delete.
fn check_office_mode(mut net: RaNet, client: usize, who: &str) {
    net.run(Duration::from_secs(3));
    let ev = &net.nodes[client].events;
    let vip = position(ev, |e| matches!(e, IkeEvent::VirtualIp { .. })).expect("VirtualIp");
    let up = position(ev, |e| matches!(e, IkeEvent::ChildSaUp(_))).expect("ChildSaUp");
    assert!(vip < up, "VirtualIp before the first ChildSaUp: {ev:#?}");
    let IkeEvent::VirtualIp { reply, .. } = &ev[vip] else {
        unreachable!()
    };
    assert_eq!(
        reply.ip4_addresses,
        vec!["10.99.0.1".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    assert_eq!(
        reply.ip4_netmask,
        Some("255.255.255.0".parse::<std::net::Ipv4Addr>().unwrap())
    );
    assert_eq!(
        reply.ip4_dns,
        vec!["10.2.0.53".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    assert_eq!(reply.dns_domains, vec!["corp.example".to_string()]);
    assert_eq!(
        reply.ip4_subnets,
        vec!["10.2.0.0/16".parse::<ipnet::Ipv4Net>().unwrap()]
    );
    let IkeEvent::ChildSaUp(k) = &ev[up] else {
        unreachable!()
    };
    assert_eq!(
        format!("{:?}", k.local_ts),
        format!("{:?}", gw_ts("10.99.0.1/32"))
    );
    assert_eq!(
        format!("{:?}", k.remote_ts),
        format!("{:?}", gw_ts("10.2.0.0/16"))
    );
    let gw_events = &net.nodes[0].events;
    assert_eq!(
        leases_assigned(gw_events),
        vec![(who.to_string(), addr("10.99.0.1"))]
    );
    let leases = net.nodes[0].ike.ra_leases();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].address, addr("10.99.0.1"));
    assert_eq!(leases[0].client, who);
    assert_eq!(leases[0].remote.ip(), net.nodes[client].ip);
    let pools = net.nodes[0].ike.ra_pools();
    assert_eq!(pools.len(), 1);
    assert_eq!((pools[0].1.size, pools[0].1.in_use), (254, 1));
    // The client disconnects: the address goes back.
    let ike_sa = net.nodes[client].ike.status(net.now)[0].ike_sa;
    let now = net.now;
    net.nodes[client].ike.delete_ike_sa(now, ike_sa);
    net.run(Duration::from_secs(2));
    assert_eq!(released(&net.nodes[0].events), vec![addr("10.99.0.1")]);
    assert!(net.nodes[0].ike.ra_leases().is_empty());
    assert_eq!(net.nodes[0].ike.ra_pools()[0].1.in_use, 0);
}

fn gw_ts(net: &str) -> Vec<rampart_wire::ike::TrafficSelector> {
    vec![rampart_wire::ike::TrafficSelector::from_net(
        &net.parse().unwrap(),
    )]
}

#[test]
fn office_mode_with_psk() {
    let mut net = RaNet::new(gateway_policy(POOL, ClientAuth::Peer));
    let c = net.connect(client_policy("192.0.2.1", None));
    check_office_mode(net, c, "client.example");
}

const NOW: u64 = 1_800_000_000;

fn cert_auth(ca: &Ca, chain: Vec<Vec<u8>>, key_pem: &str) -> PeerAuth {
    PeerAuth::Cert(Box::new(CertAuth {
        credentials: Credentials::new(chain, PrivateKey::from_pem(key_pem.as_bytes()).unwrap())
            .unwrap(),
        trust: TrustStore::new(vec![ca.cert.cert_der.clone()], vec![]).unwrap(),
        rsa_pss: false,
        clock: WallClock {
            at: Instant::now(),
            unix: NOW,
        },
    }))
}

/// A root CA and a gateway template (`client_auth`) authenticating with a certificate from it
/// (`gw.example`); also the validity the tests issue client certificates with.
fn cert_gateway(client_auth: ClientAuth) -> (Ca, PeerPolicy, Validity) {
    let year = Validity::days_from(NOW as i64, 365);
    let root = Ca::new_root("RA Root", Algorithm::EcdsaP256, year).unwrap();
    let gw = root
        .issue(
            "gw",
            &[San::Dns("gw.example".into())],
            Algorithm::EcdsaP256,
            year,
        )
        .unwrap();
    let mut g = gateway_policy(POOL, client_auth);
    g.auth = cert_auth(&root, vec![gw.cert_der], &gw.key_pem);
    g.psk = Vec::new().into();
    (root, g, year)
}

#[test]
fn office_mode_with_certificates() {
    let (root, g, year) = cert_gateway(ClientAuth::Peer);
    let cl = root
        .issue(
            "client",
            &[San::Dns("client.example".into())],
            Algorithm::EcdsaP256,
            year,
        )
        .unwrap();
    let mut c = client_policy("192.0.2.1", None);
    c.auth = cert_auth(&root, vec![cl.cert_der], &cl.key_pem);
    c.psk = Vec::new().into();
    let mut net = RaNet::new(g);
    let i = net.connect(c);
    check_office_mode(net, i, "client.example");
}

#[test]
fn eap_mschapv2_success() {
    let mut net = RaNet::new(gateway_policy(POOL, ClientAuth::EapMschapv2(users())));
    let c = net.connect(client_policy("192.0.2.1", Some(("alice", "wonderland"))));
    check_office_mode(net, c, "alice");
}

#[test]
fn eap_mschapv2_with_a_certificate_gateway() {
    let (root, g, _) = cert_gateway(ClientAuth::EapMschapv2(users()));
    // The client holds only the CA: it verifies the gateway's certificate, EAP proves itself.
    let mut c = client_policy("192.0.2.1", Some(("alice", "wonderland")));
    c.auth = PeerAuth::Verify(Box::new(rampart_ike::policy::CertVerify {
        trust: TrustStore::new(vec![root.cert.cert_der.clone()], vec![]).unwrap(),
        clock: WallClock {
            at: Instant::now(),
            unix: NOW,
        },
    }));
    c.psk = Vec::new().into();
    let mut net = RaNet::new(g);
    let i = net.connect(c);
    check_office_mode(net, i, "alice");
}

#[test]
fn eap_mschapv2_wrong_password() {
    let mut net = RaNet::new(gateway_policy(POOL, ClientAuth::EapMschapv2(users())));
    let c = net.connect(client_policy("192.0.2.1", Some(("alice", "looking-glass"))));
    net.run(Duration::from_secs(3));
    for i in [0, c] {
        let ev = &net.nodes[i].events;
        assert!(
            ev.iter().any(|e| matches!(
                e,
                IkeEvent::IkeSaDown {
                    reason: DownReason::AuthenticationFailed,
                    ..
                }
            )),
            "node {i}: {ev:#?}"
        );
        assert!(!ev.iter().any(|e| matches!(e, IkeEvent::ChildSaUp(_))));
        assert!(!ev.iter().any(|e| matches!(e, IkeEvent::VirtualIp { .. })));
    }
    assert!(leases_assigned(&net.nodes[0].events).is_empty());
    assert_eq!(net.nodes[0].ike.ra_pools()[0].1.in_use, 0);
}

#[test]
fn eap_gateway_refuses_a_client_without_eap() {
    let mut net = RaNet::new(gateway_policy(POOL, ClientAuth::EapMschapv2(users())));
    let c = net.connect(client_policy("192.0.2.1", None));
    net.run(Duration::from_secs(3));
    assert!(net.nodes[c].events.iter().any(|e| matches!(
        e,
        IkeEvent::IkeSaDown {
            reason: DownReason::AuthenticationFailed,
            ..
        }
    )));
    assert_eq!(net.live_children(c), 0);
}

#[test]
fn exhausted_pool_refuses_with_internal_address_failure() {
    // A /30 holds two client addresses.
    let mut net = RaNet::new(gateway_policy("10.99.0.0/30", ClientAuth::Peer));
    let a = net.connect(client_policy("192.0.2.1", None));
    let b = net.connect(client_policy("192.0.2.2", None));
    net.run(Duration::from_secs(2));
    let c = net.connect(client_policy("192.0.2.3", None));
    net.run(Duration::from_secs(3));
    assert_eq!(net.live_children(a), 1);
    assert_eq!(net.live_children(b), 1);
    assert_ne!(net.virtual_ip(a), net.virtual_ip(b));
    // The third client: no address, no CHILD SA, its IKE SA deleted by the gateway.
    assert_eq!(net.virtual_ip(c), None);
    assert_eq!(net.live_children(c), 0);
    assert!(net.nodes[c].events.iter().any(|e| matches!(
        e,
        IkeEvent::IkeSaDown {
            reason: DownReason::DeletedByPeer,
            ..
        }
    )));
    let gw = &net.nodes[0].events;
    assert_eq!(
        gw.iter()
            .filter(|e| matches!(e, IkeEvent::PoolExhausted { client, .. } if client == "client.example"))
            .count(),
        1
    );
    let st = net.nodes[0].ike.ra_pools()[0].1;
    assert_eq!((st.size, st.in_use, st.exhausted_refusals), (2, 2, 1));
    assert_eq!(net.nodes[0].ike.status(net.now).len(), 2);
}

#[test]
fn dead_client_releases_its_address() {
    let mut net = RaNet::new(gateway_policy(POOL, ClientAuth::Peer));
    let c = net.connect(client_policy("192.0.2.1", None));
    net.run(Duration::from_secs(2));
    assert_eq!(net.nodes[0].ike.ra_leases().len(), 1);
    net.nodes[c].dead = true;
    // Liveness (30 s) plus its retransmissions.
    net.run(Duration::from_secs(120));
    assert!(net.nodes[0]
        .events
        .iter()
        .any(|e| matches!(e, IkeEvent::PeerDead { .. })));
    assert_eq!(released(&net.nodes[0].events), vec![addr("10.99.0.1")]);
    assert!(net.nodes[0].ike.ra_leases().is_empty());
}

#[test]
fn lease_survives_ike_rekey_and_is_renewed() {
    let mut net = RaNet::new(gateway_policy(POOL, ClientAuth::Peer));
    let c = net.connect(client_policy("192.0.2.1", None));
    net.run(Duration::from_secs(2));
    let old = net.nodes[0].ike.ra_leases()[0].clone();
    let now = net.now;
    net.nodes[0].ike.rekey_ike(now, old.ike_sa);
    net.run(Duration::from_secs(2));
    let new = net.nodes[0].ike.ra_leases();
    assert_eq!(new.len(), 1);
    assert_ne!(
        new[0].ike_sa, old.ike_sa,
        "the lease moved to the new IKE SA"
    );
    assert_eq!(new[0].address, old.address);
    assert!(released(&net.nodes[0].events).is_empty());
    // Renewed while the SA lives: far past the 600 s lease time, still held.
    net.run(Duration::from_secs(1900));
    assert_eq!(net.nodes[0].ike.ra_leases().len(), 1);
    assert_eq!(net.live_children(c), 1);
    let st = net.nodes[0].ike.ra_pools()[0].1;
    assert_eq!((st.in_use, st.expirations, st.releases), (1, 0, 0));
}

#[test]
fn two_hundred_sequential_clients_leak_nothing() {
    // A pool of 14 addresses serves 200 clients one after another.
    let mut net = RaNet::new(gateway_policy("10.99.0.0/28", ClientAuth::Peer));
    for i in 0..200u32 {
        let a = format!("192.0.{}.{}", 2 + i / 250, 1 + i % 250);
        let c = net.connect(client_policy(&a, None));
        net.run(Duration::from_millis(200));
        assert!(net.virtual_ip(c).is_some(), "client {i}");
        assert_eq!(net.live_children(c), 1);
        let id = net.nodes[c].ike.status(net.now)[0].ike_sa;
        let now = net.now;
        net.nodes[c].ike.delete_ike_sa(now, id);
        net.run(Duration::from_millis(200));
        net.nodes.truncate(1);
    }
    let st = net.nodes[0].ike.ra_pools()[0].1;
    assert_eq!(
        (st.in_use, st.free, st.allocations, st.releases),
        (0, 14, 200, 200)
    );
    assert!(net.nodes[0].ike.status(net.now).is_empty());
    assert!(net.nodes[0].ike.ra_leases().is_empty());
}

#[derive(Debug, Clone)]
enum Op {
    Connect(u8),
    Delete(u8),
    Vanish(u8),
    Wait(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..8).prop_map(Op::Connect),
        2 => (0u8..8).prop_map(Op::Delete),
        1 => (0u8..8).prop_map(Op::Vanish),
        1 => (1u16..90).prop_map(Op::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever clients do (connect, disconnect, vanish, reconnect), no two live SAs of the
    /// gateway hold one address, every lease belongs to a live SA, and the pool loses nothing.
    #[test]
    fn no_two_live_sas_share_an_address(ops in proptest::collection::vec(op(), 1..24)) {
        // Six addresses for eight clients: exhaustion happens too.
        let mut net = RaNet::new(gateway_policy("10.99.0.0/29", ClientAuth::Peer));
        let mut slot: Vec<Option<usize>> = vec![None; 8];
        for op in ops {
            match op {
                Op::Connect(k) => {
                    let fresh = slot[k as usize]
                        .is_none_or(|i| net.nodes[i].dead || net.nodes[i].ike.status(net.now).is_empty());
                    if fresh {
                        if let Some(i) = slot[k as usize] {
                            net.nodes[i].dead = true;
                        }
                        slot[k as usize] = Some(net.connect(client_policy(&format!("192.0.2.{}", k + 1), None)));
                    }
                }
                Op::Delete(k) => {
                    if let Some(i) = slot[k as usize].filter(|i| !net.nodes[*i].dead) {
                        let now = net.now;
                        let ids: Vec<_> = net.nodes[i].ike.status(now).iter().map(|s| s.ike_sa).collect();
                        for id in ids {
                            net.nodes[i].ike.delete_ike_sa(now, id);
                        }
                    }
                }
                Op::Vanish(k) => {
                    if let Some(i) = slot[k as usize] {
                        net.nodes[i].dead = true;
                    }
                }
                Op::Wait(s) => net.run(Duration::from_secs(u64::from(s))),
            }
            net.run(Duration::from_millis(300));
            let gw = &net.nodes[0].ike;
            let leases = gw.ra_leases();
            let distinct: HashSet<IpAddr> = leases.iter().map(|l| l.address).collect();
            prop_assert_eq!(distinct.len(), leases.len(), "{:?}", leases);
            let live: HashSet<_> = gw.status(net.now).iter().map(|s| s.ike_sa).collect();
            for l in &leases {
                prop_assert!(live.contains(&l.ike_sa));
            }
            let st = gw.ra_pools()[0].1;
            prop_assert_eq!(st.in_use, leases.len() as u128);
            prop_assert_eq!(st.in_use + st.free, st.size);
        }
    }
}

#[test]
fn small_first_proposal_then_all_on_no_proposal_chosen() {
    // The gateway accepts only the client's second IKE proposal.
    let mut g = gateway_policy(POOL, ClientAuth::Peer);
    g.ike_proposals = vec![ike_prop("aes128gcm16-prfsha256-ecp256")];
    let mut net = RaNet::new(g);
    let mut pc = client_policy("192.0.2.1", None);
    pc.remote_access =
        rampart_ike::RemoteAccess::Client(std::sync::Arc::new(rampart_ike::RaClient {
            eap: None,
            small_first_proposal: true,
        }));
    let c = net.connect(pc);
    // The first IKE_SA_INIT, before anything is delivered: one proposal only.
    let first = loop {
        match net.nodes[c].ike.poll_event() {
            Some(IkeEvent::Transmit { msg, .. }) => break msg,
            Some(_) => {}
            None => panic!("no IKE_SA_INIT"),
        }
    };
    let m = parse(&first).unwrap();
    assert_eq!(m.header.exchange, exchange::IKE_SA_INIT);
    let props = m
        .payloads
        .iter()
        .find_map(|p| match p {
            Payload::Sa(v) => Some(v.len()),
            _ => None,
        })
        .unwrap();
    assert_eq!(props, 1);
    // Hand it back to the net and let the retry with every proposal succeed.
    let now = net.now;
    net.nodes[0].ike.handle_datagram(
        now,
        "203.0.113.2:500".parse().unwrap(),
        "192.0.2.1:500".parse().unwrap(),
        &first,
    );
    net.run(Duration::from_secs(3));
    assert_eq!(net.live_children(c), 1);
    assert!(net.virtual_ip(c).is_some());
    assert!(!net.nodes[c]
        .events
        .iter()
        .any(|e| matches!(e, IkeEvent::IkeSaDown { .. })));
}

#[test]
fn full_tunnel_child_rekeys_keep_the_address_selectors() {
    let mut g = gateway_policy(POOL, ClientAuth::Peer);
    if let rampart_ike::RemoteAccess::Gateway(gw) = &g.remote_access {
        let mut full = (**gw).clone();
        full.routes.clear();
        g.remote_access = rampart_ike::RemoteAccess::Gateway(std::sync::Arc::new(full));
    }
    let mut net = RaNet::new(g);
    let c = net.connect(client_policy("192.0.2.1", None));
    net.run(Duration::from_secs(2));
    let first = |net: &RaNet| {
        net.nodes[c]
            .events
            .iter()
            .rev()
            .find_map(|e| match e {
                IkeEvent::ChildSaUp(k) => Some((k.child, k.local_ts.clone(), k.remote_ts.clone())),
                _ => None,
            })
            .unwrap()
    };
    let (child, local, remote) = first(&net);
    assert_eq!(local, gw_ts("10.99.0.1/32"));
    assert_eq!(remote, gw_ts("0.0.0.0/0"));
    // A rekey from either side keeps the selectors.
    let now = net.now;
    net.nodes[c].ike.rekey_child(now, child);
    net.run(Duration::from_secs(2));
    let (child2, local2, remote2) = first(&net);
    assert_ne!(child2, child);
    assert_eq!((local2, remote2), (local.clone(), remote.clone()));
    assert_eq!(net.live_children(c), 1);
    let gw_child = net.nodes[0]
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            IkeEvent::ChildSaUp(k) => Some(k.child),
            _ => None,
        })
        .unwrap();
    let now = net.now;
    net.nodes[0].ike.rekey_child(now, gw_child);
    net.run(Duration::from_secs(2));
    let (child3, local3, remote3) = first(&net);
    assert_ne!(child3, child2);
    assert_eq!((local3, remote3), (local, remote));
    assert_eq!(net.live_children(c), 1);
}

#[test]
fn a_reconnecting_client_replaces_its_stale_sa_and_gets_its_address_back() {
    let mut net = RaNet::new(gateway_policy(POOL, ClientAuth::Peer));
    let other = net.connect(client_policy("192.0.2.9", None));
    let c = net.connect(client_policy("192.0.2.1", None));
    net.run(Duration::from_secs(15));
    let mine = net.virtual_ip(c).unwrap();
    // The client finds the gateway dead (without telling it) and connects again from the
    // same address and identity: a new IKE SA with INITIAL_CONTACT, asking for its address.
    let now = net.now;
    let peer = net.nodes[c].peer;
    let old: Vec<_> = net.nodes[0]
        .ike
        .ra_leases()
        .iter()
        .filter(|l| l.address == mine)
        .map(|l| l.ike_sa)
        .collect();
    assert_eq!(old.len(), 1);
    net.nodes[c].ike.peer_dead(now, peer);
    net.run(Duration::from_secs(3));
    let c2 = c;
    assert_eq!(net.virtual_ip(c2), Some(mine));
    assert_eq!(net.live_children(other), 1);
    let leases = net.nodes[0].ike.ra_leases();
    assert_eq!(leases.len(), 2, "{leases:?}");
    assert!(!leases.iter().any(|l| old.contains(&l.ike_sa)));
}

/// The client shell builds a new engine for every connection: the address it had is passed in
/// (`prefer_virtual_address`) and asked for again; INITIAL_CONTACT frees it at the gateway first.
#[test]
fn a_new_client_engine_asks_for_the_address_the_last_one_had() {
    let mut net = RaNet::new(gateway_policy(POOL, ClientAuth::Peer));
    let other = net.connect(client_policy("192.0.2.9", None));
    let c = net.connect(client_policy("192.0.2.1", None));
    net.run(Duration::from_secs(15));
    let mine = net.virtual_ip(c).unwrap();
    // A third client takes the next free address, so "the next free one" is not `mine`.
    let third = net.connect(client_policy("192.0.2.7", None));
    net.run(Duration::from_secs(2));
    assert_ne!(net.virtual_ip(third), Some(mine));
    // The first engine vanishes without a word (crash, reconnect from scratch).
    net.nodes[c].dead = true;
    let (mut fresh, peer) = engine(
        ike_config("10.1.0.0/16", client_policy("192.0.2.1", None)),
        91,
    );
    let IpAddr::V4(v4) = mine else {
        panic!("IPv4 pool")
    };
    fresh.prefer_virtual_address(peer, v4);
    fresh.initiate(net.now, peer);
    let n = net.add_node("192.0.2.1".parse().unwrap(), fresh, peer);
    net.run(Duration::from_secs(3));
    assert_eq!(net.virtual_ip(n), Some(mine));
    assert_eq!(net.live_children(other), 1);
    assert_eq!(net.nodes[0].ike.ra_leases().len(), 3);
}

#[test]
fn an_exported_sa_carries_its_lease_to_another_member() {
    let mut net = RaNet::new(gateway_policy(POOL, ClientAuth::Peer));
    let c = net.connect(client_policy("192.0.2.1", None));
    net.run(Duration::from_secs(2));
    let vip = net.virtual_ip(c).unwrap();
    let sa = net.nodes[0].ike.ra_leases()[0].ike_sa;
    let st = net.nodes[0].ike.export_sa(net.now, sa).unwrap();
    assert_eq!(st.ra_lease.as_ref().map(|l| l.address), Some(vip));
    // A second member with the same template continues the SA and holds the address.
    let (mut standby, _) = engine(
        ike_config("10.2.0.0/16", gateway_policy(POOL, ClientAuth::Peer)),
        77,
    );
    let id = standby.import_sa(net.now, st).unwrap();
    let leases = standby.ra_leases();
    assert_eq!(leases.len(), 1);
    assert_eq!((leases[0].ike_sa, leases[0].address), (id, vip));
    assert_eq!(leases[0].client, "client.example");
    // Its pool never hands that address to anyone else.
    let st = standby.ra_pools()[0].1;
    assert_eq!((st.in_use, st.in_use + st.free), (1, st.size));
    standby.forget_sa(id);
    assert!(standby.ra_leases().is_empty());
    assert_eq!(standby.ra_pools()[0].1.in_use, 0);
}

#[test]
fn an_eap_client_finds_the_eap_template_behind_another_template() {
    // A site-to-site template first, the remote-access one second.
    let mut other = gateway_policy("10.98.0.0/24", ClientAuth::Peer);
    other.name = "branches".into();
    other.remote_access = rampart_ike::RemoteAccess::None;
    other.remote_id = rampart_ike::policy::Identity::Fqdn("branch.example".into());
    let mut cfg = ike_config("10.2.0.0/16", other);
    cfg.peers
        .push(gateway_policy(POOL, ClientAuth::EapMschapv2(users())));
    let mut net = RaNet::new(gateway_policy(POOL, ClientAuth::Peer));
    net.nodes[0].ike = engine(cfg, 9).0;
    // The EAP user's IKE identity is not configured anywhere.
    let mut pc = client_policy("192.0.2.1", Some(("alice", "wonderland")));
    pc.local_id = rampart_ike::policy::Identity::Email("alice@laptop".into());
    let c = net.connect(pc);
    net.run(Duration::from_secs(3));
    assert_eq!(net.virtual_ip(c), Some(addr("10.99.0.1")));
    assert_eq!(net.live_children(c), 1);
    assert_eq!(net.nodes[0].ike.ra_leases()[0].client, "alice");
}

/// A template with `remote_id = "%any"` serves every client whose certificate chain verifies,
/// each under its own identity.
#[test]
fn any_identity_template_serves_clients_with_their_own_certificates() {
    let (root, mut g, year) = cert_gateway(ClientAuth::Peer);
    g.remote_id = rampart_ike::Identity::Fqdn(rampart_ike::ANY_IDENTITY.into());
    let mut net = RaNet::new(g);
    let mut clients = Vec::new();
    for (n, name) in ["alice.example", "bob.example"].iter().enumerate() {
        let cl = root
            .issue(
                name,
                &[San::Dns((*name).into())],
                Algorithm::EcdsaP256,
                year,
            )
            .unwrap();
        let mut c = client_policy(&format!("192.0.2.{}", n + 1), None);
        c.local_id = rampart_ike::Identity::Fqdn((*name).into());
        c.auth = cert_auth(&root, vec![cl.cert_der], &cl.key_pem);
        c.psk = Vec::new().into();
        clients.push(net.connect(c));
    }
    net.run(Duration::from_secs(5));
    let a = net.virtual_ip(clients[0]).expect("alice got an address");
    let b = net.virtual_ip(clients[1]).expect("bob got an address");
    assert_ne!(a, b);
}

/// The gateway's entry points reach the client in the CFG_REPLY (RAMPART_ENTRY_POINTS); a
/// gateway without them sends none.
#[test]
fn entry_points_reach_the_client() {
    use rampart_wire::ike::{EntryPointList, EntryPointSelection};
    let list = EntryPointList {
        selection: EntryPointSelection::PrimaryBackup,
        entries: vec!["vpn-eu.example.org".into(), "203.0.113.7:4500".into()],
    };
    let mut gw = gateway_policy(POOL, ClientAuth::Peer);
    let rampart_ike::policy::RemoteAccess::Gateway(g) = &mut gw.remote_access else {
        unreachable!("gateway_policy builds a gateway")
    };
    std::sync::Arc::make_mut(g).entry_points = Some(list.clone());
    for (gw, want) in [
        (gw, Some(list)),
        (gateway_policy(POOL, ClientAuth::Peer), None),
    ] {
        let mut net = RaNet::new(gw);
        let c = net.connect(client_policy("192.0.2.1", None));
        net.run(Duration::from_secs(3));
        let got: Vec<_> = net.nodes[c]
            .events
            .iter()
            .filter_map(|e| match e {
                IkeEvent::VirtualIp { reply, .. } => Some(reply.entry_points.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(got, vec![want]);
    }
}
