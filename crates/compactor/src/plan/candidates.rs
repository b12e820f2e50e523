//! Downsampling candidates (Thanos' `downsampleBucket` selection).
//!
//! A raw block spanning at least 40h ([`DOWNSAMPLE_RANGE_5M`]) is downsampled to 5m unless every
//! one of its `compaction.sources` already appears among the sources of some 5m block; a 5m
//! block spanning at least 10d ([`DOWNSAMPLE_RANGE_1H`]) likewise to 1h. 1h blocks are never
//! downsampled. Blocks with a no-downsample mark are skipped. Candidates come in ULID order.
//!
//! Differences from Thanos: the selection works on any set of metas, so the driver can downsample
//! one group as soon as that group has nothing left to compact, instead of after every group's
//! compaction backlog (docs/operating/compactor-backlog.md); and a no-downsample-marked 5m or 1h
//! block still counts as coverage (Thanos drops marked blocks before building the coverage, so a
//! marked 5m block would let its raw sources be downsampled a second time).

use std::collections::HashSet;

use tsdb_block::meta::BlockMeta;
use ulid::Ulid;

use super::{
    DOWNSAMPLE_RANGE_1H, DOWNSAMPLE_RANGE_5M, RESOLUTION_1H, RESOLUTION_5M, RESOLUTION_RAW,
};

/// The sources already downsampled, per target resolution. Build it from **all** metas the
/// compactor sees (every group), then ask about any block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Sources of every 5m block.
    sources_5m: HashSet<Ulid>,
    /// Sources of every 1h block.
    sources_1h: HashSet<Ulid>,
}

impl Coverage {
    /// Collects the sources of every 5m and 1h block. Blocks of other resolutions add nothing.
    pub fn from_metas<'a>(metas: impl IntoIterator<Item = &'a BlockMeta>) -> Self {
        let mut coverage = Self::default();
        for meta in metas {
            coverage.add(meta);
        }
        coverage
    }

    /// Adds one block's sources (e.g. a block just downsampled).
    pub fn add(&mut self, meta: &BlockMeta) {
        let sources = match meta.resolution() {
            RESOLUTION_5M => &mut self.sources_5m,
            RESOLUTION_1H => &mut self.sources_1h,
            _ => return,
        };
        sources.extend(meta.sources().iter().copied());
    }

    /// Whether a downsampled copy of `meta` at the next resolution already exists: every source
    /// of it is a source of some block of that resolution. 1h blocks (nothing to downsample to)
    /// and blocks of unknown resolution count as covered.
    pub fn covers(&self, meta: &BlockMeta) -> bool {
        let sources = match meta.resolution() {
            RESOLUTION_RAW => &self.sources_5m,
            RESOLUTION_5M => &self.sources_1h,
            _ => return true,
        };
        meta.sources().iter().all(|source| sources.contains(source))
    }
}

/// A block to downsample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownsampleCandidate {
    /// The block.
    pub block: Ulid,
    /// Its resolution in milliseconds (0 or 300000).
    pub source_resolution: i64,
    /// The resolution to make, in milliseconds (300000 or 3600000).
    pub target_resolution: i64,
}

/// The resolution `meta` would be downsampled to once long enough, if any.
pub fn next_resolution(resolution: i64) -> Option<(i64, i64)> {
    match resolution {
        RESOLUTION_RAW => Some((RESOLUTION_5M, DOWNSAMPLE_RANGE_5M)),
        RESOLUTION_5M => Some((RESOLUTION_1H, DOWNSAMPLE_RANGE_1H)),
        _ => None,
    }
}

/// The candidate `meta` makes, if any (span long enough, not covered, not marked).
pub fn downsample_candidate(
    meta: &BlockMeta,
    coverage: &Coverage,
    no_downsample: &HashSet<Ulid>,
) -> Option<DownsampleCandidate> {
    let (target_resolution, minimum_span) = next_resolution(meta.resolution())?;
    if no_downsample.contains(&meta.ulid)
        || meta.max_time.saturating_sub(meta.min_time) < minimum_span
        || coverage.covers(meta)
    {
        return None;
    }
    Some(DownsampleCandidate {
        block: meta.ulid,
        source_resolution: meta.resolution(),
        target_resolution,
    })
}

