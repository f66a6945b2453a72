//! Multiple Entry Points with real processes (issue 12): a satellite gateway in front of a site
//! host, two entry points (m1, m2) in front of one internal network with a server behind an
//! internal router (topology in `mep_topology`).
//!
//! 1. Failover: group `hq` = [m1, m2], first-to-respond (m2 starts after the satellite chose
//!    m1, and first-to-respond keeps its choice while it answers), tunnels kept up. A ping and a new TCP connection every 20 ms run while m1 is
//!    killed with `kill -9`: the gap until new connections (and the ping) flow through m2 is
//!    measured and bounded; `rampart mep status --json` then shows m1 down and m2 chosen, and
//!    m2 stays chosen when m1 comes back (first-to-respond does not flap).
//! 2. IP Pool NAT with `random`: connections from 64 source addresses spread over both entry
//!    points, each translates to its own pool, the server sees both pools and every connection
//!    completes (replies return through the entry point that carried the request); the choice is
//!    stable per source/destination pair.
//! 3. m2 is strongSwan (charon 5.9.8, kernel-libipsec): the satellite probes it with IKEv2
//!    liveness (`probe = "auto"` finds no Rampart responder there), m1 (Rampart) is primary by a
//!    priority list; killing m1 moves new connections to strongSwan; killing charon makes the
//!    satellite see m2 down.
//! 4. RIM: BIRD 2 on each entry point redistributes the RIM table into OSPF; BIRD on the internal
//!    router installs the route to the satellite's domain via the entry point whose tunnel is
//!    up, and follows the tunnel to m2 when m1 is killed.
//!
//! `RAMPART_HEAVY=1` adds ten failovers back and forth (kill -9, restart) in one topology.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::Value;

use rampart_netns_tests::bird::{Bird, BirdConfig, BIRD, BIRDC};
use rampart_netns_tests::mep_topology::{
    current, entry_point, ep_lan, ep_state, in_pool, mep_status, routes, site_source, MepTopology,
    ReturnPath, SatelliteMep, GROUP, HQ_DOMAIN, LAN_IF, RIM_PROTO, RIM_TABLE, ROUTER_LAN, SAT_WAN,
    SERVER, SITE_DOMAIN,
};
use rampart_netns_tests::new_conns::{
    connect_once, first_ok_after, longest_gap, longest_reply_gap, unix_now, Attempt, Connector,
    PingLog, WhoServer,
};
use rampart_netns_tests::rampart::Gateway;
use rampart_netns_tests::strongswan::{Charon, CharonConfig, CHARON};
use rampart_netns_tests::topology::PSK;
use rampart_netns_tests::traffic::spawn_in;
use rampart_netns_tests::{
    heavy, ping, require_tools, skip_unless_root, try_wait_until, wait_until,
};

const PORT: u16 = 7100;
/// New connection attempts: one every 20 ms, each allowed 300 ms.
const CONNECT_EVERY: Duration = Duration::from_millis(20);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// The test's bound on the failover gap; the goal (bench/results/mep.md) is 1.5 s with 1 s
/// probes, the bound leaves room for a loaded CI machine.
const GAP_BOUND: Duration = Duration::from_secs(3);

fn setup(test: &str, tools: &[&str]) -> bool {
    if skip_unless_root(test) {
        return false;
    }
    let mut all = vec!["ip", "ping"];
    all.extend_from_slice(tools);
    require_tools(&all);
    true
}

fn server() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(SERVER), PORT)
}

fn start_entry(topo: &MepTopology, i: u8, ret: ReturnPath) -> Gateway {
    let cfg = topo.entry_config(i, ret);
    let label = format!("m{i}");
    Gateway::start(topo.ep(i), &topo.daemon_dir(&label), &label, &cfg)
}

/// Polls `rampart mep status --json` on the satellite until `pred` holds; returns that status.
#[track_caller]
fn wait_status(
    sat: &mut Gateway,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Err(String::from("never read"));
    let waited = try_wait_until(timeout, what, || {
        assert!(sat.is_running(), "the satellite exited:\n{}", sat.log());
        last = mep_status(sat);
        last.as_ref().is_ok_and(&pred)
    });
    match (waited, last) {
        (Ok(_), Ok(status)) => status,
        (Err(e), last) => panic!("{e}; last mep status: {last:?}"),
        (Ok(_), Err(e)) => unreachable!("{e}"),
    }
}

