//! Determinism: one seed, one run, byte for byte; and a property test over many seeds of the
//! lossy scenario (the tunnel converges and the transfers are byte-exact whatever the seed).

use proptest::prelude::*;

fn render(name: &str, seed: u64) -> (bool, String) {
    let (sc, dir) = rampart_sim::load(name).unwrap();
    let report = rampart_sim::run(&sc, dir.as_deref(), Some(seed)).unwrap();
    (report.passed(), report.render())
}

#[test]
fn same_seed_gives_byte_identical_output() {
    for name in [
        "showcase",
        "dead-peer",
        "cert-behind-nat",
        "hotel-wifi",
        "proxy-only",
        "nat-rebinding",
        "roaming",
        "mtu-black-hole",
        "ls-asymmetric",
    ] {
        let (_, a) = render(name, 42);
        let (_, b) = render(name, 42);
        assert_eq!(a, b, "{name}: two runs with seed 42 differ");
    }
}

#[test]
fn different_seeds_give_different_runs() {
    let (_, a) = render("showcase", 1);
    let (_, b) = render("showcase", 2);
    assert_ne!(a, b, "the seed does not reach the simulation");
}

/// The lossy scenario with smaller transfers, so that many seeds fit in a debug test run.
fn lossy_small() -> rampart_sim::Scenario {
    let text = rampart_sim::catalogue()
        .into_iter()
        .find(|b| b.name == "lossy-wan")
        .unwrap()
        .text
        .replace("size = \"1MB\"", "size = \"256KB\"");
    rampart_sim::scenario::parse(&text, "lossy-wan-small").unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn lossy_wan_converges_for_any_seed(seed in any::<u64>()) {
        let sc = lossy_small();
        let report = rampart_sim::run(&sc, None, Some(seed)).unwrap();
        prop_assert!(report.passed(), "seed {seed}:\n{}", report.render());
    }
}
