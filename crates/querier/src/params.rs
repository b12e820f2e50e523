//! Request parameters and JSON number formats, as Prometheus' HTTP API reads and writes them.
//!
//! Times are Unix seconds (a float, rounded to ms) or RFC 3339; durations are float seconds or
//! Prometheus durations (`5m`). Values are written as Go's `strconv.FormatFloat(v, 'f', -1, 64)`
//! (Rust's shortest round-trip `Display` produces the same digits) with `NaN`, `+Inf`, `-Inf`,
//! and timestamps as seconds with up to three decimals.

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
    parse_rfc3339(value)
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` to ms.
fn parse_rfc3339(value: &str) -> Option<i64> {
    let bytes = value.as_bytes();
    if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || !matches!(bytes[10], b'T' | b't')
    {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let text = value.get(range)?;
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse().ok()
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    if bytes[13] != b':' || bytes[16] != b':' {
        return None;
    }
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &value[19..];
    let mut millis = 0i64;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &fraction[..digits.min(3)]);
        millis = padded.parse().ok()?;
        rest = &fraction[digits..];
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        zone if zone.len() == 6 && zone.get(3..4) == Some(":") => {
            let sign = match zone.get(..1) {
                Some("+") => 1,
                Some("-") => -1,
                _ => return None,
            };
            let hours: i64 = zone.get(1..3)?.parse().ok()?;
            let minutes: i64 = zone.get(4..6)?.parse().ok()?;
            sign * (hours * 60 + minutes)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day count since 1970-01-01: `(year, month, day)`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// RFC 3339 with milliseconds in UTC, e.g. `2024-05-01T10:00:00.123Z` (Go trims zero
/// fractions; we do too).
pub fn format_rfc3339(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let in_day = seconds.rem_euclid(86_400);
    let (hour, minute, second) = (in_day / 3600, in_day % 3600 / 60, in_day % 60);
    let fraction = if millis == 0 {
        String::new()
    } else {
        format!(".{millis:03}").trim_end_matches('0').to_owned()
    };
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}Z")
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

/// A sample value as Prometheus writes it in JSON (a string).
pub fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        format!("{value}")
    }
}

/// A timestamp as Prometheus writes it in JSON: seconds with up to three decimals.
pub fn format_timestamp(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let magnitude = ms.unsigned_abs();
    let (seconds, millis) = (magnitude / 1000, magnitude % 1000);
    if millis == 0 {
        format!("{sign}{seconds}")
    } else {
        let fraction = format!("{millis:03}");
        format!("{sign}{seconds}.{}", fraction.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
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
                parse_time(&format_rfc3339(ms)),
                Some(ms),
                "{}",
                format_rfc3339(ms)
            );
        }
        assert_eq!(format_rfc3339(1_435_781_451_780), "2015-07-01T20:10:51.78Z");
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
    }
}
