//! The batch aggregations over range grids against the same queries one step at a time, and
//! instants against the first steps of range grids, on generated data.

use prom_model::{Labels, STALE_NAN_BITS, Sample};

use crate::batch::testing::{Outcome, RowCells, evaluate, row_cells, settings, single_step_rows};
use crate::batch::{Batch, Grid};
use crate::plan::{Aggregate, Node, NodeKind};
use crate::storage::MemoryStorage;

const START: i64 = 1_700_000_000_000;
const SCRAPE: i64 = 15_000;
const SCRAPES: i64 = 80;

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Series `m` (jobs × instances, some living only part of the range, with NaN, infinities,
/// huge values, negative zero, ties and a stale marker) and `n` (a few plain counters).
fn storage() -> MemoryStorage {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut storage = MemoryStorage::new();
    for job in ["a", "b", "c"] {
        for instance in 0..7 {
            let labels = Labels::from_pairs([
                ("__name__", "m".to_string()),
                ("job", job.to_string()),
                ("instance", instance.to_string()),
                (
                    "env",
                    if instance % 2 == 0 { "prod" } else { "dev" }.to_string(),
                ),
            ]);
            // Some series start late or end early (beyond the lookback, so they vanish).
            let from = if instance == 3 { 30 } else { 0 };
            let to = if instance == 5 { 45 } else { SCRAPES };
            let mut samples = Vec::new();
            for i in from..to {
                let v = match rng.below(40) {
                    0 => f64::NAN,
                    1 => f64::INFINITY,
                    2 => f64::NEG_INFINITY,
                    3 => 1e308,
                    4 => -0.0,
                    5..=14 => (rng.below(4)) as f64,
                    _ => (rng.below(10_000) as f64) / 7.0 - 300.0,
                };
                samples.push(Sample::new(START + i * SCRAPE + instance, v));
            }
            if instance == 6 {
                samples.push(Sample::new(
                    START + 50 * SCRAPE + 1,
                    f64::from_bits(STALE_NAN_BITS),
                ));
                samples.retain(|sample| !(51..60).contains(&((sample.t - START) / SCRAPE)));
            }
            storage.append(labels, samples);
        }
    }
    for instance in 0..3 {
        let labels = Labels::from_pairs([
            ("__name__", "n".to_string()),
            ("job", "a".to_string()),
            ("instance", instance.to_string()),
        ]);
        let samples =
            (0..SCRAPES).map(|i| Sample::new(START + i * SCRAPE, (i * (instance + 1)) as f64));
        storage.append(labels, samples.collect::<Vec<_>>());
    }
    storage
}

fn aggregate_of(node: &Node) -> &Aggregate {
    match &node.kind {
        NodeKind::Aggregate(aggregate) => aggregate,
        other => panic!("not an aggregation: {other:?}"),
    }
}

/// The rows of a vector batch (panics on another type).
fn vector_rows(query: &str, batch: Batch) -> Vec<RowCells> {
    match batch {
        Batch::Vector(rows) => row_cells(&rows),
        other => panic!("{query}: {}", other.type_name()),
    }
}

/// The batch evaluation (which must not fall back).
fn run_batch(storage: &MemoryStorage, query: &str, grid: Grid) -> Outcome<Vec<RowCells>> {
    evaluate(storage, &settings(), query, grid, |ev, expr| {
        super::eval(ev, aggregate_of(expr), grid)
            .map(|batch| vector_rows(query, batch.unwrap_or_else(|| panic!("{query}: fell back"))))
    })
}

/// The batch path one step at a time, collected into rows in the order they are first met.
fn run_single_steps(storage: &MemoryStorage, query: &str, grid: Grid) -> Outcome<Vec<RowCells>> {
    evaluate(storage, &settings(), query, grid, |ev, expr| {
        single_step_rows(ev, expr, grid).map(|rows| row_cells(&rows))
    })
}

/// Asserts equal rows (or errors) and warnings (infos are not compared); returns how many rows
/// were compared.
fn assert_same(
    actual: &Outcome<Vec<RowCells>>,
    expected: &Outcome<Vec<RowCells>>,
    context: &str,
) -> usize {
    assert_eq!(
        (&actual.result, &actual.warnings),
        (&expected.result, &expected.warnings),
        "{context}"
    );
    expected.result.as_ref().map_or(0, Vec::len)
}

const QUERIES: &[&str] = &[
    "sum(m)",
    "sum by (job) (m)",
    "sum without (instance) (m)",
    "sum by (env, job) (m)",
    "sum by (nope) (m)",
    "avg by (job) (m)",
    "avg without (job) (m)",
    "min by (env) (m)",
    "max by (env) (m)",
    "count by (job) (m)",
    "group by (job) (m)",
    "stddev by (job) (m)",
    "stdvar without (instance) (m)",
    "quantile by (job) (0.3, m)",
    "quantile(0.9, m)",
    "quantile(-1, m)",
    "quantile by (env) (2, m)",
    "quantile(NaN, m)",
    "quantile by (job) (scalar(n{instance=\"0\"}) / 300, m)",
    "sum by (job) (rate(n[1m]))",
    "sum by (__name__) ({__name__=~\"m|n\"})",
    "sum by (__name__) (m{job=\"a\"} * 1 or m{job=\"b\"})",
    "max by (__name__, job) (-m{instance=~\"3|5\"} or m{instance=\"0\"})",
    "topk(3, m)",
    "topk by (job) (2, m)",
    "bottomk by (env) (4, m)",
    "bottomk(1, m)",
    "topk(100, m)",
    "topk(0, m)",
    "topk(-1, m)",
    "topk(NaN, m)",
    "topk(1e19, m)",
    "topk by (job) (scalar(n{instance=\"1\"}) / 20, m)",
    "limitk(2, m)",
    "limitk by (job) (3, m)",
    "limit_ratio(0.5, m)",
    "limit_ratio(-0.4, m)",
    "limit_ratio by (job) (1.5, m)",
    "limit_ratio(-3, m)",
    "limit_ratio(0, m)",
    "limit_ratio(NaN, m)",
    "limit_ratio(scalar(n{instance=\"0\"}) / 100 - 0.5, m)",
    "count_values(\"value\", m)",
    "count_values by (job) (\"value\", m)",
    "count_values without (instance) (\"value\", m)",
    "count_values without (value) (\"value\", m)",
    "count_values(\"job\", m)",
    "count_values without (instance) (\"job\", m)",
    "count_values(\"__name__\", m)",
    "count_values(\"\", m)",
    "count_values by (job) (\"v\", n)",
    "sum(topk by (job) (2, m))",
    "sum by (job) (count_values without (instance) (\"v\", m))",
    // Parameters that change, turn NaN or invalid at some steps only.
    "topk(scalar(n{instance=\"0\"}) - 20, m)",
    "bottomk by (job) (scalar(m{job=\"a\", instance=\"3\"}), m)",
    "limit_ratio(scalar(m{job=\"a\", instance=\"3\"}) / 1000, m)",
    "quantile(scalar(m{job=\"b\", instance=\"3\"}) / 100, m)",
    // Folded as they stream: a number operand applied row by row.
    "sum by (job) (m * 2)",
    "count by (job) (m > 3)",
    "sum by (job) (rate(n[1m]) > bool 0.01)",
    "avg (10 / m)",
    "max without (instance) (-1 <= m)",
    "sum(nothing)",
    "topk(2, nothing)",
];

#[test]
fn range_grids_equal_single_steps() {
    let storage = storage();
    let grids = [
        Grid::new(START, START + (SCRAPES + 25) * SCRAPE, 37_000),
        Grid::new(START + 20 * SCRAPE, START + 70 * SCRAPE, SCRAPE),
    ];
    let mut compared = 0;
    for query in QUERIES {
        for grid in grids {
            let expected = run_single_steps(&storage, query, grid);
            let actual = run_batch(&storage, query, grid);
            compared += assert_same(&actual, &expected, &format!("{query} over {grid:?}"));
        }
    }
    assert!(compared > 500, "too little compared: {compared}");
}

#[test]
fn instants_equal_the_first_steps_of_range_grids_in_order() {
    let storage = storage();
    let mut compared = 0;
    for query in QUERIES {
        for scrape in [0, 7, 31, 44, 50, 55, 62, 79, 90] {
            let ts = START + scrape * SCRAPE + 3_000;
            let instant = run_batch(&storage, query, Grid::new(ts, ts, 0));
            let range = run_batch(&storage, query, Grid::new(ts, ts + 10 * SCRAPE, SCRAPE));
            // The range grid's rows with a value at its first step, in order, that value only.
            let first: Result<Vec<RowCells>, String> = range.result.clone().map(|rows| {
                rows.into_iter()
                    .filter(|row| row.2[0].is_some())
                    .map(|(labels, drop_name, values)| (labels, drop_name, vec![values[0]]))
                    .collect()
            });
            let context = format!("{query} at {ts}");
            match (&instant.result, &first) {
                (Ok(instant), Ok(first)) => {
                    assert_eq!(instant, first, "{context}");
                    compared += instant.len();
                }
                // An error at a later step of the range grid only.
                (Ok(_), Err(_)) => {}
                (instant, first) => assert_eq!(instant, first, "{context}"),
            }
            // What the first step warns about, the range grid warns about too.
            for warning in &instant.warnings {
                assert!(range.warnings.contains(warning), "{context}: {warning}");
            }
        }
    }
    assert!(compared > 500, "too little compared: {compared}");
}

#[test]
fn errors_and_warnings_are_raised() {
    let storage = storage();
    let grid = Grid::new(START, START + 40 * SCRAPE, SCRAPE);
    let result = run_batch(&storage, "topk(NaN, m)", grid).result;
    assert_eq!(result.err().as_deref(), Some("Parameter value is NaN"));
    let result = run_batch(&storage, "limit_ratio(NaN, m)", grid).result;
    assert_eq!(result.err().as_deref(), Some("Ratio value is NaN"));
    let Outcome {
        result, warnings, ..
    } = run_batch(&storage, "quantile(2, m)", grid);
    assert!(result.is_ok());
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("quantile value should be between 0 and 1"));
}

#[test]
fn output_labels_and_counts_of_count_values() {
    let storage = storage();
    let ts = START + 10 * SCRAPE;
    let result = run_batch(
        &storage,
        "count_values by (job) (\"v\", n)",
        Grid::new(ts, ts, 0),
    )
    .result;
    let rows = result.unwrap_or_else(|error| panic!("{error}"));
    // n has values 10, 20 and 30 at step 10, one series each.
    let labels: Vec<&str> = rows.iter().map(|row| row.0.as_str()).collect();
    assert_eq!(
        labels,
        [
            r#"{job="a", v="10"}"#,
            r#"{job="a", v="20"}"#,
            r#"{job="a", v="30"}"#
        ]
    );
    assert!(rows.iter().all(|row| row.2 == [Some(1.0f64.to_bits())]));
}
