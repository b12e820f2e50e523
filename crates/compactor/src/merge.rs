//! Merging the source blocks of one compaction group into one output block, streamed:
//! horizontal compaction (adjacent blocks), vertical compaction (overlapping blocks) and offline
//! de-duplication (replicas of one group, `--deduplication.func`).
//!
//! **Streaming.** The output's symbol table is the union of the sources' symbol tables, taken up
//! front (the index starts with it). Series are then merged in label order by a k-way merge over
//! each source's all-postings list: one series at a time is read from every source that has it,
//! its chunks merged and written with [`BlockWriter`], which sends chunks to the segment files and
//! the index entry to the index file at once. Memory therefore holds the symbol tables, the
//! current series' chunks of each source and the writer's fixed buffers, never a whole block.
//!
//! **Chunks** (module `series`). A chunk that overlaps no chunk of the same series from another
//! source is copied as stored: no decoding, which is what makes horizontal compaction fast. Runs
//! of overlapping chunks are decoded, merged and cut again every 120 samples
//! ([`CutRule::compaction`](tsdb_block::chunkenc::CutRule::compaction)); exact duplicate chunks
//! (same range, same bytes, as a block uploaded twice) are dropped without decoding. Only XOR
//! float chunks are merged: overlapping histogram, aggregate (0xFF) or XOR2 chunks are
//! [`BlockProblem::OverlappingChunks`] (the planner keeps downsampled blocks out of vertical
//! compaction). Tombstones of a source and samples outside the output's range are dropped;
//! chunks they touch are re-encoded.
//!
//! **De-duplication** ([`DedupFunc`]). One-to-one (Prometheus' compacting chain merge): on equal
//! timestamps one sample is kept, **the one from the source listed first** in `sources`
//! (Prometheus leaves the winner to its heap order). Penalty: Thanos' penalty algorithm
//! ([`prom_model::dedup::penalty_merge`]) over the overlapping sources' samples, folded in source
//! order, without counter adjustment: Thanos' `dedup.NewChunkSeriesMerger` adjusts nothing
//! either, since it cannot know which series are counters and stored values must stay raw (the
//! querier adjusts at query time for counter functions).
//!
//! **Errors** name the source block at fault ([`MergeError::BadBlock`]) or the output
//! ([`MergeError::Write`]). A failed merge removes its unfinished output folder.

mod error;
mod meta;
mod series;
mod source;

pub use error::{BlockProblem, MergeError};
pub use series::MergeCounters;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prom_model::Labels;
use tsdb_block::meta::BlockMeta;
use tsdb_block::writer::{BlockWriter, ChunkData};

use crate::mapped::RELEASE_EVERY;
use series::SeriesMerger;
use source::{SeriesCursor, Source, SourceSeries, union_symbols};

/// How samples of overlapping chunks are merged (`--deduplication.func`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DedupFunc {
    /// `""`: one-to-one merge; samples at equal timestamps collapse into one (the first
    /// source's).
    #[default]
    OneToOne,
    /// `"penalty"`: Thanos' penalty de-duplication of replicas.
    Penalty,
}

/// What a merge needs to know about its group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeOptions {
    /// How overlapping samples are merged.
    pub dedup: DedupFunc,
    /// The group's external labels (replica labels removed): the output's `thanos.labels`.
    pub labels: BTreeMap<String, String>,
    /// The group's downsample resolution (ms): the output's `thanos.downsample.resolution`.
    pub resolution: i64,
}

/// The block a merge wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    /// Its `meta.json` as written.
    pub meta: BlockMeta,
    /// Its folder, `<out_parent>/<ulid>`.
    pub dir: PathBuf,
}

/// Merges the blocks in the folders `sources` into one new block under `out_parent`. `Ok(None)`
/// when the merge yields no samples: no block is written.
///
/// Synchronous and CPU-bound (the driver runs it on a blocking thread).
pub fn merge_blocks(
    sources: &[PathBuf],
    out_parent: &Path,
    options: &MergeOptions,
) -> Result<Option<Merged>, MergeError> {
    merge_blocks_counted(sources, out_parent, options).map(|(merged, _)| merged)
}

