//! Reading an index file (format v2) in place.

use std::collections::BTreeMap;

use prom_model::{Label, Labels};

use super::{
    ChunkMeta, FORMAT_V1, FORMAT_V2, HEADER_LEN, MAGIC, SAMPLING_FACTOR, SERIES_ALIGNMENT, Symbols,
    TOC_LEN, Toc, read_section,
};
use crate::encoding::{DecodeError, Decoder, crc32c};
use crate::error::{Error, Result};
use crate::postings::{BoxPostings, EmptyPostings, ListPostings, SeriesRef, merge};
use crate::source::ByteSource;

const TABLE: &str = "postings offset table";
const POSTINGS: &str = "postings";
const SERIES: &str = "series";

/// A series as the index stores it: its labels and its chunks' time ranges and references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesEntry {
    /// The series' labels.
    pub labels: Labels,
    /// The chunks, ordered by time.
    pub chunks: Vec<ChunkMeta>,
}

/// A sampled entry of the postings offset table: a value and where its entry starts.
#[derive(Debug, Clone)]
struct SampledValue {
    value: String,
    entry_offset: u64,
}

/// An index file read over a [`ByteSource`].
#[derive(Debug)]
pub struct IndexReader {
    source: Box<dyn ByteSource>,
    toc: Toc,
    symbols: Symbols,
    /// Every label name (and `""` for the all-postings list) with every 32nd value and the last.
    postings_table: BTreeMap<String, Vec<SampledValue>>,
    /// Absolute offset just past the last entry of the postings offset table.
    table_end: u64,
}

impl IndexReader {
    /// Opens the index in `source`: checks the header and the TOC, loads the symbol table sample
    /// and the postings offset table sample.
    pub fn new(source: Box<dyn ByteSource>) -> Result<Self> {
        let corrupt = |section, offset, detail: String| Error::Corrupt {
            file: source.name().to_owned(),
            section,
            offset,
            detail,
        };
        if source.len() < HEADER_LEN + TOC_LEN {
            return Err(corrupt(
                "header",
                0,
                format!("file of {} bytes is too short", source.len()),
            ));
        }
        let header = source.read(0, HEADER_LEN, "header")?;
        let magic = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        if magic != MAGIC {
            return Err(corrupt(
                "header",
                0,
                format!("invalid magic number {magic:#010x}"),
            ));
        }
        match header[4] {
            FORMAT_V2 => {}
            FORMAT_V1 => {
                return Err(corrupt(
                    "header",
                    4,
                    "index format v1 is not supported".to_owned(),
                ));
            }
            version => {
                return Err(corrupt(
                    "header",
                    4,
                    format!("unknown index format version {version}"),
                ));
            }
        }
        let toc_offset = source.len() - TOC_LEN;
        let toc = Toc::decode(source.read(toc_offset, TOC_LEN, "toc")?, source.len())?;
        let symbols = Symbols::load(source.as_ref(), toc.symbols)?;
        let (postings_table, table_end) = load_postings_table(source.as_ref(), toc.postings_table)?;
        Ok(Self {
            source,
            toc,
            symbols,
            postings_table,
            table_end,
        })
    }

    /// The byte source the index is read from.
    pub fn source(&self) -> &dyn ByteSource {
        self.source.as_ref()
    }

    /// The table of contents.
    pub fn toc(&self) -> &Toc {
        &self.toc
    }

    /// The symbol table.
    pub fn symbols(&self) -> &Symbols {
        &self.symbols
    }

    /// Every symbol, in order (label names and values of all series).
    pub fn all_symbols(&self) -> Result<Vec<&str>> {
        self.symbols.all(self.source.as_ref())
    }

    /// Every label name, sorted.
    pub fn label_names(&self) -> Vec<&str> {
        self.postings_table
            .keys()
            .filter(|name| !name.is_empty())
            .map(String::as_str)
            .collect()
    }

    /// Every value of label `name`, sorted; empty when no series has the label.
    pub fn label_values(&self, name: &str) -> Result<Vec<&str>> {
        let mut values = Vec::new();
        self.scan_values(name, None, |value, _| {
            values.push(value);
            true
        })?;
        Ok(values)
    }

    /// Calls `visit(value, postings offset)` for the values of `name` from `from` (or the first),
    /// in order, while it returns `true`.
    fn scan_values<'a>(
        &'a self,
        name: &str,
        from: Option<&SampledValue>,
        mut visit: impl FnMut(&'a str, u64) -> bool,
    ) -> Result<()> {
        let Some(samples) = self.postings_table.get(name) else {
            return Ok(());
        };
        let (Some(first), Some(last)) = (from.or(samples.first()), samples.last()) else {
            return Ok(());
        };
        let bytes = self.source.read(
            first.entry_offset,
            self.table_end.saturating_sub(first.entry_offset),
            TABLE,
        )?;
        let mut decoder = Decoder::new(bytes, first.entry_offset);
        loop {
            let entry_offset = decoder.offset();
            let (entry_name, value, postings_offset) =
                decode_entry(&mut decoder).map_err(|e| e.in_section(self.source.name(), TABLE))?;
            if entry_name != name
                || !visit(value, postings_offset)
                || entry_offset >= last.entry_offset
            {
                return Ok(());
            }
        }
    }

