//! Client profiles with several gateways (Multiple Entry Points): `gateways` and `selection`.

use rampart_config::{ClientSelection, EntryPoint};

const BASE: &str = "local_id = \"laptop.example.com\"\nremote_id = \"@vpn.example.com\"\npsk = \"another pre-shared key, long enough\"\n";

fn profile(text: &str) -> Result<rampart_config::ClientProfile, rampart_config::ConfigErrors> {
    rampart_config::parse_profile(&format!("{BASE}{text}"), "corp.toml")
}

fn errors(text: &str) -> Vec<String> {
    profile(text)
        .expect_err("should fail")
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn one_gateway_is_one_entry_point() {
    let p = profile("gateway = \"vpn.example.com:8443\"\n").unwrap();
    assert_eq!(
        p.entry_points,
        [EntryPoint {
            host: "vpn.example.com".into(),
            port: Some(8443),
            visitor_port: 8443
        }]
    );
    assert_eq!(p.selection, ClientSelection::FirstToRespond);
}

#[test]
fn gateways_in_order_with_their_ports() {
    let p = profile(
        "gateways = [\"198.51.100.1\", \"vpn2.example.com:8443\", \"[2001:db8::1]:444\"]\nselection = \"primary-backup\"\nvisitor_port = 4443\n",
    )
    .unwrap();
    assert_eq!(p.selection, ClientSelection::PrimaryBackup);
    assert_eq!(p.selection.as_str(), "primary-backup");
    let shown: Vec<String> = p.entry_points.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        ["198.51.100.1", "vpn2.example.com:8443", "[2001:db8::1]:444"]
    );
    let ports: Vec<u16> = p.entry_points.iter().map(|e| e.visitor_port).collect();
    assert_eq!(ports, [4443, 8443, 444]);
    // The first is `gateway`; each entry point gives its own profile.
    assert_eq!((p.gateway.as_str(), p.visitor_port), ("198.51.100.1", 4443));
    let second = p.for_entry_point(1).unwrap();
    assert_eq!(
        (
            second.gateway.as_str(),
            second.gateway_port,
            second.visitor_port
        ),
        ("vpn2.example.com", Some(8443), 8443)
    );
    let third = p.for_entry_point(2).unwrap();
    assert_eq!(
        (third.gateway.as_str(), third.visitor_port),
        ("2001:db8::1", 444)
    );
    assert!(p.for_entry_point(3).is_none());
}

#[test]
fn gateway_errors_name_the_key() {
    let cases: &[(&str, &str)] = &[
        (
            "gateway = \"a.example\"\ngateways = [\"b.example\"]\n",
            "corp.toml:5:12: gateways: both gateway and gateways; allowed: one gateway = \"...\", or several in gateways = [...]",
        ),
        (
            "gateways = []\n",
            "corp.toml:4:12: gateways: empty list; allowed: one or more gateways",
        ),
        (
            "gateways = [\"a.example\", \"a.example\"]\n",
            "corp.toml:4:26: gateways[1]: \"a.example\" is listed twice; allowed: each gateway once",
        ),
        (
            "gateways = [\"a.example\", \"bad host!\"]\n",
            "corp.toml:4:26: gateways[1]: invalid host \"bad host!\"",
        ),
        (
            "gateways = [\"a.example\", \"b.example\"]\nselection = \"round-robin\"\n",
            "corp.toml:5:13: selection: unknown value \"round-robin\"; allowed: first-to-respond, primary-backup",
        ),
        (
            "gateway = \"a.example\"\nselection = \"primary-backup\"\n",
            "corp.toml:5:13: selection: selection without gateways; allowed: selection chooses among gateways = [...]; with one gateway leave it out",
        ),
    ];
    for (text, want) in cases {
        let got = errors(text);
        assert!(
            got.iter().any(|e| e.starts_with(want)),
            "{text}: {got:?} does not start with {want}"
        );
    }
}

