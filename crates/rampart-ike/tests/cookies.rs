//! RFC 7296 2.6 cookies and the per-source half-open limit: a responder under an IKE_SA_INIT
//! flood keeps no state for initiators that do not return its cookie, while a legitimate initiator
//! (which does) still gets through.

mod util;

use std::net::SocketAddr;
use std::time::Duration;

use rampart_ike::IkeEvent;
use rampart_wire::ike::{exchange, notify, parse, Payload};
use util::*;

/// One IKE_SA_INIT request as A would send it, from a throwaway engine.
fn init_template() -> Vec<u8> {
    let (a, _) = configs(false);
    let (mut x, peer) = engine(a, 9);
    x.initiate(std::time::Instant::now(), peer);
    while let Some(ev) = x.poll_event() {
        if let IkeEvent::Transmit { msg, .. } = ev {
            return msg;
        }
    }
    panic!("no IKE_SA_INIT");
}

/// What the responder answered to one request.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Nothing,
    Cookie,
    Proceed,
    Other,
}

fn b_addr() -> SocketAddr {
    SocketAddr::new(ip(B_IP), 500)
}

/// Sends the template from `src` with initiator SPI `spi` (and an optional COOKIE first) to `b`.
fn send_init(
    p: &mut Pair,
    template: &[u8],
    src: SocketAddr,
    spi: u64,
    cookie: Option<&[u8]>,
) -> Answer {
    let mut m = parse(template).unwrap();
    m.header.spi_i = spi;
    if let Some(c) = cookie {
        m.payloads.insert(
            0,
            Payload::Notify(rampart_wire::ike::Notify {
                protocol: 0,
                spi: vec![],
                kind: notify::COOKIE,
                data: c.to_vec(),
            }),
        );
    }
    let bytes = m.encode();
    p.b.handle_datagram(p.now, b_addr(), src, &bytes);
    let mut answer = Answer::Nothing;
    while let Some(ev) = p.b.poll_event() {
        let IkeEvent::Transmit { msg, remote, .. } = ev else {
            continue;
        };
        assert_eq!(remote, src);
        let r = parse(&msg).unwrap();
        assert_eq!(r.header.spi_i, spi);
        answer = if r
            .payloads
            .iter()
            .any(|x| matches!(x, Payload::Notify(n) if n.kind == notify::COOKIE))
        {
            assert_eq!(r.header.spi_r, 0, "a cookie request keeps no state");
            Answer::Cookie
        } else if r.payloads.iter().any(|x| matches!(x, Payload::Sa(_))) {
            Answer::Proceed
        } else {
            Answer::Other
        };
    }
    answer
}

fn cookie_of(p: &mut Pair, template: &[u8], src: SocketAddr, spi: u64) -> Vec<u8> {
    let mut m = parse(template).unwrap();
    m.header.spi_i = spi;
    p.b.handle_datagram(p.now, b_addr(), src, &m.encode());
    while let Some(ev) = p.b.poll_event() {
        if let IkeEvent::Transmit { msg, .. } = ev {
            let r = parse(&msg).unwrap();
            for x in r.payloads {
                if let Payload::Notify(n) = x {
                    if n.kind == notify::COOKIE {
                        return n.data;
                    }
                }
            }
        }
    }
    panic!("no cookie");
}

#[test]
fn flood_triggers_cookies_and_legitimate_initiator_completes() {
    let (a, mut b) = configs(false);
    b.cookie_threshold = 10;
    b.half_open_per_source = 1000;
    let mut p = Pair::new(a, b);
    let t = init_template();
    // 50 requests from spoofed ports of one address: the first 10 create half-open SAs, the
    // rest only get cookies.
    let mut answers = Vec::new();
    for i in 0..50u16 {
        let src = SocketAddr::new(ip("198.51.100.77"), 20000 + i);
        answers.push(send_init(&mut p, &t, src, 0x1000 + u64::from(i), None));
    }
    assert!(
        answers[..10].iter().all(|a| *a == Answer::Proceed),
        "{answers:?}"
    );
    assert!(
        answers[10..].iter().all(|a| *a == Answer::Cookie),
        "{answers:?}"
    );
    assert_eq!(p.b.half_open_count(), 10);
    assert_eq!(p.b.dos_stats().cookies_sent, 40);

    // The real peer gets a cookie request, returns the cookie (as the first payload) and
    // completes.
    p.initiate();
    p.run(Duration::from_secs(1));
    p.assert_one_matching_child();
    let inits: Vec<&Packet> = p
        .sent
        .iter()
        .filter(|x| x.exchange() == exchange::IKE_SA_INIT)
        .collect();
    assert_eq!(
        inits.len(),
        4,
        "request, cookie, request with cookie, response"
    );
    let cookie_req = parse(&inits[1].msg).unwrap();
    let Some(Payload::Notify(c)) = cookie_req.payloads.first() else {
        panic!("{cookie_req:?}")
    };
    assert_eq!(c.kind, notify::COOKIE);
    let retry = parse(&inits[2].msg).unwrap();
    match retry.payloads.first() {
        Some(Payload::Notify(n)) if n.kind == notify::COOKIE => assert_eq!(n.data, c.data),
        other => panic!("retry does not start with the cookie: {other:?}"),
    }
    assert_eq!(retry.header.spi_i, cookie_req.header.spi_i);
    let st = p.b.dos_stats();
    assert_eq!(st.cookies_accepted, 1);
    assert_eq!(st.cookies_sent, 41);
    // The flood's half-open SAs time out; the tunnel stays.
    p.run(Duration::from_secs(40));
    assert_eq!(p.b.half_open_count(), 0);
    p.assert_one_matching_child();
}

