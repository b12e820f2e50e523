//! Thanos' compaction planner (`pkg/compact/planner.go`, Prometheus' leveled planner run on bucket
//! metas) with its two wrappers, the index-size guard and the vertical-compaction downsample
//! filter, and the group checks Thanos makes before compacting.
//!
//! [`plan_group`] decides one step for one group, in this order:
//! 1. With vertical compaction off, blocks that overlap in time (no-compact-marked blocks left
//!    out) are a [`GroupProblem`]: Thanos halts the whole compactor there; we report the problem
//!    for this group only, with the way out, and the driver goes on with the other groups.
//! 2. The leveled planner ([`leveled_plan`]):
//!    * Drop no-compact-marked blocks and return the **first** contiguous cluster of overlapping
//!      blocks, if any (vertical compaction).
//!    * Otherwise hold back the newest block (greatest `minTime`), so a freshly uploaded block
//!      is never compacted at once. For each range above the smallest (2h, 8h, 2d, 14d by
//!      default) split the rest into aligned windows `[R·⌊minT/R⌋, +R]`, skipping a block that
//!      crosses its window's end, and take the first window that has no `compaction.failed`
//!      block, holds at least 2 blocks, and either spans exactly R or ends at or before the
//!      `minTime` of the newest block still considered (the held-back block's successor in
//!      age, as in Thanos' and Prometheus' code and tests, not the held-back block itself).
//!      No-compact-marked blocks split a window into runs without gaps; the first run of 2 or
//!      more blocks is the plan.
//!    * Otherwise, walking from the newest not-marked block (the held-back one excepted), the
//!      first block spanning at least the middle range (8h) whose
//!      tombstones exceed 5 % of its series (`numTombstones / (numSeries + 1) > 0.05`) is
//!      rewritten alone; the walk stops at the first shorter block.
//! 3. The index-size guard: adding up the planned blocks' index sizes in plan order, once the
//!    running total reaches 85 % of `--compact.block-max-index-size`, the largest block seen so
//!    far is to be marked no-compact (`index-size-exceeding`) and the group planned again.
//! 4. With vertical compaction on, every downsampled block of a plan holding overlapping blocks is
//!    to be marked no-compact (`downsample-vertical-compaction`, thanos#6775) and the group
//!    planned again.
//! 5. Blocks of the plan sharing a `compaction.sources` entry: with vertical compaction off a
//!    [`GroupProblem`] (a Thanos halt), otherwise a warning carried by the plan.
//!
//! After the merge, [`output_overlaps`] is Thanos' last check: with vertical compaction off the
//! new block must not overlap the group's other blocks.

use std::collections::{HashMap, HashSet};
use std::fmt;

use tsdb_block::meta::{BlockDesc, BlockMeta, no_compact_reason};
use ulid::Ulid;

use super::COMPACTION_RANGES;
use super::group::Group;

/// Default of the hidden `--compact.block-max-index-size` (64GB, which Thanos parses as 64 GiB).
pub const DEFAULT_BLOCK_MAX_INDEX_SIZE: u64 = 64 << 30;
/// Share of `--compact.block-max-index-size` the planned indexes may add up to (15 % headroom for
/// the bloat of a compacted index).
pub const INDEX_SIZE_HEADROOM: f64 = 0.85;
/// Tombstones per series (plus one) above which a large block is rewritten on its own.
const TOMBSTONE_RATIO: f64 = 0.05;

/// The planner's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannerConfig {
    /// Compaction ranges in milliseconds, smallest first ([`COMPACTION_RANGES`] cut at
    /// `--debug.max-compaction-level`, see [`super::validate::compaction_ranges`]).
    pub ranges: Vec<i64>,
    /// `--compact.block-max-index-size` in bytes.
    pub max_index_size_bytes: u64,
    /// Vertical compaction: `--compact.enable-vertical-compaction`, forced on by
    /// `--deduplication.replica-label`.
    pub vertical_compaction: bool,
}

