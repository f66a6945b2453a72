//! Unit and property tests: TCP state machine, table, rule base, NAT round trips, checksums.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use crate::policy::{InspectPolicy, NatRule, Rule, RuleAction, Service, ServiceProtocol};
use ipnet::IpNet;
use proptest::prelude::*;

use crate::tcp::{flags::*, next, start, Dir, TcpState};
use crate::*;
use rampart_wire::checksum::{finish, fold, pseudo_header, pseudo_header_v4, sum};

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// An IPv4 packet with valid checksums. `proto` 6 (flags used), 17, or 1 (echo: `sport` = id,
/// request when `flags` != 0).
fn packet(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    sport: u16,
    dport: u16,
    flags: u8,
) -> Vec<u8> {
    let payload = b"hello";
    let l4len = match protocol {
        6 => 20,
        _ => 8,
    } + payload.len();
    let total = 20 + l4len;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = protocol;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = finish(sum(0, &p[..20]));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let l4 = &mut p[20..];
    match protocol {
        6 => {
            l4[0..2].copy_from_slice(&sport.to_be_bytes());
            l4[2..4].copy_from_slice(&dport.to_be_bytes());
            l4[4..8].copy_from_slice(&1000u32.to_be_bytes());
            l4[12] = 5 << 4;
            l4[13] = flags;
            l4[20..].copy_from_slice(payload);
        }
        17 => {
            l4[0..2].copy_from_slice(&sport.to_be_bytes());
            l4[2..4].copy_from_slice(&dport.to_be_bytes());
            l4[4..6].copy_from_slice(&(l4len as u16).to_be_bytes());
            l4[8..].copy_from_slice(payload);
        }
        _ => {
            l4[0] = if flags != 0 { 8 } else { 0 };
            l4[4..6].copy_from_slice(&sport.to_be_bytes());
            l4[8..].copy_from_slice(payload);
        }
    }
    let at = match protocol {
        6 => 16,
        17 => 6,
        _ => 2,
    };
    let s = if protocol == 1 {
        0
    } else {
        pseudo_header_v4(src, dst, protocol, l4len)
    };
    let c = finish(sum(s, &p[20..]));
    p[20 + at..20 + at + 2].copy_from_slice(&c.to_be_bytes());
    p
}

/// Whether every checksum of an IPv4 TCP/UDP/ICMP packet verifies.
fn checksums_ok(p: &[u8]) -> bool {
    if fold(sum(0, &p[..20])) != 0xffff {
        return false;
    }
    let protocol = p[9];
    let s = if protocol == 1 {
        0
    } else {
        pseudo_header(&p[12..20], protocol, p.len() - 20)
    };
    fold(sum(s, &p[20..])) == 0xffff
}

fn fields(p: &[u8]) -> (Ipv4Addr, Ipv4Addr, u16, u16) {
    let a = |i: usize| Ipv4Addr::new(p[i], p[i + 1], p[i + 2], p[i + 3]);
    let be = |i: usize| u16::from_be_bytes([p[i], p[i + 1]]);
    (a(12), a(16), be(20), be(22))
}

fn svc(name: &str, protocol: ServiceProtocol, port: u16) -> Service {
    Service {
        name: name.into(),
        protocol,
        ports: vec![(port, port)],
        sync: true,
        sync_after: Duration::ZERO,
    }
}

fn rule(name: &str, services: Vec<usize>, action: RuleAction) -> Rule {
    Rule {
        name: name.into(),
        source: vec![],
        destination: vec![],
        services,
        action,
        log: true,
    }
}

fn accept_all() -> InspectPolicy {
    InspectPolicy {
        rules: vec![rule("all", vec![], RuleAction::Accept)],
        ..InspectPolicy::default()
    }
}

fn inspector(config: InspectPolicy) -> (Inspector, Instant) {
    let now = Instant::now();
    (Inspector::new(config, 3, 42, now), now)
}

const H1: &str = "10.1.0.10";
const H2: &str = "10.2.0.10";

