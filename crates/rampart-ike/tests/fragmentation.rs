//! RFC 7383 IKE fragmentation between two engines: negotiation, fragmented IKE_AUTH with loss,
//! reordering, forged and replayed fragments.

mod util;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use rampart_crypto::Encr;
use rampart_wire::ike::{exchange, notify, parse, payload_type, Payload};
use util::*;

/// A datagram size that cuts a PSK IKE_AUTH into several fragments: 200 - 20 (IP) - 8 (UDP) - 4
/// (non-ESP marker) leaves IKE messages of at most 168 bytes.
const SMALL: u16 = 200;
const SMALL_MSG: usize = 168;

fn small_configs() -> (SideConfig, SideConfig) {
    let (mut a, mut b) = configs(false);
    a.fragment_size = SMALL;
    b.fragment_size = SMALL;
    (a, b)
}

fn is_skf(p: &Packet) -> bool {
    p.msg.get(16) == Some(&payload_type::SKF)
}

/// (number, total) of an SKF packet.
fn frag_no(p: &Packet) -> (u16, u16) {
    let m = parse(&p.msg).unwrap();
    match m.payloads.last() {
        Some(Payload::Skf { number, total, .. }) => (*number, *total),
        other => panic!("not a fragment: {other:?}"),
    }
}

fn auth_packets(p: &Pair, from: Side) -> Vec<Packet> {
    p.sent
        .iter()
        .filter(|x| x.from == from && x.exchange() == exchange::IKE_AUTH)
        .cloned()
        .collect()
}

fn advertises_fragmentation(p: &Packet) -> bool {
    let m = parse(&p.msg).unwrap();
    m.payloads
        .iter()
        .any(|x| matches!(x, Payload::Notify(n) if n.kind == notify::IKEV2_FRAGMENTATION_SUPPORTED))
}

#[test]
fn fragmented_ike_auth_establishes_and_fits_the_limit() {
    for encr in ["aes256gcm16", "aes128-sha256"] {
        let (mut a, mut b) = small_configs();
        let prop = ike_prop(&format!("{encr}-prfsha256-x25519"));
        a.peers[0].ike_proposals = vec![prop.clone()];
        b.peers[0].ike_proposals = vec![prop];
        let mut p = Pair::new(a, b);
        p.initiate();
        p.run(Duration::from_secs(1));
        p.assert_one_matching_child();
        let init: Vec<&Packet> = p
            .sent
            .iter()
            .filter(|x| x.exchange() == exchange::IKE_SA_INIT)
            .collect();
        assert!(init
            .iter()
            .all(|x| advertises_fragmentation(x) && !is_skf(x)));
        for side in [Side::A, Side::B] {
            let auth = auth_packets(&p, side);
            assert!(auth.len() >= 2, "{encr} {side:?}: {} fragments", auth.len());
            assert!(auth.iter().all(is_skf));
            assert!(auth.iter().all(|x| x.msg.len() <= SMALL_MSG));
            let total = frag_no(&auth[0]).1;
            let numbers: Vec<u16> = auth.iter().map(|x| frag_no(x).0).collect();
            assert_eq!(numbers, (1..=total).collect::<Vec<u16>>());
        }
        // Later exchanges too: a CHILD SA rekey larger than the limit is fragmented.
        let child = p.only_child(Side::A);
        let sent_before = p.sent.len();
        p.a.rekey_child(p.now, child);
        p.run(Duration::from_secs(1));
        p.assert_one_matching_child();
        let rekey: Vec<&Packet> = p.sent[sent_before..]
            .iter()
            .filter(|x| x.exchange() == exchange::CREATE_CHILD_SA)
            .collect();
        assert!(rekey.iter().any(|x| is_skf(x)));
        assert!(p
            .sent
            .iter()
            .all(|x| x.msg.len() <= SMALL_MSG || x.exchange() == exchange::IKE_SA_INIT));
        assert_eq!(p.live_children(Side::A)[0].encr, Encr::AesGcm16_256);
    }
}

#[test]
fn default_size_does_not_fragment_small_messages() {
    let (a, b) = configs(false);
    let mut p = Pair::new(a, b);
    p.initiate();
    p.run(Duration::from_secs(1));
    p.assert_one_matching_child();
    assert!(!p.sent.iter().any(is_skf));
    assert_eq!(p.sent.len(), 4);
}

#[test]
fn disabled_on_either_side_means_no_fragments() {
    for disable_a in [true, false] {
        let (mut a, mut b) = small_configs();
        if disable_a {
            a.fragmentation = false;
        } else {
            b.fragmentation = false;
        }
        let mut p = Pair::new(a, b);
        p.initiate();
        p.run(Duration::from_secs(1));
        p.assert_one_matching_child();
        assert!(!p.sent.iter().any(is_skf), "disable_a={disable_a}");
        // Oversized but whole: one IKE_AUTH message each way.
        assert_eq!(auth_packets(&p, Side::A).len(), 1);
        assert_eq!(auth_packets(&p, Side::B).len(), 1);
        assert!(auth_packets(&p, Side::A)[0].msg.len() > SMALL_MSG);
        // The disabled side does not advertise; B only answers what A advertised.
        let init_b = p
            .sent
            .iter()
            .find(|x| x.from == Side::B && x.exchange() == exchange::IKE_SA_INIT)
            .unwrap();
        assert!(!advertises_fragmentation(init_b));
    }
}

