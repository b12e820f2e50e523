//! The engine's synchronous [`Queryable`] over the async store fan-out.
//!
//! Evaluation runs on a blocking thread (`spawn_blocking`); each `select` the engine makes
//! (once per selector, for the whole range it can touch) starts the store fan-out on the async
//! workers ([`Proxy::series_stream`]) and returns at once; the engine's thread waits on the
//! runtime handle only for the next batch of merged series, so it works on the first series
//! while the stores still send the rest. Each series' samples are decoded and de-duplicated
//! when the engine reads them. Store warnings and partial-response failures are collected for
//! the API response; they are complete once a selection has yielded its last series.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prom_model::{Labels, Matcher, Sample};
use promql_engine::{Queryable, SelectHints, SelectedSeries, SeriesStream, StorageError};
use tokio::runtime::Handle;

use crate::dedup::series_samples;
use crate::downsample::Aggregate;
use crate::proxy::{FetchAccount, Proxy, SeriesQuery, SeriesReceiver};
use storeapi::proto::thanos;

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
    /// The fan-out merges the stores' answers in label order (a store's answer that needed
    /// replica labels stripped here is sorted before it is merged), so the engine may read a
    /// selection as it arrives.
    fn streams_sorted(&self) -> bool {
        true
    }

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
        // The fan-out runs on the runtime while the engine reads: its first series arrive
        // before the stores are done.
        let receiver = {
            let _entered = self.runtime.enter();
            self.proxy.series_stream(query)
        };
        Ok(Box::new(Selected {
            owner: self,
            receiver,
            current: Vec::new().into_iter(),
            done: false,
            start: hints.start,
            end: hints.end,
            dedup: !self.options.replica_labels.is_empty(),
            aggregate,
        }))
    }
}

/// The series of one `select`, taken from the fan-out batch by batch.
struct Selected<'a> {
    owner: &'a StoreQueryable,
    receiver: SeriesReceiver,
    /// The rest of the last batch.
    current: std::vec::IntoIter<thanos::Series>,
    /// The fan-out ended (or failed, or timed out).
    done: bool,
    start: i64,
    end: i64,
    dedup: bool,
    aggregate: Aggregate,
}

impl Selected<'_> {
    /// Takes the next batch's series (its warnings go to the queryable's); `false` when the
    /// fan-out is done.
    fn next_batch(&mut self) -> Result<bool, StorageError> {
        let deadline = tokio::time::Instant::from_std(self.owner.options.deadline);
        let receiver = &mut self.receiver;
        let next = self
            .owner
            .runtime
            .block_on(async { tokio::time::timeout_at(deadline, receiver.recv()).await });
        match next {
            Ok(Some(Ok(batch))) => {
                self.owner.warn(batch.warnings);
                self.current = batch.series.into_iter();
                Ok(true)
            }
            Ok(None) => Ok(false),
            Ok(Some(Err(error))) => Err(StorageError::new(error.to_string())),
            Err(_) => {
                self.owner.timed_out.store(true, Ordering::Relaxed);
                Err(StorageError::new("query timed out in fetching series"))
            }
        }
    }

    /// One received series as the engine takes it; `None` when it has no sample in range.
    fn select(
        &self,
        series: thanos::Series,
    ) -> Option<Result<SelectedSeries<'static>, StorageError>> {
        let labels = match storeapi::convert::labels_from_proto(series.labels) {
            Ok(labels) => labels,
            Err(error) => return Some(Err(StorageError::new(error.to_string()))),
        };
        let decode = Decode {
            chunks: series.chunks,
            start: self.start,
            end: self.end,
            dedup: self.dedup,
            aggregate: self.aggregate,
        };
        // A series' chunks are decoded when the engine first reads its samples, not when it
        // takes the series: the engine may take many series of a selector before it reads
        // any, so decoding here held the decoded samples of all of them at once beside the
        // raw chunks. A series decodes here only when its chunks alone cannot tell whether
        // it has a sample in range (whether to leave it out): no chunk lies wholly inside it.
        if decode.has_sample_in_range() {
            return Some(Ok(SelectedSeries {
                samples: Box::new(LazySamples::new(decode, labels.clone())),
                labels,
                start_timestamps: None,
            }));
        }
        match decode.samples(&labels) {
            Ok(samples) if samples.is_empty() => None,
            Ok(samples) => Some(Ok(SelectedSeries {
                labels,
                samples: Box::new(samples.into_iter().map(Ok)),
                start_timestamps: None,
            })),
            Err(error) => Some(Err(error)),
        }
    }
}

impl<'a> Iterator for Selected<'a> {
    type Item = Result<SelectedSeries<'a>, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(series) = self.current.next() {
                match self.select(series) {
                    Some(selected) => return Some(selected),
                    None => continue,
                }
            }
            if self.done {
                return None;
            }
            let next = self.next_batch();
            if !matches!(next, Ok(true)) {
                // Done, failed or out of time: the fan-out stops.
                self.done = true;
                self.receiver.close();
                return next.err().map(Err);
            }
        }
    }
}

/// What decoding one series' chunks needs.
#[derive(Debug)]
struct Decode {
    chunks: Vec<thanos::AggrChunk>,
    start: i64,
    end: i64,
    dedup: bool,
    aggregate: Aggregate,
}

impl Decode {
    /// Whether the chunk metadata alone shows a sample in `[start, end]`: a chunk (its first
    /// and last sample times) lies wholly inside. Series of at most two chunks answer `false`:
    /// they are small, and decoding them at once spares keeping their labels for an error.
    fn has_sample_in_range(&self) -> bool {
        self.chunks.len() > 2
            && self
                .chunks
                .iter()
                .any(|chunk| chunk.min_time >= self.start && chunk.max_time <= self.end)
    }

