//! Thanos' index-cache YAML: `type`, `config`, `enabled_items`, `ttl`; unknown keys are errors.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_yaml_ng::Value;
use service_core::PromDuration;
use service_core::size::parse_bytes;

use super::memcached::{MemcachedCache, MemcachedMetrics, MemcachedOptions};
use super::memory::InMemoryCache;
use super::redis::RedisCache;
use super::{CacheMetrics, IndexCache};
use crate::error::{Error, Result};

/// The parsed `--index-cache.config`.
#[derive(Debug, Clone)]
pub struct IndexCacheConfig {
    backend: Backend,
    /// Item types to cache (`Postings`, `Series`, `ExpandedPostings`); empty = all.
    pub enabled_items: Vec<String>,
    /// Time to live in shared caches.
    pub ttl: Duration,
}

#[derive(Debug, Clone)]
enum Backend {
    InMemory {
        max_size: u64,
        max_item_size: u64,
    },
    Memcached {
        addresses: Vec<String>,
        timeout: Duration,
        max_item_size: u64,
    },
    Redis {
        addr: String,
        password: String,
        db: u32,
        timeout: Duration,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    config: Option<Value>,
    #[serde(default)]
    enabled_items: Vec<String>,
    #[serde(default)]
    ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct InMemoryRaw {
    #[serde(default)]
    max_size: Option<Value>,
    #[serde(default)]
    max_item_size: Option<Value>,
}

/// Keys Thanos accepts; those without a field use are accepted and ignored.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemcachedRaw {
    #[serde(default)]
    addresses: Vec<String>,
    #[serde(default)]
    timeout: Option<String>,
    max_idle_connections: Option<Value>,
    max_async_concurrency: Option<Value>,
    max_async_buffer_size: Option<Value>,
    max_get_multi_concurrency: Option<Value>,
    max_item_size: Option<Value>,
    max_get_multi_batch_size: Option<Value>,
    dns_provider_update_interval: Option<Value>,
    auto_discovery: Option<Value>,
    set_async_circuit_breaker_config: Option<Value>,
}

/// Keys Thanos accepts; those without a field use are accepted and ignored.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedisRaw {
    #[serde(default)]
    addr: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    db: Option<u32>,
    #[serde(default)]
    dial_timeout: Option<String>,
    read_timeout: Option<Value>,
    write_timeout: Option<Value>,
    pool_size: Option<Value>,
    min_idle_conns: Option<Value>,
    idle_timeout: Option<Value>,
    max_conn_age: Option<Value>,
    max_get_multi_concurrency: Option<Value>,
    get_multi_batch_size: Option<Value>,
    max_set_multi_concurrency: Option<Value>,
    set_multi_batch_size: Option<Value>,
    tls_enabled: Option<Value>,
    tls_config: Option<Value>,
    cache_size: Option<Value>,
    master_name: Option<Value>,
    max_async_buffer_size: Option<Value>,
    max_async_concurrency: Option<Value>,
    set_async_circuit_breaker_config: Option<Value>,
}

fn invalid(message: impl Into<String>) -> Error {
    Error::Config {
        what: "index-cache.config",
        message: message.into(),
    }
}

fn size_value(value: Option<&Value>, default: u64, key: &str) -> Result<u64> {
    match value {
        None => Ok(default),
        Some(Value::Number(number)) => number
            .as_u64()
            .ok_or_else(|| invalid(format!("{key}: not a size"))),
        Some(Value::String(text)) => {
            parse_bytes(text).ok_or_else(|| invalid(format!("{key}: bad size {text:?}")))
        }
        Some(_) => Err(invalid(format!("{key}: not a size"))),
    }
}

fn duration(text: Option<&str>, default: Duration, key: &str) -> Result<Duration> {
    match text {
        None => Ok(default),
        Some(text) => text
            .parse::<PromDuration>()
            .map(Duration::from)
            .map_err(|error| invalid(format!("{key}: {error}"))),
    }
}

fn sub_config<T: Default + for<'de> Deserialize<'de>>(value: Option<Value>) -> Result<T> {
    match value {
        None | Some(Value::Null) => Ok(T::default()),
        Some(value) => serde_yaml_ng::from_value(value).map_err(|error| invalid(error.to_string())),
    }
}