    /// The postings of `name` for each of `values` (sorted or not), merged; values the index
    /// does not have are skipped.
    pub fn postings(&self, name: &str, values: &[&str]) -> Result<BoxPostings<'_>> {
        let Some(samples) = self.postings_table.get(name) else {
            return Ok(Box::new(EmptyPostings));
        };
        let mut lists: Vec<BoxPostings<'_>> = Vec::with_capacity(values.len());
        for value in values {
            // The last sample at or below the value, where a scan for it starts.
            let index = samples.partition_point(|sample| sample.value.as_str() <= *value);
            if index == 0 {
                continue;
            }
            let mut found = None;
            self.scan_values(name, Some(&samples[index - 1]), |candidate, offset| {
                if candidate == *value {
                    found = Some(offset);
                }
                candidate < *value
            })?;
            if let Some(offset) = found {
                lists.push(Box::new(self.postings_list(offset)?));
            }
        }
        Ok(merge(lists))
    }

    /// Every series, in label order.
    pub fn all_postings(&self) -> Result<BoxPostings<'_>> {
        self.postings("", &[""])
    }

    /// The postings list whose `len` field is at `offset`.
    pub fn postings_list(&self, offset: u64) -> Result<ListPostings<'_>> {
        let (body, body_offset) = read_section(self.source.as_ref(), offset, POSTINGS)?;
        let mut decoder = Decoder::new(body, body_offset);
        let count = decoder
            .be_u32()
            .map_err(|e| e.in_section(self.source.name(), POSTINGS))?;
        if u64::from(count) * 4 != decoder.remaining() as u64 {
            return Err(decoder
                .error(format!(
                    "{count} references do not fill the {} bytes of the list",
                    decoder.remaining()
                ))
                .in_section(self.source.name(), POSTINGS));
        }
        Ok(ListPostings::new(decoder.rest()))
    }

    /// The series with reference `series_ref`.
    pub fn series(&self, series_ref: SeriesRef) -> Result<SeriesEntry> {
        let source = self.source.as_ref();
        let offset = series_ref
            .checked_mul(SERIES_ALIGNMENT)
            .filter(|offset| {
                *offset >= self.toc.series && *offset < self.toc.postings.max(self.toc.series)
            })
            .ok_or_else(|| Error::Corrupt {
                file: source.name().to_owned(),
                section: SERIES,
                offset: self.toc.series,
                detail: format!("series reference {series_ref} is outside the series section"),
            })?;
        // Read only what the entry needs, so a source holding just the series section works:
        // the length field first (at most 10 bytes, within the section), then the entry.
        let section_end = if self.toc.label_indices > self.toc.series {
            self.toc
                .label_indices
                .min(self.toc.postings.max(self.toc.series))
        } else {
            self.toc.postings
        };
        let head = source.read(offset, section_end.saturating_sub(offset).min(10), SERIES)?;
        let mut head_decoder = Decoder::new(head, offset);
        let length = head_decoder
            .uvarint()
            .map_err(|e| e.in_section(source.name(), SERIES))?;
        let body_offset = head_decoder.offset();
        if body_offset.saturating_add(length).saturating_add(4) > section_end {
            return Err(Error::Corrupt {
                file: source.name().to_owned(),
                section: SERIES,
                offset,
                detail: format!("series entry of {length} bytes runs past the series section"),
            });
        }
        let entry = source.read(body_offset, length + 4, SERIES)?;
        let mut decoder = Decoder::new(entry, body_offset);
        let body = decoder
            .bytes(length as usize)
            .map_err(|e| e.in_section(source.name(), SERIES))?;
        let stored = decoder
            .be_u32()
            .map_err(|e| e.in_section(source.name(), SERIES))?;
        let computed = crc32c(body);
        if stored != computed {
            return Err(Error::Corrupt {
                file: source.name().to_owned(),
                section: SERIES,
                offset,
                detail: format!(
                    "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
                ),
            });
        }
        self.decode_series(body, body_offset)
    }

    fn decode_series(&self, body: &[u8], body_offset: u64) -> Result<SeriesEntry> {
        let source = self.source.as_ref();
        let fail = |error: DecodeError| error.in_section(source.name(), SERIES);
        let mut decoder = Decoder::new(body, body_offset);
        let label_count = decoder.uvarint().map_err(fail)?;
        if label_count > decoder.remaining() as u64 / 2 {
            return Err(fail(
                decoder.error(format!("{label_count} labels cannot fit")),
            ));
        }
        let mut labels: Vec<Label> = Vec::with_capacity(label_count as usize);
        for _ in 0..label_count {
            let at = decoder.offset();
            let name = decoder.uvarint().map_err(fail)?;
            let value = decoder.uvarint().map_err(fail)?;
            let name = self.symbols.lookup(source, name)?;
            let value = self.symbols.lookup(source, value)?;
            if labels.last().is_some_and(|last| last.name.as_str() >= name) {
                return Err(fail(DecodeError::new(
                    at,
                    format!("label {name:?} is out of order"),
                )));
            }
            labels.push(Label::new(name, value));
        }
        let chunk_count = decoder.uvarint().map_err(fail)?;
        if chunk_count > decoder.remaining() as u64 / 3 {
            return Err(fail(
                decoder.error(format!("{chunk_count} chunks cannot fit")),
            ));
        }
        let mut chunks: Vec<ChunkMeta> = Vec::with_capacity(chunk_count as usize);
        for _ in 0..chunk_count {
            let chunk = match chunks.last() {
                None => {
                    let min_time = decoder.varint().map_err(fail)?;
                    let max_time = min_time.wrapping_add(decoder.uvarint().map_err(fail)? as i64);
                    let chunk_ref = decoder.uvarint().map_err(fail)?;
                    ChunkMeta {
                        min_time,
                        max_time,
                        chunk_ref,
                    }
                }
                Some(previous) => {
                    let min_time = previous
                        .max_time
                        .wrapping_add(decoder.uvarint().map_err(fail)? as i64);
                    let max_time = min_time.wrapping_add(decoder.uvarint().map_err(fail)? as i64);
                    let chunk_ref = previous
                        .chunk_ref
                        .wrapping_add(decoder.varint().map_err(fail)? as u64);
                    ChunkMeta {
                        min_time,
                        max_time,
                        chunk_ref,
                    }
                }
            };
            chunks.push(chunk);
        }
        Ok(SeriesEntry {
            labels: Labels::from_sorted(labels),
            chunks,
        })
    }
}

