use super::*;
use crate::chunkenc::{CutRule, cut_xor_chunks, decode_xor};

fn write_segments(
    max_segment_size: u64,
    series: &[Vec<Vec<u8>>],
) -> (tempfile::TempDir, Vec<Vec<ChunkRef>>, Vec<SegmentFile>) {
    let block_dir = tempfile::tempdir().unwrap();
    let mut writer =
        SegmentWriter::with_max_segment_size(block_dir.path(), max_segment_size).unwrap();
    let mut refs = Vec::new();
    for chunks in series {
        let framed: Vec<(Encoding, &[u8])> = chunks
            .iter()
            .map(|data| (Encoding::Xor, data.as_slice()))
            .collect();
        refs.push(writer.write_chunks(&framed).unwrap());
    }
    let files = writer.finish().unwrap();
    (block_dir, refs, files)
}

/// The two series of `testdata/promtool-two-series-000001` (see testdata/README.md).
fn promtool_two_series() -> Vec<Vec<(i64, f64)>> {
    let fast = (0..1000i64)
        .map(|index| (100_000 + index * 1000, (index % 7) as f64 * 0.25))
        .collect();
    let jitter = (0..450i64)
        .map(|index| {
            let value = if index % 5 == 0 {
                3.0
            } else {
                ((index * index) % 1000) as f64 / 8.0
            };
            (
                openmetrics_millis(index * 15_000 + (index * 7919) % 13),
                value,
            )
        })
        .collect();
    vec![fast, jitter]
}

/// The millisecond timestamp Prometheus' OpenMetrics parser makes of `millis` written as seconds
/// with three decimals: it multiplies the parsed float by 1000 and truncates, so `4185.012`
/// becomes 4185011.
fn openmetrics_millis(millis: i64) -> i64 {
    let text = format!("{:.3}", millis as f64 / 1000.0);
    (text.parse::<f64>().unwrap() * 1000.0) as i64
}

#[test]
fn head_cutting_and_segment_writing_match_prometheus_byte_for_byte() {
    let expected = include_bytes!("../../testdata/promtool-two-series-000001");
    let series: Vec<Vec<Vec<u8>>> = promtool_two_series()
        .into_iter()
        .map(|samples| {
            cut_xor_chunks(samples, CutRule::head())
                .unwrap()
                .into_iter()
                .map(|chunk| chunk.data)
                .collect()
        })
        .collect();
    let counts: Vec<Vec<(u16, usize)>> = series
        .iter()
        .map(|chunks| {
            chunks
                .iter()
                .map(|data| (u16::from_be_bytes([data[0], data[1]]), data.len()))
                .collect()
        })
        .collect();
    let fast = [
        (117, 248),
        (117, 248),
        (117, 248),
        (117, 247),
        (117, 248),
        (117, 248),
        (117, 247),
    ];
    let mut expected_fast = fast.to_vec();
    expected_fast.extend([(117, 248), (64, 141)]);
    let expected_jitter = vec![(120, 319), (120, 308), (121, 334), (89, 235)];
    assert_eq!(counts, [expected_fast, expected_jitter]);
    let (block_dir, refs, files) = write_segments(DEFAULT_MAX_SEGMENT_SIZE, &series);
    assert_eq!(
        files,
        [SegmentFile {
            name: "000001".into(),
            size: expected.len() as u64
        }]
    );
    let written = fs::read(block_dir.path().join("chunks/000001")).unwrap();
    assert_eq!(written, expected);
    assert_eq!(refs[0][0], ChunkRef::new(0, 8));
    for (series_refs, chunks) in refs.iter().zip(&series) {
        for (chunk_ref, data) in series_refs.iter().zip(chunks) {
            let (encoding, read) =
                read_chunk(&written, u64::from(chunk_ref.offset()), "chunks/000001").unwrap();
            assert_eq!(encoding, Encoding::Xor);
            assert_eq!(read, data.as_slice());
        }
    }
}

#[test]
fn reads_every_chunk_of_a_prometheus_segment() {
    let segment = include_bytes!("../../testdata/promtool-two-series-000001");
    let mut total_samples = 0;
    for item in iter_segment(segment, "chunks/000001") {
        let (_, chunk) = item.unwrap();
        assert_eq!(chunk.encoding, Encoding::Xor);
        total_samples += decode_xor(chunk.data).unwrap().len();
    }
    assert_eq!(total_samples, 1450);
}

#[test]
fn segments_are_cut_at_the_size_limit_keeping_a_series_together() {
    let chunk = vec![0u8; 100]; // 110 bytes with the estimated framing
    let series = vec![
        vec![chunk.clone(); 2],
        vec![chunk.clone(); 2],
        vec![chunk.clone()],
    ];
    // 8 + 2 * 110 = 228 fits 300; the second series would make 448, so it starts a new file.
    let (block_dir, refs, files) = write_segments(300, &series);
    assert_eq!(refs[0], [ChunkRef::new(0, 8), ChunkRef::new(0, 8 + 106)]);
    assert_eq!(refs[1], [ChunkRef::new(1, 8), ChunkRef::new(1, 8 + 106)]);
    assert_eq!(refs[2], [ChunkRef::new(2, 8)]);
    let names: Vec<&str> = files.iter().map(|file| file.name.as_str()).collect();
    assert_eq!(names, ["000001", "000002", "000003"]);
    assert_eq!(files[0].size, 8 + 2 * 106);
    assert_eq!(
        segment_file_names(&block_dir.path().join(CHUNKS_DIR)).unwrap(),
        names
    );
    // A series larger than a segment is split; a single oversized chunk gets its own file.
    let series = vec![vec![chunk.clone(); 3], vec![vec![0u8; 1000]]];
    let (_, refs, files) = write_segments(250, &series);
    assert_eq!(
        refs[0],
        [
            ChunkRef::new(0, 8),
            ChunkRef::new(0, 114),
            ChunkRef::new(1, 8)
        ]
    );
    assert_eq!(refs[1], [ChunkRef::new(2, 8)]);
    assert_eq!(files.len(), 3);
}

