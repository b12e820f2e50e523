//! The index cache: postings lists, expanded postings and series entries by block, kept in
//! memory (an LRU bounded by bytes) or in a shared memcached / redis, configured with Thanos'
//! index-cache YAML.
//!
//! Keys (`CacheKey`) and values (`codec`) are those of Thanos' store gateway, so one memcached
//! or redis can serve Thanos and this gateway together: postings and expanded postings are
//! stored `dss`-encoded (diff + uvarint + streamed snappy), series as the index entry's body;
//! on reading, Thanos' older `dvs` and unencoded postings are accepted too, and a value that
//! decodes as none of them is a miss. Memcached keys go to servers as Thanos' client sends
//! them (natural sort of the addresses, xxhash64, jump hash). Known differences: Thanos'
//! in-memory cache leaves `:dss` out of its keys (not shared, so it does not matter); matcher
//! values with non-ASCII characters that Go's `strconv.Quote` escapes are quoted by an
//! approximation of Go's printable-character test, so such expanded postings keys may differ;
//! entries get the configured `ttl`, not a TTL derived from the block.

mod codec;
pub mod config;
mod memcached;
mod memory;
mod redis;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use prom_model::{MatchType, Matcher};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

pub(crate) use codec::{decode_postings, encode_postings};
pub use config::IndexCacheConfig;
pub(crate) use memory::InMemoryCache;

/// Item types, as Thanos labels them.
pub(crate) const POSTINGS: &str = "Postings";
pub(crate) const EXPANDED_POSTINGS: &str = "ExpandedPostings";
pub(crate) const SERIES: &str = "Series";

/// The compression tag Thanos' shared (memcached / redis) index cache appends to postings and
/// expanded postings keys: diff+varint, streamed snappy.
pub(crate) const COMPRESSION: &str = "dss";

/// A cache key: the item type, the block and the item's identity within the block. Its text
/// ([`CacheKey::text`], what memcached and redis see) is spelled as Thanos' shared index cache
/// spells it (`pkg/store/cache`, `CacheKey.String()` with the `dss` compression of
/// `RemoteIndexCache`), so that a memcached or redis shared with Thanos stores gateways is
/// consistent:
///
/// * postings: `P:<block ULID>:<base64url(blake2b-256(name ":" value)), unpadded>:dss`
/// * expanded postings: `EP:<block ULID>:<base64url(blake2b-256(matchers))>:dss`, the matchers
///   sorted by type, name, value and printed as Prometheus prints them, joined by `;`
/// * series: `S:<block ULID>:<byte offset of the series entry in the index>`
///
/// The text is at most 3 + 26 + 1 + 43 + 4 = 77 bytes, well within memcached's 250-byte key
/// limit. (Thanos' in-memory cache leaves out the `:dss` tag; ours keeps one spelling for every
/// backend.) The key itself is typed and fixed-size: the in-memory cache hashes and compares it
/// without formatting a string per series, and it takes no heap of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    pub(crate) item: &'static str,
    block: ulid::Ulid,
    id: KeyId,
}

/// What identifies an item within its block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum KeyId {
    /// The blake2b-256 digest of the postings' label pair or of the expanded postings' matchers.
    Digest([u8; 32]),
    /// The byte offset of a series entry in the index.
    Offset(u64),
}

fn digest(text: &str) -> [u8; 32] {
    use blake2::{Blake2b256, Digest};
    Blake2b256::digest(text.as_bytes()).into()
}

/// A matcher as Prometheus' `Matcher.String()` prints it: the name (quoted unless it is a
/// legacy name `[a-zA-Z_][a-zA-Z0-9_]*`), the operator, the quoted value.
pub(crate) fn matcher_string(matcher: &Matcher) -> String {
    let name = matcher.name();
    let legacy = !name.is_empty()
        && name.chars().enumerate().all(|(position, c)| {
            c == '_' || c.is_ascii_alphabetic() || (position > 0 && c.is_ascii_digit())
        });
    let operator = match matcher.kind() {
        MatchType::Equal => "=",
        MatchType::NotEqual => "!=",
        MatchType::Regex => "=~",
        MatchType::NotRegex => "!~",
    };
    let name = if legacy {
        name.to_owned()
    } else {
        codec::go_quote(name)
    };
    format!("{name}{operator}{}", codec::go_quote(matcher.value()))
}

/// The matchers as Thanos' store keys expanded postings: sorted by type (`=`, `!=`, `=~`,
/// `!~`), then name, then value, each printed by [`matcher_string`], joined by `;`.
pub(crate) fn matchers_string(matchers: &[Matcher]) -> String {
    let rank = |kind: MatchType| match kind {
        MatchType::Equal => 0,
        MatchType::NotEqual => 1,
        MatchType::Regex => 2,
        MatchType::NotRegex => 3,
    };
    let mut sorted: Vec<&Matcher> = matchers.iter().collect();
    sorted.sort_by(|left, right| {
        rank(left.kind())
            .cmp(&rank(right.kind()))
            .then_with(|| left.name().cmp(right.name()))
            .then_with(|| left.value().cmp(right.value()))
    });
    sorted
        .into_iter()
        .map(matcher_string)
        .collect::<Vec<_>>()
        .join(";")
}

impl CacheKey {
    /// The postings list of `name=value` in `block`.
    pub(crate) fn postings(block: &ulid::Ulid, name: &str, value: &str) -> Self {
        Self {
            item: POSTINGS,
            block: *block,
            id: KeyId::Digest(digest(&format!("{name}:{value}"))),
        }
    }

