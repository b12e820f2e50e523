//! The in-memory index cache: one LRU over all item types, bounded by the bytes it really takes.
//!
//! Entries live in one dense vector (a removed entry's place is taken by the last one) and are
//! chained from most to least recently used by indices; a hash table of indices finds them by
//! key. Each key is held once, and the table's slots are 4-byte indices, so the bookkeeping per
//! entry is a fraction of a `HashMap<key, value>` plus a separate recency map, and every byte of
//! it is counted against `max_size`.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::mem::size_of;
use std::sync::Mutex;

use bytes::Bytes;
use hashbrown::HashTable;

use super::{CacheKey, CacheMetrics, IndexCache};

/// "No entry" in the recency chain.
const NONE: u32 = u32::MAX;

/// What the heap holds for one entry besides its value bytes, so that `max_size` bounds the
/// memory the cache really takes: its place in the entry vector, which holds the (fixed-size)
/// key too and grows by doubling (two places are counted), its hash-table slots (a table is
/// between 7/16 and 7/8 full, and tombstones of removed entries make it grow early: five 4-byte
/// slots with their control bytes are counted), the shared-buffer header a value gets once
/// [`Bytes::clone`] shares it, and the allocator's header of each of the two heap blocks (value,
/// sharing header).
const ENTRY_OVERHEAD: u64 = (2 * size_of::<Entry>()
    + 5 * (size_of::<u32>() + 1)
    + BYTES_SHARED_HEADER
    + 2 * ALLOCATION_HEADER) as u64;

/// The heap block `bytes` allocates when a vector-backed `Bytes` is first cloned.
const BYTES_SHARED_HEADER: usize = 3 * size_of::<usize>();

/// Bytes the system allocator adds to each block (glibc: a size word, 16-byte granules).
const ALLOCATION_HEADER: usize = 16;

/// One cached item and its neighbours in recency order.
#[derive(Debug)]
struct Entry {
    key: CacheKey,
    value: Bytes,
    /// The next more recently used entry, or [`NONE`].
    newer: u32,
    /// The next less recently used entry, or [`NONE`].
    older: u32,
}

/// The bytes an entry is counted for.
fn entry_size(value: &Bytes) -> u64 {
    value.len() as u64 + ENTRY_OVERHEAD
}

#[derive(Debug, Default)]
struct Lru {
    entries: Vec<Entry>,
    /// Indices into `entries`, hashed by their keys.
    index: HashTable<u32>,
    hasher: std::hash::RandomState,
    /// Most recently used entry, or [`NONE`].
    newest: u32,
    /// Least recently used entry, or [`NONE`].
    oldest: u32,
    size: u64,
}

impl Lru {
    fn new() -> Self {
        Self {
            newest: NONE,
            oldest: NONE,
            ..Self::default()
        }
    }

    fn position(&self, key: &CacheKey) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        self.index
            .find(hash, |&at| self.entries[at as usize].key == *key)
            .copied()
    }

    /// The neighbours of entry `at` in the chain: (newer, older).
    fn neighbours(&self, at: u32) -> (u32, u32) {
        let entry = &self.entries[at as usize];
        (entry.newer, entry.older)
    }

    /// Points the chain around a place whose neighbours are `newer` and `older`: `newer` (or
    /// `newest` when there is none) sees `from_newer` as its older neighbour, `older` (or
    /// `oldest`) sees `from_older` as its newer one.
    fn point(&mut self, (newer, older): (u32, u32), from_newer: u32, from_older: u32) {
        match newer {
            NONE => self.newest = from_newer,
            newer => self.entries[newer as usize].older = from_newer,
        }
        match older {
            NONE => self.oldest = from_older,
            older => self.entries[older as usize].newer = from_older,
        }
    }

    /// Takes entry `at` out of the recency chain.
    fn unlink(&mut self, at: u32) {
        let (newer, older) = self.neighbours(at);
        self.point((newer, older), older, newer);
    }

    /// Makes entry `at` (not in the chain) the most recently used.
    fn link_newest(&mut self, at: u32) {
        let previous = self.newest;
        {
            let entry = &mut self.entries[at as usize];
            entry.newer = NONE;
            entry.older = previous;
        }
        match previous {
            NONE => self.oldest = at,
            previous => self.entries[previous as usize].newer = at,
        }
        self.newest = at;
    }

    /// The value of `key`, which becomes the most recently used entry.
    fn get(&mut self, key: &CacheKey) -> Option<Bytes> {
        let at = self.position(key)?;
        if self.newest != at {
            self.unlink(at);
            self.link_newest(at);
        }
        Some(self.entries[at as usize].value.clone())
    }

    /// Adds an entry for a key that is not present, as the most recently used.
    fn push(&mut self, key: CacheKey, value: Bytes) {
        let Ok(at) = u32::try_from(self.entries.len()) else {
            return;
        };
        if at == NONE {
            return;
        }
        let hash = self.hasher.hash_one(key);
        self.entries.push(Entry {
            key,
            value,
            newer: NONE,
            older: NONE,
        });
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.index.insert_unique(hash, at, |&slot| {
            hasher.hash_one(entries[slot as usize].key)
        });
        self.link_newest(at);
    }

    /// Removes entry `at` and returns its key and value; the last entry moves into its place.
    fn remove(&mut self, at: u32) -> (CacheKey, Bytes) {
        self.unlink(at);
        let hash = self.hasher.hash_one(self.entries[at as usize].key);
        if let Ok(slot) = self.index.find_entry(hash, |&slot| slot == at) {
            slot.remove();
        }
        let last = (self.entries.len() - 1) as u32;
        let removed = self.entries.swap_remove(at as usize);
        if at != last {
            // The entry that was last now sits at `at`: repoint its neighbours and its slot.
            self.point(self.neighbours(at), at, at);
            let hash = self.hasher.hash_one(self.entries[at as usize].key);
            if let Some(slot) = self.index.find_mut(hash, |&slot| slot == last) {
                *slot = at;
            }
        }
        (removed.key, removed.value)
    }
}

