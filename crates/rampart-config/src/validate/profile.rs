//! A client profile (one flat table, see [`crate::ClientProfile`]): keys reported without a
//! prefix (`profile.toml:3:11: gateway: ...`).

use std::net::SocketAddr;

use zeroize::Zeroizing;

use super::remote_access::{is_dns_name, DEFAULT_ALPN, DEFAULT_RA_TCP_PORT, DEFAULT_VISITOR_PORT};
use super::*;
use crate::client::{
    ClientProfile, ClientSelection, ClientTransport, DnsMode, EntryPoint, ProxySetting,
};
use crate::raw::RawProfile;

pub(crate) const DEFAULT_CLIENT_DEVICE: &str = "rampart-c0";
pub(crate) const DEFAULT_STATE_DIR: &str = "/run/rampart/client";
pub(crate) const DEFAULT_CLIENT_LIVENESS: Duration = Duration::from_secs(10);
const GATEWAY_FORM: &str = "a host name or address, optionally with :PORT (Visitor Mode port): \
                            vpn.example.com, 192.0.2.1:8443, [2001:db8::1]:443";
const URL_FORM: &str = "an http:// URL such as http://proxy.example.com:3128";

/// Validates a profile; `None` when any error was reported. `stem` is the file name's stem
/// (the default `name`).
pub(crate) fn validate_profile(
    sec: &Section<RawProfile>,
    base_dir: &Path,
    stem: &str,
    sink: &mut Sink<'_>,
) -> Option<ClientProfile> {
    let mut v = Validator {
        sink,
        base_dir: base_dir.to_path_buf(),
    };
    let profile = v.profile(sec, stem);
    v.sink.is_empty().then_some(profile).flatten()
}

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port`; a bare IPv6 address has no port.
pub(crate) fn split_gateway(s: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("\"{s}\": missing ]"))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("\"{host}\" in brackets is not an IPv6 address"));
        }
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None => return Err(format!("\"{s}\": expected :PORT after ]")),
            },
        }
    } else if s.parse::<IpAddr>().is_ok() {
        (s, None)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.parse::<IpAddr>().is_err() && !is_dns_name(host) {
        return Err(format!("invalid host \"{host}\""));
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(format!("invalid port \"{p}\" (1 to 65535)")),
        },
    };
    Ok((host.to_string(), port))
}

/// An `http://host[:port][/...]` URL (what the proxy and captive-portal keys take).
fn is_http_url(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    !host_port.is_empty() && split_gateway(host_port).is_ok()
}

impl Validator<'_, '_> {
    fn flag(v: &Option<Spanned<bool>>, default: bool) -> bool {
        v.as_ref().map_or(default, |b| *b.get_ref())
    }

