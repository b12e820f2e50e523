//! Merging the chunks of one series from several sources.
//!
//! Chunks of all sources are ordered by (min time, max time, source order) and grouped into
//! *runs*: a run starts at a chunk and takes every following chunk that starts at or before the
//! latest end seen in the run, as Prometheus' compacting chunk merger does. A chunk that covers
//! exactly the time range of the run's previous chunk with the same bytes is a duplicate and is
//! dropped. A run of one chunk is passed through as stored bytes; a longer run is decoded, its
//! samples merged ([`DedupFunc`]) and cut again into XOR chunks of 120 samples
//! ([`CutRule::compaction`]).
//!
//! Inside a run, samples are grouped per source into non-overlapping lanes (a source's
//! chunks never overlap, except same-range duplicates), and lanes are folded in source order:
//! one-to-one keeps the first lane's sample on equal timestamps, penalty applies Thanos'
//! algorithm pairwise. Thanos folds chunk by chunk in time order instead; per source is the same
//! whenever each source has one chunk in the run and otherwise keeps each replica whole.

use std::borrow::Cow;

use prom_model::dedup::{chain_merge, penalty_merge};
use prom_model::{Labels, Sample};
use tsdb_block::chunkenc::{ChunkCutter, CutRule, Encoding, XorEncoder, XorIterator};
use tsdb_block::encoding::DecodeError;
use tsdb_block::tombstones::{ChunkDeletion, Interval, Intervals};
use tsdb_block::writer::ChunkData;

use super::DedupFunc;
use super::error::{BlockProblem, MergeError};
use super::source::{Source, SourceSeries};

/// A chunk on its way through the merge: stored bytes of a source, or re-encoded.
#[derive(Debug, Clone)]
pub(super) struct MergeChunk<'a> {
    min_time: i64,
    max_time: i64,
    encoding: Encoding,
    data: Cow<'a, [u8]>,
    /// Index of the source it comes from (of the first source, for merged chunks).
    source: usize,
}

impl MergeChunk<'_> {
    /// The chunk as the block writer takes it.
    pub(super) fn as_chunk_data(&self) -> ChunkData<'_> {
        ChunkData {
            min_time: self.min_time,
            max_time: self.max_time,
            encoding: self.encoding,
            data: &self.data,
        }
    }
}

/// Counters of what the merge did, for logs and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeCounters {
    /// Chunks written as stored in a source.
    pub chunks_passed_through: u64,
    /// Chunks decoded because they overlapped other chunks or were touched by deletions.
    pub chunks_decoded: u64,
    /// Chunks dropped as exact duplicates of another source's chunk.
    pub chunks_deduplicated: u64,
}

/// Merges series one at a time, reusing its buffers.
#[derive(Debug)]
pub(super) struct SeriesMerger<'a> {
    sources: &'a [Source],
    dedup: DedupFunc,
    /// Samples outside `[min_time, max_time]` (inclusive) are dropped: the output's range.
    min_time: i64,
    max_time: i64,
    inputs: Vec<MergeChunk<'a>>,
    outputs: Vec<MergeChunk<'a>>,
    run: Vec<usize>,
    lanes: Vec<Lane>,
    pub(super) counters: MergeCounters,
}

/// One source's non-overlapping chunks inside a run, decoded.
#[derive(Debug, Default)]
struct Lane {
    source: usize,
    last_max_time: i64,
    samples: Vec<Sample>,
}

impl<'a> SeriesMerger<'a> {
    /// A merger over `sources` for an output block covering `[min_time, max_time)`.
    pub(super) fn new(
        sources: &'a [Source],
        dedup: DedupFunc,
        min_time: i64,
        max_time: i64,
    ) -> Self {
        Self {
            sources,
            dedup,
            min_time,
            max_time: max_time.saturating_sub(1),
            inputs: Vec::new(),
            outputs: Vec::new(),
            run: Vec::new(),
            lanes: Vec::new(),
            counters: MergeCounters::default(),
        }
    }

    /// The merged chunks of the series `labels`, held by the sources `members` (source index
    /// and that source's series), in time order and not overlapping.
    pub(super) fn merge(
        &mut self,
        labels: &Labels,
        members: &[(usize, &SourceSeries)],
    ) -> Result<&[MergeChunk<'a>], MergeError> {
        self.inputs.clear();
        self.outputs.clear();
        for (source, series) in members {
            self.load(labels, *source, series)?;
        }
        if members.len() > 1 {
            self.inputs
                .sort_by_key(|chunk| (chunk.min_time, chunk.max_time, chunk.source));
        }
        let mut start = 0;
        while start < self.inputs.len() {
            start = self.take_run(start);
            if let [single] = self.run[..] {
                let chunk = std::mem::replace(&mut self.inputs[single].data, Cow::Borrowed(&[]));
                let passed = MergeChunk {
                    data: chunk,
                    ..self.inputs[single].clone()
                };
                self.counters.chunks_passed_through +=
                    u64::from(matches!(passed.data, Cow::Borrowed(_)));
                self.outputs.push(passed);
            } else {
                self.merge_run(labels)?;
            }
        }
        Ok(&self.outputs)
    }

