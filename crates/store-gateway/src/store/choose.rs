//! Which blocks answer a `Series` request, as Thanos' `bucketBlockSet.getFor` chooses them.
//!
//! Blocks are grouped by their external labels (one group per label set, Thanos' block set);
//! within a group, the coarsest resolution level at or below the request's
//! `max_resolution_window` is taken first (1h, then 5m, then raw), and every stretch of the
//! request's range that level does not cover is filled from the next finer level, recursively.
//! An answer may therefore mix resolutions; with a window of 0 only raw blocks are read.
//!
//! Block intervals are half-open, `[min_time, max_time)`; the request's range is closed. A block
//! that the request's block matchers exclude still counts as covering its range (Thanos does the
//! same: the gap is not filled from finer data). Blocks of another resolution than 0, 5m or 1h
//! are never chosen, as Thanos refuses to load them.
//!
//! One deviation: where blocks of the chosen level overlap and a later one ends earlier, Thanos
//! moves the covered-up-to point back to that earlier end and reads finer data again over a
//! range already covered; here the point only moves forward.

/// Resolution of 1h downsampled blocks, in ms.
pub(crate) const RESOLUTION_1H: i64 = 3_600_000;
/// Resolution of 5m downsampled blocks, in ms.
pub(crate) const RESOLUTION_5M: i64 = 300_000;
/// The resolution levels a store gateway serves, coarsest first.
pub(crate) const RESOLUTION_LEVELS: [i64; 3] = [RESOLUTION_1H, RESOLUTION_5M, 0];

/// One block of a group, as the choice sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidate {
    /// First timestamp, inclusive.
    pub(crate) min_time: i64,
    /// End, exclusive.
    pub(crate) max_time: i64,
    /// Downsampling resolution in ms (0 = raw).
    pub(crate) resolution: i64,
    /// Whether the request's block matchers select it.
    pub(crate) selected: bool,
}

/// The indexes into `candidates` (one group: blocks with equal external labels) of the blocks
/// that answer a request over `[min_time, max_time]` allowing resolutions up to
/// `max_resolution_window` ms, in time order per level, coarser levels' gaps first.
pub(crate) fn choose(
    candidates: &[Candidate],
    min_time: i64,
    max_time: i64,
    max_resolution_window: i64,
) -> Vec<usize> {
    let mut levels: [Vec<usize>; RESOLUTION_LEVELS.len()] = Default::default();
    for (index, candidate) in candidates.iter().enumerate() {
        if let Some(level) = RESOLUTION_LEVELS
            .iter()
            .position(|resolution| *resolution == candidate.resolution)
        {
            levels[level].push(index);
        }
    }
    for level in &mut levels {
        level.sort_by_key(|index| (candidates[*index].min_time, candidates[*index].max_time));
    }
    // A negative window allows nothing coarser than raw.
    let first = RESOLUTION_LEVELS
        .iter()
        .position(|resolution| *resolution <= max_resolution_window)
        .unwrap_or(RESOLUTION_LEVELS.len() - 1);
    let mut chosen = Vec::new();
    let choice = Choice {
        candidates,
        levels: &levels,
    };
    choice.fill(first, min_time, max_time, &mut chosen);
    chosen
}

/// The blocks of one group, by level.
struct Choice<'a> {
    candidates: &'a [Candidate],
    levels: &'a [Vec<usize>; RESOLUTION_LEVELS.len()],
}

