//! The querier (Thanos' `query`): one global, de-duplicated PromQL view over every store.
//!
//! **Mission.** Accept Prometheus HTTP API queries, fetch the series they need from every
//! StoreAPI endpoint that can hold them (sidecars, store gateways, other queriers), merge and
//! de-duplicate replicas, evaluate PromQL with [`promql_engine`] and answer exactly as
//! Prometheus (and Thanos) would. The same fan-out is served again over gRPC as a StoreAPI so
//! queriers can stack.
//!
//! **Invariants.**
//! - A request reaches only healthy stores whose time range and external labels can match it
//!   (`storeapi::store_matches`); stores are asked in parallel and their sorted answers merged.
//! - With de-duplication on (the default when `--query.replica-label` is set), replica labels
//!   never appear in answers and series differing only in them become one series, merged with
//!   Thanos' penalty algorithm ([`dedup`]): no doubled samples, gaps of one replica filled by
//!   another.
//! - A failing store never kills the process: with partial responses on, the answer comes from
//!   the rest plus a warning naming the store; off, the request fails with `422 execution`.
//! - PromQL evaluation never runs on an async worker: it runs on the blocking pool and reaches
//!   the stores through the runtime handle ([`queryable`]).
//! - Errors reach clients as Prometheus' error JSON with its `errorType` and status code.
//!
//! **Modules.** [`discovery`] (flags, SD config and files, DNS), [`endpoints`] (store health), [`proxy`] (fan-out and merge),
//! [`dedup`] (penalty de-duplication), [`downsample`] (resolution and aggregate choice),
//! [`queryable`] (the engine's storage), [`api`] (HTTP handlers), [`params`] and [`render`]
//! (Prometheus' parameter and JSON formats), [`store_api`] (the StoreAPI server), [`error`].
//!
//! **Not yet.** Round-robin over an endpoint group's addresses (a group is one endpoint whose
//! connection fails over between them), per-endpoint gRPC compression and TLS minimum version
//! (checked, not used), the counter-reset
//! adjustment of de-duplicated counters, query explain/analyze, exemplars, rules, targets.

pub mod api;
pub mod dedup;
pub mod discovery;
pub mod downsample;
pub mod endpoints;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod params;
pub mod proxy;
pub mod queryable;
pub mod render;
mod series;
pub mod store_api;

use std::sync::Arc;
use std::time::Duration;

use promql_engine::{Engine, EngineOptions, MemoryBudget};
use service_core::{
    GrpcClientFlags, GrpcFlags, GrpcServer, HttpFlags, HttpServer, LogFlags, PromDuration,
    RunGroup, ServiceConfig, ServiceContext, TracingFlags,
};

pub use error::{Error, Result};

use crate::api::{Api, ApiSettings};
use crate::discovery::{Discovery, DiscoveryConfig};
use crate::endpoints::StoreSet;
use crate::proxy::{FetchLimits, Proxy};
use crate::store_api::QueryStore;

