//! Choosing how the tunnel reaches the gateway, with `rampart_connect`'s sans-IO transport
//! ladder. UDP is tried with the real IKE engine (the session watches for the gateway's
//! IKE_SA_INIT answer and reports it as [`UdpReport::Answered`]); the stream rungs run here:
//! RFC 9329 TCP and Visitor Mode TLS directly, a little after UDP, then the same through each
//! HTTP CONNECT proxy (explicit, environment or PAC), or at once when the earlier rungs
//! failed. The ladder picks the winner and says why; the reason is shown in the status.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use rampart_config::{ClientProfile, ClientTransport, ProxySetting};
use rampart_connect::ladder::{Action, Ladder, LadderConfig, Outcome, Rung, Transport};
use rampart_connect::{ConnectPlan, Connected, Credentials, Proxy, ProxyChoice, Roots, TlsSettings};
use tokio::sync::mpsc;
use rampart_io::stream::BoxStream;

/// IKE's port on UDP (the engine moves to NAT-T by itself).
pub const IKE_PORT: u16 = 500;

/// The transport a tunnel runs over.
pub struct Chosen {
    pub transport: ClientTransport,
    /// Our address (for UDP the source the kernel picks towards the gateway).
    pub local: SocketAddr,
    /// The gateway's address as the engine sees it.
    pub remote: SocketAddr,
    /// The connected stream, for TCP and TLS.
    pub stream: Option<BoxStream>,
    /// `host:port` of the proxy on the way.
    pub proxy: Option<String>,
    /// Why this transport: shown in the status.
    pub reason: String,
}

impl Chosen {
    pub fn udp(local: IpAddr, gateway: IpAddr) -> Chosen {
        Chosen {
            transport: ClientTransport::Udp,
            local: SocketAddr::new(local, IKE_PORT),
            remote: SocketAddr::new(gateway, IKE_PORT),
            stream: None,
            proxy: None,
            reason: "UDP first".into(),
        }
    }

    pub fn name(&self) -> &'static str {
        transport_name(self.transport)
    }
}

pub fn transport_name(t: ClientTransport) -> &'static str {
    match t {
        ClientTransport::Udp => "udp",
        ClientTransport::Tcp => "tcp",
        ClientTransport::Tls => "tls",
    }
}

/// The gateway's address (IPv4 preferred).
pub async fn resolve(host: &str) -> Result<IpAddr, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, IKE_PORT))
        .await
        .map_err(|e| format!("cannot resolve the gateway {host}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .map(SocketAddr::ip)
        .ok_or_else(|| format!("the gateway {host} has no address"))
}

/// The ordered proxy list for the profile (always ending with what to do without one).
pub async fn proxies(profile: &ClientProfile) -> Vec<ProxyChoice> {
    let port = profile.visitor_port;
    match &profile.proxy {
        ProxySetting::None => vec![ProxyChoice::Direct],
        ProxySetting::Environment => {
            rampart_connect::proxy::from_env(|k| std::env::var(k).ok(), &profile.gateway, port)
        }
        ProxySetting::Url { url, credentials } => match Proxy::from_url(url) {
            Ok(mut p) => {
                if let Some((user, password)) = credentials {
                    p.credentials = Some(Credentials {
                        user: user.clone(),
                        password: password.to_string(),
                    });
                }
                vec![ProxyChoice::Proxy(p), ProxyChoice::Direct]
            }
            Err(e) => {
                tracing::warn!("proxy {url} is not usable ({e}); connecting directly");
                vec![ProxyChoice::Direct]
            }
        },
        ProxySetting::Pac {
            location,
            credentials,
        } => {
            let url = format!("https://{}:{port}/", profile.gateway);
            match rampart_connect::pac::find_proxy(location, &url, &profile.gateway).await {
                Ok(mut list) => {
                    if let Some((user, password)) = credentials {
                        for choice in &mut list {
                            if let ProxyChoice::Proxy(p) = choice {
                                p.credentials.get_or_insert_with(|| Credentials {
                                    user: user.clone(),
                                    password: password.to_string(),
                                });
                            }
                        }
                    }
                    list
                }
                Err(e) => {
                    tracing::warn!("PAC {location}: {e}; connecting directly");
                    vec![ProxyChoice::Direct]
                }
            }
        }
    }
}

/// Every address the tunnel may leave to: the gateway and the proxies (kill switch, host
/// routes).
pub async fn endpoints(profile: &ClientProfile, gateway: IpAddr) -> Result<Vec<IpAddr>, String> {
    let mut out = vec![gateway];
    for choice in proxies(profile).await {
        if let ProxyChoice::Proxy(p) = choice {
            match resolve(&p.host).await {
                Ok(ip) if !out.contains(&ip) => out.push(ip),
                Ok(_) => {}
                Err(e) => tracing::warn!("proxy {}: {e}", p.authority()),
            }
        }
    }
    Ok(out)
}

/// What the session tells the race about its UDP attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpReport {
    /// The gateway answered IKE_SA_INIT over UDP.
    Answered,
}

