//! Turns a parsed [`Scenario`] into a [`World`]: nodes, links, routes, engines, transfers.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use ipnet::Ipv4Net;

use crate::client::ClientNode;
use crate::ecmp::{Router, DEFAULT_NEXT_HOP_TIMEOUT};
use crate::gateway_node::GatewayNode;
use crate::host::{Host, ProxyHop, TransferRecord, TCP_BUFFER};
use crate::middlebox::{Allow, Firewall, Nat};
use crate::packet::Reassembler;
use crate::scenario::{Impairment, NodeKind, Scenario};
use crate::units;
use crate::world::{
    Iface, Kind, Link, LinkParams, LinkStats, Node, Route, Switch, TransferGroup, World,
};
use crate::SimError;

fn err(msg: impl Into<String>) -> SimError {
    SimError::Scenario(msg.into())
}

pub(crate) fn dur(s: &str, what: &str) -> Result<Duration, SimError> {
    units::duration(s).ok_or_else(|| {
        err(format!(
            "{what}: {s:?} is not a duration (allowed: 250us, 150ms, 2s, 1m, 1h)"
        ))
    })
}

/// Applies the keys present in `imp` to `p`.
pub(crate) fn impair(p: &mut LinkParams, imp: &Impairment, what: &str) -> Result<(), SimError> {
    if let Some(m) = imp.mtu {
        if m < 576 {
            return Err(err(format!("{what}.mtu: {m} is below 576")));
        }
        p.mtu = m;
    }
    if let Some(l) = &imp.latency {
        p.latency = dur(l, &format!("{what}.latency"))?;
    }
    if let Some(j) = &imp.jitter {
        p.jitter = dur(j, &format!("{what}.jitter"))?;
    }
    if let Some(loss) = imp.loss {
        if !(0.0..=1.0).contains(&loss) {
            return Err(err(format!("{what}.loss: {loss} is not in 0..=1")));
        }
        p.loss = loss;
    }
    if let Some(r) = imp.reorder {
        if !(0.0..=1.0).contains(&r) {
            return Err(err(format!("{what}.reorder: {r} is not in 0..=1")));
        }
        p.reorder = r;
    }
    if let Some(b) = &imp.bandwidth {
        p.bandwidth = units::rate(b).ok_or_else(|| {
            err(format!(
                "{what}.bandwidth: {b:?} is not a rate (allowed: 500kbit, 10Mbit, 1Gbit)"
            ))
        })?;
    }
    if let Some(q) = &imp.queue {
        p.queue = units::size(q)
            .ok_or_else(|| err(format!("{what}.queue: {q:?} is not a size (64KB, 1MB)")))?;
    }
    Ok(())
}

fn endpoint(s: &str, what: &str) -> Result<(String, Ipv4Addr, Ipv4Net), SimError> {
    let (node, cidr) = s
        .split_once(' ')
        .ok_or_else(|| err(format!("{what}: {s:?} is not \"node address/prefix\"")))?;
    let net: Ipv4Net = cidr
        .trim()
        .parse()
        .map_err(|_| err(format!("{what}: {cidr:?} is not an IPv4 address/prefix")))?;
    Ok((node.to_string(), net.addr(), net.trunc()))
}

/// The calendar time (unix seconds) the simulation's time zero stands for:
/// 2027-01-01T00:00:00Z. Certificate validity and CRL checks see this plus the simulated
/// offset, never the machine's clock, so runs do not depend on the day they are made on (the
/// shipped test certificates are valid from November 2026 to 2046).
pub const LAB_UNIX_TIME: u64 = 1_798_761_600;

/// Anchors every certificate peer's wall clock at [`LAB_UNIX_TIME`] for `base` (the instant
/// the engines see as simulated time zero). Configuration loading anchors it at the system
/// clock, which is right for a real gateway and wrong for a reproducible simulation.
fn pin_wall_clock(config: &mut rampart_config::GatewayConfig, base: std::time::Instant) {
    for peer in &mut config.peers {
        if let rampart_config::PeerAuth::Cert(cert) = &mut peer.auth {
            cert.clock.at = base;
            cert.clock.unix = LAB_UNIX_TIME;
        }
    }
}

