//! A three-member Rampart Load Sharing cluster in routed mode (issue 14), real processes: the
//! topology of [`LsTopology`] (BIRD 2 OSPF with ECMP on an inside and an upstream router, each
//! member's BIRD announcing what Rampart puts into its announce table), a remote site behind the
//! upstream router, asymmetric return paths.
//!
//! - `ls_kill9_*`: N TCP connections through the tunnel (1,000; 10,000 with `RAMPART_HEAVY=1`),
//!   created on every member (the inside router spreads them) with Flush-and-Ack; then the box
//!   of the member that owns the tunnel dies (`kill -9` of rampart and its BIRD, links down) and
//!   every connection exchanges data again: none lost, the remote's SAs unchanged (no
//!   re-negotiation). The same over a sync link with 100 ms round trip and 5 % loss (tc netem,
//!   or where the kernel has no `sch_netem` the topology's delay hub doing the same) with 200
//!   connections (2,000 heavy).
//! - `ls_esp_forwarded_to_owner_with_strongswan`: strongSwan's charon as the remote peer; the
//!   upstream router is made to send its ESP (UDP-encapsulated: kernel-libipsec) to a member
//!   that does not own the SA, which forwards it to the owner: traffic flows, the forwarding
//!   counters move.
//!
//! - `ls_sync_link_cut_moves_the_stream_without_loss`: two sync networks, the first one cut
//!   under open connections: every stream moves to the second, new connections are held and
//!   acknowledged there, none lost, no update lost.
//!
//! The tools are proven without Rampart by `ls_tools.rs`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::Value;

use rampart_netns_tests::bird::{Bird, BIRD, BIRDC};
use rampart_netns_tests::conn_load::{LoadClient, LoadServer, LoadSpec};
use rampart_netns_tests::inspect::counter;
use rampart_netns_tests::ls_topology::{
    member_out, member_sync, FlowTrace, LsClusterToml, LsTopology, HOST_SOURCES, LOCAL_DOMAIN,
    PEER_WAN, REMOTE_DOMAIN, REMOTE_HOST, WAN_VIP,
};
use rampart_netns_tests::netns::run;
use rampart_netns_tests::rampart::{binary, parse_spi, Gateway, Spis};
use rampart_netns_tests::strongswan::{Charon, CharonConfig, CHARON};
use rampart_netns_tests::topology::PSK;
use rampart_netns_tests::{
    heavy, ping, require_tools, skip_unless_root, wait_until, RunningTransfer, TransferSpec,
};

const SERVER_PORTS: [u16; 4] = [7000, 7001, 7002, 7003];
const FLOW_BASE: u16 = 42000;

/// One member's box: its gateway and its BIRD.
struct MemberBox {
    id: u8,
    gw: Gateway,
    bird: Bird,
    dead: bool,
}

/// `rampart cluster <what> --config <member> --json` (`status` or `sync-stats`), parsed.
fn cluster_cli(gw: &Gateway, what: &str) -> Result<Value, String> {
    let bin = binary().to_string_lossy().into_owned();
    let cfg = gw.config_path().to_string_lossy().into_owned();
    let out =
        run(&bin, &["cluster", what, "--config", &cfg, "--json"]).map_err(|e| e.to_string())?;
    serde_json::from_str(&out).map_err(|e| format!("cluster {what} is not JSON ({e}): {out}"))
}

/// Starts member `id` (gateway + BIRD); `tweak` edits its `[cluster]` section.
fn start_member(topo: &LsTopology, id: u8, tweak: &dyn Fn(&mut LsClusterToml)) -> MemberBox {
    let (mut config, mut cluster) = topo.member_config(id);
    tweak(&mut cluster);
    config.extra = cluster.to_toml();
    let label = format!("m{id}");
    let gw = Gateway::start(topo.member(id), &topo.daemon_dir(&label), &label, &config);
    let bird = topo.start_member_bird(id, Some("rampart0"));
    MemberBox {
        id,
        gw,
        bird,
        dead: false,
    }
}

/// The remote site's gateway.
enum Remote {
    Rampart(Box<Gateway>),
    StrongSwan(Box<Charon>),
}

impl Remote {
    fn start_rampart(topo: &LsTopology) -> Remote {
        let config = topo.remote_rampart_config();
        let mut gw = Gateway::start(&topo.peer, &topo.daemon_dir("remote"), "remote", &config);
        gw.wait_tunnel(Duration::from_secs(30));
        Remote::Rampart(Box::new(gw))
    }

