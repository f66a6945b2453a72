//! The `rampart` gateway as a process inside a namespace: binary lookup, generated TOML
//! configuration (schema of `examples/site-to-site/gw-a.toml`), and `rampart status --json`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::netns::{run, Netns, Process};
use crate::wait::try_wait_until;

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `target/debug/rampart` of the workspace (or of `CARGO_TARGET_DIR`).
pub fn binary_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("debug").join("rampart")
}

/// The rampart binary, built with `cargo build -p rampart` when it is missing.
///
/// `cargo test` may hold the build-directory lock while tests run, so a missing binary is built
/// in a separate target directory (`target/netns-build`) to avoid waiting on ourselves.
/// scripts/test.sh builds it before the tests so this fallback is for hand-run tests.
#[track_caller]
pub fn binary() -> PathBuf {
    let path = binary_path();
    if path.is_file() {
        warn_if_stale(&path);
        return path;
    }
    let root = workspace_root();
    let target = root.join("target").join("netns-build");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(&cargo)
        .current_dir(&root)
        .args(["build", "-p", "rampart", "--target-dir"])
        .arg(&target)
        .status()
        .unwrap_or_else(|e| panic!("run {cargo} build -p rampart: {e}"));
    assert!(status.success(), "cargo build -p rampart failed: {status}");
    let built = target.join("debug").join("rampart");
    assert!(
        built.is_file(),
        "{} missing after the build",
        built.display()
    );
    built
}

/// Warns when a source file of the workspace is newer than the binary (tests would run old code).
fn warn_if_stale(binary: &Path) {
    let Ok(built) = std::fs::metadata(binary).and_then(|m| m.modified()) else {
        return;
    };
    let mut newest = None;
    newest_mtime(&workspace_root().join("crates"), &mut newest);
    if newest.is_some_and(|n| n > built) {
        eprintln!(
            "warning: {} is older than the sources: run `cargo build -p rampart` first",
            binary.display()
        );
    }
}

fn newest_mtime(dir: &Path, newest: &mut Option<std::time::SystemTime>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let p = entry.path();
        if p.is_dir() {
            newest_mtime(&p, newest);
        } else if p.extension().is_some_and(|e| e == "rs" || e == "toml") {
            if let Ok(m) = entry.metadata().and_then(|m| m.modified()) {
                if newest.is_none_or(|n| m > n) {
                    *newest = Some(m);
                }
            }
        }
    }
}

/// `[[peer]]` of a gateway configuration. Durations and sizes use the config's string forms.
#[derive(Debug, Clone)]
pub struct PeerToml {
    pub name: String,
    pub local_address: String,
    pub remote_address: String,
    pub local_id: String,
    pub remote_id: String,
    pub psk: String,
    pub remote_domain: Vec<String>,
    pub ike_proposals: Vec<String>,
    pub esp_proposals: Vec<String>,
    /// `none`, `on-traffic` or `always`.
    pub start_action: String,
    pub ike_lifetime: String,
    pub child_lifetime: String,
    pub child_lifetime_bytes: Option<String>,
    pub liveness_interval: String,
    /// `auto` or `force`.
    pub encapsulation: String,
    pub replay_window: u32,
    pub esn: bool,
    /// Lines appended verbatim at the end of this `[[peer]]` table (e.g. `probe = "ike"`).
    pub extra: String,
}

impl PeerToml {
    /// A peer with the example's defaults; identities are the addresses.
    pub fn new(name: &str, local: &str, remote: &str, remote_domain: &str, psk: &str) -> PeerToml {
        PeerToml {
            name: name.into(),
            local_address: local.into(),
            remote_address: remote.into(),
            local_id: local.into(),
            remote_id: remote.into(),
            psk: psk.into(),
            remote_domain: vec![remote_domain.into()],
            ike_proposals: vec!["aes256gcm16-prfsha256-x25519".into()],
            esp_proposals: vec!["aes256gcm16".into()],
            start_action: "always".into(),
            ike_lifetime: "4h".into(),
            child_lifetime: "1h".into(),
            child_lifetime_bytes: None,
            liveness_interval: "30s".into(),
            encapsulation: "auto".into(),
            replay_window: 1024,
            esn: false,
            extra: String::new(),
        }
    }
}

