//! The test oracle shared by the batch evaluator's test modules: one way to evaluate a query
//! over a grid of steps, either at once or one step at a time, and one comparable form of the
//! results (labels, name-dropping mark and value bits, so NaN equals NaN and -0 differs from 0).
//!
//! Both ways run the batch path, but not the same code: over a grid of many steps, selectors
//! and range functions slide their windows from step to step and split series over the cores,
//! subqueries evaluate their inner expression in segments kept in a buffer, step-invariant
//! expressions are computed once and repeated, and rows are ordered by their first step; over
//! a grid of one step, each of these is the plain single-step case. A range query's result
//! must equal the results of instant queries at each of its steps.

use std::sync::Arc;

use prom_model::{Labels, Sample};

use crate::batch::{self, Batch, Grid, Row};
use crate::budget::Reservation;
use crate::engine::EvalSettings;
use crate::engine::build_plan;
use crate::eval::Evaluator;
use crate::parse::parse_expr;
use crate::plan::Node;
use crate::storage::MemoryStorage;

/// Evaluation settings of the tests: 5m lookback, 1m default subquery step, no deadline, no
/// memory budget, a sample limit large enough not to matter.
pub(crate) fn settings() -> EvalSettings {
    settings_with_max_samples(50_000_000)
}

/// [`settings`] with the sample limit `max_samples`.
pub(crate) fn settings_with_max_samples(max_samples: usize) -> EvalSettings {
    EvalSettings {
        lookback_delta: 300_000,
        max_samples,
        deadline: None,
        cancel: None,
        default_subquery_step: 60_000,
        reservation: Arc::new(Reservation::new(None)),
    }
}

/// First scrape of the fixtures' series (ms).
pub(crate) const START: i64 = 1_700_000_000_000;
/// Scrape interval of the fixtures' series (ms).
pub(crate) const SCRAPE: i64 = 15_000;
/// Number of scrapes of [`series`].
pub(crate) const SCRAPES: i64 = 80;

/// Appends a series sampled at each of the [`SCRAPES`] scrapes from [`START`] for which `value`
/// gives a value.
pub(crate) fn series(
    storage: &mut MemoryStorage,
    pairs: &[(&str, &str)],
    value: impl Fn(i64) -> Option<f64>,
) {
    let samples: Vec<Sample> = (0..SCRAPES)
        .filter_map(|scrape| Some(Sample::new(START + scrape * SCRAPE, value(scrape)?)))
        .collect();
    storage.append(Labels::from_pairs(pairs.iter().copied()), samples);
}

/// One element of a step: labels, name-dropping mark, value bits (a scalar has no labels).
pub(crate) type Element = (String, bool, u64);

/// One step's result: its elements in order, or a scalar as one element.
pub(crate) type Step = Vec<Element>;

/// A row as comparable data: labels, name-dropping mark, value bits per step.
pub(crate) type RowCells = (String, bool, Vec<Option<u64>>);

/// What an evaluation produced: its result (or the error's text) and the rendered annotations.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome<T> {
    /// The result, or the error message.
    pub(crate) result: Result<T, String>,
    /// Rendered warnings.
    pub(crate) warnings: Vec<String>,
    /// Rendered infos.
    pub(crate) infos: Vec<String>,
}

impl Outcome<Vec<Step>> {
    /// Each step's elements and the annotations sorted, for comparisons where order may differ.
    pub(crate) fn unordered(mut self) -> Self {
        if let Ok(steps) = &mut self.result {
            for step in steps {
                step.sort();
            }
        }
        self.warnings.sort();
        self.infos.sort();
        self
    }

    /// How many elements the steps hold (0 for an error).
    pub(crate) fn elements(&self) -> usize {
        self.result
            .as_ref()
            .map_or(0, |steps| steps.iter().map(Vec::len).sum())
    }
}

