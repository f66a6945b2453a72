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
//! 5. A lost tunnel, a closed stream, a network change or a resume rebuild it (back to 3);
//!    on UDP with MOBIKE a network change or a resume moves the tunnel to the new source
//!    address instead (`Node::roam`, through the event loop), and only a move that cannot
//!    start, fails or is not answered in [`MOVE_TIMEOUT`] rebuilds it;
//!    `down`, SIGINT or SIGTERM end the run; the shell restores the host either way.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rampart_config::ClientProfile;
use rampart_crypto::Rng;
use rampart_io::client_command::ClientCommand;
use rampart_io::runtime::Io;
use rampart_node::{Gateway, Output, RoamOutcome};
use tokio::sync::{mpsc, watch};

use crate::cli::ClientUpArgs;
use crate::{logging, EXIT_FAILURE};

use super::control::{ControlServer, Shared};
use super::roam::{self, PathView, Verdict, Watcher};
use super::shell::{Shell, ShellConfig};
use super::status::{unix_now, ClientState, ClientStatus, MoveStatus};
use super::transport::{self, Chosen};

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
    profile: &ClientProfile,
    shell: &mut Shell,
    shared: &Shared,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let mut watcher = Watcher::open().map_err(|e| format!("cannot watch the network: {e}"))?;
    let mut connected_once = false;
    let mut backoff = Duration::from_secs(1);
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        if let Some(url) = &profile.captive_portal {
            if !wait_for_portal(url, shared, &mut stop).await {
                return Ok(());
            }
        }
        let gateway = match transport::resolve(&profile.gateway).await {
            Ok(ip) => ip,
            Err(e) if connected_once => {
                retry(shared, &e, &mut backoff, &mut stop).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        set(shared, |s| {
            s.gateway_address = Some(gateway.to_string());
            s.transport = None;
            s.transport_reason = None;
            s.proxy = None;
        });
        let end = attempt(profile, gateway, shell, shared, &mut watcher, &mut stop).await;
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
    if let Some(stream) = chosen.stream {
        let local = SocketAddr::new(chosen.local.ip(), config.gateway.nat_t_port);
        let remote = SocketAddr::new(chosen.remote.ip(), config.gateway.nat_t_port);
        if let Err(e) = super::attach::attach(&mut io, local, remote, stream, stream_tx) {
            return End::Failed(e);
        }
    }
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
        let result = loop {
            let lost_deadline = lost_at.map(|t| t + LOST_GRACE);
            let move_deadline = moving.as_ref().map(|m| m.0);
            tokio::select! {
                Some(out) = outputs.recv() => match out {
                    Output::VirtualAddress { reply, .. } => {
                        lost_at = None;
                        if let Err(e) = shell.assigned(&reply).await {
                            break End::Failed(format!("cannot apply the assignment: {e}"));
                        }
                        if !assigned {
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
                        shell.lost().await;
                        set(shared, |s| s.set_state(ClientState::Reconnecting));
                        lost_at = Some(tokio::time::Instant::now());
                    }
                    _ => {}
                },
                Some(reason) = stream_closed.recv() => {
                    break reconnect_or_fail(assigned, format!("{transport} stream closed: {reason}"));
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
