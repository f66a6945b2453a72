//! Fuzzes the MEP probe protocol: the entry point's `Responder::handle_request` and the
//! satellite's prober reply path (`handle_reply`, IKE reports, timeouts) on arbitrary bytes
//! and on genuine requests and replies, right or wrong key, mangled, late or replayed. The
//! op interpreter and its invariants are `rampart_mep::fuzzing::probe_ops` (a unit test runs
//! it on fixed inputs in `cargo test`).
//!
//! Input: a sequence of chunks `op u8, len u8, bytes[len]`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let _ = rampart_mep::fuzzing::probe_ops(input);
});