    fn start_strongswan(topo: &LsTopology) -> Remote {
        let config = CharonConfig::site_to_site(
            &PEER_WAN.to_string(),
            &WAN_VIP.to_string(),
            REMOTE_DOMAIN,
            LOCAL_DOMAIN,
            PSK,
        );
        let charon = Charon::start(&topo.peer, &topo.daemon_dir("remote"), config);
        charon
            .initiate()
            .unwrap_or_else(|e| panic!("initiate: {e}"));
        charon.wait_child(Duration::from_secs(30));
        Remote::StrongSwan(Box::new(charon))
    }

    /// The remote's IKE SA and CHILD SA SPIs.
    fn spis(&self) -> Option<Spis> {
        match self {
            Remote::Rampart(gw) => gw.spis(),
            Remote::StrongSwan(charon) => {
                let ike = charon.ike_sa()?;
                let children = ike
                    .children
                    .iter()
                    .filter(|c| c.state == "INSTALLED")
                    .filter_map(|c| {
                        Some((
                            u32::try_from(parse_spi(&c.spi_in)?).ok()?,
                            u32::try_from(parse_spi(&c.spi_out)?).ok()?,
                        ))
                    })
                    .collect();
                Some(Spis {
                    ike: (parse_spi(&ike.spi_i)?, parse_spi(&ike.spi_r)?),
                    children,
                })
            }
        }
    }
}

fn setup(test: &str, strongswan: bool) -> bool {
    if skip_unless_root(test) {
        return false;
    }
    require_tools(&["ip", "ping", "nft", "tc", BIRD, BIRDC]);
    if strongswan {
        require_tools(&["swanctl", "unshare", CHARON]);
    }
    true
}

/// Members up and in sync as `gw` sees them (its ownership map), or why not readable.
fn members_up(gw: &Gateway) -> Result<Vec<u8>, String> {
    let status = cluster_cli(gw, "status")?;
    let members = status["load_sharing"]["ownership"]["members"]
        .as_array()
        .ok_or_else(|| format!("no load_sharing.ownership.members in {status}"))?;
    Ok(members
        .iter()
        .filter(|m| m["up"].as_bool() == Some(true))
        .filter_map(|m| m["member"].as_u64().and_then(|id| u8::try_from(id).ok()))
        .collect())
}

/// Waits until every live member sees exactly `ids` up.
#[track_caller]
fn wait_members_up(boxes: &mut [MemberBox], ids: &[u8], timeout: Duration) -> Duration {
    let mut last = String::new();
    let took = rampart_netns_tests::try_wait_until(timeout, &format!("members {ids:?} up"), || {
        boxes.iter_mut().filter(|b| !b.dead).all(|b| {
            assert!(b.gw.is_running(), "member {} exited:\n{}", b.id, b.gw.log());
            match members_up(&b.gw) {
                Ok(up) if up == ids => true,
                Ok(up) => {
                    last = format!("member {} sees {up:?}", b.id);
                    false
                }
                Err(e) => {
                    last = e;
                    false
                }
            }
        })
    });
    took.unwrap_or_else(|e| panic!("{e}: {last}"))
}

/// The member an SA belongs to by its SPI: a member allocates its inbound ESP SPIs with its id
/// in the top 4 bits (`id << 28 | random`). `spi` is the remote's outbound SPI (our inbound).
fn home_of_esp_spi(spi: u32) -> u8 {
    (spi >> 28) as u8
}

/// `rampart cluster sync-stats` Flush-and-Ack counters of one member: (held, timeouts).
fn flush_ack(gw: &Gateway) -> (u64, u64) {
    let stats = cluster_cli(gw, "sync-stats").unwrap_or_else(|e| panic!("{e}"));
    let fa = &stats["flush_ack"];
    (
        fa["held"].as_u64().unwrap_or(0),
        fa["timeouts"].as_u64().unwrap_or(0),
    )
}

/// The box dies: every link down first (nothing it sends after this instant reaches anyone,
/// as with a power cut), then `kill -9` of its BIRD and of rampart. No route is withdrawn: the
/// routers notice by the OSPF dead interval, the other members by the missing heartbeats.
fn kill_box(topo: &LsTopology, b: &mut MemberBox) {
    topo.links_down(b.id);
    b.bird.kill9();
    b.gw.kill9();
    b.dead = true;
}

