//! The index cache: postings lists and series entries by block, kept in memory (an LRU bounded
//! by bytes) or in a shared memcached / redis, configured with Thanos' index-cache YAML.

pub mod config;
mod memcached;
mod memory;
mod redis;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

pub use config::IndexCacheConfig;
pub(crate) use memory::InMemoryCache;

/// Item types, as Thanos labels them.
pub(crate) const POSTINGS: &str = "Postings";
pub(crate) const SERIES: &str = "Series";

/// A cache key: the item type and its identity within a block.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    pub(crate) item: &'static str,
    pub(crate) key: String,
}

impl CacheKey {
    /// The postings list of `name=value` in `block`.
    pub(crate) fn postings(block: &ulid::Ulid, name: &str, value: &str) -> Self {
        use md5::{Digest, Md5};
        let mut hasher = Md5::new();
        hasher.update(name.as_bytes());
        hasher.update([0xff]);
        hasher.update(value.as_bytes());
        let digest = hasher.finalize();
        let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        Self {
            item: POSTINGS,
            key: format!("P:{block}:{hex}"),
        }
    }

    /// The series entry `reference` of `block`.
    pub(crate) fn series(block: &ulid::Ulid, reference: u64) -> Self {
        Self {
            item: SERIES,
            key: format!("S:{block}:{reference}"),
        }
    }
}

/// A store of index items; misses and failures are both "not cached".
#[tonic::async_trait]
pub(crate) trait IndexCache: fmt::Debug + Send + Sync {
    /// The cached values of those `keys` that are cached.
    async fn fetch(&self, keys: &[CacheKey]) -> HashMap<CacheKey, Bytes>;
    /// Stores values (best effort).
    async fn store(&self, items: Vec<(CacheKey, Bytes)>);
}

/// Thanos' index cache metrics.
#[derive(Debug, Clone)]
pub(crate) struct CacheMetrics {
    pub(crate) requests: IntCounterVec,
    pub(crate) hits: IntCounterVec,
    pub(crate) items: IntGaugeVec,
    pub(crate) evicted: IntCounterVec,
    pub(crate) size: IntGaugeVec,
    pub(crate) added: IntCounterVec,
}

impl CacheMetrics {
    pub(crate) fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str| -> prometheus::Result<IntCounterVec> {
            let metric = IntCounterVec::new(Opts::new(name, help), &["item_type"])?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGaugeVec> {
            let metric = IntGaugeVec::new(Opts::new(name, help), &["item_type"])?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        Ok(Self {
            requests: counter(
                "thanos_store_index_cache_requests_total",
                "Total number of items requests to the cache.",
            )?,
            hits: counter(
                "thanos_store_index_cache_hits_total",
                "Total number of items requests to the cache that were a hit.",
            )?,
            items: gauge(
                "thanos_store_index_cache_items",
                "Current number of items in the index cache.",
            )?,
            evicted: counter(
                "thanos_store_index_cache_items_evicted_total",
                "Total number of items that were evicted from the index cache.",
            )?,
            size: gauge(
                "thanos_store_index_cache_total_size_bytes",
                "Current byte size of items in the index cache.",
            )?,
            added: counter(
                "thanos_store_index_cache_items_added_total",
                "Total number of items that were added to the index cache.",
            )?,
        })
    }

    /// Counts requests and hits per item type.
    pub(crate) fn observe(&self, keys: &[CacheKey], found: &HashMap<CacheKey, Bytes>) {
        for key in keys {
            self.requests.with_label_values(&[key.item]).inc();
            if found.contains_key(key) {
                self.hits.with_label_values(&[key.item]).inc();
            }
        }
    }
}

/// Builds the cache from the flags: the YAML when given, else an in-memory cache of
/// `default_size` bytes.
pub(crate) fn build(
    config: Option<IndexCacheConfig>,
    default_size: u64,
    registry: &Registry,
) -> crate::Result<Arc<dyn IndexCache>> {
    let metrics = CacheMetrics::register(registry)?;
    let Some(config) = config else {
        return Ok(Arc::new(InMemoryCache::new(default_size, metrics)));
    };
    config.build(metrics)
}
