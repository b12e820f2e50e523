//! The store gateway (Thanos' `store`): serves the history kept in a bucket over the StoreAPI.
//!
//! **Mission.** Make every block of an object-storage bucket queryable by a Thanos (or thanos-rs)
//! querier without downloading whole blocks: only a small index-header per block is kept on local
//! disk, and postings, series and chunks are fetched per query with coalesced ranged reads.
//!
//! **Invariants.**
//! - A block is served only when its `meta.json` is present and it passes the filters of
//!   [`sync`] (a [`block_fetcher::Fetcher`]: one bucket listing per sync); partial uploads are
//!   invisible. New and removed blocks are picked up on every sync without restart.
//! - A `Series` answer is sorted by labels across all blocks, carries each block's external
//!   labels (which win over series labels), passes chunks through as stored (Thanos encoding
//!   numbers), and ends with one `hints` frame listing the queried blocks.
//! - A bucket failure during a query is an error to the caller, never a shorter answer; a limit
//!   breach is `ResourceExhausted`; a block whose index is corrupt is not loaded (counted in
//!   `thanos_bucket_store_block_load_failures_total`) while the other blocks are served.
//! - `/-/ready` turns ready only after the first successful sync.
//!
//! **Modules.** [`sync`] (block discovery through `block-fetcher`, block load/drop), `block`
//! (one block: index-header, postings → series → chunks), `header` (the index-header file),
//! [`cache`] (in-memory LRU, memcached, redis index caches), `store` (the gRPC services),
//! [`relabel`] (block selection, from `block-fetcher`), `metrics` (query metrics), `shard`
//! (vertical query sharding), [`time`] (`--min-time`/`--max-time`, from `block-fetcher`),
//! `limits`, [`error`].

mod block;
pub mod cache;
pub mod error;
mod header;
mod limits;
mod metrics;
pub mod relabel;
mod shard;
mod store;
pub mod sync;
#[cfg(test)]
mod test_alloc;
pub mod time;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use objstore::{Bucket, BucketOptions, ObjstoreConfig};
use service_core::{
    GrpcFlags, GrpcServer, HttpFlags, HttpServer, LogFlags, ObjstoreFlags, PromDuration, RunGroup,
    ServiceConfig, ServiceContext, StoreLimitsFlags, TracingFlags,
};

pub use error::{Error, Result};

use crate::cache::IndexCacheConfig;
use crate::limits::Limits;
use crate::store::BucketStore;
use crate::sync::{SyncConfig, Syncer};

/// The store gateway's flags, named as Thanos' `store` names them.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub http: HttpFlags,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub grpc: GrpcFlags,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub log: LogFlags,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub tracing: TracingFlags,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub objstore: ObjstoreFlags,

    /// Local data directory used for caching purposes (index-header, in-mem cache items and
    /// meta.jsons). If removed, no data will be lost, just store will have to rebuild the cache.
    #[arg(long = "data-dir", value_name = "DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Repeat interval for syncing the blocks between local and remote view.
    #[arg(
        long = "sync-block-duration",
        value_name = "DURATION",
        default_value = "15m"
    )]
    pub sync_block_duration: PromDuration,

    /// Minimum age of all blocks before they are being read. Set it to safe value (e.g 30m) if
    /// your object storage is eventually consistent.
    #[arg(
        long = "consistency-delay",
        value_name = "DURATION",
        default_value = "0s"
    )]
    pub consistency_delay: PromDuration,

    /// Duration after which the blocks marked for deletion will be filtered out while fetching
    /// blocks.
    #[arg(
        long = "ignore-deletion-marks-delay",
        value_name = "DURATION",
        default_value = "24h"
    )]
    pub ignore_deletion_marks_delay: PromDuration,

    /// `--min-time`, `--max-time`, `--selector.relabel-config[-file]`: the blocks served.
    #[command(flatten)]
    pub selection: block_fetcher::SelectionFlags,

    /// Path to YAML file that contains index cache configuration.
    #[arg(
        long = "index-cache.config-file",
        value_name = "FILE",
        conflicts_with = "index_cache_config"
    )]
    pub index_cache_config_file: Option<PathBuf>,

    /// Alternative to 'index-cache.config-file' flag (mutually exclusive). Content of YAML file
    /// that contains index cache configuration.
    #[arg(long = "index-cache.config", value_name = "YAML")]
    pub index_cache_config: Option<String>,

    /// Maximum size of items held in the in-memory index cache. Ignored if --index-cache.config
    /// or --index-cache.config-file option is specified.
    #[arg(
        long = "index-cache-size",
        value_name = "BYTES",
        default_value = "250MB"
    )]
    pub index_cache_size: String,

    /// DEPRECATED: use store.limits.request-samples.
    #[arg(
        long = "store.grpc.series-sample-limit",
        value_name = "N",
        default_value_t = 0
    )]
    pub series_sample_limit: u64,

    /// Maximum number of concurrent Series calls.
    #[arg(
        long = "store.grpc.series-max-concurrency",
        value_name = "N",
        default_value_t = 20
    )]
    pub series_max_concurrency: usize,

    /// Number of goroutines to use when constructing index-cache.json blocks from object
    /// storage. Must be equal or greater than 1.
    #[arg(
        long = "block-sync-concurrency",
        value_name = "N",
        default_value_t = 20
    )]
    pub block_sync_concurrency: usize,

    /// Thanos' `--store.limits.request-series` and `--store.limits.request-samples`.
    #[command(flatten)]
    pub store_limits: StoreLimitsFlags,

    /// DEPRECATED: use store.limits.request-series.
    #[arg(
        long = "store.grpc.touched-series-limit",
        value_name = "N",
        default_value_t = 0
    )]
    pub touched_series_limit: u64,

    /// Maximum amount of downloaded (either fetched or touched) bytes in a single
    /// Series/LabelNames/LabelValues call. The Series call fails if this limit is exceeded. 0
    /// means no limit.
    #[arg(
        long = "store.grpc.downloaded-bytes-limit",
        value_name = "BYTES",
        default_value = "0"
    )]
    pub downloaded_bytes_limit: String,

    /// If index-header lazy reader is enabled and this idle timeout setting is > 0, memory map-ed
    /// index-headers will be automatically released after 'idle timeout' inactivity.
    #[arg(
        long = "store.index-header-lazy-reader-idle-timeout",
        value_name = "DURATION",
        default_value = "5m",
        hide = true
    )]
    pub index_header_idle_timeout: PromDuration,
}

