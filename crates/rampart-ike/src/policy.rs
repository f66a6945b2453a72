//! Engine-owned peer configuration: plain data the engine defines (the model is quinn-proto's
//! `config` module). The TOML schema in rampart-config builds these values; the engine never
//! reads a configuration file.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use rampart_crypto::{DhGroup, Encr, Integ, Prf};
use zeroize::Zeroizing;

/// Where a peer is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RemoteAddress {
    /// A fixed address: we can initiate to it, and IKE_SA_INIT from it selects this peer.
    Ip(IpAddr),
    /// A template (`remote_address = "any"`): responder only, selected by the initiator's
    /// identity (IDi) when no fixed-address peer matched; serves any number of IKE SAs from
    /// any source addresses.
    Any,
}

impl RemoteAddress {
    /// The fixed address, `None` for a template.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            RemoteAddress::Ip(ip) => Some(*ip),
            RemoteAddress::Any => None,
        }
    }
}

impl std::fmt::Display for RemoteAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteAddress::Ip(ip) => ip.fmt(f),
            RemoteAddress::Any => f.write_str("any"),
        }
    }
}

/// An IKE identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Ip(IpAddr),
    Fqdn(String),
    /// `email:user@example.org` (ID_RFC822_ADDR).
    Email(String),
    /// `dn:CN=gw-a, O=Example` (ID_DER_ASN1_DN): the DER encoding of the name.
    Dn(Vec<u8>),
}

/// The identity text that matches any peer identity (as in strongSwan): the default `remote_id`
/// of a remote-access template, whose clients are told apart by their certificate or EAP user.
pub const ANY_IDENTITY: &str = "%any";

impl Identity {
    /// `%any`: matches every identity the peer sends (never sent by us: a template only
    /// responds, and its IDr is our own `local_id`).
    pub fn is_any(&self) -> bool {
        matches!(self, Identity::Fqdn(s) if s == ANY_IDENTITY)
    }
}

/// How we and the peer authenticate (both sides the same way).
#[derive(Debug, Clone)]
pub enum PeerAuth {
    /// Pre-shared key ([`PeerPolicy::psk`]).
    Psk,
    /// X.509 certificates, loaded and checked (the key belongs to the certificate).
    Cert(Box<rampart_pki::CertAuth>),
    /// Only verifies the peer's certificate, holding none of its own: a remote-access client
    /// that proves itself with EAP (`RaClient::eap`) and checks the gateway's certificate
    /// against these CAs. Signing our own AUTH with it fails (the SA then fails).
    Verify(Box<CertVerify>),
}

/// CAs (and CRLs) to verify a peer's certificate with, without a certificate of our own.
#[derive(Debug, Clone)]
pub struct CertVerify {
    pub trust: rampart_pki::TrustStore,
    /// Maps the engine's `Instant`s to wall-clock time for validity and CRL checks.
    pub clock: rampart_pki::WallClock,
}

impl PeerAuth {
    /// Same method and, for certificates, the same certificate, key, CAs, CRLs and signature
    /// scheme (compared by their DER bytes; the wall-clock anchor does not count).
    pub fn same_material(&self, other: &PeerAuth) -> bool {
        match (self, other) {
            (PeerAuth::Psk, PeerAuth::Psk) => true,
            (PeerAuth::Cert(a), PeerAuth::Cert(b)) => a.same_material(b),
            (PeerAuth::Verify(a), PeerAuth::Verify(b)) => a.trust == b.trust,
            _ => false,
        }
    }
}

/// When we bring the peer up ourselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAction {
    /// Responder only.
    None,
    /// When traffic for the peer's remote domain arrives.
    OnTraffic,
    /// At start, and again after the peer was declared dead.
    Always,
}

/// UDP encapsulation of ESP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encapsulation {
    /// Only when NAT detection sees a NAT.
    Auto,
    /// Always (we pretend to be behind a NAT).
    Force,
    /// IKE and ESP travel in an RFC 9329 stream (TCP, TLS) the I/O shell holds to the peer's
    /// NAT-T port: like `Force`, and IKE_SA_INIT already goes between the NAT-T ports, with
    /// the non-ESP marker, because a stream carries nothing else (RFC 9329 section 3).
    Stream,
}

