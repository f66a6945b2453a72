//! IKE_AUTH with X.509 certificates between two engines: ECDSA P-256/P-384, RSA PKCS#1 v1.5
//! and PSS, chains through an intermediate, DN/RFC 822 identities, and every rejection.

mod util;

use std::time::{Duration, Instant};

use rampart_ike::policy::{Identity, PeerAuth};
use rampart_ike::{DownReason, IkeEvent};
use rampart_pki::ca::{Algorithm, Ca, San, Validity};
use rampart_pki::{parse_dn, CertAuth, Credentials, PrivateKey, TrustStore, WallClock};
use rampart_wire::ike::{parse, Payload};
use util::*;

const NOW: u64 = 1_800_000_000;

fn year() -> Validity {
    Validity::days_from(NOW as i64, 365)
}

fn auth_for(ca: &Ca, leaf_chain: Vec<Vec<u8>>, key_pem: &str, pss: bool) -> PeerAuth {
    PeerAuth::Cert(Box::new(CertAuth {
        credentials: Credentials::new(
            leaf_chain,
            PrivateKey::from_pem(key_pem.as_bytes()).unwrap(),
        )
        .unwrap(),
        trust: TrustStore::new(vec![ca.cert.cert_der.clone()], vec![]).unwrap(),
        rsa_pss: pss,
        clock: WallClock {
            at: Instant::now(),
            unix: NOW,
        },
    }))
}

/// A and B with certificates from one root; `alg` for every key; B's through an intermediate
/// when `intermediate`.
fn cert_configs(alg: Algorithm, pss: bool, intermediate: bool) -> (SideConfig, SideConfig) {
    let root = Ca::new_root("Test Root", alg, year()).unwrap();
    let (mut a, mut b) = configs(false);
    let la = root
        .issue("gw-a", &[San::Ip(ip(A_IP))], alg, year())
        .unwrap();
    a.peers[0].auth = auth_for(&root, vec![la.cert_der], &la.key_pem, pss);
    let (chain, key) = if intermediate {
        let ica = root.intermediate("Test Sub", alg, year()).unwrap();
        let lb = ica
            .issue("gw-b", &[San::Ip(ip(B_IP))], alg, year())
            .unwrap();
        (vec![lb.cert_der, ica.cert.cert_der.clone()], lb.key_pem)
    } else {
        let lb = root
            .issue("gw-b", &[San::Ip(ip(B_IP))], alg, year())
            .unwrap();
        (vec![lb.cert_der], lb.key_pem)
    };
    b.peers[0].auth = auth_for(&root, chain, &key, pss);
    (a, b)
}

fn ike_ups(ev: &[IkeEvent]) -> usize {
    ev.iter()
        .filter(|e| matches!(e, IkeEvent::IkeSaUp { .. }))
        .count()
}

fn auth_failed(ev: &[IkeEvent]) -> bool {
    ev.iter().any(|e| {
        matches!(
            e,
            IkeEvent::IkeSaDown {
                reason: DownReason::AuthenticationFailed,
                ..
            }
        )
    })
}

fn establish(a: SideConfig, b: SideConfig) -> Pair {
    let mut p = Pair::new(a, b);
    p.initiate();
    p.run(Duration::from_secs(2));
    p
}

/// The payloads of the IKE_SA_INIT request or response put on the wire.
fn init_payloads(p: &Pair, response: bool) -> Vec<Payload> {
    let pk = p
        .sent
        .iter()
        .find(|x| x.exchange() == 34 && x.is_response() == response)
        .unwrap();
    let m = parse(&pk.msg).unwrap();
    m.payloads
}

#[test]
fn ecdsa_p256_p384_rsa_pkcs1_and_pss_come_up() {
    for (alg, pss) in [
        (Algorithm::EcdsaP256, false),
        (Algorithm::EcdsaP384, false),
        (Algorithm::Rsa2048, false),
        (Algorithm::Rsa2048, true),
    ] {
        let (a, b) = cert_configs(alg, pss, false);
        let p = establish(a, b);
        assert_eq!(ike_ups(&p.events_a), 1, "{alg} pss={pss}: {:?}", p.events_a);
        assert_eq!(ike_ups(&p.events_b), 1, "{alg} pss={pss}");
        p.assert_one_matching_child();
    }
}

#[test]
fn intermediate_chain_is_sent_and_accepted() {
    let (a, b) = cert_configs(Algorithm::EcdsaP384, false, true);
    let p = establish(a, b);
    assert_eq!(ike_ups(&p.events_a), 1, "{:?}", p.events_a);
    p.assert_one_matching_child();
}

