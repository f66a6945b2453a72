//! Choosing how the tunnel reaches the gateway: `rampart_connect`'s transport ladder run by
//! `rampart_connect::drive` (a payload-less IKE_SA_INIT probe on UDP; RFC 9329 TCP and Visitor
//! Mode TLS directly a little later; then the same through each HTTP CONNECT proxy from the
//! profile, the environment or a PAC file; or at once when the earlier rungs failed). The
//! ladder picks the winner and says why; the reason is shown in the status.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rampart_config::{ClientProfile, ClientTransport, ProxySetting};
use rampart_connect::drive::{self, Targets, Won};
use rampart_connect::ladder::{LadderConfig, Transport};
use rampart_connect::BoxStream;
use rampart_connect::{Credentials, Proxy, ProxyChoice, Roots, TlsSettings};

/// IKE's port on UDP (the engine moves to NAT-T by itself).
pub const IKE_PORT: u16 = 500;
/// How long a PAC file may take to load.
pub const PAC_TIMEOUT: Duration = Duration::from_secs(3);

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
    /// How the stream was connected (for TCP and TLS): a lost stream is replaced on the same
    /// path (see `super::reattach`).
    pub plan: Option<rampart_connect::ConnectPlan>,
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
            plan: None,
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

/// The ordered proxy list for the profile. `my_ip` is `myIpAddress()` for a PAC script.
pub async fn proxies(profile: &ClientProfile, my_ip: IpAddr) -> Vec<ProxyChoice> {
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
        } => match pac_proxies(profile, location, my_ip).await {
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
        },
    }
}

/// Loads the PAC file and evaluates it for the gateway's Visitor Mode URL.
async fn pac_proxies(
    profile: &ClientProfile,
    location: &str,
    my_ip: IpAddr,
) -> Result<Vec<ProxyChoice>, String> {
    let source = rampart_connect::pac::load(location, PAC_TIMEOUT).await?;
    let pac = rampart_connect::pac::Pac::parse(&source).map_err(|e| e.to_string())?;
    let host = profile.gateway.clone();
    let url = format!(
        "https://{}/",
        rampart_connect::http::authority(&host, profile.visitor_port)
    );
    tokio::task::spawn_blocking(move || {
        let resolve = |name: &str| -> Option<IpAddr> {
            use std::net::ToSocketAddrs;
            (name, 0u16).to_socket_addrs().ok()?.next().map(|a| a.ip())
        };
        let env = rampart_connect::pac::PacEnv {
            my_ip,
            resolve: &resolve,
        };
        pac.find_proxy(&env, &url, &host).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Every address the tunnel may leave to: the gateway and the proxies (kill switch, host
/// routes).
pub async fn endpoints(gateway: IpAddr, choices: &[ProxyChoice]) -> Vec<IpAddr> {
    let mut out = vec![gateway];
    for choice in choices {
        if let ProxyChoice::Proxy(p) = choice {
            match resolve(&p.host).await {
                Ok(ip) if !out.contains(&ip) => out.push(ip),
                Ok(_) => {}
                Err(e) => tracing::warn!("proxy {}: {e}", p.authority()),
            }
        }
    }
    out
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
    ladder_config_with(transports, choices, super::attach::STREAMS)
}

/// [`ladder_config`], with or without stream rungs (`streams`: the I/O layer can carry them).
pub fn ladder_config_with(
    transports: &[ClientTransport],
    choices: &[ProxyChoice],
    streams: bool,
) -> Option<(LadderConfig, Vec<Proxy>)> {
    let proxies: Vec<Proxy> = choices
        .iter()
        .filter_map(|c| match c {
            ProxyChoice::Proxy(p) => Some(p.clone()),
            ProxyChoice::Direct => None,
        })
        .collect();
    let direct = choices.contains(&ProxyChoice::Direct);
    let ts: Vec<Transport> = transports
        .iter()
        .copied()
        .filter(|t| streams || *t == ClientTransport::Udp)
        .map(ladder_transport)
        .collect();
    let mut config = LadderConfig::standard(&ts, proxies.len())?;
    if !direct {
        config
            .rungs
            .retain(|r| r.transport == Transport::Udp || r.proxy.is_some());
    }
    (!config.rungs.is_empty()).then_some((config, proxies))
}

/// Runs the ladder for `profile` towards `gateway`, with `choices` from [`proxies`].
pub async fn run_ladder(
    profile: &ClientProfile,
    gateway: IpAddr,
    local: IpAddr,
    choices: &[ProxyChoice],
) -> Result<Chosen, String> {
    let Some((config, proxies)) = ladder_config(&profile.transports, choices) else {
        return Err("the profile allows no transport".into());
    };
    let targets = Targets {
        host: profile.gateway.clone(),
        udp: Some(SocketAddr::new(gateway, IKE_PORT)),
        udp_nat_t: false,
        tcp_port: profile.tcp_port,
        tls_port: profile.visitor_port,
        tls: TlsSettings {
            server_name: profile
                .tls_server_name
                .clone()
                .unwrap_or_else(|| profile.gateway.clone()),
            alpn: vec![profile.alpn.clone()],
            roots: profile.tls_ca.clone().map_or(Roots::System, Roots::CaFile),
        },
        proxies,
    };
    let choice = drive::run(config, &targets)
        .await
        .map_err(|e| e.to_string())?;
    let plan = drive::stream_plan(&choice.rung, &targets).ok();
    Ok(match choice.won {
        Won::Udp(_) => Chosen {
            reason: choice.why,
            ..Chosen::udp(local, gateway)
        },
        Won::Stream(c) => Chosen {
            transport: match choice.rung.transport {
                Transport::Tls => ClientTransport::Tls,
                _ => ClientTransport::Tcp,
            },
            local: c.local_addr,
            remote: SocketAddr::new(
                gateway,
                if choice.rung.transport == Transport::Tls {
                    profile.visitor_port
                } else {
                    profile.tcp_port
                },
            ),
            proxy: c.path.proxy.as_ref().map(|(p, _)| p.clone()),
            reason: format!("{}; {}", choice.why, c.path),
            stream: Some(Box::new(c.stream)),
            plan,
        },
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
        let all = [
            ClientTransport::Udp,
            ClientTransport::Tcp,
            ClientTransport::Tls,
        ];
        let (config, proxies) =
            ladder_config_with(&all, &[proxy.clone(), ProxyChoice::Direct], true).unwrap();
        assert_eq!(proxies.len(), 1);
        let names: Vec<String> = config.rungs.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            ["udp", "tcp", "tls", "tls via proxy #1", "tcp via proxy #1"]
        );
        // A proxy list without DIRECT (PAC): UDP and the proxied streams only.
        let (config, _) = ladder_config_with(&all, std::slice::from_ref(&proxy), true).unwrap();
        let names: Vec<String> = config.rungs.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["udp", "tls via proxy #1", "tcp via proxy #1"]);
        // UDP only, and nothing at all.
        let (config, _) =
            ladder_config_with(&[ClientTransport::Udp], &[ProxyChoice::Direct], true).unwrap();
        assert_eq!(config.rungs.len(), 1);
        assert!(ladder_config_with(&[], &[ProxyChoice::Direct], true).is_none());
        // Without stream support in the I/O layer: UDP only, and nothing for a TLS-only profile.
        let (config, _) = ladder_config_with(&all, &[proxy], false).unwrap();
        assert_eq!(config.rungs.len(), 1);
        assert!(
            ladder_config_with(&[ClientTransport::Tls], &[ProxyChoice::Direct], false).is_none()
        );
    }
}
