//! The little HTTP/1.1 this crate speaks: `http://` URLs, response heads (status line and
//! headers) and reading one head off a stream without reading past it.
//!
//! Invariants: [`read_head`] never consumes a byte after the blank line that ends the head (so
//! a CONNECT tunnel's first bytes stay in the stream), and never buffers more than
//! [`MAX_HEAD`] bytes.

use std::fmt;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The largest response head accepted.
pub const MAX_HEAD: usize = 16 * 1024;

/// Why a URL or response head was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HttpError {
    #[error("not an http:// URL: {0:?}")]
    NotHttpUrl(String),
    #[error("bad host or port in URL {0:?}")]
    BadAuthority(String),
    #[error("response head larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("connection closed before the end of the response head")]
    Truncated,
    #[error("bad status line {0:?}")]
    BadStatusLine(String),
    #[error("bad header line {0:?}")]
    BadHeader(String),
    #[error("response head is not UTF-8")]
    NotUtf8,
}

/// A parsed `http://host[:port][/path]` URL, optionally with `user:password@` (kept apart so
/// it never appears in logs: [`fmt::Display`] leaves it out).
#[derive(Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Port; 80 when the URL names none.
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
    /// Percent-decoded `user:password` from the authority, if any.
    pub userinfo: Option<(String, String)>,
}

impl fmt::Debug for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HttpUrl({self})")
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "http://{}{}",
            authority(&self.host, self.port),
            self.path
        )
    }
}

/// `host:port`, with brackets around an IPv6 literal.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl HttpUrl {
    /// Parses `http://[user[:password]@]host[:port][/path]`. A URL without a scheme is taken
    /// as `http://` (what `https_proxy=proxy:3128` means to curl). `https://` is rejected:
    /// TLS to the proxy itself is not supported.
    pub fn parse(url: &str) -> Result<HttpUrl, HttpError> {
        let url = url.trim();
        let rest = match url.find("://") {
            Some(i) if url[..i].eq_ignore_ascii_case("http") => &url[i + 3..],
            Some(_) => return Err(HttpError::NotHttpUrl(url.to_owned())),
            None => url,
        };
        let (auth, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = path.split('#').next().unwrap_or("/");
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        let (userinfo, hostport) = match auth.rfind('@') {
            Some(i) => {
                let ui = &auth[..i];
                let (u, p) = ui.split_once(':').unwrap_or((ui, ""));
                (Some((percent_decode(u), percent_decode(p))), &auth[i + 1..])
            }
            None => (None, auth),
        };
        let (host, port) =
            split_host_port(hostport, 80).ok_or_else(|| HttpError::BadAuthority(url.to_owned()))?;
        Ok(HttpUrl {
            host,
            port,
            path,
            userinfo,
        })
    }
}

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port`; `default` when no port is written.
/// `None` for an empty host, a bad port or stray brackets.
pub fn split_host_port(s: &str, default: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        match after {
            "" => (h, None),
            p => (h, Some(p.strip_prefix(':')?)),
        }
    } else if s.matches(':').count() > 1 {
        // A bare IPv6 literal.
        (s, None)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() || host.contains(['[', ']', '/', ' ', '@']) {
        return None;
    }
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0)?,
        None => default,
    };
    Some((host.to_owned(), port))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A response's status line and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code (100..=999).
    pub status: u16,
    /// The whole status line as received, without CRLF (for error messages).
    pub status_line: String,
    /// Header names and values in order, values trimmed; names as received.
    pub headers: Vec<(String, String)>,
}

impl ResponseHead {
    /// Values of every header named `name` (case-insensitive), in order.
    pub fn headers<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first header named `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `Content-Length`, when present and a number.
    pub fn content_length(&self) -> Option<usize> {
        self.header("content-length")?.parse().ok()
    }
}

