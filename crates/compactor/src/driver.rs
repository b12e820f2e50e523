//! The compactor's loop: Thanos' iteration (fetch → delete due blocks → garbage-collect →
//! compact every group, one plan per group per pass, until no group has work → retention →
//! partial-upload cleanup), with three differences Thanos users asked for:
//!
//! - a group whose blocks need an operator (overlaps with vertical compaction off, a corrupt
//!   block, out-of-order chunks) stops *that group only*: it is logged at error level on every
//!   pass naming the blocks and the way out, counted in `thanos_compact_group_problem` and
//!   `thanos_compact_halted`, and the other groups go on;
//! - a group is downsampled as soon as it has nothing left to compact, not after the whole
//!   bucket's backlog;
//! - blocks marked for deletion are never planned, so a compaction whose result was empty, or a
//!   block past retention, is not picked up again.
//!
//! Crash safety comes from the order of steps: a new block is uploaded with `meta.json` last,
//! then its sources are marked for deletion. A kill in between leaves the sources as duplicates
//! of the new block (hidden by the fetcher's duplicate filter, garbage-collected next pass); a kill
//! before `meta.json` leaves a partial upload, invisible and cleaned after 48h.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use block_fetcher::{Fetcher, Snapshot};
use futures_util::{StreamExt, TryStreamExt};
use objstore::Bucket;
use tsdb_block::meta::{BlockDesc, BlockMeta, DeletionMark, NoCompactMark, no_compact_reason};
use ulid::Ulid;

use crate::blocks;
use crate::downsample::downsample_block;
use crate::error::{Error, Result};
use crate::merge::{BlockProblem, DedupFunc, MergeError, MergeOptions, merge_blocks};
use crate::metrics::Metrics;
use crate::plan::{
    self, CompactionPlan, Coverage, Group, GroupProblem, PlanOutcome, PlannerConfig, Retention,
};
use crate::web::BlockView;

/// What the driver needs from the flags.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) data_dir: PathBuf,
    pub(crate) delete_delay: Duration,
    pub(crate) replica_labels: Vec<String>,
    pub(crate) planner: PlannerConfig,
    pub(crate) dedup: DedupFunc,
    pub(crate) retention: Retention,
    pub(crate) downsampling: bool,
    pub(crate) compact_concurrency: usize,
    pub(crate) fetch_concurrency: usize,
    pub(crate) downsample_concurrency: usize,
    pub(crate) hash_func: String,
    pub(crate) skip_out_of_order: bool,
    pub(crate) halt_on_error: bool,
}

/// Why a group is stopped, as logged and exported.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stopped {
    /// The `problem` label value.
    kind: &'static str,
    /// The error line: what is wrong, with which blocks, and the way out.
    message: String,
}

/// The compactor's state across passes.
#[derive(Debug)]
pub(crate) struct Driver {
    bucket: Bucket,
    fetcher: Fetcher,
    settings: Settings,
    metrics: Metrics,
    loaded: Arc<BlockView>,
    stopped: Mutex<BTreeMap<String, Stopped>>,
    index_sizes: Mutex<HashMap<Ulid, u64>>,
}

/// What one group did in a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GroupOutcome {
    /// It compacted, downsampled or wrote marks: plan again next pass.
    Worked,
    /// Nothing to do (or stopped).
    Idle,
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

fn now_seconds() -> i64 {
    now_millis() / 1000
}

fn resolution_label(resolution: i64) -> String {
    resolution.to_string()
}

impl Driver {
    pub(crate) fn new(
        bucket: Bucket,
        fetcher: Fetcher,
        settings: Settings,
        metrics: Metrics,
        loaded: Arc<BlockView>,
    ) -> Self {
        Self {
            bucket,
            fetcher,
            settings,
            metrics,
            loaded,
            stopped: Mutex::new(BTreeMap::new()),
            index_sizes: Mutex::new(HashMap::new()),
        }
    }

    async fn fetch(&self) -> Result<Snapshot> {
        let snapshot = self
            .fetcher
            .fetch()
            .await
            .map_err(|error| Error::Fetch(Box::new(error)))?;
        self.loaded.set(snapshot.metas.values().cloned());
        Ok(snapshot)
    }

