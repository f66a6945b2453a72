//! The full-sync transport: TLS 1.3 over TCP between cluster members (rustls on aws-lc-rs).
//!
//! A joining member connects to the active member's sync address (the TCP port has the
//! number of the UDP sync port) from its own sync address. After the TLS handshake each side
//! sends one `Hello { member, proof }` frame ([`rampart_cluster::FullSyncFrame`]), the client
//! first; the server answers only once the client's proof checks out, so a peer without the
//! secret learns nothing, not even the server's proof. The proof is
//! [`rampart_cluster::full_sync_proof`] over the TLS exporter value (label
//! [`EXPORTER_LABEL`], 32 bytes): it binds the cluster secret to this very TLS session, so a
//! man in the middle, which has two different sessions, cannot relay it.
//!
//! Two ways to authenticate, from [`rampart_cluster::SyncAuth`]:
//! - `tls` set (certificates): mutual TLS, each side's certificate must chain to the cluster
//!   CA (any certificate the cluster CA issued is a member; its names are not checked, members
//!   are reached by address), and the proof is checked as well.
//! - `tls` unset (secret only): each side uses an ephemeral self-signed certificate made at
//!   start (rcgen) and the proof is the only authentication.
//!
//! Every failure is one [`SyncError`] whose text is one log line naming the other member's
//! address and the reason ("full sync from 192.0.2.2:40112 refused: wrong cluster secret").
//! What flows after the Hellos (Begin, Records, End) is the node's business.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rampart_cluster::{
    full_sync_proof, verify_full_sync_proof, ClusterConfig, FullSyncDecoder, FullSyncEncoder,
    FullSyncFrame, MemberConfig, MemberId,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use zeroize::Zeroizing;

/// The TLS exporter label of the Hello proof (RFC 8446 7.5).
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-rampart-full-sync";
/// The longest the TCP connect, the TLS handshake and the Hello exchange may take together.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of an encoded Hello frame: length (1), type (1), member (1), proof (32).
const HELLO_LEN: usize = 35;

/// One full-sync TLS session after the Hello exchange.
pub type SyncStream = tokio_rustls::TlsStream<TcpStream>;

/// Why a full-sync stream could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncFailure {
    #[error("wrong cluster secret (its proof does not match)")]
    WrongSecret,
    #[error(
        "the other member closed the stream after our Hello (a different cluster secret or name?)"
    )]
    RefusedByPeer,
    #[error("it says it is member {0}, which is not another member of this cluster")]
    UnknownMember(MemberId),
    #[error("it says it is member {got}, expected member {expected}")]
    WrongMember { expected: MemberId, got: MemberId },
    #[error("{0} is not another member's sync address")]
    NotAMemberAddress(std::net::IpAddr),
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    #[error("malformed Hello: {0}")]
    Malformed(String),
    #[error("{0}")]
    Io(String),
    #[error("no answer within {} s", HANDSHAKE_TIMEOUT.as_secs())]
    Timeout,
}

/// A full-sync stream that failed; its text is the one log line for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// Serving: a member connected to us.
    #[error("full sync from {peer} refused: {why}")]
    Incoming { peer: SocketAddr, why: SyncFailure },
    /// Pulling: we connected to `member`.
    #[error("full sync from member {member} at {peer} failed: {why}")]
    Outgoing {
        member: MemberId,
        peer: SocketAddr,
        why: SyncFailure,
    },
}

impl SyncError {
    pub fn failure(&self) -> &SyncFailure {
        match self {
            SyncError::Incoming { why, .. } | SyncError::Outgoing { why, .. } => why,
        }
    }
}

/// The full-sync TLS material could not be set up (at start).
#[derive(Debug, thiserror::Error)]
#[error("full sync TLS: {0}")]
pub struct SyncTlsError(String);

/// Both ends of full sync for one member: TLS configurations, its id and the secret.
pub struct SyncTls {
    cluster: String,
    member: MemberId,
    members: Vec<MemberConfig>,
    secret: Zeroizing<Vec<u8>>,
    client: Arc<rustls::ClientConfig>,
    server: Arc<rustls::ServerConfig>,
    certificates: bool,
}

impl std::fmt::Debug for SyncTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncTls")
            .field("cluster", &self.cluster)
            .field("member", &self.member)
            .field("certificates", &self.certificates)
            .finish_non_exhaustive()
    }
}

