//! Certificate authentication with certificates from `rampart pki`: rampart <-> rampart (and
//! the log line of a rejected, revoked peer), rampart <-> strongSwan 5.9.8 in both directions
//! with ECDSA and RSA, and a chain too big for the 1280-byte path of the fragment-dropping hide
//! NAT, which comes up only with IKE fragmentation (RFC 7383).

use std::time::Duration;

use rampart_netns_tests::fragnat::FragNat;
use rampart_netns_tests::nat_topology::{GW1_PRIVATE, NAT_OUT_IF, NAT_PUBLIC};
use rampart_netns_tests::pki::Pki;
use rampart_netns_tests::rampart::{Gateway, GatewayToml, PeerToml};
use rampart_netns_tests::strongswan::{Charon, CharonConfig, CHARON};
use rampart_netns_tests::topology::{DOMAIN1, DOMAIN2, GW1_WAN, GW2_WAN, H1, H2};
use rampart_netns_tests::{ping, require_tools, skip_unless_root, wait_until, Netns, SiteToSite};

const UP: Duration = Duration::from_secs(25);

fn setup(test: &str, strongswan: bool) -> bool {
    if skip_unless_root(test) {
        return false;
    }
    require_tools(&["ip", "ping", "tcpdump", "nft"]);
    if strongswan {
        require_tools(&["swanctl", "unshare", CHARON]);
    }
    true
}

/// A rampart configuration for `pki`'s certificate `cert`.
fn cert_config(
    name: &str,
    dir: &std::path::Path,
    domain: &str,
    mut peer: PeerToml,
    pki: &Pki,
    cert: &str,
) -> GatewayToml {
    peer.psk = String::new();
    let mut c = GatewayToml::new(name, dir, domain, peer);
    c.extra = pki.peer_lines(cert);
    c
}

#[test]
fn rampart_certs_site_to_site_and_revocation() {
    if !setup("rampart certs", false) {
        return;
    }
    let topo = SiteToSite::new("rp-cert-s2s");
    let pki = Pki::init(&topo.daemon_dir("pki"), "ecdsa-p256");
    pki.issue(
        "gw-a",
        &format!("ip:{GW1_WAN},dns:gw-a.example"),
        "ecdsa-p256",
        false,
    );
    pki.issue("gw-b", &format!("ip:{GW2_WAN}"), "ecdsa-p384", true);

    let p1 = PeerToml::new(
        "site-b",
        &GW1_WAN.to_string(),
        &GW2_WAN.to_string(),
        DOMAIN2,
        "",
    );
    let mut p2 = PeerToml::new(
        "site-a",
        &GW2_WAN.to_string(),
        &GW1_WAN.to_string(),
        DOMAIN1,
        "",
    );
    p2.start_action = "none".into();
    let c1 = cert_config("gw-a", &topo.daemon_dir("gw1"), DOMAIN1, p1, &pki, "gw-a");
    let c2 = cert_config("gw-b", &topo.daemon_dir("gw2"), DOMAIN2, p2, &pki, "gw-b");
    {
        let mut g2 = Gateway::start(&topo.gw2, &topo.daemon_dir("gw2"), "gw2", &c2);
        let mut g1 = Gateway::start(&topo.gw1, &topo.daemon_dir("gw1"), "gw1", &c1);
        let s1 = g1.wait_tunnel(UP);
        let s2 = g2.wait_tunnel(UP);
        assert_eq!(s1.ike, s2.ike);
        ping(&topo.h1, &H2.to_string(), 3).unwrap();
        ping(&topo.h2, &H1.to_string(), 3).unwrap();
        assert!(
            g2.log().contains("peer certificate accepted"),
            "{}",
            g2.log()
        );
    }

    // gw-a's certificate is revoked and gw-b loads the CRL: gw-b refuses gw-a and says why.
    let d = pki.dir.to_string_lossy().into_owned();
    let bin = rampart_netns_tests::rampart::binary();
    rampart_netns_tests::netns::run(
        &bin.to_string_lossy(),
        &["pki", "revoke", "--dir", &d, "--name", "gw-a"],
    )
    .unwrap();
    let mut c2r = c2.clone();
    c2r.extra.push_str(&format!(
        "crl = \"{}\"\n",
        pki.dir.join("crl.pem").display()
    ));
    let g2 = Gateway::start(&topo.gw2, &topo.daemon_dir("gw2"), "gw2-crl", &c2r);
    let _g1 = Gateway::start(&topo.gw1, &topo.daemon_dir("gw1"), "gw1-revoked", &c1);
    wait_until(UP, "gw-b to log the revoked certificate", || {
        g2.log().contains("is revoked by a CRL")
    });
    assert!(g2.peer_state().map_or(true, |s| s != "established"));
}

