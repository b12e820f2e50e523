//! The index-header: the few sections of a block's `index` needed to resolve postings and series
//! labels, fetched with ranged reads and kept in `<data-dir>/<ULID>/index-header`.
//!
//! The file has Thanos' binary index-header layout (version 1, all integers big-endian): the
//! symbol table and the postings offset table copied verbatim from the remote index, the index's
//! TOC right after the table (as in the copied index tail), and a checked trailer:
//!
//! ```text
//! u32 magic 0xBAAAD792 | u8 1 | u8 index version 2 | u64 postings offset table offset in index |
//! symbol table | postings offset table | index TOC (52 B) |
//! u64 symbols offset | u64 postings offset table offset | u32 CRC32C of those 16 bytes
//! ```
//!
//! The loaded header maps the file read-only and keeps in memory only a sample of it, as Thanos'
//! binary reader does: the file offset of every 32nd symbol, and per label name every 32nd value
//! (and the last) with its entry's file offset and postings offset. A symbol, the values of a
//! name or the end of a postings list are decoded from the mapped file on demand. The whole file
//! is checked (checksums, order, bounds) when loaded, and the pages read then are given back, so
//! that a loaded header costs little more than its samples until queries touch it.

use std::ops::Range;
use std::path::Path;

use memmap2::{Advice, Mmap, UncheckedAdvice};
use tsdb_block::encoding::{Decoder, Encoder, crc32c};
use tsdb_block::index::{FORMAT_V2, MAGIC, TOC_LEN, Toc};

use crate::error::{Error, Result};

const FILE_MAGIC: u32 = 0xBAAA_D792;
const FILE_VERSION: u8 = 1;
/// Magic, format version, index version, original postings offset table offset.
const HEADER_LEN: u64 = 14;
/// Symbols offset, postings offset table offset, CRC32C of both.
const TRAILER_LEN: usize = 20;

/// The raw sections of an index needed by [`IndexHeader`].
#[derive(Debug, Clone)]
pub(crate) struct HeaderBytes {
    pub(crate) toc: Toc,
    pub(crate) symbols: Vec<u8>,
    pub(crate) table: Vec<u8>,
}

/// One symbol in this many, and one value of a label name in this many, is kept in memory.
const SAMPLING: usize = 32;

/// A loaded index-header: the mapped file and samples of it.
pub(crate) struct IndexHeader {
    pub(crate) toc: Toc,
    file: Mmap,
    symbol_count: usize,
    /// File offset of every [`SAMPLING`]th symbol.
    symbol_samples: Vec<usize>,
    /// File offset just past the last symbol.
    symbols_end: usize,
    /// Label names in table order (sorted), with their sampled values.
    names: Vec<(String, NameIndex)>,
    /// Approximate memory held, bytes (not counting the mapped file).
    pub(crate) size_bytes: usize,
}

impl std::fmt::Debug for IndexHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexHeader")
            .field("toc", &self.toc)
            .field("file_len", &self.file.len())
            .field("symbols", &self.symbol_count)
            .field("names", &self.names.len())
            .field("size_bytes", &self.size_bytes)
            .finish()
    }
}

/// Most slots of a [`SymbolMemo`] (a power of two).
const MEMO_SLOTS: usize = 4096;

/// Symbols of one [`IndexHeader`] remembered by reference, direct-mapped: the series entries of
/// one selection name the same few label names and values over and over, and decoding a
/// symbol walks up to [`SAMPLING`] - 1 others from the nearest sample. A slot holds the last
/// symbol whose reference maps to it, so memory stays fixed whatever the symbol count.
pub(crate) struct SymbolMemo<'a> {
    header: &'a IndexHeader,
    /// `(reference, symbol)`; `u64::MAX` marks an empty slot.
    slots: Box<[(u64, &'a str)]>,
}

impl<'a> SymbolMemo<'a> {
    /// The symbol with ordinal `reference`, as [`IndexHeader::symbol`] gives it.
    pub(crate) fn symbol(&mut self, reference: u64) -> Option<&'a str> {
        // The slot count is a power of two, so the mask keeps the index in range.
        let slot = (reference as usize) & (self.slots.len() - 1);
        let (known, symbol) = self.slots[slot];
        if known == reference && reference != u64::MAX {
            return Some(symbol);
        }
        let symbol = self.header.symbol(reference)?;
        self.slots[slot] = (reference, symbol);
        Some(symbol)
    }
}