impl Default for PlannerConfig {
    /// Thanos' defaults: all five ranges, 64 GiB, no vertical compaction.
    fn default() -> Self {
        Self {
            ranges: COMPACTION_RANGES.to_vec(),
            max_index_size_bytes: DEFAULT_BLOCK_MAX_INDEX_SIZE,
            vertical_compaction: false,
        }
    }
}

/// What to do next with a group.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanOutcome {
    /// Nothing to compact in this group now; it may be downsampled.
    Nothing,
    /// Compact these blocks into one.
    Compact(CompactionPlan),
    /// Write a no-compact mark for each of these blocks, add them to the no-compact set and call
    /// [`plan_group`] again.
    MarkNoCompact(Vec<NoCompactDecision>),
    /// The index size of these planned blocks is neither in their `thanos.files` nor in the
    /// `index_sizes` given: look up the size of `<id>/index` in the bucket and plan again.
    NeedIndexSizes(Vec<Ulid>),
    /// The group cannot be compacted until an operator acts; log it at error level every pass,
    /// count it in a metric and go on with the other groups.
    Problem(GroupProblem),
}

/// A compaction to run.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactionPlan {
    /// The blocks to merge, sorted by `minTime`. One block alone is a tombstone rewrite.
    pub blocks: Vec<BlockMeta>,
    /// Some of the blocks overlap in time: a vertical compaction (count it in
    /// `thanos_compact_group_vertical_compactions_total`).
    pub overlapping: bool,
    /// Sources found in more than one planned block; only possible with vertical compaction on,
    /// where Thanos logs them as a warning and compacts anyway.
    pub repeated_sources: Vec<Ulid>,
}

impl CompactionPlan {
    /// The planned blocks' ULIDs, in plan order.
    pub fn ids(&self) -> Vec<Ulid> {
        self.blocks.iter().map(|meta| meta.ulid).collect()
    }
}

/// A no-compact mark to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoCompactDecision {
    /// The block to mark.
    pub block: Ulid,
    /// The mark's `reason`, one of [`no_compact_reason`].
    pub reason: &'static str,
    /// The mark's `details`.
    pub details: String,
}

/// Why a group cannot be compacted, with the blocks concerned and the way out. Its `Display`
/// says what is wrong (naming the blocks); [`GroupProblem::remedy`] says the way out.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupProblem {
    /// The group's key.
    pub group_key: String,
    /// What is wrong.
    pub kind: GroupProblemKind,
}

/// The kinds of [`GroupProblem`].
#[derive(Debug, Clone, PartialEq)]
pub enum GroupProblemKind {
    /// Blocks overlap in time while vertical compaction is off; each cluster lists blocks that
    /// overlap one another (no-compact-marked blocks are not part of the check).
    OverlappingBlocks {
        /// Clusters of overlapping blocks, each sorted by `minTime`.
        clusters: Vec<Vec<BlockDesc>>,
    },
    /// Planned blocks share compaction sources while vertical compaction is off: merging them
    /// would duplicate those sources' data.
    OverlappingSources {
        /// The planned blocks.
        plan: Vec<Ulid>,
        /// The sources found in more than one of them.
        sources: Vec<Ulid>,
    },
    /// The block a compaction produced overlaps blocks of the group outside the plan while
    /// vertical compaction is off (see [`output_overlaps`]); it must not be uploaded.
    OutputOverlaps {
        /// The compacted block.
        output: BlockDesc,
        /// The group's blocks it overlaps.
        others: Vec<BlockDesc>,
    },
}

