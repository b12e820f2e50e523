//! Thanos' sidecar, run next to an unmodified Prometheus.
//!
//! **Mission.** Make one Prometheus part of a Thanos system: serve its data over the StoreAPI
//! (`thanos.Store`, `thanos.info.Info`) on `--grpc-address`, and ship its finished TSDB blocks to
//! object storage so the store gateway and the compactor take over once Prometheus' retention
//! drops them.
//!
//! **Start-up.** The sidecar waits for Prometheus' `/-/ready` (at most
//! `--prometheus.ready_timeout`), reads the external labels from `/api/v1/status/config` and
//! refuses to start when there are none (they identify the data in the bucket and in queries),
//! then becomes ready (`/-/ready`). Every `--prometheus.get_config_interval` it re-reads the
//! external labels and the oldest sample time.
//!
//! **Invariants.**
//! - Every series the StoreAPI returns carries the external labels (an external label wins over a
//!   series label of the same name) and the stream is sorted by labels.
//! - A Series call streams: Prometheus' answer is read frame by frame and each series is sent
//!   once complete and in order, through a bounded channel, so memory is bounded by a few frames
//!   and a slow client slows the read (see [`remote_read`] for the order, [`store`] for the
//!   flow). `SAMPLES` answers (old Prometheus) are one message, read whole up to a size limit.
//! - A matcher contradicting the external labels answers empty without asking Prometheus.
//! - A block is uploaded at most once (the shipper file plus a `meta.json` existence check in the
//!   bucket) and its `meta.json` is written last, with the `thanos` section (external labels,
//!   `source: sidecar`, resolution 0, files with sizes). No uploads without `--objstore.config*`,
//!   nor when Prometheus compacts (min and max block durations differ) unless
//!   `--shipper.upload-compacted`.
//! - Prometheus being down or slow is a gRPC `Unavailable` with a message, bounded by timeouts;
//!   never a hang.
//!
//! **Modules.** [`args`]: the Prometheus Operator's `sidecar --flag=...` form and unknown flags;
//! [`prometheus`]: the HTTP client (readiness, config, flags, label APIs, remote read);
//! [`http_client`]: `--prometheus.http-client(-file)` credentials and TLS settings;
//! [`remote_read`]: remote read answers (streamed chunk frames with CRC32C, samples fallback) to
//! Thanos series; [`store`]: the StoreAPI services; [`shipper`]: block uploads and
//! `thanos.shipper.json`; `error`: [`Error`].

pub mod args;
mod error;
pub mod http_client;
pub mod prometheus;
pub mod remote_read;
pub mod shipper;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use objstore::{Bucket, BucketOptions, ObjstoreConfig};
use service_core::{
    GrpcFlags, GrpcServer, HttpFlags, HttpServer, LogFlags, MAX_MESSAGE_SIZE, ObjstoreFlags,
    PromDuration, RunGroup, ServiceConfig, ServiceContext, StoreLimitsFlags, TracingFlags,
};
use tokio::sync::watch;
use tracing::{error, info, warn};

pub use error::{Error, Result};

use crate::prometheus::PrometheusClient;
use crate::shipper::{Shipper, ShipperConfig, ShipperMetrics};
use crate::store::{PrometheusState, SidecarStore};

