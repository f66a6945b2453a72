//! The first flight of a TLS client, read before any TLS library sees it: enough of the
//! ClientHello (RFC 8446 4.1.2, RFC 5246 7.4.1.2) to route the connection by its server name
//! (RFC 6066 3) and its ALPN list (RFC 7301 3.1), without consuming it, so the same bytes can
//! go to rustls or, untouched, to another HTTPS server.
//!
//! Invariants: every length is checked against what is present before it is used; nothing
//! is read past the end of the input; the handshake message is gathered from at most
//! [`MAX_HELLO_LEN`] bytes of handshake records, so a client cannot make the gateway buffer
//! more than that (plus one record header) before it decides.

use thiserror::Error;

/// TLS record content type of handshake messages.
const HANDSHAKE: u8 = 22;
/// Handshake message type of a ClientHello.
const CLIENT_HELLO: u8 = 1;
/// Bytes of a TLS record header: type, version, length.
const RECORD_HEADER: usize = 5;
/// The largest TLS plaintext record (RFC 8446 5.1: 2^14).
const MAX_RECORD: usize = 1 << 14;
/// The largest ClientHello (handshake header included) this parser waits for. Real hellos,
/// post-quantum key shares included, stay well under it.
pub const MAX_HELLO_LEN: usize = 1 << 15;
/// Extension type of server_name (RFC 6066).
const EXT_SERVER_NAME: u16 = 0;
/// Extension type of application_layer_protocol_negotiation (RFC 7301).
const EXT_ALPN: u16 = 16;
/// server_name NameType host_name.
const HOST_NAME: u8 = 0;

/// What a ClientHello asks for that routing looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// The first host_name of the server_name extension, when present and valid ASCII.
    pub server_name: Option<String>,
    /// The ALPN protocol ids offered, in the client's order (empty without the extension).
    pub alpn: Vec<Vec<u8>>,
}

impl ClientHello {
    /// Whether the ALPN list offers `protocol`.
    pub fn offers(&self, protocol: &[u8]) -> bool {
        self.alpn.iter().any(|p| p == protocol)
    }

    /// Whether the server name is one of `names`: ASCII case-insensitive, a trailing dot on
    /// either side ignored.
    pub fn names_one_of(&self, names: &[String]) -> bool {
        let Some(sni) = self.server_name.as_deref() else {
            return false;
        };
        let sni = sni.strip_suffix('.').unwrap_or(sni);
        names.iter().any(|n| {
            let n = n.strip_suffix('.').unwrap_or(n);
            n.eq_ignore_ascii_case(sni)
        })
    }
}

/// Why the first bytes are not a ClientHello this parser accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HelloError {
    #[error("not a TLS handshake record (content type {0})")]
    NotHandshake(u8),
    #[error("TLS record version {0:#06x} is not TLS")]
    BadVersion(u16),
    #[error("TLS record of {0} bytes exceeds 2^14")]
    RecordTooLong(usize),
    #[error("empty TLS handshake record")]
    EmptyRecord,
    #[error("first handshake message is type {0}, not a ClientHello")]
    NotClientHello(u8),
    #[error("ClientHello of {0} bytes exceeds the limit of {MAX_HELLO_LEN}")]
    TooLong(usize),
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
}

/// Parses the ClientHello at the start of `input` (the bytes the client sent so far).
/// `Ok(None)`: more bytes are needed (never once [`MAX_HELLO_LEN`] bytes of handshake data
/// are present). The input is not modified and may hold bytes after the hello.
pub fn parse(input: &[u8]) -> Result<Option<ClientHello>, HelloError> {
    // The common case: the whole hello in the first record, parsed where it is.
    if let (Some(&[HANDSHAKE, 3, _, hi, lo]), Some(&[CLIENT_HELLO, a, b, c])) = (
        input.get(..RECORD_HEADER),
        input.get(RECORD_HEADER..RECORD_HEADER + 4),
    ) {
        let record = usize::from(u16::from_be_bytes([hi, lo]));
        let message = 4 + u24(&[a, b, c]);
        if record <= MAX_RECORD && message <= record {
            if let Some(body) = input.get(RECORD_HEADER + 4..RECORD_HEADER + message) {
                return parse_body(body).map(Some);
            }
        }
    }
    parse_fragmented(input)
}