#[test]
fn tcp_handshake_data_and_close() {
    let (mut i, now) = inspector(accept_all());
    let (a, b) = (ip(H1), ip(H2));
    let go = |i: &mut Inspector, side, src, dst, sp, dp, f| {
        let mut p = packet(src, dst, 6, sp, dp, f);
        i.handle(now, side, &mut p)
    };
    assert_eq!(
        go(&mut i, Side::Inside, a, b, 40000, 80, SYN),
        Verdict::Accept
    );
    assert_eq!(
        go(&mut i, Side::Tunnel, b, a, 80, 40000, SYN | ACK),
        Verdict::Accept
    );
    assert_eq!(
        go(&mut i, Side::Inside, a, b, 40000, 80, ACK),
        Verdict::Accept
    );
    assert_eq!(
        go(&mut i, Side::Tunnel, b, a, 80, 40000, ACK),
        Verdict::Accept
    );
    assert_eq!(
        go(&mut i, Side::Inside, a, b, 40000, 80, FIN | ACK),
        Verdict::Accept
    );
    assert_eq!(
        go(&mut i, Side::Tunnel, b, a, 80, 40000, FIN | ACK),
        Verdict::Accept
    );
    assert_eq!(
        go(&mut i, Side::Inside, a, b, 40000, 80, ACK),
        Verdict::Accept
    );
    let c = i.connections().next().unwrap();
    assert_eq!(c.state, ConnState::Tcp(TcpState::TimeWait));
    assert_eq!(c.id >> 48, 3);
    assert_eq!(c.packets, [4, 3]);
    // A new SYN with the same ports replaces the closed connection.
    assert_eq!(
        go(&mut i, Side::Inside, a, b, 40000, 80, SYN),
        Verdict::Accept
    );
    assert_eq!(i.len(), 1);
    assert_eq!(i.stats().connections_accepted, 2);
}

#[test]
fn first_packet_not_syn_is_dropped_counted_and_logged() {
    let (mut i, now) = inspector(accept_all());
    let mut p = packet(ip(H1), ip(H2), 6, 40000, 80, ACK);
    assert_eq!(
        i.handle(now, Side::Inside, &mut p),
        Verdict::Drop(DropCause::OutOfState(OutOfState::FirstPacketNotSyn))
    );
    let mut p = packet(ip(H2), ip(H1), 6, 80, 40000, SYN | ACK);
    assert!(matches!(
        i.handle(now, Side::Tunnel, &mut p),
        Verdict::Drop(_)
    ));
    assert_eq!(i.stats().dropped_out_of_state, 2);
    let log = i.poll_log().unwrap();
    assert!(
        log.message.contains("first packet isn't SYN"),
        "{}",
        log.message
    );
    assert!(i.is_empty());
}

#[test]
fn without_rules_everything_passes() {
    let (mut i, now) = inspector(InspectPolicy::default());
    let mut p = packet(ip(H1), ip(H2), 6, 40000, 80, ACK);
    assert_eq!(i.handle(now, Side::Inside, &mut p), Verdict::Accept);
    let mut p = packet(ip(H1), ip(H2), 17, 5000, 53, 0);
    assert_eq!(i.handle(now, Side::Inside, &mut p), Verdict::Accept);
    assert_eq!(i.stats().untracked, 1);
    assert_eq!(i.connections().next().unwrap().rule, NO_RULE);
}

#[test]
fn rules_first_match_and_implicit_drop() {
    let config = InspectPolicy {
        services: vec![
            svc("ssh", ServiceProtocol::Tcp, 22),
            svc("web", ServiceProtocol::Tcp, 80),
        ],
        rules: vec![
            rule("no-ssh", vec![0], RuleAction::Reject),
            rule("web", vec![1], RuleAction::Accept),
        ],
        ..InspectPolicy::default()
    };
    let (mut i, now) = inspector(config);
    let mut p = packet(ip(H1), ip(H2), 6, 40000, 22, SYN);
    assert_eq!(i.handle(now, Side::Inside, &mut p), Verdict::Reject);
    let mut p = packet(ip(H1), ip(H2), 6, 40001, 80, SYN);
    assert_eq!(i.handle(now, Side::Inside, &mut p), Verdict::Accept);
    let mut p = packet(ip(H1), ip(H2), 17, 40001, 53, 0);
    assert_eq!(
        i.handle(now, Side::Inside, &mut p),
        Verdict::Drop(DropCause::Rule(IMPLICIT_DROP))
    );
    let s = i.stats();
    assert_eq!(
        (s.dropped_by_rule, s.rejected, s.connections_accepted),
        (2, 1, 1)
    );
    let logs: Vec<String> = std::iter::from_fn(|| i.poll_log())
        .map(|l| l.message)
        .collect();
    assert!(logs[0].contains("by rule no-ssh"), "{logs:?}");
    assert!(logs[2].contains("implicit-drop"), "{logs:?}");
    let view = i.list(now, 10);
    assert_eq!(view.connections[0].rule, "web");
    assert_eq!(view.connections[0].service, "web");
}

