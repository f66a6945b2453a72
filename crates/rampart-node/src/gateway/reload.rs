//! Live reload: a running gateway takes a new configuration without a restart, the way
//! strongSwan users run `swanctl --load-all`.
//!
//! Peers are matched by name. A peer that is gone is deleted (INFORMATIONAL Delete to the peer,
//! tunnels and routes withdrawn); a new one is added and started per its start action; a peer
//! whose SA-relevant settings changed (addresses, identities, keys, proposals, remote domain,
//! encapsulation, ESN, replay window; or the local domain of the gateway) is deleted and added
//! again; a peer with only other changes (start action, liveness, lifetimes) is updated in place
//! and keeps its SAs; an unchanged peer is not touched, so its tunnels carry on with no packet
//! lost. The inspection policy is swapped in one step (see `Inspector::set_policy`).

use std::collections::HashSet;
use std::time::Instant;

use ipnet::IpNet;
use rampart_config::{GatewayConfig, PeerPolicy, StartAction};
use rampart_ike::PeerId;
use serde::{Deserialize, Serialize};

use super::{remote_domains, Gateway};
use crate::{LogEvent, LogLevel, LogRecord, Output};

/// What a reload changed; `rampart reload` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// Peers added (started per their start action).
    pub added: Vec<String>,
    /// Peers deleted (their SAs deleted with the peer, routes withdrawn).
    pub removed: Vec<String>,
    /// Peers whose SA-relevant settings changed: deleted and negotiated again.
    pub reestablished: Vec<String>,
    /// Peers updated in place (start action, liveness, lifetimes); their SAs stay.
    pub updated: Vec<String>,
    /// Peers not touched.
    pub unchanged: Vec<String>,
    /// Connections that continue under the new rule base.
    pub connections_kept: u64,
    /// Connections removed because the new rule base refuses them.
    pub connections_dropped: u64,
}

/// Why a reload was refused; the running gateway is then unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    #[error(
        "{keys}: cannot change while the gateway runs (restart it to apply); nothing was reloaded"
    )]
    NeedsRestart {
        /// The keys that differ, comma-separated (`gateway.ike_port, tunnel.mtu`).
        keys: String,
    },
}

/// The keys a running gateway cannot take over: they name sockets, devices and identities
/// that the I/O shell opened or that other members know it by.
fn restart_only_changes(old: &GatewayConfig, new: &GatewayConfig) -> Vec<&'static str> {
    let (g, n) = (&old.gateway, &new.gateway);
    let (t, u) = (&old.tunnel, &new.tunnel);
    let checks: [(&'static str, bool); 9] = [
        ("gateway.name", g.name != n.name),
        ("gateway.status_socket", g.status_socket != n.status_socket),
        ("gateway.ike_port", g.ike_port != n.ike_port),
        ("gateway.nat_t_port", g.nat_t_port != n.nat_t_port),
        ("gateway.member_id", g.member_id != n.member_id),
        ("tunnel.device", t.device != u.device),
        ("tunnel.mtu", t.mtu != u.mtu),
        ("tunnel.offload", t.offload != u.offload),
        (
            "tunnel.crypto_threads",
            t.crypto_threads != u.crypto_threads,
        ),
    ];
    let mut keys: Vec<&'static str> = checks
        .into_iter()
        .filter(|(_, differs)| *differs)
        .map(|(key, _)| key)
        .collect();
    // Membership, addresses and keys of a cluster change together on every member: a restart
    // (one member at a time, the others carry the traffic) is the safe way.
    keys.extend(old.cluster_changes(new));
    keys.extend(old.mep_changes(new));
    keys.extend(old.remote_access_changes(new));
    keys
}

/// Settings that are not SA-relevant but still make a peer "changed".
fn same_other_settings(a: &PeerPolicy, b: &PeerPolicy) -> bool {
    a.start_action == b.start_action
        && a.ike_lifetime == b.ike_lifetime
        && a.child_lifetime == b.child_lifetime
        && a.child_lifetime_bytes == b.child_lifetime_bytes
        && a.liveness_interval == b.liveness_interval
}

