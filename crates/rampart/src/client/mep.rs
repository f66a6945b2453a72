//! Multiple Entry Points in the client shell: the first-to-respond probe over every gateway of
//! a profile (`gateways = [...]`). Which gateway the next connection goes to is decided by
//! `rampart_connect::entry_points::EntryPoints` (sans-IO); this runs the probes.
//!
//! The probes are the cheapest that may get through the network the host is on, all at once:
//! the transport ladder's UDP probe (a payload-less IKE_SA_INIT to port 500, when the profile
//! allows UDP) and a TCP connect to the gateway's first stream port. The first answer wins;
//! nothing within `PROBE_WINDOW` leaves the order as written.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use rampart_config::{ClientProfile, ClientSelection, ClientTransport};
use rampart_connect::entry_points::{Selection, PROBE_WINDOW};
use tokio::task::JoinSet;

use super::transport::{resolve, IKE_PORT};

/// The sans-IO selection for a profile's `selection`.
pub fn selection(s: ClientSelection) -> Selection {
    match s {
        ClientSelection::FirstToRespond => Selection::FirstToRespond,
        ClientSelection::PrimaryBackup => Selection::PrimaryBackup,
    }
}

/// Probes every entry point of `profile` at once; returns the index of the first that
/// answered and how (`None`: none within [`PROBE_WINDOW`]).
pub async fn probe(profile: &ClientProfile) -> Option<(usize, &'static str)> {
    let started = Instant::now();
    let udp = profile.transports.contains(&ClientTransport::Udp);
    let stream = profile.transports.iter().find_map(|t| match t {
        ClientTransport::Udp => None,
        ClientTransport::Tcp => Some(false),
        ClientTransport::Tls => Some(true),
    });
    let mut set: JoinSet<Option<(usize, &'static str)>> = JoinSet::new();
    for (i, e) in profile.entry_points.iter().enumerate() {
        let host = e.host.clone();
        let port = match stream {
            Some(true) => Some(e.visitor_port),
            Some(false) => Some(profile.tcp_port),
            None => None,
        };
        set.spawn(async move {
            let ip: IpAddr = resolve(&host).await.ok()?;
            let mut inner: JoinSet<Option<&'static str>> = JoinSet::new();
            if udp {
                inner.spawn(async move {
                    rampart_connect::udp_probe::probe(
                        SocketAddr::new(ip, IKE_PORT),
                        false,
                        PROBE_WINDOW,
                    )
                    .await
                    .ok()
                    .map(|_| "udp probe")
                });
            }
            if let Some(port) = port {
                inner.spawn(async move {
                    let connect = tokio::net::TcpStream::connect((ip, port));
                    match tokio::time::timeout(PROBE_WINDOW, connect).await {
                        Ok(Ok(_)) => Some("tcp connect"),
                        _ => None,
                    }
                });
            }
            while let Some(r) = inner.join_next().await {
                if let Ok(Some(how)) = r {
                    return Some((i, how));
                }
            }
            None
        });
    }
    let deadline = tokio::time::Instant::from_std(started + PROBE_WINDOW);
    loop {
        match tokio::time::timeout_at(deadline, set.join_next()).await {
            Ok(Some(Ok(Some(hit)))) => return Some(hit),
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return None,
        }
    }
}
