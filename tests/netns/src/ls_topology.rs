//! The Load Sharing topology (issue 14, routed mode): three (up to five) cluster members between
//! an inside router and an upstream router, both running BIRD 2 with OSPF and equal-cost
//! multipath, and a remote site behind the upstream router.
//!
//! ```text
//!                                     sw: br-in                  sw: br-out
//!  ih eth0 10.1.0.10 ── h0 10.1.0.1 rin in0 10.255.1.1 ──┬── in0 10.255.1.11 m1 out0 198.51.100.11 ──┬── out0 198.51.100.1 rout wan0 203.0.113.1 ── wan0 203.0.113.2 peer lan0 10.2.0.1 ── eth0 10.2.0.10 rh
//!  (+ .11 .12 .13)                                       ├── in0 10.255.1.12 m2 out0 198.51.100.12 ──┤
//!                                                        └── in0 10.255.1.13 m3 out0 198.51.100.13 ──┘
//!  sync: m<i> sync0 172.31.0.<i> on sw: br-sync (and, with two sync networks, sync1 172.31.1.<i> on br-sync2)
//!  WAN VIP 192.0.2.1/32: on every member (Rampart puts it on its TUN device or lo), announced, never ARPed
//! ```
//!
//! Each member runs BIRD with two OSPF instances, one per side ([`member_bird`]): it learns the
//! member's announce table (kernel table [`ANNOUNCE_TABLE`], the routes `dev <tun>` Rampart
//! injects while the member is in sync) and exports to the upstream router the VIP and the local
//! domain, to the inside router the remote domain. The routers install what they learn with
//! ECMP: one multipath route with a next hop per member that announces. Both routers hash flows
//! by their 5-tuple (`fib_multipath_hash_policy = 1`) with seeds of their own
//! (`fib_multipath_hash_seed`), so the two directions of one flow are spread independently and
//! often cross different members: the asymmetric return paths Flush-and-Ack exists for.
//!
//! Nothing routes between the sites in clear: the upstream router knows no route to the remote
//! domain and the remote site none to the local domain, except in
//! [`LsTopology::plain_forwarding`] (the tools' self-test, no Rampart), where the members forward
//! in clear. Reverse-path filtering is off everywhere (asymmetric paths are the point).

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bird::{Bird, BirdConfig};
use crate::env::{serial, SerialGuard};
use crate::netns::{veth, CommandError, Netns};
use crate::rampart::{GatewayToml, PeerToml};
use crate::topology::PSK;
use crate::traffic::spawn_in;
use crate::wait::try_wait_until;
use crate::workdir::TestDir;

/// The inside hosts' network: the cluster's protected (local) domain.
pub const LOCAL_DOMAIN: &str = "10.1.0.0/24";
/// The remote site's domain (behind the peer).
pub const REMOTE_DOMAIN: &str = "10.2.0.0/24";
/// The cluster's address towards the remote site (IKE and ESP), on every member.
pub const WAN_VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The inside host's first address; [`HOST_SOURCES`] are all of them.
pub const HOST: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
/// Every address of the inside host (several source addresses for many connections).
pub const HOST_SOURCES: [Ipv4Addr; 4] = [
    Ipv4Addr::new(10, 1, 0, 10),
    Ipv4Addr::new(10, 1, 0, 11),
    Ipv4Addr::new(10, 1, 0, 12),
    Ipv4Addr::new(10, 1, 0, 13),
];
/// The inside router: towards the hosts, and on the members' inside LAN.
pub const RIN_HOSTS: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
pub const RIN_LAN: Ipv4Addr = Ipv4Addr::new(10, 255, 1, 1);
pub const INSIDE_LAN: &str = "10.255.1.0/24";
/// The upstream router: on the members' outside LAN, and towards the remote site.
pub const ROUT_LAN: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const ROUT_WAN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
pub const OUTSIDE_LAN: &str = "198.51.100.0/24";
pub const WAN_NET: &str = "203.0.113.0/24";
/// The remote site's gateway (a Rampart gateway or strongSwan) and the host behind it.
pub const PEER_WAN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
pub const PEER_LAN: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
pub const REMOTE_HOST: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 10);
/// Kernel table Rampart injects its announced routes into (`[cluster] announce_table`, the
/// default) and the protocol number the self-test's stand-in routes use.
pub const ANNOUNCE_TABLE: u32 = 202;
pub const STAND_IN_PROTO: u32 = 202;
/// Interface names inside each member.
pub const IN_IF: &str = "in0";
pub const OUT_IF: &str = "out0";
pub const SYNC_IF: &str = "sync0";
pub const SYNC2_IF: &str = "sync1";
/// The routers' interfaces: the inside router's towards the hosts, the upstream's towards the
/// remote site.
pub const RIN_HOSTS_IF: &str = "h0";
pub const ROUT_WAN_IF: &str = "wan0";
/// The hosts' interface.
pub const HOST_IF: &str = "eth0";
/// Multipath hash seeds of the two routers (different: the directions hash independently).
pub const RIN_SEED: u32 = 0x1d5e_ed01;
pub const ROUT_SEED: u32 = 0x0a7e_ed02;

/// A member's address on the inside LAN (`id` 1..=5).
pub fn member_in(id: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 255, 1, 10 + id)
}

/// A member's address on the outside LAN (its BIRD router id too).
pub fn member_out(id: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, 10 + id)
}