/// The sampled postings offset table entries of one label name.
#[derive(Debug)]
struct NameIndex {
    /// Every [`SAMPLING`]th value and the last one, in table order.
    samples: Vec<ValueSample>,
    /// File offset just past the name's last entry.
    entries_end: usize,
    /// Where the name's last postings list ends: the next list's start.
    postings_end: u64,
}

#[derive(Debug)]
struct ValueSample {
    value: String,
    /// File offset of the table entry.
    entry_at: usize,
    /// Offset of the postings list in the index.
    postings: u64,
}

/// One postings offset table entry decoded from the file.
struct TableEntry<'a> {
    name: &'a str,
    value: &'a str,
    postings: u64,
}

fn corrupt(section: &'static str, offset: u64, detail: impl Into<String>) -> tsdb_block::Error {
    tsdb_block::Error::Corrupt {
        file: "index".to_owned(),
        section,
        offset,
        detail: detail.into(),
    }
}

/// The byte ranges of the index a header is built from, once the TOC is known.
pub(crate) fn section_ranges(toc: &Toc, index_size: u64) -> [Range<u64>; 2] {
    let toc_start = index_size.saturating_sub(TOC_LEN);
    [
        toc.symbols..toc.series.max(toc.symbols),
        toc.postings_table..toc_start.max(toc.postings_table),
    ]
}

/// Checks the first 5 bytes of an index and decodes its TOC (the last 52 bytes).
pub(crate) fn decode_start(head: &[u8], tail: &[u8], index_size: u64) -> tsdb_block::Result<Toc> {
    if head.len() < 5 {
        return Err(corrupt("header", 0, "index is too short"));
    }
    let magic = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if magic != MAGIC {
        return Err(corrupt(
            "header",
            0,
            format!("invalid magic number {magic:#010x}"),
        ));
    }
    if head[4] != FORMAT_V2 {
        return Err(corrupt(
            "header",
            4,
            format!("unsupported index format {}", head[4]),
        ));
    }
    Toc::decode(tail, index_size)
}

impl HeaderBytes {
    /// The local file's bytes, in Thanos' binary index-header layout (version 1).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let toc = self.toc.encode();
        let mut encoder =
            Encoder::with_capacity(self.symbols.len() + self.table.len() + toc.len() + 40);
        encoder.put_be_u32(FILE_MAGIC);
        encoder.put_u8(FILE_VERSION);
        encoder.put_u8(FORMAT_V2);
        encoder.put_be_u64(self.toc.postings_table);
        encoder.put_bytes(&self.symbols);
        encoder.put_bytes(&self.table);
        // The index's own TOC follows the postings offset table, as in the copied index tail.
        encoder.put_bytes(&toc);
        let trailer = encoder.len();
        encoder.put_be_u64(HEADER_LEN);
        encoder.put_be_u64(HEADER_LEN + self.symbols.len() as u64);
        encoder.put_crc32c_since(trailer);
        encoder.into_vec()
    }

    /// Parses a local file written by [`Self::encode`] (or by Thanos).
    #[cfg(test)]
    pub(crate) fn decode(bytes: &[u8]) -> tsdb_block::Result<Self> {
        let layout = layout(bytes)?;
        Ok(Self {
            toc: layout.toc,
            symbols: bytes[layout.symbols].to_vec(),
            table: bytes[layout.table].to_vec(),
        })
    }

    /// Writes the local file atomically (temporary file, then rename).
    pub(crate) fn write(&self, path: &Path) -> Result<()> {
        let temporary = path.with_extension("tmp");
        let local = |source| Error::LocalFile {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(local)?;
        }
        std::fs::write(&temporary, self.encode()).map_err(local)?;
        std::fs::rename(&temporary, path).map_err(local)
    }
}

