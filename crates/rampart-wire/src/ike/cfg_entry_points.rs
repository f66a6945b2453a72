//! The gateway's entry points as a private-use configuration attribute (RFC 7296 3.15.1:
//! attribute types 16384..=32767 are private use), [`cfg::RAMPART_ENTRY_POINTS`].
//!
//! A remote-access client asks for it with an empty attribute of that type in its CFG_REQUEST
//! (a gateway that does not know the type ignores it, as RFC 7296 asks); a Rampart gateway
//! with `entry_points` configured answers in its CFG_REPLY with the value
//!
//! ```text
//! selection (1 byte: 0 unspecified, 1 first-to-respond, 2 primary-backup)
//! entries   (UTF-8, separated by "\n", each `host` or `host:port`, `[v6]:port` for IPv6)
//! ```
//!
//! Invariants of a decoded [`EntryPointList`]: 1 to [`MAX_ENTRY_POINTS`] entries, each a
//! valid entry (see [`validate_entry_point`]) of at most [`MAX_ENTRY_LEN`] bytes, no entry
//! twice. Decoding is strict: anything else is a [`CfgError::EntryPoints`], never a panic.

use std::net::IpAddr;

use super::cfg_attr::{validate_domain, CfgError};
use super::payload::{cfg, ConfigPayload};

/// Most entry points one list carries.
pub const MAX_ENTRY_POINTS: usize = 16;
/// Longest entry: a 253-byte name, or `[` IPv6 `]`, and `:65535`.
pub const MAX_ENTRY_LEN: usize = 253 + 6;
/// Longest attribute value: the selection byte, the entries and their separators.
pub const MAX_VALUE_LEN: usize = 1 + MAX_ENTRY_POINTS * (MAX_ENTRY_LEN + 1);

/// How the gateway suggests clients choose among its entry points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EntryPointSelection {
    /// The gateway does not say: the client keeps its own.
    #[default]
    Unspecified,
    FirstToRespond,
    PrimaryBackup,
}

impl EntryPointSelection {
    fn to_byte(self) -> u8 {
        match self {
            EntryPointSelection::Unspecified => 0,
            EntryPointSelection::FirstToRespond => 1,
            EntryPointSelection::PrimaryBackup => 2,
        }
    }

    fn from_byte(b: u8) -> Option<EntryPointSelection> {
        Some(match b {
            0 => EntryPointSelection::Unspecified,
            1 => EntryPointSelection::FirstToRespond,
            2 => EntryPointSelection::PrimaryBackup,
            _ => return None,
        })
    }

    /// `"first-to-respond"`, `"primary-backup"`, or `None` when unspecified.
    pub fn as_str(self) -> Option<&'static str> {
        match self {
            EntryPointSelection::Unspecified => None,
            EntryPointSelection::FirstToRespond => Some("first-to-respond"),
            EntryPointSelection::PrimaryBackup => Some("primary-backup"),
        }
    }
}

/// The entry points a gateway hands its remote-access clients.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct EntryPointList {
    pub selection: EntryPointSelection,
    pub entries: Vec<String>,
}

/// Checks one entry: `host` or `host:port`, where host is an IP address or a domain name
/// (see [`validate_domain`]); an IPv6 address with a port is written `[addr]:port`. The port
/// is 1..=65535.
pub fn validate_entry_point(entry: &str) -> Result<(), CfgError> {
    let bad = CfgError::EntryPoints;
    if entry.is_empty() {
        return Err(bad("empty entry"));
    }
    if entry.len() > MAX_ENTRY_LEN {
        return Err(bad("entry longer than 259 bytes"));
    }
    if entry.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        let (addr, port) = rest
            .split_once("]:")
            .ok_or(bad("bracketed address without ]:port"))?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("bracketed host is not an IPv6 address"));
        }
        (None, Some(port))
    } else {
        match entry.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(entry), None),
        }
    };
    if let Some(p) = port {
        let valid = !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u16>().is_ok_and(|n| n != 0);
        if !valid {
            return Err(bad("port is not a number in 1..=65535"));
        }
    }
    if let Some(h) = host {
        if h.parse::<IpAddr>().is_err() && validate_domain(h).is_err() {
            return Err(bad("host is neither an IP address nor a domain name"));
        }
        if h.contains(':') {
            return Err(bad("IPv6 address with a port must be written [addr]:port"));
        }
    }
    Ok(())
}

