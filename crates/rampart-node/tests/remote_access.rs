//! A remote-access gateway (a template peer with `RemoteAccess::Gateway`, its Office Mode pool
//! as remote domain) and two clients, in virtual time: each client's tunnel carries only its
//! own address, traffic from the gateway's side to each address goes to the right client, an
//! address nobody holds goes nowhere, and MSS clamping works both ways. The clients here are
//! plain initiators whose local domain is the address they hold (TSi = that /32, as the
//! configuration payload would narrow it), so the data plane is tested on the negotiated
//! selectors the engine produces.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_crypto::Rng;
use rampart_node::{Disposition, DropReason, Gateway, Output};

const HEADROOM: usize = 64;
const GATEWAY: &str = "192.0.2.1";
const POOL: &str = "10.99.0.0/24";

fn gateway_config(mss_clamp: bool) -> rampart_config::GatewayConfig {
    let text = format!(
        r#"
[gateway]
name = "gw"
status_socket = "/tmp/unused-ra-gw.sock"
retransmit_timeout = "500ms"
retransmit_tries = 3

[tunnel]
device = "rpgw"
mtu = 1400

[local]
domain = ["10.1.0.0/24"]

[[peer]]
name = "remote-access"
local_address = "{GATEWAY}"
remote_address = "any"
local_id = "@gw.example"
remote_id = "@clients.example"
psk = "0123456789abcdef0123456789abcdef"
remote_domain = ["{POOL}"]
liveness_interval = "2s"
"#
    );
    let mut c = rampart_config::parse(&text, "gw.toml").expect("valid gateway config");
    c.peers[0].remote_access =
        rampart_ike::RemoteAccess::Gateway(Arc::new(rampart_ike::RaGateway {
            pool: rampart_lease::PoolConfig {
                prefix: POOL.parse().unwrap(),
                exclude: vec![],
                lease_time: Duration::from_secs(600),
            },
            dns: vec![],
            dns_domains: vec![],
            routes: vec!["10.1.0.0/24".parse().unwrap()],
            client_auth: rampart_ike::ClientAuth::Peer,
            entry_points: None,
        }));
    if let Some(ra) = c.remote_access.as_mut() {
        ra.mss_clamp = mss_clamp;
    } else if !mss_clamp {
        c.remote_access = Some(rampart_config::RemoteAccessConfig {
            peer: "remote-access".into(),
            tcp: None,
            visitor: None,
            mss_clamp: false,
            stream_setup_timeout: std::time::Duration::from_secs(30),
            stream_idle_timeout: std::time::Duration::from_secs(300),
        });
    }
    c
}

fn client_config(name: &str, addr: &str, vip: &str) -> rampart_config::GatewayConfig {
    let text = format!(
        r#"
[gateway]
name = "{name}"
status_socket = "/tmp/unused-ra-{name}.sock"
retransmit_timeout = "500ms"
retransmit_tries = 3

[tunnel]
device = "rp{name}"

[local]
domain = ["{vip}/32"]

[[peer]]
name = "gw"
local_address = "{addr}"
remote_address = "{GATEWAY}"
local_id = "@clients.example"
remote_id = "@gw.example"
psk = "0123456789abcdef0123456789abcdef"
remote_domain = ["10.1.0.0/24"]
"#
    );
    rampart_config::parse(&text, &format!("{name}.toml")).expect("valid client config")
}

/// Nodes on one virtual wire, addressed by their public IP.
struct Net {
    now: Instant,
    nodes: Vec<Gateway>,
    addrs: Vec<IpAddr>,
    tun_out: Vec<Vec<Vec<u8>>>,
    wire: Vec<(usize, SocketAddr, SocketAddr, Vec<u8>, bool)>,
    logs: Vec<Vec<String>>,
    routes: Vec<Vec<ipnet::IpNet>>,
    /// Nodes cut off the wire: what they send and what is sent to them is lost.
    down: Vec<bool>,
}

impl Net {
    fn new(nodes: Vec<(Gateway, &str)>) -> Net {
        let n = nodes.len();
        let (nodes, addrs) = nodes
            .into_iter()
            .map(|(g, a)| (g, a.parse::<IpAddr>().unwrap()))
            .unzip();
        Net {
            now: Instant::now(),
            nodes,
            addrs,
            tun_out: vec![Vec::new(); n],
            wire: Vec::new(),
            logs: vec![Vec::new(); n],
            routes: vec![Vec::new(); n],
            down: vec![false; n],
        }
    }

    fn index(&self, ip: IpAddr) -> usize {
        self.addrs.iter().position(|a| *a == ip).expect("a node")
    }