/// Flags of `sidecar`, named and defaulted as Thanos names them.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// HTTP server flags.
    #[command(flatten)]
    pub http: HttpFlags,
    /// gRPC server flags.
    #[command(flatten)]
    pub grpc: GrpcFlags,
    /// Logging flags.
    #[command(flatten)]
    pub log: LogFlags,
    /// Tracing flags.
    #[command(flatten)]
    pub tracing: TracingFlags,
    /// Object storage flags; without them nothing is uploaded.
    #[command(flatten)]
    pub objstore: ObjstoreFlags,
    /// URL at which to reach Prometheus's API. For better performance use local network.
    #[arg(
        long = "prometheus.url",
        default_value = "http://localhost:9090",
        value_name = "URL"
    )]
    pub prometheus_url: String,
    /// Path to a YAML file with the HTTP client configuration for Prometheus (basic_auth,
    /// bearer_token(_file), tls_config.insecure_skip_verify).
    #[arg(long = "prometheus.http-client-file", value_name = "FILE")]
    pub prometheus_http_client_file: Option<PathBuf>,
    /// Alternative to --prometheus.http-client-file: the YAML itself.
    #[arg(long = "prometheus.http-client", value_name = "YAML")]
    pub prometheus_http_client: Option<String>,
    /// Maximum time to wait for the Prometheus instance to start up.
    #[arg(long = "prometheus.ready_timeout", default_value = "10m")]
    pub prometheus_ready_timeout: PromDuration,
    /// How often to get Prometheus config.
    #[arg(long = "prometheus.get_config_interval", default_value = "30s")]
    pub prometheus_get_config_interval: PromDuration,
    /// Timeout for getting Prometheus config.
    #[arg(long = "prometheus.get_config_timeout", default_value = "30s")]
    pub prometheus_get_config_timeout: PromDuration,
    /// Data directory of TSDB.
    #[arg(long = "tsdb.path", default_value = "./data", value_name = "PATH")]
    pub tsdb_path: PathBuf,
    /// If true shipper will try to upload compacted blocks as well.
    #[arg(
        long = "shipper.upload-compacted",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true"
    )]
    pub shipper_upload_compacted: bool,
    /// The file to store the list of uploaded blocks, relative to --tsdb.path.
    #[arg(long = "shipper.meta-file-name", default_value = "thanos.shipper.json")]
    pub shipper_meta_file_name: String,
    /// Start of time range limit to serve: RFC3339 or a duration relative to now (e.g. -2h).
    #[arg(
        long = "min-time",
        default_value = "0000-01-01T00:00:00Z",
        allow_hyphen_values = true
    )]
    pub min_time: String,
    /// Time between shipper passes (not a Thanos flag; for tests).
    #[arg(long = "shipper.sync-interval", default_value = "30s", hide = true)]
    pub shipper_sync_interval: PromDuration,
    /// How long a remote read may wait for Prometheus: for its answer to start, and each time
    /// for more of it (time the sidecar waits for a slow client does not count).
    #[arg(long = "prometheus.read-timeout", default_value = "2m", hide = true)]
    pub prometheus_read_timeout: PromDuration,
    /// The largest SAMPLES remote read answer (old Prometheus) accepted, compressed or
    /// decompressed, in bytes: such an answer is one message, read whole (not a Thanos flag).
    #[arg(
        long = "prometheus.samples-answer-limit-bytes",
        value_name = "BYTES",
        default_value_t = remote_read::DEFAULT_SAMPLES_ANSWER_LIMIT,
        hide = true
    )]
    pub prometheus_samples_answer_limit: u64,
    /// Thanos' `--store.limits.request-series` and `--store.limits.request-samples`.
    #[command(flatten)]
    pub store_limits: StoreLimitsFlags,
    /// Thanos sidecar flags this implementation does not have (see [`args`]); logged and
    /// ignored.
    #[arg(long = args::IGNORED_FLAG, hide = true, value_name = "FLAG")]
    pub ignored_flags: Vec<String>,
}

impl ServiceConfig for Config {
    fn log_flags(&self) -> &LogFlags {
        &self.log
    }

    fn tracing_flags(&self) -> &TracingFlags {
        &self.tracing
    }
}

