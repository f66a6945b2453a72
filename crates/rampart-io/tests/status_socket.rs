//! The status socket's file handling and protocol (no privileges needed).

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::PathBuf;

use rampart_io::status_server::{self, StatusServer};
use rampart_io::IoError;

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rampart-io-test-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn creates_parent_owner_only_socket_and_removes_it() {
    let dir = temp_dir("mode");
    let path = dir.join("a").join("gw.sock");
    runtime().block_on(async {
        let (server, _requests) = StatusServer::bind(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        drop(server);
        assert!(!path.exists());
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replaces_stale_socket_but_not_live_one_or_other_files() {
    let dir = temp_dir("stale");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gw.sock");
    runtime().block_on(async {
        // A socket file nobody listens on any more.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let (_live, _requests) = StatusServer::bind(&path).unwrap();

        match StatusServer::bind(&path) {
            Err(IoError::StatusSocketInUse { .. }) => {}
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("took over a live status socket"),
        }

        let file = dir.join("plain");
        std::fs::write(&file, "keep me").unwrap();
        let err = match StatusServer::bind(&file) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("replaced a regular file"),
        };
        assert!(err.contains("not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn answers_status_from_the_loop_and_errors_otherwise() {
    let dir = temp_dir("proto");
    let path = dir.join("gw.sock");
    runtime().block_on(async {
        let (server, mut requests) = StatusServer::bind(&path).unwrap();
        let loop_side = async {
            for _ in 0..2 {
                server.accept().await.unwrap();
            }
            // Only the `status` request reaches the loop.
            let query = requests.recv().await.unwrap();
            query.reply.send(r#"{"name":"gw"}"#.to_owned()).unwrap();
        };
        let p1 = path.clone();
        let p2 = path.clone();
        let clients = async {
            let bad = tokio::task::spawn_blocking(move || status_server::query(&p1, "shutdown"));
            let good = tokio::task::spawn_blocking(move || status_server::query(&p2, "status"));
            (bad.await.unwrap().unwrap(), good.await.unwrap().unwrap())
        };
        let ((), (bad, good)) = tokio::join!(loop_side, clients);
        assert_eq!(good, r#"{"name":"gw"}"#);
        let bad: serde_json::Value = serde_json::from_str(&bad).unwrap();
        assert_eq!(
            bad["error"],
            "unknown request \"shutdown\"; the requests are \"status\", \"conn list\", \"conn stats\", \"reload /absolute/path.toml\", \"cluster status\", \"cluster sync-stats\", \"cluster switchover [ID]\", \"cluster down\", \"cluster up\", \"mep status\""
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cluster_requests_parse() {
    use rampart_io::status_server::StatusRequest;
    use rampart_node::ClusterCommand;
    let parse = StatusRequest::parse;
    assert_eq!(parse("cluster status"), Some(StatusRequest::ClusterStatus));
    assert_eq!(parse(" mep  status\n"), Some(StatusRequest::MepStatus));
    assert_eq!(parse("mep"), None);
    assert_eq!(
        parse(" cluster  sync-stats\n"),
        Some(StatusRequest::ClusterSyncStats)
    );
    assert_eq!(
        parse("cluster switchover"),
        Some(StatusRequest::Cluster(ClusterCommand::Switchover {
            to: None
        }))
    );
    assert_eq!(
        parse("cluster switchover 2"),
        Some(StatusRequest::Cluster(ClusterCommand::Switchover {
            to: Some(2)
        }))
    );
    assert_eq!(parse("cluster switchover two"), None);
    assert_eq!(
        parse("cluster down"),
        Some(StatusRequest::Cluster(ClusterCommand::Down))
    );
    assert_eq!(
        parse("cluster up"),
        Some(StatusRequest::Cluster(ClusterCommand::Up))
    );
    assert_eq!(parse("cluster"), None);
}
