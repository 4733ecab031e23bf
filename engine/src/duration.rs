//! Durations as DAG files write them: seconds as a number, strings like `30s`, `5m`, `1h30m`, `250ms`, or
//! dag-factory's `{__type__: datetime.timedelta, seconds: N, ...}`.

use std::time::Duration;

use crate::yaml::{Node, Value};

/// Parses a duration string, the one grammar of DAG files and network specs: a plain number of seconds, or
/// one or more `<number><unit>` parts (`1h30m`, `2.5s`, `1e3ms`) with units `ms`, `s`, `m`, `h`, `d`, `w` (or
/// their long names). Numbers may carry a sign and an exponent; a negative duration is refused.
pub fn parse_duration_str(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let invalid = |why: &str| format!("invalid duration `{text}`: {why}");
    if trimmed.is_empty() {
        return Err(invalid("empty"));
    }
    if let Ok(seconds) = trimmed.parse::<f64>() {
        return checked_seconds(seconds).map_err(|why| invalid(&why));
    }
    let mut total = Duration::ZERO;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let number_len = number_prefix(rest);
        let number = &rest[..number_len];
        rest = rest[number_len..].trim_start();
        let unit_len = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let factor = unit_seconds(unit);
        if number.is_empty() {
            return Err(match factor {
                Some(_) => invalid("missing number"),
                None => invalid("expected a number with a unit (ms, s, m, h, d, w), like `2s`, `500ms` or `1h30m`"),
            });
        }
        let value: f64 = number.parse().map_err(|_| invalid("bad number"))?;
        let Some(factor) = factor else {
            return Err(invalid(&format!("unknown unit `{unit}`; use ms, s, m, h, d or w")));
        };
        total += checked_seconds(value * factor).map_err(|why| invalid(&why))?;
        rest = rest[unit_len..].trim_start();
    }
    Ok(total)
}

/// The length of the number at the start of `text`: an optional sign, digits and a point, an optional
/// exponent (`e3`, `E-3`) when digits follow it.
fn number_prefix(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut end = 0;
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        end = 1;
    }
    while end < bytes.len() && (bytes[end].is_ascii_digit() || bytes[end] == b'.') {
        end += 1;
    }
    if end < bytes.len() && matches!(bytes[end], b'e' | b'E') {
        let mut exponent = end + 1;
        if matches!(bytes.get(exponent), Some(b'+' | b'-')) {
            exponent += 1;
        }
        if bytes.get(exponent).is_some_and(u8::is_ascii_digit) {
            end = exponent;
            while end < bytes.len() && bytes[end].is_ascii_digit() {
                end += 1;
            }
        }
    }
    end
}

fn unit_seconds(unit: &str) -> Option<f64> {
    Some(match unit {
        "ms" => 0.001,
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hr" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86_400.0,
        "w" | "week" | "weeks" => 604_800.0,
        _ => return None,
    })
}

/// Seconds as a duration: finite, not negative, not absurdly large.
fn checked_seconds(seconds: f64) -> Result<Duration, String> {
    if !seconds.is_finite() {
        return Err("not a finite number".into());
    }
    if seconds < 0.0 {
        return Err("must not be negative".into());
    }
    if seconds > 1e12 {
        return Err("too large".into());
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn seconds_to_duration(seconds: f64) -> Result<Duration, String> {
    checked_seconds(seconds).map_err(|why| format!("invalid duration `{seconds}`: {why}"))
}

/// Reads a duration from a YAML node in any of the accepted forms.
pub fn duration_from_node(node: &Node) -> Result<Duration, String> {
    match &node.value {
        Value::Int(seconds) => seconds_to_duration(*seconds as f64),
        Value::Float(seconds) => seconds_to_duration(*seconds),
        Value::Str(text) => parse_duration_str(text),
        Value::Map(entries) => {
            let mut total = 0.0;
            let mut typed = false;
            for (key, value) in entries {
                let key_text = key.as_str().unwrap_or_default();
                let amount = match &value.value {
                    Value::Int(n) => *n as f64,
                    Value::Float(f) => *f,
                    _ if key_text == "__type__" => {
                        if value.as_str() != Some("datetime.timedelta") {
                            return Err("only `__type__: datetime.timedelta` is a duration".into());
                        }
                        typed = true;
                        continue;
                    }
                    _ => return Err(format!("`{key_text}` of a timedelta must be a number")),
                };
                let factor = match key_text {
                    "days" => 86_400.0,
                    "hours" => 3600.0,
                    "minutes" => 60.0,
                    "seconds" => 1.0,
                    "milliseconds" => 0.001,
                    "microseconds" => 0.000_001,
                    "weeks" => 604_800.0,
                    other => return Err(format!("unknown timedelta field `{other}`")),
                };
                total += amount * factor;
            }
            if !typed {
                return Err("a duration mapping needs `__type__: datetime.timedelta`".into());
            }
            seconds_to_duration(total)
        }
        _ => Err("expected a duration: seconds, a string like 30s/5m/1h, or a datetime.timedelta".into()),
    }
}

/// Formats a duration compactly, e.g. `1h30m`, `250ms`.
pub fn format_duration(duration: Duration) -> String {
    let total_ms = duration.as_millis();
    if total_ms == 0 {
        return "0s".into();
    }
    if !total_ms.is_multiple_of(1000) && total_ms < 60_000 {
        return format!("{}ms", total_ms);
    }
    let mut seconds = duration.as_secs();
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if seconds >= size {
            out.push_str(&format!("{}{unit}", seconds / size));
            seconds %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strings() {
        assert_eq!(parse_duration_str("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration_str("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration_str("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration_str("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration_str("12").unwrap(), Duration::from_secs(12));
        assert_eq!(parse_duration_str("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration_str("5 parsecs").is_err());
        assert!(parse_duration_str("-3").is_err());
        assert!(parse_duration_str("").is_err());
        assert!(parse_duration_str("m").is_err());
        // Signs and exponents, as network specs write them; long unit names; combined parts.
        assert_eq!(parse_duration_str("+2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration_str("1e3s").unwrap(), Duration::from_secs(1000));
        assert_eq!(parse_duration_str("1E-3s").unwrap(), Duration::from_millis(1));
        assert_eq!(parse_duration_str("2 minutes").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration_str("1s500ms").unwrap(), Duration::from_millis(1500));
        for (text, why) in [
            ("-2s", "must not be negative"),
            ("-3", "must not be negative"),
            ("fast", "expected a number"),
            ("ms", "missing number"),
            ("2S", "unknown unit"),
            ("0x10", "unknown unit"),
            ("inf", "not a finite number"),
            ("NaN", "not a finite number"),
        ] {
            let err = parse_duration_str(text).unwrap_err();
            assert!(
                err.starts_with(&format!("invalid duration `{text}`:")) && err.contains(why),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn parses_timedelta_mapping() {
        let doc = crate::yaml::parse_str("{__type__: datetime.timedelta, seconds: 600, minutes: 1}").unwrap();
        assert_eq!(duration_from_node(&doc[0]).unwrap(), Duration::from_secs(660));
        let doc = crate::yaml::parse_str("{seconds: 600}").unwrap();
        assert!(duration_from_node(&doc[0]).is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
