//! Runs a scenario: the timeline of events and transfers, the assertions, the report.

use std::path::Path;
use std::time::Duration;

use crate::build::{self, dur, Plan};
use crate::cluster_checks::ClusterCheck;
use crate::gateway_node::GwEffects;
use crate::report::{Outcome, Report, Verdict};
use crate::scenario::{Action, AssertSpec, Scenario};
use crate::world::{Ev, Kind, World};
use crate::SimError;
use rampart_node::ClusterCommand;

/// Interval at which assertions are looked at (a scenario ends once all have passed).
const CHECK_EVERY: Duration = Duration::from_millis(500);

/// Upper bound on events per run, far above any shipped scenario: a livelock ends the run
/// with an error instead of hanging.
const MAX_EVENTS: u64 = 50_000_000;

struct Check {
    spec: AssertSpec,
    label: String,
    node: Option<usize>,
    /// The transfers checked: one, or every member of a group.
    transfer: Option<std::ops::Range<usize>>,
    /// A check over cluster members together, and the members (gateway nodes).
    cluster: Option<ClusterCheck>,
    members: Vec<usize>,
    after: Duration,
    within: Option<Duration>,
    verdict: Option<Verdict>,
}

/// Runs `sc` with `seed`. `base_dir` resolves `config_file` keys.
pub fn run(sc: &Scenario, base_dir: Option<&Path>, seed: u64) -> Result<Report, SimError> {
    let (mut world, plan) = build::build(sc, base_dir, seed)?;
    let duration = dur(&sc.duration, "duration")?;
    let mut checks = checks(sc, &world, &plan)?;
    let mut last_event = Duration::ZERO;
    for (i, e) in sc.events.iter().enumerate() {
        let at = dur(&e.at, &format!("event[{i}].at"))?;
        validate_event(sc, i, &plan)?;
        last_event = last_event.max(at);
        world.schedule(at, Ev::Scheduled(i));
    }
    for (i, &at) in plan.starts.iter().enumerate() {
        world.schedule(at, Ev::TransferStart(i));
    }
    world.schedule(Duration::ZERO, Ev::Check);
    // Gateways boot at time zero, in declaration order.
    for n in 0..world.nodes.len() {
        start_gateway(&mut world, n, false);
    }
    for n in 0..world.nodes.len() {
        if matches!(world.nodes[n].kind, Kind::Host(_) | Kind::Client(_)) {
            world.reschedule(n);
        }
    }
    let mut rngs = plan.transfer_rngs;
    let mut ended_early = false;
    while let Some(ev) = world.pop(duration) {
        if world.events_run > MAX_EVENTS {
            return Err(SimError::Runaway(world.now));
        }
        match ev {
            Ev::Scheduled(i) => scheduled(&mut world, sc, &plan.node_index, &plan.link_index, i)?,
            Ev::TransferStart(i) => {
                let (node, addr, port) = plan.senders[i];
                let rng = std::mem::replace(&mut rngs[i], rampart_crypto::Rng::from_seed([0; 32]));
                world.transfers[i].started = Some(world.now);
                let name = world.nodes[node].name.clone();
                let t = &world.transfers[i];
                let group = world.groups.iter().find(|g| g.members.start == i);
                let text = match group {
                    Some(g) if g.is_group() => Some(format!(
                        "transfer group {}: {} connections of {} to {} ({addr}:{port}..{}), one every {}, start",
                        g.name,
                        g.members.len(),
                        crate::units::bytes(g.size),
                        g.to,
                        usize::from(port) + g.members.len() - 1,
                        crate::units::secs(g.every)
                    )),
                    _ if t.quiet => None,
                    _ => Some(format!(
                        "transfer {}: {} to {} ({addr}:{port}) starts",
                        t.name,
                        crate::units::bytes(t.size),
                        t.to
                    )),
                };
                if let Some(text) = text {
                    world.note(&name, text);
                }
                let buffer = plan.buffers[i];
                match &mut world.nodes[node].kind {
                    Kind::Host(h) => {
                        h.start_sender_with(i, (addr, port), plan.proxies[i].clone(), rng, buffer);
                        world.run_host(node);
                    }
                    Kind::Client(c) => {
                        let waits = c.start_sender(i, (addr, port), plan.proxies[i].clone(), rng);
                        if let Some(why) = waits {
                            let t = world.transfers[i].name.clone();
                            world.note(&name, format!("transfer {t}: {why}"));
                        }
                        world.run_client(node);
                    }
                    _ => {}
                }
            }
            Ev::Check => {
                decide(&world, &mut checks, false);
                let all_passed = checks.iter().all(|c| match c.verdict {
                    Some(Verdict::Pass(_)) => true,
                    // Decided at the end; no error so far.
                    None => {
                        c.spec.no_esp_errors || c.spec.no_drops.is_some() || c.cluster.is_some()
                    }
                    Some(Verdict::Fail(_)) => false,
                });
                let transfers_done = world
                    .transfers
                    .iter()
                    .all(|t| t.finished.is_some() || t.failure.is_some());
                if all_passed && transfers_done && world.now >= last_event {
                    ended_early = true;
                    break;
                }
                world.schedule(world.now + CHECK_EVERY, Ev::Check);
            }
            other => world.handle(other),
        }
    }
    if !ended_early {
        world.now = duration;
    }
    decide(&world, &mut checks, true);
    let outcomes = checks
        .into_iter()
        .map(|c| Outcome {
            label: c.label,
            verdict: c.verdict.unwrap_or(Verdict::Fail("undecided".into())),
        })
        .collect();
    Ok(Report::new(sc, seed, &world, outcomes, ended_early))
}

