//! The `tombstones` file: deleted time ranges per series, and helpers to apply them.
//!
//! Layout: magic `0x0130BA30` (4 bytes BE), format version 1 (1 byte), then one entry per deleted
//! interval (`uvarint series ref | varint mint | varint maxt`, both ends inclusive), then the
//! CRC32C of the entries alone. A block without deletions still has the 9-byte empty file.
//! Upstream writes series in map order; we write them sorted by reference.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;

use crate::encoding::{Decoder, Encoder, crc32c};
use crate::error::{Error, Result};
use crate::source::ByteSource;

/// File name inside a block.
pub const TOMBSTONES_FILENAME: &str = "tombstones";
/// Magic number at the start of the file.
pub const TOMBSTONES_MAGIC: u32 = 0x0130_BA30;
/// Format version written and accepted.
pub const TOMBSTONES_FORMAT_V1: u8 = 1;
/// Magic plus version.
const HEADER_SIZE: usize = 5;
const CRC_SIZE: usize = 4;

/// A deleted time range, inclusive at both ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Interval {
    /// First deleted millisecond.
    pub min_time: i64,
    /// Last deleted millisecond.
    pub max_time: i64,
}

impl Interval {
    /// The range `min_time..=max_time`.
    pub fn new(min_time: i64, max_time: i64) -> Self {
        Self { min_time, max_time }
    }

    /// Whether `t` is deleted.
    pub fn contains(&self, t: i64) -> bool {
        self.min_time <= t && t <= self.max_time
    }

    /// Whether the range `min_time..=max_time` lies entirely inside this interval.
    pub fn covers(&self, min_time: i64, max_time: i64) -> bool {
        self.min_time <= min_time && max_time <= self.max_time
    }

    /// Whether the range `min_time..=max_time` shares at least one millisecond with this one.
    pub fn overlaps(&self, min_time: i64, max_time: i64) -> bool {
        self.min_time <= max_time && min_time <= self.max_time
    }
}

/// What deletions do to a chunk with a given time range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkDeletion {
    /// No sample of the chunk is deleted: use it as is.
    Kept,
    /// Every sample is deleted: drop the chunk.
    Deleted,
    /// Some samples may be deleted: filter its samples (and re-encode when writing).
    Partial,
}

/// Sorted, non-overlapping deleted intervals of one series. Adding an interval merges it with
/// those it overlaps or touches (intervals are over integer milliseconds, so `[1,2]` and `[3,4]`
/// become `[1,4]`), as upstream does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intervals {
    sorted: Vec<Interval>,
}

impl Intervals {
    /// No deletions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `interval`, merging as needed. An interval with `min_time > max_time` is ignored.
    pub fn add(&mut self, interval: Interval) {
        if interval.min_time > interval.max_time {
            return;
        }
        // First interval that ends at or after the one before `interval` starts.
        let first = self
            .sorted
            .partition_point(|existing| existing.max_time < interval.min_time.saturating_sub(1));
        // First interval that starts after the one after `interval` ends.
        let end = self
            .sorted
            .partition_point(|existing| existing.min_time <= interval.max_time.saturating_add(1));
        if first >= end {
            self.sorted.insert(first, interval);
            return;
        }
        let merged = Interval {
            min_time: interval.min_time.min(self.sorted[first].min_time),
            max_time: interval.max_time.max(self.sorted[end - 1].max_time),
        };
        self.sorted.splice(first..end, [merged]);
    }

    /// The intervals, sorted.
    pub fn as_slice(&self) -> &[Interval] {
        &self.sorted
    }

    /// Number of intervals.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Whether nothing is deleted.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// Whether `t` is deleted.
    pub fn contains(&self, t: i64) -> bool {
        let index = self
            .sorted
            .partition_point(|interval| interval.max_time < t);
        self.sorted
            .get(index)
            .is_some_and(|interval| interval.min_time <= t)
    }

