//! Batched UDP (GSO/GRO through quinn-udp) and raw ESP (sendmmsg/recvmmsg) sockets on
//! loopback. UDP needs no privilege; raw ESP needs root and is skipped otherwise.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rampart_io::raw_esp::{RawEspSocket, RawPacket, MAX_BATCH};
use rampart_io::udp::{
    datagrams, RecvMeta, UdpEndpoint, MAX_GSO_SEGMENTS, MAX_UDP_PAYLOAD_V4, MAX_UDP_PAYLOAD_V6,
    RECV_BUFFER_SIZE,
};

mod netns;

const SEGMENT: usize = 1200;

/// Datagram `i` of a test batch: its index first, then a pattern that differs per datagram.
fn datagram(i: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| {
            if k == 0 {
                i as u8
            } else {
                (k as u8) ^ (i as u8).wrapping_mul(37)
            }
        })
        .collect()
}

/// Waits for readability and reads batches until `want` datagrams arrived (5 s at most).
/// Returns the datagrams in arrival order with their senders, and how many entries held more
/// than one datagram (GRO).
async fn receive(rx: &UdpEndpoint, want: usize) -> (Vec<(SocketAddr, Vec<u8>)>, usize) {
    let mut arena = vec![0u8; 8 * RECV_BUFFER_SIZE];
    let mut meta = [RecvMeta::default(); 8];
    let mut got = Vec::new();
    let mut coalesced = 0;
    tokio::time::timeout(Duration::from_secs(5), async {
        while got.len() < want {
            std::future::poll_fn(|cx| rx.poll_recv_ready(cx))
                .await
                .unwrap();
            let n = {
                let mut bufs: Vec<IoSliceMut<'_>> = arena
                    .chunks_exact_mut(RECV_BUFFER_SIZE)
                    .map(IoSliceMut::new)
                    .collect();
                match rx.try_recv_batch(&mut bufs, &mut meta) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => panic!("receive failed: {e}"),
                }
            };
            assert!(n >= 1 && n <= meta.len());
            for (i, m) in meta[..n].iter().enumerate() {
                let slot = &arena[i * RECV_BUFFER_SIZE..(i + 1) * RECV_BUFFER_SIZE];
                assert!(m.len <= RECV_BUFFER_SIZE);
                let before = got.len();
                got.extend(datagrams(slot, m).map(|d| (m.addr, d.to_vec())));
                if got.len() - before > 1 {
                    coalesced += 1;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {want} datagrams arrived", got.len()));
    (got, coalesced)
}

/// One segmented send of 20 full datagrams and a short last one cut from one contiguous
/// buffer, received in batches; then smaller sends on the same sockets.
async fn segments_round_trip(addr: &str) {
    let rx = UdpEndpoint::bind(addr.parse().unwrap()).unwrap();
    let tx = UdpEndpoint::bind(addr.parse().unwrap()).unwrap();
    // The first batched read switches GRO on; do it before anything is sent so the kernel
    // keeps the GSO batch whole for this socket.
    let mut one = [0u8; 16];
    let err = rx
        .try_recv_batch(&mut [IoSliceMut::new(&mut one)], &mut [RecvMeta::default()])
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);

    let mut sent: Vec<Vec<u8>> = (0..20).map(|i| datagram(i, SEGMENT)).collect();
    sent.push(datagram(20, 333));
    let contents: Vec<u8> = sent.concat();
    assert!(rx.max_segments() >= 1);
    if tx.max_segments() < sent.len() {
        eprintln!(
            "no UDP GSO here (max_segments {}): datagrams go one per sendmsg",
            tx.max_segments()
        );
    }
    let slices: Vec<&[u8]> = contents.chunks(SEGMENT).collect();
    tx.send_gathered(rx.local(), &slices, SEGMENT)
        .await
        .expect("one segmented send into an empty 4 MiB buffer");

    let (got, coalesced) = receive(&rx, sent.len()).await;
    assert_eq!(got.len(), sent.len(), "no extra datagrams");
    for (i, ((from, bytes), want)) in got.iter().zip(&sent).enumerate() {
        assert_eq!(*from, tx.local(), "sender of datagram {i}");
        assert_eq!(bytes, want, "bytes and order of datagram {i}");
    }
    if rx.gro_segments() > 1 && tx.max_segments() > 1 {
        // A GSO send over loopback reaches a GRO socket as the one skb it was built as
        // (udp_unexpected_gso keeps it whole), so the 21 datagrams arrive as one entry.
        assert!(coalesced >= 1, "GSO batch was split before the GRO socket");
    } else {
        // Without GRO, or without GSO to make the batch, the kernel guarantees only one
        // datagram per entry: that is what the strides above were checked against.
        assert_eq!(coalesced, 0);
    }

    // Another segment size, then a single datagram shorter than its segment size.
    let small: Vec<Vec<u8>> = (0..3).map(|i| datagram(100 + i, 500)).collect();
    let slices: Vec<&[u8]> = small.iter().map(Vec::as_slice).collect();
    tx.send_gathered(rx.local(), &slices, 500).await.unwrap();
    tx.send_gathered(rx.local(), &[small[0].as_slice()], SEGMENT)
        .await
        .unwrap();
    let (got, _) = receive(&rx, 4).await;
    let bytes: Vec<&Vec<u8>> = got.iter().map(|(_, b)| b).collect();
    assert_eq!(bytes, vec![&small[0], &small[1], &small[2], &small[0]]);
}

/// A gathered GSO send: 30 datagrams from 30 separate buffers (as sealed packets lie in the
/// TUN split buffers) and a short last one leave in one `sendmsg` and arrive whole, in order,
/// as one GRO entry where the kernel has both; misshapen batches are refused whole.
async fn gathered_round_trip(addr: &str) {
    let rx = UdpEndpoint::bind(addr.parse().unwrap()).unwrap();
    let tx = UdpEndpoint::bind(addr.parse().unwrap()).unwrap();
    let mut one = [0u8; 16];
    let err = rx
        .try_recv_batch(&mut [IoSliceMut::new(&mut one)], &mut [RecvMeta::default()])
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);

    let mut sent: Vec<Vec<u8>> = (0..30).map(|i| datagram(i, SEGMENT)).collect();
    sent.push(datagram(30, 77));
    let slices: Vec<&[u8]> = sent.iter().map(Vec::as_slice).collect();
    tx.send_gathered(rx.local(), &slices, SEGMENT)
        .await
        .unwrap();
    let (got, coalesced) = receive(&rx, sent.len()).await;
    assert_eq!(got.len(), sent.len(), "no extra datagrams");
    for (i, ((from, bytes), want)) in got.iter().zip(&sent).enumerate() {
        assert_eq!(*from, tx.local(), "sender of datagram {i}");
        assert_eq!(bytes, want, "bytes and order of datagram {i}");
    }
    if rx.gro_segments() > 1 && tx.max_segments() > 1 {
        assert!(
            coalesced >= 1,
            "the gathered GSO send was split before the GRO socket"
        );
    }

    // A short datagram that is not last, a long one, too many: InvalidInput, nothing sent.
    let short = datagram(0, 10);
    let long = datagram(0, SEGMENT + 1);
    let full = datagram(0, SEGMENT);
    let too_many = vec![full.as_slice(); 65];
    for bad in [
        vec![short.as_slice(), full.as_slice()],
        vec![full.as_slice(), long.as_slice()],
        too_many,
    ] {
        let err = tx
            .send_gathered(rx.local(), &bad, SEGMENT)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    }
    // One datagram is a plain send.
    tx.send_gathered(rx.local(), &[short.as_slice()], SEGMENT)
        .await
        .unwrap();
    let (got, _) = receive(&rx, 1).await;
    assert_eq!(
        got[0].1, short,
        "only the single datagram arrived after the refused batches"
    );
}

#[tokio::test]
async fn gathered_gso_send_v4() {
    gathered_round_trip("127.0.0.1:0").await;
}

#[tokio::test]
async fn gathered_gso_send_v6() {
    if UdpEndpoint::bind("[::1]:0".parse().unwrap()).is_err() {
        eprintln!("skipped: ::1 is not available");
        return;
    }
    gathered_round_trip("[::1]:0").await;
}

#[tokio::test]
async fn gso_send_and_gro_receive_v4() {
    segments_round_trip("127.0.0.1:0").await;
}

#[tokio::test]
async fn gso_send_and_gro_receive_v6() {
    if UdpEndpoint::bind("[::1]:0".parse().unwrap()).is_err() {
        eprintln!("skipped: ::1 is not available");
        return;
    }
    segments_round_trip("[::1]:0").await;
}

#[tokio::test]
async fn segments_per_send_respects_kernel_limits() {
    let ep = UdpEndpoint::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let max = ep.max_segments();
    assert!((1..=MAX_GSO_SEGMENTS).contains(&max), "{max}");
    for size in [
        1, 100, 576, 1000, 1200, 1280, 1400, 1500, 9000, 65_507, 70_000,
    ] {
        for v6 in [false, true] {
            let n = ep.segments_per_send(size, v6);
            let limit = if v6 {
                MAX_UDP_PAYLOAD_V6
            } else {
                MAX_UDP_PAYLOAD_V4
            };
            assert!(
                n >= 1 && n <= max && n <= MAX_GSO_SEGMENTS,
                "{size} {v6}: {n}"
            );
            if n > 1 {
                assert!(
                    n * size <= limit,
                    "{size} {v6}: {n} segments exceed {limit}"
                );
            }
            // As many as fit, within the segment limit.
            if n < max && size <= limit {
                assert!((n + 1) * size > limit, "{size} {v6}: {n} leaves room");
            }
        }
    }
    if max > 1 {
        assert_eq!(ep.segments_per_send(1200, false), 54);
        assert_eq!(ep.segments_per_send(1000, false), 64);
    }
    // Past the limits: refused before the kernel sees it (the kernel would answer EINVAL,
    // which makes quinn-udp turn GSO off for good).
    let remote = ep.local();
    let hundred = [0u8; 100];
    let err = ep
        .send_gathered(remote, &vec![&hundred[..]; 65], 100)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let full = [0u8; 1500];
    let err = ep
        .send_gathered(
            remote,
            &vec![&full[..]; MAX_UDP_PAYLOAD_V4 / 1500 + 1],
            1500,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let err = ep
        .send_gathered(remote, &[&[1, 2, 3]], 0)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let err = ep.send_gathered(remote, &[], 100).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "no datagrams");
    assert_eq!(ep.max_segments(), max, "refused sends leave GSO alone");
}

#[tokio::test]
async fn oversized_datagram_is_the_kernels_error() {
    let rx = UdpEndpoint::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let tx = UdpEndpoint::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let big = vec![7u8; 70_000];
    let err = tx
        .send_gathered(rx.local(), &[big.as_slice()], 70_000)
        .await
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EMSGSIZE), "{err}");
}