impl GroupProblem {
    /// A short label for metrics and log fields: `overlapping-blocks` or `overlapping-sources`.
    pub fn kind_label(&self) -> &'static str {
        match self.kind {
            GroupProblemKind::OverlappingBlocks { .. } => "overlapping-blocks",
            GroupProblemKind::OverlappingSources { .. } => "overlapping-sources",
            GroupProblemKind::OutputOverlaps { .. } => "output-overlaps",
        }
    }

    /// The blocks concerned.
    pub fn blocks(&self) -> Vec<Ulid> {
        match &self.kind {
            GroupProblemKind::OverlappingBlocks { clusters } => {
                clusters.iter().flatten().map(|block| block.ulid).collect()
            }
            GroupProblemKind::OverlappingSources { plan, .. } => plan.clone(),
            GroupProblemKind::OutputOverlaps { output, others } => std::iter::once(output)
                .chain(others)
                .map(|block| block.ulid)
                .collect(),
        }
    }

    /// How an operator resolves it.
    pub fn remedy(&self) -> &'static str {
        match self.kind {
            GroupProblemKind::OverlappingBlocks { .. } => {
                "enable vertical compaction (--compact.enable-vertical-compaction, or name the \
                 replica labels with --deduplication.replica-label) to merge them, or mark one \
                 block of each overlap with no-compact-mark.json (it is then left alone) or \
                 deletion-mark.json (if its data is also elsewhere)"
            }
            GroupProblemKind::OverlappingSources { .. } => {
                "enable vertical compaction (--compact.enable-vertical-compaction) to merge them \
                 with de-duplication, or mark for deletion the block whose sources the other one \
                 already holds, or mark one of them with no-compact-mark.json"
            }
            GroupProblemKind::OutputOverlaps { .. } => {
                "the compacted block was not uploaded; look for a block uploaded into the \
                 compacted time range meanwhile and mark it with no-compact-mark.json or \
                 deletion-mark.json, or enable vertical compaction"
            }
        }
    }
}

fn describe_blocks(blocks: &[BlockDesc]) -> String {
    let blocks: Vec<String> = blocks
        .iter()
        .map(|block| format!("{} [{}, {})", block.ulid, block.min_time, block.max_time))
        .collect();
    format!("[{}]", blocks.join(", "))
}

impl fmt::Display for GroupProblem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            GroupProblemKind::OverlappingBlocks { clusters } => {
                let clusters: Vec<String> = clusters
                    .iter()
                    .map(|cluster| describe_blocks(cluster))
                    .collect();
                write!(
                    formatter,
                    "group {} has blocks overlapping in time and vertical compaction is off: {}",
                    self.group_key,
                    clusters.join("; ")
                )?;
            }
            GroupProblemKind::OverlappingSources { plan, sources } => {
                let join = |ids: &[Ulid]| {
                    ids.iter()
                        .map(Ulid::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                write!(
                    formatter,
                    "group {} planned blocks [{}] that share compaction sources [{}] and vertical \
                     compaction is off",
                    self.group_key,
                    join(plan),
                    join(sources)
                )?;
            }
            GroupProblemKind::OutputOverlaps { output, others } => {
                write!(
                    formatter,
                    "group {}: the compacted block {} overlaps blocks outside the plan {} and \
                     vertical compaction is off",
                    self.group_key,
                    describe_blocks(std::slice::from_ref(output)),
                    describe_blocks(others)
                )?;
            }
        }
        write!(
            formatter,
            "; the group is not compacted until this is resolved, other groups go on"
        )
    }
}

impl std::error::Error for GroupProblem {}

/// The index size recorded in a meta's `thanos.files`, if positive.
pub fn index_size_from_meta(meta: &BlockMeta) -> Option<u64> {
    let thanos = meta.thanos.as_ref()?;
    let file = thanos.files.iter().find(|file| file.rel_path == "index")?;
    u64::try_from(file.size_bytes).ok().filter(|size| *size > 0)
}

/// Blocks whose meta does not record an index size: the driver may look these up in advance
/// (Thanos looks up only planned blocks, see [`PlanOutcome::NeedIndexSizes`]).
pub fn blocks_missing_index_size<'a>(metas: impl IntoIterator<Item = &'a BlockMeta>) -> Vec<Ulid> {
    metas
        .into_iter()
        .filter(|meta| index_size_from_meta(meta).is_none())
        .map(|meta| meta.ulid)
        .collect()
}

