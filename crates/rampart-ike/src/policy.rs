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

/// How we and the peer authenticate (both sides the same way).
#[derive(Debug, Clone)]
pub enum PeerAuth {
    /// Pre-shared key ([`PeerPolicy::psk`]).
    Psk,
    /// X.509 certificates, loaded and checked (the key belongs to the certificate).
    Cert(Box<rampart_pki::CertAuth>),
}

impl PeerAuth {
    /// Same method and, for certificates, the same certificate, key, CAs, CRLs and signature
    /// scheme (compared by their DER bytes; the wall-clock anchor does not count).
    pub fn same_material(&self, other: &PeerAuth) -> bool {
        match (self, other) {
            (PeerAuth::Psk, PeerAuth::Psk) => true,
            (PeerAuth::Cert(a), PeerAuth::Cert(b)) => a.same_material(b),
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
            .finish()
    }
}
