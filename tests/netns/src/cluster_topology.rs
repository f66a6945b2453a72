//! The cluster topology: two (up to five) cluster members between a LAN with a host and a WAN
//! towards a remote site, plus a dedicated sync link.
//!
//! ```text
//!                         sw: br-lan            sw: br-wan
//!  lanh eth0 10.1.0.10 ──┬── m1 lan0 10.1.0.2   m1 wan0 192.0.2.2 ──┬── rgw wan0 192.0.2.20   rgw lan0 10.2.0.1 ── rhost eth0 10.2.0.10
//!  (+ .11 .12 .13)       └── m2 lan0 10.1.0.3   m2 wan0 192.0.2.3 ──┘
//!                            m1 sync0 172.31.0.1 ── sw: br-sync ── m2 sync0 172.31.0.2
//!  VIPs (owned by the active member, not assigned here): LAN 10.1.0.1/24 on lan0, WAN 192.0.2.1/24 on wan0
//! ```
//! The three bridges live in their own namespace `sw`, so nothing touches the host's network. The
//! LAN host routes the remote domain via the LAN VIP; the remote gateway reaches the cluster at
//! the WAN VIP. Members forward (ip_forward) but have no route to the remote domain: only a tunnel
//! (or [`ClusterTopology::plain_forwarding`], the self-test shortcut) connects the sites.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use std::fmt::Write as _;

use crate::env::{serial, SerialGuard};
use crate::netns::{veth, CommandError, Netns, Process};
use crate::rampart::{GatewayToml, PeerToml};
use crate::topology::PSK;
use crate::workdir::TestDir;

pub const LAN_DOMAIN: &str = "10.1.0.0/24";
pub const REMOTE_DOMAIN: &str = "10.2.0.0/24";
/// The LAN virtual address (the LAN hosts' gateway to the remote domain).
pub const LAN_VIP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
/// The WAN virtual address (the cluster's IKE address as the remote site sees it).
pub const WAN_VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Prefix length of both VIPs (and of every address of the LAN and WAN).
pub const VIP_PREFIX: u8 = 24;
/// The LAN host's first address; [`LAN_HOST_SOURCES`] are all of them.
pub const LAN_HOST: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
/// Every address of the LAN host (several source addresses for many connections).
pub const LAN_HOST_SOURCES: [Ipv4Addr; 4] = [
    Ipv4Addr::new(10, 1, 0, 10),
    Ipv4Addr::new(10, 1, 0, 11),
    Ipv4Addr::new(10, 1, 0, 12),
    Ipv4Addr::new(10, 1, 0, 13),
];
pub const REMOTE_GW_WAN: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);
pub const REMOTE_GW_LAN: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
pub const REMOTE_HOST: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 10);
/// Interface names inside each member.
pub const LAN_IF: &str = "lan0";
pub const WAN_IF: &str = "wan0";
pub const SYNC_IF: &str = "sync0";
/// Interface names of the remote gateway.
pub const REMOTE_WAN_IF: &str = "wan0";
/// The LAN host's interface.
pub const HOST_IF: &str = "eth0";

/// A member's LAN address (`id` 1..=5).
pub fn member_lan(id: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 1, 0, 1 + id)
}

/// A member's WAN address.
pub fn member_wan(id: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 1 + id)
}

/// A member's sync address.
pub fn member_sync(id: u8) -> Ipv4Addr {
    Ipv4Addr::new(172, 31, 0, id)
}

/// One cluster member's namespace.
#[derive(Debug)]
pub struct Member {
    pub id: u8,
    pub ns: Netns,
}

/// The namespaces, the test directory and the serial lock (released last).
#[derive(Debug)]
pub struct ClusterTopology {
    /// Member `i` is `members[i - 1]` (ids start at 1).
    pub members: Vec<Member>,
    pub lan_host: Netns,
    pub remote_gw: Netns,
    pub remote_host: Netns,
    /// The bridges.
    pub switch: Netns,
    pub dir: TestDir,
    _serial: SerialGuard,
}

