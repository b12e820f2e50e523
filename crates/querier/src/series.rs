//! Wire chunks to float samples, for raw and downsampled (aggregate) chunks.

use prom_model::Sample;
use storeapi::chunk::{aggregate_part, decode_float_samples, decode_xor_parts};
use storeapi::proto::thanos::{self, Aggr};

use crate::downsample::Aggregate;

fn decode_part(chunk: &thanos::AggrChunk, part: Aggr) -> Result<Vec<Sample>, String> {
    let data = aggregate_part(chunk, part).map_err(|error| error.to_string())?;
    decode_float_samples(data).map_err(|error| error.to_string())
}

/// `sum / count` at the timestamps both parts have.
fn average(sums: &[Sample], counts: &[Sample]) -> Vec<Sample> {
    sums.iter()
        .zip(counts)
        .filter(|(sum, count)| sum.t == count.t)
        .map(|(sum, count)| Sample::new(sum.t, sum.v / count.v))
        .collect()
}

/// The samples of one chunk: its raw part, or for a downsampled chunk the part `aggregate`
/// names (`sum / count` for [`Aggregate::Average`]).
fn decode_chunk(chunk: &thanos::AggrChunk, aggregate: Aggregate) -> Result<Vec<Sample>, String> {
    if chunk.raw.is_some() {
        return decode_part(chunk, Aggr::Raw);
    }
    match aggregate.single_part() {
        Some(part) => decode_part(chunk, part),
        None => Ok(average(
            &decode_part(chunk, Aggr::Sum)?,
            &decode_part(chunk, Aggr::Count)?,
        )),
    }
}

/// The samples of each of a series' chunks, as [`decode_chunk`] gives them, decoded as one batch
/// ([`decode_xor_parts`]) when every chunk's part is a valid XOR chunk; otherwise, and to name
/// an error, chunk by chunk.
pub(crate) fn decode_chunks(
    chunks: &[thanos::AggrChunk],
    aggregate: Aggregate,
) -> Result<Vec<Vec<Sample>>, String> {
    let part = aggregate.single_part();
    let batch = if part.is_none() && chunks.iter().all(|chunk| chunk.raw.is_none()) {
        // An average of downsampled chunks: sums and counts as two batches.
        decode_xor_parts(chunks, |chunk| chunk.sum.as_deref()).and_then(|sums| {
            let counts = decode_xor_parts(chunks, |chunk| chunk.count.as_deref())?;
            Some(
                sums.iter()
                    .zip(&counts)
                    .map(|(sums, counts)| average(sums, counts))
                    .collect(),
            )
        })
    } else {
        // The raw part where there is one, else the aggregate's (none for an average: a series
        // that mixes raw and downsampled chunks then goes chunk by chunk).
        decode_xor_parts(chunks, |chunk| {
            chunk
                .raw
                .as_ref()
                .or_else(|| aggregate_part(chunk, part?).ok())
        })
    };
    match batch {
        Some(decoded) => Ok(decoded),
        None => chunks
            .iter()
            .map(|chunk| decode_chunk(chunk, aggregate))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use storeapi::chunk::xor_chunk;

    use super::*;

    /// Downsampled chunks of 120 five-minute samples each, every aggregate filled with its own
    /// values (a count that never is zero).
    fn downsampled_chunks(count: usize) -> Vec<thanos::AggrChunk> {
        let part = |chunk: usize, shift: f64| {
            let samples: Vec<Sample> = (0..120)
                .map(|index| {
                    let t = (chunk * 120 + index) as i64 * 300_000;
                    Sample::new(t, ((chunk * 31 + index * 7) % 50) as f64 + shift)
                })
                .collect();
            Some(Box::new(xor_chunk(&samples)))
        };
        (0..count)
            .map(|chunk| thanos::AggrChunk {
                min_time: chunk as i64 * 120 * 300_000,
                max_time: (chunk as i64 * 120 + 119) * 300_000,
                count: part(chunk, 1.0),
                sum: part(chunk, 0.5),
                min: part(chunk, -3.0),
                max: part(chunk, 3.0),
                counter: part(chunk, 100.0),
                raw: None,
            })
            .collect()
    }

    const AGGREGATES: [Aggregate; 6] = [
        Aggregate::Min,
        Aggregate::Max,
        Aggregate::Count,
        Aggregate::Sum,
        Aggregate::Counter,
        Aggregate::Average,
    ];

    fn one_by_one(
        chunks: &[thanos::AggrChunk],
        aggregate: Aggregate,
    ) -> Result<Vec<Vec<Sample>>, String> {
        chunks
            .iter()
            .map(|chunk| decode_chunk(chunk, aggregate))
            .collect()
    }

    #[test]
    fn chunks_decode_as_a_batch_like_one_by_one() {
        let downsampled = downsampled_chunks(6);
        let raw_series: Vec<Sample> = (0..600)
            .map(|index| Sample::new(index * 15_000, (index % 13) as f64))
            .collect();
        let raw = storeapi::chunk::raw_chunks(&raw_series, 120);
        let mut mixed = raw.clone();
        mixed.extend(downsampled.iter().cloned());
        for aggregate in AGGREGATES {
            for chunks in [&downsampled, &raw, &mixed] {
                let batch = decode_chunks(chunks, aggregate).unwrap();
                assert_eq!(
                    batch,
                    one_by_one(chunks, aggregate).unwrap(),
                    "{aggregate:?}"
                );
                assert_eq!(batch.len(), chunks.len());
                assert!(batch.iter().all(|samples| samples.len() == 120));
            }
        }
        let average = decode_chunks(&downsampled, Aggregate::Average).unwrap();
        let sums = decode_chunks(&downsampled, Aggregate::Sum).unwrap();
        let counts = decode_chunks(&downsampled, Aggregate::Count).unwrap();
        assert_eq!(average[4][17].v, sums[4][17].v / counts[4][17].v);
    }

    #[test]
    fn a_bad_part_gives_the_chunk_by_chunk_error() {
        let mut missing = downsampled_chunks(5);
        missing[3].max = None;
        let mut corrupt = downsampled_chunks(5);
        if let Some(count) = corrupt[2].count.as_mut() {
            count.data = count.data.slice(..count.data.len() / 2);
        }
        for (chunks, aggregate) in [
            (&missing, Aggregate::Max),
            (&corrupt, Aggregate::Count),
            (&corrupt, Aggregate::Average),
        ] {
            let error = decode_chunks(chunks, aggregate).unwrap_err();
            assert_eq!(Err(error), one_by_one(chunks, aggregate), "{aggregate:?}");
        }
        // The parts not asked for are not read.
        assert!(decode_chunks(&missing, Aggregate::Min).is_ok());
    }

    #[test]
    fn downsampled_average_divides_sum_by_count() {
        let sums = [Sample::new(0, 10.0), Sample::new(300_000, 30.0)];
        let counts = [Sample::new(0, 5.0), Sample::new(300_000, 10.0)];
        let chunk = thanos::AggrChunk {
            min_time: 0,
            max_time: 300_000,
            sum: Some(Box::new(xor_chunk(&sums))),
            count: Some(Box::new(xor_chunk(&counts))),
            ..Default::default()
        };
        let average = decode_chunk(&chunk, Aggregate::Average).unwrap();
        assert_eq!(
            average,
            vec![Sample::new(0, 2.0), Sample::new(300_000, 3.0)]
        );
        assert_eq!(decode_chunk(&chunk, Aggregate::Sum).unwrap(), sums.to_vec());
        assert!(decode_chunk(&chunk, Aggregate::Max).is_err());
    }
}