/// rampart on one gateway, strongSwan (certificates from the same `rampart pki` CA) on the other.
fn strongswan_certs(test: &str, rampart_initiates: bool, algorithm: &str) {
    if !setup(test, true) {
        return;
    }
    let topo = SiteToSite::new(test);
    let (rp_ns, sw_ns, rp_host): (&Netns, &Netns, &Netns) = if rampart_initiates {
        (&topo.gw1, &topo.gw2, &topo.h1)
    } else {
        (&topo.gw2, &topo.gw1, &topo.h2)
    };
    let (rp_wan, sw_wan, rp_domain, sw_domain, sw_host_ip) = if rampart_initiates {
        (GW1_WAN, GW2_WAN, DOMAIN1, DOMAIN2, H2)
    } else {
        (GW2_WAN, GW1_WAN, DOMAIN2, DOMAIN1, H1)
    };
    let pki = Pki::init(&topo.daemon_dir("pki"), algorithm);
    pki.issue("rampart", &format!("ip:{rp_wan}"), algorithm, false);
    pki.issue("strongswan", &format!("ip:{sw_wan}"), algorithm, true);

    let sw_config = CharonConfig::site_to_site(
        &sw_wan.to_string(),
        &rp_wan.to_string(),
        sw_domain,
        rp_domain,
        "unused pre-shared key, certificates are used",
    );
    let charon = Charon::start(sw_ns, &topo.daemon_dir("strongswan"), sw_config);
    pki.charon_use_cert(&charon, "strongswan", "");

    let mut peer = PeerToml::new(
        "strongswan",
        &rp_wan.to_string(),
        &sw_wan.to_string(),
        sw_domain,
        "",
    );
    peer.encapsulation = "force".into();
    peer.start_action = if rampart_initiates { "always" } else { "none" }.into();
    let rp_dir = topo.daemon_dir("rampart");
    let config = cert_config("rampart", &rp_dir, rp_domain, peer, &pki, "rampart");
    let mut gw = Gateway::start(rp_ns, &rp_dir, "rampart", &config);
    if !rampart_initiates {
        charon
            .initiate()
            .unwrap_or_else(|e| panic!("strongSwan initiate: {e}\n{}", charon.log()));
    }
    gw.wait_tunnel(UP);
    charon.wait_child(Duration::from_secs(10));
    ping(rp_host, &sw_host_ip.to_string(), 3).unwrap();
    assert!(
        gw.log().contains("peer certificate accepted"),
        "{}",
        gw.log()
    );
    assert!(
        charon.log().contains("authentication of '") && charon.log().contains("successful"),
        "{}",
        charon.log()
    );
}

#[test]
fn strongswan_certs_rampart_initiates_ecdsa() {
    strongswan_certs("rp-cert-sw-i-ec", true, "ecdsa-p256");
}

#[test]
fn strongswan_certs_rampart_initiates_rsa() {
    strongswan_certs("rp-cert-sw-i-rsa", true, "rsa-3072");
}

#[test]
fn strongswan_certs_strongswan_initiates_ecdsa() {
    strongswan_certs("rp-cert-sw-r-ec", false, "ecdsa-p384");
}

#[test]
fn strongswan_certs_strongswan_initiates_rsa() {
    strongswan_certs("rp-cert-sw-r-rsa", false, "rsa-3072");
}