impl ServiceConfig for Config {
    fn log_flags(&self) -> &LogFlags {
        &self.log
    }

    fn tracing_flags(&self) -> &TracingFlags {
        &self.tracing
    }
}

/// Reads one of a `--x-file` / `--x` pair.
fn file_or_inline(
    what: &'static str,
    file: Option<&PathBuf>,
    inline: Option<&String>,
) -> Result<Option<String>> {
    match (file, inline) {
        (Some(path), _) => std::fs::read_to_string(path)
            .map(Some)
            .map_err(|error| Error::Config {
                what,
                message: format!("read {}: {error}", path.display()),
            }),
        (None, Some(text)) if !text.trim().is_empty() => Ok(Some(text.clone())),
        _ => Ok(None),
    }
}

/// The smaller non-zero limit.
fn tighter(left: u64, right: u64) -> u64 {
    match (left, right) {
        (0, other) | (other, 0) => other,
        (left, right) => left.min(right),
    }
}

/// Runs the store gateway until `ctx.shutdown` is cancelled or a server fails.
pub async fn run(config: Config, ctx: ServiceContext) -> Result<()> {
    let objstore = ObjstoreConfig::from_flags(
        config.objstore.objstore_config_file.as_deref(),
        config.objstore.objstore_config.as_deref(),
    )
    .map_err(|error| Error::Config {
        what: "objstore.config",
        message: service_core::error_chain(&error),
    })?;
    let bucket = Bucket::from_config(&objstore, BucketOptions::default(), &ctx.registry)
        .await
        .map_err(|source| Error::bucket("open bucket", source))?;
    let relabel = config.selection.relabel().map_err(|error| Error::Config {
        what: "selector.relabel-config",
        message: match error {
            block_fetcher::Error::Relabel { message } => message,
            other => service_core::error_chain(&other),
        },
    })?;
    let cache_config = file_or_inline(
        "index-cache.config",
        config.index_cache_config_file.as_ref(),
        config.index_cache_config.as_ref(),
    )?
    .map(|yaml| IndexCacheConfig::parse(&yaml))
    .transpose()?;
    let cache_size =
        service_core::size::parse_bytes(&config.index_cache_size).ok_or_else(|| Error::Config {
            what: "index-cache-size",
            message: format!("bad size {:?}", config.index_cache_size),
        })?;
    let cache = cache::build(cache_config, cache_size, &ctx.registry)?;
    std::fs::create_dir_all(&config.data_dir).map_err(|source| Error::LocalFile {
        path: config.data_dir.clone(),
        source,
    })?;

    let syncer = Arc::new(Syncer::new(
        bucket,
        SyncConfig {
            data_dir: config.data_dir.clone(),
            consistency_delay: config.consistency_delay.get(),
            ignore_deletion_marks_delay: config.ignore_deletion_marks_delay.get(),
            min_time: config.selection.min_time,
            max_time: config.selection.max_time,
            relabel,
            concurrency: config.block_sync_concurrency,
        },
        &ctx.registry,
    )?);
    let limits = Limits {
        series: tighter(
            config.store_limits.request_series_limit,
            config.touched_series_limit,
        ),
        samples: tighter(
            config.store_limits.request_samples_limit,
            config.series_sample_limit,
        ),
        bytes: service_core::size::parse_bytes(&config.downloaded_bytes_limit).ok_or_else(
            || Error::Config {
                what: "store.grpc.downloaded-bytes-limit",
                message: format!("bad size {:?}", config.downloaded_bytes_limit),
            },
        )?,
    };
    let store = BucketStore::new(
        Arc::clone(&syncer.blocks),
        cache,
        limits,
        service_core::Gate::new(
            &ctx.registry,
            "thanos_bucket_store_series_",
            config.series_max_concurrency,
        )?,
        metrics::QueryMetrics::register(&ctx.registry)?,
        ctx.readiness.clone(),
    );

    let http = HttpServer::bind(&config.http, &ctx, axum::Router::new()).await?;
    let mut grpc = GrpcServer::bind(&config.grpc, &ctx).await?;
    grpc.add_service(storeapi::store_server(store.clone()));
    grpc.add_service(storeapi::info_server(store));
    tracing::info!(http = %http.local_addr(), grpc = %grpc.local_addr(), "store gateway listening");

    let mut group = RunGroup::new(ctx.shutdown.clone());
    group.add("http", http.serve(ctx.shutdown.clone()));
    group.add("grpc", grpc.serve(ctx.shutdown.clone()));
    group.add(
        "bucket-sync",
        sync_loop(
            syncer,
            ctx.clone(),
            config.sync_block_duration.get(),
            config.index_header_idle_timeout.get(),
        ),
    );
    group.run().await?;
    Ok(())
}