    /// Reads one source's chunks of the series, applying its tombstones and the output range.
    fn load(
        &mut self,
        labels: &Labels,
        source_index: usize,
        series: &SourceSeries,
    ) -> Result<(), MergeError> {
        let sources = self.sources;
        let source = &sources[source_index];
        let tombstones = source.reader.tombstones(series.series_ref);
        for meta in &series.chunks {
            let (encoding, data) = source.reader.chunk(meta.chunk_ref).map_err(|error| {
                MergeError::reading(
                    source.ulid,
                    format!(
                        "series {labels}: chunk {}..={} (ref {:#x})",
                        meta.min_time, meta.max_time, meta.chunk_ref
                    ),
                    &error,
                )
            })?;
            if encoding != Encoding::ThanosAggr && encoding.sample_count(data).is_none() {
                return Err(MergeError::bad(
                    source.ulid,
                    BlockProblem::Corrupt,
                    format!(
                        "series {labels}: {encoding} chunk {}..={} of {} bytes has no sample count",
                        meta.min_time,
                        meta.max_time,
                        data.len()
                    ),
                ));
            }
            let inside = meta.min_time >= self.min_time && meta.max_time <= self.max_time;
            let touched = tombstones
                .iter()
                .any(|(from, to)| *from <= meta.max_time && meta.min_time <= *to);
            let mut chunk = MergeChunk {
                min_time: meta.min_time,
                max_time: meta.max_time,
                encoding,
                data: Cow::Borrowed(data),
                source: source_index,
            };
            if inside && !touched {
                self.inputs.push(chunk);
                continue;
            }
            let deleted = self.deleted_intervals(tombstones);
            match deleted.chunk_deletion(meta.min_time, meta.max_time) {
                ChunkDeletion::Deleted => {}
                ChunkDeletion::Kept => self.inputs.push(chunk),
                ChunkDeletion::Partial if encoding != Encoding::Xor => {
                    // Only XOR chunks are decoded here; others are kept whole, as a rewrite does.
                    tracing::warn!(
                        block = %source.ulid,
                        series = %labels,
                        %encoding,
                        min_time = meta.min_time,
                        max_time = meta.max_time,
                        "deletions touch a chunk that cannot be re-encoded; kept whole"
                    );
                    self.inputs.push(chunk);
                }
                ChunkDeletion::Partial => {
                    self.counters.chunks_decoded += 1;
                    let mut encoder = XorEncoder::new();
                    let (mut first, mut last) = (None, 0);
                    let decoded = XorIterator::new(data).for_each_sample(|t, v| {
                        if !deleted.contains(t) && encoder.append(t, v) {
                            first.get_or_insert(t);
                            last = t;
                        }
                    });
                    decoded.map_err(|error| {
                        decode_error(source, labels, meta.min_time, meta.max_time, &error)
                    })?;
                    let Some(first) = first else { continue };
                    chunk.min_time = first;
                    chunk.max_time = last;
                    chunk.data = Cow::Owned(encoder.into_bytes());
                    self.inputs.push(chunk);
                }
            }
        }
        Ok(())
    }

    /// A series' tombstones plus everything outside the output range.
    fn deleted_intervals(&self, tombstones: &[(i64, i64)]) -> Intervals {
        let mut deleted = Intervals::new();
        for (from, to) in tombstones {
            deleted.add(Interval::new(*from, *to));
        }
        if self.min_time > i64::MIN {
            deleted.add(Interval::new(i64::MIN, self.min_time - 1));
        }
        if self.max_time < i64::MAX {
            deleted.add(Interval::new(self.max_time + 1, i64::MAX));
        }
        deleted
    }

    /// Collects in `self.run` the run of overlapping chunks starting at `start`, without exact
    /// duplicates; returns the index after it.
    fn take_run(&mut self, start: usize) -> usize {
        self.run.clear();
        self.run.push(start);
        let mut run_max = self.inputs[start].max_time;
        let mut previous = start;
        let mut next = start + 1;
        while let Some(chunk) = self.inputs.get(next) {
            if chunk.min_time > run_max {
                break;
            }
            let before = &self.inputs[previous];
            let duplicate = (chunk.min_time, chunk.max_time, chunk.encoding)
                == (before.min_time, before.max_time, before.encoding)
                && chunk.data == before.data;
            if duplicate {
                self.counters.chunks_deduplicated += 1;
            } else {
                self.run.push(next);
                run_max = run_max.max(chunk.max_time);
                previous = next;
            }
            next += 1;
        }
        next
    }

