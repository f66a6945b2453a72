//! The satellite's engine: probing (`prober.rs`) plus selection (`select.rs`) plus bindings
//! (`sticky.rs`), behind one sans-IO surface.

use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rampart_crypto::Rng;

use crate::config::{EntryPointId, GroupId, MepConfig, Method};
use crate::probe::ProbeError;
use crate::prober::{ProbeChange, Prober};
use crate::select::{FtrOrder, HashKeys, ProbeView, Selector};
use crate::status::{EntryPointStatus, GroupStatus, MepStatus, ProbeState, RejectCounters};
use crate::sticky::{Bound, StickyTable};

/// Distinct sources whose first refused probe reply is reported as an event; later sources
/// are only counted (a flood of spoofed sources cannot grow the set without bound).
const MAX_REPORTED_REJECT_SOURCES: usize = 256;

/// What identifies a connection for stickiness (after the satellite's own NAT, as the packet
/// enters the tunnel). ICMP echo: the identifier in `src_port`, 0 in `dst_port`; protocols
/// without ports: both 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub src_port: u16,
    pub dst_port: u16,
}

/// Priority of a resolved entry point, as the tracking log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    Primary,
    Secondary,
    Tertiary,
    Backup,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Primary => "primary",
            Level::Secondary => "secondary",
            Level::Tertiary => "tertiary",
            Level::Backup => "backup",
        }
    }
}

/// The answer to [`Mep::resolve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolution {
    pub entry_point: EntryPointId,
    pub level: Level,
    /// Whether it answers probes now. False only when no allowed entry point responds; the
    /// packet then goes to the best-ranked allowed one (its tunnel attempt may still work).
    pub responding: bool,
    /// True when this call created the binding (a new connection, or a re-resolution after
    /// its entry point went down).
    pub new: bool,
}

/// What the engine asks the shell (through the node) to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// A probe datagram to `remote` (port: the probe port) from `local` (port: the probe
    /// port; address `None`: any).
    Probe {
        entry_point: EntryPointId,
        local: Option<IpAddr>,
        remote: SocketAddr,
        data: Vec<u8>,
    },
    /// Probe `entry_point` with IKEv2 liveness: if its IKE SA is established, start an empty
    /// INFORMATIONAL unless one is in flight; if there is none, initiate one. Then report
    /// with [`Mep::handle_ike_heard`].
    IkeProbe { entry_point: EntryPointId },
}

/// What happened, for logs and the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MepEvent {
    EntryPointUp {
        entry_point: EntryPointId,
        rtt: Duration,
    },
    EntryPointDown {
        entry_point: EntryPointId,
        misses: u32,
    },
    /// A resolution of a group with `tracking = true`.
    Resolved {
        group: GroupId,
        flow: FlowKey,
        resolution: Resolution,
    },
    /// The first refusal of a probe reply from `from` (later ones are only counted).
    ProbeRejected { from: SocketAddr, error: ProbeError },
}

/// The satellite's MEP engine. Invariant: [`Mep::resolve`] only ever returns a member of the
/// asked group allowed by its method's rules, and a responding one whenever one exists.
///
/// A connection ([`FlowKey`]) keeps its entry point while that entry point is up; when it is
/// not up any more the connection is resolved again (`Resolution::new` set). Bindings are
/// bounded by [`crate::StickySettings`]; at capacity a connection is resolved on every packet
/// without a binding (counted in [`GroupStatus::sticky_full`]).
pub struct Mep {
    config: MepConfig,
    prober: Prober,
    selector: Selector,
    /// Per group: the first-to-respond memory (method and tie-break).
    ftr: Vec<FtrOrder>,
    sticky: StickyTable,
    events: VecDeque<MepEvent>,
    groups: Vec<GroupCounters>,
    entry_points: Vec<EntryPointCounters>,
    reject_sources: HashSet<SocketAddr>,
}

#[derive(Debug, Default, Clone, Copy)]
struct GroupCounters {
    resolutions: u64,
    none_responding: u64,
    sticky_full: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct EntryPointCounters {
    chosen: u64,
    tunnel_up: bool,
}

impl ProbeView for Prober {
    fn is_up(&self, entry_point: EntryPointId) -> bool {
        Prober::is_up(self, entry_point)
    }

    fn srtt(&self, entry_point: EntryPointId) -> Option<Duration> {
        Prober::srtt(self, entry_point)
    }
}

impl Mep {
    /// `seed` keys the per-pair random choice and the per-satellite random tie-break (give
    /// fresh randomness per process; tests give a fixed seed).
    ///
    /// # Panics
    /// If the configuration is inconsistent: a group without members, an entry point or group
    /// id out of range, an entry point whose `group` does not list it, or a priority level
    /// naming a non-member (the configuration layer never builds such a configuration).
    pub fn new(config: MepConfig, now: Instant, seed: [u8; 32]) -> Mep {
        validate(&config);
        let mut rng = Rng::from_seed(seed);
        let keys = HashKeys {
            pair: [rng.next_u64(), rng.next_u64()],
            satellite: [rng.next_u64(), rng.next_u64()],
        };
        let prober = Prober::new(&config.probe, &config.entry_points, now, rng);
        let selector = Selector::new(keys, &config.entry_points);
        let ftr = config
            .groups
            .iter()
            .map(|g| FtrOrder::with_members(g.members.len()))
            .collect();
        let sticky = StickyTable::new(
            &config.sticky,
            config.entry_points.len(),
            config.groups.len(),
        );
        Mep {
            groups: vec![GroupCounters::default(); config.groups.len()],
            entry_points: vec![EntryPointCounters::default(); config.entry_points.len()],
            config,
            prober,
            selector,
            ftr,
            sticky,
            events: VecDeque::new(),
            reject_sources: HashSet::new(),
        }
    }

