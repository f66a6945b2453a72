//! Chain validation, revocation, identities and signatures with certificates made by `ca::Ca`.

use rampart_pki::ca::{Algorithm, Ca, San, Validity};
use rampart_pki::{
    check_identity, parse_dn, verify_signature, Credentials, IkeId, PkiError, PrivateKey,
    SignScheme, TrustStore,
};

const NOW: i64 = 1_800_000_000;

fn year() -> Validity {
    Validity::days_from(NOW, 365)
}

fn sans() -> Vec<San> {
    vec![
        "ip:192.0.2.1".parse().unwrap(),
        "ip:2001:db8::1".parse().unwrap(),
        "dns:gw-a.example".parse().unwrap(),
        "email:ops@example.org".parse().unwrap(),
    ]
}

fn store(ca: &Ca, crls: Vec<Vec<u8>>) -> TrustStore {
    TrustStore::new(vec![ca.cert.cert_der.clone()], crls).unwrap()
}

fn crl_der(pem: &str) -> Vec<Vec<u8>> {
    pem::parse_many(pem)
        .unwrap()
        .into_iter()
        .map(|p| p.into_contents())
        .collect()
}

#[test]
fn good_chain_direct_and_through_an_intermediate() {
    for alg in [
        Algorithm::EcdsaP256,
        Algorithm::EcdsaP384,
        Algorithm::Rsa2048,
    ] {
        let root = Ca::new_root("Root", alg, year()).unwrap();
        let leaf = root.issue("gw-a", &sans(), alg, year()).unwrap();
        let info = store(&root, vec![])
            .verify(&[&leaf.cert_der], NOW as u64)
            .unwrap();
        assert_eq!(info.subject, "CN=gw-a");
        let ica = root.intermediate("Sub", alg, year()).unwrap();
        let leaf2 = ica.issue("gw-b", &sans(), alg, year()).unwrap();
        store(&root, vec![])
            .verify(&[&leaf2.cert_der, &ica.cert.cert_der], NOW as u64)
            .unwrap();
        // Without the intermediate there is no path.
        let e = store(&root, vec![])
            .verify(&[&leaf2.cert_der], NOW as u64)
            .unwrap_err();
        assert!(matches!(e, PkiError::UnknownCa { .. }), "{e}");
    }
}

#[test]
fn expired_and_not_yet_valid() {
    let root = Ca::new_root("Root", Algorithm::EcdsaP256, Validity::days_from(NOW, 3650)).unwrap();
    let leaf = root
        .issue(
            "gw-a",
            &sans(),
            Algorithm::EcdsaP256,
            Validity::days_from(NOW, 1),
        )
        .unwrap();
    let s = store(&root, vec![]);
    let e = s
        .verify(&[&leaf.cert_der], (NOW + 3 * 86_400) as u64)
        .unwrap_err();
    assert!(matches!(e, PkiError::Expired { .. }), "{e}");
    assert!(e.to_string().contains("expired"), "{e}");
    let e = s
        .verify(&[&leaf.cert_der], (NOW - 86_400) as u64)
        .unwrap_err();
    assert!(matches!(e, PkiError::NotYetValid { .. }), "{e}");
}

#[test]
fn unknown_ca() {
    let root = Ca::new_root("Root", Algorithm::EcdsaP256, year()).unwrap();
    let other = Ca::new_root("Other", Algorithm::EcdsaP256, year()).unwrap();
    let leaf = other
        .issue("gw-a", &sans(), Algorithm::EcdsaP256, year())
        .unwrap();
    let e = store(&root, vec![])
        .verify(&[&leaf.cert_der], NOW as u64)
        .unwrap_err();
    assert!(matches!(e, PkiError::UnknownCa { .. }), "{e}");
    assert!(e.to_string().contains("unknown CA"), "{e}");
    // A CA certificate with the same name but another key is no anchor either.
    let fake = Ca::new_root("Root", Algorithm::EcdsaP256, year()).unwrap();
    let leaf = fake
        .issue("gw-a", &sans(), Algorithm::EcdsaP256, year())
        .unwrap();
    assert!(store(&root, vec![])
        .verify(&[&leaf.cert_der], NOW as u64)
        .is_err());
}

