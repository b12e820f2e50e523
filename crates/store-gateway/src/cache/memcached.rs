//! A minimal memcached client (text protocol: `get` with many keys, `set`) over tokio TCP. Keys
//! are spread over the servers by hash; a failing server is a miss, never an error to the query.
//!
//! As Thanos' client does, items larger than `max_item_size` are never sent (counted in
//! `thanos_memcached_operation_skipped_total{operation="set",reason="max-item-size"}`), and a
//! server refusing one item of a batch (`SERVER_ERROR object too large for cache` when the
//! server's own item limit is smaller) fails that item only.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use prometheus::{IntCounterVec, Opts, Registry};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;

use super::{CacheKey, CacheMetrics, IndexCache};

/// Idle connections kept per server.
const MAX_IDLE: usize = 8;

/// The `name` label of the client's metrics, as Thanos names its index cache client.
const CLIENT_NAME: &str = "index-cache";

const OP_SET: &str = "set";
const OP_GET_MULTI: &str = "getmulti";

/// Thanos' memcached client metrics (`thanos_memcached_*`, labelled `name="index-cache"`).
#[derive(Debug, Clone)]
pub(crate) struct MemcachedMetrics {
    operations: IntCounterVec,
    failures: IntCounterVec,
    skipped: IntCounterVec,
}

impl MemcachedMetrics {
    /// Registers the metrics in `registry`, with Thanos' label sets pre-created at zero.
    pub(crate) fn register(registry: &Registry) -> prometheus::Result<Self> {
        let vec = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntCounterVec> {
            let metric = IntCounterVec::new(
                Opts::new(name, help).const_label("name", CLIENT_NAME),
                labels,
            )?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let metrics = Self {
            operations: vec(
                "thanos_memcached_operations_total",
                "Total number of operations against memcached.",
                &["operation"],
            )?,
            failures: vec(
                "thanos_memcached_operation_failures_total",
                "Total number of operations against memcached that failed.",
                &["operation", "reason"],
            )?,
            skipped: vec(
                "thanos_memcached_operation_skipped_total",
                "Total number of operations against memcached that have been skipped.",
                &["operation", "reason"],
            )?,
        };
        for operation in [OP_GET_MULTI, OP_SET] {
            metrics.operations.with_label_values(&[operation]);
            for reason in [TIMEOUT, SERVER_ERROR, NETWORK_ERROR, OTHER] {
                metrics.failures.with_label_values(&[operation, reason]);
            }
        }
        metrics.skipped.with_label_values(&[OP_SET, MAX_ITEM_SIZE]);
        Ok(metrics)
    }

    fn fail(&self, operation: &str, error: &std::io::Error) {
        let reason = match error.kind() {
            std::io::ErrorKind::TimedOut => TIMEOUT,
            std::io::ErrorKind::Other => OTHER,
            _ => NETWORK_ERROR,
        };
        self.failures.with_label_values(&[operation, reason]).inc();
    }
}

const MAX_ITEM_SIZE: &str = "max-item-size";
const TIMEOUT: &str = "timeout";
const SERVER_ERROR: &str = "server-error";
const NETWORK_ERROR: &str = "network-error";
const OTHER: &str = "other";

/// What the server answered to one `set` of a batch.
#[derive(Debug, PartialEq, Eq)]
enum SetReply {
    Stored,
    ServerError,
    Other,
}

/// The memcached-backed index cache.
#[derive(Debug)]
pub(crate) struct MemcachedCache {
    servers: Vec<String>,
    idle: Mutex<HashMap<usize, Vec<BufStream<TcpStream>>>>,
    timeout: Duration,
    ttl: Duration,
    /// Largest value sent (bytes); larger ones are skipped.
    max_item_size: u64,
    metrics: CacheMetrics,
    client_metrics: MemcachedMetrics,
}

/// How the cache talks to its servers, from the `config` section of the YAML.
#[derive(Debug, Clone)]
pub(crate) struct MemcachedOptions {
    /// `host:port` of every server.
    pub(crate) servers: Vec<String>,
    /// Bound on connecting and on each batched operation.
    pub(crate) timeout: Duration,
    /// Time to live of stored items.
    pub(crate) ttl: Duration,
    /// Largest value sent (bytes); larger ones are skipped.
    pub(crate) max_item_size: u64,
}

type Connection = BufStream<TcpStream>;

impl MemcachedCache {
    pub(crate) fn new(
        options: MemcachedOptions,
        metrics: CacheMetrics,
        client_metrics: MemcachedMetrics,
    ) -> Self {
        let mut servers = options.servers;
        servers.sort_by(|left, right| natural_cmp(left, right));
        Self {
            servers,
            idle: Mutex::new(HashMap::new()),
            timeout: options.timeout,
            ttl: options.ttl,
            max_item_size: options.max_item_size,
            metrics,
            client_metrics,
        }
    }

