//! The XOR float chunk (encoding 1): Gorilla-style delta-of-delta timestamps and XOR-ed values.
//!
//! Layout: a 2-byte big-endian sample count, then a bit stream (most significant bit first, last
//! byte zero-padded). The first sample is a zig-zag varint timestamp and the 64 raw value bits;
//! the second a uvarint timestamp delta and an XOR-ed value; every later one a delta-of-delta in
//! one of five buckets (`0`, `10`+14 bits, `110`+17, `1110`+20, `1111`+64) and an XOR-ed value.
//! An XOR-ed value is `0` when unchanged, `10` + the meaningful bits when they fit the previous
//! leading/trailing-zero window, else `11` + 5 bits of leading zeros (clamped to 31) + 6 bits of
//! meaningful-bit count (64 written as 0) + the meaningful bits.

use super::bstream::BitWriter;
use crate::encoding::DecodeError;

/// Bytes of the sample-count header at the start of the chunk data.
const HEADER_BYTES: usize = 2;
/// Bytes reserved up front: a typical 120-sample chunk takes 100 to 300 bytes.
const INITIAL_CAPACITY: usize = 256;
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
            stream: BitWriter::with_header(HEADER_BYTES, INITIAL_CAPACITY),
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
                self.write_value(value_bits, 0, 0);
            }
            Self::MAX_SAMPLES => return false,
            _ => {
                let dod = delta.wrapping_sub(self.last_delta) as i64;
                // The delta-of-delta field goes out as a prefix of the value field's store.
                if dod == 0 {
                    self.write_value(value_bits, 0, 1);
                } else if let Some((bits, count)) = short_delta_of_delta_field(dod) {
                    self.write_value(value_bits, bits, count);
                } else {
                    self.stream.write_bits(0b1111, 4);
                    self.stream.write_bits(dod as u64, 64);
                    self.write_value(value_bits, 0, 0);
                }
            }
        }
        self.last_timestamp = t;
        self.last_value_bits = value_bits;
        self.last_delta = delta;
        self.num_samples += 1;
        self.stream.set_header_u16(self.num_samples);
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

    /// Writes the XOR-ed value field for `value_bits` preceded by the `prefix_count` low bits
    /// of `prefix` (at most 24), in as few stores as the field sizes allow, and updates the
    /// leading/trailing window.
    #[inline(always)]
    fn write_value(&mut self, value_bits: u64, prefix: u64, prefix_count: u32) {
        let xor = value_bits ^ self.last_value_bits;
        if xor == 0 {
            self.stream.write_bits(prefix << 1, prefix_count + 1);
            return;
        }
        // Leading zeros must fit 5 bits.
        let leading = xor.leading_zeros().min(31);
        let trailing = xor.trailing_zeros();
        let (head, head_count, significant, shift) = if self.leading != WINDOW_UNSET
            && leading >= u32::from(self.leading)
            && trailing >= u32::from(self.trailing)
        {
            // Control `10`, then the bits inside the previous window.
            let significant = 64 - u32::from(self.leading) - u32::from(self.trailing);
            (
                (prefix << 2) | 0b10,
                prefix_count + 2,
                significant,
                u32::from(self.trailing),
            )
        } else {
            self.leading = leading as u8;
            self.trailing = trailing as u8;
            let significant = 64 - leading - trailing;
            // Control `11`, 5 bits of leading zeros, 6 bits of significant-bit count (64 wraps
            // to 0).
            let header = (0b11 << 11) | (u64::from(leading) << 6) | u64::from(significant & 0x3f);
            (
                (prefix << 13) | header,
                prefix_count + 13,
                significant,
                trailing,
            )
        };
        let payload = xor >> shift;
        if head_count + significant <= 64 {
            self.stream
                .write_bits((head << significant) | payload, head_count + significant);
        } else {
            self.stream.write_bits(head, head_count);
            self.stream.write_bits(payload, significant);
        }
    }
}