/// The blocks among `metas` to downsample now, in ULID order. `metas` may be one group's or
/// all; `coverage` must come from all metas.
pub fn downsample_candidates<'a>(
    metas: impl IntoIterator<Item = &'a BlockMeta>,
    coverage: &Coverage,
    no_downsample: &HashSet<Ulid>,
) -> Vec<DownsampleCandidate> {
    let mut candidates: Vec<DownsampleCandidate> = metas
        .into_iter()
        .filter_map(|meta| downsample_candidate(meta, coverage, no_downsample))
        .collect();
    candidates.sort_by_key(|candidate| candidate.block);
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testing::{MetaExt, id, meta, numbers};
    use crate::plan::{DAY_MS, HOUR_MS};

    fn blocks(candidates: &[DownsampleCandidate]) -> Vec<u64> {
        numbers(candidates.iter().map(|candidate| &candidate.block))
    }

    #[test]
    fn raw_blocks_of_40h_and_more_go_to_5m() {
        let metas = vec![
            meta(3, 0, 40 * HOUR_MS),
            meta(1, 0, 40 * HOUR_MS - 1),
            meta(2, 0, 2 * DAY_MS),
        ];
        let candidates = downsample_candidates(&metas, &Coverage::default(), &HashSet::new());
        assert_eq!(blocks(&candidates), vec![2, 3], "ULID order, 40h is enough");
        assert!(
            candidates
                .iter()
                .all(|c| c.source_resolution == 0 && c.target_resolution == RESOLUTION_5M)
        );
    }

    #[test]
    fn five_minute_blocks_of_10d_and_more_go_to_1h() {
        let metas = vec![
            meta(1, 0, 10 * DAY_MS).res(RESOLUTION_5M),
            meta(2, 0, 10 * DAY_MS - 1).res(RESOLUTION_5M),
            meta(3, 0, 100 * DAY_MS).res(RESOLUTION_1H),
        ];
        let candidates = downsample_candidates(&metas, &Coverage::default(), &HashSet::new());
        assert_eq!(
            candidates,
            vec![DownsampleCandidate {
                block: id(1),
                source_resolution: RESOLUTION_5M,
                target_resolution: RESOLUTION_1H,
            }]
        );
    }

    #[test]
    fn a_block_is_covered_only_when_every_source_is_downsampled() {
        let raw = meta(10, 0, 2 * DAY_MS).sources(&[1, 2, 3]);
        let partly = meta(20, 0, DAY_MS).res(RESOLUTION_5M).sources(&[1, 2]);
        let rest = meta(21, DAY_MS, 2 * DAY_MS)
            .res(RESOLUTION_5M)
            .sources(&[3]);
        // A 1h block with the same sources does not cover the raw block.
        let hourly = meta(30, 0, 2 * DAY_MS)
            .res(RESOLUTION_1H)
            .sources(&[1, 2, 3]);
        let partial = Coverage::from_metas([&raw, &partly, &hourly]);
        assert!(!partial.covers(&raw));
        let full = Coverage::from_metas([&raw, &partly, &rest]);
        assert!(full.covers(&raw));
        assert!(downsample_candidates([&raw], &full, &HashSet::new()).is_empty());
        assert_eq!(
            blocks(&downsample_candidates([&raw], &partial, &HashSet::new())),
            vec![10]
        );
        // 5m blocks are covered by 1h blocks.
        let five = meta(40, 0, 12 * DAY_MS)
            .res(RESOLUTION_5M)
            .sources(&[1, 2, 3]);
        assert!(Coverage::from_metas([&hourly]).covers(&five));
        assert!(!Coverage::from_metas([&partly, &rest]).covers(&five));
        // Adding a block afterwards extends the coverage.
        let mut growing = Coverage::from_metas([&partly]);
        assert!(!growing.covers(&raw));
        growing.add(&rest);
        assert!(growing.covers(&raw));
    }

    #[test]
    fn no_downsample_marks_skip_the_block_but_still_cover() {
        let raw = meta(10, 0, 2 * DAY_MS).sources(&[1]);
        let five = meta(20, 0, 2 * DAY_MS).res(RESOLUTION_5M).sources(&[2]);
        let marked_five = meta(21, 0, 12 * DAY_MS).res(RESOLUTION_5M).sources(&[1]);
        let marks: HashSet<Ulid> = [id(21)].into();
        let coverage = Coverage::from_metas([&raw, &five, &marked_five]);
        // 21 is marked, and the raw block is covered by it all the same.
        assert!(downsample_candidates([&raw, &five, &marked_five], &coverage, &marks).is_empty());
        // Without block 21 the raw block would be a candidate; marking it skips it.
        let without = Coverage::from_metas([&raw, &five]);
        assert_eq!(
            blocks(&downsample_candidates([&raw], &without, &HashSet::new())),
            vec![10]
        );
        assert!(downsample_candidates([&raw], &without, &[id(10)].into()).is_empty());
        // Unmarked, the 10d 5m block is a candidate and the raw block is still covered.
        assert_eq!(
            blocks(&downsample_candidates(
                [&raw, &five, &marked_five],
                &coverage,
                &HashSet::new()
            )),
            vec![21]
        );
    }
}
