//! Multiple Entry Points: `[mep]`, the MEP keys of `[[entry_point_group]]` and its rules, the
//! peer keys `probe`, `probe_key` and `backup_of`, implicit groups, `[rim]`, and the engine
//! configurations built from them.

use rampart_config::*;

/// Satellite `sat` with three entry points: m1 (10.2.0.0/24), m2 (10.2.0.0/16), m3 (10.3.0.0/24).
const BASE: &str = r#"[gateway]
name = "sat"

[local]
domain = ["10.1.0.0/24"]

[[peer]]
name = "m1"
local_address = "192.0.2.1"
remote_address = "192.0.2.11"
psk = "0123456789abcdef"
remote_domain = ["10.2.0.0/24"]

[[peer]]
name = "m2"
local_address = "192.0.2.1"
remote_address = "192.0.2.12"
psk = "0123456789abcdef"
remote_domain = ["10.2.0.0/16"]

[[peer]]
name = "m3"
local_address = "192.0.2.1"
remote_address = "192.0.2.13"
psk = "0123456789abcdef"
remote_domain = ["10.3.0.0/24"]
"#;

fn lines(text: &str) -> Vec<String> {
    match parse(text, "gw.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

fn ok(text: &str) -> GatewayConfig {
    parse(text, "gw.toml").unwrap_or_else(|e| panic!("unexpected errors:\n{e}"))
}

fn net(s: &str) -> ipnet::IpNet {
    s.parse().unwrap()
}

/// BASE with `extra` keys in peer `peer` (0, 1 or 2), appended after its last key.
fn peer_keys(peer: usize, extra: &str) -> String {
    let domains = [
        "[\"10.2.0.0/24\"]\n",
        "[\"10.2.0.0/16\"]\n",
        "[\"10.3.0.0/24\"]\n",
    ];
    let marker = format!("remote_domain = {}", domains[peer]);
    BASE.replacen(&marker, &format!("{marker}{extra}\n"), 1)
}

/// BASE plus an explicit group of m1 and m2 with `keys`, then `tail`.
fn group(keys: &str, tail: &str) -> String {
    format!(
        "{BASE}\n[[entry_point_group]]\nname = \"hq\"\npeers = [\"m1\", \"m2\"]\n{keys}\n{tail}"
    )
}

#[test]
fn mep_section_defaults_and_values() {
    let c = ok(&group("", ""));
    assert!(!c.mep.present);
    assert_eq!(c.mep, MepSection::default());
    assert_eq!(c.mep.probe.port, 259);
    assert_eq!(c.mep.probe.interval, std::time::Duration::from_secs(1));
    assert_eq!(c.mep.probe.timeout, std::time::Duration::from_millis(150));
    assert_eq!(c.mep.probe.misses, 3);
    assert_eq!(c.mep.implicit, ImplicitMethod::FirstToRespond);
    assert!(!c.mep.tracking);
    assert!(c.mep.respond);
    assert_eq!(c.mep.sticky.capacity, 100_000);
    assert_eq!(c.mep.sticky.idle, std::time::Duration::from_secs(3600));
    assert!(c.rim.is_none());

    let c = ok(&format!(
        "{BASE}\n[mep]\nprobe_port = 1259\nprobe_interval = \"500ms\"\nprobe_timeout = \"100ms\"\nprobe_misses = 5\nimplicit = \"load-distribution\"\ntracking = true\nrespond = false\nsticky_capacity = 10\nsticky_idle = \"10m\"\n"
    ));
    assert!(c.mep.present);
    assert_eq!(c.mep.probe.port, 1259);
    assert_eq!(c.mep.probe.interval, std::time::Duration::from_millis(500));
    assert_eq!(c.mep.probe.timeout, std::time::Duration::from_millis(100));
    assert_eq!(c.mep.probe.misses, 5);
    assert_eq!(c.mep.implicit, ImplicitMethod::LoadDistribution);
    assert!(c.mep.tracking);
    assert!(!c.mep.respond);
    assert_eq!(c.mep.sticky.capacity, 10);
    assert_eq!(c.mep.sticky.idle, std::time::Duration::from_secs(600));
    assert!(c.mep_responder().is_none(), "respond = false");
}

#[test]
fn mep_section_errors() {
    let text = format!(
        "{BASE}\n[mep]\nprobe_port = 500\nprobe_interval = \"50ms\"\nprobe_timeout = \"20s\"\nprobe_misses = 0\nimplicit = \"sometimes\"\ntracking = \"yes\"\nsticky_capacity = -1\nsticky_idle = \"0s\"\ncolour = 1\n"
    );
    assert_eq!(
        lines(&text),
        [
            "gw.toml:29:14: mep.probe_port: 500 is also an IKE port of this gateway; allowed: a port other than gateway.ike_port (500) and gateway.nat_t_port (4500)",
            "gw.toml:30:18: mep.probe_interval: 50ms is out of range; allowed: 100ms to 1m",
            "gw.toml:31:17: mep.probe_timeout: 20s is out of range; allowed: 10ms to 10s",
            "gw.toml:32:16: mep.probe_misses: 0 is out of range; allowed: 1 to 100",
            "gw.toml:33:12: mep.implicit: unknown value \"sometimes\"; allowed: first-to-respond, load-distribution, off",
            "gw.toml:34:12: mep.tracking: wrong type: found string \"yes\"; allowed: true or false",
            "gw.toml:35:19: mep.sticky_capacity: -1 is out of range; allowed: 0 to 100000000",
            "gw.toml:36:15: mep.sticky_idle: 0s is out of range; allowed: 1s to 7d",
            "gw.toml:37:1: mep.colour: unknown key; allowed: probe_port, probe_interval, probe_timeout, probe_misses, implicit, tracking, respond, sticky_capacity, sticky_idle",
        ]
    );
    assert_eq!(
        lines(&format!("{BASE}\n[mep]\nprobe_interval = \"100ms\"\nprobe_timeout = \"200ms\"\n")),
        ["gw.toml:30:17: mep.probe_timeout: probe_timeout 200ms is longer than probe_interval 100ms; allowed: a probe_timeout no longer than probe_interval"]
    );
    assert_eq!(
        lines(&format!("{BASE}\n[mep]\nprobe_port = 4500\n")),
        ["gw.toml:29:14: mep.probe_port: 4500 is also an IKE port of this gateway; allowed: a port other than gateway.ike_port (500) and gateway.nat_t_port (4500)"]
    );
}

#[test]
fn an_explicit_group_with_every_key() {
    let c = ok(&group(
        "method = \"by-vpn-domain\"\ntie_break = \"random\"\ndomain = [\"10.2.0.0/16\", \"10.4.0.0/16\"]\ntracking = true\npreconnect = true",
        "",
    ));
    let g = &c.entry_point_groups[0];
    assert_eq!(g.method, Method::ByVpnDomain);
    assert_eq!(g.tie_break, TieBreak::Random);
    assert_eq!(g.domain, [net("10.2.0.0/16"), net("10.4.0.0/16")]);
    assert!(g.tracking);
    assert!(g.preconnect);
    assert!(g.rules.is_empty());
    // The members' traffic selectors are the unified domain; their own domains are kept.
    for i in 0..2 {
        assert_eq!(c.peers[i].remote_domain, g.domain);
        assert_eq!(c.peers[i].start_action, StartAction::Always, "preconnect");
    }
    assert_eq!(c.peer_mep[0].own_domain, [net("10.2.0.0/24")]);
    assert_eq!(c.peer_mep[1].own_domain, [net("10.2.0.0/16")]);
    assert_eq!(
        c.peers[2].remote_domain,
        [net("10.3.0.0/24")],
        "not a member"
    );

    // Defaults: first-to-respond, union of the members' domains (10.2.0.0/24 is inside
    // 10.2.0.0/16), tracking from [mep], members start on traffic.
    let c = ok(&format!("{}\n[mep]\ntracking = true\n", group("", "")));
    let g = &c.entry_point_groups[0];
    assert_eq!(g.method, Method::FirstToRespond);
    assert_eq!(g.tie_break, TieBreak::FirstToRespond);
    assert_eq!(g.domain, [net("10.2.0.0/16")]);
    assert!(g.tracking);
    assert!(!g.preconnect);
    assert_eq!(c.peers[0].start_action, StartAction::OnTraffic);
    assert_eq!(c.peers[0].remote_domain, [net("10.2.0.0/16")]);
    assert_eq!(c.peers[2].start_action, StartAction::Always, "not a member");
    // A member's own start_action stays without preconnect.
    let c = ok(&group("", "").replacen(
        "remote_domain = [\"10.2.0.0/24\"]\n",
        "remote_domain = [\"10.2.0.0/24\"]\nstart_action = \"always\"\n",
        1,
    ));
    assert_eq!(c.peers[0].start_action, StartAction::Always);
    assert_eq!(c.peers[1].start_action, StartAction::OnTraffic);
}

#[test]
fn explicit_group_errors() {
    assert_eq!(
        lines(&group("method = \"closest\"\ntie_break = \"coin\"\ndomain = [\"10.1.0.0/16\", \"x\"]\ntracking = 1\npreconnect = \"yes\"\ncolour = 2", "")),
        [
            "gw.toml:31:10: entry_point_group[0].method: unknown value \"closest\"; allowed: first-to-respond, by-vpn-domain, random, priority-list",
            "gw.toml:32:13: entry_point_group[0].tie_break: unknown value \"coin\"; allowed: first-to-respond, random",
            "gw.toml:33:11: entry_point_group[0].domain[0]: 10.1.0.0/16 overlaps the local domain prefix 10.1.0.0/24; allowed: prefixes outside local.domain",
            "gw.toml:33:26: entry_point_group[0].domain[1]: invalid prefix \"x\"; allowed: a network prefix such as 10.1.0.0/24 or 2001:db8::/48",
            "gw.toml:34:12: entry_point_group[0].tracking: wrong type: found integer `1`; allowed: true or false",
            "gw.toml:35:14: entry_point_group[0].preconnect: wrong type: found string \"yes\"; allowed: true or false",
            "gw.toml:36:1: entry_point_group[0].colour: unknown key; allowed: name, peers, method, tie_break, domain, tracking, preconnect, rule",
        ]
    );
    // tie_break only where levels have ties.
    assert_eq!(
        lines(&group("tie_break = \"random\"", "")),
        ["gw.toml:31:13: entry_point_group[0].tie_break: method \"first-to-respond\" has no tie-break; allowed: tie_break only with method = \"by-vpn-domain\" or \"priority-list\""]
    );
    assert_eq!(
        lines(&group("method = \"random\"\ntie_break = \"random\"", "")),
        ["gw.toml:32:13: entry_point_group[0].tie_break: method \"random\" has no tie-break; allowed: tie_break only with method = \"by-vpn-domain\" or \"priority-list\""]
    );
    assert_eq!(
        ok(&group(
            "method = \"priority-list\"\ntie_break = \"random\"",
            ""
        ))
        .entry_point_groups[0]
            .tie_break,
        TieBreak::Random
    );
    // preconnect against a member's own start_action.
    assert_eq!(
        lines(&group("preconnect = true", "").replacen(
            "remote_domain = [\"10.2.0.0/24\"]\n",
            "remote_domain = [\"10.2.0.0/24\"]\nstart_action = \"on-traffic\"\n",
            1
        )),
        ["gw.toml:13:16: peer[0].start_action: \"on-traffic\", but entry_point_group[0] (\"hq\") has preconnect = true; allowed: always (or no start_action) in a group with preconnect"]
    );
    // A template cannot be an entry point.
    let text = format!(
        "{BASE}\n[[peer]]\nname = \"t\"\nlocal_address = \"192.0.2.1\"\nremote_address = \"any\"\nremote_id = \"@t.example\"\npsk = \"0123456789abcdef\"\nremote_domain = [\"10.9.0.0/16\"]\n\n[mep]\n\n[[entry_point_group]]\nname = \"g\"\npeers = [\"m3\", \"t\"]\n"
    );
    assert_eq!(
        lines(&text),
        ["gw.toml:40:16: entry_point_group[0].peers[1]: peer \"t\" is a template (remote_address = \"any\"), which cannot be an entry point; allowed: peers with a remote address"]
    );
}

#[test]
fn priority_rules_resolve_per_satellite() {
    let rules = "[[entry_point_group.rule]]\nprimary = [\"m1\"]\nsecondary = [\"m2\"]\n\n[[entry_point_group.rule]]\nsatellites = [\"sat\", \"other\"]\nprimary = [\"m2\"]\ntertiary = [\"m1\"]\n\n[[entry_point_group.rule]]\nsatellites = [\"sat\"]\nprimary = [\"m1\", \"m2\"]\n";
    let c = ok(&group(
        "method = \"priority-list\"\ntie_break = \"random\"",
        rules,
    ));
    let g = &c.entry_point_groups[0];
    assert_eq!(g.rules.len(), 3);
    assert_eq!(
        g.rules[0],
        MepRule {
            satellites: vec![],
            levels: [vec!["m1".into()], vec!["m2".into()], vec![]],
        }
    );
    assert_eq!(g.rules[1].satellites, ["sat", "other"]);
    let ids = |c: &GatewayConfig| {
        let m = c.mep_config().expect("a group");
        let name = |id: &rampart_mep::EntryPointId| m.entry_points[id.0 as usize].name.clone();
        let levels: Vec<Vec<String>> = m.groups[0]
            .levels
            .0
            .iter()
            .map(|l| l.iter().map(name).collect())
            .collect();
        levels
    };
    // "sat": the first rule naming it (rule[1]), not the later one nor the default.
    assert_eq!(ids(&c), [vec!["m2"], vec![], vec!["m1"]]);
    // Another satellite: the default rule.
    let other = c.clone();
    let mut other = other;
    other.gateway.name = "elsewhere".into();
    assert_eq!(ids(&other), [vec!["m1"], vec!["m2"], vec![]]);
    // No default rule: every member primary for satellites no rule names.
    let c = ok(&group(
        "method = \"priority-list\"",
        "[[entry_point_group.rule]]\nsatellites = [\"x\"]\nprimary = [\"m2\"]\n",
    ));
    assert_eq!(ids(&c), [vec!["m1", "m2"], vec![], vec![]]);
    let c = ok(&group("method = \"priority-list\"", ""));
    assert_eq!(ids(&c), [vec!["m1", "m2"], vec![], vec![]]);
    let m = c.mep_config().unwrap();
    assert_eq!(m.groups[0].method, Method::PriorityList);
    assert_eq!(m.groups[0].tie_break, TieBreak::FirstToRespond);
}

#[test]
fn priority_rule_errors() {
    assert_eq!(
        lines(&group("method = \"random\"", "[[entry_point_group.rule]]\nprimary = [\"m1\"]\n")),
        ["gw.toml:32:1: entry_point_group[0].rule: rules are for method \"priority-list\" (this group's method is \"random\"); allowed: [[entry_point_group.rule]] only in a group with method = \"priority-list\""]
    );
    let rules = "[[entry_point_group.rule]]\nprimary = [\"m1\", \"m3\"]\nsecondary = [\"m1\"]\n\n[[entry_point_group.rule]]\nprimary = [\"m2\"]\n\n[[entry_point_group.rule]]\nsatellites = []\ntertiary = []\n\n[[entry_point_group.rule]]\nsatellites = [\"bad name!\"]\nprimary = [\"m2\"]\ncolour = 1\n";
    assert_eq!(
        lines(&group("method = \"priority-list\"", rules)),
        [
            "gw.toml:33:18: entry_point_group[0].rule[0].primary[1]: \"m3\" is not a member of entry_point_group \"hq\"; allowed: members of the group: m1, m2",
            "gw.toml:34:14: entry_point_group[0].rule[0].secondary[0]: \"m1\" is already in primary of this rule; allowed: each member in at most one level of a rule",
            "gw.toml:36:1: entry_point_group[0].rule[1].satellites: a second default rule (no satellites; the first is rule[0]); allowed: at most one rule without satellites (the default rule); name the satellites of the others",
            "gw.toml:39:1: entry_point_group[0].rule[2].primary: the rule names no member; allowed: members in primary, secondary or tertiary (members in no level are never chosen)",
            "gw.toml:40:14: entry_point_group[0].rule[2].satellites: empty list; allowed: gateway names of satellites (their gateway.name), or no satellites key for the default rule",
            "gw.toml:44:15: entry_point_group[0].rule[3].satellites[0]: invalid name \"bad name!\"; allowed: 1 to 64 characters from A-Z a-z 0-9 . _ -, not starting with . or -",
            "gw.toml:46:1: entry_point_group[0].rule[3].colour: unknown key; allowed: satellites, primary, secondary, tertiary",
        ]
    );
}

#[test]
fn peer_probe_keys() {
    let mep = |text: String| format!("{text}\n[mep]\n");
    let c = ok(&mep(peer_keys(
        2,
        "probe = \"rampart\"\nprobe_key = \"a probe key of the pair\"",
    )));
    assert_eq!(c.peer_mep[2].probe, ProbeMode::Rampart);
    assert_eq!(
        c.peer_mep[2].probe_key.as_deref().map(|k| k.as_slice()),
        Some(&b"a probe key of the pair"[..])
    );
    assert_eq!(c.peer_mep[0].probe, ProbeMode::Auto);
    assert!(c.peer_mep[0].probe_key.is_none());
    assert_eq!(
        ok(&mep(peer_keys(2, "probe = \"ike\""))).peer_mep[2].probe,
        ProbeMode::Ike
    );
    // The probe key is a secret.
    let shown = format!("{:?}", c.peer_mep[2]);
    assert!(!shown.contains("probe key of"), "{shown}");
    assert!(shown.contains("<23 bytes redacted>"), "{shown}");
    assert_eq!(
        lines(&mep(peer_keys(2, "probe = \"ping\"\nprobe_key = \"short\""))),
        [
            "gw.toml:27:9: peer[2].probe: unknown value \"ping\"; allowed: auto, rampart, ike",
            "gw.toml:28:13: peer[2].probe_key: the probe key is 5 bytes long; allowed: at least 16 bytes",
        ]
    );
}

#[test]
fn overlapping_domains_form_implicit_groups_only_with_mep() {
    let overlap = "gw.toml:19:18: peer[1].remote_domain[0]: 10.2.0.0/16 overlaps 10.2.0.0/24 in the remote_domain of peer[0]; allowed: prefixes that no other peer's remote_domain covers, both peers in one [[entry_point_group]], one peer backup_of the other, or both in no group with a [mep] table whose implicit is not \"off\" (overlapping peers then form an implicit group)";
    assert_eq!(lines(BASE), [overlap]);
    assert_eq!(
        lines(&format!("{BASE}\n[mep]\nimplicit = \"off\"\n")),
        [overlap]
    );

    // m4 overlaps m3 only; m1-m2 and m3-m4 are two components.
    let four = format!(
        "{BASE}\n[[peer]]\nname = \"m4\"\nlocal_address = \"192.0.2.1\"\nremote_address = \"192.0.2.14\"\npsk = \"0123456789abcdef\"\nremote_domain = [\"10.3.0.128/25\"]\n\n[mep]\n"
    );
    let c = ok(&four);
    assert_eq!(
        c.implicit_groups,
        [
            ImplicitGroup {
                name: "implicit:m1".into(),
                kind: GroupKind::ImplicitOverlap,
                peers: vec!["m1".into(), "m2".into()],
            },
            ImplicitGroup {
                name: "implicit:m3".into(),
                kind: GroupKind::ImplicitOverlap,
                peers: vec!["m3".into(), "m4".into()],
            },
        ]
    );
    // Implicit members keep their own traffic selectors.
    assert_eq!(c.peers[1].remote_domain, [net("10.2.0.0/16")]);
    let m = c.mep_config().unwrap();
    assert_eq!(m.groups.len(), 2);
    assert_eq!(m.groups[0].method, Method::FirstToRespond);
    assert_eq!(m.groups[0].kind, GroupKind::ImplicitOverlap);
    assert_eq!(m.groups[0].domain, [net("10.2.0.0/16")]);
    assert_eq!(m.groups[1].domain, [net("10.3.0.0/24")]);
    assert_eq!(m.entry_points.len(), 4);
    assert_eq!(m.entry_points[3].own_domain, [net("10.3.0.128/25")]);
    assert_eq!(m.entry_points[3].group, rampart_mep::GroupId(1));
    assert_eq!(m.local_name, "sat");

    let c = ok(&format!("{four}implicit = \"load-distribution\"\n"));
    assert_eq!(
        c.mep_config().unwrap().groups[1].method,
        Method::LoadDistribution
    );

    // A chain of overlaps is one component: m2 overlaps m1 and m5, m1 and m5 do not overlap.
    let chain = BASE.replace("[\"10.3.0.0/24\"]", "[\"10.2.128.0/24\"]");
    let c = ok(&format!("{chain}\n[mep]\n"));
    assert_eq!(c.implicit_groups.len(), 1);
    assert_eq!(c.implicit_groups[0].peers, ["m1", "m2", "m3"]);

    // A peer in an explicit group joins no implicit group: its overlap with an outsider stays
    // an error.
    let text = format!(
        "{chain}\n[mep]\n\n[[entry_point_group]]\nname = \"hq\"\npeers = [\"m1\", \"m2\"]\n"
    );
    assert_eq!(
        lines(&text),
        ["gw.toml:26:18: peer[2].remote_domain[0]: 10.2.128.0/24 overlaps 10.2.0.0/16 in the remote_domain of peer[1]; allowed: prefixes that no other peer's remote_domain covers, both peers in one [[entry_point_group]], one peer backup_of the other, or both in no group with a [mep] table whose implicit is not \"off\" (overlapping peers then form an implicit group)"]
    );
}

#[test]
fn backup_of_forms_a_primary_backup_group() {
    // m2 backs up m1 (their domains overlap: allowed), m3 backs up m1 too.
    let text = peer_keys(1, "backup_of = \"m1\"").replacen(
        "remote_domain = [\"10.3.0.0/24\"]\n",
        "remote_domain = [\"10.3.0.0/24\"]\nbackup_of = \"m1\"\n",
        1,
    );
    let c = ok(&text);
    assert_eq!(
        c.implicit_groups,
        [ImplicitGroup {
            name: "backup:m1".into(),
            kind: GroupKind::ImplicitPrimaryBackup,
            peers: vec!["m1".into(), "m2".into(), "m3".into()],
        }]
    );
    assert_eq!(c.peer_mep[1].backup_of.as_deref(), Some("m1"));
    // A backup's traffic selectors: its own domain and its primary's.
    assert_eq!(c.peers[1].remote_domain, [net("10.2.0.0/16")]);
    assert_eq!(
        c.peers[2].remote_domain,
        [net("10.3.0.0/24"), net("10.2.0.0/24")]
    );
    assert_eq!(
        c.peers[0].remote_domain,
        [net("10.2.0.0/24")],
        "the primary keeps its own"
    );
    assert_eq!(c.peer_mep[2].own_domain, [net("10.3.0.0/24")]);
    let m = c.mep_config().unwrap();
    let g = &m.groups[0];
    assert_eq!(g.method, Method::PrimaryBackup);
    assert_eq!(g.kind, GroupKind::ImplicitPrimaryBackup);
    let names = |l: &Vec<rampart_mep::EntryPointId>| -> Vec<String> {
        l.iter()
            .map(|id| m.entry_points[id.0 as usize].name.clone())
            .collect()
    };
    assert_eq!(names(&g.levels.0[0]), ["m1"]);
    assert_eq!(names(&g.levels.0[1]), ["m2", "m3"]);
    assert!(g.levels.0[2].is_empty());
}

#[test]
fn backup_of_errors() {
    let overlap = "gw.toml:20:18: peer[1].remote_domain[0]: 10.2.0.0/16 overlaps 10.2.0.0/24 in the remote_domain of peer[0]; allowed: prefixes that no other peer's remote_domain covers, both peers in one [[entry_point_group]], one peer backup_of the other, or both in no group with a [mep] table whose implicit is not \"off\" (overlapping peers then form an implicit group)";
    let text = peer_keys(0, "backup_of = \"zz\"")
        .replacen(
            "remote_domain = [\"10.2.0.0/16\"]\n",
            "remote_domain = [\"10.2.0.0/16\"]\nbackup_of = \"m2\"\n",
            1,
        )
        .replacen(
            "remote_domain = [\"10.3.0.0/24\"]\n",
            "remote_domain = [\"10.3.0.0/24\"]\nbackup_of = \"m2\"\n",
            1,
        );
    assert_eq!(
        lines(&text),
        [
            "gw.toml:13:13: peer[0].backup_of: unknown peer \"zz\"; allowed: the name of another [[peer]]: m2, m3",
            overlap,
            "gw.toml:21:13: peer[1].backup_of: a peer cannot be its own backup; allowed: another [[peer]]: m1, m3",
        ]
    );
    let chain = peer_keys(0, "backup_of = \"m2\"").replacen(
        "remote_domain = [\"10.2.0.0/16\"]\n",
        "remote_domain = [\"10.2.0.0/16\"]\nbackup_of = \"m3\"\n",
        1,
    );
    assert_eq!(
        lines(&chain),
        [
            "gw.toml:13:13: peer[0].backup_of: peer \"m2\" is itself a backup (of \"m3\"); allowed: a peer that is no backup (no chains of backups)",
            overlap,
        ]
    );
    let in_group = |text: String| {
        format!("{text}\n[[entry_point_group]]\nname = \"hq\"\npeers = [\"m1\", \"m2\"]\n")
    };
    assert_eq!(
        lines(&in_group(peer_keys(2, "backup_of = \"m1\""))),
        ["gw.toml:27:13: peer[2].backup_of: peer \"m1\" is in entry_point_group \"hq\"; allowed: backup_of only between peers in no [[entry_point_group]]"]
    );
    assert_eq!(
        lines(&in_group(peer_keys(0, "backup_of = \"m3\""))),
        ["gw.toml:13:13: peer[0].backup_of: this peer is in entry_point_group \"hq\"; allowed: backup_of only between peers in no [[entry_point_group]]"]
    );
}

#[test]
fn route_injection() {
    let c = ok(&format!("{}\n[rim]\n", group("", "")));
    assert_eq!(
        c.rim,
        Some(RimConfig {
            table: 201,
            protocol: 201,
            metric: 100,
            peers: vec![]
        })
    );
    assert!(c.rim.as_ref().unwrap().covers("m3"));
    let c = ok(&format!(
        "{}\n[rim]\ntable = 1000\nprotocol = 99\nmetric = 5\npeers = [\"m1\"]\n",
        group("", "")
    ));
    let rim = c.rim.unwrap();
    assert_eq!((rim.table, rim.protocol, rim.metric), (1000, 99, 5));
    assert!(rim.covers("m1"));
    assert!(!rim.covers("m2"));
    assert_eq!(
        lines(&format!("{BASE}\n[mep]\n\n[rim]\ntable = 254\nprotocol = 4\nmetric = -1\npeers = [\"m1\", \"zz\"]\n")),
        [
            "gw.toml:31:9: rim.table: 254 is a table of the kernel (253 default, 254 main, 255 local); allowed: a table of its own: 1 to 252 or 256 to 4294967295",
            "gw.toml:32:12: rim.protocol: 4 is out of range; allowed: 5 to 255",
            "gw.toml:33:10: rim.metric: -1 is out of range; allowed: 0 to 4294967295",
            "gw.toml:34:16: rim.peers[1]: unknown peer \"zz\"; allowed: names of [[peer]] tables: m1, m2, m3",
        ]
    );
    assert_eq!(
        lines(&format!("{BASE}\n[mep]\n\n[rim]\ntable = 0\n")),
        ["gw.toml:31:9: rim.table: 0 is out of range; allowed: 1 to 4294967295"]
    );
}

#[test]
fn engine_configs() {
    let c = ok(&group("", "").replacen(
        "remote_domain = [\"10.2.0.0/24\"]\n",
        "remote_domain = [\"10.2.0.0/24\"]\nprobe = \"rampart\"\nprobe_key = \"a probe key of the pair\"\n",
        1,
    ));
    let m = c.mep_config().unwrap();
    assert_eq!(m.probe, rampart_mep::ProbeSettings::default());
    assert_eq!(m.sticky, rampart_mep::StickySettings::default());
    assert_eq!(m.groups.len(), 1);
    let g = &m.groups[0];
    assert_eq!(
        (g.name.as_str(), g.kind, g.method),
        ("hq", GroupKind::Explicit, Method::FirstToRespond)
    );
    assert_eq!(
        g.members,
        [rampart_mep::EntryPointId(0), rampart_mep::EntryPointId(1)]
    );
    assert_eq!(g.domain, [net("10.2.0.0/16")]);
    assert!(g.levels.0.iter().all(Vec::is_empty));
    let ep = &m.entry_points[0];
    assert_eq!(ep.name, "m1");
    assert_eq!(
        ep.address,
        "192.0.2.11".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(ep.local, Some("192.0.2.1".parse().unwrap()));
    assert_eq!(ep.own_domain, [net("10.2.0.0/24")]);
    assert_eq!(ep.probe, ProbeMode::Rampart);
    // The key comes from probe_key when set, else from the PSK.
    assert_eq!(
        ep.key,
        Some(rampart_mep::ProbeKey::derive(b"a probe key of the pair"))
    );
    assert_eq!(
        m.entry_points[1].key,
        Some(rampart_mep::ProbeKey::derive(b"0123456789abcdef"))
    );

    // No group: no satellite engine.
    let single = BASE.replace("[\"10.2.0.0/16\"]", "[\"10.4.0.0/16\"]");
    let c = ok(&single);
    assert!(c.mep_config().is_none());
    // The responder answers every peer with an address and a key.
    let r = c.mep_responder().unwrap();
    assert_eq!(r.port, 259);
    assert_eq!(r.rate_per_source, 20);
    assert_eq!(r.rate_total, 2000);
    let names: Vec<&str> = r.satellites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["m1", "m2", "m3"]);
    assert_eq!(
        r.satellites[0].address,
        "192.0.2.11".parse::<std::net::IpAddr>().unwrap()
    );
}

#[test]
fn mep_changes_are_restart_only() {
    let a = ok(&group("", ""));
    assert!(a.mep_changes(&a.clone()).is_empty());
    let b = ok(&group("method = \"random\"", ""));
    assert_eq!(a.mep_changes(&b), ["entry_point_group"]);
    let b = ok(&format!(
        "{}\n[mep]\nprobe_interval = \"2s\"\n\n[rim]\n",
        group("", "")
    ));
    assert_eq!(a.mep_changes(&b), ["mep", "rim"]);
    let b = ok(&group("", "").replacen(
        "remote_domain = [\"10.2.0.0/24\"]\n",
        "remote_domain = [\"10.2.0.0/24\"]\nprobe = \"ike\"\nprobe_key = \"a probe key of the pair\"\n",
        1,
    ));
    assert_eq!(a.mep_changes(&b), ["peer.probe", "peer.probe_key"]);
    let b = ok(&group("", "").replace("[\"10.2.0.0/24\"]", "[\"10.2.1.0/24\"]"));
    assert_eq!(
        a.mep_changes(&b),
        ["peer.remote_domain (of an entry point)"]
    );
}

#[test]
fn the_examples_pass_and_mean_what_they_say() {
    let sat = ok(include_str!("../../../examples/mep/satellite.toml"));
    let m = sat.mep_config().unwrap();
    assert_eq!(m.groups.len(), 1);
    assert_eq!(m.groups[0].method, Method::PriorityList);
    assert_eq!(m.groups[0].levels.0[0], [rampart_mep::EntryPointId(0)]);
    assert_eq!(m.groups[0].levels.0[1], [rampart_mep::EntryPointId(1)]);
    assert!(m.groups[0].tracking);
    assert!(sat
        .peers
        .iter()
        .all(|p| p.start_action == StartAction::Always));
    for text in [
        include_str!("../../../examples/mep/ep1.toml"),
        include_str!("../../../examples/mep/ep2.toml"),
    ] {
        let ep = ok(text);
        assert!(ep.mep_config().is_none());
        let r = ep.mep_responder().unwrap();
        assert_eq!(r.satellites.len(), 1);
        assert_eq!(
            r.satellites[0].address,
            "192.0.2.10".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!(
            ep.rim,
            Some(RimConfig {
                table: 201,
                protocol: 201,
                metric: 100,
                peers: vec!["sat".into()]
            })
        );
        assert!(ep
            .firewall
            .nat
            .iter()
            .any(|n| matches!(n, NatRule::Pool { .. })));
    }
}
