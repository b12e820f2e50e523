//! Streaming index writer.
//!
//! The symbol table comes first in the file, so the writer takes every symbol up front (a
//! compactor takes the union of its inputs' symbol tables; [`crate::writer::BlockWriter`] asks its
//! caller for them). Series entries are then written one at a time, in label order. Postings are
//! produced at the end from an external sort (see `spill`), so memory holds the symbols, one
//! series and a fixed-size sort buffer, whatever the number of series.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use prom_model::Labels;

use super::spill::PostingsSpill;
use super::{ChunkMeta, FORMAT_V2, MAGIC, SERIES_ALIGNMENT, Toc};
use crate::encoding::{Encoder, crc32c, uvarint_size};
use crate::error::{Error, Result};
use crate::postings::SeriesRef;

const WRITER: &str = "index writer";
/// Postings records kept in memory before a sorted run is spilled to disk (12 bytes each).
const SPILL_CAPACITY: usize = 1 << 18;
/// A postings list up to this many references is assembled in memory; longer ones are streamed.
const BUFFERED_POSTINGS: usize = 1 << 14;

/// Writes an index file, format v2.
#[derive(Debug)]
pub struct IndexWriter {
    file: IndexFile,
    symbols: Vec<String>,
    toc: Toc,
    spill: PostingsSpill,
    last_labels: Option<Labels>,
    last_chunk_ref: Option<u64>,
    series_count: u64,
    body: Encoder,
}

impl IndexWriter {
    /// Creates the index at `path` and writes its header and symbol table. `symbols` must hold
    /// every label name and value of the series to come; extra symbols are allowed.
    pub fn create(path: &Path, symbols: impl IntoIterator<Item = String>) -> Result<Self> {
        let mut symbols: Vec<String> = symbols.into_iter().collect();
        symbols.sort_unstable();
        symbols.dedup();
        let spill_path = path.with_extension("postings-spill.tmp");
        let mut writer = Self {
            file: IndexFile::create(path)?,
            symbols,
            toc: Toc::default(),
            spill: PostingsSpill::new(spill_path, SPILL_CAPACITY),
            last_labels: None,
            last_chunk_ref: None,
            series_count: 0,
            body: Encoder::new(),
        };
        let mut header = Encoder::new();
        header.put_be_u32(MAGIC);
        header.put_u8(FORMAT_V2);
        writer.file.write(header.as_slice())?;
        writer.write_symbols()?;
        writer.toc.series = writer.file.position;
        Ok(writer)
    }

    fn write_symbols(&mut self) -> Result<()> {
        self.toc.symbols = self.file.position;
        let body_len: u64 = 4 + self
            .symbols
            .iter()
            .map(|symbol| (uvarint_size(symbol.len() as u64) + symbol.len()) as u64)
            .sum::<u64>();
        write_table(
            &mut self.file,
            "symbol table",
            body_len,
            &self.symbols,
            |out, symbol| out.put_uvarint_str(symbol),
        )
    }

    fn ordinal(&self, symbol: &str) -> Result<u32> {
        self.symbols
            .binary_search_by(|candidate| candidate.as_str().cmp(symbol))
            .map(|index| index as u32)
            .map_err(|_| invalid(format!("{symbol:?} is not in the symbol table")))
    }

    /// Adds the next series; series must come in strictly increasing label order, with chunks
    /// ordered by time, not overlapping, and chunk references above all earlier ones.
    pub fn add_series(&mut self, labels: &Labels, chunks: &[ChunkMeta]) -> Result<SeriesRef> {
        if let Some(last) = &self.last_labels
            && last >= labels
        {
            return Err(invalid(format!(
                "series {labels} does not come after {last}"
            )));
        }
        self.check_chunks(labels, chunks)?;
        self.body.clear();
        self.body.put_uvarint(labels.len() as u64);
        let mut ordinals = Vec::with_capacity(labels.len());
        for label in labels {
            let name = self.ordinal(&label.name)?;
            let value = self.ordinal(&label.value)?;
            ordinals.push((name, value));
            self.body.put_uvarint(u64::from(name));
            self.body.put_uvarint(u64::from(value));
        }
        self.body.put_uvarint(chunks.len() as u64);
        let mut previous: Option<&ChunkMeta> = None;
        for chunk in chunks {
            match previous {
                None => {
                    self.body.put_varint(chunk.min_time);
                    self.body
                        .put_uvarint(chunk.max_time.wrapping_sub(chunk.min_time) as u64);
                    self.body.put_uvarint(chunk.chunk_ref);
                }
                Some(previous) => {
                    self.body
                        .put_uvarint(chunk.min_time.wrapping_sub(previous.max_time) as u64);
                    self.body
                        .put_uvarint(chunk.max_time.wrapping_sub(chunk.min_time) as u64);
                    self.body
                        .put_varint(chunk.chunk_ref.wrapping_sub(previous.chunk_ref) as i64);
                }
            }
            previous = Some(chunk);
        }

        self.file.pad(SERIES_ALIGNMENT)?;
        let series_ref = self.file.position / SERIES_ALIGNMENT;
        let Ok(series_ref32) = u32::try_from(series_ref) else {
            return Err(invalid("index exceeds 64 GiB of series".to_owned()));
        };
        let mut head = Encoder::with_capacity(10);
        head.put_uvarint(self.body.len() as u64);
        self.file.write(head.as_slice())?;
        let checksum = crc32c(self.body.as_slice());
        let body = std::mem::take(&mut self.body);
        self.file.write(body.as_slice())?;
        self.body = body;
        self.file.write(&checksum.to_be_bytes())?;

        self.spill.push([0, 0, series_ref32])?;
        for (name, value) in ordinals {
            self.spill.push([name + 1, value + 1, series_ref32])?;
        }
        if let Some(last) = chunks.last() {
            self.last_chunk_ref = Some(last.chunk_ref);
        }
        self.last_labels = Some(labels.clone());
        self.series_count += 1;
        Ok(series_ref)
    }

