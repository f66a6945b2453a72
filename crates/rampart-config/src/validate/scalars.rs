//! Scalar values (integers, names, durations, sizes, keywords, ports, prefixes) and the
//! error helpers every other part uses.

use super::*;

impl Validator<'_, '_> {
    pub(super) fn error(
        &mut self,
        kind: ErrorKind,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
        allowed: impl Into<Option<String>>,
    ) {
        self.sink.push(kind, span, key, message, allowed.into());
    }

    /// Reports a missing required key (once per section: a missing section is reported once).
    pub(super) fn missing<T>(&mut self, sec: &Section<T>, path: &str, key: &str, allowed: &str) {
        if !sec.present || sec.reported(key) {
            return;
        }
        self.error(
            ErrorKind::Missing,
            sec.span.clone(),
            join(path, key),
            "missing required key",
            Some(allowed.to_string()),
        );
    }

    pub(super) fn missing_section(&mut self, present: bool, name: &str, example: &str) {
        if !present {
            self.error(
                ErrorKind::Missing,
                None,
                name,
                format!("missing required table [{name}]"),
                Some(example.to_string()),
            );
        }
    }

    /// A network device name (`tunnel.device`, a profile's `device`): 1 to
    /// [`MAX_DEVICE_LEN`] bytes of `A-Z a-z 0-9 . _ -`, not `.` or `..`; an invalid one is
    /// reported and returned as written (the file is refused anyway).
    pub(super) fn device_name(&mut self, key: &str, raw: &Str, default: &str) -> String {
        let Some(d) = raw else {
            return default.to_string();
        };
        let s = d.get_ref();
        let ok = !s.is_empty()
            && s.len() <= MAX_DEVICE_LEN
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !ok {
            self.error(
                ErrorKind::InvalidValue,
                span(d),
                key,
                format!("invalid device name \"{s}\""),
                format!("1 to {MAX_DEVICE_LEN} bytes from A-Z a-z 0-9 . _ -"),
            );
        }
        s.clone()
    }

    pub(super) fn int(
        &mut self,
        key: &str,
        v: &Spanned<i64>,
        range: RangeInclusive<i64>,
    ) -> Option<i64> {
        let n = *v.get_ref();
        if range.contains(&n) {
            Some(n)
        } else {
            self.error(
                ErrorKind::OutOfRange,
                span(v),
                key,
                format!("{n} is out of range"),
                format!("{} to {}", range.start(), range.end()),
            );
            None
        }
    }

    pub(super) fn name(&mut self, key: &str, v: &Spanned<String>) -> Option<String> {
        let s = v.get_ref();
        let ok = !s.is_empty()
            && s.len() <= 64
            && !s.starts_with(['.', '-'])
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if ok {
            Some(s.clone())
        } else {
            self.error(
                ErrorKind::InvalidValue,
                span(v),
                key,
                format!("invalid name \"{s}\""),
                NAME_RULE.to_string(),
            );
            None
        }
    }

    /// A duration written as a string or as integer seconds; `zero_ok` admits 0 outside `range`.
    pub(super) fn duration(
        &mut self,
        key: &str,
        v: &Spanned<Scalar>,
        range: RangeInclusive<Duration>,
        zero_ok: bool,
    ) -> Option<Duration> {
        let d = match v.get_ref() {
            Scalar::Int(n) => match u64::try_from(*n) {
                Ok(n) => Duration::from_secs(n),
                Err(_) => {
                    self.error(
                        ErrorKind::OutOfRange,
                        span(v),
                        key,
                        format!("negative duration {n}"),
                        DURATION_FORMS.to_string(),
                    );
                    return None;
                }
            },
            Scalar::Str(s) => match parse_duration(s) {
                Ok(d) => d,
                Err(msg) => {
                    self.error(
                        ErrorKind::InvalidValue,
                        span(v),
                        key,
                        msg,
                        DURATION_FORMS.to_string(),
                    );
                    return None;
                }
            },
        };
        if range.contains(&d) || (zero_ok && d.is_zero()) {
            return Some(d);
        }
        let zero = if zero_ok { "0 (off) or " } else { "" };
        self.error(
            ErrorKind::OutOfRange,
            span(v),
            key,
            format!("{} is out of range", format_duration(d)),
            format!(
                "{zero}{} to {}",
                format_duration(*range.start()),
                format_duration(*range.end())
            ),
        );
        None
    }