fn ra_gateway(name: &str, address: &str, pool: &str, cluster: Option<(&str, u8)>) -> String {
    let mut text = format!(
        "[gateway]\nname = \"{name}\"\n[local]\ndomain = [\"10.1.0.0/24\"]\n[remote_access]\nlocal_address = \"{address}\"\nlocal_id = \"@vpn.example\"\nauth = \"psk\"\npsk = \"lab remote-access key, test only\"\nclient_auth = \"psk\"\npool = \"{pool}\"\n"
    );
    if let Some((cluster, id)) = cluster {
        text.push_str(&format!(
            "[cluster]\nname = \"{cluster}\"\nmember_id = {id}\nsecret = \"lab cluster secret, long enough\"\n[[cluster.member]]\nid = 1\naddress = \"10.9.0.1\"\n[[cluster.member]]\nid = 2\naddress = \"10.9.0.2\"\n[[cluster.vip]]\ninterface = \"eth0\"\naddress = \"{address}/24\"\n"
        ));
    }
    text
}

#[test]
fn overlapping_pools_of_entry_points_that_are_not_one_cluster() {
    let parse = |t: String, f: &str| rampart_config::parse(&t, f).unwrap();
    let gw1 = parse(
        ra_gateway("gw1", "198.51.100.1", "10.99.0.0/24", None),
        "gw1.toml",
    );
    let gw2 = parse(
        ra_gateway("gw2", "203.0.113.1", "10.99.0.128/25", None),
        "gw2.toml",
    );
    let gw3 = parse(
        ra_gateway("gw3", "192.0.2.1", "10.99.9.0/24", None),
        "gw3.toml",
    );
    let p = profile("gateways = [\"198.51.100.1\", \"203.0.113.1\"]\n").unwrap();
    let gws = [
        ("gw1.toml".to_string(), &gw1),
        ("gw2.toml".to_string(), &gw2),
        ("gw3.toml".to_string(), &gw3),
    ];
    // Listed by a profile: an error naming it.
    let with = rampart_config::pool_conflicts(&gws, &[("corp.toml".to_string(), &p)]);
    assert_eq!(with.len(), 1, "{with:?}");
    assert_eq!(with[0].profile.as_deref(), Some("corp.toml"));
    let text = with[0].to_string();
    assert!(
        text.starts_with("corp.toml: gateways gw1.toml and gw2.toml are entry points of this profile but not one cluster, and their Office Mode pools overlap (10.99.0.0/24, 10.99.0.128/25)"),
        "{text}"
    );
    // Without the profile: a warning only.
    let without = rampart_config::pool_conflicts(&gws, &[]);
    assert_eq!(without.len(), 1);
    assert!(without[0].profile.is_none());
    assert!(without[0]
        .to_string()
        .starts_with("warning: gw1.toml and gw2.toml"));
}

#[test]
fn members_of_one_cluster_share_their_pool() {
    let parse = |t: String, f: &str| rampart_config::parse(&t, f).unwrap();
    let m1 = parse(
        ra_gateway("m1", "198.51.100.1", "10.99.0.0/24", Some(("lab", 1))),
        "m1.toml",
    );
    let m2 = parse(
        ra_gateway("m2", "198.51.100.1", "10.99.0.0/24", Some(("lab", 2))),
        "m2.toml",
    );
    let other = parse(
        ra_gateway("o1", "203.0.113.1", "10.99.0.0/24", Some(("other", 1))),
        "o1.toml",
    );
    let p = profile("gateways = [\"198.51.100.1\", \"203.0.113.1\"]\n").unwrap();
    let pair = [("m1.toml".to_string(), &m1), ("m2.toml".to_string(), &m2)];
    assert!(rampart_config::pool_conflicts(&pair, &[("corp.toml".to_string(), &p)]).is_empty());
    // Another cluster is not this one: its overlapping pool conflicts with both members.
    let three = [
        ("m1.toml".to_string(), &m1),
        ("m2.toml".to_string(), &m2),
        ("o1.toml".to_string(), &other),
    ];
    let c = rampart_config::pool_conflicts(&three, &[("corp.toml".to_string(), &p)]);
    assert_eq!(c.len(), 2, "{c:?}");
    assert!(c.iter().all(|c| c.profile.is_some()));
}
