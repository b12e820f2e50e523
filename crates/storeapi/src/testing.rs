//! A closed-box StoreAPI acceptance suite, run against every store implementation.
//!
//! Each implementation provides a [`StoreFactory`]: "here are series with samples and external
//! labels, give me clients to a store serving them". [`run_acceptance`] then checks, through
//! gRPC only: `Series` with each matcher type and Prometheus' empty-value and anchoring rules,
//! time ranges, chunk contents, `skip_chunks`, sorted output, external labels,
//! `without_replica_labels`, `limit`, response batching, `LabelNames` / `LabelValues` with
//! matchers and time ranges, bad regexes, and both `Info` methods. Expected results are written
//! out by hand per case, never computed with the code under test.
//!
//! The in-memory [`MemoryStore`](crate::memory::MemoryStore) passes it in this crate's tests;
//! the sidecar, the store gateway and the querier's proxy run it in theirs.

use std::future::Future;

use prom_model::{Labels, Sample};
use tonic::transport::Channel;

use crate::chunk::{aggregate_part, decode_float_samples};
use crate::convert::{compare_labels, labels_from_proto};
use crate::memory::SeriesData;
use crate::proto::thanos::info::info_client::InfoClient;
use crate::proto::thanos::label_matcher::Type as MatcherType;
use crate::proto::thanos::store_client::StoreClient;
use crate::proto::thanos::{self, Aggr, series_response};

mod cases;

pub use cases::{DATA_MAX_TIME, DATA_MIN_TIME, acceptance_data, external_labels};

/// Clients to a store under test, plus whatever keeps it alive (dropped after the suite).
#[derive(Debug)]
pub struct TestStore {
    /// `thanos.Store` client.
    pub store: StoreClient<Channel>,
    /// `thanos.info.Info` client.
    pub info: InfoClient<Channel>,
    /// Keeps the server running (a process handle, a server task, a temporary directory).
    pub guard: Box<dyn std::fmt::Debug + Send>,
}

/// Starts a store implementation over given data.
pub trait StoreFactory {
    /// Starts a store whose series are `series`, each carrying `external_labels`.
    fn start(
        &self,
        external_labels: Labels,
        series: Vec<SeriesData>,
    ) -> impl Future<Output = TestStore> + Send;
}

/// Everything a `Series` call returned, with frame statistics.
#[derive(Debug, Default, Clone)]
pub struct SeriesResult {
    /// The series, with consecutive frames of the same series joined.
    pub series: Vec<thanos::Series>,
    /// `warning` frames.
    pub warnings: Vec<String>,
    /// `hints` frames.
    pub hints: Vec<prost_types::Any>,
    /// How many `series` frames arrived.
    pub series_frames: usize,
    /// How many `batch` frames arrived.
    pub batch_frames: usize,
    /// The most series in one `batch` frame.
    pub largest_batch: usize,
}

impl SeriesResult {
    fn push(&mut self, series: thanos::Series) {
        match self.series.last_mut() {
            Some(last) if last.labels == series.labels => last.chunks.extend(series.chunks),
            _ => self.series.push(series),
        }
    }
}

/// Calls `Series` and reads the whole stream.
pub async fn collect_series(
    client: &mut StoreClient<Channel>,
    request: thanos::SeriesRequest,
) -> Result<SeriesResult, tonic::Status> {
    let mut stream = client.series(request).await?.into_inner();
    let mut result = SeriesResult::default();
    while let Some(frame) = stream.message().await? {
        match frame.result {
            Some(series_response::Result::Series(series)) => {
                result.series_frames += 1;
                result.push(series);
            }
            Some(series_response::Result::Batch(batch)) => {
                result.batch_frames += 1;
                result.largest_batch = result.largest_batch.max(batch.series.len());
                for series in batch.series {
                    result.push(series);
                }
            }
            Some(series_response::Result::Warning(warning)) => result.warnings.push(warning),
            Some(series_response::Result::Hints(hints)) => result.hints.push(hints),
            None => {}
        }
    }
    Ok(result)
}

/// A wire matcher (for building requests).
pub fn matcher(kind: MatcherType, name: &str, value: &str) -> thanos::LabelMatcher {
    thanos::LabelMatcher {
        r#type: kind.into(),
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

/// A `Series` request over `[min_time, max_time]` with `matchers` and defaults otherwise.
pub fn series_request(
    min_time: i64,
    max_time: i64,
    matchers: Vec<thanos::LabelMatcher>,
) -> thanos::SeriesRequest {
    thanos::SeriesRequest {
        min_time,
        max_time,
        matchers,
        aggregates: vec![Aggr::Raw.into()],
        ..Default::default()
    }
}

/// Runs the whole suite against a store started by `factory`; panics naming the failed case.
pub async fn run_acceptance<F: StoreFactory + Sync>(factory: &F) {
    let mut store = factory.start(external_labels(), acceptance_data()).await;
    cases::series_selection(&mut store).await;
    cases::chunk_contents(&mut store).await;
    cases::skip_chunks_and_limit(&mut store).await;
    cases::batching(&mut store).await;
    cases::without_replica_labels(&mut store).await;
    cases::label_names(&mut store).await;
    cases::label_values(&mut store).await;
    cases::invalid_matchers(&mut store).await;
    cases::info(&mut store).await;
    let mut empty = factory.start(external_labels(), Vec::new()).await;
    cases::empty_store(&mut empty).await;
}

/// The label sets of `series`, as text, asserting they are sorted, distinct and valid.
fn label_strings(case: &str, series: &[thanos::Series]) -> Vec<String> {
    for pair in series.windows(2) {
        assert!(
            compare_labels(&pair[0].labels, &pair[1].labels).is_lt(),
            "{case}: series not sorted or repeated: {:?} then {:?}",
            pair[0].labels,
            pair[1].labels
        );
    }
    series
        .iter()
        .map(|one| match labels_from_proto(one.labels.clone()) {
            Ok(labels) => labels.to_string(),
            Err(error) => panic!("{case}: invalid labels {:?}: {error}", one.labels),
        })
        .collect()
}

/// Every float sample of a series' raw chunks, inside `[min_time, max_time]`.
fn samples_in_range(
    case: &str,
    series: &thanos::Series,
    min_time: i64,
    max_time: i64,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    for chunk in &series.chunks {
        let raw = match aggregate_part(chunk, Aggr::Raw) {
            Ok(raw) => raw,
            Err(error) => panic!("{case}: {error}"),
        };
        match decode_float_samples(raw) {
            Ok(decoded) => samples.extend(decoded),
            Err(error) => panic!("{case}: {error}"),
        }
    }
    samples.retain(|sample| sample.t >= min_time && sample.t <= max_time);
    samples.sort_by_key(|sample| sample.t);
    samples.dedup_by(|later, earlier| later.t == earlier.t);
    samples
}