impl Encapsulation {
    /// ESP is UDP-encapsulated whatever NAT detection finds.
    pub fn forced(self) -> bool {
        matches!(self, Encapsulation::Force | Encapsulation::Stream)
    }
}

/// One IKE proposal: `aes256gcm16-prfsha256-x25519`, `aes128-sha256-prfsha256-ecp256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IkeProposal {
    pub encr: Encr,
    /// Present exactly when `encr` is not an AEAD.
    pub integ: Option<Integ>,
    pub prf: Prf,
    pub dh: DhGroup,
}

/// One ESP proposal: `aes256gcm16`, `aes128-sha256`, `aes256gcm16-x25519` (PFS group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspProposal {
    pub encr: Encr,
    pub integ: Option<Integ>,
    /// Key exchange for PFS in CREATE_CHILD_SA; `None` means no PFS.
    pub dh: Option<DhGroup>,
}

/// One peer of the engine. Its `Debug` output redacts the pre-shared key, and the key is
/// zeroized when the policy is dropped.
///
/// Invariant (checked by rampart-config, relied on by the engine): a template
/// ([`RemoteAddress::Any`]) has `start_action == StartAction::None`.
#[derive(Clone)]
pub struct PeerPolicy {
    /// Unique among the engine's peers; names the peer in logs, status and SA state.
    pub name: String,
    pub local_address: IpAddr,
    pub remote_address: RemoteAddress,
    pub local_id: Identity,
    pub remote_id: Identity,
    /// Empty with certificate authentication.
    pub psk: Zeroizing<Vec<u8>>,
    pub remote_domain: Vec<IpNet>,
    /// In order of preference; at least one.
    pub ike_proposals: Vec<IkeProposal>,
    /// In order of preference; at least one.
    pub esp_proposals: Vec<EspProposal>,
    /// Whether extended sequence numbers are offered/accepted.
    pub esn: bool,
    pub start_action: StartAction,
    pub ike_lifetime: Duration,
    pub child_lifetime: Duration,
    pub child_lifetime_bytes: Option<u64>,
    /// Zero turns liveness checks off.
    pub liveness_interval: Duration,
    pub encapsulation: Encapsulation,
    pub replay_window: u32,
    pub auth: PeerAuth,
    /// Remote access (configuration payload, Office Mode, EAP); `None` for site to site.
    pub remote_access: RemoteAccess,
    /// MOBIKE (RFC 4555): announce MOBIKE_SUPPORTED in IKE_AUTH and, when the peer does too,
    /// move the IKE SA with UPDATE_SA_ADDRESSES instead of rebuilding it. Never over a stream.
    pub mobike: bool,
}

impl PeerPolicy {
    /// Whether `other` can replace `self` without touching existing SAs: true when addresses,
    /// identities, authentication material, proposals, remote domain, encapsulation, ESN and
    /// replay window are equal. The name, start action, liveness interval and lifetimes do not
    /// count (they apply to the next timer or SA).
    pub fn sa_relevant_eq(&self, other: &PeerPolicy) -> bool {
        self.local_address == other.local_address
            && self.remote_address == other.remote_address
            && self.local_id == other.local_id
            && self.remote_id == other.remote_id
            && *self.psk == *other.psk
            && self.auth.same_material(&other.auth)
            && self.ike_proposals == other.ike_proposals
            && self.esp_proposals == other.esp_proposals
            && self.remote_domain == other.remote_domain
            && self.encapsulation == other.encapsulation
            && self.esn == other.esn
            && self.replay_window == other.replay_window
            && self.remote_access.same(&other.remote_access)
    }

    /// A template: no fixed remote address.
    pub fn is_template(&self) -> bool {
        self.remote_address == RemoteAddress::Any
    }
}

impl std::fmt::Debug for PeerPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerPolicy")
            .field("name", &self.name)
            .field("local_address", &self.local_address)
            .field("remote_address", &self.remote_address)
            .field("local_id", &self.local_id)
            .field("remote_id", &self.remote_id)
            .field("psk", &format_args!("<{} bytes redacted>", self.psk.len()))
            .field("remote_domain", &self.remote_domain)
            .field("ike_proposals", &self.ike_proposals)
            .field("esp_proposals", &self.esp_proposals)
            .field("esn", &self.esn)
            .field("start_action", &self.start_action)
            .field("ike_lifetime", &self.ike_lifetime)
            .field("child_lifetime", &self.child_lifetime)
            .field("child_lifetime_bytes", &self.child_lifetime_bytes)
            .field("liveness_interval", &self.liveness_interval)
            .field("encapsulation", &self.encapsulation)
            .field("replay_window", &self.replay_window)
            .field("auth", &self.auth)
            .field("remote_access", &self.remote_access)
            .field("mobike", &self.mobike)
            .finish()
    }
}