impl Gateway {
    /// Applies `config` to the running gateway; see the module documentation for what happens
    /// to each peer. The file must already be valid (`rampart_config::load`); keys that need a
    /// restart refuse the whole reload and change nothing.
    pub fn reload(
        &mut self,
        now: Instant,
        mut config: GatewayConfig,
    ) -> Result<ReloadReport, ReloadError> {
        let keys = restart_only_changes(&self.config, &config);
        if !keys.is_empty() {
            return Err(ReloadError::NeedsRestart {
                keys: keys.join(", "),
            });
        }
        let mut report = ReloadReport::default();
        let old_routes: HashSet<IpNet> = self.shutdown_routes().into_iter().collect();
        let domain_changed = self.config.local.domain != config.local.domain;
        let mep = super::mep_parts(&config);
        let peers = std::mem::take(&mut config.peers);
        self.ike.set_config(config.ike_config());

        let wanted: HashSet<&str> = peers.iter().map(|p| p.name.as_str()).collect();
        let gone: Vec<(PeerId, String)> = self
            .ike
            .peers()
            .filter(|(_, p)| !wanted.contains(p.name.as_str()))
            .map(|(id, p)| (id, p.name.clone()))
            .collect();
        for (id, name) in gone {
            self.ike.remove_peer(now, id);
            self.ra.forget(id);
            report.removed.push(name);
        }
        let mut start = Vec::new();
        for peer in peers {
            let name = peer.name.clone();
            let Some(id) = self.ike.peer_by_name(&name) else {
                start.push(self.ike.add_peer(peer));
                report.added.push(name);
                continue;
            };
            let Some(old) = self.ike.peer(id) else {
                continue;
            };
            if domain_changed || !old.sa_relevant_eq(&peer) {
                self.ike.remove_peer(now, id);
                self.ra.forget(id);
                start.push(self.ike.add_peer(peer));
                report.reestablished.push(name);
            } else if same_other_settings(old, &peer) {
                report.unchanged.push(name);
            } else {
                let always = peer.start_action == StartAction::Always;
                // Cannot fail: the id is live, the name is its own and sa_relevant_eq held.
                if self.ike.update_peer(id, peer).is_ok() {
                    report.updated.push(name);
                    if always {
                        start.push(id);
                    }
                }
            }
        }

        let swap = self.dataplane.reconfigure(
            now,
            config.local.domain.clone(),
            remote_domains(&self.ike),
            config.firewall.clone(),
        );
        report.connections_kept = swap.kept as u64;
        report.connections_dropped = swap.dropped as u64;
        self.config = config;

        // Routes: withdraw what no longer exists, add what is new; the rest stay in place so
        // that traffic of unchanged peers never meets a missing route.
        let new_routes = self.shutdown_routes();
        let new_set: HashSet<IpNet> = new_routes.iter().copied().collect();
        let mut withdrawn: Vec<IpNet> = old_routes.difference(&new_set).copied().collect();
        withdrawn.sort();
        for prefix in withdrawn {
            self.outputs.push_back(Output::RouteDel { prefix });
        }
        for prefix in new_routes {
            if !old_routes.contains(&prefix) {
                self.outputs.push_back(Output::RouteAdd { prefix });
            }
        }

        for id in start {
            let always = self
                .ike
                .peer(id)
                .is_some_and(|p| p.start_action == StartAction::Always);
            if always {
                self.ike.initiate(now, id);
            }
        }
        let summary = format!(
            "configuration reloaded: added [{}], removed [{}], re-established [{}], updated [{}], unchanged [{}]; connections kept {}, removed by the new rule base {}",
            report.added.join(", "),
            report.removed.join(", "),
            report.reestablished.join(", "),
            report.updated.join(", "),
            report.unchanged.join(", "),
            report.connections_kept,
            report.connections_dropped,
        );
        let event = LogEvent::Reloaded {
            added: report.added.len(),
            removed: report.removed.len(),
            reestablished: report.reestablished.len(),
            updated: report.updated.len(),
        };
        self.outputs
            .push_back(Output::Log(LogRecord::new(LogLevel::Info, event, summary)));
        let (dataplane, mut control) = self.parts(now);
        dataplane.sync(now, &mut control);
        // Peer ids of re-established and added peers are new: entry points map again, and
        // injected routes of peers that are gone are withdrawn.
        self.mep.map_peers(&self.ike, self.dataplane.tunnels());
        self.mep
            .forget_removed_peers(&self.ike, self.dataplane.tunnels(), &mut self.outputs);
        // Entry points' addresses and keys come from their peers, which may have changed; an
        // unchanged engine configuration keeps the running engine.
        let (mep, responder, rim) = mep;
        self.set_mep(now, mep, responder, rim);
        Ok(report)
    }
}