/// The delta-of-delta field of a non-zero `dod` when it fits a 14, 17 or 20-bit bucket: a
/// bucket of n bits holds -(2^(n-1) - 1) ..= 2^(n-1) (the most positive value fits, the most
/// negative does not). `None` for the 64-bit bucket.
#[inline(always)]
fn short_delta_of_delta_field(dod: i64) -> Option<(u64, u32)> {
    const fn fits(dod: i64, bits: u32) -> bool {
        -((1i64 << (bits - 1)) - 1) <= dod && dod <= (1i64 << (bits - 1))
    }
    let (control, control_bits, payload_bits) = if fits(dod, 14) {
        (0b10u64, 2, 14)
    } else if fits(dod, 17) {
        (0b110, 3, 17)
    } else if fits(dod, 20) {
        (0b1110, 4, 20)
    } else {
        return None;
    };
    let payload = dod as u64 & ((1 << payload_bits) - 1);
    Some((
        (control << payload_bits) | payload,
        control_bits + payload_bits,
    ))
}

/// Iterates the samples of one XOR chunk.
///
/// Yields `(timestamp, value)` until the chunk's sample count is reached or the data turns out
/// to be corrupt; in the latter case iteration stops and [`XorIterator::err`] tells what went
/// wrong and where. Never panics and never reads more samples than the count, whatever the bytes.
///
/// The hot path reads the stream a 64-bit word at a time: bits past the end of the data read as
/// zero, and a sample is rejected once decoding it went past the end, so no read needs its own
/// bounds check.
#[derive(Debug, Clone)]
pub struct XorIterator<'a> {
    data: &'a [u8],
    /// Absolute file offset of `data[0]`, for errors.
    base: u64,
    /// Next bit to read.
    bit_position: usize,
    /// The count the header announces.
    total: u16,
    /// Samples to yield: `total`, or fewer once an error stopped iteration.
    limit: u16,
    read: u16,
    timestamp: i64,
    value_bits: u64,
    delta: u64,
    /// Significant bits of the current value window (64 before any window is set).
    significant: u32,
    /// Trailing zero bits of the current value window.
    trailing: u32,
    error: Option<DecodeError>,
}

/// The 64 bits starting at `bit_position`, left-aligned, zeros past the end; at least the first
/// 57 are stream bits (or zeros past its end).
#[inline(always)]
fn load_word(data: &[u8], bit_position: usize) -> u64 {
    let byte_index = bit_position >> 3;
    let word = match data.get(byte_index..byte_index + 8) {
        Some(slice) => u64::from_be_bytes(slice.try_into().expect("the slice is 8 bytes long")),
        None => load_word_near_end(data, byte_index),
    };
    word << (bit_position & 7)
}

#[cold]
#[inline(never)]
fn load_word_near_end(data: &[u8], byte_index: usize) -> u64 {
    let mut word = 0u64;
    for index in 0..8 {
        let byte = data.get(byte_index + index).copied().unwrap_or(0);
        word = (word << 8) | u64::from(byte);
    }
    word
}

