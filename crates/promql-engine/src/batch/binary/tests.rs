//! The batch binary operators over range grids against the same queries one step at a time,
//! step by step and element by element (labels, name marking, value bits and order), including
//! the errors.

use prom_model::STALE_NAN_BITS;

use crate::batch::testing::{
    Outcome, Path, SCRAPE, SCRAPES, START, Step, assert_same_outcome, evaluate, run, series,
    settings, steps_of,
};
use crate::batch::{self, Batch, Grid};
use crate::eval::Evaluator;
use crate::storage::MemoryStorage;

fn storage() -> MemoryStorage {
    let mut storage = MemoryStorage::new();
    let stale = f64::from_bits(STALE_NAN_BITS);
    for (j, job) in ["x", "y"].into_iter().enumerate() {
        for instance in 0..3_i64 {
            let name = instance.to_string();
            let base = (j as f64 + 1.0) * 10.0 + instance as f64;
            // `a`: everywhere, one series with a NaN stretch and one that stops (stale).
            series(
                &mut storage,
                &[("__name__", "a"), ("job", job), ("instance", &name)],
                |s| match (instance, s) {
                    (1, 20..=25) => Some(f64::NAN),
                    (2, 40) => Some(stale),
                    (2, 41..) => None,
                    _ => Some(base + (s % 7) as f64),
                },
            );
            // `c`: same label sets as `a` for some instances, appearing mid-range.
            if instance != 1 {
                series(
                    &mut storage,
                    &[("__name__", "c"), ("job", job), ("instance", &name)],
                    |s| (s >= 10 * instance).then_some(base - 5.0 + (s % 5) as f64),
                );
            }
            // `e`: many side whose `group_left(instance)` results collide while both live.
            series(
                &mut storage,
                &[
                    ("__name__", "e"),
                    ("job", job),
                    ("instance", &name),
                    ("k", "1"),
                ],
                |s| (instance == 0 || s >= 50).then_some(s as f64),
            );
        }
        // `b`: one series per job, with an extra label; `y` only for a while.
        series(
            &mut storage,
            &[("__name__", "b"), ("job", job), ("extra", "e1")],
            |s| (j == 0 || (15..60).contains(&s)).then_some(2.0 + j as f64),
        );
        // `bb`: like `b` but replaced by another series half way through.
        series(
            &mut storage,
            &[("__name__", "bb"), ("job", job), ("extra", "old")],
            |s| match s {
                ..40 => Some(3.0),
                40 => Some(stale),
                _ => None,
            },
        );
        series(
            &mut storage,
            &[("__name__", "bb"), ("job", job), ("extra", "new")],
            |s| (s >= 40).then_some(4.0),
        );
        // `dup`: two series per job overlapping only in the middle.
        series(
            &mut storage,
            &[("__name__", "dup"), ("job", job), ("v", "1")],
            |s| (s < 45).then_some(1.0),
        );
        series(
            &mut storage,
            &[("__name__", "dup"), ("job", job), ("v", "2")],
            |s| (s >= 35).then_some(2.0),
        );
    }
    storage
}

/// Elements per step: the batch path over the whole grid, which must give no row without a
/// value.
fn batch_steps(storage: &MemoryStorage, query: &str, grid: Grid) -> Outcome<Vec<Step>> {
    evaluate(storage, &settings(), query, grid, |ev, expr| {
        let batch = batch::eval(ev, expr, grid)?;
        if let Batch::Vector(rows) = &batch {
            for row in rows {
                assert!(row.present() > 0, "{query}: empty row {}", row.labels);
            }
        }
        Ok(steps_of(batch, grid))
    })
}

/// Compares range grids with their steps evaluated one at a time (elements and their order at
/// every step, or the error); returns how many elements (or whether an error) were compared.
fn check(storage: &MemoryStorage, query: &str) -> Result<usize, String> {
    let grids = [
        Grid::new(START, START + (SCRAPES - 1) * SCRAPE, SCRAPE),
        Grid::new(START + 7_000, START + 90 * SCRAPE, 41_000),
        Grid::new(START + 30 * SCRAPE, START + 34 * SCRAPE, SCRAPE),
    ];
    let settings = settings();
    let mut result = Ok(0);
    for grid in grids {
        let expected = run(Path::SingleSteps, storage, &settings, query, grid);
        let actual = batch_steps(storage, query, grid);
        let context = format!("{query} over {grid:?}");
        assert_same_outcome(&actual, &expected, true, false, &context);
        match expected.result {
            Ok(steps) => {
                if let Ok(count) = &mut result {
                    *count += steps.iter().map(Vec::len).sum::<usize>();
                }
            }
            Err(error) => result = Err(error),
        }
    }
    result
}

