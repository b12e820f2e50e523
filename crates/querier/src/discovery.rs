//! Where the store addresses come from: flags, endpoint SD config, file SD and DNS.
//!
//! Every update round of the [store set](crate::endpoints::StoreSet) asks [`Discovery::targets`]
//! for the current addresses. Sources, as Thanos' `query` has them:
//! - `--endpoint` (and `--endpoint-strict`) flags;
//! - `--endpoint-group` (and `--endpoint-group-strict`) flags and SD entries with `group: true`:
//!   one endpoint for a group of equivalent servers. A plain or `dns+` group address is dialled by
//!   its host name, so the connection tries the name's addresses in turn (failover, where Thanos
//!   round-robins); a `dnssrv+`/`dnssrvnoa+` group is dialled at the first address its records give;
//! - `--endpoint.sd-config` / `--endpoint.sd-config-file`: YAML `endpoints: [{address, strict,
//!   group, client_config}]` and `default_client_config`; the file is re-read when its
//!   modification time or size changes and at least every `--endpoint.sd-config-reload-interval`.
//!   An endpoint's `client_config` (Thanos' newer releases call it `grpc_client_config`), else the
//!   `default_client_config`, sets how its addresses are dialled: `tls_config: {enabled,
//!   insecure_skip_verify, cert_file, key_file, ca_file}` and `server_name`. One that sets none of
//!   these leaves the `--grpc-client-*` flags in force, as in Thanos; `compression` and TLS
//!   `min_version` are checked and not used (requests go uncompressed; rustls negotiates 1.2+);
//! - `--store.sd-files`: Prometheus file SD files (YAML or JSON lists of `{targets, labels}`;
//!   `*`/`?` globs in the file name), re-read when they change and every `--store.sd-interval`.
//!
//! Any address may carry a DNS prefix, resolved at most once per `--store.sd-dns-interval`:
//! `dns+host:port` or `dnsdualstack+host:port` (A/AAAA: every address with the port),
//! `dnssrv+_svc._tcp.name` (SRV, then
//! A/AAAA of every target, with the target's port) and `dnssrvnoa+_svc._tcp.name` (SRV targets
//! as `host:port`, without address lookups). A failed or empty resolution keeps the last good
//! addresses of that name, is logged and counted in `thanos_query_endpoints_dns_failures_total`.
//! A file that cannot be read or parsed likewise keeps its last good content.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use serde::Deserialize;
use service_core::GrpcClientFlags;

/// What discovery needs from the flags.
#[derive(Debug, Clone, Default)]
pub struct DiscoveryConfig {
    /// `--endpoint` addresses (may carry DNS prefixes).
    pub endpoints: Vec<String>,
    /// `--endpoint-strict` addresses: always queried, even when their health check fails.
    pub strict_endpoints: Vec<String>,
    /// `--endpoint-group` addresses: each one endpoint however many addresses it has.
    pub endpoint_groups: Vec<String>,
    /// `--endpoint-group-strict` addresses.
    pub strict_endpoint_groups: Vec<String>,
    /// `--endpoint.sd-config`: endpoint SD YAML given inline.
    pub sd_config: Option<String>,
    /// `--endpoint.sd-config-file`: endpoint SD YAML file.
    pub sd_config_file: Option<PathBuf>,
    /// `--endpoint.sd-config-reload-interval`.
    pub sd_config_reload_interval: Duration,
    /// `--store.sd-files`: file SD paths or globs.
    pub sd_files: Vec<String>,
    /// `--store.sd-interval`.
    pub sd_files_interval: Duration,
    /// `--store.sd-dns-interval`.
    pub dns_interval: Duration,
    /// Name servers for `dns*+` lookups; empty means the system's (`/etc/resolv.conf`, and the
    /// system resolver with `/etc/hosts` for `dns+`).
    pub nameservers: Vec<SocketAddr>,
}

/// A configuration error found while loading discovery sources.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The endpoint SD YAML is malformed.
    #[error("parsing endpoint SD config {origin}: {message}")]
    SdConfig {
        /// Flag or file it came from.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A file SD file is malformed.
    #[error("parsing file SD {path}: {message}")]
    FileSd {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A file cannot be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A metric cannot be registered.
    #[error("registering discovery metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// One address to check and query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port`.
    pub address: String,
    /// Queried even when its health check fails.
    pub strict: bool,
    /// How to dial it when its SD entry says (`None`: the `--grpc-client-*` flags).
    pub client: Option<Arc<GrpcClientFlags>>,
}

/// An address before DNS resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spec {
    pub(crate) address: String,
    pub(crate) strict: bool,
    /// One endpoint for all the address stands for.
    pub(crate) group: bool,
    /// The SD entry's own dialling settings (`None`: the flags).
    pub(crate) client: Option<Arc<GrpcClientFlags>>,
}

