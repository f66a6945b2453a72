//! Human units in scenario files: durations (`150ms`, `2s`, `1m`), sizes (`4MB`, `64KiB`) and
//! rates (`100Mbit`, `1Gbit`).

use std::time::Duration;

fn split(s: &str) -> Option<(f64, &str)> {
    let s = s.trim();
    let at = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let value: f64 = s[..at].parse().ok()?;
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    Some((value, s[at..].trim()))
}

/// `0`, `250us`, `150ms`, `2s`, `1.5s`, `3m`, `1h`.
pub fn duration(s: &str) -> Option<Duration> {
    let (v, unit) = split(s)?;
    let secs = match unit {
        "us" => v / 1e6,
        "ms" => v / 1e3,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        "" if v == 0.0 => 0.0,
        _ => return None,
    };
    Some(Duration::from_nanos((secs * 1e9).round() as u64))
}

/// `1500`, `64KB`, `64KiB`, `4MB`, `1MiB`, `1GB`. Decimal for KB/MB/GB, binary for KiB/MiB/GiB.
pub fn size(s: &str) -> Option<u64> {
    let (v, unit) = split(s)?;
    let mult = match unit {
        "" | "B" => 1.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((v * mult).round() as u64)
}

/// Bits per second: `500kbit`, `10Mbit`, `1Gbit`.
pub fn rate(s: &str) -> Option<u64> {
    let (v, unit) = split(s)?;
    let mult = match unit {
        "bit" => 1.0,
        "kbit" => 1e3,
        "Mbit" => 1e6,
        "Gbit" => 1e9,
        _ => return None,
    };
    let r = (v * mult).round() as u64;
    (r > 0).then_some(r)
}

/// Formats a duration of simulated time as seconds with milliseconds: `12.345s`.
pub fn secs(d: Duration) -> String {
    format!("{}.{:03}s", d.as_secs(), d.subsec_millis())
}

/// Formats a short duration in the unit that shows it: `350us`, `1.2ms`, `0.210s`.
pub fn short(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{}us", d.as_micros())
    } else if d < Duration::from_millis(100) {
        format!("{:.1}ms", d.as_secs_f64() * 1e3)
    } else {
        secs(d)
    }
}

/// Formats a byte count: `4.00 MB`, `512 B`.
pub fn bytes(n: u64) -> String {
    if n >= 1_000_000 {
        format!("{:.2} MB", n as f64 / 1e6)
    } else if n >= 1_000 {
        format!("{:.1} kB", n as f64 / 1e3)
    } else {
        format!("{n} B")
    }
}

/// Formats a rate in bits per second: `12.3 Mbit/s`.
pub fn bitrate(bits_per_sec: f64) -> String {
    if bits_per_sec >= 1e6 {
        format!("{:.1} Mbit/s", bits_per_sec / 1e6)
    } else {
        format!("{:.0} kbit/s", bits_per_sec / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(duration("150ms"), Some(Duration::from_millis(150)));
        assert_eq!(duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(duration("0"), Some(Duration::ZERO));
        assert_eq!(duration("5 parsecs"), None);
        assert_eq!(size("4MB"), Some(4_000_000));
        assert_eq!(size("64KiB"), Some(65536));
        assert_eq!(rate("10Mbit"), Some(10_000_000));
        assert_eq!(rate("0bit"), None);
        assert_eq!(secs(Duration::from_millis(12345)), "12.345s");
        assert_eq!(short(Duration::from_micros(350)), "350us");
        assert_eq!(short(Duration::from_micros(1250)), "1.2ms");
        assert_eq!(short(Duration::from_millis(210)), "0.210s");
    }
}
