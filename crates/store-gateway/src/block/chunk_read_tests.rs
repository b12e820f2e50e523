//! Chunk reads of a block without `index_stats`: an instant-like selection (the last chunk of
//! each series) reads little more than the chunks themselves, and chunks longer than their
//! estimate come back whole through the exact refetch.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use prom_model::{Labels, MatchType, Matcher};
use tokio::sync::{Semaphore, mpsc};
use tsdb_block::writer::{BlockWriter, symbols_of};

use super::aggr::StoredChunk;
use super::bounds::SelectedChunk;
use super::{Block, BlockQuery, Reads, SeriesContext};
use crate::cache::IndexCache;
use crate::limits::{Limiter, Limits};

/// Samples per series: twenty chunks of 120 samples, one every 15 s.
const SAMPLES: i64 = 2400;
const STEP: i64 = 15_000;
const SERIES: usize = 250;

/// A deterministic stream of random-looking floats (xorshift64).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        f64::from_bits((self.0 >> 12) | 0x3FF0_0000_0000_0000) * 1e6
    }
}

/// `SERIES` series of `m` with small chunks (slowly growing counters), and one series `big`
/// whose earlier chunks are constant and whose last chunk holds random floats, so that it is
/// far longer than the estimate its earlier chunks give.
fn write_block(dir: &Path) -> (tsdb_block::meta::BlockMeta, std::path::PathBuf) {
    let mut series: Vec<Labels> = (0..SERIES)
        .map(|index| Labels::from_pairs([("__name__", "m"), ("i", &format!("{index:04}"))]))
        .collect();
    series.push(Labels::from_pairs([("__name__", "big")]));
    series.sort();
    let mut writer = BlockWriter::create(dir, symbols_of(series.iter())).unwrap();
    let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
    for labels in &series {
        let big = labels.get("__name__") == Some("big");
        let samples: Vec<(i64, f64)> = (0..SAMPLES)
            .map(|step| {
                let value = if !big {
                    (step * 3 + step % 7) as f64
                } else if step < SAMPLES - 120 {
                    1.0
                } else {
                    noise.next()
                };
                (step * STEP, value)
            })
            .collect();
        writer.add_series_samples(labels, &samples).unwrap();
    }
    let (meta, path) = writer.finish().unwrap();
    assert!(
        meta.thanos
            .as_ref()
            .is_none_or(|thanos| thanos.index_stats.chunk_max_size == 0),
        "the block has no index_stats"
    );
    (meta, path)
}

/// The block in an in-memory bucket, loaded.
async fn load_block(dir: &Path) -> (Block, std::path::PathBuf, prometheus::Registry) {
    let (meta, path) = write_block(dir);
    let registry = prometheus::Registry::new();
    let bucket =
        objstore::Bucket::in_memory("test", objstore::BucketOptions::default(), &registry).unwrap();
    let mut files = vec!["index".to_owned(), "meta.json".to_owned()];
    for name in tsdb_block::chunks::segment_file_names(&path.join("chunks")).unwrap() {
        files.push(format!("chunks/{name}"));
    }
    for file in files {
        let data = std::fs::read(path.join(&file)).unwrap();
        bucket
            .upload(&format!("{}/{file}", meta.ulid), Bytes::from(data))
            .await
            .unwrap();
    }
    let data_dir = dir.join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let lazy_loads = prometheus::IntCounter::new("lazy_loads", "test").unwrap();
    let block = Block::load(meta, bucket, &data_dir, lazy_loads)
        .await
        .unwrap();
    (block, path, registry)
}

fn cache() -> Arc<dyn IndexCache> {
    crate::cache::build(None, 1 << 30, &prometheus::Registry::new()).unwrap()
}

/// A query for `name` (and `extra`) over the last `millis` of the data.
fn query(name: &str, extra: Option<Matcher>, millis: i64) -> BlockQuery {
    let end = (SAMPLES - 1) * STEP;
    let mut matchers = vec![Matcher::new(MatchType::Equal, "__name__", name).unwrap()];
    matchers.extend(extra);
    BlockQuery {
        matchers,
        min_time: end - millis,
        max_time: end,
        skip_chunks: false,
    }
}

/// The data of a chunk as read from the whole segment file, and the bytes it takes there.
fn full_read(block_dir: &Path, chunk_ref: u64) -> (Vec<u8>, u64) {
    let segment = (chunk_ref >> 32) as u32;
    let offset = (chunk_ref & 0xFFFF_FFFF) as usize;
    let name = tsdb_block::chunks::segment_file_name(segment);
    let file = std::fs::read(block_dir.join("chunks").join(&name)).unwrap();
    let framed = tsdb_block::chunks::parse_chunk(&file[offset..], offset as u64, &name).unwrap();
    (framed.data.to_vec(), framed.framed_len as u64)
}