impl EntryPointList {
    /// Decodes an attribute value strictly (see the module invariants).
    pub fn decode(value: &[u8]) -> Result<EntryPointList, CfgError> {
        let bad = CfgError::EntryPoints;
        let [sel, rest @ ..] = value else {
            return Err(bad("empty value"));
        };
        if value.len() > MAX_VALUE_LEN {
            return Err(bad("value too long"));
        }
        let selection = EntryPointSelection::from_byte(*sel).ok_or(bad("unknown selection"))?;
        let text = std::str::from_utf8(rest).map_err(|_| bad("entries are not UTF-8"))?;
        let mut entries: Vec<String> = Vec::new();
        for e in text.split('\n') {
            if entries.len() == MAX_ENTRY_POINTS {
                return Err(bad("more than 16 entries"));
            }
            validate_entry_point(e)?;
            if entries.iter().any(|x| x == e) {
                return Err(bad("an entry is listed twice"));
            }
            entries.push(e.to_owned());
        }
        Ok(EntryPointList { selection, entries })
    }

    /// The attribute value. Fails when the list breaks an invariant (so a gateway never sends
    /// what a client would refuse).
    pub fn encode(&self) -> Result<Vec<u8>, CfgError> {
        let mut out = vec![self.selection.to_byte()];
        out.extend_from_slice(self.entries.join("\n").as_bytes());
        // Checking the bytes with the decoder keeps both sides' rules one.
        EntryPointList::decode(&out)?;
        Ok(out)
    }

    /// The first [`cfg::RAMPART_ENTRY_POINTS`] attribute of `cp` (any CFG type), decoded;
    /// `None` when there is none.
    pub fn find(cp: &ConfigPayload) -> Option<Result<EntryPointList, CfgError>> {
        cp.attributes
            .iter()
            .find(|(kind, _)| kind & 0x7fff == cfg::RAMPART_ENTRY_POINTS)
            .map(|(_, value)| EntryPointList::decode(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(sel: EntryPointSelection, e: &[&str]) -> EntryPointList {
        EntryPointList {
            selection: sel,
            entries: e.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn round_trip() {
        for l in [
            list(EntryPointSelection::Unspecified, &["vpn-eu.example.org"]),
            list(
                EntryPointSelection::PrimaryBackup,
                &[
                    "203.0.113.7:4500",
                    "vpn.example.org:443",
                    "[2001:db8::1]:443",
                    "2001:db8::2",
                ],
            ),
        ] {
            let v = l.encode().unwrap();
            assert_eq!(EntryPointList::decode(&v), Ok(l));
        }
        let v = list(
            EntryPointSelection::FirstToRespond,
            &["a.example", "b.example"],
        )
        .encode()
        .unwrap();
        assert_eq!(v, b"\x01a.example\nb.example");
    }

    #[test]
    fn malformed_values_are_errors() {
        let long = "a".repeat(64);
        let many: Vec<u8> = std::iter::once(0u8)
            .chain(
                (0..17)
                    .map(|i| format!("h{i}.example"))
                    .collect::<Vec<_>>()
                    .join("\n")
                    .into_bytes(),
            )
            .collect();
        let huge = [vec![0u8], vec![b'a'; MAX_VALUE_LEN]].concat();
        let cases: Vec<&[u8]> = vec![
            b"",
            b"\x00",
            b"\x03a.example",
            b"\x00a.example\n",
            b"\x00\na.example",
            b"\x00a.example\na.example",
            b"\x00a..example",
            b"\x00a.example:0",
            b"\x00a.example:65536",
            b"\x00a.example:+1",
            b"\x00a.example:",
            b"\x002001:db8::1:443x",
            b"\x00[2001:db8::1]",
            b"\x00[a.example]:443",
            b"\x00\xff\xfe",
            b"\x00a example",
            &many,
            &huge,
        ];
        for c in cases {
            assert!(EntryPointList::decode(c).is_err(), "{c:?} was accepted");
        }
        let label = format!("\x00{long}.example");
        assert!(EntryPointList::decode(label.as_bytes()).is_err());
        assert!(list(EntryPointSelection::Unspecified, &[])
            .encode()
            .is_err());
    }

    proptest::proptest! {
        /// Whatever the bytes, decoding returns; what it accepts encodes back to the same bytes.
        #[test]
        fn decode_is_total_and_canonical(v in proptest::collection::vec(
            proptest::sample::select(b"ab.:\n[]19\x00\x01\xc3".to_vec()), 0..600)) {
            if let Ok(l) = EntryPointList::decode(&v) {
                proptest::prop_assert_eq!(l.encode(), Ok(v));
            }
        }
    }
}
