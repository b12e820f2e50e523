//! Calendar arithmetic in UTC for the date functions (proleptic Gregorian, like Go's `time`).

/// A UTC calendar breakdown of a Unix timestamp.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Civil {
    pub(crate) year: i64,
    pub(crate) month: u32,
    pub(crate) day: u32,
    pub(crate) hour: u32,
    pub(crate) minute: u32,
    /// 0 = Sunday.
    pub(crate) weekday: u32,
    /// 1-based.
    pub(crate) day_of_year: u32,
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

impl Civil {
    pub(crate) fn from_unix(seconds: i64) -> Self {
        let days = seconds.div_euclid(86_400);
        let second_of_day = seconds.rem_euclid(86_400);
        // Howard Hinnant's civil-from-days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        let cumulative = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let mut day_of_year = cumulative[(month - 1) as usize] + day;
        if month > 2 && is_leap(year) {
            day_of_year += 1;
        }
        Civil {
            year,
            month,
            day,
            hour: (second_of_day / 3600) as u32,
            minute: (second_of_day % 3600 / 60) as u32,
            weekday: (days + 4).rem_euclid(7) as u32,
            day_of_year,
        }
    }

    pub(crate) fn days_in_month(&self) -> u32 {
        match self.month {
            2 if is_leap(self.year) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaks_down_known_dates() {
        let epoch = Civil::from_unix(0);
        assert_eq!(
            (
                epoch.year,
                epoch.month,
                epoch.day,
                epoch.weekday,
                epoch.day_of_year
            ),
            (1970, 1, 1, 4, 1)
        );
        let leap = Civil::from_unix(951_782_400); // 2000-02-29
        assert_eq!(
            (leap.year, leap.month, leap.day, leap.days_in_month()),
            (2000, 2, 29, 29)
        );
        let before = Civil::from_unix(-1); // 1969-12-31 23:59:59
        assert_eq!(
            (
                before.year,
                before.month,
                before.day,
                before.hour,
                before.minute
            ),
            (1969, 12, 31, 23, 59)
        );
    }
}
