//! The remote-access topology: a roaming client behind a masquerading (and filtering) router,
//! the gateway on the public side, and a host on the gateway's internal network.
//!
//! ```text
//!  client eth0 192.168.77.2 ── in0 192.168.77.1  router  out0 203.0.113.1 ══ wan0 203.0.113.2  gw  lan0 10.10.0.1 ── eth0 10.10.0.2 inner
//! ```
//! The router masquerades everything leaving `out0` (the client's address never reaches the
//! gateway) and filters what the client may send out ([`Egress`]): everything, no UDP, only TCP
//! 443, or nothing at all (then only a proxy running on the router itself, like a corporate
//! proxy, reaches out). The gateway has no route to 192.168.77.0/24, and `inner` only knows the
//! gateway: a packet from a client reaches `inner` only through a tunnel with an Office Mode
//! address. Every address exists only inside these namespaces.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use crate::env::{serial, SerialGuard};
use crate::netns::{veth, Netns};
use crate::workdir::TestDir;

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
pub const ROUTER_IN: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
pub const ROUTER_OUT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
pub const GW_WAN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
pub const GW_LAN: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 1);
pub const INNER: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
/// The gateway's protected network (the split-tunnel route the clients get).
pub const INTERNAL: &str = "10.10.0.0/24";
/// The Office Mode pool.
pub const POOL: &str = "10.99.0.0/24";
/// The DNS server the gateway hands out (the inner host).
pub const DNS: Ipv4Addr = INNER;
/// The split-DNS domain the gateway hands out.
pub const DNS_DOMAIN: &str = "corp.example";
/// The proxy on the router (squid), on its inside address.
pub const PROXY_PORT: u16 = 3128;
/// Extra client addresses for the load generator ([`RaTopology::add_load_addresses`]).
pub const LOAD_NET: &str = "192.168.76.0/22";

/// What the router lets the client send out through `out0` (answers always come back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress {
    /// Everything (a home network).
    Open,
    /// No UDP at all (UDP 500/4500 silently dropped): TCP works.
    NoUdp,
    /// Only TCP 443 (a hotel network).
    Tcp443Only,
    /// Nothing: only the proxy on the router reaches out (a corporate network).
    ProxyOnly,
}

/// nftables table of the router.
const TABLE: &str = "rampart_ra";

/// The four namespaces, the test directory and the serial lock, released in that order.
#[derive(Debug)]
pub struct RaTopology {
    pub client: Netns,
    pub router: Netns,
    pub gw: Netns,
    pub inner: Netns,
    pub dir: TestDir,
    _serial: SerialGuard,
}

impl RaTopology {
    /// Builds the topology with [`Egress::Open`] (takes the serial lock first).
    #[track_caller]
    pub fn new(test: &str) -> RaTopology {
        let lock = serial();
        let dir = TestDir::new(test);
        let client = Netns::new("client");
        let router = Netns::new("router");
        let gw = Netns::new("gw");
        let inner = Netns::new("inner");
        let c24 = |a: Ipv4Addr| format!("{a}/24");
        veth(
            &client,
            "eth0",
            &[&c24(CLIENT)],
            &router,
            "in0",
            &[&c24(ROUTER_IN), "192.168.76.1/22"],
        );
        veth(
            &router,
            "out0",
            &[&c24(ROUTER_OUT)],
            &gw,
            "wan0",
            &[&c24(GW_WAN)],
        );
        veth(&gw, "lan0", &[&c24(GW_LAN)], &inner, "eth0", &[&c24(INNER)]);
        client.route(&format!("default via {ROUTER_IN}"));
        inner.route(&format!("default via {GW_LAN}"));
        router.enable_forwarding();
        gw.enable_forwarding();
        let topo = RaTopology {
            client,
            router,
            gw,
            inner,
            dir,
            _serial: lock,
        };
        topo.set_egress(Egress::Open);
        // The gateway never forwards clear traffic from the public side to the internal
        // network: the inner host is reachable only through a tunnel (decrypted packets come
        // out of the gateway's TUN device, not `wan0`).
        let guard = "table ip rampart_ra_gw {\n  chain clear_guard {\n    type filter hook forward priority filter; policy accept;\n    iifname \"wan0\" oifname \"lan0\" drop\n  }\n}\n";
        let file = topo.dir.file("gw.nft");
        std::fs::write(&file, guard).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        topo.gw.exec(&["nft", "-f", &file.to_string_lossy()]);
        topo
    }

    /// (Re)writes the router's ruleset: masquerade on `out0` and the `egress` filter on what
    /// is forwarded from the client side. Established flows keep their conntrack entries.
    #[track_caller]
    pub fn set_egress(&self, egress: Egress) {
        let _ = self
            .router
            .try_exec(&["nft", "delete", "table", "ip", TABLE]);
        let filter = match egress {
            Egress::Open => "",
            Egress::NoUdp => "    iifname \"in0\" meta l4proto udp drop\n",
            Egress::Tcp443Only => {
                "    iifname \"in0\" tcp dport 443 accept\n    iifname \"in0\" drop\n"
            }
            Egress::ProxyOnly => "    iifname \"in0\" drop\n",
        };
        let rules = format!(
            "table ip {TABLE} {{\n  chain egress_filter {{\n    type filter hook forward priority filter; policy accept;\n    ct state established,related accept\n{filter}  }}\n  chain masq {{\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname \"out0\" masquerade\n  }}\n}}\n"
        );
        let file = self.dir.file("router.nft");
        std::fs::write(&file, rules).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        self.router.exec(&["nft", "-f", &file.to_string_lossy()]);
        // Forget mappings so that a flow allowed before is judged again.
        let _ = self.router.try_exec(&["conntrack", "-F"]);
    }

    /// A sub-directory of the test directory for one daemon.
    #[track_caller]
    pub fn daemon_dir(&self, name: &str) -> PathBuf {
        self.dir.subdir(name)
    }

    /// Adds `n` extra addresses to the client (for the load generator) and returns them:
    /// 192.168.76.2.. inside [`LOAD_NET`], routed by the router like the client's own.
    #[track_caller]
    pub fn add_load_addresses(&self, n: usize) -> Vec<Ipv4Addr> {
        assert!(n <= 1000, "at most 1000 load addresses");
        let mut out = Vec::with_capacity(n);
        let mut batch = String::new();
        for i in 0..n {
            let v = 2 + i as u32;
            let a = Ipv4Addr::new(192, 168, 76 + (v / 256) as u8, (v % 256) as u8);
            batch.push_str(&format!("address add {a}/22 dev eth0\n"));
            out.push(a);
        }
        let file = self.dir.file("load-addrs.batch");
        std::fs::write(&file, batch).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        self.client.ip(&format!("-batch {}", file.display()));
        out
    }
}
