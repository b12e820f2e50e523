//! Bounds-checked decoding and encoding of the integers Prometheus' formats use.
//!
//! All multi-byte fixed-width integers are big-endian. `uvarint` is unsigned LEB128 (as protobuf
//! and Go's `binary.PutUvarint`); `varint` is zig-zag mapped then written as a `uvarint`.
//! Checksums are CRC-32 with the Castagnoli polynomial.
//!
//! [`Decoder`] never reads past its slice: every read checks the remaining length first and fails
//! with a [`DecodeError`] holding the absolute file offset, which callers turn into an
//! [`Error::Corrupt`] naming the file and section with [`DecodeError::in_section`].

use crate::error::Error;

/// CRC-32 (Castagnoli) of `bytes`, as stored after every checksummed section.
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// A decoding failure at an absolute file offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Absolute offset in the file where the failed read started.
    pub offset: u64,
    /// What went wrong.
    pub detail: String,
}

impl DecodeError {
    /// A failure at `offset`.
    pub fn new(offset: u64, detail: impl Into<String>) -> Self {
        Self {
            offset,
            detail: detail.into(),
        }
    }

    /// The crate error naming `file` and `section`.
    pub fn in_section(self, file: &str, section: &'static str) -> Error {
        Error::Corrupt {
            file: file.to_owned(),
            section,
            offset: self.offset,
            detail: self.detail,
        }
    }
}

/// Result of a decoding step.
pub type DecodeResult<T> = std::result::Result<T, DecodeError>;

/// A cursor over bytes that sit at `base` in their file.
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    bytes: &'a [u8],
    position: usize,
    base: u64,
}

impl<'a> Decoder<'a> {
    /// A decoder over `bytes`, which start at absolute file offset `base`.
    pub fn new(bytes: &'a [u8], base: u64) -> Self {
        Self {
            bytes,
            position: 0,
            base,
        }
    }

    /// The absolute file offset of the next byte to read.
    pub fn offset(&self) -> u64 {
        self.base + self.position as u64
    }

