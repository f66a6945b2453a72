//! `auth = "cert"`: certificate files are loaded (paths relative to the configuration file),
//! every problem is reported with its key, and DN / RFC 822 identities parse.

use std::path::{Path, PathBuf};

use rampart_config::{Identity, PeerAuth};
use rampart_pki::ca;

/// A CA directory made by the `rampart pki` library functions, unique per test.
fn pki_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rampart-config-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    ca::init_ca(&dir, "Test CA", ca::Algorithm::EcdsaP256, 30).unwrap();
    ca::issue(
        &dir,
        "gw-a",
        &[
            "ip:192.0.2.1".parse().unwrap(),
            "email:a@example.org".parse().unwrap(),
        ],
        ca::Algorithm::EcdsaP256,
        true,
        30,
    )
    .unwrap();
    ca::issue(&dir, "other", &[], ca::Algorithm::EcdsaP256, false, 30).unwrap();
    dir
}

fn config(peer_extra: &str) -> String {
    format!(
        r#"
[gateway]
name = "gw-a"
[local]
domain = ["10.1.0.0/24"]
[[peer]]
name = "b"
local_address = "192.0.2.1"
remote_address = "192.0.2.2"
remote_domain = ["10.2.0.0/24"]
{peer_extra}
"#
    )
}

fn parse_in(dir: &Path, text: &str) -> Result<rampart_config::GatewayConfig, Vec<String>> {
    let file = dir.join("gw.toml");
    rampart_config::parse(text, file.to_str().unwrap())
        .map_err(|e| e.0.iter().map(|x| x.to_string()).collect())
}

#[test]
fn loads_certificate_material_relative_to_the_file() {
    let dir = pki_dir("loads");
    let text = config(
        r#"auth = "cert"
certificate = "certs/gw-a.crt"
private_key = "private/gw-a.key"
ca_certificates = ["ca.crt"]
local_id = "email:a@example.org"
remote_id = "dn:CN=gw-b, O=Example"
"#,
    );
    let c = parse_in(&dir, &text).unwrap();
    let p = &c.peers[0];
    let PeerAuth::Cert(auth) = &p.auth else {
        panic!("{:?}", p.auth)
    };
    assert_eq!(auth.credentials.chain.len(), 2, "leaf and intermediate");
    assert_eq!(auth.trust.cas().len(), 1);
    assert!(p.psk.is_empty());
    assert_eq!(p.local_id, Identity::Email("a@example.org".into()));
    assert_eq!(
        p.remote_id,
        Identity::Dn(rampart_pki::parse_dn("CN=gw-b,O=Example").unwrap())
    );
    // The CRL written by `rampart pki revoke` loads too.
    ca::revoke(&dir, "other", 30).unwrap();
    let with_crl = text.replace("auth = \"cert\"", "auth = \"cert\"\ncrl = \"crl.pem\"");
    parse_in(&dir, &with_crl).unwrap();
    let shown = format!("{c:?}");
    assert!(!shown.contains("BEGIN"), "no key material in Debug output");

    // Reloading the same files is the same material, though the clock anchor differs; another
    // certificate, or a CRL, is not.
    let again = parse_in(&dir, &text).unwrap();
    assert!(again.peers[0].auth.same_material(&p.auth));
    assert!(again.peers[0].sa_relevant_eq(p));
    let crl = parse_in(&dir, &with_crl).unwrap();
    assert!(!crl.peers[0].auth.same_material(&p.auth));
    ca::issue(&dir, "gw-a2", &[], ca::Algorithm::EcdsaP256, false, 30).unwrap();
    let other_cert = parse_in(
        &dir,
        &text
            .replace("certs/gw-a.crt", "certs/gw-a2.crt")
            .replace("private/gw-a.key", "private/gw-a2.key"),
    )
    .unwrap();
    assert!(!other_cert.peers[0].auth.same_material(&p.auth));
    assert!(!PeerAuth::Psk.same_material(&p.auth));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_certificate_problem_is_reported() {
    let dir = pki_dir("problems");
    // Missing keys.
    let e = parse_in(&dir, &config("auth = \"cert\"\n")).unwrap_err();
    for key in ["certificate", "private_key", "ca_certificates"] {
        assert!(
            e.iter().any(|l| l.contains(&format!("peer[0].{key}"))),
            "{e:?}"
        );
    }
    assert!(!e.iter().any(|l| l.contains("psk")), "{e:?}");
    // A key that is not the certificate's, and an unreadable CA file.
    let e = parse_in(
        &dir,
        &config(
            r#"auth = "cert"
certificate = "certs/gw-a.crt"
private_key = "private/other.key"
ca_certificates = ["nope.crt"]
"#,
        ),
    )
    .unwrap_err();
    assert!(
        e.iter()
            .any(|l| l.contains("peer[0].certificate") && l.contains("does not belong")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|l| l.contains("peer[0].ca_certificates") && l.contains("nope.crt")),
        "{e:?}"
    );
    // psk together with certificates, certificate keys without auth = "cert", bad values.
    let e = parse_in(
        &dir,
        &config(
            r#"auth = "cert"
psk = "0123456789abcdef0123"
certificate = "certs/gw-a.crt"
private_key = "private/gw-a.key"
ca_certificates = ["ca.crt"]
rsa_signature = "raw"
local_id = "dn:XX=1"
"#,
        ),
    )
    .unwrap_err();
    assert!(
        e.iter()
            .any(|l| l.contains("peer[0].psk") && l.contains("auth = \"cert\"")),
        "{e:?}"
    );
    assert!(
        e.iter().any(|l| l.contains("peer[0].rsa_signature")),
        "{e:?}"
    );
    assert!(e.iter().any(|l| l.contains("peer[0].local_id")), "{e:?}");
    let e = parse_in(
        &dir,
        &config(
            "psk = \"0123456789abcdef0123\"\ncertificate = \"certs/gw-a.crt\"\nauth = \"x509\"\n",
        ),
    )
    .unwrap_err();
    assert!(
        e.iter()
            .any(|l| l.contains("peer[0].auth") && l.contains("psk, cert")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|l| l.contains("peer[0].certificate") && l.contains("auth is not")),
        "{e:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