/// How the load test runs.
struct LoadCase {
    connections: u32,
    /// A WAN sync link: one-way delay and loss per packet (tc netem on every member's sync
    /// interface, or the topology's delay hub where the kernel has no netem), and the
    /// cluster's WAN timers.
    wan: Option<(Duration, f64)>,
}

/// Upper bounds of the hold-time histogram's buckets (rampart-cluster `HOLD_BUCKETS_US`).
const HOLD_BUCKETS_US: [u64; 20] = [
    25, 50, 100, 200, 350, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 10_000, 20_000, 50_000,
    100_000, 150_000, 200_000, 500_000, 1_000_000,
];

/// Quantiles `qs` (0..=1) of the Flush-and-Ack hold times of every member together (the sum
/// of their `sync-stats` histograms), in µs: the upper bound of the bucket, capped by the
/// largest hold; and the number of holds.
fn hold_quantiles(gws: &[&Gateway], qs: &[f64]) -> (Vec<u64>, u64) {
    let mut buckets = [0u64; 21];
    let (mut count, mut max) = (0u64, 0u64);
    for gw in gws {
        let Ok(stats) = cluster_cli(gw, "sync-stats") else {
            continue;
        };
        let h = &stats["flush_ack"]["hold_time"];
        for (i, b) in buckets.iter_mut().enumerate() {
            *b += h["buckets"][i].as_u64().unwrap_or(0);
        }
        count += h["count"].as_u64().unwrap_or(0);
        max = max.max(h["max_us"].as_u64().unwrap_or(0));
    }
    let quantile = |q: f64| -> u64 {
        let rank = ((q * count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return HOLD_BUCKETS_US.get(i).copied().unwrap_or(max).min(max);
            }
        }
        max
    };
    (qs.iter().map(|&q| quantile(q)).collect(), count)
}

