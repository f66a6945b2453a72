//! Socket buffer sizing for the data sockets.
//!
//! A burst of ESP that arrives while the loop is busy waits in the socket's receive buffer; when
//! it overflows, the kernel drops the packet (and, for a raw protocol-50 socket, answers with ICMP
//! "protocol unreachable"). The default 208 KiB holds about 150 full-size packets, too few for a
//! TCP window at gigabit rates, so the buffers are raised past `net.core.rmem_max` where the
//! process is privileged (SO_RCVBUFFORCE), and to the sysctl's limit otherwise.

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
    // SAFETY: a valid descriptor owned by `socket`, and a pointer to a c_int of the given size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}
