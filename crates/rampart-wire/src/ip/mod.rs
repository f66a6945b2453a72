//! Zero-copy views of IP packets: the fixed IPv4/IPv6 headers ([`Ipv4Header`], [`Ipv6Header`])
//! and a whole-packet description ([`PacketInfo`]: addresses, upper-layer protocol after IPv6
//! extension headers, ports and ICMP type/code) as the policy lookup, the firewall, the TUN
//! writer and the simulator need them; this is the one IP header parser of the workspace; and
//! TCP MSS clamping in place ([`clamp_mss`]).
//! Parsing reads the buffer in place and never allocates; every length in a header is checked
//! against the buffer.

mod error;
mod header;
pub mod mss;
mod packet;

pub use error::ParseError;
pub use header::{has_ports, Ipv4Header, Ipv6Header};
pub use mss::{clamp_mss, mss_for_mtu, MssError, MssOutcome};
pub use packet::{proto, Fragment, PacketInfo, Transport};

#[cfg(test)]
mod tests;