/// Three members, a Rampart remote: N connections created all over the cluster (Flush-and-Ack),
/// then the box that owns the tunnel dies and every connection goes on.
fn ls_kill9_keeps_every_connection(test: &str, case: LoadCase) {
    if !setup(test, false) {
        return;
    }
    let count = case.connections;
    let topo = LsTopology::new(test, 3, 1);
    let dir = topo.dir.path().to_path_buf();
    let wan = case.wan.is_some();
    let tweak = move |c: &mut LsClusterToml| {
        if wan {
            c.wan_timers();
        }
    };
    let started = Instant::now();
    let mut boxes: Vec<MemberBox> = topo
        .ids()
        .into_iter()
        .map(|id| start_member(&topo, id, &tweak))
        .collect();
    let took = wait_members_up(&mut boxes, &[1, 2, 3], Duration::from_secs(60));
    eprintln!("{test}: 3 members up and in sync after {took:?}");
    let took = topo.wait_adjacencies(&[1, 2, 3], Duration::from_secs(30));
    eprintln!("{test}: OSPF adjacencies after {took:?}");
    // Every member announces the VIP (Rampart, table 202) and the remote domain (its TUN).
    let took = topo.wait_routes_via(&[1, 2, 3], Duration::from_secs(30));
    eprintln!(
        "{test}: both routers route over all 3 members {took:?} later ({:?} since the start)",
        started.elapsed()
    );
    // The WAN sync link: netem where the kernel has it, the delay hub elsewhere.
    let mut _hub = None;
    if let Some((delay, loss)) = case.wan {
        if topo.netem_available() {
            let spec = format!("delay {}ms loss {}%", delay.as_millis(), loss * 100.0);
            topo.sync_netem(0, &spec)
                .unwrap_or_else(|e| panic!("netem: {e}"));
            eprintln!("{test}: sync link: tc netem {spec}");
        } else {
            _hub = Some(
                topo.sync_delay_hub(0, delay, loss)
                    .unwrap_or_else(|e| panic!("delay hub: {e}")),
            );
            eprintln!(
                "{test}: sync link: delay hub (no sch_netem), {delay:?} each way, {}% loss",
                loss * 100.0
            );
        }
    }

    let remote = Remote::start_rampart(&topo);
    let before = remote.spis().expect("remote SAs established");
    let owner = home_of_esp_spi(before.children[0].1);
    eprintln!("{test}: the tunnel belongs to member {owner} ({before:?})");
    assert!((1..=3).contains(&owner), "SPI without a member: {before:?}");
    if wan {
        // Over a lossy sync link the first echo's hold may time out and be released before
        // the owner has its record (then its answer can be dropped as out of state, a loss
        // the design allows: the hold's timeout policy is `release`); the tunnel is shown to
        // work by any echo answered. The connections below must all survive.
        let out = topo
            .host
            .try_exec(&[
                "ping",
                "-n",
                "-q",
                "-c",
                "5",
                "-i",
                "0.2",
                "-W",
                "2",
                &REMOTE_HOST.to_string(),
            ])
            .unwrap_or_else(|e| panic!("ping: {e}"));
        assert!(!out.contains(" 0 received"), "no echo answered: {out}");
    } else {
        ping(&topo.host, &REMOTE_HOST.to_string(), 3).unwrap();
    }

    let trace = FlowTrace {
        base_port: FLOW_BASE,
        flows: 0,
    };
    trace.install(&topo).unwrap_or_else(|e| panic!("{e}"));
    let _server = LoadServer::start(
        &topo.remote_host,
        &dir,
        "load-server",
        IpAddr::V4(REMOTE_HOST),
        &SERVER_PORTS,
    );
    let spec = LoadSpec::new(
        count,
        SERVER_PORTS
            .iter()
            .map(|&p| SocketAddr::new(IpAddr::V4(REMOTE_HOST), p))
            .collect(),
        HOST_SOURCES.iter().map(|&a| IpAddr::V4(a)).collect(),
    );
    let mut client = LoadClient::start(&topo.host, &dir, "load-client", &spec);
    let phase1 = client.wait_phase1(Duration::from_secs(180)).unwrap();
    assert_eq!(phase1.phase1_ok, count, "{phase1:#?}");
    eprintln!(
        "{test}: {count} connections open in {} ms",
        phase1.phase1_ms
    );
    // Every member holds every connection, wherever it was created.
    for b in &boxes {
        wait_until(
            Duration::from_secs(60),
            &format!("member {} holds every connection", b.id),
            || counter(&b.gw, "active") >= u64::from(count),
        );
    }
    // The inside router spread the SYNs; the SYN-ACKs came back decrypted by the owner.
    let counters = trace.read(&topo).unwrap_or_else(|e| panic!("{e}"));
    let mut creators = 0;
    for (id, c) in &counters {
        let (syn, synack) = (c["syn"], c["synack"]);
        let (held, timeouts) = flush_ack(&boxes[usize::from(*id) - 1].gw);
        eprintln!(
            "{test}: member {id}: {syn} SYNs out, {synack} SYN-ACKs back, {held} first packets held, {timeouts} hold timeouts"
        );
        if syn > 0 {
            creators += 1;
            assert!(held > 0, "member {id} created connections without holding");
        }
        if !wan {
            assert_eq!(timeouts, 0, "member {id}: holds timed out on a LAN");
        }
    }
    assert_eq!(
        creators, 3,
        "the inside router did not spread: {counters:?}"
    );
    let gws: Vec<&Gateway> = boxes.iter().map(|b| &b.gw).collect();
    let (q, holds) = hold_quantiles(&gws, &[0.5, 0.99]);
    eprintln!(
        "{test}: Flush-and-Ack over all members: {holds} holds, p50 {} us, p99 {} us",
        q[0], q[1]
    );
    let back_via_owner = counters[usize::from(owner) - 1].1["synack"];
    assert!(
        back_via_owner >= u64::from(count),
        "SYN-ACKs not decrypted by the owner {owner}: {counters:?}"
    );

    // Under load: a bulk transfer runs and every connection starts its second exchange, then
    // the owner's box dies. Packets sent to it are lost until the routers notice (the OSPF dead
    // interval, 3 s) and until a survivor adopts the SA (the cluster's dead time); TCP resends.
    let mut bulk = TransferSpec::megabytes(16);
    bulk.rate = Some(2 * 1024 * 1024);
    bulk.timeout = Duration::from_secs(90);
    let transfer =
        RunningTransfer::start(&topo.host, &topo.remote_host, REMOTE_HOST.into(), &bulk).unwrap();
    wait_until(Duration::from_secs(20), "the bulk transfer flowing", || {
        transfer.received() > 1024 * 1024
    });
    client.release();
    let killed = Instant::now();
    kill_box(&topo, &mut boxes[usize::from(owner) - 1]);
    assert!(
        transfer.received() < bulk.bytes,
        "the bulk transfer was over before the kill"
    );
    let survivors: Vec<u8> = topo.ids().into_iter().filter(|&i| i != owner).collect();
    let took = wait_members_up(&mut boxes, &survivors, Duration::from_secs(20));
    eprintln!("{test}: the survivors see each other alone {took:?} after the kill");
    let took = topo.wait_routes_via(&survivors, Duration::from_secs(30));
    eprintln!("{test}: routers route over {survivors:?} {took:?} after the kill");
    let report = client.finish(Duration::from_secs(240)).unwrap();
    assert!(report.all_ok(), "{report:#?}");
    eprintln!(
        "{test}: {count} connections ok after the kill; phase 2 took {} ms ({:?} since the kill)",
        report.phase2_ms,
        killed.elapsed()
    );
    let bulk_report = transfer.finish().unwrap_or_else(|e| panic!("bulk: {e}"));
    assert!(bulk_report.intact(), "{bulk_report:?}");
    eprintln!("{test}: bulk transfer across the kill intact: {bulk_report:?}");
    let adopters = adopters_of(&boxes, owner);
    eprintln!("{test}: member {owner}'s SAs adopted by {adopters:?}");
    assert!(
        !adopters.is_empty(),
        "no survivor adopted member {owner}'s SAs"
    );
    // The remote never noticed: same IKE SA, same CHILD SAs; a survivor adopted them.
    assert_eq!(remote.spis(), Some(before));
    // New traffic flows. Over the lossy WAN sync link one echo of three was lost once (of
    // about ten runs; not understood yet): a lost echo is reported, three failed pings fail.
    let mut pinged = ping(&topo.host, &REMOTE_HOST.to_string(), 3);
    for attempt in 1..3 {
        match &pinged {
            Ok(()) => break,
            Err(e) => {
                eprintln!("{test}: ping after the kill, attempt {attempt}: {e}");
                pinged = ping(&topo.host, &REMOTE_HOST.to_string(), 3);
            }
        }
    }
    pinged.unwrap();
    for b in boxes.iter_mut().filter(|b| !b.dead) {
        assert!(b.gw.is_running(), "member {} exited:\n{}", b.id, b.gw.log());
    }
}

