//! BIRD 2 (Debian's `bird2`) as a routing daemon inside a namespace: OSPFv2 on the internal
//! LAN, and on the entry points the redistribution of a kernel routing table (the RIM table) into
//! OSPF.
//!
//! Each daemon gets its own configuration, control socket and log in the test directory
//! (`bird -f -c <conf> -s <socket>`), so several run side by side.
//!
//! For Load Sharing (routed mode) a router can merge equal-cost routes of several members into
//! one multipath kernel route ([`BirdConfig::ecmp`]), and a member can run one OSPF instance per
//! side ([`OspfInstance`]), each exporting only the learned routes within its own prefixes.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::netns::{run, CommandError, Netns, Process};
use crate::wait::wait_until;

/// The daemon and its client.
pub const BIRD: &str = "bird";
pub const BIRDC: &str = "birdc";

/// One BIRD configuration.
#[derive(Debug, Clone)]
pub struct BirdConfig {
    pub router_id: Ipv4Addr,
    /// Interfaces that speak OSPF (area 0, broadcast, 1 s hellos, dead after 3 s, 2 s wait).
    pub ospf_interfaces: Vec<String>,
    /// Learn the routes other programs put into this kernel table (the RIM table: `learn` of
    /// BIRD's `kernel` protocol) and export exactly those into OSPF (as external routes).
    pub redistribute_table: Option<u32>,
    /// Install what OSPF learns into the main kernel table (the internal router).
    pub install: bool,
    /// Equal-cost multipath: `ecmp yes` and `merge external yes` in every OSPF instance (the
    /// external routes several members export with the same metric become one route with a next
    /// hop per member) and `merge paths yes` in the kernel export.
    pub ecmp: bool,
    /// OSPF instances besides the one on `ospf_interfaces` (which is left out when that list
    /// is empty): each on its own interfaces with its own export filter.
    pub instances: Vec<OspfInstance>,
    /// OSPF router priority on every interface (`None`: BIRD's default, 1). A Load Sharing
    /// member uses 0, so on each LAN the router is the designated router and every member is
    /// fully adjacent to it (two non-designated routers stay in 2-Way).
    pub priority: Option<u8>,
    /// Static device routes `(prefix, interface)` (`route <prefix> via "<interface>"`): BIRD
    /// keeps each only while the interface exists and is up, and exports them like the learned
    /// routes (within each instance's prefixes). A member uses one for the remote domain via
    /// its TUN device, which goes with the process.
    pub device_routes: Vec<(String, String)>,
}

/// An OSPF instance (area 0, the timers of [`BirdConfig`]) of its own.
#[derive(Debug, Clone)]
pub struct OspfInstance {
    /// The protocol's name in BIRD (`show protocols`).
    pub name: String,
    pub interfaces: Vec<String>,
    /// Exports the learned routes (of `redistribute_table`) whose prefix lies within one of
    /// these (`net ~ [ p+, ... ]`); empty: exports nothing.
    pub export_within: Vec<String>,
}

impl BirdConfig {
    /// An internal router: OSPF on `interfaces`, learned routes installed in the main table.
    pub fn router(router_id: Ipv4Addr, interfaces: &[&str]) -> BirdConfig {
        BirdConfig {
            router_id,
            ospf_interfaces: interfaces.iter().map(|s| s.to_string()).collect(),
            redistribute_table: None,
            install: true,
            ecmp: false,
            instances: Vec::new(),
            priority: None,
            device_routes: Vec::new(),
        }
    }

    /// A router in front of a Load Sharing cluster: [`BirdConfig::router`] with ECMP, so the
    /// routes every member announces become one multipath route.
    pub fn ecmp_router(router_id: Ipv4Addr, interfaces: &[&str]) -> BirdConfig {
        BirdConfig {
            ecmp: true,
            ..BirdConfig::router(router_id, interfaces)
        }
    }

    /// A Load Sharing member: learns kernel table `table` (the announce table) and exports its
    /// routes split by side: one OSPF instance per entry of `sides` (name, interface, the
    /// prefixes exported there). Installs nothing.
    pub fn member(router_id: Ipv4Addr, table: u32, sides: &[(&str, &str, &[&str])]) -> BirdConfig {
        BirdConfig {
            router_id,
            ospf_interfaces: Vec::new(),
            redistribute_table: Some(table),
            install: false,
            ecmp: true,
            priority: Some(0),
            device_routes: Vec::new(),
            instances: sides
                .iter()
                .map(|(name, ifname, within)| OspfInstance {
                    name: name.to_string(),
                    interfaces: vec![ifname.to_string()],
                    export_within: within.iter().map(|p| p.to_string()).collect(),
                })
                .collect(),
        }
    }

