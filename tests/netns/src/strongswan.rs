//! strongSwan (Debian 12's charon 5.9.8 with kernel-libipsec) as a peer inside a namespace.
//!
//! Each charon gets a private `strongswan.conf` (via `STRONGSWAN_CONF`), its own vici socket in
//! the test directory, and a private tmpfs on `/run` (via `unshare --mount`) so its compiled-in
//! pid file `/var/run/charon.pid` never collides with another charon. kernel-libipsec does ESP in
//! user space over the IKE UDP socket, so every connection uses UDP encapsulation (`encap = yes`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::netns::{run, CommandError, Netns, Process};
use crate::vici_raw::{parse_list_sas, ChildSa, IkeSa};
use crate::wait::{try_wait_until, wait_until};

/// The daemon binary of Debian's strongswan-charon package.
pub const CHARON: &str = "/usr/lib/ipsec/charon";

/// Plugins loaded, in order: kernel-libipsec registers its IPsec backend before kernel-netlink.
const PLUGINS: &str = "random nonce openssl hmac kdf pem pkcs1 x509 pubkey \
                       kernel-libipsec kernel-netlink socket-default vici updown";

/// One site-to-site connection (`connections.<conn>` with one child `<child>`).
#[derive(Debug, Clone)]
pub struct CharonConfig {
    pub conn: String,
    pub child: String,
    pub local_addr: String,
    pub remote_addr: String,
    pub local_id: String,
    pub remote_id: String,
    pub psk: String,
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
    /// swanctl `proposals`, e.g. `aes256gcm16-prfsha256-x25519`.
    pub ike_proposals: String,
    /// swanctl `esp_proposals`, e.g. `aes256gcm16`.
    pub esp_proposals: String,
    /// `none`, `trap` or `start`.
    pub start_action: String,
    /// IKE SA `rekey_time`.
    pub ike_rekey_time: String,
    /// CHILD SA `rekey_time`.
    pub child_rekey_time: String,
    /// `dpd_delay` (liveness checks); `0s` turns them off.
    pub dpd_delay: String,
    /// UDP encapsulation forced; kernel-libipsec needs it.
    pub encap: bool,
    /// Extra lines inside the `charon { }` section of strongswan.conf.
    pub charon_extra: String,
    /// Plugins loaded after the default set (e.g. `eap-mschapv2 resolve` for a remote-access
    /// client).
    pub extra_plugins: String,
}

impl CharonConfig {
    /// A PSK IKEv2 tunnel between `local_addr` and `remote_addr` (identities are the addresses),
    /// AES-GCM with X25519, UDP encapsulation, started by `swanctl --initiate`.
    pub fn site_to_site(
        local_addr: &str,
        remote_addr: &str,
        local_ts: &str,
        remote_ts: &str,
        psk: &str,
    ) -> CharonConfig {
        CharonConfig {
            conn: "s2s".into(),
            child: "net".into(),
            local_addr: local_addr.into(),
            remote_addr: remote_addr.into(),
            local_id: local_addr.into(),
            remote_id: remote_addr.into(),
            psk: psk.into(),
            local_ts: vec![local_ts.into()],
            remote_ts: vec![remote_ts.into()],
            ike_proposals: "aes256gcm16-prfsha256-x25519".into(),
            esp_proposals: "aes256gcm16".into(),
            start_action: "none".into(),
            ike_rekey_time: "4h".into(),
            child_rekey_time: "1h".into(),
            dpd_delay: "0s".into(),
            encap: true,
            charon_extra: String::new(),
            extra_plugins: String::new(),
        }
    }

    /// The daemon configuration for a charon whose files live in `dir`.
    pub fn strongswan_conf(&self, dir: &Path) -> String {
        let d = dir.display();
        let mut s = String::new();
        let _ = writeln!(s, "charon {{");
        let _ = writeln!(s, "  load = {PLUGINS} {}", self.extra_plugins);
        let _ = writeln!(s, "  port = 500");
        let _ = writeln!(s, "  port_nat_t = 4500");
        let _ = writeln!(s, "  install_routes = yes");
        let _ = writeln!(s, "  plugins {{");
        let _ = writeln!(s, "    vici {{");
        let _ = writeln!(s, "      socket = unix://{d}/charon.vici");
        let _ = writeln!(s, "    }}");
        let _ = writeln!(s, "  }}");
        let _ = writeln!(s, "  filelog {{");
        let _ = writeln!(s, "    charon {{");
        let _ = writeln!(s, "      path = {d}/charon.log");
        let _ = writeln!(s, "      time_format = %T");
        let _ = writeln!(s, "      default = 1");
        let _ = writeln!(s, "      ike = 2");
        let _ = writeln!(s, "      cfg = 2");
        let _ = writeln!(s, "      knl = 2");
        let _ = writeln!(s, "      flush_line = yes");
        let _ = writeln!(s, "    }}");
        let _ = writeln!(s, "  }}");
        for line in self.charon_extra.lines() {
            let _ = writeln!(s, "  {line}");
        }
        let _ = writeln!(s, "}}");
        s
    }