/// `--min-time` in Unix milliseconds: RFC 3339, or a (possibly negative) duration relative to
/// `now_millis`.
pub fn parse_min_time(text: &str, now_millis: i64) -> Result<i64> {
    if let Some(millis) = prom_model::time::parse_rfc3339_millis(text) {
        return Ok(millis);
    }
    if text.starts_with("0000-") {
        // Thanos' default: before any sample.
        return Ok(i64::MIN);
    }
    let (negative, duration) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let duration: PromDuration = duration.parse().map_err(|error| Error::InvalidFlag {
        flag: "min-time",
        detail: format!("{text:?} is neither RFC 3339 nor a duration: {error}"),
    })?;
    let offset = i64::try_from(duration.get().as_millis()).unwrap_or(i64::MAX);
    Ok(if negative {
        now_millis.saturating_sub(offset)
    } else {
        now_millis.saturating_add(offset)
    })
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Runs the sidecar until `ctx.shutdown` is cancelled or a component fails.
pub async fn run(config: Config, ctx: ServiceContext) -> Result<()> {
    for flag in &config.ignored_flags {
        warn!(flag = %flag, "ignoring Thanos sidecar flag this implementation does not support");
    }
    let min_time = parse_min_time(&config.min_time, now_millis())?;
    let http_client = http_client::HttpClientConfig::from_flags(
        config.prometheus_http_client_file.as_deref(),
        config.prometheus_http_client.as_deref(),
    )?
    .unwrap_or_default();
    let prometheus = PrometheusClient::with_http_config(
        &config.prometheus_url,
        config.prometheus_get_config_timeout.get(),
        config.prometheus_read_timeout.get(),
        http_client,
    )?
    .with_samples_answer_limit(config.prometheus_samples_answer_limit);
    let state = Arc::new(PrometheusState::new(prom_model::Labels::empty(), min_time));
    let bucket = match (
        &config.objstore.objstore_config_file,
        &config.objstore.objstore_config,
    ) {
        (None, None) => {
            info!("no object storage configured, blocks will not be uploaded");
            None
        }
        (file, inline) => {
            let objstore = ObjstoreConfig::from_flags(file.as_deref(), inline.as_deref()).map_err(
                |source| Error::Objstore {
                    action: "read object storage configuration".to_owned(),
                    source,
                },
            )?;
            let bucket = Bucket::from_config(&objstore, BucketOptions::default(), &ctx.registry)
                .await
                .map_err(|source| Error::Objstore {
                    action: "open bucket".to_owned(),
                    source,
                })?;
            Some(bucket)
        }
    };
    let shipper_metrics =
        ShipperMetrics::register(&ctx.registry).map_err(|error| Error::Metrics {
            detail: error.to_string(),
        })?;

    let prometheus_up = prometheus_up_gauge(&ctx.registry)?;
    let store = SidecarStore::new(prometheus.clone(), Arc::clone(&state)).with_limits(
        store::RequestLimits {
            series: config.store_limits.request_series_limit,
            samples: config.store_limits.request_samples_limit,
        },
    );
    let http = HttpServer::bind(&config.http, &ctx, Router::new()).await?;
    let mut grpc = GrpcServer::bind(&config.grpc, &ctx).await?;
    grpc.add_service(
        storeapi::store_server(store.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE),
    );
    grpc.add_service(
        storeapi::info_server(store)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE),
    );
    info!(http = %http.local_addr(), grpc = %grpc.local_addr(), prometheus = %prometheus.url(), "sidecar listening");

    let (started_sender, started) = watch::channel(false);
    let mut group = RunGroup::new(ctx.shutdown.clone());
    group.add("http", http.serve(ctx.shutdown.clone()));
    group.add("grpc", grpc.serve(ctx.shutdown.clone()));
    group.add(
        "prometheus",
        watch_prometheus(
            prometheus.clone(),
            Arc::clone(&state),
            config.clone(),
            ctx.clone(),
            started_sender,
            prometheus_up,
        ),
    );
    if let Some(bucket) = bucket {
        let shipper = Shipper::new(
            bucket,
            ShipperConfig {
                tsdb_path: config.tsdb_path.clone(),
                meta_file_name: config.shipper_meta_file_name.clone(),
                upload_compacted: config.shipper_upload_compacted,
                interval: config.shipper_sync_interval.get(),
            },
            Arc::clone(&state),
            shipper_metrics,
        );
        group.add(
            "shipper",
            ship_when_started(shipper, prometheus, config, started, ctx.shutdown.clone()),
        );
    }
    group.run().await.map_err(Error::from)
}

/// Waits for Prometheus, reads its external labels (failing without any), marks the sidecar
/// ready, then refreshes labels and the oldest sample time every interval.
async fn watch_prometheus(
    prometheus: PrometheusClient,
    state: Arc<PrometheusState>,
    config: Config,
    ctx: ServiceContext,
    started: watch::Sender<bool>,
    prometheus_up: ::prometheus::IntGauge,
) -> Result<()> {
    ctx.readiness.set_not_ready("waiting for prometheus");
    prometheus
        .wait_ready(config.prometheus_ready_timeout.get(), &ctx.shutdown)
        .await?;
    if ctx.shutdown.is_cancelled() {
        return Ok(());
    }
    let labels = prometheus.external_labels().await?;
    if labels.is_empty() {
        return Err(Error::NoExternalLabels {
            url: prometheus.url().to_string(),
        });
    }
    prometheus_up.set(1);
    info!(external_labels = %labels, "read prometheus external labels");
    state.set_external_labels(labels);
    refresh_min_time(&prometheus, &state, &config).await;
    ctx.readiness.set_ready();
    let _ = started.send(true);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(config.prometheus_get_config_interval.get()) => {}
            _ = ctx.shutdown.cancelled() => return Ok(()),
        }
        match prometheus.external_labels().await {
            Ok(labels) if labels.is_empty() => {
                warn!("prometheus reports no external labels, keeping the previous ones");
            }
            Ok(labels) => {
                prometheus_up.set(1);
                state.set_external_labels(labels);
            }
            Err(error) => {
                prometheus_up.set(0);
                warn!(error = %error, "reading prometheus config failed");
            }
        }
        refresh_min_time(&prometheus, &state, &config).await;
    }
}

