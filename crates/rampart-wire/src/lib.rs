//! Wire formats of Rampart: the IKEv2 message codec ([`ike`]), zero-copy IP header views
//! ([`ip`]) and the internet checksum ([`checksum`]). Nothing here panics on untrusted bytes;
//! every inconsistency is a typed error.

pub mod checksum;
pub mod ike;
pub mod ip;

pub use ike::{
    Header, Message, ParseError as IkeParseError, Payload, Proposal, TrafficSelector, Transform,
};
pub use ip::{PacketInfo, ParseError as IpParseError, Transport};