    fn profile(&mut self, sec: &Section<RawProfile>, stem: &str) -> Option<ClientProfile> {
        let raw = &sec.value;
        let name = match &raw.name {
            Some(n) => self.name("name", n),
            None => {
                let ok = !stem.is_empty()
                    && stem.len() <= 64
                    && !stem.starts_with(['.', '-'])
                    && stem
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
                if !ok {
                    self.error(
                        ErrorKind::Missing,
                        sec.span.clone(),
                        "name",
                        format!("the file name \"{stem}\" is no valid profile name: set name"),
                        NAME_RULE.to_string(),
                    );
                }
                Some(stem.to_string())
            }
        };

        let (entry_points, selection) = self.profile_gateways(sec);
        let gateway = entry_points
            .as_ref()
            .and_then(|e| e.first())
            .map(|e| (e.host.clone(), e.port));
        let (host, gateway_port) = gateway.clone().unwrap_or_default();

        let eap = self.profile_eap(raw);
        let (auth, psk) = self.profile_auth(sec, eap.is_some());

        let local_id = match &raw.local_id {
            Some(v) => self.identity("local_id", v),
            None => match (&eap, &auth) {
                (Some((user, _)), _) if user.contains('@') => Some(Identity::Email(user.clone())),
                (Some((user, _)), _) => Some(Identity::Fqdn(user.clone())),
                (None, PeerAuth::Cert(c)) => Some(Identity::Dn(c.credentials.subject_der())),
                (None, PeerAuth::Psk | PeerAuth::Verify(_)) => {
                    self.missing(
                        sec,
                        "",
                        "local_id",
                        "with a pre-shared key and no user, our identity: a host name, \
                         email:... or an address",
                    );
                    None
                }
            },
        };
        let remote_id = match &raw.remote_id {
            Some(v) => self.identity("remote_id", v),
            None => Some(match host.parse::<IpAddr>() {
                Ok(a) => Identity::Ip(a),
                Err(_) => Identity::Fqdn(host.clone()),
            }),
        };

        let transports = self.profile_transports(raw);
        let (tcp_port, _) = self.port("tcp_port", &raw.tcp_port, DEFAULT_RA_TCP_PORT);
        let (mut visitor_port, visitor_span) =
            self.port("visitor_port", &raw.visitor_port, DEFAULT_VISITOR_PORT);
        let entry_points = entry_points.map(|list| {
            list.into_iter()
                .map(|e| EntryPoint {
                    visitor_port: e.port.unwrap_or(visitor_port),
                    ..e
                })
                .collect::<Vec<_>>()
        });
        if let Some(p) = gateway_port {
            if visitor_span.is_some() && p != visitor_port {
                self.error(
                    ErrorKind::Conflict,
                    visitor_span,
                    "visitor_port",
                    format!("visitor_port = {visitor_port} but gateway names port {p}"),
                    "the port in one place: gateway = \"host:PORT\" or visitor_port".to_string(),
                );
            }
            visitor_port = p;
        }
        let alpn = match &raw.alpn {
            None => DEFAULT_ALPN.to_string(),
            Some(v) => {
                let s = v.get_ref();
                if s.is_empty() || s.len() > 255 {
                    self.error(
                        ErrorKind::OutOfRange,
                        span(v),
                        "alpn",
                        format!("the ALPN id is {} bytes long", s.len()),
                        "1 to 255 bytes (default \"rampart-ike\")".to_string(),
                    );
                }
                s.clone()
            }
        };
        let tls_ca = raw.tls_ca.as_ref().map(|v| {
            let path = self.base_dir.join(v.get_ref());
            match std::fs::read_to_string(&path) {
                Ok(t) if t.contains("-----BEGIN CERTIFICATE-----") => {}
                Ok(_) => self.error(
                    ErrorKind::InvalidValue,
                    span(v),
                    "tls_ca",
                    format!("{} has no PEM certificate", path.display()),
                    "a PEM file of CA certificates".to_string(),
                ),
                Err(e) => self.error(
                    ErrorKind::Io,
                    span(v),
                    "tls_ca",
                    format!("cannot read {}: {e}", path.display()),
                    "a PEM file of CA certificates (relative paths start at the profile's \
                     directory)"
                        .to_string(),
                ),
            }
            path
        });
        let tls_server_name = raw.tls_server_name.as_ref().and_then(|v| {
            let s = v.get_ref().trim();
            if is_dns_name(s) && !s.ends_with('.') {
                Some(s.to_string())
            } else {
                self.error(
                    ErrorKind::InvalidValue,
                    span(v),
                    "tls_server_name",
                    format!("invalid server name \"{s}\""),
                    "a DNS name such as vpn.example.com".to_string(),
                );
                None
            }
        });
        let proxy = self.profile_proxy(raw);

        let ike_proposals: Vec<IkeProposal> = self
            .proposal_list(
                "ike_proposals",
                &raw.ike_proposals,
                DEFAULT_IKE_PROPOSALS,
                IKE_FORM,
                parse_ike,
            )
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        let esp = self.proposal_list(
            "esp_proposals",
            &raw.esp_proposals,
            DEFAULT_ESP_PROPOSALS,
            ESP_FORM,
            parse_esp,
        );
        let esn_peer = RawPeer::default();
        let esn = self.esn("", &esn_peer, &esp);
        let esp_proposals = esp.into_iter().map(|((p, _), _)| p).collect();
        let small_first_proposal = Self::flag(&raw.small_first_proposal, true);
        let mobike = Self::flag(&raw.mobike, true);
        let learn_gateways = Self::flag(&raw.learn_gateways, true);
        let keepalive = raw
            .keepalive
            .as_ref()
            .and_then(|v| self.duration("keepalive", v, NAT_KEEPALIVE_RANGE, false))
            .unwrap_or(DEFAULT_NAT_KEEPALIVE);
        let liveness = raw
            .liveness
            .as_ref()
            .and_then(|v| self.duration("liveness", v, LIVENESS_RANGE, false))
            .unwrap_or(DEFAULT_CLIENT_LIVENESS);
        let dns = raw
            .dns
            .as_ref()
            .and_then(|v| {
                self.keyword(
                    "dns",
                    v,
                    &[
                        ("auto", DnsMode::Auto),
                        ("resolved", DnsMode::Resolved),
                        ("resolv-conf", DnsMode::ResolvConf),
                        ("off", DnsMode::Off),
                    ],
                )
            })
            .unwrap_or(DnsMode::Auto);
        let kill_switch = Self::flag(&raw.kill_switch, false);
        let captive_portal = raw.captive_portal.as_ref().and_then(|v| {
            let s = v.get_ref().trim();
            if s == "off" {
                None
            } else if is_http_url(s) {
                Some(s.to_string())
            } else {
                self.error(
                    ErrorKind::InvalidValue,
                    span(v),
                    "captive_portal",
                    format!("invalid probe URL \"{s}\""),
                    "a plain http:// URL that answers 204 (no https: a portal cannot \
                     intercept it), or \"off\""
                        .to_string(),
                );
                None
            }
        });
        let pac_file = raw
            .pac_file
            .as_ref()
            .map(|v| self.base_dir.join(v.get_ref()));
        let pac_listen = raw.pac_listen.as_ref().and_then(|v| {
            let s = v.get_ref().trim();
            match s.parse::<SocketAddr>() {
                Ok(a) if a.ip().is_loopback() => Some(a),
                _ => {
                    self.error(
                        ErrorKind::InvalidValue,
                        span(v),
                        "pac_listen",
                        format!("invalid PAC listen address \"{s}\""),
                        "a loopback ADDRESS:PORT such as 127.0.0.1:8089".to_string(),
                    );
                    None
                }
            }
        });
        if let (Some(v), None) = (&raw.pac_listen, &raw.pac_file) {
            self.error(
                ErrorKind::Conflict,
                span(v),
                "pac_listen",
                "pac_listen is set but pac_file is not",
                "pac_file = \"path\" (the file served) with pac_listen".to_string(),
            );
        }
        let device = self.device_name("device", &raw.device, DEFAULT_CLIENT_DEVICE);
        let mtu = raw
            .mtu
            .as_ref()
            .and_then(|v| self.int("mtu", v, MTU_RANGE))
            .map_or(DEFAULT_MTU, |n| n as u16);
        let pmtu_probe = Self::flag(&raw.pmtu_probe, true);
        let mss_clamp = Self::flag(&raw.mss_clamp, true);
        let state_dir = match &raw.state_dir {
            Some(p) if p.get_ref().is_empty() => {
                self.error(
                    ErrorKind::InvalidValue,
                    span(p),
                    "state_dir",
                    "empty path",
                    "a directory".to_string(),
                );
                PathBuf::new()
            }
            Some(p) => self.base_dir.join(p.get_ref()),
            None => PathBuf::from(DEFAULT_STATE_DIR),
        };

        Some(ClientProfile {
            name: name?,
            gateway: gateway?.0,
            gateway_port,
            entry_points: entry_points?,
            selection,
            learn_gateways,
            local_id: local_id?,
            remote_id: remote_id?,
            auth,
            psk,
            eap,
            transports,
            tcp_port,
            visitor_port,
            alpn,
            tls_ca,
            tls_server_name,
            proxy,
            ike_proposals,
            esp_proposals,
            esn,
            small_first_proposal,
            keepalive,
            liveness,
            mobike,
            dns,
            kill_switch,
            captive_portal,
            pac_file,
            pac_listen,
            device,
            mtu,
            pmtu_probe,
            mss_clamp,
            state_dir,
        })
    }

