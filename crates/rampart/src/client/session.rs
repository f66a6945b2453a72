//! One client run (`rampart client up --foreground`): from the profile to a tunnel and back.
//!
//! 1. Bind the control socket (refused when the same connection already runs), clean up what a
//!    crashed run left ([`Shell::start`]).
//! 2. Captive-portal probe: while a portal answers, say so and wait.
//! 3. Transport ([`super::transport`]): the ladder probes UDP first; when the gateway has not
//!    answered after a short delay, TCP and TLS (directly, then through proxies) race in
//!    parallel, and the ladder picks the winner.
//! 4. The node (`profile.node_config` + `rampart_node::Gateway`) and its I/O (TUN, UDP, the
//!    attached stream) run in the gateway's event loop; the node's
//!    `VirtualAddress`/`VirtualAddressLost` go to the [`Shell`].
//! 5. A stream (TCP, TLS) that is reset, ends or goes silent once the tunnel is up is replaced
//!    by a new one on the same path and the IKE SA re-attached to it ([`super::reattach`]);
//!    only when that fails is the tunnel rebuilt.
//!    A lost tunnel, a network change or a resume rebuild it (back to 3);
//!    on UDP with MOBIKE a network change or a resume moves the tunnel to the new source
//!    address instead (`Node::roam`, through the event loop), and only a move that cannot
//!    start, fails or is not answered in [`MOVE_TIMEOUT`] rebuilds it;
//!    `down`, SIGINT or SIGTERM end the run; the shell restores the host either way.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rampart_config::ClientProfile;
use rampart_connect::stream_watch::Verdict as StreamVerdict;
use rampart_crypto::Rng;
use rampart_io::client_command::ClientCommand;
use rampart_io::runtime::Io;
use rampart_node::{Gateway, Output, RoamOutcome};
use tokio::sync::{mpsc, watch};

use crate::cli::ClientUpArgs;
use crate::{logging, EXIT_FAILURE};

use super::control::{ControlServer, Shared};
use super::reattach::{FrameWatch, TrafficWatch};
use super::roam::{self, PathView, Verdict, Watcher};
use super::shell::{Shell, ShellConfig};
use super::status::{unix_now, ClientState, ClientStatus, MoveStatus, ReattachStatus};
use super::transport::{self, Chosen};
use rampart_connect::entry_points::EntryPoints;

/// How long one attempt may take from the transport being chosen to the address being
/// assigned, before it counts as failed.
pub const ASSIGN_TIMEOUT: Duration = Duration::from_secs(30);
/// After the gateway ended the tunnel, how long the engine may take to bring it back by
/// itself before a new transport is looked for.
pub const LOST_GRACE: Duration = Duration::from_secs(10);
/// How often the captive-portal probe is repeated while a portal answers.
pub const PORTAL_RETRY: Duration = Duration::from_secs(5);
/// Longest pause between reconnection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a MOBIKE move may wait for the gateway's answer before the tunnel is rebuilt
/// instead (the engine itself retransmits for much longer).
pub const MOVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the frame counters of an attached stream are read for its liveness
/// (`rampart_connect::stream_watch`).
pub const WATCH_TICK: Duration = Duration::from_millis(50);

