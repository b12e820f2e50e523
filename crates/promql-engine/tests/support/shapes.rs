//! The benchmark matrix shared by the engine benchmark (`promql-engine/benches/vs_prometheus.rs`)
//! and the end-to-end one (`querier/benches/vs_prometheus_e2e.rs`): the query shapes, the knobs
//! that pick a subset (`BENCH_RUNS`, `BENCH_FILTER`, `BENCH_STEPS`), the comparison of answers
//! and the printed table.
//!
//! Every shape is written against the data of [`crate::dataset::heavy_spec`]: `app_requests_total`
//! (`job` × 10, `instance` `host-N:910x` × 250, `method` get/post, `code` 200/500: 10,000
//! series), and for the first 10 instances of every job `app_errors_total` (`kind`
//! timeout/refused), the gauges `app_memory_bytes` and `app_temperature_celsius`, and the classic
//! histogram `app_latency_seconds` (`method="get"`, `le` 0.05…+Inf). Each shape must answer
//! something on that data; a shape whose answers are empty on both sides is flagged `EMPTY`.
//!
//! Includers need the modules `dataset` and `compare` (both from `tests/support`) at their crate
//! root.

use std::time::{Duration, Instant};

use crate::compare::{Answer, Row};
use crate::dataset::{HEAVY_QUERIES, url_encode};

/// One query of the matrix.
#[derive(Debug)]
pub(crate) struct Shape {
    /// Short name, matched by `BENCH_FILTER`.
    pub(crate) name: &'static str,
    /// The PromQL text.
    pub(crate) query: &'static str,
    /// Only meaningful as an instant query (a range-vector answer).
    pub(crate) instant_only: bool,
}

const fn both(name: &'static str, query: &'static str) -> Shape {
    Shape {
        name,
        query,
        instant_only: false,
    }
}

