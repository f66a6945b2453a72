//! The UDP probe against the real IKE engine (`rampart_ike::Ike`) answering on a loopback UDP
//! socket, as a gateway does: with a remote-access style template peer (any address), and at
//! the cookie threshold (every IKE_SA_INIT answered with COOKIE). Either way the probe gets its
//! stateless answer and the engine keeps no SA.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rampart_connect::udp_probe::probe;
use rampart_crypto::Rng;
use rampart_ike::policy::{
    Encapsulation, EspProposal, Identity, IkeProposal, PeerAuth, PeerPolicy, RemoteAddress,
    StartAction,
};
use rampart_ike::{Ike, IkeConfig, IkeEvent};
use tokio::net::UdpSocket;

fn policy() -> PeerPolicy {
    let ip = "127.0.0.1".parse().unwrap();
    PeerPolicy {
        name: "remote-access".into(),
        local_address: ip,
        remote_address: RemoteAddress::Any,
        local_id: Identity::Ip(ip),
        remote_id: Identity::Ip(ip),
        psk: b"a-very-secret-psk-0123".to_vec().into(),
        remote_domain: vec!["10.9.0.0/24".parse().unwrap()],
        ike_proposals: vec![IkeProposal {
            encr: "aes256gcm16".parse().unwrap(),
            integ: None,
            prf: "prfsha256".parse().unwrap(),
            dh: "x25519".parse().unwrap(),
        }],
        esp_proposals: vec![EspProposal {
            encr: "aes256gcm16".parse().unwrap(),
            integ: None,
            dh: None,
        }],
        esn: false,
        start_action: StartAction::None,
        ike_lifetime: Duration::from_secs(3600),
        child_lifetime: Duration::from_secs(1800),
        child_lifetime_bytes: None,
        liveness_interval: Duration::from_secs(30),
        encapsulation: Encapsulation::Auto,
        replay_window: 1024,
        auth: PeerAuth::Psk,
        remote_access: rampart_ike::RemoteAccess::None,
        mobike: false,
    }
}

/// Runs an engine on a loopback socket; returns its address.
async fn gateway(cookie_threshold: u32) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = sock.local_addr().unwrap();
    let cfg = IkeConfig {
        member_id: 0,
        ike_port: local.port(),
        nat_t_port: 4500,
        local_domain: vec!["10.8.0.0/24".parse().unwrap()],
        retransmit_timeout: Duration::from_secs(2),
        retransmit_tries: 3,
        nat_keepalive: Duration::from_secs(20),
        fragmentation: true,
        fragment_size: 1280,
        cookie_threshold,
        half_open_per_source: 20,
    };
    let mut ike = Ike::new(cfg, Rng::from_seed([7; 32]));
    ike.add_peer(policy());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, from) = sock.recv_from(&mut buf).await.unwrap();
            ike.handle_datagram(Instant::now(), local, from, &buf[..n]);
            while let Some(ev) = ike.poll_event() {
                if let IkeEvent::Transmit { remote, msg, .. } = ev {
                    sock.send_to(&msg, remote).await.unwrap();
                }
            }
            assert!(
                ike.status(Instant::now()).is_empty(),
                "the probe must not create an SA"
            );
        }
    });
    local
}

#[tokio::test]
async fn the_engine_answers_the_probe() {
    let gw = gateway(100).await;
    let rtt = probe(gw, false, Duration::from_secs(2)).await.unwrap();
    assert!(
        rtt < Duration::from_millis(250),
        "answered the first request: {rtt:?}"
    );
}

#[tokio::test]
async fn the_engine_answers_the_probe_at_the_cookie_threshold() {
    let gw = gateway(0).await;
    probe(gw, false, Duration::from_secs(2)).await.unwrap();
}