fn is(status: &Value, ep: &str, state: &str) -> bool {
    ep_state(status, ep).as_deref() == Some(state)
}

fn tunnel_up(status: &Value, ep: &str) -> bool {
    entry_point(status, GROUP, ep).is_some_and(|e| e["tunnel_up"] == true)
}

/// Waits until new connections succeed; all of them so far must satisfy `through`.
#[track_caller]
fn wait_flowing(prober: &Connector, what: &str, through: impl Fn(IpAddr) -> bool) {
    wait_until(Duration::from_secs(15), what, || {
        prober.attempts().iter().filter(|a| a.ok()).count() >= 5
    });
    let wrong: Vec<Attempt> = prober
        .attempts()
        .into_iter()
        .filter(|a| a.seen.as_ref().is_ok_and(|ip| !through(*ip)))
        .collect();
    assert!(wrong.is_empty(), "{what}: went elsewhere: {wrong:?}");
}

/// What one failover looked like to new connections and to the ping.
#[derive(Debug)]
struct Failover {
    /// From the kill to the end of the first new connection through the other entry point.
    first_new: Duration,
    /// Longest interval without a completed new connection after the kill.
    conn_gap: Duration,
    /// Longest interval without a ping reply after the kill.
    ping_gap: Duration,
    attempts: usize,
    failed: usize,
}

/// Kills `victim` with SIGKILL while `prober` and `pinger` run; waits until a new connection
/// went through the other entry point (`through_other`), then stops both and measures.
#[track_caller]
fn kill_and_measure(
    victim: &mut Gateway,
    prober: Connector,
    pinger: PingLog,
    through_other: impl Fn(IpAddr) -> bool + Copy,
) -> Failover {
    let (killed, killed_unix) = (Instant::now(), unix_now());
    victim.kill9();
    wait_until(
        Duration::from_secs(15),
        "a new connection through the other entry point",
        || first_ok_after(&prober.attempts(), killed, through_other).is_some(),
    );
    // A few more after the first, to see that they all take the new path.
    std::thread::sleep(Duration::from_millis(300));
    let attempts = prober.finish();
    let replies = pinger.finish();
    let first = first_ok_after(&attempts, killed, through_other)
        .unwrap_or_else(|| unreachable!("waited for it"));
    let first_new = first.end - killed;
    // Once one went through the other entry point, every later one does too.
    let stray: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.start >= first.end)
        .filter(|a| a.seen.as_ref().is_ok_and(|ip| !through_other(*ip)))
        .collect();
    assert!(
        stray.is_empty(),
        "connections after the failover: {stray:?}"
    );
    Failover {
        first_new,
        conn_gap: longest_gap(&attempts, killed),
        ping_gap: Duration::from_secs_f64(longest_reply_gap(&replies, killed_unix)),
        attempts: attempts.iter().filter(|a| a.start >= killed).count(),
        failed: attempts
            .iter()
            .filter(|a| a.start >= killed && !a.ok())
            .count(),
    }
}

#[track_caller]
fn assert_within_bound(test: &str, f: &Failover) {
    eprintln!("{test}: {f:?}");
    assert!(f.first_new < GAP_BOUND, "{f:?}");
    assert!(f.conn_gap < GAP_BOUND, "{f:?}");
    assert!(f.ping_gap < GAP_BOUND, "{f:?}");
    assert!(f.failed < f.attempts, "no new connection succeeded: {f:?}");
}

fn start_probes(topo: &MepTopology, label: &str) -> (Connector, PingLog) {
    let pinger = PingLog::start(
        &topo.site,
        topo.dir.path(),
        label,
        &SERVER.to_string(),
        Duration::from_millis(20),
    );
    let prober = Connector::start(&topo.site, server(), CONNECT_EVERY, CONNECT_TIMEOUT);
    (prober, pinger)
}

