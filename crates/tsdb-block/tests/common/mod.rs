//! Shared helpers of the interop tests: generated OpenMetrics data and program runners.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use prom_model::Labels;

/// Expected samples per series: `(timestamp ms, value)`.
pub(crate) type Expected = BTreeMap<Labels, Vec<(i64, f64)>>;

/// First timestamp of the generated data, in seconds (not 2h-aligned, so blocks get cut).
pub(crate) const START_SECONDS: i64 = 1_700_000_000;
/// Sample spacing in seconds.
pub(crate) const STEP_SECONDS: i64 = 30;
/// Samples per series (about 5 hours).
pub(crate) const POINTS: i64 = 600;

fn escape_openmetrics(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels_text(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(name, value)| format!("{name}=\"{}\"", escape_openmetrics(value)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

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

/// A value generator: the value at point `i`, or `None` for a gap.
type ValueAt<'a> = Box<dyn Fn(i64) -> Option<f64> + 'a>;

/// One generated series: sample name, labels, values.
type GeneratedSeries<'a> = (String, Vec<(&'a str, &'a str)>, ValueAt<'a>);

struct Family<'a> {
    name: &'a str,
    kind: &'a str,
    /// `(sample name, labels, value at point i or None for a gap)`.
    series: Vec<GeneratedSeries<'a>>,
}

/// An OpenMetrics text with counters, gauges, a classic histogram, odd label values, gaps and
/// special float values; and the samples promtool should store for it.
pub(crate) fn openmetrics() -> (String, Expected) {
    let odd = "quote \" backslash \\ tab\tünïcödé 日本 🔥 nb\u{a0}sp zw\u{200b}j \u{85} end";
    let mut families: Vec<Family<'_>> = Vec::new();
    families.push(Family {
        name: "http_requests",
        kind: "counter",
        series: vec![
            (
                "http_requests_total".into(),
                vec![("method", "GET"), ("path", "/a b")],
                Box::new(|i| Some((i * 3) as f64)),
            ),
            (
                "http_requests_total".into(),
                vec![("method", "POST"), ("path", odd)],
                Box::new(|i| Some(i as f64 * 0.1)),
            ),
        ],
    });
    families.push(Family {
        name: "temperature",
        kind: "gauge",
        series: vec![
            (
                "temperature".into(),
                vec![("room", "big\nline"), ("sensor", "1")],
                Box::new(|i| Some(20.0 + ((i * 7919) % 1000) as f64 / 64.0 - 7.5)),
            ),
            (
                "temperature".into(),
                vec![("room", "gappy"), ("sensor", "2")],
                // Gaps: points 100..250 and 400..401 are missing.
                Box::new(|i| {
                    (!(100..250).contains(&i) && !(400..402).contains(&i))
                        .then_some(-(i as f64) * 1e-7)
                }),
            ),
            (
                "temperature".into(),
                vec![("room", "special"), ("sensor", "3")],
                Box::new(|i| {
                    Some(match i % 9 {
                        0 => f64::NAN,
                        1 => f64::INFINITY,
                        2 => f64::NEG_INFINITY,
                        3 => 1e300,
                        4 => -0.0,
                        5 => 123456789.0,
                        6 => 1e6,
                        7 => 0.00001234,
                        _ => 1.0 / 3.0,
                    })
                }),
            ),
        ],
    });
    let buckets = ["0.1", "1", "+Inf"];
    let mut histogram = Family {
        name: "latency_seconds",
        kind: "histogram",
        series: Vec::new(),
    };
    for (index, le) in buckets.iter().enumerate() {
        histogram.series.push((
            "latency_seconds_bucket".into(),
            vec![("le", le), ("service", "api")],
            Box::new(move |i| Some((i * (index as i64 + 1)) as f64)),
        ));
    }
    histogram.series.push((
        "latency_seconds_count".into(),
        vec![("service", "api")],
        Box::new(|i| Some((i * 3) as f64)),
    ));
    histogram.series.push((
        "latency_seconds_sum".into(),
        vec![("service", "api")],
        Box::new(|i| Some(i as f64 * 0.75)),
    ));
    families.push(histogram);

    let mut text = String::new();
    let mut expected = Expected::new();
    for family in &families {
        let _ = writeln!(text, "# TYPE {} {}", family.name, family.kind);
        let _ = writeln!(
            text,
            "# HELP {} Generated for the tsdb-block interop tests.",
            family.name
        );
        for point in 0..POINTS {
            let seconds = START_SECONDS + point * STEP_SECONDS;
            for (sample_name, pairs, value) in &family.series {
                let Some(value) = value(point) else { continue };
                let _ = writeln!(
                    text,
                    "{sample_name}{} {} {seconds}",
                    labels_text(pairs),
                    value_text(value)
                );
                let mut labels = Labels::from_pairs(pairs.iter().copied());
                labels.set("__name__", sample_name.as_str());
                expected
                    .entry(labels)
                    .or_default()
                    .push((seconds * 1000, value));
            }
        }
    }
    text.push_str("# EOF\n");
    (text, expected)
}

/// Runs `command`, fails the test with its stderr unless it exits 0, returns stdout.
pub(crate) fn run(mut command: Command) -> Vec<u8> {
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

/// `promtool tsdb create-blocks-from openmetrics FILE OUT`.
pub(crate) fn promtool_create_blocks(file: &Path, out: &Path) {
    let mut command = Command::new(test_harness::promtool().unwrap());
    command
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(file)
        .arg(out);
    run(command);
}

/// `promtool tsdb dump` of a copy of `dir` (promtool needs a `wal` folder and writes into the
/// folder it dumps), with extra arguments.
pub(crate) fn promtool_dump(dir: &Path, extra: &[&str]) -> Vec<u8> {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir, copy.path());
    std::fs::create_dir_all(copy.path().join("wal")).unwrap();
    let mut command = Command::new(test_harness::promtool().unwrap());
    command.args(["tsdb", "dump"]).args(extra).arg(copy.path());
    run(command)
}

/// `tsdb-block dump DIR` with extra arguments.
pub(crate) fn our_dump(dir: &Path, extra: &[&str]) -> Vec<u8> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tsdb-block"));
    command.arg("dump").args(extra).arg(dir);
    run(command)
}

/// Copies a folder tree.
pub(crate) fn copy_dir(from: &Path, to: &Path) {
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

/// Whether two sample values are the same (NaN equals NaN).
pub(crate) fn same_value(left: f64, right: f64) -> bool {
    (left.is_nan() && right.is_nan()) || left.to_bits() == right.to_bits() || left == right
}
