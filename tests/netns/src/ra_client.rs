//! `rampart client` inside the client namespace: a generated profile (schema of
//! docs/remote-access.md), `rampart client up --foreground` as a process, and its status.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::netns::{run, Netns, Process};
use crate::pki::Pki;
use crate::ra_gateway::GW_ID;
use crate::ra_topology::GW_WAN;
use crate::wait::try_wait_until;

/// One client profile.
#[derive(Debug, Clone)]
pub struct ProfileToml {
    pub name: String,
    /// `host` or `host:PORT`.
    pub gateway: String,
    pub remote_id: String,
    pub ca: PathBuf,
    /// EAP-MSCHAPv2 user and password.
    pub user: String,
    pub password: String,
    /// `["udp", "tcp", "tls"]` in the ladder's order.
    pub transports: Vec<String>,
    /// `proxy = ...` (`"none"` or a URL) and Basic/Digest credentials.
    pub proxy: String,
    pub proxy_credentials: Option<(String, String)>,
    pub state_dir: PathBuf,
    pub device: String,
    /// Lines appended verbatim.
    pub extra: String,
}

impl ProfileToml {
    /// EAP user `user` against the gateway of [`crate::ra_topology`], every transport, no
    /// proxy, DNS left alone (the test namespace shares the host's /etc).
    pub fn eap(pki: &Pki, state_dir: &Path, user: &str, password: &str) -> ProfileToml {
        ProfileToml {
            name: "corp".into(),
            gateway: GW_WAN.to_string(),
            remote_id: GW_ID.into(),
            ca: pki.ca_cert(),
            user: user.into(),
            password: password.into(),
            transports: vec!["udp".into(), "tcp".into(), "tls".into()],
            proxy: "none".into(),
            proxy_credentials: None,
            state_dir: state_dir.to_path_buf(),
            device: "rampart-c0".into(),
            extra: String::new(),
        }
    }

    pub fn to_toml(&self) -> String {
        let q = |s: &str| Value::String(s.to_string()).to_string();
        let mut s = String::new();
        let _ = writeln!(s, "name = {}", q(&self.name));
        // Empty: the profile lists `gateways` in `extra` instead.
        if !self.gateway.is_empty() {
            let _ = writeln!(s, "gateway = {}", q(&self.gateway));
        }
        let _ = writeln!(s, "remote_id = {}", q(&self.remote_id));
        let _ = writeln!(s, "auth = \"cert\"");
        let _ = writeln!(s, "ca_certificates = [{}]", q(&self.ca.to_string_lossy()));
        let _ = writeln!(s, "tls_ca = {}", q(&self.ca.to_string_lossy()));
        let _ = writeln!(s, "tls_server_name = {}", q(GW_ID));
        let _ = writeln!(s, "user = {}", q(&self.user));
        let _ = writeln!(s, "password = {}", q(&self.password));
        let t: Vec<String> = self.transports.iter().map(|t| q(t)).collect();
        let _ = writeln!(s, "transports = [{}]", t.join(", "));
        let _ = writeln!(s, "proxy = {}", q(&self.proxy));
        if let Some((u, p)) = &self.proxy_credentials {
            let _ = writeln!(s, "proxy_user = {}", q(u));
            let _ = writeln!(s, "proxy_password = {}", q(p));
        }
        let _ = writeln!(s, "dns = \"off\"");
        let _ = writeln!(s, "captive_portal = \"off\"");
        let _ = writeln!(s, "device = {}", q(&self.device));
        let _ = writeln!(s, "state_dir = {}", q(&self.state_dir.to_string_lossy()));
        for line in self.extra.lines() {
            let _ = writeln!(s, "{line}");
        }
        s
    }
}

/// A `rampart client up --profile FILE --foreground` process.
#[derive(Debug)]
pub struct RampartClient {
    process: Process,
    profile: PathBuf,
    binary: PathBuf,
    ns_name: String,
}

impl RampartClient {
    /// Writes the profile into `dir` and starts the client in `ns`.
    #[track_caller]
    pub fn start(ns: &Netns, dir: &Path, profile: &ProfileToml) -> RampartClient {
        std::fs::create_dir_all(&profile.state_dir)
            .unwrap_or_else(|e| panic!("create {}: {e}", profile.state_dir.display()));
        let path = dir.join(format!("{}.toml", profile.name));
        std::fs::write(&path, profile.to_toml())
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        let binary = crate::rampart::binary();
        let bin = binary.to_string_lossy().into_owned();
        let p = path.to_string_lossy().into_owned();
        let process = ns.spawn_env(
            dir,
            "rampart-client",
            &[&bin, "client", "up", "--profile", &p, "--foreground"],
            &[("RAMPART_LOG", "debug"), ("RUST_BACKTRACE", "1")],
        );
        RampartClient {
            process,
            profile: path,
            binary,
            ns_name: ns.name().to_string(),
        }
    }

    /// `rampart client status --profile FILE --json`, parsed.
    pub fn status(&self) -> Result<Value, String> {
        let bin = self.binary.to_string_lossy().into_owned();
        let p = self.profile.to_string_lossy().into_owned();
        let out = run(
            "ip",
            &[
                "netns",
                "exec",
                &self.ns_name,
                &bin,
                "client",
                "status",
                "--profile",
                &p,
                "--json",
            ],
        )
        .map_err(|e| e.to_string())?;
        serde_json::from_str(&out).map_err(|e| format!("status is not JSON ({e}): {out}"))
    }

    /// Waits for `state == "connected"`; returns the status document.
    #[track_caller]
    pub fn wait_connected(&mut self, timeout: Duration) -> Value {
        let mut last = Err(String::from("no status yet"));
        let waited = try_wait_until(timeout, "rampart client connected", || {
            assert!(
                self.process.is_running(),
                "rampart client exited:\n{}",
                self.process.log()
            );
            last = self.status();
            last.as_ref()
                .is_ok_and(|s| s["state"].as_str() == Some("connected"))
        });
        match (waited, last) {
            (Ok(_), Ok(status)) => status,
            (w, last) => panic!(
                "{}; last status: {last:?}\n{}",
                w.err().map(|e| e.to_string()).unwrap_or_default(),
                self.process.log()
            ),
        }
    }

    /// SIGTERM and wait for the exit (the client restores routes and DNS first).
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.process.stop(libc::SIGTERM, Duration::from_secs(10))
    }

    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// The virtual IP of a client status document.
pub fn virtual_ip(status: &Value) -> Option<String> {
    status["virtual_ips"][0]
        .as_str()
        .or_else(|| status["virtual_ip"].as_str())
        .or_else(|| status["virtual_address"].as_str())
        .map(|s| s.split('/').next().unwrap_or(s).to_string())
}

/// The transport of a client status document (`udp`, `tcp`, `tls`).
pub fn transport(status: &Value) -> Option<String> {
    let t = &status["transport"];
    t.as_str()
        .or_else(|| t["kind"].as_str())
        .or_else(|| t["name"].as_str())
        .map(str::to_string)
}
