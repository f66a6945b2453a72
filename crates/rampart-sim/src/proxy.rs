//! The HTTP CONNECT proxy's request handling (RFC 9110 section 9.3.6), without sockets: parse
//! the request head, check Basic authentication (RFC 7617), choose the answer. The relay
//! itself runs on a host's TCP stack (`host.rs`).

use std::net::Ipv4Addr;

/// Largest request head the proxy reads before answering 400.
pub const MAX_HEAD: usize = 8192;

/// The answer to a complete request head.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Open a TCP connection to this target, then answer 200.
    Connect(Ipv4Addr, u16),
    /// Answer with this whole response and close.
    Refuse(&'static str),
}

pub const RESPONSE_OK: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";
pub const RESPONSE_407: &str = "HTTP/1.1 407 Proxy Authentication Required\r\n\
    Proxy-Authenticate: Basic realm=\"rampart-lab\"\r\nContent-Length: 0\r\n\r\n";
pub const RESPONSE_400: &str = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
pub const RESPONSE_405: &str = "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n";
pub const RESPONSE_502: &str = "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n";

/// Length of the head (through the blank line) when `buf` holds a complete one.
pub fn head_len(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Decides on a complete request head. `credentials` is the required `user:password` (none:
/// an open proxy). Targets are IPv4 literals: the lab has no DNS.
pub fn decide(head: &[u8], credentials: Option<&str>) -> Decision {
    let Ok(text) = std::str::from_utf8(head) else {
        return Decision::Refuse(RESPONSE_400);
    };
    let mut lines = text.split("\r\n");
    let request = lines.next().unwrap_or("");
    let mut parts = request.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Decision::Refuse(RESPONSE_400);
    };
    if !version.starts_with("HTTP/1.") {
        return Decision::Refuse(RESPONSE_400);
    }
    if method != "CONNECT" {
        return Decision::Refuse(RESPONSE_405);
    }
    if let Some(creds) = credentials {
        let expected = base64(creds.as_bytes());
        let ok = lines.any(|l| {
            l.split_once(':').is_some_and(|(name, value)| {
                name.trim().eq_ignore_ascii_case("proxy-authorization")
                    && value.trim().split_once(' ').is_some_and(|(scheme, token)| {
                        scheme.eq_ignore_ascii_case("basic") && token.trim() == expected
                    })
            })
        });
        if !ok {
            return Decision::Refuse(RESPONSE_407);
        }
    }
    let Some((host, port)) = target.rsplit_once(':') else {
        return Decision::Refuse(RESPONSE_400);
    };
    match (host.parse(), port.parse()) {
        (Ok(addr), Ok(port)) => Decision::Connect(addr, port),
        _ => Decision::Refuse(RESPONSE_400),
    }
}

/// The request a client sends to open a tunnel to `target`, with Basic credentials if given.
pub fn request(target: (Ipv4Addr, u16), credentials: Option<&str>) -> Vec<u8> {
    let (addr, port) = target;
    let mut r = format!("CONNECT {addr}:{port} HTTP/1.1\r\nHost: {addr}:{port}\r\n");
    if let Some(c) = credentials {
        r.push_str(&format!(
            "Proxy-Authorization: Basic {}\r\n",
            base64(c.as_bytes())
        ));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// The status line of a response head (without CRLF).
pub fn status_line(head: &[u8]) -> String {
    let text = String::from_utf8_lossy(head);
    text.split("\r\n").next().unwrap_or("").to_string()
}

/// Standard base64 with padding (RFC 4648), as Basic authentication uses.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(
            base64(b"Aladdin:open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }

    #[test]
    fn decides_on_method_target_and_credentials() {
        let t = (Ipv4Addr::new(10, 2, 0, 10), 443);
        let req = request(t, Some("u:p"));
        assert_eq!(decide(&req, Some("u:p")), Decision::Connect(t.0, t.1));
        assert_eq!(decide(&req, None), Decision::Connect(t.0, t.1));
        assert_eq!(
            decide(&request(t, None), Some("u:p")),
            Decision::Refuse(RESPONSE_407)
        );
        assert_eq!(
            decide(&request(t, Some("u:x")), Some("u:p")),
            Decision::Refuse(RESPONSE_407)
        );
        assert_eq!(
            decide(b"GET / HTTP/1.1\r\n\r\n", None),
            Decision::Refuse(RESPONSE_405)
        );
        assert_eq!(
            decide(b"CONNECT host HTTP/1.1\r\n\r\n", None),
            Decision::Refuse(RESPONSE_400)
        );
        assert_eq!(
            decide(b"\xff\r\n\r\n", None),
            Decision::Refuse(RESPONSE_400)
        );
        assert_eq!(head_len(b"a\r\n\r\nrest"), Some(5));
    }
}
