//! The HTTP CONNECT proxy with real TCP (smoltcp) hosts: a guest behind a hotel firewall that
//! lets only TCP 80 and 443 out reaches a server through a proxy on port 443 with valid Basic
//! credentials; without or with wrong credentials the proxy answers 407; directly the firewall
//! blocks it.

const HOTEL: &str = r#"
name = "hotel-proxy"
summary = "a guest behind a hotel firewall reaches a server through an HTTP CONNECT proxy"
duration = "8s"

[[node]]
name = "guest"
kind = "host"
routes = ["0.0.0.0/0 via 10.9.0.1"]

[[node]]
name = "fw"
kind = "firewall"
routes = ["0.0.0.0/0 via 192.0.2.254"]
outside = "uplink"
allow = ["tcp/80", "tcp/443"]

[[node]]
name = "r1"
kind = "router"
routes = ["10.9.0.0/24 via 192.0.2.1"]

[[node]]
name = "px"
kind = "proxy"
routes = ["0.0.0.0/0 via 203.0.113.254"]
port = 443
basic_auth = "guest:s3cret"

[[node]]
name = "srv"
kind = "host"
routes = ["0.0.0.0/0 via 198.51.100.254"]

[[link]]
name = "room"
a = "guest 10.9.0.10/24"
b = "fw 10.9.0.1/24"

[[link]]
name = "uplink"
a = "fw 192.0.2.1/24"
b = "r1 192.0.2.254/24"
latency = "5ms"

[[link]]
name = "proxy-link"
a = "r1 203.0.113.254/24"
b = "px 203.0.113.10/24"
latency = "2ms"

[[link]]
name = "server-link"
a = "r1 198.51.100.254/24"
b = "srv 198.51.100.10/24"
latency = "5ms"

[[transfer]]
name = "proxied"
from = "guest"
to = "srv"
size = "256KB"
at = "1s"
via_proxy = "px"
proxy_auth = "guest:s3cret"

[[transfer]]
name = "no-credentials"
from = "guest"
to = "srv"
size = "64KB"
at = "1s"
via_proxy = "px"

[[transfer]]
name = "wrong-password"
from = "guest"
to = "srv"
size = "64KB"
at = "1s"
via_proxy = "px"
proxy_auth = "guest:nope"

[[transfer]]
name = "direct"
from = "guest"
to = "srv"
size = "64KB"
at = "1s"

[[assert]]
transfer = "proxied"
within = "3s"

[[assert]]
transfer = "no-credentials"
fails_with = "407"

[[assert]]
transfer = "wrong-password"
fails_with = "407"
"#;

#[test]
fn hotel_guest_reaches_server_through_proxy_only_with_credentials() {
    let sc = rampart_sim::scenario::parse(HOTEL, "hotel-proxy").unwrap();
    let report = rampart_sim::run(&sc, None, None).unwrap();
    let text = report.render();
    if std::env::var_os("SIM_PRINT").is_some() {
        println!("{text}");
    }
    assert!(report.passed(), "{text}");
    assert!(text.contains("proxy: CONNECT 198.51.100.10:5001"), "{text}");
    assert!(text.contains("407 Proxy Authentication Required"), "{text}");
    // The direct connection to port 5004 never gets through the port filter.
    assert!(
        text.contains("firewall: blocked by the port filter"),
        "{text}"
    );
    let direct = text
        .lines()
        .find(|l| l.trim_start().starts_with("direct ") && l.contains("guest -> srv"))
        .expect("a transfers row for direct");
    assert!(direct.contains("incomplete"), "{text}");
}

#[test]
fn proxy_keys_are_validated() {
    let bad = HOTEL.replace("basic_auth = \"guest:s3cret\"", "basic_auth = \"nocolon\"");
    let sc = rampart_sim::scenario::parse(&bad, "bad").unwrap();
    assert!(rampart_sim::run(&sc, None, None).is_err());
    let bad = HOTEL.replace(
        "via_proxy = \"px\"\nproxy_auth = \"guest:nope\"",
        "via_proxy = \"srv\"",
    );
    let sc = rampart_sim::scenario::parse(&bad, "bad").unwrap();
    let e = rampart_sim::run(&sc, None, None).err().unwrap().to_string();
    assert!(e.contains("is not a proxy"), "{e}");
}