#[test]
fn full_table_refuses_new_keeps_old() {
    let config = InspectPolicy {
        capacity: 3,
        ..accept_all()
    };
    let (mut i, now) = inspector(config);
    for port in 1..=3 {
        let mut p = packet(ip(H1), ip(H2), 17, port, 53, 0);
        assert_eq!(i.handle(now, Side::Inside, &mut p), Verdict::Accept);
    }
    let mut p = packet(ip(H1), ip(H2), 17, 4, 53, 0);
    assert_eq!(
        i.handle(now, Side::Inside, &mut p),
        Verdict::Drop(DropCause::TableFull)
    );
    let mut p = packet(ip(H2), ip(H1), 17, 53, 2, 0);
    assert_eq!(i.handle(now, Side::Tunnel, &mut p), Verdict::Accept);
    assert_eq!(i.stats().table_full, 1);
    // After the idle timeout the entries expire and room comes back.
    let later = now + Duration::from_secs(61);
    i.handle_timeout(later);
    assert_eq!(i.len(), 0);
    let mut p = packet(ip(H1), ip(H2), 17, 4, 53, 0);
    assert_eq!(i.handle(later, Side::Inside, &mut p), Verdict::Accept);
}

#[test]
fn change_stream_reports_create_update_delete() {
    let (mut i, now) = inspector(accept_all());
    i.enable_change_stream(100);
    let mut p = packet(ip(H1), ip(H2), 17, 1, 53, 0);
    i.handle(now, Side::Inside, &mut p);
    let mut p = packet(ip(H2), ip(H1), 17, 53, 1, 0);
    i.handle(now, Side::Tunnel, &mut p);
    i.handle_timeout(now + Duration::from_secs(200));
    let changes: Vec<Change> = std::iter::from_fn(|| i.poll_change()).collect();
    assert!(matches!(changes[0], Change::Created(c) if c.state == ConnState::UdpUnreplied));
    assert!(matches!(
        changes[1],
        Change::Updated {
            state: ConnState::UdpReplied,
            ..
        }
    ));
    assert!(matches!(changes[2], Change::Deleted { .. }));
    let json = serde_json::to_string(&changes[0]).unwrap();
    let back: Change = serde_json::from_str(&json).unwrap();
    assert_eq!(back, changes[0]);
}

fn hide_config(ports: (u16, u16)) -> InspectPolicy {
    InspectPolicy {
        nat: vec![NatRule::Hide {
            name: "hide-a".into(),
            source: vec!["10.1.0.0/24".parse::<IpNet>().unwrap()],
            address: IpAddr::V4(ip("10.1.0.1")),
            ports,
        }],
        ..accept_all()
    }
}

#[test]
fn hide_nat_exhaustion_is_reported_and_ports_come_back() {
    let (mut i, now) = inspector(hide_config((2000, 2001)));
    for port in 1..=2 {
        let mut p = packet(ip(H1), ip(H2), 17, port, 53, 0);
        assert_eq!(i.handle(now, Side::Inside, &mut p), Verdict::Accept);
    }
    let mut p = packet(ip(H1), ip(H2), 17, 3, 53, 0);
    assert_eq!(
        i.handle(now, Side::Inside, &mut p),
        Verdict::Drop(DropCause::NatExhausted)
    );
    assert_eq!(i.stats().nat_exhausted, 1);
    let later = now + Duration::from_secs(61);
    i.handle_timeout(later);
    let mut p = packet(ip(H1), ip(H2), 17, 3, 53, 0);
    assert_eq!(i.handle(later, Side::Inside, &mut p), Verdict::Accept);
}

#[test]
fn icmp_error_is_matched_and_translated() {
    let (mut i, now) = inspector(hide_config((2000, 3000)));
    let mut out = packet(ip(H1), ip(H2), 17, 5555, 53, 0);
    assert_eq!(i.handle(now, Side::Inside, &mut out), Verdict::Accept);
    // H2 answers with port unreachable quoting the translated packet.
    let mut err = vec![0u8; 28];
    err[0] = 0x45;
    err[8] = 64;
    err[9] = 1;
    err[12..16].copy_from_slice(&ip(H2).octets());
    err[16..20].copy_from_slice(&out[12..16]);
    err[20] = 3;
    err[21] = 3;
    err.extend_from_slice(&out[..28]);
    let total = err.len() as u16;
    err[2..4].copy_from_slice(&total.to_be_bytes());
    let c = finish(sum(0, &err[..20]));
    err[10..12].copy_from_slice(&c.to_be_bytes());
    let c = finish(sum(0, &err[20..]));
    err[22..24].copy_from_slice(&c.to_be_bytes());
    assert_eq!(i.handle(now, Side::Tunnel, &mut err), Verdict::Accept);
    assert!(checksums_ok(&err));
    assert_eq!(&err[16..20], &ip(H1).octets()); // outer destination restored
    assert_eq!(&err[28 + 12..28 + 16], &ip(H1).octets()); // quoted source restored
    assert_eq!(u16::from_be_bytes([err[48], err[49]]), 5555); // quoted source port restored
    assert_eq!(fold(sum(0, &err[28..48])), 0xffff); // quoted IP header checksum
                                                    // An error about nothing known is out of state.
    err[48] = 0;
    assert!(matches!(
        i.handle(now, Side::Tunnel, &mut err),
        Verdict::Drop(_)
    ));
}

