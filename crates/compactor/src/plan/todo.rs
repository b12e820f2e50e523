//! The backlog gauges: `thanos_compact_todo_compactions`, `_todo_compaction_blocks`,
//! `_todo_downsample_blocks` and `_todo_deletion_blocks` (no labels, as on Thanos' main).
//!
//! Compactions are counted as Thanos' progress calculator does: the leveled planner (no-compact
//! marks honoured, no index-size guard, no group checks) runs on each group again and again, each
//! plan's blocks being replaced by one merged block (time range and sources of the inputs, level
//! one higher, no tombstones), until it plans nothing. Downsampling counts the current candidates
//! (no-downsample-marked blocks left out, unlike Thanos). Deletion counts the blocks retention
//! would mark now (held-back blocks left out, see [`super::retention`]).

use std::collections::{BTreeSet, HashSet};

use tsdb_block::meta::{BlockDesc, BlockMeta, BlockMetaCompaction, ThanosMeta, source};
use ulid::Ulid;

use super::candidates::{Coverage, downsample_candidates};
use super::group::Group;
use super::planner::{leveled_plan, sorted_by_min_time};
use super::retention::{Retention, apply_retention};

/// Simulated compactions per group stop here, whatever happens (a safety net: each plan
/// shrinks the group or rewrites a block without tombstones, so the simulation ends anyway).
const MAX_SIMULATED_COMPACTIONS: u64 = 100_000;
/// Timestamp part of the ULIDs of simulated blocks (the largest a ULID holds).
const SIMULATED_ULID_TIME: u64 = (1 << 48) - 1;

/// The four backlog figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// `thanos_compact_todo_compactions`: compactions left.
    pub compactions: u64,
    /// `thanos_compact_todo_compaction_blocks`: input blocks of those compactions.
    pub compaction_blocks: u64,
    /// `thanos_compact_todo_downsample_blocks`: blocks to downsample.
    pub downsample_blocks: u64,
    /// `thanos_compact_todo_deletion_blocks`: blocks past retention to mark.
    pub deletion_blocks: u64,
}

/// What [`backlog`] needs.
#[derive(Debug, Clone, Copy)]
pub struct BacklogInput<'a> {
    /// All groups (see [`super::group::group_blocks`]).
    pub groups: &'a [Group],
    /// Blocks with a no-compact mark.
    pub no_compact: &'a HashSet<Ulid>,
    /// Blocks with a no-downsample mark.
    pub no_downsample: &'a HashSet<Ulid>,
    /// Blocks already marked for deletion.
    pub marked_for_deletion: &'a HashSet<Ulid>,
    /// Compaction ranges, see [`super::validate::compaction_ranges`].
    pub ranges: &'a [i64],
    /// Retention per resolution.
    pub retention: Retention,
    /// Downsampling on (no `--downsampling.disable`); off, the downsampling figure is 0.
    pub downsampling_enabled: bool,
    /// The time, Unix milliseconds.
    pub now_ms: i64,
}

/// Computes all four figures.
pub fn backlog(input: &BacklogInput<'_>) -> Backlog {
    let (compactions, compaction_blocks) =
        compaction_backlog(input.groups, input.no_compact, input.ranges);
    let all_metas = || input.groups.iter().flat_map(|group| group.metas.iter());
    let coverage = Coverage::from_metas(all_metas());
    let downsample_blocks = if input.downsampling_enabled {
        downsample_candidates(all_metas(), &coverage, input.no_downsample).len() as u64
    } else {
        0
    };
    let retention = apply_retention(
        all_metas(),
        &input.retention,
        input.downsampling_enabled,
        &coverage,
        input.no_downsample,
        input.marked_for_deletion,
        input.now_ms,
    );
    Backlog {
        compactions,
        compaction_blocks,
        downsample_blocks,
        deletion_blocks: retention.expired.len() as u64,
    }
}

/// Compactions left and their input blocks over all groups, simulated as described in the module
/// docs.
pub fn compaction_backlog(
    groups: &[Group],
    no_compact: &HashSet<Ulid>,
    ranges: &[i64],
) -> (u64, u64) {
    let mut compactions = 0;
    let mut blocks = 0;
    for group in groups {
        let (group_compactions, group_blocks) = simulate_group(group, no_compact, ranges);
        compactions += group_compactions;
        blocks += group_blocks;
    }
    (compactions, blocks)
}

