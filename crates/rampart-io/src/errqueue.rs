//! ICMP errors read from a UDP socket's error queue (`IP_RECVERR` / `IPV6_RECVERR`).
//!
//! With the option on, the kernel keeps each ICMP error that answers a datagram of ours in the
//! socket's error queue (instead of dropping it) and reports a pending error (`ECONNREFUSED`,
//! `EHOSTUNREACH`, ...) once on the next receive or send. `recvmsg(MSG_ERRQUEUE)` then returns
//! one entry: `msg_name` is the address the failed datagram was sent to, and a control
//! message (level `IPPROTO_IP`/`IPPROTO_IPV6`, type `IP_RECVERR`/`IPV6_RECVERR`) holds a
//! `sock_extended_err` with the origin and the ICMP type and code.
//!
//! Invariants:
//! - Parsing is bounds-checked and never trusts a length it was given; a malformed entry is
//!   [`QueuedError::Unparsed`], never a panic.
//! - Reading uses a caller-owned [`ErrQueueBuf`]: no allocation per entry.
//! - An ICMP error is only a hint: nothing here is authenticated (the kernel matched it to a
//!   datagram of ours, but anyone on the path can forge one).

use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// `SO_SELECT_ERR_QUEUE` (asm-generic/socket.h; not in the `libc` crate): a non-empty error
/// queue also polls `EPOLLPRI`, which an event loop can wait for like readability.
pub(crate) const SO_SELECT_ERR_QUEUE: libc::c_int = 45;

/// What an ICMP error said about a datagram we sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpKind {
    /// ICMP type 3 code 3, ICMPv6 type 1 code 4: nothing listens on that port (typically a NAT
    /// that forgot the mapping, or a peer that restarted).
    PortUnreachable,
    /// ICMP type 3 code 1, ICMPv6 type 1 code 3 (address unreachable).
    HostUnreachable,
    /// ICMP type 3 code 0, ICMPv6 type 1 code 0 (no route).
    NetUnreachable,
    /// ICMP type 3 codes 9, 10, 13, ICMPv6 type 1 code 1: a filter refused it.
    AdminProhibited,
    /// ICMP type 3 code 4 ("fragmentation needed"), ICMPv6 type 2 ("packet too big"): the
    /// path carries at most `mtu` bytes (the kernel's `ee_info`; 0 when it named none). Fed
    /// to [`rampart_node::Node::handle_path_mtu`].
    TooBig { mtu: u32 },
    /// Any other ICMP error (type and code as received).
    Other { icmp_type: u8, code: u8 },
}

impl IcmpKind {
    /// Classifies an ICMP (`v6 == false`) or ICMPv6 error.
    pub fn from_icmp(v6: bool, icmp_type: u8, code: u8) -> IcmpKind {
        match (v6, icmp_type, code) {
            (false, 3, 3) | (true, 1, 4) => IcmpKind::PortUnreachable,
            (false, 3, 1) | (true, 1, 3) => IcmpKind::HostUnreachable,
            (false, 3, 0) | (true, 1, 0) => IcmpKind::NetUnreachable,
            (false, 3, 9 | 10 | 13) | (true, 1, 1) => IcmpKind::AdminProhibited,
            (false, 3, 4) | (true, 2, _) => IcmpKind::TooBig { mtu: 0 },
            _ => IcmpKind::Other { icmp_type, code },
        }
    }

    /// [`IcmpKind::from_icmp`] with the kernel's `ee_info` (the MTU of a "too big").
    pub fn from_icmp_info(v6: bool, icmp_type: u8, code: u8, info: u32) -> IcmpKind {
        match IcmpKind::from_icmp(v6, icmp_type, code) {
            IcmpKind::TooBig { .. } => IcmpKind::TooBig { mtu: info },
            kind => kind,
        }
    }

    /// Whether this error hints that the peer's NAT mapping moved (port or host unreachable):
    /// the node is told ([`rampart_node::Node::handle_unreachable`]).
    pub fn is_nat_hint(self) -> bool {
        matches!(self, IcmpKind::PortUnreachable | IcmpKind::HostUnreachable)
    }
}

/// An ICMP error for a datagram sent from `local` to `remote`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpError {
    /// The socket's bound address.
    pub local: SocketAddr,
    /// The original destination of the datagram the error answers.
    pub remote: SocketAddr,
    pub kind: IcmpKind,
}