/// The matrix: every operator class on the dataset's real metrics. The first four are the
/// benchmarks' historical [`HEAVY_QUERIES`].
pub(crate) const SHAPES: &[Shape] = &[
    both("heavy_rate_sum_by_job", HEAVY_QUERIES[0]),
    both("heavy_histogram_quantile", HEAVY_QUERIES[1]),
    both("heavy_count_all_names", HEAVY_QUERIES[2]),
    both("heavy_sum_instance_regex", HEAVY_QUERIES[3]),
    // Selectors, one per matcher type.
    both(
        "sel_eq",
        r#"sum by (instance) (app_requests_total{job="api", method="get"})"#,
    ),
    both(
        "sel_neq",
        r#"count by (job) (app_requests_total{code!="200"})"#,
    ),
    both(
        "sel_nre",
        r#"sum by (method) (app_requests_total{job!~"api|web"})"#,
    ),
    // A large raw answer (500 series, every step): JSON rendering dominates on the HTTP side.
    both("raw_large", r#"app_requests_total{job="api", code="500"}"#),
    Shape {
        name: "raw_range_vector",
        query: r#"app_requests_total{job="web"}[5m]"#,
        instant_only: true,
    },
    // Range functions.
    both(
        "increase",
        "sum by (job) (increase(app_requests_total[10m]))",
    ),
    both(
        "delta_gauge",
        "sum by (job) (delta(app_temperature_celsius[10m]))",
    ),
    both("irate", "max by (job) (irate(app_requests_total[1m]))"),
    both(
        "avg_over_time",
        "avg by (job) (avg_over_time(app_memory_bytes[10m]))",
    ),
    both(
        "min_max_over_time",
        "max(max_over_time(app_temperature_celsius[15m]) - min_over_time(app_temperature_celsius[15m]))",
    ),
    both(
        "sum_count_over_time",
        "sum(sum_over_time(app_requests_total[5m])) / sum(count_over_time(app_requests_total[5m]))",
    ),
    both(
        "stddev_over_time",
        "avg by (job) (stddev_over_time(app_temperature_celsius[30m]))",
    ),
    both(
        "quantile_over_time",
        "max by (job) (quantile_over_time(0.9, app_temperature_celsius[10m]))",
    ),
    both(
        "last_over_time",
        r#"count(last_over_time(app_requests_total{method="post"}[5m]))"#,
    ),
    both("resets", "sum by (job) (resets(app_requests_total[30m]))"),
    both(
        "changes",
        "sum by (job) (changes(app_temperature_celsius[10m]))",
    ),
    both("deriv", "avg by (job) (deriv(app_memory_bytes[10m]))"),
    both(
        "predict_linear",
        "max by (job) (predict_linear(app_memory_bytes[30m], 3600))",
    ),
    // Aggregations.
    both(
        "topk",
        "topk(5, sum by (job, instance) (rate(app_requests_total[5m])))",
    ),
    both("bottomk", "bottomk(3, app_memory_bytes)"),
    both(
        "quantile",
        "quantile by (job) (0.95, rate(app_requests_total[5m]))",
    ),
    both(
        "count_values",
        r#"count_values("series", count by (job, instance) (app_requests_total))"#,
    ),
    both(
        "stddev",
        "stddev by (method) (rate(app_requests_total[5m]))",
    ),
    both(
        "min_max_avg",
        "max by (job) (app_memory_bytes) - min by (job) (app_memory_bytes) + avg by (job) (app_memory_bytes)",
    ),
    // Binary operators.
    both(
        "vector_scalar",
        "sum by (job) (rate(app_requests_total[5m]) * 60)",
    ),
    both(
        "on",
        "sum by (job, instance) (rate(app_errors_total[5m])) / on (job, instance) sum by (job, instance) (rate(app_requests_total[5m]))",
    ),
    both(
        "ignoring",
        r#"rate(app_errors_total{kind="timeout"}[5m]) / ignoring (kind) rate(app_errors_total{kind="refused"}[5m])"#,
    ),
    both(
        "group_left",
        "max by (job) (sum by (job, instance, code) (rate(app_requests_total[5m])) / ignoring (code) group_left sum by (job, instance) (rate(app_requests_total[5m])))",
    ),
    both(
        "compare_filter",
        "count by (job) (rate(app_requests_total[5m]) > 0.7)",
    ),
    both(
        "compare_bool",
        "sum by (job) (rate(app_requests_total[5m]) > bool 0.7)",
    ),
    // Set operators.
    both(
        "and",
        "count(app_memory_bytes > 1.5e9 and app_temperature_celsius > 0)",
    ),
    both(
        "or",
        "count(app_temperature_celsius > 10 or app_temperature_celsius < -10)",
    ),
    both(
        "unless",
        "count(app_requests_total unless on (job, instance) app_memory_bytes)",
    ),
    // Subqueries. The inner range of the nested one is not a multiple of its step: the outer
    // subquery evaluates it at whole minutes, where a 10m window would start exactly on an inner
    // step (Prometheus 2 keeps that point, 3 drops it).
    both(
        "subquery",
        "max_over_time(sum by (job) (rate(app_requests_total[5m]))[30m:1m])",
    ),
    both(
        "subquery_nested",
        "sum by (job) (avg_over_time(max_over_time(rate(app_errors_total[5m])[10m30s:1m])[30m:5m]))",
    ),
    // Label functions.
    both(
        "label_replace",
        r#"sum by (host) (label_replace(rate(app_requests_total[5m]), "host", "$1", "instance", "(.*):.*"))"#,
    ),
    both(
        "label_join",
        r#"count by (target) (label_join(app_memory_bytes, "target", "/", "job", "instance"))"#,
    ),
    both(
        "histogram_quantile_by_job",
        "histogram_quantile(0.5, sum by (job, le) (rate(app_latency_seconds_bucket[5m])))",
    ),
    both("absent", r#"absent(app_requests_total{job="nope"})"#),
    // Modifiers.
    both(
        "at_end",
        "sum by (job) (rate(app_requests_total[5m] @ end()))",
    ),
    both(
        "offset",
        "sum by (job) (rate(app_requests_total[5m])) - sum by (job) (rate(app_requests_total[5m] offset 1h))",
    ),
];

/// How one case runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A range query over the whole span at this step (seconds).
    Range(i64),
    /// An instant query at [`QueryTimes::instant`].
    Instant,
}

impl Mode {
    /// The table's step column.
    pub(crate) fn label(self) -> String {
        match self {
            Mode::Range(step) => format!("{step}s"),
            Mode::Instant => "instant".to_owned(),
        }
    }
}

/// One row of the matrix: a shape in one mode.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Case {
    pub(crate) shape: &'static Shape,
    pub(crate) mode: Mode,
}