fn start_gateway(world: &mut World, node: usize, restart: bool) {
    let rng = world.rng.fork();
    let (base, now) = (world.base, world.now);
    let Kind::Gateway(gw) = &mut world.nodes[node].kind else {
        return;
    };
    if restart {
        gw.restarts += 1;
    }
    let mut fx = GwEffects::default();
    gw.start(base, now, rng, &mut fx);
    let n = &world.nodes[node];
    let addrs: Vec<(std::net::Ipv4Addr, u8)> = n
        .ifaces
        .iter()
        .map(|i| (i.addr, i.net.prefix_len()))
        .collect();
    let mtu = n
        .ifaces
        .iter()
        .map(|i| usize::from(world.links[i.link].params.mtu))
        .max()
        .unwrap_or(1500);
    // Only remote-access gateways draw from the RNG here, so the other scenarios keep their
    // runs.
    let remote_access =
        matches!(&world.nodes[node].kind, Kind::Gateway(gw) if gw.config.remote_access.is_some());
    if remote_access {
        let seed = world.rng.next_u64();
        if let Kind::Gateway(gw) = &mut world.nodes[node].kind {
            gw.open_streams(&addrs, mtu, seed, &mut fx);
        }
    }
    world.apply(node, fx);
}

fn validate_event(sc: &Scenario, i: usize, plan: &Plan) -> Result<(), SimError> {
    let e = &sc.events[i];
    let what = format!("event[{i}] ({:?})", e.action);
    match e.action {
        Action::LinkDown | Action::LinkUp | Action::Impair => {
            let l = e
                .link
                .as_ref()
                .ok_or_else(|| SimError::Scenario(format!("{what}: `link` is required")))?;
            if !plan.link_index.contains_key(l) {
                return Err(SimError::Scenario(format!("{what}: no link named {l:?}")));
            }
        }
        Action::Cut | Action::Restore => match (&e.link, &e.node) {
            (Some(l), None) if plan.link_index.contains_key(l) => {}
            (Some(l), None) => {
                return Err(SimError::Scenario(format!("{what}: no link named {l:?}")));
            }
            (None, Some(n)) if plan.node_index.contains_key(n) => {}
            (None, Some(n)) => {
                return Err(SimError::Scenario(format!("{what}: no node named {n:?}")));
            }
            _ => {
                return Err(SimError::Scenario(format!(
                    "{what}: name exactly one of `link` and `node` (every link of it)"
                )));
            }
        },
        Action::Readdress => {
            let n = e
                .node
                .as_ref()
                .ok_or_else(|| SimError::Scenario(format!("{what}: `node` is required")))?;
            let &ni = plan
                .node_index
                .get(n)
                .ok_or_else(|| SimError::Scenario(format!("{what}: no node named {n:?}")))?;
            if sc.nodes[ni].kind != crate::scenario::NodeKind::Client {
                return Err(SimError::Scenario(format!("{what}: {n} is not a client")));
            }
            readdress_spec(e, &what)?;
        }
        Action::NatFlush => {
            let n = e
                .node
                .as_ref()
                .ok_or_else(|| SimError::Scenario(format!("{what}: `node` is required")))?;
            let &ni = plan
                .node_index
                .get(n)
                .ok_or_else(|| SimError::Scenario(format!("{what}: no node named {n:?}")))?;
            if sc.nodes[ni].kind != crate::scenario::NodeKind::Nat {
                return Err(SimError::Scenario(format!("{what}: {n} is not a NAT")));
            }
        }
        Action::Crash
        | Action::Restart
        | Action::Switchover
        | Action::AdminDown
        | Action::AdminUp => {
            let n = e
                .node
                .as_ref()
                .ok_or_else(|| SimError::Scenario(format!("{what}: `node` is required")))?;
            if !plan.node_index.contains_key(n) {
                return Err(SimError::Scenario(format!("{what}: no node named {n:?}")));
            }
        }
    }
    Ok(())
}

/// The new address (`address`, `"a.b.c.d/prefix"`) and router (`via`) of a `readdress`.
fn readdress_spec(
    e: &crate::scenario::EventSpec,
    what: &str,
) -> Result<(ipnet::Ipv4Net, Option<std::net::Ipv4Addr>), SimError> {
    let a = e
        .address
        .as_ref()
        .ok_or_else(|| SimError::Scenario(format!("{what}: `address` is required")))?;
    let net: ipnet::Ipv4Net = a.parse().map_err(|_| {
        SimError::Scenario(format!("{what}.address: {a:?} is not \"a.b.c.d/prefix\""))
    })?;
    let via = match &e.via {
        Some(v) => Some(v.parse().map_err(|_| {
            SimError::Scenario(format!("{what}.via: {v:?} is not an IPv4 address"))
        })?),
        None => None,
    };
    if let Some(v) = via {
        if !net.contains(&v) {
            return Err(SimError::Scenario(format!(
                "{what}.via: {v} is not in {net}"
            )));
        }
    }
    Ok((net, via))
}

