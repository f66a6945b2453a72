use super::*;
use crate::proxy::Proxy;

fn env_resolving(
    table: &'static [(&'static str, &'static str)],
) -> impl Fn(&str) -> Option<IpAddr> {
    move |h| {
        table
            .iter()
            .find(|(n, _)| *n == h)
            .and_then(|(_, ip)| ip.parse().ok())
    }
}

fn eval(src: &str, url: &str, host: &str) -> Result<String, PacError> {
    let resolve = env_resolving(&[
        ("intranet.corp.example", "10.1.2.3"),
        ("www.example.org", "192.0.2.80"),
    ]);
    let env = PacEnv {
        my_ip: "10.9.8.7".parse().unwrap(),
        resolve: &resolve,
    };
    Pac::parse(src)?.find_proxy_raw(&env, url, host)
}

/// A PAC file in the style offices deploy, exercising every supported PAC function.
const OFFICE: &str = r#"
// Corporate PAC
var proxy = "PROXY proxy.corp.example:3128; PROXY 10.0.0.2:8080; DIRECT";
/* helpers */
function isInternal(host) {
    return dnsDomainIs(host, ".corp.example") || localHostOrDomainIs(host, "wiki.corp.example");
}
function FindProxyForURL(url, host) {
    host = host.toLowerCase();
    if (isPlainHostName(host) || isInternal(host))
        return "DIRECT";
    else if (shExpMatch(url, "http://*.local/*") || shExpMatch(host, "10.*"))
        return 'DIRECT';
    if (isInNet(host, "10.0.0.0", "255.0.0.0") || isInNet(dnsResolve(host), "172.16.0.0", "255.240.0.0"))
        return "DIRECT";
    if (isInNet(myIpAddress(), "10.9.0.0", "255.255.0.0") && dnsDomainLevels(host) > 1) {
        return proxy;
    }
    if (url.substring(0, 6) == "https:" && host.indexOf("vpn") >= 0) return "PROXY vpnproxy:443";
    return isResolvable(host) ? "PROXY resolvable:1" : "DIRECT";
}
"#;

#[test]
fn office_pac() {
    assert_eq!(eval(OFFICE, "https://wiki/", "wiki").unwrap(), "DIRECT");
    assert_eq!(
        eval(OFFICE, "https://a.corp.example/", "A.Corp.Example").unwrap(),
        "DIRECT"
    );
    assert_eq!(eval(OFFICE, "https://x/", "wiki").unwrap(), "DIRECT");
    assert_eq!(
        eval(OFFICE, "http://box.local/x", "box.local").unwrap(),
        "DIRECT"
    );
    assert_eq!(
        eval(
            OFFICE,
            "https://intranet.corp.example/",
            "intranet.corp.example"
        )
        .unwrap(),
        "DIRECT"
    );
    assert_eq!(
        eval(OFFICE, "https://www.example.org:443/", "www.example.org").unwrap(),
        "PROXY proxy.corp.example:3128; PROXY 10.0.0.2:8080; DIRECT"
    );
    assert_eq!(
        eval(OFFICE, "https://vpn/", "vpn.example").unwrap(),
        "PROXY vpnproxy:443"
    );
    assert_eq!(
        eval(OFFICE, "http://a/", "unknown.example").unwrap(),
        "DIRECT"
    );
    let resolve = |_: &str| None;
    let env = PacEnv {
        my_ip: "10.9.8.7".parse().unwrap(),
        resolve: &resolve,
    };
    let choices = Pac::parse(OFFICE)
        .unwrap()
        .find_proxy(&env, "https://gw.example.org:443/", "gw.example.org")
        .unwrap();
    assert_eq!(
        choices,
        vec![
            ProxyChoice::Proxy(Proxy {
                host: "proxy.corp.example".into(),
                port: 3128,
                credentials: None
            }),
            ProxyChoice::Proxy(Proxy {
                host: "10.0.0.2".into(),
                port: 8080,
                credentials: None
            }),
            ProxyChoice::Direct,
        ]
    );
}

