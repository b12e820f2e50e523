//! The compactor (Thanos' `compact`): keeps a bucket's blocks compacted, de-duplicated,
//! downsampled and within retention.
//!
//! **Mission.** A drop-in for Thanos' compactor (flags, bucket layout, `meta.json`, marks,
//! metrics) that never halts the whole bucket for one group's trouble, downsamples and applies
//! retention per group as soon as the group is ready, keeps memory bounded by the series being
//! merged, and survives being killed at any moment.
//!
//! **Modules.** [`merge`] (source blocks → one output block, streamed), [`downsample`] (raw → 5m →
//! 1h aggregate blocks, streamed), [`plan`] (groups, Thanos' planner, retention and garbage
//! collection decisions over metas; no I/O), `driver` (the loop that acts on the plans), `blocks`
//! (a block's download, upload, marks and deletion, never half-visible), `web` (the block
//! viewer's API), `metrics` (Thanos' `thanos_compact_*`), [`config`] (flags), [`error`].

mod blocks;
pub mod config;
pub mod downsample;
mod driver;
pub mod error;
mod mapped;
pub mod merge;
mod metrics;
pub mod plan;
mod web;

use std::sync::Arc;
use std::time::Duration;

use block_fetcher::{Fetcher, FetcherConfig, Filters, ListingMode};
use objstore::{Bucket, BucketOptions, ObjstoreConfig};
use service_core::{HttpServer, RunGroup, ServiceContext};

pub use config::Config;
pub use error::{Error, Result};

use crate::config::DedupFuncFlag;
use crate::driver::{Driver, Settings};
use crate::merge::DedupFunc;
use crate::metrics::Metrics;
use crate::plan::{CompactorFlags, Retention};
use crate::web::{BlockView, WebState};

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn config_error(what: &'static str, message: impl Into<String>) -> Error {
    Error::Config {
        what,
        message: message.into(),
    }
}

/// Checks the flags as Thanos does at start-up and derives the driver's settings.
fn settings(config: &Config) -> Result<Settings> {
    let retention = Retention {
        raw_ms: millis(config.retention_raw.get()),
        five_minutes_ms: millis(config.retention_5m.get()),
        one_hour_ms: millis(config.retention_1h.get()),
    };
    let dedup_func = match config.dedup_func {
        DedupFuncFlag::OneToOne => "",
        DedupFuncFlag::Penalty => "penalty",
    };
    let max_index_size =
        service_core::size::parse_bytes(&config.block_max_index_size).ok_or_else(|| {
            config_error(
                "compact.block-max-index-size",
                format!("bad size {:?}", config.block_max_index_size),
            )
        })?;
    let validated = plan::validate_flags(&CompactorFlags {
        retention,
        downsampling_disabled: !config.downsampling(),
        replica_labels: &config.replica_labels,
        dedup_func,
        enable_vertical_compaction: config.vertical_compaction(),
        max_compaction_level: i64::try_from(config.max_compaction_level).unwrap_or(i64::MAX),
        block_max_index_size: max_index_size,
    })
    .map_err(|error| config_error("flags", error.to_string()))?;
    for warning in &validated.warnings {
        tracing::warn!("{warning}");
    }
    Ok(Settings {
        data_dir: config.data_dir.clone(),
        delete_delay: config.delete_delay.get(),
        replica_labels: config.replica_labels.clone(),
        planner: validated.planner,
        dedup: if validated.penalty_dedup {
            DedupFunc::Penalty
        } else {
            DedupFunc::OneToOne
        },
        retention,
        downsampling: config.downsampling(),
        compact_concurrency: config.compact_concurrency,
        fetch_concurrency: config.blocks_fetch_concurrency,
        downsample_concurrency: config.downsample_concurrency,
        hash_func: config.hash_func.clone(),
        skip_out_of_order: config.skip_out_of_order(),
        halt_on_error: config.halt_on_error(),
    })
}