    /// What the deletions do to a chunk spanning `min_time..=max_time`.
    pub fn chunk_deletion(&self, min_time: i64, max_time: i64) -> ChunkDeletion {
        let index = self
            .sorted
            .partition_point(|interval| interval.max_time < min_time);
        match self.sorted.get(index) {
            Some(interval) if interval.covers(min_time, max_time) => ChunkDeletion::Deleted,
            Some(interval) if interval.overlaps(min_time, max_time) => ChunkDeletion::Partial,
            _ => ChunkDeletion::Kept,
        }
    }

    /// Drops the items whose timestamp is deleted; `items` must be in time order.
    pub fn retain_in_time_order<T>(&self, items: &mut Vec<T>, timestamp: impl Fn(&T) -> i64) {
        if self.sorted.is_empty() {
            return;
        }
        let mut cursor = DeletionCursor::new(self);
        items.retain(|item| !cursor.is_deleted(timestamp(item)));
    }

    /// Yields the samples of `samples` (in time order) that are not deleted.
    pub fn filter_samples<I>(&self, samples: I) -> FilterSamples<'_, I::IntoIter>
    where
        I: IntoIterator<Item = (i64, f64)>,
    {
        FilterSamples {
            cursor: DeletionCursor::new(self),
            samples: samples.into_iter(),
        }
    }
}

impl FromIterator<Interval> for Intervals {
    fn from_iter<I: IntoIterator<Item = Interval>>(iter: I) -> Self {
        let mut intervals = Self::new();
        for interval in iter {
            intervals.add(interval);
        }
        intervals
    }
}

/// Answers "is `t` deleted" for increasing `t` in amortised constant time.
#[derive(Debug, Clone)]
struct DeletionCursor<'a> {
    remaining: &'a [Interval],
}

impl<'a> DeletionCursor<'a> {
    fn new(intervals: &'a Intervals) -> Self {
        Self {
            remaining: &intervals.sorted,
        }
    }

    fn is_deleted(&mut self, t: i64) -> bool {
        while let Some((first, rest)) = self.remaining.split_first() {
            if first.max_time >= t {
                return first.min_time <= t;
            }
            self.remaining = rest;
        }
        false
    }
}

/// Iterator of [`Intervals::filter_samples`].
#[derive(Debug, Clone)]
pub struct FilterSamples<'a, I> {
    cursor: DeletionCursor<'a>,
    samples: I,
}

impl<I: Iterator<Item = (i64, f64)>> Iterator for FilterSamples<'_, I> {
    type Item = (i64, f64);

    fn next(&mut self) -> Option<(i64, f64)> {
        loop {
            let sample = self.samples.next()?;
            if !self.cursor.is_deleted(sample.0) {
                return Some(sample);
            }
        }
    }
}

/// Deleted intervals by series reference (the series' offset-based id in the index).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tombstones {
    by_series: BTreeMap<u64, Intervals>,
}

impl Tombstones {
    /// No deletions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Deletes `interval` of series `series_ref`.
    pub fn add_interval(&mut self, series_ref: u64, interval: Interval) {
        if interval.min_time > interval.max_time {
            return;
        }
        self.by_series.entry(series_ref).or_default().add(interval);
    }

    /// The deletions of one series.
    pub fn get(&self, series_ref: u64) -> Option<&Intervals> {
        self.by_series.get(&series_ref)
    }

