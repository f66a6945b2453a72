//! Multiple Entry Points at the node level (sans-IO): a satellite gateway and two entry-point
//! gateways exchange datagrams in memory; probes, IKE probes, resolution, failover, tracking
//! logs and status.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::{config, udp_packet, HEADROOM};
use rampart_crypto::Rng;
use rampart_mep::{
    EntryPointConfig, GroupConfig, GroupId, GroupKind, MepConfig, Method, PriorityLevels, ProbeKey,
    ProbeMode, ProbeSettings, ProbeState, ResponderConfig, SatelliteKey, StickySettings, TieBreak,
};
use rampart_node::{Disposition, Gateway, LogEvent, Output};

const PSK: &str = "0123456789abcdef0123456789abcdef";
const SAT: &str = "192.0.2.1";
const M: [&str; 2] = ["192.0.2.2", "192.0.2.3"];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The satellite: two peers (m1, m2) for the same remote domain, in one group.
fn satellite_config() -> rampart_config::GatewayConfig {
    let text = format!(
        r#"
[gateway]
name = "s"
status_socket = "/tmp/unused-mep-s.sock"
retransmit_timeout = "500ms"
retransmit_tries = 3

[tunnel]
device = "rps"

[local]
domain = ["10.1.0.0/24"]

[[peer]]
name = "m1"
local_address = "{SAT}"
remote_address = "{m1}"
psk = "{PSK}"
remote_domain = ["10.2.0.0/24"]

[[peer]]
name = "m2"
local_address = "{SAT}"
remote_address = "{m2}"
psk = "{PSK}"
remote_domain = ["10.2.0.0/24"]

[[entry_point_group]]
name = "hq"
peers = ["m1", "m2"]
"#,
        m1 = M[0],
        m2 = M[1],
    );
    rampart_config::parse(&text, "s.toml").expect("valid satellite config")
}

fn entry_point(name: &str, address: &str, probe: ProbeMode) -> EntryPointConfig {
    EntryPointConfig {
        name: name.into(),
        group: GroupId(0),
        address: ip(address),
        local: Some(ip(SAT)),
        own_domain: vec!["10.2.0.0/24".parse().unwrap()],
        probe,
        key: (probe != ProbeMode::Ike).then(|| ProbeKey::derive(PSK.as_bytes())),
    }
}

fn mep_config(modes: [ProbeMode; 2]) -> MepConfig {
    MepConfig {
        local_name: "s".into(),
        probe: ProbeSettings::default(),
        sticky: StickySettings::default(),
        entry_points: vec![
            entry_point("m1", M[0], modes[0]),
            entry_point("m2", M[1], modes[1]),
        ],
        groups: vec![GroupConfig {
            name: "hq".into(),
            kind: GroupKind::Explicit,
            method: Method::FirstToRespond,
            tie_break: TieBreak::FirstToRespond,
            members: vec![rampart_mep::EntryPointId(0), rampart_mep::EntryPointId(1)],
            levels: PriorityLevels::default(),
            domain: vec!["10.2.0.0/24".parse().unwrap()],
            tracking: true,
        }],
    }
}

fn responder_config() -> ResponderConfig {
    ResponderConfig {
        port: rampart_mep::DEFAULT_PROBE_PORT,
        satellites: vec![SatelliteKey {
            name: "s".into(),
            address: ip(SAT),
            key: ProbeKey::derive(PSK.as_bytes()),
        }],
        rate_per_source: 20,
        rate_total: 2000,
    }
}

/// Three gateways on one wire: 0 the satellite, 1 and 2 the entry points m1 and m2.
struct World {
    now: Instant,
    gw: Vec<Gateway>,
    addr: [IpAddr; 3],
    /// Datagrams take 1 ms per hop. A dead gateway receives nothing, sends nothing and runs no timers (kill -9).
    dead: [bool; 3],
    wire: Vec<(usize, SocketAddr, SocketAddr, Vec<u8>, bool)>,
    tun_out: [Vec<Vec<u8>>; 3],
    logs: [Vec<(LogEvent, String)>; 3],
    probes_sent: [usize; 3],
}

impl World {
    fn new(modes: [ProbeMode; 2]) -> World {
        let now = Instant::now();
        let mut s = Gateway::new(satellite_config(), now, Rng::from_seed([1; 32])).unwrap();
        s.set_mep(now, Some(mep_config(modes)), None, None);
        let mut gw = vec![s];
        for (i, addr) in M.iter().enumerate() {
            let name = format!("m{}", i + 1);
            let c = config(
                &name,
                addr,
                SAT,
                "10.2.0.0/24",
                "10.1.0.0/24",
                "start_action = \"none\"",
            );
            let mut g = Gateway::new(c, now, Rng::from_seed([2 + i as u8; 32])).unwrap();
            g.set_mep(now, None, Some(responder_config()), None);
            gw.push(g);
        }
        World {
            now,
            gw,
            addr: [ip(SAT), ip(M[0]), ip(M[1])],
            dead: [false; 3],
            wire: Vec::new(),
            tun_out: Default::default(),
            logs: Default::default(),
            probes_sent: [0; 3],
        }
    }

