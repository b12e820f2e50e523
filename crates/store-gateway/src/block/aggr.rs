//! Chunks as read from a block, and their `AggrChunk` on the wire.
//!
//! A raw block's chunk goes in the `raw` part unchanged. A downsampled block's chunk (Thanos'
//! encoding 0xFF, see [`tsdb_block::chunkenc::AggrChunk`]) holds count, sum, min, max and
//! counter sub-chunks; the parts the request's `aggregates` name are filled, each with its
//! sub-chunk's encoding in Thanos' numbering, and the others left empty, as Thanos'
//! `populateChunk` does. Also as Thanos: a requested aggregate the chunk lacks is an error
//! (`aggregate <name> does not exist`), and `RAW` among the aggregates is ignored for a
//! downsampled chunk. Where Thanos would then send a chunk with no part at all (no aggregate
//! requested, or only `RAW`), the request is refused instead: a querier cannot read such a chunk.

use bytes::Bytes;
use storeapi::proto::thanos::{self, Aggr};
use tsdb_block::chunkenc::{AggrChunk, AggrType};
use ulid::Ulid;

use crate::error::{Error, Result};

/// A chunk read from a segment file.
#[derive(Debug, Clone)]
pub(crate) enum StoredChunk {
    /// A raw chunk, ready for the wire (Thanos encoding number, data without encoding byte).
    Raw(thanos::Chunk),
    /// A downsampled aggregate chunk's data (without the 0xFF byte).
    Aggregate {
        /// The data, a view of the bytes read.
        data: Bytes,
        /// The segment file, for errors.
        file: String,
        /// The data's offset in the segment file, for errors.
        offset: u64,
    },
}

/// The aggregates of a request (`SeriesRequest.aggregates`), unknown numbers left out.
pub(crate) fn requested_aggregates(values: &[i32]) -> Vec<Aggr> {
    values
        .iter()
        .filter_map(|value| Aggr::try_from(*value).ok())
        .collect()
}

/// The codec's part for a requested aggregate; `None` for `RAW`.
fn aggregate_type(aggregate: Aggr) -> Option<AggrType> {
    match aggregate {
        Aggr::Raw => None,
        Aggr::Count => Some(AggrType::Count),
        Aggr::Sum => Some(AggrType::Sum),
        Aggr::Min => Some(AggrType::Min),
        Aggr::Max => Some(AggrType::Max),
        Aggr::Counter => Some(AggrType::Counter),
    }
}

/// The wire chunk of `stored` (a chunk of block `block` spanning `[min_time, max_time]`) with
/// the parts `aggregates` names filled when it is a downsampled chunk; see the
/// [module docs](self).
pub(crate) fn wire_chunk(
    block: Ulid,
    min_time: i64,
    max_time: i64,
    stored: &StoredChunk,
    aggregates: &[Aggr],
) -> Result<thanos::AggrChunk> {
    let mut chunk = thanos::AggrChunk {
        min_time,
        max_time,
        ..Default::default()
    };
    let (data, file, offset) = match stored {
        StoredChunk::Raw(raw) => {
            chunk.raw = Some(raw.clone());
            return Ok(chunk);
        }
        StoredChunk::Aggregate { data, file, offset } => (data, file, *offset),
    };
    let reader = AggrChunk::with_offset(data, offset);
    let corrupt = |detail: String| Error::Block {
        block,
        action: "read downsampled chunk",
        source: tsdb_block::Error::Corrupt {
            file: file.clone(),
            section: "aggregate chunk",
            offset,
            detail,
        },
    };
    let mut filled = false;
    for aggregate in aggregates {
        let Some(part_type) = aggregate_type(*aggregate) else {
            continue;
        };
        let part = reader
            .get(part_type)
            .map_err(|error| corrupt(format!("{} at byte {}", error.detail, error.offset)))?
            .ok_or_else(|| {
                Error::BadRequest(format!(
                    "aggregate {part_type} does not exist (downsampled chunk of block {block})"
                ))
            })?;
        let encoding = storeapi::chunk::prometheus_to_thanos_encoding(part.encoding.as_u8())
            .ok_or_else(|| {
                corrupt(format!(
                    "aggregate {part_type} has encoding {}, not one the StoreAPI carries",
                    part.encoding
                ))
            })?;
        let wire = Box::new(thanos::Chunk {
            r#type: encoding.into(),
            data: data.slice_ref(part.data),
            hash: 0,
        });
        let slot = match part_type {
            AggrType::Count => &mut chunk.count,
            AggrType::Sum => &mut chunk.sum,
            AggrType::Min => &mut chunk.min,
            AggrType::Max => &mut chunk.max,
            AggrType::Counter => &mut chunk.counter,
        };
        *slot = Some(wire);
        filled = true;
    }
    if !filled {
        return Err(Error::BadRequest(format!(
            "block {block} is downsampled: its chunks hold aggregates, and the request asks for none \
             (aggregates {aggregates:?})"
        )));
    }
    Ok(chunk)
}

#[cfg(test)]
mod tests {
    use storeapi::chunk::{aggregate_part, decode_float_samples};
    use storeapi::proto::thanos::chunk::Encoding as WireEncoding;
    use tsdb_block::chunkenc::{AggrPart, Encoding, encode_aggr_chunk, encode_xor};

    use super::*;

    /// XOR data of `count` samples a minute apart with values `shift + index`.
    fn xor(count: i64, shift: f64) -> Vec<u8> {
        let samples: Vec<(i64, f64)> = (0..count)
            .map(|index| (index * 60_000, shift + index as f64))
            .collect();
        encode_xor(&samples).into_bytes()
    }

