//! The stateful firewall sections: `[inspection]`, `[[object]]`, `[[service]]`, `[[rule]]` and
//! `[[nat]]`. Names are resolved here, so the typed [`InspectPolicy`] holds prefixes and
//! service indices only.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use ipnet::IpNet;
use toml::Spanned;

use super::{span, Validator};
use crate::document::{RawDocument, Section};
use crate::error::ErrorKind;
use crate::raw::{RawInspection, RawNat, RawService, Scalar, StrList};
use crate::schema::*;

const CAPACITY_RANGE: RangeInclusive<i64> = 1..=100_000_000;
const TIMEOUT_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(7 * 86400);
const SYNC_AFTER_RANGE: RangeInclusive<Duration> = Duration::ZERO..=Duration::from_secs(3600);
const DEFAULT_HIDE_PORTS: (u16, u16) = (10000, 65535);
const ENDPOINT_FORMS: &str = "\"any\", the name of an [[object]], or a prefix such as 10.1.0.0/24";
const PORT_FORMS: &str = "a port 1 to 65535 or a range \"8000-8080\"";

impl Validator<'_, '_> {
    pub(super) fn firewall(&mut self, doc: &RawDocument) -> InspectPolicy {
        let (capacity, timeouts) = self.inspection(&doc.inspection);
        let objects = self.objects(doc);
        let services = self.services(&doc.services);
        let rules = self.rules(doc, &objects, &services);
        let nat = self.nats(&doc.nats, &objects);
        InspectPolicy {
            capacity,
            timeouts,
            objects,
            services,
            rules,
            nat,
        }
    }

    fn inspection(&mut self, sec: &Section<RawInspection>) -> (u32, ConnTimeouts) {
        let raw = &sec.value;
        let defaults = InspectPolicy::default();
        let capacity = raw
            .capacity
            .as_ref()
            .and_then(|v| self.int("inspection.capacity", v, CAPACITY_RANGE))
            .map_or(defaults.capacity, |n| n as u32);
        let d = ConnTimeouts::default();
        let mut t = |key: &str, v: &Option<Spanned<Scalar>>, default: Duration| {
            v.as_ref()
                .and_then(|v| self.duration(&format!("inspection.{key}"), v, TIMEOUT_RANGE, false))
                .unwrap_or(default)
        };
        let timeouts = ConnTimeouts {
            tcp_handshake: t(
                "tcp_handshake_timeout",
                &raw.tcp_handshake_timeout,
                d.tcp_handshake,
            ),
            tcp_established: t(
                "tcp_established_timeout",
                &raw.tcp_established_timeout,
                d.tcp_established,
            ),
            tcp_closing: t(
                "tcp_closing_timeout",
                &raw.tcp_closing_timeout,
                d.tcp_closing,
            ),
            tcp_closed: t("tcp_closed_timeout", &raw.tcp_closed_timeout, d.tcp_closed),
            udp: t("udp_timeout", &raw.udp_timeout, d.udp),
            icmp: t("icmp_timeout", &raw.icmp_timeout, d.icmp),
        };
        (capacity, timeouts)
    }

    /// A required, unique name in one kind of table.
    fn unique_name<T>(
        &mut self,
        sec: &Section<T>,
        path: &str,
        name: &Option<Spanned<String>>,
        seen: &mut HashMap<String, String>,
    ) -> Option<String> {
        let Some(n) = name else {
            self.missing(sec, path, "name", "a name such as \"web\"");
            return None;
        };
        let value = self.name(&format!("{path}.name"), n)?;
        if value == "any" {
            self.error(
                ErrorKind::InvalidValue,
                span(n),
                format!("{path}.name"),
                "\"any\" is reserved",
                "another name".to_string(),
            );
            return None;
        }
        if let Some(first) = seen.get(&value) {
            self.error(
                ErrorKind::Duplicate,
                span(n),
                format!("{path}.name"),
                format!("duplicate name \"{value}\" (also {first})"),
                "a name used by no other table of this kind".to_string(),
            );
            return None;
        }
        seen.insert(value.clone(), path.to_string());
        Some(value)
    }

    fn objects(&mut self, doc: &RawDocument) -> Vec<NetworkObject> {
        let mut seen = HashMap::new();
        let mut out = Vec::new();
        for (i, sec) in doc.objects.iter().enumerate() {
            let path = format!("object[{i}]");
            let name = self.unique_name(sec, &path, &sec.value.name, &mut seen);
            let networks = match &sec.value.networks {
                Some(list) => self.prefixes(&format!("{path}.networks"), list),
                None => {
                    self.missing(sec, &path, "networks", "a list of prefixes");
                    Vec::new()
                }
            };
            if let Some(name) = name {
                out.push(NetworkObject {
                    name,
                    networks: networks.into_iter().map(|(n, _)| n).collect(),
                });
            }
        }
        out
    }