/// gw1 behind the fragment-dropping NAT initiates; gw2's IKE_AUTH response carries an RSA-4096
/// certificate and intermediate (well over 1280 bytes) and only arrives fragmented by IKE.
fn big_chain_through_fragnat(test: &str, fragmentation: bool) {
    if !setup(test, false) {
        return;
    }
    let topo = FragNat::new(test, "21000-21999");
    let pki = Pki::init(&topo.daemon_dir("pki"), "rsa-4096");
    pki.issue("gw-a", &format!("ip:{GW1_PRIVATE}"), "rsa-4096", true);
    pki.issue("gw-b", &format!("ip:{GW2_WAN}"), "rsa-4096", true);
    let p1 = PeerToml::new(
        "site-b",
        &GW1_PRIVATE.to_string(),
        &GW2_WAN.to_string(),
        DOMAIN2,
        "",
    );
    let mut p2 = PeerToml::new(
        "site-a",
        &GW2_WAN.to_string(),
        &NAT_PUBLIC.to_string(),
        DOMAIN1,
        "",
    );
    p2.remote_id = GW1_PRIVATE.to_string();
    p2.start_action = "none".into();
    let mut c1 = cert_config("gw-a", &topo.daemon_dir("gw1"), DOMAIN1, p1, &pki, "gw-a");
    let mut c2 = cert_config("gw-b", &topo.daemon_dir("gw2"), DOMAIN2, p2, &pki, "gw-b");
    c1.fragmentation = Some(fragmentation);
    c2.fragmentation = Some(fragmentation);
    let g2 = Gateway::start(&topo.gw2, &topo.daemon_dir("gw2"), "gw2", &c2);
    let mut g1 = Gateway::start(&topo.gw1, &topo.daemon_dir("gw1"), "gw1", &c1);
    if fragmentation {
        g1.wait_tunnel(UP);
        ping(&topo.h1, &H2.to_string(), 3).unwrap();
        // IKE fragments fit the path: the NAT never had an IP fragment to drop.
        assert_eq!(topo.dropped_fragments(NAT_OUT_IF), 0);
    } else {
        // gw2 answers IKE_AUTH with one big datagram whose IP fragments the NAT drops (two of
        // the three fragments of each copy): after gw1's request and two retransmissions were
        // answered, nothing has come up.
        wait_until(UP, "the NAT to drop three answers to IKE_AUTH", || {
            topo.dropped_fragments(NAT_OUT_IF) >= 6
        });
        assert!(
            g1.peer_state().map_or(true, |s| s != "established"),
            "{}",
            g1.log()
        );
        assert!(!g1.log().contains("IKE SA established"), "{}", g1.log());
        drop(g2);
    }
}

#[test]
fn big_chain_comes_up_through_fragnat_with_fragmentation() {
    big_chain_through_fragnat("rp-cert-frag-on", true);
}

#[test]
fn big_chain_fails_through_fragnat_without_fragmentation() {
    big_chain_through_fragnat("rp-cert-frag-off", false);
}

/// strongSwan behind the fragment-dropping NAT initiates to rampart (RSA-4096 chains both ways).
#[test]
fn strongswan_initiates_through_fragnat_with_big_chain() {
    let test = "rp-cert-frag-sw";
    if !setup(test, true) {
        return;
    }
    let topo = FragNat::new(test, "22000-22999");
    let pki = Pki::init(&topo.daemon_dir("pki"), "rsa-4096");
    pki.issue("strongswan", &format!("ip:{GW1_PRIVATE}"), "rsa-4096", true);
    pki.issue("rampart", &format!("ip:{GW2_WAN}"), "rsa-4096", true);
    let mut sw_config = CharonConfig::site_to_site(
        &GW1_PRIVATE.to_string(),
        &GW2_WAN.to_string(),
        DOMAIN1,
        DOMAIN2,
        "unused pre-shared key, certificates are used",
    );
    sw_config.start_action = "none".into();
    let charon = Charon::start(&topo.gw1, &topo.daemon_dir("strongswan"), sw_config);
    pki.charon_use_cert(&charon, "strongswan", "");
    let mut peer = PeerToml::new(
        "strongswan",
        &GW2_WAN.to_string(),
        &NAT_PUBLIC.to_string(),
        DOMAIN1,
        "",
    );
    peer.remote_id = GW1_PRIVATE.to_string();
    peer.start_action = "none".into();
    let rp_dir = topo.daemon_dir("rampart");
    let config = cert_config("rampart", &rp_dir, DOMAIN2, peer, &pki, "rampart");
    let mut gw = Gateway::start(&topo.gw2, &rp_dir, "rampart", &config);
    charon
        .initiate()
        .unwrap_or_else(|e| panic!("strongSwan initiate: {e}\n{}", charon.log()));
    gw.wait_tunnel(UP);
    charon.wait_child(Duration::from_secs(10));
    ping(&topo.h1, &H2.to_string(), 3).unwrap();
    assert_eq!(
        topo.dropped_fragments(NAT_OUT_IF),
        0,
        "rampart fragmented its IKE_AUTH"
    );
}