#[test]
fn ls_kill9_of_the_tunnel_owner_keeps_every_connection() {
    let connections = if heavy() { 10_000 } else { 1_000 };
    ls_kill9_keeps_every_connection(
        "ls-kill",
        LoadCase {
            connections,
            wan: None,
        },
    );
}

#[test]
fn ls_kill9_over_a_wan_sync_link_keeps_every_connection() {
    let connections = if heavy() { 2_000 } else { 200 };
    ls_kill9_keeps_every_connection(
        "ls-wan",
        LoadCase {
            connections,
            wan: Some((Duration::from_millis(50), 0.05)),
        },
    );
}

/// The survivors that adopted member `dead`'s SAs: they log
/// `cluster: <n> IKE SAs of member <dead> adopted (load sharing)`.
fn adopters_of(boxes: &[MemberBox], dead: u8) -> Vec<u8> {
    let needle = format!("IKE SAs of member {dead} adopted");
    boxes
        .iter()
        .filter(|b| !b.dead && b.gw.log().contains(&needle))
        .map(|b| b.id)
        .collect()
}

/// `load_sharing.forwarded_sent` and `forwarded_received` of one member's cluster status.
fn forwarded(gw: &Gateway) -> (u64, u64) {
    let status = cluster_cli(gw, "status").unwrap_or_else(|e| panic!("{e}"));
    let ls = &status["load_sharing"];
    (
        ls["forwarded_sent"].as_u64().unwrap_or(0),
        ls["forwarded_received"].as_u64().unwrap_or(0),
    )
}

