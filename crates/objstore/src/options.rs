//! Runtime settings of a [`Bucket`](crate::Bucket) that are not part of Thanos' objstore YAML:
//! retries, timeouts, multipart part size and range coalescing.

use std::time::Duration;

use object_store::{BackoffConfig, RetryConfig};

/// Default gap below which two requested ranges are fetched with one request (64 KiB).
pub const DEFAULT_COALESCE_GAP: u64 = 64 * 1024;

/// Default multipart part size (64 MiB, Thanos' S3 default).
pub const DEFAULT_PART_SIZE: u64 = 64 * 1024 * 1024;

/// How a [`Bucket`](crate::Bucket) talks to its store. `Default` suits production; tests shorten
/// the retries.
#[derive(Debug, Clone)]
pub struct BucketOptions {
    /// Retries of a failed request on transient errors (connection errors, 5xx, 429). A
    /// provider's `max_retries` (or Azure's `pipeline_config.max_tries`) overrides this when > 0.
    pub max_retries: usize,
    /// First back-off between retries; doubled each time up to [`Self::max_backoff`].
    pub init_backoff: Duration,
    /// Largest back-off between retries.
    pub max_backoff: Duration,
    /// No retry starts after this much time since the first attempt.
    pub retry_timeout: Duration,
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time allowed for one whole request, body included; `None` = no limit (reads still time out
    /// after `http_config.response_header_timeout` without data).
    pub request_timeout: Option<Duration>,
    /// Part size for multipart uploads; objects larger than this are uploaded in parts. A
    /// provider's `part_size` overrides this.
    pub part_size: u64,
    /// Parts of one multipart upload sent concurrently.
    pub upload_concurrency: usize,
    /// How [`Bucket::get_ranges`](crate::Bucket::get_ranges) merges and fetches ranges.
    pub ranges: RangeOptions,
}

impl Default for BucketOptions {
    fn default() -> Self {
        Self {
            max_retries: 10,
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            retry_timeout: Duration::from_secs(180),
            connect_timeout: Duration::from_secs(10),
            request_timeout: None,
            part_size: DEFAULT_PART_SIZE,
            upload_concurrency: 4,
            ranges: RangeOptions::default(),
        }
    }
}

impl BucketOptions {
    /// The `object_store` retry configuration, with `max_retries` from the provider config when
    /// it is positive.
    pub(crate) fn retry_config(&self, configured_max_retries: i64) -> RetryConfig {
        let max_retries = if configured_max_retries > 0 {
            usize::try_from(configured_max_retries).unwrap_or(usize::MAX)
        } else {
            self.max_retries
        };
        RetryConfig {
            backoff: BackoffConfig {
                init_backoff: self.init_backoff,
                max_backoff: self.max_backoff,
                base: 2.0,
            },
            max_retries,
            retry_timeout: self.retry_timeout,
        }
    }
}

/// Range coalescing for [`Bucket::get_ranges`](crate::Bucket::get_ranges).
#[derive(Debug, Clone)]
pub struct RangeOptions {
    /// Two ranges whose gap is below this many bytes are fetched with one request (the gap's
    /// bytes are read and dropped). 0 disables coalescing of non-touching ranges.
    pub max_gap: u64,
    /// A merged request never grows beyond this many bytes (a single requested range may).
    pub max_merged_size: u64,
    /// Requests of one `get_ranges` call in flight at once.
    pub concurrency: usize,
}

impl Default for RangeOptions {
    fn default() -> Self {
        Self {
            max_gap: DEFAULT_COALESCE_GAP,
            max_merged_size: 16 * 1024 * 1024,
            concurrency: 8,
        }
    }
}
