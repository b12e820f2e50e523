//! Streaming block writer: series in label order in, a complete block directory out.
//!
//! **Memory.** The index starts with the symbol table, so the writer takes every symbol up front
//! (a compactor or [`rewrite_block`] takes its input's symbol table; [`symbols_of`] collects them
//! from label sets). Each series' chunks go straight to the segment files and its index entry
//! straight to the index file; postings come from an external sort at the end (see
//! [`IndexWriter`]). Memory is therefore the symbol table, one series' chunks and fixed-size
//! buffers, whatever the size of the block.
//!
//! **Atomicity.** Everything is written under `<ulid>.tmp-for-creation`, which is renamed to
//! `<ulid>` after `meta.json`, the index, the chunks and the tombstones are synced.

mod rewrite;

pub use rewrite::rewrite_block;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use prom_model::Labels;
use ulid::Ulid;

use crate::chunkenc::{CutRule, Encoding, cut_xor_chunks};
use crate::chunks::SegmentWriter;
use crate::error::{Error, Result};
use crate::index::{ChunkMeta, IndexWriter};
use crate::meta::{BlockMeta, IndexStats};

const WRITER: &str = "block writer";

/// One chunk given to [`BlockWriter::add_series`]: its time range, encoding and stored bytes.
#[derive(Debug, Clone, Copy)]
pub struct ChunkData<'a> {
    /// Timestamp of the first sample (ms).
    pub min_time: i64,
    /// Timestamp of the last sample (ms, inclusive).
    pub max_time: i64,
    /// How `data` is encoded.
    pub encoding: Encoding,
    /// The chunk's bytes as a segment file stores them (for XOR: count + bit stream).
    pub data: &'a [u8],
}

/// Every label name and value of `series`: the symbols a [`BlockWriter`] needs.
pub fn symbols_of<'a>(series: impl IntoIterator<Item = &'a Labels>) -> BTreeSet<String> {
    let mut symbols = BTreeSet::new();
    for labels in series {
        for label in labels {
            if !symbols.contains(&label.name) {
                symbols.insert(label.name.clone());
            }
            if !symbols.contains(&label.value) {
                symbols.insert(label.value.clone());
            }
        }
    }
    symbols
}

/// Writes one block, series by series in label order.
#[derive(Debug)]
pub struct BlockWriter {
    parent: PathBuf,
    ulid: Ulid,
    tmp_dir: PathBuf,
    index: IndexWriter,
    segments: SegmentWriter,
    time_range: Option<(i64, i64)>,
    seen_min: i64,
    seen_max: i64,
    num_samples: u64,
    num_float_samples: u64,
    num_histogram_samples: u64,
    num_series: u64,
    index_stats: IndexStats,
    last_series_ref: Option<u64>,
    num_chunks: u64,
    metas: Vec<ChunkMeta>,
}

impl BlockWriter {
    /// Starts a block with a new ULID under `parent`; `symbols` must include every label name and
    /// value to come (see [`symbols_of`]).
    pub fn create(parent: &Path, symbols: impl IntoIterator<Item = String>) -> Result<Self> {
        Self::create_with_ulid(parent, Ulid::new(), symbols)
    }

    /// Starts the block `ulid` under `parent`.
    pub fn create_with_ulid(
        parent: &Path,
        ulid: Ulid,
        symbols: impl IntoIterator<Item = String>,
    ) -> Result<Self> {
        let tmp_dir = parent.join(format!("{ulid}.tmp-for-creation"));
        if tmp_dir.exists() {
            std::fs::remove_dir_all(&tmp_dir)
                .map_err(|source| Error::io("remove", &tmp_dir, source))?;
        }
        std::fs::create_dir_all(&tmp_dir)
            .map_err(|source| Error::io("create", &tmp_dir, source))?;
        let index = IndexWriter::create(&tmp_dir.join("index"), symbols)?;
        let segments = SegmentWriter::create(&tmp_dir)?;
        Ok(Self {
            parent: parent.to_owned(),
            ulid,
            tmp_dir,
            index,
            segments,
            time_range: None,
            seen_min: i64::MAX,
            seen_max: i64::MIN,
            num_samples: 0,
            num_float_samples: 0,
            num_histogram_samples: 0,
            num_series: 0,
            index_stats: IndexStats::default(),
            last_series_ref: None,
            num_chunks: 0,
            metas: Vec::new(),
        })
    }