#[test]
fn threshold_zero_always_asks() {
    let (a, mut b) = configs(false);
    b.cookie_threshold = 0;
    let mut p = Pair::new(a, b);
    p.initiate();
    p.run(Duration::from_secs(1));
    p.assert_one_matching_child();
    let st = p.b.dos_stats();
    assert_eq!((st.cookies_sent, st.cookies_accepted), (1, 1));
}

#[test]
fn cookies_are_bound_to_the_initiator() {
    let (a, mut b) = configs(false);
    b.cookie_threshold = 0;
    let mut p = Pair::new(a, b);
    let t = init_template();
    let src = SocketAddr::new(ip("198.51.100.77"), 20000);
    let c = cookie_of(&mut p, &t, src, 7);
    // Garbage, another SPI, another address: a fresh cookie, no state.
    assert_eq!(
        send_init(&mut p, &t, src, 7, Some(b"garbage")),
        Answer::Cookie
    );
    assert_eq!(send_init(&mut p, &t, src, 8, Some(&c)), Answer::Cookie);
    let other = SocketAddr::new(ip("198.51.100.78"), 20000);
    assert_eq!(send_init(&mut p, &t, other, 7, Some(&c)), Answer::Cookie);
    assert_eq!(p.b.half_open_count(), 0);
    assert_eq!(p.b.dos_stats().cookies_invalid, 3);
    // The right one (another source port of the same address is fine: ports are not bound).
    let port = SocketAddr::new(ip("198.51.100.77"), 20001);
    assert_eq!(send_init(&mut p, &t, port, 7, Some(&c)), Answer::Proceed);
    assert_eq!(p.b.half_open_count(), 1);
    // Still valid after one secret rotation, not after two.
    p.run(Duration::from_secs(150));
    assert_eq!(send_init(&mut p, &t, src, 7, Some(&c)), Answer::Proceed);
    p.run(Duration::from_secs(150));
    let port2 = SocketAddr::new(ip("198.51.100.77"), 20002);
    assert_eq!(send_init(&mut p, &t, port2, 7, Some(&c)), Answer::Cookie);
}

#[test]
fn half_open_limit_per_source() {
    let (a, mut b) = configs(false);
    b.half_open_per_source = 5;
    let mut p = Pair::new(a, b);
    let t = init_template();
    let answers: Vec<Answer> = (0..8u16)
        .map(|i| {
            send_init(
                &mut p,
                &t,
                SocketAddr::new(ip(A_IP), 30000 + i),
                u64::from(i) + 1,
                None,
            )
        })
        .collect();
    assert_eq!(
        answers.iter().filter(|a| **a == Answer::Proceed).count(),
        5,
        "{answers:?}"
    );
    assert!(answers[5..].iter().all(|a| *a == Answer::Nothing));
    assert_eq!(p.b.dos_stats().per_source_drops, 3);
    // Another address is not affected.
    let other = SocketAddr::new(ip("198.51.100.9"), 500);
    assert_eq!(send_init(&mut p, &t, other, 99, None), Answer::Proceed);
    // The real peer at A_IP is blocked until the flood's half-open SAs expire, then gets in
    // through its own retransmissions / restart.
    p.initiate();
    p.run(Duration::from_secs(5));
    assert!(p.live_children(Side::A).is_empty());
    p.run(Duration::from_secs(120));
    p.assert_one_matching_child();
    assert!(p.b.dos_stats().per_source_drops > 3);
}
