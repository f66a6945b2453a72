//! Remote-access clients on a two-member Rampart Load Sharing cluster (issue 15), real
//! processes: the routed topology of [`LsTopology`] (BIRD 2 OSPF with ECMP on both routers),
//! with the remote site turned into the clients' home network.
//!
//! ```text
//!  c1 10.2.0.10 ──┐                                          ┌── m1 ──┐
//!                 ├── nat: nft snat 203.0.113.2 ── rout ─────┤        ├── rin ── ih 10.1.0.10
//!  c2 10.2.1.10 ──┘        (L4 ECMP hash)                    └── m2 ──┘   (ECMP for the pool)
//! ```
//!
//! Every member announces the WAN VIP (the clients' gateway) upstream and the Office Mode pool
//! inside. The upstream router hashes flows by their 5-tuple (`fib_multipath_hash_policy = 1`),
//! so the NAT router's source port decides which member a client's datagrams reach. The test
//! asks the upstream router's kernel which member a source port hashes to (`ip route get ...
//! ipproto udp sport P dport D`) and has the NAT router map each client to a port of its
//! choosing: deterministic placement through the real ECMP.
//!
//! `ra_ls_leases_nat_rebinding_and_kill9_of_the_owner`: two members, one topology, three cases
//! in order (one BIRD convergence for all):
//! - **(a) leases**: client 1's IKE_SA_INIT and NAT-T traffic hash to member 1, client 2's to
//!   member 2. Each member owns (lists) its client's SA; the clients get distinct virtual IPs,
//!   each inside its owner's share of the pool (`remote_access.pools[].share`: two members, the
//!   pool split in halves, member 1 the lower), and each member reserves the other's lease
//!   (`reserved_elsewhere`, `outside_share`; the pool's counters add up).
//! - **(b) NAT rebinding**: during a TCP transfer through client 1's tunnel the NAT router
//!   maps client 1 to a new source port that hashes to the other member (the SNAT rule changes
//!   and the client's conntrack entries are deleted), and a host route on the inside router
//!   sends the inside traffic for client 1's address to that member as well. It forwards the
//!   client's ESP to the owner by SPI and the inside traffic by the virtual IP
//!   (`forwarded_to_client`); the owner answers at the new mapping; the transfer completes
//!   byte-exact, the client keeps its virtual IP and IKE SA (SPIs).
//! - **(c) kill -9 of the owner**: transfers through both clients, then the box of client 1's
//!   owner dies (links down, `kill -9` of rampart and BIRD). The survivor adopts the SA; both
//!   transfers complete byte-exact; client 1 keeps its virtual IP and IKE SA (never
//!   reconnects), the survivor lists it with the same IKE SA id and, once client 2 has left,
//!   shows its SPIs; the lease moved from a reservation to the survivor's own. Each client's
//!   longest pause after the kill is printed (`RA-LS-GAP`): a client whose inside traffic the
//!   inside router hashed to the dead member waits for the OSPF dead interval (3 s) and TCP's
//!   backoff, about 6 s; the adoption itself takes well under a second.
//!
//! `ra_ls_three_members_shares_and_inside_traffic_to_each_owner`: three members, a client on
//! each: the shares of three (quarters, the fourth to member 1), and the inside traffic for
//! each client sent by the inside router to a member that holds the replicas of two other
//! owners' clients: it reaches the owner of that very address.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use rampart_netns_tests::bird::{Bird, BirdConfig, BIRD, BIRDC};
use rampart_netns_tests::ls_topology::{
    member_in, member_out, LsClusterToml, LsTopology, ANNOUNCE_TABLE, HOST, IN_IF, LOCAL_DOMAIN,
    OUT_IF, PEER_WAN, REMOTE_HOST, ROUT_WAN_IF, WAN_VIP,
};
use rampart_netns_tests::netns::run;
use rampart_netns_tests::pki::Pki;
use rampart_netns_tests::ra_client::{transport, virtual_ip, ProfileToml, RampartClient};
use rampart_netns_tests::ra_gateway::{
    gateway_toml, write_users_file, ClientAuthToml, RemoteAccessToml, GW_ID,
};
use rampart_netns_tests::rampart::{binary, parse_spi, Gateway};
use rampart_netns_tests::{
    require_tools, skip_unless_root, try_wait_until, veth, wait_until, Netns, RunningTransfer,
    TransferSpec,
};

/// The Office Mode pool, cluster-wide.
const POOL: &str = "10.99.0.0/24";
/// Each member's share of [`POOL`] (docs/remote-access.md, "Load Sharing: the pool split among
/// the members"): B = next_power_of_two(n) blocks, members indexed by sorted id, member `i`
/// owns blocks `i, i + n, ...`. Two members: halves; three: quarters, the fourth to member 1.
const SHARES_OF_2: [&[&str]; 2] = [&["10.99.0.0/25"], &["10.99.0.128/25"]];
const SHARES_OF_3: [&[&str]; 3] = [
    &["10.99.0.0/26", "10.99.0.192/26"],
    &["10.99.0.64/26"],
    &["10.99.0.128/26"],
];
const USERS: [(&str, &str); 3] = [
    ("alice", "correct horse battery staple"),
    ("bob", "tr0ub4dor and then some"),
    ("carol", "a third password, also long"),
];
/// Client 1 is the topology's remote host; client `n + 1` sits on home LAN `n` of the NAT
/// router ([`home_lan`]).
const CLIENT1: Ipv4Addr = REMOTE_HOST;
/// The NAT router's nftables table.
const NAT_TABLE: &str = "rans_nat";
/// Where the search for SNAT ports starts.
const SNAT_BASE: u16 = 40000;
/// The IKE and NAT-T ports of the gateway.
const IKE_PORT: u16 = 500;
const NAT_T_PORT: u16 = 4500;
/// The member-side counters of the rebound flow (an input hook that only counts).
const TRACE_TABLE: &str = "rans_trace";

