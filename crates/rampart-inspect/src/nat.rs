//! NAT: hide (many-to-one with port allocation), static (1:1) and IP Pool NAT. The chosen
//! translation is stored in the connection entry (`xlat`); this module only allocates.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use crate::policy::NatRule;
use rampart_wire::ip::proto;

use crate::conn::{NatKind, NatState};
use crate::tuple::{FlowTuple, Side};

/// Ports (or ICMP identifiers) in use for one hide address and protocol: one bit per port.
struct PortMap {
    bits: Box<[u64; 1024]>,
    cursor: u16,
}

impl PortMap {
    fn new() -> PortMap {
        PortMap {
            bits: Box::new([0; 1024]),
            cursor: 0,
        }
    }

    fn take(&mut self, (lo, hi): (u16, u16)) -> Option<u16> {
        let span = u32::from(hi - lo) + 1;
        for k in 0..span {
            let p = lo + ((u32::from(self.cursor) + k) % span) as u16;
            let (w, b) = (usize::from(p) / 64, p % 64);
            if self.bits[w] & (1 << b) == 0 {
                self.bits[w] |= 1 << b;
                self.cursor = ((u32::from(p - lo) + 1) % span) as u16;
                return Some(p);
            }
        }
        None
    }

    fn release(&mut self, p: u16) {
        self.bits[usize::from(p) / 64] &= !(1 << (p % 64));
    }
}

/// Per-rule allocation state.
enum RuleState {
    Hide {
        tcp: PortMap,
        udp: PortMap,
        icmp: PortMap,
    },
    Other,
}

pub struct Nat {
    rules: Vec<NatRule>,
    state: Vec<RuleState>,
}

/// A planned translation: the outgoing tuple and what NAT state it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub xlat: FlowTuple,
    pub nat: NatState,
}

/// Why no translation could be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted {
    pub rule: u16,
}

fn v4(t: &[u8; 16]) -> Ipv4Addr {
    Ipv4Addr::new(t[0], t[1], t[2], t[3])
}

fn set_v4(t: &mut [u8; 16], a: Ipv4Addr) {
    t[..4].copy_from_slice(&a.octets());
}

/// `a` moved from prefix `from` into prefix `to` (same length), keeping the host part.
fn map_prefix(a: Ipv4Addr, from: &IpNet, to: &IpNet) -> Option<Ipv4Addr> {
    let (IpNet::V4(f), IpNet::V4(t)) = (from, to) else {
        return None;
    };
    if !f.contains(&a) {
        return None;
    }
    let host = u32::from(a) & !u32::from(f.netmask());
    Some(Ipv4Addr::from(u32::from(t.network()) | host))
}

fn in_any(nets: &[IpNet], a: Ipv4Addr) -> bool {
    nets.is_empty() || nets.iter().any(|n| n.contains(&IpAddr::V4(a)))
}

impl Nat {
    pub fn new(rules: Vec<NatRule>) -> Nat {
        let state = rules
            .iter()
            .map(|r| match r {
                NatRule::Hide { .. } => RuleState::Hide {
                    tcp: PortMap::new(),
                    udp: PortMap::new(),
                    icmp: PortMap::new(),
                },
                _ => RuleState::Other,
            })
            .collect();
        Nat { rules, state }
    }

    pub fn rule_name(&self, rule: u16) -> &str {
        self.rules.get(usize::from(rule)).map_or("?", |r| r.name())
    }

    /// The translation of a new connection whose first packet is `t`, arriving on `side`.
    /// `attempt` > 0 asks for another choice after a key conflict.
    pub fn plan(&mut self, side: Side, t: &FlowTuple, attempt: u32) -> Result<Plan, Exhausted> {
        let none = Plan {
            xlat: *t,
            nat: NatState {
                kind: NatKind::None,
                rule: 0,
            },
        };
        if t.v6 {
            return Ok(none);
        }
        let (src, dst) = (v4(&t.src), v4(&t.dst));
        for (i, rule) in self.rules.iter().enumerate() {
            let mut x = *t;
            let nat = |kind| NatState {
                kind,
                rule: i as u16,
            };
            match (rule, side) {
                (
                    NatRule::Static {
                        original,
                        translated,
                        ..
                    },
                    Side::Inside,
                ) => {
                    if let Some(a) = map_prefix(src, original, translated) {
                        set_v4(&mut x.src, a);
                        return Ok(Plan {
                            xlat: x,
                            nat: nat(NatKind::Static),
                        });
                    }
                }
                (
                    NatRule::Static {
                        original,
                        translated,
                        ..
                    },
                    Side::Tunnel,
                ) => {
                    if let Some(a) = map_prefix(dst, translated, original) {
                        set_v4(&mut x.dst, a);
                        return Ok(Plan {
                            xlat: x,
                            nat: nat(NatKind::Static),
                        });
                    }
                }
                (
                    NatRule::Hide {
                        source,
                        address: IpAddr::V4(addr),
                        ports,
                        ..
                    },
                    Side::Inside,
                ) if in_any(source, src) => {
                    let RuleState::Hide { tcp, udp, icmp } = &mut self.state[i] else {
                        continue;
                    };
                    let map = match t.proto {
                        proto::TCP => tcp,
                        proto::UDP => udp,
                        proto::ICMP => icmp,
                        _ => continue, // no ports to share an address by
                    };
                    let port = map.take(*ports).ok_or(Exhausted { rule: i as u16 })?;
                    set_v4(&mut x.src, *addr);
                    x.sport = port;
                    return Ok(Plan {
                        xlat: x,
                        nat: nat(NatKind::Hide),
                    });
                }
                (
                    NatRule::Pool {
                        pool: IpNet::V4(pool),
                        source,
                        ..
                    },
                    Side::Tunnel,
                ) if in_any(source, src) => {
                    let hosts = if pool.prefix_len() >= 31 {
                        1u32 << (32 - pool.prefix_len())
                    } else {
                        (1u32 << (32 - pool.prefix_len())) - 2
                    };
                    let first = if pool.prefix_len() >= 31 { 0 } else { 1 };
                    // Stable per source address, moved on by conflicts.
                    let k = (u32::from(src).wrapping_mul(0x9E37_79B9) >> 7).wrapping_add(attempt)
                        % hosts;
                    set_v4(
                        &mut x.src,
                        Ipv4Addr::from(u32::from(pool.network()) + first + k),
                    );
                    if attempt >= hosts {
                        return Err(Exhausted { rule: i as u16 });
                    }
                    return Ok(Plan {
                        xlat: x,
                        nat: nat(NatKind::Pool),
                    });
                }
                _ => {}
            }
        }
        Ok(none)
    }

    /// Gives back what `plan` allocated (hide ports).
    pub fn release(&mut self, nat: NatState, xlat: &FlowTuple) {
        if nat.kind != NatKind::Hide {
            return;
        }
        if let Some(RuleState::Hide { tcp, udp, icmp }) = self.state.get_mut(usize::from(nat.rule))
        {
            match xlat.proto {
                proto::TCP => tcp.release(xlat.sport),
                proto::UDP => udp.release(xlat.sport),
                proto::ICMP => icmp.release(xlat.sport),
                _ => {}
            }
        }
    }
}
