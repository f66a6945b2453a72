//! The full-sync TLS transport over loopback: both authentication modes, the Hello proof over
//! the TLS exporter, and the one-line refusals.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use rampart_cluster::{ClusterConfig, ClusterMode, MemberConfig, MemberId, SyncAuth, TlsFiles};
use rampart_io::sync_tls::{SyncError, SyncFailure, SyncStream, SyncTls};
use rampart_pki::ca::{unix_now, Algorithm, Ca, San, Validity};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

const SECRET: &[u8] = b"cluster-secret-0123456789";

/// Member `me` of a two-member cluster on 127.0.0.1 whose active member (1) listens on `port`.
fn config(me: MemberId, port: u16, secret: &[u8], tls: Option<TlsFiles>) -> ClusterConfig {
    let member = |id, port| MemberConfig {
        id,
        sync_address: SocketAddr::from(([127, 0, 0, 1], port)),
        priority: 100,
        extra_sync_addresses: Vec::new(),
    };
    ClusterConfig {
        name: "test".into(),
        member_id: me,
        mode: ClusterMode::HighAvailability,
        members: vec![member(1, port), member(2, 8116)],
        switch_back: false,
        heartbeat_interval: Duration::from_millis(100),
        dead_after: 3,
        monitored_interfaces: vec![],
        virtual_addresses: vec![],
        auth: SyncAuth {
            secret: Zeroizing::new(secret.to_vec()),
            tls,
        },
        retransmit_queue: 1024,
        takeover_margin: 16384,
        esp_sync_interval: Duration::from_millis(100),
        load_sharing: None,
        sync_link_hold_down: rampart_cluster::DEFAULT_SYNC_LINK_HOLD_DOWN,
    }
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Outcome {
    server: Result<(MemberId, SyncStream), SyncError>,
    client: Result<SyncStream, SyncError>,
}

/// Member 1 serves one connection, member 2 connects to it; returns both results.
async fn exchange(server: ClusterConfig, client: ClusterConfig) -> Outcome {
    let address = server.me().sync_address;
    let server_tls = SyncTls::new(&server).unwrap();
    let client_tls = SyncTls::new(&client).unwrap();
    let listener = server_tls.listen().unwrap();
    let serve = async {
        let (tcp, peer) = listener.accept().await.unwrap();
        server_tls.accept(tcp, peer).await
    };
    let (server, client) = tokio::join!(serve, client_tls.connect(1, address));
    Outcome { server, client }
}

#[tokio::test]
async fn good_secret_passes_and_the_stream_carries_bytes() {
    let port = free_port();
    let out = exchange(config(1, port, SECRET, None), config(2, port, SECRET, None)).await;
    let (member, mut server) = out.server.unwrap();
    assert_eq!(member, 2);
    let mut client = out.client.unwrap();
    // What follows the Hellos is the caller's: nothing of them is left in the stream.
    server.write_all(b"snapshot bytes").await.unwrap();
    server.shutdown().await.unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"snapshot bytes");
}

#[tokio::test]
async fn wrong_secret_is_refused_with_one_line_naming_the_peer() {
    let port = free_port();
    let out = exchange(
        config(1, port, SECRET, None),
        config(2, port, b"another-secret-0123456789", None),
    )
    .await;
    let server = out.server.expect_err("server refuses");
    assert_eq!(server.failure(), &SyncFailure::WrongSecret);
    let text = server.to_string();
    assert!(
        text.starts_with("full sync from 127.0.0.1:")
            && text.ends_with(" refused: wrong cluster secret (its proof does not match)"),
        "{text}"
    );
    assert!(!text.contains('\n'));
    // The client learns nothing but that it was refused.
    let client = out.client.expect_err("client fails");
    assert_eq!(client.failure(), &SyncFailure::RefusedByPeer, "{client}");
    assert!(
        client.to_string().starts_with(&format!(
            "full sync from member 1 at 127.0.0.1:{port} failed: "
        )),
        "{client}"
    );
}

#[tokio::test]
async fn a_member_cannot_claim_the_servers_own_id() {
    let port = free_port();
    // Both say they are member 1.
    let out = exchange(config(1, port, SECRET, None), config(1, port, SECRET, None)).await;
    // The client binds to member 1's own address and port, so it cannot even connect, or the
    // server refuses the id: either way no stream.
    assert!(out.client.is_err());
    if let Err(e) = out.server {
        assert!(
            matches!(
                e.failure(),
                SyncFailure::UnknownMember(1) | SyncFailure::NotAMemberAddress(_)
            ),
            "{e}"
        );
    }
}

