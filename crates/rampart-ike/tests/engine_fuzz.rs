//! The `ike_engine` fuzz target's op interpreter on a few hundred fixed pseudo-random inputs
//! (stable Rust, part of `cargo test`), from scratch and from an established pair. See
//! `fuzz_harness/mod.rs` for the ops and invariants.

mod fuzz_harness;

use arbitrary::{Arbitrary, Unstructured};
use fuzz_harness::{Input, World};
use rampart_crypto::Rng;

/// Runs `count` inputs of `len` random bytes drawn from `seed`.
fn run_random(seed: u8, count: usize, len: usize) {
    run_random_with(seed, count, len, World::run)
}

fn run_random_with(seed: u8, count: usize, len: usize, run: fn(&Input)) {
    let mut rng = Rng::from_seed([seed; 32]);
    let mut bytes = vec![0u8; len];
    for i in 0..count {
        rng.fill(&mut bytes);
        let mut u = Unstructured::new(&bytes);
        let Ok(input) = Input::arbitrary(&mut u) else {
            continue;
        };
        if std::panic::catch_unwind(|| run(&input)).is_err() {
            panic!("input {i} of seed {seed} failed (FUZZ_TRACE=1 traces it): {input:?}");
        }
    }
}

#[test]
fn short_random_inputs() {
    run_random(1, 300, 64);
}

#[test]
fn long_random_inputs() {
    run_random(2, 200, 512);
}

#[test]
fn no_ops_establishes() {
    for b in 0u8..16 {
        let input = Input::arbitrary(&mut Unstructured::new(&[b])).unwrap();
        World::run(&input);
    }
}

#[test]
fn random_inputs_from_established() {
    run_random_with(3, 200, 256, World::run_established);
}

#[test]
fn every_mode_establishes_without_ops() {
    for bits in 0u8..32 {
        let mode = fuzz_harness::Mode {
            cookies: bits & 1 != 0,
            fragments: bits & 2 != 0,
            cbc: bits & 4 != 0,
            pfs: bits & 8 != 0,
            certs: bits & 16 != 0,
        };
        World::run(&Input {
            mode,
            ops: Vec::new(),
        });
    }
}
