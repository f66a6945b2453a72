//! From the validated configuration to the Multiple Entry Points engine's configuration: the
//! satellite side ([`GatewayConfig::mep_config`]) and the entry-point side
//! ([`GatewayConfig::mep_responder`]).

use rampart_mep::{
    EntryPointConfig, EntryPointId, GroupConfig, GroupId, MepConfig, PriorityLevels, ProbeKey,
    ResponderConfig, SatelliteKey,
};

use crate::schema::*;

/// Replies per second per satellite address (token bucket, burst the same).
pub const DEFAULT_RESPONDER_RATE_PER_SOURCE: u32 = 20;
/// Replies per second in total.
pub const DEFAULT_RESPONDER_RATE_TOTAL: u32 = 2000;

impl GatewayConfig {
    /// The MEP keys of the peer called `name`.
    pub fn peer_mep_of(&self, name: &str) -> Option<&PeerMep> {
        self.peer_mep.iter().find(|m| m.name == name)
    }

    /// The secret a peer's probe key is derived from: `probe_key`, else its pre-shared key;
    /// `None` for a certificate peer without `probe_key`.
    fn probe_secret(&self, i: usize) -> Option<&[u8]> {
        match self.peer_mep.get(i).and_then(|m| m.probe_key.as_ref()) {
            Some(k) => Some(k.as_slice()),
            None => Some(self.peers[i].psk.as_slice()).filter(|s| !s.is_empty()),
        }
    }

    /// The satellite's engine configuration: every explicit group (file order), then the
    /// implicit ones. `None` when there is no group at all. Priority-list rules are resolved for
    /// this gateway (`gateway.name`): the first rule naming it, else the default rule, else
    /// every member primary.
    ///
    /// Validation guarantees every member is a peer with a remote address; the probe keys are
    /// derived here ([`ProbeKey::derive`]).
    pub fn mep_config(&self) -> Option<MepConfig> {
        if self.entry_point_groups.is_empty() && self.implicit_groups.is_empty() {
            return None;
        }
        let mut entry_points: Vec<EntryPointConfig> = Vec::new();
        let mut groups: Vec<GroupConfig> = Vec::new();
        let add_members = |entry_points: &mut Vec<EntryPointConfig>, gid, names: &[String]| {
            let mut ids = Vec::new();
            for name in names {
                let Some(i) = self.peers.iter().position(|p| p.name == *name) else {
                    continue;
                };
                let peer = &self.peers[i];
                let Some(address) = peer.remote_address.ip() else {
                    continue;
                };
                let mep = &self.peer_mep[i];
                ids.push(EntryPointId(entry_points.len() as u32));
                entry_points.push(EntryPointConfig {
                    name: name.clone(),
                    group: gid,
                    address,
                    local: Some(peer.local_address).filter(|a| !a.is_unspecified()),
                    own_domain: mep.own_domain.clone(),
                    probe: mep.probe,
                    key: self.probe_secret(i).map(ProbeKey::derive),
                });
            }
            ids
        };
        let id_of = |entry_points: &[EntryPointConfig], members: &[EntryPointId], name: &str| {
            members
                .iter()
                .copied()
                .find(|id| entry_points[id.0 as usize].name == name)
        };
        for g in &self.entry_point_groups {
            let gid = GroupId(groups.len() as u32);
            let members = add_members(&mut entry_points, gid, &g.peers);
            let levels = if g.method == Method::PriorityList {
                let me = &self.gateway.name;
                let rule = g
                    .rules
                    .iter()
                    .find(|r| r.satellites.iter().any(|s| s == me))
                    .or_else(|| g.rules.iter().find(|r| r.satellites.is_empty()));
                match rule {
                    Some(rule) => PriorityLevels(rule.levels.clone().map(|level| {
                        level
                            .iter()
                            .filter_map(|n| id_of(&entry_points, &members, n))
                            .collect()
                    })),
                    None => PriorityLevels([members.clone(), Vec::new(), Vec::new()]),
                }
            } else {
                PriorityLevels::default()
            };
            groups.push(GroupConfig {
                name: g.name.clone(),
                kind: GroupKind::Explicit,
                method: g.method,
                tie_break: g.tie_break,
                members,
                levels,
                domain: g.domain.clone(),
                tracking: g.tracking,
            });
        }
        for g in &self.implicit_groups {
            let gid = GroupId(groups.len() as u32);
            let members = add_members(&mut entry_points, gid, &g.peers);
            let (method, levels) = match g.kind {
                GroupKind::ImplicitPrimaryBackup => (
                    Method::PrimaryBackup,
                    PriorityLevels([
                        members[..1.min(members.len())].to_vec(),
                        members.iter().skip(1).copied().collect(),
                        Vec::new(),
                    ]),
                ),
                _ => (
                    match self.mep.implicit {
                        ImplicitMethod::LoadDistribution => Method::LoadDistribution,
                        _ => Method::FirstToRespond,
                    },
                    PriorityLevels::default(),
                ),
            };
            let domain = crate::validate::mep::union(
                members
                    .iter()
                    .flat_map(|id| &entry_points[id.0 as usize].own_domain),
            );
            groups.push(GroupConfig {
                name: g.name.clone(),
                kind: g.kind,
                method,
                tie_break: TieBreak::FirstToRespond,
                members,
                levels,
                domain,
                tracking: self.mep.tracking,
            });
        }
        Some(MepConfig {
            local_name: self.gateway.name.clone(),
            probe: self.mep.probe.clone(),
            sticky: self.mep.sticky.clone(),
            entry_points,
            groups,
        })
    }

