//! `[remote_access] pool` in a Load Sharing cluster: the pool is split among the members
//! (`B` = the member count rounded up to a power of two equal blocks); a pool whose split
//! leaves a member without a usable address is refused with one clear line.

/// Three Load Sharing members (4 blocks) and a remote-access template with `pool`.
fn config(pool: &str, exclude: &str, mode: &str) -> String {
    format!(
        r#"[gateway]
name = "gw"

[local]
domain = ["10.1.0.0/24"]

[remote_access]
local_address = "192.0.2.1"
psk = "another pre-shared key, long enough"
pool = "{pool}"
{exclude}

[cluster]
mode = "{mode}"
name = "ls"
member_id = 1
secret = "0123456789abcdef"

[[cluster.member]]
id = 1
address = "10.255.0.1"

[[cluster.member]]
id = 2
address = "10.255.0.2"

[[cluster.member]]
id = 3
address = "10.255.0.3"

[[cluster.vip]]
interface = "eth0"
address = "192.0.2.1/32"
"#
    )
}

fn errors(text: &str) -> Vec<String> {
    match rampart_config::parse(text, "gw.toml") {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn a_pool_every_member_gets_a_share_of_is_accepted() {
    for pool in ["10.99.0.0/24", "10.99.0.0/29", "10.99.0.0/28"] {
        assert_eq!(
            errors(&config(pool, "", "load-sharing")),
            Vec::<String>::new(),
            "{pool}"
        );
    }
}

#[test]
fn a_pool_too_small_to_split_is_refused() {
    // A /30 in four blocks of one address: the network address is member 0's only one.
    let lines = errors(&config("10.99.0.0/30", "", "load-sharing"));
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with("gw.toml:10:") && lines[0].contains("remote_access.pool"),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains("too small to split among 3 load-sharing members")
            && lines[0].contains("member 0")
            && lines[0].contains("4 equal blocks"),
        "{}",
        lines[0]
    );
    // Excluded addresses count too: .4 and .5 are member 1's block of a /29.
    let lines = errors(&config(
        "10.99.0.0/29",
        r#"pool_exclude = ["10.99.0.2", "10.99.0.3"]"#,
        "load-sharing",
    ));
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("member 1"), "{}", lines[0]);
    // High availability: the whole pool, no split.
    assert_eq!(
        errors(&config("10.99.0.0/30", "", "high-availability")),
        Vec::<String>::new()
    );
}
