//! A minimal redis client (RESP: `AUTH`, `SELECT`, `MGET`, `SET .. EX`) over tokio TCP, one
//! pooled connection at a time; a failing server is a miss, never an error to the query.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;

use super::{CacheKey, CacheMetrics, IndexCache};

type Connection = BufStream<TcpStream>;

/// The redis-backed index cache.
#[derive(Debug)]
pub(crate) struct RedisCache {
    addr: String,
    password: String,
    db: u32,
    idle: Mutex<Vec<Connection>>,
    timeout: Duration,
    ttl: Duration,
    metrics: CacheMetrics,
}

/// One RESP reply.
#[derive(Debug)]
enum Reply {
    Simple,
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
    Integer,
}

fn command(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for part in parts {
        out.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out
}

async fn read_reply(connection: &mut Connection) -> std::io::Result<Reply> {
    let mut line = String::new();
    if connection.read_line(&mut line).await? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    let line = line.trim_end();
    let (kind, rest) = line.split_at(line.len().min(1));
    match kind {
        "+" => Ok(Reply::Simple),
        "-" => Err(std::io::Error::other(format!("redis error: {rest}"))),
        ":" => Ok(Reply::Integer),
        "$" => {
            let length: i64 = rest
                .parse()
                .map_err(|_| std::io::Error::other("bad bulk length"))?;
            if length < 0 {
                return Ok(Reply::Bulk(None));
            }
            let mut data = vec![0u8; length as usize + 2];
            connection.read_exact(&mut data).await?;
            data.truncate(length as usize);
            Ok(Reply::Bulk(Some(data)))
        }
        "*" => {
            let count: i64 = rest
                .parse()
                .map_err(|_| std::io::Error::other("bad array length"))?;
            let mut items = Vec::with_capacity(count.max(0) as usize);
            for _ in 0..count.max(0) {
                items.push(Box::pin(read_reply(connection)).await?);
            }
            Ok(Reply::Array(items))
        }
        _ => Err(std::io::Error::other(format!("unexpected reply {line:?}"))),
    }
}

impl RedisCache {
    pub(crate) fn new(
        addr: String,
        password: String,
        db: u32,
        timeout: Duration,
        ttl: Duration,
        metrics: CacheMetrics,
    ) -> Self {
        Self {
            addr,
            password,
            db,
            idle: Mutex::new(Vec::new()),
            timeout,
            ttl,
            metrics,
        }
    }

    async fn connection(&self) -> std::io::Result<Connection> {
        if let Some(connection) = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
        {
            return Ok(connection);
        }
        let stream = TcpStream::connect(&self.addr).await?;
        stream.set_nodelay(true)?;
        let mut connection = BufStream::new(stream);
        if !self.password.is_empty() {
            connection
                .write_all(&command(&[b"AUTH", self.password.as_bytes()]))
                .await?;
            connection.flush().await?;
            read_reply(&mut connection).await?;
        }
        if self.db != 0 {
            connection
                .write_all(&command(&[b"SELECT", self.db.to_string().as_bytes()]))
                .await?;
            connection.flush().await?;
            read_reply(&mut connection).await?;
        }
        Ok(connection)
    }

    fn give_back(&self, connection: Connection) {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < 8 {
            idle.push(connection);
        }
    }

    async fn mget(&self, keys: &[CacheKey]) -> std::io::Result<HashMap<CacheKey, Bytes>> {
        let mut connection = self.connection().await?;
        let texts: Vec<String> = keys.iter().map(CacheKey::text).collect();
        let mut parts: Vec<&[u8]> = vec![b"MGET"];
        parts.extend(texts.iter().map(|text| text.as_bytes()));
        connection.write_all(&command(&parts)).await?;
        connection.flush().await?;
        let Reply::Array(values) = read_reply(&mut connection).await? else {
            return Err(std::io::Error::other("MGET did not answer an array"));
        };
        self.give_back(connection);
        let mut found = HashMap::new();
        for (key, value) in keys.iter().zip(values) {
            if let Reply::Bulk(Some(data)) = value {
                found.insert(*key, Bytes::from(data));
            }
        }
        Ok(found)
    }

    async fn set_all(&self, items: &[(CacheKey, Bytes)]) -> std::io::Result<()> {
        let mut connection = self.connection().await?;
        let ttl = self.ttl.as_secs().max(1).to_string();
        for (key, value) in items {
            connection
                .write_all(&command(&[
                    b"SET",
                    key.text().as_bytes(),
                    value,
                    b"EX",
                    ttl.as_bytes(),
                ]))
                .await?;
        }
        connection.flush().await?;
        for _ in items {
            match read_reply(&mut connection).await? {
                Reply::Simple => {}
                other => return Err(std::io::Error::other(format!("SET answered {other:?}"))),
            }
        }
        self.give_back(connection);
        Ok(())
    }
}

#[tonic::async_trait]
impl IndexCache for RedisCache {
    async fn fetch(&self, keys: &[CacheKey]) -> HashMap<CacheKey, Bytes> {
        let mut found = HashMap::new();
        for batch in keys.chunks(100) {
            match tokio::time::timeout(self.timeout, self.mget(batch)).await {
                Ok(Ok(values)) => found.extend(values),
                Ok(Err(error)) => tracing::warn!(server = %self.addr, %error, "redis get failed"),
                Err(_) => tracing::warn!(server = %self.addr, "redis get timed out"),
            }
        }
        self.metrics.observe(keys, &found);
        found
    }

    async fn store(&self, items: Vec<(CacheKey, Bytes)>) {
        match tokio::time::timeout(self.timeout, self.set_all(&items)).await {
            Ok(Ok(())) => {
                for (key, _) in &items {
                    self.metrics.added.with_label_values(&[key.item]).inc();
                }
            }
            Ok(Err(error)) => tracing::warn!(server = %self.addr, %error, "redis set failed"),
            Err(_) => tracing::warn!(server = %self.addr, "redis set timed out"),
        }
    }
}
