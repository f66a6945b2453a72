//! MOBIKE between nodes, in virtual time: a remote-access client (built from a profile, as the
//! client shell builds it) connects over UDP to a gateway with `[remote_access]`, then its
//! address changes. `Node::roam` moves the IKE SA; the gateway follows; traffic passes both
//! ways on the same SPIs and the gateway's `ra status` shows the client at its new address.
//! Without MOBIKE on the gateway, `roam` says the tunnel cannot move.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rampart_config::ClientTransport;
use rampart_crypto::Rng;
use rampart_node::{Disposition, Gateway, Output, RoamOutcome};

const HEADROOM: usize = 64;
const GW: &str = "203.0.113.2";
const OLD: &str = "198.51.100.10";
const NEW: &str = "198.51.100.20";
const INSIDE: [u8; 4] = [10, 1, 0, 5];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn gateway(mobike: bool, extra: &str) -> Gateway {
    let text = format!(
        r#"
[gateway]
name = "gw"
status_socket = "/tmp/unused-roam-gw.sock"
retransmit_timeout = "500ms"
retransmit_tries = 3

[tunnel]
device = "rpgw"

[local]
domain = ["10.1.0.0/24"]

[remote_access]
local_address = "{GW}"
local_id = "@gw.example"
psk = "0123456789abcdef0123456789abcdef"
pool = "10.99.0.0/24"
routes = ["10.1.0.0/24"]
mobike = {mobike}
{extra}
"#
    );
    let config = rampart_config::parse(&text, "gw.toml").expect("valid gateway config");
    Gateway::new(config, Instant::now(), Rng::from_seed([1; 32])).unwrap()
}

fn client() -> Gateway {
    let text = format!(
        r#"
gateway = "{GW}"
local_id = "@client.example"
remote_id = "@gw.example"
psk = "0123456789abcdef0123456789abcdef"
transports = ["udp"]
state_dir = "/tmp/unused-roam-client"
"#
    );
    let profile =
        rampart_config::parse_profile(&text, "/tmp/roam-client.toml").expect("valid profile");
    let config = profile.node_config(ip(OLD), ip(GW), ClientTransport::Udp);
    Gateway::new(config, Instant::now(), Rng::from_seed([2; 32])).unwrap()
}

/// Client (node 0) and gateway (node 1) on one virtual wire; the client's address can change.
struct Net {
    now: Instant,
    nodes: [Gateway; 2],
    /// The client's address now; datagrams to any other address but the gateway's are lost.
    client_ip: IpAddr,
    wire: Vec<(usize, SocketAddr, SocketAddr, Vec<u8>, bool)>,
    tun_out: [Vec<Vec<u8>>; 2],
    /// The client node's outputs other than datagrams and logs.
    client_events: Vec<Output>,
    logs: [Vec<String>; 2],
}

impl Net {
    fn new(gateway_mobike: bool) -> Net {
        Net::with_gateway(gateway(gateway_mobike, ""))
    }

    fn with_gateway(gw: Gateway) -> Net {
        let mut net = Net {
            now: Instant::now(),
            nodes: [client(), gw],
            client_ip: ip(OLD),
            wire: Vec::new(),
            tun_out: [Vec::new(), Vec::new()],
            client_events: Vec::new(),
            logs: [Vec::new(), Vec::new()],
        };
        net.run_for(Duration::from_secs(3));
        net
    }

    fn to(&self, addr: IpAddr) -> Option<usize> {
        if addr == ip(GW) {
            Some(1)
        } else if addr == self.client_ip {
            Some(0)
        } else {
            None
        }
    }

    /// A datagram leaves `from`: only from the node's current address, to a reachable one.
    fn send(
        &mut self,
        from: usize,
        local: SocketAddr,
        remote: SocketAddr,
        data: Vec<u8>,
        raw: bool,
    ) {
        let from_ok = if from == 0 {
            local.ip() == self.client_ip
        } else {
            true
        };
        if let (true, Some(to)) = (from_ok, self.to(remote.ip())) {
            self.wire.push((to, remote, local, data, raw));
        }
    }

    fn collect(&mut self) {
        for i in 0..2 {
            while let Some(out) = self.nodes[i].poll_output() {
                match out {
                    Output::SendUdp {
                        local,
                        remote,
                        data,
                    } => self.send(i, local, remote, data, false),
                    Output::Log(r) => self.logs[i].push(r.message),
                    other if i == 0 => self.client_events.push(other),
                    _ => {}
                }
            }
        }
    }

