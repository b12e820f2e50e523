//! Durations written the way Prometheus and Thanos flags write them: `2m`, `1h30m`, `500ms`, `15d`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A non-negative duration parsed from and printed in Prometheus' notation.
///
/// Accepted units, largest first and each at most once: `y` (365 days), `w`, `d`, `h`, `m`, `s`,
/// `ms`. A bare `0` is zero. This is `model.ParseDuration` from Prometheus, which is also what the
/// Thanos flags accept for the values they document (`2m`, `60m`, `0d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PromDuration(Duration);

/// Units in the order they must appear, with their length in milliseconds.
const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3600 * 1000),
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
];

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct ParseDurationError {
    input: String,
    reason: &'static str,
}

impl PromDuration {
    /// Wraps a [`Duration`].
    pub const fn new(duration: Duration) -> Self {
        Self(duration)
    }

    /// The wrapped [`Duration`].
    pub const fn get(self) -> Duration {
        self.0
    }
}

impl From<PromDuration> for Duration {
    fn from(value: PromDuration) -> Self {
        value.0
    }
}

impl From<Duration> for PromDuration {
    fn from(value: Duration) -> Self {
        Self(value)
    }
}

impl FromStr for PromDuration {
    type Err = ParseDurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let refuse = |reason| ParseDurationError {
            input: input.to_owned(),
            reason,
        };
        if input == "0" {
            return Ok(Self(Duration::ZERO));
        }
        if input.is_empty() {
            return Err(refuse("empty duration string"));
        }
        let mut rest = input;
        let mut total_millis: u64 = 0;
        // Index into UNITS of the next unit allowed: units must come largest first, once each.
        let mut next_unit = 0;
        while !rest.is_empty() {
            let digits_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits_len == 0 {
                return Err(refuse("expected a number"));
            }
            let (digits, after_digits) = rest.split_at(digits_len);
            let unit_len = after_digits
                .bytes()
                .take_while(u8::is_ascii_alphabetic)
                .count();
            let (unit, after_unit) = after_digits.split_at(unit_len);
            let Some(offset) = UNITS[next_unit..]
                .iter()
                .position(|(name, _)| *name == unit)
            else {
                return Err(refuse(
                    "unknown or out-of-order unit (use y, w, d, h, m, s, ms)",
                ));
            };
            let unit_index = next_unit + offset;
            let count: u64 = digits.parse().map_err(|_| refuse("number too large"))?;
            let millis = count
                .checked_mul(UNITS[unit_index].1)
                .and_then(|millis| total_millis.checked_add(millis))
                .ok_or_else(|| refuse("duration too large"))?;
            total_millis = millis;
            next_unit = unit_index + 1;
            rest = after_unit;
        }
        Ok(Self(Duration::from_millis(total_millis)))
    }
}

impl fmt::Display for PromDuration {
    /// Prints the shortest Prometheus form, e.g. `1h30m`, `2m`, `500ms`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut millis = u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX);
        if millis == 0 {
            return f.write_str("0s");
        }
        for (name, unit_millis) in UNITS {
            if millis >= unit_millis {
                write!(f, "{}{name}", millis / unit_millis)?;
                millis %= unit_millis;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected_millis: u64) {
        let parsed: PromDuration = input.parse().unwrap();
        assert_eq!(
            parsed.get(),
            Duration::from_millis(expected_millis),
            "{input}"
        );
    }

    fn check_err(input: &str) {
        assert!(
            input.parse::<PromDuration>().is_err(),
            "{input} should be refused"
        );
    }

    #[test]
    fn parses_prometheus_durations() {
        check("0", 0);
        check("0s", 0);
        check("500ms", 500);
        check("2m", 120_000);
        check("60m", 3_600_000);
        check("1h30m", 5_400_000);
        check("1d", 86_400_000);
        check("2w", 14 * 86_400_000);
        check("1y", 365 * 86_400_000);
        check("1h2m3s4ms", 3_723_004);
    }

    #[test]
    fn refuses_malformed_durations() {
        check_err("");
        check_err("5");
        check_err("m");
        check_err("1.5h");
        check_err("30m1h");
        check_err("1h1h");
        check_err("-1m");
        check_err("1 m");
        check_err("10x");
        check_err("99999999999999999999y");
    }

    #[test]
    fn displays_shortest_form() {
        for text in ["2m", "1h30m", "500ms", "0s", "60d", "1y1d", "1h2m3s4ms"] {
            let parsed: PromDuration = text.parse().unwrap();
            let shown = parsed.to_string();
            let expected = if text == "60d" { "8w4d" } else { text };
            assert_eq!(shown, expected);
        }
    }
}
