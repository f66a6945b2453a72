//! UDP sockets for IKE (port 500) and NAT traversal (port 4500): one per local address and port.
//!
//! No `UDP_ENCAP` socket option is set: ESP-in-UDP datagrams reach userspace like IKE
//! messages, and the node tells them apart by the non-ESP marker.
//!
//! # Batching
//!
//! Besides the one-datagram calls, an endpoint reads and writes in batches through
//! `quinn-udp`:
//!
//! - [`UdpEndpoint::try_recv_batch`] takes up to 32 entries per `recvmmsg`. From its first call
//!   on, the socket has UDP GRO switched on, so one entry may hold several datagrams of one flow
//!   laid end to end: [`RecvMeta::stride`] is the size of each (the last may be shorter) and
//!   [`datagrams`] splits an entry. Until then GRO stays off, so [`UdpEndpoint::try_recv_from`]
//!   always gets exactly one datagram; the two must not be mixed on one endpoint (once GRO is
//!   on, `try_recv_from` refuses to read).
//! - [`UdpEndpoint::send_gathered`] sends equal-size datagrams to one peer with one GSO
//!   `sendmsg` (`UDP_SEGMENT`), gathered from where they lie. The kernel caps one GSO send at [`MAX_GSO_SEGMENTS`] segments
//!   (`UDP_MAX_SEGMENTS` is 64, 128 on kernels since 6.11: 64 is safe everywhere) and at a total
//!   UDP payload of [`MAX_UDP_PAYLOAD_V4`] / [`MAX_UDP_PAYLOAD_V6`] bytes;
//!   [`UdpEndpoint::segments_per_send`] tells how many segments of a size fit. Each segment,
//!   headers included, must also fit the route's MTU (the kernel does not fragment GSO
//!   segments and answers `EMSGSIZE`); such a send goes out one datagram per `sendmsg` instead,
//!   where IP may fragment.
//!
//! # Fragmentation
//!
//! `quinn_udp::UdpSocketState::new` forbids fragmentation (QUIC probes the path MTU itself):
//! `IP_MTU_DISCOVER = IP_PMTUDISC_PROBE` (DF set, path MTU ignored) and, on IPv6,
//! `IPV6_MTU_DISCOVER = IPV6_PMTUDISC_PROBE` and `IPV6_DONTFRAG = 1`. IKE messages (certificate
//! chains, large proposals) and ESP-in-UDP packets routinely exceed the path MTU and must be
//! fragmented by IP, as they are on a strongSwan gateway, so [`UdpEndpoint::bind`] undoes this:
//! IPv4 `IP_PMTUDISC_DONT` (DF clear: routers may fragment too), IPv6 `IPV6_DONTFRAG = 0` and
//! the kernel's default `IPV6_PMTUDISC_WANT` (the sender fragments to the path MTU it learns).
//!
//! A remote-access client does the opposite ([`UdpEndpoint::forbid_fragmentation`]): its
//! tunnel MTU follows the path (probes and ICMP, `rampart_node::pmtu`), so every datagram
//! leaves with DF and the kernel's learned path MTU is ignored (`IP_PMTUDISC_PROBE`): a router
//! that cannot forward it answers "fragmentation needed" with the MTU, read from the error
//! queue, and a probe tests exactly the size it claims. (With `IP_PMTUDISC_DONT` the kernel
//! does not even queue "fragmentation needed".) A gateway keeps DF clear, so a middlebox that
//! fragments keeps working.
//!
//! # ICMP errors
//!
//! `IP_RECVERR` (`IPV6_RECVERR`) is on: ICMP errors answering our datagrams wait in the
//! socket's error queue ([`crate::errqueue`]) and `SO_SELECT_ERR_QUEUE` makes a non-empty queue
//! poll `EPOLLPRI`. [`UdpEndpoint::poll_error_ready`] waits for that on a second registration
//! of the socket (a duplicated descriptor registered for `EPOLLPRI` only, so data never wakes
//! it) and [`UdpEndpoint::try_recv_error`] reads one entry. The kernel also reports a pending
//! error once on the next receive or send: a receive that fails that way is not fatal (the
//! caller drains the queue and reads on), and a send that fails that way is tried once more,
//! since the error belongs to an earlier datagram.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use quinn_udp::UdpSocketState;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::errqueue::{self, ErrQueueBuf, QueuedError, SO_SELECT_ERR_QUEUE};
use crate::sockbuf::set_int_option;
use crate::IoError;

