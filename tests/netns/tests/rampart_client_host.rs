//! What `rampart client` does to its host, with real processes in the remote-access topology
//! of [`RaTopology`] (client behind a masquerading router, gateway, inner host):
//! 1. split DNS in the resolv.conf fallback: the VPN's server and search domain while up, the
//!    original bytes after `down` (the client runs in its namespace with a private
//!    `/etc/netns/<ns>/resolv.conf` bind-mounted over `/etc/resolv.conf`, so it never touches the
//!    host's file);
//! 2. the kill switch: outside traffic rejected while the tunnel and the gateway work, the
//!    captive-portal exception (the portal is reachable until the probe passes, the kill switch
//!    comes after), the table gone after `down`;
//! 3. the PAC file, served on localhost and evaluated: the VPN domain and subnet DIRECT, the rest
//!    to the proxy; gone after `down`;
//! 4. `kill -9`: the TUN device and every route into it vanish with the process (a full tunnel
//!    does not black-hole the outside), the kill switch, resolv.conf and the gateway host route
//!    stay until the next `down` or `up` undoes them from the state file;
//! 5. NAT rebinding mid-transfer: the NAT forgets the client and maps it to another port; the
//!    transfer completes and the gateway lists the new mapping;
//! 6. sequential clients over UDP, TCP and TLS: no lease, IKE SA, CHILD SA or stream left
//!    (120; 2000 with `RAMPART_HEAVY=1`);
//! 7. a TCP connection that never sends a frame is closed by the gateway after
//!    `stream_setup_timeout` (5 s here; 30 s by default).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rampart_netns_tests::netns::run;
use rampart_netns_tests::pki::Pki;
use rampart_netns_tests::ra_client::{transport, virtual_ip, ProfileToml, RampartClient};
use rampart_netns_tests::ra_gateway::{
    gateway_toml, issue_gateway_cert, pool_counters, ra_clients, write_users_file, ClientAuthToml,
    RemoteAccessToml,
};
use rampart_netns_tests::ra_topology::{
    RaTopology, DNS, DNS_DOMAIN, GW_WAN, INNER, ROUTER_IN, ROUTER_OUT,
};
use rampart_netns_tests::rampart::Gateway;
use rampart_netns_tests::traffic::RunningTransfer;
use rampart_netns_tests::{
    ping, require_tools, skip_unless_root, try_wait_until, wait_until, Netns, Process, TransferSpec,
};
use serde_json::Value;

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery staple";
/// What the client namespace's resolv.conf holds before the client runs.
const ORIGINAL_RESOLV: &str =
    "# the test's own resolv.conf\nnameserver 192.0.2.53\nsearch home.example\noptions edns0\n";
/// The nftables table of the kill switch (crates/rampart/src/client/killswitch.rs).
const KILL_SWITCH_TABLE: &str = "rampart_client";
const DEVICE: &str = "rampart-c0";

/// `/etc/netns/<ns>/resolv.conf`: `ip netns exec` bind-mounts it over `/etc/resolv.conf` for
/// every command it runs in that namespace. Removed (with its directory) on drop.
struct NetnsResolvConf {
    dir: PathBuf,
    /// `/etc/netns` did not exist before: it goes again (when empty).
    created_parent: bool,
}

impl NetnsResolvConf {
    #[track_caller]
    fn create(ns: &Netns, text: &str) -> NetnsResolvConf {
        let dir = Path::new("/etc/netns").join(ns.name());
        let created_parent = !Path::new("/etc/netns").exists();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let guard = NetnsResolvConf {
            dir,
            created_parent,
        };
        std::fs::write(guard.file(), text).unwrap_or_else(|e| panic!("write resolv.conf: {e}"));
        guard
    }

    fn file(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }
}

impl Drop for NetnsResolvConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if self.created_parent {
            let _ = std::fs::remove_dir("/etc/netns");
        }
    }
}

/// `/etc/resolv.conf` as a process in `ns` sees it.
fn resolv_in(ns: &Netns) -> String {
    ns.exec(&["cat", "/etc/resolv.conf"])
}

/// A `rampart client up --foreground` process with a profile written by the test.
struct HostClient {
    process: Process,
    profile: PathBuf,
    ns: String,
}

impl HostClient {
    #[track_caller]
    fn start(ns: &Netns, dir: &Path, label: &str, profile: &str) -> HostClient {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let path = dir.join("corp.toml");
        std::fs::write(&path, profile).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        let bin = rampart_netns_tests::rampart::binary()
            .to_string_lossy()
            .into_owned();
        let p = path.to_string_lossy().into_owned();
        let process = ns.spawn_env(
            dir,
            label,
            &[&bin, "client", "up", "--profile", &p, "--foreground"],
            &[("RAMPART_LOG", "debug"), ("RUST_BACKTRACE", "1")],
        );
        HostClient {
            process,
            profile: path,
            ns: ns.name().to_string(),
        }
    }