/// Reads a PEM certificate chain (leaf first). The error names the file and the reason.
pub(crate) fn load_chain(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("certificate {}: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "certificate {}: no certificate in the file",
            path.display()
        ));
    }
    Ok(chain)
}

/// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1). The error names the file and the reason.
pub(crate) fn load_key(path: &std::path::Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("key {}: {e}", path.display()))
}

impl SyncTls {
    /// Reads the certificate files (`auth.tls`) or makes an ephemeral self-signed certificate.
    pub fn new(config: &ClusterConfig) -> Result<SyncTls, SyncTlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let versions = &[&rustls::version::TLS13];
        let err = |what: &str, e: &dyn std::fmt::Display| SyncTlsError(format!("{what}: {e}"));
        let (client, server) = match &config.auth.tls {
            Some(files) => {
                let ca = CertificateDer::pem_file_iter(&files.ca)
                    .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| err(&format!("CA {}", files.ca.display()), &e))?;
                let mut roots = RootCertStore::empty();
                for cert in ca {
                    roots
                        .add(cert)
                        .map_err(|e| err(&format!("CA {}", files.ca.display()), &e))?;
                }
                if roots.is_empty() {
                    return Err(SyncTlsError(format!(
                        "CA {}: no certificate in the file",
                        files.ca.display()
                    )));
                }
                let roots = Arc::new(roots);
                let chain = load_chain(&files.cert).map_err(SyncTlsError)?;
                let key = load_key(&files.key).map_err(SyncTlsError)?;
                let client_verifier =
                    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                        .build()
                        .map_err(|e| err("client verifier", &e))?;
                let server_verifier =
                    WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                        .build()
                        .map_err(|e| err("server verifier", &e))?;
                let server = rustls::ServerConfig::builder_with_provider(provider.clone())
                    .with_protocol_versions(versions)
                    .map_err(|e| err("TLS 1.3", &e))?
                    .with_client_cert_verifier(client_verifier)
                    .with_single_cert(chain.clone(), key.clone_key())
                    .map_err(|e| err(&format!("key {}", files.key.display()), &e))?;
                let client = rustls::ClientConfig::builder_with_provider(provider.clone())
                    .with_protocol_versions(versions)
                    .map_err(|e| err("TLS 1.3", &e))?
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(MemberVerifier {
                        ca: Some(server_verifier),
                        provider: provider.clone(),
                    }))
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| err(&format!("key {}", files.key.display()), &e))?;
                (client, server)
            }
            None => {
                let made = rcgen::generate_simple_self_signed(vec![format!(
                    "member-{}.{}.rampart-cluster",
                    config.member_id,
                    sanitize(&config.name)
                )])
                .map_err(|e| err("ephemeral certificate", &e))?;
                let chain = vec![made.cert.der().clone()];
                let key = PrivateKeyDer::try_from(made.signing_key.serialize_der())
                    .map_err(|e| err("ephemeral key", &e))?;
                let server = rustls::ServerConfig::builder_with_provider(provider.clone())
                    .with_protocol_versions(versions)
                    .map_err(|e| err("TLS 1.3", &e))?
                    .with_no_client_auth()
                    .with_single_cert(chain, key)
                    .map_err(|e| err("ephemeral key", &e))?;
                let client = rustls::ClientConfig::builder_with_provider(provider.clone())
                    .with_protocol_versions(versions)
                    .map_err(|e| err("TLS 1.3", &e))?
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(MemberVerifier {
                        ca: None,
                        provider: provider.clone(),
                    }))
                    .with_no_client_auth();
                (client, server)
            }
        };
        Ok(SyncTls {
            cluster: config.name.clone(),
            member: config.member_id,
            members: config.members.clone(),
            secret: config.auth.secret.clone(),
            client: Arc::new(client),
            server: Arc::new(server),
            certificates: config.auth.tls.is_some(),
        })
    }

    /// Whether members authenticate with certificates (else with the secret alone).
    pub fn certificates(&self) -> bool {
        self.certificates
    }

    /// Binds the full-sync listener on this member's sync address (TCP).
    pub fn listen(&self) -> io::Result<TcpListener> {
        self.listen_on(self.me().sync_address)
    }

    /// Binds a full-sync listener on `me`, one of this member's sync addresses (TCP). An
    /// extra link's address is bound with `IP_FREEBIND`: that network may come up later.
    pub fn listen_on(&self, me: SocketAddr) -> io::Result<TcpListener> {
        let socket = match me {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        if me != self.me().sync_address {
            freebind(&socket, me)?;
        }
        socket.bind(me)?;
        socket.listen(8)
    }

    /// Connects to `member` at `address` from this member's sync address and runs the TLS
    /// handshake and the Hello exchange.
    pub async fn connect(
        &self,
        member: MemberId,
        address: SocketAddr,
    ) -> Result<SyncStream, SyncError> {
        let fail = |why| SyncError::Outgoing {
            member,
            peer: address,
            why,
        };
        let setup = async {
            let socket = match address {
                SocketAddr::V4(_) => TcpSocket::new_v4(),
                SocketAddr::V6(_) => TcpSocket::new_v6(),
            }
            .map_err(io_failure)?;
            // Our address on the link the target address is on (link 0 when it is none).
            let from = self.local_for(address).ip();
            if from.is_ipv4() == address.is_ipv4() {
                // From the sync address, which the other member checks.
                socket.bind(SocketAddr::new(from, 0)).map_err(io_failure)?;
            }
            let tcp = socket.connect(address).await.map_err(io_failure)?;
            let _ = tcp.set_nodelay(true);
            let connector = tokio_rustls::TlsConnector::from(self.client.clone());
            let name = ServerName::IpAddress(address.ip().into());
            let mut tls = connector.connect(name, tcp).await.map_err(tls_failure)?;
            let exporter = exporter(tls.get_ref().1)?;
            write_hello(&mut tls, self.member, self.proof(self.member, &exporter)).await?;
            let (peer, proof) = read_hello(&mut tls).await.map_err(|e| match e {
                ReadHello::Io(e) if has_tls_error(&e) => tls_failure(e),
                ReadHello::Io(_) => SyncFailure::RefusedByPeer,
                ReadHello::Bad(why) => why,
            })?;
            if peer != member {
                return Err(SyncFailure::WrongMember {
                    expected: member,
                    got: peer,
                });
            }
            if !self.verify(peer, &exporter, &proof) {
                return Err(SyncFailure::WrongSecret);
            }
            Ok(SyncStream::Client(tls))
        };
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, setup).await {
            Ok(r) => r.map_err(fail),
            Err(_) => Err(fail(SyncFailure::Timeout)),
        }
    }

    /// Serves the TLS handshake and the Hello exchange of a connection accepted from `peer`;
    /// returns the member it proved to be.
    pub async fn accept(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> Result<(MemberId, SyncStream), SyncError> {
        let fail = |why| SyncError::Incoming { peer, why };
        if !self
            .members
            .iter()
            .any(|m| m.id != self.member && sync_ips(m).any(|ip| ip == peer.ip()))
        {
            return Err(fail(SyncFailure::NotAMemberAddress(peer.ip())));
        }
        let setup = async {
            let _ = tcp.set_nodelay(true);
            let acceptor = tokio_rustls::TlsAcceptor::from(self.server.clone());
            let mut tls = acceptor.accept(tcp).await.map_err(tls_failure)?;
            let exporter = exporter(tls.get_ref().1)?;
            let (member, proof) = read_hello(&mut tls).await.map_err(|e| match e {
                ReadHello::Io(e) if has_tls_error(&e) => tls_failure(e),
                ReadHello::Io(e) => io_failure(e),
                ReadHello::Bad(why) => why,
            })?;
            if member == self.member || !self.members.iter().any(|m| m.id == member) {
                return Err(SyncFailure::UnknownMember(member));
            }
            if !self.verify(member, &exporter, &proof) {
                return Err(SyncFailure::WrongSecret);
            }
            write_hello(&mut tls, self.member, self.proof(self.member, &exporter)).await?;
            Ok((member, SyncStream::Server(tls)))
        };
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, setup).await {
            Ok(r) => r.map_err(fail),
            Err(_) => Err(fail(SyncFailure::Timeout)),
        }
    }

    /// This member's address on the sync link of `remote` (a member's address on some link);
    /// link 0's when `remote` is no member's link address.
    fn local_for(&self, remote: SocketAddr) -> SocketAddr {
        let me = self.me();
        let link = self
            .members
            .iter()
            .filter(|m| m.id != self.member)
            .find_map(|m| {
                (0..=m.extra_sync_addresses.len()).find(|&l| m.link_address(l) == Some(remote))
            });
        link.and_then(|l| me.link_address(l))
            .unwrap_or(me.sync_address)
    }

    fn me(&self) -> &MemberConfig {
        self.members
            .iter()
            .find(|m| m.id == self.member)
            .expect("validated: member_id is one of members")
    }

    fn proof(&self, member: MemberId, exporter: &[u8; 32]) -> [u8; 32] {
        full_sync_proof(&self.secret, &self.cluster, member, exporter)
    }

    fn verify(&self, member: MemberId, exporter: &[u8; 32], proof: &[u8; 32]) -> bool {
        verify_full_sync_proof(&self.secret, &self.cluster, member, exporter, proof)
    }
}