/// [`parse`] for a hello split over several records: the fragments are gathered into a
/// stack buffer, bounded by [`MAX_HELLO_LEN`].
fn parse_fragmented(input: &[u8]) -> Result<Option<ClientHello>, HelloError> {
    let mut message = [0u8; MAX_HELLO_LEN];
    let mut have = 0usize;
    let mut rest = input;
    loop {
        if have >= 4 {
            let len = 4 + u24(&message[1..4]);
            if have >= len {
                return parse_body(&message[4..len]).map(Some);
            }
        }
        let Some(header) = rest.get(..RECORD_HEADER) else {
            return Ok(None);
        };
        if header[0] != HANDSHAKE {
            return Err(HelloError::NotHandshake(header[0]));
        }
        let version = u16::from_be_bytes([header[1], header[2]]);
        if header[1] != 3 {
            return Err(HelloError::BadVersion(version));
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len > MAX_RECORD {
            return Err(HelloError::RecordTooLong(len));
        }
        if len == 0 {
            return Err(HelloError::EmptyRecord);
        }
        let Some(body) = rest.get(RECORD_HEADER..RECORD_HEADER + len) else {
            return Ok(None);
        };
        rest = &rest[RECORD_HEADER + len..];
        let take = body.len().min(MAX_HELLO_LEN - have);
        message[have..have + take].copy_from_slice(&body[..take]);
        have += take;
        if message[0] != CLIENT_HELLO {
            return Err(HelloError::NotClientHello(message[0]));
        }
        if have >= 4 {
            let len = 4 + u24(&message[1..4]);
            if len > MAX_HELLO_LEN {
                return Err(HelloError::TooLong(len));
            }
        }
    }
}

/// A cursor over a byte slice; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], HelloError> {
        if self.0.len() < n {
            return Err(HelloError::Malformed(what));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, HelloError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, HelloError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a one-byte length.
    fn vec8(&mut self, what: &'static str) -> Result<&'a [u8], HelloError> {
        let n = usize::from(self.u8(what)?);
        self.take(n, what)
    }

    /// A vector with a two-byte length.
    fn vec16(&mut self, what: &'static str) -> Result<&'a [u8], HelloError> {
        let n = usize::from(self.u16(what)?);
        self.take(n, what)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn u24(b: &[u8]) -> usize {
    (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
}

/// The ClientHello body (after the 4-byte handshake header).
fn parse_body(body: &[u8]) -> Result<ClientHello, HelloError> {
    let mut r = Reader(body);
    r.take(2, "legacy_version")?;
    r.take(32, "random")?;
    let session = r.vec8("legacy_session_id")?;
    if session.len() > 32 {
        return Err(HelloError::Malformed("legacy_session_id longer than 32"));
    }
    let suites = r.vec16("cipher_suites")?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err(HelloError::Malformed("cipher_suites"));
    }
    if r.vec8("legacy_compression_methods")?.is_empty() {
        return Err(HelloError::Malformed("legacy_compression_methods empty"));
    }
    let mut hello = ClientHello::default();
    if r.is_empty() {
        // A hello without extensions (TLS 1.2 allows it): no name, no ALPN.
        return Ok(hello);
    }
    let mut extensions = Reader(r.vec16("extensions")?);
    if !r.is_empty() {
        return Err(HelloError::Malformed("bytes after the extensions"));
    }
    let (mut seen_sni, mut seen_alpn) = (false, false);
    while !extensions.is_empty() {
        let kind = extensions.u16("extension type")?;
        let data = extensions.vec16("extension data")?;
        match kind {
            EXT_SERVER_NAME if !seen_sni => {
                seen_sni = true;
                hello.server_name = server_name(data)?;
            }
            EXT_ALPN if !seen_alpn => {
                seen_alpn = true;
                hello.alpn = alpn(data)?;
            }
            EXT_SERVER_NAME | EXT_ALPN => {
                return Err(HelloError::Malformed("duplicate extension"));
            }
            _ => {}
        }
    }
    Ok(hello)
}

/// The first host_name of a server_name extension; `None` if it is not printable ASCII.
fn server_name(data: &[u8]) -> Result<Option<String>, HelloError> {
    let mut r = Reader(data);
    let mut list = Reader(r.vec16("server_name_list")?);
    if !r.is_empty() || list.is_empty() {
        return Err(HelloError::Malformed("server_name_list"));
    }
    let mut found = None;
    while !list.is_empty() {
        let kind = list.u8("name_type")?;
        let name = list.vec16("host_name")?;
        if kind == HOST_NAME && found.is_none() {
            if name.is_empty() {
                return Err(HelloError::Malformed("empty host_name"));
            }
            found = Some(name);
        }
    }
    Ok(found
        .filter(|n| n.iter().all(|b| b.is_ascii_graphic()))
        .map(|n| String::from_utf8_lossy(n).into_owned()))
}

/// The protocol ids of an ALPN extension.
fn alpn(data: &[u8]) -> Result<Vec<Vec<u8>>, HelloError> {
    let mut r = Reader(data);
    let mut list = Reader(r.vec16("protocol_name_list")?);
    if !r.is_empty() || list.is_empty() {
        return Err(HelloError::Malformed("protocol_name_list"));
    }
    let mut out = Vec::new();
    while !list.is_empty() {
        let id = list.vec8("protocol_name")?;
        if id.is_empty() {
            return Err(HelloError::Malformed("empty protocol_name"));
        }
        out.push(id.to_vec());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello record with the given extensions (type, data).
    pub(crate) fn hello(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend([7u8; 32]);
        body.push(0); // session id
        body.extend([0, 2, 0x13, 0x01]); // one suite
        body.extend([1, 0]); // null compression
        let mut ext = Vec::new();
        for (kind, data) in extensions {
            ext.extend(kind.to_be_bytes());
            ext.extend((data.len() as u16).to_be_bytes());
            ext.extend(data);
        }
        body.extend((ext.len() as u16).to_be_bytes());
        body.extend(ext);
        let mut msg = vec![CLIENT_HELLO];
        msg.extend(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend(body);
        let mut rec = vec![HANDSHAKE, 3, 1];
        rec.extend((msg.len() as u16).to_be_bytes());
        rec.extend(msg);
        rec
    }

    fn sni(name: &str) -> (u16, Vec<u8>) {
        let mut entry = vec![HOST_NAME];
        entry.extend((name.len() as u16).to_be_bytes());
        entry.extend(name.as_bytes());
        let mut data = (entry.len() as u16).to_be_bytes().to_vec();
        data.extend(entry);
        (EXT_SERVER_NAME, data)
    }

    fn alpn_ext(ids: &[&str]) -> (u16, Vec<u8>) {
        let mut list = Vec::new();
        for id in ids {
            list.push(id.len() as u8);
            list.extend(id.as_bytes());
        }
        let mut data = (list.len() as u16).to_be_bytes().to_vec();
        data.extend(list);
        (EXT_ALPN, data)
    }

    #[test]
    fn reads_name_and_alpn_and_waits_for_more() {
        let rec = hello(&[
            (11, vec![1, 0]),
            sni("VPN.example.com."),
            alpn_ext(&["h2", "rampart-ike"]),
        ]);
        let got = parse(&rec).unwrap().unwrap();
        assert_eq!(got.server_name.as_deref(), Some("VPN.example.com."));
        assert!(got.offers(b"rampart-ike"));
        assert!(!got.offers(b"http/1.1"));
        assert!(got.names_one_of(&["vpn.example.com".to_owned()]));
        assert!(!got.names_one_of(&["www.example.com".to_owned()]));
        // Any prefix is "need more", never an error.
        for cut in 0..rec.len() {
            assert_eq!(parse(&rec[..cut]), Ok(None), "cut at {cut}");
        }
        // Bytes after the hello do not matter.
        let mut more = rec.clone();
        more.extend([23, 3, 3, 0, 1, 0]);
        assert_eq!(parse(&more).unwrap().unwrap(), got);
    }

    #[test]
    fn hello_split_over_records() {
        let rec = hello(&[sni("a.example"), alpn_ext(&["x"])]);
        let msg = &rec[RECORD_HEADER..];
        let mut split = Vec::new();
        for part in msg.chunks(7) {
            split.extend([HANDSHAKE, 3, 3]);
            split.extend((part.len() as u16).to_be_bytes());
            split.extend(part);
        }
        let got = parse(&split).unwrap().unwrap();
        assert_eq!(got.server_name.as_deref(), Some("a.example"));
        assert_eq!(got.alpn, vec![b"x".to_vec()]);
    }

    #[test]
    fn no_extensions_and_rejections() {
        let rec = hello(&[]);
        assert_eq!(parse(&rec).unwrap().unwrap(), ClientHello::default());
        assert_eq!(parse(b"IKETCP\0\0"), Err(HelloError::NotHandshake(b'I')));
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n"),
            Err(HelloError::NotHandshake(b'G'))
        );
        assert_eq!(
            parse(&[22, 4, 0, 0, 1]),
            Err(HelloError::BadVersion(0x0400))
        );
        assert_eq!(
            parse(&[22, 3, 1, 0x40, 1]),
            Err(HelloError::RecordTooLong(0x4001))
        );
        assert_eq!(parse(&[22, 3, 1, 0, 0]), Err(HelloError::EmptyRecord));
        assert_eq!(
            parse(&[22, 3, 1, 0, 1, 2]),
            Err(HelloError::NotClientHello(2))
        );
        assert_eq!(
            parse(&[22, 3, 1, 0, 4, 1, 1, 0, 0]),
            Err(HelloError::TooLong(4 + 0x10000))
        );
        let dup = hello(&[alpn_ext(&["a"]), alpn_ext(&["b"])]);
        assert!(matches!(parse(&dup), Err(HelloError::Malformed(_))));
        let empty_id = hello(&[(EXT_ALPN, vec![0, 1, 0])]);
        assert!(matches!(parse(&empty_id), Err(HelloError::Malformed(_))));
        // A length that points past the extension: malformed, not a panic.
        let bad = hello(&[(EXT_SERVER_NAME, vec![0, 9, 0, 0, 1, b'a'])]);
        assert!(matches!(parse(&bad), Err(HelloError::Malformed(_))));
        // A name with a non-printable byte is no name.
        let odd = hello(&[sni("a\u{7}b")]);
        assert_eq!(parse(&odd).unwrap().unwrap().server_name, None);
    }

    #[test]
    fn truncated_hellos_never_panic() {
        let rec = hello(&[sni("host"), alpn_ext(&["p", "q"])]);
        // Shorten the handshake body while keeping the record and message lengths consistent.
        for keep in 0..rec.len() - 9 {
            let body = &rec[9..9 + keep];
            let mut msg = vec![CLIENT_HELLO];
            msg.extend(&(body.len() as u32).to_be_bytes()[1..]);
            msg.extend(body);
            let mut r = vec![HANDSHAKE, 3, 1];
            r.extend((msg.len() as u16).to_be_bytes());
            r.extend(msg);
            let _ = parse(&r);
        }
    }
}