    /// The block's ULID.
    pub fn ulid(&self) -> Ulid {
        self.ulid
    }

    /// Sets the block's `[min_time, max_time)` range for `meta.json`; by default it spans the
    /// chunks written (last sample + 1).
    pub fn set_time_range(&mut self, min_time: i64, max_time: i64) {
        self.time_range = Some((min_time, max_time));
    }

    /// Adds a series with its chunks, stored as given. Series must come in strictly increasing
    /// label order; a series without chunks is left out, as Prometheus' compactor does.
    pub fn add_series(&mut self, labels: &Labels, chunks: &[ChunkData<'_>]) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        let batch: Vec<(Encoding, &[u8])> = chunks
            .iter()
            .map(|chunk| (chunk.encoding, chunk.data))
            .collect();
        let refs = self.segments.write_chunks(&batch)?;
        self.metas.clear();
        for (chunk, chunk_ref) in chunks.iter().zip(refs) {
            self.metas.push(ChunkMeta {
                min_time: chunk.min_time,
                max_time: chunk.max_time,
                chunk_ref: chunk_ref.0,
            });
            let samples = chunk_samples(chunk).ok_or_else(|| Error::InvalidInput {
                writer: WRITER,
                detail: format!(
                    "series {labels}: chunk of {} bytes has no sample count",
                    chunk.data.len()
                ),
            })?;
            self.num_samples += u64::from(samples);
            if chunk.encoding.is_float() {
                self.num_float_samples += u64::from(samples);
            } else if chunk.encoding.is_histogram() {
                self.num_histogram_samples += u64::from(samples);
            }
            self.seen_min = self.seen_min.min(chunk.min_time);
            self.seen_max = self.seen_max.max(chunk.max_time);
            // Length field, encoding byte, data and checksum, as stored in the segment.
            let framed =
                crate::encoding::uvarint_size(chunk.data.len() as u64) + 1 + chunk.data.len() + 4;
            let framed = i64::try_from(framed).unwrap_or(i64::MAX);
            self.index_stats.chunk_max_size = self.index_stats.chunk_max_size.max(framed);
        }
        let metas = std::mem::take(&mut self.metas);
        let added = self.index.add_series(labels, &metas);
        self.metas = metas;
        let series_ref = added?;
        if let Some(previous) = self.last_series_ref {
            // Thanos' measure: the distance between consecutive series entries.
            let stride = series_ref
                .saturating_sub(previous)
                .saturating_mul(crate::index::SERIES_ALIGNMENT);
            let stride = i64::try_from(stride).unwrap_or(i64::MAX);
            self.index_stats.series_max_size = self.index_stats.series_max_size.max(stride);
        }
        self.last_series_ref = Some(series_ref);
        self.num_chunks += chunks.len() as u64;
        self.num_series += 1;
        Ok(())
    }

    /// Adds a series from float samples in increasing time order, cut into XOR chunks of 120
    /// samples as Prometheus' compactor cuts them.
    pub fn add_series_samples(&mut self, labels: &Labels, samples: &[(i64, f64)]) -> Result<()> {
        let chunks = cut_xor_chunks(samples.iter().copied(), CutRule::compaction())?;
        let data: Vec<ChunkData<'_>> = chunks
            .iter()
            .map(|chunk| ChunkData {
                min_time: chunk.min_time,
                max_time: chunk.max_time,
                encoding: Encoding::Xor,
                data: &chunk.data,
            })
            .collect();
        self.add_series(labels, &data)
    }

    /// Samples written so far.
    pub fn num_samples(&self) -> u64 {
        self.num_samples
    }

    /// Series written so far.
    pub fn num_series(&self) -> u64 {
        self.num_series
    }

    /// Thanos' `index_stats` of what was written so far: the largest chunk as stored (length
    /// field, encoding, data, checksum) and the largest distance between consecutive series
    /// entries, as Thanos' index health check measures them. A compactor puts them in the
    /// `thanos` section (see [`Self::finish_with`]).
    pub fn index_stats(&self) -> IndexStats {
        self.index_stats
    }

    /// Gives up the block: removes its `<ulid>.tmp-for-creation` folder.
    pub fn abort(self) -> Result<()> {
        let Self {
            tmp_dir,
            index,
            segments,
            ..
        } = self;
        drop(index);
        drop(segments);
        std::fs::remove_dir_all(&tmp_dir).map_err(|source| Error::io("remove", &tmp_dir, source))
    }

    /// Finishes the index, the chunks, an empty tombstones file and `meta.json` (level 1, its own
    /// source, stats), then renames the folder into place. Returns the meta and the block folder.
    pub fn finish(self) -> Result<(BlockMeta, PathBuf)> {
        self.finish_with(|_| {})
    }

    /// Like [`Self::finish`], letting `complete` change the meta (time range and stats already
    /// set, level 1, its own source) before it is written: a compactor sets the level, sources,
    /// parents and the `thanos` section here.
    pub fn finish_with(
        self,
        complete: impl FnOnce(&mut BlockMeta),
    ) -> Result<(BlockMeta, PathBuf)> {
        self.index.finish()?;
        self.segments.finish()?;
        crate::tombstones::write_empty(&self.tmp_dir)?;
        let (min_time, max_time) = match self.time_range {
            Some(range) => range,
            None if self.num_chunks == 0 => (0, 0),
            None => (self.seen_min, self.seen_max.saturating_add(1)),
        };
        let mut meta = BlockMeta::new(self.ulid, min_time, max_time);
        meta.stats.num_samples = self.num_samples;
        meta.stats.num_float_samples = self.num_float_samples;
        meta.stats.num_histogram_samples = self.num_histogram_samples;
        meta.stats.num_series = self.num_series;
        meta.stats.num_chunks = self.num_chunks;
        complete(&mut meta);
        meta.write_to_dir(&self.tmp_dir)?;
        sync_dir(&self.tmp_dir)?;
        let final_dir = self.parent.join(self.ulid.to_string());
        std::fs::rename(&self.tmp_dir, &final_dir)
            .map_err(|source| Error::io("rename", &self.tmp_dir, source))?;
        sync_dir(&self.parent)?;
        Ok((meta, final_dir))
    }
}

/// The samples a chunk holds for the block's stats: its header count, or for Thanos' aggregate
/// chunk the count of its count part, as Thanos counts it (0 when that part is absent).
fn chunk_samples(chunk: &ChunkData<'_>) -> Option<u16> {
    match chunk.encoding {
        Encoding::ThanosAggr => Some(crate::chunkenc::AggrChunk::new(chunk.data).num_samples()),
        encoding => encoding.sample_count(chunk.data),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|file| file.sync_all())
        .map_err(|source| Error::io("sync", dir, source))
}

#[cfg(test)]
mod tests {
    use prom_model::{MatchType, Matcher};

