//! Human units in configuration: sizes (`64KiB`, `1GiB`) and durations
//! (`500ms`, `30s`, `10m`, `2h`), as types that read themselves
//! ([`ByteSize`], [`HumanDuration`]): a config field of either type is
//! checked as the file is read, and a bad value is reported at its line
//! and column.

use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// A number of bytes, written `512MiB`, `1GiB`, `64KiB` or plain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct ByteSize(pub u64);

impl TryFrom<String> for ByteSize {
    type Error = String;

    fn try_from(s: String) -> Result<ByteSize, String> {
        parse_size(&s).map(ByteSize)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_size(self.0))
    }
}

/// A span of time, written `250ms`, `30s`, `10m`, `2h` or plain seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct HumanDuration(pub Duration);

impl TryFrom<String> for HumanDuration {
    type Error = String;

    fn try_from(s: String) -> Result<HumanDuration, String> {
        parse_duration(&s).map(HumanDuration)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

/// Parse a size such as `512MiB`, `1GiB`, `64KiB`, `1000B` or a plain byte count.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a size like `512MiB` or `1GiB`"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "KB" | "k" | "kB" => 1 << 10,
        "MiB" | "M" | "MB" => 1 << 20,
        "GiB" | "G" | "GB" => 1 << 30,
        "TiB" | "T" | "TB" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{text}` (use B, KiB, MiB, GiB)"
            ));
        }
    };
    Ok((value * factor as f64).round() as u64)
}

/// Parse a duration such as `250ms`, `30s`, `10m`, `2h` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like `30s` or `10m`"))?;
    let secs = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{text}` (use ms, s, m, h)"
            ));
        }
    };
    Ok(Duration::from_secs_f64(secs))
}

/// `1073741824` → `1 GiB`, for messages.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (name, factor) in UNITS {
        if bytes >= factor {
            let v = bytes as f64 / factor as f64;
            return if v.fract() == 0.0 {
                format!("{v:.0} {name}")
            } else {
                format!("{v:.1} {name}")
            };
        }
    }
    format!("{bytes} B")
}

/// `Duration` → `2m 30s`, for messages.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms} ms");
    }
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s} s"),
        (0, m, 0) => format!("{m} min"),
        (0, m, s) => format!("{m} min {s} s"),
        (h, m, _) => format!("{h} h {m} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("64KiB").unwrap(), 64 << 10);
        assert_eq!(parse_size("10").unwrap(), 10);
        assert!(parse_size("10 parsecs").is_err());
        assert_eq!(format_size(1 << 30), "1 GiB");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert!(parse_duration("soon").is_err());
        assert_eq!(format_duration(Duration::from_secs(150)), "2 min 30 s");
    }

    #[test]
    fn config_fields_read_and_show_their_units() {
        #[derive(Deserialize)]
        struct T {
            size: ByteSize,
            wait: HumanDuration,
        }
        let t: T = toml::from_str("size = \"2GiB\"\nwait = \"90s\"").unwrap();
        assert_eq!((t.size.0, t.wait.0), (2 << 30, Duration::from_secs(90)));
        assert_eq!(t.size.to_string(), "2 GiB");
        assert_eq!(t.wait.to_string(), "1 min 30 s");
        let e = toml::from_str::<T>("size = \"2GiB\"\nwait = \"soon\"")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("line 2") && e.contains("`soon` is not a duration"),
            "{e}"
        );
    }
}