/// Two Rampart entry points with IP Pool NAT and a first-to-respond satellite with tunnels
/// to both kept up; m1 is chosen: it answers first, m2 starts only after the satellite chose m1
/// (the kernel may lack netem to make m2 slower; first-to-respond keeps its choice anyway).
fn first_to_respond_setup(test: &str) -> (MepTopology, Gateway, Gateway, Gateway) {
    let topo = MepTopology::new(test, 0);
    topo.route_pools();
    let m1 = start_entry(&topo, 1, ReturnPath::PoolNat);
    let mut mep = SatelliteMep::new("first-to-respond");
    mep.preconnect = true;
    let cfg = topo.satellite_config(&mep);
    let mut sat = Gateway::start(&topo.sat, &topo.daemon_dir("sat"), "sat", &cfg);
    wait_status(&mut sat, "m1 up and chosen", Duration::from_secs(20), |s| {
        is(s, "m1", "up") && current(s).as_deref() == Some("m1")
    });
    // First-to-respond adopts its choice when a connection is resolved (until then the status
    // shows what would be chosen): one before m2 exists.
    wait_until(Duration::from_secs(10), "a ping through m1", || {
        ping(&topo.site, &SERVER.to_string(), 1).is_ok()
    });
    let m2 = start_entry(&topo, 2, ReturnPath::PoolNat);
    wait_status(
        &mut sat,
        "m1 and m2 up, m1 still chosen, both tunnels up",
        Duration::from_secs(30),
        |s| {
            is(s, "m1", "up")
                && is(s, "m2", "up")
                && current(s).as_deref() == Some("m1")
                && tunnel_up(s, "m1")
                && tunnel_up(s, "m2")
        },
    );
    (topo, sat, m1, m2)
}

#[test]
fn mep_kill9_first_to_respond_moves_new_connections_to_the_other_entry_point() {
    let test = "mep_kill9_first_to_respond";
    if !setup(test, &[]) {
        return;
    }
    let (topo, mut sat, mut m1, _m2) = first_to_respond_setup("mep-fail");
    let _server = WhoServer::start(&topo.server, server());
    ping(&topo.site, &SERVER.to_string(), 2).unwrap();
    let (prober, pinger) = start_probes(&topo, "ping");
    wait_flowing(&prober, "new connections through m1", |ip| in_pool(1, ip));

    let f = kill_and_measure(&mut m1, prober, pinger, |ip| in_pool(2, ip));
    assert_within_bound(test, &f);

    let status = wait_status(
        &mut sat,
        "m1 down, m2 chosen",
        Duration::from_secs(5),
        |s| is(s, "m1", "down") && is(s, "m2", "up") && current(s).as_deref() == Some("m2"),
    );
    let m2 = entry_point(&status, GROUP, "m2")
        .cloned()
        .unwrap_or_default();
    assert!(m2["chosen"].as_u64() > Some(0), "{status}");
    // Tracking: the satellite logged resolutions naming the entry point it chose.
    let log = sat.log();
    assert!(
        log.lines()
            .any(|l| l.contains(GROUP) && l.contains("m2") && l.to_lowercase().contains("resol")),
        "no tracking line for m2 in the satellite's log"
    );

    // m1 comes back: it is up again, but first-to-respond keeps m2 while m2 answers.
    m1.restart(&topo.m1);
    wait_status(&mut sat, "m1 up again", Duration::from_secs(15), |s| {
        is(s, "m1", "up")
    });
    let status = mep_status(&sat).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(current(&status).as_deref(), Some("m2"), "{status}");
    let seen = spawn_in(&topo.site, || {
        connect_once(server(), None, Duration::from_secs(3))
    })
    .join()
    .unwrap()
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(in_pool(2, seen), "{seen}");
}