#[test]
fn operators_over_range_grids_equal_single_steps() {
    let storage = storage();
    let queries = [
        // Scalars.
        "1 + 2",
        "2 > bool 1",
        "3 atan2 -1",
        "-7 % 3",
        // Vector and scalar.
        "a + 1",
        "2 * a",
        "a / 0",
        "a % 4",
        "a ^ 0.5",
        "2 ^ c",
        "a atan2 3",
        "a > 15",
        "15 < a",
        "a > bool 15",
        "15 >= bool a",
        "a == 12",
        "a != 12",
        "-a <= -20",
        "a + time()",
        // Vector and vector, one to one.
        "a + c",
        "a - on(job, instance) c",
        "a * ignoring(k) c",
        "a / c > 0.5",
        "a > c",
        "a < bool c",
        "a - 5 == on(job, instance) c",
        "c == bool on(job) group_left b",
        "a != bool c",
        "a atan2 c",
        "a % c",
        "a ^ c",
        "-a + c",
        "a + b or c",
        // Many to one and one to many.
        "a * ignoring(instance, extra) group_left b",
        "a / on(job) group_left(extra) b",
        "a > on(job) group_left(extra) b",
        "a >= bool on(job) group_left b",
        "b - on(job) group_right a",
        "b - on(job) group_right(extra) a",
        "b < on(job) group_right(extra) a",
        "a + on(job) group_left(extra) bb",
        "e + on(job) group_left b",
        // Set operators.
        "a and c",
        "a or c",
        "a unless c",
        "a and on(job) b",
        "c or on(job) b",
        "a unless ignoring(instance) b",
        "a or b or c",
        "(a > 12) or c",
        "b and on() a",
        "a unless on() (b > 2)",
        // Fill.
        "a + fill(0) c",
        "a - fill_left(1) c",
        "a - fill_right(-1) c",
        "a > bool fill(0) c",
        "c / on(job, instance) fill_left(100) fill_right(7) a",
        "a * ignoring(instance) group_left fill(1) b",
        "b - on(job) group_right fill_left(5) a",
    ];
    for query in queries {
        match check(&storage, query) {
            Ok(count) => assert!(count > 0, "{query}: nothing compared"),
            Err(error) => panic!("{query}: {error}"),
        }
    }
    // Both paths fail, with the same message, at some step.
    let failing = [
        "a + on(job) b",
        "a * ignoring(instance) c",
        "a + on(job) group_left dup",
        "dup + on(job) group_right a",
        "e + on(job) group_left(instance) b",
        "a + ignoring(instance) fill(0) b",
        "a + on(job) group_left(extra) (bb or on(job, extra) dup)",
    ];
    for query in failing {
        assert!(check(&storage, query).is_err(), "{query}: no error");
    }
}

#[test]
fn errors_are_raised_at_the_step_they_occur() {
    let storage = storage();
    // `dup` has two series per job only at scrapes 35..45 (and the lookback after them).
    let early = Grid::new(START, START + 20 * SCRAPE, SCRAPE);
    let late = Grid::new(START, START + 40 * SCRAPE, SCRAPE);
    let query = "a + on(job) group_left dup";
    let ok = batch_steps(&storage, query, early)
        .result
        .expect("no duplicates before scrape 35");
    assert!(ok.iter().all(|step| step.len() == 6), "{ok:?}");
    let error = batch_steps(&storage, query, late)
        .result
        .expect_err("duplicates at scrape 35");
    assert!(
        error.contains("found duplicate series for the match group {job=\"x\"}"),
        "{error}"
    );
    // `e` results collide once its other instances appear at scrape 50.
    let query = "e + on(job) group_left(instance) b";
    assert!(batch_steps(&storage, query, early).result.is_ok());
    let error = batch_steps(
        &storage,
        query,
        Grid::new(START, START + 60 * SCRAPE, SCRAPE),
    )
    .result
    .expect_err("collision at scrape 50");
    assert!(
        error.contains("grouping labels must ensure unique matches"),
        "{error}"
    );
}

#[test]
fn a_series_matched_by_successive_partners_is_one_row() {
    let storage = storage();
    // `bb` of each job is replaced by another series half way: each `a` series still makes one
    // row, with values before and after the change.
    let query = "a + on(job) group_left bb";
    let expr = crate::parse::parse_expr(query).expect("query parses");
    let settings = settings();
    let grid = Grid::new(START, START + (SCRAPES - 1) * SCRAPE, SCRAPE);
    let mut ev = Evaluator::new(
        &storage,
        &settings,
        grid.start,
        grid.ts(grid.len - 1),
        SCRAPE,
    );
    let plan = crate::engine::build_plan(
        &expr,
        &settings,
        (grid.start, grid.ts(grid.len - 1), SCRAPE),
    )
    .expect("plan");
    ev.prefetch(&plan).expect("prefetch");
    let Batch::Vector(rows) = batch::eval(&mut ev, plan.root(), grid).expect("evaluates") else {
        panic!("{query}: not a vector");
    };
    assert_eq!(rows.len(), 6, "{rows:?}");
    let mut both = 0;
    for row in &rows {
        assert!(
            row.values[30].is_some(),
            "{}: no value before the change",
            row.labels
        );
        // The third instance of `a` stops at scrape 40.
        if row.labels.get("instance") != Some("2") {
            assert!(
                row.values[60].is_some(),
                "{}: no value after it",
                row.labels
            );
            both += 1;
        }
    }
    assert_eq!(both, 4);
}
