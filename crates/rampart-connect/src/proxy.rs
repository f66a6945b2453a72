//! Which HTTP CONNECT proxies to try: an explicit URL, the environment (`https_proxy`,
//! `HTTPS_PROXY`, `all_proxy`, `ALL_PROXY`, with `no_proxy` / `NO_PROXY`), or a PAC script
//! (see [`crate::pac`]). Every source yields an ordered list of [`ProxyChoice`]s, tried in
//! order; `Direct` in the list means "connect without a proxy".

use std::fmt;
use std::net::IpAddr;

use crate::http::{split_host_port, HttpError, HttpUrl};

/// User name and password for a proxy. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// An HTTP proxy to send CONNECT to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    pub host: String,
    pub port: u16,
    /// From the configuration or the URL's `user:password@`.
    pub credentials: Option<Credentials>,
}

impl Proxy {
    /// From `http://[user:password@]host[:port]`; a URL without a port means 3128 (squid's
    /// default). A URL without a scheme is taken as `http://`.
    pub fn from_url(url: &str) -> Result<Proxy, HttpError> {
        let has_port = {
            let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
            let auth = after_scheme.split(['/', '?', '#']).next().unwrap_or("");
            let hostport = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
            hostport.rsplit_once(':').is_some_and(|(h, p)| {
                !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':')
            }) && (!hostport.starts_with('[') || hostport.contains("]:"))
        };
        let u = HttpUrl::parse(url)?;
        Ok(Proxy {
            host: u.host,
            port: if has_port { u.port } else { 3128 },
            credentials: u
                .userinfo
                .map(|(user, password)| Credentials { user, password }),
        })
    }

    /// `host:port` (brackets for IPv6).
    pub fn authority(&self) -> String {
        crate::http::authority(&self.host, self.port)
    }
}

/// One entry of a proxy list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyChoice {
    Direct,
    Proxy(Proxy),
}

/// Parses a PAC result such as `"PROXY a:3128; PROXY b:8080; DIRECT"`. `PROXY` and `HTTP`
/// entries become proxies (port 80 when none is written, as browsers do), `DIRECT` stays;
/// `SOCKS*` and `HTTPS` entries are skipped (not supported), as are malformed ones. An empty
/// or all-skipped result means `DIRECT`.
pub fn parse_pac_result(s: &str) -> Vec<ProxyChoice> {
    let mut out = Vec::new();
    for entry in s.split(';') {
        let mut words = entry.split_whitespace();
        let Some(kind) = words.next() else { continue };
        match kind.to_ascii_uppercase().as_str() {
            "DIRECT" => out.push(ProxyChoice::Direct),
            "PROXY" | "HTTP" => {
                if let Some((host, port)) = words.next().and_then(|hp| split_host_port(hp, 80)) {
                    out.push(ProxyChoice::Proxy(Proxy {
                        host,
                        port,
                        credentials: None,
                    }));
                }
            }
            _ => {}
        }
    }
    if out.is_empty() {
        out.push(ProxyChoice::Direct);
    }
    out
}

/// The proxy list from environment variables, read through `var` (pass
/// `|k| std::env::var(k).ok()`). `host` is the gateway's host name or address, `port` its
/// port (for `no_proxy` entries with a port). Lower-case names win over upper-case ones,
/// `https_proxy` over `all_proxy`. Empty values count as unset.
pub fn from_env(var: impl Fn(&str) -> Option<String>, host: &str, port: u16) -> Vec<ProxyChoice> {
    let get = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| var(n).filter(|v| !v.trim().is_empty()))
    };
    let Some(url) = get(&["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]) else {
        return vec![ProxyChoice::Direct];
    };
    if let Some(np) = get(&["no_proxy", "NO_PROXY"]) {
        if no_proxy_matches(&np, host, port) {
            return vec![ProxyChoice::Direct];
        }
    }
    match Proxy::from_url(&url) {
        Ok(p) => vec![ProxyChoice::Proxy(p)],
        Err(e) => {
            tracing::warn!(%e, "ignoring an unusable proxy from the environment");
            vec![ProxyChoice::Direct]
        }
    }
}