    /// The references of the series of `block` matching all `matchers` (block matchers: those
    /// on external labels already removed).
    pub(crate) fn expanded_postings(block: &ulid::Ulid, matchers: &[Matcher]) -> Self {
        Self {
            item: EXPANDED_POSTINGS,
            block: *block,
            id: KeyId::Digest(digest(&matchers_string(matchers))),
        }
    }

    /// The series entry at byte `offset` of `block`'s index (Thanos' series reference: the
    /// index reference times 16 in index version 2).
    pub(crate) fn series(block: &ulid::Ulid, offset: u64) -> Self {
        Self {
            item: SERIES,
            block: *block,
            id: KeyId::Offset(offset),
        }
    }

    /// The key as Thanos' shared index cache spells it (see [`CacheKey`]).
    pub(crate) fn text(&self) -> String {
        use base64::Engine as _;
        let block = self.block;
        match self.id {
            KeyId::Offset(offset) => format!("S:{block}:{offset}"),
            KeyId::Digest(digest) => {
                let prefix = if self.item == EXPANDED_POSTINGS {
                    "EP"
                } else {
                    "P"
                };
                let digest = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
                format!("{prefix}:{block}:{digest}:{COMPRESSION}")
            }
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
        // Counted per item type first: one metric lookup per type, not per key.
        let mut counts: [(&str, u64, u64); 3] =
            [(POSTINGS, 0, 0), (EXPANDED_POSTINGS, 0, 0), (SERIES, 0, 0)];
        for key in keys {
            let hit = u64::from(found.contains_key(key));
            match counts.iter_mut().find(|(item, _, _)| *item == key.item) {
                Some((_, requests, hits)) => {
                    *requests += 1;
                    *hits += hit;
                }
                None => {
                    self.requests.with_label_values(&[key.item]).inc();
                    if hit > 0 {
                        self.hits.with_label_values(&[key.item]).inc();
                    }
                }
            }
        }
        for (item, requests, hits) in counts {
            if requests > 0 {
                self.requests.with_label_values(&[item]).inc_by(requests);
                if hits > 0 {
                    self.hits.with_label_values(&[item]).inc_by(hits);
                }
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
    config.build(metrics, registry)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected hashes computed outside this code (Python: hashlib.blake2b(text,
    // digest_size=32), base64.urlsafe_b64encode, '=' stripped), per Thanos' key format.
    const BLOCK: &str = "01HQZ8X3M6V2T6J9R1K4W5Y7AB";

    #[test]
    fn postings_keys_follow_thanos_format() {
        let block: ulid::Ulid = BLOCK.parse().unwrap();
        let key = CacheKey::postings(&block, "__name__", "up");
        assert_eq!(
            key.text(),
            "P:01HQZ8X3M6V2T6J9R1K4W5Y7AB:4BTtibLpOZUR1aJHkCHmvdmBQ8Kv8TnO9fkCf4ZBaOs:dss"
        );
        assert_eq!(key.item, "Postings");
        // The all-postings list (empty name and value) hashes ":".
        assert_eq!(
            CacheKey::postings(&block, "", "").text(),
            "P:01HQZ8X3M6V2T6J9R1K4W5Y7AB:DcQKMLmxz9NRLFUvIYH7xHEXCRQCie5wnCttjitdnqw:dss"
        );
        // Long label values still give a short key.
        let long = "v".repeat(10_000);
        assert_eq!(CacheKey::postings(&block, "name", &long).text().len(), 76);
    }

    #[test]
    fn series_keys_use_the_byte_offset() {
        let block: ulid::Ulid = BLOCK.parse().unwrap();
        let key = CacheKey::series(&block, 7 * 16);
        assert_eq!(key.text(), "S:01HQZ8X3M6V2T6J9R1K4W5Y7AB:112");
        assert_eq!(key.item, "Series");
    }

    #[test]
    fn expanded_postings_keys_sort_and_print_matchers_like_thanos() {
        let block: ulid::Ulid = BLOCK.parse().unwrap();
        let matchers = vec![
            Matcher::new(MatchType::Regex, "job", "a|b").unwrap(),
            Matcher::new(MatchType::NotEqual, "env", "prod").unwrap(),
            Matcher::new(MatchType::Equal, "a.b", "x\"y").unwrap(),
            Matcher::equal("__name__", "up"),
        ];
        assert_eq!(
            matchers_string(&matchers),
            r#"__name__="up";"a.b"="x\"y";env!="prod";job=~"a|b""#
        );
        let key = CacheKey::expanded_postings(&block, &matchers);
        assert_eq!(
            key.text(),
            "EP:01HQZ8X3M6V2T6J9R1K4W5Y7AB:z30kY3fXwz5H-QBG-1gMC10kfPI6HxMKNMqRvMaLsLU:dss"
        );
        assert_eq!(key.item, "ExpandedPostings");
        // The order of the request's matchers does not change the key.
        let mut reversed = matchers.clone();
        reversed.reverse();
        assert_eq!(CacheKey::expanded_postings(&block, &reversed), key);
        assert_eq!(
            matcher_string(&Matcher::new(MatchType::NotRegex, "_9", "").unwrap()),
            r#"_9!~"""#
        );
        assert_eq!(matcher_string(&Matcher::equal("9a", "\n")), r#""9a"="\n""#);
    }
}
