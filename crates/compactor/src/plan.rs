//! Decisions over block metas and marks: which blocks form a compaction group, what the planner
//! compacts next, which blocks to downsample, expire, garbage-collect or delete, which partial
//! uploads to clean up, and how much work is left. Pure functions: no I/O, no bucket access, no
//! clock (the caller passes `now` in Unix milliseconds), so every rule is unit-tested on metas.
//!
//! **How the driver uses this module, in Thanos' order, each pass:**
//! 1. Fetch metas and marks through block-fetcher: blocks whose deletion mark is older than
//!    `--delete-delay`/2 are not seen (Thanos' `IgnoreDeletionMarkFilter`), nor are duplicates
//!    (Thanos' duplicate filter). Mark the latter for deletion (garbage collection, details
//!    [`cleanup::OUTDATED_BLOCK_DETAILS`]) unless already marked.
//! 2. Delete the blocks [`cleanup::blocks_due_for_deletion`] names (`--delete-delay` passed).
//! 3. [`group::group_blocks`] the rest; for every group with more than one block call
//!    [`planner::plan_group`] and act on its [`planner::PlanOutcome`]: compact, write the no-compact
//!    marks it asks for and plan again, fetch index sizes it asks for and plan again, or log the
//!    [`planner::GroupProblem`] at error level (and count it in a metric) and go on with the other
//!    groups. A group whose outcome is [`planner::PlanOutcome::Nothing`] can be downsampled at once
//!    ([`candidates::downsample_candidates`] over its metas) instead of waiting for every other
//!    group's compaction backlog.
//! 4. Retention ([`retention::apply_retention`]) and partial-upload cleanup
//!    ([`cleanup::partial_uploads_to_delete`]).
//! 5. Backlog gauges from [`todo::backlog`].
//!
//! Flags are checked once at startup with [`validate::validate_flags`], which also yields the
//! planner's compaction ranges.
//!
//! **Where we differ from Thanos, on purpose:** overlaps inside a group (vertical compaction off)
//! and overlapping `compaction.sources` in a plan are [`planner::GroupProblem`] values for that
//! group, not a process-wide halt (thanos#469, #4778, #6389); no-compact-marked blocks are left
//! out of the overlap check (thanos#5603); retention holds back blocks that still wait to be
//! downsampled (thanos#783, #5664); a no-downsample mark keeps a block from being downsampled but
//! its sources still count as covered; the downsampling backlog leaves no-downsample-marked
//! blocks out.

pub mod candidates;
pub mod cleanup;
pub mod group;
pub mod planner;
pub mod retention;
pub mod todo;
pub mod validate;

pub use candidates::{Coverage, DownsampleCandidate, downsample_candidates};
pub use cleanup::{BlockDirState, blocks_due_for_deletion, partial_uploads_to_delete};
pub use group::{Group, group_blocks, group_key, labels_hash, strip_replica_labels};
pub use planner::{
    CompactionPlan, GroupProblem, GroupProblemKind, NoCompactDecision, PlanOutcome, PlannerConfig,
    output_overlaps, plan_group,
};
pub use retention::{Retention, RetentionDecision, apply_retention};
pub use todo::{Backlog, backlog};
pub use validate::{CompactorFlags, FlagError, ValidatedFlags, validate_flags};

/// Raw (not downsampled) resolution, in milliseconds.
pub const RESOLUTION_RAW: i64 = 0;
/// The 5-minute downsampling resolution, in milliseconds.
pub const RESOLUTION_5M: i64 = 5 * MINUTE_MS;
/// The 1-hour downsampling resolution, in milliseconds.
pub const RESOLUTION_1H: i64 = HOUR_MS;

/// A raw block is downsampled to 5m once it spans at least this long (40h, Thanos'
/// `ResLevel1DownsampleRange`).
pub const DOWNSAMPLE_RANGE_5M: i64 = 40 * HOUR_MS;
/// A 5m block is downsampled to 1h once it spans at least this long (10d, Thanos'
/// `ResLevel2DownsampleRange`).
pub const DOWNSAMPLE_RANGE_1H: i64 = 10 * DAY_MS;

/// Thanos' compaction ranges 1h, 2h, 8h, 2d, 14d; `--debug.max-compaction-level` (default 4)
/// keeps the first `level + 1` of them (see [`validate::compaction_ranges`]).
pub const COMPACTION_RANGES: [i64; 5] =
    [HOUR_MS, 2 * HOUR_MS, 8 * HOUR_MS, 2 * DAY_MS, 14 * DAY_MS];
/// The highest `--debug.max-compaction-level`, and its default.
pub const MAX_COMPACTION_LEVEL: i64 = 4;

/// A folder without a usable `meta.json` is deleted once none of its objects changed for this
/// long (48h, Thanos' `PartialUploadThresholdAge`).
pub const PARTIAL_UPLOAD_THRESHOLD_AGE_MS: i64 = 2 * DAY_MS;

/// One minute in milliseconds.
pub const MINUTE_MS: i64 = 60 * 1000;
/// One hour in milliseconds.
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
/// One day in milliseconds.
pub const DAY_MS: i64 = 24 * HOUR_MS;

#[cfg(test)]
pub(crate) mod testing;