/// TCP connections from the inside host to the remote host, each with two exchanges.
fn connections_ok(topo: &LsTopology, label: &str, count: u32) {
    let dir = topo.dir.path().to_path_buf();
    let spec = LoadSpec::new(
        count,
        SERVER_PORTS
            .iter()
            .map(|&p| SocketAddr::new(IpAddr::V4(REMOTE_HOST), p))
            .collect(),
        HOST_SOURCES.iter().map(|&a| IpAddr::V4(a)).collect(),
    );
    let mut client = LoadClient::start(&topo.host, &dir, label, &spec);
    let phase1 = client.wait_phase1(Duration::from_secs(60)).unwrap();
    assert_eq!(phase1.phase1_ok, count, "{phase1:#?}");
    client.release();
    let report = client.finish(Duration::from_secs(60)).unwrap();
    assert!(report.all_ok(), "{report:#?}");
}

/// strongSwan as the remote peer (ESP in UDP: kernel-libipsec). The upstream router is made
/// to send the peer's packets to a member that does not own the SA: it forwards them to the
/// owner, traffic flows both ways, the forwarding counters move. Then the owner's box dies: a
/// survivor adopts the SA, charon keeps the same SAs, traffic flows.
#[test]
fn ls_esp_forwarded_to_owner_with_strongswan() {
    let test = "ls_esp_forwarded_to_owner_with_strongswan";
    if !setup(test, true) {
        return;
    }
    let topo = LsTopology::new("ls-sw", 3, 1);
    let dir = topo.dir.path().to_path_buf();
    let mut boxes: Vec<MemberBox> = topo
        .ids()
        .into_iter()
        .map(|id| start_member(&topo, id, &|_| {}))
        .collect();
    wait_members_up(&mut boxes, &[1, 2, 3], Duration::from_secs(60));
    topo.wait_routes_via(&[1, 2, 3], Duration::from_secs(40));

    let remote = Remote::start_strongswan(&topo);
    let before = remote.spis().expect("charon's SAs");
    let owner = home_of_esp_spi(before.children[0].1);
    assert!((1..=3).contains(&owner), "SPI without a member: {before:?}");
    let other = if owner == 1 { 2 } else { 1 };
    eprintln!(
        "{test}: the tunnel belongs to member {owner}; pinning the peer's traffic to {other}"
    );
    topo.rout.ip(&format!(
        "route add {WAN_VIP}/32 via {} metric 1",
        member_out(other)
    ));
    let sent_before = forwarded(&boxes[usize::from(other) - 1].gw).0;
    let received_before = forwarded(&boxes[usize::from(owner) - 1].gw).1;
    let _server = LoadServer::start(
        &topo.remote_host,
        &dir,
        "load-server",
        IpAddr::V4(REMOTE_HOST),
        &SERVER_PORTS,
    );
    ping(&topo.host, &REMOTE_HOST.to_string(), 3).unwrap();
    connections_ok(&topo, "pinned", 100);
    let sent = forwarded(&boxes[usize::from(other) - 1].gw).0 - sent_before;
    let received = forwarded(&boxes[usize::from(owner) - 1].gw).1 - received_before;
    eprintln!(
        "{test}: member {other} forwarded {sent} packets to the owner, member {owner} received {received}"
    );
    assert!(
        sent >= 200 && received >= 200,
        "the peer's ESP did not go through member {other} to the owner {owner}: sent {sent}, received {received}"
    );
    assert_eq!(remote.spis(), Some(before.clone()));

    // The owner dies; the pin goes (its next hop may be the dead member), ECMP again.
    topo.rout.ip(&format!(
        "route del {WAN_VIP}/32 via {} metric 1",
        member_out(other)
    ));
    kill_box(&topo, &mut boxes[usize::from(owner) - 1]);
    let survivors: Vec<u8> = topo.ids().into_iter().filter(|&i| i != owner).collect();
    wait_members_up(&mut boxes, &survivors, Duration::from_secs(20));
    topo.wait_routes_via(&survivors, Duration::from_secs(30));
    ping(&topo.host, &REMOTE_HOST.to_string(), 3).unwrap();
    connections_ok(&topo, "after-kill", 100);
    assert_eq!(remote.spis(), Some(before), "charon re-negotiated");
    let adopters = adopters_of(&boxes, owner);
    eprintln!("{test}: member {owner}'s SAs adopted by {adopters:?}");
    assert!(
        !adopters.is_empty(),
        "no survivor adopted member {owner}'s SAs"
    );
}

