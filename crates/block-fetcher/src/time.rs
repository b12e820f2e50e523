//! `--min-time` / `--max-time`: an RFC 3339 time or a duration relative to now (`-2h`, `30d`),
//! as Thanos' `TimeOrDurationValue`.

use std::str::FromStr;

use service_core::PromDuration;

/// A time bound: absolute, or relative to the moment it is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBound {
    /// Unix milliseconds.
    Absolute(i64),
    /// Milliseconds added to now (negative = in the past).
    Relative(i64),
}

impl TimeBound {
    /// The bound in Unix milliseconds at `now`.
    pub fn millis(&self, now: i64) -> i64 {
        match *self {
            Self::Absolute(millis) => millis,
            Self::Relative(offset) => now.saturating_add(offset),
        }
    }
}

impl FromStr for TimeBound {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(millis) = prom_model::time::parse_rfc3339_millis(text) {
            return Ok(Self::Absolute(millis));
        }
        let (negative, duration) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let duration: PromDuration = duration
            .parse()
            .map_err(|_| format!("{text:?} is neither an RFC 3339 time nor a duration"))?;
        let millis =
            i64::try_from(std::time::Duration::from(duration).as_millis()).unwrap_or(i64::MAX);
        Ok(Self::Relative(if negative { -millis } else { millis }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_thanos_forms() {
        assert_eq!(
            "1970-01-01T00:00:01Z".parse(),
            Ok(TimeBound::Absolute(1000))
        );
        assert_eq!("-2h".parse(), Ok(TimeBound::Relative(-7_200_000)));
        assert_eq!("1d".parse(), Ok(TimeBound::Relative(86_400_000)));
        let min: TimeBound = "0000-01-01T00:00:00Z".parse().unwrap();
        let max: TimeBound = "9999-12-31T23:59:59Z".parse().unwrap();
        assert!(min.millis(0) < -60_000_000_000_000 && max.millis(0) > 200_000_000_000_000);
        assert!("yesterday".parse::<TimeBound>().is_err());
    }
}