/// Whether a `no_proxy` list (comma or space separated) exempts `host:port`. Entries: `*`
/// (everything), a domain (`example.com` or `.example.com`: the name and its subdomains), an
/// IP address, a CIDR prefix (`10.0.0.0/8`), each optionally with `:port`.
pub fn no_proxy_matches(list: &str, host: &str, port: u16) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let host_ip: Option<IpAddr> = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok();
    for entry in list
        .split([',', ' '])
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        if entry == "*" {
            return true;
        }
        // Split an optional port; IPv6 entries may be bracketed.
        let (name, eport) = if let Some(rest) = entry.strip_prefix('[') {
            match rest.split_once(']') {
                Some((h, p)) => (h, p.strip_prefix(':').and_then(|p| p.parse::<u16>().ok())),
                None => continue,
            }
        } else if entry.matches(':').count() == 1 {
            let (h, p) = entry.split_once(':').unwrap_or((entry, ""));
            (h, p.parse::<u16>().ok())
        } else {
            (entry, None)
        };
        if eport.is_some_and(|p| p != port) {
            continue;
        }
        if let Some(ip) = host_ip {
            if let Some((net, len)) = name.split_once('/') {
                if let (Ok(net), Ok(len)) = (net.parse::<IpAddr>(), len.parse::<u8>()) {
                    if in_prefix(ip, net, len) {
                        return true;
                    }
                }
                continue;
            }
            if name.parse::<IpAddr>().ok() == Some(ip) {
                return true;
            }
            continue;
        }
        let dom = name.trim_start_matches("*.").trim_start_matches('.');
        let dom = dom.trim_end_matches('.').to_ascii_lowercase();
        if dom.is_empty() {
            continue;
        }
        if host == dom || host.ends_with(&format!(".{dom}")) {
            return true;
        }
    }
    false
}

/// `ip` lies in `net/len` (same family only).
pub fn in_prefix(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if len <= 32 => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if len <= 128 => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Where the proxy list comes from (the profile's `proxy` setting, typed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxySource {
    /// Direct only.
    None,
    /// [`from_env`] on the process environment.
    Environment,
    /// One configured proxy.
    Explicit(Proxy),
    /// A PAC script from a file path or an `http://` URL, evaluated for the gateway; the
    /// credentials go to every proxy it names.
    Pac {
        location: String,
        credentials: Option<Credentials>,
    },
}

/// [`discover`] failed (only PAC can).
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("cannot load the PAC script: {0}")]
    Load(String),
    #[error(transparent)]
    Pac(#[from] crate::pac::PacError),
}