/// An LRU cache of at most `max_size` bytes.
#[derive(Debug)]
pub(crate) struct InMemoryCache {
    max_size: u64,
    max_item_size: u64,
    lru: Mutex<Lru>,
    metrics: CacheMetrics,
}

impl InMemoryCache {
    pub(crate) fn new(max_size: u64, metrics: CacheMetrics) -> Self {
        Self::with_item_size(max_size, max_size / 2, metrics)
    }

    pub(crate) fn with_item_size(max_size: u64, max_item_size: u64, metrics: CacheMetrics) -> Self {
        Self {
            max_size,
            max_item_size,
            lru: Mutex::new(Lru::new()),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.lru
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Removes entry `at`, keeping the size and the metrics right.
    fn evict(&self, lru: &mut Lru, at: u32, counted_as_eviction: bool) {
        let (key, value) = lru.remove(at);
        let freed = entry_size(&value);
        lru.size -= freed;
        if counted_as_eviction {
            self.metrics.evicted.with_label_values(&[key.item]).inc();
        }
        self.metrics.items.with_label_values(&[key.item]).dec();
        self.metrics
            .size
            .with_label_values(&[key.item])
            .sub(freed as i64);
    }

    fn insert(&self, lru: &mut Lru, key: CacheKey, value: Bytes) {
        let size = entry_size(&value);
        if size > self.max_item_size || size > self.max_size {
            return;
        }
        if let Some(at) = lru.position(&key) {
            self.evict(lru, at, false);
        }
        while lru.size + size > self.max_size && lru.oldest != NONE {
            let oldest = lru.oldest;
            self.evict(lru, oldest, true);
        }
        self.metrics.items.with_label_values(&[key.item]).inc();
        self.metrics.added.with_label_values(&[key.item]).inc();
        self.metrics
            .size
            .with_label_values(&[key.item])
            .add(size as i64);
        lru.size += size;
        lru.push(key, value);
    }
}

#[tonic::async_trait]
impl IndexCache for InMemoryCache {
    async fn fetch(&self, keys: &[CacheKey]) -> HashMap<CacheKey, Bytes> {
        let mut found = HashMap::with_capacity(keys.len());
        {
            let mut lru = self.lock();
            for key in keys {
                if let Some(value) = lru.get(key) {
                    found.insert(*key, value);
                }
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

    /// A series key of one test block; distinct `id`s give distinct keys.
    fn key_of(id: u64) -> CacheKey {
        CacheKey::series(&ulid::Ulid::from_parts(1, 2), id * 16)
    }

    /// The key a test names with a short string.
    fn named(name: &str) -> CacheKey {
        key_of(name.bytes().fold(0, |id, byte| id * 256 + u64::from(byte)))
    }

    fn check(max_size: u64, inserts: &[(&str, usize)], expect_present: &[&str]) {
        let registry = prometheus::Registry::new();
        let cache = InMemoryCache::new(max_size, CacheMetrics::register(&registry).unwrap());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for (name, size) in inserts {
            let key = named(name);
            runtime.block_on(cache.store(vec![(key, Bytes::from(vec![0u8; *size]))]));
        }
        let all: Vec<CacheKey> = inserts.iter().map(|(name, _)| named(name)).collect();
        let found = runtime.block_on(cache.fetch(&all));
        let mut present: Vec<&str> = inserts
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| found.contains_key(&named(name)))
            .collect();
        present.dedup();
        present.sort_unstable();
        assert_eq!(present, expect_present);
        assert!(cache.lock().size <= max_size);
    }

    #[test]
    fn evicts_least_recently_used_within_the_byte_bound() {
        let each = entry_size(&Bytes::from(vec![0u8; 100]));
        check(
            3 * each,
            &[("a", 100), ("b", 100), ("c", 100)],
            &["a", "b", "c"],
        );
        check(
            3 * each - 1,
            &[("a", 100), ("b", 100), ("c", 100)],
            &["b", "c"],
        );
        // An item above half the cache is not kept.
        check(3 * each, &[("a", 2 * each as usize)], &[]);
    }

    /// Random stores and fetches against a plain model (a list in recency order, evicting from
    /// its old end): the same entries are present after every step, and the chain and the
    /// table stay consistent while entries move around the dense vector.
    #[test]
    fn agrees_with_a_model_lru_under_random_operations() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let key = |id: u32| key_of(u64::from(id));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for seed in 0..20 {
            let mut random = StdRng::seed_from_u64(seed);
            let max_size = 8 * entry_size(&Bytes::from(vec![0u8; 32]));
            let registry = prometheus::Registry::new();
            let cache = InMemoryCache::new(max_size, CacheMetrics::register(&registry).unwrap());
            // (key, counted size), most recently used last.
            let mut model: Vec<(CacheKey, u64)> = Vec::new();
            for _ in 0..2000 {
                let id = random.random_range(0..30);
                if random.random_bool(0.5) {
                    let value = Bytes::from(vec![id as u8; random.random_range(0..64)]);
                    let size = entry_size(&value);
                    runtime.block_on(cache.store(vec![(key(id), value)]));
                    if size <= max_size / 2 {
                        model.retain(|(present, _)| *present != key(id));
                        while model.iter().map(|(_, size)| size).sum::<u64>() + size > max_size {
                            model.remove(0);
                        }
                        model.push((key(id), size));
                    }
                } else {
                    let found = runtime.block_on(cache.fetch(&[key(id)]));
                    let position = model.iter().position(|(present, _)| *present == key(id));
                    assert_eq!(
                        found.contains_key(&key(id)),
                        position.is_some(),
                        "seed {seed}"
                    );
                    if let Some(position) = position {
                        let entry = model.remove(position);
                        model.push(entry);
                        assert!(found[&key(id)].iter().all(|byte| *byte == id as u8));
                    }
                }
                let lru = cache.lock();
                let mut chain = Vec::new();
                let mut at = lru.oldest;
                while at != NONE {
                    chain.push(lru.entries[at as usize].key);
                    at = lru.entries[at as usize].newer;
                }
                let expected: Vec<CacheKey> = model.iter().map(|(key, _)| *key).collect();
                assert_eq!(chain, expected, "seed {seed}");
                assert_eq!(lru.index.len(), lru.entries.len());
                assert_eq!(lru.size, model.iter().map(|(_, size)| size).sum::<u64>());
            }
        }
    }

    /// The heap the cache really holds, measured by the counting allocator of this test binary,
    /// stays within `max_size` when it is filled many times over with entries shaped like the
    /// series entries of a store gateway's query (short keys, small values), read back as a
    /// query does (which makes the values shared).
    #[test]
    fn the_size_bound_covers_the_heap_the_entries_take() {
        const MAX_SIZE: u64 = 4 << 20;
        let registry = prometheus::Registry::new();
        let metrics = CacheMetrics::register(&registry).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let before = crate::test_alloc::thread_heap();
        let cache = InMemoryCache::new(MAX_SIZE, metrics);
        for batch in 0..200u64 {
            let items: Vec<(CacheKey, Bytes)> = (0..512u64)
                .map(|index| {
                    let key = key_of(batch * 512 + index);
                    (key, Bytes::from(vec![7u8; 40 + (index % 64) as usize]))
                })
                .collect();
            let keys: Vec<CacheKey> = items.iter().map(|(key, _)| *key).collect();
            runtime.block_on(cache.store(items));
            drop(runtime.block_on(cache.fetch(&keys)));
        }
        let held = crate::test_alloc::thread_heap() - before;
        let counted = cache.lock().size;
        assert!(counted <= MAX_SIZE);
        assert!(
            held <= MAX_SIZE as i64,
            "the cache holds {held} heap bytes for a bound of {MAX_SIZE} ({counted} counted)"
        );
        drop(cache);
    }
}
