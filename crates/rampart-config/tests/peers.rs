//! Peer templates (`remote_address = "any"`), `[[entry_point_group]]` and `member_id`.

use rampart_config::*;

const BASE: &str = r#"[gateway]
name = "gw"

[local]
domain = ["10.1.0.0/24"]

[[peer]]
name = "b"
local_address = "192.0.2.1"
remote_address = "192.0.2.2"
psk = "0123456789abcdef"
remote_domain = ["10.2.0.0/24"]
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

/// BASE plus a second peer `c` (a template unless `remote_address` is replaced) with `extra`.
fn with_template(extra: &str) -> String {
    format!(
        "{BASE}\n[[peer]]\nname = \"clients\"\nlocal_address = \"192.0.2.1\"\nremote_address = \"any\"\npsk = \"0123456789abcdef\"\nremote_domain = [\"10.9.0.0/16\"]\n{extra}\n"
    )
}

#[test]
fn a_template_is_responder_only_and_matched_by_identity() {
    let c = ok(&with_template("remote_id = \"@clients.example\""));
    let t = &c.peers[1];
    assert_eq!(t.remote_address, RemoteAddress::Any);
    assert!(t.is_template());
    assert_eq!(t.remote_address.ip(), None);
    assert_eq!(t.start_action, StartAction::None, "the template default");
    assert_eq!(t.remote_id, Identity::Fqdn("clients.example".into()));
    assert_eq!(c.peers[0].start_action, StartAction::Always);
    let c = ok(&with_template(
        "remote_id = \"@clients.example\"\nstart_action = \"none\"",
    ));
    assert_eq!(c.peers[1].start_action, StartAction::None);
}

#[test]
fn template_errors_name_the_key_and_what_a_template_allows() {
    assert_eq!(
        lines(&with_template("remote_id = \"@c.example\"\nstart_action = \"always\"")),
        ["gw.toml:21:16: peer[1].start_action: a template (remote_address = \"any\") cannot initiate; allowed: none (the default for templates)"]
    );
    assert_eq!(
        lines(&with_template("remote_id = \"@c.example\"\nstart_action = \"on-traffic\"")),
        ["gw.toml:21:16: peer[1].start_action: a template (remote_address = \"any\") cannot initiate; allowed: none (the default for templates)"]
    );
    assert_eq!(
        lines(&with_template("")),
        ["gw.toml:14:1: peer[1].remote_id: missing required key; allowed: with remote_address = \"any\" (a template), the identity that selects this peer: an address, a host name, email:... or dn:..."]
    );
    let no_local = with_template("remote_id = \"@c.example\"").replacen(
        "name = \"clients\"\nlocal_address = \"192.0.2.1\"\n",
        "name = \"clients\"\n",
        1,
    );
    assert_eq!(
        lines(&no_local),
        ["gw.toml:14:1: peer[1].local_address: missing required key; allowed: an IPv4 or IPv6 address"]
    );
    let bad = with_template("remote_id = \"@c.example\"").replace("\"any\"", "\"anywhere\"");
    assert_eq!(
        lines(&bad),
        ["gw.toml:17:18: peer[1].remote_address: invalid IP address \"anywhere\"; allowed: an IPv4 or IPv6 address, or \"any\" (a template)"]
    );
}

/// BASE plus peer `c` whose remote domain overlaps `b`'s, plus `groups`.
fn overlapping(groups: &str) -> String {
    format!(
        "{BASE}\n[[peer]]\nname = \"c\"\nlocal_address = \"192.0.2.1\"\nremote_address = \"192.0.2.3\"\npsk = \"0123456789abcdef\"\nremote_domain = [\"10.2.0.0/16\"]\n{groups}"
    )
}