/// The querier's flags, named as Thanos' `query` names them.
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
    pub grpc_client: GrpcClientFlags,

    /// Compression algorithm to use for gRPC requests to stores: snappy or none. Requests go
    /// uncompressed either way (our client cannot send snappy; every store accepts plain
    /// requests); snappy is accepted so that a Thanos command line starts, with a warning.
    #[arg(
        long = "grpc-compression",
        value_name = "ALGORITHM",
        default_value = "none",
        value_parser = ["snappy", "none"]
    )]
    pub grpc_compression: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub log: LogFlags,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub tracing: TracingFlags,

    /// Addresses of statically configured store API servers (repeatable). The scheme may be
    /// prefixed with 'dns+' or 'dnssrv+' to detect store API servers through respective DNS
    /// lookups.
    #[arg(long = "endpoint", alias = "store", value_name = "ADDRESS")]
    pub endpoints: Vec<String>,

    /// Addresses of only statically configured store API servers that are always used, even if
    /// the health check fails. Useful if you have a caching layer on top.
    #[arg(long = "endpoint-strict", value_name = "ADDRESS")]
    pub strict_endpoints: Vec<String>,

    /// (Deprecated) DNS name of a group of equivalent API servers (repeatable), queried as one
    /// endpoint instead of fanning out to each; its connection moves to another of the name's
    /// addresses when one fails. Use it for HA groups of Thanos components.
    #[arg(long = "endpoint-group", value_name = "ADDRESS")]
    pub endpoint_groups: Vec<String>,

    /// (Deprecated) Like --endpoint-group, and always queried, even if the health check fails.
    #[arg(long = "endpoint-group-strict", value_name = "ADDRESS")]
    pub strict_endpoint_groups: Vec<String>,

    /// Alternative to 'endpoint.sd-config-file' flag (mutually exclusive). Content of Config
    /// File with endpoint definitions.
    #[arg(long = "endpoint.sd-config", value_name = "YAML")]
    pub endpoint_sd_config: Option<String>,

    /// Path to Config File with endpoint definitions.
    #[arg(
        long = "endpoint.sd-config-file",
        value_name = "PATH",
        conflicts_with = "endpoint_sd_config"
    )]
    pub endpoint_sd_config_file: Option<std::path::PathBuf>,

    /// Interval between endpoint config refreshes.
    #[arg(
        long = "endpoint.sd-config-reload-interval",
        value_name = "DURATION",
        default_value = "5m"
    )]
    pub endpoint_sd_config_reload_interval: PromDuration,

    /// Path to files that contain addresses of store API servers. The path can be a glob pattern
    /// (repeatable).
    #[arg(long = "store.sd-files", value_name = "PATH")]
    pub store_sd_files: Vec<String>,

    /// Refresh interval to re-read file SD files. It is used as a resync fallback.
    #[arg(
        long = "store.sd-interval",
        value_name = "DURATION",
        default_value = "5m"
    )]
    pub store_sd_interval: PromDuration,

    /// Name servers for `dns+`, `dnssrv+` and `dnssrvnoa+` lookups instead of the system's
    /// (set by tests and embedders; not a flag).
    #[arg(skip)]
    pub dns_nameservers: Vec<std::net::SocketAddr>,

    /// Interval between DNS resolutions.
    #[arg(
        long = "store.sd-dns-interval",
        value_name = "DURATION",
        default_value = "30s"
    )]
    pub store_sd_dns_interval: PromDuration,

    /// If a Store doesn't send any data in this specified duration then a Store will be ignored
    /// and partial data will be returned if it's enabled. 0 disables timeout.
    #[arg(
        long = "store.response-timeout",
        value_name = "DURATION",
        default_value = "0ms"
    )]
    pub store_response_timeout: PromDuration,

    /// Timeout of gRPC Info requests.
    #[arg(
        long = "endpoint.info-timeout",
        value_name = "DURATION",
        default_value = "5s",
        hide = true
    )]
    pub endpoint_info_timeout: PromDuration,

    /// Labels to treat as a replica indicator along which data is deduplicated. Still you will
    /// be able to query without deduplication using 'dedup=false' parameter.
    #[arg(
        long = "query.replica-label",
        value_name = "LABEL",
        value_delimiter = ','
    )]
    pub replica_labels: Vec<String>,

    /// Maximum time to process query by query node.
    #[arg(long = "query.timeout", value_name = "DURATION", default_value = "2m")]
    pub query_timeout: PromDuration,

    /// Maximum number of queries processed concurrently by query node.
    #[arg(long = "query.max-concurrent", value_name = "N", default_value_t = 20)]
    pub max_concurrent: usize,

    /// The maximum lookback duration for retrieving metrics during expression evaluations.
    #[arg(long = "query.lookback-delta", value_name = "DURATION")]
    pub lookback_delta: Option<PromDuration>,

    /// Maximum samples allowed in memory for a single query.
    #[arg(
        long = "query.max-samples",
        value_name = "N",
        default_value_t = 50_000_000
    )]
    pub max_samples: usize,

    /// The most series one query may fetch from stores, counted per store as they arrive
    /// (before replicas are merged); over it the query fails with a 422 error. 0 means no limit.
    /// A thanos-rs flag (Thanos has none).
    #[arg(
        long = "query.max-fetched-series",
        value_name = "N",
        default_value_t = 0
    )]
    pub max_fetched_series: u64,

    /// The most bytes of store answers one query may fetch (encoded size, as Thanos writes
    /// sizes, e.g. 512MB); over it the query fails with a 422 error. 0 means no limit. A
    /// thanos-rs flag (Thanos has none).
    #[arg(
        long = "query.max-fetched-bytes",
        value_name = "BYTES",
        default_value = "0"
    )]
    pub max_fetched_bytes: String,

    /// Memory shared by all concurrent queries, as Thanos writes sizes (e.g. 2GB): a query that
    /// would take more than is left fails with a 422 error instead of growing the process. Empty
    /// means half of the machine's or the container's memory; 0 means no budget.
    #[arg(long = "query.memory-budget", value_name = "BYTES", default_value = "")]
    pub memory_budget: String,

    /// Set default step for range queries. Default step is only used when step is not set in
    /// UI.
    #[arg(
        long = "query.default-step",
        value_name = "DURATION",
        default_value = "1s"
    )]
    pub default_step: PromDuration,

    /// Enable partial response for queries if no partial_response param is specified.
    /// --no-query.partial-response for disabling.
    #[arg(
        long = "query.partial-response",
        value_name = "BOOL",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub partial_response: bool,

    /// Disable partial response (see --query.partial-response).
    #[arg(long = "no-query.partial-response")]
    pub no_partial_response: bool,

    /// Enable automatic adjustment (step / 5) to what source of data should be used in store
    /// gateways if no max_source_resolution param is specified.
    #[arg(long = "query.auto-downsampling")]
    pub auto_downsampling: bool,

    /// Default max_source_resolution of instant queries.
    #[arg(
        long = "query.instant.default.max_source_resolution",
        value_name = "DURATION",
        default_value = "0s",
        hide = true
    )]
    pub instant_max_source_resolution: PromDuration,

    /// Static prefix for all HTML links and redirect URLs in the UI query web interface.
    #[arg(
        long = "web.external-prefix",
        value_name = "PREFIX",
        default_value = ""
    )]
    pub web_external_prefix: String,

    /// Prefix for API and UI endpoints. This allows thanos UI to be served on a sub-path.
    #[arg(long = "web.route-prefix", value_name = "PREFIX", default_value = "")]
    pub web_route_prefix: String,
}