/// Parses a response head (everything up to and including the blank line; a missing final
/// blank line is tolerated). Accepts CRLF or bare LF line ends.
pub fn parse_response_head(head: &[u8]) -> Result<ResponseHead, HttpError> {
    if head.len() > MAX_HEAD {
        return Err(HttpError::TooLarge);
    }
    let text = std::str::from_utf8(head).map_err(|_| HttpError::NotUtf8)?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let status_line = lines.next().unwrap_or_default();
    let bad = || HttpError::BadStatusLine(status_line.chars().take(200).collect());
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().ok_or_else(bad)?;
    if !(version == "HTTP/1.1" || version == "HTTP/1.0") {
        return Err(bad());
    }
    let code = parts.next().ok_or_else(bad)?;
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let status: u16 = code.parse().map_err(|_| bad())?;
    if status < 100 {
        return Err(bad());
    }
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            // Obsolete line folding: continue the previous value.
            let (_, v) = headers
                .last_mut()
                .ok_or_else(|| HttpError::BadHeader(line.chars().take(200).collect()))?;
            let v: &mut String = v;
            v.push(' ');
            v.push_str(line.trim());
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .filter(|(n, _)| !n.is_empty() && !n.contains([' ', '\t']))
            .ok_or_else(|| HttpError::BadHeader(line.chars().take(200).collect()))?;
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    Ok(ResponseHead {
        status,
        status_line: status_line.to_owned(),
        headers,
    })
}

/// Reads one response head from `r`, byte by byte so that nothing after the blank line is
/// consumed, and parses it.
pub async fn read_head<R: AsyncRead + Unpin>(r: &mut R) -> Result<ResponseHead, ReadHeadError> {
    let mut buf = Vec::with_capacity(512);
    let mut byte = [0u8; 1];
    loop {
        let n = r.read(&mut byte).await.map_err(ReadHeadError::Io)?;
        if n == 0 {
            return Err(ReadHeadError::Http(HttpError::Truncated));
        }
        buf.push(byte[0]);
        if buf.ends_with(b"\r\n\r\n") || buf.ends_with(b"\n\n") {
            return parse_response_head(&buf).map_err(ReadHeadError::Http);
        }
        if buf.len() >= MAX_HEAD {
            return Err(ReadHeadError::Http(HttpError::TooLarge));
        }
    }
}