    /// `user` with `password` or `password_file`: EAP-MSCHAPv2.
    fn profile_eap(&mut self, raw: &RawProfile) -> Option<(String, Zeroizing<String>)> {
        let password = match (&raw.password, &raw.password_file) {
            (Some(_), Some(f)) => {
                self.error(
                    ErrorKind::Conflict,
                    span(f),
                    "password_file",
                    "both password and password_file are set",
                    "exactly one of password and password_file".to_string(),
                );
                return None;
            }
            (Some(p), None) => Some((Zeroizing::new(p.get_ref().clone()), span(p), "password")),
            (None, Some(f)) => {
                let path = self.base_dir.join(f.get_ref());
                match std::fs::read_to_string(&path) {
                    Ok(t) => Some((
                        Zeroizing::new(t.trim_end_matches(['\r', '\n']).to_string()),
                        span(f),
                        "password_file",
                    )),
                    Err(e) => {
                        self.error(
                            ErrorKind::Io,
                            span(f),
                            "password_file",
                            format!("cannot read {}: {e}", path.display()),
                            "a readable file (relative paths start at the profile's directory)"
                                .to_string(),
                        );
                        return None;
                    }
                }
            }
            (None, None) => None,
        };
        match (&raw.user, password) {
            (None, None) => None,
            (None, Some((_, sp, key))) => {
                self.error(
                    ErrorKind::Missing,
                    sp,
                    "user",
                    format!("{key} is set but user is not"),
                    "user = \"name\" (the EAP-MSCHAPv2 user name) with the password".to_string(),
                );
                None
            }
            (Some(u), None) => {
                self.error(
                    ErrorKind::Missing,
                    span(u),
                    "password",
                    "user is set but no password",
                    "password = \"...\" or password_file = \"path\"".to_string(),
                );
                None
            }
            (Some(u), Some((pw, sp, key))) => {
                let user = u.get_ref().clone();
                if user.is_empty() || user.len() > rampart_eap::MAX_USER_NAME_LEN {
                    self.error(
                        ErrorKind::OutOfRange,
                        span(u),
                        "user",
                        format!("the user name is {} bytes long", user.len()),
                        format!("1 to {} bytes", rampart_eap::MAX_USER_NAME_LEN),
                    );
                    return None;
                }
                if pw.is_empty() || rampart_eap::nt_hash_for_password(&pw).is_err() {
                    self.error(
                        ErrorKind::OutOfRange,
                        sp,
                        key,
                        format!("the password is {} characters long", pw.chars().count()),
                        "1 to 256 characters (MS-CHAPv2)".to_string(),
                    );
                    return None;
                }
                Some((user, pw))
            }
        }
    }

