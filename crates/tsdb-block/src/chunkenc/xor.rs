//! The XOR float chunk (encoding 1): Gorilla-style delta-of-delta timestamps and XOR-ed values.
//!
//! Layout: a 2-byte big-endian sample count, then a bit stream (most significant bit first, last
//! byte zero-padded). The first sample is a zig-zag varint timestamp and the 64 raw value bits;
//! the second a uvarint timestamp delta and an XOR-ed value; every later one a delta-of-delta in
//! one of five buckets (`0`, `10`+14 bits, `110`+17, `1110`+20, `1111`+64) and an XOR-ed value.
//! An XOR-ed value is `0` when unchanged, `10` + the meaningful bits when they fit the previous
//! leading/trailing-zero window, else `11` + 5 bits of leading zeros (clamped to 31) + 6 bits of
//! meaningful-bit count (64 written as 0) + the meaningful bits.

use super::bstream::{BitReader, BitWriter};
use crate::encoding::DecodeError;

/// Bytes of the sample-count header at the start of the chunk data.
const HEADER_BYTES: usize = 2;
/// Marker for "no leading/trailing window yet" in the encoder.
const WINDOW_UNSET: u8 = 0xFF;

/// Builds one XOR chunk, byte-identical to Prometheus' encoder.
#[derive(Debug, Clone)]
pub struct XorEncoder {
    stream: BitWriter,
    num_samples: u16,
    last_timestamp: i64,
    last_value_bits: u64,
    last_delta: u64,
    leading: u8,
    trailing: u8,
}

impl Default for XorEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl XorEncoder {
    /// The most samples a chunk can hold (the count is a `u16`).
    pub const MAX_SAMPLES: u16 = u16::MAX;

    /// An empty chunk (its data is the two zero bytes of the count).
    pub fn new() -> Self {
        Self {
            stream: BitWriter::with_header(HEADER_BYTES, 128),
            num_samples: 0,
            last_timestamp: 0,
            last_value_bits: 0,
            last_delta: 0,
            leading: WINDOW_UNSET,
            trailing: 0,
        }
    }

    /// Appends a sample. Timestamps should increase (Prometheus never writes otherwise), but any
    /// sequence is encoded faithfully. Returns `false`, leaving the chunk unchanged, when the
    /// chunk already holds [`XorEncoder::MAX_SAMPLES`] samples.
    #[inline]
    pub fn append(&mut self, t: i64, v: f64) -> bool {
        let value_bits = v.to_bits();
        let delta = t.wrapping_sub(self.last_timestamp) as u64;
        match self.num_samples {
            0 => {
                let zigzag = ((t << 1) ^ (t >> 63)) as u64;
                self.write_uvarint_bytes(zigzag);
                self.stream.write_bits(value_bits, 64);
            }
            1 => {
                self.write_uvarint_bytes(delta);
                self.write_value(value_bits);
            }
            Self::MAX_SAMPLES => return false,
            _ => {
                let delta_of_delta = delta.wrapping_sub(self.last_delta) as i64;
                self.write_delta_of_delta(delta_of_delta);
                self.write_value(value_bits);
            }
        }
        self.last_timestamp = t;
        self.last_value_bits = value_bits;
        self.last_delta = delta;
        self.num_samples += 1;
        self.stream.bytes_mut()[..HEADER_BYTES].copy_from_slice(&self.num_samples.to_be_bytes());
        true
    }

    /// Number of samples appended.
    pub fn num_samples(&self) -> u16 {
        self.num_samples
    }

    /// The chunk data exactly as stored in a segment file: count, then the bit stream.
    pub fn bytes(&self) -> &[u8] {
        self.stream.bytes()
    }