/// What the scenario layer keeps beside the world.
pub(crate) struct Plan {
    pub node_index: BTreeMap<String, usize>,
    pub link_index: BTreeMap<String, usize>,
    /// Per transfer: sender node, receiver address and port.
    pub senders: Vec<(usize, Ipv4Addr, u16)>,
    /// Per transfer: the HTTP CONNECT proxy it goes through, if any.
    pub proxies: Vec<Option<ProxyHop>>,
    /// Per transfer: when it starts, and its socket buffer size.
    pub starts: Vec<Duration>,
    pub buffers: Vec<usize>,
    pub transfer_rngs: Vec<rampart_crypto::Rng>,
}

pub(crate) fn build(
    sc: &Scenario,
    base_dir: Option<&Path>,
    seed: u64,
) -> Result<(World, Plan), SimError> {
    let mut world = World::new(seed);
    let mut node_index = BTreeMap::new();
    for (i, n) in sc.nodes.iter().enumerate() {
        if node_index.insert(n.name.clone(), i).is_some() {
            return Err(err(format!("node {:?} is declared twice", n.name)));
        }
        world.nodes.push(Node {
            name: n.name.clone(),
            ifaces: Vec::new(),
            routes: Vec::new(),
            up: true,
            changed_at: Duration::ZERO,
            held: Vec::new(),
            kind: Kind::Router(Router {
                seed: 0,
                next_hop_timeout: DEFAULT_NEXT_HOP_TIMEOUT,
            }),
            wake: None,
            reasm: Reassembler::default(),
        });
    }
    let mut link_index = BTreeMap::new();
    for (li, l) in sc.links.iter().enumerate() {
        if link_index.insert(l.name.clone(), li).is_some() {
            return Err(err(format!("link {:?} is declared twice", l.name)));
        }
        let mut params = LinkParams {
            mtu: 1500,
            latency: Duration::from_millis(1),
            jitter: Duration::ZERO,
            loss: 0.0,
            reorder: 0.0,
            bandwidth: 1_000_000_000,
            queue: 256_000,
        };
        impair(&mut params, &l.impairment, &format!("link {}", l.name))?;
        let mut ends = [(0, 0); 2];
        for (side, spec) in [&l.a, &l.b].into_iter().enumerate() {
            let what = format!("link {}.{}", l.name, if side == 0 { "a" } else { "b" });
            let (node, addr, net) = endpoint(spec, &what)?;
            let &ni = node_index
                .get(&node)
                .ok_or_else(|| err(format!("{what}: no node named {node:?}")))?;
            let n = &mut world.nodes[ni];
            n.ifaces.push(Iface {
                link: li,
                side,
                addr,
                net,
                claimed: Vec::new(),
            });
            let iface = n.ifaces.len() - 1;
            n.routes.push(Route {
                net,
                iface,
                ecmp: Vec::new(),
            });
            ends[side] = (ni, iface);
        }
        world.links.push(Link {
            name: l.name.clone(),
            ends,
            params,
            up: true,
            changed_at: Duration::ZERO,
            busy_until: [Duration::ZERO; 2],
            last_arrival: [Duration::ZERO; 2],
            stats: LinkStats::default(),
        });
    }
    for (ni, spec) in sc.nodes.iter().enumerate() {
        let what = format!("node {}", spec.name);
        let mut default_gw = None;
        for r in &spec.routes {
            let (net, vias) = r.split_once(" via ").ok_or_else(|| {
                err(format!(
                    "{what}.routes: {r:?} is not \"prefix via address\""
                ))
            })?;
            let net: Ipv4Net = net
                .trim()
                .parse()
                .map_err(|_| err(format!("{what}.routes: {net:?} is not an IPv4 prefix")))?;
            // Several next hops (separated by spaces or commas): equal-cost multipath.
            let mut hops = Vec::new();
            for via in vias.split([' ', ',']).filter(|v| !v.is_empty()) {
                let via: Ipv4Addr = via
                    .parse()
                    .map_err(|_| err(format!("{what}.routes: {via:?} is not an IPv4 address")))?;
                let iface = world.nodes[ni]
                    .ifaces
                    .iter()
                    .position(|i| i.net.contains(&via))
                    .ok_or_else(|| err(format!("{what}.routes: {via} is on none of its links")))?;
                if hops.iter().any(|&(i, _)| i == iface) {
                    return Err(err(format!(
                        "{what}.routes: {r:?}: equal-cost next hops must be on different links"
                    )));
                }
                hops.push((iface, via));
            }
            let Some(&(iface, via)) = hops.first() else {
                return Err(err(format!("{what}.routes: {r:?} names no next hop")));
            };
            if hops.len() > 1 && spec.kind != NodeKind::Router {
                return Err(err(format!(
                    "{what}.routes: {r:?}: only a router spreads a route over several next hops"
                )));
            }
            world.nodes[ni].routes.push(Route {
                net: net.trunc(),
                iface,
                ecmp: if hops.len() > 1 {
                    hops.iter().map(|&(i, _)| i).collect()
                } else {
                    Vec::new()
                },
            });
            if net.prefix_len() == 0 {
                default_gw = Some(via);
            }
        }
        if spec.kind != NodeKind::Router
            && (spec.ecmp_seed.is_some() || spec.next_hop_timeout.is_some())
        {
            return Err(err(format!(
                "{what}: `ecmp_seed` and `next_hop_timeout` are for routers"
            )));
        }
        let node_seed = world.rng.next_u64();
        let outside = |world: &World| -> Result<(usize, Ipv4Addr), SimError> {
            let name = spec
                .outside
                .as_ref()
                .ok_or_else(|| err(format!("{what}: `outside` (a link name) is required")))?;
            let &li = link_index
                .get(name)
                .ok_or_else(|| err(format!("{what}.outside: no link named {name:?}")))?;
            let n = &world.nodes[ni];
            let i =
                n.ifaces.iter().position(|i| i.link == li).ok_or_else(|| {
                    err(format!("{what}.outside: link {name} is not attached to it"))
                })?;
            Ok((i, n.ifaces[i].addr))
        };
        let kind = match spec.kind {
            NodeKind::Router => Kind::Router(Router {
                // One seed per router: from the scenario file, else from the run's seed.
                seed: spec.ecmp_seed.unwrap_or(node_seed),
                next_hop_timeout: match &spec.next_hop_timeout {
                    Some(t) => dur(t, &format!("{what}.next_hop_timeout"))?,
                    None => DEFAULT_NEXT_HOP_TIMEOUT,
                },
            }),
            NodeKind::Switch => {
                // Its routes name next hops that are resolved per packet to the machine that
                // owns them now (a virtual address moves with its claims).
                let mut routes = Vec::new();
                for r in &spec.routes {
                    let (net, via) = r.split_once(" via ").unwrap_or((r, ""));
                    let net: Ipv4Net = net.trim().parse().map_err(|_| {
                        err(format!("{what}.routes: {net:?} is not an IPv4 prefix"))
                    })?;
                    let via: Ipv4Addr = via.trim().parse().map_err(|_| {
                        err(format!("{what}.routes: {via:?} is not an IPv4 address"))
                    })?;
                    routes.push((net.trunc(), via));
                }
                Kind::Switch(Box::new(Switch {
                    routes,
                    owners: BTreeMap::new(),
                }))
            }
            NodeKind::Client => {
                let n = &world.nodes[ni];
                let [iface] = n.ifaces.as_slice() else {
                    return Err(err(format!("{what}: a client has exactly one link")));
                };
                let (addr, prefix, link) = (iface.addr, iface.net.prefix_len(), iface.link);
                let text = spec.profile.as_ref().ok_or_else(|| {
                    err(format!(
                        "{what}: a client needs `profile` (its profile TOML)"
                    ))
                })?;
                // Relative paths (CA files) start at the scenario's directory; the profile's
                // default name is the node's.
                let file = base_dir
                    .map_or_else(
                        || format!("{}.toml", spec.name).into(),
                        |d| d.join(format!("{}.toml", spec.name)),
                    )
                    .display()
                    .to_string();
                let mut profile = rampart_config::parse_profile(text, &file)
                    .map_err(|e| err(format!("{what}: invalid client profile:\n{e}")))?;
                if let rampart_config::PeerAuth::Cert(cert) = &mut profile.auth {
                    cert.clock.at = world.base;
                    cert.clock.unix = LAB_UNIX_TIME;
                }
                let mtu = usize::from(world.links[link].params.mtu);
                let rng = world.rng.fork();
                let client = ClientNode::new(
                    &spec.name,
                    profile,
                    (addr, prefix, default_gw),
                    mtu,
                    node_seed,
                    rng,
                )
                .map_err(|e| err(format!("{what}: {e}")))?;
                Kind::Client(Box::new(client))
            }
            NodeKind::Host | NodeKind::Proxy => {
                let n = &world.nodes[ni];
                let [iface] = n.ifaces.as_slice() else {
                    return Err(err(format!("{what}: a host or proxy has exactly one link")));
                };
                let mtu = usize::from(world.links[iface.link].params.mtu);
                let mut host = Host::new(
                    iface.addr,
                    iface.net.prefix_len(),
                    default_gw,
                    mtu,
                    node_seed,
                );
                if spec.kind == NodeKind::Proxy {
                    if let Some(c) = &spec.basic_auth {
                        if !c.contains(':') {
                            return Err(err(format!(
                                "{what}.basic_auth: {c:?} is not \"user:password\""
                            )));
                        }
                    }
                    host.enable_proxy(spec.port.unwrap_or(3128), spec.basic_auth.clone());
                } else if spec.port.is_some() || spec.basic_auth.is_some() {
                    return Err(err(format!(
                        "{what}: `port` and `basic_auth` are for proxy nodes"
                    )));
                }
                Kind::Host(Box::new(host))
            }
            NodeKind::Gateway => {
                let (text, file) = match (&spec.config, &spec.config_file) {
                    (Some(t), None) => {
                        // Relative paths (certificates, keys) start at the scenario's directory.
                        let name = format!("{}.toml (inline)", spec.name);
                        let path = base_dir.map_or_else(|| name.clone().into(), |d| d.join(&name));
                        (t.clone(), path.display().to_string())
                    }
                    (None, Some(f)) => {
                        let path = base_dir.unwrap_or(Path::new(".")).join(f);
                        let t = std::fs::read_to_string(&path).map_err(|e| {
                            err(format!(
                                "{what}.config_file: cannot read {}: {e}",
                                path.display()
                            ))
                        })?;
                        (t, path.display().to_string())
                    }
                    _ => {
                        return Err(err(format!(
                            "{what}: a gateway needs exactly one of `config` and `config_file`"
                        )))
                    }
                };
                let mut config = rampart_config::parse(&text, &file)
                    .map_err(|e| err(format!("{what}: invalid gateway configuration:\n{e}")))?;
                pin_wall_clock(&mut config, world.base);
                Kind::Gateway(Box::new(GatewayNode::new(config)))
            }
            NodeKind::Nat => {
                let (i, public) = outside(&world)?;
                let udp = dur(spec.udp_timeout.as_deref().unwrap_or("30s"), &what)?;
                let tcp = dur(spec.tcp_timeout.as_deref().unwrap_or("300s"), &what)?;
                Kind::Nat(Box::new(Nat::new(i, public, udp, tcp, spec.drop_fragments)))
            }
            NodeKind::Firewall => {
                let (i, _) = outside(&world)?;
                let allow = spec
                    .allow
                    .iter()
                    .map(|a| {
                        Allow::parse(a).ok_or_else(|| {
                            err(format!(
                                "{what}.allow: {a:?} is not tcp/PORT, udp/PORT or esp"
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Kind::Firewall(Box::new(Firewall::new(i, allow)))
            }
        };
        world.nodes[ni].kind = kind;
    }
    let mut senders = Vec::new();
    let mut transfer_rngs = Vec::new();
    let mut proxies = Vec::new();
    let mut starts = Vec::new();
    let mut buffers = Vec::new();
    let mut groups = Vec::new();
    for (ti, t) in sc.transfers.iter().enumerate() {
        let what = format!("transfer {}", t.name);
        let host = |name: &str| -> Result<usize, SimError> {
            let &i = node_index
                .get(name)
                .ok_or_else(|| err(format!("{what}: no node named {name:?}")))?;
            match world.nodes[i].kind {
                Kind::Host(_) => Ok(i),
                _ => Err(err(format!("{what}: {name} is not a host"))),
            }
        };
        // A client machine sends from its inner host, through its tunnel.
        let from = match node_index.get(&t.from).map(|&i| (i, &world.nodes[i].kind)) {
            Some((i, Kind::Client(_))) => i,
            _ => host(&t.from)?,
        };
        let to = host(&t.to)?;
        let via = match (&t.via_proxy, &t.proxy_auth) {
            (None, Some(_)) => {
                return Err(err(format!("{what}: `proxy_auth` needs `via_proxy`")));
            }
            (None, None) => None,
            (Some(p), auth) => {
                let &pi = node_index
                    .get(p)
                    .ok_or_else(|| err(format!("{what}.via_proxy: no node named {p:?}")))?;
                let port = match &world.nodes[pi].kind {
                    Kind::Host(h) => h.proxy_port(),
                    _ => None,
                }
                .ok_or_else(|| err(format!("{what}.via_proxy: {p} is not a proxy")))?;
                Some(ProxyHop {
                    proxy: (world.nodes[pi].ifaces[0].addr, port),
                    credentials: auth.clone(),
                })
            }
        };
        let size = units::size(&t.size)
            .ok_or_else(|| err(format!("{what}.size: {:?} is not a size", t.size)))?;
        let at = dur(&t.at, &format!("{what}.at"))?;
        let count = t.count.unwrap_or(1);
        let every = match &t.every {
            Some(e) => dur(e, &format!("{what}.every"))?,
            None => Duration::from_millis(1),
        };
        if count == 0 {
            return Err(err(format!("{what}.count: 0 connections")));
        }
        if count > 1 && t.port.is_none() {
            return Err(err(format!(
                "{what}: a group (`count` above 1) needs `port`, the first of its ports"
            )));
        }
        if t.every.is_some() && count == 1 {
            return Err(err(format!(
                "{what}: `every` is for a group (`count` above 1)"
            )));
        }
        if groups.iter().any(|g: &TransferGroup| g.name == t.name) {
            return Err(err(format!("{what}: declared twice")));
        }
        let first = t.port.unwrap_or(5001 + ti as u16);
        if u32::from(first) + count - 1 > u32::from(u16::MAX) {
            return Err(err(format!("{what}: ports {first} + {count} pass 65535")));
        }
        // A group's connections carry little each: buffers just above their size.
        let buffer = if count > 1 {
            (size as usize + 1024)
                .next_power_of_two()
                .clamp(4096, TCP_BUFFER)
        } else {
            TCP_BUFFER
        };
        let addr = world.nodes[to].ifaces[0].addr;
        let start = world.transfers.len();
        for k in 0..count {
            let i = world.transfers.len();
            let port = first + k as u16;
            if let Kind::Host(h) = &mut world.nodes[to].kind {
                h.add_receiver(i, port, buffer);
            }
            senders.push((from, addr, port));
            proxies.push(via.clone());
            starts.push(at + every * k);
            buffers.push(buffer);
            transfer_rngs.push(world.rng.fork());
            world.transfers.push(TransferRecord {
                name: if count > 1 {
                    format!("{}#{}", t.name, k + 1)
                } else {
                    t.name.clone()
                },
                from: t.from.clone(),
                to: t.to.clone(),
                size,
                started: None,
                sent_digest: None,
                received: 0,
                finished: None,
                intact: false,
                failure: None,
                quiet: count > 1,
            });
            world.transfer_reported.push(false);
        }
        groups.push(TransferGroup {
            name: t.name.clone(),
            from: t.from.clone(),
            to: t.to.clone(),
            size,
            every,
            members: start..world.transfers.len(),
            reported: false,
        });
    }
    world.groups = groups;
    Ok((
        world,
        Plan {
            node_index,
            link_index,
            senders,
            proxies,
            starts,
            buffers,
            transfer_rngs,
        },
    ))
}
