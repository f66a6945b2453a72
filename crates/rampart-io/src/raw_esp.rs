//! Raw ESP sockets (IP protocol 50), one per local address.
//!
//! Each socket is bound to its local address, so the kernel only delivers ESP packets addressed
//! to it and uses it as the source of what we send; the kernel builds the outer IP header.
//! On receive, IPv4 raw sockets hand over the IP header (stripped here), IPv6 ones do not.
//!
//! Besides the one-packet calls, a socket reads and writes up to [`MAX_BATCH`] packets per
//! system call (`recvmmsg` / `sendmmsg`), with the message headers on the stack: nothing is
//! allocated per call.

use std::io;
use std::mem::{self, MaybeUninit};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::IoError;

/// The IP protocol number of ESP (RFC 4303).
pub const IPPROTO_ESP: i32 = 50;

/// Most packets one [`RawEspSocket::try_recv_batch`] or [`RawEspSocket::try_send_batch`]
/// handles: the size of the message header arrays on the stack (about 13 KiB).
pub const MAX_BATCH: usize = 64;

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
    /// Packets [`Self::try_recv_batch`] skipped: malformed IPv4 header, no IPv6 source
    /// address, or cut short by a small buffer.
    skipped: AtomicU64,
}

impl RawEspSocket {
    /// Opens and binds a raw ESP socket on `local`. Must be called inside a tokio runtime.
    pub fn open(local: IpAddr) -> Result<RawEspSocket, IoError> {
        RawEspSocket::open_with(local, false)
    }

    /// Like [`RawEspSocket::open`], but `local` need not be on an interface yet
    /// (`IP_FREEBIND` / `IPV6_FREEBIND`): a cluster's virtual address on a standby member.
    pub fn open_freebind(local: IpAddr) -> Result<RawEspSocket, IoError> {
        RawEspSocket::open_with(local, true)
    }

    fn open_with(local: IpAddr, freebind: bool) -> Result<RawEspSocket, IoError> {
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
        if freebind {
            set_freebind(&socket, local).map_err(err)?;
        }
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
        Ok(RawEspSocket {
            fd,
            local,
            skipped: AtomicU64::new(0),
        })
    }

    pub fn local(&self) -> IpAddr {
        self.local
    }

