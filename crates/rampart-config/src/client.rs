//! The remote-access client profile (`rampart client up --profile FILE`): where the gateway
//! is, how to authenticate, which transports to try and what to do with the host's routes and
//! DNS. Like the gateway file, every table denies unknown keys and errors name file, line,
//! key and what is allowed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rampart_ike::{EspProposal, Identity, IkeProposal, PeerAuth};
use zeroize::Zeroizing;

/// A validated client profile.
#[derive(Debug, Clone)]
pub struct ClientProfile {
    /// Names the connection in status and state files (default: the file name's stem).
    pub name: String,
    /// `gateway = "vpn.example.org"` or `"192.0.2.1:8443"`: the host and, when written, the
    /// port that replaces `visitor_port` (the seed's `host:PORT` form for Visitor Mode).
    pub gateway: String,
    pub gateway_port: Option<u16>,
    pub local_id: Identity,
    pub remote_id: Identity,
    /// How the gateway authenticates (and, without `eap`, how we do): PSK or certificates
    /// (with `eap`, the certificate part may hold only the CAs that verify the gateway).
    pub auth: PeerAuth,
    /// Empty unless `auth` is PSK.
    pub psk: Zeroizing<Vec<u8>>,
    /// EAP-MSCHAPv2 user name and password (`user`, `password` or `password_file`).
    pub eap: Option<(String, Zeroizing<String>)>,
    /// The transports the ladder may use, in the order it prefers them. Default all three.
    pub transports: Vec<ClientTransport>,
    /// RFC 9329 TCP port. Default 4500.
    pub tcp_port: u16,
    /// Visitor Mode (TLS) port. Default 443, or the gateway's `:PORT`.
    pub visitor_port: u16,
    /// ALPN offered in Visitor Mode. Default `"rampart-ike"`.
    pub alpn: String,
    /// CA (PEM) that verifies the gateway's TLS certificate; default: the IKE CAs of `auth`,
    /// else the system roots.
    pub tls_ca: Option<PathBuf>,
    /// The SNI sent and checked in Visitor Mode. Default: `gateway`'s host.
    pub tls_server_name: Option<String>,
    pub proxy: ProxySetting,
    pub ike_proposals: Vec<IkeProposal>,
    pub esp_proposals: Vec<EspProposal>,
    /// Offer only the first IKE proposal first; default true.
    pub small_first_proposal: bool,
    /// RFC 3948 NAT keepalive interval. Default 20 s.
    pub keepalive: Duration,
    /// Liveness check interval (a dead gateway is noticed within about 3 of these). Default 10 s.
    pub liveness: Duration,
    pub dns: DnsMode,
    /// nftables: nothing leaves outside the tunnel except to the gateway (and the captive
    /// portal while logging in). Default false.
    pub kill_switch: bool,
    /// Captive-portal probe URL (plain HTTP, expects `204`); `None` turns the probe off.
    pub captive_portal: Option<String>,
    /// Proxy replacement: write a PAC file here while connected, and serve it on `pac_listen`.
    pub pac_file: Option<PathBuf>,
    pub pac_listen: Option<SocketAddr>,
    /// TUN device. Default `rampart-c0`.
    pub device: String,
    /// Starting tunnel MTU. Default 1400; the active PMTU probe may lower it.
    pub mtu: u16,
    /// Active path-MTU probing after the CHILD SA is up. Default true.
    pub pmtu_probe: bool,
    /// Clamp TCP MSS on SYN and SYN-ACK through the tunnel. Default true.
    pub mss_clamp: bool,
    /// Where the client keeps what it changed (for cleanup after a crash) and its control
    /// socket. Default `/run/rampart/client`.
    pub state_dir: PathBuf,
}

/// One rung of the transport ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientTransport {
    /// IKE on UDP 500, NAT-T on the NAT-T port when a NAT is seen.
    Udp,
    /// RFC 9329 over TCP (`tcp_port`).
    Tcp,
    /// Visitor Mode: RFC 9329 inside TLS (`visitor_port`).
    Tls,
}

/// Which HTTP CONNECT proxy the stream transports go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxySetting {
    /// Direct connections only.
    None,
    /// `https_proxy` / `HTTPS_PROXY` / `all_proxy` from the environment, honouring `no_proxy`.
    /// The default.
    Environment,
    /// `proxy = "http://proxy.example:3128"`.
    Url {
        url: String,
        /// `proxy_user` / `proxy_password` for Basic or Digest (whichever the proxy asks).
        credentials: Option<(String, Zeroizing<String>)>,
    },
    /// `proxy_pac = "http://wpad/wpad.dat"` or a file path: evaluated for the gateway's URL.
    Pac {
        location: String,
        credentials: Option<(String, Zeroizing<String>)>,
    },
}

/// Where split DNS goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsMode {
    /// systemd-resolved when it runs, else resolv.conf. The default.
    Auto,
    /// systemd-resolved routing domains on the TUN device (resolvectl).
    Resolved,
    /// Rewrite /etc/resolv.conf (saved and restored).
    ResolvConf,
    /// Leave DNS alone.
    Off,
}