/// Reads `count` bits (1..=64) at `*bit_position` and advances it.
#[inline(always)]
fn read_bits(data: &[u8], bit_position: &mut usize, count: u32) -> u64 {
    debug_assert!((1..=64).contains(&count));
    if count <= 56 {
        let value = load_word(data, *bit_position) >> (64 - count);
        *bit_position += count as usize;
        return value;
    }
    let high = load_word(data, *bit_position) >> 32;
    let low = load_word(data, *bit_position + 32) >> (96 - count);
    *bit_position += count as usize;
    (high << (count - 32)) | low
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
            data,
            base,
            bit_position: HEADER_BYTES * 8,
            total: 0,
            limit: 0,
            read: 0,
            timestamp: 0,
            value_bits: 0,
            delta: 0,
            significant: 64,
            trailing: 0,
            error: None,
        };
        match data {
            [high, low, ..] => {
                iterator.total = u16::from_be_bytes([*high, *low]);
                iterator.limit = iterator.total;
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

    /// Decodes every remaining sample into `out`, or returns the first error (the samples
    /// before it are pushed).
    pub fn decode_into(self, out: &mut Vec<(i64, f64)>) -> Result<(), DecodeError> {
        out.reserve(self.capacity_needed());
        self.for_each_sample(|t, v| out.push((t, v)))
    }

    /// Decodes every remaining sample into two columns, or returns the first error (the samples
    /// before it are pushed).
    pub fn decode_columns(
        self,
        timestamps: &mut Vec<i64>,
        values: &mut Vec<f64>,
    ) -> Result<(), DecodeError> {
        let capacity = self.capacity_needed();
        timestamps.reserve(capacity);
        values.reserve(capacity);
        self.for_each_sample(|t, v| {
            timestamps.push(t);
            values.push(v);
        })
    }

    /// Room for the samples still to decode: the count left, but no more than the data can
    /// hold, so a corrupt count on a short chunk reserves little. Every decoded sample ends
    /// within the data and takes at least 2 bits, so at most `data.len() * 4` are decoded.
    fn capacity_needed(&self) -> usize {
        usize::from(self.limit - self.read).min(self.data.len() * 4)
    }

    /// Calls `visit` with every remaining sample in order, then returns the error that stopped
    /// decoding, if any. The fastest way through a chunk: the whole decoder state stays in
    /// registers for the loop, where [`Iterator::next`] stores and reloads it per sample.
    #[inline]
    pub fn for_each_sample<F: FnMut(i64, f64)>(mut self, mut visit: F) -> Result<(), DecodeError> {
        while self.read < self.limit && self.read < 2 {
            if let Some((t, v)) = self.read_first_samples() {
                visit(t, v);
            }
        }
        self.decode_rest(&mut visit);
        match self.error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// The samples after the first two, with the state in locals for the whole loop.
    ///
    /// The bulk of the chunk is decoded straight from `data` while a whole [`WINDOW`] of bytes
    /// follows the sample's first byte, so no sample can run past the end there; the last few
    /// bytes are copied into a zero-padded buffer and decoded by the same loop, which then has
    /// to check where each sample ends.
    #[inline(always)]
    fn decode_rest<F: FnMut(i64, f64)>(&mut self, visit: &mut F) {
        let data = self.data;
        let leading = 64 - self.significant - self.trailing;
        let state = DecodeState {
            position: self.bit_position,
            timestamp: self.timestamp,
            delta: self.delta,
            value_bits: self.value_bits,
            significant: self.significant,
            leading,
            mask: window_mask(leading, self.trailing),
        };
        let remaining = usize::from(self.limit - self.read);
        let (mut state, mut remaining, mut fault) =
            run_windows::<false, F>(data, 0, state, remaining, visit);
        if fault.is_none() && remaining > 0 {
            // Fewer than WINDOW bytes are left: decode them from a copy of the last WINDOW
            // bytes padded with zeros, where every sample has a whole window and reads past the
            // end see zeros. The samples left start past `data.len() - WINDOW` (so the
            // subtraction below cannot underflow). A fixed-size copy: no memcpy call.
            let mut padded = [0u8; 2 * WINDOW];
            let byte = match data.last_chunk::<WINDOW>() {
                Some(last) => {
                    padded[..WINDOW].copy_from_slice(last);
                    data.len() - WINDOW
                }
                None => {
                    for (slot, byte) in padded.iter_mut().zip(data) {
                        *slot = *byte;
                    }
                    0
                }
            };
            let base = byte * 8;
            state.position -= base;
            (state, remaining, fault) =
                run_windows::<true, F>(&padded, data.len() * 8 - base, state, remaining, visit);
            state.position += base;
            fault = match fault {
                Some(Fault::EndsEarly(at)) => Some(Fault::EndsEarly(at + base)),
                Some(Fault::Window {
                    position,
                    leading,
                    significant,
                }) => Some(Fault::Window {
                    position: position + base,
                    leading,
                    significant,
                }),
                // Unreachable (every sample in the padded copy has a window and the end check
                // stops the loop before it runs out), but a stop with samples left is an error.
                None if remaining > 0 => Some(Fault::EndsEarly(state.position)),
                None => None,
            };
        }
        self.read = self.limit - remaining as u16;
        self.bit_position = state.position;
        self.timestamp = state.timestamp;
        self.delta = state.delta;
        self.value_bits = state.value_bits;
        self.significant = state.significant;
        self.trailing = 64 - state.leading - state.significant;
        match fault {
            Some(Fault::EndsEarly(at)) => self.fail(at, "bit stream ends early".to_owned()),
            Some(Fault::Window {
                position,
                leading,
                significant,
            }) => self.fail(
                position,
                format!("window of {leading} leading zeros and {significant} significant bits"),
            ),
            None => {}
        }
    }

    /// Stops iteration with an error at the byte holding bit `bit_position`.
    #[cold]
    #[inline(never)]
    fn fail(&mut self, bit_position: usize, detail: String) {
        let byte = (bit_position / 8).min(self.data.len());
        self.error = Some(DecodeError::new(
            self.base + byte as u64,
            format!("{detail} in sample {} of {}", self.read, self.total),
        ));
        // Nothing more is yielded.
        self.limit = self.read;
    }

    /// The first two samples: varint timestamp and raw value, then uvarint delta and XOR value.
    #[cold]
    #[inline(never)]
    fn read_first_samples(&mut self) -> Option<(i64, f64)> {
        // Both start on a byte boundary: after the 2-byte count, and after a whole-byte varint
        // and 64 raw bits.
        let mut byte_index = self.bit_position / 8;
        let result = if self.read == 0 {
            uvarint_at(self.data, &mut byte_index).and_then(|raw| {
                self.timestamp = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
                let bytes = self
                    .data
                    .get(byte_index..byte_index + 8)
                    .ok_or("bit stream ends early")?;
                let mut raw_value = [0u8; 8];
                raw_value.copy_from_slice(bytes);
                self.value_bits = u64::from_be_bytes(raw_value);
                byte_index += 8;
                Ok(())
            })
        } else {
            uvarint_at(self.data, &mut byte_index).map(|delta| {
                self.delta = delta;
                self.timestamp = self.timestamp.wrapping_add(delta as i64);
            })
        };
        if let Err(detail) = result {
            self.fail(byte_index * 8, detail.to_owned());
            return None;
        }
        self.bit_position = byte_index * 8;
        if self.read == 1 {
            let mut position = self.bit_position;
            if !self.read_value(&mut position) {
                return None;
            }
            if position > self.data.len() * 8 {
                self.fail(self.bit_position, "bit stream ends early".to_owned());
                return None;
            }
            self.bit_position = position;
        }
        self.read += 1;
        Some((self.timestamp, f64::from_bits(self.value_bits)))
    }

    /// Commits a decoded sample ending at bit `position`, unless decoding it ran past the end.
    #[inline(always)]
    fn finish_sample(&mut self, start: usize, position: usize) -> Option<(i64, f64)> {
        if position > self.data.len() * 8 {
            self.fail(start, "bit stream ends early".to_owned());
            return None;
        }
        self.bit_position = position;
        self.read += 1;
        Some((self.timestamp, f64::from_bits(self.value_bits)))
    }

    /// Decodes an XOR-ed value at `*position`; `false` (with the error recorded) on a window
    /// no encoder writes.
    #[inline(always)]
    fn read_value(&mut self, position: &mut usize) -> bool {
        let word = load_word(self.data, *position);
        self.read_value_from(position, word, 0)
    }

    /// [`Self::read_value`] with the stream word at `*position` already loaded; `used` of its
    /// bits were consumed before (0 or 1), so `57 - used` of them are stream bits.
    #[inline(always)]
    fn read_value_from(&mut self, position: &mut usize, word: u64, used: u32) -> bool {
        let data = self.data;
        if word >> 63 == 0 {
            *position += 1;
            return true;
        }
        if word & (1 << 62) == 0 {
            // Same window as before.
            let significant = self.significant;
            let bits = if significant + used <= 55 {
                *position += 2 + significant as usize;
                (word << 2) >> (64 - significant)
            } else {
                *position += 2;
                read_bits(data, position, significant)
            };
            self.value_bits ^= bits << self.trailing;
            return true;
        }
        let leading = ((word >> 57) & 0x1f) as u32;
        let raw_count = ((word >> 51) & 0x3f) as u32;
        let significant = if raw_count == 0 { 64 } else { raw_count };
        if leading + significant > 64 {
            self.fail(
                *position,
                format!("window of {leading} leading zeros and {significant} significant bits"),
            );
            return false;
        }
        self.significant = significant;
        self.trailing = 64 - leading - significant;
        let bits = if significant + used <= 44 {
            *position += 13 + significant as usize;
            (word << 13) >> (64 - significant)
        } else {
            *position += 13;
            read_bits(data, position, significant)
        };
        self.value_bits ^= bits << self.trailing;
        true
    }
}

impl Iterator for XorIterator<'_> {
    type Item = (i64, f64);

    #[inline]
    fn next(&mut self) -> Option<(i64, f64)> {
        if self.read >= self.limit {
            return None;
        }
        if self.read < 2 {
            return self.read_first_samples();
        }
        let data = self.data;
        let start = self.bit_position;
        let mut position = start;
        let word = load_word(data, position);
        let dod = if word >> 63 == 0 {
            // The most common sample: no delta-of-delta; the value field follows in this word.
            position += 1;
            self.timestamp = self.timestamp.wrapping_add(self.delta as i64);
            if !self.read_value_from(&mut position, word << 1, 1) {
                return None;
            }
            return self.finish_sample(start, position);
        } else {
            match (!word).leading_zeros() {
                1 => {
                    position += 16;
                    sign_extend((word << 2) >> 50, 14)
                }
                2 => {
                    position += 20;
                    sign_extend((word << 3) >> 47, 17)
                }
                3 => {
                    position += 24;
                    sign_extend((word << 4) >> 44, 20)
                }
                _ => {
                    position += 4;
                    read_bits(data, &mut position, 64) as i64
                }
            }
        };
        self.delta = self.delta.wrapping_add(dod as u64);
        self.timestamp = self.timestamp.wrapping_add(self.delta as i64);
        if !self.read_value(&mut position) {
            return None;
        }
        self.finish_sample(start, position)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(usize::from(self.limit - self.read)))
    }
}

