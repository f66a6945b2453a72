//! IKEv2 codec on arbitrary bytes: `parse`, `parse_payloads`, and a re-encode round trip of
//! whatever parsed. Panics (including failed assertions) are findings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_wire::ike::{self, Message, Payload};

/// Re-encodes a parsed message, copying the SK/SKF body from the bytes it was parsed from.
fn reencode(msg: &Message, src: &[u8]) -> Vec<u8> {
    let mut out = msg.encode();
    if let Some(Payload::Sk { body, .. } | Payload::Skf { body, .. }) = msg.payloads.last() {
        out.extend_from_slice(&src[body.clone()]);
        ike::set_length(&mut out);
    }
    out
}

/// Normalises what the encoder may legitimately change (header fields it recomputes).
fn same(a: &Message, b: &Message) -> bool {
    a.payloads.len() == b.payloads.len()
        && a.header.spi_i == b.header.spi_i
        && a.header.message_id == b.header.message_id
        && a.payloads
            .iter()
            .zip(&b.payloads)
            .all(|(x, y)| match (x, y) {
                (
                    Payload::Sk {
                        first_inner: f1,
                        body: b1,
                    },
                    Payload::Sk {
                        first_inner: f2,
                        body: b2,
                    },
                ) => f1 == f2 && b1.len() == b2.len(),
                (
                    Payload::Skf {
                        first_inner: f1,
                        number: n1,
                        total: t1,
                        body: b1,
                    },
                    Payload::Skf {
                        first_inner: f2,
                        number: n2,
                        total: t2,
                        body: b2,
                    },
                ) => (f1, n1, t1, b1.len()) == (f2, n2, t2, b2.len()),
                _ => x == y,
            })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = ike::parse(data) {
        let bytes = reencode(&msg, data);
        let again = ike::parse(&bytes).expect("re-encoded message must parse");
        assert!(same(&msg, &again), "round trip changed the message");
        // A second encode is a fixed point.
        assert_eq!(reencode(&again, &bytes), bytes);
    }
    if let Some((&first, rest)) = data.split_first() {
        if let Ok(payloads) = ike::parse_payloads(first, rest) {
            let mut out = Vec::new();
            let first_out = ike::encode_payloads(&payloads, &mut out);
            if let Some(Payload::Sk { body, .. } | Payload::Skf { body, .. }) = payloads.last() {
                out.extend_from_slice(&rest[body.clone()]);
            }
            let again = ike::parse_payloads(first_out, &out).expect("re-encoded chain must parse");
            assert_eq!(again.len(), payloads.len());
        }
    }
});
