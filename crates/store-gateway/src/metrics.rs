//! Query metrics of the bucket store, with Thanos' names.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};

/// What the StoreAPI records per request.
#[derive(Debug, Clone)]
pub(crate) struct QueryMetrics {
    pub(crate) blocks_queried: Histogram,
    pub(crate) result_series: Histogram,
    pub(crate) get_all_duration: Histogram,
    pub(crate) queries_dropped: IntCounterVec,
}

impl QueryMetrics {
    pub(crate) fn register(registry: &Registry) -> prometheus::Result<Self> {
        let histogram =
            |name: &str, help: &str, buckets: Vec<f64>| -> prometheus::Result<Histogram> {
                let metric = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?;
                registry.register(Box::new(metric.clone()))?;
                Ok(metric)
            };
        let counts = vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
        let queries_dropped = IntCounterVec::new(
            Opts::new(
                "thanos_bucket_store_queries_dropped_total",
                "Number of queries that were dropped due to the limit.",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(queries_dropped.clone()))?;
        Ok(Self {
            blocks_queried: histogram(
                "thanos_bucket_store_series_blocks_queried",
                "Number of blocks in a bucket store that were touched to satisfy a query.",
                counts,
            )?,
            result_series: histogram(
                "thanos_bucket_store_series_result_series",
                "Number of series observed in the final result of a query.",
                prometheus::exponential_buckets(1.0, 4.0, 12)?,
            )?,
            get_all_duration: histogram(
                "thanos_bucket_store_series_get_all_duration_seconds",
                "Time it takes until all per-block prepares and loads for a query are finished.",
                vec![
                    0.001, 0.01, 0.1, 0.3, 0.6, 1.0, 3.0, 6.0, 9.0, 20.0, 30.0, 60.0, 90.0, 120.0,
                ],
            )?,
            queries_dropped,
        })
    }

    /// Counts a request refused by one of its limits in `thanos_bucket_store_queries_dropped_total`.
    pub(crate) fn count_dropped(&self, error: &crate::error::Error) {
        if let crate::error::Error::LimitExceeded { kind, .. } = error {
            self.queries_dropped
                .with_label_values(&[kind.reason()])
                .inc();
        }
    }
}