    pub fn poll_recv_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Dropping the guard keeps the readiness; `try_recv` clears it on `WouldBlock`.
        self.fd.poll_read_ready(cx).map_ok(|_guard| ())
    }

    /// Waits until the socket may take a packet: after `WouldBlock` from
    /// [`Self::try_send_batch`], which tokio also answers before it has seen a new socket
    /// writable.
    pub fn poll_send_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.fd.poll_write_ready(cx).map_ok(|_guard| ())
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

    /// A remote-access client's socket: DF on every packet, the learned path MTU ignored
    /// (see [`crate::udp::UdpEndpoint::forbid_fragmentation`]).
    pub fn forbid_fragmentation(&self) -> io::Result<()> {
        crate::udp::forbid_fragmentation_of(self.fd.get_ref(), self.local.is_ipv6())
    }

    /// Sends one ESP packet (starting at the ESP header) to `remote`.
    pub async fn send_to(&self, packet: &[u8], remote: IpAddr) -> io::Result<()> {
        let to = SockAddr::from(SocketAddr::new(remote, 0));
        self.fd
            .async_io(Interest::WRITABLE, |socket| socket.send_to(packet, &to))
            .await
            .map(|_| ())
    }

    /// Receives up to `min(bufs.len(), out.len())` packets with one `recvmmsg`; returns `n`,
    /// and `out[k]` for `k < n` describes the packet held in `bufs[k]` (the range after the
    /// IPv4 header, or the whole IPv6 payload, as [`Self::try_recv`]).
    ///
    /// Packets with a malformed IPv4 header, no IPv6 source address, or cut short by a buffer
    /// too small for them are skipped and counted in [`Self::skipped`]; the packets after a
    /// skipped one are copied down to keep `out[k]` in `bufs[k]` (never seen in practice: the
    /// kernel builds the headers, and full-size buffers hold any packet). `Ok(0)` when every
    /// packet read was skipped: call again. `WouldBlock` (tokio's readiness cleared) when
    /// nothing is waiting; `InvalidInput` for no buffers or more than [`MAX_BATCH`].
    pub fn try_recv_batch(
        &self,
        bufs: &mut [&mut [u8]],
        out: &mut [RawPacket],
    ) -> io::Result<usize> {
        if bufs.len() > MAX_BATCH {
            return Err(too_many(bufs.len()));
        }
        let n = bufs.len().min(out.len());
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "try_recv_batch needs at least one buffer",
            ));
        }
        // SAFETY (zeroed): all-zero bytes are valid values of these plain C structs.
        let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { mem::zeroed() };
        let mut iovs: [libc::iovec; MAX_BATCH] = unsafe { mem::zeroed() };
        let mut names: [libc::sockaddr_storage; MAX_BATCH] = unsafe { mem::zeroed() };
        for (((hdr, iov), name), buf) in hdrs
            .iter_mut()
            .zip(&mut iovs)
            .zip(&mut names)
            .zip(&mut *bufs)
        {
            iov.iov_base = buf.as_mut_ptr().cast();
            iov.iov_len = buf.len();
            hdr.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
            hdr.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
        }
        let received = self.fd.try_io(Interest::READABLE, |socket| loop {
            // SAFETY: the first `n` headers point at `n` live iovecs, each describing a
            // distinct buffer of `bufs` (borrowed mutably for this call), and at `n` live
            // sockaddr_storage of the size given; the kernel writes only within them.
            let rc = unsafe {
                libc::recvmmsg(
                    socket.as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if rc >= 0 {
                break Ok((rc as usize).min(n));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                break Err(e);
            }
        })?;
        let mut kept = 0;
        for i in 0..received {
            let hdr = &hdrs[i];
            let len = (hdr.msg_len as usize).min(bufs[i].len());
            let parsed = if hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                None
            } else {
                parse_received(self.local, &bufs[i][..len], &names[i])
            };
            let Some(packet) = parsed else {
                self.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            if kept != i {
                let (low, high) = bufs.split_at_mut(i);
                let Some(to) = low[kept].get_mut(..len) else {
                    // A shorter buffer below cannot take it: skip it too.
                    self.skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                to.copy_from_slice(&high[0][..len]);
            }
            out[kept] = packet;
            kept += 1;
        }
        Ok(kept)
    }

    /// Packets [`Self::try_recv_batch`] has skipped since the socket was opened.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Sends `packets` (each starting at the ESP header, to its destination) with one
    /// `sendmmsg`; returns how many went out, in order from the first (`Ok(0)` only for no
    /// packets). `WouldBlock` (tokio's readiness cleared) when the socket buffer is full and
    /// none went, or tokio has not yet seen the socket writable ([`Self::poll_send_ready`]); any other error is the first packet's, which was not sent (the ones after
    /// it were not tried). `InvalidInput` for more than [`MAX_BATCH`] packets or a destination
    /// of the other address family than [`Self::local`].
    pub fn try_send_batch(&self, packets: &[(IpAddr, &[u8])]) -> io::Result<usize> {
        self.check_batch(packets)?;
        if packets.is_empty() {
            return Ok(0);
        }
        self.fd
            .try_io(Interest::WRITABLE, |socket| send_mmsg(socket, packets))
    }

    /// Sends all of `packets`, waiting for room in the socket buffer whenever it is full. A
    /// packet the kernel refuses (e.g. no route) is skipped and the rest still sent; the first
    /// such error is returned at the end. `InvalidInput` (nothing sent) as
    /// [`Self::try_send_batch`].
    pub async fn send_batch(&self, packets: &[(IpAddr, &[u8])]) -> io::Result<()> {
        self.check_batch(packets)?;
        let mut done = 0;
        let mut first_error = None;
        while let Some(rest) = packets.get(done..).filter(|rest| !rest.is_empty()) {
            match self
                .fd
                .async_io(Interest::WRITABLE, |socket| send_mmsg(socket, rest))
                .await
            {
                Ok(sent) => done += sent.max(1),
                Err(e) => {
                    tracing::debug!(local = %self.local, remote = %rest[0].0, "ESP send failed: {e}");
                    first_error.get_or_insert(e);
                    done += 1;
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn check_batch(&self, packets: &[(IpAddr, &[u8])]) -> io::Result<()> {
        if packets.len() > MAX_BATCH {
            return Err(too_many(packets.len()));
        }
        if let Some((remote, _)) = packets
            .iter()
            .find(|(r, _)| r.is_ipv4() != self.local.is_ipv4())
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "cannot send ESP to {remote} from raw socket on {}",
                    self.local
                ),
            ));
        }
        Ok(())
    }
}

/// One `sendmmsg` of up to [`MAX_BATCH`] packets: how many went out (> 0), or the error of the
/// first. The caller checked the count.
/// `IP_FREEBIND` (IPv4) or `IPV6_FREEBIND` (IPv6): binding to an address that is not (yet) on
/// any interface succeeds.
pub(crate) fn set_freebind(socket: &Socket, local: IpAddr) -> io::Result<()> {
    match local {
        IpAddr::V4(_) => socket.set_freebind_v4(true),
        IpAddr::V6(_) => socket.set_freebind_v6(true),
    }
}

fn send_mmsg(socket: &Socket, packets: &[(IpAddr, &[u8])]) -> io::Result<usize> {
    let n = packets.len().min(MAX_BATCH);
    // SAFETY (zeroed): all-zero bytes are valid values of these plain C structs.
    let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { mem::zeroed() };
    let mut iovs: [libc::iovec; MAX_BATCH] = unsafe { mem::zeroed() };
    let mut names: [libc::sockaddr_storage; MAX_BATCH] = unsafe { mem::zeroed() };
    for (((hdr, iov), name), (remote, packet)) in
        hdrs.iter_mut().zip(&mut iovs).zip(&mut names).zip(packets)
    {
        // sendmsg reads through this pointer and never writes: the cast to *mut is only
        // because iovec is shared with recvmsg.
        iov.iov_base = packet.as_ptr().cast_mut().cast();
        iov.iov_len = packet.len();
        hdr.msg_hdr.msg_namelen = write_sockaddr(*remote, name);
        hdr.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
        hdr.msg_hdr.msg_iov = iov;
        hdr.msg_hdr.msg_iovlen = 1;
    }
    loop {
        // SAFETY: the first `n` headers point at `n` live iovecs over the packets (borrowed for
        // this call) and at `n` initialised socket addresses of the lengths given.
        let rc = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if rc > 0 {
            return Ok(rc as usize);
        }
        let e = if rc == 0 {
            io::Error::from(io::ErrorKind::WouldBlock)
        } else {
            io::Error::last_os_error()
        };
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn too_many(count: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{count} packets in one batch, at most {MAX_BATCH}"),
    )
}

/// The packet as [`RawEspSocket::try_recv`] reports it: on IPv4 the source and the range after
/// the header (`None` if malformed), on IPv6 the source from `name` (`None` if it is not an
/// IPv6 address) and the whole buffer.
fn parse_received(
    local: IpAddr,
    received: &[u8],
    name: &libc::sockaddr_storage,
) -> Option<RawPacket> {
    match local {
        IpAddr::V4(_) => strip_ipv4_header(received).map(|(src, _dst, packet)| RawPacket {
            remote: IpAddr::V4(src),
            packet,
        }),
        IpAddr::V6(_) => read_sockaddr(name)
            .filter(IpAddr::is_ipv6)
            .map(|remote| RawPacket {
                remote,
                packet: 0..received.len(),
            }),
    }
}

/// Writes `ip` (port 0: a raw socket takes no port) into `storage`; returns its length.
fn write_sockaddr(ip: IpAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match ip {
        IpAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is larger than sockaddr_in and aligned for it.
            let sin = unsafe {
                &mut *(storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = 0;
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(v4.octets()),
            };
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        IpAddr::V6(v6) => {
            // SAFETY: sockaddr_storage is larger than sockaddr_in6 and aligned for it.
            let sin6 = unsafe {
                &mut *(storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = 0;
            sin6.sin6_flowinfo = 0;
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: v6.octets(),
            };
            sin6.sin6_scope_id = 0;
            mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// The IP address in `storage`, `None` unless it holds an IPv4 or IPv6 address.
fn read_sockaddr(storage: &libc::sockaddr_storage) -> Option<IpAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large and
            // aligned enough for.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(IpAddr::V4(Ipv4Addr::from(
                sin.sin_addr.s_addr.to_ne_bytes(),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
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

    #[test]
    fn sockaddr_round_trip() {
        for ip in [
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            IpAddr::V6("2001:db8::7".parse().unwrap()),
        ] {
            // SAFETY: all-zero is a valid sockaddr_storage.
            let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
            let len = write_sockaddr(ip, &mut storage);
            let want = if ip.is_ipv4() { 16 } else { 28 };
            assert_eq!(len as usize, want);
            assert_eq!(read_sockaddr(&storage), Some(ip));
            let back = SockAddr::from(SocketAddr::new(ip, 0));
            assert_eq!(back.len(), len, "same length as socket2 gives");
        }
        // SAFETY: as above.
        let unknown: libc::sockaddr_storage = unsafe { mem::zeroed() };
        assert_eq!(read_sockaddr(&unknown), None);
    }

    #[test]
    fn parse_received_per_family() {
        let mut p = header(5);
        p.extend_from_slice(&[9, 9, 9]);
        // SAFETY: all-zero is a valid sockaddr_storage.
        let mut name: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let v4_local = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let got = parse_received(v4_local, &p, &name).unwrap();
        assert_eq!(got.remote, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(got.packet, 20..23);
        assert_eq!(parse_received(v4_local, &p[..10], &name), None);

        let v6_local = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(
            parse_received(v6_local, &p, &name),
            None,
            "no source address"
        );
        let from: Ipv6Addr = "2001:db8::1".parse().unwrap();
        write_sockaddr(IpAddr::V6(from), &mut name);
        let got = parse_received(v6_local, &p, &name).unwrap();
        assert_eq!(got.remote, IpAddr::V6(from));
        assert_eq!(got.packet, 0..p.len());
        write_sockaddr(IpAddr::V4(Ipv4Addr::LOCALHOST), &mut name);
        assert_eq!(
            parse_received(v6_local, &p, &name),
            None,
            "IPv4 source on IPv6"
        );
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
