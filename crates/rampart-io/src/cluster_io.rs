//! The cluster's I/O around the event loop: virtual addresses, monitored links, and the
//! full-sync streams (pulled on `Output::FullSyncConnect`, served on the sync address's TCP
//! port). The node decides; this module only moves bytes and reports.
//!
//! Full-sync tasks never touch the node: a pulling task sends what it reads to the loop
//! ([`SyncEvent::Data`], a bounded queue, so a slow node slows the TLS reads), a serving task
//! asks the loop for the node's export ([`SyncEvent::Export`]). Each pull carries an id, so
//! the leftovers of an abandoned pull never reach a newer one for the same member.
//!
//! Bounds: one pull and one served stream per member at a time; [`IDLE_TIMEOUT`] without data
//! ends a pull, [`SERVE_TIMEOUT`] ends a serve.
//!
//! Redundant sync networks: this member has one address per sync link (`address`, then
//! `extra_addresses`). The UDP socket of each is opened with the others ([`crate::runtime::Io`]);
//! full sync is served on each (the listener of link 0 in the event loop, the others from tasks
//! of their own). With more than one link, the interfaces holding the addresses are watched and
//! their carrier is reported to the node per link.
//!
//! Routed Load Sharing: every member holds the virtual addresses, so they are claimed silently
//! ([`Vips::silent`]): the routers reach them by the announced routes, not by ARP/ND.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_cluster::{
    ClusterConfig, ClusterStatus, Distribution, LinkId, LoadSharingStatus, MemberId, SyncStats,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::linkmon::{interfaces_holding, LinkMonitor};
use crate::sync_tls::SyncTls;
use crate::vip::Vips;
use crate::IoError;

/// A pull that receives nothing for this long is given up.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a served full sync may take to be written.
pub const SERVE_TIMEOUT: Duration = Duration::from_secs(300);
/// Bytes read from a full-sync stream at once.
const READ_CHUNK: usize = 64 * 1024;
/// Chunks queued between a pulling task and the loop.
const QUEUE: usize = 8;

/// What the full-sync tasks tell the event loop.
#[derive(Debug)]
pub enum SyncEvent {
    /// Bytes of pull `pull` from `member`.
    Data {
        member: MemberId,
        pull: u64,
        bytes: Vec<u8>,
    },
    /// Pull `pull` from `member` ended before the node said it was complete; `line` is the
    /// one log line saying why.
    PullFailed {
        member: MemberId,
        pull: u64,
        line: String,
    },
    /// A member proved itself on the sync port: the node's export is wanted.
    Export {
        member: MemberId,
        reply: oneshot::Sender<Vec<u8>>,
    },
}

/// A pull in progress.
struct Pull {
    id: u64,
    address: SocketAddr,
    task: AbortHandle,
}

/// The cluster I/O of one member.
///
/// Invariant: `sync_addresses[i]` is this member's address on sync link `i` (`sync_address`
/// is `sync_addresses[0]`); every link in `sync_link_interfaces` is an index into it.
pub struct ClusterIo {
    pub vips: Vips,
    /// Link state of the monitored interfaces and of the sync links' interfaces.
    pub links: Option<LinkMonitor>,
    /// `[cluster] monitor`: their state goes to [`rampart_node::Node::handle_link_state`].
    pub monitored: BTreeSet<String>,
    /// With more than one sync link: (interface, link) for each link whose address an
    /// interface holds; their state is the link's carrier.
    pub sync_link_interfaces: Vec<(String, LinkId)>,
    /// The full-sync listener on link 0's address (in the event loop).
    pub listener: TcpListener,
    pub sync_address: SocketAddr,
    /// This member's address on each sync link, link 0 first.
    pub sync_addresses: Vec<SocketAddr>,
    tls: Arc<SyncTls>,
    events_tx: mpsc::Sender<SyncEvent>,
    pub events: mpsc::Receiver<SyncEvent>,
    pulls: BTreeMap<MemberId, Pull>,
    next_pull: u64,
    serving: Arc<Mutex<BTreeSet<MemberId>>>,
    /// The accept loops of the extra links' full-sync listeners.
    extra_listeners: Vec<AbortHandle>,
}

