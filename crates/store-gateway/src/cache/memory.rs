//! The in-memory index cache: one LRU over all item types, bounded by total bytes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use bytes::Bytes;

use super::{CacheKey, CacheMetrics, IndexCache};

/// Per-entry bookkeeping bytes counted on top of key and value.
const ENTRY_OVERHEAD: u64 = 64;

#[derive(Debug, Default)]
struct Lru {
    /// Key → (value, last-use tick).
    entries: HashMap<CacheKey, (Bytes, u64)>,
    /// Last-use tick → key, oldest first.
    order: BTreeMap<u64, CacheKey>,
    tick: u64,
    size: u64,
}

/// An LRU cache of at most `max_size` bytes.
#[derive(Debug)]
pub(crate) struct InMemoryCache {
    max_size: u64,
    max_item_size: u64,
    lru: Mutex<Lru>,
    metrics: CacheMetrics,
}

fn entry_size(key: &CacheKey, value: &Bytes) -> u64 {
    key.key.len() as u64 + value.len() as u64 + ENTRY_OVERHEAD
}

impl InMemoryCache {
    pub(crate) fn new(max_size: u64, metrics: CacheMetrics) -> Self {
        Self::with_item_size(max_size, max_size / 2, metrics)
    }

    pub(crate) fn with_item_size(max_size: u64, max_item_size: u64, metrics: CacheMetrics) -> Self {
        Self {
            max_size,
            max_item_size,
            lru: Mutex::new(Lru::default()),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.lru
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn insert(&self, lru: &mut Lru, key: CacheKey, value: Bytes) {
        let size = entry_size(&key, &value);
        if size > self.max_item_size || size > self.max_size {
            return;
        }
        if let Some((old, tick)) = lru.entries.remove(&key) {
            lru.order.remove(&tick);
            lru.size -= entry_size(&key, &old);
            self.metrics.items.with_label_values(&[key.item]).dec();
            self.metrics
                .size
                .with_label_values(&[key.item])
                .sub(entry_size(&key, &old) as i64);
        }
        while lru.size + size > self.max_size {
            let Some((_, oldest)) = lru.order.pop_first() else {
                break;
            };
            if let Some((value, _)) = lru.entries.remove(&oldest) {
                let freed = entry_size(&oldest, &value);
                lru.size -= freed;
                self.metrics.evicted.with_label_values(&[oldest.item]).inc();
                self.metrics.items.with_label_values(&[oldest.item]).dec();
                self.metrics
                    .size
                    .with_label_values(&[oldest.item])
                    .sub(freed as i64);
            }
        }
        lru.tick += 1;
        let tick = lru.tick;
        lru.order.insert(tick, key.clone());
        lru.size += size;
        self.metrics.items.with_label_values(&[key.item]).inc();
        self.metrics.added.with_label_values(&[key.item]).inc();
        self.metrics
            .size
            .with_label_values(&[key.item])
            .add(size as i64);
        lru.entries.insert(key, (value, tick));
    }
}

#[tonic::async_trait]
impl IndexCache for InMemoryCache {
    async fn fetch(&self, keys: &[CacheKey]) -> HashMap<CacheKey, Bytes> {
        let mut found = HashMap::new();
        {
            let mut lru = self.lock();
            for key in keys {
                lru.tick += 1;
                let tick = lru.tick;
                let Some((value, old_tick)) = lru.entries.get_mut(key) else {
                    continue;
                };
                let previous = std::mem::replace(old_tick, tick);
                let value = value.clone();
                lru.order.remove(&previous);
                lru.order.insert(tick, key.clone());
                found.insert(key.clone(), value);
            }
        }
        self.metrics.observe(keys, &found);
        found
    }

    async fn store(&self, items: Vec<(CacheKey, Bytes)>) {
        let mut lru = self.lock();
        for (key, value) in items {
            self.insert(&mut lru, key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(max_size: u64, inserts: &[(&str, usize)], expect_present: &[&str]) {
        let registry = prometheus::Registry::new();
        let cache = InMemoryCache::new(max_size, CacheMetrics::register(&registry).unwrap());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for (name, size) in inserts {
            let key = CacheKey {
                item: super::super::SERIES,
                key: (*name).to_owned(),
            };
            runtime.block_on(cache.store(vec![(key, Bytes::from(vec![0u8; *size]))]));
        }
        let all: Vec<CacheKey> = inserts
            .iter()
            .map(|(name, _)| CacheKey {
                item: super::super::SERIES,
                key: (*name).to_owned(),
            })
            .collect();
        let found = runtime.block_on(cache.fetch(&all));
        let mut present: Vec<&str> = found.keys().map(|key| key.key.as_str()).collect();
        present.sort_unstable();
        assert_eq!(present, expect_present);
        assert!(cache.lock().size <= max_size);
    }

    #[test]
    fn evicts_least_recently_used_within_the_byte_bound() {
        check(
            1000,
            &[("a", 100), ("b", 100), ("c", 100)],
            &["a", "b", "c"],
        );
        check(400, &[("a", 100), ("b", 100), ("c", 100)], &["b", "c"]);
        check(1000, &[("a", 600)], &[]);
    }
}