    fn check_chunks(&self, labels: &Labels, chunks: &[ChunkMeta]) -> Result<()> {
        let mut last_ref = self.last_chunk_ref;
        let mut last_max: Option<i64> = None;
        for chunk in chunks {
            if chunk.min_time > chunk.max_time {
                return Err(invalid(format!(
                    "series {labels}: chunk min time {} after max time {}",
                    chunk.min_time, chunk.max_time
                )));
            }
            if last_max.is_some_and(|max| chunk.min_time <= max) {
                return Err(invalid(format!(
                    "series {labels}: chunk starting at {} overlaps the previous one",
                    chunk.min_time
                )));
            }
            if last_ref.is_some_and(|previous| chunk.chunk_ref <= previous) {
                return Err(invalid(format!(
                    "series {labels}: chunk ref {} is not above the previous {}",
                    chunk.chunk_ref,
                    last_ref.unwrap_or_default()
                )));
            }
            last_max = Some(chunk.max_time);
            last_ref = Some(chunk.chunk_ref);
        }
        Ok(())
    }

    /// How many series were added.
    pub fn series_count(&self) -> u64 {
        self.series_count
    }

    /// Writes the postings, the postings offset table and the TOC, and syncs the file.
    pub fn finish(mut self) -> Result<()> {
        self.toc.label_indices = self.file.position;
        self.toc.postings = self.file.position;
        let mut records = std::mem::replace(&mut self.spill, PostingsSpill::new(PathBuf::new(), 1))
            .into_sorted()?;
        let mut offsets: Vec<(u32, u32, u64)> = Vec::new();
        let mut list = PostingsListWriter::default();
        if self.series_count == 0 {
            offsets.push((0, 0, list.start(&mut self.file)?));
            list.finish(&mut self.file)?;
        }
        let mut current_key: Option<(u32, u32)> = None;
        while let Some([name, value, series_ref]) = records.next_record()? {
            if current_key != Some((name, value)) {
                if current_key.is_some() {
                    list.finish(&mut self.file)?;
                }
                offsets.push((name, value, list.start(&mut self.file)?));
                current_key = Some((name, value));
            }
            list.push(&mut self.file, series_ref)?;
        }
        if current_key.is_some() {
            list.finish(&mut self.file)?;
        }
        records.remove_file()?;

        self.toc.label_indices_table = self.file.position;
        self.toc.postings_table = self.file.position;
        self.write_postings_offset_table(&offsets)?;
        let toc = self.toc.encode();
        self.file.write(&toc)?;
        self.file.sync()
    }

    fn write_postings_offset_table(&mut self, offsets: &[(u32, u32, u64)]) -> Result<()> {
        let mut body_len: u64 = 4;
        for (name, value, offset) in offsets {
            let name = key_symbol(&self.symbols, *name);
            let value = key_symbol(&self.symbols, *value);
            body_len += 1
                + (uvarint_size(name.len() as u64) + name.len()) as u64
                + (uvarint_size(value.len() as u64) + value.len()) as u64
                + uvarint_size(*offset) as u64;
        }
        let symbols = &self.symbols;
        write_table(
            &mut self.file,
            "postings offset table",
            body_len,
            offsets,
            |out, (name, value, offset)| {
                out.put_uvarint(2);
                out.put_uvarint_str(key_symbol(symbols, *name));
                out.put_uvarint_str(key_symbol(symbols, *value));
                out.put_uvarint(*offset);
            },
        )
    }
}

/// The symbol behind a postings key ordinal: 0 is the empty string, `n` is symbol `n - 1`.
fn key_symbol(symbols: &[String], ordinal_plus_one: u32) -> &str {
    match ordinal_plus_one {
        0 => "",
        ordinal => symbols[ordinal as usize - 1].as_str(),
    }
}