/// Where the sections of a local index-header file lie.
struct Layout {
    toc: Toc,
    symbols: Range<usize>,
    table: Range<usize>,
}

/// Checks a local index-header file's frame and finds its sections.
fn layout(bytes: &[u8]) -> tsdb_block::Result<Layout> {
    let fail = |e: tsdb_block::encoding::DecodeError| e.in_section("index-header", "file");
    let bad = |detail: &str| corrupt("index-header", 0, detail);
    if bytes.len() < HEADER_LEN as usize + TRAILER_LEN + TOC_LEN as usize {
        return Err(bad("file too short"));
    }
    let mut decoder = Decoder::new(bytes, 0);
    if decoder.be_u32().map_err(fail)? != FILE_MAGIC
        || decoder.u8().map_err(fail)? != FILE_VERSION
        || decoder.u8().map_err(fail)? != FORMAT_V2
    {
        return Err(bad("not a version 1 index-header of a v2 index"));
    }
    let original_table_offset = decoder.be_u64().map_err(fail)?;
    let trailer_at = bytes.len() - TRAILER_LEN;
    let trailer = &bytes[trailer_at..];
    if crc32c(&trailer[..16]).to_be_bytes() != trailer[16..] {
        return Err(bad("trailer checksum mismatch"));
    }
    let mut decoder = Decoder::new(trailer, trailer_at as u64);
    let symbols_at = decoder.be_u64().map_err(fail)?;
    let table_at = decoder.be_u64().map_err(fail)?;
    let (Ok(symbols_at), Ok(table_at)) = (usize::try_from(symbols_at), usize::try_from(table_at))
    else {
        return Err(bad("section offsets out of range"));
    };
    if symbols_at != HEADER_LEN as usize
        || table_at < symbols_at
        || table_at + (TOC_LEN as usize) > trailer_at
    {
        return Err(bad("section offsets out of range"));
    }
    let toc_at = trailer_at - TOC_LEN as usize;
    let index_size = original_table_offset + (trailer_at - table_at) as u64;
    let toc = Toc::decode(&bytes[toc_at..trailer_at], index_size)?;
    if toc.postings_table != original_table_offset {
        return Err(bad("postings offset table offset disagrees with the toc"));
    }
    Ok(Layout {
        toc,
        symbols: symbols_at..table_at,
        table: table_at..toc_at,
    })
}

/// `u32 len | body | u32 crc` at the start of `bytes`; the body.
fn section_body<'a>(
    bytes: &'a [u8],
    offset: u64,
    section: &'static str,
) -> tsdb_block::Result<&'a [u8]> {
    let mut decoder = Decoder::new(bytes, offset);
    let length = decoder
        .be_u32()
        .map_err(|e| e.in_section("index", section))?;
    let body = decoder
        .bytes(length as usize)
        .map_err(|e| e.in_section("index", section))?;
    let stored = decoder
        .be_u32()
        .map_err(|e| e.in_section("index", section))?;
    if stored != crc32c(body) {
        return Err(corrupt(section, offset, "checksum mismatch"));
    }
    Ok(body)
}

fn decode_entry<'a>(decoder: &mut Decoder<'a>) -> tsdb_block::Result<TableEntry<'a>> {
    let fail =
        |e: tsdb_block::encoding::DecodeError| e.in_section("index", "postings offset table");
    let at = decoder.offset();
    if decoder.uvarint().map_err(fail)? != 2 {
        return Err(corrupt(
            "postings offset table",
            at,
            "entry does not have 2 keys",
        ));
    }
    let name = decoder.uvarint_str().map_err(fail)?;
    let value = decoder.uvarint_str().map_err(fail)?;
    let postings = decoder.uvarint().map_err(fail)?;
    Ok(TableEntry {
        name,
        value,
        postings,
    })
}