    /// `auth` and its material. With EAP and `auth = "cert"`, `ca_certificates` alone (no
    /// certificate of our own) verifies the gateway.
    fn profile_auth(
        &mut self,
        sec: &Section<RawProfile>,
        eap: bool,
    ) -> (PeerAuth, Zeroizing<Vec<u8>>) {
        let raw = &sec.value;
        let as_peer = Section {
            value: RawPeer {
                auth: raw.auth.clone(),
                psk: raw.psk.clone(),
                psk_file: raw.psk_file.clone(),
                certificate: raw.certificate.clone(),
                private_key: raw.private_key.clone(),
                ca_certificates: raw.ca_certificates.clone(),
                crl: raw.crl.clone(),
                rsa_signature: raw.rsa_signature.clone(),
                ..RawPeer::default()
            },
            present: sec.present,
            span: sec.span.clone(),
            reported: sec.reported.clone(),
        };
        let wants_cert = raw.auth.as_ref().is_some_and(|v| v.get_ref() == "cert");
        if eap && wants_cert && raw.certificate.is_none() && raw.private_key.is_none() {
            return (self.verify_only_cert(raw), Zeroizing::new(Vec::new()));
        }
        let auth = self.auth(&as_peer, "");
        let psk = if matches!(auth, PeerAuth::Psk) && !wants_cert {
            self.psk(&as_peer, "")
        } else {
            Vec::new()
        };
        (auth, Zeroizing::new(psk))
    }