/// A member's address on sync network `link` (0: the first, 1: the redundant one).
pub fn member_sync(id: u8, link: u8) -> Ipv4Addr {
    Ipv4Addr::new(172, 31, link, id)
}

/// The BIRD configuration of member `id`: learns [`ANNOUNCE_TABLE`]; exports the VIP and the
/// local domain upstream (OSPF instance `outside` on [`OUT_IF`]) and the remote domain to the
/// inside router (`inside` on [`IN_IF`]).
///
/// Rampart announces the local domain and the VIPs in the announce table, not the remote
/// domains behind its tunnels; with `tun` the member's BIRD also holds a static route to the
/// remote domain via that device, which exists while the gateway process runs (a kill -9
/// removes it, and BIRD withdraws the route at its next device scan).
pub fn member_bird(id: u8, tun: Option<&str>) -> BirdConfig {
    let vip = format!("{WAN_VIP}/32");
    let mut config = BirdConfig::member(
        member_out(id),
        ANNOUNCE_TABLE,
        &[
            ("outside", OUT_IF, &[vip.as_str(), LOCAL_DOMAIN]),
            ("inside", IN_IF, &[REMOTE_DOMAIN]),
        ],
    );
    if let Some(tun) = tun {
        config.device_routes = vec![(REMOTE_DOMAIN.into(), tun.into())];
    }
    config
}

/// One member's namespace.
#[derive(Debug)]
pub struct LsMember {
    pub id: u8,
    pub ns: Netns,
}

/// The namespaces, the routers' BIRD, the test directory and the serial lock (released last).
#[derive(Debug)]
pub struct LsTopology {
    /// The routers' BIRD (dropped first: fields drop in declaration order).
    routers_bird: Vec<Bird>,
    /// Member `i` is `members[i - 1]`.
    pub members: Vec<LsMember>,
    /// The inside router and the upstream router.
    pub rin: Netns,
    pub rout: Netns,
    /// The inside host, the remote site's gateway and the host behind it.
    pub host: Netns,
    pub peer: Netns,
    pub remote_host: Netns,
    /// The bridges of the inside LAN, the outside LAN and the sync networks.
    pub switch: Netns,
    /// Number of sync networks (1 or 2).
    pub sync_links: u8,
    pub dir: TestDir,
    _serial: SerialGuard,
}

/// Reverse-path filtering off and forwarding on (set before the interfaces exist, so they
/// inherit the defaults).
#[track_caller]
fn router_sysctls(ns: &Netns) {
    for key in [
        "net.ipv4.conf.all.rp_filter",
        "net.ipv4.conf.default.rp_filter",
    ] {
        ns.sysctl(key, "0");
    }
    ns.enable_forwarding();
}

impl LsTopology {
    /// Builds the topology with `count` members (2..=5) and `sync_links` sync networks (1 or 2)
    /// and starts BIRD on both routers (the members' BIRD is started by the test:
    /// [`LsTopology::start_member_bird`]). Takes the serial lock first.
    #[track_caller]
    pub fn new(test: &str, count: u8, sync_links: u8) -> LsTopology {
        assert!((2..=5).contains(&count), "2..=5 members, not {count}");
        assert!((1..=2).contains(&sync_links), "1 or 2 sync networks");
        let lock = serial();
        let dir = TestDir::new(test);
        let switch = Netns::new("sw");
        let bridges: &[&str] = if sync_links == 2 {
            &["br-in", "br-out", "br-sync", "br-sync2"]
        } else {
            &["br-in", "br-out", "br-sync"]
        };
        for br in bridges {
            switch.ip(&format!("link add {br} type bridge"));
            switch.ip(&format!("link set {br} up"));
        }
        let c24 = |a: Ipv4Addr| format!("{a}/24");

        let members: Vec<LsMember> = (1..=count)
            .map(|id| {
                let ns = Netns::new(&format!("m{id}"));
                router_sysctls(&ns);
                let mut links = vec![
                    (IN_IF, member_in(id), "br-in", "in"),
                    (OUT_IF, member_out(id), "br-out", "out"),
                    (SYNC_IF, member_sync(id, 0), "br-sync", "s0"),
                ];
                if sync_links == 2 {
                    links.push((SYNC2_IF, member_sync(id, 1), "br-sync2", "s1"));
                }
                for (ifname, addr, br, tag) in links {
                    let port = format!("m{id}-{tag}");
                    veth(&ns, ifname, &[&c24(addr)], &switch, &port, &[]);
                    switch.ip(&format!("link set {port} master {br}"));
                }
                // The remote site's public side and the inside hosts; never the other site's
                // domain (only the tunnel, or plain_forwarding, routes that).
                ns.route(&format!("{WAN_NET} via {ROUT_LAN}"));
                ns.route(&format!("{LOCAL_DOMAIN} via {RIN_LAN}"));
                LsMember { id, ns }
            })
            .collect();

        let rin = Netns::new("rin");
        router_sysctls(&rin);
        veth(&rin, IN_IF, &[&c24(RIN_LAN)], &switch, "rin-in", &[]);
        switch.ip("link set rin-in master br-in");
        let host = Netns::new("ih");
        veth(&rin, RIN_HOSTS_IF, &[&c24(RIN_HOSTS)], &host, HOST_IF, &[]);
        for a in HOST_SOURCES {
            host.add_addr(HOST_IF, &c24(a));
        }
        host.route(&format!("default via {RIN_HOSTS}"));

        let rout = Netns::new("rout");
        router_sysctls(&rout);
        veth(&rout, OUT_IF, &[&c24(ROUT_LAN)], &switch, "rout-out", &[]);
        switch.ip("link set rout-out master br-out");
        let peer = Netns::new("peer");
        router_sysctls(&peer);
        veth(
            &rout,
            ROUT_WAN_IF,
            &[&c24(ROUT_WAN)],
            &peer,
            "wan0",
            &[&c24(PEER_WAN)],
        );
        peer.route(&format!("default via {ROUT_WAN}"));
        let remote_host = Netns::new("rh");
        veth(
            &peer,
            "lan0",
            &[&c24(PEER_LAN)],
            &remote_host,
            HOST_IF,
            &[&c24(REMOTE_HOST)],
        );
        remote_host.route(&format!("default via {PEER_LAN}"));
        for (ns, seed) in [(&rin, RIN_SEED), (&rout, ROUT_SEED)] {
            ns.sysctl("net.ipv4.fib_multipath_hash_policy", "1");
            ns.sysctl("net.ipv4.fib_multipath_hash_seed", &seed.to_string());
        }
        // Many concurrent connections: room in the accept queues of both hosts.
        for ns in [&host, &remote_host] {
            for (key, value) in [
                ("net.core.somaxconn", "16384"),
                ("net.ipv4.tcp_max_syn_backlog", "16384"),
            ] {
                let _ = ns.try_sysctl(key, value);
            }
        }

        let mut topo = LsTopology {
            routers_bird: Vec::new(),
            members,
            rin,
            rout,
            host,
            peer,
            remote_host,
            switch,
            sync_links,
            dir,
            _serial: lock,
        };
        let rin_bird = Bird::start(
            &topo.rin,
            &topo.daemon_dir("bird-rin"),
            &BirdConfig::ecmp_router(RIN_LAN, &[IN_IF]),
        );
        let rout_bird = Bird::start(
            &topo.rout,
            &topo.daemon_dir("bird-rout"),
            &BirdConfig::ecmp_router(ROUT_LAN, &[OUT_IF]),
        );
        topo.routers_bird = vec![rin_bird, rout_bird];
        topo
    }

