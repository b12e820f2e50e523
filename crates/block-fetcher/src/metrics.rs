//! Thanos' meta fetcher metrics under a caller-chosen prefix: `<prefix>blocks_meta_synced{state}`,
//! `<prefix>blocks_meta_syncs_total`, `<prefix>blocks_meta_sync_failures_total`,
//! `<prefix>blocks_meta_sync_duration_seconds` and `<prefix>blocks_meta_modified{modified}`.
//!
//! Thanos' prefixes: `thanos_` (store gateway, compactor), `thanos_bucket_` (bucket tools) and
//! `thanos_bucket_ui` with no underscore (the compactor's and bucket web's global view, giving
//! `thanos_bucket_uiblocks_meta_synced`).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGaugeVec, Opts, Registry};

/// `state` values counted on top of [`BlockState`](crate::BlockState): blocks in
/// [`Snapshot::metas`](crate::Snapshot::metas) that carry a mark (also counted in `loaded`, as in
/// Thanos), and Thanos' parquet state, seeded at zero.
pub(crate) const MARKED_FOR_NO_COMPACT: &str = "marked-for-no-compact";
pub(crate) const MARKED_FOR_NO_DOWNSAMPLE: &str = "marked-for-no-downsample";
const PARQUET_MIGRATED: &str = "parquet-migrated";

/// The `modified` value of the replica label remover.
pub(crate) const REPLICA_LABEL_REMOVED: &str = "replica-label-removed";

/// The collectors of one fetcher.
#[derive(Debug, Clone)]
pub(crate) struct FetcherMetrics {
    pub(crate) syncs: IntCounter,
    pub(crate) sync_failures: IntCounter,
    pub(crate) sync_duration: Histogram,
    pub(crate) synced: IntGaugeVec,
    pub(crate) modified: IntGaugeVec,
}

impl FetcherMetrics {
    /// Registers the collectors named `<prefix>blocks_meta_*` on `registry`.
    pub(crate) fn register(registry: &Registry, prefix: &str) -> prometheus::Result<Self> {
        let name = |suffix: &str| format!("{prefix}blocks_meta_{suffix}");
        let syncs = IntCounter::new(
            name("syncs_total"),
            "Total blocks metadata synchronization attempts",
        )?;
        let sync_failures = IntCounter::new(
            name("sync_failures_total"),
            "Total blocks metadata synchronization failures",
        )?;
        let sync_duration = Histogram::with_opts(
            HistogramOpts::new(
                name("sync_duration_seconds"),
                "Duration of the blocks metadata synchronization in seconds",
            )
            .buckets(vec![0.01, 1.0, 10.0, 100.0, 300.0, 600.0, 1000.0]),
        )?;
        let synced = IntGaugeVec::new(
            Opts::new(name("synced"), "Number of block metadata synced"),
            &["state"],
        )?;
        let modified = IntGaugeVec::new(
            Opts::new(name("modified"), "Number of blocks whose metadata changed"),
            &["modified"],
        )?;
        registry.register(Box::new(syncs.clone()))?;
        registry.register(Box::new(sync_failures.clone()))?;
        registry.register(Box::new(sync_duration.clone()))?;
        registry.register(Box::new(synced.clone()))?;
        registry.register(Box::new(modified.clone()))?;
        let metrics = Self {
            syncs,
            sync_failures,
            sync_duration,
            synced,
            modified,
        };
        for state in Self::state_names() {
            metrics.synced.with_label_values(&[state]).set(0);
        }
        metrics
            .modified
            .with_label_values(&[REPLICA_LABEL_REMOVED])
            .set(0);
        Ok(metrics)
    }

    /// Every `state` value the gauge carries.
    pub(crate) fn state_names() -> impl Iterator<Item = &'static str> {
        crate::BlockState::ALL
            .iter()
            .map(|state| state.as_str())
            .chain([
                MARKED_FOR_NO_COMPACT,
                MARKED_FOR_NO_DOWNSAMPLE,
                PARQUET_MIGRATED,
            ])
    }
}
