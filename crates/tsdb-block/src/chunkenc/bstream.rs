//! Bit streams, most significant bit first, as Prometheus' chunk encodings lay them out.
//!
//! Both sides work a machine word at a time rather than a bit at a time: the writer keeps the
//! 64-bit word it is filling in a register and stores it (and the bits that spill into the next
//! word) after every write, never loading what it stored, and the reader loads the next 64 bits
//! with one big-endian word load and shifts.

#[cfg(test)]
use crate::encoding::DecodeError;

/// Zero bytes kept from the word being filled: it and the spill word after it.
const WRITE_SLACK: usize = 16;

/// An append-only bit stream over a byte buffer whose bytes past the written bits are zero.
#[derive(Debug, Clone)]
pub(crate) struct BitWriter {
    /// The stream bytes followed by zero bytes, at least [`WRITE_SLACK`] from `word_at`.
    buffer: Vec<u8>,
    /// Byte offset of the word being filled.
    word_at: usize,
    /// The word being filled, as stored at `word_at`: `used` stream bits, then zeros.
    word: u64,
    /// Stream bits in `word`, below 64.
    used: u32,
}

impl BitWriter {
    /// A stream whose first `header_bytes` (at most 7) bytes are zero and already count as
    /// written.
    #[inline]
    pub(crate) fn with_header(header_bytes: usize, capacity: usize) -> Self {
        debug_assert!(header_bytes < 8);
        let mut buffer = Vec::with_capacity(capacity.max(header_bytes) + WRITE_SLACK);
        buffer.resize(WRITE_SLACK, 0);
        Self {
            buffer,
            word_at: 0,
            word: 0,
            used: header_bytes as u32 * 8,
        }
    }

    /// The written bytes; the last one is zero-padded on the right.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buffer[..self.byte_len()]
    }

    /// Overwrites the first two bytes (a header the stream was created with) with `value`,
    /// big-endian. Word stores zero them again while the first word is being filled: set the
    /// header after writing.
    #[inline]
    pub(crate) fn set_header_u16(&mut self, value: u16) {
        if let Some(header) = self.buffer.first_chunk_mut::<2>() {
            *header = value.to_be_bytes();
        }
    }

    /// Number of bytes the written bits occupy.
    pub(crate) fn byte_len(&self) -> usize {
        self.word_at + self.used.div_ceil(8) as usize
    }

    /// Writes the low `count` bits of `value`, `count <= 64`.
    #[inline(always)]
    pub(crate) fn write_bits(&mut self, value: u64, count: u32) {
        debug_assert!(count <= 64);
        if count == 0 {
            return;
        }
        let aligned = value << (64 - count);
        let used = self.used;
        let word = self.word | (aligned >> used);
        // The bits that did not fit this word (none when `used` is 0: two shifts make 64).
        let spill = (aligned << 1) << (63 - used);
        let stored = loop {
            if let Some(stored) = self
                .buffer
                .get_mut(self.word_at..self.word_at + WRITE_SLACK)
                .and_then(|rest| rest.first_chunk_mut::<WRITE_SLACK>())
            {
                break stored;
            }
            self.buffer = grown(std::mem::take(&mut self.buffer), self.word_at);
        };
        // Both words are stored whether or not the first is full, so the buffer always holds
        // the stream without a branch or a flush; the spill word is zero while nothing spills.
        let (first, second) = stored.split_at_mut(8);
        first.copy_from_slice(&word.to_be_bytes());
        second.copy_from_slice(&spill.to_be_bytes());
        let total = used + count;
        if total >= 64 {
            self.word_at += 8;
            self.word = spill;
        } else {
            self.word = word;
        }
        self.used = total & 63;
    }

    /// Writes a whole byte.
    #[inline]
    pub(crate) fn write_byte(&mut self, byte: u8) {
        self.write_bits(u64::from(byte), 8);
    }
}

/// `buffer` zero-extended by at least a word past the slack after `word_at`: to its whole
/// capacity while that suffices (one fill instead of many small ones), else to twice its
/// length. It takes and returns the buffer by value, so no address of the writer (or of the
/// encoder holding it) escapes to a call and a caller's loop can keep their fields in
/// registers.
#[cold]
#[inline(never)]
fn grown(mut buffer: Vec<u8>, word_at: usize) -> Vec<u8> {
    let new_len = (buffer.len() * 2)
        .max(buffer.capacity())
        .max(word_at + WRITE_SLACK + 8);
    buffer.resize(new_len, 0);
    buffer
}

/// A bounds-checked reader over a bit stream.
///
/// Reads past the end yield zero bits from [`BitReader::peek`] but fail in
/// [`BitReader::consume`], so decoders may look ahead freely and learn about truncation when they
/// commit.
/// Only the tests use it: the XOR decoder reads words itself.
#[cfg(test)]
#[derive(Debug, Clone)]
pub(crate) struct BitReader<'a> {
    bytes: &'a [u8],
    /// Next bit to read, counting from the first byte of `bytes`.
    bit_position: usize,
    /// Absolute file offset of `bytes[0]`, for errors.
    base: u64,
}

#[cfg(test)]
impl<'a> BitReader<'a> {
    /// A reader starting at the first bit of `bytes`, which sit at file offset `base`.
    pub(crate) fn new(bytes: &'a [u8], base: u64) -> Self {
        Self {
            bytes,
            bit_position: 0,
            base,
        }
    }