#[tokio::test]
async fn connection_from_a_non_member_address_is_refused_before_tls() {
    let port = free_port();
    let server = config(1, port, SECRET, None);
    let tls = SyncTls::new(&server).unwrap();
    let listener = tls.listen().unwrap();
    // From another loopback address than the members' own.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let connect = socket.connect(SocketAddr::from(([127, 0, 0, 1], port)));
    let (accepted, _client) = tokio::join!(listener.accept(), connect);
    let (tcp, peer) = accepted.unwrap();
    let err = tls.accept(tcp, peer).await.err().unwrap();
    assert_eq!(
        err.to_string(),
        format!("full sync from {peer} refused: 127.0.0.2 is not another member's sync address")
    );
}

#[tokio::test]
async fn nothing_listening_names_member_and_address() {
    let port = free_port();
    let client = SyncTls::new(&config(2, port, SECRET, None)).unwrap();
    let err = client
        .connect(1, SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "full sync from member 1 at 127.0.0.1:{port} failed: "
        )),
        "{err}"
    );
}

/// A cluster CA in `dir` and a member certificate for each of `members` (files `ca.pem`,
/// `N.pem`, `N.key`).
fn pki(dir: &Path, ca_name: &str, members: &[MemberId]) -> Vec<TlsFiles> {
    let validity = Validity::days_from(unix_now(), 1);
    let ca = Ca::new_root(ca_name, Algorithm::EcdsaP256, validity).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &ca.cert.cert_pem).unwrap();
    members
        .iter()
        .map(|&id| {
            let issued = ca
                .issue(
                    &format!("member-{id}"),
                    &[San::Dns(format!("member-{id}.test"))],
                    Algorithm::EcdsaP256,
                    validity,
                )
                .unwrap();
            let cert = dir.join(format!("{id}.pem"));
            let key = dir.join(format!("{id}.key"));
            std::fs::write(&cert, &issued.cert_pem).unwrap();
            std::fs::write(&key, &issued.key_pem).unwrap();
            TlsFiles {
                ca: ca_file.clone(),
                cert,
                key,
            }
        })
        .collect()
}

#[tokio::test]
async fn certificates_of_the_cluster_ca_pass() {
    let dir = tempfile::tempdir().unwrap();
    let files = pki(dir.path(), "cluster CA", &[1, 2]);
    let port = free_port();
    let out = exchange(
        config(1, port, SECRET, Some(files[0].clone())),
        config(2, port, SECRET, Some(files[1].clone())),
    )
    .await;
    assert_eq!(out.server.unwrap().0, 2);
    out.client.unwrap();
}

#[tokio::test]
async fn certificates_still_need_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let files = pki(dir.path(), "cluster CA", &[1, 2]);
    let port = free_port();
    let out = exchange(
        config(1, port, SECRET, Some(files[0].clone())),
        config(
            2,
            port,
            b"another-secret-0123456789",
            Some(files[1].clone()),
        ),
    )
    .await;
    assert_eq!(
        out.server.err().unwrap().failure(),
        &SyncFailure::WrongSecret
    );
    assert!(out.client.is_err());
}

#[tokio::test]
async fn a_certificate_of_another_ca_is_refused() {
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    let good = pki(ours.path(), "cluster CA", &[1, 2]);
    let foreign = pki(theirs.path(), "other CA", &[2]);
    let port = free_port();

    // A client with a certificate of another CA (but trusting ours): the server refuses it.
    let mut client_files = foreign[0].clone();
    client_files.ca = good[0].ca.clone();
    let out = exchange(
        config(1, port, SECRET, Some(good[0].clone())),
        config(2, port, SECRET, Some(client_files)),
    )
    .await;
    let server = out.server.expect_err("server refuses").to_string();
    assert!(
        server.starts_with("full sync from 127.0.0.1:")
            && server.contains(" refused: TLS handshake failed: its certificate is not accepted"),
        "{server}"
    );
    let client = out.client.expect_err("client fails").to_string();
    assert!(client.contains("TLS handshake failed"), "{client}");

    // A server with a certificate of another CA: the client refuses it.
    let port = free_port();
    let mut server_files = foreign[0].clone();
    server_files.ca = good[0].ca.clone();
    let out = exchange(
        config(1, port, SECRET, Some(server_files)),
        config(2, port, SECRET, Some(good[1].clone())),
    )
    .await;
    let client = out.client.expect_err("client refuses").to_string();
    assert!(
        client.starts_with(&format!(
            "full sync from member 1 at 127.0.0.1:{port} failed: "
        )) && client.contains("its certificate is not accepted (UnknownIssuer)"),
        "{client}"
    );
    assert!(out.server.is_err());
}

#[test]
fn missing_certificate_files_are_named() {
    let files = TlsFiles {
        ca: "/nonexistent/ca.pem".into(),
        cert: "/nonexistent/1.pem".into(),
        key: "/nonexistent/1.key".into(),
    };
    let err = SyncTls::new(&config(1, 8116, SECRET, Some(files)))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("full sync TLS: CA /nonexistent/ca.pem: "),
        "{err}"
    );
}