/// In a namespace whose loopback has a 1500-byte MTU: datagrams larger than the MTU leave
/// fragmented (quinn-udp's IP_PMTUDISC_PROBE would refuse them with EMSGSIZE), and GSO
/// segments larger than the MTU, which the kernel refuses to segment, go out one by one.
#[test]
fn datagrams_over_the_mtu_are_fragmented() {
    if !netns::can_run("UDP fragmentation") {
        return;
    }
    let ns = netns::Netns::new("frag");
    ns.ip("link set lo mtu 1500");
    ns.ip("link set lo up");
    ns.run(|| {
        netns::runtime().block_on(async {
            let rx = UdpEndpoint::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let tx = UdpEndpoint::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let mut one = [0u8; 16];
            let _ = rx.try_recv_batch(&mut [IoSliceMut::new(&mut one)], &mut [RecvMeta::default()]);

            let big = datagram(1, 4000);
            tx.send_to(&big, rx.local()).await.unwrap();
            let (got, _) = receive(&rx, 1).await;
            assert_eq!(got[0].1, big, "4000 bytes over a 1500-byte MTU");

            // The GSO send of segments over the MTU is refused (EMSGSIZE): the datagrams go
            // out one by one and IP fragments each.
            let gso = tx.max_segments();
            let sent: Vec<Vec<u8>> = (0..3).map(|i| datagram(i, 2000)).collect();
            let slices: Vec<&[u8]> = sent.iter().map(Vec::as_slice).collect();
            tx.send_gathered(rx.local(), &slices, 2000).await.unwrap();
            let (got, coalesced) = receive(&rx, 3).await;
            assert_eq!(coalesced, 0, "reassembled datagrams are not coalesced");
            for (i, ((from, bytes), want)) in got.iter().zip(&sent).enumerate() {
                assert_eq!(*from, tx.local());
                assert_eq!(bytes, want, "datagram {i}");
            }
            assert_eq!(tx.max_segments(), gso, "EMSGSIZE does not turn GSO off");

            // Segments within the MTU still go as one GSO send.
            let small: Vec<Vec<u8>> = (0..5).map(|i| datagram(10 + i, 1000)).collect();
            let slices: Vec<&[u8]> = small.iter().map(Vec::as_slice).collect();
            tx.send_gathered(rx.local(), &slices, 1000).await.unwrap();
            let (got, _) = receive(&rx, 5).await;
            let bytes: Vec<&Vec<u8>> = got.iter().map(|(_, b)| b).collect();
            assert_eq!(bytes, small.iter().collect::<Vec<_>>());
        })
    });
}