/// The race's winner.
pub enum Win {
    /// UDP (the session's running attempt), with the ladder's reason.
    Udp(String),
    /// A connected stream.
    Stream(Chosen),
}

fn ladder_transport(t: ClientTransport) -> Transport {
    match t {
        ClientTransport::Udp => Transport::Udp,
        ClientTransport::Tcp => Transport::Tcp,
        ClientTransport::Tls => Transport::Tls,
    }
}

/// The ladder for the profile's transports and proxy list: the standard ladder (UDP at once,
/// direct streams after a short delay, each proxy after that), without the direct stream rungs
/// when the proxy list does not allow going direct. `proxies` is the list of proxies only, in
/// order (rung `proxy` indexes it).
pub fn ladder_config(
    transports: &[ClientTransport],
    choices: &[ProxyChoice],
) -> Option<(LadderConfig, Vec<Proxy>)> {
    let proxies: Vec<Proxy> = choices
        .iter()
        .filter_map(|c| match c {
            ProxyChoice::Proxy(p) => Some(p.clone()),
            ProxyChoice::Direct => None,
        })
        .collect();
    let direct = choices.contains(&ProxyChoice::Direct);
    let ts: Vec<Transport> = transports.iter().copied().map(ladder_transport).collect();
    let mut config = LadderConfig::standard(&ts, proxies.len())?;
    if !direct {
        config
            .rungs
            .retain(|r| r.transport == Transport::Udp || r.proxy.is_some());
    }
    (!config.rungs.is_empty()).then_some((config, proxies))
}

fn plan(profile: &ClientProfile, rung: &Rung, proxies: &[Proxy]) -> ConnectPlan {
    let proxy = rung.proxy.and_then(|i| proxies.get(i).cloned());
    let (port, tls) = match rung.transport {
        Transport::Tls => (
            profile.visitor_port,
            Some(TlsSettings {
                server_name: profile
                    .tls_server_name
                    .clone()
                    .unwrap_or_else(|| profile.gateway.clone()),
                alpn: vec![profile.alpn.clone()],
                roots: profile
                    .tls_ca
                    .clone()
                    .map_or(Roots::System, Roots::CaFile),
            }),
        ),
        _ => (profile.tcp_port, None),
    };
    ConnectPlan {
        host: profile.gateway.clone(),
        port,
        proxy,
        tls,
        timeout: rung.timeout,
    }
}