#[test]
fn a_block_without_chunks_has_an_empty_chunks_folder() {
    let (block_dir, _, files) = write_segments(DEFAULT_MAX_SEGMENT_SIZE, &[]);
    assert!(files.is_empty());
    assert!(
        segment_file_names(&block_dir.path().join(CHUNKS_DIR))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn segment_names_and_refs() {
    assert_eq!(segment_file_name(0), "000001");
    assert_eq!(segment_file_name(999_999), "1000000");
    assert_eq!(parse_segment_file_name("000042"), Some(42));
    assert_eq!(parse_segment_file_name("1"), Some(1));
    assert_eq!(parse_segment_file_name("00001.tmp"), None);
    assert_eq!(parse_segment_file_name("+1"), None);
    assert_eq!(parse_segment_file_name(""), None);
    let chunk_ref = ChunkRef::new(3, 0xDEAD_BEEF);
    assert_eq!(chunk_ref.0, (3 << 32) | 0xDEAD_BEEF);
    assert_eq!(
        (chunk_ref.segment_index(), chunk_ref.offset()),
        (3, 0xDEAD_BEEF)
    );
    assert_eq!(chunk_ref.to_string(), "3:3735928559");
}

fn check_error(segment: &[u8], offset: u64, section: &str, at: u64, detail: &str) {
    let error = read_chunk(segment, offset, "chunks/000001").unwrap_err();
    match &error {
        Error::Corrupt {
            file,
            section: got_section,
            offset: got_offset,
            detail: got_detail,
        } => {
            assert_eq!(file, "chunks/000001");
            assert_eq!(*got_section, section, "{error}");
            assert_eq!(*got_offset, at, "{error}");
            assert!(got_detail.contains(detail), "{error}");
        }
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn corrupt_segments_give_errors_naming_file_section_and_offset() {
    let good = include_bytes!("../../testdata/promtool-edge-values-000001").to_vec();
    assert!(read_chunk(&good, 8, "chunks/000001").is_ok());
    check_error(&good[..5], 8, "segment header", 0, "shorter");
    let mut bad = good.clone();
    bad[0] = 0;
    check_error(&bad, 8, "segment header", 0, "magic");
    bad = good.clone();
    bad[4] = 2;
    check_error(&bad, 8, "segment header", 0, "version");
    check_error(&good, 4, "chunk", 4, "outside");
    check_error(
        &good,
        good.len() as u64,
        "chunk",
        good.len() as u64,
        "outside",
    );
    check_error(&good[..50], 8, "chunk", 8, "needs");
    bad = good.clone();
    bad[30] ^= 1;
    check_error(&bad, 8, "chunk", 9, "checksum");
    bad = good.clone();
    bad[9] = 9;
    check_error(&bad, 8, "chunk", 9, "checksum");
    bad = good.clone();
    bad[8..13].copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x7f]);
    check_error(&bad, 8, "chunk", 8, "too large");
}

#[test]
fn unknown_encodings_with_valid_checksums_are_refused_and_known_opaque_ones_read() {
    let block_dir = tempfile::tempdir().unwrap();
    let mut writer = SegmentWriter::create(block_dir.path()).unwrap();
    let histogram_ref = writer
        .write_chunk(Encoding::FloatHistogram, &[0, 3, 0x40, 1, 2])
        .unwrap();
    let aggr_ref = writer.write_chunk(Encoding::ThanosAggr, &[0]).unwrap();
    writer.finish().unwrap();
    let mut segment = fs::read(block_dir.path().join("chunks/000001")).unwrap();
    let (encoding, data) = read_chunk(&segment, u64::from(histogram_ref.offset()), "c").unwrap();
    assert_eq!(
        (encoding, encoding.sample_count(data)),
        (Encoding::FloatHistogram, Some(3))
    );
    let (encoding, _) = read_chunk(&segment, u64::from(aggr_ref.offset()), "c").unwrap();
    assert_eq!(encoding, Encoding::ThanosAggr);
    // Rewrite the first chunk's encoding to 9 with a matching checksum.
    segment[9] = 9;
    let checksum = crc32c(&segment[9..15]).to_be_bytes();
    segment[15..19].copy_from_slice(&checksum);
    check_error(&segment, 8, "chunk", 9, "unknown chunk encoding 9");
}

#[test]
fn arbitrary_bytes_never_panic() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let good = include_bytes!("../../testdata/promtool-edge-values-000001");
    for _ in 0..5000 {
        let mut bytes = good.to_vec();
        for _ in 0..rng.random_range(1..4) {
            let index = rng.random_range(0..bytes.len());
            bytes[index] = rng.random();
        }
        bytes.truncate(rng.random_range(0..=bytes.len()));
        let offset = rng.random_range(0..bytes.len() as u64 + 16);
        let _ = read_chunk(&bytes, offset, "fuzz");
        assert!(iter_segment(&bytes, "fuzz").count() <= bytes.len() + 1);
    }
}