    /// An error at the current position.
    pub(crate) fn error(&self, detail: &str) -> DecodeError {
        DecodeError::new(
            self.base + (self.bit_position / 8) as u64,
            format!("{detail} (bit {})", self.bit_position),
        )
    }

    /// The next 64 bits, left-aligned; bits past the end of the stream read as zero. At least the
    /// first 57 bits are the stream's bits (or zeros past its end).
    #[inline]
    pub(crate) fn peek(&self) -> u64 {
        let byte_index = self.bit_position / 8;
        let shift = (self.bit_position % 8) as u32;
        let word = match self.bytes.get(byte_index..byte_index + 8) {
            Some(slice) => u64::from_be_bytes(slice.try_into().expect("the slice is 8 bytes long")),
            None => self.peek_near_end(byte_index),
        };
        word << shift
    }

    #[cold]
    fn peek_near_end(&self, byte_index: usize) -> u64 {
        let mut padded = [0u8; 8];
        if let Some(tail) = self.bytes.get(byte_index..) {
            let count = tail.len().min(8);
            padded[..count].copy_from_slice(&tail[..count]);
        }
        u64::from_be_bytes(padded)
    }

    /// Moves past `count` bits, failing if the stream has fewer left.
    #[inline]
    pub(crate) fn consume(&mut self, count: u32) -> Result<(), DecodeError> {
        let end = self.bit_position + count as usize;
        if end > self.bytes.len() * 8 {
            return Err(self.error("bit stream ends early"));
        }
        self.bit_position = end;
        Ok(())
    }

    /// Reads `count <= 64` bits as an unsigned number.
    #[inline]
    pub(crate) fn read_bits(&mut self, count: u32) -> Result<u64, DecodeError> {
        if count == 0 {
            return Ok(0);
        }
        if count <= 56 {
            let value = self.peek() >> (64 - count);
            self.consume(count)?;
            return Ok(value);
        }
        let high_count = count - 32;
        let high = self.peek() >> (64 - high_count);
        self.consume(high_count)?;
        let low = self.peek() >> 32;
        self.consume(32)?;
        Ok((high << 32) | low)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_round_trip(fields: &[(u64, u32)]) {
        let mut writer = BitWriter::with_header(0, 0);
        for &(value, count) in fields {
            writer.write_bits(value, count);
        }
        let total_bits: u32 = fields.iter().map(|&(_, count)| count).sum();
        assert_eq!(writer.bytes().len(), total_bits.div_ceil(8) as usize);
        let mut reader = BitReader::new(writer.bytes(), 0);
        for &(value, count) in fields {
            let mask = if count == 64 {
                u64::MAX
            } else {
                (1u64 << count) - 1
            };
            assert_eq!(reader.read_bits(count).unwrap(), value & mask, "{count}");
        }
    }

    #[test]
    fn fields_of_every_width_round_trip_at_every_alignment() {
        for leading in 0..8u32 {
            for count in 1..=64u32 {
                check_round_trip(&[
                    (0b1010_1010, leading),
                    (0xDEAD_BEEF_CAFE_F00D, count),
                    (u64::MAX, 3),
                ]);
            }
        }
    }

    #[test]
    fn bytes_are_exact_after_every_write() {
        // Random widths cross word boundaries at every offset, including a spill of the whole
        // 64-bit field, and grow the buffer from nothing; the bytes must be exact after each
        // write, not only after the last one.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for header in [0usize, 2] {
            let mut writer = BitWriter::with_header(header, 0);
            let mut bits: Vec<bool> = vec![false; header * 8];
            for _ in 0..2_000 {
                let count = (next() % 65) as u32;
                let value = next();
                writer.write_bits(value, count);
                bits.extend((0..count).rev().map(|bit| value >> bit & 1 == 1));
                let expected: Vec<u8> = bits
                    .chunks(8)
                    .map(|byte| {
                        byte.iter()
                            .enumerate()
                            .fold(0u8, |acc, (index, &bit)| acc | u8::from(bit) << (7 - index))
                    })
                    .collect();
                assert_eq!(writer.bytes(), expected, "after {} bits", bits.len());
                assert_eq!(writer.byte_len(), expected.len());
            }
        }
    }

    #[test]
    fn bits_are_most_significant_first_with_zero_padding() {
        let mut writer = BitWriter::with_header(2, 0);
        writer.write_bits(1, 1);
        writer.write_bits(0b01, 2);
        assert_eq!(writer.bytes(), &[0, 0, 0b1010_0000]);
        writer.write_byte(0xFF);
        assert_eq!(writer.bytes(), &[0, 0, 0b1011_1111, 0b1110_0000]);
    }

    #[test]
    fn reading_past_the_end_is_an_error() {
        let bytes = [0xFFu8];
        let mut reader = BitReader::new(&bytes, 10);
        assert_eq!(reader.read_bits(5).unwrap(), 0b11111);
        let error = reader.read_bits(4).unwrap_err();
        assert_eq!(error.offset, 10);
        assert_eq!(reader.read_bits(3).unwrap(), 0b111);
        assert!(reader.read_bits(64).is_err());
    }
}
