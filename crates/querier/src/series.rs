//! Wire chunks to float samples, for raw and downsampled (aggregate) chunks.

use prom_model::Sample;
use storeapi::chunk::decode_float_samples;
use storeapi::proto::thanos::{self, Aggr};

use crate::downsample::Aggregate;

fn decode_part(chunk: &thanos::AggrChunk, part: Aggr) -> Result<Vec<Sample>, String> {
    let data = storeapi::chunk::aggregate_part(chunk, part).map_err(|error| error.to_string())?;
    decode_float_samples(data).map_err(|error| error.to_string())
}

/// The samples of one chunk: its raw part, or for a downsampled chunk the part `aggregate`
/// names (`sum / count` for [`Aggregate::Average`]).
pub(crate) fn decode_chunk(
    chunk: &thanos::AggrChunk,
    aggregate: Aggregate,
) -> Result<Vec<Sample>, String> {
    if chunk.raw.is_some() {
        return decode_part(chunk, Aggr::Raw);
    }
    match aggregate {
        Aggregate::Min => decode_part(chunk, Aggr::Min),
        Aggregate::Max => decode_part(chunk, Aggr::Max),
        Aggregate::Count => decode_part(chunk, Aggr::Count),
        Aggregate::Sum => decode_part(chunk, Aggr::Sum),
        Aggregate::Counter => decode_part(chunk, Aggr::Counter),
        Aggregate::Average => {
            let sums = decode_part(chunk, Aggr::Sum)?;
            let counts = decode_part(chunk, Aggr::Count)?;
            Ok(sums
                .iter()
                .zip(&counts)
                .filter(|(sum, count)| sum.t == count.t)
                .map(|(sum, count)| Sample::new(sum.t, sum.v / count.v))
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use storeapi::chunk::xor_chunk;

    use super::*;

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
