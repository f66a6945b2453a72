//! Typed configuration payload attributes (RFC 7296 section 3.15.1, RFC 8598) on top of the raw
//! [`ConfigPayload`]: one attribute at a time ([`CfgAttr`], borrowing the payload's bytes), and
//! the two messages a remote-access client and gateway exchange, [`CfgRequest`] and
//! [`CfgReply`].
//!
//! Value formats, as the RFCs fix them (every attribute may also be empty, see below):
//!
//! | attribute | value |
//! |---|---|
//! | INTERNAL_IP4_ADDRESS, _NETMASK, _DNS | 4 bytes |
//! | INTERNAL_IP4_SUBNET | 4 bytes address, 4 bytes netmask |
//! | INTERNAL_IP6_ADDRESS, INTERNAL_IP6_SUBNET | 16 bytes address, 1 byte prefix length (0..=128) |
//! | INTERNAL_IP6_DNS | 16 bytes |
//! | INTERNAL_DNS_DOMAIN | a domain name in DNS presentation format (IDNA A-labels), not NUL-terminated |
//!
//! An empty value asks for the attribute in a CFG_REQUEST and acknowledges it in a CFG_ACK; in
//! a CFG_REPLY or CFG_SET it carries nothing and is rejected. Netmasks must be contiguous.
//! Attribute types this module does not know are kept as [`CfgAttr::Other`] by the
//! per-attribute decoder and ignored by [`CfgRequest`] and [`CfgReply`], as RFC 7296 asks,
//! except Rampart's private-use RAMPART_ENTRY_POINTS ([`super::cfg_entry_points`]): a
//! malformed value of it is left out of the [`CfgReply`] (the rest of the reply stands).

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use thiserror::Error;

use super::cfg_entry_points::EntryPointList;
use super::payload::{cfg, ConfigPayload};