    /// Member `id`'s namespace (ids start at 1).
    #[track_caller]
    pub fn member(&self, id: u8) -> &Netns {
        &self
            .members
            .iter()
            .find(|m| m.id == id)
            .unwrap_or_else(|| panic!("no member {id}"))
            .ns
    }

    /// Member ids, 1..=count.
    pub fn ids(&self) -> Vec<u8> {
        self.members.iter().map(|m| m.id).collect()
    }

    /// A sub-directory of the test directory for one daemon.
    #[track_caller]
    pub fn daemon_dir(&self, name: &str) -> PathBuf {
        self.dir.subdir(name)
    }

    /// The inside router's BIRD.
    pub fn rin_bird(&self) -> &Bird {
        &self.routers_bird[0]
    }

    /// The upstream router's BIRD.
    pub fn rout_bird(&self) -> &Bird {
        &self.routers_bird[1]
    }

    /// Starts member `id`'s BIRD ([`member_bird`] with `tun`).
    #[track_caller]
    pub fn start_member_bird(&self, id: u8, tun: Option<&str>) -> Bird {
        Bird::start(
            self.member(id),
            &self.daemon_dir(&format!("bird-m{id}")),
            &member_bird(id, tun),
        )
    }

    /// Waits until both routers have a Full OSPF adjacency with each of `ids`.
    #[track_caller]
    pub fn wait_adjacencies(&self, ids: &[u8], timeout: Duration) -> Duration {
        let want = ids.len();
        let took = try_wait_until(timeout, "OSPF adjacencies of both routers", || {
            self.rin_bird().full_neighbors() >= want && self.rout_bird().full_neighbors() >= want
        });
        took.unwrap_or_else(|e| {
            panic!(
                "{e}\ninside router: {:?}\nupstream router: {:?}",
                self.rin_bird().cmd(&["show", "ospf", "neighbors"]),
                self.rout_bird().cmd(&["show", "ospf", "neighbors"])
            )
        })
    }

    /// The next hops (gateway addresses) of `ns`'s main-table route to exactly `prefix`: one
    /// per member for a multipath route; empty without a route.
    pub fn next_hops(ns: &Netns, prefix: &str) -> Vec<Ipv4Addr> {
        let Ok(out) = ns.try_ip(&format!("-j route show {prefix}")) else {
            return Vec::new();
        };
        let Ok(routes) = serde_json::from_str::<Value>(&out) else {
            return Vec::new();
        };
        let mut hops = Vec::new();
        for r in routes.as_array().into_iter().flatten() {
            let gw = |v: &Value| v["gateway"].as_str().and_then(|g| g.parse().ok());
            if let Some(g) = gw(r) {
                hops.push(g);
            }
            for nh in r["nexthops"].as_array().into_iter().flatten() {
                if let Some(g) = gw(nh) {
                    hops.push(g);
                }
            }
        }
        hops.sort();
        hops.dedup();
        hops
    }

    /// The members the inside router sends `prefix` (the remote domain) to.
    pub fn inside_members(&self, prefix: &str) -> Vec<u8> {
        let hops = Self::next_hops(&self.rin, prefix);
        self.ids()
            .into_iter()
            .filter(|&id| hops.contains(&member_in(id)))
            .collect()
    }

