//! Downsampling: raw blocks to 5m blocks, 5m blocks to 1h blocks, in Thanos' aggregate chunk
//! encoding (sheet §4), streamed one series at a time.
//!
//! **Memory.** The source block is memory-mapped; series are read one at a time through its
//! all-postings list, aggregated and handed to [`BlockWriter`], which writes chunks and index
//! entries straight to disk. Every few thousand series the mapped pages behind the current
//! series (index entries and chunks already read) are handed back to the kernel, as the merge
//! does, so resident memory is the symbol table plus one series' samples, whatever the size of
//! the block (Thanos' downsampling ran out of memory on big blocks: thanos#297, #1771).
//!
//! **Differences from Thanos.** Chunks of one series that overlap, or samples out of order,
//! are merged (equal timestamps kept once) and downsampled with a warning, where Thanos stops
//! with "found overlapping chunks within series" and crash-loops (#267, #5272). Tombstones of
//! raw blocks are applied. A window's minimum and maximum start from ±infinity rather than
//! ±`f64::MAX`, so a window of only infinite values keeps them. Native histogram series are not
//! downsampled yet: their chunks are left out with one warning per block that counts them.
//!
//! Modules: `aggregate` (windows, Thanos' chunk sizing, aggregate chunk building, counter
//! resets), `source` (reading and merging one source series), `error`.

mod aggregate;
mod error;
mod source;

pub use error::DownsampleError;

use std::path::{Path, PathBuf};

use tracing::{info, warn};
use tsdb_block::chunkenc::Encoding;
use tsdb_block::meta::{BlockMeta, ThanosMeta};
use tsdb_block::writer::{BlockWriter, ChunkData};
use ulid::Ulid;

use crate::mapped::{MappedBlock, RELEASE_EVERY};
use aggregate::{OutputChunk, downsample_aggregates, downsample_raw};
use source::{SeriesSource, full_detail};

/// Raw data: not downsampled.
pub const RESOLUTION_RAW: i64 = 0;
/// Five minutes, in milliseconds: made from raw blocks.
pub const RESOLUTION_5M: i64 = 300_000;
/// One hour, in milliseconds: made from 5m blocks.
pub const RESOLUTION_1H: i64 = 3_600_000;

/// The value of `thanos.source` in a downsampled block's meta.
const SOURCE_COMPACTOR: &str = "compactor";

/// A downsampled block written to local disk.
#[derive(Debug, Clone)]
pub struct Downsampled {
    /// Its meta, as written to its `meta.json` (no `files`: the uploader fills them).
    pub meta: BlockMeta,
    /// Its folder, `<out_parent>/<ulid>`.
    pub dir: PathBuf,
}

/// What one block's downsampling met, for the log.
#[derive(Debug, Default)]
struct Tally {
    series_merged: u64,
    histogram_series: u64,
    histogram_chunks: u64,
}

/// Downsamples the local block `source` (raw for [`RESOLUTION_5M`], 5m for [`RESOLUTION_1H`])
/// into a new block under `out_parent`, written as `<ulid>.tmp-for-creation` and renamed when
/// complete. Synchronous and CPU-bound. `Ok(None)` when no series has samples to write (the
/// partial folder is removed).
pub fn downsample_block(
    source: &Path,
    out_parent: &Path,
    resolution: i64,
) -> Result<Option<Downsampled>, DownsampleError> {
    let mapped = MappedBlock::open(source).map_err(|error| DownsampleError::SourceBlock {
        dir: source.to_owned(),
        source: error,
    })?;
    let reader = &mapped.reader;
    let source_meta = reader.meta().clone();
    let block = source_meta.ulid;
    let source_resolution = source_meta.resolution();
    let valid = matches!(resolution, RESOLUTION_5M | RESOLUTION_1H)
        && matches!(source_resolution, RESOLUTION_RAW | RESOLUTION_5M)
        && source_resolution < resolution;
    if !valid {
        return Err(DownsampleError::Resolution {
            block,
            source_resolution,
            resolution,
        });
    }
    let output_error = |error: tsdb_block::Error| DownsampleError::Output {
        block,
        dir: out_parent.to_owned(),
        source: error,
    };
    let source_error = |error: tsdb_block::Error| DownsampleError::SourceBlock {
        dir: source.to_owned(),
        source: error,
    };
    let symbols: Vec<String> = reader
        .index()
        .all_symbols()
        .map_err(source_error)?
        .into_iter()
        .map(str::to_owned)
        .collect();
    let mut writer = BlockWriter::create(out_parent, symbols).map_err(output_error)?;
    writer.set_time_range(source_meta.min_time, source_meta.max_time);
    let mut tally = Tally::default();
    let dirs = Dirs { source, out_parent };
    if let Err(error) = write_series(&mapped, &mut writer, dirs, resolution, &mut tally) {
        // The first error is the one worth reporting; a failed clean-up leaves a
        // `.tmp-for-creation` folder the next run replaces.
        let _ = writer.abort();
        return Err(error);
    }
    log_tally(block, &tally);
    if writer.num_series() == 0 {
        writer.abort().map_err(output_error)?;
        info!(%block, resolution, "nothing to downsample in block");
        return Ok(None);
    }
    let new_ulid = writer.ulid();
    let (meta, dir) = writer
        .finish_with(|meta| downsampled_meta(meta, &source_meta, new_ulid, resolution))
        .map_err(output_error)?;
    info!(
        source = %block,
        block = %meta.ulid,
        resolution,
        series = meta.stats.num_series,
        chunks = meta.stats.num_chunks,
        "downsampled block"
    );
    Ok(Some(Downsampled { meta, dir }))
}