/// Ten failovers back and forth in one topology: kill -9 the chosen entry point, measure,
/// restart it, wait until it is up again; the next kill hits the other one.
#[test]
fn mep_heavy_repeated_failovers() {
    let test = "mep_heavy_repeated_failovers";
    if !heavy() {
        eprintln!("skipping {test}: set RAMPART_HEAVY=1");
        return;
    }
    if !setup(test, &[]) {
        return;
    }
    let (topo, mut sat, m1, m2) = first_to_respond_setup("mep-heavy");
    let _server = WhoServer::start(&topo.server, server());
    let mut gws = [m1, m2];
    let mut results = Vec::new();
    for round in 0..10 {
        let status = mep_status(&sat).unwrap_or_else(|e| panic!("{e}"));
        let chosen = current(&status).unwrap_or_else(|| panic!("no current: {status}"));
        let (victim, other) = if chosen == "m1" { (1u8, 2u8) } else { (2, 1) };
        let (prober, pinger) = start_probes(&topo, &format!("ping-{round}"));
        wait_flowing(&prober, &format!("round {round}: through {chosen}"), |ip| {
            in_pool(victim, ip)
        });
        let f = kill_and_measure(
            &mut gws[usize::from(victim - 1)],
            prober,
            pinger,
            move |ip| in_pool(other, ip),
        );
        eprintln!("round {round}: killed m{victim}: {f:?}");
        results.push(f);
        gws[usize::from(victim - 1)].restart(topo.ep(victim));
        let name = format!("m{victim}");
        wait_status(
            &mut sat,
            &format!("{name} up again"),
            Duration::from_secs(20),
            |s| is(s, &name, "up") && tunnel_up(s, &name),
        );
    }
    for f in &results {
        assert_within_bound(test, f);
    }
}

#[test]
fn mep_random_with_ip_pool_nat_spreads_and_every_reply_returns() {
    let test = "mep_random_with_ip_pool_nat";
    if !setup(test, &[]) {
        return;
    }
    const SOURCES: u8 = 64;
    let topo = MepTopology::new("mep-pool", SOURCES);
    topo.route_pools();
    let _m1 = start_entry(&topo, 1, ReturnPath::PoolNat);
    let _m2 = start_entry(&topo, 2, ReturnPath::PoolNat);
    // Tunnels on demand: the first connections bring both up.
    let cfg = topo.satellite_config(&SatelliteMep::new("random"));
    let mut sat = Gateway::start(&topo.sat, &topo.daemon_dir("sat"), "sat", &cfg);
    wait_status(&mut sat, "m1 and m2 up", Duration::from_secs(20), |s| {
        is(s, "m1", "up") && is(s, "m2", "up")
    });
    let who = WhoServer::start(&topo.server, server());

    let round = || {
        spawn_in(&topo.site, || {
            Ok((0..SOURCES)
                .map(|n| {
                    let src = IpAddr::V4(site_source(n));
                    // The first connection through an entry point waits for its tunnel (a
                    // lost SYN is sent again after 1 s).
                    (
                        src,
                        connect_once(server(), Some(src), Duration::from_secs(5)),
                    )
                })
                .collect::<Vec<_>>())
        })
        .join()
        .unwrap()
        .unwrap()
    };
    let first = round();
    let failed: Vec<_> = first.iter().filter(|(_, r)| r.is_err()).collect();
    assert!(failed.is_empty(), "connections failed: {failed:?}");
    let pool_of = |ip: &IpAddr| {
        [1u8, 2]
            .into_iter()
            .find(|&i| in_pool(i, *ip))
            .unwrap_or_else(|| panic!("{ip} is in no pool"))
    };
    let choice: Vec<(IpAddr, u8)> = first
        .iter()
        .map(|(src, r)| (*src, pool_of(r.as_ref().unwrap())))
        .collect();
    let via_m1 = choice.iter().filter(|(_, i)| *i == 1).count();
    eprintln!(
        "{test}: {via_m1} of {SOURCES} sources through m1, {} through m2",
        usize::from(SOURCES) - via_m1
    );
    // An even spread: 32 expected; 16..=48 is far outside chance for a fair hash.
    assert!(
        (16..=48).contains(&via_m1),
        "{via_m1} of {SOURCES} through m1"
    );
    assert_eq!(who.seen().len(), usize::from(SOURCES));

    // Random per source/destination pair is stable: the same pair takes the same entry point.
    let second = round();
    for ((src, a), (_, b)) in choice.iter().zip(&second) {
        let b = b.as_ref().unwrap_or_else(|e| panic!("{src}: {e}"));
        assert_eq!(*a, pool_of(b), "{src} moved");
    }
    let status = mep_status(&sat).unwrap_or_else(|e| panic!("{e}"));
    for ep in ["m1", "m2"] {
        let e = entry_point(&status, GROUP, ep).cloned().unwrap_or_default();
        assert!(
            e["chosen"].as_u64() > Some(0),
            "{ep} never chosen: {status}"
        );
        assert!(tunnel_up(&status, ep), "{ep} has no tunnel: {status}");
    }
}