    /// Decodes the chunks of `self.run`, merges their samples and cuts them into new chunks.
    fn merge_run(&mut self, labels: &Labels) -> Result<(), MergeError> {
        if let Some(&other) = self
            .run
            .iter()
            .find(|index| self.inputs[**index].encoding != Encoding::Xor)
        {
            return Err(self.unmergeable(labels, other));
        }
        self.lanes.clear();
        // Chunks in time order; each goes to the first lane of its source it does not overlap.
        for position in 0..self.run.len() {
            let chunk = &self.inputs[self.run[position]];
            let lane_index =
                match self.lanes.iter().position(|lane| {
                    lane.source == chunk.source && lane.last_max_time < chunk.min_time
                }) {
                    Some(index) => index,
                    None => {
                        self.lanes.push(Lane {
                            source: chunk.source,
                            last_max_time: i64::MIN,
                            samples: Vec::new(),
                        });
                        self.lanes.len() - 1
                    }
                };
            self.counters.chunks_decoded += 1;
            let lane = &mut self.lanes[lane_index];
            lane.last_max_time = chunk.max_time;
            let mut ordered = true;
            let decoded = XorIterator::new(&chunk.data).for_each_sample(|t, v| {
                ordered &= lane.samples.last().is_none_or(|last| last.t < t);
                lane.samples.push(Sample::new(t, v));
            });
            let source = &self.sources[chunk.source];
            decoded.map_err(|error| {
                decode_error(source, labels, chunk.min_time, chunk.max_time, &error)
            })?;
            if !ordered {
                return Err(MergeError::bad(
                    source.ulid,
                    BlockProblem::Corrupt,
                    format!(
                        "series {labels}: chunk {}..={} holds samples out of time order",
                        chunk.min_time, chunk.max_time
                    ),
                ));
            }
        }
        // Lanes in source order (stable: a source's lanes keep their order).
        self.lanes.sort_by_key(|lane| lane.source);
        let mut lanes = self.lanes.drain(..);
        let first_source = self.inputs[self.run[0]].source;
        let mut merged = lanes.next().map(|lane| lane.samples).unwrap_or_default();
        for lane in lanes {
            merged = match self.dedup {
                DedupFunc::OneToOne => chain_merge(&merged, &lane.samples),
                DedupFunc::Penalty => penalty_merge(&merged, &lane.samples, false),
            };
        }
        let mut cutter = ChunkCutter::new(CutRule::compaction());
        for sample in &merged {
            // Lanes are checked to be in time order and both merges keep it strictly increasing.
            if let Err(error) = cutter.push(sample.t, sample.v) {
                return Err(MergeError::bad(
                    self.sources[first_source].ulid,
                    BlockProblem::Corrupt,
                    format!("series {labels}: {error}"),
                ));
            }
        }
        for chunk in cutter.finish() {
            self.outputs.push(MergeChunk {
                min_time: chunk.min_time,
                max_time: chunk.max_time,
                encoding: Encoding::Xor,
                data: Cow::Owned(chunk.data),
                source: first_source,
            });
        }
        Ok(())
    }

    /// The error for a run holding a chunk that cannot be decoded and merged.
    fn unmergeable(&self, labels: &Labels, index: usize) -> MergeError {
        let chunk = &self.inputs[index];
        let others: Vec<String> = self
            .run
            .iter()
            .filter(|other| **other != index)
            .map(|other| {
                let other = &self.inputs[*other];
                format!(
                    "{} chunk {}..={} of block {}",
                    other.encoding, other.min_time, other.max_time, self.sources[other.source].ulid
                )
            })
            .collect();
        MergeError::bad(
            self.sources[chunk.source].ulid,
            BlockProblem::OverlappingChunks,
            format!(
                "series {labels}: {} chunk {}..={} overlaps {}; only XOR float chunks are merged",
                chunk.encoding,
                chunk.min_time,
                chunk.max_time,
                others.join(", ")
            ),
        )
    }
}

fn decode_error(
    source: &Source,
    labels: &Labels,
    min_time: i64,
    max_time: i64,
    error: &DecodeError,
) -> MergeError {
    MergeError::bad(
        source.ulid,
        BlockProblem::Corrupt,
        format!(
            "series {labels}: decode XOR chunk {min_time}..={max_time}: byte {} of the chunk: {}",
            error.offset, error.detail
        ),
    )
}
