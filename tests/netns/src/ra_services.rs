//! Third-party daemons of the remote-access tests, each with a private configuration in the
//! test directory and started in the foreground (no systemd): squid as an HTTP CONNECT proxy
//! with Basic authentication, and nginx as the HTTPS server that shares port 443 with Visitor
//! Mode.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::netns::{run, Netns, Process};
use crate::wait::wait_until;

/// Debian's squid binary and its Basic-auth helper (htpasswd files).
pub const SQUID: &str = "/usr/sbin/squid";
pub const SQUID_NCSA: &str = "/usr/lib/squid/basic_ncsa_auth";
/// Debian's nginx (nginx-light has the ssl and rewrite modules).
pub const NGINX: &str = "/usr/sbin/nginx";

/// The body nginx serves on `/`: a test checks it byte for byte.
pub const WEB_PAGE: &str = "rampart port-sharing test page\n";

/// True when something listens on TCP `port` inside `ns` (`ss -ltn`).
pub fn listening(ns: &Netns, port: u16) -> bool {
    ns.try_exec(&["ss", "-Hltn"])
        .map(|out| {
            out.lines().any(|l| {
                l.split_whitespace()
                    .nth(3)
                    .is_some_and(|local| local.ends_with(&format!(":{port}")))
            })
        })
        .unwrap_or(false)
}

/// Makes `dir` writable for daemons that drop privileges (squid runs as `proxy`).
fn open_dir(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", dir.display()));
}

#[track_caller]
fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// A running squid.
#[derive(Debug)]
pub struct Squid {
    process: Process,
    pub dir: PathBuf,
    pub listen: String,
    pub port: u16,
}

/// squid.conf: CONNECT to ports 443 and 4500 only, and (with `auth`) only after Basic
/// authentication against `htpasswd`; no cache. Names resolve from `hosts` in the directory
/// only (the namespaces have no DNS server; a DNS query would stall the CONNECT).
pub fn squid_conf(dir: &Path, listen: &str, port: u16, auth: bool) -> String {
    let d = dir.display();
    let mut s = String::new();
    let _ = writeln!(s, "http_port {listen}:{port}");
    let _ = writeln!(s, "pid_filename {d}/squid.pid");
    let _ = writeln!(s, "cache_log {d}/squid-cache.log");
    let _ = writeln!(s, "access_log stdio:{d}/squid-access.log");
    let _ = writeln!(s, "coredump_dir {d}");
    let _ = writeln!(s, "cache deny all");
    let _ = writeln!(s, "cache_mem 8 MB");
    let _ = writeln!(s, "shutdown_lifetime 1 seconds");
    let _ = writeln!(s, "hosts_file {d}/hosts");
    let _ = writeln!(s, "dns_nameservers 127.0.0.1");
    let _ = writeln!(s, "dns_timeout 1 seconds");
    let _ = writeln!(s, "acl tunnel_ports port 443 4500");
    let _ = writeln!(s, "acl CONNECT method CONNECT");
    let _ = writeln!(s, "http_access deny CONNECT !tunnel_ports");
    if auth {
        let _ = writeln!(s, "auth_param basic program {SQUID_NCSA} {d}/htpasswd");
        let _ = writeln!(s, "auth_param basic realm rampart-test-proxy");
        let _ = writeln!(s, "acl authenticated proxy_auth REQUIRED");
        let _ = writeln!(s, "http_access allow authenticated");
    } else {
        let _ = writeln!(s, "http_access allow all");
    }
    let _ = writeln!(s, "http_access deny all");
    s
}

