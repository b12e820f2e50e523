//! Source blocks memory-mapped so that the part a merge or a downsampling has read can be handed
//! back to the kernel: both walk series in label order, and a block's series entries and chunks
//! are laid out in that order, so what lies before the current series is not needed again.
//! Without this, the resident pages of the mapped sources (counted in the process' RSS) grow to
//! the size of the blocks. Releasing a page that is needed after all only costs a re-read from
//! the page cache.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use memmap2::{Mmap, UncheckedAdvice};
use tsdb_block::index::{ChunkMeta, SERIES_ALIGNMENT};
use tsdb_block::meta::BlockMeta;
use tsdb_block::postings::SeriesRef;
use tsdb_block::reader::BlockReader;
use tsdb_block::source::{ByteSource, MemorySource};

/// Every how many series a walk over a block releases the mapped pages already read.
pub(crate) const RELEASE_EVERY: u64 = 4096;

/// A block opened for reading through [`SharedFile`]s: its reader, and handles on its mapped
/// index and chunk segment files to release what was read.
#[derive(Debug)]
pub(crate) struct MappedBlock {
    /// The block.
    pub(crate) reader: BlockReader,
    /// Releases the pages of the block's files.
    pub(crate) pages: MappedPages,
}

/// Handles on a block's mapped index and chunk segment files, to release the pages behind a
/// series.
#[derive(Debug)]
pub(crate) struct MappedPages {
    /// Where the index's series section starts.
    series_start: u64,
    index: SharedFile,
    segments: Vec<SharedFile>,
}

impl MappedBlock {
    /// What `BlockReader::open` does for the block folder `dir`, keeping handles on the mapped
    /// files.
    pub(crate) fn open(dir: &Path) -> tsdb_block::Result<Self> {
        let meta = BlockMeta::read_from_dir(dir)?;
        let index = SharedFile::open(&dir.join("index"), "index")?;
        let chunks_dir = dir.join("chunks");
        let mut segments = Vec::new();
        for name in tsdb_block::chunks::segment_file_names(&chunks_dir)? {
            let segment = SharedFile::open(&chunks_dir.join(&name), format!("chunks/{name}"))?;
            tsdb_block::chunks::check_segment_header(
                segment.read_to_end(0, "header")?,
                segment.name(),
            )?;
            segments.push(segment);
        }
        let tombstones_path = dir.join("tombstones");
        let tombstones: Box<dyn ByteSource> = if tombstones_path.exists() {
            Box::new(SharedFile::open(&tombstones_path, "tombstones")?)
        } else {
            Box::new(MemorySource::new("tombstones", Vec::new()))
        };
        let boxed: Vec<Box<dyn ByteSource>> = segments
            .iter()
            .map(|segment| Box::new(segment.clone()) as Box<dyn ByteSource>)
            .collect();
        let reader =
            BlockReader::from_sources(meta, Box::new(index.clone()), boxed, tombstones.as_ref())?;
        let series_start = reader.index().toc().series;
        Ok(Self {
            reader,
            pages: MappedPages {
                series_start,
                index,
                segments,
            },
        })
    }
}

impl MappedPages {
    /// Releases the mapped pages before the series `series_ref` whose first chunk is
    /// `first_chunk` (its index entry and that chunk are kept): series are walked in label
    /// order, and blocks store entries and chunks in that order.
    pub(crate) fn release_before(&self, series_ref: SeriesRef, first_chunk: Option<&ChunkMeta>) {
        let entry = series_ref.saturating_mul(SERIES_ALIGNMENT);
        self.index.release(self.series_start, entry);
        let Some(first) = first_chunk else {
            return;
        };
        let current = (first.chunk_ref >> 32) as usize;
        for (index, segment) in self.segments.iter().enumerate().take(current + 1) {
            let end = if index == current {
                first.chunk_ref & 0xFFFF_FFFF
            } else {
                u64::MAX
            };
            segment.release(0, end);
        }
    }
}

/// A read-only mapped file shared between a [`BlockReader`] and the code walking the block.
#[derive(Debug, Clone)]
pub(crate) struct SharedFile {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    map: Option<Mmap>,
}

/// The page size used to align released ranges (4 KiB pages; larger pages are multiples).
const PAGE: usize = 4096;

impl SharedFile {
    /// Maps the file at `path`; `name` is how errors refer to it.
    pub(crate) fn open(path: &Path, name: impl Into<String>) -> tsdb_block::Result<Self> {
        let file =
            File::open(path).map_err(|source| tsdb_block::Error::io("open", path, source))?;
        let length = file
            .metadata()
            .map_err(|source| tsdb_block::Error::io("stat", path, source))?
            .len();
        let map = if length == 0 {
            None
        } else {
            // SAFETY: block files are immutable once written (renamed into place complete and
            // never modified), the condition for mapping them.
            Some(
                unsafe { Mmap::map(&file) }
                    .map_err(|source| tsdb_block::Error::io("mmap", path, source))?,
            )
        };
        Ok(Self {
            inner: Arc::new(Inner {
                name: name.into(),
                map,
            }),
        })
    }

    /// Drops the resident pages of `[from, to)` (shrunk to whole pages) from this process.
    pub(crate) fn release(&self, from: u64, to: u64) {
        let Some(map) = &self.inner.map else { return };
        let to = (to.min(map.len() as u64) as usize) / PAGE * PAGE;
        let from = (from as usize).div_ceil(PAGE) * PAGE;
        if from >= to {
            return;
        }
        // SAFETY: the mapping is a read-only shared mapping of an immutable file: after
        // MADV_DONTNEED the next access reads the same bytes again from the file, so no slice
        // handed out before changes or dangles.
        let advised =
            unsafe { map.unchecked_advise_range(UncheckedAdvice::DontNeed, from, to - from) };
        if let Err(error) = advised {
            tracing::debug!(file = %self.inner.name, %error, "release mapped pages");
        }
    }
}

impl ByteSource for SharedFile {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn len(&self) -> u64 {
        self.inner
            .map
            .as_deref()
            .map_or(0, |bytes| bytes.len() as u64)
    }

    fn read(&self, offset: u64, length: u64, section: &'static str) -> tsdb_block::Result<&[u8]> {
        let bytes = self.inner.map.as_deref().unwrap_or(&[]);
        match offset.checked_add(length) {
            Some(end) if end <= bytes.len() as u64 => Ok(&bytes[offset as usize..end as usize]),
            _ => Err(tsdb_block::Error::Corrupt {
                file: self.inner.name.clone(),
                section,
                offset,
                detail: format!(
                    "range of {length} bytes goes past the end of the file ({} bytes)",
                    bytes.len()
                ),
            }),
        }
    }
}