/// The environment knobs.
#[derive(Debug)]
pub(crate) struct Knobs {
    /// `BENCH_RUNS`: timed runs per case after the warm-up (default 3).
    pub(crate) runs: usize,
    /// Whether `BENCH_RUNS` was given (then it holds even for slow cases).
    pub(crate) runs_given: bool,
    /// `BENCH_FILTER`: comma-separated substrings; a shape runs when its name holds any.
    pub(crate) filter: Vec<String>,
    /// `BENCH_STEPS`: comma-separated steps in seconds, and `instant` (default `15,60,instant`).
    pub(crate) modes: Vec<Mode>,
}

/// Without `BENCH_RUNS`, a case whose warm-up took longer than this is timed once.
const SLOW: Duration = Duration::from_secs(5);

impl Knobs {
    /// Reads the knobs from the environment.
    pub(crate) fn from_env() -> Result<Self, String> {
        let runs_text = std::env::var("BENCH_RUNS").ok();
        let runs = match &runs_text {
            Some(text) => text
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|runs| *runs > 0)
                .ok_or_else(|| format!("BENCH_RUNS={text}: expected a positive number"))?,
            None => 3,
        };
        let filter = std::env::var("BENCH_FILTER")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(str::to_owned)
            .collect();
        let steps = std::env::var("BENCH_STEPS").unwrap_or_else(|_| "15,60,instant".to_owned());
        let mut modes = Vec::new();
        for part in steps.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mode = if part == "instant" {
                Mode::Instant
            } else {
                let step = part
                    .trim_end_matches('s')
                    .parse::<i64>()
                    .ok()
                    .filter(|step| *step > 0)
                    .ok_or_else(|| {
                        format!("BENCH_STEPS: {part:?} is neither seconds nor `instant`")
                    })?;
                Mode::Range(step)
            };
            if !modes.contains(&mode) {
                modes.push(mode);
            }
        }
        if modes.is_empty() {
            return Err("BENCH_STEPS names no step".to_owned());
        }
        Ok(Self {
            runs,
            runs_given: runs_text.is_some(),
            filter,
            modes,
        })
    }

    /// The cases to run, shape by shape.
    pub(crate) fn cases(&self) -> Vec<Case> {
        let mut cases = Vec::new();
        for shape in SHAPES {
            if !self.filter.is_empty() && !self.filter.iter().any(|f| shape.name.contains(f)) {
                continue;
            }
            for &mode in &self.modes {
                if shape.instant_only && mode != Mode::Instant {
                    continue;
                }
                cases.push(Case { shape, mode });
            }
        }
        cases
    }

    /// Timed runs after a warm-up that took `warm_up`.
    pub(crate) fn runs_after(&self, warm_up: Duration) -> usize {
        if !self.runs_given && warm_up > SLOW {
            1
        } else {
            self.runs
        }
    }
}

/// Evaluation times, in whole seconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueryTimes {
    /// First step of range queries.
    pub(crate) start: i64,
    /// Last second of range queries.
    pub(crate) end: i64,
    /// Time of instant queries.
    pub(crate) instant: i64,
}

/// Range queries start where the first 5m window is full; every evaluation time is 7 s past a
/// whole minute (the steps are multiples of 15 s) so subquery steps (multiples of 1m) never fall
/// on a window boundary, where Prometheus 2 (closed windows) and 3 (left-open) disagree.
pub(crate) fn query_times(first_ms: i64, last_ms: i64) -> QueryTimes {
    let base = first_ms.div_euclid(1000) + 300;
    let start = base + (7 - base).rem_euclid(60);
    let end = last_ms.div_euclid(1000);
    let instant = end - (end - 7).rem_euclid(60);
    QueryTimes {
        start,
        end,
        instant,
    }
}

/// The Prometheus HTTP API path of `case` (`/api/v1/query` or `/api/v1/query_range`).
pub(crate) fn api_path(case: &Case, times: &QueryTimes) -> String {
    let query = url_encode(case.shape.query);
    match case.mode {
        Mode::Range(step) => format!(
            "/api/v1/query_range?query={query}&start={}&end={}&step={step}",
            times.start, times.end
        ),
        Mode::Instant => format!("/api/v1/query?query={query}&time={}", times.instant),
    }
}

/// How two answers compare.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Same series, timestamps and values: their counts.
    Same { series: usize, points: usize },
    /// Both empty: the shape measures nothing.
    Empty,
    /// They differ: the first difference.
    Differ(String),
    /// One side failed: which and why.
    Failed(String),
}

