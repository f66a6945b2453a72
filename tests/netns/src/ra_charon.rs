//! strongSwan's charon as a stock remote-access client of a Rampart gateway: it asks for a
//! virtual IP (`vips = 0.0.0.0`), authenticates with EAP-MSCHAPv2 or with a certificate issued
//! by `rampart pki`, and verifies the gateway's certificate against the same CA. The `resolve`
//! plugin writes the DNS servers it receives into `resolv.conf` in the daemon's directory, so a
//! test can see them without touching the machine's resolver.

use std::fmt::Write as _;
use std::path::Path;

use crate::netns::Netns;
use crate::pki::Pki;
use crate::strongswan::{Charon, CharonConfig};

/// How the charon client authenticates itself.
#[derive(Debug, Clone)]
pub enum RaClientAuth {
    /// EAP-MSCHAPv2 with this user name and password (the IKE identity is the user name).
    EapMschapv2 { user: String, password: String },
    /// A certificate of the test CA (`name` in the [`Pki`]) with this identity (one of its SANs).
    Cert { name: String, id: String },
}

/// The settings of one charon remote-access client.
#[derive(Debug, Clone)]
pub struct RaCharon {
    /// The gateway's public address.
    pub gateway: String,
    /// The identity the gateway's certificate carries (a SAN), checked by charon.
    pub gateway_id: String,
    pub auth: RaClientAuth,
    /// What the client sends into the tunnel (`remote_ts`).
    pub remote_ts: String,
}

/// strongswan.conf settings beyond the site-to-site defaults: plugins for EAP and DNS.
fn charon_config(local: &str, gateway: &str, dir: &Path) -> CharonConfig {
    let mut cfg = CharonConfig::site_to_site(local, gateway, "dynamic", "0.0.0.0/0", "");
    cfg.conn = "ra".into();
    cfg.child = "ra".into();
    cfg.extra_plugins = "eap-identity eap-mschapv2 resolve".into();
    cfg.charon_extra = format!(
        "plugins {{\n  resolve {{\n    file = {}/resolv.conf\n  }}\n}}\n",
        dir.display()
    );
    cfg
}

impl RaCharon {
    /// The `swanctl.conf` of the client.
    pub fn swanctl_conf(&self, cfg: &CharonConfig) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "connections {{");
        let _ = writeln!(s, "  ra {{");
        let _ = writeln!(s, "    version = 2");
        let _ = writeln!(s, "    remote_addrs = {}", self.gateway);
        let _ = writeln!(s, "    vips = 0.0.0.0");
        let _ = writeln!(s, "    proposals = {}", cfg.ike_proposals);
        let _ = writeln!(s, "    encap = yes");
        let _ = writeln!(s, "    fragmentation = yes");
        let _ = writeln!(s, "    dpd_delay = 0s");
        let _ = writeln!(s, "    local {{");
        match &self.auth {
            RaClientAuth::EapMschapv2 { user, .. } => {
                let _ = writeln!(s, "      auth = eap-mschapv2");
                let _ = writeln!(s, "      eap_id = {user}");
                let _ = writeln!(s, "      id = {user}");
            }
            RaClientAuth::Cert { name, id } => {
                let _ = writeln!(s, "      auth = pubkey");
                let _ = writeln!(s, "      certs = {name}.crt");
                let _ = writeln!(s, "      id = {id}");
            }
        }
        let _ = writeln!(s, "    }}");
        let _ = writeln!(s, "    remote {{");
        let _ = writeln!(s, "      auth = pubkey");
        let _ = writeln!(s, "      id = {}", self.gateway_id);
        let _ = writeln!(s, "    }}");
        let _ = writeln!(s, "    children {{");
        let _ = writeln!(s, "      ra {{");
        let _ = writeln!(s, "        remote_ts = {}", self.remote_ts);
        let _ = writeln!(s, "        esp_proposals = {}", cfg.esp_proposals);
        let _ = writeln!(s, "        start_action = none");
        let _ = writeln!(s, "      }}");
        let _ = writeln!(s, "    }}");
        let _ = writeln!(s, "  }}");
        let _ = writeln!(s, "}}");
        if let RaClientAuth::EapMschapv2 { user, password } = &self.auth {
            let _ = writeln!(s, "secrets {{");
            let _ = writeln!(s, "  eap-user {{");
            let _ = writeln!(s, "    id = {user}");
            let _ = writeln!(
                s,
                "    secret = \"{}\"",
                password.replace('\\', "\\\\").replace('"', "\\\"")
            );
            let _ = writeln!(s, "  }}");
            let _ = writeln!(s, "}}");
        }
        s
    }

    /// Puts the CA (and the client's certificate and key, for [`RaClientAuth::Cert`]) into
    /// the swanctl credential directories of `dir`, then starts charon in `ns` with the
    /// connection loaded (not yet initiated: [`Charon::initiate`]).
    #[track_caller]
    pub fn start(&self, ns: &Netns, dir: &Path, local: &str, pki: &Pki) -> Charon {
        let sw = dir.join("swanctl");
        for sub in ["x509", "x509ca", "private"] {
            let p = sw.join(sub);
            std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
        }
        copy(&pki.ca_cert(), &sw.join("x509ca").join("rampart-ca.crt"));
        if let RaClientAuth::Cert { name, .. } = &self.auth {
            let chain = std::fs::read_to_string(pki.cert(name)).expect("client certificate");
            let end = "-----END CERTIFICATE-----";
            let first = chain
                .split_inclusive(end)
                .next()
                .unwrap_or_else(|| panic!("no certificate in {}", pki.cert(name).display()));
            write(&sw.join("x509").join(format!("{name}.crt")), first.trim());
            copy(
                &pki.key(name),
                &sw.join("private").join(format!("{name}.key")),
            );
        }
        let cfg = charon_config(local, &self.gateway, dir);
        let conf = self.swanctl_conf(&cfg);
        Charon::start_with(ns, dir, cfg, &conf)
    }
}

/// The IP addresses after `nameserver` in the resolv.conf charon's resolve plugin wrote.
pub fn nameservers(charon_dir: &Path) -> Vec<String> {
    std::fs::read_to_string(charon_dir.join("resolv.conf"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.split_whitespace().next().map(str::to_string))
        .collect()
}

#[track_caller]
fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", from.display(), to.display()));
}

#[track_caller]
fn write(path: &Path, text: &str) {
    std::fs::write(path, format!("{text}\n"))
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
