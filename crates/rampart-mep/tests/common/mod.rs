//! A simulated satellite for engine tests: entry points probed with IKE liveness (the probe
//! mode that needs no datagram format), each alive or dead with its own RTT.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use rampart_mep::{
    EntryPointConfig, EntryPointId, FlowKey, GroupConfig, GroupId, GroupKind, Mep, MepConfig,
    MepEvent, Method, PriorityLevels, ProbeMode, ProbeSettings, StickySettings, TieBreak, Transmit,
};

pub const G: GroupId = GroupId(0);

pub fn ep(i: u32, domain: &str) -> EntryPointConfig {
    EntryPointConfig {
        name: format!("m{i}"),
        group: G,
        address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10 + i as u8)),
        local: None,
        own_domain: vec![domain.parse().unwrap()],
        probe: ProbeMode::Ike,
        key: None,
    }
}

pub fn config(n: u32, method: Method, kind: GroupKind, levels: [Vec<u32>; 3]) -> MepConfig {
    MepConfig {
        local_name: "sat".into(),
        probe: ProbeSettings::default(),
        sticky: StickySettings::default(),
        entry_points: (0..n).map(|i| ep(i, &format!("10.{i}.0.0/16"))).collect(),
        groups: vec![GroupConfig {
            name: "hq".into(),
            kind,
            method,
            tie_break: TieBreak::FirstToRespond,
            members: (0..n).map(EntryPointId).collect(),
            levels: PriorityLevels(levels.map(|l| l.into_iter().map(EntryPointId).collect())),
            domain: vec!["10.0.0.0/8".parse().unwrap()],
            tracking: true,
        }],
    }
}

pub fn flow(host: u32, port: u16) -> FlowKey {
    FlowKey {
        src: IpAddr::V4(Ipv4Addr::from(0xac10_0000 + host)),
        dst: IpAddr::V4(Ipv4Addr::new(10, 200, 0, 1)),
        protocol: 6,
        src_port: port,
        dst_port: 443,
    }
}

pub struct Sim {
    pub mep: Mep,
    pub now: Instant,
    pub alive: Vec<bool>,
    pub rtt: Vec<Duration>,
    /// IKE liveness answers in flight: (arrival, entry point).
    pending: Vec<(Instant, EntryPointId)>,
    pub events: Vec<MepEvent>,
}

impl Sim {
    pub fn new(config: MepConfig) -> Sim {
        let n = config.entry_points.len();
        let now = Instant::now();
        Sim {
            mep: Mep::new(config, now, [7; 32]),
            now,
            alive: vec![true; n],
            rtt: (0..n)
                .map(|i| Duration::from_millis(10 + 10 * i as u64))
                .collect(),
            pending: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Runs the engine's timers and the simulated entry points for `d`.
    pub fn run(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.drain();
            let next = [
                self.mep.poll_timeout(),
                self.pending.iter().map(|p| p.0).min(),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    let (due, rest): (Vec<_>, Vec<_>) =
                        self.pending.drain(..).partition(|p| p.0 <= now);
                    self.pending = rest;
                    for (_, ep) in due {
                        self.mep.handle_ike_heard(now, ep, Some(now));
                    }
                    self.mep.handle_timeout(now);
                }
                _ => break,
            }
        }
        self.now = end;
        self.mep.handle_timeout(end);
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(t) = self.mep.poll_transmit() {
            if let Transmit::IkeProbe { entry_point } = t {
                let i = entry_point.0 as usize;
                if self.alive[i] {
                    self.pending.push((self.now + self.rtt[i], entry_point));
                }
            }
        }
        while let Some(e) = self.mep.poll_event() {
            self.events.push(e);
        }
    }

    /// Kills or revives entry point `i` (answers in flight from a killed one are lost).
    pub fn set_alive(&mut self, i: u32, alive: bool) {
        self.alive[i as usize] = alive;
        if !alive {
            self.pending.retain(|p| p.1 != EntryPointId(i));
        }
    }

    /// Every event so far (including those of `resolve` calls since the last run).
    pub fn take_events(&mut self) -> Vec<MepEvent> {
        self.drain();
        std::mem::take(&mut self.events)
    }
}
