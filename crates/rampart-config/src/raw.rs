//! The TOML file as written: every key optional and spanned, so that missing keys and bad values
//! are reported by validation (all of them, with positions) rather than by serde (first only).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use toml::Spanned;

pub(crate) type Str = Option<Spanned<String>>;
pub(crate) type Int = Option<Spanned<i64>>;
pub(crate) type StrList = Option<Spanned<Vec<Spanned<String>>>>;

/// The top-level tables of a gateway file.
pub(crate) const SECTIONS: &[&str] = &[
    "gateway",
    "tunnel",
    "local",
    "peer",
    "inspection",
    "object",
    "service",
    "rule",
    "nat",
    "entry_point_group",
    "cluster",
    "mep",
    "rim",
    "remote_access",
];

/// `[gateway]`
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGateway {
    pub name: Str,
    pub member_id: Int,
    pub status_socket: Str,
    pub ike_port: Int,
    pub nat_t_port: Int,
    pub retransmit_timeout: Option<Spanned<Scalar>>,
    pub retransmit_tries: Int,
    pub nat_keepalive: Option<Spanned<Scalar>>,
    pub fragmentation: Option<Spanned<bool>>,
    pub fragment_size: Int,
    pub cookie_threshold: Int,
    pub half_open_per_source: Int,
}

/// `[tunnel]`
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTunnel {
    pub device: Str,
    pub mtu: Int,
    pub offload: Option<Spanned<bool>>,
    pub crypto_threads: Int,
}

/// `[local]`
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLocal {
    pub domain: StrList,
}

/// `[[entry_point_group]]`
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEntryPointGroup {
    pub name: Str,
    pub peers: StrList,
    pub method: Str,
    pub tie_break: Str,
    pub domain: StrList,
    pub tracking: Option<Spanned<bool>>,
    pub preconnect: Option<Spanned<bool>>,
    #[allow(dead_code)] // read by `document::read` as [[entry_point_group.rule]] tables
    pub rule: Option<de::IgnoredAny>,
}

/// `[[entry_point_group.rule]]`: a priority-list rule.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMepRule {
    pub satellites: StrList,
    pub primary: StrList,
    pub secondary: StrList,
    pub tertiary: StrList,
}

/// `[mep]`
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMep {
    pub probe_port: Int,
    pub probe_interval: Option<Spanned<Scalar>>,
    pub probe_timeout: Option<Spanned<Scalar>>,
    pub probe_misses: Int,
    pub implicit: Str,
    pub tracking: Option<Spanned<bool>>,
    pub respond: Option<Spanned<bool>>,
    pub sticky_capacity: Int,
    pub sticky_idle: Option<Spanned<Scalar>>,
}

/// `[rim]`
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRim {
    pub table: Int,
    pub protocol: Int,
    pub metric: Int,
    pub peers: StrList,
}

/// `[cluster]` (its `[[cluster.member]]` and `[[cluster.vip]]` tables are read on their own;
/// the two fields here only put them in the list of allowed keys).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    pub name: Str,
    pub member_id: Int,
    pub mode: Str,
    pub priority: Int,
    pub primary: Int,
    pub switch_back: Option<Spanned<bool>>,
    pub heartbeat_interval: Option<Spanned<Scalar>>,
    pub dead_after: Int,
    pub monitor: StrList,
    pub secret: Str,
    pub secret_file: Str,
    pub tls_ca: Str,
    pub tls_cert: Str,
    pub tls_key: Str,
    pub retransmit_queue: Int,
    pub takeover_margin: Int,
    pub esp_sync_interval: Option<Spanned<Scalar>>,
    pub sync_link_hold_down: Option<Spanned<Scalar>>,
    pub distribution: Str,
    pub flush_ack: Option<Spanned<bool>>,
    pub hold_timeout: Option<Spanned<Scalar>>,
    pub max_holds: Int,
    pub hold_timeout_action: Str,
    pub update_timeout: Option<Spanned<Scalar>>,
    pub enhanced_handshake: Option<Spanned<bool>>,
    pub announce_table: Int,
    #[allow(dead_code)] // read by `document::read` as [[cluster.member]] tables
    pub member: Option<de::IgnoredAny>,
    #[allow(dead_code)] // read by `document::read` as [[cluster.vip]] tables
    pub vip: Option<de::IgnoredAny>,
}

/// `[[cluster.member]]`
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClusterMember {
    pub id: Int,
    pub address: Str,
    pub extra_addresses: StrList,
    pub port: Int,
    pub priority: Int,
}