impl Verdict {
    /// The table's answer column.
    pub(crate) fn column(&self) -> String {
        match self {
            Verdict::Same { series, points } => format!("ok {series}s/{points}p"),
            Verdict::Empty => "EMPTY".to_owned(),
            Verdict::Differ(_) => "MISMATCH".to_owned(),
            Verdict::Failed(_) => "ERROR".to_owned(),
        }
    }
}

/// Equal, both NaN, within a relative 1e-9, or within 1e-12 of each other (float noise around
/// zero, where a relative bound means nothing).
fn values_match(ours: f64, theirs: f64) -> bool {
    if ours.is_nan() || theirs.is_nan() {
        return ours.is_nan() && theirs.is_nan();
    }
    let difference = (ours - theirs).abs();
    ours == theirs || difference <= 1e-9 * ours.abs().max(theirs.abs()) || difference <= 1e-12
}

/// Compares two answers as sets of series (order aside).
pub(crate) fn verdict(ours: &Answer, theirs: &Answer) -> Verdict {
    let (our_kind, our_rows, their_kind, their_rows) = match (ours, theirs) {
        (Answer::Error(error), _) => return Verdict::Failed(format!("ours: {error}")),
        (_, Answer::Error(error)) => return Verdict::Failed(format!("prometheus: {error}")),
        (Answer::Rows { kind: a, rows: b }, Answer::Rows { kind: c, rows: d }) => (a, b, c, d),
    };
    if our_kind != their_kind {
        return Verdict::Differ(format!(
            "result type: ours {our_kind}, prometheus {their_kind}"
        ));
    }
    let sorted = |rows: &[Row]| {
        let mut rows: Vec<Row> = rows.to_vec();
        rows.sort_by(|a, b| a.labels.cmp(&b.labels));
        rows
    };
    let (ours, theirs) = (sorted(our_rows), sorted(their_rows));
    if ours.is_empty() && theirs.is_empty() {
        return Verdict::Empty;
    }
    if ours.len() != theirs.len() {
        return Verdict::Differ(format!(
            "{} series ours, {} prometheus",
            ours.len(),
            theirs.len()
        ));
    }
    let mut points = 0;
    for (our_row, their_row) in ours.iter().zip(&theirs) {
        if our_row.labels != their_row.labels {
            return Verdict::Differ(format!(
                "series ours {} prometheus {}",
                our_row.labels, their_row.labels
            ));
        }
        if our_row.points.len() != their_row.points.len() {
            return Verdict::Differ(format!(
                "{}: {} points ours, {} prometheus",
                our_row.labels,
                our_row.points.len(),
                their_row.points.len()
            ));
        }
        for (a, b) in our_row.points.iter().zip(&their_row.points) {
            if a.0 != b.0 || !values_match(a.1, b.1) {
                return Verdict::Differ(format!(
                    "{}: ours {}@{} prometheus {}@{}",
                    our_row.labels, a.1, a.0, b.1, b.0
                ));
            }
        }
        points += our_row.points.len();
    }
    Verdict::Same {
        series: ours.len(),
        points,
    }
}

/// The median of `times` (the upper one of an even count).
pub(crate) fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

/// Median wall time of `runs` calls of `run`.
pub(crate) fn timed(runs: usize, mut run: impl FnMut()) -> Duration {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let began = Instant::now();
        run();
        times.push(began.elapsed());
    }
    median(times)
}

/// One measured case.
#[derive(Debug)]
pub(crate) struct Measured {
    pub(crate) case: Case,
    /// Median times; `None` when that side failed.
    pub(crate) ours: Option<Duration>,
    pub(crate) theirs: Option<Duration>,
    /// Timed runs on each side.
    pub(crate) runs: (usize, usize),
    /// Peak memory columns, already formatted.
    pub(crate) our_memory: String,
    pub(crate) their_memory: String,
    pub(crate) verdict: Verdict,
}

impl Measured {
    fn ratio(&self) -> Option<f64> {
        match (self.ours, self.theirs) {
            (Some(ours), Some(theirs)) if theirs > Duration::ZERO => {
                Some(ours.as_secs_f64() / theirs.as_secs_f64())
            }
            _ => None,
        }
    }
}

fn millis(time: Option<Duration>) -> String {
    time.map_or_else(
        || "-".to_owned(),
        |t| format!("{:.1}", t.as_secs_f64() * 1e3),
    )
}