#[tokio::test]
async fn raw_esp_batches_on_loopback() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: raw ESP sockets need root");
        return;
    }
    raw_round_trip("127.0.0.1".parse().unwrap()).await;
    match RawEspSocket::open("::1".parse().unwrap()) {
        Ok(_) => raw_round_trip("::1".parse().unwrap()).await,
        Err(e) => eprintln!("skipped IPv6: {e}"),
    }
}

async fn raw_round_trip(addr: IpAddr) {
    let socket = RawEspSocket::open(addr).unwrap();
    // A marker SPI of this run, so ESP sent by other tests on this host is ignored.
    let marker = 0xe5b0_0000 | (std::process::id() & 0xffff);
    let sent: Vec<Vec<u8>> = (0..10u32)
        .map(|i| {
            let mut p = marker.to_be_bytes().to_vec();
            p.extend_from_slice(&(i + 1).to_be_bytes());
            p.extend((0..(40 + 100 * i as usize)).map(|k| (k as u8) ^ (i as u8)));
            p
        })
        .collect();
    let batch: Vec<(IpAddr, &[u8])> = sent.iter().map(|p| (addr, p.as_slice())).collect();
    socket.send_batch(&batch).await.unwrap();

    let mut arena = vec![0u8; 16 * 2048];
    let mut out = vec![
        RawPacket {
            remote: addr,
            packet: 0..0,
        };
        16
    ];
    let mut got: Vec<(IpAddr, Vec<u8>)> = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while got.len() < sent.len() {
            std::future::poll_fn(|cx| socket.poll_recv_ready(cx))
                .await
                .unwrap();
            let mut bufs: Vec<&mut [u8]> = arena.chunks_exact_mut(2048).collect();
            let n = match socket.try_recv_batch(&mut bufs, &mut out) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("receive failed: {e}"),
            };
            for (buf, p) in bufs.iter().zip(&out[..n]) {
                let bytes = &buf[p.packet.clone()];
                if bytes.get(..4) == Some(&marker.to_be_bytes()[..]) {
                    if addr.is_ipv4() {
                        assert_eq!(p.packet.start, 20, "IPv4 header stripped");
                    } else {
                        assert_eq!(p.packet.start, 0, "IPv6 raw sockets carry no header");
                    }
                    got.push((p.remote, bytes.to_vec()));
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {} ESP packets came back", got.len(), sent.len()));
    assert_eq!(socket.skipped(), 0);
    for (i, ((from, bytes), want)) in got.iter().zip(&sent).enumerate() {
        assert_eq!(*from, addr, "source of packet {i}");
        assert_eq!(bytes, want, "bytes and order of packet {i}");
    }

    // A packet too big for its buffer is cut by the kernel (MSG_TRUNC): it is skipped and
    // counted, and the packet after it is copied down into its buffer.
    let mut long = marker.to_be_bytes().to_vec();
    long.extend_from_slice(&[0xaa; 3000]);
    let trio = [
        (addr, &sent[1][..]),
        (addr, &long[..]),
        (addr, &sent[2][..]),
    ];
    socket.send_batch(&trio).await.unwrap();
    let mut got: Vec<Vec<u8>> = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while got.len() < 2 || socket.skipped() < 1 {
            std::future::poll_fn(|cx| socket.poll_recv_ready(cx))
                .await
                .unwrap();
            let mut bufs: Vec<&mut [u8]> = arena.chunks_exact_mut(2048).collect();
            let n = match socket.try_recv_batch(&mut bufs, &mut out) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("receive failed: {e}"),
            };
            for (buf, p) in bufs.iter().zip(&out[..n]) {
                let bytes = &buf[p.packet.clone()];
                if bytes.get(..4) == Some(&marker.to_be_bytes()[..]) {
                    got.push(bytes.to_vec());
                }
            }
        }
    })
    .await
    .expect("the packets around the truncated one came back");
    assert_eq!(socket.skipped(), 1);
    assert_eq!(got, vec![sent[1].clone(), sent[2].clone()]);

    // The non-blocking variant and the limits.
    assert_eq!(socket.try_send_batch(&batch[..3]).unwrap(), 3);
    assert_eq!(socket.try_send_batch(&[]).unwrap(), 0);
    let too_many = vec![(addr, &sent[0][..]); MAX_BATCH + 1];
    let err = socket.try_send_batch(&too_many).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let other: IpAddr = if addr.is_ipv4() {
        "::1".parse().unwrap()
    } else {
        "127.0.0.1".parse().unwrap()
    };
    let err = socket
        .send_batch(&[(other, &sent[0][..])])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let mut bufs: Vec<&mut [u8]> = Vec::new();
    let err = socket.try_recv_batch(&mut bufs, &mut out).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}
