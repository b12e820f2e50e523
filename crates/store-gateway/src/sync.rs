//! Bucket sync: a [`block_fetcher::Fetcher`] pass (one listing of the bucket, metas read once,
//! marks when changed, Thanos' meta fetcher filters), then load new blocks and drop removed ones.
//!
//! The store gateway's filters, in order, with their `thanos_blocks_meta_synced{state}` names:
//! no `meta.json` (`no-meta-json`), unparsable meta (`corrupted-meta-json`), outside
//! `--min-time`/`--max-time` (`time-excluded`), dropped by `--selector.relabel-config`
//! (`label-excluded`), younger than `--consistency-delay` (`too-fresh`), deletion mark older than
//! `--ignore-deletion-marks-delay` (`marked-for-deletion`), compacted into another served block
//! (`duplicate`). The rest are `loaded`; a block whose meta or mark could not be read (`failed`)
//! keeps its current state.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use block_fetcher::{Fetcher, FetcherConfig, Filters, ListingMode};
use futures_util::StreamExt;
use objstore::Bucket;
use prometheus::{IntCounter, IntGauge, Registry};
use tsdb_block::meta::BlockMeta;
use ulid::Ulid;

use crate::block::Block;
use crate::error::{Error, Result};
use crate::relabel::RelabelConfig;
use crate::time::TimeBound;

/// What decides which blocks are served.
#[derive(Debug, Clone)]
pub(crate) struct SyncConfig {
    pub(crate) data_dir: PathBuf,
    pub(crate) consistency_delay: Duration,
    pub(crate) ignore_deletion_marks_delay: Duration,
    pub(crate) min_time: TimeBound,
    pub(crate) max_time: TimeBound,
    pub(crate) relabel: RelabelConfig,
    pub(crate) concurrency: usize,
}

/// The blocks being served, shared by the syncer and the StoreAPI.
#[derive(Debug, Default)]
pub(crate) struct BlockSet {
    blocks: RwLock<BTreeMap<Ulid, Arc<Block>>>,
    /// Blocks that should be served but failed to load (disk full, a bad index): a query over
    /// them must not get a silently shorter answer.
    unloaded: RwLock<BTreeMap<Ulid, Unloaded>>,
}

/// A wanted block that could not be loaded, and why.
#[derive(Debug, Clone)]
pub(crate) struct Unloaded {
    /// The block's meta.
    pub(crate) meta: BlockMeta,
    /// The load error.
    pub(crate) error: String,
}

impl BlockSet {
    /// A snapshot of the loaded blocks.
    pub(crate) fn all(&self) -> Vec<Arc<Block>> {
        self.blocks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// A snapshot of the blocks that should be served but failed to load.
    pub(crate) fn unloaded(&self) -> Vec<Unloaded> {
        self.unloaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Records this round's load failures; forgets those loaded since or no longer wanted.
    fn set_unloaded(&self, unloaded: BTreeMap<Ulid, Unloaded>) {
        *self
            .unloaded
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = unloaded;
    }

    fn ids(&self) -> Vec<Ulid> {
        self.blocks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .copied()
            .collect()
    }

    fn insert(&self, block: Arc<Block>) {
        self.blocks
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(block.id, block);
    }

    fn remove(&self, id: &Ulid) -> Option<Arc<Block>> {
        self.blocks
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id)
    }
}

#[derive(Debug, Clone)]
struct SyncMetrics {
    blocks_loaded: IntGauge,
    loads: IntCounter,
    load_failures: IntCounter,
    drops: IntCounter,
    lazy_loads: IntCounter,
    lazy_unloads: IntCounter,
}

impl SyncMetrics {
    fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str| -> prometheus::Result<IntCounter> {
            let metric = IntCounter::new(name, help)?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let blocks_loaded = IntGauge::new(
            "thanos_bucket_store_blocks_loaded",
            "Number of currently loaded blocks.",
        )?;
        registry.register(Box::new(blocks_loaded.clone()))?;
        Ok(Self {
            blocks_loaded,
            loads: counter(
                "thanos_bucket_store_block_loads_total",
                "Total number of remote block loading attempts.",
            )?,
            load_failures: counter(
                "thanos_bucket_store_block_load_failures_total",
                "Total number of failed remote block loading attempts.",
            )?,
            drops: counter(
                "thanos_bucket_store_block_drops_total",
                "Total number of local blocks that were dropped.",
            )?,
            lazy_loads: counter(
                "thanos_bucket_store_indexheader_lazy_load_total",
                "Total number of index-header lazy load operations.",
            )?,
            lazy_unloads: counter(
                "thanos_bucket_store_indexheader_lazy_unload_total",
                "Total number of index-header lazy unload operations.",
            )?,
        })
    }
}

/// Keeps a [`BlockSet`] in line with the bucket.
#[derive(Debug)]
pub(crate) struct Syncer {
    bucket: Bucket,
    config: SyncConfig,
    metrics: SyncMetrics,
    fetcher: Fetcher,
    pub(crate) blocks: Arc<BlockSet>,
}

impl Syncer {
    pub(crate) fn new(bucket: Bucket, config: SyncConfig, registry: &Registry) -> Result<Self> {
        let fetcher_config = FetcherConfig {
            // Metas are cached in memory only, as before the fetcher: Thanos' store also keeps
            // them in <data-dir>/meta-syncer, but on a full disk those files take the room of
            // index-headers (tests/tests/faults/disk.rs), so that is left for a later change.
            cache_dir: None,
            concurrency: config.concurrency,
            listing: ListingMode::Recursive,
            metric_prefix: "thanos_".to_owned(),
            filters: Filters {
                min_time: config.min_time,
                max_time: config.max_time,
                relabel: config.relabel.clone(),
                consistency_delay: config.consistency_delay,
                deletion_mark_delay: Some(config.ignore_deletion_marks_delay),
                deduplicate: true,
                replica_labels: Vec::new(),
            },
            read_no_compact_marks: false,
            read_no_downsample_marks: false,
        };
        let fetcher = Fetcher::new(bucket.clone(), fetcher_config, registry)
            .map_err(|error| fetcher_error("create block fetcher", error))?;
        Ok(Self {
            bucket,
            config,
            metrics: SyncMetrics::register(registry)?,
            fetcher,
            blocks: Arc::new(BlockSet::default()),
        })
    }

