//! The cluster checks (`out_of_state_at_most`, `connections_synced`) on a high-availability
//! pair with a rule base: the standby holds a replica of every connection of the active
//! member, and cutting the sync link shows the check failing.

/// `ha-sync-loss` without its crash, with a rule base on both members (so that their
/// inspection tracks connections) and the assertions in `asserts`.
fn ha_with_rules(events: &str, asserts: &str) -> rampart_sim::Scenario {
    let builtin = rampart_sim::catalogue()
        .into_iter()
        .find(|b| b.name == "ha-sync-loss")
        .unwrap();
    let head = &builtin.text[..builtin.text.find("[[event]]").expect("an event")];
    assert_eq!(head.matches("start_action = \"always\"").count(), 2);
    let text = head.replace(
        "start_action = \"always\"",
        "start_action = \"always\"\n[[rule]]\nname = \"all\"\naction = \"accept\"",
    ) + events
        + asserts;
    rampart_sim::scenario::parse(&text, "ha-rules").unwrap()
}

const CHECKS: &str = r#"
[[assert]]
nodes = ["m1", "m2"]
connections_synced = true

[[assert]]
nodes = ["m1", "m2"]
out_of_state_at_most = 0

[[assert]]
transfer = "across"
"#;

#[test]
fn the_standby_holds_every_connection_of_the_active_member() {
    let sc = ha_with_rules("", CHECKS);
    let report = rampart_sim::run(&sc, None, None).unwrap();
    let text = report.render();
    assert!(report.passed(), "{text}");
    // The transfers opened connections, and both members list them.
    let line = text
        .lines()
        .find(|l| l.contains("hold every connection the others hold"))
        .unwrap();
    let counts: Vec<u64> = line
        .split("connections: ")
        .nth(1)
        .unwrap()
        .split(", ")
        .map(|c| c.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 2, "{line}");
    // At least one connection per transfer (closed ones stay in the table a while).
    let transfers = sc.transfers.len() as u64;
    assert!(counts[0] >= transfers && counts[0] == counts[1], "{line}");
}

/// With the sync link cut before the transfers, both members go active (split brain) and the
/// one that carries the transfers never tells the other: the check fails and says which
/// member lacks what.
#[test]
fn a_cut_sync_link_shows_as_missing_connections() {
    let cut = r#"
[[event]]
at = "1s"
action = "cut"
link = "sync"
"#;
    let sc = ha_with_rules(cut, CHECKS);
    // One connection per transfer, all opened after the cut.
    let lacks = format!(" lacks {} of ", sc.transfers.len());
    let report = rampart_sim::run(&sc, None, None).unwrap();
    let text = report.render();
    let synced = report
        .outcomes
        .iter()
        .find(|o| o.label.contains("hold every connection"))
        .unwrap();
    match &synced.verdict {
        rampart_sim::Verdict::Fail(why) => {
            assert!(why.contains(&lacks), "{why}\n{text}")
        }
        rampart_sim::Verdict::Pass(why) => panic!("passed without sync: {why}\n{text}"),
    }
}
