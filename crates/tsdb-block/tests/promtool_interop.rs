//! Interop with Prometheus 2.42's promtool: blocks it creates read back sample for sample,
//! `tsdb-block dump` prints byte for byte what `promtool tsdb dump` prints, and `rewrite` keeps
//! a block's content and passes `promtool tsdb analyze`.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use prom_model::{MatchType, Matcher};
use tsdb_block::dump::block_dirs;
use tsdb_block::reader::BlockReader;

use common::{
    Expected, openmetrics, our_dump, promtool_create_blocks, promtool_dump, run, same_value,
};

/// Generates the OpenMetrics file and lets promtool turn it into blocks under `dir/blocks`.
fn promtool_blocks(dir: &Path) -> (PathBuf, Expected) {
    let (text, expected) = openmetrics();
    let file = dir.join("input.om");
    std::fs::write(&file, text).unwrap();
    let blocks = dir.join("blocks");
    promtool_create_blocks(&file, &blocks);
    (blocks, expected)
}

fn read_all(blocks_dir: &Path) -> Expected {
    let all = Matcher::new(MatchType::Regex, "__name__", ".+").unwrap();
    let mut read = Expected::new();
    for block_dir in block_dirs(blocks_dir).unwrap() {
        let block = BlockReader::open(&block_dir).unwrap();
        for series in block
            .select(std::slice::from_ref(&all), i64::MIN, i64::MAX)
            .unwrap()
        {
            let series = series.unwrap();
            let samples = read.entry(series.labels.clone()).or_default();
            block.samples(&series, samples).unwrap();
        }
    }
    for samples in read.values_mut() {
        samples.sort_by_key(|sample| sample.0);
    }
    read
}

fn assert_same_samples(actual: &Expected, expected: &Expected) {
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "series differ"
    );
    for (labels, want) in expected {
        let got = &actual[labels];
        assert_eq!(got.len(), want.len(), "{labels}: sample count");
        for (got, want) in got.iter().zip(want) {
            assert_eq!(got.0, want.0, "{labels}: timestamp");
            assert!(
                same_value(got.1, want.1),
                "{labels} at {}: {} != {}",
                got.0,
                got.1,
                want.1
            );
        }
    }
}

