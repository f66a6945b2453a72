//! Two gateways back to back in virtual time: the node's own pair harness (no sockets).
//!
//! Control datagrams go through `poll_output`, data packets through the returned
//! `Disposition`; the harness delivers both to the other gateway, addressing them as the
//! kernel would (UDP to the socket bound on the destination address/port, raw ESP by IP).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rampart_crypto::Rng;
use rampart_node::{Disposition, Gateway, Output};

const HEADROOM: usize = 64;

fn config(
    name: &str,
    local: &str,
    remote: &str,
    domain: &str,
    remote_domain: &str,
    extra: &str,
) -> rampart_config::GatewayConfig {
    let text = format!(
        r#"
[gateway]
name = "{name}"
status_socket = "/tmp/unused-{name}.sock"
retransmit_timeout = "500ms"
retransmit_tries = 3

[tunnel]
device = "rp{name}"

[local]
domain = ["{domain}"]

[[peer]]
name = "other"
local_address = "{local}"
remote_address = "{remote}"
psk = "0123456789abcdef0123456789abcdef"
remote_domain = ["{remote_domain}"]
liveness_interval = "2s"
{extra}
"#
    );
    rampart_config::parse(&text, &format!("{name}.toml")).expect("valid test config")
}

struct Pair {
    now: Instant,
    gw: [Gateway; 2],
    addr: [IpAddr; 2],
    /// Inner packets each side wrote to its TUN device.
    tun_out: [Vec<Vec<u8>>; 2],
    /// Datagrams in flight: (to side, local addr at the receiver, remote addr, bytes, is raw ESP).
    wire: Vec<(usize, SocketAddr, SocketAddr, Vec<u8>, bool)>,
    esp_on_wire: [usize; 2],
    logs: [Vec<String>; 2],
    drop_all: bool,
}