    fn cli(&self, args: &[&str]) -> Result<String, String> {
        let bin = rampart_netns_tests::rampart::binary()
            .to_string_lossy()
            .into_owned();
        let p = self.profile.to_string_lossy().into_owned();
        let mut all = vec!["netns", "exec", &self.ns, &bin, "client"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--profile", &p]);
        run("ip", &all).map_err(|e| e.to_string())
    }

    fn status(&self) -> Result<Value, String> {
        let out = self.cli(&["status", "--json"])?;
        serde_json::from_str(&out).map_err(|e| format!("status is not JSON ({e}): {out}"))
    }

    /// Waits for `state` in the status; returns the document.
    #[track_caller]
    fn wait_state(&mut self, state: &str, timeout: Duration) -> Value {
        let mut last = Err(String::from("no status yet"));
        let waited = try_wait_until(timeout, &format!("client {state}"), || {
            assert!(
                self.process.is_running(),
                "rampart client exited:\n{}",
                self.process.log()
            );
            last = self.status();
            last.as_ref()
                .is_ok_and(|s| s["state"].as_str() == Some(state))
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

    /// `rampart client down --profile FILE`; the foreground process must exit cleanly.
    #[track_caller]
    fn down(&mut self) -> String {
        let out = self
            .cli(&["down"])
            .unwrap_or_else(|e| panic!("client down: {e}\n{}", self.process.log()));
        let status = self.process.stop(libc::SIGTERM, Duration::from_secs(10));
        assert!(
            status.is_some_and(|s| s.success()),
            "client exit {status:?}\n{}",
            self.process.log()
        );
        out
    }

    fn log(&self) -> String {
        self.process.log()
    }
}

/// The profile of [`ProfileToml::eap`] with `dns` and `captive_portal` set and `extra` lines.
fn profile_text(
    pki: &Pki,
    state_dir: &Path,
    dns: &str,
    captive_portal: &str,
    extra: &str,
) -> String {
    let mut p = ProfileToml::eap(pki, state_dir, USER, PASSWORD);
    p.extra = extra.to_string();
    let text = p.to_toml();
    let dns_line = "dns = \"off\"\n";
    let portal_line = "captive_portal = \"off\"\n";
    assert!(text.contains(dns_line) && text.contains(portal_line));
    text.replace(dns_line, &format!("dns = \"{dns}\"\n"))
        .replace(
            portal_line,
            &format!("captive_portal = \"{captive_portal}\"\n"),
        )
}

fn start_gateway(topo: &RaTopology, ra: &RemoteAccessToml) -> Gateway {
    let dir = topo.daemon_dir("gw");
    let mut gw = Gateway::start(&topo.gw, &dir, "gw", &gateway_toml(&dir, ra));
    wait_until(Duration::from_secs(20), "gateway status socket", || {
        assert!(gw.is_running(), "gateway exited:\n{}", gw.log());
        gw.status_from_socket().is_ok()
    });
    gw
}

/// PKI, users file and the remote-access section of an EAP gateway (split tunnel).
fn eap_setup(topo: &RaTopology) -> (Pki, RemoteAccessToml) {
    let pki = Pki::init(&topo.daemon_dir("pki"), "ecdsa-p256");
    issue_gateway_cert(&pki);
    let users = topo.dir.file("users.toml");
    write_users_file(&users, &[(USER, PASSWORD)]);
    let ra = RemoteAccessToml::new(&pki, ClientAuthToml::Eap(users));
    (pki, ra)
}

/// Routes of every table of the namespace.
fn routes(ns: &Netns) -> BTreeSet<String> {
    ns.exec(&["ip", "-4", "route", "show", "table", "all"])
        .lines()
        .map(|l| l.trim().to_string())
        .collect()
}

fn nft_tables(ns: &Netns) -> String {
    ns.exec(&["nft", "list", "tables"])
}

fn has_kill_switch(ns: &Netns) -> bool {
    nft_tables(ns).contains(&format!("table inet {KILL_SWITCH_TABLE}"))
}

fn device_exists(ns: &Netns, dev: &str) -> bool {
    ns.try_ip(&format!("link show {dev}")).is_ok()
}

/// One ICMP echo with a 1 s wait: whether it was answered.
fn ping_once(ns: &Netns, to: &str) -> bool {
    ns.try_exec(&["ping", "-n", "-q", "-c", "1", "-W", "1", to])
        .is_ok()
}

/// Case 1: Split DNS, resolv.conf fallback.
#[test]
fn resolv_conf_fallback_is_set_and_restored() {
    if skip_unless_root("resolv_conf_fallback_is_set_and_restored") {
        return;
    }
    require_tools(&["nft", "conntrack"]);
    let topo = RaTopology::new("ch-dns");
    let etc = NetnsResolvConf::create(&topo.client, ORIGINAL_RESOLV);
    let host_before = std::fs::read("/etc/resolv.conf").ok();
    assert_eq!(
        resolv_in(&topo.client),
        ORIGINAL_RESOLV,
        "bind mount in place"
    );
    let (pki, ra) = eap_setup(&topo);
    let _gw = start_gateway(&topo, &ra);
    let dir = topo.daemon_dir("client");
    let text = profile_text(&pki, &dir.join("state"), "resolv-conf", "off", "");
    let mut client = HostClient::start(&topo.client, &dir, "client", &text);
    let status = client.wait_state("connected", Duration::from_secs(20));
    assert_eq!(status["dns"]["backend"], "resolv-conf", "{status}");
    let up = resolv_in(&topo.client);
    let lines: Vec<&str> = up.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines,
        [
            format!("nameserver {DNS}").as_str(),
            format!("search {DNS_DOMAIN}").as_str()
        ],
        "resolv.conf while up:\n{up}"
    );
    // The namespace's file was written in place (the bind mount stays), nothing else in /etc.
    assert_eq!(std::fs::read_to_string(etc.file()).unwrap(), up);
    assert_eq!(
        std::fs::read("/etc/resolv.conf").ok(),
        host_before,
        "host file untouched"
    );
    assert!(!Path::new("/etc/resolv.rampart-tmp").exists());
    ping(&topo.client, &INNER.to_string(), 1).unwrap_or_else(|e| panic!("{e}"));
    let said = client.down();
    assert!(said.contains("host restored"), "{said}");
    assert_eq!(
        resolv_in(&topo.client),
        ORIGINAL_RESOLV,
        "original bytes back"
    );
    assert_eq!(
        std::fs::read("/etc/resolv.conf").ok(),
        host_before,
        "host file untouched"
    );
    assert!(
        !dir.join("state").join("corp.state").exists(),
        "journal removed"
    );
    assert!(
        !dir.join("state").join("corp.resolv.conf").exists(),
        "backup removed"
    );
}

/// A tiny captive portal on the router's inside address, port 80: `/login` is its page; any
/// other path redirects there until the flag file exists (the user logged in), then answers
/// `204` like an open network.
struct Portal {
    _process: Process,
    flag: PathBuf,
}

const PORTAL_PAGE: &str = "portal login page";

impl Portal {
    fn start(router: &Netns, dir: &Path) -> Portal {
        std::fs::create_dir_all(dir).unwrap();
        let flag = dir.join("logged-in");
        let script = dir.join("portal.sh");
        let body = format!(
            "#!/bin/sh\n\
             read -r method path rest\n\
             while read -r line; do\n\
             \x20 [ \"$(printf '%s' \"$line\" | tr -d '\\r')\" = \"\" ] && break\n\
             done\n\
             if [ \"$path\" = /login ]; then\n\
             \x20 printf 'HTTP/1.1 200 OK\\r\\nContent-Length: {len}\\r\\nConnection: close\\r\\n\\r\\n{PORTAL_PAGE}'\n\
             elif [ -e {flag} ]; then\n\
             \x20 printf 'HTTP/1.1 204 No Content\\r\\nContent-Length: 0\\r\\nConnection: close\\r\\n\\r\\n'\n\
             else\n\
             \x20 printf 'HTTP/1.1 302 Found\\r\\nLocation: http://{ROUTER_IN}/login\\r\\nContent-Length: 0\\r\\nConnection: close\\r\\n\\r\\n'\n\
             fi\n",
            len = PORTAL_PAGE.len(),
            flag = flag.display(),
        );
        std::fs::write(&script, body).unwrap();
        let process = router.spawn(
            dir,
            "portal",
            &[
                "socat",
                &format!("TCP-LISTEN:80,bind={ROUTER_IN},fork,reuseaddr"),
                &format!("SYSTEM:sh {}", script.display()),
            ],
        );
        wait_until(Duration::from_secs(5), "portal listening", || {
            rampart_netns_tests::ra_services::listening(router, 80)
        });
        Portal {
            _process: process,
            flag,
        }
    }

    fn log_in(&self) {
        std::fs::write(&self.flag, b"yes").unwrap();
    }
}

fn curl(ns: &Netns, url: &str) -> Result<String, String> {
    ns.try_exec(&["curl", "--silent", "--show-error", "--max-time", "3", url])
        .map_err(|e| e.to_string())
}

/// Case 2: Kill switch with the captive-portal exception.
#[test]
fn kill_switch_blocks_outside_and_lets_the_portal_login_through() {
    if skip_unless_root("kill_switch_blocks_outside_and_lets_the_portal_login_through") {
        return;
    }
    require_tools(&["nft", "conntrack", "socat", "curl"]);
    let topo = RaTopology::new("ch-kill");
    let (pki, ra) = eap_setup(&topo);
    let _gw = start_gateway(&topo, &ra);
    let portal = Portal::start(&topo.router, &topo.daemon_dir("portal"));
    let outside = ROUTER_OUT.to_string();
    assert!(
        ping_once(&topo.client, &outside),
        "outside reachable before"
    );
    let before = routes(&topo.client);
    let dir = topo.daemon_dir("client");
    let probe = format!("http://{ROUTER_IN}/generate_204");
    let text = profile_text(
        &pki,
        &dir.join("state"),
        "off",
        &probe,
        "kill_switch = true",
    );
    let mut client = HostClient::start(&topo.client, &dir, "client", &text);
    // The portal intercepts: the client waits, and the kill switch is not on yet, so the
    // user's browser reaches the login page.
    let status = client.wait_state("captive-portal", Duration::from_secs(15));
    assert!(
        status["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("http://{ROUTER_IN}/login"))),
        "{status}"
    );
    assert!(
        !has_kill_switch(&topo.client),
        "{}",
        nft_tables(&topo.client)
    );
    assert_eq!(
        curl(&topo.client, &format!("http://{ROUTER_IN}/login")).as_deref(),
        Ok(PORTAL_PAGE)
    );
    portal.log_in();
    let status = client.wait_state("connected", Duration::from_secs(20));
    assert_eq!(status["kill_switch"], true, "{status}");
    assert!(has_kill_switch(&topo.client));
    // Through the tunnel and to the gateway: yes. Anything else outside: rejected.
    ping(&topo.client, &INNER.to_string(), 2).unwrap_or_else(|e| panic!("{e}"));
    assert!(ping_once(&topo.client, &GW_WAN.to_string()), "gateway");
    assert!(
        !ping_once(&topo.client, &outside),
        "outside must be dropped"
    );
    let leak = curl(&topo.client, &format!("http://{ROUTER_IN}/login"));
    assert!(
        leak.is_err(),
        "the portal is outside too once connected: {leak:?}"
    );
    let rules = topo
        .client
        .exec(&["nft", "list", "table", "inet", KILL_SWITCH_TABLE]);
    assert!(
        rules.contains(&format!("ip daddr {GW_WAN} accept")),
        "{rules}"
    );
    client.down();
    assert!(
        !has_kill_switch(&topo.client),
        "{}",
        nft_tables(&topo.client)
    );
    assert!(
        ping_once(&topo.client, &outside),
        "outside reachable after down"
    );
    assert_eq!(routes(&topo.client), before);
}

/// Case 3: PAC file and its HTTP server.
#[test]
fn pac_file_served_on_localhost_and_removed() {
    use rampart_connect::pac::{Pac, PacEnv};
    if skip_unless_root("pac_file_served_on_localhost_and_removed") {
        return;
    }
    require_tools(&["nft", "conntrack", "curl"]);
    let topo = RaTopology::new("ch-pac");
    let (pki, ra) = eap_setup(&topo);
    let _gw = start_gateway(&topo, &ra);
    let dir = topo.daemon_dir("client");
    let pac_path = dir.join("corp.pac");
    let proxy = format!("{ROUTER_IN}:3128");
    let mut text = profile_text(
        &pki,
        &dir.join("state"),
        "off",
        "off",
        &format!(
            "pac_file = \"{}\"\npac_listen = \"127.0.0.1:8099\"",
            pac_path.display()
        ),
    );
    // Direct tunnels only (UDP wins at once); the proxy is what the PAC file names.
    text = text.replace(
        "proxy = \"none\"\n",
        &format!("proxy = \"http://{proxy}\"\n"),
    );
    let mut client = HostClient::start(&topo.client, &dir, "client", &text);
    client.wait_state("connected", Duration::from_secs(20));
    let served = curl(&topo.client, "http://127.0.0.1:8099/proxy.pac")
        .unwrap_or_else(|e| panic!("PAC over HTTP: {e}\n{}", client.log()));
    let file = std::fs::read_to_string(&pac_path).expect("PAC file written");
    assert_eq!(served, file, "the server serves the file's text");
    let head = topo.client.exec(&[
        "curl",
        "--silent",
        "--max-time",
        "3",
        "--head",
        "http://127.0.0.1:8099/",
    ]);
    assert!(head.contains("application/x-ns-proxy-autoconfig"), "{head}");
    let pac = Pac::parse(&served).unwrap_or_else(|e| panic!("{e:?}\n{served}"));
    let resolve = |_: &str| None;
    let env = PacEnv {
        my_ip: "10.99.0.2".parse().unwrap(),
        resolve: &resolve,
    };
    let find = |url: &str, host: &str| pac.find_proxy_raw(&env, url, host).unwrap();
    assert_eq!(
        find("http://wiki.corp.example/", "wiki.corp.example"),
        "DIRECT"
    );
    assert_eq!(find("https://corp.example/", "corp.example"), "DIRECT");
    assert_eq!(
        find(&format!("http://{INNER}/"), &INNER.to_string()),
        "DIRECT"
    );
    assert_eq!(find("http://intranet/", "intranet"), "DIRECT");
    let elsewhere = format!("PROXY {proxy}; DIRECT");
    assert_eq!(find("https://example.com/", "example.com"), elsewhere);
    assert_eq!(
        find("http://notcorp.example/", "notcorp.example"),
        elsewhere
    );
    assert_eq!(find("http://192.0.2.7/", "192.0.2.7"), elsewhere);
    client.down();
    assert!(!pac_path.exists(), "PAC file removed after down");
    assert!(
        curl(&topo.client, "http://127.0.0.1:8099/proxy.pac").is_err(),
        "PAC server gone"
    );
}

/// Case 4: `kill -9` with DNS and kill switch on, then the next `down`; then again without
/// the kill switch on a full tunnel, where the outside must work right after the kill, and
/// the next `up` cleans up.
#[test]
fn kill_9_leaves_no_black_hole_and_the_next_run_cleans_up() {
    if skip_unless_root("kill_9_leaves_no_black_hole_and_the_next_run_cleans_up") {
        return;
    }
    require_tools(&["nft", "conntrack"]);
    let topo = RaTopology::new("ch-kill9");
    let _etc = NetnsResolvConf::create(&topo.client, ORIGINAL_RESOLV);
    let (pki, mut ra) = eap_setup(&topo);
    // Full tunnel: 0.0.0.0/1 and 128.0.0.0/1 into the TUN device.
    ra.routes.clear();
    let _gw = start_gateway(&topo, &ra);
    let outside = ROUTER_OUT.to_string();
    let before = routes(&topo.client);
    let dir = topo.daemon_dir("client");
    let state_dir = dir.join("state");
    let journal = state_dir.join("corp.state");
    let with_ks = profile_text(&pki, &state_dir, "resolv-conf", "off", "kill_switch = true");

    // A: kill switch and DNS on.
    let mut a = HostClient::start(&topo.client, &dir, "client-a", &with_ks);
    let status = a.wait_state("connected", Duration::from_secs(20));
    assert_eq!(status["full_tunnel"], true, "{status}");
    ping(&topo.client, &INNER.to_string(), 1).unwrap_or_else(|e| panic!("{e}"));
    assert!(routes(&topo.client)
        .iter()
        .any(|r| r.starts_with("0.0.0.0/1 dev rampart-c0")));
    a.process.kill9();
    // What is left: no TUN device and no route into it; the host route to the gateway, the
    // kill switch and resolv.conf stay, listed in the journal.
    wait_until(Duration::from_secs(5), "TUN device gone", || {
        !device_exists(&topo.client, DEVICE)
    });
    let left = routes(&topo.client);
    assert!(!left.iter().any(|r| r.contains(DEVICE)), "{left:?}");
    assert!(
        left.iter()
            .any(|r| r.starts_with(&format!("{GW_WAN} via {ROUTER_IN}"))),
        "{left:?}"
    );
    assert!(has_kill_switch(&topo.client));
    assert_ne!(resolv_in(&topo.client), ORIGINAL_RESOLV);
    let text = std::fs::read_to_string(&journal).expect("journal left by the killed client");
    for kind in ["\"nft\"", "\"resolv_conf\"", "\"route\""] {
        assert!(text.contains(kind), "{kind} in {text}");
    }
    // The kill switch fails closed: the outside is rejected (at once, not black-holed) until
    // the cleanup.
    let t = Instant::now();
    assert!(!ping_once(&topo.client, &outside));
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "rejected, not lost"
    );
    let said = a
        .cli(&["down"])
        .unwrap_or_else(|e| panic!("down after kill -9: {e}"));
    assert!(said.contains("restored"), "{said}");
    assert!(!has_kill_switch(&topo.client));
    assert_eq!(resolv_in(&topo.client), ORIGINAL_RESOLV);
    assert_eq!(routes(&topo.client), before);
    assert!(!journal.exists());
    assert!(
        ping_once(&topo.client, &outside),
        "outside after the cleanup"
    );

    // B: no kill switch: right after the kill the outside works (the routes went with the
    // TUN device), before any cleanup; the next `up` cleans up what is left.
    let without = profile_text(&pki, &state_dir, "resolv-conf", "off", "");
    let mut b = HostClient::start(&topo.client, &dir, "client-b", &without);
    b.wait_state("connected", Duration::from_secs(20));
    assert!(
        !ping_once(&topo.client, &outside),
        "full tunnel: the outside goes into it"
    );
    b.process.kill9();
    wait_until(Duration::from_secs(5), "TUN device gone", || {
        !device_exists(&topo.client, DEVICE)
    });
    ping(&topo.client, &outside, 2).unwrap_or_else(|e| panic!("black hole after kill -9: {e}"));
    assert!(journal.exists());
    let mut c = HostClient::start(&topo.client, &dir, "client-c", &without);
    c.wait_state("connected", Duration::from_secs(20));
    assert!(
        c.log()
            .contains("cleaning up after a run that did not stop cleanly"),
        "{}",
        c.log()
    );
    c.down();
    assert_eq!(resolv_in(&topo.client), ORIGINAL_RESOLV);
    assert_eq!(routes(&topo.client), before);
    assert!(!journal.exists());
}

/// The port of an `ip:port` text.
fn port_of(endpoint: &str) -> Option<u16> {
    endpoint
        .parse::<std::net::SocketAddr>()
        .ok()
        .map(|a| a.port())
}

/// The router's masquerade with source ports from `ports` (e.g. `20000-20999`).
fn masquerade_to(topo: &RaTopology, ports: &str) {
    let rules = format!(
        "table ip rampart_ra\ndelete table ip rampart_ra\ntable ip rampart_ra {{\n  chain masq {{\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname \"out0\" meta l4proto udp masquerade to :{ports}\n    oifname \"out0\" masquerade\n  }}\n}}\n"
    );
    let file = topo.dir.file("router-ports.nft");
    std::fs::write(&file, rules).unwrap();
    topo.router.exec(&["nft", "-f", &file.to_string_lossy()]);
}

/// Case 5: NAT rebinding mid-transfer.
#[test]
fn nat_rebinding_mid_transfer() {
    if skip_unless_root("nat_rebinding_mid_transfer") {
        return;
    }
    require_tools(&["nft", "conntrack", "tcpdump", "timeout"]);
    let topo = RaTopology::new("ch-rebind");
    let (pki, ra) = eap_setup(&topo);
    let gw = start_gateway(&topo, &ra);
    let dir = topo.daemon_dir("client");
    let mut p = ProfileToml::eap(&pki, &dir.join("state"), USER, PASSWORD);
    p.transports = vec!["udp".into()];
    p.extra = "keepalive = \"2s\"".into();
    let mut client = RampartClient::start(&topo.client, &dir, &p);
    client.wait_connected(Duration::from_secs(20));
    let remote = |gw: &Gateway| -> Option<String> {
        let s = gw.status_from_socket().ok()?;
        let clients = s["remote_access"]["clients"].as_array()?.clone();
        clients
            .iter()
            .find(|c| c["client"] == USER)
            .and_then(|c| c["remote"].as_str().map(str::to_string))
    };
    let first = remote(&gw).expect("client listed");
    let first_port = port_of(&first).expect("ip:port");
    assert!(first.starts_with(&format!("{ROUTER_OUT}:")), "{first}");
    assert!(!(20000..=20999).contains(&first_port), "{first}");

    let mut spec = TransferSpec::megabytes(24);
    spec.rate = Some(4 * 1024 * 1024);
    spec.timeout = Duration::from_secs(40);
    let transfer = RunningTransfer::start(&topo.client, &topo.inner, IpAddr::V4(INNER), &spec)
        .unwrap_or_else(|e| panic!("{e}"));
    wait_until(Duration::from_secs(10), "a quarter through", || {
        transfer.received() > spec.bytes / 4
    });
    // The NAT forgets the client and maps it from other ports from now on.
    masquerade_to(&topo, "20000-20999");
    topo.router.exec(&["conntrack", "-F"]);
    let rebound_at = Instant::now();
    let report = transfer
        .finish()
        .unwrap_or_else(|e| panic!("{e}\n{}", client.log()));
    assert!(report.intact(), "{report:?}");
    let moved = wait_until(
        Duration::from_secs(6),
        "gateway follows the new port",
        || {
            remote(&gw)
                .and_then(|r| port_of(&r))
                .is_some_and(|port| (20000..=20999).contains(&port))
        },
    );
    let now = remote(&gw).unwrap();
    let status = gw.status_from_socket().unwrap();
    eprintln!(
        "rebinding: {first} -> {now}; transfer {} MB in {:?} ({:.1} Mbit/s), rebound {:?} before the end, listed after {moved:?}; nat {}",
        report.received / 1024 / 1024,
        report.elapsed,
        report.mbps(),
        rebound_at.elapsed(),
        status["nat"]
    );
    // While idle, NAT keepalives (one 0xff byte, RFC 3948) keep the new mapping, every 2 s as
    // configured: at least two in 5 s, all from the new port.
    let capture = topo.gw.exec(&[
        "sh",
        "-c",
        "timeout 5 tcpdump -l -n -i wan0 'udp dst port 4500 and udp[4:2] = 9 and udp[8] = 0xff' 2>/dev/null; true",
    ]);
    let keepalives: Vec<&str> = capture.lines().filter(|l| l.contains(" > ")).collect();
    assert!(keepalives.len() >= 2, "keepalives in 5 s:\n{capture}");
    assert!(
        keepalives
            .iter()
            .all(|l| l.contains(&format!("{} > ", now.replace(':', ".")))),
        "from {now}:\n{capture}"
    );
    // Still working after the move, in both directions.
    ping(&topo.client, &INNER.to_string(), 3).unwrap_or_else(|e| panic!("{e}"));
    ping(
        &topo.inner,
        &virtual_ip(&client.status().unwrap()).unwrap(),
        2,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    client.stop();
}

/// Sums `transports.<t>.<key>` over tcp and tls.
fn streams(status: &Value, key: &str) -> u64 {
    ["tcp", "tls"]
        .iter()
        .map(|t| status["transports"][*t][key].as_u64().unwrap_or(0))
        .sum()
}

/// IKE SAs and CHILD SAs the gateway holds, from `peers[]`.
fn sa_counts(status: &Value) -> (usize, usize) {
    let peers = status["peers"].as_array().cloned().unwrap_or_default();
    let mut ike = 0;
    let mut child = 0;
    for p in &peers {
        if !p["ike_sa"].is_null() {
            ike += 1;
        }
        if let Some(ike_sas) = p["ike_sas"].as_array() {
            ike += ike_sas.len();
        }
        child += p["tunnels"].as_array().map_or(0, Vec::len);
    }
    (ike, child)
}

/// Case 6: Sequential clients over UDP, TCP and TLS: nothing leaks on the gateway.
#[test]
fn sequential_clients_leak_nothing() {
    if skip_unless_root("sequential_clients_leak_nothing") {
        return;
    }
    require_tools(&["nft", "conntrack"]);
    let n: usize = if rampart_netns_tests::heavy() {
        2000
    } else {
        120
    };
    let topo = RaTopology::new("ch-seq");
    let (pki, mut ra) = eap_setup(&topo);
    ra.tcp_port = Some(4500);
    ra.visitor_port = Some(443);
    let gw = start_gateway(&topo, &ra);
    let started = Instant::now();
    let kinds = ["udp", "tcp", "tls"];
    let mut per_kind = [0u32; 3];
    for i in 0..n {
        let k = i % kinds.len();
        let dir = topo.daemon_dir(&format!("c{}", i % 4));
        let mut p = ProfileToml::eap(&pki, &dir.join("state"), USER, PASSWORD);
        p.transports = vec![kinds[k].into()];
        let mut client = RampartClient::start(&topo.client, &dir, &p);
        let status = client.wait_connected(Duration::from_secs(20));
        assert_eq!(
            transport(&status).as_deref(),
            Some(kinds[k]),
            "{i}: {status}"
        );
        ping(&topo.client, &INNER.to_string(), 1)
            .unwrap_or_else(|e| panic!("client {i} over {}: {e}\n{}", kinds[k], client.log()));
        if i < kinds.len() {
            // The gauges the end checks do count a connected client.
            let s = gw.status_from_socket().expect("gateway status");
            assert_eq!(sa_counts(&s), (1, 1), "{i}: {}", s["peers"]);
            assert_eq!(streams(&s, "open"), u64::from(k > 0), "{}", s["transports"]);
            assert_eq!(pool_counters(&s).map(|p| p.0), Some(1));
        }
        let exit = client.stop();
        assert!(
            exit.is_some_and(|s| s.success()),
            "{i}: {exit:?}\n{}",
            client.log()
        );
        per_kind[k] += 1;
    }
    let took = started.elapsed();
    let mut last = Value::Null;
    let settled = try_wait_until(Duration::from_secs(15), "gateway holds nothing", || {
        let Ok(s) = gw.status_from_socket() else {
            return false;
        };
        let pool = pool_counters(&s);
        let ok = pool == Some((0, pool.map_or(0, |p| p.1), n as u64, n as u64))
            && ra_clients(&s).is_empty()
            && sa_counts(&s) == (0, 0)
            && streams(&s, "open") == 0
            && streams(&s, "accepted") == streams(&s, "closed");
        last = s;
        ok
    });
    assert!(
        settled.is_ok(),
        "{settled:?}\npool {:?} clients {:?} SAs {:?} transports {}\n{}",
        pool_counters(&last),
        ra_clients(&last),
        sa_counts(&last),
        last["transports"],
        serde_json::to_string_pretty(&last["peers"]).unwrap_or_default()
    );
    let accepted = streams(&last, "accepted");
    assert!(
        accepted >= u64::from(per_kind[1] + per_kind[2]),
        "every stream client was accepted: {}",
        last["transports"]
    );
    eprintln!(
        "{n} sequential clients ({} udp, {} tcp, {} tls) in {took:?} ({:?} per client); gateway: pool {:?}, transports {}",
        per_kind[0],
        per_kind[1],
        per_kind[2],
        took / n as u32,
        pool_counters(&last),
        last["transports"]
    );
}

/// Case 7: a TCP connection to the gateway's RFC 9329 port that sends the `IKETCP` prefix and
/// then nothing is closed by the gateway after the first-frame timeout (`stream_setup_timeout`,
/// set to 5 s here), counted in `idle_closed`, while a connected client's stream beside it
/// stays.
#[test]
fn silent_stream_is_closed_by_the_gateway() {
    if skip_unless_root("silent_stream_is_closed_by_the_gateway") {
        return;
    }
    require_tools(&["nft", "conntrack", "socat"]);
    let topo = RaTopology::new("ch-silent");
    let (pki, mut ra) = eap_setup(&topo);
    ra.tcp_port = Some(4500);
    ra.extra = "stream_setup_timeout = \"5s\"".into();
    let gw = start_gateway(&topo, &ra);
    let dir = topo.daemon_dir("client");
    let mut p = ProfileToml::eap(&pki, &dir.join("state"), USER, PASSWORD);
    p.transports = vec!["tcp".into()];
    let mut client = RampartClient::start(&topo.client, &dir, &p);
    client.wait_connected(Duration::from_secs(20));
    // The silent one: the prefix, then the connection stays open without a frame.
    let silent_dir = topo.daemon_dir("silent");
    let _silent = topo.client.spawn(
        &silent_dir,
        "silent",
        &[
            "sh",
            "-c",
            &format!("(printf IKETCP; sleep 120) | socat - TCP:{GW_WAN}:4500"),
        ],
    );
    let tcp = |key: &str| -> u64 {
        gw.status_from_socket()
            .ok()
            .and_then(|s| s["transports"]["tcp"][key].as_u64())
            .unwrap_or(u64::MAX)
    };
    wait_until(Duration::from_secs(5), "two streams open", || {
        tcp("open") == 2
    });
    let opened = Instant::now();
    let closed_after = wait_until(Duration::from_secs(15), "the silent stream closed", || {
        tcp("idle_closed") == 1
    });
    assert!(
        opened.elapsed() >= Duration::from_secs(4),
        "closed too early: {:?}",
        opened.elapsed()
    );
    assert_eq!(tcp("open"), 1, "the client's stream stays");
    assert_eq!(tcp("closed"), 1);
    ping(&topo.client, &INNER.to_string(), 1).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        gw.log().contains("idle: no IKE or ESP frame within 5s"),
        "{}",
        gw.log()
    );
    client.stop();
    wait_until(Duration::from_secs(5), "no stream open", || {
        tcp("open") == 0
    });
    eprintln!("silent stream closed {closed_after:?} after the check started");
}