    /// Certificate authentication of the gateway only (an EAP client): the CAs (and CRL)
    /// that verify it, and a throw-away self-signed certificate as our credentials, which the
    /// engine never sends (with EAP our AUTH is computed from the MSK).
    fn verify_only_cert(&mut self, raw: &RawProfile) -> PeerAuth {
        let Some(cas) = &raw.ca_certificates else {
            self.error(
                ErrorKind::Missing,
                raw.auth.as_ref().and_then(span),
                "ca_certificates",
                "auth = \"cert\" needs ca_certificates (the CAs that verify the gateway)",
                "ca_certificates = [\"ca.crt\"]".to_string(),
            );
            return PeerAuth::Psk;
        };
        let paths: Vec<PathBuf> = cas
            .get_ref()
            .iter()
            .map(|p| self.base_dir.join(p.get_ref()))
            .collect();
        if paths.is_empty() {
            self.error(
                ErrorKind::Missing,
                span(cas),
                "ca_certificates",
                "no CA certificate file",
                "at least one CA certificate file".to_string(),
            );
            return PeerAuth::Psk;
        }
        let rsa_pss = raw.rsa_signature.as_ref().is_some_and(|v| {
            let s = v.get_ref();
            if s != "pkcs1" && s != "pss" {
                self.error(
                    ErrorKind::InvalidValue,
                    span(v),
                    "rsa_signature",
                    format!("unknown value \"{s}\""),
                    "pkcs1, pss".to_string(),
                );
            }
            s == "pss"
        });
        let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
        let crl = raw.crl.as_ref().map(|p| self.base_dir.join(p.get_ref()));
        let trust = match rampart_pki::TrustStore::load(&refs, crl.as_deref()) {
            Ok(t) => t,
            Err(e) => {
                self.error(
                    ErrorKind::Io,
                    span(cas),
                    "ca_certificates",
                    e.to_string(),
                    "PEM CA certificate files and an optional PEM or DER CRL file".to_string(),
                );
                return PeerAuth::Psk;
            }
        };
        match throwaway_credentials() {
            Ok(credentials) => PeerAuth::Cert(Box::new(rampart_pki::CertAuth {
                credentials,
                trust,
                rsa_pss,
                clock: rampart_pki::WallClock::system(),
            })),
            Err(e) => {
                self.error(
                    ErrorKind::Io,
                    None,
                    "auth",
                    format!("cannot make a key: {e}"),
                    None,
                );
                PeerAuth::Psk
            }
        }
    }