/// A DNS-name-safe form of the cluster name (for the ephemeral certificate only).
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    if s.is_empty() {
        "cluster".to_owned()
    } else {
        s
    }
}

fn io_failure(e: io::Error) -> SyncFailure {
    SyncFailure::Io(e.to_string())
}

fn tls_failure(e: io::Error) -> SyncFailure {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(c)) => SyncFailure::Tls(format!(
            "its certificate is not accepted ({c:?}): not issued by the cluster CA?"
        )),
        Some(rustls::Error::AlertReceived(a)) => SyncFailure::Tls(format!(
            "it refused the handshake ({a:?}): our certificate is not issued by its cluster CA, or it uses other full-sync settings?"
        )),
        Some(other) => SyncFailure::Tls(other.to_string()),
        None => SyncFailure::Tls(e.to_string()),
    }
}

fn exporter<D>(conn: &rustls::ConnectionCommon<D>) -> Result<[u8; 32], SyncFailure> {
    let mut out = [0u8; 32];
    conn.export_keying_material(&mut out, EXPORTER_LABEL, None)
        .map_err(|e| SyncFailure::Tls(format!("exporter: {e}")))?;
    Ok(out)
}

async fn write_hello<S: AsyncWrite + Unpin>(
    stream: &mut S,
    member: MemberId,
    proof: [u8; 32],
) -> Result<(), SyncFailure> {
    let mut out = Vec::with_capacity(HELLO_LEN);
    FullSyncEncoder::default().encode(&FullSyncFrame::Hello { member, proof }, &mut out);
    debug_assert_eq!(out.len(), HELLO_LEN);
    stream.write_all(&out).await.map_err(io_failure)?;
    stream.flush().await.map_err(io_failure)
}

