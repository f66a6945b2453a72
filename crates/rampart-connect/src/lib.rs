//! Client transports for `rampart client`: how the IKE/ESP stream gets to the gateway when UDP
//! does not.
//!
//! - [`connect`]: TCP to the gateway, directly or through an HTTP CONNECT proxy (Basic or
//!   Digest authentication), optionally TLS (Visitor Mode: ALPN, SNI, CAs from a file or the
//!   system bundle), then the RFC 9329 `IKETCP` prefix. The result is a [`BoxStream`] ready for
//!   RFC 9329 framing (`rampart_io` frames it) and a [`PathInfo`] for status.
//! - [`proxy`]: where proxies come from (explicit, environment, PAC) as an ordered list of
//!   [`ProxyChoice`]s; [`pac`] evaluates PAC scripts.
//! - [`ladder`]: the sans-IO transport ladder (happy eyeballs over UDP, TCP, TLS and proxies);
//!   [`drive::run`] runs it with real attempts ([`udp_probe`] for UDP, [`connect`] for streams)
//!   and returns the winner (UDP, or the connected stream).
//! - [`captive`]: the captive-portal probe.
//! - [`entry_points`]: which of a profile's gateways (Multiple Entry Points) the next
//!   connection goes to, first-to-respond or primary/backup.
//! - [`stream_watch`]: when a connected stream counts as lost (frames out, none back, a check
//!   unanswered), so the client re-attaches its IKE SA on a new one.
//!
//! Nothing here runs IKE: the UDP probe only checks that the gateway answers a minimal
//! IKE_SA_INIT; the caller (the client shell) then runs the engine on the chosen transport and
//! hands a chosen stream to the I/O layer.

pub mod auth;
pub mod captive;
pub mod connector;
pub mod drive;
pub mod entry_points;
pub mod error;
pub mod http;
pub mod ladder;
pub mod learned;
pub mod pac;
pub mod proxy;
pub mod stream_watch;
pub mod udp_probe;

pub use connector::{
    client_config, connect, load_roots, AsyncStream, BoxStream, ConnectPlan, Connected, PathInfo,
    ProxyAuth, Roots, TlsSettings, SYSTEM_CA_FILES,
};
pub use error::ConnectError;
pub use proxy::{discover, Credentials, DiscoverError, Proxy, ProxyChoice, ProxySource};