    /// Series with deletions, in reference order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Intervals)> + '_ {
        self.by_series
            .iter()
            .map(|(series_ref, intervals)| (*series_ref, intervals))
    }

    /// Whether nothing is deleted.
    pub fn is_empty(&self) -> bool {
        self.by_series.is_empty()
    }

    /// Number of series with deletions.
    pub fn num_series(&self) -> usize {
        self.by_series.len()
    }

    /// Number of intervals over all series (`stats.numTombstones` of meta.json).
    pub fn num_intervals(&self) -> u64 {
        self.by_series
            .values()
            .map(|intervals| intervals.len() as u64)
            .sum()
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut encoder =
            Encoder::with_capacity(HEADER_SIZE + CRC_SIZE + 16 * self.by_series.len());
        encoder.put_be_u32(TOMBSTONES_MAGIC);
        encoder.put_u8(TOMBSTONES_FORMAT_V1);
        for (series_ref, intervals) in &self.by_series {
            for interval in intervals.as_slice() {
                encoder.put_uvarint(*series_ref);
                encoder.put_varint(interval.min_time);
                encoder.put_varint(interval.max_time);
            }
        }
        encoder.put_crc32c_since(HEADER_SIZE);
        encoder.into_vec()
    }

    /// Parses the file's bytes; `file_name` names it in errors.
    pub fn decode(bytes: &[u8], file_name: &str) -> Result<Self> {
        let corrupt = |section: &'static str, offset: u64, detail: String| Error::Corrupt {
            file: file_name.to_owned(),
            section,
            offset,
            detail,
        };
        if bytes.len() < HEADER_SIZE + CRC_SIZE {
            return Err(corrupt(
                "header",
                0,
                format!(
                    "file of {} bytes is shorter than header and checksum",
                    bytes.len()
                ),
            ));
        }
        let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        if magic != TOMBSTONES_MAGIC {
            return Err(corrupt(
                "header",
                0,
                format!("magic {magic:#010x}, want {TOMBSTONES_MAGIC:#010x}"),
            ));
        }
        if bytes[4] != TOMBSTONES_FORMAT_V1 {
            return Err(corrupt(
                "header",
                4,
                format!("format version {}, want {TOMBSTONES_FORMAT_V1}", bytes[4]),
            ));
        }
        let crc_start = bytes.len() - CRC_SIZE;
        let entries = &bytes[HEADER_SIZE..crc_start];
        let stored = u32::from_be_bytes([
            bytes[crc_start],
            bytes[crc_start + 1],
            bytes[crc_start + 2],
            bytes[crc_start + 3],
        ]);
        let computed = crc32c(entries);
        if stored != computed {
            return Err(corrupt(
                "checksum",
                crc_start as u64,
                format!("checksum {stored:#010x} does not match computed {computed:#010x}"),
            ));
        }
        let mut tombstones = Self::new();
        let mut decoder = Decoder::new(entries, HEADER_SIZE as u64);
        while !decoder.is_empty() {
            let entry = (|| Ok((decoder.uvarint()?, decoder.varint()?, decoder.varint()?)))();
            let (series_ref, min_time, max_time) =
                entry.map_err(|error: crate::encoding::DecodeError| {
                    error.in_section(file_name, "entries")
                })?;
            tombstones.add_interval(series_ref, Interval::new(min_time, max_time));
        }
        Ok(tombstones)
    }

    /// Reads `<block_dir>/tombstones`; a missing file means no deletions, as upstream.
    pub fn read_from_dir(block_dir: &Path) -> Result<Self> {
        let path = block_dir.join(TOMBSTONES_FILENAME);
        match fs::read(&path) {
            Ok(bytes) => Self::decode(&bytes, TOMBSTONES_FILENAME),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Self::new()),
            Err(error) => Err(Error::io("read", &path, error)),
        }
    }

    /// Writes `<block_dir>/tombstones` atomically (always, even when empty) and returns its size.
    pub fn write_to_dir(&self, block_dir: &Path) -> Result<u64> {
        let bytes = self.encode();
        crate::meta::write_atomically(&block_dir.join(TOMBSTONES_FILENAME), &bytes)?;
        Ok(bytes.len() as u64)
    }
}

/// Writes the empty (9-byte) tombstones file into `block_dir` and returns its size.
pub fn write_empty(block_dir: &Path) -> Result<u64> {
    Tombstones::new().write_to_dir(block_dir)
}

/// Reads a tombstones file from `source` (an empty source stands for a missing file, i.e. no
/// deletions) into merged `(min_time, max_time)` pairs per series reference.
pub fn read_intervals(source: &dyn ByteSource) -> Result<HashMap<u64, Vec<(i64, i64)>>> {
    if source.is_empty() {
        return Ok(HashMap::new());
    }
    let bytes = source.read_to_end(0, "tombstones")?;
    let tombstones = Tombstones::decode(bytes, source.name())?;
    Ok(tombstones
        .iter()
        .map(|(series_ref, intervals)| {
            let pairs = intervals
                .as_slice()
                .iter()
                .map(|interval| (interval.min_time, interval.max_time))
                .collect();
            (series_ref, pairs)
        })
        .collect())
}

#[cfg(test)]
mod tests;