    /// One sync round. A listing failure is an error (the served set is unchanged).
    pub(crate) async fn sync(&self) -> Result<()> {
        let snapshot = self
            .fetcher
            .fetch()
            .await
            .map_err(|error| fetcher_error("list bucket", error))?;
        self.apply(snapshot.metas, &snapshot.failed).await;
        Ok(())
    }

    /// Loads wanted blocks not yet loaded; drops loaded blocks no longer wanted (a block whose
    /// state could not be determined this round is kept).
    async fn apply(&self, wanted: BTreeMap<Ulid, BlockMeta>, failed: &[Ulid]) {
        let loaded = self.blocks.ids();
        for id in &loaded {
            if !wanted.contains_key(id)
                && !failed.contains(id)
                && let Some(block) = self.blocks.remove(id)
            {
                {
                    block.remove_local_files();
                    self.metrics.drops.inc();
                    tracing::info!(block = %id, "dropped block");
                }
            }
        }
        let new: Vec<BlockMeta> = wanted
            .into_values()
            .filter(|meta| !loaded.contains(&meta.ulid))
            .collect();
        let data_dir = &self.config.data_dir;
        let results: Vec<(BlockMeta, Result<Block>)> = futures_util::stream::iter(new)
            .map(|meta| async move {
                let lazy_loads = self.metrics.lazy_loads.clone();
                let block =
                    Block::load(meta.clone(), self.bucket.clone(), data_dir, lazy_loads).await;
                (meta, block)
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        let mut unloaded = BTreeMap::new();
        for (meta, result) in results {
            let id = meta.ulid;
            self.metrics.loads.inc();
            match result {
                Ok(block) => {
                    tracing::info!(block = %id, "loaded block");
                    self.blocks.insert(Arc::new(block));
                }
                Err(error) => {
                    self.metrics.load_failures.inc();
                    let error = service_core::error_chain(&error);
                    tracing::warn!(block = %id, error = %error, "load block");
                    unloaded.insert(id, Unloaded { meta, error });
                }
            }
        }
        self.blocks.set_unloaded(unloaded);
        self.metrics
            .blocks_loaded
            .set(self.blocks.ids().len() as i64);
    }

    /// Releases index-headers unused for `idle`.
    pub(crate) fn release_idle(&self, idle: Duration) {
        for block in self.blocks.all() {
            if block.release_if_idle(idle) {
                self.metrics.lazy_unloads.inc();
                tracing::debug!(block = %block.id, "released idle index-header");
            }
        }
    }
}

/// The store gateway's error for a fetcher error: a listing failure is a bucket error.
fn fetcher_error(action: &'static str, error: block_fetcher::Error) -> Error {
    match error {
        block_fetcher::Error::List { source } => Error::bucket(action, source),
        block_fetcher::Error::Metrics(error) => Error::Metrics(error),
        other => Error::Internal(format!("{action}: {}", service_core::error_chain(&other))),
    }
}