impl IndexHeader {
    /// Maps the local index-header file at `path` and checks and samples it.
    pub(crate) fn open(path: &Path) -> tsdb_block::Result<Self> {
        let file = std::fs::File::open(path)
            .map_err(|source| tsdb_block::Error::io("open", path, source))?;
        // SAFETY: index-header files are written under a temporary name and renamed into place
        // complete, and never modified afterwards (a rebuilt header is a new file), which is
        // the condition for mapping them.
        let map = unsafe { Mmap::map(&file) }
            .map_err(|source| tsdb_block::Error::io("mmap", path, source))?;
        let header = Self::parse(map)?;
        // Queries read the file at random places; the pages read while checking it are not
        // needed until then.
        let _ = header.file.advise(Advice::Random);
        // SAFETY: the mapping is read-only and file-backed: dropping its pages only makes the
        // next access read them from the file again.
        let _ = unsafe { header.file.unchecked_advise(UncheckedAdvice::DontNeed) };
        Ok(header)
    }

    /// Checks the mapped file and samples its symbol table and postings offset table.
    fn parse(file: Mmap) -> tsdb_block::Result<Self> {
        let layout = layout(&file)?;
        let toc = layout.toc;

        let symbols_body =
            section_body(&file[layout.symbols.clone()], toc.symbols, "symbol table")?;
        let symbols_body_at = layout.symbols.start + 4;
        let fail = |e: tsdb_block::encoding::DecodeError| e.in_section("index", "symbol table");
        let mut decoder = Decoder::new(symbols_body, symbols_body_at as u64);
        let symbol_count = decoder.be_u32().map_err(fail)? as usize;
        if symbol_count > decoder.remaining() {
            return Err(corrupt(
                "symbol table",
                toc.symbols,
                format!("{symbol_count} symbols cannot fit"),
            ));
        }
        let mut symbol_samples = Vec::with_capacity(symbol_count / SAMPLING + 1);
        let mut previous: Option<&str> = None;
        for ordinal in 0..symbol_count {
            let at = decoder.offset();
            if ordinal.is_multiple_of(SAMPLING) {
                symbol_samples.push(at as usize);
            }
            let symbol = decoder.uvarint_str().map_err(fail)?;
            if previous.is_some_and(|previous| previous >= symbol) {
                return Err(corrupt("symbol table", at, "symbols are not sorted"));
            }
            previous = Some(symbol);
        }
        let symbols_end = decoder.offset() as usize;

        let table_body = section_body(
            &file[layout.table.clone()],
            toc.postings_table,
            "postings offset table",
        )?;
        let fail =
            |e: tsdb_block::encoding::DecodeError| e.in_section("index", "postings offset table");
        let mut decoder = Decoder::new(table_body, (layout.table.start + 4) as u64);
        let count = decoder.be_u32().map_err(fail)?;
        if count as usize > decoder.remaining() {
            return Err(corrupt(
                "postings offset table",
                toc.postings_table,
                format!("{count} entries cannot fit"),
            ));
        }
        let mut names: Vec<(String, NameIndex)> = Vec::new();
        let mut last: Option<(&str, &str, usize, u64)> = None;
        let mut in_name = 0usize;
        for _ in 0..count {
            let at = decoder.offset() as usize;
            let entry = decode_entry(&mut decoder)?;
            if entry.postings < toc.postings || entry.postings >= toc.postings_table {
                return Err(corrupt(
                    "postings offset table",
                    at as u64,
                    format!(
                        "postings offset {} outside the postings section",
                        entry.postings
                    ),
                ));
            }
            if let Some((name, value, _, postings)) = last
                && ((name, value) >= (entry.name, entry.value) || postings >= entry.postings)
            {
                return Err(corrupt(
                    "postings offset table",
                    at as u64,
                    "entries are not in label and postings order",
                ));
            }
            if last.is_none_or(|(name, ..)| name != entry.name) {
                if let Some((_, index)) = names.last_mut() {
                    index.close(last, at, entry.postings);
                }
                names.push((
                    entry.name.to_owned(),
                    NameIndex {
                        samples: Vec::new(),
                        entries_end: at,
                        postings_end: entry.postings,
                    },
                ));
                in_name = 0;
            }
            if in_name.is_multiple_of(SAMPLING)
                && let Some((_, index)) = names.last_mut()
            {
                index.samples.push(ValueSample {
                    value: entry.value.to_owned(),
                    entry_at: at,
                    postings: entry.postings,
                });
            }
            in_name += 1;
            last = Some((entry.name, entry.value, at, entry.postings));
        }
        let table_end = decoder.offset() as usize;
        if let Some((_, index)) = names.last_mut() {
            index.close(last, table_end, toc.postings_table);
        }
        let size_bytes = symbol_samples.len() * 8
            + names
                .iter()
                .map(|(name, index)| {
                    name.len()
                        + 64
                        + index
                            .samples
                            .iter()
                            .map(|sample| sample.value.len() + 40)
                            .sum::<usize>()
                })
                .sum::<usize>();
        Ok(Self {
            toc,
            file,
            symbol_count,
            symbol_samples,
            symbols_end,
            names,
            size_bytes,
        })
    }

