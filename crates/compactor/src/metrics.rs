//! The compactor's metrics, named, labelled and bucketed as Thanos' `compact` exports them (the
//! Thanos mixin's compactor dashboard and alerts read these names).

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Every metric of the compactor's driver.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    /// `thanos_compact_halted`: 1 while a group is stopped by a problem that needs an operator
    /// (Thanos' alert `ThanosCompactHalted` fires on it); the other groups keep compacting.
    pub(crate) halted: IntGauge,
    /// `thanos_compact_group_problem`: the stopped groups, with what stops them.
    pub(crate) group_problems: IntGaugeVec,
    pub(crate) iterations: IntCounter,
    pub(crate) retries: IntCounter,
    pub(crate) cleanup_loops: IntCounter,
    pub(crate) partial_deletion_attempts: IntCounter,
    pub(crate) blocks_cleaned: IntCounter,
    pub(crate) block_cleanup_failures: IntCounter,
    pub(crate) blocks_marked: IntCounterVec,
    pub(crate) blocks_marked_for_deletion: IntCounter,
    pub(crate) garbage_collected_blocks: IntCounter,
    pub(crate) garbage_collections: IntCounter,
    pub(crate) garbage_collection_failures: IntCounter,
    pub(crate) garbage_collection_duration: Histogram,
    pub(crate) compactions: IntCounterVec,
    pub(crate) compaction_runs_started: IntCounterVec,
    pub(crate) compaction_runs_completed: IntCounterVec,
    pub(crate) compaction_failures: IntCounterVec,
    pub(crate) vertical_compactions: IntCounterVec,
    pub(crate) downsamples: IntCounterVec,
    pub(crate) downsample_failures: IntCounterVec,
    /// The mixin's dashboard reads the failures as `thanos_compact_downsample_failed_total`.
    pub(crate) downsample_failed: IntCounterVec,
    pub(crate) downsample_duration: HistogramVec,
    pub(crate) todo_compactions: IntGauge,
    pub(crate) todo_compaction_blocks: IntGauge,
    pub(crate) todo_downsample_blocks: IntGauge,
    pub(crate) todo_deletion_blocks: IntGauge,
}

/// Marker and reason values Thanos pre-seeds for `thanos_compact_blocks_marked_total`.
const PRESEEDED_MARKS: [(&str, &str); 3] = [
    ("no-compact-mark.json", "block-index-out-of-order-chunk"),
    ("no-compact-mark.json", "index-size-exceeding"),
    ("deletion-mark.json", ""),
];

const GC_BUCKETS: [f64; 16] = [
    0.01, 0.1, 0.3, 0.6, 1.0, 3.0, 6.0, 9.0, 20.0, 30.0, 60.0, 90.0, 120.0, 240.0, 360.0, 720.0,
];

const DOWNSAMPLE_BUCKETS: [f64; 7] = [60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0];

