//! Runs a [`Ladder`] with real attempts: the UDP rung is [`crate::udp_probe::probe`], stream
//! rungs are [`crate::connect`] (TCP to the RFC 9329 port, TLS to the Visitor Mode port,
//! directly or through the rung's proxy). Losing attempts are aborted and their connections
//! closed; the winner's connection is handed back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;
use tokio::task::{AbortHandle, JoinSet};

use crate::connector::{connect, ConnectPlan, Connected, TlsSettings};
use crate::ladder::{Action, Ladder, LadderConfig, Outcome, Rung, Transport};
use crate::proxy::Proxy;

/// What the stream and UDP attempts connect to.
#[derive(Debug, Clone)]
pub struct Targets {
    /// Gateway host name or address (streams, TLS SNI default is the caller's business).
    pub host: String,
    /// The gateway's IKE UDP address (port 500, or the NAT-T port with `udp_nat_t`); `None`
    /// when unresolved, which fails the UDP rung.
    pub udp: Option<SocketAddr>,
    pub udp_nat_t: bool,
    /// RFC 9329 TCP port.
    pub tcp_port: u16,
    /// Visitor Mode port.
    pub tls_port: u16,
    pub tls: TlsSettings,
    /// The proxies the ladder's proxy rungs index.
    pub proxies: Vec<Proxy>,
}

/// The winning attempt.
#[derive(Debug)]
pub enum Won {
    /// UDP answered after this long; the caller runs IKE on UDP.
    Udp(Duration),
    /// A stream, `IKETCP` written.
    Stream(Connected),
}

/// A finished ladder run that found a transport.
#[derive(Debug)]
pub struct Choice {
    pub rung: Rung,
    pub won: Won,
    /// Why this rung (see [`Outcome::Chosen`]).
    pub why: String,
}

/// Every rung failed.
#[derive(Debug, Error)]
#[error("no transport reached the gateway: {summary}")]
pub struct AllFailed {
    /// `rung: reason; ...` for the log and status.
    pub summary: String,
    pub reasons: Vec<(Rung, String)>,
}

/// Runs the ladder to the end.
pub async fn run(config: LadderConfig, targets: &Targets) -> Result<Choice, AllFailed> {
    let rungs = config.rungs.clone();
    let mut ladder = Ladder::new(config);
    ladder.start(std::time::Instant::now());
    let mut set: JoinSet<(usize, Result<Won, String>)> = JoinSet::new();
    let mut handles: HashMap<usize, AbortHandle> = HashMap::new();
    let mut won: HashMap<usize, Won> = HashMap::new();
    loop {
        while let Some(a) = ladder.poll_action() {
            match a {
                Action::Start(i) => {
                    let h = set.spawn(attempt(i, rungs[i].clone(), targets.clone()));
                    handles.insert(i, h);
                }
                Action::Cancel(i) => {
                    if let Some(h) = handles.remove(&i) {
                        h.abort();
                    }
                    won.remove(&i);
                }
                Action::Done(Outcome::Chosen { rung, why }) => {
                    set.abort_all();
                    let w = won.remove(&rung).expect("the chosen rung succeeded");
                    tracing::info!(rung = %rungs[rung], %why, "transport chosen");
                    return Ok(Choice {
                        rung: rungs[rung].clone(),
                        won: w,
                        why,
                    });
                }
                Action::Done(Outcome::AllFailed(v)) => {
                    set.abort_all();
                    let reasons: Vec<(Rung, String)> =
                        v.into_iter().map(|(i, r)| (rungs[i].clone(), r)).collect();
                    let summary = reasons
                        .iter()
                        .map(|(r, why)| format!("{r}: {why}"))
                        .collect::<Vec<_>>()
                        .join("; ");
                    return Err(AllFailed { summary, reasons });
                }
            }
        }
        let timer = ladder.poll_timeout();
        let sleep = async {
            match timer {
                Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(res) = set.join_next(), if !set.is_empty() => {
                let now = std::time::Instant::now();
                if let Ok((i, r)) = res {
                    handles.remove(&i);
                    match r {
                        Ok(w) => {
                            won.insert(i, w);
                            ladder.on_success(now, i);
                        }
                        Err(e) => ladder.on_failure(now, i, e),
                    }
                }
            }
            _ = sleep => ladder.handle_timeout(std::time::Instant::now()),
        }
    }
}

async fn attempt(i: usize, rung: Rung, t: Targets) -> (usize, Result<Won, String>) {
    let r = match rung.transport {
        Transport::Udp => match t.udp {
            None => Err("the gateway's address is not resolved".to_owned()),
            Some(a) => crate::udp_probe::probe(a, t.udp_nat_t, rung.timeout)
                .await
                .map(Won::Udp)
                .map_err(|e| e.to_string()),
        },
        Transport::Tcp | Transport::Tls => match stream_plan(&rung, &t) {
            Ok(plan) => connect(&plan)
                .await
                .map(Won::Stream)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        },
    };
    (i, r)
}

/// How a stream rung connects: the gateway's stream port for the rung's transport, its proxy
/// (if any), TLS for Visitor Mode, the rung's time budget. The client shell keeps the plan of
/// the rung that won to re-open the same path when the stream is lost (re-attach). `Err` for
/// a UDP rung or a proxy index the targets do not have.
pub fn stream_plan(rung: &Rung, t: &Targets) -> Result<ConnectPlan, String> {
    let tls = match rung.transport {
        Transport::Udp => return Err("a UDP rung has no stream".to_owned()),
        Transport::Tcp => false,
        Transport::Tls => true,
    };
    let proxy = match rung.proxy {
        None => None,
        Some(p) => match t.proxies.get(p) {
            Some(p) => Some(p.clone()),
            None => return Err(format!("no proxy #{}", p + 1)),
        },
    };
    Ok(ConnectPlan {
        host: t.host.clone(),
        port: if tls { t.tls_port } else { t.tcp_port },
        proxy,
        tls: tls.then(|| t.tls.clone()),
        timeout: rung.timeout,
    })
}
