//! Handshake enforcement: ISNs recorded from the SYN and the SYN-ACK, a SYN-ACK or a
//! handshake-completing ACK with the wrong numbers refused (counted, logged, state kept), the
//! ISNs carried by the change stream to another inspector, and nothing of it while off.

use super::*;
use crate::tcp::{check_handshake, Handshake, HandshakeCheck, HandshakeMismatch};

const SPORT: u16 = 40000;
const DPORT: u16 = 80;

/// A TCP packet between H1:SPORT (originator, inside) and H2:DPORT with `seq` and `ack` and
/// valid checksums.
fn seg(reply: bool, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    let (src, dst, sp, dp) = if reply {
        (ip(H2), ip(H1), DPORT, SPORT)
    } else {
        (ip(H1), ip(H2), SPORT, DPORT)
    };
    let mut p = packet(src, dst, 6, sp, dp, flags);
    p[24..28].copy_from_slice(&seq.to_be_bytes());
    p[28..32].copy_from_slice(&ack.to_be_bytes());
    p[36..38].fill(0);
    let l4len = p.len() - 20;
    let c = finish(sum(pseudo_header_v4(src, dst, 6, l4len), &p[20..]));
    p[36..38].copy_from_slice(&c.to_be_bytes());
    p
}

fn side(reply: bool) -> Side {
    if reply {
        Side::Tunnel
    } else {
        Side::Inside
    }
}

fn send(i: &mut Inspector, now: Instant, reply: bool, flags: u8, seq: u32, ack: u32) -> Verdict {
    let mut p = seg(reply, flags, seq, ack);
    assert!(checksums_ok(&p));
    i.handle(now, side(reply), &mut p)
}

fn enforcing(policy: InspectPolicy) -> (Inspector, Instant) {
    let (mut i, now) = inspector(policy);
    i.set_handshake_enforcement(true);
    (i, now)
}

fn state(i: &Inspector) -> ConnState {
    i.connections().next().expect("one connection").state
}

const MISMATCH: Verdict = Verdict::Drop(DropCause::OutOfState(OutOfState::HandshakeMismatch));

#[test]
fn a_valid_handshake_passes_and_its_isns_are_recorded_and_streamed() {
    let (mut i, now) = enforcing(accept_all());
    i.enable_change_stream(16);
    let (x, y) = (0xffff_fff0_u32, 0x1234_5678_u32);
    assert_eq!(send(&mut i, now, false, SYN, x, 0), Verdict::Accept);
    assert_eq!(
        send(&mut i, now, true, SYN | ACK, y, x.wrapping_add(1)),
        Verdict::Accept
    );
    assert_eq!(
        send(&mut i, now, false, ACK, x.wrapping_add(1), y + 1),
        Verdict::Accept
    );
    assert_eq!(state(&i), ConnState::Tcp(TcpState::Established));
    let want = Handshake {
        client_isn: Some(x),
        server_isn: Some(y),
    };
    assert_eq!(i.connections().next().unwrap().handshake, want);
    let s = i.stats();
    assert_eq!(
        (
            s.handshake_verified,
            s.handshake_mismatch,
            s.handshake_unverified,
            s.handshake_replies
        ),
        (2, 0, 0, 1)
    );
    let changes: Vec<Change> = std::iter::from_fn(|| i.poll_change()).collect();
    assert!(
        matches!(changes[0], Change::Created(c) if c.handshake.client_isn == Some(x)
        && c.handshake.server_isn.is_none())
    );
    assert!(matches!(changes[1], Change::Updated { handshake, .. } if handshake == want));
    assert!(matches!(changes[2], Change::Updated { handshake, .. } if handshake == want));
}

#[test]
fn a_syn_ack_with_the_wrong_ack_is_dropped_counted_logged_and_changes_nothing() {
    let (mut i, now) = enforcing(accept_all());
    i.enable_change_stream(16);
    assert_eq!(send(&mut i, now, false, SYN, 100, 0), Verdict::Accept);
    while i.poll_change().is_some() {}
    while i.poll_log().is_some() {}
    for bad in [100, 102, 0, u32::MAX] {
        assert_eq!(send(&mut i, now, true, SYN | ACK, 5000, bad), MISMATCH);
    }
    assert_eq!(state(&i), ConnState::Tcp(TcpState::SynSent));
    assert!(i
        .connections()
        .next()
        .unwrap()
        .handshake
        .server_isn
        .is_none());
    assert!(i.poll_change().is_none(), "nothing to sync");
    let s = i.stats();
    assert_eq!((s.handshake_mismatch, s.dropped_out_of_state), (4, 4));
    let log = i.poll_log().expect("a log line");
    assert!(
        log.warn && log.message.contains("handshake mismatch"),
        "{log:?}"
    );
    // The genuine SYN-ACK still passes, and its ISN (not a forged one) is recorded.
    assert_eq!(
        send(&mut i, now, true, SYN | ACK, 7000, 101),
        Verdict::Accept
    );
    assert_eq!(
        i.connections().next().unwrap().handshake.server_isn,
        Some(7000)
    );
}