#[test]
fn revoked_by_crl_of_root_and_of_intermediate() {
    let root = Ca::new_root("Root", Algorithm::EcdsaP256, year()).unwrap();
    let good = root
        .issue("good", &sans(), Algorithm::EcdsaP256, year())
        .unwrap();
    let bad = root
        .issue("bad", &sans(), Algorithm::EcdsaP256, year())
        .unwrap();
    let crl = crl_der(
        &root
            .crl(&[(bad.serial.clone(), NOW - 10)], NOW, 30)
            .unwrap(),
    );
    let s = store(&root, crl);
    s.verify(&[&good.cert_der], NOW as u64).unwrap();
    let e = s.verify(&[&bad.cert_der], NOW as u64).unwrap_err();
    assert!(matches!(e, PkiError::Revoked { .. }), "{e}");
    assert!(e.to_string().contains("revoked"));

    let ica = root
        .intermediate("Sub", Algorithm::EcdsaP256, year())
        .unwrap();
    let leaf = ica
        .issue("leaf", &sans(), Algorithm::EcdsaP256, year())
        .unwrap();
    let mut crls = crl_der(&root.crl(&[], NOW, 30).unwrap());
    crls.extend(crl_der(
        &ica.crl(&[(leaf.serial.clone(), NOW)], NOW, 30).unwrap(),
    ));
    let e = store(&root, crls)
        .verify(&[&leaf.cert_der, &ica.cert.cert_der], NOW as u64)
        .unwrap_err();
    assert!(matches!(e, PkiError::Revoked { .. }), "{e}");
    // A revoked intermediate takes its leaves with it.
    let crls = crl_der(
        &root
            .crl(&[(ica.cert.serial.clone(), NOW)], NOW, 30)
            .unwrap(),
    );
    let e = store(&root, crls)
        .verify(&[&leaf.cert_der, &ica.cert.cert_der], NOW as u64)
        .unwrap_err();
    assert!(matches!(e, PkiError::Revoked { .. }), "{e}");
}

#[test]
fn identities_match_and_mismatch_for_each_type() {
    let root = Ca::new_root("Root", Algorithm::EcdsaP256, year()).unwrap();
    let leaf = root
        .issue("gw-a", &sans(), Algorithm::EcdsaP256, year())
        .unwrap();
    let c = &leaf.cert_der;
    let ok = |id: IkeId<'_>| check_identity(c, id).unwrap();
    let bad = |id: IkeId<'_>| {
        let e = check_identity(c, id).unwrap_err();
        assert!(matches!(e, PkiError::IdentityMismatch { .. }), "{e}");
        assert!(e.to_string().contains("does not match"), "{e}");
    };
    ok(IkeId::Ip("192.0.2.1".parse().unwrap()));
    ok(IkeId::Ip("2001:db8::1".parse().unwrap()));
    bad(IkeId::Ip("192.0.2.2".parse().unwrap()));
    ok(IkeId::Fqdn("GW-A.example"));
    bad(IkeId::Fqdn("gw-b.example"));
    ok(IkeId::Email("OPS@example.org"));
    bad(IkeId::Email("root@example.org"));
    ok(IkeId::Dn(&parse_dn("CN=gw-a").unwrap()));
    bad(IkeId::Dn(&parse_dn("CN=gw-b").unwrap()));
    bad(IkeId::Dn(&parse_dn("O=x, CN=gw-a").unwrap()));
}

#[test]
fn sign_and_verify_every_scheme() {
    let root = Ca::new_root("Root", Algorithm::EcdsaP256, year()).unwrap();
    let msg = b"InitiatorSignedOctets";
    let cases = [
        (Algorithm::EcdsaP256, SignScheme::EcdsaSha256),
        (Algorithm::EcdsaP384, SignScheme::EcdsaSha384),
        (Algorithm::Rsa2048, SignScheme::RsaPkcs1Sha256),
        (Algorithm::Rsa2048, SignScheme::RsaPkcs1Sha512),
        (Algorithm::Rsa2048, SignScheme::RsaPssSha256),
        (Algorithm::Rsa2048, SignScheme::RsaPssSha384),
    ];
    for (alg, scheme) in cases {
        let leaf = root.issue("gw", &sans(), alg, year()).unwrap();
        let key = PrivateKey::from_pem(leaf.key_pem.as_bytes()).unwrap();
        let creds = Credentials::new(vec![leaf.cert_der.clone()], key.clone()).unwrap();
        let fixed_ok = matches!(alg, Algorithm::EcdsaP256 | Algorithm::EcdsaP384);
        for fixed in [false, true] {
            if fixed && !fixed_ok {
                continue;
            }
            let sig = creds.key.sign(scheme, fixed, msg).unwrap();
            verify_signature(&leaf.cert_der, scheme, fixed, msg, &sig).unwrap();
            let e = verify_signature(&leaf.cert_der, scheme, fixed, b"other", &sig).unwrap_err();
            assert!(matches!(e, PkiError::BadSignature(_)), "{e}");
        }
        // The key of another certificate is rejected.
        let other = root.issue("x", &sans(), alg, year()).unwrap();
        let other_key = PrivateKey::from_pem(other.key_pem.as_bytes()).unwrap();
        assert!(Credentials::new(vec![leaf.cert_der.clone()], other_key).is_err());
    }
}

#[test]
fn certreq_hashes_are_sha1_of_spki() {
    let a = Ca::new_root("A", Algorithm::EcdsaP256, year()).unwrap();
    let b = Ca::new_root("B", Algorithm::EcdsaP384, year()).unwrap();
    let s = TrustStore::new(
        vec![a.cert.cert_der.clone(), b.cert.cert_der.clone()],
        vec![],
    )
    .unwrap();
    assert_eq!(s.certreq_hashes().len(), 40);
}