/// Runs every case through `measure`, printing the run's parameters, the header, a row per case
/// as it is measured, and the summary; the columns name the two sides' memory figures.
pub(crate) fn run_matrix(
    knobs: &Knobs,
    times: &QueryTimes,
    (our_memory, their_memory): (&str, &str),
    mut measure: impl FnMut(Case) -> Measured,
) {
    let cases = knobs.cases();
    println!(
        "{} cases; range queries {}..{}, instant queries at {}; median of {} timed runs after a warm-up{}",
        cases.len(),
        times.start,
        times.end,
        times.instant,
        knobs.runs,
        if knobs.runs_given {
            ""
        } else {
            " (1 when the warm-up took over 5s)"
        }
    );
    print_header(our_memory, their_memory);
    let mut rows = Vec::with_capacity(cases.len());
    for case in cases {
        let row = measure(case);
        print_row(&row);
        rows.push(row);
    }
    print_summary(&rows, &knobs.modes);
}

/// The table header; `our_memory` and `their_memory` name the memory columns.
pub(crate) fn print_header(our_memory: &str, their_memory: &str) {
    println!(
        "{:<26} {:>7} {:>10} {:>10} {:>7} {:>1} {:>4} {:>22} {:>22}  answer",
        "shape", "step", "ours ms", "prom ms", "ratio", "", "runs", our_memory, their_memory
    );
}

/// Prints one row as soon as it is measured.
pub(crate) fn print_row(row: &Measured) {
    let ratio = row.ratio();
    let slower = if ratio.is_some_and(|r| r > 1.0) {
        "*"
    } else {
        ""
    };
    println!(
        "{:<26} {:>7} {:>10} {:>10} {:>7} {:>1} {:>4} {:>22} {:>22}  {}",
        row.case.shape.name,
        row.case.mode.label(),
        millis(row.ours),
        millis(row.theirs),
        ratio.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}")),
        slower,
        format!("{}/{}", row.runs.0, row.runs.1),
        row.our_memory,
        row.their_memory,
        row.verdict.column(),
    );
}

fn geomean(ratios: &[f64]) -> Option<f64> {
    if ratios.is_empty() {
        return None;
    }
    Some((ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp())
}

/// The summary after the table: geometric means overall and per step, slower cases, and every
/// mismatch, error and empty answer with its detail.
pub(crate) fn print_summary(rows: &[Measured], modes: &[Mode]) {
    let ratios: Vec<f64> = rows.iter().filter_map(Measured::ratio).collect();
    match geomean(&ratios) {
        Some(mean) => println!(
            "geometric mean of ratios (ours / prometheus) over {} cases: {mean:.3}",
            ratios.len()
        ),
        None => println!("no case timed on both sides"),
    }
    for &mode in modes {
        let ratios: Vec<f64> = rows
            .iter()
            .filter(|row| row.case.mode == mode)
            .filter_map(Measured::ratio)
            .collect();
        if let Some(mean) = geomean(&ratios) {
            println!(
                "  {:>7}: {mean:.3} over {} cases",
                mode.label(),
                ratios.len()
            );
        }
    }
    let slower: Vec<String> = rows
        .iter()
        .filter(|row| row.ratio().is_some_and(|r| r > 1.0))
        .map(|row| format!("{}@{}", row.case.shape.name, row.case.mode.label()))
        .collect();
    println!(
        "slower than prometheus (*): {} of {} — {}",
        slower.len(),
        rows.len(),
        slower.join(", ")
    );
    let mut mismatches = 0;
    let mut failures = 0;
    let mut empties = 0;
    for row in rows {
        let what = format!("{}@{}", row.case.shape.name, row.case.mode.label());
        match &row.verdict {
            Verdict::Same { .. } => {}
            Verdict::Empty => {
                empties += 1;
                println!("WARNING {what}: empty answers on both sides; the shape measures nothing");
            }
            Verdict::Differ(detail) => {
                mismatches += 1;
                println!("MISMATCH {what}: {detail}");
            }
            Verdict::Failed(detail) => {
                failures += 1;
                println!("ERROR {what}: {detail}");
            }
        }
    }
    println!(
        "answers: {} equal (values within 1e-9 relative), {mismatches} mismatched, {failures} failed, {empties} empty",
        rows.len() - mismatches - failures - empties
    );
}