    /// The members the upstream router sends `prefix` (the VIP, the local domain) to.
    pub fn outside_members(&self, prefix: &str) -> Vec<u8> {
        let hops = Self::next_hops(&self.rout, prefix);
        self.ids()
            .into_iter()
            .filter(|&id| hops.contains(&member_out(id)))
            .collect()
    }

    /// Waits until the inside router routes the remote domain and the upstream router the VIP
    /// over exactly `ids` (ECMP); returns how long it took. Panics with both routing tables.
    #[track_caller]
    pub fn wait_routes_via(&self, ids: &[u8], timeout: Duration) -> Duration {
        let vip = format!("{WAN_VIP}");
        let took = try_wait_until(timeout, &format!("ECMP routes via members {ids:?}"), || {
            self.inside_members(REMOTE_DOMAIN) == ids && self.outside_members(&vip) == ids
        });
        took.unwrap_or_else(|e| {
            panic!(
                "{e}\ninside router: {}\nupstream router: {}",
                self.rin.ip("route show"),
                self.rout.ip("route show")
            )
        })
    }

    /// Test-only (the tools' self-test, no Rampart): every member forwards in clear and
    /// announces like a Rampart member in sync would: a stand-in device `rp0` (a veth pair; a
    /// TUN device without its process has no carrier) with the VIP on `lo`, and routes `dev rp0`
    /// for the VIP and the local domain in [`ANNOUNCE_TABLE`], and with `remote_in_table` the
    /// remote domain too (without: the members' BIRD needs the device route of
    /// [`member_bird`]`(id, Some("rp0"))`). The members route the remote domain to the upstream
    /// router, the upstream router to the peer, and the peer the local domain back to the
    /// upstream router.
    #[track_caller]
    pub fn plain_forwarding(&self, remote_in_table: bool) {
        for m in &self.members {
            let ns = &m.ns;
            ns.ip("link add rp0 type veth peer name rp0p");
            ns.ip("link set rp0 up");
            ns.ip("link set rp0p up");
            ns.ip(&format!("addr add {WAN_VIP}/32 dev lo"));
            let mut prefixes = vec![format!("{WAN_VIP}/32"), LOCAL_DOMAIN.to_string()];
            if remote_in_table {
                prefixes.push(REMOTE_DOMAIN.into());
            }
            for prefix in prefixes {
                ns.ip(&format!(
                    "route add {prefix} dev rp0 table {ANNOUNCE_TABLE} proto {STAND_IN_PROTO}"
                ));
            }
            ns.route(&format!("{REMOTE_DOMAIN} via {ROUT_LAN}"));
        }
        self.rout.route(&format!("{REMOTE_DOMAIN} via {PEER_WAN}"));
        self.peer.route(&format!("{LOCAL_DOMAIN} via {ROUT_WAN}"));
    }

    /// Test-only: removes member `id`'s stand-in device, and with it its announced routes.
    #[track_caller]
    pub fn remove_stand_in(&self, id: u8) {
        self.member(id).ip("link del rp0");
    }

    /// What a dead box looks like to the network: every link of member `id` down (its
    /// processes are the caller's to kill first). The routers see no carrier change (the
    /// bridges stay up): they notice by the OSPF dead interval.
    #[track_caller]
    pub fn links_down(&self, id: u8) {
        let ns = self.member(id);
        let mut ifs = vec![IN_IF, OUT_IF, SYNC_IF];
        if self.sync_links == 2 {
            ifs.push(SYNC2_IF);
        }
        for ifname in ifs {
            ns.ip(&format!("link set {ifname} down"));
        }
    }

    /// Applies `tc netem <spec>` (e.g. `"delay 50ms loss 5%"`) to the egress of every member's
    /// interface on sync network `link`, so both directions see it (`delay 50ms` on each end:
    /// 100 ms round trip).
    pub fn sync_netem(&self, link: u8, spec: &str) -> Result<(), CommandError> {
        let ifname = if link == 0 { SYNC_IF } else { SYNC2_IF };
        for m in &self.members {
            let mut args = vec!["tc", "qdisc", "replace", "dev", ifname, "root", "netem"];
            args.extend(spec.split_whitespace());
            m.ns.try_exec(&args)?;
        }
        Ok(())
    }

    /// Removes the netem qdiscs of [`LsTopology::sync_netem`].
    pub fn clear_sync_netem(&self, link: u8) {
        let ifname = if link == 0 { SYNC_IF } else { SYNC2_IF };
        for m in &self.members {
            let _ =
                m.ns.try_exec(&["tc", "qdisc", "del", "dev", ifname, "root"]);
        }
    }

    /// Whether the kernel offers netem (checked on member 1's loopback, left as it was).
    pub fn netem_available(&self) -> bool {
        let ns = self.member(1);
        let ok = ns
            .try_exec(&[
                "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "0ms",
            ])
            .is_ok();
        if ok {
            let _ = ns.try_exec(&["tc", "qdisc", "del", "dev", "lo", "root"]);
        }
        ok
    }
}

/// The `[cluster]` section of a Load Sharing member (docs/configuration.md, "[cluster]";
/// examples/cluster-ls/).
#[derive(Debug, Clone)]
pub struct LsClusterToml {
    pub name: String,
    pub member_id: u8,
    /// Every member: id, sync address on network 0 and (with two sync networks) on network 1.
    pub members: Vec<(u8, Vec<Ipv4Addr>)>,
    /// `routed` or `unicast`.
    pub distribution: String,
    pub flush_ack: bool,
    pub hold_timeout: String,
    pub update_timeout: String,
    pub announce_table: u32,
    pub heartbeat_interval: String,
    pub dead_after: u32,
    pub monitor: Vec<String>,
    /// Virtual addresses (`address` only: on the tunnel device, not announced by ARP).
    pub vips: Vec<String>,
    pub secret: String,
    /// Appended verbatim inside `[cluster]`.
    pub extra: String,
}

