//! Thanos' downsampled aggregate chunk (encoding 0xFF, upstream `AggrChunk`).
//!
//! The chunk data is five parts in the fixed order count, sum, min, max, counter
//! ([`AggrType`]). Each part is `uvarint L`, then, when `L > 0`, one byte with the part's own
//! chunk encoding and `L` bytes of that chunk's data. `L = 0` marks an absent aggregate and has
//! no encoding byte. Thanos' reader asks for `L + 1` bytes even when `L = 0`, so it reports
//! "invalid size" for an absent trailing part; [`AggrChunk::get`] reads that as absent too.
//!
//! Building: [`encode_aggr_chunk`] from up to five [`AggrPart`]s. Reading: [`AggrChunk`], which
//! never reads past its slice: a bad length or encoding byte is a [`DecodeError`].

use super::Encoding;
use crate::encoding::{DecodeError, Decoder, Encoder, uvarint_size};

/// One aggregate of a downsampled chunk, in the order the parts are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AggrType {
    /// Samples per window.
    Count,
    /// Sum of the values per window.
    Sum,
    /// Smallest value per window.
    Min,
    /// Largest value per window.
    Max,
    /// The counter with resets applied, plus the first and last raw values.
    Counter,
}

impl AggrType {
    /// All five, in storage order.
    pub const ALL: [AggrType; 5] = [
        AggrType::Count,
        AggrType::Sum,
        AggrType::Min,
        AggrType::Max,
        AggrType::Counter,
    ];

    /// The part's position in the chunk (0 for count up to 4 for counter).
    pub fn index(self) -> usize {
        match self {
            AggrType::Count => 0,
            AggrType::Sum => 1,
            AggrType::Min => 2,
            AggrType::Max => 3,
            AggrType::Counter => 4,
        }
    }

    /// Upstream's name (`count`, `sum`, `min`, `max`, `counter`).
    pub fn name(self) -> &'static str {
        match self {
            AggrType::Count => "count",
            AggrType::Sum => "sum",
            AggrType::Min => "min",
            AggrType::Max => "max",
            AggrType::Counter => "counter",
        }
    }
}

impl std::fmt::Display for AggrType {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.name())
    }
}

/// One present aggregate: its chunk encoding and chunk data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggrPart<'a> {
    /// The sub-chunk's encoding (XOR for floats, float histogram for histogram sums and
    /// counters).
    pub encoding: Encoding,
    /// The sub-chunk's data, without the encoding byte.
    pub data: &'a [u8],
}

/// Encodes an aggregate chunk's data (without the 0xFF encoding byte, which the segment file
/// writes) from its parts, indexed as [`AggrType::index`]. A `None` part is absent; a part with
/// empty data is written as absent too, since the format cannot carry an empty present part.
pub fn encode_aggr_chunk(parts: &[Option<AggrPart<'_>>; 5]) -> Vec<u8> {
    let capacity = parts
        .iter()
        .map(|part| match part {
            Some(part) => uvarint_size(part.data.len() as u64) + 1 + part.data.len(),
            None => 1,
        })
        .sum();
    let mut encoder = Encoder::with_capacity(capacity);
    for part in parts {
        match part {
            Some(part) if !part.data.is_empty() => {
                encoder.put_uvarint(part.data.len() as u64);
                encoder.put_u8(part.encoding.as_u8());
                encoder.put_bytes(part.data);
            }
            _ => encoder.put_uvarint(0),
        }
    }
    encoder.into_vec()
}

/// A read view of an aggregate chunk's data.
#[derive(Debug, Clone, Copy)]
pub struct AggrChunk<'a> {
    data: &'a [u8],
    base: u64,
}

impl<'a> AggrChunk<'a> {
    /// A view of chunk `data` (without the 0xFF byte); error offsets count from `data[0]`.
    pub fn new(data: &'a [u8]) -> Self {
        Self::with_offset(data, 0)
    }

    /// A view of chunk `data` that sits at absolute file offset `base`, so errors carry file
    /// offsets.
    pub fn with_offset(data: &'a [u8], base: u64) -> Self {
        Self { data, base }
    }

