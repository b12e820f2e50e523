//! Garbage collection, deletion of marked blocks, the deletion-mark filter and partial-upload
//! cleanup.
//!
//! * **Outdated blocks** ([`outdated_blocks`], Thanos' duplicate filter plus `GarbageCollect`): in
//!   each group, a block whose `compaction.sources` are all sources of another block is outdated:
//!   the driver hides it from grouping and marks it for deletion with details
//!   [`OUTDATED_BLOCK_DETAILS`] (unless it is already marked). A block without sources counts as
//!   its own source. Blocks are taken by number of sources (most first), then newest ULID first,
//!   so of two blocks with equal sources the **newest** stays: Thanos keeps the oldest, but this
//!   is the rule of the block-fetcher crate's duplicate filter (what the store gateway serves and
//!   what the fetcher hides), and garbage collection must mark exactly the blocks it hides.
//! * **Deletion** ([`blocks_due_for_deletion`], Thanos' `BlocksCleaner`): a block whose deletion
//!   mark is older than `--delete-delay` (strictly) is deleted now; 0 deletes at once.
//! * **The deletion-mark filter** ([`ignored_deletion_marked`], Thanos'
//!   `IgnoreDeletionMarkFilter` with delay `--delete-delay`/2): the compactor stops seeing a
//!   marked block once its mark is older than half the delete delay. Until then the block stays
//!   visible, so a compaction never plans around a gap whose replacement is not visible yet. The
//!   block-fetcher crate applies this filter itself when given `--delete-delay`/2 as its
//!   deletion-mark delay (its state `marked-for-deletion`); this function is the same rule over
//!   the marks the driver holds, for a driver that filters after fetching instead.
//! * **Partial uploads** ([`partial_uploads_to_delete`], Thanos'
//!   `BestEffortCleanAbortedPartialUploads`): a block folder without a usable `meta.json` and
//!   without a deletion mark is deleted once the newest of its objects (or, without any
//!   modification time, its ULID time) is more than 48h old.

use std::collections::{BTreeMap, HashMap, HashSet};

use tsdb_block::meta::{BlockMeta, DeletionMark};
use ulid::Ulid;

use super::PARTIAL_UPLOAD_THRESHOLD_AGE_MS;
use super::group::block_group_key;

/// Details of the deletion mark garbage collection writes.
pub const OUTDATED_BLOCK_DETAILS: &str = "outdated block";
/// Details of the deletion mark written on the sources of a compacted block.
pub const COMPACTED_SOURCE_DETAILS: &str = "source of compacted block";

/// Blocks whose sources another block of the same group (resolution and replica-less labels)
/// already holds, in ULID order. Pass every block the compactor sees after the deletion-mark
/// filter.
pub fn outdated_blocks<'a>(
    metas: impl IntoIterator<Item = &'a BlockMeta>,
    replica_labels: &[String],
) -> Vec<Ulid> {
    let mut by_group: BTreeMap<String, Vec<&BlockMeta>> = BTreeMap::new();
    for meta in metas {
        by_group
            .entry(block_group_key(meta, replica_labels))
            .or_default()
            .push(meta);
    }
    let mut outdated = Vec::new();
    for (_, group) in by_group {
        let mut members: Vec<(Ulid, HashSet<Ulid>)> = group
            .into_iter()
            .map(|meta| (meta.ulid, own_sources(meta)))
            .collect();
        members.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(b.0.cmp(&a.0)));
        let mut covering: Vec<&HashSet<Ulid>> = Vec::new();
        for (block, sources) in &members {
            if covering.iter().any(|cover| sources.is_subset(cover)) {
                outdated.push(*block);
            } else {
                covering.push(sources);
            }
        }
    }
    outdated.sort();
    outdated
}

/// A block's sources; a block without any is its own source.
fn own_sources(meta: &BlockMeta) -> HashSet<Ulid> {
    if meta.sources().is_empty() {
        HashSet::from([meta.ulid])
    } else {
        meta.sources().iter().copied().collect()
    }
}

/// Whether a deletion mark is older than `delay_ms` at `now_ms` (strictly, as Thanos compares).
fn mark_older_than(mark: &DeletionMark, delay_ms: i64, now_ms: i64) -> bool {
    now_ms.saturating_sub(mark.deletion_time.saturating_mul(1000)) > delay_ms
}