/// An n-bit delta-of-delta field: values above 2^(n-1) are negative numbers in n-bit two's
/// complement (the most positive value fits, the most negative does not).
#[inline(always)]
fn sign_extend(raw: u64, bits: u32) -> i64 {
    if raw > 1 << (bits - 1) {
        raw.wrapping_sub(1 << bits) as i64
    } else {
        raw as i64
    }
}

/// Reads an unsigned LEB128 value from whole bytes at `*byte_index`, advancing it past the
/// bytes read.
fn uvarint_at(data: &[u8], byte_index: &mut usize) -> Result<u64, &'static str> {
    let mut value = 0u64;
    for index in 0..10u32 {
        let byte = *data.get(*byte_index).ok_or("bit stream ends early")?;
        if index == 9 && byte > 1 {
            return Err("uvarint overflows 64 bits");
        }
        *byte_index += 1;
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err("uvarint longer than 10 bytes")
}

/// Why the batch decoder stopped.
enum Fault {
    /// The sample starting at this bit ran past the end of the data.
    EndsEarly(usize),
    /// A value window no encoder writes, at this bit.
    Window {
        position: usize,
        leading: u32,
        significant: u32,
    },
}

/// Bytes the batch decoder reads from a sample's first byte: the longest sample (a 64-bit
/// delta-of-delta and a new 64-bit value window, 145 bits from any bit of its first byte) plus
/// a word load, rounded up so offsets masked to 0..16 stay in bounds without a check.
const WINDOW: usize = 24;

