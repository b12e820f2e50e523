//! Unix timestamps as calendar dates and RFC 3339 text, without a date library.
//!
//! Dates are in UTC on the proleptic Gregorian calendar (the Gregorian rules extended backwards
//! before 1582, with a year 0), as Go's `time` package counts them. Every function here is total:
//! any `i64` timestamp converts without overflow or panic.
//!
//! - [`DateTime`]: the calendar breakdown of a timestamp (PromQL's date functions);
//! - [`format_rfc3339_millis`]: RFC 3339 as Go writes a `time.Time` (zero fraction trimmed);
//! - [`format_rfc3339_millis_fixed`]: RFC 3339 with always three fraction digits (log lines);
//! - [`parse_rfc3339_millis`]: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` to Unix milliseconds.

use std::fmt::Write as _;

const SECONDS_PER_DAY: i64 = 86_400;
const MILLIS_PER_SECOND: i64 = 1000;
/// Days from 0000-03-01 (the start of the first 400-year era) to 1970-01-01.
const EPOCH_DAY_OF_ERA_ZERO: i64 = 719_468;
/// Days in a 400-year era of the Gregorian calendar.
const DAYS_PER_ERA: i64 = 146_097;

/// Whether `year` has a February 29th.
pub fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Days since 1970-01-01 of a date (Howard Hinnant's `days_from_civil`). `month` is 1..=12;
/// `day` may run past the month's end (it then counts on into the next month). Exact for any
/// `|year|` below 10^13.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let month = i64::from(month);
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * DAYS_PER_ERA + day_of_era - EPOCH_DAY_OF_ERA_ZERO
}

/// The date `(year, month, day)` of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`). Exact for any `|days|` below `i64::MAX / 2`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + EPOCH_DAY_OF_ERA_ZERO;
    let era = shifted.div_euclid(DAYS_PER_ERA);
    let day_of_era = shifted.rem_euclid(DAYS_PER_ERA);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    // Both fit: day is 1..=31, month 1..=12.
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A Unix timestamp broken down into its UTC calendar date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateTime {
    /// The year; 0 is 1 BC, negative years count further back.
    pub year: i64,
    /// 1..=12.
    pub month: u32,
    /// 1..=31.
    pub day: u32,
    /// 0..=23.
    pub hour: u32,
    /// 0..=59.
    pub minute: u32,
    /// 0..=59.
    pub second: u32,
    /// 0..=999.
    pub millisecond: u32,
}

impl DateTime {
    /// The breakdown of `seconds` since 1970-01-01T00:00:00Z (before it when negative).
    pub fn from_unix_seconds(seconds: i64) -> Self {
        Self::from_parts(seconds, 0)
    }

    /// The breakdown of `millis` since 1970-01-01T00:00:00Z (before it when negative).
    pub fn from_unix_millis(millis: i64) -> Self {
        Self::from_parts(
            millis.div_euclid(MILLIS_PER_SECOND),
            millis.rem_euclid(MILLIS_PER_SECOND) as u32,
        )
    }

    fn from_parts(seconds: i64, millisecond: u32) -> Self {
        let (year, month, day) = civil_from_days(seconds.div_euclid(SECONDS_PER_DAY));
        // Below 86 400, so it fits.
        let second_of_day = seconds.rem_euclid(SECONDS_PER_DAY) as u32;
        Self {
            year,
            month,
            day,
            hour: second_of_day / 3600,
            minute: second_of_day / 60 % 60,
            second: second_of_day % 60,
            millisecond,
        }
    }

    /// The day of the week, 0 = Sunday ..= 6 = Saturday.
    pub fn weekday(&self) -> u32 {
        // 1970-01-01 was a Thursday; the result is 0..=6.
        (days_from_civil(self.year, self.month, self.day) + 4).rem_euclid(7) as u32
    }