    /// Bytes left to read.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The unread bytes, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        &self.bytes[self.position..]
    }

    /// An error at the current offset.
    pub fn error(&self, detail: impl Into<String>) -> DecodeError {
        DecodeError::new(self.offset(), detail)
    }

    /// The next `count` bytes.
    pub fn bytes(&mut self, count: usize) -> DecodeResult<&'a [u8]> {
        if count > self.remaining() {
            return Err(self.error(format!(
                "need {count} bytes, only {} left",
                self.remaining()
            )));
        }
        let slice = &self.bytes[self.position..self.position + count];
        self.position += count;
        Ok(slice)
    }

    /// Skips `count` bytes.
    pub fn skip(&mut self, count: usize) -> DecodeResult<()> {
        self.bytes(count).map(|_| ())
    }

    /// One byte.
    pub fn u8(&mut self) -> DecodeResult<u8> {
        Ok(self.bytes(1)?[0])
    }

    /// A big-endian `u32`.
    pub fn be_u32(&mut self) -> DecodeResult<u32> {
        let bytes = self.bytes(4)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// A big-endian `u64`.
    pub fn be_u64(&mut self) -> DecodeResult<u64> {
        let bytes = self.bytes(8)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(bytes);
        Ok(u64::from_be_bytes(array))
    }

    /// An unsigned LEB128 value of at most 10 bytes.
    pub fn uvarint(&mut self) -> DecodeResult<u64> {
        let start = self.offset();
        let mut value: u64 = 0;
        for index in 0..10 {
            let byte = self
                .u8()
                .map_err(|_| DecodeError::new(start, "truncated uvarint"))?;
            if index == 9 && byte > 1 {
                return Err(DecodeError::new(start, "uvarint overflows 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(DecodeError::new(start, "uvarint longer than 10 bytes"))
    }

    /// A zig-zag `varint`.
    pub fn varint(&mut self) -> DecodeResult<i64> {
        let raw = self.uvarint()?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    /// A `uvarint` that must fit a `usize` length no larger than what is left.
    pub fn uvarint_len(&mut self) -> DecodeResult<usize> {
        let start = self.offset();
        let length = self.uvarint()?;
        if length > self.remaining() as u64 {
            return Err(DecodeError::new(
                start,
                format!(
                    "length {length} exceeds the {} bytes left",
                    self.remaining()
                ),
            ));
        }
        Ok(length as usize)
    }

    /// A string written as `uvarint` length + UTF-8 bytes.
    pub fn uvarint_str(&mut self) -> DecodeResult<&'a str> {
        let start = self.offset();
        let length = self.uvarint_len()?;
        let bytes = self.bytes(length)?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError::new(start, "string is not valid UTF-8"))
    }
}

/// A growable buffer with the same encodings as [`Decoder`].
#[derive(Debug, Clone, Default)]
pub struct Encoder {
    bytes: Vec<u8>,
}

impl Encoder {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty buffer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(capacity),
        }
    }

    /// The bytes written so far.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes, consumed.
    pub fn into_vec(self) -> Vec<u8> {
        self.bytes
    }

    /// How many bytes were written.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Forgets the content, keeping the allocation.
    pub fn clear(&mut self) {
        self.bytes.clear();
    }

    /// One byte.
    pub fn put_u8(&mut self, value: u8) {
        self.bytes.push(value);
    }

    /// A big-endian `u32`.
    pub fn put_be_u32(&mut self, value: u32) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    /// A big-endian `u64`.
    pub fn put_be_u64(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    /// An unsigned LEB128 value.
    pub fn put_uvarint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.bytes.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.bytes.push(value as u8);
    }

    /// A zig-zag `varint`.
    pub fn put_varint(&mut self, value: i64) {
        self.put_uvarint(((value << 1) ^ (value >> 63)) as u64);
    }

    /// A string as `uvarint` length + bytes.
    pub fn put_uvarint_str(&mut self, value: &str) {
        self.put_uvarint(value.len() as u64);
        self.bytes.extend_from_slice(value.as_bytes());
    }

    /// Raw bytes.
    pub fn put_bytes(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// Overwrites 4 bytes at `position` with a big-endian `u32` (for length fields written after
    /// their content). `position + 4` must not exceed [`Encoder::len`].
    pub fn set_be_u32(&mut self, position: usize, value: u32) {
        self.bytes[position..position + 4].copy_from_slice(&value.to_be_bytes());
    }

    /// Appends the CRC32C of the bytes from `start` to the end, big-endian.
    pub fn put_crc32c_since(&mut self, start: usize) {
        let checksum = crc32c(&self.bytes[start..]);
        self.put_be_u32(checksum);
    }
}

/// Number of bytes `value` takes as a `uvarint`.
pub fn uvarint_size(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        let values = [0i64, 1, -1, 63, -64, 64, 1 << 40, i64::MAX, i64::MIN];
        let mut encoder = Encoder::new();
        for value in values {
            encoder.put_varint(value);
            encoder.put_uvarint(value as u64);
        }
        let mut decoder = Decoder::new(encoder.as_slice(), 0);
        for value in values {
            assert_eq!(decoder.varint().unwrap(), value);
            assert_eq!(decoder.uvarint().unwrap(), value as u64);
        }
        assert!(decoder.is_empty());
    }

    #[test]
    fn uvarint_size_matches_encoding() {
        for value in [0u64, 127, 128, 16383, 16384, u64::MAX] {
            let mut encoder = Encoder::new();
            encoder.put_uvarint(value);
            assert_eq!(uvarint_size(value), encoder.len(), "{value}");
        }
    }

    #[test]
    fn truncated_and_oversized_input_is_an_error_with_offset() {
        let mut decoder = Decoder::new(&[0x80, 0x80], 100);
        assert_eq!(decoder.uvarint().unwrap_err().offset, 100);
        let mut decoder = Decoder::new(&[0xff; 11], 0);
        assert!(decoder.uvarint().is_err());
        let mut decoder = Decoder::new(&[5, b'a'], 7);
        let error = decoder.uvarint_str().unwrap_err();
        assert_eq!(error.offset, 7);
        let mut decoder = Decoder::new(&[1, 2, 3], 0);
        assert!(decoder.be_u32().is_err());
        let error = DecodeError::new(12, "bad").in_section("index", "symbol table");
        assert_eq!(
            error.to_string(),
            "corrupt index: symbol table at offset 12: bad"
        );
    }
}
