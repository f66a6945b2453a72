//! What the host must look like for one Office Mode assignment: the address on the TUN
//! device, the routes into it (the gateway's subnets, or everything as 0.0.0.0/1 +
//! 128.0.0.0/1 so the original default route stays and comes back by itself), a host route to
//! each outer endpoint through the route it had before, and DNS. Pure: the caller looks up
//! the original routes and carries the changes out (see `system.rs`).
//!
//! Invariant: the host routes come first and the tunnel routes after the address, so at no
//! moment does the tunnel route capture the packets that carry the tunnel itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rampart_wire::ike::CfgReply;

use super::state::Change;

/// Where DNS settings go (the profile's `dns`, with `auto` already resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsBackend {
    Resolved,
    ResolvConf,
    Off,
}

/// The route an outer endpoint (the gateway, or the proxy the stream goes through) took
/// before the tunnel: kept as a host route so the tunnel's own packets never enter it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OuterRoute {
    pub endpoint: IpAddr,
    pub via: Option<IpAddr>,
    pub dev: String,
}

/// The inputs of a plan besides the assignment.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    pub device: &'a str,
    pub outer: &'a [OuterRoute],
    pub dns: DnsBackend,
    /// `/etc/resolv.conf` and where its backup goes (used with [`DnsBackend::ResolvConf`]).
    pub resolv_conf: (&'a std::path::Path, &'a std::path::Path),
    /// Whether resolv.conf is a symlink now (restored as one).
    pub resolv_conf_symlink: Option<std::path::PathBuf>,
}

/// The prefixes routed into the tunnel for `reply`: its subnets, or the two halves of the
/// address space (full tunnel) per family that has an address.
pub fn tunnel_routes(reply: &CfgReply) -> Vec<IpNet> {
    let mut routes = Vec::new();
    if !reply.ip4_addresses.is_empty() {
        if reply.ip4_subnets.is_empty() {
            routes.push(IpNet::V4(half(Ipv4Addr::new(0, 0, 0, 0))));
            routes.push(IpNet::V4(half(Ipv4Addr::new(128, 0, 0, 0))));
        } else {
            routes.extend(reply.ip4_subnets.iter().map(|n| IpNet::V4(n.trunc())));
        }
    }
    if !reply.ip6_addresses.is_empty() {
        if reply.ip6_subnets.is_empty() {
            routes.push(IpNet::V6(half6(Ipv6Addr::UNSPECIFIED)));
            routes.push(IpNet::V6(half6(Ipv6Addr::new(0x8000, 0, 0, 0, 0, 0, 0, 0))));
        } else {
            routes.extend(reply.ip6_subnets.iter().map(|n| IpNet::V6(n.trunc())));
        }
    }
    routes.sort();
    routes.dedup();
    routes
}

fn half(addr: Ipv4Addr) -> Ipv4Net {
    Ipv4Net::new(addr, 1).unwrap_or_default()
}

fn half6(addr: Ipv6Addr) -> Ipv6Net {
    Ipv6Net::new(addr, 1).unwrap_or_default()
}

/// Whether `reply` is a full tunnel (no subnets: everything goes into the tunnel).
pub fn full_tunnel(reply: &CfgReply) -> bool {
    reply.ip4_subnets.is_empty() && reply.ip6_subnets.is_empty()
}

/// The changes for `reply`, in the order they are made.
pub fn plan(reply: &CfgReply, input: &PlanInput<'_>) -> Vec<Change> {
    let routes = tunnel_routes(reply);
    let mut changes = Vec::new();
    // Host routes for outer endpoints the tunnel routes would otherwise capture.
    for outer in input.outer {
        if routes.iter().any(|r| r.contains(&outer.endpoint)) {
            changes.push(Change::Route {
                dest: IpNet::from(outer.endpoint),
                via: outer.via,
                dev: outer.dev.clone(),
            });
        }
    }
    for a in &reply.ip4_addresses {
        changes.push(Change::Address {
            dev: input.device.to_owned(),
            addr: IpNet::V4(Ipv4Net::from(*a)),
        });
    }
    for a in &reply.ip6_addresses {
        changes.push(Change::Address {
            dev: input.device.to_owned(),
            addr: IpNet::V6(*a),
        });
    }
    for dest in routes {
        changes.push(Change::Route {
            dest,
            via: None,
            dev: input.device.to_owned(),
        });
    }
    let has_dns = !reply.ip4_dns.is_empty() || !reply.ip6_dns.is_empty();
    if has_dns {
        match input.dns {
            DnsBackend::Resolved => changes.push(Change::Resolved {
                dev: input.device.to_owned(),
            }),
            DnsBackend::ResolvConf => changes.push(Change::ResolvConf {
                path: input.resolv_conf.0.to_owned(),
                backup: input.resolv_conf.1.to_owned(),
                symlink: input.resolv_conf_symlink.clone(),
            }),
            DnsBackend::Off => {}
        }
    }
    changes
}

/// Going from the applied changes `current` to `desired` (a new assignment on a rekeyed or
/// new IKE SA): what to undo (newest first) and what to make, leaving common changes alone.
/// Only changes a plan makes are considered; the kill switch and the PAC file stay.
pub fn diff(current: &[Change], desired: &[Change]) -> (Vec<Change>, Vec<Change>) {
    let plannable = |c: &&Change| {
        matches!(
            c,
            Change::Address { .. }
                | Change::Route { .. }
                | Change::Resolved { .. }
                | Change::ResolvConf { .. }
        )
    };
    let undo = current
        .iter()
        .filter(plannable)
        .filter(|c| !desired.contains(c))
        .rev()
        .cloned()
        .collect();
    let make = desired
        .iter()
        .filter(|c| !current.contains(c))
        .cloned()
        .collect();
    (undo, make)
}

