//! The PAC interpreter (`rampart_connect::pac`) on arbitrary scripts: parsing and evaluating
//! never panics, never overflows the stack and always ends (the size, depth, call and step
//! limits); whatever string FindProxyForURL returns parses into a non-empty proxy list.
//!
//! Input: the script as UTF-8 (non-UTF-8 inputs are skipped). It is evaluated for three
//! (url, host) pairs with a resolver that answers for some names and not others.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use rampart_connect::pac::{Pac, PacEnv};
use rampart_connect::proxy::parse_pac_result;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(pac) = Pac::parse(src) else {
        return;
    };
    let resolve = |h: &str| {
        h.len().is_multiple_of(2).then(|| IpAddr::V4(Ipv4Addr::new(10, 0, h.len() as u8, 1)))
    };
    let env = PacEnv {
        my_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
        resolve: &resolve,
    };
    for (url, host) in [
        ("https://gw.example:443/", "gw.example"),
        ("http://10.0.0.1/x", "10.0.0.1"),
        ("", ""),
    ] {
        if let Ok(s) = pac.find_proxy_raw(&env, url, host) {
            assert!(!parse_pac_result(&s).is_empty());
        }
    }
});
