//! Reading a whole block: index, chunks, meta and tombstones, from a [`ByteSource`] per file.

use std::collections::HashMap;
use std::path::Path;

use prom_model::{Labels, Matcher};

use crate::chunkenc::{Encoding, XorIterator, decode_xor_chunks};
use crate::error::{Error, Result};
use crate::index::{ChunkMeta, IndexReader, postings_for_matchers};
use crate::meta::BlockMeta;
use crate::postings::{BoxPostings, SeriesRef};
use crate::source::{ByteSource, MmapSource};

/// Deleted time ranges, inclusive on both ends.
pub type Intervals = Vec<(i64, i64)>;

/// A series chosen by [`BlockReader::select`]: labels, the chunks overlapping the query range
/// and not entirely deleted, and the ranges whose samples must be dropped (tombstones plus the
/// parts of chunks outside the query range).
#[derive(Debug, Clone, PartialEq)]
pub struct SelectedSeries {
    /// The series reference in the index.
    pub series_ref: SeriesRef,
    /// The series' labels.
    pub labels: Labels,
    /// The chunks to read.
    pub chunks: Vec<ChunkMeta>,
    /// Samples in these ranges are not part of the result.
    pub deleted: Intervals,
}

/// A block opened for reading.
#[derive(Debug)]
pub struct BlockReader {
    meta: BlockMeta,
    index: IndexReader,
    segments: Vec<Box<dyn ByteSource>>,
    tombstones: HashMap<SeriesRef, Intervals>,
}

impl BlockReader {
    /// Opens the block folder `dir`, memory-mapping its files.
    pub fn open(dir: &Path) -> Result<Self> {
        let meta = BlockMeta::read_from_dir(dir)?;
        let index = Box::new(MmapSource::open(&dir.join("index"), "index")?);
        let chunks_dir = dir.join("chunks");
        let mut names: Vec<String> = Vec::new();
        let entries = std::fs::read_dir(&chunks_dir)
            .map_err(|source| Error::io("list", &chunks_dir, source))?;
        for entry in entries {
            let entry = entry.map_err(|source| Error::io("list", &chunks_dir, source))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.len() == 6 && name.bytes().all(|byte| byte.is_ascii_digit()) {
                names.push(name);
            }
        }
        names.sort();
        let mut segments: Vec<Box<dyn ByteSource>> = Vec::with_capacity(names.len());
        for name in names {
            let segment = MmapSource::open(&chunks_dir.join(&name), format!("chunks/{name}"))?;
            crate::chunks::check_segment_header(segment.read_to_end(0, "header")?, segment.name())?;
            segments.push(Box::new(segment));
        }
        let tombstones_path = dir.join("tombstones");
        let tombstones: Box<dyn ByteSource> = if tombstones_path.exists() {
            Box::new(MmapSource::open(&tombstones_path, "tombstones")?)
        } else {
            Box::new(crate::source::MemorySource::new("tombstones", Vec::new()))
        };
        Self::from_sources(meta, index, segments, tombstones.as_ref())
    }

    /// A block from its parts: `segments` in file order (`000001` first); an empty
    /// `tombstones` source stands for no tombstones file.
    pub fn from_sources(
        meta: BlockMeta,
        index: Box<dyn ByteSource>,
        segments: Vec<Box<dyn ByteSource>>,
        tombstones: &dyn ByteSource,
    ) -> Result<Self> {
        let index = IndexReader::new(index)?;
        let tombstones = crate::tombstones::read_intervals(tombstones)?;
        Ok(Self {
            meta,
            index,
            segments,
            tombstones,
        })
    }

    /// The block's `meta.json`.
    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    /// The index.
    pub fn index(&self) -> &IndexReader {
        &self.index
    }

    /// Every label name, sorted.
    pub fn label_names(&self) -> Vec<&str> {
        self.index.label_names()
    }

    /// Every value of label `name`, sorted.
    pub fn label_values(&self, name: &str) -> Result<Vec<&str>> {
        self.index.label_values(name)
    }

    /// The deleted intervals of a series.
    pub fn tombstones(&self, series_ref: SeriesRef) -> &[(i64, i64)] {
        self.tombstones
            .get(&series_ref)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The series matching all `matchers` with samples in `[min_time, max_time]` (inclusive), in
    /// label order, as Prometheus' block querier selects them.
    pub fn select(
        &self,
        matchers: &[Matcher],
        min_time: i64,
        max_time: i64,
    ) -> Result<SeriesIter<'_>> {
        let postings = postings_for_matchers(&self.index, matchers)?;
        Ok(SeriesIter {
            block: self,
            postings,
            min_time,
            max_time,
        })
    }

