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