/// nftables on the strongSwan entry point: connections from the satellite's domain leave into
/// the internal network behind m2's own LAN address (strongSwan has no IP Pool NAT).
fn masquerade_site(ns: &rampart_netns_tests::Netns, dir: &std::path::Path) {
    let rules = format!(
        "table ip mep_ret {{\n  chain post {{\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname \"{LAN_IF}\" ip saddr {SITE_DOMAIN} masquerade\n  }}\n}}\n"
    );
    let file = dir.join("m2.nft");
    std::fs::write(&file, rules).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
    ns.exec(&["nft", "-f", &file.to_string_lossy()]);
}

#[test]
fn mep_strongswan_entry_point_is_probed_by_ike_and_takes_over() {
    let test = "mep_strongswan_entry_point";
    if !setup(test, &["nft", "swanctl", "unshare", CHARON]) {
        return;
    }
    let topo = MepTopology::new("mep-sw", 0);
    topo.route_pools();
    let mut m1 = start_entry(&topo, 1, ReturnPath::PoolNat);
    let m2_wan = rampart_netns_tests::mep_topology::ep_wan(2).to_string();
    let mut sw =
        CharonConfig::site_to_site(&m2_wan, &SAT_WAN.to_string(), HQ_DOMAIN, SITE_DOMAIN, PSK);
    sw.conn = "sat".into();
    let mut charon = Charon::start(&topo.m2, &topo.daemon_dir("m2"), sw);
    masquerade_site(&topo.m2, topo.dir.path());

    let mut mep = SatelliteMep::new("priority-list");
    mep.preconnect = true;
    mep.group_extra =
        "[[entry_point_group.rule]]\nprimary = [\"m1\"]\nsecondary = [\"m2\"]\n".into();
    let mut cfg = topo.satellite_config(&mep);
    // kernel-libipsec only speaks ESP in UDP.
    cfg.peers[1].encapsulation = "force".into();
    cfg.peers[1].extra = "probe = \"auto\"\n".into();
    let mut sat = Gateway::start(&topo.sat, &topo.daemon_dir("sat"), "sat", &cfg);
    let status = wait_status(
        &mut sat,
        "m1 (Rampart) and m2 (strongSwan, IKE) up",
        Duration::from_secs(30),
        |s| is(s, "m1", "up") && is(s, "m2", "up") && tunnel_up(s, "m2"),
    );
    charon.wait_child(Duration::from_secs(10));
    let m2 = entry_point(&status, GROUP, "m2")
        .cloned()
        .unwrap_or_default();
    let with = m2["probing_with"].as_str().unwrap_or_default();
    assert!(with.contains("ike"), "m2 is not probed with IKE: {status}");
    let m1s = entry_point(&status, GROUP, "m1")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        m1s["probing_with"], "rampart",
        "m1 answered Rampart probes: {status}"
    );
    assert_eq!(m1s["level"], "primary", "{status}");

    let _server = WhoServer::start(&topo.server, server());
    let (prober, pinger) = start_probes(&topo, "ping");
    wait_flowing(&prober, "new connections through m1", |ip| in_pool(1, ip));
    let to_m2 = |ip: IpAddr| ip == IpAddr::V4(ep_lan(2));
    let f = kill_and_measure(&mut m1, prober, pinger, to_m2);
    assert_within_bound(test, &f);
    wait_status(&mut sat, "m1 down", Duration::from_secs(5), |s| {
        is(s, "m1", "down") && is(s, "m2", "up")
    });

    // strongSwan dies: only IKE liveness can tell; the satellite sees m2 down.
    let died = Instant::now();
    charon.process().kill9();
    wait_status(
        &mut sat,
        "m2 down by IKE liveness",
        Duration::from_secs(15),
        |s| is(s, "m2", "down"),
    );
    eprintln!(
        "{test}: strongSwan seen down {:?} after its kill",
        died.elapsed()
    );
}

