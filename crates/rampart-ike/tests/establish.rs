//! IKE_SA_INIT + IKE_AUTH between two engines.

mod util;

use std::time::Duration;

use rampart_crypto::{DhGroup, Encr, Prf};
use rampart_ike::policy::Identity;
use rampart_ike::{DownReason, IkeEvent};
use util::*;

fn ike_ups(ev: &[IkeEvent]) -> usize {
    ev.iter()
        .filter(|e| matches!(e, IkeEvent::IkeSaUp { .. }))
        .count()
}

fn down_reason(ev: &[IkeEvent]) -> Option<DownReason> {
    ev.iter().find_map(|e| match e {
        IkeEvent::IkeSaDown { reason, .. } => Some(*reason),
        _ => None,
    })
}

#[test]
fn establishes_with_defaults() {
    let (a, b) = configs(false);
    let mut p = Pair::new(a, b);
    p.initiate();
    p.run(Duration::from_secs(1));
    assert_eq!(ike_ups(&p.events_a), 1);
    assert_eq!(ike_ups(&p.events_b), 1);
    p.assert_one_matching_child();
    let ka = p.live_children(Side::A)[0];
    assert_eq!(ka.encr, Encr::AesGcm16_256);
    assert!(!ka.encap);
    assert_eq!(ka.local.port(), 500);
    assert_eq!(ka.local_ts[0].start_addr, ip("10.1.0.0"));
    assert_eq!(ka.remote_ts[0].end_addr, ip("10.2.255.255"));
    let st = p.a.status(p.now);
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].state, rampart_ike::IkeSaStateKind::Established);
    assert_eq!(st[0].encr, Some(Encr::AesGcm16_256));
    assert_eq!(st[0].dh, Some(DhGroup::X25519));
    assert!(st[0].initiator);
    assert!(!st[0].nat_local && !st[0].nat_remote);
    assert_eq!(st[0].children.len(), 1);
    let sb = p.b.status(p.now);
    assert_eq!((sb[0].spi_i, sb[0].spi_r), (st[0].spi_i, st[0].spi_r));
    // Four messages: IKE_SA_INIT and IKE_AUTH, no retransmission.
    assert_eq!(p.sent.len(), 4);
}

#[test]
fn every_ike_proposal() {
    let encrs = [
        "aes128gcm16",
        "aes256gcm16",
        "chacha20poly1305",
        "aes128-sha256",
        "aes256-sha256",
    ];
    let prfs = ["prfsha256", "prfsha384", "prfsha512"];
    let groups = ["ecp256", "ecp384", "x25519"];
    for e in encrs {
        for f in prfs {
            for g in groups {
                let s = format!("{e}-{f}-{g}");
                let (mut a, mut b) = configs(false);
                a.peers[0].ike_proposals = vec![ike_prop(&s)];
                b.peers[0].ike_proposals =
                    vec![ike_prop("aes256gcm16-prfsha256-x25519"), ike_prop(&s)];
                let mut p = Pair::new(a, b);
                p.initiate();
                p.run(Duration::from_secs(1));
                assert_eq!(ike_ups(&p.events_a), 1, "{s}");
                p.assert_one_matching_child();
                let st = &p.a.status(p.now)[0];
                assert_eq!(st.prf, Some(f.parse::<Prf>().unwrap()), "{s}");
                // The negotiated IKE SA must also carry INFORMATIONAL traffic.
                let ike_sa = st.ike_sa;
                p.a.delete_ike_sa(p.now, ike_sa);
                p.run(Duration::from_secs(1));
                assert_eq!(
                    down_reason(&p.events_b),
                    Some(DownReason::DeletedByPeer),
                    "{s}"
                );
                assert!(p.b.status(p.now).is_empty());
            }
        }
    }
}

#[test]
fn every_esp_proposal_with_and_without_pfs() {
    let encrs = [
        "aes128gcm16",
        "aes256gcm16",
        "chacha20poly1305",
        "aes128-sha256",
        "aes256-sha256",
    ];
    for e in encrs {
        for pfs in ["", "-x25519", "-ecp384"] {
            let s = format!("{e}{pfs}");
            let (mut a, mut b) = configs(false);
            a.peers[0].esp_proposals = vec![esp_prop(&s)];
            b.peers[0].esp_proposals = vec![esp_prop("aes256gcm16-ecp256"), esp_prop(&s)];
            let mut p = Pair::new(a, b);
            p.initiate();
            p.run(Duration::from_secs(1));
            p.assert_one_matching_child();
            assert_eq!(p.live_children(Side::A)[0].encr, esp_prop(&s).encr);
            // Rekey uses the PFS group in CREATE_CHILD_SA.
            let c = p.only_child(Side::A);
            p.a.rekey_child(p.now, c);
            p.run(Duration::from_secs(1));
            p.assert_one_matching_child();
            let st = &p.a.status(p.now)[0];
            assert_eq!(st.children[0].dh, esp_prop(&s).dh, "{s}");
        }
    }
}

#[test]
fn esn_negotiated_when_both_want_it() {
    let (mut a, mut b) = configs(false);
    a.peers[0].esn = true;
    b.peers[0].esn = true;
    let mut p = Pair::new(a.clone(), b.clone());
    p.initiate();
    p.run(Duration::from_secs(1));
    assert!(p.live_children(Side::A)[0].esn);
    assert!(p.live_children(Side::B)[0].esn);
    b.peers[0].esn = false;
    let mut p = Pair::new(a, b);
    p.initiate();
    p.run(Duration::from_secs(1));
    assert!(!p.live_children(Side::A)[0].esn);
}

