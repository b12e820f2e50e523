//! Reading one source series: its chunks decoded, overlaps merged, histograms set aside.

use tsdb_block::chunkenc::{AggrChunk, AggrType, Encoding, XorIterator};
use tsdb_block::index::ChunkMeta;
use tsdb_block::reader::BlockReader;
use ulid::Ulid;

use super::aggregate::{InputChunk, OutputChunk, downsample_raw, sort_dedup};
use super::error::DownsampleError;

/// One series of the source block being read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SeriesSource<'a> {
    /// The source block.
    pub(crate) reader: &'a BlockReader,
    /// The source block's ULID, for errors.
    pub(crate) block: Ulid,
    /// The series' labels, for errors and logs.
    pub(crate) series: &'a prom_model::Labels,
    /// Deleted ranges (inclusive) of the series.
    pub(crate) tombstones: &'a [(i64, i64)],
}

/// A raw series' float samples, sorted, unique, without staleness markers or deleted ones.
#[derive(Debug, Default)]
pub(crate) struct RawSeries {
    /// The samples.
    pub(crate) samples: Vec<(i64, f64)>,
    /// Whether chunks overlapped or samples were out of order (they were merged).
    pub(crate) merged: bool,
    /// Native histogram chunks left out.
    pub(crate) histogram_chunks: usize,
}

/// A downsampled series' chunks, decoded, sorted by `min_time`.
#[derive(Debug, Default)]
pub(crate) struct AggregateSeries {
    /// The chunks.
    pub(crate) chunks: Vec<InputChunk>,
    /// Whether chunks overlapped.
    pub(crate) merged: bool,
    /// Native histogram chunks (or chunks with histogram aggregates) left out.
    pub(crate) histogram_chunks: usize,
}

