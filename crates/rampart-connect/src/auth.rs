//! Proxy authentication: parsing `Proxy-Authenticate` challenges and answering them with
//! Basic (RFC 7617) or Digest (RFC 7616: MD5 and SHA-256, with or without `-sess`, `qop=auth`
//! or the RFC 2069 form without qop, `userhash`).
//!
//! Preference when a proxy offers several: Digest SHA-256, Digest MD5, Basic. `auth-int` is
//! not offered by us (a CONNECT has no body), so a challenge that allows only `auth-int` is
//! unsupported.

use std::fmt::Write as _;

use base64::Engine as _;
use md5::Digest as _;

/// One challenge: the scheme and its parameters (names lower-cased, values unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The parameter `name` (lower case).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses one `Proxy-Authenticate` header value into its challenges. Malformed parts are
/// skipped, never an error: the caller decides from what is left. Allocation is bounded by the
/// input length.
pub fn parse_challenges(value: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let b = value.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t' || b[*i] == b',') {
            *i += 1;
        }
    };
    let is_tchar = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&c);
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            break;
        }
        let start = i;
        while i < b.len() && is_tchar(b[i]) {
            i += 1;
        }
        if i == start {
            // Not a token: skip one byte and resynchronise.
            i += 1;
            continue;
        }
        let token = &value[start..i];
        // Token followed by optional spaces and '=' is a parameter of the current challenge.
        let mut j = i;
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
            j += 1;
        }
        if j < b.len() && b[j] == b'=' && !out.is_empty() {
            // A token68 (base64 with '=' padding) right after the scheme also lands here; we
            // don't use token68 challenges, so reading it as a parameter is harmless.
            j += 1;
            while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
                j += 1;
            }
            let (val, next) = if j < b.len() && b[j] == b'"' {
                let mut v = String::new();
                let mut k = j + 1;
                while k < b.len() && b[k] != b'"' {
                    if b[k] == b'\\' && k + 1 < b.len() {
                        k += 1;
                    }
                    // Push whole UTF-8 characters.
                    let ch_len = utf8_len(b[k]);
                    let end = (k + ch_len).min(b.len());
                    v.push_str(value.get(k..end).unwrap_or(""));
                    k = end;
                }
                (v, (k + 1).min(b.len()))
            } else {
                let s = j;
                let mut k = j;
                while k < b.len() && b[k] != b',' && b[k] != b' ' && b[k] != b'\t' {
                    k += 1;
                }
                (value[s..k].to_owned(), k)
            };
            if let Some(c) = out.last_mut() {
                c.params.push((token.to_ascii_lowercase(), val));
            }
            i = next;
        } else {
            out.push(Challenge {
                scheme: token.to_owned(),
                params: Vec::new(),
            });
        }
    }
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xff => 4,
        _ => 1,
    }
}

/// The Digest hash functions we speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgorithm {
    Md5,
    Sha256,
}

impl DigestAlgorithm {
    fn hex(self, data: &str) -> String {
        let mut s = String::with_capacity(64);
        match self {
            DigestAlgorithm::Md5 => {
                for b in md5::Md5::digest(data.as_bytes()) {
                    let _ = write!(s, "{b:02x}");
                }
            }
            DigestAlgorithm::Sha256 => {
                for b in
                    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data.as_bytes()).as_ref()
                {
                    let _ = write!(s, "{b:02x}");
                }
            }
        }
        s
    }
}

/// A Digest challenge we can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestChallenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: DigestAlgorithm,
    /// `-sess` variant of the algorithm.
    pub session: bool,
    /// The server offered `qop=auth` (else the RFC 2069 form is used).
    pub qop_auth: bool,
    /// `userhash=true`: the user name is sent hashed.
    pub userhash: bool,
    /// The algorithm token as the server wrote it (echoed back).
    pub algorithm_token: Option<String>,
}

impl DigestChallenge {
    /// Reads a `Digest` challenge; `None` if it is not Digest, lacks realm or nonce, names an
    /// unknown algorithm, or allows only `auth-int`.
    pub fn from_challenge(c: &Challenge) -> Option<DigestChallenge> {
        if !c.scheme.eq_ignore_ascii_case("digest") {
            return None;
        }
        let realm = c.param("realm")?.to_owned();
        let nonce = c.param("nonce")?.to_owned();
        let alg_token = c.param("algorithm").map(str::to_owned);
        let alg = alg_token.as_deref().unwrap_or("MD5").to_ascii_uppercase();
        let (algorithm, session) = match alg.as_str() {
            "MD5" => (DigestAlgorithm::Md5, false),
            "MD5-SESS" => (DigestAlgorithm::Md5, true),
            "SHA-256" => (DigestAlgorithm::Sha256, false),
            "SHA-256-SESS" => (DigestAlgorithm::Sha256, true),
            _ => return None,
        };
        let qop_auth = match c.param("qop") {
            None => false,
            Some(q) => {
                if q.split(',').any(|q| q.trim().eq_ignore_ascii_case("auth")) {
                    true
                } else {
                    return None;
                }
            }
        };
        Some(DigestChallenge {
            realm,
            nonce,
            opaque: c.param("opaque").map(str::to_owned),
            algorithm,
            session,
            qop_auth,
            userhash: c
                .param("userhash")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
            algorithm_token: alg_token,
        })
    }