impl Spec {
    /// An address from a flag or file SD: dialled per the flags.
    fn plain(address: String, strict: bool) -> Self {
        Self {
            address,
            strict,
            group: false,
            client: None,
        }
    }

    /// A group address from a flag.
    fn group(address: String, strict: bool) -> Self {
        Self {
            group: true,
            ..Self::plain(address, strict)
        }
    }
}

/// Thanos' endpoint SD YAML.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SdConfig {
    #[serde(default)]
    endpoints: Vec<SdEndpoint>,
    /// Dialling settings of the endpoints without their own.
    #[serde(default)]
    default_client_config: Option<SdClientConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SdEndpoint {
    address: String,
    #[serde(default)]
    strict: bool,
    /// One endpoint for all the address stands for.
    #[serde(default)]
    group: bool,
    /// gRPC service config of a group (accepted, not used).
    #[serde(default)]
    #[allow(dead_code)]
    service_config: Option<String>,
    #[serde(default, alias = "grpc_client_config")]
    client_config: Option<SdClientConfig>,
}

/// How to dial an endpoint (Thanos' per-endpoint gRPC client config).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SdClientConfig {
    #[serde(default)]
    tls_config: SdTlsConfig,
    #[serde(default)]
    server_name: String,
    /// `none` or `snappy` (checked, not used: requests go uncompressed).
    #[serde(default, alias = "compression_type")]
    compression: String,
}

/// An endpoint's TLS settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SdTlsConfig {
    #[serde(default)]
    enabled: bool,
    #[serde(default)]
    insecure_skip_verify: bool,
    #[serde(default)]
    cert_file: String,
    #[serde(default)]
    key_file: String,
    #[serde(default)]
    ca_file: String,
    /// `VersionTLS12` or `VersionTLS13` (checked, not used: rustls negotiates 1.2 or 1.3).
    #[serde(default)]
    min_version: String,
}

impl SdClientConfig {
    /// The client settings this config stands for: `None` when it sets no TLS field and no
    /// server name (the flags apply, as Thanos does), else exactly what it says (TLS off when
    /// `enabled` is false).
    fn flags(&self) -> Result<Option<GrpcClientFlags>, String> {
        if !["", "none", "snappy"].contains(&self.compression.as_str()) {
            return Err(format!(
                "invalid compression {:?}, must be 'none' or 'snappy'",
                self.compression
            ));
        }
        let tls = &self.tls_config;
        if !["", "VersionTLS12", "VersionTLS13"].contains(&tls.min_version.as_str()) {
            return Err(format!(
                "invalid TLS min_version {:?}, must be VersionTLS12 or VersionTLS13",
                tls.min_version
            ));
        }
        let path = |text: &str| (!text.is_empty()).then(|| PathBuf::from(text));
        let flags = GrpcClientFlags {
            grpc_client_tls_secure: tls.enabled,
            grpc_client_tls_skip_verify: tls.insecure_skip_verify,
            grpc_client_tls_cert: path(&tls.cert_file),
            grpc_client_tls_key: path(&tls.key_file),
            grpc_client_tls_ca: path(&tls.ca_file),
            grpc_client_server_name: (!self.server_name.is_empty())
                .then(|| self.server_name.clone()),
        };
        let sets_nothing = !flags.grpc_client_tls_secure
            && flags.grpc_client_tls_cert.is_none()
            && flags.grpc_client_tls_key.is_none()
            && flags.grpc_client_tls_ca.is_none()
            && flags.grpc_client_server_name.is_none();
        Ok((!sets_nothing).then_some(flags))
    }
}

/// One Prometheus file SD target group.
#[derive(Debug, Deserialize)]
struct FileSdGroup {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    labels: BTreeMap<String, String>,
}

