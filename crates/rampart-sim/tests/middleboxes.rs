//! Hide NAT (with the fragment-dropping mode) and the port-filtering firewall, with the real
//! gateway engines on both sides.

fn scenario(middlebox: &str, extra_gw_a: &str) -> String {
    format!(
        r#"
name = "middlebox"
summary = "gateway A behind a middlebox"
duration = "20s"

[[node]]
name = "h1"
kind = "host"
routes = ["0.0.0.0/0 via 10.1.0.1"]

[[node]]
name = "gw-a"
kind = "gateway"
routes = ["0.0.0.0/0 via 192.168.1.1"]
config = """
[gateway]
name = "gw-a"
retransmit_timeout = "500ms"
retransmit_tries = 2
[local]
domain = ["10.1.0.0/24"]
[[peer]]
name = "site-b"
local_address = "192.168.1.2"
remote_address = "198.51.100.1"
local_id = "gw-a.example"
remote_id = "gw-b.example"
psk = "lab pre-shared key, long enough"
remote_domain = ["10.2.0.0/24"]
{extra_gw_a}
"""

{middlebox}

[[node]]
name = "gw-b"
kind = "gateway"
routes = ["0.0.0.0/0 via 198.51.100.254"]
config = """
[gateway]
name = "gw-b"
[local]
domain = ["10.2.0.0/24"]
[[peer]]
name = "site-a"
local_address = "198.51.100.1"
remote_address = "192.0.2.1"
local_id = "gw-b.example"
remote_id = "gw-a.example"
psk = "lab pre-shared key, long enough"
remote_domain = ["10.1.0.0/24"]
start_action = "none"
"""

[[node]]
name = "h2"
kind = "host"
routes = ["0.0.0.0/0 via 10.2.0.1"]

[[link]]
name = "lan-a"
a = "h1 10.1.0.10/24"
b = "gw-a 10.1.0.1/24"
mtu = 1400

[[link]]
name = "inside"
a = "gw-a 192.168.1.2/24"
b = "box 192.168.1.1/24"

[[link]]
name = "wan"
a = "box 192.0.2.1/24"
b = "r1 192.0.2.254/24"

[[node]]
name = "r1"
kind = "router"

[[link]]
name = "wan-b"
a = "r1 198.51.100.254/24"
b = "gw-b 198.51.100.1/24"

[[link]]
name = "lan-b"
a = "gw-b 10.2.0.1/24"
b = "h2 10.2.0.10/24"
mtu = 1400

[[transfer]]
name = "through"
from = "h1"
to = "h2"
size = "512KB"
at = "3s"

[[assert]]
tunnel = "gw-b"
up_within = "3s"

[[assert]]
transfer = "through"
"#
    )
}

fn run(text: &str) -> rampart_sim::Report {
    let sc = rampart_sim::scenario::parse(text, "middlebox").unwrap();
    rampart_sim::run(&sc, None, None).unwrap()
}

const NAT: &str = r#"
[[node]]
name = "box"
kind = "nat"
outside = "wan"
routes = ["0.0.0.0/0 via 192.0.2.254"]
"#;

#[test]
fn hide_nat_moves_the_tunnel_to_esp_in_udp() {
    let report = run(&scenario(NAT, ""));
    let text = report.render();
    assert!(report.passed(), "{text}");
    assert!(text.contains("esp-in-udp"), "{text}");
}

#[test]
fn fragment_dropping_nat_lets_unfragmented_ike_through() {
    let nat = format!("{NAT}drop_fragments = true\n");
    let report = run(&scenario(&nat, ""));
    assert!(report.passed(), "{}", report.render());
}

#[test]
fn firewall_open_for_ike_ports_passes_the_tunnel() {
    let fw = r#"
[[node]]
name = "box"
kind = "firewall"
outside = "wan"
routes = ["0.0.0.0/0 via 192.0.2.254"]
allow = ["udp/500", "udp/4500", "esp"]
"#;
    let text = scenario(fw, "").replace(
        "remote_address = \"192.0.2.1\"",
        "remote_address = \"192.168.1.2\"",
    );
    let text = text.replace(
        "[[node]]\nname = \"r1\"\nkind = \"router\"\n",
        "[[node]]\nname = \"r1\"\nkind = \"router\"\nroutes = [\"192.168.1.0/24 via 192.0.2.1\"]\n",
    );
    let report = run(&text);
    assert!(report.passed(), "{}", report.render());
}

#[test]
fn hotel_firewall_allowing_only_web_blocks_ike() {
    let fw = r#"
[[node]]
name = "box"
kind = "firewall"
outside = "wan"
routes = ["0.0.0.0/0 via 192.0.2.254"]
allow = ["tcp/80", "tcp/443"]
"#;
    let text = scenario(fw, "")
        .replace(
            "remote_address = \"192.0.2.1\"",
            "remote_address = \"192.168.1.2\"",
        )
        .replace(
            "[[node]]\nname = \"r1\"\nkind = \"router\"\n",
            "[[node]]\nname = \"r1\"\nkind = \"router\"\nroutes = [\"192.168.1.0/24 via 192.0.2.1\"]\n",
        );
    let report = run(&text);
    assert!(!report.passed());
    let text = report.render();
    assert!(
        text.contains("firewall: blocked by the port filter"),
        "{text}"
    );
    assert!(
        text.contains("reproduce with: rampart lab run middlebox --seed 1"),
        "{text}"
    );
}