    use super::*;
    use crate::chunkenc::encode_xor;
    use crate::reader::BlockReader;
    use crate::tombstones::{Interval, Tombstones};

    fn series(count: usize) -> Vec<(Labels, Vec<(i64, f64)>)> {
        (0..count)
            .map(|index| {
                let labels = Labels::from_pairs([
                    ("__name__", "m".to_owned()),
                    ("i", format!("{index:03}")),
                ]);
                let samples = (0..500)
                    .map(|t| (t * 1000, (t + index as i64) as f64))
                    .collect();
                (labels, samples)
            })
            .collect()
    }

    fn write(parent: &Path, input: &[(Labels, Vec<(i64, f64)>)]) -> (BlockMeta, PathBuf) {
        let mut writer =
            BlockWriter::create(parent, symbols_of(input.iter().map(|(l, _)| l))).unwrap();
        for (labels, samples) in input {
            writer.add_series_samples(labels, samples).unwrap();
        }
        writer.finish().unwrap()
    }

    fn read(block: &BlockReader, min_time: i64, max_time: i64) -> Vec<(Labels, Vec<(i64, f64)>)> {
        let all = Matcher::new(MatchType::Regex, "__name__", ".+").unwrap();
        block
            .select(std::slice::from_ref(&all), min_time, max_time)
            .unwrap()
            .map(|selected| {
                let selected = selected.unwrap();
                let mut samples = Vec::new();
                block.samples(&selected, &mut samples).unwrap();
                (selected.labels, samples)
            })
            .collect()
    }