    /// `gateway = "..."` or `gateways = [...]` (Multiple Entry Points; exactly one of them),
    /// and `selection` (only with `gateways`). `None` when the gateways are missing or invalid
    /// (reported).
    fn profile_gateways(
        &mut self,
        sec: &Section<RawProfile>,
    ) -> (Option<Vec<EntryPoint>>, ClientSelection) {
        let raw = &sec.value;
        let selection = match &raw.selection {
            None => ClientSelection::FirstToRespond,
            Some(v) => {
                if raw.gateways.is_none() {
                    self.error(
                        ErrorKind::Conflict,
                        span(v),
                        "selection",
                        "selection without gateways",
                        "selection chooses among gateways = [...]; with one gateway leave it out"
                            .to_string(),
                    );
                }
                self.keyword(
                    "selection",
                    v,
                    &[
                        ("first-to-respond", ClientSelection::FirstToRespond),
                        ("primary-backup", ClientSelection::PrimaryBackup),
                    ],
                )
                .unwrap_or_default()
            }
        };
        let one = |v: &mut Self, key: &str, g: &Spanned<String>| match split_gateway(
            g.get_ref().trim(),
        ) {
            // The Visitor Mode port is filled in once `visitor_port` is known.
            Ok((host, port)) => Some(EntryPoint {
                host,
                port,
                visitor_port: port.unwrap_or_default(),
            }),
            Err(msg) => {
                v.error(
                    ErrorKind::InvalidValue,
                    span(g),
                    key,
                    msg,
                    GATEWAY_FORM.to_string(),
                );
                None
            }
        };
        let list = match (&raw.gateway, &raw.gateways) {
            (None, None) => {
                self.missing(sec, "", "gateway", GATEWAY_FORM);
                return (None, selection);
            }
            (Some(_), Some(list)) => {
                self.error(
                    ErrorKind::Conflict,
                    span(list),
                    "gateways",
                    "both gateway and gateways",
                    "one gateway = \"...\", or several in gateways = [...]".to_string(),
                );
                return (None, selection);
            }
            (Some(g), None) => return (one(self, "gateway", g).map(|e| vec![e]), selection),
            (None, Some(list)) => list,
        };
        if list.get_ref().is_empty() {
            self.error(
                ErrorKind::OutOfRange,
                span(list),
                "gateways",
                "empty list",
                "one or more gateways".to_string(),
            );
            return (None, selection);
        }
        let mut out: Vec<EntryPoint> = Vec::new();
        let mut ok = true;
        for (i, g) in list.get_ref().iter().enumerate() {
            let key = format!("gateways[{i}]");
            match one(self, &key, g) {
                Some(e) if out.iter().any(|o| o.host == e.host && o.port == e.port) => {
                    self.error(
                        ErrorKind::Duplicate,
                        span(g),
                        key,
                        format!("\"{}\" is listed twice", g.get_ref()),
                        "each gateway once".to_string(),
                    );
                    ok = false;
                }
                Some(e) => out.push(e),
                None => ok = false,
            }
        }
        (ok.then_some(out), selection)
    }

    /// `transports`: a non-empty list of udp, tcp, tls without repeats.
    fn profile_transports(&mut self, raw: &RawProfile) -> Vec<ClientTransport> {
        let all = vec![
            ClientTransport::Udp,
            ClientTransport::Tcp,
            ClientTransport::Tls,
        ];
        let Some(list) = &raw.transports else {
            return all;
        };
        if list.get_ref().is_empty() {
            self.error(
                ErrorKind::OutOfRange,
                span(list),
                "transports",
                "empty list",
                "one or more of \"udp\", \"tcp\", \"tls\"".to_string(),
            );
            return all;
        }
        let mut out = Vec::new();
        for (i, item) in list.get_ref().iter().enumerate() {
            let key = format!("transports[{i}]");
            let Some(t) = self.keyword(
                &key,
                item,
                &[
                    ("udp", ClientTransport::Udp),
                    ("tcp", ClientTransport::Tcp),
                    ("tls", ClientTransport::Tls),
                ],
            ) else {
                continue;
            };
            if out.contains(&t) {
                self.error(
                    ErrorKind::Duplicate,
                    span(item),
                    key,
                    format!("\"{}\" is listed twice", item.get_ref()),
                    "each transport once".to_string(),
                );
            } else {
                out.push(t);
            }
        }
        out
    }