#[test]
fn promtool_blocks_read_back_sample_for_sample() {
    let dir = tempfile::tempdir().unwrap();
    let (blocks, expected) = promtool_blocks(dir.path());
    let block_count = block_dirs(&blocks).unwrap().len();
    assert!(
        block_count >= 3,
        "expected several 2h blocks, got {block_count}"
    );
    assert_same_samples(&read_all(&blocks), &expected);

    // Label names and values, and a selection with several matchers, from one block.
    let first = BlockReader::open(&block_dirs(&blocks).unwrap()[0]).unwrap();
    assert_eq!(
        first.label_names(),
        vec![
            "__name__", "le", "method", "path", "room", "sensor", "service"
        ]
    );
    assert_eq!(first.label_values("le").unwrap(), vec!["+Inf", "0.1", "1"]);
    let matchers = [
        Matcher::new(MatchType::Regex, "__name__", "temp.*").unwrap(),
        Matcher::new(MatchType::NotEqual, "room", "special").unwrap(),
        Matcher::new(MatchType::Regex, "sensor", "1|2|3").unwrap(),
    ];
    let selected: Vec<String> = first
        .select(&matchers, i64::MIN, i64::MAX)
        .unwrap()
        .map(|series| {
            series
                .unwrap()
                .labels
                .get("sensor")
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(selected, vec!["1", "2"]);
}

#[test]
fn dump_matches_promtool_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (blocks, _) = promtool_blocks(dir.path());
    let start = common::START_SECONDS * 1000;
    let ranges: Vec<Vec<String>> = vec![
        vec![],
        vec![
            format!("--min-time={}", start + 3_600_000),
            format!("--max-time={}", start + 9_000_000),
        ],
        vec![format!("--max-time={}", start + 15_000)],
        vec![format!("--min-time={}", start + 100_000_000)],
        vec![r#"--match=temperature{room!="special"}"#.to_owned()],
        vec![r#"--match={__name__=~"latency.*",le=~"0.1|\\+Inf"}"#.to_owned()],
        vec![
            r#"--match={path=~".*ü.*"}"#.to_owned(),
            format!("--max-time={}", start + 600_000),
        ],
    ];
    for extra in ranges {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let theirs = promtool_dump(&blocks, &extra);
        let ours = our_dump(&blocks, &extra);
        if theirs != ours {
            let theirs = String::from_utf8_lossy(&theirs);
            let ours = String::from_utf8_lossy(&ours);
            let first_difference = theirs
                .lines()
                .zip(ours.lines())
                .find(|(left, right)| left != right);
            panic!(
                "dump {extra:?} differs ({} vs {} lines); first difference: {first_difference:?}",
                theirs.lines().count(),
                ours.lines().count()
            );
        }
        if extra.is_empty() {
            assert!(theirs.len() > 100_000, "dump is suspiciously short");
        }
        if extra.iter().any(|argument| argument.starts_with("--match")) {
            assert!(!theirs.is_empty(), "{extra:?} selects nothing");
        }
    }
}

#[test]
fn rewrite_passes_analyze_and_keeps_the_dump() {
    let dir = tempfile::tempdir().unwrap();
    let (blocks, _) = promtool_blocks(dir.path());
    for source in block_dirs(&blocks).unwrap() {
        let single = dir.path().join("single");
        let _ = std::fs::remove_dir_all(&single);
        common::copy_dir(&source, &single.join(source.file_name().unwrap()));
        let out = dir.path().join("rewritten");
        let _ = std::fs::remove_dir_all(&out);
        let mut command = Command::new(env!("CARGO_BIN_EXE_tsdb-block"));
        command.arg("rewrite").arg(&source).arg(&out);
        let printed = String::from_utf8(run(command)).unwrap();
        let ulid = printed.split_whitespace().next().unwrap().to_owned();
        assert_ne!(ulid, source.file_name().unwrap().to_string_lossy());

        let mut analyze = Command::new(test_harness::promtool().unwrap());
        let analyzed_copy = tempfile::tempdir().unwrap();
        common::copy_dir(&out, analyzed_copy.path());
        analyze
            .args(["tsdb", "analyze"])
            .arg(analyzed_copy.path())
            .arg(&ulid);
        let report = String::from_utf8(run(analyze)).unwrap();
        assert!(report.contains(&format!("Block ID: {ulid}")), "{report}");

        assert_eq!(
            promtool_dump(&out, &[]),
            promtool_dump(&single, &[]),
            "dump of {source:?}"
        );
    }
}

#[test]
fn errors_are_one_readable_line_and_a_failure_exit() {
    let dir = tempfile::tempdir().unwrap();
    let block = dir.path().join("01ARZ3NDEKTSV4RRFFQ69G5FAV");
    std::fs::create_dir_all(block.join("chunks")).unwrap();
    std::fs::write(block.join("meta.json"), b"{not json").unwrap();
    for arguments in [
        vec!["dump".to_owned(), dir.path().display().to_string()],
        vec![
            "rewrite".to_owned(),
            dir.path().join("missing").display().to_string(),
            dir.path().join("out").display().to_string(),
        ],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_tsdb-block"))
            .args(&arguments)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{arguments:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("tsdb-block: "), "{stderr}");
    }
}

#[test]
fn dump_merges_overlapping_blocks_like_promtool() {
    use prom_model::Labels;
    use tsdb_block::writer::{BlockWriter, symbols_of};

    let dir = tempfile::tempdir().unwrap();
    let shared = Labels::from_pairs([("__name__", "overlap"), ("job", "a")]);
    let only_first = Labels::from_pairs([("__name__", "first_only"), ("x", "1")]);
    let only_second = Labels::from_pairs([("__name__", "zz_second_only"), ("x", "2")]);
    // Two blocks whose time ranges overlap; the shared series has equal samples where they meet.
    let blocks = [
        (vec![&only_first, &shared], 0i64..300),
        (vec![&shared, &only_second], 200i64..500),
    ];
    for (series, points) in blocks {
        let mut sorted = series.clone();
        sorted.sort();
        let mut writer =
            BlockWriter::create(dir.path(), symbols_of(sorted.iter().copied())).unwrap();
        for labels in sorted {
            let samples: Vec<(i64, f64)> = points
                .clone()
                .map(|point| (1_000_000 + point * 10_000, point as f64 * 1.5))
                .collect();
            writer.add_series_samples(labels, &samples).unwrap();
        }
        writer.finish().unwrap();
    }
    assert_eq!(block_dirs(dir.path()).unwrap().len(), 2);
    for extra in [vec![], vec!["--min-time=2500000", "--max-time=3500000"]] {
        let theirs = promtool_dump(dir.path(), &extra);
        if extra.is_empty() {
            // 300 + 300 samples of the single-block series, 500 distinct ones of the shared one.
            assert_eq!(String::from_utf8_lossy(&theirs).lines().count(), 1100);
        }
        assert_eq!(
            String::from_utf8(our_dump(dir.path(), &extra)).unwrap(),
            String::from_utf8(theirs).unwrap()
        );
    }
}