pub use quinn_udp::RecvMeta;

/// Receive buffer asked for (best effort): a burst of full-size datagrams.
/// Receive and send buffer of every data socket (see [`crate::sockbuf`]).
pub(crate) const SOCKET_BUFFER: usize = 4 << 20;

/// Most segments one GSO send may carry on every Linux kernel with UDP GSO (`UDP_MAX_SEGMENTS`
/// is 64 before 6.11 and 128 since; a send over the limit fails with `EINVAL`).
pub const MAX_GSO_SEGMENTS: usize = 64;

/// Largest UDP payload in one IPv4 datagram: 65535 - 20 (IP header) - 8 (UDP header).
pub const MAX_UDP_PAYLOAD_V4: usize = 65_507;

/// Largest UDP payload in one IPv6 datagram (no jumbogram): 65535 - 8 (UDP header).
pub const MAX_UDP_PAYLOAD_V6: usize = 65_527;

/// Size of a receive buffer that holds any entry [`UdpEndpoint::try_recv_batch`] may return: a
/// GRO entry stays under the default `gro_max_size` of 64 KiB, and a GSO entry looped back from
/// this host carries at most [`MAX_UDP_PAYLOAD_V6`] bytes. A smaller buffer truncates a
/// coalesced entry (the kernel drops what does not fit).
pub const RECV_BUFFER_SIZE: usize = 1 << 16;

/// A UDP socket bound to one local address and port.
pub struct UdpEndpoint {
    socket: UdpSocket,
    state: UdpSocketState,
    local: SocketAddr,
    /// The same socket, duplicated and registered for `EPOLLPRI` only: ready when the error
    /// queue is not empty (see the module doc).
    errors: AsyncFd<OwnedFd>,
    /// Whether `UDP_GRO` is on (set by the first [`Self::try_recv_batch`], never cleared).
    gro_on: AtomicBool,
    /// Set when the kernel refused a gathered GSO send with `EIO`/`EINVAL` (never cleared).
    gso_refused: AtomicBool,
}

impl UdpEndpoint {
    /// A remote-access client's socket: DF on every datagram and the kernel's learned path MTU
    /// ignored (`IP_PMTUDISC_PROBE`; IPv6 `IPV6_PMTUDISC_PROBE` and `IPV6_DONTFRAG`), so
    /// routers answer "too big" instead of fragmenting (see the module doc).
    pub fn forbid_fragmentation(&self) -> io::Result<()> {
        forbid(&self.socket, self.local.is_ipv6())
    }

    /// Binds `addr` (IPv6 sockets are IPv6-only). Port 0 picks a free port; [`Self::local`]
    /// tells which. Must be called inside a tokio runtime.
    pub fn bind(addr: SocketAddr) -> Result<UdpEndpoint, IoError> {
        UdpEndpoint::bind_with(addr, false)
    }

    /// Like [`UdpEndpoint::bind`], but with `IP_FREEBIND` / `IPV6_FREEBIND`: `addr` need not be
    /// on an interface yet. For a cluster's virtual addresses, which a standby member binds
    /// before it owns them (the kernel delivers to the socket once the address is added).
    pub fn bind_freebind(addr: SocketAddr) -> Result<UdpEndpoint, IoError> {
        UdpEndpoint::bind_with(addr, true)
    }