impl LsClusterToml {
    /// Member `id` of a routed Load Sharing cluster of `count` members in [`LsTopology`] with
    /// `sync_links` sync networks: Flush-and-Ack on, the defaults' timers, the WAN VIP.
    pub fn new(count: u8, id: u8, sync_links: u8) -> LsClusterToml {
        LsClusterToml {
            name: "netns-ls".into(),
            member_id: id,
            members: (1..=count)
                .map(|m| (m, (0..sync_links).map(|l| member_sync(m, l)).collect()))
                .collect(),
            distribution: "routed".into(),
            flush_ack: true,
            hold_timeout: "250ms".into(),
            update_timeout: "250ms".into(),
            announce_table: ANNOUNCE_TABLE,
            heartbeat_interval: "100ms".into(),
            dead_after: 3,
            monitor: vec![IN_IF.into(), OUT_IF.into()],
            vips: vec![WAN_VIP.to_string()],
            secret: "rampart netns load sharing secret, not secret".into(),
            extra: String::new(),
        }
    }

    /// Timers for a sync link with 100 ms round trip and 5 % loss (docs/design/load-sharing.md,
    /// "Sync over a WAN"): hold up to 3 x RTT + 20 ms and more, heartbeats every 200 ms, dead
    /// after 1 s.
    pub fn wan_timers(&mut self) {
        self.hold_timeout = "400ms".into();
        self.update_timeout = "400ms".into();
        self.heartbeat_interval = "200ms".into();
        self.dead_after = 5;
    }

    pub fn to_toml(&self) -> String {
        let q = |v: &str| Value::String(v.to_string()).to_string();
        let mut s = String::new();
        let _ = writeln!(s, "[cluster]");
        let _ = writeln!(s, "name = {}", q(&self.name));
        let _ = writeln!(s, "member_id = {}", self.member_id);
        let _ = writeln!(s, "mode = \"load-sharing\"");
        let _ = writeln!(s, "distribution = {}", q(&self.distribution));
        let _ = writeln!(s, "flush_ack = {}", self.flush_ack);
        let _ = writeln!(s, "hold_timeout = {}", q(&self.hold_timeout));
        let _ = writeln!(s, "update_timeout = {}", q(&self.update_timeout));
        let _ = writeln!(s, "announce_table = {}", self.announce_table);
        let _ = writeln!(s, "heartbeat_interval = {}", q(&self.heartbeat_interval));
        let _ = writeln!(s, "dead_after = {}", self.dead_after);
        let monitor: Vec<String> = self.monitor.iter().map(|m| q(m)).collect();
        let _ = writeln!(s, "monitor = [{}]", monitor.join(", "));
        let _ = writeln!(s, "secret = {}", q(&self.secret));
        for line in self.extra.lines() {
            let _ = writeln!(s, "{line}");
        }
        for (id, addrs) in &self.members {
            let _ = writeln!(s, "\n[[cluster.member]]");
            let _ = writeln!(s, "id = {id}");
            if let Some(first) = addrs.first() {
                let _ = writeln!(s, "address = {}", q(&first.to_string()));
            }
            if addrs.len() > 1 {
                let extra: Vec<String> = addrs[1..].iter().map(|a| q(&a.to_string())).collect();
                let _ = writeln!(s, "extra_addresses = [{}]", extra.join(", "));
            }
        }
        for vip in &self.vips {
            let _ = writeln!(s, "\n[[cluster.vip]]");
            let _ = writeln!(s, "address = {}", q(vip));
        }
        s
    }
}

impl LsTopology {
    /// Member `id`'s gateway configuration: protects the local domain, one peer `remote` (the
    /// remote site, which initiates) with the WAN VIP as local address and identity, and the
    /// `[cluster]` section of [`LsClusterToml::new`] (the caller appends it to `extra`).
    pub fn member_config(&self, id: u8) -> (GatewayToml, LsClusterToml) {
        let mut peer = PeerToml::new(
            "remote",
            &WAN_VIP.to_string(),
            &PEER_WAN.to_string(),
            REMOTE_DOMAIN,
            PSK,
        );
        peer.start_action = "none".into();
        let gw = GatewayToml::new(
            &format!("m{id}"),
            &self.daemon_dir(&format!("m{id}")),
            LOCAL_DOMAIN,
            peer,
        );
        (
            gw,
            LsClusterToml::new(self.members.len() as u8, id, self.sync_links),
        )
    }

    /// The remote site's Rampart gateway: peer `cluster` at the WAN VIP, initiates.
    pub fn remote_rampart_config(&self) -> GatewayToml {
        let peer = PeerToml::new(
            "cluster",
            &PEER_WAN.to_string(),
            &WAN_VIP.to_string(),
            LOCAL_DOMAIN,
            PSK,
        );
        GatewayToml::new("remote", &self.daemon_dir("remote"), REMOTE_DOMAIN, peer)
    }
}

/// Per-member forwarding counters (nftables, in each member's namespace): how many packets of
/// each traced flow a member forwarded in each direction, and how many TCP SYNs (inside to
/// outside) and SYN-ACKs (back) it forwarded. Flows are UDP flows from a host source port
/// (`base_port + i`), so the counters tell, per flow, which member carried each direction.
#[derive(Debug, Clone)]
pub struct FlowTrace {
    pub base_port: u16,
    pub flows: u16,
}

