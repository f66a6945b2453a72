//! Raw ESP sockets (IP protocol 50), one per local address.
//!
//! Each socket is bound to its local address, so the kernel only delivers ESP packets addressed
//! to it and uses it as the source of what we send; the kernel builds the outer IP header.
//! On receive, IPv4 raw sockets hand over the IP header (stripped here), IPv6 ones do not.

use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::task::{Context, Poll};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::IoError;

/// The IP protocol number of ESP (RFC 4303).
pub const IPPROTO_ESP: i32 = 50;

/// One received ESP packet: where it came from and where the ESP header starts in the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPacket {
    pub remote: IpAddr,
    pub packet: Range<usize>,
}

/// A raw ESP socket bound to one local address.
pub struct RawEspSocket {
    fd: AsyncFd<Socket>,
    local: IpAddr,
}

impl RawEspSocket {
    /// Opens and binds a raw ESP socket on `local`. Must be called inside a tokio runtime.
    pub fn open(local: IpAddr) -> Result<RawEspSocket, IoError> {
        let err = |source| IoError::RawEsp {
            addr: local,
            source,
        };
        let domain = match local {
            IpAddr::V4(_) => Domain::IPV4,
            IpAddr::V6(_) => Domain::IPV6,
        };
        let socket =
            Socket::new(domain, Type::RAW, Some(Protocol::from(IPPROTO_ESP))).map_err(err)?;
        // No IPV6_V6ONLY: a raw IPv6 socket never sees IPv4, and the kernel refuses the option
        // on raw sockets (they count as bound from creation).
        crate::sockbuf::grow(&socket, crate::udp::SOCKET_BUFFER);
        socket.set_nonblocking(true).map_err(err)?;
        socket
            .bind(&SocketAddr::new(local, 0).into())
            .map_err(err)?;
        // SAFETY: the `Socket` owns its descriptor, keeps it open until it is dropped with the
        // `AsyncFd`, and always returns the same one from `as_raw_fd`.
        let fd = unsafe { AsyncFd::register(socket) }.map_err(|e| err(e.into()))?;
        Ok(RawEspSocket { fd, local })
    }

    pub fn local(&self) -> IpAddr {
        self.local
    }

    pub fn poll_recv_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Dropping the guard keeps the readiness; `try_recv` clears it on `WouldBlock`.
        self.fd.poll_read_ready(cx).map_ok(|_guard| ())
    }

    /// Receives one packet into `buf`. `Ok(None)`: a packet arrived but its IPv4 header is
    /// malformed (it is skipped). `WouldBlock` when nothing is waiting.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<Option<RawPacket>> {
        let (len, from) = self.fd.try_io(Interest::READABLE, |socket| {
            socket.recv_from(as_uninit(buf))
        })?;
        let len = len.min(buf.len());
        let received = buf.get(..len).unwrap_or(&[]);
        Ok(match self.local {
            IpAddr::V4(_) => strip_ipv4_header(received).map(|(src, _dst, packet)| RawPacket {
                remote: IpAddr::V4(src),
                packet,
            }),
            IpAddr::V6(_) => from.as_socket().map(|from| RawPacket {
                remote: from.ip(),
                packet: 0..len,
            }),
        })
    }

    /// Sends one ESP packet (starting at the ESP header) to `remote`.
    pub async fn send_to(&self, packet: &[u8], remote: IpAddr) -> io::Result<()> {
        let to = SockAddr::from(SocketAddr::new(remote, 0));
        self.fd
            .async_io(Interest::WRITABLE, |socket| socket.send_to(packet, &to))
            .await
            .map(|_| ())
    }
}

/// Splits an IPv4 packet as a raw socket delivers it: source, destination and the range of the
/// payload (after IHL * 4 bytes). `None` unless the header is a well-formed IPv4 header of at
/// least 20 bytes that fits in `packet`.
pub fn strip_ipv4_header(packet: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, Range<usize>)> {
    let first = *packet.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(first & 0x0f) * 4;
    if header_len < 20 || header_len > packet.len() {
        return None;
    }
    let src: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
    let dst: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
    Some((src.into(), dst.into(), header_len..packet.len()))
}

/// Views an initialised byte buffer as a buffer the kernel may write into.
fn as_uninit(buf: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and the callee (recvfrom) only writes
    // initialised bytes into it, so `buf` stays fully initialised.
    unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(ihl: u8) -> Vec<u8> {
        let mut h = vec![0u8; usize::from(ihl) * 4];
        h[0] = 0x40 | ihl;
        h[9] = 50;
        h[12..16].copy_from_slice(&[192, 0, 2, 1]);
        h[16..20].copy_from_slice(&[198, 51, 100, 7]);
        h
    }

    #[test]
    fn strips_plain_header() {
        let mut p = header(5);
        p.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1]);
        let (src, dst, range) = strip_ipv4_header(&p).unwrap();
        assert_eq!(src, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(dst, Ipv4Addr::new(198, 51, 100, 7));
        assert_eq!(&p[range], &[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1]);
    }

    #[test]
    fn strips_header_with_options() {
        let mut p = header(7);
        p.extend_from_slice(&[1, 2, 3]);
        assert_eq!(strip_ipv4_header(&p).unwrap().2, 28..31);
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(strip_ipv4_header(&[]), None);
        let mut v6 = header(5);
        v6[0] = 0x65;
        assert_eq!(strip_ipv4_header(&v6), None);
        let mut short_ihl = header(5);
        short_ihl[0] = 0x44;
        assert_eq!(strip_ipv4_header(&short_ihl), None);
        let mut long_ihl = header(5);
        long_ihl[0] = 0x4f;
        assert_eq!(strip_ipv4_header(&long_ihl), None);
    }

    proptest! {
        #[test]
        fn never_panics_and_range_fits(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Some((_, _, range)) = strip_ipv4_header(&bytes) {
                prop_assert!(range.start >= 20);
                prop_assert!(range.end == bytes.len());
                prop_assert!(range.start <= range.end);
            }
        }
    }
}