#[test]
fn values_and_operators() {
    let f = |body: &str| {
        eval(
            &format!("function FindProxyForURL(url, host) {{ {body} }}"),
            "u",
            "h",
        )
    };
    assert_eq!(f("return 'a' + 1 + 2;").unwrap(), "a12");
    assert_eq!(f("return (1 + 2) + 'a';").unwrap(), "3a");
    assert_eq!(
        f("var x; if (x == null && x === undefined && !(x === null)) return 'ok'; return 'no'")
            .unwrap(),
        "ok"
    );
    assert_eq!(f("if ('1' == 1 && !('1' === 1) && 2 > 1 && 'b' > 'a' && 1 <= 1 && '' != 'x') return 'ok'").unwrap(), "ok");
    assert_eq!(
        f("return host.length + '' + 'abc'.toUpperCase() + 'abc'.indexOf('c');").unwrap(),
        "1ABC2"
    );
    assert_eq!(f("return 'hello'.substring(3, 1);").unwrap(), "el");
    assert_eq!(f("return ('' || 'x') + (0 && 'y');").unwrap(), "x0");
    assert_eq!(f("var a = 1, b = 2; a = b; return '' + a;").unwrap(), "2");
    assert_eq!(
        f("alert('x'); ;;; { return \"q\\\"\\n\".length + ''; }").unwrap(),
        "3"
    );
    assert_eq!(f("return 1;"), Err(PacError::NotAString("1".into())));
    assert_eq!(f(""), Err(PacError::NotAString("undefined".into())));
}

#[test]
fn errors() {
    assert_eq!(
        eval("function f(a) { return 'DIRECT'; }", "u", "h"),
        Err(PacError::NoEntryPoint)
    );
    assert_eq!(
        eval("function FindProxyForURL(u) { return 'DIRECT'; }", "u", "h"),
        Err(PacError::NoEntryPoint)
    );
    assert!(matches!(
        eval(
            "function FindProxyForURL(url, host) {\n while (1) {} }",
            "u",
            "h"
        ),
        Err(PacError::Unsupported { line: 2, .. })
    ));
    assert!(matches!(
        eval(
            "function FindProxyForURL(url, host) {\n\n return 'x' + ; }",
            "u",
            "h"
        ),
        Err(PacError::Syntax { line: 3, .. })
    ));
    assert!(matches!(
        eval(
            "function FindProxyForURL(url, host) { if (timeRange(8, 18)) return 'DIRECT'; }",
            "u",
            "h"
        ),
        Err(PacError::Unsupported { .. })
    ));
    assert!(matches!(
        eval(
            "function FindProxyForURL(url, host) { return nope; }",
            "u",
            "h"
        ),
        Err(PacError::Runtime(_))
    ));
    assert!(matches!(
        eval(
            "function FindProxyForURL(url, host) { return 'unterminated; }",
            "u",
            "h"
        ),
        Err(PacError::Syntax { .. })
    ));
    assert!(matches!(
        eval("/* open", "u", "h"),
        Err(PacError::Syntax { .. })
    ));
    assert!(matches!(
        eval(
            "function FindProxyForURL(url, host) { return @; }",
            "u",
            "h"
        ),
        Err(PacError::Syntax { .. })
    ));
}

#[test]
fn hostile_scripts_end() {
    // Unbounded recursion.
    let r = eval(
        "function f(x) { return f(x + 'a'); } function FindProxyForURL(url, host) { return f(''); }",
        "u",
        "h",
    );
    assert!(matches!(r, Err(PacError::Runtime(_))), "{r:?}");
    // Exponential fan-out hits the step budget.
    let r = eval(
        "function f(x) { if (x.length > 13) return ''; return f(x + 'a') + f(x + 'b'); } \
         function FindProxyForURL(url, host) { return f(''); }",
        "u",
        "h",
    );
    assert_eq!(
        r,
        Err(PacError::Runtime("evaluation budget exhausted".into()))
    );
    // Deep nesting is a syntax error, not a stack overflow.
    let deep = format!(
        "function FindProxyForURL(url, host) {{ return {}1{}; }}",
        "(".repeat(10_000),
        ")".repeat(10_000)
    );
    assert!(matches!(
        eval(&deep, "u", "h"),
        Err(PacError::Syntax { .. })
    ));
    let deep = format!(
        "function FindProxyForURL(url, host) {{ return {}1; }}",
        "!".repeat(10_000)
    );
    assert!(matches!(
        eval(&deep, "u", "h"),
        Err(PacError::Syntax { .. })
    ));
    let deep = format!(
        "function FindProxyForURL(url, host) {{ {} return 'x'; }}",
        "if (1) ".repeat(10_000)
    );
    assert!(matches!(
        eval(&deep, "u", "h"),
        Err(PacError::Syntax { .. })
    ));
    // String doubling stops at the size limit.
    let r = eval(
        "function d(s, n) { if (n > 40) return s; return d(s + s, n + 1); } \
         function FindProxyForURL(url, host) { return d('xx', 0); }",
        "u",
        "h",
    );
    assert!(matches!(r, Err(PacError::Runtime(_))), "{r:?}");
}

