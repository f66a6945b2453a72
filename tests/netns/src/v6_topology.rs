//! The site-to-site topology with IPv6: `h1 -- gw1 == transit == gw2 -- h2` where every link
//! carries both the IPv4 addresses of [`crate::topology`] and the IPv6 addresses below, so a test
//! picks the outer family (the gateways' transit addresses in the configuration) and the inner
//! family (the domains) independently.
//!
//! ```text
//!  h1 fd00:1::10 ── fd00:1::1 gw1 2001:db8:ff::1 ══ 2001:db8:ff::2 gw2 fd00:2::1 ── fd00:2::10 h2
//! ```
//! IPv6 addresses are added without duplicate address detection so they are usable at once.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use crate::capture::Capture;
use crate::env::{serial, SerialGuard};
use crate::netns::{veth, Netns};
use crate::topology::{GW1_LAN, GW1_WAN, GW2_LAN, GW2_WAN, H1, H2, WAN_IF};
use crate::workdir::TestDir;

pub const DOMAIN1_V6: &str = "fd00:1::/64";
pub const DOMAIN2_V6: &str = "fd00:2::/64";
pub const H1_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 0x10);
pub const GW1_LAN_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1);
pub const GW1_WAN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 1);
pub const GW2_WAN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 2);
pub const GW2_LAN_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 1);
pub const H2_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 0x10);

/// The four dual-stack namespaces, the test directory and the serial lock.
#[derive(Debug)]
pub struct DualStackSiteToSite {
    pub h1: Netns,
    pub gw1: Netns,
    pub gw2: Netns,
    pub h2: Netns,
    pub dir: TestDir,
    _serial: SerialGuard,
}

/// A namespace with IPv6 turned back on (the harness turns it off by default).
#[track_caller]
fn ns_v6(role: &str) -> Netns {
    let ns = Netns::new(role);
    for key in [
        "net.ipv6.conf.all.disable_ipv6",
        "net.ipv6.conf.default.disable_ipv6",
        "net.ipv6.conf.lo.disable_ipv6",
    ] {
        ns.sysctl(key, "0");
    }
    // No router solicitations or autoconfiguration: captures hold what the test sent.
    ns.sysctl("net.ipv6.conf.default.accept_ra", "0");
    ns.sysctl("net.ipv6.conf.default.router_solicitations", "0");
    ns
}

impl DualStackSiteToSite {
    #[track_caller]
    pub fn new(test: &str) -> DualStackSiteToSite {
        let lock = serial();
        let dir = TestDir::new(test);
        let h1 = ns_v6("h1");
        let gw1 = ns_v6("gw1");
        let gw2 = ns_v6("gw2");
        let h2 = ns_v6("h2");
        let c4 = |a: Ipv4Addr| format!("{a}/24");
        veth(&h1, "eth0", &[&c4(H1)], &gw1, "lan0", &[&c4(GW1_LAN)]);
        veth(&gw1, WAN_IF, &[&c4(GW1_WAN)], &gw2, WAN_IF, &[&c4(GW2_WAN)]);
        veth(&gw2, "lan0", &[&c4(GW2_LAN)], &h2, "eth0", &[&c4(H2)]);
        for (ns, ifname, addr) in [
            (&h1, "eth0", H1_V6),
            (&gw1, "lan0", GW1_LAN_V6),
            (&gw1, WAN_IF, GW1_WAN_V6),
            (&gw2, WAN_IF, GW2_WAN_V6),
            (&gw2, "lan0", GW2_LAN_V6),
            (&h2, "eth0", H2_V6),
        ] {
            ns.ip(&format!("addr add {addr}/64 dev {ifname} nodad"));
        }
        h1.route(&format!("default via {GW1_LAN}"));
        h2.route(&format!("default via {GW2_LAN}"));
        h1.ip(&format!("-6 route add default via {GW1_LAN_V6}"));
        h2.ip(&format!("-6 route add default via {GW2_LAN_V6}"));
        for gw in [&gw1, &gw2] {
            gw.enable_forwarding();
            gw.sysctl("net.ipv6.conf.all.forwarding", "1");
        }
        DualStackSiteToSite {
            h1,
            gw1,
            gw2,
            h2,
            dir,
            _serial: lock,
        }
    }

    /// Starts a capture on gw1's transit interface.
    #[track_caller]
    pub fn capture_transit(&self, label: &str) -> Capture {
        Capture::start(&self.gw1, WAN_IF, self.dir.path(), label)
    }

    /// The IPv6 transit addresses.
    pub fn gateways_v6() -> (IpAddr, IpAddr) {
        (IpAddr::V6(GW1_WAN_V6), IpAddr::V6(GW2_WAN_V6))
    }

    #[track_caller]
    pub fn daemon_dir(&self, name: &str) -> PathBuf {
        self.dir.subdir(name)
    }
}

/// Like [`crate::pcap::check_only_ike_esp`] for a dual-stack link: every IP packet is IKE, ESP
/// or ESP-in-UDP between `gateways`, except ICMPv6 and link-local or multicast control traffic
/// (neighbour discovery, MLD: what IPv6 needs on any link). Returns the number of ESP packets (raw, in UDP) and IKE packets.
pub fn check_transit(
    path: &std::path::Path,
    gateways: (IpAddr, IpAddr),
    nat_t_port: u16,
) -> Result<TransitCounts, String> {
    use crate::pcap::{classify, parse, Class};
    let bytes = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let (linktype, records) = parse(&bytes)?;
    let mut counts = TransitCounts::default();
    let mut violations = Vec::new();
    for (index, rec) in records.iter().enumerate() {
        let (class, endpoints) = classify(linktype, rec.data, nat_t_port);
        let link_local = endpoints.is_some_and(|(src, dst)| match (src, dst) {
            (IpAddr::V6(s), IpAddr::V6(d)) => s.is_unicast_link_local() || d.is_multicast(),
            _ => false,
        });
        if let Class::Other(what) = &class {
            if what.starts_with("IP protocol 58 ") || link_local {
                counts.icmpv6 += 1;
                continue;
            }
        }
        if let Some((src, dst)) = endpoints {
            if (src, dst) != gateways && (dst, src) != gateways {
                violations.push(format!("#{index}: unexpected endpoints {src} -> {dst}"));
            }
        }
        match class {
            Class::Ike => counts.ike += 1,
            Class::Esp => counts.esp += 1,
            Class::EspInUdp => counts.esp_in_udp += 1,
            Class::Other(what) => violations.push(format!("#{index}: {what}")),
            _ => {}
        }
    }
    if !violations.is_empty() {
        violations.truncate(20);
        return Err(format!(
            "{} holds packets that are not IKE/ESP between {} and {}:\n{}",
            path.display(),
            gateways.0,
            gateways.1,
            violations.join("\n")
        ));
    }
    Ok(counts)
}

/// What [`check_transit`] counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransitCounts {
    pub ike: u64,
    pub esp: u64,
    pub esp_in_udp: u64,
    pub icmpv6: u64,
}
