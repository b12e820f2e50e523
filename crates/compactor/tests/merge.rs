//! The block merge against Prometheus 2.42's promtool: blocks made by promtool
//! (`tsdb create-blocks-from openmetrics`) and by our `BlockWriter`, merged; `promtool tsdb dump`
//! of the output prints exactly what it prints for the sources.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use compactor::merge::{DedupFunc, MergeOptions, merge_blocks_counted};
use prom_model::Labels;
use tsdb_block::dump::block_dirs;
use tsdb_block::meta::BlockMeta;
use tsdb_block::writer::{BlockWriter, symbols_of};
use ulid::Ulid;

/// First timestamp of the generated data, in seconds (not 2h-aligned, so promtool cuts blocks).
const START_SECONDS: i64 = 1_700_000_000;
const STEP_SECONDS: i64 = 30;
const POINTS: i64 = 600;

fn value_text(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        format!("{value:?}")
    }
}

/// An OpenMetrics text of about 5 hours: counters, gauges with gaps, special values and odd
/// label values.
fn openmetrics() -> String {
    let odd = r#"quote \" backslash \\ ünïcödé 日本 🔥 newline \n end"#;
    let mut text = String::new();
    let _ = writeln!(text, "# TYPE http_requests counter");
    for point in 0..POINTS {
        let seconds = START_SECONDS + point * STEP_SECONDS;
        let _ = writeln!(
            text,
            "http_requests_total{{method=\"GET\",path=\"/a b\"}} {} {seconds}",
            point * 3
        );
        let _ = writeln!(
            text,
            "http_requests_total{{method=\"POST\",path=\"{odd}\"}} {} {seconds}",
            value_text(point as f64 * 0.1)
        );
    }
    let _ = writeln!(text, "# TYPE temperature gauge");
    for point in 0..POINTS {
        let seconds = START_SECONDS + point * STEP_SECONDS;
        if !(100..250).contains(&point) {
            let _ = writeln!(
                text,
                "temperature{{room=\"gappy\"}} {} {seconds}",
                value_text(-(point as f64) * 1e-7)
            );
        }
        let special = match point % 7 {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => f64::NEG_INFINITY,
            3 => 1e300,
            4 => -0.0,
            5 => 123_456_789.0,
            _ => 1.0 / 3.0,
        };
        let _ = writeln!(
            text,
            "temperature{{room=\"special\"}} {} {seconds}",
            value_text(special)
        );
    }
    text.push_str("# EOF\n");
    text
}