#[test]
fn reject_builds_rst_and_icmp() {
    let p = packet(ip(H1), ip(H2), 6, 40000, 22, SYN);
    let mut buf = vec![0u8; 200];
    buf[10..10 + p.len()].copy_from_slice(&p);
    let r = reject::build(&mut buf, 10..10 + p.len()).unwrap();
    let rst = &buf[r];
    assert!(checksums_ok(rst));
    assert_eq!(fields(rst), (ip(H2), ip(H1), 22, 40000));
    assert_eq!(rst[33], RST | ACK);
    let p = packet(ip(H1), ip(H2), 17, 40000, 53, 0);
    buf[10..10 + p.len()].copy_from_slice(&p);
    let r = reject::build(&mut buf, 10..10 + p.len()).unwrap();
    let icmp = &buf[r];
    assert!(checksums_ok(icmp));
    assert_eq!((icmp[20], icmp[21]), (3, 13));
    assert_eq!(&icmp[28..48], &p[..20]);
}

#[test]
fn table_survives_churn() {
    let mut t = Table::new(1000, 7);
    let conn = |n: u16| {
        let tuple = FlowTuple::new(IpAddr::V4(ip(H1)), IpAddr::V4(ip(H2)), 17, n, 53);
        Connection {
            id: u64::from(n),
            orig: tuple,
            xlat: tuple,
            init_side: Side::Inside,
            state: ConnState::UdpUnreplied,
            rule: 0,
            service: NO_SERVICE,
            nat: NatState {
                kind: NatKind::None,
                rule: 0,
            },
            created_ms: 0,
            last_seen_ms: 0,
            expires_ms: 0,
            packets: [0; 2],
            bytes: [0; 2],
            handshake: Default::default(),
        }
    };
    let mut idx = Vec::new();
    for n in 0..1000 {
        idx.push(t.insert(conn(n)).unwrap());
    }
    assert!(t.insert(conn(5000)).is_none());
    for n in (0..1000).step_by(2) {
        t.remove(idx[n]).unwrap();
    }
    for n in 0..1000u16 {
        let c = conn(n);
        let found = t.find(Side::Inside, &c.orig);
        assert_eq!(found.is_some(), n % 2 == 1, "{n}");
        let reply = t.find(Side::Tunnel, &c.orig.reverse());
        assert_eq!(reply.map(|r| r.1), (n % 2 == 1).then_some(Which::Reply));
    }
    assert!(t.bytes_per_entry() <= 256, "{}", t.bytes_per_entry());
}

fn any_flags() -> impl Strategy<Value = u8> {
    prop_oneof![
        Just(SYN),
        Just(SYN | ACK),
        Just(ACK),
        Just(FIN | ACK),
        Just(RST),
        Just(RST | ACK),
        Just(FIN),
        any::<u8>(),
    ]
}

