//! Startup checks of the compactor's flags, as Thanos makes them in `cmd/thanos/compact.go`, and
//! the planner settings that follow from the flags.
//!
//! Refused: `--debug.max-compaction-level` above 4 (or negative); with downsampling on, a non-zero
//! `--retention.resolution-raw` below 40h or `--retention.resolution-5m` below 10d (the blocks
//! would expire before they can be downsampled); `--deduplication.func=penalty` without
//! `--deduplication.replica-label`; any other deduplication function than `""` and `penalty`.
//! Vertical compaction is forced on by `--deduplication.replica-label`.

use super::planner::PlannerConfig;
use super::retention::{Retention, go_duration};
use super::{COMPACTION_RANGES, DOWNSAMPLE_RANGE_1H, DOWNSAMPLE_RANGE_5M, MAX_COMPACTION_LEVEL};

/// `--deduplication.func` value selecting the penalty (querier-style) deduplication.
pub const DEDUP_FUNC_PENALTY: &str = "penalty";

/// The flags the checks look at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompactorFlags<'a> {
    /// The three `--retention.resolution-*` flags.
    pub retention: Retention,
    /// `--downsampling.disable`.
    pub downsampling_disabled: bool,
    /// `--deduplication.replica-label` (repeated).
    pub replica_labels: &'a [String],
    /// `--deduplication.func`: `""` or `penalty`.
    pub dedup_func: &'a str,
    /// `--compact.enable-vertical-compaction`.
    pub enable_vertical_compaction: bool,
    /// `--debug.max-compaction-level`.
    pub max_compaction_level: i64,
    /// `--compact.block-max-index-size` in bytes.
    pub block_max_index_size: u64,
}

/// What the flags amount to once checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedFlags {
    /// The planner's settings: ranges, index size limit, vertical compaction.
    pub planner: PlannerConfig,
    /// Merge overlapping series with the penalty algorithm rather than one-to-one.
    pub penalty_dedup: bool,
    /// Things worth a warning at startup (not errors), lowercase, one line each.
    pub warnings: Vec<String>,
}

/// A flag combination the compactor refuses to start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlagError {
    /// `--debug.max-compaction-level` above the known ranges.
    #[error(
        "--debug.max-compaction-level={level} is above the highest level {MAX_COMPACTION_LEVEL} \
         (levels: 0=1h, 1=2h, 2=8h, 3=48h, 4=336h)"
    )]
    CompactionLevelTooHigh {
        /// The level given.
        level: i64,
    },
    /// A negative `--debug.max-compaction-level`.
    #[error("--debug.max-compaction-level={level} is negative; use 0 to 4")]
    CompactionLevelNegative {
        /// The level given.
        level: i64,
    },
    /// Raw retention shorter than the block span that triggers 5m downsampling.
    #[error(
        "--retention.resolution-raw={retention} is below 40h: raw blocks would be deleted before \
         they are long enough (40h) to be downsampled to 5m; raise it, set 0d to keep raw data \
         forever, or pass --downsampling.disable"
    )]
    RawRetentionTooShort {
        /// The retention given, as a Go duration.
        retention: String,
    },
    /// 5m retention shorter than the block span that triggers 1h downsampling.
    #[error(
        "--retention.resolution-5m={retention} is below 10d: 5m blocks would be deleted before \
         they are long enough (10d) to be downsampled to 1h; raise it, set 0d to keep 5m data \
         forever, or pass --downsampling.disable"
    )]
    FiveMinuteRetentionTooShort {
        /// The retention given, as a Go duration.
        retention: String,
    },
    /// Penalty deduplication needs to know the replica labels.
    #[error(
        "--deduplication.func=penalty needs at least one --deduplication.replica-label to tell \
         replicas apart"
    )]
    PenaltyWithoutReplicaLabel,
    /// An unknown deduplication function.
    #[error("unsupported --deduplication.func={0:?}; use \"\" (one-to-one merge) or \"penalty\"")]
    UnsupportedDedupFunc(String),
}

/// The compaction ranges `--debug.max-compaction-level` keeps: the first `level + 1` of
/// [`COMPACTION_RANGES`].
pub fn compaction_ranges(max_compaction_level: i64) -> Result<Vec<i64>, FlagError> {
    let level =
        usize::try_from(max_compaction_level).map_err(|_| FlagError::CompactionLevelNegative {
            level: max_compaction_level,
        })?;
    if level >= COMPACTION_RANGES.len() {
        return Err(FlagError::CompactionLevelTooHigh {
            level: max_compaction_level,
        });
    }
    Ok(COMPACTION_RANGES[..=level].to_vec())
}