#[test]
fn mep_rim_internal_router_route_follows_the_tunnel() {
    let test = "mep_rim_internal_router";
    if !setup(test, &[BIRD, BIRDC]) {
        return;
    }
    let topo = MepTopology::new("mep-rim", 0);
    let mut m1 = start_entry(&topo, 1, ReturnPath::Rim);
    let _birds: Vec<Bird> = [1u8, 2]
        .into_iter()
        .map(|i| {
            let cfg = BirdConfig::redistributor(ep_lan(i), &[LAN_IF], RIM_TABLE);
            Bird::start(topo.ep(i), &topo.daemon_dir(&format!("bird-m{i}")), &cfg)
        })
        .collect();
    let router = Bird::start(
        &topo.router,
        &topo.daemon_dir("bird-rtr"),
        &BirdConfig::router(ROUTER_LAN, &[LAN_IF]),
    );
    wait_until(Duration::from_secs(30), "OSPF adjacencies", || {
        router.full_neighbors() >= 2
    });

    // Tunnels on demand, Rampart probes only (no IKE SA to the entry point not chosen): only
    // the chosen entry point has a tunnel. m2 starts after the satellite chose m1.
    let mut cfg = topo.satellite_config(&SatelliteMep::new("first-to-respond"));
    for p in &mut cfg.peers {
        p.extra = "probe = \"rampart\"\n".into();
    }
    let mut sat = Gateway::start(&topo.sat, &topo.daemon_dir("sat"), "sat", &cfg);
    wait_status(&mut sat, "m1 chosen", Duration::from_secs(20), |s| {
        is(s, "m1", "up") && current(s).as_deref() == Some("m1")
    });
    let rim = |i: u8| routes(topo.ep(i), &RIM_TABLE.to_string(), SITE_DOMAIN);
    let router_via = |i: u8| {
        let r = routes(&topo.router, "main", SITE_DOMAIN);
        r.contains(&format!("via {}", ep_lan(i))) && !r.contains(&format!("via {}", ep_lan(3 - i)))
    };
    assert!(rim(1).is_empty(), "no tunnel, no route: {}", rim(1));
    // The first packets bring the tunnel to m1 up (and make first-to-respond adopt m1); the
    // router learns the way back.
    wait_until(
        Duration::from_secs(20),
        "the site reaching the server",
        || ping(&topo.site, &SERVER.to_string(), 1).is_ok(),
    );
    let _m2 = start_entry(&topo, 2, ReturnPath::Rim);
    wait_status(
        &mut sat,
        "m2 up, m1 still chosen",
        Duration::from_secs(20),
        |s| is(s, "m2", "up") && current(s).as_deref() == Some("m1"),
    );
    let injected = rim(1);
    assert!(
        injected.contains(&format!("proto {RIM_PROTO}")) && injected.contains("metric 100"),
        "m1's RIM table: {injected:?}"
    );
    assert!(
        rim(2).is_empty(),
        "m2 has no tunnel but a route: {}",
        rim(2)
    );
    wait_until(Duration::from_secs(20), "the router's route via m1", || {
        router_via(1)
    });

    let pinger = PingLog::start(
        &topo.site,
        topo.dir.path(),
        "ping",
        &SERVER.to_string(),
        Duration::from_millis(50),
    );
    std::thread::sleep(Duration::from_millis(500));
    let (killed, killed_unix) = (Instant::now(), unix_now());
    m1.kill9();
    let took = wait_until(Duration::from_secs(30), "the router's route via m2", || {
        router_via(2)
    });
    wait_until(Duration::from_secs(10), "pings through m2", || {
        pinger
            .replies()
            .iter()
            .any(|&t| t > killed_unix + took.as_secs_f64())
    });
    let replies = pinger.finish();
    eprintln!(
        "{test}: router via m2 {took:?} after the kill; ping gap {:.3} s; {:?} since the kill",
        longest_reply_gap(&replies, killed_unix),
        killed.elapsed()
    );
    assert!(rim(2).contains(&format!("proto {RIM_PROTO}")), "{}", rim(2));
    assert!(
        rim(1).is_empty(),
        "m1's routes outlived its TUN device: {}",
        rim(1)
    );
    wait_status(&mut sat, "m2 chosen", Duration::from_secs(5), |s| {
        current(s).as_deref() == Some("m2")
    });
    ping(&topo.site, &SERVER.to_string(), 3).unwrap();
}
