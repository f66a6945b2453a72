//! Zero-copy views of IP packets: addresses, upper-layer protocol, ports and ICMP type/code,
//! as the policy lookup and the firewall need them. Parsing reads the buffer in place and never
//! allocates; every length in a header is checked against the buffer.

mod error;
mod packet;

pub use error::ParseError;
pub use packet::{proto, Fragment, PacketInfo, Transport};

#[cfg(test)]
mod tests;