    /// The encoding and bytes of the chunk `chunk_ref`.
    pub fn chunk(&self, chunk_ref: u64) -> Result<(Encoding, &[u8])> {
        let segment_index = (chunk_ref >> 32) as usize;
        let offset = chunk_ref & 0xFFFF_FFFF;
        let segment = self
            .segments
            .get(segment_index)
            .ok_or_else(|| Error::Corrupt {
                file: "index".to_owned(),
                section: "series",
                offset: 0,
                detail: format!(
                    "chunk ref {chunk_ref:#x} names segment {segment_index} of {}",
                    self.segments.len()
                ),
            })?;
        // Read only the chunk, so a source holding just the needed ranges works: the length
        // field first (at most 5 bytes), then the framed chunk.
        if offset < 8 || offset >= segment.len() {
            return Err(Error::Corrupt {
                file: segment.name().to_owned(),
                section: "chunk",
                offset,
                detail: format!(
                    "chunk offset outside the chunk area of {} bytes",
                    segment.len()
                ),
            });
        }
        let head = segment.read(offset, (segment.len() - offset).min(5), "chunk")?;
        let mut decoder = crate::encoding::Decoder::new(head, offset);
        let length = decoder
            .uvarint()
            .map_err(|error| error.in_section(segment.name(), "chunk"))?;
        let framed = (decoder.offset() - offset)
            .saturating_add(1)
            .saturating_add(length)
            .saturating_add(4);
        let bytes = segment.read(offset, framed, "chunk")?;
        let chunk = crate::chunks::parse_chunk(bytes, offset, segment.name())?;
        Ok((chunk.encoding, chunk.data))
    }

    /// The float samples of a selected series, with deleted ranges dropped. Reading stops at the
    /// first chunk that is not XOR-encoded, as `promtool tsdb dump` stops at the first
    /// non-float sample.
    ///
    /// The series' chunks are decoded as one batch ([`decode_xor_chunks`]); a chunk that does
    /// not read or decode sends the series through [`Self::samples_chunk_by_chunk`], whose
    /// error names it.
    pub fn samples(&self, series: &SelectedSeries, out: &mut Vec<(i64, f64)>) -> Result<()> {
        let mut chunks = Vec::with_capacity(series.chunks.len());
        for meta in &series.chunks {
            match self.chunk(meta.chunk_ref) {
                Ok((Encoding::Xor, data)) => chunks.push(data),
                Ok(_) => break,
                Err(_) => return self.samples_chunk_by_chunk(series, out),
            }
        }
        let (mut timestamps, mut values) = (Vec::new(), Vec::new());
        if decode_xor_chunks(&chunks, &mut timestamps, &mut values).is_err() {
            return self.samples_chunk_by_chunk(series, out);
        }
        out.reserve(timestamps.len());
        out.extend(
            timestamps
                .into_iter()
                .zip(values)
                .filter(|(t, _)| !series.deleted.iter().any(|(from, to)| from <= t && t <= to)),
        );
        Ok(())
    }

    /// [`Self::samples`] one chunk at a time, stopping at the first error.
    fn samples_chunk_by_chunk(
        &self,
        series: &SelectedSeries,
        out: &mut Vec<(i64, f64)>,
    ) -> Result<()> {
        for meta in &series.chunks {
            let (encoding, data) = self.chunk(meta.chunk_ref)?;
            if encoding != Encoding::Xor {
                return Ok(());
            }
            let decoded = XorIterator::new(data).for_each_sample(|t, v| {
                if !series
                    .deleted
                    .iter()
                    .any(|(from, to)| *from <= t && t <= *to)
                {
                    out.push((t, v));
                }
            });
            if let Err(error) = decoded {
                let segment = (meta.chunk_ref >> 32) as usize;
                let name = self
                    .segments
                    .get(segment)
                    .map(|s| s.name())
                    .unwrap_or("chunks");
                let base = meta.chunk_ref & 0xFFFF_FFFF;
                return Err(crate::encoding::DecodeError::new(
                    base + error.offset,
                    error.detail.clone(),
                )
                .in_section(name, "chunk"));
            }
        }
        Ok(())
    }
}

/// Series selected from a block, in label order.
pub struct SeriesIter<'a> {
    block: &'a BlockReader,
    postings: BoxPostings<'a>,
    min_time: i64,
    max_time: i64,
}

impl std::fmt::Debug for SeriesIter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesIter")
            .field("min_time", &self.min_time)
            .field("max_time", &self.max_time)
            .finish()
    }
}