/// Which members carried one traced flow in each direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowPath {
    pub port: u16,
    /// Members that forwarded the host's datagrams towards the remote site.
    pub forward: Vec<u8>,
    /// Members that forwarded the answers back.
    pub reverse: Vec<u8>,
}

impl FlowPath {
    /// One member each way, and not the same one.
    pub fn asymmetric(&self) -> bool {
        self.forward.len() == 1 && self.reverse.len() == 1 && self.forward != self.reverse
    }
}

const TRACE_TABLE: &str = "lstrace";

/// One member's trace counters: packets by rule comment.
pub type Counters = std::collections::BTreeMap<String, u64>;

impl FlowTrace {
    /// The nftables ruleset (table `inet lstrace`, a forward hook that only counts).
    pub fn ruleset(&self) -> String {
        let mut s = format!(
            "table inet {TRACE_TABLE} {{\n  chain count {{\n    type filter hook forward priority 0; policy accept;\n"
        );
        s.push_str(&format!(
            "    ip saddr {LOCAL_DOMAIN} tcp flags & (syn | ack) == syn counter comment \"syn\"\n"
        ));
        s.push_str(&format!(
            "    ip daddr {LOCAL_DOMAIN} tcp flags & (syn | ack) == syn | ack counter comment \"synack\"\n"
        ));
        for i in 0..self.flows {
            let port = self.base_port + i;
            s.push_str(&format!(
                "    ip saddr {LOCAL_DOMAIN} udp sport {port} counter comment \"f{port}\"\n"
            ));
            s.push_str(&format!(
                "    ip daddr {LOCAL_DOMAIN} udp dport {port} counter comment \"r{port}\"\n"
            ));
        }
        s.push_str("  }\n}\n");
        s
    }

    /// Loads the ruleset into every member.
    pub fn install(&self, topo: &LsTopology) -> Result<(), String> {
        let path = topo.dir.file("lstrace.nft");
        std::fs::write(&path, self.ruleset()).map_err(|e| format!("write nft rules: {e}"))?;
        let p = path.to_string_lossy().into_owned();
        for m in &topo.members {
            m.ns.try_exec(&["nft", "-f", &p])
                .map_err(|e| format!("m{}: {e}", m.id))?;
        }
        Ok(())
    }

    /// Packet counters of member `ns`, by comment.
    pub fn counters(ns: &Netns) -> Result<Counters, String> {
        let out = ns
            .try_exec(&["nft", "-j", "list", "table", "inet", TRACE_TABLE])
            .map_err(|e| e.to_string())?;
        let doc: Value = serde_json::from_str(&out).map_err(|e| format!("nft json: {e}"))?;
        let mut map = Counters::new();
        for item in doc["nftables"].as_array().into_iter().flatten() {
            let rule = &item["rule"];
            let Some(comment) = rule["comment"].as_str() else {
                continue;
            };
            let packets = rule["expr"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|e| e["counter"]["packets"].as_u64())
                .unwrap_or(0);
            map.insert(comment.to_string(), packets);
        }
        Ok(map)
    }

    /// Every member's counters, by member id.
    pub fn read(&self, topo: &LsTopology) -> Result<Vec<(u8, Counters)>, String> {
        topo.members
            .iter()
            .map(|m| Ok((m.id, Self::counters(&m.ns)?)))
            .collect()
    }

    /// The path of every traced flow.
    pub fn paths(&self, topo: &LsTopology) -> Result<Vec<FlowPath>, String> {
        let all = self.read(topo)?;
        Ok((0..self.flows)
            .map(|i| {
                let port = self.base_port + i;
                let via = |dir: &str| -> Vec<u8> {
                    all.iter()
                        .filter(|(_, c)| c.get(&format!("{dir}{port}")).copied().unwrap_or(0) > 0)
                        .map(|(id, _)| *id)
                        .collect()
                };
                FlowPath {
                    port,
                    forward: via("f"),
                    reverse: via("r"),
                }
            })
            .collect())
    }
}

/// A delay line in place of a sync network's bridge, for kernels without `sch_netem` (tc netem
/// is what the issue names; this does the same to the sync link where netem is missing): a hub
/// in the switch namespace reads every frame a member sends (an `AF_PACKET` socket on the
/// switch's end of its veth), drops it with probability `loss`, and `delay` later sends it out
/// of every other member's port. Frames are queued by due time, so order is kept.
///
/// veth leaves UDP and TCP checksums to "hardware" (the frame carries only the pseudo-header
/// sum), so the hub recomputes them for IPv4; the members' sync interfaces send no GSO
/// super-frames (`gso_max_segs 1`), so every frame fits the port's MTU.
#[derive(Debug)]
pub struct DelayHub {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<HubStats, String>>>,
}

/// What a [`DelayHub`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubStats {
    pub received: u64,
    pub dropped: u64,
    /// Frame copies sent (one per other port).
    pub sent: u64,
    pub send_errors: u64,
}

impl DelayHub {
    /// Stops the hub; what it did.
    pub fn finish(mut self) -> Result<HubStats, String> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| "delay hub panicked".to_string())?,
            None => Ok(HubStats::default()),
        }
    }
}