/// Blocks to delete now: their deletion mark is older than `--delete-delay`. In ULID order.
pub fn blocks_due_for_deletion<'a>(
    deletion_marks: impl IntoIterator<Item = &'a DeletionMark>,
    delete_delay_ms: i64,
    now_ms: i64,
) -> Vec<Ulid> {
    let mut due: Vec<Ulid> = deletion_marks
        .into_iter()
        .filter(|mark| mark_older_than(mark, delete_delay_ms, now_ms))
        .map(|mark| mark.id)
        .collect();
    due.sort();
    due.dedup();
    due
}

/// Blocks the compactor no longer sees: their deletion mark is older than half of
/// `--delete-delay`. Remove them from the metas right after fetching.
pub fn ignored_deletion_marked<'a>(
    deletion_marks: impl IntoIterator<Item = &'a DeletionMark>,
    delete_delay_ms: i64,
    now_ms: i64,
) -> HashSet<Ulid> {
    let half_delay_ms = delete_delay_ms / 2;
    deletion_marks
        .into_iter()
        .filter(|mark| mark_older_than(mark, half_delay_ms, now_ms))
        .map(|mark| mark.id)
        .collect()
}

/// What the driver learnt about one block folder of the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockDirState {
    /// The folder's ULID.
    pub id: Ulid,
    /// `meta.json` exists and parses.
    pub has_valid_meta: bool,
    /// `deletion-mark.json` exists (the folder may be mid-delete with `meta.json` already gone).
    pub has_deletion_mark: bool,
    /// The newest `LastModified` of the folder's objects in Unix milliseconds; `None` when the
    /// listing failed or gave no modification time (the ULID time is used instead).
    pub newest_modified_ms: Option<i64>,
}

impl BlockDirState {
    /// The time the folder last changed: its newest object, else its ULID time.
    pub fn last_change_ms(&self) -> i64 {
        self.newest_modified_ms
            .unwrap_or_else(|| i64::try_from(self.id.timestamp_ms()).unwrap_or(i64::MAX))
    }
}

/// Folders of aborted partial uploads to delete now, in ULID order: no usable `meta.json`, no
/// deletion mark, and nothing in them changed for more than 48h.
pub fn partial_uploads_to_delete<'a>(
    dirs: impl IntoIterator<Item = &'a BlockDirState>,
    now_ms: i64,
) -> Vec<Ulid> {
    let mut to_delete: Vec<Ulid> = dirs
        .into_iter()
        .filter(|dir| !dir.has_valid_meta && !dir.has_deletion_mark)
        .filter(|dir| now_ms.saturating_sub(dir.last_change_ms()) > PARTIAL_UPLOAD_THRESHOLD_AGE_MS)
        .map(|dir| dir.id)
        .collect();
    to_delete.sort();
    to_delete
}

/// Removes the given blocks from `metas` (e.g. the ignored and outdated ones) and returns them.
pub fn remove_blocks(metas: &mut Vec<BlockMeta>, blocks: &HashSet<Ulid>) -> Vec<BlockMeta> {
    let (removed, kept): (Vec<BlockMeta>, Vec<BlockMeta>) = std::mem::take(metas)
        .into_iter()
        .partition(|meta| blocks.contains(&meta.ulid));
    *metas = kept;
    removed
}