/// One member's box: its gateway and its BIRD.
struct MemberBox {
    id: u8,
    gw: Gateway,
    bird: Bird,
    dead: bool,
}

/// One `rampart client` and where it lives.
struct Client {
    user: &'static str,
    addr: Ipv4Addr,
    state_dir: PathBuf,
    process: RampartClient,
}

/// A client as a member's `remote_access.clients[]` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    address: String,
    ike_sa: u64,
    remote: String,
}

/// Member `id`'s BIRD: learns the announce table, exports the VIP (and the local domain)
/// upstream and the Office Mode pool inside.
fn member_bird(id: u8) -> BirdConfig {
    let vip = format!("{WAN_VIP}/32");
    BirdConfig::member(
        member_out(id),
        ANNOUNCE_TABLE,
        &[
            ("outside", OUT_IF, &[vip.as_str(), LOCAL_DOMAIN]),
            ("inside", IN_IF, &[POOL]),
        ],
    )
}

/// Starts member `id`: a remote-access gateway at the WAN VIP (EAP users from `users`, the
/// pool, split tunnel to the local domain) with the `[cluster]` section of a routed Load
/// Sharing member, and its BIRD.
fn start_member(topo: &LsTopology, pki: &Pki, users: &Path, id: u8) -> MemberBox {
    let label = format!("m{id}");
    let dir = topo.daemon_dir(&label);
    let mut ra = RemoteAccessToml::new(pki, ClientAuthToml::Eap(users.to_path_buf()));
    ra.local_address = WAN_VIP.to_string();
    ra.pool = POOL.into();
    ra.routes = vec![LOCAL_DOMAIN.into()];
    ra.dns = Vec::new();
    ra.dns_domains = Vec::new();
    let mut cfg = gateway_toml(&dir, &ra);
    cfg.name = label.clone();
    cfg.status_socket = dir.join(format!("{label}.sock"));
    cfg.domain = vec![LOCAL_DOMAIN.into()];
    cfg.extra.push('\n');
    let count = topo.ids().len() as u8;
    cfg.extra
        .push_str(&LsClusterToml::new(count, id, topo.sync_links).to_toml());
    let gw = Gateway::start(topo.member(id), &dir, &label, &cfg);
    let bird = Bird::start(
        topo.member(id),
        &topo.daemon_dir(&format!("bird-m{id}")),
        &member_bird(id),
    );
    MemberBox {
        id,
        gw,
        bird,
        dead: false,
    }
}

/// `rampart cluster <what> --config <member> --json`, parsed.
fn cluster_cli(gw: &Gateway, what: &str) -> Result<Value, String> {
    let bin = binary().to_string_lossy().into_owned();
    let cfg = gw.config_path().to_string_lossy().into_owned();
    let out =
        run(&bin, &["cluster", what, "--config", &cfg, "--json"]).map_err(|e| e.to_string())?;
    serde_json::from_str(&out).map_err(|e| format!("cluster {what} is not JSON ({e}): {out}"))
}