impl Drop for DelayHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl LsTopology {
    /// Replaces sync network `link`'s bridge by a [`DelayHub`] with `delay` one way (so the
    /// round trip is twice that) and `loss` (0.0..1.0) per frame.
    pub fn sync_delay_hub(&self, link: u8, delay: Duration, loss: f64) -> Result<DelayHub, String> {
        let (ifname, tag) = if link == 0 {
            (SYNC_IF, "s0")
        } else {
            (SYNC2_IF, "s1")
        };
        let mut ports = Vec::new();
        for m in &self.members {
            m.ns.try_ip(&format!("link set dev {ifname} gso_max_segs 1"))
                .map_err(|e| e.to_string())?;
            let port = format!("m{}-{tag}", m.id);
            self.switch
                .try_ip(&format!("link set dev {port} nomaster"))
                .map_err(|e| e.to_string())?;
            ports.push(port);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = spawn_in(&self.switch, move || {
            let hub = Hub::open(&ports, delay, loss);
            let _ = ready_tx.send(hub.as_ref().map(|_| ()).map_err(Clone::clone));
            hub?.run(&flag)
        });
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => Ok(DelayHub {
                stop,
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("the delay hub did not start".into()),
        }
    }
}

/// A frame waiting in the hub: due time, arrival sequence (ties), the port it came from.
type Queued = (Instant, u64, usize, Vec<u8>);

/// The hub's sockets and queue (runs on a thread inside the switch namespace).
struct Hub {
    fds: Vec<std::os::fd::OwnedFd>,
    delay: Duration,
    /// Drop threshold on a 32-bit random number.
    drop_below: u32,
    rng: u64,
    stats: HubStats,
}

impl Hub {
    fn open(ports: &[String], delay: Duration, loss: f64) -> Result<Hub, String> {
        use std::os::fd::FromRawFd;
        let mut fds = Vec::new();
        for port in ports {
            let name = std::ffi::CString::new(port.as_str()).map_err(|e| e.to_string())?;
            // SAFETY: a NUL-terminated name; if_nametoindex only reads it.
            let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
            if index == 0 {
                return Err(format!("no interface {port}"));
            }
            let proto = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: plain socket(2) call; the result is checked.
            let fd = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    i32::from(proto),
                )
            };
            if fd < 0 {
                return Err(format!(
                    "packet socket: {}",
                    std::io::Error::last_os_error()
                ));
            }
            // SAFETY: fd is a new descriptor we own.
            let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
            // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = index as i32;
            // SAFETY: the address is a sockaddr_ll of the size given.
            let rc = unsafe {
                libc::bind(
                    fd,
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(format!("bind {port}: {}", std::io::Error::last_os_error()));
            }
            fds.push(owned);
        }
        Ok(Hub {
            fds,
            delay,
            drop_below: (loss.clamp(0.0, 1.0) * f64::from(u32::MAX)) as u32,
            rng: 0x9e37_79b9_7f4a_7c15,
            stats: HubStats::default(),
        })
    }

    fn random(&mut self) -> u32 {
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 32) as u32
    }

    fn run(mut self, stop: &AtomicBool) -> Result<HubStats, String> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        use std::os::fd::AsRawFd;
        let mut queue: BinaryHeap<Reverse<Queued>> = BinaryHeap::new();
        let mut seq = 0u64;
        let mut buf = vec![0u8; 65_600];
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            while let Some(Reverse((due, _, _, _))) = queue.peek() {
                if *due > now {
                    break;
                }
                let Some(Reverse((_, _, from, mut frame))) = queue.pop() else {
                    break;
                };
                fix_checksums(&mut frame);
                for (i, fd) in self.fds.iter().enumerate() {
                    if i == from {
                        continue;
                    }
                    // SAFETY: sends `frame` on a bound packet socket we own.
                    let n = unsafe {
                        libc::send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0)
                    };
                    if n < 0 {
                        self.stats.send_errors += 1;
                    } else {
                        self.stats.sent += 1;
                    }
                }
            }
            let wait_ms = queue
                .peek()
                .map(|Reverse((due, ..))| due.saturating_duration_since(now).as_millis() as i32)
                .unwrap_or(20)
                .clamp(0, 20);
            let mut pfds: Vec<libc::pollfd> = self
                .fds
                .iter()
                .map(|fd| libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            // SAFETY: pfds is a valid array of pollfd of the length given.
            let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, wait_ms) };
            if rc < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("poll: {e}"));
            }
            for (i, p) in pfds.iter().enumerate() {
                if p.revents & libc::POLLIN == 0 {
                    continue;
                }
                loop {
                    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
                    let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                    let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                    // SAFETY: buf and from are valid for the sizes given.
                    let n = unsafe {
                        libc::recvfrom(
                            p.fd,
                            buf.as_mut_ptr().cast(),
                            buf.len(),
                            libc::MSG_DONTWAIT,
                            (&mut from as *mut libc::sockaddr_ll).cast(),
                            &mut len,
                        )
                    };
                    if n <= 0 {
                        break;
                    }
                    // Our own copies sent out of this port come back as outgoing: skip them.
                    if from.sll_pkttype == libc::PACKET_OUTGOING {
                        continue;
                    }
                    self.stats.received += 1;
                    if self.random() < self.drop_below {
                        self.stats.dropped += 1;
                        continue;
                    }
                    seq += 1;
                    queue.push(Reverse((
                        Instant::now() + self.delay,
                        seq,
                        i,
                        buf[..n as usize].to_vec(),
                    )));
                }
            }
        }
        Ok(self.stats)
    }
}

