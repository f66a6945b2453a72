//! The local status socket: a Unix stream socket where a client writes one request line
//! (`status`) and reads one JSON document back, after which the server closes the connection.
//!
//! The node lives in the event loop, so a client task only parses the request; the answer is
//! produced by the loop through [`StatusRequests`]. A slow client never blocks the loop.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rampart_node::ClusterCommand;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::IoError;

/// Longest request line accepted.
const MAX_REQUEST: u64 = 1024;
/// How long a client may take to send its request or to read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a client asked for: `status`, `conn list`, `conn stats`, `reload <file>` or one of the
/// `cluster` requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusRequest {
    /// `GatewayStatus`.
    Status,
    /// `ConnList`: the connection table.
    ConnList,
    /// `InspectStats`: the inspection counters.
    ConnStats,
    /// `reload /abs/path.toml`: read, validate and apply that configuration file; the answer
    /// is a `ReloadReport` or `{"error": ...}` with every problem found.
    Reload(PathBuf),
    /// `cluster status`: `ClusterStatus`.
    ClusterStatus,
    /// `mep status`: `rampart_mep::MepStatus` (groups, entry points, responder).
    MepStatus,
    /// `cluster sync-stats`: `SyncStats`.
    ClusterSyncStats,
    /// `cluster switchover [ID]`, `cluster down`, `cluster up`: `{"message": ...}` with the
    /// node's acknowledgement, or `{"error": ...}`.
    Cluster(ClusterCommand),
}

impl StatusRequest {
    /// The request a line names (surrounding whitespace ignored).
    pub fn parse(line: &str) -> Option<StatusRequest> {
        if let Some(path) = line.trim().strip_prefix("reload ") {
            let path = Path::new(path.trim());
            return path
                .is_absolute()
                .then(|| StatusRequest::Reload(path.to_owned()));
        }
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["status"] => Some(StatusRequest::Status),
            ["conn", "list"] => Some(StatusRequest::ConnList),
            ["conn", "stats"] => Some(StatusRequest::ConnStats),
            ["cluster", "status"] => Some(StatusRequest::ClusterStatus),
            ["mep", "status"] => Some(StatusRequest::MepStatus),
            ["cluster", "sync-stats"] => Some(StatusRequest::ClusterSyncStats),
            ["cluster", "switchover"] => Some(StatusRequest::Cluster(ClusterCommand::Switchover {
                to: None,
            })),
            ["cluster", "switchover", id] => id
                .parse()
                .ok()
                .map(|to| StatusRequest::Cluster(ClusterCommand::Switchover { to: Some(to) })),
            ["cluster", "down"] => Some(StatusRequest::Cluster(ClusterCommand::Down)),
            ["cluster", "up"] => Some(StatusRequest::Cluster(ClusterCommand::Up)),
            _ => None,
        }
    }
}

/// A request for a document; the event loop answers through `reply`.
pub struct StatusQuery {
    pub request: StatusRequest,
    pub reply: oneshot::Sender<String>,
}

/// The queue of status queries the event loop serves.
pub type StatusRequests = mpsc::Receiver<StatusQuery>;

/// The listening status socket. Dropping it removes the socket file.
pub struct StatusServer {
    listener: UnixListener,
    path: PathBuf,
    queries: mpsc::Sender<StatusQuery>,
}

impl StatusServer {
    /// Creates the parent directory if needed, removes a stale socket file left by a gateway
    /// that died, binds the socket and makes it accessible to the owner only (0600).
    /// Fails if a live gateway answers on the path or the path is not a socket.
    pub fn bind(path: &Path) -> Result<(StatusServer, StatusRequests), IoError> {
        let err = |source| IoError::StatusSocket {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(err)?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(IoError::StatusSocketInUse {
                        path: path.to_owned(),
                    });
                }
                std::fs::remove_file(path).map_err(err)?;
            }
            Ok(_) => {
                return Err(err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a file that is not a socket is in the way; remove it or choose another status_socket",
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        let listener = UnixListener::bind(path).map_err(err)?;
        if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            let _ = std::fs::remove_file(path);
            return Err(err(e));
        }
        let (queries, requests) = mpsc::channel(16);
        Ok((
            StatusServer {
                listener,
                path: path.to_owned(),
                queries,
            },
            requests,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for the next client and serves it on its own task.
    pub async fn accept(&self) -> io::Result<()> {
        let (stream, _) = self.listener.accept().await?;
        let queries = self.queries.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_client(stream, queries).await {
                tracing::debug!("status client: {e}");
            }
        });
        Ok(())
    }
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve_client(stream: UnixStream, queries: mpsc::Sender<StatusQuery>) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read).take(MAX_REQUEST);
    tokio::time::timeout(CLIENT_TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request line"))??;
    let answer = match StatusRequest::parse(&line) {
        Some(request) => {
            let (reply, answer) = oneshot::channel();
            let served = queries.send(StatusQuery { request, reply }).await.is_ok();
            match answer.await {
                Ok(document) if served => document,
                _ => error_document("the gateway is shutting down"),
            }
        }
        None => error_document(&format!("unknown request {:?}; {REQUESTS}", line.trim())),
    };
    tokio::time::timeout(CLIENT_TIMEOUT, async {
        write.write_all(answer.as_bytes()).await?;
        write.write_all(b"\n").await?;
        write.shutdown().await
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "client does not read"))?
}

/// The requests, as the answer to an unknown one lists them.
pub const REQUESTS: &str = "the requests are \"status\", \"conn list\", \"conn stats\", \"reload /absolute/path.toml\", \"cluster status\", \"cluster sync-stats\", \"cluster switchover [ID]\", \"cluster down\", \"cluster up\", \"mep status\"";

/// `{"error": "..."}` with `message` escaped.
pub fn error_document(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

/// Client side: sends `request` to the status socket at `path` and returns the answer without
/// its final newline. Blocking; for `rampart status` and tests.
pub fn query(path: &Path, request: &str) -> io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(path)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.write_all(request.as_bytes())?;
    stream.write_all(b"\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer.trim_end().to_owned())
}