    /// The server of `key`, picked as Thanos' memcached client picks it (so gateways and
    /// Thanos stores sharing the servers agree): servers in natural sort order, xxhash64 of the
    /// key, jump consistent hash over the server count.
    fn server_of(&self, key: &str) -> usize {
        if self.servers.len() < 2 {
            return 0;
        }
        jump_hash(crate::shard::xxhash64(key.as_bytes()), self.servers.len())
    }

    async fn connection(&self, server: usize) -> std::io::Result<Connection> {
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(&server)
            .and_then(Vec::pop);
        if let Some(connection) = pooled {
            return Ok(connection);
        }
        let address = self
            .servers
            .get(server)
            .map(String::as_str)
            .unwrap_or_default();
        let stream = tokio::time::timeout(self.timeout, TcpStream::connect(address))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timeout"))??;
        stream.set_nodelay(true)?;
        Ok(BufStream::new(stream))
    }

    fn give_back(&self, server: usize, connection: Connection) {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let pool = idle.entry(server).or_default();
        if pool.len() < MAX_IDLE {
            pool.push(connection);
        }
    }

    async fn get_many(
        &self,
        server: usize,
        keys: &[&CacheKey],
    ) -> std::io::Result<HashMap<CacheKey, Bytes>> {
        let mut connection = self.connection(server).await?;
        let found = tokio::time::timeout(self.timeout, get_on(&mut connection, keys))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "get timeout"))??;
        self.give_back(server, connection);
        Ok(found)
    }

    /// Sends `items` in one pipelined batch and returns how many the server stored; an item
    /// the server refuses fails alone, an I/O error or timeout fails the rest of the batch.
    async fn set_many(
        &self,
        server: usize,
        items: &[&(CacheKey, Bytes)],
    ) -> std::io::Result<Vec<SetReply>> {
        let mut connection = self.connection(server).await?;
        let ttl = self.ttl.as_secs();
        let replies = tokio::time::timeout(self.timeout, async {
            for (key, value) in items {
                let header = format!("set {} 0 {ttl} {}\r\n", key.text(), value.len());
                connection.write_all(header.as_bytes()).await?;
                connection.write_all(value).await?;
                connection.write_all(b"\r\n").await?;
            }
            connection.flush().await?;
            let mut replies = Vec::with_capacity(items.len());
            for _ in items {
                let mut line = String::new();
                if connection.read_line(&mut line).await? == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "connection closed",
                    ));
                }
                let line = line.trim_end();
                replies.push(if line == "STORED" {
                    SetReply::Stored
                } else if line.starts_with("SERVER_ERROR") {
                    tracing::debug!(server = %self.servers[server], reply = line, "memcached refused an item");
                    SetReply::ServerError
                } else {
                    tracing::debug!(server = %self.servers[server], reply = line, "memcached set answered");
                    SetReply::Other
                });
            }
            Ok(replies)
        })
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "set timeout"))??;
        self.give_back(server, connection);
        Ok(replies)
    }
}

