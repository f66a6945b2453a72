//! ICMP errors through a real socket's error queue, in a private namespace (root only): a
//! datagram to a closed port comes back as `IcmpError { remote, PortUnreachable }`, the error
//! never stops the socket, and datagrams before and after it are received.

mod netns;

use std::future::poll_fn;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::time::Duration;

use netns::Netns;
use rampart_io::errqueue::{ErrQueueBuf, IcmpError, IcmpKind, QueuedError};
use rampart_io::udp::{RecvMeta, UdpEndpoint};
use tokio::net::UdpSocket;

/// Waits until the endpoint's error queue polls ready.
async fn error_ready(ep: &UdpEndpoint) {
    tokio::time::timeout(
        Duration::from_secs(5),
        poll_fn(|cx| ep.poll_error_ready(cx)),
    )
    .await
    .expect("no ICMP error was queued");
}

/// Receives one datagram with batched reads, skipping the one-off pending-error report.
async fn recv_one(ep: &UdpEndpoint) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 2048];
    for _ in 0..200 {
        let mut meta = [RecvMeta::default()];
        let got = {
            let mut bufs = [IoSliceMut::new(&mut buf)];
            ep.try_recv_batch(&mut bufs, &mut meta)
        };
        match got {
            Ok(_) => return (buf[..meta[0].len].to_vec(), meta[0].addr),
            Err(e) if rampart_io::errqueue::is_pending_icmp_error(&e) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::time::timeout(Duration::from_secs(5), poll_fn(|cx| ep.poll_recv_ready(cx)))
                    .await
                    .expect("no datagram arrived")
                    .unwrap();
            }
            Err(e) => panic!("receive failed: {e}"),
        }
    }
    panic!("no datagram after 200 reads");
}

async fn closed_port_round(local: &str, closed_ip: &str) {
    let ep = UdpEndpoint::bind(local.parse().unwrap()).unwrap();
    let peer = UdpSocket::bind(SocketAddr::new(ep.local().ip(), 0))
        .await
        .unwrap();
    // A port that was free a moment ago.
    let closed = std::net::UdpSocket::bind(SocketAddr::new(closed_ip.parse().unwrap(), 0))
        .unwrap()
        .local_addr()
        .unwrap();
    let mut errq = ErrQueueBuf::new();

    // Nothing queued yet.
    let empty = ep.try_recv_error(&mut errq).unwrap_err();
    assert_eq!(empty.kind(), io::ErrorKind::WouldBlock);

    ep.send_to(b"anyone?", closed).await.unwrap();
    error_ready(&ep).await;
    let expected = QueuedError::Icmp(IcmpError {
        local: ep.local(),
        remote: closed,
        kind: IcmpKind::PortUnreachable,
    });
    assert_eq!(ep.try_recv_error(&mut errq).unwrap(), expected);
    let empty = ep.try_recv_error(&mut errq).unwrap_err();
    assert_eq!(
        empty.kind(),
        io::ErrorKind::WouldBlock,
        "one error, read once"
    );

    // A normal datagram after it arrives.
    peer.send_to(b"hello", ep.local()).await.unwrap();
    assert_eq!(
        recv_one(&ep).await,
        (b"hello".to_vec(), peer.local_addr().unwrap())
    );

    // An error left pending while a datagram arrives: the receive may report the error once,
    // then hands over the datagram, and the queue still holds the details.
    ep.send_to(b"anyone?", closed).await.unwrap();
    error_ready(&ep).await;
    peer.send_to(b"again", ep.local()).await.unwrap();
    assert_eq!(
        recv_one(&ep).await,
        (b"again".to_vec(), peer.local_addr().unwrap())
    );
    assert_eq!(ep.try_recv_error(&mut errq).unwrap(), expected);

    // A send after an unread error still goes out (the pending report is retried past).
    ep.send_to(b"anyone?", closed).await.unwrap();
    error_ready(&ep).await;
    ep.send_to(b"to the peer", peer.local_addr().unwrap())
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
        .await
        .expect("send after an ICMP error was lost")
        .unwrap();
    assert_eq!((&buf[..n], from), (&b"to the peer"[..], ep.local()));
    assert_eq!(ep.try_recv_error(&mut errq).unwrap(), expected);
}

#[test]
fn port_unreachable_is_read_from_the_error_queue() {
    if !netns::can_run("ICMP errors") {
        return;
    }
    let ns = Netns::new("icmp");
    ns.ip("addr add 10.76.0.1/32 dev lo");
    ns.ip("addr add 10.76.0.2/32 dev lo");
    ns.run(|| {
        netns::runtime().block_on(async {
            closed_port_round("10.76.0.1:0", "10.76.0.2").await;
            closed_port_round("[::1]:0", "::1").await;
        })
    });
}
