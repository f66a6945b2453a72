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

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_cluster::{ClusterConfig, MemberId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::linkmon::LinkMonitor;
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
pub struct ClusterIo {
    pub vips: Vips,
    pub links: Option<LinkMonitor>,
    pub listener: TcpListener,
    pub sync_address: SocketAddr,
    tls: Arc<SyncTls>,
    events_tx: mpsc::Sender<SyncEvent>,
    pub events: mpsc::Receiver<SyncEvent>,
    pulls: BTreeMap<MemberId, Pull>,
    next_pull: u64,
    serving: Arc<Mutex<BTreeSet<MemberId>>>,
}

impl ClusterIo {
    /// Opens the address handle, the link monitor (if interfaces are monitored) and the
    /// full-sync listener on this member's sync address. Inside a tokio runtime.
    pub async fn open(config: &ClusterConfig) -> Result<ClusterIo, IoError> {
        let sync_address = config.me().sync_address;
        let tls = SyncTls::new(config).map_err(|e| IoError::Cluster {
            message: e.to_string(),
        })?;
        let listener = tls.listen().map_err(|source| IoError::SyncListen {
            addr: sync_address,
            source,
        })?;
        let links = if config.monitored_interfaces.is_empty() {
            None
        } else {
            Some(LinkMonitor::open(&config.monitored_interfaces).await?)
        };
        let (events_tx, events) = mpsc::channel(QUEUE);
        Ok(ClusterIo {
            vips: Vips::open()?,
            links,
            listener,
            sync_address,
            tls: Arc::new(tls),
            events_tx,
            events,
            pulls: BTreeMap::new(),
            next_pull: 0,
            serving: Arc::new(Mutex::new(BTreeSet::new())),
        })
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
        let tls = self.tls.clone();
        let tx = self.events_tx.clone();
        let serving = self.serving.clone();
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

    /// Removes every virtual address this member added and stops the full-sync tasks.
    pub async fn shutdown(&mut self) {
        for (_, pull) in std::mem::take(&mut self.pulls) {
            pull.task.abort();
        }
        self.vips.release_all().await;
    }
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