impl ClusterIo {
    /// Opens the address handle (silent in routed Load Sharing), the link monitor (for the
    /// monitored interfaces and, with redundant sync networks, the sync links' interfaces) and
    /// the full-sync listener on each of this member's sync addresses. Inside a tokio runtime.
    pub async fn open(config: &ClusterConfig) -> Result<ClusterIo, IoError> {
        let me = config.me();
        let sync_address = me.sync_address;
        let sync_addresses: Vec<SocketAddr> = std::iter::once(sync_address)
            .chain(me.extra_sync_addresses.iter().copied())
            .collect();
        let tls = SyncTls::new(config).map_err(|e| IoError::Cluster {
            message: e.to_string(),
        })?;
        let listen = |addr: SocketAddr| {
            tls.listen_on(addr)
                .map_err(|source| IoError::SyncListen { addr, source })
        };
        let listener = listen(sync_address)?;
        let extra: Vec<TcpListener> = sync_addresses[1..]
            .iter()
            .map(|&a| listen(a))
            .collect::<Result<_, _>>()?;
        let sync_link_interfaces = if sync_addresses.len() > 1 {
            sync_link_interfaces(&sync_addresses).await?
        } else {
            Vec::new()
        };
        let monitored: BTreeSet<String> = config.monitored_interfaces.iter().cloned().collect();
        let watched: Vec<String> = monitored
            .iter()
            .cloned()
            .chain(sync_link_interfaces.iter().map(|(i, _)| i.clone()))
            .collect::<BTreeSet<String>>()
            .into_iter()
            .collect();
        let links = if watched.is_empty() {
            None
        } else {
            Some(LinkMonitor::open(&watched).await?)
        };
        let routed = config
            .load_sharing
            .as_ref()
            .is_some_and(|ls| ls.distribution == Distribution::Routed);
        let vips = if routed {
            Vips::open()?.silent()
        } else {
            Vips::open()?
        };
        let (events_tx, events) = mpsc::channel(QUEUE);
        let mut io = ClusterIo {
            vips,
            links,
            monitored,
            sync_link_interfaces,
            listener,
            sync_address,
            sync_addresses,
            tls: Arc::new(tls),
            events_tx,
            events,
            pulls: BTreeMap::new(),
            next_pull: 0,
            serving: Arc::new(Mutex::new(BTreeSet::new())),
            extra_listeners: Vec::new(),
        };
        for listener in extra {
            io.accept_from(listener);
        }
        Ok(io)
    }