    /// The `response` value (lower-case hex) for `method` and `uri` with client nonce
    /// `cnonce` and nonce count `nc` (RFC 7616 3.4.1).
    pub fn response(
        &self,
        user: &str,
        password: &str,
        method: &str,
        uri: &str,
        cnonce: &str,
        nc: u32,
    ) -> String {
        let h = |s: &str| self.algorithm.hex(s);
        let mut ha1 = h(&format!("{user}:{}:{password}", self.realm));
        if self.session {
            ha1 = h(&format!("{ha1}:{}:{cnonce}", self.nonce));
        }
        let ha2 = h(&format!("{method}:{uri}"));
        if self.qop_auth {
            h(&format!(
                "{ha1}:{}:{nc:08x}:{cnonce}:auth:{ha2}",
                self.nonce
            ))
        } else {
            h(&format!("{ha1}:{}:{ha2}", self.nonce))
        }
    }

    /// The whole `Proxy-Authorization` value.
    pub fn authorization(
        &self,
        user: &str,
        password: &str,
        method: &str,
        uri: &str,
        cnonce: &str,
        nc: u32,
    ) -> String {
        let response = self.response(user, password, method, uri, cnonce, nc);
        let username = if self.userhash {
            self.algorithm.hex(&format!("{user}:{}", self.realm))
        } else {
            user.to_owned()
        };
        let mut v = format!(
            "Digest username={}, realm={}, uri={}",
            quote(&username),
            quote(&self.realm),
            quote(uri)
        );
        if let Some(a) = &self.algorithm_token {
            let _ = write!(v, ", algorithm={a}");
        }
        let _ = write!(v, ", nonce={}", quote(&self.nonce));
        if self.qop_auth {
            let _ = write!(v, ", nc={nc:08x}, cnonce={}, qop=auth", quote(cnonce));
        }
        let _ = write!(v, ", response=\"{response}\"");
        if let Some(o) = &self.opaque {
            let _ = write!(v, ", opaque={}", quote(o));
        }
        if self.userhash {
            v.push_str(", userhash=true");
        }
        v
    }
}

fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// `Basic base64(user:password)`.
pub fn basic_authorization(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// The scheme chosen for a set of challenges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chosen {
    Digest(DigestChallenge),
    Basic,
}

/// Picks the strongest challenge we support from all `Proxy-Authenticate` values: Digest
/// SHA-256, then Digest MD5, then Basic.
pub fn choose<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Chosen> {
    let mut best: Option<Chosen> = None;
    let rank = |c: &Chosen| match c {
        Chosen::Digest(d) if d.algorithm == DigestAlgorithm::Sha256 => 3,
        Chosen::Digest(_) => 2,
        Chosen::Basic => 1,
    };
    for v in values {
        for c in parse_challenges(v) {
            let cand = if c.scheme.eq_ignore_ascii_case("basic") {
                Some(Chosen::Basic)
            } else {
                DigestChallenge::from_challenge(&c).map(Chosen::Digest)
            };
            if let Some(cand) = cand {
                if best.as_ref().is_none_or(|b| rank(&cand) > rank(b)) {
                    best = Some(cand);
                }
            }
        }
    }
    best
}