    /// The `connections` section of `swanctl.conf`: `local_auth`/`remote_auth` are the lines of
    /// the local and remote sections before their `id`, `extra_conn` lines go into the connection.
    pub fn connections(
        &self,
        local_auth: &[&str],
        remote_auth: &[&str],
        extra_conn: &str,
    ) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "connections {{");
        let _ = writeln!(s, "  {} {{", self.conn);
        let _ = writeln!(s, "    version = 2");
        let _ = writeln!(s, "    local_addrs = {}", self.local_addr);
        let _ = writeln!(s, "    remote_addrs = {}", self.remote_addr);
        let _ = writeln!(s, "    proposals = {}", self.ike_proposals);
        let _ = writeln!(s, "    encap = {}", if self.encap { "yes" } else { "no" });
        let _ = writeln!(s, "    rekey_time = {}", self.ike_rekey_time);
        let _ = writeln!(s, "    dpd_delay = {}", self.dpd_delay);
        for line in extra_conn.lines() {
            let _ = writeln!(s, "    {line}");
        }
        for (section, auth, id) in [
            ("local", local_auth, &self.local_id),
            ("remote", remote_auth, &self.remote_id),
        ] {
            let _ = writeln!(s, "    {section} {{");
            for line in auth {
                let _ = writeln!(s, "      {line}");
            }
            let _ = writeln!(s, "      id = {id}");
            let _ = writeln!(s, "    }}");
        }
        let _ = writeln!(s, "    children {{");
        let _ = writeln!(s, "      {} {{", self.child);
        let _ = writeln!(s, "        local_ts = {}", self.local_ts.join(","));
        let _ = writeln!(s, "        remote_ts = {}", self.remote_ts.join(","));
        let _ = writeln!(s, "        esp_proposals = {}", self.esp_proposals);
        let _ = writeln!(s, "        rekey_time = {}", self.child_rekey_time);
        let _ = writeln!(s, "        start_action = {}", self.start_action);
        let _ = writeln!(s, "      }}");
        let _ = writeln!(s, "    }}");
        let _ = writeln!(s, "  }}");
        let _ = writeln!(s, "}}");
        s
    }

    /// The `swanctl.conf` with the connection and its PSK.
    pub fn swanctl_conf(&self) -> String {
        let mut s = self.connections(&["auth = psk"], &["auth = psk"], "");
        let _ = writeln!(s, "secrets {{");
        let _ = writeln!(s, "  ike-{} {{", self.conn);
        let _ = writeln!(s, "    id-local = {}", self.local_id);
        let _ = writeln!(s, "    id-remote = {}", self.remote_id);
        let _ = writeln!(s, "    secret = {}", quote(&self.psk));
        let _ = writeln!(s, "  }}");
        let _ = writeln!(s, "}}");
        s
    }
}

/// A strongswan.conf/swanctl.conf quoted string.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A running charon with its configuration loaded.
#[derive(Debug)]
pub struct Charon {
    process: Process,
    dir: PathBuf,
    uri: String,
    config: CharonConfig,
}

impl Charon {
    /// Writes the configuration into `dir`, starts charon inside `ns`, waits for its vici socket
    /// and loads the connection and secret (`swanctl --load-all`).
    #[track_caller]
    pub fn start(ns: &Netns, dir: &Path, config: CharonConfig) -> Charon {
        let swanctl = config.swanctl_conf();
        Charon::start_with(ns, dir, config, &swanctl)
    }