    /// The symbol with ordinal `reference`, decoded from the file.
    pub(crate) fn symbol(&self, reference: u64) -> Option<&str> {
        let ordinal = usize::try_from(reference).ok()?;
        if ordinal >= self.symbol_count {
            return None;
        }
        let start = *self.symbol_samples.get(ordinal / SAMPLING)?;
        let bytes = self.file.get(start..self.symbols_end)?;
        let mut decoder = Decoder::new(bytes, start as u64);
        for _ in 0..ordinal % SAMPLING {
            let length = decoder.uvarint_len().ok()?;
            decoder.skip(length).ok()?;
        }
        decoder.uvarint_str().ok()
    }

    /// A [`SymbolMemo`] over this header, for the symbol lookups of one selection.
    pub(crate) fn symbol_memo(&self) -> SymbolMemo<'_> {
        // About one slot per two symbols of a small block: a collision costs one decode.
        let slots = (self.symbol_count / 2)
            .next_power_of_two()
            .clamp(16, MEMO_SLOTS);
        SymbolMemo {
            header: self,
            slots: vec![(u64::MAX, ""); slots].into_boxed_slice(),
        }
    }

    fn name_index(&self, name: &str) -> Option<&NameIndex> {
        self.names
            .binary_search_by(|(known, _)| known.as_str().cmp(name))
            .ok()
            .map(|position| &self.names[position].1)
    }

    /// Every label name, sorted.
    pub(crate) fn label_names(&self) -> impl Iterator<Item = &str> {
        self.names
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| !name.is_empty())
    }

    /// Whether some series of the block has a label `name`.
    pub(crate) fn has_label_name(&self, name: &str) -> bool {
        self.name_index(name).is_some()
    }

    /// Decodes the table entries in the file range `from..to`, calling `visit` until it
    /// returns `false`. The file was checked when loaded, so a failure here means it changed
    /// underneath: logged, and the entries decoded so far stand.
    fn visit_entries(&self, from: usize, to: usize, mut visit: impl FnMut(TableEntry<'_>) -> bool) {
        let Some(bytes) = self.file.get(from..to) else {
            tracing::error!(from, to, "index-header entries out of the file");
            return;
        };
        let mut decoder = Decoder::new(bytes, from as u64);
        while !decoder.is_empty() {
            match decode_entry(&mut decoder) {
                Ok(entry) => {
                    if !visit(entry) {
                        return;
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "index-header changed after it was loaded");
                    return;
                }
            }
        }
    }

    /// Every value of `name` with the offset of its postings list, sorted by value, decoded
    /// from the file.
    pub(crate) fn values(&self, name: &str) -> Vec<(String, u64)> {
        let Some(index) = self.name_index(name) else {
            return Vec::new();
        };
        let Some(first) = index.samples.first() else {
            return Vec::new();
        };
        let mut values = Vec::new();
        self.visit_entries(first.entry_at, index.entries_end, |entry| {
            values.push((entry.value.to_owned(), entry.postings));
            true
        });
        values
    }

    /// The byte range of the postings list starting at `offset` (its length field, body, CRC
    /// and any alignment padding): up to the next list's start.
    pub(crate) fn list_range(&self, offset: u64) -> Range<u64> {
        let after_name = self.names.partition_point(|(_, index)| {
            index
                .samples
                .first()
                .is_some_and(|first| first.postings <= offset)
        });
        let Some((_, index)) = after_name
            .checked_sub(1)
            .map(|position| &self.names[position])
        else {
            return offset..offset;
        };
        let after_sample = index
            .samples
            .partition_point(|sample| sample.postings <= offset);
        let Some(sample) = after_sample
            .checked_sub(1)
            .and_then(|position| index.samples.get(position))
        else {
            return offset..offset;
        };
        let mut end = index.postings_end;
        self.visit_entries(sample.entry_at, index.entries_end, |entry| {
            if entry.postings > offset {
                end = entry.postings;
                false
            } else {
                true
            }
        });
        offset..end.max(offset)
    }
}

