//! Serde forms of durations: human strings ("2s", "250ms") or whole seconds, as the seed's `*_seconds` keys.

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};
use std::fmt;
use std::time::Duration;

/// Parses "2s", "250ms", "1m 30s"; a bare number means seconds, like the seed's `timeout_seconds`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("not a duration ({e}); write e.g. \"2s\" or \"250ms\""))
}

/// Formats a duration the way [`parse`] reads it back ("2s", "250ms").
pub fn format(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"2s\" or \"250ms\", or a whole number of seconds")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v)
            .map(Duration::from_secs)
            .map_err(|_| E::custom(format!("`{v}` is negative; a duration cannot be")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v).map_err(|reason| E::custom(format!("`{v}` is {reason}")))
    }
}

/// `#[serde(with = "crate::duration::human")]`: a [`Duration`] as a human string.
pub mod human {
    use super::*;

    /// Writes the duration as a human string.
    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(*duration))
    }

    /// Reads a human string or whole seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

/// `#[serde(with = "crate::duration::option_human")]`: an optional [`Duration`] as a human string.
pub mod option_human {
    use super::*;

    /// Writes the duration as a human string, or nothing.
    pub fn serialize<S: Serializer>(
        duration: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match duration {
            Some(d) => serializer.serialize_some(&format(*d)),
            None => serializer.serialize_none(),
        }
    }

    /// Reads a human string or whole seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        deserializer.deserialize_any(DurationVisitor).map(Some)
    }
}

/// `#[serde(with = "crate::duration::option_millis")]`: an optional [`Duration`] as fractional milliseconds.
pub mod option_millis {
    use super::*;
    use serde::Deserialize;

    /// Writes milliseconds as a float, or nothing.
    pub fn serialize<S: Serializer>(
        duration: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match duration {
            Some(d) => serializer.serialize_some(&(d.as_secs_f64() * 1000.0)),
            None => serializer.serialize_none(),
        }
    }

    /// Reads milliseconds as a float, or nothing.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        let millis = Option::<f64>::deserialize(deserializer)?;
        Ok(millis
            .filter(|m| m.is_finite() && *m >= 0.0)
            .map(|m| Duration::from_secs_f64(m / 1000.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_human_strings_and_whole_seconds() {
        assert_eq!(parse("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("3"), Ok(Duration::from_secs(3)));
        assert!(parse("soon").is_err());
        assert_eq!(format(Duration::from_millis(250)), "250ms");
    }
}