/// Plans one step for `group`. `no_compact` holds the blocks with a no-compact mark (including
/// marks written on this planner's request); `index_sizes` holds index sizes looked up in the
/// bucket for blocks whose meta lacks one. See the module docs for the rules.
pub fn plan_group(
    group: &Group,
    no_compact: &HashSet<Ulid>,
    index_sizes: &HashMap<Ulid, u64>,
    config: &PlannerConfig,
) -> PlanOutcome {
    let sorted = sorted_by_min_time(&group.metas);
    if sorted.len() < 2 {
        return PlanOutcome::Nothing;
    }
    if !config.vertical_compaction {
        let unmarked: Vec<&BlockMeta> = sorted
            .iter()
            .copied()
            .filter(|meta| !no_compact.contains(&meta.ulid))
            .collect();
        let clusters = overlap_clusters(&unmarked);
        if !clusters.is_empty() {
            return PlanOutcome::Problem(GroupProblem {
                group_key: group.key.clone(),
                kind: GroupProblemKind::OverlappingBlocks {
                    clusters: clusters
                        .iter()
                        .map(|cluster| cluster.iter().map(|meta| describe(meta)).collect())
                        .collect(),
                },
            });
        }
    }
    let plan = leveled_plan(&sorted, no_compact, &config.ranges);
    if plan.is_empty() {
        return PlanOutcome::Nothing;
    }
    if let Some(outcome) = check_index_sizes(&plan, index_sizes, config.max_index_size_bytes) {
        return outcome;
    }
    let overlapping = !select_overlapping(&plan).is_empty();
    if config.vertical_compaction && overlapping {
        let downsampled: Vec<NoCompactDecision> = plan
            .iter()
            .filter(|meta| meta.resolution() != 0)
            .map(|meta| NoCompactDecision {
                block: meta.ulid,
                reason: no_compact_reason::DOWNSAMPLE_VERTICAL_COMPACTION,
                details: "downsampled blocks cannot be compacted vertically, see \
                          https://github.com/thanos-io/thanos/issues/6775"
                    .to_owned(),
            })
            .collect();
        if !downsampled.is_empty() {
            return PlanOutcome::MarkNoCompact(downsampled);
        }
    }
    let repeated_sources = repeated_sources(&plan);
    if !repeated_sources.is_empty() && !config.vertical_compaction {
        return PlanOutcome::Problem(GroupProblem {
            group_key: group.key.clone(),
            kind: GroupProblemKind::OverlappingSources {
                plan: plan.iter().map(|meta| meta.ulid).collect(),
                sources: repeated_sources,
            },
        });
    }
    PlanOutcome::Compact(CompactionPlan {
        blocks: plan.into_iter().cloned().collect(),
        overlapping,
        repeated_sources,
    })
}

/// Thanos' check after a compaction (a halt there): with vertical compaction off, the compacted
/// block `output` must not overlap any block of `group` outside `plan`. `None` when it does not
/// (or vertical compaction is on); otherwise do not upload it.
pub fn output_overlaps(
    group: &Group,
    plan: &CompactionPlan,
    output: &BlockDesc,
    vertical_compaction: bool,
) -> Option<GroupProblem> {
    if vertical_compaction {
        return None;
    }
    let planned: HashSet<Ulid> = plan.blocks.iter().map(|meta| meta.ulid).collect();
    let others: Vec<BlockDesc> = sorted_by_min_time(&group.metas)
        .into_iter()
        .filter(|meta| !planned.contains(&meta.ulid))
        .filter(|meta| meta.min_time < output.max_time && output.min_time < meta.max_time)
        .map(describe)
        .collect();
    if others.is_empty() {
        return None;
    }
    Some(GroupProblem {
        group_key: group.key.clone(),
        kind: GroupProblemKind::OutputOverlaps {
            output: output.clone(),
            others,
        },
    })
}

