//! The site-to-site topology with a hide-NAT router in front of gw1:
//!
//! ```text
//!  h1 ── gw1 wan0 172.16.0.2 ── in0 172.16.0.1  nat  out0 192.0.2.1 ══ wan0 192.0.2.2  gw2 ── h2
//! ```
//! The NAT masquerades everything leaving `out0` behind 192.0.2.1 with source ports taken from a
//! configurable range (nftables), so gw2 only ever sees 192.0.2.1 with translated ports. gw2 has
//! no route to 172.16.0.0/24. The domains and host addresses are those of [`crate::topology`].
//!
//! Also here: [`udp_datagrams`], the UDP endpoints and payload sizes of a capture, to see which
//! ports the NAT picked.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use crate::capture::Capture;
use crate::env::{serial, SerialGuard};
use crate::netns::{veth, Netns};
use crate::rampart::{GatewayToml, PeerToml};
use crate::topology::{DOMAIN1, DOMAIN2, GW1_LAN, GW2_LAN, GW2_WAN, H1, H2, PSK, WAN_IF};
use crate::workdir::TestDir;

/// gw1's private transit address, behind the NAT.
pub const GW1_PRIVATE: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 2);
/// The NAT's inside address (gw1's default gateway).
pub const NAT_INSIDE: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 1);
/// The NAT's public address: what gw2 sees as gw1.
pub const NAT_PUBLIC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The NAT's interface towards gw2.
pub const NAT_OUT_IF: &str = "out0";
/// nftables table of the NAT namespace.
const TABLE: &str = "rampart_nat";

/// The five namespaces, the test directory and the serial lock.
#[derive(Debug)]
pub struct NatSiteToSite {
    pub h1: Netns,
    pub gw1: Netns,
    pub nat: Netns,
    pub gw2: Netns,
    pub h2: Netns,
    pub dir: TestDir,
    _serial: SerialGuard,
}

impl NatSiteToSite {
    /// Builds the topology; the NAT maps source ports into `ports` (`"20000-20999"`).
    #[track_caller]
    pub fn new(test: &str, ports: &str) -> NatSiteToSite {
        let lock = serial();
        let dir = TestDir::new(test);
        let h1 = Netns::new("h1");
        let gw1 = Netns::new("gw1");
        let nat = Netns::new("nat");
        let gw2 = Netns::new("gw2");
        let h2 = Netns::new("h2");
        let c24 = |a: Ipv4Addr| format!("{a}/24");
        veth(&h1, "eth0", &[&c24(H1)], &gw1, "lan0", &[&c24(GW1_LAN)]);
        veth(
            &gw1,
            WAN_IF,
            &[&c24(GW1_PRIVATE)],
            &nat,
            "in0",
            &[&c24(NAT_INSIDE)],
        );
        veth(
            &nat,
            NAT_OUT_IF,
            &[&c24(NAT_PUBLIC)],
            &gw2,
            WAN_IF,
            &[&c24(GW2_WAN)],
        );
        veth(&gw2, "lan0", &[&c24(GW2_LAN)], &h2, "eth0", &[&c24(H2)]);
        h1.route(&format!("default via {GW1_LAN}"));
        h2.route(&format!("default via {GW2_LAN}"));
        gw1.route(&format!("default via {NAT_INSIDE}"));
        gw1.enable_forwarding();
        gw2.enable_forwarding();
        nat.enable_forwarding();
        let topo = NatSiteToSite {
            h1,
            gw1,
            nat,
            gw2,
            h2,
            dir,
            _serial: lock,
        };
        topo.masquerade(ports);
        topo
    }

    /// (Re)writes the NAT's ruleset: masquerade on `out0` with source ports in `ports`.
    /// Existing conntrack entries keep their mapping until [`NatSiteToSite::flush_conntrack`].
    #[track_caller]
    pub fn masquerade(&self, ports: &str) {
        let _ = self.nat.try_exec(&["nft", "delete", "table", "ip", TABLE]);
        let rules = format!(
            "table ip {TABLE} {{\n  chain post {{\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname \"{NAT_OUT_IF}\" meta l4proto udp masquerade to :{ports}\n    oifname \"{NAT_OUT_IF}\" masquerade\n  }}\n}}\n"
        );
        let file = self.dir.file("nat.nft");
        std::fs::write(&file, rules).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        self.nat.exec(&["nft", "-f", &file.to_string_lossy()]);
    }