    /// One iteration: passes until no group has work, then retention and partial-upload cleanup.
    pub(crate) async fn iteration(&self) -> Result<()> {
        let mut pass = 0u64;
        let mut changed = false;
        let snapshot = loop {
            pass += 1;
            let snapshot = self.fetch().await?;
            self.delete_due(&snapshot).await;
            self.collect_garbage(&snapshot).await?;
            let outcome = self.compaction_pass(&snapshot).await?;
            self.update_backlog(&snapshot);
            if outcome == GroupOutcome::Idle {
                break snapshot;
            }
            changed = true;
            tracing::debug!(pass, "compaction pass did work, planning again");
        };
        // An idle pass leaves the bucket as it found it, so its snapshot serves retention too:
        // an iteration over an unchanged bucket costs one listing.
        let snapshot = if changed || !snapshot.duplicates.is_empty() {
            self.fetch().await?
        } else {
            snapshot
        };
        self.apply_retention(&snapshot).await?;
        self.clean_partial_uploads(&snapshot).await;
        self.update_backlog(&snapshot);
        self.metrics.iterations.inc();
        let stopped = self.stopped_groups();
        if !self.settings.halt_on_error && !stopped.is_empty() {
            return Err(Error::GroupsStopped(stopped.join("; ")));
        }
        Ok(())
    }

    /// The background cleanup (`--compact.cleanup-interval`): due deletions and partial uploads.
    pub(crate) async fn cleanup(&self) -> Result<()> {
        let snapshot = self.fetch().await?;
        self.delete_due(&snapshot).await;
        self.clean_partial_uploads(&snapshot).await;
        self.metrics.cleanup_loops.inc();
        Ok(())
    }

