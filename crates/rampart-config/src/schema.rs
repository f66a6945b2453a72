//! The typed configuration. Field docs are the reference for `docs/configuration.md`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use rampart_crypto::{DhGroup, Encr, Integ, Prf};

/// The stateful-inspection policy types live with their engine; the configuration builds them.
pub use rampart_inspect::policy::{
    ConnTimeouts, InspectPolicy, NatRule, NetworkObject, Rule, RuleAction, Service, ServiceProtocol,
};

/// One gateway's whole configuration (one TOML file).
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    pub gateway: GatewaySection,
    pub tunnel: TunnelSection,
    pub local: LocalSection,
    pub peers: Vec<PeerConfig>,
    /// `[inspection]`, `[[object]]`, `[[service]]`, `[[rule]]`, `[[nat]]`: the stateful firewall.
    pub firewall: InspectPolicy,
}

/// `[gateway]`
#[derive(Debug, Clone, PartialEq)]
pub struct GatewaySection {
    pub name: String,
    /// Default `/run/rampart/<name>.sock`.
    pub status_socket: PathBuf,
    /// Default 500.
    pub ike_port: u16,
    /// Default 4500; 2746 accepted for compatibility; any port except `ike_port`.
    pub nat_t_port: u16,
    /// First IKE retransmission timeout; doubles on each try. Default 2s.
    pub retransmit_timeout: Duration,
    /// Retransmissions before a request (and so the peer) is given up. Default 5.
    pub retransmit_tries: u32,
    /// Interval of the RFC 3948 NAT keepalives sent by the NATed side while nothing else was
    /// sent to the peer. Default 20s; 1s..=10m.
    pub nat_keepalive: Duration,
    /// Advertise and use RFC 7383 IKE fragmentation. Default true.
    pub fragmentation: bool,
    /// Largest IP datagram of a fragmented IKE message, IP and UDP headers and the non-ESP
    /// marker included. Default 1280; 576..=65535 (raised to 1280 for IPv6 peers).
    pub fragment_size: u16,
    /// Half-open IKE SAs from which on a responder answers IKE_SA_INIT with a COOKIE first
    /// (RFC 7296 2.6). Default 100; 0 = always.
    pub cookie_threshold: u32,
    /// Most half-open IKE SAs per source IP address; more IKE_SA_INIT from it are dropped.
    /// Default 20; 1..=1000000.
    pub half_open_per_source: u32,
}

/// `[tunnel]`
#[derive(Debug, Clone, PartialEq)]
pub struct TunnelSection {
    /// Default `rampart0`; at most 15 bytes.
    pub device: String,
    /// Default 1400; 576..=9000.
    pub mtu: u16,
    /// Default true: open the device with segmentation offload (IFF_VNET_HDR, TSO/USO), so one
    /// read returns up to 64 KB of one TCP flow and decrypted packets are coalesced on write.
    pub offload: bool,
    /// Default 0; 0..=64. Threads besides the event loop that run the cipher calls of each
    /// batch (ESP encrypt/decrypt) in parallel; 0 keeps them on the event-loop thread. Pays off
    /// only with cores to spare (see bench/README.md).
    pub crypto_threads: u16,
}

/// `[local]`
#[derive(Debug, Clone, PartialEq)]
pub struct LocalSection {
    /// The VPN domain this gateway protects; at least one prefix.
    pub domain: Vec<IpNet>,
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

/// `auth`: how we and the peer authenticate (both sides the same way).
#[derive(Debug, Clone, PartialEq)]
pub enum PeerAuth {
    /// Pre-shared key (`psk` / `psk_file`).
    Psk,
    /// X.509 certificates: `certificate`, `private_key`, `ca_certificates`, optional `crl`,
    /// loaded and checked (the key belongs to the certificate) at validation time.
    Cert(Box<rampart_pki::CertAuth>),
}

/// `none | on-traffic | always`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAction {
    None,
    OnTraffic,
    Always,
}

/// `auto | force`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encapsulation {
    Auto,
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

/// One ESP proposal: `aes256gcm16`, `aes128-sha256`, `aes256gcm16-x25519` (PFS group), `...-esn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspProposal {
    pub encr: Encr,
    pub integ: Option<Integ>,
    /// Key exchange for PFS in CREATE_CHILD_SA; `None` means no PFS.
    pub dh: Option<DhGroup>,
}

/// `[[peer]]`. Its `Debug` output redacts the pre-shared key.
#[derive(Clone, PartialEq)]
pub struct PeerConfig {
    pub name: String,
    pub local_address: IpAddr,
    pub remote_address: IpAddr,
    /// Default: `local_address` as an IP identity.
    pub local_id: Identity,
    /// Default: `remote_address` as an IP identity.
    pub remote_id: Identity,
    /// From `psk` or `psk_file` (exactly one of them); at least 16 bytes.
    pub psk: Vec<u8>,
    pub remote_domain: Vec<IpNet>,
    /// Default `["aes256gcm16-prfsha256-x25519", "aes128gcm16-prfsha256-ecp256"]`.
    pub ike_proposals: Vec<IkeProposal>,
    /// Default `["aes256gcm16", "chacha20poly1305", "aes128-sha256"]`.
    pub esp_proposals: Vec<EspProposal>,
    /// Whether extended sequence numbers are offered/accepted (default false).
    pub esn: bool,
    /// Default `always`.
    pub start_action: StartAction,
    /// Default 4h.
    pub ike_lifetime: Duration,
    /// Default 1h.
    pub child_lifetime: Duration,
    /// Default none.
    pub child_lifetime_bytes: Option<u64>,
    /// Default 30s; 0 turns liveness checks off.
    pub liveness_interval: Duration,
    /// Default `auto`.
    pub encapsulation: Encapsulation,
    /// Default 1024; at least 1024, at most 65536... (0 is not allowed).
    pub replay_window: u32,
    /// Default `psk`; `cert` carries the loaded certificate material (`psk` is then empty).
    pub auth: PeerAuth,
}

impl std::fmt::Debug for PeerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConfig")
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

#[cfg(test)]
mod tests {
    #[test]
    fn debug_output_never_shows_the_psk() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/site-to-site/gw-a.toml"
        ))
        .unwrap();
        let config = crate::parse(&text, "gw-a.toml").unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("horse"), "{shown}");
        assert!(shown.contains("bytes redacted"));
    }
}