    fn side_of(&self, ip: IpAddr) -> usize {
        self.addr
            .iter()
            .position(|a| *a == ip)
            .expect("known address")
    }

    fn collect(&mut self) {
        for side in 0..3 {
            while let Some(out) = self.gw[side].poll_output() {
                match out {
                    Output::SendUdp {
                        local,
                        remote,
                        data,
                    } => {
                        if local.port() == rampart_mep::DEFAULT_PROBE_PORT {
                            self.probes_sent[side] += 1;
                        }
                        if !self.dead[side] {
                            let to = self.side_of(remote.ip());
                            self.wire.push((to, remote, local, data, false));
                        }
                    }
                    Output::Log(r) => self.logs[side].push((r.event, r.message)),
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
            // One millisecond on the wire: an answer is heard after its request was sent.
            self.now += Duration::from_millis(1);
            for (to, local, remote, data, raw) in std::mem::take(&mut self.wire) {
                if self.dead[to] {
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
        panic!("datagram storm");
    }

    fn dispose(&mut self, side: usize, d: Disposition, buf: &[u8]) {
        match d {
            Disposition::WriteTun { data } => self.tun_out[side].push(buf[data].to_vec()),
            Disposition::SendUdp {
                local,
                remote,
                data,
            } if !self.dead[side] => {
                let to = self.side_of(remote.ip());
                self.wire
                    .push((to, remote, local, buf[data].to_vec(), false));
            }
            Disposition::SendRawEsp {
                local,
                remote,
                data,
            } if !self.dead[side] => {
                let to = self.side_of(remote);
                self.wire.push((
                    to,
                    SocketAddr::new(remote, 0),
                    SocketAddr::new(local, 0),
                    buf[data].to_vec(),
                    true,
                ));
            }
            _ => {}
        }
    }

    fn run(&mut self, d: Duration) {
        let until = self.now + d;
        self.deliver();
        loop {
            let next = (0..3)
                .filter(|i| !self.dead[*i])
                .filter_map(|i| self.gw[i].poll_timeout())
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    for i in 0..3 {
                        if !self.dead[i] && self.gw[i].poll_timeout().is_some_and(|t| t <= self.now)
                        {
                            self.gw[i].handle_timeout(self.now);
                        }
                    }
                    self.deliver();
                }
                _ => break,
            }
        }
        self.now = until;
    }

    /// A packet from the satellite's site; returns which entry point's site received it.
    fn send(&mut self, src_port: u16) -> Option<usize> {
        let mut p = udp_packet([10, 1, 0, 5], [10, 2, 0, 7], b"through an entry point");
        p[20..22].copy_from_slice(&src_port.to_be_bytes());
        let before = [self.tun_out[1].len(), self.tun_out[2].len()];
        let mut buf = vec![0u8; p.len() + 2 * HEADROOM];
        buf[HEADROOM..HEADROOM + p.len()].copy_from_slice(&p);
        let d = self.gw[0].handle_tun(self.now, &mut buf, HEADROOM..HEADROOM + p.len());
        self.dispose(0, d, &buf);
        self.deliver();
        (1..3).find(|&i| self.tun_out[i].len() > before[i - 1])
    }

    fn state_of(&self, name: &str) -> ProbeState {
        let status = self.gw[0].mep_status(self.now).expect("satellite has MEP");
        status.groups[0]
            .entry_points
            .iter()
            .find(|e| e.name == name)
            .expect("entry point in status")
            .state
    }

    fn resolved_lines(&self) -> Vec<&String> {
        self.logs[0]
            .iter()
            .filter(|(e, _)| matches!(e, LogEvent::MepResolved { .. }))
            .map(|(_, m)| m)
            .collect()
    }
}

#[test]
fn probes_answered_then_failover_for_new_and_existing_connections() {
    let mut w = World::new([ProbeMode::Rampart, ProbeMode::Rampart]);
    w.run(Duration::from_secs(3));
    assert_eq!(w.state_of("m1"), ProbeState::Up);
    assert_eq!(w.state_of("m2"), ProbeState::Up);
    assert!(
        w.probes_sent[0] >= 4,
        "satellite probes: {}",
        w.probes_sent[0]
    );
    assert!(w.probes_sent[1] >= 2, "m1 replies: {}", w.probes_sent[1]);

    let first = w.send(40000).expect("delivered through an entry point");
    // Sticky: the same connection stays, another goes to the first-to-respond choice too.
    assert_eq!(w.send(40000), Some(first));
    assert_eq!(w.send(40001), Some(first));
    let lines = w.resolved_lines();
    assert_eq!(
        lines.len(),
        2,
        "one tracking line per new connection: {lines:#?}"
    );
    let name = format!("m{first}");
    assert_eq!(
        lines[0],
        &format!("MEP hq: resolved {name} (primary, responding) for 10.1.0.5 -> 10.2.0.7 udp")
    );

    // kill -9 the chosen entry point: within 1.5 s it is down and traffic moves.
    w.dead[first] = true;
    w.run(Duration::from_millis(1500));
    let other = 3 - first;
    assert_eq!(w.state_of(&name), ProbeState::Down);
    assert_eq!(w.state_of(&format!("m{other}")), ProbeState::Up);
    assert!(
        w.logs[0]
            .iter()
            .any(|(e, m)| matches!(e, LogEvent::EntryPoint { up: false, .. }) && m.contains(&name)),
        "no down line for {name}"
    );
    assert_eq!(w.send(40002), Some(other), "a new connection");
    assert_eq!(w.send(40000), Some(other), "an existing connection");
}

#[test]
fn status_shows_groups_and_the_responder() {
    let mut w = World::new([ProbeMode::Rampart, ProbeMode::Rampart]);
    w.run(Duration::from_secs(3));
    let s = serde_json::to_value(w.gw[0].status(w.now)).unwrap();
    assert_eq!(s["mep"]["groups"][0]["name"], "hq");
    assert_eq!(
        s["mep"]["groups"][0]["entry_points"]
            .as_array()
            .map(|a| a.len()),
        Some(2)
    );
    let m1 = w.gw[1].mep_status(w.now).expect("responder status");
    let responder = m1.responder.expect("m1 answers probes");
    assert!(responder.replies >= 2, "{responder:?}");
    assert_eq!(responder.rejected.unknown_source, 0);
    // Tunnels are reported per entry point (both preconnected by start_action always).
    let sat = w.gw[0].mep_status(w.now).unwrap();
    assert!(sat.groups[0].entry_points.iter().all(|e| e.tunnel_up));
    // The shell binds one probe socket: the satellite's local address.
    assert_eq!(
        w.gw[0].probe_sockets(),
        vec![SocketAddr::new(ip(SAT), rampart_mep::DEFAULT_PROBE_PORT)]
    );
    assert_eq!(
        w.gw[1].probe_sockets(),
        vec![SocketAddr::new(ip(M[0]), rampart_mep::DEFAULT_PROBE_PORT)]
    );
}

#[test]
fn a_forged_reply_is_refused_counted_and_logged_once() {
    let mut w = World::new([ProbeMode::Rampart, ProbeMode::Rampart]);
    w.run(Duration::from_secs(2));
    let local = SocketAddr::new(ip(SAT), rampart_mep::DEFAULT_PROBE_PORT);
    let from = SocketAddr::new(ip(M[0]), rampart_mep::DEFAULT_PROBE_PORT);
    // A reply-shaped datagram with a nonce and MAC nobody made.
    let mut forged = b"RMEP\x01\x02\x00\x00".to_vec();
    forged.extend_from_slice(&[0x42; 32]);
    for _ in 0..2 {
        let mut buf = forged.clone();
        let n = buf.len();
        let d = w.gw[0].handle_udp(w.now, local, from, &mut buf, 0..n);
        assert!(matches!(d, Disposition::Dropped(_)), "{d:?}");
    }
    w.collect();
    let refused = w.logs[0]
        .iter()
        .filter(|(e, _)| matches!(e, LogEvent::ProbeRejected { .. }))
        .count();
    assert_eq!(refused, 1);
    let status = w.gw[0].mep_status(w.now).unwrap();
    let r = status.groups[0].entry_points[0].rejected;
    assert_eq!(r.forged + r.replayed + r.malformed, 2, "{r:?}");
    assert_eq!(w.state_of("m1"), ProbeState::Up);
}

#[test]
fn a_third_party_entry_point_is_probed_with_ike_liveness() {
    let mut w = World::new([ProbeMode::Rampart, ProbeMode::Ike]);
    w.run(Duration::from_secs(3));
    assert_eq!(w.state_of("m2"), ProbeState::Up);
    let status = w.gw[0].mep_status(w.now).unwrap();
    assert_eq!(status.groups[0].entry_points[1].probing_with, "ike");
    w.dead[2] = true;
    w.run(Duration::from_secs(3));
    assert_eq!(w.state_of("m2"), ProbeState::Down);
    assert_eq!(w.state_of("m1"), ProbeState::Up);
}
