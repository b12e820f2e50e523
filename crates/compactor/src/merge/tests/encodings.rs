//! Merge tests of chunks the merge does not decode: native histograms and Thanos' aggregates.

use super::*;

/// A block with one series whose chunks are `(min, max, encoding, data)` as given.
fn raw_block(
    parent: &Path,
    range: (i64, i64),
    chunks: &[(i64, i64, Encoding, Vec<u8>)],
) -> PathBuf {
    let series = labels(&[("__name__", "raw")]);
    let mut writer = BlockWriter::create(parent, symbols_of([&series])).unwrap();
    writer.set_time_range(range.0, range.1);
    let data: Vec<ChunkData<'_>> = chunks
        .iter()
        .map(|(min_time, max_time, encoding, data)| ChunkData {
            min_time: *min_time,
            max_time: *max_time,
            encoding: *encoding,
            data,
        })
        .collect();
    writer.add_series(&series, &data).unwrap();
    writer.finish().unwrap().1
}

#[test]
fn histogram_chunks_pass_through_but_cannot_overlap() {
    let dir = tempfile::tempdir().unwrap();
    // Opaque histogram chunk bodies: a sample count header and bytes never decoded here.
    let histogram = |count: u8| vec![0, count, 0xAB, 0xCD, 0xEF];
    let first = raw_block(
        dir.path(),
        (0, HOUR),
        &[(0, 1000, Encoding::Histogram, histogram(3))],
    );
    let second = raw_block(
        dir.path(),
        (HOUR, 2 * HOUR),
        &[(HOUR, HOUR + 5, Encoding::Histogram, histogram(2))],
    );
    let (merged, counters) = merge(
        &[first.clone(), second],
        &dir.path().join("out"),
        DedupFunc::OneToOne,
    );
    let merged = merged.unwrap();
    assert_eq!(counters.chunks_passed_through, 2);
    assert_eq!(merged.meta.stats.num_samples, 5);
    assert_eq!(merged.meta.stats.num_histogram_samples, 5);
    let block = BlockReader::open(&merged.dir).unwrap();
    let refs = tsdb_block::postings::collect(block.index().all_postings().unwrap());
    let entry = block.index().series(refs[0]).unwrap();
    let stored: Vec<Vec<u8>> = entry
        .chunks
        .iter()
        .map(|chunk| block.chunk(chunk.chunk_ref).unwrap().1.to_vec())
        .collect();
    assert_eq!(stored, vec![histogram(3), histogram(2)]);

    let overlapping = raw_block(
        dir.path(),
        (0, HOUR),
        &[(500, 1500, Encoding::Histogram, histogram(4))],
    );
    let overlapping_ulid = BlockMeta::read_from_dir(&overlapping).unwrap().ulid;
    let first_ulid = BlockMeta::read_from_dir(&first).unwrap().ulid;
    let error = merge_blocks(
        &[first, overlapping],
        &dir.path().join("bad"),
        &options(DedupFunc::OneToOne),
    )
    .unwrap_err();
    let MergeError::BadBlock {
        block,
        problem,
        detail,
    } = &error
    else {
        panic!("unexpected {error}");
    };
    assert_eq!(*problem, BlockProblem::OverlappingChunks);
    assert_eq!(*block, first_ulid, "the first unmergeable chunk's block");
    assert!(
        detail.contains(&overlapping_ulid.to_string()) && detail.contains("histogram"),
        "{detail}"
    );
}

#[test]
fn aggregate_chunks_pass_through_but_cannot_overlap() {
    use tsdb_block::chunkenc::{AggrPart, encode_aggr_chunk, encode_xor};
    let dir = tempfile::tempdir().unwrap();
    // A downsampled chunk: count and sum of three 5m windows.
    let aggregate = |start: i64| {
        let times: Vec<i64> = (0..3).map(|i| start + i * 300_000).collect();
        let count = encode_xor(&times.iter().map(|t| (*t, 10.0)).collect::<Vec<_>>());
        let sum = encode_xor(&times.iter().map(|t| (*t, *t as f64)).collect::<Vec<_>>());
        encode_aggr_chunk(&[
            Some(AggrPart {
                encoding: Encoding::Xor,
                data: count.bytes(),
            }),
            Some(AggrPart {
                encoding: Encoding::Xor,
                data: sum.bytes(),
            }),
            None,
            None,
            None,
        ])
    };
    let chunk = |start: i64| {
        (
            start,
            start + 600_000,
            Encoding::ThanosAggr,
            aggregate(start),
        )
    };
    let first = raw_block(dir.path(), (0, HOUR), &[chunk(0)]);
    let second = raw_block(dir.path(), (HOUR, 2 * HOUR), &[chunk(HOUR)]);
    let (merged, counters) = merge(
        &[first.clone(), second],
        &dir.path().join("out"),
        DedupFunc::OneToOne,
    );
    let merged = merged.unwrap();
    assert_eq!(counters.chunks_passed_through, 2);
    assert_eq!(merged.meta.stats.num_samples, 6);
    let block = BlockReader::open(&merged.dir).unwrap();
    let refs = tsdb_block::postings::collect(block.index().all_postings().unwrap());
    let entry = block.index().series(refs[0]).unwrap();
    let stored: Vec<Vec<u8>> = entry
        .chunks
        .iter()
        .map(|chunk| block.chunk(chunk.chunk_ref).unwrap().1.to_vec())
        .collect();
    assert_eq!(stored, vec![aggregate(0), aggregate(HOUR)]);
    // An identical copy is a duplicate upload: dropped without decoding. An overlapping
    // different one cannot be merged.
    let copy = raw_block(dir.path(), (0, HOUR), &[chunk(0)]);
    let (merged, counters) = merge(
        &[first.clone(), copy],
        &dir.path().join("dup"),
        DedupFunc::Penalty,
    );
    assert_eq!(merged.unwrap().meta.stats.num_chunks, 1);
    assert_eq!(counters.chunks_deduplicated, 1);
    let shifted = raw_block(dir.path(), (0, HOUR), &[chunk(300_000)]);
    let shifted_ulid = BlockMeta::read_from_dir(&shifted).unwrap().ulid;
    let error = merge_blocks(
        &[first, shifted],
        &dir.path().join("bad"),
        &options(DedupFunc::Penalty),
    )
    .unwrap_err();
    assert!(
        matches!(&error, MergeError::BadBlock { problem: BlockProblem::OverlappingChunks, detail, .. } if detail.contains(&shifted_ulid.to_string())),
        "{error}"
    );
}
