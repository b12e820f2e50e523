//! Value types of the objstore YAML: Prometheus-style durations and redacted secrets.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

/// A duration written as Prometheus writes them (`1m30s`, `2m`, `10s`, `500ms`, `1h`, `0`),
/// as Thanos' `model.Duration` fields are.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct PromDuration(pub Duration);

impl PromDuration {
    /// A duration of `seconds`.
    pub const fn from_secs(seconds: u64) -> Self {
        Self(Duration::from_secs(seconds))
    }

    /// Parses a Prometheus duration: units `y`, `w`, `d`, `h`, `m`, `s`, `ms` from largest to
    /// smallest, each at most once, or `0`.
    pub fn parse(text: &str) -> Option<Self> {
        if text == "0" {
            return Some(Self(Duration::ZERO));
        }
        const UNITS: [(&str, u64); 7] = [
            ("y", 365 * 24 * 3600 * 1000),
            ("w", 7 * 24 * 3600 * 1000),
            ("d", 24 * 3600 * 1000),
            ("h", 3600 * 1000),
            ("m", 60 * 1000),
            ("s", 1000),
            ("ms", 1),
        ];
        let mut rest = text;
        let mut total_ms: u64 = 0;
        let mut next_unit = 0;
        if rest.is_empty() {
            return None;
        }
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return None;
            }
            let number: u64 = rest[..digits].parse().ok()?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let position = UNITS[next_unit..]
                .iter()
                .position(|(name, _)| *name == unit)?;
            let (_, unit_ms) = UNITS[next_unit + position];
            next_unit += position + 1;
            total_ms = total_ms.checked_add(number.checked_mul(unit_ms)?)?;
        }
        Some(Self(Duration::from_millis(total_ms)))
    }
}

impl fmt::Debug for PromDuration {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:?}", self.0)
    }
}

impl<'de> serde::Deserialize<'de> for PromDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        PromDuration::parse(&text).ok_or_else(|| {
            de::Error::custom(format!(
                "invalid duration {text:?}: want a Prometheus duration such as 1m30s, 10s or 500ms"
            ))
        })
    }
}

/// A credential from the configuration (key, token, connection string, service account). Its
/// `Debug` shows `<redacted>` and parse errors never quote it; read it with [`Secret::expose`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for handing to a client. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no secret was configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            formatter.write_str("\"\"")
        } else {
            formatter.write_str("<redacted>")
        }
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretVisitor)
    }
}

/// Accepts any scalar as Go's YAML does for a string field, and never echoes the value in an
/// error.
struct SecretVisitor;

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Secret, E> {
        Ok(Secret(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Secret, E> {
        Ok(Secret(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Secret, E> {
        Ok(Secret(value.to_string()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Secret, E> {
        Ok(Secret(value.to_string()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Secret, E> {
        Ok(Secret(value.to_string()))
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Secret, E> {
        Ok(Secret(value.to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Secret, E> {
        Ok(Secret::default())
    }

    fn visit_none<E: de::Error>(self) -> Result<Secret, E> {
        Ok(Secret::default())
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _map: A) -> Result<Secret, A::Error> {
        Err(de::Error::custom("invalid type: map, expected a string"))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _seq: A) -> Result<Secret, A::Error> {
        Err(de::Error::custom(
            "invalid type: sequence, expected a string",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_duration(text: &str, expected_ms: Option<u64>) {
        let parsed = PromDuration::parse(text).map(|duration| duration.0.as_millis() as u64);
        assert_eq!(parsed, expected_ms, "parse {text:?}");
    }

    #[test]
    fn prometheus_durations_parse() {
        check_duration("0", Some(0));
        check_duration("10s", Some(10_000));
        check_duration("1m30s", Some(90_000));
        check_duration("2m", Some(120_000));
        check_duration("500ms", Some(500));
        check_duration("1h2m3s4ms", Some(3_723_004));
        check_duration("1d", Some(86_400_000));
        check_duration("", None);
        check_duration("90", None);
        check_duration("1s1m", None);
        check_duration("1x", None);
        check_duration("s", None);
    }

    #[test]
    fn secret_debug_is_redacted() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Secret::default()), "\"\"");
    }
}