#[test]
fn lost_fragments_are_recovered_by_retransmitting_all() {
    let (a, b) = small_configs();
    let mut p = Pair::new(a, b);
    // Lose fragment 2 of A's first IKE_AUTH transmission and fragment 1 of B's first response.
    let seen: Rc<RefCell<Vec<(Side, u16)>>> = Rc::default();
    let s = seen.clone();
    p.drop = Box::new(move |pk| {
        if pk.exchange() != exchange::IKE_AUTH || !is_skf(pk) {
            return false;
        }
        let (n, _) = frag_no(pk);
        let mut s = s.borrow_mut();
        let first_time = !s.contains(&(pk.from, n));
        s.push((pk.from, n));
        first_time && ((pk.from == Side::A && n == 2) || (pk.from == Side::B && n == 1))
    });
    p.initiate();
    p.run(Duration::from_secs(10));
    p.assert_one_matching_child();
    let req = auth_packets(&p, Side::A);
    let total_a = usize::from(frag_no(&req[0]).1);
    // The first transmission went unanswered (fragment 2 lost), so A resent every fragment;
    // then B's response lost fragment 1, so A resent again and B answered from its cache.
    assert_eq!(req.len(), 3 * total_a, "{} / {total_a}", req.len());
    let resp = auth_packets(&p, Side::B);
    let total_b = usize::from(frag_no(&resp[0]).1);
    assert_eq!(resp.len(), 2 * total_b);
}

#[test]
fn reordered_and_forged_fragments() {
    let (a, b) = small_configs();
    let mut p = Pair::new(a, b);
    // Hold back A's IKE_AUTH fragments and deliver them by hand.
    let held: Rc<RefCell<Vec<Packet>>> = Rc::default();
    let h = held.clone();
    p.drop = Box::new(move |pk| {
        if pk.from == Side::A && pk.exchange() == exchange::IKE_AUTH {
            h.borrow_mut().push(pk.clone());
            return true;
        }
        false
    });
    p.initiate();
    p.run(Duration::from_millis(100));
    let frags: Vec<Packet> = held.borrow_mut().drain(..).collect();
    assert!(frags.len() >= 3);
    assert!(p
        .b
        .status(p.now)
        .iter()
        .all(|s| s.state == rampart_ike::IkeSaStateKind::Connecting));
    p.drop = Box::new(|_| false);
    let (src, dst) = (frags[0].src, frags[0].dst);
    // Reverse order; before each real fragment: a forged copy (flipped ICV), a truncated one
    // and a copy claiming a different fragment total.
    for f in frags.iter().rev() {
        let mut forged = f.msg.clone();
        let n = forged.len();
        forged[n - 1] ^= 0x40;
        p.b.handle_datagram(p.now, dst, src, &forged);
        let mut short = f.msg[..n - 10].to_vec();
        short[24..28].copy_from_slice(&((n - 10) as u32).to_be_bytes());
        p.b.handle_datagram(p.now, dst, src, &short);
        let mut other_total = f.msg.clone();
        // SKF header: 28 (IKE header) + 4 (generic) + number (2) + total (2).
        other_total[34..36].copy_from_slice(&100u16.to_be_bytes());
        p.b.handle_datagram(p.now, dst, src, &other_total);
        p.b.handle_datagram(p.now, dst, src, &f.msg);
        // Duplicates are ignored (fragment 1 comes last and completes the message; a copy of it
        // after that would rightly count as a retransmitted request).
        if frag_no(f).0 != 1 {
            p.b.handle_datagram(p.now, dst, src, &f.msg);
        }
    }
    p.run(Duration::from_secs(1));
    p.assert_one_matching_child();
    // B answered exactly once (its fragments), and A never had to retransmit.
    let resp = auth_packets(&p, Side::B);
    assert_eq!(resp.len(), usize::from(frag_no(&resp[0]).1));
    assert_eq!(auth_packets(&p, Side::A).len(), frags.len());

    // After the exchange: a replayed non-first request fragment is ignored, fragment 1 makes B
    // resend its whole cached response.
    let before = p.sent.len();
    p.b.handle_datagram(p.now, dst, src, &frags[1].msg);
    p.run(Duration::from_millis(100));
    assert_eq!(p.sent.len(), before);
    p.b.handle_datagram(p.now, dst, src, &frags[0].msg);
    p.run(Duration::from_millis(100));
    assert_eq!(p.sent.len() - before, resp.len());
    p.assert_one_matching_child();
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

    /// Mutated or truncated fragments (and other messages) of a fragmenting pair never panic and
    /// never disturb the established SAs.
    #[test]
    fn mutated_fragments_are_harmless(
        flips in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..6),
        pick in proptest::prelude::any::<usize>(),
        cut in proptest::prelude::any::<usize>(),
    ) {
        let (a, b) = small_configs();
        let mut p = Pair::new(a, b);
        p.initiate();
        p.run(Duration::from_secs(1));
        p.assert_one_matching_child();
        let sent = p.sent.clone();
        let pk = &sent[pick % sent.len()];
        let mut m = pk.msg.clone();
        for (i, x) in &flips {
            let len = m.len();
            m[i % len] ^= x | 1;
        }
        let keep = cut % (m.len() + 1);
        for msg in [&m[..], &m[..keep]] {
            p.a.handle_datagram(p.now, pk.dst, pk.src, msg);
            p.b.handle_datagram(p.now, pk.dst, pk.src, msg);
        }
        p.run(Duration::from_secs(1));
        p.assert_one_matching_child();
    }
}