/// Initial sync (retried until it succeeds), readiness, then a sync every `interval` and
/// release of idle index-headers.
async fn sync_loop(
    syncer: Arc<Syncer>,
    ctx: ServiceContext,
    interval: Duration,
    idle: Duration,
) -> Result<()> {
    loop {
        match syncer.sync().await {
            Ok(()) => break,
            Err(error) => {
                tracing::warn!(error = %service_core::error_chain(&error), "initial sync failed, retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                    () = ctx.shutdown.cancelled() => return Ok(()),
                }
            }
        }
    }
    ctx.readiness.set_ready();
    tracing::info!("initial sync done");
    let tick = if idle.is_zero() {
        interval
    } else {
        interval.min(idle / 2).max(Duration::from_secs(1))
    };
    let mut last_sync = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            () = ctx.shutdown.cancelled() => return Ok(()),
        }
        if !idle.is_zero() {
            syncer.release_idle(idle);
        }
        if last_sync.elapsed() >= interval {
            last_sync = tokio::time::Instant::now();
            if let Err(error) = syncer.sync().await {
                tracing::warn!(error = %service_core::error_chain(&error), "bucket sync failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{Args, Command, FromArgMatches};

    use super::*;
    use crate::time::TimeBound;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        let command = Config::augment_args(Command::new("store-gateway"));
        let matches = command
            .try_get_matches_from(std::iter::once("store-gateway").chain(args.iter().copied()))?;
        Config::from_arg_matches(&matches)
    }

    #[test]
    fn defaults_and_spellings_follow_thanos_store() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(
            config.sync_block_duration.get(),
            Duration::from_secs(15 * 60)
        );
        assert_eq!(config.consistency_delay.get(), Duration::ZERO);
        assert_eq!(
            config.ignore_deletion_marks_delay.get(),
            Duration::from_secs(24 * 3600)
        );
        assert_eq!(config.index_cache_size, "250MB");
        assert_eq!(config.series_max_concurrency, 20);
        assert_eq!(config.block_sync_concurrency, 20);
        assert_eq!(
            (
                config.series_sample_limit,
                config.store_limits.request_series_limit,
                config.store_limits.request_samples_limit
            ),
            (0, 0, 0)
        );
        assert_eq!(config.grpc.grpc_address.to_string(), "0.0.0.0:10901");
        assert_eq!(config.http.http_address.to_string(), "0.0.0.0:10902");

        let config = parse(&[
            "--min-time=-2h",
            "--max-time",
            "-30m",
            "--store.limits.request-series=10",
            "--selector.relabel-config=- action: keep\n  source_labels: [a]\n",
        ])
        .unwrap();
        assert_eq!(config.selection.min_time, TimeBound::Relative(-7_200_000));
        assert_eq!(config.selection.max_time, TimeBound::Relative(-1_800_000));
        assert_eq!(config.store_limits.request_series_limit, 10);
        let config = parse(&[
            "--store.grpc.touched-series-limit=7",
            "--store.grpc.downloaded-bytes-limit=64MB",
        ])
        .unwrap();
        assert_eq!(config.touched_series_limit, 7);
        assert_eq!(config.downloaded_bytes_limit, "64MB");
        assert!(parse(&["--min-time=soon"]).is_err());
        assert!(
            parse(&[
                "--selector.relabel-config=x",
                "--selector.relabel-config-file=y"
            ])
            .is_err()
        );
    }
}