/// One gateway configuration file.
#[derive(Debug, Clone)]
pub struct GatewayToml {
    pub name: String,
    pub status_socket: PathBuf,
    pub ike_port: u16,
    pub nat_t_port: u16,
    pub retransmit_timeout: String,
    pub retransmit_tries: u32,
    /// `[gateway] nat_keepalive`, written only when set.
    pub nat_keepalive: Option<String>,
    /// `[gateway] fragmentation` (RFC 7383), written only when set.
    pub fragmentation: Option<bool>,
    /// `[gateway] fragment_size`, written only when set.
    pub fragment_size: Option<u16>,
    /// `[gateway] cookie_threshold`, written only when set.
    pub cookie_threshold: Option<u32>,
    /// `[gateway] half_open_per_source`, written only when set.
    pub half_open_per_source: Option<u32>,
    pub device: String,
    pub mtu: u16,
    /// `[tunnel] offload`, written only when set.
    pub offload: Option<bool>,
    /// `[tunnel] crypto_threads`, written only when set.
    pub crypto_threads: Option<u16>,
    pub domain: Vec<String>,
    pub peers: Vec<PeerToml>,
    /// Appended verbatim after the peers: `[inspection]`, `[[rule]]`, `[[nat]]` and the like.
    pub extra: String,
}

impl GatewayToml {
    /// A gateway protecting `domain` with one peer; the status socket lives in `dir`.
    pub fn new(name: &str, dir: &Path, domain: &str, peer: PeerToml) -> GatewayToml {
        GatewayToml {
            name: name.into(),
            status_socket: dir.join(format!("{name}.sock")),
            ike_port: 500,
            nat_t_port: 4500,
            retransmit_timeout: "2s".into(),
            retransmit_tries: 5,
            nat_keepalive: None,
            fragmentation: None,
            fragment_size: None,
            cookie_threshold: None,
            half_open_per_source: None,
            device: "rampart0".into(),
            mtu: 1400,
            offload: None,
            crypto_threads: None,
            domain: vec![domain.into()],
            peers: vec![peer],
            extra: String::new(),
        }
    }