#[test]
fn init_carries_signature_hash_algorithms_and_certreq() {
    let (a, b) = cert_configs(Algorithm::EcdsaP256, false, false);
    let p = establish(a, b);
    let has_hash = |ps: &[Payload]| {
        ps.iter().any(
            |x| matches!(x, Payload::Notify(n) if n.kind == 16431 && n.data == [0, 2, 0, 3, 0, 4]),
        )
    };
    assert!(has_hash(&init_payloads(&p, false)));
    let resp = init_payloads(&p, true);
    assert!(has_hash(&resp));
    assert!(resp
        .iter()
        .any(|x| matches!(x, Payload::CertReq { encoding: 4, data } if data.len() == 20)));
}

#[test]
fn dn_and_email_identities() {
    let root = Ca::new_root("Root", Algorithm::EcdsaP256, year()).unwrap();
    let (mut a, mut b) = configs(false);
    let la = root
        .issue(
            "gw-a",
            &[San::Email("a@example.org".into())],
            Algorithm::EcdsaP256,
            year(),
        )
        .unwrap();
    let lb = root
        .issue(
            "gw-b",
            &[San::Dns("gw-b.example".into())],
            Algorithm::EcdsaP256,
            year(),
        )
        .unwrap();
    a.peers[0].auth = auth_for(&root, vec![la.cert_der], &la.key_pem, false);
    b.peers[0].auth = auth_for(&root, vec![lb.cert_der], &lb.key_pem, false);
    a.peers[0].local_id = Identity::Email("a@example.org".into());
    b.peers[0].remote_id = Identity::Email("A@example.org".into());
    b.peers[0].local_id = Identity::Dn(parse_dn("CN=gw-b").unwrap());
    a.peers[0].remote_id = Identity::Dn(parse_dn("cn=GW-B").unwrap());
    let p = establish(a, b);
    assert_eq!(ike_ups(&p.events_a), 1, "{:?}", p.events_a);
    assert_eq!(ike_ups(&p.events_b), 1);
}

/// Each rejection: the responder (B) refuses A, nobody comes up.
fn rejected(a: SideConfig, b: SideConfig) {
    let p = establish(a, b);
    assert_eq!(ike_ups(&p.events_a), 0, "{:?}", p.events_a);
    assert_eq!(ike_ups(&p.events_b), 0);
    assert!(auth_failed(&p.events_b), "{:?}", p.events_b);
    assert!(auth_failed(&p.events_a), "{:?}", p.events_a);
}

#[test]
fn unknown_ca_is_rejected() {
    let (mut a, b) = cert_configs(Algorithm::EcdsaP256, false, false);
    let other = Ca::new_root("Other Root", Algorithm::EcdsaP256, year()).unwrap();
    let l = other
        .issue("gw-a", &[San::Ip(ip(A_IP))], Algorithm::EcdsaP256, year())
        .unwrap();
    let PeerAuth::Cert(c) = &a.peers[0].auth else {
        unreachable!()
    };
    let trust = c.trust.clone();
    a.peers[0].auth = PeerAuth::Cert(Box::new(CertAuth {
        credentials: Credentials::new(
            vec![l.cert_der],
            PrivateKey::from_pem(l.key_pem.as_bytes()).unwrap(),
        )
        .unwrap(),
        trust,
        rsa_pss: false,
        clock: WallClock {
            at: Instant::now(),
            unix: NOW,
        },
    }));
    rejected(a, b);
}

#[test]
fn expired_peer_certificate_is_rejected() {
    let (a, mut b) = cert_configs(Algorithm::EcdsaP256, false, false);
    // B validates two years later: A's one-year certificate has expired.
    if let PeerAuth::Cert(c) = &mut b.peers[0].auth {
        c.clock.unix = NOW + 2 * 365 * 86_400;
    }
    rejected(a, b);
}

#[test]
fn identity_mismatch_is_rejected_for_each_id_type() {
    let ids = [
        (
            Identity::Ip(ip("192.0.2.99")),
            Identity::Ip(ip("192.0.2.99")),
        ),
        (
            Identity::Fqdn("other.example".into()),
            Identity::Fqdn("other.example".into()),
        ),
        (
            Identity::Email("x@example.org".into()),
            Identity::Email("x@example.org".into()),
        ),
        (
            Identity::Dn(parse_dn("CN=someone-else").unwrap()),
            Identity::Dn(parse_dn("CN=someone-else").unwrap()),
        ),
    ];
    for (local, remote) in ids {
        let (mut a, mut b) = cert_configs(Algorithm::EcdsaP256, false, false);
        // A claims an identity its certificate does not carry; B expects exactly that claim.
        a.peers[0].local_id = local;
        b.peers[0].remote_id = remote;
        rejected(a, b);
    }
}

#[test]
fn psk_peer_against_cert_peer_fails() {
    let (a, mut b) = cert_configs(Algorithm::EcdsaP256, false, false);
    b.peers[0].auth = PeerAuth::Psk;
    let p = establish(a, b);
    assert_eq!(ike_ups(&p.events_a), 0);
    assert_eq!(ike_ups(&p.events_b), 0);
}
