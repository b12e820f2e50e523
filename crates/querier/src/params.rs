//! Request parameters and JSON number formats, as Prometheus' HTTP API reads and writes them.
//!
//! Times are Unix seconds (a float, rounded to ms) or RFC 3339; durations are float seconds or
//! Prometheus durations (`5m`). Values are written as Go's `strconv.FormatFloat(v, 'f', -1, 64)`
//! (Rust's shortest round-trip `Display` produces the same digits) with `NaN`, `+Inf`, `-Inf`,
//! and timestamps as seconds with up to three decimals.

use std::fmt::Write as _;

use service_core::PromDuration;

/// Form values from a query string and an optional urlencoded body; body values come first,
/// as Go's `Request.FormValue` reads them.
#[derive(Debug, Default, Clone)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    /// Parses `query` (the URL's query string) and `body` (a form body, or empty).
    pub fn parse(query: Option<&str>, body: &[u8]) -> Self {
        let mut pairs: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
        if let Some(query) = query {
            pairs.extend(form_urlencoded::parse(query.as_bytes()).into_owned());
        }
        Self { pairs }
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }
}

/// Prometheus' smallest and largest API times, in ms (`minTime`/`maxTime` in its API).
pub const MIN_TIME: i64 = -9_223_309_901_257_974;
/// See [`MIN_TIME`].
pub const MAX_TIME: i64 = 9_223_309_901_257_974;

fn invalid_time(name: &str, value: &str) -> String {
    format!("invalid parameter {name:?}: cannot parse {value:?} to a valid timestamp")
}

/// Parses a time parameter to ms; `default` when absent.
pub fn parse_time_param(form: &Form, name: &str, default: i64) -> Result<i64, String> {
    match form.get(name).filter(|value| !value.is_empty()) {
        None => Ok(default),
        Some(value) => parse_time(value).ok_or_else(|| invalid_time(name, value)),
    }
}

/// A time in ms from Unix seconds (float) or RFC 3339.
pub fn parse_time(value: &str) -> Option<i64> {
    if let Ok(seconds) = value.parse::<f64>() {
        if !seconds.is_finite() {
            return None;
        }
        let whole = seconds.trunc();
        let fraction = ((seconds - whole) * 1000.0).round();
        let ms = whole * 1000.0 + fraction;
        if ms.abs() > 9.2e18 {
            return None;
        }
        return Some(ms as i64);
    }
    match value {
        "-292273086-05-16T16:47:06Z" => return Some(MIN_TIME),
        "292277025-08-18T07:12:54.999999999Z" => return Some(MAX_TIME),
        _ => {}
    }
    prom_model::time::parse_rfc3339_millis(value)
}

/// A duration in ms from float seconds or a Prometheus duration.
pub fn parse_duration_ms(value: &str) -> Result<i64, String> {
    if let Ok(seconds) = value.parse::<f64>() {
        let ms = seconds * 1000.0;
        if !ms.is_finite() || ms.abs() > 9.2e18 {
            return Err(format!(
                "cannot parse {value:?} to a valid duration. It overflows int64"
            ));
        }
        return Ok(ms.round() as i64);
    }
    value
        .parse::<PromDuration>()
        .map(|duration| i64::try_from(duration.get().as_millis()).unwrap_or(i64::MAX))
        .map_err(|_| format!("cannot parse {value:?} to a valid duration"))
}

/// Parses a duration parameter; `None` when absent.
pub fn parse_duration_param(form: &Form, name: &str) -> Result<Option<i64>, String> {
    match form.get(name).filter(|value| !value.is_empty()) {
        None => Ok(None),
        Some(value) => parse_duration_ms(value)
            .map(Some)
            .map_err(|message| format!("invalid parameter {name:?}: {message}")),
    }
}

/// Parses a boolean parameter as Go's `strconv.ParseBool`; `default` when absent.
pub fn parse_bool_param(form: &Form, name: &str, default: bool) -> Result<bool, String> {
    match form.get(name).filter(|value| !value.is_empty()) {
        None => Ok(default),
        Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(true),
        Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(false),
        Some(other) => Err(format!(
            "cannot parse parameter {name}: strconv.ParseBool: parsing {other:?}: invalid syntax"
        )),
    }
}

/// A sample value as Prometheus writes it in JSON (the text inside the JSON string).
pub fn format_value(value: f64) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