    fn deliver(&mut self) {
        for _ in 0..1000 {
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
        panic!("datagram storm");
    }

    fn dispose(&mut self, from: usize, d: Disposition, buf: &[u8]) {
        match d {
            Disposition::WriteTun { data } => self.tun_out[from].push(buf[data].to_vec()),
            Disposition::SendUdp {
                local,
                remote,
                data,
            } => self.send(from, local, remote, buf[data].to_vec(), false),
            Disposition::SendRawEsp {
                local,
                remote,
                data,
            } => self.send(
                from,
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
        while let Some(t) = self
            .nodes
            .iter()
            .filter_map(|g| g.poll_timeout())
            .min()
            .filter(|t| *t <= until)
        {
            self.now = self.now.max(t);
            for g in &mut self.nodes {
                if g.poll_timeout().is_some_and(|t| t <= self.now) {
                    g.handle_timeout(self.now);
                }
            }
            self.deliver();
        }
        self.now = until;
    }

    fn inject_tun(&mut self, node: usize, packet: &[u8]) -> Disposition {
        let mut buf = vec![0u8; packet.len() + 2 * HEADROOM];
        buf[HEADROOM..HEADROOM + packet.len()].copy_from_slice(packet);
        let d = self.nodes[node].handle_tun(self.now, &mut buf, HEADROOM..HEADROOM + packet.len());
        self.dispose(node, d.clone(), &buf);
        self.deliver();
        d
    }

    /// The client's Office Mode address.
    fn vip(&self) -> [u8; 4] {
        self.client_events
            .iter()
            .rev()
            .find_map(|o| match o {
                Output::VirtualAddress { reply, .. } => reply.ip4_addresses.first().copied(),
                _ => None,
            })
            .expect("an assignment")
            .octets()
    }

    /// The (spi_in, spi_out) of every tunnel of `node`.
    fn spis(&self, node: usize) -> Vec<(String, String)> {
        self.nodes[node]
            .status(self.now)
            .peers
            .iter()
            .flat_map(|p| {
                p.tunnels
                    .iter()
                    .map(|t| (t.spi_in.clone(), t.spi_out.clone()))
            })
            .collect()
    }

    /// One packet each way; true when both arrived intact.
    fn traffic_passes(&mut self, tag: u8) -> bool {
        let vip = self.vip();
        let (before_gw, before_client) = (self.tun_out[1].len(), self.tun_out[0].len());
        let up = udp_packet(vip, INSIDE, &[tag; 100]);
        let down = udp_packet(INSIDE, vip, &[tag ^ 0xff; 200]);
        self.inject_tun(0, &up);
        self.inject_tun(1, &down);
        self.tun_out[1][before_gw..].contains(&up)
            && self.tun_out[0][before_client..].contains(&down)
    }
}

/// An IPv4/UDP packet (checksum 0).
fn udp_packet(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let total = 28 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    let mut sum = 0u32;
    for c in p[..20].chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&5000u16.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(payload);
    p
}

fn ra_client_remote(net: &Net) -> String {
    let ra = net.nodes[1]
        .ra_status(net.now)
        .expect("a remote-access gateway");
    assert_eq!(ra.clients.len(), 1, "{ra:?}");
    ra.clients[0].remote.clone()
}

#[test]
fn the_client_moves_and_the_gateway_follows_with_the_same_spis() {
    let mut net = Net::new(true);
    assert!(net.traffic_passes(1), "traffic before the move");
    let spis_client = net.spis(0);
    let spis_gw = net.spis(1);
    assert_eq!(spis_client.len(), 1);
    let vip = net.vip();
    assert!(
        ra_client_remote(&net).starts_with(OLD),
        "{}",
        ra_client_remote(&net)
    );

    // The old address is gone: the client's datagrams now leave from NEW only.
    net.client_ip = ip(NEW);
    let outcome = net.nodes[0].roam(net.now, ip(NEW));
    assert_eq!(
        outcome,
        RoamOutcome::Moving(vec!["roam-client".to_string()])
    );
    net.run_for(Duration::from_millis(200));

    let roamed: Vec<_> = net
        .client_events
        .iter()
        .filter_map(|o| match o {
            Output::Roamed { local, remote, .. } => Some((*local, *remote)),
            _ => None,
        })
        .collect();
    let new_local: SocketAddr = format!("{NEW}:4500").parse().unwrap();
    let gw_nat_t: SocketAddr = format!("{GW}:4500").parse().unwrap();
    assert_eq!(roamed, vec![(new_local, gw_nat_t)]);
    assert!(
        net.logs[0]
            .iter()
            .any(|l| l.contains(&format!("moved to {new_local} (MOBIKE)"))),
        "{:#?}",
        net.logs[0]
    );
    assert!(
        net.logs[1]
            .iter()
            .any(|l| l.contains("the peer moved to") && l.contains(NEW)),
        "{:#?}",
        net.logs[1]
    );
    assert_eq!(ra_client_remote(&net), new_local.to_string());
    assert!(net.traffic_passes(2), "traffic after the move");
    assert_eq!(net.spis(0), spis_client, "same SPIs on the client");
    assert_eq!(net.spis(1), spis_gw, "same SPIs on the gateway");
    assert_eq!(net.vip(), vip, "same virtual address");
    assert!(!net.client_events.iter().any(|o| matches!(
        o,
        Output::VirtualAddressLost { .. } | Output::RoamFailed { .. }
    )));

    // Later exchanges (liveness, rekeys) keep using the new path.
    net.run_for(Duration::from_secs(30));
    assert!(net.traffic_passes(3), "traffic 30 s after the move");
    assert_eq!(ra_client_remote(&net), new_local.to_string());
}

#[test]
fn without_mobike_on_the_gateway_the_client_is_told_to_reconnect() {
    let mut net = Net::new(false);
    assert!(net.traffic_passes(1));
    match net.nodes[0].roam(net.now, ip(NEW)) {
        RoamOutcome::Unsupported(why) => assert!(why.contains("MOBIKE"), "{why}"),
        other => panic!("{other:?}"),
    }
    // Nothing was sent or changed.
    net.run_for(Duration::from_millis(200));
    assert!(ra_client_remote(&net).starts_with(OLD));
    assert!(net.traffic_passes(2));
}

#[test]
fn a_move_nobody_answers_fails_and_says_so() {
    let mut net = Net::new(true);
    // The new address reaches nobody (a captive network): everything from it is lost.
    net.client_ip = ip("192.0.2.99");
    let outcome = net.nodes[0].roam(net.now, ip(NEW));
    assert!(matches!(outcome, RoamOutcome::Moving(_)), "{outcome:?}");
    // Retransmitted with the profile's defaults (2 s, doubling, 5 tries), then given up.
    net.run_for(Duration::from_secs(130));
    assert!(
        net.client_events
            .iter()
            .any(|o| matches!(o, Output::RoamFailed { why, .. } if why.contains("no answer"))),
        "{:?}",
        net.client_events
    );
}

#[test]
fn a_client_without_a_tunnel_has_nothing_to_move() {
    let mut c = client();
    assert_eq!(c.roam(Instant::now(), ip(NEW)), RoamOutcome::Nothing);
}

#[test]
fn the_client_still_moves_after_the_gateway_rekeyed_the_ike_sa() {
    // The gateway rekeys first (10 s lifetime): the client is no longer the initiator of the
    // IKE SA it holds, but still the side that decides its addresses (RFC 4555 3.1).
    let mut net = Net::with_gateway(gateway(true, "ike_lifetime = \"10s\""));
    net.run_for(Duration::from_secs(12));
    let sa = net.nodes[0].status(net.now).peers[0]
        .ike_sa
        .clone()
        .expect("an IKE SA");
    assert!(!sa.initiator, "the gateway initiated the rekey: {sa:?}");
    assert!(sa.mobike, "{sa:?}");
    net.client_ip = ip(NEW);
    let outcome = net.nodes[0].roam(net.now, ip(NEW));
    assert_eq!(
        outcome,
        RoamOutcome::Moving(vec!["roam-client".to_string()])
    );
    net.run_for(Duration::from_millis(200));
    assert!(net
        .client_events
        .iter()
        .any(|o| matches!(o, Output::Roamed { .. })));
    assert!(ra_client_remote(&net).starts_with(NEW));
    assert!(net.traffic_passes(4));
}