    fn services(&mut self, secs: &[Section<RawService>]) -> Vec<Service> {
        let mut seen = HashMap::new();
        let mut out = Vec::new();
        for (i, sec) in secs.iter().enumerate() {
            let path = format!("service[{i}]");
            let raw = &sec.value;
            let name = self.unique_name(sec, &path, &raw.name, &mut seen);
            let protocol = match &raw.protocol {
                Some(p) => self.keyword(
                    &format!("{path}.protocol"),
                    p,
                    &[
                        ("tcp", ServiceProtocol::Tcp),
                        ("udp", ServiceProtocol::Udp),
                        ("icmp", ServiceProtocol::Icmp),
                        ("icmpv6", ServiceProtocol::Icmpv6),
                    ],
                ),
                None => {
                    self.missing(sec, &path, "protocol", "tcp, udp, icmp, icmpv6");
                    None
                }
            };
            let mut ports = Vec::new();
            if let Some(list) = &raw.ports {
                if matches!(
                    protocol,
                    Some(ServiceProtocol::Icmp | ServiceProtocol::Icmpv6)
                ) {
                    self.error(
                        ErrorKind::Conflict,
                        span(list),
                        format!("{path}.ports"),
                        "ICMP services have no ports",
                        "no ports key for protocol icmp or icmpv6".to_string(),
                    );
                }
                for (j, item) in list.get_ref().iter().enumerate() {
                    if let Some(r) = self.port_range(&format!("{path}.ports[{j}]"), item) {
                        ports.push(r);
                    }
                }
            }
            let sync = raw.sync.as_ref().is_none_or(|b| *b.get_ref());
            let sync_after = match &raw.sync_after {
                Some(v) => {
                    // "30 s" is accepted as well as "30s".
                    let compact = match v.get_ref() {
                        Scalar::Str(s) => Scalar::Str(s.split_whitespace().collect()),
                        other => other.clone(),
                    };
                    let v = Spanned::new(v.span(), compact);
                    self.duration(&format!("{path}.sync_after"), &v, SYNC_AFTER_RANGE, true)
                        .unwrap_or_default()
                }
                None => Duration::ZERO,
            };
            if let (Some(name), Some(protocol)) = (name, protocol) {
                out.push(Service {
                    name,
                    protocol,
                    ports,
                    sync,
                    sync_after,
                });
            }
        }
        out
    }

    fn port_range(&mut self, key: &str, v: &Spanned<Scalar>) -> Option<(u16, u16)> {
        let parse = |s: &str| s.trim().parse::<u16>().ok().filter(|p| *p != 0);
        let range = match v.get_ref() {
            Scalar::Int(n) => u16::try_from(*n).ok().filter(|p| *p != 0).map(|p| (p, p)),
            Scalar::Str(s) => match s.split_once('-') {
                Some((a, b)) => parse(a).zip(parse(b)).filter(|(a, b)| a <= b),
                None => parse(s).map(|p| (p, p)),
            },
        };
        if range.is_none() {
            self.error(
                ErrorKind::InvalidValue,
                span(v),
                key,
                "invalid port or port range",
                PORT_FORMS.to_string(),
            );
        }
        range
    }

    /// `"any"`, object names and prefixes; an empty result means any.
    fn endpoints(&mut self, key: &str, list: &StrList, objects: &[NetworkObject]) -> Vec<IpNet> {
        let Some(list) = list else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut any = false;
        for (i, item) in list.get_ref().iter().enumerate() {
            let s = item.get_ref().trim();
            if s == "any" {
                any = true;
            } else if let Some(o) = objects.iter().find(|o| o.name == s) {
                out.extend(o.networks.iter().copied());
            } else {
                let one = Spanned::new(list.span(), vec![item.clone()]);
                let nets = self.prefixes(&format!("{key}[{i}]"), &one);
                if nets.is_empty() {
                    // `prefixes` reported an invalid prefix; say what else was possible.
                    self.error(
                        ErrorKind::InvalidValue,
                        span(item),
                        format!("{key}[{i}]"),
                        format!("\"{s}\" is neither an object nor a prefix"),
                        ENDPOINT_FORMS.to_string(),
                    );
                }
                out.extend(nets.into_iter().map(|(n, _)| n));
            }
        }
        if any {
            out.clear();
        }
        out
    }