    /// The entry-point side: the satellites that may probe this gateway (every peer with a
    /// remote address and a probe key: `probe_key` or a PSK). `None` with `[mep] respond =
    /// false` or when no peer qualifies.
    pub fn mep_responder(&self) -> Option<ResponderConfig> {
        if !self.mep.respond {
            return None;
        }
        let satellites: Vec<SatelliteKey> = self
            .peers
            .iter()
            .enumerate()
            .filter_map(|(i, peer)| {
                let address = peer.remote_address.ip()?;
                let secret = self.probe_secret(i)?;
                Some(SatelliteKey {
                    name: peer.name.clone(),
                    address,
                    key: ProbeKey::derive(secret),
                })
            })
            .collect();
        if satellites.is_empty() {
            return None;
        }
        Some(ResponderConfig {
            port: self.mep.probe.port,
            satellites,
            rate_per_source: DEFAULT_RESPONDER_RATE_PER_SOURCE,
            rate_total: DEFAULT_RESPONDER_RATE_TOTAL,
        })
    }

    /// The MEP keys that differ between this (running) configuration and `new`. They are
    /// restart-only: the engine's groups, entry points, keys and the probe socket are built
    /// once at start, so a reload that changes one must be refused and name it. `[mep]`,
    /// `[rim]`, `entry_point_group` (any key, rules included; implicit groups too, since they
    /// follow from the peers' domains), and the peer keys `probe`, `probe_key`, `backup_of`.
    pub fn mep_changes(&self, new: &GatewayConfig) -> Vec<&'static str> {
        // `peer_mep`, not `peers`: a running gateway's configuration has handed its peers to
        // the IKE engine.
        let peer_key = |f: fn(&PeerMep, &PeerMep) -> bool| {
            self.peer_mep
                .iter()
                .any(|m| new.peer_mep_of(&m.name).is_some_and(|n| f(m, n)))
        };
        let checks: [(&'static str, bool); 7] = [
            ("mep", self.mep != new.mep),
            ("rim", self.rim != new.rim),
            (
                "entry_point_group",
                self.entry_point_groups != new.entry_point_groups
                    || self.implicit_groups != new.implicit_groups,
            ),
            ("peer.probe", peer_key(|a, b| a.probe != b.probe)),
            (
                "peer.probe_key",
                peer_key(|a, b| a.probe_key != b.probe_key),
            ),
            (
                "peer.backup_of",
                peer_key(|a, b| a.backup_of != b.backup_of),
            ),
            (
                "peer.remote_domain (of an entry point)",
                self.peer_mep.iter().any(|m| {
                    self.is_entry_point(&m.name)
                        && new
                            .peer_mep_of(&m.name)
                            .is_some_and(|n| n.own_domain != m.own_domain)
                }),
            ),
        ];
        checks
            .into_iter()
            .filter(|(_, differs)| *differs)
            .map(|(key, _)| key)
            .collect()
    }

    /// Whether peer `name` is a member of any group, explicit or implicit.
    pub fn is_entry_point(&self, name: &str) -> bool {
        self.entry_point_groups
            .iter()
            .map(|g| &g.peers)
            .chain(self.implicit_groups.iter().map(|g| &g.peers))
            .any(|peers| peers.iter().any(|p| p == name))
    }
}