/// Checks the flags; the first problem found is returned, in Thanos' order.
pub fn validate_flags(flags: &CompactorFlags<'_>) -> Result<ValidatedFlags, FlagError> {
    let ranges = compaction_ranges(flags.max_compaction_level)?;
    let mut warnings = Vec::new();
    if flags.max_compaction_level < MAX_COMPACTION_LEVEL {
        warnings.push(format!(
            "max compaction level {} is lower than the default {MAX_COMPACTION_LEVEL}: blocks \
             stop growing at {}",
            flags.max_compaction_level,
            go_duration(ranges.last().copied().unwrap_or_default())
        ));
    }
    let penalty_dedup = match flags.dedup_func {
        "" => false,
        DEDUP_FUNC_PENALTY if flags.replica_labels.is_empty() => {
            return Err(FlagError::PenaltyWithoutReplicaLabel);
        }
        DEDUP_FUNC_PENALTY => true,
        other => return Err(FlagError::UnsupportedDedupFunc(other.to_owned())),
    };
    if !flags.downsampling_disabled {
        let raw = flags.retention.raw_ms;
        if raw != 0 && raw < DOWNSAMPLE_RANGE_5M {
            return Err(FlagError::RawRetentionTooShort {
                retention: go_duration(raw),
            });
        }
        let five_minutes = flags.retention.five_minutes_ms;
        if five_minutes != 0 && five_minutes < DOWNSAMPLE_RANGE_1H {
            return Err(FlagError::FiveMinuteRetentionTooShort {
                retention: go_duration(five_minutes),
            });
        }
    }
    let vertical_compaction = flags.enable_vertical_compaction || !flags.replica_labels.is_empty();
    Ok(ValidatedFlags {
        planner: PlannerConfig {
            ranges,
            max_index_size_bytes: flags.block_max_index_size,
            vertical_compaction,
        },
        penalty_dedup,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::planner::DEFAULT_BLOCK_MAX_INDEX_SIZE;
    use crate::plan::{DAY_MS, HOUR_MS};

    fn defaults(replica_labels: &[String]) -> CompactorFlags<'_> {
        CompactorFlags {
            retention: Retention::default(),
            downsampling_disabled: false,
            replica_labels,
            dedup_func: "",
            enable_vertical_compaction: false,
            max_compaction_level: MAX_COMPACTION_LEVEL,
            block_max_index_size: DEFAULT_BLOCK_MAX_INDEX_SIZE,
        }
    }

    #[test]
    fn thanos_defaults_pass_with_all_ranges() {
        let validated = validate_flags(&defaults(&[])).unwrap();
        assert_eq!(validated.planner, PlannerConfig::default());
        assert!(!validated.penalty_dedup);
        assert!(validated.warnings.is_empty());
    }

    #[test]
    fn compaction_level_selects_ranges_and_is_bounded() {
        assert_eq!(compaction_ranges(0).unwrap(), vec![HOUR_MS]);
        assert_eq!(
            compaction_ranges(2).unwrap(),
            vec![HOUR_MS, 2 * HOUR_MS, 8 * HOUR_MS]
        );
        let error = validate_flags(&CompactorFlags {
            max_compaction_level: 5,
            ..defaults(&[])
        })
        .unwrap_err();
        assert_eq!(error, FlagError::CompactionLevelTooHigh { level: 5 });
        assert!(error.to_string().contains("--debug.max-compaction-level=5"));
        assert_eq!(
            compaction_ranges(-1).unwrap_err(),
            FlagError::CompactionLevelNegative { level: -1 }
        );
        let lower = validate_flags(&CompactorFlags {
            max_compaction_level: 1,
            ..defaults(&[])
        })
        .unwrap();
        assert_eq!(lower.planner.ranges, vec![HOUR_MS, 2 * HOUR_MS]);
        assert_eq!(lower.warnings.len(), 1);
        assert!(
            lower.warnings[0].contains("2h0m0s"),
            "{}",
            lower.warnings[0]
        );
    }

    #[test]
    fn retention_must_outlast_downsampling_when_it_is_on() {
        let with = |raw_ms: i64, five_minutes_ms: i64, disabled: bool| {
            validate_flags(&CompactorFlags {
                retention: Retention {
                    raw_ms,
                    five_minutes_ms,
                    one_hour_ms: DAY_MS,
                },
                downsampling_disabled: disabled,
                ..defaults(&[])
            })
        };
        let error = with(39 * HOUR_MS, 0, false).unwrap_err();
        assert_eq!(
            error,
            FlagError::RawRetentionTooShort {
                retention: "39h0m0s".to_owned()
            }
        );
        assert!(
            error
                .to_string()
                .contains("--retention.resolution-raw=39h0m0s")
        );
        assert!(with(40 * HOUR_MS, 0, false).is_ok());
        assert!(with(0, 0, false).is_ok());
        let error = with(0, 10 * DAY_MS - 1000, false).unwrap_err();
        assert!(
            matches!(error, FlagError::FiveMinuteRetentionTooShort { .. }),
            "{error}"
        );
        assert!(with(0, 10 * DAY_MS, false).is_ok());
        // With downsampling off any retention goes.
        assert!(with(HOUR_MS, HOUR_MS, true).is_ok());
    }

    #[test]
    fn deduplication_flags() {
        let error = validate_flags(&CompactorFlags {
            dedup_func: "penalty",
            ..defaults(&[])
        })
        .unwrap_err();
        assert_eq!(error, FlagError::PenaltyWithoutReplicaLabel);
        let replicas = vec!["replica".to_owned()];
        let validated = validate_flags(&CompactorFlags {
            dedup_func: "penalty",
            ..defaults(&replicas)
        })
        .unwrap();
        assert!(validated.penalty_dedup);
        assert!(
            validated.planner.vertical_compaction,
            "forced by the replica label"
        );
        let error = validate_flags(&CompactorFlags {
            dedup_func: "chain",
            ..defaults(&[])
        })
        .unwrap_err();
        assert_eq!(error, FlagError::UnsupportedDedupFunc("chain".to_owned()));
        let vertical = validate_flags(&CompactorFlags {
            enable_vertical_compaction: true,
            ..defaults(&[])
        })
        .unwrap();
        assert!(vertical.planner.vertical_compaction);
    }
}