/// Members up and in sync as `gw` sees them.
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
    let took = try_wait_until(timeout, &format!("members {ids:?} up"), || {
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

/// Waits until the upstream router routes the VIP and the inside router the pool over exactly
/// `ids` (ECMP).
#[track_caller]
fn wait_routes(topo: &LsTopology, ids: &[u8], timeout: Duration) -> Duration {
    let vip = WAN_VIP.to_string();
    let took = try_wait_until(timeout, &format!("ECMP routes via members {ids:?}"), || {
        topo.outside_members(&vip) == ids && topo.inside_members(POOL) == ids
    });
    took.unwrap_or_else(|e| {
        panic!(
            "{e}\ninside router: {}\nupstream router: {}",
            topo.rin.ip("route show"),
            topo.rout.ip("route show")
        )
    })
}

/// The member the upstream router's ECMP sends a datagram from the NAT router's `sport` to
/// the VIP's `dport` to (the kernel's own multipath hash, asked with `ip route get`).
///
/// The kernel hashes a forwarded packet's ports only when the packet carries no L4 hash yet: a
/// *connected* socket stamps its own random hash (`sk_txhash`) on every packet, veth and NAT
/// keep it, and the router uses that instead. The client's IKE and NAT-T sockets are
/// unconnected (`sendto`), so the router hashes the NAT's ports, as a real router would.
fn ecmp_member(topo: &LsTopology, sport: u16, dport: u16) -> Option<u8> {
    let out = topo
        .rout
        .try_ip(&format!(
            "-j route get {WAN_VIP} from {PEER_WAN} iif {ROUT_WAN_IF} ipproto udp sport {sport} dport {dport}"
        ))
        .ok()?;
    let routes: Value = serde_json::from_str(&out).ok()?;
    let gateway: Ipv4Addr = routes[0]["gateway"].as_str()?.parse().ok()?;
    topo.ids().into_iter().find(|&id| member_out(id) == gateway)
}

/// The first NAT source port from `from` on (none of `avoid`) whose datagrams to each
/// `(dport, member)` of `want` hash to that member.
#[track_caller]
fn port_towards(topo: &LsTopology, want: &[(u16, u8)], from: u16, avoid: &[u16]) -> u16 {
    (from..from.saturating_add(4000))
        .filter(|p| !avoid.contains(p))
        .find(|&p| {
            want.iter()
                .all(|&(d, m)| ecmp_member(topo, p, d) == Some(m))
        })
        .unwrap_or_else(|| {
            panic!(
                "no source port from {from} hashes to {want:?}: {}",
                topo.rout.ip("route show")
            )
        })
}

/// The NAT router: the IKE and NAT-T sockets of each `(client, port)` (local ports 500 and
/// 4500) leave with source port `port`; everything else (the client's transport probe from an
/// ephemeral port) is masqueraded. Only those two flows share the port: their reply tuples
/// differ by the gateway's port, so both fit. Replaces the previous rules atomically.
#[track_caller]
fn set_nat(topo: &LsTopology, maps: &[(Ipv4Addr, u16)]) {
    let mut rules = format!(
        "add table ip {NAT_TABLE}\nflush table ip {NAT_TABLE}\ntable ip {NAT_TABLE} {{\n  chain post {{\n    type nat hook postrouting priority srcnat; policy accept;\n"
    );
    for (client, port) in maps {
        rules.push_str(&format!(
            "    oifname \"{ROUT_WAN_IF}\" ip saddr {client} udp sport {{ {IKE_PORT}, {NAT_T_PORT} }} snat to {PEER_WAN}:{port}\n"
        ));
    }
    rules.push_str(&format!(
        "    oifname \"{ROUT_WAN_IF}\" masquerade\n  }}\n}}\n"
    ));
    let file = topo.dir.file("nat.nft");
    std::fs::write(&file, rules).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
    topo.peer.exec(&["nft", "-f", &file.to_string_lossy()]);
}

/// Counts, in every member, the UDP datagrams that arrive from the NAT router's `sport`.
#[track_caller]
fn trace_sport(topo: &LsTopology, sport: u16) {
    let rules = format!(
        "add table ip {TRACE_TABLE}\nflush table ip {TRACE_TABLE}\ntable ip {TRACE_TABLE} {{\n  chain pre {{\n    type filter hook prerouting priority raw; policy accept;\n    ip saddr {PEER_WAN} udp sport {sport} counter comment \"rebound\"\n  }}\n}}\n"
    );
    let file = topo.dir.file("trace.nft");
    std::fs::write(&file, rules).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
    for id in topo.ids() {
        topo.member(id)
            .exec(&["nft", "-f", &file.to_string_lossy()]);
    }
}

/// Packets member `id` counted by [`trace_sport`].
fn traced(topo: &LsTopology, id: u8) -> u64 {
    let Ok(out) = topo
        .member(id)
        .try_exec(&["nft", "-j", "list", "table", "ip", TRACE_TABLE])
    else {
        return 0;
    };
    let doc: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    doc["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["rule"]["comment"] == "rebound")
        .flat_map(|i| i["rule"]["expr"].as_array().into_iter().flatten())
        .find_map(|e| e["counter"]["packets"].as_u64())
        .unwrap_or(0)
}

/// `user` as member `gw` lists it in `remote_access.clients`, if it does.
fn listed(gw: &Gateway, user: &str) -> Option<Listed> {
    let status = gw.status_from_socket().ok()?;
    status["remote_access"]["clients"]
        .as_array()?
        .iter()
        .find(|c| c["client"] == user)
        .and_then(|c| {
            Some(Listed {
                address: c["address"].as_str()?.to_string(),
                ike_sa: c["ike_sa"].as_u64()?,
                remote: c["remote"].as_str()?.to_string(),
            })
        })
}

/// The live members that list `user` (its owner: one of them once settled).
fn listing(boxes: &[MemberBox], user: &str) -> Vec<(u8, Listed)> {
    boxes
        .iter()
        .filter(|b| !b.dead)
        .filter_map(|b| listed(&b.gw, user).map(|l| (b.id, l)))
        .collect()
}

/// Waits until exactly one live member lists `user`; returns it and the listing.
#[track_caller]
fn owner_of(boxes: &[MemberBox], user: &str) -> (u8, Listed) {
    let mut last = Vec::new();
    let waited = try_wait_until(
        Duration::from_secs(10),
        &format!("one member listing {user}"),
        || {
            last = listing(boxes, user);
            last.len() == 1
        },
    );
    if let Err(e) = waited {
        panic!("{e}: {last:?}");
    }
    last.remove(0)
}

/// The first pool of a member's `remote_access.pools`.
fn pool(gw: &Gateway) -> Value {
    gw.status_from_socket()
        .map(|s| s["remote_access"]["pools"][0].clone())
        .unwrap_or(Value::Null)
}

/// The pool's accounting holds: every address of the share is free, leased or reserved, and
/// the leases and reservations outside the share are counted apart
/// (`in_use + reserved_elsewhere + free == size + outside_share`).
#[track_caller]
fn assert_pool_adds_up(id: u8, pool: &Value) {
    let n = |key: &str| {
        pool[key]
            .as_u64()
            .unwrap_or_else(|| panic!("member {id}: no {key} in the pool status {pool}"))
    };
    assert_eq!(
        n("in_use") + n("reserved_elsewhere") + n("free"),
        n("size") + n("outside_share"),
        "member {id}'s pool does not add up: {pool}"
    );
}

/// Whether `addr` lies in `prefix` (IPv4 `a.b.c.d/len`).
fn in_prefix(addr: &str, prefix: &str) -> bool {
    let (Some((net, len)), Ok(a)) = (prefix.split_once('/'), addr.parse::<Ipv4Addr>()) else {
        return false;
    };
    let (Ok(net), Ok(len)) = (net.parse::<Ipv4Addr>(), len.parse::<u32>()) else {
        return false;
    };
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from(a) & mask == u32::from(net) & mask
}

/// The share of member `id` (1..) among `count` members.
#[track_caller]
fn share(count: usize, id: u8) -> &'static [&'static str] {
    let table: &[&[&str]] = match count {
        2 => &SHARES_OF_2,
        3 => &SHARES_OF_3,
        _ => panic!("no shares for {count} members"),
    };
    table[usize::from(id) - 1]
}

/// Home LAN `n` (1..) of the NAT router, with one client host `10.2.<n>.10` in its own
/// namespace; returns the namespace and the host's address.
#[track_caller]
fn home_lan(topo: &LsTopology, n: u8) -> (Netns, Ipv4Addr) {
    let router = Ipv4Addr::new(10, 2, n, 1);
    let host = Ipv4Addr::new(10, 2, n, 10);
    let ns = Netns::new(&format!("c{}", n + 1));
    veth(
        &topo.peer,
        &format!("lan{n}"),
        &[&format!("{router}/24")],
        &ns,
        "eth0",
        &[&format!("{host}/24")],
    );
    ns.route(&format!("default via {router}"));
    (ns, host)
}

/// The CA and the gateway certificate (SANs: [`GW_ID`] and the VIP).
fn issue_pki(topo: &LsTopology) -> Pki {
    let pki = Pki::init(&topo.daemon_dir("pki"), "ecdsa-p256");
    pki.issue(
        "vpn",
        &format!("dns:{GW_ID},ip:{WAN_VIP}"),
        "ecdsa-p256",
        false,
    );
    pki
}

/// Starts every member and waits until they are in sync and both routers route over all of
/// them.
fn start_cluster(test: &str, topo: &LsTopology, pki: &Pki, started: Instant) -> Vec<MemberBox> {
    let users = topo.dir.file("users.toml");
    write_users_file(&users, &USERS);
    let ids = topo.ids();
    let mut boxes: Vec<MemberBox> = ids
        .iter()
        .map(|&id| start_member(topo, pki, &users, id))
        .collect();
    let took = wait_members_up(&mut boxes, &ids, Duration::from_secs(60));
    eprintln!("{test}: members up and in sync after {took:?}");
    let took = wait_routes(topo, &ids, Duration::from_secs(40));
    eprintln!(
        "{test}: VIP and pool routed over every member {took:?} later ({:?} since the start)",
        started.elapsed()
    );
    boxes
}

/// Client `i` (0..) is user `USERS[i]` in `ns`: a UDP-only profile towards the VIP.
fn start_client(topo: &LsTopology, pki: &Pki, i: usize, ns: &Netns, addr: Ipv4Addr) -> Client {
    let (user, password) = USERS[i];
    let dir = topo.daemon_dir(&format!("client{}", i + 1));
    let state_dir = dir.join("state");
    let mut p = ProfileToml::eap(pki, &state_dir, user, password);
    p.gateway = WAN_VIP.to_string();
    p.transports = vec!["udp".into()];
    Client {
        user,
        addr,
        state_dir,
        process: RampartClient::start(ns, &dir, &p),
    }
}

/// Case (a) for any number of members: client `i` leaves the NAT router from `ports[i]`,
/// chosen so that its IKE_SA_INIT and NAT-T traffic hash to member `i + 1`. Waits until every
/// client is connected and checks: member `i + 1` owns client `i`'s SA and knows its mapping;
/// the addresses are distinct, each in its owner's share; each member's pool shows its share,
/// holds its own client and reserves the others' leases, and adds up. Returns the addresses.
fn check_placement(
    test: &str,
    boxes: &[MemberBox],
    clients: &mut [Client],
    ports: &[u16],
    started: Instant,
) -> Vec<String> {
    let count = boxes.len();
    let mut vips = Vec::new();
    for (i, c) in clients.iter_mut().enumerate() {
        let status = c.process.wait_connected(Duration::from_secs(30));
        assert_eq!(transport(&status).as_deref(), Some("udp"), "{status}");
        let vip = virtual_ip(&status).expect("virtual IP in the client status");
        let (owner, l) = owner_of(boxes, c.user);
        let port = ports[i];
        eprintln!(
            "{test}: {} ({}) got {vip}, owned by member {owner}: {l:?}",
            c.user, c.addr
        );
        assert_eq!(
            usize::from(owner),
            i + 1,
            "{}'s IKE_SA_INIT from port {port} should have been hashed to member {} (does the \
             client send from a connected socket now? see ecmp_member)",
            c.user,
            i + 1
        );
        assert_eq!(l.address, vip, "{}: member and client disagree", c.user);
        assert_eq!(l.remote, format!("{PEER_WAN}:{port}"), "{}", c.user);
        let blocks = share(count, owner);
        assert!(
            blocks.iter().any(|b| in_prefix(&vip, b)),
            "{}'s address {vip} is not in member {owner}'s share {blocks:?}: {}",
            c.user,
            pool(&boxes[usize::from(owner) - 1].gw)
        );
        assert!(!vips.contains(&vip), "{vip} leased twice: {vips:?}");
        vips.push(vip);
    }
    let others = (count - 1) as u64;
    for b in boxes {
        let index = usize::from(b.id) - 1;
        let p = pool(&b.gw);
        assert_eq!(
            p["share"],
            json!({"index": index, "of": count, "blocks": share(count, b.id)}),
            "member {}'s pool: {p}",
            b.id
        );
        let reserved = try_wait_until(
            Duration::from_secs(5),
            &format!("member {} reserving the other members' leases", b.id),
            || pool(&b.gw)["reserved_elsewhere"].as_u64() == Some(others),
        );
        if let Err(e) = reserved {
            panic!("{e}: {}", pool(&b.gw));
        }
        let p = pool(&b.gw);
        assert_eq!(
            (p["in_use"].as_u64(), p["outside_share"].as_u64()),
            (Some(1), Some(others)),
            "member {}: its own client in the share, the others' reservations outside: {p}",
            b.id
        );
        assert_pool_adds_up(b.id, &p);
    }
    eprintln!(
        "{test}: (a) leases {vips:?} from the owners' shares ({:?} since the start)",
        started.elapsed()
    );
    vips
}

/// The IKE SA SPIs (initiator, responder) the client's own node reports on its status socket
/// (`<state_dir>/<profile>.sock`).
fn client_spis(client: &Client) -> Option<(u64, u64)> {
    use std::io::{Read, Write};
    let socket = client.state_dir.join("corp.sock");
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(b"status\n").ok()?;
    let mut body = Vec::new();
    stream.read_to_end(&mut body).ok()?;
    let status: Value = serde_json::from_slice(&body).ok()?;
    let sa = &status["peers"][0]["ike_sa"];
    Some((
        parse_spi(sa["spi_i"].as_str()?)?,
        parse_spi(sa["spi_r"].as_str()?)?,
    ))
}

/// The SPIs of the IKE SA with id `ike_sa` if member `gw` shows it in `peers[]`.
fn member_spis(gw: &Gateway, ike_sa: u64) -> Option<(u64, u64)> {
    let status = gw.status_from_socket().ok()?;
    status["peers"]
        .as_array()?
        .iter()
        .map(|p| &p["ike_sa"])
        .find(|sa| sa["id"].as_u64() == Some(ike_sa))
        .and_then(|sa| {
            Some((
                parse_spi(sa["spi_i"].as_str()?)?,
                parse_spi(sa["spi_r"].as_str()?)?,
            ))
        })
}

/// One member's Load Sharing forwarding counters (`load_sharing.member` of `rampart cluster
/// status --json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Forwarding {
    /// ESP-in-UDP (and IKE) of an SA owned elsewhere, sent to its owner / received as owner.
    udp_out: u64,
    udp_in: u64,
    /// Inside cleartext for a client whose SA another member owns (found by its virtual IP),
    /// sent to the owner; and received as owner.
    to_client: u64,
    inspected_in: u64,
}

impl Forwarding {
    fn of(gw: &Gateway) -> Forwarding {
        let Ok(status) = cluster_cli(gw, "status") else {
            return Forwarding::default();
        };
        let m = &status["load_sharing"]["member"];
        let n = |v: &Value| v.as_u64().unwrap_or(0);
        Forwarding {
            udp_out: n(&m["forwarded_out"]["udp"]),
            udp_in: n(&m["forwarded_in"]["udp"]),
            to_client: n(&m["forwarded_to_client"]),
            inspected_in: n(&m["forwarded_in"]["inspected"]),
        }
    }

    fn since(self, before: Forwarding) -> Forwarding {
        Forwarding {
            udp_out: self.udp_out - before.udp_out,
            udp_in: self.udp_in - before.udp_in,
            to_client: self.to_client - before.to_client,
            inspected_in: self.inspected_in - before.inspected_in,
        }
    }
}

/// The box dies: every link down first, then `kill -9` of its BIRD and of rampart.
fn kill_box(topo: &LsTopology, b: &mut MemberBox) {
    topo.links_down(b.id);
    b.bird.kill9();
    b.gw.kill9();
    b.dead = true;
}

/// A rate-limited TCP transfer from a client to the inside host (port per client).
#[track_caller]
fn start_transfer(topo: &LsTopology, from: &Netns, port: u16, mb: u64) -> (RunningTransfer, u64) {
    let mut spec = TransferSpec::megabytes(mb);
    spec.port = port;
    spec.rate = Some(2 * 1024 * 1024);
    spec.timeout = Duration::from_secs(60);
    let transfer = RunningTransfer::start(from, &topo.host, IpAddr::V4(HOST), &spec)
        .unwrap_or_else(|e| panic!("transfer to {HOST}:{port}: {e}"));
    wait_until(
        Duration::from_secs(15),
        &format!("transfer to {HOST}:{port} under way"),
        || transfer.received() > 1024 * 1024,
    );
    (transfer, spec.bytes)
}

/// Client status: (virtual IP, reconnects).
#[track_caller]
fn vip_and_reconnects(client: &Client) -> (String, u64) {
    let s = client
        .process
        .status()
        .unwrap_or_else(|e| panic!("{}: {e}", client.user));
    (
        virtual_ip(&s).unwrap_or_else(|| panic!("{}: no virtual IP in {s}", client.user)),
        s["reconnects"].as_u64().unwrap_or(u64::MAX),
    )
}

#[test]
fn ra_ls_leases_nat_rebinding_and_kill9_of_the_owner() {
    let test = "ra-ls";
    if skip_unless_root(test) {
        return;
    }
    require_tools(&["ip", "nft", "conntrack", BIRD, BIRDC]);
    // Takes the machine-wide netns lock: the clock starts once it is ours.
    let topo = LsTopology::new(test, 2, 1);
    let started = Instant::now();
    // Flows are hashed by their ports: a client's NAT source port picks its member.
    topo.rout.sysctl("net.ipv4.fib_multipath_hash_policy", "1");
    let (home2, client2) = home_lan(&topo, 1);
    let pki = issue_pki(&topo);
    let mut boxes = start_cluster(test, &topo, &pki, started);

    // (a) Client i: IKE_SA_INIT and NAT-T traffic hashed to member i.
    let p1 = port_towards(&topo, &[(IKE_PORT, 1), (NAT_T_PORT, 1)], SNAT_BASE, &[]);
    let p2 = port_towards(&topo, &[(IKE_PORT, 2), (NAT_T_PORT, 2)], SNAT_BASE, &[p1]);
    eprintln!("{test}: NAT source ports: client 1 {p1} (member 1), client 2 {p2} (member 2)");
    set_nat(&topo, &[(CLIENT1, p1), (client2, p2)]);
    let mut clients = vec![
        start_client(&topo, &pki, 0, &topo.remote_host, CLIENT1),
        start_client(&topo, &pki, 1, &home2, client2),
    ];
    let vips = check_placement(test, &boxes, &mut clients, &[p1, p2], started);
    let owners: Vec<u8> = vec![1, 2];

    // (b) Client 1's NAT mapping moves, to a port that hashes to the other member.
    let (owner1, before) = owner_of(&boxes, clients[0].user);
    let other = if owner1 == 1 { 2 } else { 1 };
    let spis1 = client_spis(&clients[0]).expect("client 1's IKE SA SPIs");
    let p1b = port_towards(&topo, &[(NAT_T_PORT, other)], p1 + 1, &[p1, p2]);
    trace_sport(&topo, p1b);
    // The inside return path of client 1 through the other member too (a host route on the
    // inside router): after the rebinding only the owner holds the SA, and nothing of client 1
    // enters through it.
    let pin = format!("{}/32 via {}", vips[0], member_in(other));
    topo.rin.ip(&format!("route add {pin}"));
    let other_before = Forwarding::of(&boxes[usize::from(other) - 1].gw);
    let owner_before = Forwarding::of(&boxes[usize::from(owner1) - 1].gw);
    let (transfer, total) = start_transfer(&topo, &topo.remote_host, 5001, 8);
    set_nat(&topo, &[(CLIENT1, p1b), (client2, p2)]);
    topo.peer
        .exec(&["conntrack", "-D", "-p", "udp", "-s", &CLIENT1.to_string()]);
    let rebound = Instant::now();
    assert!(
        transfer.received() < total,
        "the transfer was over before the rebinding"
    );
    let new_remote = format!("{PEER_WAN}:{p1b}");
    let moved = try_wait_until(
        Duration::from_secs(10),
        "the owner answering at the new mapping",
        || {
            listed(&boxes[usize::from(owner1) - 1].gw, clients[0].user)
                .is_some_and(|l| l.remote == new_remote)
        },
    );
    if let Err(e) = moved {
        panic!(
            "{e}: owner {owner1} lists {:?}; member {other} counted {} datagrams from port {p1b}; forwarding of member {other} {:?}, of member {owner1} {:?}",
            listed(&boxes[usize::from(owner1) - 1].gw, clients[0].user),
            traced(&topo, other),
            Forwarding::of(&boxes[usize::from(other) - 1].gw).since(other_before),
            Forwarding::of(&boxes[usize::from(owner1) - 1].gw).since(owner_before),
        );
    }
    eprintln!(
        "{test}: (b) owner {owner1} answers at {new_remote} {:?} after the rebinding",
        rebound.elapsed()
    );
    let report = transfer
        .finish()
        .unwrap_or_else(|e| panic!("transfer across the rebinding: {e}"));
    assert!(report.intact(), "{report:?}");
    let via_other = traced(&topo, other);
    let via_owner = traced(&topo, owner1);
    let sent = Forwarding::of(&boxes[usize::from(other) - 1].gw).since(other_before);
    let received = Forwarding::of(&boxes[usize::from(owner1) - 1].gw).since(owner_before);
    topo.rin.ip(&format!("route del {pin}"));
    eprintln!(
        "{test}: (b) from port {p1b}: {via_other} datagrams (GSO batches) reached member {other}, {via_owner} member {owner1}; member {other} forwarded {sent:?}, member {owner1} received {received:?}; transfer {:.1} Mbit/s",
        report.mbps()
    );
    assert!(
        via_other >= 100 && via_owner == 0,
        "the rebound flow did not take member {other}: {via_other} / {via_owner}"
    );
    assert!(
        sent.udp_out >= 500 && received.udp_in >= 500,
        "member {other} did not forward client 1's ESP to the owner {owner1}: {sent:?} / {received:?}"
    );
    assert!(
        sent.to_client >= 100 && received.inspected_in >= 100,
        "member {other} did not forward the inside traffic for {} to the owner {owner1}: {sent:?} / {received:?}",
        vips[0]
    );
    let (vip, reconnects) = vip_and_reconnects(&clients[0]);
    assert_eq!(vip, vips[0], "client 1's address changed");
    assert_eq!(reconnects, 0, "{}", clients[0].process.log());
    assert_eq!(client_spis(&clients[0]), Some(spis1), "client 1's IKE SA");
    let (owner_after, after) = owner_of(&boxes, clients[0].user);
    assert_eq!(
        (owner_after, after.ike_sa, &after.address),
        (owner1, before.ike_sa, &before.address)
    );

    // (c) Transfers through both clients; client 1's owner dies.
    let (_, listed2) = owner_of(&boxes, clients[1].user);
    let (t1, total1) = start_transfer(&topo, &topo.remote_host, 5001, 8);
    let (t2, total2) = start_transfer(&topo, &home2, 5002, 8);
    let killed = Instant::now();
    kill_box(&topo, &mut boxes[usize::from(owner1) - 1]);
    assert!(
        t1.received() < total1 && t2.received() < total2,
        "a transfer was over before the kill"
    );
    let survivor = other;
    let gaps = std::thread::scope(|s| {
        let watch = [(&t1, total1), (&t2, total2)].map(|(t, total)| {
            s.spawn(move || t.longest_pause(total, killed, Duration::from_secs(60)))
        });
        let took = wait_members_up(&mut boxes, &[survivor], Duration::from_secs(20));
        eprintln!("{test}: (c) member {survivor} alone {took:?} after the kill");
        let took = wait_routes(&topo, &[survivor], Duration::from_secs(30));
        eprintln!("{test}: (c) routers route over member {survivor} {took:?} after the kill");
        watch.map(|w| w.join().expect("pause watcher"))
    });
    for ((c, owner), gap) in clients.iter().zip(&owners).zip(gaps) {
        eprintln!(
            "RA-LS-GAP client={} owner_killed={} gap_ms={}",
            c.user,
            *owner == owner1,
            gap.as_millis()
        );
    }
    for (t, c) in [(t1, &clients[0]), (t2, &clients[1])] {
        let report = t.finish().unwrap_or_else(|e| {
            panic!(
                "{}'s transfer across the kill: {e}\n{}",
                c.user,
                c.process.log()
            )
        });
        assert!(report.intact(), "{}: {report:?}", c.user);
    }
    eprintln!(
        "{test}: (c) both transfers intact {:?} after the kill",
        killed.elapsed()
    );
    let survivor_gw = &boxes[usize::from(survivor) - 1].gw;
    assert!(
        survivor_gw
            .log()
            .contains(&format!("IKE SAs of member {owner1} adopted")),
        "member {survivor} did not adopt member {owner1}'s SAs:\n{}",
        survivor_gw.log()
    );
    let (vip, reconnects) = vip_and_reconnects(&clients[0]);
    assert_eq!(vip, vips[0], "client 1's address changed");
    assert_eq!(reconnects, 0, "{}", clients[0].process.log());
    assert_eq!(client_spis(&clients[0]), Some(spis1), "client 1's IKE SA");
    let (owner_now, now) = owner_of(&boxes, clients[0].user);
    assert_eq!(owner_now, survivor);
    assert_eq!((now.ike_sa, &now.address), (before.ike_sa, &before.address));
    assert_eq!(
        listed(survivor_gw, clients[1].user).map(|l| (l.ike_sa, l.address)),
        Some((listed2.ike_sa, listed2.address)),
        "client 2 on member {survivor}"
    );
    let p = pool(survivor_gw);
    assert_eq!(
        (
            p["in_use"].as_u64(),
            p["reserved_elsewhere"].as_u64(),
            p["outside_share"].as_u64()
        ),
        (Some(2), Some(0), Some(1)),
        "the adopted lease is the survivor's own now (outside its share): {p}"
    );
    assert_pool_adds_up(survivor, &p);
    // Client 2 leaves: the survivor's only remote-access IKE SA is client 1's, with its SPIs.
    clients[1].process.stop();
    let shown = try_wait_until(
        Duration::from_secs(10),
        "the survivor showing client 1's IKE SA",
        || member_spis(survivor_gw, before.ike_sa).is_some(),
    );
    if let Err(e) = shown {
        panic!(
            "{e}: {:?}",
            survivor_gw.status_from_socket().map(|s| s["peers"].clone())
        );
    }
    assert_eq!(
        member_spis(survivor_gw, before.ike_sa),
        Some(spis1),
        "the survivor's IKE SA for client 1"
    );
    for b in boxes.iter_mut().filter(|b| !b.dead) {
        assert!(b.gw.is_running(), "member {} exited:\n{}", b.id, b.gw.log());
    }
    clients[0].process.stop();
    eprintln!("{test}: done in {:?}", started.elapsed());
}

/// Three members, a client on each (placed by its NAT source port): the pool split in
/// quarters with the fourth to member 1, three distinct addresses from three shares. Then the
/// inside router sends the traffic for each client's address to the next member (a host route
/// each), a member that holds the replicas of two other members' clients: each forwards what
/// it gets to the owner of that very address (`forwarded_to_client`), and a transfer through
/// every client completes byte-exact.
#[test]
fn ra_ls_three_members_shares_and_inside_traffic_to_each_owner() {
    let test = "ra-ls3";
    if skip_unless_root(test) {
        return;
    }
    require_tools(&["ip", "nft", "conntrack", BIRD, BIRDC]);
    let topo = LsTopology::new(test, 3, 1);
    let started = Instant::now();
    topo.rout.sysctl("net.ipv4.fib_multipath_hash_policy", "1");
    let homes: Vec<(Netns, Ipv4Addr)> = (1..=2).map(|n| home_lan(&topo, n)).collect();
    let pki = issue_pki(&topo);
    let mut boxes = start_cluster(test, &topo, &pki, started);

    let mut ports: Vec<u16> = Vec::new();
    for id in topo.ids() {
        let port = port_towards(
            &topo,
            &[(IKE_PORT, id), (NAT_T_PORT, id)],
            SNAT_BASE,
            &ports,
        );
        ports.push(port);
    }
    let hosts: Vec<(&Netns, Ipv4Addr)> = std::iter::once((&topo.remote_host, CLIENT1))
        .chain(homes.iter().map(|(ns, a)| (ns, *a)))
        .collect();
    let maps: Vec<(Ipv4Addr, u16)> = hosts.iter().map(|(_, a)| *a).zip(ports.clone()).collect();
    eprintln!("{test}: NAT source ports (client, port) {maps:?}, client i on member i");
    set_nat(&topo, &maps);
    let mut clients: Vec<Client> = hosts
        .iter()
        .enumerate()
        .map(|(i, (ns, addr))| start_client(&topo, &pki, i, ns, *addr))
        .collect();
    let vips = check_placement(test, &boxes, &mut clients, &ports, started);

    // Client i's inside traffic enters at member i + 2 (wrapping), never its owner.
    let entry = |owner: u8| owner % 3 + 1;
    for (i, vip) in vips.iter().enumerate() {
        let owner = (i + 1) as u8;
        topo.rin.ip(&format!(
            "route add {vip}/32 via {}",
            member_in(entry(owner))
        ));
    }
    let before: Vec<Forwarding> = boxes.iter().map(|b| Forwarding::of(&b.gw)).collect();
    let transfers: Vec<(RunningTransfer, u64)> = hosts
        .iter()
        .enumerate()
        .map(|(i, (ns, _))| start_transfer(&topo, ns, 5001 + i as u16, 4))
        .collect();
    for ((t, total), c) in transfers.into_iter().zip(&clients) {
        let report = t
            .finish()
            .unwrap_or_else(|e| panic!("{}'s transfer: {e}\n{}", c.user, c.process.log()));
        assert!(
            report.intact() && report.received == total,
            "{}: {report:?}",
            c.user
        );
    }
    for (b, before) in boxes.iter().zip(before) {
        let f = Forwarding::of(&b.gw).since(before);
        eprintln!("{test}: member {}: {f:?}", b.id);
        // Member b forwards the inside traffic of the client it is the entry of, and receives
        // that of its own client from the member before it. The upload's ACKs are few: the
        // owner writes the client's data to its TUN device in coalesced batches.
        assert!(
            f.to_client >= 20 && f.inspected_in >= 20,
            "member {} did not forward to / receive from the owners: {f:?}",
            b.id
        );
    }
    for (c, vip) in clients.iter().zip(&vips) {
        let (now, reconnects) = vip_and_reconnects(c);
        assert_eq!((&now, reconnects), (vip, 0), "{}", c.user);
    }
    for b in boxes.iter_mut() {
        assert!(b.gw.is_running(), "member {} exited:\n{}", b.id, b.gw.log());
    }
    eprintln!("{test}: done in {:?}", started.elapsed());
}