    /// An aggregate chunk with the parts `present` (by [`AggrType::index`]), each with its own
    /// values (`10 × index` shifted), the counter as a float histogram when `histogram_counter`.
    fn stored(present: [bool; 5], histogram_counter: bool) -> (StoredChunk, Vec<Vec<u8>>) {
        let datas: Vec<Vec<u8>> = (0..5).map(|index| xor(4, index as f64 * 10.0)).collect();
        let parts: [Option<AggrPart<'_>>; 5] = std::array::from_fn(|index| {
            present[index].then(|| AggrPart {
                encoding: if index == 4 && histogram_counter {
                    Encoding::FloatHistogram
                } else {
                    Encoding::Xor
                },
                data: &datas[index],
            })
        });
        let data = Bytes::from(encode_aggr_chunk(&parts));
        (
            StoredChunk::Aggregate {
                data,
                file: "chunks/000001".to_owned(),
                offset: 8,
            },
            datas,
        )
    }

    fn check(stored: &StoredChunk, aggregates: &[Aggr]) -> Result<thanos::AggrChunk> {
        wire_chunk(Ulid::nil(), 100, 200, stored, aggregates)
    }

    #[test]
    fn exactly_the_requested_parts_are_filled() {
        let (chunk, datas) = stored([true; 5], false);
        let all = [Aggr::Count, Aggr::Sum, Aggr::Min, Aggr::Max, Aggr::Counter];
        for (index, aggregate) in all.iter().enumerate() {
            let wire = check(&chunk, &[*aggregate]).unwrap();
            assert_eq!((wire.min_time, wire.max_time), (100, 200));
            assert!(wire.raw.is_none());
            for other in all {
                let part = aggregate_part(&wire, other);
                if other == *aggregate {
                    let part = part.unwrap();
                    assert_eq!(part.data.as_ref(), datas[index].as_slice());
                    assert_eq!(part.r#type, WireEncoding::Xor as i32);
                    let samples = decode_float_samples(part).unwrap();
                    assert_eq!(samples[0].v, index as f64 * 10.0);
                } else {
                    assert!(part.is_err(), "{other:?} filled asking for {aggregate:?}");
                }
            }
        }
        // Count and sum, as a querier asks for an average; RAW among them is ignored.
        let wire = check(&chunk, &[Aggr::Raw, Aggr::Count, Aggr::Sum]).unwrap();
        assert_eq!(wire.count.unwrap().data.as_ref(), datas[0].as_slice());
        assert_eq!(wire.sum.unwrap().data.as_ref(), datas[1].as_slice());
        assert!(wire.raw.is_none() && wire.min.is_none() && wire.counter.is_none());
    }

    #[test]
    fn sub_encodings_map_to_thanos_numbers() {
        let (chunk, _) = stored([true; 5], true);
        let wire = check(&chunk, &[Aggr::Counter, Aggr::Count]).unwrap();
        assert_eq!(
            wire.counter.unwrap().r#type,
            WireEncoding::FloatHistogram as i32
        );
        assert_eq!(wire.count.unwrap().r#type, WireEncoding::Xor as i32);
    }

    #[test]
    fn an_absent_aggregate_or_none_requested_is_an_error() {
        // A histogram chunk: count, sum and counter, no min or max; also the trailing counter
        // absent.
        let (histogram, _) = stored([true, true, false, false, true], false);
        let error = check(&histogram, &[Aggr::Max]).unwrap_err();
        assert!(matches!(error, Error::BadRequest(_)), "{error:?}");
        assert!(error.to_string().contains("aggregate max does not exist"));
        assert!(check(&histogram, &[Aggr::Count, Aggr::Min]).is_err());
        assert!(check(&histogram, &[Aggr::Counter]).is_ok());
        let (no_counter, _) = stored([true, true, true, true, false], false);
        assert!(
            check(&no_counter, &[Aggr::Counter])
                .unwrap_err()
                .to_string()
                .contains("aggregate counter does not exist")
        );
        for aggregates in [&[][..], &[Aggr::Raw][..]] {
            let error = check(&no_counter, aggregates).unwrap_err();
            assert!(matches!(error, Error::BadRequest(_)), "{error:?}");
        }
        // Cut data is corrupt, not absent.
        let StoredChunk::Aggregate { data, .. } = &no_counter else {
            unreachable!()
        };
        let cut = StoredChunk::Aggregate {
            data: data.slice(..data.len() / 2),
            file: "chunks/000001".to_owned(),
            offset: 8,
        };
        let error = check(&cut, &[Aggr::Max]).unwrap_err();
        assert!(matches!(error, Error::Block { .. }), "{error:?}");
    }

    #[test]
    fn raw_chunks_pass_unchanged_whatever_is_asked() {
        let raw = thanos::Chunk {
            r#type: WireEncoding::Xor.into(),
            data: Bytes::from(xor(3, 1.0)),
            hash: 0,
        };
        for aggregates in [&[][..], &[Aggr::Max][..], &[Aggr::Count, Aggr::Sum][..]] {
            let wire = check(&StoredChunk::Raw(raw.clone()), aggregates).unwrap();
            assert_eq!(wire.raw.as_ref(), Some(&raw));
            assert!(wire.count.is_none() && wire.max.is_none());
        }
    }

    #[test]
    fn unknown_aggregate_numbers_are_left_out() {
        assert_eq!(
            requested_aggregates(&[1, 2, 99, 5, -1]),
            vec![Aggr::Count, Aggr::Sum, Aggr::Counter]
        );
    }
}