    #[test]
    fn written_block_reads_back_with_stats() {
        let dir = tempfile::tempdir().unwrap();
        let input = series(20);
        let (meta, block_dir) = write(dir.path(), &input);
        assert_eq!(block_dir, dir.path().join(meta.ulid.to_string()));
        assert_eq!((meta.min_time, meta.max_time), (0, 499_001));
        assert_eq!(meta.stats.num_series, 20);
        assert_eq!(meta.stats.num_samples, 20 * 500);
        assert_eq!(meta.stats.num_chunks, 20 * 5);
        let block = BlockReader::open(&block_dir).unwrap();
        assert_eq!(read(&block, i64::MIN, i64::MAX), input);
        let trimmed = read(&block, 10_500, 20_000);
        assert_eq!(
            trimmed[0].1,
            (11..=20).map(|t| (t * 1000, t as f64)).collect::<Vec<_>>()
        );
        assert_eq!(
            std::fs::read(block_dir.join("tombstones")).unwrap().len(),
            9,
            "empty tombstones file"
        );
    }

    #[test]
    fn finish_with_takes_the_callers_meta_and_abort_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let input = series(2);
        let mut writer =
            BlockWriter::create(dir.path(), symbols_of(input.iter().map(|(l, _)| l))).unwrap();
        for (labels, samples) in &input {
            writer.add_series_samples(labels, samples).unwrap();
        }
        assert_eq!((writer.num_series(), writer.num_samples()), (2, 1000));
        let stats = writer.index_stats();
        assert!(
            stats.series_max_size >= 16 && stats.series_max_size % 16 == 0,
            "{stats:?}"
        );
        let largest = cut_xor_chunks(input[1].1.iter().copied(), CutRule::compaction())
            .unwrap()
            .iter()
            .chain(&cut_xor_chunks(input[0].1.iter().copied(), CutRule::compaction()).unwrap())
            .map(|chunk| chunk.data.len())
            .max()
            .unwrap();
        let framed = crate::encoding::uvarint_size(largest as u64) + 1 + largest + 4;
        assert_eq!(stats.chunk_max_size, framed as i64);
        let parent = Ulid::new();
        let (meta, block_dir) = writer
            .finish_with(|meta| {
                meta.compaction.level = 3;
                meta.compaction.sources = vec![parent];
            })
            .unwrap();
        let read = BlockMeta::read_from_dir(&block_dir).unwrap();
        assert_eq!(read, meta);
        assert_eq!(
            (read.compaction.level, read.compaction.sources.clone()),
            (3, vec![parent])
        );
        assert_eq!(read.stats.num_samples, 1000);

        let writer =
            BlockWriter::create(dir.path(), symbols_of(input.iter().map(|(l, _)| l))).unwrap();
        let ulid = writer.ulid();
        writer.abort().unwrap();
        assert!(!dir.path().join(format!("{ulid}.tmp-for-creation")).exists());
        assert!(!dir.path().join(ulid.to_string()).exists());
    }