fn scheduled(
    world: &mut World,
    sc: &Scenario,
    nodes: &std::collections::BTreeMap<String, usize>,
    links: &std::collections::BTreeMap<String, usize>,
    i: usize,
) -> Result<(), SimError> {
    let e = &sc.events[i];
    let link = e.link.as_ref().and_then(|l| links.get(l).copied());
    let node = e.node.as_ref().and_then(|n| nodes.get(n).copied());
    match (e.action, link, node) {
        (Action::LinkDown | Action::Cut, Some(l), _) => set_link(world, l, false),
        (Action::LinkUp | Action::Restore, Some(l), _) => set_link(world, l, true),
        (Action::Cut | Action::Restore, None, Some(n)) => {
            let up = e.action == Action::Restore;
            let name = world.nodes[n].name.clone();
            let what = if up { "restored" } else { "cut" };
            world.note(&name, format!("every link {what}"));
            let links: Vec<usize> = world.nodes[n].ifaces.iter().map(|i| i.link).collect();
            for l in links {
                set_link(world, l, up);
            }
        }
        (Action::Impair, Some(l), _) => {
            let name = world.links[l].name.clone();
            build::impair(
                &mut world.links[l].params,
                &e.impairment,
                &format!("event[{i}]"),
            )?;
            let p = world.links[l].params.clone();
            world.note(
                &name,
                format!(
                    "impairment: latency {}, jitter {}, loss {:.1}%, {}, MTU {}",
                    crate::units::secs(p.latency),
                    crate::units::secs(p.jitter),
                    p.loss * 100.0,
                    crate::units::bitrate(p.bandwidth as f64),
                    p.mtu
                ),
            );
        }
        (Action::Crash, _, Some(n)) => {
            world.nodes[n].up = false;
            world.nodes[n].changed_at = world.now;
            world.nodes[n].wake = None;
            let now = world.now;
            if let Kind::Gateway(gw) = &mut world.nodes[n].kind {
                gw.crash(now);
            }
            world.forget_claims(n);
            let name = world.nodes[n].name.clone();
            world.note(&name, "CRASH: the machine stops (all state lost)".into());
        }
        (Action::Switchover | Action::AdminDown | Action::AdminUp, _, Some(n)) => {
            let command = match e.action {
                Action::Switchover => ClusterCommand::Switchover { to: e.to },
                Action::AdminDown => ClusterCommand::Down,
                _ => ClusterCommand::Up,
            };
            let (base, now) = (world.base, world.now);
            let name = world.nodes[n].name.clone();
            let answer = match &mut world.nodes[n].kind {
                Kind::Gateway(gw) => gw.cluster_command(base, now, command),
                _ => Err("not a gateway".to_string()),
            };
            let text = match answer {
                Ok(line) => format!("{:?}: {line}", e.action),
                Err(why) => format!("{:?} refused: {why}", e.action),
            };
            world.note(&name, text);
            world.apply(n, GwEffects::default());
            world.wake_now(n);
        }
        (Action::Readdress, _, Some(n)) => {
            let (net, via) = readdress_spec(e, &format!("event[{i}]"))?;
            let name = world.nodes[n].name.clone();
            let old = world.nodes[n].ifaces[0].addr;
            world.note(&name, format!("moves to another network: {old} -> {net}"));
            // The link stays: the router at its other end routes the new network into it.
            let iface = &mut world.nodes[n].ifaces[0];
            iface.addr = net.addr();
            iface.net = net.trunc();
            let (base, now) = (world.base, world.now);
            let mut fx = crate::client::ClientFx::default();
            if let Kind::Client(c) = &mut world.nodes[n].kind {
                c.readdress(base, now, net.addr(), net.prefix_len(), via, &mut fx);
            }
            world.apply_client(n, fx);
            world.run_client(n);
        }
        (Action::NatFlush, _, Some(n)) => {
            let name = world.nodes[n].name.clone();
            let forgotten = match &mut world.nodes[n].kind {
                Kind::Nat(nat) => nat.flush(),
                _ => 0,
            };
            world.note(
                &name,
                format!("forgets its {forgotten} mapping(s): the next packet of each flow gets a new public port"),
            );
        }
        (Action::Restart, _, Some(n)) => {
            world.nodes[n].up = true;
            world.nodes[n].changed_at = world.now;
            let name = world.nodes[n].name.clone();
            world.note(&name, "restart: a fresh process boots".into());
            start_gateway(world, n, true);
            world.reschedule(n);
        }
        _ => {}
    }
    Ok(())
}

/// Takes link `l` down or up (a cut cable or a dead switch port) and notes it.
fn set_link(world: &mut World, l: usize, up: bool) {
    if world.links[l].up == up {
        return;
    }
    world.links[l].up = up;
    world.links[l].changed_at = world.now;
    let name = world.links[l].name.clone();
    world.note(&name, if up { "link up" } else { "link down" }.into());
    // The machines at its ends see their interface's carrier go (a cluster member's sync
    // link: its engine is told).
    for (node, iface) in world.links[l].ends {
        let addr = world.nodes[node].ifaces[iface].addr;
        let (base, now) = (world.base, world.now);
        let mut fx = GwEffects::default();
        let running = world.nodes[node].up;
        let link = match &mut world.nodes[node].kind {
            Kind::Gateway(gw) if running => gw.link_carrier(base, now, addr, up, &mut fx),
            _ => None,
        };
        if let Some(k) = link {
            let state = if up { "back" } else { "lost" };
            let who = world.nodes[node].name.clone();
            world.note(&who, format!("sync link {k}: carrier {state}"));
            world.apply(node, fx);
        }
    }
}