    pub fn config(&self) -> &MepConfig {
        &self.config
    }

    /// Runs probe timers (sends, timeouts, misses) and one step of the binding table's idle
    /// sweep.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.prober.handle_timeout(now);
        self.drain_changes();
        self.sticky.sweep(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.prober.poll_timeout(), self.sticky.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.prober.poll_transmit()
    }

    pub fn poll_event(&mut self) -> Option<MepEvent> {
        self.events.pop_front()
    }

    /// A probe reply that arrived on the probe port from `from`.
    pub fn handle_reply(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
    ) -> Result<EntryPointId, ProbeError> {
        let result = self.prober.handle_reply(now, from, data);
        self.drain_changes();
        if let Err(error) = result {
            if self.reject_sources.len() < MAX_REPORTED_REJECT_SOURCES
                && self.reject_sources.insert(from)
            {
                self.events
                    .push_back(MepEvent::ProbeRejected { from, error });
            }
        }
        result
    }

    /// For an entry point probed by IKE: when the last authenticated IKE message from it
    /// arrived (`None`: no established IKE SA). Call after each [`Transmit::IkeProbe`] was
    /// acted on and on every timeout.
    pub fn handle_ike_heard(
        &mut self,
        now: Instant,
        entry_point: EntryPointId,
        last_heard: Option<Instant>,
    ) {
        self.prober.handle_ike_heard(now, entry_point, last_heard);
        self.drain_changes();
    }

    /// Turns probe verdict changes into events; an entry point that went down loses its
    /// first-to-respond standing (when it comes back it competes on RTT again).
    fn drain_changes(&mut self) {
        while let Some(change) = self.prober.poll_change() {
            match change {
                ProbeChange::Up { entry_point, rtt } => {
                    self.events
                        .push_back(MepEvent::EntryPointUp { entry_point, rtt });
                }
                ProbeChange::Down {
                    entry_point,
                    misses,
                } => {
                    let group = self.config.entry_points[entry_point.0 as usize].group;
                    self.ftr[group.0 as usize].forget(entry_point);
                    self.events.push_back(MepEvent::EntryPointDown {
                        entry_point,
                        misses,
                    });
                }
            }
        }
    }

    /// The entry point that carries `flow` (a packet towards `group`'s domain). Per packet:
    /// must not allocate once the binding exists.
    ///
    /// A bound connection whose entry point is up keeps it (`new: false`). Otherwise the
    /// group's method chooses (`new: true` when that creates or moves the binding, and then
    /// the resolution is counted and, with `tracking`, reported as [`MepEvent::Resolved`]).
    /// A bound connection whose entry point is down while no allowed entry point responds
    /// stays bound (`new: false`) when the method's fallback is that same entry point.
    ///
    /// # Panics
    /// If `group` is not a group of the configuration.
    pub fn resolve(&mut self, now: Instant, group: GroupId, flow: &FlowKey) -> Resolution {
        self.resolve_flow(now, group, flow, false)
    }

    /// [`Mep::resolve`] for a packet that opens a connection (a TCP SYN without ACK): a
    /// binding left by an earlier connection with the same addresses and ports (a reused
    /// source port) does not decide it; the group's method does, as for any new connection.
    /// A retransmitted SYN finds the binding its first copy made and keeps it when the method
    /// still picks that entry point (not counted twice).
    pub fn resolve_opening(&mut self, now: Instant, group: GroupId, flow: &FlowKey) -> Resolution {
        self.resolve_flow(now, group, flow, true)
    }

    fn resolve_flow(
        &mut self,
        now: Instant,
        group: GroupId,
        flow: &FlowKey,
        opening: bool,
    ) -> Resolution {
        let g = group.0 as usize;
        let bound = self.sticky.lookup(now, flow).filter(|b| b.group == group);
        if let Some(b) = bound {
            if !opening && self.prober.is_up(b.entry_point) {
                return Resolution {
                    entry_point: b.entry_point,
                    level: b.level,
                    responding: true,
                    new: false,
                };
            }
        }
        let choice = self.selector.select(
            &self.config.groups[g],
            &self.config.entry_points,
            &self.ftr[g],
            &self.prober,
            flow,
        );
        if choice.adopt {
            self.ftr[g].adopt(choice.entry_point);
        }
        let mut resolution = Resolution {
            entry_point: choice.entry_point,
            level: choice.level,
            responding: choice.responding,
            new: false,
        };
        if let Some(b) = bound.filter(|b| b.entry_point == choice.entry_point) {
            if opening {
                // The same connection's SYN again: its binding stands as it was.
                resolution.level = b.level;
            }
            return resolution;
        }
        match self
            .sticky
            .bind(now, flow, group, choice.entry_point, choice.level)
        {
            Bound::Full => {
                self.groups[g].sticky_full += 1;
                return resolution;
            }
            Bound::Created | Bound::Moved => {}
        }
        resolution.new = true;
        let counters = &mut self.groups[g];
        counters.resolutions += 1;
        if !choice.responding {
            counters.none_responding += 1;
        }
        self.entry_points[choice.entry_point.0 as usize].chosen += 1;
        if self.config.groups[g].tracking {
            self.events.push_back(MepEvent::Resolved {
                group,
                flow: *flow,
                resolution,
            });
        }
        resolution
    }

