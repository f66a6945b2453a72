//! NAT: hide (many-to-one with port allocation), static (1:1) and IP Pool NAT. The chosen
//! translation is stored in the connection entry (`xlat`); this module only allocates.

use std::net::{IpAddr, Ipv4Addr};

use crate::policy::NatRule;
use ipnet::IpNet;
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

    /// Marks `p` in use; false when it already was.
    fn reserve(&mut self, p: u16) -> bool {
        let (w, b) = (usize::from(p) / 64, p % 64);
        let free = self.bits[w] & (1 << b) == 0;
        self.bits[w] |= 1 << b;
        free
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

/// `NatState::rule` of a translated connection whose `[[nat]]` rule is gone (removed by a
/// reload, or unknown to the member that imported it): the translation stays with the
/// connection, nothing is allocated for it.
pub const NAT_RULE_GONE: u16 = u16::MAX;

/// A connection taken over ([`Nat::adopt`]) holds a hide port that is already in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortTaken;

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
        if rule == NAT_RULE_GONE {
            return "(removed)";
        }
        self.rules.get(usize::from(rule)).map_or("?", |r| r.name())
    }

    /// The name of rule `rule`, if there is one.
    pub fn name_of(&self, rule: u16) -> Option<&str> {
        self.rules.get(usize::from(rule)).map(|r| r.name())
    }

    /// The port map a hide connection with translated tuple `xlat` allocates from under rule
    /// `rule`: only when that rule is a hide rule with `xlat`'s source address, so that an
    /// allocation is never given back to a map it was not taken from.
    fn hide_map(&mut self, rule: u16, xlat: &FlowTuple) -> Option<&mut PortMap> {
        let i = usize::from(rule);
        match self.rules.get(i)? {
            NatRule::Hide {
                address: IpAddr::V4(a),
                ..
            } if !xlat.v6 && *a == v4(&xlat.src) => {}
            _ => return None,
        }
        let RuleState::Hide { tcp, udp, icmp } = self.state.get_mut(i)? else {
            return None;
        };
        match xlat.proto {
            proto::TCP => Some(tcp),
            proto::UDP => Some(udp),
            proto::ICMP => Some(icmp),
            _ => None,
        }
    }

    /// Whether rule `i` can own a connection translated as `kind` to `xlat`.
    fn fits(&self, i: usize, kind: NatKind, xlat: &FlowTuple) -> bool {
        match (self.rules.get(i), kind) {
            (Some(NatRule::Hide { address, .. }), NatKind::Hide) => {
                !xlat.v6 && *address == IpAddr::V4(v4(&xlat.src))
            }
            (Some(NatRule::Static { .. }), NatKind::Static)
            | (Some(NatRule::Pool { .. }), NatKind::Pool) => true,
            _ => false,
        }
    }

    /// Takes over a connection translated elsewhere (by another member, or by this inspector
    /// under its previous rules): points `nat.rule` at the rule that owns it here and marks
    /// its hide port in use, so the port is not handed out twice.
    ///
    /// The owner is rule `nat.rule` when it fits (same kind; for hide the same address) and,
    /// with `name`, carries that name; else the rule named `name` that fits; else, for hide,
    /// any hide rule with the connection's address; else none ([`NAT_RULE_GONE`]): the
    /// connection keeps its translation and nothing is reserved.
    pub fn adopt(
        &mut self,
        nat: &mut NatState,
        xlat: &FlowTuple,
        name: Option<&str>,
    ) -> Result<(), PortTaken> {
        if nat.kind == NatKind::None {
            return Ok(());
        }
        let named = |r: &NatRule| name.is_none_or(|n| r.name() == n);
        let at = usize::from(nat.rule);
        let owner = if self.fits(at, nat.kind, xlat) && named(&self.rules[at]) {
            Some(at)
        } else {
            let by_name = name.and_then(|n| {
                (0..self.rules.len())
                    .find(|&i| self.rules[i].name() == n && self.fits(i, nat.kind, xlat))
            });
            by_name.or_else(|| {
                (nat.kind == NatKind::Hide)
                    .then(|| (0..self.rules.len()).find(|&i| self.fits(i, nat.kind, xlat)))
                    .flatten()
            })
        };
        let Some(owner) = owner else {
            nat.rule = NAT_RULE_GONE;
            return Ok(());
        };
        nat.rule = owner as u16;
        if nat.kind == NatKind::Hide {
            if let Some(map) = self.hide_map(nat.rule, xlat) {
                if !map.reserve(xlat.sport) {
                    return Err(PortTaken);
                }
            }
        }
        Ok(())
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

    /// Gives back what `plan` or `adopt` allocated (hide ports).
    pub fn release(&mut self, nat: NatState, xlat: &FlowTuple) {
        if nat.kind != NatKind::Hide {
            return;
        }
        if let Some(map) = self.hide_map(nat.rule, xlat) {
            map.release(xlat.sport);
        }
    }
}
