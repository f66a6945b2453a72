//! The Rampart remote-access gateway of [`crate::ra_topology`]: a configuration with no
//! site-to-site peer and a `[remote_access]` section (schema of docs/configuration.md), plus a
//! users file for EAP-MSCHAPv2 and the status accessors the tests need.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::pki::Pki;
use crate::ra_topology::{DNS, DNS_DOMAIN, GW_WAN, INTERNAL, POOL};
use crate::rampart::GatewayToml;

/// The gateway's identity (a SAN of its certificate).
pub const GW_ID: &str = "vpn.example";
/// The PSK of PSK-authenticated clients (load generator).
pub const RA_PSK: &str = "remote access netns test key, not secret";

/// How clients authenticate (`client_auth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuthToml {
    Psk,
    Cert,
    /// EAP-MSCHAPv2 against this users file.
    Eap(PathBuf),
}

/// `[remote_access]` and its transports.
#[derive(Debug, Clone)]
pub struct RemoteAccessToml {
    pub local_address: String,
    pub local_id: String,
    /// Gateway authentication: `Some(pki)` = certificate `vpn` of that CA; `None` = PSK.
    pub gateway_cert: Option<(PathBuf, PathBuf, PathBuf)>,
    pub client_auth: ClientAuthToml,
    pub pool: String,
    pub lease_time: Option<String>,
    pub dns: Vec<String>,
    pub dns_domains: Vec<String>,
    pub routes: Vec<String>,
    /// `[remote_access.tcp]` port (RFC 9329).
    pub tcp_port: Option<u16>,
    /// `[remote_access.visitor]`: port and the HTTPS backend for port sharing.
    pub visitor_port: Option<u16>,
    pub https_backend: Option<String>,
    /// Lines appended verbatim to `[remote_access]` (before the sub-tables).
    pub extra: String,
}

impl RemoteAccessToml {
    /// Split tunnel to [`INTERNAL`], pool [`POOL`], DNS and domain of the topology; the
    /// gateway authenticates with its certificate from `pki` (name `vpn`).
    pub fn new(pki: &Pki, client_auth: ClientAuthToml) -> RemoteAccessToml {
        RemoteAccessToml {
            local_address: GW_WAN.to_string(),
            local_id: GW_ID.into(),
            gateway_cert: Some((pki.cert("vpn"), pki.key("vpn"), pki.ca_cert())),
            client_auth,
            pool: POOL.into(),
            lease_time: None,
            dns: vec![DNS.to_string()],
            dns_domains: vec![DNS_DOMAIN.into()],
            routes: vec![INTERNAL.into()],
            tcp_port: None,
            visitor_port: None,
            https_backend: None,
            extra: String::new(),
        }
    }