#[test]
fn sh_exp() {
    assert!(sh_exp_match("http://a.local/x", "http://*.local/*"));
    assert!(sh_exp_match("abc", "a?c"));
    assert!(sh_exp_match("", "*"));
    assert!(sh_exp_match("a.b.c", "*.c"));
    assert!(!sh_exp_match("abc", "a?"));
    assert!(!sh_exp_match("10.1.2.3", "11.*"));
    assert!(sh_exp_match(
        "aaaaaaaaaaaaaaaaaaaaaaaaaab",
        "*a*a*a*a*a*a*b"
    ));
}

#[tokio::test]
async fn load_from_file_and_http() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("proxy.pac");
    std::fs::write(&p, OFFICE).unwrap();
    let t = std::time::Duration::from_secs(2);
    assert_eq!(load(p.to_str().unwrap(), t).await.unwrap(), OFFICE);
    assert!(load("/nonexistent/x.pac", t)
        .await
        .unwrap_err()
        .contains("nonexistent"));

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut b = [0u8; 1024];
        let _ = s.read(&mut b).await.unwrap();
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-ns-proxy-autoconfig\r\nContent-Length: {}\r\n\r\n{OFFICE}",
            OFFICE.len()
        );
        s.write_all(resp.as_bytes()).await.unwrap();
    });
    assert_eq!(
        load(&format!("http://{addr}/wpad.dat"), t).await.unwrap(),
        OFFICE
    );
}

/// What the `pac` fuzz target checks, on 2000 deterministic mutations of a real script (byte
/// flips, deletions, duplicated slices, truncations), so `cargo test` covers the interpreter's
/// robustness without libFuzzer: no panic, and every run ends.
#[test]
fn mutated_scripts_never_panic() {
    let resolve = |h: &str| {
        h.len()
            .is_multiple_of(2)
            .then(|| IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
    };
    let env = PacEnv {
        my_ip: "192.0.2.7".parse().unwrap(),
        resolve: &resolve,
    };
    let tokens: &[&[u8]] = &[
        b"(", b")", b"{", b"}", b"!", b"+", b"'", b"\"", b"/*", b"//", b"\n", b"?", b":", b"f(",
        b"return ", b"if (", b"else ",
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut parsed = 0;
    for _ in 0..2000 {
        let mut s = OFFICE.as_bytes().to_vec();
        for _ in 0..(next() % 6 + 1) {
            let len = s.len().max(1) as u64;
            let at = (next() % len) as usize;
            match next() % 4 {
                0 => {
                    if at < s.len() {
                        s[at] = (next() % 128) as u8;
                    }
                }
                1 => {
                    let end = (at + (next() % 40) as usize).min(s.len());
                    s.drain(at..end);
                }
                2 => {
                    let t = tokens[(next() % tokens.len() as u64) as usize];
                    s.splice(at..at, t.iter().copied());
                }
                _ => s.truncate(at),
            }
        }
        let Ok(src) = std::str::from_utf8(&s) else {
            continue;
        };
        if let Ok(pac) = Pac::parse(src) {
            parsed += 1;
            if let Ok(r) = pac.find_proxy_raw(&env, "https://gw.example:443/", "gw.example") {
                assert!(!parse_pac_result(&r).is_empty());
            }
        }
    }
    assert!(
        parsed > 100,
        "mutations too destructive to test evaluation: {parsed}"
    );
}
