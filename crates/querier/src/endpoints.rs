//! The set of stores: addresses from [`discovery`](crate::discovery), health from periodic
//! Info calls.
//!
//! Every update round asks discovery for the current addresses (flags, SD config and files, DNS
//! names again once per `--store.sd-dns-interval`), calls `thanos.info.Info/Info` on every address with a 5s timeout
//! and records label sets, time range, component type and the last error. A store whose Info
//! fails is unhealthy: it stays listed in `/api/v1/stores` but receives no requests until an
//! Info call succeeds again, unless it is strict (`--endpoint-strict`, `strict: true`): a strict
//! store is always asked. Addresses that disappear from discovery are dropped.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use prom_model::Labels;
use service_core::{CancellationToken, GrpcClientFlags, TraceContextInterceptor};
use storeapi::proto::thanos::info::InfoRequest;
use storeapi::{Compression, InfoClient, StoreClient};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::discovery::{Discovery, Target};

/// How often stores are re-checked.
pub const UPDATE_INTERVAL: Duration = Duration::from_secs(5);

/// What the querier knows about one store.
#[derive(Debug, Clone)]
pub struct StoreStatus {
    /// The resolved `host:port`.
    pub name: String,
    /// Whether the last Info call succeeded.
    pub healthy: bool,
    /// External label sets.
    pub label_sets: Vec<Labels>,
    /// Oldest timestamp served (ms).
    pub min_time: i64,
    /// Newest timestamp served (ms).
    pub max_time: i64,
    /// Thanos component type (`store`, `sidecar`, `query`, ...).
    pub component_type: String,
    /// Whether the store removes replica labels itself.
    pub supports_without_replica_labels: bool,
    /// When the store was last checked (ms since the epoch).
    pub last_check: i64,
    /// The last Info error, if the last check failed.
    pub last_error: Option<String>,
    /// Always asked, even when unhealthy.
    pub strict: bool,
}

/// A StoreAPI client that injects the current span's trace context into every call.
pub type TracedStoreClient = StoreClient<InterceptedService<Channel, TraceContextInterceptor>>;

/// A [`TracedStoreClient`] on `channel` with Thanos' message limits, accepting gzip answers.
fn traced_store_client(channel: Channel) -> TracedStoreClient {
    StoreClient::with_interceptor(channel, TraceContextInterceptor)
        .max_decoding_message_size(storeapi::MAX_MESSAGE_SIZE)
        .max_encoding_message_size(storeapi::MAX_MESSAGE_SIZE)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
}

/// A store ready to be asked.
#[derive(Debug, Clone)]
pub struct StoreHandle {
    /// The store's status at the last check.
    pub status: StoreStatus,
    /// The gRPC client; it carries the caller's trace context (W3C `traceparent`) to the store.
    pub client: TracedStoreClient,
}

#[derive(Debug)]
struct Entry {
    status: StoreStatus,
    channel: Channel,
    /// The SD entry's dialling settings the channel was made with (`None`: the flags).
    client: Option<Arc<GrpcClientFlags>>,
}