/// One entry of the error queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueuedError {
    /// An ICMP or ICMPv6 error.
    Icmp(IcmpError),
    /// A local error (origin `SO_EE_ORIGIN_LOCAL`, e.g. `EMSGSIZE` without an MTU): the send
    /// path already reported it to the sender; counted and dropped.
    Local { errno: u32 },
    /// A local `EMSGSIZE` naming the MTU the kernel knows for the route to `remote` (a
    /// datagram with DF was larger): like an ICMP "too big".
    LocalTooBig {
        local: SocketAddr,
        remote: SocketAddr,
        mtu: u32,
    },
    /// Another origin (timestamps, zero-copy notices: not enabled on these sockets).
    OtherOrigin { origin: u8 },
    /// No usable `sock_extended_err` or original destination (truncated or unexpected).
    Unparsed,
}

/// Room for the control messages of one error-queue entry: the extended error with its
/// offender address, plus the packet-info and TOS messages quinn-udp enabled. Aligned for
/// `cmsghdr`.
#[derive(Debug, Clone)]
pub struct ErrQueueBuf {
    control: [u64; 32],
}

impl ErrQueueBuf {
    pub fn new() -> ErrQueueBuf {
        ErrQueueBuf { control: [0; 32] }
    }
}

impl Default for ErrQueueBuf {
    fn default() -> Self {
        ErrQueueBuf::new()
    }
}

/// Reads one entry of `fd`'s error queue without blocking (`WouldBlock` when empty) and
/// classifies it; `local` is the socket's bound address.
pub(crate) fn recv_error(
    fd: RawFd,
    local: SocketAddr,
    buf: &mut ErrQueueBuf,
) -> io::Result<QueuedError> {
    // SAFETY: all-zero is a valid sockaddr_storage and msghdr.
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // No iovec: the payload of the failed datagram is not wanted (the kernel sets MSG_TRUNC).
    msg.msg_control = buf.control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 32]>();
    // SAFETY: every pointer in `msg` points to a live local or to `buf`, with its true length.
    let rc = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let remote = sockaddr_to_std(&name, msg.msg_namelen as usize);
    let len = msg.msg_controllen.min(size_of::<[u64; 32]>());
    // SAFETY: the control array is plain bytes of at least `len` (checked above).
    let control = unsafe { std::slice::from_raw_parts(buf.control.as_ptr().cast::<u8>(), len) };
    Ok(classify(local, remote, control))
}

/// Classifies an error-queue entry from its original destination and control messages.
pub fn classify(local: SocketAddr, remote: Option<SocketAddr>, control: &[u8]) -> QueuedError {
    let Some(ee) = extended_error(control) else {
        return QueuedError::Unparsed;
    };
    match ee.ee_origin {
        libc::SO_EE_ORIGIN_ICMP | libc::SO_EE_ORIGIN_ICMP6 => match remote {
            Some(remote) => QueuedError::Icmp(IcmpError {
                local,
                remote,
                // The origin, not the cmsg level, says which ICMP it was (a v6 socket may
                // carry ICMPv4 for mapped addresses).
                kind: IcmpKind::from_icmp_info(
                    ee.ee_origin == libc::SO_EE_ORIGIN_ICMP6,
                    ee.ee_type,
                    ee.ee_code,
                    ee.ee_info,
                ),
            }),
            None => QueuedError::Unparsed,
        },
        libc::SO_EE_ORIGIN_LOCAL => match remote {
            Some(remote) if ee.ee_errno == libc::EMSGSIZE as u32 && ee.ee_info > 0 => {
                QueuedError::LocalTooBig {
                    local,
                    remote,
                    mtu: ee.ee_info,
                }
            }
            _ => QueuedError::Local { errno: ee.ee_errno },
        },
        origin => QueuedError::OtherOrigin { origin },
    }
}

/// `CMSG_ALIGN`: control messages and their data start at multiples of `size_t`.
const fn cmsg_align(len: usize) -> usize {
    (len + size_of::<usize>() - 1) & !(size_of::<usize>() - 1)
}