/// The 64 bits from `bit` of `window` (below 128), left-aligned; the first `64 - bit % 8` of
/// them are window bits, the rest zeros.
#[inline(always)]
fn window_word(window: &[u8; WINDOW], bit: usize) -> u64 {
    // The mask never changes a valid offset; it lets the compiler drop the bounds check.
    let offset = (bit >> 3) & 15;
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&window[offset..offset + 8]);
    u64::from_be_bytes(bytes) << (bit & 7)
}

/// All 64 window bits from `bit` of `window` (below 128).
#[inline(always)]
fn window_word64(window: &[u8; WINDOW], bit: usize) -> u64 {
    let offset = (bit >> 3) & 15;
    // The bits of the ninth byte that the shift left out; `>> 8` leaves none.
    let spill = u64::from(window[offset + 8]) >> (8 - (bit & 7));
    window_word(window, bit) | spill
}

/// Decodes samples after the second from `bytes` while `remaining > 0` and each sample's first
/// byte starts a whole [`WINDOW`]. With `CHECK_END`, samples ending past bit `end` are an
/// error; without, the caller guarantees every window lies within the data, where no sample
/// can end past it. Returns the state after the last sample decoded and the samples left.
#[inline(always)]
fn run_windows<const CHECK_END: bool, F: FnMut(i64, f64)>(
    bytes: &[u8],
    end: usize,
    mut state: DecodeState,
    mut remaining: usize,
    visit: &mut F,
) -> (DecodeState, usize, Option<Fault>) {
    if remaining == 0 {
        return (state, remaining, None);
    }
    if let Err(stop) = state.next_in::<CHECK_END>(bytes, end) {
        return (state, remaining, stop);
    }
    loop {
        visit(state.timestamp, f64::from_bits(state.value_bits));
        remaining -= 1;
        if remaining == 0 {
            return (state, remaining, None);
        }
        if let Err(stop) = state.next_in::<CHECK_END>(bytes, end) {
            return (state, remaining, stop);
        }
    }
}

