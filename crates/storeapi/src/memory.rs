//! An in-memory StoreAPI server: the reference implementation the acceptance suite runs
//! against, and a handy fake for querier tests.
//!
//! Series are held fully in memory as XOR chunks with the store's external labels attached
//! (an external label wins over a series label of the same name, §1.6 rule 2). It honours
//! matchers, time ranges, `skip_chunks`, `without_replica_labels` (for its external label names),
//! `limit`, `response_batch_size`, the label APIs and both Info methods.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures_util::stream;
use prom_model::{Labels, Matcher, Sample};
use tonic::{Request, Response, Status};

use crate::chunk::raw_chunks;
use crate::convert::{
    compare_labels, label_set_to_proto, labels_match, labels_to_proto, matchers_from_proto,
    zlabel_set_to_proto,
};
use crate::merge::{series_frame, sort_chunks};
use crate::proto::thanos::info::{self as infopb, info_server::Info};
use crate::proto::thanos::{self, series_response, store_server::Store};
use crate::replica::without_replica_labels;

/// Samples per XOR chunk, as Prometheus' head cuts them by default.
pub const SAMPLES_PER_CHUNK: usize = 120;

/// One series with float samples, as given to a store under test.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    /// The series' own labels (without external labels).
    pub labels: Labels,
    /// Samples sorted by timestamp.
    pub samples: Vec<Sample>,
}

impl SeriesData {
    /// A series from labels and samples.
    pub fn new(labels: Labels, samples: Vec<Sample>) -> Self {
        Self { labels, samples }
    }
}

#[derive(Debug)]
struct StoredSeries {
    labels: Vec<thanos::Label>,
    chunks: Vec<thanos::AggrChunk>,
}

#[derive(Debug)]
struct Inner {
    /// Sorted by labels, distinct.
    series: Vec<StoredSeries>,
    external_labels: Labels,
    min_time: i64,
    max_time: i64,
    component_type: String,
}

/// The in-memory store; cheap to clone (shared data). Serves `thanos.Store` and
/// `thanos.info.Info`; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

impl MemoryStore {
    /// A store over `series` with `external_labels`, chunked [`SAMPLES_PER_CHUNK`] samples each.
    pub fn new(external_labels: Labels, series: Vec<SeriesData>) -> Self {
        let with_chunks = series
            .into_iter()
            .map(|one| (one.labels, raw_chunks(&one.samples, SAMPLES_PER_CHUNK)))
            .collect();
        Self::with_chunks(external_labels, with_chunks)
    }

    /// A store over series given as ready chunks (any encoding, any aggregates).
    pub fn with_chunks(
        external_labels: Labels,
        series: Vec<(Labels, Vec<thanos::AggrChunk>)>,
    ) -> Self {
        let mut stored: Vec<StoredSeries> = series
            .into_iter()
            .map(|(labels, chunks)| {
                let mut full = labels;
                for label in &external_labels {
                    full.set(label.name.clone(), label.value.clone());
                }
                StoredSeries {
                    labels: labels_to_proto(&full),
                    chunks,
                }
            })
            .collect();
        stored.sort_by(|left, right| compare_labels(&left.labels, &right.labels));
        let mut merged: Vec<StoredSeries> = Vec::with_capacity(stored.len());
        for one in stored {
            match merged.last_mut() {
                Some(last) if last.labels == one.labels => last.chunks.extend(one.chunks),
                _ => merged.push(one),
            }
        }
        for one in &mut merged {
            sort_chunks(&mut one.chunks);
        }
        let chunks = || merged.iter().flat_map(|one| one.chunks.iter());
        let min_time = chunks()
            .map(|chunk| chunk.min_time)
            .min()
            .unwrap_or(i64::MAX);
        let max_time = chunks()
            .map(|chunk| chunk.max_time)
            .max()
            .unwrap_or(i64::MIN);
        Self {
            inner: Arc::new(Inner {
                series: merged,
                external_labels,
                min_time,
                max_time,
                component_type: "store".to_owned(),
            }),
        }
    }

    /// The store's time range `(min_time, max_time)`; `(i64::MAX, i64::MIN)` when empty.
    pub fn time_range(&self) -> (i64, i64) {
        (self.inner.min_time, self.inner.max_time)
    }

    /// The series matching `matchers` with a chunk overlapping `[min_time, max_time]`, chunks
    /// limited to the overlapping ones.
    fn select(&self, matchers: &[Matcher], min_time: i64, max_time: i64) -> Vec<thanos::Series> {
        let mut selected = Vec::new();
        for one in &self.inner.series {
            if !labels_match(&one.labels, matchers) {
                continue;
            }
            let chunks: Vec<thanos::AggrChunk> = one
                .chunks
                .iter()
                .filter(|chunk| chunk.max_time >= min_time && chunk.min_time <= max_time)
                .cloned()
                .collect();
            if chunks.is_empty() {
                continue;
            }
            selected.push(thanos::Series {
                labels: one.labels.clone(),
                chunks,
            });
        }
        selected
    }

    /// The requested replica labels this store may drop: its external label names.
    fn replica_labels(&self, requested: &[String]) -> Vec<String> {
        requested
            .iter()
            .filter(|name| self.inner.external_labels.get(name).is_some())
            .cloned()
            .collect()
    }

