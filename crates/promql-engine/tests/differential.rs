//! Differential test against a real Prometheus 2.42 (Debian's `prometheus` package).
//!
//! A deterministic dataset (`support/dataset.rs`: ~390 series over 3h — counters with resets,
//! gauges, a classic histogram, 3 jobs × 5 instances) is written as OpenMetrics, turned into
//! blocks with `promtool tsdb create-blocks-from openmetrics`, and served by Prometheus; the very
//! same samples are loaded into a [`MemoryStorage`]. A grammar-based generator with a fixed seed
//! (`support/generator.rs`) then produces queries of every shape issue #22 lists: selectors with
//! all four matcher types; every range-function family (`rate`/`irate`/`increase`,
//! `resets`/`changes`, `delta`/`idelta`, `deriv`/`predict_linear`, `*_over_time`,
//! `absent_over_time`); every aggregation incl. `topk`/`bottomk`/`quantile`/`count_values`;
//! vector-scalar and scalar-scalar arithmetic, vector-vector operations one-to-one and with
//! `on`/`ignoring`/`group_left`/`group_right`, comparison filters and `bool`, `and`/`or`/`unless`;
//! subqueries (nested too); `label_replace`/`label_join`; `histogram_quantile`; `absent`; `@`
//! (timestamps, `start()`, `end()`) and `offset`; unary minus; `scalar()`/`vector()`/`time()`/
//! `timestamp()`. Each runs as an instant query and as a range query in both engines, and is
//! tagged with its shapes: a tally of how many queries of each shape ran, agreed and had data is
//! printed, and the test fails when a shape never returned data (coverage cannot silently
//! regress). `DIFFERENTIAL_QUERIES` (one query a line) replaces the generated queries and
//! `DIFFERENTIAL_TIMES="instant start end step"` pins their times, to investigate a mismatch.
//! Labels must be identical, values agree within 1e-6 relative (the conformance tolerance) or
//! 1e-9 absolute, NaN equals NaN; row order is ignored except for the values of a top-level
//! `sort`/`sort_desc`. When both fail, that counts as agreement there; the wording of errors is
//! compared separately on a fixed list of invalid queries ([`ERROR_QUERIES`]: lexer, grammar,
//! node-building, type and execution errors), which must match 2.42's `errorType` and message
//! exactly (for `bad_data` without the HTTP API's `invalid parameter "query": ` prefix).
//!
//! # What is deliberately kept out (where 2.42 and 3.x genuinely differ)
//!
//! - **Window boundaries.** 2.42 uses closed windows `[t-d, t]`, 3.x left-open `(t-d, t]`. Every
//!   sample has a 100–900 ms fraction, every evaluation time a 50 ms fraction, and every range,
//!   offset and subquery step is whole seconds, so neither a sample nor an inner subquery
//!   timestamp ever lies on a boundary.
//!   `@` timestamps on a subquery carry the same 50 ms fraction (on a selector they may be whole
//!   seconds). Subquery steps are multiples of 5 s, and a nested subquery's inner range is 2 or
//!   3 s more than a multiple of 5 s, so an inner subquery evaluated at an outer step never has
//!   one of its own steps on its window's start.
//! - **Default subquery step.** Prometheus uses its evaluation interval; it is set to 1m, the
//!   engine's default.
//! - **Ties in `topk`/`bottomk`** are broken arbitrarily by both engines, so these only rank
//!   tie-free inputs (gauges, averages, derivatives).
//! - **Rate zero-point clamp order.** 2.42 clamps the extrapolation to zero before the
//!   1.1×-average-gap test. Counters start at ≥ 5000, grow ≤ 20 per scrape and only halve on a
//!   reset, so the extrapolation to zero is always far longer than 1.1× the gap and the clamp
//!   never decides a result. For the same reason `rate` over a subquery only wraps raw
//!   counters, never a `sum` of them (a sum drops only slightly when one member resets).
//! - **Kahan summation** (`sum`, `avg`, `*_over_time` since 2.54) only moves low-order digits:
//!   covered by the value tolerance. A comparison turns such a digit into a presence, so no
//!   comparison filters a float aggregate against one of its own members, and `%` (which jumps
//!   by its divisor) only takes exactly integral values.
//! - **Regex `.` and newlines**: no label value contains a newline.
//! - **Delayed `__name__` removal** (3.x behaviour in this engine): no query reads `__name__`
//!   after a name-dropping function (`label_replace` sources are `instance`/`job` only), and `or`
//!   only combines one metric with itself. A vector-vector comparison filter keeps its left
//!   side's name in 3.x even when a function there marked it for removal (only `bool` drops it),
//!   so the left side of such a filter is a plain selector.
//! - **2.42 bugs around `@`**: a range query of `predict_linear(v[d] @ t, s)` is answered at its
//!   first step(s) only, and `timestamp(v @ t offset d)` finds nothing; `predict_linear` windows
//!   carry no `@`, and `timestamp()` of a selector takes `@` or `offset`, not both.
//! - **Functions and syntax newer than 2.42** (`limitk`, `sort_by_label`, `first_over_time`,
//!   `mad_over_time`, `fill`, duration arithmetic, native histograms, `le` normalisation):
//!   never generated, nor `holt_winters`, which 3.x renamed (`double_exponential_smoothing`,
//!   experimental) and the engine rejects by its old name. Annotations (warnings/infos) are not
//!   compared (2.42 has none).
//! - `count_values` only counts exactly integral values (`count_over_time`, `changes`, `resets`,
//!   `floor(max_over_time(...))`): its label is the formatted value, and `ceil` of an average of
//!   1e9-sized gauges already flips with the summation order.
//!
//! A missing `prometheus` or `promtool` fails the test.
#![allow(clippy::print_stdout)]