#[test]
fn mismatched_ike_proposals_fail_with_no_proposal_chosen() {
    let (mut a, mut b) = configs(false);
    a.peers[0].ike_proposals = vec![ike_prop("aes128-sha256-prfsha256-ecp256")];
    b.peers[0].ike_proposals = vec![ike_prop("aes256gcm16-prfsha256-x25519")];
    a.peers[0].start_action = rampart_ike::policy::StartAction::None;
    let mut p = Pair::new(a, b);
    p.initiate();
    p.run(Duration::from_secs(30));
    assert_eq!(down_reason(&p.events_a), Some(DownReason::NoProposalChosen));
    assert_eq!(ike_ups(&p.events_a), 0);
    assert!(p.b.status(p.now).is_empty());
    assert!(p.a.status(p.now).is_empty());
}

#[test]
fn mismatched_esp_proposals_keep_ike_sa_without_child() {
    let (mut a, mut b) = configs(false);
    a.peers[0].esp_proposals = vec![esp_prop("aes128-sha256")];
    b.peers[0].esp_proposals = vec![esp_prop("aes256gcm16")];
    let mut p = Pair::new(a, b);
    p.initiate();
    p.run(Duration::from_secs(1));
    assert_eq!(ike_ups(&p.events_a), 1);
    assert!(p.child_ups(Side::A).is_empty());
    assert!(p.child_ups(Side::B).is_empty());
}

#[test]
fn wrong_psk_fails_authentication() {
    let (a, mut b) = configs(false);
    b.peers[0].psk = b"another-secret-of-enough-length".to_vec().into();
    let mut a = a;
    a.peers[0].start_action = rampart_ike::policy::StartAction::None;
    let mut p = Pair::new(a, b);
    p.initiate();
    p.run(Duration::from_secs(60));
    assert_eq!(
        down_reason(&p.events_a),
        Some(DownReason::AuthenticationFailed)
    );
    assert_eq!(
        down_reason(&p.events_b),
        Some(DownReason::AuthenticationFailed)
    );
    assert_eq!(ike_ups(&p.events_a) + ike_ups(&p.events_b), 0);
    assert!(p.child_ups(Side::A).is_empty() && p.child_ups(Side::B).is_empty());
    assert!(p.a.status(p.now).is_empty() && p.b.status(p.now).is_empty());
}

#[test]
fn wrong_remote_id_fails_authentication() {
    let (mut a, b) = configs(false);
    a.peers[0].remote_id = Identity::Fqdn("other.example".into());
    a.peers[0].start_action = rampart_ike::policy::StartAction::None;
    let mut p = Pair::new(a, b);
    p.initiate();
    p.run(Duration::from_secs(5));
    assert_eq!(
        down_reason(&p.events_a),
        Some(DownReason::AuthenticationFailed)
    );
    assert!(p.child_ups(Side::A).is_empty());
}

#[test]
fn fqdn_identities() {
    let (mut a, mut b) = configs(false);
    a.peers[0].local_id = Identity::Fqdn("a.example".into());
    a.peers[0].remote_id = Identity::Fqdn("b.example".into());
    b.peers[0].local_id = Identity::Fqdn("B.example".into());
    b.peers[0].remote_id = Identity::Fqdn("a.example".into());
    let mut p = Pair::new(a, b);
    p.initiate();
    p.run(Duration::from_secs(1));
    p.assert_one_matching_child();
}

#[test]
fn invalid_ke_retry() {
    let (mut a, mut b) = configs(false);
    a.peers[0].ike_proposals = vec![
        ike_prop("aes256gcm16-prfsha256-x25519"),
        ike_prop("aes256gcm16-prfsha256-ecp256"),
    ];
    b.peers[0].ike_proposals = vec![ike_prop("aes256gcm16-prfsha256-ecp256")];
    let mut p = Pair::new(a, b);
    p.initiate();
    p.run(Duration::from_secs(1));
    p.assert_one_matching_child();
    assert_eq!(p.a.status(p.now)[0].dh, Some(DhGroup::Ecp256));
    let inits = p
        .sent
        .iter()
        .filter(|x| x.exchange() == 34 && !x.is_response())
        .count();
    assert_eq!(inits, 2);
}

#[test]
fn traffic_selectors_are_narrowed() {
    let (mut a, mut b) = configs(false);
    a.peers[0].remote_domain = vec!["10.0.0.0/8".parse().unwrap()];
    b.local_domain = vec!["10.2.5.0/24".parse().unwrap()];
    let mut p = Pair::new(a, b);
    p.initiate();
    p.run(Duration::from_secs(1));
    p.assert_one_matching_child();
    let ka = p.live_children(Side::A)[0];
    assert_eq!(ka.remote_ts.len(), 1);
    assert_eq!(
        (ka.remote_ts[0].start_addr, ka.remote_ts[0].end_addr),
        (ip("10.2.5.0"), ip("10.2.5.255"))
    );
}

#[test]
fn disjoint_traffic_selectors_are_unacceptable() {
    let (mut a, b) = configs(false);
    a.peers[0].remote_domain = vec!["172.16.0.0/12".parse().unwrap()];
    let mut p = Pair::new(a, b);
    p.initiate();
    p.run(Duration::from_secs(1));
    assert_eq!(ike_ups(&p.events_a), 1);
    assert!(p.child_ups(Side::A).is_empty() && p.child_ups(Side::B).is_empty());
}

#[test]
fn unknown_peer_is_ignored_but_ids_can_match() {
    // B knows A under another address: the ID decides (fallback peer matching).
    let (a, mut b) = configs(false);
    b.peers[0].remote_address = rampart_ike::RemoteAddress::Ip(ip("192.0.2.99"));
    let mut p = Pair::new(a, b);
    p.initiate();
    p.run(Duration::from_secs(1));
    p.assert_one_matching_child();
}