    /// An entry point: OSPF on `interfaces`, redistributing kernel table `table`, installing
    /// nothing.
    pub fn redistributor(router_id: Ipv4Addr, interfaces: &[&str], table: u32) -> BirdConfig {
        BirdConfig {
            router_id,
            ospf_interfaces: interfaces.iter().map(|s| s.to_string()).collect(),
            redistribute_table: Some(table),
            install: false,
            ecmp: false,
            instances: Vec::new(),
            priority: None,
            device_routes: Vec::new(),
        }
    }

    /// The `bird.conf` text.
    pub fn to_conf(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "log stderr all;");
        let _ = writeln!(s, "router id {};", self.router_id);
        let _ = writeln!(s, "protocol device {{ scan time 1; }}");
        if let Some(table) = self.redistribute_table {
            // Routes of the kernel table that BIRD did not make ("alien" routes, here the
            // gateway's injected routes) are learned into a table of their own and piped
            // into master4; their source is RTS_INHERIT, which the OSPF export selects.
            let _ = writeln!(s, "ipv4 table rim;");
            let _ = writeln!(s, "protocol kernel rim_in {{");
            let _ = writeln!(s, "  ipv4 {{ table rim; import all; export none; }};");
            let _ = writeln!(s, "  kernel table {table};");
            let _ = writeln!(s, "  learn;");
            let _ = writeln!(s, "  scan time 1;");
            let _ = writeln!(s, "}}");
            let _ = writeln!(
                s,
                "protocol pipe rim_pipe {{ table master4; peer table rim; import all; export none; }}"
            );
        }
        if !self.device_routes.is_empty() {
            let _ = writeln!(s, "protocol static devroutes {{");
            let _ = writeln!(s, "  ipv4;");
            for (prefix, ifname) in &self.device_routes {
                let _ = writeln!(s, "  route {prefix} via \"{ifname}\";");
            }
            let _ = writeln!(s, "}}");
        }
        if self.install {
            let _ = writeln!(s, "protocol kernel main_out {{");
            let _ = writeln!(s, "  ipv4 {{ import none; export all; }};");
            if self.ecmp {
                let _ = writeln!(s, "  merge paths yes;");
            }
            let _ = writeln!(s, "  scan time 1;");
            let _ = writeln!(s, "}}");
        }
        if !self.ospf_interfaces.is_empty() {
            let export = if self.redistribute_table.is_some() {
                "where source = RTS_INHERIT".to_string()
            } else {
                "none".to_string()
            };
            self.ospf_instance(&mut s, "backbone", "all", &self.ospf_interfaces, &export);
        }
        for inst in &self.instances {
            let learned = self.redistribute_table.is_some() || !self.device_routes.is_empty();
            let export = if inst.export_within.is_empty() || !learned {
                "none".to_string()
            } else {
                let set: Vec<String> = inst.export_within.iter().map(|p| format!("{p}+")).collect();
                let source = if self.device_routes.is_empty() {
                    "source = RTS_INHERIT"
                } else {
                    "(source = RTS_INHERIT || source = RTS_STATIC)"
                };
                format!("where {source} && net ~ [ {} ]", set.join(", "))
            };
            // A member imports nothing: with another member's external route for the same
            // prefix in its table (OSPF, preference 150, beats the learned kernel route's 10)
            // its own would no longer be the best route, and so no longer exported.
            let import = if self.install { "all" } else { "none" };
            self.ospf_instance(&mut s, &inst.name, import, &inst.interfaces, &export);
        }
        s
    }

    fn ospf_instance(
        &self,
        s: &mut String,
        name: &str,
        import: &str,
        interfaces: &[String],
        export: &str,
    ) {
        let _ = writeln!(s, "protocol ospf v2 {name} {{");
        if self.ecmp {
            let _ = writeln!(s, "  ecmp yes;");
            let _ = writeln!(s, "  merge external yes;");
        }
        let _ = writeln!(s, "  ipv4 {{ import {import}; export {export}; }};");
        let _ = writeln!(s, "  area 0 {{");
        let priority = self
            .priority
            .map(|p| format!(" priority {p};"))
            .unwrap_or_default();
        for ifname in interfaces {
            let _ = writeln!(
                s,
                "    interface \"{ifname}\" {{ type broadcast; hello 1; dead 3; wait 2; retransmit 2;{priority} }};"
            );
        }
        let _ = writeln!(s, "  }};");
        let _ = writeln!(s, "}}");
    }
}

/// A running `bird`, stopped on drop.
#[derive(Debug)]
pub struct Bird {
    process: Process,
    socket: PathBuf,
    conf: PathBuf,
}

impl Bird {
    /// Writes `<dir>/bird.conf` and starts BIRD in the foreground inside `ns`; returns when its
    /// control socket answers.
    #[track_caller]
    pub fn start(ns: &Netns, dir: &Path, config: &BirdConfig) -> Bird {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let conf = dir.join("bird.conf");
        std::fs::write(&conf, config.to_conf())
            .unwrap_or_else(|e| panic!("write {}: {e}", conf.display()));
        let socket = dir.join("bird.ctl");
        let (c, s) = (
            conf.to_string_lossy().into_owned(),
            socket.to_string_lossy().into_owned(),
        );
        let mut process = ns.spawn(dir, "bird", &[BIRD, "-f", "-c", &c, "-s", &s]);
        wait_until(Duration::from_secs(10), "bird's control socket", || {
            assert!(process.is_running(), "bird exited:\n{}", process.log());
            run(BIRDC, &["-s", &s, "show", "status"]).is_ok()
        });
        Bird {
            process,
            socket,
            conf,
        }
    }

