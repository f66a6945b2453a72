//! The Multiple Entry Points topology: a satellite site in front of two entry points that
//! protect one internal network.
//!
//! ```text
//!                                                      sw: br-inet ("the internet")
//!  site eth0 10.1.0.10 ── lan0 10.1.0.1  sat  wan0 192.0.2.1 ──┬── wan0 192.0.2.11  m1  lan0 10.3.0.1 ──┬── sw: br-int
//!  (+ 10.1.0.100..)                                            └── wan0 192.0.2.12  m2  lan0 10.3.0.2 ──┤
//!                                              server eth0 10.3.1.10 ── srv0 10.3.1.1  rtr  lan0 10.3.0.254
//! ```
//! The bridges live in their own namespace `sw`. The satellite protects 10.1.0.0/24, the entry
//! points 10.3.0.0/16 (the internal LAN and the server's network behind the internal router).
//! Nothing routes between the domains in clear: the satellite has no route to 10.3.0.0/16 and
//! the entry points none to 10.1.0.0/24 but through their tunnels. The internal router knows
//! the way back to the satellite's domain only by what the test gives it: the IP Pool NAT pools
//! ([`MepTopology::route_pools`], pool `i` via entry point `i`) or OSPF (RIM cases).

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde_json::Value;

use crate::env::{serial, SerialGuard};
use crate::netns::{run, veth, Netns};
use crate::rampart::{binary, Gateway, GatewayToml, PeerToml};
use crate::topology::PSK;
use crate::workdir::TestDir;

/// The satellite's VPN domain.
pub const SITE_DOMAIN: &str = "10.1.0.0/24";
/// The site host's first address (its default route is the satellite).
pub const SITE_HOST: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
pub const SAT_LAN: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
pub const SAT_WAN: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The unified domain of the entry points.
pub const HQ_DOMAIN: &str = "10.3.0.0/16";
pub const ROUTER_LAN: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 254);
pub const ROUTER_SRV: Ipv4Addr = Ipv4Addr::new(10, 3, 1, 1);
pub const SERVER_NET: &str = "10.3.1.0/24";
pub const SERVER: Ipv4Addr = Ipv4Addr::new(10, 3, 1, 10);
/// Interface names.
pub const WAN_IF: &str = "wan0";
pub const LAN_IF: &str = "lan0";
/// Name of the explicit group in [`MepTopology::satellite_config`].
pub const GROUP: &str = "hq";
/// Kernel routing table and protocol number of injected routes in the RIM cases.
pub const RIM_TABLE: u32 = 201;
pub const RIM_PROTO: u32 = 201;

/// Entry point `i`'s (1 or 2) address towards the internet.
pub fn ep_wan(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 10 + i)
}

/// Entry point `i`'s address on the internal LAN.
pub fn ep_lan(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 3, 0, i)
}

/// Entry point `i`'s IP Pool NAT pool: outside every domain, routed to it by the internal
/// router.
pub fn pool(i: u8) -> String {
    format!("10.4.{i}.0/24")
}

/// Whether `addr` lies in entry point `i`'s pool.
pub fn in_pool(i: u8, addr: std::net::IpAddr) -> bool {
    match addr {
        std::net::IpAddr::V4(a) => a.octets()[..3] == [10, 4, i],
        std::net::IpAddr::V6(_) => false,
    }
}

/// The `n`-th extra source address of the site host (`n` < 100): 10.1.0.100 + n.
pub fn site_source(n: u8) -> Ipv4Addr {
    assert!(n < 100, "site sources are 10.1.0.100..=10.1.0.199");
    Ipv4Addr::new(10, 1, 0, 100 + n)
}

/// The satellite's MEP settings: `[mep]` and the explicit group `hq` = [m1, m2].
#[derive(Debug, Clone)]
pub struct SatelliteMep {
    pub probe_interval: String,
    pub probe_timeout: String,
    pub probe_misses: u32,
    /// `first-to-respond`, `by-vpn-domain`, `random` or `priority-list`.
    pub method: String,
    pub tie_break: Option<String>,
    pub tracking: bool,
    pub preconnect: bool,
    /// Lines appended after the group's keys: `[[entry_point_group.rule]]` tables.
    pub group_extra: String,
}

impl SatelliteMep {
    /// The defaults of the issue (1 s probes, 150 ms timeout, 3 misses) with `method`,
    /// tracking on, no preconnect.
    pub fn new(method: &str) -> SatelliteMep {
        SatelliteMep {
            probe_interval: "1s".into(),
            probe_timeout: "150ms".into(),
            probe_misses: 3,
            method: method.into(),
            tie_break: None,
            tracking: true,
            preconnect: false,
            group_extra: String::new(),
        }
    }

