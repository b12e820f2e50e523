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

/// Builds one XOR chunk, byte-identical to Prometheus' encoder.
#[derive(Debug, Clone)]
pub struct XorEncoder {
    stream: BitWriter,
    num_samples: u16,
    last_timestamp: i64,
    last_value_bits: u64,
    last_delta: u64,
    /// Ones over the current value window (bits an XOR-ed value may have to be written with
    /// control `10`); 0 before any window is set, so the first value always sets one.
    window: u64,
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
    #[inline]
    pub fn new() -> Self {
        Self {
            stream: BitWriter::with_header(HEADER_BYTES, INITIAL_CAPACITY),
            num_samples: 0,
            last_timestamp: 0,
            last_value_bits: 0,
            last_delta: 0,
            window: 0,
            leading: 0,
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
        if self.num_samples.wrapping_sub(2) < Self::MAX_SAMPLES - 2 {
            // Every sample after the second, until the chunk is full.
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
        } else {
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
                _ => return false,
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

    #[inline(always)]
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
    ///
    /// The three encodings (unchanged value, bits inside the previous window, a new window)
    /// are all computed and one is selected without a branch: which one a sample takes is
    /// close to random for real series, and a mispredicted branch costs more than the few
    /// instructions of the encodings not taken.
    #[inline(always)]
    fn write_value(&mut self, value_bits: u64, prefix: u64, prefix_count: u32) {
        let xor = value_bits ^ self.last_value_bits;
        // A new window: leading zeros must fit 5 bits. For `xor == 0` these are meaningless
        // (and never selected).
        let leading = xor.leading_zeros().min(31);
        let trailing = xor.trailing_zeros() & 63;
        let new_significant = 64u32.wrapping_sub(leading + trailing);
        // Control `11`, 5 bits of leading zeros, 6 bits of significant-bit count (64 wraps
        // to 0).
        let new_head = (prefix << 13)
            | (0b11 << 11)
            | (u64::from(leading) << 6)
            | u64::from(new_significant & 0x3f);
        // Prometheus' test "at least as many leading and trailing zeros as the window" is
        // "no bit outside the window" (leading zeros count at most 31, and so does the
        // window's); a zero XOR passes it too and is told apart below.
        let reuse = xor & !self.window == 0;
        // Control `10`, then the bits inside the previous window.
        let old_significant = 64 - u32::from(self.leading) - u32::from(self.trailing);
        let old_trailing = u32::from(self.trailing);
        let new_window = (u64::MAX >> leading) & (u64::MAX << trailing);
        let (mut head, mut head_count, mut significant, shift) = if reuse {
            (
                (prefix << 2) | 0b10,
                prefix_count + 2,
                old_significant,
                old_trailing,
            )
        } else {
            (new_head, prefix_count + 13, new_significant, trailing)
        };
        self.window = if reuse { self.window } else { new_window };
        self.leading = if reuse { self.leading } else { leading as u8 };
        self.trailing = if reuse { self.trailing } else { trailing as u8 };
        if xor == 0 {
            // Control `0` alone.
            head = prefix << 1;
            head_count = prefix_count + 1;
            significant = 0;
        }
        // No bits outside the window, so nothing above `significant` (and 0 for a zero XOR).
        let payload = xor >> shift;
        let count = head_count + significant;
        if count <= 64 {
            // `head_count` is at least 1, so `significant` is below 64 here.
            self.stream
                .write_bits((head << significant) | payload, count);
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
/// Each sample is decoded from a [`WINDOW`] of bytes starting at its first byte, which holds
/// the longest sample whatever its bit offset, so no read inside a sample needs a bounds
/// check; the last few samples of a chunk, whose window would run past the data, are decoded
/// from a zero-padded copy and checked against the end. [`XorIterator::for_each_sample`] keeps
/// the whole decoder state in registers across a chunk; [`Iterator::next`] decodes one sample
/// per call the same way.
#[derive(Debug, Clone)]
pub struct XorIterator<'a> {
    data: &'a [u8],
    /// Absolute file offset of `data[0]`, for errors.
    base: u64,
    /// The count the header announces.
    total: u16,
    /// Samples to yield: `total`, or fewer once an error stopped iteration.
    limit: u16,
    read: u16,
    /// Where the next sample starts and the values it is decoded against.
    state: DecodeState,
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
            data,
            base,
            total: 0,
            limit: 0,
            read: 0,
            state: DecodeState::START,
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
    /// decoding, if any. The fastest way through a chunk: the decoder state stays in registers
    /// for the whole chunk, and nothing inside the loop calls a function (a caller's `f64`
    /// running total can stay in a register too), where [`Iterator::next`] stores and reloads
    /// the state per sample.
    #[inline]
    pub fn for_each_sample<F: FnMut(i64, f64)>(mut self, mut visit: F) -> Result<(), DecodeError> {
        if let Err(fault) = self.decode_with(&mut visit) {
            return Err(self.into_error(fault));
        }
        match self.error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// The loop of [`Self::for_each_sample`]: the first two samples one at a time, the rest
    /// with the state in locals.
    #[inline(always)]
    fn decode_with<F: FnMut(i64, f64)>(&mut self, visit: &mut F) -> Result<(), Fault> {
        while self.read < self.limit && self.read < 2 {
            let (t, v) = self.first_sample()?;
            visit(t, v);
        }
        self.decode_rest(visit)
    }

    /// The samples after the first two, with the state in locals for the whole loop.
    ///
    /// The bulk of the chunk is decoded straight from `data` while a whole [`WINDOW`] of bytes
    /// follows the sample's first byte, so no sample can run past the end there; the last few
    /// bytes are copied into a zero-padded buffer and decoded by the same loop, which then has
    /// to check where each sample ends.
    #[inline(always)]
    fn decode_rest<F: FnMut(i64, f64)>(&mut self, visit: &mut F) -> Result<(), Fault> {
        let data = self.data;
        let remaining = usize::from(self.limit - self.read);
        let (mut state, mut remaining, mut fault) =
            run_windows::<false, F>(data, 0, self.state, remaining, visit);
        if fault.is_none() && remaining > 0 {
            // Fewer than WINDOW bytes are left: decode them from a copy of the last WINDOW
            // bytes padded with zeros, where every sample has a whole window and reads past the
            // end see zeros. The samples left start past `data.len() - WINDOW` (so the
            // subtraction below cannot underflow).
            let mut padded = [0u8; 2 * WINDOW];
            let byte = data.len().saturating_sub(WINDOW);
            if let Some(copy) = padded.first_chunk_mut::<WINDOW>() {
                *copy = padded_window(data, byte);
            }
            let base = byte * 8;
            state.position -= base;
            (state, remaining, fault) =
                run_windows::<true, F>(&padded, data.len() * 8 - base, state, remaining, visit);
            state.position += base;
            fault = match fault {
                Some(fault) => Some(fault.moved_by(base)),
                // Unreachable (every sample in the padded copy has a window and the end check
                // stops the loop before it runs out), but a stop with samples left is an error.
                None if remaining > 0 => Some(Fault::EndsEarly(state.position)),
                None => None,
            };
        }
        self.read = self.limit - remaining as u16;
        self.state = state;
        match fault {
            Some(fault) => Err(fault),
            None => Ok(()),
        }
    }

    /// Decodes sample 0 or 1, whose fields start on a byte boundary (after the 2-byte count,
    /// and after a whole-byte varint and 64 raw bits): a zig-zag varint timestamp and the raw
    /// value, then a uvarint delta and an XOR-ed value.
    #[inline(always)]
    fn first_sample(&mut self) -> Result<(i64, f64), Fault> {
        let data = self.data;
        let state = &mut self.state;
        let start = state.position;
        let mut byte = start / 8;
        let varint = |byte: &mut usize| {
            uvarint_at(data, byte).map_err(|detail| Fault::Varint {
                position: *byte * 8,
                detail,
            })
        };
        if self.read == 0 {
            let raw = varint(&mut byte)?;
            state.timestamp = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
            let value = data
                .get(byte..)
                .and_then(|rest| rest.first_chunk::<8>())
                .ok_or(Fault::EndsEarly(byte * 8))?;
            state.value_bits = u64::from_be_bytes(*value);
            state.position = (byte + 8) * 8;
        } else {
            let delta = varint(&mut byte)?;
            state.delta = delta;
            state.timestamp = state.timestamp.wrapping_add(delta as i64);
            let window = padded_window(data, byte);
            let value_word = window_word(&window, 0);
            let mut next = *state;
            next.position = byte * 8;
            next.value(byte * 8, value_word, |offset| {
                window_word64(&window, offset as usize)
            })?;
            if next.position > data.len() * 8 {
                return Err(Fault::EndsEarly(byte * 8));
            }
            *state = next;
        }
        self.read += 1;
        Ok((state.timestamp, f64::from_bits(state.value_bits)))
    }

    /// Decodes a sample after the second at the current position.
    #[inline(always)]
    fn next_sample(&mut self) -> Result<(i64, f64), Fault> {
        let data = self.data;
        let mut state = self.state;
        let byte = state.position / 8;
        match data
            .get(byte..)
            .and_then(|rest| rest.first_chunk::<WINDOW>())
        {
            Some(window) => state.step(window)?,
            None => {
                // Near the end: the same decoding from a zero-padded copy, then the end check.
                let start = state.position;
                state.step(&padded_window(data, byte))?;
                if state.position > data.len() * 8 {
                    return Err(Fault::EndsEarly(start));
                }
            }
        }
        self.state = state;
        self.read += 1;
        Ok((state.timestamp, f64::from_bits(state.value_bits)))
    }

    /// Where decoding stands, for a decoder that carries on from here (the batch decoder takes
    /// over after the first two samples): the next bit to read, the last timestamp, delta and
    /// value bits, and the value window as leading zeros and significant bits.
    pub(super) fn resume_point(&self) -> ResumePoint {
        let state = self.state;
        ResumePoint {
            position: state.position,
            timestamp: state.timestamp,
            delta: state.delta,
            value_bits: state.value_bits,
            leading: state.drop - state.trailing,
            significant: 64 - state.drop,
        }
    }

    /// Stops iteration with the error `fault` describes.
    #[inline(always)]
    fn fail(&mut self, fault: Fault) {
        self.error = Some(self.error_for(fault));
        // Nothing more is yielded.
        self.limit = self.read;
    }

    /// The error `fault` describes, consuming the iterator.
    #[cold]
    #[inline(never)]
    fn into_error(self, fault: Fault) -> DecodeError {
        self.error_for(fault)
    }

    /// The error for `fault`. The text is built out of line from plain values, so the
    /// iterator's address never escapes and a caller's loop can keep its fields in registers.
    #[inline(always)]
    fn error_for(&self, fault: Fault) -> DecodeError {
        fault_error(fault, self.base, self.data.len(), self.read, self.total)
    }
}

/// The error for `fault` in sample `read` of `total`, at the byte holding its bit (at most
/// `data_len`) counted from file offset `base`.
#[cold]
#[inline(never)]
fn fault_error(fault: Fault, base: u64, data_len: usize, read: u16, total: u16) -> DecodeError {
    let (bit_position, detail) = match fault {
        Fault::EndsEarly(position) => (position, "bit stream ends early".to_owned()),
        Fault::Varint { position, detail } => (position, detail.to_owned()),
        Fault::Window {
            position,
            leading,
            significant,
        } => (
            position,
            format!("window of {leading} leading zeros and {significant} significant bits"),
        ),
    };
    let byte = (bit_position / 8).min(data_len);
    DecodeError::new(
        base + byte as u64,
        format!("{detail} in sample {read} of {total}"),
    )
}

impl Iterator for XorIterator<'_> {
    type Item = (i64, f64);

    #[inline]
    fn next(&mut self) -> Option<(i64, f64)> {
        if self.read >= self.limit {
            return None;
        }
        let sample = if self.read < 2 {
            self.first_sample()
        } else {
            self.next_sample()
        };
        match sample {
            Ok(sample) => Some(sample),
            Err(fault) => {
                self.fail(fault);
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(usize::from(self.limit - self.read)))
    }
}

/// The decoder state [`XorIterator::resume_point`] hands over.
#[derive(Debug, Clone, Copy)]
pub(super) struct ResumePoint {
    /// Next bit to read, counted from the chunk's first byte.
    pub(super) position: usize,
    pub(super) timestamp: i64,
    pub(super) delta: u64,
    pub(super) value_bits: u64,
    /// Leading zeros of the value window (0 before any window is set).
    pub(super) leading: u32,
    /// Significant bits of the value window (64 before any window is set).
    pub(super) significant: u32,
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
#[inline(always)]
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

/// Why decoding stopped before the count the header announces: plain data, turned into a
/// [`DecodeError`] (whose text needs an allocation) only outside the decoding loops.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The sample starting at this bit ran past the end of the data.
    EndsEarly(usize),
    /// A value window no encoder writes, at this bit.
    Window {
        position: usize,
        leading: u32,
        significant: u32,
    },
    /// A malformed varint of the first two samples, at this bit.
    Varint {
        position: usize,
        detail: &'static str,
    },
}

impl Fault {
    /// The same fault with its bit position `bits` further on.
    fn moved_by(self, bits: usize) -> Self {
        match self {
            Self::EndsEarly(position) => Self::EndsEarly(position + bits),
            Self::Window {
                position,
                leading,
                significant,
            } => Self::Window {
                position: position + bits,
                leading,
                significant,
            },
            Self::Varint { position, detail } => Self::Varint {
                position: position + bits,
                detail,
            },
        }
    }
}

/// Bytes the decoder reads from a sample's first byte: the longest sample (a 64-bit
/// delta-of-delta and a new 64-bit value window, 145 bits from any bit of its first byte) plus
/// a word load, rounded up so offsets masked to 0..16 stay in bounds without a check.
const WINDOW: usize = 24;

/// The [`WINDOW`] bytes of `data` from byte `start`, zeros past its end. Copied byte by byte
/// when the data ends inside the window, so the copy never calls `memcpy` (a call would make
/// the decoding loops spill a caller's floating-point state around it).
#[inline(always)]
fn padded_window(data: &[u8], start: usize) -> [u8; WINDOW] {
    let rest = data.get(start..).unwrap_or_default();
    match rest.first_chunk::<WINDOW>() {
        Some(window) => *window,
        None => std::array::from_fn(|index| rest.get(index).copied().unwrap_or(0)),
    }
}

/// The big-endian word at byte `offset` (below 16) of `window`.
#[inline(always)]
fn window_u64(window: &[u8; WINDOW], offset: usize) -> u64 {
    // The mask never changes a valid offset; it lets the compiler drop the bounds check.
    let offset = offset & 15;
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&window[offset..offset + 8]);
    u64::from_be_bytes(bytes)
}

/// The 64 bits from `bit` of `window` (below 128), left-aligned; the first `64 - bit % 8` of
/// them are window bits, the rest zeros.
#[inline(always)]
fn window_word(window: &[u8; WINDOW], bit: usize) -> u64 {
    window_u64(window, bit >> 3) << (bit & 7)
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

/// The decoder's state, kept in registers by the decoding loop. The value window is held as
/// the two shifts that place its bits: a left-aligned field of `64 - drop` significant bits
/// shifted right by `drop`, then left by `trailing`.
#[derive(Debug, Clone, Copy)]
struct DecodeState {
    /// Next bit to read.
    position: usize,
    timestamp: i64,
    delta: u64,
    value_bits: u64,
    /// 64 minus the significant bits of the value window (0 before any window is set).
    drop: u32,
    /// Trailing zero bits of the value window.
    trailing: u32,
}

impl DecodeState {
    /// Before the first sample: after the 2-byte count, no window set (all 64 bits).
    const START: Self = Self {
        position: HEADER_BYTES * 8,
        timestamp: 0,
        delta: 0,
        value_bits: 0,
        drop: 0,
        trailing: 0,
    };

    /// Decodes the sample at `position` from `bytes` if a whole [`WINDOW`] starts at its
    /// first byte: `Err(None)` when none does, `Err(Some(fault))` when the sample is corrupt
    /// or (with `CHECK_END`) ends past bit `end`.
    #[inline(always)]
    fn next_in<const CHECK_END: bool>(
        &mut self,
        bytes: &[u8],
        end: usize,
    ) -> Result<(), Option<Fault>> {
        let byte = self.position / 8;
        let window = bytes
            .get(byte..byte + WINDOW)
            .and_then(|window| window.first_chunk::<WINDOW>())
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
        if word >> 63 == 0 {
            // No delta-of-delta: the value field starts at bit `first + 1` (at most 8) of the
            // window, and `word << 1` holds its bits up to the window's 64th; the wide reads
            // add the bits after that from the window's second word.
            self.timestamp = self.timestamp.wrapping_add(self.delta as i64);
            let value_word = word << 1;
            let at_in_window = first as u32 + 1;
            return self.value(self.position + 1, value_word, |offset| {
                let second = window_u64(window, 8);
                (value_word << offset) | (second >> (64 - at_in_window - offset))
            });
        }
        let (dod, length) = match (!word).leading_zeros() {
            1 => (sign_extend((word << 2) >> 50, 14), 16),
            2 => (sign_extend((word << 3) >> 47, 17), 20),
            3 => (sign_extend((word << 4) >> 44, 20), 24),
            _ => (window_word64(window, first + 4) as i64, 68),
        };
        self.delta = self.delta.wrapping_add(dod as u64);
        self.timestamp = self.timestamp.wrapping_add(self.delta as i64);
        let at_in_window = first + length;
        self.value(
            self.position + length,
            window_word(window, at_in_window),
            |offset| window_word64(window, at_in_window + offset as usize),
        )
    }

    /// Decodes the XOR-ed value field at stream bit `at`; `value_word` holds the stream bits
    /// from there on (at least 56 of them) and `read64(offset)` all 64 bits from `offset`
    /// (2 or 13) bits further. Leaves `position` after the field.
    #[inline(always)]
    fn value(
        &mut self,
        at: usize,
        value_word: u64,
        read64: impl Fn(u32) -> u64,
    ) -> Result<(), Fault> {
        if value_word >> 63 == 0 {
            self.position = at + 1;
            return Ok(());
        }
        if (value_word << 1) >> 63 == 0 {
            // Same window as before: `64 - drop` significant bits after the control bits.
            let drop = self.drop;
            let bits = if drop >= 10 {
                value_word << 2
            } else {
                read64(2)
            };
            self.value_bits ^= (bits >> drop) << self.trailing;
            self.position = at + 66 - drop as usize;
            return Ok(());
        }
        let leading = ((value_word >> 57) & 0x1f) as u32;
        // 6 bits of significant-bit count, 0 meaning 64.
        let significant = (((value_word >> 51) as u32).wrapping_sub(1) & 0x3f) + 1;
        if leading + significant > 64 {
            return Err(Fault::Window {
                position: at,
                leading,
                significant,
            });
        }
        let drop = 64 - significant;
        self.drop = drop;
        self.trailing = drop - leading;
        let bits = if significant <= 43 {
            value_word << 13
        } else {
            read64(13)
        };
        self.value_bits ^= (bits >> drop) << self.trailing;
        self.position = at + 13 + significant as usize;
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
