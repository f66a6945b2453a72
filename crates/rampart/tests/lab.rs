//! `rampart lab`: exit codes, the reproduction hint, and byte-identical reruns.

use std::process::Command;

fn rampart(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .output()
        .expect("rampart runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn showcase_passes_and_lists_scenarios() {
    let (code, text) = rampart(&["lab"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("result: PASS"), "{text}");
    let (code, text) = rampart(&["lab", "list"]);
    assert_eq!(code, 0, "{text}");
    for name in [
        "site-to-site",
        "rekey-under-load",
        "dead-peer",
        "lossy-wan",
        "cert-behind-nat",
    ] {
        assert!(text.contains(name), "{text}");
    }
}

#[test]
fn same_seed_same_output() {
    let (_, a) = rampart(&["lab", "run", "site-to-site", "--seed", "5"]);
    let (_, b) = rampart(&["lab", "run", "site-to-site", "--seed", "5"]);
    assert_eq!(a, b);
}

#[test]
fn unknown_scenario_is_a_usage_error() {
    let (code, text) = rampart(&["lab", "run", "no-such-scenario"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("rampart lab list"), "{text}");
}

#[test]
fn failed_assertion_exits_1_and_prints_the_seed() {
    let dir = std::env::temp_dir().join(format!("rampart-lab-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = include_str!("../../../scenarios/site-to-site.toml")
        .replace("up_within = \"1s\"", "up_within = \"10ms\"");
    let file = dir.join("impossible.toml");
    std::fs::write(&file, text).unwrap();
    let path = file.display().to_string();
    let (code, out) = rampart(&["lab", "run", &path, "--seed", "9"]);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("reproduce with: rampart lab run {path} --seed 9")),
        "{out}"
    );
}

#[test]
fn cert_behind_nat_runs_with_its_certificates() {
    let (code, text) = rampart(&["lab", "run", "cert-behind-nat"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("IKE fragmentation"), "{text}");
}