impl ClusterTopology {
    /// Builds the topology with `count` members (2..=5); takes the serial lock first.
    #[track_caller]
    pub fn new(test: &str, count: u8) -> ClusterTopology {
        assert!((2..=5).contains(&count), "2..=5 members, not {count}");
        let lock = serial();
        let dir = TestDir::new(test);
        let switch = Netns::new("sw");
        for br in ["br-lan", "br-wan", "br-sync"] {
            switch.ip(&format!("link add {br} type bridge"));
            switch.ip(&format!("link set {br} up"));
        }
        let c24 = |a: Ipv4Addr| format!("{a}/24");
        let members: Vec<Member> = (1..=count)
            .map(|id| {
                let ns = Netns::new(&format!("m{id}"));
                for (ifname, addr, br, tag) in [
                    (LAN_IF, member_lan(id), "br-lan", "lan"),
                    (WAN_IF, member_wan(id), "br-wan", "wan"),
                    (SYNC_IF, member_sync(id), "br-sync", "syn"),
                ] {
                    let port = format!("m{id}-{tag}");
                    veth(&ns, ifname, &[&c24(addr)], &switch, &port, &[]);
                    switch.ip(&format!("link set {port} master {br}"));
                }
                ns.enable_forwarding();
                Member { id, ns }
            })
            .collect();

        let lan_host = Netns::new("lanh");
        veth(&lan_host, HOST_IF, &[], &switch, "h-lan", &[]);
        switch.ip("link set h-lan master br-lan");
        for a in LAN_HOST_SOURCES {
            lan_host.add_addr(HOST_IF, &c24(a));
        }
        lan_host.route(&format!("{REMOTE_DOMAIN} via {LAN_VIP}"));

        let remote_gw = Netns::new("rgw");
        veth(&remote_gw, REMOTE_WAN_IF, &[], &switch, "r-wan", &[]);
        remote_gw.add_addr(REMOTE_WAN_IF, &c24(REMOTE_GW_WAN));
        switch.ip("link set r-wan master br-wan");
        let remote_host = Netns::new("rhost");
        veth(
            &remote_gw,
            "lan0",
            &[&c24(REMOTE_GW_LAN)],
            &remote_host,
            HOST_IF,
            &[&c24(REMOTE_HOST)],
        );
        remote_host.route(&format!("default via {REMOTE_GW_LAN}"));
        remote_gw.enable_forwarding();
        // Many concurrent connections: room in the accept queues of the remote host.
        for (key, value) in [
            ("net.core.somaxconn", "16384"),
            ("net.ipv4.tcp_max_syn_backlog", "16384"),
        ] {
            let _ = remote_host.try_sysctl(key, value);
        }

        ClusterTopology {
            members,
            lan_host,
            remote_gw,
            remote_host,
            switch,
            dir,
            _serial: lock,
        }
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

    /// A sub-directory of the test directory for one daemon.
    #[track_caller]
    pub fn daemon_dir(&self, name: &str) -> PathBuf {
        self.dir.subdir(name)
    }

    /// Runs a command in `ns` (any namespace of this topology); stdout or the error.
    pub fn run_in(&self, ns: &Netns, args: &[&str]) -> Result<String, CommandError> {
        ns.try_exec(args)
    }

    /// Applies `tc netem <spec>` (e.g. `"loss 5% delay 2ms reorder 10%"`) to the egress of
    /// every member's sync interface, so both directions of the sync link see it.
    #[track_caller]
    pub fn sync_netem(&self, spec: &str) {
        self.try_sync_netem(spec).unwrap_or_else(|e| panic!("{e}"));
    }

    /// [`ClusterTopology::sync_netem`], an error when the kernel has no netem (`sch_netem`).
    pub fn try_sync_netem(&self, spec: &str) -> Result<(), CommandError> {
        for m in &self.members {
            let mut args = vec!["tc", "qdisc", "replace", "dev", SYNC_IF, "root", "netem"];
            args.extend(spec.split_whitespace());
            m.ns.try_exec(&args)?;
        }
        Ok(())
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

    /// Removes the netem qdiscs of [`ClusterTopology::sync_netem`].
    #[track_caller]
    pub fn clear_sync_netem(&self) {
        for m in &self.members {
            let _ =
                m.ns.try_exec(&["tc", "qdisc", "del", "dev", SYNC_IF, "root"]);
        }
    }

    /// Cuts (`up = false`) or restores the sync link of every member (split brain).
    #[track_caller]
    pub fn set_sync_link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        for m in &self.members {
            m.ns.ip(&format!("link set {SYNC_IF} {state}"));
        }
    }

    /// Test-only shortcut for the tools' self-test (no cluster, no IPsec): member `id` owns both
    /// VIPs and forwards in clear, the remote gateway routes the LAN domain via the WAN VIP, and
    /// the neighbours' ARP entries for the VIPs point at the member (what a gratuitous ARP would
    /// do). Every other member gives the VIPs up and stops forwarding.
    #[track_caller]
    pub fn plain_forwarding(&self, id: u8) {
        for m in &self.members {
            if m.id != id {
                let _ =
                    m.ns.try_ip(&format!("addr del {LAN_VIP}/{VIP_PREFIX} dev {LAN_IF}"));
                let _ =
                    m.ns.try_ip(&format!("addr del {WAN_VIP}/{VIP_PREFIX} dev {WAN_IF}"));
                m.ns.sysctl("net.ipv4.ip_forward", "0");
            }
        }
        let ns = self.member(id);
        let _ = ns.try_ip(&format!("addr add {LAN_VIP}/{VIP_PREFIX} dev {LAN_IF}"));
        let _ = ns.try_ip(&format!("addr add {WAN_VIP}/{VIP_PREFIX} dev {WAN_IF}"));
        ns.enable_forwarding();
        let _ = self
            .remote_gw
            .try_ip(&format!("route replace {LAN_DOMAIN} via {WAN_VIP}"));
        let _ = ns.try_ip(&format!(
            "route replace {REMOTE_DOMAIN} via {REMOTE_GW_WAN}"
        ));
        let lan_mac = mac(ns, LAN_IF);
        let wan_mac = mac(ns, WAN_IF);
        self.lan_host.ip(&format!(
            "neigh replace {LAN_VIP} lladdr {lan_mac} dev {HOST_IF} nud reachable"
        ));
        self.remote_gw.ip(&format!(
            "neigh replace {WAN_VIP} lladdr {wan_mac} dev {REMOTE_WAN_IF} nud reachable"
        ));
    }

    /// Test-only: member `id` stops forwarding at once (what a dead member does to traffic).
    #[track_caller]
    pub fn blackhole(&self, id: u8) {
        self.member(id).sysctl("net.ipv4.ip_forward", "0");
    }
}

/// The `[cluster]` section of a member's configuration (keys of the plan's "Config + CLI": see
/// docs/configuration.md once the cluster lands).
#[derive(Debug, Clone)]
pub struct ClusterToml {
    pub name: String,
    pub member_id: u8,
    /// Every member: id and sync address (port 8116, the default).
    pub members: Vec<(u8, Ipv4Addr)>,
    /// The member with the top priority.
    pub primary: Option<u8>,
    pub switch_back: bool,
    pub heartbeat_interval: String,
    pub dead_after: u32,
    pub monitor: Vec<String>,
    /// `(interface, address/prefix)`.
    pub vips: Vec<(String, String)>,
    pub secret: String,
    /// Appended verbatim inside `[cluster]` (e.g. `takeover_margin = 1000`).
    pub extra: String,
}

impl ClusterToml {
    /// Member `id` of a cluster of `count` members in [`ClusterTopology`]: member 1 primary,
    /// both VIPs, LAN and WAN monitored, the defaults' timers.
    pub fn new(count: u8, id: u8) -> ClusterToml {
        ClusterToml {
            name: "netns".into(),
            member_id: id,
            members: (1..=count).map(|m| (m, member_sync(m))).collect(),
            primary: Some(1),
            switch_back: false,
            heartbeat_interval: "100ms".into(),
            dead_after: 3,
            monitor: vec![LAN_IF.into(), WAN_IF.into()],
            vips: vec![
                (LAN_IF.into(), format!("{LAN_VIP}/{VIP_PREFIX}")),
                (WAN_IF.into(), format!("{WAN_VIP}/{VIP_PREFIX}")),
            ],
            secret: "rampart netns cluster secret, not secret".into(),
            extra: String::new(),
        }
    }

