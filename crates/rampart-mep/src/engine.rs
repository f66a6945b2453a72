//! The satellite's engine: probing (`prober.rs`) plus selection (`select.rs`) plus bindings
//! (`sticky.rs`), behind one sans-IO surface.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::config::{EntryPointId, GroupId, MepConfig};
use crate::probe::ProbeError;
use crate::status::MepStatus;

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
pub struct Mep {
    _config: MepConfig,
}

impl Mep {
    /// `seed` keys the per-pair random choice and the per-satellite random tie-break (give
    /// fresh randomness per process; tests give a fixed seed).
    pub fn new(config: MepConfig, now: Instant, seed: [u8; 32]) -> Mep {
        let _ = (config, now, seed);
        todo!("H2")
    }

    pub fn config(&self) -> &MepConfig {
        &self._config
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        todo!("H2")
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!("H2")
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        todo!("H2")
    }

    pub fn poll_event(&mut self) -> Option<MepEvent> {
        todo!("H2")
    }

    /// A probe reply that arrived on the probe port from `from`.
    pub fn handle_reply(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
    ) -> Result<EntryPointId, ProbeError> {
        let _ = (now, from, data);
        todo!("H2")
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
        let _ = (now, entry_point, last_heard);
        todo!("H2")
    }

    /// The entry point that carries `flow` (a packet towards `group`'s domain). Per packet:
    /// must not allocate once the binding exists.
    pub fn resolve(&mut self, now: Instant, group: GroupId, flow: &FlowKey) -> Resolution {
        let _ = (now, group, flow);
        todo!("H2")
    }

    /// The node tells whether it has an established tunnel to `entry_point` (status only).
    pub fn set_tunnel_up(&mut self, entry_point: EntryPointId, up: bool) {
        let _ = (entry_point, up);
        todo!("H2")
    }

    pub fn is_up(&self, entry_point: EntryPointId) -> bool {
        let _ = entry_point;
        todo!("H2")
    }

    pub fn status(&self, now: Instant) -> MepStatus {
        let _ = now;
        todo!("H2")
    }
}
