//! The equal-cost multipath router with plain hosts: flows spread over the next hops, the two
//! directions of one connection are hashed independently by the two routers, a dead next hop
//! loses its flows to the others after the detection time, and a group of connections
//! completes.
//!
//!   h1 10.1.0.10 -- r-in ==ECMP== p1 / p2 / p3 ==ECMP== r-out -- h2 10.2.0.10

/// The network; `transfers` and `events` are appended as TOML.
fn network(extra: &str) -> rampart_sim::Scenario {
    let mut text = String::from(
        r#"
name = "ecmp"
summary = "three equal-cost paths between two hosts"
duration = "30s"

[[node]]
name = "h1"
kind = "host"
routes = ["0.0.0.0/0 via 10.1.0.1"]

[[node]]
name = "r-in"
kind = "router"
routes = ["10.2.0.0/24 via 10.8.1.2 10.8.2.2 10.8.3.2"]
next_hop_timeout = "300ms"

[[node]]
name = "r-out"
kind = "router"
routes = ["10.1.0.0/24 via 10.7.1.2, 10.7.2.2, 10.7.3.2"]
next_hop_timeout = "300ms"

[[node]]
name = "h2"
kind = "host"
routes = ["0.0.0.0/0 via 10.2.0.1"]

[[link]]
name = "lan-h1"
a = "h1 10.1.0.10/24"
b = "r-in 10.1.0.1/24"

[[link]]
name = "lan-h2"
a = "h2 10.2.0.10/24"
b = "r-out 10.2.0.1/24"
"#,
    );
    for i in 1..=3 {
        text.push_str(&format!(
            r#"
[[node]]
name = "p{i}"
kind = "router"
routes = ["10.1.0.0/24 via 10.8.{i}.1", "10.2.0.0/24 via 10.7.{i}.1"]

[[link]]
name = "in-p{i}"
a = "r-in 10.8.{i}.1/30"
b = "p{i} 10.8.{i}.2/30"

[[link]]
name = "out-p{i}"
a = "r-out 10.7.{i}.1/30"
b = "p{i} 10.7.{i}.2/30"
"#
        ));
    }
    text.push_str(extra);
    rampart_sim::scenario::parse(&text, "ecmp").expect("the test scenario parses")
}

/// Packets sent from end `a` (`from_a`) or end `b` of `link`.
fn sent(report: &rampart_sim::Report, link: &str, from_a: bool) -> u64 {
    let (_, d) = report
        .link_directions
        .iter()
        .find(|(name, _)| name == link)
        .expect("link in the report");
    d[usize::from(!from_a)]
}

/// Which middle router carried h1 -> h2 (from r-in) and which h2 -> h1 (from r-out) for a
/// run with one connection.
fn paths_of_one_connection(seed: u64) -> (usize, usize) {
    let sc = network(
        r#"
[[transfer]]
name = "one"
from = "h1"
to = "h2"
size = "64KB"
at = "100ms"

[[assert]]
transfer = "one"
within = "5s"
"#,
    );
    let report = rampart_sim::run(&sc, None, Some(seed)).unwrap();
    assert!(report.passed(), "seed {seed}:\n{}", report.render());
    let forward: Vec<usize> = (1..=3)
        .filter(|i| sent(&report, &format!("in-p{i}"), true) > 0)
        .collect();
    let reverse: Vec<usize> = (1..=3)
        .filter(|i| sent(&report, &format!("out-p{i}"), true) > 0)
        .collect();
    assert_eq!(forward.len(), 1, "seed {seed}: one flow, one forward path");
    assert_eq!(reverse.len(), 1, "seed {seed}: one flow, one reverse path");
    (forward[0], reverse[0])
}

/// Each router hashes with its own seed (drawn from the run's seed): over 30 seeds, a
/// connection's two directions share a middle router about a third of the time, and every
/// middle router is used in each direction.
#[test]
fn the_two_directions_are_hashed_independently() {
    let mut same = 0;
    let mut forward_used = [false; 3];
    let mut reverse_used = [false; 3];
    for seed in 1..=30 {
        let (f, r) = paths_of_one_connection(seed);
        same += usize::from(f == r);
        forward_used[f - 1] = true;
        reverse_used[r - 1] = true;
    }
    // A third of the runs, by chance; 30 runs all or none would be a broken hash.
    assert!((3..=18).contains(&same), "{same} of 30 symmetric");
    assert_eq!(forward_used, [true; 3]);
    assert_eq!(reverse_used, [true; 3]);
}

/// A group of 300 connections: each next hop gets a share in each direction, and all
/// complete byte-exact.
#[test]
fn a_group_of_connections_spreads_over_every_path() {
    let sc = network(
        r#"
[[transfer]]
name = "many"
from = "h1"
to = "h2"
size = "4KB"
at = "100ms"
count = 300
every = "2ms"
port = 9000

[[assert]]
transfer = "many"
within = "5s"
"#,
    );
    let report = rampart_sim::run(&sc, None, Some(3)).unwrap();
    let text = report.render();
    assert!(report.passed(), "{text}");
    assert!(
        text.contains("transfer group many: 300 of 300 connections of 4.0 kB"),
        "{text}"
    );
    for dir in [true, false] {
        let counts: Vec<u64> = (1..=3)
            .map(|i| {
                let link = if dir { "in-p" } else { "out-p" };
                sent(&report, &format!("{link}{i}"), true)
            })
            .collect();
        let total: u64 = counts.iter().sum();
        for c in &counts {
            assert!(
                *c * 100 >= total * 20 && *c * 100 <= total * 47,
                "shares {counts:?} of {total}"
            );
        }
    }
}

/// A middle router dies during a transfer group: after the routers' detection time its flows
/// go over the two others, and every connection completes.
#[test]
fn a_dead_next_hop_loses_its_flows_to_the_others() {
    let sc = network(
        r#"
[[transfer]]
name = "many"
from = "h1"
to = "h2"
size = "256KB"
at = "100ms"
count = 30
every = "10ms"
port = 9000

[[event]]
at = "400ms"
action = "crash"
node = "p2"

[[assert]]
transfer = "many"
within = "15s"
"#,
    );
    let report = rampart_sim::run(&sc, None, Some(5)).unwrap();
    let text = report.render();
    assert!(report.passed(), "{text}");
    let dead: u64 = report
        .drops
        .iter()
        .filter(|r| r[0] == "p2" && r[1] == "node is down")
        .map(|r| r[2].parse::<u64>().unwrap())
        .sum();
    assert!(dead > 0, "nothing reached p2 after its crash:\n{text}");
    // After the detection time nothing more is sent to p2 from either side.
    let after_crash = sent(&report, "in-p2", true) + sent(&report, "out-p2", true);
    let before = {
        let sc = network(
            r#"
[[transfer]]
name = "many"
from = "h1"
to = "h2"
size = "256KB"
at = "100ms"
count = 30
every = "10ms"
port = 9000
"#,
        );
        let r = rampart_sim::run(&sc, None, Some(5)).unwrap();
        sent(&r, "in-p2", true) + sent(&r, "out-p2", true)
    };
    assert!(
        after_crash < before,
        "p2 got {after_crash} packets with its crash, {before} without"
    );
}
