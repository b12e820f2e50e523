//! Where a block file's bytes come from: a memory-mapped local file or bytes already in memory.
//!
//! Readers ask a [`ByteSource`] for byte ranges by absolute offset and get a borrowed slice back,
//! so the same decoding code runs over a local file ([`MmapSource`]) and over bytes fetched from
//! object storage ([`MemorySource`], or any other implementation holding prefetched ranges). The
//! trait is synchronous: fetching is the caller's business and happens before reading
//! ([`RangesSource`] holds the prefetched ranges of a file).

use std::fmt;
use std::fs::File;
use std::path::Path;

use bytes::Bytes;
use memmap2::Mmap;

use crate::error::{Error, Result};

/// Random access to the bytes of one file.
pub trait ByteSource: fmt::Debug + Send + Sync {
    /// The file's name as errors show it, e.g. `index` or `chunks/000001`.
    fn name(&self) -> &str;

    /// The file's size in bytes.
    fn len(&self) -> u64;

    /// Whether the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `length` bytes at `offset`, or [`Error::Corrupt`] naming `section` when the range is
    /// not there (past the end of the file, or not fetched).
    fn read(&self, offset: u64, length: u64, section: &'static str) -> Result<&[u8]>;

    /// Everything from `offset` to the end of the file.
    fn read_to_end(&self, offset: u64, section: &'static str) -> Result<&[u8]> {
        let length = self
            .len()
            .checked_sub(offset)
            .ok_or_else(|| Error::Corrupt {
                file: self.name().to_owned(),
                section,
                offset,
                detail: format!("offset beyond the {} bytes of the file", self.len()),
            })?;
        self.read(offset, length, section)
    }
}

/// The slice `offset..offset + length` of `bytes`, or the error a [`ByteSource`] returns.
fn slice_of<'a>(
    bytes: &'a [u8],
    name: &str,
    offset: u64,
    length: u64,
    section: &'static str,
) -> Result<&'a [u8]> {
    let end = offset.checked_add(length);
    match end {
        Some(end) if end <= bytes.len() as u64 => Ok(&bytes[offset as usize..end as usize]),
        _ => Err(Error::Corrupt {
            file: name.to_owned(),
            section,
            offset,
            detail: format!(
                "range of {length} bytes goes past the end of the file ({} bytes)",
                bytes.len()
            ),
        }),
    }
}

/// A local file, memory-mapped read-only.
pub struct MmapSource {
    name: String,
    map: Option<Mmap>,
}

impl MmapSource {
    /// Maps the file at `path`; `name` is how errors refer to it.
    pub fn open(path: &Path, name: impl Into<String>) -> Result<Self> {
        let file = File::open(path).map_err(|source| Error::io("open", path, source))?;
        let length = file
            .metadata()
            .map_err(|source| Error::io("stat", path, source))?
            .len();
        let map = if length == 0 {
            None
        } else {
            // SAFETY: the block files are immutable once written (blocks are renamed into place
            // complete and never modified), which is the condition for mapping them.
            let map =
                unsafe { Mmap::map(&file) }.map_err(|source| Error::io("mmap", path, source))?;
            Some(map)
        };
        Ok(Self {
            name: name.into(),
            map,
        })
    }

    fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

impl fmt::Debug for MmapSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MmapSource")
            .field("name", &self.name)
            .field("len", &self.bytes().len())
            .finish()
    }
}

impl ByteSource for MmapSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn len(&self) -> u64 {
        self.bytes().len() as u64
    }

    fn read(&self, offset: u64, length: u64, section: &'static str) -> Result<&[u8]> {
        slice_of(self.bytes(), &self.name, offset, length, section)
    }
}

/// A whole file held in memory, e.g. downloaded from object storage.
#[derive(Clone)]
pub struct MemorySource {
    name: String,
    bytes: Bytes,
}

impl MemorySource {
    /// The bytes of the file called `name`.
    pub fn new(name: impl Into<String>, bytes: impl Into<Bytes>) -> Self {
        Self {
            name: name.into(),
            bytes: bytes.into(),
        }
    }
}

impl fmt::Debug for MemorySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySource")
            .field("name", &self.name)
            .field("len", &self.bytes.len())
            .finish()
    }
}

impl ByteSource for MemorySource {
    fn name(&self) -> &str {
        &self.name
    }

    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read(&self, offset: u64, length: u64, section: &'static str) -> Result<&[u8]> {
        slice_of(&self.bytes, &self.name, offset, length, section)
    }
}

/// Some byte ranges of a file, e.g. prefetched from object storage: a read that lies within one
/// held range is served from memory (so insert coalesced ranges), anything else is an error
/// saying the range was not fetched.
#[derive(Clone)]
pub struct RangesSource {
    name: String,
    len: u64,
    /// Held ranges by start offset; they do not overlap.
    ranges: std::collections::BTreeMap<u64, Bytes>,
}

