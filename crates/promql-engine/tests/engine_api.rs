//! Public-API behaviour of the engine: values, ordering, name removal, errors and limits.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use prom_model::{Labels, Sample};
use promql_engine::{Engine, EngineOptions, ErrorKind, MemoryStorage, QueryOptions, Value};

/// Two counters sampled every 15s for 10 minutes.
fn storage() -> MemoryStorage {
    let mut storage = MemoryStorage::new();
    for (job, slope) in [("a", 1.0), ("b", 2.0)] {
        let labels = Labels::from_pairs([("__name__", "requests_total"), ("job", job)]);
        let samples = (0..=40).map(|i| Sample::new(i * 15_000, slope * i as f64));
        storage.append(labels, samples);
    }
    storage
}

/// Runs an instant query at `time_s` and renders the vector as sorted `labels value` lines.
fn check_instant(query: &str, time_s: i64, expected: &[&str]) {
    let engine = Engine::default();
    let result = engine
        .instant_query(&storage(), query, time_s * 1000, &QueryOptions::default())
        .unwrap_or_else(|error| panic!("{query}: {error}"));
    let mut lines: Vec<String> = match result.value {
        Value::Vector(vector) => vector
            .iter()
            .map(|e| format!("{} {}", e.labels, rounded(e.v)))
            .collect(),
        Value::Scalar { v, .. } => vec![format!("scalar {}", rounded(v))],
        other => panic!("{query}: unexpected {}", other.type_name()),
    };
    lines.sort();
    assert_eq!(lines, expected, "{query}");
}

fn rounded(value: f64) -> f64 {
    (value * 1e9).round() / 1e9
}

fn check_error(
    engine: &Engine,
    query: &str,
    options: &QueryOptions,
    kind: ErrorKind,
    message: &str,
) {
    let error = engine
        .instant_query(&storage(), query, 600_000, options)
        .expect_err(query);
    assert_eq!(error.kind(), kind, "{query}: {error}");
    assert!(error.to_string().contains(message), "{query}: {error}");
}

#[test]
fn evaluates_selectors_functions_and_aggregations() {
    check_instant(
        "requests_total{job=\"a\"}",
        600,
        &["{__name__=\"requests_total\", job=\"a\"} 40"],
    );
    check_instant(
        "rate(requests_total[1m])",
        600,
        &["{job=\"a\"} 0.066666667", "{job=\"b\"} 0.133333333"],
    );
    check_instant("sum(requests_total)", 600, &["{} 120"]);
    check_instant(
        "requests_total > 50",
        600,
        &["{__name__=\"requests_total\", job=\"b\"} 80"],
    );
    check_instant("scalar(sum(requests_total)) * 2", 600, &["scalar 240"]);
    // Lookback: the last sample is at 600s, so it is visible until 900s (exclusive of 600s-300s).
    check_instant(
        "requests_total{job=\"a\"}",
        899,
        &["{__name__=\"requests_total\", job=\"a\"} 40"],
    );
    check_instant("requests_total{job=\"a\"}", 900, &[]);
}

#[test]
fn range_queries_are_sorted_matrices() {
    let engine = Engine::default();
    let result = engine
        .range_query(
            &storage(),
            "requests_total * 2",
            0,
            60_000,
            30_000,
            &QueryOptions::default(),
        )
        .expect("range query");
    let Value::Matrix(matrix) = result.value else {
        panic!("expected a matrix")
    };
    let rendered: Vec<String> = matrix
        .iter()
        .map(|s| {
            format!(
                "{} {:?}",
                s.labels,
                s.points.iter().map(|p| (p.t, p.v)).collect::<Vec<_>>()
            )
        })
        .collect();
    assert_eq!(
        rendered,
        [
            "{job=\"a\"} [(0, 0.0), (30000, 4.0), (60000, 8.0)]",
            "{job=\"b\"} [(0, 0.0), (30000, 8.0), (60000, 16.0)]",
        ]
    );
}

#[test]
fn errors_are_classified() {
    let engine = Engine::default();
    let options = QueryOptions::default();
    check_error(&engine, "sum(", &options, ErrorKind::BadData, "");
    check_error(
        &engine,
        "label_replace(requests_total, \"job\", \"x\", \"job\", \".*\")",
        &options,
        ErrorKind::Execution,
        "vector cannot contain metrics with the same labelset",
    );
    check_error(
        &engine,
        "requests_total + on() requests_total",
        &options,
        ErrorKind::Execution,
        "found duplicate series for the match group {} on the right hand-side of the operation",
    );
}