    fn rules(
        &mut self,
        doc: &RawDocument,
        objects: &[NetworkObject],
        services: &[Service],
    ) -> Vec<Rule> {
        let mut seen = HashMap::new();
        let mut out = Vec::new();
        for (i, sec) in doc.rules.iter().enumerate() {
            let path = format!("rule[{i}]");
            let raw = &sec.value;
            let name = match &raw.name {
                Some(_) => self.unique_name(sec, &path, &raw.name, &mut seen),
                None => Some(format!("rule-{}", i + 1)),
            };
            let source = self.endpoints(&format!("{path}.source"), &raw.source, objects);
            let destination =
                self.endpoints(&format!("{path}.destination"), &raw.destination, objects);
            let mut svc = Vec::new();
            if let Some(list) = &raw.service {
                let mut any = false;
                for (j, item) in list.get_ref().iter().enumerate() {
                    let s = item.get_ref().trim();
                    if s == "any" {
                        any = true;
                    } else if let Some(k) = services.iter().position(|x| x.name == s) {
                        svc.push(k);
                    } else {
                        let known: Vec<&str> = services.iter().map(|x| x.name.as_str()).collect();
                        self.error(
                            ErrorKind::InvalidValue,
                            span(item),
                            format!("{path}.service[{j}]"),
                            format!("unknown service \"{s}\""),
                            format!("\"any\" or a [[service]] name: {}", known.join(", ")),
                        );
                    }
                }
                if any {
                    svc.clear();
                }
            }
            let action = match &raw.action {
                Some(a) => self.keyword(
                    &format!("{path}.action"),
                    a,
                    &[
                        ("accept", RuleAction::Accept),
                        ("drop", RuleAction::Drop),
                        ("reject", RuleAction::Reject),
                    ],
                ),
                None => {
                    self.missing(sec, &path, "action", "accept, drop, reject");
                    None
                }
            };
            let log = raw.log.as_ref().is_some_and(|b| *b.get_ref());
            if let (Some(name), Some(action)) = (name, action) {
                out.push(Rule {
                    name,
                    source,
                    destination,
                    services: svc,
                    action,
                    log,
                });
            }
        }
        out
    }

    fn ipv4_net(&mut self, key: &str, v: &Spanned<String>) -> Option<IpNet> {
        let one = Spanned::new(v.span(), vec![v.clone()]);
        let net = self.prefixes(key, &one).pop().map(|(n, _)| n)?;
        if !matches!(net, IpNet::V4(_)) {
            self.error(
                ErrorKind::InvalidValue,
                span(v),
                key,
                "NAT is IPv4 only",
                "an IPv4 address or prefix".to_string(),
            );
            return None;
        }
        Some(net)
    }