    #[test]
    fn aggregate_chunks_count_their_count_part_in_the_stats() {
        use crate::chunkenc::{AggrChunk, AggrPart, AggrType, encode_aggr_chunk};
        let dir = tempfile::tempdir().unwrap();
        let labels = Labels::from_pairs([("__name__", "m")]);
        let count = encode_xor(&[(299_999, 3.0), (599_999, 2.0)]).into_bytes();
        let part = Some(AggrPart {
            encoding: Encoding::Xor,
            data: &count,
        });
        let data = encode_aggr_chunk(&[part, part, None, None, None]);
        let mut writer = BlockWriter::create(dir.path(), symbols_of([&labels])).unwrap();
        let chunk = ChunkData {
            min_time: 299_999,
            max_time: 599_999,
            encoding: Encoding::ThanosAggr,
            data: &data,
        };
        writer.add_series(&labels, &[chunk]).unwrap();
        let (meta, block_dir) = writer.finish().unwrap();
        assert_eq!((meta.stats.num_samples, meta.stats.num_chunks), (2, 1));
        let block = BlockReader::open(&block_dir).unwrap();
        let refs: Vec<u64> = crate::postings::collect(block.index().all_postings().unwrap());
        let entry = block.index().series(refs[0]).unwrap();
        let (encoding, read) = block.chunk(entry.chunks[0].chunk_ref).unwrap();
        assert_eq!(encoding, Encoding::ThanosAggr);
        let sum = AggrChunk::new(read).get(AggrType::Sum).unwrap().unwrap();
        assert_eq!(sum.data, count.as_slice());
    }

    #[test]
    fn out_of_order_series_are_refused_and_nothing_is_renamed() {
        let dir = tempfile::tempdir().unwrap();
        let input = series(2);
        let mut writer =
            BlockWriter::create(dir.path(), symbols_of(input.iter().map(|(l, _)| l))).unwrap();
        writer.add_series_samples(&input[1].0, &input[1].1).unwrap();
        let error = writer
            .add_series_samples(&input[0].0, &input[0].1)
            .unwrap_err();
        assert!(matches!(error, Error::InvalidInput { .. }), "{error}");
        let unknown = Labels::from_pairs([("__name__", "m"), ("zzz", "not a symbol")]);
        let error = writer
            .add_series_samples(&unknown, &[(1, 1.0)])
            .unwrap_err();
        assert!(
            error.to_string().contains("not in the symbol table"),
            "{error}"
        );
        let ulid = writer.ulid();
        drop(writer);
        assert!(!dir.path().join(ulid.to_string()).exists());
    }

    #[test]
    fn tombstones_are_applied_by_reads_and_by_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let input = series(3);
        let (_, block_dir) = write(dir.path(), &input);
        let block = BlockReader::open(&block_dir).unwrap();
        let refs: Vec<u64> = crate::postings::collect(block.index().all_postings().unwrap());
        drop(block);
        let mut tombstones = Tombstones::new();
        // Series 0: a whole chunk (0..119 s) and part of the next one; series 2: everything.
        tombstones.add_interval(refs[0], Interval::new(0, 150_000));
        tombstones.add_interval(refs[2], Interval::new(i64::MIN, i64::MAX));
        std::fs::write(block_dir.join("tombstones"), tombstones.encode()).unwrap();

        let mut expected = input.clone();
        expected[0].1.retain(|(t, _)| *t > 150_000);
        expected.remove(2);
        let block = BlockReader::open(&block_dir).unwrap();
        assert_eq!(read(&block, i64::MIN, i64::MAX), expected);

        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let (meta, rewritten) = rewrite_block(&block_dir, &out).unwrap();
        assert_eq!(meta.stats.num_series, 2);
        assert_eq!(
            (meta.min_time, meta.max_time),
            (block.meta().min_time, block.meta().max_time)
        );
        let rewritten = BlockReader::open(&rewritten).unwrap();
        assert_eq!(read(&rewritten, i64::MIN, i64::MAX), expected);
    }
}