#[path = "support/compare.rs"]
mod compare;
#[path = "support/dataset.rs"]
mod dataset;
#[path = "support/generator.rs"]
mod generator;
#[path = "support/query_shapes.rs"]
mod query_shapes;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use compare::{Answer, diff, from_engine, from_prometheus};
use dataset::{Dataset, Rng, Spec, copy_blocks, url_encode};
use generator::{Generated, QueryGen};
use promql_engine::{Engine, QueryOptions};
use query_shapes::Shape;
use test_harness::prometheus::{Prometheus, PrometheusConfig};

/// Number of generated queries; each runs as an instant and as a range query.
const QUERIES: usize = 1500;
const SEED: u64 = 0x7a05_2042;
/// Evaluation times are whole seconds plus this many ms: samples carry 100–900 ms fractions and
/// subquery steps are whole seconds, so neither a sample nor an inner subquery timestamp ever
/// sits on a window boundary `t - range` (2.42: closed windows, 3.x: left-open).
const EVAL_FRACTION_MS: i64 = 50;

fn spec() -> Spec {
    Spec {
        // 2023-11-14T20:00:00Z, a multiple of 2h.
        start_s: 1_699_992_000,
        scrapes: 720,
        interval_s: 15,
        jobs: 3,
        instances: 5,
        methods: 2,
        small_instances: 5,
        histogram_methods: 2,
        seed: 42,
    }
}

