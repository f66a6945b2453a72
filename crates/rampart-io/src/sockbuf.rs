//! Socket buffer sizing for the data sockets.
//!
//! A burst of ESP that arrives while the loop is busy waits in the socket's receive buffer; when
//! it overflows, the kernel drops the packet (and, for a raw protocol-50 socket, answers with ICMP
//! "protocol unreachable"). The default 208 KiB holds about 150 full-size packets, too few for a
//! TCP window at gigabit rates, so the buffers are raised past `net.core.rmem_max` where the
//! process is privileged (SO_RCVBUFFORCE), and to the sysctl's limit otherwise.

use std::io;
use std::os::fd::AsRawFd;

use socket2::Socket;

/// Raises both buffers of `socket` to `bytes` (best effort; logs what it got).
pub(crate) fn grow(socket: &Socket, bytes: usize) {
    let forced =
        force(socket, libc::SO_RCVBUFFORCE, bytes) && force(socket, libc::SO_SNDBUFFORCE, bytes);
    if !forced {
        // Unprivileged: the kernel caps these at net.core.{r,w}mem_max.
        let _ = socket.set_recv_buffer_size(bytes);
        let _ = socket.set_send_buffer_size(bytes);
        let got = socket.recv_buffer_size().unwrap_or(0);
        if got < bytes {
            tracing::debug!(
                wanted = bytes,
                got,
                "socket receive buffer capped by net.core.rmem_max; bursts may be dropped"
            );
        }
    }
}

fn force(socket: &Socket, option: libc::c_int, bytes: usize) -> bool {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    set_int_option(socket, libc::SOL_SOCKET, option, value).is_ok()
}

/// Sets an integer socket option (`setsockopt` with a `c_int` value).
pub(crate) fn set_int_option(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `socket` keeps its descriptor open for the call, and the pointer and length
    // describe one live c_int.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads an integer socket option (`getsockopt` into a `c_int`).
#[cfg(test)]
pub(crate) fn int_option(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `socket` keeps its descriptor open for the call; the kernel writes at most `len`
    // bytes into `value` and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Domain, Type};

    #[test]
    fn int_options_round_trip() {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
        set_int_option(&socket, libc::IPPROTO_IP, libc::IP_TTL, 17).unwrap();
        assert_eq!(
            int_option(&socket, libc::IPPROTO_IP, libc::IP_TTL).unwrap(),
            17
        );
    }

    #[test]
    fn unknown_option_is_an_error() {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
        let err = set_int_option(&socket, libc::SOL_SOCKET, 0x7fff, 1).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOPROTOOPT));
    }
}
