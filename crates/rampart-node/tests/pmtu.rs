//! Path MTU of a remote-access client, in virtual time: a client and a gateway on a wire that
//! drops every outer packet over the path MTU (and sends no ICMP). The client's authenticated
//! probes find the largest size that passes, `Output::TunnelMtu` announces the inner MTU for
//! the SA's actual framing, and TCP SYNs through the tunnel are clamped to it; a path that
//! shrinks later is found by the black-hole check; an ICMP report lowers the MTU at once.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_crypto::Rng;
use rampart_node::{Disposition, Gateway, MtuReason, Output};

const HEADROOM: usize = 64;
const GATEWAY: &str = "192.0.2.1";
const CLIENT: &str = "192.0.2.11";
const POOL: &str = "10.99.0.0/24";

fn gateway_config() -> rampart_config::GatewayConfig {
    let text = format!(
        r#"
[gateway]
name = "gw"
status_socket = "/tmp/unused-pmtu-gw.sock"
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
    c
}

/// What a client profile's node configuration looks like (full tunnel, TUN MTU 1400).
fn client_config() -> rampart_config::GatewayConfig {
    let text = format!(
        r#"
[gateway]
name = "laptop"
status_socket = "/tmp/unused-pmtu-laptop.sock"
retransmit_timeout = "500ms"
retransmit_tries = 3

[tunnel]
device = "rplaptop"
mtu = 1400

[local]
domain = ["10.98.0.0/24"]

[[peer]]
name = "office"
local_address = "{CLIENT}"
remote_address = "{GATEWAY}"
local_id = "@clients.example"
remote_id = "@gw.example"
psk = "0123456789abcdef0123456789abcdef"
remote_domain = ["10.1.0.0/24"]
"#
    );
    let mut config = rampart_config::parse(&text, "laptop.toml").unwrap();
    let any: ipnet::IpNet = "0.0.0.0/0".parse().unwrap();
    config.local.domain = vec![any];
    config.peers[0].remote_domain = vec![any];
    config.peers[0].remote_access =
        rampart_ike::RemoteAccess::Client(Arc::new(rampart_ike::RaClient {
            eap: None,
            small_first_proposal: false,
        }));
    config
}

/// A gateway (node 0) and a client (node 1) on a wire that drops outer packets over `path`.
struct Net {
    now: Instant,
    nodes: [Gateway; 2],
    addrs: [IpAddr; 2],
    /// The outer MTU of the path (both directions); bigger packets vanish without ICMP.
    path: usize,
    wire: Vec<(usize, SocketAddr, SocketAddr, Vec<u8>, bool)>,
    tun_out: [Vec<Vec<u8>>; 2],
    mtus: Vec<(u16, MtuReason)>,
    dropped_big: usize,
}

impl Net {
    fn new(path: usize) -> Net {
        let now = Instant::now();
        let gw = Gateway::new(gateway_config(), now, Rng::from_seed([1; 32])).unwrap();
        let client = Gateway::new(client_config(), now, Rng::from_seed([2; 32])).unwrap();
        Net {
            now,
            nodes: [gw, client],
            addrs: [GATEWAY.parse().unwrap(), CLIENT.parse().unwrap()],
            path,
            wire: Vec::new(),
            tun_out: [Vec::new(), Vec::new()],
            mtus: Vec::new(),
            dropped_big: 0,
        }
    }

    fn index(&self, ip: IpAddr) -> usize {
        self.addrs.iter().position(|a| *a == ip).expect("a node")
    }

    /// Puts a packet on the wire unless the path is too small for it (outer IPv4 header, and
    /// UDP when not raw ESP).
    fn send(&mut self, local: SocketAddr, remote: SocketAddr, data: Vec<u8>, raw: bool) {
        let outer = 20 + if raw { 0 } else { 8 } + data.len();
        if outer > self.path {
            self.dropped_big += 1;
            return;
        }
        let to = self.index(remote.ip());
        self.wire.push((to, remote, local, data, raw));
    }

    fn collect(&mut self) {
        for i in 0..2 {
            while let Some(out) = self.nodes[i].poll_output() {
                match out {
                    Output::SendUdp {
                        local,
                        remote,
                        data,
                    } => self.send(local, remote, data, false),
                    Output::SendRawEsp {
                        local,
                        remote,
                        data,
                    } => self.send(
                        SocketAddr::new(local, 0),
                        SocketAddr::new(remote, 0),
                        data,
                        true,
                    ),
                    Output::TunnelMtu { peer, mtu, reason } => {
                        assert_eq!((i, peer.as_str()), (1, "office"));
                        self.mtus.push((mtu, reason));
                    }
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
        match d {
            Disposition::WriteTun { data } => self.tun_out[from].push(buf[data].to_vec()),
            Disposition::SendUdp {
                local,
                remote,
                data,
            } => self.send(local, remote, buf[data].to_vec(), false),
            Disposition::SendRawEsp {
                local,
                remote,
                data,
            } => self.send(
                SocketAddr::new(local, 0),
                SocketAddr::new(remote, 0),
                buf[data].to_vec(),
                true,
            ),
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

    /// The client's virtual address.
    fn vip(&self) -> [u8; 4] {
        let ra = self.nodes[1].ra_status(self.now).expect("ra status");
        let a: std::net::Ipv4Addr = ra.virtual_addresses[0]
            .address
            .as_deref()
            .expect("an address")
            .parse()
            .unwrap();
        a.octets()
    }

    fn pmtu(&self) -> rampart_node::pmtu::PathMtuStatus {
        let ra = self.nodes[1].ra_status(self.now).expect("ra status");
        ra.path_mtu[0].clone()
    }
}

/// The inner MTU of an outer `outer` for raw ESP over IPv4 with AES-GCM (the default
/// proposal): IP 20, ESP header 8, IV 8, payload, padding to 4 with the 2-byte trailer, ICV 16.
fn gcm_raw_inner(outer: usize) -> u16 {
    let mut inner = outer - 20 - 16 - 2 - 16;
    while 20 + 16 + inner + (4 - (inner + 2) % 4) % 4 + 2 + 16 > outer {
        inner -= 1;
    }
    inner as u16
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
            p[32] = 6 << 4;
            p[33] = 0x02;
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

fn checksum(data: &[u8], start: u16) -> u16 {
    let mut sum = u32::from(start);
    for chunk in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn syn_mss(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[42], p[43]])
}

#[test]
fn probes_find_a_1280_path_and_the_mss_follows() {
    let mut net = Net::new(1280);
    net.run_for(Duration::from_secs(30));
    let want = gcm_raw_inner(1280);
    assert_eq!(net.mtus, vec![(want, MtuReason::Probed)]);
    assert!(
        net.dropped_big > 0,
        "the larger probes were lost on the path"
    );
    let s = net.pmtu();
    assert_eq!((s.configured, s.current, s.searching), (1400, want, false));
    assert_eq!(s.searches, 1);
    assert!(
        s.probes_acked >= 1 && s.probes_sent > s.probes_acked,
        "{s:?}"
    );
    assert_eq!(s.reason.as_deref(), Some("probed"));
    let gw = net.nodes[0].status(net.now).counters;
    assert_eq!(gw.pmtu_probes_answered, s.probes_acked);
    // A SYN through the tunnel, both ways, is clamped to the probed MTU (IPv4: MTU - 40).
    let vip = net.vip();
    let syn = packet(vip, [10, 1, 0, 5], Some(1460), b"");
    net.send_from_tun(1, &syn);
    let out = net.tun_out[0]
        .last()
        .expect("the SYN came out at the gateway");
    assert_eq!(syn_mss(out), want - 40);
    let syn_ack = packet([10, 1, 0, 5], vip, Some(1460), b"");
    net.send_from_tun(0, &syn_ack);
    let back = net.tun_out[1]
        .last()
        .expect("the SYN-ACK came out at the client");
    assert!(syn_mss(back) <= want - 40, "{}", syn_mss(back));
    // A full-size inner packet of the probed MTU now passes the path.
    let big = packet(vip, [10, 1, 0, 5], None, &vec![7u8; usize::from(want) - 28]);
    net.send_from_tun(1, &big);
    assert_eq!(net.tun_out[0].last(), Some(&big));
}

#[test]
fn probes_bisect_to_within_the_granularity() {
    let mut net = Net::new(1357);
    net.run_for(Duration::from_secs(30));
    let truth = gcm_raw_inner(1357);
    let &[(mtu, MtuReason::Probed)] = net.mtus.as_slice() else {
        panic!("{:?}", net.mtus)
    };
    assert!(
        mtu <= truth && truth - mtu < 8 + 4,
        "found {mtu}, path carries {truth}"
    );
}

#[test]
fn a_path_that_carries_the_configured_mtu_changes_nothing() {
    let mut net = Net::new(1500);
    net.run_for(Duration::from_secs(30));
    // Found the configured size: announced (so the shell logs it), and unchanged.
    assert_eq!(net.mtus, vec![(1400, MtuReason::Probed)]);
    assert_eq!(net.pmtu().current, 1400);
}

#[test]
fn a_shrinking_path_is_a_black_hole_until_probed_again() {
    let mut net = Net::new(1500);
    net.run_for(Duration::from_secs(30));
    assert_eq!(net.pmtu().current, 1400);
    net.path = 1300;
    let vip = net.vip();
    // Full-size packets leave and nothing comes back: after the stall check the confirmation
    // of 1400 fails, the tunnel drops to the floor, and a new search finds the new path.
    let big = packet(vip, [10, 1, 0, 5], None, &vec![7u8; 1400 - 28]);
    for _ in 0..20 {
        net.send_from_tun(1, &big);
        net.run_for(Duration::from_millis(500));
    }
    net.run_for(Duration::from_secs(20));
    let floor = gcm_raw_inner(1280);
    let truth = gcm_raw_inner(1300);
    let tail: Vec<_> = net.mtus[1..].to_vec();
    assert_eq!(tail[0], (floor, MtuReason::BlackHole), "{:?}", net.mtus);
    let (last, reason) = *tail.last().unwrap();
    assert_eq!(reason, MtuReason::Probed);
    assert!(last <= truth && truth - last < 12, "{last} vs {truth}");
    assert_eq!(net.pmtu().black_holes, 1);
}

#[test]
fn icmp_too_big_lowers_but_never_raises_nor_goes_below_the_floor() {
    let mut net = Net::new(1500);
    net.run_for(Duration::from_secs(30));
    let (local, remote) = (
        SocketAddr::new(CLIENT.parse().unwrap(), 4500),
        SocketAddr::new(GATEWAY.parse().unwrap(), 4500),
    );
    net.nodes[1].handle_path_mtu(net.now, local, remote, 1350);
    net.collect();
    let lowered = gcm_raw_inner(1350);
    assert_eq!(net.mtus.last(), Some(&(lowered, MtuReason::IcmpTooBig)));
    // Higher: ignored. Far below the floor: the floor.
    net.nodes[1].handle_path_mtu(net.now, local, remote, 1450);
    net.collect();
    assert_eq!(net.mtus.last(), Some(&(lowered, MtuReason::IcmpTooBig)));
    net.nodes[1].handle_path_mtu(net.now, local, remote, 600);
    net.collect();
    assert_eq!(
        net.mtus.last(),
        Some(&(gcm_raw_inner(1280), MtuReason::IcmpTooBig))
    );
    assert_eq!(net.pmtu().icmp_too_big, 3);
    // A gateway counts a report for a client's address and lowers that client's clamp.
    net.nodes[0].handle_path_mtu(net.now, remote, local, 1300);
    let gw = net.nodes[0].status(net.now).counters;
    assert_eq!(gw.pmtu_icmp_too_big, 1);
    let vip = net.vip();
    let syn = packet([10, 1, 0, 5], vip, Some(1460), b"");
    net.send_from_tun(0, &syn);
    // Sealed for the client with the gateway's lowered clamp, then the client's own.
    let back = net.tun_out[1]
        .last()
        .expect("the SYN came out at the client");
    assert!(syn_mss(back) <= gcm_raw_inner(1300) - 40);
}

#[test]
fn a_forged_probe_size_is_refused_and_acks_are_small() {
    // Probe codec level: the ack is the 12-byte header, whatever the probe's size.
    use rampart_node::pmtu::probe;
    let mut p = vec![0u8; 1400];
    assert!(probe::write_probe(&mut p, 9, 1400));
    let mut ack = [0u8; probe::HEADER_LEN];
    assert!(probe::write_ack(&mut ack, 9, 1400));
    assert_eq!(ack.len(), 12);
    // A probe claiming to be smaller than it is gets no answer.
    assert!(probe::write_probe(&mut p, 9, 100));
    assert!(probe::parse(&p).is_err());
}

#[test]
fn an_unauthenticated_probe_gets_no_answer() {
    let mut net = Net::new(1500);
    net.run_for(Duration::from_secs(30));
    let answered = net.nodes[0].status(net.now).counters.pmtu_probes_answered;
    let status = net.nodes[0].status(net.now);
    let spi = u32::from_str_radix(&status.peers[0].tunnels[0].spi_in, 16).unwrap();
    // A probe-sized ESP packet of the gateway's SA that no key sealed.
    let mut forged = vec![0u8; 1300];
    forged[..4].copy_from_slice(&spi.to_be_bytes());
    forged[7] = 200;
    let mut buf = vec![0u8; forged.len() + 2 * HEADROOM];
    buf[HEADROOM..HEADROOM + forged.len()].copy_from_slice(&forged);
    let d = net.nodes[0].handle_raw_esp(
        net.now,
        GATEWAY.parse().unwrap(),
        CLIENT.parse().unwrap(),
        &mut buf,
        HEADROOM..HEADROOM + forged.len(),
    );
    assert_eq!(
        d,
        Disposition::Dropped(rampart_node::DropReason::Authentication)
    );
    let after = net.nodes[0].status(net.now).counters;
    assert_eq!(after.pmtu_probes_answered, answered);
}