    fn bind_with(addr: SocketAddr, freebind: bool) -> Result<UdpEndpoint, IoError> {
        let err = |source| IoError::UdpBind { addr, source };
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
            .map_err(err)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true).map_err(err)?;
        }
        if freebind {
            crate::raw_esp::set_freebind(&socket, addr.ip()).map_err(err)?;
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
        let state = UdpSocketState::new((&socket).into()).map_err(err)?;
        allow_fragmentation(&socket, local.is_ipv6()).map_err(err)?;
        // quinn-udp switched GRO on where the kernel has it; it stays off until the endpoint is
        // read in batches (see the module doc). SO_TIMESTAMPNS is not used: without it the
        // kernel skips a clock read and a control message per datagram.
        if state.gro_segments() > 1 {
            set_int_option(&socket, libc::SOL_UDP, libc::UDP_GRO, 0).map_err(err)?;
        }
        let _ = set_int_option(&socket, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 0);
        let errors = enable_error_queue(&socket, local.is_ipv6()).map_err(err)?;
        Ok(UdpEndpoint {
            socket,
            state,
            local,
            errors,
            gro_on: AtomicBool::new(false),
            gso_refused: AtomicBool::new(false),
        })
    }

    /// The address this socket is bound to (what the node calls `local`).
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    pub fn poll_recv_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.socket.poll_recv_ready(cx)
    }

    /// Ready when the error queue may hold entries (until [`Self::try_recv_error`] found it
    /// empty). Data arriving does not make it ready.
    pub fn poll_error_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        match self.errors.poll_read_ready(cx) {
            Poll::Ready(Ok(_guard)) => Poll::Ready(()),
            // A registration error cannot be waited out: report ready, the read will say.
            Poll::Ready(Err(_)) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Reads one entry of the error queue into `buf` (no allocation); `WouldBlock` when the
    /// queue is empty, which also clears [`Self::poll_error_ready`]. Callable any time (e.g.
    /// after a receive failed with a pending ICMP error, before the poll noticed).
    pub fn try_recv_error(&self, buf: &mut ErrQueueBuf) -> io::Result<QueuedError> {
        let fd = self.socket.as_raw_fd();
        let mut called = false;
        let read = self.errors.try_io(Interest::READABLE, |_| {
            called = true;
            errqueue::recv_error(fd, self.local, buf)
        });
        match read {
            // Not marked ready: read anyway (nothing to clear if it is empty).
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && !called => {
                errqueue::recv_error(fd, self.local, buf)
            }
            other => other,
        }
    }

    /// Receives one datagram into `buf`, or `WouldBlock` when none is waiting.
    ///
    /// `InvalidInput` once the endpoint has been read with [`Self::try_recv_batch`]: GRO is on
    /// then, and one read could return several datagrams glued together.
    pub fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        if self.gro_on.load(Ordering::Relaxed) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "UDP endpoint is read in batches (GRO on): use try_recv_batch",
            ));
        }
        self.socket.try_recv_from(buf)
    }

    /// Sends one datagram. A send refused only because an ICMP error for an earlier datagram
    /// was pending (reported once, see the module doc) is tried once more.
    pub async fn send_to(&self, data: &[u8], remote: SocketAddr) -> io::Result<()> {
        match self.socket.send_to(data, remote).await {
            Err(e) if errqueue::is_pending_icmp_error(&e) => {
                self.socket.send_to(data, remote).await.map(|_| ())
            }
            other => other.map(|_| ()),
        }
    }

    /// Receives up to `min(bufs.len(), meta.len(), 32)` entries with one `recvmmsg`; returns
    /// how many, `n >= 1`, described by `meta[..n]` and held in `bufs[..n]`. `WouldBlock` (and
    /// tokio's readiness cleared) when nothing is waiting; `InvalidInput` for no buffers.
    ///
    /// Entry `i` holds `meta[i].len` bytes from `meta[i].addr`: one datagram, or with GRO
    /// several of `meta[i].stride` bytes each (the last may be shorter); [`datagrams`] splits
    /// it. Buffers should be [`RECV_BUFFER_SIZE`] bytes: a shorter one truncates a coalesced
    /// entry. The first call switches GRO on for good (see the module doc).
    pub fn try_recv_batch(
        &self,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> io::Result<usize> {
        let n = bufs.len().min(meta.len());
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "try_recv_batch needs at least one buffer",
            ));
        }
        self.enable_gro();
        let (bufs, meta) = (&mut bufs[..n], &mut meta[..n]);
        self.socket.try_io(Interest::READABLE, || {
            self.state.recv((&self.socket).into(), bufs, meta)
        })
    }

    /// Sends `datagrams` to `remote` with one GSO `sendmsg` that gathers them from where they
    /// lie (one `iovec` each), so sealed packets need no copy into a contiguous buffer. Every
    /// datagram but the last must be `segment_size` bytes and the last no longer; at most
    /// [`MAX_GSO_SEGMENTS`] of them within the UDP payload limit (else `InvalidInput`, nothing
    /// sent). Waits for room in the socket buffer. Without GSO, or when the kernel refuses the
    /// GSO send (`EIO`/`EINVAL`: a device without checksum offload; `EMSGSIZE`: segments over
    /// the route MTU), the datagrams go out one per `sendmsg`, where IP may fragment them.
    pub async fn send_gathered(
        &self,
        remote: SocketAddr,
        datagrams: &[&[u8]],
        segment_size: usize,
    ) -> io::Result<()> {
        let total: usize = datagrams.iter().map(|d| d.len()).sum();
        check_segments(total, segment_size, remote.is_ipv6())?;
        let shape_ok = datagrams.len() <= MAX_GSO_SEGMENTS
            && datagrams.split_last().is_some_and(|(last, rest)| {
                last.len() <= segment_size && rest.iter().all(|d| d.len() == segment_size)
            });
        if !shape_ok {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} datagrams do not form one GSO send of {segment_size}-byte segments",
                    datagrams.len()
                ),
            ));
        }
        if datagrams.len() > 1
            && self.max_segments() > 1
            && !self.gso_refused.load(Ordering::Relaxed)
        {
            let to = SockAddr::from(remote);
            let send = || {
                self.socket.async_io(Interest::WRITABLE, || {
                    gathered_gso_send(&self.socket, &to, datagrams, segment_size)
                })
            };
            let sent = match send().await {
                // An earlier datagram's ICMP error, reported now: this send did not happen.
                Err(e) if errqueue::is_pending_icmp_error(&e) => send().await,
                other => other,
            };
            match sent {
                Ok(()) => return Ok(()),
                Err(e) if matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL)) => {
                    // The device cannot take GSO: do not ask again.
                    self.gso_refused.store(true, Ordering::Relaxed);
                    tracing::debug!(
                        local = %self.local, %remote,
                        "GSO send refused ({e}); sending datagrams one by one from now on"
                    );
                }
                Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                    tracing::debug!(
                        local = %self.local, %remote, segment_size,
                        "GSO send too large for the route ({e}); sending these one by one"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        for datagram in datagrams {
            self.send_to(datagram, remote).await?;
        }
        Ok(())
    }

    /// How many segments one GSO send may carry: quinn-udp's `max_gso_segments` (64 where the
    /// kernel has UDP GSO, 1 where it has not or after a device refused it), at least 1.
    pub fn max_segments(&self) -> usize {
        self.state.max_gso_segments().max(1)
    }

    /// How many datagrams one received entry may hold: 64 where the kernel has UDP GRO (on
    /// from the first [`Self::try_recv_batch`]), 1 otherwise.
    pub fn gro_segments(&self) -> usize {
        self.state.gro_segments().max(1)
    }

    /// How many full segments of `segment_size` bytes one [`Self::send_gathered`] may
    /// carry to an IPv4 (`v6 == false`) or IPv6 peer with one GSO send: at most
    /// [`Self::max_segments`] and [`MAX_GSO_SEGMENTS`], with a total within the UDP payload
    /// limit; always at least 1.
    pub fn segments_per_send(&self, segment_size: usize, v6: bool) -> usize {
        segments_per_send(segment_size, v6, self.max_segments())
    }

    /// Switches `UDP_GRO` on the first time (where the kernel has it).
    fn enable_gro(&self) {
        if self.gro_on.load(Ordering::Relaxed) || self.state.gro_segments() <= 1 {
            return;
        }
        match set_int_option(&self.socket, libc::SOL_UDP, libc::UDP_GRO, 1) {
            Ok(()) => self.gro_on.store(true, Ordering::Relaxed),
            // quinn-udp set it a moment ago, so this does not happen; without GRO every entry
            // is one datagram, which is still correct.
            Err(e) => tracing::debug!(local = %self.local, "cannot switch UDP GRO on: {e}"),
        }
    }
}

