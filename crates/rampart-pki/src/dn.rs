//! Distinguished names: `CN=gw-a, O=Example` text to DER (ID_DER_ASN1_DN), comparison, display.

use x509_parser::prelude::{FromDer, X509Name};

use crate::PkiError;

/// DER tag-length-value.
pub(crate) fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = body.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(body);
    out
}

const PRINTABLE: u8 = 0x13;
const UTF8: u8 = 0x0c;
const IA5: u8 = 0x16;

/// Attribute keyword -> (OID body, string tag).
fn attribute(key: &str) -> Option<(&'static [u8], u8)> {
    Some(match key.to_ascii_uppercase().as_str() {
        "CN" => (&[0x55, 0x04, 0x03], UTF8),
        "SN" | "SERIALNUMBER" => (&[0x55, 0x04, 0x05], PRINTABLE),
        "C" => (&[0x55, 0x04, 0x06], PRINTABLE),
        "L" => (&[0x55, 0x04, 0x07], UTF8),
        "ST" => (&[0x55, 0x04, 0x08], UTF8),
        "O" => (&[0x55, 0x04, 0x0a], UTF8),
        "OU" => (&[0x55, 0x04, 0x0b], UTF8),
        "E" | "EMAIL" | "EMAILADDRESS" => {
            (&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01], IA5)
        }
        "DC" => (
            &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19],
            IA5,
        ),
        _ => return None,
    })
}

/// Splits on unescaped `sep`, unescaping `\x`.
fn split_escaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => cur.extend(chars.next()),
            c if c == sep => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    parts.push(cur);
    parts
}

/// Encodes `C=CH, O=Example, CN=gw-a` (RFC 4514-like order as written, `,` separated,
/// `\,` escapes) as a DER `Name`, one attribute per RDN.
pub fn parse_dn(text: &str) -> Result<Vec<u8>, PkiError> {
    let mut rdns = Vec::new();
    for part in split_escaped(text, ',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let Some((key, value)) = part.split_once('=') else {
            return Err(PkiError::Malformed(format!(
                "distinguished name \"{text}\": \"{part}\" is not KEY=value"
            )));
        };
        let Some((oid, tag)) = attribute(key.trim()) else {
            return Err(PkiError::Malformed(format!(
                "distinguished name \"{text}\": unknown attribute \"{}\" (known: C, ST, L, O, OU, CN, SN, E, DC)",
                key.trim()
            )));
        };
        let mut atv = tlv(0x06, oid);
        atv.extend(tlv(tag, value.trim().as_bytes()));
        rdns.extend(tlv(0x31, &tlv(0x30, &atv)));
    }
    if rdns.is_empty() {
        return Err(PkiError::Malformed(format!(
            "distinguished name \"{text}\" is empty"
        )));
    }
    Ok(tlv(0x30, &rdns))
}

/// Semantic DN equality: same attributes in the same order, string values compared
/// case-insensitively whatever their ASN.1 string type. Malformed input is never equal.
pub fn dn_eq(a: &[u8], b: &[u8]) -> bool {
    if a == b {
        return true;
    }
    let (Ok((_, a)), Ok((_, b))) = (X509Name::from_der(a), X509Name::from_der(b)) else {
        return false;
    };
    let a: Vec<_> = a.iter_attributes().collect();
    let b: Vec<_> = b.iter_attributes().collect();
    a.len() == b.len()
        && a.iter().zip(&b).all(|(x, y)| {
            x.attr_type() == y.attr_type()
                && match (x.as_str(), y.as_str()) {
                    (Ok(s), Ok(t)) => s.trim().eq_ignore_ascii_case(t.trim()),
                    _ => x.attr_value().data == y.attr_value().data,
                }
        })
}

/// `CN=gw-a, O=Example` for logs; `<malformed DN>` when it does not parse.
pub fn dn_to_string(der: &[u8]) -> String {
    match X509Name::from_der(der) {
        Ok((_, n)) => n.to_string(),
        Err(_) => "<malformed DN>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_compare() {
        let a = parse_dn("C=CH, O=Example Corp, CN=gw-a").unwrap();
        assert_eq!(dn_to_string(&a), "C=CH, O=Example Corp, CN=gw-a");
        let b = parse_dn("c=CH,o=example corp,cn=GW-A").unwrap();
        assert!(dn_eq(&a, &b));
        let c = parse_dn("C=CH, O=Example Corp, CN=gw-b").unwrap();
        assert!(!dn_eq(&a, &c));
        let d = parse_dn("O=Example Corp, CN=gw-a").unwrap();
        assert!(!dn_eq(&a, &d));
        assert!(parse_dn("CN=x, nonsense").is_err());
        assert!(parse_dn("XX=1").is_err());
        assert!(!dn_eq(&a, b"garbage"));
        let e = parse_dn(r"CN=a\, b").unwrap();
        assert_eq!(dn_to_string(&e), "CN=a\\, b".replace("\\", ""));
    }
}
