//! A standby member binds its sockets to virtual addresses it does not own yet (root only).

mod netns;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use netns::Netns;
use rampart_io::raw_esp::RawEspSocket;
use rampart_io::udp::UdpEndpoint;

fn bind_before_the_address_exists(ns: &Netns, vip: IpAddr, plen: u8) {
    let rt = netns::runtime();
    ns.run(|| {
        rt.block_on(async {
            let addr = SocketAddr::new(vip, 4500);
            // Not on any interface: a plain bind fails, a freebind one does not.
            let err = UdpEndpoint::bind(addr).err().expect("plain bind fails");
            assert!(err.to_string().contains(&addr.to_string()), "{err}");
            assert!(RawEspSocket::open(vip).is_err());
            let udp = UdpEndpoint::bind_freebind(addr).unwrap();
            assert_eq!(udp.local(), addr);
            let raw = RawEspSocket::open_freebind(vip).unwrap();
            assert_eq!(raw.local(), vip);

            // Takeover: the address arrives, the socket receives without being reopened.
            ns.ip(&format!("addr add {vip}/{plen} dev lo nodad"));
            let from = std::net::UdpSocket::bind(SocketAddr::new(vip, 0)).unwrap();
            from.send_to(b"ike", addr).unwrap();
            let mut buf = [0u8; 64];
            let (n, remote) = tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    std::future::poll_fn(|cx| udp.poll_recv_ready(cx))
                        .await
                        .unwrap();
                    match udp.try_recv_from(&mut buf) {
                        Ok(got) => break got,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
            .await
            .expect("datagram within 5 s");
            assert_eq!(&buf[..n], b"ike");
            assert_eq!(remote, from.local_addr().unwrap());
        })
    });
}

#[test]
fn udp_and_raw_esp_bind_to_a_virtual_address_before_it_is_claimed() {
    if !netns::can_run("freebind") {
        return;
    }
    let ns = Netns::new("freebind");
    bind_before_the_address_exists(&ns, "192.0.2.77".parse().unwrap(), 32);
    bind_before_the_address_exists(&ns, "2001:db8::77".parse().unwrap(), 128);
}