/// Why a configuration attribute or payload was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CfgError {
    /// A value whose length is not the one its type has.
    #[error("configuration attribute {kind} has length {len}")]
    Length { kind: u16, len: usize },
    /// An empty value where a value is required (CFG_REPLY, CFG_SET).
    #[error("configuration attribute {kind} is empty in a reply")]
    Empty { kind: u16 },
    /// A netmask whose one bits are not contiguous from the top.
    #[error("configuration attribute {kind} has a non-contiguous netmask")]
    Netmask { kind: u16 },
    /// An IPv6 prefix length above 128.
    #[error("configuration attribute {kind} has prefix length {prefix}")]
    PrefixLength { kind: u16, prefix: u8 },
    /// An INTERNAL_DNS_DOMAIN value that is not a domain name in presentation format.
    #[error("INTERNAL_DNS_DOMAIN is not a domain name: {0}")]
    DomainName(&'static str),
    /// A malformed RAMPART_ENTRY_POINTS value (see `cfg_entry_points`).
    #[error("RAMPART_ENTRY_POINTS: {0}")]
    EntryPoints(&'static str),
    /// A payload of another CFG type than the message expects.
    #[error("configuration payload type {got}, expected {expected}")]
    CfgType { got: u8, expected: u8 },
}

/// One configuration attribute, decoded. Borrowed from the payload it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CfgAttr<'a> {
    /// An attribute of a known type with an empty value: a request for it (CFG_REQUEST) or its
    /// acknowledgement (CFG_ACK).
    Empty(u16),
    Ip4Address(Ipv4Addr),
    /// A contiguous netmask.
    Ip4Netmask(Ipv4Addr),
    Ip4Dns(Ipv4Addr),
    /// Address and contiguous netmask; the address may have host bits set (as sent).
    Ip4Subnet(Ipv4Net),
    /// Address and prefix length.
    Ip6Address(Ipv6Net),
    Ip6Dns(Ipv6Addr),
    Ip6Subnet(Ipv6Net),
    /// A split-DNS domain (RFC 8598), validated, a trailing dot removed.
    DnsDomain(&'a str),
    /// An attribute of a type this module does not interpret.
    Other {
        kind: u16,
        value: &'a [u8],
    },
}

/// Whether this module knows the attribute type (and so validates its value).
pub fn is_known(kind: u16) -> bool {
    matches!(
        kind,
        cfg::INTERNAL_IP4_ADDRESS
            | cfg::INTERNAL_IP4_NETMASK
            | cfg::INTERNAL_IP4_DNS
            | cfg::INTERNAL_IP4_SUBNET
            | cfg::INTERNAL_IP6_ADDRESS
            | cfg::INTERNAL_IP6_DNS
            | cfg::INTERNAL_IP6_SUBNET
            | cfg::INTERNAL_DNS_DOMAIN
    )
}

impl<'a> CfgAttr<'a> {
    /// Decodes one attribute of a payload of type `cfg_type` (one of `cfg::CFG_*`). Empty
    /// values of known types are accepted only in CFG_REQUEST and CFG_ACK (and in payload types
    /// this module does not know).
    pub fn decode(cfg_type: u8, kind: u16, value: &'a [u8]) -> Result<CfgAttr<'a>, CfgError> {
        let kind = kind & 0x7fff;
        if !is_known(kind) {
            return Ok(CfgAttr::Other { kind, value });
        }
        if value.is_empty() {
            return match cfg_type {
                cfg::CFG_REPLY | cfg::CFG_SET => Err(CfgError::Empty { kind }),
                _ => Ok(CfgAttr::Empty(kind)),
            };
        }
        let length = || CfgError::Length {
            kind,
            len: value.len(),
        };
        Ok(match kind {
            cfg::INTERNAL_IP4_ADDRESS => CfgAttr::Ip4Address(v4(value).ok_or_else(length)?),
            cfg::INTERNAL_IP4_DNS => CfgAttr::Ip4Dns(v4(value).ok_or_else(length)?),
            cfg::INTERNAL_IP4_NETMASK => {
                let mask = v4(value).ok_or_else(length)?;
                Ipv4Net::with_netmask(Ipv4Addr::UNSPECIFIED, mask)
                    .map_err(|_| CfgError::Netmask { kind })?;
                CfgAttr::Ip4Netmask(mask)
            }
            cfg::INTERNAL_IP4_SUBNET => {
                let (addr, mask) = match value {
                    [a @ .., b, c, d, e] if a.len() == 4 => {
                        (v4(a).ok_or_else(length)?, Ipv4Addr::new(*b, *c, *d, *e))
                    }
                    _ => return Err(length()),
                };
                CfgAttr::Ip4Subnet(
                    Ipv4Net::with_netmask(addr, mask).map_err(|_| CfgError::Netmask { kind })?,
                )
            }
            cfg::INTERNAL_IP6_DNS => CfgAttr::Ip6Dns(v6(value).ok_or_else(length)?),
            cfg::INTERNAL_IP6_ADDRESS | cfg::INTERNAL_IP6_SUBNET => {
                let [a @ .., prefix] = value else {
                    return Err(length());
                };
                let addr = v6(a).ok_or_else(length)?;
                let net = Ipv6Net::new(addr, *prefix).map_err(|_| CfgError::PrefixLength {
                    kind,
                    prefix: *prefix,
                })?;
                if kind == cfg::INTERNAL_IP6_ADDRESS {
                    CfgAttr::Ip6Address(net)
                } else {
                    CfgAttr::Ip6Subnet(net)
                }
            }
            cfg::INTERNAL_DNS_DOMAIN => CfgAttr::DnsDomain(domain(value)?),
            _ => CfgAttr::Other { kind, value },
        })
    }

    /// The attribute type.
    pub fn kind(&self) -> u16 {
        match self {
            CfgAttr::Empty(kind) | CfgAttr::Other { kind, .. } => *kind,
            CfgAttr::Ip4Address(_) => cfg::INTERNAL_IP4_ADDRESS,
            CfgAttr::Ip4Netmask(_) => cfg::INTERNAL_IP4_NETMASK,
            CfgAttr::Ip4Dns(_) => cfg::INTERNAL_IP4_DNS,
            CfgAttr::Ip4Subnet(_) => cfg::INTERNAL_IP4_SUBNET,
            CfgAttr::Ip6Address(_) => cfg::INTERNAL_IP6_ADDRESS,
            CfgAttr::Ip6Dns(_) => cfg::INTERNAL_IP6_DNS,
            CfgAttr::Ip6Subnet(_) => cfg::INTERNAL_IP6_SUBNET,
            CfgAttr::DnsDomain(_) => cfg::INTERNAL_DNS_DOMAIN,
        }
    }

    /// Appends the value (not the type and length header) to `out`. A [`CfgAttr::DnsDomain`]
    /// is written as given: build it from a validated name (see [`validate_domain`]).
    pub fn encode_value(&self, out: &mut Vec<u8>) {
        match self {
            CfgAttr::Empty(_) => {}
            CfgAttr::Ip4Address(a) | CfgAttr::Ip4Netmask(a) | CfgAttr::Ip4Dns(a) => {
                out.extend_from_slice(&a.octets())
            }
            CfgAttr::Ip4Subnet(n) => {
                out.extend_from_slice(&n.addr().octets());
                out.extend_from_slice(&n.netmask().octets());
            }
            CfgAttr::Ip6Address(n) | CfgAttr::Ip6Subnet(n) => {
                out.extend_from_slice(&n.addr().octets());
                out.push(n.prefix_len());
            }
            CfgAttr::Ip6Dns(a) => out.extend_from_slice(&a.octets()),
            CfgAttr::DnsDomain(d) => out.extend_from_slice(d.as_bytes()),
            CfgAttr::Other { value, .. } => out.extend_from_slice(value),
        }
    }

    /// The attribute as the raw payload stores it.
    pub fn to_raw(&self) -> (u16, Vec<u8>) {
        let mut v = Vec::new();
        self.encode_value(&mut v);
        (self.kind(), v)
    }
}

/// Decodes every attribute of `cp` in order.
pub fn attributes(cp: &ConfigPayload) -> impl Iterator<Item = Result<CfgAttr<'_>, CfgError>> {
    cp.attributes
        .iter()
        .map(move |(kind, value)| CfgAttr::decode(cp.cfg_type, *kind, value))
}

fn v4(b: &[u8]) -> Option<Ipv4Addr> {
    <[u8; 4]>::try_from(b).ok().map(Ipv4Addr::from)
}

fn v6(b: &[u8]) -> Option<Ipv6Addr> {
    <[u8; 16]>::try_from(b).ok().map(Ipv6Addr::from)
}

/// Longest domain name in presentation format without the trailing dot (RFC 1035: 255 bytes on
/// the wire).
pub const MAX_DOMAIN_LEN: usize = 253;

/// Checks that `name` is a domain name in presentation format as RFC 8598 carries it and
/// returns it without a trailing dot: labels of 1 to 63 letters, digits, `-` or `_` (IDNA
/// A-labels are plain ASCII), separated by single dots, at most [`MAX_DOMAIN_LEN`] bytes. The
/// root (`.`) and escapes (`\`) are refused.
pub fn validate_domain(name: &str) -> Result<&str, CfgError> {
    domain(name.as_bytes())
}

fn domain(value: &[u8]) -> Result<&str, CfgError> {
    let name = value.strip_suffix(b".").unwrap_or(value);
    if name.is_empty() {
        return Err(CfgError::DomainName("empty or root"));
    }
    if name.len() > MAX_DOMAIN_LEN {
        return Err(CfgError::DomainName("longer than 253 bytes"));
    }
    for label in name.split(|&b| b == b'.') {
        if label.is_empty() {
            return Err(CfgError::DomainName("empty label"));
        }
        if label.len() > 63 {
            return Err(CfgError::DomainName("label longer than 63 bytes"));
        }
        if !label
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(CfgError::DomainName(
                "byte outside letters, digits, - and _",
            ));
        }
    }
    // Only ASCII was let through.
    std::str::from_utf8(name).map_err(|_| CfgError::DomainName("not ASCII"))
}