    /// The chunk data, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.stream.bytes().to_vec()
    }

    /// Length of [`XorEncoder::bytes`].
    pub fn len(&self) -> usize {
        self.stream.byte_len()
    }

    /// Whether no sample was appended.
    pub fn is_empty(&self) -> bool {
        self.num_samples == 0
    }

    /// Timestamp of the last sample appended, if any.
    pub fn last_timestamp(&self) -> Option<i64> {
        (self.num_samples > 0).then_some(self.last_timestamp)
    }

    fn write_uvarint_bytes(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.stream.write_byte((value as u8) | 0x80);
            value >>= 7;
        }
        self.stream.write_byte(value as u8);
    }

    #[inline]
    fn write_delta_of_delta(&mut self, dod: i64) {
        // Bucket of n bits holds -(2^(n-1) - 1) ..= 2^(n-1): the most positive value fits.
        const fn fits(dod: i64, bits: u32) -> bool {
            -((1i64 << (bits - 1)) - 1) <= dod && dod <= (1i64 << (bits - 1))
        }
        let (control, control_bits, payload_bits) = if dod == 0 {
            (0b0, 1, 0)
        } else if fits(dod, 14) {
            (0b10, 2, 14)
        } else if fits(dod, 17) {
            (0b110, 3, 17)
        } else if fits(dod, 20) {
            (0b1110, 4, 20)
        } else {
            (0b1111, 4, 64)
        };
        if payload_bits == 0 || payload_bits == 64 {
            self.stream.write_bits(control, control_bits);
            self.stream.write_bits(dod as u64, payload_bits);
        } else {
            let mask = (1u64 << payload_bits) - 1;
            let field = (control << payload_bits) | (dod as u64 & mask);
            self.stream.write_bits(field, control_bits + payload_bits);
        }
    }

    #[inline]
    fn write_value(&mut self, value_bits: u64) {
        let xor = value_bits ^ self.last_value_bits;
        if xor == 0 {
            self.stream.write_bit(false);
            return;
        }
        // Leading zeros must fit 5 bits.
        let leading = (xor.leading_zeros() as u8).min(31);
        let trailing = xor.trailing_zeros() as u8;
        if self.leading != WINDOW_UNSET && leading >= self.leading && trailing >= self.trailing {
            let significant = 64 - u32::from(self.leading) - u32::from(self.trailing);
            self.stream.write_bits(0b10, 2);
            self.stream.write_bits(xor >> self.trailing, significant);
            return;
        }
        self.leading = leading;
        self.trailing = trailing;
        let significant = 64 - u32::from(leading) - u32::from(trailing);
        // Control `11`, 5 bits of leading zeros, 6 bits of significant-bit count (64 wraps to 0).
        let header = (0b11u64 << 11) | (u64::from(leading) << 6) | u64::from(significant & 0x3f);
        self.stream.write_bits(header, 13);
        self.stream.write_bits(xor >> trailing, significant);
    }
}

/// Iterates the samples of one XOR chunk.
///
/// Yields `(timestamp, value)` until the chunk's sample count is reached or the data turns out
/// to be corrupt; in the latter case iteration stops and [`XorIterator::err`] tells what went
/// wrong and where. Never panics and never reads more samples than the count, whatever the bytes.
#[derive(Debug, Clone)]
pub struct XorIterator<'a> {
    reader: BitReader<'a>,
    total: u16,
    read: u16,
    timestamp: i64,
    value_bits: u64,
    delta: u64,
    leading: u8,
    trailing: u8,
    error: Option<DecodeError>,
}

impl<'a> XorIterator<'a> {
    /// An iterator over chunk `data` (count + bit stream); error offsets count from `data[0]`.
    pub fn new(data: &'a [u8]) -> Self {
        Self::with_offset(data, 0)
    }

    /// An iterator over chunk `data` that sits at absolute file offset `base`, so errors carry
    /// file offsets.
    pub fn with_offset(data: &'a [u8], base: u64) -> Self {
        let mut iterator = Self {
            reader: BitReader::new(data, base),
            total: 0,
            read: 0,
            timestamp: 0,
            value_bits: 0,
            delta: 0,
            leading: 0,
            trailing: 0,
            error: None,
        };
        match data {
            [high, low, ..] => {
                iterator.total = u16::from_be_bytes([*high, *low]);
                iterator.reader.seek_bit(HEADER_BYTES * 8);
            }
            _ => {
                iterator.error = Some(DecodeError::new(
                    base,
                    format!("xor chunk of {} bytes has no sample count", data.len()),
                ));
            }
        }
        iterator
    }

    /// The sample count the chunk header announces (0 when there is no header).
    pub fn num_samples(&self) -> u16 {
        self.total
    }

    /// Why iteration stopped early, if it did.
    pub fn err(&self) -> Option<&DecodeError> {
        self.error.as_ref()
    }

