//! Fuzzes the IKE state machine: an initiator and a responder (`rampart_ike::Ike`, PSK, seeded
//! RNGs) exchange genuinely encrypted messages while the input delivers, drops, duplicates,
//! reorders, truncates, replays, corrupts and decrypt-mutate-reseals them, advances virtual
//! time and calls the operator hooks. The op interpreter and its invariants live in
//! `crates/rampart-ike/tests/fuzz_harness/mod.rs`, shared with the stable test
//! `crates/rampart-ike/tests/engine_fuzz.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/rampart-ike/tests/fuzz_harness/mod.rs"]
mod harness;

fuzz_target!(|input: harness::Input| {
    harness::World::run(&input);
});
