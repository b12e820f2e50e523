//! The engine's synchronous [`Queryable`] over the async store fan-out.
//!
//! Evaluation runs on a blocking thread (`spawn_blocking`); each `select` the engine makes
//! (once per selector, for the whole range it can touch) blocks that thread on the runtime
//! handle while the fan-out runs on the async workers; each series' samples are decoded and
//! de-duplicated when the engine takes the series. Store warnings and partial-response failures
//! are collected for the API response.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prom_model::Matcher;
use promql_engine::{Queryable, SelectHints, SelectedSeries, SeriesStream, StorageError};
use tokio::runtime::Handle;

use crate::dedup::series_samples;
use crate::downsample::Aggregate;
use crate::proxy::{FetchAccount, Proxy, SeriesQuery};

/// Per-request settings of a [`StoreQueryable`].
#[derive(Debug, Clone)]
pub struct SelectOptions {
    /// Replica labels to de-duplicate on (empty: no de-duplication).
    pub replica_labels: Vec<String>,
    /// Partial response strategy.
    pub partial_response: bool,
    /// `max_resolution_window` (ms).
    pub max_resolution_window: i64,
    /// When the query must be done.
    pub deadline: Instant,
    /// `storeMatch[]` selectors restricting the stores asked (empty: all).
    pub store_matchers: Vec<Vec<Matcher>>,
    /// The query's fetch limits and share of the memory budget for store answers.
    pub budget: Option<Arc<FetchAccount>>,
}

/// A [`Queryable`] over a [`Proxy`]; see the [module docs](self).
#[derive(Debug)]
pub struct StoreQueryable {
    runtime: Handle,
    proxy: Arc<Proxy>,
    options: SelectOptions,
    warnings: Mutex<Vec<String>>,
    timed_out: AtomicBool,
}

impl StoreQueryable {
    /// A queryable for one request.
    pub fn new(runtime: Handle, proxy: Arc<Proxy>, options: SelectOptions) -> Self {
        Self {
            runtime,
            proxy,
            options,
            warnings: Mutex::new(Vec::new()),
            timed_out: AtomicBool::new(false),
        }
    }

    /// Whether a fetch ran past the query's deadline.
    pub fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Relaxed)
    }

    /// Warnings collected so far, distinct, in first-seen order.
    pub fn take_warnings(&self) -> Vec<String> {
        match self.warnings.lock() {
            Ok(mut warnings) => std::mem::take(&mut *warnings),
            Err(_) => Vec::new(),
        }
    }

    fn warn(&self, new: Vec<String>) {
        if let Ok(mut warnings) = self.warnings.lock() {
            for warning in new {
                if !warnings.contains(&warning) {
                    warnings.push(warning);
                }
            }
        }
    }
}

impl Queryable for StoreQueryable {
    fn select<'a>(
        &'a self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<SeriesStream<'a>, StorageError> {
        let aggregate = Aggregate::for_function(hints.func.as_deref());
        let query = SeriesQuery {
            min_time: hints.start,
            max_time: hints.end,
            matchers: matchers.to_vec(),
            max_resolution_window: self.options.max_resolution_window,
            aggregates: aggregate.request_parts(),
            replica_labels: self.options.replica_labels.clone(),
            partial_response: self.options.partial_response,
            store_matchers: self.options.store_matchers.clone(),
            budget: self.options.budget.clone(),
            ..Default::default()
        };
        let deadline = tokio::time::Instant::from_std(self.options.deadline);
        let proxy = Arc::clone(&self.proxy);
        let fetched = self
            .runtime
            .block_on(async move { tokio::time::timeout_at(deadline, proxy.series(&query)).await })
            .map_err(|_| {
                self.timed_out.store(true, Ordering::Relaxed);
                StorageError::new("query timed out in fetching series")
            })?
            .map_err(|error| StorageError::new(error.to_string()))?;
        self.warn(fetched.warnings);
        let dedup = !self.options.replica_labels.is_empty();
        let (start, end) = (hints.start, hints.end);
        // A series' chunks are decoded when the engine takes it, and its raw chunks are freed
        // then: the decoded samples of one series at a time exist beside the engine's own copy,
        // not those of every series first.
        let selected = fetched.data.into_iter().filter_map(move |series| {
            let labels = match storeapi::convert::labels_from_proto(series.labels) {
                Ok(labels) => labels,
                Err(error) => return Some(Err(StorageError::new(error.to_string()))),
            };
            match series_samples(&series.chunks, start, end, dedup, aggregate) {
                Ok(samples) if samples.is_empty() => None,
                Ok(samples) => Some(Ok(SelectedSeries {
                    labels,
                    samples: Box::new(samples.into_iter().map(Ok)),
                    start_timestamps: None,
                })),
                Err(message) => Some(Err(StorageError::new(format!(
                    "decode chunks of {labels}: {message}"
                )))),
            }
        });
        Ok(Box::new(selected))
    }
}
