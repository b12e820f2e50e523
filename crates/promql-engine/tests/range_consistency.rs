//! Range queries agree bit for bit with instant queries at each step, in particular for the
//! batch path (`src/batch/`) that evaluates every step of a range query at once.

#[allow(dead_code)]
#[path = "support/dataset.rs"]
mod dataset;

use dataset::{Dataset, Spec};
use prom_model::{Labels, Sample};
use promql_engine::{Engine, MemoryStorage, QueryOptions, Value};

fn storage() -> MemoryStorage {
    let spec = Spec {
        start_s: 1_699_992_000,
        scrapes: 120,
        interval_s: 15,
        jobs: 3,
        instances: 4,
        methods: 2,
        small_instances: 2,
        histogram_methods: 1,
        seed: 3,
    };
    let mut storage = Dataset::generate(&spec).into_storage();
    // A series with a gap and a stale marker, to exercise lookback and staleness.
    let labels = Labels::from_pairs([
        ("__name__", "app_requests_total"),
        ("job", "api"),
        ("instance", "gappy"),
        ("method", "get"),
        ("code", "200"),
    ]);
    let mut samples: Vec<Sample> = (0..40)
        .map(|i| Sample::new(1_699_992_000_000 + i * 15_000 + 5, 100.0 + i as f64))
        .collect();
    samples.push(Sample::new(
        1_699_992_000_000 + 40 * 15_000 + 5,
        f64::from_bits(prom_model::STALE_NAN_BITS),
    ));
    samples.extend((70..100).map(|i| Sample::new(1_699_992_000_000 + i * 15_000 + 5, i as f64)));
    storage.append(labels, samples);
    storage
}

fn check(storage: &MemoryStorage, query: &str, start: i64, end: i64, step: i64) {
    check_every(storage, query, (start, end, step), 1);
}

/// Compares the range query's steps `0, stride, 2*stride, ...` with instant queries.
fn check_every(
    storage: &MemoryStorage,
    query: &str,
    (start, end, step): (i64, i64, i64),
    stride: i64,
) {
    let engine = Engine::default();
    let options = QueryOptions::default();
    let range = engine
        .range_query(storage, query, start, end, step, &options)
        .unwrap_or_else(|error| panic!("{query}: {error}"));
    let Value::Matrix(matrix) = range.value else {
        panic!("{query}: range query did not return a matrix")
    };
    let mut ts = start;
    let mut checked = 0;
    while ts <= end {
        let instant = engine
            .instant_query(storage, query, ts, &options)
            .unwrap_or_else(|error| panic!("{query} @ {ts}: {error}"));
        let mut expected: Vec<(String, u64)> = match instant.value {
            Value::Vector(vector) => vector
                .iter()
                .map(|e| (e.labels.to_string(), e.v.to_bits()))
                .collect(),
            Value::Scalar { v, .. } => vec![("{}".to_string(), v.to_bits())],
            other => panic!("{query}: unexpected {}", other.type_name()),
        };
        let mut actual: Vec<(String, u64)> = matrix
            .iter()
            .filter_map(|series| {
                let point = series.points.iter().find(|p| p.t == ts)?;
                Some((series.labels.to_string(), point.v.to_bits()))
            })
            .collect();
        expected.sort();
        actual.sort();
        assert_eq!(actual, expected, "{query} at {ts}");
        checked += expected.len();
        ts += step * stride;
    }
    assert!(checked > 0, "{query}: no data compared");
}

#[test]
fn range_steps_equal_instant_queries() {
    let storage = storage();
    let queries = [
        "sum by (job) (rate(app_requests_total[5m]))",
        "avg without (instance) (irate(app_requests_total[1m]))",
        "max by (instance) (app_requests_total)",
        "min (delta(app_temperature_celsius[2m] offset 1m))",
        "count by (code) (increase(app_requests_total[90s]))",
        "group by (job) (changes(app_errors_total[3m]))",
        "sum (app_requests_total offset 30s)",
        "count({__name__=~\".+\"})",
        "sum(app_requests_total{instance=~\".*1.*\"})",
        "stddev_over_time(app_memory_bytes[5m]) + on() group_left sum(deriv(app_memory_bytes[5m]))",
        "histogram_quantile(0.9, sum by (le) (rate(app_latency_seconds_bucket[5m])))",
        "sum by (job) (avg_over_time(app_temperature_celsius[10m])) / sum by (job) (count_over_time(app_temperature_celsius[10m]))",
        "max_over_time(sum by (job) (rate(app_requests_total[1m]))[5m:30s])",
        "sum by (__name__) (app_requests_total) or sum by (instance) (resets(app_requests_total[5m]))",
        // Pinned by `@`: computed at one step and repeated.
        "sum by (job) (rate(app_requests_total[5m] @ 1699993200)) * 2",
        "topk(2, app_memory_bytes @ 1699992900) + 0 * time()",
    ];
    let start = 1_699_992_000_000 + 120_000;
    for query in queries {
        check(&storage, query, start, start + 1_500_000, 15_000);
        check(&storage, query, start + 7_000, start + 1_650_000, 37_000);
    }
}

/// Large enough (series × steps) for the engine to split per-series work over threads: the
/// parallel path must give the same bits as the instant queries, which run on one thread.
#[test]
fn parallel_range_steps_equal_instant_queries() {
    let spec = Spec {
        start_s: 1_699_992_000,
        scrapes: 240,
        interval_s: 15,
        jobs: 4,
        instances: 40,
        methods: 3,
        small_instances: 2,
        histogram_methods: 1,
        seed: 11,
    };
    let storage = Dataset::generate(&spec).into_storage();
    assert!(storage.len() >= 1_000, "{} series", storage.len());
    let start = 1_699_992_000_000 + 300_000;
    // 221 steps over 960 request series: above the engine's threshold (200,000) for parallel work.
    for query in [
        "rate(app_requests_total[5m])",
        "app_requests_total offset 1m",
        "quantile_over_time(0.9, app_requests_total[2m])",
        "sum by (job) (increase(app_requests_total[3m]))",
    ] {
        check_every(&storage, query, (start, start + 3_300_000, 15_000), 20);
    }
}