/// The index-size guard: `None` when the plan stays under the limit.
fn check_index_sizes(
    plan: &[&BlockMeta],
    index_sizes: &HashMap<Ulid, u64>,
    max_index_size_bytes: u64,
) -> Option<PlanOutcome> {
    let mut sizes = Vec::with_capacity(plan.len());
    let mut missing = Vec::new();
    for meta in plan {
        match index_size_from_meta(meta).or_else(|| index_sizes.get(&meta.ulid).copied()) {
            Some(size) => sizes.push(size),
            None => missing.push(meta.ulid),
        }
    }
    if !missing.is_empty() {
        return Some(PlanOutcome::NeedIndexSizes(missing));
    }
    // Go converts the product to int64, dropping the fraction.
    let threshold = (max_index_size_bytes as f64 * INDEX_SIZE_HEADROOM) as u64;
    let mut total: u64 = 0;
    let mut biggest: Option<(usize, u64)> = None;
    for (position, size) in sizes.iter().copied().enumerate() {
        if biggest.is_none_or(|(_, biggest_size)| biggest_size < size) {
            biggest = Some((position, size));
        }
        total = total.saturating_add(size);
        if total >= threshold {
            let (biggest_position, _) = biggest.unwrap_or((position, size));
            return Some(PlanOutcome::MarkNoCompact(vec![NoCompactDecision {
                block: plan[biggest_position].ulid,
                reason: no_compact_reason::INDEX_SIZE_EXCEEDING,
                details: format!(
                    "the planned compaction's total index size could exceed \
                     --compact.block-max-index-size ({max_index_size_bytes} bytes) with this \
                     block, see https://github.com/thanos-io/thanos/issues/1424"
                ),
            }]));
        }
    }
    None
}

/// Sources present in more than one block of the plan, in the order they are met.
fn repeated_sources(plan: &[&BlockMeta]) -> Vec<Ulid> {
    let mut seen = HashSet::new();
    let mut repeated = Vec::new();
    for meta in plan {
        for source in meta.sources() {
            if !seen.insert(*source) && !repeated.contains(source) {
                repeated.push(*source);
            }
        }
    }
    repeated
}

fn describe(meta: &BlockMeta) -> BlockDesc {
    BlockDesc {
        ulid: meta.ulid,
        min_time: meta.min_time,
        max_time: meta.max_time,
    }
}

/// References to `metas` sorted by `minTime`, then ULID.
pub(crate) fn sorted_by_min_time(metas: &[BlockMeta]) -> Vec<&BlockMeta> {
    let mut sorted: Vec<&BlockMeta> = metas.iter().collect();
    sorted.sort_by(|a, b| a.min_time.cmp(&b.min_time).then(a.ulid.cmp(&b.ulid)));
    sorted
}

/// Thanos' `tsdbBasedPlanner.plan` over metas sorted by `minTime`: the blocks to compact next
/// (empty for none). No index-size guard, no group checks: the backlog simulation uses it as is.
pub fn leveled_plan<'a>(
    sorted: &[&'a BlockMeta],
    no_compact: &HashSet<Ulid>,
    ranges: &[i64],
) -> Vec<&'a BlockMeta> {
    let Some(newest) = sorted.last() else {
        return Vec::new();
    };
    let mut not_excluded: Vec<&BlockMeta> = sorted
        .iter()
        .copied()
        .filter(|meta| !no_compact.contains(&meta.ulid))
        .collect();
    let overlapping = select_overlapping(&not_excluded);
    if !overlapping.is_empty() {
        return overlapping;
    }
    // Hold back the newest block: it may have just been uploaded.
    if !no_compact.contains(&newest.ulid) {
        not_excluded.pop();
    }
    let considered = &sorted[..sorted.len() - 1];
    let selected = select_windows(ranges, no_compact, considered);
    if !selected.is_empty() {
        return selected;
    }
    let Some(middle_range) = ranges.get(ranges.len() / 2) else {
        return Vec::new();
    };
    for meta in not_excluded.iter().rev() {
        if meta.max_time.saturating_sub(meta.min_time) < *middle_range {
            break;
        }
        let ratio = meta.stats.num_tombstones as f64 / (meta.stats.num_series as f64 + 1.0);
        if ratio > TOMBSTONE_RATIO {
            return vec![*meta];
        }
    }
    Vec::new()
}

