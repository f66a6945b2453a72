//! Export / apply of the connection table: a connection continues in another inspector with
//! the same translation, and the change stream keeps a replica equal to its source.

use super::*;

const LAN_STATIC: &str = "10.1.5.7";

/// Static NAT for 10.1.5.0/24 first, then hide NAT for the rest of 10.1.0.0/16 on two ports.
fn nat_policy() -> InspectPolicy {
    InspectPolicy {
        nat: vec![
            NatRule::Static {
                name: "static".into(),
                original: "10.1.5.0/24".parse().unwrap(),
                translated: "10.9.5.0/24".parse().unwrap(),
            },
            NatRule::Hide {
                name: "hide".into(),
                source: vec!["10.1.0.0/16".parse::<IpNet>().unwrap()],
                address: IpAddr::V4(ip("10.1.0.1")),
                ports: (2000, 2001),
            },
        ],
        ..accept_all()
    }
}

fn v4(b: &[u8; 16]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

fn conn(i: &Inspector, sport: u16) -> Connection {
    *i.connections().find(|c| c.orig.sport == sport).unwrap()
}

/// A TCP packet of connection `c` from the originator (as it arrives inside) or from the
/// responder (as it arrives from the tunnel, addressed to the translated tuple).
fn tcp_of(c: &Connection, reply: bool, flags: u8) -> Vec<u8> {
    let t = if reply { c.xlat.reverse() } else { c.orig };
    packet(v4(&t.src), v4(&t.dst), 6, t.sport, t.dport, flags)
}

/// Opens and establishes a TCP connection from `src:sport` to H2:80 in `i`.
fn establish(i: &mut Inspector, now: Instant, src: Ipv4Addr, sport: u16) -> Connection {
    let mut p = packet(src, ip(H2), 6, sport, 80, SYN);
    assert_eq!(i.handle(now, Side::Inside, &mut p), Verdict::Accept);
    let c = conn(i, sport);
    for (reply, flags) in [(true, SYN | ACK), (false, ACK)] {
        let mut p = tcp_of(&c, reply, flags);
        let side = if reply { Side::Tunnel } else { Side::Inside };
        assert_eq!(i.handle(now, side, &mut p), Verdict::Accept);
    }
    conn(i, sport)
}

#[test]
fn exported_connections_continue_in_a_fresh_inspector() {
    let t0 = Instant::now();
    let mut a = Inspector::new(nat_policy(), 3, 1, t0);
    let hide = establish(&mut a, t0, ip(H1), 40000);
    let stat = establish(&mut a, t0 + Duration::from_secs(2), ip(LAN_STATIC), 40001);
    assert_eq!(
        (hide.nat.kind, stat.nat.kind),
        (NatKind::Hide, NatKind::Static)
    );
    assert_eq!(v4(&hide.xlat.src), ip("10.1.0.1"));
    assert_eq!(v4(&stat.xlat.src), ip("10.9.5.7"));

    let t_export = t0 + Duration::from_secs(10);
    let snapshot = a.export(t_export);
    assert_eq!(snapshot.len(), 2);
    let json = serde_json::to_string(&snapshot).unwrap();
    let snapshot: Vec<Connection> = serde_json::from_str(&json).unwrap();

    // B was started long after A, and imports a while after the export.
    let t_b = t0 + Duration::from_secs(3);
    let mut b = Inspector::new(nat_policy(), 4, 2, t_b);
    let t_apply = t_b + Duration::from_secs(500);
    for c in &snapshot {
        b.apply(t_apply, Change::Created(*c)).unwrap();
    }
    // Age, idle time and remaining timeout are what they were at the export, to the ms.
    assert_eq!(b.export(t_apply), snapshot);
    let (la, lb) = (a.list(t_export, 10), b.list(t_apply, 10));
    assert_eq!(la, lb);
    assert_eq!(lb.connections[0].age_secs, 10);
    assert_eq!(lb.connections[0].expires_in_secs, 3600 - 10);

    // Both directions of both connections pass with the same translation.
    for c in [hide, stat] {
        let mut out = tcp_of(&c, false, ACK);
        assert_eq!(b.handle(t_apply, Side::Inside, &mut out), Verdict::Accept);
        assert!(checksums_ok(&out));
        assert_eq!(fields(&out), (v4(&c.xlat.src), ip(H2), c.xlat.sport, 80));
        let mut back = tcp_of(&c, true, ACK);
        assert_eq!(b.handle(t_apply, Side::Tunnel, &mut back), Verdict::Accept);
        assert!(checksums_ok(&back));
        assert_eq!(fields(&back), (ip(H2), v4(&c.orig.src), 80, c.orig.sport));
    }
    // Out of state stays out of state: a reply to a port nobody holds, a SYN on an open one.
    let mut stray = packet(ip(H2), ip("10.1.0.1"), 6, 80, 2001, ACK);
    assert_eq!(
        b.handle(t_apply, Side::Tunnel, &mut stray),
        Verdict::Drop(DropCause::OutOfState(OutOfState::FirstPacketNotSyn))
    );
    let mut syn = tcp_of(&hide, false, SYN);
    assert_eq!(
        b.handle(t_apply, Side::Inside, &mut syn),
        Verdict::Drop(DropCause::OutOfState(OutOfState::SynOnOpenConnection))
    );
    // The imported hide port is reserved: one port is left, then the rule is exhausted.
    let other = establish(&mut b, t_apply, ip(H1), 40002);
    assert_ne!(other.xlat.sport, hide.xlat.sport);
    let mut third = packet(ip(H1), ip(H2), 6, 40003, 80, SYN);
    assert_eq!(
        b.handle(t_apply, Side::Inside, &mut third),
        Verdict::Drop(DropCause::NatExhausted)
    );
    // Deleting the imported connection gives its port back.
    let d = Change::Deleted {
        id: hide.id,
        init_side: hide.init_side,
        orig: hide.orig,
    };
    b.apply(t_apply, d).unwrap();
    assert_eq!(
        b.apply(t_apply, d),
        Err(ApplyError::UnknownConnection { id: hide.id })
    );
    let mut third = packet(ip(H1), ip(H2), 6, 40003, 80, SYN);
    assert_eq!(b.handle(t_apply, Side::Inside, &mut third), Verdict::Accept);
}

#[test]
fn apply_refuses_what_does_not_fit_without_changing_the_table() {
    let t0 = Instant::now();
    let mut a = Inspector::new(nat_policy(), 3, 1, t0);
    for sport in [1, 2, 3] {
        let mut p = packet(ip(LAN_STATIC), ip(H2), 17, sport, 53, 0);
        assert_eq!(a.handle(t0, Side::Inside, &mut p), Verdict::Accept);
    }
    let snapshot = a.export(t0);
    let small = InspectPolicy {
        capacity: 2,
        ..nat_policy()
    };
    let mut b = Inspector::new(small, 4, 2, t0);
    b.apply(t0, Change::Created(snapshot[0])).unwrap();
    b.apply(t0, Change::Created(snapshot[1])).unwrap();
    assert_eq!(
        b.apply(t0, Change::Created(snapshot[2])),
        Err(ApplyError::TableFull { id: snapshot[2].id })
    );
    // Importing the same connection again replaces it; a different id on the same tuple clashes.
    b.apply(t0, Change::Created(snapshot[0])).unwrap();
    let mut clash = snapshot[1];
    clash.id += 100;
    assert_eq!(
        b.apply(t0, Change::Created(clash)),
        Err(ApplyError::KeyInUse { id: clash.id })
    );
    assert_eq!(b.export(t0), snapshot[..2]);

    // A hide port held by a local connection cannot be imported a second time.
    let mut a = Inspector::new(nat_policy(), 3, 1, t0);
    let mut b = Inspector::new(nat_policy(), 4, 2, t0);
    let x = establish(&mut a, t0, ip(H1), 40000);
    // Another host, another server port: only the hide port is the same.
    let mut p = packet(ip("10.1.0.99"), ip(H2), 6, 40000, 81, SYN);
    assert_eq!(b.handle(t0, Side::Inside, &mut p), Verdict::Accept);
    assert_eq!(x.xlat.sport, conn(&b, 40000).xlat.sport);
    let x = a.export(t0)[0];
    assert_eq!(
        b.apply(t0, Change::Created(x)),
        Err(ApplyError::PortInUse { id: x.id })
    );
    assert_eq!(b.len(), 1);
}

/// The part of a connection the change stream keeps in step (counters and the idle refresh
/// of the expiry by ordinary packets are not streamed).
fn synced(
    i: &Inspector,
    now: Instant,
) -> Vec<(u64, FlowTuple, FlowTuple, Side, ConnState, u16, NatState)> {
    i.export(now)
        .into_iter()
        .map(|c| (c.id, c.orig, c.xlat, c.init_side, c.state, c.rule, c.nat))
        .collect()
}

const FLAGS: [u8; 6] = [SYN, SYN | ACK, ACK, FIN | ACK, RST, ACK | RST];

proptest! {
    /// Random packets of a few flows (TCP, UDP, echo, both directions, hide and static NAT)
    /// with time passing: replaying A's change stream into B keeps B's table equal to A's.
    #[test]
    fn change_stream_replay_keeps_a_replica_equal(
        steps in proptest::collection::vec((0usize..6, any::<bool>(), 0usize..6, 0u64..40), 1..120),
    ) {
        let t0 = Instant::now();
        let mut a = Inspector::new(nat_policy(), 1, 1, t0);
        a.enable_change_stream(10_000);
        let mut b = Inspector::new(nat_policy(), 2, 2, t0 + Duration::from_secs(7));
        let mut now = t0;
        for (flow, reply, f, dt) in steps {
            now += Duration::from_secs(dt);
            a.handle_timeout(now);
            let host = if flow % 2 == 0 { ip(H1) } else { ip(LAN_STATIC) };
            let (protocol, sport, dport) = match flow / 2 {
                0 => (6, 41000 + flow as u16, 80),
                1 => (17, 42000 + flow as u16, 53),
                _ => (1, 43000 + flow as u16, 0),
            };
            let orig = FlowTuple::new(IpAddr::V4(host), IpAddr::V4(ip(H2)), protocol, sport, dport);
            let known = a.connections().find(|c| c.orig == orig).copied();
            let t = match (reply, known) {
                (true, Some(c)) => c.xlat.reverse(),
                (true, None) => orig.reverse(),
                (false, _) => orig,
            };
            let side = if reply { Side::Tunnel } else { Side::Inside };
            let mut p = match protocol {
                1 => packet(v4(&t.src), v4(&t.dst), 1, t.sport.max(t.dport), 0, u8::from(!reply)),
                _ => packet(v4(&t.src), v4(&t.dst), protocol, t.sport, t.dport, FLAGS[f]),
            };
            a.handle(now, side, &mut p);
            prop_assert!(!a.changes_overflowed());
            while let Some(change) = a.poll_change() {
                prop_assert_eq!(b.apply(now + Duration::from_secs(1), change), Ok(()));
            }
            prop_assert_eq!(synced(&a, now), synced(&b, now));
        }
    }
}

#[test]
fn orphans_are_the_packets_no_connection_takes_and_find_flow_looks_both_ways() {
    let t0 = Instant::now();
    let mut a = Inspector::new(nat_policy(), 1, 1, t0);
    a.enable_change_stream(16);
    // A SYN may open a connection: not an orphan. A stray ACK, a RST and a SYN-ACK cannot.
    let syn = packet(ip(H1), ip(H2), 6, 40000, 80, SYN);
    assert_eq!(a.orphan(t0, Side::Inside, &syn), None);
    for flags in [ACK, RST, SYN | ACK] {
        let p = packet(ip(H1), ip(H2), 6, 40000, 80, flags);
        let (tuple, _) = a.orphan(t0, Side::Inside, &p).expect("orphan");
        assert_eq!((tuple.sport, tuple.dport), (40000, 80));
    }
    let c = establish(&mut a, t0, ip(H1), 40000);
    assert!(matches!(a.last_change(), Some(Change::Updated { id, .. }) if *id == c.id));
    // Known now, in both directions (the reply addressed to the hide NAT address).
    let ack = tcp_of(&c, false, ACK);
    assert_eq!(a.orphan(t0, Side::Inside, &ack), None);
    let reply = tcp_of(&c, true, ACK);
    assert_eq!(a.orphan(t0, Side::Tunnel, &reply), None);
    // An update request names the flow without direction or side: any of its keys finds it.
    for t in [c.orig, c.orig.reverse(), c.xlat, c.xlat.reverse()] {
        assert_eq!(a.find_flow(t0, &t).map(|f| f.id), Some(c.id), "{t:?}");
    }
    // Expired: neither found nor known.
    let later = t0 + Duration::from_secs(100_000);
    assert_eq!(a.find_flow(later, &c.orig), None);
    assert!(a.orphan(later, Side::Inside, &ack).is_some());
    // Without a rule base nothing is out of state.
    let open = Inspector::new(InspectPolicy::default(), 1, 1, t0);
    assert_eq!(open.orphan(t0, Side::Inside, &ack), None);
}