/// Whether a CFG_REQUEST asks for an address, and which one the client would like.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Ask<T> {
    #[default]
    No,
    /// Any address (an empty attribute).
    Any,
    /// This one if possible (the attribute carries it).
    Prefer(T),
}

impl<T> Ask<T> {
    pub fn is_asked(&self) -> bool {
        !matches!(self, Ask::No)
    }
}

/// What a remote-access client asks for in its CFG_REQUEST. Repeated attributes collapse:
/// the last preferred address wins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CfgRequest {
    pub ip4_address: Ask<Ipv4Addr>,
    pub ip6_address: Ask<Ipv6Net>,
    pub ip4_netmask: bool,
    pub ip4_dns: bool,
    pub ip6_dns: bool,
    pub ip4_subnet: bool,
    pub ip6_subnet: bool,
    /// INTERNAL_DNS_DOMAIN (empty in the request: "tell me your split-DNS domains").
    pub dns_domains: bool,
    /// RAMPART_ENTRY_POINTS (empty: "tell me your entry points").
    pub entry_points: bool,
}

impl CfgRequest {
    /// Reads a CFG_REQUEST payload; attribute types this module does not know are ignored.
    pub fn from_payload(cp: &ConfigPayload) -> Result<CfgRequest, CfgError> {
        expect_type(cp, cfg::CFG_REQUEST)?;
        let mut r = CfgRequest::default();
        for attr in attributes(cp) {
            match attr? {
                CfgAttr::Empty(cfg::INTERNAL_IP4_ADDRESS) if !r.ip4_address.is_asked() => {
                    r.ip4_address = Ask::Any
                }
                CfgAttr::Empty(cfg::INTERNAL_IP6_ADDRESS) if !r.ip6_address.is_asked() => {
                    r.ip6_address = Ask::Any
                }
                CfgAttr::Empty(_) => {}
                CfgAttr::Ip4Address(a) => r.ip4_address = Ask::Prefer(a),
                CfgAttr::Ip6Address(n) => r.ip6_address = Ask::Prefer(n),
                _ => {}
            }
        }
        // Every known kind, empty or carrying a value, counts as asked.
        for (kind, _) in &cp.attributes {
            match kind & 0x7fff {
                cfg::INTERNAL_IP4_NETMASK => r.ip4_netmask = true,
                cfg::INTERNAL_IP4_DNS => r.ip4_dns = true,
                cfg::INTERNAL_IP6_DNS => r.ip6_dns = true,
                cfg::INTERNAL_IP4_SUBNET => r.ip4_subnet = true,
                cfg::INTERNAL_IP6_SUBNET => r.ip6_subnet = true,
                cfg::INTERNAL_DNS_DOMAIN => r.dns_domains = true,
                cfg::RAMPART_ENTRY_POINTS => r.entry_points = true,
                _ => {}
            }
        }
        Ok(r)
    }