/// [`read_head`] failed.
#[derive(Debug, Error)]
pub enum ReadHeadError {
    #[error(transparent)]
    Io(std::io::Error),
    #[error(transparent)]
    Http(HttpError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = HttpUrl::parse("http://bob:s%40cret@proxy.example:3128").unwrap();
        assert_eq!(u.host, "proxy.example");
        assert_eq!(u.port, 3128);
        assert_eq!(u.path, "/");
        assert_eq!(u.userinfo, Some(("bob".into(), "s@cret".into())));
        assert_eq!(u.to_string(), "http://proxy.example:3128/");
        let u = HttpUrl::parse("10.0.0.1:8080").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("10.0.0.1", 8080));
        let u = HttpUrl::parse("http://[2001:db8::1]/wpad.dat?x=1#frag").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("2001:db8::1", 80));
        assert_eq!(u.path, "/wpad.dat?x=1");
        assert_eq!(u.to_string(), "http://[2001:db8::1]:80/wpad.dat?x=1");
        assert!(HttpUrl::parse("https://proxy:443").is_err());
        assert!(HttpUrl::parse("http://:80").is_err());
        assert!(HttpUrl::parse("http://host:0").is_err());
        assert!(HttpUrl::parse("http://host:99999").is_err());
    }

    #[test]
    fn heads() {
        let h = parse_response_head(
            b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\nproxy-authenticate: Digest realm=\"y\"\r\n continued\r\nContent-Length: 12\r\n\r\n",
        )
        .unwrap();
        assert_eq!(h.status, 407);
        assert_eq!(h.status_line, "HTTP/1.1 407 Proxy Authentication Required");
        let v: Vec<_> = h.headers("Proxy-Authenticate").collect();
        assert_eq!(v, ["Basic realm=\"x\"", "Digest realm=\"y\" continued"]);
        assert_eq!(h.content_length(), Some(12));
        assert_eq!(
            parse_response_head(b"HTTP/1.0 200\n\n").unwrap().status,
            200
        );
        for bad in [
            &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 099 x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\xff: x\r\n\r\n",
        ] {
            assert!(parse_response_head(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn chunked() {
        assert_eq!(
            decode_chunked(b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\n\r\n", 100).unwrap(),
            b"Wikipedia"
        );
        assert_eq!(
            decode_chunked(b"4\r\nWiki\r\n5\r\nped", 100).unwrap(),
            b"Wikiped"
        );
        assert_eq!(decode_chunked(b"4\r\nWiki\r\n", 2).unwrap(), b"Wi");
        assert!(decode_chunked(b"zz\r\n", 100).is_none());
    }

    #[tokio::test]
    async fn read_head_stops_at_the_blank_line() {
        let mut data: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\nTUNNEL";
        let h = read_head(&mut data).await.unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(data, b"TUNNEL");
        let mut short: &[u8] = b"HTTP/1.1 200 OK\r\n";
        assert!(matches!(
            read_head(&mut short).await,
            Err(ReadHeadError::Http(HttpError::Truncated))
        ));
    }
}

/// [`get`] failed.
#[derive(Debug, Error)]
pub enum GetError {
    #[error("cannot connect to {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[source] std::io::Error),
    #[error("{0}")]
    Http(#[from] HttpError),
    #[error("no answer within {0} ms")]
    Timeout(u128),
    #[error("bad chunked body")]
    BadChunked,
}

/// `GET url` over a plain TCP connection (`Connection: close`), returning the head and at most
/// `max_body` bytes of the body (Content-Length, chunked, or up to the close). No redirects are
/// followed: callers look at 3xx themselves.
pub async fn get(
    url: &HttpUrl,
    timeout: std::time::Duration,
    max_body: usize,
) -> Result<(ResponseHead, Vec<u8>), GetError> {
    use tokio::io::AsyncWriteExt;
    let fut = async {
        let target = authority(&url.host, url.port);
        let mut s = tokio::net::TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|source| GetError::Connect {
                target: target.clone(),
                source,
            })?;
        let host = match (url.port, url.host.contains(':')) {
            (80, false) => url.host.clone(),
            (80, true) => format!("[{}]", url.host),
            _ => target,
        };
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: rampart\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            url.path
        );
        s.write_all(req.as_bytes()).await.map_err(GetError::Io)?;
        let head = read_head(&mut s).await.map_err(|e| match e {
            ReadHeadError::Io(e) => GetError::Io(e),
            ReadHeadError::Http(h) => GetError::Http(h),
        })?;
        let mut body = Vec::new();
        if matches!(head.status, 100..=199 | 204 | 304) {
            return Ok((head, body));
        }
        let chunked = head
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let want = if chunked { None } else { head.content_length() };
        let cap = want.map_or(max_body, |w| w.min(max_body));
        // Chunk framing takes room too: read a little more than the body limit.
        let raw_cap = if chunked { max_body + 4096 } else { cap };
        let mut buf = [0u8; 4096];
        while body.len() < raw_cap {
            let n = s.read(&mut buf).await.map_err(GetError::Io)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&buf[..n.min(raw_cap - body.len())]);
        }
        if chunked {
            body = decode_chunked(&body, max_body).ok_or(GetError::BadChunked)?;
        }
        Ok((head, body))
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(GetError::Timeout(timeout.as_millis())),
    }
}

/// Decodes a chunked body (possibly cut short: what is complete is returned), at most `max`
/// bytes. `None` when the framing is invalid.
pub fn decode_chunked(mut raw: &[u8], max: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return Some(out);
        };
        let line = std::str::from_utf8(&raw[..eol]).ok()?;
        let size_hex = line.split(';').next()?.trim();
        let size = usize::from_str_radix(size_hex, 16).ok()?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        let take = size.min(raw.len());
        out.extend_from_slice(&raw[..take.min(max.saturating_sub(out.len()))]);
        if take < size || out.len() >= max {
            return Some(out);
        }
        raw = raw.get(size + 2..)?;
    }
}