    /// `proxy` / `proxy_pac` and `proxy_user` / `proxy_password`.
    fn profile_proxy(&mut self, raw: &RawProfile) -> ProxySetting {
        let credentials = match (&raw.proxy_user, &raw.proxy_password) {
            (Some(u), Some(p)) => Some((u.get_ref().clone(), Zeroizing::new(p.get_ref().clone()))),
            (None, None) => None,
            (Some(u), None) => {
                self.error(
                    ErrorKind::Missing,
                    span(u),
                    "proxy_password",
                    "proxy_user is set but proxy_password is not",
                    "both proxy_user and proxy_password, or neither".to_string(),
                );
                None
            }
            (None, Some(p)) => {
                self.error(
                    ErrorKind::Missing,
                    span(p),
                    "proxy_user",
                    "proxy_password is set but proxy_user is not",
                    "both proxy_user and proxy_password, or neither".to_string(),
                );
                None
            }
        };
        let cred_span = raw.proxy_user.as_ref().and_then(span);
        let setting = match (&raw.proxy, &raw.proxy_pac) {
            (Some(_), Some(pac)) => {
                self.error(
                    ErrorKind::Conflict,
                    span(pac),
                    "proxy_pac",
                    "both proxy and proxy_pac are set",
                    "one of proxy and proxy_pac".to_string(),
                );
                return ProxySetting::Environment;
            }
            (None, Some(pac)) => {
                let s = pac.get_ref().trim();
                let location = if s.starts_with("http://") || s.starts_with("https://") {
                    if !is_http_url(&s.replacen("https://", "http://", 1)) {
                        self.error(
                            ErrorKind::InvalidValue,
                            span(pac),
                            "proxy_pac",
                            format!("invalid PAC URL \"{s}\""),
                            "an http(s):// URL or a file path".to_string(),
                        );
                    }
                    s.to_string()
                } else {
                    let path = self.base_dir.join(s);
                    if let Err(e) = std::fs::metadata(&path) {
                        self.error(
                            ErrorKind::Io,
                            span(pac),
                            "proxy_pac",
                            format!("cannot read {}: {e}", path.display()),
                            "an http(s):// URL or a readable file (relative paths start at \
                             the profile's directory)"
                                .to_string(),
                        );
                    }
                    path.display().to_string()
                };
                return ProxySetting::Pac {
                    location,
                    credentials,
                };
            }
            (Some(p), None) => match p.get_ref().trim() {
                "none" => ProxySetting::None,
                "environment" => ProxySetting::Environment,
                url if is_http_url(url) => {
                    return ProxySetting::Url {
                        url: url.to_string(),
                        credentials,
                    }
                }
                other => {
                    self.error(
                        ErrorKind::InvalidValue,
                        span(p),
                        "proxy",
                        format!("invalid proxy \"{other}\""),
                        format!("\"none\", \"environment\" (the default) or {URL_FORM}"),
                    );
                    ProxySetting::Environment
                }
            },
            (None, None) => ProxySetting::Environment,
        };
        if credentials.is_some() {
            self.error(
                ErrorKind::Conflict,
                cred_span,
                "proxy_user",
                "proxy_user is set but no proxy URL or PAC is",
                "proxy = \"http://...\" or proxy_pac with the credentials (the environment's \
                 proxy takes them in its URL)"
                    .to_string(),
            );
        }
        setting
    }
}

/// A self-signed P-256 certificate and its key, for [`Validator::verify_only_cert`].
fn throwaway_credentials() -> Result<rampart_pki::Credentials, rampart_pki::PkiError> {
    use rampart_pki::ca::{unix_now, Algorithm, Ca, Validity};
    let ca = Ca::new_root(
        "rampart EAP client (unused)",
        Algorithm::EcdsaP256,
        Validity::days_from(unix_now(), 3650),
    )?;
    let key = rampart_pki::PrivateKey::from_der(&ca.cert.key_der)?;
    rampart_pki::Credentials::new(vec![ca.cert.cert_der.clone()], key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_forms() {
        let ok = |s: &str| split_gateway(s).unwrap();
        assert_eq!(ok("vpn.example.com"), ("vpn.example.com".into(), None));
        assert_eq!(
            ok("vpn.example.com:8443"),
            ("vpn.example.com".into(), Some(8443))
        );
        assert_eq!(ok("192.0.2.1:443"), ("192.0.2.1".into(), Some(443)));
        assert_eq!(ok("2001:db8::1"), ("2001:db8::1".into(), None));
        assert_eq!(ok("[2001:db8::1]:8443"), ("2001:db8::1".into(), Some(8443)));
        assert_eq!(ok("[2001:db8::1]"), ("2001:db8::1".into(), None));
        for bad in [
            "",
            "host:0",
            "host:99999",
            "host:",
            "[vpn]:443",
            "bad host",
            "[::1]x",
        ] {
            assert!(split_gateway(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn http_urls() {
        assert!(is_http_url("http://proxy.example.com:3128"));
        assert!(is_http_url("http://user:pw@10.0.0.1:3128/"));
        assert!(is_http_url("http://[2001:db8::1]:3128"));
        assert!(!is_http_url("https://proxy.example.com"));
        assert!(!is_http_url("http://"));
        assert!(!is_http_url("proxy.example.com:3128"));
    }
}
