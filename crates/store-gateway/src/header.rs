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
//! The parsed header keeps every label value with its postings offset, so that a matcher is
//! resolved to postings byte ranges without touching the bucket.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

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

/// A parsed index-header.
#[derive(Debug)]
pub(crate) struct IndexHeader {
    pub(crate) toc: Toc,
    symbols: Vec<String>,
    /// Label name → its values, sorted, with the offset of their postings list.
    postings: BTreeMap<String, Vec<(String, u64)>>,
    /// Every postings list start, sorted: a list ends where the next one starts.
    list_starts: Vec<u64>,
    /// Approximate memory held, bytes.
    pub(crate) size_bytes: usize,
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
    pub(crate) fn decode(bytes: &[u8]) -> tsdb_block::Result<Self> {
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
        let (Ok(symbols_at), Ok(table_at)) =
            (usize::try_from(symbols_at), usize::try_from(table_at))
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
        Ok(Self {
            toc,
            symbols: bytes[symbols_at..table_at].to_vec(),
            table: bytes[table_at..toc_at].to_vec(),
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

impl IndexHeader {
    /// Parses the symbol table and the postings offset table.
    pub(crate) fn parse(bytes: &HeaderBytes) -> tsdb_block::Result<Self> {
        let symbols_body = section_body(&bytes.symbols, bytes.toc.symbols, "symbol table")?;
        let fail = |e: tsdb_block::encoding::DecodeError| e.in_section("index", "symbol table");
        let mut decoder = Decoder::new(symbols_body, bytes.toc.symbols + 4);
        let count = decoder.be_u32().map_err(fail)?;
        if count as usize > decoder.remaining() {
            return Err(corrupt(
                "symbol table",
                bytes.toc.symbols,
                format!("{count} symbols cannot fit"),
            ));
        }
        let mut symbols = Vec::with_capacity(count as usize);
        let mut size_bytes = 0;
        for _ in 0..count {
            let symbol = decoder.uvarint_str().map_err(fail)?;
            size_bytes += symbol.len() + 24;
            symbols.push(symbol.to_owned());
        }

        let table_body = section_body(
            &bytes.table,
            bytes.toc.postings_table,
            "postings offset table",
        )?;
        let fail =
            |e: tsdb_block::encoding::DecodeError| e.in_section("index", "postings offset table");
        let mut decoder = Decoder::new(table_body, bytes.toc.postings_table + 4);
        let count = decoder.be_u32().map_err(fail)?;
        if count as usize > decoder.remaining() {
            return Err(corrupt(
                "postings offset table",
                bytes.toc.postings_table,
                format!("{count} entries cannot fit"),
            ));
        }
        let mut postings: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
        let mut list_starts = Vec::with_capacity(count as usize);
        for _ in 0..count {
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
            let offset = decoder.uvarint().map_err(fail)?;
            if offset < bytes.toc.postings || offset >= bytes.toc.postings_table {
                return Err(corrupt(
                    "postings offset table",
                    at,
                    format!("postings offset {offset} outside the postings section"),
                ));
            }
            size_bytes += name.len() + value.len() + 40;
            list_starts.push(offset);
            match postings.get_mut(name) {
                Some(values) => values.push((value.to_owned(), offset)),
                None => {
                    postings.insert(name.to_owned(), vec![(value.to_owned(), offset)]);
                }
            }
        }
        for values in postings.values_mut() {
            values.sort();
        }
        list_starts.sort_unstable();
        list_starts.dedup();
        Ok(Self {
            toc: bytes.toc,
            symbols,
            postings,
            list_starts,
            size_bytes,
        })
    }

    /// The symbol with ordinal `reference`.
    pub(crate) fn symbol(&self, reference: u64) -> Option<&str> {
        self.symbols
            .get(usize::try_from(reference).ok()?)
            .map(String::as_str)
    }

    /// Every label name, sorted.
    pub(crate) fn label_names(&self) -> impl Iterator<Item = &str> {
        self.postings
            .keys()
            .filter(|name| !name.is_empty())
            .map(String::as_str)
    }

    /// Whether some series of the block has a label `name`.
    pub(crate) fn has_label_name(&self, name: &str) -> bool {
        self.postings.contains_key(name)
    }

    /// Every value of `name` with its postings offset, sorted by value.
    pub(crate) fn values(&self, name: &str) -> &[(String, u64)] {
        self.postings.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The byte range of the postings list starting at `offset` (its length field, body, CRC
    /// and any alignment padding).
    pub(crate) fn list_range(&self, offset: u64) -> Range<u64> {
        let index = self.list_starts.partition_point(|start| *start <= offset);
        let end = self
            .list_starts
            .get(index)
            .copied()
            .unwrap_or(self.toc.postings_table);
        offset..end.max(offset)
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