    /// The chunk data this view reads.
    pub fn bytes(&self) -> &'a [u8] {
        self.data
    }

    /// Aggregate `aggregate`: `Ok(None)` when absent, an error when the parts up to it do not
    /// parse (a length past the end, an unknown or nested sub-encoding). Bytes after the
    /// requested part are not looked at, as upstream.
    pub fn get(&self, aggregate: AggrType) -> Result<Option<AggrPart<'a>>, DecodeError> {
        let mut decoder = Decoder::new(self.data, self.base);
        let mut found = None;
        for current in AggrType::ALL.into_iter().take(aggregate.index() + 1) {
            found = read_part(&mut decoder, current)?;
        }
        Ok(found)
    }

    /// All five parts, indexed as [`AggrType::index`]. Stricter than [`AggrChunk::get`]: bytes
    /// left after the counter part are an error.
    pub fn parts(&self) -> Result<[Option<AggrPart<'a>>; 5], DecodeError> {
        let mut decoder = Decoder::new(self.data, self.base);
        let mut parts = [None; 5];
        for aggregate in AggrType::ALL {
            parts[aggregate.index()] = read_part(&mut decoder, aggregate)?;
        }
        if !decoder.is_empty() {
            return Err(decoder.error(format!(
                "{} bytes after the last aggregate",
                decoder.remaining()
            )));
        }
        Ok(parts)
    }

    /// The sample count of the count aggregate's header, as upstream's `NumSamples`: 0 when it
    /// is absent or does not parse.
    pub fn num_samples(&self) -> u16 {
        match self.get(AggrType::Count) {
            Ok(Some(part)) => part.encoding.sample_count(part.data).unwrap_or(0),
            _ => 0,
        }
    }
}