/// `thanos_sidecar_prometheus_up`: whether the last configuration read from Prometheus worked.
fn prometheus_up_gauge(registry: &::prometheus::Registry) -> Result<::prometheus::IntGauge> {
    let register = || -> Result<::prometheus::IntGauge, ::prometheus::Error> {
        let gauge = ::prometheus::IntGauge::new(
            "thanos_sidecar_prometheus_up",
            "Boolean indicator whether the sidecar can reach its Prometheus peer.",
        )?;
        registry.register(Box::new(gauge.clone()))?;
        Ok(gauge)
    };
    register().map_err(|error| Error::Metrics {
        detail: error.to_string(),
    })
}

async fn refresh_min_time(prometheus: &PrometheusClient, state: &PrometheusState, config: &Config) {
    let flag_min = parse_min_time(&config.min_time, now_millis()).unwrap_or(i64::MIN);
    match prometheus.lowest_timestamp().await {
        Ok(Some(lowest)) => state.set_min_time(lowest.max(flag_min)),
        Ok(None) => state.set_min_time(flag_min),
        Err(error) => warn!(error = %error, "reading prometheus' oldest sample time failed"),
    }
}

/// What Prometheus' block-duration flags mean for uploads.
#[derive(Debug, Clone, PartialEq, Eq)]
enum BlockDurations {
    /// Min and max are 2h: the setting Thanos recommends.
    Equal2h,
    /// Min and max are equal but not 2h: uploads work, with a warning.
    EqualNot2h(String),
    /// Prometheus compacts its own blocks and compacted uploads were not asked for.
    Compacting { min: String, max: String },
}

fn check_block_durations(
    flags: &std::collections::BTreeMap<String, String>,
    upload_compacted: bool,
) -> BlockDurations {
    let flag = |name: &str| flags.get(name).cloned().unwrap_or_default();
    let min = flag("storage.tsdb.min-block-duration");
    let max = flag("storage.tsdb.max-block-duration");
    if min != max && !upload_compacted {
        return BlockDurations::Compacting { min, max };
    }
    if min == "2h" {
        BlockDurations::Equal2h
    } else {
        BlockDurations::EqualNot2h(min)
    }
}