    fn collect(&mut self) {
        for i in 0..self.nodes.len() {
            while let Some(out) = self.nodes[i].poll_output() {
                if self.down[i] {
                    continue;
                }
                match out {
                    Output::SendUdp {
                        local,
                        remote,
                        data,
                    } => {
                        let to = self.index(remote.ip());
                        self.wire.push((to, remote, local, data, false));
                    }
                    Output::Log(r) => self.logs[i].push(r.message),
                    Output::RouteAdd { prefix } => self.routes[i].push(prefix),
                    _ => {}
                }
            }
        }
    }

    fn deliver(&mut self) {
        loop {
            self.collect();
            if self.wire.is_empty() {
                return;
            }
            for (to, local, remote, data, raw) in std::mem::take(&mut self.wire) {
                if self.down[to] {
                    continue;
                }
                let mut buf = vec![0u8; data.len() + 2 * HEADROOM];
                buf[HEADROOM..HEADROOM + data.len()].copy_from_slice(&data);
                let range = HEADROOM..HEADROOM + data.len();
                let d = if raw {
                    self.nodes[to].handle_raw_esp(
                        self.now,
                        local.ip(),
                        remote.ip(),
                        &mut buf,
                        range,
                    )
                } else {
                    self.nodes[to].handle_udp(self.now, local, remote, &mut buf, range)
                };
                self.dispose(to, d, &buf);
            }
        }
    }

    fn dispose(&mut self, from: usize, d: Disposition, buf: &[u8]) {
        if self.down[from] {
            return;
        }
        match d {
            Disposition::WriteTun { data } => self.tun_out[from].push(buf[data].to_vec()),
            Disposition::SendUdp {
                local,
                remote,
                data,
            } => {
                let to = self.index(remote.ip());
                self.wire
                    .push((to, remote, local, buf[data].to_vec(), false));
            }
            Disposition::SendRawEsp {
                local,
                remote,
                data,
            } => {
                let to = self.index(remote);
                self.wire.push((
                    to,
                    SocketAddr::new(remote, 0),
                    SocketAddr::new(local, 0),
                    buf[data].to_vec(),
                    true,
                ));
            }
            Disposition::Consumed | Disposition::Dropped(_) => {}
        }
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.deliver();
        loop {
            let next = self.nodes.iter().filter_map(|g| g.poll_timeout()).min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    for g in &mut self.nodes {
                        if g.poll_timeout().is_some_and(|t| t <= self.now) {
                            g.handle_timeout(self.now);
                        }
                    }
                    self.deliver();
                }
                _ => break,
            }
        }
        self.now = until;
    }

    fn send_from_tun(&mut self, node: usize, packet: &[u8]) -> Disposition {
        let mut buf = vec![0u8; packet.len() + 2 * HEADROOM];
        buf[HEADROOM..HEADROOM + packet.len()].copy_from_slice(packet);
        let d = self.nodes[node].handle_tun(self.now, &mut buf, HEADROOM..HEADROOM + packet.len());
        self.dispose(node, d.clone(), &buf);
        self.deliver();
        d
    }
}

fn setup(mss_clamp: bool) -> Net {
    let now = Instant::now();
    let gw = Gateway::new(gateway_config(mss_clamp), now, Rng::from_seed([1; 32])).unwrap();
    let c1 = Gateway::new(
        client_config("c1", "192.0.2.11", "10.99.0.2"),
        now,
        Rng::from_seed([2; 32]),
    )
    .unwrap();
    let c2 = Gateway::new(
        client_config("c2", "192.0.2.12", "10.99.0.3"),
        now,
        Rng::from_seed([3; 32]),
    )
    .unwrap();
    let mut net = Net::new(vec![(gw, GATEWAY), (c1, "192.0.2.11"), (c2, "192.0.2.12")]);
    net.now = now;
    net.run_for(Duration::from_secs(3));
    net
}

/// An IPv4 packet (UDP, or a TCP SYN with an MSS option when `syn_mss` is set).
fn packet(src: [u8; 4], dst: [u8; 4], syn_mss: Option<u16>, payload: &[u8]) -> Vec<u8> {
    let l4 = if syn_mss.is_some() { 24 } else { 8 };
    let total = 20 + l4 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = if syn_mss.is_some() { 6 } else { 17 };
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    let sum = checksum(&p[..20], 0);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&80u16.to_be_bytes());
    match syn_mss {
        Some(mss) => {
            p[32] = 6 << 4; // data offset: 6 words
            p[33] = 0x02; // SYN
            p[34..36].copy_from_slice(&65535u16.to_be_bytes());
            p[40..44].copy_from_slice(&[2, 4, (mss >> 8) as u8, mss as u8]);
        }
        None => p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes()),
    }
    p[20 + l4..].copy_from_slice(payload);
    if syn_mss.is_some() {
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&src);
        pseudo.extend_from_slice(&dst);
        pseudo.extend_from_slice(&[0, 6]);
        pseudo.extend_from_slice(&((l4 + payload.len()) as u16).to_be_bytes());
        let partial = !checksum(&pseudo, 0);
        let sum = checksum(&p[20..], partial);
        p[36..38].copy_from_slice(&sum.to_be_bytes());
    }
    p
}

