//! Bucket sync: list the bucket, read each block's `meta.json` (once; metas are immutable),
//! filter blocks as Thanos' meta fetcher does, then load new blocks and drop removed ones.
//!
//! Filters, in order, with their `thanos_blocks_meta_synced{state}` names: no `meta.json`
//! (`no-meta-json`), unparsable meta (`corrupted-meta-json`), outside `--min-time`/`--max-time`
//! (`time-excluded`), dropped by `--selector.relabel-config` (`label-excluded`), younger than
//! `--consistency-delay` (`too-fresh`), deletion mark older than
//! `--ignore-deletion-marks-delay` (`marked-for-deletion`), compacted into another served block
//! (`duplicate`: its compaction sources are a subset of another block's of the same resolution
//! and external labels). The rest are `loaded`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use objstore::Bucket;
use prometheus::{IntCounter, IntGauge, IntGaugeVec, Opts, Registry};
use tsdb_block::meta::{BlockMeta, DeletionMark, Mark, source};
use ulid::Ulid;

use crate::block::Block;
use crate::error::{Error, Result};
use crate::relabel::{BLOCK_ID_LABEL, RelabelConfig};
use crate::time::TimeBound;

const STATES: [&str; 9] = [
    "loaded",
    "duplicate",
    "failed",
    "no-meta-json",
    "corrupted-meta-json",
    "time-excluded",
    "label-excluded",
    "too-fresh",
    "marked-for-deletion",
];

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
    synced: IntGaugeVec,
    syncs: IntCounter,
    sync_failures: IntCounter,
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
        let synced = IntGaugeVec::new(
            Opts::new(
                "thanos_blocks_meta_synced",
                "Number of block metadata synced",
            ),
            &["state"],
        )?;
        registry.register(Box::new(synced.clone()))?;
        let blocks_loaded = IntGauge::new(
            "thanos_bucket_store_blocks_loaded",
            "Number of currently loaded blocks.",
        )?;
        registry.register(Box::new(blocks_loaded.clone()))?;
        Ok(Self {
            synced,
            syncs: counter(
                "thanos_blocks_meta_syncs_total",
                "Total blocks metadata synchronization attempts",
            )?,
            sync_failures: counter(
                "thanos_blocks_meta_sync_failures_total",
                "Total blocks metadata synchronization failures",
            )?,
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
    metas: Mutex<HashMap<Ulid, BlockMeta>>,
    pub(crate) blocks: Arc<BlockSet>,
}

enum MetaOutcome {
    Meta(Box<BlockMeta>),
    State(&'static str),
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

impl Syncer {
    pub(crate) fn new(bucket: Bucket, config: SyncConfig, registry: &Registry) -> Result<Self> {
        Ok(Self {
            bucket,
            config,
            metrics: SyncMetrics::register(registry)?,
            metas: Mutex::new(HashMap::new()),
            blocks: Arc::new(BlockSet::default()),
        })
    }

    /// The block's meta, when its folder (`files`, from one listing) has a `meta.json`; metas
    /// are read once and then cached, since they never change.
    async fn meta(&self, id: Ulid, files: &[String]) -> MetaOutcome {
        let name = format!("{id}/meta.json");
        if !files.contains(&name) {
            self.metas
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&id);
            return MetaOutcome::State("no-meta-json");
        }
        if let Some(meta) = self
            .metas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&id)
        {
            return MetaOutcome::Meta(Box::new(meta.clone()));
        }
        match self.bucket.get(&name).await {
            Ok(bytes) => match BlockMeta::from_json(&bytes, &name) {
                Ok(meta) => {
                    self.metas
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(id, meta.clone());
                    MetaOutcome::Meta(Box::new(meta))
                }
                Err(error) => {
                    tracing::warn!(block = %id, %error, "corrupted meta.json");
                    MetaOutcome::State("corrupted-meta-json")
                }
            },
            Err(error) if error.is_not_found() => MetaOutcome::State("no-meta-json"),
            Err(error) => {
                tracing::warn!(block = %id, error = %service_core::error_chain(&error), "read meta.json");
                MetaOutcome::State("failed")
            }
        }
    }

    /// The state a block with `meta` is filtered into, `loaded` when it is served.
    async fn filter(&self, meta: &BlockMeta, files: &[String]) -> Result<&'static str> {
        let now = now_millis();
        let (min_time, max_time) = (
            self.config.min_time.millis(now),
            self.config.max_time.millis(now),
        );
        if meta.max_time < min_time || meta.min_time > max_time {
            return Ok("time-excluded");
        }
        if !self.config.relabel.is_empty() {
            let mut labels: BTreeMap<String, String> = meta
                .thanos
                .as_ref()
                .map(|thanos| thanos.labels.clone())
                .unwrap_or_default();
            labels.insert(BLOCK_ID_LABEL.to_owned(), meta.ulid.to_string());
            if self.config.relabel.process(labels).is_none() {
                return Ok("label-excluded");
            }
        }
        let source = meta
            .thanos
            .as_ref()
            .map(|thanos| thanos.source.as_str())
            .unwrap_or("");
        let exempt = [
            source::COMPACTOR,
            source::COMPACTOR_REPAIR,
            source::BUCKET_REPAIR,
        ]
        .contains(&source);
        if !exempt && !self.config.consistency_delay.is_zero() {
            let created = meta
                .thanos
                .as_ref()
                .and_then(|thanos| thanos.upload_time_millis())
                .unwrap_or(meta.ulid.timestamp_ms() as i64);
            if now - created < self.config.consistency_delay.as_millis() as i64 {
                return Ok("too-fresh");
            }
        }
        let name = format!("{}/{}", meta.ulid, DeletionMark::FILE_NAME);
        if !files.contains(&name) {
            return Ok("loaded");
        }
        match self.bucket.get(&name).await {
            Ok(bytes) => match DeletionMark::from_json(&bytes) {
                Ok(mark) => {
                    let age = now / 1000 - mark.deletion_time;
                    if age > self.config.ignore_deletion_marks_delay.as_secs() as i64 {
                        return Ok("marked-for-deletion");
                    }
                }
                Err(error) => {
                    tracing::warn!(block = %meta.ulid, %error, "skipping unparsable deletion mark")
                }
            },
            Err(error) if error.is_not_found() => {}
            Err(source) => return Err(Error::bucket(format!("read {name}"), source)),
        }
        Ok("loaded")
    }

    /// One sync round. A listing failure is an error (the served set is unchanged).
    pub(crate) async fn sync(&self) -> Result<()> {
        self.metrics.syncs.inc();
        let result = self.sync_inner().await;
        if result.is_err() {
            self.metrics.sync_failures.inc();
        }
        result
    }

    async fn sync_inner(&self) -> Result<()> {
        let entries = self
            .bucket
            .iter("")
            .await
            .map_err(|source| Error::bucket("list bucket", source))?;
        let ids: Vec<Ulid> = entries
            .iter()
            .filter_map(|entry| entry.strip_suffix('/'))
            .filter_map(|dir| Ulid::from_string(dir).ok())
            .collect();
        let outcomes: Vec<(Ulid, Result<&'static str>, Option<BlockMeta>)> =
            futures_util::stream::iter(ids)
                .map(|id| async move {
                    let files = match self.bucket.iter(&format!("{id}/")).await {
                        Ok(files) => files,
                        Err(source) => {
                            return (id, Err(Error::bucket(format!("list {id}"), source)), None);
                        }
                    };
                    match self.meta(id, &files).await {
                        MetaOutcome::State(state) => (id, Ok(state), None),
                        MetaOutcome::Meta(meta) => {
                            (id, self.filter(&meta, &files).await, Some(*meta))
                        }
                    }
                })
                .buffer_unordered(self.config.concurrency.max(1))
                .collect()
                .await;
        let mut counts: HashMap<&'static str, i64> = HashMap::new();
        let mut wanted: BTreeMap<Ulid, BlockMeta> = BTreeMap::new();
        let mut failed_ids = Vec::new();
        for (id, state, meta) in outcomes {
            let state = match state {
                Ok(state) => state,
                Err(error) => {
                    tracing::warn!(block = %id, error = %service_core::error_chain(&error), "filter block");
                    "failed"
                }
            };
            *counts.entry(state).or_default() += 1;
            match (state, meta) {
                ("loaded", Some(meta)) => {
                    wanted.insert(id, meta);
                }
                ("failed", _) => failed_ids.push(id),
                _ => {}
            }
        }
        for duplicate in duplicates(&wanted) {
            wanted.remove(&duplicate);
            *counts.entry("loaded").or_default() -= 1;
            *counts.entry("duplicate").or_default() += 1;
        }
        for state in STATES {
            self.metrics
                .synced
                .with_label_values(&[state])
                .set(counts.get(state).copied().unwrap_or(0));
        }
        self.apply(wanted, &failed_ids).await;
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

/// Blocks whose compaction sources are all in another block of the same resolution and external
/// labels (for equal source sets the newest block is kept), as Thanos' deduplicate filter.
fn duplicates(metas: &BTreeMap<Ulid, BlockMeta>) -> Vec<Ulid> {
    let sources = |meta: &BlockMeta| -> std::collections::BTreeSet<Ulid> {
        if meta.compaction.sources.is_empty() {
            std::collections::BTreeSet::from([meta.ulid])
        } else {
            meta.compaction.sources.iter().copied().collect()
        }
    };
    let group = |meta: &BlockMeta| {
        (
            meta.resolution(),
            meta.thanos.as_ref().map(|thanos| thanos.labels.clone()),
        )
    };
    let mut duplicate = Vec::new();
    for (id, meta) in metas {
        let own = sources(meta);
        let covered = metas.iter().any(|(other_id, other)| {
            if other_id == id || group(other) != group(meta) {
                return false;
            }
            let theirs = sources(other);
            own.is_subset(&theirs) && (own.len() < theirs.len() || other_id > id)
        });
        if covered {
            duplicate.push(*id);
        }
    }
    duplicate
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: u128, sources: &[u128]) -> BlockMeta {
        let mut meta = BlockMeta::new(Ulid(id), 0, 1);
        meta.compaction.sources = sources.iter().map(|source| Ulid(*source)).collect();
        meta
    }

    #[test]
    fn blocks_compacted_into_others_are_duplicates() {
        let metas: BTreeMap<Ulid, BlockMeta> = [
            meta(1, &[1]),
            meta(2, &[2]),
            meta(3, &[1, 2]),
            meta(4, &[4]),
            meta(5, &[4]),
        ]
        .into_iter()
        .map(|meta| (meta.ulid, meta))
        .collect();
        assert_eq!(duplicates(&metas), [Ulid(1), Ulid(2), Ulid(4)]);
    }
}
