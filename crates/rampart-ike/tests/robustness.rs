//! Hostile input never panics and never disturbs an established pair.

mod util;

use std::time::Duration;

use proptest::prelude::*;
use util::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn mutated_messages_are_harmless(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), pick in any::<usize>(), cut in any::<usize>()) {
        let (a, b) = configs(false);
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

    #[test]
    fn random_bytes_are_harmless(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        let (a, b) = configs(false);
        let mut p = Pair::new(a, b);
        let src = "192.0.2.1:500".parse().unwrap();
        let dst = "203.0.113.2:500".parse().unwrap();
        p.b.handle_datagram(p.now, dst, src, &data);
        let mut d = data.clone();
        if d.len() >= 28 {
            d[17] = 0x20;
            let len = (d.len() as u32).to_be_bytes();
            d[24..28].copy_from_slice(&len);
            p.b.handle_datagram(p.now, dst, src, &d);
        }
        p.run(Duration::from_secs(1));
    }
}
