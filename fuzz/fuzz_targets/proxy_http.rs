//! The HTTP pieces the proxy client and the captive-portal probe parse from the network or
//! the environment, on arbitrary bytes: response heads, `Proxy-Authenticate` challenges and
//! the scheme choice, chunked bodies, `http://` URLs, `host:port`, `no_proxy` lists and PAC
//! results. No panics; parsed heads keep a 3-digit status and a status line from the input;
//! a chunked decode never returns more than asked for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_connect::auth::{choose, parse_challenges};
use rampart_connect::http::{decode_chunked, parse_response_head, split_host_port, HttpUrl};
use rampart_connect::proxy::{no_proxy_matches, parse_pac_result};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = parse_response_head(data) {
        assert!((100..=999).contains(&h.status));
        let text = String::from_utf8_lossy(data);
        assert!(text.starts_with(&h.status_line));
        let _ = choose(h.headers("proxy-authenticate"));
    }
    let max = data.first().map_or(0, |b| usize::from(*b) * 8);
    if let Some(body) = decode_chunked(data, max) {
        assert!(body.len() <= max);
    }
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let cs = parse_challenges(s);
    assert!(cs.len() <= s.len());
    let _ = choose([s]);
    if let Ok(u) = HttpUrl::parse(s) {
        assert!(u.path.starts_with('/'));
        assert!(u.port != 0);
    }
    if let Some((h, p)) = split_host_port(s, 1) {
        assert!(!h.is_empty() && p != 0);
    }
    let (list, host) = s.split_once('\n').unwrap_or((s, "gw.example"));
    let _ = no_proxy_matches(list, host, 443);
    assert!(!parse_pac_result(s).is_empty());
});
