use super::*;

fn intervals(pairs: &[(i64, i64)]) -> Intervals {
    pairs
        .iter()
        .map(|&(min_time, max_time)| Interval::new(min_time, max_time))
        .collect()
}

fn check_add(pairs: &[(i64, i64)], expected: &[(i64, i64)]) {
    let merged = intervals(pairs);
    let got: Vec<(i64, i64)> = merged
        .as_slice()
        .iter()
        .map(|interval| (interval.min_time, interval.max_time))
        .collect();
    assert_eq!(got, expected, "adding {pairs:?}");
}

#[test]
fn intervals_are_sorted_and_merged_like_upstream() {
    check_add(&[(5, 6), (1, 2)], &[(1, 2), (5, 6)]);
    check_add(&[(1, 2), (3, 4)], &[(1, 4)]);
    check_add(&[(1, 2), (4, 5)], &[(1, 2), (4, 5)]);
    check_add(&[(1, 2), (4, 5), (7, 8), (3, 7)], &[(1, 8)]);
    check_add(
        &[(10, 20), (0, 5), (12, 13), (30, 40), (25, 29)],
        &[(0, 5), (10, 20), (25, 40)],
    );
    check_add(&[(i64::MIN, 0), (1, i64::MAX)], &[(i64::MIN, i64::MAX)]);
    check_add(&[(5, 1)], &[]);
}

#[test]
fn lookups_and_chunk_decisions() {
    let deleted = intervals(&[(10, 20), (40, 50)]);
    assert!(deleted.contains(10) && deleted.contains(20) && deleted.contains(45));
    assert!(!deleted.contains(9) && !deleted.contains(21) && !deleted.contains(51));
    assert_eq!(deleted.chunk_deletion(0, 9), ChunkDeletion::Kept);
    assert_eq!(deleted.chunk_deletion(21, 39), ChunkDeletion::Kept);
    assert_eq!(deleted.chunk_deletion(12, 18), ChunkDeletion::Deleted);
    assert_eq!(deleted.chunk_deletion(10, 20), ChunkDeletion::Deleted);
    assert_eq!(deleted.chunk_deletion(15, 45), ChunkDeletion::Partial);
    assert_eq!(deleted.chunk_deletion(0, 10), ChunkDeletion::Partial);
    assert_eq!(deleted.chunk_deletion(50, 60), ChunkDeletion::Partial);
    assert_eq!(deleted.chunk_deletion(60, 70), ChunkDeletion::Kept);
    let samples: Vec<(i64, f64)> = (0..60).map(|t| (t, t as f64)).collect();
    let kept: Vec<i64> = deleted
        .filter_samples(samples.clone())
        .map(|(t, _)| t)
        .collect();
    let expected: Vec<i64> = (0..60).filter(|t| !deleted.contains(*t)).collect();
    assert_eq!(kept, expected);
    let mut retained = samples;
    deleted.retain_in_time_order(&mut retained, |sample| sample.0);
    assert_eq!(retained.len(), expected.len());
}

#[test]
fn empty_file_is_nine_bytes_as_prometheus_writes_it() {
    let empty = Tombstones::new().encode();
    assert_eq!(empty, [0x01, 0x30, 0xBA, 0x30, 0x01, 0, 0, 0, 0]);
    assert!(Tombstones::decode(&empty, "tombstones").unwrap().is_empty());
}

#[test]
fn round_trips_through_a_block_folder() {
    let block_dir = tempfile::tempdir().unwrap();
    assert!(
        Tombstones::read_from_dir(block_dir.path())
            .unwrap()
            .is_empty()
    );
    let mut tombstones = Tombstones::new();
    tombstones.add_interval(300, Interval::new(-5, 5));
    tombstones.add_interval(16, Interval::new(100, 200));
    tombstones.add_interval(16, Interval::new(0, 10));
    tombstones.add_interval(16, Interval::new(11, 20));
    tombstones.add_interval(16, Interval::new(i64::MIN, i64::MIN));
    assert_eq!(tombstones.num_series(), 2);
    assert_eq!(tombstones.num_intervals(), 4);
    let size = tombstones.write_to_dir(block_dir.path()).unwrap();
    assert_eq!(
        size,
        fs::metadata(block_dir.path().join(TOMBSTONES_FILENAME))
            .unwrap()
            .len()
    );
    let read = Tombstones::read_from_dir(block_dir.path()).unwrap();
    assert_eq!(read, tombstones);
    let series: Vec<u64> = read.iter().map(|(series_ref, _)| series_ref).collect();
    assert_eq!(series, [16, 300]);
    assert_eq!(read.get(16).unwrap().as_slice()[1], Interval::new(0, 20));
}

#[test]
fn corrupt_files_name_the_problem() {
    let mut tombstones = Tombstones::new();
    tombstones.add_interval(1, Interval::new(1, 2));
    let good = tombstones.encode();
    let check = |bytes: &[u8], section: &str, detail: &str| {
        let error = Tombstones::decode(bytes, "tombstones").unwrap_err();
        match &error {
            Error::Corrupt {
                file,
                section: got,
                detail: got_detail,
                ..
            } => {
                assert_eq!(file, "tombstones");
                assert_eq!(*got, section, "{error}");
                assert!(got_detail.contains(detail), "{error}");
            }
            other => panic!("unexpected error {other}"),
        }
    };
    check(&good[..8], "header", "shorter");
    let mut bad = good.clone();
    bad[0] = 0;
    check(&bad, "header", "magic");
    bad = good.clone();
    bad[4] = 2;
    check(&bad, "header", "version");
    bad = good.clone();
    bad[6] ^= 1;
    check(&bad, "checksum", "does not match");
    // A truncated entry with a checksum that matches it.
    let mut truncated = good[..HEADER_SIZE + 2].to_vec();
    let checksum = crc32c(&truncated[HEADER_SIZE..]).to_be_bytes();
    truncated.extend_from_slice(&checksum);
    check(&truncated, "entries", "truncated");
}

#[test]
fn byte_source_helpers() {
    use crate::source::MemorySource;
    let block_dir = tempfile::tempdir().unwrap();
    assert_eq!(write_empty(block_dir.path()).unwrap(), 9);
    assert!(
        read_intervals(&MemorySource::new("tombstones", Vec::new()))
            .unwrap()
            .is_empty()
    );
    let mut tombstones = Tombstones::new();
    tombstones.add_interval(7, Interval::new(1, 2));
    tombstones.add_interval(7, Interval::new(3, 9));
    let source = MemorySource::new("tombstones", tombstones.encode());
    let read = read_intervals(&source).unwrap();
    assert_eq!(read[&7], [(1, 9)]);
    let error = read_intervals(&MemorySource::new("blk/tombstones", vec![1, 2, 3])).unwrap_err();
    assert!(error.to_string().contains("blk/tombstones"), "{error}");
}
