//! [`Fetcher`]: one pass = one listing, the metas and marks it reveals (read only when new or
//! changed), the filters, and a [`Snapshot`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use objstore::{Bucket, ObjectAttributes};
use prometheus::Registry;
use tsdb_block::meta::{BlockMeta, DeletionMark, META_FILENAME, NoCompactMark, NoDownsampleMark};
use ulid::Ulid;

use crate::disk;
use crate::error::{Error, Result};
use crate::filter::{self, BlockState, Filters};
use crate::listing::{self, BlockDir, Listed, ListingMode};
use crate::marks::{MarkCache, read_marks};
use crate::metrics::{self, FetcherMetrics};

/// How a [`Fetcher`] lists, caches and filters.
#[derive(Debug, Clone)]
pub struct FetcherConfig {
    /// Where metas are cached on disk (`<cache_dir>/meta-syncer/<ulid>/meta.json`, Thanos'
    /// layout; the store gateway passes its `--data-dir`); `None` keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// How many metas or marks are read at once (`--block-meta-fetch-concurrency`).
    pub concurrency: usize,
    /// How the bucket is listed.
    pub listing: ListingMode,
    /// Prefix of the metric names: `thanos_` for the store gateway and the compactor,
    /// `thanos_bucket_` for the bucket tools, `thanos_bucket_ui` (sic, no underscore) for a
    /// global UI view. See [`crate::metrics`](crate#metrics).
    pub metric_prefix: String,
    /// The filters of every pass.
    pub filters: Filters,
    /// Read `no-compact-mark.json` of the blocks in scope into
    /// [`Snapshot::no_compact_marks`] (the compactor); off, the marks are not read.
    pub read_no_compact_marks: bool,
    /// Read `no-downsample-mark.json` into [`Snapshot::no_downsample_marks`] (the compactor).
    pub read_no_downsample_marks: bool,
}

impl Default for FetcherConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            concurrency: 32,
            listing: ListingMode::Recursive,
            metric_prefix: "thanos_".to_owned(),
            filters: Filters::default(),
            read_no_compact_marks: false,
            read_no_downsample_marks: false,
        }
    }
}

/// A block directory without `meta.json`: an upload in progress or aborted, or a deletion in
/// progress (`meta.json` is deleted first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartialBlock {
    /// The newest modification time of any object in the directory (the compactor deletes
    /// aborted uploads untouched for 48h; Thanos falls back to the ULID's time when unknown).
    /// `None` with [`ListingMode::PerDirectory`].
    pub newest_modified: Option<SystemTime>,
    /// Whether the directory holds `deletion-mark.json` (a deletion in progress: the compactor
    /// leaves it to the deleter rather than to the partial-upload cleanup).
    pub has_deletion_mark: bool,
}

/// The outcome of one pass: every block directory of the bucket with its state, the metas that
/// passed every filter, and the marks.
///
/// **Scope.** A block is *in scope* unless the selection filters (time window, relabel
/// selection) exclude it; marks are read only for blocks in scope and for partial blocks, so a
/// sharded compactor never sees (nor deletes) another shard's blocks through the marks.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The metas that passed every filter ([`BlockState::Loaded`]), with the replica labels
    /// removed from their external labels when [`Filters::replica_labels`] is set.
    pub metas: BTreeMap<Ulid, BlockMeta>,
    /// Every block directory of the bucket and the state it ended in.
    pub states: BTreeMap<Ulid, BlockState>,
    /// The blocks hidden as [`BlockState::Duplicate`] (the compactor garbage-collects them).
    pub duplicates: Vec<Ulid>,
    /// The readable deletion marks of every block in scope, whatever its state (also too-fresh,
    /// already past the delay, duplicate) and of every partial block: the compactor deletes
    /// those older than `--delete-delay`.
    pub deletion_marks: BTreeMap<Ulid, DeletionMark>,
    /// The readable no-compact marks of the blocks in scope (only with
    /// [`FetcherConfig::read_no_compact_marks`]).
    pub no_compact_marks: BTreeMap<Ulid, NoCompactMark>,
    /// The readable no-downsample marks of the blocks in scope (only with
    /// [`FetcherConfig::read_no_downsample_marks`]).
    pub no_downsample_marks: BTreeMap<Ulid, NoDownsampleMark>,
    /// The block directories without `meta.json`.
    pub partial: BTreeMap<Ulid, PartialBlock>,
    /// Blocks whose `meta.json` or a mark could not be read this pass (a bucket error): their
    /// state is unknown, so a consumer should keep what it knew (the store gateway keeps them
    /// loaded); they are not in [`Snapshot::metas`].
    pub failed: Vec<Ulid>,
    /// The time the filters were evaluated at.
    pub fetched_at: SystemTime,
}