/// A fresh random client nonce (128 bits, base64).
pub fn new_cnonce() -> String {
    let mut b = [0u8; 16];
    // aws-lc's RNG does not fail in practice; a zero nonce would still be a valid (weak) one.
    let _ = aws_lc_rs::rand::fill(&mut b);
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7616 section 3.9.1: the same request answered with SHA-256 and with MD5.
    fn rfc7616(alg: &str) -> DigestChallenge {
        let header = format!(
            "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm={alg}, \
             nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
             opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
        );
        let cs = parse_challenges(&header);
        assert_eq!(cs.len(), 1);
        DigestChallenge::from_challenge(&cs[0]).unwrap()
    }

    const CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

    #[test]
    fn rfc7616_sha256_vector() {
        let d = rfc7616("SHA-256");
        assert_eq!(d.algorithm, DigestAlgorithm::Sha256);
        assert_eq!(
            d.response(
                "Mufasa",
                "Circle of Life",
                "GET",
                "/dir/index.html",
                CNONCE,
                1
            ),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn rfc7616_md5_vector() {
        let d = rfc7616("MD5");
        assert_eq!(
            d.response(
                "Mufasa",
                "Circle of Life",
                "GET",
                "/dir/index.html",
                CNONCE,
                1
            ),
            "8ca523f5e9506fed4657c9700eebdbec"
        );
        let a = d.authorization(
            "Mufasa",
            "Circle of Life",
            "GET",
            "/dir/index.html",
            CNONCE,
            1,
        );
        assert_eq!(
            a,
            "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", uri=\"/dir/index.html\", \
             algorithm=MD5, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", nc=00000001, \
             cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", qop=auth, \
             response=\"8ca523f5e9506fed4657c9700eebdbec\", \
             opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
        );
    }

    /// RFC 2617 section 3.5 (qop=auth, MD5) and the RFC 2069 form without qop.
    #[test]
    fn rfc2617_vector_and_no_qop() {
        let c = &parse_challenges(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )[0];
        let d = DigestChallenge::from_challenge(c).unwrap();
        assert_eq!(
            d.response(
                "Mufasa",
                "Circle Of Life",
                "GET",
                "/dir/index.html",
                "0a4f113b",
                1
            ),
            "6629fae49393a05397450978507c4ef1"
        );
        let mut d2 = d.clone();
        d2.qop_auth = false;
        // H(H(A1):nonce:H(A2)) computed independently.
        let ha1 = DigestAlgorithm::Md5.hex("Mufasa:testrealm@host.com:Circle Of Life");
        let ha2 = DigestAlgorithm::Md5.hex("GET:/dir/index.html");
        let want =
            DigestAlgorithm::Md5.hex(&format!("{ha1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:{ha2}"));
        assert_eq!(
            d2.response("Mufasa", "Circle Of Life", "GET", "/dir/index.html", "x", 1),
            want
        );
    }

    #[test]
    fn basic() {
        // RFC 7617 section 2.
        assert_eq!(
            basic_authorization("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }

    #[test]
    fn challenges_and_choice() {
        let cs = parse_challenges(
            "Basic realm=\"squid\", Digest realm=\"r\", nonce=\"n,1\", algorithm=SHA-256, qop=\"auth\", Negotiate",
        );
        assert_eq!(cs.len(), 3);
        assert_eq!(cs[0].scheme, "Basic");
        assert_eq!(cs[1].param("nonce"), Some("n,1"));
        assert_eq!(cs[2].scheme, "Negotiate");
        match choose(["Basic realm=\"x\"", "Digest realm=\"r\", nonce=\"n\""]) {
            Some(Chosen::Digest(d)) => assert_eq!(d.algorithm, DigestAlgorithm::Md5),
            other => panic!("{other:?}"),
        }
        match choose([
            "Digest realm=\"r\", nonce=\"n\"",
            "Digest realm=\"r\", nonce=\"m\", algorithm=SHA-256",
        ]) {
            Some(Chosen::Digest(d)) => assert_eq!(
                (d.algorithm, d.nonce.as_str()),
                (DigestAlgorithm::Sha256, "m")
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(choose(["Basic realm=\"x\""]), Some(Chosen::Basic));
        assert_eq!(choose(["Negotiate", "NTLM"]), None);
        assert_eq!(
            choose(["Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\""]),
            None
        );
        assert_eq!(
            choose(["Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256"]),
            None
        );
    }

    #[test]
    fn userhash_and_sess() {
        let c = &parse_challenges(
            "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256-sess, qop=auth, userhash=true",
        )[0];
        let d = DigestChallenge::from_challenge(c).unwrap();
        assert!(d.session && d.userhash);
        let a = d.authorization("u", "p", "CONNECT", "gw:443", "c", 1);
        let uh = DigestAlgorithm::Sha256.hex("u:r");
        assert!(a.starts_with(&format!("Digest username=\"{uh}\"")), "{a}");
        assert!(a.ends_with("userhash=true"));
        let ha1 =
            DigestAlgorithm::Sha256.hex(&format!("{}:n:c", DigestAlgorithm::Sha256.hex("u:r:p")));
        let ha2 = DigestAlgorithm::Sha256.hex("CONNECT:gw:443");
        let want = DigestAlgorithm::Sha256.hex(&format!("{ha1}:n:00000001:c:auth:{ha2}"));
        assert_eq!(d.response("u", "p", "CONNECT", "gw:443", "c", 1), want);
    }
}
