//! The streaming fold ([`super::fold_stream`]) against the materialised reduction
//! ([`super::reduce_groups`] over every input row), on generated data large enough to cross
//! blocks and parallel chunks, and what each holds.

use prom_model::{Labels, STALE_NAN_BITS, Sample};

use super::{Fold, Reduce, Source, fold_stream, group_rows, reduce_groups, stream_source};
use crate::batch::testing::{RowCells, evaluate, row_cells, settings, settings_with_max_samples};
use crate::batch::{self, Batch, Grid, Row};
use crate::eval::Evaluator;
use crate::plan::{Aggregate, Node, NodeKind};
use crate::storage::MemoryStorage;

const START: i64 = 1_700_000_000_000;
const SCRAPE: i64 = 15_000;
const SCRAPES: i64 = 120;
/// Series of `big`: more than two blocks of [`crate::batch::selector::BLOCK`].
const SERIES: usize = 2_100;
/// Steps of the grid (every half scrape): a block of series times this is more work than
/// runs on one thread, so blocks are split into parallel chunks.
const STEPS: usize = 200;

// The data crosses blocks, and each block is split into parallel chunks.
const _: () = assert!(SERIES > 2 * crate::batch::selector::BLOCK);
const _: () =
    assert!(crate::batch::selector::BLOCK * STEPS > crate::batch::parallel::MIN_PARALLEL_WORK);

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// `big`: [`SERIES`] series over 5 jobs: counters and small integers; in a few series NaN,
/// infinities, huge values, -0 and stale markers; series starting late and ending early.
fn storage() -> MemoryStorage {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut storage = MemoryStorage::new();
    for series in 0..SERIES {
        let labels = Labels::from_pairs([
            ("__name__", "big".to_string()),
            ("job", format!("j{}", series % 5)),
            ("instance", format!("i{series:04}")),
            ("zone", format!("z{}", series % 3)),
        ]);
        let from = if series % 7 == 3 { 40 } else { 0 };
        let to = if series % 11 == 5 { 70 } else { SCRAPES };
        let mut samples = Vec::new();
        let mut counter = 0.0;
        for i in from..to {
            // Special values in one series of 40, so that most groups' sums stay finite.
            let special = series % 40 == 7;
            let v = match rng.below(60) {
                _ if !special && rng.below(3) == 0 => (rng.below(5)) as f64,
                _ if !special => {
                    counter += (rng.below(10_000) as f64) / 7.0;
                    counter
                }
                0 => f64::NAN,
                1 => f64::INFINITY,
                2 => f64::NEG_INFINITY,
                3 => 1e308,
                4 => -0.0,
                5 => f64::from_bits(STALE_NAN_BITS),
                6..=20 => (rng.below(5)) as f64,
                _ => {
                    counter += (rng.below(10_000) as f64) / 7.0;
                    counter
                }
            };
            samples.push(Sample::new(START + i * SCRAPE + (series as i64 % 13), v));
        }
        storage.append(labels, samples);
    }
    storage
}

fn grid() -> Grid {
    let start = START + 10 * SCRAPE;
    Grid::new(start, start + (STEPS as i64 - 1) * SCRAPE / 2, SCRAPE / 2)
}

const REDUCTIONS: &[&str] = &[
    "sum", "avg", "min", "max", "count", "group", "stddev", "stdvar",
];

const GROUPINGS: &[&str] = &["", "by (job)", "without (instance)", "by (zone, job)"];

const CHILDREN: &[&str] = &[
    "big",
    "(big)",
    "rate(big[1m])",
    "avg_over_time(big[2m])",
    "last_over_time(big[45s])",
    "big offset 1m",
    "rate(big[1m]) * 60",
    "big > bool 3",
    "(2 < big)",
    "1e308 - avg_over_time(big[2m])",
];

/// The aggregation node of `expr`.
fn aggregation(node: &Node) -> &Aggregate {
    match &node.kind {
        NodeKind::Aggregate(aggregate) => aggregate,
        other => panic!("not an aggregation: {other:?}"),
    }
}