/// Decodes one postings offset table entry: name, value and postings offset.
fn decode_entry<'a>(
    decoder: &mut Decoder<'a>,
) -> crate::encoding::DecodeResult<(&'a str, &'a str, u64)> {
    let start = decoder.offset();
    let key_count = decoder.uvarint()?;
    if key_count != 2 {
        return Err(DecodeError::new(
            start,
            format!("entry has {key_count} keys, expected 2"),
        ));
    }
    let name = decoder.uvarint_str()?;
    let value = decoder.uvarint_str()?;
    let offset = decoder.uvarint()?;
    Ok((name, value, offset))
}

/// Reads the postings offset table at `offset`, keeping every name with every 32nd value and
/// the last; checks the entries are sorted. Returns the sample and the end of the entries.
fn load_postings_table(
    source: &dyn ByteSource,
    offset: u64,
) -> Result<(BTreeMap<String, Vec<SampledValue>>, u64)> {
    let (body, body_offset) = read_section(source, offset, TABLE)?;
    let mut decoder = Decoder::new(body, body_offset);
    let count = decoder
        .be_u32()
        .map_err(|e| e.in_section(source.name(), TABLE))?;
    let mut table: BTreeMap<String, Vec<SampledValue>> = BTreeMap::new();
    let mut previous: Option<(&str, &str, u64)> = None;
    let mut values_of_name = 0usize;
    for _ in 0..count {
        let entry_offset = decoder.offset();
        let (name, value, _) =
            decode_entry(&mut decoder).map_err(|e| e.in_section(source.name(), TABLE))?;
        let same_name = previous.is_some_and(|(last_name, _, _)| last_name == name);
        if let Some((last_name, last_value, last_offset)) = previous {
            if (last_name, last_value) >= (name, value) {
                return Err(Error::Corrupt {
                    file: source.name().to_owned(),
                    section: TABLE,
                    offset: entry_offset,
                    detail: format!(
                        "entry {name}={value:?} is not above {last_name}={last_value:?}"
                    ),
                });
            }
            if !same_name && !(values_of_name - 1).is_multiple_of(SAMPLING_FACTOR) {
                // Keep the last value of the previous name.
                push_sample(&mut table, last_name, last_value, last_offset);
            }
        }
        values_of_name = if same_name { values_of_name + 1 } else { 1 };
        if (values_of_name - 1).is_multiple_of(SAMPLING_FACTOR) {
            push_sample(&mut table, name, value, entry_offset);
        }
        previous = Some((name, value, entry_offset));
    }
    if let Some((last_name, last_value, last_offset)) = previous
        && !(values_of_name - 1).is_multiple_of(SAMPLING_FACTOR)
    {
        push_sample(&mut table, last_name, last_value, last_offset);
    }
    Ok((table, decoder.offset()))
}

fn push_sample(
    table: &mut BTreeMap<String, Vec<SampledValue>>,
    name: &str,
    value: &str,
    entry_offset: u64,
) {
    let sample = SampledValue {
        value: value.to_owned(),
        entry_offset,
    };
    match table.get_mut(name) {
        Some(samples) => samples.push(sample),
        None => {
            table.insert(name.to_owned(), vec![sample]);
        }
    }
}