/// Deletion marks keyed by block, for callers that fetched them as a list.
pub fn deletion_marks_by_block(marks: Vec<DeletionMark>) -> HashMap<Ulid, DeletionMark> {
    marks.into_iter().map(|mark| (mark.id, mark)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testing::{MetaExt, id, meta, numbers};
    use crate::plan::{DAY_MS, HOUR_MS};

    const NOW: i64 = 1_000 * DAY_MS;

    #[test]
    fn blocks_whose_sources_another_block_holds_are_outdated() {
        let metas = vec![
            meta(1, 0, 20).sources(&[1]),
            meta(2, 20, 40).sources(&[2]),
            meta(3, 0, 40).sources(&[1, 2]),
            meta(4, 40, 60).sources(&[4]),
            // Same sources as 3 with a newer ULID: 5 stays, 3 is outdated.
            meta(5, 0, 40).sources(&[1, 2]),
            // Sources 2 and 4 are held together by no other block: kept (and it holds 4).
            meta(6, 20, 60).sources(&[2, 4]),
        ];
        assert_eq!(numbers(&outdated_blocks(&metas, &[])), vec![1, 2, 3, 4]);
        // A block without sources is its own source: not outdated by an unrelated block.
        let sourceless = vec![meta(7, 0, 20).sources(&[]), meta(8, 0, 40).sources(&[1, 2])];
        assert!(outdated_blocks(&sourceless, &[]).is_empty());
    }

    #[test]
    fn outdated_blocks_are_found_within_a_group_only() {
        let replicas = vec!["replica".to_owned()];
        let metas = vec![
            meta(1, 0, 20)
                .sources(&[1])
                .labels(&[("cluster", "a"), ("replica", "0")]),
            meta(2, 0, 20).sources(&[1, 2]).labels(&[("cluster", "b")]),
            meta(3, 0, 20)
                .sources(&[1])
                .res(300_000)
                .labels(&[("cluster", "a")]),
            meta(4, 0, 20)
                .sources(&[1, 5])
                .labels(&[("cluster", "a"), ("replica", "1")]),
        ];
        // Other labels and other resolutions never outdate a block; replicas are one group once
        // the replica label is removed.
        assert_eq!(numbers(&outdated_blocks(&metas, &replicas)), vec![1]);
        assert_eq!(numbers(&outdated_blocks(&metas, &[])), Vec::<u64>::new());
    }

    fn mark(n: u64, age_ms: i64) -> DeletionMark {
        DeletionMark::new(id(n), (NOW - age_ms) / 1000, "")
    }

    #[test]
    fn marked_blocks_are_deleted_after_the_delete_delay() {
        let delay = 48 * HOUR_MS;
        let marks = [
            mark(1, delay + 1000),
            mark(2, delay),
            mark(3, HOUR_MS),
            mark(4, 30 * DAY_MS),
        ];
        assert_eq!(
            numbers(&blocks_due_for_deletion(&marks, delay, NOW)),
            vec![1, 4]
        );
        // A delay of 0 deletes every block marked before now.
        assert_eq!(
            numbers(&blocks_due_for_deletion(&marks, 0, NOW)),
            vec![1, 2, 3, 4]
        );
        assert!(blocks_due_for_deletion(&[mark(5, 0)], 0, NOW).is_empty());
    }

    #[test]
    fn the_compactor_ignores_marked_blocks_after_half_the_delay() {
        let delay = 48 * HOUR_MS;
        let marks = [
            mark(1, 24 * HOUR_MS + 1000),
            mark(2, 24 * HOUR_MS),
            mark(3, HOUR_MS),
        ];
        let ignored = ignored_deletion_marked(&marks, delay, NOW);
        assert_eq!(ignored, [id(1)].into());
        let mut metas = vec![meta(1, 0, 20), meta(2, 20, 40), meta(3, 40, 60)];
        let removed = remove_blocks(&mut metas, &ignored);
        assert_eq!(numbers(removed.iter().map(|m| &m.ulid)), vec![1]);
        assert_eq!(numbers(metas.iter().map(|m| &m.ulid)), vec![2, 3]);
        assert_eq!(deletion_marks_by_block(marks.to_vec()).len(), 3);
    }

    #[test]
    fn partial_uploads_go_once_every_object_is_48h_old() {
        let threshold = PARTIAL_UPLOAD_THRESHOLD_AGE_MS;
        let dir = |n: u64, newest: Option<i64>| BlockDirState {
            id: id(n),
            has_valid_meta: false,
            has_deletion_mark: false,
            newest_modified_ms: newest,
        };
        let dirs = [
            dir(1, Some(NOW - threshold - 1)),
            dir(2, Some(NOW - threshold)),
            dir(3, Some(NOW - HOUR_MS)),
            BlockDirState {
                has_valid_meta: true,
                ..dir(4, Some(NOW - 10 * threshold))
            },
            BlockDirState {
                has_deletion_mark: true,
                ..dir(5, Some(NOW - 10 * threshold))
            },
        ];
        assert_eq!(numbers(&partial_uploads_to_delete(&dirs, NOW)), vec![1]);
        // Without modification times the ULID time counts: id(n) has timestamp n ms.
        let old_ulid = BlockDirState {
            id: Ulid::from_parts((NOW - threshold - 1) as u64, 7),
            has_valid_meta: false,
            has_deletion_mark: false,
            newest_modified_ms: None,
        };
        let young_ulid = BlockDirState {
            id: Ulid::from_parts((NOW - threshold) as u64, 7),
            ..old_ulid
        };
        assert_eq!(
            partial_uploads_to_delete(&[old_ulid, young_ulid], NOW),
            vec![old_ulid.id]
        );
        // A new object in an old folder keeps it.
        let touched = BlockDirState {
            newest_modified_ms: Some(NOW - HOUR_MS),
            ..old_ulid
        };
        assert!(partial_uploads_to_delete(&[touched], NOW).is_empty());
    }
}