/// Shapes whose presence can be read off the query text: the shape, and a pattern that must
/// match exactly the generated texts tagged with it.
const VISIBLE_SHAPES: &[(Shape, &str)] = &[
    (Shape::MatchEqual, r#"[a-z_]=""#),
    (Shape::MatchNotEqual, r#"[a-z_]!=""#),
    (Shape::MatchRegex, r#"[a-z_]=~""#),
    (Shape::MatchNotRegex, r#"[a-z_]!~""#),
    (Shape::AbsentOverTime, r"absent_over_time\("),
    (Shape::Absent, r"(^|[^_])absent\("),
    (Shape::Topk, r"topk "),
    (Shape::Bottomk, r"bottomk "),
    (Shape::Quantile, r"(^|[^_])quantile "),
    (Shape::CountValues, r"count_values "),
    (Shape::On, r" on \("),
    (Shape::Ignoring, r" ignoring \("),
    (Shape::GroupLeft, r" group_left"),
    (Shape::GroupRight, r" group_right"),
    (Shape::ComparisonBool, r" bool "),
    (Shape::And, r" and "),
    (Shape::Or, r" or "),
    (Shape::Unless, r" unless "),
    (Shape::Subquery, r"\[[0-9a-z]+:[0-9a-z]*\]"),
    (Shape::LabelReplace, r"label_replace\("),
    (Shape::LabelJoin, r"label_join\("),
    (Shape::HistogramQuantile, r"histogram_quantile\("),
    (Shape::AtTimestamp, r"@ [0-9]"),
    (Shape::AtStart, r"@ start\(\)"),
    (Shape::AtEnd, r"@ end\(\)"),
    (Shape::Offset, r" offset "),
    (Shape::ScalarFunction, r"scalar\("),
    (Shape::VectorFunction, r"vector\("),
    (Shape::Time, r"(^|[^a-z_])time\(\)"),
    (Shape::Timestamp, r"timestamp\("),
    (Shape::Sort, r"sort(_desc)?\("),
];

/// Without Prometheus: the generated queries contain every shape, and a shape that shows in the
/// text is tagged exactly when it is there (so the tally counts what it claims to).
#[test]
fn generator_covers_every_shape_and_tags_it_truthfully() {
    let spec = spec();
    let end_s = spec.start_s + spec.scrapes as i64 * spec.interval_s;
    let mut generator = QueryGen::new(SEED, (spec.start_s + 600, end_s));
    let queries: Vec<Generated> = (0..QUERIES).map(|_| generator.query()).collect();
    let subquery = regex::Regex::new(r"\[[0-9a-z]+:[0-9a-z]*\]").expect("valid regex");
    let mut wrong = Vec::new();
    for (shape, pattern) in VISIBLE_SHAPES {
        let pattern = regex::Regex::new(pattern).expect("valid regex");
        for query in &queries {
            let tagged = query.shapes.contains(shape);
            if tagged != pattern.is_match(&query.text) {
                wrong.push(format!("{} tagged {tagged}: {}", shape.name(), query.text));
            }
        }
    }
    for query in &queries {
        let nested = query.shapes.contains(&Shape::NestedSubquery);
        if nested && subquery.find_iter(&query.text).count() < 2 {
            wrong.push(format!(
                "nested subquery without two subqueries: {}",
                query.text
            ));
        }
        if let Err(error) = promql_parser::parser::parse(&query.text) {
            wrong.push(format!("does not parse ({error}): {}", query.text));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong tags:\n{}",
        wrong.len(),
        wrong[..wrong.len().min(20)].join("\n")
    );
    let missing: Vec<&str> = Shape::ALL
        .iter()
        .filter(|shape| **shape != Shape::InstantQuery && **shape != Shape::RangeQuery)
        .filter(|shape| !queries.iter().any(|query| query.shapes.contains(shape)))
        .map(|shape| shape.name())
        .collect();
    assert!(missing.is_empty(), "never generated: {missing:?}");
}

/// A top-level `sort`/`sort_desc` orders an instant result.
fn is_ordered(query: &str) -> bool {
    query.starts_with("sort(") || query.starts_with("sort_desc(")
}

#[test]
fn engine_agrees_with_prometheus_2_42() {
    let began = Instant::now();
    let spec = spec();
    let data = Dataset::generate(&spec);
    let (first_t, last_t) = data.time_range();
    let work = tempfile::tempdir().expect("temp dir");
    let blocks = work.path().join("blocks");
    data.create_blocks(work.path(), &blocks)
        .unwrap_or_else(|error| panic!("{error}"));
    let data_dir = work.path().join("prometheus-data");
    copy_blocks(&blocks, &data_dir).expect("copy blocks");
    let prometheus = Prometheus::start(PrometheusConfig {
        data_dir: Some(data_dir),
        retention: "100y".into(),
        // The evaluation interval (equal to the scrape interval) is Prometheus' default
        // subquery step; the engine's is 1m.
        scrape_interval: std::time::Duration::from_secs(60),
        ..PrometheusConfig::default()
    })
    .unwrap_or_else(|error| panic!("start prometheus: {error:#}"));
    println!(
        "dataset: {} series, {} samples, {}..{} ms; blocks and prometheus ready after {:.1?}",
        data.series_count(),
        data.sample_count(),
        first_t,
        last_t,
        began.elapsed()
    );
    let storage = data.into_storage();
    let engine = Engine::default();
    let options = QueryOptions::default();

    let (start_s, end_s) = (spec.start_s, last_t / 1000);
    let mut generator = QueryGen::new(SEED, (start_s + 600, end_s));
    let mut queries: Vec<Generated> = [
        // Raw samples first: proves both sides hold the identical data.
        "app_requests_total[5m]",
        "app_latency_seconds_bucket{job=\"web\"}[10m] offset 1h",
        "count({__name__=~\".+\"})",
        "count by (__name__) ({__name__=~\"app_.*\"})",
    ]
    .into_iter()
    .map(|text| Generated {
        text: text.to_string(),
        shapes: BTreeSet::new(),
    })
    .collect();
    while queries.len() < QUERIES {
        queries.push(generator.query());
    }
    // For investigating a mismatch: `DIFFERENTIAL_QUERIES` (one query a line) replaces the
    // generated queries, and the coverage check is skipped.
    let only = std::env::var("DIFFERENTIAL_QUERIES").ok();
    if let Some(only) = &only {
        queries = only
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| Generated {
                text: line.trim().to_string(),
                shapes: BTreeSet::new(),
            })
            .collect();
    }
    let mut rng = Rng::new(SEED ^ 1);
    let mut outcome = Outcome::default();
    for query in &queries {
        let text = query.text.as_str();
        let instant_s = start_s + 600 + rng.below((end_s + 240 - start_s - 600) as usize) as i64;
        let range_start_s = start_s + 600 + rng.below((end_s - start_s - 1200) as usize) as i64;
        let range_end_s = range_start_s + 600 + rng.below(3000) as i64;
        let step_s = *rng.pick(&[15i64, 30, 60, 37]);
        // `DIFFERENTIAL_TIMES="instant start end step"` (seconds) pins the evaluation times.
        let (instant_s, range_start_s, range_end_s, step_s) = pinned_times()
            .filter(|_| only.is_some())
            .unwrap_or((instant_s, range_start_s, range_end_s, step_s));

        let ours = from_engine(engine.instant_query(
            &storage,
            text,
            instant_s * 1000 + EVAL_FRACTION_MS,
            &options,
        ));
        let path = format!(
            "/api/v1/query?query={}&time={instant_s}.{EVAL_FRACTION_MS:03}",
            url_encode(text)
        );
        let theirs = fetch(&prometheus, &path);
        if only.is_some() {
            let brief =
                |answer: &Answer| format!("{answer:?}").chars().take(400).collect::<String>();
            println!(
                "instant {text} @ {instant_s}\n  ours:       {}\n  prometheus: {}",
                brief(&ours),
                brief(&theirs)
            );
        }
        outcome.record(
            format!("instant {text} @ {instant_s}"),
            &query.shapes,
            Shape::InstantQuery,
            &ours,
            &theirs,
            is_ordered(text),
        );

        if !text.contains('(') && text.contains('[') {
            // A bare range selector has no range-query form.
            continue;
        }
        let ours = from_engine(engine.range_query(
            &storage,
            text,
            range_start_s * 1000 + EVAL_FRACTION_MS,
            range_end_s * 1000 + EVAL_FRACTION_MS,
            step_s * 1000,
            &options,
        ));
        let path = format!(
            "/api/v1/query_range?query={}&start={range_start_s}.{EVAL_FRACTION_MS:03}&end={range_end_s}.{EVAL_FRACTION_MS:03}&step={step_s}",
            url_encode(text)
        );
        let theirs = fetch(&prometheus, &path);
        outcome.record(
            format!("range {text} [{range_start_s}..{range_end_s} step {step_s}s]"),
            &query.shapes,
            Shape::RangeQuery,
            &ours,
            &theirs,
            false,
        );
    }
    outcome.print_tally();
    let Outcome {
        compared,
        non_empty,
        both_failed,
        mismatches,
        tally,
    } = outcome;
    println!(
        "compared {compared} queries ({} generated expressions) against prometheus 2.42: {non_empty} with data, {both_failed} failing in both, {} mismatches, {:.1?}",
        queries.len(),
        mismatches.len(),
        began.elapsed()
    );
    for mismatch in &mismatches {
        println!("MISMATCH {mismatch}");
    }
    assert!(
        mismatches.is_empty(),
        "{} of {compared} queries differ from prometheus 2.42; first ones:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        non_empty * 4 >= compared * 3,
        "too few queries returned data ({non_empty} of {compared}): the generator lost its teeth"
    );
    if only.is_some() {
        return;
    }
    let uncovered: Vec<&str> = Shape::ALL
        .iter()
        .filter(|shape| tally.get(shape).is_none_or(|count| count.with_data == 0))
        .map(|shape| shape.name())
        .collect();
    assert!(
        uncovered.is_empty(),
        "no generated query with data (in prometheus' answer) for: {uncovered:?}"
    );
    compare_errors(&prometheus, &engine, &storage, start_s + 3600);
}

/// Invalid queries whose error (`errorType` and message) the engine must word exactly as
/// Prometheus 2.42 does. Only cases where Prometheus 2 and 3 agree are listed (see the crate
/// docs, "Error messages", for the known differences); the data set's metric names make the
/// execution errors real.
const ERROR_QUERIES: &[&str] = &[
    // Lexer errors.
    "sum(",
    "app_requests_total)",
    "(app_requests_total",
    "app_requests_total{",
    "app_requests_total{job=\"api\"",
    "app_requests_total[5m",
    "app_requests_total[5mm]",
    "app_requests_total[]",
    "app_requests_total[5m:1m:1m]",
    "0x1g",
    "app_requests_total{job=\"\\z\"}",
    "app_requests_total{job=\"abc",
    "`abc",
    "app_requests_total ! 1",
    "app_requests_total =~ 1",
    "$",
    "app_requests_total ; 1",
    "app_requests_total]",
    "app_requests_total}",
    // Grammar errors.
    "",
    "1.5.3",
    "app_requests_total app_errors_total",
    "app_requests_total +",
    "-",
    "sum(app_requests_total) by",
    "sum by (job) (app_requests_total) by (job)",
    "sum without() by (job) (app_requests_total)",
    "sum(app_requests_total app_errors_total)",
    "sum by (job,,) (app_requests_total)",
    "sum by (job instance) (app_requests_total)",
    "sum by (a:b) (app_requests_total)",
    "app_requests_total{job=}",
    "app_requests_total{job}",
    "app_requests_total{=\"api\"}",
    "app_requests_total{job==\"api\"}",
    "app_requests_total{job=\"api\" instance=\"x\"}",
    "app_requests_total offset",
    "app_requests_total offset app_errors_total",
    "app_requests_total @",
    "app_requests_total[5m 1m]",
    "app_requests_total[5m:1m 2m]",
    "app_requests_total on(job) + app_errors_total",
    "app_requests_total + ignoring(job) on(job) app_errors_total",
    "sum(app_requests_total,)",
    "rate(app_requests_total[5m],)",
    // Errors found while building nodes.
    "nonexistent(app_requests_total)",
    "app_requests_total offset 5m offset 1m",
    "app_requests_total @ 100 @ 200",
    "rate(app_requests_total[5m]) [5m]",
    "app_requests_total[5m][5m]",
    "app_requests_total offset 5m[5m]",
    "sum(app_requests_total) offset 5m",
    "app_requests_total @ -Inf",
    "topk(app_requests_total)",
    "count_values(\"value\")",
    "sum()",
    // Type checks.
    "rate(app_requests_total)",
    "rate(app_requests_total[5m], 1)",
    "rate(\"app\")",
    "time(1)",
    "round(app_requests_total, 1, 2)",
    "label_join(app_requests_total, \"dst\")",
    "sort(app_requests_total[5m])",
    "app_requests_total[5m] + 1",
    "1 == 1",
    "1 and 1",
    "-\"app\"",
    "{}",
    "{job=~\".*\"}",
    "app_requests_total{__name__=\"app_errors_total\"}",
    "topk(app_requests_total, 1)",
    "count_values(1, app_requests_total)",
    "app_requests_total + bool app_errors_total",
    "app_requests_total and on(job) group_left app_errors_total",
    "app_requests_total + on(job) group_left(job) app_errors_total",
    "app_requests_total{job=\"api\"} or on(job) 1",
    "(app_requests_total)[5m:1m][5m]",
    // Execution errors.
    "label_replace(app_requests_total, \"dst\", \"\", \"job\", \"(\")",
    "app_requests_total + on(job) sum by (job) (app_requests_total)",
    "label_replace(app_requests_total, \"method\", \"\", \"\", \"\")",
];

/// Invalid queries where Prometheus 3 words the error differently from 2.42 (the engine
/// follows 3): both must fail with the same `errorType`; the messages are only printed.
const ERROR_QUERIES_2_VS_3: &[&str] = &[
    // 2.42 anchors matcher regexes as `^(?:...)$`, 3.x as `^(?s:...)$`.
    "app_requests_total{job=~\"(\"}",
    // 2.42 lexes any letter inside brackets as a colon.
    "app_requests_total[5m:x]",
    // 3.x sorts the two duplicate series it names; 2.42 names them in the order it met them.
    "sum by (job) (app_requests_total) + on(job) app_requests_total",
];

/// Valid queries that [`mutants`] breaks by deleting, inserting or truncating.
const MUTATION_BASES: &[&str] = &[
    r#"sum by (job) (rate(app_requests_total{job="api", code=~"5.."}[5m]))"#,
    "histogram_quantile(0.9, sum by (le) (rate(app_latency_seconds_bucket[5m])))",
    "topk(3, avg_over_time(app_memory_bytes[10m] offset 5m))",
    "app_requests_total / on(job, instance) group_left(method) app_errors_total",
    r#"label_replace(app_requests_total, "host", "$1", "instance", "([^:]+):.*")"#,
    "max_over_time(rate(app_requests_total[1m])[10m:30s])",
    r#"count_values("value", app_errors_total) > bool 2"#,
    "-sum without (instance) (app_temperature_celsius @ 1700000000) ^ 2",
    "abs(clamp(app_temperature_celsius, -10, 10)) and app_memory_bytes unless app_errors_total",
    "quantile(0.5, deriv(app_memory_bytes[5m]))",
];

/// Pieces [`mutants`] inserts.
const MUTATION_PIECES: &[&str] = &[
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "=",
    "~",
    "!",
    "\"",
    "'",
    "`",
    "@",
    "+",
    "-",
    "*",
    "/",
    "^",
    "%",
    "<",
    ">",
    " ",
    "0",
    "5",
    "9",
    ".",
    "a",
    "x",
    "_",
    "#",
    " offset ",
    " by ",
    " bool ",
    " on(",
    " group_left ",
    "[5m]",
    ":1m",
    " and ",
];

/// `count` distinct broken variants of [`MUTATION_BASES`] (one or two edits each).
fn mutants(rng: &mut Rng, count: usize) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    while out.len() < count {
        let mut query: Vec<char> = rng.pick(MUTATION_BASES).chars().collect();
        let edits = if rng.chance(0.25) { 2 } else { 1 };
        for _ in 0..edits {
            let at = rng.below(query.len() + 1);
            let roll = rng.unit();
            if roll < 0.4 && query.len() > 1 {
                query.remove(at.min(query.len() - 1));
            } else if roll < 0.8 {
                let piece: Vec<char> = rng.pick(MUTATION_PIECES).chars().collect();
                query.splice(at..at, piece);
            } else {
                query.truncate(at);
            }
        }
        out.insert(query.into_iter().collect::<String>());
    }
    out.into_iter().collect()
}

/// Prometheus 2.42 messages for syntax that 3.x words differently or accepts (a letter or a
/// bare number inside brackets, the `@` item's name, UTF-8 label names); mutants whose 2.42
/// error contains one of these are left out of the comparison.
const MUTATION_2_VS_3: &[&str] = &[
    "unexpected colon",
    "missing unit character in duration",
    "<Item ",
    "invalid label name",
    "label name in label_",
    "in offset, expected duration",
];

/// `(errorType, message)` of a failed query; for `bad_data`, without the HTTP API's
/// `invalid parameter "query": ` prefix, which the querier adds.
fn prometheus_error(prometheus: &Prometheus, query: &str, time_s: i64) -> Option<(String, String)> {
    let path = format!(
        "/api/v1/query?query={}&time={time_s}.{EVAL_FRACTION_MS:03}",
        url_encode(query)
    );
    let (_, body) = test_harness::process::http_get(prometheus.addr(), &path)
        .unwrap_or_else(|error| panic!("GET {path}: {error:#}"));
    let json: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|error| panic!("bad json {error}: {body}"));
    if json["status"] == "success" {
        return None;
    }
    let kind = json["errorType"].as_str().unwrap_or_default().to_string();
    let message = json["error"].as_str().unwrap_or_default();
    let message = message
        .strip_prefix("invalid parameter \"query\": ")
        .unwrap_or(message)
        .to_string();
    Some((kind, message))
}

/// Runs the invalid queries in both engines and compares the errors.
fn compare_errors(
    prometheus: &Prometheus,
    engine: &Engine,
    storage: &promql_engine::MemoryStorage,
    time_s: i64,
) {
    let options = QueryOptions::default();
    let ours = |query: &str| -> Option<(String, String)> {
        engine
            .instant_query(storage, query, time_s * 1000 + EVAL_FRACTION_MS, &options)
            .err()
            .map(|error| (error.kind().as_str().to_string(), error.to_string()))
    };
    let mut equal = 0;
    let mut different = Vec::new();
    for query in ERROR_QUERIES {
        let theirs = prometheus_error(prometheus, query, time_s);
        let ours = ours(query);
        if theirs.is_none() {
            different.push(format!("{query:?}: prometheus 2.42 accepts it"));
        } else if ours == theirs {
            equal += 1;
        } else {
            different.push(format!(
                "{query:?}\n  prometheus: {theirs:?}\n  engine:     {ours:?}"
            ));
        }
    }
    for query in ERROR_QUERIES_2_VS_3 {
        let theirs = prometheus_error(prometheus, query, time_s);
        let ours = ours(query);
        println!(
            "2.42 vs 3 wording of {query:?}:\n  prometheus 2.42: {theirs:?}\n  engine:          {ours:?}"
        );
        assert_eq!(
            theirs.as_ref().map(|(kind, _)| kind),
            ours.as_ref().map(|(kind, _)| kind),
            "{query:?}: both must fail with the same errorType"
        );
    }
    println!(
        "error wording: {equal} of {} invalid queries equal to prometheus 2.42 (errorType and message), {} different",
        ERROR_QUERIES.len(),
        different.len()
    );
    let mut rng = Rng::new(SEED ^ 2);
    let (mut compared, mut mutant_equal, mut version_specific, mut valid) = (0, 0, 0, 0);
    for query in mutants(&mut rng, 300) {
        let Some(theirs) = prometheus_error(prometheus, &query, time_s) else {
            valid += 1;
            continue;
        };
        if MUTATION_2_VS_3.iter().any(|text| theirs.1.contains(text)) {
            version_specific += 1;
            continue;
        }
        compared += 1;
        let ours = ours(&query);
        if ours.as_ref() == Some(&theirs) {
            mutant_equal += 1;
        } else {
            different.push(format!(
                "mutant {query:?}\n  prometheus: {theirs:?}\n  engine:     {ours:?}"
            ));
        }
    }
    println!(
        "mutated queries: {mutant_equal} of {compared} errors equal to prometheus 2.42 ({valid} mutants still valid, {version_specific} left out as 2.42-specific)"
    );
    assert!(
        different.is_empty(),
        "{} errors differ from prometheus 2.42:\n{}",
        different.len(),
        different.join("\n")
    );
}

fn fetch(prometheus: &Prometheus, path: &str) -> Answer {
    let (status, body) = test_harness::process::http_get(prometheus.addr(), path)
        .unwrap_or_else(|error| panic!("GET {path}: {error:#}"));
    if status != 200 && status != 400 && status != 422 {
        panic!("GET {path}: status {status}: {body}");
    }
    from_prometheus(&body).unwrap_or_else(|error| panic!("GET {path}: {error}"))
}

/// How often queries of one shape ran, agreed with Prometheus, and had data.
#[derive(Debug, Default, Clone, Copy)]
struct Count {
    ran: usize,
    agreed: usize,
    with_data: usize,
}

/// Everything the comparison loop counts.
#[derive(Debug, Default)]
struct Outcome {
    compared: usize,
    non_empty: usize,
    both_failed: usize,
    mismatches: Vec<String>,
    tally: BTreeMap<Shape, Count>,
}

impl Outcome {
    fn record(
        &mut self,
        what: String,
        shapes: &BTreeSet<Shape>,
        kind: Shape,
        ours: &Answer,
        theirs: &Answer,
        ordered: bool,
    ) {
        self.compared += 1;
        let with_data = matches!(theirs, Answer::Rows { rows, .. } if !rows.is_empty());
        if with_data {
            self.non_empty += 1;
        }
        if matches!((ours, theirs), (Answer::Error(_), Answer::Error(_))) {
            self.both_failed += 1;
        }
        let difference = diff(ours, theirs, ordered);
        for shape in shapes.iter().chain([&kind]) {
            let count = self.tally.entry(*shape).or_default();
            count.ran += 1;
            count.agreed += usize::from(difference.is_none());
            count.with_data += usize::from(with_data);
        }
        if let Some(difference) = difference {
            self.mismatches.push(format!("{what}\n{difference}"));
        }
    }

    fn print_tally(&self) {
        println!(
            "{:<46} {:>6} {:>6} {:>9}",
            "shape", "ran", "agreed", "with data"
        );
        for shape in Shape::ALL {
            let count = self.tally.get(shape).copied().unwrap_or_default();
            println!(
                "{:<46} {:>6} {:>6} {:>9}",
                shape.name(),
                count.ran,
                count.agreed,
                count.with_data
            );
        }
    }
}

/// The evaluation times given in `DIFFERENTIAL_TIMES`, if any.
fn pinned_times() -> Option<(i64, i64, i64, i64)> {
    let text = std::env::var("DIFFERENTIAL_TIMES").ok()?;
    let numbers: Vec<i64> = text
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    match numbers[..] {
        [instant, start, end, step] => Some((instant, start, end, step)),
        _ => None,
    }
}