/// One `sendmsg` of `datagrams` as a UDP GSO send of `segment_size`-byte segments (a
/// `UDP_SEGMENT` control message), gathered by the kernel from one `iovec` per datagram.
/// The caller has checked the shape (at most [`MAX_GSO_SEGMENTS`] datagrams).
fn gathered_gso_send(
    socket: &UdpSocket,
    to: &SockAddr,
    datagrams: &[&[u8]],
    segment_size: usize,
) -> io::Result<()> {
    let segment = u16::try_from(segment_size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment size over 65535"))?;
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_GSO_SEGMENTS];
    let count = datagrams.len().min(MAX_GSO_SEGMENTS);
    for (slot, d) in iov.iter_mut().zip(datagrams) {
        // sendmsg only reads through iov_base.
        slot.iov_base = d.as_ptr() as *mut libc::c_void;
        slot.iov_len = d.len();
    }
    // Room for one cmsghdr carrying a u16, aligned for cmsghdr.
    let mut control = [0u64; 4];
    // SAFETY: msghdr is plain data; every pointer set below outlives the sendmsg call (the
    // address, the iovec array, the datagrams and the control buffer are all borrowed or on
    // this stack frame), and the control buffer is large enough for CMSG_SPACE(2) (checked).
    unsafe {
        let space = libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) as usize;
        debug_assert!(space <= std::mem::size_of_val(&control));
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = to.as_ptr() as *mut libc::c_void;
        msg.msg_namelen = to.len();
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = count;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment);
        let fd = std::os::fd::AsRawFd::as_raw_fd(socket);
        if libc::sendmsg(fd, &msg, 0) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Switches `IP_RECVERR` / `IPV6_RECVERR` and `SO_SELECT_ERR_QUEUE` on and registers a