    pub(super) fn size(&mut self, key: &str, v: &Spanned<Scalar>, min: u64) -> Option<u64> {
        let n = match v.get_ref() {
            Scalar::Int(n) => match u64::try_from(*n) {
                Ok(n) => n,
                Err(_) => {
                    self.error(
                        ErrorKind::OutOfRange,
                        span(v),
                        key,
                        format!("negative size {n}"),
                        SIZE_FORMS.to_string(),
                    );
                    return None;
                }
            },
            Scalar::Str(s) => match parse_size(s) {
                Ok(n) => n,
                Err(msg) => {
                    self.error(
                        ErrorKind::InvalidValue,
                        span(v),
                        key,
                        msg,
                        SIZE_FORMS.to_string(),
                    );
                    return None;
                }
            },
        };
        if n >= min {
            Some(n)
        } else {
            self.error(
                ErrorKind::OutOfRange,
                span(v),
                key,
                format!("{n} bytes is too small"),
                format!("at least {min} bytes"),
            );
            None
        }
    }

    pub(super) fn keyword<T: Copy>(
        &mut self,
        key: &str,
        v: &Spanned<String>,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let s = v.get_ref();
        if let Some((_, t)) = choices.iter().find(|(word, _)| word == s) {
            return Some(*t);
        }
        let allowed: Vec<&str> = choices.iter().map(|(w, _)| *w).collect();
        self.error(
            ErrorKind::InvalidValue,
            span(v),
            key,
            format!("unknown value \"{s}\""),
            allowed.join(", "),
        );
        None
    }

    pub(super) fn port(
        &mut self,
        key: &str,
        v: &Option<Spanned<i64>>,
        default: u16,
    ) -> (u16, Option<Range<usize>>) {
        match v {
            None => (default, None),
            Some(p) => (
                self.int(key, p, 1..=65535).map_or(default, |n| n as u16),
                span(p),
            ),
        }
    }

    /// A list of prefixes, at least one. `IpNet`s with host bits set are rejected (almost always
    /// a typo); a bare address is a host prefix.
    pub(super) fn prefixes(
        &mut self,
        key: &str,
        list: &Spanned<Vec<Spanned<String>>>,
    ) -> Vec<(IpNet, Range<usize>)> {
        if list.get_ref().is_empty() {
            self.error(
                ErrorKind::OutOfRange,
                span(list),
                key,
                "empty list",
                "at least one prefix, e.g. [\"10.1.0.0/24\"]".to_string(),
            );
        }
        let mut out = Vec::new();
        for (i, item) in list.get_ref().iter().enumerate() {
            let s = item.get_ref().trim();
            let key = format!("{key}[{i}]");
            let net = s
                .parse::<IpNet>()
                .ok()
                .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from));
            match net {
                Some(net) if net.trunc() != net => self.error(
                    ErrorKind::InvalidValue,
                    span(item),
                    key,
                    format!(
                        "prefix \"{s}\" has host bits set (did you mean {}?)",
                        net.trunc()
                    ),
                    "a network prefix such as 10.1.0.0/24 or 2001:db8::/48".to_string(),
                ),
                Some(net) => out.push((net, item.span())),
                None => self.error(
                    ErrorKind::InvalidValue,
                    span(item),
                    key,
                    format!("invalid prefix \"{s}\""),
                    "a network prefix such as 10.1.0.0/24 or 2001:db8::/48".to_string(),
                ),
            }
        }
        out
    }
}
