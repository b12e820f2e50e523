//! The StoreAPI (`thanos.Store`) and `thanos.info.Info` over the loaded blocks.
//!
//! Raw and downsampled (5m, 1h) blocks are loaded alike and all listed by `Info`. A `Series`
//! call reads, per external label set, the blocks [`choose`] picks for its
//! `max_resolution_window` (the coarsest level allowed, gaps filled from finer levels), and
//! fills the requested aggregates of downsampled chunks; label calls read blocks of every
//! resolution, as Thanos' do.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures_util::StreamExt;
use prom_model::{Labels, Matcher};
use storeapi::convert::{label_set_to_proto, matchers_from_proto, zlabel_set_to_proto};
use storeapi::hints;
use storeapi::proto::hintspb;
use storeapi::proto::thanos::info::{self as infopb, info_server::Info};
use storeapi::proto::thanos::{self, series_response, store_server::Store};
use tokio::sync::{Semaphore, mpsc};
use tonic::{Request, Response, Status};

use crate::block::{Block, BlockQuery, Reads, SeriesContext, requested_aggregates};
use crate::cache::IndexCache;
use crate::error::Error;
use crate::limits::{Limiter, Limits};
use crate::metrics::QueryMetrics;
use crate::relabel::BLOCK_ID_LABEL;
use crate::shard::ShardMatcher;
use crate::sync::BlockSet;

mod choose;
mod merge;

/// Bucket reads of one request in flight at once (every block's stream is open, see
/// [`merge`]).
const BLOCK_QUERY_CONCURRENCY: usize = 8;
/// Batches a block may have ready before the merge takes them.
const BLOCK_CHANNEL: usize = 1;
/// Response frames ready before the client takes them.
const FRAME_CHANNEL: usize = 4;

/// The bucket store: cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct BucketStore {
    blocks: Arc<BlockSet>,
    cache: Arc<dyn IndexCache>,
    limits: Limits,
    concurrency: service_core::Gate,
    metrics: QueryMetrics,
    readiness: service_core::Readiness,
}

/// Whether a block (its meta and external labels) holds data for a request over
/// `[min_time, max_time]` whose hints carry `block_matchers`: overlapping in time, external
/// labels and `__block_id` matching. Any resolution: label calls read downsampled blocks too, as
/// Thanos' do; `Series` chooses among resolutions with [`choose`].
fn serves(
    meta: &tsdb_block::meta::BlockMeta,
    external: &Labels,
    min_time: i64,
    max_time: i64,
    block_matchers: &[Matcher],
) -> bool {
    overlaps(meta, min_time, max_time) && block_matches(meta, external, block_matchers)
}

/// Whether a block's half-open `[min_time, max_time)` meets the closed request range.
fn overlaps(meta: &tsdb_block::meta::BlockMeta, min_time: i64, max_time: i64) -> bool {
    meta.max_time > min_time && meta.min_time <= max_time
}

/// Whether a block's external labels and `__block_id` match the hints' block matchers.
fn block_matches(
    meta: &tsdb_block::meta::BlockMeta,
    external: &Labels,
    block_matchers: &[Matcher],
) -> bool {
    if block_matchers.is_empty() {
        return true;
    }
    let mut labels = external.clone();
    labels.set(BLOCK_ID_LABEL, meta.ulid.to_string());
    block_matchers
        .iter()
        .all(|matcher| matcher.matches(labels.get(matcher.name()).unwrap_or("")))
}

fn bad_request(error: impl std::fmt::Display) -> Status {
    Status::from(Error::BadRequest(error.to_string()))
}

/// `(0, 0)` from an old client means no range.
fn label_range(start: i64, end: i64) -> (i64, i64) {
    if start == 0 && end == 0 {
        (i64::MIN, i64::MAX)
    } else {
        (start, end)
    }
}

impl BucketStore {
    pub(crate) fn new(
        blocks: Arc<BlockSet>,
        cache: Arc<dyn IndexCache>,
        limits: Limits,
        concurrency: service_core::Gate,
        metrics: QueryMetrics,
        readiness: service_core::Readiness,
    ) -> Self {
        Self {
            blocks,
            cache,
            limits,
            concurrency,
            metrics,
            readiness,
        }
    }

    /// Refuses requests until the initial bucket sync is done: before it, the blocks are not
    /// loaded yet and an answer would be silently empty or short.
    fn check_ready(&self) -> Result<(), Status> {
        if self.readiness.is_ready() {
            Ok(())
        } else {
            Err(Status::unavailable(
                "store gateway is not ready: the initial bucket sync is not done",
            ))
        }
    }