fn checks(sc: &Scenario, world: &World, plan: &Plan) -> Result<Vec<Check>, SimError> {
    let mut out = Vec::new();
    for (i, a) in sc.asserts.iter().enumerate() {
        let what = format!("assert[{i}]");
        let e = |m: String| SimError::Scenario(format!("{what}: {m}"));
        let after = match &a.after {
            Some(s) => dur(s, &format!("{what}.after"))?,
            None => Duration::ZERO,
        };
        let within = match (&a.within, &a.up_within) {
            (Some(s), _) | (None, Some(s)) => Some(dur(s, &what)?),
            _ => None,
        };
        let gateway = |name: &str| -> Result<usize, SimError> {
            let &n = plan
                .node_index
                .get(name)
                .ok_or_else(|| e(format!("no node named {name:?}")))?;
            match world.nodes[n].kind {
                Kind::Gateway(_) => Ok(n),
                _ => Err(e(format!("{name} is not a gateway"))),
            }
        };
        // A gateway or a client machine (both log).
        let machine = |name: &str| -> Result<usize, SimError> {
            let &n = plan
                .node_index
                .get(name)
                .ok_or_else(|| e(format!("no node named {name:?}")))?;
            match world.nodes[n].kind {
                Kind::Gateway(_) | Kind::Client(_) => Ok(n),
                _ => Err(e(format!("{name} is neither a gateway nor a client"))),
            }
        };
        let client = |name: &str| -> Result<usize, SimError> {
            let &n = plan
                .node_index
                .get(name)
                .ok_or_else(|| e(format!("no node named {name:?}")))?;
            match world.nodes[n].kind {
                Kind::Client(_) => Ok(n),
                _ => Err(e(format!("{name} is not a client"))),
            }
        };
        let w = |d: Option<Duration>| {
            d.map_or(String::new(), |d| {
                format!(" within {}", crate::units::secs(d))
            })
        };
        // Where an `after` window starts, for the labels.
        let from = if after.is_zero() {
            "start".to_string()
        } else {
            crate::units::secs(after)
        };
        if let Some(d) = &a.hold_p99_at_most {
            dur(d, &format!("{what}.hold_p99_at_most"))?;
        }
        if a.sync_link.is_some()
            && a.sync_link_switched_to_at_least.is_none()
            && a.sync_link_records_at_least.is_none()
        {
            return Err(e("`sync_link` goes with sync_link_switched_to_at_least or sync_link_records_at_least".into()));
        }
        if let Some(cc) = ClusterCheck::of(a) {
            let names: Vec<&String> = match (&a.node, a.nodes.is_empty()) {
                (Some(n), true) => vec![n],
                (None, false) => a.nodes.iter().collect(),
                _ => {
                    return Err(e(
                        "name the members in exactly one of `node` and `nodes`".into()
                    ))
                }
            };
            let members = names
                .iter()
                .map(|n| gateway(n))
                .collect::<Result<Vec<_>, _>>()?;
            let who = names
                .iter()
                .map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            out.push(Check {
                spec: a.clone(),
                label: cc.label(&who),
                node: None,
                transfer: None,
                cluster: Some(cc),
                members,
                after,
                within,
                verdict: None,
            });
            continue;
        }
        if a.distinct_addresses {
            if a.nodes.len() < 2 {
                return Err(e(
                    "`distinct_addresses` needs `nodes` (two clients or more)".into(),
                ));
            }
            let members = a
                .nodes
                .iter()
                .map(|n| client(n))
                .collect::<Result<Vec<_>, _>>()?;
            out.push(Check {
                spec: a.clone(),
                label: format!(
                    "{} hold different virtual IPs at the end",
                    a.nodes.join(", ")
                ),
                node: None,
                transfer: None,
                cluster: None,
                members,
                after,
                within,
                verdict: None,
            });
            continue;
        }
        if !a.nodes.is_empty() {
            return Err(e(
                "`nodes` is for the cluster checks and `distinct_addresses` (see docs/lab.md)"
                    .into(),
            ));
        }
        let (label, node, transfer) = if let Some(t) = &a.transfer {
            let g = world
                .groups
                .iter()
                .find(|g| &g.name == t)
                .ok_or_else(|| e(format!("no transfer named {t:?}")))?;
            let label = match (&a.fails_with, g.is_group()) {
                (Some(_), true) => {
                    return Err(e(format!(
                        "`fails_with` is for one transfer; {t} is a group"
                    )))
                }
                (Some(reason), false) => {
                    format!("transfer {t} fails with \"{reason}\"{}", w(within))
                }
                (None, false) => format!("transfer {t} completes byte-exact{}", w(within)),
                (None, true) => format!(
                    "all {} connections of {t} complete byte-exact{}",
                    g.members.len(),
                    w(within).replace(" within", ", each within")
                ),
            };
            (label, None, Some(g.members.clone()))
        } else if a.fails_with.is_some() {
            return Err(e("`fails_with` needs `transfer`".into()));
        } else if let Some(g) = &a.no_tunnel {
            (
                format!("{g} installs no tunnel{} counting from {from}", w(within)),
                Some(gateway(g)?),
                None,
            )
        } else if let Some(n) = a.ike_fragments_at_least {
            let g = a
                .node
                .as_ref()
                .ok_or_else(|| e("`ike_fragments_at_least` needs `node`".into()))?;
            (
                format!("{g} sends at least {n} IKE fragment(s)"),
                Some(gateway(g)?),
                None,
            )
        } else if let Some(g) = &a.tunnel {
            (
                format!("{g} installs a tunnel{} counting from {from}", w(within)),
                Some(gateway(g)?),
                None,
            )
        } else if let Some(text) = &a.log {
            let g = a
                .node
                .as_ref()
                .ok_or_else(|| e("`log` needs `node`".into()))?;
            (
                format!("{g} logs \"{text}\"{}", w(within)),
                Some(machine(g)?),
                None,
            )
        } else if let Some(text) = &a.no_log {
            let g = a
                .node
                .as_ref()
                .ok_or_else(|| e("`no_log` needs `node`".into()))?;
            (
                format!("{g} does not log \"{text}\"{}", w(within)),
                Some(machine(g)?),
                None,
            )
        } else if let Some(state) = &a.cluster_state {
            let g = a
                .node
                .as_ref()
                .ok_or_else(|| e("`cluster_state` needs `node`".into()))?;
            if !["active", "standby", "syncing", "down", "init"].contains(&state.as_str()) {
                return Err(e(format!(
                    "cluster_state: {state:?} is not one of active, standby, syncing, down, init"
                )));
            }
            let span = if a.until_end {
                " until the end".to_string()
            } else {
                w(within)
            };
            (
                format!("{g} is {state}{span} from {}", crate::units::secs(after)),
                Some(gateway(g)?),
                None,
            )
        } else if let Some(n) = a.sync_lost_at_most {
            let g = a
                .node
                .as_ref()
                .ok_or_else(|| e("`sync_lost_at_most` needs `node`".into()))?;
            (
                format!("{g} loses at most {n} sync record(s)"),
                Some(gateway(g)?),
                None,
            )
        } else if let Some(n) = a.full_syncs_at_least {
            let g = a
                .node
                .as_ref()
                .ok_or_else(|| e("`full_syncs_at_least` needs `node`".into()))?;
            (
                format!("{g} applies at least {n} full sync(s)"),
                Some(gateway(g)?),
                None,
            )
        } else if a.mep_state.is_some()
            || a.mep_chosen_at_least.is_some()
            || a.mep_chosen_at_most.is_some()
        {
            let g = a
                .node
                .as_ref()
                .ok_or_else(|| e("MEP checks need `node` (the satellite)".into()))?;
            let ep = a
                .mep_entry_point
                .as_ref()
                .ok_or_else(|| e("MEP checks need `mep_entry_point`".into()))?;
            let label = if let Some(state) = &a.mep_state {
                if !["up", "down", "unknown"].contains(&state.as_str()) {
                    return Err(e(format!(
                        "mep_state: {state:?} is not one of up, down, unknown"
                    )));
                }
                format!(
                    "{g} sees entry point {ep} {state}{} from {}",
                    w(within),
                    crate::units::secs(after)
                )
            } else if let Some(n) = a.mep_chosen_at_least {
                format!("{g} resolves at least {n} connection(s) to {ep}")
            } else {
                let n = a.mep_chosen_at_most.unwrap_or_default();
                format!("{g} resolves at most {n} connection(s) to {ep}")
            };
            (label, Some(gateway(g)?), None)
        } else if let Some(t) = &a.transport {
            let g = a
                .node
                .as_ref()
                .ok_or_else(|| e("`transport` needs `node` (a client)".into()))?;
            if !["udp", "tcp", "tls"].contains(&t.as_str()) {
                return Err(e(format!("transport: {t:?} is not one of udp, tcp, tls")));
            }
            (
                format!("{g} connects over {t}{} counting from {from}", w(within)),
                Some(client(g)?),
                None,
            )
        } else if let Some(how) = &a.moved {
            let g = a
                .node
                .as_ref()
                .ok_or_else(|| e("`moved` needs `node` (a client)".into()))?;
            if !["roamed", "reconnect", "reattached", "entry-point"].contains(&how.as_str()) {
                return Err(e(format!(
                    "moved: {how:?} is not one of roamed, reconnect, reattached, entry-point"
                )));
            }
            (
                format!("{g} moves and the tunnel goes on ({how}){}", w(within)),
                Some(client(g)?),
                None,
            )
        } else if a.keeps_tunnel {
            let g = a
                .node
                .as_ref()
                .ok_or_else(|| e("`keeps_tunnel` needs `node` (a client)".into()))?;
            (
                format!("{g} keeps its first tunnel: one IKE SA, one virtual IP, to the end"),
                Some(client(g)?),
                None,
            )
        } else if let Some(n) = a.rekeys_at_least {
            let g = a
                .node
                .as_ref()
                .ok_or_else(|| e("`rekeys_at_least` needs `node`".into()))?;
            (
                format!("{g} rekeys its tunnel at least {n} time(s)"),
                Some(gateway(g)?),
                None,
            )
        } else if a.no_esp_errors {
            let g = a
                .node
                .as_ref()
                .ok_or_else(|| e("`no_esp_errors` needs `node`".into()))?;
            (
                format!("{g} drops no ESP packet for authentication or replay"),
                Some(gateway(g)?),
                None,
            )
        } else if let Some(reason) = &a.no_drops {
            let g = a
                .node
                .as_ref()
                .ok_or_else(|| e("`no_drops` needs `node`".into()))?;
            let &n = plan
                .node_index
                .get(g)
                .ok_or_else(|| e(format!("no node named {g:?}")))?;
            (
                format!("{g} drops no packet for \"{reason}\""),
                Some(n),
                None,
            )
        } else {
            return Err(e(
                "name what to check: transfer, tunnel, no_tunnel, log, no_log, transport, moved, rekeys_at_least, \
                 ike_fragments_at_least, no_esp_errors, no_drops, cluster_state, \
                 sync_lost_at_most, full_syncs_at_least, mep_state, mep_chosen_at_least, \
                 mep_chosen_at_most, keeps_tunnel, distinct_addresses or a cluster check"
                    .into(),
            ));
        };
        out.push(Check {
            spec: a.clone(),
            label,
            node,
            transfer,
            cluster: None,
            members: Vec::new(),
            after,
            within,
            verdict: None,
        });
    }
    Ok(out)
}

