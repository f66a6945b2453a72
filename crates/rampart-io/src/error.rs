//! Errors of the I/O shell. Each message names what failed and, where one is known, the fix.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// A failure to set up or run the gateway's I/O. Displayed as one line: what, why, fix.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("cannot start the cipher threads ([tunnel] crypto_threads): {message}")]
    CryptPool { message: String },
    #[error("cannot open TUN device {device}: {source}{}", Hint::tun(source))]
    Tun {
        device: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot bind UDP {addr}: {source}{}",
        Hint::bind(source, "is another IKE daemon running?")
    )]
    UdpBind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot open raw ESP socket on {addr}: {source}{}",
        Hint::bind(source, "is another program bound to it?")
    )]
    RawEsp {
        addr: IpAddr,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot open a netlink route socket: {source}{}",
        Hint::privileged(source)
    )]
    Netlink {
        #[source]
        source: io::Error,
    },
    #[error("cannot create status socket {}: {source}{}", path.display(), Hint::privileged(source))]
    StatusSocket {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "status socket {} is in use (is another rampart gateway running with this name?)",
        path.display()
    )]
    StatusSocketInUse { path: PathBuf },
    #[error("cannot install signal handlers: {source}")]
    Signals {
        #[source]
        source: io::Error,
    },
    #[error("cannot start the gateway from {}: {message}", config_path.display())]
    Node {
        config_path: PathBuf,
        message: String,
    },
    #[error("cannot start Visitor Mode ([remote_access.visitor]): {message}")]
    Visitor { message: String },
    #[error("cannot start the cluster's full sync: {message}")]
    Cluster { message: String },
    #[error(
        "cannot listen for full sync on TCP {addr}: {source}{}",
        Hint::bind(
            source,
            "is another rampart gateway running, or is [cluster] member address not on this host?"
        )
    )]
    SyncListen {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("{what} failed: {source}")]
    Runtime {
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// A route change the kernel refused. Not fatal: the event loop logs it and goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {op} route {prefix} dev {device}: {message}")]
pub struct RouteError {
    pub op: &'static str,
    pub prefix: ipnet::IpNet,
    pub device: String,
    pub message: String,
}

/// The ` (fix)` suffix of a message, empty when no fix is known.
struct Hint(Option<&'static str>);

impl Hint {
    fn privileged(err: &io::Error) -> Hint {
        Hint(match err.kind() {
            io::ErrorKind::PermissionDenied => Some("run as root or give CAP_NET_ADMIN"),
            _ => None,
        })
    }

    fn tun(err: &io::Error) -> Hint {
        match err.kind() {
            io::ErrorKind::NotFound => Hint(Some("is the tun module loaded? try `modprobe tun`")),
            io::ErrorKind::ResourceBusy => {
                Hint(Some("is another program attached to this device?"))
            }
            _ if err.raw_os_error() == Some(16) => {
                Hint(Some("is another program attached to this device?"))
            }
            _ => Hint::privileged(err),
        }
    }

    fn bind(err: &io::Error, in_use: &'static str) -> Hint {
        match err.kind() {
            io::ErrorKind::AddrInUse => Hint(Some(in_use)),
            io::ErrorKind::AddrNotAvailable => Hint(Some(
                "is local_address configured on an interface of this host?",
            )),
            io::ErrorKind::PermissionDenied => Hint(Some(
                "run as root or give CAP_NET_BIND_SERVICE and CAP_NET_RAW",
            )),
            _ => Hint(None),
        }
    }
}

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(fix) => write!(f, " ({fix})"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_in_use_names_address_and_fix() {
        let err = IoError::UdpBind {
            addr: "192.0.2.1:500".parse().unwrap(),
            source: io::Error::from(io::ErrorKind::AddrInUse),
        };
        let text = err.to_string();
        assert!(
            text.starts_with("cannot bind UDP 192.0.2.1:500: "),
            "{text}"
        );
        assert!(text.ends_with("(is another IKE daemon running?)"), "{text}");
    }

    #[test]
    fn tun_permission_denied_says_run_as_root() {
        let err = IoError::Tun {
            device: "rampart0".into(),
            source: io::Error::from_raw_os_error(1),
        };
        let text = err.to_string();
        assert!(
            text.starts_with("cannot open TUN device rampart0: Operation not permitted"),
            "{text}"
        );
        assert!(
            text.ends_with("(run as root or give CAP_NET_ADMIN)"),
            "{text}"
        );
    }

    #[test]
    fn unknown_error_has_no_hint() {
        let err = IoError::UdpBind {
            addr: "192.0.2.1:500".parse().unwrap(),
            source: io::Error::other("boom"),
        };
        assert_eq!(err.to_string(), "cannot bind UDP 192.0.2.1:500: boom");
    }
}
