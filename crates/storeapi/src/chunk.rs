//! Chunks on the wire: encoding numbers and sample iteration.
//!
//! A Thanos `Chunk.data` is a Prometheus chunk body without the leading encoding byte, and the
//! encoding is numbered differently: Thanos `XOR = 0, HISTOGRAM = 1, FLOAT_HISTOGRAM = 2` are
//! Prometheus `1, 2, 3`. Float (XOR) chunks are decoded and encoded by [`tsdb_block::chunkenc`];
//! histogram chunks can be carried but not yet iterated here.

use prom_model::Sample;
use tsdb_block::chunkenc::{XorIterator, decode_xor_chunks, encode_xor};

use crate::error::{Error, Result};
use crate::proto::thanos::{self, Aggr, chunk::Encoding};

/// The Prometheus `chunkenc` encoding byte of a Thanos chunk encoding.
pub fn thanos_to_prometheus_encoding(encoding: Encoding) -> u8 {
    match encoding {
        Encoding::Xor => 1,
        Encoding::Histogram => 2,
        Encoding::FloatHistogram => 3,
    }
}

/// The Thanos chunk encoding of a Prometheus `chunkenc` encoding byte; `None` for encodings
/// the StoreAPI cannot carry (0, the newer 4–6, Thanos' 0xFF aggregate container).
pub fn prometheus_to_thanos_encoding(encoding: u8) -> Option<Encoding> {
    match encoding {
        1 => Some(Encoding::Xor),
        2 => Some(Encoding::Histogram),
        3 => Some(Encoding::FloatHistogram),
        _ => None,
    }
}

/// The encoding of a wire chunk; an unknown number is an error.
pub fn chunk_encoding(chunk: &thanos::Chunk) -> Result<Encoding> {
    Encoding::try_from(chunk.r#type).map_err(|_| Error::UnsupportedChunkEncoding {
        encoding: format!("thanos enum value {}", chunk.r#type),
    })
}

/// The float samples of an XOR chunk, in chunk order; see [`FloatSamples`].
pub fn float_samples(chunk: &thanos::Chunk) -> Result<FloatSamples<'_>> {
    match chunk_encoding(chunk)? {
        Encoding::Xor => Ok(FloatSamples {
            inner: XorIterator::new(&chunk.data),
            failed: false,
        }),
        other => Err(Error::UnsupportedChunkEncoding {
            encoding: other.as_str_name().to_owned(),
        }),
    }
}

/// Decodes every sample of an XOR chunk, through the decoder's batch loop (faster than
/// collecting [`FloatSamples`]).
pub fn decode_float_samples(chunk: &thanos::Chunk) -> Result<Vec<Sample>> {
    let decoder = float_samples(chunk)?.inner;
    // The announced count, but never more than the data can hold (4 samples per byte).
    let mut samples =
        Vec::with_capacity(usize::from(decoder.num_samples()).min(chunk.data.len() * 4));
    decoder
        .for_each_sample(|t, v| samples.push(Sample::new(t, v)))
        .map_err(|error| Error::ChunkDecode {
            detail: format!("{} at byte {}", error.detail, error.offset),
        })?;
    Ok(samples)
}

/// The samples of the part `part` picks from each of `chunks` (its raw part, or one aggregate of
/// a downsampled chunk). Where it pays ([`tsdb_block::chunkenc::decodes_side_by_side`]: a CPU
/// with AVX-512 and a few chunks or more, as a series' chunks usually are) they are decoded
/// together by [`tsdb_block::chunkenc::decode_xor_chunks`], else one by one. `None` when `part`
/// finds no part in a chunk, or a part is not XOR or is corrupt: then decode them one by one
/// with [`decode_float_samples`], which names the error.
pub fn decode_xor_parts(
    chunks: &[thanos::AggrChunk],
    part: impl Fn(&thanos::AggrChunk) -> Option<&thanos::Chunk>,
) -> Option<Vec<Vec<Sample>>> {
    let parts: Vec<&thanos::Chunk> = chunks
        .iter()
        .map(|chunk| part(chunk).filter(|part| chunk_encoding(part).ok() == Some(Encoding::Xor)))
        .collect::<Option<_>>()?;
    if !tsdb_block::chunkenc::decodes_side_by_side(parts.len()) {
        return parts
            .into_iter()
            .map(|part| decode_float_samples(part).ok())
            .collect();
    }
    let data: Vec<&[u8]> = parts.iter().map(|part| &part.data[..]).collect();
    let (mut timestamps, mut values) = (Vec::new(), Vec::new());
    decode_xor_chunks(&data, &mut timestamps, &mut values).ok()?;
    // Each chunk decoded to exactly the count its header announces.
    let mut start = 0;
    data.iter()
        .map(|chunk| {
            let end = start + usize::from(XorIterator::new(chunk).num_samples());
            let samples = timestamps
                .get(start..end)?
                .iter()
                .zip(values.get(start..end)?)
                .map(|(t, v)| Sample::new(*t, *v))
                .collect();
            start = end;
            Some(samples)
        })
        .collect()
}

