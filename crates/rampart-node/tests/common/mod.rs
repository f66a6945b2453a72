//! The node's pair harness: two gateways back to back in virtual time (no sockets).
//!
//! Control datagrams go through `poll_output`, data packets through the returned
//! `Disposition`; the harness delivers both to the other gateway, addressing them as the
//! kernel would (UDP to the socket bound on the destination address/port, raw ESP by IP).
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::Instant;

use rampart_crypto::Rng;
use rampart_node::{Disposition, Gateway, Output};

pub const HEADROOM: usize = 64;

pub fn config(
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

pub struct Pair {
    pub now: Instant,
    pub gw: [Gateway; 2],
    pub addr: [IpAddr; 2],
    /// Inner packets each side wrote to its TUN device.
    pub tun_out: [Vec<Vec<u8>>; 2],
    /// Datagrams in flight: (to side, local addr at the receiver, remote addr, bytes, is raw ESP).
    pub wire: Vec<(usize, SocketAddr, SocketAddr, Vec<u8>, bool)>,
    pub esp_on_wire: [usize; 2],
    pub logs: [Vec<String>; 2],
    /// Route injection outputs of each side, in order.
    pub injections: [Vec<Output>; 2],
    pub drop_all: bool,
}

impl Pair {
    pub fn new(extra_a: &str, extra_b: &str) -> Pair {
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
            injections: [Vec::new(), Vec::new()],
            drop_all: false,
        }
    }

    pub fn side_of(&self, ip: IpAddr) -> usize {
        if ip == self.addr[0] {
            0
        } else {
            1
        }
    }

    pub fn collect_outputs(&mut self) {
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
                    Output::SendRawEsp {
                        local,
                        remote,
                        data,
                    } => {
                        let to = self.side_of(remote);
                        let (local, remote) =
                            (SocketAddr::new(local, 0), SocketAddr::new(remote, 0));
                        self.wire.push((to, remote, local, data, true));
                    }
                    Output::Log(record) => self.logs[side].push(record.message),
                    Output::RouteInject { .. } | Output::RouteWithdraw { .. } => {
                        self.injections[side].push(out)
                    }
                    Output::WriteTun { data } => self.tun_out[side].push(data),
                    Output::RouteAdd { .. }
                    | Output::RouteDel { .. }
                    | Output::ClaimAddress { .. }
                    | Output::ReleaseAddress { .. }
                    | Output::FullSyncConnect { .. }
                    | Output::VirtualAddress { .. }
                    | Output::VirtualAddressLost { .. }
                    | Output::TunnelMtu { .. }
                    | Output::Roamed { .. }
                    | Output::RoamFailed { .. } => {}
                }
            }
        }
    }

    pub fn deliver(&mut self) {
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

    pub fn dispose(&mut self, side: usize, d: Disposition, buf: &[u8]) {
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
    pub fn run_until(&mut self, until: Instant) {
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

    pub fn send_from_tun(&mut self, side: usize, packet: &[u8]) -> Disposition {
        let mut buf = vec![0u8; packet.len() + 2 * HEADROOM];
        buf[HEADROOM..HEADROOM + packet.len()].copy_from_slice(packet);
        let d = self.gw[side].handle_tun(self.now, &mut buf, HEADROOM..HEADROOM + packet.len());
        self.dispose(side, d.clone(), &buf);
        self.deliver();
        d
    }

    /// Seals `packet` from `side`'s TUN device and holds the result instead of putting it on
    /// the wire: (to side, local addr at the receiver, remote addr, bytes, is raw ESP).
    pub fn seal_held(
        &mut self,
        side: usize,
        packet: &[u8],
    ) -> (usize, SocketAddr, SocketAddr, Vec<u8>, bool) {
        self.deliver();
        let mut buf = vec![0u8; packet.len() + 2 * HEADROOM];
        buf[HEADROOM..HEADROOM + packet.len()].copy_from_slice(packet);
        let d = self.gw[side].handle_tun(self.now, &mut buf, HEADROOM..HEADROOM + packet.len());
        self.dispose(side, d.clone(), &buf);
        self.collect_outputs();
        let held = self
            .wire
            .pop()
            .unwrap_or_else(|| panic!("not sealed: {d:?}"));
        assert!(self.wire.is_empty(), "control traffic while sealing");
        held
    }

    /// Delivers one held datagram now; returns the receiver's disposition of it.
    pub fn deliver_held(
        &mut self,
        held: (usize, SocketAddr, SocketAddr, Vec<u8>, bool),
    ) -> Disposition {
        let (to, local, remote, data, raw) = held;
        let mut buf = vec![0u8; data.len() + 2 * HEADROOM];
        buf[HEADROOM..HEADROOM + data.len()].copy_from_slice(&data);
        let range = HEADROOM..HEADROOM + data.len();
        let d = if raw {
            self.gw[to].handle_raw_esp(self.now, local.ip(), remote.ip(), &mut buf, range)
        } else {
            self.gw[to].handle_udp(self.now, local, remote, &mut buf, range)
        };
        self.dispose(to, d.clone(), &buf);
        self.deliver();
        d
    }

    pub fn established(&self, side: usize) -> bool {
        let s = self.gw[side].status(self.now);
        s.peers[0].state == "established" && !s.peers[0].tunnels.is_empty()
    }
}

/// A minimal IPv4/UDP packet from `src` to `dst` with a payload.
pub fn udp_packet(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
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

/// The ESP-in-UDP datagrams a TUN batch was sealed into: (local, remote, bytes) of each
/// `SendUdp` disposition, its bytes in `bufs[i]`. Panics on any other disposition. Allocates
/// nothing (the allocation test measures around it).
pub fn sealed_datagrams<'a>(
    out: &'a [Disposition],
    bufs: &'a [Vec<u8>],
) -> impl Iterator<Item = (SocketAddr, SocketAddr, &'a [u8])> + 'a {
    out.iter().zip(bufs).enumerate().map(|(i, (d, buf))| {
        let Disposition::SendUdp {
            local,
            remote,
            data,
        } = d
        else {
            panic!("packet {i}: {d:?}");
        };
        (*local, *remote, &buf[data.clone()])
    })
}

/// A TUN batch as the I/O shell lays it out: each packet in its own buffer at `HEADROOM`, with
/// as much room after it; returns the buffers and the packets' ranges in them.
pub fn framed_batch(packets: &[Vec<u8>]) -> (Vec<Vec<u8>>, Vec<Range<usize>>) {
    let bufs = packets
        .iter()
        .map(|p| {
            let mut b = vec![0u8; p.len() + 2 * HEADROOM];
            b[HEADROOM..HEADROOM + p.len()].copy_from_slice(p);
            b
        })
        .collect();
    let ranges = packets
        .iter()
        .map(|p| HEADROOM..HEADROOM + p.len())
        .collect();
    (bufs, ranges)
}

/// An IPv4/UDP packet from `src:sport` to `dst:dport`.
pub fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = udp_packet(src, dst, payload);
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p
}

/// An IPv4/TCP packet with valid checksums.
pub fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&40u16.to_be_bytes());
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    let ip = rampart_wire::checksum::finish(rampart_wire::checksum::sum(0, &p[..20]));
    p[10..12].copy_from_slice(&ip.to_be_bytes());
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[32] = 5 << 4;
    p[33] = flags;
    p[34..36].copy_from_slice(&8192u16.to_be_bytes());
    let pseudo = rampart_wire::checksum::pseudo_header(&p[12..20], 6, 20);
    let l4 = rampart_wire::checksum::finish(rampart_wire::checksum::sum(pseudo, &p[20..]));
    p[36..38].copy_from_slice(&l4.to_be_bytes());
    p
}
