//! The client's control socket (`<state_dir>/<name>.ctl`, mode 0600): one request line,
//! one JSON answer, then the connection closes, like the gateway's status socket.
//!
//! - `status`: the [`ClientStatus`], with the tunnel's byte counters read from the node's own
//!   status socket.
//! - `down`: `{"message": ...}`, then the client restores the host and exits.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use super::status::{unix_now, ClientStatus};

const TIMEOUT: Duration = Duration::from_secs(5);

/// The shared view the control socket answers from.
pub type Shared = Arc<Mutex<ClientStatus>>;

/// The listening control socket; dropping it removes the file.
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlServer {
    /// Binds `path`, replacing a stale socket file; fails when a live client answers there.
    pub fn bind(path: &Path) -> std::io::Result<ControlServer> {
        if let Some(dir) = path.parent() {
            super::state::create_private_dir(dir)?;
        }
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ));
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!(
                        "a client already answers on {} (see `rampart client status`)",
                        path.display()
                    ),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(ControlServer {
            listener,
            path: path.to_owned(),
        })
    }

    /// Serves clients until the task is dropped. `down` sets `stop` to true.
    pub async fn serve(self, shared: Shared, node_socket: PathBuf, stop: watch::Sender<bool>) {
        loop {
            let Ok((stream, _)) = self.listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let (shared, node_socket, stop) = (shared.clone(), node_socket.clone(), stop.clone());
            tokio::spawn(async move {
                let _ =
                    tokio::time::timeout(TIMEOUT, serve_one(stream, &shared, &node_socket, &stop))
                        .await;
            });
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve_one(
    stream: UnixStream,
    shared: &Shared,
    node_socket: &Path,
    stop: &watch::Sender<bool>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read).take(256).read_line(&mut line).await?;
    let answer = match line.trim() {
        "status" => {
            let counters = node_counters(node_socket).await;
            let mut status = shared.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(c) = counters {
                (
                    status.bytes_in,
                    status.bytes_out,
                    status.packets_in,
                    status.packets_out,
                ) = c;
            }
            status.since_secs = unix_now().saturating_sub(status.since_unix);
            serde_json::to_string(&status).unwrap_or_default()
        }
        "down" => {
            let _ = stop.send(true);
            serde_json::json!({ "message": "disconnecting; restoring routes, DNS and firewall" })
                .to_string()
        }
        other => serde_json::json!({
            "error": format!("unknown request {other:?}; the requests are \"status\" and \"down\"")
        })
        .to_string(),
    };
    write.write_all(answer.as_bytes()).await?;
    write.write_all(b"\n").await?;
    write.shutdown().await
}

/// Bytes and packets in and out of every tunnel, from the node's status socket.
async fn node_counters(path: &Path) -> Option<(u64, u64, u64, u64)> {
    let mut stream = UnixStream::connect(path).await.ok()?;
    stream.write_all(b"status\n").await.ok()?;
    let mut body = Vec::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut body))
        .await
        .ok()?
        .ok()?;
    let status: rampart_node::GatewayStatus = serde_json::from_slice(&body).ok()?;
    let mut sum = (0, 0, 0, 0);
    for t in status.peers.iter().flat_map(|p| &p.tunnels) {
        sum.0 += t.bytes_in;
        sum.1 += t.bytes_out;
        sum.2 += t.packets_in;
        sum.3 += t.packets_out;
    }
    Some(sum)
}

/// Client side (blocking): sends `request` and returns the answer, or why not in one line.
pub fn ask(path: &Path, request: &str) -> Result<String, String> {
    rampart_io::status_server::query(path, request).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            format!("no client is running ({} does not answer)", path.display())
        }
        std::io::ErrorKind::PermissionDenied => format!(
            "permission denied on {} (run as the client's user or root)",
            path.display()
        ),
        _ => format!("{}: {e}", path.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn status_and_down_over_the_socket() {
        let dir = std::env::temp_dir().join(format!("rampart-ctl-{}", std::process::id()));
        let path = dir.join("corp.ctl");
        let server = ControlServer::bind(&path).unwrap();
        // A second client on the same name is refused.
        assert!(ControlServer::bind(&path).is_err());
        let shared: Shared = Arc::new(Mutex::new(ClientStatus::new(
            "corp",
            "gw",
            "rampart-c0",
            false,
        )));
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(server.serve(shared, dir.join("missing.sock"), stop));
        let p = path.clone();
        let answer = tokio::task::spawn_blocking(move || ask(&p, "status"))
            .await
            .unwrap()
            .unwrap();
        let status: ClientStatus = serde_json::from_str(&answer).unwrap();
        assert_eq!(status.name, "corp");
        assert_eq!(status.state.as_str(), "connecting");
        let p = path.clone();
        let answer = tokio::task::spawn_blocking(move || ask(&p, "down"))
            .await
            .unwrap()
            .unwrap();
        assert!(answer.contains("disconnecting"), "{answer}");
        stopped.changed().await.unwrap();
        assert!(*stopped.borrow());
        let p = path.clone();
        let answer = tokio::task::spawn_blocking(move || ask(&p, "reboot"))
            .await
            .unwrap()
            .unwrap();
        assert!(answer.contains("unknown request"), "{answer}");
        task.abort();
        let _ = task.await;
        assert!(!path.exists(), "the socket file goes with the server");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
