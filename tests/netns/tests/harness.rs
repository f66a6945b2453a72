//! Self-test of the harness: namespaces, veth links, processes and their cleanup, also when a
//! test panics.

use std::net::IpAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Duration;

use rampart_netns_tests::{
    netns::run, ping, require_tools, skip_unless_root, tcp_transfer, veth, wait_until, Netns,
    TestDir, TransferSpec,
};

fn namespace_exists(name: &str) -> bool {
    run("ip", &["netns", "list"])
        .unwrap()
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn namespaces_links_and_processes_are_cleaned_up() {
    if skip_unless_root("namespaces_links_and_processes_are_cleaned_up") {
        return;
    }
    require_tools(&["ip", "ping", "sleep"]);
    let dir = TestDir::new("harness-cleanup");
    let (a_name, b_name, pid, orphan);
    {
        let a = Netns::new("a");
        let b = Netns::new("b");
        assert!(a.name().starts_with(&format!("rp-{}-", std::process::id())));
        assert!(a.name().ends_with("-a"));
        assert_ne!(a.name(), b.name());
        veth(
            &a,
            "v0",
            &["198.51.100.1/24"],
            &b,
            "v0",
            &["198.51.100.2/24"],
        );
        ping(&a, "198.51.100.2", 2).unwrap();
        ping(&b, "198.51.100.1", 2).unwrap();
        // Loopback is up in every namespace.
        ping(&a, "127.0.0.1", 1).unwrap();

        let mut sleeper = a.spawn(dir.path(), "sleeper", &["sleep", "600"]);
        assert!(sleeper.is_running());
        pid = sleeper.pid();
        // `ip netns exec` enters the namespace just after the fork.
        wait_until(
            Duration::from_secs(5),
            "the sleeper inside the namespace",
            || a.pids() == vec![pid],
        );
        // A process the harness did not spawn itself (started by `sh`, detached) must also die.
        a.exec(&["sh", "-c", "sleep 600 >/dev/null 2>&1 &"]);
        let mut pids = a.pids();
        pids.retain(|p| *p != pid);
        assert_eq!(pids.len(), 1, "the detached sleep runs in the namespace");
        orphan = pids[0];
        a_name = a.name().to_string();
        b_name = b.name().to_string();
        assert!(namespace_exists(&a_name) && namespace_exists(&b_name));
    }
    assert!(!namespace_exists(&a_name), "{a_name} still listed");
    assert!(!namespace_exists(&b_name), "{b_name} still listed");
    wait_until(
        Duration::from_secs(5),
        "processes of the namespace to be gone",
        || !process_exists(pid) && !process_exists(orphan),
    );
}

#[test]
fn cleanup_also_happens_when_a_test_panics() {
    if skip_unless_root("cleanup_also_happens_when_a_test_panics") {
        return;
    }
    let dir = TestDir::new("harness-panic");
    let mut seen = None;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let ns = Netns::new("doomed");
        let p = ns.spawn(dir.path(), "sleeper", &["sleep", "600"]);
        seen = Some((ns.name().to_string(), p.pid()));
        panic!("deliberate panic inside a test");
    }));
    assert!(result.is_err());
    let (name, pid) = seen.expect("the closure ran");
    assert!(!namespace_exists(&name), "{name} survived the panic");
    wait_until(Duration::from_secs(5), "the sleeper to be gone", || {
        !process_exists(pid)
    });
}

#[test]
fn exec_errors_carry_the_output() {
    if skip_unless_root("exec_errors_carry_the_output") {
        return;
    }
    let ns = Netns::new("exec");
    assert_eq!(ns.exec(&["echo", "hello"]).trim(), "hello");
    let err = ns
        .try_exec(&["sh", "-c", "echo to-stderr >&2; exit 3"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("to-stderr"), "{err}");
    ns.sysctl("net.ipv4.ip_forward", "1");
    assert_eq!(
        ns.exec(&["cat", "/proc/sys/net/ipv4/ip_forward"]).trim(),
        "1"
    );
    // A separate namespace has its own forwarding setting.
    let other = Netns::new("exec2");
    assert_eq!(
        other.exec(&["cat", "/proc/sys/net/ipv4/ip_forward"]).trim(),
        "0"
    );
}

#[test]
fn tcp_transfer_checks_every_byte() {
    if skip_unless_root("tcp_transfer_checks_every_byte") {
        return;
    }
    let a = Netns::new("tx");
    let b = Netns::new("rx");
    veth(
        &a,
        "v0",
        &["198.51.100.1/24"],
        &b,
        "v0",
        &["198.51.100.2/24"],
    );
    let to: IpAddr = "198.51.100.2".parse().unwrap();
    let report = tcp_transfer(&a, &b, to, &TransferSpec::megabytes(8)).unwrap();
    assert!(report.intact(), "{report:?}");
    assert_eq!(report.received, 8 * 1024 * 1024);

    // Nobody listens on the far side of a link that is down: the transfer fails in time.
    b.ip("link set v0 down");
    let mut spec = TransferSpec::megabytes(1);
    spec.timeout = Duration::from_secs(2);
    assert!(tcp_transfer(&a, &b, to, &spec).is_err());
}

/// The transit checker is not vacuous: plain routing between the sites puts cleartext ICMP and
/// TCP on the transit link, and the checker reports it.
#[test]
fn transit_checker_flags_cleartext_routing() {
    use rampart_netns_tests::topology::{GW1_WAN, GW2_WAN, H2};
    use rampart_netns_tests::{check_only_ike_esp, SiteToSite};
    if skip_unless_root("transit_checker_flags_cleartext_routing") {
        return;
    }
    require_tools(&["ip", "ping", "tcpdump"]);
    let topo = SiteToSite::new("harness-clear");
    topo.gw1.route(&format!("10.2.0.0/24 via {GW2_WAN}"));
    topo.gw2.route(&format!("10.1.0.0/24 via {GW1_WAN}"));
    let capture = topo.capture_transit("transit");
    ping(&topo.h1, &H2.to_string(), 2).unwrap();
    let report = tcp_transfer(
        &topo.h1,
        &topo.h2,
        IpAddr::V4(H2),
        &TransferSpec::megabytes(1),
    )
    .unwrap();
    assert!(report.intact());
    let pcap = capture.stop();
    let err = check_only_ike_esp(&pcap, SiteToSite::gateways(), 4500).unwrap_err();
    assert!(err.contains("ICMP 10.1.0.10 -> 10.2.0.10"), "{err}");
    assert!(err.contains("TCP 10.1.0.10 -> 10.2.0.10"), "{err}");
}
