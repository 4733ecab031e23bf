//! Durations in a spec: a number of seconds (`2`, `0.5`) or a string in the engine's one duration grammar
//! (`"2s"`, `"500ms"`, `"1m30s"`; see `engine::duration`), kept to whole milliseconds.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration as written in a network spec.
///
/// Accepts a JSON/YAML number of seconds or a duration string (`ms`, `s`, `m`, `h`, `d`, `w`, combined
/// parts). Negative values are rejected while parsing, so a spec
/// can never hold one. Serializes as a string with a unit (`"2s"`, `"500ms"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpecDuration(pub Duration);

impl SpecDuration {
    /// A duration of whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// A duration of whole milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Self(Duration::from_millis(millis))
    }

    /// The wrapped duration.
    pub const fn get(self) -> Duration {
        self.0
    }

    fn from_seconds_f64(secs: f64, input: &str) -> Result<Self, String> {
        if !secs.is_finite() {
            return Err(format!("invalid duration `{input}`: not a finite number"));
        }
        if secs < 0.0 {
            return Err(format!("invalid duration `{input}`: must not be negative"));
        }
        // Milliseconds are the finest unit any client reads (raft block time).
        let millis = (secs * 1000.0).round();
        if millis > u64::MAX as f64 {
            return Err(format!("invalid duration `{input}`: too large"));
        }
        Ok(Self(Duration::from_millis(millis as u64)))
    }
}

impl FromStr for SpecDuration {
    type Err = String;

    /// The engine's one duration grammar (`engine::duration`), rounded to milliseconds.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let duration = engine::duration::parse_duration_str(input)?;
        Self::from_seconds_f64(duration.as_secs_f64(), input)
    }
}

impl fmt::Display for SpecDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        if millis.is_multiple_of(1000) {
            write!(f, "{}s", millis / 1000)
        } else {
            write!(f, "{millis}ms")
        }
    }
}

impl Serialize for SpecDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SpecDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;

        impl Visitor<'_> for DurationVisitor {
            type Value = SpecDuration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds or a string like \"2s\" or \"500ms\"")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(SpecDuration(Duration::from_secs(v)))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                if v < 0 {
                    return Err(E::custom(format!("invalid duration `{v}`: must not be negative")));
                }
                Ok(SpecDuration(Duration::from_secs(v.unsigned_abs())))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                SpecDuration::from_seconds_f64(v, &v.to_string()).map_err(E::custom)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_any(DurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_json(text: &str) -> Result<SpecDuration, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_numbers_as_seconds() {
        assert_eq!(parse_json("2").unwrap(), SpecDuration::from_secs(2));
        assert_eq!(parse_json("0.5").unwrap(), SpecDuration::from_millis(500));
        assert_eq!(parse_json("0").unwrap(), SpecDuration::from_secs(0));
    }

    #[test]
    fn parses_strings_with_units() {
        assert_eq!(parse_json("\"2s\"").unwrap(), SpecDuration::from_secs(2));
        assert_eq!(parse_json("\"500ms\"").unwrap(), SpecDuration::from_millis(500));
        assert_eq!(parse_json("\"1.5s\"").unwrap(), SpecDuration::from_millis(1500));
        assert_eq!(parse_json("\"1m\"").unwrap(), SpecDuration::from_secs(60));
        assert_eq!(parse_json("\"7\"").unwrap(), SpecDuration::from_secs(7));
    }

    #[test]
    fn rejects_negative_and_garbage() {
        let negative = parse_json("-1").unwrap_err();
        assert!(negative.contains("must not be negative"), "{negative}");
        let negative_str = parse_json("\"-2s\"").unwrap_err();
        assert!(negative_str.contains("must not be negative"), "{negative_str}");
        let negative_float = parse_json("-0.5").unwrap_err();
        assert!(negative_float.contains("must not be negative"), "{negative_float}");
        let garbage = parse_json("\"fast\"").unwrap_err();
        assert!(garbage.contains("expected a number"), "{garbage}");
        let empty = parse_json("\"ms\"").unwrap_err();
        assert!(empty.contains("missing number"), "{empty}");
    }

    #[test]
    fn displays_in_the_largest_exact_unit() {
        assert_eq!(SpecDuration::from_secs(2).to_string(), "2s");
        assert_eq!(SpecDuration::from_millis(1500).to_string(), "1500ms");
        let json = serde_json::to_string(&SpecDuration::from_millis(250)).unwrap();
        assert_eq!(json, "\"250ms\"");
        assert_eq!(parse_json(&json).unwrap(), SpecDuration::from_millis(250));
    }
}