    pub fn to_toml(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "[mep]");
        let _ = writeln!(s, "probe_interval = \"{}\"", self.probe_interval);
        let _ = writeln!(s, "probe_timeout = \"{}\"", self.probe_timeout);
        let _ = writeln!(s, "probe_misses = {}", self.probe_misses);
        let _ = writeln!(s, "\n[[entry_point_group]]");
        let _ = writeln!(s, "name = \"{GROUP}\"");
        let _ = writeln!(s, "peers = [\"m1\", \"m2\"]");
        let _ = writeln!(s, "method = \"{}\"", self.method);
        if let Some(t) = &self.tie_break {
            let _ = writeln!(s, "tie_break = \"{t}\"");
        }
        let _ = writeln!(s, "tracking = {}", self.tracking);
        let _ = writeln!(s, "preconnect = {}", self.preconnect);
        if !self.group_extra.is_empty() {
            let _ = writeln!(s, "\n{}", self.group_extra);
        }
        s
    }
}

/// How an entry point sends the satellite's connections into the internal network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnPath {
    /// `[[nat]] type = "pool"` with [`pool`]`(i)`; the router routes the pool to it.
    PoolNat,
    /// `[rim]`: routes to the satellite's domain in table [`RIM_TABLE`] while its tunnel is up.
    Rim,
}

/// The namespaces, the test directory and the serial lock (released last).
#[derive(Debug)]
pub struct MepTopology {
    pub site: Netns,
    pub sat: Netns,
    pub m1: Netns,
    pub m2: Netns,
    pub router: Netns,
    pub server: Netns,
    /// The two bridges.
    pub switch: Netns,
    pub dir: TestDir,
    _serial: SerialGuard,
}

impl MepTopology {
    /// Builds the topology (takes the serial lock first); the site host gets `extra_sources`
    /// more addresses ([`site_source`]).
    #[track_caller]
    pub fn new(test: &str, extra_sources: u8) -> MepTopology {
        let lock = serial();
        let dir = TestDir::new(test);
        let switch = Netns::new("sw");
        for br in ["br-inet", "br-int"] {
            switch.ip(&format!("link add {br} type bridge"));
            switch.ip(&format!("link set {br} up"));
        }
        let c24 = |a: Ipv4Addr| format!("{a}/24");
        let port = |ns: &Netns, ifname: &str, addr: Ipv4Addr, sw_port: &str, br: &str| {
            veth(ns, ifname, &[&c24(addr)], &switch, sw_port, &[]);
            switch.ip(&format!("link set {sw_port} master {br}"));
        };

        let site = Netns::new("site");
        let sat = Netns::new("sat");
        veth(
            &site,
            "eth0",
            &[&c24(SITE_HOST)],
            &sat,
            LAN_IF,
            &[&c24(SAT_LAN)],
        );
        for n in 0..extra_sources {
            site.add_addr("eth0", &c24(site_source(n)));
        }
        site.route(&format!("default via {SAT_LAN}"));
        port(&sat, WAN_IF, SAT_WAN, "sat-inet", "br-inet");

        let m1 = Netns::new("m1");
        let m2 = Netns::new("m2");
        let router = Netns::new("rtr");
        for (i, m) in [(1u8, &m1), (2, &m2)] {
            port(m, WAN_IF, ep_wan(i), &format!("m{i}-inet"), "br-inet");
            port(m, LAN_IF, ep_lan(i), &format!("m{i}-int"), "br-int");
            m.route(&format!("{SERVER_NET} via {ROUTER_LAN}"));
        }
        port(&router, LAN_IF, ROUTER_LAN, "rtr-int", "br-int");
        let server = Netns::new("srv");
        veth(
            &router,
            "srv0",
            &[&c24(ROUTER_SRV)],
            &server,
            "eth0",
            &[&c24(SERVER)],
        );
        server.route(&format!("default via {ROUTER_SRV}"));
        for ns in [&sat, &m1, &m2, &router] {
            ns.enable_forwarding();
            // Replies may come back on another interface than the request left by (the router
            // with two entry points): no reverse-path filter.
            for key in ["all", "default"] {
                ns.sysctl(&format!("net.ipv4.conf.{key}.rp_filter"), "0");
            }
        }
        MepTopology {
            site,
            sat,
            m1,
            m2,
            router,
            server,
            switch,
            dir,
            _serial: lock,
        }
    }

    /// Entry point `i`'s namespace (1 or 2).
    #[track_caller]
    pub fn ep(&self, i: u8) -> &Netns {
        match i {
            1 => &self.m1,
            2 => &self.m2,
            _ => panic!("no entry point {i}"),
        }
    }

    /// A sub-directory of the test directory for one daemon.
    #[track_caller]
    pub fn daemon_dir(&self, name: &str) -> PathBuf {
        self.dir.subdir(name)
    }

    /// The internal router routes pool `i` via entry point `i`.
    #[track_caller]
    pub fn route_pools(&self) {
        for i in [1u8, 2] {
            self.router.route(&format!("{} via {}", pool(i), ep_lan(i)));
        }
    }

