//! UDP sockets for IKE (port 500) and NAT traversal (port 4500): one per local address and port.
//!
//! No `UDP_ENCAP` socket option is set: ESP-in-UDP datagrams reach userspace like IKE
//! messages, and the node tells them apart by the non-ESP marker.

use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use crate::IoError;

/// Receive buffer asked for (best effort): a burst of full-size datagrams.
/// Receive and send buffer of every data socket (see [`crate::sockbuf`]).
pub(crate) const SOCKET_BUFFER: usize = 4 << 20;

/// A UDP socket bound to one local address and port.
pub struct UdpEndpoint {
    socket: UdpSocket,
    local: SocketAddr,
}

impl UdpEndpoint {
    /// Binds `addr` (IPv6 sockets are IPv6-only). Port 0 picks a free port; [`Self::local`]
    /// tells which. Must be called inside a tokio runtime.
    pub fn bind(addr: SocketAddr) -> Result<UdpEndpoint, IoError> {
        let err = |source| IoError::UdpBind { addr, source };
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
            .map_err(err)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true).map_err(err)?;
        }
        crate::sockbuf::grow(&socket, SOCKET_BUFFER);
        socket.set_nonblocking(true).map_err(err)?;
        socket.bind(&addr.into()).map_err(err)?;
        let local = socket
            .local_addr()
            .map_err(err)?
            .as_socket()
            .ok_or_else(|| err(io::Error::other("bound address is not an IP address")))?;
        let socket = UdpSocket::from_std(socket.into()).map_err(err)?;
        Ok(UdpEndpoint { socket, local })
    }

    /// The address this socket is bound to (what the node calls `local`).
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    pub fn poll_recv_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.socket.poll_recv_ready(cx)
    }

    /// Receives one datagram into `buf`, or `WouldBlock` when none is waiting.
    pub fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.socket.try_recv_from(buf)
    }

    pub async fn send_to(&self, data: &[u8], remote: SocketAddr) -> io::Result<()> {
        self.socket.send_to(data, remote).await.map(|_| ())
    }
}