/// Runs the compactor: one iteration and exit, or with `--wait` an iteration every
/// `--wait-interval` until stopped.
pub async fn run(config: Config, ctx: ServiceContext) -> Result<()> {
    let settings = settings(&config)?;
    let objstore = ObjstoreConfig::from_flags(
        config.objstore.objstore_config_file.as_deref(),
        config.objstore.objstore_config.as_deref(),
    )
    .map_err(|error| config_error("objstore.config", service_core::error_chain(&error)))?;
    let options = BucketOptions {
        upload_concurrency: config.block_files_concurrency.max(1),
        ..BucketOptions::default()
    };
    let bucket = Bucket::from_config(&objstore, options, &ctx.registry)
        .await
        .map_err(|source| Error::bucket("open bucket", source))?;
    let relabel = config.selection.relabel().map_err(|error| {
        config_error("selector.relabel-config", service_core::error_chain(&error))
    })?;
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| Error::local(&config.data_dir, source))?;

    // Both discovery strategies list the bucket once per pass (one recursive listing): a pass
    // over an unchanged bucket costs that listing, not a request per block.
    let fetcher = Fetcher::new(
        bucket.clone(),
        FetcherConfig {
            cache_dir: Some(config.data_dir.clone()),
            concurrency: config.block_meta_fetch_concurrency.max(1),
            listing: ListingMode::Recursive,
            metric_prefix: "thanos_".to_owned(),
            filters: Filters {
                min_time: config.selection.min_time,
                max_time: config.selection.max_time,
                relabel: relabel.clone(),
                consistency_delay: config.consistency_delay.get(),
                deletion_mark_delay: Some(config.delete_delay.get() / 2),
                deduplicate: true,
                replica_labels: config.replica_labels.clone(),
            },
            read_no_compact_marks: true,
            read_no_downsample_marks: true,
        },
        &ctx.registry,
    )
    .map_err(|error| Error::Fetch(Box::new(error)))?;
    let metrics = Metrics::register(&ctx.registry, config.delete_delay.get())?;
    let loaded = Arc::new(BlockView::default());
    let global = Arc::new(BlockView::default());
    let driver = Arc::new(Driver::new(
        bucket.clone(),
        fetcher,
        settings,
        metrics.clone(),
        Arc::clone(&loaded),
    ));

    let routes = if config.web_enabled() {
        let prefix = if config.web_route_prefix.is_empty() {
            config.web_external_prefix.clone()
        } else {
            config.web_route_prefix.clone()
        };
        web::routes(
            &prefix,
            WebState {
                loaded,
                global: Arc::clone(&global),
                label: config.bucket_web_label.clone().unwrap_or_default(),
                admin_disabled: config.admin_disabled(),
                bucket: bucket.clone(),
            },
        )
    } else {
        axum::Router::new()
    };
    let http = HttpServer::bind(&config.http, &ctx, routes).await?;
    tracing::info!(http = %http.local_addr(), "compactor listening");
    ctx.readiness.set_ready();

    let mut group = RunGroup::new(ctx.shutdown.clone());
    group.add("http", http.serve(ctx.shutdown.clone()));
    if config.wait() {
        group.add(
            "compact",
            compact_loop(
                Arc::clone(&driver),
                ctx.clone(),
                config.wait_interval.get(),
                metrics.clone(),
            ),
        );
        let cleanup = config.cleanup_interval.get();
        if !cleanup.is_zero() {
            group.add(
                "cleanup",
                cleanup_loop(Arc::clone(&driver), ctx.clone(), cleanup),
            );
        }
        if config.web_enabled() {
            let global_fetcher = Fetcher::new(
                bucket,
                FetcherConfig {
                    cache_dir: None,
                    concurrency: config.block_meta_fetch_concurrency.max(1),
                    listing: ListingMode::Recursive,
                    metric_prefix: "thanos_bucket_ui".to_owned(),
                    filters: Filters {
                        min_time: config.selection.min_time,
                        max_time: config.selection.max_time,
                        relabel,
                        ..Filters::default()
                    },
                    read_no_compact_marks: false,
                    read_no_downsample_marks: false,
                },
                &ctx.registry,
            )
            .map_err(|error| Error::Fetch(Box::new(error)))?;
            group.add(
                "block-viewer",
                global_view_loop(
                    global_fetcher,
                    global,
                    ctx.clone(),
                    config.block_viewer_sync_interval.get(),
                    config.block_viewer_sync_timeout.get(),
                ),
            );
        }
    } else {
        let once = Arc::clone(&driver);
        group.add("compact", async move {
            once.iteration().await?;
            tracing::info!("compaction iteration done; exiting (no --wait)");
            Ok::<(), Error>(())
        });
    }
    group.run().await?;
    Ok(())
}

/// An iteration every `interval`; retryable errors are counted and retried, others end the
/// process with a non-zero exit as Thanos' `--wait` mode does.
async fn compact_loop(
    driver: Arc<Driver>,
    ctx: ServiceContext,
    interval: Duration,
    metrics: Metrics,
) -> Result<()> {
    loop {
        match driver.iteration().await {
            Ok(()) => {}
            Err(error) if error.is_retryable() => {
                metrics.retries.inc();
                tracing::warn!(error = %service_core::error_chain(&error), "compaction iteration failed; retrying after --wait-interval");
            }
            Err(error) => return Err(error),
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = ctx.shutdown.cancelled() => return Ok(()),
        }
    }
}

async fn cleanup_loop(driver: Arc<Driver>, ctx: ServiceContext, interval: Duration) -> Result<()> {
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = ctx.shutdown.cancelled() => return Ok(()),
        }
        if let Err(error) = driver.cleanup().await {
            tracing::warn!(error = %service_core::error_chain(&error), "background cleanup failed");
        }
    }
}

async fn global_view_loop(
    fetcher: Fetcher,
    view: Arc<BlockView>,
    ctx: ServiceContext,
    interval: Duration,
    timeout: Duration,
) -> Result<()> {
    loop {
        match tokio::time::timeout(timeout, fetcher.fetch()).await {
            Ok(Ok(snapshot)) => view.set(snapshot.metas.into_values()),
            Ok(Err(error)) => view.set_error(service_core::error_chain(&error)),
            Err(_) => view.set_error(format!("bucket sync timed out after {timeout:?}")),
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = ctx.shutdown.cancelled() => return Ok(()),
        }
    }
}
