//! Per-request limits: `--store.limits.request-series`, `--store.limits.request-samples` (and
//! the older `--store.grpc.touched-series-limit` and `--store.grpc.series-sample-limit`), and
//! `--store.grpc.downloaded-bytes-limit`. Samples are counted as Thanos does, 120 per chunk.
//! Bytes are counted before they are read: every postings list, series entry and chunk range
//! taken from the bucket or the index cache (fetched or touched, as Thanos says), so a request
//! over the limit stops before it downloads what it may not. Exceeding a limit ends the request
//! with `ResourceExhausted`.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Samples Thanos assumes per chunk when counting towards sample limits.
pub(crate) const SAMPLES_PER_CHUNK: u64 = 120;

/// Which limit a request exceeded: the `reason` label of
/// `thanos_bucket_store_queries_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// Series selected.
    Series,
    /// Chunks (samples / 120) loaded.
    Chunks,
    /// Bytes fetched or touched.
    Bytes,
}

impl LimitKind {
    /// The metric label value.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Series => "series",
            Self::Chunks => "chunks",
            Self::Bytes => "bytes",
        }
    }
}

/// Request limits (0 = unlimited).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Limits {
    /// Series per request.
    pub(crate) series: u64,
    /// Samples per request, counted as chunks × 120.
    pub(crate) samples: u64,
    /// Bytes fetched or touched per request.
    pub(crate) bytes: u64,
}

/// Counts one request's series, samples and bytes against its limits.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    limits: Limits,
    series: AtomicU64,
    samples: AtomicU64,
    bytes: AtomicU64,
}

impl Limiter {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    pub(crate) fn add_series(&self, count: u64) -> Result<()> {
        let total = self.series.fetch_add(count, Ordering::Relaxed) + count;
        if self.limits.series > 0 && total > self.limits.series {
            return Err(Error::LimitExceeded {
                kind: LimitKind::Series,
                message: format!(
                    "exceeded series limit: limit {} violated (got {total})",
                    self.limits.series
                ),
            });
        }
        Ok(())
    }

    pub(crate) fn add_chunks(&self, chunks: u64) -> Result<()> {
        let samples = chunks.saturating_mul(SAMPLES_PER_CHUNK);
        let total = self.samples.fetch_add(samples, Ordering::Relaxed) + samples;
        if self.limits.samples > 0 && total > self.limits.samples {
            return Err(Error::LimitExceeded {
                kind: LimitKind::Chunks,
                message: format!(
                    "exceeded samples limit: limit {} violated (got {total})",
                    self.limits.samples
                ),
            });
        }
        Ok(())
    }

    /// Counts `count` bytes about to be read (`what`: "postings", "series" or "chunks").
    pub(crate) fn add_bytes(&self, count: u64, what: &str) -> Result<()> {
        let total = self.bytes.fetch_add(count, Ordering::Relaxed) + count;
        if self.limits.bytes > 0 && total > self.limits.bytes {
            return Err(Error::LimitExceeded {
                kind: LimitKind::Bytes,
                message: format!(
                    "exceeded bytes limit while fetching {what}: limit {} violated (got {total})",
                    self.limits.bytes
                ),
            });
        }
        Ok(())
    }

    /// Bytes counted so far.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Counts the lengths of `ranges` about to be read.
    pub(crate) fn add_ranges(&self, ranges: &[std::ops::Range<u64>], what: &str) -> Result<()> {
        let total = ranges
            .iter()
            .map(|range| range.end.saturating_sub(range.start))
            .fold(0_u64, u64::saturating_add);
        self.add_bytes(total, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_exclusive_upper_bounds_and_zero_is_unlimited() {
        let limiter = Limiter::new(Limits {
            series: 2,
            samples: 240,
            bytes: 100,
        });
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
        assert!(limiter.add_ranges(&[0..40, 100..160], "postings").is_ok());
        let error = limiter.add_bytes(1, "chunks").unwrap_err();
        assert_eq!(
            error.to_string(),
            "exceeded bytes limit while fetching chunks: limit 100 violated (got 101)"
        );
        assert!(matches!(
            error,
            Error::LimitExceeded {
                kind: LimitKind::Bytes,
                ..
            }
        ));
        let unlimited = Limiter::new(Limits::default());
        assert!(unlimited.add_series(1 << 40).is_ok() && unlimited.add_chunks(1 << 40).is_ok());
        assert!(unlimited.add_bytes(u64::MAX / 2, "series").is_ok());
    }
}