proptest! {
    /// Whatever arrives, the machine never panics, RST always closes, a SYN on an open
    /// connection is always out of state, and nothing but a bare SYN opens a connection.
    #[test]
    fn tcp_machine_invariants(steps in proptest::collection::vec((any::<bool>(), any_flags()), 0..40)) {
        let mut state = TcpState::SynSent;
        for (orig, f) in steps {
            let dir = if orig { Dir::Orig } else { Dir::Reply };
            let r = next(state, dir, f);
            let valid = !((f & SYN != 0 && f & (FIN | RST) != 0) || f & (SYN | ACK | RST | FIN) == 0);
            if !valid {
                prop_assert!(r.is_err());
                continue;
            }
            if f & RST != 0 {
                prop_assert_eq!(r, Ok(TcpState::Closed));
            }
            if f & SYN != 0 && f & RST == 0 && !matches!(state, TcpState::SynSent | TcpState::SynReceived) {
                prop_assert!(r.is_err());
            }
            if let Ok(s) = r { state = s; }
        }
        for f in 0..=255u8 {
            prop_assert_eq!(start(f).is_ok(), f & (SYN | ACK | RST | FIN) == SYN);
        }
    }

    /// Hide NAT round trip: the translated packet has valid checksums and the hide address,
    /// and the reply, translated back, reaches the original host and port with valid checksums.
    #[test]
    fn hide_nat_round_trip(host in 2u8..250, sport in 1u16..65535, dport in 1u16..65535, protocol in prop_oneof![Just(6u8), Just(17u8), Just(1u8)]) {
        let (mut i, now) = inspector(hide_config((10000, 65535)));
        let a = Ipv4Addr::new(10, 1, 0, host);
        let b = ip(H2);
        let flags = if protocol == 6 { SYN } else if protocol == 1 { 1 } else { 0 };
        let mut out = packet(a, b, protocol, sport, dport, flags);
        prop_assert_eq!(i.handle(now, Side::Inside, &mut out), Verdict::Accept);
        prop_assert!(checksums_ok(&out));
        let (s, d, nat_port, dp) = fields(&out);
        prop_assert_eq!(s, ip("10.1.0.1"));
        prop_assert_eq!(d, b);
        let nat_id = u16::from_be_bytes([out[24], out[25]]);
        if protocol != 1 {
            prop_assert_eq!(dp, dport);
            prop_assert!(nat_port >= 10000);
        }
        // The reply as it comes back through the tunnel.
        let mut back = match protocol {
            6 => packet(b, ip("10.1.0.1"), 6, dport, nat_port, SYN | ACK),
            17 => packet(b, ip("10.1.0.1"), 17, dport, nat_port, 0),
            _ => packet(b, ip("10.1.0.1"), 1, nat_id, 0, 0),
        };
        prop_assert_eq!(i.handle(now, Side::Tunnel, &mut back), Verdict::Accept);
        prop_assert!(checksums_ok(&back));
        let (s, d, p1, p2) = fields(&back);
        prop_assert_eq!((s, d), (b, a));
        if protocol == 1 {
            prop_assert_eq!(u16::from_be_bytes([back[24], back[25]]), sport);
        } else {
            prop_assert_eq!((p1, p2), (dport, sport));
        }
    }

    /// Static NAT maps both ways and IP Pool NAT restores the remote source on return.
    #[test]
    fn static_and_pool_round_trip(host in 1u8..255, remote in 1u8..255, sport in 1u16..65535) {
        let config = InspectPolicy {
            nat: vec![
                NatRule::Static { name: "s".into(), original: "10.1.0.0/24".parse().unwrap(), translated: "10.9.0.0/24".parse().unwrap() },
                NatRule::Pool { name: "p".into(), pool: "10.1.1.0/28".parse().unwrap(), source: vec![] },
            ],
            ..accept_all()
        };
        let (mut i, now) = inspector(config);
        let a = Ipv4Addr::new(10, 1, 0, host);
        let r = Ipv4Addr::new(10, 2, 0, remote);
        let mut out = packet(a, r, 17, sport, 53, 0);
        prop_assert_eq!(i.handle(now, Side::Inside, &mut out), Verdict::Accept);
        prop_assert!(checksums_ok(&out));
        prop_assert_eq!(fields(&out).0, Ipv4Addr::new(10, 9, 0, host));
        // From the tunnel to the static address: destination mapped back, source from the pool.
        let mut inb = packet(r, Ipv4Addr::new(10, 9, 0, host), 17, sport, 80, 0);
        prop_assert_eq!(i.handle(now, Side::Tunnel, &mut inb), Verdict::Accept);
        prop_assert!(checksums_ok(&inb));
        prop_assert_eq!(fields(&inb).1, a);
        // Static NAT comes first, so the pool did not apply there; a connection to an
        // untranslated address gets a source from the pool.
        let mut inb2 = packet(r, ip("10.1.0.77"), 6, sport, 22, SYN);
        prop_assert_eq!(i.handle(now, Side::Tunnel, &mut inb2), Verdict::Accept);
        let (ps, pd, _, _) = fields(&inb2);
        prop_assert!(ps >= ip("10.1.1.1") && ps <= ip("10.1.1.14"), "{}", ps);
        prop_assert_eq!(pd, ip("10.1.0.77"));
        let mut rep = packet(ip("10.1.0.77"), ps, 6, 22, sport, SYN | ACK);
        prop_assert_eq!(i.handle(now, Side::Inside, &mut rep), Verdict::Accept);
        prop_assert!(checksums_ok(&rep));
        prop_assert_eq!(fields(&rep), (ip("10.1.0.77"), r, 22, sport));
    }
}

mod handshake;
mod reload;
mod transfer;