    /// Decodes every remaining sample into `out`, or returns the first error.
    pub fn decode_into(mut self, out: &mut Vec<(i64, f64)>) -> Result<(), DecodeError> {
        out.reserve(usize::from(self.total.saturating_sub(self.read)));
        for sample in self.by_ref() {
            out.push(sample);
        }
        match self.error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    #[inline]
    fn read_sample(&mut self) -> Result<(), DecodeError> {
        match self.read {
            0 => {
                self.timestamp = self.reader.read_varint()?;
                self.value_bits = self.reader.read_bits(64)?;
            }
            1 => {
                self.delta = self.reader.read_uvarint()?;
                self.timestamp = self.timestamp.wrapping_add(self.delta as i64);
                self.read_value()?;
            }
            _ => {
                self.read_delta_of_delta()?;
                self.read_value()?;
            }
        }
        Ok(())
    }

    #[inline]
    fn read_delta_of_delta(&mut self) -> Result<(), DecodeError> {
        let word = self.reader.peek();
        let ones = (!word).leading_zeros().min(4);
        let dod = match ones {
            0 => {
                self.reader.consume(1)?;
                0
            }
            1..=3 => {
                let control_bits = ones + 1;
                let payload_bits = [14u32, 17, 20][ones as usize - 1];
                let raw = (word << control_bits) >> (64 - payload_bits);
                self.reader.consume(control_bits + payload_bits)?;
                // Values above 2^(n-1) are negative numbers in n-bit two's complement.
                if raw > 1u64 << (payload_bits - 1) {
                    raw.wrapping_sub(1u64 << payload_bits) as i64
                } else {
                    raw as i64
                }
            }
            _ => {
                self.reader.consume(4)?;
                self.reader.read_bits(64)? as i64
            }
        };
        self.delta = self.delta.wrapping_add(dod as u64);
        self.timestamp = self.timestamp.wrapping_add(self.delta as i64);
        Ok(())
    }

    #[inline]
    fn read_value(&mut self) -> Result<(), DecodeError> {
        let word = self.reader.peek();
        if word >> 63 == 0 {
            return self.reader.consume(1);
        }
        let significant;
        if (word >> 62) & 1 == 0 {
            self.reader.consume(2)?;
            significant = 64 - u32::from(self.leading) - u32::from(self.trailing);
        } else {
            let leading = ((word >> 57) & 0x1f) as u8;
            let mut count = ((word >> 51) & 0x3f) as u32;
            if count == 0 {
                count = 64;
            }
            self.reader.consume(13)?;
            if u32::from(leading) + count > 64 {
                return Err(self.reader.error(&format!(
                    "xor value window of {leading} leading zeros and {count} significant bits exceeds 64 bits"
                )));
            }
            self.leading = leading;
            self.trailing = (64 - u32::from(leading) - count) as u8;
            significant = count;
        }
        let bits = self.reader.read_bits(significant)?;
        self.value_bits ^= bits << self.trailing;
        Ok(())
    }
}

impl Iterator for XorIterator<'_> {
    type Item = (i64, f64);

    #[inline]
    fn next(&mut self) -> Option<(i64, f64)> {
        if self.read >= self.total || self.error.is_some() {
            return None;
        }
        if let Err(error) = self.read_sample() {
            self.error = Some(error);
            return None;
        }
        self.read += 1;
        Some((self.timestamp, f64::from_bits(self.value_bits)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.error.is_some() {
            return (0, Some(0));
        }
        (0, Some(usize::from(self.total - self.read)))
    }
}

/// Decodes a whole XOR chunk.
pub fn decode_xor(data: &[u8]) -> Result<Vec<(i64, f64)>, DecodeError> {
    let mut samples = Vec::new();
    XorIterator::new(data).decode_into(&mut samples)?;
    Ok(samples)
}

/// Encodes samples into one XOR chunk (at most [`XorEncoder::MAX_SAMPLES`] are taken).
pub fn encode_xor(samples: &[(i64, f64)]) -> XorEncoder {
    let mut encoder = XorEncoder::new();
    for &(t, v) in samples {
        if !encoder.append(t, v) {
            break;
        }
    }
    encoder
}
