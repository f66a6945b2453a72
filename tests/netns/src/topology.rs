//! The site-to-site topology: `h1 -- gw1 == transit == gw2 -- h2`.
//!
//! ```text
//!  h1 eth0 10.1.0.10 ── lan0 10.1.0.1  gw1  wan0 192.0.2.1 ══ wan0 192.0.2.2  gw2  lan0 10.2.0.1 ── eth0 10.2.0.10 h2
//! ```
//! Every address exists only inside these namespaces. The gateways forward but have no route to
//! the other site: the only way between the domains is a tunnel, so a missing tunnel shows up as
//! unreachable, never as cleartext on the transit link.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use crate::capture::Capture;
use crate::env::{serial, SerialGuard};
use crate::netns::{veth, Netns};
use crate::rampart::{GatewayToml, PeerToml};
use crate::workdir::TestDir;

pub const DOMAIN1: &str = "10.1.0.0/24";
pub const DOMAIN2: &str = "10.2.0.0/24";
pub const H1: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
pub const GW1_LAN: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
pub const GW1_WAN: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const GW2_WAN: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub const GW2_LAN: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
pub const H2: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 10);
/// Transit interface name in both gateways.
pub const WAN_IF: &str = "wan0";
/// A pre-shared key of more than 16 bytes.
pub const PSK: &str = "rampart netns test key, not secret";

/// The four namespaces, the test directory and the serial lock, released in that order.
#[derive(Debug)]
pub struct SiteToSite {
    pub h1: Netns,
    pub gw1: Netns,
    pub gw2: Netns,
    pub h2: Netns,
    /// Logs, configs and captures; printed when the test fails.
    pub dir: TestDir,
    _serial: SerialGuard,
}

impl SiteToSite {
    /// Builds the topology (takes the serial lock first).
    #[track_caller]
    pub fn new(test: &str) -> SiteToSite {
        let lock = serial();
        let dir = TestDir::new(test);
        let h1 = Netns::new("h1");
        let gw1 = Netns::new("gw1");
        let gw2 = Netns::new("gw2");
        let h2 = Netns::new("h2");
        let cidr = |a: Ipv4Addr| format!("{a}/24");
        veth(&h1, "eth0", &[&cidr(H1)], &gw1, "lan0", &[&cidr(GW1_LAN)]);
        veth(
            &gw1,
            WAN_IF,
            &[&cidr(GW1_WAN)],
            &gw2,
            WAN_IF,
            &[&cidr(GW2_WAN)],
        );
        veth(&gw2, "lan0", &[&cidr(GW2_LAN)], &h2, "eth0", &[&cidr(H2)]);
        h1.route(&format!("default via {GW1_LAN}"));
        h2.route(&format!("default via {GW2_LAN}"));
        gw1.enable_forwarding();
        gw2.enable_forwarding();
        SiteToSite {
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

    /// The two transit addresses, for [`crate::pcap::check_only_ike_esp`].
    pub fn gateways() -> (IpAddr, IpAddr) {
        (IpAddr::V4(GW1_WAN), IpAddr::V4(GW2_WAN))
    }

    /// A sub-directory of the test directory for one daemon.
    #[track_caller]
    pub fn daemon_dir(&self, name: &str) -> PathBuf {
        self.dir.subdir(name)
    }

    /// The two Rampart gateways of this topology with the example's defaults: gw1 (`gw-a`, peer
    /// `site-b`) initiates (`start_action = "always"`), gw2 (`gw-b`, peer `site-a`) waits (`none`).
    /// Tests change what they exercise on the returned values.
    pub fn rampart_pair(&self) -> (GatewayToml, GatewayToml) {
        let (gw1, gw2) = (GW1_WAN.to_string(), GW2_WAN.to_string());
        let p1 = PeerToml::new("site-b", &gw1, &gw2, DOMAIN2, PSK);
        let mut p2 = PeerToml::new("site-a", &gw2, &gw1, DOMAIN1, PSK);
        p2.start_action = "none".into();
        (
            GatewayToml::new("gw-a", &self.daemon_dir("gw1"), DOMAIN1, p1),
            GatewayToml::new("gw-b", &self.daemon_dir("gw2"), DOMAIN2, p2),
        )
    }
}