/// The extended error of the first `IP_RECVERR` / `IPV6_RECVERR` control message in
/// `control`. Walks the messages with bounds checks (`CMSG_NXTHDR` semantics).
fn extended_error(control: &[u8]) -> Option<libc::sock_extended_err> {
    let header = cmsg_align(size_of::<libc::cmsghdr>());
    let mut offset = 0;
    while offset + size_of::<libc::cmsghdr>() <= control.len() {
        // SAFETY: the bytes are in bounds (checked) and cmsghdr is plain data.
        let hdr: libc::cmsghdr =
            unsafe { std::ptr::read_unaligned(control[offset..].as_ptr().cast()) };
        let len = hdr.cmsg_len as usize;
        if len < header || len > control.len() - offset {
            return None;
        }
        let data = &control[offset + header..offset + len];
        let v4 = hdr.cmsg_level == libc::IPPROTO_IP && hdr.cmsg_type == libc::IP_RECVERR;
        let v6 = hdr.cmsg_level == libc::IPPROTO_IPV6 && hdr.cmsg_type == libc::IPV6_RECVERR;
        if (v4 || v6) && data.len() >= size_of::<libc::sock_extended_err>() {
            // SAFETY: in bounds (checked) and sock_extended_err is plain data.
            let ee = unsafe { std::ptr::read_unaligned(data.as_ptr().cast()) };
            return Some(ee);
        }
        offset += cmsg_align(len);
    }
    None
}

