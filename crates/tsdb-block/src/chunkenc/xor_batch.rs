//! Decoding many XOR chunks in one call: [`decode_xor_chunks`].
//!
//! One chunk's samples form a chain (each sample starts where the previous one ends), so a
//! single chunk decodes one sample at a time whatever the hardware. Many chunks do not: with
//! AVX-512 (x86-64, detected at run time) eight chunks are decoded side by side, one per
//! 64-bit lane, every lane decoding its next sample with the same instructions and no branch
//! on the control bits. A lane's window is gathered from its chunk (16 bytes from the byte
//! holding the sample's first bit, which holds any sample but one with a 64-bit
//! delta-of-delta), the sample is decoded with lane masks in place of branches, and the
//! timestamp and value are scattered to the sample's slot in the output columns (each chunk's
//! slots are known up front from the counts in the chunk headers).
//!
//! The scalar decoder keeps the rare and the hard parts: it decodes each chunk's first two
//! samples (varints on byte boundaries) and hands over its state, and a chunk in which a lane
//! meets anything else (a 64-bit delta-of-delta, a value window no encoder writes, a sample
//! running past the data) is decoded again by it from the start. Any error makes the whole
//! batch go through the scalar decoder, so results and errors are exactly those of
//! [`XorIterator::decode_columns`] chunk after chunk. A lane whose 16-byte window would run
//! past its chunk's data carries on from a zero-padded copy of the chunk's last bytes and
//! checks where each sample ends, as the scalar decoder does.

use super::xor::XorIterator;
use crate::encoding::DecodeError;

/// A chunk of a batch that failed to decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchDecodeError {
    /// Index of the chunk in the batch.
    pub chunk: usize,
    /// What went wrong, at an offset from the chunk's first byte.
    pub error: DecodeError,
}

/// Fewer chunks than this go through the scalar decoder: the lanes' set-up would cost more
/// than it saves (measured on an AVX-512 Xeon: with 4 chunks the lanes take 5.7 ns a sample
/// against 4.5 chunk by chunk, with 6 chunks 3.9 against 4.5, with 16 chunks 2.2).
const MIN_BATCH: usize = 6;

/// Whether [`decode_xor_chunks`] decodes `chunks` chunks side by side on this CPU (AVX-512 and
/// enough chunks); when it does not, it is chunk-by-chunk decoding, and a caller that wants
/// samples in another shape than two columns may as well decode each chunk into that shape.
pub fn decodes_side_by_side(chunks: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        chunks >= MIN_BATCH
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512cd")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // No lanes on this architecture.
        let _ = (chunks, MIN_BATCH);
        false
    }
}

/// Decodes the XOR chunks `chunks` one after the other, appending their samples to
/// `timestamps` and `values` (which must be equally long); the same as
/// [`XorIterator::decode_columns`] on each chunk in turn, several times faster on a CPU with
/// AVX-512 (see [`decodes_side_by_side`]). On a corrupt chunk, returns its index and error; the
/// columns then hold the samples before the error, as chunk-by-chunk decoding leaves them.
pub fn decode_xor_chunks(
    chunks: &[&[u8]],
    timestamps: &mut Vec<i64>,
    values: &mut Vec<f64>,
) -> Result<(), BatchDecodeError> {
    #[cfg(target_arch = "x86_64")]
    if timestamps.len() == values.len() && decodes_side_by_side(chunks.len()) {
        // SAFETY: the CPU has the features `avx512::decode` is compiled for (checked by
        // `decodes_side_by_side`).
        if unsafe { avx512::decode(chunks, timestamps, values) } {
            return Ok(());
        }
    }
    decode_scalar(chunks, timestamps, values)
}