impl Pair {
    fn new(extra_a: &str, extra_b: &str) -> Pair {
        let now = Instant::now();
        let a = config(
            "a",
            "192.0.2.1",
            "192.0.2.2",
            "10.1.0.0/24",
            "10.2.0.0/24",
            extra_a,
        );
        let b = config(
            "b",
            "192.0.2.2",
            "192.0.2.1",
            "10.2.0.0/24",
            "10.1.0.0/24",
            extra_b,
        );
        Pair {
            now,
            gw: [
                Gateway::new(a, now, Rng::from_seed([1; 32])).unwrap(),
                Gateway::new(b, now, Rng::from_seed([2; 32])).unwrap(),
            ],
            addr: ["192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap()],
            tun_out: [Vec::new(), Vec::new()],
            wire: Vec::new(),
            esp_on_wire: [0, 0],
            logs: [Vec::new(), Vec::new()],
            drop_all: false,
        }
    }

    fn side_of(&self, ip: IpAddr) -> usize {
        if ip == self.addr[0] {
            0
        } else {
            1
        }
    }

    fn collect_outputs(&mut self) {
        for side in 0..2 {
            while let Some(out) = self.gw[side].poll_output() {
                match out {
                    Output::SendUdp {
                        local,
                        remote,
                        data,
                    } => {
                        let to = self.side_of(remote.ip());
                        assert_ne!(to, side, "a gateway sent to itself");
                        self.wire.push((to, remote, local, data, false));
                    }
                    Output::Log(record) => self.logs[side].push(record.message),
                    Output::RouteAdd { .. } | Output::RouteDel { .. } => {}
                }
            }
        }
    }

    fn deliver(&mut self) {
        let mut rounds = 0;
        loop {
            self.collect_outputs();
            if self.wire.is_empty() {
                return;
            }
            rounds += 1;
            assert!(rounds < 1000, "datagram storm");
            for (to, local, remote, data, raw) in std::mem::take(&mut self.wire) {
                if self.drop_all {
                    continue;
                }
                let mut buf = vec![0u8; data.len() + 2 * HEADROOM];
                buf[HEADROOM..HEADROOM + data.len()].copy_from_slice(&data);
                let range = HEADROOM..HEADROOM + data.len();
                let d = if raw {
                    self.gw[to].handle_raw_esp(self.now, local.ip(), remote.ip(), &mut buf, range)
                } else {
                    self.gw[to].handle_udp(self.now, local, remote, &mut buf, range)
                };
                self.dispose(to, d, &buf);
            }
        }
    }

    fn dispose(&mut self, side: usize, d: Disposition, buf: &[u8]) {
        match d {
            Disposition::WriteTun { data } => self.tun_out[side].push(buf[data].to_vec()),
            Disposition::SendUdp {
                local,
                remote,
                data,
            } => {
                self.esp_on_wire[side] += 1;
                let to = self.side_of(remote.ip());
                self.wire
                    .push((to, remote, local, buf[data].to_vec(), false));
            }
            Disposition::SendRawEsp {
                local,
                remote,
                data,
            } => {
                self.esp_on_wire[side] += 1;
                let to = self.side_of(remote);
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

    /// Advances virtual time to `until`, firing timers and delivering everything on the way.
    fn run_until(&mut self, until: Instant) {
        self.deliver();
        loop {
            let next = self.gw.iter().filter_map(|g| g.poll_timeout()).min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    for g in &mut self.gw {
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

    fn send_from_tun(&mut self, side: usize, packet: &[u8]) -> Disposition {
        let mut buf = vec![0u8; packet.len() + 2 * HEADROOM];
        buf[HEADROOM..HEADROOM + packet.len()].copy_from_slice(packet);
        let d = self.gw[side].handle_tun(self.now, &mut buf, HEADROOM..HEADROOM + packet.len());
        self.dispose(side, d.clone(), &buf);
        self.deliver();
        d
    }

    fn established(&self, side: usize) -> bool {
        let s = self.gw[side].status(self.now);
        s.peers[0].state == "established" && !s.peers[0].tunnels.is_empty()
    }
}

/// A minimal IPv4/UDP packet from `src` to `dst` with a payload.
fn udp_packet(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    let mut sum: u32 = 0;
    for i in (0..20).step_by(2) {
        sum += u32::from(u16::from_be_bytes([p[i], p[i + 1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p[20..22].copy_from_slice(&4000u16.to_be_bytes());
    p[22..24].copy_from_slice(&5000u16.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(payload);
    p
}

#[test]
fn tunnel_comes_up_and_carries_traffic_both_ways() {
    let mut pair = Pair::new("", "start_action = \"none\"");
    let t = pair.now + Duration::from_secs(3);
    pair.run_until(t);
    assert!(
        pair.established(0) && pair.established(1),
        "{:#?}",
        pair.gw[0].status(pair.now)
    );

    let ab = udp_packet([10, 1, 0, 5], [10, 2, 0, 7], b"hello from site a");
    pair.send_from_tun(0, &ab);
    assert_eq!(pair.tun_out[1], vec![ab.clone()]);
    let ba = udp_packet([10, 2, 0, 7], [10, 1, 0, 5], b"and back from b");
    pair.send_from_tun(1, &ba);
    assert_eq!(pair.tun_out[0], vec![ba]);

    let s = pair.gw[0].status(pair.now);
    assert_eq!(s.peers[0].tunnels[0].packets_out, 1);
    assert_eq!(s.peers[0].tunnels[0].packets_in, 1);
    assert_eq!(s.peers[0].tunnels[0].encapsulation, "esp");
}

#[test]
fn traffic_outside_the_domains_is_not_tunnelled() {
    let mut pair = Pair::new("", "");
    let t = pair.now + Duration::from_secs(3);
    pair.run_until(t);
    let stray = udp_packet([10, 9, 0, 5], [10, 2, 0, 7], b"not ours");
    assert!(matches!(
        pair.send_from_tun(0, &stray),
        Disposition::Dropped(_)
    ));
    assert!(pair.tun_out[1].is_empty());
}

#[test]
fn forced_encapsulation_uses_esp_in_udp() {
    let mut pair = Pair::new("encapsulation = \"force\"", "");
    let t = pair.now + Duration::from_secs(3);
    pair.run_until(t);
    assert!(pair.established(0));
    let ab = udp_packet([10, 1, 0, 5], [10, 2, 0, 7], b"udp encapsulated");
    let d = pair.send_from_tun(0, &ab);
    assert!(
        matches!(d, Disposition::SendUdp { remote, .. } if remote.port() == 4500),
        "{d:?}"
    );
    assert_eq!(pair.tun_out[1], vec![ab]);
}

#[test]
fn rekeys_keep_traffic_flowing() {
    let mut pair = Pair::new("child_lifetime = \"20s\"\nike_lifetime = \"45s\"", "");
    let mut t = pair.now;
    let mut spis = std::collections::BTreeSet::new();
    for i in 0..120u32 {
        t += Duration::from_millis(500);
        pair.run_until(t);
        if i < 4 {
            continue;
        }
        let p = udp_packet([10, 1, 0, 5], [10, 2, 0, 7], &i.to_be_bytes());
        pair.send_from_tun(0, &p);
        assert_eq!(pair.tun_out[1].last(), Some(&p), "packet {i} lost");
        for tunnel in &pair.gw[0].status(pair.now).peers[0].tunnels {
            spis.insert(tunnel.spi_out.clone());
        }
    }
    assert!(
        spis.len() >= 3,
        "expected CHILD SA rekeys, saw SPIs {spis:?}"
    );
}

#[test]
fn dead_peer_is_detected() {
    let mut pair = Pair::new("", "");
    let t = pair.now + Duration::from_secs(3);
    pair.run_until(t);
    assert!(pair.established(0));
    pair.drop_all = true;
    let t = pair.now + Duration::from_secs(10);
    pair.run_until(t);
    assert_eq!(pair.gw[0].status(pair.now).peers[0].tunnels.len(), 0);
    assert!(
        pair.logs[0].iter().any(|l| l.contains("is dead")),
        "no dead-peer log: {:#?}",
        pair.logs[0]
    );
    // The peer comes back: start_action = always re-initiates and the tunnel returns.
    pair.drop_all = false;
    let t = pair.now + Duration::from_secs(20);
    pair.run_until(t);
    assert!(pair.established(0) && pair.established(1));
}

#[test]
fn simultaneous_start_converges_to_one_tunnel() {
    let mut pair = Pair::new("", "");
    let t = pair.now + Duration::from_secs(5);
    pair.run_until(t);
    for side in 0..2 {
        let s = pair.gw[side].status(pair.now);
        assert_eq!(s.peers[0].tunnels.len(), 1, "side {side}: {s:#?}");
    }
    let ab = udp_packet([10, 1, 0, 5], [10, 2, 0, 7], b"one tunnel");
    pair.send_from_tun(0, &ab);
    assert_eq!(pair.tun_out[1], vec![ab]);
}

#[test]
fn byte_lifetime_rekeys_at_the_soft_limit_without_drops() {
    // 64 KiB soft limit, hard 10% above: the rekey must start at the packet that crosses the soft
    // limit, not at the next timer tick, or a fast sender runs into the hard limit.
    let mut pair = Pair::new(
        "child_lifetime_bytes = \"64KiB\"",
        "start_action = \"none\"",
    );
    let t = pair.now + Duration::from_secs(3);
    pair.run_until(t);
    assert!(pair.established(0));
    let first = pair.gw[0].status(pair.now).peers[0].tunnels[0]
        .spi_out
        .clone();
    let payload = vec![0x5a; 1000];
    // 200 packets of ~1 KB in the same instant: no timer runs in between.
    for _ in 0..200 {
        let p = udp_packet([10, 1, 0, 5], [10, 2, 0, 7], &payload);
        assert!(
            !matches!(pair.send_from_tun(0, &p), Disposition::Dropped(_)),
            "a packet was dropped around the byte-lifetime rekey"
        );
    }
    assert_eq!(pair.tun_out[1].len(), 200);
    let now_spi = pair.gw[0].status(pair.now).peers[0]
        .tunnels
        .iter()
        .map(|t| t.spi_out.clone())
        .collect::<Vec<_>>();
    assert!(
        !now_spi.contains(&first) || now_spi.len() > 1,
        "no rekey happened: {now_spi:?}"
    );
}