/// Thanos' `selectMetas`: the first qualifying aligned window of the ranges above the smallest.
fn select_windows<'a>(
    ranges: &[i64],
    no_compact: &HashSet<Ulid>,
    sorted: &[&'a BlockMeta],
) -> Vec<&'a BlockMeta> {
    let (Some(last), true) = (sorted.last(), ranges.len() >= 2) else {
        return Vec::new();
    };
    let high_time = last.min_time;
    for range in &ranges[1..] {
        for window in split_by_range(sorted, *range) {
            if window.iter().any(|meta| meta.compaction.failed) || window.len() < 2 {
                continue;
            }
            let min_time = window[0].min_time;
            let max_time = window[window.len() - 1].max_time;
            // Take a window that spans the full range (gaps allowed) or ends before the newest
            // block considered: another block of the same size may still arrive otherwise.
            if max_time - min_time != *range && max_time > high_time {
                continue;
            }
            // No-compact-marked blocks split the window into runs without gaps.
            let mut run_start = 0;
            for (position, meta) in window.iter().enumerate() {
                if !no_compact.contains(&meta.ulid) {
                    continue;
                }
                if position - run_start > 1 {
                    return window[run_start..position].to_vec();
                }
                run_start = position + 1;
            }
            if window.len() - run_start > 1 {
                return window[run_start..].to_vec();
            }
        }
    }
    Vec::new()
}

/// Thanos' `splitByRange`: consecutive blocks falling into the same window
/// `[range·⌊minT/range⌋, +range]`. A block that crosses the end of its own window is skipped.
pub(crate) fn split_by_range<'a>(sorted: &[&'a BlockMeta], range: i64) -> Vec<Vec<&'a BlockMeta>> {
    let mut windows = Vec::new();
    let mut index = 0;
    while index < sorted.len() {
        let first = sorted[index];
        let window_end = range
            .saturating_mul(first.min_time.div_euclid(range))
            .saturating_add(range);
        if first.max_time > window_end {
            index += 1;
            continue;
        }
        let mut window = Vec::new();
        while index < sorted.len() && sorted[index].max_time <= window_end {
            window.push(sorted[index]);
            index += 1;
        }
        if !window.is_empty() {
            windows.push(window);
        }
    }
    windows
}

/// Thanos' `selectOverlappingMetas`: the **first** cluster of blocks overlapping in time (sorted
/// by `minTime`), or nothing.
pub(crate) fn select_overlapping<'a>(sorted: &[&'a BlockMeta]) -> Vec<&'a BlockMeta> {
    overlap_clusters(sorted)
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// Every cluster of blocks overlapping in time: a block joins the cluster while its `minTime` is
/// before the greatest `maxTime` seen so far.
pub(crate) fn overlap_clusters<'a>(sorted: &[&'a BlockMeta]) -> Vec<Vec<&'a BlockMeta>> {
    let mut clusters = Vec::new();
    let Some(first) = sorted.first() else {
        return clusters;
    };
    let mut current: Vec<&BlockMeta> = vec![first];
    let mut running_max = first.max_time;
    for meta in &sorted[1..] {
        if meta.min_time < running_max {
            current.push(meta);
        } else {
            if current.len() > 1 {
                clusters.push(std::mem::take(&mut current));
            }
            current = vec![meta];
        }
        running_max = running_max.max(meta.max_time);
    }
    if current.len() > 1 {
        clusters.push(current);
    }
    clusters
}

#[cfg(test)]
mod tests;