pub fn run_foreground(args: &ClientUpArgs) -> ExitCode {
    let profile = match super::load_profile(&args.profile) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if let Err(e) = logging::init(args.log_level, args.log_format) {
        eprintln!("rampart: {e}");
        return ExitCode::from(crate::EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rampart-client")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rampart: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let name = profile.name.clone();
    match runtime.block_on(session(profile)) {
        Ok(()) => {
            tracing::info!("client {name}: stopped, host restored");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("client {name}: {e}");
            eprintln!("rampart: client {name}: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// How an attempt ended.
#[derive(Debug)]
enum End {
    /// `down`, SIGINT or SIGTERM.
    Stop,
    /// Rebuild the tunnel (new transport search), for this reason.
    Reconnect(String),
    /// The attempt failed before it was ever assigned an address.
    Failed(String),
}

async fn session(profile: ClientProfile) -> Result<(), String> {
    let config = ShellConfig::from_profile(&profile);
    let shared: Shared = Arc::new(Mutex::new(ClientStatus::new(
        &profile.name,
        &gateway_text(&profile),
        &profile.device,
        profile.kill_switch,
    )));
    let control = ControlServer::bind(&config.paths.control)
        .map_err(|e| format!("control socket {}: {e}", config.paths.control.display()))?;
    let (stop_tx, stop) = watch::channel(false);
    let signals = rampart_io::shutdown_signal().map_err(|e| e.to_string())?;
    {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            signals.await;
            tracing::info!("signal received: disconnecting");
            let _ = stop_tx.send(true);
        });
    }
    let node_socket = profile.status_socket();
    let control_task = tokio::spawn(control.serve(shared.clone(), node_socket, stop_tx));
    let mut shell = Shell::start(config, shared.clone()).await?;
    let result = connect_loop(&profile, &mut shell, &shared, stop).await;
    set(&shared, |s| s.set_state(ClientState::Down));
    let restored = shell.finish().await;
    control_task.abort();
    let _ = control_task.await;
    match (result, restored) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(e), Ok(())) => Err(e),
        (Ok(()), Err(r)) => Err(r),
        (Err(e), Err(r)) => Err(format!("{e}; and restoring failed: {r}")),
    }
}

fn gateway_text(p: &ClientProfile) -> String {
    match p.gateway_port {
        Some(port) => format!("{}:{port}", p.gateway),
        None => p.gateway.clone(),
    }
}

fn set(shared: &Shared, f: impl FnOnce(&mut ClientStatus)) {
    f(&mut shared.lock().unwrap_or_else(|p| p.into_inner()));
}

/// Tries, runs and rebuilds tunnels until stopped. The first attempt's failure ends the run
/// (the background starter reports it); after a tunnel was up once, failures are retried.
async fn connect_loop(
    own_profile: &ClientProfile,
    shell: &mut Shell,
    shared: &Shared,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let mut watcher = Watcher::open().map_err(|e| format!("cannot watch the network: {e}"))?;
    let mut connected_once = false;
    let mut backoff = Duration::from_secs(1);
    // The profile of this round: its own gateways, then the learned ones (read again before
    // every round: a connect may have replaced the list).
    let mut merged = super::learned::merged(own_profile);
    let mut entries = EntryPoints::new(
        merged.profile.entry_points.len(),
        super::mep::selection(merged.profile.selection),
    );
    show_entry_points(shared, &merged);
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let next = super::learned::merged(own_profile);
        if next.profile.entry_points != merged.profile.entry_points
            || next.profile.selection != merged.profile.selection
        {
            let map: Vec<Option<usize>> = merged
                .profile
                .entry_points
                .iter()
                .map(|e| next.profile.entry_points.iter().position(|n| n == e))
                .collect();
            entries = entries.remapped(
                next.profile.entry_points.len(),
                super::mep::selection(next.profile.selection),
                &map,
            );
            tracing::info!(
                "client {}: entry points now {}",
                own_profile.name,
                next.profile
                    .entry_points
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        merged = next;
        show_entry_points(shared, &merged);
        let profile = &merged.profile;
        let several = profile.entry_points.len() > 1;
        if let Some(url) = &profile.captive_portal {
            if !wait_for_portal(url, shared, &mut stop).await {
                return Ok(());
            }
        }
        // Multiple Entry Points: the order of this round (one entry without `gateways`).
        let mut answered = Vec::new();
        if entries.wants_probe() {
            let first = tokio::select! {
                r = super::mep::probe(profile) => r,
                _ = stop.changed() => return Ok(()),
            };
            match first {
                Some((i, how)) => {
                    tracing::info!(
                        "client {}: entry point {} answered first ({how})",
                        profile.name,
                        profile.entry_points[i]
                    );
                    answered.push(i);
                }
                None => tracing::info!(
                    "client {}: no entry point answered the probe within {} ms; trying them in order",
                    profile.name,
                    rampart_connect::entry_points::PROBE_WINDOW.as_millis()
                ),
            }
        }
        let mut end = End::Failed("the profile has no gateway".into());
        for i in entries.order(Instant::now(), &answered) {
            let Some(entry_profile) = profile.for_entry_point(i) else {
                continue;
            };
            let entry_name = profile.entry_points[i].to_string();
            if several {
                tracing::info!(
                    "client {}: connecting to entry point {entry_name} ({})",
                    profile.name,
                    profile.selection.as_str()
                );
            }
            let gateway = match transport::resolve(&entry_profile.gateway).await {
                Ok(ip) => ip,
                Err(e) => {
                    entries.failed(Instant::now(), i);
                    end = End::Failed(e);
                    continue;
                }
            };
            set(shared, |s| {
                s.gateway = entry_name.clone();
                s.gateway_address = Some(gateway.to_string());
                s.entry_point = Some(entry_name.clone());
                s.transport = None;
                s.transport_reason = None;
                s.proxy = None;
            });
            end = attempt(
                &entry_profile,
                gateway,
                shell,
                shared,
                &mut watcher,
                &mut stop,
            )
            .await;
            match &end {
                End::Stop => return Ok(()),
                End::Failed(why) => {
                    entries.failed(Instant::now(), i);
                    if several {
                        tracing::warn!("client {}: entry point {entry_name}: {why}", profile.name);
                    }
                }
                End::Reconnect(_) => {
                    // The tunnel was up: record it, and with somewhere else to go, leave this
                    // entry point for the next round.
                    entries.connected(i);
                    // A list learned on this tunnel may have given it somewhere else to go.
                    if several
                        || super::learned::merged(own_profile)
                            .profile
                            .entry_points
                            .len()
                            > 1
                    {
                        entries.failed(Instant::now(), i);
                    }
                    break;
                }
            }
        }
        let connected = shared.lock().map(|s| s.reconnects).unwrap_or(0);
        match end {
            End::Stop => return Ok(()),
            End::Reconnect(why) => {
                connected_once = true;
                backoff = Duration::from_secs(1);
                tracing::warn!("client {}: reconnecting: {why}", profile.name);
                set(shared, |s| {
                    s.set_state(ClientState::Reconnecting);
                    s.reconnects = connected + 1;
                    s.last_error = Some(why);
                });
            }
            End::Failed(why) if !connected_once => return Err(why),
            End::Failed(why) => retry(shared, &why, &mut backoff, &mut stop).await,
        }
    }
}

/// The entry points of this round (and what was learned) in the status.
fn show_entry_points(shared: &Shared, merged: &super::learned::Merged) {
    let p = &merged.profile;
    set(shared, |s| {
        s.entry_points = p.entry_points.iter().map(ToString::to_string).collect();
        s.selection = (p.entry_points.len() > 1).then(|| p.selection.as_str().to_owned());
        s.learned_gateways = merged
            .learned
            .as_ref()
            .map(super::status::LearnedStatus::of);
    });
}

/// Records `why`, waits the back-off (or until stopped) and doubles it.
async fn retry(
    shared: &Shared,
    why: &str,
    backoff: &mut Duration,
    stop: &mut watch::Receiver<bool>,
) {
    tracing::warn!(
        "client: attempt failed: {why}; next try in {} s",
        backoff.as_secs()
    );
    set(shared, |s| {
        s.set_state(ClientState::Reconnecting);
        s.last_error = Some(why.to_owned());
    });
    tokio::select! {
        () = tokio::time::sleep(*backoff) => {}
        _ = stop.changed() => {}
    }
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
}

/// Probes until no portal answers; `false` when stopped meanwhile.
async fn wait_for_portal(url: &str, shared: &Shared, stop: &mut watch::Receiver<bool>) -> bool {
    let mut said = false;
    loop {
        match transport::captive_probe(url).await {
            Ok(None) => {
                if said {
                    tracing::info!("captive portal: the probe passes now; connecting");
                }
                return true;
            }
            Ok(Some(portal)) => {
                if !said {
                    tracing::warn!(
                        "captive portal detected ({portal}); log in with a browser, the client connects afterwards"
                    );
                    said = true;
                }
                set(shared, |s| {
                    s.set_state(ClientState::CaptivePortal);
                    s.last_error = Some(portal);
                });
            }
            // No answer at all is not a portal: the ladder says what is wrong.
            Err(e) => {
                tracing::debug!("captive-portal probe {url}: {e}");
                return true;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(PORTAL_RETRY) => {}
            _ = stop.changed() => return false,
        }
    }
}

/// One tunnel: chooses a transport, runs the node until the tunnel must be rebuilt.
async fn attempt(
    profile: &ClientProfile,
    gateway: IpAddr,
    shell: &mut Shell,
    shared: &Shared,
    watcher: &mut Watcher,
    stop: &mut watch::Receiver<bool>,
) -> End {
    let started = Instant::now();
    let local = match shell.system().route_to(gateway).await {
        Ok((_, Some(source))) => source,
        Ok((route, None)) => {
            return End::Failed(format!(
                "no source address towards the gateway {gateway} (route via {})",
                route.dev
            ))
        }
        Err(e) => return End::Failed(e.to_string()),
    };
    let choices = transport::proxies(profile, local).await;
    let endpoints = transport::endpoints(gateway, &choices).await;
    if let Err(e) = shell.set_outer(&endpoints).await {
        return End::Failed(e);
    }
    let chosen = tokio::select! {
        r = transport::run_ladder(profile, gateway, local, &choices) => r,
        _ = stop.changed() => return End::Stop,
    };
    let chosen = match chosen {
        Ok(c) => c,
        Err(e) => return End::Failed(e),
    };
    tracing::info!(
        "client {}: transport {} chosen in {} ms ({})",
        profile.name,
        chosen.name(),
        started.elapsed().as_millis(),
        chosen.reason
    );
    run_node(profile, chosen, shell, shared, watcher, stop, started).await
}

/// Runs the node and its I/O over `chosen` until the attempt ends.
#[allow(clippy::too_many_arguments)]
async fn run_node(
    profile: &ClientProfile,
    chosen: Chosen,
    shell: &mut Shell,
    shared: &Shared,
    watcher: &mut Watcher,
    stop: &mut watch::Receiver<bool>,
    started: Instant,
) -> End {
    let config = profile.node_config(chosen.local.ip(), chosen.remote.ip(), chosen.transport);
    let (out_tx, mut outputs) = mpsc::unbounded_channel::<Output>();
    let (stream_tx, mut stream_closed) = mpsc::unbounded_channel::<String>();
    let mut io = match Io::open(&config) {
        Ok(io) => io,
        Err(e) => return End::Failed(e.to_string()),
    };
    io.client_outputs = Some(out_tx);
    // The node finds the path MTU itself: nothing may be fragmented on the way.
    io.forbid_fragmentation();
    let (command_tx, command_rx) = mpsc::unbounded_channel::<ClientCommand>();
    io.client_commands = Some(command_rx);
    let ports = [config.gateway.ike_port, config.gateway.nat_t_port];
    let is_stream = chosen.stream.is_some();
    let movable = !is_stream && profile.mobike;
    let transport = chosen.name();
    // The stream's ends as the node sees them (a NAT-T path).
    let stream_ends = (
        SocketAddr::new(chosen.local.ip(), config.gateway.nat_t_port),
        SocketAddr::new(chosen.remote.ip(), config.gateway.nat_t_port),
    );
    if let Some(stream) = chosen.stream {
        let (local, remote) = stream_ends;
        if let Err(e) = super::attach::attach(&mut io, local, remote, stream, stream_tx) {
            return End::Failed(e);
        }
    }
    let mut frame_watch =
        is_stream.then(|| FrameWatch::new(io.streams.client_counters(), Instant::now()));
    // A UDP tunnel is watched only when another entry point could take over.
    let mut udp_watch =
        (!is_stream && profile.entry_points.len() > 1).then(|| TrafficWatch::new(Instant::now()));
    let plan = chosen.plan.clone();
    let tun_index = io.tun.index();
    let mut node = match Gateway::new(config, Instant::now(), Rng::from_os()) {
        Ok(n) => n,
        Err(e) => return End::Failed(format!("cannot start the IKE engine: {e}")),
    };
    if let Some(a) = shell.last_ipv4() {
        node.prefer_virtual_address(a);
    }
    node.set_pmtu_policy(rampart_node::pmtu::PmtuPolicy {
        probe: profile.pmtu_probe,
        ..Default::default()
    });
    let mut path_before =
        shell
            .system()
            .route_to(chosen.remote.ip())
            .await
            .ok()
            .map(|(r, source)| PathView {
                via: r.via,
                dev: r.dev,
                source,
            });
    tracing::info!(
        "client {}: {} to {} from {}{}",
        profile.name,
        transport,
        chosen.remote,
        chosen.local,
        if is_stream {
            format!(" ({})", chosen.reason)
        } else {
            String::new()
        }
    );
    set(shared, |s| {
        s.transport = Some(transport.to_owned());
        s.transport_reason = Some(chosen.reason.clone());
        s.proxy = chosen.proxy.clone();
        s.local_address = Some(chosen.local.to_string());
    });

    let (end_tx, end_rx) = tokio::sync::oneshot::channel::<()>();
    let run_done = tokio::sync::Notify::new();
    let run = async {
        let r = rampart_io::runtime::run(&mut node, &mut io, async {
            let _ = end_rx.await;
        })
        .await;
        run_done.notify_one();
        r
    };
    let device = profile.device.clone();
    let control = async {
        let mut assigned = false;
        let mut lost_at: Option<tokio::time::Instant> = None;
        // A MOBIKE move in flight: its deadline, where it left from and why.
        let mut moving: Option<(tokio::time::Instant, String, String)> = None;
        let mut local_now = chosen.local.to_string();
        let assign_deadline = tokio::time::Instant::now() + ASSIGN_TIMEOUT;
        // A re-attach in flight: when the stream was lost and why; its result arrives here.
        let mut reattaching: Option<(Instant, String)> = None;
        let (reattach_tx, mut reattached) =
            mpsc::unbounded_channel::<Result<(rampart_connect::Connected, u32), String>>();
        let mut watch_tick = tokio::time::interval(WATCH_TICK);
        watch_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let result = loop {
            let lost_deadline = lost_at.map(|t| t + LOST_GRACE);
            let move_deadline = moving.as_ref().map(|m| m.0);
            // A lost stream of a connected tunnel: a new one on the same path (RFC 9329).
            let mut lost_stream: Option<String> = None;
            tokio::select! {
                Some(out) = outputs.recv() => match out {
                    Output::VirtualAddress { reply, .. } => {
                        lost_at = None;
                        if let Some(list) = &reply.entry_points {
                            if let Some(l) = super::learned::record(profile, &gateway_text(profile), list) {
                                set(shared, |s| s.learned_gateways = Some(super::status::LearnedStatus::of(&l)));
                                // Somewhere else to go now: watch the UDP tunnel as with `gateways`.
                                let own: Vec<String> = profile.entry_points.iter().map(ToString::to_string).collect();
                                if !is_stream && udp_watch.is_none() && !rampart_connect::learned::extra(&own, &l.entries).is_empty() {
                                    udp_watch = Some(TrafficWatch::new(Instant::now()));
                                }
                            }
                        }
                        if let Err(e) = shell.assigned(&reply).await {
                            break End::Failed(format!("cannot apply the assignment: {e}"));
                        }
                        if !assigned {
                            set(shared, |s| {
                                let now = s.entry_point.clone();
                                if s.connected_entry_point.is_some() && s.connected_entry_point != now {
                                    s.entry_point_changes += 1;
                                    tracing::info!(
                                        "client {}: moved from entry point {} to {} (a new IKE SA there)",
                                        profile.name,
                                        s.connected_entry_point.as_deref().unwrap_or("-"),
                                        now.as_deref().unwrap_or("-")
                                    );
                                }
                                s.connected_entry_point = now;
                            });
                            tracing::info!(
                                "client {}: connected over {transport} in {} ms: address {}",
                                profile.name,
                                started.elapsed().as_millis(),
                                reply.ip4_addresses.iter().map(ToString::to_string)
                                    .chain(reply.ip6_addresses.iter().map(ToString::to_string))
                                    .collect::<Vec<_>>().join(" ")
                            );
                        }
                        assigned = true;
                        set(shared, |s| {
                            s.set_state(ClientState::Connected);
                            s.last_error = None;
                        });
                    }
                    Output::TunnelMtu { mtu, reason, .. } => shell.tunnel_mtu(mtu, reason).await,
                    Output::Roamed { local, .. } => {
                        let (from, reason) = match moving.take() {
                            Some((_, from, reason)) => (from, reason),
                            None => (local_now.clone(), "the node moved".to_string()),
                        };
                        tracing::info!("client {}: moved to {} (MOBIKE): {reason}", profile.name, local.ip());
                        local_now = local.to_string();
                        set(shared, |s| {
                            s.moves += 1;
                            s.last_move = Some(MoveStatus {
                                from,
                                to: local.to_string(),
                                reason,
                                at_unix: unix_now(),
                            });
                            s.local_address = Some(local.to_string());
                        });
                    }
                    Output::RoamFailed { why, .. } => {
                        shell.forget_outer();
                        break End::Reconnect(format!("the MOBIKE move failed ({why})"));
                    }
                    Output::VirtualAddressLost { .. } => {
                        tracing::warn!("client {}: the tunnel's IKE SA is gone; address, routes and DNS removed", profile.name);
                        if profile.entry_points.len() > 1 {
                            // Another entry point may be up: move now.
                            break End::Reconnect("the IKE SA with the entry point is gone".into());
                        }
                        shell.lost().await;
                        set(shared, |s| s.set_state(ClientState::Reconnecting));
                        lost_at = Some(tokio::time::Instant::now());
                    }
                    _ => {}
                },
                Some(reason) = stream_closed.recv() => {
                    let why = format!("{transport} stream closed: {reason}");
                    match (&plan, assigned) {
                        (Some(_), true) => lost_stream = Some(why),
                        _ => break reconnect_or_fail(assigned, why),
                    }
                }
                _ = watch_tick.tick(), if (frame_watch.is_some() || udp_watch.is_some()) && assigned && reattaching.is_none() => {
                    let now = Instant::now();
                    let verdict = match (frame_watch.as_mut(), udp_watch.as_mut()) {
                        (Some(w), _) => Some(w.tick(now)),
                        (None, Some(w)) => {
                            let (reply, answer) = tokio::sync::oneshot::channel();
                            if command_tx.send(ClientCommand::Traffic { reply }).is_err() {
                                break End::Failed("the event loop stopped".into());
                            }
                            let traffic = answer.await.ok().flatten();
                            Some(w.tick(now, traffic))
                        }
                        (None, None) => None,
                    };
                    match verdict {
                        Some(StreamVerdict::Check) => {
                            let (reply, answer) = tokio::sync::oneshot::channel();
                            if command_tx.send(ClientCommand::CheckStream { reply }).is_ok() {
                                let _ = answer.await;
                            }
                            if let Some(w) = frame_watch.as_mut() {
                                w.watch.checked(now);
                            }
                            if let Some(w) = udp_watch.as_mut() {
                                w.watch.checked(now);
                            }
                            tracing::debug!("client {}: {transport} tunnel quiet; checking it", profile.name);
                        }
                        Some(StreamVerdict::Lost { silent }) if udp_watch.is_some() => {
                            break End::Reconnect(format!(
                                "entry point {} silent for {} ms (a check went unanswered)",
                                profile.gateway,
                                silent.as_millis()
                            ));
                        }
                        Some(StreamVerdict::Lost { silent }) => {
                            lost_stream = Some(format!(
                                "{transport} stream silent for {} ms (a check went unanswered)",
                                silent.as_millis()
                            ));
                        }
                        _ => {}
                    }
                }
                Some(result) = reattached.recv() => {
                    let Some((lost_time, why)) = reattaching.take() else { continue };
                    match result {
                        Ok((c, attempts)) => {
                            let path = c.path.to_string();
                            let (local, remote) = stream_ends;
                            let (reply, answer) = tokio::sync::oneshot::channel();
                            let sent = command_tx.send(ClientCommand::Reattach {
                                local,
                                remote,
                                stream: Box::new(c.stream),
                                reply,
                            });
                            if sent.is_err() {
                                break End::Failed("the event loop stopped".into());
                            }
                            let renewed = answer.await.unwrap_or_default();
                            let took = lost_time.elapsed();
                            if let Some(w) = frame_watch.as_mut() {
                                w.restart(Instant::now());
                            }
                            tracing::info!(
                                "client {}: IKE SA re-attached on a new {transport} stream in {} ms after {attempts} attempt(s) ({path}; {})",
                                profile.name,
                                took.as_millis(),
                                renewed.iter().map(|(p, r)| format!("{p}: {r:?}")).collect::<Vec<_>>().join(", ")
                            );
                            set(shared, |s| {
                                s.stream_reattaches += 1;
                                s.last_reattach = Some(ReattachStatus {
                                    reason: why,
                                    took_ms: took.as_millis() as u64,
                                    attempts,
                                    at_unix: unix_now(),
                                });
                                s.set_state(ClientState::Connected);
                            });
                        }
                        Err(e) => break End::Reconnect(format!("{why}; {e}")),
                    }
                }
                nudge = watcher.next(Some(tun_index)) => {
                    let now = shell.system().route_to(chosen.remote.ip()).await.ok().map(|(r, source)| PathView { via: r.via, dev: r.dev, source });
                    let verdict = match &path_before {
                        Some(before) => roam::judge(nudge, before, now.as_ref(), &device, is_stream, movable),
                        None => Verdict::Keep,
                    };
                    match verdict {
                        Verdict::Keep => {}
                        Verdict::Reconnect(why) => {
                            shell.forget_outer();
                            break End::Reconnect(why);
                        }
                        Verdict::Move { to, why } => match roam_to(&command_tx, to, ports).await {
                            Ok(()) => {
                                tracing::info!("client {}: {why}; moving the tunnel to {to} (MOBIKE)", profile.name);
                                path_before = now;
                                moving = Some((tokio::time::Instant::now() + MOVE_TIMEOUT, local_now.clone(), why));
                            }
                            Err(reason) => {
                                shell.forget_outer();
                                break End::Reconnect(format!("{why}; the tunnel cannot move: {reason}"));
                            }
                        },
                    }
                }
                () = sleep_opt(move_deadline) => {
                    shell.forget_outer();
                    break End::Reconnect(format!("the MOBIKE move was not answered within {} s", MOVE_TIMEOUT.as_secs()));
                }
                _ = stop.changed() => break End::Stop,
                () = run_done.notified() => break End::Failed("the event loop stopped".into()),
                () = tokio::time::sleep_until(assign_deadline), if !assigned => {
                    break End::Failed(format!(
                        "no address from the gateway within {} s over {transport} (authentication refused or no answer: see the log above)",
                        ASSIGN_TIMEOUT.as_secs()
                    ));
                }
                () = sleep_opt(lost_deadline) => {
                    break End::Reconnect(format!("the tunnel was not re-established within {} s", LOST_GRACE.as_secs()));
                }
            }
            if let (Some(why), Some(plan), None) = (lost_stream, &plan, &reattaching) {
                tracing::warn!(
                    "client {}: {why}; re-attaching the IKE SA on a new {transport} stream",
                    profile.name
                );
                let lost_time = Instant::now();
                reattaching = Some((lost_time, why));
                let (plan, tx) = (plan.clone(), reattach_tx.clone());
                tokio::spawn(async move {
                    let _ = tx.send(super::reattach::connect_again(&plan, lost_time).await);
                });
            }
        };
        let _ = end_tx.send(());
        result
    };
    let (loop_result, result) = tokio::join!(run, control);
    // The TUN device goes with `io`: take the address, routes and DNS off first.
    shell.lost().await;
    drop(io);
    match (loop_result, result) {
        (Err(e), End::Failed(_)) => End::Failed(format!("I/O failed: {e}")),
        (_, result) => result,
    }
}

/// Asks the event loop to move the tunnel to `to` (MOBIKE); `Err` says why it cannot.
async fn roam_to(
    commands: &mpsc::UnboundedSender<ClientCommand>,
    to: IpAddr,
    ports: [u16; 2],
) -> Result<(), String> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    commands
        .send(ClientCommand::Roam {
            new_local: to,
            ports,
            reply,
        })
        .map_err(|_| "the event loop stopped".to_string())?;
    match answer.await {
        Ok(RoamOutcome::Moving(_)) => Ok(()),
        Ok(RoamOutcome::Unsupported(reason)) => Err(reason),
        Ok(RoamOutcome::Nothing) => Err("no established tunnel to move".into()),
        Err(_) => Err("the event loop stopped".into()),
    }
}

fn reconnect_or_fail(assigned: bool, why: String) -> End {
    if assigned {
        End::Reconnect(why)
    } else {
        End::Failed(why)
    }
}

async fn sleep_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
