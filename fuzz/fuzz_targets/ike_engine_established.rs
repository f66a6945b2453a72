//! Fuzzes the IKE state machine from an established IKE SA + CHILD SA, so the ops go straight
//! at rekeys, rekey collisions, deletes and liveness (`ike_engine` starts from nothing). Same
//! op interpreter and invariants: `crates/rampart-ike/tests/fuzz_harness/mod.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/rampart-ike/tests/fuzz_harness/mod.rs"]
mod harness;

fuzz_target!(|input: harness::Input| {
    harness::World::run_established(&input);
});