/// `[[cluster.vip]]`
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClusterVip {
    pub interface: Str,
    pub address: Str,
}

/// `[[peer]]`
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPeer {
    pub name: Str,
    pub local_address: Str,
    pub remote_address: Str,
    pub local_id: Str,
    pub remote_id: Str,
    pub psk: Str,
    pub psk_file: Str,
    pub remote_domain: StrList,
    pub ike_proposals: StrList,
    pub esp_proposals: StrList,
    pub esn: Option<Spanned<bool>>,
    pub start_action: Str,
    pub ike_lifetime: Option<Spanned<Scalar>>,
    pub child_lifetime: Option<Spanned<Scalar>>,
    pub child_lifetime_bytes: Option<Spanned<Scalar>>,
    pub liveness_interval: Option<Spanned<Scalar>>,
    pub mobike: Option<Spanned<bool>>,
    pub encapsulation: Str,
    pub replay_window: Int,
    pub auth: Str,
    pub certificate: Str,
    pub private_key: Str,
    pub ca_certificates: StrList,
    pub crl: Str,
    pub rsa_signature: Str,
    pub probe: Str,
    pub probe_key: Str,
    pub backup_of: Str,
}

/// `[remote_access]`: the template peer's keys (a subset of `[[peer]]`: no remote address,
/// remote domain, start action or MEP keys) and the Office Mode keys. Its `[remote_access.tcp]`
/// and `[remote_access.visitor]` tables are read on their own.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRemoteAccess {
    pub name: Str,
    pub local_address: Str,
    pub local_id: Str,
    pub remote_id: Str,
    pub auth: Str,
    pub psk: Str,
    pub psk_file: Str,
    pub certificate: Str,
    pub private_key: Str,
    pub ca_certificates: StrList,
    pub crl: Str,
    pub rsa_signature: Str,
    pub client_auth: Str,
    pub users_file: Str,
    pub pool: Str,
    pub pool_exclude: StrList,
    pub lease_time: Option<Spanned<Scalar>>,
    pub dns: StrList,
    pub dns_domains: StrList,
    pub routes: StrList,
    pub entry_points: StrList,
    pub entry_point_selection: Str,
    pub ike_proposals: StrList,
    pub esp_proposals: StrList,
    pub esn: Option<Spanned<bool>>,
    pub ike_lifetime: Option<Spanned<Scalar>>,
    pub child_lifetime: Option<Spanned<Scalar>>,
    pub child_lifetime_bytes: Option<Spanned<Scalar>>,
    pub liveness_interval: Option<Spanned<Scalar>>,
    pub mobike: Option<Spanned<bool>>,
    pub replay_window: Int,
    pub mss_clamp: Option<Spanned<bool>>,
    pub stream_setup_timeout: Option<Spanned<Scalar>>,
    pub stream_idle_timeout: Option<Spanned<Scalar>>,
    #[allow(dead_code)] // read by `document::read` as [remote_access.tcp]
    pub tcp: Option<de::IgnoredAny>,
    #[allow(dead_code)] // read by `document::read` as [remote_access.visitor]
    pub visitor: Option<de::IgnoredAny>,
}

impl RawRemoteAccess {
    /// The keys it shares with `[[peer]]`, as a peer table (the rest stay unset).
    pub fn as_peer(&self) -> RawPeer {
        RawPeer {
            name: self.name.clone(),
            local_address: self.local_address.clone(),
            local_id: self.local_id.clone(),
            remote_id: self.remote_id.clone(),
            psk: self.psk.clone(),
            psk_file: self.psk_file.clone(),
            ike_proposals: self.ike_proposals.clone(),
            esp_proposals: self.esp_proposals.clone(),
            esn: self.esn.clone(),
            ike_lifetime: self.ike_lifetime.clone(),
            child_lifetime: self.child_lifetime.clone(),
            child_lifetime_bytes: self.child_lifetime_bytes.clone(),
            liveness_interval: self.liveness_interval.clone(),
            mobike: self.mobike.clone(),
            replay_window: self.replay_window.clone(),
            auth: self.auth.clone(),
            certificate: self.certificate.clone(),
            private_key: self.private_key.clone(),
            ca_certificates: self.ca_certificates.clone(),
            crl: self.crl.clone(),
            rsa_signature: self.rsa_signature.clone(),
            ..RawPeer::default()
        }
    }
}

