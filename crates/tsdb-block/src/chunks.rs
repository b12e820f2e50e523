//! Chunk segment files (`chunks/000001`, ...): writing them as Prometheus does and reading chunks
//! back by reference.
//!
//! A segment starts with an 8-byte header (magic `0x85BD40DD`, version 1, three zero bytes), then
//! chunks back to back, each `uvarint len | encoding byte | data | CRC32C(encoding + data)`. The
//! index refers to a chunk by [`ChunkRef`]: the 0-based position of its segment among the block's
//! segment files in the high 32 bits, the byte offset of the chunk's length field in the low 32.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::chunkenc::Encoding;
use crate::encoding::{Decoder, crc32c, uvarint_size};
use crate::error::{Error, Result};

/// Magic number at the start of every segment file.
pub const SEGMENT_MAGIC: u32 = 0x85BD_40DD;
/// Segment format version written and accepted.
pub const SEGMENT_FORMAT_V1: u8 = 1;
/// Size of the segment header.
pub const SEGMENT_HEADER_SIZE: u64 = 8;
/// Default segment size limit: 512 MiB.
pub const DEFAULT_MAX_SEGMENT_SIZE: u64 = 512 * 1024 * 1024;
/// The folder of a block holding the segment files.
pub const CHUNKS_DIR: &str = "chunks";
/// Upstream's allowance for the length field when sizing a chunk (a 32-bit uvarint).
const MAX_CHUNK_LENGTH_FIELD_SIZE: u64 = 5;
/// Encoding byte plus CRC.
const CHUNK_FRAMING_SIZE: u64 = 1 + 4;
/// Buffer in front of each segment file.
const WRITE_BUFFER_SIZE: usize = 1 << 20;

/// A chunk's address in a block: `segment_index << 32 | offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ChunkRef(pub u64);

impl ChunkRef {
    /// The reference of the chunk at `offset` in the block's `segment_index`-th (0-based) segment.
    pub fn new(segment_index: u32, offset: u32) -> Self {
        Self((u64::from(segment_index) << 32) | u64::from(offset))
    }

    /// 0-based position of the segment file among the block's segment files.
    pub fn segment_index(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// Byte offset of the chunk's length field within its segment file.
    pub fn offset(self) -> u32 {
        self.0 as u32
    }
}

impl std::fmt::Display for ChunkRef {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}:{}", self.segment_index(), self.offset())
    }
}

/// A segment file written by a [`SegmentWriter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    /// File name within `chunks/`, e.g. `000001`.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

/// File name of the segment at 0-based position `segment_index`: `000001` for 0.
pub fn segment_file_name(segment_index: u32) -> String {
    format!("{:06}", u64::from(segment_index) + 1)
}

/// The number a segment file name stands for, as upstream recognises segment files: any name
/// that is entirely decimal digits and fits a `u64`.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    if name.is_empty() || !name.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// The segment file names in `chunks_dir`, in the order that gives their indices (ascending by
/// name, as upstream lists them); other files are skipped.
pub fn segment_file_names(chunks_dir: &Path) -> Result<Vec<String>> {
    let entries = fs::read_dir(chunks_dir).map_err(|error| Error::io("list", chunks_dir, error))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| Error::io("list", chunks_dir, error))?;
        if let Some(name) = entry.file_name().to_str()
            && parse_segment_file_name(name).is_some()
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Checks the 8-byte header at the start of a segment file.
pub fn check_segment_header(segment: &[u8], file_name: &str) -> Result<()> {
    let corrupt = |detail: String| Error::Corrupt {
        file: file_name.to_owned(),
        section: "segment header",
        offset: 0,
        detail,
    };
    let Some(header) = segment.get(..SEGMENT_HEADER_SIZE as usize) else {
        return Err(corrupt(format!(
            "file of {} bytes is shorter than the {SEGMENT_HEADER_SIZE}-byte header",
            segment.len()
        )));
    };
    let magic = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    if magic != SEGMENT_MAGIC {
        return Err(corrupt(format!(
            "magic {magic:#010x}, want {SEGMENT_MAGIC:#010x}"
        )));
    }
    if header[4] != SEGMENT_FORMAT_V1 {
        return Err(corrupt(format!(
            "format version {}, want {SEGMENT_FORMAT_V1}",
            header[4]
        )));
    }
    Ok(())
}