/// Jump consistent hash (Lamping and Veach): a bucket in `0..buckets` for `key`.
fn jump_hash(mut key: u64, buckets: usize) -> usize {
    let mut bucket: i64 = -1;
    let mut next: i64 = 0;
    while next < buckets as i64 {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        next = ((bucket + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    usize::try_from(bucket).unwrap_or(0)
}

/// Natural order: runs of digits compare by their number, other runs by their bytes.
fn natural_cmp(left: &str, right: &str) -> std::cmp::Ordering {
    fn chunks(text: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = text.as_bytes();
        for position in 1..=bytes.len() {
            if position == bytes.len()
                || bytes[position].is_ascii_digit() != bytes[start].is_ascii_digit()
            {
                out.push((bytes[start].is_ascii_digit(), &text[start..position]));
                start = position;
            }
        }
        out
    }
    let (left_chunks, right_chunks) = (chunks(left), chunks(right));
    for (left, right) in left_chunks.iter().zip(&right_chunks) {
        let order = match (left, right) {
            ((true, a), (true, b)) => {
                let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
                a.len().cmp(&b.len()).then_with(|| a.cmp(b))
            }
            ((_, a), (_, b)) => a.cmp(b),
        };
        if order.is_ne() {
            return order;
        }
    }
    left_chunks.len().cmp(&right_chunks.len())
}

async fn get_on(
    connection: &mut Connection,
    keys: &[&CacheKey],
) -> std::io::Result<HashMap<CacheKey, Bytes>> {
    let texts: Vec<String> = keys.iter().map(|key| key.text()).collect();
    let mut request = String::from("get");
    for text in &texts {
        request.push(' ');
        request.push_str(text);
    }
    request.push_str("\r\n");
    connection.write_all(request.as_bytes()).await?;
    connection.flush().await?;
    let by_name: HashMap<&str, &CacheKey> = texts
        .iter()
        .map(String::as_str)
        .zip(keys.iter().copied())
        .collect();
    let mut found = HashMap::new();
    loop {
        let mut line = String::new();
        if connection.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        let line = line.trim_end();
        if line == "END" {
            return Ok(found);
        }
        let parts: Vec<&str> = line.split(' ').collect();
        let (["VALUE", name, _flags, length] | ["VALUE", name, _flags, length, _]) =
            parts.as_slice()
        else {
            return Err(std::io::Error::other(format!("unexpected reply {line:?}")));
        };
        let length: usize = length
            .parse()
            .map_err(|_| std::io::Error::other("bad value length"))?;
        let mut data = vec![0u8; length + 2];
        connection.read_exact(&mut data).await?;
        data.truncate(length);
        if let Some(key) = by_name.get(name) {
            found.insert(**key, Bytes::from(data));
        }
    }
}

#[tonic::async_trait]
impl IndexCache for MemcachedCache {
    async fn fetch(&self, keys: &[CacheKey]) -> HashMap<CacheKey, Bytes> {
        let mut by_server: HashMap<usize, Vec<&CacheKey>> = HashMap::new();
        for key in keys {
            by_server
                .entry(self.server_of(&key.text()))
                .or_default()
                .push(key);
        }
        let mut found = HashMap::new();
        for (server, keys) in by_server {
            for batch in keys.chunks(100) {
                self.client_metrics
                    .operations
                    .with_label_values(&[OP_GET_MULTI])
                    .inc();
                match self.get_many(server, batch).await {
                    Ok(values) => found.extend(values),
                    Err(error) => {
                        self.client_metrics.fail(OP_GET_MULTI, &error);
                        tracing::warn!(server = %self.servers[server], %error, "memcached get failed")
                    }
                }
            }
        }
        self.metrics.observe(keys, &found);
        found
    }

    async fn store(&self, items: Vec<(CacheKey, Bytes)>) {
        let mut by_server: HashMap<usize, Vec<&(CacheKey, Bytes)>> = HashMap::new();
        for item in &items {
            if item.1.len() as u64 > self.max_item_size {
                self.client_metrics
                    .skipped
                    .with_label_values(&[OP_SET, MAX_ITEM_SIZE])
                    .inc();
                continue;
            }
            by_server
                .entry(self.server_of(&item.0.text()))
                .or_default()
                .push(item);
        }
        let operations = self.client_metrics.operations.with_label_values(&[OP_SET]);
        for (server, items) in by_server {
            for batch in items.chunks(100) {
                operations.inc_by(batch.len() as u64);
                match self.set_many(server, batch).await {
                    Ok(replies) => {
                        for ((key, _), reply) in batch.iter().zip(replies) {
                            let outcome = match reply {
                                SetReply::Stored => {
                                    self.metrics.added.with_label_values(&[key.item]).inc();
                                    continue;
                                }
                                SetReply::ServerError => SERVER_ERROR,
                                SetReply::Other => OTHER,
                            };
                            self.client_metrics
                                .failures
                                .with_label_values(&[OP_SET, outcome])
                                .inc();
                        }
                    }
                    Err(error) => {
                        for _ in batch.iter() {
                            self.client_metrics.fail(OP_SET, &error);
                        }
                        tracing::warn!(server = %self.servers[server], %error, "memcached set failed");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_hash_spreads_and_moves_few_keys() {
        // By hand: key 0 becomes 1 after the first step, so the next jump is 2^31: bucket 0.
        assert_eq!(jump_hash(0, 7), 0);
        assert_eq!(jump_hash(0xDEAD_BEEF, 1), 0);
        let mut moved = 0;
        let mut counts = [0usize; 4];
        for key in 0..10_000u64 {
            let hash = crate::shard::xxhash64(&key.to_le_bytes());
            let four = jump_hash(hash, 4);
            counts[four] += 1;
            let five = jump_hash(hash, 5);
            if five != four {
                assert_eq!(five, 4, "keys only move to the new bucket");
                moved += 1;
            }
        }
        assert!(
            counts.iter().all(|count| (2_000..3_000).contains(count)),
            "{counts:?}"
        );
        assert!((1_500..2_500).contains(&moved), "{moved}");
    }

    /// The value of the counter `name` with exactly `labels` in `registry` (0 when absent).
    fn counter(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
        registry
            .gather()
            .iter()
            .filter(|family| family.name() == name)
            .flat_map(|family| family.get_metric().iter())
            .filter(|metric| {
                labels.iter().all(|(label, value)| {
                    metric
                        .get_label()
                        .iter()
                        .any(|pair| pair.name() == *label && pair.value() == *value)
                })
            })
            .map(|metric| metric.get_counter().get_value())
            .sum()
    }

    /// Against a real memcached (its own item limit is 1 MiB): values over `max_item_size` are
    /// never sent, and a value the server refuses fails alone while the rest of its batch is
    /// stored and counted.
    #[test]
    fn oversized_items_are_skipped_and_refused_items_fail_alone() {
        let server = test_harness::Memcached::start().unwrap();
        let registry = Registry::new();
        let metrics = CacheMetrics::register(&registry).unwrap();
        let client_metrics = MemcachedMetrics::register(&registry).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let block = ulid::Ulid::from_parts(1, 2);
        let key = |offset| CacheKey::series(&block, offset);
        let value = |size: usize| Bytes::from(vec![7u8; size]);
        let cache = |max_item_size| {
            MemcachedCache::new(
                MemcachedOptions {
                    servers: vec![server.address()],
                    timeout: Duration::from_secs(5),
                    ttl: Duration::from_secs(600),
                    max_item_size,
                },
                metrics.clone(),
                client_metrics.clone(),
            )
        };
        let set = |name| {
            counter(
                &registry,
                name,
                &[("name", "index-cache"), ("operation", "set")],
            )
        };

        // 1000 bytes allowed: the 2000-byte value is skipped, the others stored.
        let small = cache(1000);
        runtime.block_on(small.store(vec![
            (key(1), value(10)),
            (key(2), value(2000)),
            (key(3), value(1000)),
        ]));
        let found = runtime.block_on(small.fetch(&[key(1), key(2), key(3)]));
        assert_eq!(found.get(&key(1)), Some(&value(10)));
        assert_eq!(found.get(&key(2)), None);
        assert_eq!(found.get(&key(3)), Some(&value(1000)));
        assert_eq!(set("thanos_memcached_operation_skipped_total"), 1.0);
        assert_eq!(set("thanos_memcached_operations_total"), 2.0);
        assert_eq!(
            counter(&registry, "thanos_store_index_cache_items_added_total", &[]),
            2.0
        );

        // 4 MiB allowed: the server refuses the 2 MiB value; the items around it are stored.
        let large = cache(4 << 20);
        runtime.block_on(large.store(vec![
            (key(4), value(100)),
            (key(5), value(2 << 20)),
            (key(6), value(200)),
        ]));
        let found = runtime.block_on(large.fetch(&[key(4), key(5), key(6)]));
        assert_eq!(found.get(&key(4)), Some(&value(100)));
        assert_eq!(found.get(&key(5)), None);
        assert_eq!(found.get(&key(6)), Some(&value(200)));
        assert_eq!(
            counter(
                &registry,
                "thanos_memcached_operation_failures_total",
                &[("operation", "set"), ("reason", "server-error")]
            ),
            1.0
        );
        assert_eq!(
            counter(&registry, "thanos_store_index_cache_items_added_total", &[]),
            4.0
        );
        assert_eq!(set("thanos_memcached_operation_skipped_total"), 1.0);
    }

    #[test]
    fn servers_sort_naturally() {
        let mut servers = vec!["m-10:11211", "m-2:11211", "m-1:11211"];
        servers.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(servers, ["m-1:11211", "m-2:11211", "m-10:11211"]);
    }
}