/// The ordered proxy list for reaching `host:port` (the gateway's stream transport). A PAC
/// script is asked about `https://host:port/` (the stream is a CONNECT to a TLS port); names
/// it resolves use the system resolver. `my_ip` answers `myIpAddress()`.
pub async fn discover(
    source: &ProxySource,
    host: &str,
    port: u16,
    my_ip: IpAddr,
) -> Result<Vec<ProxyChoice>, DiscoverError> {
    match source {
        ProxySource::None => Ok(vec![ProxyChoice::Direct]),
        ProxySource::Environment => Ok(from_env(|k| std::env::var(k).ok(), host, port)),
        ProxySource::Explicit(p) => Ok(vec![ProxyChoice::Proxy(p.clone())]),
        ProxySource::Pac {
            location,
            credentials,
        } => {
            let text = crate::pac::load(location, std::time::Duration::from_secs(5))
                .await
                .map_err(DiscoverError::Load)?;
            let host = host.to_owned();
            let url = format!("https://{}/", crate::http::authority(&host, port));
            let choices = tokio::task::spawn_blocking(move || {
                let pac = crate::pac::Pac::parse(&text)?;
                let resolve = |h: &str| {
                    use std::net::ToSocketAddrs;
                    (h, 0).to_socket_addrs().ok()?.next().map(|a| a.ip())
                };
                let env = crate::pac::PacEnv {
                    my_ip,
                    resolve: &resolve,
                };
                pac.find_proxy(&env, &url, &host)
            })
            .await
            .map_err(|e| DiscoverError::Load(format!("PAC evaluation panicked: {e}")))??;
            Ok(choices
                .into_iter()
                .map(|c| match c {
                    ProxyChoice::Proxy(mut p) => {
                        if p.credentials.is_none() {
                            p.credentials = credentials.clone();
                        }
                        ProxyChoice::Proxy(p)
                    }
                    d => d,
                })
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn proxy(host: &str, port: u16) -> ProxyChoice {
        ProxyChoice::Proxy(Proxy {
            host: host.into(),
            port,
            credentials: None,
        })
    }

    #[test]
    fn environment() {
        assert_eq!(from_env(env(&[]), "gw", 443), vec![ProxyChoice::Direct]);
        assert_eq!(
            from_env(
                env(&[("HTTPS_PROXY", "http://p:8080"), ("all_proxy", "q:1")]),
                "gw",
                443
            ),
            vec![proxy("p", 8080)]
        );
        assert_eq!(
            from_env(env(&[("https_proxy", ""), ("all_proxy", "q")]), "gw", 443),
            vec![proxy("q", 3128)]
        );
        let with_creds = from_env(env(&[("https_proxy", "http://u:p%3Aw@p:8080/")]), "gw", 443);
        match &with_creds[0] {
            ProxyChoice::Proxy(p) => assert_eq!(
                p.credentials,
                Some(Credentials {
                    user: "u".into(),
                    password: "p:w".into()
                })
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            from_env(
                env(&[
                    ("https_proxy", "p:1"),
                    ("NO_PROXY", "localhost, .corp.example")
                ]),
                "vpn.corp.example",
                443
            ),
            vec![ProxyChoice::Direct]
        );
        assert_eq!(
            from_env(env(&[("https_proxy", "https://p:1")]), "gw", 443),
            vec![ProxyChoice::Direct]
        );
    }

    #[test]
    fn no_proxy() {
        assert!(no_proxy_matches("*", "anything", 1));
        assert!(no_proxy_matches("example.com", "example.com", 1));
        assert!(no_proxy_matches("example.com", "vpn.Example.COM.", 1));
        assert!(!no_proxy_matches("example.com", "badexample.com", 1));
        assert!(no_proxy_matches(".example.com", "example.com", 1));
        assert!(no_proxy_matches("*.example.com", "a.example.com", 1));
        assert!(no_proxy_matches("10.0.0.0/8", "10.1.2.3", 1));
        assert!(!no_proxy_matches("10.0.0.0/8", "11.1.2.3", 1));
        assert!(no_proxy_matches("192.0.2.1:443", "192.0.2.1", 443));
        assert!(!no_proxy_matches("192.0.2.1:443", "192.0.2.1", 4500));
        assert!(no_proxy_matches("2001:db8::/32", "2001:db8::5", 1));
        assert!(no_proxy_matches("[2001:db8::5]:443", "2001:db8::5", 443));
        assert!(!no_proxy_matches("10.0.0.0/8", "ten.example", 1));
        assert!(!no_proxy_matches("", "x", 1));
    }

    #[test]
    fn pac_results() {
        assert_eq!(
            parse_pac_result("PROXY a:3128; proxy b ;SOCKS s:1080; HTTPS h:443; DIRECT"),
            vec![proxy("a", 3128), proxy("b", 80), ProxyChoice::Direct]
        );
        assert_eq!(parse_pac_result(""), vec![ProxyChoice::Direct]);
        assert_eq!(parse_pac_result("SOCKS5 s:1"), vec![ProxyChoice::Direct]);
        assert_eq!(
            parse_pac_result("PROXY [2001:db8::1]:8080"),
            vec![proxy("2001:db8::1", 8080)]
        );
    }

    #[tokio::test]
    async fn discover_from_pac_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.pac");
        std::fs::write(
            &path,
            "function FindProxyForURL(url, host) {\n\
             if (shExpMatch(url, 'https://*:443/') && !isInNet(myIpAddress(), '10.0.0.0', '255.0.0.0'))\n\
               return 'PROXY p1:8080; PROXY p2; DIRECT';\n\
             return 'DIRECT'; }",
        )
        .unwrap();
        let creds = Credentials {
            user: "u".into(),
            password: "p".into(),
        };
        let src = ProxySource::Pac {
            location: path.display().to_string(),
            credentials: Some(creds.clone()),
        };
        let got = discover(&src, "gw.example", 443, "192.0.2.7".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(got.len(), 3);
        assert!(
            matches!(&got[0], ProxyChoice::Proxy(p) if p.port == 8080 && p.credentials == Some(creds.clone()))
        );
        assert!(matches!(&got[1], ProxyChoice::Proxy(p) if p.host == "p2" && p.port == 80));
        assert_eq!(got[2], ProxyChoice::Direct);
        let got = discover(&src, "gw.example", 443, "10.0.0.7".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(got, vec![ProxyChoice::Direct]);
        let bad = ProxySource::Pac {
            location: "/nonexistent.pac".into(),
            credentials: None,
        };
        assert!(matches!(
            discover(&bad, "gw", 443, "10.0.0.7".parse().unwrap()).await,
            Err(DiscoverError::Load(_))
        ));
    }

    #[test]
    fn proxy_urls() {
        assert_eq!(Proxy::from_url("http://p").unwrap().port, 3128);
        assert_eq!(Proxy::from_url("http://p:80").unwrap().port, 80);
        assert_eq!(Proxy::from_url("http://[2001:db8::1]").unwrap().port, 3128);
        assert_eq!(Proxy::from_url("http://[2001:db8::1]:81").unwrap().port, 81);
        assert_eq!(
            Proxy::from_url("http://[2001:db8::1]:81")
                .unwrap()
                .authority(),
            "[2001:db8::1]:81"
        );
    }
}