impl Snapshot {
    /// How many blocks ended in `state`.
    pub fn count(&self, state: BlockState) -> usize {
        self.states.values().filter(|each| **each == state).count()
    }
}

/// A meta as last read: the listing's attributes of `meta.json` then, and the meta or why it is
/// unusable.
#[derive(Debug)]
struct CachedMeta {
    attributes: Option<ObjectAttributes>,
    meta: std::result::Result<BlockMeta, String>,
}

impl CachedMeta {
    /// Whether this copy still answers for a `meta.json` listed with `listed`. Metas are
    /// immutable, but a rewritten one (other size or time) is read again; a corrupted one is kept
    /// only while the listing proves it unchanged.
    fn is_current(&self, listed: Option<ObjectAttributes>) -> bool {
        match (&self.meta, self.attributes, listed) {
            (Ok(_), None, _) | (Ok(_), _, None) => true,
            (_, Some(cached), Some(listed)) => cached == listed,
            (Err(_), _, _) => false,
        }
    }
}

/// What reading one `meta.json` gave.
enum MetaRead {
    Meta { meta: BlockMeta, bytes: Vec<u8> },
    FromDisk(BlockMeta),
    Corrupted(String),
    NotFound,
    Failed(objstore::Error),
}

#[derive(Debug, Default)]
struct Cache {
    metas: HashMap<Ulid, CachedMeta>,
    deletion_marks: MarkCache<DeletionMark>,
    no_compact_marks: MarkCache<NoCompactMark>,
    no_downsample_marks: MarkCache<NoDownsampleMark>,
}

/// Lists a bucket's blocks and filters their metas, as Thanos' meta fetcher; shared by the
/// store gateway, the compactor and bucket web.
///
/// Passes are serialized (a second caller waits for the running pass). Metas are read once and
/// cached in memory and, with [`FetcherConfig::cache_dir`], on disk; marks are read again only
/// when the listing shows them changed. On an unchanged bucket a pass is one listing.
#[derive(Debug)]
pub struct Fetcher {
    bucket: Bucket,
    config: FetcherConfig,
    cache_root: Option<PathBuf>,
    metrics: FetcherMetrics,
    cache: tokio::sync::Mutex<Cache>,
}

fn unix_millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |elapsed| {
        i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
    })
}