/// Checks Prometheus' block durations, then runs the shipper. Refuses to upload (logging why)
/// when Prometheus compacts blocks and `--shipper.upload-compacted` is not set.
async fn ship_when_started(
    shipper: Shipper,
    prometheus: PrometheusClient,
    config: Config,
    mut started: watch::Receiver<bool>,
    shutdown: service_core::CancellationToken,
) -> Result<()> {
    tokio::select! {
        result = started.wait_for(|started| *started) => {
            if result.is_err() {
                return Ok(());
            }
        }
        _ = shutdown.cancelled() => return Ok(()),
    }
    match prometheus.flags().await {
        Ok(flags) => match check_block_durations(&flags, config.shipper_upload_compacted) {
            BlockDurations::Equal2h => {}
            BlockDurations::EqualNot2h(duration) => {
                warn!(block_duration = %duration, "prometheus block duration is not 2h");
            }
            BlockDurations::Compacting { min, max } => {
                error!(
                    min_block_duration = %min,
                    max_block_duration = %max,
                    "prometheus compacts blocks (storage.tsdb.min-block-duration != storage.tsdb.max-block-duration): not uploading; set them equal or use --shipper.upload-compacted"
                );
                shutdown.cancelled().await;
                return Ok(());
            }
        },
        Err(error) => warn!(error = %error, "reading prometheus flags failed, shipping anyway"),
    }
    shipper.run(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        use clap::{Args, FromArgMatches};
        let normalized = args::normalize_args(args.iter().map(std::ffi::OsString::from));
        let matches = Config::augment_args(clap::Command::new("sidecar"))
            .try_get_matches_from(normalized)
            .unwrap();
        Config::from_arg_matches(&matches).unwrap()
    }

    #[test]
    fn flags_have_thanos_defaults_and_both_value_forms() {
        let defaults = parse(&["sidecar"]);
        assert_eq!(defaults.prometheus_url, "http://localhost:9090");
        assert_eq!(defaults.prometheus_ready_timeout.get().as_secs(), 600);
        assert_eq!(defaults.prometheus_get_config_interval.get().as_secs(), 30);
        assert_eq!(defaults.prometheus_get_config_timeout.get().as_secs(), 30);
        assert_eq!(defaults.tsdb_path, PathBuf::from("./data"));
        assert!(!defaults.shipper_upload_compacted);
        assert_eq!(defaults.shipper_meta_file_name, "thanos.shipper.json");
        assert_eq!(defaults.min_time, "0000-01-01T00:00:00Z");
        assert_eq!(defaults.http.http_address.to_string(), "0.0.0.0:10902");
        assert_eq!(defaults.grpc.grpc_address.to_string(), "0.0.0.0:10901");
        assert!(defaults.objstore.objstore_config.is_none());
        assert_eq!(defaults.store_limits.request_series_limit, 0);
        assert_eq!(defaults.store_limits.request_samples_limit, 0);
        let limited = parse(&[
            "sidecar",
            "--store.limits.request-series=10",
            "--store.limits.request-samples",
            "1200",
        ]);
        assert_eq!(limited.store_limits.request_series_limit, 10);
        assert_eq!(limited.store_limits.request_samples_limit, 1200);

        let operator = parse(&[
            "thanos",
            "sidecar",
            "--prometheus.url=http://localhost:9090/",
            "--tsdb.path",
            "/prometheus",
            "--shipper.upload-compacted",
            "--grpc-address=:10901",
            "--reloader.config-file=/etc/prometheus/config/prometheus.yaml.gz",
            "--min-time",
            "-2h",
        ]);
        assert_eq!(operator.prometheus_url, "http://localhost:9090/");
        assert_eq!(operator.tsdb_path, PathBuf::from("/prometheus"));
        assert!(operator.shipper_upload_compacted);
        assert_eq!(operator.min_time, "-2h");
        assert_eq!(operator.grpc.grpc_address.to_string(), "0.0.0.0:10901");
        assert_eq!(
            operator.ignored_flags,
            ["--reloader.config-file=/etc/prometheus/config/prometheus.yaml.gz"]
        );
        assert!(!parse(&["sidecar", "--shipper.upload-compacted=false"]).shipper_upload_compacted);
    }

    #[test]
    fn unequal_block_durations_refuse_uploads_unless_compacted_uploads_are_asked_for() {
        let flags = |min: &str, max: &str| {
            std::collections::BTreeMap::from([
                ("storage.tsdb.min-block-duration".to_owned(), min.to_owned()),
                ("storage.tsdb.max-block-duration".to_owned(), max.to_owned()),
            ])
        };
        assert_eq!(
            check_block_durations(&flags("2h", "2h"), false),
            BlockDurations::Equal2h
        );
        assert_eq!(
            check_block_durations(&flags("1h", "1h"), false),
            BlockDurations::EqualNot2h("1h".to_owned())
        );
        assert_eq!(
            check_block_durations(&flags("2h", "36h"), false),
            BlockDurations::Compacting {
                min: "2h".to_owned(),
                max: "36h".to_owned()
            }
        );
        assert_eq!(
            check_block_durations(&flags("2h", "36h"), true),
            BlockDurations::Equal2h
        );
    }

    #[test]
    fn min_time_accepts_rfc3339_and_durations() {
        assert_eq!(
            parse_min_time("0000-01-01T00:00:00Z", 0).unwrap(),
            -62_167_219_200_000
        );
        assert_eq!(parse_min_time("1970-01-01T00:00:01Z", 0).unwrap(), 1000);
        assert_eq!(parse_min_time("-2h", 10_000_000).unwrap(), 2_800_000);
        assert!(parse_min_time("yesterday", 0).is_err());
    }
}