#[test]
fn a_completing_ack_with_the_wrong_seq_or_ack_is_dropped() {
    let (mut i, now) = enforcing(accept_all());
    assert_eq!(send(&mut i, now, false, SYN, 100, 0), Verdict::Accept);
    assert_eq!(
        send(&mut i, now, true, SYN | ACK, 900, 101),
        Verdict::Accept
    );
    for (seq, ack) in [(100, 901), (101, 900), (102, 902), (0, 0)] {
        assert_eq!(
            send(&mut i, now, false, ACK, seq, ack),
            MISMATCH,
            "{seq} {ack}"
        );
        assert_eq!(send(&mut i, now, false, ACK | FIN, seq, ack), MISMATCH);
    }
    assert_eq!(state(&i), ConnState::Tcp(TcpState::SynReceived));
    assert_eq!(i.stats().handshake_mismatch, 8);
    // A retransmitted SYN-ACK is checked too; a RST is never refused by the check.
    assert_eq!(send(&mut i, now, true, SYN | ACK, 900, 55), MISMATCH);
    assert_eq!(send(&mut i, now, false, ACK, 101, 901), Verdict::Accept);
    assert_eq!(state(&i), ConnState::Tcp(TcpState::Established));
    // Past the handshake, sequence numbers are not looked at.
    assert_eq!(send(&mut i, now, false, ACK, 5, 5), Verdict::Accept);
    assert_eq!(send(&mut i, now, true, RST, 0, 0), Verdict::Accept);
}

#[test]
fn off_by_default_nothing_is_recorded_or_checked_but_the_syn_ack_is_counted() {
    let (mut i, now) = inspector(accept_all());
    assert!(!i.handshake_enforcement());
    i.enable_change_stream(16);
    assert_eq!(send(&mut i, now, false, SYN, 100, 0), Verdict::Accept);
    assert_eq!(send(&mut i, now, true, SYN | ACK, 900, 7), Verdict::Accept);
    assert_eq!(send(&mut i, now, false, ACK, 1, 2), Verdict::Accept);
    assert_eq!(state(&i), ConnState::Tcp(TcpState::Established));
    assert!(i.connections().next().unwrap().handshake.is_empty());
    let s = i.stats();
    assert_eq!(
        (
            s.handshake_verified,
            s.handshake_mismatch,
            s.handshake_unverified,
            s.handshake_replies
        ),
        (0, 0, 0, 1)
    );
    for change in std::iter::from_fn(|| i.poll_change()) {
        match change {
            Change::Created(c) => assert!(c.handshake.is_empty()),
            Change::Updated { handshake, .. } => assert!(handshake.is_empty()),
            Change::Deleted { .. } => {}
        }
    }
}

#[test]
fn unknown_isns_let_the_handshake_through_unverified() {
    // Created while enforcement was off (or by a member without it).
    let (mut i, now) = inspector(accept_all());
    assert_eq!(send(&mut i, now, false, SYN, 100, 0), Verdict::Accept);
    i.set_handshake_enforcement(true);
    assert_eq!(send(&mut i, now, true, SYN | ACK, 900, 5), Verdict::Accept);
    // The server's ISN is known now, the client's is not: the ACK passes unverified too.
    assert_eq!(send(&mut i, now, false, ACK, 1, 901), Verdict::Accept);
    let s = i.stats();
    assert_eq!((s.handshake_unverified, s.handshake_mismatch), (2, 0));
    assert_eq!(state(&i), ConnState::Tcp(TcpState::Established));
}

#[test]
fn without_a_rule_base_a_mismatch_passes_untracked_without_advancing() {
    let (mut i, now) = enforcing(InspectPolicy::default());
    assert_eq!(send(&mut i, now, false, SYN, 100, 0), Verdict::Accept);
    assert_eq!(send(&mut i, now, true, SYN | ACK, 900, 3), Verdict::Accept);
    assert_eq!(state(&i), ConnState::Tcp(TcpState::SynSent));
    assert_eq!((i.stats().untracked, i.stats().handshake_mismatch), (1, 0));
}

