//! Split DNS. With systemd-resolved: the gateway's DNS servers and its domains as *routing*
//! domains (`~corp.example`) on the TUN link, so only names under those domains go to the
//! tunnel's servers (in a full tunnel also `~.`: every name). Without it: `/etc/resolv.conf`
//! is saved and replaced by the tunnel's servers and search domains (no per-domain routing
//! is possible there, which the guide says), and put back on exit.

use std::net::IpAddr;
use std::path::Path;

/// What the gateway sent for DNS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsSettings {
    pub servers: Vec<IpAddr>,
    pub domains: Vec<String>,
    /// Full tunnel: every name goes to the tunnel's servers.
    pub all_names: bool,
}

/// Whether systemd-resolved runs (its runtime directory exists) *for this network
/// namespace*: resolved serves the links of PID 1's namespace, so a client in another one
/// (`ip netns exec`, a container sharing the host's `/run`) must not hand it the TUN device's
/// index, which names another link (or none) there.
pub fn resolved_available() -> bool {
    let running = Path::new("/run/systemd/resolve/io.systemd.Resolve").exists()
        || Path::new("/run/systemd/resolve/resolv.conf").exists();
    resolved_serves_us(
        running,
        netns_id("/proc/self/ns/net"),
        netns_id("/proc/1/ns/net"),
    )
}

/// The decision of [`resolved_available`]: resolved runs and we share PID 1's network
/// namespace (when either namespace cannot be read, e.g. no `/proc`, it is assumed shared).
pub fn resolved_serves_us(
    running: bool,
    own: Option<(u64, u64)>,
    init: Option<(u64, u64)>,
) -> bool {
    match (own, init) {
        (Some(own), Some(init)) => running && own == init,
        _ => running,
    }
}

/// (device, inode) of a namespace file.
fn netns_id(path: &str) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The two `resolvectl` invocations for `dev`: `dns DEV SERVERS...` and
/// `domain DEV ~d1 ~d2...` (`~.` added for a full tunnel).
pub fn resolvectl_args(dev: &str, settings: &DnsSettings) -> [Vec<String>; 2] {
    let mut dns = vec!["dns".to_owned(), dev.to_owned()];
    dns.extend(settings.servers.iter().map(IpAddr::to_string));
    let mut domain = vec!["domain".to_owned(), dev.to_owned()];
    domain.extend(settings.domains.iter().map(|d| format!("~{d}")));
    if settings.all_names {
        domain.push("~.".to_owned());
    }
    [dns, domain]
}

/// The resolv.conf written while connected.
pub fn resolv_conf(name: &str, settings: &DnsSettings) -> String {
    let mut out = format!(
        "# written by rampart client {name} while connected; the original is restored on exit\n"
    );
    // resolv.conf takes at most three nameservers.
    for server in settings.servers.iter().take(3) {
        out.push_str(&format!("nameserver {server}\n"));
    }
    if !settings.domains.is_empty() {
        out.push_str("search ");
        out.push_str(&settings.domains.join(" "));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(all: bool) -> DnsSettings {
        DnsSettings {
            servers: vec!["10.1.0.53".parse().unwrap(), "fd00::53".parse().unwrap()],
            domains: vec!["corp.example".into(), "lab.example".into()],
            all_names: all,
        }
    }

    #[test]
    fn resolvectl_routing_domains() {
        let [dns, domain] = resolvectl_args("rampart-c0", &settings(false));
        assert_eq!(dns, ["dns", "rampart-c0", "10.1.0.53", "fd00::53"]);
        assert_eq!(
            domain,
            ["domain", "rampart-c0", "~corp.example", "~lab.example"]
        );
        let [_, domain] = resolvectl_args("rampart-c0", &settings(true));
        assert_eq!(domain.last().map(String::as_str), Some("~."));
    }

    #[test]
    fn resolved_only_for_pid_1s_network_namespace() {
        let host = Some((4, 4026531840));
        let other = Some((4, 4026532301));
        assert!(resolved_serves_us(true, host, host));
        assert!(!resolved_serves_us(true, other, host));
        assert!(!resolved_serves_us(false, host, host));
        assert!(resolved_serves_us(true, None, host));
        // This test process runs in some namespace; reading its own works.
        assert!(netns_id("/proc/self/ns/net").is_some());
    }

    #[test]
    fn resolv_conf_text() {
        let mut s = settings(false);
        s.servers
            .extend(["10.1.0.54", "10.1.0.55"].map(|a| a.parse::<IpAddr>().unwrap()));
        assert_eq!(
            resolv_conf("corp", &s),
            "# written by rampart client corp while connected; the original is restored on exit\n\
             nameserver 10.1.0.53\nnameserver fd00::53\nnameserver 10.1.0.54\n\
             search corp.example lab.example\n"
        );
    }
}