/// Reads the part at the decoder's position.
fn read_part<'a>(
    decoder: &mut Decoder<'a>,
    aggregate: AggrType,
) -> Result<Option<AggrPart<'a>>, DecodeError> {
    let start = decoder.offset();
    let length = decoder.uvarint()?;
    if length == 0 {
        return Ok(None);
    }
    let encoding_byte = decoder.u8()?;
    let encoding = match Encoding::from_u8(encoding_byte) {
        Some(Encoding::ThanosAggr) | None => {
            return Err(DecodeError::new(
                start,
                format!("{aggregate} aggregate has invalid sub-encoding {encoding_byte}"),
            ));
        }
        Some(encoding) => encoding,
    };
    let fits = usize::try_from(length)
        .ok()
        .filter(|length| *length <= decoder.remaining());
    let Some(length) = fits else {
        return Err(DecodeError::new(
            start,
            format!(
                "{aggregate} aggregate of {length} bytes, only {} left",
                decoder.remaining()
            ),
        ));
    };
    let data = decoder.bytes(length)?;
    Ok(Some(AggrPart { encoding, data }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunkenc::{decode_xor, encode_xor};

    fn xor_of(seed: i64) -> Vec<u8> {
        let samples: Vec<(i64, f64)> = (0..5)
            .map(|i| (1_000 * i + seed, (seed * 10 + i) as f64))
            .collect();
        encode_xor(&samples).into_bytes()
    }

    #[test]
    fn every_subset_round_trips() {
        let datas: Vec<Vec<u8>> = (0..5).map(|i| xor_of(i + 1)).collect();
        for mask in 0u32..32 {
            let mut parts = [None; 5];
            for (index, data) in datas.iter().enumerate() {
                if mask & (1 << index) != 0 {
                    parts[index] = Some(AggrPart {
                        encoding: Encoding::Xor,
                        data,
                    });
                }
            }
            let encoded = encode_aggr_chunk(&parts);
            let chunk = AggrChunk::new(&encoded);
            assert_eq!(chunk.parts().unwrap(), parts, "mask {mask:05b}");
            for aggregate in AggrType::ALL {
                let got = chunk.get(aggregate).unwrap();
                assert_eq!(got, parts[aggregate.index()], "mask {mask:05b} {aggregate}");
                if let Some(part) = got {
                    let samples = decode_xor(part.data).unwrap();
                    assert_eq!(samples[0].1, ((aggregate.index() as i64 + 1) * 10) as f64);
                }
            }
            let expected_count = if mask & 1 != 0 { 5 } else { 0 };
            assert_eq!(chunk.num_samples(), expected_count);
        }
    }

    #[test]
    fn layout_matches_the_spec_byte_for_byte() {
        // count: XOR of 3 bytes; sum absent; min: float histogram of 1 byte; max absent;
        // counter: XOR of 130 bytes (a two-byte uvarint length).
        let count = [0xAA, 0xBB, 0xCC];
        let min = [0x42];
        let counter: Vec<u8> = (0..130u8).collect();
        let parts = [
            Some(AggrPart {
                encoding: Encoding::Xor,
                data: &count,
            }),
            None,
            Some(AggrPart {
                encoding: Encoding::FloatHistogram,
                data: &min,
            }),
            None,
            Some(AggrPart {
                encoding: Encoding::Xor,
                data: &counter,
            }),
        ];
        let mut expected = vec![3, 1, 0xAA, 0xBB, 0xCC, 0, 1, 3, 0x42, 0, 0x82, 0x01, 1];
        expected.extend_from_slice(&counter);
        assert_eq!(encode_aggr_chunk(&parts), expected);
        let chunk = AggrChunk::new(&expected);
        assert_eq!(chunk.get(AggrType::Min).unwrap(), parts[2]);
        assert_eq!(chunk.get(AggrType::Counter).unwrap(), parts[4]);
    }

    #[test]
    fn absent_trailing_counter_is_absent_not_invalid() {
        // Upstream's reader says "invalid size" for this final lone 0.
        let data = [1, 1, 0x07, 0, 0, 0, 0];
        let chunk = AggrChunk::new(&data);
        assert_eq!(chunk.get(AggrType::Counter).unwrap(), None);
        assert_eq!(chunk.get(AggrType::Max).unwrap(), None);
        assert_eq!(
            chunk.get(AggrType::Count).unwrap(),
            Some(AggrPart {
                encoding: Encoding::Xor,
                data: &[0x07],
            })
        );
    }

    #[test]
    fn empty_part_data_is_written_as_absent() {
        let parts = [
            Some(AggrPart {
                encoding: Encoding::Xor,
                data: &[],
            }),
            None,
            None,
            None,
            None,
        ];
        let encoded = encode_aggr_chunk(&parts);
        assert_eq!(encoded, vec![0, 0, 0, 0, 0]);
        assert_eq!(AggrChunk::new(&encoded).get(AggrType::Count).unwrap(), None);
    }

    #[test]
    fn truncated_input_is_an_error() {
        let datas: Vec<Vec<u8>> = (0..5).map(|i| xor_of(i + 1)).collect();
        let parts: [Option<AggrPart<'_>>; 5] = std::array::from_fn(|index| {
            Some(AggrPart {
                encoding: Encoding::Xor,
                data: &datas[index],
            })
        });
        let encoded = encode_aggr_chunk(&parts);
        for cut in 0..encoded.len() {
            let chunk = AggrChunk::with_offset(&encoded[..cut], 100);
            let error = chunk.get(AggrType::Counter).unwrap_err();
            assert!(error.offset >= 100, "cut {cut}: {error:?}");
            assert!(chunk.parts().is_err(), "cut {cut}");
        }
    }

    #[test]
    fn bad_bytes_are_errors() {
        // Unknown sub-encoding 9, encoding 0, nested 0xFF.
        for encoding_byte in [9u8, 0, 0xFF] {
            let data = [1, encoding_byte, 0x00, 0, 0, 0, 0];
            let error = AggrChunk::new(&data).get(AggrType::Count).unwrap_err();
            assert!(error.detail.contains("sub-encoding"), "{error:?}");
        }
        // A length near u64::MAX.
        let huge = [
            0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 1, 0,
        ];
        assert!(AggrChunk::new(&huge).get(AggrType::Count).is_err());
        // A uvarint that never ends.
        assert!(AggrChunk::new(&[0x80; 12]).get(AggrType::Count).is_err());
        // Trailing bytes: get is lenient like upstream, parts is strict.
        let trailing = [0, 0, 0, 0, 0, 7];
        assert_eq!(
            AggrChunk::new(&trailing).get(AggrType::Counter).unwrap(),
            None
        );
        assert!(AggrChunk::new(&trailing).parts().is_err());
    }

    #[test]
    fn garbage_never_panics() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..2_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let length = (state % 40) as usize;
            let bytes: Vec<u8> = (0..length)
                .map(|i| (state.rotate_left(i as u32 * 5) & 0xFF) as u8)
                .collect();
            let chunk = AggrChunk::new(&bytes);
            for aggregate in AggrType::ALL {
                let _ = chunk.get(aggregate);
            }
            let _ = chunk.parts();
            let _ = chunk.num_samples();
        }
    }
}