/// The source block's folder and the output's parent folder, for errors.
#[derive(Debug, Clone, Copy)]
struct Dirs<'a> {
    source: &'a Path,
    out_parent: &'a Path,
}

/// Every series of `source`, in index order, downsampled into `writer`; every
/// [`RELEASE_EVERY`] series the source's mapped pages before the current series are released.
fn write_series(
    source: &MappedBlock,
    writer: &mut BlockWriter,
    dirs: Dirs<'_>,
    resolution: i64,
    tally: &mut Tally,
) -> Result<(), DownsampleError> {
    let reader = &source.reader;
    let block = reader.meta().ulid;
    let source_resolution = reader.meta().resolution();
    let source_error = |error: tsdb_block::Error| DownsampleError::SourceBlock {
        dir: dirs.source.to_owned(),
        source: error,
    };
    let mut postings = reader.index().all_postings().map_err(source_error)?;
    let mut read_series: u64 = 0;
    while let Some(series_ref) = tsdb_block::postings::Postings::next(&mut postings) {
        let entry = reader.index().series(series_ref).map_err(source_error)?;
        if read_series > 0 && read_series.is_multiple_of(RELEASE_EVERY) {
            source
                .pages
                .release_before(series_ref, entry.chunks.first());
        }
        read_series += 1;
        let series = SeriesSource {
            reader,
            block,
            series: &entry.labels,
            tombstones: reader.tombstones(series_ref),
        };
        let (chunks, merged, histogram_chunks) = if source_resolution == RESOLUTION_RAW {
            let raw = series.read_raw(&entry.chunks)?;
            let chunks = downsample_raw(&raw.samples, resolution);
            (chunks, raw.merged, raw.histogram_chunks)
        } else {
            let input = series.read_aggregates(&entry.chunks, source_resolution)?;
            let chunks = downsample_aggregates(&input.chunks, source_resolution, resolution);
            (chunks, input.merged, input.histogram_chunks)
        };
        let chunks = chunks.map_err(|full| DownsampleError::SourceChunk {
            block,
            series: entry.labels.to_string(),
            min_time: entry.chunks.first().map_or(0, |chunk| chunk.min_time),
            max_time: entry.chunks.last().map_or(0, |chunk| chunk.max_time),
            detail: full_detail(full),
        })?;
        if merged {
            tally.series_merged += 1;
            warn!(
                %block,
                series = %entry.labels,
                chunks = ?entry.chunks.iter().map(|c| (c.min_time, c.max_time)).collect::<Vec<_>>(),
                "overlapping chunks or out-of-order samples within series, merged before downsampling"
            );
        }
        if histogram_chunks > 0 {
            tally.histogram_series += 1;
            tally.histogram_chunks += histogram_chunks as u64;
        }
        add_chunks(writer, &entry.labels, &chunks).map_err(|error| DownsampleError::Output {
            block,
            dir: dirs.out_parent.to_owned(),
            source: error,
        })?;
    }
    Ok(())
}

fn add_chunks(
    writer: &mut BlockWriter,
    labels: &prom_model::Labels,
    chunks: &[OutputChunk],
) -> tsdb_block::Result<()> {
    let data: Vec<ChunkData<'_>> = chunks
        .iter()
        .map(|chunk| ChunkData {
            min_time: chunk.min_time,
            max_time: chunk.max_time,
            encoding: Encoding::ThanosAggr,
            data: &chunk.data,
        })
        .collect();
    writer.add_series(labels, &data)
}

fn log_tally(block: Ulid, tally: &Tally) {
    if tally.histogram_series > 0 {
        warn!(
            %block,
            series = tally.histogram_series,
            chunks = tally.histogram_chunks,
            "native histogram chunks are not downsampled yet; left out of the downsampled block"
        );
    }
    if tally.series_merged > 0 {
        warn!(
            %block,
            series = tally.series_merged,
            "series with overlapping chunks were merged before downsampling"
        );
    }
}

/// The output meta: the source's, with the new ULID, resolution and `source`, and the stats
/// the writer counted; compaction level, sources and external labels kept; no `files`.
fn downsampled_meta(meta: &mut BlockMeta, source: &BlockMeta, ulid: Ulid, resolution: i64) {
    let stats = std::mem::take(&mut meta.stats);
    *meta = source.clone();
    meta.ulid = ulid;
    meta.stats = stats;
    let thanos = meta
        .thanos
        .get_or_insert_with(|| ThanosMeta::new(Default::default(), resolution, SOURCE_COMPACTOR));
    thanos.downsample.resolution = resolution;
    thanos.source = SOURCE_COMPACTOR.to_owned();
    thanos.files.clear();
    thanos.segment_files.clear();
    thanos.index_stats = Default::default();
    thanos.upload_time = None;
}

#[cfg(test)]
mod tests;
