//! The fragment-dropping hide NAT really behaves as advertised: a UDP datagram from gw2 to gw1
//! that exceeds the 1280-byte outside MTU is lost (its non-first fragments are dropped at the NAT),
//! one that fits arrives, and in the other direction the NAT still forwards big datagrams.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::Duration;

use rampart_netns_tests::fragnat::FragNat;
use rampart_netns_tests::nat_topology::{GW1_PRIVATE, NAT_OUT_IF, NAT_PUBLIC};
use rampart_netns_tests::topology::GW2_WAN;
use rampart_netns_tests::traffic::spawn_in;
use rampart_netns_tests::{require_tools, skip_unless_root};

const GW1_PORT: u16 = 40000;
const GW2_PORT: u16 = 40001;
const BIG: usize = 3000;
const SMALL: usize = 1000;

fn recv_len(s: &UdpSocket, buf: &mut [u8]) -> Result<(usize, SocketAddr), String> {
    s.recv_from(buf).map_err(|e| format!("recv: {e}"))
}

#[test]
fn fragnat_drops_non_first_fragments_towards_the_inside() {
    if skip_unless_root("fragnat") {
        return;
    }
    require_tools(&["ip", "nft"]);
    let topo = FragNat::new("rp-fragnat", "20000-20999");

    // gw2: wait for gw1's probe, answer BIG then SMALL to the NAT mapping it came from, then
    // receive gw1's BIG datagram (through the NAT in the other direction).
    let (ready_tx, ready_rx) = mpsc::channel();
    let gw2 = spawn_in(&topo.gw2, move || {
        let s = UdpSocket::bind(SocketAddr::new(IpAddr::V4(GW2_WAN), GW2_PORT))
            .map_err(|e| format!("bind: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        ready_tx.send(()).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 65536];
        let (n, from) = recv_len(&s, &mut buf)?;
        if n != 5 || from.ip() != IpAddr::V4(NAT_PUBLIC) {
            return Err(format!("probe of {n} bytes from {from}"));
        }
        s.send_to(&[0xbb; BIG], from).map_err(|e| e.to_string())?;
        s.send_to(&[0x55; SMALL], from).map_err(|e| e.to_string())?;
        let (n, _) = recv_len(&s, &mut buf)?;
        Ok(n)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("gw2 socket bound");
    let gw1 = spawn_in(&topo.gw1, move || {
        let s = UdpSocket::bind(SocketAddr::new(IpAddr::V4(GW1_PRIVATE), GW1_PORT))
            .map_err(|e| format!("bind: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let gw2 = SocketAddr::new(IpAddr::V4(GW2_WAN), GW2_PORT);
        s.send_to(b"probe", gw2).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 65536];
        // BIG was sent first on the same path: had it survived it would be here first.
        let (n, _) = recv_len(&s, &mut buf)?;
        s.send_to(&[0xcc; BIG], gw2).map_err(|e| e.to_string())?;
        Ok(n)
    });
    let first_at_gw1 = gw1
        .join()
        .expect("gw1 thread")
        .unwrap_or_else(|e| panic!("gw1: {e}"));
    let big_at_gw2 = gw2
        .join()
        .expect("gw2 thread")
        .unwrap_or_else(|e| panic!("gw2: {e}"));
    assert_eq!(
        first_at_gw1, SMALL,
        "the big datagram must not arrive, the small one must"
    );
    assert_eq!(
        big_at_gw2, BIG,
        "outbound, the NAT reassembles and re-fragments"
    );
    // 3000 bytes over a 1280-byte MTU: three fragments, the last two dropped.
    assert_eq!(topo.dropped_fragments(NAT_OUT_IF), 2);
}