pub(crate) fn parse_sd_config(text: &str, origin: &str) -> Result<Vec<Spec>, DiscoveryError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let config: SdConfig =
        serde_yaml_ng::from_str(text).map_err(|error| DiscoveryError::SdConfig {
            origin: origin.to_owned(),
            message: error.to_string(),
        })?;
    let error = |message: String| DiscoveryError::SdConfig {
        origin: origin.to_owned(),
        message,
    };
    let default_client = match &config.default_client_config {
        Some(client) => client
            .flags()
            .map_err(|message| error(format!("default_client_config: {message}")))?
            .map(Arc::new),
        None => None,
    };
    let mut specs = Vec::with_capacity(config.endpoints.len());
    for endpoint in config.endpoints {
        let address = endpoint.address.trim().to_owned();
        if address.is_empty() {
            return Err(error("endpoint with an empty address".to_owned()));
        }
        let client = match &endpoint.client_config {
            Some(client) => client
                .flags()
                .map_err(|message| error(format!("endpoint {address}: {message}")))?
                .map(Arc::new),
            None => default_client.clone(),
        };
        specs.push(Spec {
            address,
            strict: endpoint.strict,
            group: endpoint.group,
            client,
        });
    }
    Ok(specs)
}

pub(crate) fn parse_file_sd(text: &str, path: &Path) -> Result<Vec<Spec>, DiscoveryError> {
    let error = |message: String| DiscoveryError::FileSd {
        path: path.display().to_string(),
        message,
    };
    let is_json = path.extension().is_some_and(|ext| ext == "json");
    let groups: Vec<FileSdGroup> = if text.trim().is_empty() {
        Vec::new()
    } else if is_json {
        serde_json::from_str(text).map_err(|e| error(e.to_string()))?
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| error(e.to_string()))?
    };
    Ok(groups
        .into_iter()
        .flat_map(|group| group.targets)
        .map(|address| Spec::plain(address, false))
        .collect())
}