    /// Loaded blocks overlapping `[min_time, max_time]` whose external labels (and
    /// `__block_id`) match the hints' block matchers.
    fn blocks_for(
        &self,
        min_time: i64,
        max_time: i64,
        block_matchers: &[Matcher],
    ) -> Vec<Arc<Block>> {
        self.blocks
            .all()
            .into_iter()
            .filter(|block| {
                serves(
                    &block.meta,
                    &block.external,
                    min_time,
                    max_time,
                    block_matchers,
                )
            })
            .collect()
    }

    /// The blocks that answer a `Series` request over `[min_time, max_time]` allowing
    /// resolutions up to `max_resolution_window` ms: per external label set, Thanos' choice of
    /// the coarsest level allowed with its gaps filled from finer levels (see [`choose`]).
    fn series_blocks(
        &self,
        min_time: i64,
        max_time: i64,
        max_resolution_window: i64,
        block_matchers: &[Matcher],
    ) -> Vec<Arc<Block>> {
        let mut groups: BTreeMap<Labels, Vec<Arc<Block>>> = BTreeMap::new();
        for block in self.blocks.all() {
            groups
                .entry(block.external.clone())
                .or_default()
                .push(block);
        }
        let mut chosen = Vec::new();
        for blocks in groups.into_values() {
            let candidates: Vec<choose::Candidate> = blocks
                .iter()
                .map(|block| choose::Candidate {
                    min_time: block.meta.min_time,
                    max_time: block.meta.max_time,
                    resolution: block.meta.resolution(),
                    selected: block_matches(&block.meta, &block.external, block_matchers),
                })
                .collect();
            let indexes = choose::choose(&candidates, min_time, max_time, max_resolution_window);
            chosen.extend(indexes.into_iter().map(|index| Arc::clone(&blocks[index])));
        }
        chosen
    }

    /// What a request over `[min_time, max_time]` misses because blocks it would read failed to
    /// load: one message per block of a resolution up to `max_resolution` ms, empty when
    /// nothing is missing.
    fn missing_for(
        &self,
        min_time: i64,
        max_time: i64,
        max_resolution: i64,
        block_matchers: &[Matcher],
    ) -> Vec<String> {
        self.blocks
            .unloaded()
            .into_iter()
            .filter(|unloaded| {
                let external = crate::block::external_labels(&unloaded.meta);
                unloaded.meta.resolution() <= max_resolution
                    && serves(
                        &unloaded.meta,
                        &external,
                        min_time,
                        max_time,
                        block_matchers,
                    )
            })
            .map(|unloaded| {
                format!(
                    "block {} could not be loaded, its data is missing: {}",
                    unloaded.meta.ulid, unloaded.error
                )
            })
            .collect()
    }

    /// The warnings of a request whose blocks failed to load (see [`Self::missing_for`]), or,
    /// when the request does not accept partial answers, the error that refuses it.
    fn missing(
        &self,
        min_time: i64,
        max_time: i64,
        max_resolution: i64,
        block_matchers: &[Matcher],
        strategy: i32,
    ) -> Result<Vec<String>, Status> {
        let missing = self.missing_for(min_time, max_time, max_resolution, block_matchers);
        if !missing.is_empty() && strategy == thanos::PartialResponseStrategy::Abort as i32 {
            return Err(Status::unavailable(missing.join("; ")));
        }
        Ok(missing)
    }

    /// The status a failed label call ends with; a limit's refusal is counted.
    fn label_call_failed(&self, error: Error) -> Status {
        self.metrics.count_dropped(&error);
        tracing::warn!(error = %service_core::error_chain(&error), "label request failed");
        Status::from(error)
    }

    /// The external label names that are replica labels among those requested.
    fn replica_labels(&self, requested: &[String]) -> Vec<String> {
        let blocks = self.blocks.all();
        requested
            .iter()
            .filter(|name| {
                blocks
                    .iter()
                    .any(|block| block.external.get(name).is_some())
            })
            .cloned()
            .collect()
    }

    fn info_response(&self) -> infopb::InfoResponse {
        let blocks = self.blocks.all();
        let mut label_sets: Vec<Labels> = Vec::new();
        let mut tsdb_infos: Vec<infopb::TsdbInfo> = Vec::new();
        for block in &blocks {
            match label_sets.iter().position(|set| *set == block.external) {
                Some(position) => {
                    let info = &mut tsdb_infos[position];
                    info.min_time = info.min_time.min(block.meta.min_time);
                    info.max_time = info.max_time.max(block.meta.max_time);
                }
                None => {
                    label_sets.push(block.external.clone());
                    tsdb_infos.push(infopb::TsdbInfo {
                        labels: Some(zlabel_set_to_proto(&block.external)),
                        min_time: block.meta.min_time,
                        max_time: block.meta.max_time,
                    });
                }
            }
        }
        let min_time = blocks
            .iter()
            .map(|block| block.meta.min_time)
            .min()
            .unwrap_or(i64::MAX);
        let max_time = blocks
            .iter()
            .map(|block| block.meta.max_time)
            .max()
            .unwrap_or(i64::MIN);
        infopb::InfoResponse {
            label_sets: label_sets.iter().map(zlabel_set_to_proto).collect(),
            component_type: "store".to_owned(),
            store: Some(infopb::StoreInfo {
                min_time,
                max_time,
                supports_sharding: true,
                supports_without_replica_labels: true,
                tsdb_infos,
                supports_projections: false,
            }),
            ..Default::default()
        }
    }
}