/// The stores the querier fans out to; see the [module docs](self).
#[derive(Debug)]
pub struct StoreSet {
    discovery: Discovery,
    client_flags: GrpcClientFlags,
    info_timeout: Duration,
    entries: RwLock<BTreeMap<String, Entry>>,
    connections: prometheus::IntGaugeVec,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl StoreSet {
    /// A store set over the addresses `discovery` finds; registers
    /// `thanos_store_nodes_grpc_connections` on `registry`.
    pub fn new(
        discovery: Discovery,
        client_flags: GrpcClientFlags,
        info_timeout: Duration,
        registry: &prometheus::Registry,
    ) -> Result<Self, prometheus::Error> {
        let connections = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "thanos_store_nodes_grpc_connections",
                "Number of gRPC connection to Store APIs. Opened connection means healthy store APIs available for Querier.",
            ),
            &["external_labels", "store_type"],
        )?;
        registry.register(Box::new(connections.clone()))?;
        Ok(Self {
            connections,
            discovery,
            client_flags,
            info_timeout,
            entries: RwLock::new(BTreeMap::new()),
        })
    }

    /// Every known store's status, sorted by name.
    pub fn statuses(&self) -> Vec<StoreStatus> {
        match self.entries.read() {
            Ok(entries) => entries.values().map(|entry| entry.status.clone()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The stores to ask, with clients: the healthy ones and the strict ones.
    pub fn healthy(&self) -> Vec<StoreHandle> {
        let Ok(entries) = self.entries.read() else {
            return Vec::new();
        };
        entries
            .values()
            .filter(|entry| entry.status.healthy || entry.status.strict)
            .map(|entry| StoreHandle {
                status: entry.status.clone(),
                client: traced_store_client(entry.channel.clone()),
            })
            .collect()
    }

    /// One update round: resolve, check every store, drop vanished addresses.
    pub async fn update(&self) {
        let targets = self.discovery.targets().await;
        let addresses: Vec<String> = targets
            .iter()
            .map(|target| target.address.clone())
            .collect();
        let mut checks = Vec::with_capacity(targets.len());
        for target in &targets {
            let channel = match self.channel_for(target) {
                Ok(channel) => channel,
                Err(error) => {
                    tracing::warn!(endpoint = %target.address, error = %error, "cannot create gRPC channel");
                    continue;
                }
            };
            checks.push(self.check(target, channel));
        }
        let results = futures_util::future::join_all(checks).await;
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|name, _| addresses.contains(name));
            for entry in results {
                entries.insert(entry.status.name.clone(), entry);
            }
            self.connections.reset();
            for entry in entries.values().filter(|entry| entry.status.healthy) {
                let sets: Vec<String> = entry
                    .status
                    .label_sets
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                self.connections
                    .with_label_values(&[sets.join(","), entry.status.component_type.clone()])
                    .inc();
            }
        }
    }

    /// The channel of `target`: the known one while its dialling settings stay the same, else a
    /// new one per the target's SD settings or the flags.
    fn channel_for(&self, target: &Target) -> Result<Channel, service_core::Error> {
        if let Ok(entries) = self.entries.read()
            && let Some(entry) = entries.get(&target.address)
            && entry.client == target.client
        {
            return Ok(entry.channel.clone());
        }
        let flags = target.client.as_deref().unwrap_or(&self.client_flags);
        service_core::grpc_channel(&target.address, flags)
    }

    async fn check(&self, target: &Target, channel: Channel) -> Entry {
        let (address, strict) = (target.address.clone(), target.strict);
        let dial = target.client.clone();
        let previous = self
            .entries
            .read()
            .ok()
            .and_then(|entries| entries.get(&address).map(|entry| entry.status.clone()));
        let mut client: InfoClient<Channel> =
            storeapi::info_client(channel.clone(), Compression::None);
        let outcome = tokio::time::timeout(self.info_timeout, client.info(InfoRequest {})).await;
        let mut status = previous.unwrap_or_else(|| StoreStatus {
            name: address.clone(),
            healthy: false,
            label_sets: Vec::new(),
            min_time: i64::MIN,
            max_time: i64::MAX,
            component_type: String::new(),
            supports_without_replica_labels: false,
            last_check: 0,
            last_error: None,
            strict,
        });
        status.strict = strict;
        status.last_check = now_ms();
        let info = match outcome {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(error)) => {
                return unhealthy(
                    status,
                    channel,
                    dial,
                    format!("getting metadata: {}", error.message()),
                );
            }
            Err(_) => {
                return unhealthy(
                    status,
                    channel,
                    dial,
                    "getting metadata: context deadline exceeded".to_owned(),
                );
            }
        };
        let Some(store) = info.store else {
            return unhealthy(
                status,
                channel,
                dial,
                "endpoint does not serve the StoreAPI".to_owned(),
            );
        };
        let mut label_sets = Vec::with_capacity(info.label_sets.len());
        for set in info.label_sets {
            match storeapi::convert::labels_from_proto(set.labels) {
                Ok(labels) => label_sets.push(labels),
                Err(error) => {
                    return unhealthy(status, channel, dial, format!("bad label set: {error}"));
                }
            }
        }
        if !status.healthy {
            tracing::info!(endpoint = %address, component = %info.component_type, "adding new store");
        }
        status.healthy = true;
        status.label_sets = label_sets;
        status.min_time = store.min_time;
        status.max_time = store.max_time;
        status.component_type = info.component_type;
        status.supports_without_replica_labels = store.supports_without_replica_labels;
        status.last_error = None;
        Entry {
            status,
            channel,
            client: dial,
        }
    }

    /// Updates every [`UPDATE_INTERVAL`] until `shutdown`.
    pub async fn run(
        self: Arc<Self>,
        shutdown: CancellationToken,
    ) -> Result<(), service_core::Error> {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(UPDATE_INTERVAL) => self.update().await,
            }
        }
    }
}

fn unhealthy(
    mut status: StoreStatus,
    channel: Channel,
    client: Option<Arc<GrpcClientFlags>>,
    error: String,
) -> Entry {
    if status.healthy {
        tracing::warn!(endpoint = %status.name, error = %error, "removing store because it's unhealthy or does not exist");
    }
    status.healthy = false;
    status.last_error = Some(error);
    Entry {
        status,
        channel,
        client,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::DiscoveryConfig;

    #[tokio::test]
    async fn unreachable_store_is_listed_unhealthy() {
        let registry = prometheus::Registry::new();
        let discovery = Discovery::new(
            DiscoveryConfig {
                endpoints: vec!["127.0.0.1:1".to_owned()],
                ..DiscoveryConfig::default()
            },
            &registry,
        )
        .unwrap();
        let set = StoreSet::new(
            discovery,
            GrpcClientFlags::default(),
            Duration::from_secs(2),
            &registry,
        )
        .unwrap();
        set.update().await;
        let statuses = set.statuses();
        assert_eq!(statuses.len(), 1);
        assert!(!statuses[0].healthy);
        assert!(statuses[0].last_error.is_some());
        assert!(set.healthy().is_empty());
    }
}