/// The chunks of `selected` loaded, with the chunk bytes requested for them.
async fn load(block: &Block, selected: &[SelectedChunk]) -> (HashMap<u64, StoredChunk>, u64) {
    let limiter = Limiter::new(Limits::default());
    let loaded = block.load_chunks(selected, &limiter).await.unwrap();
    (loaded, limiter.bytes())
}

fn raw_data(stored: &StoredChunk) -> &[u8] {
    match stored {
        StoredChunk::Raw(chunk) => &chunk.data,
        StoredChunk::Aggregate { .. } => panic!("a raw block gave an aggregate chunk"),
    }
}

#[tokio::test]
async fn instant_selection_reads_little_more_than_its_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let (block, block_dir, _registry) = load_block(dir.path()).await;
    let cache = cache();
    let limiter = Limiter::new(Limits::default());
    let reads = Reads {
        cache: cache.as_ref(),
        limiter: &limiter,
    };
    // Every fifth series: the next selected chunk is far away.
    let every_fifth = Matcher::new(MatchType::Regex, "i", "...[05]").unwrap();
    let selected = block
        .select(&query("m", Some(every_fifth), 60_000), reads)
        .await
        .unwrap();
    assert_eq!(selected.len(), SERIES / 5);
    let chunks: Vec<SelectedChunk> = selected
        .iter()
        .flat_map(|series| series.chunks.iter().copied())
        .collect();
    assert_eq!(
        chunks.len(),
        SERIES / 5,
        "only the last chunk of each series"
    );

    let (loaded, requested) = load(&block, &chunks).await;
    let mut real = 0;
    for chunk in &chunks {
        let (expected, framed) = full_read(&block_dir, chunk.meta.chunk_ref);
        real += framed;
        assert_eq!(raw_data(&loaded[&chunk.meta.chunk_ref]), expected);
    }
    // The same chunks read with the block-wide estimate, as before read lengths.
    let unbounded: Vec<SelectedChunk> = chunks
        .iter()
        .map(|chunk| SelectedChunk {
            read_length: None,
            ..*chunk
        })
        .collect();
    let (loaded_before, before) = load(&block, &unbounded).await;
    for chunk in &chunks {
        assert_eq!(
            raw_data(&loaded_before[&chunk.meta.chunk_ref]),
            raw_data(&loaded[&chunk.meta.chunk_ref])
        );
    }
    println!("chunk bytes: {real} stored, {requested} requested, {before} with the estimate");
    assert!(requested >= real, "{requested} < {real}");
    assert!(requested < 4 * real, "{requested} bytes for {real}");
    assert!(before > 10 * requested, "{before} vs {requested}");
}

#[tokio::test]
async fn chunks_longer_than_their_estimate_are_read_again_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (block, block_dir, _registry) = load_block(dir.path()).await;
    let context = Arc::new(SeriesContext {
        query: query("big", None, 60_000),
        cache: cache(),
        limiter: Limiter::new(Limits::default()),
        removed: Vec::new(),
        shard: None,
        aggregates: Vec::new(),
        fetches: Semaphore::new(4),
    });
    let reads = context.reads();
    let selected = block.select(&context.query, reads).await.unwrap();
    let [series] = selected.as_slice() else {
        panic!("{} series", selected.len());
    };
    let [chunk] = series.chunks.as_slice() else {
        panic!("{} chunks", series.chunks.len());
    };
    let (expected, framed) = full_read(&block_dir, chunk.meta.chunk_ref);
    let estimate = chunk
        .read_length
        .expect("estimated from the earlier chunks");
    assert!(
        framed > estimate,
        "the last chunk ({} bytes) fits its estimate ({estimate})",
        expected.len()
    );

    // Through the whole series path.
    let (sender, mut receiver) = mpsc::channel(4);
    let block = Arc::new(block);
    Arc::clone(&block)
        .stream_series(Arc::clone(&context), sender)
        .await;
    let mut got = Vec::new();
    while let Some(batch) = receiver.recv().await {
        got.extend(batch.unwrap());
    }
    let [sent] = got.as_slice() else {
        panic!("{} series sent", got.len());
    };
    let [wire] = sent.chunks.as_slice() else {
        panic!("{} chunks sent", sent.chunks.len());
    };
    assert_eq!(
        wire.raw.as_ref().unwrap().data.as_ref(),
        expected.as_slice()
    );

    // And both reads counted: the short one and the exact one.
    let (loaded, requested) = load(&block, &[*chunk]).await;
    assert_eq!(raw_data(&loaded[&chunk.meta.chunk_ref]), expected);
    assert_eq!(requested, estimate + framed);
}
