//! The source blocks: opened, their symbol tables united, their series walked in label order with
//! the checks that name a faulty block.

use std::path::{Path, PathBuf};

use prom_model::Labels;
use tsdb_block::index::ChunkMeta;
use tsdb_block::postings::{BoxPostings, Postings, SeriesRef};
use tsdb_block::reader::BlockReader;
use ulid::Ulid;

use super::error::{BlockProblem, MergeError};
use crate::mapped::{MappedBlock, MappedPages};

/// A source block opened for reading (memory-mapped).
#[derive(Debug)]
pub(super) struct Source {
    /// The block's ULID from its `meta.json`.
    pub(super) ulid: Ulid,
    /// The block.
    pub(super) reader: BlockReader,
    /// The mapped index and segment files, to release what was read.
    pages: MappedPages,
}

impl Source {
    /// Opens the block folder `dir`; a failure names the block by its folder name.
    pub(super) fn open(dir: &Path) -> Result<Self, MergeError> {
        match Self::open_files(dir) {
            Ok(source) => Ok(source),
            Err(error) => {
                let named = dir
                    .file_name()
                    .and_then(|name| name.to_str())
                    .and_then(|name| Ulid::from_string(name).ok());
                match named {
                    Some(ulid) => Err(MergeError::reading(ulid, "open".to_owned(), &error)),
                    None => Err(MergeError::UnknownSource {
                        path: PathBuf::from(dir),
                        detail: error.to_string(),
                    }),
                }
            }
        }
    }

    /// Opens the block through [`MappedBlock`], keeping handles on the mapped files.
    fn open_files(dir: &Path) -> tsdb_block::Result<Self> {
        let MappedBlock { reader, pages } = MappedBlock::open(dir)?;
        Ok(Self {
            ulid: reader.meta().ulid,
            reader,
            pages,
        })
    }

    /// Releases the mapped pages before `series` (its index entry and its first chunk): series
    /// come in label order, and blocks store entries and chunks in that order.
    pub(super) fn release_before(&self, series: &SourceSeries) {
        self.pages
            .release_before(series.series_ref, series.chunks.first());
    }
}

/// Every symbol of every source, sorted and without duplicates: the output's symbol table.
pub(super) fn union_symbols(sources: &[Source]) -> Result<Vec<String>, MergeError> {
    let mut all: Vec<&str> = Vec::new();
    for source in sources {
        let symbols = source
            .reader
            .index()
            .all_symbols()
            .map_err(|error| MergeError::reading(source.ulid, "symbols".to_owned(), &error))?;
        all.extend(symbols);
    }
    all.sort_unstable();
    all.dedup();
    Ok(all.into_iter().map(str::to_owned).collect())
}

/// One series of one source, as its index stores it.
#[derive(Debug)]
pub(super) struct SourceSeries {
    /// Its reference in the source's index (for tombstones).
    pub(super) series_ref: SeriesRef,
    /// Its labels.
    pub(super) labels: Labels,
    /// Its chunks, checked to be in time order.
    pub(super) chunks: Vec<ChunkMeta>,
}

/// Walks all series of one source in label order, one at a time.
pub(super) struct SeriesCursor<'a> {
    source: &'a Source,
    postings: BoxPostings<'a>,
    /// The current series; `None` once the source is exhausted.
    pub(super) head: Option<SourceSeries>,
}

impl std::fmt::Debug for SeriesCursor<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SeriesCursor")
            .field("block", &self.source.ulid)
            .field("head", &self.head.as_ref().map(|head| &head.labels))
            .finish()
    }
}

impl<'a> SeriesCursor<'a> {
    /// A cursor on the first series of `source`.
    pub(super) fn new(source: &'a Source) -> Result<Self, MergeError> {
        let postings =
            source.reader.index().all_postings().map_err(|error| {
                MergeError::reading(source.ulid, "all postings".to_owned(), &error)
            })?;
        let mut cursor = Self {
            source,
            postings,
            head: None,
        };
        cursor.advance()?;
        Ok(cursor)
    }

    /// The source walked.
    pub(super) fn source(&self) -> &'a Source {
        self.source
    }

    /// Moves to the next series, checking that it comes after the current one in label order
    /// and that its chunks are in time order (Thanos' index health rules).
    pub(super) fn advance(&mut self) -> Result<(), MergeError> {
        let previous = self.head.take();
        let Some(series_ref) = self.postings.next() else {
            return Ok(());
        };
        let ulid = self.source.ulid;
        let entry = self
            .source
            .reader
            .index()
            .series(series_ref)
            .map_err(|error| MergeError::reading(ulid, format!("series {series_ref}"), &error))?;
        if let Some(previous) = &previous
            && previous.labels >= entry.labels
        {
            return Err(MergeError::bad(
                ulid,
                BlockProblem::Corrupt,
                format!(
                    "series {} does not come after {} in the index",
                    entry.labels, previous.labels
                ),
            ));
        }
        check_chunk_order(ulid, &entry.labels, &entry.chunks)?;
        self.head = Some(SourceSeries {
            series_ref,
            labels: entry.labels,
            chunks: entry.chunks,
        });
        Ok(())
    }
}

/// Thanos' rule: a chunk must start after the previous one ends, unless both cover exactly the
/// same time range (a duplicated chunk, merged away).
fn check_chunk_order(block: Ulid, labels: &Labels, chunks: &[ChunkMeta]) -> Result<(), MergeError> {
    let mut previous: Option<&ChunkMeta> = None;
    for chunk in chunks {
        if chunk.min_time > chunk.max_time {
            return Err(MergeError::bad(
                block,
                BlockProblem::Corrupt,
                format!(
                    "series {labels}: chunk min time {} after its max time {}",
                    chunk.min_time, chunk.max_time
                ),
            ));
        }
        if let Some(before) = previous
            && chunk.min_time <= before.max_time
            && (chunk.min_time, chunk.max_time) != (before.min_time, before.max_time)
        {
            return Err(MergeError::bad(
                block,
                BlockProblem::OutOfOrderChunks,
                format!(
                    "series {labels}: chunk {}..={} starts before the previous chunk {}..={} ends",
                    chunk.min_time, chunk.max_time, before.min_time, before.max_time
                ),
            ));
        }
        previous = Some(chunk);
    }
    Ok(())
}