    /// The samples in range (see [`series_samples`]); the error names the series.
    fn samples(&self, labels: &Labels) -> Result<Vec<Sample>, StorageError> {
        series_samples(
            &self.chunks,
            self.start,
            self.end,
            self.dedup,
            self.aggregate,
        )
        .map_err(|message| StorageError::new(format!("decode chunks of {labels}: {message}")))
    }
}

/// The decoding state of a [`LazySamples`].
#[derive(Debug)]
enum LazyState {
    /// Not decoded yet.
    Pending(Box<(Decode, Labels)>),
    /// Decoded: the samples left.
    Ready(std::vec::IntoIter<Sample>),
    /// Decoding failed: the error, until it is yielded.
    Failed(Option<StorageError>),
}

/// A series' samples, decoded on first use: its size asked (the engine sizes its buffer from
/// it) or its first sample taken; the raw chunks are freed then.
#[derive(Debug)]
struct LazySamples {
    state: RefCell<LazyState>,
}

impl LazySamples {
    fn new(decode: Decode, labels: Labels) -> Self {
        Self {
            state: RefCell::new(LazyState::Pending(Box::new((decode, labels)))),
        }
    }

    /// Decodes the chunks if not done yet.
    fn ready(state: &mut LazyState) {
        if matches!(state, LazyState::Pending(_))
            && let LazyState::Pending(pending) = std::mem::replace(state, LazyState::Failed(None))
        {
            let (decode, labels) = *pending;
            *state = match decode.samples(&labels) {
                Ok(samples) => LazyState::Ready(samples.into_iter()),
                Err(error) => LazyState::Failed(Some(error)),
            };
        }
    }
}

impl Iterator for LazySamples {
    type Item = Result<Sample, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        let state = self.state.get_mut();
        Self::ready(state);
        match state {
            LazyState::Ready(samples) => samples.next().map(Ok),
            LazyState::Failed(error) => error.take().map(Err),
            LazyState::Pending(_) => None,
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // Only this iterator borrows its state, and never across calls.
        let Ok(mut state) = self.state.try_borrow_mut() else {
            return (0, None);
        };
        Self::ready(&mut state);
        match &*state {
            LazyState::Ready(samples) => samples.size_hint(),
            LazyState::Failed(error) => {
                let left = usize::from(error.is_some());
                (left, Some(left))
            }
            LazyState::Pending(_) => (0, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use storeapi::chunk::xor_chunk;

    use super::*;

    /// `count` raw chunks of 30 samples 15s apart, one after the other.
    fn chunks(count: usize) -> Vec<thanos::AggrChunk> {
        (0..count)
            .map(|chunk| {
                let samples: Vec<Sample> = (0..30)
                    .map(|index| {
                        let t = (chunk * 30 + index) as i64 * 15_000;
                        Sample::new(t, (chunk * 100 + index) as f64 * 0.5)
                    })
                    .collect();
                thanos::AggrChunk {
                    min_time: samples[0].t,
                    max_time: samples[29].t,
                    raw: Some(xor_chunk(&samples)),
                    ..Default::default()
                }
            })
            .collect()
    }

    fn decode(chunks: Vec<thanos::AggrChunk>, start: i64, end: i64) -> Decode {
        Decode {
            chunks,
            start,
            end,
            dedup: false,
            aggregate: Aggregate::Average,
        }
    }

    #[test]
    fn lazy_samples_are_the_eager_ones_with_their_exact_size() {
        let labels = Labels::from_pairs([("__name__", "up")]);
        // Cuts into the first and the last of four chunks (450s each).
        let (start, end) = (100_000, 1_500_000);
        let eager = decode(chunks(4), start, end).samples(&labels).unwrap();
        assert_eq!(
            eager.len(),
            (start / 15_000 + 1..=end / 15_000).count(),
            "samples in range"
        );
        let lazy_source = decode(chunks(4), start, end);
        assert!(lazy_source.has_sample_in_range());
        let mut lazy = LazySamples::new(lazy_source, labels.clone());
        assert_eq!(lazy.size_hint(), (eager.len(), Some(eager.len())));
        let first = lazy.next().unwrap().unwrap();
        assert_eq!(lazy.size_hint(), (eager.len() - 1, Some(eager.len() - 1)));
        let rest: Vec<Sample> = lazy.map(Result::unwrap).collect();
        assert_eq!([vec![first], rest].concat(), eager);
    }

    #[test]
    fn only_a_chunk_wholly_in_range_defers_decoding() {
        // Two chunks are always decoded at once.
        assert!(!decode(chunks(2), 0, i64::MAX).has_sample_in_range());
        // Three chunks, the range inside the middle one: no chunk wholly inside.
        assert!(!decode(chunks(3), 500_000, 600_000).has_sample_in_range());
        assert!(decode(chunks(3), 450_000, 885_000).has_sample_in_range());
    }

    #[test]
    fn a_lazy_decoding_failure_is_the_eager_error_once() {
        let labels = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        let mut broken = chunks(3);
        if let Some(raw) = broken[1].raw.as_mut() {
            raw.data = vec![0, 30, 1].into();
        }
        let eager = decode(broken.clone(), 0, i64::MAX)
            .samples(&labels)
            .unwrap_err();
        assert!(
            eager
                .message
                .starts_with("decode chunks of {__name__=\"up\", job=\"a\"}"),
            "{}",
            eager.message
        );
        let mut lazy = LazySamples::new(decode(broken, 0, i64::MAX), labels);
        assert_eq!(lazy.size_hint(), (1, Some(1)));
        assert_eq!(lazy.next().unwrap().unwrap_err().message, eager.message);
        assert!(lazy.next().is_none());
    }
}