/// A chunk as framed in a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramedChunk<'a> {
    /// Its encoding.
    pub encoding: Encoding,
    /// Its data (for XOR: the sample count and bit stream).
    pub data: &'a [u8],
    /// Bytes the chunk takes in the file: length field, encoding, data and CRC.
    pub framed_len: usize,
}

/// Parses the chunk framed at the start of `bytes`, which sit at `offset` in `file_name`; checks
/// bounds, the encoding id and the CRC.
pub fn parse_chunk<'a>(bytes: &'a [u8], offset: u64, file_name: &str) -> Result<FramedChunk<'a>> {
    let corrupt = |at: u64, detail: String| Error::Corrupt {
        file: file_name.to_owned(),
        section: "chunk",
        offset: at,
        detail,
    };
    let mut decoder = Decoder::new(bytes, offset);
    let length = decoder
        .uvarint()
        .map_err(|error| error.in_section(file_name, "chunk"))?;
    let length_field_size = decoder.offset() - offset;
    if length_field_size > MAX_CHUNK_LENGTH_FIELD_SIZE || length > u64::from(u32::MAX) {
        return Err(corrupt(
            offset,
            format!("chunk length {length} is too large"),
        ));
    }
    let needed = length + CHUNK_FRAMING_SIZE;
    if needed > decoder.remaining() as u64 {
        return Err(corrupt(
            offset,
            format!(
                "chunk of {length} data bytes needs {needed} bytes after its length, only {} left",
                decoder.remaining()
            ),
        ));
    }
    let encoding_offset = decoder.offset();
    let framed = decoder
        .bytes(1 + length as usize)
        .map_err(|error| error.in_section(file_name, "chunk"))?;
    let stored_crc = decoder
        .be_u32()
        .map_err(|error| error.in_section(file_name, "chunk"))?;
    let computed_crc = crc32c(framed);
    if stored_crc != computed_crc {
        return Err(corrupt(
            encoding_offset,
            format!("checksum {stored_crc:#010x} does not match computed {computed_crc:#010x}"),
        ));
    }
    let encoding = Encoding::from_u8(framed[0]).ok_or_else(|| {
        corrupt(
            encoding_offset,
            format!("unknown chunk encoding {}", framed[0]),
        )
    })?;
    Ok(FramedChunk {
        encoding,
        data: &framed[1..],
        framed_len: (decoder.offset() - offset) as usize,
    })
}

/// Reads the chunk at `offset` of a whole segment file's bytes: checks the segment header, the
/// offset, the bounds and the CRC. Errors name `file_name`, the section and the offset.
pub fn read_chunk<'a>(
    segment: &'a [u8],
    offset: u64,
    file_name: &str,
) -> Result<(Encoding, &'a [u8])> {
    check_segment_header(segment, file_name)?;
    if offset < SEGMENT_HEADER_SIZE || offset >= segment.len() as u64 {
        return Err(Error::Corrupt {
            file: file_name.to_owned(),
            section: "chunk",
            offset,
            detail: format!(
                "chunk offset outside the chunk area {SEGMENT_HEADER_SIZE}..{} of the file",
                segment.len()
            ),
        });
    }
    let chunk = parse_chunk(&segment[offset as usize..], offset, file_name)?;
    Ok((chunk.encoding, chunk.data))
}