impl ServiceConfig for Config {
    fn log_flags(&self) -> &LogFlags {
        &self.log
    }

    fn tracing_flags(&self) -> &TracingFlags {
        &self.tracing
    }
}

fn millis(duration: PromDuration) -> i64 {
    i64::try_from(duration.get().as_millis()).unwrap_or(i64::MAX)
}

/// The budget `--query.memory-budget` asks for: its size, half the memory when empty, none at 0.
fn memory_budget(flag: &str) -> Result<Option<Arc<MemoryBudget>>> {
    let bytes = if flag.trim().is_empty() {
        service_core::size::memory_limit().map_or(0, |limit| limit / 2)
    } else {
        service_core::size::parse_bytes(flag).ok_or_else(|| Error::Config {
            flag: "query.memory-budget",
            message: format!("{flag:?} is not a size such as 2GB"),
        })?
    };
    Ok((bytes > 0).then(|| {
        Arc::new(MemoryBudget::new(
            usize::try_from(bytes).unwrap_or(usize::MAX),
        ))
    }))
}

/// The route prefix normalised to `/x/y` (or empty).
fn route_prefix(flag: &str) -> String {
    let trimmed = flag.trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

/// Runs the querier until `ctx.shutdown` is cancelled or a server fails.
pub async fn run(config: Config, ctx: ServiceContext) -> Result<()> {
    if config.default_step.get().is_zero() {
        return Err(Error::Config {
            flag: "query.default-step",
            message: "must be positive".to_owned(),
        });
    }
    if config.grpc_compression == "snappy" {
        tracing::warn!(
            "--grpc-compression=snappy: requests to stores are sent uncompressed (snappy requests are not implemented)"
        );
    }
    let discovery = Discovery::new(
        DiscoveryConfig {
            endpoints: config.endpoints.clone(),
            strict_endpoints: config.strict_endpoints.clone(),
            endpoint_groups: config.endpoint_groups.clone(),
            strict_endpoint_groups: config.strict_endpoint_groups.clone(),
            sd_config: config.endpoint_sd_config.clone(),
            sd_config_file: config.endpoint_sd_config_file.clone(),
            sd_config_reload_interval: config.endpoint_sd_config_reload_interval.get(),
            sd_files: config.store_sd_files.clone(),
            sd_files_interval: config.store_sd_interval.get(),
            dns_interval: config.store_sd_dns_interval.get(),
            nameservers: config.dns_nameservers.clone(),
        },
        &ctx.registry,
    )
    .map_err(|error| Error::Config {
        flag: "endpoint.sd-config",
        message: error.to_string(),
    })?;
    let stores = Arc::new(StoreSet::new(
        discovery,
        config.grpc_client.clone(),
        config.endpoint_info_timeout.get(),
        &ctx.registry,
    )?);
    let proxy = Arc::new(Proxy::new(
        Arc::clone(&stores),
        config.store_response_timeout.get(),
    ));
    let fetch_limits = FetchLimits {
        series: config.max_fetched_series,
        bytes: service_core::size::parse_bytes(&config.max_fetched_bytes).ok_or_else(|| {
            Error::Config {
                flag: "query.max-fetched-bytes",
                message: format!("bad size {:?}", config.max_fetched_bytes),
            }
        })?,
    };
    let memory_budget = memory_budget(&config.memory_budget)?;
    let memory_budget_for_store = memory_budget.clone();
    match &memory_budget {
        Some(budget) => tracing::info!(bytes = budget.limit(), "query memory budget"),
        None => tracing::info!("no query memory budget"),
    }
    let engine = Engine::new(EngineOptions {
        lookback_delta: config
            .lookback_delta
            .map_or(Duration::from_secs(300), PromDuration::get),
        max_samples: config.max_samples,
        timeout: config.query_timeout.get(),
        memory_budget,
        ..EngineOptions::default()
    });
    let settings = ApiSettings {
        replica_labels: config.replica_labels.clone(),
        partial_response: config.partial_response && !config.no_partial_response,
        auto_downsampling: config.auto_downsampling,
        default_step: millis(config.default_step),
        timeout: config.query_timeout.get(),
        max_concurrent: config.max_concurrent,
        instant_max_source_resolution: millis(config.instant_max_source_resolution),
        fetch_limits,
    };
    let api = Arc::new(Api::new(
        Arc::clone(&proxy),
        engine,
        settings,
        &ctx.registry,
    )?);
    let prefix = route_prefix(&config.web_route_prefix);
    let routes = axum::Router::new().nest(&format!("{prefix}/api/v1"), api.router());
    let http = HttpServer::bind(&config.http, &ctx, routes).await?;
    let mut grpc = GrpcServer::bind(&config.grpc, &ctx).await?;
    let query_store = QueryStore::new(Arc::clone(&proxy), fetch_limits, memory_budget_for_store);
    grpc.add_service(storeapi::store_server(query_store.clone()));
    grpc.add_service(storeapi::info_server(query_store));
    tracing::info!(http = %http.local_addr(), grpc = %grpc.local_addr(), endpoints = ?config.endpoints, "querier listening");

    stores.update().await;
    ctx.readiness.set_ready();

    let mut group = RunGroup::new(ctx.shutdown.clone());
    group.add("http", http.serve(ctx.shutdown.clone()));
    group.add("grpc", grpc.serve(ctx.shutdown.clone()));
    group.add("endpoints", Arc::clone(&stores).run(ctx.shutdown.clone()));
    group.run().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    fn parse(args: &[&str]) -> Config {
        Cli::try_parse_from(std::iter::once("querier").chain(args.iter().copied()))
            .unwrap()
            .config
    }

    #[test]
    fn defaults_match_thanos() {
        let config = parse(&[]);
        assert_eq!(config.query_timeout.get(), Duration::from_secs(120));
        assert_eq!(config.max_concurrent, 20);
        assert_eq!(config.max_samples, 50_000_000);
        assert_eq!(config.default_step.get(), Duration::from_secs(1));
        assert!(config.partial_response);
        assert!(!config.auto_downsampling);
        assert_eq!(config.store_sd_dns_interval.get(), Duration::from_secs(30));
        assert_eq!(config.store_sd_interval.get(), Duration::from_secs(300));
        assert_eq!(
            config.endpoint_sd_config_reload_interval.get(),
            Duration::from_secs(300)
        );
        assert!(config.endpoint_sd_config.is_none() && config.store_sd_files.is_empty());
        assert!(config.store_response_timeout.get().is_zero());
        assert_eq!(config.lookback_delta, None);
    }

    #[test]
    fn memory_budget_defaults_to_half_the_memory() {
        let config = parse(&[]);
        let half = service_core::size::memory_limit().unwrap() / 2;
        let budget = memory_budget(&config.memory_budget).unwrap().unwrap();
        assert_eq!(budget.limit() as u64, half);
        let config = parse(&["--query.memory-budget=2GB"]);
        let budget = memory_budget(&config.memory_budget).unwrap().unwrap();
        assert_eq!(budget.limit(), 2 << 30);
        assert!(memory_budget("0").unwrap().is_none());
        let error = memory_budget("two gigs").unwrap_err().to_string();
        assert!(error.contains("query.memory-budget"), "{error}");
    }

    #[test]
    fn parses_thanos_spelling() {
        let config = parse(&[
            "--endpoint=a:1",
            "--store=b:2",
            "--endpoint=dns+c:3",
            "--query.replica-label=replica,rule_replica",
            "--query.replica-label=prometheus_replica",
            "--query.partial-response=false",
            "--query.auto-downsampling",
            "--web.route-prefix=/thanos/",
        ]);
        assert_eq!(config.endpoints, vec!["a:1", "b:2", "dns+c:3"]);
        assert_eq!(
            config.replica_labels,
            vec!["replica", "rule_replica", "prometheus_replica"]
        );
        assert!(!config.partial_response);
        assert!(config.auto_downsampling);
        assert_eq!(route_prefix(&config.web_route_prefix), "/thanos");
        assert!(parse(&["--no-query.partial-response"]).no_partial_response);
        assert!(parse(&["--query.partial-response"]).partial_response);
        let sd = parse(&[
            "--endpoint-strict=s:1",
            "--endpoint.sd-config-file=/etc/endpoints.yaml",
            "--store.sd-files=/etc/sd/*.json",
            "--store.sd-files=/etc/more.yml",
            "--store.sd-interval=1m",
            "--store.sd-dns-interval=10s",
        ]);
        assert_eq!(sd.strict_endpoints, vec!["s:1"]);
        assert_eq!(
            sd.endpoint_sd_config_file.as_deref(),
            Some(std::path::Path::new("/etc/endpoints.yaml"))
        );
        assert_eq!(sd.store_sd_files, vec!["/etc/sd/*.json", "/etc/more.yml"]);
        assert_eq!(sd.store_sd_interval.get(), Duration::from_secs(60));
        assert_eq!(sd.store_sd_dns_interval.get(), Duration::from_secs(10));
        let groups = parse(&[
            "--endpoint-group=dns+query:10901",
            "--endpoint-group-strict=receive:10901",
            "--grpc-compression=snappy",
        ]);
        assert_eq!(groups.endpoint_groups, vec!["dns+query:10901"]);
        assert_eq!(groups.strict_endpoint_groups, vec!["receive:10901"]);
        assert_eq!(groups.grpc_compression, "snappy");
        assert_eq!(parse(&[]).grpc_compression, "none");
        assert!(Cli::try_parse_from(["querier", "--grpc-compression=gzip"]).is_err());
        let conflict = Cli::try_parse_from([
            "querier",
            "--endpoint.sd-config=endpoints: []",
            "--endpoint.sd-config-file=/x",
        ]);
        assert!(conflict.is_err());
    }
}