/// Parses `query` and prefetches its data for `grid` (panics on an error in either), then runs
/// `eval`, whose error becomes the outcome's error text.
pub(crate) fn evaluate<T>(
    storage: &MemoryStorage,
    settings: &EvalSettings,
    query: &str,
    grid: Grid,
    eval: impl FnOnce(&mut Evaluator<'_>, &Node) -> crate::error::Result<T>,
) -> Outcome<T> {
    let range = (grid.start, grid.ts(grid.len - 1), grid.step);
    evaluate_between(storage, settings, query, range, eval)
}

/// [`evaluate`] for a query's own `(start, end, step)`, whose end need not be a step of its grid
/// (as `end()` sees it).
pub(crate) fn evaluate_between<T>(
    storage: &MemoryStorage,
    settings: &EvalSettings,
    query: &str,
    (start, end, step): (i64, i64, i64),
    eval: impl FnOnce(&mut Evaluator<'_>, &Node) -> crate::error::Result<T>,
) -> Outcome<T> {
    let expr = parse_expr(query).unwrap_or_else(|error| panic!("{query}: {error}"));
    let plan = build_plan(&expr, settings, (start, end, step))
        .unwrap_or_else(|error| panic!("{query}: plan: {error}"));
    let mut ev = Evaluator::new(storage, settings, start, end, step);
    ev.prefetch(&plan)
        .unwrap_or_else(|error| panic!("{query}: prefetch: {error}"));
    let result = eval(&mut ev, plan.root());
    let (warnings, infos) = ev.annotations.render(query);
    Outcome {
        result: result.map_err(|error| error.to_string()),
        warnings,
        infos,
    }
}

/// How a grid is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    /// The batch path at each timestamp of the grid on its own (a grid of one step), as instant
    /// queries at each step would; its first error.
    SingleSteps,
    /// The batch path ([`batch::eval`]) over the whole grid.
    Batch,
}

/// Evaluates `query` over `grid` with `path`, as steps.
pub(crate) fn run(
    path: Path,
    storage: &MemoryStorage,
    settings: &EvalSettings,
    query: &str,
    grid: Grid,
) -> Outcome<Vec<Step>> {
    evaluate(storage, settings, query, grid, |ev, expr| match path {
        Path::SingleSteps => single_steps(ev, expr, grid),
        Path::Batch => batch::eval(ev, expr, grid).map(|batch| steps_of(batch, grid)),
    })
}

/// The batch path over a grid of one step at each timestamp of `grid`, each step's samples
/// released before the next; its first error.
pub(crate) fn single_steps(
    ev: &mut Evaluator<'_>,
    expr: &Node,
    grid: Grid,
) -> crate::error::Result<Vec<Step>> {
    grid.timestamps()
        .map(|ts| {
            let one = Grid::new(ts, ts, 0);
            let batch = batch::eval(ev, expr, one)?;
            batch::release(ev, &batch);
            Ok(steps_of(batch, one).into_iter().next().unwrap_or_default())
        })
        .collect()
}

/// The batch path over a grid of one step at each timestamp of `grid`, collected into rows:
/// a row per label set and name-dropping mark, in the order they are first met (step by step,
/// each step in its order).
pub(crate) fn single_step_rows(
    ev: &mut Evaluator<'_>,
    expr: &Node,
    grid: Grid,
) -> crate::error::Result<Vec<Row>> {
    let mut rows: Vec<Row> = Vec::new();
    let mut index_of: std::collections::HashMap<(prom_model::Labels, bool), usize> =
        std::collections::HashMap::new();
    for (step, ts) in grid.timestamps().enumerate() {
        let batch = batch::eval(ev, expr, Grid::new(ts, ts, 0))?;
        batch::release(ev, &batch);
        for row in batch.into_vector()? {
            let Some(v) = row.values.first().copied().flatten() else {
                continue;
            };
            let key = (row.labels, row.drop_name);
            let index = match index_of.get(&key) {
                Some(&index) => index,
                None => {
                    rows.push(Row {
                        labels: key.0.clone(),
                        drop_name: key.1,
                        values: vec![None; grid.len],
                    });
                    index_of.insert(key, rows.len() - 1);
                    rows.len() - 1
                }
            };
            if rows[index].values[step].replace(v).is_some() {
                return Err(crate::error::Error::exec(
                    "vector cannot contain metrics with the same labelset",
                ));
            }
        }
    }
    Ok(rows)
}

/// A batch as the steps of `grid`: each step's elements in row order (panics on a string).
pub(crate) fn steps_of(batch: Batch, grid: Grid) -> Vec<Step> {
    match batch {
        Batch::Scalar(values) => values
            .into_iter()
            .map(|v| vec![(String::new(), false, v.to_bits())])
            .collect(),
        Batch::Vector(rows) => (0..grid.len)
            .map(|step| {
                rows.iter()
                    .filter_map(|row| {
                        let v = row.values[step]?;
                        Some((row.labels.to_string(), row.drop_name, v.to_bits()))
                    })
                    .collect()
            })
            .collect(),
        Batch::String(text) => panic!("string result {text}"),
    }
}

/// Rows as comparable data, in their order.
pub(crate) fn row_cells(rows: &[Row]) -> Vec<RowCells> {
    rows.iter()
        .map(|row| {
            (
                row.labels.to_string(),
                row.drop_name,
                row.values.iter().map(|v| v.map(f64::to_bits)).collect(),
            )
        })
        .collect()
}

/// Asserts that `actual` equals `expected`. The first step is compared as it is (its order is
/// an instant query's in both). With `ordered`, every step is compared as it is, step by step
/// first (for a message naming the first step that differs), then as a whole, errors included.
/// Then, in any case, with each step's elements sorted; with `annotations`, the sorted warnings
/// and infos too.
pub(crate) fn assert_same_outcome(
    actual: &Outcome<Vec<Step>>,
    expected: &Outcome<Vec<Step>>,
    ordered: bool,
    annotations: bool,
    context: &str,
) {
    if let (Ok(actual), Ok(expected)) = (&actual.result, &expected.result) {
        assert_eq!(
            actual.first(),
            expected.first(),
            "{context} at the first step: values or order"
        );
    }
    if ordered {
        if let (Ok(actual), Ok(expected)) = (&actual.result, &expected.result) {
            for (step, (actual, expected)) in actual.iter().zip(expected).enumerate() {
                assert_eq!(
                    actual, expected,
                    "{context} at step {step}: values or order"
                );
            }
        }
        assert_eq!(actual.result, expected.result, "{context}: values or order");
    }
    let (mut actual, mut expected) = (actual.clone().unordered(), expected.clone().unordered());
    if !annotations {
        for outcome in [&mut actual, &mut expected] {
            outcome.warnings.clear();
            outcome.infos.clear();
        }
    }
    assert_eq!(actual, expected, "{context}");
}
