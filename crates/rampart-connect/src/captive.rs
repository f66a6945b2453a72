//! Captive-portal detection: before connecting, `GET` a known plain-HTTP URL. A network
//! without a portal answers it as the probe server would (`204 No Content`, or `200` with the
//! expected body, or an empty `200`); a portal intercepts it and answers with a redirect to its
//! login page or with a page of its own. Then the client says so and waits instead of running
//! the ladder into a wall.

use std::time::Duration;

use thiserror::Error;

use crate::http::{self, GetError, HttpError, HttpUrl, ResponseHead};

/// The largest body read from a probe answer.
pub const MAX_BODY: usize = 64 * 1024;

/// A probe to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptiveProbe {
    /// A plain `http://` URL that answers `204` (or `expected_body`) on an open network.
    pub url: HttpUrl,
    /// When set, a `200` whose body (trimmed) equals this also means "no portal".
    pub expected_body: Option<String>,
    pub timeout: Duration,
}

impl CaptiveProbe {
    /// A probe of `url` with a 3 s timeout and no expected body.
    pub fn new(url: &str) -> Result<CaptiveProbe, HttpError> {
        Ok(CaptiveProbe {
            url: HttpUrl::parse(url)?,
            expected_body: None,
            timeout: Duration::from_secs(3),
        })
    }
}

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptiveStatus {
    /// No portal in the way.
    Open,
    /// A portal answered. `url` is where to log in (the redirect target, or the probe URL when
    /// the portal answered in place); `status_line` what it answered.
    Portal { url: String, status_line: String },
}

/// The probe could not decide (no network, timeout, garbage).
#[derive(Debug, Error)]
#[error("captive-portal probe of {url} failed: {source}")]
pub struct CaptiveError {
    pub url: String,
    #[source]
    pub source: GetError,
}

/// Runs the probe.
pub async fn probe(p: &CaptiveProbe) -> Result<CaptiveStatus, CaptiveError> {
    let (head, body) = http::get(&p.url, p.timeout, MAX_BODY)
        .await
        .map_err(|source| CaptiveError {
            url: p.url.to_string(),
            source,
        })?;
    Ok(classify(&p.url, p.expected_body.as_deref(), &head, &body))
}

/// Decides from an answer (pure: the probe's logic without the network).
pub fn classify(
    url: &HttpUrl,
    expected_body: Option<&str>,
    head: &ResponseHead,
    body: &[u8],
) -> CaptiveStatus {
    let portal = |to: String| CaptiveStatus::Portal {
        url: to,
        status_line: head.status_line.clone(),
    };
    match head.status {
        204 => CaptiveStatus::Open,
        200 => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            match expected_body {
                Some(e) if text == e.trim() => CaptiveStatus::Open,
                None if text.is_empty() => CaptiveStatus::Open,
                _ => portal(url.to_string()),
            }
        }
        300..=399 => match head.header("location") {
            Some(loc) => portal(resolve_location(url, loc)),
            None => portal(url.to_string()),
        },
        _ => portal(url.to_string()),
    }
}

/// Makes a `Location` value absolute against the probe URL.
pub fn resolve_location(base: &HttpUrl, loc: &str) -> String {
    let loc = loc.trim();
    if loc.contains("://") {
        return loc.to_owned();
    }
    let origin = format!("http://{}", http::authority(&base.host, base.port));
    if let Some(rest) = loc.strip_prefix("//") {
        return format!("http://{rest}");
    }
    if loc.starts_with('/') {
        return format!("{origin}{loc}");
    }
    let path = base.path.split('?').next().unwrap_or("/");
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    format!("{origin}{dir}{loc}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A one-shot HTTP responder on loopback answering every request with `answer`.
    async fn responder(answer: &'static [u8]) -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let mut req = Vec::new();
                let mut b = [0u8; 256];
                while !req.ends_with(b"\r\n\r\n") {
                    let n = s.read(&mut b).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    req.extend_from_slice(&b[..n]);
                }
                let req = String::from_utf8(req).unwrap();
                assert!(req.starts_with("GET /generate_204 HTTP/1.1\r\n"), "{req}");
                assert!(req.contains(&format!("\r\nHost: {addr}\r\n")), "{req}");
                let _ = s.write_all(answer).await;
            }
        });
        format!("http://{addr}/generate_204")
    }

    async fn run(answer: &'static [u8], expected: Option<&str>) -> CaptiveStatus {
        let mut p = CaptiveProbe::new(&responder(answer).await).unwrap();
        p.expected_body = expected.map(str::to_owned);
        probe(&p).await.unwrap()
    }

    #[tokio::test]
    async fn open_network() {
        assert_eq!(
            run(b"HTTP/1.1 204 No Content\r\n\r\n", None).await,
            CaptiveStatus::Open
        );
        assert_eq!(
            run(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", None).await,
            CaptiveStatus::Open
        );
        assert_eq!(
            run(
                b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsuccess\n",
                Some("success")
            )
            .await,
            CaptiveStatus::Open
        );
    }

    #[tokio::test]
    async fn portals() {
        assert_eq!(
            run(
                b"HTTP/1.1 302 Found\r\nLocation: http://login.hotel.example/portal?x=1\r\nContent-Length: 0\r\n\r\n",
                None
            )
            .await,
            CaptiveStatus::Portal {
                url: "http://login.hotel.example/portal?x=1".into(),
                status_line: "HTTP/1.1 302 Found".into()
            }
        );
        let url = responder(b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /login\r\n\r\n").await;
        let origin = url.trim_end_matches("/generate_204").to_owned();
        match probe(&CaptiveProbe::new(&url).unwrap()).await.unwrap() {
            CaptiveStatus::Portal { url, .. } => assert_eq!(url, format!("{origin}/login")),
            o => panic!("{o:?}"),
        }
        let url = responder(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n<html>\r\n0\r\n\r\n",
        )
        .await;
        assert_eq!(
            probe(&CaptiveProbe::new(&url).unwrap()).await.unwrap(),
            CaptiveStatus::Portal {
                url: url.clone(),
                status_line: "HTTP/1.1 200 OK".into()
            }
        );
        // A body that is not the expected one.
        assert!(matches!(
            run(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nlogin",
                Some("success")
            )
            .await,
            CaptiveStatus::Portal { .. }
        ));
        assert!(matches!(
            run(
                b"HTTP/1.1 511 Network Authentication Required\r\n\r\n",
                None
            )
            .await,
            CaptiveStatus::Portal { .. }
        ));
    }

    #[tokio::test]
    async fn no_network_is_an_error() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let e = probe(&CaptiveProbe::new(&format!("http://{addr}/")).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(e.source, GetError::Connect { .. }), "{e:?}");
    }

    #[test]
    fn locations() {
        let base = HttpUrl::parse("http://probe.example/a/b?c").unwrap();
        assert_eq!(resolve_location(&base, "x"), "http://probe.example:80/a/x");
        assert_eq!(resolve_location(&base, "//portal/p"), "http://portal/p");
        assert_eq!(
            resolve_location(&base, "https://portal/p"),
            "https://portal/p"
        );
    }
}