/// Recomputes the UDP or TCP checksum of an unfragmented IPv4 frame (Ethernet II).
pub fn fix_checksums(frame: &mut [u8]) {
    const ETH: usize = 14;
    if frame.len() < ETH + 20 || frame[12..14] != [0x08, 0x00] {
        return;
    }
    let ihl = usize::from(frame[ETH] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([frame[ETH + 2], frame[ETH + 3]]));
    let fragment = u16::from_be_bytes([frame[ETH + 6], frame[ETH + 7]]) & 0x3fff;
    if ihl < 20 || total < ihl || ETH + total > frame.len() || fragment != 0 {
        return;
    }
    let proto = frame[ETH + 9];
    let at = match proto {
        17 => 6,
        6 => 16,
        _ => return,
    };
    let l4 = ETH + ihl;
    let l4_len = total - ihl;
    if l4_len < at + 2 {
        return;
    }
    frame[l4 + at] = 0;
    frame[l4 + at + 1] = 0;
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            let lo = pair.get(1).map_or(0, |b| u32::from(*b));
            sum += hi | lo;
        }
    };
    add(&frame[ETH + 12..ETH + 20]);
    add(&[0, proto]);
    add(&(l4_len as u16).to_be_bytes());
    add(&frame[l4..l4 + l4_len]);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let mut csum = !(sum as u16);
    if proto == 17 && csum == 0 {
        csum = 0xffff;
    }
    frame[l4 + at..l4 + at + 2].copy_from_slice(&csum.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_test_only_and_distinct() {
        let mut all = vec![
            WAN_VIP,
            RIN_HOSTS,
            RIN_LAN,
            ROUT_LAN,
            ROUT_WAN,
            PEER_WAN,
            PEER_LAN,
            REMOTE_HOST,
        ];
        all.extend(HOST_SOURCES);
        for id in 1..=5 {
            all.extend([
                member_in(id),
                member_out(id),
                member_sync(id, 0),
                member_sync(id, 1),
            ]);
        }
        for a in &all {
            assert!(a.is_private() || a.is_documentation(), "{a}");
        }
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "duplicate address");
    }

    #[test]
    fn member_bird_splits_exports_by_side() {
        let text = member_bird(2, None).to_conf();
        assert!(text.contains("router id 198.51.100.12;"), "{text}");
        assert!(text.contains("kernel table 202;"), "{text}");
        assert!(
            text.contains("net ~ [ 192.0.2.1/32+, 10.1.0.0/24+ ]"),
            "{text}"
        );
        assert!(text.contains("net ~ [ 10.2.0.0/24+ ]"), "{text}");
        let tun = member_bird(2, Some("rampart0")).to_conf();
        assert!(tun.contains("route 10.2.0.0/24 via \"rampart0\";"), "{tun}");
    }

    #[test]
    fn cluster_section_has_the_load_sharing_keys() {
        let text = LsClusterToml::new(3, 2, 2).to_toml();
        for want in [
            "[cluster]\nname = \"netns-ls\"\nmember_id = 2\nmode = \"load-sharing\"\ndistribution = \"routed\"\nflush_ack = true",
            "announce_table = 202",
            "monitor = [\"in0\", \"out0\"]",
            "[[cluster.member]]\nid = 3\naddress = \"172.31.0.3\"\nextra_addresses = [\"172.31.1.3\"]",
            "[[cluster.vip]]\naddress = \"192.0.2.1\"",
        ] {
            assert!(text.contains(want), "{want:?} not in:\n{text}");
        }
        let one = LsClusterToml::new(2, 1, 1).to_toml();
        assert!(!one.contains("extra_addresses"), "{one}");
    }

    #[test]
    fn checksums_are_recomputed_for_udp() {
        // Ethernet + IPv4 (20) + UDP (8) + 3 bytes: 10.0.0.1:1000 -> 10.0.0.2:2000.
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[
            0x45, 0, 0, 31, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ]);
        f.extend_from_slice(&[0x03, 0xe8, 0x07, 0xd0, 0, 11, 0xab, 0xcd, b'a', b'b', b'c']);
        fix_checksums(&mut f);
        let got = u16::from_be_bytes([f[40], f[41]]);
        // One's complement sum over pseudo-header and datagram, checksum included, is 0xffff.
        let mut sum: u32 = 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 17 + 11;
        for pair in f[34..45].chunks(2) {
            sum += (u32::from(pair[0]) << 8) | pair.get(1).map_or(0, |b| u32::from(*b));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(sum, 0xffff, "checksum {got:04x}");
        assert_ne!(got, 0);
        // Not IPv4: untouched.
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        let before = arp.clone();
        fix_checksums(&mut arp);
        assert_eq!(arp, before);
    }

    #[test]
    fn trace_ruleset_counts_each_flow_each_way() {
        let t = FlowTrace {
            base_port: 41000,
            flows: 3,
        };
        let r = t.ruleset();
        assert!(
            r.contains("udp sport 41002 counter comment \"f41002\""),
            "{r}"
        );
        assert!(
            r.contains("udp dport 41000 counter comment \"r41000\""),
            "{r}"
        );
        assert!(!r.contains("41003"), "{r}");
        let p = FlowPath {
            port: 1,
            forward: vec![1],
            reverse: vec![2],
        };
        assert!(p.asymmetric());
        assert!(!FlowPath {
            reverse: vec![1],
            ..p.clone()
        }
        .asymmetric());
    }
}