    /// Forgets every NAT mapping (`conntrack -F`): the next datagram gets a new one.
    #[track_caller]
    pub fn flush_conntrack(&self) {
        self.nat.exec(&["conntrack", "-F"]);
    }

    /// Starts a capture on the public link (between the NAT and gw2).
    #[track_caller]
    pub fn capture_public(&self, label: &str) -> Capture {
        Capture::start(&self.nat, NAT_OUT_IF, self.dir.path(), label)
    }

    /// The public transit addresses, for [`crate::pcap::check_only_ike_esp`].
    pub fn public_gateways() -> (IpAddr, IpAddr) {
        (IpAddr::V4(NAT_PUBLIC), IpAddr::V4(GW2_WAN))
    }

    /// A sub-directory of the test directory for one daemon.
    #[track_caller]
    pub fn daemon_dir(&self, name: &str) -> std::path::PathBuf {
        self.dir.subdir(name)
    }

    /// The two Rampart gateways of this topology: gw1 (`gw-a`, behind the NAT, FQDN identity
    /// `site-a.example`) initiates towards gw2; gw2 (`gw-b`) knows it only by the NAT's public
    /// address and waits (`start_action = "none"`). Tests change what they exercise.
    pub fn rampart_pair(&self) -> (GatewayToml, GatewayToml) {
        let mut p1 = PeerToml::new(
            "site-b",
            &GW1_PRIVATE.to_string(),
            &GW2_WAN.to_string(),
            DOMAIN2,
            PSK,
        );
        p1.local_id = "site-a.example".into();
        p1.remote_id = "site-b.example".into();
        let mut p2 = PeerToml::new(
            "site-a",
            &GW2_WAN.to_string(),
            &NAT_PUBLIC.to_string(),
            DOMAIN1,
            PSK,
        );
        p2.local_id = "site-b.example".into();
        p2.remote_id = "site-a.example".into();
        p2.start_action = "none".into();
        (
            GatewayToml::new("gw-a", &self.daemon_dir("gw1"), DOMAIN1, p1),
            GatewayToml::new("gw-b", &self.daemon_dir("gw2"), DOMAIN2, p2),
        )
    }
}

/// One UDP datagram of a capture: endpoints and the UDP payload length (from the UDP header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpDatagram {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub payload_len: usize,
    /// The first payload byte, when captured.
    pub first_byte: Option<u8>,
}

/// Every unfragmented IPv4/IPv6 UDP datagram of a pcap file (Ethernet or Linux cooked captures).
pub fn udp_datagrams(path: &Path) -> Result<Vec<UdpDatagram>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let (linktype, records) = crate::pcap::parse(&bytes)?;
    let offset = match linktype {
        1 => 14,
        113 => 16,
        276 => 20,
        other => return Err(format!("unsupported link type {other}")),
    };
    let mut out = Vec::new();
    for rec in records {
        let Some(ip) = rec.data.get(offset..) else {
            continue;
        };
        let Some((src, dst, l4)) = udp_of(ip) else {
            continue;
        };
        let (Some(sport), Some(dport), Some(len)) = (be16(l4, 0), be16(l4, 2), be16(l4, 4)) else {
            continue;
        };
        out.push(UdpDatagram {
            src: SocketAddr::new(src, sport),
            dst: SocketAddr::new(dst, dport),
            payload_len: usize::from(len).saturating_sub(8),
            first_byte: l4.get(8).copied(),
        });
    }
    Ok(out)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Source, destination and UDP header onwards of an unfragmented UDP packet.
fn udp_of(ip: &[u8]) -> Option<(IpAddr, IpAddr, &[u8])> {
    match ip.first()? >> 4 {
        4 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let frag = be16(ip, 6)? & 0x1fff;
            if *ip.get(9)? != 17 || frag != 0 {
                return None;
            }
            let a: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let b: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            Some((IpAddr::from(a), IpAddr::from(b), ip.get(ihl..)?))
        }
        6 => {
            if *ip.get(6)? != 17 {
                return None;
            }
            let a: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let b: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            Some((IpAddr::from(a), IpAddr::from(b), ip.get(40..)?))
        }
        _ => None,
    }
}