/// Iterates every chunk of a whole segment file as `(offset, chunk)`, stopping after the first
/// error (a bad header, a bad chunk).
pub fn iter_segment<'a>(
    segment: &'a [u8],
    file_name: &'a str,
) -> impl Iterator<Item = Result<(u64, FramedChunk<'a>)>> + 'a {
    let mut offset = SEGMENT_HEADER_SIZE;
    let mut failed = check_segment_header(segment, file_name).err();
    std::iter::from_fn(move || {
        if let Some(error) = failed.take() {
            offset = u64::MAX;
            return Some(Err(error));
        }
        if offset >= segment.len() as u64 {
            return None;
        }
        match parse_chunk(&segment[offset as usize..], offset, file_name) {
            Ok(chunk) => {
                let at = offset;
                offset += chunk.framed_len as u64;
                Some(Ok((at, chunk)))
            }
            Err(error) => {
                offset = u64::MAX;
                Some(Err(error))
            }
        }
    })
}

/// Writes a block's chunk segment files as Prometheus' chunk writer does.
///
/// Segment files are created on demand (a block without chunks gets an empty `chunks/`), filled up
/// to the size limit, synced when full or finished. The chunks of one series passed together to
/// [`SegmentWriter::write_chunks`] are kept in one segment whenever they fit, exactly as upstream
/// batches them, so block files come out byte-identical.
#[derive(Debug)]
pub struct SegmentWriter {
    chunks_dir: PathBuf,
    max_segment_size: u64,
    current: Option<OpenSegment>,
    finished: Vec<SegmentFile>,
}

#[derive(Debug)]
struct OpenSegment {
    path: PathBuf,
    name: String,
    writer: BufWriter<File>,
    size: u64,
}

impl SegmentWriter {
    /// A writer of `<block_dir>/chunks/` with the default 512 MiB segment size.
    pub fn create(block_dir: &Path) -> Result<Self> {
        Self::with_max_segment_size(block_dir, DEFAULT_MAX_SEGMENT_SIZE)
    }

    /// A writer with another segment size limit (tests use small ones). The limit must leave room
    /// for the header and keep offsets within 32 bits.
    pub fn with_max_segment_size(block_dir: &Path, max_segment_size: u64) -> Result<Self> {
        if max_segment_size <= SEGMENT_HEADER_SIZE || max_segment_size > u64::from(u32::MAX) {
            return Err(Error::InvalidInput {
                writer: "segment writer",
                detail: format!("segment size {max_segment_size} outside 9..=4294967295"),
            });
        }
        let chunks_dir = block_dir.join(CHUNKS_DIR);
        fs::create_dir_all(&chunks_dir).map_err(|error| Error::io("create", &chunks_dir, error))?;
        Ok(Self {
            chunks_dir,
            max_segment_size,
            current: None,
            finished: Vec::new(),
        })
    }

    /// Appends one chunk and returns its reference.
    pub fn write_chunk(&mut self, encoding: Encoding, data: &[u8]) -> Result<ChunkRef> {
        let refs = self.write_chunks(&[(encoding, data)])?;
        Ok(refs[0])
    }

    /// Appends the chunks of one series, keeping them in one segment when they fit (upstream's
    /// batching), and returns their references in order.
    pub fn write_chunks(&mut self, chunks: &[(Encoding, &[u8])]) -> Result<Vec<ChunkRef>> {
        let cut_before = self.plan_segment_cuts(chunks)?;
        if self.current.is_none() {
            self.open_next_segment()?;
        }
        let mut refs = Vec::with_capacity(chunks.len());
        for (&(encoding, data), cut) in chunks.iter().zip(cut_before) {
            if cut {
                self.finish_current()?;
                self.open_next_segment()?;
            }
            refs.push(self.append(encoding, data)?);
        }
        Ok(refs)
    }

    /// Flushes and syncs the last segment and the folder, and lists the files written.
    pub fn finish(mut self) -> Result<Vec<SegmentFile>> {
        self.finish_current()?;
        sync_dir(&self.chunks_dir)?;
        Ok(std::mem::take(&mut self.finished))
    }

    /// For each chunk, whether a new segment starts before it. Sizes are estimated with a
    /// 5-byte length field as upstream does; the real size of the open segment counts only for
    /// the first batch.
    fn plan_segment_cuts(&self, chunks: &[(Encoding, &[u8])]) -> Result<Vec<bool>> {
        let written = self.current.as_ref().map_or(0, |segment| segment.size);
        let mut batch_size = 0u64;
        let mut first_batch = true;
        let mut cuts = Vec::with_capacity(chunks.len());
        for (index, (_, data)) in chunks.iter().enumerate() {
            if data.len() as u64 > u64::from(u32::MAX) {
                return Err(Error::InvalidInput {
                    writer: "segment writer",
                    detail: format!("chunk of {} bytes is too large", data.len()),
                });
            }
            let chunk_size = MAX_CHUNK_LENGTH_FIELD_SIZE + CHUNK_FRAMING_SIZE + data.len() as u64;
            batch_size += chunk_size;
            let mut cut = index != 0 && batch_size + SEGMENT_HEADER_SIZE > self.max_segment_size;
            if first_batch && written > SEGMENT_HEADER_SIZE {
                cut = batch_size + written > self.max_segment_size;
                if cut {
                    first_batch = false;
                }
            }
            if cut {
                batch_size = chunk_size;
            }
            cuts.push(cut);
        }
        Ok(cuts)
    }

    fn append(&mut self, encoding: Encoding, data: &[u8]) -> Result<ChunkRef> {
        let segment_index = self.finished.len() as u32;
        let segment = self
            .current
            .as_mut()
            .expect("write_chunks opens a segment before appending");
        let offset = u32::try_from(segment.size).map_err(|_| Error::InvalidInput {
            writer: "segment writer",
            detail: format!("chunk offset {} does not fit 32 bits", segment.size),
        })?;
        let mut length_field = [0u8; 10];
        let length_field_size = put_uvarint(&mut length_field, data.len() as u64);
        let encoding_byte = [encoding.as_u8()];
        let checksum = crc32c::crc32c_append(crc32c(&encoding_byte), data).to_be_bytes();
        let path = &segment.path;
        let io_error = |error| Error::io("write", path, error);
        segment
            .writer
            .write_all(&length_field[..length_field_size])
            .map_err(io_error)?;
        segment.writer.write_all(&encoding_byte).map_err(io_error)?;
        segment.writer.write_all(data).map_err(io_error)?;
        segment.writer.write_all(&checksum).map_err(io_error)?;
        debug_assert_eq!(length_field_size, uvarint_size(data.len() as u64));
        segment.size += (length_field_size + 1 + data.len() + 4) as u64;
        Ok(ChunkRef::new(segment_index, offset))
    }

    fn open_next_segment(&mut self) -> Result<()> {
        let name = segment_file_name(self.finished.len() as u32);
        let path = self.chunks_dir.join(&name);
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|error| Error::io("create", &path, error))?;
        let mut writer = BufWriter::with_capacity(WRITE_BUFFER_SIZE, file);
        let mut header = [0u8; SEGMENT_HEADER_SIZE as usize];
        header[..4].copy_from_slice(&SEGMENT_MAGIC.to_be_bytes());
        header[4] = SEGMENT_FORMAT_V1;
        writer
            .write_all(&header)
            .map_err(|error| Error::io("write", &path, error))?;
        self.current = Some(OpenSegment {
            path,
            name,
            writer,
            size: SEGMENT_HEADER_SIZE,
        });
        Ok(())
    }

    fn finish_current(&mut self) -> Result<()> {
        let Some(segment) = self.current.take() else {
            return Ok(());
        };
        let path = segment.path;
        let file = segment
            .writer
            .into_inner()
            .map_err(|error| Error::io("write", &path, error.into_error()))?;
        file.sync_all()
            .map_err(|error| Error::io("sync", &path, error))?;
        self.finished.push(SegmentFile {
            name: segment.name,
            size: segment.size,
        });
        Ok(())
    }
}

/// Writes `value` as a uvarint into `buffer`, returning the bytes used.
fn put_uvarint(buffer: &mut [u8; 10], mut value: u64) -> usize {
    let mut used = 0;
    while value >= 0x80 {
        buffer[used] = (value as u8) | 0x80;
        value >>= 7;
        used += 1;
    }
    buffer[used] = value as u8;
    used + 1
}

/// Syncs a folder so the names of files created in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let handle = File::open(dir).map_err(|error| Error::io("open", dir, error))?;
    handle
        .sync_all()
        .map_err(|error| Error::io("sync", dir, error))
}

#[cfg(test)]
mod tests;