impl Metrics {
    /// Registers every metric in `registry`; `delete_delay` is exported as
    /// `thanos_delete_delay_seconds`.
    pub(crate) fn register(
        registry: &Registry,
        delete_delay: std::time::Duration,
    ) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str| -> prometheus::Result<IntCounter> {
            let metric = IntCounter::new(name, help)?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let metric = IntGauge::new(name, help)?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let counter_vec =
            |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntCounterVec> {
                let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(metric.clone()))?;
                Ok(metric)
            };
        let delete_delay_gauge = gauge(
            "thanos_delete_delay_seconds",
            "Configured delete delay in seconds.",
        )?;
        delete_delay_gauge.set(i64::try_from(delete_delay.as_secs()).unwrap_or(i64::MAX));
        let garbage_collection_duration = Histogram::with_opts(
            HistogramOpts::new(
                "thanos_compact_garbage_collection_duration_seconds",
                "Time it took to perform garbage collection iteration.",
            )
            .buckets(GC_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(garbage_collection_duration.clone()))?;
        let downsample_duration = HistogramVec::new(
            HistogramOpts::new(
                "thanos_compact_downsample_duration_seconds",
                "Duration of downsample runs",
            )
            .buckets(DOWNSAMPLE_BUCKETS.to_vec()),
            &["resolution"],
        )?;
        registry.register(Box::new(downsample_duration.clone()))?;
        let metrics = Self {
            halted: gauge(
                "thanos_compact_halted",
                "Set to 1 if the compactor halted due to an unexpected error.",
            )?,
            group_problems: {
                let metric = IntGaugeVec::new(
                    Opts::new(
                        "thanos_compact_group_problem",
                        "1 for each compaction group stopped by a problem an operator must \
                         resolve (the logs name the blocks and the way out); the other groups \
                         keep compacting.",
                    ),
                    &["group", "problem"],
                )?;
                registry.register(Box::new(metric.clone()))?;
                metric
            },
            iterations: counter(
                "thanos_compact_iterations_total",
                "Total number of iterations that were executed successfully.",
            )?,
            retries: counter(
                "thanos_compact_retries_total",
                "Total number of retries after retriable compactor error.",
            )?,
            cleanup_loops: counter(
                "thanos_compact_block_cleanup_loops_total",
                "Total number of concurrent cleanup loops of partially uploaded blocks and \
                 marked blocks that were executed successfully.",
            )?,
            partial_deletion_attempts: counter(
                "thanos_compact_aborted_partial_uploads_deletion_attempts_total",
                "Total number of started deletions of blocks that are assumed aborted and only \
                 partially uploaded.",
            )?,
            blocks_cleaned: counter(
                "thanos_compact_blocks_cleaned_total",
                "Total number of blocks deleted in compactor.",
            )?,
            block_cleanup_failures: counter(
                "thanos_compact_block_cleanup_failures_total",
                "Failures encountered while deleting blocks in compactor.",
            )?,
            blocks_marked: counter_vec(
                "thanos_compact_blocks_marked_total",
                "Total number of blocks marked in compactor.",
                &["marker", "reason"],
            )?,
            blocks_marked_for_deletion: counter(
                "thanos_compact_blocks_marked_for_deletion_total",
                "Total number of blocks marked for deletion in compactor.",
            )?,
            garbage_collected_blocks: counter(
                "thanos_compact_garbage_collected_blocks_total",
                "Total number of deleted blocks by compactor.",
            )?,
            garbage_collections: counter(
                "thanos_compact_garbage_collection_total",
                "Total number of garbage collection operations.",
            )?,
            garbage_collection_failures: counter(
                "thanos_compact_garbage_collection_failures_total",
                "Total number of failed garbage collection operations.",
            )?,
            garbage_collection_duration,
            compactions: counter_vec(
                "thanos_compact_group_compactions_total",
                "Total number of group compaction attempts that resulted in a new block.",
                &["resolution"],
            )?,
            compaction_runs_started: counter_vec(
                "thanos_compact_group_compaction_runs_started_total",
                "Total number of group compaction attempts.",
                &["resolution"],
            )?,
            compaction_runs_completed: counter_vec(
                "thanos_compact_group_compaction_runs_completed_total",
                "Total number of group completed compaction runs. This also includes compactor \
                 group runs that resulted with no compaction.",
                &["resolution"],
            )?,
            compaction_failures: counter_vec(
                "thanos_compact_group_compactions_failures_total",
                "Total number of failed group compactions.",
                &["resolution"],
            )?,
            vertical_compactions: counter_vec(
                "thanos_compact_group_vertical_compactions_total",
                "Total number of group compaction attempts that resulted in a new block based \
                 on overlapping blocks.",
                &["resolution"],
            )?,
            downsamples: counter_vec(
                "thanos_compact_downsample_total",
                "Total number of downsampling attempts.",
                &["resolution"],
            )?,
            downsample_failures: counter_vec(
                "thanos_compact_downsample_failures_total",
                "Total number of failed downsampling attempts.",
                &["resolution"],
            )?,
            downsample_failed: counter_vec(
                "thanos_compact_downsample_failed_total",
                "Total number of failed downsampling attempts (the name the Thanos mixin reads).",
                &["resolution"],
            )?,
            downsample_duration,
            todo_compactions: gauge(
                "thanos_compact_todo_compactions",
                "number of compactions to be done",
            )?,
            todo_compaction_blocks: gauge(
                "thanos_compact_todo_compaction_blocks",
                "number of blocks planned to be compacted",
            )?,
            todo_downsample_blocks: gauge(
                "thanos_compact_todo_downsample_blocks",
                "number of blocks to be downsampled",
            )?,
            todo_deletion_blocks: gauge(
                "thanos_compact_todo_deletion_blocks",
                "number of blocks that have crossed their retention period",
            )?,
        };
        for (marker, reason) in PRESEEDED_MARKS {
            metrics.blocks_marked.with_label_values(&[marker, reason]);
        }
        for resolution in ["0", "300000", "3600000"] {
            for vec in [
                &metrics.compactions,
                &metrics.compaction_runs_started,
                &metrics.compaction_runs_completed,
                &metrics.compaction_failures,
                &metrics.vertical_compactions,
                &metrics.downsamples,
                &metrics.downsample_failures,
                &metrics.downsample_failed,
            ] {
                vec.with_label_values(&[resolution]);
            }
        }
        Ok(metrics)
    }

    /// Counts a mark written by the compactor.
    pub(crate) fn marked(&self, marker: &str, reason: &str) {
        self.blocks_marked
            .with_label_values(&[marker, reason])
            .inc();
        if marker == "deletion-mark.json" {
            self.blocks_marked_for_deletion.inc();
        }
    }

    /// Counts a failed downsampling of a block of `resolution`.
    pub(crate) fn downsample_failed(&self, resolution: &str) {
        self.downsample_failures
            .with_label_values(&[resolution])
            .inc();
        self.downsample_failed
            .with_label_values(&[resolution])
            .inc();
    }
}