enum ReadHello {
    Io(io::Error),
    Bad(SyncFailure),
}

fn has_tls_error(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|i| i.downcast_ref::<rustls::Error>().is_some())
}

/// Reads exactly one Hello frame (nothing after it: the stream is the caller's from there).
async fn read_hello<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<(MemberId, [u8; 32]), ReadHello> {
    let mut buf = [0u8; HELLO_LEN];
    stream.read_exact(&mut buf).await.map_err(ReadHello::Io)?;
    let mut decoder = FullSyncDecoder::default();
    decoder.push(&buf);
    let bad = |m: String| ReadHello::Bad(SyncFailure::Malformed(m));
    match decoder.next_frame() {
        Ok(Some(FullSyncFrame::Hello { member, proof })) => Ok((member, proof)),
        Ok(Some(_)) => Err(bad("the first frame is not a Hello".into())),
        Ok(None) => Err(bad("incomplete".into())),
        Err(e) => Err(bad(e.to_string())),
    }
}

/// The client's check of the other member's certificate: with a CA, the chain must lead to it
/// (names are not checked: members are reached by address and every certificate of the
/// cluster CA is a member); without one, any certificate (the proof authenticates). The
/// handshake signature is always verified, so the exporter value belongs to that key.
#[derive(Debug)]
struct MemberVerifier {
    ca: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for MemberVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = &self.ca else {
            return Ok(ServerCertVerified::assertion());
        };
        // webpki checks the chain first and the name last: a name mismatch means the chain is
        // good.
        match ca.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Every sync address of `m` (link 0 first).
fn sync_ips(m: &MemberConfig) -> impl Iterator<Item = std::net::IpAddr> + '_ {
    std::iter::once(m.sync_address.ip()).chain(m.extra_sync_addresses.iter().map(|a| a.ip()))
}

/// Sets `IP_FREEBIND` / `IPV6_FREEBIND` on `socket`, for a bind to `addr` before it is on an
/// interface.
fn freebind(socket: &TcpSocket, addr: SocketAddr) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (level, name) = if addr.is_ipv4() {
        (libc::SOL_IP, libc::IP_FREEBIND)
    } else {
        (libc::SOL_IPV6, libc::IPV6_FREEBIND)
    };
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and an int option of the given size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