    pub fn to_toml(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "[gateway]");
        let _ = writeln!(s, "name = {}", q(&self.name));
        let _ = writeln!(
            s,
            "status_socket = {}",
            q(&self.status_socket.to_string_lossy())
        );
        let _ = writeln!(s, "ike_port = {}", self.ike_port);
        let _ = writeln!(s, "nat_t_port = {}", self.nat_t_port);
        let _ = writeln!(s, "retransmit_timeout = {}", q(&self.retransmit_timeout));
        let _ = writeln!(s, "retransmit_tries = {}", self.retransmit_tries);
        if let Some(interval) = &self.nat_keepalive {
            let _ = writeln!(s, "nat_keepalive = {}", q(interval));
        }
        if let Some(on) = self.fragmentation {
            let _ = writeln!(s, "fragmentation = {on}");
        }
        if let Some(size) = self.fragment_size {
            let _ = writeln!(s, "fragment_size = {size}");
        }
        if let Some(n) = self.cookie_threshold {
            let _ = writeln!(s, "cookie_threshold = {n}");
        }
        if let Some(n) = self.half_open_per_source {
            let _ = writeln!(s, "half_open_per_source = {n}");
        }
        let _ = writeln!(s, "\n[tunnel]");
        let _ = writeln!(s, "device = {}", q(&self.device));
        let _ = writeln!(s, "mtu = {}", self.mtu);
        if let Some(threads) = self.crypto_threads {
            let _ = writeln!(s, "crypto_threads = {threads}");
        }
        if let Some(on) = self.offload {
            let _ = writeln!(s, "offload = {on}");
        }
        let _ = writeln!(s, "\n[local]");
        let _ = writeln!(s, "domain = {}", list(&self.domain));
        for p in &self.peers {
            let _ = writeln!(s, "\n[[peer]]");
            let _ = writeln!(s, "name = {}", q(&p.name));
            let _ = writeln!(s, "local_address = {}", q(&p.local_address));
            let _ = writeln!(s, "remote_address = {}", q(&p.remote_address));
            let _ = writeln!(s, "local_id = {}", q(&p.local_id));
            let _ = writeln!(s, "remote_id = {}", q(&p.remote_id));
            if !p.psk.is_empty() {
                // Empty: no pre-shared key (certificate peers put their keys in `extra`).
                let _ = writeln!(s, "psk = {}", q(&p.psk));
            }
            let _ = writeln!(s, "remote_domain = {}", list(&p.remote_domain));
            let _ = writeln!(s, "ike_proposals = {}", list(&p.ike_proposals));
            let _ = writeln!(s, "esp_proposals = {}", list(&p.esp_proposals));
            let _ = writeln!(s, "start_action = {}", q(&p.start_action));
            let _ = writeln!(s, "ike_lifetime = {}", q(&p.ike_lifetime));
            let _ = writeln!(s, "child_lifetime = {}", q(&p.child_lifetime));
            if let Some(bytes) = &p.child_lifetime_bytes {
                let _ = writeln!(s, "child_lifetime_bytes = {}", q(bytes));
            }
            let _ = writeln!(s, "liveness_interval = {}", q(&p.liveness_interval));
            let _ = writeln!(s, "encapsulation = {}", q(&p.encapsulation));
            let _ = writeln!(s, "replay_window = {}", p.replay_window);
            let _ = writeln!(s, "esn = {}", p.esn);
            for line in p.extra.lines() {
                let _ = writeln!(s, "{line}");
            }
        }
        if !self.extra.is_empty() {
            let _ = writeln!(s, "\n{}", self.extra);
        }
        s
    }
}

/// A TOML basic string (JSON string escapes are valid TOML escapes).
fn q(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| q(i)).collect();
    format!("[{}]", quoted.join(", "))
}

/// SPIs of one gateway's first peer, to notice rekeys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spis {
    /// Initiator and responder SPI of the IKE SA.
    pub ike: (u64, u64),
    /// Inbound and outbound SPI of each tunnel.
    pub children: Vec<(u32, u32)>,
}

/// Parses a hex SPI as printed by `rampart status` or swanctl (`0x` prefix optional).
pub fn parse_spi(hex: &str) -> Option<u64> {
    let digits = hex.trim().trim_start_matches("0x");
    u64::from_str_radix(digits, 16).ok()
}

/// A `rampart gateway run` process inside a namespace.
#[derive(Debug)]
pub struct Gateway {
    label: String,
    dir: PathBuf,
    config_path: PathBuf,
    socket: PathBuf,
    binary: PathBuf,
    process: Option<Process>,
    restarts: u32,
}

impl Gateway {
    /// Writes `<dir>/<label>.toml` and starts the gateway in `ns` (log: `<dir>/<label>.log`).
    #[track_caller]
    pub fn start(ns: &Netns, dir: &Path, label: &str, config: &GatewayToml) -> Gateway {
        let config_path = dir.join(format!("{label}.toml"));
        std::fs::write(&config_path, config.to_toml())
            .unwrap_or_else(|e| panic!("write {}: {e}", config_path.display()));
        let mut gw = Gateway {
            label: label.into(),
            dir: dir.into(),
            config_path,
            socket: config.status_socket.clone(),
            binary: binary(),
            process: None,
            restarts: 0,
        };
        gw.spawn(ns);
        gw
    }