    pub fn to_toml(&self) -> String {
        let q = |v: &str| serde_json::Value::String(v.to_string()).to_string();
        let mut s = String::new();
        let _ = writeln!(s, "[cluster]");
        let _ = writeln!(s, "name = {}", q(&self.name));
        let _ = writeln!(s, "member_id = {}", self.member_id);
        let _ = writeln!(s, "mode = \"high-availability\"");
        if let Some(p) = self.primary {
            let _ = writeln!(s, "primary = {p}");
        }
        let _ = writeln!(s, "switch_back = {}", self.switch_back);
        let _ = writeln!(s, "heartbeat_interval = {}", q(&self.heartbeat_interval));
        let _ = writeln!(s, "dead_after = {}", self.dead_after);
        let monitor: Vec<String> = self.monitor.iter().map(|m| q(m)).collect();
        let _ = writeln!(s, "monitor = [{}]", monitor.join(", "));
        let _ = writeln!(s, "secret = {}", q(&self.secret));
        for line in self.extra.lines() {
            let _ = writeln!(s, "{line}");
        }
        for (id, addr) in &self.members {
            let _ = writeln!(s, "\n[[cluster.member]]");
            let _ = writeln!(s, "id = {id}");
            let _ = writeln!(s, "address = {}", q(&addr.to_string()));
        }
        for (interface, address) in &self.vips {
            let _ = writeln!(s, "\n[[cluster.vip]]");
            let _ = writeln!(s, "interface = {}", q(interface));
            let _ = writeln!(s, "address = {}", q(address));
        }
        s
    }
}

impl ClusterTopology {
    /// Member `id`'s gateway configuration: protects the LAN, one peer `remote` (the remote
    /// gateway, which initiates: `start_action = "none"` here) with the WAN VIP as local
    /// address and identity, and the `[cluster]` section of [`ClusterToml::new`].
    pub fn member_config(&self, id: u8) -> (GatewayToml, ClusterToml) {
        let mut peer = PeerToml::new(
            "remote",
            &WAN_VIP.to_string(),
            &REMOTE_GW_WAN.to_string(),
            REMOTE_DOMAIN,
            PSK,
        );
        peer.start_action = "none".into();
        let gw = GatewayToml::new(
            &format!("m{id}"),
            &self.daemon_dir(&format!("m{id}")),
            LAN_DOMAIN,
            peer,
        );
        (gw, ClusterToml::new(self.members.len() as u8, id))
    }