    /// The day of the year, 1-based (1..=366).
    pub fn day_of_year(&self) -> u32 {
        const DAYS_BEFORE_MONTH: [u32; 12] =
            [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let leap_day = u32::from(self.month > 2 && is_leap_year(self.year));
        let month_index = self.month.clamp(1, 12) as usize - 1;
        DAYS_BEFORE_MONTH[month_index] + self.day + leap_day
    }

    /// How many days this date's month has (28..=31).
    pub fn days_in_month(&self) -> u32 {
        match self.month {
            2 if is_leap_year(self.year) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS`, the part of RFC 3339 before the fraction.
    fn write_seconds(&self, out: &mut String) {
        let _ = write!(
            out,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        );
    }
}

/// Unix milliseconds as RFC 3339 in UTC, the way Go writes a `time.Time` (`RFC3339Nano`): the
/// fraction only when non-zero, its trailing zeros trimmed, then `Z`; e.g.
/// `2024-01-01T00:00:00.12Z`. Years outside 0..=9999 are written with as many digits (and the
/// sign) they need.
pub fn format_rfc3339_millis(unix_millis: i64) -> String {
    let date_time = DateTime::from_unix_millis(unix_millis);
    let mut text = String::with_capacity(24);
    date_time.write_seconds(&mut text);
    if date_time.millisecond != 0 {
        let fraction = format!(".{:03}", date_time.millisecond);
        text.push_str(fraction.trim_end_matches('0'));
    }
    text.push('Z');
    text
}

/// Unix milliseconds as RFC 3339 in UTC with always three fraction digits, e.g.
/// `2026-11-25T10:43:54.000Z` (the timestamp of a log line).
pub fn format_rfc3339_millis_fixed(unix_millis: i64) -> String {
    let date_time = DateTime::from_unix_millis(unix_millis);
    let mut text = String::with_capacity(24);
    date_time.write_seconds(&mut text);
    let _ = write!(text, ".{:03}Z", date_time.millisecond);
    text
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` into Unix milliseconds; `None` when the
/// text is anything else.
///
/// Accepted as Go's RFC 3339 parsing does: `T`/`t` and `Z`/`z`, any number of fraction digits
/// (those past milliseconds are truncated), second 60. The year has exactly four digits; month,
/// day, hour, minute and second are range-checked (day against 1..=31 only: `02-30` counts on
/// into March); every digit must be ASCII, the offset's included.
pub fn parse_rfc3339_millis(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = bytes.get(range)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(
            digits
                .iter()
                .fold(0, |value, digit| value * 10 + u32::from(digit - b'0')),
        )
    };
    let separators_ok = bytes.len() >= 20
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && matches!(bytes[10], b'T' | b't')
        && bytes[13] == b':'
        && bytes[16] == b':';
    if !separators_ok {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut position = 19;
    let mut millis = 0;
    if bytes[position] == b'.' {
        let start = position + 1;
        let digits = bytes[start..]
            .iter()
            .take_while(|byte| byte.is_ascii_digit())
            .count();
        if digits == 0 {
            return None;
        }
        let kept = digits.min(3);
        // kept is 1..=3, so the exponent is 0..=2.
        millis = number(start..start + kept)? * 10u32.pow(3 - kept as u32);
        position = start + digits;
    }
    let offset_minutes = match bytes.get(position..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let minutes =
                number(position + 1..position + 3)? * 60 + number(position + 4..position + 6)?;
            let minutes = i64::from(minutes);
            if *sign == b'-' { -minutes } else { minutes }
        }
        _ => return None,
    };
    let days = days_from_civil(i64::from(year), month, day);
    let seconds = days * SECONDS_PER_DAY + i64::from(hour * 3600 + minute * 60 + second)
        - offset_minutes * 60;
    Some(seconds * MILLIS_PER_SECOND + i64::from(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The date `days` after 1970-01-01, counted one day at a time (the reference for the
    /// closed-form conversions).
    fn walk_days(days: i64) -> (i64, u32, u32) {
        let (mut year, mut month, mut day) = (1970, 1, 1);
        let month_length = |year: i64, month: u32| match month {
            2 if is_leap_year(year) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        for _ in 0..days.abs() {
            if days > 0 {
                day += 1;
                if day > month_length(year, month) {
                    day = 1;
                    month += 1;
                    if month > 12 {
                        month = 1;
                        year += 1;
                    }
                }
            } else {
                day -= 1;
                if day == 0 {
                    month -= 1;
                    if month == 0 {
                        month = 12;
                        year -= 1;
                    }
                    day = month_length(year, month);
                }
            }
        }
        (year, month, day)
    }

    #[test]
    fn leap_years_follow_the_gregorian_rules() {
        for (year, leap) in [
            (2024, true),
            (2023, false),
            (2000, true),
            (1900, false),
            (2100, false),
            (1600, true),
            (0, true),
            (-4, true),
            (-100, false),
            (-400, true),
        ] {
            assert_eq!(is_leap_year(year), leap, "{year}");
        }
    }

    #[test]
    fn day_counts_agree_with_walking_the_calendar() {
        // Year 0 through 2200, both directions from the epoch, every day.
        let first = days_from_civil(0, 1, 1);
        let last = days_from_civil(2200, 12, 31);
        assert_eq!(first, -719_528);
        assert_eq!(walk_days(first), (0, 1, 1));
        assert_eq!(walk_days(last), (2200, 12, 31));
        let mut expected = civil_from_days(first);
        assert_eq!(expected, (0, 1, 1));
        for days in first..=last {
            let date = civil_from_days(days);
            assert_eq!(date, expected, "day {days}");
            assert_eq!(days_from_civil(date.0, date.1, date.2), days, "{date:?}");
            // The next day, by hand.
            let (year, month, day) = date;
            let month_days = DateTime {
                year,
                month,
                day,
                hour: 0,
                minute: 0,
                second: 0,
                millisecond: 0,
            }
            .days_in_month();
            expected = if day < month_days {
                (year, month, day + 1)
            } else if month < 12 {
                (year, month + 1, 1)
            } else {
                (year + 1, 1, 1)
            };
        }
        for days in [-800_000, -719_529, -1, 0, 1, 59, 365, 11_016, 20_000] {
            assert_eq!(civil_from_days(days), walk_days(days), "day {days}");
        }
    }

    #[test]
    fn day_counts_round_trip_far_from_the_epoch() {
        for days in [
            -10_000_000_000,
            -146_097 * 3 - 1,
            -146_097,
            146_096,
            146_097,
            2_932_896, // 9999-12-31
            10_000_000_000,
        ] {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(days_from_civil(year, month, day), days, "day {days}");
        }
        assert_eq!(civil_from_days(2_932_896), (9999, 12, 31));
        assert_eq!(civil_from_days(-719_529), (-1, 12, 31));
    }

    #[test]
    fn breaks_timestamps_down() {
        let epoch = DateTime::from_unix_seconds(0);
        assert_eq!(
            (epoch.year, epoch.month, epoch.day, epoch.hour, epoch.minute),
            (1970, 1, 1, 0, 0)
        );
        assert_eq!((epoch.weekday(), epoch.day_of_year()), (4, 1));
        let leap_day = DateTime::from_unix_seconds(951_782_400); // 2000-02-29
        assert_eq!(
            (
                leap_day.year,
                leap_day.month,
                leap_day.day,
                leap_day.days_in_month(),
                leap_day.weekday(),
                leap_day.day_of_year()
            ),
            (2000, 2, 29, 29, 2, 60)
        );
        let new_years_eve = DateTime::from_unix_seconds(1_703_980_800 + 86_399); // 2023-12-31
        assert_eq!(
            (
                new_years_eve.day_of_year(),
                new_years_eve.weekday(),
                new_years_eve.hour,
                new_years_eve.minute,
                new_years_eve.second
            ),
            (365, 0, 23, 59, 59)
        );
        let leap_eve = DateTime::from_unix_seconds(1_735_603_200); // 2024-12-31
        assert_eq!((leap_eve.day_of_year(), leap_eve.weekday()), (366, 2));
        let before = DateTime::from_unix_millis(-1);
        assert_eq!(
            (
                before.year,
                before.month,
                before.day,
                before.hour,
                before.minute,
                before.second,
                before.millisecond
            ),
            (1969, 12, 31, 23, 59, 59, 999)
        );
        assert_eq!(
            DateTime::from_unix_millis(1_500),
            DateTime {
                millisecond: 500,
                ..DateTime::from_unix_seconds(1)
            }
        );
        for (month, days) in [(1, 31), (2, 28), (4, 30), (12, 31)] {
            let date_time = DateTime {
                month,
                ..DateTime::from_unix_seconds(1_685_577_600) // 2023-06-01
            };
            assert_eq!(date_time.days_in_month(), days, "month {month}");
        }
    }

    #[test]
    fn extreme_timestamps_do_not_overflow() {
        for seconds in [i64::MIN, i64::MAX] {
            let date_time = DateTime::from_unix_seconds(seconds);
            assert!(date_time.year.abs() > 200_000_000_000, "{date_time:?}");
            assert!(date_time.weekday() < 7 && (1..=366).contains(&date_time.day_of_year()));
        }
        for millis in [i64::MIN, i64::MAX] {
            let text = format_rfc3339_millis(millis);
            assert!(text.ends_with('Z'), "{text}");
            assert_eq!(parse_rfc3339_millis(&text), None, "{text}");
        }
        assert_eq!(
            format_rfc3339_millis(i64::MAX),
            "292278994-08-17T07:12:55.807Z"
        );
        assert_eq!(
            format_rfc3339_millis_fixed(i64::MIN),
            "-292275055-05-16T16:47:04.192Z"
        );
    }

    #[test]
    fn formats_like_go() {
        for (millis, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (1_704_067_200_120, "2024-01-01T00:00:00.12Z"),
            (1_435_781_451_780, "2015-07-01T20:10:51.78Z"),
            (1_435_781_451_001, "2015-07-01T20:10:51.001Z"),
            (951_782_400_000, "2000-02-29T00:00:00Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (-62_135_596_800_000, "0001-01-01T00:00:00Z"),
            (-62_167_219_200_000, "0000-01-01T00:00:00Z"),
            (253_402_300_799_000, "9999-12-31T23:59:59Z"),
        ] {
            assert_eq!(format_rfc3339_millis(millis), text, "{millis}");
        }
    }

    #[test]
    fn fixed_format_keeps_three_digits() {
        for (millis, text) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_123, "2000-02-29T00:00:00.123Z"),
            (1_795_603_434_000, "2026-11-25T10:43:54.000Z"),
            (1_795_603_434_100, "2026-11-25T10:43:54.100Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
        ] {
            assert_eq!(format_rfc3339_millis_fixed(millis), text, "{millis}");
        }
    }

    #[test]
    fn parses_what_it_formats() {
        // Every day's noon-and-a-bit from year 0 to 9999, sampled every 997 days, and a run of
        // consecutive days across the 2000 leap day.
        let first = days_from_civil(0, 1, 1);
        let last = days_from_civil(9999, 12, 31);
        let samples = (first..=last)
            .step_by(997)
            .chain(days_from_civil(2000, 2, 20)..days_from_civil(2000, 3, 10))
            .chain([first, last]);
        for days in samples {
            for offset in [0, 1, 43_200_007, 86_399_999] {
                let millis = days * 86_400_000 + offset;
                for text in [
                    format_rfc3339_millis(millis),
                    format_rfc3339_millis_fixed(millis),
                ] {
                    assert_eq!(parse_rfc3339_millis(&text), Some(millis), "{text}");
                }
            }
        }
    }

    #[test]
    fn parses_go_variants() {
        for (text, millis) in [
            ("1970-01-01T00:00:00Z", 0),
            ("1970-01-01t00:00:01z", 1000),
            ("2015-07-01T20:10:51.781Z", 1_435_781_451_781),
            ("2015-07-01T22:10:51+02:00", 1_435_781_451_000),
            ("2015-07-01T18:40:51.5-01:30", 1_435_781_451_500),
            ("2015-07-01T20:10:51.5+00:00", 1_435_781_451_500),
            ("2024-01-01T02:00:00.123456789+02:00", 1_704_067_200_123),
            ("2024-01-01T00:00:00.1Z", 1_704_067_200_100),
            ("2024-01-01T00:00:00.0999Z", 1_704_067_200_099),
            ("0001-01-01T00:00:00Z", -62_135_596_800_000),
            ("0000-01-01T00:00:00Z", -62_167_219_200_000),
            ("9999-12-31T23:59:59Z", 253_402_300_799_000),
            // A leap second counts as the next minute's first; 2023-02-29 as March 1st and so on.
            ("2016-12-31T23:59:60Z", 1_483_228_800_000),
            ("2023-02-29T00:00:00Z", 1_677_628_800_000),
            ("2023-02-31T00:00:00Z", 1_677_801_600_000),
        ] {
            assert_eq!(parse_rfc3339_millis(text), Some(millis), "{text}");
        }
    }

    #[test]
    fn refuses_anything_else() {
        for bad in [
            "",
            "2024-01-01",
            "2024-01-01T00:00:0",
            "2024-01-01T00:00:00",
            "2024-13-01T00:00:00Z",
            "2024-00-01T00:00:00Z",
            "2024-01-00T00:00:00Z",
            "2024-01-32T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:60:00Z",
            "2024-01-01T00:00:61Z",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00.5",
            "2024-01-01T00:00:00ZZ",
            "2024-01-01T00:00:00 Z",
            "2024-01-01T00:00:00+0200",
            "2024-01-01T00:00:00+02:00:00",
            "2024-01-01T00:00:00+02-00",
            "2024-01-01T00:00:00*02:00",
            "2024-01-01T00:00:00++1:00",
            "2024-01-01T00:00:00+-1:00",
            "2024-01-01T00:00:00+01:+0",
            "2024-01-01 00:00:00Z",
            "2024/01/01T00:00:00Z",
            "-024-01-01T00:00:00Z",
            "+2024-01-01T00:00:00Z",
            "12024-01-01T00:00:00Z",
            "２024-01-01T00:00:00Z",
            "2015-07-01T20:10:51+0é:0",
            "2015-07-01T20:10:51é",
            "2015-07-01T20:10:51.é",
            "2015-07-01T20:10:5é1Z",
            "-292273086-05-16T16:47:06Z",
        ] {
            assert_eq!(parse_rfc3339_millis(bad), None, "{bad:?}");
        }
    }
}
