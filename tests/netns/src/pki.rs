//! Certificates for the netns tests, made by the real `rampart pki` commands, and the glue that
//! gives them to rampart (peer TOML lines) and to strongSwan (swanctl credential directories
//! and a `pubkey` connection).

use std::path::{Path, PathBuf};

use crate::netns::run;
use crate::strongswan::{Charon, CharonConfig};
use crate::wait::try_wait_until;

/// A `rampart pki` CA directory.
#[derive(Debug, Clone)]
pub struct Pki {
    pub dir: PathBuf,
}

/// Runs `rampart pki <args>`, panicking with its output on failure.
#[track_caller]
fn rampart_pki(args: &[&str]) -> String {
    let bin = crate::rampart::binary();
    let mut all = vec!["pki"];
    all.extend_from_slice(args);
    run(&bin.to_string_lossy(), &all).unwrap_or_else(|e| panic!("rampart pki: {e}"))
}

impl Pki {
    /// `rampart pki init-ca` in `dir` with key `algorithm` (`ecdsa-p256`, `rsa-3072`, ...).
    #[track_caller]
    pub fn init(dir: &Path, algorithm: &str) -> Pki {
        let d = dir.to_string_lossy().into_owned();
        rampart_pki(&[
            "init-ca",
            "--dir",
            &d,
            "--name",
            "Rampart Test CA",
            "--algorithm",
            algorithm,
        ]);
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    /// `rampart pki issue`: certificate `name` with `sans` (`ip:..,dns:..`).
    #[track_caller]
    pub fn issue(&self, name: &str, sans: &str, algorithm: &str, intermediate: bool) {
        let d = self.dir.to_string_lossy().into_owned();
        let mut args = vec![
            "issue",
            "--dir",
            &d,
            "--name",
            name,
            "--san",
            sans,
            "--algorithm",
            algorithm,
        ];
        if intermediate {
            args.push("--intermediate");
        }
        rampart_pki(&args);
        let list = rampart_pki(&["list", "--dir", &d]);
        assert!(list.contains(name), "rampart pki list shows {name}: {list}");
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join("certs").join(format!("{name}.crt"))
    }
    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join("private").join(format!("{name}.key"))
    }

    /// Lines for a rampart `[[peer]]` (put them in `GatewayToml::extra` with an empty `psk`):
    /// certificate authentication with `name`'s certificate.
    pub fn peer_lines(&self, name: &str) -> String {
        format!(
            "auth = \"cert\"\ncertificate = \"{}\"\nprivate_key = \"{}\"\nca_certificates = [\"{}\"]\n",
            self.cert(name).display(),
            self.key(name).display(),
            self.ca_cert().display()
        )
    }

    /// Gives a running charon `name`'s certificate (end entity in `swanctl/x509`, intermediate
    /// and root in `swanctl/x509ca`, key in `swanctl/private`), replaces its connection by the
    /// same one with `auth = pubkey` on both ends, and reloads everything.
    #[track_caller]
    pub fn charon_use_cert(&self, charon: &Charon, name: &str, extra_conn: &str) {
        let sw = charon.dir().join("swanctl");
        let chain = std::fs::read_to_string(self.cert(name)).expect("certificate file");
        let certs = split_pem(&chain);
        write(&sw.join("x509").join(format!("{name}.crt")), &certs[0]);
        for (i, c) in certs.iter().enumerate().skip(1) {
            write(&sw.join("x509ca").join(format!("{name}-im{i}.crt")), c);
        }
        let ca = std::fs::read_to_string(self.ca_cert()).expect("CA file");
        write(&sw.join("x509ca").join("rampart-ca.crt"), &ca);
        let key = std::fs::read_to_string(self.key(name)).expect("key file");
        write(&sw.join("private").join(format!("{name}.key")), &key);
        let conf = sw.join("swanctl.conf");
        write(
            &conf,
            &pubkey_swanctl_conf(charon.config(), &format!("{name}.crt"), extra_conn),
        );
        let file = conf.to_string_lossy().into_owned();
        let mut last = None;
        let loaded = try_wait_until(
            std::time::Duration::from_secs(10),
            "swanctl --load-all (certificates)",
            || match charon.swanctl(&["--load-all", "--file", &file]) {
                Ok(_) => true,
                Err(e) => {
                    last = Some(e);
                    false
                }
            },
        );
        if let Err(e) = loaded {
            panic!("{e}: {last:?}");
        }
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The PEM certificates of a bundle, each with its END line.
fn split_pem(text: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    text.split_inclusive(END)
        .filter(|c| c.contains("BEGIN CERTIFICATE"))
        .map(|c| format!("{}\n", c.trim()))
        .collect()
}

/// `cfg`'s connection with certificate (`pubkey`) authentication and our certificate `cert`
/// (a file name in `swanctl/x509`). `extra_conn` lines go into the connection section.
pub fn pubkey_swanctl_conf(cfg: &CharonConfig, cert: &str, extra_conn: &str) -> String {
    let certs = format!("certs = {cert}");
    let extra = format!("fragmentation = yes\n{extra_conn}");
    cfg.connections(&["auth = pubkey", &certs], &["auth = pubkey"], &extra)
}

#[cfg(test)]
mod tests {
    #[test]
    fn split_pem_keeps_each_certificate() {
        let two = "-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nBB\n-----END CERTIFICATE-----\n";
        let v = super::split_pem(two);
        assert_eq!(v.len(), 2);
        assert!(v[1].contains("BB") && v[1].ends_with("-----END CERTIFICATE-----\n"));
    }
}