    pub fn to_toml(&self) -> String {
        let q = |s: &str| Value::String(s.to_string()).to_string();
        let list = |v: &[String]| {
            let items: Vec<String> = v.iter().map(|i| q(i)).collect();
            format!("[{}]", items.join(", "))
        };
        let mut s = String::new();
        let _ = writeln!(s, "[remote_access]");
        let _ = writeln!(s, "local_address = {}", q(&self.local_address));
        let _ = writeln!(s, "local_id = {}", q(&self.local_id));
        match &self.gateway_cert {
            Some((cert, key, ca)) => {
                let _ = writeln!(s, "auth = \"cert\"");
                let _ = writeln!(s, "certificate = {}", q(&cert.to_string_lossy()));
                let _ = writeln!(s, "private_key = {}", q(&key.to_string_lossy()));
                let _ = writeln!(s, "ca_certificates = [{}]", q(&ca.to_string_lossy()));
            }
            None => {
                let _ = writeln!(s, "auth = \"psk\"");
            }
        }
        if self.gateway_cert.is_none() || self.client_auth == ClientAuthToml::Psk {
            let _ = writeln!(s, "psk = {}", q(RA_PSK));
        }
        match &self.client_auth {
            ClientAuthToml::Psk => {
                let _ = writeln!(s, "client_auth = \"psk\"");
            }
            ClientAuthToml::Cert => {
                let _ = writeln!(s, "client_auth = \"cert\"");
            }
            ClientAuthToml::Eap(users) => {
                let _ = writeln!(s, "client_auth = \"eap-mschapv2\"");
                let _ = writeln!(s, "users_file = {}", q(&users.to_string_lossy()));
            }
        }
        let _ = writeln!(s, "pool = {}", q(&self.pool));
        if let Some(t) = &self.lease_time {
            let _ = writeln!(s, "lease_time = {}", q(t));
        }
        let _ = writeln!(s, "dns = {}", list(&self.dns));
        let _ = writeln!(s, "dns_domains = {}", list(&self.dns_domains));
        let _ = writeln!(s, "routes = {}", list(&self.routes));
        let _ = writeln!(s, "ike_proposals = [\"aes256gcm16-prfsha256-x25519\"]");
        let _ = writeln!(s, "esp_proposals = [\"aes256gcm16\"]");
        for line in self.extra.lines() {
            let _ = writeln!(s, "{line}");
        }
        if let Some(port) = self.tcp_port {
            let _ = writeln!(s, "\n[remote_access.tcp]\nenabled = true\nport = {port}");
        }
        if let Some(port) = self.visitor_port {
            let _ = writeln!(
                s,
                "\n[remote_access.visitor]\nenabled = true\nport = {port}"
            );
            if let Some((cert, key, _)) = &self.gateway_cert {
                let _ = writeln!(s, "certificate = {}", q(&cert.to_string_lossy()));
                let _ = writeln!(s, "key = {}", q(&key.to_string_lossy()));
            }
            if let Some(backend) = &self.https_backend {
                let _ = writeln!(s, "https_backend = {}", q(backend));
            }
        }
        s
    }
}

/// A whole gateway file: `[gateway]`, `[tunnel]`, `[local]` (the internal network) and the
/// `[remote_access]` section; no `[[peer]]`.
pub fn gateway_toml(dir: &Path, ra: &RemoteAccessToml) -> GatewayToml {
    let placeholder =
        crate::rampart::PeerToml::new("unused", &GW_WAN.to_string(), "0.0.0.0", INTERNAL, "");
    let mut g = GatewayToml::new("ra-gw", dir, INTERNAL, placeholder);
    g.peers.clear();
    g.extra = ra.to_toml();
    g
}

/// Writes a users file (rampart_eap::Credentials TOML) with these users and passwords.
#[track_caller]
pub fn write_users_file(path: &Path, users: &[(&str, &str)]) {
    let mut text = String::new();
    for (user, password) in users {
        let hash = rampart_eap::nt_hash_for_password(password)
            .unwrap_or_else(|e| panic!("nt hash for {user}: {e:?}"));
        text.push_str(&rampart_eap::users_file_entry(user, &hash));
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Issues the gateway certificate `vpn` (SANs: [`GW_ID`] and its public address) in `pki`.
#[track_caller]
pub fn issue_gateway_cert(pki: &Pki) {
    pki.issue(
        "vpn",
        &format!("dns:{GW_ID},ip:{GW_WAN}"),
        "ecdsa-p256",
        false,
    );
}

/// `remote_access` of a status document: `(in_use, free, allocations, releases)` of the pool.
pub fn pool_counters(status: &Value) -> Option<(u64, u64, u64, u64)> {
    let pool = status.get("remote_access")?.get("pools")?.get(0)?;
    Some((
        pool.get("in_use")?.as_u64()?,
        pool.get("free")?.as_u64()?,
        pool.get("allocations")?.as_u64()?,
        pool.get("releases")?.as_u64()?,
    ))
}

/// `(client, address)` of every client in the status document's `remote_access.clients`.
pub fn ra_clients(status: &Value) -> Vec<(String, String)> {
    status
        .get("remote_access")
        .and_then(|ra| ra.get("clients"))
        .and_then(Value::as_array)
        .map(|clients| {
            clients
                .iter()
                .filter_map(|c| {
                    Some((
                        c.get("client")?.as_str()?.to_string(),
                        c.get("address")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}
