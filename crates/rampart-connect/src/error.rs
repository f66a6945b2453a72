//! Why a connection attempt failed. Every variant's message is meant for the user as it is
//! (the client prints it in `rampart client status` and its log).

use std::io;

use thiserror::Error;

/// A failed [`crate::connect`]. The proxy variants name the proxy (`host:port`) so a user with
/// several (PAC) sees which one answered what.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// The gateway could not be reached directly (refused, unreachable, reset).
    #[error("cannot connect to {target}: {source}")]
    Unreachable {
        target: String,
        #[source]
        source: io::Error,
    },
    /// The proxy itself could not be reached.
    #[error("proxy {proxy} is unreachable: {source}")]
    ProxyUnreachable {
        proxy: String,
        #[source]
        source: io::Error,
    },
    /// The proxy answered 407 and no credentials are configured.
    #[error("proxy {proxy} requires authentication (set proxy_user and proxy_password)")]
    ProxyAuthRequired { proxy: String },
    /// The proxy answered 407 again after we sent credentials.
    #[error("proxy {proxy} refused the credentials for user {user:?} ({scheme})")]
    ProxyAuthRejected {
        proxy: String,
        user: String,
        scheme: &'static str,
    },
    /// The proxy asked only for authentication schemes we do not speak.
    #[error("proxy {proxy} asks for an unsupported authentication scheme: {offered}")]
    ProxyAuthUnsupported { proxy: String, offered: String },
    /// The proxy answered the CONNECT with something other than 2xx or 407.
    #[error("proxy {proxy} refused CONNECT to {target}: {status_line}")]
    ProxyRefused {
        proxy: String,
        target: String,
        status_line: String,
    },
    /// The proxy's answer is not an HTTP/1.x response head we can read.
    #[error("proxy {proxy} sent an invalid response: {why}")]
    ProxyProtocol { proxy: String, why: String },
    /// The connection (TCP, proxy exchange or TLS handshake) did not finish in time.
    #[error("{stage} timed out after {millis} ms")]
    Timeout { stage: &'static str, millis: u128 },
    /// The TLS handshake failed (certificate, ALPN, protocol).
    #[error("TLS handshake with {server_name} failed: {source}")]
    Tls {
        server_name: String,
        #[source]
        source: io::Error,
    },
    /// The TLS settings cannot be used (bad server name, unreadable or empty CA file, no system
    /// roots).
    #[error("TLS settings: {0}")]
    TlsConfig(String),
    /// Writing the `IKETCP` prefix or another I/O step after the connection was up failed.
    #[error("{stage}: {source}")]
    Io {
        stage: &'static str,
        #[source]
        source: io::Error,
    },
}
