//! Middleboxes between the sites: a hide NAT (many inside addresses behind one public address,
//! port mapping with idle timeouts, optionally dropping non-first fragments) and a
//! port-filtering stateful firewall.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use rampart_crypto::Rng;

use crate::packet::{self, Ipv4Header};

/// One NAT mapping: inside (address, port) <-> public port, per protocol.
#[derive(Debug, Clone)]
struct Mapping {
    inside: (Ipv4Addr, u16),
    public_port: u16,
    last: Duration,
}

/// Hide NAT with endpoint-independent mappings.
#[derive(Debug)]
pub struct Nat {
    pub outside_iface: usize,
    pub public: Ipv4Addr,
    pub udp_timeout: Duration,
    pub tcp_timeout: Duration,
    pub drop_fragments: bool,
    by_inside: BTreeMap<(u8, Ipv4Addr, u16), u16>,
    by_public: BTreeMap<(u8, u16), Mapping>,
    pub mappings_created: u64,
}

impl Nat {
    pub fn new(
        outside_iface: usize,
        public: Ipv4Addr,
        udp_timeout: Duration,
        tcp_timeout: Duration,
        drop_fragments: bool,
    ) -> Nat {
        Nat {
            outside_iface,
            public,
            udp_timeout,
            tcp_timeout,
            drop_fragments,
            by_inside: BTreeMap::new(),
            by_public: BTreeMap::new(),
            mappings_created: 0,
        }
    }

    fn timeout(&self, proto: u8) -> Duration {
        if proto == packet::PROTO_TCP {
            self.tcp_timeout
        } else {
            self.udp_timeout
        }
    }

    fn expire(&mut self, now: Duration) {
        let (udp, tcp) = (self.udp_timeout, self.tcp_timeout);
        let by_inside = &mut self.by_inside;
        self.by_public.retain(|(proto, _), m| {
            let t = if *proto == packet::PROTO_TCP {
                tcp
            } else {
                udp
            };
            let keep = now.saturating_sub(m.last) < t;
            if !keep {
                by_inside.remove(&(*proto, m.inside.0, m.inside.1));
            }
            keep
        });
    }

    /// Forgets every mapping (a reboot or a conntrack flush); returns how many there were.
    pub fn flush(&mut self) -> usize {
        let n = self.by_public.len();
        self.by_public.clear();
        self.by_inside.clear();
        n
    }

    /// Source NAT of a packet leaving through the outside interface. `Err` is a drop reason.
    pub fn outbound(
        &mut self,
        now: Duration,
        p: &mut [u8],
        ip: &Ipv4Header,
        rng: &mut Rng,
    ) -> Result<(), &'static str> {
        if ip.fragment_offset > 0 {
            return Err("nat: non-first fragment dropped");
        }
        let Some((sport, _)) = ip.ports(p) else {
            return Err("nat: nothing to map (not TCP/UDP)");
        };
        self.expire(now);
        let key = (ip.protocol, ip.src, sport);
        let port = match self.by_inside.get(&key) {
            Some(port) => *port,
            None => {
                let mut port;
                loop {
                    port = 10000 + (rng.next_u32() % 50000) as u16;
                    if !self.by_public.contains_key(&(ip.protocol, port)) {
                        break;
                    }
                }
                self.by_inside.insert(key, port);
                self.mappings_created += 1;
                port
            }
        };
        self.by_public.insert(
            (ip.protocol, port),
            Mapping {
                inside: (ip.src, sport),
                public_port: port,
                last: now,
            },
        );
        packet::rewrite(p, ip, true, self.public, Some(port));
        Ok(())
    }

    /// Destination NAT of a packet that arrived on the outside for the public address.
    pub fn inbound(
        &mut self,
        now: Duration,
        p: &mut [u8],
        ip: &Ipv4Header,
    ) -> Result<(), &'static str> {
        if ip.fragment_offset > 0 {
            return Err("nat: non-first fragment dropped");
        }
        let Some((_, dport)) = ip.ports(p) else {
            return Err("nat: nothing to map (not TCP/UDP)");
        };
        self.expire(now);
        let timeout = self.timeout(ip.protocol);
        let Some(m) = self.by_public.get_mut(&(ip.protocol, dport)) else {
            return Err("nat: no mapping");
        };
        debug_assert!(now.saturating_sub(m.last) < timeout);
        m.last = now;
        let (addr, port) = m.inside;
        debug_assert_eq!(m.public_port, dport);
        packet::rewrite(p, ip, false, addr, Some(port));
        Ok(())
    }
}

/// A rule of the firewall: protocol and destination port that may leave the inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allow {
    pub protocol: u8,
    pub port: Option<u16>,
}

impl Allow {
    /// `tcp/443`, `udp/4500`, `esp`.
    pub fn parse(s: &str) -> Option<Allow> {
        if s == "esp" {
            return Some(Allow {
                protocol: packet::PROTO_ESP,
                port: None,
            });
        }
        let (proto, port) = s.split_once('/')?;
        let protocol = match proto {
            "tcp" => packet::PROTO_TCP,
            "udp" => packet::PROTO_UDP,
            _ => return None,
        };
        Some(Allow {
            protocol,
            port: Some(port.parse().ok()?),
        })
    }
}

/// Port-filtering stateful firewall: the inside may open only the allowed flows; the outside
/// may only answer them.
#[derive(Debug)]
pub struct Firewall {
    pub outside_iface: usize,
    pub allow: Vec<Allow>,
    /// (protocol, inside addr, inside port, outside addr, outside port)
    flows: BTreeMap<(u8, Ipv4Addr, u16, Ipv4Addr, u16), Duration>,
}

/// Idle time after which a firewall flow is forgotten.
const FLOW_TIMEOUT: Duration = Duration::from_secs(120);

impl Firewall {
    pub fn new(outside_iface: usize, allow: Vec<Allow>) -> Firewall {
        Firewall {
            outside_iface,
            allow,
            flows: BTreeMap::new(),
        }
    }

    /// Checks a forwarded packet; `outbound` when it leaves through the outside interface.
    pub fn check(
        &mut self,
        now: Duration,
        p: &[u8],
        ip: &Ipv4Header,
        outbound: bool,
    ) -> Result<(), &'static str> {
        if ip.fragment_offset > 0 {
            return Err("firewall: fragment without ports");
        }
        let (sport, dport) = ip.ports(p).unwrap_or((0, 0));
        if outbound {
            let allowed = self
                .allow
                .iter()
                .any(|a| a.protocol == ip.protocol && a.port.is_none_or(|port| port == dport));
            if !allowed {
                return Err("firewall: blocked by the port filter");
            }
            self.flows
                .insert((ip.protocol, ip.src, sport, ip.dst, dport), now);
            Ok(())
        } else {
            let key = (ip.protocol, ip.dst, dport, ip.src, sport);
            match self.flows.get_mut(&key) {
                Some(last) if now.saturating_sub(*last) < FLOW_TIMEOUT => {
                    *last = now;
                    Ok(())
                }
                _ => Err("firewall: unsolicited inbound packet"),
            }
        }
    }
}