impl Fetcher {
    /// A fetcher over `bucket`; registers its metrics on `registry` and creates the disk cache
    /// folder.
    pub fn new(bucket: Bucket, config: FetcherConfig, registry: &Registry) -> Result<Self> {
        let metrics = FetcherMetrics::register(registry, &config.metric_prefix)?;
        let cache_root = match &config.cache_dir {
            Some(dir) => {
                let root = dir.join(disk::META_SYNCER_DIR);
                std::fs::create_dir_all(&root).map_err(|source| Error::CacheDir {
                    path: root.clone(),
                    source,
                })?;
                Some(root)
            }
            None => None,
        };
        Ok(Self {
            bucket,
            config,
            cache_root,
            metrics,
            cache: tokio::sync::Mutex::new(Cache::default()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &FetcherConfig {
        &self.config
    }

    /// One pass at the current time. Fails only when the bucket cannot be listed (counted in
    /// `blocks_meta_sync_failures_total`); the caller's previous snapshot stays valid then.
    pub async fn fetch(&self) -> Result<Snapshot> {
        self.fetch_at(SystemTime::now()).await
    }

    /// One pass with the delays and relative time bounds evaluated at `now`.
    pub async fn fetch_at(&self, now: SystemTime) -> Result<Snapshot> {
        self.metrics.syncs.inc();
        let started = Instant::now();
        let result = self.pass(now).await;
        self.metrics
            .sync_duration
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(snapshot) => self.publish(snapshot),
            Err(error) => {
                self.metrics.sync_failures.inc();
                tracing::warn!(error = %service_core::error_chain(error), "block meta sync failed");
            }
        }
        result
    }

    async fn pass(&self, now: SystemTime) -> Result<Snapshot> {
        let concurrency = self.config.concurrency.max(1);
        let listing = listing::list(&self.bucket, self.config.listing, concurrency)
            .await
            .map_err(|source| Error::List { source })?;
        let mut cache = self.cache.lock().await;
        let now_millis = unix_millis(now);
        let filters = &self.config.filters;
        let mut snapshot = Snapshot {
            metas: BTreeMap::new(),
            states: BTreeMap::new(),
            duplicates: Vec::new(),
            deletion_marks: BTreeMap::new(),
            no_compact_marks: BTreeMap::new(),
            no_downsample_marks: BTreeMap::new(),
            partial: BTreeMap::new(),
            failed: Vec::new(),
            fetched_at: now,
        };

        let metas = self.metas(&mut cache, &listing, &mut snapshot).await;

        // Selection: what is out of scope is not looked at any further.
        let mut in_scope: BTreeMap<Ulid, BlockMeta> = BTreeMap::new();
        for (id, meta) in metas {
            match filter::select(filters, &meta, now_millis) {
                Some(state) => {
                    snapshot.states.insert(id, state);
                }
                None => {
                    in_scope.insert(id, meta);
                }
            }
        }

        self.marks(&mut cache, &listing, &in_scope, &mut snapshot)
            .await;
        for id in &snapshot.failed {
            in_scope.remove(id);
        }

        let mut passing: BTreeMap<Ulid, BlockMeta> = BTreeMap::new();
        for (id, meta) in in_scope {
            let state = if filter::too_fresh(filters, &meta, now_millis) {
                BlockState::TooFresh
            } else if snapshot
                .deletion_marks
                .get(&id)
                .is_some_and(|mark| filter::deletion_delay_passed(filters, mark, now_millis))
            {
                BlockState::MarkedForDeletion
            } else {
                passing.insert(id, meta);
                continue;
            };
            snapshot.states.insert(id, state);
        }

        let removed = filter::remove_replica_labels(&filters.replica_labels, &mut passing);
        self.metrics
            .modified
            .with_label_values(&[metrics::REPLICA_LABEL_REMOVED])
            .set(i64::try_from(removed).unwrap_or(i64::MAX));
        if filters.deduplicate {
            snapshot.duplicates = filter::duplicates(&passing);
            for id in &snapshot.duplicates {
                passing.remove(id);
                snapshot.states.insert(*id, BlockState::Duplicate);
            }
        }
        for id in passing.keys() {
            snapshot.states.insert(*id, BlockState::Loaded);
        }
        snapshot.metas = passing;
        snapshot.failed.sort();

        if let Some(root) = &self.cache_root {
            disk::retain(root.clone(), listing.keys().copied().collect()).await;
        }
        Ok(snapshot)
    }

    /// The metas of the listed directories that have `meta.json`, from the cache or read (at
    /// most `concurrency` at once); records partial, corrupted and failed directories in
    /// `snapshot`.
    async fn metas(
        &self,
        cache: &mut Cache,
        listing: &listing::Listing,
        snapshot: &mut Snapshot,
    ) -> BTreeMap<Ulid, BlockMeta> {
        cache
            .metas
            .retain(|id, _| listing.get(id).is_some_and(|dir| dir.meta.is_some()));
        let mut metas = BTreeMap::new();
        let mut to_read: Vec<(Ulid, Listed, bool)> = Vec::new();
        for (id, dir) in listing {
            let Some(listed) = dir.meta else {
                mark_partial(snapshot, *id, dir);
                continue;
            };
            match cache.metas.get_mut(id) {
                Some(cached) if cached.is_current(listed.attributes) => {
                    if cached.attributes.is_none() {
                        cached.attributes = listed.attributes;
                    }
                    match &cached.meta {
                        Ok(meta) => {
                            metas.insert(*id, meta.clone());
                        }
                        Err(_) => {
                            snapshot.states.insert(*id, BlockState::CorruptedMetaJson);
                        }
                    }
                }
                Some(_) => to_read.push((*id, listed, false)),
                None => to_read.push((*id, listed, true)),
            }
        }
        let reads: Vec<(Ulid, Listed, MetaRead)> = futures_util::stream::iter(to_read)
            .map(|(id, listed, try_disk)| async move {
                (id, listed, self.read_meta(id, try_disk).await)
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        for (id, listed, read) in reads {
            let attributes = listed.attributes;
            match read {
                MetaRead::Meta { meta, bytes } => {
                    if let Some(root) = &self.cache_root {
                        disk::write(root.clone(), id, bytes).await;
                    }
                    cache.metas.insert(
                        id,
                        CachedMeta {
                            attributes,
                            meta: Ok(meta.clone()),
                        },
                    );
                    metas.insert(id, meta);
                }
                MetaRead::FromDisk(meta) => {
                    // The listing's attributes are those of the object the disk copy came from.
                    cache.metas.insert(
                        id,
                        CachedMeta {
                            attributes,
                            meta: Ok(meta.clone()),
                        },
                    );
                    metas.insert(id, meta);
                }
                MetaRead::Corrupted(error) => {
                    tracing::warn!(block = %id, %error, "corrupted meta.json");
                    cache.metas.insert(
                        id,
                        CachedMeta {
                            attributes,
                            meta: Err(error),
                        },
                    );
                    snapshot.states.insert(id, BlockState::CorruptedMetaJson);
                }
                MetaRead::NotFound => {
                    // Deleted between the listing and the read: a deletion in progress.
                    cache.metas.remove(&id);
                    if let Some(dir) = listing.get(&id) {
                        mark_partial(snapshot, id, dir);
                    }
                }
                MetaRead::Failed(error) => {
                    tracing::warn!(block = %id, error = %service_core::error_chain(&error), "read meta.json");
                    snapshot.states.insert(id, BlockState::Failed);
                    snapshot.failed.push(id);
                }
            }
        }
        metas
    }

    /// Reads `id`'s meta from the disk cache (when allowed) or the bucket.
    async fn read_meta(&self, id: Ulid, try_disk: bool) -> MetaRead {
        if try_disk
            && let Some(root) = &self.cache_root
            && let Some(meta) = disk::read(root.clone(), id).await
        {
            return MetaRead::FromDisk(meta);
        }
        let name = format!("{id}/{META_FILENAME}");
        match self.bucket.get(&name).await {
            Ok(bytes) => match BlockMeta::from_json(&bytes, &name) {
                Ok(meta) if meta.ulid == id => MetaRead::Meta {
                    meta,
                    bytes: bytes.to_vec(),
                },
                Ok(meta) => MetaRead::Corrupted(format!("meta.json names block {}", meta.ulid)),
                Err(error) => MetaRead::Corrupted(error.to_string()),
            },
            Err(error) if error.is_not_found() => MetaRead::NotFound,
            Err(error) => MetaRead::Failed(error),
        }
    }

    /// Reads the marks of the blocks in scope (and the deletion marks of partial blocks) into
    /// `snapshot`; a block whose mark cannot be read is [`BlockState::Failed`].
    async fn marks(
        &self,
        cache: &mut Cache,
        listing: &listing::Listing,
        in_scope: &BTreeMap<Ulid, BlockMeta>,
        snapshot: &mut Snapshot,
    ) {
        let concurrency = self.config.concurrency.max(1);
        let listed_in = |pick: fn(&BlockDir) -> Option<Listed>,
                         ids: &mut dyn Iterator<Item = Ulid>| {
            ids.filter_map(|id| {
                let listed = pick(listing.get(&id)?)?;
                Some((id, listed.attributes))
            })
            .collect::<Vec<_>>()
        };
        let deletion_wanted = listed_in(
            |dir| dir.deletion_mark,
            &mut in_scope.keys().chain(snapshot.partial.keys()).copied(),
        );
        let mut unreadable: BTreeSet<Ulid> = BTreeSet::new();
        let (marks, failed) = read_marks(
            &self.bucket,
            &mut cache.deletion_marks,
            deletion_wanted,
            concurrency,
        )
        .await;
        snapshot.deletion_marks = marks;
        unreadable.extend(failed);
        if self.config.read_no_compact_marks {
            let wanted = listed_in(|dir| dir.no_compact_mark, &mut in_scope.keys().copied());
            let (marks, failed) = read_marks(
                &self.bucket,
                &mut cache.no_compact_marks,
                wanted,
                concurrency,
            )
            .await;
            snapshot.no_compact_marks = marks;
            unreadable.extend(failed);
        }
        if self.config.read_no_downsample_marks {
            let wanted = listed_in(|dir| dir.no_downsample_mark, &mut in_scope.keys().copied());
            let (marks, failed) = read_marks(
                &self.bucket,
                &mut cache.no_downsample_marks,
                wanted,
                concurrency,
            )
            .await;
            snapshot.no_downsample_marks = marks;
            unreadable.extend(failed);
        }
        for id in unreadable {
            // A partial block's unreadable deletion mark changes nothing: it stays partial.
            if in_scope.contains_key(&id) {
                snapshot.states.insert(id, BlockState::Failed);
                snapshot.failed.push(id);
            }
        }
    }

    /// Sets the `blocks_meta_synced` gauge from a finished pass.
    fn publish(&self, snapshot: &Snapshot) {
        let mut counts: HashMap<&'static str, i64> = HashMap::new();
        for state in snapshot.states.values() {
            *counts.entry(state.as_str()).or_default() += 1;
        }
        if self.config.read_no_compact_marks {
            let marked = snapshot
                .metas
                .keys()
                .filter(|id| snapshot.no_compact_marks.contains_key(id))
                .count();
            counts.insert(metrics::MARKED_FOR_NO_COMPACT, marked as i64);
        }
        if self.config.read_no_downsample_marks {
            let marked = snapshot
                .metas
                .keys()
                .filter(|id| snapshot.no_downsample_marks.contains_key(id))
                .count();
            counts.insert(metrics::MARKED_FOR_NO_DOWNSAMPLE, marked as i64);
        }
        for state in FetcherMetrics::state_names() {
            self.metrics
                .synced
                .with_label_values(&[state])
                .set(counts.get(state).copied().unwrap_or(0));
        }
    }
}

/// Records a directory without `meta.json`.
fn mark_partial(snapshot: &mut Snapshot, id: Ulid, dir: &BlockDir) {
    snapshot.states.insert(id, BlockState::NoMetaJson);
    snapshot.partial.insert(
        id,
        PartialBlock {
            newest_modified: dir.newest_modified,
            has_deletion_mark: dir.deletion_mark.is_some(),
        },
    );
}
