//! `rampart pki`: a CA directory made, listed, revoked, and used by `check-config`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn rampart(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .output()
        .expect("run rampart")
}

fn ok(args: &[&str]) -> String {
    let o = rampart(args);
    assert!(
        o.status.success(),
        "rampart {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rampart-pki-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn init_issue_list_revoke_and_use_in_a_config() {
    let dir = temp_dir("all");
    let d = s(&dir);
    ok(&["pki", "init-ca", "--dir", d, "--name", "Test CA"]);
    // A second init-ca never overwrites the CA.
    let again = rampart(&["pki", "init-ca", "--dir", d, "--name", "Test CA"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not overwriting"));
    ok(&[
        "pki",
        "issue",
        "--dir",
        d,
        "--name",
        "gw-a",
        "--san",
        "ip:192.0.2.1,dns:gw-a.example",
    ]);
    ok(&[
        "pki",
        "issue",
        "--dir",
        d,
        "--name",
        "alice",
        "--san",
        "email:alice@example.org",
        "--algorithm",
        "ecdsa-p384",
        "--intermediate",
    ]);
    let bad = rampart(&["pki", "issue", "--dir", d, "--name", "x", "--san", "mail:x"]);
    assert_eq!(bad.status.code(), Some(2), "usage error");
    let list = ok(&["pki", "list", "--dir", d]);
    let gw = list
        .lines()
        .find(|l| l.starts_with("gw-a"))
        .expect("gw-a listed");
    assert!(
        gw.contains("valid") && gw.contains("ip:192.0.2.1") && gw.contains("dns:gw-a.example"),
        "{list}"
    );
    assert!(list.contains("email:alice@example.org"), "{list}");
    let chain = std::fs::read_to_string(dir.join("certs/alice.crt")).unwrap();
    assert_eq!(
        chain.matches("BEGIN CERTIFICATE").count(),
        2,
        "leaf and intermediate"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("private/ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    ok(&["pki", "revoke", "--dir", d, "--name", "alice"]);
    let list = ok(&["pki", "list", "--dir", d]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("alice") && l.contains("revoked")),
        "{list}"
    );
    ok(&["pki", "crl", "--dir", d]);
    let crl = std::fs::read_to_string(dir.join("crl.pem")).unwrap();
    assert_eq!(
        crl.matches("BEGIN X509 CRL").count(),
        2,
        "root's and alice's intermediate's"
    );

    let config = r#"[gateway]
name = "gw-a"
[local]
domain = ["10.1.0.0/24"]
[[peer]]
name = "b"
local_address = "192.0.2.1"
remote_address = "192.0.2.2"
remote_domain = ["10.2.0.0/24"]
auth = "cert"
certificate = "certs/gw-a.crt"
private_key = "private/gw-a.key"
ca_certificates = ["ca.crt"]
crl = "crl.pem"
"#;
    let file = dir.join("gw.toml");
    std::fs::write(&file, config).unwrap();
    let out = ok(&["check-config", s(&file)]);
    assert!(out.contains("ok (1 peer)"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Accepts any chain-valid certificate for `usage` the way rustls does (webpki underneath):
/// `Err` names what is wrong.
fn verify_tls(
    chain_pem: &str,
    ca_pem: &str,
    usage: webpki::KeyUsage,
    name: &str,
) -> Result<(), String> {
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
    let der = |pem: &str| -> Vec<Vec<u8>> {
        pem::parse_many(pem)
            .unwrap()
            .into_iter()
            .map(|p| p.into_contents())
            .collect()
    };
    let chain = der(chain_pem);
    let ca = der(ca_pem);
    let ee_der = CertificateDer::from(chain[0].as_slice());
    let ee = webpki::EndEntityCert::try_from(&ee_der).map_err(|e| e.to_string())?;
    let ca_der = CertificateDer::from(ca[0].as_slice());
    let anchors = [webpki::anchor_from_trusted_cert(&ca_der).map_err(|e| e.to_string())?];
    let intermediates: Vec<CertificateDer<'_>> = chain[1..]
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let now = UnixTime::since_unix_epoch(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap(),
    );
    ee.verify_for_usage(
        &[
            webpki::aws_lc_rs::ECDSA_P256_SHA256,
            webpki::aws_lc_rs::ECDSA_P384_SHA384,
            webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256,
        ],
        &anchors,
        &intermediates,
        now,
        usage,
        None,
        None,
    )
    .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(name).map_err(|e| e.to_string())?;
    ee.verify_is_valid_for_subject_name(&name)
        .map_err(|e| e.to_string())
}

/// A cluster member's certificate serves both ends of the mutually authenticated full-sync
/// TLS session: the member that serves (serverAuth, named by its sync address) and the member
/// that pulls (clientAuth). `check-config` accepts it as `tls_cert`.
#[test]
fn cluster_member_certificates_for_mutual_tls() {
    let dir = temp_dir("cluster");
    let d = s(&dir);
    ok(&["pki", "init-ca", "--dir", d, "--name", "hq cluster CA"]);
    ok(&[
        "pki",
        "issue",
        "--dir",
        d,
        "--name",
        "member1",
        "--san",
        "ip:10.255.0.1",
    ]);
    ok(&[
        "pki",
        "issue",
        "--dir",
        d,
        "--name",
        "member2",
        "--san",
        "ip:10.255.0.2",
        "--intermediate",
    ]);
    let ca = std::fs::read_to_string(dir.join("ca.crt")).unwrap();
    for (member, ip) in [("member1", "10.255.0.1"), ("member2", "10.255.0.2")] {
        let chain = std::fs::read_to_string(dir.join(format!("certs/{member}.crt"))).unwrap();
        verify_tls(&chain, &ca, webpki::KeyUsage::server_auth(), ip)
            .unwrap_or_else(|e| panic!("{member} as the TLS server: {e}"));
        verify_tls(&chain, &ca, webpki::KeyUsage::client_auth(), ip)
            .unwrap_or_else(|e| panic!("{member} as the TLS client: {e}"));
        // Named by its own sync address only.
        assert!(verify_tls(&chain, &ca, webpki::KeyUsage::server_auth(), "10.255.0.9").is_err());
    }
    // A certificate from another CA is refused.
    let other = temp_dir("cluster-other");
    ok(&["pki", "init-ca", "--dir", s(&other), "--name", "other CA"]);
    let other_ca = std::fs::read_to_string(other.join("ca.crt")).unwrap();
    let chain = std::fs::read_to_string(dir.join("certs/member1.crt")).unwrap();
    assert!(verify_tls(
        &chain,
        &other_ca,
        webpki::KeyUsage::client_auth(),
        "10.255.0.1"
    )
    .is_err());

    let example = include_str!("../../../examples/cluster/cluster-a.toml")
        .replace(
            "# tls_ca = \"/etc/rampart/pki/ca.crt\"",
            "tls_ca = \"ca.crt\"",
        )
        .replace(
            "# tls_cert = \"/etc/rampart/pki/certs/cluster-a.crt\"",
            "tls_cert = \"certs/member1.crt\"",
        )
        .replace(
            "# tls_key = \"/etc/rampart/pki/private/cluster-a.key\"",
            "tls_key = \"private/member1.key\"",
        );
    assert!(example.contains("\ntls_key = \"private/member1.key\""));
    let file = dir.join("cluster-a.toml");
    std::fs::write(&file, example).unwrap();
    let out = ok(&["check-config", s(&file)]);
    assert!(out.contains(": ok"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&other);
}