/// The remote-access role of a peer.
#[derive(Debug, Clone, Default)]
pub enum RemoteAccess {
    /// Site to site: no configuration payload, no EAP.
    #[default]
    None,
    /// Gateway side, on a template peer: every client that authenticates gets an Office Mode
    /// address from the engine's pool for this peer, DNS and routes in a CFG_REPLY, and a
    /// CHILD SA whose TSi is narrowed to that address.
    Gateway(std::sync::Arc<RaGateway>),
    /// Client side: asks for an address (CFG_REQUEST) and proposes TSi 0.0.0.0/0, which the
    /// gateway narrows to the address it assigned.
    Client(std::sync::Arc<RaClient>),
}

impl RemoteAccess {
    /// Both sides the same role with equal settings (an address pool change is SA-relevant).
    pub fn same(&self, other: &RemoteAccess) -> bool {
        match (self, other) {
            (RemoteAccess::None, RemoteAccess::None) => true,
            (RemoteAccess::Gateway(a), RemoteAccess::Gateway(b)) => a == b,
            (RemoteAccess::Client(a), RemoteAccess::Client(b)) => a == b,
            _ => false,
        }
    }
}

/// What a remote-access gateway hands its clients.
#[derive(Debug, Clone, PartialEq)]
pub struct RaGateway {
    /// The Office Mode pool: one address per client IKE SA, never two clients one address.
    pub pool: rampart_lease::PoolConfig,
    /// INTERNAL_IP4_DNS / INTERNAL_IP6_DNS.
    pub dns: Vec<IpAddr>,
    /// Split-DNS domains (RFC 8598 INTERNAL_DNS_DOMAIN), without a trailing dot.
    pub dns_domains: Vec<String>,
    /// Split tunnel: the subnets the client routes into the tunnel (INTERNAL_IP4_SUBNET and
    /// the narrowed TSr). Empty: full tunnel (TSr 0.0.0.0/0, no subnet attribute).
    pub routes: Vec<IpNet>,
    /// How clients authenticate.
    pub client_auth: ClientAuth,
    /// The cluster's entry points, handed to clients that ask (RAMPART_ENTRY_POINTS, a
    /// private-use configuration attribute); `None`: not configured, nothing is sent.
    pub entry_points: Option<rampart_wire::ike::EntryPointList>,
}

/// How remote-access clients prove who they are. The gateway always authenticates itself with
/// the peer's [`PeerAuth`] (certificate or PSK).
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// The same method as the gateway (the peer's [`PeerAuth`]): certificate or PSK.
    Peer,
    /// EAP-MSCHAPv2 inside IKE_AUTH (RFC 7296 2.16) against a users file (NT hashes).
    EapMschapv2(std::sync::Arc<rampart_eap::Credentials>),
}

/// Users files compare by content (hashes in constant time): reading an unchanged file again
/// on reload is no change.
impl PartialEq for ClientAuth {
    fn eq(&self, other: &ClientAuth) -> bool {
        match (self, other) {
            (ClientAuth::Peer, ClientAuth::Peer) => true,
            (ClientAuth::EapMschapv2(a), ClientAuth::EapMschapv2(b)) => a == b,
            _ => false,
        }
    }
}

/// A remote-access client's settings.
#[derive(Clone, PartialEq)]
pub struct RaClient {
    /// EAP-MSCHAPv2 user name and password; `None`: the client authenticates with the peer's
    /// [`PeerAuth`] (certificate or PSK).
    pub eap: Option<(String, Zeroizing<String>)>,
    /// The first IKE_SA_INIT offers only the first IKE proposal (a small packet); on
    /// NO_PROPOSAL_CHOSEN the client retries at once with every proposal.
    pub small_first_proposal: bool,
}

impl std::fmt::Debug for RaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaClient")
            .field("eap_user", &self.eap.as_ref().map(|(u, _)| u))
            .field("small_first_proposal", &self.small_first_proposal)
            .finish()
    }
}