/// duplicate of the socket for `EPOLLPRI` (see the module doc).
fn enable_error_queue(socket: &UdpSocket, v6: bool) -> io::Result<AsyncFd<OwnedFd>> {
    if v6 {
        set_int_option(socket, libc::IPPROTO_IPV6, libc::IPV6_RECVERR, 1)?;
    } else {
        set_int_option(socket, libc::IPPROTO_IP, libc::IP_RECVERR, 1)?;
    }
    set_int_option(socket, libc::SOL_SOCKET, SO_SELECT_ERR_QUEUE, 1)?;
    let dup = socket.as_fd().try_clone_to_owned()?;
    // mio reports EPOLLPRI as readable: `poll_read_ready` on this registration waits for it.
    // SAFETY: `dup` is an open descriptor owned by the AsyncFd for its whole life, and
    // `OwnedFd::as_raw_fd` always returns it.
    unsafe { AsyncFd::register_with_interest(dup, Interest::PRIORITY) }.map_err(io::Error::from)
}

/// DF on every datagram, the learned path MTU ignored (see the module doc).
fn forbid(socket: &impl AsRawFd, v6: bool) -> io::Result<()> {
    if v6 {
        set_int_option(socket, libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 1)?;
        set_int_option(
            socket,
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_PROBE,
        )
    } else {
        set_int_option(
            socket,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_PROBE,
        )
    }
}

/// [`forbid`] for other sockets of the crate (raw ESP).
pub(crate) fn forbid_fragmentation_of(socket: &impl AsRawFd, v6: bool) -> io::Result<()> {
    forbid(socket, v6)
}

/// Undoes quinn-udp's ban on fragmentation (see the module doc).
fn allow_fragmentation(socket: &UdpSocket, v6: bool) -> io::Result<()> {
    if v6 {
        set_int_option(socket, libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 0)?;
        set_int_option(
            socket,
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_WANT,
        )?;
        // quinn-udp sets the IPv4 option on IPv6 sockets too (for mapped addresses); ours are
        // IPv6-only, so it is reset for tidiness and a refusal does not matter.
        let _ = set_int_option(
            socket,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DONT,
        );
        Ok(())
    } else {
        set_int_option(
            socket,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DONT,
        )
    }
}

/// Largest UDP payload of one datagram to an IPv4 or IPv6 peer.
pub fn max_udp_payload(v6: bool) -> usize {
    if v6 {
        MAX_UDP_PAYLOAD_V6
    } else {
        MAX_UDP_PAYLOAD_V4
    }
}

/// Datagrams `len` bytes make in segments of `segment_size` (> 0): `ceil(len / segment_size)`,
/// and 1 for `len == 0` (one empty datagram).
fn segment_count(len: usize, segment_size: usize) -> usize {
    len.div_ceil(segment_size.max(1)).max(1)
}

/// Whether a segmented send of `len` bytes is within what one GSO send may carry.
fn check_segments(len: usize, segment_size: usize, v6: bool) -> io::Result<()> {
    if segment_size == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "segment size is 0",
        ));
    }
    let count = segment_count(len, segment_size);
    if count > 1 && (count > MAX_GSO_SEGMENTS || len > max_udp_payload(v6)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{count} segments of {segment_size} bytes ({len} in all) exceed one GSO send \
                 ({MAX_GSO_SEGMENTS} segments, {} bytes)",
                max_udp_payload(v6)
            ),
        ));
    }
    Ok(())
}