impl SeriesSource<'_> {
    fn chunk_error(&self, chunk: &ChunkMeta, detail: impl Into<String>) -> DownsampleError {
        DownsampleError::SourceChunk {
            block: self.block,
            series: self.series.to_string(),
            min_time: chunk.min_time,
            max_time: chunk.max_time,
            detail: detail.into(),
        }
    }

    fn read_chunk(&self, chunk: &ChunkMeta) -> Result<(Encoding, &[u8]), DownsampleError> {
        self.reader
            .chunk(chunk.chunk_ref)
            .map_err(|error| self.chunk_error(chunk, error.to_string()))
    }

    /// Decodes XOR `data` of `chunk` into `out`.
    fn decode_xor(
        &self,
        chunk: &ChunkMeta,
        data: &[u8],
        out: &mut Vec<(i64, f64)>,
    ) -> Result<(), DownsampleError> {
        XorIterator::new(data)
            .for_each_sample(|t, v| out.push((t, v)))
            .map_err(|error| {
                self.chunk_error(
                    chunk,
                    format!("{} at byte {} of the chunk", error.detail, error.offset),
                )
            })
    }

    fn deleted(&self, t: i64) -> bool {
        self.tombstones
            .iter()
            .any(|(from, to)| *from <= t && t <= *to)
    }

    /// The float samples of a raw series' `chunks`.
    pub(crate) fn read_raw(&self, chunks: &[ChunkMeta]) -> Result<RawSeries, DownsampleError> {
        let mut series = RawSeries {
            merged: overlapping(chunks),
            ..RawSeries::default()
        };
        for chunk in chunks {
            let (encoding, data) = self.read_chunk(chunk)?;
            match encoding {
                Encoding::Xor => self.decode_xor(chunk, data, &mut series.samples)?,
                encoding if encoding.is_histogram() => series.histogram_chunks += 1,
                other => {
                    return Err(self.chunk_error(
                        chunk,
                        format!("unsupported chunk encoding {other} in a raw block"),
                    ));
                }
            }
        }
        series
            .samples
            .retain(|(t, v)| !prom_model::is_stale_nan(*v) && !self.deleted(*t));
        if !series.samples.windows(2).all(|pair| pair[0].0 < pair[1].0) {
            series.merged = true;
            sort_dedup(&mut series.samples);
        }
        Ok(series)
    }

    /// The aggregate chunks of a downsampled series' `chunks` at `input_resolution`. A plain
    /// XOR chunk (Thanos' blocks sometimes hold them) is downsampled to `input_resolution`
    /// first; an empty one is skipped.
    pub(crate) fn read_aggregates(
        &self,
        chunks: &[ChunkMeta],
        input_resolution: i64,
    ) -> Result<AggregateSeries, DownsampleError> {
        let mut series = AggregateSeries {
            merged: overlapping(chunks),
            ..AggregateSeries::default()
        };
        let mut raw = Vec::new();
        for chunk in chunks {
            let (encoding, data) = self.read_chunk(chunk)?;
            match encoding {
                Encoding::ThanosAggr => match self.decode_aggregate(chunk, data)? {
                    Some(decoded) => series.chunks.push(decoded),
                    None => series.histogram_chunks += 1,
                },
                Encoding::Xor => {
                    raw.clear();
                    self.decode_xor(chunk, data, &mut raw)?;
                    raw.retain(|(_, v)| !prom_model::is_stale_nan(*v));
                    sort_dedup(&mut raw);
                    let converted = downsample_raw(&raw, input_resolution)
                        .map_err(|full| self.chunk_error(chunk, full_detail(full)))?;
                    for output in converted {
                        let meta = ChunkMeta {
                            min_time: output.min_time,
                            max_time: output.max_time,
                            chunk_ref: chunk.chunk_ref,
                        };
                        let decoded = self.decode_output(&meta, &output)?;
                        series.chunks.push(decoded);
                    }
                }
                encoding if encoding.is_histogram() => series.histogram_chunks += 1,
                other => {
                    return Err(self.chunk_error(
                        chunk,
                        format!("unsupported chunk encoding {other} in a downsampled block"),
                    ));
                }
            }
        }
        if !series
            .chunks
            .windows(2)
            .all(|pair| pair[0].min_time <= pair[1].min_time)
        {
            series.merged = true;
            series.chunks.sort_by_key(|chunk| chunk.min_time);
        }
        Ok(series)
    }

    /// An aggregate chunk's parts decoded; `None` when a part is not XOR (a histogram
    /// series' chunk).
    fn decode_aggregate(
        &self,
        chunk: &ChunkMeta,
        data: &[u8],
    ) -> Result<Option<InputChunk>, DownsampleError> {
        let parts = AggrChunk::new(data).parts().map_err(|error| {
            self.chunk_error(
                chunk,
                format!("{} at byte {} of the chunk", error.detail, error.offset),
            )
        })?;
        let mut decoded = InputChunk {
            min_time: chunk.min_time,
            max_time: chunk.max_time,
            aggregates: Default::default(),
        };
        for aggregate in AggrType::ALL {
            let Some(part) = parts[aggregate.index()] else {
                continue;
            };
            if part.encoding != Encoding::Xor {
                return Ok(None);
            }
            let mut samples = Vec::new();
            self.decode_xor(chunk, part.data, &mut samples)?;
            decoded.aggregates[aggregate.index()] = Some(samples);
        }
        Ok(Some(decoded))
    }

    fn decode_output(
        &self,
        chunk: &ChunkMeta,
        output: &OutputChunk,
    ) -> Result<InputChunk, DownsampleError> {
        self.decode_aggregate(chunk, &output.data)?
            .ok_or_else(|| self.chunk_error(chunk, "converted chunk is not XOR"))
    }
}

/// The detail of an overflowing output chunk.
pub(crate) fn full_detail(full: super::aggregate::ChunkFull) -> String {
    format!(
        "the {} aggregate of an output chunk exceeds {} samples",
        full.aggregate,
        tsdb_block::chunkenc::XorEncoder::MAX_SAMPLES
    )
}

/// Whether any chunk starts before the previous one ended.
fn overlapping(chunks: &[ChunkMeta]) -> bool {
    chunks
        .windows(2)
        .any(|pair| pair[0].max_time >= pair[1].min_time)
}