#[test]
fn limits_stop_queries_cleanly() {
    let limited = Engine::new(EngineOptions {
        max_samples: 10,
        ..EngineOptions::default()
    });
    check_error(
        &limited,
        "count_over_time(requests_total[5m])",
        &QueryOptions::default(),
        ErrorKind::Execution,
        "query processing would load too many samples into memory",
    );

    let cancelled = QueryOptions {
        cancel: Some(Arc::new(AtomicBool::new(true))),
        ..QueryOptions::default()
    };
    check_error(
        &Engine::default(),
        "requests_total",
        &cancelled,
        ErrorKind::Canceled,
        "canceled",
    );

    let no_time = QueryOptions {
        timeout: Some(Duration::ZERO),
        ..QueryOptions::default()
    };
    check_error(
        &Engine::default(),
        "requests_total",
        &no_time,
        ErrorKind::Timeout,
        "timed out",
    );
}

#[test]
fn annotations_carry_positions() {
    let mut storage = MemoryStorage::new();
    storage.append(
        Labels::from_pairs([("__name__", "temperature")]),
        [Sample::new(0, 1.0), Sample::new(30_000, 2.0)],
    );
    let result = Engine::default()
        .instant_query(
            &storage,
            "rate(temperature[1m])",
            45_000,
            &QueryOptions::default(),
        )
        .expect("query");
    assert_eq!(
        result.infos,
        [
            "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"temperature\" (1:6)"
        ]
    );
}

#[test]
fn extreme_times_do_not_panic() {
    let engine = Engine::default();
    let options = QueryOptions::default();
    for query in [
        "requests_total @ 9223372036854775",
        "requests_total offset -100000y",
        "rate(requests_total[100000y] offset 100000y)",
        "max_over_time(requests_total[10m:10ms] @ 100)",
        "sum_over_time(vector(1)[5m:1s] @ -9223372036854775)",
        "absent(nonexistent{job=\"x\"}) * -1",
        "topk(1e300, requests_total)",
        "quantile(NaN, requests_total)",
        "max_over_time(max_over_time(requests_total[1m:1m] offset 200000000y)[1m:1m] offset 200000000y)",
        "max_over_time(max_over_time(requests_total[200000000y:100000000y])[200000000y:100000000y])",
        "info(max_over_time(max_over_time(requests_total[1m:1m] offset 200000000y)[1m:1m] offset 200000000y))",
    ] {
        let outcome = engine.instant_query(&storage(), query, 600_000, &options);
        if let Err(error) = outcome {
            assert_ne!(error.kind(), ErrorKind::Internal, "{query}: {error}");
        }
    }
}

#[test]
fn range_spans_beyond_64_bits_are_refused() {
    let engine = Engine::default();
    let options = QueryOptions::default();
    // `end - start` overflows an i64 here (the querier accepts times this far out); the
    // aggregation fast path computed it and panicked.
    let (start, end) = (-9_200_000_000_000_000_000, 9_200_000_000_000_000_000);
    for query in [
        "sum by (job) (rate(requests_total[5m]))",
        "requests_total",
        "time()",
    ] {
        let error = engine
            .range_query(
                &storage(),
                query,
                start,
                end,
                4_000_000_000_000_000_000,
                &options,
            )
            .expect_err(query);
        assert_eq!(error.kind(), ErrorKind::BadData, "{query}: {error}");
        assert_eq!(error.to_string(), "end timestamp too far after start time");
    }
    // The widest span that fits is evaluated.
    let result = engine.range_query(
        &storage(),
        "requests_total",
        -i64::MAX / 2,
        i64::MAX / 2,
        i64::MAX / 4,
        &options,
    );
    assert!(result.is_ok(), "{result:?}");
}

/// A selector's own `@` pins it inside a subquery: the subquery's offset and range move only the
/// inner evaluation times, so the pinned data must still be loaded.
#[test]
fn pinned_selector_inside_an_offset_subquery_is_loaded() {
    check_instant(
        "count_over_time((requests_total{job=\"a\"} @ 600)[5m:1m] offset 10m)",
        1200,
        &["{job=\"a\"} 5"],
    );
    check_instant(
        "max_over_time((requests_total{job=\"a\"} @ 600)[5m:1m] offset 10m)",
        1200,
        &["{job=\"a\"} 40"],
    );
}