/// The input rows reduced after all of them are held, as the non-streaming path does.
fn materialised(ev: &mut Evaluator<'_>, expr: &Node, grid: Grid) -> crate::Result<Vec<Row>> {
    let aggregate = aggregation(expr);
    let reduce = Reduce::parse(aggregate.op.name()).expect("a reduction");
    let grouping = &aggregate.grouping;
    let rows = batch::eval_vector(ev, &aggregate.expr, grid)?;
    let (groups, keys) = group_rows(ev, &rows, |labels| grouping.key(labels))?;
    reduce_groups(
        ev,
        reduce,
        &vec![f64::NAN; grid.len],
        &rows,
        &groups,
        keys,
        grid,
    )
}

/// The rows folded as they are produced.
fn streamed(ev: &mut Evaluator<'_>, expr: &Node, grid: Grid) -> crate::Result<Vec<Row>> {
    let aggregate = aggregation(expr);
    let reduce = Reduce::parse(aggregate.op.name()).expect("a reduction");
    let grouping = &aggregate.grouping;
    let source: Source<'_> = stream_source(ev, &aggregate.expr, grid).expect("streamable");
    fold_stream(ev, reduce, grouping, source, grid)
}

fn run(
    storage: &MemoryStorage,
    query: &str,
    grid: Grid,
    how: fn(&mut Evaluator<'_>, &Node, Grid) -> crate::Result<Vec<Row>>,
) -> (Vec<RowCells>, Vec<String>) {
    let outcome = evaluate(storage, &settings(), query, grid, |ev, expr| {
        how(ev, expr, grid).map(|rows| row_cells(&rows))
    });
    let rows = outcome
        .result
        .unwrap_or_else(|error| panic!("{query}: {error}"));
    (rows, outcome.warnings)
}

#[test]
fn streaming_folds_equal_the_materialised_reductions() {
    let storage = storage();
    let grid = grid();
    let (mut compared, mut finite, mut special) = (0, 0, 0);
    let mut rotation = CHILDREN.iter().cycle();
    for reduce in REDUCTIONS {
        for grouping in GROUPINGS {
            // Every child in turn.
            for child in rotation.by_ref().take(1) {
                let query = format!("{reduce} {grouping} ({child})");
                let expected = run(&storage, &query, grid, materialised);
                let actual = run(&storage, &query, grid, streamed);
                assert_eq!(actual, expected, "{query}");
                for (_, _, values) in &expected.0 {
                    for value in values.iter().flatten() {
                        let value = f64::from_bits(*value);
                        compared += 1;
                        if value.is_finite() {
                            finite += 1;
                        } else {
                            special += 1;
                        }
                    }
                }
            }
        }
    }
    // The data mixes both: most results finite (compensated sums at work), some not.
    assert!(compared > 20_000, "too little compared: {compared}");
    assert!(finite > compared / 2, "{finite} of {compared} finite");
    assert!(special > 100, "{special} of {compared} not finite");
}

#[test]
fn instants_and_pinned_selectors_fold_the_same() {
    let storage = storage();
    let at = START + 60 * SCRAPE;
    for query in [
        "sum by (job) (big)",
        "avg by (job) (rate(big[1m]))",
        "stddev (big @ 1700000900)",
        "max without (instance) (big)",
    ] {
        let expected = run(&storage, query, Grid::new(at, at, 0), materialised);
        let actual = run(&storage, query, Grid::new(at, at, 0), streamed);
        assert_eq!(actual, expected, "{query}");
        assert!(!expected.0.is_empty(), "{query}: nothing compared");
    }
}

/// Folding rows one by one equals reducing them held, for every mix of values in one group,
/// including rows that start late and a name-dropping mark that changes between steps.
#[test]
fn the_fold_equals_the_reduction_row_by_row() {
    let values = [
        Some(1.0),
        Some(-0.0),
        Some(f64::NAN),
        Some(f64::INFINITY),
        Some(f64::NEG_INFINITY),
        Some(1e308),
        Some(1e308),
        Some(-1e308),
        Some(0.1),
        None,
        Some(3.0),
    ];
    let len = 7;
    let mut rows = Vec::new();
    for (index, _) in values.iter().enumerate() {
        let row_values: Vec<Option<f64>> = (0..len)
            .map(|step| values[(index * 3 + step * 5) % values.len()])
            .collect();
        rows.push(Row {
            labels: Labels::from_pairs([("g", (index % 3).to_string()), ("i", index.to_string())]),
            drop_name: index % 4 == 1,
            values: row_values,
        });
    }
    let grid = Grid::new(START, START + (len as i64 - 1) * SCRAPE, SCRAPE);
    let key = |labels: &Labels| Labels::from_pairs([("g", labels.get("g").unwrap_or(""))]);
    for reduce in REDUCTIONS {
        let reduce = Reduce::parse(reduce).expect("a reduction");
        let storage = MemoryStorage::new();
        let outcome = evaluate(&storage, &settings(), "1", grid, |ev, _| {
            let (groups, keys) = group_rows(ev, &rows, key)?;
            reduce_groups(ev, reduce, &[f64::NAN; 7], &rows, &groups, keys, grid)
        });
        let expected = outcome.result.expect("reduced");
        let mut fold = Fold::new(reduce, len);
        for row in &rows {
            fold.add(row, key(&row.labels));
        }
        assert_eq!(
            row_cells(&fold.finish()),
            row_cells(&expected),
            "{reduce:?}"
        );
    }
}

/// What one evaluation of `query` held at its fullest: samples, and bytes of decoded blocks.
fn held_by(storage: &MemoryStorage, query: &str, grid: Grid, stream: bool) -> (usize, usize) {
    let outcome = evaluate(storage, &settings(), query, grid, |ev, expr| {
        let batch = if stream {
            batch::eval(ev, expr, grid)?
        } else {
            Batch::Vector(materialised(ev, expr, grid)?)
        };
        batch::release(ev, &batch);
        Ok((ev.samples_peak(), ev.block_bytes_held().1))
    });
    outcome
        .result
        .unwrap_or_else(|error| panic!("{query}: {error}"))
}

#[test]
fn streaming_holds_fewer_samples_and_decoded_points() {
    let storage = storage();
    let grid = grid();
    let query = "sum by (job) (rate(big[1m]))";
    let (streamed_samples, streamed_bytes) = held_by(&storage, query, grid, true);
    let (held_samples, _) = held_by(&storage, query, grid, false);
    // Materialised, every input row is held: about SERIES x STEPS samples.
    assert!(held_samples > SERIES * STEPS / 2, "{held_samples}");
    // Streamed, one block of rows and the groups' accumulators.
    assert!(
        streamed_samples * 2 < held_samples,
        "streamed {streamed_samples} vs materialised {held_samples}"
    );
    // Decoded points: one block at a time, not every series'.
    let points: usize = SERIES * SCRAPES as usize;
    let all_bytes = points * std::mem::size_of::<crate::value::Point>();
    assert!(streamed_bytes > 0);
    assert!(
        streamed_bytes * 2 < all_bytes,
        "blocks held {streamed_bytes} bytes, all points {all_bytes}"
    );
    // The sample limit follows what is held: the streamed query fits where the materialised
    // one does not.
    let limit = held_samples - 1;
    let fits = evaluate(
        &storage,
        &settings_with_max_samples(limit),
        query,
        grid,
        |ev, expr| batch::eval(ev, expr, grid).map(|batch| batch.samples()),
    );
    assert!(fits.result.is_ok(), "{:?}", fits.result);
    let fails = evaluate(
        &storage,
        &settings_with_max_samples(limit),
        query,
        grid,
        |ev, expr| materialised(ev, expr, grid).map(|rows| rows.len()),
    );
    assert_eq!(
        fails.result.err().as_deref(),
        Some("query processing would load too many samples into memory in query execution")
    );
}

#[test]
fn a_selection_read_once_is_selected_again_when_read_again() {
    let storage = storage();
    let grid = grid();
    let query = "sum by (job) (big)";
    let outcome = evaluate(&storage, &settings(), query, grid, |ev, expr| {
        let first = batch::eval(ev, expr, grid)?;
        batch::release(ev, &first);
        let NodeKind::VectorSelector(selector) = &aggregation(expr).expr.kind else {
            panic!("not a selector");
        };
        // The pass consumed the selection: reading it again selects it again.
        let loaded = ev.materialized(selector)?;
        let second = batch::eval(ev, expr, grid)?;
        batch::release(ev, &second);
        Ok((loaded.len(), first.into_vector()?, second.into_vector()?))
    });
    let (loaded, first, second) = outcome.result.expect("evaluated");
    assert_eq!(loaded, SERIES);
    assert_eq!(row_cells(&first), row_cells(&second));
    assert!(first.iter().map(Row::present).sum::<usize>() > 0);
}
