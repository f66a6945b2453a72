//! BIRD 2 (Debian's `bird2`) as a routing daemon inside a namespace: OSPFv2 on the internal
//! LAN, and on the entry points the redistribution of a kernel routing table (the RIM table) into
//! OSPF.
//!
//! Each daemon gets its own configuration, control socket and log in the test directory
//! (`bird -f -c <conf> -s <socket>`), so several run side by side.

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
}

impl BirdConfig {
    /// An internal router: OSPF on `interfaces`, learned routes installed in the main table.
    pub fn router(router_id: Ipv4Addr, interfaces: &[&str]) -> BirdConfig {
        BirdConfig {
            router_id,
            ospf_interfaces: interfaces.iter().map(|s| s.to_string()).collect(),
            redistribute_table: None,
            install: true,
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
        if self.install {
            let _ = writeln!(s, "protocol kernel main_out {{");
            let _ = writeln!(s, "  ipv4 {{ import none; export all; }};");
            let _ = writeln!(s, "  scan time 1;");
            let _ = writeln!(s, "}}");
        }
        let _ = writeln!(s, "protocol ospf v2 backbone {{");
        let export = if self.redistribute_table.is_some() {
            "where source = RTS_INHERIT"
        } else {
            "none"
        };
        let _ = writeln!(s, "  ipv4 {{ import all; export {export}; }};");
        let _ = writeln!(s, "  area 0 {{");
        for ifname in &self.ospf_interfaces {
            let _ = writeln!(
                s,
                "    interface \"{ifname}\" {{ type broadcast; hello 1; dead 3; wait 2; retransmit 2; }};"
            );
        }
        let _ = writeln!(s, "  }};");
        let _ = writeln!(s, "}}");
        s
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
    }
}