#[test]
fn overlapping_domains_are_allowed_inside_an_entry_point_group() {
    let c = ok(&overlapping(
        "\n[[entry_point_group]]\nname = \"site-2\"\npeers = [\"b\", \"c\"]\n",
    ));
    assert_eq!(
        c.entry_point_groups,
        [EntryPointGroup {
            name: "site-2".into(),
            peers: vec!["b".into(), "c".into()],
            method: Method::FirstToRespond,
            tie_break: TieBreak::FirstToRespond,
            domain: vec!["10.2.0.0/16".parse().unwrap()],
            tracking: false,
            preconnect: false,
            rules: Vec::new(),
        }]
    );
    assert_eq!(c.entry_point_group_of("c").unwrap().name, "site-2");
    assert!(ok(BASE).entry_point_groups.is_empty());
}

#[test]
fn entry_point_group_errors() {
    // Overlap outside any group (c is grouped with nobody it overlaps).
    assert_eq!(
        lines(&overlapping("")),
        ["gw.toml:19:18: peer[1].remote_domain[0]: 10.2.0.0/16 overlaps 10.2.0.0/24 in the remote_domain of peer[0]; allowed: prefixes that no other peer's remote_domain covers, both peers in one [[entry_point_group]], one peer backup_of the other, or both in no group with a [mep] table whose implicit is not \"off\" (overlapping peers then form an implicit group)"]
    );
    // Unknown peer name; a group of one.
    assert_eq!(
        lines(&format!(
            "{BASE}\n[[entry_point_group]]\nname = \"g\"\npeers = [\"b\", \"zz\"]\n"
        )),
        ["gw.toml:16:15: entry_point_group[0].peers[1]: unknown peer \"zz\"; allowed: names of [[peer]] tables: b"]
    );
    // A peer in two groups, and overlapping peers in different groups.
    let text = overlapping(
        "\n[[entry_point_group]]\nname = \"g1\"\npeers = [\"b\", \"b\"]\n\n[[entry_point_group]]\nname = \"g2\"\npeers = [\"c\", \"b\"]\n",
    );
    assert_eq!(
        lines(&text),
        [
            "gw.toml:19:18: peer[1].remote_domain[0]: 10.2.0.0/16 overlaps 10.2.0.0/24 in the remote_domain of peer[0]; allowed: prefixes that no other peer's remote_domain covers, both peers in one [[entry_point_group]], one peer backup_of the other, or both in no group with a [mep] table whose implicit is not \"off\" (overlapping peers then form an implicit group)",
            "gw.toml:23:15: entry_point_group[0].peers[1]: peer \"b\" is in this group already; allowed: each peer in at most one entry_point_group",
            "gw.toml:27:15: entry_point_group[1].peers[1]: peer \"b\" is in entry_point_group[0] already; allowed: each peer in at most one entry_point_group",
        ]
    );
    assert_eq!(
        lines(&format!("{BASE}\n[[entry_point_group]]\nname = \"g\"\npeers = [\"b\"]\n")),
        ["gw.toml:16:9: entry_point_group[0].peers: 1 peer(s) in a group; allowed: at least two peer names"]
    );
    assert_eq!(
        lines(&format!("{BASE}\n[[entry_point_group]]\nname = \"g\"\n")),
        ["gw.toml:14:1: entry_point_group[0].peers: missing required key; allowed: a list of peer names, e.g. [\"gw-b\"]"]
    );
}

#[test]
fn member_id_is_carried_into_the_ike_config() {
    assert_eq!(ok(BASE).gateway.member_id, 0);
    let c = ok(&BASE.replacen("name = \"gw\"\n", "name = \"gw\"\nmember_id = 15\n", 1));
    assert_eq!(c.gateway.member_id, 15);
    let ike = c.ike_config();
    assert_eq!(ike.member_id, 15);
    assert_eq!(ike.local_domain, c.local.domain);
    assert_eq!(ike.ike_port, 500);
    assert_eq!(
        lines(&BASE.replacen("name = \"gw\"\n", "name = \"gw\"\nmember_id = 16\n", 1)),
        ["gw.toml:3:13: gateway.member_id: 16 is out of range; allowed: 0 to 15"]
    );
}