/// Iterator over an XOR chunk's samples; yields one `Err` and stops if the bytes are corrupt.
#[derive(Debug, Clone)]
pub struct FloatSamples<'a> {
    inner: XorIterator<'a>,
    failed: bool,
}

impl FloatSamples<'_> {
    /// The sample count the chunk header announces.
    pub fn num_samples(&self) -> u16 {
        self.inner.num_samples()
    }
}

impl Iterator for FloatSamples<'_> {
    type Item = Result<Sample>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if let Some((t, v)) = self.inner.next() {
            return Some(Ok(Sample::new(t, v)));
        }
        let error = self.inner.err()?;
        self.failed = true;
        Some(Err(Error::ChunkDecode {
            detail: format!("{} at byte {}", error.detail, error.offset),
        }))
    }
}

/// An XOR wire chunk holding `samples` (at most 65535; the rest are dropped).
pub fn xor_chunk(samples: &[Sample]) -> thanos::Chunk {
    let pairs: Vec<(i64, f64)> = samples.iter().map(|sample| (sample.t, sample.v)).collect();
    thanos::Chunk {
        r#type: Encoding::Xor.into(),
        data: encode_xor(&pairs).into_bytes().into(),
        hash: 0,
    }
}

/// Raw `AggrChunk`s for samples sorted by time, `samples_per_chunk` samples each (at least 1,
/// at most 65535).
pub fn raw_chunks(samples: &[Sample], samples_per_chunk: usize) -> Vec<thanos::AggrChunk> {
    let size = samples_per_chunk.clamp(1, usize::from(u16::MAX));
    samples
        .chunks(size)
        .filter_map(|part| {
            let (first, last) = (part.first()?, part.last()?);
            Some(thanos::AggrChunk {
                min_time: first.t,
                max_time: last.t,
                raw: Some(xor_chunk(part)),
                ..Default::default()
            })
        })
        .collect()
}

/// The part of an `AggrChunk` that holds `aggregate`; an absent part is an error.
pub fn aggregate_part(chunk: &thanos::AggrChunk, aggregate: Aggr) -> Result<&thanos::Chunk> {
    let part = match aggregate {
        Aggr::Raw => chunk.raw.as_ref(),
        Aggr::Count => chunk.count.as_deref(),
        Aggr::Sum => chunk.sum.as_deref(),
        Aggr::Min => chunk.min.as_deref(),
        Aggr::Max => chunk.max.as_deref(),
        Aggr::Counter => chunk.counter.as_deref(),
    };
    part.ok_or(Error::MissingAggregate {
        aggregate: aggregate_name(aggregate),
    })
}

