//! Per-request limits: `--store.limits.request-series`, `--store.limits.request-samples` and
//! the older `--store.grpc.series-sample-limit`. Samples are counted as Thanos does, 120 per
//! chunk. Exceeding a limit ends the request with `ResourceExhausted`.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Samples Thanos assumes per chunk when counting towards sample limits.
pub(crate) const SAMPLES_PER_CHUNK: u64 = 120;

/// Counts one request's series and samples against its limits (0 = unlimited).
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    series_limit: u64,
    samples_limit: u64,
    series: AtomicU64,
    samples: AtomicU64,
}

impl Limiter {
    pub(crate) fn new(series_limit: u64, samples_limit: u64) -> Self {
        Self {
            series_limit,
            samples_limit,
            ..Self::default()
        }
    }

    pub(crate) fn add_series(&self, count: u64) -> Result<()> {
        let total = self.series.fetch_add(count, Ordering::Relaxed) + count;
        if self.series_limit > 0 && total > self.series_limit {
            return Err(Error::LimitExceeded(format!(
                "exceeded series limit: limit {} violated (got {total})",
                self.series_limit
            )));
        }
        Ok(())
    }

    pub(crate) fn add_chunks(&self, chunks: u64) -> Result<()> {
        let samples = chunks.saturating_mul(SAMPLES_PER_CHUNK);
        let total = self.samples.fetch_add(samples, Ordering::Relaxed) + samples;
        if self.samples_limit > 0 && total > self.samples_limit {
            return Err(Error::LimitExceeded(format!(
                "exceeded samples limit: limit {} violated (got {total})",
                self.samples_limit
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_exclusive_upper_bounds_and_zero_is_unlimited() {
        let limiter = Limiter::new(2, 240);
        assert!(limiter.add_series(2).is_ok());
        assert!(
            limiter
                .add_series(1)
                .unwrap_err()
                .to_string()
                .contains("series limit")
        );
        assert!(limiter.add_chunks(2).is_ok());
        assert!(limiter.add_chunks(1).is_err());
        let unlimited = Limiter::new(0, 0);
        assert!(unlimited.add_series(1 << 40).is_ok() && unlimited.add_chunks(1 << 40).is_ok());
    }
}