/// Streams a table laid out as the symbol table and the postings offset table are: its length
/// (big-endian u32; `body_len` counts the entry count and the entries as `put` encodes them), the
/// entry count, the entries, then the CRC32-Castagnoli of count and entries. Entries reach the
/// file in pieces of about 64 KiB, so a table never sits in memory whole. A table whose length
/// does not fit the u32 field is refused before anything of it is written.
fn write_table<T>(
    file: &mut IndexFile,
    what: &str,
    body_len: u64,
    entries: &[T],
    mut put: impl FnMut(&mut Encoder, &T),
) -> Result<()> {
    const PIECE: usize = 1 << 16;
    let too_large = || invalid(format!("{what} of {body_len} bytes exceeds 4 GiB"));
    let body_len = u32::try_from(body_len).map_err(|_| too_large())?;
    // Every entry takes at least one byte, so a length that fits means a count that fits.
    let count = u32::try_from(entries.len()).map_err(|_| too_large())?;
    let mut piece = Encoder::with_capacity(PIECE);
    piece.put_be_u32(body_len);
    piece.put_be_u32(count);
    let mut checksum = crc32c(&piece.as_slice()[4..]);
    for entry in entries {
        let start = piece.len();
        put(&mut piece, entry);
        checksum = crc32c::crc32c_append(checksum, &piece.as_slice()[start..]);
        if piece.len() >= PIECE {
            file.write(piece.as_slice())?;
            piece.clear();
        }
    }
    piece.put_be_u32(checksum);
    file.write(piece.as_slice())
}

fn invalid(detail: String) -> Error {
    Error::InvalidInput {
        writer: WRITER,
        detail,
    }
}

/// Writes one postings list: short lists in one piece, long ones streamed and their header
/// patched at the end (the CRC of `count` + refs is combined from the CRC of the refs).
#[derive(Debug, Default)]
struct PostingsListWriter {
    start: u64,
    count: u32,
    buffered: Vec<u8>,
    streaming: bool,
    refs_checksum: u32,
}

impl PostingsListWriter {
    fn start(&mut self, file: &mut IndexFile) -> Result<u64> {
        file.pad(4)?;
        self.start = file.position;
        self.count = 0;
        self.buffered.clear();
        self.streaming = false;
        self.refs_checksum = 0;
        Ok(self.start)
    }

    fn push(&mut self, file: &mut IndexFile, series_ref: u32) -> Result<()> {
        let bytes = series_ref.to_be_bytes();
        self.count += 1;
        self.refs_checksum = crc32c::crc32c_append(self.refs_checksum, &bytes);
        if self.streaming {
            return file.write(&bytes);
        }
        self.buffered.extend_from_slice(&bytes);
        if self.buffered.len() >= BUFFERED_POSTINGS * 4 {
            self.streaming = true;
            file.write(&[0u8; 8])?;
            file.write(&self.buffered)?;
            self.buffered.clear();
        }
        Ok(())
    }

    fn finish(&mut self, file: &mut IndexFile) -> Result<()> {
        let count_bytes = self.count.to_be_bytes();
        let refs_len = self.count as usize * 4;
        let checksum = crc32c::crc32c_combine(crc32c(&count_bytes), self.refs_checksum, refs_len);
        let length = (4 + refs_len) as u32;
        let mut header = [0u8; 8];
        header[..4].copy_from_slice(&length.to_be_bytes());
        header[4..].copy_from_slice(&count_bytes);
        if self.streaming {
            file.write(&checksum.to_be_bytes())?;
            file.patch(self.start, &header)
        } else {
            file.write(&header)?;
            file.write(&self.buffered)?;
            file.write(&checksum.to_be_bytes())
        }
    }
}

/// A buffered file that knows its write position.
#[derive(Debug)]
struct IndexFile {
    path: PathBuf,
    writer: BufWriter<File>,
    position: u64,
}

impl IndexFile {
    fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(|source| Error::io("create", path, source))?;
        Ok(Self {
            path: path.to_owned(),
            writer: BufWriter::with_capacity(1 << 17, file),
            position: 0,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.writer
            .write_all(bytes)
            .map_err(|source| Error::io("write", &self.path, source))?;
        self.position += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self, alignment: u64) -> Result<()> {
        let remainder = self.position % alignment;
        if remainder != 0 {
            let zeros = [0u8; 16];
            self.write(&zeros[..(alignment - remainder) as usize])?;
        }
        Ok(())
    }

    fn patch(&mut self, at: u64, bytes: &[u8]) -> Result<()> {
        let io = |source| Error::io("write", &self.path, source);
        self.writer.seek(SeekFrom::Start(at)).map_err(io)?;
        self.writer.write_all(bytes).map_err(io)?;
        self.writer
            .seek(SeekFrom::Start(self.position))
            .map_err(io)?;
        Ok(())
    }

    fn sync(mut self) -> Result<()> {
        self.writer
            .flush()
            .map_err(|source| Error::io("write", &self.path, source))?;
        self.writer
            .get_ref()
            .sync_all()
            .map_err(|source| Error::io("sync", &self.path, source))
    }
}