    fn stopped_groups(&self) -> Vec<String> {
        self.stopped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(group, stopped)| format!("group {group}: {}", stopped.message))
            .collect()
    }

    /// Deletes the blocks whose deletion mark is older than `--delete-delay`.
    async fn delete_due(&self, snapshot: &Snapshot) {
        let due = plan::blocks_due_for_deletion(
            snapshot.deletion_marks.values(),
            i64::try_from(self.settings.delete_delay.as_millis()).unwrap_or(i64::MAX),
            now_millis(),
        );
        for id in due {
            self.delete_block(id, "deletion mark older than --delete-delay")
                .await;
        }
    }

    async fn delete_block(&self, id: Ulid, why: &str) {
        match blocks::delete(&self.bucket, id).await {
            Ok(()) => {
                self.metrics.blocks_cleaned.inc();
                tracing::info!(block = %id, why, "deleted block");
            }
            Err(error) => {
                self.metrics.block_cleanup_failures.inc();
                tracing::warn!(block = %id, error = %service_core::error_chain(&error), "delete block");
            }
        }
    }

    /// Marks for deletion the blocks another block covers (Thanos' garbage collection).
    async fn collect_garbage(&self, snapshot: &Snapshot) -> Result<()> {
        let started = Instant::now();
        self.metrics.garbage_collections.inc();
        for id in &snapshot.duplicates {
            if snapshot.deletion_marks.contains_key(id) {
                continue;
            }
            if let Err(error) = self
                .mark_for_deletion(*id, plan::cleanup::OUTDATED_BLOCK_DETAILS)
                .await
            {
                self.metrics.garbage_collection_failures.inc();
                return Err(error);
            }
            self.metrics.garbage_collected_blocks.inc();
        }
        self.metrics
            .garbage_collection_duration
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    async fn mark_for_deletion(&self, id: Ulid, details: &str) -> Result<()> {
        if blocks::mark(&self.bucket, &DeletionMark::new(id, now_seconds(), details)).await? {
            self.metrics.marked("deletion-mark.json", "");
            tracing::info!(block = %id, details, "marked block for deletion");
        }
        Ok(())
    }

    async fn mark_no_compact(&self, id: Ulid, reason: &str, details: &str) -> Result<()> {
        let mark = NoCompactMark::new(id, now_seconds(), reason, details);
        if blocks::mark(&self.bucket, &mark).await? {
            self.metrics.marked("no-compact-mark.json", reason);
            tracing::warn!(block = %id, reason, details, "marked block no-compact");
        }
        Ok(())
    }

    /// The blocks the planner may use: loaded and not marked for deletion.
    fn plannable(snapshot: &Snapshot) -> Vec<BlockMeta> {
        snapshot
            .metas
            .values()
            .filter(|meta| !snapshot.deletion_marks.contains_key(&meta.ulid))
            .cloned()
            .collect()
    }

    /// One pass over every group, `--compact.concurrency` at a time.
    async fn compaction_pass(&self, snapshot: &Snapshot) -> Result<GroupOutcome> {
        let groups = plan::group_blocks(Self::plannable(snapshot), &self.settings.replica_labels);
        let coverage = Coverage::from_metas(snapshot.metas.values());
        let no_compact: HashSet<Ulid> = snapshot.no_compact_marks.keys().copied().collect();
        let no_downsample: HashSet<Ulid> = snapshot.no_downsample_marks.keys().copied().collect();
        let keys: HashSet<String> = groups.iter().map(|group| group.key.clone()).collect();
        self.forget_stopped_groups_except(&keys);
        let outcomes: Vec<GroupOutcome> = futures_util::stream::iter(groups)
            .map(|group| self.work_group(group, &coverage, &no_compact, &no_downsample))
            .buffer_unordered(self.settings.compact_concurrency.max(1))
            .try_collect()
            .await?;
        self.export_stopped();
        Ok(if outcomes.contains(&GroupOutcome::Worked) {
            GroupOutcome::Worked
        } else {
            GroupOutcome::Idle
        })
    }

    fn forget_stopped_groups_except(&self, keys: &HashSet<String>) {
        self.stopped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|key, _| keys.contains(key));
    }

    fn set_stopped(&self, group: &str, stopped: Option<Stopped>) {
        let mut map = self
            .stopped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match stopped {
            Some(stopped) => {
                tracing::error!(
                    group,
                    problem = stopped.kind,
                    "group stopped: {}",
                    stopped.message
                );
                map.insert(group.to_owned(), stopped);
            }
            None => {
                map.remove(group);
            }
        }
    }

    fn export_stopped(&self) {
        let map = self
            .stopped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.metrics.group_problems.reset();
        for (group, stopped) in map.iter() {
            self.metrics
                .group_problems
                .with_label_values(&[group.as_str(), stopped.kind])
                .set(1);
        }
        self.metrics.halted.set(i64::from(!map.is_empty()));
    }

    /// Plans and runs one step of `group`; downsamples it when it has nothing left to compact.
    async fn work_group(
        &self,
        group: Group,
        coverage: &Coverage,
        no_compact: &HashSet<Ulid>,
        no_downsample: &HashSet<Ulid>,
    ) -> Result<GroupOutcome> {
        let resolution = resolution_label(group.resolution);
        self.metrics
            .compaction_runs_started
            .with_label_values(&[&resolution])
            .inc();
        let mut no_compact = no_compact.clone();
        let outcome = loop {
            let index_sizes = self
                .index_sizes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            match plan::plan_group(&group, &no_compact, &index_sizes, &self.settings.planner) {
                PlanOutcome::Nothing => break GroupOutcome::Idle,
                PlanOutcome::MarkNoCompact(decisions) => {
                    for decision in decisions {
                        self.mark_no_compact(decision.block, decision.reason, &decision.details)
                            .await?;
                        no_compact.insert(decision.block);
                    }
                }
                PlanOutcome::NeedIndexSizes(ids) => self.fetch_index_sizes(&ids).await?,
                PlanOutcome::Problem(problem) => {
                    self.set_stopped(&group.key, Some(problem_stop(&problem)));
                    return Ok(GroupOutcome::Idle);
                }
                PlanOutcome::Compact(plan) => {
                    let worked = self.compact(&group, plan).await?;
                    self.metrics
                        .compaction_runs_completed
                        .with_label_values(&[&resolution])
                        .inc();
                    return Ok(worked);
                }
            }
        };
        self.set_stopped(&group.key, None);
        self.metrics
            .compaction_runs_completed
            .with_label_values(&[&resolution])
            .inc();
        // Retention and downsampling of a group wait only for that group's compactions.
        let expired = self
            .retain(group.metas.iter(), coverage, no_downsample, &HashSet::new())
            .await?;
        let outcome = if expired {
            GroupOutcome::Worked
        } else {
            outcome
        };
        if !self.settings.downsampling {
            return Ok(outcome);
        }
        let candidates = plan::downsample_candidates(group.metas.iter(), coverage, no_downsample);
        let by_id: HashMap<Ulid, &BlockMeta> =
            group.metas.iter().map(|meta| (meta.ulid, meta)).collect();
        let worked: Vec<bool> = futures_util::stream::iter(candidates)
            .filter_map(|candidate| {
                let meta = by_id.get(&candidate.block).map(|meta| (*meta).clone());
                async move { meta.map(|meta| (meta, candidate.target_resolution)) }
            })
            .map(|(meta, target)| self.downsample(meta, target))
            .buffer_unordered(self.settings.downsample_concurrency.max(1))
            .try_collect()
            .await?;
        Ok(if worked.contains(&true) {
            GroupOutcome::Worked
        } else {
            outcome
        })
    }

    async fn fetch_index_sizes(&self, ids: &[Ulid]) -> Result<()> {
        for id in ids {
            let name = format!("{id}/index");
            let attributes = self
                .bucket
                .attributes(&name)
                .await
                .map_err(|source| Error::bucket(format!("size of {name}"), source))?;
            self.index_sizes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(*id, attributes.size);
        }
        Ok(())
    }

    /// Downloads, merges and uploads one plan; marks its sources for deletion.
    async fn compact(&self, group: &Group, plan: CompactionPlan) -> Result<GroupOutcome> {
        let started = Instant::now();
        let resolution = resolution_label(group.resolution);
        let ids = plan.ids();
        tracing::info!(group = %group.key, blocks = ?ids, overlapping = plan.overlapping, "compaction planned");
        let work_dir = self.settings.data_dir.join("compact").join(&group.key);
        prepare_work_dir(&work_dir, &ids)?;
        let sources: Vec<PathBuf> = futures_util::stream::iter(ids.iter().copied())
            .map(|id| blocks::download(&self.bucket, id, &work_dir))
            .buffered(self.settings.fetch_concurrency.max(1))
            .try_collect()
            .await?;
        let options = MergeOptions {
            dedup: self.settings.dedup,
            labels: group.labels.clone(),
            resolution: group.resolution,
        };
        let out_dir = work_dir.clone();
        let merge_sources = sources.clone();
        let merged =
            tokio::task::spawn_blocking(move || merge_blocks(&merge_sources, &out_dir, &options))
                .await
                .map_err(|error| Error::Task {
                    what: "merge",
                    message: error.to_string(),
                })?;
        let merged = match merged {
            Ok(merged) => merged,
            Err(error) => {
                self.metrics
                    .compaction_failures
                    .with_label_values(&[&resolution])
                    .inc();
                return self.merge_failed(group, &ids, error).await;
            }
        };
        let details = match &merged {
            Some(merged) => format!(
                "{} {}",
                plan::cleanup::COMPACTED_SOURCE_DETAILS,
                merged.meta.ulid
            ),
            None => "compaction of these blocks yielded no samples".to_owned(),
        };
        if let Some(merged) = &merged {
            // Thanos' last check: with vertical compaction off the output must not overlap the
            // group's other blocks; such an output is never uploaded.
            let output = BlockDesc {
                ulid: merged.meta.ulid,
                min_time: merged.meta.min_time,
                max_time: merged.meta.max_time,
            };
            if let Some(problem) = plan::output_overlaps(
                group,
                &plan,
                &output,
                self.settings.planner.vertical_compaction,
            ) {
                blocks::remove_dir_if_present(&merged.dir)?;
                self.metrics
                    .compaction_failures
                    .with_label_values(&[&resolution])
                    .inc();
                self.set_stopped(&group.key, Some(problem_stop(&problem)));
                return Ok(GroupOutcome::Idle);
            }
        }
        if let Some(merged) = merged {
            let id = merged.meta.ulid;
            blocks::upload(
                &self.bucket,
                &merged.dir,
                merged.meta,
                &self.settings.hash_func,
            )
            .await?;
            self.metrics
                .compactions
                .with_label_values(&[&resolution])
                .inc();
            if plan.overlapping {
                self.metrics
                    .vertical_compactions
                    .with_label_values(&[&resolution])
                    .inc();
            }
            tracing::info!(
                group = %group.key,
                block = %id,
                sources = ?ids,
                duration_ms = started.elapsed().as_millis() as u64,
                "compacted blocks"
            );
            blocks::remove_dir_if_present(&merged.dir)?;
        } else {
            tracing::info!(group = %group.key, sources = ?ids, "compaction yielded no samples; marking the sources for deletion");
        }
        for id in &ids {
            self.mark_for_deletion(*id, &details).await?;
        }
        if self.settings.delete_delay.is_zero() {
            for id in &ids {
                self.delete_block(*id, "compacted, --delete-delay=0").await;
            }
        }
        for source in &sources {
            blocks::remove_dir_if_present(source)?;
        }
        Ok(GroupOutcome::Worked)
    }

    /// A merge that failed because of a source block stops the group (or marks the block
    /// no-compact with `--compact.skip-block-with-out-of-order-chunks`); an output error is
    /// retried next pass.
    async fn merge_failed(
        &self,
        group: &Group,
        ids: &[Ulid],
        error: MergeError,
    ) -> Result<GroupOutcome> {
        let message = service_core::error_chain(&error);
        match error {
            MergeError::BadBlock {
                block,
                problem: BlockProblem::OutOfOrderChunks,
                ..
            } if self.settings.skip_out_of_order => {
                self.mark_no_compact(block, no_compact_reason::OUT_OF_ORDER_CHUNK, &message)
                    .await?;
                Ok(GroupOutcome::Worked)
            }
            MergeError::BadBlock { block, problem, .. } => {
                let way_out = match problem {
                    BlockProblem::OutOfOrderChunks => {
                        "run with --compact.skip-block-with-out-of-order-chunks, or mark the block \
                         no-compact (thanos tools bucket mark --marker=no-compact-mark.json)"
                    }
                    _ => {
                        "mark the block no-compact (thanos tools bucket mark \
                         --marker=no-compact-mark.json) or for deletion if its data is expendable"
                    }
                };
                self.set_stopped(
                    &group.key,
                    Some(Stopped {
                        kind: problem_label(problem),
                        message: format!(
                            "compaction of {ids:?} failed on block {block}: {message}; way out: {way_out}"
                        ),
                    }),
                );
                Ok(GroupOutcome::Idle)
            }
            other => Err(Error::Merge(Box::new(other))),
        }
    }

    /// Downloads, downsamples and uploads one block. A bad source block is logged and counted
    /// and skipped (Thanos exits on it, #267, #5272); bucket errors are retried.
    async fn downsample(&self, meta: BlockMeta, target: i64) -> Result<bool> {
        let started = Instant::now();
        let resolution = resolution_label(meta.resolution());
        let id = meta.ulid;
        self.metrics
            .downsamples
            .with_label_values(&[&resolution])
            .inc();
        let work_dir = self.settings.data_dir.join("downsample");
        prepare_work_dir(&work_dir, &[id])?;
        let source = match blocks::download(&self.bucket, id, &work_dir).await {
            Ok(source) => source,
            Err(error) => {
                self.metrics.downsample_failed(&resolution);
                return Err(error);
            }
        };
        let out_dir = work_dir.clone();
        let source_dir = source.clone();
        let result =
            tokio::task::spawn_blocking(move || downsample_block(&source_dir, &out_dir, target))
                .await
                .map_err(|error| Error::Task {
                    what: "downsample",
                    message: error.to_string(),
                })?;
        let downsampled = match result {
            Ok(downsampled) => downsampled,
            Err(error) => {
                self.metrics.downsample_failed(&resolution);
                tracing::error!(
                    block = %id,
                    resolution = target,
                    error = %service_core::error_chain(&error),
                    "downsampling failed; the block is skipped (mark it no-downsample to silence this)"
                );
                blocks::remove_dir_if_present(&source)?;
                return Ok(false);
            }
        };
        if let Some(downsampled) = downsampled {
            let new_id = downsampled.meta.ulid;
            if let Err(error) = blocks::upload(
                &self.bucket,
                &downsampled.dir,
                downsampled.meta,
                &self.settings.hash_func,
            )
            .await
            {
                self.metrics.downsample_failed(&resolution);
                return Err(error);
            }
            blocks::remove_dir_if_present(&downsampled.dir)?;
            tracing::info!(from = %id, to = %new_id, resolution = target, duration_ms = started.elapsed().as_millis() as u64, "downsampled block");
        }
        self.metrics
            .downsample_duration
            .with_label_values(&[&resolution])
            .observe(started.elapsed().as_secs_f64());
        blocks::remove_dir_if_present(&source)?;
        Ok(true)
    }

    /// Marks the blocks past their resolution's retention for deletion (the whole bucket, at the
    /// end of an iteration).
    async fn apply_retention(&self, snapshot: &Snapshot) -> Result<()> {
        let coverage = Coverage::from_metas(snapshot.metas.values());
        let no_downsample: HashSet<Ulid> = snapshot.no_downsample_marks.keys().copied().collect();
        let marked: HashSet<Ulid> = snapshot.deletion_marks.keys().copied().collect();
        self.retain(snapshot.metas.values(), &coverage, &no_downsample, &marked)
            .await?;
        Ok(())
    }

    /// Marks those of `metas` past their resolution's retention for deletion, except blocks
    /// still waiting for their downsampled copy; returns whether it marked any.
    async fn retain<'a>(
        &self,
        metas: impl IntoIterator<Item = &'a BlockMeta>,
        coverage: &Coverage,
        no_downsample: &HashSet<Ulid>,
        marked: &HashSet<Ulid>,
    ) -> Result<bool> {
        let decision = plan::apply_retention(
            metas,
            &self.settings.retention,
            self.settings.downsampling,
            coverage,
            no_downsample,
            marked,
            now_millis(),
        );
        for held in &decision.held_back {
            tracing::info!(block = %held.block, resolution = held.resolution, awaiting = held.awaiting_resolution, "past retention but kept until its downsampled copy exists");
        }
        let any = !decision.expired.is_empty();
        for expired in decision.expired {
            self.mark_for_deletion(expired.block, &expired.details())
                .await?;
        }
        Ok(any)
    }

    /// Deletes block directories without `meta.json` untouched for 48h.
    async fn clean_partial_uploads(&self, snapshot: &Snapshot) {
        let dirs: Vec<plan::BlockDirState> = snapshot
            .partial
            .iter()
            .map(|(id, partial)| plan::BlockDirState {
                id: *id,
                has_valid_meta: false,
                has_deletion_mark: partial.has_deletion_mark,
                newest_modified_ms: partial.newest_modified.and_then(|time| {
                    time.duration_since(UNIX_EPOCH)
                        .ok()
                        .and_then(|elapsed| i64::try_from(elapsed.as_millis()).ok())
                }),
            })
            .collect();
        for id in plan::partial_uploads_to_delete(dirs.iter(), now_millis()) {
            self.metrics.partial_deletion_attempts.inc();
            self.delete_block(id, "partial upload untouched for 48h")
                .await;
        }
    }

    fn update_backlog(&self, snapshot: &Snapshot) {
        let groups = plan::group_blocks(Self::plannable(snapshot), &self.settings.replica_labels);
        let no_compact: HashSet<Ulid> = snapshot.no_compact_marks.keys().copied().collect();
        let no_downsample: HashSet<Ulid> = snapshot.no_downsample_marks.keys().copied().collect();
        let marked: HashSet<Ulid> = snapshot.deletion_marks.keys().copied().collect();
        let backlog = plan::backlog(&plan::todo::BacklogInput {
            groups: &groups,
            no_compact: &no_compact,
            no_downsample: &no_downsample,
            marked_for_deletion: &marked,
            ranges: &self.settings.planner.ranges,
            retention: self.settings.retention,
            downsampling_enabled: self.settings.downsampling,
            now_ms: now_millis(),
        });
        let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.metrics
            .todo_compactions
            .set(gauge(backlog.compactions));
        self.metrics
            .todo_compaction_blocks
            .set(gauge(backlog.compaction_blocks));
        self.metrics
            .todo_downsample_blocks
            .set(gauge(backlog.downsample_blocks));
        self.metrics
            .todo_deletion_blocks
            .set(gauge(backlog.deletion_blocks));
    }
}

fn problem_stop(problem: &GroupProblem) -> Stopped {
    Stopped {
        kind: problem.kind_label(),
        message: format!(
            "{problem}; blocks {:?}; way out: {}",
            problem.blocks(),
            problem.remedy()
        ),
    }
}

fn problem_label(problem: BlockProblem) -> &'static str {
    match problem {
        BlockProblem::OutOfOrderChunks => "out-of-order-chunks",
        BlockProblem::OverlappingChunks => "overlapping-chunks",
        BlockProblem::Corrupt => "corrupt-block",
        BlockProblem::Unreadable => "unreadable-block",
    }
}

/// Creates `dir` and removes whatever it holds besides complete copies of `keep` (a previous
/// pass may have left blocks it no longer plans, or a download or output cut short).
fn prepare_work_dir(dir: &Path, keep: &[Ulid]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::local(dir, source))?;
    let keep: HashSet<String> = keep.iter().map(Ulid::to_string).collect();
    let entries = std::fs::read_dir(dir).map_err(|source| Error::local(dir, source))?;
    for entry in entries {
        let entry = entry.map_err(|source| Error::local(dir, source))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !keep.contains(&name) {
            blocks::remove_dir_if_present(&entry.path())?;
        }
    }
    Ok(())
}
