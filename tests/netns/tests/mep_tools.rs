//! The tools of the MEP tests, proven without Rampart: the topology with plain routing, the
//! new-connection prober and the ping log across a path change, and BIRD 2 redistributing a
//! kernel routing table (what RIM fills) into OSPF towards the internal router.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rampart_netns_tests::bird::{Bird, BirdConfig, BIRD, BIRDC};
use rampart_netns_tests::mep_topology::{
    ep_lan, routes, site_source, MepTopology, LAN_IF, RIM_PROTO, RIM_TABLE, ROUTER_LAN, SERVER,
    SITE_DOMAIN, SITE_HOST,
};
use rampart_netns_tests::new_conns::{
    connect_once, first_ok_after, longest_gap, longest_reply_gap, unix_now, Connector, PingLog,
    WhoServer,
};
use rampart_netns_tests::{ping, require_tools, skip_unless_root, wait_until};

const PORT: u16 = 7100;

/// Plain routing through m1, then through m2: the prober's connections keep completing, the
/// server sees the site host's own address, and the path change leaves a measurable gap.
#[test]
fn mep_tools_prober_follows_a_path_change() {
    if skip_unless_root("mep_tools_prober_follows_a_path_change") {
        return;
    }
    require_tools(&["ip", "ping"]);
    let topo = MepTopology::new("mep-tools", 4);
    topo.plain_routing(1);
    ping(&topo.site, &SERVER.to_string(), 2).unwrap();

    let server = WhoServer::start(&topo.server, SocketAddr::new(IpAddr::V4(SERVER), PORT));
    let to = SocketAddr::new(IpAddr::V4(SERVER), PORT);
    // Bound sources reach the server as themselves.
    for n in 0..4 {
        let src = IpAddr::V4(site_source(n));
        let seen = rampart_netns_tests::traffic::spawn_in(&topo.site, move || {
            connect_once(to, Some(src), Duration::from_secs(2))
        })
        .join()
        .unwrap()
        .unwrap();
        assert_eq!(seen, src);
    }

    let pinger = PingLog::start(
        &topo.site,
        topo.dir.path(),
        "ping",
        &SERVER.to_string(),
        Duration::from_millis(20),
    );
    let prober = Connector::start(
        &topo.site,
        to,
        Duration::from_millis(20),
        Duration::from_millis(300),
    );
    wait_until(Duration::from_secs(5), "connections through m1", || {
        prober.attempts().iter().filter(|a| a.ok()).count() >= 5
    });

    // Break the path for about 400 ms, then route through m2.
    let (cut, cut_unix) = (Instant::now(), unix_now());
    topo.router.ip(&format!("route del {SITE_DOMAIN}"));
    std::thread::sleep(Duration::from_millis(400));
    topo.plain_routing(2);
    wait_until(Duration::from_secs(5), "connections through m2", || {
        first_ok_after(&prober.attempts(), cut + Duration::from_millis(400), |ip| {
            ip == IpAddr::V4(SITE_HOST)
        })
        .is_some()
    });
    std::thread::sleep(Duration::from_millis(200));
    let attempts = prober.finish();
    let replies = pinger.finish();
    let gap = longest_gap(&attempts, cut);
    let ping_gap = longest_reply_gap(&replies, cut_unix);
    eprintln!(
        "path change: connection gap {gap:?}, ping gap {ping_gap:.3} s, {} attempts, {} replies",
        attempts.len(),
        replies.len()
    );
    assert!(
        attempts.iter().any(|a| !a.ok()),
        "some attempts fail while the path is cut"
    );
    assert!(
        gap >= Duration::from_millis(350) && gap < Duration::from_secs(2),
        "{gap:?}"
    );
    assert!((0.35..2.0).contains(&ping_gap), "{ping_gap}");
    assert!(server.seen().iter().all(
        |ip| *ip == IpAddr::V4(SITE_HOST) || (0..4).any(|n| *ip == IpAddr::V4(site_source(n)))
    ));
}

/// BIRD on both entry points redistributes kernel table 201 into OSPF; BIRD on the internal
/// router installs what it learns. A route added to m1's table 201 appears on the router via
/// m1; moved to m2's table, it follows.
#[test]
fn mep_tools_bird_redistributes_the_rim_table_over_ospf() {
    if skip_unless_root("mep_tools_bird_redistributes_the_rim_table_over_ospf") {
        return;
    }
    require_tools(&["ip", BIRD, BIRDC]);
    let topo = MepTopology::new("mep-bird", 0);
    let mut birds = Vec::new();
    for i in [1u8, 2] {
        let ns = topo.ep(i);
        // Stands in for the gateway's TUN device (a veth pair: no dummy module needed).
        ns.ip("link add rim0 type veth peer name rim1");
        ns.ip("link set rim0 up");
        ns.ip("link set rim1 up");
        let cfg = BirdConfig::redistributor(ep_lan(i), &[LAN_IF], RIM_TABLE);
        birds.push(Bird::start(
            ns,
            &topo.daemon_dir(&format!("bird-m{i}")),
            &cfg,
        ));
    }
    let router_bird = Bird::start(
        &topo.router,
        &topo.daemon_dir("bird-rtr"),
        &BirdConfig::router(ROUTER_LAN, &[LAN_IF]),
    );
    let took = wait_until(Duration::from_secs(30), "OSPF adjacencies", || {
        router_bird.full_neighbors() >= 2
    });
    eprintln!("router has 2 full OSPF neighbours after {took:?}");
    assert!(routes(&topo.router, "main", SITE_DOMAIN).is_empty());

    let inject = |i: u8| {
        topo.ep(i).ip(&format!(
            "route add {SITE_DOMAIN} dev rim0 table {RIM_TABLE} proto {RIM_PROTO} metric 100"
        ));
    };
    let withdraw = |i: u8| {
        topo.ep(i).ip(&format!(
            "route del {SITE_DOMAIN} dev rim0 table {RIM_TABLE} proto {RIM_PROTO} metric 100"
        ));
    };
    let via = |i: u8| {
        let r = routes(&topo.router, "main", SITE_DOMAIN);
        r.contains(&format!("via {}", ep_lan(i))) && !r.contains(&format!("via {}", ep_lan(3 - i)))
    };

    inject(1);
    let took = wait_until(Duration::from_secs(15), "router route via m1", || via(1));
    eprintln!("injected on m1: router follows after {took:?}");
    assert!(
        routes(&topo.router, "main", SITE_DOMAIN).contains("proto bird"),
        "{}",
        routes(&topo.router, "main", SITE_DOMAIN)
    );

    withdraw(1);
    inject(2);
    let took = wait_until(Duration::from_secs(15), "router route via m2", || via(2));
    eprintln!("moved to m2: router follows after {took:?}");

    withdraw(2);
    wait_until(Duration::from_secs(15), "router route withdrawn", || {
        routes(&topo.router, "main", SITE_DOMAIN).is_empty()
    });
    drop(birds);
}