    /// `birdc -s <socket> <args>`.
    pub fn cmd(&self, args: &[&str]) -> Result<String, CommandError> {
        let s = self.socket.to_string_lossy().into_owned();
        let mut all = vec!["-s", s.as_str()];
        all.extend_from_slice(args);
        run(BIRDC, &all)
    }

    /// OSPF neighbours in state Full (`show ospf neighbors`).
    pub fn full_neighbors(&self) -> usize {
        self.cmd(&["show", "ospf", "neighbors"])
            .map(|out| out.lines().filter(|l| l.contains("Full/")).count())
            .unwrap_or(0)
    }

    /// `kill -9` (the box dies: no withdrawal, the neighbours notice by the OSPF dead interval).
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// Whether the daemon still runs.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Everything BIRD logged so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    pub fn config_path(&self) -> &Path {
        &self.conf
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        self.process.stop(libc::SIGTERM, Duration::from_secs(3));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redistributor_learns_the_table_and_exports_only_inherited_routes() {
        let c = BirdConfig::redistributor(Ipv4Addr::new(10, 3, 0, 1), &["lan0"], 201);
        let text = c.to_conf();
        assert!(text.contains("router id 10.3.0.1;"), "{text}");
        assert!(text.contains("kernel table 201;\n  learn;"), "{text}");
        assert!(
            text.contains("export where source = RTS_INHERIT;"),
            "{text}"
        );
        assert!(text.contains("interface \"lan0\""), "{text}");
        assert!(!text.contains("main_out"), "{text}");
        let r = BirdConfig::router(Ipv4Addr::new(10, 3, 0, 254), &["lan0"]).to_conf();
        assert!(r.contains("protocol kernel main_out"), "{r}");
        assert!(r.contains("export none;"), "{r}");
        assert!(!r.contains("learn"), "{r}");
        assert!(!r.contains("ecmp"), "{r}");
    }

    #[test]
    fn ecmp_router_merges_and_member_splits_its_exports_by_side() {
        let r = BirdConfig::ecmp_router(Ipv4Addr::new(10, 255, 1, 1), &["in0"]).to_conf();
        assert!(r.contains("  merge paths yes;"), "{r}");
        assert!(r.contains("  ecmp yes;\n  merge external yes;"), "{r}");
        assert!(r.contains("protocol ospf v2 backbone"), "{r}");
        let m = BirdConfig::member(
            Ipv4Addr::new(10, 255, 1, 11),
            202,
            &[
                ("outside", "out0", &["192.0.2.1/32", "10.1.0.0/24"]),
                ("inside", "in0", &["10.2.0.0/24"]),
                ("quiet", "x0", &[]),
            ],
        )
        .to_conf();
        assert!(m.contains("kernel table 202;\n  learn;"), "{m}");
        assert!(!m.contains("backbone"), "{m}");
        assert!(!m.contains("main_out"), "{m}");
        assert!(
            m.contains("protocol ospf v2 outside {\n  ecmp yes;\n  merge external yes;\n  ipv4 { import none; export where source = RTS_INHERIT && net ~ [ 192.0.2.1/32+, 10.1.0.0/24+ ]; };"),
            "{m}"
        );
        assert!(
            m.contains("export where source = RTS_INHERIT && net ~ [ 10.2.0.0/24+ ];"),
            "{m}"
        );
        assert!(m.contains("protocol ospf v2 quiet {\n  ecmp yes;\n  merge external yes;\n  ipv4 { import none; export none; };"), "{m}");
        assert!(
            m.contains("interface \"out0\" { type broadcast; hello 1; dead 3; wait 2; retransmit 2; priority 0; };"),
            "{m}"
        );
        assert!(m.contains("interface \"in0\""), "{m}");
        assert!(!r.contains("priority"), "{r}");
        assert!(!m.contains("protocol static"), "{m}");
        let mut d = BirdConfig::member(
            Ipv4Addr::new(10, 255, 1, 11),
            202,
            &[("inside", "in0", &["10.2.0.0/24"])],
        );
        d.device_routes = vec![("10.2.0.0/24".into(), "rampart0".into())];
        let d = d.to_conf();
        assert!(
            d.contains(
                "protocol static devroutes {\n  ipv4;\n  route 10.2.0.0/24 via \"rampart0\";\n}"
            ),
            "{d}"
        );
        assert!(
            d.contains("export where (source = RTS_INHERIT || source = RTS_STATIC) && net ~ [ 10.2.0.0/24+ ];"),
            "{d}"
        );
    }
}