impl Squid {
    /// Starts squid in `ns` on `listen:port`; with `basic_auth = Some((user, password))` every
    /// request needs those Basic credentials (htpasswd line made with `openssl passwd -apr1`).
    /// `hosts` are the `(address, name)` pairs squid resolves.
    #[track_caller]
    pub fn start(
        ns: &Netns,
        dir: &Path,
        listen: &str,
        port: u16,
        basic_auth: Option<(&str, &str)>,
        hosts: &[(&str, &str)],
    ) -> Squid {
        open_dir(dir);
        let mut lines = String::from("127.0.0.1 localhost\n");
        for (addr, name) in hosts {
            lines.push_str(&format!("{addr} {name}\n"));
        }
        write(&dir.join("hosts"), &lines);
        if let Some((user, password)) = basic_auth {
            let hash =
                run("openssl", &["passwd", "-apr1", password]).unwrap_or_else(|e| panic!("{e}"));
            let file = dir.join("htpasswd");
            write(&file, &format!("{user}:{}\n", hash.trim()));
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))
                .unwrap_or_else(|e| panic!("chmod {}: {e}", file.display()));
        }
        let conf = dir.join("squid.conf");
        write(&conf, &squid_conf(dir, listen, port, basic_auth.is_some()));
        let conf_s = conf.to_string_lossy().into_owned();
        let mut process = ns.spawn(dir, "squid", &[SQUID, "-N", "-f", &conf_s]);
        wait_until(Duration::from_secs(20), "squid listening", || {
            assert!(process.is_running(), "squid exited: {}", process.log());
            listening(ns, port)
        });
        Squid {
            process,
            dir: dir.to_path_buf(),
            listen: listen.into(),
            port,
        }
    }

    /// The access log (one line per request, with the status and the CONNECT target).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("squid-access.log")).unwrap_or_default()
    }

    /// `http://listen:port`.
    pub fn url(&self) -> String {
        format!("http://{}:{}", self.listen, self.port)
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        self.process.stop(libc::SIGTERM, Duration::from_secs(2));
    }
}

/// A running nginx serving [`WEB_PAGE`] over HTTPS.
#[derive(Debug)]
pub struct Nginx {
    process: Process,
    pub dir: PathBuf,
}

/// nginx.conf: one TLS server on `listen` (`127.0.0.1:8443`) answering [`WEB_PAGE`].
pub fn nginx_conf(dir: &Path, listen: &str, cert: &Path, key: &Path) -> String {
    let d = dir.display();
    let page = WEB_PAGE.replace('\n', "\\n");
    format!(
        "daemon off;\nmaster_process off;\nuser root;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log info;\nevents {{ worker_connections 64; }}\nhttp {{\n  access_log {d}/nginx-access.log;\n  client_body_temp_path {d}/tmp-body;\n  proxy_temp_path {d}/tmp-proxy;\n  fastcgi_temp_path {d}/tmp-fastcgi;\n  uwsgi_temp_path {d}/tmp-uwsgi;\n  scgi_temp_path {d}/tmp-scgi;\n  server {{\n    listen {listen} ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    location / {{\n      default_type text/plain;\n      return 200 \"{page}\";\n    }}\n  }}\n}}\n",
        cert.display(),
        key.display()
    )
}

impl Nginx {
    /// Starts nginx in `ns` on `listen` (`IP:PORT`) with the PEM `cert` chain and `key`.
    #[track_caller]
    pub fn start(ns: &Netns, dir: &Path, listen: &str, cert: &Path, key: &Path) -> Nginx {
        open_dir(dir);
        let conf = dir.join("nginx.conf");
        write(&conf, &nginx_conf(dir, listen, cert, key));
        let conf_s = conf.to_string_lossy().into_owned();
        let prefix = dir.to_string_lossy().into_owned();
        let port: u16 = listen
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("nginx listen {listen} has no port"));
        let mut process = ns.spawn(dir, "nginx", &[NGINX, "-p", &prefix, "-c", &conf_s]);
        wait_until(Duration::from_secs(20), "nginx listening", || {
            assert!(process.is_running(), "nginx exited: {}", process.log());
            listening(ns, port)
        });
        Nginx {
            process,
            dir: dir.to_path_buf(),
        }
    }

    /// Requests served so far.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("nginx-access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.process.stop(libc::SIGTERM, Duration::from_secs(2));
    }
}

/// `curl` inside `ns`: the body of `url`, trusting only `ca` (and resolving `host` to `addr`
/// when given, so the TLS name check uses `host`).
pub fn curl_https(
    ns: &Netns,
    url: &str,
    ca: &Path,
    resolve: Option<(&str, u16, &str)>,
) -> Result<String, String> {
    let ca = ca.to_string_lossy().into_owned();
    let mut args = vec![
        "curl",
        "--silent",
        "--show-error",
        "--fail",
        "--max-time",
        "10",
        "--cacert",
        &ca,
    ];
    let resolve_arg;
    if let Some((host, port, addr)) = resolve {
        resolve_arg = format!("{host}:{port}:{addr}");
        args.extend(["--resolve", &resolve_arg]);
    }
    args.push(url);
    ns.try_exec(&args).map_err(|e| e.to_string())
}