/// Full segments of `segment_size` bytes one GSO send may carry, given the socket's
/// `max_segments`: at least 1.
fn segments_per_send(segment_size: usize, v6: bool, max_segments: usize) -> usize {
    let by_bytes = max_udp_payload(v6).checked_div(segment_size).unwrap_or(1);
    by_bytes.min(max_segments).clamp(1, MAX_GSO_SEGMENTS)
}

/// The datagrams of one entry filled by [`UdpEndpoint::try_recv_batch`]: `buf[..meta.len]` cut
/// every `meta.stride` bytes (the last may be shorter). An entry of 0 bytes is one empty
/// datagram. A `meta.len` past the buffer is cut to the buffer.
pub fn datagrams<'a>(buf: &'a [u8], meta: &RecvMeta) -> Datagrams<'a> {
    let entry = buf.get(..meta.len).unwrap_or(buf);
    let stride = if meta.stride == 0 {
        entry.len()
    } else {
        meta.stride
    };
    Datagrams {
        rest: Some(entry),
        stride: stride.max(1),
    }
}

/// Iterator over the datagrams of a coalesced buffer; see [`datagrams`].
#[derive(Debug, Clone)]
pub struct Datagrams<'a> {
    /// What is left; `None` once done. Starts as `Some` even when empty (one empty datagram).
    rest: Option<&'a [u8]>,
    /// Datagram size, > 0.
    stride: usize,
}

