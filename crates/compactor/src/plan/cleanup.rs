//! Deletion of marked blocks and partial-upload cleanup (garbage collection and the
//! deletion-mark filter are the block-fetcher crate's filters).
//!
//! * **Outdated blocks** (Thanos' duplicate filter plus `GarbageCollect`): the block-fetcher
//!   crate's duplicate filter names them (`Snapshot::duplicates`; of two blocks with equal
//!   sources it keeps the newest, Thanos the oldest) and the driver marks them for deletion with
//!   details [`OUTDATED_BLOCK_DETAILS`].
//! * **Deletion** ([`blocks_due_for_deletion`], Thanos' `BlocksCleaner`): a block whose deletion
//!   mark is older than `--delete-delay` (strictly) is deleted now; 0 deletes at once.
//! * **The deletion-mark filter** (Thanos' `IgnoreDeletionMarkFilter`, delay `--delete-delay`/2)
//!   is the block-fetcher crate's deletion-mark delay.
//! * **Partial uploads** ([`partial_uploads_to_delete`], Thanos'
//!   `BestEffortCleanAbortedPartialUploads`): a block folder without a usable `meta.json` and
//!   without a deletion mark is deleted once the newest of its objects (or, without any
//!   modification time, its ULID time) is more than 48h old.

use tsdb_block::meta::DeletionMark;
use ulid::Ulid;

use super::PARTIAL_UPLOAD_THRESHOLD_AGE_MS;

/// Details of the deletion mark garbage collection writes.
pub const OUTDATED_BLOCK_DETAILS: &str = "outdated block";
/// Details of the deletion mark written on the sources of a compacted block.
pub const COMPACTED_SOURCE_DETAILS: &str = "source of compacted block";

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testing::{id, numbers};
    use crate::plan::{DAY_MS, HOUR_MS};

    const NOW: i64 = 1_000 * DAY_MS;

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