impl NameIndex {
    /// Ends a name's entries at file offset `end`: its last value is sampled too, and its last
    /// list ends at `postings_end`.
    fn close(&mut self, last: Option<(&str, &str, usize, u64)>, end: usize, postings_end: u64) {
        if let Some((_, value, at, postings)) = last
            && self
                .samples
                .last()
                .is_none_or(|sample| sample.entry_at != at)
        {
            self.samples.push(ValueSample {
                value: value.to_owned(),
                entry_at: at,
                postings,
            });
        }
        self.entries_end = end;
        self.postings_end = postings_end;
    }
}

/// Decodes a postings list fetched from `list_range`: the series references.
pub(crate) fn decode_postings(bytes: &[u8], offset: u64) -> tsdb_block::Result<Vec<u64>> {
    let body = section_body(bytes, offset, "postings")?;
    let mut decoder = Decoder::new(body, offset + 4);
    let count = decoder
        .be_u32()
        .map_err(|e| e.in_section("index", "postings"))?;
    if u64::from(count) * 4 != decoder.remaining() as u64 {
        return Err(corrupt(
            "postings",
            offset,
            format!("{count} references do not fill the list"),
        ));
    }
    let mut refs = Vec::with_capacity(count as usize);
    for _ in 0..count {
        refs.push(u64::from(
            decoder
                .be_u32()
                .map_err(|e| e.in_section("index", "postings"))?,
        ));
    }
    Ok(refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block with more symbols and values per name than one sample covers: every symbol,
    /// every value and every postings list is found through the samples.
    #[test]
    fn sampled_header_finds_every_symbol_value_and_postings_list() {
        use prom_model::Labels;
        use tsdb_block::writer::{BlockWriter, symbols_of};

        let dir = tempfile::tempdir().unwrap();
        let mut series: Vec<Labels> = (0..300)
            .map(|index| {
                Labels::from_pairs([
                    ("__name__", format!("metric_{}", index % 7)),
                    ("instance", format!("host-{index:04}")),
                    ("zone", format!("z{}", index % 3)),
                ])
            })
            .collect();
        series.sort();
        let symbols: Vec<String> = symbols_of(series.iter()).into_iter().collect();
        let mut writer = BlockWriter::create(dir.path(), symbols.clone()).unwrap();
        for labels in &series {
            writer
                .add_series_samples(labels, &[(1000, 1.0), (2000, 2.0)])
                .unwrap();
        }
        let (_, block) = writer.finish().unwrap();
        let index = std::fs::read(block.join("index")).unwrap();
        let size = index.len() as u64;
        let toc =
            decode_start(&index[..5], &index[index.len() - TOC_LEN as usize..], size).unwrap();
        let [symbol_range, table_range] = section_ranges(&toc, size);
        let slice = |range: Range<u64>| index[range.start as usize..range.end as usize].to_vec();
        let path = dir.path().join("index-header");
        HeaderBytes {
            toc,
            symbols: slice(symbol_range),
            table: slice(table_range),
        }
        .write(&path)
        .unwrap();
        let header = IndexHeader::open(&path).unwrap();

        for (ordinal, symbol) in symbols.iter().enumerate() {
            assert_eq!(header.symbol(ordinal as u64), Some(symbol.as_str()));
        }
        assert_eq!(header.symbol(symbols.len() as u64), None);
        // Through the memo: every symbol in a scattered order, each right after a reference
        // sharing its slot (a symbol or past the end), so slots are taken over, three times.
        let mut memo = header.symbol_memo();
        let slots = memo.slots.len() as u64;
        assert!(slots < symbols.len() as u64, "{slots} slots");
        let count = symbols.len() as u64;
        for round in 0..3 {
            for step in 0..count {
                let ordinal = (step * 7 + round) % count;
                let sharing = (ordinal + slots) % (count + slots);
                assert_eq!(memo.symbol(sharing), header.symbol(sharing));
                let expected = Some(symbols[ordinal as usize].as_str());
                assert_eq!(memo.symbol(ordinal), expected);
            }
        }
        assert_eq!(memo.symbol(u64::MAX), None);
        assert_eq!(memo.symbol(count), None);
        assert_eq!(
            header.label_names().collect::<Vec<_>>(),
            ["__name__", "instance", "zone"]
        );
        let instances = header.values("instance");
        assert_eq!(instances.len(), 300);
        assert!(instances.windows(2).all(|pair| pair[0].0 < pair[1].0));
        assert!(header.values("missing").is_empty() && !header.has_label_name("missing"));
        for name in ["", "__name__", "instance", "zone"] {
            for (value, offset) in header.values(name) {
                let range = header.list_range(offset);
                let refs = decode_postings(&slice(range), offset).unwrap();
                let expected = series
                    .iter()
                    .filter(|labels| name.is_empty() || labels.get(name) == Some(value.as_str()))
                    .count();
                assert_eq!(refs.len(), expected, "{name}={value}");
            }
        }
        assert!(header.size_bytes < symbols.iter().map(String::len).sum::<usize>());
    }

    #[test]
    fn local_file_round_trips_and_refuses_damage() {
        let toc = Toc {
            symbols: 5,
            series: 40,
            label_indices: 100,
            label_indices_table: 120,
            postings: 100,
            postings_table: 200,
        };
        let bytes = HeaderBytes {
            toc,
            symbols: vec![1; 35],
            table: vec![2; 30],
        };
        let encoded = bytes.encode();
        assert_eq!(&encoded[..4], &[0xBA, 0xAA, 0xD7, 0x92]);
        let decoded = HeaderBytes::decode(&encoded).unwrap();
        assert_eq!(decoded.toc, toc);
        assert_eq!(
            (decoded.symbols, decoded.table),
            (bytes.symbols, bytes.table)
        );
        let mut damaged = encoded.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert!(HeaderBytes::decode(&damaged).is_err());
        assert!(HeaderBytes::decode(&encoded[..20]).is_err());
    }
}