    /// The CFG_REQUEST payload: one attribute per thing asked, empty unless an address is
    /// preferred, in the order of the fields.
    pub fn to_payload(&self) -> ConfigPayload {
        let mut attrs = Vec::new();
        match self.ip4_address {
            Ask::No => {}
            Ask::Any => attrs.push(CfgAttr::Empty(cfg::INTERNAL_IP4_ADDRESS).to_raw()),
            Ask::Prefer(a) => attrs.push(CfgAttr::Ip4Address(a).to_raw()),
        }
        match self.ip6_address {
            Ask::No => {}
            Ask::Any => attrs.push(CfgAttr::Empty(cfg::INTERNAL_IP6_ADDRESS).to_raw()),
            Ask::Prefer(n) => attrs.push(CfgAttr::Ip6Address(n).to_raw()),
        }
        for (asked, kind) in [
            (self.ip4_netmask, cfg::INTERNAL_IP4_NETMASK),
            (self.ip4_dns, cfg::INTERNAL_IP4_DNS),
            (self.ip6_dns, cfg::INTERNAL_IP6_DNS),
            (self.ip4_subnet, cfg::INTERNAL_IP4_SUBNET),
            (self.ip6_subnet, cfg::INTERNAL_IP6_SUBNET),
            (self.dns_domains, cfg::INTERNAL_DNS_DOMAIN),
            (self.entry_points, cfg::RAMPART_ENTRY_POINTS),
        ] {
            if asked {
                attrs.push((kind, Vec::new()));
            }
        }
        ConfigPayload {
            cfg_type: cfg::CFG_REQUEST,
            attributes: attrs,
        }
    }
}