impl IndexCacheConfig {
    /// Parses the YAML.
    pub fn parse(yaml: &str) -> Result<Self> {
        let raw: Raw = serde_yaml_ng::from_str(yaml).map_err(|error| invalid(error.to_string()))?;
        for item in &raw.enabled_items {
            if !["Postings", "Series", "ExpandedPostings"].contains(&item.as_str()) {
                return Err(invalid(format!("unsupported item type {item:?}")));
            }
        }
        let ttl = duration(raw.ttl.as_deref(), Duration::from_secs(24 * 3600), "ttl")?;
        let backend = match raw.kind.to_ascii_uppercase().as_str() {
            "IN-MEMORY" | "INMEMORY" => {
                let config: InMemoryRaw = sub_config(raw.config)?;
                let max_size = size_value(config.max_size.as_ref(), 250 << 20, "max_size")?;
                let max_item_size =
                    size_value(config.max_item_size.as_ref(), 125 << 20, "max_item_size")?;
                Backend::InMemory {
                    max_size,
                    max_item_size,
                }
            }
            "MEMCACHED" => {
                let config: MemcachedRaw = sub_config(raw.config)?;
                if config.addresses.is_empty() {
                    return Err(invalid("memcached: no addresses"));
                }
                let timeout = duration(
                    config.timeout.as_deref(),
                    Duration::from_millis(500),
                    "timeout",
                )?;
                let max_item_size =
                    size_value(config.max_item_size.as_ref(), 1 << 20, "max_item_size")?;
                Backend::Memcached {
                    addresses: config.addresses,
                    timeout,
                    max_item_size,
                }
            }
            "REDIS" => {
                let config: RedisRaw = sub_config(raw.config)?;
                if config.addr.is_empty() {
                    return Err(invalid("redis: no addr"));
                }
                let timeout = duration(
                    config.dial_timeout.as_deref(),
                    Duration::from_secs(5),
                    "dial_timeout",
                )?;
                Backend::Redis {
                    addr: config.addr,
                    password: config.password.unwrap_or_default(),
                    db: config.db.unwrap_or(0),
                    timeout,
                }
            }
            other => return Err(invalid(format!("unsupported cache type {other:?}"))),
        };
        Ok(Self {
            backend,
            enabled_items: raw.enabled_items,
            ttl,
        })
    }

    /// Whether items of type `item` are cached.
    pub(crate) fn enabled(&self, item: &str) -> bool {
        self.enabled_items.is_empty() || self.enabled_items.iter().any(|enabled| enabled == item)
    }

    pub(crate) fn build(
        self,
        metrics: CacheMetrics,
        registry: &prometheus::Registry,
    ) -> Result<Arc<dyn IndexCache>> {
        let enabled: Vec<&'static str> = [super::POSTINGS, super::EXPANDED_POSTINGS, super::SERIES]
            .into_iter()
            .filter(|item| self.enabled(item))
            .collect();
        let cache: Arc<dyn IndexCache> = match self.backend {
            Backend::InMemory {
                max_size,
                max_item_size,
            } => Arc::new(InMemoryCache::with_item_size(
                max_size,
                max_item_size,
                metrics,
            )),
            Backend::Memcached {
                addresses,
                timeout,
                max_item_size,
            } => Arc::new(MemcachedCache::new(
                MemcachedOptions {
                    servers: addresses,
                    timeout,
                    ttl: self.ttl,
                    max_item_size,
                },
                metrics,
                MemcachedMetrics::register(registry)?,
            )),
            Backend::Redis {
                addr,
                password,
                db,
                timeout,
            } => Arc::new(RedisCache::new(
                addr, password, db, timeout, self.ttl, metrics,
            )),
        };
        Ok(Arc::new(Filtered {
            enabled,
            inner: cache,
        }))
    }
}

/// Only caches the enabled item types.
#[derive(Debug)]
struct Filtered {
    enabled: Vec<&'static str>,
    inner: Arc<dyn IndexCache>,
}

#[tonic::async_trait]
impl IndexCache for Filtered {
    async fn fetch(
        &self,
        keys: &[super::CacheKey],
    ) -> std::collections::HashMap<super::CacheKey, bytes::Bytes> {
        let keys: Vec<super::CacheKey> = keys
            .iter()
            .filter(|key| self.enabled.contains(&key.item))
            .cloned()
            .collect();
        if keys.is_empty() {
            return std::collections::HashMap::new();
        }
        self.inner.fetch(&keys).await
    }

    async fn store(&self, items: Vec<(super::CacheKey, bytes::Bytes)>) {
        let items: Vec<_> = items
            .into_iter()
            .filter(|(key, _)| self.enabled.contains(&key.item))
            .collect();
        if !items.is_empty() {
            self.inner.store(items).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_thanos_examples_and_refuses_unknown_keys() {
        let memory =
            IndexCacheConfig::parse("type: IN-MEMORY\nconfig:\n  max_size: 1MB\n").unwrap();
        assert!(matches!(
            memory.backend,
            Backend::InMemory {
                max_size: 1_048_576,
                ..
            }
        ));
        let memcached = IndexCacheConfig::parse(
            "type: MEMCACHED\nconfig:\n  addresses: [\"127.0.0.1:11211\"]\n  max_idle_connections: 100\nenabled_items: [Postings]\nttl: 1h\n",
        )
        .unwrap();
        assert!(memcached.enabled("Postings") && !memcached.enabled("Series"));
        assert_eq!(memcached.ttl, Duration::from_secs(3600));
        assert!(IndexCacheConfig::parse("type: REDIS\nconfig:\n  addr: 127.0.0.1:6379\n").is_ok());
        assert!(IndexCacheConfig::parse("type: IN-MEMORY\nbogus: 1\n").is_err());
        assert!(IndexCacheConfig::parse("type: IN-MEMORY\nconfig:\n  maxsize: 1\n").is_err());
        assert!(IndexCacheConfig::parse("type: FOO\n").is_err());
    }
}