    fn nats(&mut self, secs: &[Section<RawNat>], objects: &[NetworkObject]) -> Vec<NatRule> {
        let mut seen = HashMap::new();
        let mut out = Vec::new();
        for (i, sec) in secs.iter().enumerate() {
            let path = format!("nat[{i}]");
            let raw = &sec.value;
            let name = match &raw.name {
                Some(_) => self.unique_name(sec, &path, &raw.name, &mut seen),
                None => Some(format!("nat-{}", i + 1)),
            };
            #[derive(Clone, Copy)]
            enum Kind {
                Hide,
                Static,
                Pool,
            }
            let kind = match &raw.kind {
                Some(k) => self.keyword(
                    &format!("{path}.type"),
                    k,
                    &[
                        ("hide", Kind::Hide),
                        ("static", Kind::Static),
                        ("pool", Kind::Pool),
                    ],
                ),
                None => {
                    self.missing(sec, &path, "type", "hide, static, pool");
                    None
                }
            };
            let need = |v: &mut Self, key: &str, field: &Option<Spanned<String>>| match field {
                Some(f) => v.ipv4_net(&format!("{path}.{key}"), f),
                None => {
                    v.missing(sec, &path, key, "an IPv4 address or prefix");
                    None
                }
            };
            let rule = match kind {
                Some(Kind::Hide) => {
                    let source = self.endpoints(&format!("{path}.source"), &raw.source, objects);
                    if raw.source.is_none() {
                        self.missing(sec, &path, "source", ENDPOINT_FORMS);
                    }
                    let address = need(self, "address", &raw.address);
                    let address = match address {
                        Some(IpNet::V4(n)) if n.prefix_len() == 32 => Some(IpAddr::V4(n.addr())),
                        Some(_) => {
                            self.error(
                                ErrorKind::InvalidValue,
                                raw.address.as_ref().and_then(span),
                                format!("{path}.address"),
                                "hide NAT needs one address",
                                "an IPv4 address".to_string(),
                            );
                            None
                        }
                        None => None,
                    };
                    let ports = match &raw.ports {
                        Some(p) => {
                            let v = Spanned::new(p.span(), Scalar::Str(p.get_ref().clone()));
                            self.port_range(&format!("{path}.ports"), &v)
                        }
                        None => Some(DEFAULT_HIDE_PORTS),
                    };
                    match (name.clone(), address, ports) {
                        (Some(name), Some(address), Some(ports)) => Some(NatRule::Hide {
                            name,
                            source,
                            address,
                            ports,
                        }),
                        _ => None,
                    }
                }
                Some(Kind::Static) => {
                    let original = need(self, "original", &raw.original);
                    let translated = need(self, "translated", &raw.translated);
                    match (name.clone(), original, translated) {
                        (Some(name), Some(o), Some(t)) if o.prefix_len() == t.prefix_len() => {
                            Some(NatRule::Static {
                                name,
                                original: o,
                                translated: t,
                            })
                        }
                        (_, Some(_), Some(_)) => {
                            self.error(
                                ErrorKind::Conflict,
                                raw.translated.as_ref().and_then(span),
                                format!("{path}.translated"),
                                "original and translated have different prefix lengths",
                                "prefixes of the same length".to_string(),
                            );
                            None
                        }
                        _ => None,
                    }
                }
                Some(Kind::Pool) => {
                    let pool = need(self, "pool", &raw.pool);
                    let source = self.endpoints(&format!("{path}.source"), &raw.source, objects);
                    match (name.clone(), pool) {
                        (Some(name), Some(pool)) => Some(NatRule::Pool { name, pool, source }),
                        _ => None,
                    }
                }
                None => None,
            };
            out.extend(rule);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::schema::*;
    use std::time::Duration;

    const BASE: &str = r#"
[gateway]
name = "gw-a"
[local]
domain = ["10.1.0.0/24"]
[[peer]]
name = "site-b"
local_address = "192.0.2.1"
remote_address = "192.0.2.2"
psk = "0123456789abcdef0123"
remote_domain = ["10.2.0.0/24"]
"#;

    fn parse(extra: &str) -> Result<GatewayConfig, String> {
        crate::parse(&format!("{BASE}{extra}"), "gw.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn no_firewall_tables_means_the_accept_all_default() {
        let c = parse("").unwrap();
        assert_eq!(c.firewall, InspectPolicy::default());
        assert!(c.firewall.rules.is_empty());
    }

    #[test]
    fn rule_base_and_nat_resolve_names() {
        let c = parse(
            r#"
[inspection]
capacity = 3
udp_timeout = "2m"
[[object]]
name = "site-b-web"
networks = ["10.2.0.10", "10.2.0.11"]
[[service]]
name = "https"
protocol = "tcp"
ports = [443, "8443-8444"]
[[service]]
name = "https-nosync"
protocol = "tcp"
ports = [443]
sync = false
sync_after = "30 s"
[[rule]]
source = ["any"]
destination = ["site-b-web", "10.2.1.0/24"]
service = ["https"]
action = "accept"
log = true
[[rule]]
name = "rest"
action = "drop"
[[nat]]
type = "hide"
source = ["10.1.0.0/24"]
address = "10.1.0.1"
[[nat]]
name = "pool"
type = "pool"
pool = "10.1.9.0/28"
"#,
        )
        .unwrap();
        let f = &c.firewall;
        assert_eq!(f.capacity, 3);
        assert_eq!(f.timeouts.udp, Duration::from_secs(120));
        assert_eq!(f.services[0].ports, vec![(443, 443), (8443, 8444)]);
        assert!(f.services[0].sync);
        assert!(!f.services[1].sync);
        assert_eq!(f.services[1].sync_after, Duration::from_secs(30));
        assert_eq!(f.rules[0].name, "rule-1");
        assert_eq!(f.rules[0].destination.len(), 3);
        assert!(f.rules[0].source.is_empty());
        assert_eq!(f.rules[0].services, vec![0]);
        assert_eq!(f.rules[1].action, RuleAction::Drop);
        assert!(matches!(
            &f.nat[0],
            NatRule::Hide {
                ports: (10000, 65535),
                ..
            }
        ));
        assert_eq!(f.nat[1].name(), "pool");
    }

    #[test]
    fn errors_name_the_key_and_what_is_allowed() {
        let e = parse(
            r#"
[[service]]
name = "x"
protocol = "sctp"
[[rule]]
service = ["nope"]
action = "allow"
[[nat]]
type = "static"
original = "10.1.0.0/24"
translated = "10.9.0.0/25"
"#,
        )
        .unwrap_err();
        assert!(
            e.contains(
                "service[0].protocol: unknown value \"sctp\"; allowed: tcp, udp, icmp, icmpv6"
            ),
            "{e}"
        );
        assert!(
            e.contains("rule[0].service[0]: unknown service \"nope\""),
            "{e}"
        );
        assert!(
            e.contains("rule[0].action: unknown value \"allow\"; allowed: accept, drop, reject"),
            "{e}"
        );
        assert!(
            e.contains("nat[0].translated: original and translated have different prefix lengths"),
            "{e}"
        );
    }
}