/// What a gateway assigns in its CFG_REPLY (Office Mode): addresses, DNS servers, the subnets
/// to route into the tunnel (split tunnel; none means the client decides) and split-DNS
/// domains (stored without a trailing dot).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CfgReply {
    pub ip4_addresses: Vec<Ipv4Addr>,
    pub ip4_netmask: Option<Ipv4Addr>,
    pub ip4_dns: Vec<Ipv4Addr>,
    pub ip4_subnets: Vec<Ipv4Net>,
    pub ip6_addresses: Vec<Ipv6Net>,
    pub ip6_dns: Vec<Ipv6Addr>,
    pub ip6_subnets: Vec<Ipv6Net>,
    pub dns_domains: Vec<String>,
    /// The gateway's entry points (RAMPART_ENTRY_POINTS), when it sent a well-formed list.
    pub entry_points: Option<EntryPointList>,
}

impl CfgReply {
    /// Reads a CFG_REPLY payload: every known attribute must carry a valid value; attribute
    /// types this module does not know are ignored; a repeated netmask keeps the last.
    pub fn from_payload(cp: &ConfigPayload) -> Result<CfgReply, CfgError> {
        expect_type(cp, cfg::CFG_REPLY)?;
        let mut r = CfgReply::default();
        for attr in attributes(cp) {
            match attr? {
                CfgAttr::Ip4Address(a) => r.ip4_addresses.push(a),
                CfgAttr::Ip4Netmask(m) => r.ip4_netmask = Some(m),
                CfgAttr::Ip4Dns(a) => r.ip4_dns.push(a),
                CfgAttr::Ip4Subnet(n) => r.ip4_subnets.push(n),
                CfgAttr::Ip6Address(n) => r.ip6_addresses.push(n),
                CfgAttr::Ip6Dns(a) => r.ip6_dns.push(a),
                CfgAttr::Ip6Subnet(n) => r.ip6_subnets.push(n),
                CfgAttr::DnsDomain(d) => r.dns_domains.push(d.to_owned()),
                CfgAttr::Empty(_) | CfgAttr::Other { .. } => {}
            }
        }
        // Malformed: left out; the caller logs it (`EntryPointList::find` gives the error).
        r.entry_points = EntryPointList::find(cp).and_then(Result::ok);
        Ok(r)
    }

    /// The CFG_REPLY payload, attributes in the order of the fields. Fails when a domain is
    /// not a valid name or the entry points break their invariants (see [`validate_domain`]); domains are written without a trailing dot.
    pub fn to_payload(&self) -> Result<ConfigPayload, CfgError> {
        let mut attrs: Vec<(u16, Vec<u8>)> = Vec::new();
        attrs.extend(
            self.ip4_addresses
                .iter()
                .map(|a| CfgAttr::Ip4Address(*a).to_raw()),
        );
        attrs.extend(self.ip4_netmask.map(|m| CfgAttr::Ip4Netmask(m).to_raw()));
        attrs.extend(self.ip4_dns.iter().map(|a| CfgAttr::Ip4Dns(*a).to_raw()));
        attrs.extend(
            self.ip4_subnets
                .iter()
                .map(|n| CfgAttr::Ip4Subnet(*n).to_raw()),
        );
        attrs.extend(
            self.ip6_addresses
                .iter()
                .map(|n| CfgAttr::Ip6Address(*n).to_raw()),
        );
        attrs.extend(self.ip6_dns.iter().map(|a| CfgAttr::Ip6Dns(*a).to_raw()));
        attrs.extend(
            self.ip6_subnets
                .iter()
                .map(|n| CfgAttr::Ip6Subnet(*n).to_raw()),
        );
        for d in &self.dns_domains {
            attrs.push(CfgAttr::DnsDomain(validate_domain(d)?).to_raw());
        }
        if let Some(l) = &self.entry_points {
            attrs.push((cfg::RAMPART_ENTRY_POINTS, l.encode()?));
        }
        Ok(ConfigPayload {
            cfg_type: cfg::CFG_REPLY,
            attributes: attrs,
        })
    }
}

fn expect_type(cp: &ConfigPayload, expected: u8) -> Result<(), CfgError> {
    if cp.cfg_type == expected {
        Ok(())
    } else {
        Err(CfgError::CfgType {
            got: cp.cfg_type,
            expected,
        })
    }
}

#[cfg(test)]
#[path = "cfg_attr_tests.rs"]
mod tests;
