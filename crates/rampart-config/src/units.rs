//! Durations (`"30s"`, `"1h30m"`, `"500ms"`) and sizes (`"100GB"`, `"10MiB"`, `"1000"`).

use std::time::Duration;

/// What a duration may look like, for error messages.
pub(crate) const DURATION_FORMS: &str =
    "a number with a unit ms, s, m, h or d, possibly combined (\"500ms\", \"30s\", \"1h30m\"), or an integer number of seconds";

/// What a size may look like, for error messages.
pub(crate) const SIZE_FORMS: &str =
    "an integer number of bytes, or a number with a unit B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), e.g. \"100GB\"";

/// Parses a sequence of `<digits><unit>` groups. Rejects empty input, a missing unit, unknown
/// units and overflow.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: u128 = 0; // milliseconds
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "invalid duration \"{s}\": expected a number at \"{rest}\""
            ));
        }
        let number: u128 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration \"{s}\": number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let ms_per_unit: u128 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(format!("invalid duration \"{s}\": a number without a unit")),
            other => {
                return Err(format!(
                    "invalid duration \"{s}\": unknown unit \"{other}\""
                ))
            }
        };
        total = number
            .checked_mul(ms_per_unit)
            .and_then(|v| total.checked_add(v))
            .filter(|v| *v <= u64::MAX as u128)
            .ok_or_else(|| format!("invalid duration \"{s}\": too large"))?;
    }
    Ok(Duration::from_millis(total as u64))
}

/// Parses a byte count with an optional unit (case-insensitive, optional space before it).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!("invalid size \"{s}\": expected a number"));
    }
    let number: u64 = t[..digits]
        .parse()
        .map_err(|_| format!("invalid size \"{s}\": number too large"))?;
    let unit = t[digits..].trim_start().to_ascii_lowercase();
    let multiplier: u64 = match unit.as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "invalid size \"{s}\": unknown unit \"{}\"",
                t[digits..].trim_start()
            ))
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("invalid size \"{s}\": too large"))
}

/// Human form of a duration for messages ("1h30m", "500ms", "0s").
pub(crate) fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, len) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= len {
            out.push_str(&format!("{}{unit}", ms / len));
            ms %= len;
        }
    }
    if ms > 0 {
        out.push_str(&format!("{ms}ms"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("4h"), Ok(Duration::from_secs(4 * 3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1m1s1ms"), Ok(Duration::from_millis(61_001)));
        for bad in [
            "",
            "30",
            "s",
            "30x",
            "1h 30m",
            "-5s",
            "1.5h",
            "99999999999999999999999999999999999999999s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("100GB"), Ok(100_000_000_000));
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("10 mib"), Ok(10 << 20));
        assert_eq!(parse_size("5kB"), Ok(5000));
        assert_eq!(parse_size("7B"), Ok(7));
        assert_eq!(parse_size("2TiB"), Ok(2 << 40));
        for bad in ["", "GB", "10XB", "-1", "1.5GB", "99999999999TiB"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    proptest! {
        #[test]
        fn duration_format_round_trips(ms in 0u64..10_000_000_000_000) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn duration_parser_never_panics(s in "\\PC{0,20}") {
            let _ = parse_duration(&s);
            let _ = parse_size(&s);
        }
    }
}