impl Iterator for SeriesIter<'_> {
    type Item = Result<SelectedSeries>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let series_ref = self.postings.next()?;
            let entry = match self.block.index.series(series_ref) {
                Ok(entry) => entry,
                Err(error) => return Some(Err(error)),
            };
            let tombstones = self.block.tombstones(series_ref);
            let mut trim_front = false;
            let mut trim_back = false;
            let chunks: Vec<ChunkMeta> = entry
                .chunks
                .into_iter()
                .filter(|chunk| chunk.max_time >= self.min_time && chunk.min_time <= self.max_time)
                .filter(|chunk| !covered(chunk.min_time, chunk.max_time, tombstones))
                .inspect(|chunk| {
                    trim_front |= chunk.min_time < self.min_time;
                    trim_back |= chunk.max_time > self.max_time;
                })
                .collect();
            if chunks.is_empty() {
                continue;
            }
            let mut deleted = tombstones.to_vec();
            if trim_front {
                deleted.push((i64::MIN, self.min_time - 1));
            }
            if trim_back {
                deleted.push((self.max_time + 1, i64::MAX));
            }
            return Some(Ok(SelectedSeries {
                series_ref,
                labels: entry.labels,
                chunks,
                deleted,
            }));
        }
    }
}

/// Whether `[min_time, max_time]` lies entirely inside the union of `intervals`.
fn covered(min_time: i64, max_time: i64, intervals: &[(i64, i64)]) -> bool {
    let mut sorted = intervals.to_vec();
    sorted.sort_unstable();
    let mut reached = min_time;
    for (from, to) in sorted {
        if from > reached {
            break;
        }
        if to >= max_time {
            return true;
        }
        reached = reached.max(to.saturating_add(1));
    }
    false
}

#[cfg(test)]
mod tests {
    use prom_model::{Labels, MatchType};

    use super::*;
    use crate::source::MemorySource;
    use crate::writer::{BlockWriter, symbols_of};

    fn memory(dir: &Path, file: &str) -> Box<dyn ByteSource> {
        Box::new(MemorySource::new(
            file,
            std::fs::read(dir.join(file)).unwrap(),
        ))
    }

    #[test]
    fn memory_sources_read_like_the_mapped_folder() {
        let dir = tempfile::tempdir().unwrap();
        let series: Vec<Labels> = (0..50)
            .map(|index| Labels::from_pairs([("__name__", "m"), ("i", &format!("{index:02}"))]))
            .collect();
        let mut writer = BlockWriter::create(dir.path(), symbols_of(&series)).unwrap();
        for (index, labels) in series.iter().enumerate() {
            let samples: Vec<(i64, f64)> =
                (0..300).map(|t| (t, (t * index as i64) as f64)).collect();
            writer.add_series_samples(labels, &samples).unwrap();
        }
        let (meta, block_dir) = writer.finish().unwrap();
        let mapped = BlockReader::open(&block_dir).unwrap();
        let in_memory = BlockReader::from_sources(
            meta,
            memory(&block_dir, "index"),
            vec![memory(&block_dir, "chunks/000001")],
            memory(&block_dir, "tombstones").as_ref(),
        )
        .unwrap();
        let matchers = [Matcher::new(MatchType::Regex, "i", "1.|3.").unwrap()];
        let read = |block: &BlockReader| -> Vec<(Labels, Vec<(i64, f64)>)> {
            block
                .select(&matchers, 50, 250)
                .unwrap()
                .map(|selected| {
                    let selected = selected.unwrap();
                    let mut samples = Vec::new();
                    block.samples(&selected, &mut samples).unwrap();
                    (selected.labels, samples)
                })
                .collect()
        };
        let expected = read(&mapped);
        assert_eq!(expected.len(), 20);
        assert!(expected.iter().all(|(_, samples)| samples.len() == 201));
        assert_eq!(read(&in_memory), expected);
        assert_eq!(in_memory.label_values("i").unwrap().len(), 50);

        // A chunk reference into a missing segment is an error naming the problem.
        let error = in_memory.chunk(5 << 32 | 8).unwrap_err();
        assert!(error.to_string().contains("segment 5"), "{error}");
    }

    #[test]
    fn covered_needs_the_union_of_intervals() {
        assert!(covered(10, 20, &[(0, 12), (13, 25)]));
        assert!(!covered(10, 20, &[(0, 12), (14, 25)]));
        assert!(covered(10, 20, &[(10, 20)]));
        assert!(!covered(10, 20, &[]));
    }
}