fn run(mut command: Command) -> Vec<u8> {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("run {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} exited with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Blocks promtool makes of the generated data, under `dir`.
fn promtool_blocks(work: &Path, dir: &Path) -> Vec<PathBuf> {
    let file = work.join("input.om");
    std::fs::write(&file, openmetrics()).unwrap();
    let mut command = Command::new(test_harness::promtool().unwrap());
    command
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&file)
        .arg(dir);
    run(command);
    let blocks = block_dirs(dir).unwrap();
    assert!(blocks.len() >= 3, "several 2h blocks, got {}", blocks.len());
    blocks
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `promtool tsdb dump` over copies of `blocks` (promtool needs a `wal` folder and writes
/// into the folder it dumps).
fn promtool_dump(blocks: &[PathBuf]) -> String {
    let copy = tempfile::tempdir().unwrap();
    for block in blocks {
        copy_dir(block, &copy.path().join(block.file_name().unwrap()));
    }
    std::fs::create_dir_all(copy.path().join("wal")).unwrap();
    let mut command = Command::new(test_harness::promtool().unwrap());
    command.args(["tsdb", "dump"]).arg(copy.path());
    String::from_utf8(run(command)).unwrap()
}

/// A copy of `block` under `parent` with a new ULID, as a second upload of the same data.
fn reupload(block: &Path, parent: &Path) -> PathBuf {
    let ulid = Ulid::new();
    let target = parent.join(ulid.to_string());
    copy_dir(block, &target);
    let mut meta = BlockMeta::read_from_dir(&target).unwrap();
    meta.ulid = ulid;
    meta.compaction.sources = vec![ulid];
    meta.write_to_dir(&target).unwrap();
    target
}

/// A block written by our writer after promtool's data: some series promtool has, some new.
fn our_block(parent: &Path) -> PathBuf {
    let start = (START_SECONDS + POINTS * STEP_SECONDS) * 1000 + 7_200_000;
    let series: Vec<(Labels, Vec<(i64, f64)>)> = vec![
        (
            Labels::from_pairs([
                ("__name__", "http_requests_total"),
                ("method", "GET"),
                ("path", "/a b"),
            ]),
            (0..300).map(|i| (start + i * 15_000, i as f64)).collect(),
        ),
        (
            Labels::from_pairs([("__name__", "only_ours"), ("x", "ü")]),
            (0..50).map(|i| (start + i * 60_000, -(i as f64))).collect(),
        ),
    ];
    let mut writer =
        BlockWriter::create(parent, symbols_of(series.iter().map(|(l, _)| l))).unwrap();
    writer.set_time_range(start, start + 7_200_000);
    for (labels, samples) in &series {
        writer.add_series_samples(labels, samples).unwrap();
    }
    writer.finish().unwrap().1
}

fn options(dedup: DedupFunc) -> MergeOptions {
    MergeOptions {
        dedup,
        labels: [("cluster".to_owned(), "eu1".to_owned())].into(),
        resolution: 0,
    }
}

#[test]
fn merged_promtool_and_our_blocks_dump_like_the_sources() {
    let work = tempfile::tempdir().unwrap();
    let sources_dir = work.path().join("sources");
    let mut sources = promtool_blocks(work.path(), &sources_dir);
    sources.push(our_block(&sources_dir));
    let expected = promtool_dump(&sources);
    assert!(
        expected.lines().count() > 4 * POINTS as usize,
        "dump of the sources"
    );
    let (merged, counters) = merge_blocks_counted(
        &sources,
        &work.path().join("out"),
        &options(DedupFunc::OneToOne),
    )
    .unwrap();
    let merged = merged.unwrap();
    assert_eq!(counters.chunks_decoded, 0, "{counters:?}");
    let actual = promtool_dump(std::slice::from_ref(&merged.dir));
    assert!(
        actual == expected,
        "dumps differ:\n{}",
        first_difference(&actual, &expected)
    );
    assert_eq!(merged.meta.compaction.level, 2);
    assert_eq!(merged.meta.compaction.parents.len(), sources.len());
}

#[test]
fn duplicate_uploads_merge_vertically_into_one_copy() {
    let work = tempfile::tempdir().unwrap();
    let sources_dir = work.path().join("sources");
    let originals = promtool_blocks(work.path(), &sources_dir);
    let expected = promtool_dump(&originals);
    let copies_dir = work.path().join("copies");
    let mut sources = originals.clone();
    sources.extend(originals.iter().map(|block| reupload(block, &copies_dir)));
    for dedup in [DedupFunc::OneToOne, DedupFunc::Penalty] {
        let (merged, counters) = merge_blocks_counted(
            &sources,
            &work.path().join(format!("{dedup:?}")),
            &options(dedup),
        )
        .unwrap();
        let merged = merged.unwrap();
        assert!(counters.chunks_deduplicated > 0, "{counters:?}");
        let actual = promtool_dump(std::slice::from_ref(&merged.dir));
        assert!(
            actual == expected,
            "{dedup:?}: dumps differ:\n{}",
            first_difference(&actual, &expected)
        );
        assert_eq!(merged.meta.compaction.sources.len(), sources.len());
    }
}

fn first_difference(actual: &str, expected: &str) -> String {
    let (actual_lines, expected_lines) = (actual.lines().count(), expected.lines().count());
    for (index, (got, want)) in actual.lines().zip(expected.lines()).enumerate() {
        if got != want {
            return format!("line {index}: got {got:?}, want {want:?}");
        }
    }
    format!("{actual_lines} lines, want {expected_lines}")
}