    /// The remote site's Rampart gateway: peer `cluster` at the WAN VIP, initiates.
    pub fn remote_rampart_config(&self) -> GatewayToml {
        let peer = PeerToml::new(
            "cluster",
            &REMOTE_GW_WAN.to_string(),
            &WAN_VIP.to_string(),
            LAN_DOMAIN,
            PSK,
        );
        GatewayToml::new("remote", &self.daemon_dir("remote"), REMOTE_DOMAIN, peer)
    }
}

/// The MAC address of an interface.
#[track_caller]
pub fn mac(ns: &Netns, ifname: &str) -> String {
    let out = ns.ip(&format!("-o link show dev {ifname}"));
    out.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC address in {out}"))
        .to_string()
}

/// A process that can be killed with SIGKILL and started again with the same command line (a
/// cluster member's daemon, or any process in the self-test). Log of run `n` > 0:
/// `<label>-restart<n>.log`.
#[derive(Debug)]
pub struct Restartable {
    label: String,
    dir: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    process: Process,
    restarts: u32,
}

impl Restartable {
    #[track_caller]
    pub fn spawn(
        ns: &Netns,
        dir: &Path,
        label: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Restartable {
        let process = ns.spawn_env(dir, label, args, env);
        Restartable {
            label: label.into(),
            dir: dir.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            process,
            restarts: 0,
        }
    }

    /// `kill -9` and reap; the exit status.
    pub fn kill9(&mut self) -> Option<std::process::ExitStatus> {
        self.process.kill9()
    }

    /// Kills the current process (if it still runs) and starts the command again in `ns`.
    #[track_caller]
    pub fn restart(&mut self, ns: &Netns) {
        self.process.kill9();
        self.restarts += 1;
        let label = format!("{}-restart{}", self.label, self.restarts);
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.process = ns.spawn_env(&self.dir, &label, &args, &env);
    }

    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    pub fn restarts(&self) -> u32 {
        self.restarts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_test_only_and_distinct() {
        let mut all = vec![LAN_VIP, WAN_VIP, REMOTE_GW_WAN, REMOTE_GW_LAN, REMOTE_HOST];
        all.extend(LAN_HOST_SOURCES);
        for id in 1..=5 {
            all.extend([member_lan(id), member_wan(id), member_sync(id)]);
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
    fn cluster_section_has_the_plan_keys() {
        let text = ClusterToml::new(2, 2).to_toml();
        for want in [
            "[cluster]\nname = \"netns\"\nmember_id = 2\nmode = \"high-availability\"\nprimary = 1",
            "heartbeat_interval = \"100ms\"\ndead_after = 3",
            "monitor = [\"lan0\", \"wan0\"]",
            "[[cluster.member]]\nid = 1\naddress = \"172.31.0.1\"",
            "[[cluster.member]]\nid = 2\naddress = \"172.31.0.2\"",
            "[[cluster.vip]]\ninterface = \"lan0\"\naddress = \"10.1.0.1/24\"",
            "[[cluster.vip]]\ninterface = \"wan0\"\naddress = \"192.0.2.1/24\"",
        ] {
            assert!(text.contains(want), "{want:?} not in:\n{text}");
        }
    }
}