/// Ones over the value window with `leading` zero bits above it and `trailing` below.
#[inline(always)]
fn window_mask(leading: u32, trailing: u32) -> u64 {
    (u64::MAX >> leading) & (u64::MAX << trailing)
}

/// The batch decoder's state, kept in registers: the leading/trailing window is held as the
/// shift and mask that place its bits.
#[derive(Clone, Copy)]
struct DecodeState {
    position: usize,
    timestamp: i64,
    delta: u64,
    value_bits: u64,
    /// Significant bits of the value window (64 before any window is set).
    significant: u32,
    /// Leading zero bits of the value window.
    leading: u32,
    /// Ones over the value window.
    mask: u64,
}

impl DecodeState {
    /// Decodes the sample at `position` from `bytes` if a whole [`WINDOW`] starts at its
    /// first byte: `Err(None)` when none does, `Err(Some(fault))` when the sample is corrupt
    /// or (with `CHECK_END`) ends past bit `end`.
    #[inline(always)]
    fn next_in<const CHECK_END: bool>(
        &mut self,
        bytes: &[u8],
        end: usize,
    ) -> Result<(), Option<Fault>> {
        let window = bytes
            .get(self.position / 8..)
            .and_then(|rest| rest.first_chunk::<WINDOW>())
            .ok_or(None)?;
        let start = self.position;
        self.step(window).map_err(Some)?;
        if CHECK_END && self.position > end {
            return Err(Some(Fault::EndsEarly(start)));
        }
        Ok(())
    }

    /// Decodes one sample after the second from `window`, which starts at the byte holding
    /// `position`. May leave `position` past the end of the data (bits there read as zero);
    /// the caller checks.
    ///
    /// Branches on the control bits rather than selecting without them: a predicted branch
    /// lets the next sample's loads start before this sample's bits arrive, where a select
    /// chains every sample's position to the previous load.
    #[inline(always)]
    fn step(&mut self, window: &[u8; WINDOW]) -> Result<(), Fault> {
        let first = self.position & 7;
        let word = window_word(window, first);
        // Where the value field starts (from the window's first bit), and its first 56 or
        // more bits.
        let (value_at, value_word) = if word >> 63 == 0 {
            (first + 1, word << 1)
        } else {
            let (dod, length) = match (!word).leading_zeros() {
                1 => (sign_extend((word << 2) >> 50, 14), 16),
                2 => (sign_extend((word << 3) >> 47, 17), 20),
                3 => (sign_extend((word << 4) >> 44, 20), 24),
                _ => (window_word64(window, first + 4) as i64, 68),
            };
            self.delta = self.delta.wrapping_add(dod as u64);
            (first + length, window_word(window, first + length))
        };
        self.timestamp = self.timestamp.wrapping_add(self.delta as i64);
        let base = self.position - first;
        if value_word >> 63 == 0 {
            self.position = base + value_at + 1;
            return Ok(());
        }
        if value_word & (1 << 62) == 0 {
            // Same window as before.
            let significant = self.significant;
            let bits = if significant <= 54 {
                value_word << 2
            } else {
                window_word64(window, value_at + 2)
            };
            self.value_bits ^= (bits >> self.leading) & self.mask;
            self.position = base + value_at + 2 + significant as usize;
            return Ok(());
        }
        let leading = ((value_word >> 57) & 0x1f) as u32;
        // 6 bits of significant-bit count, 0 meaning 64.
        let significant = (((value_word >> 51) as u32).wrapping_sub(1) & 0x3f) + 1;
        if leading + significant > 64 {
            return Err(Fault::Window {
                position: base + value_at,
                leading,
                significant,
            });
        }
        self.significant = significant;
        self.leading = leading;
        self.mask = window_mask(leading, 64 - leading - significant);
        let bits = if significant <= 43 {
            value_word << 13
        } else {
            window_word64(window, value_at + 13)
        };
        self.value_bits ^= (bits >> leading) & self.mask;
        self.position = base + value_at + 13 + significant as usize;
        Ok(())
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
