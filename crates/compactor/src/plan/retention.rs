//! Retention per resolution (`--retention.resolution-raw`, `-5m`, `-1h`; 0 keeps forever).
//!
//! A block expires when `now` is strictly after `maxTime` (cut to whole seconds, as Thanos'
//! `time.Unix(maxTime/1000, 0)`) plus the retention of its resolution; it is then marked for
//! deletion with details `block exceeding retention of <Go duration>`.
//!
//! **Hold-back (differs from Thanos, thanos#783, #5664):** with downsampling on, a block that is
//! still a downsampling candidate — a raw block spanning at least 40h whose sources are not all
//! in some 5m block, or a 5m block spanning at least 10d not yet covered by a 1h block, without a
//! no-downsample mark — is not expired until the downsampled copy exists. Thanos expires whatever
//! it sees, so a raw retention shorter than the time compaction and downsampling take loses the
//! data for good. Held-back blocks are returned so that the driver can log them. Blocks that can
//! never be downsampled (too short, marked no-downsample, or downsampling off) expire as in Thanos.

use std::collections::HashSet;

use tsdb_block::meta::BlockMeta;
use ulid::Ulid;

use super::candidates::{Coverage, downsample_candidate};
use super::{RESOLUTION_1H, RESOLUTION_5M, RESOLUTION_RAW};

/// Retention per resolution in milliseconds; 0 keeps blocks of that resolution forever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// `--retention.resolution-raw`.
    pub raw_ms: i64,
    /// `--retention.resolution-5m`.
    pub five_minutes_ms: i64,
    /// `--retention.resolution-1h`.
    pub one_hour_ms: i64,
}

impl Retention {
    /// The retention of a resolution (0 for an unknown one: kept).
    pub fn for_resolution(&self, resolution: i64) -> i64 {
        match resolution {
            RESOLUTION_RAW => self.raw_ms,
            RESOLUTION_5M => self.five_minutes_ms,
            RESOLUTION_1H => self.one_hour_ms,
            _ => 0,
        }
    }
}

/// Whether a block whose resolution keeps data `retention_ms` has expired at `now_ms`.
pub fn is_expired(meta: &BlockMeta, retention_ms: i64, now_ms: i64) -> bool {
    if retention_ms <= 0 {
        return false;
    }
    let max_time_seconds_ms = (meta.max_time / 1000).saturating_mul(1000);
    now_ms > max_time_seconds_ms.saturating_add(retention_ms)
}

/// A block to mark for deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiredBlock {
    /// The block.
    pub block: Ulid,
    /// The retention it exceeded, in milliseconds.
    pub retention_ms: i64,
}

impl ExpiredBlock {
    /// The deletion mark's details, as Thanos writes them.
    pub fn details(&self) -> String {
        format!(
            "block exceeding retention of {}",
            go_duration(self.retention_ms)
        )
    }
}

/// An expired block kept until its downsampled copy exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldBackBlock {
    /// The block.
    pub block: Ulid,
    /// Its resolution in milliseconds.
    pub resolution: i64,
    /// The resolution of the copy it waits for.
    pub awaiting_resolution: i64,
}

/// What retention decided, each list in ULID order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionDecision {
    /// Mark these for deletion.
    pub expired: Vec<ExpiredBlock>,
    /// Past retention but still waiting to be downsampled: log them.
    pub held_back: Vec<HeldBackBlock>,
}

/// Applies retention to `metas` (all the compactor sees). `coverage` comes from the same metas
/// ([`Coverage::from_metas`]); blocks already in `marked_for_deletion` are left out.
pub fn apply_retention<'a>(
    metas: impl IntoIterator<Item = &'a BlockMeta>,
    retention: &Retention,
    downsampling_enabled: bool,
    coverage: &Coverage,
    no_downsample: &HashSet<Ulid>,
    marked_for_deletion: &HashSet<Ulid>,
    now_ms: i64,
) -> RetentionDecision {
    let mut decision = RetentionDecision::default();
    for meta in metas {
        let retention_ms = retention.for_resolution(meta.resolution());
        if marked_for_deletion.contains(&meta.ulid) || !is_expired(meta, retention_ms, now_ms) {
            continue;
        }
        let waiting = downsampling_enabled
            .then(|| downsample_candidate(meta, coverage, no_downsample))
            .flatten();
        match waiting {
            Some(candidate) => decision.held_back.push(HeldBackBlock {
                block: meta.ulid,
                resolution: candidate.source_resolution,
                awaiting_resolution: candidate.target_resolution,
            }),
            None => decision.expired.push(ExpiredBlock {
                block: meta.ulid,
                retention_ms,
            }),
        }
    }
    decision.expired.sort_by_key(|expired| expired.block);
    decision.held_back.sort_by_key(|held| held.block);
    decision
}