    /// The node tells whether it has an established tunnel to `entry_point` (status only).
    pub fn set_tunnel_up(&mut self, entry_point: EntryPointId, up: bool) {
        self.entry_points[entry_point.0 as usize].tunnel_up = up;
    }

    pub fn is_up(&self, entry_point: EntryPointId) -> bool {
        self.prober.is_up(entry_point)
    }

    /// What a new connection of `group` gets now, for methods with one choice for all
    /// connections (first-to-respond as method or tie-break, priority-list, primary-backup):
    /// the responding entry point a new connection would go to; `None` when none responds
    /// or the method chooses per address pair.
    fn current(&self, group: usize) -> Option<EntryPointId> {
        let config = &self.config.groups[group];
        if matches!(config.method, Method::Random | Method::LoadDistribution) {
            return None;
        }
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let flow = FlowKey {
            src: any,
            dst: any,
            protocol: 0,
            src_port: 0,
            dst_port: 0,
        };
        let choice = self.selector.select(
            config,
            &self.config.entry_points,
            &self.ftr[group],
            &self.prober,
            &flow,
        );
        choice.responding.then_some(choice.entry_point)
    }

    /// Every group with its entry points' probe state and counters. `responder` is `None`:
    /// the node owns the [`crate::Responder`] and fills it in.
    pub fn status(&self, now: Instant) -> MepStatus {
        let groups = self
            .config
            .groups
            .iter()
            .enumerate()
            .map(|(g, config)| {
                let current = self.current(g);
                let counters = self.groups[g];
                let entry_points = config
                    .members
                    .iter()
                    .map(|&ep| {
                        let ep_config = &self.config.entry_points[ep.0 as usize];
                        let mut status = EntryPointStatus {
                            name: ep_config.name.clone(),
                            address: ep_config.address.to_string(),
                            probe_mode: ep_config.probe,
                            probing_with: String::new(),
                            state: ProbeState::Unknown,
                            level: Selector::level_of(config, ep, current)
                                .map_or("none", Level::as_str)
                                .to_string(),
                            last_rtt_us: None,
                            srtt_us: None,
                            misses: 0,
                            probes_sent: 0,
                            replies: 0,
                            probes_missed: 0,
                            rejected: RejectCounters::default(),
                            ups: 0,
                            downs: 0,
                            since_change_ms: None,
                            chosen: self.entry_points[ep.0 as usize].chosen,
                            sticky_flows: self.sticky.count_entry_point(ep),
                            tunnel_up: self.entry_points[ep.0 as usize].tunnel_up,
                        };
                        self.prober.fill_status(now, ep, &mut status);
                        status
                    })
                    .collect();
                GroupStatus {
                    name: config.name.clone(),
                    kind: config.kind,
                    method: config.method,
                    tie_break: config.tie_break,
                    current: current.map(|ep| self.config.entry_points[ep.0 as usize].name.clone()),
                    resolutions: counters.resolutions,
                    sticky_flows: self.sticky.count_group(GroupId(g as u32)),
                    resolutions_none_responding: counters.none_responding,
                    sticky_full: counters.sticky_full,
                    entry_points,
                }
            })
            .collect();
        MepStatus {
            groups,
            responder: None,
        }
    }
}

/// See the panics of [`Mep::new`].
fn validate(config: &MepConfig) {
    let n_eps = config.entry_points.len();
    for (i, ep) in config.entry_points.iter().enumerate() {
        let group = config
            .groups
            .get(ep.group.0 as usize)
            .unwrap_or_else(|| panic!("entry point {} names no group", ep.name));
        assert!(
            group.members.contains(&EntryPointId(i as u32)),
            "entry point {} is not a member of its group {}",
            ep.name,
            group.name
        );
    }
    for (g, group) in config.groups.iter().enumerate() {
        assert!(
            !group.members.is_empty(),
            "entry point group {} has no members",
            group.name
        );
        for &m in &group.members {
            assert!(
                (m.0 as usize) < n_eps && config.entry_points[m.0 as usize].group.0 as usize == g,
                "group {} lists entry point {:?} of another group",
                group.name,
                m
            );
        }
        for level in &group.levels.0 {
            for m in level {
                assert!(
                    group.members.contains(m),
                    "a priority level of group {} names the non-member {:?}",
                    group.name,
                    m
                );
            }
        }
    }
}
