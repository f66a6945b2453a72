//! The rule base: ordered rules, first match wins, implicit logged drop at the end.

use crate::policy::{InspectPolicy, RuleAction, ServiceProtocol};
use ipnet::IpNet;
use rampart_wire::ip::proto;

use crate::conn::{NO_RULE, NO_SERVICE};
use crate::packet::Parsed;
use crate::tuple::FlowTuple;

/// `Decision::rule` of the implicit drop at the end of the rule base.
pub const IMPLICIT_DROP: u16 = u16::MAX - 1;

/// The outcome of the rule base for a packet that opens a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub action: RuleAction,
    /// Rule index, [`NO_RULE`] (no rule base) or [`IMPLICIT_DROP`].
    pub rule: u16,
    pub service: u16,
    pub log: bool,
}

pub struct RuleBase {
    config: InspectPolicy,
}

fn any_contains(nets: &[IpNet], a: std::net::IpAddr) -> bool {
    nets.is_empty() || nets.iter().any(|n| n.contains(&a))
}

impl RuleBase {
    pub fn new(config: InspectPolicy) -> RuleBase {
        RuleBase { config }
    }

    pub fn config(&self) -> &InspectPolicy {
        &self.config
    }

    /// Whether no rule is configured (every packet accepted, the default).
    pub fn is_empty(&self) -> bool {
        self.config.rules.is_empty()
    }

    pub fn rule_name(&self, rule: u16) -> &str {
        match rule {
            NO_RULE => "none",
            IMPLICIT_DROP => "implicit-drop",
            r => self
                .config
                .rules
                .get(usize::from(r))
                .map_or("?", |r| r.name.as_str()),
        }
    }

    pub fn service_name(&self, service: u16) -> &str {
        match service {
            NO_SERVICE => "any",
            s => self
                .config
                .services
                .get(usize::from(s))
                .map_or("?", |s| s.name.as_str()),
        }
    }

    /// Which service index of `services` (all when empty) the packet belongs to.
    fn service_match(&self, services: &[usize], t: &FlowTuple) -> Option<u16> {
        if services.is_empty() {
            return Some(NO_SERVICE);
        }
        services
            .iter()
            .find(|&&s| {
                let Some(svc) = self.config.services.get(s) else {
                    return false;
                };
                let protocol = match svc.protocol {
                    ServiceProtocol::Tcp => proto::TCP,
                    ServiceProtocol::Udp => proto::UDP,
                    ServiceProtocol::Icmp => proto::ICMP,
                    ServiceProtocol::Icmpv6 => proto::ICMPV6,
                };
                protocol == t.proto
                    && (svc.ports.is_empty()
                        || svc
                            .ports
                            .iter()
                            .any(|(lo, hi)| (*lo..=*hi).contains(&t.dport)))
            })
            .map(|&s| s as u16)
    }

    /// The first rule matching the packet (addresses and ports as it arrived).
    pub fn decide(&self, p: &Parsed) -> Decision {
        self.decide_tuple(&p.tuple)
    }

    /// The first rule matching a packet with tuple `t`. A decision depends on nothing but the
    /// tuple, so a connection's original tuple can be decided again under another rule base.
    pub fn decide_tuple(&self, t: &FlowTuple) -> Decision {
        if self.is_empty() {
            return Decision {
                action: RuleAction::Accept,
                rule: NO_RULE,
                service: NO_SERVICE,
                log: false,
            };
        }
        let (src, dst) = (t.src_ip(), t.dst_ip());
        for (i, r) in self.config.rules.iter().enumerate() {
            if !any_contains(&r.source, src) || !any_contains(&r.destination, dst) {
                continue;
            }
            if let Some(service) = self.service_match(&r.services, t) {
                return Decision {
                    action: r.action,
                    rule: i as u16,
                    service,
                    log: r.log,
                };
            }
        }
        Decision {
            action: RuleAction::Drop,
            rule: IMPLICIT_DROP,
            service: NO_SERVICE,
            log: true,
        }
    }
}