/// A socket address the kernel wrote (`len` bytes of `storage`), if it is IPv4 or IPv6.
fn sockaddr_to_std(storage: &libc::sockaddr_storage, len: usize) -> Option<SocketAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family and length say a sockaddr_in is there; storage is large enough.
            let sin: libc::sockaddr_in = unsafe {
                std::ptr::read_unaligned((storage as *const libc::sockaddr_storage).cast())
            };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6: libc::sockaddr_in6 = unsafe {
                std::ptr::read_unaligned((storage as *const libc::sockaddr_storage).cast())
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Whether a receive or send failed only because an ICMP error for an earlier datagram was
/// pending on the socket (`IP_RECVERR` reports it once, then clears it): the operation may be
/// retried, and the error queue holds the details.
pub fn is_pending_icmp_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNREFUSED
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::EACCES
                | libc::EPROTO
                | libc::ENOPROTOOPT
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Control buffer with the given messages, laid out by the libc `CMSG_*` macros.
    fn control(messages: &[(libc::c_int, libc::c_int, &[u8])]) -> Vec<u8> {
        let space: usize = messages
            .iter()
            // SAFETY: CMSG_SPACE is arithmetic.
            .map(|(_, _, d)| unsafe { libc::CMSG_SPACE(d.len() as u32) } as usize)
            .sum();
        let mut buf = vec![0u64; space.div_ceil(8)];
        // SAFETY: msghdr points at `buf` with its length; each message fits (space summed
        // above), and CMSG_NXTHDR walks within it.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_control = buf.as_mut_ptr().cast();
            msg.msg_controllen = space;
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            for (level, kind, data) in messages {
                assert!(!cmsg.is_null());
                (*cmsg).cmsg_level = *level;
                (*cmsg).cmsg_type = *kind;
                (*cmsg).cmsg_len = libc::CMSG_LEN(data.len() as u32) as usize;
                std::ptr::copy_nonoverlapping(data.as_ptr(), libc::CMSG_DATA(cmsg), data.len());
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
            std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), space).to_vec()
        }
    }

    /// A `sock_extended_err` followed by a zeroed offender address, as the kernel writes it.
    fn extended(errno: i32, origin: u8, icmp_type: u8, code: u8) -> Vec<u8> {
        let ee = libc::sock_extended_err {
            ee_errno: errno as u32,
            ee_origin: origin,
            ee_type: icmp_type,
            ee_code: code,
            ee_pad: 0,
            ee_info: 0,
            ee_data: 0,
        };
        // SAFETY: sock_extended_err is plain data without padding.
        let mut bytes = unsafe {
            std::slice::from_raw_parts(
                (&ee as *const libc::sock_extended_err).cast::<u8>(),
                size_of::<libc::sock_extended_err>(),
            )
        }
        .to_vec();
        bytes.extend([0u8; 16]);
        bytes
    }

    const LOCAL: &str = "192.0.2.1:4500";
    const REMOTE: &str = "198.51.100.7:61000";

    fn local() -> SocketAddr {
        LOCAL.parse().unwrap()
    }

    #[test]
    fn icmp_port_unreachable_after_other_messages() {
        let pktinfo = [0u8; size_of::<libc::in_pktinfo>()];
        let tos = [0u8; 4];
        let ee = extended(libc::ECONNREFUSED, libc::SO_EE_ORIGIN_ICMP, 3, 3);
        let buf = control(&[
            (libc::IPPROTO_IP, libc::IP_PKTINFO, &pktinfo),
            (libc::IPPROTO_IP, libc::IP_TOS, &tos[..1]),
            (libc::IPPROTO_IP, libc::IP_RECVERR, &ee),
        ]);
        let remote = REMOTE.parse().unwrap();
        assert_eq!(
            classify(local(), Some(remote), &buf),
            QueuedError::Icmp(IcmpError {
                local: local(),
                remote,
                kind: IcmpKind::PortUnreachable
            })
        );
    }

    #[test]
    fn icmp6_kinds() {
        let remote: SocketAddr = "[2001:db8::7]:4500".parse().unwrap();
        let local: SocketAddr = "[2001:db8::1]:4500".parse().unwrap();
        for (code, kind) in [
            (4, IcmpKind::PortUnreachable),
            (3, IcmpKind::HostUnreachable),
            (0, IcmpKind::NetUnreachable),
            (1, IcmpKind::AdminProhibited),
            (
                5,
                IcmpKind::Other {
                    icmp_type: 1,
                    code: 5,
                },
            ),
        ] {
            let ee = extended(libc::ECONNREFUSED, libc::SO_EE_ORIGIN_ICMP6, 1, code);
            let buf = control(&[(libc::IPPROTO_IPV6, libc::IPV6_RECVERR, &ee)]);
            assert_eq!(
                classify(local, Some(remote), &buf),
                QueuedError::Icmp(IcmpError {
                    local,
                    remote,
                    kind
                }),
                "code {code}"
            );
        }
    }

    #[test]
    fn icmp4_kinds_and_hints() {
        assert_eq!(IcmpKind::from_icmp(false, 3, 1), IcmpKind::HostUnreachable);
        assert_eq!(IcmpKind::from_icmp(false, 3, 0), IcmpKind::NetUnreachable);
        assert_eq!(IcmpKind::from_icmp(false, 3, 13), IcmpKind::AdminProhibited);
        assert_eq!(
            IcmpKind::from_icmp(false, 11, 0),
            IcmpKind::Other {
                icmp_type: 11,
                code: 0
            }
        );
        // ICMPv4 codes mean nothing under ICMPv6 and the other way round.
        assert_eq!(
            IcmpKind::from_icmp(true, 3, 3),
            IcmpKind::Other {
                icmp_type: 3,
                code: 3
            }
        );
        assert!(IcmpKind::PortUnreachable.is_nat_hint());
        assert!(IcmpKind::HostUnreachable.is_nat_hint());
        assert!(!IcmpKind::NetUnreachable.is_nat_hint());
        assert!(!IcmpKind::AdminProhibited.is_nat_hint());
    }

    /// `extended` with `ee_info` set (the MTU of a "too big").
    fn extended_info(errno: i32, origin: u8, icmp_type: u8, code: u8, info: u32) -> Vec<u8> {
        let mut bytes = extended(errno, origin, icmp_type, code);
        let at = std::mem::offset_of!(libc::sock_extended_err, ee_info);
        bytes[at..at + 4].copy_from_slice(&info.to_ne_bytes());
        bytes
    }

    #[test]
    fn fragmentation_needed_and_packet_too_big_carry_the_mtu() {
        let remote: SocketAddr = REMOTE.parse().unwrap();
        let ee = extended_info(libc::EMSGSIZE, libc::SO_EE_ORIGIN_ICMP, 3, 4, 1280);
        let buf = control(&[(libc::IPPROTO_IP, libc::IP_RECVERR, &ee)]);
        assert_eq!(
            classify(local(), Some(remote), &buf),
            QueuedError::Icmp(IcmpError {
                local: local(),
                remote,
                kind: IcmpKind::TooBig { mtu: 1280 }
            })
        );
        let ee = extended_info(libc::EMSGSIZE, libc::SO_EE_ORIGIN_ICMP6, 2, 0, 1400);
        let buf = control(&[(libc::IPPROTO_IPV6, libc::IPV6_RECVERR, &ee)]);
        let QueuedError::Icmp(e) = classify(local(), Some(remote), &buf) else {
            panic!("an ICMP error")
        };
        assert_eq!(e.kind, IcmpKind::TooBig { mtu: 1400 });
        assert!(!e.kind.is_nat_hint());
        // The local stack's EMSGSIZE with the route's MTU.
        let ee = extended_info(libc::EMSGSIZE, libc::SO_EE_ORIGIN_LOCAL, 0, 0, 1300);
        let buf = control(&[(libc::IPPROTO_IP, libc::IP_RECVERR, &ee)]);
        assert_eq!(
            classify(local(), Some(remote), &buf),
            QueuedError::LocalTooBig {
                local: local(),
                remote,
                mtu: 1300
            }
        );
    }

    #[test]
    fn local_and_other_origins_and_garbage() {
        let remote = Some(REMOTE.parse().unwrap());
        let ee = extended(libc::EMSGSIZE, libc::SO_EE_ORIGIN_LOCAL, 0, 0);
        let buf = control(&[(libc::IPPROTO_IP, libc::IP_RECVERR, &ee)]);
        assert_eq!(
            classify(local(), remote, &buf),
            QueuedError::Local {
                errno: libc::EMSGSIZE as u32
            }
        );
        let ee = extended(0, 4, 0, 0);
        let buf = control(&[(libc::IPPROTO_IP, libc::IP_RECVERR, &ee)]);
        assert_eq!(
            classify(local(), remote, &buf),
            QueuedError::OtherOrigin { origin: 4 }
        );
        // An ICMP error without the original destination is of no use.
        let ee = extended(libc::ECONNREFUSED, libc::SO_EE_ORIGIN_ICMP, 3, 3);
        let buf = control(&[(libc::IPPROTO_IP, libc::IP_RECVERR, &ee)]);
        assert_eq!(classify(local(), None, &buf), QueuedError::Unparsed);
        // No extended error, a short one, a lying length, nothing at all.
        let tos = [0u8; 1];
        let buf = control(&[(libc::IPPROTO_IP, libc::IP_TOS, &tos)]);
        assert_eq!(classify(local(), remote, &buf), QueuedError::Unparsed);
        let buf = control(&[(libc::IPPROTO_IP, libc::IP_RECVERR, &ee[..8])]);
        assert_eq!(classify(local(), remote, &buf), QueuedError::Unparsed);
        let mut buf = control(&[(libc::IPPROTO_IP, libc::IP_RECVERR, &ee)]);
        buf[0] = 0xff;
        assert_eq!(classify(local(), remote, &buf), QueuedError::Unparsed);
        let full = control(&[(libc::IPPROTO_IP, libc::IP_RECVERR, &ee)]);
        for cut in 0..full.len() {
            // Truncated (MSG_CTRUNC) buffers never panic.
            let _ = classify(local(), remote, &full[..cut]);
        }
        assert_eq!(classify(local(), remote, &[]), QueuedError::Unparsed);
    }

    #[test]
    fn addresses_from_the_kernel() {
        // SAFETY: all-zero is a valid sockaddr_storage; the writes below stay inside it.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 61000u16.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(Ipv4Addr::new(198, 51, 100, 7)).to_be(),
            },
            sin_zero: [0; 8],
        };
        unsafe {
            std::ptr::write_unaligned((&mut storage as *mut libc::sockaddr_storage).cast(), sin)
        };
        assert_eq!(
            sockaddr_to_std(&storage, size_of::<libc::sockaddr_in>()),
            Some(REMOTE.parse().unwrap())
        );
        assert_eq!(sockaddr_to_std(&storage, 4), None, "short");
        storage.ss_family = libc::AF_UNIX as libc::sa_family_t;
        assert_eq!(sockaddr_to_std(&storage, 128), None);
    }

    #[test]
    fn pending_errors_are_recognised() {
        assert!(is_pending_icmp_error(&io::Error::from_raw_os_error(
            libc::ECONNREFUSED
        )));
        assert!(is_pending_icmp_error(&io::Error::from_raw_os_error(
            libc::EHOSTUNREACH
        )));
        assert!(!is_pending_icmp_error(&io::Error::from_raw_os_error(
            libc::EMSGSIZE
        )));
        assert!(!is_pending_icmp_error(&io::ErrorKind::WouldBlock.into()));
    }
}