    fn info_response(&self) -> infopb::InfoResponse {
        let label_sets = if self.inner.external_labels.is_empty() {
            Vec::new()
        } else {
            vec![zlabel_set_to_proto(&self.inner.external_labels)]
        };
        infopb::InfoResponse {
            label_sets: label_sets.clone(),
            component_type: self.inner.component_type.clone(),
            store: Some(infopb::StoreInfo {
                min_time: self.inner.min_time,
                max_time: self.inner.max_time,
                supports_sharding: false,
                supports_without_replica_labels: true,
                tsdb_infos: vec![infopb::TsdbInfo {
                    labels: Some(zlabel_set_to_proto(&self.inner.external_labels)),
                    min_time: self.inner.min_time,
                    max_time: self.inner.max_time,
                }],
                supports_projections: false,
            }),
            ..Default::default()
        }
    }
}

/// `(0, 0)` is what an old client sends when it sets no range: then everything is in range.
fn label_range(start: i64, end: i64) -> (i64, i64) {
    if start == 0 && end == 0 {
        (i64::MIN, i64::MAX)
    } else {
        (start, end)
    }
}

fn truncate<T>(items: &mut Vec<T>, limit: i64) {
    if let Ok(limit) = usize::try_from(limit)
        && limit > 0
    {
        items.truncate(limit);
    }
}

/// Packs series into response frames: one `series` per frame, or `batch` frames of
/// `batch_size` series when the client asked for more than one per frame.
pub fn pack_series(series: Vec<thanos::Series>, batch_size: i64) -> Vec<thanos::SeriesResponse> {
    let batch_size = usize::try_from(batch_size).unwrap_or(0);
    if batch_size <= 1 {
        return series.into_iter().map(series_frame).collect();
    }
    let mut frames = Vec::with_capacity(series.len().div_ceil(batch_size));
    let mut rest = series.into_iter().peekable();
    while rest.peek().is_some() {
        let batch: Vec<thanos::Series> = rest.by_ref().take(batch_size).collect();
        frames.push(thanos::SeriesResponse {
            result: Some(series_response::Result::Batch(thanos::SeriesBatch {
                series: batch,
            })),
        });
    }
    frames
}

#[tonic::async_trait]
impl Store for MemoryStore {
    async fn info(
        &self,
        _request: Request<thanos::InfoRequest>,
    ) -> Result<Response<thanos::InfoResponse>, Status> {
        let external = &self.inner.external_labels;
        let label_sets = if external.is_empty() {
            Vec::new()
        } else {
            vec![label_set_to_proto(external)]
        };
        Ok(Response::new(thanos::InfoResponse {
            labels: labels_to_proto(external),
            min_time: self.inner.min_time,
            max_time: self.inner.max_time,
            store_type: thanos::StoreType::Store.into(),
            label_sets,
        }))
    }

    async fn series(
        &self,
        request: Request<thanos::SeriesRequest>,
    ) -> Result<Response<crate::merge::SeriesResponseStream>, Status> {
        let request = request.into_inner();
        let matchers = matchers_from_proto(&request.matchers)?;
        let mut series = self.select(&matchers, request.min_time, request.max_time);
        let replica_labels = self.replica_labels(&request.without_replica_labels);
        series = without_replica_labels(series, &replica_labels);
        truncate(&mut series, request.limit);
        if request.skip_chunks {
            for one in &mut series {
                one.chunks.clear();
            }
        }
        let frames = pack_series(series, request.response_batch_size);
        Ok(Response::new(Box::pin(stream::iter(
            frames.into_iter().map(Ok),
        ))))
    }

    async fn label_names(
        &self,
        request: Request<thanos::LabelNamesRequest>,
    ) -> Result<Response<thanos::LabelNamesResponse>, Status> {
        let request = request.into_inner();
        let matchers = matchers_from_proto(&request.matchers)?;
        let (start, end) = label_range(request.start, request.end);
        let replica_labels = self.replica_labels(&request.without_replica_labels);
        let mut names = BTreeSet::new();
        for one in self.select(&matchers, start, end) {
            for label in one.labels {
                if !replica_labels.contains(&label.name) {
                    names.insert(label.name);
                }
            }
        }
        let mut names: Vec<String> = names.into_iter().collect();
        truncate(&mut names, request.limit);
        Ok(Response::new(thanos::LabelNamesResponse {
            names,
            ..Default::default()
        }))
    }

    async fn label_values(
        &self,
        request: Request<thanos::LabelValuesRequest>,
    ) -> Result<Response<thanos::LabelValuesResponse>, Status> {
        let request = request.into_inner();
        if request.label.is_empty() {
            return Err(Status::invalid_argument(
                "label name parameter cannot be empty",
            ));
        }
        let matchers = matchers_from_proto(&request.matchers)?;
        let (start, end) = label_range(request.start, request.end);
        let mut values = BTreeSet::new();
        if !self
            .replica_labels(&request.without_replica_labels)
            .contains(&request.label)
        {
            for one in self.select(&matchers, start, end) {
                if let Some(label) = one
                    .labels
                    .into_iter()
                    .find(|label| label.name == request.label)
                {
                    values.insert(label.value);
                }
            }
        }
        let mut values: Vec<String> = values.into_iter().collect();
        truncate(&mut values, request.limit);
        Ok(Response::new(thanos::LabelValuesResponse {
            values,
            ..Default::default()
        }))
    }
}

#[tonic::async_trait]
impl Info for MemoryStore {
    async fn info(
        &self,
        _request: Request<infopb::InfoRequest>,
    ) -> Result<Response<infopb::InfoResponse>, Status> {
        Ok(Response::new(self.info_response()))
    }
}
