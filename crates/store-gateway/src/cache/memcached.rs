//! A minimal memcached client (text protocol: `get` with many keys, `set`) over tokio TCP. Keys
//! are spread over the servers by hash; a failing server is a miss, never an error to the query.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;

use super::{CacheKey, CacheMetrics, IndexCache};

/// Idle connections kept per server.
const MAX_IDLE: usize = 8;

/// The memcached-backed index cache.
#[derive(Debug)]
pub(crate) struct MemcachedCache {
    servers: Vec<String>,
    idle: Mutex<HashMap<usize, Vec<BufStream<TcpStream>>>>,
    timeout: Duration,
    ttl: Duration,
    metrics: CacheMetrics,
}

type Connection = BufStream<TcpStream>;

impl MemcachedCache {
    pub(crate) fn new(
        servers: Vec<String>,
        timeout: Duration,
        ttl: Duration,
        metrics: CacheMetrics,
    ) -> Self {
        let mut servers = servers;
        servers.sort_by(|left, right| natural_cmp(left, right));
        Self {
            servers,
            idle: Mutex::new(HashMap::new()),
            timeout,
            ttl,
            metrics,
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

    async fn set_many(&self, server: usize, items: &[&(CacheKey, Bytes)]) -> std::io::Result<()> {
        let mut connection = self.connection(server).await?;
        let ttl = self.ttl.as_secs();
        tokio::time::timeout(self.timeout, async {
            for (key, value) in items {
                let header = format!("set {} 0 {ttl} {}\r\n", key.key, value.len());
                connection.write_all(header.as_bytes()).await?;
                connection.write_all(value).await?;
                connection.write_all(b"\r\n").await?;
            }
            connection.flush().await?;
            for _ in items {
                let mut line = String::new();
                connection.read_line(&mut line).await?;
                if line.trim_end() != "STORED" {
                    return Err(std::io::Error::other(format!("set answered {line:?}")));
                }
            }
            Ok(())
        })
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "set timeout"))??;
        self.give_back(server, connection);
        Ok(())
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
    let mut request = String::from("get");
    for key in keys {
        request.push(' ');
        request.push_str(&key.key);
    }
    request.push_str("\r\n");
    connection.write_all(request.as_bytes()).await?;
    connection.flush().await?;
    let by_name: HashMap<&str, &CacheKey> =
        keys.iter().map(|key| (key.key.as_str(), *key)).collect();
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
            found.insert((*key).clone(), Bytes::from(data));
        }
    }
}

#[tonic::async_trait]
impl IndexCache for MemcachedCache {
    async fn fetch(&self, keys: &[CacheKey]) -> HashMap<CacheKey, Bytes> {
        let mut by_server: HashMap<usize, Vec<&CacheKey>> = HashMap::new();
        for key in keys {
            by_server
                .entry(self.server_of(&key.key))
                .or_default()
                .push(key);
        }
        let mut found = HashMap::new();
        for (server, keys) in by_server {
            for batch in keys.chunks(100) {
                match self.get_many(server, batch).await {
                    Ok(values) => found.extend(values),
                    Err(error) => {
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
            by_server
                .entry(self.server_of(&item.0.key))
                .or_default()
                .push(item);
        }
        for (server, items) in by_server {
            for batch in items.chunks(100) {
                if let Err(error) = self.set_many(server, batch).await {
                    tracing::warn!(server = %self.servers[server], %error, "memcached set failed");
                } else {
                    for (key, _) in batch {
                        self.metrics.added.with_label_values(&[key.item]).inc();
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

    #[test]
    fn servers_sort_naturally() {
        let mut servers = vec!["m-10:11211", "m-2:11211", "m-1:11211"];
        servers.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(servers, ["m-1:11211", "m-2:11211", "m-10:11211"]);
    }
}