    /// Serves full syncs on `listener` (an extra link's address) from a task of its own.
    fn accept_from(&mut self, listener: TcpListener) {
        let (tls, tx, serving) = (
            self.tls.clone(),
            self.events_tx.clone(),
            self.serving.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((tcp, peer)) => serve(tls.clone(), tx.clone(), serving.clone(), tcp, peer),
                    Err(e) => {
                        tracing::warn!("full sync listener: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        self.extra_listeners.push(task.abort_handle());
    }

    /// The sync links whose carrier an interface change reports: `interface`'s links.
    pub fn links_on(&self, interface: &str) -> impl Iterator<Item = LinkId> + '_ {
        let interface = interface.to_owned();
        self.sync_link_interfaces
            .iter()
            .filter(move |(i, _)| *i == interface)
            .map(|(_, link)| *link)
    }

    /// Whether full sync authenticates with certificates.
    pub fn certificates(&self) -> bool {
        self.tls.certificates()
    }

    /// Starts pulling a full sync from `member` (replacing a pull from it in progress).
    pub fn pull(&mut self, member: MemberId, address: SocketAddr) {
        if let Some(old) = self.pulls.remove(&member) {
            old.task.abort();
        }
        self.next_pull += 1;
        let id = self.next_pull;
        let tls = self.tls.clone();
        let tx = self.events_tx.clone();
        let task = tokio::spawn(async move {
            let line = match tls.connect(member, address).await {
                Err(e) => e.to_string(),
                Ok(mut stream) => loop {
                    let mut buf = vec![0u8; READ_CHUNK];
                    match tokio::time::timeout(IDLE_TIMEOUT, stream.read(&mut buf)).await {
                        Ok(Ok(0)) => break format!(
                            "full sync from member {member} at {address} failed: the stream ended before the snapshot was complete"
                        ),
                        Ok(Ok(n)) => {
                            buf.truncate(n);
                            let data = SyncEvent::Data {
                                member,
                                pull: id,
                                bytes: buf,
                            };
                            if tx.send(data).await.is_err() {
                                return;
                            }
                        }
                        Ok(Err(e)) => {
                            break format!("full sync from member {member} at {address} failed: {e}")
                        }
                        Err(_) => break format!(
                            "full sync from member {member} at {address} failed: nothing received for {} s",
                            IDLE_TIMEOUT.as_secs()
                        ),
                    }
                },
            };
            let _ = tx
                .send(SyncEvent::PullFailed {
                    member,
                    pull: id,
                    line,
                })
                .await;
        });
        self.pulls.insert(
            member,
            Pull {
                id,
                address,
                task: task.abort_handle(),
            },
        );
    }

    /// Whether `pull` is the current pull from `member`.
    pub fn is_current(&self, member: MemberId, pull: u64) -> bool {
        self.pulls.get(&member).is_some_and(|p| p.id == pull)
    }

    /// Ends the pull from `member` (complete or refused by the node); returns its address.
    pub fn end_pull(&mut self, member: MemberId) -> Option<SocketAddr> {
        let pull = self.pulls.remove(&member)?;
        pull.task.abort();
        Some(pull.address)
    }

    /// Serves a connection accepted on the sync port from its own task.
    pub fn serve(&self, tcp: TcpStream, peer: SocketAddr) {
        serve(
            self.tls.clone(),
            self.events_tx.clone(),
            self.serving.clone(),
            tcp,
            peer,
        )
    }

    /// Removes every virtual address this member added and stops the full-sync tasks.
    pub async fn shutdown(&mut self) {
        for (_, pull) in std::mem::take(&mut self.pulls) {
            pull.task.abort();
        }
        for task in std::mem::take(&mut self.extra_listeners) {
            task.abort();
        }
        self.vips.release_all().await;
    }
}

impl Drop for ClusterIo {
    /// The extra links' accept loops hold the listeners: they end with the handle, also when
    /// it is dropped without [`ClusterIo::shutdown`] (an error at start).
    fn drop(&mut self) {
        for task in &self.extra_listeners {
            task.abort();
        }
    }
}

/// (interface, link) for every sync link whose address an interface holds now; a link whose
/// address no interface holds is logged and left out (its carrier is not reported, the
/// engine's dead time still judges it).
async fn sync_link_interfaces(addresses: &[SocketAddr]) -> Result<Vec<(String, LinkId)>, IoError> {
    let ips: Vec<IpAddr> = addresses.iter().map(|a| a.ip()).collect();
    let holders = interfaces_holding(&ips).await?;
    let mut out = Vec::new();
    for ((holder, ip), link) in holders.into_iter().zip(&ips).zip(0..=LinkId::MAX) {
        match holder {
            Some(interface) => out.push((interface, link)),
            None => tracing::warn!(
                "sync link {link}: no interface holds {ip} yet; its carrier is not watched"
            ),
        }
    }
    Ok(out)
}

/// Serves one full-sync connection accepted from `peer`, from a task of its own.
fn serve(
    tls: Arc<SyncTls>,
    tx: mpsc::Sender<SyncEvent>,
    serving: Arc<Mutex<BTreeSet<MemberId>>>,
    tcp: TcpStream,
    peer: SocketAddr,
) {
    tokio::spawn(async move {
        let (member, mut stream) = match tls.accept(tcp, peer).await {
            Ok(ok) => ok,
            Err(e) => {
                tracing::warn!("{e}");
                return;
            }
        };
        let Some(_guard) = ServingGuard::take(&serving, member) else {
            tracing::warn!(
                "full sync from {peer} refused: a full sync to member {member} is already running"
            );
            return;
        };
        let (reply, export) = oneshot::channel();
        if tx.send(SyncEvent::Export { member, reply }).await.is_err() {
            return;
        }
        let Ok(bytes) = export.await else { return };
        let write = async {
            stream.write_all(&bytes).await?;
            stream.shutdown().await
        };
        match tokio::time::timeout(SERVE_TIMEOUT, write).await {
            Ok(Ok(())) => tracing::info!(
                "full sync served to member {member} at {peer} ({} bytes)",
                bytes.len()
            ),
            Ok(Err(e)) => tracing::warn!("full sync to member {member} at {peer} failed: {e}"),
            Err(_) => tracing::warn!(
                "full sync to member {member} at {peer} failed: not written within {} s",
                SERVE_TIMEOUT.as_secs()
            ),
        }
    });
}

/// Marks `member` as being served until dropped.
struct ServingGuard {
    set: Arc<Mutex<BTreeSet<MemberId>>>,
    member: MemberId,
}

impl ServingGuard {
    fn take(set: &Arc<Mutex<BTreeSet<MemberId>>>, member: MemberId) -> Option<ServingGuard> {
        let mut members = set.lock().unwrap_or_else(|p| p.into_inner());
        members.insert(member).then(|| ServingGuard {
            set: set.clone(),
            member,
        })
    }
}

impl Drop for ServingGuard {
    fn drop(&mut self) {
        let mut members = self.set.lock().unwrap_or_else(|p| p.into_inner());
        members.remove(&self.member);
    }
}

/// The addresses peers' sockets may bind before this member owns them: the cluster's
/// virtual addresses.
pub fn virtual_ips(config: Option<&ClusterConfig>) -> BTreeSet<IpAddr> {
    config
        .map(|c| c.virtual_addresses.iter().map(|v| v.ip()).collect())
        .unwrap_or_default()
}

/// The `cluster sync-stats` document (also `sync` in `rampart status --json`): the engine's
/// [`SyncStats`], plus what the CLI would otherwise have to compute or ask for separately:
/// `flush_ack.hold_time_p50_us` / `hold_time_p99_us` (the upper bound of the histogram bucket
/// that holds the quantile, `null` before the first hold) and, in Load Sharing, `forwarded`
/// (`sent`, `received`, `dropped`: packets moved to or from the owner of their flow or SA).
pub fn sync_stats_document(
    stats: &SyncStats,
    load_sharing: Option<&LoadSharingStatus>,
) -> serde_json::Result<serde_json::Value> {
    let mut document = serde_json::to_value(stats)?;
    add_sync_extras(&mut document, stats, load_sharing);
    Ok(document)
}

/// Adds the fields of [`sync_stats_document`] to `document`, the serialised `stats`.
pub fn add_sync_extras(
    document: &mut serde_json::Value,
    stats: &SyncStats,
    load_sharing: Option<&LoadSharingStatus>,
) {
    if let (Some(fa), Some(object)) = (
        &stats.flush_ack,
        document
            .get_mut("flush_ack")
            .and_then(|v| v.as_object_mut()),
    ) {
        object.insert(
            "hold_time_p50_us".into(),
            fa.hold_time.quantile_us(0.5).into(),
        );
        object.insert(
            "hold_time_p99_us".into(),
            fa.hold_time.quantile_us(0.99).into(),
        );
    }
    if let (Some(ls), Some(object)) = (load_sharing, document.as_object_mut()) {
        object.insert(
            "forwarded".into(),
            serde_json::json!({
                "sent": ls.forwarded_sent,
                "received": ls.forwarded_received,
                "dropped": ls.forwarded_dropped,
            }),
        );
    }
}

/// The `cluster status` document: the engine's [`ClusterStatus`], plus, in Load Sharing,
/// `load_sharing.member`: this member's own counters from the node (held and released
/// packets, orphans asked for and found, update requests answered, packets forwarded out and
/// in by kind, SAs adopted, routes announced).
pub fn cluster_status_document(
    status: &ClusterStatus,
    member: Option<&rampart_node::LoadSharingStats>,
) -> serde_json::Result<serde_json::Value> {
    let mut document = serde_json::to_value(status)?;
    if let Some(member) = member {
        add_member_counters(&mut document, member)?;
    }
    Ok(document)
}

/// Adds `load_sharing.member` to `cluster`, a serialised [`ClusterStatus`]; nothing when it has
/// no `load_sharing` (high availability).
pub fn add_member_counters(
    cluster: &mut serde_json::Value,
    member: &rampart_node::LoadSharingStats,
) -> serde_json::Result<()> {
    if let Some(ls) = cluster
        .get_mut("load_sharing")
        .and_then(|v| v.as_object_mut())
    {
        ls.insert("member".into(), serde_json::to_value(member)?);
    }
    Ok(())
}