fn truncate<T>(items: &mut Vec<T>, limit: i64) {
    if let Ok(limit) = usize::try_from(limit)
        && limit > 0
    {
        items.truncate(limit);
    }
}

fn queried_blocks(ids: &[Arc<Block>]) -> Vec<hintspb::Block> {
    ids.iter()
        .map(|block| hintspb::Block {
            id: block.id.to_string(),
        })
        .collect()
}

#[tonic::async_trait]
impl Store for BucketStore {
    async fn info(
        &self,
        _request: Request<thanos::InfoRequest>,
    ) -> Result<Response<thanos::InfoResponse>, Status> {
        self.check_ready()?;
        let info = self.info_response();
        let store = info.store.unwrap_or_default();
        let sets: Vec<Labels> = self
            .blocks
            .all()
            .iter()
            .map(|block| block.external.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        Ok(Response::new(thanos::InfoResponse {
            labels: Vec::new(),
            min_time: store.min_time,
            max_time: store.max_time,
            store_type: thanos::StoreType::Store.into(),
            label_sets: sets.iter().map(label_set_to_proto).collect(),
        }))
    }

    async fn series(
        &self,
        request: Request<thanos::SeriesRequest>,
    ) -> Result<Response<storeapi::SeriesResponseStream>, Status> {
        self.check_ready()?;
        let request = request.into_inner();
        let matchers = matchers_from_proto(&request.matchers)?;
        let block_matchers = match &request.hints {
            Some(any) => {
                let hints: hintspb::SeriesRequestHints = hints::unpack(any)?;
                matchers_from_proto(&hints.block_matchers)?
            }
            None => Vec::new(),
        };
        let blocks = self.series_blocks(
            request.min_time,
            request.max_time,
            request.max_resolution_window,
            &block_matchers,
        );
        let missing = self.missing(
            request.min_time,
            request.max_time,
            request.max_resolution_window.max(0),
            &block_matchers,
            request.partial_response_strategy,
        )?;
        let permit = self
            .concurrency
            .start()
            .await
            .map_err(|_| Status::unavailable("store is shutting down"))?;
        let context = Arc::new(SeriesContext {
            query: BlockQuery {
                matchers,
                min_time: request.min_time,
                max_time: request.max_time,
                skip_chunks: request.skip_chunks,
            },
            cache: Arc::clone(&self.cache),
            limiter: Limiter::new(self.limits),
            removed: self.replica_labels(&request.without_replica_labels),
            shard: ShardMatcher::new(request.shard_info.as_ref()),
            aggregates: requested_aggregates(&request.aggregates),
            fetches: Semaphore::new(BLOCK_QUERY_CONCURRENCY),
        });
        self.metrics.blocks_queried.observe(blocks.len() as f64);
        let response_hints = hintspb::SeriesResponseHints {
            queried_blocks: queried_blocks(&blocks),
            query_stats: None,
        };
        let hints_frame = thanos::SeriesResponse {
            result: Some(series_response::Result::Hints(hints::pack(&response_hints))),
        };
        let mut receivers = Vec::with_capacity(blocks.len());
        for block in blocks {
            let (sender, receiver) = mpsc::channel(BLOCK_CHANNEL);
            tokio::spawn(block.stream_series(Arc::clone(&context), sender));
            receivers.push(receiver);
        }
        let (sender, frames) = mpsc::channel(FRAME_CHANNEL);
        let metrics = self.metrics.clone();
        let limit = usize::try_from(request.limit).unwrap_or(0);
        let batch_size = usize::try_from(request.response_batch_size).unwrap_or(0);
        tokio::spawn(async move {
            let _permit = permit;
            let started = std::time::Instant::now();
            for warning in missing {
                let frame = thanos::SeriesResponse {
                    result: Some(series_response::Result::Warning(warning)),
                };
                if sender.send(Ok(frame)).await.is_err() {
                    return;
                }
            }
            match merge::merge_blocks(receivers, &sender, limit, batch_size).await {
                Ok(Some(count)) => {
                    metrics.result_series.observe(count as f64);
                    metrics
                        .get_all_duration
                        .observe(started.elapsed().as_secs_f64());
                    let _ = sender.send(Ok(hints_frame)).await;
                }
                Ok(None) => tracing::debug!("series client went away"),
                Err(error) => {
                    metrics.count_dropped(&error);
                    tracing::warn!(error = %service_core::error_chain(&error), "series request failed");
                    let _ = sender.send(Err(Status::from(error))).await;
                }
            }
            // The call's buffers are freed: hand their pages back before the next call.
            service_core::malloc::release_free_memory();
        });
        let mut frames = futures_util::stream::unfold(frames, |mut frames| async move {
            frames.recv().await.map(|frame| (frame, frames))
        })
        .boxed();
        // The first frame is awaited here so that a failure before any series is sent (a
        // bucket error, a limit) is the call's status rather than the stream's.
        match frames.next().await {
            Some(Ok(first)) => Ok(Response::new(Box::pin(
                futures_util::stream::once(std::future::ready(Ok(first))).chain(frames),
            ))),
            Some(Err(status)) => Err(status),
            None => Err(Status::internal("series stream ended without an answer")),
        }
    }

    async fn label_names(
        &self,
        request: Request<thanos::LabelNamesRequest>,
    ) -> Result<Response<thanos::LabelNamesResponse>, Status> {
        self.check_ready()?;
        let request = request.into_inner();
        let matchers = matchers_from_proto(&request.matchers)?;
        let block_matchers = match &request.hints {
            Some(any) => matchers_from_proto(
                &hints::unpack::<hintspb::LabelNamesRequestHints>(any)?.block_matchers,
            )?,
            None => Vec::new(),
        };
        let (start, end) = label_range(request.start, request.end);
        let blocks = self.blocks_for(start, end, &block_matchers);
        let warnings = self.missing(
            start,
            end,
            i64::MAX,
            &block_matchers,
            request.partial_response_strategy,
        )?;
        let query = BlockQuery {
            matchers,
            min_time: start,
            max_time: end,
            skip_chunks: true,
        };
        let replica_labels = self.replica_labels(&request.without_replica_labels);
        let limiter = Limiter::new(self.limits);
        let reads = Reads {
            cache: self.cache.as_ref(),
            limiter: &limiter,
        };
        let mut names = BTreeSet::new();
        for block in &blocks {
            names.extend(
                block
                    .label_names(&query, reads)
                    .await
                    .map_err(|error| self.label_call_failed(error))?,
            );
        }
        let mut names: Vec<String> = names
            .into_iter()
            .filter(|name| !replica_labels.contains(name))
            .collect();
        truncate(&mut names, request.limit);
        let response_hints = hintspb::LabelNamesResponseHints {
            queried_blocks: queried_blocks(&blocks),
        };
        Ok(Response::new(thanos::LabelNamesResponse {
            names,
            warnings,
            hints: Some(hints::pack(&response_hints)),
        }))
    }

    async fn label_values(
        &self,
        request: Request<thanos::LabelValuesRequest>,
    ) -> Result<Response<thanos::LabelValuesResponse>, Status> {
        self.check_ready()?;
        let request = request.into_inner();
        if request.label.is_empty() {
            return Err(bad_request("label name parameter cannot be empty"));
        }
        let matchers = matchers_from_proto(&request.matchers)?;
        let block_matchers = match &request.hints {
            Some(any) => matchers_from_proto(
                &hints::unpack::<hintspb::LabelValuesRequestHints>(any)?.block_matchers,
            )?,
            None => Vec::new(),
        };
        let (start, end) = label_range(request.start, request.end);
        let blocks = self.blocks_for(start, end, &block_matchers);
        let warnings = self.missing(
            start,
            end,
            i64::MAX,
            &block_matchers,
            request.partial_response_strategy,
        )?;
        let query = BlockQuery {
            matchers,
            min_time: start,
            max_time: end,
            skip_chunks: true,
        };
        let limiter = Limiter::new(self.limits);
        let reads = Reads {
            cache: self.cache.as_ref(),
            limiter: &limiter,
        };
        let mut values = BTreeSet::new();
        if !self
            .replica_labels(&request.without_replica_labels)
            .contains(&request.label)
        {
            for block in &blocks {
                values.extend(
                    block
                        .label_values(&request.label, &query, reads)
                        .await
                        .map_err(|error| self.label_call_failed(error))?,
                );
            }
        }
        let mut values: Vec<String> = values.into_iter().collect();
        truncate(&mut values, request.limit);
        let response_hints = hintspb::LabelValuesResponseHints {
            queried_blocks: queried_blocks(&blocks),
        };
        Ok(Response::new(thanos::LabelValuesResponse {
            values,
            warnings,
            hints: Some(hints::pack(&response_hints)),
        }))
    }
}

#[tonic::async_trait]
impl Info for BucketStore {
    async fn info(
        &self,
        _request: Request<infopb::InfoRequest>,
    ) -> Result<Response<infopb::InfoResponse>, Status> {
        self.check_ready()?;
        Ok(Response::new(self.info_response()))
    }
}
