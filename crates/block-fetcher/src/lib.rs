//! Which blocks a bucket holds, their metas and marks, filtered as Thanos' meta fetcher
//! (`pkg/block/fetcher.go`) filters them: the one block discovery of the store gateway, the
//! compactor and bucket web.
//!
//! **Mission.** Give each component an exact, cheap view of the bucket. A [`Fetcher`] pass lists
//! the bucket once ([`ListingMode::Recursive`], with object attributes) and derives everything
//! from that listing: the block directories, which hold `meta.json` and which marks, and each
//! directory's newest modification time. It then reads only what it has not seen: each
//! `meta.json` once (metas are immutable; cached in memory and optionally on disk under
//! `<cache dir>/meta-syncer/<ulid>/meta.json`), each mark when new or changed (size or time in
//! the listing). It filters and returns a [`Snapshot`].
//!
//! **Invariants.**
//! - On an unchanged bucket a pass costs one listing (Thanos' per-block `exists`/`get` calls
//!   are #2643, #6033, #6707).
//! - A listing failure fails the pass ([`Error::List`]); nothing else does. A `meta.json` or mark
//!   that cannot be read is [`BlockState::Failed`] and listed in [`Snapshot::failed`]; an
//!   unparsable meta is [`BlockState::CorruptedMetaJson`]; an unparsable mark is skipped with a
//!   warning.
//! - Every block directory of the bucket ends a pass in exactly one [`BlockState`]
//!   ([`Snapshot::states`]); [`Snapshot::metas`] holds exactly the [`BlockState::Loaded`] ones.
//!
//! **Filters** (see [`Filters`]), in Thanos' order: time window (`--min-time`/`--max-time`,
//! [`TimeBound`]), `--selector.relabel-config` ([`RelabelConfig`]), consistency delay (blocks
//! of the compactor and repairs exempt), deletion marks older than a delay, replica-label
//! removal (the compactor's `--deduplication.replica-label`), duplicates.
//!
//! <a id="metrics"></a>**Metrics**, under [`FetcherConfig::metric_prefix`] (`thanos_` gives
//! Thanos' names): `blocks_meta_synced{state}` (every [`BlockState`] plus
//! `marked-for-no-compact`, `marked-for-no-downsample` and `parquet-migrated`),
//! `blocks_meta_syncs_total`, `blocks_meta_sync_failures_total`,
//! `blocks_meta_sync_duration_seconds` and `blocks_meta_modified{modified="replica-label-removed"}`.
//!
//! **Modules.** `fetcher` ([`Fetcher`], [`Snapshot`]), `listing` (the listing into block
//! directories, [`ListingMode`]), `filter` ([`Filters`], [`BlockState`]), `marks` (mark reads
//! and their cache), `disk` (the on-disk meta cache), `metrics`, [`relabel`], [`time`], `error`.

mod disk;
mod error;
mod fetcher;
mod filter;
mod flags;
mod listing;
mod marks;
mod metrics;
pub mod relabel;
pub mod time;

pub use error::{Error, Result};
pub use fetcher::{Fetcher, FetcherConfig, PartialBlock, Snapshot};
pub use filter::{BlockState, Filters};
pub use flags::SelectionFlags;
pub use listing::ListingMode;
pub use relabel::{BLOCK_ID_LABEL, RelabelConfig};
pub use time::TimeBound;