/// The changes to undo when the assignment is lost: every address, tunnel route and DNS
/// setting (newest first); the host routes to the outer endpoints, the kill switch and the
/// PAC file stay until the client stops.
pub fn on_lost(current: &[Change], device: &str) -> Vec<Change> {
    current
        .iter()
        .rev()
        .filter(|c| match c {
            Change::Address { .. } | Change::Resolved { .. } | Change::ResolvConf { .. } => true,
            Change::Route { dev, .. } => dev == device,
            Change::Nft { .. } | Change::PacFile { .. } => false,
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn reply(subnets: &[&str]) -> CfgReply {
        CfgReply {
            ip4_addresses: vec!["10.99.0.7".parse().unwrap()],
            ip4_netmask: Some("255.255.255.0".parse().unwrap()),
            ip4_dns: vec!["10.1.0.53".parse().unwrap()],
            ip4_subnets: subnets.iter().map(|s| s.parse().unwrap()).collect(),
            dns_domains: vec!["corp.example".into()],
            ..CfgReply::default()
        }
    }

    fn outer() -> Vec<OuterRoute> {
        vec![OuterRoute {
            endpoint: "192.0.2.1".parse().unwrap(),
            via: Some("10.0.0.1".parse().unwrap()),
            dev: "eth0".into(),
        }]
    }

    fn input<'a>(outer: &'a [OuterRoute], dns: DnsBackend) -> PlanInput<'a> {
        PlanInput {
            device: "rampart-c0",
            outer,
            dns,
            resolv_conf: (Path::new("/etc/resolv.conf"), Path::new("/run/x/b")),
            resolv_conf_symlink: None,
        }
    }

    fn route(dest: &str, via: Option<&str>, dev: &str) -> Change {
        Change::Route {
            dest: dest.parse().unwrap(),
            via: via.map(|v| v.parse().unwrap()),
            dev: dev.into(),
        }
    }

    #[test]
    fn full_tunnel_keeps_the_gateway_on_its_original_route() {
        let o = outer();
        let changes = plan(&reply(&[]), &input(&o, DnsBackend::Resolved));
        assert_eq!(
            changes,
            vec![
                route("192.0.2.1/32", Some("10.0.0.1"), "eth0"),
                Change::Address {
                    dev: "rampart-c0".into(),
                    addr: "10.99.0.7/32".parse().unwrap()
                },
                route("0.0.0.0/1", None, "rampart-c0"),
                route("128.0.0.0/1", None, "rampart-c0"),
                Change::Resolved {
                    dev: "rampart-c0".into()
                },
            ]
        );
    }

    #[test]
    fn split_tunnel_needs_no_host_route_unless_a_subnet_covers_the_gateway() {
        let o = outer();
        let changes = plan(
            &reply(&["10.1.0.0/16", "10.2.3.4/24"]),
            &input(&o, DnsBackend::Off),
        );
        assert_eq!(
            changes,
            vec![
                Change::Address {
                    dev: "rampart-c0".into(),
                    addr: "10.99.0.7/32".parse().unwrap()
                },
                route("10.1.0.0/16", None, "rampart-c0"),
                route("10.2.3.0/24", None, "rampart-c0"),
            ]
        );
        let changes = plan(&reply(&["192.0.2.0/24"]), &input(&o, DnsBackend::Off));
        assert_eq!(changes[0], route("192.0.2.1/32", Some("10.0.0.1"), "eth0"));
    }

    #[test]
    fn resolv_conf_backend_and_no_dns_servers() {
        let o = outer();
        let changes = plan(&reply(&["10.1.0.0/16"]), &input(&o, DnsBackend::ResolvConf));
        assert!(matches!(changes.last(), Some(Change::ResolvConf { .. })));
        let mut r = reply(&["10.1.0.0/16"]);
        r.ip4_dns.clear();
        let changes = plan(&r, &input(&o, DnsBackend::ResolvConf));
        assert!(!changes
            .iter()
            .any(|c| matches!(c, Change::ResolvConf { .. })));
    }

    #[test]
    fn ipv6_full_tunnel() {
        let mut r = reply(&[]);
        r.ip6_addresses = vec!["fd00::7/128".parse().unwrap()];
        let routes = tunnel_routes(&r);
        assert_eq!(
            routes,
            ["0.0.0.0/1", "128.0.0.0/1", "::/1", "8000::/1"]
                .iter()
                .map(|s| s.parse::<IpNet>().unwrap())
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_new_address_replaces_only_what_changed_and_loss_keeps_the_gateway_route() {
        let o = outer();
        let before = plan(&reply(&[]), &input(&o, DnsBackend::Resolved));
        let mut r = reply(&[]);
        r.ip4_addresses = vec!["10.99.0.8".parse().unwrap()];
        let after = plan(&r, &input(&o, DnsBackend::Resolved));
        let (undo, make) = diff(&before, &after);
        assert_eq!(
            undo,
            vec![Change::Address {
                dev: "rampart-c0".into(),
                addr: "10.99.0.7/32".parse().unwrap()
            }]
        );
        assert_eq!(
            make,
            vec![Change::Address {
                dev: "rampart-c0".into(),
                addr: "10.99.0.8/32".parse().unwrap()
            }]
        );
        let mut all = vec![Change::Nft {
            table: "rampart_client".into(),
        }];
        all.extend(before);
        let lost = on_lost(&all, "rampart-c0");
        assert_eq!(lost.len(), 4);
        assert!(!lost.contains(&route("192.0.2.1/32", Some("10.0.0.1"), "eth0")));
        assert!(!lost.iter().any(|c| matches!(c, Change::Nft { .. })));
        assert!(matches!(lost[0], Change::Resolved { .. }));
    }
}