/// A group of transfers: fails at the first failed member (or one not complete within
/// `within` of its start), passes when every member completed.
fn decide_group(
    world: &World,
    range: std::ops::Range<usize>,
    within: Option<Duration>,
    end: bool,
) -> Option<Verdict> {
    let now = world.now;
    let secs = crate::units::secs;
    let members = &world.transfers[range.clone()];
    let mut slowest = Duration::ZERO;
    let mut pending = 0usize;
    for t in members {
        let start = t.started.unwrap_or_default();
        let limit = within.map(|w| start + w);
        match (&t.failure, t.finished) {
            (Some(f), _) => return Some(Verdict::Fail(format!("{}: {f}", t.name))),
            (None, Some(done)) if limit.is_some_and(|l| done > l) => {
                return Some(Verdict::Fail(format!(
                    "{} completed only after {}",
                    t.name,
                    secs(done - start)
                )))
            }
            (None, Some(done)) => slowest = slowest.max(done - start),
            (None, None) if end || (t.started.is_some() && limit.is_some_and(|l| now > l)) => {
                let open = members
                    .iter()
                    .filter(|t| t.finished.is_none() && t.failure.is_none())
                    .count();
                return Some(Verdict::Fail(format!(
                    "{open} of {} not complete, the first {}: {} of {} received",
                    members.len(),
                    t.name,
                    t.received,
                    t.size
                )));
            }
            (None, None) => pending += 1,
        }
    }
    if pending > 0 {
        return None;
    }
    let g = world.groups.iter().find(|g| g.members == range)?;
    Some(Verdict::Pass(
        crate::world::group_summary(g, members)
            .split_once(": ")
            .map_or_else(String::new, |(_, s)| s.to_string()),
    ))
}