/// The cluster case in miniature: the SYN at one inspector, the SYN-ACK at a second that
/// imported the connection, the ACK at a third that imported both changes.
#[test]
fn the_isns_travel_with_the_change_stream_and_the_third_inspector_checks_the_ack() {
    let t0 = Instant::now();
    let mk = |member| {
        let mut i = Inspector::new(accept_all(), member, u64::from(member), t0);
        i.set_handshake_enforcement(true);
        i.enable_change_stream(16);
        i
    };
    let (mut a, mut b, mut c) = (mk(1), mk(2), mk(3));
    let relay = |from: &mut Inspector, to: &mut [&mut Inspector]| {
        while let Some(ch) = from.poll_change() {
            for t in to.iter_mut() {
                t.apply(t0, ch).unwrap();
            }
        }
    };
    assert_eq!(send(&mut a, t0, false, SYN, 4242, 0), Verdict::Accept);
    relay(&mut a, &mut [&mut b, &mut c]);
    assert_eq!(send(&mut b, t0, true, SYN | ACK, 17, 4243), Verdict::Accept);
    relay(&mut b, &mut [&mut a, &mut c]);
    assert_eq!(send(&mut c, t0, false, ACK, 4243, 99), MISMATCH);
    assert_eq!(send(&mut c, t0, false, ACK, 4242, 18), MISMATCH);
    assert_eq!(c.stats().handshake_mismatch, 2);
    assert_eq!(send(&mut c, t0, false, ACK, 4243, 18), Verdict::Accept);
    assert_eq!(state(&c), ConnState::Tcp(TcpState::Established));
    // An importer keeps what it knew: an update without ISNs does not erase them.
    let cn = *a.connections().next().unwrap();
    a.apply(
        t0,
        Change::Updated {
            id: cn.id,
            init_side: cn.init_side,
            orig: cn.orig,
            state: cn.state,
            expires_ms: CLOCK_BASE_MS + 1000,
            handshake: Handshake::default(),
        },
    )
    .unwrap();
    assert_eq!(
        a.connections().next().unwrap().handshake,
        Handshake {
            client_isn: Some(4242),
            server_isn: Some(17)
        }
    );
}

#[test]
fn mismatch_log_lines_are_rate_limited_and_every_drop_is_counted() {
    let (mut i, now) = enforcing(accept_all());
    assert_eq!(send(&mut i, now, false, SYN, 100, 0), Verdict::Accept);
    while i.poll_log().is_some() {}
    for n in 0..200 {
        assert_eq!(send(&mut i, now, true, SYN | ACK, 1, 200 + n), MISMATCH);
    }
    let lines = std::iter::from_fn(|| i.poll_log()).count();
    assert!((1..=20).contains(&lines), "{lines} log lines");
    assert_eq!(i.stats().handshake_mismatch, 200);
}

proptest! {
    /// Any handshake with consistent numbers passes; changing the SYN-ACK's ack or the ACK's
    /// seq or ack by any non-zero amount is refused (and the genuine packet still passes).
    #[test]
    fn valid_handshakes_pass_and_any_wrong_number_is_refused(
        x in any::<u32>(),
        y in any::<u32>(),
        d_synack in any::<u32>(),
        d_seq in any::<u32>(),
        d_ack in any::<u32>(),
    ) {
        let (mut i, now) = enforcing(accept_all());
        prop_assert_eq!(send(&mut i, now, false, SYN, x, 0), Verdict::Accept);
        let good_ack = x.wrapping_add(1);
        if d_synack != 0 {
            prop_assert_eq!(send(&mut i, now, true, SYN | ACK, y, good_ack.wrapping_add(d_synack)), MISMATCH);
        }
        prop_assert_eq!(send(&mut i, now, true, SYN | ACK, y, good_ack), Verdict::Accept);
        let (seq, ack) = (x.wrapping_add(1), y.wrapping_add(1));
        if d_seq != 0 || d_ack != 0 {
            prop_assert_eq!(
                send(&mut i, now, false, ACK, seq.wrapping_add(d_seq), ack.wrapping_add(d_ack)),
                MISMATCH
            );
            prop_assert_eq!(state(&i), ConnState::Tcp(TcpState::SynReceived));
        }
        prop_assert_eq!(send(&mut i, now, false, ACK, seq, ack), Verdict::Accept);
        prop_assert_eq!(state(&i), ConnState::Tcp(TcpState::Established));
        prop_assert_eq!(i.stats().handshake_verified, 2);
    }

    /// The pure check: the only SYN-ACK that passes is the one acknowledging client ISN + 1,
    /// and it never overwrites a known server ISN.
    #[test]
    fn check_handshake_accepts_exactly_the_right_syn_ack(
        x in any::<u32>(), y in any::<u32>(), known in proptest::option::of(any::<u32>()), ack in any::<u32>(),
    ) {
        let hs = Handshake { client_isn: Some(x), server_isn: known };
        let r = check_handshake(hs, TcpState::SynSent, Dir::Reply, SYN | ACK, y, ack);
        if ack == x.wrapping_add(1) {
            let (out, check) = r.unwrap();
            prop_assert_eq!(check, HandshakeCheck::Verified);
            prop_assert_eq!(out.server_isn, Some(known.unwrap_or(y)));
        } else {
            prop_assert_eq!(r, Err(HandshakeMismatch::SynAck { ack, expected: x.wrapping_add(1) }));
        }
    }
}
