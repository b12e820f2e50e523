//! Test helpers: small block metas built in one line.

use std::collections::BTreeMap;

use tsdb_block::meta::{BlockMeta, ThanosFile, ThanosMeta, source};
use ulid::Ulid;

/// The ULID Thanos' tests write as `ulid.MustNew(n, nil)`: timestamp `n`, zero entropy.
pub(crate) fn id(n: u64) -> Ulid {
    Ulid::from_parts(n, 0)
}

/// A level-1 raw block `id(n)` over `[min_time, max_time)` with a `thanos` section and no labels.
pub(crate) fn meta(n: u64, min_time: i64, max_time: i64) -> BlockMeta {
    let mut meta = BlockMeta::new(id(n), min_time, max_time);
    meta.thanos = Some(ThanosMeta::new(BTreeMap::new(), 0, source::TEST));
    meta
}

/// Builder-style changes to a test meta.
pub(crate) trait MetaExt {
    /// Sets the downsampling resolution.
    fn res(self, resolution: i64) -> Self;
    /// Sets the external labels.
    fn labels(self, labels: &[(&str, &str)]) -> Self;
    /// Sets the compaction sources to `id(n)` for each `n`.
    fn sources(self, sources: &[u64]) -> Self;
    /// Records an index file of `size` bytes in `thanos.files`.
    fn index_size(self, size: i64) -> Self;
    /// Sets the series and tombstone counts.
    fn tombstones(self, series: u64, tombstones: u64) -> Self;
    /// Sets `compaction.failed`.
    fn failed(self) -> Self;
}

impl MetaExt for BlockMeta {
    fn res(mut self, resolution: i64) -> Self {
        if let Some(thanos) = self.thanos.as_mut() {
            thanos.downsample.resolution = resolution;
        }
        self
    }

    fn labels(mut self, labels: &[(&str, &str)]) -> Self {
        if let Some(thanos) = self.thanos.as_mut() {
            thanos.labels = labels
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect();
        }
        self
    }

    fn sources(mut self, sources: &[u64]) -> Self {
        self.compaction.sources = sources.iter().map(|n| id(*n)).collect();
        self
    }

    fn index_size(mut self, size: i64) -> Self {
        if let Some(thanos) = self.thanos.as_mut() {
            thanos.files = vec![ThanosFile {
                rel_path: "index".to_owned(),
                size_bytes: size,
                hash: None,
            }];
        }
        self
    }

    fn tombstones(mut self, series: u64, tombstones: u64) -> Self {
        self.stats.num_series = series;
        self.stats.num_tombstones = tombstones;
        self
    }

    fn failed(mut self) -> Self {
        self.compaction.failed = true;
        self
    }
}

/// The ULID numbers of a list of blocks, for compact assertions.
pub(crate) fn numbers<'a>(blocks: impl IntoIterator<Item = &'a Ulid>) -> Vec<u64> {
    blocks
        .into_iter()
        .map(|block| block.timestamp_ms())
        .collect()
}