/// Decides what can be decided at `world.now`; at the end, every check is decided.
fn decide(world: &World, checks: &mut [Check], end: bool) {
    let now = world.now;
    for c in checks.iter_mut() {
        if c.verdict.is_some() {
            continue;
        }
        if let Some(cc) = c.cluster {
            if end {
                c.verdict = Some(cc.decide(world, &c.members));
            }
            continue;
        }
        let deadline = c.within.map(|w| c.after + w);
        let late = deadline.is_some_and(|d| now > d);
        let secs = crate::units::secs;
        if let Some(range) = c.transfer.clone() {
            if range.len() > 1 {
                c.verdict = decide_group(world, range, c.within, end);
                continue;
            }
            let t = &world.transfers[range.start];
            let start = t.started.unwrap_or_default();
            let limit = c.within.map(|w| start + w);
            if let Some(reason) = &c.spec.fails_with {
                c.verdict = match &t.failure {
                    Some(f) if f.contains(reason.as_str()) => Some(Verdict::Pass(f.clone())),
                    Some(f) => Some(Verdict::Fail(format!("failed otherwise: {f}"))),
                    None if t.finished.is_some() => {
                        Some(Verdict::Fail("completed byte-exact".into()))
                    }
                    None if end => Some(Verdict::Fail("did not fail".into())),
                    None => None,
                };
                continue;
            }
            c.verdict = match (&t.failure, t.finished) {
                (Some(f), _) => Some(Verdict::Fail(f.clone())),
                (None, Some(done)) if limit.is_some_and(|l| done > l) => Some(Verdict::Fail(
                    format!("completed only after {}", secs(done - start)),
                )),
                (None, Some(done)) => Some(Verdict::Pass(format!(
                    "{} in {}, SHA-256 matches",
                    crate::units::bytes(t.size),
                    secs(done - start)
                ))),
                (None, None) if end || (t.started.is_some() && limit.is_some_and(|l| now > l)) => {
                    Some(Verdict::Fail(format!(
                        "not complete: {} of {} received",
                        t.received, t.size
                    )))
                }
                _ => None,
            };
            continue;
        }
        if c.spec.distinct_addresses {
            if end {
                c.verdict = Some(distinct_addresses(world, &c.members));
            }
            continue;
        }
        let Some(node) = c.node else { continue };
        if let Some(reason) = &c.spec.no_drops {
            let name = &world.nodes[node].name;
            let n: u64 = world
                .drops
                .iter()
                .filter(|((at, r), _)| at == name && r.contains(reason.as_str()))
                .map(|(_, n)| n)
                .sum();
            if n > 0 {
                c.verdict = Some(Verdict::Fail(format!("{n} dropped")));
            } else if end {
                c.verdict = Some(Verdict::Pass("none".into()));
            }
            continue;
        }
        let in_window = |t: Duration| t >= c.after && deadline.is_none_or(|d| t <= d);
        if let Some(text) = &c.spec.log {
            let hit = world
                .logs
                .iter()
                .find(|(t, n, m)| *n == node && in_window(*t) && m.contains(text.as_str()));
            if let Some((t, _, _)) = hit {
                c.verdict = Some(Verdict::Pass(format!("at {}", secs(*t))));
            } else if late || end {
                c.verdict = Some(Verdict::Fail("not logged in the window".into()));
            }
            continue;
        }
        if let Some(text) = &c.spec.no_log {
            let hit = world
                .logs
                .iter()
                .find(|(t, n, m)| *n == node && in_window(*t) && m.contains(text.as_str()));
            if let Some((t, _, m)) = hit {
                c.verdict = Some(Verdict::Fail(format!("at {}: {m}", secs(*t))));
            } else if late || end {
                c.verdict = Some(Verdict::Pass("not logged".into()));
            }
            continue;
        }
        if let Kind::Client(cl) = &world.nodes[node].kind {
            if c.spec.keeps_tunnel {
                if end {
                    c.verdict = Some(keeps_tunnel(cl));
                }
            } else if let Some(want) = &c.spec.transport {
                let hit = cl
                    .connected
                    .iter()
                    .find(|(t, tr)| in_window(*t) && *tr == want.as_str());
                if let Some((t, _)) = hit {
                    c.verdict = Some(Verdict::Pass(format!("address at {}", secs(*t))));
                } else if late || end {
                    let got: Vec<String> = cl
                        .connected
                        .iter()
                        .map(|(t, tr)| format!("{tr} at {}", secs(*t)))
                        .collect();
                    c.verdict = Some(Verdict::Fail(if got.is_empty() {
                        "never connected".into()
                    } else {
                        format!("connected {}", got.join(", "))
                    }));
                }
            } else if let Some(how) = &c.spec.moved {
                // The move is judged once the tunnel is back: an address after the move.
                let hit = cl.moves.iter().find(|(t, h)| {
                    in_window(*t)
                        && h == how
                        && (h != "reconnect" || cl.connected.iter().any(|(ct, _)| ct >= t))
                });
                if let Some((t, _)) = hit {
                    c.verdict = Some(Verdict::Pass(format!("{how} at {}", secs(*t))));
                } else if late || end {
                    let got: Vec<String> = cl
                        .moves
                        .iter()
                        .map(|(t, h)| format!("{h} at {}", secs(*t)))
                        .collect();
                    c.verdict = Some(Verdict::Fail(if got.is_empty() {
                        "no move".into()
                    } else {
                        got.join(", ")
                    }));
                }
            }
            continue;
        }
        let Kind::Gateway(gw) = &world.nodes[node].kind else {
            continue;
        };
        if c.spec.tunnel.is_some() {
            if let Some(t) = gw.installs.iter().copied().find(|t| in_window(*t)) {
                c.verdict = Some(Verdict::Pass(format!("up at {}", secs(t))));
            } else if late || end {
                c.verdict = Some(Verdict::Fail("no tunnel came up in the window".into()));
            }
        } else if c.spec.no_tunnel.is_some() {
            if let Some(t) = gw.installs.iter().copied().find(|t| in_window(*t)) {
                c.verdict = Some(Verdict::Fail(format!("a tunnel came up at {}", secs(t))));
            } else if late || end {
                c.verdict = Some(Verdict::Pass("none came up".into()));
            }
        } else if let Some(n) = c.spec.ike_fragments_at_least {
            if gw.ike_fragments_sent >= n {
                c.verdict = Some(Verdict::Pass(format!("{} sent", gw.ike_fragments_sent)));
            } else if end {
                c.verdict = Some(Verdict::Fail(format!("only {}", gw.ike_fragments_sent)));
            }
        } else if let Some(want) = &c.spec.cluster_state {
            let state = gw
                .cluster_status(world.base, now)
                .map(|(s, _)| format!("{:?}", s.state).to_lowercase())
                .unwrap_or_else(|| "not running".into());
            let started = now >= c.after;
            if c.spec.until_end {
                if started && &state != want {
                    c.verdict = Some(Verdict::Fail(format!("{state} at {}", secs(now))));
                } else if end {
                    c.verdict = Some(Verdict::Pass(format!("{want} until {}", secs(now))));
                }
            } else if started && in_window(now) && &state == want {
                c.verdict = Some(Verdict::Pass(format!("at {}", secs(now))));
            } else if late || end {
                c.verdict = Some(Verdict::Fail(format!("{state} at {}", secs(now))));
            }
        } else if let Some(n) = c.spec.sync_lost_at_most {
            let stats = gw.cluster_status(world.base, now).map(|(_, s)| s);
            if end {
                c.verdict = Some(match stats {
                    Some(s) if s.lost <= n => Verdict::Pass(format!(
                        "{} lost, {} received, {} retransmitted, {} NACKs sent",
                        s.lost, s.records_received, s.retransmitted, s.nacks_sent
                    )),
                    Some(s) => Verdict::Fail(format!("{} lost", s.lost)),
                    None => Verdict::Fail("not running".into()),
                });
            }
        } else if let Some(n) = c.spec.full_syncs_at_least {
            let got = gw
                .cluster_status(world.base, now)
                .map_or(0, |(_, s)| s.full_syncs_received);
            if got >= n {
                c.verdict = Some(Verdict::Pass(format!("{got} applied")));
            } else if end {
                c.verdict = Some(Verdict::Fail(format!("{got} applied")));
            }
        } else if let Some(want) = &c.spec.mep_state {
            let ep = c.spec.mep_entry_point.as_deref().unwrap_or_default();
            let state = gw
                .mep_entry_point(world.base, now, ep)
                .map(|e| format!("{:?}", e.state).to_lowercase())
                .unwrap_or_else(|| "not running".into());
            if now >= c.after && in_window(now) && &state == want {
                c.verdict = Some(Verdict::Pass(format!("at {}", secs(now))));
            } else if late || end {
                c.verdict = Some(Verdict::Fail(format!("{state} at {}", secs(now))));
            }
        } else if c.spec.mep_chosen_at_least.is_some() || c.spec.mep_chosen_at_most.is_some() {
            if end {
                let ep = c.spec.mep_entry_point.as_deref().unwrap_or_default();
                let chosen = gw
                    .mep_entry_point(world.base, now, ep)
                    .map_or(0, |e| e.chosen);
                let ok = c.spec.mep_chosen_at_least.is_none_or(|n| chosen >= n)
                    && c.spec.mep_chosen_at_most.is_none_or(|n| chosen <= n);
                let text = format!("{chosen} resolved to {ep}");
                c.verdict = Some(if ok {
                    Verdict::Pass(text)
                } else {
                    Verdict::Fail(text)
                });
            }
        } else if let Some(n) = c.spec.rekeys_at_least {
            if gw.rekeys >= n {
                c.verdict = Some(Verdict::Pass(format!("{} rekeys", gw.rekeys)));
            } else if end {
                c.verdict = Some(Verdict::Fail(format!("only {} rekeys", gw.rekeys)));
            }
        } else if c.spec.no_esp_errors && (end || gw.esp_errors > 0) {
            c.verdict = Some(if gw.esp_errors == 0 {
                Verdict::Pass("none".into())
            } else {
                Verdict::Fail(format!("{} dropped", gw.esp_errors))
            });
        }
    }
}