/// Go's `time.Duration.String()` for a non-negative number of milliseconds: `720h0m0s`,
/// `1m30s`, `1.5s`, `250ms`, `0s`.
pub fn go_duration(milliseconds: i64) -> String {
    if milliseconds <= 0 {
        return "0s".to_owned();
    }
    if milliseconds < 1000 {
        return format!("{milliseconds}ms");
    }
    let total_seconds = milliseconds / 1000;
    let fraction = milliseconds % 1000;
    let hours = total_seconds / 3600;
    let minutes = (total_seconds % 3600) / 60;
    let seconds = total_seconds % 60;
    let seconds = if fraction == 0 {
        seconds.to_string()
    } else {
        let digits = format!("{fraction:03}");
        format!("{seconds}.{}", digits.trim_end_matches('0'))
    };
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testing::{MetaExt, id, meta, numbers};
    use crate::plan::{DAY_MS, HOUR_MS};

    const NOW: i64 = 1_000 * DAY_MS;

    fn retention(raw_days: i64, five_days: i64, hour_days: i64) -> Retention {
        Retention {
            raw_ms: raw_days * DAY_MS,
            five_minutes_ms: five_days * DAY_MS,
            one_hour_ms: hour_days * DAY_MS,
        }
    }

    fn expired(decision: &RetentionDecision) -> Vec<u64> {
        numbers(decision.expired.iter().map(|block| &block.block))
    }

    #[test]
    fn expiry_is_strictly_after_max_time_plus_retention_in_whole_seconds() {
        let retention_ms = 30 * DAY_MS;
        let block = meta(1, 0, NOW - retention_ms);
        assert!(
            !is_expired(&block, retention_ms, NOW),
            "exactly at the limit"
        );
        assert!(is_expired(&block, retention_ms, NOW + 1));
        // maxTime is cut to whole seconds: 999 ms more does not move the limit.
        let block = meta(1, 0, NOW - retention_ms + 999);
        assert!(is_expired(&block, retention_ms, NOW + 1));
        let block = meta(1, 0, NOW - retention_ms + 1000);
        assert!(!is_expired(&block, retention_ms, NOW + 1));
        assert!(!is_expired(&block, 0, i64::MAX), "0 keeps forever");
    }

    #[test]
    fn each_resolution_has_its_own_retention() {
        let old = NOW - 50 * DAY_MS;
        let metas = vec![
            meta(1, old - DAY_MS, old),
            meta(2, old - DAY_MS, old).res(RESOLUTION_5M),
            meta(3, old - DAY_MS, old).res(RESOLUTION_1H),
            meta(4, NOW - 2 * DAY_MS, NOW - DAY_MS),
        ];
        let decide = |retention: Retention| {
            apply_retention(
                &metas,
                &retention,
                false,
                &Coverage::default(),
                &HashSet::new(),
                &HashSet::new(),
                NOW,
            )
        };
        assert_eq!(expired(&decide(retention(30, 0, 0))), vec![1]);
        assert_eq!(expired(&decide(retention(0, 30, 0))), vec![2]);
        assert_eq!(expired(&decide(retention(0, 0, 30))), vec![3]);
        assert_eq!(expired(&decide(retention(30, 30, 30))), vec![1, 2, 3]);
        assert_eq!(expired(&decide(retention(0, 0, 0))), Vec::<u64>::new());
        let decision = decide(retention(30, 0, 0));
        assert_eq!(
            decision.expired[0].details(),
            "block exceeding retention of 720h0m0s"
        );
        // Already marked blocks are not marked again.
        let marked: HashSet<Ulid> = [id(1)].into();
        let decision = apply_retention(
            &metas,
            &retention(30, 30, 30),
            false,
            &Coverage::default(),
            &HashSet::new(),
            &marked,
            NOW,
        );
        assert_eq!(expired(&decision), vec![2, 3]);
    }

    #[test]
    fn blocks_waiting_for_downsampling_are_held_back() {
        let old = NOW - 100 * DAY_MS;
        let waiting_raw = meta(1, old - 2 * DAY_MS, old).sources(&[1]);
        let short_raw = meta(2, old - HOUR_MS * 2, old).sources(&[2]);
        let covered_raw = meta(3, old - 2 * DAY_MS, old).sources(&[3]);
        let five = meta(4, old - 2 * DAY_MS, old)
            .res(RESOLUTION_5M)
            .sources(&[3]);
        let waiting_five = meta(5, old - 14 * DAY_MS, old)
            .res(RESOLUTION_5M)
            .sources(&[5]);
        let marked_raw = meta(6, old - 2 * DAY_MS, old).sources(&[6]);
        let metas = vec![
            waiting_raw,
            short_raw,
            covered_raw,
            five,
            waiting_five,
            marked_raw,
        ];
        let coverage = Coverage::from_metas(&metas);
        let no_downsample: HashSet<Ulid> = [id(6)].into();
        let decision = apply_retention(
            &metas,
            &retention(30, 30, 0),
            true,
            &coverage,
            &no_downsample,
            &HashSet::new(),
            NOW,
        );
        assert_eq!(expired(&decision), vec![2, 3, 4, 6]);
        assert_eq!(
            decision.held_back,
            vec![
                HeldBackBlock {
                    block: id(1),
                    resolution: RESOLUTION_RAW,
                    awaiting_resolution: RESOLUTION_5M,
                },
                HeldBackBlock {
                    block: id(5),
                    resolution: RESOLUTION_5M,
                    awaiting_resolution: RESOLUTION_1H,
                },
            ]
        );
        // With downsampling off, nothing is held back.
        let decision = apply_retention(
            &metas,
            &retention(30, 30, 0),
            false,
            &coverage,
            &no_downsample,
            &HashSet::new(),
            NOW,
        );
        assert_eq!(expired(&decision), vec![1, 2, 3, 4, 5, 6]);
        assert!(decision.held_back.is_empty());
    }

    #[test]
    fn go_durations_print_like_go() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(250), "250ms");
        assert_eq!(go_duration(1500), "1.5s");
        assert_eq!(go_duration(90_000), "1m30s");
        assert_eq!(go_duration(HOUR_MS), "1h0m0s");
        assert_eq!(go_duration(40 * HOUR_MS), "40h0m0s");
        assert_eq!(go_duration(DAY_MS + 1_250), "24h0m1.25s");
    }
}
