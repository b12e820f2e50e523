//! Whether a scraped series is complete over a time window: one sample per scrape interval, no
//! sample doubled and none missing, up to the window's end.
//!
//! Prometheus scrapes on a ticker, so consecutive scrape timestamps are one interval apart give or
//! take the delay of a single scrape (one late scrape makes one gap longer and the next shorter
//! by the same amount). A gap longer than the interval plus that jitter is a lost sample; a gap
//! shorter than the interval minus that jitter is a doubled one (two replicas' scrapes of the same
//! target both answered, as without de-duplication).

/// What [`check_window`] tolerates.
#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    /// The scrape interval, in ms.
    pub interval_ms: i64,
    /// How far one scrape may be late or early, in ms (less than half the interval).
    pub jitter_ms: i64,
}

impl Cadence {
    /// The longest tolerated distance between two samples (or from the window's start to the
    /// first sample, or from the last sample to the window's end).
    pub fn max_gap_ms(self) -> i64 {
        self.interval_ms + self.jitter_ms
    }

    /// The shortest tolerated distance between two samples.
    pub fn min_gap_ms(self) -> i64 {
        self.interval_ms - self.jitter_ms
    }
}

/// Checks the samples of `samples` (sorted by time, any range) that fall in the window
/// `(from_ms, to_ms]`: the first comes at most [`Cadence::max_gap_ms`] after `from_ms`, the last
/// at most that long before `to_ms`, and consecutive ones are between [`Cadence::min_gap_ms`]
/// and [`Cadence::max_gap_ms`] apart. Returns the window's samples, or what is wrong (with every
/// sample of the window, to read the failure from).
pub fn check_window(
    samples: &[(i64, f64)],
    from_ms: i64,
    to_ms: i64,
    cadence: Cadence,
) -> Result<Vec<(i64, f64)>, String> {
    let window: Vec<(i64, f64)> = samples
        .iter()
        .copied()
        .filter(|(t, _)| *t > from_ms && *t <= to_ms)
        .collect();
    let timestamps: Vec<i64> = window.iter().map(|(t, _)| *t).collect();
    let described = || format!("window ({from_ms}, {to_ms}] holds {timestamps:?}");
    let (Some(first), Some(last)) = (timestamps.first(), timestamps.last()) else {
        return Err(format!("no samples: {}", described()));
    };
    if first - from_ms > cadence.max_gap_ms() {
        return Err(format!(
            "the first sample comes {} ms after the window's start (at most {} tolerated): {}",
            first - from_ms,
            cadence.max_gap_ms(),
            described()
        ));
    }
    if to_ms - last > cadence.max_gap_ms() {
        return Err(format!(
            "the last sample comes {} ms before the window's end (at most {} tolerated): {}",
            to_ms - last,
            cadence.max_gap_ms(),
            described()
        ));
    }
    for pair in timestamps.windows(2) {
        let gap = pair[1] - pair[0];
        if gap > cadence.max_gap_ms() {
            return Err(format!(
                "{gap} ms without a sample after {} (lost data; at most {} tolerated): {}",
                pair[0],
                cadence.max_gap_ms(),
                described()
            ));
        }
        if gap < cadence.min_gap_ms() {
            return Err(format!(
                "samples at {} and {} only {gap} ms apart (a doubled sample; at least {} \
                 expected): {}",
                pair[0],
                pair[1],
                cadence.min_gap_ms(),
                described()
            ));
        }
    }
    Ok(window)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CADENCE: Cadence = Cadence {
        interval_ms: 2_000,
        jitter_ms: 500,
    };

    fn scrapes(from: i64, count: i64, offset: i64) -> Vec<(i64, f64)> {
        (0..count)
            .map(|k| (from + offset + k * 2_000, 1.0))
            .collect()
    }

    #[test]
    fn accepts_one_sample_per_interval_with_jitter() {
        let mut samples = scrapes(10_000, 10, 300);
        samples[4].0 += 450; // one late scrape: one long gap, then one short gap
        let window = check_window(&samples, 10_000, 30_000, CADENCE).unwrap();
        assert_eq!(window.len(), 10);
        // Samples outside the window are not looked at.
        let window = check_window(&samples, 16_000, 24_000, CADENCE).unwrap();
        assert_eq!(window.len(), 4, "{window:?}");
    }

    #[test]
    fn rejects_a_missing_sample() {
        let mut samples = scrapes(10_000, 10, 300);
        samples.remove(5);
        let error = check_window(&samples, 10_000, 30_000, CADENCE).unwrap_err();
        assert!(error.contains("4000 ms without a sample"), "{error}");
    }

    #[test]
    fn rejects_two_replicas_merged_without_deduplication() {
        let mut samples = scrapes(10_000, 10, 300);
        samples.extend(scrapes(10_000, 10, 1_100));
        samples.sort_by_key(|(t, _)| *t);
        let error = check_window(&samples, 10_000, 30_000, CADENCE).unwrap_err();
        assert!(error.contains("a doubled sample"), "{error}");
    }

    #[test]
    fn rejects_data_that_stops_before_the_end_or_starts_late() {
        let samples = scrapes(10_000, 6, 300);
        let error = check_window(&samples, 10_000, 30_000, CADENCE).unwrap_err();
        assert!(error.contains("before the window's end"), "{error}");
        let error = check_window(&samples, 2_000, 22_000, CADENCE).unwrap_err();
        assert!(error.contains("after the window's start"), "{error}");
        let error = check_window(&samples, 30_000, 40_000, CADENCE).unwrap_err();
        assert!(error.contains("no samples"), "{error}");
    }
}