/// `keeps_tunnel`: the client got its address once, on one IKE SA, kept one virtual IP, and
/// runs that IKE SA at the end.
fn keeps_tunnel(cl: &crate::client::ClientNode) -> Verdict {
    let secs = crate::units::secs;
    let addresses: Vec<String> = cl
        .addresses
        .iter()
        .map(|(t, a)| format!("{a} at {}", secs(*t)))
        .collect();
    let sa = |s: &(String, String)| format!("{}/{}", s.0, s.1);
    match (cl.ike_sas.as_slice(), cl.addresses.as_slice(), cl.ike_sa()) {
        ([first], [(_, addr)], Some(now)) if *first == now => {
            Verdict::Pass(format!("IKE SA {}, address {addr}", sa(first)))
        }
        ([first], [_], Some(now)) => Verdict::Fail(format!(
            "IKE SA {} at the address, {} at the end",
            sa(first),
            sa(&now)
        )),
        (_, _, None) => Verdict::Fail(format!(
            "no IKE SA at the end; addresses: {}",
            addresses.join(", ")
        )),
        (sas, _, Some(_)) => Verdict::Fail(format!(
            "{} tunnel(s) got an address ({}), addresses: {}",
            sas.len(),
            sas.iter().map(sa).collect::<Vec<_>>().join(", "),
            addresses.join(", ")
        )),
    }
}

/// `distinct_addresses`: every client of `clients` holds a virtual IP at the end, no two the
/// same.
fn distinct_addresses(world: &World, clients: &[usize]) -> Verdict {
    let mut held: Vec<(String, Option<std::net::Ipv4Addr>)> = Vec::new();
    for &n in clients {
        if let Kind::Client(cl) = &world.nodes[n].kind {
            held.push((world.nodes[n].name.clone(), cl.virtual_addr));
        }
    }
    let text = held
        .iter()
        .map(|(name, a)| match a {
            Some(a) => format!("{name} {a}"),
            None => format!("{name} -"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let all: Vec<_> = held.iter().filter_map(|(_, a)| *a).collect();
    let unique: std::collections::BTreeSet<_> = all.iter().collect();
    if all.len() == held.len() && unique.len() == all.len() {
        Verdict::Pass(text)
    } else {
        Verdict::Fail(text)
    }
}