    fn spawn(&mut self, ns: &Netns) {
        let label = if self.restarts == 0 {
            self.label.clone()
        } else {
            format!("{}-restart{}", self.label, self.restarts)
        };
        let bin = self.binary.to_string_lossy().into_owned();
        let cfg = self.config_path.to_string_lossy().into_owned();
        self.process = Some(ns.spawn_env(
            &self.dir,
            &label,
            &[&bin, "gateway", "run", "--config", &cfg],
            &[("RAMPART_LOG", "debug"), ("RUST_BACKTRACE", "1")],
        ));
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The status socket (from the configuration the gateway was started with).
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The directory the gateway's configuration and logs live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `config` over the gateway's configuration file and runs
    /// `rampart reload --config <file>`; `Ok` is its standard output, `Err` its whole output when
    /// it exits non-zero.
    pub fn reload(&self, config: &GatewayToml) -> Result<String, String> {
        std::fs::write(&self.config_path, config.to_toml())
            .map_err(|e| format!("write {}: {e}", self.config_path.display()))?;
        let bin = self.binary.to_string_lossy().into_owned();
        let cfg = self.config_path.to_string_lossy().into_owned();
        run(&bin, &["reload", "--config", &cfg]).map_err(|e| e.to_string())
    }

    /// Writes raw text over the configuration file (for files with errors).
    pub fn write_config_text(&self, text: &str) {
        std::fs::write(&self.config_path, text)
            .unwrap_or_else(|e| panic!("write {}: {e}", self.config_path.display()));
    }

    /// Sends `sig` to the gateway process.
    pub fn signal(&self, sig: libc::c_int) {
        if let Some(p) = self.process.as_ref() {
            p.signal(sig);
        }
    }

    /// The status entry of the peer called `name`, if the gateway lists it (read from the
    /// socket: the configuration file may hold a rejected edit).
    pub fn peer(&self, name: &str) -> Option<Value> {
        let status = self.status_from_socket().ok()?;
        status["peers"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
    }

    /// Names of every peer the gateway lists, read from its status socket.
    pub fn peer_names(&self) -> Vec<String> {
        let Ok(status) = self.status_from_socket() else {
            return Vec::new();
        };
        status["peers"]
            .as_array()
            .map(|peers| {
                peers
                    .iter()
                    .filter_map(|p| p["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `kill -9` the gateway.
    pub fn kill9(&mut self) {
        if let Some(p) = self.process.as_mut() {
            p.kill9();
        }
    }

    /// Starts the gateway again with the same configuration (after [`Gateway::kill9`]).
    pub fn restart(&mut self, ns: &Netns) {
        self.kill9();
        self.restarts += 1;
        self.spawn(ns);
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(Process::is_running)
    }

    /// The log of the current run.
    pub fn log(&self) -> String {
        self.process.as_ref().map(Process::log).unwrap_or_default()
    }

    /// `rampart status --config <file> --json`, parsed.
    pub fn status(&self) -> Result<Value, String> {
        let bin = self.binary.to_string_lossy().into_owned();
        let cfg = self.config_path.to_string_lossy().into_owned();
        let out = run(&bin, &["status", "--config", &cfg, "--json"]).map_err(|e| e.to_string())?;
        serde_json::from_str(&out).map_err(|e| format!("status is not JSON ({e}): {out}"))
    }

    /// The status document read straight from the status socket (one `status` line out, one
    /// JSON document back), bypassing the CLI.
    pub fn status_from_socket(&self) -> Result<Value, String> {
        self.socket_request("status")
    }

    /// One request line on the status socket and the JSON document it answers.
    pub fn socket_request(&self, request: &str) -> Result<Value, String> {
        use std::io::{Read, Write};
        let socket = &self.socket;
        let mut stream = std::os::unix::net::UnixStream::connect(socket)
            .map_err(|e| format!("connect {}: {e}", socket.display()))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        stream
            .write_all(format!("{request}\n").as_bytes())
            .map_err(|e| format!("write {}: {e}", socket.display()))?;
        let mut body = Vec::new();
        stream
            .read_to_end(&mut body)
            .map_err(|e| format!("read {}: {e}", socket.display()))?;
        serde_json::from_slice(&body).map_err(|e| format!("answer is not JSON ({e})"))
    }

    /// SPIs of the first peer when its IKE SA is established and it has a tunnel.
    pub fn spis(&self) -> Option<Spis> {
        let status = self.status().ok()?;
        let peer = status.get("peers")?.get(0)?;
        if peer.get("state")?.as_str()? != "established" {
            return None;
        }
        let ike = peer.get("ike_sa")?;
        let ike = (
            parse_spi(ike.get("spi_i")?.as_str()?)?,
            parse_spi(ike.get("spi_r")?.as_str()?)?,
        );
        let spi32 = |t: &Value, key: &str| -> Option<u32> {
            u32::try_from(parse_spi(t.get(key)?.as_str()?)?).ok()
        };
        let children: Vec<(u32, u32)> = peer
            .get("tunnels")?
            .as_array()?
            .iter()
            .filter_map(|t| Some((spi32(t, "spi_in")?, spi32(t, "spi_out")?)))
            .collect();
        if children.is_empty() {
            return None;
        }
        Some(Spis { ike, children })
    }

    /// State of the first peer (`down`, `connecting`, `established`, ...).
    pub fn peer_state(&self) -> Result<String, String> {
        let status = self.status()?;
        status["peers"][0]["state"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("no peer state in {status}"))
    }

    /// Waits until the first peer is established with a tunnel; returns its SPIs. On timeout the
    /// panic shows the last status (or why it could not be read).
    #[track_caller]
    pub fn wait_tunnel(&mut self, timeout: Duration) -> Spis {
        let mut spis = None;
        let waited = try_wait_until(
            timeout,
            &format!("{}: tunnel established", self.label),
            || {
                assert!(self.is_running(), "{} exited:\n{}", self.label, self.log());
                spis = self.spis();
                spis.is_some()
            },
        );
        match (waited, spis) {
            (Ok(_), Some(spis)) => spis,
            (waited, _) => {
                let e = waited.err().map(|e| e.to_string()).unwrap_or_default();
                let last = match self.status() {
                    Ok(v) => v.to_string(),
                    Err(err) => err,
                };
                panic!("{e}; last status: {last}")
            }
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // SIGTERM first: the gateway removes its routes and TUN device on a clean exit.
        if let Some(p) = self.process.as_mut() {
            p.stop(libc::SIGTERM, Duration::from_secs(3));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spis_parse_with_or_without_prefix() {
        assert_eq!(parse_spi("c1234567"), Some(0xc123_4567));
        assert_eq!(parse_spi("0x00c12345"), Some(0xc1_2345));
        assert_eq!(parse_spi("b4e41adbbd667b3d"), Some(0xb4e4_1adb_bd66_7b3d));
        assert_eq!(parse_spi("zz"), None);
    }

    #[test]
    fn generated_toml_follows_the_example_schema() {
        let mut peer = PeerToml::new("site-b", "192.0.2.1", "192.0.2.2", "10.2.0.0/24", "k\"ey");
        peer.child_lifetime_bytes = Some("1GB".into());
        let cfg = GatewayToml::new("gw-a", Path::new("/tmp/x"), "10.1.0.0/24", peer);
        let text = cfg.to_toml();
        assert!(text.contains("[gateway]\nname = \"gw-a\"\nstatus_socket = \"/tmp/x/gw-a.sock\""));
        assert!(text.contains("retransmit_timeout = \"2s\"\nretransmit_tries = 5"));
        assert!(text.contains("domain = [\"10.1.0.0/24\"]"));
        assert!(text.contains("psk = \"k\\\"ey\""));
        assert!(text.contains("child_lifetime_bytes = \"1GB\""));
        assert!(text.contains("esn = false"));
        // Every key of the example file appears in the generated file.
        let example =
            std::fs::read_to_string(workspace_root().join("examples/site-to-site/gw-a.toml"))
                .unwrap();
        for line in example.lines() {
            let line = line.trim();
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let key = line.split('=').next().unwrap().trim();
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("{key} =")) || l == key),
                "generated config lacks `{key}`:\n{text}"
            );
        }
    }
}