    /// [`Charon::start`] with a `swanctl.conf` of the caller's (a remote-access connection,
    /// EAP secrets); `config` still gives strongswan.conf and the connection/child names.
    #[track_caller]
    pub fn start_with(ns: &Netns, dir: &Path, config: CharonConfig, swanctl_conf: &str) -> Charon {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let conf = dir.join("strongswan.conf");
        write(&conf, &config.strongswan_conf(dir));
        // swanctl looks for credential sub-directories next to swanctl.conf; create them so it
        // does not complain about each missing one.
        let swanctl_dir = dir.join("swanctl");
        for sub in [
            "x509", "x509ca", "x509ocsp", "x509aa", "x509ac", "x509crl", "pubkey", "private",
            "rsa", "ecdsa", "bliss", "pkcs8", "pkcs12",
        ] {
            let p = swanctl_dir.join(sub);
            std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
        }
        write(&swanctl_dir.join("swanctl.conf"), swanctl_conf);

        let conf_str = conf.to_string_lossy().into_owned();
        let mut process = ns.spawn_env(
            dir,
            "charon-stdout",
            &[
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                &format!("mount -t tmpfs tmpfs /run && exec {CHARON}"),
            ],
            &[("STRONGSWAN_CONF", &conf_str)],
        );
        let uri = format!("unix://{}/charon.vici", dir.display());
        let charon = {
            let socket = dir.join("charon.vici");
            wait_until(Duration::from_secs(20), "charon's vici socket", || {
                assert!(process.is_running(), "charon exited: {}", process.log());
                socket.exists()
            });
            Charon {
                process,
                dir: dir.to_path_buf(),
                uri,
                config,
            }
        };
        let swanctl_conf = swanctl_dir.join("swanctl.conf");
        let file = swanctl_conf.to_string_lossy().into_owned();
        // The socket file appears slightly before charon accepts on it: retry the load briefly.
        let mut last = None;
        let loaded = try_wait_until(
            Duration::from_secs(10),
            "swanctl --load-all",
            || match charon.swanctl(&["--load-all", "--file", &file]) {
                Ok(_) => true,
                Err(e) => {
                    last = Some(e);
                    false
                }
            },
        );
        if let Err(e) = loaded {
            panic!("{e}: {last:?}");
        }
        charon
    }

    pub fn config(&self) -> &CharonConfig {
        &self.config
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `swanctl <args> --uri <this charon>`.
    pub fn swanctl(&self, args: &[&str]) -> Result<String, CommandError> {
        let mut all = args.to_vec();
        all.extend(["--uri", &self.uri]);
        run("swanctl", &all)
    }

    /// `swanctl --initiate --child <child>`: returns when the CHILD SA is up (or failed).
    pub fn initiate(&self) -> Result<String, CommandError> {
        self.swanctl(&[
            "--initiate",
            "--child",
            &self.config.child,
            "--timeout",
            "30",
        ])
    }

    /// `swanctl --rekey --child <child>` (asynchronous: poll [`Charon::child_sa`] for new SPIs).
    pub fn rekey_child(&self) -> Result<String, CommandError> {
        self.swanctl(&["--rekey", "--child", &self.config.child])
    }

    /// `swanctl --rekey --ike <conn>`.
    pub fn rekey_ike(&self) -> Result<String, CommandError> {
        self.swanctl(&["--rekey", "--ike", &self.config.conn])
    }

    /// The SAs, from `swanctl --list-sas --raw`.
    #[track_caller]
    pub fn list_sas(&self) -> Vec<IkeSa> {
        let out = self
            .swanctl(&["--list-sas", "--raw"])
            .unwrap_or_else(|e| panic!("{e}"));
        parse_list_sas(&out).unwrap_or_else(|e| panic!("parse swanctl output: {e}\n{out}"))
    }

    /// The established IKE SA of the connection, if any.
    pub fn ike_sa(&self) -> Option<IkeSa> {
        self.list_sas()
            .into_iter()
            .find(|sa| sa.name == self.config.conn && sa.state == "ESTABLISHED")
    }

    /// The installed CHILD SA of the connection with the newest unique id, if any.
    pub fn child_sa(&self) -> Option<ChildSa> {
        self.list_sas()
            .into_iter()
            .filter(|sa| sa.name == self.config.conn)
            .flat_map(|sa| sa.children)
            .filter(|c| c.name == self.config.child && c.state == "INSTALLED")
            .max_by_key(|c| c.uniqueid.parse::<u64>().unwrap_or(0))
    }

    /// Waits for an installed CHILD SA and returns it.
    #[track_caller]
    pub fn wait_child(&self, timeout: Duration) -> ChildSa {
        let mut found = None;
        wait_until(timeout, "an installed CHILD SA in strongSwan", || {
            found = self.child_sa();
            found.is_some()
        });
        found.unwrap_or_else(|| unreachable!("wait_until returned"))
    }

    /// The daemon's log file (`charon.log` in its directory).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.dir.join("charon.log")).unwrap_or_default())
            .into_owned()
    }

    /// The charon process (to kill it, or check that it still runs).
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}

impl Drop for Charon {
    fn drop(&mut self) {
        // A clean stop removes its routes and TUN device; the namespace goes away anyway.
        self.process.stop(libc::SIGTERM, Duration::from_secs(3));
    }
}

#[track_caller]
fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
