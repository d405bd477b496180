//! Serde for configuration durations: written as integer milliseconds
//! (the documented `*_ms` keys), read from integer milliseconds or a
//! readable string such as `"1500ms"`, `"5s"` or `"1m 30s"` (humantime's
//! syntax). Sub-millisecond parts are dropped when written.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

/// Writes `d` as whole milliseconds (saturating at `u64::MAX`).
pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Reads a non-negative integer of milliseconds or a duration string.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(MillisVisitor)
}

struct MillisVisitor;

impl Visitor<'_> for MillisVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration: integer milliseconds or a string such as \"250ms\" or \"5s\"")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration::from_millis(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v)
            .map(Duration::from_millis)
            .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        humantime::parse_duration(v.trim()).map_err(|e| E::custom(format_args!("bad duration {v:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde::{Deserialize, Serialize};

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    struct T {
        #[serde(with = "super")]
        d: Duration,
    }

    fn read(json: &str) -> Result<Duration, serde_json::Error> {
        serde_json::from_str::<T>(json).map(|t| t.d)
    }

    #[test]
    fn integers_are_milliseconds_and_strings_carry_units() {
        let ms = Duration::from_millis;
        assert_eq!(read(r#"{"d": 250}"#).unwrap(), ms(250));
        assert_eq!(read(r#"{"d": "250ms"}"#).unwrap(), ms(250));
        assert_eq!(read(r#"{"d": "5s"}"#).unwrap(), ms(5000));
        assert_eq!(read(r#"{"d": "1m 30s"}"#).unwrap(), ms(90_000));
        assert_eq!(read(r#"{"d": 0}"#).unwrap(), Duration::ZERO);
        for bad in [
            r#"{"d": -1}"#,
            r#"{"d": 1.5}"#,
            r#"{"d": "5"}"#,
            r#"{"d": "soon"}"#,
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
        let written = serde_json::to_string(&T { d: ms(1500) }).unwrap();
        assert_eq!(written, r#"{"d":1500}"#);
    }
}