/// `[remote_access.tcp]`
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRaTcp {
    pub enabled: Option<Spanned<bool>>,
    pub port: Int,
    pub bind: StrList,
}

/// `[remote_access.visitor]`
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRaVisitor {
    pub enabled: Option<Spanned<bool>>,
    pub port: Int,
    pub bind: StrList,
    pub certificate: Str,
    pub key: Str,
    pub https_backend: Str,
    pub server_names: StrList,
    pub alpn: Str,
}

/// A client profile (one flat table).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProfile {
    pub name: Str,
    pub gateway: Str,
    pub gateways: StrList,
    pub selection: Str,
    pub learn_gateways: Option<Spanned<bool>>,
    pub local_id: Str,
    pub remote_id: Str,
    pub auth: Str,
    pub psk: Str,
    pub psk_file: Str,
    pub certificate: Str,
    pub private_key: Str,
    pub ca_certificates: StrList,
    pub crl: Str,
    pub rsa_signature: Str,
    pub user: Str,
    pub password: Str,
    pub password_file: Str,
    pub transports: StrList,
    pub tcp_port: Int,
    pub visitor_port: Int,
    pub alpn: Str,
    pub tls_ca: Str,
    pub tls_server_name: Str,
    pub proxy: Str,
    pub proxy_pac: Str,
    pub proxy_user: Str,
    pub proxy_password: Str,
    pub ike_proposals: StrList,
    pub esp_proposals: StrList,
    pub small_first_proposal: Option<Spanned<bool>>,
    pub keepalive: Option<Spanned<Scalar>>,
    pub liveness: Option<Spanned<Scalar>>,
    pub mobike: Option<Spanned<bool>>,
    pub dns: Str,
    pub kill_switch: Option<Spanned<bool>>,
    pub captive_portal: Str,
    pub pac_file: Str,
    pub pac_listen: Str,
    pub device: Str,
    pub mtu: Int,
    pub pmtu_probe: Option<Spanned<bool>>,
    pub mss_clamp: Option<Spanned<bool>>,
    pub state_dir: Str,
}

/// `[inspection]`
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInspection {
    pub capacity: Int,
    pub tcp_handshake_timeout: Option<Spanned<Scalar>>,
    pub tcp_established_timeout: Option<Spanned<Scalar>>,
    pub tcp_closing_timeout: Option<Spanned<Scalar>>,
    pub tcp_closed_timeout: Option<Spanned<Scalar>>,
    pub udp_timeout: Option<Spanned<Scalar>>,
    pub icmp_timeout: Option<Spanned<Scalar>>,
}

/// `[[object]]`
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawObject {
    pub name: Str,
    pub networks: StrList,
}

/// `[[service]]`
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    pub name: Str,
    pub protocol: Str,
    pub ports: Option<Spanned<Vec<Spanned<Scalar>>>>,
    pub sync: Option<Spanned<bool>>,
    pub sync_after: Option<Spanned<Scalar>>,
}

/// `[[rule]]`
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub name: Str,
    pub source: StrList,
    pub destination: StrList,
    pub service: StrList,
    pub action: Str,
    pub log: Option<Spanned<bool>>,
}

/// `[[nat]]`
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNat {
    pub name: Str,
    #[serde(rename = "type")]
    pub kind: Str,
    pub source: StrList,
    pub address: Str,
    pub ports: Str,
    pub original: Str,
    pub translated: Str,
    pub pool: Str,
}

/// A value written either as a string (`"30s"`, `"100GB"`) or as a bare integer (seconds, bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scalar {
    Str(String),
    Int(i64),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string with a unit or an integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                i64::try_from(v)
                    .map(Scalar::Int)
                    .map_err(|_| E::custom("integer too large"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// The field names a derived `Deserialize` struct accepts, read from the derive itself so the
/// list of allowed keys in error messages can never drift from the struct.
pub(crate) fn struct_fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut probe = FieldProbe(&[]);
    let _ = T::deserialize(&mut probe);
    probe.0
}

struct FieldProbe(&'static [&'static str]);

impl<'de> Deserializer<'de> for &mut FieldProbe {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("field probe"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        self.0 = fields;
        Err(de::Error::custom("field probe"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_probe_reads_the_derive() {
        assert_eq!(
            struct_fields::<RawTunnel>(),
            &["device", "mtu", "offload", "crypto_threads"]
        );
        assert!(struct_fields::<RawPeer>().contains(&"replay_window"));
        assert_eq!(struct_fields::<RawPeer>().len(), 28);
    }
}