/// Two sync networks: the first one is cut (its bridge ports detached: no carrier change on
/// the members, only silence) while connections are open; every member's stream moves to the
/// second network, connections created after the cut are held and acknowledged over it, the
/// open ones go on, and no update is lost (no resync).
#[test]
fn ls_sync_link_cut_moves_the_stream_without_loss() {
    let test = "ls_sync_link_cut_moves_the_stream_without_loss";
    if !setup(test, false) {
        return;
    }
    let topo = LsTopology::new("ls-links", 3, 2);
    let dir = topo.dir.path().to_path_buf();
    // Both sync networks carry packets between every pair of members.
    for (from, to) in [(1, 2), (2, 3), (3, 1)] {
        for link in [0, 1] {
            ping(topo.member(from), &member_sync(to, link).to_string(), 1).unwrap();
        }
    }
    let mut boxes: Vec<MemberBox> = topo
        .ids()
        .into_iter()
        .map(|id| start_member(&topo, id, &|_| {}))
        .collect();
    wait_members_up(&mut boxes, &[1, 2, 3], Duration::from_secs(60));
    topo.wait_routes_via(&[1, 2, 3], Duration::from_secs(40));
    let _remote = Remote::start_rampart(&topo);
    let _server = LoadServer::start(
        &topo.remote_host,
        &dir,
        "load-server",
        IpAddr::V4(REMOTE_HOST),
        &SERVER_PORTS,
    );
    let spec = LoadSpec::new(
        500,
        SERVER_PORTS
            .iter()
            .map(|&p| SocketAddr::new(IpAddr::V4(REMOTE_HOST), p))
            .collect(),
        HOST_SOURCES.iter().map(|&a| IpAddr::V4(a)).collect(),
    );
    let mut client = LoadClient::start(&topo.host, &dir, "before-cut", &spec);
    let phase1 = client.wait_phase1(Duration::from_secs(60)).unwrap();
    assert_eq!(phase1.phase1_ok, 500, "{phase1:#?}");

    // Both networks alive before the cut: heartbeats arrive on the second one too.
    let link_received = |gw: &Gateway, link: usize| -> u64 {
        cluster_cli(gw, "sync-stats")
            .ok()
            .and_then(|s| s["links"][link]["datagrams_received"].as_u64())
            .unwrap_or(0)
    };
    for b in &boxes {
        wait_until(
            Duration::from_secs(5),
            &format!("member {} hearing the others on sync network 2", b.id),
            || link_received(&b.gw, 1) > 0,
        );
    }
    let cut = Instant::now();
    for id in topo.ids() {
        topo.switch.ip(&format!("link set dev m{id}-s0 nomaster"));
    }
    let switched = |gw: &Gateway| -> u64 {
        cluster_cli(gw, "sync-stats")
            .ok()
            .and_then(|s| s["links"][1]["switched_to"].as_u64())
            .unwrap_or(0)
    };
    for b in &boxes {
        let moved = rampart_netns_tests::try_wait_until(
            Duration::from_secs(10),
            &format!("member {}'s streams on the second sync network", b.id),
            || switched(&b.gw) >= 2,
        );
        if let Err(e) = moved {
            let stats = cluster_cli(&b.gw, "sync-stats");
            panic!("{e}: sync-stats {stats:?}");
        }
    }
    eprintln!(
        "{test}: every stream on sync network 2 {:?} after the cut",
        cut.elapsed()
    );
    wait_members_up(&mut boxes, &[1, 2, 3], Duration::from_secs(5));
    connections_ok(&topo, "after-cut", 300);
    client.release();
    let report = client.finish(Duration::from_secs(60)).unwrap();
    assert!(report.all_ok(), "{report:#?}");
    for b in &boxes {
        let stats = cluster_cli(&b.gw, "sync-stats").unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "{test}: member {}: lost {}, resyncs {}, hold timeouts {}, records sent on network 1 {}, on network 2 {}",
            b.id,
            stats["lost"],
            stats["resyncs"],
            stats["flush_ack"]["timeouts"],
            stats["links"][0]["records_sent"],
            stats["links"][1]["records_sent"]
        );
        assert!(
            stats["links"][1]["records_sent"].as_u64().unwrap_or(0) > 0,
            "member {} sent no records on the second network: {stats}",
            b.id
        );
        assert_eq!(stats["lost"].as_u64(), Some(0), "{stats}");
        assert_eq!(stats["resyncs"].as_u64(), Some(0), "{stats}");
        assert_eq!(stats["flush_ack"]["timeouts"].as_u64(), Some(0), "{stats}");
    }
}