fn simulate_group(group: &Group, no_compact: &HashSet<Ulid>, ranges: &[i64]) -> (u64, u64) {
    let mut metas = group.metas.clone();
    let mut compactions = 0;
    let mut blocks = 0;
    while metas.len() > 1 && compactions < MAX_SIMULATED_COMPACTIONS {
        let merged = {
            let sorted = sorted_by_min_time(&metas);
            let plan = leveled_plan(&sorted, no_compact, ranges);
            if plan.is_empty() {
                break;
            }
            blocks += plan.len() as u64;
            merge_metas(
                &plan,
                group,
                Ulid::from_parts(SIMULATED_ULID_TIME, u128::from(compactions)),
            )
        };
        compactions += 1;
        let planned: HashSet<Ulid> = merged.compaction.parents.iter().map(|p| p.ulid).collect();
        metas.retain(|meta| !planned.contains(&meta.ulid));
        if metas.is_empty() {
            break;
        }
        metas.push(merged);
    }
    (compactions, blocks)
}

/// The meta a compaction of `plan` would produce, as Prometheus' `CompactBlockMetas` makes it:
/// the union of time ranges and sources, level one above the highest, the inputs as parents.
fn merge_metas(plan: &[&BlockMeta], group: &Group, ulid: Ulid) -> BlockMeta {
    let min_time = plan
        .iter()
        .map(|meta| meta.min_time)
        .min()
        .unwrap_or_default();
    let max_time = plan
        .iter()
        .map(|meta| meta.max_time)
        .max()
        .unwrap_or_default();
    let level = plan
        .iter()
        .map(|meta| meta.compaction.level)
        .max()
        .unwrap_or_default()
        + 1;
    let sources: BTreeSet<Ulid> = plan
        .iter()
        .flat_map(|meta| meta.sources().iter().copied())
        .collect();
    let mut merged = BlockMeta::new(ulid, min_time, max_time);
    merged.compaction = BlockMetaCompaction {
        level,
        sources: sources.into_iter().collect(),
        parents: plan
            .iter()
            .map(|meta| BlockDesc {
                ulid: meta.ulid,
                min_time: meta.min_time,
                max_time: meta.max_time,
            })
            .collect(),
        ..BlockMetaCompaction::default()
    };
    merged.thanos = Some(ThanosMeta::new(
        group.labels.clone(),
        group.resolution,
        source::COMPACTOR,
    ));
    merged
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::plan::testing::{MetaExt, id, meta};
    use crate::plan::{COMPACTION_RANGES, DAY_MS, HOUR_MS, RESOLUTION_5M};

    fn group(metas: Vec<BlockMeta>) -> Group {
        let mut metas = metas;
        crate::plan::group::sort_by_min_time(&mut metas);
        Group {
            key: "0@1".to_owned(),
            resolution: 0,
            labels: BTreeMap::new(),
            metas,
        }
    }

    fn two_hour_blocks(count: u64) -> Vec<BlockMeta> {
        two_hour_blocks_from(0, count)
    }

    /// `count` consecutive 2h blocks `id(1)…` from `base` (a multiple of 8h).
    fn two_hour_blocks_from(base: i64, count: u64) -> Vec<BlockMeta> {
        (1..=count)
            .map(|n| {
                let start = base + (n as i64 - 1) * 2 * HOUR_MS;
                meta(n, start, start + 2 * HOUR_MS)
            })
            .collect()
    }

    #[test]
    fn compactions_are_simulated_until_the_planner_stops() {
        // Nine 2h blocks (18h): 8h windows [0,8) and [8,16) are compacted (4 blocks each); then
        // the two 8h blocks and the 2h block [16,18) wait for the 2d window (the newest is held
        // back and the window is not full).
        let groups = vec![group(two_hour_blocks(9))];
        assert_eq!(
            compaction_backlog(&groups, &HashSet::new(), &COMPACTION_RANGES),
            (2, 8)
        );
        // 25 blocks = 50h: six 8h windows (24 blocks), then the 2d window of the six 8h blocks.
        let groups = vec![group(two_hour_blocks(25))];
        assert_eq!(
            compaction_backlog(&groups, &HashSet::new(), &COMPACTION_RANGES),
            (7, 30)
        );
        // A no-compact mark in the first window leaves a run of 3 there.
        let marks: HashSet<Ulid> = [id(1)].into();
        let groups = vec![group(two_hour_blocks(9))];
        assert_eq!(
            compaction_backlog(&groups, &marks, &COMPACTION_RANGES),
            (2, 7)
        );
        // Groups add up; a single-block group counts nothing.
        let groups = vec![
            group(two_hour_blocks(9)),
            group(two_hour_blocks(5)),
            group(two_hour_blocks(1)),
        ];
        assert_eq!(
            compaction_backlog(&groups, &HashSet::new(), &COMPACTION_RANGES),
            (3, 12)
        );
    }

    #[test]
    fn merged_metas_carry_range_sources_level_and_parents() {
        let first = meta(1, 0, 10).sources(&[1, 5]);
        let second = meta(2, 10, 30).sources(&[2, 5]);
        let g = group(vec![first.clone(), second.clone()]);
        let merged = merge_metas(&[&first, &second], &g, id(99));
        assert_eq!((merged.min_time, merged.max_time), (0, 30));
        assert_eq!(merged.compaction.level, 2);
        assert_eq!(merged.compaction.sources, vec![id(1), id(2), id(5)]);
        assert_eq!(merged.compaction.parents.len(), 2);
        assert_eq!(merged.resolution(), 0);
    }

    #[test]
    fn backlog_counts_all_four_figures() {
        let old = 100 * DAY_MS;
        let now = 200 * DAY_MS;
        // Recent 2h blocks: one 8h compaction to do, not past retention.
        let mut blocks = two_hour_blocks_from(now - 5 * DAY_MS, 5);
        // A long raw block, old: past retention but waiting for downsampling.
        blocks.push(meta(20, old - 3 * DAY_MS, old - DAY_MS).sources(&[20]));
        // A raw block covered by a 5m block: past retention, to be marked.
        blocks.push(meta(21, old - 5 * DAY_MS, old - 3 * DAY_MS).sources(&[21]));
        let raw = group(blocks);
        let five = Group {
            key: "300000@1".to_owned(),
            resolution: RESOLUTION_5M,
            labels: BTreeMap::new(),
            metas: vec![
                meta(30, old - 5 * DAY_MS, old - 3 * DAY_MS)
                    .res(RESOLUTION_5M)
                    .sources(&[21]),
            ],
        };
        let groups = vec![raw, five];
        let empty = HashSet::new();
        let input = BacklogInput {
            groups: &groups,
            no_compact: &empty,
            no_downsample: &empty,
            marked_for_deletion: &empty,
            ranges: &COMPACTION_RANGES,
            retention: Retention {
                raw_ms: 30 * DAY_MS,
                five_minutes_ms: 0,
                one_hour_ms: 0,
            },
            downsampling_enabled: true,
            now_ms: now,
        };
        let figures = backlog(&input);
        assert_eq!(figures.downsample_blocks, 1, "block 20");
        assert_eq!(figures.deletion_blocks, 1, "block 21; 20 is held back");
        assert_eq!((figures.compactions, figures.compaction_blocks), (1, 4));
        assert_eq!(
            (figures.compactions, figures.compaction_blocks),
            compaction_backlog(&groups, &empty, &COMPACTION_RANGES)
        );
        let no_downsample: HashSet<Ulid> = [id(20)].into();
        let marked = backlog(&BacklogInput {
            no_downsample: &no_downsample,
            ..input
        });
        assert_eq!(marked.downsample_blocks, 0);
        assert_eq!(marked.deletion_blocks, 2, "no longer held back");
        let off = backlog(&BacklogInput {
            downsampling_enabled: false,
            ..input
        });
        assert_eq!((off.downsample_blocks, off.deletion_blocks), (0, 2));
    }
}