impl Choice<'_> {
    /// Covers `[min_time, max_time]` with the blocks of `level`, the gaps with finer levels.
    fn fill(&self, level: usize, min_time: i64, max_time: i64, chosen: &mut Vec<usize>) {
        if min_time > max_time {
            return;
        }
        let has_finer = level + 1 < self.levels.len();
        // Everything before `covered` is covered by the blocks taken so far.
        let mut covered = min_time;
        for &index in &self.levels[level] {
            let block = &self.candidates[index];
            if block.max_time <= min_time {
                continue;
            }
            if block.min_time > max_time {
                break;
            }
            if has_finer {
                self.fill(level + 1, covered, block.min_time.saturating_sub(1), chosen);
            }
            if block.selected {
                chosen.push(index);
            }
            covered = covered.max(block.max_time);
        }
        if has_finer {
            self.fill(level + 1, covered, max_time, chosen);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn block(resolution: i64, from_hour: i64, to_hour: i64) -> Candidate {
        Candidate {
            min_time: from_hour * H,
            max_time: to_hour * H,
            resolution,
            selected: true,
        }
    }

    /// The chosen blocks as `(resolution, from hour, to hour)`, sorted by time.
    fn check(
        candidates: &[Candidate],
        from_hour: i64,
        to_hour: i64,
        window: i64,
    ) -> Vec<(i64, i64, i64)> {
        let chosen = choose(candidates, from_hour * H, to_hour * H - 1, window);
        let mut unique = chosen.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), chosen.len(), "a block was chosen twice");
        let mut spans: Vec<(i64, i64, i64)> = chosen
            .iter()
            .map(|index| {
                let block = candidates[*index];
                (block.resolution, block.min_time / H, block.max_time / H)
            })
            .collect();
        spans.sort_by_key(|(resolution, from, to)| (*from, *to, *resolution));
        spans
    }

    /// Raw blocks over [0, 48h), 5m blocks over [0, 40h), a 1h block over [0, 20h).
    fn three_levels() -> Vec<Candidate> {
        vec![
            block(0, 0, 8),
            block(0, 8, 16),
            block(0, 16, 24),
            block(0, 24, 32),
            block(0, 32, 40),
            block(0, 40, 48),
            block(RESOLUTION_5M, 0, 20),
            block(RESOLUTION_5M, 20, 40),
            block(RESOLUTION_1H, 0, 20),
        ]
    }

    #[test]
    fn window_zero_reads_raw_blocks_only() {
        let blocks = three_levels();
        assert_eq!(
            check(&blocks, 0, 48, 0),
            vec![
                (0, 0, 8),
                (0, 8, 16),
                (0, 16, 24),
                (0, 24, 32),
                (0, 32, 40),
                (0, 40, 48)
            ]
        );
        // A window between levels takes the finer one.
        assert_eq!(
            check(&blocks, 0, 48, RESOLUTION_5M - 1),
            check(&blocks, 0, 48, 0)
        );
        assert_eq!(check(&blocks, 0, 48, -5), check(&blocks, 0, 48, 0));
    }

    #[test]
    fn the_coarsest_level_allowed_is_taken_and_its_gaps_filled_from_finer_levels() {
        let blocks = three_levels();
        // 5m covers [0, 40h); raw fills [40h, 48h).
        assert_eq!(
            check(&blocks, 0, 48, RESOLUTION_5M),
            vec![(RESOLUTION_5M, 0, 20), (RESOLUTION_5M, 20, 40), (0, 40, 48)]
        );
        // 1h covers [0, 20h); 5m fills [20h, 40h), raw the rest: three resolutions mixed.
        assert_eq!(
            check(&blocks, 0, 48, RESOLUTION_1H),
            vec![(RESOLUTION_1H, 0, 20), (RESOLUTION_5M, 20, 40), (0, 40, 48)]
        );
        assert_eq!(
            check(&blocks, 0, 48, i64::MAX),
            check(&blocks, 0, 48, RESOLUTION_1H)
        );
        // Only the range asked for.
        assert_eq!(
            check(&blocks, 21, 30, RESOLUTION_1H),
            vec![(RESOLUTION_5M, 20, 40)]
        );
        assert_eq!(check(&blocks, 41, 42, RESOLUTION_1H), vec![(0, 40, 48)]);
    }

    #[test]
    fn a_gap_before_and_between_coarse_blocks_is_filled_recursively() {
        // 1h blocks over [8h, 16h) and [32h, 40h); 5m over [0, 4h) and [20h, 24h); raw
        // everywhere in 4h blocks.
        let mut blocks: Vec<Candidate> = (0..12).map(|i| block(0, i * 4, i * 4 + 4)).collect();
        blocks.extend([
            block(RESOLUTION_1H, 8, 16),
            block(RESOLUTION_1H, 32, 40),
            block(RESOLUTION_5M, 0, 4),
            block(RESOLUTION_5M, 20, 24),
        ]);
        assert_eq!(
            check(&blocks, 0, 48, RESOLUTION_1H),
            vec![
                (RESOLUTION_5M, 0, 4),
                (0, 4, 8),
                (RESOLUTION_1H, 8, 16),
                (0, 16, 20),
                (RESOLUTION_5M, 20, 24),
                (0, 24, 28),
                (0, 28, 32),
                (RESOLUTION_1H, 32, 40),
                (0, 40, 44),
                (0, 44, 48)
            ]
        );
        // A raw block straddling a coarse block's start is read for the part before it.
        let straddling = vec![block(0, 0, 10), block(RESOLUTION_5M, 6, 12)];
        assert_eq!(
            check(&straddling, 0, 12, RESOLUTION_5M),
            vec![(0, 0, 10), (RESOLUTION_5M, 6, 12)]
        );
        // Nothing finer over a gap: the gap stays empty.
        let lonely = vec![block(RESOLUTION_1H, 10, 20)];
        assert_eq!(
            check(&lonely, 0, 30, RESOLUTION_1H),
            vec![(RESOLUTION_1H, 10, 20)]
        );
        assert!(check(&lonely, 0, 30, RESOLUTION_5M).is_empty());
    }

    #[test]
    fn excluded_blocks_cover_their_range_and_unknown_resolutions_are_skipped() {
        let mut blocks = vec![
            block(0, 0, 10),
            block(0, 10, 20),
            block(RESOLUTION_5M, 0, 10),
            block(RESOLUTION_5M, 10, 20),
            block(60_000, 0, 20),
        ];
        blocks[2].selected = false;
        assert_eq!(
            check(&blocks, 0, 20, RESOLUTION_1H),
            vec![(RESOLUTION_5M, 10, 20)]
        );
        assert_eq!(check(&blocks, 0, 20, 60_000), vec![(0, 0, 10), (0, 10, 20)]);
        assert!(check(&[], 0, 20, RESOLUTION_1H).is_empty());
        assert!(choose(&blocks, 10, 5, RESOLUTION_1H).is_empty());
    }

    #[test]
    fn overlapping_blocks_of_a_level_are_all_read() {
        let blocks = vec![
            block(RESOLUTION_5M, 0, 20),
            block(RESOLUTION_5M, 4, 8),
            block(RESOLUTION_5M, 10, 24),
            block(0, 0, 30),
        ];
        assert_eq!(
            check(&blocks, 0, 30, RESOLUTION_5M),
            vec![
                (RESOLUTION_5M, 0, 20),
                (0, 0, 30),
                (RESOLUTION_5M, 4, 8),
                (RESOLUTION_5M, 10, 24)
            ]
        );
        // Without the raw block after 24h nothing finer is needed.
        assert_eq!(check(&blocks[..3], 0, 24, RESOLUTION_5M).len(), 3);
    }
}