impl<'a> Iterator for Datagrams<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        let (head, tail) = rest.split_at(self.stride.min(rest.len()));
        self.rest = if tail.is_empty() { None } else { Some(tail) };
        Some(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sockbuf::int_option;

    #[test]
    fn segment_counts() {
        assert_eq!(segment_count(0, 1200), 1);
        assert_eq!(segment_count(1, 1200), 1);
        assert_eq!(segment_count(1200, 1200), 1);
        assert_eq!(segment_count(1201, 1200), 2);
        assert_eq!(segment_count(24_000, 1200), 20);
        assert_eq!(segment_count(24_100, 1200), 21);
    }

    #[test]
    fn per_send_limits() {
        // 1200-byte segments: 54 fit 65507 bytes, but GSO stops at 64 / max_segments.
        assert_eq!(segments_per_send(1200, false, 64), 54);
        assert_eq!(segments_per_send(1200, true, 64), 54);
        assert_eq!(segments_per_send(1000, false, 64), 64);
        assert_eq!(segments_per_send(1000, false, 128), 64);
        assert_eq!(segments_per_send(1000, false, 1), 1);
        assert_eq!(segments_per_send(1400, false, 64), 46);
        assert_eq!(segments_per_send(1400, true, 64), 46);
        // The IPv6 limit is 20 bytes higher: 65527 / 1365 = 48.005, 65507 / 1365 = 47.99.
        assert_eq!(segments_per_send(1365, false, 64), 47);
        assert_eq!(segments_per_send(1365, true, 64), 48);
        assert_eq!(segments_per_send(0, false, 64), 1);
        assert_eq!(segments_per_send(70_000, false, 64), 1);
    }

    #[test]
    fn send_checks() {
        assert!(check_segments(100, 0, false).is_err());
        assert!(
            check_segments(70_000, 70_000, false).is_ok(),
            "one datagram: the kernel says"
        );
        assert!(check_segments(64 * 1000, 1000, false).is_ok());
        assert!(
            check_segments(64 * 1000 + 1, 1000, false).is_err(),
            "65 segments"
        );
        assert!(check_segments(54 * 1200, 1200, false).is_ok());
        assert!(check_segments(MAX_UDP_PAYLOAD_V4, 1200, false).is_ok());
        assert!(check_segments(MAX_UDP_PAYLOAD_V4 + 1, 1200, false).is_err());
        assert!(check_segments(MAX_UDP_PAYLOAD_V4 + 1, 1200, true).is_ok());
        assert!(check_segments(MAX_UDP_PAYLOAD_V6 + 1, 1200, true).is_err());
    }

    fn meta(len: usize, stride: usize) -> RecvMeta {
        let mut m = RecvMeta::default();
        m.len = len;
        m.stride = stride;
        m
    }

    #[test]
    fn datagrams_split_by_stride() {
        let buf: Vec<u8> = (0..=255).collect();
        let parts: Vec<&[u8]> = datagrams(&buf, &meta(30, 10)).collect();
        assert_eq!(parts, vec![&buf[..10], &buf[10..20], &buf[20..30]]);
        let parts: Vec<&[u8]> = datagrams(&buf, &meta(25, 10)).collect();
        assert_eq!(parts, vec![&buf[..10], &buf[10..20], &buf[20..25]]);
        // No GRO: stride == len.
        assert_eq!(
            datagrams(&buf, &meta(7, 7)).collect::<Vec<_>>(),
            vec![&buf[..7]]
        );
        // Defensive: stride 0 means one datagram, len past the buffer is cut.
        assert_eq!(
            datagrams(&buf, &meta(7, 0)).collect::<Vec<_>>(),
            vec![&buf[..7]]
        );
        assert_eq!(datagrams(&buf[..5], &meta(9, 4)).count(), 2);
        assert_eq!(
            datagrams(&buf, &meta(0, 0)).collect::<Vec<_>>(),
            vec![&[] as &[u8]]
        );
    }

    #[tokio::test]
    async fn v4_socket_may_fragment_and_gro_waits_for_batches() {
        let ep = UdpEndpoint::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mtu = int_option(&ep.socket, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER).unwrap();
        assert_eq!(mtu, libc::IP_PMTUDISC_DONT);
        ep.forbid_fragmentation().unwrap();
        let mtu = int_option(&ep.socket, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER).unwrap();
        assert_eq!(mtu, libc::IP_PMTUDISC_PROBE);
        let gro = int_option(&ep.socket, libc::SOL_UDP, libc::UDP_GRO).unwrap();
        assert_eq!(gro, 0, "GRO off until the first batched read");
        let mut buf = [0u8; 64];
        let err = ep.try_recv_from(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);

        let mut bufs = [IoSliceMut::new(&mut buf)];
        let mut metas = [RecvMeta::default()];
        let err = ep.try_recv_batch(&mut bufs, &mut metas).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        if ep.gro_segments() > 1 {
            let gro = int_option(&ep.socket, libc::SOL_UDP, libc::UDP_GRO).unwrap();
            assert_eq!(gro, 1);
            let err = ep.try_recv_from(&mut buf).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
        let err = ep.try_recv_batch(&mut [], &mut metas).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[tokio::test]
    async fn error_queue_is_on_and_reports_a_closed_port() {
        let ep = UdpEndpoint::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_eq!(
            int_option(&ep.socket, libc::IPPROTO_IP, libc::IP_RECVERR).unwrap(),
            1
        );
        assert_eq!(
            int_option(&ep.socket, libc::SOL_SOCKET, SO_SELECT_ERR_QUEUE).unwrap(),
            1
        );
        // Loopback ICMP is not rate-limited: a closed port answers at once.
        let closed = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        ep.send_to(b"x", closed).await.unwrap();
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            std::future::poll_fn(|cx| ep.poll_error_ready(cx)),
        )
        .await
        .expect("no ICMP error queued");
        let mut buf = ErrQueueBuf::new();
        let got = ep.try_recv_error(&mut buf).unwrap();
        assert_eq!(
            got,
            QueuedError::Icmp(errqueue::IcmpError {
                local: ep.local(),
                remote: closed,
                kind: errqueue::IcmpKind::PortUnreachable,
            })
        );
        let err = ep.try_recv_error(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }

    #[tokio::test]
    async fn v6_socket_may_fragment() {
        let Ok(ep) = UdpEndpoint::bind("[::1]:0".parse().unwrap()) else {
            eprintln!("skipped: ::1 is not available");
            return;
        };
        let dontfrag = int_option(&ep.socket, libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG).unwrap();
        assert_eq!(dontfrag, 0);
        let mtu = int_option(&ep.socket, libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER).unwrap();
        assert_eq!(mtu, libc::IPV6_PMTUDISC_WANT);
        let recverr = int_option(&ep.socket, libc::IPPROTO_IPV6, libc::IPV6_RECVERR).unwrap();
        assert_eq!(recverr, 1);
    }
}
