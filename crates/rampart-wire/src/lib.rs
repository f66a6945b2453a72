//! Wire formats of Rampart: the IKEv2 message codec ([`ike`]), zero-copy IP header views
//! ([`ip`]), the internet checksum ([`checksum`]) and RFC 9329 TCP framing ([`tcp_encap`]).
//! Nothing here panics on untrusted bytes; every inconsistency is a typed error.

pub mod checksum;
pub mod ike;
pub mod ip;
pub mod tcp_encap;

pub use ike::{
    Header, Message, ParseError as IkeParseError, Payload, Proposal, TrafficSelector, Transform,
};
pub use ip::{PacketInfo, ParseError as IpParseError, Transport};