fn aggregate_name(aggregate: Aggr) -> &'static str {
    match aggregate {
        Aggr::Raw => "raw",
        Aggr::Count => "count",
        Aggr::Sum => "sum",
        Aggr::Min => "min",
        Aggr::Max => "max",
        Aggr::Counter => "counter",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_decode_as_a_batch_like_one_by_one() {
        let series: Vec<Sample> = (0..1000)
            .map(|index| Sample::new(1_000 + index * 15_000, (index * index % 97) as f64))
            .collect();
        let mut chunks = raw_chunks(&series, 120);
        chunks.extend(raw_chunks(&series[..3], 120));
        fn raw(chunk: &thanos::AggrChunk) -> Option<&thanos::Chunk> {
            chunk.raw.as_ref()
        }
        fn sum(chunk: &thanos::AggrChunk) -> Option<&thanos::Chunk> {
            chunk.sum.as_deref()
        }
        let batch = decode_xor_parts(&chunks, raw).expect("raw XOR chunks decode");
        assert_eq!(batch.len(), chunks.len());
        for (chunk, samples) in chunks.iter().zip(&batch) {
            let raw = chunk.raw.as_ref().expect("raw part");
            assert_eq!(samples, &decode_float_samples(raw).expect("decodes"));
        }
        assert_eq!(batch.concat()[..1000], series[..]);
        // Too few chunks to decode side by side: one by one, the same samples.
        assert_eq!(
            decode_xor_parts(&chunks[..3], raw).as_deref(),
            Some(&batch[..3])
        );

        // An aggregate part of downsampled chunks, picked by the caller.
        let downsampled: Vec<thanos::AggrChunk> = chunks
            .iter()
            .map(|chunk| thanos::AggrChunk {
                min_time: chunk.min_time,
                max_time: chunk.max_time,
                sum: chunk.raw.clone().map(Box::new),
                ..Default::default()
            })
            .collect();
        assert_eq!(decode_xor_parts(&downsampled, sum), Some(batch));
        assert!(decode_xor_parts(&downsampled, raw).is_none());

        // A chunk without the part, or a corrupt part: None, for the caller to decode chunk by
        // chunk.
        let mut without_raw = chunks.clone();
        without_raw[2].raw = None;
        assert!(decode_xor_parts(&without_raw, raw).is_none());
        let mut corrupt = chunks;
        if let Some(raw) = corrupt[3].raw.as_mut() {
            raw.data = raw.data.slice(..raw.data.len() / 2);
        }
        assert!(decode_xor_parts(&corrupt, raw).is_none());
    }

    #[test]
    fn encodings_map_both_ways() {
        for (thanos_encoding, prometheus) in [
            (Encoding::Xor, 1),
            (Encoding::Histogram, 2),
            (Encoding::FloatHistogram, 3),
        ] {
            assert_eq!(thanos_to_prometheus_encoding(thanos_encoding), prometheus);
            assert_eq!(
                prometheus_to_thanos_encoding(prometheus),
                Some(thanos_encoding)
            );
        }
        for unsupported in [0, 4, 5, 6, 0xFF] {
            assert_eq!(prometheus_to_thanos_encoding(unsupported), None);
        }
        assert_eq!(i32::from(Encoding::Xor), 0);
        assert_eq!(i32::from(Encoding::FloatHistogram), 2);
    }

    #[test]
    fn xor_chunks_round_trip() {
        let samples: Vec<Sample> = (0..300)
            .map(|i| Sample::new(1000 + i * 15_000, i as f64 * 0.5))
            .collect();
        let chunks = raw_chunks(&samples, 120);
        assert_eq!(chunks.len(), 3);
        assert_eq!(
            (chunks[0].min_time, chunks[0].max_time),
            (1000, 1000 + 119 * 15_000)
        );
        let mut decoded = Vec::new();
        for chunk in &chunks {
            let raw = aggregate_part(chunk, Aggr::Raw).unwrap();
            assert_eq!(
                float_samples(raw).unwrap().num_samples() as usize,
                if decoded.len() < 240 { 120 } else { 60 }
            );
            decoded.extend(decode_float_samples(raw).unwrap());
        }
        assert_eq!(decoded, samples);
    }

    #[test]
    fn corrupt_and_unsupported_chunks_are_errors() {
        let truncated = thanos::Chunk {
            r#type: Encoding::Xor.into(),
            data: vec![0, 5, 0x80].into(),
            hash: 0,
        };
        let results: Vec<_> = float_samples(&truncated).unwrap().collect();
        assert!(
            matches!(results.last(), Some(Err(Error::ChunkDecode { .. }))),
            "{results:?}"
        );
        let histogram = thanos::Chunk {
            r#type: Encoding::Histogram.into(),
            ..Default::default()
        };
        assert!(matches!(
            float_samples(&histogram),
            Err(Error::UnsupportedChunkEncoding { .. })
        ));
        let unknown = thanos::Chunk {
            r#type: 9,
            ..Default::default()
        };
        assert!(matches!(
            chunk_encoding(&unknown),
            Err(Error::UnsupportedChunkEncoding { .. })
        ));
        let missing = aggregate_part(&thanos::AggrChunk::default(), Aggr::Counter).unwrap_err();
        assert_eq!(missing.to_string(), "aggregate chunk has no counter part");
    }
}