/// The Internet checksum of `data`, starting from the folded sum `start`.
fn checksum(data: &[u8], start: u16) -> u16 {
    let mut sum = u32::from(start);
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[test]
fn traffic_to_each_virtual_address_goes_to_its_own_client() {
    let mut net = setup(true);
    let status = net.nodes[0].status(net.now);
    let tunnels = &status.peers[0].tunnels;
    assert_eq!(tunnels.len(), 2, "one tunnel per client: {status:#?}");
    let remote_ts: BTreeMap<String, ()> = tunnels
        .iter()
        .map(|t| (t.remote_ts.join(","), ()))
        .collect();
    assert_eq!(
        remote_ts.keys().cloned().collect::<Vec<_>>(),
        ["10.99.0.2/32", "10.99.0.3/32"]
    );
    // The pool prefix is routed into the TUN device like any remote domain.
    assert_eq!(net.routes[0], vec![POOL.parse::<ipnet::IpNet>().unwrap()]);

    // Many rounds, interleaved: each packet reaches exactly its client.
    for i in 0..10u8 {
        for (client, vip) in [(1usize, [10, 99, 0, 2]), (2, [10, 99, 0, 3])] {
            let p = packet([10, 1, 0, 5], vip, None, &[i, client as u8]);
            let d = net.send_from_tun(0, &p);
            assert!(matches!(d, Disposition::SendRawEsp { .. }), "{d:?}");
            assert_eq!(net.tun_out[client].last(), Some(&p));
        }
    }
    assert_eq!((net.tun_out[1].len(), net.tun_out[2].len()), (10, 10));
    // And back from each client.
    for (client, vip) in [(1usize, [10, 99, 0, 2]), (2, [10, 99, 0, 3])] {
        let p = packet(vip, [10, 1, 0, 5], None, b"reply");
        net.send_from_tun(client, &p);
        assert_eq!(net.tun_out[0].last(), Some(&p));
    }
    // An address of the pool nobody holds: no tunnel, nothing leaves.
    let p = packet([10, 1, 0, 5], [10, 99, 0, 9], None, b"nobody");
    assert_eq!(
        net.send_from_tun(0, &p),
        Disposition::Dropped(DropReason::NoSa)
    );
    assert_eq!((net.tun_out[1].len(), net.tun_out[2].len()), (10, 10));
    // The gateway's remote-access status names the pool.
    let ra = net.nodes[0]
        .ra_status(net.now)
        .expect("remote access status");
    assert_eq!(ra.pools.len(), 1);
    assert_eq!(ra.pools[0].prefix, POOL);
    assert_eq!(ra.pools[0].size, 254);
    let json = serde_json::to_value(net.nodes[0].status(net.now)).unwrap();
    for key in [
        "peer",
        "prefix",
        "size",
        "in_use",
        "free",
        "allocations",
        "releases",
        "exhausted_refusals",
    ] {
        assert!(
            !json["remote_access"]["pools"][0][key].is_null(),
            "remote_access.pools[0].{key} in {json}"
        );
    }
    assert!(json["remote_access"]["clients"].is_array());
    assert!(net.nodes[1].ra_status(net.now).is_none());
}

#[test]
fn a_client_that_vanishes_takes_only_its_own_tunnel() {
    let mut net = setup(true);
    net.down[1] = true;
    net.run_for(Duration::from_secs(30));
    let status = net.nodes[0].status(net.now);
    let tunnels = &status.peers[0].tunnels;
    assert_eq!(tunnels.len(), 1, "c1's tunnel is gone: {status:#?}");
    assert_eq!(tunnels[0].remote_ts, ["10.99.0.3/32"]);
    let p = packet([10, 1, 0, 5], [10, 99, 0, 2], None, b"c1 is gone");
    assert_eq!(
        net.send_from_tun(0, &p),
        Disposition::Dropped(DropReason::NoSa)
    );
    let p = packet([10, 1, 0, 5], [10, 99, 0, 3], None, b"still c2");
    net.send_from_tun(0, &p);
    assert_eq!(net.tun_out[2].last(), Some(&p));
}

#[test]
fn mss_is_clamped_on_syn_in_both_directions_of_a_client_tunnel() {
    let mut net = setup(true);
    // Gateway side to the client: MSS 1460 leaves as 1400 - 40 = 1360.
    let syn = packet([10, 1, 0, 5], [10, 99, 0, 2], Some(1460), b"");
    net.send_from_tun(0, &syn);
    let got = net.tun_out[1].last().expect("SYN delivered").clone();
    assert_eq!(u16::from_be_bytes([got[42], got[43]]), 1360);
    assert_ne!(got, syn);
    // The TCP checksum still verifies.
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&got[12..20]);
    pseudo.extend_from_slice(&[0, 6, 0, 24]);
    assert_eq!(checksum(&got[20..], !checksum(&pseudo, 0)), 0);
    // From the client into the gateway: clamped on the way in.
    let syn = packet([10, 99, 0, 3], [10, 1, 0, 5], Some(8960), b"");
    net.send_from_tun(2, &syn);
    let got = net.tun_out[0].last().expect("SYN delivered").clone();
    assert_eq!(u16::from_be_bytes([got[42], got[43]]), 1360);
    // A SYN already below the limit is left alone.
    let small = packet([10, 1, 0, 5], [10, 99, 0, 2], Some(1200), b"");
    net.send_from_tun(0, &small);
    assert_eq!(net.tun_out[1].last(), Some(&small));
    assert_eq!(net.nodes[0].status(net.now).counters.mss_clamped, 2);
}

