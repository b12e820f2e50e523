//! Thanos' bucket metrics (`thanos_objstore_bucket_*`), registered on an injected registry.
//!
//! As in Thanos every series carries the constant label `bucket` (the bucket's name) and the
//! label `operation` (`get`, `get_range`, `exists`, `upload`, `delete`, `iter`, `attributes`).
//! A missing object on a read is not a failure.

use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

/// Operation label values, as Thanos names them.
pub(crate) mod op {
    pub(crate) const GET: &str = "get";
    pub(crate) const GET_RANGE: &str = "get_range";
    pub(crate) const EXISTS: &str = "exists";
    pub(crate) const UPLOAD: &str = "upload";
    pub(crate) const DELETE: &str = "delete";
    pub(crate) const ITER: &str = "iter";
    pub(crate) const ATTRIBUTES: &str = "attributes";
    pub(crate) const ALL: [&str; 7] = [GET, GET_RANGE, EXISTS, UPLOAD, DELETE, ITER, ATTRIBUTES];
}

/// The collectors of one bucket. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct BucketMetrics {
    operations: IntCounterVec,
    failures: IntCounterVec,
    fetched_bytes: IntCounterVec,
    transferred_bytes: HistogramVec,
    duration: HistogramVec,
    last_successful_upload: Gauge,
}

impl BucketMetrics {
    /// Creates the collectors with `bucket="<bucket>"` and registers them on `registry`.
    pub(crate) fn register(registry: &Registry, bucket: &str) -> prometheus::Result<Self> {
        let opts = |name: &str, help: &str| Opts::new(name, help).const_label("bucket", bucket);
        let histogram_opts = |name: &str, help: &str, buckets: Vec<f64>| {
            HistogramOpts::new(name, help)
                .const_label("bucket", bucket)
                .buckets(buckets)
        };
        let operations = IntCounterVec::new(
            opts(
                "thanos_objstore_bucket_operations_total",
                "Total number of all attempted operations against a bucket.",
            ),
            &["operation"],
        )?;
        let failures = IntCounterVec::new(
            opts(
                "thanos_objstore_bucket_operation_failures_total",
                "Total number of operations against a bucket that failed, but were not expected to fail in certain way from caller perspective. Those errors have to be investigated.",
            ),
            &["operation"],
        )?;
        let fetched_bytes = IntCounterVec::new(
            opts(
                "thanos_objstore_bucket_operation_fetched_bytes_total",
                "Total number of bytes fetched from bucket, per operation.",
            ),
            &["operation"],
        )?;
        let transferred_bytes = HistogramVec::new(
            histogram_opts(
                "thanos_objstore_bucket_operation_transferred_bytes",
                "Number of bytes transferred from/to bucket per operation.",
                prometheus::exponential_buckets(32.0 * 1024.0, 2.0, 16)?,
            ),
            &["operation"],
        )?;
        let duration = HistogramVec::new(
            histogram_opts(
                "thanos_objstore_bucket_operation_duration_seconds",
                "Duration of successful operations against the bucket per operation.",
                vec![
                    0.001, 0.01, 0.1, 0.3, 0.6, 1.0, 3.0, 6.0, 9.0, 20.0, 30.0, 60.0, 90.0, 120.0,
                ],
            ),
            &["operation"],
        )?;
        let last_successful_upload = Gauge::with_opts(opts(
            "thanos_objstore_bucket_last_successful_upload_time",
            "Second timestamp of the last successful upload to the bucket.",
        ))?;
        registry.register(Box::new(operations.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(fetched_bytes.clone()))?;
        registry.register(Box::new(transferred_bytes.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(last_successful_upload.clone()))?;
        // Thanos initialises every operation's series at zero so rates exist from the start.
        for operation in op::ALL {
            operations.with_label_values(&[operation]);
            failures.with_label_values(&[operation]);
            duration.with_label_values(&[operation]);
        }
        for operation in [op::GET, op::GET_RANGE] {
            fetched_bytes.with_label_values(&[operation]);
            transferred_bytes.with_label_values(&[operation]);
        }
        Ok(Self {
            operations,
            failures,
            fetched_bytes,
            transferred_bytes,
            duration,
            last_successful_upload,
        })
    }

    /// Counts an attempted operation.
    pub(crate) fn attempted(&self, operation: &'static str) -> IntCounter {
        let counter = self.operations.with_label_values(&[operation]);
        counter.inc();
        counter
    }

    /// Counts an unexpected failure.
    pub(crate) fn failed(&self, operation: &'static str) {
        self.failures.with_label_values(&[operation]).inc();
    }

    /// Records a successful operation's duration.
    pub(crate) fn succeeded(&self, operation: &'static str, seconds: f64) {
        self.duration
            .with_label_values(&[operation])
            .observe(seconds);
    }

    /// Records bytes read by a get or ranged get.
    pub(crate) fn fetched(&self, operation: &'static str, bytes: u64) {
        self.fetched_bytes
            .with_label_values(&[operation])
            .inc_by(bytes);
        self.transfer_histogram(operation).observe(bytes as f64);
    }

    /// Records bytes written by an upload and the upload time.
    pub(crate) fn uploaded(&self, bytes: u64) {
        self.transfer_histogram(op::UPLOAD).observe(bytes as f64);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|since_epoch| since_epoch.as_secs_f64())
            .unwrap_or_default();
        self.last_successful_upload.set(now);
    }

    fn transfer_histogram(&self, operation: &'static str) -> Histogram {
        self.transferred_bytes.with_label_values(&[operation])
    }
}
