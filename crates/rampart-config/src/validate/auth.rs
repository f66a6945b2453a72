//! `auth = "psk" | "cert"` and the certificate material of a peer.

use super::*;

impl Validator<'_, '_> {
    /// `auth = "psk" | "cert"` and, for `cert`, the certificate material (paths relative to
    /// the configuration file), loaded here so that the engine never reads files.
    pub(super) fn auth(&mut self, sec: &Section<RawPeer>, path: &str) -> PeerAuth {
        let raw = &sec.value;
        let k = |key: &str| join(path, key);
        let cert = match &raw.auth {
            None => false,
            Some(v) => match v.get_ref().as_str() {
                "psk" => false,
                "cert" => true,
                other => {
                    self.error(
                        ErrorKind::InvalidValue,
                        span(v),
                        k("auth"),
                        format!("unknown value \"{other}\""),
                        "psk, cert".to_string(),
                    );
                    false
                }
            },
        };
        let cert_keys: [(&str, Option<Option<std::ops::Range<usize>>>); 5] = [
            ("certificate", raw.certificate.as_ref().map(span)),
            ("private_key", raw.private_key.as_ref().map(span)),
            ("ca_certificates", raw.ca_certificates.as_ref().map(span)),
            ("crl", raw.crl.as_ref().map(span)),
            ("rsa_signature", raw.rsa_signature.as_ref().map(span)),
        ];
        if !cert {
            for (key, sp) in cert_keys {
                if let Some(sp) = sp {
                    self.error(
                        ErrorKind::Conflict,
                        sp,
                        k(key),
                        format!("{key} is set but auth is not \"cert\""),
                        "auth = \"cert\" with certificate keys, or no certificate keys".to_string(),
                    );
                }
            }
            return PeerAuth::Psk;
        }
        for (key, v) in [("psk", &raw.psk), ("psk_file", &raw.psk_file)] {
            if let Some(v) = v {
                self.error(
                    ErrorKind::Conflict,
                    span(v),
                    k(key),
                    format!("{key} is set but auth = \"cert\""),
                    "no pre-shared key with certificate authentication".to_string(),
                );
            }
        }
        let rsa_pss = match &raw.rsa_signature {
            None => false,
            Some(v) => match v.get_ref().as_str() {
                "pkcs1" => false,
                "pss" => true,
                other => {
                    self.error(
                        ErrorKind::InvalidValue,
                        span(v),
                        k("rsa_signature"),
                        format!("unknown value \"{other}\""),
                        "pkcs1, pss".to_string(),
                    );
                    false
                }
            },
        };
        let mut missing = false;
        for (key, present) in [
            ("certificate", raw.certificate.is_some()),
            ("private_key", raw.private_key.is_some()),
            ("ca_certificates", raw.ca_certificates.is_some()),
        ] {
            if !present {
                missing = true;
                self.error(
                    ErrorKind::Missing,
                    sec.span.clone(),
                    k(key),
                    format!("auth = \"cert\" needs {key}"),
                    "certificate = \"file.crt\", private_key = \"file.key\", ca_certificates = [\"ca.crt\"]"
                        .to_string(),
                );
            }
        }
        if missing {
            return PeerAuth::Psk;
        }
        let (Some(c), Some(kf), Some(cas)) =
            (&raw.certificate, &raw.private_key, &raw.ca_certificates)
        else {
            return PeerAuth::Psk;
        };
        let base = self.base_dir.to_path_buf();
        let credentials =
            rampart_pki::Credentials::load(&base.join(c.get_ref()), &base.join(kf.get_ref()));
        let ca_paths: Vec<std::path::PathBuf> = cas
            .get_ref()
            .iter()
            .map(|p| base.join(p.get_ref()))
            .collect();
        let crl_path = raw.crl.as_ref().map(|p| base.join(p.get_ref()));
        if ca_paths.is_empty() {
            self.error(
                ErrorKind::Missing,
                span(cas),
                k("ca_certificates"),
                "no CA certificate file",
                "at least one CA certificate file".to_string(),
            );
            return PeerAuth::Psk;
        }
        let refs: Vec<&std::path::Path> = ca_paths.iter().map(|p| p.as_path()).collect();
        let trust = rampart_pki::TrustStore::load(&refs, crl_path.as_deref());
        match (credentials, trust) {
            (Ok(credentials), Ok(trust)) => PeerAuth::Cert(Box::new(rampart_pki::CertAuth {
                credentials,
                trust,
                rsa_pss,
                clock: rampart_pki::WallClock::system(),
            })),
            (creds, trust) => {
                if let Err(e) = creds {
                    self.error(
                        ErrorKind::Io,
                        span(c),
                        k("certificate"),
                        e.to_string(),
                        "a PEM certificate (then intermediates) and its PEM private key (ECDSA P-256/P-384 or RSA)".to_string(),
                    );
                }
                if let Err(e) = trust {
                    let sp = match (&e, &raw.crl) {
                        (rampart_pki::PkiError::File { path, .. }, Some(crl))
                            if crl_path
                                .as_ref()
                                .is_some_and(|p| p.display().to_string() == *path) =>
                        {
                            span(crl)
                        }
                        _ => span(cas),
                    };
                    self.error(
                        ErrorKind::Io,
                        sp,
                        k("ca_certificates"),
                        e.to_string(),
                        "PEM CA certificate files and an optional PEM or DER CRL file".to_string(),
                    );
                }
                PeerAuth::Psk
            }
        }
    }
}