/// Whether `name` matches the glob `pattern` (`*` any run, `?` one character).
pub(crate) fn glob_matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    let (mut p, mut n) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                backtrack = Some((p, n));
                p += 1;
            }
            Some(&c) if c == '?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match backtrack {
                Some((star, matched)) => {
                    p = star + 1;
                    n = matched + 1;
                    backtrack = Some((star, matched + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// The files a file SD path stands for (globs only in the file name).
fn expand(pattern: &str) -> Vec<PathBuf> {
    let path = Path::new(pattern);
    let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
        return vec![path.to_owned()];
    };
    if !name.contains(['*', '?']) {
        return vec![path.to_owned()];
    }
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .filter(|entry| {
                    entry
                        .file_name()
                        .to_str()
                        .is_some_and(|file| glob_matches(name, file))
                })
                .map(|entry| entry.path())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// What identifies a file's version without reading it.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// A file re-read when it changes or its interval passes; keeps its last good content.
#[derive(Debug, Default)]
struct WatchedFile {
    stamp: Option<(SystemTime, u64)>,
    read_at: Option<Instant>,
    specs: Vec<Spec>,
}

impl WatchedFile {
    /// Re-reads `path` with `parse` if it changed or `interval` passed.
    fn refresh(
        &mut self,
        path: &Path,
        interval: Duration,
        parse: impl Fn(&str, &Path) -> Result<Vec<Spec>, DiscoveryError>,
    ) {
        let current = stamp(path);
        let due = self.read_at.is_none_or(|at| at.elapsed() >= interval);
        if !due && current == self.stamp {
            return;
        }
        self.read_at = Some(Instant::now());
        self.stamp = current;
        let loaded = std::fs::read_to_string(path)
            .map_err(|source| DiscoveryError::Io {
                path: path.display().to_string(),
                source,
            })
            .and_then(|text| parse(&text, path));
        match loaded {
            Ok(specs) => {
                if specs != self.specs {
                    tracing::info!(file = %path.display(), endpoints = specs.len(), "reloaded endpoints");
                }
                self.specs = specs;
            }
            Err(error) => {
                tracing::warn!(error = %error, "keeping the last good endpoints of the file");
            }
        }
    }
}

#[derive(Debug, Default)]
struct Files {
    sd_config: WatchedFile,
    sd_files: BTreeMap<PathBuf, WatchedFile>,
}

#[derive(Debug)]
struct Resolved {
    at: Instant,
    addresses: Vec<String>,
}

/// The DNS provider's metrics, named as Thanos' querier registers them.
#[derive(Debug, Clone)]
struct DnsMetrics {
    lookups: prometheus::IntCounter,
    failures: prometheus::IntCounter,
    results: prometheus::IntGaugeVec,
}

impl DnsMetrics {
    fn register(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        let lookups = prometheus::IntCounter::new(
            "thanos_query_endpoints_dns_lookups_total",
            "The number of DNS lookups resolutions attempts",
        )?;
        let failures = prometheus::IntCounter::new(
            "thanos_query_endpoints_dns_failures_total",
            "The number of DNS lookup failures",
        )?;
        let results = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "thanos_query_endpoints_dns_provider_results",
                "The number of resolved endpoints for each configured address",
            ),
            &["addr"],
        )?;
        registry.register(Box::new(lookups.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(results.clone()))?;
        Ok(Self {
            lookups,
            failures,
            results,
        })
    }
}

/// The discovery sources; see the [module docs](self).
#[derive(Debug)]
pub struct Discovery {
    config: DiscoveryConfig,
    inline: Vec<Spec>,
    resolver: Option<TokioResolver>,
    files: Mutex<Files>,
    dns: tokio::sync::Mutex<HashMap<String, Resolved>>,
    metrics: DnsMetrics,
}

impl Discovery {
    /// Discovery over `config`; the inline SD config and the SD config file must parse (a file
    /// that later breaks keeps its last good content). Registers the DNS metrics on `registry`.
    pub fn new(
        config: DiscoveryConfig,
        registry: &prometheus::Registry,
    ) -> Result<Self, DiscoveryError> {
        let inline = match &config.sd_config {
            Some(text) => parse_sd_config(text, "--endpoint.sd-config")?,
            None => Vec::new(),
        };
        let mut files = Files::default();
        if let Some(path) = &config.sd_config_file {
            let text = std::fs::read_to_string(path).map_err(|source| DiscoveryError::Io {
                path: path.display().to_string(),
                source,
            })?;
            files.sd_config.specs = parse_sd_config(&text, &path.display().to_string())?;
            files.sd_config.stamp = stamp(path);
            files.sd_config.read_at = Some(Instant::now());
        }
        let resolver = build_resolver(&config.nameservers);
        Ok(Self {
            metrics: DnsMetrics::register(registry)?,
            config,
            inline,
            resolver,
            files: Mutex::new(files),
            dns: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The configured addresses before DNS resolution, after reloading changed files.
    fn specs(&self) -> Vec<Spec> {
        let mut specs: Vec<Spec> = self
            .config
            .endpoints
            .iter()
            .map(|address| Spec::plain(address.clone(), false))
            .chain(
                self.config
                    .strict_endpoints
                    .iter()
                    .map(|address| Spec::plain(address.clone(), true)),
            )
            .chain(
                self.config
                    .endpoint_groups
                    .iter()
                    .map(|address| Spec::group(address.clone(), false)),
            )
            .chain(
                self.config
                    .strict_endpoint_groups
                    .iter()
                    .map(|address| Spec::group(address.clone(), true)),
            )
            .chain(self.inline.iter().cloned())
            .collect();
        let Ok(mut files) = self.files.lock() else {
            return specs;
        };
        if let Some(path) = &self.config.sd_config_file {
            files
                .sd_config
                .refresh(path, self.config.sd_config_reload_interval, |text, path| {
                    parse_sd_config(text, &path.display().to_string())
                });
            specs.extend(files.sd_config.specs.iter().cloned());
        }
        let mut seen = Vec::new();
        for pattern in &self.config.sd_files {
            for path in expand(pattern) {
                let watched = files.sd_files.entry(path.clone()).or_default();
                watched.refresh(&path, self.config.sd_files_interval, parse_file_sd);
                specs.extend(watched.specs.iter().cloned());
                seen.push(path);
            }
        }
        files.sd_files.retain(|path, _| seen.contains(path));
        specs
    }

    /// Every address to check now: the specs of every source, DNS names resolved (at most once
    /// per DNS interval each), sorted and distinct (strict if any source says so; dialled per
    /// the first SD entry with its own client settings, if any).
    pub async fn targets(&self) -> Vec<Target> {
        let mut targets: BTreeMap<String, Target> = BTreeMap::new();
        for spec in self.specs() {
            let addresses = if spec.group {
                self.group_address(&spec.address)
                    .await
                    .into_iter()
                    .collect()
            } else {
                self.resolve(&spec.address).await
            };
            for address in addresses {
                let target = targets.entry(address.clone()).or_insert(Target {
                    address,
                    strict: false,
                    client: None,
                });
                target.strict |= spec.strict;
                if target.client.is_none() {
                    target.client.clone_from(&spec.client);
                }
            }
        }
        targets.into_values().collect()
    }

    /// The one address a group is dialled at: a plain or A-record address by its host name (the
    /// connection tries every address of the name in turn), an SRV group at the first address
    /// its records give (`None` while they give none).
    async fn group_address(&self, spec: &str) -> Option<String> {
        match dns_kind(spec) {
            None => Some(spec.to_owned()),
            Some((DnsKind::A, name)) => Some(name.to_owned()),
            Some(_) => self.resolve(spec).await.into_iter().next(),
        }
    }

    /// The addresses of one spec; DNS answers are cached for the DNS interval, and a failed
    /// lookup keeps the last good answer.
    async fn resolve(&self, spec: &str) -> Vec<String> {
        let Some((kind, name)) = dns_kind(spec) else {
            return vec![spec.to_owned()];
        };
        let mut cache = self.dns.lock().await;
        if let Some(resolved) = cache.get(spec)
            && resolved.at.elapsed() < self.config.dns_interval
        {
            return resolved.addresses.clone();
        }
        self.metrics.lookups.inc();
        let outcome = match kind {
            DnsKind::A => self.lookup_a(name).await,
            DnsKind::Srv => self.lookup_srv(name, true).await,
            DnsKind::SrvNoA => self.lookup_srv(name, false).await,
        };
        let addresses = match outcome {
            Ok(mut addresses) if !addresses.is_empty() => {
                addresses.sort();
                addresses.dedup();
                addresses
            }
            failed => {
                let error = failed.err().unwrap_or_else(|| "no records".to_owned());
                self.metrics.failures.inc();
                let previous = cache
                    .get(spec)
                    .map(|resolved| resolved.addresses.clone())
                    .unwrap_or_default();
                tracing::warn!(endpoint = %spec, error = %error, kept = previous.len(), "dns lookup failed; keeping the last good addresses");
                previous
            }
        };
        self.metrics
            .results
            .with_label_values(&[spec])
            .set(i64::try_from(addresses.len()).unwrap_or(i64::MAX));
        cache.insert(
            spec.to_owned(),
            Resolved {
                at: Instant::now(),
                addresses: addresses.clone(),
            },
        );
        addresses
    }

    async fn lookup_a(&self, target: &str) -> Result<Vec<String>, String> {
        let (host, port) = split_host_port(target)?;
        match &self.resolver {
            Some(resolver) if !self.config.nameservers.is_empty() => {
                let ips = resolver
                    .lookup_ip(host)
                    .await
                    .map_err(|error| error.to_string())?;
                Ok(ips
                    .iter()
                    .map(|ip| SocketAddr::new(ip, port).to_string())
                    .collect())
            }
            _ => tokio::net::lookup_host((host, port))
                .await
                .map(|found| found.map(|address| address.to_string()).collect())
                .map_err(|error| error.to_string()),
        }
    }

    async fn lookup_srv(&self, name: &str, resolve_targets: bool) -> Result<Vec<String>, String> {
        let Some(resolver) = &self.resolver else {
            return Err("no DNS resolver configured (no usable /etc/resolv.conf)".to_owned());
        };
        let srv = resolver
            .srv_lookup(name)
            .await
            .map_err(|error| error.to_string())?;
        let mut addresses = Vec::new();
        for record in srv.iter() {
            let target = record.target().to_utf8();
            let host = target.trim_end_matches('.');
            if !resolve_targets {
                addresses.push(format!("{host}:{}", record.port()));
                continue;
            }
            let ips = resolver
                .lookup_ip(target.as_str())
                .await
                .map_err(|error| format!("looking up {host}: {error}"))?;
            addresses.extend(
                ips.iter()
                    .map(|ip| SocketAddr::new(ip, record.port()).to_string()),
            );
        }
        Ok(addresses)
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum DnsKind {
    A,
    Srv,
    SrvNoA,
}

/// The DNS lookup a spec asks for, and the name to look up.
pub(crate) fn dns_kind(spec: &str) -> Option<(DnsKind, &str)> {
    if let Some(name) = spec.strip_prefix("dnssrvnoa+") {
        Some((DnsKind::SrvNoA, name))
    } else if let Some(name) = spec.strip_prefix("dnssrv+") {
        Some((DnsKind::Srv, name))
    } else if let Some(name) = spec.strip_prefix("dnsdualstack+") {
        Some((DnsKind::A, name))
    } else {
        spec.strip_prefix("dns+").map(|name| (DnsKind::A, name))
    }
}

pub(crate) fn split_host_port(target: &str) -> Result<(&str, u16), String> {
    let (host, port) = target
        .rsplit_once(':')
        .ok_or_else(|| format!("missing port in address {target:?}"))?;
    let port = port
        .parse()
        .map_err(|_| format!("invalid port in address {target:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host, port))
}

/// A hickory resolver on `nameservers` (UDP, no cache: every round asks again), or on the
/// system configuration when none are given; `None` when the system has no usable one.
fn build_resolver(nameservers: &[SocketAddr]) -> Option<TokioResolver> {
    if nameservers.is_empty() {
        return match TokioResolver::builder_tokio() {
            Ok(builder) => Some(builder.build()),
            Err(error) => {
                tracing::warn!(error = %error, "no system DNS configuration; dnssrv+ endpoints will not resolve");
                None
            }
        };
    }
    let mut config = ResolverConfig::new();
    for address in nameservers {
        config.add_name_server(NameServerConfig::new(*address, Protocol::Udp));
    }
    let mut builder =
        TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
    builder.options_mut().cache_size = 0;
    builder.options_mut().timeout = Duration::from_secs(2);
    builder.options_mut().attempts = 1;
    Some(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoint_sd_config() {
        let specs = parse_sd_config(
            "endpoints:\n  - address: a:1\n  - address: dns+b:2\n    strict: true\n  - address: c:3\n    group: true\n",
            "test",
        )
        .unwrap();
        assert_eq!(
            specs,
            vec![
                Spec::plain("a:1".into(), false),
                Spec::plain("dns+b:2".into(), true),
                Spec::group("c:3".into(), false),
            ]
        );
        assert!(parse_sd_config("endpoints:\n  - adress: a:1\n", "test").is_err());
        assert!(parse_sd_config("", "test").unwrap().is_empty());
    }

    #[test]
    fn endpoint_client_config_overrides_the_default_and_the_flags() {
        let specs = parse_sd_config(
            r#"
default_client_config:
  tls_config: {enabled: true, ca_file: /ca.pem}
  server_name: store.example
endpoints:
  - address: default:1
  - address: own:2
    client_config:
      tls_config: {enabled: true, insecure_skip_verify: true, cert_file: /c.pem, key_file: /k.pem}
      compression: snappy
  - address: newer-key:3
    grpc_client_config:
      tls_config: {enabled: false}
      compression_type: none
  - address: plaintext:4
    client_config:
      tls_config: {enabled: false, ca_file: /ca.pem}
"#,
            "test",
        )
        .unwrap();
        let client = |index: usize| specs[index].client.as_deref().cloned();
        assert_eq!(
            client(0),
            Some(GrpcClientFlags {
                grpc_client_tls_secure: true,
                grpc_client_tls_ca: Some("/ca.pem".into()),
                grpc_client_server_name: Some("store.example".into()),
                ..GrpcClientFlags::default()
            })
        );
        assert_eq!(
            client(1),
            Some(GrpcClientFlags {
                grpc_client_tls_secure: true,
                grpc_client_tls_skip_verify: true,
                grpc_client_tls_cert: Some("/c.pem".into()),
                grpc_client_tls_key: Some("/k.pem".into()),
                ..GrpcClientFlags::default()
            })
        );
        // Sets nothing: the flags apply (not the default config: the endpoint has its own).
        assert_eq!(client(2), None);
        // TLS explicitly off with a CA given: plaintext, not the flags.
        assert_eq!(
            client(3),
            Some(GrpcClientFlags {
                grpc_client_tls_ca: Some("/ca.pem".into()),
                ..GrpcClientFlags::default()
            })
        );
        let bad = parse_sd_config(
            "endpoints:\n  - address: a:1\n    client_config: {compression: gzip}\n",
            "test",
        )
        .unwrap_err();
        assert!(
            bad.to_string()
                .contains("endpoint a:1: invalid compression"),
            "{bad}"
        );
        assert!(
            parse_sd_config(
                "endpoints:\n  - address: a:1\n    client_config: {tls_config: {enable: true}}\n",
                "test"
            )
            .is_err()
        );
    }

    #[tokio::test]
    async fn a_group_is_one_target_dialled_by_its_name() {
        let registry = prometheus::Registry::new();
        let discovery = Discovery::new(
            DiscoveryConfig {
                endpoints: vec!["dns+localhost:10902".into()],
                endpoint_groups: vec!["dns+localhost:10901".into(), "group-b:10903".into()],
                strict_endpoint_groups: vec!["dnsdualstack+localhost:10904".into()],
                sd_config: Some(
                    "endpoints:\n  - address: dns+localhost:10905\n    group: true\n".into(),
                ),
                dns_interval: Duration::ZERO,
                ..DiscoveryConfig::default()
            },
            &registry,
        )
        .unwrap();
        let targets: Vec<(String, bool)> = discovery
            .targets()
            .await
            .into_iter()
            .map(|target| (target.address, target.strict))
            .collect();
        // Groups keep their host name (no lookup); the plain dns+ endpoint is resolved.
        assert_eq!(
            targets,
            [
                ("127.0.0.1:10902".to_owned(), false),
                ("group-b:10903".to_owned(), false),
                ("localhost:10901".to_owned(), false),
                ("localhost:10904".to_owned(), true),
                ("localhost:10905".to_owned(), false),
            ]
        );
        assert_eq!(discovery.metrics.lookups.get(), 1);
    }

    #[test]
    fn parses_file_sd_yaml_and_json() {
        let yaml = parse_file_sd(
            "- targets: ['a:1', 'b:2']\n  labels:\n    x: y\n- targets: ['c:3']\n",
            Path::new("f.yml"),
        )
        .unwrap();
        let addresses: Vec<&str> = yaml.iter().map(|spec| spec.address.as_str()).collect();
        assert_eq!(addresses, ["a:1", "b:2", "c:3"]);
        let json = parse_file_sd(r#"[{"targets":["d:4"]}]"#, Path::new("f.json")).unwrap();
        assert_eq!(json[0].address, "d:4");
        assert!(parse_file_sd("{not a list", Path::new("f.json")).is_err());
    }

    #[test]
    fn globs_match_file_names() {
        assert!(glob_matches("*.yml", "stores.yml"));
        assert!(glob_matches("s?ores*", "stores.yml"));
        assert!(!glob_matches("*.json", "stores.yml"));
        assert!(glob_matches("*", ""));
        assert!(!glob_matches("a*b", "acbd"));
    }

    #[test]
    fn recognises_dns_prefixes() {
        assert!(matches!(dns_kind("dns+a:1"), Some((DnsKind::A, "a:1"))));
        assert!(matches!(
            dns_kind("dnssrv+_grpc._tcp.x"),
            Some((DnsKind::Srv, "_grpc._tcp.x"))
        ));
        assert!(matches!(
            dns_kind("dnssrvnoa+_grpc._tcp.x"),
            Some((DnsKind::SrvNoA, "_grpc._tcp.x"))
        ));
        assert!(matches!(
            dns_kind("dnsdualstack+a:1"),
            Some((DnsKind::A, "a:1"))
        ));
        assert!(dns_kind("a:1").is_none());
        assert_eq!(split_host_port("[::1]:9").unwrap(), ("::1", 9));
        assert!(split_host_port("nohost").is_err());
    }

    #[tokio::test]
    async fn static_and_a_records_resolve_and_failures_keep_the_last_good_set() {
        let registry = prometheus::Registry::new();
        let discovery = Discovery::new(
            DiscoveryConfig {
                endpoints: vec![
                    "10.0.0.1:10901".into(),
                    "dns+127.0.0.1:10902".into(),
                    "dns+localhost:10903".into(),
                    "dns+name.invalid:1".into(),
                ],
                dns_interval: Duration::ZERO,
                ..DiscoveryConfig::default()
            },
            &registry,
        )
        .unwrap();
        let targets: Vec<String> = discovery
            .targets()
            .await
            .into_iter()
            .map(|target| target.address)
            .collect();
        assert!(targets.contains(&"10.0.0.1:10901".to_owned()));
        assert!(targets.contains(&"127.0.0.1:10902".to_owned()));
        assert!(targets.iter().any(|address| address.ends_with(":10903")));
        assert!(!targets.iter().any(|address| address.ends_with(":1")));
        assert_eq!(discovery.metrics.failures.get(), 1);
        assert_eq!(discovery.metrics.lookups.get(), 3);
    }
}