/// Runs the transport ladder: stream attempts here, the UDP attempt in the session (which
/// reports on `udp`). Ends with the ladder's choice or every rung's failure.
pub async fn race(
    profile: ClientProfile,
    gateway: IpAddr,
    mut udp: mpsc::UnboundedReceiver<UdpReport>,
) -> Result<Win, String> {
    let choices = proxies(&profile).await;
    let Some((config, proxies)) = ladder_config(&profile.transports, &choices) else {
        return Err("the profile allows no transport".into());
    };
    let rungs = config.rungs.clone();
    let udp_rung = rungs.iter().position(|r| r.transport == Transport::Udp);
    let mut ladder = Ladder::new(config);
    ladder.start(Instant::now());
    let (results_tx, mut results) = mpsc::unbounded_channel();
    let mut tasks: Vec<Option<tokio::task::JoinHandle<()>>> = (0..rungs.len()).map(|_| None).collect();
    let mut connected: Vec<Option<(Connected, u16)>> = (0..rungs.len()).map(|_| None).collect();
    let mut udp_open = true;
    loop {
        while let Some(action) = ladder.poll_action() {
            match action {
                Action::Start(id) if Some(id) == udp_rung => {}
                Action::Start(id) => {
                    let plan = plan(&profile, &rungs[id], &proxies);
                    let tx = results_tx.clone();
                    tasks[id] = Some(tokio::spawn(async move {
                        let r = rampart_connect::connect(&plan).await;
                        let _ = tx.send((id, r, plan.port));
                    }));
                }
                Action::Cancel(id) => {
                    if let Some(t) = tasks[id].take() {
                        t.abort();
                    }
                    connected[id] = None;
                }
                Action::Done(Outcome::Chosen { rung, why }) => {
                    for t in tasks.iter_mut().filter_map(Option::take) {
                        t.abort();
                    }
                    if Some(rung) == udp_rung {
                        return Ok(Win::Udp(why));
                    }
                    let Some((c, port)) = connected[rung].take() else {
                        return Err(format!("the ladder chose {} but its stream is gone", rungs[rung]));
                    };
                    return Ok(Win::Stream(Chosen {
                        transport: match rungs[rung].transport {
                            Transport::Tls => ClientTransport::Tls,
                            _ => ClientTransport::Tcp,
                        },
                        local: c.local_addr,
                        remote: SocketAddr::new(gateway, port),
                        proxy: c.path.proxy.as_ref().map(|(p, _)| p.clone()),
                        reason: format!("{why}; {}", c.path),
                        stream: Some(Box::new(c.stream)),
                    }));
                }
                Action::Done(Outcome::AllFailed(list)) => {
                    return Err(format!(
                        "no transport works: {}",
                        list.iter()
                            .map(|(id, why)| format!("{}: {why}", rungs[*id]))
                            .collect::<Vec<_>>()
                            .join("; ")
                    ));
                }
            }
        }
        let deadline = ladder.poll_timeout();
        tokio::select! {
            Some((id, r, port)) = results.recv() => {
                tasks[id] = None;
                match r {
                    Ok(c) => {
                        tracing::info!("transport {}: {} connected", rungs[id], c.path);
                        connected[id] = Some((c, port));
                        ladder.on_success(Instant::now(), id);
                    }
                    Err(e) => {
                        tracing::info!("transport {}: {e}", rungs[id]);
                        ladder.on_failure(Instant::now(), id, e.to_string());
                    }
                }
            }
            report = udp.recv(), if udp_open => match (report, udp_rung) {
                (Some(UdpReport::Answered), Some(id)) => ladder.on_success(Instant::now(), id),
                (None, _) => udp_open = false,
                _ => {}
            },
            () = sleep_until(deadline) => ladder.handle_timeout(Instant::now()),
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// Whether the node's IKE SA heard the gateway (its responder SPI is known), read from the
/// node's status socket.
pub async fn ike_answered(node_socket: &Path) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::UnixStream::connect(node_socket).await else {
        return false;
    };
    if s.write_all(b"status\n").await.is_err() {
        return false;
    }
    let mut body = Vec::new();
    if s.read_to_end(&mut body).await.is_err() {
        return false;
    }
    let Ok(status) = serde_json::from_slice::<rampart_node::GatewayStatus>(&body) else {
        return false;
    };
    status.peers.iter().any(|p| {
        p.ike_sa
            .as_ref()
            .is_some_and(|sa| sa.spi_r.trim_start_matches('0') != "")
    })
}

/// The captive-portal probe: `Ok(None)` when the network is open, `Ok(Some(what))` when a
/// portal answered, `Err` when the probe got no answer at all.
pub async fn captive_probe(url: &str) -> Result<Option<String>, String> {
    use rampart_connect::captive::{probe, CaptiveProbe, CaptiveStatus};
    let p = CaptiveProbe::new(url).map_err(|e| format!("captive_portal {url}: {e}"))?;
    match probe(&p).await.map_err(|e| e.to_string())? {
        CaptiveStatus::Open => Ok(None),
        CaptiveStatus::Portal { url, status_line } => {
            Ok(Some(format!("{status_line}; log in at {url}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_for_profiles_and_proxy_lists() {
        let proxy = ProxyChoice::Proxy(Proxy::from_url("http://p.example:3128").unwrap());
        let all = [ClientTransport::Udp, ClientTransport::Tcp, ClientTransport::Tls];
        let (config, proxies) = ladder_config(&all, &[proxy.clone(), ProxyChoice::Direct]).unwrap();
        assert_eq!(proxies.len(), 1);
        let names: Vec<String> = config.rungs.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            ["udp", "tcp", "tls", "tls via proxy #1", "tcp via proxy #1"]
        );
        // A proxy list without DIRECT (PAC): UDP and the proxied streams only.
        let (config, _) = ladder_config(&all, &[proxy]).unwrap();
        let names: Vec<String> = config.rungs.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["udp", "tls via proxy #1", "tcp via proxy #1"]);
        // UDP only, and nothing at all.
        let (config, _) = ladder_config(&[ClientTransport::Udp], &[ProxyChoice::Direct]).unwrap();
        assert_eq!(config.rungs.len(), 1);
        assert!(ladder_config(&[], &[ProxyChoice::Direct]).is_none());
    }
}