/// [`merge_blocks`], also returning what the merge did with the chunks.
pub fn merge_blocks_counted(
    sources: &[PathBuf],
    out_parent: &Path,
    options: &MergeOptions,
) -> Result<(Option<Merged>, MergeCounters), MergeError> {
    if sources.is_empty() {
        return Ok((None, MergeCounters::default()));
    }
    let mut opened = Vec::with_capacity(sources.len());
    for dir in sources {
        opened.push(Source::open(dir)?);
    }
    let min_time = opened
        .iter()
        .map(|source| source.reader.meta().min_time)
        .min()
        .unwrap_or(0);
    let max_time = opened
        .iter()
        .map(|source| source.reader.meta().max_time)
        .max()
        .unwrap_or(0);
    let symbols = union_symbols(&opened)?;
    std::fs::create_dir_all(out_parent).map_err(|source| MergeError::Io {
        action: "create",
        path: out_parent.to_owned(),
        source,
    })?;
    let block = ulid::Ulid::new();
    let mut writer = BlockWriter::create_with_ulid(out_parent, block, symbols)
        .map_err(|source| MergeError::Write { block, source })?;
    writer.set_time_range(min_time, max_time);
    let mut merger = SeriesMerger::new(&opened, options.dedup, min_time, max_time);
    if let Err(error) = write_series(&opened, &mut merger, &mut writer) {
        if let Err(cleanup) = writer.abort() {
            tracing::warn!(%block, error = %cleanup, "remove unfinished block");
        }
        return Err(error);
    }
    let counters = merger.counters;
    if writer.num_samples() == 0 {
        writer
            .abort()
            .map_err(|source| MergeError::Write { block, source })?;
        tracing::info!(
            sources = opened.len(),
            "merge yields no samples; no block written"
        );
        return Ok((None, counters));
    }
    let index_stats = writer.index_stats();
    let (meta, dir) = writer
        .finish_with(|meta| meta::complete(meta, &opened, options, index_stats))
        .map_err(|source| MergeError::Write { block, source })?;
    tracing::info!(
        %block,
        sources = opened.len(),
        series = meta.stats.num_series,
        samples = meta.stats.num_samples,
        chunks_passed_through = counters.chunks_passed_through,
        chunks_decoded = counters.chunks_decoded,
        chunks_deduplicated = counters.chunks_deduplicated,
        "merged blocks"
    );
    Ok((Some(Merged { meta, dir }), counters))
}

/// The k-way merge of the sources' series, each merged series written out.
fn write_series(
    sources: &[Source],
    merger: &mut SeriesMerger<'_>,
    writer: &mut BlockWriter,
) -> Result<(), MergeError> {
    let mut cursors = Vec::with_capacity(sources.len());
    for source in sources {
        cursors.push(SeriesCursor::new(source)?);
    }
    let mut members: Vec<usize> = Vec::with_capacity(sources.len());
    let mut merged_series: u64 = 0;
    loop {
        // The smallest labels among the heads, and every cursor holding them.
        members.clear();
        let mut smallest: Option<&Labels> = None;
        for (index, cursor) in cursors.iter().enumerate() {
            let Some(head) = &cursor.head else { continue };
            match smallest.map(|labels| head.labels.cmp(labels)) {
                None | Some(std::cmp::Ordering::Less) => {
                    smallest = Some(&head.labels);
                    members.clear();
                    members.push(index);
                }
                Some(std::cmp::Ordering::Equal) => members.push(index),
                Some(std::cmp::Ordering::Greater) => {}
            }
        }
        let Some(&first) = members.first() else {
            return Ok(());
        };
        {
            let series: Vec<(usize, &SourceSeries)> = members
                .iter()
                .filter_map(|index| cursors[*index].head.as_ref().map(|head| (*index, head)))
                .collect();
            let Some(labels) = cursors[first].head.as_ref().map(|head| &head.labels) else {
                return Ok(());
            };
            let chunks = merger.merge(labels, &series)?;
            let chunk_data: Vec<ChunkData<'_>> =
                chunks.iter().map(|chunk| chunk.as_chunk_data()).collect();
            writer
                .add_series(labels, &chunk_data)
                .map_err(|source| MergeError::Write {
                    block: writer.ulid(),
                    source,
                })?;
        }
        for index in &members {
            cursors[*index].advance()?;
        }
        merged_series += 1;
        if merged_series.is_multiple_of(RELEASE_EVERY) {
            for cursor in &cursors {
                if let Some(head) = &cursor.head {
                    cursor.source().release_before(head);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