/// Appends [`format_value`]'s text to `out` without allocating.
pub fn write_value(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value == f64::INFINITY {
        out.push_str("+Inf");
    } else if value == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        // Writing to a String cannot fail.
        let _ = write!(out, "{value}");
    }
}

/// A timestamp as Prometheus writes it in JSON: seconds with up to three decimals.
pub fn format_timestamp(ms: i64) -> String {
    let mut out = String::new();
    write_timestamp(&mut out, ms);
    out
}

/// Appends [`format_timestamp`]'s text to `out` without allocating.
pub fn write_timestamp(out: &mut String, ms: i64) {
    if ms < 0 {
        out.push('-');
    }
    let magnitude = ms.unsigned_abs();
    let (seconds, millis) = (magnitude / 1000, magnitude % 1000);
    // Writing to a String cannot fail.
    let _ = if millis == 0 {
        write!(out, "{seconds}")
    } else if millis.is_multiple_of(100) {
        write!(out, "{seconds}.{}", millis / 100)
    } else if millis.is_multiple_of(10) {
        write!(out, "{seconds}.{:02}", millis / 10)
    } else {
        write!(out, "{seconds}.{millis:03}")
    };
}

#[cfg(test)]
mod tests {
    use prom_model::time::format_rfc3339_millis;

    use super::*;

    #[test]
    fn times_parse_like_prometheus() {
        assert_eq!(parse_time("1435781451.781"), Some(1_435_781_451_781));
        assert_eq!(parse_time("1435781451"), Some(1_435_781_451_000));
        assert_eq!(parse_time("-1.5"), Some(-1500));
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z"),
            Some(1_435_781_451_781)
        );
        assert_eq!(
            parse_time("2015-07-01T22:10:51+02:00"),
            Some(1_435_781_451_000)
        );
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("NaN"), None);
        for hostile in [
            "2015-07-01T20:10:51+0é:0",
            "2015-07-01T20:10:51é",
            "2015-07-01T20:10:51.é",
        ] {
            assert_eq!(parse_time(hostile), None, "{hostile}");
        }
    }

    #[test]
    fn rfc3339_round_trips() {
        for ms in [0, 1_435_781_451_781, 951_782_400_000, -86_400_000] {
            assert_eq!(
                parse_time(&format_rfc3339_millis(ms)),
                Some(ms),
                "{}",
                format_rfc3339_millis(ms)
            );
        }
        assert_eq!(
            format_rfc3339_millis(1_435_781_451_780),
            "2015-07-01T20:10:51.78Z"
        );
    }

    #[test]
    fn durations_and_bools() {
        assert_eq!(parse_duration_ms("15"), Ok(15_000));
        assert_eq!(parse_duration_ms("0.5"), Ok(500));
        assert_eq!(parse_duration_ms("1m30s"), Ok(90_000));
        assert!(parse_duration_ms("fast").is_err());
        let form = Form::parse(Some("dedup=false&x=1&match%5B%5D=a&match[]=b"), b"x=2");
        assert_eq!(parse_bool_param(&form, "dedup", true), Ok(false));
        assert_eq!(form.get("x"), Some("2"));
        assert_eq!(form.all("match[]"), vec!["a", "b"]);
        assert!(parse_bool_param(&form, "x", true).is_err());
    }

    #[test]
    fn numbers_format_like_go() {
        for (value, expected) in [
            (1.0, "1"),
            (0.1, "0.1"),
            (1e21, "1000000000000000000000"),
            (1e-7, "0.0000001"),
            (-2.5, "-2.5"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ] {
            assert_eq!(format_value(value), expected);
        }
        assert_eq!(format_timestamp(1_435_781_451_781), "1435781451.781");
        assert_eq!(format_timestamp(1_435_781_451_000), "1435781451");
        assert_eq!(format_timestamp(1_500), "1.5");
        assert_eq!(format_timestamp(-1_500), "-1.5");
        assert_eq!(format_timestamp(1_050), "1.05");
        assert_eq!(format_timestamp(1_005), "1.005");
        assert_eq!(format_timestamp(100), "0.1");
        assert_eq!(format_timestamp(-1), "-0.001");
        assert_eq!(format_timestamp(0), "0");
        assert_eq!(format_timestamp(i64::MIN), "-9223372036854775.808");
    }
}