impl RangesSource {
    /// An empty source for a file called `name` of `len` bytes.
    pub fn new(name: impl Into<String>, len: u64) -> Self {
        Self {
            name: name.into(),
            len,
            ranges: std::collections::BTreeMap::new(),
        }
    }

    /// Holds `bytes` as the content at `offset`; fails if it goes past the end of the file or
    /// overlaps a range already held.
    pub fn insert(&mut self, offset: u64, bytes: impl Into<Bytes>) -> Result<()> {
        let bytes = bytes.into();
        let end = offset
            .checked_add(bytes.len() as u64)
            .filter(|end| *end <= self.len);
        let invalid = |detail: String| Error::InvalidInput {
            writer: "ranges source",
            detail,
        };
        let Some(end) = end else {
            return Err(invalid(format!(
                "range at {offset} of {} bytes is past the end of {} ({} bytes)",
                bytes.len(),
                self.name,
                self.len
            )));
        };
        let before = self.ranges.range(..end).next_back();
        if let Some((start, held)) = before
            && start + held.len() as u64 > offset
        {
            return Err(invalid(format!(
                "range at {offset} overlaps the one at {start}"
            )));
        }
        self.ranges.insert(offset, bytes);
        Ok(())
    }
}

impl fmt::Debug for RangesSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RangesSource")
            .field("name", &self.name)
            .field("len", &self.len)
            .field("ranges", &self.ranges.len())
            .finish()
    }
}

impl ByteSource for RangesSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn read(&self, offset: u64, length: u64, section: &'static str) -> Result<&[u8]> {
        let held = self.ranges.range(..=offset).next_back();
        if let Some((start, bytes)) = held {
            let within = offset - start;
            if within
                .checked_add(length)
                .is_some_and(|end| end <= bytes.len() as u64)
            {
                return Ok(&bytes[within as usize..(within + length) as usize]);
            }
        }
        Err(Error::Corrupt {
            file: self.name.clone(),
            section,
            offset,
            detail: if offset.checked_add(length).is_none_or(|end| end > self.len) {
                format!(
                    "range of {length} bytes goes past the end of the file ({} bytes)",
                    self.len
                )
            } else {
                format!("range of {length} bytes was not fetched")
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(source: &dyn ByteSource) {
        assert_eq!(source.len(), 5);
        assert_eq!(source.read(1, 3, "test").unwrap(), b"bcd");
        assert_eq!(source.read_to_end(3, "test").unwrap(), b"de");
        assert_eq!(source.read(5, 0, "test").unwrap(), b"");
        let error = source.read(3, 3, "symbol table").unwrap_err();
        assert!(
            matches!(&error, Error::Corrupt { file, section: "symbol table", offset: 3, .. } if file == "index"),
            "{error}"
        );
        assert!(source.read(u64::MAX, 2, "test").is_err());
        assert!(source.read_to_end(6, "test").is_err());
    }

    #[test]
    fn memory_and_mmap_sources_agree() {
        check(&MemorySource::new("index", b"abcde".to_vec()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        std::fs::write(&path, b"abcde").unwrap();
        check(&MmapSource::open(&path, "index").unwrap());
    }

    #[test]
    fn ranges_source_serves_held_ranges_only() {
        let mut whole = RangesSource::new("index", 5);
        whole.insert(0, b"abcde".to_vec()).unwrap();
        check(&whole);
        let mut split = RangesSource::new("index", 5);
        split.insert(0, b"ab".to_vec()).unwrap();
        split.insert(2, b"cde".to_vec()).unwrap();
        assert_eq!(split.read(2, 3, "test").unwrap(), b"cde");
        assert!(
            split.read(1, 2, "test").is_err(),
            "a read must lie within one range"
        );
        let mut sparse = RangesSource::new("index", 100);
        sparse.insert(10, b"0123456789".to_vec()).unwrap();
        assert_eq!(sparse.read(12, 3, "test").unwrap(), b"234");
        let error = sparse.read(18, 4, "postings").unwrap_err();
        assert!(error.to_string().contains("not fetched"), "{error}");
        assert!(sparse.read(0, 1, "test").is_err());
        assert!(sparse.insert(15, b"x".to_vec()).is_err(), "overlap");
        assert!(sparse.insert(99, b"xy".to_vec()).is_err(), "past the end");
        assert!(sparse.insert(5, b"01234".to_vec()).is_ok(), "adjacent");
    }

    #[test]
    fn empty_file_maps_to_no_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty");
        std::fs::write(&path, b"").unwrap();
        let source = MmapSource::open(&path, "empty").unwrap();
        assert!(source.is_empty());
        assert!(source.read(0, 1, "test").is_err());
    }
}
