//! An external sort of postings records, so the index writer's memory does not grow with the
//! number of series.
//!
//! While series are written, every `(label name, label value, series ref)` triple becomes a record
//! (names and values as symbol ordinals, which sort like the strings). Records are buffered up to a
//! fixed count, then sorted and written to a run file; at the end the runs are merged. Memory is
//! the buffer plus a small read buffer per run.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// `[name ordinal + 1, value ordinal + 1, series ref]`; `[0, 0, ref]` is the all-postings key.
pub(super) type Record = [u32; 3];

const RECORD_LEN: usize = 12;
/// Records per read buffer when merging runs.
const READ_BATCH: usize = 4096;

/// Collects records, spilling sorted runs to `path` when the buffer is full.
#[derive(Debug)]
pub(super) struct PostingsSpill {
    path: PathBuf,
    capacity: usize,
    buffer: Vec<Record>,
    file: Option<BufWriter<File>>,
    /// `(first record index, record count)` of every run in the file.
    runs: Vec<(u64, u64)>,
    records_written: u64,
}

impl PostingsSpill {
    /// A spill that keeps at most `capacity` records in memory and writes runs to `path`.
    pub(super) fn new(path: PathBuf, capacity: usize) -> Self {
        Self {
            path,
            capacity: capacity.max(1),
            buffer: Vec::new(),
            file: None,
            runs: Vec::new(),
            records_written: 0,
        }
    }

    /// Adds one record.
    pub(super) fn push(&mut self, record: Record) -> Result<()> {
        if self.buffer.len() >= self.capacity {
            self.spill()?;
        }
        self.buffer.push(record);
        Ok(())
    }

    fn spill(&mut self) -> Result<()> {
        self.buffer.sort_unstable();
        if self.file.is_none() {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&self.path)
                .map_err(|source| Error::io("create", &self.path, source))?;
            self.file = Some(BufWriter::with_capacity(1 << 16, file));
        }
        let path = &self.path;
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        for record in &self.buffer {
            let mut bytes = [0u8; RECORD_LEN];
            bytes[0..4].copy_from_slice(&record[0].to_le_bytes());
            bytes[4..8].copy_from_slice(&record[1].to_le_bytes());
            bytes[8..12].copy_from_slice(&record[2].to_le_bytes());
            file.write_all(&bytes)
                .map_err(|source| Error::io("write", path, source))?;
        }
        let count = self.buffer.len() as u64;
        self.runs.push((self.records_written, count));
        self.records_written += count;
        self.buffer.clear();
        Ok(())
    }

    /// All records in ascending order.
    pub(super) fn into_sorted(mut self) -> Result<SortedRecords> {
        if self.runs.is_empty() {
            self.buffer.sort_unstable();
            return Ok(SortedRecords::Memory(
                std::mem::take(&mut self.buffer).into_iter(),
            ));
        }
        if !self.buffer.is_empty() {
            self.spill()?;
        }
        let path = self.path.clone();
        let file = match self.file.take() {
            Some(writer) => writer
                .into_inner()
                .map_err(|error| Error::io("write", &path, error.into_error()))?,
            None => File::open(&path).map_err(|source| Error::io("open", &path, source))?,
        };
        let mut merge = RunMerge {
            path,
            file,
            runs: Vec::new(),
            heap: BinaryHeap::new(),
        };
        for (index, (first, count)) in self.runs.iter().enumerate() {
            let mut run = Run {
                next_record: *first,
                end_record: first + count,
                buffer: Vec::new(),
                position: 0,
            };
            if let Some(record) = run.next(&merge.file, &merge.path)? {
                merge.heap.push(Reverse((record, index)));
            }
            merge.runs.push(run);
        }
        Ok(SortedRecords::Runs(merge))
    }
}

/// The records of a [`PostingsSpill`], in order.
#[derive(Debug)]
pub(super) enum SortedRecords {
    /// Everything fit in memory.
    Memory(std::vec::IntoIter<Record>),
    /// A merge of sorted runs on disk.
    Runs(RunMerge),
}

impl SortedRecords {
    /// The next record.
    pub(super) fn next_record(&mut self) -> Result<Option<Record>> {
        match self {
            SortedRecords::Memory(records) => Ok(records.next()),
            SortedRecords::Runs(merge) => merge.next_record(),
        }
    }

    /// Deletes the run file, if any.
    pub(super) fn remove_file(self) -> Result<()> {
        if let SortedRecords::Runs(merge) = self {
            std::fs::remove_file(&merge.path)
                .map_err(|source| Error::io("remove", &merge.path, source))?;
        }
        Ok(())
    }
}

#[derive(Debug)]
pub(super) struct RunMerge {
    path: PathBuf,
    file: File,
    runs: Vec<Run>,
    heap: BinaryHeap<Reverse<(Record, usize)>>,
}

impl RunMerge {
    fn next_record(&mut self) -> Result<Option<Record>> {
        let Some(Reverse((record, index))) = self.heap.pop() else {
            return Ok(None);
        };
        if let Some(next) = self.runs[index].next(&self.file, &self.path)? {
            self.heap.push(Reverse((next, index)));
        }
        Ok(Some(record))
    }
}

#[derive(Debug)]
struct Run {
    next_record: u64,
    end_record: u64,
    buffer: Vec<u8>,
    position: usize,
}

impl Run {
    fn next(&mut self, file: &File, path: &Path) -> Result<Option<Record>> {
        if self.position >= self.buffer.len() {
            if self.next_record >= self.end_record {
                return Ok(None);
            }
            let count = (self.end_record - self.next_record).min(READ_BATCH as u64);
            self.buffer.resize(count as usize * RECORD_LEN, 0);
            file.read_exact_at(&mut self.buffer, self.next_record * RECORD_LEN as u64)
                .map_err(|source| Error::io("read", path, source))?;
            self.next_record += count;
            self.position = 0;
        }
        let bytes = &self.buffer[self.position..self.position + RECORD_LEN];
        self.position += RECORD_LEN;
        let word = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        Ok(Some([word(0), word(4), word(8)]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(capacity: usize) {
        let dir = tempfile::tempdir().unwrap();
        let mut spill = PostingsSpill::new(dir.path().join("spill"), capacity);
        let mut expected = Vec::new();
        for series in 0..1000u32 {
            for record in [
                [0, 0, series],
                [1 + series % 7, 2 + series % 3, series],
                [9, 1, series],
            ] {
                spill.push(record).unwrap();
                expected.push(record);
            }
        }
        expected.sort();
        let mut sorted = spill.into_sorted().unwrap();
        let mut actual = Vec::new();
        while let Some(record) = sorted.next_record().unwrap() {
            actual.push(record);
        }
        sorted.remove_file().unwrap();
        assert_eq!(actual, expected);
        assert!(!dir.path().join("spill").exists());
    }

    #[test]
    fn sorts_in_memory_and_through_runs() {
        check(1 << 20);
        check(100);
        check(1);
    }
}
