//! Fuzzes the path-MTU probe codec (`rampart_node::pmtu::probe`): any bytes parse or are
//! refused without a panic; a probe never claims an outer size smaller than itself; its ack is
//! exactly the 12-byte header and parses back to the same id and size; an ack is the header.
//!
//! Input: the decrypted payload of a next-header-253 ESP packet.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_node::pmtu::probe::{parse, write_ack, Message, HEADER_LEN};

fuzz_target!(|input: &[u8]| {
    match parse(input) {
        Ok(Message::Probe { id, size }) => {
            assert!(input.len() <= usize::from(size));
            let mut ack = [0u8; HEADER_LEN];
            assert!(write_ack(&mut ack, id, size));
            assert_eq!(parse(&ack), Ok(Message::Ack { id, size }));
        }
        Ok(Message::Ack { .. }) => assert_eq!(input.len(), HEADER_LEN),
        Err(_) => {}
    }
});