    /// Test-only shortcut for the tools' self-test (no IPsec): plain routing between the
    /// domains through entry point `i` (the satellite, the entry point and the router route
    /// the other side's domain that way). Calling it again with the other entry point moves
    /// the path.
    #[track_caller]
    pub fn plain_routing(&self, i: u8) {
        self.sat
            .ip(&format!("route replace {HQ_DOMAIN} via {}", ep_wan(i)));
        for j in [1u8, 2] {
            let _ = self.ep(j).try_ip(&format!("route del {SITE_DOMAIN}"));
        }
        self.ep(i)
            .ip(&format!("route replace {SITE_DOMAIN} via {SAT_WAN}"));
        self.router
            .ip(&format!("route replace {SITE_DOMAIN} via {}", ep_lan(i)));
    }

    /// The satellite (`sat`, peers `m1` and `m2` in group `hq`). Both peers start as the
    /// group's `preconnect` says (`always` with it, `on-traffic` without: another start action
    /// in a preconnect group is a configuration error); tests change what they exercise on the
    /// returned value.
    pub fn satellite_config(&self, mep: &SatelliteMep) -> GatewayToml {
        let sat = SAT_WAN.to_string();
        let peer = |i: u8| {
            let mut p = PeerToml::new(
                &format!("m{i}"),
                &sat,
                &ep_wan(i).to_string(),
                HQ_DOMAIN,
                PSK,
            );
            p.start_action = if mep.preconnect {
                "always"
            } else {
                "on-traffic"
            }
            .into();
            p
        };
        let mut cfg = GatewayToml::new("sat", &self.daemon_dir("sat"), SITE_DOMAIN, peer(1));
        cfg.peers.push(peer(2));
        cfg.extra = mep.to_toml();
        cfg
    }

    /// Entry point `i` (`m<i>`, one peer `sat`, responder only) with its return path.
    pub fn entry_config(&self, i: u8, ret: ReturnPath) -> GatewayToml {
        let name = format!("m{i}");
        let mut peer = PeerToml::new(
            "sat",
            &ep_wan(i).to_string(),
            &SAT_WAN.to_string(),
            SITE_DOMAIN,
            PSK,
        );
        peer.start_action = "none".into();
        let mut cfg = GatewayToml::new(&name, &self.daemon_dir(&name), HQ_DOMAIN, peer);
        let mut extra = String::from("[mep]\nrespond = true\n");
        match ret {
            ReturnPath::PoolNat => {
                let _ = write!(
                    extra,
                    "\n[[rule]]\nname = \"allow-all\"\naction = \"accept\"\n\n\
                     [[nat]]\nname = \"pool-m{i}\"\ntype = \"pool\"\npool = \"{}\"\n",
                    pool(i)
                );
            }
            ReturnPath::Rim => {
                let _ = write!(
                    extra,
                    "\n[rim]\ntable = {RIM_TABLE}\nprotocol = {RIM_PROTO}\nmetric = 100\n"
                );
            }
        }
        cfg.extra = extra;
        cfg
    }
}

/// `rampart mep status --json --socket <gateway's socket>`, parsed.
pub fn mep_status(gw: &Gateway) -> Result<Value, String> {
    let bin = binary().to_string_lossy().into_owned();
    let socket = gw.socket_path().to_string_lossy().into_owned();
    let out =
        run(&bin, &["mep", "status", "--json", "--socket", &socket]).map_err(|e| e.to_string())?;
    serde_json::from_str(&out).map_err(|e| format!("mep status is not JSON ({e}): {out}"))
}

/// The group called `group` of a `mep status` document.
pub fn group<'a>(status: &'a Value, group: &str) -> Option<&'a Value> {
    status["groups"]
        .as_array()?
        .iter()
        .find(|g| g["name"] == group)
}

/// The entry point `name` of group `group` of a `mep status` document.
pub fn entry_point<'a>(status: &'a Value, group_name: &str, name: &str) -> Option<&'a Value> {
    group(status, group_name)?["entry_points"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

/// The probe state (`unknown`, `up`, `down`) of entry point `name` in group [`GROUP`].
pub fn ep_state(status: &Value, name: &str) -> Option<String> {
    entry_point(status, GROUP, name)?["state"]
        .as_str()
        .map(str::to_string)
}

/// The first-to-respond choice (`current`) of group [`GROUP`].
pub fn current(status: &Value) -> Option<String> {
    group(status, GROUP)?["current"]
        .as_str()
        .map(str::to_string)
}

/// Routes of `prefix` in `table` of `ns` (`ip -o route show table T PREFIX`).
pub fn routes(ns: &Netns, table: &str, prefix: &str) -> String {
    ns.try_ip(&format!("-o route show table {table} {prefix}"))
        .unwrap_or_default()
}
