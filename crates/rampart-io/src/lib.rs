//! The tokio I/O shell of a Rampart gateway: it opens the TUN device, the UDP and raw ESP
//! sockets, the status socket and the route handle, and drives the sans-IO
//! `rampart_node::Gateway` with them. No protocol decision is taken here.
//!
//! [`run_gateway`] is the whole job; the modules are public so tests (and later runtimes) can
//! assemble the parts themselves, e.g. run the loop with a stand-in
//! [`rampart_node::Node`].

pub mod client_command;
pub mod cluster_io;
mod crypt_pool;
pub mod datapath;
mod error;
pub mod errqueue;
pub mod linkmon;
pub mod raw_esp;
pub mod routes;
pub mod runtime;
mod sockbuf;
pub mod status_server;
pub mod stream;
pub mod sync_tls;
pub mod tun;
pub mod tun_gro;
pub mod udp;
pub mod vip;

pub use crypt_pool::CryptPool;
pub use error::{IoError, RouteError};
pub use stream::{BoxStream, StreamEvent};

use std::path::{Path, PathBuf};
use std::time::Instant;

use rampart_config::GatewayConfig;
use rampart_crypto::Rng;
use rampart_node::Gateway;
use tokio::signal::unix::{signal, SignalKind};

/// Runs one gateway until SIGINT or SIGTERM, then removes its routes and its status socket.
/// SIGHUP reloads the configuration file (see `rampart reload`).
///
/// `config_path` is only used in messages (which file the gateway was started from).
pub async fn run_gateway(config: GatewayConfig, config_path: PathBuf) -> Result<(), IoError> {
    let shutdown = shutdown_signal()?;
    warn_if_not_forwarding(&config);
    let name = config.gateway.name.clone();
    let mut io = runtime::Io::open(&config)?;
    io.open_cluster(&config).await?;
    io.open_remote_access(&config)?;
    if let Some(ls) = config
        .cluster
        .as_ref()
        .and_then(|c| c.load_sharing.as_ref())
    {
        if ls.enhanced_handshake && ls.distribution == rampart_cluster::Distribution::Routed {
            if ls.flush_ack {
                tracing::info!(
                    "cluster.enhanced_handshake: TCP handshake sequence numbers are checked \
                     across members (a SYN-ACK waits until every member has the server's ISN)"
                );
            } else {
                tracing::warn!(
                    "cluster.enhanced_handshake without flush_ack: a member that has not \
                     received a connection's ISNs yet lets its handshake through unverified \
                     (counted as handshake_unverified)"
                );
            }
        }
    }
    let cluster_line = config.cluster.as_ref().map(|c| {
        let me = c.me();
        let sync: Vec<String> = std::iter::once(me.sync_address)
            .chain(me.extra_sync_addresses.iter().copied())
            .map(|a| a.to_string())
            .collect();
        let mode = match &c.load_sharing {
            Some(ls) => format!(
                ", load sharing ({})",
                match ls.distribution {
                    rampart_cluster::Distribution::Routed => "routed",
                    rampart_cluster::Distribution::Unicast => "unicast",
                }
            ),
            None => String::new(),
        };
        format!(
            "cluster {} member {}{mode}: sync UDP {}{}",
            c.name,
            c.member_id,
            sync.join(" "),
            if c.monitored_interfaces.is_empty() {
                String::new()
            } else {
                format!(", monitoring {}", c.monitored_interfaces.join(" "))
            }
        )
    });
    // A cluster member's datagrams are keyed per boot: the id must grow across restarts.
    let boot_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    // SIGHUP re-reads the file the gateway was started from (`rampart reload` names a file).
    io.hangup = Some(signal(SignalKind::hangup()).map_err(|source| IoError::Signals { source })?);
    io.config_path =
        Some(std::fs::canonicalize(&config_path).unwrap_or_else(|_| config_path.clone()));
    let crypto_threads = usize::from(config.tunnel.crypto_threads);
    let mut gateway = Gateway::with_boot_id(config, Instant::now(), Rng::from_os(), boot_id)
        .map_err(|e| IoError::Node {
            config_path: config_path.clone(),
            message: e.to_string(),
        })?;
    if crypto_threads > 0 {
        gateway.set_crypt_runner(std::sync::Arc::new(CryptPool::new(crypto_threads)?));
    }
    tracing::info!(
        "gateway {name} running from {}: device {} (segmentation offload {}), UDP {}, cipher threads {}, status socket {}",
        config_path.display(),
        io.tun.name(),
        if io.tun.offload() { "on" } else { "off" },
        io.udp
            .iter()
            .map(|s| s.local().to_string())
            .collect::<Vec<_>>()
            .join(" "),
        if crypto_threads == 0 {
            "none (event loop)".to_owned()
        } else {
            format!("{crypto_threads} + event loop")
        },
        io.status.path().display(),
    );
    if let (Some(cluster), Some(c)) = (&cluster_line, &io.cluster) {
        tracing::info!(
            "{cluster}, full sync on TCP {} authenticated by {}",
            c.sync_address,
            if c.certificates() {
                "the cluster CA and the cluster secret"
            } else {
                "the cluster secret"
            }
        );
    }
    runtime::run(&mut gateway, &mut io, shutdown).await
}

/// A future that completes on the first SIGINT or SIGTERM. The handlers are installed now, so
/// a signal that arrives before the future is polled is not lost.
pub fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, IoError> {
    let err = |source| IoError::Signals { source };
    let mut interrupt = signal(SignalKind::interrupt()).map_err(err)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(err)?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

/// Logs a warning for each address family the gateway protects while the kernel does not
/// forward it: traffic between the VPN domains and the tunnel would then go nowhere.
fn warn_if_not_forwarding(config: &GatewayConfig) {
    let families = config
        .local
        .domain
        .iter()
        .chain(config.peers.iter().flat_map(|p| p.remote_domain.iter()));
    let (mut v4, mut v6) = (false, false);
    for net in families {
        match net {
            ipnet::IpNet::V4(_) => v4 = true,
            ipnet::IpNet::V6(_) => v6 = true,
        }
    }
    let check = |path: &str, key: &str| {
        if read_flag(Path::new(path)) == Some(false) {
            tracing::warn!(
                "{key} is 0: this host will not forward tunnel traffic (set `sysctl -w {key}=1`)"
            );
        }
    };
    if v4 {
        check("/proc/sys/net/ipv4/ip_forward", "net.ipv4.ip_forward");
    }
    if v6 {
        check(
            "/proc/sys/net/ipv6/conf/all/forwarding",
            "net.ipv6.conf.all.forwarding",
        );
    }
}

/// A 0/1 sysctl value, `None` if unreadable.
fn read_flag(path: &Path) -> Option<bool> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.trim() != "0")
}