#[test]
fn mss_clamp_off_leaves_syns_alone() {
    let mut net = setup(false);
    let syn = packet([10, 1, 0, 5], [10, 99, 0, 2], Some(1460), b"");
    net.send_from_tun(0, &syn);
    assert_eq!(net.tun_out[1].last(), Some(&syn));
    assert_eq!(net.nodes[0].status(net.now).counters.mss_clamped, 0);
}

#[test]
fn a_remote_access_client_adds_no_route_for_its_remote_domain() {
    let text = r#"
[gateway]
name = "laptop"
status_socket = "/tmp/unused-ra-laptop.sock"

[local]
domain = ["10.99.0.0/24"]

[[peer]]
name = "office"
local_address = "192.0.2.11"
remote_address = "192.0.2.1"
psk = "0123456789abcdef0123456789abcdef"
remote_domain = ["10.1.0.0/24"]
"#;
    let mut config = rampart_config::parse(text, "laptop.toml").unwrap();
    // What a client profile's node configuration has (the file check refuses the overlap).
    let any: ipnet::IpNet = "0.0.0.0/0".parse().unwrap();
    config.local.domain = vec![any];
    config.peers[0].remote_domain = vec![any];
    config.peers[0].remote_access =
        rampart_ike::RemoteAccess::Client(Arc::new(rampart_ike::RaClient {
            eap: None,
            small_first_proposal: false,
        }));
    let now = Instant::now();
    let mut node = Gateway::new(config, now, Rng::from_seed([4; 32])).unwrap();
    let mut routes = Vec::new();
    while let Some(out) = node.poll_output() {
        if let Output::RouteAdd { prefix } = out {
            routes.push(prefix);
        }
    }
    assert_eq!(routes, Vec::<ipnet::IpNet>::new());
    assert!(node.shutdown_routes().is_empty());
    // No assignment yet: remote-access status without a virtual address.
    let ra = node
        .ra_status(now)
        .expect("a client has remote-access status");
    assert!(ra.virtual_addresses.is_empty() && ra.pools.is_empty());
    // Everything from the TUN device is for the tunnel (acquired, not yet up).
    let p = packet([10, 99, 0, 7], [198, 51, 100, 1], None, b"full tunnel");
    let mut buf = vec![0u8; p.len() + 2 * HEADROOM];
    buf[HEADROOM..HEADROOM + p.len()].copy_from_slice(&p);
    let d = node.handle_tun(now, &mut buf, HEADROOM..HEADROOM + p.len());
    assert_eq!(d, Disposition::Dropped(DropReason::NoSa));
}

struct Counting;

thread_local! {
    static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn choosing_a_client_tunnel_and_clamping_allocate_nothing() {
    let mut net = setup(true);
    let syn = packet([10, 1, 0, 5], [10, 99, 0, 3], Some(1460), b"");
    let udp = packet([10, 1, 0, 5], [10, 99, 0, 2], None, &[0x42; 1000]);
    let mut buf = vec![0u8; 1100 + 2 * HEADROOM];
    for round in 0..50 {
        for p in [&syn, &udp] {
            buf[HEADROOM..HEADROOM + p.len()].copy_from_slice(p);
            let before = ALLOCATIONS.with(std::cell::Cell::get);
            let d = net.nodes[0].handle_tun(net.now, &mut buf, HEADROOM..HEADROOM + p.len());
            let after = ALLOCATIONS.with(std::cell::Cell::get);
            assert!(matches!(d, Disposition::SendRawEsp { .. }), "{d:?}");
            assert_eq!(after, before, "round {round}: allocations on the data path");
        }
    }
    assert_eq!(net.nodes[0].status(net.now).counters.mss_clamped, 50);
}
