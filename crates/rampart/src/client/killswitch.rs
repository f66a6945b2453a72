//! The kill switch: an nftables table `inet rampart_client` whose output chain drops every
//! packet that would leave outside the tunnel, except to the outer endpoints (the gateway,
//! the proxy), on loopback, DHCP (so the lease on the local network is kept) and IPv6
//! neighbour discovery. Installed before the first connection attempt and kept across
//! reconnects, so nothing leaks while the tunnel is being rebuilt.

use std::net::IpAddr;

/// The table's name.
pub const TABLE: &str = "rampart_client";

/// The nft script that (re)creates the table: it is added, flushed and deleted first, so the
/// script is idempotent and replaces an older version atomically (one `nft -f` transaction).
pub fn ruleset(device: &str, outer: &[IpAddr], extra: &[(IpAddr, u16)]) -> String {
    let mut rules = vec![
        "oifname \"lo\" accept".to_owned(),
        format!("oifname \"{device}\" accept"),
        "udp sport 68 udp dport 67 accept".to_owned(),
        "icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } accept"
            .to_owned(),
        "udp sport 546 udp dport 547 accept".to_owned(),
    ];
    for addr in outer {
        rules.push(format!("{} daddr {addr} accept", family(addr)));
    }
    for (addr, port) in extra {
        rules.push(format!(
            "{} daddr {addr} tcp dport {port} accept",
            family(addr)
        ));
    }
    rules.push("counter reject".to_owned());
    let mut out = format!("table inet {TABLE}\ndelete table inet {TABLE}\n");
    out.push_str(&format!("table inet {TABLE} {{\n"));
    out.push_str("  chain output {\n    type filter hook output priority filter; policy accept;\n");
    for r in rules {
        out.push_str("    ");
        out.push_str(&r);
        out.push('\n');
    }
    out.push_str("  }\n}\n");
    out
}

fn family(addr: &IpAddr) -> &'static str {
    match addr {
        IpAddr::V4(_) => "ip",
        IpAddr::V6(_) => "ip6",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tunnel_endpoints_loopback_and_link_basics_leave() {
        let text = ruleset(
            "rampart-c0",
            &["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()],
            &[("198.51.100.9".parse().unwrap(), 80)],
        );
        assert!(text.starts_with(
            "table inet rampart_client\ndelete table inet rampart_client\ntable inet rampart_client {\n"
        ));
        for line in [
            "oifname \"lo\" accept",
            "oifname \"rampart-c0\" accept",
            "ip daddr 192.0.2.1 accept",
            "ip6 daddr 2001:db8::1 accept",
            "ip daddr 198.51.100.9 tcp dport 80 accept",
            "udp sport 68 udp dport 67 accept",
        ] {
            assert!(text.contains(&format!("    {line}\n")), "{line}");
        }
        // The last rule rejects what nothing accepted.
        assert!(text.ends_with("    counter reject\n  }\n}\n"));
    }
}
