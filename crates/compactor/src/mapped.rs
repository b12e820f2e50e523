//! Source files memory-mapped so that the part a merge has read can be handed back to the
//! kernel: series are merged in label order and a block's series entries and chunks are laid out
//! in that order, so what lies before the current series is not needed again. Without this, the
//! resident pages of the mapped sources (counted in the process' RSS) grow to the size of the
//! blocks. Releasing a page that is needed after all only costs a re-read from the page cache.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use memmap2::{Mmap, UncheckedAdvice};
use tsdb_block::source::ByteSource;

/// A read-only mapped file shared between a [`tsdb_block::reader::BlockReader`] and the merge.
#[derive(Debug, Clone)]
pub(super) struct SharedFile {
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
    pub(super) fn open(path: &Path, name: impl Into<String>) -> tsdb_block::Result<Self> {
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
    pub(super) fn release(&self, from: u64, to: u64) {
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
