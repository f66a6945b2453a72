//! Raw ESP sockets across a veth pair between two namespaces (root only).

mod netns;

use std::net::IpAddr;
use std::time::Duration;

use netns::Netns;
use rampart_io::raw_esp::RawEspSocket;

/// An ESP-looking packet: SPI, sequence number, some body.
fn esp_packet(spi: u32, len: usize) -> Vec<u8> {
    let mut p = spi.to_be_bytes().to_vec();
    p.extend_from_slice(&1u32.to_be_bytes());
    p.extend((0..len).map(|i| i as u8));
    p
}

fn exchange(a: &Netns, b: &Netns, addr_a: IpAddr, addr_b: IpAddr) {
    // Open each socket inside its own namespace; a socket stays in the namespace it was made in.
    std::thread::scope(|s| {
        s.spawn(|| {
            a.enter();
            let rt = netns::runtime();
            rt.block_on(async {
                let sock_a = RawEspSocket::open(addr_a).unwrap();
                b.enter();
                let sock_b = RawEspSocket::open(addr_b).unwrap();
                assert_eq!(sock_b.local(), addr_b);

                for (spi, len) in [(0x1000_0001u32, 0usize), (0x2000_0002, 1400)] {
                    let sent = esp_packet(spi, len);
                    sock_a.send_to(&sent, addr_b).await.unwrap();
                    let mut buf = vec![0u8; 65_535];
                    let got = tokio::time::timeout(Duration::from_secs(5), async {
                        loop {
                            let mut ready = std::pin::pin!(std::future::poll_fn(|cx| {
                                sock_b.poll_recv_ready(cx)
                            }));
                            (&mut ready).await.unwrap();
                            match sock_b.try_recv(&mut buf) {
                                Ok(Some(p)) => return p,
                                Ok(None) => panic!("malformed header from the kernel"),
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                                Err(e) => panic!("{e}"),
                            }
                        }
                    })
                    .await
                    .expect("ESP packet did not arrive");
                    assert_eq!(got.remote, addr_a);
                    assert_eq!(
                        &buf[got.packet.clone()],
                        &sent[..],
                        "payload after IP header"
                    );
                    if addr_a.is_ipv4() {
                        assert_eq!(got.packet.start, 20, "IPv4 header stripped");
                    } else {
                        assert_eq!(got.packet.start, 0, "IPv6 raw sockets carry no header");
                    }
                }
            });
        });
    });
}

#[test]
fn esp_crosses_veth_pair_v4_and_v6() {
    if !netns::can_run("raw ESP") {
        return;
    }
    let a = Netns::new("espa");
    let b = Netns::new("espb");
    a.ip(&format!(
        "link add va type veth peer name vb netns {}",
        b.name
    ));
    a.ip("addr add 10.200.0.1/24 dev va");
    a.ip("addr add fd00:200::1/64 dev va nodad");
    a.ip("link set va up");
    b.ip("addr add 10.200.0.2/24 dev vb");
    b.ip("addr add fd00:200::2/64 dev vb nodad");
    b.ip("link set vb up");

    exchange(
        &a,
        &b,
        "10.200.0.1".parse().unwrap(),
        "10.200.0.2".parse().unwrap(),
    );
    exchange(
        &a,
        &b,
        "fd00:200::1".parse().unwrap(),
        "fd00:200::2".parse().unwrap(),
    );
}

#[test]
fn binding_an_absent_address_fails_with_a_hint() {
    if !netns::can_run("raw ESP bind") {
        return;
    }
    let ns = Netns::new("espbind");
    ns.run(|| {
        netns::runtime().block_on(async {
            let err = match RawEspSocket::open("192.0.2.77".parse().unwrap()) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("bound an address that is not configured"),
            };
            assert!(
                err.starts_with("cannot open raw ESP socket on 192.0.2.77: "),
                "{err}"
            );
            assert!(err.contains("is local_address configured"), "{err}");
        })
    });
}