/// [`decode_xor_chunks`] one chunk at a time.
fn decode_scalar(
    chunks: &[&[u8]],
    timestamps: &mut Vec<i64>,
    values: &mut Vec<f64>,
) -> Result<(), BatchDecodeError> {
    for (chunk, data) in chunks.iter().enumerate() {
        XorIterator::new(data)
            .decode_columns(timestamps, values)
            .map_err(|error| BatchDecodeError { chunk, error })?;
    }
    Ok(())
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m512i, __mmask8, _mm512_add_epi64, _mm512_and_si512, _mm512_cmpeq_epi64_mask,
        _mm512_cmpgt_epu64_mask, _mm512_cmplt_epi64_mask, _mm512_loadu_si512, _mm512_lzcnt_epi64,
        _mm512_mask_add_epi64, _mm512_mask_blend_epi64, _mm512_mask_i64gather_epi64,
        _mm512_mask_i64scatter_epi64, _mm512_mask_mov_epi64, _mm512_mask_xor_epi64,
        _mm512_min_epu64, _mm512_or_si512, _mm512_permutexvar_epi64, _mm512_set1_epi64,
        _mm512_setr_epi64, _mm512_setzero_si512, _mm512_shuffle_epi8, _mm512_sllv_epi64,
        _mm512_srli_epi64, _mm512_srlv_epi64, _mm512_storeu_si512, _mm512_sub_epi64,
        _mm512_xor_si512,
    };

    use super::super::xor::XorIterator;

    /// Chunks per group: the 64-bit lanes of a 512-bit vector.
    const LANES: usize = 8;
    /// Groups decoded in turn: while one group waits for its gathers, the other computes.
    const GROUPS: usize = 2;
    /// Bytes gathered per sample: two big-endian words from the sample's first byte.
    const GATHER_BYTES: usize = 16;
    /// A lane's zero-padded copy of its chunk's last bytes: fewer than [`GATHER_BYTES`] bytes
    /// of data, then room for a whole gather from any byte a valid sample starts at.
    const PAD_BYTES: usize = 2 * GATHER_BYTES;

    /// One value per lane, as vectors are spilled while lanes change chunks.
    #[derive(Clone, Copy, Default)]
    #[repr(C, align(64))]
    struct Lanes([u64; LANES]);

    /// A group's decoder state, spilled.
    #[derive(Default)]
    struct State {
        base: Lanes,
        limit: Lanes,
        end: Lanes,
        position: Lanes,
        timestamp: Lanes,
        delta: Lanes,
        value: Lanes,
        leading: Lanes,
        significant: Lanes,
        window: Lanes,
        remaining: Lanes,
        slot: Lanes,
    }

    /// A group's decoder state in vectors, one chunk per lane.
    #[derive(Clone, Copy)]
    struct Vectors {
        /// Address of the bytes the lane reads: its chunk, or its padded copy.
        base: __m512i,
        /// The last byte a gather may start at.
        limit: __m512i,
        /// Bits of data from `base`: no sample may end past this.
        end: __m512i,
        /// Next bit to read, from `base`.
        position: __m512i,
        timestamp: __m512i,
        delta: __m512i,
        value: __m512i,
        leading: __m512i,
        significant: __m512i,
        /// Ones over the value window's significant bits.
        window: __m512i,
        /// Samples left in the chunk.
        remaining: __m512i,
        /// Output slot of the lane's next sample.
        slot: __m512i,
    }

    impl Vectors {
        #[target_feature(enable = "avx512f,avx512bw,avx512cd")]
        #[inline]
        fn load(state: &State) -> Self {
            Self {
                base: load(&state.base),
                limit: load(&state.limit),
                end: load(&state.end),
                position: load(&state.position),
                timestamp: load(&state.timestamp),
                delta: load(&state.delta),
                value: load(&state.value),
                leading: load(&state.leading),
                significant: load(&state.significant),
                window: load(&state.window),
                remaining: load(&state.remaining),
                slot: load(&state.slot),
            }
        }

        #[target_feature(enable = "avx512f,avx512bw,avx512cd")]
        #[inline]
        fn store(&self, state: &mut State) {
            store(&mut state.base, self.base);
            store(&mut state.limit, self.limit);
            store(&mut state.end, self.end);
            store(&mut state.position, self.position);
            store(&mut state.timestamp, self.timestamp);
            store(&mut state.delta, self.delta);
            store(&mut state.value, self.value);
            store(&mut state.leading, self.leading);
            store(&mut state.significant, self.significant);
            store(&mut state.window, self.window);
            store(&mut state.remaining, self.remaining);
            store(&mut state.slot, self.slot);
        }
    }

    /// The batch's scalar bookkeeping: which chunk each lane decodes and where outputs go.
    /// Lanes are numbered across groups: lane `l` of group `g` is `g * LANES + l`.
    struct Batch<'a> {
        chunks: &'a [&'a [u8]],
        /// Output slot of each chunk's first sample.
        first_slot: Vec<usize>,
        next_chunk: usize,
        lane_chunk: [usize; GROUPS * LANES],
        /// Whether the lane reads its padded copy.
        padded: [bool; GROUPS * LANES],
        pads: [[u8; PAD_BYTES]; GROUPS * LANES],
        timestamps: *mut i64,
        values: *mut f64,
    }

    impl Batch<'_> {
        /// Writes sample `t, v` to output slot `slot`.
        ///
        /// # Safety
        /// `slot` is below the batch's sample total, for which the columns have capacity.
        unsafe fn write(&self, slot: usize, t: i64, v: f64) {
            // SAFETY: the caller keeps `slot` within the reserved capacity.
            unsafe {
                self.timestamps.add(slot).write(t);
                self.values.add(slot).write(v);
            }
        }

        /// Decodes chunk `chunk` whole with the scalar decoder into its slots; `false` if it
        /// is corrupt.
        fn decode_whole(&self, chunk: usize) -> bool {
            let data = self.chunks[chunk];
            let first = self.first_slot[chunk];
            let mut index = 0;
            let result = XorIterator::new(data).for_each_sample(|t, v| {
                // SAFETY: the decoder yields at most the header's count, the chunk's slots.
                unsafe { self.write(first + index, t, v) };
                index += 1;
            });
            result.is_ok()
        }

        /// Starts lane `lane` (`at` in its group's `state`) on the next chunk that has samples
        /// after its first two, decoding those first two (and whole chunks of at most two
        /// samples) on the way. `Some(false)` when no chunk is left, `None` on a corrupt chunk.
        fn refill(&mut self, lane: usize, at: usize, state: &mut State) -> Option<bool> {
            while let Some(&data) = self.chunks.get(self.next_chunk) {
                let chunk = self.next_chunk;
                self.next_chunk += 1;
                let first = self.first_slot[chunk];
                let mut decoder = XorIterator::new(data);
                let count = usize::from(decoder.num_samples());
                for index in 0..count.min(2) {
                    let (t, v) = decoder.next()?;
                    // SAFETY: `index` is below the chunk's count, within its slots.
                    unsafe { self.write(first + index, t, v) };
                }
                if count <= 2 {
                    continue;
                }
                let point = decoder.resume_point();
                let leading = u64::from(point.leading);
                let significant = u64::from(point.significant);
                let trailing = 64 - leading - significant;
                state.base.0[at] = data.as_ptr().expose_provenance() as u64;
                state.limit.0[at] = data.len().saturating_sub(GATHER_BYTES) as u64;
                state.end.0[at] = (data.len() * 8) as u64;
                state.position.0[at] = point.position as u64;
                state.timestamp.0[at] = point.timestamp as u64;
                state.delta.0[at] = point.delta;
                state.value.0[at] = point.value_bits;
                state.leading.0[at] = leading;
                state.significant.0[at] = significant;
                state.window.0[at] = (u64::MAX >> leading) & (u64::MAX << trailing);
                state.remaining.0[at] = (count - 2) as u64;
                state.slot.0[at] = (first + 2) as u64;
                self.lane_chunk[lane] = chunk;
                self.padded[lane] = false;
                return Some(true);
            }
            Some(false)
        }

        /// Moves lane `lane` (`at` in its group's `state`) onto a zero-padded copy of its
        /// chunk's bytes from the byte its next sample starts at.
        fn pad(&mut self, lane: usize, at: usize, state: &mut State) {
            let data = self.chunks[self.lane_chunk[lane]];
            let from = (state.position.0[at] / 8) as usize;
            let rest = data.get(from..).unwrap_or_default();
            let pad = &mut self.pads[lane];
            *pad = [0; PAD_BYTES];
            let copied = rest.len().min(PAD_BYTES);
            pad[..copied].copy_from_slice(&rest[..copied]);
            state.base.0[at] = pad.as_ptr().expose_provenance() as u64;
            state.limit.0[at] = (PAD_BYTES - GATHER_BYTES) as u64;
            state.end.0[at] = (rest.len() * 8) as u64;
            state.position.0[at] -= (from * 8) as u64;
            self.padded[lane] = true;
        }

        /// Sorts out the lanes of group `group` in `service` (chunk finished, or its window
        /// runs past the data) and `special` (a sample for the scalar decoder), returning the
        /// group's new state; `None` on a corrupt chunk.
        #[target_feature(enable = "avx512f,avx512bw,avx512cd")]
        #[inline(never)]
        #[cold]
        fn service(
            &mut self,
            group: usize,
            vectors: Vectors,
            active: &mut __mmask8,
            service: __mmask8,
            special: __mmask8,
        ) -> Option<Vectors> {
            let mut state = State::default();
            vectors.store(&mut state);
            for at in 0..LANES {
                let bit = 1 << at;
                if (service | special) & bit == 0 {
                    continue;
                }
                let lane = group * LANES + at;
                // A padded lane cannot outgrow its copy without overrunning its end first;
                // if one does, the scalar decoder judges the chunk.
                let whole = special & bit != 0 || (state.remaining.0[at] != 0 && self.padded[lane]);
                if whole {
                    if !self.decode_whole(self.lane_chunk[lane]) {
                        return None;
                    }
                } else if state.remaining.0[at] != 0 {
                    self.pad(lane, at, &mut state);
                    continue;
                }
                if !self.refill(lane, at, &mut state)? {
                    *active &= !bit;
                }
            }
            Some(Vectors::load(&state))
        }
    }

    /// Loads a spilled lane vector.
    #[target_feature(enable = "avx512f,avx512bw,avx512cd")]
    #[inline]
    fn load(lanes: &Lanes) -> __m512i {
        // SAFETY: `Lanes` is 64 bytes; the load is unaligned-tolerant.
        unsafe { _mm512_loadu_si512(std::ptr::from_ref(lanes).cast()) }
    }

    /// Spills a lane vector.
    #[target_feature(enable = "avx512f,avx512bw,avx512cd")]
    #[inline]
    fn store(lanes: &mut Lanes, vector: __m512i) {
        // SAFETY: `Lanes` is 64 bytes.
        unsafe { _mm512_storeu_si512(std::ptr::from_mut(lanes).cast(), vector) }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512cd")]
    #[inline]
    fn splat(value: u64) -> __m512i {
        _mm512_set1_epi64(value as i64)
    }

    /// Per-lane tables indexed by the delta-of-delta's leading one bits (capped at 4): `0`,
    /// `10` (14-bit field), `110` (17), `1110` (20), `1111` (64 bits, the scalar decoder's).
    #[target_feature(enable = "avx512f,avx512bw,avx512cd")]
    #[inline]
    fn table(entries: [i64; 5]) -> __m512i {
        let [a, b, c, d, e] = entries;
        _mm512_setr_epi64(a, b, c, d, e, e, e, e)
    }

    /// The values the sample step keeps in registers.
    #[derive(Clone, Copy)]
    struct Constants {
        zero: __m512i,
        one: __m512i,
        ones: __m512i,
        sixty_four: __m512i,
        byte_swap: __m512i,
        /// Bits of the delta-of-delta field with its control bits.
        dod_length: __m512i,
        /// Control bits before the field.
        dod_control: __m512i,
        /// 64 minus the field's bits (64 for none: a shift to zero).
        dod_shift: __m512i,
        /// 2^(n-1) - 1 and 2^n - 1 for an n-bit field: values above 2^(n-1) are negative,
        /// so `((raw + half) & full) - half` sign-extends them (and gives 0 for no field).
        dod_half: __m512i,
        dod_full: __m512i,
    }

    impl Constants {
        #[target_feature(enable = "avx512f,avx512bw,avx512cd")]
        #[inline]
        fn new() -> Self {
            // Reverses the bytes of each 64-bit element (`_mm512_shuffle_epi8` indexes within
            // 128-bit lanes): big-endian stream words.
            let control: [u8; 64] = std::array::from_fn(|index| {
                let in_lane = index % 16;
                ((in_lane / 8) * 8 + (7 - in_lane % 8)) as u8
            });
            // SAFETY: 64 bytes.
            let byte_swap = unsafe { _mm512_loadu_si512(control.as_ptr().cast()) };
            Self {
                zero: _mm512_setzero_si512(),
                one: splat(1),
                ones: splat(u64::MAX),
                sixty_four: splat(64),
                byte_swap,
                dod_length: table([1, 16, 20, 24, 68]),
                dod_control: table([0, 2, 3, 4, 0]),
                dod_shift: table([64, 50, 47, 44, 64]),
                dod_half: table([0, (1 << 13) - 1, (1 << 16) - 1, (1 << 19) - 1, 0]),
                dod_full: table([0, (1 << 14) - 1, (1 << 17) - 1, (1 << 20) - 1, 0]),
            }
        }
    }

    /// Decodes every active lane's next sample and writes it to the lane's slot. Returns the
    /// lanes that need the scalar side first, as `(service, special)`: `service` lanes have
    /// finished their chunk or have no whole window left in place, `special` lanes met a
    /// sample the lanes do not decode (a 64-bit delta-of-delta, a window no encoder writes, a
    /// sample running past the data). When either is non-empty nothing was changed.
    #[target_feature(enable = "avx512f,avx512bw,avx512cd")]
    #[inline]
    fn step(
        lanes: &mut Vectors,
        active: __mmask8,
        constants: &Constants,
        timestamps: *mut i64,
        values: *mut f64,
    ) -> (__mmask8, __mmask8) {
        let Constants {
            zero,
            one,
            ones,
            sixty_four,
            ..
        } = *constants;
        let byte = _mm512_srli_epi64::<3>(lanes.position);
        let service = active
            & (_mm512_cmpeq_epi64_mask(lanes.remaining, zero)
                | _mm512_cmpgt_epu64_mask(byte, lanes.limit));
        if service != 0 {
            return (service, 0);
        }
        let address = _mm512_add_epi64(lanes.base, byte);
        // SAFETY: every active lane's 16 bytes lie within its chunk or its padded copy
        // (`byte <= limit`); inactive lanes read nothing.
        let (first_word, second_word) = unsafe {
            (
                _mm512_mask_i64gather_epi64::<1>(zero, active, address, std::ptr::null()),
                _mm512_mask_i64gather_epi64::<1>(
                    zero,
                    active,
                    _mm512_add_epi64(address, splat(8)),
                    std::ptr::null(),
                ),
            )
        };
        let head = _mm512_shuffle_epi8(first_word, constants.byte_swap);
        let next = _mm512_shuffle_epi8(second_word, constants.byte_swap);
        let first = _mm512_and_si512(lanes.position, splat(7));
        let word = _mm512_sllv_epi64(head, first);
        // Delta-of-delta: the bucket from the leading one bits.
        let bucket = _mm512_min_epu64(_mm512_lzcnt_epi64(_mm512_xor_si512(word, ones)), splat(4));
        let dod_64 = _mm512_cmpeq_epi64_mask(bucket, splat(4));
        let dod_length = _mm512_permutexvar_epi64(bucket, constants.dod_length);
        let half = _mm512_permutexvar_epi64(bucket, constants.dod_half);
        let raw = _mm512_srlv_epi64(
            _mm512_sllv_epi64(
                word,
                _mm512_permutexvar_epi64(bucket, constants.dod_control),
            ),
            _mm512_permutexvar_epi64(bucket, constants.dod_shift),
        );
        let dod = _mm512_sub_epi64(
            _mm512_and_si512(
                _mm512_add_epi64(raw, half),
                _mm512_permutexvar_epi64(bucket, constants.dod_full),
            ),
            half,
        );
        // Value control: `0` unchanged, `10` the previous window, `11` a new one (5 bits of
        // leading zeros, 6 of significant bits with 0 meaning 64).
        let value_word = _mm512_sllv_epi64(word, dod_length);
        let changed = _mm512_cmplt_epi64_mask(value_word, zero);
        let new_window =
            changed & _mm512_cmplt_epi64_mask(_mm512_add_epi64(value_word, value_word), zero);
        let new_leading = _mm512_and_si512(_mm512_srli_epi64::<57>(value_word), splat(31));
        let new_significant = _mm512_add_epi64(
            _mm512_and_si512(
                _mm512_sub_epi64(_mm512_srli_epi64::<51>(value_word), one),
                splat(63),
            ),
            one,
        );
        let bad_window = new_window
            & _mm512_cmpgt_epu64_mask(_mm512_add_epi64(new_leading, new_significant), sixty_four);
        let leading = _mm512_mask_mov_epi64(lanes.leading, new_window, new_leading);
        let significant = _mm512_mask_mov_epi64(lanes.significant, new_window, new_significant);
        let header = _mm512_mask_blend_epi64(new_window, splat(2), splat(13));
        let value_length =
            _mm512_mask_blend_epi64(changed, one, _mm512_add_epi64(header, significant));
        let position = _mm512_add_epi64(lanes.position, _mm512_add_epi64(dod_length, value_length));
        let overrun = _mm512_cmpgt_epu64_mask(position, lanes.end);
        let special = active & (dod_64 | bad_window | overrun);
        if special != 0 {
            return (0, special);
        }
        let trailing = _mm512_sub_epi64(_mm512_sub_epi64(sixty_four, leading), significant);
        let window = _mm512_mask_mov_epi64(
            lanes.window,
            new_window,
            _mm512_and_si512(
                _mm512_srlv_epi64(ones, leading),
                _mm512_sllv_epi64(ones, trailing),
            ),
        );
        // The value bits: the 64 stream bits from the field's first bit (at most 7 + 24 + 13
        // bits into the 16 bytes), shifted into the window.
        let at = _mm512_add_epi64(_mm512_add_epi64(first, dod_length), header);
        let bits = _mm512_or_si512(
            _mm512_sllv_epi64(head, at),
            _mm512_srlv_epi64(next, _mm512_sub_epi64(sixty_four, at)),
        );
        let xor = _mm512_and_si512(_mm512_srlv_epi64(bits, leading), window);
        lanes.position = _mm512_mask_mov_epi64(lanes.position, active, position);
        lanes.delta = _mm512_mask_add_epi64(lanes.delta, active, lanes.delta, dod);
        lanes.timestamp =
            _mm512_mask_add_epi64(lanes.timestamp, active, lanes.timestamp, lanes.delta);
        lanes.value = _mm512_mask_xor_epi64(lanes.value, active & changed, lanes.value, xor);
        lanes.leading = leading;
        lanes.significant = significant;
        lanes.window = window;
        // SAFETY: each active lane's slot is one of its chunk's (samples remain), within the
        // reserved capacity.
        unsafe {
            _mm512_mask_i64scatter_epi64::<8>(timestamps, active, lanes.slot, lanes.timestamp);
            _mm512_mask_i64scatter_epi64::<8>(values.cast(), active, lanes.slot, lanes.value);
        }
        lanes.slot = _mm512_mask_add_epi64(lanes.slot, active, lanes.slot, one);
        lanes.remaining = _mm512_mask_add_epi64(lanes.remaining, active, lanes.remaining, ones);
        (0, 0)
    }

    /// Decodes `chunks` into the columns, sixteen chunks at a time; `false` (columns unchanged)
    /// when a chunk is corrupt, for the scalar decoder to redo.
    ///
    /// # Safety
    /// The CPU supports AVX-512F, AVX-512BW and AVX-512CD.
    #[target_feature(enable = "avx512f,avx512bw,avx512cd")]
    pub(super) unsafe fn decode(
        chunks: &[&[u8]],
        timestamps: &mut Vec<i64>,
        values: &mut Vec<f64>,
    ) -> bool {
        // Each chunk's slots, from the counts in the headers. A count the data cannot hold (a
        // sample takes at least 2 bits) is corrupt: the scalar decoder reports it.
        let mut first_slot = Vec::with_capacity(chunks.len());
        let mut total = 0usize;
        for data in chunks {
            let count = match data {
                [high, low, ..] => usize::from(u16::from_be_bytes([*high, *low])),
                _ => return false,
            };
            if count > data.len() * 4 {
                return false;
            }
            first_slot.push(total);
            total += count;
        }
        let start = timestamps.len();
        timestamps.reserve(total);
        values.reserve(total);
        let mut batch = Batch {
            chunks,
            first_slot,
            next_chunk: 0,
            lane_chunk: [0; GROUPS * LANES],
            padded: [false; GROUPS * LANES],
            pads: [[0; PAD_BYTES]; GROUPS * LANES],
            // SAFETY: `start` is the length, within the allocation.
            timestamps: unsafe { timestamps.as_mut_ptr().add(start) },
            // SAFETY: as above; the columns are equally long (checked by the caller).
            values: unsafe { values.as_mut_ptr().add(start) },
        };
        if run(&mut batch).is_none() {
            return false;
        }
        // SAFETY: every slot below `total` was written: each chunk's first two samples by
        // `refill`, the rest by the lanes or `decode_whole`, exactly its count in all.
        unsafe {
            timestamps.set_len(start + total);
            values.set_len(start + total);
        }
        true
    }

    /// The groups' loop; `None` on a corrupt chunk.
    #[target_feature(enable = "avx512f,avx512bw,avx512cd")]
    fn run(batch: &mut Batch<'_>) -> Option<()> {
        let constants = Constants::new();
        let start = |batch: &mut Batch<'_>, group: usize| -> Option<(Vectors, __mmask8)> {
            let mut state = State::default();
            let mut active: __mmask8 = 0;
            for at in 0..LANES {
                if !batch.refill(group * LANES + at, at, &mut state)? {
                    break;
                }
                active |= 1 << at;
            }
            Some((Vectors::load(&state), active))
        };
        let (mut first, mut first_active) = start(batch, 0)?;
        let (mut second, mut second_active) = start(batch, 1)?;
        let (timestamps, values) = (batch.timestamps, batch.values);
        while first_active | second_active != 0 {
            if first_active != 0 {
                let (service, special) =
                    step(&mut first, first_active, &constants, timestamps, values);
                if service | special != 0 {
                    first = batch.service(0, first, &mut first_active, service, special)?;
                }
            }
            if second_active != 0 {
                let (service, special) =
                    step(&mut second, second_active, &constants, timestamps, values);
                if service | special != 0 {
                    second = batch.service(1, second, &mut second_active, service, special)?;
                }
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::chunkenc::encode_xor;

    /// A chunk of `count` samples with every kind of field: scrape jitter, missed scrapes (17
    /// and 20-bit delta-of-delta buckets), the odd 64-bit one, unchanged values, small and full
    /// precision changes, special values.
    fn random_chunk(rng: &mut StdRng, count: usize) -> Vec<u8> {
        let mut t = rng.random_range(-1_000_000_000_000i64..2_000_000_000_000);
        let mut v = rng.random_range(0..1_000_000) as f64;
        let samples: Vec<(i64, f64)> = (0..count)
            .map(|_| {
                t += match rng.random_range(0..100) {
                    0 => rng.random_range(-(1i64 << 40)..(1i64 << 40)),
                    1..=3 => 15_000 * rng.random_range(2..40),
                    4..=20 => 15_000 + rng.random_range(-4..5),
                    _ => 15_000,
                };
                v = match rng.random_range(0..100) {
                    0 => f64::from_bits(rng.random()),
                    1 => f64::NAN,
                    2..=30 => v,
                    31..=60 => v + rng.random_range(1..100) as f64,
                    _ => rng.random_range(0.0..100.0),
                };
                (t, v)
            })
            .collect();
        encode_xor(&samples).into_bytes()
    }

    fn scalar(chunks: &[&[u8]]) -> (Vec<i64>, Vec<f64>, Result<(), BatchDecodeError>) {
        let (mut timestamps, mut values) = (vec![7], vec![7.0]);
        let result = decode_scalar(chunks, &mut timestamps, &mut values);
        (timestamps, values, result)
    }

    fn bits(values: &[f64]) -> Vec<u64> {
        values.iter().map(|v| v.to_bits()).collect()
    }

    /// The batch decoder's answer for `chunks` equals the scalar decoder's, bit for bit.
    fn check(chunks: &[&[u8]]) {
        let (want_t, want_v, want_result) = scalar(chunks);
        let (mut timestamps, mut values) = (vec![7], vec![7.0]);
        let result = decode_xor_chunks(chunks, &mut timestamps, &mut values);
        assert_eq!(result, want_result);
        assert_eq!(timestamps, want_t);
        assert_eq!(bits(&values), bits(&want_v));
    }

    /// Whether this CPU runs the AVX-512 lanes; said out loud when it does not.
    #[cfg(target_arch = "x86_64")]
    fn has_lanes() -> bool {
        let has = decodes_side_by_side(MIN_BATCH);
        if !has {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("this CPU has no AVX-512: the lane decoder is not exercised");
            }
        }
        has
    }

    #[test]
    fn valid_batches_equal_chunk_by_chunk_decoding() {
        let mut rng = StdRng::seed_from_u64(7);
        for round in 0..200 {
            let chunk_count = rng.random_range(0..40);
            let chunks: Vec<Vec<u8>> = (0..chunk_count)
                .map(|_| {
                    let count = match rng.random_range(0..10) {
                        0 => rng.random_range(0..4),
                        1 => rng.random_range(200..600),
                        _ => 120,
                    };
                    random_chunk(&mut rng, count)
                })
                .collect();
            let views: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            check(&views);
            #[cfg(target_arch = "x86_64")]
            if round == 0 && !has_lanes() {
                return;
            }
            // The lanes themselves (not the scalar fallback) decoded a valid batch, also one
            // smaller than `decode_xor_chunks` gives them.
            #[cfg(target_arch = "x86_64")]
            if !views.is_empty() {
                let (want_t, want_v, _) = scalar(&views);
                let (mut timestamps, mut values) = (vec![7], vec![7.0]);
                // SAFETY: AVX-512F, BW and CD are present (checked above).
                assert!(unsafe { avx512::decode(&views, &mut timestamps, &mut values) });
                assert_eq!(timestamps, want_t);
                assert_eq!(bits(&values), bits(&want_v));
            }
        }
    }

    #[test]
    fn corrupt_batches_fail_where_chunk_by_chunk_decoding_fails() {
        let mut rng = StdRng::seed_from_u64(11);
        for _ in 0..400 {
            let mut chunks: Vec<Vec<u8>> = (0..rng.random_range(4..20))
                .map(|_| random_chunk(&mut rng, 120))
                .collect();
            let victim = rng.random_range(0..chunks.len());
            let chunk = &mut chunks[victim];
            match rng.random_range(0..4) {
                0 => {
                    let keep = rng.random_range(0..chunk.len());
                    chunk.truncate(keep);
                }
                1 => {
                    for _ in 0..rng.random_range(1..4) {
                        let at = rng.random_range(0..chunk.len());
                        chunk[at] ^= 1 << rng.random_range(0..8);
                    }
                }
                2 => {
                    let at = rng.random_range(2..chunk.len());
                    for byte in &mut chunk[at..] {
                        *byte = rng.random();
                    }
                }
                _ => chunk[1] = chunk[1].wrapping_add(rng.random_range(1..20)),
            }
            let views: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            check(&views);
        }
    }

    #[test]
    fn arbitrary_bytes_as_chunks_match_the_scalar_decoder() {
        let mut rng = StdRng::seed_from_u64(13);
        for _ in 0..400 {
            let chunks: Vec<Vec<u8>> = (0..rng.random_range(4..12))
                .map(|_| {
                    let length = rng.random_range(0..64);
                    let mut bytes: Vec<u8> = (0..length).map(|_| rng.random()).collect();
                    if let Some(count) = bytes.get_mut(0) {
                        *count = 0;
                    }
                    bytes
                })
                .collect();
            let views: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            check(&views);
        }
    }
}
