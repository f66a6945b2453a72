//! Why an IP packet could not be described.

use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("empty packet")]
    Empty,
    #[error("unsupported IP version {0}")]
    Version(u8),
    /// Shorter than the fixed header of its version.
    #[error("packet shorter than its IP header")]
    ShortHeader,
    /// IPv4 IHL below 5 or beyond the total length.
    #[error("bad IPv4 header length")]
    HeaderLength,
    /// The length in the IP header is below the header or beyond the buffer.
    #[error("IP total length {claimed} does not fit the {available}-byte buffer")]
    TotalLength { claimed: usize, available: usize },
    /// An IPv6 extension header runs past the end of the packet.
    #[error("IPv6 extension header {0} is truncated")]
    ExtensionHeader(u8),
    /// The transport header of an unfragmented packet or first fragment is too short to hold
    /// the ports (or ICMP type and code).
    #[error("transport header of protocol {0} is truncated")]
    Transport(u8),
}
